/*
 * Every broker down for tens of seconds while events keep arriving, in both
 * delivery modes: afterwards every event has its output (at-least-once: at
 * least one; exactly-once: exactly one among committed records), and
 * readiness (what GET /readyz answers) is false during the outage and true
 * again after it.
 *
 * `test_outage [NAME]` runs the tests whose name matches NAME.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fault_lib.h"

#define OUTAGE_S 20
#define BACKLOG 20000 /* events waiting when the host starts */
#define RATE 500 /* events a second, before, during and after */

static int finished(struct fault_env *e) {
        /* At-least-once commits its offsets to the group; the mock cluster
         * keeps only those (it ignores transactional offset commits), so
         * exactly-once counts instead: every record read and no record
         * waiting for its acknowledgement. */
        if (!e->o.exactly_once)
                return fault_all_committed(e);
        return e->records_in >= (uint64_t)e->fed && e->acked == e->produced;
}

static void outage(void **state, int exactly_once) {
        struct fault_opts o = {0};
        o.exactly_once = exactly_once;
        if (exactly_once) {
                /* Longer than the outage: the transaction has no reason to
                 * abort, and the assignment stays (see fault.yaml). */
                o.message_timeout_ms = "55000"; /* < the transaction's */
                o.session_timeout_ms = "60000";
        } else {
                /* Shorter than the outage: whatever times out in the
                 * producer, the host produces again. The group session
                 * (6 s) expires, and the consumer rejoins after it. */
                o.message_timeout_ms = "10000";
        }
        struct fault_env *e = fault_env_new(&o);
        *state = e; /* freed by fault_env_teardown, also after a failed assertion */
        char why[512] = "";
        /* A backlog: the host is busy when the brokers go, with records
         * read, outputs produced and not yet acknowledged. */
        fault_feed(e, BACKLOG, 0);
        fault_feed_start(e, RATE, 0);
        fault_run_start(e, 0, 170);

        /* Ready and moving before the outage. */
        double dl = now_s() + 60;
        while (!e->ended && now_s() < dl &&
               !(fault_ready(e, why, sizeof(why)) && e->acked >= 1000))
                sleep_ms(20);
        assert_false(e->ended);
        assert_true(fault_ready(e, why, sizeof(why)));
        assert_true(e->acked >= 1000);

        fault_broker_set(e, 1, 0);
        double down = now_s(), unready_at = -1;
        char unready_why[512] = "";
        int flaps = 0; /* ready again while the brokers were still down */
        while (now_s() - down < OUTAGE_S) {
                int r = fault_ready(e, why, sizeof(why));
                if (unready_at < 0 && !r) {
                        unready_at = now_s() - down;
                        snprintf(unready_why, sizeof(unready_why), "%s", why);
                }
                flaps += unready_at >= 0 && r;
                sleep_ms(100);
        }
        int ready_at_end = fault_ready(e, why, sizeof(why));
        uint64_t in_at_end = e->records_in;
        fault_broker_set(e, 1, 1);
        double up = now_s();
        fprintf(stderr,
                "# all brokers down for %d s: not ready %.1f s into the "
                "outage (\"%s\"), %d sample(s) ready after that, %s at its "
                "end (\"%s\"); %llu records read by then\n",
                OUTAGE_S, unready_at, unready_why, flaps,
                ready_at_end ? "ready" : "not ready", ready_at_end ? "" : why,
                (unsigned long long)in_at_end);
        /* Not ready within the outage, and still not at its end. */
        assert_true(unready_at >= 0);
        assert_false(ready_at_end);

        /* Events keep coming after it, then stop; all of them go through. */
        sleep_ms(2000);
        fault_feed_stop(e);
        double ready_again = -1;
        dl = now_s() + 90;
        int done = 0;
        while (now_s() < dl && !(done && ready_again >= 0)) {
                if (ready_again < 0 && fault_ready(e, why, sizeof(why)))
                        ready_again = now_s() - up;
                done = done || finished(e);
                if (!done || ready_again < 0)
                        sleep_ms(100);
        }
        fprintf(stderr, "# ready again %.1f s after the brokers came back\n",
                ready_again);
        assert_true(ready_again >= 0);
        assert_true(done);
        e->stop = 1;
        fault_run_join(e);

        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count(exactly_once ? "exactly-once" : "at-least-once", e,
                          &c);
        assert_int_equal(c.missing, 0);
        if (exactly_once) {
                assert_int_equal(e->st.aborted, 0);
                assert_int_equal(c.dups, 0);
                assert_int_equal(c.records, e->fed);
        }
}

static void test_outage_at_least_once(void **state) {
        outage(state, 0);
}

static void test_outage_exactly_once(void **state) {
        outage(state, 1);
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_outage_at_least_once,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_outage_exactly_once,
                                          fault_env_teardown),
        };
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Batching in time, through the host's loop on librdkafka's mock cluster
 * (fault.yaml, at-least-once):
 *
 * - test_idle_max_wait_zero: `max_wait_ms: 0` (accepted by the config:
 *   a batch of whatever has arrived). An idle host used to spin, every
 *   poll of the loop returning at once: about a second of CPU a second.
 *   A loop turn now waits for the first record of a batch for
 *   max_wait_ms, but at least 20 ms (and at most 250 ms, so that side
 *   inputs, commits and timers are still served): the host's thread uses
 *   a few milliseconds over an idle second, and events still come out.
 * - test_batch_closes_after_first_record: a batch closes max_wait_ms
 *   after its first record arrived (README, "Batches"), not max_wait_ms
 *   after the loop began waiting for it, which closed a batch of a quiet
 *   input anywhere between at once and max_wait_ms after its record.
 *
 * `test_idle [NAME]` runs the tests whose name matches NAME.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fault_lib.h"

static struct fault_env *idle_env(void **state, const char *max_wait_ms) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.max_wait_ms = max_wait_ms;
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        return e;
}

/* CPU seconds the run's thread (the host's loop) has used. */
static double loop_cpu_s(struct fault_env *e) {
        clockid_t cid;
        struct timespec ts;
        assert_int_equal(pthread_getcpuclockid(e->th, &cid), 0);
        assert_int_equal(clock_gettime(cid, &ts), 0);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits until the first n events are out and committed. */
static void wait_committed(struct fault_env *e, uint64_t n) {
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline &&
               !(e->records_in >= n && e->acked == e->produced &&
                 fault_all_committed(e)))
                sleep_ms(50);
        assert_true(fault_all_committed(e));
}

static void test_idle_max_wait_zero(void **state) {
        struct fault_env *e = idle_env(state, "0");
        fault_feed(e, 100, 0);
        fault_run_start(e, 0, 60);
        wait_committed(e, 100);
        /* Idle now: nothing more arrives. */
        double cpu0 = loop_cpu_s(e), t0 = now_s();
        sleep_ms(1000);
        double cpu = loop_cpu_s(e) - cpu0, secs = now_s() - t0;
        fprintf(stderr, "# idle: %.3f s of CPU in %.3f s\n", cpu, secs);
        /* A spinning loop uses about one second a second. */
        assert_true(cpu < 0.2 * secs);
        fault_feed(e, 100, 0);
        wait_committed(e, 200);
        e->stop = 1;
        fault_run_join(e);
        fault_out_once(e, "max_wait_ms 0");
}

/* When the batch count last changed, seen from the loop. */
struct batch_seen {
        _Atomic uint64_t batches;
        _Atomic double at;
};

static int note_batches(struct fault_env *e,
                        const struct veil_kafka_stats *st) {
        struct batch_seen *b = e->hook_ctx;
        if (st->batches != b->batches) {
                b->at = now_s();
                b->batches = st->batches;
        }
        return 0;
}

#define WAIT_MS 1500

static void test_batch_closes_after_first_record(void **state) {
        struct fault_env *e = idle_env(state, "1500");
        struct batch_seen b = {0};
        e->hook = note_batches;
        e->hook_ctx = &b;
        fault_run_start(e, 0, 60);
        double deadline = now_s() + 20;
        char why[512];
        while (!e->ended && now_s() < deadline &&
               !fault_ready(e, why, sizeof(why)))
                sleep_ms(50);
        assert_true(fault_ready(e, why, sizeof(why)));
        /* Twice, at no particular moment of the loop's wait: the old
         * deadline closed a batch early in all but about 1 of 15 such
         * rounds. */
        for (int round = 0; round < 2; round++) {
                sleep_ms(700 + 400 * round);
                uint64_t before = b.batches;
                fault_feed(e, 1, 0); /* returns once it is in the topic */
                double fed = now_s();
                while (!e->ended && now_s() < fed + 10 &&
                       b.batches == before)
                        sleep_ms(5);
                assert_int_equal(b.batches, before + 1);
                double after_ms = (b.at - fed) * 1000;
                fprintf(stderr, "# round %d: the batch closed %.0f ms after "
                        "its record was in the topic (max_wait_ms %d)\n",
                        round, after_ms, WAIT_MS);
                assert_true(after_ms >= WAIT_MS - 100);
                assert_true(after_ms <= WAIT_MS + 3000);
        }
        e->stop = 1;
        fault_run_join(e);
        fault_out_once(e, "max_wait_ms 1500");
}

int main(int argc, char **argv) {
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_idle_max_wait_zero,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_batch_closes_after_first_record,
                        fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Exactly-once: the transaction coordinator slow or failing at awkward
 * moments, on librdkafka's mock cluster (fault.yaml, one broker, one
 * partition).
 *
 * - test_stop_during_slow_commit: SIGTERM (the flag veil's handler sets)
 *   arrives while the commit of a transaction waits for a slow EndTxn
 *   (its answer after 25 s: each 10 s call times out, a retriable error).
 *   The host used to give up at the first retriable error after the
 *   signal: "committing the transaction failed fatally", exit 1, the
 *   transaction left open. It now retries until the shutdown's deadline
 *   (a minute), the transaction commits, and the run ends cleanly.
 * - test_rewind_without_offset_fetch: a transaction aborts (its
 *   AddPartitionsToTxn refused, so nothing of it is written) while the
 *   group coordinator answers OffsetFetch after 12 s, past the 10 s the
 *   rewind asks for the committed offsets. The host used to stop (exit 1:
 *   "cannot rewind the input after an aborted transaction"); it now goes
 *   back to the first record the transaction read on each partition, and
 *   every event comes out once.
 * - test_stop_during_init: SIGTERM while the transactions are being
 *   initialised (InitProducerId answered COORDINATOR_LOAD_IN_PROGRESS
 *   again and again): the run ends within seconds with rc 0, nothing
 *   read. The host used to wait out a 30 s call, then exit 1 blaming the
 *   brokers' version ("Kafka >= 2.5").
 * - test_slow_abort: a transaction aborts (its AddPartitionsToTxn
 *   refused) while the coordinator answers EndTxn with
 *   COORDINATOR_LOAD_IN_PROGRESS for about 15 s: readiness says the abort
 *   is retried, and once it completes the host is ready again and every
 *   event comes out once. The abort used to be retried without a word.
 *
 * `test_txn [NAME]` runs the tests whose name matches NAME.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fault_lib.h"

static struct fault_env *txn_env(void **state) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.exactly_once = 1;
        /* A slow answer holds the coordinator's connection up, heartbeats
         * included: longer than that, so the group does not rebalance
         * (the mock cluster keeps no transactional offset commits, so a
         * rejoin reads the input from its start). */
        o.session_timeout_ms = "30000";
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        return e;
}

/* Waits up to `secs` until readiness gives a reason that holds `what`. */
static int wait_reason(struct fault_env *e, const char *what, double secs) {
        char why[512] = "";
        double deadline = now_s() + secs;
        while (!e->ended && now_s() < deadline) {
                if (!fault_ready(e, why, sizeof(why)) && strstr(why, what)) {
                        fprintf(stderr, "# not ready: %s\n", why);
                        return 1;
                }
                sleep_ms(50);
        }
        return 0;
}

static void test_stop_during_slow_commit(void **state) {
        struct fault_env *e = txn_env(state);
        /* The first EndTxn is answered after 25 s. */
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 fault_cluster(e), 1, API_END_TXN, 1,
                                 RD_KAFKA_RESP_ERR_NO_ERROR, 25000),
                         0);
        fault_feed(e, 100, 0);
        fault_run_start(e, 0, 90);
        /* The first 10 s call has timed out and is retried: the signal
         * comes while the second one waits. */
        assert_true(wait_reason(e, "committing the transaction", 20));
        e->sigterm = 1;
        fault_run_join(e);
        assert_true(e->st.commits >= 1);
        fault_out_once(e, "stopped during a slow commit");
}

static void test_rewind_without_offset_fetch(void **state) {
        struct fault_env *e = txn_env(state);
        e->o.allow_aborts = 1;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        fault_feed(e, 50, 0);
        fault_run_start(e, 0, 90);
        /* The first transaction commits (its OffsetFetch, at the
         * assignment, answered at once). */
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline &&
               !(e->commits >= 1 && e->acked >= 50))
                sleep_ms(50);
        assert_true(e->commits >= 1);
        /* Not fault_committed here: it asks for the offsets itself. */
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 mc, 1, API_OFFSET_FETCH, 1,
                                 RD_KAFKA_RESP_ERR_NO_ERROR, 12000),
                         0);
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 mc, 1, API_ADD_PARTITIONS_TO_TXN, 1,
                                 RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                 0),
                         0);
        fault_feed(e, 50, 0);
        deadline = now_s() + 60;
        while (!e->ended && now_s() < deadline && e->acked < 100)
                sleep_ms(50);
        e->stop = 1;
        fault_run_join(e);
        fprintf(stderr, "# %llu aborted\n",
                (unsigned long long)e->st.aborted);
        assert_int_equal(e->st.aborted, 1);
        size_t left = 1;
        rd_kafka_mock_broker_error_stack_cnt(mc, 1, API_OFFSET_FETCH, &left);
        assert_int_equal(left, 0);
        fault_out_once(e, "rewound without the committed offsets");
}

static void test_stop_during_init(void **state) {
        struct fault_env *e = txn_env(state);
        /* First: the feeder's idempotent producer asks for a producer id
         * too. */
        fault_feed(e, 10, 0);
        rd_kafka_resp_err_t errs[50];
        for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++)
                errs[i] = RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
        rd_kafka_mock_push_request_errors_array(
                fault_cluster(e), API_INIT_PRODUCER_ID,
                sizeof(errs) / sizeof(*errs), errs);
        fault_run_start(e, 0, 60);
        sleep_ms(1500);
        assert_false(e->ended);
        double t = now_s();
        e->sigterm = 1; /* as veil's SIGTERM handler does */
        fault_run_join(e);
        fprintf(stderr, "# ended %.1f s after the signal\n", now_s() - t);
        assert_true(now_s() - t < 5);
        assert_int_equal(e->st.records_in, 0);
}

/* After the first commit: the next transaction aborts, and its abort's
 * EndTxn meets N_END_ERRORS retriable errors (librdkafka retries each
 * after 100 ms: about 15 s, past the first 10 s call). */
#define N_END_ERRORS 150
static int slow_abort_hook(struct fault_env *e,
                           const struct veil_kafka_stats *st) {
        int *pushed = e->hook_ctx;
        if (*pushed || st->commits < 1)
                return 0;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 mc, 1, API_ADD_PARTITIONS_TO_TXN, 1,
                                 RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                 0),
                         0);
        rd_kafka_resp_err_t errs[N_END_ERRORS];
        for (int i = 0; i < N_END_ERRORS; i++)
                errs[i] = RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
        rd_kafka_mock_push_request_errors_array(mc, API_END_TXN, N_END_ERRORS,
                                                errs);
        *pushed = 1;
        return 0;
}

static void test_slow_abort(void **state) {
        struct fault_env *e = txn_env(state);
        e->o.allow_aborts = 1;
        int pushed = 0;
        e->hook = slow_abort_hook;
        e->hook_ctx = &pushed;
        fault_feed(e, 100, 0);
        fault_run_start(e, 0, 120);
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline && !pushed)
                sleep_ms(50);
        assert_true(pushed);
        fault_feed(e, 100, 0);
        assert_true(wait_reason(e, "aborting the transaction", 30));
        deadline = now_s() + 60;
        char why[512] = "";
        while (!e->ended && now_s() < deadline &&
               !(e->acked >= 200 && fault_ready(e, why, sizeof(why))))
                sleep_ms(100);
        assert_true(fault_ready(e, why, sizeof(why)));
        e->stop = 1;
        fault_run_join(e);
        assert_true(e->st.aborted >= 1);
        fault_out_once(e, "after a slow abort");
}

int main(int argc, char **argv) {
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_stop_during_slow_commit,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_rewind_without_offset_fetch,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_stop_during_init,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_slow_abort,
                                          fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Retriable errors injected into the requests of the consumer group
 * (JoinGroup, Fetch, OffsetCommit), of the transactional producer (Produce)
 * and of the transaction coordinator (InitProducerId, AddPartitionsToTxn,
 * AddOffsetsToTxn, EndTxn, TxnOffsetCommit): the host neither exits nor
 * loses an event, every injected error meets one of its requests, and in
 * exactly-once mode no event has two committed outputs.
 *
 * `test_errors [NAME]` runs the tests whose name matches NAME.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fault_lib.h"

#define N_EVENTS 6000
#define MAX_ERRS 8

struct inject {
        const char *what;
        int16_t api;
        int mid_run; /* 0: before the host starts (its first requests) */
        size_t n;
        rd_kafka_resp_err_t errs[MAX_ERRS];
};

/* On the only broker, so that the test can tell they were all met. Each
 * answer comes after 100 ms, like a loaded broker's. */
static void push(rd_kafka_mock_cluster_t *mc, const struct inject *in) {
        for (size_t i = 0; i < in->n; i++)
                assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                         mc, 1, in->api, 1, in->errs[i], 100),
                                 0);
}

static size_t errors_left(rd_kafka_mock_cluster_t *mc,
                          const struct inject *in, size_t n_in) {
        size_t sum = 0;
        for (size_t i = 0; i < n_in; i++) {
                size_t left = 0;
                rd_kafka_mock_broker_error_stack_cnt(mc, 1, in[i].api, &left);
                sum += left;
        }
        return sum;
}

/* Runs N_EVENTS through the host with the errors of `all` injected (or
 * only the kind FAULT_ONLY names), at its start or once it is moving. */
static void run_with(void **state, int exactly_once,
                     const struct inject *all, size_t n_all) {
        struct inject in[16];
        size_t n_in = 0;
        const char *only = getenv("FAULT_ONLY");
        for (size_t i = 0; i < n_all && n_in < 16; i++)
                if (!only || !strcmp(only, all[i].what))
                        in[n_in++] = all[i];
        struct fault_opts o = {0};
        o.exactly_once = exactly_once;
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        fault_feed(e, N_EVENTS, 0);
        for (size_t i = 0; i < n_in; i++)
                if (!in[i].mid_run)
                        push(mc, &in[i]);
        fault_run_start(e, 0, 120);
        double dl = now_s() + 60;
        while (!e->ended && e->acked < 500 && now_s() < dl)
                sleep_ms(5);
        for (size_t i = 0; i < n_in; i++)
                if (in[i].mid_run)
                        push(mc, &in[i]);
        /* Done once every injected error has met a request and every
         * event is through: at-least-once with the group's offsets at the
         * end; exactly-once (whose offsets the mock cluster does not keep)
         * with every record read and every output acknowledged. */
        dl = now_s() + 100;
        while (!e->ended && now_s() < dl &&
               !(errors_left(mc, in, n_in) == 0 &&
                 (exactly_once ? e->records_in >= (uint64_t)e->fed &&
                                         e->acked == e->produced
                               : fault_all_committed(e))))
                sleep_ms(200);
        e->stop = 1;
        fault_run_join(e);

        /* Every injected error met one of the host's requests. */
        for (size_t i = 0; i < n_in; i++) {
                size_t left = 0;
                assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(
                                         mc, 1, in[i].api, &left),
                                 0);
                fprintf(stderr, "# %s: %zu of %zu injected errors met\n",
                        in[i].what, in[i].n - left, in[i].n);
                assert_int_equal(left, 0);
        }
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count(exactly_once ? "exactly-once" : "at-least-once", e,
                          &c);
        assert_int_equal(c.missing, 0);
        if (exactly_once) {
                assert_int_equal(e->st.aborted, 0);
                assert_int_equal(c.dups, 0);
        } else {
                /* A clean shutdown left the group's offsets at the end. */
                assert_true(fault_all_committed(e));
        }
}

#define E(x) RD_KAFKA_RESP_ERR_##x

/* The consumer group's requests: a join (the same in both modes, so
 * injected in at-least-once only) and fetches. */
#define JOIN_ERRORS                                                            \
        {"JoinGroup", API_JOIN_GROUP, 0, 3,                                    \
         {E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),                    \
          E(COORDINATOR_LOAD_IN_PROGRESS)}}
#define FETCH_ERRORS                                                           \
        {"Fetch", API_FETCH, 1, 8,                                             \
         {E(NOT_LEADER_FOR_PARTITION), E(REQUEST_TIMED_OUT),                   \
          E(UNKNOWN_TOPIC_OR_PART), E(KAFKA_STORAGE_ERROR),                    \
          E(NOT_LEADER_FOR_PARTITION), E(REQUEST_TIMED_OUT),                   \
          E(UNKNOWN_LEADER_EPOCH), E(NOT_LEADER_FOR_PARTITION)}}

static const struct inject alo[] = {
        JOIN_ERRORS,
        FETCH_ERRORS,
        {"OffsetCommit", API_OFFSET_COMMIT, 1, 8,
         {E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),
          E(REQUEST_TIMED_OUT), E(COORDINATOR_LOAD_IN_PROGRESS),
          E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),
          E(REQUEST_TIMED_OUT), E(COORDINATOR_LOAD_IN_PROGRESS)}},
};

/* Fetches, and the transactional producer's and the transaction
 * coordinator's requests, with errors that brokers answer them with and
 * librdkafka retries. (librdkafka 2.0.2 takes REQUEST_TIMED_OUT on
 * AddPartitionsToTxn or EndTxn, which brokers do not send, as reason to
 * abort; the mock cluster, which writes no transaction markers and keeps
 * no transactional offsets, cannot show an abort's outcome.) */
static const struct inject eos[] = {
        FETCH_ERRORS,
        {"InitProducerId", API_INIT_PRODUCER_ID, 0, 5,
         {E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),
          E(COORDINATOR_LOAD_IN_PROGRESS), E(CONCURRENT_TRANSACTIONS),
          E(REQUEST_TIMED_OUT)}},
        {"Produce", API_PRODUCE, 1, 6,
         {E(NOT_LEADER_FOR_PARTITION), E(REQUEST_TIMED_OUT),
          E(NOT_ENOUGH_REPLICAS), E(NOT_ENOUGH_REPLICAS_AFTER_APPEND),
          E(NOT_LEADER_FOR_PARTITION), E(REQUEST_TIMED_OUT)}},
        {"AddPartitionsToTxn", API_ADD_PARTITIONS_TO_TXN, 1, 6,
         {E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),
          E(CONCURRENT_TRANSACTIONS), E(COORDINATOR_LOAD_IN_PROGRESS),
          E(CONCURRENT_TRANSACTIONS), E(NOT_COORDINATOR)}},
        {"AddOffsetsToTxn", API_ADD_OFFSETS_TO_TXN, 1, 6,
         {E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),
          E(CONCURRENT_TRANSACTIONS), E(COORDINATOR_LOAD_IN_PROGRESS),
          E(REQUEST_TIMED_OUT), E(CONCURRENT_TRANSACTIONS)}},
        {"EndTxn", API_END_TXN, 1, 6,
         {E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),
          E(CONCURRENT_TRANSACTIONS), E(COORDINATOR_LOAD_IN_PROGRESS),
          E(CONCURRENT_TRANSACTIONS), E(NOT_COORDINATOR)}},
        {"TxnOffsetCommit", API_TXN_OFFSET_COMMIT, 1, 6,
         {E(COORDINATOR_NOT_AVAILABLE), E(NOT_COORDINATOR),
          E(COORDINATOR_LOAD_IN_PROGRESS), E(REQUEST_TIMED_OUT),
          E(UNKNOWN_TOPIC_OR_PART), E(COORDINATOR_NOT_AVAILABLE)}},
};

#define N(a) (sizeof(a) / sizeof(*(a)))

static void test_errors_at_least_once(void **state) {
        run_with(state, 0, alo, N(alo));
}

static void test_errors_exactly_once(void **state) {
        run_with(state, 1, eos, N(eos));
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_errors_at_least_once,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_errors_exactly_once,
                                          fault_env_teardown),
        };
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Fault injection on librdkafka's mock cluster: a broker down for seconds
 * and injected produce errors lose nothing (at-least-once), through
 * tests/pipelines/flow.yaml.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "fault_lib.h"

#define N_EVENTS 6000

static int setup(void **state) {
        struct fault_opts o = {0};
        o.yaml = TEST_ROOT "/tests/pipelines/flow.yaml";
        *state = fault_env_new(&o);
        fault_feed(*state, N_EVENTS, 0);
        return 0;
}

static void check(struct fault_env *e) {
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count("at-least-once", e, &c);
        assert_int_equal(c.missing, 0);
}

static void test_broker_down(void **state) {
        struct fault_env *e = *state;
        fault_run_start(e, N_EVENTS, 120);
        /* Take the only broker down once the pipeline is moving. */
        while (e->acked < 500 && !e->ended && now_s() < e->deadline)
                sleep_ms(10);
        fault_broker_set(e, 1, 0);
        sleep_ms(6000);
        fault_broker_set(e, 1, 1);
        fault_run_join(e);
        check(e);
}

static void test_produce_errors(void **state) {
        struct fault_env *e = *state;
        /* Retriable errors on many produce requests: librdkafka retries,
         * and whatever still fails is produced again by the host. */
        rd_kafka_mock_push_request_errors(
                fault_cluster(e), API_PRODUCE, 12,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
        fault_run_start(e, N_EVENTS, 120);
        fault_run_join(e);
        check(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_broker_down, setup,
                                                fault_env_teardown),
                cmocka_unit_test_setup_teardown(test_produce_errors, setup,
                                                fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

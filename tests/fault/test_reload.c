/*
 * Hot reloads through the host's loop (veil_kafka_run), with the consent
 * ledger as a side input (tests/fault/reload.yaml), on librdkafka's mock
 * cluster. fault_lib's reload_open builds the pipeline again from the same
 * file; a reload is asked for through the host's reload flag.
 *
 * - stop_during_catch_up: a stop that lands while a reload reads the side
 *   inputs again (made deterministic by a hook on should_stop that ends
 *   the run as soon as the new side consumer has not caught up). The run
 *   ends cleanly; what was processed before the reload is out and
 *   committed; the events that arrived as the reload began are neither
 *   read, nor output, nor committed (default deny: nothing runs against a
 *   partial ledger).
 * - stop_during_catch_up_access: the same stop, once the reload has read
 *   again an access request at the start of the consent topic but not
 *   the consent records after it. The stop used to answer the request at
 *   the consumer's close (the revocation ran an empty batch, whose start
 *   applies the queued requests) with the partly read ledger; now nothing
 *   runs, and the one answer is the first start's.
 * - fatal_during_drain: the output's broker refuses every produce request
 *   for good (TOPIC_AUTHORIZATION_FAILED, answered after 2 s) and a reload
 *   is asked for while the first batch waits for it: the reload's drain
 *   meets the fatal error. The run fails with the delivery error, and the
 *   new pipeline is closed unused (reload_close with swapped = 0) before
 *   anything (the side inputs) was switched to it. Under ASan, the old
 *   code's exit read the freed configuration.
 *
 * `test_reload [NAME]` runs the tests whose name matches NAME.
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

#include "codec.h"
#include "fault_lib.h"

/* n consent records (users c1..cn, everything granted) into "consent";
 * each in a request of its own when `one_by_one`, so that they come back
 * a few at a time (the mock cluster answers a fetch with one request's
 * records). */
static void produce_consents(struct fault_env *e, int n, int one_by_one) {
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers",
                                           e->bootstrap, err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        assert_int_equal(rd_kafka_conf_set(conf, "linger.ms", "20", err,
                                           sizeof(err)),
                         RD_KAFKA_CONF_OK);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err,
                                      sizeof(err));
        assert_non_null(rk);
        struct veil_buf b = {0};
        for (int i = 1; i <= n; i++) {
                char user[32];
                snprintf(user, sizeof(user), "c%d", i);
                fault_consent_grant(user, &b);
                rd_kafka_resp_err_t pe;
                while ((pe = rd_kafka_producev(
                                rk, RD_KAFKA_V_TOPIC("consent"),
                                RD_KAFKA_V_KEY(user, strlen(user)),
                                RD_KAFKA_V_VALUE(b.data, b.len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END)) ==
                       RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(rk, 50);
                assert_int_equal(pe, 0);
                rd_kafka_poll(rk, 0);
                if (one_by_one)
                        assert_int_equal(rd_kafka_flush(rk, 30000), 0);
        }
        assert_int_equal(rd_kafka_flush(rk, 30000), 0);
        rd_kafka_destroy(rk);
        veil_buf_free(&b);
}

static struct fault_env *reload_env(int brokers) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.brokers = brokers;
        o.yaml = TEST_ROOT "/tests/fault/reload.yaml";
        struct fault_env *e = fault_env_new(&o);
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "consent", 1, 1), 0);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "access", 1, 1), 0);
        return e;
}

/* A right-of-access request for `user` into "consent". */
static void produce_access(struct fault_env *e, const char *user) {
        char key[64];
        struct veil_buf b = {0};
        fault_consent_access(user, &b);
        snprintf(key, sizeof(key), "access/%s", user);
        fault_produce(e, "consent", key, b.data, b.len);
        veil_buf_free(&b);
}

/* Ends the run once a reload swapped pipelines and its side consumer has
 * not caught up yet: the first should_stop of its catch-up after it has
 * read `side_records` side records in all (0: at once). */
struct catch_up_stop {
        uint64_t side_records;
        int stopped;
        uint64_t records_in; /**< when it stopped */
};

static int stop_in_catch_up(struct fault_env *e,
                            const struct veil_kafka_stats *st) {
        struct catch_up_stop *s = e->hook_ctx;
        if (e->reloads_swapped && !st->side_caught_up &&
            st->side_records >= s->side_records) {
                if (!s->stopped) {
                        s->stopped = 1;
                        s->records_in = st->records_in;
                }
                return 1;
        }
        return 0;
}

static void test_stop_during_catch_up(void **state) {
        struct fault_env *e = reload_env(1);
        *state = e;
        produce_consents(e, 1000, 0);
        fault_feed(e, 300, 0);
        struct catch_up_stop s = {0};
        e->hook = stop_in_catch_up;
        e->hook_ctx = &s;
        fault_run_start(e, 0, 50);
        /* The first 300 events processed and committed. */
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline &&
               !(e->records_in >= 300 && e->acked == e->produced &&
                 fault_committed(e, 0) >= 300))
                sleep_ms(100);
        assert_int_equal(fault_committed(e, 0), 300);
        /* 200 more arrive as the reload begins (reload_open feeds them),
         * then the stop lands in its catch-up. */
        e->feed_on_reload = 200;
        e->reload = 1;
        fault_run_join(e);
        fprintf(stderr, "# reloads: %d opened, %d swapped, %d kept; "
                "stopped in the catch-up: %d, %llu records in then\n",
                e->reloads_opened, e->reloads_swapped, e->reloads_kept,
                s.stopped, (unsigned long long)s.records_in);
        assert_int_equal(e->reloads_opened, 1);
        assert_int_equal(e->reloads_swapped, 1);
        assert_int_equal(s.stopped, 1);
        assert_int_equal(e->st.side_caught_up, 0);
        assert_int_equal(e->fed, 500);
        /* Nothing read after the reload began; nothing committed past
         * what was processed before it. */
        assert_int_equal(s.records_in, 300);
        assert_int_equal(e->st.records_in, 300);
        assert_int_equal(fault_committed(e, 0), 300);
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count("stop in the catch-up", e, &c);
        assert_int_equal(c.distinct, 300);
        assert_int_equal(c.missing, 200);
}

static void test_stop_during_catch_up_access(void **state) {
        struct fault_env *e = reload_env(1);
        *state = e;
        /* The request first, then c1's consent and 499 more, one fetch
         * each: the re-read stops between them. */
        produce_access(e, "c1");
        produce_consents(e, 500, 1);
        fault_feed(e, 100, 0);
        struct catch_up_stop s = {0};
        s.side_records = 501 + 1; /* the first read, and one of the re-read */
        e->hook = stop_in_catch_up;
        e->hook_ctx = &s;
        fault_run_start(e, 0, 60);
        /* The first start answers the request with the whole ledger. */
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline &&
               !(e->records_in >= 100 && e->acked == e->produced &&
                 fault_committed(e, 0) >= 100))
                sleep_ms(100);
        assert_int_equal(fault_read_all(e, "access", "access-checker", NULL,
                                        NULL),
                         1);
        e->reload = 1;
        fault_run_join(e);
        fprintf(stderr, "# stopped in the catch-up: %d, after %llu side "
                "record(s) in all\n", s.stopped,
                (unsigned long long)e->st.side_records);
        assert_int_equal(s.stopped, 1);
        assert_int_equal(e->st.side_caught_up, 0);
        assert_true(e->st.side_records < 2 * 501);
        /* No second answer, from the partial ledger. */
        assert_int_equal(fault_read_all(e, "access", "access-checker", NULL,
                                        NULL),
                         1);
}

/* Asks for a reload once the first batch is produced (its delivery is
 * refused, 2 s later). */
static int reload_after_produce(struct fault_env *e,
                                const struct veil_kafka_stats *st) {
        int *asked = e->hook_ctx;
        if (st->produced && !*asked) {
                *asked = 1;
                e->reload = 1;
        }
        return 0;
}

static void test_fatal_during_drain(void **state) {
        struct fault_env *e = reload_env(2);
        *state = e;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        fault_lead(e, "in", 1, 1);
        fault_lead(e, "dlq", 1, 1);
        fault_lead(e, "consent", 1, 1);
        fault_lead(e, "out", 1, 2);
        produce_consents(e, 10, 0);
        fault_feed(e, 50, 0);
        for (int i = 0; i < 5; i++)
                assert_int_equal(
                        rd_kafka_mock_broker_push_request_error_rtts(
                                mc, 2, API_PRODUCE, 1,
                                RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                2000),
                        0);
        int asked = 0;
        e->hook = reload_after_produce;
        e->hook_ctx = &asked;
        fault_run_start(e, 0, 50);
        fault_run_join_failed(e);
        fprintf(stderr, "# run: %d: %s\n# reloads: %d opened, %d swapped, "
                "%d kept\n", e->rc, e->err, e->reloads_opened,
                e->reloads_swapped, e->reloads_kept);
        assert_int_equal(asked, 1);
        assert_non_null(strstr(e->err, "delivery to topic 'out' failed "
                                        "permanently"));
        assert_int_equal(e->reloads_opened, 1);
        assert_int_equal(e->reloads_swapped, 0);
        assert_int_equal(e->reloads_kept, 1);
        assert_true(now_s() < e->deadline);
}

int main(int argc, char **argv) {
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_stop_during_catch_up,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_stop_during_catch_up_access,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_fatal_during_drain,
                                          fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

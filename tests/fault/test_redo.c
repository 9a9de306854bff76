/*
 * Exactly-once: records produced between batches — a side input's dead
 * letter, the consent stage's audit record — go into the open transaction.
 * When it aborts, the input is rewound and its batch processed again, but
 * nothing reads those side records again (the side consumer has moved
 * on). They are kept until a transaction that holds them commits, and
 * produced again after an abort; they used to be lost.
 *
 * On librdkafka's mock cluster (tests/fault/redo.yaml): two brokers, the
 * dead-letter and audit topics led by broker 2 alone, whose produce
 * requests fail (with an error that fails a record at once, without
 * retries); the transaction that holds them aborts. The mock cluster keeps
 * an aborted transaction's records visible (it writes no transaction
 * markers), so the records are refused rather than written and then
 * aborted: what the topics hold afterwards is what was produced again.
 *
 * `test_redo [NAME]` runs the tests whose name matches NAME.
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

static void produce(struct fault_env *e, const char *topic, const char *key,
                    const void *value, size_t len) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(c, "bootstrap.servers",
                                           e->bootstrap, err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        assert_non_null(rk);
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                           RD_KAFKA_V_KEY(key, strlen(key)),
                                           RD_KAFKA_V_VALUE((void *)value,
                                                            len),
                                           RD_KAFKA_V_MSGFLAGS(
                                                   RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
        assert_int_equal(rd_kafka_flush(rk, 30000), 0);
        rd_kafka_destroy(rk);
}

/* A consent record that grants everything to `user`: its first record, so
 * the consent stage emits an audit record ("granted"). */
static void produce_consent(struct fault_env *e, const char *user) {
        struct veil_buf b = {0};
        fault_consent_grant(user, &b);
        produce(e, "consent", user, b.data, b.len);
        veil_buf_free(&b);
}

/* The first record's veil.source.offset header. */
struct first_off {
        char *buf;
        size_t size;
};

static void first_offset(const rd_kafka_message_t *m, int i, void *ctx) {
        struct first_off *f = ctx;
        if (!i)
                fault_header(m, "veil.source.offset", f->buf, f->size);
}

/* Records in `topic` (one partition, read_committed, to its end); the
 * first one's veil.source.offset header into `src_off`. */
static int count(struct fault_env *e, const char *topic, char *src_off,
                 size_t size) {
        struct first_off f = {src_off, size};
        if (src_off)
                src_off[0] = '\0';
        return fault_read_all(e, topic, "redo-checker",
                              src_off ? first_offset : NULL, &f);
}

/* The consent topic holds an undecodable record (offset 0: a dead letter)
 * and a first consent (offset 1: an audit record); both are produced while
 * the side input catches up, into the transaction of the first batch. */
static void test_side_records_after_abort(void **state) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.brokers = 2;
        o.exactly_once = 1;
        o.allow_aborts = 1;
        o.yaml = TEST_ROOT "/tests/fault/redo.yaml";
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "consent", 1, 1), 0);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "audit", 1, 1), 0);
        fault_lead(e, "in", 1, 1);
        fault_lead(e, "out", 1, 1);
        fault_lead(e, "consent", 1, 1);
        fault_lead(e, "dlq", 1, 2);
        fault_lead(e, "audit", 1, 2);
        produce(e, "consent", "u9", "\x02\x37garbage", 9);
        produce_consent(e, "u1");
        fault_feed(e, 20, 0);
        /* Two, in case the two records go in two requests: each is
         * refused at least once, and each refusal aborts (a first
         * request refused, a second written in the aborted transaction,
         * would leave a visible copy on the mock cluster). */
        for (int i = 0; i < 2; i++)
                assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                         mc, 2, API_PRODUCE, 1,
                                         RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP,
                                         0),
                                 0);
        fault_run_start(e, 0, 90);
        /* Done once both errors met a request, the events are read and
         * every record of a transaction that did not abort is
         * acknowledged, or at the deadline. */
        double deadline = now_s() + 45;
        size_t left = 2;
        while (!e->ended && now_s() < deadline) {
                rd_kafka_mock_broker_error_stack_cnt(mc, 2, API_PRODUCE,
                                                     &left);
                if (!left && e->records_in >= (uint64_t)e->fed &&
                    count(e, "dlq", NULL, 0) >= 1 &&
                    count(e, "audit", NULL, 0) >= 1)
                        break;
                sleep_ms(200);
        }
        sleep_ms(500);
        e->stop = 1;
        fault_run_join(e);
        assert_int_equal(left, 0);
        assert_true(e->st.aborted >= 1);
        char off[32];
        int dl = count(e, "dlq", off, sizeof(off));
        int audit = count(e, "audit", NULL, 0);
        fprintf(stderr, "# %llu aborted; dlq: %d record(s), audit: %d\n",
                (unsigned long long)e->st.aborted, dl, audit);
        assert_int_equal(dl, 1);
        assert_string_equal(off, "0");
        assert_int_equal(audit, 1);
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count("exactly-once", e, &c);
        assert_int_equal(c.missing, 0);
}

int main(int argc, char **argv) {
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_side_records_after_abort,
                                          fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

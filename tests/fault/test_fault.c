/*
 * Fault injection on librdkafka's mock cluster: a broker down for seconds
 * and injected produce errors lose nothing (at-least-once).
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "config.h"
#include "csv.h"
#include "kafka.h"
#include "keyring.h"
#include "keys.h"
#include "mock.h"
#include "pipeline.h"

#ifndef TEST_ROOT
#error "TEST_ROOT must be defined"
#endif

#define N_EVENTS 6000
/* Kafka protocol ApiKeys (rdkafka_mock.h takes them as numbers). */
#define API_PRODUCE 0

struct env {
        struct veil_mock *mock;
        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        struct veil_kafka_stats st;
        _Atomic uint64_t acked; /* read by the injecting thread */
        int rc;
        char err[1024];
        double deadline;
};

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        char err[1024];
        setenv("KAFKA_BOOTSTRAP", "embedded", 1);
        setenv("VEIL_INPUT", "in", 1);
        setenv("VEIL_OUTPUT", "out", 1);
        setenv("VEIL_RECS", "recs", 1);
        setenv("VEIL_DLQ", "dlq", 1);
        setenv("VEIL_GROUP", "fault", 1);
        assert_int_equal(veil_mock_start(&e->mock, 1, err, sizeof(err)), 0);
        assert_int_equal(veil_config_load(&e->cfg,
                                          TEST_ROOT "/tests/pipelines/flow.yaml",
                                          err, sizeof(err)),
                         0);
        for (const char *t = "in\0out\0recs\0dlq\0"; *t; t += strlen(t) + 1)
                assert_int_equal(veil_mock_create_topic(e->mock, t, 3, err,
                                                        sizeof(err)),
                                 0);
        assert_int_equal(veil_keys_load(e->cfg, &e->kr, err, sizeof(err)), 0);
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts o = {path, 1, e->kr, 0};
        int rc = veil_pipeline_new(&e->p, e->cfg, &o, err, sizeof(err));
        if (rc)
                fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        veil_pipeline_destroy(e->p);
        veil_keyring_destroy(e->kr);
        veil_config_destroy(e->cfg);
        veil_mock_destroy(e->mock);
        free(e);
        return 0;
}

/* Produces the first N_EVENTS demo events into "in". */
static void feed(struct env *e) {
        char err[1024];
        struct veil_codec *c;
        struct veil_csv *csv;
        assert_int_equal(veil_codec_new(&c, e->cfg, &e->cfg->input, err,
                                        sizeof(err)),
                         0);
        assert_int_equal(veil_csv_open(&csv,
                                       TEST_ROOT "/config/demo/events.csv",
                                       err, sizeof(err)),
                         0);
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers",
                          veil_mock_bootstrap(e->mock), err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err,
                                      sizeof(err));
        assert_non_null(rk);
        struct veil_buf buf = {0};
        struct veil_event ev;
        for (int i = 0; i < N_EVENTS; i++) {
                assert_int_equal(veil_csv_next(csv, &ev, err, sizeof(err)), 1);
                assert_int_equal(veil_codec_encode_event(c, &ev, &buf, err,
                                                         sizeof(err)),
                                 0);
                assert_int_equal(
                        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("in"),
                                          RD_KAFKA_V_KEY(ev.user_id,
                                                         strlen(ev.user_id)),
                                          RD_KAFKA_V_VALUE(buf.data, buf.len),
                                          RD_KAFKA_V_MSGFLAGS(
                                                  RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_END),
                        0);
                rd_kafka_poll(rk, 0);
        }
        assert_int_equal(rd_kafka_flush(rk, 30000), 0);
        rd_kafka_destroy(rk);
        veil_buf_free(&buf);
        veil_csv_close(csv);
        veil_codec_destroy(c);
}

static int done(void *ctx, const struct veil_kafka_stats *st) {
        struct env *e = ctx;
        if (now_s() > e->deadline)
                return 1;
        e->acked = st->acked;
        return st->records_in >= N_EVENTS && st->acked == st->produced;
}

static void *run(void *arg) {
        struct env *e = arg;
        struct veil_kafka_opts o = {0};
        o.bootstrap = veil_mock_bootstrap(e->mock);
        o.should_stop = done;
        o.ctx = e;
        o.shutdown_timeout_ms = 60000;
        e->rc = veil_kafka_run(e->p, &o, &e->st, e->err, sizeof(e->err));
        return NULL;
}

/* Every event id e1..eN must appear at least once in "out". */
static void assert_all_out(struct env *e) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", veil_mock_bootstrap(e->mock),
                          err, sizeof(err));
        rd_kafka_conf_set(c, "group.id", "checker", err, sizeof(err));
        rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(3);
        for (int i = 0; i < 3; i++)
                rd_kafka_topic_partition_list_add(l, "out", i)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        struct veil_codec *codec;
        assert_int_equal(veil_codec_new(&codec, e->cfg,
                                        veil_config_output(e->cfg, "events"),
                                        err, sizeof(err)),
                         0);
        struct veil_arena arena;
        veil_arena_init(&arena, 1 << 16, 0);
        unsigned char *seen = calloc(N_EVENTS + 1, 1);
        int eofs = 0;
        long records = 0;
        double deadline = now_s() + 30;
        while (eofs < 3 && now_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        eofs++;
                } else if (!m->err) {
                        struct veil_event ev;
                        assert_int_equal(veil_codec_decode_event(
                                                 codec, m->payload, m->len,
                                                 &ev, &arena, err, sizeof(err)),
                                         0);
                        long id = atol(ev.event_id + 1);
                        assert_true(id >= 1 && id <= N_EVENTS);
                        seen[id] = 1;
                        records++;
                        veil_arena_reset(&arena);
                }
                rd_kafka_message_destroy(m);
        }
        long missing = 0;
        for (int i = 1; i <= N_EVENTS; i++)
                missing += !seen[i];
        fprintf(stderr, "# %ld records out, %ld events missing, %llu retried\n",
                records, missing, (unsigned long long)e->st.retried);
        assert_int_equal(missing, 0);
        free(seen);
        veil_arena_free(&arena);
        veil_codec_destroy(codec);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
}

static void test_broker_down(void **state) {
        struct env *e = *state;
        feed(e);
        e->deadline = now_s() + 120;
        pthread_t th;
        pthread_create(&th, NULL, run, e);
        /* Take the only broker down once the pipeline is moving. */
        while (e->acked < 500 && now_s() < e->deadline)
                sleep_ms(10);
        assert_int_equal(rd_kafka_mock_broker_set_down(
                                 veil_mock_cluster(e->mock), 1),
                         0);
        sleep_ms(6000);
        assert_int_equal(rd_kafka_mock_broker_set_up(
                                 veil_mock_cluster(e->mock), 1),
                         0);
        pthread_join(th, NULL);
        if (e->rc)
                fprintf(stderr, "%s\n", e->err);
        assert_int_equal(e->rc, 0);
        assert_true(now_s() < e->deadline);
        assert_all_out(e);
}

static void test_produce_errors(void **state) {
        struct env *e = *state;
        feed(e);
        e->deadline = now_s() + 120;
        /* Retriable errors on many produce requests: librdkafka retries,
         * and whatever still fails is produced again by the host. */
        rd_kafka_mock_push_request_errors(
                veil_mock_cluster(e->mock), API_PRODUCE, 12,
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
        pthread_t th;
        pthread_create(&th, NULL, run, e);
        pthread_join(th, NULL);
        if (e->rc)
                fprintf(stderr, "%s\n", e->err);
        assert_int_equal(e->rc, 0);
        assert_true(now_s() < e->deadline);
        assert_all_out(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_broker_down, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_produce_errors, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

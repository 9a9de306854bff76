/*
 * bench_host — events per second of the host with the passthrough chain
 * against a plain librdkafka consume→produce loop over the same input, in
 * the same run, with ~200-byte events. Prints both rates and their ratio;
 * numbers, not a pass/fail test.
 *
 *   bench_host [N]     on the embedded mock cluster (default N = 60000; the
 *                      mock keeps ~5 MB per partition, so keep N modest)
 *   KAFKA_BOOTSTRAP=host:port bench_host [N]   on a real broker
 *
 * Both loops are timed from their first consumed record to the moment the
 * last output is acknowledged, so group joins do not count.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "kafka.h"
#include "keyring.h"
#include "keys.h"
#include "mock.h"
#include "pipeline.h"

#ifndef BENCH_ROOT
#error "BENCH_ROOT must be defined"
#endif

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bs,
                          const char *group) {
        char e[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bs, e, sizeof(e));
        if (group) {
                rd_kafka_conf_set(c, "group.id", group, e, sizeof(e));
                rd_kafka_conf_set(c, "auto.offset.reset", "earliest", e,
                                  sizeof(e));
        } else {
                rd_kafka_conf_set(c, "linger.ms", "5", e, sizeof(e));
                rd_kafka_conf_set(c, "enable.idempotence", "true", e,
                                  sizeof(e));
        }
        rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof(e));
        if (!rk) {
                fprintf(stderr, "bench: %s\n", e);
                exit(1);
        }
        return rk;
}

/* N interaction events of about 200 bytes each. */
static size_t feed(const struct veil_config *cfg, const char *bs,
                   const char *topic, long n) {
        char err[512];
        struct veil_codec *c;
        if (veil_codec_new(&c, cfg, &cfg->input, err, sizeof(err))) {
                fprintf(stderr, "bench: %s\n", err);
                exit(1);
        }
        rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bs, NULL);
        struct veil_buf buf = {0};
        struct veil_kv attrs[2] = {{"campaign", "winter-sale-2026-banner-a"},
                                   {"page", "/catalog/lighting/lanterns"}};
        char eid[32], uid[32], item[32];
        size_t bytes = 0;
        for (long i = 0; i < n; i++) {
                struct veil_event ev = {0};
                snprintf(eid, sizeof(eid), "e%ld", i + 1);
                snprintf(uid, sizeof(uid), "user-%ld", i % 4000);
                snprintf(item, sizeof(item), "item-%ld", (i * 7919) % 3600);
                ev.event_id = eid;
                ev.user_id = uid;
                ev.item_id = item;
                ev.type = "view";
                ev.ts_ms = 1764400000000LL + i;
                ev.value = 1;
                ev.gpc = -1;
                ev.ctx.device = "mobile";
                ev.ctx.ip = "203.0.113.77";
                ev.ctx.user_agent = "Mozilla/5.0 (Linux; Android 14) Chrome/120";
                ev.ctx.country = "GB";
                ev.ctx.session_id = "s-0123456789";
                ev.ctx.attrs = attrs;
                ev.ctx.n_attrs = 2;
                if (veil_codec_encode_event(c, &ev, &buf, err, sizeof(err))) {
                        fprintf(stderr, "bench: %s\n", err);
                        exit(1);
                }
                bytes += buf.len;
                while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                         RD_KAFKA_V_KEY(uid, strlen(uid)),
                                         RD_KAFKA_V_VALUE(buf.data, buf.len),
                                         RD_KAFKA_V_MSGFLAGS(
                                                 RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_END) ==
                       RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(rk, 10);
                rd_kafka_poll(rk, 0);
        }
        rd_kafka_flush(rk, 60000);
        rd_kafka_destroy(rk);
        veil_buf_free(&buf);
        veil_codec_destroy(c);
        return bytes / (size_t)n;
}

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op) {
        (void)rk;
        (void)op;
        if (m->err)
                fprintf(stderr, "bench: plain loop delivery: %s\n",
                        rd_kafka_err2str(m->err));
}

/* The ceiling: consume, produce the same bytes, nothing else. */
static double plain_loop(const char *bs, const char *in, const char *out,
                         long n) {
        char group[64];
        snprintf(group, sizeof(group), "bench-plain-%d", getpid());
        rd_kafka_t *cons = client(RD_KAFKA_CONSUMER, bs, group);
        rd_kafka_poll_set_consumer(cons);
        char e[512];
        rd_kafka_conf_t *pc = rd_kafka_conf_new();
        rd_kafka_conf_set(pc, "bootstrap.servers", bs, e, sizeof(e));
        rd_kafka_conf_set(pc, "linger.ms", "5", e, sizeof(e));
        rd_kafka_conf_set(pc, "enable.idempotence", "true", e, sizeof(e));
        rd_kafka_conf_set_dr_msg_cb(pc, dr);
        rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof(e));
        rd_kafka_topic_partition_list_t *sub =
                rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(cons, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        long got = 0;
        double t0 = 0, deadline = now_s() + 300;
        while (got < n && now_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 100);
                if (!m)
                        continue;
                if (!m->err) {
                        if (!got)
                                t0 = now_s();
                        got++;
                        while (rd_kafka_producev(
                                       prod, RD_KAFKA_V_TOPIC(out),
                                       RD_KAFKA_V_KEY(m->key, m->key_len),
                                       RD_KAFKA_V_VALUE(m->payload, m->len),
                                       RD_KAFKA_V_MSGFLAGS(
                                               RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END) ==
                               RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                rd_kafka_poll(prod, 10);
                        rd_kafka_poll(prod, 0);
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_flush(prod, 60000);
        double secs = now_s() - t0;
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
        rd_kafka_destroy(prod);
        return got == n ? (double)n / secs : 0.0;
}

struct hstop {
        long n;
        double t0;
};

static int host_done(void *ctx, const struct veil_kafka_stats *st) {
        struct hstop *h = ctx;
        if (!h->t0 && st->records_in)
                h->t0 = now_s();
        return st->records_in >= (uint64_t)h->n && st->acked == st->produced;
}

static double host_loop(const char *bs, struct veil_pipeline *p, long n) {
        struct hstop h = {n, 0};
        struct veil_kafka_opts o = {0};
        o.bootstrap = bs;
        o.should_stop = host_done;
        o.ctx = &h;
        struct veil_kafka_stats st;
        char err[1024];
        if (veil_kafka_run(p, &o, &st, err, sizeof(err))) {
                fprintf(stderr, "bench: host: %s\n", err);
                return 0;
        }
        return (double)n / (now_s() - h.t0);
}

int main(int argc, char **argv) {
        long n = argc > 1 ? atol(argv[1]) : 60000;
        const char *real = getenv("KAFKA_BOOTSTRAP");
        char err[1024], suffix[64];
        snprintf(suffix, sizeof(suffix), "%d-%ld", getpid(), (long)time(NULL));
        char in[128], pout[128], hout[128], dlq[128], group[128];
        snprintf(in, sizeof(in), "bench-in-%s", suffix);
        snprintf(pout, sizeof(pout), "bench-plain-%s", suffix);
        snprintf(hout, sizeof(hout), "bench-host-%s", suffix);
        snprintf(dlq, sizeof(dlq), "bench-dlq-%s", suffix);
        snprintf(group, sizeof(group), "bench-host-%s", suffix);
        setenv("VEIL_INPUT", in, 1);
        setenv("VEIL_OUTPUT", hout, 1);
        setenv("VEIL_DLQ", dlq, 1);
        setenv("VEIL_GROUP", group, 1);
        setenv("VEIL_MAX_EVENTS", "512", 0);
        if (!real)
                setenv("KAFKA_BOOTSTRAP", "embedded", 1);

        struct veil_config *cfg;
        if (veil_config_load(&cfg, BENCH_ROOT "/tests/pipelines/passthrough.yaml",
                             err, sizeof(err))) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
        }
        struct veil_mock *mock = NULL;
        const char *bs = real;
        if (!real) {
                const char *topics[] = {in, pout, hout, dlq};
                if (veil_mock_start(&mock, 1, err, sizeof(err))) {
                        fprintf(stderr, "bench: %s\n", err);
                        return 1;
                }
                for (int i = 0; i < 4; i++)
                        veil_mock_create_topic(mock, topics[i], 3, err,
                                               sizeof(err));
                bs = veil_mock_bootstrap(mock);
        }
        size_t avg = feed(cfg, bs, in, n);

        char *path[] = {BENCH_PLUGIN_DIR};
        struct veil_pipeline_opts o = {path, 1, NULL, 0};
        struct veil_pipeline *p;
        if (veil_pipeline_new(&p, cfg, &o, err, sizeof(err))) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
        }
        double plain = plain_loop(bs, in, pout, n);
        double host = host_loop(bs, p, n);
        printf("bench_host: %ld events of %zu bytes on %s\n", n, avg,
               real ? real : "the embedded mock cluster");
        printf("  plain librdkafka consume->produce: %10.0f events/s\n",
               plain);
        printf("  veil host, passthrough chain:      %10.0f events/s\n",
               host);
        printf("  ratio host/plain: %.3f\n", plain > 0 ? host / plain : 0);
        veil_pipeline_destroy(p);
        veil_config_destroy(cfg);
        veil_mock_destroy(mock);
        return 0;
}

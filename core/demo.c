/*
 * demo.c — `veil demo`: replays bundled events through a pipeline on the
 * embedded broker, reads the outputs back and prints a summary.
 *
 * The pipeline's `demo:` section names the data:
 *   demo: {events: ../demo/events.csv, garbage: 3}
 * `garbage` undecodable records are mixed in to show the dead-letter path
 * (veil_demo_config_parse checks the section: demo_side.h).
 *
 * The feeder produces while the pipeline consumes, because the mock cluster
 * keeps only the newest ~5 MB of each partition.
 */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "csv.h"
#include "demo_side.h"
#include "kafka.h"
#include "log.h"
#include "mock.h"

struct feeder {
        const struct veil_config *cfg;
        const char *bootstrap;
        char *events_path;
        long garbage;
        long garbage_sent;
        struct veil_demo_side *side; /**< consent records, some mid-stream */
        /* written by the feeder thread, read by the main one */
        volatile long fed;
        volatile int done;
        char err[1024];
};

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int produce(rd_kafka_t *rk, const char *topic, const char *key,
                   const void *val, size_t len) {
        for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(topic),
                        RD_KAFKA_V_KEY(key, strlen(key)),
                        RD_KAFKA_V_VALUE((void *)val, len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_END);
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        return e ? -1 : 0;
                rd_kafka_poll(rk, 50);
        }
}

static void *feed(void *arg) {
        struct feeder *f = arg;
        char e[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", f->bootstrap, e, sizeof(e));
        rd_kafka_conf_set(c, "linger.ms", "5", e, sizeof(e));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
        struct veil_codec *codec = NULL;
        struct veil_csv *csv = NULL;
        struct veil_buf buf = {0};
        if (!rk) {
                snprintf(f->err, sizeof(f->err), "feeder: %s", e);
                goto out;
        }
        if (veil_codec_new(&codec, f->cfg, &f->cfg->input, f->err,
                           sizeof(f->err)) ||
            veil_csv_open(&csv, f->events_path, f->err, sizeof(f->err)))
                goto out;
        struct veil_event ev;
        long n = 0, every = 0;
        int rc;
        while ((rc = veil_csv_next(csv, &ev, e, sizeof(e))) == 1) {
                if (veil_codec_encode_event(codec, &ev, &buf, e, sizeof(e)) ||
                    produce(rk, f->cfg->input.topic, ev.user_id, buf.data,
                            buf.len)) {
                        snprintf(f->err, sizeof(f->err), "feeder: %s", e);
                        goto out;
                }
                n++;
                f->fed = n;
                if (f->side && veil_demo_side_produce(f->side, rk, n) < 0) {
                        snprintf(f->err, sizeof(f->err),
                                 "feeder: cannot produce a side-input "
                                 "record");
                        goto out;
                }
                /* Spread the garbage records over the first events. */
                if (f->garbage > 0 && ++every == 997) {
                        every = 0;
                        static const char junk[] = "\x02not avro at all";
                        produce(rk, f->cfg->input.topic, "garbage", junk,
                                sizeof(junk) - 1);
                        f->garbage--;
                        f->garbage_sent++;
                        f->fed = ++n;
                }
                if ((n & 1023) == 0)
                        rd_kafka_poll(rk, 0);
        }
        if (rc < 0)
                snprintf(f->err, sizeof(f->err), "feeder: %s", e);
        rd_kafka_flush(rk, 30000);
out:
        veil_buf_free(&buf);
        veil_csv_close(csv);
        veil_codec_destroy(codec);
        if (rk)
                rd_kafka_destroy(rk);
        f->done = 1;
        return NULL;
}

struct demo_stop {
        struct feeder *f;
        double deadline;
        double first, last; /* first record in, last acknowledgement */
        uint64_t acked;
};

static int demo_should_stop(void *ctx, const struct veil_kafka_stats *st) {
        struct demo_stop *d = ctx;
        if (!d->first && st->records_in)
                d->first = now_s();
        if (st->acked != d->acked) {
                d->acked = st->acked;
                d->last = now_s();
        }
        if (now_s() > d->deadline)
                return 1;
        if (d->f->err[0])
                return 1;
        return d->f->done && st->records_in >= (uint64_t)d->f->fed &&
               st->acked == st->produced;
}

/* One recommendation on a line: subject, event, tier, items, and the
 * explanation the person would see. */
static void print_recommendation(struct veil_codec *codec, const void *buf,
                                 size_t len) {
        const veil_rec_t *r;
        char e[256];
        const char *subject = "", *event = "", *tier = "", *why = "";
        size_t l;
        if (veil_codec_decode_rec(codec, buf, len, &r, e, sizeof(e)))
                return;
        veil_rec_get_str(r, "subject", &subject, &l);
        veil_rec_get_str(r, "event_id", &event, &l);
        veil_rec_get_str(r, "tier", &tier, &l);
        veil_rec_get_str(r, "explanation", &why, &l);
        printf("    %.12s… %s (%s):", subject, event, tier);
        size_t n = veil_rec_array_size(r, "items");
        for (size_t i = 0; i < n && i < 5; i++) {
                const char *item = "";
                veil_rec_get_str(veil_rec_array_at(r, "items", i), "item_id",
                                 &item, &l);
                printf(" %s", item);
        }
        printf("%s — \"%s\"\n", n > 5 ? " …" : "", why);
}

/* Reads an output topic from the beginning to its end: the count, and the
 * first `samples` records as JSON. */
static long read_back(const char *bootstrap, const struct veil_config *cfg,
                      const struct veil_binding *b, int samples) {
        char e[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, e, sizeof(e));
        rd_kafka_conf_set(c, "group.id", "veil-demo-reader", e, sizeof(e));
        rd_kafka_conf_set(c, "enable.partition.eof", "true", e, sizeof(e));
        rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof(e));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
        if (!rk)
                return -1;
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, b->topic, NULL);
        long count = -1;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) || md->topic_cnt != 1) {
                rd_kafka_topic_destroy(rkt);
                rd_kafka_destroy(rk);
                return -1;
        }
        int parts = md->topics[0].partition_cnt;
        rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(parts);
        for (int i = 0; i < parts; i++)
                rd_kafka_topic_partition_list_add(
                        l, b->topic, md->topics[0].partitions[i].id)
                        ->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);

        struct veil_codec *codec = NULL;
        if (b->schema && veil_codec_new(&codec, cfg, b, e, sizeof(e)))
                codec = NULL;
        int eofs = 0;
        count = 0;
        double deadline = now_s() + 20;
        /* Recommendations: also the last few, from a model that has learned
         * by then, with their explanations. */
        int recs = codec && !strcmp(b->name, "recommendations");
        struct veil_buf last[3] = {{0}};
        while (eofs < parts && now_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        eofs++;
                } else if (!m->err) {
                        if (count < samples) {
                                char *json = codec ? veil_codec_rec_json(
                                                             codec, m->payload,
                                                             m->len)
                                                   : NULL;
                                if (json)
                                        printf("    %s\n", json);
                                else {
                                        const char *err = NULL;
                                        rd_kafka_headers_t *h;
                                        size_t sz = 0;
                                        if (!rd_kafka_message_headers(m, &h))
                                                rd_kafka_header_get_last(
                                                        h, "veil.error",
                                                        (const void **)&err,
                                                        &sz);
                                        printf("    %zu bytes, error: %.*s\n",
                                               m->len, (int)sz,
                                               err ? err : "");
                                }
                                free(json);
                        }
                        if (recs && !veil_buf_reserve(&last[count % 3], m->len)) {
                                memcpy(last[count % 3].data, m->payload, m->len);
                                last[count % 3].len = m->len;
                        }
                        count++;
                }
                rd_kafka_message_destroy(m);
        }
        if (recs && count > samples) {
                printf("    … the latest ones, as the person sees them:\n");
                for (long i = count - 3; i < count; i++)
                        if (i >= 0)
                                print_recommendation(codec, last[i % 3].data,
                                                     last[i % 3].len);
        }
        for (int i = 0; i < 3; i++)
                veil_buf_free(&last[i]);
        veil_codec_destroy(codec);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return count;
}

static char *default_pipeline(void) {
        const char *home = getenv("VEIL_HOME");
        char exe[4096], p[4400];
        /* Empty counts as unset, as for every VEIL_ variable: it named
         * /config/pipelines/demo.yaml. */
        if (home && *home) {
                snprintf(p, sizeof(p), "%s/config/pipelines/demo.yaml", home);
                return strdup(p);
        }
        ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (l > 0) {
                exe[l] = '\0';
                *strrchr(exe, '/') = '\0';
                /* build tree: <repo>/build/veil; installed: <prefix>/bin */
                const char *rel[] = {"/../config/pipelines/demo.yaml",
                                     "/../share/veil/config/pipelines/"
                                     "demo.yaml"};
                for (int i = 0; i < 2; i++) {
                        snprintf(p, sizeof(p), "%s%s", exe, rel[i]);
                        if (access(p, R_OK) == 0)
                                return strdup(p);
                }
        }
        return strdup("config/pipelines/demo.yaml");
}

/* The side-input records due before any event, produced and flushed
 * before the pipeline starts: its ledger then holds them when the first
 * event is processed (default deny would drop everyone otherwise). */
static int feed_sides_first(struct feeder *f, char *errstr,
                            size_t errstr_size) {
        char e[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", f->bootstrap, e, sizeof(e));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
        if (!rk) {
                snprintf(errstr, errstr_size, "side-input feeder: %s", e);
                return -1;
        }
        long n = veil_demo_side_produce(f->side, rk, 0);
        int rc = n < 0 || rd_kafka_flush(rk, 30000) ? -1 : 0;
        rd_kafka_destroy(rk);
        if (rc)
                snprintf(errstr, errstr_size,
                         "side-input feeder: records not acknowledged");
        return rc;
}

static void print_summary(const struct veil_cli_pipeline *cp,
                          const struct feeder *f,
                          const struct veil_kafka_stats *st,
                          const struct demo_stop *ds, double secs) {
        const struct veil_pipeline *p = cp->p;
        char *file = realpath(cp->cfg->file, NULL);
        char *events = realpath(f->events_path, NULL);
        printf("\nveil demo — %s on the %s broker\n", file ? file : cp->cfg->file,
               strcmp(cp->cfg->kafka.bootstrap, "embedded") ? "configured"
                                                            : "embedded");
        printf("  records in:     %llu (from %s, with %ld garbage records "
               "mixed in)\n",
               (unsigned long long)st->records_in,
               events ? events : f->events_path, f->garbage_sent);
        free(file);
        free(events);
        printf("  decoded events: %llu   undecodable: %llu\n",
               (unsigned long long)veil_pipeline_events_in(p),
               (unsigned long long)veil_pipeline_decode_errors(p));
        printf("  stages:\n");
        for (size_t i = 0; i < veil_pipeline_n_stages(p); i++) {
                struct veil_stage_stats s = veil_pipeline_stage_stats(p, i);
                printf("    %zu. %-14s in %-8llu out %-8llu dropped %-6llu "
                       "dead letters %llu\n",
                       i + 1, veil_pipeline_stage_name(p, i),
                       (unsigned long long)s.in, (unsigned long long)s.out,
                       (unsigned long long)s.dropped,
                       (unsigned long long)s.dead_letters);
        }
        size_t nd = veil_pipeline_n_drop_reasons(p);
        if (nd) {
                printf("  drops by reason:\n");
                for (size_t i = 0; i < nd; i++) {
                        uint64_t c;
                        const char *r = veil_pipeline_drop_reason(p, i, &c);
                        printf("    %-30s %llu\n", r, (unsigned long long)c);
                }
        }
        printf("  dead letters:   %llu\n",
               (unsigned long long)veil_pipeline_dead_letters(p));
        long before, during;
        veil_demo_side_counts(f->side, &before, &during);
        if (before || during)
                printf("  side records:   %ld before the events, %ld during "
                       "them (consent changes, withdrawals)\n",
                       before, during);
        uint64_t tp = veil_pipeline_tier_count(p, VEIL_TIER_PERSONALIZED),
                 tc = veil_pipeline_tier_count(p, VEIL_TIER_CONTEXTUAL),
                 tn = veil_pipeline_tier_count(p, VEIL_TIER_NONE);
        if (tp + tc + tn)
                printf("  tiers:          personalized %llu   contextual %llu"
                       "   none %llu\n",
                       (unsigned long long)tp, (unsigned long long)tc,
                       (unsigned long long)tn);
        double emax, emean;
        uint64_t ne = veil_pipeline_erasures(p, &emax, &emean);
        if (ne || before || during)
                printf("  erasures:       %llu applied in every stage, "
                       "%llu of them from training only (request to last "
                       "stage's erase: max %.1f ms, mean %.1f ms)\n",
                       (unsigned long long)ne,
                       (unsigned long long)veil_pipeline_training_erasures(p),
                       emax, emean);
        double eps, delta, eps_b, delta_b;
        veil_pipeline_privacy_spent(p, &eps, &delta);
        if (veil_pipeline_privacy_budget(p, &eps_b, &delta_b))
                printf("  privacy:        epsilon %.4g spent of a budget of %.4g "
                       "at delta %.3g (every record carries it)\n",
                       eps, eps_b, delta_b);
        else
                printf("  privacy:        no stage learns under "
                       "differential privacy\n");
        veil_cli_print_gauges(p, 16);
        printf("  batches:        %llu, records produced and acknowledged: "
               "%llu\n",
               (unsigned long long)st->batches,
               (unsigned long long)st->acked);
        double busy = ds->last - ds->first;
        printf("  throughput:     %.0f events/s from the first record in to "
               "the last output acknowledged (%.2f s; %.2f s in all, with "
               "start-up and the consumer group join)\n",
               busy > 0 ? (double)st->records_in / busy : 0.0, busy, secs);
}

#define DEMO_USAGE "usage: veil demo [--configured-broker] [PIPELINE.yaml]\n"

/* The ${NAME} references written in the value at line:col of `file` (the
 * rest of that line), as "A" or "A, B"; "" when there are none. */
static void value_vars(const char *file, int line, int col, char *out,
                       size_t out_size) {
        char buf[4096];
        size_t o = 0;
        out[0] = '\0';
        FILE *f = fopen(file, "r");
        if (!f)
                return;
        for (int l = 1; fgets(buf, sizeof(buf), f); l++) {
                if (l != line)
                        continue;
                const char *p = buf + (col > 1 && (size_t)(col - 1) <
                                                          strlen(buf)
                                               ? col - 1
                                               : 0);
                while ((p = strstr(p, "${"))) {
                        p += 2;
                        size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "abcdefghijklmnopqrstuvwxyz"
                                             "0123456789_");
                        if (n && o < out_size)
                                o += (size_t)snprintf(out + o, out_size - o,
                                                      "%s%.*s", o ? ", " : "",
                                                      (int)n, p);
                }
                break;
        }
        fclose(f);
}

/* The demo writes its events and side-input records (tombstones
 * included) to the pipeline's topics: on the embedded broker unless the
 * user asked for the configured one. VEIL_EXIT_OK when it may run. */
static int check_broker(const char *file, int configured) {
        struct veil_config *cfg;
        char err[8192];
        if (veil_config_load(&cfg, file, err, sizeof(err))) {
                fprintf(stderr, "veil: %s\n", err);
                return VEIL_EXIT_USAGE;
        }
        const char *bs = cfg->kafka.bootstrap;
        if (configured || !strcmp(bs, "embedded")) {
                veil_config_destroy(cfg);
                return VEIL_EXIT_OK;
        }
        const struct veil_node *n = veil_config_get(
                veil_config_get(cfg->root, "kafka"), "bootstrap");
        char vars[512] = "";
        if (n)
                value_vars(cfg->file, n->line, n->col, vars, sizeof(vars));
        char topics[1024];
        size_t o = (size_t)snprintf(topics, sizeof(topics), "'%s'",
                                    cfg->input.topic);
        for (size_t i = 0; i < cfg->n_side_inputs && o < sizeof(topics); i++)
                o += (size_t)snprintf(topics + o, sizeof(topics) - o,
                                      ", '%s'", cfg->side_inputs[i].topic);
        fprintf(stderr,
                "veil demo: %s:%d:%d: kafka.bootstrap is '%s'%s%s%s, not "
                "embedded: the demo would write its events%s to topic%s %s "
                "of that cluster and run the pipeline there (group "
                "'%s').\n",
                cfg->file, n ? n->line : cfg->line, n ? n->col : cfg->col, bs,
                vars[0] ? " (from " : "", vars, vars[0] ? ")" : "",
                cfg->n_side_inputs ? " and side-input records (consent "
                                     "changes, tombstones included)"
                                   : "",
                cfg->n_side_inputs ? "s" : "", topics, cfg->kafka.group);
        if (vars[0] && !strchr(vars, ','))
                fprintf(stderr,
                        "To run on the embedded broker, unset %s (`env -u %s "
                        "veil demo`); to write to that cluster, pass "
                        "--configured-broker.\n",
                        vars, vars);
        else if (vars[0])
                fprintf(stderr,
                        "To run on the embedded broker, unset %s; to write "
                        "to that cluster, pass --configured-broker.\n",
                        vars);
        else
                fprintf(stderr,
                        "To run on the embedded broker, set kafka.bootstrap: "
                        "embedded; to write to that cluster, pass "
                        "--configured-broker.\n");
        veil_config_destroy(cfg);
        return VEIL_EXIT_USAGE;
}

int veil_cmd_demo(int argc, char **argv) {
        if (veil_cli_wants_help(argc, argv)) {
                printf(DEMO_USAGE
                       "Starts the embedded broker (librdkafka's in-process "
                       "mock cluster), produces the events named in the "
                       "pipeline's demo: section (default pipeline: "
                       "config/pipelines/demo.yaml, found through VEIL_HOME "
                       "or beside the executable), its side-input records "
                       "(consent changes, withdrawals by tombstone) and the "
                       "garbage records it asks for to the pipeline's "
                       "topics while "
                       "the pipeline runs, reads every output back and "
                       "prints a summary: events in, per-stage counts, dead "
                       "letters, throughput and a few decoded output "
                       "records. Logs warnings and errors only, unless "
                       "VEIL_LOG_LEVEL sets the level.\n"
                       "The pipeline's kafka.bootstrap must be embedded "
                       "(the demo pipeline's is ${KAFKA_BOOTSTRAP:-embedded}"
                       "): when it names a cluster, for example through "
                       "KAFKA_BOOTSTRAP, veil demo refuses to start (exit "
                       "2) rather than write the demo data there.\n"
                       "--configured-broker: run on the cluster "
                       "kafka.bootstrap names instead, writing the demo's "
                       "events and records to its topics (the demo's own "
                       "producer and reader connect with bootstrap.servers "
                       "alone, without kafka.settings).\n");
                return VEIL_EXIT_OK;
        }
        const char *arg = NULL;
        int configured = 0;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--configured-broker")) {
                        configured = 1;
                } else if (argv[i][0] == '-') {
                        fprintf(stderr,
                                "veil demo: unknown option '%s'\n" DEMO_USAGE,
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else if (arg) {
                        fprintf(stderr,
                                "veil demo: one pipeline only, got an extra "
                                "argument '%s'\n" DEMO_USAGE,
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else {
                        arg = argv[i];
                }
        }
        char *file = arg ? strdup(arg) : default_pipeline();
        int rc = check_broker(file, configured);
        if (rc) {
                free(file);
                return rc;
        }
        veil_cli_quiet_by_default();
        struct veil_cli_pipeline cp;
        rc = veil_cli_open(&cp, file, 0);
        free(file);
        if (rc)
                return rc;
        struct feeder f = {0};
        f.cfg = cp.cfg;
        /* The section was checked as the pipeline loaded. */
        const struct veil_node *ev;
        char derr[1024];
        if (veil_demo_config_parse(cp.cfg, &ev, &f.garbage, derr,
                                   sizeof(derr)))
                ev = NULL;
        if (!ev) {
                fprintf(stderr,
                        "veil demo: %s: the pipeline needs a demo: section "
                        "with events: PATH (a CSV of events)\n",
                        cp.cfg->file);
                veil_cli_close(&cp);
                return VEIL_EXIT_USAGE;
        }
        f.events_path = veil_config_path(cp.cfg, ev->scalar);

        char err[2048];
        struct veil_mock *mock = NULL;
        const char *bootstrap = cp.cfg->kafka.bootstrap;
        if (!strcmp(bootstrap, "embedded")) {
                if (veil_mock_start(&mock, 1, err, sizeof(err)) ||
                    veil_mock_create_topics(mock, cp.cfg, err, sizeof(err))) {
                        fprintf(stderr, "veil demo: %s\n", err);
                        veil_mock_destroy(mock);
                        free(f.events_path);
                        veil_cli_close(&cp);
                        return VEIL_EXIT_RUNTIME;
                }
                bootstrap = veil_mock_bootstrap(mock);
        }
        f.bootstrap = bootstrap;
        if (veil_demo_side_load(&f.side, cp.cfg, err, sizeof(err)) ||
            feed_sides_first(&f, err, sizeof(err))) {
                fprintf(stderr, "veil demo: %s\n", err);
                veil_demo_side_destroy(f.side);
                veil_mock_destroy(mock);
                free(f.events_path);
                veil_cli_close(&cp);
                return VEIL_EXIT_RUNTIME;
        }

        double t0 = now_s();
        pthread_t th;
        pthread_create(&th, NULL, feed, &f);
        struct demo_stop ds = {&f, t0 + 120, 0, 0, 0};
        struct veil_kafka_opts ko = {0};
        ko.bootstrap = bootstrap;
        ko.should_stop = demo_should_stop;
        ko.ctx = &ds;
        struct veil_kafka_stats st;
        rc = veil_kafka_run(cp.p, &ko, &st, err, sizeof(err));
        double secs = now_s() - t0;
        pthread_join(th, NULL);

        if (rc)
                fprintf(stderr, "veil demo: %s\n", err);
        else if (f.err[0])
                fprintf(stderr, "veil demo: %s\n", f.err);
        else if (now_s() > ds.deadline)
                fprintf(stderr, "veil demo: gave up after 120 s\n");
        int failed = rc || f.err[0] || now_s() > ds.deadline;
        print_summary(&cp, &f, &st, &ds, secs);
        printf("  outputs read back from the broker:\n");
        for (size_t i = 0; i < cp.cfg->n_outputs; i++) {
                const struct veil_binding *b = &cp.cfg->outputs[i];
                printf("  %s (topic %s):\n", b->name, b->topic);
                long n = read_back(bootstrap, cp.cfg, b, 3);
                printf("    … %ld records\n", n);
        }
        free(f.events_path);
        veil_demo_side_destroy(f.side);
        veil_cli_close(&cp);
        veil_mock_destroy(mock);
        return failed ? VEIL_EXIT_RUNTIME : VEIL_EXIT_OK;
}

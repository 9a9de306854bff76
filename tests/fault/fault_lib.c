#include "fault_lib.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "arena.h"
#include "codec.h"
#include "config.h"
#include "csv.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "mock.h"
#include "ops.h"
#include "pipeline.h"

#ifndef TEST_ROOT
#error "TEST_ROOT must be defined"
#endif

static const char *const topics[] = {"in", "out", "recs", "dlq"};

double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

long proc_kib(const char *field) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        long v = -1;
        size_t n = strlen(field);
        while (f && fgets(line, sizeof(line), f))
                if (!strncmp(line, field, n) && line[n] == ':')
                        v = atol(line + n + 1);
        if (f)
                fclose(f);
        return v;
}

/* ------------------------------------------------------------------ */
/* The cluster                                                        */
/* ------------------------------------------------------------------ */

/* fault_broker in a child, talking over its stdin and stdout. */
static void start_child(struct fault_env *e) {
        int in[2], out[2];
        assert_int_equal(pipe(in), 0);
        assert_int_equal(pipe(out), 0);
        char brokers[16], parts[16];
        snprintf(brokers, sizeof(brokers), "%d", e->o.brokers);
        snprintf(parts, sizeof(parts), "%d", e->o.partitions);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(in[0], 0);
                dup2(out[1], 1);
                close(in[0]);
                close(in[1]);
                close(out[0]);
                close(out[1]);
                execl(FAULT_BROKER, FAULT_BROKER, brokers, parts, topics[0],
                      topics[1], topics[2], topics[3], (char *)NULL);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        /* A child that died fails the command, not the whole test run. */
        signal(SIGPIPE, SIG_IGN);
        e->child = pid;
        e->to_child = fdopen(in[1], "w");
        e->from_child = fdopen(out[0], "r");
        setvbuf(e->to_child, NULL, _IOLBF, 0);
        char line[256];
        assert_non_null(fgets(line, sizeof(line), e->from_child));
        line[strcspn(line, "\n")] = '\0';
        assert_true(strncmp(line, "bootstrap ", 10) == 0);
        snprintf(e->bootstrap, sizeof(e->bootstrap), "%s", line + 10);
}

long fault_child_cmd(struct fault_env *e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(e->to_child, fmt, ap);
        va_end(ap);
        fputc('\n', e->to_child);
        fflush(e->to_child);
        char line[1024];
        if (!fgets(line, sizeof(line), e->from_child))
                return -1;
        if (strncmp(line, "ok", 2)) {
                fprintf(stderr, "# fault_broker: %s", line);
                return -1;
        }
        return atol(line + 2);
}

struct rd_kafka_mock_cluster_s *fault_cluster(struct fault_env *e) {
        return e->mock ? veil_mock_cluster(e->mock) : NULL;
}

void fault_broker_set(struct fault_env *e, int broker, int up) {
        if (e->mock) {
                rd_kafka_mock_cluster_t *mc = veil_mock_cluster(e->mock);
                assert_int_equal(up ? rd_kafka_mock_broker_set_up(mc, broker)
                                    : rd_kafka_mock_broker_set_down(mc,
                                                                    broker),
                                 0);
        } else {
                assert_int_equal(fault_child_cmd(e, "%s %d",
                                                 up ? "up" : "down", broker),
                                 0);
        }
}

void fault_lead(struct fault_env *e, const char *topic, int partitions,
                int broker) {
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        assert_non_null(mc);
        for (int i = 0; i < partitions; i++)
                assert_int_equal(rd_kafka_mock_partition_set_leader(
                                         mc, topic, i, broker),
                                 0);
        /* The transactional id is "<group>-<instance>" (fault_env_new). */
        char tid[128];
        snprintf(tid, sizeof(tid), "%s-fault-test", e->group);
        assert_int_equal(rd_kafka_mock_coordinator_set(mc, "group", e->group,
                                                       1),
                         0);
        assert_int_equal(rd_kafka_mock_coordinator_set(mc, "transaction",
                                                       tid, 1),
                         0);
}

static void setenv_or_unset(const char *name, const char *value) {
        if (value)
                setenv(name, value, 1);
        else
                unsetenv(name);
}

struct fault_env *fault_env_new(const struct fault_opts *o) {
        struct fault_env *e = calloc(1, sizeof(*e));
        char err[1024];
        assert_non_null(e);
        e->o = *o;
        if (!e->o.yaml)
                e->o.yaml = getenv("FAULT_YAML"); /* e.g. with debug: */
        if (!e->o.yaml)
                e->o.yaml = TEST_ROOT "/tests/fault/fault.yaml";
        if (e->o.brokers <= 0)
                e->o.brokers = 1;
        if (e->o.partitions <= 0)
                e->o.partitions = 3;
        snprintf(e->group, sizeof(e->group), "fault");

        if (e->o.external) {
                start_child(e);
        } else {
                assert_int_equal(veil_mock_start(&e->mock, e->o.brokers, err,
                                                 sizeof(err)),
                                 0);
                snprintf(e->bootstrap, sizeof(e->bootstrap), "%s",
                         veil_mock_bootstrap(e->mock));
                for (size_t i = 0; i < sizeof(topics) / sizeof(*topics); i++)
                        if (!e->o.missing_topic ||
                            strcmp(topics[i], e->o.missing_topic))
                                assert_int_equal(veil_mock_create_topic(
                                                         e->mock, topics[i],
                                                         e->o.partitions, err,
                                                         sizeof(err)),
                                                 0);
                /* The mock cluster answers Metadata up to v2 by default,
                 * which has no AllowAutoTopicCreation field, so it creates
                 * every topic a client asks for. From v4 it heeds the
                 * field, which the host's producer then sends as false
                 * (VEIL_AUTO_CREATE): a missing topic is answered
                 * UNKNOWN_TOPIC_OR_PART, as by a cluster with
                 * auto.create.topics.enable=false. */
                if (e->o.missing_topic)
                        assert_int_equal(rd_kafka_mock_set_apiversion(
                                                 veil_mock_cluster(e->mock),
                                                 3 /* Metadata */, 0, 4),
                                         0);
        }
        assert_true(!e->o.missing_topic || !e->o.external);

        setenv("KAFKA_BOOTSTRAP", e->bootstrap, 1);
        setenv("VEIL_INPUT", "in", 1);
        setenv("VEIL_OUTPUT", "out", 1);
        setenv("VEIL_RECS", "recs", 1);
        setenv("VEIL_DLQ", "dlq", 1);
        setenv("VEIL_GROUP", e->group, 1);
        setenv("VEIL_GUARANTEE",
               e->o.exactly_once ? "exactly-once" : "at-least-once", 1);
        /* An option not given falls back to the YAML's default. */
        setenv_or_unset("VEIL_SESSION_TIMEOUT_MS", e->o.session_timeout_ms);
        setenv_or_unset("VEIL_MESSAGE_TIMEOUT_MS", e->o.message_timeout_ms);
        setenv_or_unset("VEIL_PREFETCH_KB", e->o.prefetch_kb);
        setenv_or_unset("VEIL_QUEUE_MAX", e->o.queue_max);
        setenv_or_unset("VEIL_OFFSET_RESET", e->o.offset_reset);
        setenv_or_unset("VEIL_AUTO_CREATE",
                        e->o.missing_topic ? "false" : NULL);
        setenv_or_unset("VEIL_PROPAGATION_MS", e->o.propagation_ms);
        setenv_or_unset("VEIL_MAX_WAIT_MS", e->o.max_wait_ms);
        /* The transactional id is "<group>-<instance>". */
        setenv("VEIL_INSTANCE_ID", "fault-test", 1);

        if (getenv("FAULT_DEBUG"))
                veil_log_set_level(VEIL_LOG_DEBUG);
        int rc = veil_config_load(&e->cfg, e->o.yaml, err, sizeof(err));
        if (rc)
                fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(veil_keys_load(e->cfg, &e->kr, err, sizeof(err)), 0);
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts po = {path, 1, e->kr, 0};
        rc = veil_pipeline_new(&e->p, e->cfg, &po, err, sizeof(err));
        if (rc)
                fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(veil_ops_new(&e->ops), 0);
        return e;
}

int fault_env_teardown(void **state) {
        fault_env_free(*state);
        return 0;
}

void fault_env_free(struct fault_env *e) {
        if (!e)
                return;
        if (e->feeding) {
                e->feed_stop = 1;
                pthread_join(e->feed_th, NULL);
        }
        if (e->running) {
                /* A test that failed midway: end the run, say how. */
                e->stop = 1;
                pthread_join(e->th, NULL);
                fprintf(stderr, "# run ended with %d%s%s\n", e->rc,
                        e->rc ? ": " : "", e->rc ? e->err : "");
        }
        veil_pipeline_destroy(e->p);
        veil_keyring_destroy(e->kr);
        veil_config_destroy(e->cfg);
        veil_ops_destroy(e->ops);
        if (e->offsets_rk)
                rd_kafka_destroy(e->offsets_rk);
        veil_mock_destroy(e->mock);
        if (e->child) {
                fprintf(e->to_child, "quit\n");
                fclose(e->to_child);
                fclose(e->from_child);
                int st;
                waitpid(e->child, &st, 0);
        }
        free(e);
}

/* ------------------------------------------------------------------ */
/* Feeding                                                            */
/* ------------------------------------------------------------------ */

struct feeder {
        struct veil_codec *c;
        struct veil_csv *csv;
        rd_kafka_t *rk;
        struct veil_buf buf;
        const char *topic;
        size_t size;
        char pad[1024];
};

static void feeder_close(struct feeder *f) {
        if (f->rk)
                rd_kafka_destroy(f->rk);
        veil_buf_free(&f->buf);
        veil_csv_close(f->csv);
        veil_codec_destroy(f->c);
        free(f);
}

static struct feeder *feeder_open(const char *bootstrap, const char *topic,
                                  size_t size, char *err, size_t err_size) {
        struct feeder *f = calloc(1, sizeof(*f));
        if (!f) {
                snprintf(err, err_size, "feeder: out of memory");
                return NULL;
        }
        f->topic = topic;
        f->size = size;
        memset(f->pad, 'x', sizeof(f->pad) - 1);
        if (veil_codec_new_file(&f->c, TEST_ROOT "/schemas/interaction.avsc",
                                VEIL_FRAMING_RAW, 0, err, err_size))
                goto fail;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* The producer retries through an outage of the test's making
         * (librdkafka's default: 5 minutes); idempotent, so that a retry
         * never puts an event into the input twice. */
        if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                              err_size) ||
            rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                              err_size) ||
            rd_kafka_conf_set(conf, "linger.ms", "20", err, err_size) ||
            rd_kafka_conf_set(conf, "log_level", "3", err, err_size)) {
                rd_kafka_conf_destroy(conf);
                goto fail;
        }
        if (!(f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, err_size))) {
                rd_kafka_conf_destroy(conf);
                goto fail;
        }
        return f;
fail:
        feeder_close(f);
        return NULL;
}

/* Produces event e<id>. */
static int feeder_one(struct feeder *f, long id, char *err,
                      size_t err_size) {
        struct veil_event ev;
        int r = f->csv ? veil_csv_next(f->csv, &ev, err, err_size) : 0;
        if (r == 0) {
                /* The demo's 20000 rows, round and round. */
                veil_csv_close(f->csv);
                f->csv = NULL;
                if (veil_csv_open(&f->csv,
                                  TEST_ROOT "/config/demo/events.csv", err,
                                  err_size))
                        return -1;
                r = veil_csv_next(f->csv, &ev, err, err_size);
        }
        if (r != 1)
                return -1;
        char key[32];
        snprintf(key, sizeof(key), "e%ld", id);
        ev.event_id = key;
        if (veil_codec_encode_event(f->c, &ev, &f->buf, err, err_size))
                return -1;
        if (f->size && f->buf.len + 3 < f->size) {
                /* A long user agent brings it to about `size`. */
                size_t ua = f->size - f->buf.len - 3;
                if (ua > sizeof(f->pad) - 1)
                        ua = sizeof(f->pad) - 1;
                ev.ctx.user_agent = f->pad + (sizeof(f->pad) - 1 - ua);
                if (veil_codec_encode_event(f->c, &ev, &f->buf, err,
                                            err_size))
                        return -1;
        }
        for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                        f->rk, RD_KAFKA_V_TOPIC(f->topic),
                        RD_KAFKA_V_KEY(key, strlen(key)),
                        RD_KAFKA_V_VALUE(f->buf.data, f->buf.len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_END);
                if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        rd_kafka_poll(f->rk, 50);
                        continue;
                }
                if (e) {
                        snprintf(err, err_size, "produce: %s",
                                 rd_kafka_err2str(e));
                        return -1;
                }
                rd_kafka_poll(f->rk, 0);
                return 0;
        }
}

static int feeder_flush(struct feeder *f, char *err, size_t err_size) {
        if (rd_kafka_flush(f->rk, 120000)) {
                snprintf(err, err_size, "feeder: %d record(s) not delivered "
                         "within 120 s", rd_kafka_outq_len(f->rk));
                return -1;
        }
        return 0;
}

int fault_produce_events(const char *bootstrap, const char *topic,
                         long first, long n, size_t size, char *err,
                         size_t err_size) {
        struct feeder *f = feeder_open(bootstrap, topic, size, err, err_size);
        if (!f)
                return -1;
        int rc = 0;
        for (long i = 0; i < n && !rc; i++)
                rc = feeder_one(f, first + i, err, err_size);
        if (!rc)
                rc = feeder_flush(f, err, err_size);
        feeder_close(f);
        return rc;
}

/* A steady stream of events into "in", on its own thread. */
static void *feed_steadily(void *arg) {
        struct fault_env *e = arg;
        char err[1024] = "";
        struct feeder *f = feeder_open(e->bootstrap, "in", e->feed_size, err,
                                       sizeof(err));
        int rc = f ? 0 : -1;
        double t0 = now_s();
        long n = 0;
        while (!rc && !e->feed_stop) {
                /* Catch up with the rate, in steps of 10 ms. */
                long due = (long)((now_s() - t0) * e->feed_rate);
                while (!rc && n < due)
                        rc = feeder_one(f, e->fed + 1 + n++, err, sizeof(err));
                sleep_ms(10);
        }
        if (!rc)
                rc = feeder_flush(f, err, sizeof(err));
        if (f)
                feeder_close(f);
        if (rc)
                fprintf(stderr, "# feeder: %s\n", err);
        e->feed_rc = rc;
        e->feed_n = n;
        return NULL;
}

void fault_feed_start(struct fault_env *e, long per_s, size_t size) {
        e->feed_rate = per_s;
        e->feed_size = size;
        e->feed_stop = 0;
        assert_int_equal(pthread_create(&e->feed_th, NULL, feed_steadily, e),
                         0);
        e->feeding = 1;
}

void fault_feed_stop(struct fault_env *e) {
        e->feed_stop = 1;
        pthread_join(e->feed_th, NULL);
        e->feeding = 0;
        assert_int_equal(e->feed_rc, 0);
        e->fed += e->feed_n;
}

void fault_feed(struct fault_env *e, long n, size_t size) {
        char err[1024] = "";
        if (e->child) {
                assert_int_equal(fault_child_cmd(e, "feed in %ld %ld %zu",
                                                 e->fed + 1, n, size),
                                 n);
        } else {
                int rc = fault_produce_events(e->bootstrap, "in", e->fed + 1,
                                              n, size, err, sizeof(err));
                if (rc)
                        fprintf(stderr, "# feed: %s\n", err);
                assert_int_equal(rc, 0);
        }
        e->fed += n;
}

/* ------------------------------------------------------------------ */
/* The run                                                            */
/* ------------------------------------------------------------------ */

static int should_stop(void *ctx, const struct veil_kafka_stats *st) {
        struct fault_env *e = ctx;
        e->records_in = st->records_in;
        e->produced = st->produced;
        e->acked = st->acked;
        e->retried = st->retried;
        e->aborted = st->aborted;
        e->commits = st->commits;
        if (e->stop || now_s() > e->deadline)
                return 1;
        if (e->hook && e->hook(e, st))
                return 1;
        /* Exactly-once on the mock cluster: an aborted transaction's
         * records stay visible (no transaction markers there), so the
         * test fails on it at once rather than at its deadline. */
        if (st->aborted && !e->o.allow_aborts)
                return 1;
        return e->target > 0 && st->records_in >= (uint64_t)e->target &&
               st->acked == st->produced;
}

/* A reload: the pipeline built again from the same file, as
 * fault_env_new builds it. */
static int reload_open(void *ctx, const struct veil_pipeline *cur,
                       struct veil_pipeline **next, char *err,
                       size_t err_size) {
        struct fault_env *e = ctx;
        (void)cur;
        e->reloads_opened++;
        if (e->feed_on_reload > 0) {
                long n = e->feed_on_reload;
                e->feed_on_reload = 0;
                fault_feed(e, n, 0);
        }
        int rc = veil_config_load(&e->next_cfg, e->o.yaml, err, err_size);
        if (rc)
                return rc;
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts po = {path, 1, e->kr, 0};
        rc = veil_pipeline_new(&e->next_p, e->next_cfg, &po, err, err_size);
        if (rc) {
                veil_config_destroy(e->next_cfg);
                e->next_cfg = NULL;
                return rc;
        }
        *next = e->next_p;
        return 0;
}

static void reload_close(void *ctx, int swapped) {
        struct fault_env *e = ctx;
        if (swapped) {
                e->reloads_swapped++;
                veil_pipeline_destroy(e->p);
                veil_config_destroy(e->cfg);
                e->p = e->next_p;
                e->cfg = e->next_cfg;
        } else {
                e->reloads_kept++;
                veil_pipeline_destroy(e->next_p);
                veil_config_destroy(e->next_cfg);
        }
        e->next_p = NULL;
        e->next_cfg = NULL;
}

static void *run(void *arg) {
        struct fault_env *e = arg;
        struct veil_kafka_opts o = {0};
        o.bootstrap = e->bootstrap;
        o.stop = &e->sigterm;
        o.should_stop = should_stop;
        o.ctx = e;
        o.shutdown_timeout_ms = 60000;
        o.ops = e->ops;
        o.max_inflight = e->o.max_inflight;
        o.state_idle_ms = e->o.state_idle_ms;
        o.reload = &e->reload;
        o.reload_open = reload_open;
        o.reload_close = reload_close;
        o.reload_ctx = e;
        e->rc = veil_kafka_run(e->p, &o, &e->st, e->err, sizeof(e->err));
        e->ended = 1;
        return NULL;
}

void fault_run_start(struct fault_env *e, long target, double timeout_s) {
        e->target = target;
        e->deadline = now_s() + timeout_s;
        assert_int_equal(pthread_create(&e->th, NULL, run, e), 0);
        e->running = 1;
}

void fault_run_join(struct fault_env *e) {
        pthread_join(e->th, NULL);
        e->running = 0;
        if (e->rc)
                fprintf(stderr, "# run: %s\n", e->err);
        assert_int_equal(e->rc, 0);
        fprintf(stderr,
                "# run: %llu records in, %llu produced, %llu acked, "
                "%llu retried, %llu commits, %llu aborted\n",
                (unsigned long long)e->st.records_in,
                (unsigned long long)e->st.produced,
                (unsigned long long)e->st.acked,
                (unsigned long long)e->st.retried,
                (unsigned long long)e->st.commits,
                (unsigned long long)e->st.aborted);
        assert_true(now_s() < e->deadline);
}

int fault_ready(struct fault_env *e, char *why, size_t why_size) {
        return veil_ops_ready(e->ops, why, why_size);
}

/* A client of the host's group that never subscribes: it only asks for
 * the group's committed offsets. */
static rd_kafka_t *offsets_client(struct fault_env *e) {
        char err[512];
        if (!e->offsets_rk) {
                rd_kafka_conf_t *c = rd_kafka_conf_new();
                rd_kafka_conf_set(c, "bootstrap.servers", e->bootstrap, err,
                                  sizeof(err));
                rd_kafka_conf_set(c, "group.id", e->group, err, sizeof(err));
                rd_kafka_conf_set(c, "log_level", "0", err, sizeof(err));
                e->offsets_rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err,
                                             sizeof(err));
                assert_non_null(e->offsets_rk);
        }
        return e->offsets_rk;
}

int fault_all_committed(struct fault_env *e) {
        rd_kafka_t *rk = offsets_client(e);
        rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(e->o.partitions);
        for (int i = 0; i < e->o.partitions; i++)
                rd_kafka_topic_partition_list_add(l, "in", i);
        rd_kafka_resp_err_t err0 = rd_kafka_committed(rk, l, 5000);
        int all = err0 == RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int i = 0; all && i < l->cnt; i++) {
                int64_t lo = -1, hi = -1;
                all = !l->elems[i].err &&
                      !rd_kafka_query_watermark_offsets(rk, "in", i, &lo, &hi,
                                                        5000) &&
                      l->elems[i].offset >= hi;
                if (getenv("FAULT_DEBUG"))
                        fprintf(stderr, "# in [%d] committed %lld, end %lld\n",
                                i, (long long)l->elems[i].offset,
                                (long long)hi);
        }
        if (getenv("FAULT_DEBUG") && err0)
                fprintf(stderr, "# committed offsets: %s\n",
                        rd_kafka_err2str(err0));
        rd_kafka_topic_partition_list_destroy(l);
        return all;
}

/* ------------------------------------------------------------------ */
/* Checking                                                           */
/* ------------------------------------------------------------------ */

rd_kafka_t *fault_reader(struct fault_env *e, const char *topic,
                         const char *group) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", e->bootstrap, err,
                          sizeof(err));
        rd_kafka_conf_set(c, "group.id", group, err, sizeof(err));
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
        rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err));
        rd_kafka_conf_set(c, "isolation.level", "read_committed", err,
                          sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        assert_non_null(rk);
        rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(e->o.partitions);
        for (int i = 0; i < e->o.partitions; i++)
                rd_kafka_topic_partition_list_add(l, topic, i)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        return rk;
}

int fault_read_all(struct fault_env *e, const char *topic, const char *group,
                   void (*each)(const rd_kafka_message_t *m, int i,
                                void *ctx),
                   void *ctx) {
        rd_kafka_t *rk = fault_reader(e, topic, group);
        rd_kafka_topic_partition_list_t *a = NULL;
        assert_int_equal(rd_kafka_assignment(rk, &a), 0);
        int parts = a->cnt;
        rd_kafka_topic_partition_list_destroy(a);
        assert_true(parts > 0 && parts <= 64);
        unsigned char at_end[64] = {0};
        int n = 0, eof = 0;
        double deadline = now_s() + 60;
        while (eof < parts && now_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (m->partition >= 0 && m->partition < 64 &&
                            !at_end[m->partition]) {
                                at_end[m->partition] = 1;
                                eof++;
                        }
                } else if (!m->err) {
                        if (each)
                                each(m, n, ctx);
                        n++;
                }
                rd_kafka_message_destroy(m);
        }
        assert_int_equal(eof, parts);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return n;
}

void fault_header(const rd_kafka_message_t *m, const char *name, char *buf,
                  size_t size) {
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t len;
        buf[0] = '\0';
        if (!rd_kafka_message_headers(m, &h) &&
            !rd_kafka_header_get_last(h, name, &v, &len))
                snprintf(buf, size, "%.*s", (int)len, (const char *)v);
}

void fault_count_out(struct fault_env *e, struct fault_count *cnt) {
        char err[512];
        rd_kafka_t *rk = fault_reader(e, "out", "checker");
        struct veil_codec *codec;
        assert_int_equal(veil_codec_new(&codec, e->cfg,
                                        veil_config_output(e->cfg, "events"),
                                        err, sizeof(err)),
                         0);
        struct veil_arena arena;
        veil_arena_init(&arena, 1 << 16, 0);
        unsigned short *seen = calloc((size_t)e->fed + 1, sizeof(*seen));
        unsigned char *eof = calloc((size_t)e->o.partitions, 1);
        int eofs = 0;
        memset(cnt, 0, sizeof(*cnt));
        double t0 = now_s(), deadline = t0 + 60;
        while (eofs < e->o.partitions && now_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (m->partition >= 0 &&
                            m->partition < e->o.partitions &&
                            !eof[m->partition]) {
                                eof[m->partition] = 1;
                                eofs++;
                        }
                } else if (!m->err) {
                        struct veil_event ev;
                        assert_int_equal(veil_codec_decode_event(
                                                 codec, m->payload, m->len,
                                                 &ev, &arena, err, sizeof(err)),
                                         0);
                        long id = atol(ev.event_id + 1);
                        assert_true(id >= 1 && id <= e->fed);
                        if (seen[id] < 65535)
                                seen[id]++;
                        cnt->records++;
                        veil_arena_reset(&arena);
                }
                rd_kafka_message_destroy(m);
        }
        cnt->secs = now_s() - t0;
        if (eofs < e->o.partitions)
                fprintf(stderr, "# checker: %d of %d partitions read to their "
                        "end in %.0f s\n", eofs, e->o.partitions, cnt->secs);
        assert_int_equal(eofs, e->o.partitions);
        for (long i = 1; i <= e->fed; i++) {
                cnt->missing += !seen[i];
                cnt->distinct += seen[i] > 0;
                cnt->dups += seen[i] > 1 ? seen[i] - 1 : 0;
        }
        free(eof);
        free(seen);
        veil_arena_free(&arena);
        veil_codec_destroy(codec);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
}

void fault_out_once(struct fault_env *e, const char *what) {
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count(what, e, &c);
        assert_int_equal(c.missing, 0);
        assert_int_equal(c.dups, 0);
}

void fault_produce(struct fault_env *e, const char *topic, const char *key,
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

void fault_produce_big(struct fault_env *e, const char *key, size_t key_len,
                       const void *value, size_t len) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(c, "bootstrap.servers",
                                           e->bootstrap, err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        assert_int_equal(rd_kafka_conf_set(c, "message.max.bytes", "2000000",
                                           err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        assert_non_null(rk);
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("in"),
                                           RD_KAFKA_V_KEY(key, key_len),
                                           RD_KAFKA_V_VALUE((void *)value,
                                                            len),
                                           RD_KAFKA_V_MSGFLAGS(
                                                   RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
        assert_int_equal(rd_kafka_flush(rk, 30000), 0);
        rd_kafka_destroy(rk);
}

size_t fault_big_event(struct fault_env *e) {
        char err[512], id[32];
        struct veil_csv *csv;
        struct veil_event ev;
        assert_int_equal(veil_csv_open(&csv,
                                       TEST_ROOT "/config/demo/events.csv",
                                       err, sizeof(err)),
                         0);
        assert_int_equal(veil_csv_next(csv, &ev, err, sizeof(err)), 1);
        size_t n = 1100000; /* over the producer's 1,000,000 */
        char *type = malloc(n + 1);
        assert_non_null(type);
        memset(type, 'u', n);
        type[n] = '\0';
        snprintf(id, sizeof(id), "e%ld", e->fed + 1);
        ev.event_id = id;
        ev.type = type;
        struct veil_codec *codec;
        assert_int_equal(veil_codec_new_file(&codec,
                                             TEST_ROOT
                                             "/schemas/interaction.avsc",
                                             VEIL_FRAMING_RAW, 0, err,
                                             sizeof(err)),
                         0);
        struct veil_buf b = {0};
        assert_int_equal(veil_codec_encode_event(codec, &ev, &b, err,
                                                 sizeof(err)),
                         0);
        assert_true(b.len > n && b.len < 2000000);
        fault_produce_big(e, id, strlen(id), b.data, b.len);
        size_t len = b.len;
        veil_buf_free(&b);
        veil_codec_destroy(codec);
        veil_csv_close(csv);
        free(type);
        e->fed++;
        return len;
}

void fault_produce_garbage(struct fault_env *e, const char *topic,
                           long n) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(c, "bootstrap.servers",
                                           e->bootstrap, err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        assert_int_equal(rd_kafka_conf_set(c, "linger.ms", "20", err,
                                           sizeof(err)),
                         RD_KAFKA_CONF_OK);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        assert_non_null(rk);
        for (long i = 0; i < n; i++) {
                char key[32];
                snprintf(key, sizeof(key), "g%ld", i);
                rd_kafka_resp_err_t r;
                while ((r = rd_kafka_producev(
                                rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE("\x02\x37garbage", 9),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END)) ==
                       RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(rk, 50);
                assert_int_equal(r, 0);
        }
        assert_int_equal(rd_kafka_flush(rk, 60000), 0);
        rd_kafka_destroy(rk);
}

void fault_print_count(const char *what, const struct fault_env *e,
                       const struct fault_count *c) {
        fprintf(stderr,
                "# %s: %ld events in, %ld records out, %ld distinct, "
                "%ld missing, %ld duplicates (%llu produced again, %llu "
                "aborted; read in %.1f s)\n",
                what, e->fed, c->records, c->distinct, c->missing, c->dups,
                (unsigned long long)e->st.retried,
                (unsigned long long)e->st.aborted, c->secs);
}

void fault_run_join_failed(struct fault_env *e) {
        pthread_join(e->th, NULL);
        e->running = 0;
        assert_int_not_equal(e->rc, 0);
}

int64_t fault_committed(struct fault_env *e, int partition) {
        rd_kafka_t *rk = offsets_client(e);
        rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, "in", partition);
        assert_int_equal(rd_kafka_committed(rk, l, 5000), 0);
        int64_t off = l->elems[0].err ? -1 : l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        return off;
}

/* A record of schemas/consent.avsc for `user`, to fill; one codec for
 * the process (never freed). */
static veil_rec_t *consent_rec(struct veil_codec **c, const char *user) {
        static struct veil_codec *codec;
        char err[512];
        if (!codec)
                assert_int_equal(veil_codec_new_file(&codec,
                                                     TEST_ROOT
                                                     "/schemas/consent.avsc",
                                                     VEIL_FRAMING_RAW, 0, err,
                                                     sizeof(err)),
                                 0);
        *c = codec;
        veil_rec_t *r = veil_codec_rec_begin(codec);
        assert_int_equal(veil_rec_set_str(r, "user_id", user), 0);
        assert_int_equal(veil_rec_set_long(r, "ts", 1700000000000LL), 0);
        return r;
}

static void consent_encode(struct veil_codec *c, struct veil_buf *b) {
        char err[512];
        if (veil_codec_rec_encode(c, b, err, sizeof(err)))
                fail_msg("consent record: %s", err);
}

void fault_consent_grant(const char *user, struct veil_buf *b) {
        struct veil_codec *c;
        veil_rec_t *r = consent_rec(&c, user);
        assert_int_equal(veil_rec_set_bool(r, "purposes.personalization", 1),
                         0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.training", 1), 0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.analytics", 1), 0);
        assert_int_equal(veil_rec_set_str(r, "source", "cmp"), 0);
        consent_encode(c, b);
}

void fault_consent_access(const char *user, struct veil_buf *b) {
        struct veil_codec *c;
        veil_rec_t *r = consent_rec(&c, user);
        assert_int_equal(veil_rec_set_str(r, "kind", "access"), 0);
        assert_int_equal(veil_rec_set_str(r, "source", "support_desk"), 0);
        consent_encode(c, b);
}

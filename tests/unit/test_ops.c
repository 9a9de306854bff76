/*
 * test_ops — the operations side of the host without Kafka: the metrics
 * registry and its Prometheus text, the http: and log: sections, what a
 * reload may change, and the HTTP endpoints over a real socket (the test
 * plays the pipeline loop's part through the ops state).
 */
#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec_int.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "observe.h"
#include "ops.h"
#include "reload.h"

/* ---- metrics ---- */

/* noinline: GCC 12 at -O3 (Release) inlines it and then takes a pointer
 * into the returned text for one into this frame (-Wdangling-pointer). */
static __attribute__((noinline)) char *render(struct veil_metrics *m) {
        char *out;
        size_t len;
        assert_int_equal(veil_metrics_render(m, &out, &len), 0);
        assert_int_equal(strlen(out), len);
        return out;
}

static void test_counters_gauges(void **st) {
        (void)st;
        struct veil_metrics *m;
        assert_int_equal(veil_metrics_new(&m), 0);
        assert_int_equal(veil_metrics_declare(m, "x_total",
                                              VEIL_METRIC_COUNTER,
                                              "Things.\nSecond line", NULL, 0),
                         0);
        assert_int_equal(veil_metrics_declare(m, "bad name",
                                              VEIL_METRIC_GAUGE, "", NULL, 0),
                         -VEIL_EINVAL);
        assert_int_equal(veil_metrics_declare(m, "9x", VEIL_METRIC_GAUGE, "",
                                              NULL, 0),
                         -VEIL_EINVAL);
        char lb[128];
        veil_metrics_labels(lb, sizeof(lb), "stage", "a\"b\\c\nd", NULL);
        assert_string_equal(lb, "stage=\"a\\\"b\\\\c\\nd\"");
        /* Non-ASCII bytes become '?': a value cut inside a character
         * would be invalid UTF-8, which fails the whole scrape. */
        char lb2[16];
        veil_metrics_labels(lb2, sizeof(lb2), "s", "caf\xc3\xa9\xc3\xa9", NULL);
        assert_string_equal(lb2, "s=\"caf????\"");
        veil_metrics_labels(lb2, sizeof(lb2), "s", "\xfe", NULL);
        assert_string_equal(lb2, "s=\"?\"");
        assert_int_equal(veil_metrics_add(m, "x_total", lb, 2), 0);
        assert_int_equal(veil_metrics_add(m, "x_total", lb, 3), 0);
        assert_int_equal(veil_metrics_add(m, "nope_total", "", 1),
                         -VEIL_ENOENT);
        /* set declares a gauge for a plugin's value */
        assert_int_equal(veil_metrics_set(m, "veil_plugin_p_size", "", 0.25),
                         0);
        double v;
        assert_int_equal(veil_metrics_get(m, "x_total", lb, &v), 0);
        assert_true(v == 5);
        char *out = render(m);
        assert_non_null(strstr(out, "# HELP x_total Things.\\nSecond line\n"
                                    "# TYPE x_total counter\n"
                                    "x_total{stage=\"a\\\"b\\\\c\\nd\"} 5\n"));
        assert_non_null(strstr(out, "# TYPE veil_plugin_p_size gauge\n"
                                    "veil_plugin_p_size 0.25\n"));
        free(out);
        veil_metrics_clear(m, "x_total");
        assert_int_equal(veil_metrics_get(m, "x_total", lb, &v),
                         -VEIL_ENOENT);
        out = render(m);
        assert_null(strstr(out, "x_total"));
        free(out);
        veil_metrics_destroy(m);
}

/* A reload forgets the plugins' gauges (veil_observe_reset): a stage the
 * new pipeline lacks leaves no stale value. Counters stay, other gauges
 * stay, and the kept series are still found after the families move up.
 * The host's budget and side-input gauges lose their series only. */
static void test_forget_plugin_gauges(void **st) {
        (void)st;
        struct veil_metrics *m;
        struct veil_observe *o;
        assert_int_equal(veil_metrics_new(&m), 0);
        assert_int_equal(veil_observe_new(&o, m), 0);
        char lb[64], lb2[64];
        veil_metrics_labels(lb, sizeof(lb), "stage", "dp_model", NULL);
        veil_metrics_labels(lb2, sizeof(lb2), "stage", "gone", NULL);
        assert_int_equal(veil_metrics_set(m, "veil_plugin_gone_size", lb2, 7),
                         0);
        assert_int_equal(veil_metrics_add(m, "veil_plugin_errors_total", lb,
                                          2),
                         0);
        assert_int_equal(veil_metrics_set(m, "veil_plugin_dp_model_steps",
                                          lb, 3),
                         0);
        assert_int_equal(veil_metrics_set(m, "veil_other_gauge", "", 1), 0);
        /* The budget of a pipeline reloaded away, an input renamed: gone;
         * the ε spent (carried over) and the counters stay. */
        assert_int_equal(veil_metrics_set(m, "veil_privacy_epsilon_budget", "",
                                          8),
                         0);
        assert_int_equal(veil_metrics_set(m, "veil_privacy_epsilon_spent", "",
                                          2),
                         0);
        char lbi[64];
        veil_metrics_labels(lbi, sizeof(lbi), "input", "old", NULL);
        assert_int_equal(veil_metrics_set(m, "veil_side_input_caught_up", lbi,
                                          1),
                         0);
        assert_int_equal(veil_metrics_add(m, "veil_side_input_records_total",
                                          lbi, 5),
                         0);
        veil_observe_reset(o);
        double v;
        assert_int_equal(veil_metrics_get(m, "veil_privacy_epsilon_budget", "",
                                          &v),
                         -VEIL_ENOENT);
        assert_int_equal(veil_metrics_get(m, "veil_side_input_caught_up", lbi,
                                          &v),
                         -VEIL_ENOENT);
        assert_int_equal(veil_metrics_get(m, "veil_privacy_epsilon_spent", "",
                                          &v),
                         0);
        assert_int_equal(veil_metrics_get(m, "veil_side_input_records_total",
                                          lbi, &v),
                         0);
        assert_int_equal(veil_metrics_get(m, "veil_plugin_gone_size", lb2,
                                          &v),
                         -VEIL_ENOENT);
        assert_int_equal(veil_metrics_get(m, "veil_plugin_dp_model_steps", lb,
                                          &v),
                         -VEIL_ENOENT);
        char *out = render(m);
        assert_null(strstr(out, "veil_plugin_gone_size"));
        assert_null(strstr(out, "veil_plugin_dp_model_steps"));
        assert_non_null(strstr(out, "veil_other_gauge 1\n"));
        free(out);
        /* The counter's series found again (one series, added to). */
        assert_int_equal(veil_metrics_add(m, "veil_plugin_errors_total", lb,
                                          1),
                         0);
        assert_int_equal(veil_metrics_get(m, "veil_plugin_errors_total", lb,
                                          &v),
                         0);
        assert_true(v == 3);
        /* A family declared after the forgotten ones moved up: its
         * series is found at its new place, not made twice. */
        assert_int_equal(veil_metrics_set(m, "veil_other_gauge", "", 2), 0);
        /* The stage still there sets its gauge again: one family. */
        assert_int_equal(veil_metrics_set(m, "veil_plugin_dp_model_steps",
                                          lb, 4),
                         0);
        out = render(m);
        const char *a = strstr(out, "# TYPE veil_plugin_dp_model_steps");
        assert_non_null(a);
        assert_null(strstr(a + 1, "# TYPE veil_plugin_dp_model_steps"));
        assert_non_null(strstr(out, "veil_plugin_errors_total{stage=\"dp_model\"} 3\n"));
        assert_non_null(strstr(out, "veil_plugin_dp_model_steps{stage=\"dp_model\"} 4\n"));
        assert_non_null(strstr(out, "veil_other_gauge 2\n"));
        assert_null(strstr(out, "veil_other_gauge 1\n"));
        free(out);
        /* The host's gauges set again by the new pipeline keep their own
         * help and their place (before the reload counters declared after
         * them), not a plugin gauge's at the end of the page. */
        assert_int_equal(veil_metrics_set(m, "veil_privacy_epsilon_budget", "",
                                          9),
                         0);
        assert_int_equal(veil_metrics_set(m, "veil_side_input_caught_up", lbi,
                                          0),
                         0);
        out = render(m);
        const char *budget = strstr(out, "# HELP veil_privacy_epsilon_budget "
                                         "The epsilon budget the pipeline "
                                         "enforces.\n"
                                         "# TYPE veil_privacy_epsilon_budget "
                                         "gauge\n"
                                         "veil_privacy_epsilon_budget 9\n");
        const char *side = strstr(out, "# HELP veil_side_input_caught_up 1 "
                                       "when a side input");
        const char *reloads = strstr(out, "# HELP veil_reloads_total");
        assert_non_null(budget);
        assert_non_null(side);
        assert_non_null(reloads);
        assert_true(side < budget && budget < reloads);
        free(out);
        veil_observe_destroy(o);
        veil_metrics_destroy(m);
}

static void test_histogram(void **st) {
        (void)st;
        struct veil_metrics *m;
        assert_int_equal(veil_metrics_new(&m), 0);
        const double b[] = {0.005, 0.1, 1};
        const double unsorted[] = {1, 0.5};
        assert_int_equal(veil_metrics_declare(m, "h", VEIL_METRIC_HISTOGRAM,
                                              "", unsorted, 2),
                         -VEIL_EINVAL);
        assert_int_equal(veil_metrics_declare(m, "h_seconds",
                                              VEIL_METRIC_HISTOGRAM, "", b, 3),
                         0);
        const double obs[] = {0.001, 0.005, 0.05, 2, NAN, 0.5};
        assert_int_equal(veil_metrics_observe(m, "h_seconds", "", obs, 6), 0);
        assert_int_equal(veil_metrics_add(m, "h_seconds", "", 1),
                         -VEIL_EINVAL);
        char *out = render(m);
        /* cumulative, bounds inclusive, NaN ignored, +Inf = count */
        assert_non_null(strstr(out, "h_seconds_bucket{le=\"0.005\"} 2\n"
                                    "h_seconds_bucket{le=\"0.1\"} 3\n"
                                    "h_seconds_bucket{le=\"1\"} 4\n"
                                    "h_seconds_bucket{le=\"+Inf\"} 5\n"
                                    "h_seconds_sum 2.556\n"
                                    "h_seconds_count 5\n"));
        free(out);
        veil_metrics_destroy(m);
}

static void test_series_cap(void **st) {
        (void)st;
        struct veil_metrics *m;
        assert_int_equal(veil_metrics_new(&m), 0);
        veil_metrics_declare(m, "g", VEIL_METRIC_GAUGE, "", NULL, 0);
        char lb[64], n[16];
        for (int i = 0; i < VEIL_METRICS_MAX_SERIES + 10; i++) {
                snprintf(n, sizeof(n), "%d", i);
                veil_metrics_labels(lb, sizeof(lb), "i", n, NULL);
                int rc = veil_metrics_set(m, "g", lb, i);
                assert_int_equal(rc, i < VEIL_METRICS_MAX_SERIES
                                             ? 0
                                             : -VEIL_ENOMEM);
        }
        char *out = render(m);
        assert_non_null(strstr(out, "veil_metrics_series_dropped_total 10\n"));
        free(out);
        veil_metrics_destroy(m);
}

/* ---- http: and log: sections ---- */

static int parse_http(const char *yaml_http, struct veil_http_config *hc,
                      char *err, size_t err_size) {
        char text[1024];
        snprintf(text, sizeof(text),
                 "kafka: {bootstrap: embedded, group: g}\n"
                 "input: {topic: t, schema: s.avsc}\n"
                 "outputs: {dead_letter: {topic: d}}\n"
                 "plugins: [{use: popular}]\n"
                 "%s\n",
                 yaml_http);
        struct veil_config *cfg;
        int rc = veil_config_parse(&cfg, "p.yaml", text, strlen(text), err,
                                   err_size);
        assert_int_equal(rc, 0);
        rc = veil_http_config_parse(cfg, hc, err, err_size);
        veil_config_destroy(cfg);
        return rc;
}

static void test_http_config(void **st) {
        (void)st;
        struct veil_http_config hc;
        char err[512];
        assert_int_equal(parse_http("", &hc, err, sizeof(err)), 0);
        assert_int_equal(hc.enabled, 0);
        assert_int_equal(parse_http("http: {}", &hc, err, sizeof(err)), 0);
        assert_int_equal(hc.enabled, 1);
        assert_string_equal(hc.host, "0.0.0.0");
        assert_int_equal(hc.port, 9464);
        assert_int_equal(hc.reload, 0);
        assert_int_equal(hc.liveness_timeout_ms, 60000);
        assert_int_equal(parse_http("http: {listen: \"[::1]:0\", reload: "
                                    "true, liveness_timeout_ms: 5000}",
                                    &hc, err, sizeof(err)),
                         0);
        assert_string_equal(hc.host, "::1");
        assert_int_equal(hc.port, 0);
        assert_int_equal(hc.reload, 1);
        assert_int_equal(hc.liveness_timeout_ms, 5000);
        assert_int_equal(parse_http("http: {listen: \":8080\"}", &hc, err,
                                    sizeof(err)),
                         0);
        assert_string_equal(hc.host, "");
        assert_int_equal(hc.port, 8080);

        static const struct {
                const char *yaml, *want;
        } bad[] = {
                {"http: {listen: localhost}", "p.yaml:5:16: http: listen "
                                              "'localhost' must be HOST:PORT"},
                {"http: {listen: \"h:70000\"}", "port from 0 to 65535"},
                {"http: {listen: \"::1:80\"}", "[IPv6]:PORT"},
                {"http: {listen: \"h:8x\"}", "HOST:PORT"},
                {"http: {reload: yes}", "p.yaml:5:16: http: reload must be "
                                        "true or false, got 'yes'"},
                {"http: {liveness_timeout_ms: 10}", "from 1000 to 3600000"},
                {"http: {port: 80}", "p.yaml:5:8: http: unknown key 'port'; "
                                     "allowed keys: listen, reload, "
                                     "liveness_timeout_ms"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                assert_int_equal(parse_http(bad[i].yaml, &hc, err,
                                            sizeof(err)),
                                 -VEIL_EINVAL);
                if (!strstr(err, bad[i].want))
                        fail_msg("%s: got '%s', want '%s'", bad[i].yaml, err,
                                 bad[i].want);
        }
}

static struct veil_config *config(const char *extra) {
        char text[2048], err[512];
        snprintf(text, sizeof(text),
                 "kafka: {bootstrap: b:9092, group: g, settings: "
                 "{linger.ms: \"5\"}}\n"
                 "input: {topic: t, schema: s.avsc}\n"
                 "outputs: {dead_letter: {topic: d}}\n"
                 "plugins: [{use: popular}]\n"
                 "%s\n",
                 extra);
        struct veil_config *cfg;
        if (veil_config_parse(&cfg, "p.yaml", text, strlen(text), err,
                              sizeof(err)))
                fail_msg("%s", err);
        return cfg;
}

static void test_log_config(void **st) {
        (void)st;
        char err[512];
        int level;
        struct veil_config *c = config("");
        assert_int_equal(veil_log_config_parse(c, &level, err, sizeof(err)),
                         0);
        assert_int_equal(level, -1);
        veil_config_destroy(c);
        c = config("log: {level: debug}");
        assert_int_equal(veil_log_config_parse(c, &level, err, sizeof(err)),
                         0);
        assert_int_equal(level, VEIL_LOG_DEBUG);
        veil_config_destroy(c);
        c = config("log: {level: loud}");
        assert_int_equal(veil_log_config_parse(c, &level, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_string_equal(err, "p.yaml:5:14: log: level must be error, "
                                 "warn, info or debug");
        veil_config_destroy(c);
        c = config("log: {format: text}");
        assert_int_equal(veil_log_config_parse(c, &level, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "unknown key 'format'"));
        veil_config_destroy(c);
}

/* ---- log lines ---- */

/* A log line is valid JSON in valid UTF-8 whatever its message holds (an
 * instance name read from a topic, a message cut mid-character): a byte
 * that starts no whole sequence becomes U+FFFD, valid text stays. */
static void test_log_utf8(void **st) {
        (void)st;
        char path[] = "/tmp/veil-test-log-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0 && dup2(fd, 2) == 2);
        veil_log_host(VEIL_LOG_ERROR, "st\xff", "a \xff b \xc3\xa9 c \xe2\x82");
        const char *fields[] = {"k", "v\xc3", NULL};
        veil_log_fields(VEIL_LOG_ERROR, NULL, fields, "\xf0\x9f\x98\x80 ok");
        /* A level outside the enum (a plugin's) is an error, not a read
         * past the names. */
        veil_log_host((veil_log_level_t)-7, NULL, "odd level");
        fflush(stderr);
        assert_true(dup2(saved, 2) == 2);
        close(saved);
        char buf[2048] = "";
        assert_true(lseek(fd, 0, SEEK_SET) == 0);
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        unlink(path);
        assert_true(n > 0);
        buf[n] = '\0';
        /* the bytes that start no character, replaced; the others kept */
        assert_non_null(strstr(buf, "\"message\":\"a \\ufffd b \xc3\xa9 c \\ufffd\\ufffd\""));
        assert_non_null(strstr(buf, "\"stage\":\"st\\ufffd\""));
        assert_non_null(strstr(buf, "\"k\":\"v\\ufffd\""));
        assert_non_null(strstr(buf, "\"message\":\"\xf0\x9f\x98\x80 ok\""));
        assert_non_null(strstr(buf, "\"level\":\"error\",\"message\":\"odd level\""));
        assert_true(veil_utf8_valid(buf, strlen(buf)));
}

/* A message longer than a log line holds ends with a visible mark, cut
 * between two characters (a reload's error with many lint problems lost
 * its later ones with no sign); a line that fits has none. */
static void test_log_truncated(void **st) {
        (void)st;
        char path[] = "/tmp/veil-test-log-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0 && dup2(fd, 2) == 2);
        static char a[3000], e[2100], q[2200];
        memset(a, 'a', sizeof(a) - 1);
        /* "é" across the 2048th byte: vsnprintf keeps its first byte */
        memset(e, 'e', sizeof(e) - 1);
        memcpy(e + 2046, "\xc3\xa9", 2);
        /* fits before escaping, not after (6 bytes each) */
        memset(q, '\x01', sizeof(q) - 1);
        q[0] = 'q';
        veil_log_host(VEIL_LOG_ERROR, NULL, "%s", a);
        veil_log_host(VEIL_LOG_ERROR, NULL, "%s", e);
        veil_log_fields(VEIL_LOG_ERROR, NULL,
                        (const char *[]){"file", "p.yaml", NULL}, "%.1000s",
                        q);
        veil_log_host(VEIL_LOG_ERROR, NULL, "short");
        fflush(stderr);
        assert_true(dup2(saved, 2) == 2);
        close(saved);
        static char buf[32768];
        assert_true(lseek(fd, 0, SEEK_SET) == 0);
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        unlink(path);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_true(veil_utf8_valid(buf, (size_t)n));
        char *line = strtok(buf, "\n");
        assert_non_null(line);
        assert_non_null(strstr(line, "aaaa \xe2\x80\xa6 (truncated)\""));
        line = strtok(NULL, "\n");
        assert_non_null(line);
        /* the cut character left out whole, not replaced */
        assert_null(strstr(line, "\\ufffd"));
        assert_non_null(strstr(line, "eeee \xe2\x80\xa6 (truncated)\""));
        line = strtok(NULL, "\n");
        assert_non_null(line);
        assert_non_null(strstr(line, "\"message\":\"q\\u0001"));
        assert_non_null(strstr(line, "\\u0001 \xe2\x80\xa6 (truncated)\","
                                     "\"fields\":{\"file\":\"p.yaml\"}}"));
        line = strtok(NULL, "\n");
        assert_non_null(line);
        assert_non_null(strstr(line, "\"message\":\"short\"}"));
        assert_null(strtok(NULL, "\n"));
}

/* ---- reload ---- */

static void reload_case(const char *a, const char *b, const char *want) {
        struct veil_config *ca = config(a), *cb = config(b);
        char err[1024] = "";
        int rc = veil_reload_check(ca, cb, err, sizeof(err));
        if (!want)
                assert_int_equal(rc, 0);
        else if (rc != -VEIL_EINVAL || !strstr(err, want))
                fail_msg("'%s' -> '%s': rc %d, '%s', want '%s'", a, b, rc, err,
                         want);
        veil_config_destroy(ca);
        veil_config_destroy(cb);
}

static void test_reload_check(void **st) {
        (void)st;
        reload_case("", "", NULL);
        reload_case("log: {level: info}", "log: {level: debug}", NULL);
        reload_case("http: {listen: \"h:1\"}", "http: {listen: \"h:1\"}",
                    NULL);
        reload_case("", "http: {listen: \"h:1\"}",
                    "http changed from 'off, reload off");
        reload_case("http: {reload: false}", "http: {reload: true}",
                    "needs a restart");
        /* keys: the stages keep their state, held under the running keys:
         * adding one and changing the active one are fine, dropping one
         * or switching between ephemeral and files is not. */
#define K1 "keys: {active: k1, files: {k1: /k/1}}"
#define K12 "keys: {active: k2, files: {k1: /k/1, k2: /k/2}}"
        reload_case(K1, K12, NULL);
        reload_case(K12, "keys: {active: k2, files: {k2: /k/2}}",
                    "a key was removed from keys.files: k1; the stages' "
                    "state, which a reload keeps, is held under the running "
                    "keys");
        reload_case("keys: {ephemeral: true}", K1,
                    "the ephemeral key was replaced by key files");
        reload_case(K1, "keys: {ephemeral: true}",
                    "the key files were replaced by an ephemeral key");
        reload_case(K1, "", "the keys: section was removed");
        reload_case("keys: {ephemeral: true}", "keys: {ephemeral: true}",
                    NULL);
#undef K1
#undef K12
        /* kafka settings: changed, added, removed */
        struct veil_config *a = config(""), *b = config("");
        char err[1024];
        free(b->kafka.settings[0].value);
        b->kafka.settings[0].value = strdup("10");
        assert_int_equal(veil_reload_check(a, b, err, sizeof(err)),
                         -VEIL_EINVAL);
        /* never a value: a setting may be a credential (sasl.username) */
        assert_non_null(strstr(err, "p.yaml:1:49: kafka.settings.linger.ms "
                                    "changed (values not shown); a running "
                                    "veil keeps its Kafka clients"));
        assert_null(strstr(err, "10"));
        b->kafka.n_settings = 0;
        assert_int_equal(veil_reload_check(a, b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "p.yaml: kafka.settings.linger.ms was "
                                    "removed (values not shown)"));
        assert_int_equal(veil_reload_check(b, a, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "p.yaml:1:49: kafka.settings.linger.ms "
                                    "was added"));
        assert_null(strstr(err, "'5'"));
        b->kafka.n_settings = 1;
        free(b->kafka.group);
        b->kafka.group = strdup("g2");
        assert_int_equal(veil_reload_check(a, b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "kafka.group changed from 'g' to 'g2'"));
        free(b->kafka.group);
        b->kafka.group = strdup("g");
        free(b->input.topic);
        b->input.topic = strdup("t2");
        assert_int_equal(veil_reload_check(a, b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "input.topic"));
        free(b->input.topic);
        b->input.topic = strdup("t");
        free(b->kafka.bootstrap);
        b->kafka.bootstrap = strdup("other:9092");
        assert_int_equal(veil_reload_check(a, b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "kafka.bootstrap"));
        veil_config_destroy(a);
        veil_config_destroy(b);
}

/* ---- the endpoints over a socket ---- */

/* The last response, headers included. */
static char resp[1 << 16];

/* One request; returns the status and fills body. */
static int request(int port, const char *method, const char *path,
                   char *body, size_t body_size) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        char req[256];
        int n = snprintf(req, sizeof(req),
                         "%s %s HTTP/1.1\r\nHost: x\r\nConnection: "
                         "close\r\nContent-Length: 0\r\n\r\n",
                         method, path);
        assert_int_equal(write(fd, req, (size_t)n), n);
        size_t got = 0;
        ssize_t r;
        while ((r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
                got += (size_t)r;
        resp[got] = '\0';
        close(fd);
        int status = 0;
        sscanf(resp, "HTTP/1.1 %d", &status);
        const char *b = strstr(resp, "\r\n\r\n");
        snprintf(body, body_size, "%s", b ? b + 4 : "");
        return status;
}

struct loop {
        struct veil_ops *ops;
        int ok;
        int served;
        const char *err;
};

/* Plays the pipeline loop: takes a reload request and reports on it. */
static void *loop(void *arg) {
        struct loop *l = arg;
        for (int i = 0; i < 500 && !l->served; i++) {
                if (veil_ops_take_reload(l->ops)) {
                        veil_ops_reload_done(l->ops, l->ok,
                                             l->ok ? "" : l->err);
                        l->served = 1;
                }
                usleep(10000);
        }
        return NULL;
}

/* A server on a free port of 127.0.0.1, with POST /reload. */
static struct veil_http_config local_http(void) {
        struct veil_http_config hc = {0};
        hc.enabled = 1;
        snprintf(hc.listen, sizeof(hc.listen), "127.0.0.1:0");
        snprintf(hc.host, sizeof(hc.host), "127.0.0.1");
        hc.port = 0;
        hc.reload = 1;
        hc.liveness_timeout_ms = 1000;
        return hc;
}

static void test_endpoints(void **st) {
        (void)st;
        struct veil_metrics *m;
        struct veil_ops *ops;
        assert_int_equal(veil_metrics_new(&m), 0);
        assert_int_equal(veil_ops_new(&ops), 0);
        veil_metrics_declare(m, "veil_x_total", VEIL_METRIC_COUNTER, "X.",
                             NULL, 0);
        veil_metrics_add(m, "veil_x_total", "", 7);
        veil_metrics_declare(m, VEIL_M_READY, VEIL_METRIC_GAUGE, "Ready.",
                             NULL, 0);
        struct veil_http_config hc = local_http();
        struct veil_http *h;
        char err[512], body[65536];
        assert_int_equal(veil_http_start(&h, &hc, m, ops, err, sizeof(err)),
                         0);
        int port = atoi(strrchr(veil_http_address(h), ':') + 1);
        assert_true(port > 0);
        /* the port is taken now: a second server on it fails, clearly */
        struct veil_config *c = config("http: {listen: \"127.0.0.1:1\"}");
        struct veil_http_config busy;
        assert_int_equal(veil_http_config_parse(c, &busy, err, sizeof(err)),
                         0);
        veil_config_destroy(c);
        busy.port = port;
        struct veil_http *h2;
        assert_int_equal(veil_http_start(&h2, &busy, m, ops, err,
                                         sizeof(err)),
                         -VEIL_EIO);
        /* the place in the file, and the fix */
        assert_non_null(strstr(err, "p.yaml:5:16: http: cannot listen on "
                                    "127.0.0.1:1 (address in use"));
        assert_non_null(strstr(err, "set http.listen to a free HOST:PORT"));

        assert_int_equal(request(port, "GET", "/metrics", body, sizeof(body)),
                         200);
        assert_non_null(strstr(body, "# TYPE veil_x_total counter\n"
                                     "veil_x_total 7\n"));
        /* not ready until the loop says so, with its reason */
        assert_int_equal(request(port, "GET", "/readyz", body, sizeof(body)),
                         503);
        assert_string_equal(body, "starting\n");
        veil_ops_set_ready(ops, 0, "side inputs not caught up: consent "
                                   "(12000/40000)");
        assert_int_equal(request(port, "GET", "/readyz", body, sizeof(body)),
                         503);
        assert_string_equal(body, "side inputs not caught up: consent "
                                  "(12000/40000)\n");
        veil_ops_set_ready(ops, 1, "");
        assert_int_equal(request(port, "GET", "/readyz", body, sizeof(body)),
                         200);
        assert_string_equal(body, "ready\n");
        /* live while the loop beats; not after the timeout */
        veil_ops_beat(ops);
        assert_int_equal(request(port, "GET", "/healthz", body, sizeof(body)),
                         200);
        usleep(1200 * 1000);
        assert_int_equal(request(port, "GET", "/healthz", body, sizeof(body)),
                         503);
        assert_non_null(strstr(body, "has not turned for"));
        veil_ops_beat(ops);
        assert_int_equal(request(port, "GET", "/healthz", body, sizeof(body)),
                         200);
        /* ready only while the loop turns: a loop stuck in a broker call
         * cannot say it is no longer ready */
        veil_ops_set_ready_stale(ops, 500);
        assert_int_equal(request(port, "GET", "/readyz", body, sizeof(body)),
                         200);
        veil_metrics_set(m, VEIL_M_READY, "", 1); /* what the loop said */
        usleep(700 * 1000);
        assert_int_equal(request(port, "GET", "/readyz", body, sizeof(body)),
                         503);
        assert_non_null(strstr(body, "the pipeline loop has not turned for"));
        assert_int_equal(request(port, "GET", "/metrics", body, sizeof(body)),
                         200);
        assert_non_null(strstr(body, "\nveil_ready 0\n"));
        veil_ops_beat(ops);
        assert_int_equal(request(port, "GET", "/readyz", body, sizeof(body)),
                         200);
        veil_ops_set_ready_stale(ops, VEIL_OPS_READY_STALE_MS);

        assert_int_equal(request(port, "GET", "/nope", body, sizeof(body)),
                         404);
        assert_null(strstr(resp, "\r\nAllow:"));
        /* 405 names the methods that are (RFC 9110: Allow) */
        assert_int_equal(request(port, "POST", "/metrics", body, sizeof(body)),
                         405);
        assert_non_null(strstr(resp, "\r\nAllow: GET, HEAD\r\n"));
        assert_int_equal(request(port, "DELETE", "/healthz", body,
                                 sizeof(body)),
                         405);
        assert_non_null(strstr(resp, "\r\nAllow: GET, HEAD\r\n"));
        assert_int_equal(request(port, "GET", "/reload", body, sizeof(body)),
                         405);
        assert_non_null(strstr(resp, "\r\nAllow: POST\r\n"));

        /* POST /reload waits for the loop's outcome; a failure is told
         * whole, up to the privacy lint's last line (it was cut at 1 KiB,
         * with no sign). */
        static char lint[VEIL_OPS_MSG_MAX];
        int o = snprintf(lint, sizeof(lint), "p.yaml:3:1: bad");
        while (o < 6000)
                o += snprintf(lint + o, sizeof(lint) - (size_t)o,
                              "\np.yaml:%d:5: privacy problem", o);
        snprintf(lint + o, sizeof(lint) - (size_t)o,
                 "\n(3 more privacy problems; fix these and run veil lint "
                 "again)");
        for (int ok = 1; ok >= 0; ok--) {
                struct loop l = {ops, ok, 0, lint};
                pthread_t t;
                pthread_create(&t, NULL, loop, &l);
                int status = request(port, "POST", "/reload", body,
                                     sizeof(body));
                pthread_join(t, NULL);
                assert_true(l.served);
                if (ok) {
                        assert_int_equal(status, 200);
                        assert_string_equal(body, "reloaded\n");
                } else {
                        assert_int_equal(status, 422);
                        assert_non_null(strstr(body, "reload failed, the "
                                                     "previous pipeline keeps "
                                                     "running: p.yaml:3:1: "
                                                     "bad"));
                        assert_non_null(strstr(body, lint));
                        assert_non_null(strstr(body, "run veil lint "
                                                     "again)\n"));
                }
        }
        veil_http_stop(h);

        /* reload: false refuses POST /reload */
        hc.reload = 0;
        assert_int_equal(veil_http_start(&h, &hc, m, ops, err, sizeof(err)),
                         0);
        port = atoi(strrchr(veil_http_address(h), ':') + 1);
        assert_int_equal(request(port, "POST", "/reload", body, sizeof(body)),
                         403);
        assert_non_null(strstr(body, "SIGHUP"));
        assert_int_equal(veil_ops_take_reload(ops), 0);
        veil_http_stop(h);
        veil_ops_destroy(ops);
        veil_metrics_destroy(m);
}

struct post {
        int port, status;
        char body[1024];
};

static void *post_reload(void *arg) {
        struct post *p = arg;
        p->status = request(p->port, "POST", "/reload", p->body,
                            sizeof(p->body));
        return NULL;
}

static double mono(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A POST /reload still waiting when the server stops (the loop has ended:
 * nothing will report a reload) is answered 503 at once; the stop used to
 * wait the request's whole minute, past a pod's grace period. */
static void test_stop_with_reload_waiting(void **st) {
        (void)st;
        struct veil_metrics *m;
        struct veil_ops *ops;
        assert_int_equal(veil_metrics_new(&m), 0);
        assert_int_equal(veil_ops_new(&ops), 0);
        struct veil_http_config hc = local_http();
        struct veil_http *h;
        char err[512];
        assert_int_equal(veil_http_start(&h, &hc, m, ops, err, sizeof(err)),
                         0);
        struct post p = {atoi(strrchr(veil_http_address(h), ':') + 1), 0, ""};
        pthread_t t;
        pthread_create(&t, NULL, post_reload, &p);
        /* The request is in: it waits for a loop that will not come. */
        int asked = 0;
        for (int i = 0; i < 500 && !asked; i++) {
                asked = veil_ops_take_reload(ops);
                if (!asked)
                        usleep(10 * 1000);
        }
        assert_true(asked);
        usleep(100 * 1000);
        double t0 = mono();
        veil_http_stop(h);
        double took = mono() - t0;
        pthread_join(t, NULL);
        fprintf(stderr, "# stopped in %.2f s; the waiting request got %d\n",
                took, p.status);
        assert_true(took < 5);
        /* 503 "shutting down", or closed unanswered when the server's
         * stop closed the connection before the answer went out. */
        assert_true(p.status == 503 || p.status == 0);
        if (p.status == 503)
                assert_non_null(strstr(p.body, "shutting down"));
        veil_ops_destroy(ops);
        veil_metrics_destroy(m);
}

static void test_wait_timeout(void **st) {
        (void)st;
        struct veil_ops *ops;
        assert_int_equal(veil_ops_new(&ops), 0);
        uint64_t before = veil_ops_request_reload(ops);
        char msg[512];
        assert_int_equal(veil_ops_wait_reload(ops, before, 100, msg,
                                              sizeof(msg)),
                         -1);
        assert_non_null(strstr(msg, "still pending"));
        assert_int_equal(veil_ops_take_reload(ops), 1);
        assert_int_equal(veil_ops_take_reload(ops), 0);
        veil_ops_destroy(ops);
}

/* A reload the loop had already taken (it read the file before) does not
 * answer a request made since: that one waits for the next reload, and
 * gets its outcome. Requests made before one reload is taken share it. */
static void test_reload_tickets(void **st) {
        (void)st;
        struct veil_ops *ops;
        assert_int_equal(veil_ops_new(&ops), 0);
        char msg[512];
        uint64_t t1 = veil_ops_request_reload(ops);
        assert_int_equal(veil_ops_take_reload(ops), 1); /* reload A starts */
        uint64_t t2 = veil_ops_request_reload(ops);    /* file changed */
        veil_ops_reload_done(ops, 1, "");               /* A succeeds */
        assert_int_equal(veil_ops_wait_reload(ops, t1, 100, msg, sizeof(msg)),
                         1);
        assert_int_equal(veil_ops_wait_reload(ops, t2, 100, msg, sizeof(msg)),
                         -1); /* not A's to answer */
        uint64_t t3 = veil_ops_request_reload(ops);
        assert_int_equal(veil_ops_take_reload(ops), 1); /* B covers t2, t3 */
        veil_ops_reload_done(ops, 0, "unknown key 'bogus_key'");
        assert_int_equal(veil_ops_wait_reload(ops, t2, 100, msg, sizeof(msg)),
                         0);
        assert_string_equal(msg, "unknown key 'bogus_key'");
        assert_int_equal(veil_ops_wait_reload(ops, t3, 100, msg, sizeof(msg)),
                         0);
        veil_ops_destroy(ops);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_log_utf8),
                cmocka_unit_test(test_log_truncated),
                cmocka_unit_test(test_counters_gauges),
                cmocka_unit_test(test_forget_plugin_gauges),
                cmocka_unit_test(test_histogram),
                cmocka_unit_test(test_series_cap),
                cmocka_unit_test(test_http_config),
                cmocka_unit_test(test_log_config),
                cmocka_unit_test(test_reload_check),
                cmocka_unit_test(test_endpoints),
                cmocka_unit_test(test_wait_timeout),
                cmocka_unit_test(test_reload_tickets),
                cmocka_unit_test(test_stop_with_reload_waiting),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

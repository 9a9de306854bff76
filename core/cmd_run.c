/*
 * cmd_run.c — `veil run` and `veil lint`, and the steps they share.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "checkpoint.h"
#include "demo_side.h"
#include "http.h"
#include "kafka.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "mock.h"
#include "ops.h"
#include "reload.h"

void veil_cli_quiet_by_default(void) {
        /* main applied a valid VEIL_LOG_LEVEL already: an explicit info
         * stays info. */
        const char *env = getenv("VEIL_LOG_LEVEL");
        if (!env || !*env)
                veil_log_set_level(VEIL_LOG_WARN);
}

int veil_cli_config_is_ephemeral(const struct veil_config *cfg) {
        char e[16];
        return !veil_keys_check(cfg, e, sizeof(e)) && veil_keys_ephemeral(cfg);
}

/* A reload keeps the stages' state, held under the running keys'
 * pseudonyms: each running key must come back from the files unchanged
 * (its id listed is veil_reload_check's; the bytes, a Secret rotated in
 * place, are this one's), or erase and export could no longer find that
 * state. Compared by a pseudonym of a fixed probe under each key. */
static int same_keys(const struct veil_keyring *run,
                     const struct veil_keyring *next, const char *file,
                     char *err, size_t err_size) {
        for (size_t i = 0; i < veil_keyring_n_keys(run); i++) {
                const char *id = veil_keyring_key_id(run, i);
                char a[VEIL_PSEUDONYM_MAX], b[VEIL_PSEUDONYM_MAX];
                if (veil_keyring_pseudonym_key(run, id, "reload", "probe", 5,
                                               a, sizeof(a)) < 0 ||
                    veil_keyring_pseudonym_key(next, id, "reload", "probe", 5,
                                               b, sizeof(b)) < 0 ||
                    strcmp(a, b)) {
                        snprintf(err, err_size,
                                 "%s: key '%s' is not the running one (its "
                                 "file changed); the stages' state, which a "
                                 "reload keeps, is held under the running "
                                 "key, and erase and export could no longer "
                                 "find it: restart instead, with the key "
                                 "under a new id (nothing was changed)",
                                 file, id);
                        return -VEIL_EINVAL;
                }
        }
        return 0;
}

int veil_cli_load(struct veil_cli_pipeline *cp, const char *file,
                  int lint_only, struct veil_keyring *running_kr,
                  const struct veil_config *running, char *err,
                  size_t err_size) {
        memset(cp, 0, sizeof(*cp));
        if (veil_config_load(&cp->cfg, file, err, err_size))
                return -VEIL_EINVAL;
        struct veil_http_config hc;
        int level;
        /* Before any plugin starts: a reload refused for a restart-only
         * change must not have run the new stages' init (files opened or
         * created, lines logged as if they were in force). */
        int rc = running ? veil_reload_check(running, cp->cfg, err, err_size)
                         : 0;
        if (!rc)
                rc = veil_http_config_parse(cp->cfg, &hc, err, err_size);
        if (!rc)
                rc = veil_log_config_parse(cp->cfg, &level, err, err_size);
        const struct veil_node *demo_events;
        long demo_garbage;
        if (!rc)
                rc = veil_demo_config_parse(cp->cfg, &demo_events,
                                            &demo_garbage, err, err_size);
        struct veil_checkpoint_config ck;
        if (!rc)
                rc = veil_checkpoint_config_parse(cp->cfg, &ck, err,
                                                  err_size);
        if (!rc && running_kr && veil_cli_config_is_ephemeral(cp->cfg))
                cp->keyring = running_kr;
        else if (!rc)
                rc = veil_keys_load(cp->cfg, &cp->keyring, err, err_size);
        if (!rc && running_kr && cp->keyring != running_kr)
                rc = same_keys(running_kr, cp->keyring, cp->cfg->file, err,
                               err_size);
        if (rc) {
                veil_cli_close(cp);
                return rc;
        }
        char **dirs;
        size_t n;
        veil_cli_plugin_path(&dirs, &n);
        struct veil_pipeline_opts o = {dirs, n, cp->keyring, lint_only};
        rc = veil_pipeline_new(&cp->p, cp->cfg, &o, err, err_size);
        veil_cli_free_path(dirs, n);
        if (!rc)
                rc = veil_pipeline_lint(cp->p, err, err_size);
        if (rc) {
                if (cp->keyring == running_kr)
                        cp->keyring = NULL; /* still the caller's */
                veil_cli_close(cp);
                return rc;
        }
        return 0;
}

int veil_cli_open(struct veil_cli_pipeline *cp, const char *file,
                  int lint_only) {
        /* Room for the privacy lint's one line per problem. */
        char err[8192];
        if (veil_cli_load(cp, file, lint_only, NULL, NULL, err,
                          sizeof(err))) {
                fprintf(stderr, "veil: %s\n", err);
                return VEIL_EXIT_USAGE;
        }
        return VEIL_EXIT_OK;
}

void veil_cli_print_gauges(const struct veil_pipeline *p, int width) {
        for (size_t i = 0; i < veil_pipeline_n_stages(p); i++) {
                size_t n = veil_pipeline_stage_n_gauges(p, i);
                if (!n)
                        continue;
                printf("  %-*s%s:", width, "gauges:",
                       veil_pipeline_stage_name(p, i));
                for (size_t j = 0; j < n; j++) {
                        double v;
                        const char *name =
                                veil_pipeline_stage_gauge(p, i, j, &v);
                        printf("%s %s %.10g", j ? "," : "", name, v);
                }
                printf("\n");
        }
}

void veil_cli_close(struct veil_cli_pipeline *cp) {
        veil_pipeline_destroy(cp->p);
        if (cp->keyring)
                veil_keyring_destroy(cp->keyring);
        veil_config_destroy(cp->cfg);
        memset(cp, 0, sizeof(*cp));
}

int veil_cmd_lint(int argc, char **argv) {
        if (veil_cli_wants_help(argc, argv) || argc < 2) {
                fprintf(argc < 2 ? stderr : stdout,
                        "usage: veil lint [--start] PIPELINE.yaml...\n"
                        "Checks each pipeline without touching Kafka: the "
                        "YAML and ${VAR} substitution, librdkafka's check "
                        "of kafka.settings (and that a numeric setting is a "
                        "number written whole: librdkafka would read 20000x "
                        "as 20000, and that no setting weakens the "
                        "delivery guarantee: acks, enable.idempotence, "
                        "enable.auto.commit, enable.auto.offset.store, "
                        "isolation.level), the sections http:, log:, "
                        "state: and demo:, the schemas and the key files "
                        "(both are read), loading every plugin, the "
                        "plugins' parameters against their "
                        "declared names and types, that outputs and side "
                        "inputs are bound and every side input is read, "
                        "that no output writes the input's topic (nor dead "
                        "letters a side input's), that no stage with "
                        "outputs or state comes before the consent stage, "
                        "and that no field an output's "
                        "schema marks \"pii\" can reach it in the clear. "
                        "Prints 'ok' per file; exits 2 on the first error, "
                        "with file:line:column.\n"
                        "--start: also starts every plugin and stops it "
                        "again, as veil run does before it connects: the "
                        "plugins' own checks of their values (ranges, "
                        "combinations), and the files they read (catalogs, "
                        "accountant files; a missing accountant_file is "
                        "created). Without it no plugin is started, so no "
                        "file a plugin names is read. The plugins' set-up "
                        "lines (info) are not logged unless VEIL_LOG_LEVEL "
                        "asks for them.\n");
                return argc < 2 ? VEIL_EXIT_USAGE : VEIL_EXIT_OK;
        }
        int start = 0, files = 0;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--start"))
                        start = 1;
                else if (argv[i][0] == '-') {
                        fprintf(stderr,
                                "veil lint: unknown option '%s' (see veil "
                                "lint --help)\n",
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else
                        files++;
        }
        if (!files) {
                fprintf(stderr, "usage: veil lint [--start] PIPELINE.yaml...\n");
                return VEIL_EXIT_USAGE;
        }
        /* Started plugins log their set-up at info: lint says only ok. */
        if (start)
                veil_cli_quiet_by_default();
        for (int i = 1; i < argc; i++) {
                if (argv[i][0] == '-')
                        continue;
                struct veil_cli_pipeline cp;
                int rc = veil_cli_open(&cp, argv[i], !start);
                if (rc)
                        return rc;
                printf("%s: ok\n", argv[i]);
                veil_cli_close(&cp);
        }
        return VEIL_EXIT_OK;
}

/* The signal handlers' only state; main's, in spirit. */
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

static void on_signal(int sig) {
        if (stop_requested) {
                /* A second signal: the operator does not want to wait. */
                signal(sig, SIG_DFL);
                raise(sig);
        }
        stop_requested = 1;
}

static void on_hup(int sig) {
        (void)sig;
        reload_requested = 1;
}

/* The running pipeline and, during a reload, its replacement. */
struct run {
        const char *file;
        struct veil_cli_pipeline cur, next;
        int level_fixed; /* --log-level or VEIL_LOG_LEVEL beat the YAML */
        veil_log_level_t level_before; /* during a reload: the running one */
};

/* The YAML's log.level, or info when it has none (a reload that removes
 * the section goes back to the default), unless --log-level or
 * VEIL_LOG_LEVEL fixed it. */
static void apply_log_level(const struct run *r,
                            const struct veil_config *cfg) {
        int level;
        char err[512];
        if (!r->level_fixed &&
            !veil_log_config_parse(cfg, &level, err, sizeof(err)))
                veil_log_set_level(level >= 0 ? (veil_log_level_t)level
                                              : VEIL_LOG_INFO);
}

/* The file's log level before its plugins start (at start-up and at a
 * reload), so their set-up lines follow it; the file's errors are left to
 * veil_cli_load. */
static void apply_file_log_level(const struct run *r, const char *file) {
        struct veil_config *pre;
        char err[512];
        if (!veil_config_load(&pre, file, err, sizeof(err))) {
                apply_log_level(r, pre);
                veil_config_destroy(pre);
        }
}

static int reload_open(void *ctx, const struct veil_pipeline *cur,
                       struct veil_pipeline **next, char *errstr,
                       size_t errstr_size) {
        struct run *r = ctx;
        (void)cur;
        r->level_before = veil_log_get_level();
        apply_file_log_level(r, r->file);
        /* An ephemeral key lives only in this process: kept, or every
         * pseudonym would change with the reload; key files are read again
         * and must give the running keys back. */
        if (veil_cli_load(&r->next, r->file, 0, r->cur.keyring, r->cur.cfg,
                          errstr, errstr_size)) {
                veil_log_set_level(r->level_before);
                return -VEIL_EINVAL;
        }
        *next = r->next.p;
        return 0;
}

static void reload_close(void *ctx, int swapped) {
        struct run *r = ctx;
        int shared = r->next.keyring == r->cur.keyring;
        if (swapped) {
                if (shared)
                        r->cur.keyring = NULL;
                veil_cli_close(&r->cur);
                r->cur = r->next;
                memset(&r->next, 0, sizeof(r->next));
                apply_log_level(r, r->cur.cfg);
        } else {
                if (shared)
                        r->next.keyring = NULL;
                veil_cli_close(&r->next);
                veil_log_set_level(r->level_before);
        }
}

/* The HTTP endpoints, when the pipeline has an http: section. */
struct ops_server {
        struct veil_metrics *m;
        struct veil_ops *ops;
        struct veil_http *http;
};

static int ops_start(struct ops_server *s, const struct veil_config *cfg,
                     char *err, size_t err_size) {
        memset(s, 0, sizeof(*s));
        struct veil_http_config hc;
        int rc = veil_http_config_parse(cfg, &hc, err, err_size);
        if (rc || !hc.enabled)
                return rc;
        if ((rc = veil_metrics_new(&s->m)) || (rc = veil_ops_new(&s->ops)) ||
            (rc = veil_http_start(&s->http, &hc, s->m, s->ops, err,
                                  err_size))) {
                if (rc == -VEIL_ENOMEM)
                        snprintf(err, err_size, "http: out of memory");
                return rc;
        }
        const char *fields[] = {"address", veil_http_address(s->http),
                                "reload", hc.reload ? "true" : "false", NULL};
        veil_log_fields(VEIL_LOG_INFO, NULL, fields,
                        "serving /metrics, /healthz and /readyz on %s%s",
                        veil_http_address(s->http),
                        hc.reload ? " (and POST /reload)" : "");
        return 0;
}

static void ops_stop(struct ops_server *s) {
        veil_http_stop(s->http);
        veil_ops_destroy(s->ops);
        veil_metrics_destroy(s->m);
}

int veil_cmd_run(int argc, char **argv) {
        struct run r;
        memset(&r, 0, sizeof(r));
        const char *env = getenv("VEIL_LOG_LEVEL");
        r.level_fixed = env && veil_log_level_parse(env) >= 0;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
                        int l = veil_log_level_parse(argv[++i]);
                        if (l < 0) {
                                fprintf(stderr,
                                        "veil run: --log-level must be "
                                        "error, warn, info or debug\n");
                                return VEIL_EXIT_USAGE;
                        }
                        veil_log_set_level((veil_log_level_t)l);
                        r.level_fixed = 1;
                } else if (!strcmp(argv[i], "--log-level")) {
                        fprintf(stderr, "veil run: --log-level needs a "
                                        "value: error, warn, info or "
                                        "debug\n");
                        return VEIL_EXIT_USAGE;
                } else if (argv[i][0] == '-' && strcmp(argv[i], "-h") &&
                           strcmp(argv[i], "--help")) {
                        fprintf(stderr, "veil run: unknown option '%s'\n",
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else if (argv[i][0] != '-' && r.file) {
                        fprintf(stderr, "veil run: one pipeline only, got "
                                        "an extra argument '%s'\n",
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else if (argv[i][0] != '-') {
                        r.file = argv[i];
                }
        }
        int help = veil_cli_wants_help(argc, argv);
        if (help || !r.file) {
                fprintf(help ? stdout : stderr,
                        "usage: veil run PIPELINE.yaml [--log-level "
                        "error|warn|info|debug]\n"
                        "Consumes the pipeline's input topic in its consumer "
                        "group, runs each micro-batch through the plugins "
                        "and produces their outputs; input offsets are "
                        "committed only after every output of the batch is "
                        "acknowledged (at-least-once). Undecodable or "
                        "rejected records go to the dead-letter topic. With "
                        "kafka.bootstrap: embedded it starts an in-process "
                        "mock broker.\n"
                        "SIGINT/SIGTERM: finish the batch, flush, commit, "
                        "leave the group, exit 0, within the shutdown "
                        "timeout (10 s, plus up to 10 s for the last commit; "
                        "with exactly-once, up to a minute for the last "
                        "transaction's delivery reports). Outputs still not "
                        "acknowledged then are not committed (their input is "
                        "read again after a restart) and the exit code is 1, "
                        "as it is when the signal ends a wait for room in "
                        "the producer's queue (an output down). A second "
                        "signal ends the process at once.\n"
                        "SIGHUP: reload PIPELINE.yaml at the next batch "
                        "boundary, validated as `veil lint --start` does "
                        "(the new plugins are started) and refused when "
                        "kafka.bootstrap, kafka.group, kafka.guarantee, "
                        "kafka.settings, input.topic or http: changed (a "
                        "restart applies those); refused too when keys: "
                        "drops a running key: a key id removed from "
                        "keys.files, a key file changed in place (other "
                        "bytes under the same id), a switch between "
                        "ephemeral and key files, or the section added or "
                        "removed (the stages' state is held under the "
                        "running keys' pseudonyms; adding a key or "
                        "changing the active one is fine). On any error "
                        "the running pipeline stays (logged, and counted "
                        "in veil_reload_failures_total).\n"
                        "With an http: section: GET /metrics (Prometheus), "
                        "/healthz, /readyz, and POST /reload when "
                        "http.reload is true.\n"
                        "Logs: JSON lines on stderr; level from --log-level, "
                        "else VEIL_LOG_LEVEL, else the YAML's log.level.\n");
                return help ? VEIL_EXIT_OK : VEIL_EXIT_USAGE;
        }
        /* Signals first: a SIGTERM while the plugins start (or a broker
         * is awaited) must stop the run cleanly, not kill it, and a SIGHUP
         * then is a reload at the first batch boundary. */
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sa.sa_handler = on_hup;
        sigaction(SIGHUP, &sa, NULL);
        apply_file_log_level(&r, r.file);
        int rc = veil_cli_open(&r.cur, r.file, 0);
        if (rc)
                return rc;
        if (stop_requested) {
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "stopped before the first batch (a signal "
                              "during start-up)");
                veil_cli_close(&r.cur);
                return VEIL_EXIT_OK;
        }

        struct veil_mock *mock = NULL;
        const char *bootstrap = NULL;
        char err[8192];
        if (!strcmp(r.cur.cfg->kafka.bootstrap, "embedded")) {
                if (veil_mock_start(&mock, 1, err, sizeof(err)) ||
                    veil_mock_create_topics(mock, r.cur.cfg, err,
                                            sizeof(err))) {
                        fprintf(stderr, "veil: %s\n", err);
                        veil_mock_destroy(mock);
                        veil_cli_close(&r.cur);
                        return VEIL_EXIT_RUNTIME;
                }
                bootstrap = veil_mock_bootstrap(mock);
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "embedded broker at %s", bootstrap);
        }
        struct ops_server ops;
        if ((rc = ops_start(&ops, r.cur.cfg, err, sizeof(err)))) {
                veil_log_host(VEIL_LOG_ERROR, NULL, "%s", err);
                ops_stop(&ops);
                veil_cli_close(&r.cur);
                veil_mock_destroy(mock);
                /* A listen address the file got wrong is a usage error,
                 * like the rest of the file's; a port in use is not. */
                return rc == -VEIL_EINVAL ? VEIL_EXIT_USAGE
                                          : VEIL_EXIT_RUNTIME;
        }

        struct veil_kafka_opts ko = {0};
        ko.bootstrap = bootstrap;
        ko.stop = &stop_requested;
        ko.metrics = ops.m;
        ko.ops = ops.ops;
        ko.reload = &reload_requested;
        ko.reload_open = reload_open;
        ko.reload_close = reload_close;
        ko.reload_ctx = &r;
        struct veil_kafka_stats st;
        rc = veil_kafka_run(r.cur.p, &ko, &st, err, sizeof(err));
        if (rc)
                veil_log_host(VEIL_LOG_ERROR, NULL, "%s", err);
        else
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "stopped: %llu records in, %llu produced, "
                              "%llu batches; since the pipeline was (re)loaded "
                              "%llu undecodable (input and side inputs), "
                              "%llu dead letters",
                              (unsigned long long)st.records_in,
                              (unsigned long long)st.acked,
                              (unsigned long long)st.batches,
                              (unsigned long long)
                                      veil_pipeline_decode_errors(r.cur.p),
                              (unsigned long long)
                                      veil_pipeline_dead_letters(r.cur.p));
        /* The server reads the registry: it stops first. */
        ops_stop(&ops);
        veil_cli_close(&r.cur);
        veil_mock_destroy(mock);
        return rc ? VEIL_EXIT_RUNTIME : VEIL_EXIT_OK;
}

/*
 * cmd_run.c — `veil run` and `veil lint`, and the steps they share.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kafka.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "mock.h"

int veil_cli_open(struct veil_cli_pipeline *cp, const char *file,
                  int lint_only) {
        memset(cp, 0, sizeof(*cp));
        char err[2048];
        if (veil_config_load(&cp->cfg, file, err, sizeof(err))) {
                fprintf(stderr, "veil: %s\n", err);
                return VEIL_EXIT_USAGE;
        }
        if (veil_keys_load(cp->cfg, &cp->keyring, err, sizeof(err))) {
                fprintf(stderr, "veil: %s\n", err);
                veil_cli_close(cp);
                return VEIL_EXIT_USAGE;
        }
        char **dirs;
        size_t n;
        veil_cli_plugin_path(&dirs, &n);
        struct veil_pipeline_opts o = {dirs, n, cp->keyring, lint_only};
        int rc = veil_pipeline_new(&cp->p, cp->cfg, &o, err, sizeof(err));
        veil_cli_free_path(dirs, n);
        if (!rc)
                rc = veil_pipeline_lint(cp->p, err, sizeof(err));
        if (rc) {
                fprintf(stderr, "veil: %s\n", err);
                veil_cli_close(cp);
                return VEIL_EXIT_USAGE;
        }
        return VEIL_EXIT_OK;
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
                        "usage: veil lint PIPELINE.yaml...\n"
                        "Checks each pipeline without touching Kafka: the "
                        "YAML and ${VAR} substitution, the schemas, loading "
                        "every plugin, the plugins' parameters, and that "
                        "outputs and side inputs are bound. Prints 'ok' per "
                        "file; exits 2 on the first error, with "
                        "file:line:column.\n");
                return argc < 2 ? VEIL_EXIT_USAGE : VEIL_EXIT_OK;
        }
        for (int i = 1; i < argc; i++) {
                struct veil_cli_pipeline cp;
                int rc = veil_cli_open(&cp, argv[i], 1);
                if (rc)
                        return rc;
                printf("%s: ok\n", argv[i]);
                veil_cli_close(&cp);
        }
        return VEIL_EXIT_OK;
}

/* The signal handler's only state; main's, in spirit. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        if (stop_requested) {
                /* A second signal: the operator does not want to wait. */
                signal(sig, SIG_DFL);
                raise(sig);
        }
        stop_requested = 1;
}

int veil_cmd_run(int argc, char **argv) {
        const char *file = NULL;
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
                } else if (argv[i][0] == '-' && strcmp(argv[i], "-h") &&
                           strcmp(argv[i], "--help")) {
                        fprintf(stderr, "veil run: unknown option '%s'\n",
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else if (!file && argv[i][0] != '-') {
                        file = argv[i];
                }
        }
        int help = veil_cli_wants_help(argc, argv);
        if (help || !file) {
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
                        "leave the group, exit 0 (a second signal exits at "
                        "once).\n"
                        "Logs: JSON lines on stderr.\n");
                return help ? VEIL_EXIT_OK : VEIL_EXIT_USAGE;
        }
        struct veil_cli_pipeline cp;
        int rc = veil_cli_open(&cp, file, 0);
        if (rc)
                return rc;

        struct veil_mock *mock = NULL;
        const char *bootstrap = NULL;
        char err[2048];
        if (!strcmp(cp.cfg->kafka.bootstrap, "embedded")) {
                if (veil_mock_start(&mock, 1, err, sizeof(err)) ||
                    veil_mock_create_topics(mock, cp.cfg, err, sizeof(err))) {
                        fprintf(stderr, "veil: %s\n", err);
                        veil_mock_destroy(mock);
                        veil_cli_close(&cp);
                        return VEIL_EXIT_RUNTIME;
                }
                bootstrap = veil_mock_bootstrap(mock);
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "embedded broker at %s", bootstrap);
        }

        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        struct veil_kafka_opts ko = {0};
        ko.bootstrap = bootstrap;
        ko.stop = &stop_requested;
        struct veil_kafka_stats st;
        rc = veil_kafka_run(cp.p, &ko, &st, err, sizeof(err));
        if (rc)
                veil_log_host(VEIL_LOG_ERROR, NULL, "%s", err);
        else
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "stopped: %llu records in, %llu produced, "
                              "%llu batches",
                              (unsigned long long)st.records_in,
                              (unsigned long long)st.acked,
                              (unsigned long long)st.batches);
        veil_cli_close(&cp);
        veil_mock_destroy(mock);
        return rc ? VEIL_EXIT_RUNTIME : VEIL_EXIT_OK;
}

/*
 * main.c — `veil`: dispatch to the subcommands.
 */
#include <librdkafka/rdkafka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kafka.h"
#include "log.h"
#include "veil/veil.h"

#ifndef VEIL_VERSION
#define VEIL_VERSION "0.0.0"
#endif
#ifndef VEIL_PLUGIN_DIR
#define VEIL_PLUGIN_DIR "/usr/local/lib/veil/plugins"
#endif

static const char usage[] =
        "usage: veil <command> [args]\n"
        "\n"
        "Commands:\n"
        "  run PIPELINE.yaml [--log-level L]\n"
        "                           run a pipeline on Kafka until "
        "SIGINT/SIGTERM\n"
        "  demo [--configured-broker] [PIPELINE.yaml]\n"
        "                           replay bundled events through the demo\n"
        "                           pipeline on the embedded broker and print "
        "a summary\n"
        "  lint [--start] PIPELINE.yaml...\n"
        "                           check pipelines without touching Kafka\n"
        "  notice PIPELINE.yaml [--format md|html]\n"
        "                           write the privacy notice the pipeline "
        "implements\n"
        "  replay PIPELINE.yaml --events FILE.csv [--evaluate] "
        "[--column NAME=FIELD]...\n"
        "         [--limit N] [--batch N] [--batch-wait MS]\n"
        "                           run the plugin chain in-process over a "
        "CSV of events\n"
        "  plugins [NAME]           list plugins and their parameters\n"
        "  version                  print versions\n"
        "  <plugin> <command> ...   a command a plugin declares (see "
        "`veil plugins NAME`)\n"
        "\n"
        "`veil <command> --help` describes each command.\n"
        "Exit codes: 0 success, 1 runtime failure, 2 usage or configuration "
        "error.\n"
        "Environment: VEIL_PLUGIN_PATH (colon-separated plugin directories, "
        "searched after the pipeline's plugin_path), VEIL_LOG_LEVEL "
        "(error|warn|info|debug; another value is refused, exit 2, except "
        "by --help and version, which warn and answer), VEIL_INSTANCE_ID (this instance's id in "
        "shared model updates and transactional ids; default: the host "
        "name), VEIL_HOME (where `veil demo` finds config/pipelines/"
        "demo.yaml); and any variable a pipeline names as ${VAR}.\n";

int veil_cli_wants_help(int argc, char **argv) {
        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
                        return 1;
        return 0;
}

static void add_dir(char ***dirs, size_t *n, const char *d) {
        for (size_t i = 0; i < *n; i++)
                if (!strcmp((*dirs)[i], d))
                        return;
        *dirs = realloc(*dirs, (*n + 1) * sizeof(char *));
        (*dirs)[(*n)++] = strdup(d);
}

void veil_cli_plugin_path(char ***dirs, size_t *n) {
        *dirs = NULL;
        *n = 0;
        const char *env = getenv("VEIL_PLUGIN_PATH");
        if (env && *env) {
                char *copy = strdup(env), *save = NULL;
                for (char *t = strtok_r(copy, ":", &save); t;
                     t = strtok_r(NULL, ":", &save))
                        add_dir(dirs, n, t);
                free(copy);
        }
        /* Beside the executable: build/plugins in the build tree,
         * ../lib/veil/plugins when installed. */
        char exe[4096];
        ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (l > 0) {
                exe[l] = '\0';
                char *slash = strrchr(exe, '/');
                if (slash) {
                        *slash = '\0';
                        char d[4200];
                        snprintf(d, sizeof(d), "%s/plugins", exe);
                        add_dir(dirs, n, d);
                        snprintf(d, sizeof(d), "%s/../" VEIL_PLUGIN_RELDIR,
                                 exe);
                        add_dir(dirs, n, d);
                }
        }
        add_dir(dirs, n, VEIL_PLUGIN_DIR);
}

void veil_cli_free_path(char **dirs, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(dirs[i]);
        free(dirs);
}

static int cmd_version(int argc, char **argv) {
        if (veil_cli_wants_help(argc, argv)) {
                printf("usage: veil version\nPrints the versions of veil, "
                       "its plugin ABI, librdkafka and libsodium.\n");
                return VEIL_EXIT_OK;
        }
        if (argc > 1) {
                fprintf(stderr, "veil version: takes no arguments, got "
                                "'%s'\n",
                        argv[1]);
                return VEIL_EXIT_USAGE;
        }
        printf("veil %s\nplugin ABI %d\nlibrdkafka %s\nlibsodium %s\n",
               VEIL_VERSION, VEIL_ABI_VERSION, rd_kafka_version_str(),
               sodium_version_string());
        return VEIL_EXIT_OK;
}

int main(int argc, char **argv) {
        const char *lvl = getenv("VEIL_LOG_LEVEL");
        if (lvl && *lvl && veil_log_level_parse(lvl) < 0) {
                /* A typo here would silently log at the default level, so
                 * a command is refused; --help and version log nothing
                 * and still answer (the help is how to find the valid
                 * values), with the warning. */
                const char *c = argc > 1 ? argv[1] : "";
                int answers = !strcmp(c, "version") ||
                              !strcmp(c, "--version") ||
                              !strcmp(c, "help") ||
                              veil_cli_wants_help(argc, argv);
                fprintf(stderr, "veil: VEIL_LOG_LEVEL must be error, warn, "
                                "info or debug, got '%s'%s\n",
                        lvl,
                        answers ? " (ignored by --help and version; any "
                                  "other command refuses it)"
                                : "; set one of those or unset it");
                if (!answers)
                        return VEIL_EXIT_USAGE;
                lvl = NULL;
        }
        if (lvl && *lvl)
                veil_log_set_level((veil_log_level_t)veil_log_level_parse(lvl));
        if (sodium_init() < 0) {
                fprintf(stderr, "veil: libsodium failed to initialize\n");
                return VEIL_EXIT_RUNTIME;
        }
        if (argc < 2) {
                fputs(usage, stderr);
                return VEIL_EXIT_USAGE;
        }
        const char *cmd = argv[1];
        if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") ||
            !strcmp(cmd, "help")) {
                fputs(usage, stdout);
                return VEIL_EXIT_OK;
        }
        argc--;
        argv++;
        /* veil_kafka_exit: a consumer left running (kafka.h) must not
         * meet the exit handlers. */
        if (!strcmp(cmd, "run"))
                return veil_kafka_exit(veil_cmd_run(argc, argv));
        if (!strcmp(cmd, "demo"))
                return veil_kafka_exit(veil_cmd_demo(argc, argv));
        if (!strcmp(cmd, "lint"))
                return veil_cmd_lint(argc, argv);
        if (!strcmp(cmd, "plugins"))
                return veil_cmd_plugins(argc, argv);
        if (!strcmp(cmd, "notice"))
                return veil_cmd_notice(argc, argv);
        if (!strcmp(cmd, "replay"))
                return veil_cmd_replay(argc, argv);
        if (!strcmp(cmd, "version") || !strcmp(cmd, "--version"))
                return cmd_version(argc, argv);
        if (cmd[0] == '-') {
                fprintf(stderr, "veil: unknown option '%s'\n\n%s", cmd,
                        usage);
                return VEIL_EXIT_USAGE;
        }
        return veil_cmd_plugin(argc, argv);
}

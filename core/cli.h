/*
 * cli.h — the `veil` command: each subcommand in its own file, sharing the
 * steps from a YAML file to a running pipeline.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#ifndef VEIL_CLI_H
#define VEIL_CLI_H

#include <stddef.h>

#include "config.h"
#include "pipeline.h"

#define VEIL_EXIT_OK 0
#define VEIL_EXIT_RUNTIME 1
#define VEIL_EXIT_USAGE 2

struct veil_keyring;

/** Everything `veil run`, `lint` and `demo` build from a pipeline file. */
struct veil_cli_pipeline {
        struct veil_config *cfg;
        struct veil_keyring *keyring;
        struct veil_pipeline *p;
};

/** The plugin search path after the YAML's plugin_path: VEIL_PLUGIN_PATH
 *  (colon-separated), then the plugins beside the executable (build tree
 *  and install layout). */
void veil_cli_plugin_path(char ***dirs, size_t *n);
void veil_cli_free_path(char **dirs, size_t n);

/** Loads, validates and (unless lint_only) starts the plugins. Prints the
 *  error and returns VEIL_EXIT_USAGE on a configuration error. */
int veil_cli_open(struct veil_cli_pipeline *cp, const char *file,
                  int lint_only);
/** The same steps (plus the http: and log: sections) returning the message
 *  instead of printing it: 0 or negative. With `running` non-NULL (a
 *  reload), a change that needs a restart (veil_reload_check) is refused
 *  before keys are read or any plugin starts, and `running_kr` is the
 *  running process's keyring (may be NULL): for a file whose keys are
 *  {ephemeral: true} that keyring is used (and stays the caller's: a
 *  reload keeps the pseudonyms of the running process); otherwise every
 *  running key must be read back from its file unchanged, before any
 *  plugin starts. */
int veil_cli_load(struct veil_cli_pipeline *cp, const char *file,
                  int lint_only, struct veil_keyring *ephemeral,
                  const struct veil_config *running, char *err,
                  size_t err_size);
/** 1 when the configuration's keys are {ephemeral: true}. */
int veil_cli_config_is_ephemeral(const struct veil_config *cfg);
void veil_cli_close(struct veil_cli_pipeline *cp);
/** Prints each stage's gauges (veil_metric_set), one line per stage that
 *  has any, after a label padded to `width` columns. */
void veil_cli_print_gauges(const struct veil_pipeline *p, int width);

/** Logs at warn unless VEIL_LOG_LEVEL is set: the quieter default of the
 *  commands whose output is a summary (lint --start, replay, demo), which
 *  the plugins' set-up lines at info would bury. An explicit level,
 *  info included, is kept. */
void veil_cli_quiet_by_default(void);

/** 1 when argv holds -h or --help. */
int veil_cli_wants_help(int argc, char **argv);

int veil_cmd_run(int argc, char **argv);
int veil_cmd_lint(int argc, char **argv);
int veil_cmd_demo(int argc, char **argv);
int veil_cmd_plugins(int argc, char **argv);
int veil_cmd_notice(int argc, char **argv);
int veil_cmd_replay(int argc, char **argv);
/** `veil <plugin> <command> ...`; VEIL_EXIT_USAGE with a message when the
 *  plugin or its command is unknown. */
int veil_cmd_plugin(int argc, char **argv);

#endif

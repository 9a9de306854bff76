/*
 * cmd_plugins.c — `veil plugins [NAME]` (the plugins on the path, with the
 * parameter tables the host validates) and `veil <plugin> <command>`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plugin.h"

static const char *type_name(veil_param_type_t t) {
        switch (t) {
        case VEIL_PARAM_STRING: return "string";
        case VEIL_PARAM_INT: return "int";
        case VEIL_PARAM_DOUBLE: return "double";
        case VEIL_PARAM_BOOL: return "bool";
        case VEIL_PARAM_LIST: return "list";
        case VEIL_PARAM_MAP: return "map";
        }
        return "?";
}

static void describe(FILE *out, const struct veil_plugin_handle *h,
                     int full) {
        const struct veil_plugin *d = h->def;
        fprintf(out, "%s %s — %s\n", d->name,
                d->version ? d->version : "",
                d->description ? d->description : "");
        fprintf(out, "  file: %s\n", h->path);
        if (d->outputs && d->outputs[0]) {
                fprintf(out, "  outputs:");
                for (const char *const *o = d->outputs; *o; o++)
                        fprintf(out, " %s", *o);
                fprintf(out, "\n");
        }
        if (d->side_inputs && d->side_inputs[0]) {
                fprintf(out, "  side inputs:");
                for (const char *const *o = d->side_inputs; *o; o++)
                        fprintf(out, " %s", *o);
                fprintf(out, "\n");
        }
        const char *const *opt = veil_plugin_optional_sides(d);
        if (opt && opt[0]) {
                fprintf(out, "  optional side inputs:");
                for (const char *const *o = opt; *o; o++)
                        fprintf(out, " %s", *o);
                fprintf(out, "\n");
        }
        /* The order `veil lint` checks: stages that write outputs or
         * keep state come after this one. */
        if (veil_plugin_flags(d) & VEIL_PLUGIN_DECIDES_CONSENT)
                fprintf(out, "  decides consent: stages with outputs or "
                             "state go after it\n");
        if (d->params && d->params[0].name) {
                /* The names' column fits the longest name. */
                int w = 20;
                for (const struct veil_param_def *p = d->params; p->name;
                     p++)
                        if ((int)strlen(p->name) > w)
                                w = (int)strlen(p->name);
                fprintf(out, "  parameters (with:):\n");
                for (const struct veil_param_def *p = d->params; p->name;
                     p++) {
                        char dflt[128];
                        snprintf(dflt, sizeof(dflt), "default %s",
                                 p->default_value ? p->default_value
                                                  : "(none)");
                        fprintf(out, "    %-*s %-6s %-18s %s\n", w,
                                p->name, type_name(p->type),
                                p->required ? "required" : dflt,
                                p->doc ? p->doc : "");
                }
        }
        if (d->commands && d->commands[0].name) {
                fprintf(out, "  commands:\n");
                for (const struct veil_command *c = d->commands; c->name;
                     c++) {
                        fprintf(out, "    veil %s %s\n", d->name,
                                c->usage ? c->usage : c->name);
                        if (full && c->doc)
                                fprintf(out, "        %s\n", c->doc);
                }
        }
}

int veil_cmd_plugins(int argc, char **argv) {
        if (veil_cli_wants_help(argc, argv)) {
                printf("usage: veil plugins [NAME]\n"
                       "Lists every plugin on the plugin path "
                       "(VEIL_PLUGIN_PATH, then the plugins installed with "
                       "veil) with its outputs, parameters (type, default, "
                       "doc) and commands; with NAME, that plugin only.\n"
                       "Exits 1 when a file on the path fails to load (the "
                       "others are still listed, the error is on stderr); 2 "
                       "when NAME is not found.\n");
                return VEIL_EXIT_OK;
        }
        char **dirs;
        size_t n;
        veil_cli_plugin_path(&dirs, &n);
        int rc = VEIL_EXIT_OK;
        if (argc > 2) {
                fprintf(stderr, "veil plugins: one plugin name at most, got "
                                "'%s' and '%s'\n",
                        argv[1], argv[2]);
                veil_cli_free_path(dirs, n);
                return VEIL_EXIT_USAGE;
        }
        if (argc > 1) {
                struct veil_plugin_handle h;
                char err[2048];
                if (veil_plugin_load(&h, argv[1], dirs, n, err, sizeof(err))) {
                        fprintf(stderr, "veil: %s\n", err);
                        rc = VEIL_EXIT_USAGE;
                } else {
                        describe(stdout, &h, 1);
                        veil_plugin_unload(&h);
                }
        } else {
                char **files;
                int nf = veil_plugin_list(dirs, n, &files);
                for (int i = 0; i < nf; i++) {
                        struct veil_plugin_handle h;
                        char err[2048];
                        if (veil_plugin_load(&h, files[i], NULL, 0, err,
                                             sizeof(err))) {
                                /* The others are still listed; the exit
                                 * code says that one did not load (a
                                 * pipeline using it would not start). */
                                fprintf(stderr, "veil: %s\n", err);
                                rc = VEIL_EXIT_RUNTIME;
                        } else {
                                describe(stdout, &h, 0);
                                printf("\n");
                                veil_plugin_unload(&h);
                        }
                        free(files[i]);
                }
                free(files);
                if (nf <= 0)
                        printf("no plugins found on the plugin path\n");
        }
        veil_cli_free_path(dirs, n);
        return rc;
}

int veil_cmd_plugin(int argc, char **argv) {
        char **dirs;
        size_t n;
        veil_cli_plugin_path(&dirs, &n);
        struct veil_plugin_handle h;
        char err[2048];
        int rc = veil_plugin_load(&h, argv[0], dirs, n, err, sizeof(err));
        veil_cli_free_path(dirs, n);
        if (rc) {
                fprintf(stderr,
                        "veil: '%s' is neither a command nor a plugin (%s)\n"
                        "Run `veil --help` for the commands.\n",
                        argv[0], err);
                return VEIL_EXIT_USAGE;
        }
        const struct veil_command *cmds = h.def->commands;
        if (argc >= 2 &&
            (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                describe(stdout, &h, 1);
                veil_plugin_unload(&h);
                return VEIL_EXIT_OK;
        }
        if (argc < 2) {
                /* A usage error: the description goes with it, to stderr,
                 * so that stdout stays empty for a script. */
                if (cmds && cmds[0].name)
                        fprintf(stderr,
                                "veil %s: a command is needed: veil %s "
                                "COMMAND ... (`veil %s COMMAND --help` "
                                "describes one)\n",
                                h.def->name, h.def->name, h.def->name);
                else
                        fprintf(stderr,
                                "veil %s: this plugin has no commands; it is "
                                "used from a pipeline's plugins: list\n",
                                h.def->name);
                describe(stderr, &h, 1);
                veil_plugin_unload(&h);
                return VEIL_EXIT_USAGE;
        }
        for (const struct veil_command *c = cmds; c && c->name; c++) {
                if (strcmp(c->name, argv[1]))
                        continue;
                /* Every plugin command gets --help from its own table, so
                 * no plugin has to parse it (or can get it wrong). */
                for (int i = 2; i < argc; i++) {
                        if (strcmp(argv[i], "--help") && strcmp(argv[i], "-h"))
                                continue;
                        printf("usage: veil %s %s\n%s\n", h.def->name,
                               c->usage, c->doc);
                        veil_plugin_unload(&h);
                        return VEIL_EXIT_OK;
                }
                rc = c->run(argc - 1, argv + 1);
                veil_plugin_unload(&h);
                return rc;
        }
        fprintf(stderr, "veil: plugin '%s' has no command '%s'; it has:",
                h.def->name, argv[1]);
        for (const struct veil_command *c = cmds; c && c->name; c++)
                fprintf(stderr, " %s", c->name);
        fprintf(stderr, "%s\n", cmds && cmds[0].name ? "" : " (none)");
        veil_plugin_unload(&h);
        return VEIL_EXIT_USAGE;
}

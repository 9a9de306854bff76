/*
 * cmd_notice.c — `veil notice PIPELINE.yaml [--format md|html]`: the
 * data-practices notice for the end users of the operator's product.
 *
 * Every sentence comes from the configuration: the input schema's "pii"
 * marks, the keys, outputs and topics of the YAML, and each stage's notice
 * hook, which words what it does from its own parameters. Where no stage
 * speaks to a point (no consent stage, no differential privacy), the
 * notice says so rather than staying silent.
 *
 * The pipeline is loaded as `veil lint` loads it, plugins not started and
 * without reading key files (the notice names a key, it never needs one),
 * and it must pass the privacy lint: a notice never describes a pipeline
 * that would leak what it promises to protect.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "codec.h"
#include "keys.h"
#include "notice.h"
#include "privacy_lint.h"

/* Plain words for the interaction schema's marked fields; another schema's
 * fields are named by their path. */
static const char *plain(const char *path) {
        static const char *const words[][2] = {
                {"user_id", "your user id (account, device or cookie id)"},
                {"context.ip", "your IP address"},
                {"context.user_agent", "your browser's user-agent string"},
                {"context.device", "your device class"},
                {"context.lat", "your latitude, when you share a location"},
                {"context.lon", "your longitude, when you share a location"},
                {"context.geohash", "a map cell of your location"},
                {"context.country", "your country"},
                {"context.session_id", "your session id"},
                {"context.timezone", "your time zone"},
                {"tc_string", "the consent string (TCF) your browser sent"},
        };
        for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
                if (!strcmp(words[i][0], path))
                        return words[i][1];
        return path;
}

/* The plain words of the fields marked `mark`, "; "-separated, whole
 * (a notice line is never cut): malloc'd, "" for none, NULL without
 * memory. */
static char *list(const char **paths, const char **marks, size_t n,
                  const char *mark) {
        char *buf = NULL;
        size_t len = 0, k = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!strcmp(marks[i], mark))
                        fprintf(f, "%s%s", k++ ? "; " : "", plain(paths[i]));
        if (fclose(f)) {
                free(buf);
                return NULL;
        }
        return buf;
}

static int stage_said(const struct veil_notice *n, veil_notice_topic_t t) {
        for (size_t i = 0; i < n->n; i++)
                if (n->l[i].topic == t && n->l[i].stage[0])
                        return 1;
        return 0;
}

/* The host's statements, before the stages' (stage ""). */
static void host_before(struct veil_notice *n, struct veil_pipeline *p) {
        const struct veil_config *cfg = veil_pipeline_config(p);
        const char **paths, **marks;
        size_t np = veil_codec_pii_fields(veil_pipeline_input_codec(p),
                                          &paths, &marks);
        veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                        "We receive a record of each of your interactions "
                        "with an item (which item, what you did, when), as "
                        "our services send it (Kafka topic '%s').",
                        cfg->input.topic);
        char *ids = list(paths, marks, np, "identifier");
        char *quasi = list(paths, marks, np, "quasi");
        if (!ids || !quasi) /* without memory, say that much */
                veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                                "(The fields that identify you could not be "
                                "listed: out of memory.)");
        if (ids && ids[0])
                veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                                "Of that record, this identifies you: %s.",
                                ids);
        if (quasi && quasi[0])
                veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                                "These could help to identify you when "
                                "combined, and are treated as personal data: "
                                "%s.",
                                quasi);
        free(ids);
        free(quasi);
        for (size_t i = 0; i < cfg->n_side_inputs; i++)
                veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                                "We also read the '%s' records (Kafka topic "
                                "'%s').",
                                cfg->side_inputs[i].name,
                                cfg->side_inputs[i].topic);
        const struct veil_node *keys = cfg->keys;
        const struct veil_node *eph = veil_config_get(keys, "ephemeral");
        const struct veil_node *act = veil_config_get(keys, "active");
        const struct veil_node *files = veil_config_get(keys, "files");
        if (eph && veil_cli_config_is_ephemeral(cfg))
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "Wherever we need to tell people apart, we "
                                "use a pseudonym: a keyed code "
                                "(HMAC-SHA-256) of your user id under a "
                                "secret key that exists only while the "
                                "service runs, so pseudonyms change at "
                                "every restart.");
        else if (act && act->kind == VEIL_NODE_SCALAR)
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "Wherever we need to tell people apart, we "
                                "use a pseudonym: a keyed code "
                                "(HMAC-SHA-256) of your user id under our "
                                "secret key '%s' (%zu key%s configured; "
                                "when a key is retired, the pseudonyms made "
                                "with it can no longer be linked to you).",
                                act->scalar,
                                files && files->kind == VEIL_NODE_MAP
                                        ? files->n
                                        : (size_t)1,
                                files && files->kind == VEIL_NODE_MAP &&
                                                files->n != 1
                                        ? "s"
                                        : "");
        else
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "No pseudonymization key is configured: we "
                                "compute no pseudonyms of your user id.");
}

/* A topic the pipeline writes and reads back: how its instances share
 * what they learn (dp_model's model_updates). Each instance stops at its
 * own view of the total spent, which the others' releases reach late, so
 * only the sum of the instances' bounds holds for them all. */
static const char *shared_topic(const struct veil_config *cfg) {
        for (size_t i = 0; i < cfg->n_outputs; i++)
                for (size_t j = 0; j < cfg->n_side_inputs; j++)
                        if (!strcmp(cfg->outputs[i].topic,
                                    cfg->side_inputs[j].topic))
                                return cfg->outputs[i].topic;
        return NULL;
}

static void host_after(struct veil_notice *n, struct veil_pipeline *p) {
        const struct veil_config *cfg = veil_pipeline_config(p);
        char *buf = NULL;
        size_t len = 0, k = 0;
        FILE *f = open_memstream(&buf, &len);
        const struct veil_binding *dlq = NULL;
        for (size_t i = 0; i < cfg->n_outputs; i++) {
                const struct veil_binding *b = &cfg->outputs[i];
                if (!strcmp(b->name, "dead_letter")) {
                        dlq = b;
                        continue;
                }
                if (f)
                        fprintf(f, "%s%s (Kafka topic '%s')", k ? ", " : "",
                                b->name, b->topic);
                k++;
        }
        if (!f || fclose(f)) {
                free(buf);
                buf = NULL;
        }
        const char *outs = buf ? buf : "(not listed: out of memory)";
        if (!stage_said(n, VEIL_NOTICE_PURPOSE))
                veil_notice_add(n, VEIL_NOTICE_PURPOSE,
                                "This pipeline states no purpose beyond "
                                "producing its results: %s.",
                                k ? outs : "none");
        if (!stage_said(n, VEIL_NOTICE_CONSENT))
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "This pipeline does not check consent: every "
                                "interaction we receive is processed as "
                                "described here.");
        if (k)
                veil_notice_add(n, VEIL_NOTICE_RETENTION,
                                "We write our results to %s. How long a "
                                "topic keeps them is that topic's retention "
                                "setting in Kafka.",
                                outs);
        if (dlq)
                veil_notice_add(n, VEIL_NOTICE_RETENTION,
                                "A record we cannot process is kept "
                                "unchanged, with any identifier in it, on "
                                "Kafka topic '%s' for our operators to "
                                "inspect, for as long as that topic's "
                                "retention setting keeps it.",
                                dlq->topic);
        struct veil_checkpoint_config cc;
        char cerr[256];
        if (!veil_checkpoint_config_parse(cfg, &cc, cerr, sizeof(cerr)) &&
            cc.enabled)
                veil_notice_add(n, VEIL_NOTICE_RETENTION,
                                "What our stages keep, as stated here, is "
                                "also copied every %.6g seconds to Kafka "
                                "topic '%s', so that a restart resumes it. "
                                "What is deleted (when you withdraw, ask to "
                                "be erased, or it expires) leaves the copies "
                                "with the next copy and Kafka's compaction of "
                                "the older ones, as that topic's settings "
                                "allow.",
                                (double)cc.interval_ms / 1000, cc.topic);
        veil_notice_add(n, VEIL_NOTICE_RETENTION,
                        "Apart from what is stated above, an interaction is "
                        "held in memory only while its batch (at most %d "
                        "interactions) is processed.",
                        cfg->max_events);
        /* Each stage states its own bound; a reader would take the
         * largest for the whole, and the whole is their sum. */
        if (n->bounds >= 2 && isfinite(n->epsilon) && n->delta < 1) {
                char eps[32], delta[32];
                veil_format_up(eps, sizeof(eps), n->epsilon, 3);
                veil_format_up(delta, sizeof(delta), n->delta, 3);
                veil_notice_add(n, VEIL_NOTICE_PRIVACY,
                                "The %zu guarantees above add up: together, "
                                "whatever anyone can learn from everything "
                                "these stages produce changes by at most a "
                                "factor e^%s (plus a probability %s) "
                                "whether or not any one person's events "
                                "were used.",
                                n->bounds, eps, delta);
        } else if (n->bounds >= 2) {
                veil_notice_add(n, VEIL_NOTICE_PRIVACY,
                                "Taken together, these %zu stages give no "
                                "bound on the privacy loss: at least one of "
                                "them has none.",
                                n->bounds);
        }
        const char *shared = shared_topic(cfg);
        if (n->bounds && shared)
                veil_notice_add(n, VEIL_NOTICE_PRIVACY,
                                "When this service runs as several "
                                "instances, they share what they learn "
                                "through Kafka topic '%s', and the guarantee "
                                "above holds for each instance: taken "
                                "together, the instances' guarantees add up.",
                                shared);
        if (!stage_said(n, VEIL_NOTICE_PRIVACY))
                veil_notice_add(n, VEIL_NOTICE_PRIVACY,
                                "No stage of this pipeline adds "
                                "differential-privacy noise: nothing it "
                                "produces comes with a differential-privacy "
                                "guarantee.");
        free(buf);
}

static const char *const headings[] = {
        NULL,
        "What we collect",
        "Why we use it",
        "Your consent",
        "How we protect it",
        "What we keep, where, and for how long",
        "Differential privacy",
};

static void html_text(FILE *out, const char *s) {
        for (; *s; s++) {
                switch (*s) {
                case '&': fputs("&amp;", out); break;
                case '<': fputs("&lt;", out); break;
                case '>': fputs("&gt;", out); break;
                case '"': fputs("&quot;", out); break;
                case '\'': fputs("&#39;", out); break;
                default: fputc(*s, out);
                }
        }
}

/* In the order said: the host's facts, the stages in pipeline order, then
 * the host's words for points no stage covered. */
static void render(const struct veil_notice *n, const char *name, int html,
                   FILE *out) {
        if (html) {
                fputs("<!doctype html>\n<html lang=\"en\">\n<head><meta "
                      "charset=\"utf-8\"><title>Privacy notice</title>"
                      "</head>\n<body>\n<h1>Privacy notice</h1>\n<p>How "
                      "we use your data in the pipeline <code>",
                      out);
                html_text(out, name);
                fputs("</code>, as it is configured.</p>\n", out);
        } else {
                fprintf(out,
                        "# Privacy notice\n\nHow we use your data in the "
                        "pipeline `%s`, as it is configured.\n",
                        name);
        }
        for (int t = VEIL_NOTICE_COLLECTED; t <= VEIL_NOTICE_PRIVACY; t++) {
                if (html) {
                        fprintf(out, "<h2>%s</h2>\n<ul>\n", headings[t]);
                } else {
                        fprintf(out, "\n## %s\n\n", headings[t]);
                }
                for (size_t i = 0; i < n->n; i++) {
                        const struct veil_notice_line *l = &n->l[i];
                        if ((int)l->topic != t)
                                continue;
                        if (html) {
                                fputs("<li>", out);
                                html_text(out, l->text);
                                fputs("</li>\n", out);
                        } else {
                                fprintf(out, "- %s\n", l->text);
                        }
                }
                if (html)
                        fputs("</ul>\n", out);
        }
        if (html)
                fputs("</body>\n</html>\n", out);
}

int veil_cmd_notice(int argc, char **argv) {
        const char *file = NULL, *format = "md";
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--format") && i + 1 < argc) {
                        format = argv[++i];
                } else if (!strncmp(argv[i], "--format=", 9)) {
                        format = argv[i] + 9;
                } else if (!strcmp(argv[i], "--format")) {
                        fprintf(stderr, "veil notice: --format needs a "
                                        "value: md or html\n");
                        return VEIL_EXIT_USAGE;
                } else if (argv[i][0] == '-' && strcmp(argv[i], "-h") &&
                           strcmp(argv[i], "--help")) {
                        fprintf(stderr, "veil notice: unknown option '%s'\n",
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else if (argv[i][0] != '-' && file) {
                        fprintf(stderr, "veil notice: one pipeline only, got "
                                        "an extra argument '%s'\n",
                                argv[i]);
                        return VEIL_EXIT_USAGE;
                } else if (argv[i][0] != '-') {
                        file = argv[i];
                }
        }
        int help = veil_cli_wants_help(argc, argv);
        if (help || !file) {
                fprintf(help ? stdout : stderr,
                        "usage: veil notice PIPELINE.yaml [--format md|html]\n"
                        "Writes to stdout the privacy notice for the people "
                        "whose events the pipeline processes: what is "
                        "collected, why, under which consent, how it is "
                        "protected, what is kept where and for how long, "
                        "and the differential-privacy guarantee — from the "
                        "YAML, the schemas' pii marks and each stage's own "
                        "description of its parameters. The pipeline must "
                        "pass the privacy lint; key files are not read.\n");
                return help ? VEIL_EXIT_OK : VEIL_EXIT_USAGE;
        }
        int html = !strcmp(format, "html");
        if (!html && strcmp(format, "md")) {
                fprintf(stderr,
                        "veil notice: --format must be md or html, got "
                        "'%s'\n",
                        format);
                return VEIL_EXIT_USAGE;
        }
        struct veil_config *cfg = NULL;
        struct veil_pipeline *p = NULL;
        char err[8192];
        char **dirs = NULL;
        size_t nd = 0;
        int rc = veil_config_load(&cfg, file, err, sizeof(err));
        if (!rc) {
                veil_cli_plugin_path(&dirs, &nd);
                struct veil_pipeline_opts o = {dirs, nd, NULL, 1};
                rc = veil_pipeline_new(&p, cfg, &o, err, sizeof(err));
                veil_cli_free_path(dirs, nd);
        }
        /* The keys as lint and run take them, key files unread. */
        if (!rc)
                rc = veil_keys_check(cfg, err, sizeof(err));
        if (!rc)
                rc = veil_privacy_lint_check(p, cfg->keys != NULL, err,
                                             sizeof(err));
        if (rc) {
                fprintf(stderr, "veil notice: %s\n", err);
                veil_pipeline_destroy(p);
                veil_config_destroy(cfg);
                return VEIL_EXIT_USAGE;
        }
        struct veil_notice n;
        memset(&n, 0, sizeof(n));
        host_before(&n, p);
        for (size_t i = 0; i < veil_pipeline_n_stages(p); i++)
                veil_notice_collect(&n, veil_pipeline_stage_plugin(p, i),
                                    veil_pipeline_stage_params(p, i));
        host_after(&n, p);
        const char *slash = strrchr(file, '/');
        render(&n, slash ? slash + 1 : file, html, stdout);
        veil_notice_free(&n);
        veil_pipeline_destroy(p);
        veil_config_destroy(cfg);
        return fflush(stdout) ? VEIL_EXIT_RUNTIME : VEIL_EXIT_OK;
}

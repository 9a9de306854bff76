#include "privacy_lint.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "keys.h"
#include "lint.h"
#include "pipeline.h"

/* Every problem is reported, one line each, so a pipeline is fixed in one
 * round; lines that do not fit are counted and summed up at the end. */
struct report {
        char *buf;
        size_t size, len;
        int n, dropped;
};

#define TAIL_RESERVE 96 /* room kept for the "N more" line */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void report(struct report *r, const char *fmt, ...) {
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        r->n++;
        if (n < 0)
                return;
        size_t need = (size_t)n + (r->len ? 1 : 0);
        if (!r->buf || r->len + need + TAIL_RESERVE >= r->size) {
                r->dropped++;
                return;
        }
        r->len += (size_t)snprintf(r->buf + r->len, r->size - r->len, "%s%s",
                                   r->len ? "\n" : "", line);
}

/* What the bundled pseudonymize plugin would do with a field: the fix the
 * message suggests. Only a hint; any stage that declares a treatment
 * satisfies the lint. */
static const char *hint(const char *path, int identifier) {
        static const struct {
                const char *path, *policy;
        } t[] = {{"user_id", "pseudonym"},
                 {"context.ip", "truncate_ip"},
                 {"context.user_agent", "reduce_ua"},
                 {"context.lat", "geohash:5"},
                 {"context.lon", "geohash:5"},
                 {"context.geohash", "geohash:5"},
                 {"context.device", "device_class"}};
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
                if (!strcmp(t[i].path, path))
                        return t[i].policy;
        return identifier ? "pseudonym" : "drop";
}

/* A declaration of `decl` covers `field` itself and fields under it. */
static int covers(const char *decl, const char *field) {
        size_t n = strlen(decl);
        return !strncmp(decl, field, n) &&
               (field[n] == '\0' || field[n] == '.');
}

/* For a quasi-identifier a pseudonym is no treatment of its own: a keyed
 * code keeps the value exactly as unique as it was (a user agent's code is
 * still a fingerprint), and where values are few (a country, a time zone,
 * a device class) it is read back by frequency or from one event whose
 * value is known. So it needs a reason, as keeping does. */
static int satisfies(const struct veil_lint_entry *e, int identifier) {
        switch (e->treatment) {
        case VEIL_FIELD_DROPPED:
                return 1;
        case VEIL_FIELD_PSEUDONYMIZED:
                return identifier || e->reason;
        case VEIL_FIELD_GENERALIZED:
                return !identifier;
        case VEIL_FIELD_KEPT:
                return !identifier && e->reason;
        default:
                return 0;
        }
}

static const char *treatment_word(veil_field_treatment_t t) {
        switch (t) {
        case VEIL_FIELD_KEPT: return "keeps";
        case VEIL_FIELD_PSEUDONYMIZED: return "pseudonymizes";
        case VEIL_FIELD_GENERALIZED: return "generalizes";
        case VEIL_FIELD_DROPPED: return "drops";
        default: return "cannot treat";
        }
}

struct ctx {
        struct veil_pipeline *p;
        const struct veil_config *cfg;
        struct veil_lint *decl; /* per stage */
        size_t n_stages;
        struct report *r;
};

static const char *stage_name(const struct ctx *c, size_t s) {
        return veil_pipeline_stage_plugin(c->p, s)->name;
}

/* Position of a stage's parameter named like the field (the bundled
 * plugins name policy parameters by field path), else of the stage. */
static const char *param_where(const struct ctx *c, size_t s,
                               const char *path, char *buf, size_t size) {
        const veil_params_t *pp = veil_pipeline_stage_params(c->p, s);
        if (pp && veil_params_has(pp, path))
                return veil_params_where(pp, path);
        const struct veil_stage_cfg *sc = veil_pipeline_stage_cfg(c->p, s);
        snprintf(buf, size, "%s:%d:%d", c->cfg->file, sc->line, sc->col);
        return buf;
}

/* Checks one marked field of one output at the emitting stage `s`.
 * Returns 1 when it leaks there (and reports it), or when a declaration of
 * it is invalid (reported on its own by check_declarations). */
static int check_field(const struct ctx *c, const struct veil_binding *b,
                       size_t s, const char *path, const char *mark,
                       int from_input) {
        int identifier = !strcmp(mark, "identifier");
        const struct veil_lint_entry *weak = NULL; /* declared, not enough */
        size_t weak_stage = 0;
        char pos[512], head[512];

        for (size_t t = 0; t <= s; t++) {
                for (size_t i = 0; i < c->decl[t].n; i++) {
                        const struct veil_lint_entry *e = &c->decl[t].e[i];
                        if (!covers(e->path, path) ||
                            e->treatment == VEIL_FIELD_READ)
                                continue;
                        /* Reported as it is: a leak line would only send
                         * the reader to add a stage that is there. */
                        if (e->treatment < VEIL_FIELD_KEPT ||
                            e->treatment > VEIL_FIELD_DROPPED)
                                return 1;
                        if (satisfies(e, identifier))
                                return 0;
                        weak = e;
                        weak_stage = t;
                }
        }
        snprintf(head, sizeof(head),
                 "field '%s' (pii: %s%s) can reach output '%s' (topic %s) "
                 "in the clear",
                 path, mark,
                 from_input ? ", from the input schema: the output copies "
                              "it from the event"
                            : "",
                 b->name, b->topic);
        const char *h = hint(path, identifier);
        if (weak && identifier) {
                report(c->r,
                       "%s: %s: stage %zu '%s' %s it, and an identifier "
                       "must be pseudonymized or dropped (a reason is not "
                       "enough); write %s: %s (or drop)",
                       param_where(c, weak_stage, path, pos, sizeof(pos)),
                       head, weak_stage + 1, stage_name(c, weak_stage),
                       treatment_word(weak->treatment), path, h);
                return 1;
        }
        if (weak) {
                int ps = weak->treatment == VEIL_FIELD_PSEUDONYMIZED;
                report(c->r,
                       "%s: %s: stage %zu '%s' %s without a reason%s; "
                       "write %s: '%s: WHY IT IS NEEDED', or %s%s instead",
                       param_where(c, weak_stage, path, pos, sizeof(pos)),
                       head, weak_stage + 1, stage_name(c, weak_stage),
                       ps ? "pseudonymizes it" : "keeps it",
                       ps ? ", and a pseudonym keeps a quasi-identifier as "
                            "unique as it was and, where it has few values, "
                            "can be mapped back"
                          : "",
                       path, ps ? "pseudonym" : "keep", h,
                       strcmp(h, "drop") ? " (or drop)" : "");
                return 1;
        }
        const struct veil_stage_cfg *sc = veil_pipeline_stage_cfg(c->p, s);
        snprintf(pos, sizeof(pos), "%s:%d:%d", c->cfg->file, sc->line,
                 sc->col);
        /* The usual mistake: the treating stage is there, but after. */
        for (size_t t = s + 1; t < c->n_stages; t++) {
                for (size_t i = 0; i < c->decl[t].n; i++) {
                        const struct veil_lint_entry *e = &c->decl[t].e[i];
                        if (covers(e->path, path) &&
                            satisfies(e, identifier)) {
                                report(c->r,
                                       "%s: %s: stage %zu '%s' emits it and "
                                       "no earlier stage treats it; stage "
                                       "%zu '%s' %s it but runs after: move "
                                       "that stage before stage %zu",
                                       pos, head, s + 1, stage_name(c, s),
                                       t + 1, stage_name(c, t),
                                       treatment_word(e->treatment), s + 1);
                                return 1;
                        }
                }
        }
        report(c->r,
               "%s: %s: stage %zu '%s' emits it and no earlier stage treats "
               "it; add a pseudonymize stage before it with %s: %s%s%s",
               pos, head, s + 1, stage_name(c, s), path, h,
               strcmp(h, "drop") ? " (or drop)" : "",
               identifier ? "" : ", or keep it with a reason ('keep: WHY')");
        return 1;
}

static int declares(const struct veil_plugin *def, const char *output) {
        for (const char *const *o = def->outputs; o && *o; o++)
                if (!strcmp(*o, output))
                        return 1;
        return 0;
}

/* The stricter of two marks (NULL: none). */
static const char *stricter(const char *a, const char *b) {
        if (!a)
                return b;
        if (!b)
                return a;
        return !strcmp(a, "identifier") ? a : b;
}

/* The input schema's mark of an event field: its own, or a marked record
 * above it; the strictest. NULL when unmarked. */
static const char *input_mark(const struct ctx *c, const char *path) {
        struct veil_codec *in = veil_pipeline_input_codec(c->p);
        const char **paths = NULL, **marks = NULL;
        size_t n = in ? veil_codec_pii_fields(in, &paths, &marks) : 0;
        const char *m = NULL;
        for (size_t i = 0; i < n; i++)
                if (covers(paths[i], path))
                        m = stricter(m, marks[i]);
        return m;
}

struct marked {
        const char *path, *mark;
        int from_input; /* the mark is the input schema's, stricter */
};

/* Once per field and output: at the first stage it leaks. */
static void check_marked(const struct ctx *c, const struct veil_binding *b,
                         const struct marked *m) {
        for (size_t s = 0; s < c->n_stages; s++)
                if (declares(veil_pipeline_stage_plugin(c->p, s), b->name) &&
                    check_field(c, b, s, m->path, m->mark, m->from_input))
                        break;
}

/* The fields an output must not carry in the clear: those its schema
 * marks, and those the event encoder fills from the event (codec.c's
 * slots, by path, whatever the output schema marks) with the input
 * schema's mark. A copy of the interaction schema without its marks
 * bound to an output would otherwise let user_id, the IP and the session
 * id out raw past the lint; where both schemas mark a field, the
 * stricter mark holds. */
static void check_output(const struct ctx *c, const struct veil_binding *b) {
        struct veil_codec *codec = veil_pipeline_output_codec(c->p, b->name);
        const char **paths = NULL, **marks = NULL;
        size_t n = codec ? veil_codec_pii_fields(codec, &paths, &marks) : 0;
        const char *ev[VEIL_CODEC_EVENT_FIELDS];
        size_t n_ev = codec ? veil_codec_event_fields(
                                      codec, ev, VEIL_CODEC_EVENT_FIELDS)
                            : 0;
        const char *in[VEIL_CODEC_EVENT_FIELDS];
        for (size_t e = 0; e < n_ev; e++)
                in[e] = input_mark(c, ev[e]);
        for (size_t f = 0; f < n; f++) {
                struct marked m = {paths[f], marks[f], 0};
                for (size_t e = 0; e < n_ev; e++)
                        if (!strcmp(ev[e], paths[f]) && in[e] &&
                            strcmp(stricter(marks[f], in[e]), marks[f])) {
                                m.mark = in[e];
                                m.from_input = 1;
                        }
                check_marked(c, b, &m);
        }
        /* Event fields the output schema does not mark itself. */
        for (size_t e = 0; e < n_ev; e++) {
                int own = 0;
                for (size_t f = 0; f < n && !own; f++)
                        own = !strcmp(paths[f], ev[e]);
                if (in[e] && !own) {
                        struct marked m = {ev[e], in[e], 1};
                        check_marked(c, b, &m);
                }
        }
}

static void check_declarations(const struct ctx *c, int has_keys) {
        int keys_reported = 0;
        char pos[512];
        for (size_t s = 0; s < c->n_stages; s++) {
                for (size_t i = 0; i < c->decl[s].n; i++) {
                        const struct veil_lint_entry *e = &c->decl[s].e[i];
                        if (e->treatment == VEIL_FIELD_READ)
                                continue;
                        if (e->treatment < VEIL_FIELD_KEPT ||
                            e->treatment > VEIL_FIELD_DROPPED) {
                                report(c->r, "%s: stage %zu '%s': field '%s': "
                                       "%s",
                                       param_where(c, s, e->path, pos,
                                                   sizeof(pos)),
                                       s + 1, stage_name(c, s), e->path,
                                       e->reason ? e->reason
                                                 : "declared with an unknown "
                                                   "treatment (a plugin bug)");
                        } else if (e->treatment == VEIL_FIELD_PSEUDONYMIZED &&
                                   !has_keys && !keys_reported) {
                                const struct veil_stage_cfg *sc =
                                        veil_pipeline_stage_cfg(c->p, s);
                                report(c->r,
                                       "%s:%d:%d: stage %zu '%s' "
                                       "pseudonymizes '%s' but the pipeline "
                                       "has no keys: section; add keys: "
                                       "{active: k1, files: {k1: "
                                       "/path/to/key}} (`veil pseudonymize "
                                       "keygen FILE` writes a key) or keys: "
                                       "{ephemeral: true} for a throw-away "
                                       "key",
                                       c->cfg->file, sc->line, sc->col, s + 1,
                                       stage_name(c, s), e->path);
                                keys_reported = 1;
                        }
                }
        }
}

/* A stage that reads fields the input schema marks "pii" (what it reads
 * may reach its outputs in its own words: context's explanation "in
 * <country>") needs them treated by an earlier stage, as an output does.
 * One line per stage, naming every such field. */
static void check_reads(const struct ctx *c) {
        struct veil_codec *in = veil_pipeline_input_codec(c->p);
        const char **paths = NULL, **marks = NULL;
        size_t n = in ? veil_codec_pii_fields(in, &paths, &marks) : 0;
        for (size_t s = 0; s < c->n_stages; s++) {
                char fields[1024] = "";
                size_t len = 0, later = 0;
                int all_later = 1;
                for (size_t f = 0; f < n; f++) {
                        int reads = 0;
                        for (size_t i = 0; i < c->decl[s].n && !reads; i++)
                                reads = c->decl[s].e[i].treatment ==
                                                VEIL_FIELD_READ &&
                                        covers(c->decl[s].e[i].path, paths[f]);
                        if (!reads)
                                continue;
                        int identifier = !strcmp(marks[f], "identifier");
                        size_t by = 0; /* 1 + the first stage treating it */
                        for (size_t t = 0; t < c->n_stages && !by; t++)
                                for (size_t k = 0; k < c->decl[t].n && !by;
                                     k++)
                                        if (covers(c->decl[t].e[k].path,
                                                   paths[f]) &&
                                            satisfies(&c->decl[t].e[k],
                                                      identifier))
                                                by = t + 1;
                        if (by && by - 1 < s)
                                continue;
                        if (by && !later)
                                later = by;
                        all_later &= by != 0;
                        if (len < sizeof(fields))
                                len += (size_t)snprintf(
                                        fields + len, sizeof(fields) - len,
                                        "%s'%s' (pii: %s)", len ? ", " : "",
                                        paths[f], marks[f]);
                }
                if (!len)
                        continue;
                const struct veil_stage_cfg *sc =
                        veil_pipeline_stage_cfg(c->p, s);
                if (all_later)
                        report(c->r,
                               "%s:%d:%d: stage %zu '%s' reads %s of the "
                               "input, and what it reads can reach its "
                               "outputs; stage %zu '%s' treats them but runs "
                               "after: move that stage before stage %zu",
                               c->cfg->file, sc->line, sc->col, s + 1,
                               stage_name(c, s), fields, later,
                               stage_name(c, later - 1), s + 1);
                else
                        report(c->r,
                               "%s:%d:%d: stage %zu '%s' reads %s of the "
                               "input, and what it reads can reach its "
                               "outputs, but no earlier stage treats them "
                               "(generalized, dropped, or kept or "
                               "pseudonymized with a reason); put a "
                               "pseudonymize stage before it (its defaults "
                               "treat each; keep or pseudonymize one with "
                               "'keep: WHY' or 'pseudonym: WHY')",
                               c->cfg->file, sc->line, sc->col, s + 1,
                               stage_name(c, s), fields);
        }
}

int veil_privacy_lint_check(struct veil_pipeline *p, int has_keys,
                            char *errstr, size_t errstr_size) {
        struct report r = {errstr, errstr_size, 0, 0, 0};
        struct ctx c = {p, veil_pipeline_config(p), NULL,
                        veil_pipeline_n_stages(p), &r};
        if (errstr && errstr_size)
                errstr[0] = '\0';
        c.decl = calloc(c.n_stages ? c.n_stages : 1, sizeof(*c.decl));
        if (!c.decl)
                return -VEIL_ENOMEM;
        for (size_t s = 0; s < c.n_stages; s++)
                veil_lint_collect(&c.decl[s], veil_pipeline_stage_plugin(p, s),
                                  veil_pipeline_stage_params(p, s));

        check_declarations(&c, has_keys);
        if (c.cfg->state && !has_keys)
                /* Stages key what they hold about a user by the pseudonym,
                 * or with no keys by the raw user_id (context's profiles),
                 * and the state topic is an output like any other. */
                report(&r,
                       "%s:%d:%d: state: checkpoints stage state to a topic, "
                       "and without a keys: section stages hold what they "
                       "keep about a user under the raw user_id; add keys: "
                       "{active: k1, files: {k1: /path/to/key}} (`veil "
                       "pseudonymize keygen FILE` writes a key) and a "
                       "pseudonymize stage first",
                       c.cfg->file, c.cfg->state->line, c.cfg->state->col);
        else if (c.cfg->state && veil_keys_ephemeral(c.cfg))
                /* An ephemeral key is drawn anew at every start, and the
                 * state restored after one is held under the old run's
                 * pseudonyms, which no erasure or access request can
                 * name again: the person's profile would stay, and be
                 * checkpointed again, until it expired. */
                report(&r,
                       "%s:%d:%d: state: checkpoints what stages hold about "
                       "a person under their pseudonym, and keys: "
                       "{ephemeral: true} draws a new key at every start, "
                       "so after a restart no erasure or access request "
                       "could reach the restored state; use key files: "
                       "keys: {active: k1, files: {k1: /path/to/key}} "
                       "(`veil pseudonymize keygen FILE` writes a key)",
                       c.cfg->file, c.cfg->state->line, c.cfg->state->col);
        check_reads(&c);
        for (size_t o = 0; o < c.cfg->n_outputs; o++)
                check_output(&c, &c.cfg->outputs[o]);

        for (size_t s = 0; s < c.n_stages; s++)
                veil_lint_free(&c.decl[s]);
        free(c.decl);
        if (!r.n)
                return 0;
        if (r.dropped && errstr && r.len + 1 < errstr_size)
                snprintf(errstr + r.len, errstr_size - r.len,
                         "\n(%d more privacy problems; fix these and run "
                         "veil lint again)",
                         r.dropped);
        return -VEIL_EINVAL;
}

/*
 * params.c — a stage's `with:` block checked against its plugin's
 * parameter table, and the veil_params_* accessors plugins read it with.
 *
 * Type rules (shared with the pipeline's own numbers and flags):
 *   STRING  any scalar, as text.
 *   INT     the whole scalar is a 64-bit integer: optional sign, decimal
 *           digits or 0x/0X hex digits (no octal, no '_', no spaces).
 *   DOUBLE  the whole scalar is a finite strtod number; integers too.
 *   BOOL    true/True/TRUE or false/False/FALSE only (YAML 1.2 core). The
 *           YAML 1.1 yes/no/on/off are refused: `country: no` turning into
 *           false is a bug nobody should have to debug.
 *   LIST    a sequence of scalars; a single scalar is refused (write [x]).
 *   MAP     a mapping of scalar to scalar.
 * Quoting does not change how a scalar is read ("10" is an INT 10), so a
 * quoted ${VAR} can feed any type.
 *
 * Defaults are YAML text in the plugin's table: for STRING, INT, DOUBLE and
 * BOOL the text is the scalar itself; LIST and MAP defaults are parsed as
 * YAML ("[a, b]", "{x: y}", "[]"). A default that breaks the type rules is
 * a plugin bug and fails the build of the parameters.
 *
 * veil_params_where() names the value's file:line:col when the parameter
 * was written, and the stage's position otherwise (a default, an absent
 * parameter, an undeclared name), so it is always printable.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct param {
        char *name;
        veil_param_type_t type;
        int has;        /* given or defaulted */
        char *where;    /* "file:line:col" when written in the YAML */
        char *str;      /* STRING */
        int64_t i;      /* INT */
        double d;       /* DOUBLE */
        int b;          /* BOOL */
        char **items;   /* LIST items, MAP keys */
        char **values;  /* MAP values */
        size_t n_items;
};

struct veil_params {
        char *plugin;
        char *where; /* the stage */
        struct param *p;
        size_t n;
};

/* ------------------------------------------------------------------ */
/* Scalar rules                                                       */
/* ------------------------------------------------------------------ */

int veil_params_parse_int(const char *s, int64_t *v) {
        const char *d = s;
        char *end;
        long long x;
        int base = 10;

        if (!s)
                return -VEIL_EINVAL;
        if (*d == '+' || *d == '-')
                d++;
        if (d[0] == '0' && (d[1] == 'x' || d[1] == 'X')) {
                base = 16;
                d += 2;
        }
        /* strtoll would skip spaces and accept a second sign after 0x. */
        if (base == 16 ? !isxdigit((unsigned char)*d)
                       : !isdigit((unsigned char)*d))
                return -VEIL_EINVAL;
        errno = 0;
        x = strtoll(s, &end, base);
        if (errno || *end)
                return -VEIL_EINVAL;
        *v = x;
        return 0;
}

int veil_params_parse_double(const char *s, double *v) {
        char *end;
        double x;

        if (!s || !*s || isspace((unsigned char)*s))
                return -VEIL_EINVAL;
        errno = 0;
        x = strtod(s, &end);
        /* Underflow (ERANGE with a tiny result) is a usable number. */
        if (*end || !isfinite(x))
                return -VEIL_EINVAL;
        *v = x;
        return 0;
}

int veil_params_parse_bool(const char *s, int *v) {
        static const char *const t[] = {"true", "True", "TRUE"};
        static const char *const f[] = {"false", "False", "FALSE"};
        size_t i;

        if (!s)
                return -VEIL_EINVAL;
        for (i = 0; i < 3; i++) {
                if (!strcmp(s, t[i])) {
                        *v = 1;
                        return 0;
                }
                if (!strcmp(s, f[i])) {
                        *v = 0;
                        return 0;
                }
        }
        return -VEIL_EINVAL;
}

/* ------------------------------------------------------------------ */
/* Building                                                           */
/* ------------------------------------------------------------------ */

static const char *type_name(veil_param_type_t t) {
        switch (t) {
        case VEIL_PARAM_STRING:
                return "a string";
        case VEIL_PARAM_INT:
                return "an integer";
        case VEIL_PARAM_DOUBLE:
                return "a number";
        case VEIL_PARAM_BOOL:
                return "a boolean";
        case VEIL_PARAM_LIST:
                return "a list of values";
        case VEIL_PARAM_MAP:
                return "a mapping of names to values";
        }
        return "an unknown type";
}

static const char *type_hint(veil_param_type_t t) {
        switch (t) {
        case VEIL_PARAM_STRING:
                return "write one value after the colon";
        case VEIL_PARAM_INT:
                return "write a whole number such as 10, -3 or 0x1f";
        case VEIL_PARAM_DOUBLE:
                return "write a number such as 0.5, 10 or 1e-3";
        case VEIL_PARAM_BOOL:
                return "write true or false";
        case VEIL_PARAM_LIST:
                return "write [a, b] (or [] for none) or one '- item' per "
                       "line";
        case VEIL_PARAM_MAP:
                return "write {name: value} or indented name: value pairs";
        }
        return "fix the plugin's parameter table";
}

struct bctx {
        const char *file;   /* NULL: no YAML position (a default) */
        const char *plugin;
        char *errstr;
        size_t errstr_size;
};

static int oom(struct bctx *c) {
        if (c->errstr && c->errstr_size)
                snprintf(c->errstr, c->errstr_size,
                         "plugin '%s': out of memory", c->plugin);
        return -VEIL_ENOMEM;
}

/* Prefixes "FILE:LINE:COL: " when the node comes from the pipeline. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(struct bctx *c, const struct veil_node *at, const char *fmt,
                ...) {
        va_list ap;
        int off = 0;

        if (!c->errstr || !c->errstr_size)
                return -VEIL_EINVAL;
        c->errstr[0] = '\0';
        if (c->file && at)
                off = snprintf(c->errstr, c->errstr_size, "%s:%d:%d: ",
                               c->file, at->line, at->col);
        if (off >= 0 && (size_t)off < c->errstr_size) {
                va_start(ap, fmt);
                vsnprintf(c->errstr + off, c->errstr_size - (size_t)off, fmt,
                          ap);
                va_end(ap);
        }
        return -VEIL_EINVAL;
}

static char *fmt_where(const char *file, int line, int col) {
        char buf[32];
        size_t fl = strlen(file);
        int bl = snprintf(buf, sizeof(buf), ":%d:%d", line, col);
        char *w = malloc(fl + (size_t)bl + 1);
        if (!w)
                return NULL;
        memcpy(w, file, fl);
        memcpy(w + fl, buf, (size_t)bl + 1);
        return w;
}

/* What the value was, for "got ...": never more than a short excerpt. */
static void describe(const struct veil_node *n, char *buf, size_t size) {
        if (n->kind == VEIL_NODE_SEQ)
                snprintf(buf, size, "a sequence");
        else if (n->kind == VEIL_NODE_MAP)
                snprintf(buf, size, "a mapping");
        else
                snprintf(buf, size, "'%.40s%s'", n->scalar,
                         strlen(n->scalar) > 40 ? "..." : "");
}

static int type_error(struct bctx *c, const struct veil_node *at,
                      const struct veil_param_def *def,
                      const struct veil_node *val, int from_default) {
        char got[64];
        describe(val, got, sizeof(got));
        if (from_default)
                return fail(c, NULL,
                            "plugin '%s' default for parameter '%s' must be "
                            "%s, got %s; fix the plugin's parameter table",
                            c->plugin, def->name, type_name(def->type), got);
        return fail(c, at, "plugin '%s' parameter '%s' must be %s, got %s; %s",
                    c->plugin, def->name, type_name(def->type), got,
                    type_hint(def->type));
}

/* Entries not yet copied stay NULL, so a partial copy frees cleanly. */
static int dup_scalars(struct bctx *c, struct veil_node *const *src, size_t n,
                       char ***out) {
        size_t i;
        *out = calloc(n ? n : 1, sizeof(**out));
        if (!*out)
                return oom(c);
        for (i = 0; i < n; i++)
                if (!((*out)[i] = strdup(src[i]->scalar)))
                        return oom(c);
        return 0;
}

/* Reads `val` into p by def's type; errors point at the value (or at the
 * offending item inside it). */
static int set_value(struct bctx *c, struct param *p,
                     const struct veil_param_def *def,
                     const struct veil_node *val, int from_default) {
        size_t i;
        int rc;

        switch (def->type) {
        case VEIL_PARAM_STRING:
        case VEIL_PARAM_INT:
        case VEIL_PARAM_DOUBLE:
        case VEIL_PARAM_BOOL:
                if (val->kind != VEIL_NODE_SCALAR)
                        return type_error(c, val, def, val, from_default);
                if ((def->type == VEIL_PARAM_INT &&
                     veil_params_parse_int(val->scalar, &p->i)) ||
                    (def->type == VEIL_PARAM_DOUBLE &&
                     veil_params_parse_double(val->scalar, &p->d)) ||
                    (def->type == VEIL_PARAM_BOOL &&
                     veil_params_parse_bool(val->scalar, &p->b)))
                        return type_error(c, val, def, val, from_default);
                if (def->type == VEIL_PARAM_STRING &&
                    !(p->str = strdup(val->scalar)))
                        return oom(c);
                break;
        case VEIL_PARAM_LIST:
                if (val->kind != VEIL_NODE_SEQ)
                        return type_error(c, val, def, val, from_default);
                for (i = 0; i < val->n; i++)
                        if (val->items[i]->kind != VEIL_NODE_SCALAR)
                                return fail(c, val->items[i],
                                            "plugin '%s' parameter '%s' item "
                                            "%zu must be a single value, not "
                                            "a %s; %s",
                                            c->plugin, def->name, i,
                                            val->items[i]->kind ==
                                                            VEIL_NODE_SEQ
                                                    ? "sequence"
                                                    : "mapping",
                                            from_default
                                                    ? "fix the plugin's "
                                                      "parameter table"
                                                    : "list plain values");
                p->n_items = val->n;
                if ((rc = dup_scalars(c, val->items, val->n, &p->items)))
                        return rc;
                break;
        case VEIL_PARAM_MAP:
                if (val->kind != VEIL_NODE_MAP)
                        return type_error(c, val, def, val, from_default);
                for (i = 0; i < val->n; i++)
                        if (val->items[i]->kind != VEIL_NODE_SCALAR)
                                return fail(c, val->items[i],
                                            "plugin '%s' parameter '%s' entry "
                                            "'%.40s' must be a single value, "
                                            "not a %s; %s",
                                            c->plugin, def->name,
                                            val->keys[i]->scalar,
                                            val->items[i]->kind ==
                                                            VEIL_NODE_SEQ
                                                    ? "sequence"
                                                    : "mapping",
                                            from_default
                                                    ? "fix the plugin's "
                                                      "parameter table"
                                                    : "map names to plain "
                                                      "values");
                p->n_items = val->n;
                if ((rc = dup_scalars(c, val->keys, val->n, &p->items)) ||
                    (rc = dup_scalars(c, val->items, val->n, &p->values)))
                        return rc;
                break;
        }
        p->has = 1;
        return 0;
}

static void param_free(struct param *p) {
        for (size_t j = 0; j < p->n_items; j++) {
                if (p->items)
                        free(p->items[j]);
                if (p->values)
                        free(p->values[j]);
        }
        free(p->items);
        free(p->values);
        free(p->name);
        free(p->where);
        free(p->str);
}

static int apply_default(struct bctx *c, struct param *p,
                         const struct veil_param_def *def) {
        struct veil_node *n = NULL, scalar;
        char err[256];
        int rc;

        if (def->type == VEIL_PARAM_LIST || def->type == VEIL_PARAM_MAP) {
                rc = veil_config_parse_node(&n, "default",
                                            def->default_value,
                                            strlen(def->default_value), err,
                                            sizeof(err));
                if (rc) {
                        fail(c, NULL,
                             "plugin '%s' default for parameter '%s' is not "
                             "YAML (%s); fix the plugin's parameter table",
                             c->plugin, def->name, err);
                        return rc == -VEIL_ENOMEM ? rc : -VEIL_EINVAL;
                }
                rc = set_value(c, p, def, n, 1);
                veil_config_free_node(n);
                return rc;
        }
        memset(&scalar, 0, sizeof(scalar));
        scalar.kind = VEIL_NODE_SCALAR;
        scalar.scalar = (char *)def->default_value;
        return set_value(c, p, def, &scalar, 1);
}

static int check_table(struct bctx *c, const struct veil_param_def *defs,
                       size_t n) {
        size_t i, j;
        for (i = 0; i < n; i++) {
                if (defs[i].type < VEIL_PARAM_STRING ||
                    defs[i].type > VEIL_PARAM_MAP)
                        return fail(c, NULL,
                                    "plugin '%s' parameter '%s' has unknown "
                                    "type %d; fix the plugin's parameter "
                                    "table",
                                    c->plugin, defs[i].name,
                                    (int)defs[i].type);
                for (j = 0; j < i; j++)
                        if (!strcmp(defs[i].name, defs[j].name))
                                return fail(c, NULL,
                                            "plugin '%s' declares parameter "
                                            "'%s' twice; fix the plugin's "
                                            "parameter table",
                                            c->plugin, defs[i].name);
                /* Every default is read, used or not: one that breaks its
                 * type would otherwise pass every pipeline that sets the
                 * parameter, and fail the first that leaves it out (and
                 * `veil plugins` would document it). */
                if (defs[i].default_value) {
                        struct param scratch = {0};
                        int rc = apply_default(c, &scratch, &defs[i]);
                        param_free(&scratch);
                        if (rc)
                                return rc;
                }
        }
        return 0;
}

/* Edit distance (insertions, deletions, substitutions) between two short
 * names, capped: only the near misses matter. */
static size_t name_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b), row[65];
        if (la > 64 || lb > 64)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];
                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j];
                        size_t best = diag + (a[i - 1] != b[j - 1]);
                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        row[j] = best;
                        diag = up;
                }
        }
        return row[lb];
}

/* "did you mean 'x'? " for a near miss (a third of the name's letters at
 * most), then every parameter: the likely typo comes first, where an
 * error message cut short still shows it. */
static void allowed_list(const struct veil_param_def *defs, size_t n,
                         const char *unknown, char *buf, size_t size) {
        size_t i, off = 0, best = SIZE_MAX, at = 0;
        buf[0] = '\0';
        for (i = 0; i < n; i++) {
                size_t d = name_distance(unknown, defs[i].name);
                if (d < best) {
                        best = d;
                        at = i;
                }
        }
        if (best <= 1 + strlen(unknown) / 3) {
                int w = snprintf(buf, size, "did you mean '%s'? ",
                                 defs[at].name);
                if (w > 0 && (size_t)w < size)
                        off = (size_t)w;
        }
        int w = snprintf(buf + off, size - off, "allowed parameters: ");
        if (w < 0 || (size_t)w >= size - off)
                return;
        off += (size_t)w;
        for (i = 0; i < n; i++) {
                w = snprintf(buf + off, size - off, "%s%s", i ? ", " : "",
                             defs[i].name);
                if (w < 0 || (size_t)w >= size - off) {
                        buf[off] = '\0';
                        if (size - off >= sizeof(", …"))
                                memcpy(buf + off, ", …", sizeof(", …"));
                        break;
                }
                off += (size_t)w;
        }
}

int veil_params_build(veil_params_t **out, const struct veil_config *cfg,
                      const struct veil_stage_cfg *stage,
                      const char *plugin_name,
                      const struct veil_param_def *defs, char *errstr,
                      size_t errstr_size) {
        const struct veil_node *with = stage ? stage->with : NULL;
        const char *file = cfg && cfg->file ? cfg->file : NULL;
        struct bctx c = {file, plugin_name ? plugin_name : "?", errstr,
                         errstr_size};
        struct veil_node stage_pos;
        const struct veil_node *at;
        veil_params_t *P;
        size_t nd = 0, i, j;
        char list[2048];
        int rc;

        *out = NULL;
        while (defs && defs[nd].name)
                nd++;
        if ((rc = check_table(&c, defs, nd)))
                return rc;

        /* Missing parameters are reported where `with:` is, else at the
         * plugin item, which is where the fix goes. */
        memset(&stage_pos, 0, sizeof(stage_pos));
        stage_pos.line = stage ? stage->line : 1;
        stage_pos.col = stage ? stage->col : 1;
        at = with ? with : &stage_pos;

        P = calloc(1, sizeof(*P));
        if (!P)
                return oom(&c);
        P->p = calloc(nd ? nd : 1, sizeof(*P->p));
        P->plugin = strdup(c.plugin);
        P->where = fmt_where(file ? file : c.plugin, at->line, at->col);
        if (!P->p || !P->plugin || !P->where) {
                rc = oom(&c);
                goto fail;
        }
        P->n = nd;
        for (i = 0; i < nd; i++) {
                P->p[i].type = defs[i].type;
                if (!(P->p[i].name = strdup(defs[i].name))) {
                        rc = oom(&c);
                        goto fail;
                }
        }

        if (with && with->kind != VEIL_NODE_MAP) {
                rc = fail(&c, with,
                          "plugin '%s' with: must be a mapping of parameter: "
                          "value; %s",
                          c.plugin, "write with: {name: value}");
                goto fail;
        }
        for (i = 0; with && i < with->n; i++) {
                const struct veil_node *k = with->keys[i];
                for (j = 0; j < nd && strcmp(defs[j].name, k->scalar); j++)
                        ;
                if (j < nd)
                        continue;
                if (nd == 0) {
                        rc = fail(&c, k,
                                  "unknown parameter '%.64s' for plugin '%s'; "
                                  "the plugin takes no parameters",
                                  k->scalar, c.plugin);
                } else {
                        allowed_list(defs, nd, k->scalar, list,
                                     sizeof(list));
                        rc = fail(&c, k,
                                  "unknown parameter '%.64s' for plugin '%s'; "
                                  "%s",
                                  k->scalar, c.plugin, list);
                }
                goto fail;
        }
        for (i = 0; i < nd; i++) {
                const struct veil_node *val =
                        veil_config_get(with, defs[i].name);
                if (val) {
                        if ((rc = set_value(&c, &P->p[i], &defs[i], val, 0)))
                                goto fail;
                        P->p[i].where = fmt_where(file ? file : c.plugin,
                                                  val->line, val->col);
                        if (!P->p[i].where) {
                                rc = oom(&c);
                                goto fail;
                        }
                } else if (defs[i].required) {
                        rc = fail(&c, at,
                                  "plugin '%s' is missing required parameter "
                                  "'%s'; add %s: VALUE (%s%s%s) under with:",
                                  c.plugin, defs[i].name, defs[i].name,
                                  type_name(defs[i].type),
                                  defs[i].doc ? ": " : "",
                                  defs[i].doc ? defs[i].doc : "");
                        goto fail;
                } else if (defs[i].default_value) {
                        if ((rc = apply_default(&c, &P->p[i], &defs[i])))
                                goto fail;
                }
        }
        *out = P;
        return 0;
fail:
        veil_params_destroy(P);
        return rc;
}

void veil_params_destroy(veil_params_t *P) {
        if (!P)
                return;
        for (size_t i = 0; i < P->n; i++)
                param_free(&P->p[i]);
        free(P->p);
        free(P->plugin);
        free(P->where);
        free(P);
}

/* ------------------------------------------------------------------ */
/* Accessors                                                          */
/* ------------------------------------------------------------------ */

/* type 0: any. A declared parameter without value answers NULL too. */
static const struct param *find(const veil_params_t *P, const char *name,
                                veil_param_type_t type) {
        size_t i;
        if (!P || !name)
                return NULL;
        for (i = 0; i < P->n; i++)
                if (!strcmp(P->p[i].name, name))
                        return P->p[i].has && (!type || P->p[i].type == type)
                                       ? &P->p[i]
                                       : NULL;
        return NULL;
}

int veil_params_has(const veil_params_t *p, const char *name) {
        return find(p, name, 0) != NULL;
}

const char *veil_params_str(const veil_params_t *p, const char *name) {
        const struct param *x = find(p, name, VEIL_PARAM_STRING);
        return x ? x->str : NULL;
}

int64_t veil_params_int(const veil_params_t *p, const char *name,
                        int64_t fallback) {
        const struct param *x = find(p, name, VEIL_PARAM_INT);
        return x ? x->i : fallback;
}

double veil_params_double(const veil_params_t *p, const char *name,
                          double fallback) {
        const struct param *x = find(p, name, VEIL_PARAM_DOUBLE);
        return x ? x->d : fallback;
}

int veil_params_bool(const veil_params_t *p, const char *name, int fallback) {
        const struct param *x = find(p, name, VEIL_PARAM_BOOL);
        return x ? x->b : fallback;
}

size_t veil_params_list_size(const veil_params_t *p, const char *name) {
        const struct param *x = find(p, name, VEIL_PARAM_LIST);
        return x ? x->n_items : 0;
}

const char *veil_params_list_at(const veil_params_t *p, const char *name,
                                size_t i) {
        const struct param *x = find(p, name, VEIL_PARAM_LIST);
        return x && i < x->n_items ? x->items[i] : NULL;
}

size_t veil_params_map_size(const veil_params_t *p, const char *name) {
        const struct param *x = find(p, name, VEIL_PARAM_MAP);
        return x ? x->n_items : 0;
}

const char *veil_params_map_key(const veil_params_t *p, const char *name,
                                size_t i) {
        const struct param *x = find(p, name, VEIL_PARAM_MAP);
        return x && i < x->n_items ? x->items[i] : NULL;
}

const char *veil_params_map_value(const veil_params_t *p, const char *name,
                                  size_t i) {
        const struct param *x = find(p, name, VEIL_PARAM_MAP);
        return x && i < x->n_items ? x->values[i] : NULL;
}

const char *veil_params_where(const veil_params_t *p, const char *name) {
        const struct param *x = find(p, name, 0);
        if (!p)
                return NULL;
        return x && x->where ? x->where : p->where;
}

/*
 * config.c — the pipeline YAML: parse (libyaml events), substitute ${VAR},
 * validate, and build struct veil_config.
 *
 * The format:
 *
 *   kafka:
 *     bootstrap: ${KAFKA_BOOTSTRAP:-embedded} # "embedded": mock cluster
 *     group: veil-demo
 *     guarantee: at-least-once        # or exactly-once
 *     settings:                       # to librdkafka as-is, scalars only;
 *       security.protocol: SASL_SSL   # bootstrap.servers, group.id refused
 *   input:
 *     topic: interactions
 *     schema: ../../schemas/interaction.avsc   # the reader schema
 *     framing: raw                    # or confluent
 *     writer_schemas: {1: ../../schemas/interaction.avsc}
 *                                     # confluent only: id -> writer schema
 *     writer_schema: PATH             # raw only, optional
 *     partitions: 3                   # embedded broker: 1..10000, default 1
 *     batch: {max_events: 256, max_wait_ms: 50}  # 1..100000, 0..60000
 *   side_inputs:                      # optional: name -> binding, keys as
 *     consent: {topic: consent, schema: ../../schemas/consent.avsc}
 *                                     # for input but no batch
 *   outputs:                          # name -> binding; dead_letter required
 *     recommendations: {topic: recommendations,
 *                       schema: ../../schemas/recommendation.avsc,
 *                       framing: raw, schema_id: 3, partitions: 1}
 *     dead_letter: {topic: interactions.dlq}  # no schema: original bytes
 *   plugins:                          # at least one stage, run in order
 *     - use: popular                  # a name on plugin_path, or a path
 *       with: {k: 10}                 # checked by veil_params_build()
 *   plugin_path: [../../build/plugins]
 *   http: {...}                       # http, log, keys, demo, state: any mapping,
 *                                     # kept as node trees for their modules
 *
 * An empty value, ~ or null (unquoted) counts as absent for optional
 * sections and for `with:`.
 * Outputs other than dead_letter need `schema` (the host encodes what a
 * plugin emits); dead_letter refuses one. framing: confluent needs schema_id
 * on an output; schema_id is accepted and ignored with raw framing.
 *
 * Paths: schema and writer schema paths are kept as written; resolve them
 * with veil_config_path(), relative to the YAML file's directory (absolute
 * paths unchanged). plugin_path entries are stored already resolved. Every
 * string in struct veil_config is an owned copy; the node tree (root) also
 * stays, and the opaque sections and stage `with:` blocks point into it.
 *
 * YAML subset, by choice: one document per file; anchors, aliases and tags
 * are refused with an error at their position (an alias multiplies input —
 * "billion laughs" — and a pipeline is short enough to write out). Every
 * scalar is text; its key decides how it is read. A mapping key must be a
 * scalar and appear once. Limits against hostile input: 4 MiB of text,
 * 64 levels of nesting, 100000 nodes, 16 MiB of scalar text after
 * substitution, no NUL inside a scalar.
 *
 * Substitution runs in every scalar, keys included, quoted or not, before
 * validation: ${NAME} is the variable's value (an error when unset),
 * ${NAME:-default} the default when NAME is unset or empty (as in sh; the
 * default is literal text up to the first '}'), $$ a literal '$', and a '$'
 * followed by anything else stays as it is. NAME is letters, digits and '_',
 * not starting with a digit. An unterminated ${ is an error. A ${...}
 * closed on its line needs no quotes even inside {...} or [...] (see
 * protect_braces()), but a default holding ',', '[' or ']' there does; the
 * characters U+E000 and U+E001 are reserved for this and refused.
 *
 * Errors: "FILE:LINE:COL: what is wrong; what would be valid", 1-based,
 * at the offending key (unknown, duplicate), value (type, range, variable)
 * or, for a missing key, at the mapping that lacks it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <yaml.h>

#include "kafka_guard.h"

#define MAX_DOC_BYTES ((size_t)4 << 20)
#define MAX_DEPTH 64
#define MAX_NODES 100000
#define MAX_EXPANDED ((size_t)16 << 20)

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

PRINTF_LIKE(6, 7)
static int errat(char *errstr, size_t size, const char *file, int line,
                 int col, const char *fmt, ...) {
        va_list ap;
        int off;
        if (!errstr || !size)
                return -VEIL_EINVAL;
        off = snprintf(errstr, size, "%s:%d:%d: ", file, line, col);
        if (off >= 0 && (size_t)off < size) {
                va_start(ap, fmt);
                vsnprintf(errstr + off, size - (size_t)off, fmt, ap);
                va_end(ap);
        }
        return -VEIL_EINVAL;
}

static int nomem(char *errstr, size_t size, const char *file) {
        if (errstr && size)
                snprintf(errstr, size, "%s: out of memory", file);
        return -VEIL_ENOMEM;
}

/* ------------------------------------------------------------------ */
/* Parsing: libyaml events -> struct veil_node                         */
/* ------------------------------------------------------------------ */

struct yparse {
        yaml_parser_t parser;
        const char *name;
        const char *text;
        size_t len;
        veil_config_env_fn env; /* NULL: no substitution */
        void *env_ud;
        size_t n_nodes;
        size_t expanded; /* scalar bytes after substitution, so far */
        char *errstr;
        size_t errstr_size;
};

static int perr(struct yparse *ps, int line, int col, const char *what,
                const char *valid) {
        return errat(ps->errstr, ps->errstr_size, ps->name, line, col,
                     "%s; %s", what, valid);
}

static int yaml_fail(struct yparse *ps) {
        yaml_parser_t *p = &ps->parser;
        const char *problem = p->problem ? p->problem : "unknown error";
        int line = 1, col = 1;

        if (p->error == YAML_MEMORY_ERROR)
                return nomem(ps->errstr, ps->errstr_size, ps->name);
        if (p->error == YAML_READER_ERROR) {
                /* The reader reports a byte offset, not a mark. */
                size_t i, end = p->problem_offset < ps->len ? p->problem_offset
                                                            : ps->len;
                /* libyaml counts columns in characters, and so do we. */
                for (i = 0; i < end; i++) {
                        if (ps->text[i] == '\n') {
                                line++;
                                col = 1;
                        } else if (((unsigned char)ps->text[i] & 0xC0) !=
                                   0x80) {
                                col++;
                        }
                }
                return errat(ps->errstr, ps->errstr_size, ps->name, line, col,
                             "unreadable text: %s; a pipeline file is UTF-8 "
                             "text without control characters",
                             problem);
        }
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
        if (p->context)
                return errat(ps->errstr, ps->errstr_size, ps->name, line, col,
                             "YAML syntax error: %s (%s at %d:%d); check the "
                             "indentation, colons and quotes here",
                             problem, p->context,
                             (int)p->context_mark.line + 1,
                             (int)p->context_mark.column + 1);
        return errat(ps->errstr, ps->errstr_size, ps->name, line, col,
                     "YAML syntax error: %s; check the indentation, colons "
                     "and quotes here",
                     problem);
}

static int next_event(struct yparse *ps, yaml_event_t *ev) {
        if (yaml_parser_parse(&ps->parser, ev))
                return 0;
        return yaml_fail(ps);
}

static const char *kind_name(enum veil_node_kind k) {
        return k == VEIL_NODE_SCALAR ? "scalar"
               : k == VEIL_NODE_SEQ  ? "sequence"
                                     : "mapping";
}

void veil_config_free_node(struct veil_node *n) {
        size_t i;
        if (!n)
                return;
        for (i = 0; i < n->n; i++) {
                veil_config_free_node(n->items[i]);
                if (n->keys)
                        veil_config_free_node(n->keys[i]);
        }
        free(n->items);
        free(n->keys);
        free(n->scalar);
        free(n);
}

static int node_new(struct yparse *ps, enum veil_node_kind kind,
                    const yaml_mark_t *m, struct veil_node **out) {
        struct veil_node *n;
        *out = NULL;
        if (++ps->n_nodes > MAX_NODES)
                return errat(ps->errstr, ps->errstr_size, ps->name,
                             (int)m->line + 1, (int)m->column + 1,
                             "more than %d YAML nodes; a pipeline file is far "
                             "smaller than that",
                             MAX_NODES);
        n = calloc(1, sizeof(*n));
        if (!n)
                return nomem(ps->errstr, ps->errstr_size, ps->name);
        n->kind = kind;
        n->line = (int)m->line + 1;
        n->col = (int)m->column + 1;
        *out = n;
        return 0;
}

/* Capacity is implicit: 4, then doubled whenever n reaches a power of two. */
static int node_push(struct veil_node *n, struct veil_node *key,
                     struct veil_node *val) {
        if (n->n == 0 || (n->n >= 4 && (n->n & (n->n - 1)) == 0)) {
                size_t cap = n->n ? n->n * 2 : 4;
                struct veil_node **it;
                it = realloc(n->items, cap * sizeof(*it));
                if (!it)
                        return -VEIL_ENOMEM;
                n->items = it;
                if (n->kind == VEIL_NODE_MAP) {
                        it = realloc(n->keys, cap * sizeof(*it));
                        if (!it)
                                return -VEIL_ENOMEM;
                        n->keys = it;
                }
        }
        if (n->kind == VEIL_NODE_MAP)
                n->keys[n->n] = key;
        n->items[n->n++] = val;
        return 0;
}

struct sbuf {
        char *p;
        size_t len, cap;
};

static int sb_add(struct sbuf *b, const char *s, size_t n) {
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 32;
                char *p;
                while (cap < b->len + n + 1)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (!p)
                        return -VEIL_ENOMEM;
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
        return 0;
}

static int is_name_char(char c) {
        return isalnum((unsigned char)c) || c == '_';
}

/* Expands ${NAME}, ${NAME:-default} and $$ in one scalar. */
static int substitute(struct yparse *ps, const struct veil_node *n,
                      const char *in, size_t len, struct sbuf *b) {
        size_t i = 0;
        int rc;

        while (i < len) {
                const char *dollar = memchr(in + i, '$', len - i);
                size_t run = dollar ? (size_t)(dollar - (in + i)) : len - i;
                const char *body, *close, *val;
                size_t blen, nlen = 0, vlen;
                char *name;
                int has_default;

                if ((rc = sb_add(b, in + i, run)))
                        return rc;
                i += run;
                if (i >= len)
                        break;
                if (i + 1 < len && in[i + 1] == '$') {
                        if ((rc = sb_add(b, "$", 1)))
                                return rc;
                        i += 2;
                        continue;
                }
                if (i + 1 >= len || in[i + 1] != '{') {
                        if ((rc = sb_add(b, "$", 1)))
                                return rc;
                        i++;
                        continue;
                }
                body = in + i + 2;
                close = memchr(body, '}', len - i - 2);
                if (!close)
                        return perr(ps, n->line, n->col,
                                    "unterminated '${' in this value",
                                    "write ${NAME} or ${NAME:-default}, and "
                                    "$$ for a literal '$'");
                blen = (size_t)(close - body);
                while (nlen < blen && is_name_char(body[nlen]))
                        nlen++;
                has_default = nlen < blen;
                if (nlen == 0 || isdigit((unsigned char)body[0]) ||
                    (has_default && (blen - nlen < 2 || body[nlen] != ':' ||
                                     body[nlen + 1] != '-')))
                        return errat(ps->errstr, ps->errstr_size, ps->name,
                                     n->line, n->col,
                                     "invalid reference '${%.*s}'; write "
                                     "${NAME} or ${NAME:-default}, NAME being "
                                     "letters, digits and '_' (not starting "
                                     "with a digit)",
                                     (int)(blen > 64 ? 64 : blen), body);
                /* A default is literal text up to the first '}': one that
                 * holds '$' (a nested ${…}, or $$) would be taken as it is,
                 * not as sh reads it (a group named "${HOSTNAME}"). */
                if (has_default && memchr(body + nlen + 2, '$',
                                          blen - nlen - 2))
                        return errat(ps->errstr, ps->errstr_size, ps->name,
                                     n->line, n->col,
                                     "the default of '${%.*s:-…}' holds a "
                                     "'$': a default is literal text, "
                                     "without references or $$; set the "
                                     "variable, or write the value out",
                                     (int)nlen, body);
                name = strndup(body, nlen);
                if (!name)
                        return -VEIL_ENOMEM;
                val = ps->env(name, ps->env_ud);
                if (has_default && (!val || !*val)) {
                        val = body + nlen + 2;
                        vlen = blen - nlen - 2;
                } else if (!val) {
                        rc = errat(ps->errstr, ps->errstr_size, ps->name,
                                   n->line, n->col,
                                   "environment variable '%s' is not set; set "
                                   "it, or give a default with ${%s:-default}",
                                   name, name);
                        free(name);
                        return rc;
                } else {
                        vlen = strlen(val);
                }
                free(name);
                if (ps->expanded + b->len + vlen > MAX_EXPANDED)
                        return perr(ps, n->line, n->col,
                                    "values grow beyond 16 MiB after "
                                    "substitution",
                                    "check the environment variables used");
                if ((rc = sb_add(b, val, vlen)))
                        return rc;
                i = (size_t)(close - in) + 1;
        }
        return 0;
}

/* YAML reads { and } inside a flow collection as punctuation, so
 * `{topic: ${T}}` would not parse. Before parsing, the braces of each ${...}
 * (closed on the same line) become two private-use characters, one
 * character each so libyaml's line:column stay true; every scalar gets them
 * back before substitution. Input holding these two characters is refused,
 * which keeps the swap reversible. */
#define BRACE_OPEN "\xee\x80\x80"  /* U+E000 */
#define BRACE_CLOSE "\xee\x80\x81" /* U+E001 */

static int protect_braces(struct yparse *ps, const char *text, size_t len,
                          struct sbuf *out) {
        size_t i = 0, line = 1, col = 1;
        int rc;

        for (i = 0; i < len; i++) {
                if (text[i] == '\n') {
                        line++;
                        col = 1;
                } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
                        col++;
                }
                if (i + 2 < len && !memcmp(text + i, "\xee\x80", 2) &&
                    (text[i + 2] == '\x80' || text[i + 2] == '\x81'))
                        return perr(ps, (int)line, (int)col - 1,
                                    "the characters U+E000 and U+E001 are "
                                    "reserved (veil uses them to read ${...})",
                                    "remove this one");
        }
        /* The line's end and the next '}' at or after a position only
         * move forward: found once each, not again for every "${" on a
         * line (a line of 200k "${" took 12 s). */
        size_t eol = 0, next_close = 0;
        int have_eol = 0, have_close = 0;
        for (i = 0; i < len;) {
                const char *dollar = memchr(text + i, '$', len - i), *close;
                size_t end, run = dollar ? (size_t)(dollar - text) - i
                                         : len - i;
                if ((rc = sb_add(out, text + i, run)))
                        return rc;
                i += run;
                if (i >= len)
                        break;
                if (i + 1 >= len ||
                    (text[i + 1] != '$' && text[i + 1] != '{')) {
                        if ((rc = sb_add(out, "$", 1)))
                                return rc;
                        i++;
                        continue;
                }
                if (text[i + 1] == '$') {
                        if ((rc = sb_add(out, "$$", 2)))
                                return rc;
                        i += 2;
                        continue;
                }
                if (!have_eol || eol < i + 2) {
                        const char *nl = memchr(text + i + 2, '\n',
                                                len - i - 2);
                        eol = nl ? (size_t)(nl - text) : len;
                        have_eol = 1;
                }
                if (!have_close || next_close < i + 2) {
                        const char *c = memchr(text + i + 2, '}',
                                               len - i - 2);
                        next_close = c ? (size_t)(c - text) : len;
                        have_close = 1;
                }
                end = eol;
                close = next_close < end ? text + next_close : NULL;
                if (!close) {
                        if ((rc = sb_add(out, "${", 2)))
                                return rc;
                        i += 2;
                        continue;
                }
                if ((rc = sb_add(out, "$" BRACE_OPEN, 4)) ||
                    (rc = sb_add(out, text + i + 2,
                                 (size_t)(close - text) - i - 2)) ||
                    (rc = sb_add(out, BRACE_CLOSE, 3)))
                        return rc;
                i = (size_t)(close - text) + 1;
        }
        if (!out->p)
                return sb_add(out, "", 0);
        return 0;
}

/* A malloc'd copy of value with the protected braces put back. */
static char *restore_braces(const char *value, size_t *len) {
        char *out = malloc(*len + 1);
        size_t i, o = 0;
        if (!out)
                return NULL;
        for (i = 0; i < *len; i++) {
                if (i + 2 < *len && !memcmp(value + i, "\xee\x80", 2) &&
                    (value[i + 2] == '\x80' || value[i + 2] == '\x81')) {
                        out[o++] = value[i + 2] == '\x80' ? '{' : '}';
                        i += 2;
                } else {
                        out[o++] = value[i];
                }
        }
        out[o] = '\0';
        *len = o;
        return out;
}

static int make_scalar(struct yparse *ps, struct veil_node *n,
                       const char *value, size_t len) {
        struct sbuf b = {0};
        int rc;

        /* "\0" in a double-quoted scalar would make the C string disagree
         * with what the file says (two keys equal up to the NUL). */
        if (memchr(value, '\0', len))
                return perr(ps, n->line, n->col,
                            "this value contains a NUL character",
                            "remove the \\0 escape");
        if (ps->env) {
                char *plain = restore_braces(value, &len);
                if (!plain)
                        return nomem(ps->errstr, ps->errstr_size, ps->name);
                rc = substitute(ps, n, plain, len, &b);
                free(plain);
        } else
                rc = sb_add(&b, value, len);
        if (!rc && !b.p)
                rc = sb_add(&b, "", 0);
        if (rc) {
                free(b.p);
                return rc == -VEIL_ENOMEM
                               ? nomem(ps->errstr, ps->errstr_size, ps->name)
                               : rc;
        }
        ps->expanded += b.len;
        if (ps->expanded > MAX_EXPANDED) {
                free(b.p);
                return perr(ps, n->line, n->col,
                            "values grow beyond 16 MiB after substitution",
                            "check the environment variables used");
        }
        n->scalar = b.p;
        return 0;
}

static int check_props(struct yparse *ps, const yaml_mark_t *m,
                       const yaml_char_t *anchor, const yaml_char_t *tag) {
        if (anchor)
                return errat(ps->errstr, ps->errstr_size, ps->name,
                             (int)m->line + 1, (int)m->column + 1,
                             "anchor '&%.64s' is not supported; write the "
                             "value out in full (aliases are refused too)",
                             (const char *)anchor);
        if (tag)
                return errat(ps->errstr, ps->errstr_size, ps->name,
                             (int)m->line + 1, (int)m->column + 1,
                             "tag '%.64s' is not supported; remove it (each "
                             "value is read as its key expects)",
                             (const char *)tag);
        return 0;
}

struct keyref {
        const char *key;
        size_t idx;
};

static int keyref_cmp(const void *a, const void *b) {
        const struct keyref *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        if (c)
                return c;
        return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Sorting keeps hostile mappings with many keys at n log n. */
static int check_dups(struct yparse *ps, const struct veil_node *map) {
        struct keyref *r;
        size_t i, later = (size_t)-1, first = 0;
        int rc = 0;

        if (map->n < 2)
                return 0;
        r = malloc(map->n * sizeof(*r));
        if (!r)
                return nomem(ps->errstr, ps->errstr_size, ps->name);
        for (i = 0; i < map->n; i++) {
                r[i].key = map->keys[i]->scalar;
                r[i].idx = i;
        }
        qsort(r, map->n, sizeof(*r), keyref_cmp);
        for (i = 1; i < map->n; i++) {
                if (!strcmp(r[i - 1].key, r[i].key) && r[i].idx < later) {
                        later = r[i].idx;
                        first = r[i - 1].idx;
                }
        }
        free(r);
        if (later != (size_t)-1) {
                const struct veil_node *k1 = map->keys[first];
                const struct veil_node *k2 = map->keys[later];
                rc = errat(ps->errstr, ps->errstr_size, ps->name, k2->line,
                           k2->col,
                           "duplicate key '%.64s' (first at %s:%d:%d); "
                           "give each key once",
                           k2->scalar, ps->name, k1->line, k1->col);
        }
        return rc;
}

static int parse_node(struct yparse *ps, const yaml_event_t *ev, int depth,
                      struct veil_node **out);

static int parse_children(struct yparse *ps, struct veil_node *n, int depth) {
        yaml_event_t child;
        int rc;

        for (;;) {
                struct veil_node *key = NULL, *val = NULL;
                if ((rc = next_event(ps, &child)))
                        return rc;
                if (child.type == YAML_SEQUENCE_END_EVENT ||
                    child.type == YAML_MAPPING_END_EVENT) {
                        yaml_event_delete(&child);
                        return 0;
                }
                if (n->kind == VEIL_NODE_MAP) {
                        rc = parse_node(ps, &child, depth + 1, &key);
                        yaml_event_delete(&child);
                        if (rc)
                                return rc;
                        if (key->kind != VEIL_NODE_SCALAR) {
                                rc = errat(ps->errstr, ps->errstr_size,
                                           ps->name, key->line, key->col,
                                           "a mapping key must be a single "
                                           "value, not a %s; write key: value",
                                           kind_name(key->kind));
                                veil_config_free_node(key);
                                return rc;
                        }
                        if ((rc = next_event(ps, &child))) {
                                veil_config_free_node(key);
                                return rc;
                        }
                }
                rc = parse_node(ps, &child, depth + 1, &val);
                yaml_event_delete(&child);
                if (!rc && node_push(n, key, val))
                        rc = nomem(ps->errstr, ps->errstr_size, ps->name);
                if (rc) {
                        veil_config_free_node(key);
                        veil_config_free_node(val);
                        return rc;
                }
        }
}

static int parse_node(struct yparse *ps, const yaml_event_t *ev, int depth,
                      struct veil_node **out) {
        struct veil_node *n = NULL;
        const yaml_mark_t *m = &ev->start_mark;
        int rc;

        *out = NULL;
        switch (ev->type) {
        case YAML_ALIAS_EVENT:
                return errat(ps->errstr, ps->errstr_size, ps->name,
                             (int)m->line + 1, (int)m->column + 1,
                             "alias '*%.64s' is not supported; write the "
                             "value out in full",
                             (const char *)ev->data.alias.anchor);
        case YAML_SCALAR_EVENT:
                if ((rc = check_props(ps, m, ev->data.scalar.anchor,
                                      ev->data.scalar.tag)) ||
                    (rc = node_new(ps, VEIL_NODE_SCALAR, m, &n)))
                        return rc;
                n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
                rc = make_scalar(ps, n, (const char *)ev->data.scalar.value,
                                 ev->data.scalar.length);
                break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
                if (ev->type == YAML_SEQUENCE_START_EVENT)
                        rc = check_props(ps, m, ev->data.sequence_start.anchor,
                                         ev->data.sequence_start.tag);
                else
                        rc = check_props(ps, m, ev->data.mapping_start.anchor,
                                         ev->data.mapping_start.tag);
                if (rc)
                        return rc;
                if (depth >= MAX_DEPTH)
                        return errat(ps->errstr, ps->errstr_size, ps->name,
                                     (int)m->line + 1, (int)m->column + 1,
                                     "nesting deeper than %d levels; a "
                                     "pipeline needs a handful",
                                     MAX_DEPTH);
                if ((rc = node_new(ps,
                                   ev->type == YAML_MAPPING_START_EVENT
                                           ? VEIL_NODE_MAP
                                           : VEIL_NODE_SEQ,
                                   m, &n)))
                        return rc;
                rc = parse_children(ps, n, depth);
                if (!rc && n->kind == VEIL_NODE_MAP)
                        rc = check_dups(ps, n);
                break;
        default:
                return errat(ps->errstr, ps->errstr_size, ps->name,
                             (int)m->line + 1, (int)m->column + 1,
                             "unexpected YAML structure (event %d); write a "
                             "mapping, sequence or value here",
                             (int)ev->type);
        }
        if (rc) {
                veil_config_free_node(n);
                return rc;
        }
        *out = n;
        return 0;
}

/* One document: STREAM-START DOCUMENT-START node DOCUMENT-END STREAM-END.
 * An empty stream is a null document (an empty plain scalar at 1:1). */
static int parse_document(struct yparse *ps, struct veil_node **root) {
        yaml_event_t ev;
        int rc;

        if ((rc = next_event(ps, &ev)))
                return rc;
        yaml_event_delete(&ev); /* STREAM-START */
        if ((rc = next_event(ps, &ev)))
                return rc;
        if (ev.type == YAML_STREAM_END_EVENT) {
                yaml_mark_t m = {0, 0, 0};
                yaml_event_delete(&ev);
                if ((rc = node_new(ps, VEIL_NODE_SCALAR, &m, root)))
                        return rc;
                return make_scalar(ps, *root, "", 0);
        }
        yaml_event_delete(&ev); /* DOCUMENT-START */
        if ((rc = next_event(ps, &ev)))
                return rc;
        rc = parse_node(ps, &ev, 0, root);
        yaml_event_delete(&ev);
        if (rc)
                return rc;
        if ((rc = next_event(ps, &ev)))
                return rc;
        yaml_event_delete(&ev); /* DOCUMENT-END */
        if ((rc = next_event(ps, &ev)))
                return rc;
        if (ev.type != YAML_STREAM_END_EVENT)
                rc = perr(ps, (int)ev.start_mark.line + 1,
                          (int)ev.start_mark.column + 1,
                          "a second YAML document starts here",
                          "a pipeline file holds exactly one document");
        yaml_event_delete(&ev);
        return rc;
}

static int parse_yaml(struct veil_node **out, const char *name,
                      const char *text, size_t len, veil_config_env_fn env,
                      void *env_ud, char *errstr, size_t errstr_size) {
        struct yparse ps;
        struct sbuf prot = {0};
        int rc;

        *out = NULL;
        if (len > MAX_DOC_BYTES)
                return errat(errstr, errstr_size, name, 1, 1,
                             "the text is %zu bytes long; the limit is %zu "
                             "bytes (4 MiB)",
                             len, MAX_DOC_BYTES);
        /* Encoding is fixed to UTF-8 below, so a UTF-8 BOM is ours to skip. */
        if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) {
                text += 3;
                len -= 3;
        }
        memset(&ps, 0, sizeof(ps));
        ps.name = name;
        ps.text = text;
        ps.len = len;
        ps.env = env;
        ps.env_ud = env_ud;
        ps.errstr = errstr;
        ps.errstr_size = errstr_size;
        if (env) {
                rc = protect_braces(&ps, text, len, &prot);
                if (rc) {
                        free(prot.p);
                        return rc == -VEIL_ENOMEM
                                       ? nomem(errstr, errstr_size, name)
                                       : rc;
                }
                ps.text = prot.p;
                ps.len = prot.len;
        }
        if (!yaml_parser_initialize(&ps.parser)) {
                free(prot.p);
                return nomem(errstr, errstr_size, name);
        }
        /* UTF-8 only: the brace swap works on UTF-8 bytes. */
        yaml_parser_set_encoding(&ps.parser, YAML_UTF8_ENCODING);
        yaml_parser_set_input_string(&ps.parser,
                                     (const unsigned char *)ps.text, ps.len);
        rc = parse_document(&ps, out);
        yaml_parser_delete(&ps.parser);
        free(prot.p);
        if (rc) {
                veil_config_free_node(*out);
                *out = NULL;
        }
        return rc;
}

int veil_config_parse_node(struct veil_node **out, const char *name,
                           const char *text, size_t len, char *errstr,
                           size_t errstr_size) {
        return parse_yaml(out, name, text, len, NULL, NULL, errstr,
                          errstr_size);
}

const struct veil_node *veil_config_get(const struct veil_node *map,
                                        const char *key) {
        size_t i;
        if (!map || map->kind != VEIL_NODE_MAP)
                return NULL;
        for (i = 0; i < map->n; i++)
                if (!strcmp(map->keys[i]->scalar, key))
                        return map->items[i];
        return NULL;
}

/* ------------------------------------------------------------------ */
/* Validation: node tree -> struct veil_config                         */
/* ------------------------------------------------------------------ */

struct vctx {
        struct veil_config *cfg;
        char *errstr;
        size_t errstr_size;
};

/* One row per allowed key of a section. At the top level a row also says
 * how the section is read: by `load`, or kept as an opaque mapping at
 * `node_off` in struct veil_config. Adding a section is adding a row. */
struct keydef {
        const char *name;
        int required;
        int (*load)(struct vctx *v, const struct veil_node *val);
        size_t node_off;
};

PRINTF_LIKE(3, 4)
static int bad(struct vctx *v, const struct veil_node *at, const char *fmt,
               ...) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return errat(v->errstr, v->errstr_size, v->cfg->file, at->line,
                     at->col, "%s", msg);
}

static int oom(struct vctx *v) {
        return nomem(v->errstr, v->errstr_size, v->cfg->file);
}

/* "a.b" into buf; truncation only shortens a message. */
static const char *join_path(char *buf, size_t size, const char *a,
                             const char *b) {
        if (snprintf(buf, size, "%s.%s", a, b) < 0)
                buf[0] = '\0';
        return buf;
}

static const char *key_list(const struct keydef *keys, int required_only,
                            char *buf, size_t size) {
        size_t off = 0;
        buf[0] = '\0';
        for (; keys->name; keys++) {
                int w;
                if (required_only && !keys->required)
                        continue;
                w = snprintf(buf + off, size - off, "%s%s", off ? ", " : "",
                             keys->name);
                if (w < 0 || (size_t)w >= size - off)
                        break;
                off += (size_t)w;
        }
        return buf;
}

static const struct keydef *find_keydef(const struct keydef *keys,
                                        const char *name) {
        for (; keys->name; keys++)
                if (!strcmp(keys->name, name))
                        return keys;
        return NULL;
}

static int is_null(const struct veil_node *n) {
        return n && n->kind == VEIL_NODE_SCALAR && !n->quoted &&
               (!n->scalar[0] || !strcmp(n->scalar, "~") ||
                !strcmp(n->scalar, "null") || !strcmp(n->scalar, "Null") ||
                !strcmp(n->scalar, "NULL"));
}

static int wrong_kind(struct vctx *v, const struct veil_node *n,
                      const char *path, enum veil_node_kind want) {
        static const char *const want_s[] = {
                [VEIL_NODE_SCALAR] = "a single value",
                [VEIL_NODE_SEQ] = "a sequence",
                [VEIL_NODE_MAP] = "a mapping"};
        static const char *const hint[] = {
                [VEIL_NODE_SCALAR] = "write one value after the colon",
                [VEIL_NODE_SEQ] = "write [a, b] or one '- item' per line",
                [VEIL_NODE_MAP] = "write key: value pairs, indented below or "
                                  "as {key: value}"};
        const char *got = is_null(n)                    ? "an empty value"
                          : n->kind == VEIL_NODE_SCALAR ? "a scalar"
                          : n->kind == VEIL_NODE_SEQ    ? "a sequence"
                                                        : "a mapping";
        return bad(v, n, "%s must be %s, not %s; %s", path, want_s[want], got,
                   hint[want]);
}

static int want_kind(struct vctx *v, const struct veil_node *n,
                     const char *path, enum veil_node_kind want) {
        if (n->kind != want)
                return wrong_kind(v, n, path, want);
        return 0;
}

static int check_keys(struct vctx *v, const struct veil_node *map,
                      const char *where, const struct keydef *keys) {
        const struct keydef *k;
        char list[512];
        size_t i;

        for (i = 0; i < map->n; i++)
                if (!find_keydef(keys, map->keys[i]->scalar))
                        return bad(v, map->keys[i],
                                   "unknown key '%.64s' in %s; allowed keys: "
                                   "%s",
                                   map->keys[i]->scalar, where,
                                   key_list(keys, 0, list, sizeof(list)));
        for (k = keys; k->name; k++)
                if (k->required && !veil_config_get(map, k->name))
                        return bad(v, map,
                                   "missing key '%s' in %s; %s needs: %s",
                                   k->name, where, where,
                                   key_list(keys, 1, list, sizeof(list)));
        return 0;
}

static int check_string(struct vctx *v, const struct veil_node *n,
                        const char *path) {
        int rc = want_kind(v, n, path, VEIL_NODE_SCALAR);
        if (!rc && !n->scalar[0])
                rc = bad(v, n, "%s is empty; give a value", path);
        return rc;
}

static int dup_to(struct vctx *v, const char *s, char **out) {
        *out = strdup(s);
        return *out ? 0 : oom(v);
}

static int get_string(struct vctx *v, const struct veil_node *n,
                      const char *path, char **out) {
        int rc = check_string(v, n, path);
        return rc ? rc : dup_to(v, n->scalar, out);
}

static int get_int(struct vctx *v, const struct veil_node *n,
                   const char *path, int64_t min, int64_t max, int64_t *out) {
        int rc = want_kind(v, n, path, VEIL_NODE_SCALAR);
        if (rc)
                return rc;
        if (veil_params_parse_int(n->scalar, out))
                return bad(v, n,
                           "%s must be an integer, got '%.40s'; valid range: "
                           "%lld..%lld",
                           path, n->scalar, (long long)min, (long long)max);
        if (*out < min || *out > max)
                return bad(v, n, "%s is %lld, out of range; valid range: "
                                 "%lld..%lld",
                           path, (long long)*out, (long long)min,
                           (long long)max);
        return 0;
}

static int get_enum(struct vctx *v, const struct veil_node *n,
                    const char *path, const char *const *names, int *out) {
        char list[256];
        size_t off = 0;
        int i, rc = want_kind(v, n, path, VEIL_NODE_SCALAR);

        if (rc)
                return rc;
        for (i = 0; names[i]; i++) {
                if (!strcmp(n->scalar, names[i])) {
                        *out = i;
                        return 0;
                }
                rc = snprintf(list + off, sizeof(list) - off, "%s%s",
                              i ? ", " : "", names[i]);
                if (rc > 0 && (size_t)rc < sizeof(list) - off)
                        off += (size_t)rc;
        }
        return bad(v, n, "%s is '%.40s'; valid values: %s", path, n->scalar,
                   list);
}

static int load_kvpairs(struct vctx *v, const struct veil_node *map,
                        const char *path, struct veil_kvpair **arr,
                        size_t *count) {
        char sub[256];
        size_t i;
        int rc;

        if ((rc = want_kind(v, map, path, VEIL_NODE_MAP)))
                return rc;
        *arr = calloc(map->n ? map->n : 1, sizeof(**arr));
        if (!*arr)
                return oom(v);
        for (i = 0; i < map->n; i++) {
                const struct veil_node *k = map->keys[i], *val = map->items[i];
                struct veil_kvpair *kv = &(*arr)[(*count)++];
                kv->line = k->line;
                kv->col = k->col;
                join_path(sub, sizeof(sub), path, k->scalar);
                if ((rc = want_kind(v, val, sub, VEIL_NODE_SCALAR)) ||
                    (rc = dup_to(v, k->scalar, &kv->key)) ||
                    (rc = dup_to(v, val->scalar, &kv->value)))
                        return rc;
        }
        return 0;
}

/* ---- kafka ---- */

static const struct keydef kafka_keys[] = {
        {"bootstrap", 1, NULL, 0},
        {"group", 1, NULL, 0},
        {"guarantee", 0, NULL, 0},
        {"settings", 0, NULL, 0},
        {NULL, 0, NULL, 0}};

static const char *const guarantees[] = {"at-least-once", "exactly-once",
                                         NULL};

/* librdkafka properties the host sets from its own keys: two sources for
 * one value would leave the reader guessing which one wins. */
static const struct {
        const char *property, *instead;
} reserved_settings[] = {{"bootstrap.servers", "kafka.bootstrap"},
                         {"metadata.broker.list", "kafka.bootstrap"},
                         {"group.id", "kafka.group"}};

/* The type librdkafka's own table of properties gives `key` ("integer",
 * "float", "string"…: the "*Type: …*" note that ends its row in
 * rd_kafka_conf_properties_show), into out; "" when the table does not
 * say (another format: no stricter check is made then). */
static void property_type(const char *table, const char *key, char *out,
                          size_t size) {
        size_t kl = strlen(key);
        out[0] = '\0';
        for (const char *l = table; l && *l;) {
                const char *eol = strchr(l, '\n');
                size_t len = eol ? (size_t)(eol - l) : strlen(l);
                if (len > kl && !strncmp(l, key, kl) &&
                    (l[kl] == ' ' || l[kl] == '|')) {
                        const char *t = memmem(l, len, "*Type: ", 7);
                        if (t) {
                                t += 7;
                                const char *e = memchr(t, '*',
                                                       (size_t)(l + len - t));
                                if (e && (size_t)(e - t) < size) {
                                        memcpy(out, t, (size_t)(e - t));
                                        out[e - t] = '\0';
                                }
                        }
                        return;
                }
                l = eol ? eol + 1 : NULL;
        }
}

/* librdkafka reads a number leniently, with strtol(…, 0) and strtod:
 * "20000x" as 20000, " 5" as 5, "0x10" as 16, and "020000" as octal 8192.
 * A value of a property its table types as integer must be a whole
 * decimal number without a leading zero, one typed as float a decimal
 * number; a value that does not start as a number at all passed only as
 * one of the property's names (acks: all), read whole. NULL when `value`
 * is fine, else what it should be. */
static const char *number_needed(const char *type, const char *value) {
        char *end;
        if (!strcmp(type, "integer")) {
                (void)strtol(value, &end, 0);
                const char *d = value + (value[0] == '-');
                if (end == value ||
                    (*d && strspn(d, "0123456789") == strlen(d) &&
                     (d[0] != '0' || !d[1])))
                        return NULL;
                return "a whole number in decimal digits, without a "
                       "leading zero";
        }
        if (!strcmp(type, "float")) {
                errno = 0;
                double x = strtod(value, &end);
                if (end == value ||
                    (!isspace((unsigned char)*value) && !*end && !errno &&
                     isfinite(x) && !strpbrk(value, "xX")))
                        return NULL;
                return "a decimal number";
        }
        return NULL;
}

static int load_kafka(struct vctx *v, const struct veil_node *n) {
        struct veil_config *c = v->cfg;
        const struct veil_node *x;
        size_t i, j;
        int rc, g;

        if ((rc = want_kind(v, n, "kafka", VEIL_NODE_MAP)) ||
            (rc = check_keys(v, n, "kafka", kafka_keys)) ||
            (rc = get_string(v, veil_config_get(n, "bootstrap"),
                             "kafka.bootstrap", &c->kafka.bootstrap)) ||
            (rc = get_string(v, veil_config_get(n, "group"), "kafka.group",
                             &c->kafka.group)))
                return rc;
        if ((x = veil_config_get(n, "guarantee"))) {
                if ((rc = get_enum(v, x, "kafka.guarantee", guarantees, &g)))
                        return rc;
                c->kafka.guarantee = (enum veil_guarantee)g;
        }
        x = veil_config_get(n, "settings");
        if (!x || is_null(x))
                return 0;
        if ((rc = load_kvpairs(v, x, "kafka.settings", &c->kafka.settings,
                               &c->kafka.n_settings)))
                return rc;
        for (i = 0; i < c->kafka.n_settings; i++)
                for (j = 0; j < sizeof(reserved_settings) /
                                        sizeof(reserved_settings[0]);
                     j++)
                        if (!strcmp(c->kafka.settings[i].key,
                                    reserved_settings[j].property))
                                return bad(v, x->keys[i],
                                           "kafka.settings.%s is set by veil; "
                                           "give it as %s instead",
                                           reserved_settings[j].property,
                                           reserved_settings[j].instead);
        /* librdkafka's own check of names and values, here rather than when
         * the clients are made: a misspelt TLS or SASL property is then a
         * configuration error with its place (exit 2, also in `veil lint`),
         * not a failed start. */
        rd_kafka_conf_t *probe = rd_kafka_conf_new();
        char *table = NULL;
        size_t table_len = 0;
        FILE *tf = open_memstream(&table, &table_len);
        if (tf) {
                rd_kafka_conf_properties_show(tf);
                if (fclose(tf)) {
                        free(table);
                        table = NULL;
                }
        }
        for (i = 0; i < c->kafka.n_settings && !rc; i++) {
                char e[512], type[64];
                const char *key = c->kafka.settings[i].key,
                           *value = c->kafka.settings[i].value, *want;
                /* Setting it loads and runs the libraries: not here (lint
                 * starts nothing); they are checked when the clients are
                 * made. */
                if (!strcmp(key, "plugin.library.paths"))
                        continue;
                if (rd_kafka_conf_set(probe, key, value, e, sizeof(e)) !=
                    RD_KAFKA_CONF_OK) {
                        rc = bad(v, x->keys[i], "kafka.settings.%s: %s", key,
                                 e);
                        break;
                }
                property_type(table ? table : "", key, type, sizeof(type));
                if ((want = number_needed(type, value))) {
                        char got[64] = "?";
                        size_t got_size = sizeof(got);
                        rd_kafka_conf_get(probe, key, got, &got_size);
                        rc = bad(v, x->keys[i],
                                 "kafka.settings.%s: '%s' is not %s: "
                                 "librdkafka, which types the property %s, "
                                 "would read it as %s; write the number "
                                 "meant in digits",
                                 key, value, want, type, got);
                } else if ((want = veil_kafka_guard_weakens(probe, key)))
                        rc = bad(v, x->keys[i],
                                 "kafka.settings.%s: '%s' would break what "
                                 "the delivery guarantee rests on (%s); "
                                 "leave it out: veil sets it",
                                 key, value, want);
        }
        free(table);
        rd_kafka_conf_destroy(probe);
        return rc;
}

/* ---- bindings: input, side inputs, outputs ---- */

enum role { ROLE_INPUT, ROLE_SIDE, ROLE_OUTPUT };

static const struct keydef input_keys[] = {
        {"topic", 1, NULL, 0},          {"schema", 1, NULL, 0},
        {"framing", 0, NULL, 0},        {"writer_schemas", 0, NULL, 0},
        {"writer_schema", 0, NULL, 0},  {"partitions", 0, NULL, 0},
        {"batch", 0, NULL, 0},          {NULL, 0, NULL, 0}};

static const struct keydef side_input_keys[] = {
        {"topic", 1, NULL, 0},          {"schema", 1, NULL, 0},
        {"framing", 0, NULL, 0},        {"writer_schemas", 0, NULL, 0},
        {"writer_schema", 0, NULL, 0},  {"partitions", 0, NULL, 0},
        {NULL, 0, NULL, 0}};

static const struct keydef output_keys[] = {
        {"topic", 1, NULL, 0},      {"schema", 0, NULL, 0},
        {"framing", 0, NULL, 0},    {"schema_id", 0, NULL, 0},
        {"partitions", 0, NULL, 0}, {NULL, 0, NULL, 0}};

static const struct keydef batch_keys[] = {{"max_events", 0, NULL, 0},
                                           {"max_wait_ms", 0, NULL, 0},
                                           {NULL, 0, NULL, 0}};

static const char *const framings[] = {"raw", "confluent", NULL};

#define SCHEMA_ID_MAX 2147483647

static int load_writer_schemas(struct vctx *v, const struct veil_node *n,
                               const char *path, struct veil_binding *b) {
        const struct veil_node *x;
        char sub[256];
        size_t i;
        int rc;

        if ((x = veil_config_get(n, "writer_schemas")) && !is_null(x)) {
                if (b->framing != VEIL_FRAMING_CONFLUENT)
                        return bad(v, x,
                                   "%s.writer_schemas needs framing: "
                                   "confluent; with raw framing give one "
                                   "writer_schema: PATH",
                                   path);
                join_path(sub, sizeof(sub), path, "writer_schemas");
                if ((rc = want_kind(v, x, sub, VEIL_NODE_MAP)))
                        return rc;
                b->writer_schemas = calloc(x->n ? x->n : 1,
                                           sizeof(*b->writer_schemas));
                if (!b->writer_schemas)
                        return oom(v);
                for (i = 0; i < x->n; i++) {
                        struct veil_kvpair *kv =
                                &b->writer_schemas[b->n_writer_schemas++];
                        const struct veil_node *k = x->keys[i];
                        char id[24], vpath[300];
                        int64_t sid;
                        kv->line = k->line;
                        kv->col = k->col;
                        if (veil_params_parse_int(k->scalar, &sid) || sid < 0 ||
                            sid > SCHEMA_ID_MAX)
                                return bad(v, k,
                                           "%s key '%.40s' is not a schema "
                                           "id; valid ids: 0..%d",
                                           sub, k->scalar, SCHEMA_ID_MAX);
                        /* Canonical decimal, so the codec compares ids as
                         * numbers would ("01" is 1). */
                        snprintf(id, sizeof(id), "%lld", (long long)sid);
                        join_path(vpath, sizeof(vpath), sub, k->scalar);
                        if ((rc = dup_to(v, id, &kv->key)) ||
                            (rc = get_string(v, x->items[i], vpath,
                                             &kv->value)))
                                return rc;
                }
        }
        if ((x = veil_config_get(n, "writer_schema")) && !is_null(x)) {
                if (b->framing != VEIL_FRAMING_RAW)
                        return bad(v, x,
                                   "%s.writer_schema is for raw framing; with "
                                   "framing: confluent list writer_schemas: "
                                   "{ID: PATH}",
                                   path);
                b->writer_schemas = calloc(1, sizeof(*b->writer_schemas));
                if (!b->writer_schemas)
                        return oom(v);
                b->n_writer_schemas = 1;
                b->writer_schemas[0].line = x->line;
                b->writer_schemas[0].col = x->col;
                join_path(sub, sizeof(sub), path, "writer_schema");
                if ((rc = dup_to(v, "", &b->writer_schemas[0].key)) ||
                    (rc = get_string(v, x, sub, &b->writer_schemas[0].value)))
                        return rc;
        }
        return 0;
}

static int load_binding(struct vctx *v, const struct veil_node *n,
                        const char *path, enum role role,
                        struct veil_binding *b) {
        const struct keydef *keys = role == ROLE_INPUT  ? input_keys
                                    : role == ROLE_SIDE ? side_input_keys
                                                        : output_keys;
        int dead_letter = role == ROLE_OUTPUT && b->name &&
                          !strcmp(b->name, "dead_letter");
        const struct veil_node *x;
        char sub[256];
        int64_t i64;
        int rc, e;

        b->framing = VEIL_FRAMING_RAW;
        b->schema_id = -1;
        b->partitions = 1;
        if ((rc = want_kind(v, n, path, VEIL_NODE_MAP)) ||
            (rc = check_keys(v, n, path, keys)))
                return rc;
        if ((x = veil_config_get(n, "framing"))) {
                if ((rc = get_enum(v, x, join_path(sub, sizeof(sub), path,
                                                   "framing"),
                                   framings, &e)))
                        return rc;
                b->framing = (enum veil_framing)e;
        }
        if ((rc = get_string(v, veil_config_get(n, "topic"),
                             join_path(sub, sizeof(sub), path, "topic"),
                             &b->topic)))
                return rc;
        x = veil_config_get(n, "schema");
        if (x && dead_letter)
                return bad(v, x,
                           "%s takes no schema: it carries the original "
                           "bytes; remove 'schema'",
                           path);
        if (!x && role == ROLE_OUTPUT && !dead_letter)
                return bad(v, n,
                           "missing key 'schema' in %s; an output needs the "
                           "writer schema (.avsc) its records are encoded "
                           "with",
                           path);
        if (x && (rc = get_string(v, x,
                                  join_path(sub, sizeof(sub), path, "schema"),
                                  &b->schema)))
                return rc;
        if (x) {
                b->schema_line = x->line;
                b->schema_col = x->col;
        }
        if ((x = veil_config_get(n, "partitions"))) {
                if ((rc = get_int(v, x,
                                  join_path(sub, sizeof(sub), path,
                                            "partitions"),
                                  1, 10000, &i64)))
                        return rc;
                b->partitions = (int)i64;
        }
        if ((x = veil_config_get(n, "schema_id"))) {
                if ((rc = get_int(v, x,
                                  join_path(sub, sizeof(sub), path,
                                            "schema_id"),
                                  0, SCHEMA_ID_MAX, &i64)))
                        return rc;
                b->schema_id = (int32_t)i64;
        } else if (role == ROLE_OUTPUT && !dead_letter &&
                   b->framing == VEIL_FRAMING_CONFLUENT) {
                return bad(v, n,
                           "missing key 'schema_id' in %s; framing: "
                           "confluent writes a schema id (0..%d) before each "
                           "record",
                           path, SCHEMA_ID_MAX);
        }
        return load_writer_schemas(v, n, path, b);
}

static int load_input(struct vctx *v, const struct veil_node *n) {
        struct veil_config *c = v->cfg;
        const struct veil_node *batch, *x;
        int64_t i64;
        int rc;

        if ((rc = load_binding(v, n, "input", ROLE_INPUT, &c->input)))
                return rc;
        c->input.line = n->line;
        c->input.col = n->col;
        batch = veil_config_get(n, "batch");
        if (!batch || is_null(batch))
                return 0;
        if ((rc = want_kind(v, batch, "input.batch", VEIL_NODE_MAP)) ||
            (rc = check_keys(v, batch, "input.batch", batch_keys)))
                return rc;
        if ((x = veil_config_get(batch, "max_events"))) {
                if ((rc = get_int(v, x, "input.batch.max_events", 1, 100000,
                                  &i64)))
                        return rc;
                c->max_events = (int)i64;
        }
        if ((x = veil_config_get(batch, "max_wait_ms"))) {
                if ((rc = get_int(v, x, "input.batch.max_wait_ms", 0, 60000,
                                  &i64)))
                        return rc;
                c->max_wait_ms = (int)i64;
        }
        return 0;
}

/* side_inputs and outputs: name -> binding. */
static int load_named(struct vctx *v, const struct veil_node *n,
                      const char *section, enum role role,
                      struct veil_binding **arr, size_t *count) {
        char path[256];
        size_t i;
        int rc;

        if (is_null(n))
                return 0;
        if ((rc = want_kind(v, n, section, VEIL_NODE_MAP)))
                return rc;
        *arr = calloc(n->n ? n->n : 1, sizeof(**arr));
        if (!*arr)
                return oom(v);
        for (i = 0; i < n->n; i++) {
                const struct veil_node *k = n->keys[i];
                struct veil_binding *b = &(*arr)[(*count)++];
                if (!k->scalar[0])
                        return bad(v, k, "a name in %s is empty; name each "
                                         "binding, e.g. consent: {topic: T}",
                                   section);
                if ((rc = dup_to(v, k->scalar, &b->name)) ||
                    (rc = load_binding(v, n->items[i],
                                       join_path(path, sizeof(path), section,
                                                 k->scalar),
                                       role, b)))
                        return rc;
                b->line = k->line;
                b->col = k->col;
        }
        return 0;
}

static int load_side_inputs(struct vctx *v, const struct veil_node *n) {
        return load_named(v, n, "side_inputs", ROLE_SIDE,
                          &v->cfg->side_inputs, &v->cfg->n_side_inputs);
}

static int load_outputs(struct vctx *v, const struct veil_node *n) {
        /* Checked first: a misspelt dead_letter would otherwise be reported
         * as an output without a schema. */
        if ((n->kind == VEIL_NODE_MAP || is_null(n)) &&
            !veil_config_get(n, "dead_letter"))
                return bad(v, n,
                           "missing output 'dead_letter' in outputs; bind it "
                           "for records that cannot be processed: "
                           "dead_letter: {topic: NAME}");
        return load_named(v, n, "outputs", ROLE_OUTPUT, &v->cfg->outputs,
                          &v->cfg->n_outputs);
}

/* ---- plugins ---- */

static const struct keydef stage_keys[] = {
        {"use", 1, NULL, 0}, {"with", 0, NULL, 0}, {NULL, 0, NULL, 0}};

static int load_plugins(struct vctx *v, const struct veil_node *n) {
        struct veil_config *c = v->cfg;
        char path[64], sub[80];
        size_t i;
        int rc;

        if (is_null(n) || (n->kind == VEIL_NODE_SEQ && n->n == 0))
                return bad(v, n, "plugins lists no stage; list at least one: "
                                 "- use: NAME");
        if ((rc = want_kind(v, n, "plugins", VEIL_NODE_SEQ)))
                return rc;
        c->stages = calloc(n->n, sizeof(*c->stages));
        if (!c->stages)
                return oom(v);
        for (i = 0; i < n->n; i++) {
                const struct veil_node *item = n->items[i], *with;
                struct veil_stage_cfg *s = &c->stages[c->n_stages++];
                snprintf(path, sizeof(path), "plugins[%zu]", i);
                s->line = item->line;
                s->col = item->col;
                if ((rc = want_kind(v, item, path, VEIL_NODE_MAP)) ||
                    (rc = check_keys(v, item, path, stage_keys)) ||
                    (rc = get_string(v, veil_config_get(item, "use"),
                                     join_path(sub, sizeof(sub), path, "use"),
                                     &s->use)))
                        return rc;
                with = veil_config_get(item, "with");
                if (!with || is_null(with))
                        continue;
                if ((rc = want_kind(v, with,
                                    join_path(sub, sizeof(sub), path, "with"),
                                    VEIL_NODE_MAP)))
                        return rc;
                s->with = with;
        }
        return 0;
}

static int load_plugin_path(struct vctx *v, const struct veil_node *n) {
        struct veil_config *c = v->cfg;
        char path[64];
        size_t i;
        int rc;

        if (is_null(n))
                return 0;
        if ((rc = want_kind(v, n, "plugin_path", VEIL_NODE_SEQ)))
                return rc;
        c->plugin_path = calloc(n->n ? n->n : 1, sizeof(*c->plugin_path));
        if (!c->plugin_path)
                return oom(v);
        for (i = 0; i < n->n; i++) {
                snprintf(path, sizeof(path), "plugin_path[%zu]", i);
                if ((rc = check_string(v, n->items[i], path)))
                        return rc;
                c->plugin_path[i] = veil_config_path(c, n->items[i]->scalar);
                if (!c->plugin_path[i])
                        return oom(v);
                c->n_plugin_path++;
        }
        return 0;
}

/* A topic the pipeline writes and reads back as input: every output
 * record on the input topic comes back as an event (events multiply), and
 * a dead letter on the input or a side input is read again, refused again
 * and written again, without end. (An output beside a side input of the
 * same topic is how instances share model updates: allowed.) */
static int check_loops(struct vctx *v) {
        const struct veil_config *c = v->cfg;
        for (size_t i = 0; i < c->n_outputs; i++) {
                const struct veil_binding *o = &c->outputs[i];
                const struct veil_binding *r = NULL;
                if (!o->topic)
                        continue;
                if (c->input.topic && !strcmp(o->topic, c->input.topic))
                        r = &c->input;
                for (size_t j = 0; !r && !strcmp(o->name, "dead_letter") &&
                                   j < c->n_side_inputs;
                     j++)
                        if (c->side_inputs[j].topic &&
                            !strcmp(o->topic, c->side_inputs[j].topic))
                                r = &c->side_inputs[j];
                if (r)
                        return errat(v->errstr, v->errstr_size, c->file,
                                     o->line, o->col,
                                     "output '%s' writes to topic '%s', "
                                     "which the pipeline also reads (%s%s, "
                                     "line %d): its records would come back "
                                     "as input without end; give it a topic "
                                     "of its own",
                                     o->name, o->topic,
                                     r->name ? "side input " : "the input",
                                     r->name ? r->name : "", r->line);
        }
        return 0;
}

/* ---- the top level ---- */

static const struct keydef top_keys[] = {
        {"kafka", 1, load_kafka, 0},
        {"input", 1, load_input, 0},
        {"side_inputs", 0, load_side_inputs, 0},
        {"outputs", 1, load_outputs, 0},
        {"plugins", 1, load_plugins, 0},
        {"plugin_path", 0, load_plugin_path, 0},
        {"http", 0, NULL, offsetof(struct veil_config, http)},
        {"log", 0, NULL, offsetof(struct veil_config, log)},
        {"keys", 0, NULL, offsetof(struct veil_config, keys)},
        {"demo", 0, NULL, offsetof(struct veil_config, demo)},
        {"state", 0, NULL, offsetof(struct veil_config, state)},
        {NULL, 0, NULL, 0}};

static int validate(struct vctx *v) {
        const struct veil_node *root = v->cfg->root;
        char list[512];
        size_t i;
        int rc;

        v->cfg->line = root->line;
        v->cfg->col = root->col;
        if (root->kind != VEIL_NODE_MAP)
                return bad(v, root,
                           "a pipeline must be a mapping, not %s; its keys "
                           "are: %s",
                           is_null(root) ? "an empty document"
                           : root->kind == VEIL_NODE_SEQ ? "a sequence"
                                                         : "a scalar",
                           key_list(top_keys, 0, list, sizeof(list)));
        if ((rc = check_keys(v, root, "the top level", top_keys)))
                return rc;
        for (i = 0; i < root->n; i++) {
                const struct keydef *row =
                        find_keydef(top_keys, root->keys[i]->scalar);
                const struct veil_node *val = root->items[i];
                if (row->load) {
                        if ((rc = row->load(v, val)))
                                return rc;
                } else if (!is_null(val)) {
                        if ((rc = want_kind(v, val, row->name, VEIL_NODE_MAP)))
                                return rc;
                        *(const struct veil_node **)((char *)v->cfg +
                                                     row->node_off) = val;
                }
        }
        return check_loops(v);
}

/* ------------------------------------------------------------------ */
/* The API                                                            */
/* ------------------------------------------------------------------ */

static const char *env_getenv(const char *name, void *ud) {
        (void)ud;
        return getenv(name);
}

static char *dir_of(const char *file) {
        const char *slash = strrchr(file, '/');
        if (!slash)
                return strdup(".");
        if (slash == file)
                return strdup("/");
        return strndup(file, (size_t)(slash - file));
}

int veil_config_parse_env(struct veil_config **cfgp, const char *name,
                          const char *text, size_t len, veil_config_env_fn env,
                          void *env_ud, char *errstr, size_t errstr_size) {
        struct veil_config *cfg;
        struct vctx v;
        int rc;

        *cfgp = NULL;
        cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return nomem(errstr, errstr_size, name);
        cfg->max_events = 256;
        cfg->max_wait_ms = 50;
        cfg->input.framing = VEIL_FRAMING_RAW;
        cfg->input.schema_id = -1;
        cfg->input.partitions = 1;
        cfg->file = strdup(name);
        cfg->dir = dir_of(name);
        if (!cfg->file || !cfg->dir) {
                veil_config_destroy(cfg);
                return nomem(errstr, errstr_size, name);
        }
        rc = parse_yaml(&cfg->root, name, text, len, env ? env : env_getenv,
                        env_ud, errstr, errstr_size);
        if (!rc) {
                v.cfg = cfg;
                v.errstr = errstr;
                v.errstr_size = errstr_size;
                rc = validate(&v);
        }
        if (rc) {
                veil_config_destroy(cfg);
                return rc;
        }
        *cfgp = cfg;
        return 0;
}

int veil_config_parse(struct veil_config **cfgp, const char *name,
                      const char *text, size_t len, char *errstr,
                      size_t errstr_size) {
        return veil_config_parse_env(cfgp, name, text, len, NULL, NULL, errstr,
                                     errstr_size);
}

int veil_config_load(struct veil_config **cfgp, const char *path,
                     char *errstr, size_t errstr_size) {
        FILE *f;
        char *buf = NULL, *nb;
        size_t len = 0, cap = 0;
        int rc;

        *cfgp = NULL;
        f = fopen(path, "rb");
        if (!f) {
                int e = errno;
                snprintf(errstr, errstr_size,
                         "%s: cannot open: %s; give the path of a readable "
                         "pipeline YAML file",
                         path, strerror(e));
                return e == ENOENT ? -VEIL_ENOENT : -VEIL_EIO;
        }
        /* Read one byte past the limit so the parser can say "too big". */
        while (len <= MAX_DOC_BYTES) {
                size_t got;
                if (len == cap) {
                        cap = cap ? cap * 2 : 65536;
                        if (cap > MAX_DOC_BYTES + 1)
                                cap = MAX_DOC_BYTES + 1;
                        nb = realloc(buf, cap);
                        if (!nb) {
                                free(buf);
                                fclose(f);
                                return nomem(errstr, errstr_size, path);
                        }
                        buf = nb;
                }
                got = fread(buf + len, 1, cap - len, f);
                len += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                int e = errno;
                free(buf);
                fclose(f);
                snprintf(errstr, errstr_size,
                         "%s: cannot read: %s; give the path of a readable "
                         "pipeline YAML file",
                         path, strerror(e));
                return -VEIL_EIO;
        }
        fclose(f);
        rc = veil_config_parse(cfgp, path, buf ? buf : "", len, errstr,
                               errstr_size);
        free(buf);
        return rc;
}

static void binding_free(struct veil_binding *b) {
        size_t i;
        free(b->name);
        free(b->topic);
        free(b->schema);
        for (i = 0; i < b->n_writer_schemas; i++) {
                free(b->writer_schemas[i].key);
                free(b->writer_schemas[i].value);
        }
        free(b->writer_schemas);
}

void veil_config_destroy(struct veil_config *cfg) {
        size_t i;
        if (!cfg)
                return;
        free(cfg->kafka.bootstrap);
        free(cfg->kafka.group);
        for (i = 0; i < cfg->kafka.n_settings; i++) {
                free(cfg->kafka.settings[i].key);
                free(cfg->kafka.settings[i].value);
        }
        free(cfg->kafka.settings);
        binding_free(&cfg->input);
        for (i = 0; i < cfg->n_outputs; i++)
                binding_free(&cfg->outputs[i]);
        free(cfg->outputs);
        for (i = 0; i < cfg->n_side_inputs; i++)
                binding_free(&cfg->side_inputs[i]);
        free(cfg->side_inputs);
        for (i = 0; i < cfg->n_stages; i++)
                free(cfg->stages[i].use);
        free(cfg->stages);
        for (i = 0; i < cfg->n_plugin_path; i++)
                free(cfg->plugin_path[i]);
        free(cfg->plugin_path);
        veil_config_free_node(cfg->root);
        free(cfg->file);
        free(cfg->dir);
        free(cfg);
}

const struct veil_binding *veil_config_output(const struct veil_config *cfg,
                                              const char *name) {
        size_t i;
        for (i = 0; i < cfg->n_outputs; i++)
                if (cfg->outputs[i].name && !strcmp(cfg->outputs[i].name, name))
                        return &cfg->outputs[i];
        return NULL;
}

char *veil_config_path(const struct veil_config *cfg, const char *p) {
        size_t dl, pl;
        char *out;

        if (!p)
                return NULL;
        if (p[0] == '/' || !cfg || !cfg->dir || !strcmp(cfg->dir, "."))
                return strdup(p);
        dl = strlen(cfg->dir);
        pl = strlen(p);
        out = malloc(dl + pl + 2);
        if (!out)
                return NULL;
        memcpy(out, cfg->dir, dl);
        if (dl && cfg->dir[dl - 1] != '/')
                out[dl++] = '/';
        memcpy(out + dl, p, pl + 1);
        return out;
}

/*
 * codec.c — Avro to and from veil's types.
 *
 * Avro-C parses the schemas and holds the generic values behind veil_rec_t,
 * but the bytes are read by a decoder of our own, for three reasons found in
 * libavro 1.11.1:
 *  - avro_resolved_writer_new() refuses a reader field that the writer lacks
 *    ("Reader field X doesn't appear in writer"): defaults are not
 *    implemented, so adding a field would break every old producer;
 *  - avro_value_read() mallocs every string it reads (twice), and the event
 *    hot path must not allocate;
 *  - it trusts lengths from the input (a 2^40-byte string length is a 2^40
 *    byte malloc), and the input is whatever is on the topic.
 * So each writer schema is compiled once, at codec creation, against the
 * reader schema into a plan (a tree of pnodes, following the Avro spec's
 * resolution rules, with the reader's defaults pre-encoded), and one
 * bounds-checked walker runs a plan either into a veil_event (strings copied
 * straight into the batch arena) or into an Avro-C generic value (for
 * veil_rec_t). Avro-C does not keep "default" or custom attributes such as
 * "pii", so the .avsc text is also parsed here by a small JSON reader.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_int.h"

#define MAX_DEPTH 64             /* nesting of values and of schema JSON */
#define MAX_ZERO_SIZE_ITEMS (1 << 20) /* per record: items of no bytes */
/* An event's context.attrs entries. Each takes 16 bytes of batch arena
 * for 2 bytes of input: without a bound one 1 MB record claiming a
 * million empty entries took 17 MB, a batch of them more than a pod has,
 * and the batch was read again after every restart. */
#define MAX_ATTRS 1024
#define MAX_SCHEMA_BYTES (1 << 20)
/* A record read into an Avro-C generic value (side inputs, model updates)
 * may take at most GEN_FACTOR times its size plus GEN_SLACK, by the costs
 * of gen_cost(). Without a bound one 1 MB record of a million empty
 * strings took 80 MB, held until the next record, and ten times that with
 * a topic's larger max.message.bytes: a way for anyone who can write to a
 * side topic to take the host's memory. Real records take far less (a
 * model update's floats 8 per 4 bytes, its item ids ~11 per byte). The
 * slack takes the 2^20 items that take no bytes a record may hold (nulls:
 * 8 MiB). */
#define GEN_FACTOR 16
#define GEN_SLACK ((size_t)16 << 20)
#define CONFLUENT_HEADER 5

static int fail(char *errstr, size_t errstr_size, int code, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
static int fail(char *errstr, size_t errstr_size, int code, const char *fmt,
                ...) {
        if (errstr && errstr_size) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(errstr, errstr_size, fmt, ap);
                va_end(ap);
        }
        return code;
}

static avro_schema_t deref(avro_schema_t s) {
        while (s && is_avro_link(s))
                s = avro_schema_link_target(s);
        return s;
}

/* ------------------------------------------------------------------ */
/* JSON: just enough to read what Avro-C drops ("default", "pii")     */
/* ------------------------------------------------------------------ */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct json {
        enum jtype t;
        int b;
        int is_int;
        int64_t i;
        double num;
        char *s; /* J_STR, NUL terminated (may hold NULs: slen counts) */
        size_t slen;
        size_t n; /* J_ARR items, J_OBJ members */
        struct json **v;
        char **k;
};

struct jparse {
        const char *p, *start, *end;
        const char *name;
        char *errstr;
        size_t errstr_size;
};

static void json_free(struct json *j) {
        if (!j)
                return;
        for (size_t i = 0; i < j->n; i++) {
                json_free(j->v[i]);
                if (j->k)
                        free(j->k[i]);
        }
        free(j->v);
        free(j->k);
        free(j->s);
        free(j);
}

static const struct json *json_get(const struct json *o, const char *key) {
        if (!o || o->t != J_OBJ)
                return NULL;
        for (size_t i = 0; i < o->n; i++)
                if (!strcmp(o->k[i], key))
                        return o->v[i];
        return NULL;
}

static const char *json_str(const struct json *o, const char *key) {
        const struct json *j = json_get(o, key);
        return j && j->t == J_STR ? j->s : NULL;
}

static struct json *jp_err(struct jparse *jp, const char *what) {
        fail(jp->errstr, jp->errstr_size, 0,
             "%s: invalid JSON at byte %zu: %s", jp->name,
             (size_t)(jp->p - jp->start), what);
        return NULL;
}

static void jp_ws(struct jparse *jp) {
        while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' ||
                                   *jp->p == '\n' || *jp->p == '\r'))
                jp->p++;
}

static int hex4(const char *p, unsigned *out) {
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
                char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (unsigned)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (unsigned)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (unsigned)(c - 'A' + 10);
                else
                        return -1;
        }
        *out = v;
        return 0;
}

static size_t utf8_put(char *o, unsigned cp) {
        if (cp < 0x80) {
                o[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char)(0xc0 | (cp >> 6));
                o[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char)(0xe0 | (cp >> 12));
                o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                o[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (char)(0xf0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

/* At the opening quote; unescapes into a malloc'd string. Escapes never
 * grow (\uXXXX is 6 bytes for at most 3, a surrogate pair 12 for 4), so
 * the raw span bounds the output. */
static char *jp_string(struct jparse *jp, size_t *len) {
        const char *q = ++jp->p;
        while (q < jp->end && *q != '"')
                q += (*q == '\\' && q + 1 < jp->end) ? 2 : 1;
        if (q >= jp->end) {
                jp_err(jp, "unterminated string");
                return NULL;
        }
        char *out = malloc((size_t)(q - jp->p) + 1), *o = out;
        if (!out) {
                jp_err(jp, "out of memory");
                return NULL;
        }
        while (jp->p < q) {
                unsigned char c = (unsigned char)*jp->p;
                if (c < 0x20) {
                        free(out);
                        jp_err(jp, "control character in string");
                        return NULL;
                }
                if (c != '\\') {
                        *o++ = (char)c;
                        jp->p++;
                        continue;
                }
                char e = jp->p[1];
                jp->p += 2;
                switch (e) {
                case '"': *o++ = '"'; break;
                case '\\': *o++ = '\\'; break;
                case '/': *o++ = '/'; break;
                case 'b': *o++ = '\b'; break;
                case 'f': *o++ = '\f'; break;
                case 'n': *o++ = '\n'; break;
                case 'r': *o++ = '\r'; break;
                case 't': *o++ = '\t'; break;
                case 'u': {
                        unsigned cp, lo;
                        if (q - jp->p < 4 || hex4(jp->p, &cp))
                                goto bad;
                        jp->p += 4;
                        if (cp >= 0xd800 && cp < 0xdc00) {
                                if (q - jp->p < 6 || jp->p[0] != '\\' ||
                                    jp->p[1] != 'u' || hex4(jp->p + 2, &lo) ||
                                    lo < 0xdc00 || lo > 0xdfff)
                                        goto bad;
                                jp->p += 6;
                                cp = 0x10000 + ((cp - 0xd800) << 10) +
                                     (lo - 0xdc00);
                        } else if (cp >= 0xdc00 && cp < 0xe000) {
                                goto bad;
                        }
                        o += utf8_put(o, cp);
                        break;
                }
                default:
                        goto bad;
                }
        }
        jp->p = q + 1;
        *o = '\0';
        *len = (size_t)(o - out);
        return out;
bad:
        free(out);
        jp_err(jp, "invalid escape in string");
        return NULL;
}

static struct json *jp_value(struct jparse *jp, int depth);

static int jp_push(struct json *j, struct json *v, char *k) {
        if (j->n == 0 || (j->n & (j->n - 1)) == 0) { /* at powers of two */
                size_t cap = j->n ? j->n * 2 : 1;
                struct json **nv = realloc(j->v, cap * sizeof(*nv));
                if (!nv)
                        return -1;
                j->v = nv;
                if (j->t == J_OBJ) {
                        char **nk = realloc(j->k, cap * sizeof(*nk));
                        if (!nk)
                                return -1;
                        j->k = nk;
                }
        }
        j->v[j->n] = v;
        if (j->t == J_OBJ)
                j->k[j->n] = k;
        j->n++;
        return 0;
}

static struct json *jp_container(struct jparse *jp, struct json *j,
                                 int depth) {
        char close = j->t == J_OBJ ? '}' : ']';
        jp->p++;
        jp_ws(jp);
        if (jp->p < jp->end && *jp->p == close) {
                jp->p++;
                return j;
        }
        for (;;) {
                char *k = NULL;
                size_t klen;
                jp_ws(jp);
                if (j->t == J_OBJ) {
                        if (jp->p >= jp->end || *jp->p != '"')
                                goto bad_key;
                        if (!(k = jp_string(jp, &klen)))
                                goto out;
                        jp_ws(jp);
                        if (jp->p >= jp->end || *jp->p != ':') {
                                free(k);
                                jp_err(jp, "expected ':' after a key");
                                goto out;
                        }
                        jp->p++;
                }
                struct json *v = jp_value(jp, depth + 1);
                if (!v) {
                        free(k);
                        goto out;
                }
                if (jp_push(j, v, k)) {
                        free(k);
                        json_free(v);
                        jp_err(jp, "out of memory");
                        goto out;
                }
                jp_ws(jp);
                if (jp->p < jp->end && *jp->p == ',') {
                        jp->p++;
                        continue;
                }
                if (jp->p < jp->end && *jp->p == close) {
                        jp->p++;
                        return j;
                }
                jp_err(jp, j->t == J_OBJ ? "expected ',' or '}'"
                                         : "expected ',' or ']'");
                goto out;
        }
bad_key:
        jp_err(jp, "expected a string key");
out:
        json_free(j);
        return NULL;
}

static struct json *jp_number(struct jparse *jp, struct json *j) {
        const char *s = jp->p, *p = s;
        if (p < jp->end && *p == '-')
                p++;
        if (p >= jp->end || *p < '0' || *p > '9')
                goto bad;
        if (*p == '0')
                p++;
        else
                while (p < jp->end && *p >= '0' && *p <= '9')
                        p++;
        j->is_int = 1;
        if (p < jp->end && *p == '.') {
                j->is_int = 0;
                if (++p >= jp->end || *p < '0' || *p > '9')
                        goto bad;
                while (p < jp->end && *p >= '0' && *p <= '9')
                        p++;
        }
        if (p < jp->end && (*p == 'e' || *p == 'E')) {
                j->is_int = 0;
                p++;
                if (p < jp->end && (*p == '+' || *p == '-'))
                        p++;
                if (p >= jp->end || *p < '0' || *p > '9')
                        goto bad;
                while (p < jp->end && *p >= '0' && *p <= '9')
                        p++;
        }
        char buf[64];
        size_t n = (size_t)(p - s);
        if (n >= sizeof(buf))
                goto bad;
        memcpy(buf, s, n);
        buf[n] = '\0';
        j->num = strtod(buf, NULL);
        if (j->is_int) {
                errno = 0;
                j->i = strtoll(buf, NULL, 10);
                if (errno == ERANGE)
                        j->is_int = 0;
        }
        jp->p = p;
        return j;
bad:
        json_free(j);
        return jp_err(jp, "invalid number");
}

static struct json *jp_value(struct jparse *jp, int depth) {
        jp_ws(jp);
        if (depth > MAX_DEPTH)
                return jp_err(jp, "nested too deeply");
        if (jp->p >= jp->end)
                return jp_err(jp, "unexpected end of input");
        struct json *j = calloc(1, sizeof(*j));
        if (!j)
                return jp_err(jp, "out of memory");
        static const struct {
                const char *lit;
                enum jtype t;
                int b;
        } lits[] = {{"null", J_NULL, 0}, {"true", J_BOOL, 1},
                    {"false", J_BOOL, 0}};
        switch (*jp->p) {
        case '{':
                j->t = J_OBJ;
                return jp_container(jp, j, depth);
        case '[':
                j->t = J_ARR;
                return jp_container(jp, j, depth);
        case '"':
                j->t = J_STR;
                if (!(j->s = jp_string(jp, &j->slen))) {
                        free(j);
                        return NULL;
                }
                return j;
        default:
                for (size_t i = 0; i < 3; i++) {
                        size_t n = strlen(lits[i].lit);
                        if ((size_t)(jp->end - jp->p) >= n &&
                            !memcmp(jp->p, lits[i].lit, n)) {
                                jp->p += n;
                                j->t = lits[i].t;
                                j->b = lits[i].b;
                                return j;
                        }
                }
                j->t = J_NUM;
                return jp_number(jp, j);
        }
}

/* ------------------------------------------------------------------ */
/* Schemas: Avro-C's parse plus the JSON it was parsed from            */
/* ------------------------------------------------------------------ */

struct named {
        char *fullname;
        const struct json *def;
};

struct schema {
        char *path;
        avro_schema_t avro;
        struct json *json;
        struct named *named;
        size_t n_named;
};

static void schema_free(struct schema *sc) {
        if (!sc)
                return;
        for (size_t i = 0; i < sc->n_named; i++)
                free(sc->named[i].fullname);
        free(sc->named);
        json_free(sc->json);
        if (sc->avro)
                avro_schema_decref(sc->avro);
        free(sc->path);
        free(sc);
}

static int is_primitive(const char *t) {
        static const char *const p[] = {"null", "boolean", "int", "long",
                                        "float", "double", "bytes", "string"};
        for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
                if (!strcmp(t, p[i]))
                        return 1;
        return 0;
}

/* "ns.name" into buf, Avro's rules: a dotted name is already full. */
static void qualify(char *buf, size_t size, const char *name, const char *ns) {
        if (strchr(name, '.') || !ns || !*ns)
                snprintf(buf, size, "%s", name);
        else
                snprintf(buf, size, "%s.%s", ns, name);
}

static int named_add(struct schema *sc, const char *full,
                     const struct json *def) {
        struct named *n =
                realloc(sc->named, (sc->n_named + 1) * sizeof(*n));
        if (!n)
                return -VEIL_ENOMEM;
        sc->named = n;
        if (!(n[sc->n_named].fullname = strdup(full)))
                return -VEIL_ENOMEM;
        n[sc->n_named++].def = def;
        return 0;
}

/* Indexes every named type definition by full name, so a record Avro-C
 * hands us can be matched with its JSON (defaults, pii marks). */
static int index_named(struct schema *sc, const struct json *j,
                       const char *ns, int depth) {
        if (!j || depth > MAX_DEPTH)
                return 0;
        if (j->t == J_ARR) {
                for (size_t i = 0; i < j->n; i++) {
                        int rc = index_named(sc, j->v[i], ns, depth + 1);
                        if (rc)
                                return rc;
                }
                return 0;
        }
        if (j->t != J_OBJ)
                return 0;
        const struct json *t = json_get(j, "type");
        if (!t)
                return 0;
        if (t->t != J_STR)
                return index_named(sc, t, ns, depth + 1);
        char full[512], inner[512];
        snprintf(inner, sizeof(inner), "%s", ns ? ns : "");
        const char *name = json_str(j, "name");
        int is_named = !strcmp(t->s, "record") || !strcmp(t->s, "error") ||
                       !strcmp(t->s, "enum") || !strcmp(t->s, "fixed");
        if (is_named && name) {
                const char *own = json_str(j, "namespace");
                qualify(full, sizeof(full), name, own ? own : ns);
                int rc = named_add(sc, full, j);
                if (rc)
                        return rc;
                char *dot = strrchr(full, '.');
                if (dot)
                        *dot = '\0';
                else
                        full[0] = '\0';
                snprintf(inner, sizeof(inner), "%s", full);
        }
        const struct json *f = json_get(j, "fields");
        if (f && f->t == J_ARR)
                for (size_t i = 0; i < f->n; i++) {
                        int rc = index_named(sc, json_get(f->v[i], "type"),
                                             inner, depth + 1);
                        if (rc)
                                return rc;
                }
        int rc = index_named(sc, json_get(j, "items"), inner, depth + 1);
        return rc ? rc : index_named(sc, json_get(j, "values"), inner,
                                     depth + 1);
}

static const struct json *named_lookup(const struct schema *sc,
                                       const char *full) {
        for (size_t i = 0; i < sc->n_named; i++)
                if (!strcmp(sc->named[i].fullname, full))
                        return sc->named[i].def;
        /* Fall back to the unqualified name: Avro-C and we may disagree on
         * a namespace, never on a name. */
        const char *dot = strrchr(full, '.');
        const char *bare = dot ? dot + 1 : full;
        for (size_t i = 0; i < sc->n_named; i++) {
                const char *d = strrchr(sc->named[i].fullname, '.');
                if (!strcmp(d ? d + 1 : sc->named[i].fullname, bare))
                        return sc->named[i].def;
        }
        return NULL;
}

/* The JSON definition of a named Avro-C schema. */
static const struct json *schema_json(const struct schema *sc,
                                      avro_schema_t s) {
        char full[512];
        qualify(full, sizeof(full), avro_schema_name(s),
                avro_schema_namespace(s));
        return named_lookup(sc, full);
}

/* The "default" of field `name` of record schema rec, or NULL. */
static const struct json *field_default(const struct schema *sc,
                                        avro_schema_t rec, const char *name) {
        const struct json *f = json_get(schema_json(sc, rec), "fields");
        if (!f || f->t != J_ARR)
                return NULL;
        for (size_t i = 0; i < f->n; i++) {
                const char *n = json_str(f->v[i], "name");
                if (n && !strcmp(n, name))
                        return json_get(f->v[i], "default");
        }
        return NULL;
}

static int schema_load(struct schema **out, const char *path, char *errstr,
                       size_t errstr_size) {
        FILE *f = fopen(path, "rb");
        if (!f)
                return fail(errstr, errstr_size, -VEIL_ENOENT,
                            "schema %s: cannot open: %s", path,
                            strerror(errno));
        char *text = malloc(MAX_SCHEMA_BYTES + 1);
        if (!text) {
                fclose(f);
                return fail(errstr, errstr_size, -VEIL_ENOMEM,
                            "schema %s: out of memory", path);
        }
        size_t n = fread(text, 1, MAX_SCHEMA_BYTES + 1, f);
        int rerr = ferror(f);
        fclose(f);
        if (rerr || n > MAX_SCHEMA_BYTES) {
                free(text);
                return fail(errstr, errstr_size, -VEIL_EINVAL,
                            "schema %s: %s", path,
                            rerr ? "read error"
                                 : "larger than 1 MiB, not a schema");
        }
        text[n] = '\0';
        struct schema *sc = calloc(1, sizeof(*sc));
        int rc = -VEIL_ENOMEM;
        if (!sc || !(sc->path = strdup(path)))
                goto nomem;
        struct jparse jp = {text, text, text + n, path, errstr, errstr_size};
        if (!(sc->json = jp_value(&jp, 0))) {
                rc = -VEIL_EINVAL;
                goto out;
        }
        jp_ws(&jp);
        if (jp.p != jp.end) {
                jp_err(&jp, "trailing characters after the schema");
                rc = -VEIL_EINVAL;
                goto out;
        }
        if (avro_schema_from_json_length(text, n, &sc->avro)) {
                sc->avro = NULL;
                rc = fail(errstr, errstr_size, -VEIL_EINVAL,
                          "schema %s: not a valid Avro schema: %s", path,
                          avro_strerror());
                goto out;
        }
        if ((rc = index_named(sc, sc->json, NULL, 0)))
                goto nomem;
        free(text);
        *out = sc;
        return 0;
nomem:
        rc = fail(errstr, errstr_size, -VEIL_ENOMEM,
                  "schema %s: out of memory", path);
out:
        free(text);
        schema_free(sc);
        return rc;
}

/* ------------------------------------------------------------------ */
/* Binary output and defaults                                          */
/* ------------------------------------------------------------------ */

int veil_buf_reserve(struct veil_buf *b, size_t cap) {
        if (cap <= b->cap)
                return 0;
        size_t n = b->cap ? b->cap : 256;
        while (n < cap)
                n *= 2;
        unsigned char *d = realloc(b->data, n);
        if (!d)
                return -VEIL_ENOMEM;
        b->data = d;
        b->cap = n;
        return 0;
}

void veil_buf_free(struct veil_buf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

static int put(struct veil_buf *b, const void *p, size_t n) {
        if (b->len + n > b->cap && veil_buf_reserve(b, b->len + n))
                return -VEIL_ENOMEM;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
}

static int put_double(struct veil_buf *b, double d) {
        uint64_t u;
        memcpy(&u, &d, 8);
        return veil_avro_put_le(b, u, 8);
}

static int put_float(struct veil_buf *b, float f) {
        uint32_t u;
        memcpy(&u, &f, 4);
        return veil_avro_put_le(b, u, 4);
}

static int put_str(struct veil_buf *b, const void *s, size_t n) {
        int rc = veil_avro_put_long(b, (int64_t)n);
        return rc ? rc : put(b, s, n);
}

/* Avro's JSON for bytes and fixed: one code point 0-255 per byte. */
static int put_latin1(struct veil_buf *b, const struct json *j, int64_t want) {
        const unsigned char *s = (const unsigned char *)j->s;
        size_t n = 0, i = 0;
        while (i < j->slen) { /* count first: the length comes first */
                i += s[i] < 0x80 ? 1 : 2;
                n++;
        }
        if (want >= 0 && (int64_t)n != want)
                return -VEIL_EINVAL;
        int rc = want >= 0 ? 0 : veil_avro_put_long(b, (int64_t)n);
        for (i = 0; !rc && i < j->slen;) {
                unsigned c = s[i];
                if (c >= 0x80) {
                        if ((c & 0xfe) != 0xc2 || i + 1 >= j->slen)
                                return -VEIL_EINVAL;
                        c = ((c & 0x1f) << 6) | (s[i + 1] & 0x3f);
                        i += 2;
                } else {
                        i++;
                }
                unsigned char byte = (unsigned char)c;
                rc = put(b, &byte, 1);
        }
        return rc;
}

/* Encodes the JSON default `j` as schema `s` in Avro binary. Fails
 * (-VEIL_EINVAL, `why` set) when the default does not fit the schema, which
 * is how defaults are validated when a schema is loaded. */
static int write_default(const struct schema *sc, const struct json *j,
                         avro_schema_t s, struct veil_buf *b,
                         const char **why, int depth) {
        s = deref(s);
        if (depth > MAX_DEPTH) {
                *why = "nested too deeply";
                return -VEIL_EINVAL;
        }
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                *why = "expected null";
                return j->t == J_NULL ? 0 : -VEIL_EINVAL;
        case AVRO_BOOLEAN: {
                unsigned char v = (unsigned char)j->b;
                *why = "expected true or false";
                return j->t == J_BOOL ? put(b, &v, 1) : -VEIL_EINVAL;
        }
        case AVRO_INT32:
                *why = "expected an integer in the int range";
                if (j->t != J_NUM || !j->is_int || j->i < INT32_MIN ||
                    j->i > INT32_MAX)
                        return -VEIL_EINVAL;
                return veil_avro_put_long(b, j->i);
        case AVRO_INT64:
                *why = "expected an integer";
                return j->t == J_NUM && j->is_int ? veil_avro_put_long(b, j->i)
                                                   : -VEIL_EINVAL;
        case AVRO_FLOAT:
                *why = "expected a number";
                return j->t == J_NUM ? put_float(b, (float)j->num)
                                     : -VEIL_EINVAL;
        case AVRO_DOUBLE:
                *why = "expected a number";
                return j->t == J_NUM ? put_double(b, j->num) : -VEIL_EINVAL;
        case AVRO_STRING:
                *why = "expected a string";
                return j->t == J_STR ? put_str(b, j->s, j->slen)
                                     : -VEIL_EINVAL;
        case AVRO_BYTES:
                *why = "expected a string of code points 0-255";
                return j->t == J_STR ? put_latin1(b, j, -1) : -VEIL_EINVAL;
        case AVRO_FIXED:
                *why = "expected a string of code points 0-255 of the "
                       "fixed size";
                return j->t == J_STR
                               ? put_latin1(b, j, avro_schema_fixed_size(s))
                               : -VEIL_EINVAL;
        case AVRO_ENUM: {
                *why = "expected one of the enum's symbols";
                int i = j->t == J_STR ? avro_schema_enum_get_by_name(s, j->s)
                                      : -1;
                return i >= 0 ? veil_avro_put_long(b, i) : -VEIL_EINVAL;
        }
        case AVRO_ARRAY:
        case AVRO_MAP: {
                int map = avro_typeof(s) == AVRO_MAP;
                *why = map ? "expected an object" : "expected an array";
                if (j->t != (map ? J_OBJ : J_ARR))
                        return -VEIL_EINVAL;
                avro_schema_t it = map ? avro_schema_map_values(s)
                                       : avro_schema_array_items(s);
                int rc = 0;
                if (j->n)
                        rc = veil_avro_put_long(b, (int64_t)j->n);
                for (size_t i = 0; !rc && i < j->n; i++) {
                        if (map)
                                rc = put_str(b, j->k[i], strlen(j->k[i]));
                        if (!rc)
                                rc = write_default(sc, j->v[i], it, b, why,
                                                   depth + 1);
                }
                return rc ? rc : veil_avro_put_long(b, 0);
        }
        case AVRO_RECORD: {
                *why = "expected an object";
                if (j->t != J_OBJ)
                        return -VEIL_EINVAL;
                size_t n = avro_schema_record_size(s);
                for (size_t i = 0; i < n; i++) {
                        const char *fn = avro_schema_record_field_name(s, (int)i);
                        const struct json *v = json_get(j, fn);
                        if (!v)
                                v = field_default(sc, s, fn);
                        if (!v) {
                                *why = "a record field has neither a value "
                                       "in the default nor a default";
                                return -VEIL_EINVAL;
                        }
                        int rc = write_default(
                                sc, v,
                                avro_schema_record_field_get_by_index(s, (int)i),
                                b, why, depth + 1);
                        if (rc)
                                return rc;
                }
                return 0;
        }
        case AVRO_UNION: {
                /* A union's default is a value of its first branch. */
                if (avro_schema_union_size(s) == 0) {
                        *why = "empty union";
                        return -VEIL_EINVAL;
                }
                int rc = veil_avro_put_long(b, 0);
                return rc ? rc : write_default(sc, j,
                                               avro_schema_union_branch(s, 0),
                                               b, why, depth + 1);
        }
        default:
                *why = "unsupported type";
                return -VEIL_EINVAL;
        }
}

/* The default of field fname of record rec, encoded into a malloc'd buffer. */
static int encode_field_default(const struct schema *sc, avro_schema_t rec,
                                const char *fname, const struct json *d,
                                unsigned char **bin, size_t *len, char *errstr,
                                size_t errstr_size) {
        struct veil_buf b = {0};
        const char *why = "";
        int fi = avro_schema_record_field_get_index(rec, fname);
        int rc = write_default(sc, d,
                               avro_schema_record_field_get_by_index(rec, fi),
                               &b, &why, 0);
        if (rc) {
                veil_buf_free(&b);
                if (rc == -VEIL_ENOMEM)
                        return fail(errstr, errstr_size, rc,
                                    "schema %s: out of memory", sc->path);
                return fail(errstr, errstr_size, rc,
                            "schema %s: default of field %s.%s does not fit "
                            "its type: %s",
                            sc->path, avro_schema_name(rec), fname, why);
        }
        *bin = b.data;
        *len = b.len;
        return 0;
}

/* ------------------------------------------------------------------ */
/* The event: which schema path fills which struct veil_event member   */
/* ------------------------------------------------------------------ */

enum slot_kind { K_STR, K_LONG, K_DOUBLE, K_BOOL, K_MAP };
enum { SLOT_GPC = 7, SLOT_LAT = 11, SLOT_LON = 12, SLOT_ATTRS = 17 };

static const struct slot {
        const char *path;
        enum slot_kind kind;
        size_t off;
        int required;
} slots[] = {
        {"event_id", K_STR, offsetof(struct veil_event, event_id), 1},
        {"user_id", K_STR, offsetof(struct veil_event, user_id), 1},
        {"ts", K_LONG, offsetof(struct veil_event, ts_ms), 1},
        {"type", K_STR, offsetof(struct veil_event, type), 1},
        {"item_id", K_STR, offsetof(struct veil_event, item_id), 1},
        {"value", K_DOUBLE, offsetof(struct veil_event, value), 0},
        {"tc_string", K_STR, offsetof(struct veil_event, tc_string), 0},
        {"gpc", K_BOOL, offsetof(struct veil_event, gpc), 0},
        {"context.device", K_STR, offsetof(struct veil_event, ctx.device), 0},
        {"context.ip", K_STR, offsetof(struct veil_event, ctx.ip), 0},
        {"context.user_agent", K_STR,
         offsetof(struct veil_event, ctx.user_agent), 0},
        {"context.lat", K_DOUBLE, offsetof(struct veil_event, ctx.lat), 0},
        {"context.lon", K_DOUBLE, offsetof(struct veil_event, ctx.lon), 0},
        {"context.geohash", K_STR, offsetof(struct veil_event, ctx.geohash),
         0},
        {"context.country", K_STR, offsetof(struct veil_event, ctx.country),
         0},
        {"context.session_id", K_STR,
         offsetof(struct veil_event, ctx.session_id), 0},
        {"context.timezone", K_STR, offsetof(struct veil_event, ctx.timezone),
         0},
        {"context.attrs", K_MAP, offsetof(struct veil_event, ctx.attrs), 0},
};
#define N_SLOTS (sizeof(slots) / sizeof(slots[0]))

static int slot_of(const char *path) {
        if (!path)
                return -1;
        for (size_t i = 0; i < N_SLOTS; i++)
                if (!strcmp(slots[i].path, path))
                        return (int)i;
        return -1;
}

/* 1 when some slot lies at or below `path`: the only subtrees worth
 * tracking a path through. */
static int slot_prefix(const char *path) {
        size_t n = strlen(path);
        for (size_t i = 0; i < N_SLOTS; i++)
                if (!strncmp(slots[i].path, path, n) &&
                    (slots[i].path[n] == '\0' || slots[i].path[n] == '.'))
                        return 1;
        return 0;
}

/* child path of a record field, or NULL when no slot lies below it */
static const char *child_path(char *buf, size_t size, const char *parent,
                              const char *name) {
        if (!parent)
                return NULL;
        if (*parent)
                snprintf(buf, size, "%s.%s", parent, name);
        else
                snprintf(buf, size, "%s", name);
        return slot_prefix(buf) ? buf : NULL;
}

static int kind_fits(enum slot_kind k, avro_schema_t s) {
        switch (avro_typeof(s)) {
        case AVRO_STRING:
                return k == K_STR;
        case AVRO_INT64:
                return k == K_LONG;
        case AVRO_DOUBLE:
        case AVRO_FLOAT:
                return k == K_DOUBLE;
        case AVRO_BOOLEAN:
                return k == K_BOOL;
        case AVRO_MAP:
                return k == K_MAP &&
                       avro_typeof(deref(avro_schema_map_values(s))) ==
                               AVRO_STRING;
        default:
                return 0;
        }
}

/* The schema of the field at a dotted path through plain records; NULL
 * when there is none. *in_union is set when a field on the way is a
 * union: the decoder would fill the slots under it from the branch a
 * record takes, and the encoder write the union's default. */
static avro_schema_t field_at(avro_schema_t s, const char *path,
                              int *in_union) {
        char seg[128];
        *in_union = 0;
        while (s && *path) {
                const char *dot = strchr(path, '.');
                size_t n = dot ? (size_t)(dot - path) : strlen(path);
                s = deref(s);
                if (avro_typeof(s) == AVRO_UNION)
                        *in_union = 1;
                if (n >= sizeof(seg) || avro_typeof(s) != AVRO_RECORD)
                        return NULL;
                memcpy(seg, path, n);
                seg[n] = '\0';
                /* not avro_schema_record_field_get(): it crashes on a name
                 * the record lacks */
                int i = avro_schema_record_field_get_index(s, seg);
                if (i < 0)
                        return NULL;
                s = avro_schema_record_field_get_by_index(s, i);
                path = dot ? dot + 1 : path + n;
        }
        return deref(s);
}

/* The branches of a union that hold null and a value of kind k (-1 when
 * there is none, or when another branch holds anything else: the decoder
 * writes the branch a record takes into the event's typed member); a
 * non-union is its own value branch. */
static int slot_branches(avro_schema_t s, enum slot_kind k, int *nb, int *vb) {
        *nb = *vb = -1;
        if (avro_typeof(s) != AVRO_UNION)
                return kind_fits(k, s) ? 0 : -1;
        size_t n = avro_schema_union_size(s);
        for (size_t i = 0; i < n; i++) {
                avro_schema_t b = deref(avro_schema_union_branch(s, i));
                if (avro_typeof(b) == AVRO_NULL) {
                        if (*nb < 0)
                                *nb = (int)i;
                } else if (!kind_fits(k, b))
                        return -1;
                else if (*vb < 0)
                        *vb = (int)i;
        }
        return *vb >= 0 ? 0 : -1;
}

static const char *kind_name(enum slot_kind k) {
        static const char *const n[] = {"string", "long", "double",
                                        "boolean", "map of string"};
        return n[k];
}

/* Whether the codec's schema can stand for struct veil_event. */
static int check_event_schema(const struct schema *sc, char *why,
                              size_t why_size) {
        if (avro_typeof(sc->avro) != AVRO_RECORD)
                return fail(why, why_size, -VEIL_EINVAL,
                            "schema %s is not a record", sc->path);
        for (size_t i = 0; i < N_SLOTS; i++) {
                int nb, vb, in_union;
                avro_schema_t f = field_at(sc->avro, slots[i].path, &in_union);
                if (in_union) {
                        const char *dot = strchr(slots[i].path, '.');
                        return fail(why, why_size, -VEIL_EINVAL,
                                    "schema %s: field %.*s is a union, an "
                                    "interaction needs a record there (make "
                                    "it the record, with \"default\": {}, "
                                    "and its fields optional)",
                                    sc->path,
                                    dot ? (int)(dot - slots[i].path) : 64,
                                    slots[i].path);
                }
                if (!f) {
                        if (slots[i].required)
                                return fail(why, why_size, -VEIL_EINVAL,
                                            "schema %s has no field %s, "
                                            "which an interaction needs",
                                            sc->path, slots[i].path);
                        continue;
                }
                if (slot_branches(f, slots[i].kind, &nb, &vb))
                        return fail(why, why_size, -VEIL_EINVAL,
                                    "schema %s: field %s is %s, an "
                                    "interaction needs %s (or a union of "
                                    "null and %s)",
                                    sc->path, slots[i].path,
                                    avro_schema_type_name(f),
                                    kind_name(slots[i].kind),
                                    kind_name(slots[i].kind));
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* Plans: a writer schema resolved against the reader schema          */
/* ------------------------------------------------------------------ */

struct pnode {
        struct pnode *all; /* every node of a codec, for destroy */
        avro_type_t wt;    /* writer type */
        avro_type_t rt;    /* type stored in the reader; unused when skip */
        int skip;          /* the reader does not want this data */
        int rbranch;       /* reader union branch to select first, or -1 */
        int slot;          /* struct veil_event member, or -1 */
        int min1;          /* encodes in one byte at least */
        size_t n;          /* record fields, union branches, enum symbols */
        struct pnode **kid; /* per writer field or branch; [0] items */
        int *map;          /* record: reader field per writer field (-1
                              skip); enum: reader symbol per writer symbol
                              (-1 unknown to the reader) */
        const char **name; /* record: writer field names, for messages */
        int64_t fixed_size;
        char *err;         /* writer union branch the reader cannot take */
        avro_schema_t ws, rs;
        /* record: reader fields the writer lacks, filled from defaults */
        size_t n_def;
        int *def_field;
        unsigned char **def_bin;
        size_t *def_len;
        size_t n_evdef; /* the same defaults, flattened onto event slots */
        int *evdef_slot;
        const struct json **evdef;
};

struct plan {
        int32_t id;
        struct schema *ws; /* owned, unless it is the reader */
        struct pnode *root;
};

/* A default fill_rec() sets by value instead of reading its encoding back:
 * avro_value_read() costs a reader and, for a string, an allocation, on
 * every record. */
struct scalar_def {
        avro_type_t type; /* AVRO_NULL..; AVRO_UNION: null branch `l`;
                             AVRO_ARRAY, AVRO_MAP: empty; -1: read the
                             encoding */
        int64_t l;
        double d;
        char *s; /* NUL-terminated */
};

struct recdefs { /* fill_defaults() cache, per record type */
        struct recdefs *next; /* a list: entries must not move while
                                 fill_rec() recurses */
        avro_schema_t rec;
        size_t n;
        int *field;
        unsigned char **bin;
        size_t *len;
        struct scalar_def *val;
        size_t n_sub; /* record fields without a default: recurse */
        int *sub;
        size_t n_uni; /* union fields without a default (stale_rec) */
        int *uni;
};

struct efield { /* how encode_event writes one field */
        int slot; /* -1: the pre-encoded default */
        enum slot_kind kind;
        int is_float;
        int nb, vb; /* union branches of null and of the value; -1 */
        struct efield *sub;
        size_t n_sub;
        unsigned char *def;
        size_t def_len;
};

struct veil_codec {
        enum veil_framing framing;
        int32_t schema_id;
        struct schema *rs; /* reader (input) or writer (output) schema */
        struct plan *plans;
        size_t n_plans;
        struct pnode *nodes;
        avro_value_iface_t *iface;
        avro_value_t in, out;
        struct veil_rec in_rec, out_rec;
        struct veil_rec_pool in_pool, out_pool;
        avro_reader_t dreader; /* reads pre-encoded defaults */
        char *scratch; /* NUL-terminates strings for Avro-C */
        size_t scratch_cap;
        int event_ok;
        char event_err[256];
        struct efield *enc;
        size_t n_enc;
        char **pii_paths;
        const char **pii_marks;
        size_t n_pii;
        size_t pii_steps; /* pii_walk's budget (PII_WALK_MAX) */
        struct recdefs *recdefs;
        /* Output records in slots (recflat.c) when the schema allows:
         * decided at the first veil_codec_rec_begin. */
        int flat_tried, flat_off;
        struct veil_flat_type *flat_root, *flat_types;
};

struct cctx {
        struct veil_codec *c;
        const struct schema *wsc, *rsc;
        struct memo {
                avro_schema_t ws, rs;
                struct pnode *n;
        } *memo;
        size_t n_memo;
        char *errstr;
        size_t errstr_size;
        char where[256]; /* field path, for messages */
};

static void pnode_free(struct pnode *n) {
        for (size_t i = 0; i < n->n_def; i++)
                free(n->def_bin[i]);
        free(n->def_field);
        free(n->def_bin);
        free(n->def_len);
        free(n->evdef_slot);
        free(n->evdef);
        free(n->kid);
        free(n->map);
        free(n->name);
        free(n->err);
        free(n);
}

static struct pnode *pnode_new(struct cctx *x, avro_schema_t ws) {
        struct pnode *n = calloc(1, sizeof(*n));
        if (!n) {
                fail(x->errstr, x->errstr_size, -VEIL_ENOMEM,
                     "out of memory compiling schema %s", x->wsc->path);
                return NULL;
        }
        n->all = x->c->nodes;
        x->c->nodes = n;
        n->ws = ws;
        n->wt = avro_typeof(ws);
        n->rbranch = -1;
        n->slot = -1;
        n->min1 = n->wt != AVRO_NULL;
        return n;
}

static int memo_add(struct cctx *x, avro_schema_t ws, avro_schema_t rs,
                    struct pnode *n) {
        struct memo *m = realloc(x->memo, (x->n_memo + 1) * sizeof(*m));
        if (!m)
                return -VEIL_ENOMEM;
        x->memo = m;
        m[x->n_memo++] = (struct memo){ws, rs, n};
        return 0;
}

static int cfail(struct cctx *x, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static int cfail(struct cctx *x, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return fail(x->errstr, x->errstr_size, -VEIL_EINVAL,
                    "writer schema %s cannot be read as reader schema %s: "
                    "%s%s%s",
                    x->wsc->path, x->rsc->path,
                    x->where[0] ? "field " : "", x->where,
                    msg);
}

static int promotes(avro_type_t w, avro_type_t r) {
        if (w == r)
                return 1;
        switch (w) {
        case AVRO_INT32:
                return r == AVRO_INT64 || r == AVRO_FLOAT || r == AVRO_DOUBLE;
        case AVRO_INT64:
                return r == AVRO_FLOAT || r == AVRO_DOUBLE;
        case AVRO_FLOAT:
                return r == AVRO_DOUBLE;
        case AVRO_STRING:
                return r == AVRO_BYTES;
        case AVRO_BYTES:
                return r == AVRO_STRING;
        default:
                return 0;
        }
}

static int is_named(avro_type_t t) {
        return t == AVRO_RECORD || t == AVRO_ENUM || t == AVRO_FIXED;
}

static int same_name(avro_schema_t a, avro_schema_t b) {
        return !strcmp(avro_schema_name(a), avro_schema_name(b));
}

/* The reader union branch a non-union writer type resolves to: an exact
 * match first, then a promotion, as the spec's "first that matches". */
static int reader_branch(avro_schema_t ws, avro_schema_t ru) {
        avro_type_t wt = avro_typeof(ws);
        size_t n = avro_schema_union_size(ru);
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n; i++) {
                        avro_schema_t b = deref(avro_schema_union_branch(ru, i));
                        avro_type_t bt = avro_typeof(b);
                        if (is_named(wt) && bt == wt && same_name(ws, b))
                                return (int)i;
                        if (!is_named(wt) &&
                            (pass ? promotes(wt, bt) : wt == bt))
                                return (int)i;
                }
        return -1;
}

static struct pnode *compile(struct cctx *x, avro_schema_t ws,
                             avro_schema_t rs, const char *rpath, int depth);

static int add_evdefs(struct cctx *x, struct pnode *n, avro_schema_t fs,
                      const struct json *d, const char *path, int depth) {
        if (!path || depth > 8)
                return 0;
        int slot = slot_of(path);
        fs = deref(fs);
        if (slot >= 0) {
                size_t k = n->n_evdef;
                int *s = realloc(n->evdef_slot, (k + 1) * sizeof(*s));
                if (s)
                        n->evdef_slot = s;
                const struct json **j =
                        realloc(n->evdef, (k + 1) * sizeof(*j));
                if (j)
                        n->evdef = j;
                if (!s || !j)
                        return -VEIL_ENOMEM;
                s[k] = slot;
                j[k] = d;
                n->n_evdef++;
                return 0;
        }
        if (avro_typeof(fs) == AVRO_UNION)
                fs = deref(avro_schema_union_branch(fs, 0));
        if (avro_typeof(fs) != AVRO_RECORD || d->t != J_OBJ)
                return 0;
        size_t nf = avro_schema_record_size(fs);
        for (size_t i = 0; i < nf; i++) {
                const char *fn = avro_schema_record_field_name(fs, (int)i);
                const struct json *v = json_get(d, fn);
                char buf[256];
                if (!v)
                        v = field_default(x->rsc, fs, fn);
                if (!v)
                        continue; /* write_default already refused it */
                int rc = add_evdefs(
                        x, n, avro_schema_record_field_get_by_index(fs, (int)i),
                        v, child_path(buf, sizeof(buf), path, fn), depth + 1);
                if (rc)
                        return rc;
        }
        return 0;
}

static int compile_record(struct cctx *x, struct pnode *n, avro_schema_t rs,
                          const char *rpath, int depth) {
        avro_schema_t ws = n->ws;
        size_t nw = avro_schema_record_size(ws);
        size_t nr = rs ? avro_schema_record_size(rs) : 0;
        n->n = nw;
        n->kid = calloc(nw ? nw : 1, sizeof(*n->kid));
        n->map = calloc(nw ? nw : 1, sizeof(*n->map));
        n->name = calloc(nw ? nw : 1, sizeof(*n->name));
        if (!n->kid || !n->map || !n->name)
                return -VEIL_ENOMEM;
        size_t wlen = strlen(x->where);
        int min1 = 0;
        for (size_t i = 0; i < nw; i++) {
                const char *fn = avro_schema_record_field_name(ws, (int)i);
                int ri = rs ? avro_schema_record_field_get_index(rs, fn) : -1;
                char buf[256];
                n->name[i] = fn;
                n->map[i] = ri;
                snprintf(x->where + wlen, sizeof(x->where) - wlen, "%s%s",
                         wlen ? "." : "", fn);
                n->kid[i] = compile(
                        x, avro_schema_record_field_get_by_index(ws, (int)i),
                        ri >= 0 ? avro_schema_record_field_get_by_index(rs, ri)
                                : NULL,
                        ri >= 0 ? child_path(buf, sizeof(buf), rpath, fn)
                                : NULL,
                        depth + 1);
                if (!n->kid[i])
                        return -VEIL_EINVAL;
                x->where[wlen] = '\0';
                min1 |= n->kid[i]->min1;
        }
        n->min1 = min1;
        for (size_t ri = 0; ri < nr; ri++) {
                const char *fn = avro_schema_record_field_name(rs, (int)ri);
                if (avro_schema_record_field_get_index(ws, fn) >= 0)
                        continue;
                const struct json *d = field_default(x->rsc, rs, fn);
                if (!d)
                        return cfail(x, "%sreader field %s is not in the "
                                     "writer schema and has no default",
                                     wlen ? ": " : "", fn);
                size_t k = n->n_def;
                int *f = realloc(n->def_field, (k + 1) * sizeof(*f));
                if (f)
                        n->def_field = f;
                unsigned char **b = realloc(n->def_bin, (k + 1) * sizeof(*b));
                if (b)
                        n->def_bin = b;
                size_t *l = realloc(n->def_len, (k + 1) * sizeof(*l));
                if (l)
                        n->def_len = l;
                if (!f || !b || !l)
                        return -VEIL_ENOMEM;
                int rc = encode_field_default(x->rsc, rs, fn, d, &b[k], &l[k],
                                              x->errstr, x->errstr_size);
                if (rc)
                        return rc;
                f[k] = (int)ri;
                n->n_def++;
                char buf[256];
                rc = add_evdefs(
                        x, n, avro_schema_record_field_get_by_index(rs, (int)ri),
                        d, child_path(buf, sizeof(buf), rpath, fn), 0);
                if (rc)
                        return rc;
        }
        return 0;
}

static struct pnode *compile(struct cctx *x, avro_schema_t ws,
                             avro_schema_t rs, const char *rpath, int depth) {
        ws = deref(ws);
        rs = deref(rs);
        if (depth > MAX_DEPTH) {
                cfail(x, ": nested deeper than %d", MAX_DEPTH);
                return NULL;
        }
        /* Recursive types come back here through links: a named pair
         * already being compiled is reused, which ties the knot. Paths
         * that can hold a slot are never recursive, so they skip this. */
        int memo = !rpath && is_named(avro_typeof(ws));
        for (size_t i = 0; memo && i < x->n_memo; i++) {
                struct pnode *m = x->memo[i].n;
                if (x->memo[i].ws != ws || x->memo[i].rs != rs)
                        continue;
                if (!m->err)
                        return m;
                fail(x->errstr, x->errstr_size, -VEIL_EINVAL, "%s", m->err);
                return NULL;
        }
        struct pnode *n = pnode_new(x, ws);
        if (!n)
                return NULL;
        if (memo && memo_add(x, ws, rs, n))
                goto nomem;
        n->slot = slot_of(rpath);
        int rc = 0;
        if (n->wt == AVRO_UNION) {
                /* Each writer branch resolves on its own; one the reader
                 * cannot take is an error only when a record uses it. */
                n->n = avro_schema_union_size(ws);
                n->skip = !rs;
                if (!(n->kid = calloc(n->n ? n->n : 1, sizeof(*n->kid))))
                        goto nomem;
                for (size_t i = 0; i < n->n; i++) {
                        avro_schema_t b = avro_schema_union_branch(ws, i);
                        n->kid[i] = compile(x, b, rs, rpath, depth + 1);
                        if (n->kid[i])
                                continue;
                        if (!(n->kid[i] = pnode_new(x, deref(b))) ||
                            !(n->kid[i]->err = strdup(x->errstr)))
                                goto nomem;
                }
                return n;
        }
        if (rs && avro_typeof(rs) == AVRO_UNION) {
                n->rbranch = reader_branch(ws, rs);
                if (n->rbranch < 0) {
                        cfail(x, ": writer type %s is in no branch of the "
                              "reader's union",
                              avro_schema_type_name(ws));
                        goto bad;
                }
                rs = deref(avro_schema_union_branch(rs, n->rbranch));
        }
        n->rs = rs;
        n->skip = !rs;
        n->rt = rs ? avro_typeof(rs) : n->wt;
        if (rs && !promotes(n->wt, n->rt)) {
                cfail(x, ": writer type %s cannot be read as %s",
                      avro_schema_type_name(ws), avro_schema_type_name(rs));
                goto bad;
        }
        if (rs && is_named(n->wt) && !same_name(ws, rs)) {
                cfail(x, ": writer %s %s is not the reader's %s",
                      avro_schema_type_name(ws), avro_schema_name(ws),
                      avro_schema_name(rs));
                goto bad;
        }
        switch (n->wt) {
        case AVRO_RECORD:
                rc = compile_record(x, n, rs, rpath, depth);
                break;
        case AVRO_ENUM: {
                n->n = (size_t)avro_schema_enum_number_of_symbols(ws);
                if (!rs)
                        break;
                if (!(n->map = calloc(n->n ? n->n : 1, sizeof(*n->map))))
                        goto nomem;
                const char *dflt = json_str(schema_json(x->rsc, rs), "default");
                int di = dflt ? avro_schema_enum_get_by_name(rs, dflt) : -1;
                for (size_t i = 0; i < n->n; i++) {
                        int ri = avro_schema_enum_get_by_name(
                                rs, avro_schema_enum_get(ws, (int)i));
                        n->map[i] = ri >= 0 ? ri : di;
                }
                break;
        }
        case AVRO_FIXED:
                n->fixed_size = avro_schema_fixed_size(ws);
                n->min1 = n->fixed_size > 0;
                if (rs && avro_schema_fixed_size(rs) != n->fixed_size) {
                        cfail(x, ": fixed %s is %" PRId64 " bytes in the "
                              "writer, %" PRId64 " in the reader",
                              avro_schema_name(ws), n->fixed_size,
                              (int64_t)avro_schema_fixed_size(rs));
                        goto bad;
                }
                break;
        case AVRO_ARRAY:
        case AVRO_MAP: {
                int map = n->wt == AVRO_MAP;
                n->n = 1;
                if (!(n->kid = calloc(1, sizeof(*n->kid))))
                        goto nomem;
                avro_schema_t wi = map ? avro_schema_map_values(ws)
                                       : avro_schema_array_items(ws);
                avro_schema_t ri = !rs ? NULL
                                   : map ? avro_schema_map_values(rs)
                                         : avro_schema_array_items(rs);
                if (!(n->kid[0] = compile(x, wi, ri, NULL, depth + 1)))
                        goto bad;
                /* Only where the reader is an event: a record that merely
                 * names a field context.attrs is nobody's slot. */
                if (n->slot == SLOT_ATTRS && x->c->event_ok) {
                        avro_type_t t = n->kid[0]->wt;
                        if (t != AVRO_STRING && t != AVRO_BYTES) {
                                cfail(x, ": the writer's map values are %s, "
                                      "context.attrs takes string",
                                      avro_schema_type_name(wi));
                                goto bad;
                        }
                }
                break;
        }
        default:
                break;
        }
        if (rc == -VEIL_ENOMEM)
                goto nomem;
        if (!rc)
                return n;
        goto bad;
nomem:
        fail(x->errstr, x->errstr_size, -VEIL_ENOMEM,
             "out of memory compiling schema %s", x->wsc->path);
bad:
        /* A memoized node may already be referenced (recursion): mark it
         * so no path decodes through it. */
        if (memo && !n->err)
                n->err = strdup(x->errstr && x->errstr[0] ? x->errstr
                                                          : "cannot resolve");
        return NULL;
}

static int plan_add(struct veil_codec *c, int32_t id, struct schema *ws,
                    char *errstr, size_t errstr_size) {
        struct cctx x = {.c = c, .wsc = ws, .rsc = c->rs, .errstr = errstr,
                         .errstr_size = errstr_size};
        struct plan *p = realloc(c->plans, (c->n_plans + 1) * sizeof(*p));
        if (!p) {
                if (ws != c->rs)
                        schema_free(ws);
                return fail(errstr, errstr_size, -VEIL_ENOMEM,
                            "out of memory");
        }
        c->plans = p;
        p[c->n_plans] = (struct plan){id, ws, NULL};
        c->n_plans++; /* owned from here on, freed with the codec */
        p[c->n_plans - 1].root = compile(&x, ws->avro, c->rs->avro, "", 0);
        free(x.memo);
        return p[c->n_plans - 1].root ? 0 : -VEIL_EINVAL;
}

/* ------------------------------------------------------------------ */
/* Decoding: one bounds-checked walker for events and for values       */
/* ------------------------------------------------------------------ */

struct dec {
        const unsigned char *p, *end, *start;
        struct veil_codec *c;
        struct veil_event *ev; /* event mode */
        struct veil_arena *arena;
        size_t arena_base;     /* arena->used_total before this record */
        char *sbuf;            /* event strings, packed; see decode() */
        size_t sleft;
        unsigned geo;          /* bit 0: lat seen, bit 1: lon seen */
        size_t zero_items;     /* items that took no bytes, whole record */
        size_t gen, gen_max;   /* generic value: bytes taken, the bound */
        int depth;
        size_t nn;
        const char *names[MAX_DEPTH + 2];
        char *errstr;
        size_t errstr_size;
};

static int derr(struct dec *d, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int derr(struct dec *d, int code, const char *fmt, ...) {
        if (!d->errstr || !d->errstr_size)
                return code;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(d->errstr, d->errstr_size, fmt, ap);
        va_end(ap);
        /* Field names only: never a value, which may be an identifier. */
        for (size_t i = 0; i < d->nn && n >= 0 && (size_t)n < d->errstr_size;
             i++)
                n += snprintf(d->errstr + n, d->errstr_size - (size_t)n,
                              "%s%s%s", i ? "." : " (field ", d->names[i],
                              i + 1 == d->nn ? ")" : "");
        return code;
}

static size_t off(const struct dec *d, const unsigned char *p) {
        return (size_t)(p - d->start);
}

static int truncated(struct dec *d, const unsigned char *at,
                     const char *what) {
        return derr(d, -VEIL_EDECODE,
                    "truncated record at byte %zu: %s runs past the end "
                    "(%zu bytes)",
                    off(d, at), what, off(d, d->end));
}

static int avro_err(struct dec *d, int rc) {
        return derr(d, rc == ENOMEM ? -VEIL_ENOMEM : -VEIL_EDECODE,
                    "Avro-C refused a value at byte %zu: %s", off(d, d->p),
                    avro_strerror());
}

static int rd_long(struct dec *d, int64_t *out, const char *what) {
        const unsigned char *p = d->p;
        uint64_t v = 0;
        if (p < d->end && *p < 0x80) { /* most lengths and small numbers */
                v = *p;
                d->p = p + 1;
                *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
                return 0;
        }
        for (unsigned shift = 0;; shift += 7) {
                if (p >= d->end)
                        return truncated(d, d->p, what);
                unsigned char b = *p++;
                if (shift == 63 && b > 1)
                        return derr(d, -VEIL_EDECODE,
                                    "%s at byte %zu is a varint longer than "
                                    "64 bits",
                                    what, off(d, d->p));
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80))
                        break;
        }
        d->p = p;
        *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
        return 0;
}

static int rd_len(struct dec *d, int64_t *out, const char *what) {
        const unsigned char *at = d->p;
        int rc = rd_long(d, out, what);
        if (rc)
                return rc;
        if (*out < 0)
                return derr(d, -VEIL_EDECODE,
                            "%s at byte %zu has negative length %" PRId64,
                            what, off(d, at), *out);
        if ((uint64_t)*out > (uint64_t)(d->end - d->p))
                return derr(d, -VEIL_EDECODE,
                            "truncated record at byte %zu: %s of %" PRId64
                            " bytes, %zu left",
                            off(d, d->p), what, *out,
                            (size_t)(d->end - d->p));
        return 0;
}

static char *scratch(struct veil_codec *c, const void *s, size_t n) {
        if (n + 1 > c->scratch_cap) {
                size_t cap = c->scratch_cap ? c->scratch_cap : 256;
                while (cap < n + 1)
                        cap *= 2;
                char *p = realloc(c->scratch, cap);
                if (!p)
                        return NULL;
                c->scratch = p;
                c->scratch_cap = cap;
        }
        memcpy(c->scratch, s, n);
        c->scratch[n] = '\0';
        return c->scratch;
}

static void *slot_ptr(struct veil_event *ev, int slot) {
        return (char *)ev + slots[slot].off;
}

/* Avro strings are UTF-8. Avro-C's JSON output and most consumers refuse
 * anything else, so a record that lies is refused at the door, and a
 * record veil writes is checked on the way out. */
int veil_utf8_valid(const void *p, size_t n) {
        const unsigned char *s = p;
        size_t i = 0;
        while (i < n) {
                uint64_t w;
                if (n - i >= 8 && (memcpy(&w, s + i, 8),
                                   !(w & 0x8080808080808080ull))) {
                        i += 8; /* a run of ASCII */
                        continue;
                }
                unsigned c = s[i];
                size_t len;
                uint32_t cp, min;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if (c >= 0xc2 && c <= 0xdf) {
                        len = 2, cp = c & 0x1f, min = 0x80;
                } else if (c >= 0xe0 && c <= 0xef) {
                        len = 3, cp = c & 0x0f, min = 0x800;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        len = 4, cp = c & 0x07, min = 0x10000;
                } else {
                        return 0;
                }
                if (n - i < len)
                        return 0;
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return 0;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return 0;
                i += len;
        }
        return 1;
}

static int not_utf8(struct dec *d, const unsigned char *at) {
        return derr(d, -VEIL_EDECODE, "string at byte %zu is not valid UTF-8",
                    off(d, at));
}

/* The batch arena refused `need` bytes at byte `at`. A record that alone
 * needs more than a capped arena holds would never fit in any batch: its
 * own fault, a decode error (dead-letter topic). Anything else — a batch
 * grown to the cap, malloc failing — is out of memory, no fault of the
 * record: -VEIL_ENOMEM, on which the host fails the batch (it is read
 * again) instead of dead-lettering a valid record. */
static int arena_refused(struct dec *d, size_t need, size_t at) {
        const struct veil_arena *a = d->arena;
        size_t own = a->used_total - d->arena_base + ((need + 63) & ~(size_t)63);
        if (a->cap && own > a->cap)
                return derr(d, -VEIL_EDECODE,
                            "record needs %zu bytes of the batch arena at "
                            "byte %zu, more than its cap of %zu: it would "
                            "never fit",
                            own, at, a->cap);
        if (a->cap)
                return derr(d, -VEIL_ENOMEM,
                            "batch arena full at byte %zu (cap %zu bytes)",
                            at, a->cap);
        return derr(d, -VEIL_ENOMEM,
                    "out of memory: the batch arena cannot grow by %zu "
                    "bytes at byte %zu",
                    need, at);
}

static int has_nul(struct dec *d, const unsigned char *at) {
        return derr(d, -VEIL_EDECODE, "string at byte %zu holds a NUL byte",
                    off(d, at));
}

/* Event strings are C strings: one with a NUL inside would be cut short,
 * and two different ids could then pseudonymize alike. */
static int arena_str(struct dec *d, const unsigned char *s, size_t n,
                     const char **out) {
        if (memchr(s, 0, n))
                return has_nul(d, s);
        if (!veil_utf8_valid(s, n))
                return not_utf8(d, s);
        if (n < d->sleft) {
                memcpy(d->sbuf, s, n);
                d->sbuf[n] = '\0';
                *out = d->sbuf;
                d->sbuf += n + 1;
                d->sleft -= n + 1;
                return 0;
        }
        if (!(*out = veil_arena_strndup(d->arena, (const char *)s, n)))
                return arena_refused(d, n + 1, off(d, s));
        return 0;
}

static int ev_str(struct dec *d, int slot, const unsigned char *s, size_t n) {
        return arena_str(d, s, n, (const char **)slot_ptr(d->ev, slot));
}

static void ev_double(struct dec *d, int slot, double v) {
        *(double *)slot_ptr(d->ev, slot) = v;
        if (slot == SLOT_LAT)
                d->geo |= 1;
        else if (slot == SLOT_LON)
                d->geo |= 2;
}

static void ev_null(struct dec *d, int slot) {
        if (slot == SLOT_GPC)
                d->ev->gpc = -1;
        else if (slot == SLOT_LAT)
                d->geo &= ~1u;
        else if (slot == SLOT_LON)
                d->geo &= ~2u;
        else if (slots[slot].kind == K_STR)
                *(const char **)slot_ptr(d->ev, slot) = NULL;
}

/* A reader default applied to an event slot (fields an old writer lacks). */
static int ev_default(struct dec *d, int slot, const struct json *j) {
        switch (j->t) {
        case J_NULL:
                ev_null(d, slot);
                return 0;
        case J_STR:
                return slots[slot].kind == K_STR
                               ? ev_str(d, slot,
                                        (const unsigned char *)j->s, j->slen)
                               : 0;
        case J_NUM:
                if (slots[slot].kind == K_LONG)
                        *(int64_t *)slot_ptr(d->ev, slot) =
                                j->is_int ? j->i : (int64_t)j->num;
                else if (slots[slot].kind == K_DOUBLE)
                        ev_double(d, slot, j->num);
                return 0;
        case J_BOOL:
                if (slots[slot].kind == K_BOOL)
                        *(int *)slot_ptr(d->ev, slot) = j->b;
                return 0;
        case J_OBJ: {
                if (slots[slot].kind != K_MAP || !j->n)
                        return 0;
                struct veil_kv *kv =
                        veil_arena_alloc(d->arena, j->n * sizeof(*kv));
                if (!kv)
                        return arena_refused(d, j->n * sizeof(*kv),
                                             off(d, d->p));
                for (size_t i = 0; i < j->n; i++) {
                        kv[i].key = veil_arena_strndup(d->arena, j->k[i],
                                                       strlen(j->k[i]));
                        kv[i].value =
                                j->v[i]->t == J_STR
                                        ? veil_arena_strndup(d->arena,
                                                             j->v[i]->s,
                                                             j->v[i]->slen)
                                        : NULL;
                        if (!kv[i].key || !kv[i].value)
                                return arena_refused(
                                        d, strlen(j->k[i]) + 1,
                                        off(d, d->p));
                }
                d->ev->ctx.attrs = kv;
                d->ev->ctx.n_attrs = j->n;
                return 0;
        }
        default:
                return 0;
        }
}

static int dec_node(struct dec *d, const struct pnode *n, avro_value_t *dst);

/* Memory an Avro-C generic value takes for a value, at least what
 * libavro 1.11.1 takes for one in an array (an empty string 80 bytes, an
 * empty array 33, an int 4.7, a null 4.8, a record of one int 4.8, a
 * union of null and an int 8.7); a map entry's key costs a string more. */
static size_t gen_cost(avro_type_t t) {
        switch (t) {
        case AVRO_STRING:
        case AVRO_BYTES:
        case AVRO_FIXED:
                return 96;
        case AVRO_ARRAY:
        case AVRO_MAP:
                return 48;
        default:
                return 8;
        }
}

static int gen_charge(struct dec *d, size_t cost, const unsigned char *at) {
        d->gen += cost;
        if (d->gen <= d->gen_max)
                return 0;
        return derr(d, -VEIL_EDECODE,
                    "record of %zu bytes would take more than %zu bytes of "
                    "memory decoded (at byte %zu): a record read whole may "
                    "take %d times its size plus %zu MiB, and items of few "
                    "bytes, such as empty strings, take ~100 bytes each",
                    (size_t)(d->end - d->start), d->gen_max, off(d, at),
                    GEN_FACTOR, GEN_SLACK >> 20);
}

static int dec_num(struct dec *d, const struct pnode *n, avro_value_t *dst,
                   int64_t l, double x) {
        int rc = 0;
        int from_int = n->wt == AVRO_INT32 || n->wt == AVRO_INT64;
        if (dst) {
                switch (n->rt) {
                case AVRO_INT32:
                        rc = avro_value_set_int(dst, (int32_t)l);
                        break;
                case AVRO_INT64:
                        rc = avro_value_set_long(dst, l);
                        break;
                case AVRO_FLOAT:
                        rc = avro_value_set_float(dst, from_int ? (float)l
                                                                : (float)x);
                        break;
                default:
                        rc = avro_value_set_double(dst, from_int ? (double)l
                                                                 : x);
                        break;
                }
                return rc ? avro_err(d, rc) : 0;
        }
        if (!d->ev || n->slot < 0)
                return 0;
        if (slots[n->slot].kind == K_LONG) {
                *(int64_t *)slot_ptr(d->ev, n->slot) = l;
        } else if (slots[n->slot].kind == K_DOUBLE) {
                /* Valid Avro, but a NaN value or position would poison
                 * the model (and every instance it is shared with). */
                if (!from_int && !isfinite(x))
                        return derr(d, -VEIL_EDECODE,
                                    "%s before byte %zu is not a finite "
                                    "number",
                                    slots[n->slot].path, off(d, d->p));
                ev_double(d, n->slot, from_int ? (double)l : x);
        }
        return 0;
}

static int dec_blocks(struct dec *d, const struct pnode *n,
                      avro_value_t *dst) {
        int map = n->wt == AVRO_MAP, rc;
        const struct pnode *kid = n->kid[0];
        int attrs = d->ev && n->slot == SLOT_ATTRS;
        struct veil_kv *kv = NULL;
        size_t total = 0, cap = 0;
        if (dst && (rc = avro_value_reset(dst)))
                return avro_err(d, rc);
        for (;;) {
                const unsigned char *at = d->p;
                int64_t cnt, bsize;
                if ((rc = rd_long(d, &cnt, map ? "map block count"
                                               : "array block count")))
                        return rc;
                if (cnt == 0)
                        break;
                if (cnt < 0) {
                        /* A negative count is followed by the block's size
                         * in bytes, so readers can skip it. */
                        if (cnt == INT64_MIN)
                                return derr(d, -VEIL_EDECODE,
                                            "block count at byte %zu out of "
                                            "range",
                                            off(d, at));
                        cnt = -cnt;
                        if ((rc = rd_len(d, &bsize, "block")))
                                return rc;
                }
                /* Items of at least one byte are bounded by the input;
                 * items of none (null, empty records) by a budget for the
                 * whole record, which nesting cannot multiply. */
                size_t left = (size_t)(d->end - d->p);
                int zero = !map && !kid->min1;
                if (zero && (uint64_t)cnt >
                                    MAX_ZERO_SIZE_ITEMS - d->zero_items)
                        return derr(d, -VEIL_EDECODE,
                                    "block of %" PRId64 " items at byte %zu "
                                    "exceeds the record's budget of %d "
                                    "items that take no bytes",
                                    cnt, off(d, at), MAX_ZERO_SIZE_ITEMS);
                if (!zero && (uint64_t)cnt > left)
                        return derr(d, -VEIL_EDECODE,
                                    "block of %" PRId64 " items at byte %zu "
                                    "cannot fit in the %zu bytes left",
                                    cnt, off(d, at), left);
                if (zero)
                        d->zero_items += (size_t)cnt;
                if (attrs && (uint64_t)cnt > MAX_ATTRS - total)
                        return derr(d, -VEIL_EDECODE,
                                    "context.attrs at byte %zu has more "
                                    "than %d entries",
                                    off(d, at), MAX_ATTRS);
                if (attrs && total + (size_t)cnt > cap) {
                        /* Doubling: a map split into many one-entry blocks
                         * must not cost a copy per block. */
                        cap = total + (size_t)cnt > 2 * cap
                                      ? total + (size_t)cnt
                                      : 2 * cap;
                        struct veil_kv *nkv =
                                veil_arena_alloc(d->arena, cap * sizeof(*nkv));
                        if (!nkv)
                                return arena_refused(d, cap * sizeof(*nkv),
                                                     off(d, at));
                        if (total)
                                memcpy(nkv, kv, total * sizeof(*kv));
                        kv = nkv;
                }
                for (int64_t i = 0; i < cnt; i++, total++) {
                        avro_value_t child;
                        const unsigned char *k = NULL;
                        int64_t klen = 0;
                        if (map) {
                                if ((rc = rd_len(d, &klen, "map key")))
                                        return rc;
                                k = d->p;
                                d->p += klen;
                        }
                        if (attrs) {
                                /* compile() made sure the values are
                                 * string or bytes: both length-prefixed */
                                int64_t vlen;
                                if ((rc = rd_len(d, &vlen, "map value")))
                                        return rc;
                                const unsigned char *v = d->p;
                                d->p += vlen;
                                if ((rc = arena_str(d, k, (size_t)klen,
                                                    &kv[total].key)) ||
                                    (rc = arena_str(d, v, (size_t)vlen,
                                                    &kv[total].value)))
                                        return rc;
                                continue;
                        }
                        if (dst) {
                                if (map) {
                                        /* Avro-C takes keys as C strings:
                                         * "a\0x" and "a\0y" would be one. */
                                        if (memchr(k, 0, (size_t)klen))
                                                return has_nul(d, k);
                                        if (!veil_utf8_valid(k, (size_t)klen))
                                                return not_utf8(d, k);
                                        if ((rc = gen_charge(
                                                     d, gen_cost(AVRO_STRING),
                                                     k)))
                                                return rc;
                                        char *key = scratch(d->c, k,
                                                            (size_t)klen);
                                        if (!key)
                                                return derr(d, -VEIL_ENOMEM,
                                                            "out of memory");
                                        rc = avro_value_add(dst, key, &child,
                                                            NULL, NULL);
                                } else {
                                        rc = avro_value_append(dst, &child,
                                                               NULL);
                                }
                                if (rc)
                                        return avro_err(d, rc);
                        }
                        if ((rc = dec_node(d, kid, dst ? &child : NULL)))
                                return rc;
                }
        }
        if (attrs) {
                d->ev->ctx.attrs = kv;
                d->ev->ctx.n_attrs = total;
        }
        return 0;
}

static int dec_record(struct dec *d, const struct pnode *n,
                      avro_value_t *dst) {
        int rc;
        for (size_t i = 0; i < n->n; i++) {
                avro_value_t f, *fd = NULL;
                if (dst && n->map[i] >= 0) {
                        if ((rc = avro_value_get_by_index(dst, (size_t)n->map[i],
                                                          &f, NULL)))
                                return avro_err(d, rc);
                        fd = &f;
                }
                d->names[d->nn++] = n->name[i];
                if ((rc = dec_node(d, n->kid[i], fd)))
                        return rc;
                d->nn--;
        }
        if (dst) {
                for (size_t i = 0; i < n->n_def; i++) {
                        avro_value_t f;
                        if ((rc = avro_value_get_by_index(
                                     dst, (size_t)n->def_field[i], &f, NULL)))
                                return avro_err(d, rc);
                        avro_reader_memory_set_source(
                                d->c->dreader, (const char *)n->def_bin[i],
                                (int64_t)n->def_len[i]);
                        if ((rc = avro_value_read(d->c->dreader, &f)))
                                return avro_err(d, rc);
                }
        } else if (d->ev) {
                for (size_t i = 0; i < n->n_evdef; i++)
                        if ((rc = ev_default(d, n->evdef_slot[i],
                                             n->evdef[i])))
                                return rc;
        }
        return 0;
}

static int dec_node(struct dec *d, const struct pnode *n, avro_value_t *dst) {
        avro_value_t br;
        int rc;
        if (n->skip)
                dst = NULL;
        if (dst && n->rbranch >= 0) {
                if ((rc = avro_value_set_branch(dst, n->rbranch, &br)))
                        return avro_err(d, rc);
                dst = &br;
        }
        const unsigned char *at = d->p;
        if (dst && (rc = gen_charge(d, gen_cost(n->wt), at)))
                return rc;
        switch (n->wt) {
        case AVRO_NULL:
                if (dst)
                        return (rc = avro_value_set_null(dst)) ? avro_err(d, rc)
                                                               : 0;
                if (d->ev && n->slot >= 0)
                        ev_null(d, n->slot);
                return 0;
        case AVRO_BOOLEAN: {
                if (d->p >= d->end)
                        return truncated(d, at, "boolean");
                unsigned char b = *d->p;
                if (b > 1)
                        return derr(d, -VEIL_EDECODE,
                                    "boolean at byte %zu is 0x%02x, expected "
                                    "0x00 or 0x01",
                                    off(d, at), b);
                d->p++;
                if (dst)
                        return (rc = avro_value_set_boolean(dst, b))
                                       ? avro_err(d, rc)
                                       : 0;
                if (d->ev && n->slot >= 0)
                        *(int *)slot_ptr(d->ev, n->slot) = b;
                return 0;
        }
        case AVRO_INT32:
        case AVRO_INT64: {
                int64_t l;
                if ((rc = rd_long(d, &l, n->wt == AVRO_INT32 ? "int" : "long")))
                        return rc;
                if (n->wt == AVRO_INT32 && (l < INT32_MIN || l > INT32_MAX))
                        return derr(d, -VEIL_EDECODE,
                                    "int at byte %zu is out of the 32-bit "
                                    "range",
                                    off(d, at));
                return dec_num(d, n, dst, l, 0);
        }
        case AVRO_FLOAT:
        case AVRO_DOUBLE: {
                size_t sz = n->wt == AVRO_FLOAT ? 4 : 8;
                if ((size_t)(d->end - d->p) < sz)
                        return truncated(d, at, sz == 4 ? "float" : "double");
                uint64_t u = 0;
                for (size_t i = 0; i < sz; i++)
                        u |= (uint64_t)d->p[i] << (8 * i);
                d->p += sz;
                double x;
                if (sz == 4) {
                        uint32_t u32 = (uint32_t)u;
                        float f;
                        memcpy(&f, &u32, 4);
                        x = f;
                } else {
                        memcpy(&x, &u, 8);
                }
                return dec_num(d, n, dst, 0, x);
        }
        case AVRO_STRING:
        case AVRO_BYTES: {
                int64_t len;
                if ((rc = rd_len(d, &len, n->wt == AVRO_STRING ? "string"
                                                               : "bytes")))
                        return rc;
                const unsigned char *s = d->p;
                d->p += len;
                if (dst && n->rt == AVRO_STRING) {
                        /* As for events (arena_str): plugins read strings
                         * as C strings, cut short at a NUL. */
                        if (memchr(s, 0, (size_t)len))
                                return has_nul(d, s);
                        if (!veil_utf8_valid(s, (size_t)len))
                                return not_utf8(d, s);
                        /* Avro-C copies size bytes and takes the last for
                         * the terminator, so it needs one. */
                        char *t = scratch(d->c, s, (size_t)len);
                        if (!t)
                                return derr(d, -VEIL_ENOMEM, "out of memory");
                        rc = avro_value_set_string_len(dst, t,
                                                       (size_t)len + 1);
                } else if (dst) {
                        rc = avro_value_set_bytes(dst, (void *)(uintptr_t)s,
                                                  (size_t)len);
                } else if (d->ev && n->slot >= 0) {
                        return ev_str(d, n->slot, s, (size_t)len);
                }
                return rc ? avro_err(d, rc) : 0;
        }
        case AVRO_FIXED:
                if ((uint64_t)(d->end - d->p) < (uint64_t)n->fixed_size)
                        return truncated(d, at, "fixed");
                d->p += n->fixed_size;
                if (dst && (rc = avro_value_set_fixed(
                                    dst, (void *)(uintptr_t)at,
                                    (size_t)n->fixed_size)))
                        return avro_err(d, rc);
                return 0;
        case AVRO_ENUM: {
                int64_t i;
                if ((rc = rd_long(d, &i, "enum index")))
                        return rc;
                if (i < 0 || (uint64_t)i >= n->n)
                        return derr(d, -VEIL_EDECODE,
                                    "enum index %" PRId64 " at byte %zu, "
                                    "the writer's enum %s has %zu symbols",
                                    i, off(d, at), avro_schema_name(n->ws),
                                    n->n);
                if (!dst)
                        return 0;
                int ri = n->map[i];
                /* The index, not the symbol: a symbol is a value, and
                 * the enum may be a "quasi" one (a country). */
                if (ri < 0)
                        return derr(d, -VEIL_EDECODE,
                                    "enum index %" PRId64 " at byte %zu "
                                    "(the writer's enum %s) has no symbol "
                                    "in the reader's enum, which has no "
                                    "default",
                                    i, off(d, at), avro_schema_name(n->ws));
                return (rc = avro_value_set_enum(dst, ri)) ? avro_err(d, rc)
                                                           : 0;
        }
        case AVRO_ARRAY:
        case AVRO_MAP:
        case AVRO_RECORD:
                if (++d->depth > MAX_DEPTH)
                        return derr(d, -VEIL_EDECODE,
                                    "value at byte %zu nested deeper than %d",
                                    off(d, at), MAX_DEPTH);
                rc = n->wt == AVRO_RECORD ? dec_record(d, n, dst)
                                          : dec_blocks(d, n, dst);
                d->depth--;
                return rc;
        case AVRO_UNION: {
                int64_t b;
                if ((rc = rd_long(d, &b, "union branch")))
                        return rc;
                if (b < 0 || (uint64_t)b >= n->n)
                        return derr(d, -VEIL_EDECODE,
                                    "union branch %" PRId64 " at byte %zu, "
                                    "the writer's union has %zu",
                                    b, off(d, at), n->n);
                if (n->kid[b]->err)
                        return derr(d, -VEIL_EDECODE,
                                    "union branch %" PRId64 " at byte %zu "
                                    "cannot be read: %s",
                                    b, off(d, at), n->kid[b]->err);
                return dec_node(d, n->kid[b], dst);
        }
        default:
                return derr(d, -VEIL_EDECODE, "unsupported writer type %s",
                            avro_schema_type_name(n->ws));
        }
}

/* Finds the plan for a framed record and the start of its datum. */
static int frame(struct veil_codec *c, const unsigned char *p, size_t len,
                 const struct plan **pl, size_t *hdr, char *errstr,
                 size_t errstr_size) {
        if (c->framing == VEIL_FRAMING_RAW) {
                *pl = &c->plans[0];
                *hdr = 0;
                return 0;
        }
        if (len < CONFLUENT_HEADER)
                return fail(errstr, errstr_size, -VEIL_EDECODE,
                            "truncated record at byte %zu: a Confluent "
                            "header is 5 bytes (magic 0x00, schema id)",
                            len);
        if (p[0] != 0)
                return fail(errstr, errstr_size, -VEIL_EDECODE,
                            "magic byte 0x%02x, expected 0x00 for Confluent "
                            "framing",
                            p[0]);
        int32_t id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
                               (uint32_t)p[3] << 8 | p[4]);
        for (size_t i = 0; i < c->n_plans; i++)
                if (c->plans[i].id == id) {
                        *pl = &c->plans[i];
                        *hdr = CONFLUENT_HEADER;
                        return 0;
                }
        char known[128] = "";
        size_t k = 0;
        for (size_t i = 0; i < c->n_plans && k < sizeof(known); i++)
                k += (size_t)snprintf(known + k, sizeof(known) - k, "%s%" PRId32,
                                      i ? ", " : "", c->plans[i].id);
        return fail(errstr, errstr_size, -VEIL_EDECODE,
                    "unknown Confluent schema id %" PRId32 " (known: %s)", id,
                    c->n_plans ? known : "none");
}

static int decode(struct veil_codec *c, const void *buf, size_t len,
                  struct veil_event *ev, struct veil_arena *arena,
                  avro_value_t *dst, char *errstr, size_t errstr_size) {
        const struct plan *pl = NULL;
        size_t hdr = 0;
        const unsigned char *p = buf;
        if (!p && len)
                return fail(errstr, errstr_size, -VEIL_EINVAL,
                            "record buffer is NULL");
        int rc = frame(c, p, len, &pl, &hdr, errstr, errstr_size);
        if (rc)
                return rc;
        struct dec d = {.p = p + hdr, .end = p + len, .start = p, .c = c,
                        .ev = ev, .arena = arena,
                        .arena_base = arena ? arena->used_total : 0,
                        .gen_max = len * GEN_FACTOR + GEN_SLACK,
                        .errstr = errstr, .errstr_size = errstr_size};
        if (ev) {
                /* Every string in the datum has a length byte before it, so
                 * the datum's size bounds its strings with their NULs: one
                 * arena block per event holds them all. (Defaults are not
                 * in the datum; arena_str falls back for those.) */
                d.sleft = len - hdr + 1;
                if (!(d.sbuf = veil_arena_alloc(arena, d.sleft)))
                        return arena_refused(&d, d.sleft, hdr);
        }
        if ((rc = dec_node(&d, pl->root, dst)))
                return rc;
        if (d.p != d.end)
                return derr(&d, -VEIL_EDECODE,
                            "trailing bytes: the record ends at byte %zu of "
                            "%zu",
                            off(&d, d.p), len);
        if (ev) {
                ev->ctx.has_geo = d.geo == 3;
                if (!ev->ctx.has_geo)
                        ev->ctx.lat = ev->ctx.lon = 0;
        }
        return 0;
}

int veil_codec_decode_event(struct veil_codec *c, const void *buf, size_t len,
                            struct veil_event *ev, struct veil_arena *arena,
                            char *errstr, size_t errstr_size) {
        memset(ev, 0, sizeof(*ev));
        ev->gpc = -1;
        ev->status = VEIL_PASS;
        if (!c->event_ok)
                return fail(errstr, errstr_size, -VEIL_EINVAL, "%s",
                            c->event_err);
        return decode(c, buf, len, ev, arena, NULL, errstr, errstr_size);
}

int veil_codec_decode_rec(struct veil_codec *c, const void *buf, size_t len,
                          const veil_rec_t **rec, char *errstr,
                          size_t errstr_size) {
        veil_rec_pool_reset(&c->in_pool);
        int rc = decode(c, buf, len, NULL, NULL, &c->in, errstr, errstr_size);
        if (rec)
                *rec = rc ? NULL : &c->in_rec;
        return rc;
}

char *veil_codec_rec_json(struct veil_codec *c, const void *buf, size_t len) {
        char *json = NULL;
        if (veil_codec_decode_rec(c, buf, len, NULL, NULL, 0) ||
            avro_value_to_json(&c->in, 1, &json))
                return NULL;
        return json;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

static int put_header(struct veil_codec *c, struct veil_buf *out,
                      char *errstr, size_t errstr_size) {
        out->len = 0;
        if (c->framing != VEIL_FRAMING_CONFLUENT)
                return veil_buf_reserve(out, 256)
                               ? fail(errstr, errstr_size, -VEIL_ENOMEM,
                                      "out of memory encoding a record of %s",
                                      c->rs->path)
                               : 0;
        if (c->schema_id < 0)
                return fail(errstr, errstr_size, -VEIL_EINVAL,
                            "schema %s: Confluent framing without a "
                            "schema_id cannot frame output",
                            c->rs->path);
        unsigned char h[CONFLUENT_HEADER] = {
                0, (unsigned char)((uint32_t)c->schema_id >> 24),
                (unsigned char)((uint32_t)c->schema_id >> 16),
                (unsigned char)((uint32_t)c->schema_id >> 8),
                (unsigned char)c->schema_id};
        return put(out, h, sizeof(h))
                       ? fail(errstr, errstr_size, -VEIL_ENOMEM,
                              "out of memory encoding a record of %s",
                              c->rs->path)
                       : 0;
}

static int slot_present(const struct veil_event *ev, int slot) {
        switch (slots[slot].kind) {
        case K_STR:
                return *(const char *const *)((const char *)ev +
                                              slots[slot].off) != NULL;
        case K_BOOL:
                return ev->gpc >= 0;
        case K_DOUBLE:
                return (slot != SLOT_LAT && slot != SLOT_LON) ||
                       ev->ctx.has_geo;
        default:
                return 1;
        }
}

static int enc_fields(const struct efield *f, size_t n,
                      const struct veil_event *ev, struct veil_buf *b,
                      char *errstr, size_t errstr_size) {
        int rc = 0;
        for (size_t i = 0; i < n && !rc; i++, f++) {
                if (f->sub) {
                        rc = enc_fields(f->sub, f->n_sub, ev, b, errstr,
                                        errstr_size);
                        continue;
                }
                if (f->slot < 0) {
                        rc = put(b, f->def, f->def_len);
                        continue;
                }
                const void *p = (const char *)ev + slots[f->slot].off;
                if (!slot_present(ev, f->slot)) {
                        if (f->nb < 0)
                                return fail(errstr, errstr_size, -VEIL_EINVAL,
                                            "event field %s is absent and "
                                            "the schema requires it",
                                            slots[f->slot].path);
                        rc = veil_avro_put_long(b, f->nb);
                        continue;
                }
                if (f->vb >= 0 && (rc = veil_avro_put_long(b, f->vb)))
                        break;
                switch (f->kind) {
                case K_STR: {
                        /* A stage may have set it: Avro strings are UTF-8,
                         * and a reader (veil's own decoder too) refuses
                         * anything else. */
                        const char *s = *(const char *const *)p;
                        size_t n = strlen(s);
                        if (!veil_utf8_valid(s, n))
                                return fail(errstr, errstr_size, -VEIL_EINVAL,
                                            "event field %s is not valid "
                                            "UTF-8",
                                            slots[f->slot].path);
                        rc = put_str(b, s, n);
                        break;
                }
                case K_LONG:
                        rc = veil_avro_put_long(b, *(const int64_t *)p);
                        break;
                case K_DOUBLE:
                        rc = f->is_float ? put_float(b, (float)*(const double *)p)
                                         : put_double(b, *(const double *)p);
                        break;
                case K_BOOL: {
                        unsigned char v = *(const int *)p != 0;
                        rc = put(b, &v, 1);
                        break;
                }
                case K_MAP: {
                        size_t na = ev->ctx.n_attrs;
                        if (na)
                                rc = veil_avro_put_long(b, (int64_t)na);
                        for (size_t k = 0; k < na && !rc; k++) {
                                const struct veil_kv *kv = &ev->ctx.attrs[k];
                                if (!kv->key || !kv->value)
                                        return fail(errstr, errstr_size,
                                                    -VEIL_EINVAL,
                                                    "event context.attrs "
                                                    "entry %zu has a NULL "
                                                    "key or value",
                                                    k);
                                size_t kn = strlen(kv->key),
                                       vn = strlen(kv->value);
                                if (!veil_utf8_valid(kv->key, kn) ||
                                    !veil_utf8_valid(kv->value, vn))
                                        return fail(errstr, errstr_size,
                                                    -VEIL_EINVAL,
                                                    "event context.attrs "
                                                    "entry %zu is not valid "
                                                    "UTF-8",
                                                    k);
                                rc = put_str(b, kv->key, kn);
                                if (!rc)
                                        rc = put_str(b, kv->value, vn);
                        }
                        if (!rc)
                                rc = veil_avro_put_long(b, 0);
                        break;
                }
                }
        }
        if (rc == -VEIL_ENOMEM)
                return fail(errstr, errstr_size, rc,
                            "out of memory encoding an event");
        return rc;
}

int veil_codec_encode_event(struct veil_codec *c, const struct veil_event *ev,
                            struct veil_buf *out, char *errstr,
                            size_t errstr_size) {
        if (!c->event_ok)
                return fail(errstr, errstr_size, -VEIL_EINVAL, "%s",
                            c->event_err);
        int rc = put_header(c, out, errstr, errstr_size);
        if (rc)
                return rc;
        return enc_fields(c->enc, c->n_enc, ev, out, errstr, errstr_size);
}

static void efields_free(struct efield *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                efields_free(f[i].sub, f[i].n_sub);
                free(f[i].def);
        }
        free(f);
}

/* How encode_event writes each field of record `rec` at `path`. */
static int compile_enc(struct veil_codec *c, avro_schema_t rec,
                       const char *path, struct efield **out, size_t *nout,
                       char *why, size_t why_size) {
        size_t n = avro_schema_record_size(rec);
        struct efield *f = calloc(n ? n : 1, sizeof(*f));
        if (!f)
                return fail(why, why_size, -VEIL_ENOMEM, "out of memory");
        *out = f;
        *nout = n;
        for (size_t i = 0; i < n; i++) {
                const char *fn = avro_schema_record_field_name(rec, (int)i);
                avro_schema_t fs =
                        deref(avro_schema_record_field_get_by_index(rec, (int)i));
                char buf[256];
                const char *p = child_path(buf, sizeof(buf), path, fn);
                int slot = slot_of(p);
                f[i].slot = slot;
                if (slot >= 0) {
                        f[i].kind = slots[slot].kind;
                        if (slot_branches(fs, f[i].kind, &f[i].nb, &f[i].vb))
                                return fail(why, why_size, -VEIL_EINVAL,
                                            "schema %s: field %s cannot "
                                            "hold the event's %s",
                                            c->rs->path, p,
                                            kind_name(f[i].kind));
                        avro_schema_t vs =
                                f[i].vb >= 0
                                        ? deref(avro_schema_union_branch(
                                                  fs, (size_t)f[i].vb))
                                        : fs;
                        f[i].is_float = avro_typeof(vs) == AVRO_FLOAT;
                        continue;
                }
                if (p && avro_typeof(fs) == AVRO_RECORD) {
                        int rc = compile_enc(c, fs, p, &f[i].sub, &f[i].n_sub,
                                             why, why_size);
                        if (rc)
                                return rc;
                        continue;
                }
                const struct json *d = field_default(c->rs, rec, fn);
                if (!d)
                        return fail(why, why_size, -VEIL_EINVAL,
                                    "schema %s: field %s has no counterpart "
                                    "in struct veil_event and no default",
                                    c->rs->path, fn);
                int rc = encode_field_default(c->rs, rec, fn, d, &f[i].def,
                                              &f[i].def_len, why, why_size);
                if (rc)
                        return rc;
        }
        return 0;
}

/* Gives a record value its schema defaults (and nested records theirs),
 * from encodings prepared once per record type. */
static int fill_defaults(void *ctx, avro_value_t *v);

static void recdefs_free(struct recdefs *r) {
        for (size_t k = 0; k < r->n; k++) {
                free(r->bin[k]);
                free(r->val[k].s);
        }
        free(r->val);
        free(r->field);
        free(r->bin);
        free(r->len);
        free(r->sub);
        free(r->uni);
        free(r);
}

/* A long from the start of an encoded default. */
static int64_t unzigzag(const unsigned char *p, size_t n, size_t *used) {
        uint64_t z = 0;
        size_t i = 0;
        for (int sh = 0; i < n && sh < 64; sh += 7) {
                z |= (uint64_t)(p[i] & 0x7f) << sh;
                if (!(p[i++] & 0x80))
                        break;
        }
        *used = i;
        return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* How fill_rec() sets the default of a field of schema fs, encoded as
 * bin: by value for scalars, strings and a null union branch; anything else
 * is read back from bin. Fails only for memory. */
static int scalar_def(avro_schema_t fs, const unsigned char *bin, size_t len,
                      struct scalar_def *v) {
        size_t used = 0;
        uint64_t u = 0;
        v->type = (avro_type_t)-1;
        switch (avro_typeof(fs)) {
        case AVRO_NULL:
                break;
        case AVRO_BOOLEAN:
                if (len != 1)
                        return 0;
                v->l = bin[0];
                break;
        case AVRO_INT32:
        case AVRO_INT64:
        case AVRO_ENUM:
                v->l = unzigzag(bin, len, &used);
                break;
        case AVRO_FLOAT:
        case AVRO_DOUBLE: {
                size_t w = avro_typeof(fs) == AVRO_FLOAT ? 4 : 8;
                if (len != w)
                        return 0;
                for (size_t i = 0; i < w; i++)
                        u |= (uint64_t)bin[i] << (8 * i);
                if (w == 4) {
                        uint32_t u32 = (uint32_t)u;
                        float f;
                        memcpy(&f, &u32, 4);
                        v->d = f;
                } else {
                        memcpy(&v->d, &u, 8);
                }
                break;
        }
        case AVRO_STRING: {
                int64_t n = unzigzag(bin, len, &used);
                /* Avro-C strings end at a NUL: one inside stays read */
                if (n < 0 || (size_t)n != len - used ||
                    memchr(bin + used, 0, (size_t)n))
                        return 0;
                if (!(v->s = malloc((size_t)n + 1)))
                        return -VEIL_ENOMEM;
                memcpy(v->s, bin + used, (size_t)n);
                v->s[n] = '\0';
                break;
        }
        case AVRO_UNION:
                v->l = unzigzag(bin, len, &used);
                if (used != len || v->l < 0 ||
                    (size_t)v->l >= avro_schema_union_size(fs) ||
                    avro_typeof(deref(avro_schema_union_branch(
                            fs, (int)v->l))) != AVRO_NULL)
                        return 0;
                break;
        case AVRO_ARRAY:
        case AVRO_MAP:
                /* The empty default ([] or {}: one zero count) is what a
                 * container just reset or made holds: nothing to read. */
                if (len != 1 || bin[0] != 0)
                        return 0;
                break;
        default:
                return 0;
        }
        v->type = avro_typeof(fs);
        return 0;
}

static int set_scalar(avro_value_t *f, const struct scalar_def *v) {
        avro_value_t b;
        switch (v->type) {
        case AVRO_NULL:
                return avro_value_set_null(f);
        case AVRO_BOOLEAN:
                return avro_value_set_boolean(f, (int)v->l);
        case AVRO_INT32:
                return avro_value_set_int(f, (int32_t)v->l);
        case AVRO_INT64:
                return avro_value_set_long(f, v->l);
        case AVRO_ENUM:
                return avro_value_set_enum(f, (int)v->l);
        case AVRO_FLOAT:
                return avro_value_set_float(f, (float)v->d);
        case AVRO_DOUBLE:
                return avro_value_set_double(f, v->d);
        case AVRO_STRING:
                return avro_value_set_string(f, v->s);
        case AVRO_UNION:
                return avro_value_set_branch(f, (int)v->l, &b);
        case AVRO_ARRAY:
        case AVRO_MAP:
                return avro_value_reset(f);
        default:
                return EINVAL;
        }
}

static struct recdefs *recdefs_for(struct veil_codec *c, avro_schema_t rec) {
        struct recdefs *r;
        for (r = c->recdefs; r; r = r->next)
                if (r->rec == rec)
                        return r;
        size_t n = avro_schema_record_size(rec);
        if (!(r = calloc(1, sizeof(*r))))
                return NULL;
        r->rec = rec;
        r->field = calloc(n ? n : 1, sizeof(*r->field));
        r->bin = calloc(n ? n : 1, sizeof(*r->bin));
        r->len = calloc(n ? n : 1, sizeof(*r->len));
        r->sub = calloc(n ? n : 1, sizeof(*r->sub));
        r->uni = calloc(n ? n : 1, sizeof(*r->uni));
        r->val = calloc(n ? n : 1, sizeof(*r->val));
        if (!r->field || !r->bin || !r->len || !r->sub || !r->uni ||
            !r->val)
                goto nomem;
        for (size_t i = 0; i < n; i++) {
                const char *fn = avro_schema_record_field_name(rec, (int)i);
                const struct json *d = field_default(c->rs, rec, fn);
                avro_schema_t fs =
                        deref(avro_schema_record_field_get_by_index(rec, (int)i));
                if (d) {
                        /* Defaults were validated when the schema was
                         * compiled, so this cannot fail but for memory. */
                        if (encode_field_default(c->rs, rec, fn, d,
                                                 &r->bin[r->n], &r->len[r->n],
                                                 NULL, 0) ||
                            scalar_def(fs, r->bin[r->n], r->len[r->n],
                                       &r->val[r->n]))
                                goto nomem;
                        r->field[r->n++] = (int)i;
                } else if (avro_typeof(fs) == AVRO_RECORD) {
                        r->sub[r->n_sub++] = (int)i;
                } else if (avro_typeof(fs) == AVRO_UNION) {
                        r->uni[r->n_uni++] = (int)i;
                }
        }
        r->next = c->recdefs;
        c->recdefs = r;
        return r;
nomem:
        recdefs_free(r);
        return NULL;
}

static int fill_rec(struct veil_codec *c, avro_value_t *v, int depth) {
        if (avro_value_get_type(v) != AVRO_RECORD || depth > MAX_DEPTH)
                return 0;
        struct recdefs *r = recdefs_for(c, deref(avro_value_get_schema(v)));
        if (!r)
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < r->n; i++) {
                avro_value_t f;
                if (avro_value_get_by_index(v, (size_t)r->field[i], &f, NULL))
                        return -VEIL_EINVAL;
                if (r->val[i].type != (avro_type_t)-1) {
                        if (set_scalar(&f, &r->val[i]))
                                return -VEIL_ENOMEM;
                        continue;
                }
                avro_reader_memory_set_source(c->dreader,
                                              (const char *)r->bin[i],
                                              (int64_t)r->len[i]);
                if (avro_value_read(c->dreader, &f))
                        return -VEIL_ENOMEM;
        }
        for (size_t i = 0; i < r->n_sub; i++) {
                avro_value_t f;
                if (avro_value_get_by_index(v, (size_t)r->sub[i], &f, NULL))
                        return -VEIL_EINVAL;
                int rc = fill_rec(c, &f, depth + 1);
                if (rc)
                        return rc;
        }
        return 0;
}

static int fill_defaults(void *ctx, avro_value_t *v) {
        return fill_rec(ctx, v, 0);
}

static int stale_rec(struct veil_codec *c, avro_value_t *v, int depth);

/* Lists union u, which holds a branch after the output record's reset and
 * fill_defaults(): a branch the previous record chose (no default chose
 * it), for rec.c to take as never set. The unions without default of its
 * record branch kept theirs too; nothing else in it can be reached before
 * u is selected, and selecting it gives the branch its defaults. */
static int stale_union(struct veil_codec *c, avro_value_t *u, int depth) {
        struct veil_rec_pool *p = &c->out_pool;
        avro_value_t b;
        if (p->n_stale == p->cap_stale) {
                size_t cap = p->cap_stale ? 2 * p->cap_stale : 16;
                struct veil_rec_stale *n =
                        realloc(p->stale, cap * sizeof(*n));
                if (!n)
                        return -VEIL_ENOMEM;
                p->stale = n;
                p->cap_stale = cap;
        }
        size_t k = p->n_stale++;
        p->stale[k] = (struct veil_rec_stale){u->iface, u->self, k + 1, 1};
        p->n_live++;
        if (!avro_value_get_current_branch(u, &b) &&
            avro_value_get_type(&b) == AVRO_RECORD) {
                int rc = stale_rec(c, &b, depth + 1);
                if (rc)
                        return rc;
        }
        p->stale[k].end = p->n_stale;
        return 0;
}

/* The unions of record v that stale_union() lists: those without default
 * holding a branch, in v and in its fields of record type without default
 * (fill_rec() leaves both alone). A level of depth here is one or two
 * for the encoder: every union a record can write is looked at. */
static int stale_rec(struct veil_codec *c, avro_value_t *v, int depth) {
        if (depth > MAX_DEPTH)
                return 0;
        struct recdefs *r = recdefs_for(c, deref(avro_value_get_schema(v)));
        if (!r)
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < r->n_uni + r->n_sub; i++) {
                avro_value_t f;
                int d = -1, rc;
                int uni = i < r->n_uni;
                size_t fi = (size_t)(uni ? r->uni[i] : r->sub[i - r->n_uni]);
                if (avro_value_get_by_index(v, fi, &f, NULL))
                        return -VEIL_EINVAL;
                if (!uni)
                        rc = stale_rec(c, &f, depth + 1);
                else if (avro_value_get_discriminant(&f, &d) || d < 0)
                        continue;
                else
                        rc = stale_union(c, &f, depth);
                if (rc)
                        return rc;
        }
        return 0;
}

/* ---- the flat plan of an output schema (recflat.c) ---------------- */

static void flat_types_free(struct veil_flat_type *t) {
        while (t) {
                struct veil_flat_type *n = t->next;
                for (size_t i = 0; t->f && t->init && i < t->n; i++)
                        if (t->f[i].kind == VF_STRING && t->init[i].set)
                                free((char *)t->init[i].v.s.p);
                free(t->f);
                free(t->init);
                free(t);
                t = n;
        }
}

static int flat_kind(avro_schema_t s, enum veil_flat_kind *k) {
        switch (avro_typeof(s)) {
        case AVRO_NULL: *k = VF_NULL; return 0;
        case AVRO_BOOLEAN: *k = VF_BOOL; return 0;
        case AVRO_INT32: *k = VF_INT; return 0;
        case AVRO_INT64: *k = VF_LONG; return 0;
        case AVRO_FLOAT: *k = VF_FLOAT; return 0;
        case AVRO_DOUBLE: *k = VF_DOUBLE; return 0;
        case AVRO_STRING: *k = VF_STRING; return 0;
        case AVRO_ENUM: *k = VF_ENUM; return 0;
        default: return -1;
        }
}

/* The plan of record schema rec; NULL when it is not flat (a map, bytes,
 * fixed, an array of anything but records, a union of anything but
 * scalars, a default that is not a scalar or empty) or on ENOMEM. */
static struct veil_flat_type *flat_type(struct veil_codec *c,
                                        avro_schema_t rec, int depth) {
        if (depth > 8)
                return NULL;
        size_t n = avro_schema_record_size(rec);
        struct veil_flat_type *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->schema = rec;
        t->n = n;
        t->f = calloc(n ? n : 1, sizeof(*t->f));
        t->init = calloc(n ? n : 1, sizeof(*t->init));
        t->next = c->flat_types;
        c->flat_types = t;
        if (!t->f || !t->init)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                struct veil_flat_field *f = &t->f[i];
                struct veil_flat_slot *d = &t->init[i];
                avro_schema_t fs =
                        deref(avro_schema_record_field_get_by_index(rec,
                                                                    (int)i));
                f->name = avro_schema_record_field_name(rec, (int)i);
                f->schema = fs;
                d->branch = -1;
                switch (avro_typeof(fs)) {
                case AVRO_UNION:
                        f->kind = VF_UNION;
                        f->nb = avro_schema_union_size(fs);
                        if (f->nb > VEIL_FLAT_BRANCHES)
                                return NULL;
                        for (size_t b = 0; b < f->nb; b++) {
                                f->bs[b] = deref(
                                        avro_schema_union_branch(fs, (int)b));
                                if (flat_kind(f->bs[b], &f->bk[b]))
                                        return NULL;
                        }
                        break;
                case AVRO_ARRAY: {
                        avro_schema_t it = deref(avro_schema_array_items(fs));
                        f->kind = VF_ARRAY;
                        if (avro_typeof(it) != AVRO_RECORD ||
                            !(f->rec = flat_type(c, it, depth + 1)))
                                return NULL;
                        break;
                }
                case AVRO_RECORD:
                        f->kind = VF_RECORD;
                        if (!(f->rec = flat_type(c, fs, depth + 1)))
                                return NULL;
                        break;
                default:
                        if (flat_kind(fs, &f->kind))
                                return NULL;
                }
                const struct json *dj = field_default(c->rs, rec, f->name);
                if (!dj)
                        continue; /* zero, unset, empty: as Avro-C resets */
                unsigned char *bin = NULL;
                size_t len = 0;
                struct scalar_def sd = {0};
                int ok = !encode_field_default(c->rs, rec, f->name, dj, &bin,
                                               &len, NULL, 0) &&
                         !scalar_def(fs, bin, len, &sd) &&
                         sd.type != (avro_type_t)-1;
                free(bin);
                if (!ok) {
                        free(sd.s);
                        return NULL;
                }
                switch (f->kind) {
                case VF_FLOAT:
                        d->v.f = (float)sd.d;
                        break;
                case VF_DOUBLE:
                        d->v.d = sd.d;
                        break;
                case VF_STRING:
                        d->v.s.p = sd.s;
                        d->v.s.n = strlen(sd.s);
                        d->set = 1;
                        break;
                case VF_UNION:
                        d->branch = (int32_t)sd.l;
                        break;
                case VF_ARRAY:
                case VF_NULL:
                        break;
                default:
                        d->v.l = sd.l;
                }
        }
        return t;
}

/* Whether output records use the flat representation; `flat` 0 turns it
 * off for this codec (tests compare the two). */
void veil_codec_set_flat(struct veil_codec *c, int flat) {
        c->flat_off = !flat;
}

veil_rec_t *veil_codec_rec_begin(struct veil_codec *c) {
        veil_rec_pool_reset(&c->out_pool);
        if (!c->flat_tried && !c->flat_off) {
                c->flat_tried = 1;
                if (avro_typeof(c->rs->avro) == AVRO_RECORD)
                        c->flat_root = flat_type(c, c->rs->avro, 0);
                if (!c->flat_root) {
                        flat_types_free(c->flat_types);
                        c->flat_types = NULL;
                }
        }
        c->out_rec.flat = NULL;
        if (c->flat_root && !c->flat_off) {
                /* A fresh record: nothing of the previous one (another
                 * person's) is reachable from it. */
                c->out_rec.flat =
                        veil_flat_begin(&c->out_pool.flat, c->flat_root);
                return c->out_rec.flat ? &c->out_rec : NULL;
        }
        /* Reset first: nothing of the previous record (another person's)
         * may leak into this one through a field left unset. The reset
         * keeps the unions' branches: those are listed as never set. */
        if (avro_value_reset(&c->out) || fill_defaults(c, &c->out))
                return NULL;
        avro_type_t t = avro_value_get_type(&c->out);
        int d = -1, rc = 0;
        if (t == AVRO_RECORD)
                rc = stale_rec(c, &c->out, 0);
        else if (t == AVRO_UNION &&
                 !avro_value_get_discriminant(&c->out, &d) && d >= 0)
                rc = stale_union(c, &c->out, 0); /* a schema's: no default */
        return rc ? NULL : &c->out_rec;
}

/* A union or string never set (and without default) cannot be written:
 * Avro-C fails on the one and would write garbage length for the other.
 * Find it so the message names the field. */
static int find_unset(const struct veil_rec_pool *p, avro_value_t *v,
                      char *path, size_t size, int depth) {
        size_t n = 0, len = path ? strlen(path) : 0;
        avro_value_t child;
        const char *name;
        if (depth > MAX_DEPTH)
                return 0;
        switch (avro_value_get_type(v)) {
        case AVRO_STRING: {
                const char *s = NULL;
                /* a set string counts its terminator: size 0 is unset */
                return avro_value_get_string(v, &s, &n) || n == 0;
        }
        case AVRO_UNION: {
                int d = -1;
                avro_value_get_discriminant(v, &d);
                if (d < 0 || veil_rec_stale(p, v))
                        return 1;
                return !avro_value_get_current_branch(v, &child) &&
                       find_unset(p, &child, path, size, depth + 1);
        }
        case AVRO_RECORD:
        case AVRO_ARRAY:
        case AVRO_MAP:
                avro_value_get_size(v, &n);
                for (size_t i = 0; i < n; i++) {
                        name = NULL;
                        if (avro_value_get_by_index(v, i, &child, &name))
                                continue;
                        if (!path)
                                ; /* the quick walk: no names */
                        else if (avro_value_get_type(v) == AVRO_RECORD)
                                snprintf(path + len, size - len, "%s%s",
                                         len ? "." : "", name);
                        else if (avro_value_get_type(v) == AVRO_ARRAY)
                                snprintf(path + len, size - len, "[%zu]", i);
                        else
                                snprintf(path + len, size - len, "[]");
                        if (find_unset(p, &child, path, size, depth + 1))
                                return 1;
                        if (path)
                                path[len] = '\0';
                }
                return 0;
        default:
                return 0;
        }
}

/* Avro binary of v, written as Avro-C's avro_value_write() writes it (the
 * same calls in the same order, so the same bytes) but in one pass straight
 * into the buffer: Avro-C needs a walk to size the output and another to
 * write it, and the unset check was a third. 1 when a union or string was
 * never set (find_unset() then names it), -VEIL_ENOMEM, -VEIL_EINVAL. */
static int enc_value(struct veil_buf *b, const struct veil_rec_pool *pool,
                     avro_value_t *v, int depth) {
        avro_value_t child;
        const char *key;
        const void *p;
        size_t n;
        int rc = 0, i;
        int32_t i32;
        int64_t i64;
        double d;
        float f;
        if (depth > VEIL_ENC_MAX_DEPTH)
                return VEIL_ENC_TOO_DEEP;
        switch (avro_value_get_type(v)) {
        case AVRO_NULL:
                return 0;
        case AVRO_BOOLEAN: {
                if (avro_value_get_boolean(v, &i))
                        return -VEIL_EINVAL;
                /* Avro-C writes the int it holds narrowed to a byte. */
                unsigned char byte = (unsigned char)(int8_t)i;
                return put(b, &byte, 1);
        }
        case AVRO_INT32:
                if (avro_value_get_int(v, &i32))
                        return -VEIL_EINVAL;
                return veil_avro_put_long(b, i32);
        case AVRO_INT64:
                if (avro_value_get_long(v, &i64))
                        return -VEIL_EINVAL;
                return veil_avro_put_long(b, i64);
        case AVRO_FLOAT:
                if (avro_value_get_float(v, &f))
                        return -VEIL_EINVAL;
                return put_float(b, f);
        case AVRO_DOUBLE:
                if (avro_value_get_double(v, &d))
                        return -VEIL_EINVAL;
                return put_double(b, d);
        case AVRO_STRING:
                /* a set string counts its terminator: size 0 is unset */
                if (avro_value_get_string(v, &key, &n) || n == 0)
                        return 1;
                if (!veil_utf8_valid(key, n - 1))
                        return VEIL_ENC_NOT_UTF8;
                return put_str(b, key, n - 1);
        case AVRO_BYTES:
                if (avro_value_get_bytes(v, &p, &n))
                        return -VEIL_EINVAL;
                return put_str(b, p, n);
        case AVRO_FIXED:
                if (avro_value_get_fixed(v, &p, &n))
                        return -VEIL_EINVAL;
                return put(b, p, n);
        case AVRO_ENUM:
                if (avro_value_get_enum(v, &i))
                        return -VEIL_EINVAL;
                return veil_avro_put_long(b, i);
        case AVRO_UNION:
                i = -1;
                avro_value_get_discriminant(v, &i);
                if (i < 0 || veil_rec_stale(pool, v) ||
                    avro_value_get_current_branch(v, &child))
                        return 1;
                return (rc = veil_avro_put_long(b, i))
                               ? rc
                               : enc_value(b, pool, &child, depth + 1);
        case AVRO_RECORD:
        case AVRO_ARRAY:
        case AVRO_MAP: {
                avro_type_t t = avro_value_get_type(v);
                if (avro_value_get_size(v, &n))
                        return -VEIL_EINVAL;
                /* one block of all the items, then the empty block */
                if (t != AVRO_RECORD && n && (rc = veil_avro_put_long(b, (int64_t)n)))
                        return rc;
                for (size_t k = 0; k < n; k++) {
                        key = NULL;
                        /* Asking a record for its field's name costs Avro-C
                         * a hash lookup: only a map's keys are wanted. */
                        if (avro_value_get_by_index(v, k, &child,
                                                    t == AVRO_MAP ? &key
                                                                  : NULL))
                                return -VEIL_EINVAL;
                        if (t == AVRO_MAP) {
                                /* A key is an Avro string too: one that
                                 * is not UTF-8 makes a record no reader
                                 * (veil's own included) takes back. */
                                size_t kn = strlen(key);
                                if (!veil_utf8_valid(key, kn))
                                        return VEIL_ENC_NOT_UTF8;
                                if ((rc = put_str(b, key, kn)))
                                        return rc;
                        }
                        if ((rc = enc_value(b, pool, &child, depth + 1)))
                                return rc;
                }
                return t == AVRO_RECORD ? 0 : veil_avro_put_long(b, 0);
        }
        default:
                return -VEIL_EINVAL;
        }
}

static int too_deep_out(const struct veil_codec *c, char *errstr,
                        size_t errstr_size) {
        return fail(errstr, errstr_size, -VEIL_EINVAL,
                    "record of %s: a value is nested deeper than %d levels, "
                    "which veil does not write",
                    c->rs->path, VEIL_ENC_MAX_DEPTH);
}

/* The value is not in the message: it may be anyone's text. */
static int not_utf8_out(const struct veil_codec *c, char *errstr,
                        size_t errstr_size) {
        return fail(errstr, errstr_size, -VEIL_EINVAL,
                    "record of %s: a string or map key is not valid UTF-8, "
                    "which an Avro string must be (the plugin that set it "
                    "must check or cut text on character boundaries)",
                    c->rs->path);
}

int veil_codec_rec_encode(struct veil_codec *c, struct veil_buf *out,
                          char *errstr, size_t errstr_size) {
        char path[256] = "";
        int rc = put_header(c, out, errstr, errstr_size);
        if (rc)
                return rc;
        if (c->out_rec.flat) {
                rc = veil_flat_encode(c->out_rec.flat, out, path,
                                      sizeof(path));
                if (rc == 0)
                        return 0;
                out->len = 0;
                if (rc == 1)
                        return fail(errstr, errstr_size, -VEIL_EINVAL,
                                    "record of %s: field %s was not set and "
                                    "has no default",
                                    c->rs->path, path[0] ? path : "(top)");
                if (rc == VEIL_ENC_NOT_UTF8)
                        return not_utf8_out(c, errstr, errstr_size);
                if (rc == VEIL_ENC_TOO_DEEP)
                        return too_deep_out(c, errstr, errstr_size);
                if (rc == -VEIL_ENOMEM)
                        return fail(errstr, errstr_size, rc,
                                    "out of memory encoding a record of %s",
                                    c->rs->path);
                return fail(errstr, errstr_size, -VEIL_EINVAL,
                            "record of %s: it cannot be written as Avro: a "
                            "value does not match its schema",
                            c->rs->path);
        }
        rc = enc_value(out, &c->out_pool, &c->out, 0);
        if (rc == 0)
                return 0;
        out->len = 0;
        if (rc == -VEIL_ENOMEM)
                return fail(errstr, errstr_size, -VEIL_ENOMEM,
                            "out of memory encoding a record of %s",
                            c->rs->path);
        if (rc == VEIL_ENC_NOT_UTF8)
                return not_utf8_out(c, errstr, errstr_size);
        if (rc == VEIL_ENC_TOO_DEEP)
                return too_deep_out(c, errstr, errstr_size);
        /* Naming the field costs a snprintf per field: only now. */
        if (rc == 1 &&
            find_unset(&c->out_pool, &c->out, path, sizeof(path), 0))
                return fail(errstr, errstr_size, -VEIL_EINVAL,
                            "record of %s: field %s was not set and has no "
                            "default",
                            c->rs->path, path[0] ? path : "(top)");
        return fail(errstr, errstr_size, -VEIL_EINVAL,
                    "record of %s: it cannot be written as Avro: a value "
                    "does not match its schema",
                    c->rs->path);
}

/* ------------------------------------------------------------------ */
/* "pii" marks                                                         */
/* ------------------------------------------------------------------ */

static int pii_add(struct veil_codec *c, const char *path, const char *mark) {
        char **p = realloc(c->pii_paths, (c->n_pii + 1) * sizeof(*p));
        if (p)
                c->pii_paths = p;
        const char **m = realloc(c->pii_marks, (c->n_pii + 1) * sizeof(*m));
        if (m)
                c->pii_marks = m;
        if (!p || !m || !(p[c->n_pii] = strdup(path)))
                return -VEIL_ENOMEM;
        /* marks point into the schema JSON, which the codec keeps */
        m[c->n_pii++] = mark;
        return 0;
}

/* Walks a type in the JSON: records (inline, in unions, as array items or
 * map values, or named by reference) contribute their marked fields. A
 * mark other than "identifier" or "quasi" is refused (-VEIL_EINVAL, the
 * field in err): read as no mark, `"pii": true` would turn the privacy
 * lint off for the field and leave it out of the notice. */
/* The named types being walked, by depth: a reference to one of them is
 * a recursive type, whose fields were collected at its first visit. Any
 * other nesting is followed to MAX_DEPTH, past which the walk fails
 * rather than leave deeper marks unseen (it stopped silently at 16). */
/* Named types are walked again at every use, for the paths: a schema
 * whose types each use the next twice has 2^n of them. Past this many
 * steps the schema is refused rather than load for minutes. */
#define PII_WALK_MAX 20000

static int pii_walk(struct veil_codec *c, const struct json *t,
                    const char *prefix, const char *ns, int depth,
                    const struct json **pii_seen, char *err,
                    size_t err_size) {
        if (!t)
                return 0;
        if (++c->pii_steps > PII_WALK_MAX) {
                snprintf(err, err_size,
                         "field '%s': the schema reuses its named types so "
                         "often that its fields take more than %d steps to "
                         "list (for the \"pii\" marks); define fewer "
                         "nested reuses",
                         prefix, PII_WALK_MAX);
                return -VEIL_EINVAL;
        }
        if (depth > MAX_DEPTH) {
                snprintf(err, err_size,
                         "field '%s': the schema nests deeper than %d "
                         "levels, below which its \"pii\" marks cannot be "
                         "checked",
                         prefix, MAX_DEPTH);
                return -VEIL_EINVAL;
        }
        pii_seen[depth] = NULL;
        if (t->t == J_STR) {
                char full[512];
                if (is_primitive(t->s))
                        return 0;
                qualify(full, sizeof(full), t->s, ns);
                const struct json *named = named_lookup(c->rs, full);
                for (int d = 0; d < depth; d++)
                        if (named && pii_seen[d] == named)
                                return 0;
                pii_seen[depth] = named;
                return pii_walk(c, named, prefix, ns, depth + 1, pii_seen,
                                err, err_size);
        }
        if (t->t == J_ARR) {
                for (size_t i = 0; i < t->n; i++) {
                        int rc = pii_walk(c, t->v[i], prefix, ns, depth + 1,
                                          pii_seen, err, err_size);
                        if (rc)
                                return rc;
                }
                return 0;
        }
        if (t->t != J_OBJ)
                return 0;
        const struct json *ty = json_get(t, "type");
        if (ty && ty->t != J_STR)
                return pii_walk(c, ty, prefix, ns, depth + 1, pii_seen, err,
                                err_size);
        const char *own = json_str(t, "namespace");
        const char *name = json_str(t, "name");
        char inner[512];
        snprintf(inner, sizeof(inner), "%s", own ? own : ns ? ns : "");
        if (name && strchr(name, '.')) {
                snprintf(inner, sizeof(inner), "%s", name);
                *strrchr(inner, '.') = '\0';
        }
        int rc = pii_walk(c, json_get(t, "items"), prefix, inner, depth + 1,
                          pii_seen, err, err_size);
        if (!rc)
                rc = pii_walk(c, json_get(t, "values"), prefix, inner,
                              depth + 1, pii_seen, err, err_size);
        const struct json *fs = json_get(t, "fields");
        for (size_t i = 0; !rc && fs && fs->t == J_ARR && i < fs->n; i++) {
                const char *fn = json_str(fs->v[i], "name");
                const struct json *pj = json_get(fs->v[i], "pii");
                const char *mark = json_str(fs->v[i], "pii");
                char path[512];
                if (!fn)
                        continue;
                if (*prefix)
                        snprintf(path, sizeof(path), "%s.%s", prefix, fn);
                else
                        snprintf(path, sizeof(path), "%s", fn);
                if (pj && !(mark && (!strcmp(mark, "identifier") ||
                                     !strcmp(mark, "quasi")))) {
                        snprintf(err, err_size,
                                 "field '%s': \"pii\" must be "
                                 "\"identifier\" (it identifies a person) "
                                 "or \"quasi\" (it helps to); leave it out "
                                 "for a field that does neither",
                                 path);
                        return -VEIL_EINVAL;
                }
                if (mark)
                        rc = pii_add(c, path, mark);
                if (!rc)
                        rc = pii_walk(c, json_get(fs->v[i], "type"), path,
                                      inner, depth + 1, pii_seen, err,
                                      err_size);
        }
        return rc;
}

/* A record's field names are unique: each slot is filled at most once. */
_Static_assert(N_SLOTS <= VEIL_CODEC_EVENT_FIELDS,
               "VEIL_CODEC_EVENT_FIELDS must hold every event slot");

static size_t event_fields(const struct efield *f, size_t n,
                           const char **paths, size_t max, size_t k) {
        for (size_t i = 0; i < n; i++) {
                if (f[i].sub)
                        k = event_fields(f[i].sub, f[i].n_sub, paths, max, k);
                else if (f[i].slot >= 0 && k < max)
                        paths[k++] = slots[f[i].slot].path;
        }
        return k;
}

size_t veil_codec_event_fields(const struct veil_codec *c, const char **paths,
                               size_t max) {
        /* A schema that cannot stand for an event takes none: encode_event
         * refuses every event. */
        if (!c->event_ok)
                return 0;
        return event_fields(c->enc, c->n_enc, paths, max, 0);
}

size_t veil_codec_pii_fields(const struct veil_codec *c, const char ***paths,
                             const char ***marks) {
        if (paths)
                *paths = (const char **)c->pii_paths;
        if (marks)
                *marks = c->pii_marks;
        return c->n_pii;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

void veil_codec_destroy(struct veil_codec *c) {
        if (!c)
                return;
        while (c->nodes) {
                struct pnode *n = c->nodes;
                c->nodes = n->all;
                pnode_free(n);
        }
        for (size_t i = 0; i < c->n_plans; i++)
                if (c->plans[i].ws != c->rs)
                        schema_free(c->plans[i].ws);
        free(c->plans);
        if (c->in.self)
                avro_value_decref(&c->in);
        if (c->out.self)
                avro_value_decref(&c->out);
        if (c->iface)
                avro_value_iface_decref(c->iface);
        if (c->dreader)
                avro_reader_free(c->dreader);
        veil_rec_pool_free(&c->in_pool);
        veil_rec_pool_free(&c->out_pool);
        efields_free(c->enc, c->n_enc);
        for (size_t i = 0; i < c->n_pii; i++)
                free(c->pii_paths[i]);
        free(c->pii_paths);
        free(c->pii_marks);
        while (c->recdefs) {
                struct recdefs *r = c->recdefs;
                c->recdefs = r->next;
                recdefs_free(r);
        }
        flat_types_free(c->flat_types);
        free(c->scratch);
        schema_free(c->rs);
        free(c);
}

/* Everything but the plans. */
static int codec_create(struct veil_codec **out, const char *path,
                        enum veil_framing framing, int32_t schema_id,
                        char *errstr, size_t errstr_size) {
        struct veil_codec *c = calloc(1, sizeof(*c));
        int rc;
        *out = NULL;
        if (!c)
                return fail(errstr, errstr_size, -VEIL_ENOMEM,
                            "out of memory");
        c->framing = framing;
        c->schema_id = schema_id;
        if ((rc = schema_load(&c->rs, path, errstr, errstr_size)))
                goto err;
        rc = -VEIL_ENOMEM;
        if (!(c->iface = avro_generic_class_from_schema(c->rs->avro))) {
                rc = fail(errstr, errstr_size, -VEIL_EINVAL,
                          "schema %s: Avro-C cannot build values for it: %s",
                          path, avro_strerror());
                goto err;
        }
        if (avro_generic_value_new(c->iface, &c->in) ||
            avro_generic_value_new(c->iface, &c->out) ||
            !(c->dreader = avro_reader_memory("", 0)))
                goto nomem;
        c->in_rec = (struct veil_rec){.v = c->in, .pool = &c->in_pool};
        c->out_rec = (struct veil_rec){.v = c->out, .pool = &c->out_pool};
        c->in_pool.fill_defaults = c->out_pool.fill_defaults = fill_defaults;
        c->in_pool.ctx = c->out_pool.ctx = c;
        char pii_err[1024];
        const struct json *pii_seen[MAX_DEPTH + 1];
        if ((rc = pii_walk(c, c->rs->json, "", NULL, 0, pii_seen, pii_err,
                           sizeof(pii_err)))) {
                if (rc == -VEIL_ENOMEM)
                        goto nomem;
                rc = fail(errstr, errstr_size, rc, "schema %s: %s", path,
                          pii_err);
                goto err;
        }
        /* An interaction schema that cannot stand for the event is a
         * configuration error; any other schema simply has no events. */
        if (check_event_schema(c->rs, c->event_err, sizeof(c->event_err)) ==
            0) {
                rc = compile_enc(c, c->rs->avro, "", &c->enc, &c->n_enc,
                                 c->event_err, sizeof(c->event_err));
                c->event_ok = rc == 0;
        }
        if (!c->event_ok) {
                const char *name = avro_typeof(c->rs->avro) == AVRO_RECORD
                                           ? avro_schema_name(c->rs->avro)
                                           : "";
                if (!strcmp(name, "Interaction")) {
                        rc = fail(errstr, errstr_size, -VEIL_EINVAL, "%s",
                                  c->event_err);
                        goto err;
                }
        }
        *out = c;
        return 0;
nomem:
        rc = fail(errstr, errstr_size, -VEIL_ENOMEM,
                  "schema %s: out of memory", path);
err:
        veil_codec_destroy(c);
        return rc;
}

int veil_codec_new_file(struct veil_codec **out, const char *schema_path,
                        enum veil_framing framing, int32_t schema_id,
                        char *errstr, size_t errstr_size) {
        struct veil_codec *c;
        *out = NULL;
        if (framing == VEIL_FRAMING_CONFLUENT && schema_id < 0)
                return fail(errstr, errstr_size, -VEIL_EINVAL,
                            "schema %s: Confluent framing needs a schema id "
                            "(0 to 2147483647)",
                            schema_path);
        int rc = codec_create(&c, schema_path, framing, schema_id, errstr,
                              errstr_size);
        if (rc)
                return rc;
        if ((rc = plan_add(c, schema_id, c->rs, errstr, errstr_size))) {
                veil_codec_destroy(c);
                return rc;
        }
        *out = c;
        return 0;
}

static int parse_id(const char *s, int32_t *id) {
        char *end;
        if (!s || *s < '0' || *s > '9')
                return -1;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || v > INT32_MAX)
                return -1;
        *id = (int32_t)v;
        return 0;
}

int veil_codec_new(struct veil_codec **out, const struct veil_config *cfg,
                   const struct veil_binding *b, char *errstr,
                   size_t errstr_size) {
        const char *file = cfg && cfg->file ? cfg->file : "(config)";
        const char *what = b->name ? b->name : b->topic ? b->topic : "input";
        char where[512];
        *out = NULL;
        snprintf(where, sizeof(where), "%s:%d:%d: %s %s", file, b->line,
                 b->col, b->name ? "binding" : "input", what);
        if (!b->schema)
                return fail(errstr, errstr_size, -VEIL_EINVAL,
                            "%s: no schema given (schema: path/to.avsc)",
                            where);
        char *path = veil_config_path(cfg, b->schema);
        if (!path)
                return fail(errstr, errstr_size, -VEIL_ENOMEM,
                            "%s: out of memory", where);
        struct veil_codec *c;
        char msg[1024];
        int rc = codec_create(&c, path, b->framing, b->schema_id, msg,
                              sizeof(msg));
        free(path);
        /* The input's records are events, whatever the schema's name
         * (codec_create refuses only one named Interaction): one that
         * cannot stand for an event would dead-letter every record. */
        if (!rc && cfg && b == &cfg->input && !c->event_ok) {
                snprintf(msg, sizeof(msg), "%s", c->event_err);
                veil_codec_destroy(c);
                rc = -VEIL_EINVAL;
        }
        if (rc) {
                /* At the schema's line, where the fix goes. */
                if (b->schema_line)
                        snprintf(where, sizeof(where), "%s:%d:%d: %s %s",
                                 file, b->schema_line, b->schema_col,
                                 b->name ? "binding" : "input", what);
                return fail(errstr, errstr_size, rc, "%s: %s", where, msg);
        }
        int have_reader_id = 0;
        for (size_t i = 0; i < b->n_writer_schemas; i++) {
                const struct veil_kvpair *kv = &b->writer_schemas[i];
                int32_t id = 0;
                snprintf(where, sizeof(where), "%s:%d:%d: %s writer_schemas "
                         "'%s'", file, kv->line, kv->col, what, kv->key);
                if (b->framing == VEIL_FRAMING_RAW ? kv->key[0] != '\0'
                                                   : parse_id(kv->key, &id)) {
                        rc = fail(errstr, errstr_size, -VEIL_EINVAL, "%s: %s",
                                  where,
                                  b->framing == VEIL_FRAMING_RAW
                                          ? "raw framing takes one writer "
                                            "schema, under the key \"\""
                                          : "expected a decimal Confluent "
                                            "schema id (0 to 2147483647)");
                        goto err;
                }
                for (size_t k = 0; k < c->n_plans; k++)
                        if (c->plans[k].id == id) {
                                rc = fail(errstr, errstr_size, -VEIL_EINVAL,
                                          "%s: schema id %" PRId32 " is "
                                          "listed twice",
                                          where, id);
                                goto err;
                        }
                struct schema *ws;
                char *wpath = veil_config_path(cfg, kv->value);
                if (!wpath) {
                        rc = fail(errstr, errstr_size, -VEIL_ENOMEM,
                                  "%s: out of memory", where);
                        goto err;
                }
                rc = schema_load(&ws, wpath, msg, sizeof(msg));
                free(wpath);
                if (!rc)
                        rc = plan_add(c, id, ws, msg, sizeof(msg));
                if (rc) {
                        fail(errstr, errstr_size, rc, "%s: %s", where, msg);
                        goto err;
                }
                have_reader_id |= id == b->schema_id;
        }
        /* The reader is a writer too: under the binding's own id, or as
         * the raw writer when none is listed. */
        if (b->framing == VEIL_FRAMING_RAW ? c->n_plans == 0
                                           : !have_reader_id &&
                                                     b->schema_id >= 0) {
                if ((rc = plan_add(c, b->schema_id, c->rs, msg, sizeof(msg)))) {
                        fail(errstr, errstr_size, rc, "%s: %s", where, msg);
                        goto err;
                }
        }
        if (c->n_plans == 0) {
                rc = fail(errstr, errstr_size, -VEIL_EINVAL,
                          "%s: Confluent framing needs writer_schemas (id: "
                          "path) or a schema_id",
                          where);
                goto err;
        }
        *out = c;
        return 0;
err:
        veil_codec_destroy(c);
        return rc;
}

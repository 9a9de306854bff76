/*
 * recflat.c — output records of flat schemas in slots of their own (the
 * representation is described in codec_int.h): the veil_rec_* functions on
 * them, with the results and codes rec.c gives on Avro-C values, and their
 * Avro binary.
 *
 * Why: a recommendation record is built and encoded per event. Through
 * Avro-C values that was about 5,000 cycles (a reset that frees every
 * array element, a malloc per string set, a dozen calls through Avro-C's
 * interfaces per field); here a field is a slot found by the address of
 * its name and a string is a copy into an arena kept across records.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_int.h"

/* Literal paths are told from buffers by the loaded objects' segments. */
#if defined(__linux__) && defined(__GLIBC__)
#include <link.h>
#define VEIL_FLAT_RO_SEGMENTS 1
#else
#define VEIL_FLAT_RO_SEGMENTS 0
#endif

#define SEG_MAX 128              /* path segments, as rec.c */
#define FLAT_CHUNK (64 * 1024)   /* arena chunks */
#define NO_FIELD SIZE_MAX        /* the path "": the record itself */

struct veil_flat_chunk {
        struct veil_flat_chunk *next;
        size_t used, cap;
        unsigned char data[]; /* at offset 24: 8-byte aligned */
};

/* ---- the arena -------------------------------------------------------- */

static void *arena_alloc(struct veil_flat_arena *a, size_t n) {
        struct veil_flat_chunk *c = a->cur;
        n = (n + 7) & ~(size_t)7;
        for (;;) {
                if (c && c->cap - c->used >= n) {
                        void *p = c->data + c->used;
                        c->used += n;
                        return p;
                }
                /* Chunks after the current one were left by earlier
                 * records: reused, emptied. */
                if (c && c->next) {
                        c = a->cur = c->next;
                        c->used = 0;
                        continue;
                }
                size_t cap = n > FLAT_CHUNK ? n : FLAT_CHUNK;
                struct veil_flat_chunk *nc = malloc(sizeof(*nc) + cap);
                if (!nc)
                        return NULL;
                nc->next = NULL;
                nc->used = 0;
                nc->cap = cap;
                if (c)
                        c->next = nc;
                else
                        a->head = nc;
                c = a->cur = nc;
        }
}

void veil_flat_arena_free(struct veil_flat_arena *a) {
        struct veil_flat_chunk *c = a->head;
        while (c) {
                struct veil_flat_chunk *n = c->next;
                free(c);
                c = n;
        }
        a->head = a->cur = NULL;
}

/* A record of type t at its defaults (nested records too). */
static struct veil_flat_inst *inst_new(struct veil_flat_arena *a,
                                       struct veil_flat_type *t) {
        struct veil_flat_inst *r =
                arena_alloc(a, sizeof(*r) + t->n * sizeof(r->s[0]));
        if (!r)
                return NULL;
        r->t = t;
        memcpy(r->s, t->init, t->n * sizeof(r->s[0]));
        for (size_t i = 0; i < t->n; i++)
                if (t->f[i].kind == VF_RECORD &&
                    !(r->s[i].v.rec = inst_new(a, t->f[i].rec)))
                        return NULL;
        return r;
}

struct veil_flat_inst *veil_flat_begin(struct veil_flat_arena *a,
                                       struct veil_flat_type *t) {
        a->cur = a->head;
        if (a->cur)
                a->cur->used = 0;
        return inst_new(a, t);
}

/* ---- paths ------------------------------------------------------------ */

static int same_path(const char *a, const char *b) {
        while (*a && *a == *b) {
                a++;
                b++;
        }
        return *a == *b;
}

static size_t find_field(const struct veil_flat_type *t, const char *s,
                         size_t n) {
        for (size_t i = 0; i < t->n; i++)
                if (!strncmp(t->f[i].name, s, n) && !t->f[i].name[n])
                        return i;
        return NO_FIELD;
}

static inline size_t path_slot(const char *path) {
        uint64_t x = (uint64_t)(uintptr_t)path;
        return (size_t)((x ^ x >> 17) * 0x9e3779b97f4a7c15ULL >> 58) &
               (VEIL_FLAT_PATH_CACHE - 1);
}

#if VEIL_FLAT_RO_SEGMENTS
struct ro_query {
        uintptr_t a, end; /* the path's bytes, NUL included: [a, end) */
        uintptr_t lo, hi;
        int found;
};

static int ro_segment(struct dl_phdr_info *info, size_t size, void *arg) {
        struct ro_query *q = arg;
        (void)size;
        for (size_t i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
                uintptr_t hi = lo + ph->p_memsz;
                if (ph->p_type != PT_LOAD || q->a < lo || q->a >= hi)
                        continue;
                q->found = !(ph->p_flags & PF_W) && q->end <= hi;
                q->lo = lo;
                q->hi = hi;
                return 1;
        }
        return 0;
}

/* Whether path (len bytes and its NUL) lies in a read-only segment of a
 * loaded object: a string literal, whose text stays as long as its object
 * is loaded. Plugins are unloaded only with their pipeline, whose codecs
 * (and so these caches) go with it. Searching the loaded objects takes a
 * lock and a few hundred comparisons: their segments are remembered, and
 * after a few vain searches (paths in buffers) an address outside them is
 * taken as writable without searching. */
static int read_only(struct veil_flat_type *t, const char *path, size_t len) {
        uintptr_t a = (uintptr_t)path, end = a + len + 1;
        for (size_t i = 0; i < t->n_ro; i++)
                if (a >= t->ro[i].lo && end <= t->ro[i].hi)
                        return 1;
        if (t->ro_misses >= 16)
                return 0;
        struct ro_query q = {a, end, 0, 0, 0};
        dl_iterate_phdr(ro_segment, &q);
        if (!q.found) {
                t->ro_misses++;
                return 0;
        }
        if (t->n_ro < VEIL_FLAT_RO_RANGES) {
                t->ro[t->n_ro].lo = q.lo;
                t->ro[t->n_ro].hi = q.hi;
                t->n_ro++;
        }
        return 1;
}
#else
static int read_only(struct veil_flat_type *t, const char *path, size_t len) {
        (void)t, (void)path, (void)len;
        return 0; /* every hit compares the text */
}
#endif

/* The one-field path met before at this address: *fi its field, *len its
 * length. Plugins pass the same literal every time: one compare (and for
 * a path in a buffer, a compare of its text, which may have changed). */
static inline int cached(const struct veil_flat_type *t, const char *path,
                         size_t *fi, size_t *len) {
        size_t h = path_slot(path);
        /* Two ways: two literals of a record's fields that fall on one
         * entry would otherwise take it in turn, a walk each time. */
        if (t->by_addr[h].path != path && t->by_addr[h ^= 1].path != path)
                return 0;
        if (!t->by_addr[h].ro &&
            !same_path(t->f[t->by_addr[h].field].name, path))
                return 0;
        *fi = t->by_addr[h].field;
        if (len)
                *len = t->by_addr[h].len;
        return 1;
}

/* Keeps a one-field path found by walk: in the way that holds it or is
 * free, else in the first, the first's entry moving to the second. */
static void remember(struct veil_flat_type *t, const char *path, size_t i,
                     size_t n) {
        size_t h = path_slot(path);
        /* The same address with another text: a buffer, not a literal. */
        int was = t->by_addr[h].path == path ||
                  t->by_addr[h ^ 1].path == path;
        if (t->by_addr[h].path != path && t->by_addr[h].path) {
                if (t->by_addr[h ^ 1].path == path || !t->by_addr[h ^ 1].path)
                        h ^= 1;
                else
                        t->by_addr[h ^ 1] = t->by_addr[h];
        }
        t->by_addr[h].path = path;
        t->by_addr[h].field = (uint32_t)i;
        t->by_addr[h].len = (uint32_t)n;
        t->by_addr[h].ro = !was && read_only(t, path, n);
}

/* The field `path` names from r: *in the record that holds it, *fi its
 * index (NO_FIELD for "": r itself). Segments as rec.c's walk_named: an
 * empty one, a trailing dot or a name of SEG_MAX bytes or more name
 * nothing, and only a record is walked into. A one-field path is kept in
 * the cache of r's type. */
static __attribute__((noinline)) int walk(struct veil_flat_inst *r,
                                          const char *path,
                                          struct veil_flat_inst **in,
                                          size_t *fi) {
        if (!path)
                return -VEIL_EINVAL;
        if (!*path) {
                *in = r;
                *fi = NO_FIELD;
                return 0;
        }
        const char *p = path;
        for (;;) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t)(dot - p) : strlen(p);
                if (n == 0 || n >= SEG_MAX || (dot && !dot[1]))
                        return -VEIL_ENOENT;
                size_t i = find_field(r->t, p, n);
                if (i == NO_FIELD)
                        return -VEIL_ENOENT;
                if (!dot) {
                        if (p == path)
                                remember(r->t, path, i, n);
                        *in = r;
                        *fi = i;
                        return 0;
                }
                if (r->t->f[i].kind != VF_RECORD)
                        return -VEIL_ENOENT;
                r = r->s[i].v.rec;
                p = dot + 1;
        }
}

/* walk, with the cache asked first (inlined into every function). */
static inline int find(struct veil_flat_inst *r, const char *path,
                       struct veil_flat_inst **in, size_t *fi) {
        if (path && cached(r->t, path, fi, NULL)) {
                *in = r;
                return 0;
        }
        return walk(r, path, in, fi);
}

/* A value as the functions see it: a field, or the branch a union holds. */
struct view {
        enum veil_flat_kind k;
        avro_schema_t schema;
        struct veil_flat_slot *s;
        const struct veil_flat_field *f;
};

static void view_of(struct veil_flat_inst *in, size_t fi, struct view *v) {
        if (fi == NO_FIELD) {
                *v = (struct view){VF_RECORD, NULL, NULL, NULL};
                return;
        }
        const struct veil_flat_field *f = &in->t->f[fi];
        *v = (struct view){f->kind, f->schema, &in->s[fi], f};
}

/* For getters: a union reads as its branch; absent when unset or null. */
static inline int leaf(const struct veil_rec *r, const char *path,
                       struct view *v) {
        struct veil_flat_inst *in;
        size_t fi;
        int rc = find(r->flat, path, &in, &fi);
        if (rc)
                return rc;
        view_of(in, fi, v);
        if (v->k != VF_UNION)
                return 0;
        int b = v->s->branch;
        if (b < 0 || v->f->bk[b] == VF_NULL)
                return -VEIL_ENOENT;
        v->k = v->f->bk[b];
        v->schema = v->f->bs[b];
        return 0;
}

static int branch_of(const struct veil_flat_field *f, enum veil_flat_kind k) {
        for (size_t i = 0; i < f->nb; i++)
                if (f->bk[i] == k)
                        return (int)i;
        return -1;
}

/* Makes the union's branch b current (a new branch starts from zero, an
 * unset string: Avro-C's fresh value) and *v that branch. */
static int select_branch(struct view *v, int b) {
        if (b < 0)
                return -VEIL_EINVAL;
        if (v->s->branch != b) {
                v->s->branch = b;
                v->s->set = 0;
                memset(&v->s->v, 0, sizeof(v->s->v));
        }
        v->k = v->f->bk[b];
        v->schema = v->f->bs[b];
        return 0;
}

/* For setters: the field at path (a union still a union: union_pick
 * chooses its branch). */
static inline int settable(struct veil_rec *r, const char *path,
                           struct view *v) {
        struct veil_flat_inst *in;
        size_t fi;
        int rc = find(r->flat, path, &in, &fi);
        if (rc)
                return rc;
        view_of(in, fi, v);
        return 0;
}

/* The union's first branch of the first kind in want (rec.c's order), or
 * -1; *t is *v as that branch, for the value to be checked against before
 * select_branch makes it current: a setter that fails leaves the union as
 * it was. Not a union: -2, *t is *v. */
static int union_peek(const struct view *v, const enum veil_flat_kind *want,
                      size_t n, struct view *t) {
        *t = *v;
        if (v->k != VF_UNION)
                return -2;
        int b = -1;
        for (size_t i = 0; i < n && b < 0; i++)
                b = branch_of(v->f, want[i]);
        if (b >= 0) {
                t->k = v->f->bk[b];
                t->schema = v->f->bs[b];
        }
        return b;
}

static int union_pick(struct view *v, const enum veil_flat_kind *want,
                      size_t n) {
        struct view t;
        return select_branch(v, union_peek(v, want, n, &t));
}

/* ---- getters ---------------------------------------------------------- */

int veil_flat_get_str(const veil_rec_t *r, const char *path, const char **s,
                      size_t *len) {
        struct view v;
        int rc = leaf(r, path, &v);
        if (rc)
                return rc;
        const char *p = NULL;
        size_t n = 0;
        if (v.k == VF_STRING) {
                if (v.s->set) {
                        p = v.s->v.s.p;
                        n = v.s->v.s.n;
                }
        } else if (v.k == VF_ENUM) {
                p = avro_schema_enum_get(v.schema, (int)v.s->v.l);
                if (!p)
                        return -VEIL_EINVAL;
                n = strlen(p);
        } else {
                return -VEIL_EINVAL;
        }
        if (s)
                *s = p ? p : "";
        if (len)
                *len = n;
        return 0;
}

int veil_flat_get_long(const veil_rec_t *r, const char *path, int64_t *out) {
        struct view v;
        int rc = leaf(r, path, &v);
        if (rc)
                return rc;
        if (v.k != VF_LONG && v.k != VF_INT)
                return -VEIL_EINVAL;
        if (out)
                *out = v.s->v.l;
        return 0;
}

int veil_flat_get_double(const veil_rec_t *r, const char *path, double *out) {
        struct view v;
        int rc = leaf(r, path, &v);
        if (rc)
                return rc;
        double d;
        switch (v.k) {
        case VF_DOUBLE:
                d = v.s->v.d;
                break;
        case VF_FLOAT:
                d = v.s->v.f;
                break;
        case VF_LONG:
        case VF_INT:
                d = (double)v.s->v.l;
                break;
        default:
                return -VEIL_EINVAL;
        }
        if (out)
                *out = d;
        return 0;
}

int veil_flat_get_bool(const veil_rec_t *r, const char *path, int *out) {
        struct view v;
        int rc = leaf(r, path, &v);
        if (rc)
                return rc;
        if (v.k != VF_BOOL)
                return -VEIL_EINVAL;
        if (out)
                *out = v.s->v.l != 0;
        return 0;
}

static const struct veil_flat_list *array_at_path(const veil_rec_t *r,
                                                  const char *path) {
        static const struct veil_flat_list empty = {0, 0, NULL};
        struct view v;
        if (leaf(r, path, &v) || v.k != VF_ARRAY)
                return NULL;
        return v.s->v.arr ? v.s->v.arr : &empty;
}

size_t veil_flat_array_size(const veil_rec_t *r, const char *path) {
        const struct veil_flat_list *l = array_at_path(r, path);
        return l ? l->n : 0;
}

const veil_rec_t *veil_flat_array_at(const veil_rec_t *r, const char *path,
                                     size_t i) {
        const struct veil_flat_list *l = array_at_path(r, path);
        if (!l || i >= l->n)
                return NULL;
        struct veil_rec *h = veil_rec_pool_get(r->pool, r, path, i);
        if (h)
                h->flat = l->e[i];
        return h;
}

int veil_flat_absent_kind(const veil_rec_t *r, const char *path, int get) {
        struct view v;
        int rc = get ? leaf(r, path, &v)
                     : settable((struct veil_rec *)r, path, &v);
        /* Not a map or bytes, nor a union with such a branch. */
        return rc ? rc : -VEIL_EINVAL;
}

/* ---- setters ---------------------------------------------------------- */

int veil_flat_set_str(veil_rec_t *r, const char *path, const char *s) {
        static const enum veil_flat_kind want[] = {VF_STRING, VF_ENUM};
        struct view v;
        int rc = settable(r, path, &v);
        if (rc)
                return rc;
        if (!s)
                return -VEIL_EINVAL;
        /* Checked and allocated before a union's branch is chosen. */
        struct view t;
        int b = union_peek(&v, want, 2, &t), i = 0;
        char *p = NULL;
        size_t n = 0;
        if (t.k == VF_STRING) {
                n = strlen(s);
                if (!(p = arena_alloc(&r->pool->flat, n + 1)))
                        return -VEIL_ENOMEM;
                memcpy(p, s, n + 1);
        } else if (t.k != VF_ENUM ||
                   (i = avro_schema_enum_get_by_name(t.schema, s)) < 0) {
                return -VEIL_EINVAL;
        }
        if (b != -2 && (rc = select_branch(&v, b)))
                return rc;
        if (v.k == VF_STRING) {
                v.s->v.s.p = p;
                v.s->v.s.n = n;
                v.s->set = 1;
        } else {
                v.s->v.l = i;
        }
        return 0;
}

int veil_flat_set_long(veil_rec_t *r, const char *path, int64_t l) {
        static const enum veil_flat_kind want[] = {VF_LONG, VF_INT, VF_DOUBLE,
                                                   VF_FLOAT};
        struct view v;
        int rc = settable(r, path, &v);
        if (rc)
                return rc;
        struct view t;
        int b = union_peek(&v, want, 4, &t);
        if (t.k == VF_INT && (l < INT32_MIN || l > INT32_MAX))
                return -VEIL_EINVAL; /* before a union's branch is chosen */
        if (b != -2 && (rc = select_branch(&v, b)))
                return rc;
        switch (v.k) {
        case VF_LONG:
                v.s->v.l = l;
                return 0;
        case VF_INT:
                if (l < INT32_MIN || l > INT32_MAX)
                        return -VEIL_EINVAL;
                v.s->v.l = l;
                return 0;
        case VF_DOUBLE:
                v.s->v.d = (double)l;
                return 0;
        case VF_FLOAT:
                v.s->v.f = (float)l;
                return 0;
        default:
                return -VEIL_EINVAL;
        }
}

int veil_flat_set_double(veil_rec_t *r, const char *path, double d) {
        static const enum veil_flat_kind want[] = {VF_DOUBLE, VF_FLOAT};
        struct view v;
        int rc = settable(r, path, &v);
        if (rc)
                return rc;
        if (v.k == VF_UNION && (rc = union_pick(&v, want, 2)))
                return rc;
        if (v.k == VF_DOUBLE)
                v.s->v.d = d;
        else if (v.k == VF_FLOAT)
                v.s->v.f = (float)d;
        else
                return -VEIL_EINVAL;
        return 0;
}

int veil_flat_set_bool(veil_rec_t *r, const char *path, int b) {
        static const enum veil_flat_kind want[] = {VF_BOOL};
        struct view v;
        int rc = settable(r, path, &v);
        if (rc)
                return rc;
        if (v.k == VF_UNION && (rc = union_pick(&v, want, 1)))
                return rc;
        if (v.k != VF_BOOL)
                return -VEIL_EINVAL;
        v.s->v.l = b != 0;
        return 0;
}

int veil_flat_set_null(veil_rec_t *r, const char *path) {
        static const enum veil_flat_kind want[] = {VF_NULL};
        struct view v;
        int rc = settable(r, path, &v);
        if (rc)
                return rc;
        if (v.k == VF_UNION && (rc = union_pick(&v, want, 1)))
                return rc;
        return v.k == VF_NULL ? 0 : -VEIL_EINVAL;
}

veil_rec_t *veil_flat_append(veil_rec_t *r, const char *path) {
        struct veil_flat_inst *in;
        size_t fi, len;
        struct view v;
        if (path && cached(r->flat->t, path, &fi, &len))
                in = r->flat;
        else if (walk(r->flat, path, &in, &fi))
                return NULL;
        else
                len = strlen(path);
        view_of(in, fi, &v);
        /* As rec.c's handles, which hold the path: none longer. */
        if (v.k != VF_ARRAY || len >= VEIL_REC_PATH_MAX)
                return NULL;
        struct veil_flat_arena *a = &r->pool->flat;
        struct veil_flat_list *l = v.s->v.arr;
        if (!l) {
                if (!(l = arena_alloc(a, sizeof(*l))))
                        return NULL;
                *l = (struct veil_flat_list){0, 0, NULL};
                v.s->v.arr = l;
        }
        if (l->n == l->cap) {
                /* The old array stays in the arena: elements never move,
                 * only the list of them. */
                size_t cap = l->cap ? 2 * l->cap : 16;
                struct veil_flat_inst **e = arena_alloc(a, cap * sizeof(*e));
                if (!e)
                        return NULL;
                if (l->n)
                        memcpy(e, l->e, l->n * sizeof(*e));
                l->e = e;
                l->cap = cap;
        }
        struct veil_flat_inst *x = inst_new(a, v.f->rec);
        if (!x)
                return NULL;
        l->e[l->n++] = x;
        struct veil_rec *h = veil_rec_pool_take(r->pool, r, l->n - 1);
        if (h)
                h->flat = x;
        return h;
}

/* ---- encoding --------------------------------------------------------- */

static int reserve(struct veil_buf *b, size_t n) {
        return b->cap - b->len >= n ? 0 : veil_buf_reserve(b, b->len + n);
}

static int put_bytes(struct veil_buf *b, const void *p, size_t n) {
        int rc = veil_avro_put_long(b, (int64_t)n);
        if (rc || reserve(b, n))
                return rc ? rc : -VEIL_ENOMEM;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
}

/* As codec.c's enc_value writes the same values (so the same bytes as
 * Avro-C): 1 when a string or union was never set. */
static int enc(const struct veil_flat_inst *r, struct veil_buf *b,
               int depth) {
        if (depth > VEIL_ENC_MAX_DEPTH)
                return VEIL_ENC_TOO_DEEP;
        for (size_t i = 0; i < r->t->n; i++) {
                const struct veil_flat_field *f = &r->t->f[i];
                const struct veil_flat_slot *s = &r->s[i];
                enum veil_flat_kind k = f->kind;
                int rc = 0;
                if (k == VF_UNION) {
                        if (s->branch < 0)
                                return 1;
                        if ((rc = veil_avro_put_long(b, s->branch)))
                                return rc;
                        k = f->bk[s->branch];
                }
                switch (k) {
                case VF_NULL:
                        break;
                case VF_BOOL: {
                        unsigned char byte = (unsigned char)(int8_t)s->v.l;
                        if (reserve(b, 1))
                                return -VEIL_ENOMEM;
                        b->data[b->len++] = byte;
                        break;
                }
                case VF_INT:
                case VF_LONG:
                case VF_ENUM:
                        rc = veil_avro_put_long(b, s->v.l);
                        break;
                case VF_FLOAT: {
                        uint32_t u;
                        memcpy(&u, &s->v.f, 4);
                        rc = veil_avro_put_le(b, u, 4);
                        break;
                }
                case VF_DOUBLE: {
                        uint64_t u;
                        memcpy(&u, &s->v.d, 8);
                        rc = veil_avro_put_le(b, u, 8);
                        break;
                }
                case VF_STRING:
                        if (!s->set)
                                return 1;
                        if (!veil_utf8_valid(s->v.s.p, s->v.s.n))
                                return VEIL_ENC_NOT_UTF8;
                        rc = put_bytes(b, s->v.s.p, s->v.s.n);
                        break;
                case VF_ARRAY: {
                        size_t n = s->v.arr ? s->v.arr->n : 0;
                        /* one block of all the items, then the empty one */
                        if (n && (rc = veil_avro_put_long(b, (int64_t)n)))
                                return rc;
                        for (size_t j = 0; j < n; j++)
                                if ((rc = enc(s->v.arr->e[j], b, depth + 1)))
                                        return rc;
                        rc = veil_avro_put_long(b, 0);
                        break;
                }
                case VF_RECORD:
                        rc = enc(s->v.rec, b, depth + 1);
                        break;
                default:
                        return -VEIL_EINVAL;
                }
                if (rc)
                        return rc;
        }
        return 0;
}

/* The first field never set, named as codec.c's find_unset names it
 * ("a.b", "items[2].item_id"). */
static int find_unset(const struct veil_flat_inst *r, char *path,
                      size_t size, int depth) {
        size_t len = strlen(path);
        if (depth > 64)
                return 0;
        for (size_t i = 0; i < r->t->n; i++) {
                const struct veil_flat_field *f = &r->t->f[i];
                const struct veil_flat_slot *s = &r->s[i];
                enum veil_flat_kind k = f->kind;
                snprintf(path + len, size - len, "%s%s", len ? "." : "",
                         f->name);
                if (k == VF_UNION) {
                        if (s->branch < 0)
                                return 1;
                        k = f->bk[s->branch];
                }
                if (k == VF_STRING && !s->set)
                        return 1;
                if (k == VF_RECORD && find_unset(s->v.rec, path, size,
                                                 depth + 1))
                        return 1;
                if (k == VF_ARRAY && s->v.arr) {
                        size_t l2 = strlen(path);
                        for (size_t j = 0; j < s->v.arr->n; j++) {
                                snprintf(path + l2, size - l2, "[%zu]", j);
                                if (find_unset(s->v.arr->e[j], path, size,
                                               depth + 1))
                                        return 1;
                        }
                }
                path[len] = '\0';
        }
        return 0;
}

int veil_flat_encode(const struct veil_flat_inst *r, struct veil_buf *b,
                     char *path, size_t path_size) {
        int rc = enc(r, b, 0);
        if (rc == 1 && path && path_size) {
                path[0] = '\0';
                find_unset(r, path, path_size, 0);
        }
        return rc;
}

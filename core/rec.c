/*
 * rec.c — the SDK's veil_rec_* accessors over Avro-C generic values.
 *
 * Paths are dotted field names walked from the handle ("" is the handle
 * itself). Unions read as absent when null or never set, and are set by
 * value: the setter picks the first branch whose type can hold it, so a
 * plugin never deals with branches. Records of an output's flat
 * representation (recflat.c) go there, with the same results.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_int.h"

#define SEG_MAX 128

struct veil_rec *veil_rec_pool_get(struct veil_rec_pool *p,
                                   const struct veil_rec *parent,
                                   const char *path, size_t index) {
        size_t n = strlen(path);
        if (n >= VEIL_REC_PATH_MAX)
                return NULL;
        struct veil_rec *h = veil_rec_pool_take(p, parent, index);
        if (h)
                memcpy(h->path, path, n + 1);
        return h;
}

struct veil_rec *veil_rec_pool_take(struct veil_rec_pool *p,
                                    const struct veil_rec *parent,
                                    size_t index) {
        struct veil_rec_pool_chunk *c = p->cur;
        if (c && c->used == VEIL_REC_POOL_CHUNK) {
                c = c->next;
                if (c)
                        c->used = 0;
        }
        if (!c) {
                c = calloc(1, sizeof(*c));
                if (!c)
                        return NULL;
                if (p->cur)
                        p->cur->next = c;
                else
                        p->head = c;
        }
        p->cur = c;
        struct veil_rec *h = &c->h[c->used++];
        h->pool = p;
        h->parent = parent;
        h->index = index;
        h->cached = 0;
        h->flat = NULL;
        h->path[0] = '\0';
        return h;
}

void veil_rec_pool_reset(struct veil_rec_pool *p) {
        p->epoch++;
        p->n_stale = p->n_live = 0;
        p->cur = p->head;
        if (p->cur)
                p->cur->used = 0;
}

void veil_rec_pool_free(struct veil_rec_pool *p) {
        veil_flat_arena_free(&p->flat);
        free(p->stale);
        p->stale = NULL;
        p->n_stale = p->cap_stale = p->n_live = 0;
        struct veil_rec_pool_chunk *c = p->head;
        while (c) {
                struct veil_rec_pool_chunk *n = c->next;
                free(c);
                c = n;
        }
        p->head = p->cur = NULL;
}

/* A handle to an element just added: its value is known, and nothing
 * has moved since. */
static struct veil_rec *pool_get_cached(struct veil_rec_pool *p,
                                        const struct veil_rec *parent,
                                        const char *path, size_t index,
                                        const avro_value_t *v) {
        struct veil_rec *h = veil_rec_pool_get(p, parent, path, index);
        if (h) {
                h->v = *v;
                h->epoch = p->epoch;
                h->cached = 1;
        }
        return h;
}

static avro_schema_t deref(avro_schema_t s) {
        while (s && is_avro_link(s))
                s = avro_schema_link_target(s);
        return s;
}

/* A union read as its current branch; absent when unset or null. */
static int unwrap_get(const struct veil_rec_pool *p, avro_value_t *v) {
        if (avro_value_get_type(v) != AVRO_UNION)
                return 0;
        int d = -1;
        avro_value_t b;
        if (avro_value_get_discriminant(v, &d) || d < 0 ||
            veil_rec_stale(p, v) || avro_value_get_current_branch(v, &b))
                return -VEIL_ENOENT;
        *v = b;
        return avro_value_get_type(v) == AVRO_NULL ? -VEIL_ENOENT : 0;
}

static int has_branch_of_type(avro_schema_t u, avro_type_t t) {
        size_t n = avro_schema_union_size(u);
        for (size_t i = 0; i < n; i++)
                if (avro_typeof(deref(avro_schema_union_branch(u, i))) == t)
                        return 1;
        return 0;
}

static int branch_of_type(const avro_value_t *u, avro_type_t t) {
        avro_schema_t s = deref(avro_value_get_schema(u));
        size_t n = avro_schema_union_size(s);
        for (size_t i = 0; i < n; i++)
                if (avro_typeof(deref(avro_schema_union_branch(s, i))) == t)
                        return (int)i;
        return -1;
}

/* Union u is being selected (switching: to another branch). 1 when it
 * kept the previous record's branch: that branch is then chosen afresh. A
 * switch frees the branch, and with it the unions listed in it, whose
 * storage the new branch may reuse. */
static int unstale(struct veil_rec_pool *p, const avro_value_t *u,
                   int switching) {
        for (size_t k = 0; k < p->n_stale; k++) {
                struct veil_rec_stale *e = &p->stale[k];
                if (e->self != u->self || e->iface != u->iface)
                        continue;
                for (size_t j = k + 1; switching && j < e->end; j++) {
                        p->n_live -= p->stale[j].live;
                        p->stale[j].live = 0;
                        p->stale[j].iface = NULL;
                }
                int was = e->live;
                p->n_live -= was;
                e->live = 0;
                return was;
        }
        return 0;
}

/* Selects branch i of union *v and makes *v that branch. Selecting the
 * branch already selected keeps its contents (Avro-C reuses it), which is
 * what lets "purposes.training" and "purposes.analytics" be set in turn. */
static int select_branch(struct veil_rec_pool *p, avro_value_t *v, int i) {
        avro_value_t b;
        int cur = -1;
        if (i < 0)
                return -VEIL_EINVAL;
        avro_value_get_discriminant(v, &cur);
        /* The previous record's branch, kept by the reset, is new to this
         * record: a record branch gets its defaults, not what was left. */
        if (p->n_live && unstale(p, v, cur != i))
                cur = -1;
        /* Switching branch frees the old one, elements and all. */
        if (cur != i) {
                p->epoch++;
                if (p->n_undo < sizeof(p->undo) / sizeof(p->undo[0]))
                        p->undo[p->n_undo++] = (struct veil_rec_undo){*v, cur};
        }
        if (avro_value_set_branch(v, i, &b))
                return -VEIL_ENOMEM;
        /* A record branch just chosen starts from its schema defaults, as
         * a record from veil_out_begin does. */
        if (cur != i && avro_value_get_type(&b) == AVRO_RECORD &&
            p->fill_defaults && p->fill_defaults(p->ctx, &b))
                return -VEIL_ENOMEM;
        *v = b;
        return 0;
}

/* A setter begins: no union switched yet. */
static struct veil_rec_pool *undo_begin(veil_rec_t *r) {
        if (!r)
                return NULL;
        r->pool->n_undo = 0;
        return r->pool;
}

/* A setter failed with rc: the unions it switched on the way (a nullable
 * record made a record) or at the end go back to the branch they had, the
 * last first. A branch switched away from had nothing worth keeping in
 * the unions setters walk through (null, or never set), except a record
 * branch given up for another record type: that one comes back with its
 * defaults. */
static int undo(struct veil_rec_pool *p, int rc) {
        if (!p)
                return rc;
        while (p->n_undo) {
                struct veil_rec_undo *u = &p->undo[--p->n_undo];
                avro_value_t b;
                if (avro_value_set_branch(&u->u, u->prev,
                                          u->prev >= 0 ? &b : NULL))
                        continue;
                if (u->prev >= 0 && avro_value_get_type(&b) == AVRO_RECORD &&
                    p->fill_defaults)
                        p->fill_defaults(p->ctx, &b);
        }
        p->epoch++;
        return rc;
}

/* For setters: a union becomes its first branch of type t. */
static int want(struct veil_rec_pool *p, avro_value_t *v, avro_type_t t) {
        if (avro_value_get_type(v) == AVRO_UNION)
                return select_branch(p, v, branch_of_type(v, t));
        return avro_value_get_type(v) == t ? 0 : -VEIL_EINVAL;
}

static int walk_from(struct veil_rec_pool *pool, avro_value_t v,
                     const char *path, int set, avro_value_t *out);

/* The value a handle stands for: cached, or found again from its root. */
static int resolve(const struct veil_rec *r, avro_value_t *out, int depth) {
        avro_value_t parent, c;
        if (!r->parent || (r->cached && r->epoch == r->pool->epoch)) {
                *out = r->v;
                return 0;
        }
        int rc = depth > 32 ? -VEIL_EINVAL
                            : resolve(r->parent, &parent, depth + 1);
        if (rc || (rc = walk_from(r->pool, parent, r->path, 0, &c)) ||
            (rc = unwrap_get(r->pool, &c)))
                return rc;
        if (avro_value_get_type(&c) != AVRO_ARRAY &&
            avro_value_get_type(&c) != AVRO_MAP)
                return -VEIL_ENOENT;
        if (avro_value_get_by_index(&c, r->index, out, NULL))
                return -VEIL_ENOENT;
        /* Handles live in the pool's own (non-const) chunks; the cache is
         * not part of what a const handle promises to keep. */
        struct veil_rec *w = (struct veil_rec *)r;
        w->v = *out;
        w->epoch = r->pool->epoch;
        w->cached = 1;
        return 0;
}

/* A union on the way: setters select its record branch, getters stop at
 * an absent one. */
static int step_union(struct veil_rec_pool *pool, avro_value_t *v, int set) {
        if (avro_value_get_type(v) != AVRO_UNION)
                return 0;
        int rc = set ? want(pool, v, AVRO_RECORD) : unwrap_get(pool, v);
        return rc == -VEIL_EINVAL ? -VEIL_ENOENT : rc;
}

/* The cache slot of a path: from its length and a few of its bytes (paths
 * differ in length or at one end), not from every byte, since this runs on
 * each call of a setter. Single-byte loads on purpose: gathering bytes
 * into a word through memory stalls on store forwarding. */
static size_t path_slot(const avro_value_iface_t *start, const char *path,
                        size_t len) {
        const unsigned char *p = (const unsigned char *)path;
        uint64_t h = ((uint64_t)(uintptr_t)start >> 4) ^ len;
        h = h * 0x9e3779b97f4a7c15ULL ^ p[0] ^ (uint64_t)p[len / 2] << 8 ^
            (uint64_t)p[len - 1] << 16 ^ (uint64_t)p[len > 1 ? len - 2 : 0] << 24;
        h *= 0x9e3779b97f4a7c15ULL;
        return (size_t)(h >> 58) & (VEIL_REC_PATH_CACHE - 1);
}

/* The walk by cached indices; 1 when the entry does not fit the values met
 * (a union holding another record type than when it was cached): the
 * caller then walks by name. Selecting a branch already selected changes
 * nothing, so walking again from the start after a partial walk is safe.
 * Each step writes the child over *out in place: Avro-C stores a value as
 * two words, and copying it out whole right after stalls the load. */
static int walk_cached(struct veil_rec_pool *pool, const struct veil_rec_path *e,
                       int set, avro_value_t *out) {
        for (size_t k = 0; k < e->n; k++) {
                if (out->iface != e->rec[k]) {
                        int rc = step_union(pool, out, set);
                        if (rc)
                                return rc;
                        if (out->iface != e->rec[k])
                                return 1;
                }
                if (avro_value_get_by_index(out, (size_t)e->idx[k], out,
                                            NULL))
                        return -VEIL_ENOENT;
        }
        return 0;
}

/* Walks `path` from v by name, and keeps the indices in slot e. Apart from
 * the fast path, so that one does not pay for this one's stack frame. */
__attribute__((noinline)) static int
walk_named(struct veil_rec_pool *pool, avro_value_t v, const char *path,
           size_t len, struct veil_rec_path *e, int set, avro_value_t *out) {
        struct veil_rec_path found = {.start = v.iface, .len = len};
        const char *p = path;
        while (*p) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t)(dot - p) : strlen(p);
                char seg[SEG_MAX];
                if (n == 0 || n >= sizeof(seg) || (dot && !dot[1]))
                        return -VEIL_ENOENT;
                memcpy(seg, p, n);
                seg[n] = '\0';
                p = dot ? dot + 1 : p + n;
                int rc = step_union(pool, &v, set);
                if (rc)
                        return rc;
                avro_value_t child;
                if (avro_value_get_type(&v) != AVRO_RECORD)
                        return -VEIL_ENOENT;
                int i = avro_schema_record_field_get_index(
                        avro_value_get_schema(&v), seg);
                if (i < 0 || avro_value_get_by_index(&v, (size_t)i, &child,
                                                     NULL))
                        return -VEIL_ENOENT;
                if (found.n < VEIL_REC_PATH_SEGS) {
                        found.rec[found.n] = v.iface;
                        found.idx[found.n] = i;
                }
                found.n++;
                v = child;
        }
        if (len < sizeof(found.path) && found.n <= VEIL_REC_PATH_SEGS) {
                memcpy(found.path, path, len + 1);
                *e = found;
        }
        *out = v;
        return 0;
}

/* strcmp() == 0 for the short paths of a record, inline: the call and its
 * page-crossing checks cost more than the compare. */
static int same_path(const char *a, const char *b) {
        while (*a && *a == *b) {
                a++;
                b++;
        }
        return *a == *b;
}

/* Walks `path` from v. Setters select the record branch of unions on the
 * way; getters stop at an absent one. */
static int walk_from(struct veil_rec_pool *pool, avro_value_t v,
                     const char *path, int set, avro_value_t *out) {
        /* Two ways here too: the address picks a pair of slots. */
        struct veil_rec_path_ref *ref =
                &pool->by_addr[((uintptr_t)path ^ (uintptr_t)v.iface >> 4) *
                                       0x9e3779b97f4a7c15ULL >> 57 &
                               (VEIL_REC_PATH_CACHE - 2)];
        if (ref->path != path && ref[1].path == path)
                ref++;
        if (ref->path == path && ref->e->start == v.iface &&
            same_path(ref->e->path, path)) {
                *out = v;
                int rc = walk_cached(pool, ref->e, set, out);
                if (rc <= 0)
                        return rc;
        }
        /* A new address goes first; what was first becomes second. */
        if (ref->path != path)
                ref[1] = ref[0];
        size_t len = strlen(path);
        if (!len) {
                *out = v;
                return 0;
        }
        /* Two ways: a path lives in its slot or the next, so that two
         * paths of one record meeting in a slot do not evict each other. */
        size_t s = path_slot(v.iface, path, len);
        for (size_t w = 0; w < 2; w++) {
                struct veil_rec_path *e =
                        &pool->paths[(s + w) & (VEIL_REC_PATH_CACHE - 1)];
                if (e->start == v.iface && e->len == len &&
                    !memcmp(e->path, path, len)) {
                        *ref = (struct veil_rec_path_ref){path, e};
                        *out = v;
                        int rc = walk_cached(pool, e, set, out);
                        if (rc <= 0)
                                return rc;
                        return walk_named(pool, v, path, len, e, set, out);
                }
        }
        /* A new path goes first; what was first becomes second. */
        struct veil_rec_path *e = &pool->paths[s];
        if (e->start)
                pool->paths[(s + 1) & (VEIL_REC_PATH_CACHE - 1)] = *e;
        return walk_named(pool, v, path, len, e, set, out);
}

static int walk(const struct veil_rec *r, const char *path, int set,
                avro_value_t *out) {
        avro_value_t v;
        if (!r || !path)
                return -VEIL_EINVAL;
        int rc = resolve(r, &v, 0);
        return rc ? rc : walk_from(r->pool, v, path, set, out);
}

static int get_leaf(const veil_rec_t *r, const char *path, avro_value_t *v) {
        int rc = walk(r, path, 0, v);
        return rc ? rc : unwrap_get(r->pool, v);
}

int veil_rec_get_str(const veil_rec_t *r, const char *path, const char **s,
                     size_t *len) {
        if (r && r->flat)
                return veil_flat_get_str(r, path, s, len);
        avro_value_t v;
        int rc = get_leaf(r, path, &v);
        if (rc)
                return rc;
        const char *p = NULL;
        size_t n = 0;
        if (avro_value_get_type(&v) == AVRO_STRING) {
                if (avro_value_get_string(&v, &p, &n))
                        return -VEIL_EINVAL;
                /* Avro-C counts the terminator; 0 is a string never set
                 * since the reset, whose buffer holds the previous
                 * record's text still (another person's). */
                if (n)
                        n--;
                else
                        p = "";
        } else if (avro_value_get_type(&v) == AVRO_ENUM) {
                int i;
                if (avro_value_get_enum(&v, &i))
                        return -VEIL_EINVAL;
                p = avro_schema_enum_get(deref(avro_value_get_schema(&v)), i);
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

int veil_rec_get_bytes(const veil_rec_t *r, const char *path,
                       const void **data, size_t *len) {
        avro_value_t v;
        int rc = get_leaf(r, path, &v);
        if (rc)
                return rc;
        const void *p = NULL;
        size_t n = 0;
        if (avro_value_get_type(&v) != AVRO_BYTES ||
            avro_value_get_bytes(&v, &p, &n))
                return -VEIL_EINVAL;
        /* Empty bytes may sit in a buffer that holds the previous
         * record's (see veil_rec_get_str). */
        if (data)
                *data = n ? p : "";
        if (len)
                *len = n;
        return 0;
}

int veil_rec_get_long(const veil_rec_t *r, const char *path, int64_t *out) {
        if (r && r->flat)
                return veil_flat_get_long(r, path, out);
        avro_value_t v;
        int rc = get_leaf(r, path, &v);
        if (rc)
                return rc;
        int64_t l;
        int32_t i;
        switch (avro_value_get_type(&v)) {
        case AVRO_INT64:
                if (avro_value_get_long(&v, &l))
                        return -VEIL_EINVAL;
                break;
        case AVRO_INT32:
                if (avro_value_get_int(&v, &i))
                        return -VEIL_EINVAL;
                l = i;
                break;
        default:
                return -VEIL_EINVAL;
        }
        if (out)
                *out = l;
        return 0;
}

int veil_rec_get_double(const veil_rec_t *r, const char *path, double *out) {
        if (r && r->flat)
                return veil_flat_get_double(r, path, out);
        avro_value_t v;
        int rc = get_leaf(r, path, &v);
        if (rc)
                return rc;
        double d = 0;
        float f = 0;
        int64_t l = 0;
        int32_t i = 0;
        switch (avro_value_get_type(&v)) {
        case AVRO_DOUBLE:
                rc = avro_value_get_double(&v, &d);
                break;
        case AVRO_FLOAT:
                rc = avro_value_get_float(&v, &f);
                d = f;
                break;
        case AVRO_INT64:
                rc = avro_value_get_long(&v, &l);
                d = (double)l;
                break;
        case AVRO_INT32:
                rc = avro_value_get_int(&v, &i);
                d = i;
                break;
        default:
                return -VEIL_EINVAL;
        }
        if (rc)
                return -VEIL_EINVAL;
        if (out)
                *out = d;
        return 0;
}

int veil_rec_get_bool(const veil_rec_t *r, const char *path, int *out) {
        if (r && r->flat)
                return veil_flat_get_bool(r, path, out);
        avro_value_t v;
        int rc = get_leaf(r, path, &v);
        if (rc)
                return rc;
        int b;
        if (avro_value_get_type(&v) != AVRO_BOOLEAN ||
            avro_value_get_boolean(&v, &b))
                return -VEIL_EINVAL;
        if (out)
                *out = b != 0;
        return 0;
}

/* The array or map at path, or -VEIL_ENOENT when absent. */
static int get_container(const veil_rec_t *r, const char *path,
                         avro_type_t t, avro_value_t *v) {
        int rc = get_leaf(r, path, v);
        if (rc)
                return rc;
        return avro_value_get_type(v) == t ? 0 : -VEIL_EINVAL;
}

size_t veil_rec_array_size(const veil_rec_t *r, const char *path) {
        if (r && r->flat)
                return veil_flat_array_size(r, path);
        avro_value_t v;
        size_t n = 0;
        if (get_container(r, path, AVRO_ARRAY, &v) ||
            avro_value_get_size(&v, &n))
                return 0;
        return n;
}

const veil_rec_t *veil_rec_array_at(const veil_rec_t *r, const char *path,
                                    size_t i) {
        if (r && r->flat)
                return veil_flat_array_at(r, path, i);
        avro_value_t v;
        size_t n;
        if (get_container(r, path, AVRO_ARRAY, &v) ||
            avro_value_get_size(&v, &n) || i >= n)
                return NULL;
        return veil_rec_pool_get(r->pool, r, path, i);
}

size_t veil_rec_map_size(const veil_rec_t *r, const char *path) {
        if (r && r->flat)
                return 0;
        avro_value_t v;
        size_t n = 0;
        if (get_container(r, path, AVRO_MAP, &v) ||
            avro_value_get_size(&v, &n))
                return 0;
        return n;
}

int veil_rec_map_at(const veil_rec_t *r, const char *path, size_t i,
                    const char **key, const char **value) {
        avro_value_t v, e;
        const char *k = NULL, *s = NULL;
        size_t n;
        if (r && r->flat)
                return veil_flat_absent_kind(r, path, 1);
        int rc = get_container(r, path, AVRO_MAP, &v);
        if (rc)
                return rc;
        if (avro_value_get_by_index(&v, i, &e, &k))
                return -VEIL_ENOENT;
        rc = unwrap_get(r->pool, &e);
        if (rc == 0) {
                if (avro_value_get_type(&e) != AVRO_STRING ||
                    avro_value_get_string(&e, &s, &n))
                        return -VEIL_EINVAL;
        } else if (rc != -VEIL_ENOENT) {
                return rc;
        }
        if (key)
                *key = k;
        if (value)
                *value = s; /* NULL for a null value */
        return 0;
}

static int set_leaf(veil_rec_t *r, const char *path, avro_value_t *v) {
        return walk(r, path, 1, v);
}

/* The branch a setter would select in union *v (the first of type t1,
 * else of t2), its schema in *bs; -1 when none. */
static int peek_branch(const avro_value_t *v, avro_type_t t1, avro_type_t t2,
                       avro_schema_t *bs) {
        int b = branch_of_type(v, t1);
        if (b < 0 && t2 != t1)
                b = branch_of_type(v, t2);
        if (b >= 0)
                *bs = deref(avro_schema_union_branch(
                        deref(avro_value_get_schema(v)), (size_t)b));
        return b;
}

int veil_rec_set_str(veil_rec_t *r, const char *path, const char *s) {
        if (r && r->flat)
                return veil_flat_set_str(r, path, s);
        struct veil_rec_pool *p = undo_begin(r);
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc)
                return undo(p, rc);
        if (!s)
                return undo(p, -VEIL_EINVAL);
        /* The symbol is checked before a union's branch is chosen. */
        avro_type_t lt = avro_value_get_type(&v);
        avro_schema_t ls = NULL;
        int b = -2, i = 0;
        if (lt == AVRO_UNION) {
                if ((b = peek_branch(&v, AVRO_STRING, AVRO_ENUM, &ls)) < 0)
                        return undo(p, -VEIL_EINVAL);
                lt = avro_typeof(ls);
        } else if (lt == AVRO_ENUM) {
                ls = deref(avro_value_get_schema(&v));
        }
        if (lt == AVRO_ENUM && (i = avro_schema_enum_get_by_name(ls, s)) < 0)
                return undo(p, -VEIL_EINVAL);
        if (lt != AVRO_STRING && lt != AVRO_ENUM)
                return undo(p, -VEIL_EINVAL);
        if (b >= 0 && (rc = select_branch(p, &v, b)))
                return undo(p, rc);
        if (lt == AVRO_STRING)
                return avro_value_set_string(&v, s) ? undo(p, -VEIL_ENOMEM)
                                                    : 0;
        return avro_value_set_enum(&v, i) ? undo(p, -VEIL_EINVAL) : 0;
}

int veil_rec_set_bytes(veil_rec_t *r, const char *path, const void *data,
                       size_t len) {
        if (r && r->flat)
                return veil_flat_absent_kind(r, path, 0);
        struct veil_rec_pool *p = undo_begin(r);
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc)
                return undo(p, rc);
        if (!data && len)
                return undo(p, -VEIL_EINVAL);
        if (avro_value_get_type(&v) == AVRO_UNION &&
            (rc = select_branch(p, &v, branch_of_type(&v, AVRO_BYTES))))
                return undo(p, rc);
        if (avro_value_get_type(&v) != AVRO_BYTES)
                return undo(p, -VEIL_EINVAL);
        /* Avro-C copies the bytes. */
        return avro_value_set_bytes(&v, (void *)(data ? data : ""), len)
                       ? undo(p, -VEIL_ENOMEM)
                       : 0;
}

int veil_rec_set_long(veil_rec_t *r, const char *path, int64_t l) {
        static const avro_type_t order[] = {AVRO_INT64, AVRO_INT32,
                                            AVRO_DOUBLE, AVRO_FLOAT};
        if (r && r->flat)
                return veil_flat_set_long(r, path, l);
        struct veil_rec_pool *p = undo_begin(r);
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc)
                return undo(p, rc);
        avro_type_t lt = avro_value_get_type(&v);
        int b = -2;
        if (lt == AVRO_UNION) {
                avro_schema_t bs = NULL;
                for (size_t k = 0; k < 4 && b < 0; k++)
                        b = peek_branch(&v, order[k], order[k], &bs);
                if (b < 0)
                        return undo(p, -VEIL_EINVAL);
                lt = avro_typeof(bs);
        }
        /* Checked before a union's branch is chosen. */
        if (lt == AVRO_INT32 && (l < INT32_MIN || l > INT32_MAX))
                return undo(p, -VEIL_EINVAL);
        if (b >= 0 && (rc = select_branch(p, &v, b)))
                return undo(p, rc);
        switch (avro_value_get_type(&v)) {
        case AVRO_INT64:
                rc = avro_value_set_long(&v, l);
                break;
        case AVRO_INT32:
                rc = avro_value_set_int(&v, (int32_t)l);
                break;
        case AVRO_DOUBLE:
                rc = avro_value_set_double(&v, (double)l);
                break;
        case AVRO_FLOAT:
                rc = avro_value_set_float(&v, (float)l);
                break;
        default:
                return undo(p, -VEIL_EINVAL);
        }
        return rc ? undo(p, -VEIL_EINVAL) : 0;
}

int veil_rec_set_double(veil_rec_t *r, const char *path, double d) {
        if (r && r->flat)
                return veil_flat_set_double(r, path, d);
        struct veil_rec_pool *p = undo_begin(r);
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc)
                return undo(p, rc);
        if (avro_value_get_type(&v) == AVRO_UNION) {
                int b = branch_of_type(&v, AVRO_DOUBLE);
                if (b < 0)
                        b = branch_of_type(&v, AVRO_FLOAT);
                if ((rc = select_branch(p, &v, b)))
                        return undo(p, rc);
        }
        if (avro_value_get_type(&v) == AVRO_DOUBLE)
                rc = avro_value_set_double(&v, d);
        else if (avro_value_get_type(&v) == AVRO_FLOAT)
                rc = avro_value_set_float(&v, (float)d);
        else
                return undo(p, -VEIL_EINVAL);
        return rc ? undo(p, -VEIL_EINVAL) : 0;
}

int veil_rec_set_bool(veil_rec_t *r, const char *path, int b) {
        if (r && r->flat)
                return veil_flat_set_bool(r, path, b);
        struct veil_rec_pool *p = undo_begin(r);
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc || (rc = want(p, &v, AVRO_BOOLEAN)))
                return undo(p, rc);
        return avro_value_set_boolean(&v, b != 0) ? undo(p, -VEIL_EINVAL) : 0;
}

int veil_rec_set_null(veil_rec_t *r, const char *path) {
        if (r && r->flat)
                return veil_flat_set_null(r, path);
        struct veil_rec_pool *p = undo_begin(r);
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc || (rc = want(p, &v, AVRO_NULL)))
                return undo(p, rc);
        return avro_value_set_null(&v) ? undo(p, -VEIL_EINVAL) : 0;
}

veil_rec_t *veil_rec_append(veil_rec_t *r, const char *path) {
        avro_value_t v, e;
        size_t i;
        if (r && r->flat)
                return veil_flat_append(r, path);
        struct veil_rec_pool *p = undo_begin(r);
        if (!path || strlen(path) >= VEIL_REC_PATH_MAX ||
            set_leaf(r, path, &v) || want(p, &v, AVRO_ARRAY) ||
            avro_value_append(&v, &e, &i)) {
                undo(p, 0);
                return NULL;
        }
        p->epoch++; /* the array may have grown into new storage */
        if (p->fill_defaults && p->fill_defaults(p->ctx, &e))
                return NULL;
        return pool_get_cached(p, r, path, i, &e);
}

veil_rec_t *veil_rec_map_add(veil_rec_t *r, const char *path,
                             const char *key) {
        avro_value_t v, e;
        size_t i;
        int is_new = 0;
        if (r && r->flat)
                return NULL;
        struct veil_rec_pool *p = undo_begin(r);
        if (!key || !path || strlen(path) >= VEIL_REC_PATH_MAX ||
            set_leaf(r, path, &v) || want(p, &v, AVRO_MAP) ||
            avro_value_add(&v, key, &e, &i, &is_new)) {
                undo(p, 0);
                return NULL;
        }
        p->epoch++; /* the map may have grown into new storage */
        if (is_new && p->fill_defaults && p->fill_defaults(p->ctx, &e))
                return NULL;
        return pool_get_cached(p, r, path, i, &e);
}

int veil_rec_map_put(veil_rec_t *r, const char *path, const char *key,
                     const char *value) {
        avro_value_t v, e;
        if (r && r->flat)
                return veil_flat_absent_kind(r, path, 0);
        struct veil_rec_pool *p = undo_begin(r);
        int rc = set_leaf(r, path, &v);
        if (rc)
                return undo(p, rc);
        /* Checked before a union's branch is chosen or an entry added. */
        avro_schema_t ms = deref(avro_value_get_schema(&v));
        if (avro_value_get_type(&v) == AVRO_UNION &&
            peek_branch(&v, AVRO_MAP, AVRO_MAP, &ms) < 0)
                return undo(p, -VEIL_EINVAL);
        avro_schema_t vs = avro_typeof(ms) == AVRO_MAP
                                   ? deref(avro_schema_map_values(ms))
                                   : NULL;
        if (!key || !value || !vs ||
            (avro_typeof(vs) != AVRO_STRING &&
             (avro_typeof(vs) != AVRO_UNION ||
              !has_branch_of_type(vs, AVRO_STRING))))
                return undo(p, -VEIL_EINVAL);
        if ((rc = want(p, &v, AVRO_MAP)))
                return undo(p, rc);
        p->epoch++; /* the map may grow into new storage */
        if (avro_value_add(&v, key, &e, NULL, NULL))
                return undo(p, -VEIL_ENOMEM);
        if ((rc = want(p, &e, AVRO_STRING)))
                return undo(p, rc);
        return avro_value_set_string(&e, value) ? undo(p, -VEIL_ENOMEM) : 0;
}

/*
 * rec.c — the SDK's veil_rec_* accessors over Avro-C generic values.
 *
 * Paths are dotted field names walked from the handle ("" is the handle
 * itself). Unions read as absent when null or never set, and are set by
 * value: the setter picks the first branch whose type can hold it, so a
 * plugin never deals with branches.
 */
#include <limits.h>
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
        memcpy(h->path, path, n + 1);
        return h;
}

void veil_rec_pool_reset(struct veil_rec_pool *p) {
        p->cur = p->head;
        if (p->cur)
                p->cur->used = 0;
}

void veil_rec_pool_free(struct veil_rec_pool *p) {
        struct veil_rec_pool_chunk *c = p->head;
        while (c) {
                struct veil_rec_pool_chunk *n = c->next;
                free(c);
                c = n;
        }
        p->head = p->cur = NULL;
}

static avro_schema_t deref(avro_schema_t s) {
        while (s && is_avro_link(s))
                s = avro_schema_link_target(s);
        return s;
}

/* A union read as its current branch; absent when unset or null. */
static int unwrap_get(avro_value_t *v) {
        if (avro_value_get_type(v) != AVRO_UNION)
                return 0;
        int d = -1;
        avro_value_t b;
        if (avro_value_get_discriminant(v, &d) || d < 0 ||
            avro_value_get_current_branch(v, &b))
                return -VEIL_ENOENT;
        *v = b;
        return avro_value_get_type(v) == AVRO_NULL ? -VEIL_ENOENT : 0;
}

static int branch_of_type(const avro_value_t *u, avro_type_t t) {
        avro_schema_t s = deref(avro_value_get_schema(u));
        size_t n = avro_schema_union_size(s);
        for (size_t i = 0; i < n; i++)
                if (avro_typeof(deref(avro_schema_union_branch(s, i))) == t)
                        return (int)i;
        return -1;
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

/* For setters: a union becomes its first branch of type t. */
static int want(struct veil_rec_pool *p, avro_value_t *v, avro_type_t t) {
        if (avro_value_get_type(v) == AVRO_UNION)
                return select_branch(p, v, branch_of_type(v, t));
        return avro_value_get_type(v) == t ? 0 : -VEIL_EINVAL;
}

static int walk_from(struct veil_rec_pool *pool, avro_value_t v,
                     const char *path, int set, avro_value_t *out);

/* The value a handle stands for, found again from its root. */
static int resolve(const struct veil_rec *r, avro_value_t *out, int depth) {
        avro_value_t parent, c;
        if (!r->parent) {
                *out = r->v;
                return 0;
        }
        int rc = depth > 32 ? -VEIL_EINVAL
                            : resolve(r->parent, &parent, depth + 1);
        if (rc || (rc = walk_from(r->pool, parent, r->path, 0, &c)) ||
            (rc = unwrap_get(&c)))
                return rc;
        if (avro_value_get_type(&c) != AVRO_ARRAY &&
            avro_value_get_type(&c) != AVRO_MAP)
                return -VEIL_ENOENT;
        return avro_value_get_by_index(&c, r->index, out, NULL)
                       ? -VEIL_ENOENT
                       : 0;
}

/* Walks `path` from v. Setters select the record branch of unions on the
 * way; getters stop at an absent one. */
static int walk_from(struct veil_rec_pool *pool, avro_value_t v,
                     const char *path, int set, avro_value_t *out) {
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
                if (avro_value_get_type(&v) == AVRO_UNION) {
                        int rc = set ? want(pool, &v, AVRO_RECORD)
                                     : unwrap_get(&v);
                        if (rc)
                                return rc == -VEIL_EINVAL ? -VEIL_ENOENT : rc;
                }
                avro_value_t child;
                if (avro_value_get_type(&v) != AVRO_RECORD ||
                    avro_value_get_by_name(&v, seg, &child, NULL))
                        return -VEIL_ENOENT;
                v = child;
        }
        *out = v;
        return 0;
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
        return rc ? rc : unwrap_get(v);
}

int veil_rec_get_str(const veil_rec_t *r, const char *path, const char **s,
                     size_t *len) {
        avro_value_t v;
        int rc = get_leaf(r, path, &v);
        if (rc)
                return rc;
        const char *p = NULL;
        size_t n = 0;
        if (avro_value_get_type(&v) == AVRO_STRING) {
                if (avro_value_get_string(&v, &p, &n))
                        return -VEIL_EINVAL;
                /* Avro-C counts the terminator. */
                n = n ? n - 1 : 0;
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

int veil_rec_get_long(const veil_rec_t *r, const char *path, int64_t *out) {
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
        avro_value_t v;
        size_t n = 0;
        if (get_container(r, path, AVRO_ARRAY, &v) ||
            avro_value_get_size(&v, &n))
                return 0;
        return n;
}

const veil_rec_t *veil_rec_array_at(const veil_rec_t *r, const char *path,
                                    size_t i) {
        avro_value_t v;
        size_t n;
        if (get_container(r, path, AVRO_ARRAY, &v) ||
            avro_value_get_size(&v, &n) || i >= n)
                return NULL;
        return veil_rec_pool_get(r->pool, r, path, i);
}

size_t veil_rec_map_size(const veil_rec_t *r, const char *path) {
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
        int rc = get_container(r, path, AVRO_MAP, &v);
        if (rc)
                return rc;
        if (avro_value_get_by_index(&v, i, &e, &k))
                return -VEIL_ENOENT;
        rc = unwrap_get(&e);
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

int veil_rec_set_str(veil_rec_t *r, const char *path, const char *s) {
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc)
                return rc;
        if (!s)
                return -VEIL_EINVAL;
        if (avro_value_get_type(&v) == AVRO_UNION) {
                int b = branch_of_type(&v, AVRO_STRING);
                if (b < 0)
                        b = branch_of_type(&v, AVRO_ENUM);
                if ((rc = select_branch(r->pool, &v, b)))
                        return rc;
        }
        if (avro_value_get_type(&v) == AVRO_STRING)
                return avro_value_set_string(&v, s) ? -VEIL_ENOMEM : 0;
        if (avro_value_get_type(&v) == AVRO_ENUM) {
                int i = avro_schema_enum_get_by_name(
                        deref(avro_value_get_schema(&v)), s);
                if (i < 0)
                        return -VEIL_EINVAL;
                return avro_value_set_enum(&v, i) ? -VEIL_EINVAL : 0;
        }
        return -VEIL_EINVAL;
}

int veil_rec_set_long(veil_rec_t *r, const char *path, int64_t l) {
        static const avro_type_t order[] = {AVRO_INT64, AVRO_INT32,
                                            AVRO_DOUBLE, AVRO_FLOAT};
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc)
                return rc;
        if (avro_value_get_type(&v) == AVRO_UNION) {
                int b = -1;
                for (size_t k = 0; k < 4 && b < 0; k++)
                        b = branch_of_type(&v, order[k]);
                if ((rc = select_branch(r->pool, &v, b)))
                        return rc;
        }
        switch (avro_value_get_type(&v)) {
        case AVRO_INT64:
                rc = avro_value_set_long(&v, l);
                break;
        case AVRO_INT32:
                if (l < INT32_MIN || l > INT32_MAX)
                        return -VEIL_EINVAL;
                rc = avro_value_set_int(&v, (int32_t)l);
                break;
        case AVRO_DOUBLE:
                rc = avro_value_set_double(&v, (double)l);
                break;
        case AVRO_FLOAT:
                rc = avro_value_set_float(&v, (float)l);
                break;
        default:
                return -VEIL_EINVAL;
        }
        return rc ? -VEIL_EINVAL : 0;
}

int veil_rec_set_double(veil_rec_t *r, const char *path, double d) {
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc)
                return rc;
        if (avro_value_get_type(&v) == AVRO_UNION) {
                int b = branch_of_type(&v, AVRO_DOUBLE);
                if (b < 0)
                        b = branch_of_type(&v, AVRO_FLOAT);
                if ((rc = select_branch(r->pool, &v, b)))
                        return rc;
        }
        if (avro_value_get_type(&v) == AVRO_DOUBLE)
                rc = avro_value_set_double(&v, d);
        else if (avro_value_get_type(&v) == AVRO_FLOAT)
                rc = avro_value_set_float(&v, (float)d);
        else
                return -VEIL_EINVAL;
        return rc ? -VEIL_EINVAL : 0;
}

int veil_rec_set_bool(veil_rec_t *r, const char *path, int b) {
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc || (rc = want(r->pool, &v, AVRO_BOOLEAN)))
                return rc;
        return avro_value_set_boolean(&v, b != 0) ? -VEIL_EINVAL : 0;
}

int veil_rec_set_null(veil_rec_t *r, const char *path) {
        avro_value_t v;
        int rc = set_leaf(r, path, &v);
        if (rc || (rc = want(r->pool, &v, AVRO_NULL)))
                return rc;
        return avro_value_set_null(&v) ? -VEIL_EINVAL : 0;
}

veil_rec_t *veil_rec_append(veil_rec_t *r, const char *path) {
        avro_value_t v, e;
        size_t i;
        if (set_leaf(r, path, &v) || want(r->pool, &v, AVRO_ARRAY) ||
            strlen(path) >= VEIL_REC_PATH_MAX ||
            avro_value_append(&v, &e, &i))
                return NULL;
        struct veil_rec_pool *p = r->pool;
        if (p->fill_defaults && p->fill_defaults(p->ctx, &e))
                return NULL;
        return veil_rec_pool_get(p, r, path, i);
}

veil_rec_t *veil_rec_map_add(veil_rec_t *r, const char *path,
                             const char *key) {
        avro_value_t v, e;
        size_t i;
        int is_new = 0;
        if (!key || set_leaf(r, path, &v) || want(r->pool, &v, AVRO_MAP) ||
            strlen(path) >= VEIL_REC_PATH_MAX ||
            avro_value_add(&v, key, &e, &i, &is_new))
                return NULL;
        struct veil_rec_pool *p = r->pool;
        if (is_new && p->fill_defaults && p->fill_defaults(p->ctx, &e))
                return NULL;
        return veil_rec_pool_get(p, r, path, i);
}

int veil_rec_map_put(veil_rec_t *r, const char *path, const char *key,
                     const char *value) {
        avro_value_t v, e;
        int rc = set_leaf(r, path, &v);
        if (rc || (rc = want(r->pool, &v, AVRO_MAP)))
                return rc;
        if (!key || !value)
                return -VEIL_EINVAL;
        if (avro_value_add(&v, key, &e, NULL, NULL))
                return -VEIL_ENOMEM;
        if ((rc = want(r->pool, &e, AVRO_STRING)))
                return rc;
        return avro_value_set_string(&e, value) ? -VEIL_ENOMEM : 0;
}

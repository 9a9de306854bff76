/*
 * codec_int.h — what codec.c and rec.c share and nothing else sees: the
 * veil_rec handle (an Avro value) and the pool that owns handles to the
 * elements of a record, so a plugin never frees one.
 */
#ifndef VEIL_CODEC_INT_H
#define VEIL_CODEC_INT_H

#include <avro.h>
#include <stdint.h>

#include "codec.h"
#include "veil/veil.h"

struct veil_rec_pool;
struct veil_flat_inst;

#define VEIL_REC_PATH_MAX 128

/* A root handle is its value. A handle to an element (array item or map
 * value) is re-found from its parent: Avro-C keeps elements in storage that
 * moves when the container grows, so a raw avro_value_t would dangle after
 * the next append. Re-finding it on every use is what made building a
 * record slow, so the value found is kept while the pool's epoch says no
 * storage can have moved since. */
struct veil_rec {
        avro_value_t v; /* the root; for an element, the cached value */
        struct veil_rec_pool *pool;
        const struct veil_rec *parent; /* NULL for a root */
        size_t index;                  /* element index in the container */
        unsigned long epoch;           /* of the pool when v was cached */
        int cached;                    /* v holds the element (not root) */
        /* Not NULL: a record of an output's flat representation (recflat.c);
         * v, parent and path are then unused. */
        struct veil_flat_inst *flat;
        char path[VEIL_REC_PATH_MAX];  /* container path from the parent */
};

/* Paths resolved once to field indices, so a setter called with the same
 * path on every record skips the dotted-name parsing and Avro-C's lookup by
 * name. An entry holds the record class met at each step and is used only
 * while the values walked have those classes. Avro-C's generic classes are
 * one per schema, so comparing the class pointer compares the schema
 * without a call through it. */
#define VEIL_REC_PATH_CACHE 128 /* entries, a power of two; 2-way */
#define VEIL_REC_PATH_SEGS 4   /* deeper paths are not cached */
#define VEIL_REC_PATH_KEY 48   /* nor longer ones */
struct veil_rec_path {
        avro_value_iface_t *start; /* class walked from; NULL: empty */
        avro_value_iface_t *rec[VEIL_REC_PATH_SEGS];
        int idx[VEIL_REC_PATH_SEGS];
        size_t n;   /* segments */
        size_t len; /* of path */
        char path[VEIL_REC_PATH_KEY];
};

/* ---- flat output records (recflat.c) -------------------------------
 *
 * An output record whose schema is records, arrays of records and scalars
 * (null, boolean, int, long, float, double, string, enum, unions of those)
 * with scalar or empty defaults is built in slots of its own rather than
 * in Avro-C values, and encoded straight from them: setting a field is a
 * copy into a slot, an array element is slots taken from an arena, and
 * nothing is freed or allocated per record in steady state. Every
 * veil_rec_* function gives the same results and codes on either
 * representation (rec.c dispatches on veil_rec.flat; tests/unit/
 * test_rec_flat.c compares them), but that a string without default the
 * record never set is refused when encoded, as veil_codec_rec_encode
 * promises, also in a fresh record or element, where Avro-C writes "" for
 * a string never set in a fresh value. codec.c compiles the plan from
 * the schema and its defaults, and keeps Avro-C values for every other
 * schema. */
enum veil_flat_kind {
        VF_NULL, VF_BOOL, VF_INT, VF_LONG, VF_FLOAT, VF_DOUBLE, VF_STRING,
        VF_ENUM, VF_UNION, VF_ARRAY, VF_RECORD
};

#define VEIL_FLAT_BRANCHES 8

/* A value: a field's, or a union branch's. */
struct veil_flat_slot {
        int32_t branch; /* VF_UNION: the branch chosen, -1 none */
        uint32_t set;   /* VF_STRING (also as a branch): set at all */
        union {
                int64_t l;  /* bool, int, long, enum (symbol index) */
                float f;
                double d;
                struct {
                        const char *p;
                        size_t n;
                } s;
                struct veil_flat_inst *rec;
                struct veil_flat_list *arr;
        } v;
};

struct veil_flat_type;

struct veil_flat_field {
        const char *name;
        enum veil_flat_kind kind;
        avro_schema_t schema; /* the field's (enum symbols) */
        size_t nb;            /* VF_UNION: branches */
        enum veil_flat_kind bk[VEIL_FLAT_BRANCHES];
        avro_schema_t bs[VEIL_FLAT_BRANCHES];
        struct veil_flat_type *rec; /* VF_RECORD; VF_ARRAY: its items */
};

#define VEIL_FLAT_PATH_CACHE 64 /* one-field paths by address */
#define VEIL_FLAT_RO_RANGES 4    /* read-only segments remembered */
struct veil_flat_type {
        avro_schema_t schema;
        size_t n;
        struct veil_flat_field *f;
        struct veil_flat_slot *init; /* n slots: the defaults */
        struct {
                const char *path;
                uint32_t field;
                uint32_t len; /* of the path */
                /* The path lies in a read-only segment of a loaded object
                 * (a string literal): its text cannot have changed, so
                 * the address alone finds the field (recflat.c). */
                int ro;
        } by_addr[VEIL_FLAT_PATH_CACHE];
        /* Read-only segments found so far, and how many times the loaded
         * objects were searched in vain (a path in a buffer). */
        struct {
                uintptr_t lo, hi;
        } ro[VEIL_FLAT_RO_RANGES];
        size_t n_ro;
        unsigned ro_misses;
        struct veil_flat_type *next; /* the plan's list, for freeing */
};

struct veil_flat_inst {
        struct veil_flat_type *t;
        struct veil_flat_slot s[];
};

struct veil_flat_list {
        size_t n, cap;
        struct veil_flat_inst **e;
};

/* Memory of the records under construction: chunks kept across records. */
struct veil_flat_arena {
        struct veil_flat_chunk *head, *cur;
};

struct veil_buf;

/** A fresh root record of type t (defaults), after a reset of the arena;
 *  NULL on ENOMEM. */
struct veil_flat_inst *veil_flat_begin(struct veil_flat_arena *a,
                                       struct veil_flat_type *t);
void veil_flat_arena_free(struct veil_flat_arena *a);
/* veil_utf8_valid (veil.h): what an Avro string must be, on the way in
 * and on the way out. */

/* What the encoders return, besides 0 and -VEIL_E*, for a string of a
 * record that is not UTF-8 (1: a field not set, without a default). */
#define VEIL_ENC_NOT_UTF8 2
/* ... and for a value nested deeper than VEIL_ENC_MAX_DEPTH. */
#define VEIL_ENC_TOO_DEEP 3
#define VEIL_ENC_MAX_DEPTH 64

/** The record's Avro binary appended to b: 0, 1 when a string or union
 *  without default was never set (then *path names the first such field),
 *  VEIL_ENC_NOT_UTF8 for a string that is not UTF-8, VEIL_ENC_TOO_DEEP,
 *  -VEIL_EINVAL or -VEIL_ENOMEM. */
int veil_flat_encode(const struct veil_flat_inst *r, struct veil_buf *b,
                     char *path, size_t path_size);

int veil_flat_get_str(const struct veil_rec *r, const char *path,
                      const char **s, size_t *len);
int veil_flat_get_long(const struct veil_rec *r, const char *path,
                       int64_t *v);
int veil_flat_get_double(const struct veil_rec *r, const char *path,
                         double *v);
int veil_flat_get_bool(const struct veil_rec *r, const char *path, int *v);
size_t veil_flat_array_size(const struct veil_rec *r, const char *path);
const struct veil_rec *veil_flat_array_at(const struct veil_rec *r,
                                          const char *path, size_t i);
/** What the functions of kinds no flat record holds (maps, bytes) return
 *  on one: the path's error, else -VEIL_EINVAL; get: the path found as
 *  getters find it (a union unset or null is absent), else as setters. */
int veil_flat_absent_kind(const struct veil_rec *r, const char *path,
                          int get);
int veil_flat_set_str(struct veil_rec *r, const char *path, const char *s);
int veil_flat_set_long(struct veil_rec *r, const char *path, int64_t v);
int veil_flat_set_double(struct veil_rec *r, const char *path, double v);
int veil_flat_set_bool(struct veil_rec *r, const char *path, int v);
int veil_flat_set_null(struct veil_rec *r, const char *path);
struct veil_rec *veil_flat_append(struct veil_rec *r, const char *path);

/* Handles are carved from fixed chunks so a handle stays where it is while
 * the pool grows; reset recycles them all at once. */
#define VEIL_REC_POOL_CHUNK 32
struct veil_rec_pool_chunk {
        struct veil_rec_pool_chunk *next;
        size_t used;
        struct veil_rec h[VEIL_REC_POOL_CHUNK];
};
struct veil_rec_pool {
        struct veil_rec_pool_chunk *head, *cur;
        /* The slots and strings of a flat record and its elements. */
        struct veil_flat_arena flat;
        /* Gives a record element appended by a plugin its schema defaults
         * (rec.c cannot see the schema text, codec.c can). */
        int (*fill_defaults)(void *ctx, avro_value_t *v);
        void *ctx;
        /* Bumped by whatever may move or free element storage (append,
         * map add, a union switching branch, reset): cached element values
         * of an older epoch are found again. */
        unsigned long epoch;
        /* Unions of the output record that kept the previous record's
         * branch through its reset: Avro-C's reset keeps a union's branch
         * (the value in it zeroed) and has no way back to none. Until this
         * record selects one, it reads and encodes as never set, so nothing
         * the previous record (another person's) chose is taken for this
         * one's. veil_codec_rec_begin lists them; in pre-order, so the
         * unions in an entry's record branch follow it, up to `end`. */
        struct veil_rec_stale {
                const avro_value_iface_t *iface; /* NULL: dropped */
                const void *self;
                size_t end;
                int live; /* not selected yet in this record */
        } *stale;
        size_t n_stale, cap_stale;
        size_t n_live; /* entries live: 0 skips every look-up */
        /* Unions the setter being run switched (rec.c), with the branch
         * each had (-1: none, or one kept stale), so that a setter that
         * fails switches them back: it leaves the record as it was. */
        struct veil_rec_undo {
                avro_value_t u;
                int prev;
        } undo[8];
        size_t n_undo;
        struct veil_rec_path paths[VEIL_REC_PATH_CACHE];
        /* Plugins pass the same string literal on every call: found by
         * its address, a path costs one strcmp instead of strlen and a
         * hash. The entry is still checked, since a buffer at that address
         * may hold another path by now. */
        struct veil_rec_path_ref {
                const char *path;
                const struct veil_rec_path *e;
        } by_addr[VEIL_REC_PATH_CACHE];
};

/** A handle for element `index` of the container at `path` under
 *  `parent`, valid until the pool is reset; NULL on ENOMEM or a path longer
 *  than VEIL_REC_PATH_MAX. */
struct veil_rec *veil_rec_pool_get(struct veil_rec_pool *p,
                                   const struct veil_rec *parent,
                                   const char *path, size_t index);
/** The same without a path, for a flat record's element (recflat.c: its
 *  handles never walk from the parent). NULL on ENOMEM. */
struct veil_rec *veil_rec_pool_take(struct veil_rec_pool *p,
                                    const struct veil_rec *parent,
                                    size_t index);
void veil_rec_pool_reset(struct veil_rec_pool *p);
void veil_rec_pool_free(struct veil_rec_pool *p);

/** Whether union u kept the previous record's branch and this record has
 *  not selected it: it is then never set, whatever its discriminant. */
static inline int veil_rec_stale(const struct veil_rec_pool *p,
                                 const avro_value_t *u) {
        if (!p->n_live)
                return 0;
        for (size_t i = 0; i < p->n_stale; i++)
                if (p->stale[i].self == u->self &&
                    p->stale[i].iface == u->iface)
                        return p->stale[i].live;
        return 0;
}

/* Avro binary writers shared by codec.c and recflat.c. The scalars are
 * written in place, room for the longest made first: a memcpy call per
 * number was a good part of encoding a record. */
static inline int veil_avro_put_long(struct veil_buf *b, int64_t v) {
        if (b->cap - b->len < 10 && veil_buf_reserve(b, b->len + 10))
                return -VEIL_ENOMEM;
        uint64_t z = ((uint64_t)v << 1) ^ (v < 0 ? ~(uint64_t)0 : 0);
        unsigned char *o = b->data + b->len;
        while (z > 0x7f) {
                *o++ = (unsigned char)(0x80 | (z & 0x7f));
                z >>= 7;
        }
        *o++ = (unsigned char)z;
        b->len = (size_t)(o - b->data);
        return 0;
}

/* The n low bytes of v, little-endian (float and double bits). */
static inline int veil_avro_put_le(struct veil_buf *b, uint64_t v, size_t n) {
        if (b->cap - b->len < 8 && veil_buf_reserve(b, b->len + 8))
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < n; i++)
                b->data[b->len + i] = (unsigned char)(v >> (8 * i));
        b->len += n;
        return 0;
}

#endif

/*
 * codec_int.h — what codec.c and rec.c share and nothing else sees: the
 * veil_rec handle (an Avro value) and the pool that owns handles to the
 * elements of a record, so a plugin never frees one.
 */
#ifndef VEIL_CODEC_INT_H
#define VEIL_CODEC_INT_H

#include <avro.h>

struct veil_rec_pool;

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
        /* Gives a record element appended by a plugin its schema defaults
         * (rec.c cannot see the schema text, codec.c can). */
        int (*fill_defaults)(void *ctx, avro_value_t *v);
        void *ctx;
        /* Bumped by whatever may move or free element storage (append,
         * map add, a union switching branch, reset): cached element values
         * of an older epoch are found again. */
        unsigned long epoch;
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
void veil_rec_pool_reset(struct veil_rec_pool *p);
void veil_rec_pool_free(struct veil_rec_pool *p);

#endif

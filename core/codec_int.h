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
 * value) is re-found from its parent on every use: Avro-C keeps elements
 * in storage that moves when the container grows, so a raw avro_value_t
 * would dangle after the next append. */
struct veil_rec {
        avro_value_t v; /* root only */
        struct veil_rec_pool *pool;
        const struct veil_rec *parent; /* NULL for a root */
        size_t index;                  /* element index in the container */
        char path[VEIL_REC_PATH_MAX];  /* container path from the parent */
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

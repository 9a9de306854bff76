/*
 * arena.h — a bump allocator that is reset, not freed, per batch, so the
 * per-event hot path never calls malloc once the arena has grown to the
 * working size.
 */
#ifndef VEIL_ARENA_H
#define VEIL_ARENA_H

#include <stddef.h>

struct veil_arena_chunk;
struct veil_arena {
        struct veil_arena_chunk *head; /**< chunk being filled */
        struct veil_arena_chunk *full; /**< chunks filled in this batch */
        size_t chunk_size;
        size_t used_total; /**< bytes handed out since the last reset */
        size_t cap;        /**< 0: unbounded; else refuse beyond this */
};

void veil_arena_init(struct veil_arena *a, size_t chunk_size, size_t cap);
/** 64-byte aligned, zeroed memory; NULL when the cap is reached. */
void *veil_arena_alloc(struct veil_arena *a, size_t size);
char *veil_arena_strndup(struct veil_arena *a, const char *s, size_t n);
/** Keeps the largest chunk, frees the rest: steady state allocates nothing. */
void veil_arena_reset(struct veil_arena *a);
void veil_arena_free(struct veil_arena *a);

#endif

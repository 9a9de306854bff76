#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer the memory not handed out is poisoned: a stage
 * that keeps a pointer from veil_batch_alloc past its batch, or writes
 * past what it asked for, is reported where it does it, instead of
 * reading the next batch's events. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct veil_arena_chunk {
        struct veil_arena_chunk *next;
        size_t size, used;
        _Alignas(64) unsigned char data[];
};

static struct veil_arena_chunk *chunk_new(size_t size) {
        struct veil_arena_chunk *c;
        if (posix_memalign((void **)&c, 64, sizeof(*c) + size))
                return NULL;
        c->next = NULL;
        c->size = size;
        c->used = 0;
        POISON(c->data, size);
        return c;
}

void veil_arena_init(struct veil_arena *a, size_t chunk_size, size_t cap) {
        memset(a, 0, sizeof(*a));
        a->chunk_size = chunk_size ? chunk_size : 1 << 20;
        a->cap = cap;
}

void *veil_arena_alloc(struct veil_arena *a, size_t size) {
        /* A size near SIZE_MAX (a plugin's own n * d * sizeof overflow)
         * wrapped `need` to 0, and the memset below ran past the chunk;
         * above SIZE_MAX / 2 the doubling wrapped to 0 and never ended. */
        if (size > SIZE_MAX - 63)
                return NULL;
        size_t need = (size + 63) & ~(size_t)63;
        if (a->cap && a->used_total + need > a->cap)
                return NULL;
        if (!a->head || a->head->size - a->head->used < need) {
                size_t sz = a->chunk_size;
                while (sz < need) {
                        if (sz > SIZE_MAX / 2)
                                return NULL;
                        sz *= 2;
                }
                struct veil_arena_chunk *c = chunk_new(sz);
                if (!c)
                        return NULL;
                if (a->head) {
                        a->head->next = a->full;
                        a->full = a->head;
                }
                a->head = c;
        }
        void *p = a->head->data + a->head->used;
        a->head->used += need;
        a->used_total += need;
        UNPOISON(p, size);
        memset(p, 0, size);
        return p;
}

char *veil_arena_strndup(struct veil_arena *a, const char *s, size_t n) {
        char *d = veil_arena_alloc(a, n + 1);
        if (!d)
                return NULL;
        memcpy(d, s, n);
        d[n] = '\0';
        return d;
}

void veil_arena_reset(struct veil_arena *a) {
        /* Keep one chunk as large as this batch needed, so the next batch of
         * the same size fits without allocating. */
        size_t total = a->used_total;
        struct veil_arena_chunk *c = a->full;
        while (c) {
                struct veil_arena_chunk *n = c->next;
                free(c);
                c = n;
        }
        a->full = NULL;
        if (a->head && a->head->size < total) {
                size_t sz = a->head->size;
                while (sz < total)
                        sz *= 2;
                free(a->head);
                a->head = chunk_new(sz);
        }
        if (a->head) {
                POISON(a->head->data, a->head->used);
                a->head->used = 0;
        }
        a->used_total = 0;
}

void veil_arena_free(struct veil_arena *a) {
        veil_arena_reset(a);
        free(a->head);
        a->head = NULL;
}

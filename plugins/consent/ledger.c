/*
 * ledger.c — the consent ledger's table (see ledger.h for the layout and
 * why the raw id is not kept).
 */
#include "ledger.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <veil/veil.h>

#define MIN_CAP 16
/* Tables from this size on are mapped and asked for transparent huge
 * pages: a lookup is one random access into hundreds of MB, and with 4 kB
 * pages its TLB miss costs more than the cache miss. */
#define BIG ((size_t)4 << 20)

static struct veil_ledger_entry *alloc_slots(size_t cap) {
        size_t bytes = cap * sizeof(struct veil_ledger_entry);
        if (bytes < BIG)
                return calloc(cap, sizeof(struct veil_ledger_entry));
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, bytes, MADV_HUGEPAGE); /* advice: failure is harmless */
#endif
        return p;
}

static void free_slots(struct veil_ledger_entry *s, size_t cap) {
        size_t bytes = cap * sizeof(struct veil_ledger_entry);
        if (!s)
                return;
        if (bytes < BIG)
                free(s);
        else
                munmap(s, bytes);
}

static int empty(const struct veil_ledger_entry *e) {
        return (e->key.k0 | e->key.k1) == 0;
}

static int same(const struct veil_ledger_key *a,
                const struct veil_ledger_key *b) {
        return a->k0 == b->k0 && a->k1 == b->k1;
}

/* Multiply-shift instead of a mask: any capacity works, so growth can be
 * 1.5x and memory per person stays bounded. */
static size_t home(const struct veil_ledger_key *k, size_t cap) {
        return (size_t)(((unsigned __int128)k->k0 * cap) >> 64);
}

static size_t dist(size_t i, size_t h, size_t cap) {
        return i >= h ? i - h : i + cap - h;
}

int veil_ledger_init(struct veil_ledger *l, size_t expected) {
        memset(l, 0, sizeof(*l));
        size_t cap = expected / 3 * 4 + MIN_CAP;
        l->slots = alloc_slots(cap);
        if (!l->slots)
                return -VEIL_ENOMEM;
        l->cap = cap;
        randombytes_buf(l->hkey, sizeof(l->hkey));
        return 0;
}

void veil_ledger_free(struct veil_ledger *l) {
        free_slots(l->slots, l->cap);
        sodium_memzero(l, sizeof(*l));
}

void veil_ledger_key(const struct veil_ledger *l, const void *id, size_t len,
                     struct veil_ledger_key *k) {
        unsigned char h[crypto_shorthash_siphashx24_BYTES];
        crypto_shorthash_siphashx24(h, id, len, l->hkey);
        memcpy(&k->k0, h, 8);
        memcpy(&k->k1, h + 8, 8);
        if ((k->k0 | k->k1) == 0)
                k->k1 = 1; /* 2^-128: keep "empty" unambiguous */
}

void veil_ledger_prefetch(const struct veil_ledger *l,
                          const struct veil_ledger_key *k) {
        __builtin_prefetch(&l->slots[home(k, l->cap)]);
}

/* Position of the key, or cap when absent. Robin Hood order lets a miss
 * stop as soon as it meets an entry closer to its home than we are. */
static size_t locate(const struct veil_ledger *l,
                     const struct veil_ledger_key *k) {
        size_t cap = l->cap, i = home(k, cap), d = 0;
        for (;;) {
                const struct veil_ledger_entry *e = &l->slots[i];
                if (empty(e))
                        return cap;
                if (same(&e->key, k))
                        return i;
                if (dist(i, home(&e->key, cap), cap) < d)
                        return cap;
                if (++i == cap)
                        i = 0;
                d++;
        }
}

struct veil_ledger_entry *veil_ledger_find(const struct veil_ledger *l,
                                           const struct veil_ledger_key *k) {
        size_t i = locate(l, k);
        return i == l->cap ? NULL : &l->slots[i];
}

/* Places e (known absent) and returns where e itself landed. */
static size_t place(struct veil_ledger_entry *slots, size_t cap,
                    struct veil_ledger_entry e) {
        size_t i = home(&e.key, cap), d = 0, at = cap;
        for (;;) {
                struct veil_ledger_entry *s = &slots[i];
                if (empty(s)) {
                        *s = e;
                        return at == cap ? i : at;
                }
                size_t sd = dist(i, home(&s->key, cap), cap);
                if (sd < d) {
                        /* Take from the rich: e settles here and the
                         * displaced entry continues the probe. */
                        struct veil_ledger_entry t = *s;
                        *s = e;
                        e = t;
                        if (at == cap)
                                at = i;
                        d = sd;
                }
                if (++i == cap)
                        i = 0;
                d++;
        }
}

static int grow(struct veil_ledger *l) {
        size_t cap = l->cap + l->cap / 2;
        struct veil_ledger_entry *s = alloc_slots(cap);
        if (!s)
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < l->cap; i++)
                if (!empty(&l->slots[i]))
                        place(s, cap, l->slots[i]);
        free_slots(l->slots, l->cap);
        l->slots = s;
        l->cap = cap;
        return 0;
}

struct veil_ledger_entry *veil_ledger_insert(struct veil_ledger *l,
                                             const struct veil_ledger_key *k,
                                             int *created) {
        size_t i = locate(l, k);
        *created = 0;
        if (i != l->cap)
                return &l->slots[i];
        if ((l->n + 1) * 4 > l->cap * 3 && grow(l))
                return NULL;
        struct veil_ledger_entry e;
        memset(&e, 0, sizeof(e));
        e.key = *k;
        i = place(l->slots, l->cap, e);
        l->n++;
        *created = 1;
        return &l->slots[i];
}

int veil_ledger_remove(struct veil_ledger *l, const struct veil_ledger_key *k) {
        size_t cap = l->cap, i = locate(l, k);
        if (i == cap)
                return 0;
        /* Backward shift: pull the rest of the cluster one slot towards
         * home, so no tombstone is left for probes to step over. */
        for (;;) {
                size_t j = i + 1 == cap ? 0 : i + 1;
                struct veil_ledger_entry *n = &l->slots[j];
                if (empty(n) || home(&n->key, cap) == j)
                        break;
                l->slots[i] = *n;
                i = j;
        }
        memset(&l->slots[i], 0, sizeof(l->slots[i]));
        l->n--;
        return 1;
}

size_t veil_ledger_count(const struct veil_ledger *l) { return l->n; }

size_t veil_ledger_bytes(const struct veil_ledger *l) {
        return l->cap * sizeof(*l->slots);
}

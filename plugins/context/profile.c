#include "profile.h"

#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

#define NIL UINT32_MAX

struct entry {
        char *key; /* NULL: free slot */
        uint64_t hash;
        int64_t used_ms;
        uint32_t prev, next; /* LRU list: prev is more recent */
        struct veil_profile p;
};

struct veil_profiles {
        size_t max, cap, n;
        uint32_t L;
        int64_t ttl_ms;
        struct entry *e;
        int32_t *items;
        int64_t *item_ts;
        uint32_t *tab; /* open addressing: slot + 1, 0 = empty */
        size_t tab_cap;
        uint32_t head, tail, free_list; /* free slots chain through next */
};

static uint64_t hash_key(const char *s) {
        uint64_t h = 14695981039346656037ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h ? h : 1;
}

int veil_profiles_new(struct veil_profiles **out, size_t max_users,
                      uint32_t items_per_user, int64_t ttl_ms) {
        if (!max_users || !items_per_user || max_users >= NIL)
                return -VEIL_EINVAL;
        struct veil_profiles *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->max = max_users;
        s->L = items_per_user;
        s->ttl_ms = ttl_ms;
        s->head = s->tail = s->free_list = NIL;
        *out = s;
        return 0;
}

void veil_profiles_free(struct veil_profiles *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->cap; i++)
                free(s->e[i].key);
        free(s->e);
        free(s->items);
        free(s->item_ts);
        free(s->tab);
        free(s);
}

size_t veil_profiles_count(const struct veil_profiles *s) { return s->n; }

uint32_t veil_profiles_items_per_user(const struct veil_profiles *s) {
        return s->L;
}

static void fix_pointers(struct veil_profiles *s, uint32_t i) {
        s->e[i].p.items = s->items + (size_t)i * s->L;
        s->e[i].p.item_ts = s->item_ts + (size_t)i * s->L;
}

static void tab_insert(struct veil_profiles *s, uint32_t i) {
        size_t mask = s->tab_cap - 1, j = s->e[i].hash & mask;
        while (s->tab[j])
                j = (j + 1) & mask;
        s->tab[j] = i + 1;
}

/* Grows the slots (doubling, up to max) and the table (twice the slots). */
static int grow(struct veil_profiles *s) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        if (cap > s->max)
                cap = s->max;
        struct entry *e = realloc(s->e, cap * sizeof(*e));
        if (!e)
                return -VEIL_ENOMEM;
        s->e = e;
        int32_t *it = realloc(s->items, cap * s->L * sizeof(int32_t));
        if (!it)
                return -VEIL_ENOMEM;
        s->items = it;
        int64_t *ts = realloc(s->item_ts, cap * s->L * sizeof(int64_t));
        if (!ts)
                return -VEIL_ENOMEM;
        s->item_ts = ts;
        size_t tcap = 16;
        while (tcap < 2 * cap)
                tcap *= 2;
        uint32_t *tab = calloc(tcap, sizeof(uint32_t));
        if (!tab)
                return -VEIL_ENOMEM;
        for (size_t i = s->cap; i < cap; i++) {
                memset(&s->e[i], 0, sizeof(s->e[i]));
                s->e[i].next = s->free_list;
                s->free_list = (uint32_t)i;
        }
        free(s->tab);
        s->tab = tab;
        s->tab_cap = tcap;
        s->cap = cap;
        for (size_t i = 0; i < cap; i++) {
                fix_pointers(s, (uint32_t)i);
                if (s->e[i].key)
                        tab_insert(s, (uint32_t)i);
        }
        return 0;
}

static uint32_t find(const struct veil_profiles *s, const char *key,
                     uint64_t h, size_t *pos) {
        if (!s->tab_cap)
                return NIL;
        size_t mask = s->tab_cap - 1, j = h & mask;
        while (s->tab[j]) {
                uint32_t i = s->tab[j] - 1;
                if (s->e[i].hash == h && !strcmp(s->e[i].key, key)) {
                        if (pos)
                                *pos = j;
                        return i;
                }
                j = (j + 1) & mask;
        }
        return NIL;
}

static void lru_unlink(struct veil_profiles *s, uint32_t i) {
        struct entry *x = &s->e[i];
        if (x->prev != NIL)
                s->e[x->prev].next = x->next;
        else
                s->head = x->next;
        if (x->next != NIL)
                s->e[x->next].prev = x->prev;
        else
                s->tail = x->prev;
        x->prev = x->next = NIL;
}

static void lru_front(struct veil_profiles *s, uint32_t i) {
        struct entry *x = &s->e[i];
        x->prev = NIL;
        x->next = s->head;
        if (s->head != NIL)
                s->e[s->head].prev = i;
        s->head = i;
        if (s->tail == NIL)
                s->tail = i;
}

/* Backward-shift deletion keeps linear probing correct without
 * tombstones. */
static void tab_delete(struct veil_profiles *s, size_t j) {
        size_t mask = s->tab_cap - 1;
        s->tab[j] = 0;
        size_t k = (j + 1) & mask;
        while (s->tab[k]) {
                uint32_t i = s->tab[k] - 1;
                size_t home = s->e[i].hash & mask;
                /* Move it back into the hole when its home is not in the
                 * cyclic range (j, k]. */
                int in_range = j < k ? (home > j && home <= k)
                                     : (home > j || home <= k);
                if (!in_range) {
                        s->tab[j] = s->tab[k];
                        s->tab[k] = 0;
                        j = k;
                }
                k = (k + 1) & mask;
        }
}

static void delete_slot(struct veil_profiles *s, uint32_t i) {
        size_t pos = 0;
        if (find(s, s->e[i].key, s->e[i].hash, &pos) == i)
                tab_delete(s, pos);
        lru_unlink(s, i);
        /* What was held about the person goes with the slot. */
        memset(s->items + (size_t)i * s->L, 0, s->L * sizeof(int32_t));
        memset(s->item_ts + (size_t)i * s->L, 0, s->L * sizeof(int64_t));
        free(s->e[i].key);
        memset(&s->e[i], 0, sizeof(s->e[i]));
        fix_pointers(s, i);
        s->e[i].prev = NIL;
        s->e[i].next = s->free_list;
        s->free_list = i;
        s->n--;
}

static int expired(const struct veil_profiles *s, uint32_t i, int64_t now) {
        return s->ttl_ms > 0 && now - s->e[i].used_ms > s->ttl_ms;
}

struct veil_profile *veil_profiles_get(struct veil_profiles *s,
                                       const char *key, int64_t now_ms) {
        uint32_t i = find(s, key, hash_key(key), NULL);
        if (i == NIL)
                return NULL;
        if (expired(s, i, now_ms)) {
                delete_slot(s, i);
                return NULL;
        }
        return &s->e[i].p;
}

struct veil_profile *veil_profiles_touch(struct veil_profiles *s,
                                         const char *key, int64_t now_ms,
                                         int *created) {
        uint64_t h = hash_key(key);
        uint32_t i = find(s, key, h, NULL);
        *created = 0;
        if (i != NIL && expired(s, i, now_ms)) {
                delete_slot(s, i);
                i = NIL;
        }
        if (i == NIL) {
                if (s->free_list == NIL && s->cap < s->max && grow(s))
                        return NULL;
                if (s->free_list == NIL) /* full: replace the LRU one */
                        delete_slot(s, s->tail);
                char *k = strdup(key);
                if (!k)
                        return NULL;
                i = s->free_list;
                s->free_list = s->e[i].next;
                struct entry *x = &s->e[i];
                memset(x, 0, sizeof(*x));
                fix_pointers(s, i);
                x->key = k;
                x->hash = h;
                x->prev = x->next = NIL;
                tab_insert(s, i);
                lru_front(s, i);
                s->n++;
                *created = 1;
        } else if (s->head != i) {
                lru_unlink(s, i);
                lru_front(s, i);
        }
        s->e[i].used_ms = now_ms;
        return &s->e[i].p;
}

void veil_profiles_push(struct veil_profiles *s, struct veil_profile *p,
                        int32_t item, int64_t ts_ms) {
        uint32_t n = p->n_items < s->L ? p->n_items + 1 : s->L;
        memmove(p->items + 1, p->items, (n - 1) * sizeof(int32_t));
        memmove(p->item_ts + 1, p->item_ts, (n - 1) * sizeof(int64_t));
        p->items[0] = item;
        p->item_ts[0] = ts_ms;
        p->n_items = n;
}

int veil_profiles_erase(struct veil_profiles *s, const char *key) {
        if (!key)
                return 0;
        uint32_t i = find(s, key, hash_key(key), NULL);
        if (i == NIL)
                return 0;
        delete_slot(s, i);
        return 1;
}

size_t veil_profiles_expire(struct veil_profiles *s, int64_t now_ms) {
        size_t n = 0;
        /* The tail is the least recently used: stop at the first fresh
         * one. */
        while (s->tail != NIL && expired(s, s->tail, now_ms)) {
                delete_slot(s, s->tail);
                n++;
        }
        return n;
}

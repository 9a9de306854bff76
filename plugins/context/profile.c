#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
        uint32_t L, H;
        int64_t ttl_ms;
        struct entry *e;
        int32_t *items;
        int64_t *item_ts;
        int32_t *hist;         /* H per slot; NULL with H = 0 */
        uint32_t *hist_visits, *hist_visit;
        int64_t *hist_ts;
        uint32_t *tab; /* open addressing: slot + 1, 0 = empty */
        size_t tab_cap;
        uint32_t head, tail, free_list; /* free slots chain through next */
        uint64_t evicted; /* profiles replaced for room before their TTL */
};

static uint64_t hash_key(const char *s) {
        uint64_t h = 14695981039346656037ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h ? h : 1;
}

int veil_profiles_new(struct veil_profiles **out, size_t max_users,
                      uint32_t items_per_user, uint32_t history_per_user,
                      int64_t ttl_ms) {
        if (!max_users || !items_per_user || max_users >= NIL)
                return -VEIL_EINVAL;
        struct veil_profiles *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->max = max_users;
        s->L = items_per_user;
        s->H = history_per_user;
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
        free(s->hist);
        free(s->hist_visits);
        free(s->hist_visit);
        free(s->hist_ts);
        free(s->tab);
        free(s);
}

size_t veil_profiles_count(const struct veil_profiles *s) { return s->n; }

uint32_t veil_profiles_items_per_user(const struct veil_profiles *s) {
        return s->L;
}

uint64_t veil_profiles_evicted(const struct veil_profiles *s) {
        return s->evicted;
}

uint32_t veil_profiles_history_per_user(const struct veil_profiles *s) {
        return s->H;
}

static void fix_pointers(struct veil_profiles *s, uint32_t i) {
        s->e[i].p.items = s->items + (size_t)i * s->L;
        s->e[i].p.item_ts = s->item_ts + (size_t)i * s->L;
        if (s->H) {
                s->e[i].p.hist = s->hist + (size_t)i * s->H;
                s->e[i].p.hist_visits = s->hist_visits + (size_t)i * s->H;
                s->e[i].p.hist_visit = s->hist_visit + (size_t)i * s->H;
                s->e[i].p.hist_ts = s->hist_ts + (size_t)i * s->H;
        }
}

static void tab_insert(struct veil_profiles *s, uint32_t i) {
        size_t mask = s->tab_cap - 1, j = s->e[i].hash & mask;
        while (s->tab[j])
                j = (j + 1) & mask;
        s->tab[j] = i + 1;
}

/* s->field = realloc(s->field, n elements), rc set on failure (the old
 * block stays then). A macro, not a function taking void **, so that each
 * pointer is written through its own type. */
#define REGROW(field, n)                                                   \
        do {                                                               \
                void *q_ = realloc(s->field, (n) * sizeof(*s->field));      \
                if (q_)                                                    \
                        s->field = q_;                                     \
                else                                                       \
                        rc = -VEIL_ENOMEM;                                 \
        } while (0)

/* Grows the slots (doubling, up to max) and the table (twice the slots).
 * On failure the store stays as it was: every array that did move is
 * pointed at again (a profile must never point into a freed block). */
static int grow(struct veil_profiles *s) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        if (cap > s->max)
                cap = s->max;
        size_t tcap = 16;
        while (tcap < 2 * cap)
                tcap *= 2;
        uint32_t *tab = calloc(tcap, sizeof(uint32_t));
        int rc = tab ? 0 : -VEIL_ENOMEM;
        if (!rc)
                REGROW(e, cap);
        if (!rc)
                REGROW(items, cap * s->L);
        if (!rc)
                REGROW(item_ts, cap * s->L);
        if (!rc && s->H)
                REGROW(hist, cap * s->H);
        if (!rc && s->H)
                REGROW(hist_visits, cap * s->H);
        if (!rc && s->H)
                REGROW(hist_visit, cap * s->H);
        if (!rc && s->H)
                REGROW(hist_ts, cap * s->H);
        if (rc) {
                free(tab);
                for (size_t i = 0; i < s->cap; i++)
                        fix_pointers(s, (uint32_t)i);
                return rc;
        }
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
        if (s->H) {
                memset(s->hist + (size_t)i * s->H, 0,
                       s->H * sizeof(int32_t));
                memset(s->hist_visits + (size_t)i * s->H, 0,
                       s->H * sizeof(uint32_t));
                memset(s->hist_visit + (size_t)i * s->H, 0,
                       s->H * sizeof(uint32_t));
                memset(s->hist_ts + (size_t)i * s->H, 0,
                       s->H * sizeof(int64_t));
        }
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
                if (s->free_list == NIL) { /* full: replace the LRU one */
                        delete_slot(s, s->tail);
                        s->evicted++;
                }
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
        if (p->visit_items < UINT32_MAX)
                p->visit_items++;
}

void veil_profiles_new_visit(struct veil_profile *p) {
        p->visit_no++;
        p->visit_items = 0;
}

void veil_profiles_age(struct veil_profile *p, int64_t min_ts) {
        uint32_t n = 0;
        for (uint32_t j = 0; j < p->n_hist; j++)
                if (p->hist_ts[j] >= min_ts) {
                        p->hist[n] = p->hist[j];
                        p->hist_visits[n] = p->hist_visits[j];
                        p->hist_visit[n] = p->hist_visit[j];
                        p->hist_ts[n++] = p->hist_ts[j];
                }
        p->n_hist = n;
}

void veil_profiles_remember(struct veil_profiles *s, struct veil_profile *p,
                            int32_t item, int64_t ts_ms) {
        if (!s->H)
                return;
        uint32_t j, old = 0;
        for (j = 0; j < p->n_hist && p->hist[j] != item; j++)
                if (p->hist_visits[j] < p->hist_visits[old] ||
                    (p->hist_visits[j] == p->hist_visits[old] &&
                     p->hist_ts[j] < p->hist_ts[old]))
                        old = j;
        if (j < p->n_hist) {
                /* Seen before: one visit more, unless in this one. */
                if (p->hist_visit[j] != p->visit_no &&
                    p->hist_visits[j] < UINT32_MAX)
                        p->hist_visits[j]++;
                p->hist_visit[j] = p->visit_no;
                if (ts_ms > p->hist_ts[j])
                        p->hist_ts[j] = ts_ms;
                return;
        }
        /* New: a free slot, else the one in fewest visits, then the one
         * seen longest ago. Visits predict buying again better than
         * recency (on Online Retail's later visits 0.062 against 0.053);
         * a favourite no longer chosen leaves with veil_profiles_age, so
         * old ones do not hold their slots for ever. */
        j = p->n_hist < s->H ? p->n_hist++ : old;
        p->hist[j] = item;
        p->hist_visits[j] = 1;
        p->hist_visit[j] = p->visit_no;
        p->hist_ts[j] = ts_ms;
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

void veil_profiles_trim(struct veil_profiles *s, int64_t now_ms) {
        /* Every profile, not veil_profiles_expire's walk from the least
         * recently used: last uses are stamped with the batches' clock,
         * and after it stepped back the profiles used since carry earlier
         * stamps than older ones, so the walk stopped at a fresh profile
         * with expired ones behind it (for as long as the step), and they
         * were checkpointed and restored. */
        uint32_t i = s->head;
        while (i != NIL) {
                uint32_t next = s->e[i].next;
                if (expired(s, i, now_ms))
                        delete_slot(s, i);
                else if (s->H && s->ttl_ms > 0)
                        veil_profiles_age(&s->e[i].p, now_ms - s->ttl_ms);
                i = next;
        }
}

/* ---- checkpoint ---- */

/* "VPRF", u8 format, u32 count, then per profile (big-endian):
 * u16 key length, key, i64 last use, u64 session, i64 last event,
 * u32 position, u32 n_prev, n_prev x u32, [format 3: u32 their kinds,]
 * u32 n_items, n_items x (u16 id length, id, i64 time); format 2 adds u32
 * visit number, u32 items of the visit, u32 n_hist, n_hist x (u16 id
 * length, id, u32 visits, u32 last visit, i64 time). Formats 1 (no
 * history: its recent items all count as the current visit's) and 2 (the
 * previous features' kinds not known) are still read. */
#define PRF_FORMAT 3

struct wbuf {
        unsigned char *p;
        size_t n, cap;
        int oom;
};

static void wput(struct wbuf *w, const void *src, size_t n) {
        if (w->oom)
                return;
        if (w->n + n > w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 4096;
                while (cap < w->n + n)
                        cap *= 2;
                unsigned char *q = realloc(w->p, cap);
                if (!q) {
                        w->oom = 1;
                        return;
                }
                w->p = q;
                w->cap = cap;
        }
        memcpy(w->p + w->n, src, n);
        w->n += n;
}

static void wint(struct wbuf *w, uint64_t v, int bytes) {
        unsigned char b[8];
        for (int i = 0; i < bytes; i++)
                b[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
        wput(w, b, (size_t)bytes);
}

static void wid(struct wbuf *w, const char *id) {
        size_t il = id ? strlen(id) : 0;
        if (il > UINT16_MAX)
                il = UINT16_MAX;
        wint(w, il, 2);
        wput(w, id, il);
}

int veil_profiles_save(const struct veil_profiles *s,
                       const char *(*item_id)(void *ctx, int32_t item),
                       void *ctx, void **data, size_t *len) {
        struct wbuf w = {0};
        wput(&w, "VPRF", 4);
        wint(&w, PRF_FORMAT, 1);
        wint(&w, s->n, 4);
        for (uint32_t i = s->tail; i != NIL; i = s->e[i].prev) {
                const struct entry *x = &s->e[i];
                size_t kl = strlen(x->key);
                if (kl > UINT16_MAX)
                        kl = UINT16_MAX;
                wint(&w, kl, 2);
                wput(&w, x->key, kl);
                wint(&w, (uint64_t)x->used_ms, 8);
                wint(&w, x->p.session, 8);
                wint(&w, (uint64_t)x->p.last_ts, 8);
                wint(&w, x->p.position, 4);
                wint(&w, x->p.n_prev, 4);
                for (uint32_t k = 0; k < x->p.n_prev; k++)
                        wint(&w, x->p.prev_features[k], 4);
                wint(&w, x->p.prev_kinds, 4);
                wint(&w, x->p.n_items, 4);
                for (uint32_t k = 0; k < x->p.n_items; k++) {
                        wid(&w, item_id(ctx, x->p.items[k]));
                        wint(&w, (uint64_t)x->p.item_ts[k], 8);
                }
                wint(&w, x->p.visit_no, 4);
                wint(&w, x->p.visit_items, 4);
                wint(&w, x->p.n_hist, 4);
                for (uint32_t k = 0; k < x->p.n_hist; k++) {
                        wid(&w, item_id(ctx, x->p.hist[k]));
                        wint(&w, x->p.hist_visits[k], 4);
                        wint(&w, x->p.hist_visit[k], 4);
                        wint(&w, (uint64_t)x->p.hist_ts[k], 8);
                }
        }
        if (w.oom) {
                free(w.p);
                return -VEIL_ENOMEM;
        }
        *data = w.p;
        *len = w.n;
        return 0;
}

struct rbuf {
        const unsigned char *p;
        size_t n, off;
        int bad;
};

static uint64_t rd_int(struct rbuf *r, int bytes) {
        if (r->bad || r->n - r->off < (size_t)bytes) {
                r->bad = 1;
                return 0;
        }
        uint64_t v = 0;
        for (int i = 0; i < bytes; i++)
                v = (v << 8) | r->p[r->off + (size_t)i];
        r->off += (size_t)bytes;
        return v;
}

static const char *rbytes(struct rbuf *r, size_t n) {
        if (r->bad || r->n - r->off < n) {
                r->bad = 1;
                return NULL;
        }
        const char *q = (const char *)r->p + r->off;
        r->off += n;
        return q;
}

/* An item id as written by wid: NULL when the buffer ends first. */
static const char *rd_id(struct rbuf *r, size_t *len) {
        *len = (size_t)rd_int(r, 2);
        return rbytes(r, *len);
}

/* The catalog index of an id read by rd_id (id: room for any id). */
static int32_t resolve(const char *q, size_t len, char *id,
                       int32_t (*item_index)(void *ctx, const char *id),
                       void *ctx) {
        memcpy(id, q, len);
        id[len] = '\0';
        return item_index(ctx, id);
}

static int time_ok(int64_t t) {
        return t >= 0 && t <= VEIL_TS_MAX_MS;
}

/* One pass over the buffer: apply = 0 only validates. */
static int load_pass(struct veil_profiles *s, struct rbuf *r, int format,
                     int apply, int64_t now,
                     int32_t (*item_index)(void *ctx, const char *id),
                     void *ctx, char *key, char *id) {
        uint64_t count = rd_int(r, 4);
        for (uint64_t c = 0; c < count && !r->bad; c++) {
                size_t kl = (size_t)rd_int(r, 2);
                const char *k = rbytes(r, kl);
                int64_t used = (int64_t)rd_int(r, 8);
                uint64_t session = rd_int(r, 8);
                int64_t last = (int64_t)rd_int(r, 8);
                uint32_t pos = (uint32_t)rd_int(r, 4);
                uint32_t n_prev = (uint32_t)rd_int(r, 4);
                /* Times outside 1970..9999 are from no checkpoint of ours
                 * (events outside it are refused); later times subtract
                 * them. */
                if (n_prev > VEIL_CTX_MAX_FEATURES || !kl ||
                    !time_ok(used) || !time_ok(last))
                        r->bad = 1;
                if (r->bad)
                        break;
                uint32_t prev[VEIL_CTX_MAX_FEATURES];
                for (uint32_t j = 0; j < n_prev; j++)
                        prev[j] = (uint32_t)rd_int(r, 4);
                uint32_t kinds = format >= 3 ? (uint32_t)rd_int(r, 4) : 0;
                /* Known kinds are one per feature, of kinds there are. */
                if (kinds && ((uint32_t)__builtin_popcount(kinds) != n_prev ||
                              kinds >> VEIL_CTX_N_KINDS))
                        r->bad = 1;
                if (r->bad)
                        break;
                struct veil_profile *p = NULL;
                if (apply) {
                        memcpy(key, k, kl);
                        key[kl] = '\0';
                        int created;
                        /* Oldest first: the LRU order comes back too. A
                         * last use ahead of this host's clock (a host whose
                         * clock ran fast) counts as now: expiry walks from
                         * the least recently used and stops at the first
                         * fresh one, so one profile in the future would
                         * keep every other from expiring. */
                        p = veil_profiles_touch(s, key,
                                                used < now ? used : now,
                                                &created);
                        if (!p)
                                return -VEIL_ENOMEM;
                        p->session = session;
                        p->last_ts = last;
                        p->position = pos;
                        p->n_prev = n_prev;
                        p->prev_kinds = kinds;
                        memcpy(p->prev_features, prev,
                               n_prev * sizeof(uint32_t));
                        p->n_items = 0;
                        p->n_hist = 0;
                }
                uint32_t n_items = (uint32_t)rd_int(r, 4);
                for (uint32_t j = 0; j < n_items && !r->bad; j++) {
                        size_t il;
                        const char *q = rd_id(r, &il);
                        int64_t ts = (int64_t)rd_int(r, 8);
                        if (!time_ok(ts))
                                r->bad = 1;
                        if (r->bad || !apply || p->n_items >= s->L)
                                continue;
                        int32_t item = resolve(q, il, id, item_index, ctx);
                        if (item < 0)
                                continue;
                        p->items[p->n_items] = item;
                        p->item_ts[p->n_items] = ts;
                        p->n_items++;
                }
                if (format < 2) {
                        if (apply)
                                p->visit_items = p->n_items;
                        continue;
                }
                uint32_t vno = (uint32_t)rd_int(r, 4);
                uint32_t vitems = (uint32_t)rd_int(r, 4);
                if (apply && !r->bad) {
                        p->visit_no = vno;
                        p->visit_items = vitems;
                }
                uint32_t n_hist = (uint32_t)rd_int(r, 4);
                for (uint32_t j = 0; j < n_hist && !r->bad; j++) {
                        size_t il;
                        const char *q = rd_id(r, &il);
                        uint32_t visits = (uint32_t)rd_int(r, 4);
                        uint32_t last = (uint32_t)rd_int(r, 4);
                        int64_t ts = (int64_t)rd_int(r, 8);
                        if (!time_ok(ts))
                                r->bad = 1;
                        if (r->bad || !apply || !s->H)
                                continue;
                        /* A smaller history keeps the items seen last. */
                        uint32_t at = p->n_hist;
                        if (at == s->H) {
                                at = 0;
                                for (uint32_t k = 1; k < s->H; k++)
                                        if (p->hist_ts[k] < p->hist_ts[at])
                                                at = k;
                                if (p->hist_ts[at] >= ts)
                                        continue;
                        }
                        int32_t item = resolve(q, il, id, item_index, ctx);
                        if (item < 0)
                                continue;
                        p->hist[at] = item;
                        p->hist_visits[at] = visits ? visits : 1;
                        p->hist_visit[at] = last;
                        p->hist_ts[at] = ts;
                        if (at == p->n_hist)
                                p->n_hist++;
                }
        }
        if (!r->bad && r->off != r->n)
                r->bad = 1;
        return r->bad ? -VEIL_EINVAL : 0;
}

int veil_profiles_load(struct veil_profiles *s, const void *data, size_t len,
                       int64_t now_ms,
                       int32_t (*item_index)(void *ctx, const char *id),
                       void *ctx, char *errstr, size_t errstr_size) {
        struct rbuf r = {data, len, 0, 0};
        int format = len >= 5 ? ((const unsigned char *)data)[4] : 0;
        if (len < 5 || memcmp(data, "VPRF", 4) || format < 1 ||
            format > PRF_FORMAT) {
                snprintf(errstr, errstr_size,
                         "profiles: not a profile checkpoint of format 1 "
                         "to %d",
                         PRF_FORMAT);
                return -VEIL_EINVAL;
        }
        /* Room for the longest key and id the format can hold. */
        char *key = malloc(2 * (UINT16_MAX + 1));
        if (!key) {
                snprintf(errstr, errstr_size, "profiles: out of memory");
                return -VEIL_ENOMEM;
        }
        char *id = key + UINT16_MAX + 1;
        r.off = 5;
        if (load_pass(s, &r, format, 0, now_ms, item_index, ctx, key, id)) {
                free(key);
                snprintf(errstr, errstr_size,
                         "profiles: checkpoint truncated or malformed at "
                         "byte %zu of %zu",
                         r.off, len);
                return -VEIL_EINVAL;
        }
        r.off = 5;
        int rc = load_pass(s, &r, format, 1, now_ms, item_index, ctx, key, id);
        free(key);
        if (rc) {
                snprintf(errstr, errstr_size, "profiles: out of memory");
                return rc;
        }
        /* A checkpoint may be older than the TTL (an instance down for
         * days, or one that saved profiles already past it): what is past
         * it now is deleted rather than restored. */
        veil_profiles_trim(s, now_ms);
        return 0;
}

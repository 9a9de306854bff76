/*
 * profile.h — short-term profiles of personalized users, in bounded memory.
 *
 * A profile is keyed by the subject pseudonym and holds the user's last L
 * items with their times, the current session (a hash of its id, the last
 * event time, the position) and the feature ids of the previous event;
 * with a history of H > 0, also up to H distinct items of the user's
 * visits, each with the number of visits it was in, the last visit and the
 * (event) time it was last seen. When the history is full the item in
 * fewest visits (then the one seen longest ago) makes room, and an item
 * not seen for the TTL goes (veil_profiles_age). Visits are numbered, not timed, so events out of
 * time order do not move an item from one visit to another. The
 * store is bounded three ways: at most max_users profiles (the least
 * recently used one is replaced), a TTL after the last use (measured on the
 * wall clock of the batches: it is a retention period), and erase.
 *
 * Slots live in one array grown by doubling up to max_users and are reused,
 * so steady state allocates only the key copy of a new user. A pointer
 * returned here is valid until the next call that may create a profile.
 */
#ifndef VEIL_CONTEXT_PROFILE_H
#define VEIL_CONTEXT_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "context_info.h"

struct veil_profile {
        int32_t *items;    /**< catalog indices, newest first (L slots) */
        int64_t *item_ts;  /**< their event times (ms) */
        uint32_t n_items;
        uint64_t session;  /**< hash of the session id; 0 = none given */
        int64_t last_ts;   /**< event time of the last event (ms) */
        uint32_t position; /**< of the last event in its session */
        uint32_t prev_features[VEIL_CTX_MAX_FEATURES];
        uint32_t n_prev;   /**< 0: no previous event */
        /** The kinds of prev_features, a bit (1 << kind) each: features
         *  come in kind order, one per kind, so the set names each id's
         *  kind (for the access export). 0: not known (a checkpoint of
         *  format 2 or older). */
        uint32_t prev_kinds;
        uint32_t visit_no;    /**< the current visit's number (from 1) */
        uint32_t visit_items; /**< items pushed in the current visit */
        int32_t *hist;     /**< catalog indices of the history (H slots) */
        uint32_t *hist_visits; /**< visits each was in */
        uint32_t *hist_visit;  /**< the last one (a visit_no) */
        int64_t *hist_ts;  /**< event time each was last seen (ms) */
        uint32_t n_hist;
};

struct veil_profiles;

int veil_profiles_new(struct veil_profiles **out, size_t max_users,
                      uint32_t items_per_user, uint32_t history_per_user,
                      int64_t ttl_ms);
void veil_profiles_free(struct veil_profiles *s);

/** The profile of `key`, or NULL (none, or expired: then it is deleted). */
struct veil_profile *veil_profiles_get(struct veil_profiles *s,
                                       const char *key, int64_t now_ms);
/** The profile of `key`, created empty when absent (replacing the least
 *  recently used one when the store is full), marked used at now_ms. NULL
 *  only when out of memory. *created tells whether it is new. */
struct veil_profile *veil_profiles_touch(struct veil_profiles *s,
                                         const char *key, int64_t now_ms,
                                         int *created);
/** Puts an item in front (dropping the oldest past L); one more item of
 *  the current visit. */
void veil_profiles_push(struct veil_profiles *s, struct veil_profile *p,
                        int32_t item, int64_t ts_ms);
/** A new visit begins (numbered on from the last). */
void veil_profiles_new_visit(struct veil_profile *p);
/** Counts an item of the current visit in the history: one more visit
 *  unless it was already seen in this one. No-op with H = 0. */
void veil_profiles_remember(struct veil_profiles *s, struct veil_profile *p,
                            int32_t item, int64_t ts_ms);
/** Drops the history's items last seen before min_ts (event time). */
void veil_profiles_age(struct veil_profile *p, int64_t min_ts);
/** Deletes the profile of `key`; 1 when there was one. */
int veil_profiles_erase(struct veil_profiles *s, const char *key);
/** Deletes every profile unused for longer than the TTL. */
size_t veil_profiles_expire(struct veil_profiles *s, int64_t now_ms);
/** What is past the TTL at now_ms leaves, for what goes out of the process
 *  (a checkpoint) or comes back in (a restore): the expired profiles, all
 *  of them (a scan, where veil_profiles_expire assumes last uses in LRU
 *  order, which a clock stepped back breaks), and the history items of the
 *  others not seen since now_ms - TTL (the history is otherwise aged only
 *  on the person's next event). */
void veil_profiles_trim(struct veil_profiles *s, int64_t now_ms);
size_t veil_profiles_count(const struct veil_profiles *s);

/** Serializes every profile, least recently used first, with its last-use
 *  time (so the TTL still counts from it after a restore). Items are
 *  written by id (item_id(ctx, index)): catalog indices of items learnt at
 *  run time differ between runs. A malloc'd buffer. */
int veil_profiles_save(const struct veil_profiles *s,
                       const char *(*item_id)(void *ctx, int32_t item),
                       void *ctx, void **data, size_t *len);
/** Adds the profiles of a veil_profiles_save buffer (items resolved with
 *  item_index(ctx, id); a negative index drops the item). Validates the
 *  whole buffer before changing anything. now_ms is the clock: a last use
 *  after it counts as now, and the profiles past the TTL at now_ms are
 *  deleted after the load. */
int veil_profiles_load(struct veil_profiles *s, const void *data, size_t len,
                       int64_t now_ms,
                       int32_t (*item_index)(void *ctx, const char *id),
                       void *ctx, char *errstr, size_t errstr_size);
uint32_t veil_profiles_items_per_user(const struct veil_profiles *s);
uint32_t veil_profiles_history_per_user(const struct veil_profiles *s);
/** Profiles replaced for room (the store full) before their TTL, ever. */
uint64_t veil_profiles_evicted(const struct veil_profiles *s);

#endif

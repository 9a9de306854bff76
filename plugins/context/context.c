/*
 * context — context-aware feature extraction.
 *
 * For every event it derives sparse feature ids (featurize.h: hour and
 * weekday in the event's time zone, device class, country, coarse geohash,
 * position in the session and time since the previous event, event type,
 * the item and its catalog category and price band) and hangs their kinds
 * and words on the event for the model (context_info.h).
 *
 * Tiers: `personalized` users get a short-term profile under their subject
 * pseudonym (profile.h: the last L items with times, the session, the
 * previous event's features; bounded by a cap on users, LRU and a TTL,
 * deleted on erase), handed to the model as ev->recent_items. `contextual`
 * users get features of this event only and nothing is kept. `none`: no
 * personal processing, no features. Events no consent stage decided take
 * `default_tier`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <veil/veil.h>

#include "catalog.h"
#include "context_info.h"
#include "featurize.h"
#include "profile.h"
#include "tz.h"

static const struct veil_param_def params[] = {
        {"features", VEIL_PARAM_LIST,
         "[hour, weekday, device, country, geohash, session_position, "
         "since_previous, type, item, category, price_band]",
         0, "feature kinds to extract (see the README for each)"},
        {"hash_space", VEIL_PARAM_INT, "16384", 0,
         "feature ids are hashed into [0, hash_space) (dp_model's "
         "feature_space must match)"},
        {"catalog", VEIL_PARAM_STRING, NULL, 0,
         "item catalog CSV (id, category, price, description), relative to "
         "the pipeline file"},
        {"catalog_columns", VEIL_PARAM_MAP, NULL, 0,
         "column names of the catalog: {id: item, price: median_unit_price, "
         "category: …, description: …}"},
        {"max_new_items", VEIL_PARAM_INT, "10000", 0,
         "items seen in events but not in the catalog that are added"},
        {"price_bands", VEIL_PARAM_INT, "5", 0,
         "price bands (catalog price quantiles), 1..10"},
        {"geohash_precision", VEIL_PARAM_INT, "4", 0,
         "geohash characters kept as a feature (1..12; 4 ≈ 20 km)"},
        {"session_gap_s", VEIL_PARAM_INT, "1800", 0,
         "a gap longer than this (event time) starts a new session"},
        {"profile_items", VEIL_PARAM_INT, "10", 0,
         "items kept per personalized profile (L)"},
        {"history_items", VEIL_PARAM_INT, "0", 0,
         "distinct items of a personalized person's visits kept, with the "
         "number of visits each was in and when it was last seen, for "
         "dp_model's history_weight; an item not seen for profile_ttl_s "
         "(event time) goes, and when full the one in the fewest visits, "
         "then the one seen longest ago (0: "
         "none)"},
        {"max_profiles", VEIL_PARAM_INT, "100000", 0,
         "profiles kept; the least recently used one is replaced"},
        {"profile_ttl_s", VEIL_PARAM_INT, "604800", 0,
         "a profile unused this long (wall clock) is deleted"},
        {"default_tier", VEIL_PARAM_STRING, "contextual", 0,
         "tier of events no consent stage decided: none, contextual or "
         "personalized"},
        {"zoneinfo", VEIL_PARAM_STRING, "/usr/share/zoneinfo", 0,
         "directory of the IANA time zone files"},
        {NULL, 0, NULL, 0, NULL}};

struct state {
        veil_stage_t *st;
        struct veil_features_cfg fcfg;
        struct veil_catalog *cat;
        struct veil_profiles *prof;
        struct veil_tz_cache *tz;
        veil_tier_t default_tier;
        int64_t gap_ms;
        int64_t ttl_ms;    /* profile_ttl_s: also the history's reach */
        uint32_t L;
        int keyed; /* the pipeline has keys: profiles by subject only */
        /* The last batch's clock and when it was read (monotonic): the
         * profiles' TTL runs on between batches too (now_of). */
        int64_t clock_ms;
        struct timespec clock_at;
        uint64_t events, tz_unknown;
};

static uint64_t hash_str(const char *s) {
        uint64_t h = 14695981039346656037ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h ? h : 1;
}

static int parse_tier(const char *s, veil_tier_t *t) {
        if (!strcmp(s, "none"))
                *t = VEIL_TIER_NONE;
        else if (!strcmp(s, "contextual"))
                *t = VEIL_TIER_CONTEXTUAL;
        else if (!strcmp(s, "personalized"))
                *t = VEIL_TIER_PERSONALIZED;
        else
                return -VEIL_EINVAL;
        return 0;
}

static const char *attr(const struct veil_event *ev, const char *key) {
        for (size_t i = 0; i < ev->ctx.n_attrs; i++)
                if (ev->ctx.attrs[i].key && !strcmp(ev->ctx.attrs[i].key, key))
                        return ev->ctx.attrs[i].value;
        return NULL;
}

/* Contextual events keep nothing here, so their session features can only
 * come from the front end, which knows the visit. */
static void session_from_attrs(const struct veil_event *ev,
                               struct veil_session_info *si) {
        const char *pos = attr(ev, "session_position");
        const char *gap = attr(ev, "since_previous_s");
        char *end;
        if (pos) {
                long v = strtol(pos, &end, 10);
                if (!*end && v >= 1 && v < 1000000)
                        si->position = (uint32_t)v;
        }
        if (gap) {
                double v = strtod(gap, &end);
                if (!*end && v >= 0 && v < 1e12)
                        si->since_prev_ms = (int64_t)(v * 1000.0);
        }
}

/* Session continuation of a personalized profile, then the profile update
 * once the features are known. Only a gap forward in time ends a visit: an
 * event that arrives late (stamped before the visit's last one) belongs to
 * this visit or an earlier one, never to a new one, and starting one would
 * hand the visit in progress on as "earlier visits". */
static void session_of(const struct state *s, const struct veil_profile *p,
                       int created, const struct veil_event *ev, int64_t ts,
                       struct veil_session_info *si) {
        uint64_t sh = ev->ctx.session_id ? hash_str(ev->ctx.session_id) : 0;
        /* A late event of another session (an earlier visit's, buffered by
         * a mobile client) joins this visit too: a new visit for it would
         * hand this one on as history, and the next event of this session
         * would start yet another. */
        int fresh = created || p->position == 0 ||
                    (ts >= p->last_ts &&
                     ((sh && sh != p->session) || ts - p->last_ts > s->gap_ms));
        if (fresh) {
                si->position = 1;
                si->since_prev_ms = -1;
        } else {
                si->position = p->position + 1;
                si->since_prev_ms = ts > p->last_ts ? ts - p->last_ts : 0;
        }
}

/* The history's items of earlier visits (not seen in the current one), by
 * id, with their visit counts, in the batch arena. */
static int hand_history(struct veil_batch *b, const struct veil_catalog *cat,
                        const struct veil_profile *p,
                        struct veil_context_info *info) {
        const char **ids = veil_batch_alloc(b, p->n_hist * sizeof(char *));
        uint32_t *visits = veil_batch_alloc(b, p->n_hist * sizeof(uint32_t));
        if (!ids || !visits)
                return -VEIL_ENOMEM;
        size_t n = 0;
        for (uint32_t k = 0; k < p->n_hist; k++)
                if (p->hist_visit[k] != p->visit_no) {
                        ids[n] = cat->id[p->hist[k]];
                        visits[n++] = p->hist_visits[k];
                }
        info->history = ids;
        info->history_visits = visits;
        info->n_history = n;
        return 0;
}

static veil_tier_t tier_of(const struct state *s,
                           const struct veil_event *ev) {
        return ev->tier == VEIL_TIER_UNDECIDED ? s->default_tier : ev->tier;
}

/* The batches' clock now: the last batch's, moved on by the time since
 * (a checkpoint or an export of an idle instance must not hold profiles
 * past their TTL); the wall clock before the first batch. */
static int64_t now_of(const struct state *s) {
        struct timespec t;
        if (!s->clock_ms) {
                clock_gettime(CLOCK_REALTIME, &t);
                return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t ms = ((int64_t)t.tv_sec - (int64_t)s->clock_at.tv_sec) * 1000 +
                     ((int64_t)t.tv_nsec - (int64_t)s->clock_at.tv_nsec) /
                             1000000;
        return s->clock_ms + (ms > 0 ? ms : 0);
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        s->clock_ms = b->now_ms;
        clock_gettime(CLOCK_MONOTONIC, &s->clock_at);
        veil_profiles_expire(s->prof, b->now_ms);
        /* The items first, in event order (the order they are interned
         * in): an item's category, phrase and band are scattered over
         * the heap, and the next event's are asked for while this one is
         * featurized. */
        int32_t *items = veil_batch_alloc(b, b->n * sizeof(int32_t) + 1);
        if (!items)
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < b->n; i++) {
                const struct veil_event *ev = &b->events[i];
                items[i] = -1;
                if (ev->status != VEIL_PASS ||
                    tier_of(s, ev) == VEIL_TIER_NONE || !ev->item_id)
                        continue;
                /* The next event's table line, asked for while this
                 * event's is compared. */
                if (i + 1 < b->n && b->events[i + 1].item_id)
                        veil_catalog_prefetch(s->cat,
                                              b->events[i + 1].item_id);
                int32_t it = items[i] = veil_catalog_intern(s->cat,
                                                            ev->item_id);
                if (it >= 0) {
                        __builtin_prefetch(&s->cat->category[it]);
                        __builtin_prefetch(&s->cat->phrase[it]);
                        __builtin_prefetch(&s->cat->band[it]);
                }
        }
        const char *last_key = NULL;
        struct veil_profile *last_p = NULL;
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                s->events++;
                veil_tier_t tier = tier_of(s, ev);
                if (i + 1 < b->n && items[i + 1] >= 0)
                        __builtin_prefetch(s->cat->category[items[i + 1]]);
                ev->features = NULL;
                ev->n_features = 0;
                ev->recent_items = NULL;
                ev->n_recent = 0;
                struct veil_context_info *info =
                        veil_batch_alloc(b, sizeof(*info));
                if (!info)
                        return -VEIL_ENOMEM;
                info->magic = VEIL_CONTEXT_INFO_MAGIC;
                info->version = VEIL_CONTEXT_INFO_VERSION;
                info->space = s->fcfg.space;
                info->tier = tier;
                info->history_items = veil_profiles_history_per_user(s->prof);
                ev->user = info;
                if (tier == VEIL_TIER_NONE)
                        continue; /* no personal processing at all */

                int32_t item = items[i];
                /* What the profile keeps is timed at most at the batch's
                 * clock: one event stamped in year 9999 would otherwise
                 * age the person's whole history out (the cutoff is its
                 * time less the TTL) and keep its own item past the TTL.
                 * The features of the hour and day use the event's own. */
                int64_t ts = b->now_ms > 0 && ev->ts_ms > b->now_ms
                                     ? b->now_ms
                                     : ev->ts_ms;
                int32_t off = 0;
                if (ev->ctx.timezone &&
                    veil_tz_offset(s->tz, ev->ctx.timezone, ev->ts_ms, &off))
                        s->tz_unknown++;
                int hour, wd;
                veil_tz_local(ev->ts_ms, off, &hour, &wd);

                struct veil_session_info si = {0, -1};
                struct veil_profile *p = NULL;
                if (tier == VEIL_TIER_PERSONALIZED) {
                        /* With keys, the subject pseudonym or nothing:
                         * never the raw id (the host leaves subject unset
                         * when it cannot compute it). An empty id is no
                         * person: one profile for everyone without an id
                         * would hand one's items to the next, and no erase
                         * could reach it. */
                        const char *key =
                                s->keyed ? ev->subject
                                         : ev->subject ? ev->subject
                                                       : ev->user_id;
                        if (key && !*key)
                                key = NULL;
                        int created = 0;
                        /* The same subject as the event before (a run of
                         * one user's events): nothing touched the profiles
                         * since its touch, which made this one the most
                         * recent, used now — touching again would find and
                         * return it unchanged. */
                        if (key && last_key &&
                            (key == last_key || !strcmp(key, last_key)))
                                p = last_p;
                        else if (key)
                                p = veil_profiles_touch(s->prof, key,
                                                        b->now_ms, &created);
                        last_key = p ? key : NULL;
                        last_p = p;
                        if (p)
                                session_of(s, p, created, ev, ts, &si);
                } else {
                        session_from_attrs(ev, &si);
                }
                struct veil_feature_set fs;
                veil_features_extract(&s->fcfg, ev, s->cat, item, hour, wd,
                                      &si, &fs);
                uint32_t *ids = veil_batch_alloc(b, fs.n * sizeof(uint32_t) +
                                                            1);
                uint8_t *kinds = veil_batch_alloc(b, fs.n + 1);
                const char **words = veil_batch_alloc(
                        b, (fs.n + 1) * sizeof(char *));
                if (!ids || !kinds || !words)
                        return -VEIL_ENOMEM;
                memcpy(ids, fs.id, fs.n * sizeof(uint32_t));
                memcpy(kinds, fs.kind, fs.n);
                memcpy(words, fs.word, fs.n * sizeof(char *));
                ev->features = ids;
                ev->n_features = fs.n;
                info->kinds = kinds;
                info->words = words;
                if (!p)
                        continue;

                /* What the model may use of the profile: the items before
                 * this event and the previous event's features. */
                if (p->n_items) {
                        const char **rec = veil_batch_alloc(
                                b, p->n_items * sizeof(char *));
                        if (!rec)
                                return -VEIL_ENOMEM;
                        for (uint32_t k = 0; k < p->n_items; k++)
                                rec[k] = s->cat->id[p->items[k]];
                        ev->recent_items = rec;
                        ev->n_recent = p->n_items;
                }
                /* The model gets the items of the visits before this
                 * one, those seen within the TTL (event time). */
                if (si.position == 1)
                        veil_profiles_new_visit(p);
                info->n_visit = p->visit_items < p->n_items ? p->visit_items
                                                            : p->n_items;
                if (p->n_hist)
                        veil_profiles_age(p, ts - s->ttl_ms);
                if (p->n_hist && hand_history(b, s->cat, p, info))
                        return -VEIL_ENOMEM;
                if (p->n_prev) {
                        uint32_t *prev = veil_batch_alloc(
                                b, p->n_prev * sizeof(uint32_t));
                        if (!prev)
                                return -VEIL_ENOMEM;
                        memcpy(prev, p->prev_features,
                               p->n_prev * sizeof(uint32_t));
                        info->prev_features = prev;
                        info->n_prev = p->n_prev;
                }
                if (item >= 0) {
                        veil_profiles_push(s->prof, p, item, ts);
                        veil_profiles_remember(s->prof, p, item, ts);
                        /* The features travel with the newest item
                         * (dp_model learns "in this context, after
                         * items[0], came the next"): an event without an
                         * item would pair its context with an older item. */
                        memcpy(p->prev_features, fs.id,
                               fs.n * sizeof(uint32_t));
                        p->n_prev = (uint32_t)fs.n;
                        p->prev_kinds = 0;
                        for (size_t k = 0; k < fs.n; k++)
                                p->prev_kinds |= 1u << fs.kind[k];
                }
                /* The visit's session is its first event's: an event of
                 * the visit without one, or a late one of another, leaves
                 * it (a session id of 0 would make the visit's next event
                 * a new visit). */
                if (si.position == 1)
                        p->session = ev->ctx.session_id
                                             ? hash_str(ev->ctx.session_id)
                                             : 0;
                /* A late event in the visit leaves its end where it was:
                 * the next event's gap is measured from the visit's latest
                 * time, or one late event would split the visit. */
                if (si.position == 1 || ts > p->last_ts)
                        p->last_ts = ts;
                p->position = si.position;
        }
        /* Counts, never about one person. An eviction makes one person's
         * profile, so what the model learns from them, depend on how many
         * others came (README, "Not covered"): 0 says it never happened. */
        veil_metric_set(s->st, "profiles",
                        (double)veil_profiles_count(s->prof));
        veil_metric_set(s->st, "profiles_evicted",
                        (double)veil_profiles_evicted(s->prof));
        /* Events whose time zone is not a zone of `zoneinfo` (a name no
         * zone has, or no tzdata in the image): their hour and weekday are
         * UTC's, which only this count shows. */
        veil_metric_set(s->st, "timezone_unknown", (double)s->tz_unknown);
        return 0;
}

/* The key a subject's profile is held under: the pseudonym with keys,
 * the raw id only without (as process keys them). Never the raw id where
 * there are keys: profiles are held under pseudonyms then, so a request
 * naming another person's pseudonym as its "raw id" would read or erase
 * that person's profile. */
static const char *subject_key(const struct veil_subject *subj) {
        return subj->pseudonym ? subj->pseudonym : subj->raw_id;
}

static int erase(void *state, const struct veil_subject *subj) {
        struct state *s = state;
        /* A profile serves personalization, not training: a withdrawal of
         * training alone leaves it. */
        if (subj->training_only)
                return 0;
        veil_profiles_erase(s->prof, subject_key(subj));
        return 0;
}

/* The previous event's features as the profile keeps them, for the
 * person: "kind=value" where the value can be told back from its id (the
 * item and its category from the newest item, the one they were taken
 * with), else "kind=#id" (a country, an area: only the id is kept; it is
 * FNV-1a of "kind=value" mod hash_space, which anyone can compute for a
 * value to compare), and "#id" alone when the kind is not known (a profile
 * restored from a checkpoint older than the kinds). A malloc'd string. */
static char *previous_features(const struct state *s,
                               const struct veil_profile *p) {
        int32_t item = p->n_items ? p->items[0] : -1;
        /* Kind names and short values, besides the item and category. */
        size_t cap = 64 + (size_t)p->n_prev * 40, off = 0;
        if (item >= 0)
                cap += strlen(s->cat->id[item]) +
                       strlen(s->cat->category[item]);
        char *out = malloc(cap);
        if (!out)
                return NULL;
        out[0] = '\0';
        uint32_t kinds = p->prev_kinds;
        for (uint32_t k = 0; k < p->n_prev && off < cap; k++) {
                const char *sep = k ? ", " : "";
                uint32_t id = p->prev_features[k];
                if (!kinds) {
                        off += (size_t)snprintf(out + off, cap - off,
                                                "%s#%u", sep, id);
                        continue;
                }
                /* The k-th feature is of the lowest kind left. */
                int kind = __builtin_ctz(kinds);
                kinds &= kinds - 1;
                const char *v = veil_features_value(&s->fcfg, s->cat, kind, id,
                                                    item);
                char num[16];
                if (!v) {
                        snprintf(num, sizeof(num), "#%u", id);
                        v = num;
                }
                off += (size_t)snprintf(out + off, cap - off, "%s%s=%s", sep,
                                        veil_features_kind_name(kind), v);
        }
        return out;
}

static int export_subject(void *state, const struct veil_subject *subj,
                          veil_rec_t *out) {
        struct state *s = state;
        /* A profile past its TTL is one we said is deleted: the lookup
         * deletes it rather than export it. */
        int64_t now = now_of(s);
        const char *key = subject_key(subj);
        struct veil_profile *p = key ? veil_profiles_get(s->prof, key, now)
                                     : NULL;
        if (!p)
                return 0; /* nothing held: an empty section */
        /* Nor history items past it: they are aged on the person's next
         * event, which may never come. */
        veil_profiles_age(p, now - s->ttl_ms);
        /* The host asks once per key the person may be held under (after
         * a rotation, a profile under each): the second and later ones
         * are named by their key, or each would overwrite the last. */
        char sfx[96] = "";
        if (veil_rec_map_size(out, "") > 0 && subj->pseudonym) {
                const char *dot = strchr(subj->pseudonym, '.');
                int kl = dot ? (int)(dot - subj->pseudonym) : 0;
                snprintf(sfx, sizeof(sfx), " (under key %.*s)", kl,
                         subj->pseudonym);
        }
        char name[128];
#define NAME(base) (snprintf(name, sizeof(name), "%s%s", (base), sfx), name)
        /* Each item with its time (and, in the history, its visits): the
         * whole profile, never cut, since this is what a person asked to
         * see. An id is at most a catalog line. */
        size_t cap = 64 + (size_t)(p->n_items + p->n_hist) * 48;
        for (uint32_t k = 0; k < p->n_items; k++)
                cap += strlen(s->cat->id[p->items[k]]);
        for (uint32_t k = 0; k < p->n_hist; k++)
                cap += strlen(s->cat->id[p->hist[k]]);
        char *list = malloc(cap);
        if (!list)
                return -VEIL_ENOMEM;
        size_t off = 0;
        list[0] = '\0';
        for (uint32_t k = 0; k < p->n_items && off < cap; k++)
                off += (size_t)snprintf(list + off, cap - off, "%s%s@%lld",
                                        k ? " " : "",
                                        s->cat->id[p->items[k]],
                                        (long long)p->item_ts[k]);
        int rc = veil_rec_map_put(out, "", NAME("recent_items"), list);
        if (veil_profiles_history_per_user(s->prof)) {
                off = 0;
                list[0] = '\0';
                for (uint32_t k = 0; k < p->n_hist && off < cap; k++)
                        off += (size_t)snprintf(
                                list + off, cap - off, "%s%s@%lld (visits: %u)",
                                k ? ", " : "", s->cat->id[p->hist[k]],
                                (long long)p->hist_ts[k], p->hist_visits[k]);
                rc = rc ? rc
                        : veil_rec_map_put(out, "", NAME("history_items"), list);
        }
        free(list);
        char buf[32];
        /* The visits counted so far (the history's numbering, kept with or
         * without a history) and how many recent items are of this one. */
        snprintf(buf, sizeof(buf), "%u", p->visit_no);
        rc = rc ? rc : veil_rec_map_put(out, "", NAME("visits"), buf);
        snprintf(buf, sizeof(buf), "%u", p->visit_items);
        rc = rc ? rc
                : veil_rec_map_put(out, "", NAME("items_this_visit"), buf);
        snprintf(buf, sizeof(buf), "%u", p->position);
        rc = rc ? rc : veil_rec_map_put(out, "", NAME("session_position"), buf);
        snprintf(buf, sizeof(buf), "%lld", (long long)p->last_ts);
        rc = rc ? rc : veil_rec_map_put(out, "", NAME("last_event_ms"), buf);
        if (p->session) {
                /* What is kept of the session id: its hash (hash_str). */
                snprintf(buf, sizeof(buf), "%016llx",
                         (unsigned long long)p->session);
                rc = rc ? rc
                        : veil_rec_map_put(out, "", NAME("session_id_hash"),
                                           buf);
        }
        if (p->n_prev && !rc) {
                char *prev = previous_features(s, p);
                rc = prev ? veil_rec_map_put(out, "",
                                             NAME("previous_event_features"),
                                             prev)
                          : -VEIL_ENOMEM;
                free(prev);
        }
#undef NAME
        return rc;
}

static const char *item_id(void *ctx, int32_t item) {
        const struct veil_catalog *c = ctx;
        return item >= 0 ? c->id[item] : NULL;
}

static int32_t item_index(void *ctx, const char *id) {
        return veil_catalog_intern(ctx, id);
}

/* The profiles (keyed by pseudonym, as held): the catalog comes from its
 * file at start, items learnt at run time are interned again. */
static int checkpoint(void *state, void **data, size_t *len) {
        struct state *s = state;
        /* An idle instance runs no batch to expire them, and a history is
         * aged only on its person's next event: what is past its TTL goes
         * before the state topic gets it. */
        veil_profiles_trim(s->prof, now_of(s));
        return veil_profiles_save(s->prof, item_id, s->cat, data, len);
}

static int restore(void *state, const void *data, size_t len, char *errstr,
                   size_t errstr_size) {
        struct state *s = state;
        int rc = veil_profiles_load(s->prof, data, len, now_of(s),
                                    item_index, s->cat,
                                    errstr, errstr_size);
        if (!rc)
                veil_log(s->st, VEIL_LOG_INFO, "restored %zu profiles",
                         veil_profiles_count(s->prof));
        return rc;
}

/* The configured feature kinds in words, "a, b and c", into buf. */
static void feature_words(const veil_params_t *p, char *buf, size_t size) {
        static const char *const words[VEIL_CTX_N_KINDS] = {
                [VEIL_CTX_HOUR] = "time of day",
                [VEIL_CTX_WEEKDAY] = "weekday",
                [VEIL_CTX_DEVICE] = "device class",
                [VEIL_CTX_COUNTRY] = "country",
                [VEIL_CTX_GEOHASH] = "coarse area",
                [VEIL_CTX_SESSION_POSITION] = "place in the visit",
                [VEIL_CTX_SINCE_PREVIOUS] = "time since the interaction "
                                            "before",
                [VEIL_CTX_TYPE] = "kind of interaction",
                [VEIL_CTX_ITEM] = "item",
                [VEIL_CTX_CATEGORY] = "category",
                [VEIL_CTX_PRICE_BAND] = "price band"};
        size_t nf = veil_params_list_size(p, "features"), off = 0, done = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < nf && off < size; i++) {
                int k = veil_features_kind(veil_params_list_at(p, "features",
                                                               i));
                if (k < 0)
                        continue;
                off += (size_t)snprintf(buf + off, size - off, "%s%s",
                                        !done++ ? ""
                                        : i + 1 == nf ? " and "
                                                      : ", ",
                                        words[k]);
        }
}

static void notice(const veil_params_t *p, veil_notice_t *n) {
        int64_t ttl = veil_params_int(p, "profile_ttl_s", 604800);
        int64_t L = veil_params_int(p, "profile_items", 10);
        int64_t H = veil_params_int(p, "history_items", 0);
        char kinds[512];
        feature_words(p, kinds, sizeof(kinds));
        veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                        "To recommend items, the %s of each interaction "
                        "are turned into feature numbers.",
                        kinds);
        /* All the profile keeps (the access export reports each). */
        veil_notice_add(n, VEIL_NOTICE_RETENTION,
                        "If you allowed personalization, we keep under a "
                        "pseudonym your last %lld items with their times, "
                        "a code of your visit's session id, how many visits "
                        "you made and your place in the current one, and "
                        "the feature numbers of your last interaction with "
                        "an item (its %s); all of it is deleted after %lld "
                        "days without activity, when you withdraw, or "
                        "earlier when memory is full; otherwise nothing "
                        "about you is kept.",
                        (long long)L, kinds,
                        (long long)((ttl + 86399) / 86400));
        if (H > 0)
                veil_notice_add(n, VEIL_NOTICE_RETENTION,
                                "If you allowed personalization, up to %lld "
                                "items of your visits are also kept, with how "
                                "many visits each was in and when you last "
                                "chose it, to suggest them to you again; an "
                                "item you have not chosen for %lld days is "
                                "dropped, and all of it is deleted with the "
                                "rest.",
                                (long long)H,
                                (long long)((ttl + 86399) / 86400));
        /* Without a consent stage every event takes the default: "if you
         * allowed" would then promise a choice nobody is asked. */
        if (!strcmp(veil_params_str(p, "default_tier"), "personalized"))
                veil_notice_add(n, VEIL_NOTICE_RETENTION,
                                "An interaction that no consent stage has "
                                "decided is treated as if personalization "
                                "were allowed, and the person's items are "
                                "kept as described.");
}

static void destroy(void *state) {
        struct state *s = state;
        if (!s)
                return;
        veil_catalog_free(s->cat);
        veil_profiles_free(s->prof);
        veil_tz_free(s->tz);
        free(s);
}

static int bad(char *errstr, size_t errstr_size, const veil_params_t *p,
               const char *name, const char *valid) {
        snprintf(errstr, errstr_size, "%s: %s must be %s",
                 veil_params_where(p, name), name, valid);
        return -VEIL_EINVAL;
}

#define TEN_DECADES_S INT64_C(3155760000)

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        int64_t space = veil_params_int(p, "hash_space", 16384);
        int64_t max_new = veil_params_int(p, "max_new_items", 10000);
        int64_t bands = veil_params_int(p, "price_bands", 5);
        int64_t gh = veil_params_int(p, "geohash_precision", 4);
        int64_t gap = veil_params_int(p, "session_gap_s", 1800);
        int64_t L = veil_params_int(p, "profile_items", 10);
        int64_t H = veil_params_int(p, "history_items", 0);
        int64_t maxp = veil_params_int(p, "max_profiles", 100000);
        int64_t ttl = veil_params_int(p, "profile_ttl_s", 604800);
        if (space < 1 || space > (1 << 28))
                return bad(errstr, errstr_size, p, "hash_space",
                           "between 1 and 2^28");
        if (max_new < 0 || max_new > 10000000)
                return bad(errstr, errstr_size, p, "max_new_items",
                           "between 0 and 10000000");
        if (bands < 1 || bands > VEIL_CATALOG_MAX_BANDS)
                return bad(errstr, errstr_size, p, "price_bands",
                           "between 1 and 10");
        if (gh < 1 || gh > 12)
                return bad(errstr, errstr_size, p, "geohash_precision",
                           "between 1 and 12");
        /* Both become milliseconds and are subtracted from event times:
         * at most 100 years keeps that far from int64's ends. */
        if (gap < 1 || gap > TEN_DECADES_S)
                return bad(errstr, errstr_size, p, "session_gap_s",
                           "between 1 and 3155760000 (100 years)");
        if (L < 1 || L > 1000)
                return bad(errstr, errstr_size, p, "profile_items",
                           "between 1 and 1000");
        if (H < 0 || H > 1000)
                return bad(errstr, errstr_size, p, "history_items",
                           "between 0 and 1000");
        if (maxp < 1 || maxp > 100000000)
                return bad(errstr, errstr_size, p, "max_profiles",
                           "between 1 and 100000000");
        if ((double)maxp * (double)H * 20 > 64.0 * (1u << 30))
                return bad(errstr, errstr_size, p, "history_items",
                           "small enough that max_profiles x history_items "
                           "x 20 bytes stays under 64 GiB");
        if (ttl < 1 || ttl > TEN_DECADES_S)
                return bad(errstr, errstr_size, p, "profile_ttl_s",
                           "between 1 and 3155760000 (100 years)");
        veil_tier_t dt;
        if (parse_tier(veil_params_str(p, "default_tier"), &dt))
                return bad(errstr, errstr_size, p, "default_tier",
                           "none, contextual or personalized");

        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        s->default_tier = dt;
        s->gap_ms = gap * 1000;
        s->ttl_ms = ttl * 1000;
        s->L = (uint32_t)L;
        s->fcfg.space = (uint32_t)space;
        s->fcfg.geohash_precision = (int)gh;
        size_t nf = veil_params_list_size(p, "features");
        for (size_t i = 0; i < nf; i++) {
                const char *name = veil_params_list_at(p, "features", i);
                int k = veil_features_kind(name);
                if (k < 0) {
                        snprintf(errstr, errstr_size,
                                 "%s: unknown feature '%s'; valid: hour, "
                                 "weekday, device, country, geohash, "
                                 "session_position, since_previous, type, "
                                 "item, category, price_band",
                                 veil_params_where(p, "features"), name);
                        destroy(s);
                        return -VEIL_EINVAL;
                }
                s->fcfg.enabled |= 1u << k;
        }
        int rc;
        char err[512];
        if (veil_params_has(p, "catalog")) {
                struct veil_catalog_columns cols = {0};
                size_t nm = veil_params_map_size(p, "catalog_columns");
                for (size_t i = 0; i < nm; i++) {
                        const char *k = veil_params_map_key(p,
                                                            "catalog_columns",
                                                            i);
                        const char *v = veil_params_map_value(
                                p, "catalog_columns", i);
                        if (!strcmp(k, "id"))
                                cols.id = v;
                        else if (!strcmp(k, "category"))
                                cols.category = v;
                        else if (!strcmp(k, "price"))
                                cols.price = v;
                        else if (!strcmp(k, "description"))
                                cols.description = v;
                        else {
                                snprintf(errstr, errstr_size,
                                         "%s: catalog_columns: unknown key "
                                         "'%s'; valid: id, category, price, "
                                         "description",
                                         veil_params_where(p,
                                                           "catalog_columns"),
                                         k);
                                destroy(s);
                                return -VEIL_EINVAL;
                        }
                }
                char *path = veil_catalog_path(veil_params_where(p, "catalog"),
                                               veil_params_str(p, "catalog"));
                rc = path ? veil_catalog_load(&s->cat, path, &cols,
                                              (size_t)max_new, (int)bands, err,
                                              sizeof(err))
                          : -VEIL_ENOMEM;
                free(path);
                if (rc) {
                        snprintf(errstr, errstr_size, "%s: %s",
                                 veil_params_where(p, "catalog"), err);
                        destroy(s);
                        return rc;
                }
        } else if ((rc = veil_catalog_new(&s->cat, (size_t)max_new,
                                          (int)bands, errstr, errstr_size))) {
                destroy(s);
                return rc;
        }
        if ((rc = veil_profiles_new(&s->prof, (size_t)maxp, (uint32_t)L,
                                    (uint32_t)H, ttl * 1000)) ||
            !(s->tz = veil_tz_new(veil_params_str(p, "zoneinfo"), 256))) {
                snprintf(errstr, errstr_size, "context: out of memory");
                destroy(s);
                return rc ? rc : -VEIL_ENOMEM;
        }
        char probe[VEIL_PSEUDONYM_MAX];
        s->keyed = veil_pseudonym(st, "subject", "probe", 5, probe,
                                  sizeof(probe)) > 0;
        veil_log(st, VEIL_LOG_INFO,
                 "%zu catalog items (room for %lld more), %zu feature kinds "
                 "in a space of %lld",
                 s->cat->n_file, (long long)max_new, nf, (long long)space);
        *state = s;
        return 0;
}

/* What the features and the profile read of the event: raw, a country
 * would be the word "in <country>" of the person's explanation and a
 * session id a hash in the checkpoints, so `veil lint` wants each treated
 * (generalized, dropped or kept with a reason) by an earlier stage. */
static void lint(const veil_params_t *p, veil_lint_t *l) {
        (void)p;
        static const char *const reads[] = {
                "context.device",  "context.user_agent", "context.country",
                "context.geohash", "context.session_id", "context.timezone"};
        for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
                veil_lint_field(l, reads[i], VEIL_FIELD_READ, NULL);
}

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "context",
        .version = "1.0.0",
        .description = "Context-aware features: time, device, place, session "
                       "and the item in hand as hashed ids; a bounded "
                       "short-term profile for personalized users.",
        .params = params,
        .init = init,
        .process = process,
        .destroy = destroy,
        .erase = erase,
        .export_subject = export_subject,
        .checkpoint = checkpoint,
        .restore = restore,
        .notice = notice,
        .lint = lint,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

/*
 * featurize.h — context features of one event as sparse ids (the hashing
 * trick): id = FNV-1a-64("<kind>=<value>") mod space. The value strings
 * are documented beside each kind below and in the README, so the ids are
 * reproducible outside veil (and tested against an independent hash).
 *
 * Pure functions: no allocation, no state; the session and profile are the
 * caller's (context.c), the catalog is read only.
 */
#ifndef VEIL_CONTEXT_FEATURIZE_H
#define VEIL_CONTEXT_FEATURIZE_H

#include <stddef.h>
#include <stdint.h>

#include <veil/veil.h>

#include "catalog.h"
#include "context_info.h"

/** What the caller knows about the event's session (personalized profile,
 *  or attributes the front end sent). */
struct veil_session_info {
        uint32_t position;     /**< 1-based; 0 = unknown */
        int64_t since_prev_ms; /**< < 0 = unknown or first of the session */
};

struct veil_features_cfg {
        uint32_t space;   /**< ids are < space */
        uint32_t enabled; /**< bit (1 << kind) per extracted kind */
        int geohash_precision;
};

/** One event's features: ids, kinds and plain words, in kind order. */
struct veil_feature_set {
        uint32_t id[VEIL_CTX_MAX_FEATURES];
        uint8_t kind[VEIL_CTX_MAX_FEATURES];
        const char *word[VEIL_CTX_MAX_FEATURES];
        size_t n;
};

/** Kind by YAML name ("hour", "weekday", "device", "country", "geohash",
 *  "session_position", "since_previous", "type", "item", "category",
 *  "price_band"); -1 when unknown. */
int veil_features_kind(const char *name);
const char *veil_features_kind_name(int kind);

/** FNV-1a-64 of "<kind_name>=<value>" mod space. */
uint32_t veil_features_hash(uint32_t space, const char *kind_name,
                            const char *value);

/** The values the ids hash (exposed for the tests and the README). */
const char *veil_features_device(const char *device, const char *user_agent);
const char *veil_features_type(const char *type);
const char *veil_features_position_bucket(uint32_t position);
const char *veil_features_gap_bucket(int64_t since_prev_ms);

/** The value that feature `id` of `kind` hashes, where it can be told
 *  back (for the access export): one of the kind's few values (hour,
 *  weekday, device, place in the visit, time since the previous event,
 *  type, price band), or for the item and its category those of catalog
 *  item `item`, the one the features were taken with. NULL when no value
 *  or more than one gives the id, and always for the country and the
 *  area: their values are not kept and too many to try. */
const char *veil_features_value(const struct veil_features_cfg *cfg,
                                const struct veil_catalog *cat, int kind,
                                uint32_t id, int32_t item);

/** Extracts the enabled features. `item` is the catalog index of the event's
 *  item (-1 when not in the catalog: then only the item id feature);
 *  hour/weekday are local (tz.h); `si` may be NULL. */
void veil_features_extract(const struct veil_features_cfg *cfg,
                           const struct veil_event *ev,
                           const struct veil_catalog *cat, int32_t item,
                           int hour, int weekday,
                           const struct veil_session_info *si,
                           struct veil_feature_set *out);

#endif

#include "featurize.h"

#include "device_words.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const digits[] = {
        "0",  "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8",  "9",  "10", "11",
        "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23"};

static const char *const kind_names[VEIL_CTX_N_KINDS] = {
        "hour",   "weekday",          "device",         "country",
        "geohash", "session_position", "since_previous", "type",
        "item",   "category",         "price_band"};

int veil_features_kind(const char *name) {
        for (int k = 0; k < VEIL_CTX_N_KINDS; k++)
                if (!strcmp(kind_names[k], name))
                        return k;
        return -1;
}

const char *veil_features_kind_name(int kind) {
        return kind >= 0 && kind < VEIL_CTX_N_KINDS ? kind_names[kind] : "?";
}

static uint64_t fnv_step(uint64_t h, const char *s) {
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

uint32_t veil_features_hash(uint32_t space, const char *kind_name,
                            const char *value) {
        uint64_t h = fnv_step(14695981039346656037ULL, kind_name);
        h = fnv_step(h, "=");
        h = fnv_step(h, value);
        return space ? (uint32_t)(h % space) : 0;
}

static int has_ci(const char *s, const char *needle) {
        size_t n = strlen(needle);
        for (; *s; s++)
                if (!strncasecmp(s, needle, n))
                        return 1;
        return 0;
}

const char *veil_features_device(const char *device, const char *ua) {
        if (device && *device)
                return veil_device_word_class(device);
        if (!ua || !*ua)
                return NULL;
        /* A user agent the pseudonymize stage reduced ends with its device
         * class ("Chrome 120 / Android / mobile"); a raw one is classified
         * by the usual tokens. Tablets first: iPad and Android tablets also
         * say "Mobile" in some versions. */
        if (has_ci(ua, "bot") || has_ci(ua, "crawler") ||
            has_ci(ua, "spider") || has_ci(ua, "/ other"))
                return "other";
        if (has_ci(ua, "tablet") || has_ci(ua, "ipad"))
                return "tablet";
        if (has_ci(ua, "smart-tv") || has_ci(ua, "smarttv") ||
            has_ci(ua, "/ tv"))
                return "tv";
        if (has_ci(ua, "mobile") || has_ci(ua, "iphone") ||
            has_ci(ua, "android"))
                return "mobile";
        return "desktop";
}

static const char *const types[] = {"view",     "click",  "add_to_cart",
                                     "remove_from_cart", "purchase",
                                     "rating",   "search", "share"};

const char *veil_features_type(const char *type) {
        if (type)
                for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++)
                        if (!strcasecmp(type, types[i]))
                                return types[i];
        return "view"; /* the schema: unknown types are treated as a view */
}

static const char *const positions[] = {"1",    "2",     "3",  "4-5",
                                        "6-10", "11-20", "21+"};

const char *veil_features_position_bucket(uint32_t p) {
        return positions[p <= 3 ? (p ? p - 1 : 0) : p <= 5 ? 3 : p <= 10 ? 4
                         : p <= 20 ? 5 : 6];
}

static const char *const gaps[] = {"0-10s", "10-60s", "1-5m", "5-30m",
                                   "30m+"};

const char *veil_features_gap_bucket(int64_t ms) {
        return gaps[ms < 10000 ? 0 : ms < 60000 ? 1 : ms < 300000 ? 2
                    : ms < 1800000 ? 3 : 4];
}

static const char *const devices[] = {"desktop", "mobile", "tablet", "tv",
                                      "other"};

/* The one value of vals[0..n) whose id of `kind` is `id`; NULL for none
 * or several. */
static const char *one_of(uint32_t space, int kind, uint32_t id,
                          const char *const *vals, size_t n) {
        const char *found = NULL;
        for (size_t i = 0; i < n; i++) {
                if (!vals[i] ||
                    veil_features_hash(space, kind_names[kind], vals[i]) != id)
                        continue;
                if (found)
                        return NULL;
                found = vals[i];
        }
        return found;
}

const char *veil_features_value(const struct veil_features_cfg *cfg,
                                const struct veil_catalog *cat, int kind,
                                uint32_t id, int32_t item) {
        int known = item >= 0 && cat && (size_t)item < cat->n;
        const char *it[1] = {known ? cat->id[item] : NULL};
        const char *cg[1] = {known && (size_t)item < cat->n_file
                                     ? cat->category[item]
                                     : NULL};
#define ONE_OF(vals, n) one_of(cfg->space, kind, id, (vals), (n))
        switch (kind) {
        case VEIL_CTX_HOUR: return ONE_OF(digits, 24);
        case VEIL_CTX_WEEKDAY: return ONE_OF(digits + 1, 7);
        case VEIL_CTX_DEVICE: return ONE_OF(devices, 5);
        case VEIL_CTX_SESSION_POSITION: return ONE_OF(positions, 7);
        case VEIL_CTX_SINCE_PREVIOUS: return ONE_OF(gaps, 5);
        case VEIL_CTX_TYPE: return ONE_OF(types, 8);
        case VEIL_CTX_PRICE_BAND:
                return ONE_OF(digits, cat ? (size_t)cat->n_bands : 0);
        case VEIL_CTX_ITEM: return ONE_OF(it, 1);
        case VEIL_CTX_CATEGORY: return ONE_OF(cg, 1);
        default: return NULL; /* country, area: not kept, too many */
        }
#undef ONE_OF
}

static const char *hour_word(int h) {
        return h < 6 ? "at night" : h < 12 ? "in the morning"
               : h < 18 ? "in the afternoon" : "in the evening";
}

static const char *weekday_word(int wd) {
        static const char *const w[] = {"on a Monday",   "on a Tuesday",
                                        "on a Wednesday", "on a Thursday",
                                        "on a Friday",   "on a Saturday",
                                        "on a Sunday"};
        return wd >= 1 && wd <= 7 ? w[wd - 1] : "";
}

static const char *device_word(const char *d) {
        return !strcmp(d, "mobile") ? "on mobile" : !strcmp(d, "tablet")
               ? "on a tablet" : !strcmp(d, "tv") ? "on a TV"
               : !strcmp(d, "desktop") ? "on desktop" : "on this device";
}

static const char *position_word(uint32_t p) {
        return p <= 1 ? "at the start of a visit" : p <= 3
               ? "early in a visit" : p <= 10 ? "well into a visit"
               : "deep into a visit";
}

static const char *gap_word(int64_t ms) {
        return ms < 60000 ? "browsing quickly" : ms < 1800000
               ? "after a pause" : "after a break";
}

static const char *type_word(const char *t) {
        static const struct {
                const char *type, *verb;
        } v[] = {{"view", "viewing"},
                 {"click", "looking at"},
                 {"add_to_cart", "adding to the cart"},
                 {"remove_from_cart", "taking out of the cart"},
                 {"purchase", "buying"},
                 {"rating", "rating"},
                 {"search", "searching for"},
                 {"share", "sharing"}};
        for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++)
                if (!strcmp(v[i].type, t))
                        return v[i].verb;
        return "viewing";
}

static const char *band_word(int band, int n_bands) {
        static const char *const five[] = {"budget", "low-priced",
                                           "mid-priced", "high-priced",
                                           "premium"};
        if (n_bands == 5 && band >= 0 && band < 5)
                return five[band];
        if (band == 0)
                return "low-priced";
        return band == n_bands - 1 ? "high-priced" : "mid-priced";
}

/* FNV-1a is a left fold: the state after "<kind>=" is the same for
 * every value of a kind, so it is computed once (at load) and the hash of
 * a feature runs over the value alone — the kind names were most of the
 * bytes hashed per event, one multiply each in a serial chain. */
static uint64_t kind_prefix[VEIL_CTX_N_KINDS];

__attribute__((constructor)) static void init_kind_prefix(void) {
        for (int k = 0; k < VEIL_CTX_N_KINDS; k++)
                kind_prefix[k] = fnv_step(
                        fnv_step(14695981039346656037ULL, kind_names[k]), "=");
}

static void push(const struct veil_features_cfg *cfg,
                 struct veil_feature_set *out, int kind, const char *value,
                 const char *word) {
        if (!(cfg->enabled & (1u << kind)) || !value || !*value ||
            out->n >= VEIL_CTX_MAX_FEATURES)
                return;
        /* = veil_features_hash(cfg->space, kind_names[kind], value) */
        uint64_t h = fnv_step(kind_prefix[kind], value);
        out->id[out->n] = cfg->space ? (uint32_t)(h % cfg->space) : 0;
        out->kind[out->n] = (uint8_t)kind;
        out->word[out->n] = word;
        out->n++;
}

void veil_features_extract(const struct veil_features_cfg *cfg,
                           const struct veil_event *ev,
                           const struct veil_catalog *cat, int32_t item,
                           int hour, int weekday,
                           const struct veil_session_info *si,
                           struct veil_feature_set *out) {
        out->n = 0;
        if (hour >= 0 && hour < 24)
                push(cfg, out, VEIL_CTX_HOUR, digits[hour], hour_word(hour));
        if (weekday >= 1 && weekday <= 7)
                push(cfg, out, VEIL_CTX_WEEKDAY, digits[weekday],
                     weekday_word(weekday));
        const char *dev = veil_features_device(ev->ctx.device,
                                               ev->ctx.user_agent);
        if (dev)
                push(cfg, out, VEIL_CTX_DEVICE, dev, device_word(dev));
        push(cfg, out, VEIL_CTX_COUNTRY, ev->ctx.country, ev->ctx.country);
        if (ev->ctx.geohash && *ev->ctx.geohash) {
                char gh[16];
                int p = cfg->geohash_precision;
                snprintf(gh, sizeof(gh), "%.*s", p > 12 ? 12 : p,
                         ev->ctx.geohash);
                push(cfg, out, VEIL_CTX_GEOHASH, gh, "nearby");
        }
        if (si && si->position > 0)
                push(cfg, out, VEIL_CTX_SESSION_POSITION,
                     veil_features_position_bucket(si->position),
                     position_word(si->position));
        if (si && si->since_prev_ms >= 0)
                push(cfg, out, VEIL_CTX_SINCE_PREVIOUS,
                     veil_features_gap_bucket(si->since_prev_ms),
                     gap_word(si->since_prev_ms));
        const char *type = veil_features_type(ev->type);
        push(cfg, out, VEIL_CTX_TYPE, type, type_word(type));
        if (ev->item_id)
                push(cfg, out, VEIL_CTX_ITEM, ev->item_id,
                     item >= 0 ? cat->phrase[item] : "an item");
        if (item >= 0 && (size_t)item < cat->n_file) {
                /* Items added from events have no attributes. */
                push(cfg, out, VEIL_CTX_CATEGORY, cat->category[item],
                     cat->category[item]);
                int band = cat->band[item];
                if (band >= 0)
                        push(cfg, out, VEIL_CTX_PRICE_BAND, digits[band],
                             band_word(band, cat->n_bands));
        }
}

/*
 * policy.c — the field policies of the pseudonymize stage, from its `with:`
 * block.
 *
 * Defaults are chosen so that a stage written as a bare `- use:
 * pseudonymize` leaves nothing in the clear that the interaction schema
 * marks "pii": identifiers become pseudonyms, the quasi-identifiers that
 * have a generalizer are generalized, and the ones that have none (country,
 * time zone) are dropped — keeping or pseudonymizing those is an operator's
 * decision, written in the YAML with its reason (the session id's default
 * pseudonym carries its own). Fields the schema does not mark are kept.
 * The TC string is marked quasi and dropped by default: the consent stage
 * has read it by now, and it is unique enough to single out a browser.
 */
#include "policy.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "device_words.h"
#include "generalize.h"

#define BIT(k) (1u << (k))
#define STRING_POLICIES                                                       \
        (BIT(VEIL_POLICY_KEEP) | BIT(VEIL_POLICY_DROP) |                      \
         BIT(VEIL_POLICY_PSEUDONYM))
#define GEO_POLICIES                                                          \
        (BIT(VEIL_POLICY_KEEP) | BIT(VEIL_POLICY_DROP) |                      \
         BIT(VEIL_POLICY_GEOHASH))

/* Indexed by enum veil_policy_field; the parameter table below follows the
 * same order. */
static const struct {
        const char *path;
        unsigned allowed;
} fields[VEIL_PF_N] = {
        {"event_id", STRING_POLICIES},
        {"user_id", BIT(VEIL_POLICY_PSEUDONYM) | BIT(VEIL_POLICY_DROP)},
        {"ts", BIT(VEIL_POLICY_KEEP) | BIT(VEIL_POLICY_BUCKET_TIME)},
        {"tc_string", BIT(VEIL_POLICY_KEEP) | BIT(VEIL_POLICY_DROP)},
        {"context.device", STRING_POLICIES | BIT(VEIL_POLICY_DEVICE_CLASS)},
        {"context.ip", STRING_POLICIES | BIT(VEIL_POLICY_TRUNCATE_IP)},
        {"context.user_agent", STRING_POLICIES | BIT(VEIL_POLICY_REDUCE_UA)},
        {"context.lat", GEO_POLICIES},
        {"context.lon", GEO_POLICIES},
        {"context.geohash", GEO_POLICIES},
        {"context.country", STRING_POLICIES},
        {"context.session_id", STRING_POLICIES},
        {"context.timezone", STRING_POLICIES},
        {"context.attrs", 0},
};

const struct veil_param_def veil_policy_params[] = {
        {"event_id", VEIL_PARAM_STRING, "keep", 0,
         "keep | pseudonym | drop; the producer's event id (not personal)"},
        {"user_id", VEIL_PARAM_STRING, "pseudonym", 0,
         "pseudonym | drop; the pseudonym is the host's subject pseudonym"},
        {"ts", VEIL_PARAM_STRING, "keep", 0,
         "keep | bucket_time:DURATION (15m, 1h, 1d: rounded down)"},
        {"tc_string", VEIL_PARAM_STRING, "drop", 0,
         "drop | 'keep: REASON'; consent has read it before this stage"},
        {"context.device", VEIL_PARAM_STRING, "device_class", 0,
         "device_class (desktop, mobile, tablet, tv, other) | 'pseudonym: "
         "REASON' | drop | 'keep: REASON'"},
        {"context.ip", VEIL_PARAM_STRING, "truncate_ip", 0,
         "truncate_ip[:/V4[,/V6]] (default /24, /40; at most that long) | "
         "'pseudonym: REASON' | drop | 'keep: REASON'"},
        {"context.user_agent", VEIL_PARAM_STRING, "reduce_ua", 0,
         "reduce_ua (browser family and major version, OS family, device "
         "class) | 'pseudonym: REASON' | drop | 'keep: REASON'"},
        {"context.lat", VEIL_PARAM_STRING, "geohash:5", 0,
         "geohash:N (1..12) | drop | 'keep: REASON'; geohash:7 or more and "
         "keep need require_special_feature_1; lat and lon go together"},
        {"context.lon", VEIL_PARAM_STRING, NULL, 0,
         "as context.lat, which it must equal (default: context.lat's)"},
        {"context.geohash", VEIL_PARAM_STRING, NULL, 0,
         "a geohash the front end sent: geohash:N (cut to N) | drop | "
         "'keep: REASON' (geohash:7 or more and keep need "
         "require_special_feature_1; default: follows context.lat)"},
        {"context.country", VEIL_PARAM_STRING, "drop", 0,
         "drop | 'pseudonym: REASON' | 'keep: REASON'"},
        /* The one quasi-identifier pseudonymized by default, so the default
         * states why: a session id is a random code for one visit, and its
         * pseudonym links that visit's events (the context stage's session
         * features), as the id itself did, and nothing more. */
        {"context.session_id", VEIL_PARAM_STRING,
         "pseudonym: links the events of one visit, as the random session "
         "id does",
         0, "'pseudonym: REASON' | drop | 'keep: REASON'"},
        {"context.timezone", VEIL_PARAM_STRING, "drop", 0,
         "drop | 'pseudonym: REASON' | 'keep: REASON'"},
        {"context.attrs", VEIL_PARAM_LIST, "[]", 0,
         "attribute keys kept; every other attribute is dropped"},
        {"require_special_feature_1", VEIL_PARAM_BOOL, "false", 0,
         "allow geohash:7 or finer, or keep, on the location, only for "
         "events whose TCF consent has special feature 1 (precise "
         "geolocation); others get geohash:6"},
        {NULL, 0, NULL, 0, NULL}};

const char *veil_policy_field_path(enum veil_policy_field f) {
        return f < VEIL_PF_N ? fields[f].path : "?";
}

static const char *const kind_syntax[] = {
        [VEIL_POLICY_KEEP] = "keep or 'keep: REASON'",
        [VEIL_POLICY_DROP] = "drop",
        [VEIL_POLICY_PSEUDONYM] = "pseudonym or 'pseudonym: REASON'",
        [VEIL_POLICY_TRUNCATE_IP] = "truncate_ip (or truncate_ip:/V4,/V6)",
        [VEIL_POLICY_GEOHASH] = "geohash:N",
        [VEIL_POLICY_BUCKET_TIME] = "bucket_time:DURATION",
        [VEIL_POLICY_REDUCE_UA] = "reduce_ua",
        [VEIL_POLICY_DEVICE_CLASS] = "device_class",
};

static void valid_list(unsigned allowed, char *out, size_t size) {
        size_t off = 0;
        out[0] = '\0';
        /* Generalizers first: they are the answer most people look for. */
        static const enum veil_policy_kind order[] = {
                VEIL_POLICY_TRUNCATE_IP, VEIL_POLICY_GEOHASH,
                VEIL_POLICY_BUCKET_TIME, VEIL_POLICY_REDUCE_UA,
                VEIL_POLICY_DEVICE_CLASS, VEIL_POLICY_PSEUDONYM,
                VEIL_POLICY_DROP, VEIL_POLICY_KEEP};
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
                if (!(allowed & BIT(order[i])))
                        continue;
                int w = snprintf(out + off, size - off, "%s%s",
                                 off ? ", " : "", kind_syntax[order[i]]);
                if (w < 0 || (size_t)w >= size - off)
                        return;
                off += (size_t)w;
        }
}

/* "/24" or "24" → 24; -1 when not a whole number in [0, max]. */
static int prefix_len(const char *s, size_t n, int max) {
        int v = 0;
        if (n && *s == '/') {
                s++;
                n--;
        }
        if (!n || n > 3)
                return -1;
        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v <= max ? v : -1;
}

/* Reads one policy. 0, or -1 with `why` filled. */
static int parse_rule(const char *s, struct veil_policy_rule *r, char *why,
                      size_t why_size) {
        const char *colon = strchr(s, ':');
        size_t word = colon ? (size_t)(colon - s) : strlen(s);
        const char *arg = colon ? colon + 1 : NULL;

        memset(r, 0, sizeof(*r));
        r->text = s;
        /* Both take a reason: a pseudonym keeps a quasi-identifier as
         * unique as it was (a user agent's code is still a fingerprint) and
         * is one lookup away from its value where there are few (a
         * country), so the lint wants it argued like a kept value. */
        if ((word == 4 && !strncmp(s, "keep", 4)) ||
            (word == 9 && !strncmp(s, "pseudonym", 9))) {
                r->kind = word == 4 ? VEIL_POLICY_KEEP : VEIL_POLICY_PSEUDONYM;
                while (arg && isspace((unsigned char)*arg))
                        arg++;
                r->reason = arg && *arg ? arg : NULL;
                return 0;
        }
        static const struct {
                const char *name;
                enum veil_policy_kind kind;
        } bare[] = {{"drop", VEIL_POLICY_DROP},
                    {"reduce_ua", VEIL_POLICY_REDUCE_UA},
                    {"device_class", VEIL_POLICY_DEVICE_CLASS}};
        for (size_t i = 0; i < sizeof(bare) / sizeof(bare[0]); i++) {
                if (strlen(bare[i].name) != word ||
                    strncmp(s, bare[i].name, word))
                        continue;
                if (arg) {
                        snprintf(why, why_size,
                                 "'%.60s': %s takes no argument; write %s",
                                 s, bare[i].name, bare[i].name);
                        return -1;
                }
                r->kind = bare[i].kind;
                return 0;
        }
        if (word == 11 && !strncmp(s, "truncate_ip", 11)) {
                r->kind = VEIL_POLICY_TRUNCATE_IP;
                r->v4_prefix = VEIL_IP_V4_PREFIX;
                r->v6_prefix = VEIL_IP_V6_PREFIX;
                if (!arg)
                        return 0;
                const char *comma = strchr(arg, ',');
                size_t n4 = comma ? (size_t)(comma - arg) : strlen(arg);
                r->v4_prefix = prefix_len(arg, n4, VEIL_IP_V4_PREFIX);
                if (comma)
                        r->v6_prefix = prefix_len(comma + 1,
                                                  strlen(comma + 1),
                                                  VEIL_IP_V6_PREFIX);
                if (r->v4_prefix < 0 || r->v6_prefix < 0) {
                        snprintf(why, why_size,
                                 "'%.60s': write truncate_ip:/V4,/V6 with an "
                                 "IPv4 prefix of 0 to %d bits and an IPv6 "
                                 "prefix of 0 to %d (a longer prefix keeps "
                                 "more of the address than the default)",
                                 s, VEIL_IP_V4_PREFIX, VEIL_IP_V6_PREFIX);
                        return -1;
                }
                return 0;
        }
        if (word == 7 && !strncmp(s, "geohash", 7)) {
                r->kind = VEIL_POLICY_GEOHASH;
                r->precision = arg ? prefix_len(arg, strlen(arg),
                                                VEIL_GEOHASH_MAX)
                                   : -1;
                if (r->precision < 1) {
                        snprintf(why, why_size,
                                 "'%.60s': write geohash:N with N the cell's "
                                 "length in characters, 1 to %d (5 is about "
                                 "4.9 km, 6 about 1.2 km × 0.6 km)",
                                 s, VEIL_GEOHASH_MAX);
                        return -1;
                }
                return 0;
        }
        if (word == 11 && !strncmp(s, "bucket_time", 11)) {
                r->kind = VEIL_POLICY_BUCKET_TIME;
                if (!arg || veil_duration_parse(arg, &r->bucket_ms)) {
                        snprintf(why, why_size,
                                 "'%.60s': write bucket_time:DURATION, a "
                                 "whole number and a unit (ms, s, m, h, d, "
                                 "w) such as 15m, 1h or 1d",
                                 s);
                        return -1;
                }
                return 0;
        }
        snprintf(why, why_size, "'%.60s' is not a policy", s);
        return -1;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void field_error(struct veil_policy *pol, enum veil_policy_field f,
                        const char *fmt, ...) {
        const char *path = fields[f].path;
        va_list ap;
        /* lon and geohash follow lat unless written: blame what was. */
        if ((f == VEIL_PF_LON || f == VEIL_PF_GEOHASH) &&
            !veil_params_str(pol->params, path))
                path = fields[VEIL_PF_LAT].path;
        pol->where[f] = veil_params_where(pol->params, path);
        va_start(ap, fmt);
        vsnprintf(pol->err[f], VEIL_POLICY_ERR_MAX, fmt, ap);
        va_end(ap);
        pol->n_errors++;
}

static void read_field(struct veil_policy *pol, enum veil_policy_field f) {
        const char *path = fields[f].path;
        const char *s = veil_params_str(pol->params, path);
        struct veil_policy_rule *r = &pol->rule[f];
        char why[300], list[200];

        if (!s) {
                /* lon and geohash follow lat. */
                *r = pol->rule[VEIL_PF_LAT];
                return;
        }
        if (parse_rule(s, r, why, sizeof(why))) {
                valid_list(fields[f].allowed, list, sizeof(list));
                field_error(pol, f, "%s; valid here: %s", why, list);
                r->kind = VEIL_POLICY_DROP;
                return;
        }
        if (!(fields[f].allowed & BIT(r->kind))) {
                valid_list(fields[f].allowed, list, sizeof(list));
                field_error(pol, f,
                            "'%.60s' does not apply to this field; valid "
                            "here: %s",
                            s, list);
                r->kind = VEIL_POLICY_DROP;
        }
}

/* Cells under ~500 m only for those who consented to precise geolocation.
 * keep is the finest of all: exact coordinates, or the front end's geohash
 * at whatever length it was sent (up to 12 characters, about 4 cm). A
 * reason says why it is needed, not that this person agreed, so keep falls
 * under the same rule: refused without require_special_feature_1, and with
 * it coarsened to geohash:6 for events without that consent (apply_geo). */
static void check_precise(struct veil_policy *pol, enum veil_policy_field f) {
        const struct veil_policy_rule *r = &pol->rule[f];
        if (pol->err[f][0] || pol->special_feature_1)
                return;
        if (r->kind == VEIL_POLICY_KEEP)
                field_error(pol, f,
                            "'%.60s' keeps %s, precise geolocation in TCF "
                            "terms, for every event; set "
                            "require_special_feature_1: true so that only "
                            "events whose consent has special feature 1 keep "
                            "it (others get geohash:%d), or write geohash:%d "
                            "or coarser",
                            r->text,
                            f == VEIL_PF_GEOHASH
                                    ? "the front end's geohash at any length "
                                      "(up to 12 characters, about 4 cm)"
                                    : "the exact coordinates",
                            VEIL_POLICY_COARSE_GEOHASH,
                            VEIL_POLICY_COARSE_GEOHASH);
        else if (r->kind == VEIL_POLICY_GEOHASH &&
                 r->precision >= VEIL_POLICY_PRECISE_GEOHASH)
                field_error(pol, f,
                            "geohash:%d keeps cells of %s, under about 500 "
                            "m: precise geolocation in TCF terms; set "
                            "require_special_feature_1: true so that only "
                            "events whose consent has special feature 1 get "
                            "it (others get geohash:%d), or write geohash:%d "
                            "or coarser",
                            r->precision,
                            veil_policy_geohash_size(r->precision),
                            VEIL_POLICY_COARSE_GEOHASH,
                            VEIL_POLICY_COARSE_GEOHASH);
}

int veil_policy_parse(struct veil_policy *pol, const veil_params_t *p) {
        memset(pol, 0, sizeof(*pol));
        pol->params = p;
        pol->special_feature_1 =
                veil_params_bool(p, "require_special_feature_1", 0);
        /* lat first: lon and geohash may follow it. */
        read_field(pol, VEIL_PF_LAT);
        for (int f = 0; f < VEIL_PF_N; f++)
                if (f != VEIL_PF_LAT && f != VEIL_PF_ATTRS)
                        read_field(pol, (enum veil_policy_field)f);

        const struct veil_policy_rule *lat = &pol->rule[VEIL_PF_LAT];
        const struct veil_policy_rule *lon = &pol->rule[VEIL_PF_LON];
        if (!pol->err[VEIL_PF_LAT][0] && !pol->err[VEIL_PF_LON][0] &&
            (lat->kind != lon->kind ||
             (lat->kind == VEIL_POLICY_GEOHASH &&
              lat->precision != lon->precision))) {
                field_error(pol, VEIL_PF_LON,
                            "'%.60s' differs from context.lat's '%.60s': a "
                            "location is generalized as a pair; give both "
                            "the same policy (or leave context.lon out)",
                            lon->text, lat->text);
        }
        check_precise(pol, VEIL_PF_LAT);
        if (veil_params_str(p, fields[VEIL_PF_GEOHASH].path))
                check_precise(pol, VEIL_PF_GEOHASH);
        /* What follows a refused lat is dropped, never kept by accident. */
        for (int f = VEIL_PF_LON; f <= VEIL_PF_GEOHASH; f++)
                if (pol->err[VEIL_PF_LAT][0] &&
                    !veil_params_str(p, fields[f].path))
                        pol->rule[f].kind = VEIL_POLICY_DROP;

        size_t n = veil_params_list_size(p, "context.attrs");
        struct veil_policy_rule *ar = &pol->rule[VEIL_PF_ATTRS];
        ar->kind = n ? VEIL_POLICY_KEEP : VEIL_POLICY_DROP;
        ar->text = n ? "allow-list" : "drop";
        if (n > VEIL_POLICY_ATTRS_MAX) {
                field_error(pol, VEIL_PF_ATTRS,
                            "%zu attribute keys listed; an allow-list holds "
                            "at most %d",
                            n, VEIL_POLICY_ATTRS_MAX);
                ar->kind = VEIL_POLICY_DROP;
                n = 0;
        }
        for (size_t i = 0; i < n; i++)
                pol->attrs[i] = veil_params_list_at(p, "context.attrs", i);
        pol->n_attrs = n;
        return pol->n_errors;
}

const char *veil_policy_geohash_size(int precision) {
        /* Cell width × height at the equator (narrower towards the poles). */
        static const char *const size[] = {
                "?",
                "about 5000 km × 5000 km",
                "about 1250 km × 625 km",
                "about 156 km × 156 km",
                "about 39 km × 20 km",
                "about 4.9 km × 4.9 km",
                "about 1.2 km × 0.6 km",
                "about 153 m × 153 m",
                "about 38 m × 19 m",
                "about 4.8 m × 4.8 m",
                "about 1.2 m × 0.6 m",
                "about 15 cm × 15 cm",
                "about 4 cm × 2 cm"};
        return precision >= 1 && precision <= VEIL_GEOHASH_MAX
                       ? size[precision]
                       : size[0];
}

/* The context stage's words (device_words.h): a "phone" cut to "other"
 * here would reach its device feature as "other", not mobile. */
const char *veil_policy_device_class(const char *device) {
        return device ? veil_device_word_class(device) : NULL;
}

/*
 * policy.h — the pseudonymize stage's `with:` block: one policy per field
 * path of the interaction schema, parsed once and shared by init (which
 * refuses a bad one), the lint hook (which declares each field's treatment,
 * or the error, since `veil lint` starts no plugin) and the notice hook.
 *
 * Policies (which apply to which field is in policy.c's table):
 *   pseudonym | 'pseudonym: REASON'
 *                          keyed pseudonym "<keyid>.<22 base64url>"; the
 *                          lint wants the reason for "quasi" (the code is
 *                          as unique as the value, and few values map back)
 *   drop                   removed (a required string becomes "")
 *   keep | 'keep: REASON'  unchanged; the lint wants the reason for "pii";
 *                          on the location, precise: needs
 *                          require_special_feature_1 as geohash:7 does
 *   truncate_ip[:/V4[,/V6]] network prefix, /24 and /40 by default
 *   geohash:N              lat/lon to a cell of N characters
 *   bucket_time:DURATION   ts rounded down (15m, 1h, 1d…)
 *   reduce_ua              "Chrome 120 / Android / mobile"
 *   device_class           desktop, mobile, tablet, tv, or other
 */
#ifndef VEIL_PSEUDONYMIZE_POLICY_H
#define VEIL_PSEUDONYMIZE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <veil/veil.h>

/** Cells of 7 geohash characters or more are under ~500 m: TCF's "precise
 *  geolocation" (special feature 1). */
#define VEIL_POLICY_PRECISE_GEOHASH 7
/** What events without that consent get when precise cells are configured. */
#define VEIL_POLICY_COARSE_GEOHASH 6

enum veil_policy_kind {
        VEIL_POLICY_KEEP = 1,
        VEIL_POLICY_DROP,
        VEIL_POLICY_PSEUDONYM,
        VEIL_POLICY_TRUNCATE_IP,
        VEIL_POLICY_GEOHASH,
        VEIL_POLICY_BUCKET_TIME,
        VEIL_POLICY_REDUCE_UA,
        VEIL_POLICY_DEVICE_CLASS
};

/** Fields with a policy, in the order of the parameter table. */
enum veil_policy_field {
        VEIL_PF_EVENT_ID = 0,
        VEIL_PF_USER_ID,
        VEIL_PF_TS,
        VEIL_PF_TC_STRING,
        VEIL_PF_DEVICE,
        VEIL_PF_IP,
        VEIL_PF_USER_AGENT,
        VEIL_PF_LAT,
        VEIL_PF_LON,
        VEIL_PF_GEOHASH,
        VEIL_PF_COUNTRY,
        VEIL_PF_SESSION_ID,
        VEIL_PF_TIMEZONE,
        VEIL_PF_ATTRS, /**< the allow-list of attribute keys */
        VEIL_PF_N
};

/** Attribute keys an allow-list holds at most. */
#define VEIL_POLICY_ATTRS_MAX 64

struct veil_policy_rule {
        enum veil_policy_kind kind;
        const char *text;   /**< the policy as written (or defaulted) */
        const char *reason; /**< keep, pseudonym: the reason, NULL when
                                 none */
        int v4_prefix, v6_prefix; /**< truncate_ip */
        int precision;            /**< geohash */
        int64_t bucket_ms;        /**< bucket_time */
};

#define VEIL_POLICY_ERR_MAX 512

struct veil_policy {
        struct veil_policy_rule rule[VEIL_PF_N];
        /** Per field: why its policy cannot be applied and what would be
         *  valid ("" when it can), and the file:line:col to blame. */
        char err[VEIL_PF_N][VEIL_POLICY_ERR_MAX];
        const char *where[VEIL_PF_N];
        int n_errors;
        const char *attrs[VEIL_POLICY_ATTRS_MAX]; /**< keys kept */
        size_t n_attrs;
        int special_feature_1;    /**< require_special_feature_1 */
        const veil_params_t *params;
};

/** The parameter table (one entry per field path, plus the options). */
extern const struct veil_param_def veil_policy_params[];

/** The field path of a policy field ("context.ip"). */
const char *veil_policy_field_path(enum veil_policy_field f);

/** Reads every policy from validated parameters. Returns the number of
 *  fields whose policy is invalid (0: all good); each one's message is in
 *  pol->err and its position in pol->where. Strings in the result point
 *  into `p` and live as long as it. */
int veil_policy_parse(struct veil_policy *pol, const veil_params_t *p);

/** Side of a geohash cell of `precision` characters, in words
 *  ("about 4.9 km × 4.9 km"). */
const char *veil_policy_geohash_size(int precision);

/** Device class of a front end's device field: one of desktop, mobile,
 *  tablet, tv (case-insensitive), anything else "other". Static strings. */
const char *veil_policy_device_class(const char *device);

#endif

/*
 * consent.h — the consent stage's configuration and state, shared by its
 * files: consent.c (the plugin: tiers per event, erase, export), record.c
 * (consent-topic records into the ledger, audit) and notice.c (the privacy
 * notice from the configuration).
 */
#ifndef VEIL_CONSENT_CONSENT_H
#define VEIL_CONSENT_CONSENT_H

#include <stddef.h>
#include <stdint.h>

#include <veil/veil.h>

#include "ledger.h"
#include "tcf.h"
#include "tiermap.h"

/** Longest user id accepted on the consent topic (bytes). */
#define VEIL_CONSENT_ID_MAX 512

/** The TCF policy version the purpose mapping (tiermap.h, README "IAB TCF
 *  v2.2 mapping") is written for: 4 is TCF 2.2, whose purposes 1-11 and
 *  legal-basis rules it relies on. A string of an earlier policy was
 *  consented to under other purpose texts (and LI for 3-6) and cannot
 *  grant under it; later ones (5, TCF 2.3) keep those purposes. */
#define VEIL_CONSENT_TCF_MIN_POLICY 4

/** Why an event got tier none (index into veil_consent_reasons). */
enum veil_consent_reason {
        VEIL_CONSENT_NO_RECORD = 0,
        VEIL_CONSENT_NOT_GRANTED,
        VEIL_CONSENT_GPC,
        VEIL_CONSENT_EVENT_REFUSES,
        VEIL_CONSENT_EVENT_INVALID,
        VEIL_CONSENT_NO_USER,
        VEIL_CONSENT_N_REASONS
};
extern const char *const veil_consent_reasons[VEIL_CONSENT_N_REASONS];

/** Where a consent record says it came from; stored as an index. */
extern const char *const veil_consent_sources[];
size_t veil_consent_source_index(const char *s, size_t len);

/** The validated `with:` block. */
struct veil_consent_cfg {
        struct veil_tiermap map;
        uint8_t gpc_withdraws;  /**< VEIL_PURPOSE_* bits */
        int serve_none;         /**< on_none: serve */
        int require_ledger;
        int64_t expected_users;
        int64_t tc_max_age_days; /**< 0: a TC string's age is not checked */
};

struct veil_consent {
        veil_stage_t *st;
        struct veil_consent_cfg cfg;
        struct veil_ledger ledger;
        struct veil_tcf tcf; /**< decode scratch, reused (no allocation) */
        int audit;           /**< the audit output is bound (keys checked) */
        int64_t clock_ms; /**< the latest batch clock seen */
        /* counters, for the log at shutdown and the tests */
        uint64_t tiers[4];
        uint64_t none[VEIL_CONSENT_N_REASONS];
        uint64_t records, rejected, stale, tombstones, access, erasures;
        uint64_t training_erasures; /**< training withdrawn alone */
};

/** The person's ledger entry for the key, or NULL: an access request's key
 *  (VEIL_LEDGER_ACCESS_KEY) is nobody's. */
struct veil_ledger_entry *veil_consent_find(const struct veil_consent *s,
                                            const struct veil_ledger_key *k);

/** Reads and checks the parameters; errors name the parameter's place. */
int veil_consent_cfg_load(struct veil_consent_cfg *c, const veil_params_t *p,
                          char *errstr, size_t errstr_size);

#define VEIL_CONSENT_DAY_MS 86400000LL

/** The UTC day (since the epoch) of a TC string's lastUpdated, given in
 *  deciseconds, as the ledger keeps it: 65535 (year 2149) at most, a string
 *  dated later being judged as if of that day. */
uint16_t veil_consent_tc_day(uint64_t last_updated_ds);
/** The last millisecond at which a TC string last updated on `day` may
 *  grant: the start of that day plus tc_max_age_days. INT64_MAX when
 *  tc_max_age_days is 0 (no limit). */
int64_t veil_consent_tc_until(const struct veil_consent *s, uint16_t day);
/** 1 when the entry's TC string allows nothing at at_ms: its lapse was
 *  applied, or at_ms is past veil_consent_tc_until. INT64_MIN asks about
 *  the applied lapse alone. 0 for an entry without a TC string, or with
 *  one that could not be used (VEIL_LEDGER_TC_UNUSABLE: it allows nothing
 *  anyway, and has no day to lapse from). */
int veil_consent_tc_lapsed(const struct veil_consent *s,
                           const struct veil_ledger_entry *e, int64_t at_ms);

/** Our purposes in force for a ledger entry at at_ms: its own grants,
 *  narrowed by its TC string (nothing once lapsed, veil_consent_tc_lapsed)
 *  and its GPC flag; nothing when that leaves neither personalization nor
 *  contextual (no tier: an event gets no training or analytics either). */
uint8_t veil_consent_allowed(const struct veil_consent *s,
                             const struct veil_ledger_entry *e, int64_t at_ms);

/** Decodes a TC string into s->tcf and checks that it may grant under our
 *  mapping when used at at_ms: a policy version of at least
 *  VEIL_CONSENT_TCF_MIN_POLICY and at_ms not past veil_consent_tc_until of
 *  its lastUpdated's day. 0, or an error (the string's own, or the
 *  refusal) with a message that never echoes the string; on error s->tcf
 *  holds nothing, and the caller treats the string as one that cannot be
 *  decoded: it allows nothing. But -VEIL_ENOMEM (the decoder's buffers
 *  could not grow) is no fault of the string: the caller returns it. */
int veil_consent_tc_decode(struct veil_consent *s, const char *tc, size_t len,
                           int64_t at_ms, char *errstr, size_t errstr_size);

/** When at_ms is past the limit of the entry's TC string and its lapse is
 *  not applied yet, applies it as a withdrawal: the string allows nothing
 *  from then on, and if anything was in force, the change is audited
 *  (withdrawn, source "expired", ts = the first millisecond past the
 *  limit, so that a restart that finds the lapse again writes the same
 *  record) and the person's erasure is requested. `id` is the raw user id
 *  (the ledger keeps none). Returns 0, or the audit's failure to emit
 *  (-VEIL_EINVAL: refused, the lapse is in force all the same). */
int veil_consent_lapse(struct veil_consent *s, struct veil_ledger_entry *e,
                       const char *id, size_t len, int64_t at_ms);

/** Applies one consent-topic record (on_side_record). */
int veil_consent_record(struct veil_consent *s,
                        const struct veil_side_record *r, char *errstr,
                        size_t errstr_size);

/** The plugin's notice callback. */
void veil_consent_notice(const veil_params_t *params, veil_notice_t *n);

/** "personalization, training" for a VEIL_PURPOSE_* mask (buf sized 64+);
 *  "nothing" when empty. */
const char *veil_consent_purpose_names(uint8_t mask, char *buf, size_t size);

#endif

/*
 * harness.h — the consent plugin's tests run it through the real host: a
 * pipeline built from YAML (consent, then the test stage `holder`, which
 * keeps per-person state), consent records encoded with the real schema
 * and handed over as side-input records, events added to batches, and
 * every produced record captured from the sink.
 */
#ifndef VEIL_CONSENT_TEST_HARNESS_H
#define VEIL_CONSENT_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "pipeline.h"

struct captured {
        char *topic;
        char *key;
        size_t key_len;
        void *value;
        size_t value_len;
        int dead_letter;
        char *error; /* dead letters: veil.error */
        char *stage; /* dead letters: veil.stage */
};

struct harness {
        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        struct veil_codec *consent, *audit, *access;
        struct captured *out;
        size_t n_out, cap_out;
        int64_t offset;
        /* Records (not dead letters) to this topic are refused as a
         * producer refuses one too large: -VEIL_EINVAL, nothing captured.
         * NULL: none. */
        const char *refuse_topic;
        size_t refused;
};

/** `with` is the consent stage's with: block as YAML flow text ("{}" for
 *  the defaults). Fails the test on any error. */
void h_open(struct harness *h, const char *with);
/** The pipeline's keys: section for the next open; "{ephemeral: true}"
 *  unless a test sets it. */
extern const char *h_keys;
/* YAML of a stage between consent and holder ("": none). */
extern const char *h_extra_stage;
/** Same, returning the host's code and message instead of failing. */
int h_try_open(struct harness *h, const char *with, char *err,
               size_t err_size);
void h_close(struct harness *h);

/** A consent record. pers/train/anal: 0/1; gpc: -1 absent, 0, 1; tc may be
 *  NULL; kind "consent" or "access". Returns what the host returned. */
int h_consent(struct harness *h, const char *key, const char *user,
              const char *kind, int pers, int train, int anal, int gpc,
              const char *tc, const char *source, int64_t ts);
/** Grant/withdraw shorthands: key = user, kind consent, source app. */
int h_grant(struct harness *h, const char *user, int pers, int train,
            int anal, int64_t ts);
int h_tombstone(struct harness *h, const char *user);
/** The Kafka timestamp of the side records that follow (0: 1700000000000
 *  plus the record's offset, as by default). */
extern int64_t h_side_ts_ms;
/** Raw bytes as a consent-topic record (NULL value: tombstone). */
int h_raw(struct harness *h, const void *key, size_t key_len,
          const void *value, size_t value_len);

/** What h_event's events carry when set (0 / NULL: 1700000000000, the
 *  batch's real clock, "item-1"). */
extern int64_t h_event_ts_ms, h_event_now_ms;
extern const char *h_event_item;
/** One event for `user` through a whole batch (begin, add, run); returns
 *  the event as the chain left it (strings valid until the next batch). */
const struct veil_event *h_event(struct harness *h, const char *user,
                                 const char *tc, int gpc);
/** Begins a batch without events (applies queued erasures/exports). */
void h_tick(struct harness *h);

/** Captured records on a topic: the count, and record i (NULL past it). */
size_t h_count(const struct harness *h, const char *topic);
const struct captured *h_at(const struct harness *h, const char *topic,
                            size_t i);
/** The decoded record i of topic (audit / access codec); valid until the
 *  next decode on that codec. */
const veil_rec_t *h_audit(struct harness *h, size_t i);
const veil_rec_t *h_access(struct harness *h, size_t i);
/** Access record i's section of `stage` as the JSON text between its
 *  braces ("" when the stage reported nothing or has no section). Caller
 *  frees. */
char *h_section(struct harness *h, size_t i, const char *stage);

/** A minimal TC string builder (test-only, independent of the decoder):
 *  purposes consented, purposes LI, special features, vendor consents
 *  (bitfield up to max vendor), vendor LI, optional publisher
 *  restrictions (purpose, type, one vendor each), and an optional
 *  publisher TC segment (what grants with the default vendor_id 0). */
struct tc_model {
        uint32_t purposes, purposes_li;
        uint16_t special;
        const int *vendors;
        size_t n_vendors;
        const int *vendors_li;
        size_t n_vendors_li;
        struct {
                int purpose, type, vendor;
        } restr[4];
        size_t n_restr;
        int policy; /* tcfPolicyVersion; 0 = 4 */
        /* The publisher TC segment: 0 none, 1 the core's purposes (consent
         * and LI) again, 2 pub_purposes and pub_purposes_li. */
        int pub;
        uint32_t pub_purposes, pub_purposes_li;
        /* created = lastUpdated, in ms since the epoch (written in
         * deciseconds, to the day as CMPs do); 0 = today, so that the
         * string is fresh for records at T0 (2023) and for events at the
         * batch's real clock alike (the stage refuses one over
         * tc_max_age_days before its use, but not one dated after it). */
        int64_t updated_ms;
};
void h_tc(const struct tc_model *m, char *out, size_t size);
/** Purpose mask from ids, 0-terminated. */
uint32_t h_purposes(int first, ...);

#endif

/*
 * ledger.h — the consent ledger: one small entry per person, found by a
 * keyed 128-bit hash of the user id.
 *
 * The raw id is never stored. SipHash-2-4 with a 128-bit output
 * (libsodium's crypto_shorthash_siphashx24) under a key drawn at random
 * when the ledger is created: the ledger is rebuilt from the consent topic
 * at every start, so the key never needs to outlive the process, and an
 * attacker who controls user ids cannot aim collisions at one slot. Two
 * different ids sharing all 128 bits is a 1-in-10^22 event at 10^7 users.
 *
 * Table: Robin Hood open addressing over 32-byte entries (two per cache
 * line), any capacity (the home slot is a multiply-shift of the hash, not a
 * mask), backward-shift deletion (no tombstones to sweep). It grows by 1.5x
 * when 3/4 full, so it is at least half full after a growth and an entry
 * costs at most 64 bytes of table: 10 million people fit in 640 MB.
 *
 * One ledger per stage; not thread-safe.
 */
#ifndef VEIL_CONSENT_LEDGER_H
#define VEIL_CONSENT_LEDGER_H

#include <stddef.h>
#include <stdint.h>

/* Our purposes, as bits of a uint8_t. */
#define VEIL_PURPOSE_PERSONALIZATION 0x01u
#define VEIL_PURPOSE_CONTEXTUAL 0x02u
#define VEIL_PURPOSE_TRAINING 0x04u
#define VEIL_PURPOSE_ANALYTICS 0x08u
#define VEIL_PURPOSE_ALL 0x0fu

/* Entry flags. */
#define VEIL_LEDGER_HAS_TCF 0x01u /**< the record carried a TC string */
#define VEIL_LEDGER_GPC 0x02u     /**< the record carried GPC = true */
/** Its TC string outgrew tc_max_age_days: it allows nothing now, and the
 *  lapse has been audited and the person's erasure requested (consent.c,
 *  veil_consent_lapse). A newer record clears it. */
#define VEIL_LEDGER_LAPSED 0x04u
/** Not a person: the key of an access request keyed apart from its person
 *  (access/<id>), held until its tombstone so that the tombstone is not
 *  kept as a person's refusal (require_ledger: false). Lookups of people
 *  skip it (veil_consent_find). */
#define VEIL_LEDGER_ACCESS_KEY 0x08u
/** Its TC string could not be used (not a valid TC string, a policy before
 *  TCF 2.2, or past tc_max_age_days at the record's ts; record.c): it
 *  allows nothing (tcf and sf are 0), tc_day holds no date, and it never
 *  lapses (veil_consent_tc_lapsed), so that nothing reports a lapse date
 *  for it. A newer record clears it; an older one can only set it. The
 *  ledger lives in memory alone (rebuilt from the consent topic at every
 *  start), so its flags are in no stored format. */
#define VEIL_LEDGER_TC_UNUSABLE 0x10u

struct veil_ledger_key {
        uint64_t k0, k1; /**< never both zero: that marks an empty slot */
};

/** What the ledger holds about one person: 32 bytes. */
struct veil_ledger_entry {
        struct veil_ledger_key key;
        int64_t ts_ms;    /**< `ts` of the record in force */
        uint16_t sf;      /**< TCF special-feature opt-ins of its TC string */
        uint8_t own;      /**< purposes the record grants (VEIL_PURPOSE_*) */
        uint8_t tcf;      /**< purposes its TC string allows (ALL if none) */
        uint8_t flags;    /**< VEIL_LEDGER_* */
        uint8_t source;   /**< index into the plugin's source names */
        uint16_t tc_day;  /**< its TC string's lastUpdated, in whole days
                               since the epoch (UTC): when it stops granting
                               (the day's start plus tc_max_age_days) */
};
_Static_assert(sizeof(struct veil_ledger_entry) == 32,
               "two ledger entries per cache line");

struct veil_ledger {
        struct veil_ledger_entry *slots;
        size_t cap, n;
        unsigned char hkey[16]; /**< SipHash key, random per process */
};

/** Creates an empty ledger sized for `expected` people (0: small).
 *  Returns 0 or -VEIL_ENOMEM. */
int veil_ledger_init(struct veil_ledger *l, size_t expected);
/** Frees the table and wipes the hash key. */
void veil_ledger_free(struct veil_ledger *l);

/** The keyed hash of a user id (any bytes). */
void veil_ledger_key(const struct veil_ledger *l, const void *id, size_t len,
                     struct veil_ledger_key *k);
/** Starts loading the cache line where the key's probe begins (batches
 *  hash every event first, then look up). */
void veil_ledger_prefetch(const struct veil_ledger *l,
                          const struct veil_ledger_key *k);
/** The entry for the key, or NULL. Valid until the next insert/remove. */
struct veil_ledger_entry *veil_ledger_find(const struct veil_ledger *l,
                                           const struct veil_ledger_key *k);
/** The entry for the key, created zeroed (but for its key) when missing;
 *  *created says which. NULL only when memory runs out. Valid until the
 *  next insert/remove. */
struct veil_ledger_entry *veil_ledger_insert(struct veil_ledger *l,
                                             const struct veil_ledger_key *k,
                                             int *created);
/** Removes the key's entry; 1 when there was one. */
int veil_ledger_remove(struct veil_ledger *l, const struct veil_ledger_key *k);

/** People held, and bytes of table memory they occupy. */
size_t veil_ledger_count(const struct veil_ledger *l);
size_t veil_ledger_bytes(const struct veil_ledger *l);

#endif

/*
 * tcf.h — a strict decoder of IAB TCF v2 (v2.2 layout) TC strings.
 *
 * A TC string is untrusted outside input and it decides whether personal
 * data may be used, so the decoder is strict: anything that does not follow
 * the bit layout exactly is an error, and an error means NO consent. On any
 * error the output is reset to "nothing decoded" (valid == 0, every field
 * zero, every set empty), so every query below answers 0 and a caller that
 * forgets to check the return value still denies.
 *
 * What is rejected (each with a message naming the segment, the bit offset
 * and the field): an empty string or empty segment; a character outside the
 * base64url alphabet (A-Z a-z 0-9 - _), except '=' padding at the end of a
 * segment when it completes a multiple of 4 characters (the Java reference
 * decoder accepts it); a segment shorter than its fields; a vendor bitfield
 * shorter than maxVendorId; a range entry with id 0, end < start, or (in a
 * vendor section) an id above that section's maxVendorId; version != 2;
 * consentLanguage / publisherCountryCode letters outside A-Z; a publisher
 * restriction with purpose 0 or > 24 or the reserved restriction type 3;
 * a segment type other than 1 (disclosed vendors), 2 (allowed vendors) or
 * 3 (publisher TC) after the core segment; the same segment type twice;
 * non-zero bits after the last field of a segment (encoders pad with
 * zeros; stray bits mean a mis-encoded or cut string); strings over 1 MiB.
 *
 * What is accepted as data, for the caller to judge: any tcfPolicyVersion,
 * cmpId, timestamps; duplicate or overlapping vendor ids in range entries
 * (a set, de-duplicated — iabtcf-es issue #201); optional segments in any
 * order.
 *
 * Memory: struct veil_tcf owns growable buffers (vendor bitmaps, restriction
 * ranges, a scratch buffer) that are kept across decodes, so decoding into
 * the same struct again allocates nothing once the buffers fit the largest
 * string seen. Zero-initialize the struct before its first use;
 * veil_tcf_clear() frees the buffers. One struct per thread.
 */
#ifndef VEIL_CONSENT_TCF_H
#define VEIL_CONSENT_TCF_H

#include <stddef.h>
#include <stdint.h>

/** The only TC string version this decoder reads. */
#define VEIL_TCF_VERSION 2
/** Purposes have 24 bits in the string; restriction purposes must fit. */
#define VEIL_TCF_MAX_PURPOSE 24
#define VEIL_TCF_MAX_SPECIAL_FEATURE 12
#define VEIL_TCF_MAX_CUSTOM_PURPOSE 63

/** Publisher restriction types (2-bit field). 3 is reserved and rejected. */
enum veil_tcf_restriction_type {
        VEIL_TCF_NOT_ALLOWED = 0,     /**< purpose flatly not allowed */
        VEIL_TCF_REQUIRE_CONSENT = 1, /**< only with consent */
        VEIL_TCF_REQUIRE_LI = 2       /**< only with legitimate interest */
};

/** A set of vendor ids 1..max_id. Id i is bit 63 - (i-1)%64 of
 *  bits[(i-1)/64] (the string's own bit order, so a bitfield is copied a
 *  word at a time); bits above max_id are zero. */
struct veil_tcf_vendors {
        uint64_t *bits;
        uint16_t max_id;
        uint8_t present;       /**< optional segments: 1 when in the string */
        uint8_t is_range;      /**< 1: the string used range encoding */
        uint16_t num_entries;  /**< range entries in the string */
        size_t cap_words;      /**< private: allocated size of bits */
};

/** An inclusive range of vendor ids. */
struct veil_tcf_range {
        uint16_t start, end;
};

/** One publisher restriction: its vendors are ranges[first .. first+count)
 *  of struct veil_tcf, sorted, merged and disjoint (the string may repeat
 *  ids; the set does not). */
struct veil_tcf_restriction {
        uint8_t purpose_id;
        uint8_t type; /**< enum veil_tcf_restriction_type */
        uint32_t first, count;
};

struct veil_tcf {
        int valid; /**< 1 after a successful decode, else 0 (= no consent) */

        /* core segment, in string order */
        uint8_t version;
        uint64_t created;      /**< deciseconds since the epoch, UTC */
        uint64_t last_updated; /**< deciseconds since the epoch, UTC */
        uint16_t cmp_id;
        uint16_t cmp_version;
        uint8_t consent_screen;
        char consent_language[3]; /**< two letters A-Z and a NUL */
        uint16_t vendor_list_version;
        uint8_t tcf_policy_version;
        uint8_t is_service_specific;
        uint8_t use_non_standard_texts; /**< v2.0: useNonStandardStacks */
        /* Bit i-1 holds id i in the masks below. */
        uint16_t special_feature_optins;  /**< 12 bits */
        uint32_t purpose_consents;        /**< 24 bits */
        uint32_t purpose_li;              /**< 24 bits, LI transparency */
        uint8_t purpose_one_treatment;
        char publisher_cc[3]; /**< two letters A-Z and a NUL */
        struct veil_tcf_vendors vendor_consents;
        struct veil_tcf_vendors vendor_li;
        struct veil_tcf_restriction *restrictions;
        size_t num_restrictions;
        struct veil_tcf_range *ranges;
        size_t num_ranges;

        /* optional segments (present == 0 when absent) */
        struct veil_tcf_vendors disclosed_vendors; /**< segment type 1 */
        struct veil_tcf_vendors allowed_vendors;   /**< segment type 2 */
        uint8_t has_publisher_tc;                  /**< segment type 3 */
        uint32_t pub_purpose_consents;             /**< 24 bits */
        uint32_t pub_purpose_li;                   /**< 24 bits */
        uint8_t num_custom_purposes;               /**< 0..63 */
        uint64_t custom_purpose_consents;          /**< num_custom bits */
        uint64_t custom_purpose_li;

        /* private: capacities and scratch, kept across decodes */
        size_t restrictions_cap, ranges_cap;
        uint8_t *scratch;
        size_t scratch_cap;
};

/**
 * Decodes the TC string s[0..len) into out (which must have been zeroed or
 * used before). Returns 0, or -VEIL_EDECODE for a malformed string,
 * -VEIL_ENOMEM, -VEIL_EINVAL for NULL arguments; on error errstr says what
 * and where (never the string's content) and out holds nothing (valid 0).
 */
int veil_tcf_decode(const char *s, size_t len, struct veil_tcf *out,
                    char *errstr, size_t errstr_size);
/** Frees every buffer and leaves t zeroed (reusable, holds nothing). */
void veil_tcf_clear(struct veil_tcf *t);
/** Forgets what t holds (valid 0, every query answers 0) but keeps its
 *  buffers: for a caller that decoded a string and then refuses it. */
void veil_tcf_forget(struct veil_tcf *t);

/* Queries: 1 or 0. Ids out of range and an undecoded t answer 0. They
 * report the signal as encoded; legal-basis policy is the caller's. In
 * particular TCF 2.2 allows no legitimate interest for purposes 1, 3, 4,
 * 5 and 6 (storage, ad and content profiles), whatever the LI bit says,
 * and the decoder keeps the bit so that a policy-2 string reads as sent. */
int veil_tcf_purpose_consent(const struct veil_tcf *t, int purpose);
int veil_tcf_purpose_li(const struct veil_tcf *t, int purpose);
int veil_tcf_special_feature(const struct veil_tcf *t, int feature);
int veil_tcf_vendor_consent(const struct veil_tcf *t, int vendor_id);
int veil_tcf_vendor_li(const struct veil_tcf *t, int vendor_id);
/** Answers 0 when the segment is absent: check vendors.present first. */
int veil_tcf_vendor_disclosed(const struct veil_tcf *t, int vendor_id);
int veil_tcf_vendor_allowed(const struct veil_tcf *t, int vendor_id);
int veil_tcf_pub_purpose_consent(const struct veil_tcf *t, int purpose);
int veil_tcf_pub_purpose_li(const struct veil_tcf *t, int purpose);
int veil_tcf_custom_purpose_consent(const struct veil_tcf *t, int purpose);
int veil_tcf_custom_purpose_li(const struct veil_tcf *t, int purpose);
/** Membership in any decoded set. */
int veil_tcf_vendors_has(const struct veil_tcf_vendors *v, int vendor_id);
int veil_tcf_restriction_has(const struct veil_tcf *t,
                             const struct veil_tcf_restriction *r,
                             int vendor_id);

/**
 * The publisher restrictions that apply to vendor_id for purpose: a mask
 * with bit (1 << type) set for every restriction type listing the vendor
 * under that purpose, 0 when none does. The policy allows one type per
 * (purpose, vendor); a string that lists several is answered with all of
 * them so the caller can apply the strictest (NOT_ALLOWED first) rather
 * than the decoder silently picking one.
 */
unsigned veil_tcf_restrictions(const struct veil_tcf *t, int purpose,
                               int vendor_id);

#endif

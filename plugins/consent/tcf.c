/*
 * tcf.c — strict IAB TCF v2 TC-string decoder (see tcf.h for what is
 * rejected and why).
 *
 * Each segment is base64url-decoded into a scratch byte buffer padded with
 * zero bytes, so every field (at most 57 bits) is one unaligned big-endian
 * 64-bit load and a shift, and a vendor bitfield is copied 64 ids at a time.
 * Every read is bounds-checked against the segment's bit count first; the
 * padding only makes the loads themselves safe.
 */
#include "tcf.h"

#include "veil/veil.h"

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No real TC string comes near this (Kafka's default record limit is 1 MB);
 * it keeps every bit offset and range index far from overflow. */
#define TCF_MAX_LEN ((size_t)1 << 20)
/* Zero bytes after a decoded segment: a 64-bit load at the last byte and
 * the extra byte of an unaligned 64-bit bitfield word stay inside. */
#define SCRATCH_PAD 16

enum seg_type {
        SEG_CORE = 0,
        SEG_DISCLOSED = 1,
        SEG_ALLOWED = 2,
        SEG_PUBLISHER_TC = 3
};

static const char *const seg_names[] = {"core", "disclosedVendors",
                                        "allowedVendors", "publisherTC"};

#define X 0xff
static const uint8_t b64url[256] = {
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,
        52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,
        X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
        15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  63,
        X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
        41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
};
#undef X

/* Decoding state of one segment. The field path (sect[sect_idx].entries
 * [entry].field) is kept as parts and only formatted when a message is. */
struct dec {
        const uint8_t *buf;
        size_t nbits, pos;
        int segno;        /* 0 = core, as counted in the string */
        enum seg_type seg;
        const char *sect; /* "vendorConsents", ... or NULL */
        long sect_idx;    /* restriction index, or -1 */
        long entry;       /* range entry index, or -1 */
        char *errstr;
        size_t errstr_size;
};

static int fail(struct dec *d, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct dec *d, int code, const char *fmt, ...) {
        if (d->errstr && d->errstr_size) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(d->errstr, d->errstr_size, fmt, ap);
                va_end(ap);
        }
        return code;
}

static void field_path(const struct dec *d, const char *field, char *out,
                       size_t size) {
        char idx[24] = "", ent[32] = "";
        if (d->sect_idx >= 0)
                snprintf(idx, sizeof(idx), "[%ld]", d->sect_idx);
        if (d->entry >= 0)
                snprintf(ent, sizeof(ent), "entries[%ld].", d->entry);
        if (d->sect)
                snprintf(out, size, "%s%s.%s%s", d->sect, idx, ent, field);
        else
                snprintf(out, size, "%s", field);
}

/* "core segment" or "disclosedVendors segment (segment 2)". */
static void seg_label(const struct dec *d, char *out, size_t size) {
        if (d->segno == 0)
                snprintf(out, size, "core segment");
        else
                snprintf(out, size, "%s segment (segment %d)",
                         seg_names[d->seg], d->segno + 1);
}

static int fail_at(struct dec *d, const char *field, const char *what) {
        char path[128], seg[64];
        field_path(d, field, path, sizeof(path));
        seg_label(d, seg, sizeof(seg));
        return fail(d, -VEIL_EDECODE, "%s at bit %zu of the %s: %s", path,
                    d->pos, seg, what);
}

static int truncated(struct dec *d, size_t need, const char *field) {
        char path[128], seg[64];
        field_path(d, field, path, sizeof(path));
        seg_label(d, seg, sizeof(seg));
        return fail(d, -VEIL_EDECODE,
                    "truncated %s at bit %zu, need %zu bits for %s, %zu left",
                    seg, d->pos, need, path, d->nbits - d->pos);
}

static inline uint64_t load_be64(const uint8_t *p) {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return be64toh(v);
}

/* n in 1..57: the n bits at pos, first bit most significant. */
static inline uint64_t peek(const struct dec *d, unsigned n) {
        uint64_t v = load_be64(d->buf + (d->pos >> 3)) << (d->pos & 7);
        return v >> (64 - n);
}

/* 64 bits at any bit offset (a bitfield word). */
static inline uint64_t peek64_at(const uint8_t *buf, size_t pos) {
        const uint8_t *p = buf + (pos >> 3);
        unsigned s = pos & 7;
        uint64_t v = load_be64(p);
        if (s)
                v = (v << s) | (p[8] >> (8 - s));
        return v;
}

static inline int rd(struct dec *d, unsigned n, const char *field,
                     uint64_t *v) {
        if (d->nbits - d->pos < n) {
                /* A literal code, so the compiler sees *v is set on 0. */
                truncated(d, n, field);
                return -VEIL_EDECODE;
        }
        *v = peek(d, n);
        d->pos += n;
        return 0;
}

/* Up to 64 bits (custom purposes have up to 63). */
static int rd_wide(struct dec *d, unsigned n, const char *field,
                   uint64_t *v) {
        uint64_t hi = 0, lo = 0;
        if (d->nbits - d->pos < n) {
                truncated(d, n, field);
                return -VEIL_EDECODE;
        }
        if (n > 32) {
                hi = peek(d, 32);
                d->pos += 32;
                n -= 32;
        }
        if (n)
                lo = peek(d, n);
        d->pos += n;
        *v = (hi << n) | lo;
        return 0;
}

/* Bit strings list id 1 first; the struct keeps id i at bit i-1. */
static uint64_t reverse_bits(uint64_t v, unsigned n) {
        if (!n)
                return 0;
        v = ((v >> 1) & 0x5555555555555555ULL) |
            ((v & 0x5555555555555555ULL) << 1);
        v = ((v >> 2) & 0x3333333333333333ULL) |
            ((v & 0x3333333333333333ULL) << 2);
        v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) |
            ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
        v = __builtin_bswap64(v);
        return v >> (64 - n);
}

/* Keeps p when it is already big enough; NULL only when realloc fails. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
        if (need <= *cap && p)
                return p;
        size_t n = *cap ? *cap : 16;
        while (n < need)
                n *= 2;
        void *q = realloc(p, n * elem);
        if (!q)
                return NULL;
        *cap = n;
        return q;
}

static int nomem(struct dec *d, const char *what) {
        return fail(d, -VEIL_ENOMEM, "out of memory for %s", what);
}

/* ids lo..hi, 0-based, inclusive, into a bitmap in string bit order. */
static void set_range(uint64_t *w, unsigned lo, unsigned hi) {
        unsigned wl = lo >> 6, wh = hi >> 6;
        uint64_t ml = ~0ULL >> (lo & 63);
        uint64_t mh = ~0ULL << (63 - (hi & 63));
        if (wl == wh) {
                w[wl] |= ml & mh;
                return;
        }
        w[wl] |= ml;
        for (unsigned i = wl + 1; i < wh; i++)
                w[i] = ~0ULL;
        w[wh] |= mh;
}

/* One range entry (IsARange, StartOrOnlyVendorId, [EndVendorId]). max is
 * the section's maxVendorId, or -1 where there is none (restrictions). */
static int rd_entry(struct dec *d, long max, unsigned *start,
                    unsigned *end) {
        uint64_t is_range, a, b;
        if (rd(d, 1, "isARange", &is_range))
                return -VEIL_EDECODE;
        size_t at_a = d->pos, at_b = d->pos + 16, after;
        if (rd(d, 16, "startOrOnlyVendorId", &a))
                return -VEIL_EDECODE;
        b = a;
        if (is_range && rd(d, 16, "endVendorId", &b))
                return -VEIL_EDECODE;
        after = d->pos;
        if (a == 0) {
                d->pos = at_a;
                return fail_at(d, "startOrOnlyVendorId",
                               "vendor id 0; vendor ids start at 1");
        }
        if (b < a) {
                d->pos = at_b;
                return fail_at(d, "endVendorId",
                               "range end is below its start; a range "
                               "needs start <= end");
        }
        if (max >= 0 && (long)b > max) {
                char what[96];
                snprintf(what, sizeof(what),
                         "vendor id %u is above maxVendorId %ld",
                         (unsigned)b, max);
                d->pos = is_range ? at_b : at_a;
                return fail_at(d, is_range ? "endVendorId"
                                           : "startOrOnlyVendorId",
                               what);
        }
        d->pos = after;
        *start = (unsigned)a;
        *end = (unsigned)b;
        return 0;
}

/* MaxVendorId, IsRangeEncoding, then a bitfield or NumEntries + entries:
 * the layout shared by both core vendor sections and segments 1 and 2. */
static int rd_vendors(struct dec *d, struct veil_tcf_vendors *v,
                      const char *sect) {
        uint64_t max, is_range, n;
        d->sect = sect;
        d->sect_idx = -1;
        d->entry = -1;
        if (rd(d, 16, "maxVendorId", &max) ||
            rd(d, 1, "isRangeEncoding", &is_range))
                return -VEIL_EDECODE;
        size_t words = ((size_t)max + 63) / 64;
        if (words) {
                uint64_t *b = grow(v->bits, &v->cap_words, words,
                                   sizeof(*b));
                if (!b)
                        return nomem(d, sect);
                v->bits = b;
        }
        v->max_id = (uint16_t)max;
        v->is_range = (uint8_t)is_range;
        v->present = 1;
        if (!is_range) {
                if (d->nbits - d->pos < max)
                        return truncated(d, max, "bitField");
                for (size_t w = 0; w < words; w++)
                        v->bits[w] = peek64_at(d->buf, d->pos + 64 * w);
                if (max & 63)
                        v->bits[words - 1] &= ~0ULL << (64 - (max & 63));
                d->pos += max;
                return 0;
        }
        if (words)
                memset(v->bits, 0, words * sizeof(*v->bits));
        if (rd(d, 12, "numEntries", &n))
                return -VEIL_EDECODE;
        v->num_entries = (uint16_t)n;
        for (unsigned e = 0; e < n; e++) {
                unsigned a, b;
                d->entry = e;
                if (rd_entry(d, (long)max, &a, &b))
                        return -VEIL_EDECODE;
                set_range(v->bits, a - 1, b - 1);
        }
        d->entry = -1;
        return 0;
}

static int cmp_range(const void *x, const void *y) {
        const struct veil_tcf_range *a = x, *b = y;
        return (int)a->start - (int)b->start;
}

/* Sorts and merges overlapping or adjacent ranges in place: lookups then
 * binary-search, and the JSON lists each id once. */
static uint32_t normalize(struct veil_tcf_range *r, uint32_t n) {
        if (n < 2)
                return n;
        for (uint32_t i = 1; i < n; i++) {
                if (r[i].start < r[i - 1].start) {
                        qsort(r, n, sizeof(*r), cmp_range);
                        break;
                }
        }
        uint32_t out = 0;
        for (uint32_t i = 1; i < n; i++) {
                if ((unsigned)r[i].start <= (unsigned)r[out].end + 1) {
                        if (r[i].end > r[out].end)
                                r[out].end = r[i].end;
                } else {
                        r[++out] = r[i];
                }
        }
        return out + 1;
}

static int rd_restrictions(struct dec *d, struct veil_tcf *t) {
        uint64_t n;
        d->sect = NULL;
        d->sect_idx = -1;
        d->entry = -1;
        if (rd(d, 12, "numPubRestrictions", &n))
                return -VEIL_EDECODE;
        if (!n)
                return 0;
        /* A restriction takes at least 20 bits and an entry at least 17,
         * so the bits left bound both counts: reserve once, before any
         * pointer into the arrays is taken. */
        size_t left = d->nbits - d->pos;
        size_t max_r = left / 20 + 1, max_e = left / 17 + 1;
        if (max_r > n)
                max_r = n;
        void *p = grow(t->restrictions, &t->restrictions_cap, max_r,
                       sizeof(*t->restrictions));
        if (!p)
                return nomem(d, "publisherRestrictions");
        t->restrictions = p;
        p = grow(t->ranges, &t->ranges_cap, max_e, sizeof(*t->ranges));
        if (!p)
                return nomem(d, "publisherRestrictions");
        t->ranges = p;

        d->sect = "publisherRestrictions";
        for (unsigned i = 0; i < n; i++) {
                uint64_t purpose, type, entries;
                d->sect_idx = i;
                d->entry = -1;
                if (rd(d, 6, "purposeId", &purpose))
                        return -VEIL_EDECODE;
                if (purpose == 0 || purpose > VEIL_TCF_MAX_PURPOSE) {
                        d->pos -= 6;
                        return fail_at(d, "purposeId",
                                       "purpose id out of range; valid "
                                       "are 1..24");
                }
                if (rd(d, 2, "restrictionType", &type))
                        return -VEIL_EDECODE;
                if (type == 3) {
                        d->pos -= 2;
                        return fail_at(d, "restrictionType",
                                       "type 3 is reserved; valid are 0 "
                                       "(not allowed), 1 (require "
                                       "consent), 2 (require legitimate "
                                       "interest)");
                }
                if (rd(d, 12, "numEntries", &entries))
                        return -VEIL_EDECODE;
                /* Cannot trigger (see the bound above); kept so a wrong
                 * bound fails safe instead of writing out of bounds. */
                if (i >= t->restrictions_cap)
                        return nomem(d, "publisherRestrictions");
                struct veil_tcf_restriction *r = &t->restrictions[i];
                r->purpose_id = (uint8_t)purpose;
                r->type = (uint8_t)type;
                r->first = (uint32_t)t->num_ranges;
                for (unsigned e = 0; e < entries; e++) {
                        unsigned a, b;
                        d->entry = e;
                        if (rd_entry(d, -1, &a, &b))
                                return -VEIL_EDECODE;
                        if (t->num_ranges >= t->ranges_cap)
                                return nomem(d, "publisherRestrictions");
                        t->ranges[t->num_ranges].start = (uint16_t)a;
                        t->ranges[t->num_ranges].end = (uint16_t)b;
                        t->num_ranges++;
                }
                r->count = normalize(&t->ranges[r->first],
                                     (uint32_t)(t->num_ranges - r->first));
                t->num_ranges = r->first + r->count;
                t->num_restrictions = i + 1;
        }
        return 0;
}

/* Encoders pad to a byte or 24-bit boundary with zeros; anything else
 * after the last field is a cut or mis-encoded string. */
static int rd_padding(struct dec *d, const char *last_field) {
        while (d->pos < d->nbits) {
                size_t left = d->nbits - d->pos;
                unsigned n = left > 57 ? 57 : (unsigned)left;
                uint64_t v = peek(d, n);
                if (v) {
                        char seg[64];
                        size_t at = d->pos + n - 64 +
                                    (size_t)__builtin_clzll(v);
                        seg_label(d, seg, sizeof(seg));
                        return fail(d, -VEIL_EDECODE,
                                    "non-zero padding at bit %zu of the "
                                    "%s: the bits after %s must be 0",
                                    at, seg, last_field);
                }
                d->pos += n;
        }
        return 0;
}

static int rd_letters(struct dec *d, const char *field, char out[3]) {
        uint64_t v;
        if (rd(d, 12, field, &v))
                return -VEIL_EDECODE;
        unsigned a = (unsigned)(v >> 6), b = (unsigned)(v & 63);
        if (a > 25 || b > 25) {
                d->pos -= 12;
                return fail_at(d, field,
                               "letter value above 25; each of the two "
                               "6-bit letters is 0..25 for A..Z");
        }
        out[0] = (char)('A' + a);
        out[1] = (char)('A' + b);
        out[2] = '\0';
        return 0;
}

#define RD(n, field, dst)                                                \
        do {                                                             \
                uint64_t v_;                                             \
                if (rd(d, (n), (field), &v_))                            \
                        return -VEIL_EDECODE;                            \
                (dst) = v_;                                              \
        } while (0)

static int rd_core(struct dec *d, struct veil_tcf *t) {
        uint64_t v;
        int rc;
        d->sect = NULL;
        d->sect_idx = d->entry = -1;
        if (rd(d, 6, "version", &v))
                return -VEIL_EDECODE;
        if (v != VEIL_TCF_VERSION)
                return fail(d, -VEIL_EDECODE,
                            "unsupported TC string version %u at bit 0 of "
                            "the core segment: only version 2 is decoded",
                            (unsigned)v);
        t->version = (uint8_t)v;
        RD(36, "created", t->created);
        RD(36, "lastUpdated", t->last_updated);
        RD(12, "cmpId", t->cmp_id);
        RD(12, "cmpVersion", t->cmp_version);
        RD(6, "consentScreen", t->consent_screen);
        if ((rc = rd_letters(d, "consentLanguage", t->consent_language)))
                return rc;
        RD(12, "vendorListVersion", t->vendor_list_version);
        RD(6, "tcfPolicyVersion", t->tcf_policy_version);
        RD(1, "isServiceSpecific", t->is_service_specific);
        RD(1, "useNonStandardTexts", t->use_non_standard_texts);
        RD(12, "specialFeatureOptins", v);
        t->special_feature_optins = (uint16_t)reverse_bits(v, 12);
        RD(24, "purposeConsents", v);
        t->purpose_consents = (uint32_t)reverse_bits(v, 24);
        RD(24, "purposeLegitimateInterests", v);
        t->purpose_li = (uint32_t)reverse_bits(v, 24);
        RD(1, "purposeOneTreatment", t->purpose_one_treatment);
        if ((rc = rd_letters(d, "publisherCountryCode", t->publisher_cc)))
                return rc;
        if ((rc = rd_vendors(d, &t->vendor_consents, "vendorConsents")) ||
            (rc = rd_vendors(d, &t->vendor_li,
                             "vendorLegitimateInterests")) ||
            (rc = rd_restrictions(d, t)))
                return rc;
        d->sect = NULL;
        d->sect_idx = d->entry = -1;
        return rd_padding(d, "publisherRestrictions");
}

static int rd_publisher_tc(struct dec *d, struct veil_tcf *t) {
        uint64_t v, n;
        RD(24, "pubPurposesConsent", v);
        t->pub_purpose_consents = (uint32_t)reverse_bits(v, 24);
        RD(24, "pubPurposesLITransparency", v);
        t->pub_purpose_li = (uint32_t)reverse_bits(v, 24);
        RD(6, "numCustomPurposes", n);
        t->num_custom_purposes = (uint8_t)n;
        if (rd_wide(d, (unsigned)n, "customPurposesConsent", &v))
                return -VEIL_EDECODE;
        t->custom_purpose_consents = reverse_bits(v, (unsigned)n);
        if (rd_wide(d, (unsigned)n, "customPurposesLITransparency", &v))
                return -VEIL_EDECODE;
        t->custom_purpose_li = reverse_bits(v, (unsigned)n);
        t->has_publisher_tc = 1;
        return rd_padding(d, "customPurposesLITransparency");
}

static int rd_optional(struct dec *d, struct veil_tcf *t, unsigned *seen) {
        uint64_t type;
        int rc;
        d->sect = NULL;
        d->sect_idx = d->entry = -1;
        if (rd(d, 3, "segmentType", &type))
                return -VEIL_EDECODE;
        if (type == SEG_CORE || type > SEG_PUBLISHER_TC)
                return fail(d, -VEIL_EDECODE,
                            "segment %d has type %u: after the core "
                            "segment valid types are 1 (disclosedVendors), "
                            "2 (allowedVendors), 3 (publisherTC)",
                            d->segno + 1, (unsigned)type);
        d->seg = (enum seg_type)type;
        if (*seen & (1u << type))
                return fail(d, -VEIL_EDECODE,
                            "segment %d repeats segment type %u (%s); "
                            "each type may appear once",
                            d->segno + 1, (unsigned)type, seg_names[type]);
        *seen |= 1u << type;
        switch (type) {
        case SEG_DISCLOSED:
                rc = rd_vendors(d, &t->disclosed_vendors, "disclosedVendors");
                break;
        case SEG_ALLOWED:
                rc = rd_vendors(d, &t->allowed_vendors, "allowedVendors");
                break;
        default:
                return rd_publisher_tc(d, t);
        }
        if (rc)
                return rc;
        d->sect = NULL;
        d->entry = -1;
        return rd_padding(d, seg_names[type]);
}

/* Base64url segment s[0..n) (at offset off of the string) into scratch. */
static int unbase64(struct dec *d, struct veil_tcf *t, const char *s,
                    size_t n, size_t off) {
        size_t pads = 0;
        while (n && s[n - 1] == '=') {
                n--;
                pads++;
        }
        if (pads && (pads > 2 || (n + pads) % 4 || n == 0))
                return fail(d, -VEIL_EDECODE,
                            "bad '=' padding at offset %zu (segment %d): "
                            "at most two '=' that complete the segment to "
                            "a multiple of 4 characters",
                            off + n, d->segno + 1);
        size_t bytes = (n * 6 + 7) / 8 + SCRATCH_PAD;
        uint8_t *buf = grow(t->scratch, &t->scratch_cap, bytes, 1);
        if (!buf)
                return nomem(d, "the decoded segment");
        t->scratch = buf;
        const uint8_t *in = (const uint8_t *)s;
        uint8_t *o = buf;
        size_t i = 0;
        for (; i + 4 <= n; i += 4) {
                uint32_t a = b64url[in[i]], b = b64url[in[i + 1]];
                uint32_t c = b64url[in[i + 2]], e = b64url[in[i + 3]];
                if ((a | b | c | e) & 0x80)
                        break;
                uint32_t v = a << 18 | b << 12 | c << 6 | e;
                o[0] = (uint8_t)(v >> 16);
                o[1] = (uint8_t)(v >> 8);
                o[2] = (uint8_t)v;
                o += 3;
        }
        uint32_t v = 0;
        size_t tail = 0;
        for (; i < n; i++, tail++) {
                uint32_t c = b64url[in[i]];
                if (c & 0x80)
                        return fail(d, -VEIL_EDECODE,
                                    "invalid character at offset %zu "
                                    "(segment %d): valid are A-Z a-z 0-9 "
                                    "- _, '.' between segments and '=' "
                                    "padding at a segment's end",
                                    off + i, d->segno + 1);
                v = v << 6 | c;
        }
        /* 1..3 leftover characters: 6, 12 or 18 bits, left-aligned. */
        if (tail == 1) {
                o[0] = (uint8_t)(v << 2);
                o += 1;
        } else if (tail == 2) {
                v <<= 4;
                o[0] = (uint8_t)(v >> 8);
                o[1] = (uint8_t)v;
                o += 2;
        } else if (tail == 3) {
                v <<= 6;
                o[0] = (uint8_t)(v >> 16);
                o[1] = (uint8_t)(v >> 8);
                o[2] = (uint8_t)v;
                o += 3;
        }
        memset(o, 0, SCRATCH_PAD);
        d->buf = buf;
        d->nbits = n * 6;
        d->pos = 0;
        return 0;
}

/* Forgets the decoded content but keeps the buffers for the next decode. */
static void reset(struct veil_tcf *t) {
        struct veil_tcf k = *t;
        memset(t, 0, sizeof(*t));
        t->vendor_consents.bits = k.vendor_consents.bits;
        t->vendor_consents.cap_words = k.vendor_consents.cap_words;
        t->vendor_li.bits = k.vendor_li.bits;
        t->vendor_li.cap_words = k.vendor_li.cap_words;
        t->disclosed_vendors.bits = k.disclosed_vendors.bits;
        t->disclosed_vendors.cap_words = k.disclosed_vendors.cap_words;
        t->allowed_vendors.bits = k.allowed_vendors.bits;
        t->allowed_vendors.cap_words = k.allowed_vendors.cap_words;
        t->restrictions = k.restrictions;
        t->restrictions_cap = k.restrictions_cap;
        t->ranges = k.ranges;
        t->ranges_cap = k.ranges_cap;
        t->scratch = k.scratch;
        t->scratch_cap = k.scratch_cap;
}

int veil_tcf_decode(const char *s, size_t len, struct veil_tcf *out,
                    char *errstr, size_t errstr_size) {
        struct dec d = {.errstr = errstr, .errstr_size = errstr_size,
                        .sect_idx = -1, .entry = -1};
        if (!out)
                return fail(&d, -VEIL_EINVAL,
                            "veil_tcf_decode: out is NULL");
        reset(out);
        if (!s && len)
                return fail(&d, -VEIL_EINVAL,
                            "veil_tcf_decode: string is NULL");
        if (len == 0)
                return fail(&d, -VEIL_EDECODE,
                            "empty TC string: it needs at least the core "
                            "segment");
        if (len > TCF_MAX_LEN)
                return fail(&d, -VEIL_EDECODE,
                            "TC string of %zu characters: at most %zu are "
                            "accepted",
                            len, TCF_MAX_LEN);
        unsigned seen = 1u << SEG_CORE;
        size_t start = 0;
        int rc = 0;
        for (d.segno = 0;; d.segno++) {
                const char *dot = memchr(s + start, '.', len - start);
                size_t end = dot ? (size_t)(dot - s) : len;
                if (end == start) {
                        rc = fail(&d, -VEIL_EDECODE,
                                  "empty segment %d at offset %zu: "
                                  "segments are separated by single '.' "
                                  "and none is empty",
                                  d.segno + 1, start);
                        break;
                }
                d.seg = SEG_CORE;
                rc = unbase64(&d, out, s + start, end - start, start);
                if (rc)
                        break;
                rc = d.segno == 0 ? rd_core(&d, out)
                                  : rd_optional(&d, out, &seen);
                if (rc || !dot)
                        break;
                start = end + 1;
        }
        if (rc) {
                reset(out);
                return rc;
        }
        out->valid = 1;
        return 0;
}

void veil_tcf_forget(struct veil_tcf *t) {
        if (t)
                reset(t);
}

void veil_tcf_clear(struct veil_tcf *t) {
        if (!t)
                return;
        free(t->vendor_consents.bits);
        free(t->vendor_li.bits);
        free(t->disclosed_vendors.bits);
        free(t->allowed_vendors.bits);
        free(t->restrictions);
        free(t->ranges);
        free(t->scratch);
        memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */
/* ------------------------------------------------------------------ */

static int mask_has(const struct veil_tcf *t, uint64_t mask, int id,
                    int max) {
        if (!t || !t->valid || id < 1 || id > max)
                return 0;
        return (int)((mask >> (id - 1)) & 1);
}

int veil_tcf_purpose_consent(const struct veil_tcf *t, int purpose) {
        return mask_has(t, t ? t->purpose_consents : 0, purpose,
                        VEIL_TCF_MAX_PURPOSE);
}

int veil_tcf_purpose_li(const struct veil_tcf *t, int purpose) {
        return mask_has(t, t ? t->purpose_li : 0, purpose,
                        VEIL_TCF_MAX_PURPOSE);
}

int veil_tcf_special_feature(const struct veil_tcf *t, int feature) {
        return mask_has(t, t ? t->special_feature_optins : 0, feature,
                        VEIL_TCF_MAX_SPECIAL_FEATURE);
}

int veil_tcf_pub_purpose_consent(const struct veil_tcf *t, int purpose) {
        return mask_has(t, t ? t->pub_purpose_consents : 0, purpose,
                        VEIL_TCF_MAX_PURPOSE);
}

int veil_tcf_pub_purpose_li(const struct veil_tcf *t, int purpose) {
        return mask_has(t, t ? t->pub_purpose_li : 0, purpose,
                        VEIL_TCF_MAX_PURPOSE);
}

int veil_tcf_custom_purpose_consent(const struct veil_tcf *t, int purpose) {
        return mask_has(t, t ? t->custom_purpose_consents : 0, purpose,
                        t ? t->num_custom_purposes : 0);
}

int veil_tcf_custom_purpose_li(const struct veil_tcf *t, int purpose) {
        return mask_has(t, t ? t->custom_purpose_li : 0, purpose,
                        t ? t->num_custom_purposes : 0);
}

int veil_tcf_vendors_has(const struct veil_tcf_vendors *v, int vendor_id) {
        if (!v || vendor_id < 1 || vendor_id > v->max_id)
                return 0;
        unsigned i = (unsigned)vendor_id - 1;
        return (int)((v->bits[i >> 6] >> (63 - (i & 63))) & 1);
}

int veil_tcf_vendor_consent(const struct veil_tcf *t, int vendor_id) {
        return t && t->valid &&
               veil_tcf_vendors_has(&t->vendor_consents, vendor_id);
}

int veil_tcf_vendor_li(const struct veil_tcf *t, int vendor_id) {
        return t && t->valid && veil_tcf_vendors_has(&t->vendor_li, vendor_id);
}

int veil_tcf_vendor_disclosed(const struct veil_tcf *t, int vendor_id) {
        return t && t->valid &&
               veil_tcf_vendors_has(&t->disclosed_vendors, vendor_id);
}

int veil_tcf_vendor_allowed(const struct veil_tcf *t, int vendor_id) {
        return t && t->valid &&
               veil_tcf_vendors_has(&t->allowed_vendors, vendor_id);
}

int veil_tcf_restriction_has(const struct veil_tcf *t,
                             const struct veil_tcf_restriction *r,
                             int vendor_id) {
        if (!t || !t->valid || !r || vendor_id < 1)
                return 0;
        const struct veil_tcf_range *g = t->ranges + r->first;
        uint32_t lo = 0, hi = r->count;
        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (vendor_id < g[mid].start)
                        hi = mid;
                else if (vendor_id > g[mid].end)
                        lo = mid + 1;
                else
                        return 1;
        }
        return 0;
}

unsigned veil_tcf_restrictions(const struct veil_tcf *t, int purpose,
                               int vendor_id) {
        unsigned mask = 0;
        if (!t || !t->valid)
                return 0;
        for (size_t i = 0; i < t->num_restrictions; i++) {
                const struct veil_tcf_restriction *r = &t->restrictions[i];
                if (r->purpose_id == purpose &&
                    veil_tcf_restriction_has(t, r, vendor_id))
                        mask |= 1u << r->type;
        }
        return mask;
}

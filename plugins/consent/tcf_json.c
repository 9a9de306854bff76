/*
 * tcf_json.c — prints a decoded TC string as JSON (format in tcf_json.h).
 */
#include "tcf_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A growing string; after the first failed allocation every append is a
 * no-op and the result is NULL, so callers check once at the end. */
struct out {
        char *p;
        size_t len, cap;
        int oom;
};

static void put(struct out *o, const char *s, size_t n) {
        if (o->oom)
                return;
        if (o->len + n + 1 > o->cap) {
                size_t cap = o->cap ? o->cap : 1024;
                while (o->len + n + 1 > cap)
                        cap *= 2;
                char *q = realloc(o->p, cap);
                if (!q) {
                        o->oom = 1;
                        return;
                }
                o->p = q;
                o->cap = cap;
        }
        memcpy(o->p + o->len, s, n);
        o->len += n;
        o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s) {
        put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void putf(struct out *o, const char *fmt, ...) {
        char buf[128];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(buf)) {
                o->oom = 1; /* never with the formats below */
                return;
        }
        put(o, buf, (size_t)n);
}

/* Separates array elements; cheaper than putf for sets of 1000+ ids. */
static void put_id(struct out *o, unsigned id, int *first) {
        char buf[16];
        size_t n = sizeof(buf);
        do {
                buf[--n] = (char)('0' + id % 10);
                id /= 10;
        } while (id);
        if (!*first)
                put(o, ",", 1);
        *first = 0;
        put(o, buf + n, sizeof(buf) - n);
}

static void key(struct out *o, const char *k) {
        if (o->len > 1)
                put(o, ",", 1);
        put(o, "\"", 1);
        puts_(o, k);
        put(o, "\":", 2);
}

static void put_bool(struct out *o, const char *k, int v) {
        key(o, k);
        puts_(o, v ? "true" : "false");
}

static void put_uint(struct out *o, const char *k, unsigned long long v) {
        key(o, k);
        putf(o, "%llu", v);
}

static void put_time(struct out *o, const char *k, uint64_t ds) {
        time_t secs = (time_t)(ds / 10);
        struct tm tm;
        char buf[48];
        key(o, k);
        if (!gmtime_r(&secs, &tm) ||
            !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm)) {
                puts_(o, "null");
                return;
        }
        if (ds % 10)
                putf(o, "\"%s.%uZ\"", buf, (unsigned)(ds % 10));
        else
                putf(o, "\"%sZ\"", buf);
}

/* Bit i-1 of mask = id i. */
static void put_mask(struct out *o, const char *k, uint64_t mask,
                     unsigned nbits) {
        int first = 1;
        key(o, k);
        put(o, "[", 1);
        for (unsigned i = 0; i < nbits; i++)
                if ((mask >> i) & 1)
                        put_id(o, i + 1, &first);
        put(o, "]", 1);
}

static void put_vendors(struct out *o, const char *k,
                        const struct veil_tcf_vendors *v) {
        int first = 1;
        size_t words = ((size_t)v->max_id + 63) / 64;
        key(o, k);
        if (!v->present) {
                puts_(o, "null");
                return;
        }
        put(o, "[", 1);
        for (size_t w = 0; w < words; w++) {
                uint64_t bits = v->bits[w];
                while (bits) {
                        unsigned lead = (unsigned)__builtin_clzll(bits);
                        put_id(o, (unsigned)(w * 64 + lead + 1), &first);
                        bits &= ~(1ULL << (63 - lead));
                }
        }
        put(o, "]", 1);
}

/* A restriction's vendors as the ranges the string encodes them in (the
 * decoder's, sorted and merged), not one id each: a string may have 4,095
 * restrictions each naming 1..65535 in a few bytes, and listed id by id a
 * 36 KB string made 1.5 GB of JSON. Ranges keep the output linear in the
 * string. */
static void put_restrictions(struct out *o, const struct veil_tcf *t) {
        key(o, "publisherRestrictions");
        put(o, "[", 1);
        for (size_t i = 0; i < t->num_restrictions; i++) {
                const struct veil_tcf_restriction *r = &t->restrictions[i];
                putf(o,
                     "%s{\"purposeId\":%u,\"restrictionType\":%u,"
                     "\"vendorRanges\":[",
                     i ? "," : "", r->purpose_id, r->type);
                for (uint32_t g = 0; g < r->count; g++) {
                        const struct veil_tcf_range *rg =
                                &t->ranges[r->first + g];
                        int first = 1;
                        put(o, g ? ",[" : "[", g ? 2 : 1);
                        put_id(o, rg->start, &first);
                        put_id(o, rg->end, &first);
                        put(o, "]", 1);
                }
                put(o, "]}", 2);
        }
        put(o, "]", 1);
}

char *veil_tcf_to_json(const struct veil_tcf *t) {
        struct out o = {0};
        if (!t || !t->valid)
                return NULL;
        put(&o, "{", 1);
        put_uint(&o, "version", t->version);
        put_time(&o, "created", t->created);
        put_time(&o, "lastUpdated", t->last_updated);
        put_uint(&o, "cmpId", t->cmp_id);
        put_uint(&o, "cmpVersion", t->cmp_version);
        put_uint(&o, "consentScreen", t->consent_screen);
        key(&o, "consentLanguage");
        putf(&o, "\"%s\"", t->consent_language);
        put_uint(&o, "vendorListVersion", t->vendor_list_version);
        put_uint(&o, "tcfPolicyVersion", t->tcf_policy_version);
        put_bool(&o, "isServiceSpecific", t->is_service_specific);
        put_bool(&o, "useNonStandardTexts", t->use_non_standard_texts);
        put_mask(&o, "specialFeatureOptins", t->special_feature_optins,
                 VEIL_TCF_MAX_SPECIAL_FEATURE);
        put_mask(&o, "purposeConsents", t->purpose_consents,
                 VEIL_TCF_MAX_PURPOSE);
        put_mask(&o, "purposeLegitimateInterests", t->purpose_li,
                 VEIL_TCF_MAX_PURPOSE);
        put_bool(&o, "purposeOneTreatment", t->purpose_one_treatment);
        key(&o, "publisherCountryCode");
        putf(&o, "\"%s\"", t->publisher_cc);
        put_vendors(&o, "vendorConsents", &t->vendor_consents);
        put_vendors(&o, "vendorLegitimateInterests", &t->vendor_li);
        put_restrictions(&o, t);
        put_vendors(&o, "disclosedVendors", &t->disclosed_vendors);
        put_vendors(&o, "allowedVendors", &t->allowed_vendors);
        if (t->has_publisher_tc) {
                put_mask(&o, "publisherConsents", t->pub_purpose_consents,
                         VEIL_TCF_MAX_PURPOSE);
                put_mask(&o, "publisherLegitimateInterests",
                         t->pub_purpose_li, VEIL_TCF_MAX_PURPOSE);
                put_uint(&o, "numCustomPurposes", t->num_custom_purposes);
                put_mask(&o, "customPurposeConsents",
                         t->custom_purpose_consents, t->num_custom_purposes);
                put_mask(&o, "customPurposeLegitimateInterests",
                         t->custom_purpose_li, t->num_custom_purposes);
        } else {
                static const char *const keys[] = {
                        "publisherConsents", "publisherLegitimateInterests",
                        "numCustomPurposes", "customPurposeConsents",
                        "customPurposeLegitimateInterests"};
                for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
                        key(&o, keys[i]);
                        puts_(&o, "null");
                }
        }
        put(&o, "}", 1);
        if (o.oom) {
                free(o.p);
                return NULL;
        }
        return o.p;
}

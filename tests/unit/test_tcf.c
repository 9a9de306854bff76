/*
 * test_tcf.c — the TC-string decoder against the IAB conformance vectors
 * (tests/conformance/tcf-vectors.txt), against strings built here by an
 * independent test-only encoder (bit writer + base64url), and against
 * malformed input that must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcf.h"
#include "tcf_json.h"
#include "veil/veil.h"

#ifndef TCF_VECTORS_FILE
#define TCF_VECTORS_FILE "tests/conformance/tcf-vectors.txt"
#endif

/* ------------------------------------------------------------------ */
/* Vectors, verbatim from tcf-vectors.txt                              */
/* ------------------------------------------------------------------ */

#define V1 "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"
#define V2_CORE                                                          \
        "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEA" \
        "YQAQAAAACAAAABAAA"
#define V2_DISCLOSED ".IBAgAAAgAIAwgAgAAAAEAAAACA"
#define V2_ALLOWED ".QAagAQAgAIAwgA"
#define V2_PUBTC ".cAAAAAAAITg="
#define V2 V2_CORE V2_DISCLOSED V2_ALLOWED V2_PUBTC
#define V3 "COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA"
#define V4A "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA"
#define V4B "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA"
#define V4_SUFFIX                                                        \
        ".IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAA" \
        "gAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw"
#define V5 "COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA"
#define V6 "COuQACgOuQACgM-AAAENAPCAAAAAAAAAAAAAAAAAAABgoAAQAAHAAA=="
#define V7                                                               \
        "CO4VGswO4VGswAfZCBDEAzCsAP_AAH_AAAigGUNf_X9fb2vj-_599_t0eY1f9_63t-" \
        "wzjheMs-8NyZ-X_J4Wv2MyvB34JqQKGRgkunLBAQdtHGncTQgBwIlViTLMY02MjzNK" \
        "JrJEilsbe2dYGH9vn8XT_ZKZ70-_v__7v3___33_5Ayhr_6_r7e18f3_Pvv9ujzGr_" \
        "v_W9v2GccLxln3huTPy_5PC1-xmV4O_BNSBQyMEl05YICDto407iaEAOBEqsSZZjGm" \
        "xkeZpRNZIkUtjb2zrAw_t8_i6f7JTPen39___d-___--__ICgKAOAAcAA4AFAAjgB6" \
        "AEYALcGACAW0AtoJAHAAOAAcACgARwA9ACMAFuFABALaAW0GgDgAHAAOABQAI4AegB" \
        "GAC3DgAgFtALaEQBwADgAHAAoAEcAPQAjABbiQAQC2gFtCoA4ABwADgAUACOAHoARg" \
        "AtxYAIBbQC2hkAcAA4ABwAKABHAD0AIwAW40AEAtoBbQ6AOAAcAA4AFAAjgB6AEYAL" \
        "ceACAW0AtohAHAAOAAcACgARwA9ACMAFuRABALaAW0SgDgAHAAOABQAI4AegBGAC3J" \
        "gAgFtALaKQBwADgAHAAoAEcAPQAjABblQAQC2gFtA"
#define V8                                                               \
        "CPi8wgAPi8wgAAOACBENCuCoAP_AAEfAACiQJHNd_H__bX9n-f7_6ft0eY1f9_r37u" \
        "QzDhfNk-8F3L_W_LwX_2E7NF36tq4KmR4ku1LBIUNtHMnUDUmxaokVrzHsak2cpzNK" \
        "J_BkknsZe2dYGF9vm5tj-QKZ7_5_d3f52T_9_9v-39z33913v3d93-_13LjdV5_9H_" \
        "v9fR_b8_Kf9_5-_4v8_____3_e______8AEEggCTDVuIAuxLHAm0DCKBECMKwkKoFA" \
        "BBQDC0QGADg4KdlYBPrCBAAgFAEYEQIcAUYEAgAAAgCQiACQIsEAAAIgEAAIAEQiEA" \
        "BAwCCgAsDAIAAQDQMUQoABAkIMiAiKUwICIEggJbKhBKC6Q0wgCrLACgkRsFAAiAAA" \
        "UgACAsHAMESAlYsECTFG-QAjBCgFEqFaAGGgAwABBI4RABgACCRwqADAAEEjgA"
#define V8_DEFAULTS "CAAAAAAAAAAAAAAAAAENAACAAAAAAAAAAAAAAAAAAAAA.QAAA.IAAA"
#define V8_SS "CPSG_8APSG_8AAAAAAENAACgAAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAAA"
#define V9_CORE                                                          \
        "CQd924AQd924AASACCENCNFsAP_gAEIAACiQL6QBAAGAAOANmAcAF9IAIADgAA"
#define V9_DISCLOSED \
        ".IL6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define V9 V9_CORE V9_DISCLOSED ".YIAAAAAAAAAA"
#define N1_CORE \
        "CLSYjTaOngnCIAOABBENAXCMAGOAABBAAA7IA5n-m7fP6_3fbqVv6E__PoA5Aqff3a" \
        "Jx8tv_1967rfnQEQoAIAAQCrwkAEABAcACABIMACAAuApEVABABUSABgBCAVSAtIoA" \
        "CACIArYQAHACgAFgAVwBJgDcAI7AWgMAAgBiKgAgBMgFfKQAQBRkQAQA4AFiBAAoA-" \
        "AEVAJlAVgAtYcACAJcAr4eABAK8OgBgFzAOmAqwgABAWyA"
#define N1 N1_CORE ".IFukWSQh"
#define G3_TCF "CPSG_8APSG_8ANwAAAENAwCAAAAAAAAAAAAAAAAAAAAA.QAAA.IAAA"

/* Every string above as the vectors file spells it. */
static const char *const vector_strings[] = {
        V1, V2, V3, V4A, V4B, V4_SUFFIX, V5, V6, V7, V8, V8_DEFAULTS,
        V8_SS, V9, N1, "\"CA==\"", "\"Bg\"", G3_TCF};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Deciseconds since the epoch of a UTC civil time (Hinnant's
 * days-from-civil), so expected dates read as dates. */
static uint64_t utc_ds(int y, unsigned mo, unsigned d, unsigned h,
                       unsigned mi, unsigned s, unsigned ds) {
        y -= mo <= 2;
        long era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned)(y - era * 400);
        unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        long days = era * 146097 + (long)doe - 719468;
        return ((uint64_t)days * 86400 + h * 3600 + mi * 60 + s) * 10 + ds;
}

static int decode(struct veil_tcf *t, const char *s, char *err,
                  size_t errsz) {
        return veil_tcf_decode(s, strlen(s), t, err, errsz);
}

static void decode_ok(struct veil_tcf *t, const char *s) {
        char err[256] = "";
        int rc = decode(t, s, err, sizeof(err));
        if (rc)
                print_error("decode failed: %s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(t->valid, 1);
}

/* Rejected, with a message, and nothing left that reads as consent. */
static void decode_bad_n(struct veil_tcf *t, const char *s, size_t len,
                         const char *msg_part) {
        char err[256] = "";
        int rc = veil_tcf_decode(s, len, t, err, sizeof(err));
        assert_int_equal(rc, -VEIL_EDECODE);
        assert_int_equal(t->valid, 0);
        assert_true(err[0] != '\0');
        if (msg_part && !strstr(err, msg_part)) {
                print_error("message \"%s\" lacks \"%s\"\n", err, msg_part);
                fail();
        }
        /* Privacy: messages point at offsets, never quote the string. */
        if (len >= 8) {
                char head[9];
                memcpy(head, s, 8);
                head[8] = '\0';
                if (strlen(head) == 8)
                        assert_null(strstr(err, head));
        }
        assert_int_equal(t->vendor_consents.max_id, 0);
        assert_int_equal(t->num_restrictions, 0);
        assert_int_equal(t->purpose_consents, 0);
        assert_int_equal(veil_tcf_purpose_consent(t, 1), 0);
        assert_null(veil_tcf_to_json(t));
}

static void decode_bad(struct veil_tcf *t, const char *s,
                       const char *msg_part) {
        decode_bad_n(t, s, strlen(s), msg_part);
}

/* Exactly ids[0..n) are members of v (checked over 0..max_id+2). */
static void assert_set(const struct veil_tcf_vendors *v, const int *ids,
                       size_t n) {
        size_t k = 0;
        for (int id = 0; id <= v->max_id + 2; id++) {
                int want = k < n && ids[k] == id;
                if (veil_tcf_vendors_has(v, id) != want) {
                        print_error("vendor %d: want %d\n", id, want);
                        fail();
                }
                k += want;
        }
        assert_int_equal(k, n);
}

static size_t set_count(const struct veil_tcf_vendors *v) {
        size_t c = 0;
        for (int id = 1; id <= v->max_id; id++)
                c += (size_t)veil_tcf_vendors_has(v, id);
        return c;
}

static uint32_t mask_of(const int *ids, size_t n) {
        uint32_t m = 0;
        for (size_t i = 0; i < n; i++)
                m |= 1u << (ids[i] - 1);
        return m;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* The vectors                                                         */
/* ------------------------------------------------------------------ */

static void test_vectors_match_file(void **state) {
        (void)state;
        FILE *f = fopen(TCF_VECTORS_FILE, "rb");
        if (!f) {
                print_error("cannot open %s (run from the repository root "
                            "or build with -DTCF_VECTORS_FILE=...)\n",
                            TCF_VECTORS_FILE);
                fail();
        }
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        for (size_t i = 0; i < N(vector_strings); i++) {
                if (!strstr(buf, vector_strings[i])) {
                        print_error("vector %zu not in the file\n", i);
                        fail();
                }
        }
}

static void test_v1(void **state) {
        struct veil_tcf t = {0};
        (void)state;
        decode_ok(&t, V1);
        /* ASSERTED */
        assert_int_equal(t.version, 2);
        assert_int_equal(t.created, utc_ds(2020, 1, 26, 17, 1, 0, 0));
        assert_int_equal(t.last_updated, utc_ds(2021, 2, 2, 17, 1, 0, 0));
        assert_int_equal(t.cmp_id, 675);
        assert_int_equal(t.cmp_version, 2);
        assert_int_equal(t.consent_screen, 1);
        assert_int_equal(t.vendor_list_version, 15);
        assert_int_equal(t.tcf_policy_version, 2);
        assert_string_equal(t.consent_language, "EN");
        assert_string_equal(t.publisher_cc, "AA");
        assert_int_equal(t.is_service_specific, 0);
        assert_int_equal(t.purpose_one_treatment, 1);
        assert_int_equal(t.use_non_standard_texts, 0);
        assert_int_equal(t.special_feature_optins, 1u << 0);
        for (int f = 0; f <= 13; f++)
                assert_int_equal(veil_tcf_special_feature(&t, f), f == 1);
        int pc[] = {2, 10}, pli[] = {2, 9};
        assert_int_equal(t.purpose_consents, mask_of(pc, N(pc)));
        assert_int_equal(t.purpose_li, mask_of(pli, N(pli)));
        for (int p = 0; p <= 25; p++) {
                assert_int_equal(veil_tcf_purpose_consent(&t, p),
                                 p == 2 || p == 10);
                assert_int_equal(veil_tcf_purpose_li(&t, p),
                                 p == 2 || p == 9);
        }
        /* XCHECK */
        assert_int_equal(t.vendor_consents.max_id, 0);
        assert_int_equal(t.vendor_consents.is_range, 0);
        assert_int_equal(t.vendor_li.max_id, 0);
        assert_int_equal(t.num_restrictions, 0);
        assert_int_equal(veil_tcf_vendor_consent(&t, 1), 0);
        assert_int_equal(t.disclosed_vendors.present, 0);
        assert_int_equal(t.allowed_vendors.present, 0);
        assert_int_equal(t.has_publisher_tc, 0);
        veil_tcf_clear(&t);
}

static const int v2_vc[] = {23, 37, 47, 48, 53, 65, 98};
static const int v2_vli[] = {37, 47, 48, 53, 65, 98, 129};
static const int v2_disc[] = {23, 37, 47, 48, 53, 65, 98, 129};
static const int v2_allow[] = {12, 23, 37, 47, 48, 53};

static void check_v2_core(const struct veil_tcf *t) {
        int pc[] = {3, 4, 5, 6, 7, 8, 9};
        /* ASSERTED */
        assert_int_equal(t->purpose_consents, mask_of(pc, N(pc)));
        assert_set(&t->vendor_consents, v2_vc, N(v2_vc));
        assert_set(&t->vendor_li, v2_vli, N(v2_vli));
        for (size_t i = 0; i < N(v2_vc); i++)
                assert_true(veil_tcf_vendor_consent(t, v2_vc[i]));
        assert_false(veil_tcf_vendor_consent(t, 129));
        assert_true(veil_tcf_vendor_li(t, 129));
        assert_false(veil_tcf_vendor_li(t, 23));
        /* XCHECK */
        assert_int_equal(t->created, utc_ds(2019, 12, 4, 18, 53, 0, 0));
        assert_int_equal(t->last_updated, utc_ds(2019, 12, 10, 18, 53, 0, 0));
        assert_int_equal(t->cmp_id, 2);
        assert_int_equal(t->cmp_version, 1);
        assert_int_equal(t->consent_screen, 1);
        assert_string_equal(t->consent_language, "EN");
        assert_int_equal(t->vendor_list_version, 7);
        assert_int_equal(t->tcf_policy_version, 2);
        assert_int_equal(t->special_feature_optins, 1);
        assert_int_equal(t->purpose_one_treatment, 0);
        assert_string_equal(t->publisher_cc, "AQ");
        assert_int_equal(t->vendor_consents.max_id, 98);
        assert_int_equal(t->vendor_consents.is_range, 0);
        assert_int_equal(t->vendor_li.max_id, 129);
        assert_int_equal(t->vendor_li.is_range, 0);
}

static void test_v2(void **state) {
        struct veil_tcf t = {0};
        (void)state;
        /* testConstructConsentsFromBitFields: core only */
        decode_ok(&t, V2_CORE);
        check_v2_core(&t);
        assert_int_equal(t.disclosed_vendors.present, 0);
        assert_int_equal(veil_tcf_vendor_disclosed(&t, 23), 0);
        /* testCanParseDisclosedAndAllowedVendors */
        decode_ok(&t, V2_CORE V2_DISCLOSED V2_ALLOWED);
        check_v2_core(&t);
        assert_int_equal(t.disclosed_vendors.present, 1);
        assert_set(&t.disclosed_vendors, v2_disc, N(v2_disc));
        assert_int_equal(t.allowed_vendors.present, 1);
        assert_set(&t.allowed_vendors, v2_allow, N(v2_allow));
        assert_true(veil_tcf_vendor_disclosed(&t, 129));
        assert_true(veil_tcf_vendor_allowed(&t, 12));
        assert_false(veil_tcf_vendor_allowed(&t, 98));
        assert_int_equal(t.has_publisher_tc, 0);
        /* testCanParseAllParts, with the trailing '=' */
        decode_ok(&t, V2);
        check_v2_core(&t);
        assert_set(&t.disclosed_vendors, v2_disc, N(v2_disc));
        assert_set(&t.allowed_vendors, v2_allow, N(v2_allow));
        assert_int_equal(t.has_publisher_tc, 1);
        /* ASSERTED: pubPurposesConsent has exactly 1 element */
        assert_int_equal(__builtin_popcount(t.pub_purpose_consents), 1);
        /* XCHECK */
        assert_int_equal(t.pub_purpose_consents, 1u << 0);
        assert_true(veil_tcf_pub_purpose_consent(&t, 1));
        assert_int_equal(t.pub_purpose_li, 1u << 23);
        assert_true(veil_tcf_pub_purpose_li(&t, 24));
        assert_int_equal(t.num_custom_purposes, 2);
        assert_int_equal(t.custom_purpose_consents, 1u << 1);
        assert_int_equal(t.custom_purpose_li, 3);
        assert_false(veil_tcf_custom_purpose_consent(&t, 1));
        assert_true(veil_tcf_custom_purpose_consent(&t, 2));
        assert_false(veil_tcf_custom_purpose_consent(&t, 3));
        assert_true(veil_tcf_custom_purpose_li(&t, 1));
        assert_true(veil_tcf_custom_purpose_li(&t, 2));
        /* Optional segments in another order decode the same. */
        decode_ok(&t, V2_CORE V2_PUBTC V2_ALLOWED V2_DISCLOSED);
        check_v2_core(&t);
        assert_set(&t.disclosed_vendors, v2_disc, N(v2_disc));
        assert_set(&t.allowed_vendors, v2_allow, N(v2_allow));
        assert_int_equal(t.num_custom_purposes, 2);
        veil_tcf_clear(&t);
}

static void test_v3(void **state) {
        struct veil_tcf t = {0};
        int vli[] = {128}, vc[] = {127};
        (void)state;
        decode_ok(&t, V3);
        assert_set(&t.vendor_li, vli, 1); /* ASSERTED */
        assert_int_equal(t.cmp_id, 182);  /* XCHECK from here */
        assert_int_equal(t.is_service_specific, 1);
        assert_int_equal(t.vendor_consents.max_id, 127);
        assert_int_equal(t.vendor_consents.is_range, 1);
        assert_int_equal(t.vendor_consents.num_entries, 1);
        assert_set(&t.vendor_consents, vc, 1);
        assert_int_equal(t.vendor_li.max_id, 128);
        assert_int_equal(t.vendor_li.is_range, 1);
        assert_int_equal(t.vendor_li.num_entries, 1);
        veil_tcf_clear(&t);
}

static void test_v4(void **state) {
        struct veil_tcf t = {0};
        int a_vc[] = {702, 703}, a_vli[] = {683, 684};
        int b_vc[] = {703}, b_vli[] = {653};
        (void)state;
        /* As in testRange: each followed by the disclosed segment. */
        for (int with_suffix = 1; with_suffix >= 0; with_suffix--) {
                decode_ok(&t, with_suffix ? V4A V4_SUFFIX : V4A);
                assert_set(&t.vendor_consents, a_vc, N(a_vc));
                assert_int_equal(t.cmp_id, 746);
                assert_int_equal(t.vendor_consents.max_id, 703);
                assert_int_equal(t.vendor_consents.is_range, 1);
                assert_int_equal(t.vendor_consents.num_entries, 1);
                assert_int_equal(t.vendor_li.is_range, 1);
                assert_set(&t.vendor_li, a_vli, N(a_vli));
                assert_int_equal(t.disclosed_vendors.present, with_suffix);

                decode_ok(&t, with_suffix ? V4B V4_SUFFIX : V4B);
                assert_set(&t.vendor_consents, b_vc, N(b_vc));
                assert_int_equal(t.cmp_id, 746);
                assert_int_equal(t.vendor_consents.max_id, 703);
                assert_int_equal(t.vendor_consents.is_range, 1);
                assert_int_equal(t.vendor_consents.num_entries, 1);
                assert_set(&t.vendor_li, b_vli, N(b_vli));
                assert_int_equal(t.disclosed_vendors.present, with_suffix);
        }
        veil_tcf_clear(&t);
}

static void test_v5(void **state) {
        struct veil_tcf t = {0};
        int pc[] = {1, 2};
        (void)state;
        decode_ok(&t, V5);
        assert_int_equal(t.version, 2);                  /* ASSERTED */
        assert_true(veil_tcf_purpose_consent(&t, 1));    /* ASSERTED */
        assert_true(veil_tcf_purpose_consent(&t, 2));    /* ASSERTED */
        assert_false(veil_tcf_vendor_consent(&t, 10));   /* README */
        assert_int_equal(t.created, utc_ds(2020, 3, 24, 17, 43, 29, 3));
        assert_int_equal(t.cmp_id, 681);
        assert_int_equal(t.vendor_list_version, 29);
        assert_int_equal(t.purpose_consents, mask_of(pc, N(pc)));
        assert_int_equal(set_count(&t.vendor_consents), 0);
        assert_int_equal(set_count(&t.vendor_li), 0);
        veil_tcf_clear(&t);
}

static void test_v6_restrictions(void **state) {
        struct veil_tcf t = {0};
        (void)state;
        decode_ok(&t, V6);
        assert_int_equal(t.num_restrictions, 3);
        assert_int_equal(t.restrictions[0].purpose_id, 1);
        assert_int_equal(t.restrictions[0].type, VEIL_TCF_REQUIRE_CONSENT);
        assert_int_equal(t.restrictions[0].count, 0);
        assert_int_equal(t.restrictions[1].purpose_id, 2);
        assert_int_equal(t.restrictions[1].type, VEIL_TCF_NOT_ALLOWED);
        assert_int_equal(t.restrictions[1].count, 0);
        assert_int_equal(t.restrictions[2].purpose_id, 3);
        assert_int_equal(t.restrictions[2].type, VEIL_TCF_REQUIRE_LI);
        assert_int_equal(t.restrictions[2].count, 0);
        for (int p = 1; p <= 3; p++)
                assert_int_equal(veil_tcf_restrictions(&t, p, 1), 0);
        veil_tcf_clear(&t);
}

static void test_v7_duplicate_vendor(void **state) {
        struct veil_tcf t = {0};
        const int want[] = {7, 20, 71, 122, 140, 183};
        (void)state;
        decode_ok(&t, V7);
        assert_int_equal(t.version, 2); /* ASSERTED */
        /* ASSERTED: getVendors(PurposeRestriction(1, 1)), vendor 7 once */
        const struct veil_tcf_restriction *r = NULL;
        for (size_t i = 0; i < t.num_restrictions; i++)
                if (t.restrictions[i].purpose_id == 1 &&
                    t.restrictions[i].type == VEIL_TCF_REQUIRE_CONSENT)
                        r = &t.restrictions[i];
        assert_non_null(r);
        size_t k = 0;
        for (int id = 0; id <= 1000; id++) {
                int in = k < N(want) && want[k] == id;
                assert_int_equal(veil_tcf_restriction_has(&t, r, id), in);
                k += in;
        }
        assert_int_equal(k, N(want));
        char *json = veil_tcf_to_json(&t);
        assert_non_null(json);
        assert_non_null(strstr(json,
                               "{\"purposeId\":1,\"restrictionType\":1,"
                               "\"vendorRanges\":[[7,7],[20,20],[71,71],"
                               "[122,122],[140,140],[183,183]]}"));
        free(json);
        assert_int_equal(veil_tcf_restrictions(&t, 1, 7),
                         1u << VEIL_TCF_REQUIRE_CONSENT);
        assert_int_equal(veil_tcf_restrictions(&t, 11, 7), 0);
        /* XCHECK */
        assert_int_equal(t.cmp_id, 31);
        assert_string_equal(t.consent_language, "DE");
        assert_int_equal(t.vendor_list_version, 51);
        assert_string_equal(t.publisher_cc, "EU");
        assert_int_equal(t.num_restrictions, 20);
        unsigned seen[11] = {0};
        for (size_t i = 0; i < t.num_restrictions; i++) {
                unsigned p = t.restrictions[i].purpose_id;
                assert_in_range(p, 1, 10);
                assert_in_range(t.restrictions[i].type, 1, 2);
                seen[p] |= 1u << t.restrictions[i].type;
        }
        for (int p = 1; p <= 10; p++)
                assert_int_equal(seen[p], 6);
        veil_tcf_clear(&t);
}

static void test_v8(void **state) {
        struct veil_tcf t = {0};
        int sf[] = {1}, pc[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        int pli[] = {2, 6, 7, 8, 9, 10};
        (void)state;
        decode_ok(&t, V8);
        /* ASSERTED */
        assert_int_equal(t.version, 2);
        assert_int_equal(t.cmp_id, 14);
        assert_int_equal(t.cmp_version, 2);
        assert_int_equal(t.consent_screen, 1);
        assert_string_equal(t.consent_language, "EN");
        assert_int_equal(t.vendor_list_version, 174);
        assert_int_equal(t.tcf_policy_version, 2);
        assert_int_equal(t.is_service_specific, 1);
        assert_int_equal(t.use_non_standard_texts, 0);
        assert_int_equal(t.special_feature_optins, mask_of(sf, N(sf)));
        assert_int_equal(t.purpose_consents, mask_of(pc, N(pc)));
        assert_int_equal(t.purpose_li, mask_of(pli, N(pli)));
        assert_int_equal(t.purpose_one_treatment, 0);
        assert_string_equal(t.publisher_cc, "US");
        assert_int_equal(set_count(&t.vendor_consents), 772);
        assert_int_equal(set_count(&t.vendor_li), 280);
        /* XCHECK */
        assert_int_equal(t.created, utc_ds(2022, 11, 24, 0, 0, 0, 0));
        assert_int_equal(t.last_updated, t.created);
        assert_int_equal(t.vendor_consents.max_id, 1166);
        assert_int_equal(t.vendor_consents.is_range, 0);
        assert_int_equal(t.vendor_li.max_id, 1154);
        assert_int_equal(t.vendor_li.is_range, 0);
        const int first[] = {1, 2, 4, 6, 7, 8, 10, 11, 12, 13, 14, 15};
        size_t k = 0;
        for (int id = 1; id <= 15; id++) {
                int in = k < N(first) && first[k] == id;
                assert_int_equal(veil_tcf_vendor_consent(&t, id), in);
                k += in;
        }
        assert_int_equal(t.num_restrictions, 3);
        for (int i = 0; i < 3; i++) {
                const struct veil_tcf_restriction *r = &t.restrictions[i];
                assert_int_equal(r->purpose_id, 3 + i);
                assert_int_equal(r->type, VEIL_TCF_REQUIRE_CONSENT);
                assert_int_equal(r->count, 1);
                assert_int_equal(t.ranges[r->first].start, 1);
                assert_int_equal(t.ranges[r->first].end, 1166);
                assert_int_equal(veil_tcf_restrictions(&t, 3 + i, 1166),
                                 1u << VEIL_TCF_REQUIRE_CONSENT);
                assert_int_equal(veil_tcf_restrictions(&t, 3 + i, 1167), 0);
        }
        assert_int_equal(veil_tcf_restrictions(&t, 1, 1), 0);

        /* the other strings in the same file */
        decode_ok(&t, V8_DEFAULTS);
        assert_int_equal(t.created, 0);
        assert_int_equal(t.last_updated, 0);
        assert_int_equal(t.cmp_id, 0);
        assert_string_equal(t.consent_language, "EN");
        assert_int_equal(t.tcf_policy_version, 2);
        assert_int_equal(t.is_service_specific, 0);
        assert_int_equal(t.allowed_vendors.present, 1);
        assert_int_equal(t.disclosed_vendors.present, 1);
        assert_int_equal(t.allowed_vendors.max_id, 0);

        decode_ok(&t, V8_SS);
        assert_int_equal(t.is_service_specific, 1);
        assert_int_equal(t.created, utc_ds(2022, 1, 1, 0, 0, 0, 0));
        assert_int_equal(t.last_updated, t.created);
        assert_int_equal(t.cmp_id, 0);
        assert_string_equal(t.consent_language, "EN");
        assert_int_equal(t.tcf_policy_version, 2);
        assert_int_equal(t.has_publisher_tc, 1);
        assert_int_equal(t.pub_purpose_consents, 0);
        assert_int_equal(t.num_custom_purposes, 0);
        veil_tcf_clear(&t);
}

static void test_v9_policy5(void **state) {
        struct veil_tcf t = {0};
        int sf[] = {1, 2}, pli[] = {2, 7}, vc[] = {12, 14, 435, 448};
        int vli[] = {14};
        (void)state;
        decode_ok(&t, V9);
        /* XCHECK only */
        assert_int_equal(t.version, 2);
        assert_int_equal(t.created, utc_ds(2026, 1, 13, 0, 0, 0, 0));
        assert_int_equal(t.last_updated, t.created);
        assert_int_equal(t.cmp_id, 18);
        assert_int_equal(t.cmp_version, 2);
        assert_int_equal(t.consent_screen, 2);
        assert_string_equal(t.consent_language, "EN");
        assert_int_equal(t.vendor_list_version, 141);
        assert_int_equal(t.tcf_policy_version, 5);
        assert_int_equal(t.is_service_specific, 1);
        assert_int_equal(t.special_feature_optins, mask_of(sf, N(sf)));
        assert_int_equal(t.purpose_consents, (1u << 11) - 1);
        assert_int_equal(t.purpose_li, mask_of(pli, N(pli)));
        assert_string_equal(t.publisher_cc, "US");
        assert_int_equal(t.vendor_consents.max_id, 1524);
        assert_int_equal(t.vendor_consents.is_range, 1);
        assert_int_equal(t.vendor_consents.num_entries, 4);
        assert_set(&t.vendor_consents, vc, N(vc));
        assert_int_equal(t.vendor_li.is_range, 1);
        assert_set(&t.vendor_li, vli, N(vli));
        assert_int_equal(t.disclosed_vendors.present, 1);
        assert_int_equal(t.disclosed_vendors.max_id, 1524);
        assert_int_equal(t.disclosed_vendors.is_range, 0);
        assert_int_equal(set_count(&t.disclosed_vendors), 0);
        assert_int_equal(t.has_publisher_tc, 1);
        assert_int_equal(t.pub_purpose_consents, 1u << 5);
        veil_tcf_clear(&t);
}

static void test_gpp_tcf_section(void **state) {
        struct veil_tcf t = {0};
        (void)state;
        /* G3..G5: the tcfeuv2 section is a plain TC string. */
        decode_ok(&t, G3_TCF);
        assert_int_equal(t.version, 2);
        assert_int_equal(t.cmp_id, 880);
        assert_int_equal(t.cmp_version, 0);
        assert_int_equal(t.consent_screen, 0);
        assert_string_equal(t.consent_language, "EN");
        assert_int_equal(t.vendor_list_version, 48);
        assert_int_equal(t.tcf_policy_version, 2);
        assert_int_equal(t.is_service_specific, 0);
        assert_int_equal(t.use_non_standard_texts, 0);
        assert_int_equal(t.purpose_one_treatment, 0);
        assert_string_equal(t.publisher_cc, "AA");
        assert_int_equal(t.created, utc_ds(2022, 1, 1, 0, 0, 0, 0));
        assert_int_equal(t.last_updated, t.created);
        assert_int_equal(t.allowed_vendors.present, 1);
        assert_int_equal(t.disclosed_vendors.present, 1);
        veil_tcf_clear(&t);
}

static void test_negative_vectors(void **state) {
        struct veil_tcf t = {0};
        (void)state;
        /* N1: the disclosed segment's bitfield is shorter than maxId 733 */
        decode_bad(&t, N1, "need 733 bits for disclosedVendors.bitField");
        decode_ok(&t, N1_CORE); /* the core alone is fine */
        decode_ok(&t, N1_CORE ".IAAA");
        /* N2: strict decoding refuses what a lazy one would accept */
        decode_bad(&t, "CA==", "need 36 bits for created");
        /* N3: version 1, and too short for created either way */
        decode_bad(&t, "Bg", "version 1");
        /* N4: base64url of byte 13 is version 3 */
        decode_bad(&t, "DQ", "version 3");
        decode_bad(&t, "DQ==", "version 3");
        veil_tcf_clear(&t);
}

/* ------------------------------------------------------------------ */
/* Test-only encoder                                                   */
/* ------------------------------------------------------------------ */

struct bw {
        size_t n;
        uint8_t bit[1 << 18]; /* one bit per byte: simple beats fast here */
};

static void put(struct bw *w, uint64_t v, unsigned n) {
        assert_true(w->n + n <= sizeof(w->bit));
        for (unsigned i = n; i-- > 0;)
                w->bit[w->n++] = (uint8_t)((v >> i) & 1);
}

/* base64url of bits [0, nbits), zero-padded to whole characters. */
static void b64(const struct bw *w, size_t nbits, char *out) {
        static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                "opqrstuvwxyz0123456789-_";
        size_t o = 0;
        for (size_t i = 0; i < nbits; i += 6) {
                unsigned v = 0;
                for (size_t j = i; j < i + 6; j++)
                        v = v << 1 | (j < nbits ? w->bit[j] : 0);
                out[o++] = a[v];
        }
        out[o] = '\0';
}

struct ent {
        unsigned a, b;
};

struct tset {
        unsigned max_id;
        int use_range;
        size_t ne;
        struct ent e[40];
};

struct trestr {
        unsigned purpose, type;
        size_t ne;
        struct ent e[12];
};

struct tmodel {
        unsigned version;
        uint64_t created, last_updated;
        unsigned cmp_id, cmp_version, consent_screen;
        char lang[3];
        unsigned vlv, policy, service_specific, non_standard;
        uint32_t sf, pc, pli;
        unsigned p1t;
        char cc[3];
        struct tset vc, vli;
        size_t nr;
        struct trestr r[8];
        int has_disc, has_allow, has_pub;
        struct tset disc, allow;
        uint32_t pubc, publi;
        unsigned ncust;
        uint64_t custc, custli;
};

static int ents_have(const struct ent *e, size_t n, unsigned id) {
        for (size_t i = 0; i < n; i++)
                if (e[i].a <= id && id <= e[i].b)
                        return 1;
        return 0;
}

static void put_mask(struct bw *w, uint64_t mask, unsigned nbits) {
        for (unsigned i = 0; i < nbits; i++)
                put(w, (mask >> i) & 1, 1);
}

static void put_entries(struct bw *w, const struct ent *e, size_t n) {
        put(w, n, 12);
        for (size_t i = 0; i < n; i++) {
                put(w, e[i].a != e[i].b, 1);
                put(w, e[i].a, 16);
                if (e[i].a != e[i].b)
                        put(w, e[i].b, 16);
        }
}

static void put_set(struct bw *w, const struct tset *s) {
        put(w, s->max_id, 16);
        put(w, (unsigned)s->use_range, 1);
        if (s->use_range) {
                put_entries(w, s->e, s->ne);
                return;
        }
        for (unsigned id = 1; id <= s->max_id; id++)
                put(w, (unsigned)ents_have(s->e, s->ne, id), 1);
}

static void put_letters(struct bw *w, const char *l) {
        put(w, (unsigned)(l[0] - 'A'), 6);
        put(w, (unsigned)(l[1] - 'A'), 6);
}

static void put_core(struct bw *w, const struct tmodel *m) {
        put(w, m->version, 6);
        put(w, m->created, 36);
        put(w, m->last_updated, 36);
        put(w, m->cmp_id, 12);
        put(w, m->cmp_version, 12);
        put(w, m->consent_screen, 6);
        put_letters(w, m->lang);
        put(w, m->vlv, 12);
        put(w, m->policy, 6);
        put(w, m->service_specific, 1);
        put(w, m->non_standard, 1);
        put_mask(w, m->sf, 12);
        put_mask(w, m->pc, 24);
        put_mask(w, m->pli, 24);
        put(w, m->p1t, 1);
        put_letters(w, m->cc);
        put_set(w, &m->vc);
        put_set(w, &m->vli);
        put(w, m->nr, 12);
        for (size_t i = 0; i < m->nr; i++) {
                put(w, m->r[i].purpose, 6);
                put(w, m->r[i].type, 2);
                put_entries(w, m->r[i].e, m->r[i].ne);
        }
}

/* Appends '.' and the segment in w to out. */
static void append_seg(char *out, struct bw *w) {
        size_t n = strlen(out);
        out[n++] = '.';
        b64(w, w->n, out + n);
}

/* The whole string; order lists optional segment types to emit. */
static void encode(const struct tmodel *m, struct bw *w, char *out,
                   const int *order, size_t norder) {
        w->n = 0;
        put_core(w, m);
        b64(w, w->n, out);
        for (size_t i = 0; i < norder; i++) {
                w->n = 0;
                put(w, (unsigned)order[i], 3);
                if (order[i] == 1)
                        put_set(w, &m->disc);
                else if (order[i] == 2)
                        put_set(w, &m->allow);
                else {
                        put_mask(w, m->pubc, 24);
                        put_mask(w, m->publi, 24);
                        put(w, m->ncust, 6);
                        put_mask(w, m->custc, m->ncust);
                        put_mask(w, m->custli, m->ncust);
                }
                append_seg(out, w);
        }
}

static void base_model(struct tmodel *m) {
        memset(m, 0, sizeof(*m));
        m->version = 2;
        m->created = utc_ds(2024, 5, 6, 7, 8, 9, 1);
        m->last_updated = utc_ds(2024, 6, 1, 0, 0, 0, 0);
        m->cmp_id = 300;
        m->cmp_version = 4;
        m->consent_screen = 3;
        memcpy(m->lang, "FR", 3);
        m->vlv = 200;
        m->policy = 5;
        m->service_specific = 1;
        m->sf = 0x5;
        m->pc = 0x3ff;
        m->pli = 0x2c2;
        m->p1t = 0;
        memcpy(m->cc, "DE", 3);
}

static void check_set(const struct veil_tcf_vendors *v, const struct tset *s) {
        assert_int_equal(v->max_id, s->max_id);
        assert_int_equal(v->is_range, s->use_range);
        assert_int_equal(v->present, 1);
        for (unsigned id = 0; id <= s->max_id + 65; id++) {
                int want = id >= 1 && id <= s->max_id &&
                           ents_have(s->e, s->ne, id);
                if (veil_tcf_vendors_has(v, (int)id) != want) {
                        print_error("vendor %u: want %d\n", id, want);
                        fail();
                }
        }
}

static void check_model(const struct veil_tcf *t, const struct tmodel *m,
                        int disc, int allow, int pub) {
        assert_int_equal(t->valid, 1);
        assert_int_equal(t->version, m->version);
        assert_int_equal(t->created, m->created);
        assert_int_equal(t->last_updated, m->last_updated);
        assert_int_equal(t->cmp_id, m->cmp_id);
        assert_int_equal(t->cmp_version, m->cmp_version);
        assert_int_equal(t->consent_screen, m->consent_screen);
        assert_string_equal(t->consent_language, m->lang);
        assert_int_equal(t->vendor_list_version, m->vlv);
        assert_int_equal(t->tcf_policy_version, m->policy);
        assert_int_equal(t->is_service_specific, m->service_specific);
        assert_int_equal(t->use_non_standard_texts, m->non_standard);
        assert_int_equal(t->special_feature_optins, m->sf);
        assert_int_equal(t->purpose_consents, m->pc);
        assert_int_equal(t->purpose_li, m->pli);
        assert_int_equal(t->purpose_one_treatment, m->p1t);
        assert_string_equal(t->publisher_cc, m->cc);
        check_set(&t->vendor_consents, &m->vc);
        check_set(&t->vendor_li, &m->vli);
        assert_int_equal(t->num_restrictions, m->nr);
        for (size_t i = 0; i < m->nr; i++) {
                const struct veil_tcf_restriction *r = &t->restrictions[i];
                assert_int_equal(r->purpose_id, m->r[i].purpose);
                assert_int_equal(r->type, m->r[i].type);
                unsigned top = 0;
                for (size_t k = 0; k < m->r[i].ne; k++)
                        if (m->r[i].e[k].b > top)
                                top = m->r[i].e[k].b;
                for (unsigned id = 0; id <= top + 2 && id <= 65535; id++)
                        assert_int_equal(
                                veil_tcf_restriction_has(t, r, (int)id),
                                ents_have(m->r[i].e, m->r[i].ne, id));
                /* The stored ranges are sorted and disjoint. */
                for (uint32_t k = 1; k < r->count; k++)
                        assert_true(t->ranges[r->first + k].start >
                                    t->ranges[r->first + k - 1].end + 1);
        }
        /* The combined mask is the union over restrictions. */
        for (int p = 1; p <= 24; p++) {
                for (int id = 1; id <= 300; id += 7) {
                        unsigned want = 0;
                        for (size_t i = 0; i < m->nr; i++)
                                if ((int)m->r[i].purpose == p &&
                                    ents_have(m->r[i].e, m->r[i].ne,
                                              (unsigned)id))
                                        want |= 1u << m->r[i].type;
                        assert_int_equal(veil_tcf_restrictions(t, p, id),
                                         want);
                }
        }
        assert_int_equal(t->disclosed_vendors.present, disc);
        if (disc)
                check_set(&t->disclosed_vendors, &m->disc);
        assert_int_equal(t->allowed_vendors.present, allow);
        if (allow)
                check_set(&t->allowed_vendors, &m->allow);
        assert_int_equal(t->has_publisher_tc, pub);
        if (pub) {
                assert_int_equal(t->pub_purpose_consents, m->pubc);
                assert_int_equal(t->pub_purpose_li, m->publi);
                assert_int_equal(t->num_custom_purposes, m->ncust);
                assert_int_equal(t->custom_purpose_consents, m->custc);
                assert_int_equal(t->custom_purpose_li, m->custli);
                for (unsigned c = 0; c <= 64; c++)
                        assert_int_equal(
                                veil_tcf_custom_purpose_consent(t, (int)c),
                                c >= 1 && c <= m->ncust &&
                                        ((m->custc >> (c - 1)) & 1));
        }
}

struct fixture {
        struct bw w;
        char s[1 << 17];
        struct tmodel m;
        struct veil_tcf t;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        veil_tcf_clear(&f->t);
        free(f);
        return 0;
}

static void roundtrip(struct fixture *f, const int *order, size_t norder) {
        int disc = 0, allow = 0, pub = 0;
        for (size_t i = 0; i < norder; i++) {
                disc |= order[i] == 1;
                allow |= order[i] == 2;
                pub |= order[i] == 3;
        }
        encode(&f->m, &f->w, f->s, order, norder);
        decode_ok(&f->t, f->s);
        check_model(&f->t, &f->m, disc, allow, pub);
}

static uint64_t rnd(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void rand_entries(uint64_t *s, struct ent *e, size_t *ne,
                         size_t cap, unsigned max) {
        *ne = max ? rnd(s) % (cap + 1) : 0;
        for (size_t i = 0; i < *ne; i++) {
                unsigned a = 1 + (unsigned)(rnd(s) % max);
                unsigned span = (unsigned)(rnd(s) % (max - a + 1));
                e[i].a = a;
                e[i].b = rnd(s) % 3 == 0 ? a : a + span;
        }
}

static void rand_set(uint64_t *s, struct tset *t) {
        static const unsigned maxes[] = {0, 1, 2, 63, 64, 65, 127, 128,
                                         129, 700, 1166, 3000};
        t->max_id = maxes[rnd(s) % N(maxes)];
        t->use_range = (int)(rnd(s) & 1);
        rand_entries(s, t->e, &t->ne, N(t->e), t->max_id);
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

static void test_roundtrip_random(void **state) {
        struct fixture *f = *state;
        uint64_t seed = 0x9e3779b97f4a7c15ULL;
        for (int it = 0; it < 400; it++) {
                struct tmodel *m = &f->m;
                base_model(m);
                m->created = rnd(&seed) & ((1ULL << 36) - 1);
                m->last_updated = rnd(&seed) & ((1ULL << 36) - 1);
                m->cmp_id = (unsigned)(rnd(&seed) & 0xfff);
                m->cmp_version = (unsigned)(rnd(&seed) & 0xfff);
                m->consent_screen = (unsigned)(rnd(&seed) & 63);
                m->lang[0] = (char)('A' + rnd(&seed) % 26);
                m->lang[1] = (char)('A' + rnd(&seed) % 26);
                m->cc[0] = (char)('A' + rnd(&seed) % 26);
                m->cc[1] = (char)('A' + rnd(&seed) % 26);
                m->vlv = (unsigned)(rnd(&seed) & 0xfff);
                m->policy = (unsigned)(rnd(&seed) & 63);
                m->service_specific = (unsigned)(rnd(&seed) & 1);
                m->non_standard = (unsigned)(rnd(&seed) & 1);
                m->sf = (uint32_t)(rnd(&seed) & 0xfff);
                m->pc = (uint32_t)(rnd(&seed) & 0xffffff);
                m->pli = (uint32_t)(rnd(&seed) & 0xffffff);
                m->p1t = (unsigned)(rnd(&seed) & 1);
                rand_set(&seed, &m->vc);
                rand_set(&seed, &m->vli);
                m->nr = rnd(&seed) % (N(m->r) + 1);
                for (size_t i = 0; i < m->nr; i++) {
                        m->r[i].purpose = 1 + (unsigned)(rnd(&seed) % 24);
                        m->r[i].type = (unsigned)(rnd(&seed) % 3);
                        rand_entries(&seed, m->r[i].e, &m->r[i].ne,
                                     N(m->r[i].e), 1 + rnd(&seed) % 400);
                }
                rand_set(&seed, &m->disc);
                rand_set(&seed, &m->allow);
                m->pubc = (uint32_t)(rnd(&seed) & 0xffffff);
                m->publi = (uint32_t)(rnd(&seed) & 0xffffff);
                m->ncust = (unsigned)(rnd(&seed) % 64);
                m->custc = rnd(&seed) & ((1ULL << m->ncust) - 1);
                m->custli = rnd(&seed) & ((1ULL << m->ncust) - 1);
                int order[3] = {1, 2, 3};
                for (int i = 2; i > 0; i--) {
                        int j = (int)(rnd(&seed) % (unsigned)(i + 1));
                        int x = order[i];
                        order[i] = order[j];
                        order[j] = x;
                }
                roundtrip(f, order, rnd(&seed) % 4);
        }
}

static void test_roundtrip_edges(void **state) {
        struct fixture *f = *state;
        struct tmodel *m = &f->m;
        const int all[] = {1, 2, 3};

        /* maxVendorId 0, both encodings, and an empty restriction */
        base_model(m);
        m->vc.use_range = 1;
        m->nr = 1;
        m->r[0].purpose = 24;
        m->r[0].type = VEIL_TCF_REQUIRE_LI;
        roundtrip(f, NULL, 0);
        assert_int_equal(veil_tcf_vendor_consent(&f->t, 1), 0);
        assert_int_equal(veil_tcf_vendor_consent(&f->t, 0), 0);
        assert_int_equal(veil_tcf_vendor_consent(&f->t, -1), 0);

        /* single ids, adjacent and repeated ids, ranges covering many */
        base_model(m);
        m->vc.max_id = 65535;
        m->vc.use_range = 1;
        m->vc.ne = 5;
        m->vc.e[0] = (struct ent){1, 1};
        m->vc.e[1] = (struct ent){3, 3};
        m->vc.e[2] = (struct ent){3, 3};
        m->vc.e[3] = (struct ent){100, 5000};
        m->vc.e[4] = (struct ent){65535, 65535};
        m->vli.max_id = 65535;
        m->vli.use_range = 1;
        m->vli.ne = 1;
        m->vli.e[0] = (struct ent){1, 65535};
        m->nr = 3;
        m->r[0] = (struct trestr){1, VEIL_TCF_NOT_ALLOWED, 4,
                                  {{5, 9}, {1, 4}, {10, 10}, {7, 8}}};
        m->r[1] = (struct trestr){1, VEIL_TCF_REQUIRE_CONSENT, 2,
                                  {{200, 300}, {250, 260}}};
        m->r[2] = (struct trestr){2, VEIL_TCF_REQUIRE_LI, 1,
                                  {{1, 65535}}};
        roundtrip(f, NULL, 0);
        assert_int_equal(set_count(&f->t.vendor_li), 65535);
        assert_int_equal(set_count(&f->t.vendor_consents), 4904);
        /* the unsorted, adjacent ranges of r[0] merge into one */
        assert_int_equal(f->t.restrictions[0].count, 1);
        assert_int_equal(f->t.restrictions[1].count, 1);
        assert_int_equal(veil_tcf_restrictions(&f->t, 2, 65535),
                         1u << VEIL_TCF_REQUIRE_LI);

        /* bitfields around word boundaries, every id set */
        static const unsigned sizes[] = {1, 7, 8, 63, 64, 65, 127, 128,
                                         129, 191, 192, 193, 65535};
        for (size_t i = 0; i < N(sizes); i++) {
                base_model(m);
                m->vc.max_id = sizes[i];
                m->vc.ne = 1;
                m->vc.e[0] = (struct ent){1, sizes[i]};
                m->vli.max_id = sizes[i];
                m->vli.ne = 2;
                m->vli.e[0] = (struct ent){1, 1};
                m->vli.e[1] = (struct ent){sizes[i], sizes[i]};
                m->disc = m->vc;
                m->allow = m->vli;
                m->ncust = 63;
                m->custc = (1ULL << 63) - 1;
                m->custli = 1ULL << 62;
                roundtrip(f, all, 3);
                assert_int_equal(set_count(&f->t.vendor_consents), sizes[i]);
                assert_true(veil_tcf_custom_purpose_li(&f->t, 63));
                assert_false(veil_tcf_custom_purpose_li(&f->t, 62));
        }
        /* a range ending exactly at maxVendorId */
        base_model(m);
        m->vc.max_id = 50;
        m->vc.use_range = 1;
        m->vc.ne = 1;
        m->vc.e[0] = (struct ent){40, 50};
        roundtrip(f, NULL, 0);
}

/* Decoding into the same struct again forgets everything before. */
static void test_reuse(void **state) {
        struct fixture *f = *state;
        decode_ok(&f->t, V8);
        decode_ok(&f->t, V2);
        check_v2_core(&f->t);
        assert_int_equal(f->t.num_restrictions, 0);
        decode_ok(&f->t, V1);
        assert_int_equal(f->t.disclosed_vendors.present, 0);
        assert_false(veil_tcf_vendor_consent(&f->t, 23));
        assert_int_equal(f->t.has_publisher_tc, 0);
}

/* ------------------------------------------------------------------ */
/* Strictness                                                          */
/* ------------------------------------------------------------------ */

/* Every prefix that drops at least one character of the fields fails. */
static void test_truncation(void **state) {
        struct fixture *f = *state;
        struct tmodel *m = &f->m;
        char cut[4096];
        base_model(m);
        m->vc.max_id = 90;
        m->vc.ne = 2;
        m->vc.e[0] = (struct ent){5, 20};
        m->vc.e[1] = (struct ent){90, 90};
        m->vli.max_id = 300;
        m->vli.use_range = 1;
        m->vli.ne = 2;
        m->vli.e[0] = (struct ent){7, 7};
        m->vli.e[1] = (struct ent){100, 300};
        m->nr = 1;
        m->r[0] = (struct trestr){2, 1, 2, {{1, 1}, {3, 9}}};
        encode(m, &f->w, f->s, NULL, 0);
        size_t used = f->w.n, chars = (used + 5) / 6;
        assert_int_equal(strlen(f->s), chars);
        for (size_t k = 0; k < chars; k++) {
                memcpy(cut, f->s, k);
                cut[k] = '\0';
                decode_bad_n(&f->t, cut, k, k ? "truncated core" : "empty");
        }
        /* a cut optional segment fails the same way */
        const int order[] = {1};
        m->disc = m->vli;
        encode(m, &f->w, f->s, order, 1);
        size_t len = strlen(f->s), dot = strchr(f->s, '.') - f->s;
        for (size_t k = dot + 1; k < len; k++) {
                memcpy(cut, f->s, k);
                cut[k] = '\0';
                decode_bad_n(&f->t, cut, k, NULL);
        }
}

static void test_truncated_message(void **state) {
        struct fixture *f = *state;
        base_model(&f->m);
        f->w.n = 0;
        put_core(&f->w, &f->m);
        b64(&f->w, 213, f->s); /* up to, not including, maxVendorId */
        decode_bad(&f->t, f->s,
                   "truncated core segment at bit 213, need 16 bits for "
                   "vendorConsents.maxVendorId, 3 left");
}

/* A bitfield one bit shorter than maxVendorId, in the last segment so no
 * later field can lend it bits: 3+16+1+22 = 42 bits = 7 characters. */
static void test_bitfield_one_short(void **state) {
        struct fixture *f = *state;
        char s[256];
        base_model(&f->m);
        encode(&f->m, &f->w, s, NULL, 0);
        f->w.n = 0;
        put(&f->w, 1, 3);
        put(&f->w, 23, 16);
        put(&f->w, 0, 1);
        put(&f->w, 0x2aaaaa, 22);
        append_seg(s, &f->w);
        decode_bad(&f->t, s, "need 23 bits for disclosedVendors.bitField, "
                             "22 left");
        /* with the missing bit it decodes: vendor i is bit 23-i here */
        encode(&f->m, &f->w, s, NULL, 0);
        f->w.n = 0;
        put(&f->w, 1, 3);
        put(&f->w, 23, 16);
        put(&f->w, 0, 1);
        put(&f->w, 1u << 21 | 1u, 23);
        append_seg(s, &f->w);
        decode_ok(&f->t, s);
        for (int id = 0; id <= 24; id++)
                assert_int_equal(veil_tcf_vendor_disclosed(&f->t, id),
                                 id == 2 || id == 23);
}

static void test_bad_characters(void **state) {
        struct fixture *f = *state;
        static const char bad[] = {'+', '/', ' ', '\n', '!', '*', '\0',
                                   '~', (char)0x80, (char)0xff, '%'};
        char s[256];
        for (size_t i = 0; i < sizeof(bad); i++) {
                static const size_t at[] = {0, 10, 43};
                for (size_t j = 0; j < N(at); j++) {
                        memcpy(s, V1, sizeof(V1));
                        s[at[j]] = bad[i];
                        decode_bad_n(&f->t, s, sizeof(V1) - 1,
                                     "invalid character");
                }
        }
        /* '=' anywhere but a segment's end */
        decode_bad(&f->t, "COtybn4PA=zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA",
                   "invalid character at offset 9");
        decode_bad(&f->t, V2_CORE "=" V2_DISCLOSED, "padding");
}

static void test_padding(void **state) {
        struct fixture *f = *state;
        /* V1 is 44 characters: any '=' would overshoot a multiple of 4 */
        decode_bad(&f->t, V1 "=", "padding");
        decode_bad(&f->t, V1 "==", "padding");
        /* the V2 publisher segment is 11 characters: exactly one '=' */
        decode_ok(&f->t, V2_CORE V2_PUBTC);
        decode_ok(&f->t, V2_CORE ".cAAAAAAAITg");
        decode_bad(&f->t, V2_CORE ".cAAAAAAAITg==", "padding");
        decode_bad(&f->t, V2_CORE ".cAAAAAAAITg===", "padding");
        decode_bad(&f->t, V2_CORE ".==", "padding");
        /* '=' also closes a middle segment, as each is decoded alone */
        decode_ok(&f->t, V2_CORE V2_PUBTC V2_ALLOWED);
        /* zero padding of any length is accepted ... */
        decode_ok(&f->t, V1 "AAAA");
        decode_ok(&f->t, V2_CORE ".cAAAAAAAITgA");
        /* ... stray non-zero bits after the last field are not */
        decode_bad(&f->t, V1 "AAAB", "non-zero padding");
        /* V1 uses 259 of 264 bits: the 5 padding bits live in the last
         * character, 'A' = 000000; 'B' sets the last padding bit */
        char s[64];
        memcpy(s, V1, sizeof(V1));
        s[43] = 'B';
        decode_bad(&f->t, s, "non-zero padding at bit 263");
}

static void test_structure(void **state) {
        struct fixture *f = *state;
        decode_bad_n(&f->t, "", 0, "empty TC string");
        decode_bad_n(&f->t, NULL, 0, "empty TC string");
        decode_bad(&f->t, ".", "empty segment 1");
        decode_bad(&f->t, "." V1, "empty segment 1");
        decode_bad(&f->t, V1 ".", "empty segment 2");
        decode_bad(&f->t, V1 "..IAAA", "empty segment 2");
        decode_bad(&f->t, V1 ".IAAA.", "empty segment 3");
        /* duplicate optional segments */
        decode_bad(&f->t, V1 ".IAAA.IAAA", "repeats segment type 1");
        decode_bad(&f->t, V1 ".QAAA.IAAA.QAAA", "repeats segment type 2");
        decode_bad(&f->t, V2_CORE V2_PUBTC V2_PUBTC,
                   "repeats segment type 3");
        /* a second core segment, or a type with no meaning */
        decode_bad(&f->t, V1 "." V1, "segment 2 has type 0");
        decode_bad(&f->t, V1 ".AAAA", "segment 2 has type 0");
        static const char *const unknown[] = {"gAAA", "oAAA", "wAAA",
                                              "4AAA"};
        for (size_t i = 0; i < N(unknown); i++) {
                char s[64];
                snprintf(s, sizeof(s), V1 ".%s", unknown[i]);
                decode_bad(&f->t, s, "valid types are 1");
        }
        /* a too-short optional segment */
        decode_bad(&f->t, V1 ".I", "need 16 bits for disclosedVendors."
                                   "maxVendorId");
        decode_bad(&f->t, V1 ".c", "need 24 bits for pubPurposesConsent");
        /* NULL arguments */
        char err[128];
        assert_int_equal(veil_tcf_decode(V1, 44, NULL, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_tcf_decode(NULL, 4, &f->t, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(f->t.valid, 0);
        /* no errstr is fine */
        assert_int_equal(veil_tcf_decode("x", 1, &f->t, NULL, 0),
                         -VEIL_EDECODE);
}

static void expect_model_error(struct fixture *f, const char *msg) {
        encode(&f->m, &f->w, f->s, NULL, 0);
        decode_bad(&f->t, f->s, msg);
}

static void test_field_values(void **state) {
        struct fixture *f = *state;
        struct tmodel *m = &f->m;
        static const unsigned versions[] = {0, 1, 3, 63};
        for (size_t i = 0; i < N(versions); i++) {
                base_model(m);
                m->version = versions[i];
                expect_model_error(f, "unsupported TC string version");
        }
        base_model(m);
        m->lang[1] = 'A' + 26;
        expect_model_error(f, "consentLanguage at bit 108");
        base_model(m);
        m->cc[0] = 'A' + 30;
        expect_model_error(f, "publisherCountryCode at bit 201");
        /* restriction purpose and type */
        base_model(m);
        m->nr = 2;
        m->r[0] = (struct trestr){5, 1, 1, {{2, 2}}};
        m->r[1].purpose = 0;
        expect_model_error(f, "publisherRestrictions[1].purposeId");
        m->r[0].purpose = 25;
        expect_model_error(f, "publisherRestrictions[0].purposeId at bit "
                              "259 of the core segment: purpose id out of "
                              "range; valid are 1..24");
        m->r[0].purpose = 24;
        m->r[1].purpose = 1;
        m->r[1].type = 3;
        expect_model_error(f, "publisherRestrictions[1].restrictionType");
        /* ranges */
        base_model(m);
        m->vc.max_id = 10;
        m->vc.use_range = 1;
        m->vc.ne = 2;
        m->vc.e[0] = (struct ent){1, 2};
        m->vc.e[1] = (struct ent){5, 4};
        expect_model_error(f, "vendorConsents.entries[1].endVendorId");
        m->vc.e[1] = (struct ent){0, 4};
        expect_model_error(f, "vendor id 0");
        m->vc.e[1] = (struct ent){0, 0};
        expect_model_error(f, "vendor id 0");
        m->vc.e[1] = (struct ent){11, 11};
        expect_model_error(f, "vendor id 11 is above maxVendorId 10");
        m->vc.e[1] = (struct ent){9, 11};
        expect_model_error(f, "vendor id 11 is above maxVendorId 10");
        m->vc.max_id = 0;
        m->vc.ne = 1;
        m->vc.e[0] = (struct ent){1, 1};
        expect_model_error(f, "above maxVendorId 0");
        base_model(m);
        m->nr = 1;
        m->r[0] = (struct trestr){3, 1, 2, {{4, 6}, {9, 8}}};
        expect_model_error(f, "publisherRestrictions[0].entries[1]."
                              "endVendorId");
        m->r[0] = (struct trestr){3, 1, 1, {{0, 6}}};
        expect_model_error(f, "vendor id 0");
        /* a restriction count larger than what follows */
        base_model(m);
        m->nr = 1;
        m->r[0] = (struct trestr){3, 1, 1, {{4, 6}}};
        encode(m, &f->w, f->s, NULL, 0);
        f->w.n = 0;
        put_core(&f->w, m);
        /* patch numPubRestrictions (right after both vendor sections of
         * 17 bits each at bit 213) from 1 to 4095 */
        for (int b = 0; b < 12; b++)
                f->w.bit[213 + 34 + b] = 1;
        b64(&f->w, f->w.n, f->s);
        decode_bad(&f->t, f->s, "truncated core segment");
}

/* An error leaves nothing that reads as consent, even after a success. */
static void test_error_clears(void **state) {
        struct fixture *f = *state;
        decode_ok(&f->t, V8);
        assert_true(veil_tcf_vendor_consent(&f->t, 1));
        assert_true(veil_tcf_purpose_consent(&f->t, 1));
        assert_int_equal(veil_tcf_restrictions(&f->t, 3, 1),
                         1u << VEIL_TCF_REQUIRE_CONSENT);
        decode_bad(&f->t, V8 "!", "invalid character");
        assert_false(veil_tcf_vendor_consent(&f->t, 1));
        assert_false(veil_tcf_vendor_li(&f->t, 8));
        assert_false(veil_tcf_purpose_li(&f->t, 2));
        assert_false(veil_tcf_special_feature(&f->t, 1));
        assert_int_equal(veil_tcf_restrictions(&f->t, 3, 1), 0);
        assert_string_equal(f->t.consent_language, "");
        /* a failure late in an optional segment also drops the core */
        decode_ok(&f->t, V2);
        decode_bad(&f->t, V2_CORE V2_DISCLOSED ".IAAA", "repeats");
        assert_false(veil_tcf_vendor_consent(&f->t, 23));
        assert_false(veil_tcf_vendor_disclosed(&f->t, 23));
        assert_int_equal(f->t.disclosed_vendors.present, 0);
        /* and a fresh struct answers 0 too */
        struct veil_tcf z = {0};
        assert_false(veil_tcf_vendor_consent(&z, 1));
        assert_false(veil_tcf_purpose_consent(&z, 1));
        assert_int_equal(veil_tcf_restrictions(&z, 1, 1), 0);
        assert_false(veil_tcf_vendor_consent(NULL, 1));
        veil_tcf_clear(&z);
        veil_tcf_clear(NULL);
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

static void expect_in(const char *json, const char *part) {
        if (!strstr(json, part)) {
                print_error("JSON lacks %s\n%s\n", part, json);
                fail();
        }
}

static void test_json(void **state) {
        struct fixture *f = *state;
        decode_ok(&f->t, V2);
        char *j = veil_tcf_to_json(&f->t);
        assert_non_null(j);
        assert_true(j[0] == '{' && j[strlen(j) - 1] == '}');
        expect_in(j, "{\"version\":2,\"created\":\"2019-12-04T18:53:00Z\","
                     "\"lastUpdated\":\"2019-12-10T18:53:00Z\",\"cmpId\":2,"
                     "\"cmpVersion\":1,\"consentScreen\":1,"
                     "\"consentLanguage\":\"EN\",\"vendorListVersion\":7,"
                     "\"tcfPolicyVersion\":2,\"isServiceSpecific\":false,"
                     "\"useNonStandardTexts\":false,");
        expect_in(j, "\"specialFeatureOptins\":[1],");
        expect_in(j, "\"purposeConsents\":[3,4,5,6,7,8,9],");
        expect_in(j, "\"purposeLegitimateInterests\":[],");
        expect_in(j, "\"purposeOneTreatment\":false,");
        expect_in(j, "\"publisherCountryCode\":\"AQ\",");
        expect_in(j, "\"vendorConsents\":[23,37,47,48,53,65,98],");
        expect_in(j, "\"vendorLegitimateInterests\":[37,47,48,53,65,98,"
                     "129],");
        expect_in(j, "\"publisherRestrictions\":[],");
        expect_in(j, "\"disclosedVendors\":[23,37,47,48,53,65,98,129],");
        expect_in(j, "\"allowedVendors\":[12,23,37,47,48,53],");
        expect_in(j, "\"publisherConsents\":[1],"
                     "\"publisherLegitimateInterests\":[24],"
                     "\"numCustomPurposes\":2,"
                     "\"customPurposeConsents\":[2],"
                     "\"customPurposeLegitimateInterests\":[1,2]}");
        free(j);

        /* absent segments are null; a decisecond shows as a fraction */
        decode_ok(&f->t, V5);
        j = veil_tcf_to_json(&f->t);
        assert_non_null(j);
        expect_in(j, "\"created\":\"2020-03-24T17:43:29.3Z\"");
        expect_in(j, "\"disclosedVendors\":null,\"allowedVendors\":null,"
                     "\"publisherConsents\":null,"
                     "\"publisherLegitimateInterests\":null,"
                     "\"numCustomPurposes\":null,"
                     "\"customPurposeConsents\":null,"
                     "\"customPurposeLegitimateInterests\":null}");
        expect_in(j, "\"purposeConsents\":[1,2],");
        free(j);

        decode_ok(&f->t, V1);
        j = veil_tcf_to_json(&f->t);
        assert_non_null(j);
        expect_in(j, "\"created\":\"2020-01-26T17:01:00Z\"");
        expect_in(j, "\"lastUpdated\":\"2021-02-02T17:01:00Z\"");
        expect_in(j, "\"purposeOneTreatment\":true,");
        expect_in(j, "\"purposeLegitimateInterests\":[2,9],");
        free(j);

        decode_ok(&f->t, V6);
        j = veil_tcf_to_json(&f->t);
        assert_non_null(j);
        expect_in(j, "\"publisherRestrictions\":[{\"purposeId\":1,"
                     "\"restrictionType\":1,\"vendorRanges\":[]},"
                     "{\"purposeId\":2,\"restrictionType\":0,"
                     "\"vendorRanges\":[]},{\"purposeId\":3,"
                     "\"restrictionType\":2,\"vendorRanges\":[]}]");
        free(j);

        /* a big set lists every id once, in order */
        decode_ok(&f->t, V8);
        j = veil_tcf_to_json(&f->t);
        assert_non_null(j);
        expect_in(j, "\"vendorConsents\":[1,2,4,6,7,8,10,11,12,13,14,15,");
        const char *vc = strstr(j, "\"vendorConsents\":[");
        const char *end = strchr(vc, ']');
        size_t commas = 0;
        for (const char *p = vc; p < end; p++)
                commas += *p == ',';
        assert_int_equal(commas + 1, 772);
        free(j);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors_match_file),
                cmocka_unit_test(test_v1),
                cmocka_unit_test(test_v2),
                cmocka_unit_test(test_v3),
                cmocka_unit_test(test_v4),
                cmocka_unit_test(test_v5),
                cmocka_unit_test(test_v6_restrictions),
                cmocka_unit_test(test_v7_duplicate_vendor),
                cmocka_unit_test(test_v8),
                cmocka_unit_test(test_v9_policy5),
                cmocka_unit_test(test_gpp_tcf_section),
                cmocka_unit_test(test_negative_vectors),
                cmocka_unit_test_setup_teardown(test_roundtrip_random, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_roundtrip_edges, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_reuse, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncation, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_truncated_message, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_bitfield_one_short,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_characters, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_padding, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_structure, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_field_values, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_error_clears, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

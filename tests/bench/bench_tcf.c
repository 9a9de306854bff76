/*
 * bench_tcf.c — TC-string decode throughput (numbers, not pass/fail).
 *
 * Decodes conformance vectors (tests/conformance/tcf-vectors.txt) in a loop
 * into one reused struct, as the consent plugin will, for ~2 s in all, and
 * prints strings/s and ns/string per string. The ceiling measured in the
 * same run is one table lookup per character of the same string (what any
 * base64 decoder must at least do); the ratio says how far above that
 * floor the whole decode costs.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tcf.h"

/* V8: 772 consented vendors of 1166 (bitfields), 3 restrictions. */
static const char v8[] =
        "CPi8wgAPi8wgAAOACBENCuCoAP_AAEfAACiQJHNd_H__bX9n-f7_6ft0eY1f9_r37u"
        "QzDhfNk-8F3L_W_LwX_2E7NF36tq4KmR4ku1LBIUNtHMnUDUmxaokVrzHsak2cpzNK"
        "J_BkknsZe2dYGF9vm5tj-QKZ7_5_d3f52T_9_9v-39z33913v3d93-_13LjdV5_9H_"
        "v9fR_b8_Kf9_5-_4v8_____3_e______8AEEggCTDVuIAuxLHAm0DCKBECMKwkKoFA"
        "BBQDC0QGADg4KdlYBPrCBAAgFAEYEQIcAUYEAgAAAgCQiACQIsEAAAIgEAAIAEQiEA"
        "BAwCCgAsDAIAAQDQMUQoABAkIMiAiKUwICIEggJbKhBKC6Q0wgCrLACgkRsFAAiAAA"
        "UgACAsHAMESAlYsECTFG-QAjBCgFEqFaAGGgAwABBI4RABgACCRwqADAAEEjgA";
/* V7: 479 of 808 vendors (bitfields), 20 restrictions with ranges. */
static const char v7[] =
        "CO4VGswO4VGswAfZCBDEAzCsAP_AAH_AAAigGUNf_X9fb2vj-_599_t0eY1f9_63t-"
        "wzjheMs-8NyZ-X_J4Wv2MyvB34JqQKGRgkunLBAQdtHGncTQgBwIlViTLMY02MjzNK"
        "JrJEilsbe2dYGH9vn8XT_ZKZ70-_v__7v3___33_5Ayhr_6_r7e18f3_Pvv9ujzGr_"
        "v_W9v2GccLxln3huTPy_5PC1-xmV4O_BNSBQyMEl05YICDto407iaEAOBEqsSZZjGm"
        "xkeZpRNZIkUtjb2zrAw_t8_i6f7JTPen39___d-___--__ICgKAOAAcAA4AFAAjgB6"
        "AEYALcGACAW0AtoJAHAAOAAcACgARwA9ACMAFuFABALaAW0GgDgAHAAOABQAI4AegB"
        "GAC3DgAgFtALaEQBwADgAHAAoAEcAPQAjABbiQAQC2gFtCoA4ABwADgAUACOAHoARg"
        "AtxYAIBbQC2hkAcAA4ABwAKABHAD0AIwAW40AEAtoBbQ6AOAAcAA4AFAAjgB6AEYAL"
        "ceACAW0AtohAHAAOAAcACgARwA9ACMAFuRABALaAW0SgDgAHAAOABQAI4AegBGAC3J"
        "gAgFtALaKQBwADgAHAAoAEcAPQAjABblQAQC2gFtA";
/* V4a + disclosed segment: range-encoded core, 79 disclosed of 720. */
static const char v4[] =
        "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA"
        ".IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAA"
        "gAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw";
/* V2: small, all four segments. */
static const char v2[] =
        "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEA"
        "YQAQAAAACAAAABAAA.IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA"
        ".cAAAAAAAITg=";

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The floor: one lookup per character, no bits assembled. */
static unsigned scan(const char *s, size_t len) {
        static const unsigned char ok[256] = {['A'] = 1, ['z'] = 1};
        unsigned acc = 0;
        for (size_t i = 0; i < len; i++)
                acc += ok[(unsigned char)s[i]];
        return acc;
}

/* Decodes s for about `secs` into the same struct; ns per string. */
static double run_decode(struct veil_tcf *t, const char *s, size_t len,
                         double secs, unsigned long *sink) {
        unsigned long n = 0;
        char err[256];
        double t0 = now(), t1;
        do {
                for (int i = 0; i < 1000; i++) {
                        if (veil_tcf_decode(s, len, t, err, sizeof(err))) {
                                fprintf(stderr, "decode failed: %s\n", err);
                                return -1;
                        }
                        *sink += t->vendor_consents.max_id +
                                 (unsigned long)veil_tcf_vendor_consent(t, 755);
                }
                n += 1000;
                t1 = now();
        } while (t1 - t0 < secs);
        return (t1 - t0) * 1e9 / (double)n;
}

static double run_scan(const char *s, size_t len, double secs,
                       unsigned long *sink) {
        unsigned long n = 0;
        double t0 = now(), t1;
        do {
                for (int i = 0; i < 10000; i++) {
                        /* an opaque pointer keeps the loop from folding */
                        const char *volatile p = s;
                        *sink += scan(p, len);
                }
                n += 10000;
                t1 = now();
        } while (t1 - t0 < secs);
        return (t1 - t0) * 1e9 / (double)n;
}

int main(void) {
        static const struct {
                const char *name, *s;
        } cases[] = {
                {"V8  772/1166 vendors bitfield + 3 restrictions", v8},
                {"V7  479/808 vendors bitfield + 20 restrictions", v7},
                {"V4a range core + 720-id disclosed bitfield", v4},
                {"V2  small, all four segments", v2},
        };
        struct veil_tcf t = {0};
        unsigned long sink = 0;
        double total_ns = 0;
        printf("%-48s %6s %12s %10s %10s\n", "string", "chars", "strings/s",
               "ns/string", "x floor");
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                size_t len = strlen(cases[i].s);
                double ns = run_decode(&t, cases[i].s, len, 0.45, &sink);
                if (ns < 0)
                        return 1;
                double floor_ns = run_scan(cases[i].s, len, 0.05, &sink);
                total_ns += ns;
                printf("%-48s %6zu %12.0f %10.1f %10.1f\n", cases[i].name,
                       len, 1e9 / ns, ns, ns / floor_ns);
        }
        printf("mean over the %zu strings: %.0f strings/s per core "
               "(sink %lu)\n",
               sizeof(cases) / sizeof(*cases),
               1e9 / (total_ns / (double)(sizeof(cases) / sizeof(*cases))),
               sink % 10);
        veil_tcf_clear(&t);
        return 0;
}

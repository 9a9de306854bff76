/*
 * bench_consent.c — the consent stage's two hot paths (numbers, not
 * pass/fail):
 *
 *  1. ledger lookups with N people (default 10 million; argv[1] to change):
 *     bytes per person, inserts/s, and lookups/s one at a time and the way
 *     the stage does them (a batch of 256: hash all, prefetch, then find).
 *     Ceiling measured in the same run: hashing the id (SipHash-128) plus
 *     one random 32-byte read from an array as large as the table — what
 *     any keyed lookup in memory that size must at least pay.
 *  2. TC strings decoded and mapped to tiers per second on one core, for
 *     real CMP strings with a few hundred vendors (conformance vectors V7:
 *     479 vendors and 20 publisher restrictions; V8: 772 vendors). Ceiling:
 *     one table lookup per character (what any base64 decoder must do).
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "tcf.h"
#include "tiermap.h"

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

#define ID_LEN 16
/* Ids like those of an account system: "u00000000012345". */
static void make_id(char *out, uint64_t i) {
        out[0] = 'u';
        for (int d = ID_LEN - 2; d >= 1; d--, i /= 10)
                out[d] = (char)('0' + i % 10);
        out[ID_LEN - 1] = '\0';
}

static void bench_ledger(size_t n) {
        struct veil_ledger l;
        if (veil_ledger_init(&l, 0)) {
                fprintf(stderr, "out of memory\n");
                exit(1);
        }
        char id[ID_LEN];
        double t0 = now();
        for (size_t i = 0; i < n; i++) {
                struct veil_ledger_key k;
                int created;
                make_id(id, i);
                veil_ledger_key(&l, id, ID_LEN - 1, &k);
                struct veil_ledger_entry *e = veil_ledger_insert(&l, &k,
                                                                 &created);
                if (!e) {
                        fprintf(stderr, "out of memory at %zu\n", i);
                        exit(1);
                }
                e->own = (uint8_t)(i & 0x0f);
        }
        double ins = now() - t0;
        printf("ledger: %zu people, %.1f MB of table, %.1f bytes/person "
               "(load %.2f); %.2f M inserts/s (with growth)\n",
               veil_ledger_count(&l), veil_ledger_bytes(&l) / 1e6,
               (double)veil_ledger_bytes(&l) / (double)n,
               (double)n / (double)l.cap, n / ins / 1e6);

        /* Ids to look up, made before timing: 2^20 random people. */
        enum { Q = 1 << 20, BATCH = 256 };
        char *ids = malloc((size_t)Q * ID_LEN);
        uint64_t seed = 0x2545f4914f6cdd1dULL;
        for (size_t q = 0; q < Q; q++)
                make_id(ids + q * ID_LEN, rnd(&seed) % n);
        uint64_t found = 0;
        int rounds = 4;

        /* One at a time. */
        t0 = now();
        for (int r = 0; r < rounds; r++)
                for (size_t q = 0; q < Q; q++) {
                        struct veil_ledger_key k;
                        veil_ledger_key(&l, ids + q * ID_LEN, ID_LEN - 1, &k);
                        const struct veil_ledger_entry *e =
                                veil_ledger_find(&l, &k);
                        found += e ? e->own + 1u : 0;
                }
        double single = (now() - t0) / ((double)Q * rounds) * 1e9;

        /* As process() does: hash and prefetch a batch, then find. */
        struct veil_ledger_key keys[BATCH];
        t0 = now();
        for (int r = 0; r < rounds; r++)
                for (size_t q = 0; q < Q; q += BATCH) {
                        for (size_t i = 0; i < BATCH; i++) {
                                veil_ledger_key(&l, ids + (q + i) * ID_LEN,
                                                ID_LEN - 1, &keys[i]);
                                veil_ledger_prefetch(&l, &keys[i]);
                        }
                        for (size_t i = 0; i < BATCH; i++) {
                                const struct veil_ledger_entry *e =
                                        veil_ledger_find(&l, &keys[i]);
                                found += e ? e->own + 1u : 0;
                        }
                }
        double batched = (now() - t0) / ((double)Q * rounds) * 1e9;

        /* Misses: people without a record (default deny). */
        for (size_t q = 0; q < Q; q++)
                make_id(ids + q * ID_LEN, n + rnd(&seed) % n);
        t0 = now();
        for (size_t q = 0; q < Q; q += BATCH) {
                for (size_t i = 0; i < BATCH; i++) {
                        veil_ledger_key(&l, ids + (q + i) * ID_LEN, ID_LEN - 1,
                                        &keys[i]);
                        veil_ledger_prefetch(&l, &keys[i]);
                }
                for (size_t i = 0; i < BATCH; i++)
                        found += veil_ledger_find(&l, &keys[i]) != NULL;
        }
        double miss = (now() - t0) / (double)Q * 1e9;

        /* The ceiling: the hash, and one random read as large as the table
         * (the table itself, read at random slots). */
        t0 = now();
        for (int r = 0; r < rounds; r++)
                for (size_t q = 0; q < Q; q++) {
                        struct veil_ledger_key k;
                        veil_ledger_key(&l, ids + q * ID_LEN, ID_LEN - 1, &k);
                        found += k.k0 & 1;
                }
        double hash = (now() - t0) / ((double)Q * rounds) * 1e9;
        t0 = now();
        for (int r = 0; r < rounds; r++)
                for (size_t q = 0; q < Q; q++)
                        found += l.slots[rnd(&seed) % l.cap].own;
        double rread = (now() - t0) / ((double)Q * rounds) * 1e9;

        printf("ledger lookup, one at a time: %6.1f ns  (%.1f M/s)\n", single,
               1e3 / single);
        printf("ledger lookup, batch of %d:  %6.1f ns  (%.1f M/s)   misses: "
               "%.1f ns\n",
               BATCH, batched, 1e3 / batched, miss);
        printf("ceiling: SipHash-128 of the id %.1f ns + one random read of "
               "a %.0f MB array %.1f ns = %.1f ns; one-at-a-time lookup / "
               "ceiling = %.2f\n",
               hash, veil_ledger_bytes(&l) / 1e6, rread, hash + rread,
               single / (hash + rread));
        printf("(checksum %llu)\n", (unsigned long long)found);
        free(ids);
        veil_ledger_free(&l);
}

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

static void bench_tcf(const char *name, const char *s, int vendor) {
        struct veil_tcf t;
        memset(&t, 0, sizeof(t));
        struct veil_tiermap m;
        memset(&m, 0, sizeof(m));
        char err[256];
        veil_tiermap_add_group(&m, 0, "5", err, sizeof(err));
        veil_tiermap_add_group(&m, 0, "6", err, sizeof(err));
        veil_tiermap_add_group(&m, 1, "11", err, sizeof(err));
        veil_tiermap_add_group(&m, 2, "10", err, sizeof(err));
        veil_tiermap_add_group(&m, 3, "8", err, sizeof(err));
        veil_tiermap_allow_li(&m, "11", err, sizeof(err));
        m.vendor_id = vendor;
        m.restrictions = 1;
        size_t len = strlen(s);
        unsigned long sink = 0, n = 0;
        double t0 = now(), t1;
        do {
                for (int i = 0; i < 1000; i++) {
                        if (veil_tcf_decode(s, len, &t, err, sizeof(err))) {
                                fprintf(stderr, "%s: %s\n", name, err);
                                exit(1);
                        }
                        sink += veil_tiermap_eval(&m, &t);
                }
                n += 1000;
                t1 = now();
        } while (t1 - t0 < 1.0);
        double per = (t1 - t0) / (double)n * 1e9;
        unsigned consented = 0;
        for (size_t w = 0; w < ((size_t)t.vendor_consents.max_id + 63) / 64;
             w++)
                consented += (unsigned)__builtin_popcountll(
                        t.vendor_consents.bits[w]);
        /* The floor: one lookup per character. */
        static unsigned char ok[256];
        ok['A'] = 1;
        unsigned long fl = 0;
        t0 = now();
        for (unsigned long k = 0; k < n; k++) {
                for (size_t i = 0; i < len; i++)
                        fl += ok[(unsigned char)s[i]];
                __asm__ volatile("" : : "r"(fl) : "memory");
        }
        double floor_ns = (now() - t0) / (double)n * 1e9;
        printf("TC string %s (%zu chars, %u vendors consented, vendor %d "
               "checked): decode + tier mapping %.0f ns = %.0f k strings/s "
               "per core; floor (a lookup per character) %.0f ns, ratio "
               "%.1f  (checksum %lu)\n",
               name, len, consented, vendor, per,
               1e6 / per, floor_ns, per / floor_ns, sink + fl);
        veil_tcf_clear(&t);
}

int main(int argc, char **argv) {
        if (sodium_init() < 0)
                return 1;
        size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 10000000;
        bench_tcf("V7", v7, 755);
        bench_tcf("V8", v8, 755);
        bench_ledger(n);
        return 0;
}

/*
 * test_consent_robust.c — malformed consent records through the host and
 * the consent stage (no libFuzzer needed): valid records with flipped
 * bits, cut short, grown, replaced by noise, under their own or a foreign
 * key. Each one is either applied or dead-lettered; a dead-lettered one
 * must change nothing: the tiers, training flags and special features of
 * every known person, the audit trail and the erasure queue stay as they
 * were. The one exception, a record whose TC string alone is broken, is
 * applied as allowing nothing and dead-lettered: it may only narrow.
 * Under ASan/UBSan this is also a memory-safety sweep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define USERS 8
#define T0 1700000000000LL

struct digest {
        int tier[USERS], training[USERS];
        uint32_t sf[USERS];
        size_t audits;
        uint64_t erasures;
};

static void digest(struct harness *h, struct digest *d) {
        char ids[USERS][16];
        struct veil_batch *b = veil_pipeline_batch_begin(h->p);
        for (int i = 0; i < USERS; i++) {
                snprintf(ids[i], sizeof(ids[i]), "u%d", i);
                struct veil_event ev;
                memset(&ev, 0, sizeof(ev));
                ev.event_id = "e";
                ev.user_id = ids[i];
                ev.type = "view";
                ev.item_id = "i";
                ev.gpc = -1;
                assert_int_equal(veil_pipeline_batch_add_event(h->p, &ev), 1);
        }
        char err[512];
        assert_int_equal(veil_pipeline_batch_run(h->p, err, sizeof(err)), 0);
        for (int i = 0; i < USERS; i++) {
                d->tier[i] = b->events[i].tier;
                d->training[i] = b->events[i].training;
                d->sf[i] = b->events[i].special_features;
        }
        d->audits = h_count(h, "audit");
        d->erasures = veil_pipeline_erasures(h->p, NULL, NULL);
}

struct sample {
        char key[16];
        unsigned char *v;
        size_t len;
};

/* Valid records of every shape: grants, narrowing, TC strings, GPC,
 * access requests, each keyed by its person. */
static size_t make_samples(struct harness *h, struct sample *s, size_t max) {
        size_t n = 0;
        char tc[256];
        for (int i = 0; i < USERS && n < max; i++) {
                struct tc_model m = {.purposes = h_purposes(1, 5, 6, 10, 11,
                                                            0),
                                     .special = (uint16_t)(i & 3),
                                     .pub = 1};
                h_tc(&m, tc, sizeof(tc));
                for (int shape = 0; shape < 4 && n < max; shape++) {
                        veil_rec_t *r = veil_codec_rec_begin(h->consent);
                        snprintf(s[n].key, sizeof(s[n].key), "u%d", i);
                        veil_rec_set_str(r, "user_id", s[n].key);
                        veil_rec_set_str(r, "kind",
                                         shape == 3 ? "access" : "consent");
                        if (shape < 3) {
                                veil_rec_set_bool(r,
                                                  "purposes.personalization",
                                                  shape != 1);
                                veil_rec_set_bool(r, "purposes.training",
                                                  i & 1);
                                veil_rec_set_bool(r, "purposes.analytics",
                                                  shape == 2);
                        }
                        if (shape == 2)
                                veil_rec_set_str(r, "tc_string", tc);
                        if (i & 2)
                                veil_rec_set_bool(r, "gpc", shape == 1);
                        veil_rec_set_str(r, "source",
                                         shape == 2 ? "cmp" : "app");
                        veil_rec_set_long(r, "ts", T0 + i * 10 + shape);
                        struct veil_buf buf = {0};
                        char err[256];
                        assert_int_equal(veil_codec_rec_encode(h->consent,
                                                               &buf, err,
                                                               sizeof(err)),
                                         0);
                        s[n].v = buf.data;
                        s[n].len = buf.len;
                        n++;
                }
        }
        return n;
}

static uint64_t rnd(uint64_t *x) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

static void test_malformed_records_change_nothing(void **state) {
        (void)state;
        struct harness h;
        struct sample s[64];
        h_open(&h, "{}");
        size_t ns = make_samples(&h, s, 64);
        /* Everybody starts with a consent to break. */
        for (size_t i = 0; i < ns; i += 4)
                assert_int_equal(h_raw(&h, s[i].key, strlen(s[i].key), s[i].v,
                                       s[i].len),
                                 0);
        struct digest before, after;
        digest(&h, &before);
        uint64_t seed = 0x1234567887654321ULL;
        unsigned char buf[1024];
        size_t dead = 0, applied = 0, narrowed = 0;
        for (int iter = 0; iter < 6000; iter++) {
                const struct sample *x = &s[rnd(&seed) % ns];
                size_t len = x->len;
                memcpy(buf, x->v, len);
                switch (rnd(&seed) % 5) {
                case 0: /* flip a few bits */
                case 1:
                        for (int k = 1 + (int)(rnd(&seed) % 4); k > 0; k--)
                                buf[rnd(&seed) % len] ^=
                                        (unsigned char)(1u << (rnd(&seed) % 8));
                        break;
                case 2: /* cut short */
                        len = rnd(&seed) % len;
                        break;
                case 3: { /* a byte inserted, and trailing bytes */
                        size_t at = rnd(&seed) % len;
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = (unsigned char)rnd(&seed);
                        len++;
                        for (int k = (int)(rnd(&seed) % 8); k > 0; k--)
                                buf[len++] = (unsigned char)rnd(&seed);
                        break;
                }
                default: /* noise */
                        len = rnd(&seed) % 64;
                        for (size_t k = 0; k < len; k++)
                                buf[k] = (unsigned char)rnd(&seed);
                }
                /* Sometimes under another person's key. */
                const char *key = rnd(&seed) % 8 ? x->key
                                                 : s[rnd(&seed) % ns].key;
                size_t dl_before = h_count(&h, "dlq");
                assert_int_equal(h_raw(&h, key, strlen(key), buf, len), 0);
                size_t dl = h_count(&h, "dlq") - dl_before;
                assert_true(dl <= 1);
                digest(&h, &after);
                if (dl && strstr(h_at(&h, "dlq", dl_before)->error,
                                 "was applied as if its TC string allowed "
                                 "nothing")) {
                        narrowed++;
                        for (int u = 0; u < USERS; u++) {
                                assert_true(after.tier[u] <= before.tier[u]);
                                assert_true(after.training[u] <=
                                            before.training[u]);
                                assert_int_equal(after.sf[u] & ~before.sf[u],
                                                 0);
                        }
                        before = after;
                } else if (dl) {
                        dead++;
                        assert_memory_equal(&before, &after, sizeof(before));
                } else {
                        applied++;
                        before = after; /* a valid record may change things */
                }
                /* Now and then, back to a known state with valid records. */
                if (iter % 500 == 499) {
                        for (size_t i = 0; i < ns; i++)
                                assert_int_equal(
                                        h_raw(&h, s[i].key, strlen(s[i].key),
                                              s[i].v, s[i].len),
                                        0);
                        digest(&h, &before);
                }
        }
        /* Both paths were exercised. */
        print_message("%zu dead-lettered, %zu applied, %zu narrowed by a "
                      "broken TC string\n",
                      dead, applied, narrowed);
        assert_true(dead > 3000);
        assert_true(applied > 100);
        for (size_t i = 0; i < ns; i++)
                free(s[i].v);
        h_close(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_malformed_records_change_nothing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

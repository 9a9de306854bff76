/*
 * test_ledger.c — the ledger's table against a plain reference: random
 * inserts, lookups and removals (backward shift) across many growths, the
 * keyed hash (same id same key, keys differ between ledgers), and the
 * memory bound per person.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "ledger.h"

static uint64_t rnd(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void test_random_against_reference(void **state) {
        (void)state;
        enum { IDS = 60000, OPS = 400000 };
        struct veil_ledger l;
        assert_int_equal(veil_ledger_init(&l, 0), 0);
        /* reference: present[i] and the value stored for id i */
        unsigned char *present = calloc(IDS, 1);
        int64_t *val = calloc(IDS, sizeof(*val));
        size_t n = 0;
        uint64_t seed = 0x9e3779b97f4a7c15ULL;
        char id[32];
        for (long op = 0; op < OPS; op++) {
                unsigned i = (unsigned)(rnd(&seed) % IDS);
                int len = snprintf(id, sizeof(id), "user-%u", i);
                struct veil_ledger_key k;
                veil_ledger_key(&l, id, (size_t)len, &k);
                unsigned what = (unsigned)(rnd(&seed) % 10);
                if (what < 5) {
                        int created;
                        struct veil_ledger_entry *e =
                                veil_ledger_insert(&l, &k, &created);
                        assert_non_null(e);
                        assert_int_equal(created, !present[i]);
                        if (created) {
                                assert_int_equal(e->ts_ms, 0);
                                n++;
                        } else {
                                assert_int_equal(e->ts_ms, val[i]);
                        }
                        e->ts_ms = val[i] = op + 1;
                        present[i] = 1;
                } else if (what < 8) {
                        const struct veil_ledger_entry *e =
                                veil_ledger_find(&l, &k);
                        if (present[i]) {
                                assert_non_null(e);
                                assert_int_equal(e->ts_ms, val[i]);
                        } else {
                                assert_null(e);
                        }
                } else {
                        assert_int_equal(veil_ledger_remove(&l, &k),
                                         present[i]);
                        n -= present[i];
                        present[i] = 0;
                        assert_null(veil_ledger_find(&l, &k));
                }
                assert_int_equal(veil_ledger_count(&l), n);
        }
        /* Everything left is found with its value, then removed. */
        for (unsigned i = 0; i < IDS; i++) {
                int len = snprintf(id, sizeof(id), "user-%u", i);
                struct veil_ledger_key k;
                veil_ledger_key(&l, id, (size_t)len, &k);
                const struct veil_ledger_entry *e = veil_ledger_find(&l, &k);
                if (present[i]) {
                        assert_non_null(e);
                        assert_int_equal(e->ts_ms, val[i]);
                }
                assert_int_equal(veil_ledger_remove(&l, &k), present[i]);
        }
        assert_int_equal(veil_ledger_count(&l), 0);
        free(present);
        free(val);
        veil_ledger_free(&l);
}

static void test_memory_bound(void **state) {
        (void)state;
        struct veil_ledger l;
        assert_int_equal(sizeof(struct veil_ledger_entry), 32);
        assert_int_equal(veil_ledger_init(&l, 0), 0);
        char id[32];
        for (unsigned i = 0; i < 200000; i++) {
                int len = snprintf(id, sizeof(id), "%u@example.org", i);
                struct veil_ledger_key k;
                int created;
                veil_ledger_key(&l, id, (size_t)len, &k);
                assert_non_null(veil_ledger_insert(&l, &k, &created));
                assert_true(created);
                /* Past the first growths, never more than 64 bytes of
                 * table per person. */
                if (i > 1000)
                        assert_true(veil_ledger_bytes(&l) <=
                                    64 * veil_ledger_count(&l));
        }
        veil_ledger_free(&l);
        /* Presized: room for the expected people without growing. */
        assert_int_equal(veil_ledger_init(&l, 100000), 0);
        size_t bytes = veil_ledger_bytes(&l);
        assert_true(bytes <= 100000 * 64);
        for (unsigned i = 0; i < 100000; i++) {
                int len = snprintf(id, sizeof(id), "%u", i);
                struct veil_ledger_key k;
                int created;
                veil_ledger_key(&l, id, (size_t)len, &k);
                assert_non_null(veil_ledger_insert(&l, &k, &created));
        }
        assert_int_equal(veil_ledger_bytes(&l), bytes);
        veil_ledger_free(&l);
}

static void test_keyed_hash(void **state) {
        (void)state;
        struct veil_ledger a, b;
        struct veil_ledger_key k1, k2, k3;
        assert_int_equal(veil_ledger_init(&a, 0), 0);
        assert_int_equal(veil_ledger_init(&b, 0), 0);
        veil_ledger_key(&a, "alice", 5, &k1);
        veil_ledger_key(&a, "alice", 5, &k2);
        assert_memory_equal(&k1, &k2, sizeof(k1));
        veil_ledger_key(&a, "alicf", 5, &k2);
        assert_memory_not_equal(&k1, &k2, sizeof(k1));
        /* Another ledger (another process) draws another key. */
        veil_ledger_key(&b, "alice", 5, &k3);
        assert_memory_not_equal(&k1, &k3, sizeof(k1));
        /* The id is not in the table: only its hash. */
        int created;
        struct veil_ledger_entry *e = veil_ledger_insert(&a, &k1, &created);
        assert_non_null(e);
        assert_null(memmem(a.slots, veil_ledger_bytes(&a), "alice", 5));
        veil_ledger_free(&a);
        veil_ledger_free(&b);
}

int main(void) {
        if (sodium_init() < 0)
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_random_against_reference),
                cmocka_unit_test(test_memory_bound),
                cmocka_unit_test(test_keyed_hash),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

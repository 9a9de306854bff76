/*
 * test_arena.c — the batch arena (core/arena.c): zeroed, aligned memory,
 * reused after a reset, refused past its cap or for sizes no chunk can
 * have. Under AddressSanitizer (the ASan unit phase) also that what is not
 * handed out is poisoned: the bytes past a request, and everything after a
 * reset, so a stage that keeps a batch pointer is caught.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISONED(p) __asan_address_is_poisoned(p)
#endif

static void test_alloc_reset(void **state) {
        (void)state;
        struct veil_arena a;
        veil_arena_init(&a, 4096, 0);
        unsigned char *p = veil_arena_alloc(&a, 10);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        for (int i = 0; i < 10; i++)
                assert_int_equal(p[i], 0);
        memset(p, 0xab, 10);
#if defined(__SANITIZE_ADDRESS__)
        assert_false(POISONED(p + 9));
        assert_true(POISONED(p + 10));
        assert_true(POISONED(p + 64));
#endif
        /* Larger than a chunk: a chunk of its own. */
        unsigned char *big = veil_arena_alloc(&a, 10000);
        assert_non_null(big);
        big[9999] = 1;
        veil_arena_reset(&a);
#if defined(__SANITIZE_ADDRESS__)
        /* p's chunk is freed; big's is kept for the next batch. */
        assert_true(POISONED(p));
        assert_true(POISONED(big));
        assert_true(POISONED(big + 9999));
#endif
        /* The kept chunk serves the next batch, zeroed again. */
        unsigned char *q = veil_arena_alloc(&a, 10);
        assert_non_null(q);
        for (int i = 0; i < 10; i++)
                assert_int_equal(q[i], 0);
#if defined(__SANITIZE_ADDRESS__)
        assert_false(POISONED(q));
#endif
        veil_arena_free(&a);
}

static void test_refusals(void **state) {
        (void)state;
        struct veil_arena a;
        veil_arena_init(&a, 4096, 1024);
        assert_non_null(veil_arena_alloc(&a, 512));
        assert_null(veil_arena_alloc(&a, 1024)); /* past the cap */
        assert_non_null(veil_arena_alloc(&a, 448));
        veil_arena_free(&a);
        veil_arena_init(&a, 4096, 0);
        assert_null(veil_arena_alloc(&a, SIZE_MAX - 10));
        assert_null(veil_arena_alloc(&a, SIZE_MAX / 2 + 2));
        veil_arena_free(&a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_alloc_reset),
                cmocka_unit_test(test_refusals),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_prior.c — the description neighbours (prior.h) against a brute-force
 * tf·idf cosine computed here in double, on random catalogs whose small
 * vocabulary makes many ties, repeated words and items without text.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"
#include "prior.h"

#define NWORDS 24
#define MAXW 6

static const char *vocab[NWORDS] = {
        "RED",    "BLUE",   "GREEN",  "PINK",  "BAG",   "JUMBO",
        "LUNCH",  "BOX",    "HEART",  "LIGHT", "HOLDER", "CANDLE",
        "GLASS",  "MUG",    "SET",    "OF",    "VINTAGE", "PAPER",
        "CHAIN",  "TEA",    "CAKE",   "STAND", "WHITE", "METAL"};

struct item {
        int w[MAXW], nw; /* word indices, repeats allowed */
};

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
        rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint32_t)((rng_state >> 33) % n);
}

/* A catalog CSV of n items; item i has id "i", its words joined by a
 * space, a hyphen or digits (all separators to the tokenizer), and no
 * description at all for every 9th. */
static struct veil_catalog *make(struct item *it, size_t n, char *path) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "id,price,description\n");
        for (size_t i = 0; i < n; i++) {
                it[i].nw = i % 9 == 8 ? 0 : 1 + (int)rnd(MAXW);
                fprintf(f, "%zu,1.0,", i);
                if (it[i].nw)
                        fputc('"', f);
                for (int k = 0; k < it[i].nw; k++) {
                        it[i].w[k] = (int)rnd(NWORDS);
                        /* lower case too: words are case-folded */
                        const char *wd = vocab[it[i].w[k]];
                        if (k)
                                fputs(k % 2 ? " " : "-42 ", f);
                        for (const char *c = wd; *c; c++)
                                fputc(k == 1 ? *c - 'A' + 'a' : *c, f);
                }
                if (it[i].nw)
                        fputc('"', f);
                fputc('\n', f);
        }
        fclose(f);
        struct veil_catalog *c;
        char err[256];
        assert_int_equal(veil_catalog_load(&c, path, NULL, 0, 5, err,
                                           sizeof(err)),
                         0);
        assert_int_equal(c->n_file, n);
        return c;
}

/* Brute force: tf·idf vectors over the vocabulary, cosines in double. */
static void cosines(const struct item *it, size_t n, double *cs) {
        double *x = calloc(n * NWORDS, sizeof(double));
        size_t df[NWORDS] = {0};
        for (size_t i = 0; i < n; i++) {
                int seen[NWORDS] = {0};
                for (int k = 0; k < it[i].nw; k++)
                        if (!seen[it[i].w[k]]++)
                                df[it[i].w[k]]++;
                for (int k = 0; k < it[i].nw; k++)
                        x[i * NWORDS + it[i].w[k]] += 1;
        }
        for (size_t i = 0; i < n; i++)
                for (int v = 0; v < NWORDS; v++)
                        x[i * NWORDS + v] *=
                                df[v] ? log((double)n / (double)df[v]) : 0;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                        double dot = 0, a = 0, b = 0;
                        for (int v = 0; v < NWORDS; v++) {
                                dot += x[i * NWORDS + v] * x[j * NWORDS + v];
                                a += x[i * NWORDS + v] * x[i * NWORDS + v];
                                b += x[j * NWORDS + v] * x[j * NWORDS + v];
                        }
                        cs[i * n + j] = a > 0 && b > 0 ? dot / sqrt(a * b) : 0;
                }
        free(x);
}

static void check(size_t n, size_t L, uint64_t seed) {
        char path[] = "/tmp/veil_test_prior_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        rng_state = seed;
        struct item *it = calloc(n, sizeof(*it));
        struct veil_catalog *c = make(it, n, path);
        double *cs = malloc(n * n * sizeof(double));
        cosines(it, n, cs);
        struct veil_prior_nb nb;
        assert_int_equal(veil_prior_neighbors(c, L, &nb), 0);
        assert_int_equal(nb.n, n);
        assert_int_equal(nb.L, L);
        float *row = calloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) {
                /* The expected list: every other item with a positive
                 * cosine, by cosine, ties to the lower row (within float
                 * rounding: compare ranks by the brute force's values). */
                size_t want = 0;
                for (size_t j = 0; j < n; j++)
                        want += j != i && cs[i * n + j] > 1e-9;
                if (want > L)
                        want = L;
                const uint32_t *ni = nb.item + i * L;
                const float *ns = nb.sim + i * L;
                size_t got = 0;
                while (got < L && ni[got] != UINT32_MAX)
                        got++;
                assert_int_equal(got, want);
                for (size_t k = got; k < L; k++)
                        assert_int_equal(ni[k], UINT32_MAX);
                double last = INFINITY;
                for (size_t k = 0; k < got; k++) {
                        uint32_t j = ni[k];
                        assert_true(j < n && j != i);
                        assert_true(fabs(ns[k] - cs[i * n + j]) < 1e-5);
                        assert_true(cs[i * n + j] <= last + 1e-6);
                        last = cs[i * n + j];
                        for (size_t k2 = 0; k2 < k; k2++)
                                assert_int_not_equal(ni[k2], j);
                }
                /* Nothing left out beats the last one kept. */
                if (got == L)
                        for (size_t j = 0; j < n; j++) {
                                int kept = 0;
                                for (size_t k = 0; k < got; k++)
                                        kept |= ni[k] == j;
                                if (!kept && j != i)
                                        assert_true(cs[i * n + j] <=
                                                    last + 1e-6);
                        }
                /* add and get agree with the list. */
                memset(row, 0, n * sizeof(float));
                veil_prior_nb_add(&nb, (int32_t)i, 2.0f, row);
                for (size_t j = 0; j < n; j++) {
                        float g = veil_prior_nb_get(&nb, (int32_t)i,
                                                    (uint32_t)j);
                        assert_true(fabsf(row[j] - 2.0f * g) < 1e-6f);
                }
        }
        /* Rows outside the file (items added from events) and -1 have
         * none. */
        memset(row, 0, n * sizeof(float));
        veil_prior_nb_add(&nb, -1, 1.0f, row);
        veil_prior_nb_add(&nb, (int32_t)n, 1.0f, row);
        for (size_t j = 0; j < n; j++)
                assert_true(row[j] == 0.0f);
        assert_true(veil_prior_nb_get(&nb, (int32_t)n, 0) == 0.0f);
        veil_prior_nb_free(&nb);
        assert_null(nb.item);
        free(row);
        free(cs);
        free(it);
        veil_catalog_free(c);
        unlink(path);
}

static void test_neighbors_brute_force(void **st) {
        (void)st;
        check(40, 5, 1);     /* lists cut at L */
        check(300, 16, 7);   /* many ties */
        check(12, 64, 3);    /* L beyond the candidates */
}

static void test_neighbors_off(void **st) {
        (void)st;
        struct veil_catalog *c;
        char err[128];
        assert_int_equal(veil_catalog_new(&c, 10, 5, err, sizeof(err)), 0);
        struct veil_prior_nb nb;
        assert_int_equal(veil_prior_neighbors(c, 8, &nb), 0); /* no file */
        assert_int_equal(nb.L, 0);
        float row[4] = {0};
        veil_prior_nb_add(&nb, 0, 1.0f, row);
        assert_true(row[0] == 0.0f);
        veil_prior_nb_free(&nb);
        veil_catalog_free(c);
}

/* Catalog order against a brute force: j is a neighbour of i exactly
 * when 1 ≤ |i − j| ≤ W, with 1/(1 + |i − j|), nearest first; the ends of
 * the file have fewer. */
static void test_catalog_order(void **st) {
        (void)st;
        const size_t n = 30, W = 4;
        char path[] = "/tmp/veil_test_prior_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        rng_state = 5;
        struct item *it = calloc(n, sizeof(*it));
        struct veil_catalog *c = make(it, n, path);
        struct veil_prior_nb nb;
        assert_int_equal(veil_prior_catalog_order(c, W, &nb), 0);
        assert_int_equal(nb.n, n);
        assert_int_equal(nb.L, 2 * W);
        for (size_t i = 0; i < n; i++) {
                size_t want = (i < W ? i : W) + (n - 1 - i < W ? n - 1 - i : W);
                size_t got = 0;
                float last = INFINITY;
                for (; got < nb.L && nb.item[i * nb.L + got] != UINT32_MAX;
                     got++) {
                        assert_true(nb.sim[i * nb.L + got] <= last);
                        last = nb.sim[i * nb.L + got];
                }
                assert_int_equal(got, want);
                for (size_t j = 0; j < n; j++) {
                        size_t dist = i > j ? i - j : j - i;
                        float e = dist >= 1 && dist <= W
                                          ? 1.0f / (float)(1 + dist)
                                          : 0.0f;
                        assert_true(veil_prior_nb_get(&nb, (int32_t)i,
                                                      (uint32_t)j) == e);
                }
        }
        veil_prior_nb_free(&nb);
        assert_int_equal(veil_prior_catalog_order(c, 0, &nb), 0); /* off */
        assert_int_equal(nb.L, 0);
        assert_null(nb.item);
        free(it);
        veil_catalog_free(c);
        unlink(path);
        /* A catalog without a file has no order. */
        char err[128];
        assert_int_equal(veil_catalog_new(&c, 10, 5, err, sizeof(err)), 0);
        assert_int_equal(veil_prior_catalog_order(c, 3, &nb), 0);
        assert_int_equal(nb.L, 0);
        veil_catalog_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_neighbors_brute_force),
                cmocka_unit_test(test_neighbors_off),
                cmocka_unit_test(test_catalog_order),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The tree aggregator (tree.h): what the model accumulates after t steps
 * is the sum of the steps' gradients plus the noise of exactly the nodes
 * that cover [1, t] — popcount(t) of them, so the variance is popcount(t)·σ²
 * and not t·σ² — with the removed nodes' noise taken out exactly, also as
 * a block gains rows. With Honaker's estimator the same holds with each
 * node's variance v_l·σ² (2/3, 4/7, 8/15, …) in place of σ².
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <veil/veil.h>

#include "noise.h"
#include "tree.h"

#define W 1000
#define ROWS 100
#define N (W * ROWS)

static const unsigned char seed[32] = {7, 1, 2, 3};

struct fx {
        struct veil_noise *ns;
        struct veil_tree *a, *z; /* a: with gradients, z: zero gradients */
        float *x, *y;
        double *sum_a, *sum_z, *sum_g;
};

static int setup_with(void **state, enum veil_tree_estimator est) {
        struct fx *f = calloc(1, sizeof(*f));
        char err[256];
        if (veil_noise_new(&f->ns, 1.0, err, sizeof(err)) ||
            veil_tree_new(&f->a, f->ns, est, seed, err, sizeof(err)) ||
            veil_tree_new(&f->z, f->ns, est, seed, err, sizeof(err)))
                return -1;
        f->x = malloc(N * sizeof(float));
        f->y = malloc(N * sizeof(float));
        f->sum_a = calloc(N, sizeof(double));
        f->sum_z = calloc(N, sizeof(double));
        f->sum_g = calloc(N, sizeof(double));
        *state = f;
        return 0;
}

static int setup(void **state) { return setup_with(state, VEIL_TREE_PLAIN); }
static int setup_honaker(void **state) {
        return setup_with(state, VEIL_TREE_HONAKER);
}

static int teardown(void **state) {
        struct fx *f = *state;
        veil_tree_free(f->a);
        veil_tree_free(f->z);
        veil_noise_free(f->ns);
        free(f->x);
        free(f->y);
        free(f->sum_a);
        free(f->sum_z);
        free(f->sum_g);
        free(f);
        return 0;
}

/* A float block released in place: the tree takes the step's sum in
 * double (dp.c keeps it so) and writes the release to floats. */
struct fblock {
        float *x;
        size_t rows, width;
};

static int release_f(struct veil_tree *t, const struct fblock *fb, size_t n,
                     char *err, size_t err_size) {
        struct veil_tree_block b[VEIL_TREE_MAX_BLOCKS];
        double *xd[VEIL_TREE_MAX_BLOCKS] = {0};
        double **rp[VEIL_TREE_MAX_BLOCKS] = {0};
        assert_true(n <= VEIL_TREE_MAX_BLOCKS);
        for (size_t i = 0; i < n; i++) {
                size_t m = fb[i].rows * fb[i].width;
                xd[i] = malloc((m ? m : 1) * sizeof(double));
                rp[i] = malloc((fb[i].rows ? fb[i].rows : 1) *
                               sizeof(double *));
                assert_non_null(xd[i]);
                assert_non_null(rp[i]);
                for (size_t j = 0; j < m; j++)
                        xd[i][j] = fb[i].x[j];
                /* Rows of zeros as NULL, as dp.c gives untouched rows. */
                for (size_t r = 0; r < fb[i].rows; r++) {
                        rp[i][r] = NULL;
                        for (size_t k = 0; k < fb[i].width; k++)
                                if (xd[i][r * fb[i].width + k] != 0)
                                        rp[i][r] = xd[i] + r * fb[i].width;
                }
                b[i] = (struct veil_tree_block){rp[i], fb[i].x, fb[i].rows,
                                                fb[i].width};
        }
        int rc = veil_tree_release(t, b, n, err, err_size);
        for (size_t i = 0; i < n; i++) {
                free(xd[i]);
                free(rp[i]);
        }
        return rc;
}

static double variance(const double *v, size_t from, size_t to) {
        double m = 0, s = 0;
        for (size_t i = from; i < to; i++)
                m += v[i];
        m /= (double)(to - from);
        for (size_t i = from; i < to; i++)
                s += (v[i] - m) * (v[i] - m);
        return s / (double)(to - from - 1);
}

/* One step of both trees over `rows` rows; the gradient is a known
 * pattern of the step. */
static void step(struct fx *f, int t, size_t rows) {
        char err[256];
        size_t n = rows * W;
        for (size_t i = 0; i < n; i++) {
                f->x[i] = (float)sin((double)(i % 97) + t) * 0.5f;
                f->y[i] = 0.0f;
                f->sum_g[i] += (double)f->x[i];
        }
        struct fblock ba = {f->x, rows, W}, bz = {f->y, rows, W};
        assert_int_equal(release_f(f->a, &ba, 1, err, sizeof(err)), 0);
        assert_int_equal(release_f(f->z, &bz, 1, err, sizeof(err)), 0);
        for (size_t i = 0; i < n; i++) {
                f->sum_a[i] += (double)f->x[i];
                f->sum_z[i] += (double)f->y[i];
        }
}

static void test_prefix_noise_is_the_nodes(void **state) {
        struct fx *f = *state;
        for (int t = 1; t <= 16; t++) {
                step(f, t, ROWS);
                assert_int_equal(veil_tree_position(f->a), (uint64_t)t);
                double v = variance(f->sum_z, 0, N);
                double want = (double)__builtin_popcount((unsigned)t);
                /* 100,000 coordinates: the variance is known to ±1.5 %
                 * (3 standard errors); t·σ² would be far off from t = 3. */
                assert_true(fabs(v / want - 1.0) < 0.03);
                /* Same keys: the difference is the gradients alone, up to
                 * the float rounding of each released step. */
                for (size_t i = 0; i < N; i++)
                        assert_true(fabs(f->sum_a[i] - f->sum_z[i] -
                                         f->sum_g[i]) < 1e-3);
        }
}

static void test_rows_added_mid_tree(void **state) {
        struct fx *f = *state;
        size_t half = ROWS / 2;
        step(f, 1, half);
        step(f, 2, half);
        step(f, 3, ROWS); /* rows half.. appear at leaf 3 */
        /* [1,3] = node(level 1, leaves 1–2) + node(level 0, leaf 3): the
         * old rows carry both, the new rows only the second. */
        assert_true(fabs(variance(f->sum_z, 0, half * W) / 2.0 - 1.0) < 0.04);
        assert_true(fabs(variance(f->sum_z, half * W, N) - 1.0) < 0.04);
        step(f, 4, ROWS);
        /* [1,4] is one node made at leaf 4, over every row. */
        assert_true(fabs(variance(f->sum_z, 0, N) - 1.0) < 0.03);
        for (size_t i = 0; i < N; i++)
                assert_true(fabs(f->sum_a[i] - f->sum_z[i] - f->sum_g[i]) <
                            1e-3);
        /* Fewer rows than a live node covers is refused. */
        char err[256];
        struct fblock b = {f->x, half, W};
        assert_int_not_equal(release_f(f->a, &b, 1, err, sizeof(err)),
                             0);
}

/* Σ v_l over the levels of t's set bits: the prefix [1, t]'s nodes. */
static double honaker_want(unsigned t) {
        double v = 0;
        for (unsigned l = 0; l < 32; l++)
                if (t >> l & 1)
                        v += veil_tree_node_variance(VEIL_TREE_HONAKER, l);
        return v;
}

static void assert_gradients_exact(const struct fx *f) {
        for (size_t i = 0; i < N; i++)
                assert_true(fabs(f->sum_a[i] - f->sum_z[i] - f->sum_g[i]) <
                            1e-3);
}

static void test_honaker_prefix_variance(void **state) {
        struct fx *f = *state;
        assert_true(fabs(honaker_want(8) - 8.0 / 15) < 1e-12);
        for (int t = 1; t <= 16; t++) {
                step(f, t, ROWS);
                double v = variance(f->sum_z, 0, N);
                /* 100,000 coordinates: ±1.5 % at 3 standard errors. The
                 * plain tree's popcount(t) is 1.9× this at t = 8 and 16. */
                assert_true(fabs(v / honaker_want((unsigned)t) - 1.0) < 0.03);
                /* An unbiased estimate: the weights of each node sum to
                 * one, so with the same noise the gradients come out. */
                assert_gradients_exact(f);
        }
}

static void test_honaker_rows_added_mid_tree(void **state) {
        struct fx *f = *state;
        size_t half = ROWS / 2;
        step(f, 1, half);
        step(f, 2, half);
        step(f, 3, ROWS);
        /* [1,3]: the level-1 node (old rows only, 2/3) and leaf 3 (1). */
        assert_true(fabs(variance(f->sum_z, 0, half * W) / (5.0 / 3) - 1.0) <
                    0.04);
        assert_true(fabs(variance(f->sum_z, half * W, N) - 1.0) < 0.04);
        step(f, 4, ROWS);
        /* [1,4] = ê_2 = w·y + (1 − w)(ê_left + ê_right), w = 4/7. Old rows:
         * 4/7. New rows: the left child never covered them (exactly 0),
         * so w² + (1 − w)²·(2/3) = 22/49. */
        assert_true(fabs(variance(f->sum_z, 0, half * W) / (4.0 / 7) - 1.0) <
                    0.04);
        assert_true(fabs(variance(f->sum_z, half * W, N) / (22.0 / 49) -
                         1.0) < 0.04);
        assert_gradients_exact(f);
}

static void test_keys_are_fresh(void **state) {
        (void)state;
        struct veil_noise *ns;
        char err[256];
        assert_int_equal(veil_noise_new(&ns, 1.0, err, sizeof(err)), 0);
        for (int e = VEIL_TREE_PLAIN; e <= VEIL_TREE_HONAKER; e++) {
                struct veil_tree *a, *b;
                assert_int_equal(veil_tree_new(&a, ns, e, NULL, err,
                                               sizeof(err)),
                                 0);
                assert_int_equal(veil_tree_new(&b, ns, e, NULL, err,
                                               sizeof(err)),
                                 0);
                float x[64] = {0}, y[64] = {0};
                struct fblock ba = {x, 1, 64}, bb = {y, 1, 64};
                assert_int_equal(release_f(a, &ba, 1, err,
                                                   sizeof(err)),
                                 0);
                assert_int_equal(release_f(b, &bb, 1, err,
                                                   sizeof(err)),
                                 0);
                assert_memory_not_equal(x, y, sizeof(x));
                /* A reset tree starts at leaf 1 with new keys. */
                float x2[64] = {0};
                struct fblock b2 = {x2, 1, 64};
                veil_tree_reset(a);
                assert_int_equal(veil_tree_position(a), 0);
                assert_int_equal(release_f(a, &b2, 1, err,
                                                   sizeof(err)),
                                 0);
                assert_memory_not_equal(x, x2, sizeof(x));
                veil_tree_free(a);
                veil_tree_free(b);
        }
        veil_noise_free(ns);
}

/* Honaker over two blocks of other widths, across a reset: the second tree
 * starts from nothing (its prefix variance is that of a first tree), and
 * the gradients still come out exactly. */
static void test_honaker_blocks_and_reset(void **state) {
        struct fx *f = *state;
        char err[256];
        enum { R1 = 600, W1 = 7, R2 = 40, W2 = 100 };
        float *g1 = malloc(R1 * W1 * sizeof(float)),
              *g2 = malloc(R2 * W2 * sizeof(float)),
              *z1 = malloc(R1 * W1 * sizeof(float)),
              *z2 = malloc(R2 * W2 * sizeof(float));
        double *s1 = calloc(R1 * W1, sizeof(double)),
               *s2 = calloc(R2 * W2, sizeof(double));
        for (int tree = 0; tree < 2; tree++) {
                memset(s1, 0, R1 * W1 * sizeof(double));
                memset(s2, 0, R2 * W2 * sizeof(double));
                for (int t = 1; t <= 6; t++) {
                        for (size_t i = 0; i < R1 * W1; i++) {
                                g1[i] = (float)cos((double)i + t) * 0.25f;
                                z1[i] = 0;
                        }
                        for (size_t i = 0; i < R2 * W2; i++) {
                                g2[i] = 0;
                                z2[i] = 0;
                        }
                        struct fblock a[2] = {{g1, R1, W1},
                                                       {g2, R2, W2}},
                                               z[2] = {{z1, R1, W1},
                                                       {z2, R2, W2}};
                        assert_int_equal(release_f(f->a, a, 2, err,
                                                           sizeof(err)),
                                         0);
                        assert_int_equal(release_f(f->z, z, 2, err,
                                                           sizeof(err)),
                                         0);
                        for (size_t i = 0; i < R1 * W1; i++) {
                                s1[i] += (double)z1[i];
                                assert_true(fabs((double)g1[i] - z1[i] -
                                                 cos((double)i + t) * 0.25) <
                                            1e-3);
                        }
                        for (size_t i = 0; i < R2 * W2; i++)
                                s2[i] += (double)z2[i];
                }
                /* [1, 6] = levels 2 and 1: 4/7 + 2/3, in both blocks. */
                double want = honaker_want(6);
                assert_true(fabs(variance(s1, 0, R1 * W1) / want - 1.0) <
                            0.08);
                assert_true(fabs(variance(s2, 0, R2 * W2) / want - 1.0) <
                            0.08);
                veil_tree_reset(f->a);
                veil_tree_reset(f->z);
        }
        free(g1), free(g2), free(z1), free(z2), free(s1), free(s2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_prefix_noise_is_the_nodes,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_rows_added_mid_tree,
                                                setup, teardown),
                cmocka_unit_test(test_keys_are_fresh),
                cmocka_unit_test_setup_teardown(test_honaker_prefix_variance,
                                                setup_honaker, teardown),
                cmocka_unit_test_setup_teardown(
                        test_honaker_rows_added_mid_tree, setup_honaker,
                        teardown),
                cmocka_unit_test_setup_teardown(test_honaker_blocks_and_reset,
                                                setup_honaker, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

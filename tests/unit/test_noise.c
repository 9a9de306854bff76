/*
 * test_noise.c — the secure Gaussian sampler: its distribution (moments,
 * tails, Kolmogorov–Smirnov, the integers themselves), its grid, the
 * property that defeats the floating-point attack, and its random source.
 * Statistical tests run at a fixed seed, so they are deterministic; their
 * bounds are ≥ 5 standard errors (or α = 0.001) wide, not tuned to the seed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "noise.h"
#include "veil/veil.h"

#define N_BIG 1000000

static const unsigned char SEED[32] = {
        0x76, 0x65, 0x69, 0x6c, 0x2d, 0x64, 0x70, 0x2d, 0x6e, 0x6f, 0x69,
        0x73, 0x65, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x73, 0x65, 0x65,
        0x64, 0x2d, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31};

struct fix {
        struct veil_rng_stream st;
        struct veil_rng rng;
        struct veil_noise *ns;
        float *buf;
        char err[512];
};

static struct fix *fix_new(double sigma, size_t n) {
        struct fix *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        assert_int_equal(veil_rng_stream_init(&f->st, SEED, &f->rng), 0);
        if (veil_noise_new(&f->ns, sigma, f->err, sizeof(f->err)))
                fail_msg("veil_noise_new(%g): %s", sigma, f->err);
        f->buf = malloc(n * sizeof(float));
        assert_non_null(f->buf);
        return f;
}

static void fix_free(struct fix *f) {
        veil_noise_free(f->ns);
        veil_rng_stream_wipe(&f->st);
        free(f->buf);
        free(f);
}

static void fill(struct fix *f, size_t n) {
        if (veil_noise_fill(f->ns, &f->rng, f->buf, n, f->err, sizeof(f->err)))
                fail_msg("veil_noise_fill: %s", f->err);
}

static void test_moments(void **state) {
        const double sigma = 1.7;
        struct fix *f = fix_new(sigma, N_BIG);
        double s1 = 0, m2 = 0, m3 = 0, m4 = 0, mean, skew, kurt;
        (void)state;
        fill(f, N_BIG);
        for (size_t i = 0; i < N_BIG; i++)
                s1 += f->buf[i] / sigma;
        mean = s1 / N_BIG;
        for (size_t i = 0; i < N_BIG; i++) {
                double d = f->buf[i] / sigma - mean;
                m2 += d * d;
                m3 += d * d * d;
                m4 += d * d * d * d;
        }
        m2 /= N_BIG;
        m3 /= N_BIG;
        m4 /= N_BIG;
        skew = m3 / pow(m2, 1.5);
        kurt = m4 / (m2 * m2) - 3;
        print_message("n=%d: mean %.5f sd %.5f skew %.4f excess kurtosis "
                      "%.4f (in units of sigma)\n",
                      N_BIG, mean, sqrt(m2), skew, kurt);
        /* Standard errors under normality of the mean, the variance and
         * the standardized skewness and kurtosis: 1/√n, √(2/n), √(6/n),
         * √(24/n). */
        assert_true(fabs(mean) < 5 * sqrt(1.0 / N_BIG));
        assert_true(fabs(m2 - 1) < 5 * sqrt(2.0 / N_BIG));
        assert_true(fabs(skew) < 5 * sqrt(6.0 / N_BIG));
        assert_true(fabs(kurt) < 5 * sqrt(24.0 / N_BIG));
        fix_free(f);
}

static void test_tails(void **state) {
        const double sigma = 0.3;
        struct fix *f = fix_new(sigma, N_BIG);
        const double p2 = erfc(2 / sqrt(2.0)), p3 = erfc(3 / sqrt(2.0)),
                     p4 = erfc(4 / sqrt(2.0));
        size_t n2 = 0, n3 = 0, n4 = 0, pos = 0, neg = 0;
        (void)state;
        fill(f, N_BIG);
        for (size_t i = 0; i < N_BIG; i++) {
                double a = fabs((double)f->buf[i]);
                n2 += a > 2 * sigma;
                n3 += a > 3 * sigma;
                n4 += a > 4 * sigma;
                pos += f->buf[i] > 0;
                neg += f->buf[i] < 0;
        }
        print_message("beyond 2s %.5f (%.5f), 3s %.6f (%.6f), 4s %.7f "
                      "(%.7f); positive %zu negative %zu\n",
                      (double)n2 / N_BIG, p2, (double)n3 / N_BIG, p3,
                      (double)n4 / N_BIG, p4, pos, neg);
        assert_true(fabs((double)n2 / N_BIG - p2) <
                    5 * sqrt(p2 * (1 - p2) / N_BIG));
        assert_true(fabs((double)n3 / N_BIG - p3) <
                    5 * sqrt(p3 * (1 - p3) / N_BIG));
        assert_true(fabs((double)n4 / N_BIG - p4) <
                    5 * sqrt(p4 * (1 - p4) / N_BIG) + 1.0 / N_BIG);
        assert_true(fabs((double)pos - (double)neg) < 5 * sqrt((double)N_BIG));
        fix_free(f);
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* Kolmogorov–Smirnov against the normal CDF. Critical value at
 * α = 0.001: √(ln(2/α)/2)/√n = 1.94947/√n. */
static void test_kolmogorov_smirnov(void **state) {
        const double sigma = 12.5;
        struct fix *f = fix_new(sigma, N_BIG);
        double *z = malloc(N_BIG * sizeof(double)), d = 0, crit;
        (void)state;
        assert_non_null(z);
        fill(f, N_BIG);
        for (size_t i = 0; i < N_BIG; i++)
                z[i] = f->buf[i] / sigma;
        qsort(z, N_BIG, sizeof(double), cmp_double);
        for (size_t i = 0; i < N_BIG; i++) {
                double c = 0.5 * erfc(-z[i] / sqrt(2.0));
                double lo = c - (double)i / N_BIG;
                double hi = (double)(i + 1) / N_BIG - c;
                if (lo > d)
                        d = lo;
                if (hi > d)
                        d = hi;
        }
        crit = sqrt(log(2 / 0.001) / 2) / sqrt((double)N_BIG);
        print_message("KS D = %.6f, critical %.6f (alpha 0.001)\n", d, crit);
        assert_true(d < crit);
        free(z);
        fix_free(f);
}

/* The integers before scaling: variance s² and uniform low bits (k mod 64
 * is uniform to within 10^-9 for s ≥ 2^24; a sampler that mishandled
 * offsets or the sign would show there). */
static void test_lattice_distribution(void **state) {
        struct fix *f = fix_new(1.0, 1);
        int64_t *k = malloc(N_BIG * sizeof(int64_t));
        double s = 1.0 / veil_noise_grid(f->ns), s2 = 0, chi_lo = 0;
        size_t low[64] = {0};
        (void)state;
        assert_non_null(k);
        assert_int_equal(veil_noise_fill_lattice(f->ns, &f->rng, k, N_BIG,
                                                 f->err, sizeof(f->err)),
                         0);
        for (size_t i = 0; i < N_BIG; i++) {
                s2 += (double)k[i] * (double)k[i];
                low[(uint64_t)k[i] & 63]++;
        }
        for (int i = 0; i < 64; i++)
                chi_lo += pow(low[i] - N_BIG / 64.0, 2) / (N_BIG / 64.0);
        print_message("s = 2^%.3f: var/s^2 %.5f, chi2 of k mod 64 %.1f "
                      "(63 df)\n",
                      log2(s), s2 / N_BIG / (s * s), chi_lo);
        assert_true(fabs(s2 / N_BIG / (s * s) - 1) < 5 * sqrt(2.0 / N_BIG));
        /* The critical value of χ²(63) at α = 0.001. */
        assert_true(chi_lo < 103.4);
        free(k);
        fix_free(f);
}

/* Inside a bucket of 2^17 integers starting at c·j, the density falls like
 * exp(-λr) with λ = c·j/s²: across the bucket by up to 10 % in the far
 * tail. That slope is the acceptance step's whole job (a sampler that
 * skipped it would overstate the tails' weight and with it the privacy
 * loss), but moves the variance by only ~0.3 %. So test the slope itself:
 * T = Σ z_j (r/c - E[r/c | j]) is ~N(0, Σ z_j²/12) when it is right, and is
 * shifted by (c/s)/12 · Σ z_j² ≈ 10 standard deviations at n = 2·10^7 when
 * offsets are uniform. s = 2^24 (σ = 1) makes c/s the largest, 2^-7. */
static void test_in_bucket_slope(void **state) {
        const size_t chunk = 1000000, chunks = 20;
        const double c = 131072.0;
        struct fix *f = fix_new(1.0, 1);
        int64_t *k = malloc(chunk * sizeof(int64_t));
        double s = 1.0 / veil_noise_grid(f->ns), t = 0, var = 0, zscore;
        (void)state;
        assert_non_null(k);
        assert_true(s == 0x1p24);
        for (size_t ch = 0; ch < chunks; ch++) {
                assert_int_equal(veil_noise_fill_lattice(f->ns, &f->rng, k,
                                                         chunk, f->err,
                                                         sizeof(f->err)),
                                 0);
                for (size_t i = 0; i < chunk; i++) {
                        uint64_t a = (uint64_t)llabs(k[i]);
                        double j = (double)(a >> 17);
                        double r = (double)(a & 131071) / c;
                        double x = c * c * j / (s * s), z = c * j / s, m;
                        /* Mean of a truncated exponential on [0, 1). */
                        m = x < 1e-6 ? 0.5 - x / 12 : 1 / x - 1 / expm1(x);
                        t += z * (r - m);
                        var += z * z / 12;
                }
        }
        zscore = t / sqrt(var);
        print_message("in-bucket slope statistic: %.2f standard deviations "
                      "(uniform offsets would give about +10)\n",
                      zscore);
        assert_true(fabs(zscore) < 5);
        free(k);
        fix_free(f);
}

static void test_grid(void **state) {
        static const double sigmas[] = {1e-9, 1e-3, 0.5, 1.0, 3.0, 4.0,
                                        1e3, 7.3e8};
        const size_t n = 200000;
        (void)state;
        for (size_t t = 0; t < sizeof(sigmas) / sizeof(sigmas[0]); t++) {
                struct fix *f = fix_new(sigmas[t], n);
                double g = veil_noise_grid(f->ns), s2 = 0, s = sigmas[t] / g;
                int e;
                /* g is a power of two and σ/g is in [2^24, 2^25). */
                assert_true(frexp(g, &e) == 0.5);
                assert_true(s >= 0x1p24 && s < 0x1p25);
                assert_true(veil_noise_sigma(f->ns) == sigmas[t]);
                fill(f, n);
                for (size_t i = 0; i < n; i++) {
                        double q = (double)f->buf[i] / g;
                        if (q != rint(q))
                                fail_msg("sigma %g: out[%zu] = %a is not a "
                                         "multiple of the grid %a",
                                         sigmas[t], i, f->buf[i], g);
                        s2 += (double)f->buf[i] * f->buf[i];
                }
                assert_true(fabs(sqrt(s2 / n) / sigmas[t] - 1) <
                            5 * sqrt(0.5 / n));
                fix_free(f);
        }
}

/* The floating-point attack needs outputs whose possible values depend on
 * the input's low bits. Here the output is a function of round(x/g) + k
 * alone: inputs in the same grid cell give bit-identical outputs, and
 * every output equals float(g·(round(x/g) + k)) for the same k. */
static void test_add_depends_only_on_grid_cell(void **state) {
        const size_t n = 50000;
        struct fix *a = fix_new(1000.0, n), *b = fix_new(1000.0, n),
                   *c = fix_new(1000.0, n);
        double g = veil_noise_grid(a->ns);
        int64_t *k = malloc(n * sizeof(int64_t));
        float *x = malloc(n * sizeof(float));
        size_t moved = 0;
        (void)state;
        assert_non_null(k);
        assert_non_null(x);
        for (size_t i = 0; i < n; i++) {
                x[i] = (float)(((double)(i % 2001) - 1000) * 0.0037);
                a->buf[i] = (float)(rint(x[i] / g) * g);
                /* Another float in the same cell: a few ulps away. */
                b->buf[i] = a->buf[i];
                for (int u = 0; u < (int)(i % 5); u++)
                        b->buf[i] = nextafterf(b->buf[i],
                                               (i & 1) ? INFINITY : -INFINITY);
                moved += b->buf[i] != a->buf[i];
                assert_true(rint(b->buf[i] / g) == rint(a->buf[i] / g));
        }
        assert_true(moved > n / 2);
        assert_int_equal(veil_noise_add(a->ns, &a->rng, a->buf, n, a->err,
                                        sizeof(a->err)),
                         0);
        assert_int_equal(veil_noise_add(b->ns, &b->rng, b->buf, n, b->err,
                                        sizeof(b->err)),
                         0);
        assert_memory_equal(a->buf, b->buf, n * sizeof(float));
        /* The same seed through fill_lattice gives the same k. */
        assert_int_equal(veil_noise_fill_lattice(c->ns, &c->rng, k, n, c->err,
                                                 sizeof(c->err)),
                         0);
        for (size_t i = 0; i < n; i++) {
                double q = rint((double)x[i] / g);
                float want = (float)((q + (double)k[i]) * g);
                if (memcmp(&want, &a->buf[i], sizeof(float)))
                        fail_msg("x[%zu]: got %a, want %a", i, a->buf[i],
                                 want);
        }
        free(k);
        free(x);
        fix_free(a);
        fix_free(b);
        fix_free(c);
}

static void test_seeded_is_reproducible(void **state) {
        struct fix *a = fix_new(2.0, 4096), *b = fix_new(2.0, 4096);
        unsigned char key0[32];
        (void)state;
        memcpy(key0, a->st.key, sizeof(key0));
        fill(a, 4096);
        fill(b, 4096);
        assert_memory_equal(a->buf, b->buf, 4096 * sizeof(float));
        /* Fast key erasure: the key that made these bytes is gone. */
        assert_memory_not_equal(key0, a->st.key, sizeof(key0));
        fill(a, 4096);
        assert_memory_not_equal(a->buf, b->buf, 4096 * sizeof(float));
        fix_free(a);
        fix_free(b);
}

/* Production randomness comes from libsodium, not a seed: two fills, and
 * two independently keyed streams, never agree. */
static void test_production_rng(void **state) {
        struct veil_rng sys, s1, s2;
        struct veil_rng_stream st1, st2;
        struct veil_noise *ns;
        float a[256], b[256];
        char err[256];
        (void)state;
        assert_int_equal(veil_noise_new(&ns, 1.0, err, sizeof(err)), 0);
        assert_int_equal(veil_rng_system(&sys), 0);
        assert_int_equal(veil_noise_fill(ns, &sys, a, 256, err, sizeof(err)),
                         0);
        assert_int_equal(veil_noise_fill(ns, &sys, b, 256, err, sizeof(err)),
                         0);
        assert_memory_not_equal(a, b, sizeof(a));
        assert_int_equal(veil_rng_stream_init(&st1, NULL, &s1), 0);
        assert_int_equal(veil_rng_stream_init(&st2, NULL, &s2), 0);
        assert_memory_not_equal(st1.key, st2.key, sizeof(st1.key));
        assert_int_equal(veil_noise_fill(ns, &s1, a, 256, err, sizeof(err)),
                         0);
        assert_int_equal(veil_noise_fill(ns, &s2, b, 256, err, sizeof(err)),
                         0);
        assert_memory_not_equal(a, b, sizeof(a));
        veil_rng_stream_wipe(&st1);
        veil_rng_stream_wipe(&st2);
        veil_noise_free(ns);
}

static void test_refusals(void **state) {
        static const double bad[] = {0.0, -1.0, 1e-13, 1e13};
        struct fix *f = fix_new(1.0, 16);
        struct veil_noise *ns = (void *)1;
        float x[16], copy[16];
        char err[256];
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = 0;
                assert_int_equal(veil_noise_new(&ns, bad[i], err, sizeof(err)),
                                 -VEIL_EINVAL);
                assert_null(ns);
                assert_non_null(strstr(err, "sigma"));
        }
        assert_int_equal(veil_noise_new(&ns, NAN, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_noise_new(&ns, INFINITY, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_noise_gaussian_fill(&f->rng, -2, x, 16, err,
                                                  sizeof(err)),
                         -VEIL_EINVAL);

        for (int i = 0; i < 16; i++)
                x[i] = (float)i;
        x[9] = NAN;
        memcpy(copy, x, sizeof(x));
        err[0] = 0;
        assert_int_equal(veil_noise_add(f->ns, &f->rng, x, 16, err,
                                        sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "element 9"));
        assert_memory_equal(x, copy, sizeof(x));
        x[9] = 1e30f; /* beyond 2^50 grid steps at σ = 1 */
        memcpy(copy, x, sizeof(x));
        assert_int_equal(veil_noise_add(f->ns, &f->rng, x, 16, err,
                                        sizeof(err)),
                         -VEIL_EINVAL);
        assert_memory_equal(x, copy, sizeof(x));
        x[9] = 1e6f;
        assert_int_equal(veil_noise_add(f->ns, &f->rng, x, 16, err,
                                        sizeof(err)),
                         0);
        assert_int_equal(veil_noise_fill(f->ns, NULL, x, 16, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_noise_fill(f->ns, &f->rng, NULL, 16, err,
                                         sizeof(err)),
                         -VEIL_EINVAL);
        /* An empty block is fine. */
        assert_int_equal(veil_noise_fill(f->ns, &f->rng, NULL, 0, err,
                                         sizeof(err)),
                         0);
        fix_free(f);
}

static void test_one_shot(void **state) {
        struct fix *f = fix_new(1.0, 1);
        float x[1000], y[1000];
        char err[256];
        double s2 = 0, d2 = 0;
        (void)state;
        assert_int_equal(veil_noise_gaussian_fill(&f->rng, 5.0, x, 1000, err,
                                                  sizeof(err)),
                         0);
        for (int i = 0; i < 1000; i++) {
                y[i] = 100.0f;
                s2 += (double)x[i] * x[i];
        }
        assert_int_equal(veil_noise_gaussian_add(&f->rng, 5.0, y, 1000, err,
                                                 sizeof(err)),
                         0);
        for (int i = 0; i < 1000; i++)
                d2 += (y[i] - 100.0) * (y[i] - 100.0);
        /* sd from 1000 samples: standard error ≈ 2.2 %, bound 5 of them. */
        assert_true(fabs(sqrt(s2 / 1000) / 5 - 1) < 0.12);
        assert_true(fabs(sqrt(d2 / 1000) / 5 - 1) < 0.12);
        fix_free(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_moments),
                cmocka_unit_test(test_tails),
                cmocka_unit_test(test_kolmogorov_smirnov),
                cmocka_unit_test(test_lattice_distribution),
                cmocka_unit_test(test_in_bucket_slope),
                cmocka_unit_test(test_grid),
                cmocka_unit_test(test_add_depends_only_on_grid_cell),
                cmocka_unit_test(test_seeded_is_reproducible),
                cmocka_unit_test(test_production_rng),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_one_shot),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * bench_noise.c — how fast the dp_model privacy math is, in numbers and in
 * ratios against ceilings measured in the same run (never pass/fail):
 *
 *   - secure Gaussian samples/s for blocks of 64×4096 floats, fill and add,
 *     with the ChaCha20 stream and with randombytes_buf, against the raw
 *     keystream (the sampler's own ceiling);
 *   - the same noise per batch against the batch's scoring sgemm
 *     (256 events × d = 64 × items), the model-step cost it rides on;
 *   - the trade-off: CKS 2020's exact rational sampler and an insecure
 *     Box–Muller, at the same scale;
 *   - accountant: ε conversion, σ for a target ε, and a durable save.
 *
 * Usage: bench_noise [DIR]   (DIR: where to time saves; default /tmp)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <sodium.h>

#include "accountant.h"
#include "noise.h"

#define D 64
#define ITEMS 4096
#define BATCH 256

static double now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs stmt until at least min_s seconds have passed; out = seconds per
 * run. */
#define TIME_IT(out, min_s, stmt)                                             \
        do {                                                                  \
                double t0_ = now(), t_;                                       \
                long n_ = 0;                                                  \
                do {                                                          \
                        stmt;                                                 \
                        n_++;                                                 \
                } while ((t_ = now() - t0_) < (min_s));                       \
                (out) = t_ / (double)n_;                                      \
        } while (0)

/* ---------------------------------------------------------------- */
/* References for the trade-off                                       */
/* ---------------------------------------------------------------- */

struct words {
        const struct veil_rng *rng;
        uint64_t buf[512];
        size_t pos;
};

static uint64_t word(struct words *w) {
        if (w->pos == 512) {
                w->rng->fill(w->rng->ctx, w->buf, sizeof(w->buf));
                w->pos = 0;
        }
        return w->buf[w->pos++];
}

typedef unsigned __int128 u128;

static u128 uniform_below(struct words *w, u128 bound) {
        int bits = 0;
        u128 mask, v;
        while (bits < 128 && (bound - 1) >> bits)
                bits++;
        mask = bits == 128 ? ~(u128)0 : (((u128)1 << bits) - 1);
        do {
                v = (((u128)word(w) << 64) | word(w)) & mask;
        } while (v >= bound);
        return v;
}

/* CKS 2020, Algorithm 1: Bernoulli(exp(-n/d)). */
static int bern_exp(struct words *w, u128 n, u128 d) {
        while (n > d) {
                if (!bern_exp(w, 1, 1))
                        return 0;
                n -= d;
        }
        for (u128 k = 1;; k++)
                if (uniform_below(w, d * k) >= n)
                        return (int)(k & 1);
}

/* CKS 2020, Algorithms 2 and 3: exact N_Z(0, s2) for integer s2. */
static int64_t cks_gaussian(struct words *w, uint64_t s, u128 s2) {
        u128 t = s + 1;
        for (;;) {
                int64_t y;
                u128 num;
                for (;;) {
                        u128 u = uniform_below(w, t), v = 0, x;
                        int neg;
                        if (!bern_exp(w, u, t))
                                continue;
                        while (bern_exp(w, 1, 1))
                                v++;
                        x = u + t * v;
                        neg = (int)(word(w) & 1);
                        if (neg && x == 0)
                                continue;
                        y = neg ? -(int64_t)x : (int64_t)x;
                        break;
                }
                num = (u128)llabs(y) * t;
                num = num > s2 ? num - s2 : s2 - num;
                if (bern_exp(w, num * num, t * t * 2 * s2))
                        return y;
        }
}

static void box_muller(struct words *w, float *out, size_t n, double sigma) {
        for (size_t i = 0; i + 1 < n; i += 2) {
                double u1 = ((double)(word(w) >> 11) + 1) * 0x1p-53;
                double u2 = (double)(word(w) >> 11) * 0x1p-53;
                double r = sigma * sqrt(-2 * log(u1));
                out[i] = (float)(r * cos(2 * M_PI * u2));
                out[i + 1] = (float)(r * sin(2 * M_PI * u2));
        }
}

/* ---------------------------------------------------------------- */

static void bench_noise(void) {
        const size_t n = (size_t)D * ITEMS;
        struct veil_rng_stream st;
        struct veil_rng stream, sys;
        struct veil_noise *ns;
        float *x = malloc(n * sizeof(float));
        float *feat = malloc((size_t)BATCH * D * sizeof(float));
        float *items = malloc((size_t)ITEMS * D * sizeof(float));
        float *scores = malloc((size_t)BATCH * ITEMS * sizeof(float));
        unsigned char *ks = malloc(n * 8);
        struct words w = {0};
        char err[256];
        double t_fill, t_add, t_sys, t_ks, t_bm, t_cks, t_new;
        static const size_t counts[] = {64, 1024, 4096};

        if (!x || !feat || !items || !scores || !ks)
                exit(1);
        veil_rng_stream_init(&st, NULL, &stream);
        veil_rng_system(&sys);
        if (veil_noise_new(&ns, 1.3, err, sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                exit(1);
        }
        for (size_t i = 0; i < n; i++)
                x[i] = (float)((double)(i % 1000) * 1e-3);

        TIME_IT(t_fill, 1.0, veil_noise_fill(ns, &stream, x, n, err,
                                              sizeof(err)));
        TIME_IT(t_add, 1.0, veil_noise_add(ns, &stream, x, n, err,
                                            sizeof(err)));
        TIME_IT(t_sys, 1.0, veil_noise_fill(ns, &sys, x, n, err,
                                             sizeof(err)));
        /* The sampler draws ~8 bytes per sample: this is its ceiling. */
        TIME_IT(t_ks, 0.5, stream.fill(stream.ctx, ks, n * 8));
        w.rng = &stream;
        w.pos = 512;
        TIME_IT(t_bm, 0.5, box_muller(&w, x, n, 1.3));
        /* CKS at the same scale s = 2^24 (σ²  = 2^48), on fewer samples. */
        TIME_IT(t_cks, 1.0, {
                for (size_t i = 0; i < 16384; i++)
                        x[i] = (float)cks_gaussian(&w, 1u << 24,
                                                   (u128)1 << 48);
        });
        t_cks = t_cks / 16384 * (double)n;
        TIME_IT(t_new, 0.5, {
                struct veil_noise *tmp;
                veil_noise_new(&tmp, 1.3, err, sizeof(err));
                veil_noise_free(tmp);
        });

        printf("secure Gaussian, blocks of %d x %d = %zu floats\n", D, ITEMS,
               n);
        printf("  fill, ChaCha20 stream     %8.1f M samples/s  (%.2f ms "
               "per block)\n",
               n / t_fill / 1e6, t_fill * 1e3);
        printf("  add,  ChaCha20 stream     %8.1f M samples/s\n",
               n / t_add / 1e6);
        printf("  fill, randombytes_buf     %8.1f M samples/s\n",
               n / t_sys / 1e6);
        printf("  ceiling: keystream alone  %8.1f M samples/s (8 B each); "
               "fill reaches %.0f %% of it\n",
               n / t_ks / 1e6, 100 * t_ks / t_fill);
        printf("  CKS exact (rational)      %8.2f M samples/s  (ours is "
               "%.0fx faster)\n",
               n / t_cks / 1e6, t_cks / t_fill);
        printf("  Box-Muller (insecure)     %8.1f M samples/s  (ours "
               "costs %.2fx)\n",
               n / t_bm / 1e6, t_fill / t_bm);
        printf("  sampler setup (table)     %8.1f us\n", t_new * 1e6);

        openblas_set_num_threads(1);
        for (size_t i = 0; i < (size_t)BATCH * D; i++)
                feat[i] = (float)((i * 7919) % 101) * 0.01f;
        for (size_t i = 0; i < (size_t)ITEMS * D; i++)
                items[i] = (float)((i * 104729) % 97) * 0.01f;
        printf("noise per batch vs the batch's scoring sgemm "
               "(%d events x d=%d x items, one thread)\n",
               BATCH, D);
        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                size_t it = counts[c], np = it * D;
                double t_gemm, t_noise;
                int rc = 0;
                for (size_t i = 0; i < np; i++)
                        x[i] = (float)((double)(i % 1000) * 1e-3);
                TIME_IT(t_gemm, 
                        0.5, cblas_sgemm(CblasRowMajor, CblasNoTrans,
                                         CblasTrans, BATCH, (int)it, D, 1.0f,
                                         feat, D, items, D, 0.0f, scores,
                                         (int)it));
                TIME_IT(t_noise, 0.5,
                        rc |= veil_noise_add(ns, &stream, x, np, err,
                                             sizeof(err)));
                if (rc) {
                        fprintf(stderr, "noise add failed: %s\n", err);
                        exit(1);
                }
                printf("  items %5zu: %7zu params noised in %8.1f us, "
                       "sgemm %8.1f us, noise/sgemm %.2f, per event "
                       "%.3f us\n",
                       it, np, t_noise * 1e6, t_gemm * 1e6, t_noise / t_gemm,
                       t_noise * 1e6 / BATCH);
        }
        veil_noise_free(ns);
        veil_rng_stream_wipe(&st);
        free(x);
        free(feat);
        free(items);
        free(scores);
        free(ks);
}

static void bench_accountant(const char *dir) {
        struct veil_dp_mech m = {VEIL_DP_GAUSSIAN, 1.1, 4, 0, 1000, 1 << 20};
        struct veil_accountant *acc;
        char err[256], path[1024];
        double eps, sigma, t_eps, t_samp, t_inv, t_step, t_save;
        double rho = 0.37;
        int save_rc = 0;

        veil_accountant_new(&acc, &m, err, sizeof(err));
        snprintf(path, sizeof(path), "%s/bench_noise.acct", dir);
        TIME_IT(t_eps, 0.5, {
                veil_dp_epsilon(rho, 1e-6, &eps, NULL, err, sizeof(err));
                rho *= 1.0000001;
        });
        /* A stage's ε: the sampler's error on m's 2^20 coordinates added. */
        double per = veil_dp_draws_per_rho(&m);
        TIME_IT(t_samp, 0.5, {
                veil_dp_epsilon_sampled(rho, 1e-6, per, &eps, err,
                                        sizeof(err));
                rho *= 1.0000001;
        });
        TIME_IT(t_inv, 0.5, veil_dp_noise_for_epsilon(&m, 2.0, 1e-6, &sigma,
                                                       err, sizeof(err)));
        TIME_IT(t_step, 0.3, veil_accountant_charge_step(acc, 1, NULL, err,
                                                          sizeof(err)));
        TIME_IT(t_save, 0.5, save_rc |= veil_accountant_save(acc, path, err,
                                                              sizeof(err)));
        unlink(path);
        printf("accountant\n");
        printf("  epsilon from rho          %8.2f us per call\n",
               t_eps * 1e6);
        printf("  the same, sampler included %7.2f us per call\n",
               t_samp * 1e6);
        printf("  sigma for a target eps    %8.2f ms per call (sigma %.4f)\n",
               t_inv * 1e3, sigma);
        printf("  charge_step               %8.3f us per call\n",
               t_step * 1e6);
        printf("  durable save (fdatasync)  %8.1f us per call in %s%s\n",
               t_save * 1e6, dir, save_rc ? " (FAILED)" : "");
        veil_accountant_free(acc);
}

int main(int argc, char **argv) {
        if (sodium_init() < 0)
                return 1;
        bench_noise();
        bench_accountant(argc > 1 ? argv[1] : "/tmp");
        return 0;
}

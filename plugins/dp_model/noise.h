/*
 * noise.h — secure Gaussian noise for the dp_model plugin.
 *
 * Why not Box–Muller or the libm normal: the set of values x + fl(noise)
 * can take depends on x when the noise is a double built from a uniform
 * (Mironov 2012 showed it for Laplace; Box–Muller has the same flaw), so the
 * low bits of an output leak x whatever ε the accountant reports.
 *
 * What is used instead: the discrete Gaussian of Canonne, Kamath and Steinke
 * (2020) on a power-of-two grid g. The input is rounded to the grid, an
 * integer k with P(k) ∝ exp(-k²/(2s²)), s = σ/g, is added, and the exact
 * lattice value g·(round(x/g) + k) is rounded once to float. The output is
 * thus a function of round(x/g) + k only (post-processing of a lattice
 * mechanism), and the discrete Gaussian on ℤ^n with an integer shift of L2
 * norm Δ/g has the same ρ = Δ²/(2σ²) as the continuous one (CKS 2020).
 *
 * The grid: g = 2^e with s = σ/g in [2^24, 2^25). Rounding to the grid moves
 * each coordinate by less than g/2, so the L2 sensitivity of a block of n
 * coordinates grows from C to at most C + g·√n: the plugin accounts with the
 * noise multiplier σ / (C + g·√n) (veil_noise_grid gives g). At σ = C and
 * n = 2^20 that is a 6·10^-5 relative change.
 *
 * How k is drawn, fast (CKS's own exact sampler needs ~15 uniform draws
 * with 128-bit arithmetic per sample: 1.8 M/s against ~100 M/s here, see
 * tests/bench/bench_noise.c): |k| is bucketed by 2^17; a bucket j is picked
 * by inversion of a 128-bit fixed-point cumulative table of the envelope
 * exp(-(2^17 j)²/(2s²)), an offset r uniformly, and m = 2^17 j + r is
 * accepted with probability exp(-(m² - (2^17 j)²)/(2s²)) (≥ 0.9; overall
 * rejection ≈ 0.3 %), decided from 1-γ ≤ e^-γ ≤ 1-γ+γ²/2 and, in the rare
 * cases these do not decide, expl(). One 64-bit random word per sample.
 * The sampled pmf is within a relative 2^-55 of the discrete Gaussian for
 * |k| ≤ 9s (long double table, 64-bit acceptance) and within 10^-35 in
 * total variation beyond (VEIL_NOISE_PMF_ERR, VEIL_NOISE_TAIL_TV). The
 * accountant adds what that costs (veil_dp_epsilon_sampled): about
 * 2^-54 in ε per coordinate draw a user can move, 10^-9 for the
 * retail evaluation's model, a customer in 12 releases of 1.5 M
 * coordinates.
 *
 * Random bits: struct veil_rng. Production uses libsodium — either
 * randombytes_buf directly (veil_rng_system; one getrandom call per 256
 * bytes, ~28 M samples/s) or, ~4× faster, a ChaCha20 keystream keyed from
 * randombytes_buf that rekeys itself after every fill (fast key erasure: a
 * later memory dump cannot regenerate noise already released). Tests key
 * the same stream from a fixed seed.
 */
#ifndef VEIL_DP_NOISE_H
#define VEIL_DP_NOISE_H

#include <stddef.h>
#include <stdint.h>

/** The sampler's pmf is within a relative VEIL_NOISE_PMF_ERR of the
 *  discrete Gaussian's where it is compared that way (|k| ≤ 9s), and its
 *  total variation from it beyond is at most VEIL_NOISE_TAIL_TV: each of
 *  the ≤ 1,024 buckets of |k| between 9s and 13s is within 2^-127 (the
 *  128-bit table), 2^-117 in all, and the mass cut off beyond 13s is below
 *  10^-37; 10^-34 leaves a factor of 10. */
#define VEIL_NOISE_PMF_ERR 0x1p-55
#define VEIL_NOISE_TAIL_TV 1e-34

/** A source of uniformly random bytes. fill never fails (libsodium aborts
 *  the process rather than return predictable bytes). */
struct veil_rng {
        void (*fill)(void *ctx, void *buf, size_t n);
        void *ctx;
};

/** The OS CSPRNG through libsodium's randombytes_buf. Returns 0, or
 *  -VEIL_EIO when libsodium cannot be initialized. */
int veil_rng_system(struct veil_rng *rng);

/** A ChaCha20 keystream with fast key erasure. The state is caller-owned
 *  (no allocation); it must outlive the rng that points to it. */
struct veil_rng_stream {
        unsigned char key[32];
};

/** Keys the stream from seed (32 bytes; tests) or, when seed is NULL, from
 *  randombytes_buf (production), and points rng at it. Returns 0, or
 *  -VEIL_EIO when libsodium cannot be initialized. */
int veil_rng_stream_init(struct veil_rng_stream *st, const unsigned char *seed,
                         struct veil_rng *rng);
/** Wipes the key. */
void veil_rng_stream_wipe(struct veil_rng_stream *st);

/** A sampler for one σ: the grid and the bucket table (≈ 60 KB). */
struct veil_noise;

int veil_noise_new(struct veil_noise **out, double sigma, char *errstr,
                   size_t errstr_size);
void veil_noise_free(struct veil_noise *ns);
double veil_noise_sigma(const struct veil_noise *ns);
/** The grid step g (a power of two): every output is a multiple of it. */
double veil_noise_grid(const struct veil_noise *ns);

/** out[i] = k_i·g rounded to float, k_i discrete Gaussian of scale σ/g. */
int veil_noise_fill(const struct veil_noise *ns, const struct veil_rng *rng,
                    float *out, size_t n, char *errstr, size_t errstr_size);
/** x[i] = float(g·(round(x[i]/g) + k_i)). Refuses (and leaves x unchanged)
 *  a non-finite x[i] or one so large that the lattice value would not be
 *  exact in double (|x| ≥ 2^50·g, which is between 2^25·σ and 2^26·σ). */
int veil_noise_add(const struct veil_noise *ns, const struct veil_rng *rng,
                   float *x, size_t n, char *errstr, size_t errstr_size);
/** The same for a sum kept in double by rows (dp.c): a block of
 *  n_rows × width values, row r's at rows[r], or zeros where rows[r] is
 *  NULL (a row no contribution touched: noise alone, nothing read); out
 *  gets n_rows·width floats. The sum is consumed: each row read is zeroed
 *  (one pass over it, ready for the next step). Refuses a non-finite
 *  value or one of magnitude ≥ 2^50·g as veil_noise_add does, but a chunk
 *  at a time: on a refusal the rows and out are partly done, and the
 *  caller drops the step. */
int veil_noise_add_rows(const struct veil_noise *ns,
                        const struct veil_rng *rng, double *const *rows,
                        size_t n_rows, size_t width, float *out, char *errstr,
                        size_t errstr_size);
/** Copies values [c0, c0 + m) of such a block (row-major) into q, zeros
 *  for NULL rows; with consume, zeroes what it read. */
void veil_noise_gather(double *q, double *const *rows, size_t width,
                       size_t c0, size_t m, int consume);
/** The integers k_i themselves, for consumers that keep noise in lattice
 *  units (and for tests of the integer distribution). */
int veil_noise_fill_lattice(const struct veil_noise *ns,
                            const struct veil_rng *rng, int64_t *k, size_t n,
                            char *errstr, size_t errstr_size);

/** One-shot forms: build the table for sigma, fill or add, free it. Fine for
 *  large blocks; a stage that adds noise every batch keeps a veil_noise. */
int veil_noise_gaussian_fill(const struct veil_rng *rng, double sigma,
                             float *out, size_t n, char *errstr,
                             size_t errstr_size);
int veil_noise_gaussian_add(const struct veil_rng *rng, double sigma, float *x,
                            size_t n, char *errstr, size_t errstr_size);

#endif

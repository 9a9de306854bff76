/*
 * noise.c — the discrete Gaussian on a power-of-two grid (see noise.h for
 * why this sampler and what its error bounds are).
 */
#include "noise.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "veil/veil.h"

/* s = σ/g lies in [2^SCALE_BITS, 2^(SCALE_BITS+1)). 2^24 keeps the rounding
 * of inputs to the grid far below the clipping norm even for blocks of
 * millions of coordinates, and |k| stays below 2^29, so lattice sums stay
 * exact in double. */
#define SCALE_BITS 24
/* Bucket width. Wider buckets make a smaller table; narrower ones make the
 * envelope tighter. At 2^17 the table is ~53 KB and rejection < 0.4 %. */
#define BUCKET_BITS 17
#define BUCKET ((uint64_t)1 << BUCKET_BITS)
/* The table reaches 13 s; mass beyond is < 10^-37 and rounds to zero in
 * 128-bit fixed point anyway. */
#define TAIL_SIGMAS 13
/* Top bits of the uniform word that index the guide table: 2^14 cells
 * (32 KB) leave few cells that a bucket boundary crosses, so the search in
 * pick_bucket seldom iterates (2^12: 15 % slower sampling). */
#define GUIDE_BITS 14
#define GUIDE_SIZE (1u << GUIDE_BITS)
/* Random words fetched per refill (4 KB). */
#define BUF_WORDS 512
/* Samples drawn before they are added (veil_noise_add). */
#define CHUNK 256
/* Inputs are refused beyond 2^50 grid steps so that round(x/g) + k, with
 * |k| < 2^29, is an exact double. */
#define X_MAX_STEPS 0x1p50

#define SIGMA_MIN 1e-12
#define SIGMA_MAX 1e12

struct u128 {
        uint64_t hi, lo;
};

struct veil_noise {
        double sigma;
        double grid;
        double inv_two_s2;       /* 1/(2s²), fast bounds */
        long double inv_two_s2l; /* 1/(2s²), exact decisions */
        uint32_t nbuckets;
        uint16_t guide[GUIDE_SIZE + 1];
        /* sure[j]: acceptance-uniform prefixes (13 bits) below it accept
         * whatever r is, since e^-γ ≥ 1-γ ≥ 1-γmax(j). */
        uint16_t *sure;
        struct u128 cdt[];       /* nbuckets + 1 cumulative envelope masses */
};

/* A uniform 128-bit value of which only the top 32 bits are drawn up
 * front; the rest is drawn only when a comparison needs it (probability
 * ~2^-20 per sample), so one 64-bit word usually pays for a whole sample. */
struct lazy_u128 {
        uint64_t hi, lo;
        int known; /* 0: top 32 bits of hi, 1: all of hi, 2: hi and lo */
};

struct bits {
        const struct veil_rng *rng;
        size_t pos, len;
        size_t remaining; /* samples still to draw, sizes the next refill */
        size_t used;      /* words ever filled, wiped at the end */
        uint64_t buf[BUF_WORDS];
};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        va_list ap;
        if (!errstr || !errstr_size)
                return;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

/* ---------------------------------------------------------------- */
/* Random sources                                                     */
/* ---------------------------------------------------------------- */

static void system_fill(void *ctx, void *buf, size_t n) {
        (void)ctx;
        randombytes_buf(buf, n);
}

int veil_rng_system(struct veil_rng *rng) {
        if (sodium_init() < 0)
                return -VEIL_EIO;
        rng->fill = system_fill;
        rng->ctx = NULL;
        return 0;
}

/* Fast key erasure: the key that produced this output is replaced before
 * returning, so nothing left in memory can regenerate noise already
 * released. Nonce 0 yields output, nonce 1 the next key. */
static void stream_fill(void *ctx, void *buf, size_t n) {
        struct veil_rng_stream *st = ctx;
        static const unsigned char
                out_nonce[crypto_stream_chacha20_NONCEBYTES] = {0},
                key_nonce[crypto_stream_chacha20_NONCEBYTES] = {1};
        unsigned char next[crypto_stream_chacha20_KEYBYTES];

        crypto_stream_chacha20(buf, n, out_nonce, st->key);
        crypto_stream_chacha20(next, sizeof(next), key_nonce, st->key);
        memcpy(st->key, next, sizeof(st->key));
        sodium_memzero(next, sizeof(next));
}

int veil_rng_stream_init(struct veil_rng_stream *st, const unsigned char *seed,
                         struct veil_rng *rng) {
        /* sodium_init also picks the SIMD ChaCha20 implementation. */
        if (sodium_init() < 0)
                return -VEIL_EIO;
        if (seed)
                memcpy(st->key, seed, sizeof(st->key));
        else
                randombytes_buf(st->key, sizeof(st->key));
        rng->fill = stream_fill;
        rng->ctx = st;
        return 0;
}

void veil_rng_stream_wipe(struct veil_rng_stream *st) {
        sodium_memzero(st->key, sizeof(st->key));
}

static void bits_init(struct bits *b, const struct veil_rng *rng, size_t n) {
        b->rng = rng;
        b->pos = b->len = b->used = 0;
        b->remaining = n;
}

/* The words drawn determine the noise just added: wipe every word filled
 * so the noise cannot be read back from the stack after the call. */
static void bits_wipe(struct bits *b) {
        sodium_memzero(b->buf, b->used * sizeof(b->buf[0]));
}

static inline uint64_t next_word(struct bits *b) {
        if (b->pos == b->len) {
                /* A word per sample plus a little for rejections, so a
                 * small block does not pay for 4 KB of keystream. */
                size_t want = b->remaining + b->remaining / 64 + 8;
                if (want > BUF_WORDS)
                        want = BUF_WORDS;
                b->rng->fill(b->rng->ctx, b->buf, want * sizeof(uint64_t));
                b->len = want;
                b->pos = 0;
                if (want > b->used)
                        b->used = want;
        }
        return b->buf[b->pos++];
}

/* ---------------------------------------------------------------- */
/* Table                                                              */
/* ---------------------------------------------------------------- */

static int u128_le(struct u128 a, struct u128 b) {
        return a.hi < b.hi || (a.hi == b.hi && a.lo <= b.lo);
}

/* c <= u, drawing more of u only on a tie of the bits known so far. */
static int le_lazy(struct u128 c, struct lazy_u128 *u, struct bits *b) {
        if (u->known == 0) {
                if ((c.hi >> 32) != (u->hi >> 32))
                        return (c.hi >> 32) < (u->hi >> 32);
                u->hi |= next_word(b) >> 32;
                u->known = 1;
        }
        if (c.hi != u->hi)
                return c.hi < u->hi;
        if (u->known == 1) {
                u->lo = next_word(b);
                u->known = 2;
        }
        return c.lo <= u->lo;
}

/* Largest j in [lo, hi] with cdt[j] <= t (cdt[lo] <= t is known). */
static uint32_t search_exact(const struct veil_noise *ns, uint32_t lo,
                             uint32_t hi, struct u128 t) {
        while (lo < hi) {
                uint32_t mid = lo + (hi - lo + 1) / 2;
                if (u128_le(ns->cdt[mid], t))
                        lo = mid;
                else
                        hi = mid - 1;
        }
        return lo;
}

static struct veil_noise *table_build(double sigma) {
        int e = ilogb(sigma);
        double grid = ldexp(1.0, e - SCALE_BITS);
        double s = sigma / grid; /* exact: a power-of-two scaling */
        uint32_t nb = (uint32_t)ceil(TAIL_SIGMAS * s / (double)BUCKET) + 1;
        struct veil_noise *ns;
        long double two_s2 = 2.0L * (long double)s * (long double)s;
        long double z = 0.0L, scale;
        struct u128 acc = {0, 0};

        ns = malloc(sizeof(*ns) + (nb + 1) * sizeof(struct u128) +
                    nb * sizeof(uint16_t));
        if (!ns)
                return NULL;
        ns->sure = (uint16_t *)(ns->cdt + nb + 1);
        ns->sigma = sigma;
        ns->grid = grid;
        ns->inv_two_s2 = 1.0 / (2.0 * s * s);
        ns->inv_two_s2l = 1.0L / two_s2;
        ns->nbuckets = nb;

        /* Envelope of bucket j: its largest weight exp(-(Bj)²/(2s²)). */
        for (uint32_t j = 0; j < nb; j++) {
                long double m = (long double)((uint64_t)j << BUCKET_BITS);
                z += expl(-(m * m) / two_s2);
        }
        /* Leave 2^-32 of the 128-bit range unused: uniforms that land
         * there are redrawn, which keeps the ratios exact even if z came
         * out a hair low. */
        scale = ldexpl(1.0L - ldexpl(1.0L, -32), 128) / z;
        for (uint32_t j = 0; j < nb; j++) {
                long double m = (long double)((uint64_t)j << BUCKET_BITS);
                long double f = floorl(expl(-(m * m) / two_s2) * scale);
                /* f has at most 64 significant bits: hi and lo are exact. */
                uint64_t hi = (uint64_t)ldexpl(f, -64);
                uint64_t lo = (uint64_t)(f - ldexpl((long double)hi, 64));
                ns->cdt[j] = acc;
                acc.lo += lo;
                acc.hi += hi + (acc.lo < lo);
        }
        ns->cdt[nb] = acc;

        /* guide[g]: the bucket holding the smallest uniform whose top
         * GUIDE_BITS are g; uniforms in cell g fall in guide[g..g+1]. */
        for (uint32_t g = 0; g < GUIDE_SIZE; g++) {
                struct u128 t = {(uint64_t)g << (64 - GUIDE_BITS), 0};
                ns->guide[g] = (uint16_t)search_exact(ns, 0, nb - 1, t);
        }
        ns->guide[GUIDE_SIZE] = (uint16_t)(nb - 1);

        for (uint32_t j = 0; j < nb; j++) {
                /* The largest γ in bucket j is at r = B-1 < B. */
                long double lo = (long double)((uint64_t)j << BUCKET_BITS);
                long double gmax = (long double)BUCKET *
                                   (2.0L * lo + (long double)BUCKET) / two_s2;
                long double cut = floorl((1.0L - gmax - 0x1p-40L) * 8192.0L);
                /* Prefix a accepts outright when (a+1)/8192 ≤ 1-γmax. */
                ns->sure[j] = cut >= 1 ? (uint16_t)(cut - 1) : 0;
        }
        return ns;
}

static int check_sigma(double sigma, char *errstr, size_t errstr_size) {
        if (!isfinite(sigma) || sigma < SIGMA_MIN || sigma > SIGMA_MAX) {
                errf(errstr, errstr_size,
                     "dp_model noise: sigma must be a finite number in "
                     "[%g, %g], got %g",
                     SIGMA_MIN, SIGMA_MAX, sigma);
                return -VEIL_EINVAL;
        }
        return 0;
}

int veil_noise_new(struct veil_noise **out, double sigma, char *errstr,
                   size_t errstr_size) {
        int rc = check_sigma(sigma, errstr, errstr_size);
        *out = NULL;
        if (rc)
                return rc;
        *out = table_build(sigma);
        if (!*out) {
                errf(errstr, errstr_size,
                     "dp_model noise: out of memory for the sampler table");
                return -VEIL_ENOMEM;
        }
        return 0;
}

void veil_noise_free(struct veil_noise *ns) {
        free(ns);
}

double veil_noise_sigma(const struct veil_noise *ns) {
        return ns->sigma;
}

double veil_noise_grid(const struct veil_noise *ns) {
        return ns->grid;
}

/* ---------------------------------------------------------------- */
/* Sampling                                                           */
/* ---------------------------------------------------------------- */

/* The bucket a 128-bit uniform falls in, or -1 when it lands beyond the
 * table's total (redraw). */
static inline int64_t pick_bucket(const struct veil_noise *ns, struct bits *b,
                           uint32_t top32) {
        struct lazy_u128 u = {(uint64_t)top32 << 32, 0, 0};
        uint32_t cell = top32 >> (32 - GUIDE_BITS);
        uint32_t lo = ns->guide[cell], hi = ns->guide[cell + 1];

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo + 1) / 2;
                if (le_lazy(ns->cdt[mid], &u, b))
                        lo = mid;
                else
                        hi = mid - 1;
        }
        /* Only the top 2^-32 of the range lies beyond the total. */
        if (top32 >= (uint32_t)(ns->cdt[ns->nbuckets].hi >> 32) &&
            le_lazy(ns->cdt[ns->nbuckets], &u, b))
                return -1;
        return lo;
}

/* Bernoulli(exp(-γ)), γ = num/(2s²) in (0, 0.11], against a uniform whose
 * first 13 bits are top13. 1-γ ≤ e^-γ ≤ 1-γ+γ²/2 decides all but ~2^-13
 * + γ²/2 of the cases from those bits alone; the rest draw 51 more bits
 * and, when the bounds still do not decide, compare with expl(). The
 * margins cover the rounding of γ. */
static int accept(const struct veil_noise *ns, struct bits *b, uint64_t num,
                  uint32_t top13) {
        double g = (double)num * ns->inv_two_s2;
        double lo = 1.0 - g - 0x1p-50, hi = 1.0 - g + 0.5 * g * g + 0x1p-50;
        double u0 = (double)top13 * 0x1p-13;
        long double gl, ul;
        uint64_t u64;

        if (u0 + 0x1p-13 <= lo)
                return 1;
        if (u0 >= hi)
                return 0;
        u64 = ((uint64_t)top13 << 51) | (next_word(b) >> 13);
        ul = (long double)u64 * 0x1p-64L;
        gl = (long double)num * ns->inv_two_s2l;
        if (ul + 0x1p-64L <= 1.0L - gl - 0x1p-60L)
                return 1;
        if (ul >= 1.0L - gl + 0.5L * gl * gl + 0x1p-60L)
                return 0;
        return ul < expl(-gl);
}

static inline __attribute__((always_inline)) int64_t
sample_one(const struct veil_noise *ns, struct bits *b) {
        for (;;) {
                /* One word: the bucket uniform's top 32 bits (63-32), r
                 * (31-15), the sign (14), the coin for m = 0 (13) and the
                 * acceptance uniform's top 13 bits (12-0). */
                uint64_t w = next_word(b);
                int64_t j = pick_bucket(ns, b, (uint32_t)(w >> 32));
                uint64_t r = (w >> 15) & (BUCKET - 1);
                uint64_t m;

                if (j < 0)
                        continue;
                m = ((uint64_t)j << BUCKET_BITS) | r;
                if (m == 0) {
                        /* |k| = 0 has weight 1, every other |k| weight 2
                         * (two signs), against an envelope of 2. */
                        if ((w >> 13) & 1)
                                continue;
                        return 0;
                }
                if (r && (w & 0x1fff) >= ns->sure[j] &&
                    !accept(ns, b, r * (2 * ((uint64_t)j << BUCKET_BITS) + r),
                            (uint32_t)(w & 0x1fff)))
                        continue;
                return ((w >> 14) & 1) ? -(int64_t)m : (int64_t)m;
        }
}

static int check_args(const struct veil_noise *ns, const struct veil_rng *rng,
                      const void *p, size_t n, const char *what, char *errstr,
                      size_t errstr_size) {
        if (!ns || !rng || !rng->fill || (n && !p)) {
                errf(errstr, errstr_size,
                     "dp_model noise %s: sampler, rng (with fill) and a "
                     "buffer for %zu values are required",
                     what, n);
                return -VEIL_EINVAL;
        }
        return 0;
}

int veil_noise_fill_lattice(const struct veil_noise *ns,
                            const struct veil_rng *rng, int64_t *k, size_t n,
                            char *errstr, size_t errstr_size) {
        struct bits b;
        int rc = check_args(ns, rng, k, n, "fill_lattice", errstr, errstr_size);
        if (rc)
                return rc;
        bits_init(&b, rng, n);
        for (size_t i = 0; i < n; i++, b.remaining--)
                k[i] = sample_one(ns, &b);
        bits_wipe(&b);
        return 0;
}

int veil_noise_fill(const struct veil_noise *ns, const struct veil_rng *rng,
                    float *out, size_t n, char *errstr, size_t errstr_size) {
        struct bits b;
        int rc = check_args(ns, rng, out, n, "fill", errstr, errstr_size);
        if (rc)
                return rc;
        bits_init(&b, rng, n);
        /* k·g is exact in double; the one rounding is to float. */
        for (size_t i = 0; i < n; i++, b.remaining--)
                out[i] = (float)((double)sample_one(ns, &b) * ns->grid);
        bits_wipe(&b);
        return 0;
}

/* x[i] is not finite or too far from the lattice's exact range: the
 * message names the position only (the value is private). */
static int out_of_range(const struct veil_noise *ns, double v, size_t i,
                        size_t n, const char *left, char *errstr,
                        size_t errstr_size) {
        if (fabs(v) < X_MAX_STEPS * ns->grid)
                return 0;
        errf(errstr, errstr_size,
             "dp_model noise add: element %zu of %zu is not finite or not "
             "below %g in magnitude (2^50 grid steps at sigma %g); %s",
             i, n, X_MAX_STEPS * ns->grid, ns->sigma, left);
        return -VEIL_EINVAL;
}

void veil_noise_gather(double *q, double *const *rows, size_t width,
                       size_t c0, size_t m, int consume) {
        size_t r = c0 / width, k = c0 % width;
        for (size_t i = 0; i < m; r++, k = 0) {
                size_t take = width - k < m - i ? width - k : m - i;
                if (rows[r]) {
                        memcpy(q + i, rows[r] + k, take * sizeof(double));
                        if (consume)
                                memset(rows[r] + k, 0, take * sizeof(double));
                } else {
                        memset(q + i, 0, take * sizeof(double));
                }
                i += take;
        }
}

/* out[i] = float(g·(round(x[i]/g) + k_i)) for x in float (xf) or in
 * double by rows (xr, width); out may be xf. Rows are checked and
 * consumed (zeroed) a chunk at a time, while in cache; a float block is
 * checked whole first, so that a refusal leaves it unchanged. */
static int add_lattice(const struct veil_noise *ns, const struct veil_rng *rng,
                       const float *xf, double *const *xr, size_t width,
                       float *out, size_t n, char *errstr,
                       size_t errstr_size) {
        struct bits b;
        int rc = check_args(ns, rng, out, n, "add", errstr, errstr_size);
        if (rc)
                return rc;
        for (size_t i = 0; xf && i < n; i++)
                if ((rc = out_of_range(ns, (double)xf[i], i, n,
                                       "the block was left unchanged",
                                       errstr, errstr_size)))
                        return rc;
        double inv_grid = 1.0 / ns->grid; /* a power of two: exact */
        bits_init(&b, rng, n);
        int64_t k[CHUNK];
        double q[CHUNK];
        /* round(x/g) + k and the product by g are exact in double, so the
         * float written is a function of round(x/g) + k alone: the low
         * bits of x cannot shape the set of reachable outputs. */
        for (size_t i0 = 0; i0 < n && !rc; i0 += CHUNK) {
                size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
                if (xr)
                        veil_noise_gather(q, xr, width, i0, m, 1);
                else
                        for (size_t i = 0; i < m; i++)
                                q[i] = (double)xf[i0 + i];
                for (size_t i = 0; xr && i < m && !rc; i++)
                        rc = out_of_range(ns, q[i], i0 + i, n,
                                          "the step is dropped", errstr,
                                          errstr_size);
                if (rc)
                        break;
                /* Draw first, then add: the sampler's branches and the
                 * arithmetic below do not share one loop. */
                for (size_t i = 0; i < m; i++, b.remaining--)
                        k[i] = sample_one(ns, &b);
                for (size_t i = 0; i < m; i++) {
                        /* x/g by a power of two is exact; adding and
                         * removing 1.5·2^52 rounds it to the nearest
                         * integer (ties to even) without a libm call,
                         * exactly, since |x/g| < 2^50. */
                        double r = q[i] * inv_grid;
                        r = (r + 0x1.8p52) - 0x1.8p52;
                        out[i0 + i] = (float)((r + (double)k[i]) * ns->grid);
                }
        }
        sodium_memzero(k, sizeof(k));
        sodium_memzero(q, sizeof(q));
        bits_wipe(&b);
        return rc;
}

int veil_noise_add(const struct veil_noise *ns, const struct veil_rng *rng,
                   float *x, size_t n, char *errstr, size_t errstr_size) {
        return add_lattice(ns, rng, x, NULL, 1, x, n, errstr, errstr_size);
}

int veil_noise_add_rows(const struct veil_noise *ns,
                        const struct veil_rng *rng, double *const *rows,
                        size_t n_rows, size_t width, float *out, char *errstr,
                        size_t errstr_size) {
        if ((!rows || !width) && n_rows) {
                errf(errstr, errstr_size,
                     "dp_model noise add: %zu rows without row pointers or "
                     "width", n_rows);
                return -VEIL_EINVAL;
        }
        return add_lattice(ns, rng, NULL, rows, width, out, n_rows * width,
                           errstr, errstr_size);
}

int veil_noise_gaussian_fill(const struct veil_rng *rng, double sigma,
                             float *out, size_t n, char *errstr,
                             size_t errstr_size) {
        struct veil_noise *ns;
        int rc = veil_noise_new(&ns, sigma, errstr, errstr_size);
        if (rc)
                return rc;
        rc = veil_noise_fill(ns, rng, out, n, errstr, errstr_size);
        veil_noise_free(ns);
        return rc;
}

int veil_noise_gaussian_add(const struct veil_rng *rng, double sigma, float *x,
                            size_t n, char *errstr, size_t errstr_size) {
        struct veil_noise *ns;
        int rc = veil_noise_new(&ns, sigma, errstr, errstr_size);
        if (rc)
                return rc;
        rc = veil_noise_add(ns, rng, x, n, errstr, errstr_size);
        veil_noise_free(ns);
        return rc;
}

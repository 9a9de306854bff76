#include "learn.h"

#include <cblas.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

/* A weight of one E or U row in an example's query. */
struct coef {
        uint32_t table; /* 0: E, 1: U */
        uint32_t row;
        float w;
};

struct veil_learner {
        struct veil_learn_cfg cfg;
        uint64_t rng;
        veil_noise_hook hook;
        void *hook_ctx;
        size_t d, cap_items, space;

        /* Per-example buffers, grown to the largest batch. */
        size_t cap_ex;
        float *Q, *R, *G, *rpos;
        int32_t *pos_col;
        uint32_t *order, *ucount, *ustart;
        size_t *coef_off;
        struct coef *coef;
        size_t cap_coef;
        size_t cap_users;
        float *norms, *scales;
        float *gram; /* 4 m×m Gram matrices of the largest user group */
        size_t cap_gram;
        float *A;    /* a user's query weights, dense: m × (rows they use) */
        size_t cap_A;
        /* Row (E rows, then U) → column of A: the stamp of the user's
         * turn (high half) and the column (low half), one word. */
        uint64_t *col_of;
        uint32_t col_stamp;

        /* The support: sampled items, their rows of V and b. */
        uint32_t *perm; /* the identity between draws */
        size_t n_perm;
        size_t *swp;    /* a draw's swaps, undone after it */
        uint32_t *sup;
        size_t n_sup;
        float *VS, *bS;
        uint32_t *forced;
        size_t n_forced;
        /* veil_learner_support_epoch: one draw per epoch (DP step). */
        int hold;
        uint64_t seed, epoch, drawn_epoch;
        size_t drawn_items;
        uint32_t *colmark, *col;
        uint32_t stamp;

        /* The summed gradient and the rows it touched. The sums are
         * accumulated compactly: row i of cV (cb, cU, cE) is the sum for
         * the i-th row listed (vrows…), and a mark holds the step's stamp
         * (high half) and that position (low half). The dense
         * accumulators of g are only filled for a noise hook. */
        struct veil_grad g;
        uint64_t *vmark, *umark, *emark;
        uint32_t *vrows, *urows, *erows;
        uint32_t gstamp;
        float *cV, *cb, *cU, *cE;
        size_t cap_cv, cap_cb, cap_cu, cap_ce; /* floats in each */
        /* veil_learner_double_sums: the same compact sums in double, and
         * R and Q in double for the one dgemm. */
        int dsum;
        double *dV, *db, *dU, *dE, *Rd, *Qd;
        size_t cap_dv, cap_db, cap_du, cap_de, cap_rd, cap_qd;

        struct veil_learn_stats last;
};

static void *grow(void *p, size_t n, size_t size) {
        void *q = realloc(p, (n ? n : 1) * size);
        if (!q)
                free(p);
        return q;
}

/* n zeroed elements of `size` bytes, 64-byte aligned. */
static void *zalloc64(size_t n, size_t size) {
        void *p = NULL;
        if (posix_memalign(&p, 64, (n ? n : 1) * size))
                return NULL;
        memset(p, 0, (n ? n : 1) * size);
        return p;
}

static float *floats64(size_t n) { return zalloc64(n, sizeof(float)); }

/* A scratch buffer (contents not kept) of elements of `size` bytes: when
 * need exceeds *cap, a fresh aligned, zeroed one of alloc ≥ need. */
static int reserve_buf(void **p, size_t *cap, size_t need, size_t alloc,
                       size_t size) {
        if (need <= *cap)
                return 0;
        free(*p);
        if (!(*p = zalloc64(alloc, size))) {
                *cap = 0;
                return -VEIL_ENOMEM;
        }
        *cap = alloc;
        return 0;
}

static int reserve_floats(float **p, size_t *cap, size_t need, size_t alloc) {
        void *q = *p;
        int rc = reserve_buf(&q, cap, need, alloc, sizeof(float));
        *p = q;
        return rc;
}

static int reserve_doubles(double **p, size_t *cap, size_t need) {
        void *q = *p;
        int rc = reserve_buf(&q, cap, need, need, sizeof(double));
        *p = q;
        return rc;
}

void veil_learner_free(struct veil_learner *L) {
        if (!L)
                return;
        free(L->Q);
        free(L->R);
        free(L->G);
        free(L->rpos);
        free(L->pos_col);
        free(L->order);
        free(L->ucount);
        free(L->ustart);
        free(L->coef_off);
        free(L->coef);
        free(L->norms);
        free(L->scales);
        free(L->gram);
        free(L->A);
        free(L->col_of);
        free(L->perm);
        free(L->sup);
        free(L->swp);
        free(L->VS);
        free(L->bS);
        free(L->cV);
        free(L->cb);
        free(L->cU);
        free(L->cE);
        free(L->dV);
        free(L->db);
        free(L->dU);
        free(L->dE);
        free(L->Rd);
        free(L->Qd);
        free(L->forced);
        free(L->colmark);
        free(L->col);
        free(L->g.V);
        free(L->g.U);
        free(L->g.E);
        free(L->g.b);
        free(L->vmark);
        free(L->umark);
        free(L->emark);
        free(L->vrows);
        free(L->urows);
        free(L->erows);
        free(L);
}

int veil_learner_new(struct veil_learner **out,
                     const struct veil_learn_cfg *cfg,
                     const struct veil_model *m, uint64_t seed) {
        struct veil_learner *L = calloc(1, sizeof(*L));
        if (!L)
                return -VEIL_ENOMEM;
        L->cfg = *cfg;
        if (!L->cfg.negatives)
                L->cfg.negatives = 1;
        if (!L->cfg.max_user_examples)
                L->cfg.max_user_examples = 1;
        L->rng = L->seed = seed ^ 0x5deece66dULL;
        L->d = m->d;
        L->cap_items = m->cap;
        L->space = m->space;
        size_t d = m->d, S = L->cfg.negatives;
        L->perm = calloc(m->cap ? m->cap : 1, sizeof(uint32_t));
        L->sup = calloc(S, sizeof(uint32_t));
        L->swp = calloc(S, sizeof(size_t));
        L->VS = floats64(S * d);
        L->bS = floats64(S);
        L->colmark = calloc(m->cap ? m->cap : 1, sizeof(uint32_t));
        L->col = calloc(m->cap ? m->cap : 1, sizeof(uint32_t));
        L->g.V = floats64(m->cap * d);
        L->g.U = floats64(m->cap * d);
        L->g.E = floats64(m->space * d);
        L->g.b = floats64(m->cap);
        L->vmark = calloc(m->cap ? m->cap : 1, sizeof(uint64_t));
        L->umark = calloc(m->cap ? m->cap : 1, sizeof(uint64_t));
        L->emark = calloc(m->space, sizeof(uint64_t));
        L->vrows = calloc(m->cap ? m->cap : 1, sizeof(uint32_t));
        L->urows = calloc(m->cap ? m->cap : 1, sizeof(uint32_t));
        L->erows = calloc(m->space, sizeof(uint32_t));
        L->col_of = calloc(m->space + m->cap, sizeof(uint64_t));
        if (!L->perm || !L->sup || !L->swp || !L->VS || !L->bS ||
            !L->colmark || !L->col || !L->g.V || !L->g.U || !L->g.E ||
            !L->g.b || !L->vmark || !L->umark || !L->emark || !L->vrows ||
            !L->urows || !L->erows || !L->col_of) {
                veil_learner_free(L);
                return -VEIL_ENOMEM;
        }
        L->g.d = d;
        L->g.space = m->space;
        L->g.clip = cfg->clip;
        *out = L;
        return 0;
}

void veil_learner_support_epoch(struct veil_learner *L, uint64_t epoch) {
        L->hold = 1;
        L->epoch = epoch;
}

void veil_learner_double_sums(struct veil_learner *L) { L->dsum = 1; }

/* Sums in double: asked for, and a hook to take them. */
static int double_sums(const struct veil_learner *L) {
        return L->dsum && L->hook;
}

void veil_learner_set_noise(struct veil_learner *L, veil_noise_hook hook,
                            void *ctx) {
        L->hook = hook;
        L->hook_ctx = ctx;
}

struct veil_learn_stats veil_learn_last(const struct veil_learner *L) {
        return L->last;
}
const float *veil_learn_norms(const struct veil_learner *L) {
        return L->norms;
}
const float *veil_learn_scales(const struct veil_learner *L) {
        return L->scales;
}
const uint32_t *veil_learn_support(const struct veil_learner *L, size_t *n) {
        *n = L->n_sup;
        return L->sup;
}

void veil_learn_force_support(struct veil_learner *L, const uint32_t *items,
                              size_t n) {
        free(L->forced);
        L->forced = NULL;
        L->n_forced = 0;
        if (!n || n > L->cfg.negatives)
                return;
        L->forced = malloc(n * sizeof(uint32_t));
        if (!L->forced)
                return;
        memcpy(L->forced, items, n * sizeof(uint32_t));
        L->n_forced = n;
}

static int reserve(struct veil_learner *L, size_t n_ex, size_t n_users,
                   size_t n_coef) {
        size_t d = L->d, S = L->cfg.negatives;
        if (n_ex > L->cap_ex) {
                size_t c = n_ex * 2;
                free(L->Q);
                free(L->R);
                free(L->G);
                L->Q = floats64(c * d);
                L->R = floats64(c * S);
                L->G = floats64(c * d);
                L->rpos = grow(L->rpos, c, sizeof(float));
                L->pos_col = grow(L->pos_col, c, sizeof(int32_t));
                L->order = grow(L->order, c, sizeof(uint32_t));
                L->coef_off = grow(L->coef_off, c + 1, sizeof(size_t));
                if (!L->Q || !L->R || !L->G || !L->rpos || !L->pos_col ||
                    !L->order || !L->coef_off)
                        return -VEIL_ENOMEM;
                L->cap_ex = c;
        }
        if (n_users + 1 > L->cap_users) {
                size_t c = (n_users + 1) * 2;
                L->ucount = grow(L->ucount, c, sizeof(uint32_t));
                L->ustart = grow(L->ustart, c + 1, sizeof(uint32_t));
                L->norms = grow(L->norms, c, sizeof(float));
                L->scales = grow(L->scales, c, sizeof(float));
                if (!L->ucount || !L->ustart || !L->norms || !L->scales)
                        return -VEIL_ENOMEM;
                L->cap_users = c;
        }
        if (n_coef > L->cap_coef) {
                size_t c = n_coef * 2;
                L->coef = grow(L->coef, c, sizeof(struct coef));
                if (!L->coef)
                        return -VEIL_ENOMEM;
                L->cap_coef = c;
        }
        /* Compact sums: the support and every target outside it (V, b);
         * at most one row per coefficient, or per table row (U, E). */
        size_t nv = S + L->cap_ex;
        size_t nu = L->cap_coef < L->cap_items ? L->cap_coef : L->cap_items;
        size_t ne = L->cap_coef < L->space ? L->cap_coef : L->space;
        if (reserve_floats(&L->cV, &L->cap_cv, nv * d, nv * d) ||
            reserve_floats(&L->cb, &L->cap_cb, nv, nv) ||
            reserve_floats(&L->cU, &L->cap_cu, nu * d, nu * d) ||
            reserve_floats(&L->cE, &L->cap_ce, ne * d, ne * d))
                return -VEIL_ENOMEM;
        if (double_sums(L) &&
            (reserve_doubles(&L->dV, &L->cap_dv, nv * d) ||
             reserve_doubles(&L->db, &L->cap_db, nv) ||
             reserve_doubles(&L->dU, &L->cap_du, nu * d) ||
             reserve_doubles(&L->dE, &L->cap_de, ne * d) ||
             reserve_doubles(&L->Rd, &L->cap_rd, L->cap_ex * S) ||
             reserve_doubles(&L->Qd, &L->cap_qd, L->cap_ex * d)))
                return -VEIL_ENOMEM;
        return 0;
}

/* A 64-bit mix (splitmix64's finalizer): the seed of an epoch's draw. */
static uint64_t mix64(uint64_t x) {
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

/* Uniform items without replacement: a partial Fisher–Yates shuffle of the
 * identity permutation, undone afterwards. Independent of the data, so one
 * user's example never depends on another's. With one draw per epoch (DP
 * steps) the draw is a function of the seed and the epoch alone: drawn
 * from a generator carried across steps, or from a permutation left
 * shuffled, the draw of a step would depend on how many earlier steps had
 * an example to learn, so one person learning alone in a step would change
 * every later step's contributions of everyone else. */
static void sample_support(struct veil_learner *L, size_t items) {
        while (L->n_perm < items) {
                L->perm[L->n_perm] = (uint32_t)L->n_perm;
                L->n_perm++;
        }
        if (L->n_forced) {
                memcpy(L->sup, L->forced, L->n_forced * sizeof(uint32_t));
                L->n_sup = L->n_forced;
                return;
        }
        /* Held: the epoch's draw stays while the catalog does. */
        if (L->hold && L->n_sup && L->drawn_epoch == L->epoch &&
            L->drawn_items == items)
                return;
        L->drawn_epoch = L->epoch;
        L->drawn_items = items;
        uint64_t epoch_rng = mix64(L->seed ^ mix64(L->epoch + 1));
        uint64_t *rng = L->hold ? &epoch_rng : &L->rng;
        size_t S = L->cfg.negatives < items ? L->cfg.negatives : items;
        for (size_t t = 0; t < S; t++) {
                size_t r = t + (size_t)(veil_model_uniform(rng) *
                                        (double)(items - t));
                if (r >= items)
                        r = items - 1;
                uint32_t x = L->perm[t];
                L->perm[t] = L->perm[r];
                L->perm[r] = x;
                L->sup[t] = L->perm[t];
                L->swp[t] = r;
        }
        for (size_t t = S; t-- > 0;) {
                uint32_t x = L->perm[t];
                L->perm[t] = L->perm[L->swp[t]];
                L->perm[L->swp[t]] = x;
        }
        L->n_sup = S;
}

/* The weights of the rows in example e's query, in query order: E rows,
 * then U rows. A row may appear twice (two features hashed to one row, an
 * item among the recent ones): its parts are summed where they are used
 * (the Gram's dense weights, the accumulator row), which is the same sum
 * as one merged weight up to float rounding. Sorting to merge them was a
 * mispredicted branch per coefficient, for duplicates that are rare. */
static size_t build_coef(const struct veil_learner *L,
                         const struct veil_example *e, struct coef *c) {
        size_t n = 0;
        for (size_t i = 0; i < e->n_feat; i++)
                c[n++] = (struct coef){0,
                                       (uint32_t)(e->feat[i] < L->space
                                                          ? e->feat[i]
                                                          : e->feat[i] %
                                                                    L->space),
                                       1.0f};
        if (e->item >= 0)
                c[n++] = (struct coef){1, (uint32_t)e->item, 1.0f};
        float wr = e->n_recent ? L->cfg.alpha / (float)e->n_recent : 0.0f;
        for (size_t i = 0; i < e->n_recent; i++)
                c[n++] = (struct coef){1, (uint32_t)e->recent[i], wr};
        return n;
}

/* The compact accumulator row of a table row: listed and zeroed the first
 * time a step touches it. Returns its position in the list. */
static inline size_t touch(void *acc, uint64_t *mark, uint32_t *rows,
                           size_t *n, uint32_t stamp, uint32_t row,
                           size_t row_bytes) {
        uint64_t x = mark[row];
        if ((uint32_t)(x >> 32) == stamp)
                return (size_t)(uint32_t)x;
        size_t i = (*n)++;
        mark[row] = (uint64_t)stamp << 32 | i;
        rows[i] = row;
        memset((char *)acc + i * row_bytes, 0, row_bytes);
        return i;
}

void veil_grad_densify(struct veil_grad *g) {
        /* Rows never touched by this step may hold an old step's values:
         * the marks are not visible here, so zero every row that is not
         * listed (lists are short, rows many: mark them on the side). */
        size_t maxr = g->items > g->space ? g->items : g->space;
        unsigned char *listed = calloc(maxr ? maxr : 1, 1);
        if (!listed)
                return;
        for (size_t i = 0; i < g->n_v; i++)
                listed[g->v_rows[i]] = 1;
        for (size_t r = 0; r < g->items; r++)
                if (!listed[r]) {
                        memset(g->V + r * g->d, 0, g->d * sizeof(float));
                        g->b[r] = 0;
                }
        memset(listed, 0, maxr);
        for (size_t i = 0; i < g->n_u; i++)
                listed[g->u_rows[i]] = 1;
        for (size_t r = 0; r < g->items; r++)
                if (!listed[r])
                        memset(g->U + r * g->d, 0, g->d * sizeof(float));
        memset(listed, 0, maxr);
        for (size_t i = 0; i < g->n_e; i++)
                listed[g->e_rows[i]] = 1;
        for (size_t r = 0; r < g->space; r++)
                if (!listed[r])
                        memset(g->E + r * g->d, 0, g->d * sizeof(float));
        free(listed);
}

/* Vector code for the machine it runs on (AVX2 where there is one, chosen
 * at load time), for the loops that run over every coordinate touched. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* y += a·x: rows of d coordinates, in the chain's innermost loops (every
 * coefficient of every example). Product and sum rounded apart, as the
 * plain loop does: neither clone has FMA. */
VECTOR_CLONES
static void axpy(float *y, float a, const float *x, size_t n) {
        for (size_t i = 0; i < n; i++)
                y[i] += a * x[i];
}

#if defined(__x86_64__) && defined(__GNUC__)
/* axpy into n rows (distinct) from one x, x held in registers 64
 * coordinates at a time: an example's coefficients all take its g. */
__attribute__((target("avx2"))) static void
axpy_rows_avx2(float *const *ys, const float *ws, size_t n, const float *x,
               size_t d) {
        for (size_t k0 = 0; k0 < d; k0 += 64) {
                size_t nc = (d - k0) / 8 < 8 ? (d - k0) / 8 : 8;
                __m256 xv[8];
                for (size_t c = 0; c < nc; c++)
                        xv[c] = _mm256_loadu_ps(x + k0 + 8 * c);
                for (size_t r = 0; r < n; r++) {
                        float *y = ys[r] + k0;
                        __m256 w = _mm256_set1_ps(ws[r]);
                        for (size_t c = 0; c < nc; c++)
                                _mm256_storeu_ps(
                                        y + 8 * c,
                                        _mm256_add_ps(
                                                _mm256_loadu_ps(y + 8 * c),
                                                _mm256_mul_ps(w, xv[c])));
                }
        }
}
#endif

static void axpy_rows(float *const *ys, const float *ws, size_t n,
                      const float *x, size_t d) {
#if defined(__x86_64__) && defined(__GNUC__)
        static int avx2 = -1;
        if (avx2 < 0)
                avx2 = __builtin_cpu_supports("avx2");
        if (avx2 && d % 8 == 0) {
                axpy_rows_avx2(ys, ws, n, x, d);
                return;
        }
#endif
        for (size_t r = 0; r < n; r++)
                axpy(ys[r], ws[r], x, d);
}

VECTOR_CLONES
static void adagrad(float *w, float *a, const float *g, size_t n, float lr) {
        for (size_t i = 0; i < n; i++) {
                a[i] += g[i] * g[i];
                w[i] -= lr * g[i] / (sqrtf(a[i]) + 1e-8f);
        }
}

/* ---- 1. per-example gradients, factored --------------------------- */

/* e^x for x <= 0 (the softmax, after the max is subtracted), to ~2e-7
 * relative: 2^k from the exponent bits, 2^r from its Taylor polynomial on
 * [-1/2, 1/2]. Branch-free, so the softmax loop vectorizes (libm's expf
 * does not). */
static inline float exp_nonpos(float x) {
        x = x > -87.0f ? x : -87.0f;
        float t = x * 1.44269504088896341f;
        float k = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
        float r = t - k;
        float p = 1.0f +
                  r * (0.693147181f +
                       r * (0.240226507f +
                            r * (0.0555041087f +
                                 r * (0.00961812911f +
                                      r * (0.00133335581f +
                                           r * 0.000154035304f)))));
        int32_t bits = ((int32_t)k + 127) * (1 << 23);
        float scale;
        memcpy(&scale, &bits, sizeof(scale));
        return p * scale;
}

/* The bias added to a row of logits and the row's maximum from init, in
 * one pass. Eight running maxima (and sums below): independent chains
 * that vectorize, where one running value is a serial chain of n
 * dependent operations. */
static float bias_max_scalar(float *r, const float *b, size_t n,
                             float init) {
        float m[8] = {init, init, init, init, init, init, init, init};
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
                for (size_t j = 0; j < 8; j++) {
                        float x = r[i + j] + b[i + j];
                        r[i + j] = x;
                        m[j] = x > m[j] ? x : m[j];
                }
        for (; i < n; i++) {
                float x = r[i] + b[i];
                r[i] = x;
                m[0] = x > m[0] ? x : m[0];
        }
        for (size_t j = 1; j < 8; j++)
                m[0] = m[j] > m[0] ? m[j] : m[0];
        return m[0];
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same, the eight maxima one register (max(x, m) is x > m ? x : m,
 * NaN included); the compiler leaves the plain loop scalar. */
__attribute__((target("avx2"))) static float
bias_max_avx2(float *r, const float *b, size_t n, float init) {
        __m256 m = _mm256_set1_ps(init);
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
                __m256 x = _mm256_add_ps(_mm256_loadu_ps(r + i),
                                         _mm256_loadu_ps(b + i));
                _mm256_storeu_ps(r + i, x);
                m = _mm256_max_ps(x, m);
        }
        float l[8];
        _mm256_storeu_ps(l, m);
        for (; i < n; i++) {
                float x = r[i] + b[i];
                r[i] = x;
                l[0] = x > l[0] ? x : l[0];
        }
        for (size_t j = 1; j < 8; j++)
                l[0] = l[j] > l[0] ? l[j] : l[0];
        return l[0];
}
#endif

static float bias_max(float *r, const float *b, size_t n, float init) {
#if defined(__x86_64__) && defined(__GNUC__)
        static int avx2 = -1;
        if (avx2 < 0)
                avx2 = __builtin_cpu_supports("avx2");
        if (avx2)
                return bias_max_avx2(r, b, n, init);
#endif
        return bias_max_scalar(r, b, n, init);
}

/* e^(r - mx) in place and the sum of the results (eight lanes, then a
 * fixed tree), in one pass. */
VECTOR_CLONES
static float exp_sum(float *r, size_t n, float mx) {
        float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
                for (size_t j = 0; j < 8; j++) {
                        float x = exp_nonpos(r[i + j] - mx);
                        r[i + j] = x;
                        m[j] += x;
                }
        for (; i < n; i++) {
                r[i] = exp_nonpos(r[i] - mx);
                m[0] += r[i];
        }
        return ((m[0] + m[1]) + (m[2] + m[3])) + ((m[4] + m[5]) + (m[6] + m[7]));
}

/* Four dot products in double at once: four independent chains, each a
 * running sum in index order (one chain alone waits on every add). */
static void dot4(const float *const *a, const float *const *b, size_t n,
                 double *out) {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t k = 0; k < n; k++) {
                s0 += (double)a[0][k] * b[0][k];
                s1 += (double)a[1][k] * b[1][k];
                s2 += (double)a[2][k] * b[2][k];
                s3 += (double)a[3][k] * b[3][k];
        }
        out[0] = s0;
        out[1] = s1;
        out[2] = s2;
        out[3] = s3;
}

static double forward(struct veil_learner *L, const struct veil_model *m,
                      const struct veil_example *ex, size_t n_ex) {
        size_t d = L->d, S = L->n_sup, ldr = L->cfg.negatives;
        float *Q = L->Q, *R = L->R;
        for (size_t i = 0; i < n_ex; i++) {
                const struct veil_example *e = &ex[L->order[i]];
                veil_model_query(m, e->feat, e->n_feat, e->item, e->recent,
                                 e->n_recent, L->cfg.alpha, Q + i * d);
        }
        /* Targets outside the support: their logit q·v (in rpos until
         * the row below replaces it), four at a time. */
        const float *qa[4], *va[4];
        size_t at[4], na = 0;
        for (size_t i = 0; i <= n_ex; i++) {
                if (i < n_ex) {
                        uint32_t t = (uint32_t)ex[L->order[i]].target;
                        int in = L->colmark[t] == L->stamp;
                        L->pos_col[i] = in ? (int32_t)L->col[t] : -1;
                        if (in)
                                continue;
                        qa[na] = Q + i * d;
                        va[na] = m->V + (size_t)t * d;
                        at[na++] = i;
                }
                if (na == 4 || (i == n_ex && na)) {
                        double o[4];
                        for (size_t k = na; k < 4; k++) {
                                qa[k] = qa[0];
                                va[k] = va[0];
                        }
                        dot4(qa, va, d, o);
                        for (size_t k = 0; k < na; k++)
                                L->rpos[at[k]] = (float)o[k];
                        na = 0;
                }
        }
        /* Logits over the support, then the bias: one call of the same
         * shape per example, never one sgemm over the batch. OpenBLAS
         * picks its kernel by the call's shape, and kernels round
         * differently (with d = 64 and 256 support items, an sgemm of
         * up to 4 rows gives other last bits than one of 5 or more; the
         * bound moves with the shape), so a batch's size would reach
         * into every example's contribution: one person's events, by
         * moving batch edges, would change the bits of others', also in
         * steps that charge that person nothing (test_dp_model
         * test_contribution_batch_invariant). */
        for (size_t i = 0; i < n_ex; i++)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)S, (int)d,
                            1.0f, L->VS, (int)d, Q + i * d, 1, 0.0f,
                            R + i * ldr, 1);
        double loss = 0;
        for (size_t i = 0; i < n_ex; i++) {
                const struct veil_example *e = &ex[L->order[i]];
                float *r = R + i * ldr;
                uint32_t t = (uint32_t)e->target;
                int in = L->pos_col[i] >= 0;
                float lpos = in ? r[L->col[t]] + L->bS[L->col[t]]
                                : L->rpos[i] + m->b[t];
                float mx = bias_max(r, L->bS, S, lpos);
                double epos = in ? 0.0 : exp((double)(lpos - mx));
                double sum = epos + exp_sum(r, S, mx);
                float inv = (float)(1.0 / sum);
                for (size_t j = 0; j < S; j++)
                        r[j] *= inv;
                /* R = P − Y: the target's coordinate loses 1. */
                if (in) {
                        loss -= log((double)r[L->col[t]] + 1e-30);
                        r[L->col[t]] -= 1.0f;
                        L->rpos[i] = 0.0f;
                } else {
                        double p = epos / sum;
                        loss -= log(p + 1e-30);
                        L->rpos[i] = (float)(p - 1.0);
                }
        }
        /* g_e = Vᵀ r_e: the gradient of the loss at the query (one call
         * per example, as above). */
        for (size_t i = 0; i < n_ex; i++)
                cblas_sgemv(CblasRowMajor, CblasTrans, (int)S, (int)d, 1.0f,
                            L->VS, (int)d, R + i * ldr, 1, 0.0f, L->G + i * d,
                            1);
        for (size_t i = 0; i < n_ex; i++) {
                if (L->pos_col[i] >= 0)
                        continue;
                const float *v = m->V + (size_t)ex[L->order[i]].target * d;
                axpy(L->G + i * d, L->rpos[i], v, d);
        }
        return loss;
}

/* ---- 2. per-user norms (Gram identity) and clipping ---------------- */

/* Gram matrix X_g X_gᵀ of m consecutive rows: one small sgemm. */
static void gram(const float *x, size_t m, size_t k, size_t ld, float *out) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)m,
                    (int)k, 1.0f, x, (int)ld, x, (int)ld, 0.0f, out, (int)m);
}

/* The weights of a user's m examples on the E and U rows they touch, as a
 * dense m × (distinct rows) matrix: a_e·a_e' becomes one more Gram. */
static int dense_weights(struct veil_learner *L, size_t s, size_t m,
                         size_t *n_cols) {
        if (!++L->col_stamp) {
                memset(L->col_of, 0,
                       (L->space + L->cap_items) * sizeof(uint64_t));
                L->col_stamp = 1;
        }
        /* The rows' words are scattered over the tables: all asked for
         * first, so that their misses overlap. */
        for (size_t c = L->coef_off[s]; c < L->coef_off[s + m]; c++)
                __builtin_prefetch(L->col_of + (L->coef[c].table
                                                        ? L->space +
                                                                  L->coef[c].row
                                                        : L->coef[c].row),
                                   1);
        size_t nc = 0;
        for (size_t c = L->coef_off[s]; c < L->coef_off[s + m]; c++) {
                size_t key = L->coef[c].table ? L->space + L->coef[c].row
                                              : L->coef[c].row;
                if ((uint32_t)(L->col_of[key] >> 32) != L->col_stamp)
                        L->col_of[key] = (uint64_t)L->col_stamp << 32 | nc++;
        }
        if (reserve_floats(&L->A, &L->cap_A, m * nc, 2 * m * nc))
                return -VEIL_ENOMEM;
        if (nc) /* none: examples without context features or recent
                 * items (a pipeline without context); L->A may be NULL */
                memset(L->A, 0, m * nc * sizeof(float));
        for (size_t i = 0; i < m; i++)
                for (size_t c = L->coef_off[s + i]; c < L->coef_off[s + i + 1];
                     c++) {
                        size_t key = L->coef[c].table
                                             ? L->space + L->coef[c].row
                                             : L->coef[c].row;
                        L->A[i * nc + (uint32_t)L->col_of[key]] +=
                                L->coef[c].w;
                }
        *n_cols = nc;
        return 0;
}

static int clip(struct veil_learner *L, const struct veil_example *ex,
                size_t n_users, size_t *n_clipped) {
        size_t d = L->d, ldr = L->cfg.negatives, clipped = 0;
        for (size_t u = 0; u < n_users; u++) {
                size_t s = L->ustart[u], e = L->ustart[u + 1], m = e - s;
                L->norms[u] = 0.0f;
                L->scales[u] = 1.0f;
                if (!m)
                        continue;
                if (reserve_floats(&L->gram, &L->cap_gram, 4 * m * m,
                                   4 * m * m))
                        return -VEIL_ENOMEM;
                float *rr = L->gram, *qq = rr + m * m, *gg = qq + m * m,
                      *aa = gg + m * m;
                size_t nc;
                if (dense_weights(L, s, m, &nc))
                        return -VEIL_ENOMEM;
                /* A user's examples are consecutive rows of R, Q and G. */
                gram(L->R + s * ldr, m, L->n_sup, ldr, rr);
                gram(L->Q + s * d, m, d, d, qq);
                gram(L->G + s * d, m, d, d, gg);
                /* No E or U rows: nothing there (an sgemm of inner size
                 * 0 and leading dimension 0 is not one to rely on). */
                if (nc)
                        gram(L->A, m, nc, nc, aa);
                else
                        memset(aa, 0, m * m * sizeof(float));
                /* ‖user's gradient‖² = Σ_{e,e'} over its parts:
                 *   V: (r·r')(q·q')   b: r·r'   E, U rows: (a·a')(g·g') */
                double n2 = 0;
                for (size_t i = 0; i < m; i++) {
                        for (size_t j = 0; j < m; j++) {
                                double r2 = rr[i * m + j];
                                /* Targets outside the support are a
                                 * coordinate of their own, shared only by
                                 * equal targets. */
                                if (L->pos_col[s + i] < 0 &&
                                    L->pos_col[s + j] < 0 &&
                                    ex[L->order[s + i]].target ==
                                            ex[L->order[s + j]].target)
                                        r2 += (double)L->rpos[s + i] *
                                              L->rpos[s + j];
                                n2 += L->cfg.bias_only
                                              ? r2
                                              : r2 * ((double)qq[i * m + j] +
                                                      1.0) +
                                                        (double)aa[i * m + j] *
                                                                gg[i * m + j];
                        }
                }
                double norm = sqrt(n2 > 0 ? n2 : 0);
                /* With double sums (DP), aim under C by the rounding bound
                 * of the norm: float dot products of S, d and nc positive
                 * terms, each within γ_k ≈ k·2⁻²⁴ relative, then the float
                 * scaling; doubled for margin. So the contribution as
                 * summed has norm ≤ C when it is one example (a person's
                 * one event of a step on the clock); several examples of
                 * one person could cancel, which no such bound covers. */
                double lim = L->cfg.clip;
                if (double_sums(L))
                        lim /= 1.0 + ldexp((double)(L->n_sup + 2 * d + nc +
                                                    8),
                                           -23);
                float c = norm > lim ? (float)(lim / norm) : 1.0f;
                L->norms[u] = (float)norm;
                L->scales[u] = c;
                if (c == 1.0f)
                        continue;
                clipped++;
                /* Every part of the user's gradient is linear in their rows
                 * of R: scaling those rows scales the whole contribution. */
                for (size_t i = s; i < e; i++) {
                        float *r = L->R + i * ldr, *g = L->G + i * d;
                        for (size_t j = 0; j < L->n_sup; j++)
                                r[j] *= c;
                        for (size_t k = 0; k < d; k++)
                                g[k] *= c;
                        L->rpos[i] *= c;
                }
        }
        *n_clipped = clipped;
        return 0;
}

/* ---- 3. the sum over users ---------------------------------------- */

/* Rows (every cache line) asked for ahead of their use: parameter and
 * accumulator rows are scattered over tables of megabytes, and a row met
 * for the first time in a while is a cache miss per line. */
static inline void prefetch_row(const float *r, size_t d) {
        for (size_t k = 0; k < d; k += 16)
                __builtin_prefetch(r + k, 1);
}

static inline void prefetch_row_read(const float *r, size_t d) {
        for (size_t k = 0; k < d; k += 16)
                __builtin_prefetch(r + k);
}

/* Rows of a list asked for this many rows before their turn. */
#define AHEAD 4

/* The marks of example i's coefficients' rows: with compact sums, the
 * one scattered read left per coefficient (the sums themselves are
 * consecutive rows, written in the order rows are first met). */
static void prefetch_coef_marks(const struct veil_learner *L, size_t i) {
        for (size_t c = L->coef_off[i]; c < L->coef_off[i + 1]; c++)
                __builtin_prefetch((L->coef[c].table ? L->umark : L->emark) +
                                           L->coef[c].row,
                                   1);
}

/* y += a·x in double: each product of two floats is exact in double, so
 * only the additions round, at 2⁻⁵³. */
VECTOR_CLONES
static void axpy_d(double *y, float a, const float *x, size_t n) {
        for (size_t i = 0; i < n; i++)
                y[i] += (double)a * (double)x[i];
}

#if defined(__x86_64__) && defined(__GNUC__)
/* axpy_d into n rows from one x, x held in registers 32 coordinates at a
 * time (axpy_rows_avx2 in double). */
__attribute__((target("avx2"))) static void
axpy_rows_d_avx2(double *const *ys, const float *ws, size_t n,
                 const float *x, size_t d) {
        for (size_t k0 = 0; k0 < d; k0 += 32) {
                size_t nc = (d - k0) / 4 < 8 ? (d - k0) / 4 : 8;
                __m256d xv[8];
                for (size_t c = 0; c < nc; c++)
                        xv[c] = _mm256_cvtps_pd(_mm_loadu_ps(x + k0 + 4 * c));
                for (size_t r = 0; r < n; r++) {
                        double *y = ys[r] + k0;
                        __m256d w = _mm256_set1_pd((double)ws[r]);
                        for (size_t c = 0; c < nc; c++)
                                _mm256_storeu_pd(
                                        y + 4 * c,
                                        _mm256_add_pd(
                                                _mm256_loadu_pd(y + 4 * c),
                                                _mm256_mul_pd(w, xv[c])));
                }
        }
}
#endif

static void axpy_rows_d(double *const *ys, const float *ws, size_t n,
                        const float *x, size_t d) {
#if defined(__x86_64__) && defined(__GNUC__)
        static int avx2 = -1;
        if (avx2 < 0)
                avx2 = __builtin_cpu_supports("avx2");
        if (avx2 && d % 4 == 0) {
                axpy_rows_d_avx2(ys, ws, n, x, d);
                return;
        }
#endif
        for (size_t r = 0; r < n; r++)
                axpy_d(ys[r], ws[r], x, d);
}

/* The sums into the compact accumulators (the dense ones of g are left
 * alone: scatter fills them for a hook). Each row's sum is the same
 * sequence of operations from zero as it would be in place. With
 * double_sums the same rows are listed in the same order, and the sums
 * are in double (dV, db, dU, dE) instead of float. */
static void sum(struct veil_learner *L, const struct veil_example *ex,
                size_t n_ex) {
        size_t d = L->d, S = L->n_sup, ldr = L->cfg.negatives;
        struct veil_grad *g = &L->g;
        int dbl = double_sums(L);
        size_t es = dbl ? sizeof(double) : sizeof(float);
        void *aV = dbl ? (void *)L->dV : (void *)L->cV,
             *aU = dbl ? (void *)L->dU : (void *)L->cU,
             *aE = dbl ? (void *)L->dE : (void *)L->cE;
        g->n_v = g->n_u = g->n_e = 0;
        g->dense = 0;
        L->gstamp++;
        if (!L->gstamp) { /* wrapped: old marks could collide */
                memset(L->vmark, 0, L->cap_items * sizeof(uint64_t));
                memset(L->umark, 0, L->cap_items * sizeof(uint64_t));
                memset(L->emark, 0, L->space * sizeof(uint64_t));
                L->gstamp = 1;
        }
        /* V rows of the support: Rᵀ · Q, one sgemm (dgemm), into the first
         * S compact rows; b: the column sums of R. */
        if (dbl) {
                for (size_t i = 0; i < n_ex; i++) {
                        const float *r = L->R + i * ldr, *q = L->Q + i * d;
                        double *rd = L->Rd + i * ldr, *qd = L->Qd + i * d;
                        for (size_t j = 0; j < S; j++)
                                rd[j] = r[j];
                        for (size_t k = 0; k < d; k++)
                                qd[k] = q[k];
                }
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S,
                            (int)d, (int)n_ex, 1.0, L->Rd, (int)ldr, L->Qd,
                            (int)d, 0.0, L->dV, (int)d);
                memset(L->db, 0, S * sizeof(double));
                for (size_t i = 0; i < n_ex; i++) {
                        const double *r = L->Rd + i * ldr;
                        for (size_t j = 0; j < S; j++)
                                L->db[j] += r[j];
                }
        } else {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S,
                            (int)d, (int)n_ex, 1.0f, L->R, (int)ldr, L->Q,
                            (int)d, 0.0f, L->cV, (int)d);
                memset(L->cb, 0, S * sizeof(float));
                for (size_t i = 0; i < n_ex; i++) {
                        const float *r = L->R + i * ldr;
                        for (size_t j = 0; j < S; j++)
                                L->cb[j] += r[j];
                }
        }
        /* List them. A support has distinct items; a forced one (tests)
         * may repeat one, whose later column then replaces the earlier,
         * and the rows after it move up to stay in list order. */
        for (size_t j = 0; j < S; j++) {
                uint32_t row = L->sup[j];
                uint64_t x = L->vmark[row];
                size_t at = (uint32_t)(x >> 32) == L->gstamp
                                    ? (size_t)(uint32_t)x
                                    : g->n_v;
                if (at == g->n_v) {
                        L->vmark[row] = (uint64_t)L->gstamp << 32 | at;
                        L->vrows[g->n_v++] = row;
                }
                if (at != j) {
                        memcpy((char *)aV + at * d * es,
                               (char *)aV + j * d * es, d * es);
                        if (dbl)
                                L->db[at] = L->db[j];
                        else
                                L->cb[at] = L->cb[j];
                }
        }
        for (size_t i = 0; i < n_ex; i++) {
                const struct veil_example *e = &ex[L->order[i]];
                const float *q = L->Q + i * d, *gi = L->G + i * d;
                if (i + 2 < n_ex)
                        prefetch_coef_marks(L, i + 2);
                if (L->pos_col[i] < 0) {
                        uint32_t row = (uint32_t)e->target;
                        size_t before = g->n_v;
                        size_t at = touch(aV, L->vmark, L->vrows, &g->n_v,
                                          L->gstamp, row, d * es);
                        if (dbl) {
                                if (g->n_v != before)
                                        L->db[at] = 0;
                                axpy_d(L->dV + at * d, L->rpos[i], q, d);
                                L->db[at] += L->rpos[i];
                        } else {
                                if (g->n_v != before)
                                        L->cb[at] = 0;
                                axpy(L->cV + at * d, L->rpos[i], q, d);
                                L->cb[at] += L->rpos[i];
                        }
                }
                float *ys[32], ws[32];
                double *yd[32];
                size_t ny = 0;
                for (size_t c = L->coef_off[i]; c < L->coef_off[i + 1]; c++) {
                        const struct coef *cf = &L->coef[c];
                        size_t at = cf->table == 0
                                            ? touch(aE, L->emark, L->erows,
                                                    &g->n_e, L->gstamp,
                                                    cf->row, d * es)
                                            : touch(aU, L->umark, L->urows,
                                                    &g->n_u, L->gstamp,
                                                    cf->row, d * es);
                        if (dbl)
                                yd[ny] = (cf->table == 0 ? L->dE : L->dU) +
                                         at * d;
                        else
                                ys[ny] = (cf->table == 0 ? L->cE : L->cU) +
                                         at * d;
                        ws[ny++] = cf->w;
                        if (ny == 32 || c + 1 == L->coef_off[i + 1]) {
                                if (dbl)
                                        axpy_rows_d(yd, ws, ny, gi, d);
                                else
                                        axpy_rows(ys, ws, ny, gi, d);
                                ny = 0;
                        }
                }
        }
        g->v_rows = L->vrows;
        g->u_rows = L->urows;
        g->e_rows = L->erows;
        g->sV = dbl ? L->dV : NULL;
        g->sb = dbl ? L->db : NULL;
        g->sU = dbl ? L->dU : NULL;
        g->sE = dbl ? L->dE : NULL;
}

/* The compact sums into the dense accumulators of g, for a noise hook
 * (listed rows only: the others keep stale values, as g says). Not with
 * double sums: the hook adds up those (g->sV…) instead. */
static void scatter(struct veil_learner *L) {
        struct veil_grad *g = &L->g;
        size_t d = L->d;
        if (g->sV)
                return;
        for (size_t i = 0; i < g->n_v; i++) {
                memcpy(g->V + (size_t)g->v_rows[i] * d, L->cV + i * d,
                       d * sizeof(float));
                g->b[g->v_rows[i]] = L->cb[i];
        }
        for (size_t i = 0; i < g->n_u; i++)
                memcpy(g->U + (size_t)g->u_rows[i] * d, L->cU + i * d,
                       d * sizeof(float));
        for (size_t i = 0; i < g->n_e; i++)
                memcpy(g->E + (size_t)g->e_rows[i] * d, L->cE + i * d,
                       d * sizeof(float));
}

/* ---- 5. apply ------------------------------------------------------ */

/* Adagrad on the listed rows of one table, the i-th from row i of the
 * compact sums c (stride cs) or, when cs is 0, from its own row of the
 * dense accumulator c. The parameter rows and their sums of squares are
 * asked for a few rows ahead: scattered rows, a miss per line otherwise. */
static void apply_rows(float *w, float *a, const float *c, size_t cs,
                       const uint32_t *rows, size_t n, size_t d, float lr) {
        for (size_t i = 0; i < n; i++) {
                size_t r = rows[i];
                if (i + AHEAD < n) {
                        size_t x = rows[i + AHEAD];
                        prefetch_row(w + x * d, d);
                        prefetch_row(a + x * d, d);
                }
                adagrad(w + r * d, a + r * d, c + (cs ? i * cs : r * d), d,
                        lr);
        }
}

static void apply(struct veil_learner *L, struct veil_model *m,
                  const struct veil_grad *g, size_t items) {
        size_t d = L->d;
        float lr = L->cfg.lr;
        if (g->dense) {
                adagrad(m->V, m->aV, g->V, items * d, lr);
                adagrad(m->b, m->ab, g->b, items, lr);
                adagrad(m->U, m->aU, g->U, items * d, lr);
                adagrad(m->E, m->aE, g->E, m->space * d, lr);
                return;
        }
        for (size_t i = 0; i < g->n_v; i++) {
                size_t r = g->v_rows[i];
                if (i + AHEAD < g->n_v) {
                        size_t a = g->v_rows[i + AHEAD];
                        prefetch_row(m->V + a * d, d);
                        prefetch_row(m->aV + a * d, d);
                }
                adagrad(m->V + r * d, m->aV + r * d, g->V + r * d, d, lr);
                adagrad(m->b + r, m->ab + r, g->b + r, 1, lr);
        }
        apply_rows(m->U, m->aU, g->U, 0, g->u_rows, g->n_u, d, lr);
        apply_rows(m->E, m->aE, g->E, 0, g->e_rows, g->n_e, d, lr);
}

/* The same, from the compact sums (no hook: g's dense rows unused). */
static void apply_compact(struct veil_learner *L, struct veil_model *m) {
        const struct veil_grad *g = &L->g;
        size_t d = L->d;
        float lr = L->cfg.lr;
        for (size_t i = 0; i < g->n_v; i++) {
                size_t r = g->v_rows[i];
                if (i + AHEAD < g->n_v) {
                        size_t a = g->v_rows[i + AHEAD];
                        prefetch_row(m->V + a * d, d);
                        prefetch_row(m->aV + a * d, d);
                }
                adagrad(m->V + r * d, m->aV + r * d, L->cV + i * d, d, lr);
                adagrad(m->b + r, m->ab + r, L->cb + i, 1, lr);
        }
        apply_rows(m->U, m->aU, L->cU, d, g->u_rows, g->n_u, d, lr);
        apply_rows(m->E, m->aE, L->cE, d, g->e_rows, g->n_e, d, lr);
}

void veil_learn_apply(struct veil_learner *L, struct veil_model *m,
                      const struct veil_grad *g) {
        apply(L, m, g, g->items);
        m->steps++;
}

/* ---- the step ------------------------------------------------------- */

int veil_learn_step(struct veil_learner *L, struct veil_model *m,
                    const struct veil_example *ex, size_t n, size_t n_users,
                    char *errstr, size_t errstr_size) {
        memset(&L->last, 0, sizeof(L->last));
        size_t items = veil_model_items(m);
        if (!n || !n_users || !items)
                return 0;
        size_t n_coef = 0;
        for (size_t i = 0; i < n; i++)
                n_coef += ex[i].n_feat + (ex[i].item >= 0) + ex[i].n_recent;
        if (reserve(L, n, n_users, n_coef))
                return -VEIL_ENOMEM;

        /* The per-user bound: at most max_user_examples events of a user,
         * the first ones in the batch, grouped by user (counting sort). */
        memset(L->ucount, 0, n_users * sizeof(uint32_t));
        for (size_t i = 0; i < n; i++)
                if (ex[i].user < n_users && ex[i].target >= 0 &&
                    (size_t)ex[i].target < items &&
                    L->ucount[ex[i].user] < L->cfg.max_user_examples)
                        L->ucount[ex[i].user]++;
        L->ustart[0] = 0;
        for (size_t u = 0; u < n_users; u++)
                L->ustart[u + 1] = L->ustart[u] + L->ucount[u];
        size_t n_ex = L->ustart[n_users];
        if (!n_ex)
                return 0;
        memset(L->ucount, 0, n_users * sizeof(uint32_t));
        for (size_t i = 0; i < n; i++) {
                uint32_t u = ex[i].user;
                if (u >= n_users || ex[i].target < 0 ||
                    (size_t)ex[i].target >= items ||
                    L->ustart[u] + L->ucount[u] >= L->ustart[u + 1])
                        continue;
                L->order[L->ustart[u] + L->ucount[u]++] = (uint32_t)i;
        }

        sample_support(L, items);
        L->stamp++;
        if (!L->stamp) {
                memset(L->colmark, 0, L->cap_items * sizeof(uint32_t));
                L->stamp = 1;
        }
        size_t d = L->d;
        for (size_t j = 0; j < L->n_sup; j++) {
                uint32_t it = L->sup[j];
                if (j + AHEAD < L->n_sup)
                        prefetch_row_read(m->V + (size_t)L->sup[j + AHEAD] * d,
                                          d);
                L->colmark[it] = L->stamp;
                L->col[it] = (uint32_t)j;
                memcpy(L->VS + j * d, m->V + (size_t)it * d,
                       d * sizeof(float));
                L->bS[j] = m->b[it];
        }
        L->coef_off[0] = 0;
        for (size_t i = 0; i < n_ex; i++) {
                const struct veil_example *e = &ex[L->order[i]];
                L->coef_off[i + 1] = L->coef_off[i] +
                                     build_coef(L, e,
                                                L->coef + L->coef_off[i]);
        }

        double loss = forward(L, m, ex, n_ex);   /* 1 */
        size_t clipped = 0;
        if (clip(L, ex, n_users, &clipped))      /* 2 */
                return -VEIL_ENOMEM;
        sum(L, ex, n_ex);                        /* 3 */
        L->g.items = items;
        L->g.n_users = 0;
        for (size_t u = 0; u < n_users; u++)
                L->g.n_users += L->ustart[u + 1] > L->ustart[u];
        if (L->hook) {                           /* 4 */
                scatter(L);
                int rc = L->hook(L->hook_ctx, &L->g, errstr, errstr_size);
                if (rc < 0)
                        return rc;
                if (!rc && L->g.sV) {
                        snprintf(errstr, errstr_size,
                                 "a hook given double sums must take them "
                                 "(return 1)");
                        return -VEIL_EINVAL;
                }
                if (!rc) {
                        apply(L, m, &L->g, items); /* 5 */
                        m->steps++;
                }
        } else {
                apply_compact(L, m);             /* 5 */
                m->steps++;
        }

        L->last.examples = n_ex;
        L->last.users = L->g.n_users;
        L->last.support = L->n_sup;
        L->last.loss = loss / (double)n_ex;
        L->last.clipped = clipped;
        return 0;
}

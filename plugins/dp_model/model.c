#include "model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VEIL_MODEL_X86 1
#endif

static uint64_t splitmix(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

double veil_model_uniform(uint64_t *state) {
        return (double)(splitmix(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform on [-a, a] has standard deviation a/√3. */
static void init_rows(float *x, size_t n, float scale, uint64_t *rng) {
        float a = scale * 1.7320508f;
        for (size_t i = 0; i < n; i++)
                x[i] = (float)((2.0 * veil_model_uniform(rng) - 1.0) * a);
}

static float *alloc_floats(size_t n) {
        void *p = NULL;
        /* 64-byte rows for the sgemm kernels and the vector loops. */
        if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)))
                return NULL;
        memset(p, 0, (n ? n : 1) * sizeof(float));
        return p;
}

void veil_model_free(struct veil_model *m) {
        if (!m)
                return;
        free(m->V);
        free(m->U);
        free(m->E);
        free(m->b);
        free(m->aV);
        free(m->aU);
        free(m->aE);
        free(m->ab);
        veil_catalog_free(m->cat);
        free(m);
}

int veil_model_new(struct veil_model **out, struct veil_catalog *cat,
                   size_t d, size_t space, float init_scale, uint64_t seed,
                   char *errstr, size_t errstr_size) {
        struct veil_model *m = calloc(1, sizeof(*m));
        if (!m) {
                veil_catalog_free(cat);
                return -VEIL_ENOMEM;
        }
        m->cat = cat;
        m->d = d;
        m->space = space;
        m->cap = cat->cap;
        m->init_scale = init_scale;
        m->rng = seed;
        size_t nv = m->cap * d, ne = space * d;
        m->V = alloc_floats(nv);
        m->U = alloc_floats(nv);
        m->E = alloc_floats(ne);
        m->b = alloc_floats(m->cap);
        m->aV = alloc_floats(nv);
        m->aU = alloc_floats(nv);
        m->aE = alloc_floats(ne);
        m->ab = alloc_floats(m->cap);
        if (!m->V || !m->U || !m->E || !m->b || !m->aV || !m->aU || !m->aE ||
            !m->ab) {
                snprintf(errstr, errstr_size,
                         "dp_model: out of memory for %zu items and %zu "
                         "features of dimension %zu",
                         m->cap, space, d);
                veil_model_free(m);
                return -VEIL_ENOMEM;
        }
        init_rows(m->V, cat->n * d, init_scale, &m->rng);
        init_rows(m->U, cat->n * d, init_scale, &m->rng);
        init_rows(m->E, ne, init_scale, &m->rng);
        *out = m;
        return 0;
}

int32_t veil_model_item(struct veil_model *m, const char *id, int add) {
        if (!add)
                return veil_catalog_find(m->cat, id);
        size_t before = m->cat->n;
        int32_t i = veil_catalog_intern(m->cat, id);
        if (i >= 0 && (size_t)i >= before) {
                init_rows(m->V + (size_t)i * m->d, m->d, m->init_scale,
                          &m->rng);
                init_rows(m->U + (size_t)i * m->d, m->d, m->init_scale,
                          &m->rng);
                m->b[i] = 0.0f;
        }
        return i;
}

void veil_model_prefetch(const struct veil_model *m, const uint32_t *feat,
                         size_t n_feat, int32_t item, const int32_t *recent,
                         size_t n_recent) {
        size_t d = m->d;
        for (size_t i = 0; i < n_feat; i++) {
                const float *r = m->E + veil_model_erow(m, feat[i]) * d;
                for (size_t k = 0; k < d; k += 16)
                        __builtin_prefetch(r + k);
        }
        for (size_t j = 0; j < n_recent + (item >= 0); j++) {
                const float *r =
                        m->U + (size_t)(j < n_recent ? recent[j] : item) * d;
                for (size_t k = 0; k < d; k += 16)
                        __builtin_prefetch(r + k);
        }
}

static void query_scalar(const struct veil_model *m, const uint32_t *feat,
                         size_t n_feat, int32_t item, const int32_t *recent,
                         size_t n_recent, float alpha, float *q) {
        size_t d = m->d;
        memset(q, 0, d * sizeof(float));
        for (size_t i = 0; i < n_feat; i++) {
                const float *e = m->E + veil_model_erow(m, feat[i]) * d;
                for (size_t k = 0; k < d; k++)
                        q[k] += e[k];
        }
        if (item >= 0) {
                const float *u = m->U + (size_t)item * d;
                for (size_t k = 0; k < d; k++)
                        q[k] += u[k];
        }
        if (n_recent) {
                float w = alpha / (float)n_recent;
                for (size_t j = 0; j < n_recent; j++) {
                        const float *u = m->U + (size_t)recent[j] * d;
                        for (size_t k = 0; k < d; k++)
                                q[k] += w * u[k];
                }
        }
}

#if VEIL_MODEL_X86
/* Adds a row (times w, when weighted) into the nc registers of a. */
__attribute__((target("avx2"), always_inline)) static inline void
acc_row(__m256 *a, size_t nc, const float *r, int weighted, __m256 w) {
        for (size_t c = 0; c < nc; c++) {
                __m256 x = _mm256_loadu_ps(r + 8 * c);
                a[c] = _mm256_add_ps(a[c], weighted ? _mm256_mul_ps(w, x) : x);
        }
}

/* The same sums in the same order, 64 coordinates at a time held in eight
 * registers: the scalar loop loads and stores q once per row, which was
 * most of a query's time (dozens of rows: features, recent items). No FMA
 * (the target has none): w·u is rounded before it is added, as above. */
__attribute__((target("avx2"))) static void
query_avx2(const struct veil_model *m, const uint32_t *feat, size_t n_feat,
           int32_t item, const int32_t *recent, size_t n_recent, float alpha,
           float *q) {
        size_t d = m->d;
        __m256 w = _mm256_set1_ps(n_recent ? alpha / (float)n_recent : 0.0f);
        for (size_t k0 = 0; k0 < d; k0 += 64) {
                size_t nc = (d - k0) / 8 < 8 ? (d - k0) / 8 : 8;
                __m256 a[8];
                for (size_t c = 0; c < 8; c++)
                        a[c] = _mm256_setzero_ps();
                for (size_t i = 0; i < n_feat; i++)
                        acc_row(a, nc,
                                m->E + veil_model_erow(m, feat[i]) * d + k0,
                                0, w);
                if (item >= 0)
                        acc_row(a, nc, m->U + (size_t)item * d + k0, 0, w);
                for (size_t j = 0; j < n_recent; j++)
                        acc_row(a, nc, m->U + (size_t)recent[j] * d + k0, 1,
                                w);
                for (size_t c = 0; c < nc; c++)
                        _mm256_storeu_ps(q + k0 + 8 * c, a[c]);
        }
}
#endif

void veil_model_query(const struct veil_model *m, const uint32_t *feat,
                      size_t n_feat, int32_t item, const int32_t *recent,
                      size_t n_recent, float alpha, float *q) {
#if VEIL_MODEL_X86
        static int avx2 = -1;
        if (avx2 < 0)
                avx2 = __builtin_cpu_supports("avx2");
        if (avx2 && m->d % 8 == 0) {
                query_avx2(m, feat, n_feat, item, recent, n_recent, alpha, q);
                return;
        }
#endif
        query_scalar(m, feat, n_feat, item, recent, n_recent, alpha, q);
}

void veil_model_score(const struct veil_model *m, const float *Q, size_t n,
                      size_t items, float *S, size_t ld_s) {
        if (!n || !items)
                return;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n,
                    (int)items, (int)m->d, 1.0f, Q, (int)m->d, m->V,
                    (int)m->d, 0.0f, S, (int)ld_s);
}

#include "topk.h"

#include <math.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TOPK_X86 1
#endif

/* Inserts (j, v) into the sorted list; equal scores keep the earlier
 * (lower) index first because j only grows. */
static void insert(uint32_t *idx, float *val, size_t *m, size_t k, uint32_t j,
                   float v) {
        size_t p = *m < k ? (*m)++ : k - 1;
        while (p > 0 && val[p - 1] < v) {
                val[p] = val[p - 1];
                idx[p] = idx[p - 1];
                p--;
        }
        val[p] = v;
        idx[p] = j;
}

/* One candidate: it must beat the current k-th (the list may have filled
 * since its block was tested) and not be excluded. */
static inline void consider(const float *s, const float *b,
                            const uint32_t *mark, uint32_t stamp, size_t k,
                            uint32_t *idx, float *val, size_t *m, size_t j) {
        float v = s[j] + b[j];
        if (*m == k && !(v > val[k - 1]))
                return;
        if (v != v || (mark && mark[j] == stamp))
                return; /* NaN, or excluded */
        insert(idx, val, m, k, (uint32_t)j, v);
}

struct scan {
        const float *s, *b;
        const uint32_t *mark;
        uint32_t stamp;
        size_t k;
        uint32_t *idx;
        float *val;
        size_t *m;
};

/* Items of [from, to) above the current k-th, by a vector test of blocks;
 * returns where it stopped (a block boundary). */
#if TOPK_X86
static size_t blocks_sse(const struct scan *c, size_t from, size_t to) {
        size_t j = from;
        for (; j + 16 <= to; j += 16) {
                const float *s = c->s + j, *b = c->b + j;
                __m128 t = _mm_set1_ps(c->val[c->k - 1]);
                __m128 x0 = _mm_add_ps(_mm_loadu_ps(s), _mm_loadu_ps(b));
                __m128 x1 = _mm_add_ps(_mm_loadu_ps(s + 4),
                                       _mm_loadu_ps(b + 4));
                __m128 x2 = _mm_add_ps(_mm_loadu_ps(s + 8),
                                       _mm_loadu_ps(b + 8));
                __m128 x3 = _mm_add_ps(_mm_loadu_ps(s + 12),
                                       _mm_loadu_ps(b + 12));
                __m128 mx = _mm_max_ps(_mm_max_ps(x0, x1), _mm_max_ps(x2, x3));
                if (!_mm_movemask_ps(_mm_cmpgt_ps(mx, t)))
                        continue;
                unsigned bits =
                        (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(x0, t)) |
                        (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(x1, t)) << 4 |
                        (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(x2, t)) << 8 |
                        (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(x3, t)) << 12;
                while (bits) {
                        unsigned q = (unsigned)__builtin_ctz(bits);
                        bits &= bits - 1;
                        consider(c->s, c->b, c->mark, c->stamp, c->k, c->idx,
                                 c->val, c->m, j + q);
                }
        }
        return j;
}

__attribute__((target("avx2"))) static size_t
blocks_avx2(const struct scan *c, size_t from, size_t to) {
        size_t j = from;
        for (; j + 32 <= to; j += 32) {
                const float *s = c->s + j, *b = c->b + j;
                __m256 t = _mm256_set1_ps(c->val[c->k - 1]);
                __m256 x0 = _mm256_add_ps(_mm256_loadu_ps(s),
                                          _mm256_loadu_ps(b));
                __m256 x1 = _mm256_add_ps(_mm256_loadu_ps(s + 8),
                                          _mm256_loadu_ps(b + 8));
                __m256 x2 = _mm256_add_ps(_mm256_loadu_ps(s + 16),
                                          _mm256_loadu_ps(b + 16));
                __m256 x3 = _mm256_add_ps(_mm256_loadu_ps(s + 24),
                                          _mm256_loadu_ps(b + 24));
                __m256 mx = _mm256_max_ps(_mm256_max_ps(x0, x1),
                                          _mm256_max_ps(x2, x3));
                if (!_mm256_movemask_ps(_mm256_cmp_ps(mx, t, _CMP_GT_OQ)))
                        continue;
                unsigned bits =
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(x0, t, _CMP_GT_OQ)) |
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(x1, t, _CMP_GT_OQ)) << 8 |
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(x2, t, _CMP_GT_OQ)) << 16 |
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(x3, t, _CMP_GT_OQ)) << 24;
                while (bits) {
                        unsigned q = (unsigned)__builtin_ctz(bits);
                        bits &= bits - 1;
                        consider(c->s, c->b, c->mark, c->stamp, c->k, c->idx,
                                 c->val, c->m, j + q);
                }
        }
        return j;
}
#endif

size_t veil_topk(const float *s, const float *b, size_t n,
                 const uint32_t *mark, uint32_t stamp, size_t k,
                 uint32_t *idx, float *val) {
        size_t m = 0, j = 0;
        if (!k)
                return 0;
        /* Fill the list with the first k eligible items. */
        for (; j < n && m < k; j++)
                consider(s, b, mark, stamp, k, idx, val, &m, j);
        /* Then blocks against the current k-th score: the maximum of a
         * block in vector registers decides whether any of it is looked at
         * (a handful of blocks per row: the threshold rises fast). */
#if TOPK_X86
        struct scan c = {s, b, mark, stamp, k, idx, val, &m};
        if (m == k) {
                if (__builtin_cpu_supports("avx2"))
                        j = blocks_avx2(&c, j, n);
                j = blocks_sse(&c, j, n);
        }
#endif
        for (; j < n; j++)
                consider(s, b, mark, stamp, k, idx, val, &m, j);
        return m;
}

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
        float v = b ? s[j] + b[j] : s[j];
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
/* Scores at s + i (plus the bias at b + i when there is one). */
#define LOAD4(s, b, i)                                                      \
        ((b) ? _mm_add_ps(_mm_loadu_ps((s) + (i)), _mm_loadu_ps((b) + (i))) \
             : _mm_loadu_ps((s) + (i)))
#define LOAD8(s, b, i)                                                      \
        ((b) ? _mm256_add_ps(_mm256_loadu_ps((s) + (i)),                   \
                             _mm256_loadu_ps((b) + (i)))                    \
             : _mm256_loadu_ps((s) + (i)))
#define LOAD16(s, b, i)                                                     \
        ((b) ? _mm512_add_ps(_mm512_loadu_ps((s) + (i)),                   \
                             _mm512_loadu_ps((b) + (i)))                    \
             : _mm512_loadu_ps((s) + (i)))
static size_t blocks_sse(const struct scan *c, size_t from, size_t to) {
        size_t j = from;
        for (; j + 16 <= to; j += 16) {
                const float *s = c->s + j, *b = c->b ? c->b + j : NULL;
                __m128 t = _mm_set1_ps(c->val[c->k - 1]);
                __m128 x0 = LOAD4(s, b, 0), x1 = LOAD4(s, b, 4),
                       x2 = LOAD4(s, b, 8), x3 = LOAD4(s, b, 12);
                /* The compares, not a maximum of the block: max(x, NaN)
                 * is NaN, which would hide x. */
                __m128 any = _mm_or_ps(
                        _mm_or_ps(_mm_cmpgt_ps(x0, t), _mm_cmpgt_ps(x1, t)),
                        _mm_or_ps(_mm_cmpgt_ps(x2, t), _mm_cmpgt_ps(x3, t)));
                if (!_mm_movemask_ps(any))
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
                const float *s = c->s + j, *b = c->b ? c->b + j : NULL;
                __m256 t = _mm256_set1_ps(c->val[c->k - 1]);
                __m256 x0 = LOAD8(s, b, 0), x1 = LOAD8(s, b, 8),
                       x2 = LOAD8(s, b, 16), x3 = LOAD8(s, b, 24);
                __m256 any = _mm256_or_ps(
                        _mm256_or_ps(_mm256_cmp_ps(x0, t, _CMP_GT_OQ),
                                     _mm256_cmp_ps(x1, t, _CMP_GT_OQ)),
                        _mm256_or_ps(_mm256_cmp_ps(x2, t, _CMP_GT_OQ),
                                     _mm256_cmp_ps(x3, t, _CMP_GT_OQ)));
                if (!_mm256_movemask_ps(any))
                        continue; /* as above: no maximum, NaN hides */
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

/* ---- two passes: a threshold, then the few items above it ------------
 *
 * Pass 1 keeps the running maximum of each of 32 classes of items (item j
 * in class j mod 32, one vector lane each): branch-free, one add and one
 * max per 8 or 16 items. If K' = k + SLACK of the 32 class maxima are ≥ t,
 * then at least K' items are ≥ t, so t bounds the k-th score from below
 * unless more than SLACK of those items are excluded — the end checks
 * that (fewer than k found: the one-pass scan below decides). A caller
 * that writes -inf over its excluded items' scores (dp_model does) never
 * gets there. The K'-th largest class maximum leaves about 13 of 3,665
 * random scores above it (k = 10). Pass 2 collects, in index order, the
 * items ≥ t; their top k by the same insertion (and so the same ties) is
 * the row's. The one-pass scan spends its time at the start of a row,
 * while its threshold is still low and most blocks have an item to
 * insert, one mispredicted branch each. */

#define CLASSES 32
#define SLACK 1
#define MAX_CAND 512

/* The candidates ranked by the scan's own insertion; 0 when fewer than k
 * of them are eligible (the caller scans the row instead). */
static size_t finish(const struct scan *c, const uint32_t *cand,
                     size_t n_cand) {
        for (size_t i = 0; i < n_cand; i++)
                consider(c->s, c->b, c->mark, c->stamp, c->k, c->idx, c->val,
                         c->m, cand[i]);
        return *c->m == c->k ? *c->m : 0;
}

#if TOPK_X86
/* Candidates ranked by counting, up to this many (two vector registers):
 * a row's scores are new data every time, and the insertion's branches
 * (is it in, where does it stop) were a misprediction per candidate or
 * two — half of a row's top-k, measured on fresh scores. */
#define RANK_MAX 32

/* finish, branch-free for a few candidates: the insertion keeps the first
 * k in the order (score descending, index ascending) — a later equal
 * score never passes an earlier one, nor enters a full list — so each
 * eligible candidate's place is the number of eligible ones before it in
 * that order (a permutation of 0..ne-1): the same list. */
__attribute__((target("avx512f,popcnt"))) static size_t
finish_avx512(const struct scan *c, const uint32_t *cand, size_t n_cand) {
        if (n_cand > RANK_MAX)
                return finish(c, cand, n_cand);
        float v[RANK_MAX] = {0}, tv[RANK_MAX];
        uint32_t id[RANK_MAX], ti[RANK_MAX];
        size_t ne = 0;
        for (size_t i = 0; i < n_cand; i++) {
                uint32_t j = cand[i];
                float x = c->b ? c->s[j] + c->b[j] : c->s[j];
                /* Not NaN, not excluded: kept by advancing ne. */
                int ok = (x == x) & !(c->mark && c->mark[j] == c->stamp);
                v[ne] = x;
                id[ne] = j;
                ne += (size_t)ok;
        }
        if (ne < c->k)
                return 0;
        __mmask16 ok0 = (__mmask16)(ne >= 16 ? 0xffff : (1u << ne) - 1);
        __mmask16 ok1 = (__mmask16)(ne <= 16   ? 0
                                    : ne >= 32 ? 0xffff
                                               : (1u << (ne - 16)) - 1);
        __m512 v0 = _mm512_maskz_loadu_ps(ok0, v);
        __m512 v1 = _mm512_maskz_loadu_ps(ok1, v + 16);
        for (size_t i = 0; i < ne; i++) {
                __m512 x = _mm512_set1_ps(v[i]);
                /* Before i in index order: lanes 0..i-1. */
                __mmask16 b0 = (__mmask16)(i >= 16 ? 0xffff
                                                   : (1u << i) - 1);
                __mmask16 b1 = (__mmask16)(i <= 16 ? 0
                                                   : (1u << (i - 16)) - 1);
                unsigned r0 = (unsigned)_mm512_mask_cmp_ps_mask(
                                      ok0, v0, x, _CMP_GT_OQ) |
                              (unsigned)_mm512_mask_cmp_ps_mask(
                                      ok0 & b0, v0, x, _CMP_EQ_OQ);
                unsigned r1 = (unsigned)_mm512_mask_cmp_ps_mask(
                                      ok1, v1, x, _CMP_GT_OQ) |
                              (unsigned)_mm512_mask_cmp_ps_mask(
                                      ok1 & b1, v1, x, _CMP_EQ_OQ);
                size_t r = (size_t)(__builtin_popcount(r0) +
                                    __builtin_popcount(r1));
                tv[r] = v[i];
                ti[r] = id[i];
        }
        for (size_t r = 0; r < c->k; r++) {
                c->idx[r] = ti[r];
                c->val[r] = tv[r];
        }
        *c->m = c->k;
        return c->k;
}

/* Blocks of 64 items whose maximum pass 1 keeps (one vector each, 16
 * lanes: the maximum of the block's items with j mod 16 equal) for pass
 * 2; rows past that many blocks test their later blocks item by item. */
#define BLK_MAX 192

/* One body for rows with and without a separate bias (b NULL: the
 * scores already hold it), inlined into each with b known. */
__attribute__((target("avx512f,popcnt"), always_inline)) static inline size_t
two_pass_avx512_body(const struct scan *c, size_t n, const float *b) {
        const float *s = c->s;
        __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
        /* Pass 1, 64 items at a time: the class maxima (j mod 32), and
         * each block's maximum, so that pass 2 reads again only the few
         * blocks that hold an item at or above t (re-reading the whole
         * row and its biases, which L1 barely holds, cost as much as
         * reading it the first time). */
        __m512 blk[BLK_MAX];
        const __m512 ninf = m0;
        size_t nb = n / 64 < BLK_MAX ? n / 64 : BLK_MAX;
        size_t j = 0;
        for (size_t q = 0; q < nb; q++, j += 64) {
                __m512 x0 = LOAD16(s, b, j), x1 = LOAD16(s, b, j + 16);
                __m512 x2 = LOAD16(s, b, j + 32), x3 = LOAD16(s, b, j + 48);
                /* max(x, y) is y where either is NaN: y = max(x2, -inf)
                 * is x2 without its NaNs, and every maximum below is of
                 * the block's numbers alone, as the plain loop's. */
                __m512 a = _mm512_max_ps(x0, _mm512_max_ps(x2, ninf));
                __m512 e = _mm512_max_ps(x1, _mm512_max_ps(x3, ninf));
                m0 = _mm512_max_ps(a, m0);
                m1 = _mm512_max_ps(e, m1);
                blk[q] = _mm512_max_ps(a, e);
        }
        for (; j + 32 <= n; j += 32) {
                __m512 x0 = LOAD16(s, b, j), x1 = LOAD16(s, b, j + 16);
                m0 = _mm512_max_ps(x0, m0); /* NaN: keeps m0 */
                m1 = _mm512_max_ps(x1, m1);
        }
        size_t tail = j;
        float cmax[CLASSES];
        _mm512_storeu_ps(cmax, m0);
        _mm512_storeu_ps(cmax + 16, m1);
        for (size_t i = tail; i < n; i++) {
                float v = b ? s[i] + b[i] : s[i];
                if (v > cmax[i - tail])
                        cmax[i - tail] = v;
        }
        m0 = _mm512_loadu_ps(cmax);
        m1 = _mm512_loadu_ps(cmax + 16);
        /* t: the largest class maximum that K' of them reach. Each
         * class's rank (how many maxima are at or above its own) counted
         * in lanes, one broadcast per class: no serial chain through a
         * popcount and a select per class. */
        __m512i r0 = _mm512_setzero_si512(), r1 = r0;
        const __m512i one = _mm512_set1_epi32(1);
        for (size_t i = 0; i < CLASSES; i++) {
                __m512 v = _mm512_set1_ps(cmax[i]);
                r0 = _mm512_mask_add_epi32(
                        r0, _mm512_cmp_ps_mask(v, m0, _CMP_GE_OQ), r0, one);
                r1 = _mm512_mask_add_epi32(
                        r1, _mm512_cmp_ps_mask(v, m1, _CMP_GE_OQ), r1, one);
        }
        const __m512i kk = _mm512_set1_epi32((int)(c->k + SLACK));
        __m512 q0 = _mm512_mask_mov_ps(
                ninf, _mm512_cmp_epi32_mask(r0, kk, _MM_CMPINT_NLT), m0);
        __m512 q1 = _mm512_mask_mov_ps(
                ninf, _mm512_cmp_epi32_mask(r1, kk, _MM_CMPINT_NLT), m1);
        float t = _mm512_reduce_max_ps(_mm512_max_ps(q0, q1));
        if (!(t > -INFINITY))
                return 0;
        /* Room for a whole word of candidates past MAX_CAND: a word's
         * are written before the count is checked. */
        uint32_t cand[MAX_CAND + 64];
        size_t nc = 0;
        __m512 vt = _mm512_set1_ps(t);
        const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                               10, 11, 12, 13, 14, 15);
        const __m512i sixteen = _mm512_set1_epi32(16);
        /* Only the few blocks with an item at or above t (a dozen of a
         * row's items are) are looked into — each block's items at or
         * above t compressed into the list in index order, with no
         * branch per item. */
        for (j = 0; j + 64 <= n; j += 64) {
                size_t q = j / 64;
                if (q < nb &&
                    !_mm512_cmp_ps_mask(blk[q], vt, _CMP_GE_OQ))
                        continue;
                __mmask16 k0 = _mm512_cmp_ps_mask(LOAD16(s, b, j), vt,
                                                  _CMP_GE_OQ);
                __mmask16 k1 = _mm512_cmp_ps_mask(LOAD16(s, b, j + 16), vt,
                                                  _CMP_GE_OQ);
                __mmask16 k2 = _mm512_cmp_ps_mask(LOAD16(s, b, j + 32), vt,
                                                  _CMP_GE_OQ);
                __mmask16 k3 = _mm512_cmp_ps_mask(LOAD16(s, b, j + 48), vt,
                                                  _CMP_GE_OQ);
                if (!(k0 | k1 | k2 | k3))
                        continue;
                __m512i at = _mm512_add_epi32(iota,
                                              _mm512_set1_epi32((int)j));
                _mm512_storeu_si512(cand + nc,
                                    _mm512_maskz_compress_epi32(k0, at));
                nc += (size_t)__builtin_popcount(k0);
                at = _mm512_add_epi32(at, sixteen);
                _mm512_storeu_si512(cand + nc,
                                    _mm512_maskz_compress_epi32(k1, at));
                nc += (size_t)__builtin_popcount(k1);
                at = _mm512_add_epi32(at, sixteen);
                _mm512_storeu_si512(cand + nc,
                                    _mm512_maskz_compress_epi32(k2, at));
                nc += (size_t)__builtin_popcount(k2);
                at = _mm512_add_epi32(at, sixteen);
                _mm512_storeu_si512(cand + nc,
                                    _mm512_maskz_compress_epi32(k3, at));
                nc += (size_t)__builtin_popcount(k3);
                if (nc > MAX_CAND)
                        return 0;
        }
        for (; j < n; j++)
                if ((b ? s[j] + b[j] : s[j]) >= t) {
                        if (nc == MAX_CAND)
                                return 0;
                        cand[nc++] = (uint32_t)j;
                }
        return finish_avx512(c, cand, nc);
}

__attribute__((target("avx2,popcnt"), always_inline)) static inline size_t
two_pass_avx2_body(const struct scan *c, size_t n, const float *b) {
        const float *s = c->s;
        __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        size_t j = 0;
        for (; j + 32 <= n; j += 32) {
                m0 = _mm256_max_ps(LOAD8(s, b, j), m0);
                m1 = _mm256_max_ps(LOAD8(s, b, j + 8), m1);
                m2 = _mm256_max_ps(LOAD8(s, b, j + 16), m2);
                m3 = _mm256_max_ps(LOAD8(s, b, j + 24), m3);
        }
        size_t tail = j;
        float cmax[CLASSES];
        _mm256_storeu_ps(cmax, m0);
        _mm256_storeu_ps(cmax + 8, m1);
        _mm256_storeu_ps(cmax + 16, m2);
        _mm256_storeu_ps(cmax + 24, m3);
        for (size_t i = tail; i < n; i++) {
                float v = b ? s[i] + b[i] : s[i];
                if (v > cmax[i - tail])
                        cmax[i - tail] = v;
        }
        m0 = _mm256_loadu_ps(cmax);
        m1 = _mm256_loadu_ps(cmax + 8);
        m2 = _mm256_loadu_ps(cmax + 16);
        m3 = _mm256_loadu_ps(cmax + 24);
        /* t: the largest class maximum that K' of them reach. */
        float t = -INFINITY;
        for (size_t i = 0; i < CLASSES; i++) {
                __m256 v = _mm256_set1_ps(cmax[i]);
                unsigned ge =
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(m0, v, _CMP_GE_OQ)) |
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(m1, v, _CMP_GE_OQ)) << 8 |
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(m2, v, _CMP_GE_OQ)) << 16 |
                        (unsigned)_mm256_movemask_ps(
                                _mm256_cmp_ps(m3, v, _CMP_GE_OQ)) << 24;
                if ((size_t)__builtin_popcount(ge) >= c->k + SLACK &&
                    cmax[i] > t)
                        t = cmax[i];
        }
        if (!(t > -INFINITY))
                return 0;
        uint32_t cand[MAX_CAND];
        size_t nc = 0;
        __m256 vt = _mm256_set1_ps(t);
        for (j = 0; j + 8 <= n; j += 8) {
                unsigned bits = (unsigned)_mm256_movemask_ps(
                        _mm256_cmp_ps(LOAD8(s, b, j), vt, _CMP_GE_OQ));
                if (!bits)
                        continue;
                if (nc + 8 > MAX_CAND)
                        return 0;
                while (bits) {
                        cand[nc++] = (uint32_t)(j + (size_t)__builtin_ctz(bits));
                        bits &= bits - 1;
                }
        }
        for (; j < n; j++)
                if ((b ? s[j] + b[j] : s[j]) >= t) {
                        if (nc == MAX_CAND)
                                return 0;
                        cand[nc++] = (uint32_t)j;
                }
        return finish(c, cand, nc);
}

__attribute__((target("avx512f,popcnt"))) static size_t
two_pass_avx512(const struct scan *c, size_t n) {
        return c->b ? two_pass_avx512_body(c, n, c->b)
                    : two_pass_avx512_body(c, n, NULL);
}

__attribute__((target("avx2,popcnt"))) static size_t
two_pass_avx2(const struct scan *c, size_t n) {
        return c->b ? two_pass_avx2_body(c, n, c->b)
                    : two_pass_avx2_body(c, n, NULL);
}

static int forced = -1;

static int cpu_level(void) {
        static int level = -1;
        if (level < 0)
                level = __builtin_cpu_supports("avx512f")  ? 2
                        : __builtin_cpu_supports("avx2") ? 1
                                                          : 0;
        return forced >= 0 && forced < level ? forced : level;
}
#endif

void veil_topk_force_isa(int level) {
#if TOPK_X86
        forced = level;
#else
        (void)level;
#endif
}

size_t veil_topk(const float *s, const float *b, size_t n,
                 const uint32_t *mark, uint32_t stamp, size_t k,
                 uint32_t *idx, float *val) {
        size_t m = 0, j = 0;
        if (!k)
                return 0;
#if TOPK_X86
        struct scan c = {s, b, mark, stamp, k, idx, val, &m};
        /* Two passes where the classes hold enough items for the bound to
         * be tight (16 or more each) and k + SLACK of them exist. */
        int level = cpu_level();
        if (level && k + SLACK <= CLASSES && n >= 16 * CLASSES) {
                size_t got = level == 2 ? two_pass_avx512(&c, n)
                                        : two_pass_avx2(&c, n);
                if (got)
                        return got;
                m = 0;
        }
#endif
        /* Fill the list with the first k eligible items. */
        for (; j < n && m < k; j++)
                consider(s, b, mark, stamp, k, idx, val, &m, j);
        /* Then blocks against the current k-th score: the maximum of a
         * block in vector registers decides whether any of it is looked at
         * (a handful of blocks per row: the threshold rises fast). */
#if TOPK_X86
        if (m == k) {
                if (level)
                        j = blocks_avx2(&c, j, n);
                j = blocks_sse(&c, j, n);
        }
#endif
        for (; j < n; j++)
                consider(s, b, mark, stamp, k, idx, val, &m, j);
        return m;
}

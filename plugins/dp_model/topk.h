/*
 * topk.h — the k best items of one score row, by partial selection.
 *
 * score[j] = s[j] + b[j] (the bias is added here rather than in a pass of
 * its own over the n × items matrix), or s[j] when b is NULL (scores that
 * hold their bias already). Excluded items
 * (mark[j] == stamp: the item in hand, the user's recent ones) never
 * appear. Ties go to the lower index, so the order is reproducible.
 *
 * Two passes where the CPU has AVX2 or AVX-512 (topk.c): the maxima of
 * 32 classes of items give a threshold that at least k + 1 items reach,
 * then the few items at or above it are ranked. Elsewhere, and when that
 * bound fails (excluded items among the best), one pass: blocks compared
 * with the current k-th score, only the items above it looked at one by
 * one. A caller that writes -inf over its excluded items' scores keeps
 * them out of the threshold.
 */
#ifndef VEIL_DP_MODEL_TOPK_H
#define VEIL_DP_MODEL_TOPK_H

#include <stddef.h>
#include <stdint.h>

/** Writes up to k (index, score) pairs, best first; returns how many.
 *  `b` may be NULL (no bias to add), `mark` NULL (nothing excluded). */
size_t veil_topk(const float *s, const float *b, size_t n,
                 const uint32_t *mark, uint32_t stamp, size_t k,
                 uint32_t *idx, float *val);

/** Tests: use at most this vector level (0 plain, 1 AVX2, 2 AVX-512;
 *  never more than the CPU has); -1 the best the CPU has. */
void veil_topk_force_isa(int level);

#endif

/*
 * topk.h — the k best items of one score row, by partial selection.
 *
 * score[j] = s[j] + b[j] (the bias is added here rather than in a pass of
 * its own over the n × items matrix). Excluded items (mark[j] == stamp: the
 * item in hand, the user's recent ones) never appear. Ties go to the lower
 * index, so the order is reproducible. Once k items are in, blocks of 16
 * are compared with the current k-th score in vector registers and only
 * the items above it are looked at one by one.
 */
#ifndef VEIL_DP_MODEL_TOPK_H
#define VEIL_DP_MODEL_TOPK_H

#include <stddef.h>
#include <stdint.h>

/** Writes up to k (index, score) pairs, best first; returns how many.
 *  `mark` may be NULL (nothing excluded). */
size_t veil_topk(const float *s, const float *b, size_t n,
                 const uint32_t *mark, uint32_t stamp, size_t k,
                 uint32_t *idx, float *val);

#endif

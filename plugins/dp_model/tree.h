/*
 * tree.h — the noise of DP-FTRL's tree aggregation (Kairouz et al. 2021).
 *
 * The model follows noisy prefix sums S̃_t = Σ_{i≤t} g_i + Σ (noise of the
 * nodes covering [1, t]) of the steps' clipped gradient sums g_i, from a
 * binary tree whose every node is noised once. What is applied at step t is
 * S̃_t − S̃_{t−1}: post-processing of the released noisy nodes, so the
 * privacy is the tree's. With z the trailing zeros of t, the decomposition
 * of [1, t] is that of [1, t−1] without its nodes of levels 0..z−1 and with
 * the new node of level z, so
 *
 *     S̃_t − S̃_{t−1} = g_t + n(new node) − Σ_{l<z} n(node l).
 *
 * On the noise lattice (noise.h: grid g) this is an identity of integers —
 * round(g_t/g) plus the new node's integer noise minus the removed nodes' —
 * exactly the difference of the noisy node values, not an approximation.
 *
 * A node's noise is not stored: each node has a fresh 32-byte key from the
 * OS CSPRNG, its noise is the discrete Gaussian drawn from a ChaCha20
 * stream under that key, regenerated once more (identically) when the node
 * is removed, and the key is wiped then. Memory: one key per level. Noise
 * drawn per step: the new node and, amortized, one removed node.
 *
 * Keys never leave the process (a checkpoint holding them would let its
 * reader subtract the noise), and a restart starts a new tree: the
 * accountant charges it as one (accountant.h). Continuing the old tree
 * would cost more: the per-user counters are gone after a restart, so a
 * user could join it twice, in shared nodes (4 per level above the
 * leaves, against 1 per level of a new tree).
 *
 * Parameter blocks keep their row order and only grow (items added from
 * events get new rows): a node noises the rows that existed when it was
 * made — rows made later have no gradient in its leaves — and is
 * regenerated over those same rows in the same chunks.
 *
 * Honaker's estimator (VEIL_TREE_HONAKER; Honaker 2015, the bottom-up pass
 * of TensorFlow Privacy's EfficientTreeAggregator): every node on a leaf's
 * path is noised — the accountant already charges all ⌈log2(T+1)⌉ of them,
 * while the plain tree above only makes the T nodes that prefix sums use —
 * and a node's estimate is the variance-weighted mean of its own noisy sum
 * y and its children's estimates:
 *
 *     ê_l = w_l·y + (1 − w_l)·(ê_left + ê_right),  w_l = v_l,
 *     v_0 = 1,  v_l = 2v_{l−1}/(1 + 2v_{l−1})   (variances in σ² units)
 *
 * so a node of level l has variance v_l·σ² (2/3, 4/7, 8/15, … → 1/2)
 * instead of σ², and what is applied at step t is Ŝ_t − Ŝ_{t−1} =
 * ê(new node) − Σ ê(removed nodes). Every ê is computed from the noisy
 * lattice sums y = round(sum/g) + k alone (exact int64 values), so it is
 * post-processing of the noisy nodes, not a float sum of signal and noise.
 * The price is memory: the true lattice sum (int64) and the estimate
 * (double) of one node per level, 16 bytes per coordinate per level, kept
 * in the process only and wiped on reset. A coordinate a node did not
 * cover (rows added later) counts as 0 with variance 0 there; the weights
 * stay those above, so the estimate stays unbiased, just not optimal.
 */
#ifndef VEIL_DP_MODEL_TREE_H
#define VEIL_DP_MODEL_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "noise.h"

#define VEIL_TREE_MAX_BLOCKS 4

/** One parameter block of the step's sum, rows × width in double (dp.h):
 *  row r at x[r], or zeros where x[r] is NULL (a row nobody touched); and
 *  where its release goes (rows × width floats). */
struct veil_tree_block {
        double *const *x;
        float *out;
        size_t rows;
        size_t width;
};

struct veil_tree;

enum veil_tree_estimator {
        VEIL_TREE_PLAIN = 0,  /**< the prefix's nodes as released */
        VEIL_TREE_HONAKER = 1 /**< Honaker's variance-reduced estimate */
};

/** seed: 32 bytes for tests (node keys then derive from it); NULL in
 *  production (node keys from randombytes_buf). */
int veil_tree_new(struct veil_tree **out, const struct veil_noise *ns,
                  enum veil_tree_estimator est, const unsigned char *seed,
                  char *errstr, size_t errstr_size);

/** v_l: the variance of a level-l node's estimate in units of the node
 *  noise's (1 for every level with VEIL_TREE_PLAIN). */
double veil_tree_node_variance(enum veil_tree_estimator est, unsigned level);
/** Wipes the keys. */
void veil_tree_free(struct veil_tree *t);

/** Starts a new tree: wipes every node key, position 0. */
void veil_tree_reset(struct veil_tree *t);

/** Leaves (steps) released in the current tree. */
uint64_t veil_tree_position(const struct veil_tree *t);

/** Releases the next leaf: each block's out becomes S̃_t − S̃_{t−1} on
 *  the noise grid, where S_t adds the block's x (the step's clipped sum). n_blocks ≤ VEIL_TREE_MAX_BLOCKS, the
 *  same blocks in the same order at every step of a tree, rows never
 *  fewer than before. On an error nothing is released, out is undefined
 *  and the tree must be reset. */
int veil_tree_release(struct veil_tree *t, const struct veil_tree_block *b,
                      size_t n_blocks, char *errstr, size_t errstr_size);

#endif

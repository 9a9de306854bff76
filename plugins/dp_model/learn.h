/*
 * learn.h — incremental learning of the dp_model: one step per batch.
 *
 * Objective: predict the item of a user's event from the state before it
 * (the previous event's features, the previous item, the items before) by
 * a sampled softmax over the target and S items drawn uniformly from the
 * catalog for the whole batch (or, veil_learner_support_epoch, for a whole
 * DP step). Why this one (and not BPR or the full
 * softmax), in the README: the logits and both gradients are three small
 * sgemms of S columns instead of three of all items, and uniform negatives
 * do not depend on anyone's data.
 *
 * The step, in order (veil_learn_step):
 *   1. per-example gradients, kept factored: for example e the gradient of
 *      the loss is r_e ⊗ q_e for V (r_e = softmax − one-hot over the
 *      support), r_e for b, and a_e ⊗ g_e for the input rows (a_e: the
 *      sparse weights of the E and U rows in the query, g_e = Vᵀ r_e);
 *   2. per-user clipping: a user's examples in the batch are one
 *      contribution, whose norm is computed from the Gram identity
 *      ‖Σ_e r_e q_eᵀ‖² = Σ_{e,e'} (r_e·r_e')(q_e·q_e') (and likewise for
 *      b and the input rows) without materializing any gradient; clipping
 *      to C is a scaling of that user's rows of R = P − Y;
 *   3. the sum over users (sgemm Rᵀ·Q for V, scatter for the rest; in
 *      double, a dgemm, under DP: veil_learner_double_sums);
 *   4. the noise hook: it may noise the sum in place, or take it (return
 *      1) into a larger learning step that it noises and applies itself
 *      with veil_learn_apply (dp.h: one DP step spans many batches);
 *   5. apply (Adagrad), unless the hook took the sum.
 * Each user contributes at most one clipped contribution per batch (the
 * per-user bound the DP accounting needs) made of at most
 * max_user_examples of their events.
 */
#ifndef VEIL_DP_MODEL_LEARN_H
#define VEIL_DP_MODEL_LEARN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/** One training example: query parts and the target item. */
struct veil_example {
        const uint32_t *feat; /**< E rows (feature ids, taken mod space) */
        size_t n_feat;
        int32_t item;          /**< U row of the item in hand, -1: none */
        const int32_t *recent; /**< U rows, weight alpha / n_recent each */
        size_t n_recent;
        int32_t target;        /**< V row to predict */
        uint32_t user;         /**< 0..n_users-1: same user, one contribution */
};

struct veil_learn_cfg {
        float lr;        /**< Adagrad step size */
        float clip;      /**< C: bound on each user's contribution (L2) */
        float alpha;     /**< weight of the recent items' mean */
        size_t negatives; /**< S: sampled items per batch (all when ≥ items) */
        size_t max_user_examples; /**< events of one user learned per batch */
        /** Clip the biases' part of a contribution alone (its norm over b
         *  is what is bounded by C): for a hook that releases only b
         *  (dp_blocks: bias), whose other sums are dropped. Measured over
         *  every parameter, the bias part is a tenth of the norm and the
         *  noise drowns it. */
        int bias_only;
};

/** The summed, clipped gradient of one step, as the noise hook sees it.
 *  Accumulators are dense (same shapes as the parameters); only the rows
 *  listed were written this step, the others hold stale values. */
struct veil_grad {
        float *V, *U, *E, *b;
        const uint32_t *v_rows, *u_rows, *e_rows;
        size_t n_v, n_u, n_e;
        size_t d, items, space;
        size_t n_users; /**< contributions in the sum (each of norm ≤ clip) */
        float clip;
        /** With veil_learner_double_sums: the same sums in double,
         *  compact (row i of sV and sb is the sum for v_rows[i], of sU for
         *  u_rows[i], of sE for e_rows[i]); the dense float rows above are
         *  then not written, and the hook must take the sums (return 1).
         *  NULL otherwise. */
        const double *sV, *sb, *sU, *sE;
        /** A hook that noises every row sets this (after
         *  veil_grad_densify) so that apply updates every row. */
        int dense;
};

/** Zeroes the rows not written this step, so that every row of the
 *  accumulators holds the step's gradient (for a hook that adds noise to
 *  all of them). */
void veil_grad_densify(struct veil_grad *g);

/** Returns 0 (apply g now), 1 (the hook took g: nothing is applied and
 *  the model version stays) or a negative code. */
typedef int (*veil_noise_hook)(void *ctx, struct veil_grad *g, char *errstr,
                               size_t errstr_size);

struct veil_learner;

int veil_learner_new(struct veil_learner **out,
                     const struct veil_learn_cfg *cfg,
                     const struct veil_model *m, uint64_t seed);
void veil_learner_free(struct veil_learner *L);
void veil_learner_set_noise(struct veil_learner *L, veil_noise_hook hook,
                            void *ctx);
/** From now on the hook gets the step's sums in double (veil_grad's sV,
 *  sb, sU, sE), for a hook that adds them up over many batches before it
 *  noises them (dp.h). Why: a float32 sum of n contributions is off by up
 *  to about n²·2⁻²⁴·C, and where the batches of a stream end depends on
 *  everyone's events, so one person more or less changes the rounding of
 *  every later batch of a step; in double that stays below 2⁻¹⁰·C for
 *  2²⁰ contributions per step (dp.h). The clipping also aims a little
 *  under C (by the Gram norm's own rounding bound), so that each
 *  contribution, as summed, has norm ≤ C. */
void veil_learner_double_sums(struct veil_learner *L);
/** From now on the sampled items are drawn once per epoch (and again when
 *  the catalog grows), not per step: a DP step names the epoch, so that a
 *  person's contribution is computed with the step's draw whichever
 *  serving batch it fell in (a draw per batch would tie it to the batch,
 *  so to the records of others around it). */
void veil_learner_support_epoch(struct veil_learner *L, uint64_t epoch);

/** One step over n examples of n_users users. Returns 0 (also when there
 *  is nothing to learn), or a negative code from allocation or the hook. */
int veil_learn_step(struct veil_learner *L, struct veil_model *m,
                    const struct veil_example *ex, size_t n, size_t n_users,
                    char *errstr, size_t errstr_size);

/** Applies g (dense when g->dense, else its listed rows; g->items rows of
 *  V, U and b) with the learner's Adagrad, and bumps the model version. */
void veil_learn_apply(struct veil_learner *L, struct veil_model *m,
                      const struct veil_grad *g);

/* What the last step did (for tests, logs and benchmarks). */
struct veil_learn_stats {
        size_t examples;    /**< learned (after the per-user cap) */
        size_t users;
        size_t support;     /**< sampled items S */
        double loss;        /**< mean cross-entropy before the step */
        size_t clipped;     /**< users whose contribution was scaled down */
};
struct veil_learn_stats veil_learn_last(const struct veil_learner *L);
/** Per-user norms before clipping and the scale applied (n_users long). */
const float *veil_learn_norms(const struct veil_learner *L);
const float *veil_learn_scales(const struct veil_learner *L);
/** The sampled items of the last step. */
const uint32_t *veil_learn_support(const struct veil_learner *L, size_t *n);
/** Makes the next step use these items as its sample (tests). */
void veil_learn_force_support(struct veil_learner *L, const uint32_t *items,
                              size_t n);

#endif

/*
 * dp.h — the differentially private learning step of the dp_model plugin.
 *
 * A DP step is not a serving batch: noising every parameter (V, U, E, b)
 * costs ~10^6 samples, too much per 256 events, and the noise-to-signal
 * ratio falls with the number of contributions summed. So the learner's
 * clipped per-batch sums are taken by the noise hook (learn.h, step 4) and
 * accumulated over a step; then the whole block is noised once, the
 * accountant is charged and saved, and only then is the noisy sum applied
 * (veil_dp_release).
 *
 * When a step ends. On a public clock (step_ms > 0): step k holds the
 * batches whose clock falls in [k·step_ms, (k+1)·step_ms); the first batch
 * past its end releases it, even when nobody contributed (noise alone),
 * and steps no batch fell in are skipped (veil_dp_clock). With event time
 * (event_time), step k holds the events whose own time falls in it
 * instead, and is released by the first batch past its end plus
 * lateness_ms: an event of step k+1 that comes before then waits for it
 * (veil_dp_place says where an event goes; the caller holds it and learns
 * it once step k is released, and places an event stamped ahead of its
 * batch's clock at the clock), and one of a released step is late: not
 * learned, counted. Which step a
 * contribution joins, and which steps are released, then follow the clock
 * and the batches' times, not the others' data. Counted (step_ms = 0): a
 * step ends when
 * step_events contributions are in; one person's contributions then move
 * every later step boundary, so the (ε, δ) bound holds only between
 * streams that share the schedule — kept for tests and benchmarks that
 * need a step after a known number of events, and warned about.
 *
 * Per-user bounds, keyed by a keyed 64-bit hash of the user's pseudonym in
 * a bounded table (veil_dp_admit):
 *   - one clipped contribution per user per DP step: the user's events of
 *     the first serving batch in which they appear in the step (the
 *     learner makes them one contribution of norm ≤ C); their events in
 *     later batches of the same step are served, not learned from;
 *   - at most M (max_contributions) steps per user per accounting window
 *     of window_steps steps.
 * When the table is full, users not in it are not learned from (counted).
 *
 * Gaussian mechanism: noise N(0, σ²C²) per coordinate of every block
 * (discrete Gaussian on a grid, noise.h), so that a window is
 * M/(2σ_acc²)-zCDP with σ_acc = σC/(C(1 + VEIL_DP_SUM_MARGIN) + g√n):
 * g√n for the grid's rounding, the margin for the rounding of the sums.
 *
 * Rounding of the sums. Where a stream's batches end depends on everyone's
 * events, so one person more or less changes the composition, and so the
 * rounding, of every later batch of the step, not only the rounding of
 * their own. The learner therefore sums in double (each contribution,
 * as summed, of norm ≤ C: learn.h, veil_learner_double_sums) and so does
 * the step: a batch of n contributions is then within γ_n·n·C of its exact
 * sum (γ_n ≤ 1.01·n·2⁻⁵³), the B ≤ N additions of a step of N within
 * B·2⁻⁵³·N·C, and two neighbouring streams' sums differ by at most
 * C + 2(n_max·N + N²)·1.01·2⁻⁵³·C. With n_max ≤ 2²⁰ (max_events is at most
 * 100,000, veil replay's --batch 10⁶, a held chunk 1,024) and
 * N ≤ VEIL_DP_STEP_MAX = 2²⁰ that is below C(1 + 2⁻¹⁰); further
 * contributions to a full step are refused (counted). With step_ms = 0 (counted steps, tests) a person's events of
 * one batch are one contribution of several examples, which could cancel
 * in the clipping norm, so the margin covers steps on the clock only.
 *
 * Tree mechanism (DP-FTRL, tree.h): the step's sum becomes the difference
 * of consecutive noisy prefix sums of a binary tree restarted every
 * tree_steps steps. The accounting window is the tree and each user joins
 * at most one step of it (max_contributions does not apply), so a tree of
 * T steps is ⌈log2(T+1)⌉/(2σ_acc²)-zCDP and trees compose. After a restart
 * a new tree begins (its node keys are never saved).
 */
#ifndef VEIL_DP_MODEL_DP_H
#define VEIL_DP_MODEL_DP_H

#include <stddef.h>
#include <stdint.h>

#include "accountant.h"
#include "learn.h"
#include "model.h"

/** Contributions one step takes at most (the rounding bound above). */
#define VEIL_DP_STEP_MAX (1u << 20)
/** The sums' rounding, relative to C, that the accountant adds. */
#define VEIL_DP_SUM_MARGIN 0x1p-10
#include "noise.h"
#include "tree.h"

enum veil_dp_mode {
        VEIL_DP_NONE = 0,   /**< clipping only: not private */
        VEIL_DP_MODE_GAUSSIAN = 1,
        VEIL_DP_MODE_TREE = 2
};

struct veil_dp_cfg {
        enum veil_dp_mode mode;
        double sigma;           /**< noise multiplier σ (std σ·C) */
        double lr;              /**< SGD step on the noisy mean */
        int adagrad;            /**< the learner's Adagrad instead of SGD */
        int bias_only;          /**< learn (noise, release) b alone */
        double clip;            /**< C */
        uint64_t step_events;   /**< counted steps: contributions per step;
                                 *   on the clock: the SGD step's divisor
                                 *   (the contributions a step is expected
                                 *   to hold; a public constant) */
        uint64_t window_steps;  /**< DP steps per accounting window (on the
                                 *   clock, its steps); 0: one window */
        uint32_t max_contrib;   /**< M: steps a user joins per window
                                 *   (tree: per tree) */
        size_t user_slots;      /**< size of the per-user counter table */
        double eps_budget;      /**< ε budget (≤ 0 or inf: none) */
        double delta;
        const char *acc_path;   /**< accountant state file (required) */
        const unsigned char *seed; /**< 32 bytes, tests only; NULL: OS */
        uint64_t tree_steps;    /**< tree: T steps per tree */
        enum veil_tree_estimator tree_estimator; /**< tree: plain or
                                                   *   Honaker (tree.h) */
        int64_t step_ms;        /**< > 0: steps on the clock, this long;
                                 *   0: counted steps of step_events */
        int event_time;         /**< steps of the events' own times */
        int64_t lateness_ms;    /**< event_time: a step is released this
                                 *   long after its end (< step_ms) */
        /** Contributions one step takes: 0 or more than VEIL_DP_STEP_MAX
         *  mean VEIL_DP_STEP_MAX, which the rounding margin assumes (a
         *  smaller one is for tests). */
        size_t step_max;
        /** The stage's pipeline (veil_stage_pipeline_id), or 0 (tests): two
         *  holders of one accountant file with the same non-zero owner are
         *  two stages of one pipeline, which is refused; different owners
         *  are a reload and its predecessor, which share it. */
        uint64_t owner;
};

struct veil_dp;

/** Loads the accountant from cfg->acc_path when it exists. */
int veil_dp_new(struct veil_dp **out, const struct veil_dp_cfg *cfg,
                const struct veil_model *m, char *errstr, size_t errstr_size);
void veil_dp_free(struct veil_dp *dp);

/** 1 when this user's examples of the current serving batch may be
 *  learned (they are then counted against the user's bounds), 0 when not.
 *  batch: a counter the caller bumps per serving batch. */
int veil_dp_admit(struct veil_dp *dp, const char *user, uint64_t batch);

/** The keyed hash the per-user bounds are kept under (SipHash under a
 *  per-process random key): what a stage may keep beside a user's data to
 *  find it again on an erasure, without the id. */
uint64_t veil_dp_user_hash(const struct veil_dp *dp, const char *user);
/** Steps this user has joined in the current accounting window (for an
 *  access request). Never cleared by an erasure: the bound M must hold
 *  for a person who comes back. */
uint32_t veil_dp_user_steps(const struct veil_dp *dp, const char *user);

/** Where an event of time ts_ms goes (steps of event time; otherwise
 *  always VEIL_DP_OPEN): the open step, the next one (hold it and learn it
 *  once the open one is released: veil_dp_admit_next, veil_dp_step + 1),
 *  or nowhere, counted: late (its step was released) or early (further
 *  ahead, or the next step is in another accounting window). */
enum veil_dp_place {
        VEIL_DP_OPEN = 0,
        VEIL_DP_NEXT = 1,
        VEIL_DP_LATE = -1,
        VEIL_DP_EARLY = -2
};
enum veil_dp_place veil_dp_place(struct veil_dp *dp, int64_t ts_ms);

/** veil_dp_admit for the step after the open one (a VEIL_DP_NEXT event):
 *  a user may join both, once each, each counted against their M. */
int veil_dp_admit_next(struct veil_dp *dp, const char *user, uint64_t batch);

/** Steps on the clock: the batch about to be admitted has clock now_ms.
 *  When it is past the open step, that step is due (veil_dp_ready) even
 *  if nobody contributed to it; once veil_dp_release has released it, the
 *  batch's step opens (steps between, which no batch fell in, are
 *  skipped). Call it before the batch's veil_dp_admit; a clock that goes
 *  back changes nothing. A no-op for counted steps. */
void veil_dp_clock(struct veil_dp *dp, int64_t now_ms);

/** The step contributions join now: on the clock the open step's number,
 *  else the number of releases so far. */
uint64_t veil_dp_step(const struct veil_dp *dp);

/** The noise hook to give the learner (ctx: the veil_dp). */
int veil_dp_hook(void *ctx, struct veil_grad *g, char *errstr,
                 size_t errstr_size);

/** When a step is due (veil_dp_ready: step_events contributions are in,
 *  or the clock passed the step's end): checks the budget, charges and
 *  saves the accountant, noises the sum and applies it to the model as an
 *  SGD step of lr on the noisy sum / step_events. One step per call.
 *  Returns 1 when a noisy step was released, 0 when not (none due, or
 *  frozen), or a negative code (nothing was applied then). */
int veil_dp_release(struct veil_dp *dp, struct veil_learner *L,
                    struct veil_model *m, char *errstr, size_t errstr_size);

struct veil_dp_stats {
        /** What the model's releases cost a user: this instance's and, with
         *  model updates shared, the other instances' whose releases it
         *  applied (their ρ added: after a rebalance a user's events may be
         *  in several instances' releases). */
        double epsilon;          /**< spent, at delta */
        double delta;
        double rho;
        double rho_own, epsilon_own; /**< this instance's accountant alone */
        double rho_others;           /**< veil_dp_set_others */
        uint64_t steps;          /**< noisy releases charged (ever) */
        uint64_t pending;        /**< examples accumulated, not released */
        uint64_t refused_step;   /**< user already in this step */
        uint64_t refused_window; /**< user at M in this window */
        uint64_t refused_full;   /**< per-user table could not grow */
        uint64_t refused_step_full; /**< the step had VEIL_DP_STEP_MAX */
        uint64_t user_slots;     /**< the per-user table's slots now */
        uint64_t refused_frozen; /**< budget exhausted */
        int frozen;
        int just_frozen;         /**< set by the release that froze */
        double sigma_acc;        /**< the noise multiplier accounted */
        uint64_t tree;           /**< tree: the current tree (its number) */
        uint64_t tree_pos;       /**< tree: steps released in it */
        uint64_t empty_steps;    /**< steps released as noise alone */
        uint64_t late;           /**< event time: events of released steps */
        uint64_t early;          /**< event time: events ahead of the next */
};
struct veil_dp_stats veil_dp_stats(const struct veil_dp *dp);
/** Stops learning for good, as an exhausted budget does: a stage that
 *  starts with its budget already spent admits nothing. */
void veil_dp_freeze(struct veil_dp *dp);
/** 1 when the next veil_dp_release will release a noisy step (a step is
 *  due, not frozen) unless the budget stops it. */
int veil_dp_ready(const struct veil_dp *dp);
/** 1 when only the item biases are noised and released (dp_blocks). */
int veil_dp_bias_only(const struct veil_dp *dp);
/** The other instances' ρ (veil_share_others_rho): counted in ε and in
 *  the budget from now on. Only ever raises it. */
void veil_dp_set_others(struct veil_dp *dp, double rho);
/** The other instances' sampler rate (veil_share_draws_per_rho): when it
 *  is above the accountant's draws_per_rho, raises that and saves the
 *  accountant file at once, before the ε it raises is reported, so that a
 *  restart never reports less. Returns 0 or a negative code (the rate is
 *  raised in memory all the same; a later call saves it). */
int veil_dp_raise_draws(struct veil_dp *dp, double draws, char *errstr,
                        size_t errstr_size);
/** ε at the configured δ of a spend ρ of this pipeline's releases (its
 *  own and other instances'), the sampler's error included at the
 *  largest rate of any of them (accountant.h, veil_dp_raise_draws);
 *  INFINITY when it cannot be computed. */
double veil_dp_epsilon_of(const struct veil_dp *dp, double rho);
/** After the accountant was merged with a checkpoint's (which keeps the
 *  larger spend): refreshes ε and saves the state file. */
int veil_dp_restored(struct veil_dp *dp, char *errstr, size_t errstr_size);

const struct veil_accountant *veil_dp_accountant(const struct veil_dp *dp);
struct veil_accountant *veil_dp_accountant_mut(struct veil_dp *dp);

#endif

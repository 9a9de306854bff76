/*
 * accountant.h — the privacy accountant of the dp_model plugin.
 *
 * Privacy loss is tracked as ρ-zCDP (Bun–Steinke 2016): every mechanism the
 * plugin runs is a Gaussian with L2 sensitivity 1 in units of the clipping
 * norm C, zCDP composes by adding ρ, and ρ-zCDP is RDP of order α equal to
 * ρα for every α > 1, so one number carries the whole RDP curve.
 *
 * Mechanisms (σ is the noise multiplier: noise std = σ·C):
 *   gaussian  at most one example per user per batch and at most M per user
 *             per accounting window: ρ = M/(2σ²) per window.
 *   tree      DP-FTRL tree aggregation (Kairouz et al. 2021), one
 *             participation per user per tree of T steps: every example is
 *             in ⌈log2(T+1)⌉ noised nodes, ρ = ⌈log2(T+1)⌉/(2σ²) per tree
 *             (TensorFlow Privacy, compute_rdp_tree_restart). With p
 *             participations (P per tree by configuration, and P more
 *             for a tree continued across a restart), up to min(p, 2^l)
 *             of them share a node of level l, so the level costs
 *             p·min(p, 2^l)/(2σ²): ρ = Σ_l p·min(p, 2^l)/(2σ²).
 *
 * (ε, δ): the tight RDP conversion (Canonne–Kamath–Steinke 2020, Prop. 12;
 * Balle et al. 2020, Thm. 21) minimized over continuous α. Every reported ε
 * is the conversion evaluated exactly at some α plus a margin larger than
 * the rounding error, so it is never below the true bound.
 *
 * The accountant never goes down: there is no setter; charges only add;
 * restoring saved state keeps the larger spend; and the state is meant to be
 * saved (veil_accountant_save) before each noisy release leaves the process.
 */
#ifndef VEIL_DP_ACCOUNTANT_H
#define VEIL_DP_ACCOUNTANT_H

#include <stddef.h>
#include <stdint.h>

enum veil_dp_kind {
        VEIL_DP_GAUSSIAN = 1,
        VEIL_DP_TREE = 2
};

/** A mechanism and the horizon its budget must last. */
struct veil_dp_mech {
        enum veil_dp_kind kind;
        double sigma;          /**< noise multiplier, > 0 */
        uint64_t max_per_user; /**< gaussian: M examples per user per
                                *   window; tree: P steps per user per tree
                                *   (0 is read as 1) */
        uint64_t tree_steps;   /**< tree: T steps per tree */
        uint64_t units;        /**< horizon: windows (gaussian) or trees
                                *   (tree: the restarts) */
        uint64_t coords;       /**< coordinates noised per release, for
                                *   the sampler's own error (below); 0:
                                *   an exact sampler (the calculator) */
};

/** ρ of the mechanism over its whole horizon (units windows or trees),
 *  rounded up. */
int veil_dp_rho(const struct veil_dp_mech *m, double *rho, char *errstr,
                size_t errstr_size);

/** ε of ρ-zCDP at δ, rounded up; *alpha (may be NULL) gets the order used. */
int veil_dp_epsilon(double rho, double delta, double *eps, double *alpha,
                    char *errstr, size_t errstr_size);

/** The sampler of noise.h is not the discrete Gaussian exactly: its pmf is
 *  within a relative η = VEIL_NOISE_PMF_ERR of it, and within
 *  τ = VEIL_NOISE_TAIL_TV in total variation where that does not hold.
 *  Of N draws a user can move (the coordinates of the releases they are
 *  in), any output set's probability is then within (1 ± η)^N of the exact
 *  mechanism's, plus N·τ, so (ε, δ) of the exact mechanism becomes
 *  (ε + N·ln((1+η)/(1-η)), (1+η)^N·(δ + N·τ·(1 + e^ε·(1-η)^-N))). A release
 *  a user is in costs at least 1/(2σ²) and moves at most `coords`
 *  coordinates, so N ≤ ρ·draws_per_rho with draws_per_rho = coords·2σ².
 *
 *  ε at δ (the whole δ, the sampler's share included) of ρ charged under
 *  such a sampler; draws_per_rho 0 is veil_dp_epsilon. INFINITY when no
 *  part of δ is left for the exact mechanism. */
int veil_dp_epsilon_sampled(double rho, double delta, double draws_per_rho,
                            double *eps, char *errstr, size_t errstr_size);

/** coords·2σ², rounded up: the draws_per_rho of a mechanism. */
double veil_dp_draws_per_rho(const struct veil_dp_mech *m);

/** The smallest σ (to a relative 1e-9) for which the mechanism, over its
 *  horizon, spends at most eps at delta; the σ returned always does. The
 *  sigma field of m is ignored. */
int veil_dp_noise_for_epsilon(const struct veil_dp_mech *m, double eps,
                              double delta, double *sigma, char *errstr,
                              size_t errstr_size);

/** ⌈log2(t+1)⌉: the nodes of a tree of t steps that cover one leaf. */
uint64_t veil_dp_tree_depth(uint64_t t);


/* ------------------------------------------------------------------ */

struct veil_accountant; /* opaque: nothing outside can lower it */

int veil_accountant_new(struct veil_accountant **out,
                        const struct veil_dp_mech *m, char *errstr,
                        size_t errstr_size);
void veil_accountant_free(struct veil_accountant *acc);

double veil_accountant_rho(const struct veil_accountant *acc);
/** The state's lineage: a random id (never 0) drawn by
 *  veil_accountant_new, replaced by the file's in veil_accountant_load
 *  (0 for a file of a veil before lineages) and kept by every save, but
 *  not taken from a record merged by veil_accountant_restore. A state
 *  begun anew (its file lost) has a lineage of its own, so whoever counts
 *  this instance's spend by lineage adds the new spend to the old. */
uint32_t veil_accountant_lineage(const struct veil_accountant *acc);
/** Noisy releases charged so far. */
uint64_t veil_accountant_steps(const struct veil_accountant *acc);
/** Bumped by every change of state; never decreases. */
uint64_t veil_accountant_version(const struct veil_accountant *acc);
const struct veil_dp_mech *
veil_accountant_mech(const struct veil_accountant *acc);
/** ε at delta of the spend, the sampler's error included
 *  (veil_dp_epsilon_sampled with the largest draws_per_rho of the
 *  mechanism's, every restored record's and every other sender's raised
 *  to, veil_accountant_raise_draws). */
int veil_accountant_epsilon(const struct veil_accountant *acc, double delta,
                            double *eps, char *errstr, size_t errstr_size);
/** That draws_per_rho, for ε of this spend and others' together. */
double veil_accountant_draws_per_rho(const struct veil_accountant *acc);
/** Raises draws_per_rho to `draws` when that is larger, never lowers it:
 *  the rate of another instance whose ρ is added to this spend (share.h),
 *  so that the one rate counts the sampler's error of every release in
 *  the sum, theirs too, whatever their configuration. Saved with the state
 *  (a save is the caller's). Returns 1 when it rose, 0 when not,
 *  -VEIL_EINVAL when draws is not a finite number ≥ 0. */
int veil_accountant_raise_draws(struct veil_accountant *acc, double draws,
                                char *errstr, size_t errstr_size);

/** Adds rho (finite, ≥ 0) and steps. The sum is rounded up. */
int veil_accountant_charge(struct veil_accountant *acc, double rho,
                           uint64_t steps, char *errstr, size_t errstr_size);

/** What the next noisy release costs under the configured mechanism.
 *  unit names the accounting window (gaussian) or the tree (tree) the
 *  release belongs to; a unit other than the current one starts a new one.
 *
 *  gaussian: 1/(2σ²) for each of the first M releases of a window, 0 after
 *  (the plugin guarantees at most M examples per user per window).
 *  tree: the k-th release of a tree completes nodes up to depth
 *  ⌈log2(k+1)⌉, so it costs P·min(P, 2^l)/(2σ²) when it opens level l
 *  (k a power of two), else 0; a tree of T releases costs
 *  Σ_{l<⌈log2(T+1)⌉} P·min(P, 2^l)/(2σ²) in all, ⌈log2(T+1)⌉/(2σ²) for
 *  P = 1.
 *
 *  After a restore the per-user bounds the plugin kept may be older than
 *  this state, so a user may contribute once more: in the current unit a
 *  new session starts — gaussian windows allow M more charged releases; a
 *  tree's participations p grow by P, its open levels are topped up at
 *  once to p·min(p, 2^l) each and every new level costs that much. */
int veil_accountant_step_cost(const struct veil_accountant *acc, uint64_t unit,
                              double *rho, char *errstr, size_t errstr_size);
/** 1 and *unit when a release was charged (or restored) with a unit, 0
 *  before any: where a plugin that starts a new tree after a restart
 *  numbers it from. */
int veil_accountant_unit(const struct veil_accountant *acc, uint64_t *unit);
/** Releases charged in the current unit (0 before any). */
uint64_t veil_accountant_unit_steps(const struct veil_accountant *acc);
/** Charges the next release of unit (the cost step_cost reports). */
int veil_accountant_charge_step(struct veil_accountant *acc, uint64_t unit,
                                double *charged, char *errstr,
                                size_t errstr_size);

/** 1 when spending rho_next more would take ε at delta above eps_budget,
 *  0 when it stays within, or a negative code. */
int veil_accountant_would_exceed(const struct veil_accountant *acc,
                                 double rho_next, double eps_budget,
                                 double delta, char *errstr,
                                 size_t errstr_size);

/* ------------------------------------------------------------------ */
/* Persistence: a 128-byte little-endian record with a BLAKE2b checksum
 * (format 2: the lineage at byte 100, where format 1 kept zero; format 3:
 * draws_per_rho at byte 104, and a 16-byte checksum instead of 24; all
 * three are read) */

/** Replaces the file at path by data, atomically and durably: a temporary
 *  file beside it, written and fsynced, renamed over it, the directory
 *  fsynced. 0, or -VEIL_EIO / -VEIL_ENOMEM with errstr. */
int veil_dp_file_replace(const char *path, const void *data, size_t len,
                         char *errstr, size_t errstr_size);
/** The whole file, malloc'd (the caller frees *data): 0; -VEIL_ENOENT when
 *  there is none; -VEIL_EDECODE when it is larger than max; -VEIL_EIO. */
int veil_dp_file_read(const char *path, size_t max, void **data, size_t *len,
                      char *errstr, size_t errstr_size);

#define VEIL_ACCOUNTANT_RECORD_SIZE 128

/** Writes the state into buf (VEIL_ACCOUNTANT_RECORD_SIZE bytes). */
void veil_accountant_encode(const struct veil_accountant *acc,
                            unsigned char buf[VEIL_ACCOUNTANT_RECORD_SIZE]);
/** Merges a record into acc: ρ, steps and version keep the larger value,
 *  and the next release of the current unit opens a new session (see
 *  step_cost). Refuses a corrupt record (-VEIL_EDECODE) and changes
 *  nothing then. */
int veil_accountant_restore(struct veil_accountant *acc, const void *data,
                            size_t len, char *errstr, size_t errstr_size);
/** Writes the record to path durably: the file has two slots (a record at
 *  the start of each 4 KiB block); the one with the older record is
 *  overwritten and synced (fdatasync), so the newest durable record is
 *  never the one being written. A missing file, or an older veil's
 *  one-record file, is created anew atomically (a temporary file, fsync,
 *  rename, fsync of the directory). Call it, and check it returned 0,
 *  before a noisy release leaves. */
int veil_accountant_save(const struct veil_accountant *acc, const char *path,
                         char *errstr, size_t errstr_size);
/** Reads path (two slots, or one record) and restores every record in it
 *  into acc (the larger spend wins). -VEIL_ENOENT when path does not exist
 *  (a first start), -VEIL_EDECODE when any record in it is corrupt (a
 *  damaged slot may hold the newest spend: it is refused, not skipped),
 *  -VEIL_EIO. */
int veil_accountant_load(struct veil_accountant *acc, const char *path,
                         char *errstr, size_t errstr_size);

#endif

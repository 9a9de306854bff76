/*
 * share.h — model updates between instances of one pipeline.
 *
 * After every noisy release an instance publishes what the release added
 * to its parameters (params after − params before) on the model_updates
 * output, in chunks (schemas/model_update.avsc) keyed by its instance id,
 * and applies the updates of the other instances it reads from the same
 * topic as a side input. A release is a function of the noisy sums only
 * (and of earlier releases), so publishing and applying it is
 * post-processing: it costs no privacy. Only a private mechanism may
 * share (the plugin refuses model_updates with mechanism none).
 *
 * Item rows are matched by item id (instances number items added from
 * events differently); feature rows by index.
 *
 * Each update carries its sender's own ρ; the largest of every sender is
 * tracked (also from chunks skipped as applied before) and saved, because
 * the ε this instance reports adds it (veil_share_others_rho): a user
 * whose partition moved is in the releases of each instance that held it.
 * A sender is an instance and the lineage of its accountant file
 * (accountant.h): one whose file was lost begins a new lineage, counted
 * beside the old one, since the largest ρ of the two would leave out the
 * smaller. An update also lists every other sender its sender counts
 * (spent_by), since its model holds their releases; so a reader counts
 * them even when their own records are gone from the topic (retention),
 * and an instance whose file and records are both gone learns its earlier
 * lineage's spend back from the others.
 *
 * Exactly once per chunk: (seq, chunk) of every sender is tracked and
 * saved in the plugin's checkpoint; a chunk at or below it is skipped. The
 * host restores checkpoints before it reads side inputs; the chunks read
 * until the first batch are still kept (up to a memory cap) and applied
 * then, over the restored model and table. A sender's seq grows across
 * its restarts under one lineage: it starts above the largest seq of that
 * lineage seen on the topic and in its checkpoint, and is at least its
 * accountant's count of releases, which its file keeps.
 */
#ifndef VEIL_DP_MODEL_SHARE_H
#define VEIL_DP_MODEL_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include <veil/veil.h>

#include "model.h"

struct veil_share;

/** Longest instance id, in bytes: a record naming a longer one is refused
 *  (a Kubernetes pod name is at most 253). */
#define VEIL_SHARE_INSTANCE_MAX 255

/** Senders (instance, lineage) an instance keeps, its own included, and
 *  the most entries a record's spent_by may list (a sender lists at most
 *  those it keeps). A record listing more is refused, not applied, so
 *  its ρ need not count. A sender past the bound cannot be counted: it
 *  is not applied and ε is infinite from then on, as when memory runs out
 *  (veil_share_others_rho). Without it, one record naming thousands of
 *  senders made every reader keep them all, for good (the .others file),
 *  and list them in every update it sent, each too large for the topic. */
#define VEIL_SHARE_SENDERS_MAX 512

/** The lineage under which the tables of a veil before lineages count the
 *  releases an instance's accountant file did not count; never an
 *  accountant's (veil_accountant_new draws neither 0 nor this). */
#define VEIL_SHARE_LEGACY_LINEAGE UINT32_MAX

/** The lineage under which an instance counts the releases of another
 *  process that runs under its instance id with a copy of its accountant
 *  file (same lineage): records of its own lineage, read after its first
 *  batch, numbered above its last release. Counted apart from its own
 *  and added (a reader keeps the largest ρ of a sender, and one sender
 *  for both processes would count the larger of two spends, whose
 *  releases its model holds both of); never an accountant's. */
#define VEIL_SHARE_CLONE_LINEAGE (UINT32_MAX - 1)

/** instance: this instance's id (1 to VEIL_SHARE_INSTANCE_MAX bytes).
 *  lineage: its accountant's (veil_accountant_lineage). keep_bytes: cap on
 *  chunks kept until the first batch. */
int veil_share_new(struct veil_share **out, const char *instance,
                   uint32_t lineage, size_t keep_bytes);
void veil_share_free(struct veil_share *sh);

/** Copies the blocks a release may change (bias_only: b alone), before
 *  the release. */
int veil_share_snapshot(struct veil_share *sh, const struct veil_model *m,
                        int bias_only);

/** What a release carries besides the parameters. */
struct veil_share_meta {
        double epsilon, delta, rho, clip, sigma;
        const char *mechanism;
        /** The sender's accountant's draws_per_rho (accountant.h): the
         *  largest of its own mechanism's and every sender's it counts. */
        double draws_per_rho;
        int64_t ts_ms;
        /** The accountant's releases charged, this one included: the
         *  release's seq is at least this, so that it grows across
         *  restarts with the accountant file even when the checkpoint and
         *  the instance's records on the topic are gone. */
        uint64_t steps;
};

/** Publishes params − snapshot on `output`. Returns the chunks emitted or
 *  a negative code. */
int veil_share_emit(struct veil_share *sh, veil_stage_t *st,
                    const char *output, const struct veil_model *m,
                    const struct veil_share_meta *meta);

/** A record of the side input: applied (or kept until the first batch),
 *  skipped (own, or already applied), or refused with a message. Returns 1
 *  when it completed a release of another instance, 0, or a negative
 *  code. */
int veil_share_on_record(struct veil_share *sh, struct veil_model *m,
                         const veil_rec_t *r, char *errstr,
                         size_t errstr_size);

/** The first batch: applies what was kept. Returns chunks applied. */
size_t veil_share_go_live(struct veil_share *sh, struct veil_model *m);

/** Releases of this instance's lineage seen (its own records on the
 *  topic, or the others' spent_by) whose ρ is above what it counts as its
 *  own (rho_acc, its accountant, plus veil_share_own_before: its file was
 *  replaced by an older copy) are counted as another sender's. Returns
 *  their ρ, or 0 when the accountant covers them (INFINITY when memory ran
 *  out: veil_share_others_rho is then infinite too). */
double veil_share_own_unaccounted(struct veil_share *sh, double rho_acc);

/** The ρ of this instance's releases under other lineages than its
 *  accountant's (earlier accountant files, lost), counted as other
 *  senders', rounded up; *lineages (may be NULL): how many. Not the
 *  copies' (VEIL_SHARE_CLONE_LINEAGE). */
double veil_share_own_other(const struct veil_share *sh, size_t *lineages);

/** The ρ of this instance's releases that its accountant does not count
 *  (veil_share_own_unaccounted), 0 when none. The ρ an update carries is
 *  the accountant's plus this: every release of the sender, so that what
 *  it carries never goes down when an accountant file is lost and the
 *  others, who count a sender at the largest ρ it sent, do not lose it. */
double veil_share_own_before(const struct veil_share *sh);

/** The ρ this instance's updates carry, given its accountant's: rho_acc,
 *  plus veil_share_own_before rounded up when there is any. */
double veil_share_own_rho(const struct veil_share *sh, double rho_acc);

/** The sum of the largest ρ each other sender's releases carried, read
 *  from the topic or restored from the checkpoint: what those releases
 *  cost the users they contain (rounded up); INFINITY once a sender could
 *  not be kept (memory ran out, or VEIL_SHARE_SENDERS_MAX were kept: an
 *  unknown cost is not a small one), also after a restart, since the
 *  tables below keep it. *senders (may be NULL): how many senders
 *  (instance and lineage) that is. */
double veil_share_others_rho(const struct veil_share *sh, size_t *senders);

/** The largest draws_per_rho the records counted so far carried (0 when
 *  none did): the noise draws per unit of ρ of their senders' sampler,
 *  itself the largest of what those senders counted. The ε of a sum of
 *  senders' ρ counts their sampler's error at this rate when it is above
 *  this instance's own (veil_accountant_raise_draws). A record whose
 *  draws_per_rho is not a finite number ≥ 0 is refused. */
double veil_share_draws_per_rho(const struct veil_share *sh);

/** Bumped whenever a sender's ρ rises: the table beside accountant_file
 *  needs saving when this moved since the last save. */
uint64_t veil_share_changes(const struct veil_share *sh);

/** The (seq, chunk, ρ) table for the checkpoint: a malloc'd buffer.
 *  rho_self: this instance's own spend (its accountant's ρ), which counts
 *  as another instance's releases for whoever restores the checkpoint. */
int veil_share_encode(const struct veil_share *sh, double rho_self,
                      void **data, size_t *len);
/** Replaces the table with a checkpoint's (-VEIL_EDECODE when corrupt). */
int veil_share_decode(struct veil_share *sh, const void *data, size_t len);

/** The largest ρ of every sender, alone (no positions), for the file beside
 *  accountant_file: what the instance must still count after a restart
 *  when the topic no longer holds those senders' records and no checkpoint
 *  is restored. A malloc'd buffer. */
int veil_share_rho_encode(const struct veil_share *sh, void **data,
                          size_t *len);
/** Raises each sender's ρ to the file's where that is larger (senders not
 *  seen yet are added). -VEIL_EDECODE when the buffer is damaged: nothing
 *  is changed then. */
int veil_share_rho_merge(struct veil_share *sh, const void *data,
                         size_t len);

struct veil_share_stats {
        uint64_t sent_releases, sent_chunks;
        uint64_t applied_chunks, skipped_chunks, kept_dropped;
        uint64_t seq; /**< this instance's last release */
        /** Set once a sender was not kept because VEIL_SHARE_SENDERS_MAX
         *  were (ε is infinite from then on). */
        int senders_full;
        /** Records of this instance's lineage that another process made
         *  (VEIL_SHARE_CLONE_LINEAGE), and the first one's seq. */
        uint64_t clone_chunks, clone_seq;
};
struct veil_share_stats veil_share_stats(const struct veil_share *sh);

#endif

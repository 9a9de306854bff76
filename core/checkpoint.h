/*
 * checkpoint.h — stage state saved to a compacted Kafka topic (the `state:`
 * section) and restored at start.
 *
 * Each stage with checkpoint/restore hooks is saved as one framed blob
 * split into chunks of at most VEIL_CKPT_CHUNK bytes. Chunks are written
 * first, then a manifest naming the sequence number, the chunk count, the
 * total length and a BLAKE2b-256 checksum, so a reader never uses a
 * checkpoint whose chunks did not all arrive. Keys:
 *   <group>/<stage-index>-<plugin>/<chunk>      a chunk
 *   <group>/<stage-index>-<plugin>/manifest     the manifest
 * With compaction only the newest value per key stays; every value carries
 * its sequence number, so a chunk of another checkpoint is recognised.
 * Chunk keys come in two sets, "<chunk>" for even sequence numbers and
 * "<chunk>.1" for odd ones. Each stage writes to the set its newest
 * complete checkpoint does not use (struct veil_checkpoint_writer), so a
 * checkpoint cut short by a crash never replaces the chunks a restart
 * needs.
 *
 * This module knows nothing of Kafka: records leave through a sink and come
 * back through veil_checkpoint_reader_add (kafka.c reads the topic).
 */
#ifndef VEIL_CHECKPOINT_H
#define VEIL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "pipeline.h"

#define VEIL_CKPT_CHUNK 900000
/* While the state topic is read, what is held per stage beyond its newest
 * verified checkpoint (numbers above it, not complete yet): at most this
 * many numbers, and this many bytes or twice the verified checkpoint,
 * whichever is more, besides the number being read. */
#define VEIL_CKPT_PENDING_SEQS 8
#define VEIL_CKPT_PENDING_MIN (64u << 20)

struct veil_checkpoint_config {
        int enabled;        /**< a state: section is present */
        char topic[256];
        int64_t interval_ms;
};

/** Reads the `state:` section: {topic: NAME, interval_ms: N}. Absent:
 *  enabled = 0. Errors are file:line:col: state: ... */
int veil_checkpoint_config_parse(const struct veil_config *cfg,
                                 struct veil_checkpoint_config *cc,
                                 char *errstr, size_t errstr_size);

/* Where the next checkpoints go: their sequence number, and per stage
 * (by its key, "<index>-<plugin>") the key set of its newest checkpoint
 * known to be complete in the log. A checkpoint takes the writer's next
 * number n, and each stage n or n + 1, whichever has the parity of the
 * other set; the next checkpoint takes n + 2. The sequence number is
 * global but the key set is per stage: a crash or a failed checkpoint
 * hook after some stages' manifests leaves the stages at different sets,
 * and a parity taken from the number alone then had the next checkpoint
 * of a lagging stage overwrite the chunks of its last complete one. */
struct veil_checkpoint_writer;

int veil_checkpoint_writer_new(struct veil_checkpoint_writer **out);
void veil_checkpoint_writer_free(struct veil_checkpoint_writer *w);
/** The number the next checkpoint takes (its stages take it or the one
 *  after). 1 for a new writer. */
uint64_t veil_checkpoint_writer_next(const struct veil_checkpoint_writer *w);
/** Raises the next number to at least `seq`. */
void veil_checkpoint_writer_raise(struct veil_checkpoint_writer *w,
                                  uint64_t seq);
/** Raises the next number to at least the wall clock in ms (ignored when
 *  not below the ceiling of sequence numbers). The start reads the state
 *  topic to its end, but a record it could not see then (beyond the last
 *  stable offset: another instance's transaction that commits later) may
 *  hold a larger number than it read; numbers from the clock are above any
 *  a checkpoint got before (they go up by two a checkpoint, at most one a
 *  second, the clock by a thousand), so the newest checkpoint still wins
 *  at restore, which takes the largest number. The largest number read
 *  plus one still applies when larger (a clock set back). */
void veil_checkpoint_writer_floor(struct veil_checkpoint_writer *w,
                                  int64_t wall_ms);
/** What the saves since the last call produced is now in the log (in_log
 *  = 1: their transaction committed, or their records were all
 *  acknowledged), or never will be (0: their transaction aborted). Until
 *  this is called with 1, further checkpoints keep to the same key sets:
 *  a stage's checkpoint whose records may not be in the log never counts
 *  as its newest complete one. */
void veil_checkpoint_writer_settled(struct veil_checkpoint_writer *w,
                                    int in_log);

/** The pipeline is now p (a reload). Stage state moves across a reload
 *  by plugin, but checkpoint keys are "<index>-<plugin>": the keys of
 *  stages p does not have (removed, moved) are deleted with the next
 *  checkpoint, as at a start; otherwise they kept the last checkpoint
 *  before the reload for good, which no erasure reaches. A key to be
 *  deleted that p has a stage for again is not (its fresh checkpoint was
 *  deleted by the next one). Stages whose key p keeps keep their key
 *  sets. Out of memory (-VEIL_ENOMEM) changes nothing. */
int veil_checkpoint_writer_retarget(struct veil_checkpoint_writer *w,
                                    const struct veil_pipeline *p);

/** Saves every stage that has the hooks as the writer's next checkpoint,
 *  producing chunks then manifests to `topic` through `sink` (dl = NULL).
 *  *n_saved (may be NULL) counts the stages saved. The number is used up
 *  even when this fails (a stage before the failing one may have produced
 *  its checkpoint under it). */
int veil_checkpoint_save(struct veil_pipeline *p, const struct veil_sink *sink,
                         const char *topic, const char *group,
                         struct veil_checkpoint_writer *w, size_t *n_saved,
                         char *errstr, size_t errstr_size);

struct veil_checkpoint_reader;

/** A reader of the checkpoints of `group` for the stages of p that save
 *  (records of other stages are skipped, not kept). */
int veil_checkpoint_reader_new(struct veil_checkpoint_reader **out,
                               const char *group,
                               const struct veil_pipeline *p);
void veil_checkpoint_reader_free(struct veil_checkpoint_reader *r);
/** Takes one record of the state topic, in log order; records of other
 *  groups and unrecognisable values are ignored (counted as skipped), as
 *  is a chunk under a key other than the one its index and number give
 *  it. A tombstone drops what was read under its key, as compaction
 *  will: the manifests of its stage, or the chunks of its index and key
 *  set. */
void veil_checkpoint_reader_add(struct veil_checkpoint_reader *r,
                                const void *key, size_t key_len,
                                const void *value, size_t value_len);
/** Bytes of checkpoint chunks held: a stage's chunks older than its
 *  newest complete, verified checkpoint are freed as they are read, and
 *  those above it are bounded (VEIL_CKPT_PENDING_*), so this stays near
 *  one or two checkpoints however long the log is. */
size_t veil_checkpoint_reader_bytes(const struct veil_checkpoint_reader *r);
/** Restores each stage from the newest checkpoint of it whose chunks are
 *  all present and whose checksum matches; an incomplete or corrupt one is
 *  skipped with a warning. The writer w (may be NULL) gets, for each stage
 *  restored, the key set of that checkpoint, and a next number above the
 *  largest sequence number seen; *n_restored counts restored stages. A
 *  stage whose restore hook refuses a verified checkpoint fails the
 *  call, as does one whose manifest key holds a manifest of a format this
 *  veil does not read (topic, the state topic, is named in the message). */
int veil_checkpoint_reader_restore(struct veil_checkpoint_reader *r,
                                   struct veil_pipeline *p, const char *topic,
                                   struct veil_checkpoint_writer *w,
                                   size_t *n_restored, char *errstr,
                                   size_t errstr_size);

#endif

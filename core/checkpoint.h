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

/** Saves every stage that has the hooks as checkpoint `seq`, producing
 *  chunks then manifests to `topic` through `sink` (dl = NULL). *n_saved
 *  (may be NULL) counts the stages saved. */
int veil_checkpoint_save(struct veil_pipeline *p, const struct veil_sink *sink,
                         const char *topic, const char *group, uint64_t seq,
                         size_t *n_saved, char *errstr, size_t errstr_size);

struct veil_checkpoint_reader;

int veil_checkpoint_reader_new(struct veil_checkpoint_reader **out,
                               const char *group);
void veil_checkpoint_reader_free(struct veil_checkpoint_reader *r);
/** Takes one record of the state topic, in log order; records of other
 *  groups and unrecognisable values are ignored (counted as skipped). */
void veil_checkpoint_reader_add(struct veil_checkpoint_reader *r,
                                const void *key, size_t key_len,
                                const void *value, size_t value_len);
/** Bytes of checkpoint chunks held: a stage's chunks older than its
 *  newest complete, verified checkpoint are freed as they are read, so
 *  this stays near one or two checkpoints however long the log is. */
size_t veil_checkpoint_reader_bytes(const struct veil_checkpoint_reader *r);
/** Restores each stage from the newest checkpoint of it whose chunks are
 *  all present and whose checksum matches; an incomplete or corrupt one is
 *  skipped with a warning. *next_seq is one more than the largest sequence
 *  number seen (1 when none); *n_restored counts restored stages. A stage
 *  whose restore hook refuses a verified checkpoint fails the call. */
int veil_checkpoint_reader_restore(struct veil_checkpoint_reader *r,
                                   struct veil_pipeline *p, uint64_t *next_seq,
                                   size_t *n_restored, char *errstr,
                                   size_t errstr_size);

#endif

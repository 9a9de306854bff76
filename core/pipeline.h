/*
 * pipeline.h — one pipeline: its plugins, codecs and outputs, and the run of
 * one micro-batch through the chain. Knows nothing of Kafka: records come in
 * as bytes with their source position and leave through a sink, so the same
 * code serves `veil run` (Kafka), `veil replay` (in-process) and the tests.
 */
#ifndef VEIL_PIPELINE_H
#define VEIL_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "plugin.h"
#include "veil/veil.h"

struct veil_keyring;

/** Where a record came from (and, for dead letters, its original bytes). */
struct veil_source {
        const void *key;
        size_t key_len;
        const void *value;
        size_t value_len;
        const char *topic;
        int32_t partition;
        int64_t offset;
        int64_t timestamp_ms;
};

/** Why a record goes to the dead-letter topic. */
struct veil_dead_letter {
        const char *error;
        const char *stage; /**< "decode" or the stage's plugin name */
        const struct veil_source *src;
};

/** Receives every record the pipeline produces. `dl` is non-NULL for dead
 *  letters (then key/value are the original bytes). Returns 0; or
 *  -VEIL_EINVAL when the record can never be produced as it is (larger
 *  than the producer takes): nothing was produced, the run goes on, and
 *  the pipeline logs it and hands the error to the plugin that emitted the
 *  record (never for a dead letter: the sink sends one too large without
 *  its value); any other negative code: the output failed. */
struct veil_sink {
        int (*produce)(void *ctx, const char *topic, const void *key,
                       size_t key_len, const void *value, size_t value_len,
                       const struct veil_dead_letter *dl);
        void *ctx;
};

struct veil_stage_stats {
        uint64_t in, out, dropped, dead_letters;
        uint64_t errors; /**< failed calls and error log lines of the stage */
};

struct veil_pipeline_opts {
        char *const *extra_path; /**< searched after the YAML's plugin_path */
        size_t n_extra_path;
        struct veil_keyring *keyring; /**< borrowed; NULL: no pseudonyms */
        int lint_only; /**< load and validate, do not init plugins */
};

struct veil_pipeline;

int veil_pipeline_new(struct veil_pipeline **pp, const struct veil_config *cfg,
                      const struct veil_pipeline_opts *opts, char *errstr,
                      size_t errstr_size);
void veil_pipeline_destroy(struct veil_pipeline *p);
void veil_pipeline_set_sink(struct veil_pipeline *p, struct veil_sink sink);
/** The largest record the sink takes (the producer's message.max.bytes),
 *  for the line about a record it refused; 0 (the default): unknown. */
void veil_pipeline_set_max_record(struct veil_pipeline *p, size_t max_bytes);

/** Runs the checks of `veil lint` that need loaded plugins: outputs and side
 *  inputs bound and declared consistently, and the privacy lint
 *  (privacy_lint.h; one line per problem in errstr). */
int veil_pipeline_lint(struct veil_pipeline *p, char *errstr,
                       size_t errstr_size);

/** Starts a batch: applies queued erasures and access requests, resets the
 *  arena. Records added later must stay alive until batch_run returns. */
struct veil_batch *veil_pipeline_batch_begin(struct veil_pipeline *p);
/** Decodes a record into the batch; an undecodable one, or one with an id
 *  over VEIL_ID_MAX bytes or a time outside VEIL_TS_MAX_MS, goes to the
 *  dead-letter sink at once. Returns 1 when an event was added, 0 when
 *  dead-lettered, negative when the sink failed or memory ran out
 *  (-VEIL_ENOMEM: the record is not dead-lettered, the batch must fail);
 *  then veil_pipeline_add_error says why. */
int veil_pipeline_batch_add(struct veil_pipeline *p,
                            const struct veil_source *src);
/** Why the last veil_pipeline_batch_add returned negative. */
const char *veil_pipeline_add_error(const struct veil_pipeline *p);
/** Adds an already typed event (replay); strings are copied. The same
 *  checks; a dead letter then carries no record bytes. Returns as
 *  veil_pipeline_batch_add. */
int veil_pipeline_batch_add_event(struct veil_pipeline *p,
                                  const struct veil_event *ev);
/** Runs the chain over the batch and dead-letters what stages rejected.
 *  Negative when a stage or the sink failed, or when a stage went on after
 *  records it emitted were refused (-VEIL_EINVAL from the sink) without
 *  taking as many events out of the stream (veil_event_dead_letter or
 *  veil_event_drop) after them: the batch would otherwise be committed
 *  without those records. */
int veil_pipeline_batch_run(struct veil_pipeline *p, char *errstr,
                            size_t errstr_size);
/** Events in the batch being formed. */
size_t veil_pipeline_batch_size(const struct veil_pipeline *p);

/** Hands a side-input record to the plugins that read that input. Decode
 *  failures go to the dead-letter sink; running out of memory does not
 *  (-VEIL_ENOMEM and errstr: the caller must stop, not skip the record). Called between batches only (with
 *  no event added since the last batch_begin): once 4,096 erasure requests
 *  are held, it applies them as batch_begin does, so that a long catch-up
 *  holds no more (access requests wait for the batch: answered before the
 *  ledger has caught up, they could miss consent read later; only past
 *  4,096 of them are they answered here too). */
int veil_pipeline_side_record(struct veil_pipeline *p, size_t side,
                              const struct veil_source *src, char *errstr,
                              size_t errstr_size);

/* Introspection for the summary, the metrics and the tests. */
const struct veil_config *veil_pipeline_config(const struct veil_pipeline *p);
size_t veil_pipeline_n_stages(const struct veil_pipeline *p);
const char *veil_pipeline_stage_name(const struct veil_pipeline *p, size_t i);
const struct veil_plugin *veil_pipeline_stage_plugin(
        const struct veil_pipeline *p, size_t i);
struct veil_stage_stats veil_pipeline_stage_stats(const struct veil_pipeline *p,
                                                  size_t i);
/** A stage's state, for its checkpoint and restore hooks (checkpoint.c). */
void *veil_pipeline_stage_state(struct veil_pipeline *p, size_t i);
/** Marks this thread as running a callback of p's stages, until
 *  veil_pipeline_leave(the value returned): the SDK's functions that take
 *  a stage or a batch refuse calls from anywhere else. The host calls it
 *  around every plugin hook it calls (checkpoint.c too). */
struct veil_pipeline *veil_pipeline_enter(struct veil_pipeline *p);
void veil_pipeline_leave(struct veil_pipeline *prev);
uint64_t veil_pipeline_events_in(const struct veil_pipeline *p);
uint64_t veil_pipeline_decode_errors(const struct veil_pipeline *p);
uint64_t veil_pipeline_dead_letters(const struct veil_pipeline *p);
uint64_t veil_pipeline_output_count(const struct veil_pipeline *p,
                                    const char *output);
/** Drop reasons seen so far: the count and reason i with its count. */
size_t veil_pipeline_n_drop_reasons(const struct veil_pipeline *p);
const char *veil_pipeline_drop_reason(const struct veil_pipeline *p, size_t i,
                                      uint64_t *count);
/** Decoded events by tier after the chain (dropped ones included, dead
 *  letters not): what the consent stage decided. */
uint64_t veil_pipeline_tier_count(const struct veil_pipeline *p,
                                  veil_tier_t tier);
/** Erasures applied to every stage so far, and the largest and mean time
 *  from veil_request_erase to the last stage's erase (ms; may be NULL). */
uint64_t veil_pipeline_erasures(const struct veil_pipeline *p, double *max_ms,
                                double *mean_ms);
/** Of those, the erasures of what was held for training alone
 *  (veil_request_erase_training). */
uint64_t veil_pipeline_training_erasures(const struct veil_pipeline *p);
void veil_pipeline_privacy_spent(const struct veil_pipeline *p, double *eps,
                                 double *delta);
/** The budget a stage declared (veil_privacy_set_budget); 0 when none. */
int veil_pipeline_privacy_budget(const struct veil_pipeline *p, double *eps,
                                 double *delta);
/** A stage's gauges (veil_metric_set): the count, and gauge j's name and
 *  value. */
size_t veil_pipeline_stage_n_gauges(const struct veil_pipeline *p, size_t i);
const char *veil_pipeline_stage_gauge(const struct veil_pipeline *p, size_t i,
                                      size_t j, double *value);
/** Hands the running state of `from` to `to` before `to` replaces it (a
 *  reload): each stage of `to` restores the checkpoint of the stage of
 *  `from` that runs the same plugin at the same occurrence, when both have
 *  the hooks. A refused restore fails the whole transfer, so a stage never
 *  silently starts from nothing (a privacy accountant must not). Such a
 *  stage of `to` also takes the gauges of its predecessor that it has not
 *  set, until it sets them itself (/metrics keeps showing them). The
 *  erase and access requests `from` holds for its next batch move to
 *  `to`, which applies them when its first batch begins. */
int veil_pipeline_transfer(struct veil_pipeline *to,
                           struct veil_pipeline *from, char *errstr,
                           size_t errstr_size);
/** Swaps the erase and access requests waiting for the next batch of `to`
 *  and `from` (veil_pipeline_transfer gives `from`'s to `to`; a reload that
 *  fails after it gives them back). */
void veil_pipeline_take_requests(struct veil_pipeline *to,
                                 struct veil_pipeline *from);
/** The input codec (the demo encodes its replayed events with it). */
struct veil_codec *veil_pipeline_input_codec(struct veil_pipeline *p);
/** A stage's validated parameters and its YAML entry (for the lint). */
const veil_params_t *veil_pipeline_stage_params(const struct veil_pipeline *p,
                                                size_t i);
const struct veil_stage_cfg *veil_pipeline_stage_cfg(
        const struct veil_pipeline *p, size_t i);
/** The codec of a bound output, or NULL (dead_letter, or not bound). */
struct veil_codec *veil_pipeline_output_codec(struct veil_pipeline *p,
                                              const char *output);

#endif

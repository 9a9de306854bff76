/*
 * observe.h — what veil reports on /metrics: the metric families, and the
 * publisher that turns a pipeline's counts into them.
 *
 * A pipeline counts from zero and is replaced on a reload, while the
 * exported counters must only grow; so the publisher adds what changed
 * since it last looked, and starts over from zero for a new pipeline.
 */
#ifndef VEIL_OBSERVE_H
#define VEIL_OBSERVE_H

#include "metrics.h"
#include "pipeline.h"

/* Families the Kafka loop sets directly (declared by veil_observe_new). */
#define VEIL_M_RECORDS_IN "veil_records_in_total"
#define VEIL_M_PRODUCED "veil_records_produced_total"
#define VEIL_M_ACKED "veil_records_acked_total"
#define VEIL_M_RETRIED "veil_records_retried_total"
#define VEIL_M_COMMITS "veil_offset_commits_total"
#define VEIL_M_BATCHES "veil_batches_total"
#define VEIL_M_SIDE_RECORDS "veil_side_input_records_total"
#define VEIL_M_ASSIGNED "veil_consumer_assigned_partitions"
#define VEIL_M_LAG "veil_consumer_lag"
#define VEIL_M_QUEUE "veil_producer_queue_depth"
#define VEIL_M_INFLIGHT "veil_inflight_batches"
#define VEIL_M_HELD "veil_transaction_held_records"
#define VEIL_M_SIDE_CAUGHT_UP "veil_side_input_caught_up"
#define VEIL_M_SIDE_POSITION "veil_side_input_position"
#define VEIL_M_SIDE_END "veil_side_input_end_offset"
#define VEIL_M_BROKERS_UP "veil_brokers_up"
#define VEIL_M_READY "veil_ready"
#define VEIL_M_BATCH_SIZE "veil_batch_size"
#define VEIL_M_BATCH_SECONDS "veil_batch_duration_seconds"
#define VEIL_M_COMMIT_SECONDS "veil_batch_commit_latency_seconds"
#define VEIL_M_EVENT_SECONDS "veil_event_latency_seconds"
#define VEIL_M_RELOADS "veil_reloads_total"
#define VEIL_M_RELOAD_FAILURES "veil_reload_failures_total"

struct veil_observe;

/** Declares every family in `m` (borrowed; must outlive the publisher). */
int veil_observe_new(struct veil_observe **out, struct veil_metrics *m);
void veil_observe_destroy(struct veil_observe *o);
/** Adds what `p` counted since the last call; sets its gauges. */
void veil_observe_pipeline(struct veil_observe *o,
                           const struct veil_pipeline *p);
/** The next pipeline passed in is a new one: count it from zero. */
void veil_observe_reset(struct veil_observe *o);
/** The `stage` label of stage i: the plugin name, "#2"… for repeats. */
void veil_observe_stage_label(const struct veil_pipeline *p, size_t i,
                              char *buf, size_t size);

#endif

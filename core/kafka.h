/*
 * kafka.h — the pipeline on Kafka (librdkafka): a consumer group, side-input
 * consumers, an idempotent producer, and at-least-once delivery: a batch's
 * input offsets are committed only after every record it produced
 * (outputs and dead letters) is acknowledged by the broker. With
 * kafka.guarantee exactly-once the producer is transactional and each
 * batch's records commit atomically with its input offsets
 * (send_offsets_to_transaction), one batch at a time; what is produced
 * between batches (side-input dead letters, audit and access records) is
 * kept until its transaction commits and produced again after an abort.
 */
#ifndef VEIL_KAFKA_H
#define VEIL_KAFKA_H

#include <signal.h>
#include <stdint.h>

#include "pipeline.h"

struct veil_metrics;
struct veil_ops;
struct rd_kafka_s; /* rd_kafka_t */

/** Exactly-once: records produced between batches held for a redo
 *  (veil_kafka_stats.held) that make the side inputs' catch-up commit,
 *  and at which the side inputs pause until a transaction commits them. */
#define VEIL_KAFKA_HELD_MAX 10000

struct veil_kafka_stats {
        uint64_t batches;
        uint64_t records_in;   /**< input records consumed */
        uint64_t produced;     /**< records handed to the producer */
        uint64_t acked;        /**< records acknowledged by the broker */
        uint64_t retried;      /**< records produced again after a failure */
        uint64_t stashed;      /**< of those, produced again from the loop
                                    (the queue was full in the callback) */
        uint64_t commits;      /**< offset commits issued */
        uint64_t aborted;      /**< transactions aborted (exactly-once) */
        uint64_t side_records; /**< side-input records consumed */
        int side_caught_up;    /**< every side input reached its start end */
        /** Exactly-once: records produced between batches (side-input dead
         *  letters, audit and access records) held until a transaction
         *  that holds them commits, to produce again after an abort; and
         *  the most held at once. */
        uint64_t held, held_max;
        int assigned;          /**< partitions currently assigned */
};

struct veil_kafka_opts {
        const char *bootstrap; /**< overrides cfg->kafka.bootstrap (mock) */
        volatile sig_atomic_t *stop; /**< set by a signal handler */
        /** Called once per loop turn; returning 1 ends the run cleanly. */
        int (*should_stop)(void *ctx, const struct veil_kafka_stats *st);
        void *ctx;
        int shutdown_timeout_ms; /**< flush and commit at most this long */
        int max_inflight;        /**< unacknowledged batches, default 16 */
        /** Reading the state topic at start fails once nothing has
         *  arrived for this long (ms); 0: the default, the larger of 60 s
         *  and the producer's transaction.timeout.ms plus 15 s. For
         *  tests. */
        int state_idle_ms;

        /* Operations (all optional). */
        struct veil_metrics *metrics; /**< registry the loop publishes to */
        struct veil_ops *ops; /**< liveness, readiness, HTTP reloads */
        volatile sig_atomic_t *reload; /**< set by SIGHUP; cleared here */
        /** A reload at a batch boundary: builds the replacement pipeline,
         *  validated as `veil lint` does and started, or fails with a
         *  message (leaving nothing to close). */
        int (*reload_open)(void *ctx, const struct veil_pipeline *cur,
                           struct veil_pipeline **next, char *errstr,
                           size_t errstr_size);
        /** Ends an opened reload: swapped = 1 when the new pipeline now
         *  runs (free the old one), 0 when the old one stays (free the
         *  new one). */
        void (*reload_close)(void *ctx, int swapped);
        void *reload_ctx;
};

/** The process's exit code `code`, returned as it is; or, when a run left
 *  a consumer to the process exit (librdkafka #4312: one that joined a
 *  group and never got an assignment cannot be destroyed), exits here with
 *  it at once, without exit handlers, after flushing stdio. */
int veil_kafka_exit(int code);

/** Checks, once at start, that the state topic `topic` is compacted and
 *  takes batches of `min_bytes`, through the client `rk`: creates it
 *  compacted when it does not exist, warns when it is not compacted, and
 *  fails with a message naming the fix when its max.message.bytes is
 *  below `min_bytes`. A cluster that cannot answer within `timeout_ms` is
 *  logged and not checked. (state_topic.c) */
int veil_kafka_state_topic_check(struct rd_kafka_s *rk, const char *topic,
                                 size_t min_bytes, int timeout_ms,
                                 char *errstr, size_t errstr_size);

/** Runs until *stop, should_stop or a fatal error. Returns 0 after a clean
 *  shutdown (batch finished, outputs flushed, offsets committed, group
 *  left), negative with a message otherwise. `stats` may be NULL.
 *
 *  A reload (*reload or an HTTP request through ops) happens between two
 *  batches: the outputs of earlier batches are acknowledged and committed,
 *  the new pipeline takes over the stages' state (veil_pipeline_transfer)
 *  and re-reads the side inputs from the beginning — events wait until it
 *  has caught up, as at start-up — and the old one is closed. Any failure
 *  leaves the old pipeline running; it is logged and counted. After a
 *  reload `p` is no longer the running pipeline. */
int veil_kafka_run(struct veil_pipeline *p, const struct veil_kafka_opts *o,
                   struct veil_kafka_stats *stats, char *errstr,
                   size_t errstr_size);

#endif

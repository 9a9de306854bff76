/*
 * fault_lib.h — what the fault tests share: a pipeline run by the real host
 * (veil_kafka_run) on a thread, against librdkafka's mock cluster either in
 * this process or in a child (fault_broker, so that the cluster's memory
 * stays out of this process's RSS); a feeder of numbered events; and a
 * checker that reads the output topic and counts every event id.
 *
 * For a diagnosis: FAULT_DEBUG=1 logs at debug level (librdkafka's debug
 * lines too, with a `debug:` setting), FAULT_YAML=file runs another
 * pipeline file (e.g. fault.yaml with `debug: "eos,cgrp"`).
 */
#ifndef VEIL_FAULT_LIB_H
#define VEIL_FAULT_LIB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "kafka.h"

struct veil_config;
struct veil_keyring;
struct veil_pipeline;
struct veil_mock;
struct veil_ops;
struct rd_kafka_mock_cluster_s;
struct rd_kafka_message_s;

/* Kafka protocol ApiKeys (rdkafka_mock.h takes them as numbers). */
enum {
        API_PRODUCE = 0,
        API_FETCH = 1,
        API_OFFSET_COMMIT = 8,
        API_OFFSET_FETCH = 9,
        API_JOIN_GROUP = 11,
        API_INIT_PRODUCER_ID = 22,
        API_ADD_PARTITIONS_TO_TXN = 24,
        API_ADD_OFFSETS_TO_TXN = 25,
        API_END_TXN = 26,
        API_TXN_OFFSET_COMMIT = 28,
};

struct fault_opts {
        const char *yaml;      /**< default tests/fault/fault.yaml */
        int exactly_once;
        int brokers;           /**< default 1 */
        int partitions;        /**< of every topic, default 3 */
        int external;          /**< the cluster runs in a fault_broker child */
        const char *session_timeout_ms; /**< default: the YAML's */
        const char *message_timeout_ms; /**< default: the YAML's */
        const char *prefetch_kb; /**< queued.max.messages.kbytes */
        const char *queue_max; /**< queue.buffering.max.messages */
        const char *offset_reset; /**< auto.offset.reset, default earliest */
        int max_inflight;      /**< 0: the host's default */
        /** Exactly-once: a run goes on after an aborted transaction (by
         *  default it stops at once, see should_stop in fault_lib.c); for
         *  the tests whose abort is the point. */
        int allow_aborts;
        /** veil_kafka_opts.state_idle_ms (0: the host's default). */
        int state_idle_ms;
        /** A topic of in, out, recs, dlq not created at start, on a
         *  cluster that does not create topics when asked for them
         *  (in-process cluster only; the test creates it later with
         *  rd_kafka_mock_topic_create). */
        const char *missing_topic;
        /** topic.metadata.propagation.max.ms (default: the YAML's). */
        const char *propagation_ms;
        /** input.batch.max_wait_ms (default: the YAML's). */
        const char *max_wait_ms;
};

struct fault_env {
        struct fault_opts o;
        struct veil_mock *mock; /**< in-process cluster, or NULL */
        pid_t child;            /**< fault_broker, or 0 */
        FILE *to_child, *from_child;
        char bootstrap[256];
        char group[64];

        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        struct veil_ops *ops;

        /* The run: on its own thread; live counters for the test. */
        pthread_t th;
        int running;
        _Atomic long target;    /**< >0: stop once this many records are
                                     read and all produced acknowledged */
        _Atomic int stop;       /**< set by the test: end the run */
        /** Set by the test as veil's SIGTERM handler sets its flag
         *  (veil_kafka_opts.stop): the calls that wait on the brokers see
         *  it too, not only the loop. */
        volatile sig_atomic_t sigterm;
        _Atomic int ended;      /**< veil_kafka_run returned */
        _Atomic uint64_t records_in, produced, acked, retried, aborted,
                commits;
        double deadline;
        struct veil_kafka_stats st; /**< final */
        int rc;
        char err[1024];

        long fed; /**< events e1..e<fed> are in the input topic */
        /* The steady feeder (fault_feed_start). */
        pthread_t feed_th;
        int feeding, feed_rc;
        _Atomic int feed_stop;
        long feed_rate, feed_n;
        size_t feed_size;
        void *offsets_rk; /**< consumer that reads the committed offsets */

        /* Reloads: the run's reload_open builds the replacement pipeline
         * from o.yaml again (same keyring, as `veil run` keeps an
         * ephemeral one); reload_close destroys the one left out and, when
         * swapped, makes the new one e->p (and its configuration e->cfg). */
        volatile sig_atomic_t reload; /**< set: reload at the next batch
                                           boundary (cleared by the host) */
        _Atomic int reloads_opened, reloads_swapped, reloads_kept;
        long feed_on_reload; /**< >0: reload_open first feeds this many
                                  events (they wait in the input) */
        struct veil_config *next_cfg;
        struct veil_pipeline *next_p;
        /** Called on the run's thread at every should_stop with the live
         *  stats (also during a catch-up); returning 1 ends the run. */
        int (*hook)(struct fault_env *e, const struct veil_kafka_stats *st);
        void *hook_ctx;
};

struct fault_count {
        long records;   /**< output records read */
        long distinct;  /**< event ids seen at least once */
        long missing;   /**< of e1..e<fed> */
        long dups;      /**< records beyond the first of their event id */
        double secs;    /**< reading them took */
};

double now_s(void);
void sleep_ms(int ms);

/** Sets the environment the YAML reads, starts the cluster, creates the
 *  topics (in, out, recs, dlq) and builds the pipeline. */
struct fault_env *fault_env_new(const struct fault_opts *o);
void fault_env_free(struct fault_env *e);
/** A cmocka teardown that frees the fault_env in *state. */
int fault_env_teardown(void **state);
/** The in-process cluster (NULL when it runs in a child). */
struct rd_kafka_mock_cluster_s *fault_cluster(struct fault_env *e);
/** Sends a command to the fault_broker child; returns its answer's
 *  number (see fault_broker.c), negative on error. */
long fault_child_cmd(struct fault_env *e, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/** In-process cluster: every partition of `topic` led by `broker`, and
 *  the group's and the transactional id's coordinators on broker 1, so
 *  that errors injected into one broker's requests meet that topic's
 *  produce requests alone. */
void fault_lead(struct fault_env *e, const char *topic, int partitions,
                int broker);
/** Takes a broker down or up, wherever the cluster runs. */
void fault_broker_set(struct fault_env *e, int broker, int up);

/** Produces events e<fed+1>..e<fed+n> into "in"; each about `size` bytes
 *  (0: as the demo CSV has them). */
void fault_feed(struct fault_env *e, long n, size_t size);
/** Feeds events e<fed+1>.. at `per_s` a second on a thread, until
 *  fault_feed_stop() (which waits until they are all delivered). Its
 *  producer retries through outages. */
void fault_feed_start(struct fault_env *e, long per_s, size_t size);
void fault_feed_stop(struct fault_env *e);
/** The feeder itself (also run by fault_broker): returns 0 or -1. */
int fault_produce_events(const char *bootstrap, const char *topic,
                         long first, long n, size_t size, char *err,
                         size_t err_size);

/** Starts veil_kafka_run on a thread; it stops by itself once it has
 *  consumed `target` records and every produced record is acknowledged
 *  (or at the deadline, or when e->stop is set). */
void fault_run_start(struct fault_env *e, long target, double timeout_s);
/** Waits for the run to end; asserts it ended cleanly and in time. */
void fault_run_join(struct fault_env *e);
/* A consumer (read_committed, partition EOFs on) assigned to every
 * partition of `topic` from the beginning; the caller destroys it. */
struct rd_kafka_s *fault_reader(struct fault_env *e, const char *topic,
                                const char *group);
/* Reads every record of `topic` (each partition) to its end with a
 * fault_reader, calling each(m, i, ctx) for the i-th record (each may be
 * NULL); asserts every end was reached within 60 s. Returns the count. */
int fault_read_all(struct fault_env *e, const char *topic, const char *group,
                   void (*each)(const struct rd_kafka_message_s *m, int i,
                                void *ctx),
                   void *ctx);
/* The value of a record's last header `name` into buf ("" when none). */
/** A consent record (schemas/consent.avsc) that grants every purpose to
 *  `user`, encoded into *b (raw Avro; b reused across calls). */
struct veil_buf;
void fault_consent_grant(const char *user, struct veil_buf *b);
/** A right-of-access request (kind access) for `user`, into *b. */
void fault_consent_access(const char *user, struct veil_buf *b);
void fault_header(const struct rd_kafka_message_s *m, const char *name,
                  char *buf, size_t size);
/* Waits for a run that must fail: its error is in e->err. */
void fault_run_join_failed(struct fault_env *e);
/* The group's committed offset of "in" [partition]; negative: none. */
int64_t fault_committed(struct fault_env *e, int partition);
/** 1 when the host reports ready (what GET /readyz answers); `why` gets
 *  the reason otherwise. */
int fault_ready(struct fault_env *e, char *why, size_t why_size);
/** 1 when the group's committed offsets of "in" reach its end. */
int fault_all_committed(struct fault_env *e);

/** Reads "out" from the beginning (read_committed) and counts every event
 *  id of e1..e<fed>. */
void fault_count_out(struct fault_env *e, struct fault_count *c);
/** fault_count_out, printed as `what`; asserts every event is there
 *  exactly once. */
void fault_out_once(struct fault_env *e, const char *what);
/** Produces one record (key: a string) to `topic` and waits for it. */
void fault_produce(struct fault_env *e, const char *topic, const char *key,
                   const void *value, size_t len);
/** Produces one record to "in" with a producer that allows 2 MB. */
void fault_produce_big(struct fault_env *e, const char *key, size_t key_len,
                       const void *value, size_t len);
/** Produces event e<fed+1>, valid and of 1.1 MB (its type, which
 *  pseudonymize keeps; ids are capped at 512 bytes): read, its output is
 *  over the producer's message.max.bytes. Returns its size. */
size_t fault_big_event(struct fault_env *e);
/** n undecodable records into `topic`, keys g0..g<n-1>, by one
 *  producer. */
void fault_produce_garbage(struct fault_env *e, const char *topic, long n);
void fault_print_count(const char *what, const struct fault_env *e,
                       const struct fault_count *c);

/** This process's VmRSS or VmHWM in KiB ("VmRSS", "VmHWM"). */
long proc_kib(const char *field);

#endif

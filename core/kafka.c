#include "kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "kafka_guard.h"
#include "log.h"
#include "metrics.h"
#include "observe.h"
#include "ops.h"

/* A batch whose outputs are not all acknowledged yet. Batches complete in
 * order of creation only by coincidence, so offsets are committed strictly
 * from the front of this FIFO: a later batch never commits past an earlier
 * one that still waits. */
struct inflight {
        struct inflight *next;
        int64_t pending; /**< produced, not yet acknowledged */
        int sealed;      /**< all of the batch's records are produced */
        rd_kafka_topic_partition_list_t *offsets; /**< NULL: nothing to commit */
        int64_t formed_ms;  /**< for the commit latency */
        size_t n_ts;
        int64_t ts[];       /**< event times, for the end-to-end latency */
};

struct side_part {
        int32_t partition;
        int64_t high; /**< end offset when we started */
        int64_t pos;  /**< next offset to read */
        int done;
};

struct side_topic {
        const char *topic;
        size_t index; /**< in the pipeline's side inputs */
        struct side_part *parts; /**< grows: see refresh_sides */
        int n_parts;
};

/* How often the side topics' metadata is asked for partitions added since
 * they were opened, and how long the loop waits for the answer at most. */
#define SIDE_REFRESH_MS 10000
#define SIDE_REFRESH_TIMEOUT_MS 500

struct quiet {
        int64_t last_ms;
        uint64_t folded; /**< occurrences since the last line */
        int logged;
};

/* Exactly-once: a record produced between batches — a side input's dead
 * letter, an audit or access record — into the open transaction. Nothing
 * reads its source again when that transaction aborts (the side consumer
 * has moved on, the stage's state has changed), so it is kept until the
 * transaction commits and produced again in the next one after an abort.
 * NULL key or value pointers stay NULL (a tombstone's dead letter). */
struct kept {
        struct kept *next;
        const char *topic;
        const void *key, *value;
        size_t key_len, value_len;
        int dl; /**< a dead letter, with what its headers say: */
        const char *error, *stage, *src_topic;
        int32_t partition;
        int64_t offset, ts;
        char data[];
};

/* Exactly-once: a dead letter the broker refused as too large, by its
 * source and stage ("topic\npartition\noffset\nstage"). Its transaction
 * aborts; when the batch (or the kept records) produce it again it goes
 * without its value. */
struct bare {
        struct bare *next;
        char id[];
};
#define BARE_MAX 1024
/* Kept records, or how long a transaction is open, that make the
 * catch-up of the side inputs commit (catch_up). KEPT_MAX also bounds the
 * records held (kept and to redo) whatever the transactions do: at it, the
 * side inputs pause until one commits (side_hold); at-least-once, the
 * records stashed likewise. */
#define KEPT_MAX VEIL_KAFKA_HELD_MAX
#define CATCH_UP_TXN_MS 10000

struct kctx {
        struct veil_pipeline *p;
        const struct veil_config *cfg;
        const struct veil_kafka_opts *o;
        struct veil_kafka_stats st;
        rd_kafka_t *consumer, *producer, *side;
        int ever_assigned; /**< the group gave us an assignment once */
        struct side_topic *sides;
        size_t n_sides;
        int64_t sides_checked_ms; /**< last metadata refresh (refresh_sides) */

        struct inflight *head, *tail;
        int n_inflight;
        struct inflight *cur; /**< batch being produced; opaque of records */
        /* Records a delivery report produces again while the producer's
         * queue is full: waiting for room there would mean polling from
         * inside the callback (nested, as deep as the reports queued; the
         * librdkafka maintainers advise against it), so they wait here for
         * the loop's next poll (produce_stashed). Counted as pending in
         * their batch meanwhile, so it is not committed. */
        struct stashed *stash, **stash_tail;
        size_t n_stash;
        int in_dr; /**< inside dr_cb */
        /* A topic the cluster says does not exist (and will not
         * create), "" when none; readiness names it. At-least-once, its
         * records wait in the stash like an output that is down, and
         * every record after them too (in order), until it is created;
         * exactly-once, the input waits (eos_wait_topic). */
        char missing[256];

        /* At-least-once commits, one request at a time (see commit_send):
         * the offsets acknowledged since, and the request in flight. */
        rd_kafka_queue_t *commit_q; /**< serves commit_done */
        rd_kafka_topic_partition_list_t *to_commit, *committing;
        int64_t commit_retry_ms; /**< after a failure: not before then */
        /* Warnings an outage repeats for every record or every commit. */
        struct quiet redeliver_warn, commit_warn;

        rd_kafka_message_t **msgs; /**< input records of the open batch */
        size_t n_msgs, cap_msgs;
        int64_t first_ms; /**< when the open batch's first record came */

        int fatal;
        char err[1024];
        int shutdown_ms; /**< o->shutdown_timeout_ms, defaulted */

        /* Exactly-once: one transaction at a time, opened by the first
         * record produced (or the batch's offsets) and committed with the
         * batch's input offsets. */
        int eos;
        int txn_open;
        /* The open transaction failed while records went into it:
         * librdkafka refused one (ERR__STATE, see produce_try), so it must
         * not commit; eos_commit aborts it. */
        int txn_doomed;
        int64_t txn_begun_ms;
        int64_t stop_ms; /**< when a stop request was first seen (txn_retry) */
        int rewind; /**< dropped read records: seek back before reading */
        int paused; /**< input partitions paused (backpressure) */

        /* Operations: metrics, readiness, reloads. */
        struct veil_batch *batch; /**< the pipeline's open batch */
        struct veil_observe *obs; /**< NULL without a registry */
        int subscribed;
        int brokers_up;           /**< from statistics; -1 unknown */
        /* Why the loop is stuck waiting on the brokers, "" when it is not:
         * a transactional call failing again and again, or outputs not
         * acknowledged for a while. brokers_up cannot tell: statistics
         * are served by polling the consumer, which these waits do not
         * do, so it would say "up" all through an outage. */
        char stalled[512];
        int64_t last_publish_ms, last_lag_ms;
        uint64_t rebalances;   /**< assignment changes so far */
        uint64_t lag_rebalances; /**< the one the lag series are for */
        /* Checkpoints (the state: section): their numbers and key sets,
         * and when the last one was produced. At-least-once, their records
         * count in ck_flight (while ck_producing): a checkpoint is in the
         * log once they are all acknowledged (save_state). */
        struct veil_checkpoint_config ck;
        struct veil_checkpoint_writer *ckw;
        struct inflight *ck_flight;
        int ck_producing;
        int64_t ck_last_ms;
        /* Exactly-once: what was produced between batches into the open
         * transaction, and after an abort what is to produce again (see
         * struct kept); records not to keep (checkpoints: the next one
         * supersedes an aborted one). */
        struct kept *kept, **kept_tail, *redo;
        size_t n_kept, n_redo; /**< their lengths (st.held: the sum) */
        int no_keep;
        int sides_paused; /**< side inputs paused: KEPT_MAX held (kept
                              and to redo, or stashed) */
        struct bare *bare; /**< newest first */
        size_t n_bare;
        size_t bare_txn; /**< refused as too large in the open transaction */
        /* Exactly-once: per partition, the first offset read into the open
         * transaction: where eos_rewind goes back to on a partition that
         * has no committed offset yet. */
        rd_kafka_topic_partition_list_t *txn_from;
        /* Side-input dead letters: never committed, only waited for. Last,
         * because struct inflight ends in a flexible array. */
        struct inflight side_flight;
};

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An outage makes some warnings repeat for every record in flight (tens of
 * thousands a round) or every partition's commit each second: logged once
 * per QUIET_MS with how many occurrences the line stands for, so the log
 * says what is wrong without burying everything else (the records produced
 * again are also counted in veil_records_retried_total). Returns 1 with *n
 * when a line is due. */
#define QUIET_MS 10000
static int quiet_due(struct quiet *q, uint64_t *n) {
        q->folded++;
        int64_t t = now_ms();
        if (q->logged && t - q->last_ms < QUIET_MS)
                return 0;
        *n = q->folded;
        q->folded = 0;
        q->last_ms = t;
        q->logged = 1;
        return 1;
}

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_fatal(struct kctx *k, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void set_fatal(struct kctx *k, const char *fmt, ...) {
        if (k->fatal)
                return;
        k->fatal = 1;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(k->err, sizeof(k->err), fmt, ap);
        va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Producing                                                          */
/* ------------------------------------------------------------------ */

static int eos_begin(struct kctx *k) {
        if (k->txn_open)
                return 0;
        rd_kafka_error_t *e = rd_kafka_begin_transaction(k->producer);
        if (e) {
                set_fatal(k, "cannot begin a transaction: %s",
                          rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                return -VEIL_EIO;
        }
        k->txn_open = 1;
        k->txn_doomed = 0;
        k->bare_txn = 0;
        k->txn_begun_ms = now_ms();
        return 0;
}

struct stashed {
        struct stashed *next;
        rd_kafka_headers_t *hdrs; /**< ours until produced */
        struct inflight *f;
        size_t key_len, value_len;
        int has_key, has_value;
        char *key, *value, topic[];
};

static rd_kafka_resp_err_t produce_once(struct kctx *k, const char *topic,
                                        const void *key, size_t key_len,
                                        const void *value, size_t value_len,
                                        rd_kafka_headers_t *hdrs,
                                        struct inflight *f) {
        if (hdrs)
                return rd_kafka_producev(
                        k->producer, RD_KAFKA_V_TOPIC(topic),
                        RD_KAFKA_V_KEY(key, key_len),
                        RD_KAFKA_V_VALUE((void *)value, value_len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(f),
                        RD_KAFKA_V_END);
        return rd_kafka_producev(k->producer, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_VALUE((void *)value, value_len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_OPAQUE(f), RD_KAFKA_V_END);
}

/* A copy of the record for produce_stashed; 0, or -1 out of memory. */
static int stash(struct kctx *k, const char *topic, const void *key,
                 size_t key_len, const void *value, size_t value_len,
                 rd_kafka_headers_t *hdrs, struct inflight *f) {
        size_t tl = strlen(topic) + 1;
        struct stashed *r = calloc(1, sizeof(*r) + tl);
        if (!r)
                return -1;
        memcpy(r->topic, topic, tl);
        r->has_key = key != NULL;
        r->has_value = value != NULL;
        r->key_len = key_len;
        r->value_len = value_len;
        if ((key && !(r->key = malloc(key_len ? key_len : 1))) ||
            (value && !(r->value = malloc(value_len ? value_len : 1)))) {
                free(r->key);
                free(r);
                return -1;
        }
        if (key_len)
                memcpy(r->key, key, key_len);
        if (value_len)
                memcpy(r->value, value, value_len);
        r->hdrs = hdrs;
        r->f = f;
        *k->stash_tail = r;
        k->stash_tail = &r->next;
        k->n_stash++;
        return 0;
}

/* The topic does not exist and the cluster does not create it
 * (auto.create.topics.enable=false): librdkafka fails what it queued for
 * the topic after topic.metadata.propagation.max.ms (in the delivery
 * report, as ERR_UNKNOWN_TOPIC_OR_PART or ERR__UNKNOWN_TOPIC), and then
 * refuses new records for it at once (ERR__UNKNOWN_TOPIC). */
static int unknown_topic(rd_kafka_resp_err_t err) {
        return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
               err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

/* Out of memory for a record that would wait: the host stops (the batch
 * is not committed). */
static rd_kafka_resp_err_t stash_failed(struct kctx *k, const char *topic) {
        set_fatal(k, "out of memory keeping a record for topic '%s' until "
                  "it can be produced", topic);
        return RD_KAFKA_RESP_ERR__FAIL;
}

/* A record refused for a topic that does not exist: said once, until the
 * topic's records go again. */
static void missing_topic(struct kctx *k, const char *topic) {
        if (!strcmp(k->missing, topic))
                return;
        snprintf(k->missing, sizeof(k->missing), "%s", topic);
        veil_log_host(VEIL_LOG_WARN, NULL,
                      "topic '%s' does not exist: %s, until it is created "
                      "(create it, or let the cluster create topics: "
                      "auto.create.topics.enable)",
                      topic,
                      k->eos ? "the transaction is aborted, and the input "
                               "waits"
                             : "its records wait and are produced again, "
                               "and nothing is committed past them");
}

static void stashed_free(struct stashed *r) {
        if (r->hdrs)
                rd_kafka_headers_destroy(r->hdrs);
        free(r->key);
        free(r->value);
        free(r);
}

/* The size librdkafka holds a record to against message.max.bytes
 * (rd_kafka_msg_new0, before it queues it): key, value, each header's name
 * and value with their lengths as zigzag varints, and the most a v2 record
 * adds around them (RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD, 36 bytes). */
static size_t varint_len(size_t n) {
        uint64_t z = (uint64_t)n << 1; /* zigzag of a length */
        size_t len = 1;
        while (z >= 0x80) {
                z >>= 7;
                len++;
        }
        return len;
}

static size_t record_size(const void *key, size_t key_len, const void *value,
                          size_t value_len, const rd_kafka_headers_t *hdrs) {
        size_t n = 36 + (key ? key_len : 0) + (value ? value_len : 0);
        const char *name;
        const void *v;
        size_t vl;
        for (size_t i = 0;
             hdrs && !rd_kafka_header_get_all(hdrs, i, &name, &v, &vl); i++)
                n += strlen(name) + vl + varint_len(strlen(name)) +
                     varint_len(vl);
        return n;
}

static size_t producer_max_bytes(rd_kafka_t *rk);
/* Hands one record to the producer; the error librdkafka gave, or
 * NO_ERROR. On success the headers are librdkafka's (or the stash's, or
 * freed: a record for a transaction that failed already), otherwise still
 * the caller's. A full local queue is waited out, but not
 * past a stop request: with an output down that wait has no end, and the
 * batch is read again anyway, since it is never committed. Inside a
 * delivery report the record is stashed instead (struct kctx). */
static void produce_stashed(struct kctx *k);
static rd_kafka_resp_err_t produce_try(struct kctx *k, const char *topic,
                                       const void *key, size_t key_len,
                                       const void *value, size_t value_len,
                                       rd_kafka_headers_t *hdrs,
                                       struct inflight *f) {
        for (;;) {
                /* Behind records that wait for their topic, in order
                 * (two records of one key must not swap), unless the
                 * topic has come since. */
                if (k->missing[0]) {
                        produce_stashed(k);
                        if (k->stash) {
                                /* Refused now if too large, as librdkafka
                                 * would: the callers then leave a dead
                                 * letter's value out or tell the plugin
                                 * (-VEIL_EINVAL). Found only once the topic
                                 * exists (produce_stashed), it was too late
                                 * for either and stopped the host. */
                                size_t mx = producer_max_bytes(k->producer);
                                if (mx && record_size(key, key_len, value,
                                                      value_len, hdrs) > mx)
                                        return RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
                                if (stash(k, topic, key, key_len, value,
                                          value_len, hdrs, f))
                                        return stash_failed(k, topic);
                                f->pending++;
                                k->st.produced++;
                                return RD_KAFKA_RESP_ERR_NO_ERROR;
                        }
                }
                rd_kafka_resp_err_t err = produce_once(
                        k, topic, key, key_len, value, value_len, hdrs, f);
                if (err == RD_KAFKA_RESP_ERR__STATE && k->eos &&
                    k->txn_open) {
                        /* Exactly-once: the open transaction has already
                         * failed (an abortable error: a partition the
                         * coordinator did not add to it, a delivery that
                         * failed) and librdkafka takes no more records
                         * into it. Nothing of it will be visible, so the
                         * record is as good as produced into it: the
                         * transaction is aborted instead of committed
                         * (eos_commit) and the record comes again, a
                         * batch's from the rewound input, one produced
                         * between batches from its copy (struct kept).
                         * This used to stop the host (exit 1), so that a
                         * broker aborting transactions became a crash
                         * loop. */
                        if (hdrs)
                                rd_kafka_headers_destroy(hdrs);
                        k->txn_doomed = 1;
                        return RD_KAFKA_RESP_ERR_NO_ERROR;
                }
                if (unknown_topic(err) && k->eos && k->txn_open) {
                        /* Exactly-once: the transaction cannot commit
                         * without the record, so, as above, it is aborted
                         * and the record comes again; the loop then waits
                         * for the topic (eos_wait_topic) rather than
                         * process the input again into one more abort. */
                        missing_topic(k, topic);
                        if (hdrs)
                                rd_kafka_headers_destroy(hdrs);
                        k->txn_doomed = 1;
                        return RD_KAFKA_RESP_ERR_NO_ERROR;
                }
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && k->in_dr) {
                        if (stash(k, topic, key, key_len, value, value_len,
                                  hdrs, f))
                                return err; /* out of memory: fatal */
                        k->st.stashed++;
                        err = RD_KAFKA_RESP_ERR_NO_ERROR;
                } else if (unknown_topic(err) && !k->eos) {
                        /* At-least-once: an output that is down, not a
                         * reason to stop. Pending in its batch, so the
                         * batch is not committed while it waits. */
                        missing_topic(k, topic);
                        if (stash(k, topic, key, key_len, value, value_len,
                                  hdrs, f))
                                return stash_failed(k, topic);
                        err = RD_KAFKA_RESP_ERR_NO_ERROR;
                }
                if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        f->pending++;
                        k->st.produced++;
                        return err;
                }
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
                    (k->o->stop && *k->o->stop))
                        return err;
                /* Backpressure: serve delivery reports until the local
                 * queue has room. */
                rd_kafka_poll(k->producer, 50);
                produce_stashed(k);
        }
}

/* A record the producer did not take: the run stops (except an output
 * too large, see sink_records). */
static int produce_failed(struct kctx *k, const char *topic,
                          rd_kafka_resp_err_t err, size_t key_len,
                          size_t value_len) {
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
                set_fatal(k, "cannot produce a record of %zu bytes to topic "
                          "'%s': %s (raise the producer's message.max.bytes "
                          "in kafka.settings and the topic's "
                          "max.message.bytes)",
                          key_len + value_len, topic, rd_kafka_err2str(err));
        else
                set_fatal(k, "cannot produce to topic '%s': %s", topic,
                          rd_kafka_err2str(err));
        return -VEIL_EIO;
}

static int produce_dl_bare(struct kctx *k, const char *topic, const void *key,
                           size_t key_len, size_t value_len,
                           const rd_kafka_headers_t *h, struct inflight *f);
/* Whether a record is a dead letter whose value (or key) can be left out:
 * it carries veil.error (produce_dl). */
#define BARE_KEY_MAX 1024
static int dl_can_bare(const rd_kafka_headers_t *h, size_t key_len,
                       size_t value_len) {
        const void *v;
        size_t l;
        return h && (value_len || key_len > BARE_KEY_MAX) &&
               !rd_kafka_header_get_last(h, "veil.error", &v, &l);
}

/* The stashed records, in order, as far as the queue has room; called
 * after the loop's polls, never from a callback. A record already counts
 * as pending and produced (produce_try). */
static void produce_stashed(struct kctx *k) {
        while (k->stash && !k->in_dr && !k->fatal) {
                struct stashed *r = k->stash;
                rd_kafka_resp_err_t err = produce_once(
                        k, r->topic, r->has_key ? r->key : NULL, r->key_len,
                        r->has_value ? r->value : NULL, r->value_len,
                        r->hdrs, r->f);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        return;
                if (unknown_topic(err) && !k->eos) {
                        /* Still missing: again at the next poll. */
                        missing_topic(k, r->topic);
                        return;
                }
                if (!(k->stash = r->next))
                        k->stash_tail = &k->stash;
                k->n_stash--;
                if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        r->hdrs = NULL; /* librdkafka's now */
                } else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE &&
                           dl_can_bare(r->hdrs, r->key_len, r->value_len)) {
                        /* A dead letter too large: without its value, as
                         * produce_dl sends one (counted again there). */
                        if (produce_dl_bare(k, r->topic,
                                            r->has_key ? r->key : NULL,
                                            r->key_len, r->value_len, r->hdrs,
                                            r->f) == 0) {
                                k->st.produced--;
                                r->f->pending--;
                        }
                } else {
                        /* Still pending: its batch is never committed. */
                        produce_failed(k, r->topic, err, r->key_len,
                                       r->value_len);
                }
                stashed_free(r);
        }
}

static int produce_raw(struct kctx *k, const char *topic, const void *key,
                       size_t key_len, const void *value, size_t value_len,
                       rd_kafka_headers_t *hdrs, struct inflight *f) {
        rd_kafka_resp_err_t err =
                produce_try(k, topic, key, key_len, value, value_len, hdrs, f);
        if (!err)
                return 0;
        if (hdrs)
                rd_kafka_headers_destroy(hdrs);
        return produce_failed(k, topic, err, key_len, value_len);
}

/* A dead letter the topic refuses as too large (its headers come on top of
 * a record that may have been just under the input's limit) goes again
 * without its value: the headers still say what failed and where the
 * record is (topic, partition, offset), and a record that can never be
 * dead-lettered would otherwise stop the stream at every start. A key over
 * BARE_KEY_MAX is left out too (a key alone can be near the limit), so
 * that a bare dead letter is always small enough to go. */
static int produce_dl_bare(struct kctx *k, const char *topic, const void *key,
                           size_t key_len, size_t value_len,
                           const rd_kafka_headers_t *h, struct inflight *f) {
        rd_kafka_headers_t *c = rd_kafka_headers_copy(h);
        const void *v = NULL;
        size_t vl = 0;
        char why[1024], size[24], key_size[24], also[64] = "";
        int no_key = key_len > BARE_KEY_MAX;
        if (rd_kafka_header_get_last(c, "veil.error", &v, &vl))
                v = "", vl = 0;
        if (no_key)
                snprintf(also, sizeof(also), " and its key (%zu bytes)",
                         key_len);
        snprintf(why, sizeof(why),
                 "%.*s; the dead letter was too large for topic '%s', so "
                 "its value (%zu bytes)%s %s left out: read it at the "
                 "source offset",
                 (int)(vl < 700 ? vl : 700), (const char *)v, topic,
                 value_len, also, no_key ? "are" : "is");
        snprintf(size, sizeof(size), "%zu", value_len);
        rd_kafka_header_remove(c, "veil.error");
        rd_kafka_header_add(c, "veil.error", -1, why, -1);
        rd_kafka_header_add(c, "veil.value.size", -1, size, -1);
        if (no_key) {
                snprintf(key_size, sizeof(key_size), "%zu", key_len);
                rd_kafka_header_add(c, "veil.key.size", -1, key_size, -1);
        }
        veil_log_host(VEIL_LOG_WARN, NULL,
                      "a dead letter of %zu bytes is too large for topic "
                      "'%s': produced without its value%s",
                      key_len + value_len, topic,
                      no_key ? " and its key" : "");
        return produce_raw(k, topic, no_key ? NULL : key, no_key ? 0 : key_len,
                           NULL, 0, c, f);
}

/* ------------------------------------------------------------------ */
/* Exactly-once: kept records and bare dead letters                   */
/* ------------------------------------------------------------------ */

static const void *kept_copy(char **at, const void *src, size_t n) {
        if (!src)
                return NULL;
        char *d = *at;
        if (n)
                memcpy(d, src, n);
        *at += n;
        return d;
}

static const char *kept_str(char **at, const char *s) {
        return kept_copy(at, s ? s : "", strlen(s ? s : "") + 1);
}

/* How many records are held for a redo (struct kept), and the most ever:
 * what the loop bounds them by, for the stats and /metrics. */
static void held_note(struct kctx *k) {
        k->st.held = k->n_kept + k->n_redo;
        if (k->st.held > k->st.held_max)
                k->st.held_max = k->st.held;
}

/* A copy of a record just produced between batches, until its transaction
 * commits. */
static int keep(struct kctx *k, const char *topic, const void *key,
                size_t key_len, const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        size_t n = strlen(topic) + 1 + key_len + value_len;
        if (dl)
                n += strlen(dl->error ? dl->error : "") + 1 +
                     strlen(dl->stage ? dl->stage : "") + 1 +
                     strlen(dl->src->topic ? dl->src->topic : "") + 1;
        struct kept *r = calloc(1, sizeof(*r) + n);
        if (!r) {
                set_fatal(k, "out of memory keeping a record produced "
                             "between batches until its transaction "
                             "commits");
                return -VEIL_ENOMEM;
        }
        char *at = r->data;
        r->topic = kept_str(&at, topic);
        r->key = kept_copy(&at, key, key_len);
        r->key_len = key_len;
        r->value = kept_copy(&at, value, value_len);
        r->value_len = value_len;
        if (dl) {
                r->dl = 1;
                r->error = kept_str(&at, dl->error);
                r->stage = kept_str(&at, dl->stage);
                r->src_topic = kept_str(&at, dl->src->topic);
                r->partition = dl->src->partition;
                r->offset = dl->src->offset;
                r->ts = dl->src->timestamp_ms;
        }
        *k->kept_tail = r;
        k->kept_tail = &r->next;
        k->n_kept++;
        held_note(k);
        return 0;
}

static void kept_free(struct kept *r) {
        while (r) {
                struct kept *next = r->next;
                free(r);
                r = next;
        }
}

/* The open transaction committed (free) or aborted (to produce again). */
static void kept_done(struct kctx *k, int committed) {
        if (committed) {
                kept_free(k->kept);
        } else if (k->kept) {
                struct kept **end = &k->redo;
                while (*end)
                        end = &(*end)->next;
                *end = k->kept;
                k->n_redo += k->n_kept;
        }
        k->kept = NULL;
        k->kept_tail = &k->kept;
        k->n_kept = 0;
        held_note(k);
}

/* A dead letter's identity in the bare list: its source and stage, as its
 * headers spell them. */
static void dl_id(char *buf, size_t size, const char *topic, int tl,
                  const char *part, int pl, const char *off, int ol,
                  const char *stage, int sl) {
        snprintf(buf, size, "%.*s\n%.*s\n%.*s\n%.*s", tl, topic, pl, part, ol,
                 off, sl, stage);
}

static int bare_has(const struct kctx *k, const char *id) {
        for (const struct bare *b = k->bare; b; b = b->next)
                if (!strcmp(b->id, id))
                        return 1;
        return 0;
}

/* Beyond BARE_MAX the oldest entry goes: one whose record never comes back
 * here (its partition went to another instance). Meeting it again would
 * cost one more abort, nothing else. One transaction refusing more than
 * BARE_MAX is fatal (bare_refused). */
static int bare_add(struct kctx *k, const char *id) {
        if (bare_has(k, id))
                return 0;
        size_t n = strlen(id) + 1;
        struct bare *b = malloc(sizeof(*b) + n);
        if (!b)
                return -1;
        memcpy(b->id, id, n);
        b->next = k->bare;
        k->bare = b;
        if (++k->n_bare > BARE_MAX) {
                struct bare **last = &k->bare;
                while ((*last)->next)
                        last = &(*last)->next;
                free(*last);
                *last = NULL;
                k->n_bare--;
        }
        return 0;
}

static const char *header_or(const rd_kafka_headers_t *h, const char *name,
                             int *len) {
        const void *v;
        size_t l;
        if (rd_kafka_header_get_last(h, name, &v, &l) || !v) {
                *len = 0;
                return "";
        }
        *len = (int)l;
        return v;
}

/* Exactly-once: the broker refused dead letter (headers h) as too large.
 * Its transaction has failed already (commit_transaction() reports it and
 * the transaction is aborted, see txn_failed); the batch, read again, or
 * the kept records produce the dead letter again, and this makes it go
 * without its value then. Resending it bare here, as at-least-once does,
 * would not help: nothing of an aborted transaction becomes visible. */
static void bare_refused(struct kctx *k, const char *topic, size_t len,
                         const rd_kafka_headers_t *h) {
        int tl, pl, ol, sl;
        const char *t = header_or(h, "veil.source.topic", &tl),
                   *p = header_or(h, "veil.source.partition", &pl),
                   *o = header_or(h, "veil.source.offset", &ol),
                   *s = header_or(h, "veil.stage", &sl);
        char id[1024];
        dl_id(id, sizeof(id), t, tl, p, pl, o, ol, s, sl);
        /* More than the list holds, in one transaction: its first ones
         * would be evicted by the last, go with their value again in the
         * next pass, be refused again, and the batch abort for ever (the
         * privacy budget charged every pass). A topic that refuses that
         * many is a setting to fix. */
        if (++k->bare_txn > BARE_MAX) {
                set_fatal(k, "exactly-once: more than %d dead letters in "
                          "one transaction were refused as too large for "
                          "topic '%s' (its max.message.bytes is below the "
                          "producer's message.max.bytes of %zu): raise the "
                          "topic's max.message.bytes to at least that, or "
                          "set kafka.settings message.max.bytes to at most "
                          "the topic's limit, so that the producer sends "
                          "such dead letters without their value at once",
                          BARE_MAX, topic, producer_max_bytes(k->producer));
                return;
        }
        if (bare_add(k, id)) {
                set_fatal(k, "out of memory after a dead letter too large "
                             "for topic '%s'", topic);
                return;
        }
        veil_log_host(VEIL_LOG_WARN, NULL,
                      "a dead letter of %zu bytes (from %.*s [%.*s] at "
                      "offset %.*s) is too large for topic '%s': the "
                      "transaction is aborted and the dead letter produced "
                      "again without its value",
                      len, tl, t, pl, p, ol, o, topic);
}

/* A dead letter: the record as it came, with headers that say why and
 * where from. */
static int produce_dl(struct kctx *k, const char *topic, const void *key,
                      size_t key_len, const void *value, size_t value_len,
                      const struct veil_dead_letter *dl, struct inflight *f) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(5);
        const char *src_topic = dl->src->topic ? dl->src->topic : "";
        char part[16], off[24];
        snprintf(part, sizeof(part), "%d", (int)dl->src->partition);
        snprintf(off, sizeof(off), "%lld", (long long)dl->src->offset);
        rd_kafka_header_add(h, "veil.error", -1, dl->error, -1);
        rd_kafka_header_add(h, "veil.stage", -1, dl->stage, -1);
        rd_kafka_header_add(h, "veil.source.topic", -1, src_topic, -1);
        rd_kafka_header_add(h, "veil.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "veil.source.offset", -1, off, -1);
        /* Refused by the broker before (exactly-once, bare_refused): as if
         * the producer had refused it, without trying again. */
        int refused = 0;
        if (k->bare && (value_len || key_len > BARE_KEY_MAX)) {
                char id[1024];
                dl_id(id, sizeof(id), src_topic, (int)strlen(src_topic), part,
                      (int)strlen(part), off, (int)strlen(off), dl->stage,
                      (int)strlen(dl->stage));
                refused = bare_has(k, id);
        }
        rd_kafka_resp_err_t err =
                refused ? RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
                        : produce_try(k, topic, key, key_len, value,
                                      value_len, h, f);
        if (!err)
                return 0;
        int rc = err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE &&
                                 (value_len || key_len > BARE_KEY_MAX)
                         ? produce_dl_bare(k, topic, key, key_len, value_len,
                                           h, f)
                         : produce_failed(k, topic, err, key_len, value_len);
        rd_kafka_headers_destroy(h);
        return rc;
}

/* A record of the pipeline: an output (a plugin's or the host's access
 * record) or a dead letter. An output the producer refuses as too large
 * (over message.max.bytes) can never be produced as it is, and it is the
 * answer to one input: failing the batch would read that input again at
 * every start and stop the host again, so it is not fatal here. The
 * caller gets -VEIL_EINVAL (nothing was produced, nothing is pending) and
 * the pipeline tells the plugin, whose event goes to the dead-letter topic
 * (pipeline.c: a stage that goes on without doing so fails the batch).
 * Every other refusal stays fatal. Checkpoints and the records an abort
 * left to produce again do not come here (sink_strict). */
static int sink_records(struct kctx *k, const char *topic, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        const struct veil_dead_letter *dl, int refusable) {
        struct inflight *f = k->cur ? k->cur
                           : k->ck_producing && k->ck_flight ? k->ck_flight
                                                              : &k->side_flight;
        /* Records produced between batches (side-input dead letters, audit
         * and access records) commit with the next batch's transaction,
         * and are kept until it does: the input's rewind after an abort
         * does not bring them back. */
        if (k->eos && eos_begin(k))
                return -VEIL_EIO;
        int rc;
        if (dl) {
                rc = produce_dl(k, topic, key, key_len, value, value_len, dl,
                                f);
        } else {
                rd_kafka_resp_err_t err = produce_try(
                        k, topic, key, key_len, value, value_len, NULL, f);
                if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && refusable)
                        return -VEIL_EINVAL; /* logged by the pipeline */
                rc = err ? produce_failed(k, topic, err, key_len, value_len)
                         : 0;
        }
        if (!rc && k->eos && !k->cur && !k->no_keep)
                rc = keep(k, topic, key, key_len, value, value_len, dl);
        return rc;
}

static int sink_produce(void *ctx, const char *topic, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        const struct veil_dead_letter *dl) {
        return sink_records(ctx, topic, key, key_len, value, value_len, dl,
                            1);
}

/* Checkpoints, and the kept records an abort left (eos_redo): a refusal
 * stops the host as before. A checkpoint chunk too large is the state:
 * section's configuration (message.max.bytes below the chunk size), not
 * an input's fault; a kept record was taken by the producer once. */
static int sink_strict(void *ctx, const char *topic, const void *key,
                      size_t key_len, const void *value, size_t value_len,
                      const struct veil_dead_letter *dl) {
        return sink_records(ctx, topic, key, key_len, value, value_len, dl,
                            0);
}

/* A checkpoint record at its largest: a chunk, its 17-byte header, a key
 * ("<group>/<stage>/<chunk>", the group at most 249 bytes) and what the
 * producer counts around them. */
#define CKPT_RECORD_MAX (VEIL_CKPT_CHUNK + 17 + 512 + 512)

/* The producer's largest record (message.max.bytes), for the pipeline's
 * line about a record refused as too large; 0 when unknown. */
static size_t producer_max_bytes(rd_kafka_t *rk) {
        char buf[32];
        size_t n = sizeof(buf);
        if (!rk || rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes",
                                     buf, &n) != RD_KAFKA_CONF_OK)
                return 0;
        return (size_t)strtoull(buf, NULL, 10);
}

/* What the state topic's max.message.bytes must allow. Kafka applies that
 * limit to a whole record batch, not to each record, and librdkafka fills
 * a batch up to the smaller of batch.size and message.max.bytes (a record
 * larger than that goes alone): a manifest or another stage's last chunk
 * beside a full chunk made a batch above the largest record (1,000,000
 * bytes with librdkafka's defaults), which a topic set to that record's
 * size refused. */
static size_t state_topic_min(rd_kafka_t *rk) {
        size_t mx = producer_max_bytes(rk), bs = 0;
        char buf[32];
        size_t n = sizeof(buf);
        if (rk && rd_kafka_conf_get(rd_kafka_conf(rk), "batch.size", buf,
                                    &n) == RD_KAFKA_CONF_OK)
                bs = (size_t)strtoull(buf, NULL, 10);
        size_t batch = mx && bs ? (mx < bs ? mx : bs) : mx ? mx : bs;
        return batch > CKPT_RECORD_MAX ? batch : CKPT_RECORD_MAX;
}

/* The pipeline's records go to sink_produce. */
static void set_sink(struct kctx *k, struct veil_pipeline *p) {
        veil_pipeline_set_sink(p, (struct veil_sink){sink_produce, k});
        veil_pipeline_set_max_record(p, producer_max_bytes(k->producer));
}

/* Errors after which producing the same record again cannot succeed. */
static int permanent(rd_kafka_resp_err_t err) {
        switch (err) {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR__FATAL:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
                return 1;
        default:
                return 0;
        }
}

/* A record the broker refused for good. Too large for the topic (its
 * max.message.bytes below the producer's message.max.bytes) is a setting
 * to fix, not an input's fault: with the producer's limit at most the
 * topic's, the producer itself refuses such a record, and its event is
 * dead-lettered (sink_records); the message says so. */
static void delivery_failed(struct kctx *k, const char *topic,
                            const rd_kafka_message_t *m) {
        if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && k->ck.enabled &&
            !strcmp(topic, k->ck.topic))
                set_fatal(k, "delivery to the state topic '%s' failed "
                          "permanently: %s (checkpoints are written in "
                          "records of up to %zu bytes, sent in batches of "
                          "up to %zu, the smaller of the producer's "
                          "batch.size and message.max.bytes): raise the "
                          "topic's max.message.bytes to at least %zu",
                          topic, rd_kafka_err2str(m->err),
                          (size_t)CKPT_RECORD_MAX,
                          state_topic_min(k->producer),
                          state_topic_min(k->producer));
        else if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
                set_fatal(k, "delivery to topic '%s' failed permanently: %s "
                          "(the topic's max.message.bytes is below what the "
                          "producer sends: records up to its "
                          "message.max.bytes of %zu, in batches up to its "
                          "batch.size): set kafka.settings "
                          "message.max.bytes and batch.size to at most the "
                          "topic's limit, so that a record too large is "
                          "refused before it is sent and its event goes to "
                          "the dead-letter topic",
                          topic, rd_kafka_err2str(m->err),
                          producer_max_bytes(k->producer));
        else if (m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
                set_fatal(k, "delivery to topic '%s' failed permanently: %s; "
                          "grant veil's principal Write and Describe on it "
                          "(README, \"Who may read and write each topic\")",
                          topic, rd_kafka_err2str(m->err));
        else
                set_fatal(k, "delivery to topic '%s' failed permanently: %s",
                          topic, rd_kafka_err2str(m->err));
}

static void dr_report(struct kctx *k, const rd_kafka_message_t *m);
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        struct kctx *k = opaque;
        k->in_dr = 1;
        dr_report(k, m);
        k->in_dr = 0;
}

static void dr_report(struct kctx *k, const rd_kafka_message_t *m) {
        struct inflight *f = m->_private;
        if (!m->err) {
                f->pending--;
                k->st.acked++;
                /* At-least-once, the topic exists once a record of it is
                 * delivered: librdkafka taking one into its queue
                 * (produce_stashed) is not enough, it queues records for
                 * a missing topic again after a metadata refresh, and
                 * fails them once more. Exactly-once asks the cluster
                 * (eos_topic_check). */
                if (!k->eos && k->missing[0] &&
                    !strcmp(rd_kafka_topic_name(m->rkt), k->missing)) {
                        veil_log_host(VEIL_LOG_INFO, NULL,
                                      "topic '%s' exists now: its records "
                                      "are produced",
                                      k->missing);
                        k->missing[0] = '\0';
                }
                return;
        }
        const char *topic = rd_kafka_topic_name(m->rkt);
        rd_kafka_headers_t *h = NULL;
        if (rd_kafka_message_headers(m, &h))
                h = NULL;
        if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && !k->fatal &&
            dl_can_bare(h, m->key_len, m->len)) {
                /* A dead letter the broker found too large (the topic's
                 * limit is below the producer's): again without its value.
                 * Under exactly-once after the abort of its transaction. */
                if (k->eos) {
                        bare_refused(k, topic, m->len, h);
                        f->pending--;
                } else if (produce_dl_bare(k, topic, m->key, m->key_len,
                                           m->len, h, f) == 0) {
                        k->st.produced--;
                        f->pending--;
                }
                return;
        }
        if (k->eos) {
                /* The transaction fails as a whole: commit_transaction()
                 * reports it, the batch is aborted and read again; a
                 * permanent error would fail it again forever (and charge
                 * the privacy budget for every pass). */
                if (permanent(m->err))
                        delivery_failed(k, topic, m);
                else if (unknown_topic(m->err))
                        missing_topic(k, topic);
                f->pending--;
                return;
        }
        if (permanent(m->err) || k->fatal) {
                /* Not acknowledged, so the batch is never committed and its
                 * input is read again after the restart. */
                delivery_failed(k, topic, m);
                return;
        }
        /* The idempotent producer has already retried until
         * message.timeout.ms; a transient outage longer than that must not
         * lose the record, so it goes round again. */
        uint64_t n;
        if (quiet_due(&k->redeliver_warn, &n))
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "delivery to topic '%s' failed (%s); producing "
                              "again (%llu record(s) since the last such "
                              "line)",
                              topic, rd_kafka_err2str(m->err),
                              (unsigned long long)n);
        rd_kafka_headers_t *copy = h ? rd_kafka_headers_copy(h) : NULL;
        k->st.retried++;
        /* Only once it is produced again does this delivery stop counting:
         * a record that could not be stays pending, so its batch is never
         * committed. */
        if (produce_raw(k, topic, m->key, m->key_len, m->payload, m->len,
                        copy, f) == 0) {
                f->pending--;
                k->st.produced--; /* counted again by produce_raw */
        }
}

/* ------------------------------------------------------------------ */
/* Committing                                                         */
/* ------------------------------------------------------------------ */

/* Offsets go to the group one commit request at a time; batches
 * acknowledged meanwhile merge into the next request. librdkafka retries a
 * commit that met a coordinator error, and with several in flight a retried
 * older one can land after a newer one: the group's offset moves back, and
 * nothing would move it forward again on a partition that gets no new
 * records (not even a clean shutdown), so a restart would read those
 * records again. */

/* Raises each partition's offset in *to to at least its offset in from. */
static void merge_offsets(rd_kafka_topic_partition_list_t **to,
                          const rd_kafka_topic_partition_list_t *from) {
        if (!*to)
                *to = rd_kafka_topic_partition_list_new(from->cnt);
        for (int i = 0; i < from->cnt; i++) {
                const rd_kafka_topic_partition_t *s = &from->elems[i];
                rd_kafka_topic_partition_t *d =
                        rd_kafka_topic_partition_list_find(*to, s->topic,
                                                           s->partition);
                if (!d)
                        rd_kafka_topic_partition_list_add(*to, s->topic,
                                                          s->partition)
                                ->offset = s->offset;
                else if (s->offset > d->offset)
                        d->offset = s->offset;
        }
}

/* The outcome of the request in flight, served from commit_q. What failed
 * goes into the next request, a second later, for the partitions still
 * assigned (another member may own the others by now). */
static void commit_done(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *offsets,
                        void *opaque) {
        (void)rk;
        struct kctx *k = opaque;
        rd_kafka_topic_partition_list_t *sent = k->committing;
        k->committing = NULL;
        if (!sent)
                return;
        rd_kafka_topic_partition_list_t *a = NULL, *again = NULL;
        for (int i = 0; i < sent->cnt; i++) {
                rd_kafka_topic_partition_t *tp = &sent->elems[i];
                const rd_kafka_topic_partition_t *r =
                        offsets ? rd_kafka_topic_partition_list_find(
                                          offsets, tp->topic, tp->partition)
                                : NULL;
                rd_kafka_resp_err_t e = r && r->err ? r->err : err;
                if (!e || e == RD_KAFKA_RESP_ERR__NO_OFFSET ||
                    e == RD_KAFKA_RESP_ERR__DESTROY)
                        continue;
                if (!a && rd_kafka_assignment(k->consumer, &a))
                        a = NULL;
                int ours = a && rd_kafka_topic_partition_list_find(
                                        a, tp->topic, tp->partition);
                /* A lost commit costs duplicates after a restart, never
                 * loss. */
                uint64_t n;
                if (quiet_due(&k->commit_warn, &n))
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "offset commit of %s [%d] failed: "
                                      "%s%s (%llu failure(s) since the last "
                                      "such line)",
                                      tp->topic, (int)tp->partition,
                                      rd_kafka_err2str(e),
                                      ours ? "; committing it again" : "",
                                      (unsigned long long)n);
                if (!ours)
                        continue;
                if (!again)
                        again = rd_kafka_topic_partition_list_new(sent->cnt);
                rd_kafka_topic_partition_list_add(again, tp->topic,
                                                  tp->partition)
                        ->offset = tp->offset;
        }
        if (again) {
                merge_offsets(&k->to_commit, again);
                rd_kafka_topic_partition_list_destroy(again);
                k->commit_retry_ms = now_ms() + 1000;
        }
        if (a)
                rd_kafka_topic_partition_list_destroy(a);
        rd_kafka_topic_partition_list_destroy(sent);
}

/* Sends what is to commit, unless a request is in flight. */
static void commit_send(struct kctx *k) {
        rd_kafka_queue_poll_callback(k->commit_q, 0);
        if (k->to_commit && !k->to_commit->cnt) {
                /* Every partition of it was revoked (commit_forget). */
                rd_kafka_topic_partition_list_destroy(k->to_commit);
                k->to_commit = NULL;
        }
        if (k->committing || !k->to_commit || now_ms() < k->commit_retry_ms)
                return;
        rd_kafka_resp_err_t err = rd_kafka_commit_queue(
                k->consumer, k->to_commit, k->commit_q, commit_done, k);
        if (err) {
                /* Kept: a partition that gets no more input would keep its
                 * old offset otherwise. */
                uint64_t n;
                if (quiet_due(&k->commit_warn, &n))
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "offset commit failed: %s; committing "
                                      "it again in a second (%llu failure(s) "
                                      "since the last such line)",
                                      rd_kafka_err2str(err),
                                      (unsigned long long)n);
                k->commit_retry_ms = now_ms() + 1000;
                return;
        }
        k->committing = k->to_commit;
        k->st.commits++;
        k->to_commit = NULL;
}

/* Until everything acknowledged is committed, or COMMIT_WAIT_MS. */
#define COMMIT_WAIT_MS 10000
static void commit_wait(struct kctx *k) {
        int64_t deadline = now_ms() + COMMIT_WAIT_MS;
        commit_send(k);
        while ((k->committing || k->to_commit) && now_ms() < deadline) {
                rd_kafka_queue_poll_callback(k->commit_q, 20);
                commit_send(k);
        }
        if (k->committing || k->to_commit)
                /* Not loss, but no clean stop either: say so. */
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "offsets of %d partition(s) were not "
                              "committed within %d s (the group "
                              "coordinator did not answer): the records "
                              "after the last commit are read, and their "
                              "outputs produced, again",
                              (k->committing ? k->committing->cnt : 0) +
                                      (k->to_commit ? k->to_commit->cnt : 0),
                              COMMIT_WAIT_MS / 1000);
}

/* Revoked partitions are no longer ours to commit: neither what waits to
 * be committed nor what the batches still in flight (a drain that timed
 * out, or a lost assignment) would commit when acknowledged. The
 * coordinator checks the generation, not ownership: a late commit of ours
 * would move back the offset their new owner committed since. */
static void commit_forget(struct kctx *k,
                          const rd_kafka_topic_partition_list_t *parts) {
        for (int i = 0; k->to_commit && i < parts->cnt; i++)
                rd_kafka_topic_partition_list_del(k->to_commit,
                                                  parts->elems[i].topic,
                                                  parts->elems[i].partition);
        for (struct inflight *f = k->head; f; f = f->next)
                for (int i = 0; f->offsets && i < parts->cnt; i++)
                        rd_kafka_topic_partition_list_del(
                                f->offsets, parts->elems[i].topic,
                                parts->elems[i].partition);
}

/* Latencies of a batch whose outputs are all acknowledged. */
static void observe_committed(struct kctx *k, const struct inflight *f) {
        double secs = (double)(now_ms() - f->formed_ms) / 1000.0;
        veil_metrics_observe(k->o->metrics, VEIL_M_COMMIT_SECONDS, "", &secs,
                             1);
        double lat[256];
        int64_t wall = wall_ms();
        size_t n = 0;
        for (size_t i = 0; i < f->n_ts; i++) {
                if (f->ts[i] <= 0)
                        continue; /* no event time */
                lat[n++] = (double)(wall - f->ts[i]) / 1000.0;
                if (n == sizeof(lat) / sizeof(*lat)) {
                        veil_metrics_observe(k->o->metrics,
                                             VEIL_M_EVENT_SECONDS, "", lat, n);
                        n = 0;
                }
        }
        if (n)
                veil_metrics_observe(k->o->metrics, VEIL_M_EVENT_SECONDS, "",
                                     lat, n);
}

/* Commits the batches at the front whose outputs are all acknowledged;
 * with `sync`, once none waits any more, also until the group has them. */
static void commit_ready(struct kctx *k, int sync) {
        while (k->head && k->head->sealed && k->head->pending == 0) {
                struct inflight *f = k->head;
                k->head = f->next;
                if (!k->head)
                        k->tail = NULL;
                k->n_inflight--;
                if (k->o->metrics)
                        observe_committed(k, f);
                if (f->offsets) {
                        merge_offsets(&k->to_commit, f->offsets);
                        rd_kafka_topic_partition_list_destroy(f->offsets);
                }
                free(f);
        }
        if (sync && !k->head)
                commit_wait(k);
        else
                commit_send(k);
}

/* Records not acknowledged yet besides the batches': between batches, and
 * checkpoints (at-least-once). */
static int unacked_between(const struct kctx *k) {
        return k->side_flight.pending != 0 ||
               (k->ck_flight && k->ck_flight->pending != 0);
}

/* Waits until every batch is acknowledged and committed, or the timeout. */
static int drain(struct kctx *k, int timeout_ms, int sync) {
        int64_t deadline = now_ms() + timeout_ms;
        while ((k->head || unacked_between(k)) && !k->fatal) {
                rd_kafka_poll(k->producer, 20);
                produce_stashed(k);
                commit_ready(k, sync);
                if (now_ms() > deadline)
                        return -1;
        }
        commit_ready(k, sync);
        return k->head || unacked_between(k) ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Exactly-once                                                       */
/* ------------------------------------------------------------------ */

/* Per call, so that a stop request or an outage shows between retries. */
#define TXN_CALL_MS 10000
/* Outputs not acknowledged for this long: not ready (at-least-once). */
#define STALL_MS 10000
/* Too many batches unacknowledged for this long: pause the input. */
#define PAUSE_AFTER_MS 200

static int should_stop(struct kctx *k);
static void publish(struct kctx *k, int force);

/* A transactional call failed and is retried: readiness shows it. */
static void txn_stalled(struct kctx *k, const char *what,
                        const rd_kafka_error_t *e) {
        snprintf(k->stalled, sizeof(k->stalled), "exactly-once: %s: %s",
                 what, rd_kafka_error_string(e));
        veil_log_host(VEIL_LOG_WARN, NULL, "%s; retrying", k->stalled);
        publish(k, 1);
}

/* Serves delivery reports until the batch's records are all reported:
 * `f` is their opaque and must outlive them. */
static void settle(struct kctx *k, struct inflight *f) {
        int64_t deadline = now_ms() + 60000;
        while (f->pending > 0 && now_ms() < deadline) {
                rd_kafka_poll(k->producer, 10);
                produce_stashed(k);
        }
}

/* Exactly-once: m was read into the open transaction (txn_from). */
static void txn_note(struct kctx *k, const rd_kafka_message_t *m) {
        if (!k->txn_from)
                k->txn_from = rd_kafka_topic_partition_list_new(4);
        const char *t = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_find(k->txn_from, t,
                                                   m->partition);
        if (!tp)
                rd_kafka_topic_partition_list_add(k->txn_from, t, m->partition)
                        ->offset = m->offset;
        else if (m->offset < tp->offset)
                tp->offset = m->offset;
}

static void txn_from_clear(struct kctx *k) {
        if (k->txn_from)
                rd_kafka_topic_partition_list_destroy(k->txn_from);
        k->txn_from = NULL;
}

static void eos_redo(struct kctx *k);
/* The records read but not committed are read again: every assigned
 * partition goes back to its committed offset (the last committed
 * transaction's), or without one to the first record the transaction
 * read there. Records already read are dropped. */
static void eos_rewind(struct kctx *k) {
        for (size_t i = 0; i < k->n_msgs; i++) {
                txn_note(k, k->msgs[i]);
                rd_kafka_message_destroy(k->msgs[i]);
        }
        k->n_msgs = 0;
        k->rewind = 0;
        eos_redo(k);
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(k->consumer, &a) || !a) {
                txn_from_clear(k);
                return;
        }
        if (a->cnt) {
                rd_kafka_resp_err_t err =
                        rd_kafka_committed(k->consumer, a, TXN_CALL_MS);
                if (err) {
                        /* The group coordinator slow or moving. The first
                         * records the transaction read are where the
                         * committed offsets are (a commit clears them, and
                         * a partition that read nothing since stays at its
                         * committed offset), so the rewind goes there
                         * rather than stop the host (exit 1, as it did). */
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "exactly-once: cannot read the "
                                      "committed offsets after an aborted "
                                      "transaction (%s); rewinding the input "
                                      "to the first record the transaction "
                                      "read on each partition",
                                      rd_kafka_err2str(err));
                        for (int i = 0; i < a->cnt; i++)
                                a->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
                }
                /* Back to the committed offset, or on a partition with
                 * none yet, to the first record the transaction read there
                 * (not to the beginning: with auto.offset.reset latest the
                 * group never read what came before). A partition it read
                 * nothing of stays where it is. */
                rd_kafka_topic_partition_list_t *to =
                        rd_kafka_topic_partition_list_new(a->cnt);
                for (int i = 0; i < a->cnt; i++) {
                        const rd_kafka_topic_partition_t *c = &a->elems[i];
                        int64_t off = c->offset;
                        if (off < 0) {
                                const rd_kafka_topic_partition_t *f = NULL;
                                if (k->txn_from)
                                        f = rd_kafka_topic_partition_list_find(
                                                k->txn_from, c->topic,
                                                c->partition);
                                if (!f)
                                        continue;
                                off = f->offset;
                        }
                        rd_kafka_topic_partition_list_add(to, c->topic,
                                                          c->partition)
                                ->offset = off;
                }
                rd_kafka_error_t *e = NULL;
                if (to->cnt)
                        e = rd_kafka_seek_partitions(k->consumer, to,
                                                     TXN_CALL_MS);
                rd_kafka_topic_partition_list_destroy(to);
                if (e) {
                        /* Reading on would skip the aborted records. */
                        set_fatal(k, "cannot rewind the input after an "
                                     "aborted transaction: %s",
                                  rd_kafka_error_string(e));
                        rd_kafka_error_destroy(e);
                }
        }
        rd_kafka_topic_partition_list_destroy(a);
        txn_from_clear(k);
}

/* Whether a retriable transactional call is made again. While running,
 * always (readiness shows it); after a stop request, until SHUTDOWN_TXN_MS
 * after it, as settle() waits for the last delivery reports: giving up at
 * the first timeout made a coordinator slow for a moment at shutdown an
 * exit 1 with the transaction left open. */
#define SHUTDOWN_TXN_MS 60000
static int txn_retry(struct kctx *k) {
        if (!(k->o->stop && *k->o->stop))
                return 1;
        if (!k->stop_ms)
                k->stop_ms = now_ms();
        return now_ms() - k->stop_ms < SHUTDOWN_TXN_MS;
}

/* Aborts the open transaction: its records are never visible to
 * read_committed consumers. Returns 0, or -1 after a fatal error. */
static int eos_abort(struct kctx *k) {
        if (!k->txn_open)
                return 0;
        for (;;) {
                rd_kafka_error_t *e =
                        rd_kafka_abort_transaction(k->producer, TXN_CALL_MS);
                if (!e)
                        break;
                int again = rd_kafka_error_is_retriable(e) && !k->fatal;
                if (!again)
                        set_fatal(k, "cannot abort the transaction: %s",
                                  rd_kafka_error_string(e));
                else if (!txn_retry(k))
                        set_fatal(k, "shutdown: aborting the transaction did "
                                     "not complete within %d s (%s); the "
                                     "next start aborts it",
                                  SHUTDOWN_TXN_MS / 1000,
                                  rd_kafka_error_string(e));
                else /* as eos_commit's: in the log and readiness */
                        txn_stalled(k, "aborting the transaction", e);
                rd_kafka_error_destroy(e);
                if (k->fatal)
                        return -1;
        }
        k->stalled[0] = '\0';
        k->txn_open = 0;
        k->txn_doomed = 0;
        kept_done(k, 0);
        /* A checkpoint in it never reaches the log: its stages keep to the
         * key sets of their last complete ones' other. */
        if (k->ckw)
                veil_checkpoint_writer_settled(k->ckw, 0);
        return 0;
}

/* librdkafka's three classes of transactional errors: retriable (call
 * again), abort-requiring (abort, read the batch again), fatal (the
 * producer is unusable, e.g. fenced by a newer instance with the same
 * transactional.id: exit). Returns 0 done, 1 aborted, -1 fatal. */
static int txn_failed(struct kctx *k, const char *what, rd_kafka_error_t *e) {
        int rc;
        if (rd_kafka_error_txn_requires_abort(e)) {
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "%s failed (%s); aborting the transaction and "
                              "reading its input again",
                              what, rd_kafka_error_string(e));
                k->st.aborted++;
                rc = eos_abort(k) ? -1 : 1;
                /* Not here: this may run in the rebalance callback. */
                k->rewind = rc == 1;
        } else {
                set_fatal(k, "%s failed fatally: %s", what,
                          rd_kafka_error_string(e));
                rc = -1;
        }
        rd_kafka_error_destroy(e);
        return rc;
}

/* The stop's deadline passed while `what` was retried: not a fatal error
 * of the producer, so it is said as it is. */
static int txn_late(struct kctx *k, const char *what, rd_kafka_error_t *e) {
        set_fatal(k, "shutdown: %s did not complete within %d s (%s); the "
                  "transaction stays open until the next start with this "
                  "transactional.id aborts it, or the coordinator does "
                  "after transaction.timeout.ms, and its input is read "
                  "again",
                  what, SHUTDOWN_TXN_MS / 1000, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
}

/* Commits the open transaction with the batch's input offsets (NULL: none).
 * Returns 0 committed, 1 aborted, -1 fatal. */
static int eos_commit(struct kctx *k,
                      const rd_kafka_topic_partition_list_t *offsets) {
        if (offsets && offsets->cnt && eos_begin(k))
                return -1;
        if (!k->txn_open) {
                txn_from_clear(k);
                return 0;
        }
        if (k->txn_doomed) {
                /* A record was refused into it (produce_try): committed,
                 * the transaction would lack it. librdkafka would refuse
                 * the commit anyway, the transaction having failed. */
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "the transaction failed while records were "
                              "produced into it; aborting it and reading "
                              "its input again");
                k->st.aborted++;
                int rc = eos_abort(k) ? -1 : 1;
                k->rewind = rc == 1;
                return rc;
        }
        rd_kafka_error_t *e = NULL;
        if (offsets && offsets->cnt) {
                rd_kafka_consumer_group_metadata_t *md =
                        rd_kafka_consumer_group_metadata(k->consumer);
                for (;;) {
                        e = rd_kafka_send_offsets_to_transaction(
                                k->producer, offsets, md, TXN_CALL_MS);
                        if (!e || !rd_kafka_error_is_retriable(e) ||
                            !txn_retry(k))
                                break;
                        txn_stalled(k, "sending the offsets", e);
                        rd_kafka_error_destroy(e);
                }
                rd_kafka_consumer_group_metadata_destroy(md);
                if (e) {
                        k->stalled[0] = '\0';
                        return rd_kafka_error_is_retriable(e)
                                       ? txn_late(k, "sending the offsets", e)
                                       : txn_failed(k, "sending the offsets",
                                                    e);
                }
        }
        for (;;) {
                e = rd_kafka_commit_transaction(k->producer, TXN_CALL_MS);
                if (!e || !rd_kafka_error_is_retriable(e) || !txn_retry(k))
                        break;
                txn_stalled(k, "committing the transaction", e);
                rd_kafka_error_destroy(e);
        }
        k->stalled[0] = '\0';
        if (e && rd_kafka_error_is_retriable(e))
                return txn_late(k, "committing the transaction", e);
        if (e)
                return txn_failed(k, "committing the transaction", e);
        k->txn_open = 0;
        kept_done(k, 1);
        if (k->ckw)
                veil_checkpoint_writer_settled(k->ckw, 1);
        txn_from_clear(k);
        return 0;
}

/* After an abort: the records the aborted transaction held from between
 * batches go into the next one, in their order (the batches' own records
 * come again from the rewound input). Not rewinding the side consumer to
 * where the last committed transaction left it instead: that consumer
 * commits no offsets, so it would need positions tracked per transaction,
 * and a side record applied to the ledger a second time changes nothing,
 * so its audit record would not come again. */
static void eos_redo(struct kctx *k) {
        size_t n = 0;
        /* A topic missing: they would only fail the transaction again.
         * eos_topic_check produces them once it exists. */
        if (k->missing[0])
                return;
        /* Each record's copy moves on to the new transaction's (k->kept)
         * once produced, rather than being copied again (sink_records'
         * keep): the records held would otherwise be there twice until
         * the loop ends. */
        int no_keep = k->no_keep;
        k->no_keep = 1;
        while (k->redo && !k->fatal) {
                struct kept *r = k->redo;
                struct veil_source src = {r->key,       r->key_len,
                                          r->value,     r->value_len,
                                          r->src_topic, r->partition,
                                          r->offset,    r->ts};
                struct veil_dead_letter dl = {r->error, r->stage, &src};
                if (sink_strict(k, r->topic, r->key, r->key_len, r->value,
                                r->value_len, r->dl ? &dl : NULL))
                        break;
                k->redo = r->next;
                k->n_redo--;
                r->next = NULL;
                *k->kept_tail = r;
                k->kept_tail = &r->next;
                k->n_kept++;
                k->st.retried++;
                n++;
        }
        k->no_keep = no_keep;
        /* Fatal: nothing is produced again any more. */
        kept_free(k->redo);
        k->redo = NULL;
        k->n_redo = 0;
        held_note(k);
        if (n)
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "exactly-once: %zu record(s) produced between "
                              "batches (side-input dead letters, audit or "
                              "access records) were in the aborted "
                              "transaction; produced again",
                              n);
}

/* Commits what is open without input offsets (records produced between
 * batches), and produces again what an abort left. */
static void eos_commit_between(struct kctx *k) {
        eos_commit(k, NULL);
        settle(k, &k->side_flight);
        k->side_flight.pending = 0;
        if (k->rewind)
                eos_rewind(k);
}

/* Exactly-once, a topic missing (k->missing): at most once a second, asks
 * the cluster whether it exists now, which also tells the producer (it
 * refuses records for a topic it has found missing until its metadata
 * says otherwise); once it does, what the aborts left is produced again. */
static void eos_topic_check(struct kctx *k, int64_t *next_ms) {
        if (!k->missing[0] || now_ms() < *next_ms)
                return;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->producer, k->missing,
                                                   NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rkt && !rd_kafka_metadata(k->producer, 0, rkt, &md, 1000) &&
            md->topic_cnt == 1 && !md->topics[0].err &&
            md->topics[0].partition_cnt > 0) {
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "topic '%s' exists now: the input is read "
                              "again", k->missing);
                k->missing[0] = '\0';
        }
        if (md)
                rd_kafka_metadata_destroy(md);
        if (rkt)
                rd_kafka_topic_destroy(rkt);
        *next_ms = now_ms() + 1000;
        if (!k->missing[0])
                eos_redo(k);
}

/* At shutdown, after the last batch's transaction: when it aborted, what it
 * held from between batches gets a few transactions of its own. Were it
 * left, the next start would bring it back (the side inputs are read from
 * their beginning at every start), but a clean shutdown leaves nothing to
 * that. */
static void eos_end_redo(struct kctx *k) {
        for (int i = 0; i < 3 && k->redo && !k->fatal; i++) {
                eos_redo(k);
                eos_commit(k, NULL);
                settle(k, &k->side_flight);
                k->side_flight.pending = 0;
        }
        size_t n = k->n_redo;
        if (n && !k->fatal)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "shutdown: %zu record(s) produced between "
                              "batches are in aborted transactions; the next "
                              "start produces them again (it reads the side "
                              "inputs from their beginning)",
                              n);
}

/* After run_batch: the batch (the queue's only entry) commits atomically
 * with its offsets, or is aborted and read again. */
static void eos_end_batch(struct kctx *k) {
        struct inflight *f = k->tail;
        /* A failed batch (fatal) is aborted, never committed with its
         * offsets: read again at the next start. */
        int rc = -1;
        if (k->fatal)
                eos_abort(k);
        else
                rc = eos_commit(k, f ? f->offsets : NULL);
        if (f)
                settle(k, f);
        settle(k, &k->side_flight);
        if (rc == 0 && f && f->offsets) {
                k->st.commits++;
                rd_kafka_topic_partition_list_destroy(f->offsets);
                f->offsets = NULL;
        } else if (rc != 0 && f) {
                /* Aborted or fatal: nothing of it is visible; no commit,
                 * no latency. */
                if (f->offsets)
                        rd_kafka_topic_partition_list_destroy(f->offsets);
                f->offsets = NULL;
                f->pending = 0;
                f->n_ts = 0;
        }
        k->side_flight.pending = 0;
        commit_ready(k, 0);
}

/* ------------------------------------------------------------------ */
/* Batches                                                            */
/* ------------------------------------------------------------------ */

static void run_batch(struct kctx *k) {
        /* Erasures and access requests that side records queued since the
         * last batch take effect before this batch is processed: it is
         * still empty, so beginning it again only applies them (and an idle
         * turn applies them without delay). */
        k->batch = veil_pipeline_batch_begin(k->p);
        if (!k->n_msgs)
                return;
        struct inflight *f = calloc(1, sizeof(*f) + (k->o->metrics
                                                         ? k->n_msgs
                                                         : 0) *
                                                            sizeof(int64_t));
        if (!f) {
                set_fatal(k, "out of memory forming a batch");
                return;
        }
        f->formed_ms = now_ms();
        k->cur = f;
        if (k->tail)
                k->tail->next = f;
        else
                k->head = f;
        k->tail = f;
        k->n_inflight++;

        char err[1024];
        int rc = 0, failed = 0;
        for (size_t i = 0; i < k->n_msgs && rc >= 0; i++) {
                rd_kafka_message_t *m = k->msgs[i];
                rd_kafka_timestamp_type_t tt;
                struct veil_source src = {
                        m->key,
                        m->key_len,
                        m->payload,
                        m->len,
                        rd_kafka_topic_name(m->rkt),
                        m->partition,
                        m->offset,
                        rd_kafka_message_timestamp(m, &tt)};
                if (k->eos)
                        txn_note(k, m);
                rc = veil_pipeline_batch_add(k->p, &src);
        }
        if (rc < 0) {
                set_fatal(k, "%s", veil_pipeline_add_error(k->p));
                failed = 1;
        } else if (veil_pipeline_batch_run(k->p, err, sizeof(err)) < 0) {
                set_fatal(k, "%s", err);
                failed = 1;
        }
        /* A record the sink could not produce fails the batch even when
         * the stage went on (a plugin that ignores veil_out_emit's
         * error): produce_failed() made it fatal, and the batch must not
         * be sealed, or its offsets would commit without that output. A
         * record refused as too large is not fatal (sink_records): the
         * pipeline fails the batch itself when the stage went on without
         * dead-lettering an event for it. */
        failed |= k->fatal;
        if (k->o->metrics) {
                double secs = (double)(now_ms() - f->formed_ms) / 1000.0,
                       n = (double)k->n_msgs;
                veil_metrics_observe(k->o->metrics, VEIL_M_BATCH_SECONDS, "",
                                     &secs, 1);
                veil_metrics_observe(k->o->metrics, VEIL_M_BATCH_SIZE, "", &n,
                                     1);
                for (size_t i = 0; k->batch && i < k->batch->n &&
                                   i < k->n_msgs;
                     i++)
                        f->ts[f->n_ts++] = k->batch->events[i].ts_ms;
        }

        /* The next offset of each partition the batch read. A batch that
         * failed has none and is never sealed: it blocks every commit
         * after it, and its input is read again at the next start. */
        rd_kafka_topic_partition_list_t *offs =
                rd_kafka_topic_partition_list_new(4);
        for (size_t i = 0; i < k->n_msgs && !failed; i++) {
                rd_kafka_message_t *m = k->msgs[i];
                const char *t = rd_kafka_topic_name(m->rkt);
                rd_kafka_topic_partition_t *tp =
                        rd_kafka_topic_partition_list_find(offs, t,
                                                           m->partition);
                if (!tp)
                        tp = rd_kafka_topic_partition_list_add(offs, t,
                                                               m->partition);
                if (m->offset + 1 > tp->offset)
                        tp->offset = m->offset + 1;
        }
        f->offsets = offs;
        f->sealed = !failed;
        k->cur = NULL;
        k->st.batches++;
        for (size_t i = 0; i < k->n_msgs; i++)
                rd_kafka_message_destroy(k->msgs[i]);
        k->n_msgs = 0;
        k->batch = veil_pipeline_batch_begin(k->p);
}

/* What an (incremental) assign or unassign returned: an error is logged
 * (it leaked, unread) and makes a non-zero return. */
static int assign_result(rd_kafka_error_t *error, rd_kafka_resp_err_t err,
                         const char *what, int n) {
        if (!error && !err)
                return 0;
        veil_log_host(VEIL_LOG_ERROR, NULL,
                      "rebalance: cannot %s %d partition(s): %s", what, n,
                      error ? rd_kafka_error_string(error)
                            : rd_kafka_err2str(err));
        if (error)
                rd_kafka_error_destroy(error);
        return -1;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
        struct kctx *k = opaque;
        int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                k->ever_assigned = 1;
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "assigned %d partition(s)", parts->cnt);
                rd_kafka_error_t *e = NULL;
                rd_kafka_resp_err_t r = RD_KAFKA_RESP_ERR_NO_ERROR;
                if (coop)
                        e = rd_kafka_incremental_assign(rk, parts);
                else
                        r = rd_kafka_assign(rk, parts);
                if (assign_result(e, r, "assign", parts->cnt))
                        return; /* not ours: not counted, not read */
                /* Assigned during backpressure: paused like the others.
                 * Otherwise resumed: librdkafka keeps a partition's pause
                 * on its toppar across a revocation, so one revoked while
                 * paused and assigned back later would never be read. */
                if (k->paused)
                        rd_kafka_pause_partitions(rk, parts);
                else
                        rd_kafka_resume_partitions(rk, parts);
                k->st.assigned += parts->cnt;
                k->rebalances++;
                return;
        }
        /* Revocation ends the open batch here, at a batch boundary: what
         * was read is processed, produced and committed while the
         * partitions are still ours. */
        veil_log_host(VEIL_LOG_INFO, NULL, "revoking %d partition(s)",
                      parts->cnt);
        if (k->eos) {
                /* Exactly-once: batches commit within their loop turn, so
                 * what is open here is at most records produced between
                 * batches (side-input dead letters, audit and access
                 * records): they commit, without input offsets, or after
                 * an abort are produced again (eos_redo). What was read
                 * but not processed is dropped: the new owner reads it
                 * from the committed offsets, and partitions that stay
                 * ours (cooperative) are rewound to them before reading
                 * on. */
                if (k->fatal)
                        eos_abort(k);
                else
                        eos_commit(k, NULL);
                if (k->n_msgs)
                        k->rewind = 1;
                settle(k, &k->side_flight);
                k->side_flight.pending = 0;
        } else if (!k->fatal && k->st.side_caught_up) {
                /* Not while the side inputs catch up (a stop during a
                 * reload's re-read reaches here from the consumer's
                 * close): even an empty batch's start applies the queued
                 * access requests and erasures, which would answer them
                 * from a partly read consent ledger. No input record
                 * waits then (the stop dropped them), and the next start
                 * reads the requests again. */
                run_batch(k);
        }
        if (!k->eos && !rd_kafka_assignment_lost(rk))
                drain(k, k->shutdown_ms, 1);
        commit_forget(k, parts);
        rd_kafka_error_t *e = NULL;
        rd_kafka_resp_err_t r = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (coop)
                e = rd_kafka_incremental_unassign(rk, parts);
        else
                r = rd_kafka_assign(rk, NULL);
        assign_result(e, r, "unassign", parts->cnt);
        k->st.assigned -= parts->cnt;
        if (k->st.assigned < 0)
                k->st.assigned = 0;
        k->rebalances++;
}

/* ------------------------------------------------------------------ */
/* Clients                                                            */
/* ------------------------------------------------------------------ */

static int set(rd_kafka_conf_t *c, const char *name, const char *value,
               char *errstr, size_t errstr_size) {
        char e[512];
        if (rd_kafka_conf_set(c, name, value, e, sizeof(e)) !=
            RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "kafka setting '%s': %s", name,
                         e);
                return -VEIL_EINVAL;
        }
        return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
        (void)rk;
        veil_log_level_t l = level <= 3   ? VEIL_LOG_ERROR
                             : level <= 4 ? VEIL_LOG_WARN
                             : level <= 6 ? VEIL_LOG_INFO
                                          : VEIL_LOG_DEBUG;
        veil_log_host(l, NULL, "librdkafka %s: %s", fac, buf);
}

/* What exactly-once needs of the ACLs: its transactional.id is
 * "<group>-<instance>" (transactional_id). */
static const char *txn_acl_hint(struct kctx *k, char *hint, size_t size) {
        snprintf(hint, size,
                 "grant veil's principal Write and Describe on the "
                 "transactional ids that begin with '%s-' (--transactional-id "
                 "'%s-' --resource-pattern-type prefixed; README, \"Who may "
                 "read and write each topic\")",
                 k->cfg->kafka.group, k->cfg->kafka.group);
        return hint;
}

/* Errors that retrying cannot cure: librdkafka would reconnect with the
 * same credentials or certificates forever while veil waits, unready, with
 * nothing but log lines to show. Fatal instead: exit 1 with the reason, for
 * the operator and the orchestrator's crash loop. librdkafka's reason names
 * the broker and the mechanism, never the user name or the password.
 * Returns 1 when `err` is one of them. */
static int config_error(struct kctx *k, rd_kafka_resp_err_t err,
                        const char *reason) {
        if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION)
                set_fatal(k,
                          "Kafka authentication failed: %s; check "
                          "kafka.settings sasl.username/sasl.password (and "
                          "sasl.mechanisms)",
                          reason);
        else if (err == RD_KAFKA_RESP_ERR__SSL)
                set_fatal(k,
                          "Kafka TLS handshake failed: %s; check "
                          "kafka.settings ssl.ca.location (the CA that signed "
                          "the brokers' certificates) and that "
                          "kafka.bootstrap names a TLS listener",
                          reason);
        /* An ACL that is missing: the broker refuses again at every retry
         * (the consumer logged it once and waited, unready, for good). */
        else if (err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
                set_fatal(k,
                          "Kafka authorization failed: %s; grant veil's "
                          "principal Read on the consumer group '%s' and on "
                          "the groups that begin with it (its side readers "
                          "use '%s.side' and '%s.state'): one ACL with "
                          "--resource-pattern-type prefixed (README, \"Who "
                          "may read and write each topic\")",
                          reason, k->cfg->kafka.group, k->cfg->kafka.group,
                          k->cfg->kafka.group);
        else if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
                set_fatal(k,
                          "Kafka authorization failed: %s; grant veil's "
                          "principal Read and Describe on the topics it "
                          "reads (input, side_inputs, state) and Write and "
                          "Describe on those it writes (outputs, state) "
                          "(README, \"Who may read and write each topic\")",
                          reason);
        else if (err ==
                 RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED) {
                char hint[512];
                set_fatal(k, "Kafka authorization failed: %s; %s", reason,
                          txn_acl_hint(k, hint, sizeof(hint)));
        } else if (err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED)
                set_fatal(k,
                          "Kafka authorization failed: %s; grant veil's "
                          "principal Write on the topics it writes (brokers "
                          "from Kafka 2.8 on take it for the idempotent "
                          "producer), or IdempotentWrite on the cluster "
                          "(README, \"Who may read and write each topic\")",
                          reason);
        else
                return 0;
        return 1;
}

/* Served by rd_kafka_poll() and rd_kafka_consumer_poll(), on the thread
 * that polls: set_fatal() needs no lock. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                /* E.g. fenced by a newer instance with the same
                 * transactional.id: this one is a zombie and must stop. */
                char why[512], hint[512];
                if (rd_kafka_fatal_error(rk, why, sizeof(why)) ==
                    RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                        set_fatal(opaque, "Kafka fatal error: %s; %s", why,
                                  txn_acl_hint(opaque, hint, sizeof(hint)));
                else
                        set_fatal(opaque, "Kafka fatal error: %s", why);
                return;
        }
        if (!config_error(opaque, (rd_kafka_resp_err_t)err, reason))
                /* As librdkafka logs it when no callback is set. */
                veil_log_host(VEIL_LOG_ERROR, NULL, "librdkafka ERROR: %s",
                              reason);
}

/* Defaults first, then the YAML's settings, so an operator can override any
 * of them (TLS, SASL, timeouts…); then the properties the delivery
 * guarantees rest on, for a `client` (VEIL_KAFKA_*), which the settings may
 * only repeat (config.c). */
static rd_kafka_conf_t *base_conf(struct kctx *k, unsigned client,
                                  const char *const *defaults, char *errstr,
                                  size_t errstr_size) {
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        const char *bs = k->o->bootstrap ? k->o->bootstrap
                                         : k->cfg->kafka.bootstrap;
        if (set(c, "bootstrap.servers", bs, errstr, errstr_size))
                goto fail;
        for (const char *const *d = defaults; *d; d += 2)
                if (set(c, d[0], d[1], errstr, errstr_size))
                        goto fail;
        for (size_t i = 0; i < k->cfg->kafka.n_settings; i++) {
                const struct veil_kvpair *kv = &k->cfg->kafka.settings[i];
                char e[512];
                rd_kafka_conf_res_t r =
                        rd_kafka_conf_set(c, kv->key, kv->value, e, sizeof(e));
                if (r != RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size,
                                 "%s: kafka.settings.%s: %s", k->cfg->file,
                                 kv->key, e);
                        goto fail;
                }
        }
        if (veil_kafka_guard_apply(c, client, errstr, errstr_size))
                goto fail;
        rd_kafka_conf_set_log_cb(c, log_cb);
        rd_kafka_conf_set_error_cb(c, error_cb);
        rd_kafka_conf_set_opaque(c, k);
        return c;
fail:
        rd_kafka_conf_destroy(c);
        return NULL;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *c,
                              char *errstr, size_t errstr_size) {
        char e[512];
        rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof(e));
        if (!rk) {
                snprintf(errstr, errstr_size, "cannot create Kafka %s: %s",
                         type == RD_KAFKA_PRODUCER ? "producer" : "consumer",
                         e);
                rd_kafka_conf_destroy(c);
        }
        return rk;
}

/* A partition's low and high watermarks. A topic just created, or a
 * broker restarting, has partitions without a leader for a moment: that is
 * waited out until deadline_ms, not taken as a reason to exit. */
static rd_kafka_resp_err_t watermarks(rd_kafka_t *rk, const char *topic,
                                      int32_t pid, int64_t *lo, int64_t *hi,
                                      int64_t deadline_ms) {
        for (;;) {
                rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
                        rk, topic, pid, lo, hi, 10000);
                switch (err) {
                case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
                case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
                case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
                case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
                case RD_KAFKA_RESP_ERR__TRANSPORT:
                case RD_KAFKA_RESP_ERR__TIMED_OUT:
                case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
                        if (now_ms() < deadline_ms) {
                                struct timespec ts = {0, 200 * 1000 * 1000};
                                nanosleep(&ts, NULL);
                                continue;
                        }
                        return err;
                default:
                        return err;
                }
        }
}

static int open_sides(struct kctx *k, char *errstr, size_t errstr_size) {
        k->n_sides = k->cfg->n_side_inputs;
        if (!k->n_sides) {
                k->st.side_caught_up = 1;
                return 0;
        }
        char group[512];
        snprintf(group, sizeof(group), "%s.side", k->cfg->kafka.group);
        static const char *const defaults[] = {
                "group.id", NULL, "enable.partition.eof", "true",
                "auto.offset.reset", "earliest", NULL};
        const char *d[sizeof(defaults) / sizeof(*defaults)];
        memcpy(d, defaults, sizeof(defaults));
        d[1] = group;
        rd_kafka_conf_t *c =
                base_conf(k, VEIL_KAFKA_READER, d, errstr, errstr_size);
        if (!c)
                return -VEIL_EINVAL;
        if (!(k->side = new_client(RD_KAFKA_CONSUMER, c, errstr,
                                   errstr_size)))
                return -VEIL_EINVAL;
        /* Its errors (a failed login) reach error_cb in poll_sides. */
        rd_kafka_poll_set_consumer(k->side);

        k->sides = calloc(k->n_sides, sizeof(*k->sides));
        if (!k->sides) {
                snprintf(errstr, errstr_size, "side inputs: out of memory");
                return -VEIL_ENOMEM;
        }
        rd_kafka_topic_partition_list_t *assign =
                rd_kafka_topic_partition_list_new(8);
        for (size_t i = 0; i < k->n_sides; i++) {
                struct side_topic *s = &k->sides[i];
                s->topic = k->cfg->side_inputs[i].topic;
                s->index = i;
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->side, s->topic,
                                                           NULL);
                int64_t deadline = now_ms() + 30000;
                rd_kafka_resp_err_t err;
                /* A side topic that is being created shows up after a
                 * metadata refresh or two. */
                for (;;) {
                        err = rd_kafka_metadata(k->side, 0, rkt, &md, 5000);
                        if (!err && md->topic_cnt == 1 &&
                            !md->topics[0].err &&
                            md->topics[0].partition_cnt > 0)
                                break;
                        if (!err)
                                err = md->topic_cnt ? md->topics[0].err
                                                    : RD_KAFKA_RESP_ERR_UNKNOWN;
                        if (md)
                                rd_kafka_metadata_destroy(md);
                        md = NULL;
                        /* Serves error_cb: nothing is assigned yet, so no
                         * record comes back. */
                        rd_kafka_message_t *m =
                                rd_kafka_consumer_poll(k->side, 0);
                        if (m)
                                rd_kafka_message_destroy(m);
                        if (k->fatal) {
                                snprintf(errstr, errstr_size, "side input "
                                         "'%s': %s",
                                         k->cfg->side_inputs[i].name, k->err);
                                rd_kafka_topic_destroy(rkt);
                                rd_kafka_topic_partition_list_destroy(assign);
                                return -VEIL_EIO;
                        }
                        /* A stop while waiting for the topic is a stop,
                         * not a failure: nothing is read (the side inputs
                         * never catch up), nothing is saved. */
                        if (should_stop(k)) {
                                rd_kafka_topic_destroy(rkt);
                                rd_kafka_topic_partition_list_destroy(assign);
                                return 0;
                        }
                        if (now_ms() > deadline) {
                                snprintf(errstr, errstr_size,
                                         "side input '%s': topic '%s' is not "
                                         "available: %s",
                                         k->cfg->side_inputs[i].name,
                                         s->topic, rd_kafka_err2str(err));
                                rd_kafka_topic_destroy(rkt);
                                rd_kafka_topic_partition_list_destroy(assign);
                                return -VEIL_EIO;
                        }
                        struct timespec ts = {0, 200 * 1000 * 1000};
                        nanosleep(&ts, NULL);
                }
                s->n_parts = md->topics[0].partition_cnt;
                s->parts = calloc((size_t)s->n_parts, sizeof(*s->parts));
                if (!s->parts) {
                        snprintf(errstr, errstr_size, "side input '%s': out "
                                 "of memory", k->cfg->side_inputs[i].name);
                        rd_kafka_metadata_destroy(md);
                        rd_kafka_topic_destroy(rkt);
                        rd_kafka_topic_partition_list_destroy(assign);
                        return -VEIL_ENOMEM;
                }
                for (int j = 0; j < s->n_parts; j++) {
                        int32_t pid = md->topics[0].partitions[j].id;
                        int64_t lo = 0, hi = 0;
                        err = watermarks(k->side, s->topic, pid, &lo, &hi,
                                         deadline);
                        if (err) {
                                snprintf(errstr, errstr_size,
                                         "side input '%s': end offset of %s "
                                         "[%d]: %s",
                                         k->cfg->side_inputs[i].name, s->topic,
                                         (int)pid, rd_kafka_err2str(err));
                                rd_kafka_metadata_destroy(md);
                                rd_kafka_topic_destroy(rkt);
                                rd_kafka_topic_partition_list_destroy(assign);
                                return -VEIL_EIO;
                        }
                        s->parts[j].partition = pid;
                        s->parts[j].high = hi;
                        s->parts[j].pos = lo;
                        s->parts[j].done = hi <= lo;
                        rd_kafka_topic_partition_list_add(assign, s->topic, pid)
                                ->offset = RD_KAFKA_OFFSET_BEGINNING;
                }
                rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
        }
        rd_kafka_resp_err_t err = rd_kafka_assign(k->side, assign);
        rd_kafka_topic_partition_list_destroy(assign);
        if (err) {
                snprintf(errstr, errstr_size, "side inputs: assign: %s",
                         rd_kafka_err2str(err));
                return -VEIL_EIO;
        }
        k->sides_checked_ms = now_ms();
        return 0;
}

static struct side_part *side_part(struct kctx *k, const char *topic,
                                   int32_t partition, size_t *index) {
        for (size_t i = 0; i < k->n_sides; i++) {
                if (strcmp(k->sides[i].topic, topic))
                        continue;
                *index = k->sides[i].index;
                for (int j = 0; j < k->sides[i].n_parts; j++)
                        if (k->sides[i].parts[j].partition == partition)
                                return &k->sides[i].parts[j];
        }
        return NULL;
}

static void update_caught_up(struct kctx *k) {
        int all = 1;
        for (size_t i = 0; i < k->n_sides && all; i++)
                for (int j = 0; j < k->sides[i].n_parts && all; j++)
                        all = k->sides[i].parts[j].done;
        if (all && !k->st.side_caught_up) {
                k->st.side_caught_up = 1;
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "side inputs caught up (%llu records)",
                              (unsigned long long)k->st.side_records);
        }
}

static int side_known(const struct side_topic *s, int32_t partition) {
        for (int j = 0; j < s->n_parts; j++)
                if (s->parts[j].partition == partition)
                        return 1;
        return 0;
}

/* Adds the partitions of `mt` that side topic `s` does not know yet: into
 * s->parts first (poll_sides drops a record side_part does not find), then
 * into the side consumer's assignment, from the beginning: every record of
 * a new partition must be applied, a withdrawal most of all. A new
 * partition counts as caught up from the start (high 0): it was not there
 * when reading began, so readiness does not wait for it, and its records
 * are applied as they are read, like every side record after catch-up.
 * On failure nothing is added, and the next refresh tries again. */
static void side_add_parts(struct kctx *k, struct side_topic *s,
                           const struct rd_kafka_metadata_topic *mt) {
        int n_new = 0;
        for (int j = 0; j < mt->partition_cnt; j++)
                n_new += !side_known(s, mt->partitions[j].id);
        if (!n_new)
                return;
        const char *name = k->cfg->side_inputs[s->index].name;
        struct side_part *parts = realloc(
                s->parts, (size_t)(s->n_parts + n_new) * sizeof(*parts));
        if (!parts) {
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "side input '%s': out of memory for %d new "
                              "partition(s) of '%s'; trying again in %d s",
                              name, n_new, s->topic, SIDE_REFRESH_MS / 1000);
                return;
        }
        s->parts = parts;
        int old_n = s->n_parts;
        rd_kafka_topic_partition_list_t *add =
                rd_kafka_topic_partition_list_new(n_new);
        for (int j = 0; j < mt->partition_cnt; j++) {
                int32_t pid = mt->partitions[j].id;
                if (side_known(s, pid))
                        continue;
                s->parts[s->n_parts++] =
                        (struct side_part){.partition = pid, .done = 1};
                rd_kafka_topic_partition_list_add(add, s->topic, pid)
                        ->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
        /* The side consumer never subscribes, so it has no rebalance
         * protocol and librdkafka takes an incremental assignment after
         * the plain rd_kafka_assign of open_sides (rdkafka.h: "may also be
         * used outside the context of a rebalance callback"). */
        rd_kafka_error_t *error = rd_kafka_incremental_assign(k->side, add);
        if (error) {
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "side input '%s': cannot assign %d new "
                              "partition(s) of '%s': %s; trying again in "
                              "%d s",
                              name, n_new, s->topic,
                              rd_kafka_error_string(error),
                              SIDE_REFRESH_MS / 1000);
                rd_kafka_error_destroy(error);
                s->n_parts = old_n;
        } else {
                /* Paused like the others while KEPT_MAX records are held
                 * (side_hold); resumed with them. */
                if (k->sides_paused)
                        rd_kafka_pause_partitions(k->side, add);
                for (int j = 0; j < add->cnt; j++)
                        veil_log_host(VEIL_LOG_INFO, NULL,
                                      "side input '%s': new partition "
                                      "%s [%d], reading it from the "
                                      "beginning",
                                      name, s->topic,
                                      (int)add->elems[j].partition);
        }
        rd_kafka_topic_partition_list_destroy(add);
}

/* Partitions added to a side topic after open_sides would otherwise not be
 * read before a restart: a withdrawal written to one would never be
 * applied, and nothing would say so. Every SIDE_REFRESH_MS, one metadata
 * request for the topics the side consumer knows (its assigned ones: the
 * side topics), waited for SIDE_REFRESH_TIMEOUT_MS at most so that a slow
 * or absent broker holds the loop up only briefly. An error is not a
 * reason to stop: the partitions already assigned keep being read, and the
 * next refresh tries again. */
static void refresh_sides(struct kctx *k) {
        if (!k->side || now_ms() - k->sides_checked_ms < SIDE_REFRESH_MS)
                return;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(k->side, 0, NULL, &md,
                                                    SIDE_REFRESH_TIMEOUT_MS);
        /* From the answer (or the timeout): a refresh that waited its
         * whole timeout is not followed by another one at once. */
        k->sides_checked_ms = now_ms();
        if (err) {
                veil_log_host(VEIL_LOG_DEBUG, NULL,
                              "side inputs: metadata refresh: %s; trying "
                              "again in %d s",
                              rd_kafka_err2str(err), SIDE_REFRESH_MS / 1000);
                return;
        }
        for (int t = 0; t < md->topic_cnt; t++) {
                const struct rd_kafka_metadata_topic *mt = &md->topics[t];
                if (mt->err)
                        continue;
                for (size_t i = 0; i < k->n_sides; i++)
                        if (!strcmp(k->sides[i].topic, mt->topic))
                                side_add_parts(k, &k->sides[i], mt);
        }
        rd_kafka_metadata_destroy(md);
}

static void publish(struct kctx *k, int force);

/* Exactly-once: what a side record produces (a dead letter, an audit
 * record, later an access record) is held until a transaction that holds
 * it commits (struct kept), and the side consumer is not rewound after an
 * abort. While transactions abort one after the other (a broker refusing
 * them), every side record read adds to what is held and nothing frees
 * it: memory grew until the pod was killed, and the restart read it all
 * again. So, as the input pauses while too many batches wait (the loop's
 * backpressure), the side inputs pause once KEPT_MAX records are held and
 * resume once a transaction has committed them: the records not read
 * wait in their topic, none is skipped, and events go on meanwhile (their
 * batches are read again after each abort, so they hold nothing).
 * At-least-once, a topic missing (or a full local queue in a delivery
 * report) makes the stash hold what side records produce, without end as
 * well: the side inputs pause once it holds KEPT_MAX, until it drains.
 * Returns 1 while KEPT_MAX are held. */
static int side_hold(struct kctx *k) {
        size_t held = k->eos ? k->n_kept + k->n_redo : k->n_stash;
        int full = held >= KEPT_MAX;
        if (!k->side || full == k->sides_paused)
                return full;
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(k->side, &a) || !a)
                return full;
        rd_kafka_resp_err_t err = full ? rd_kafka_pause_partitions(k->side, a)
                                       : rd_kafka_resume_partitions(k->side,
                                                                    a);
        if (err) {
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "cannot %s the side inputs: %s",
                              full ? "pause" : "resume",
                              rd_kafka_err2str(err));
        } else {
                k->sides_paused = full;
                if (full && k->eos)
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "exactly-once: %zu record(s) produced "
                                      "between batches wait for a "
                                      "transaction to commit them (at most "
                                      "%d are held): side inputs paused "
                                      "until one does",
                                      held, KEPT_MAX);
                else if (full)
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "%zu record(s) wait to be produced%s%s%s "
                                      "(at most %d are held): side inputs "
                                      "paused until they are",
                                      held, k->missing[0] ? " to topic '" : "",
                                      k->missing,
                                      k->missing[0] ? "', which does not exist"
                                                    : "",
                                      KEPT_MAX);
                else
                        veil_log_host(VEIL_LOG_INFO, NULL,
                                      "%s; side inputs resumed",
                                      k->eos ? "exactly-once: the records "
                                               "held were committed"
                                             : "the records held were "
                                               "produced");
        }
        rd_kafka_topic_partition_list_destroy(a);
        return full;
}

/* Reads side-input records; returns how many were handled. */
static int poll_sides(struct kctx *k, int timeout_ms, int max) {
        int n = 0;
        /* Before any side_part pointer is taken: it may grow the arrays. */
        refresh_sides(k);
        int full = side_hold(k);
        while (k->side && n < max && !k->fatal) {
                /* Paused (side_hold), one poll still serves the side
                 * consumer's callbacks (error_cb) and what it fetched
                 * before the pause, which librdkafka drops as stale; a
                 * record that came all the same would be applied, never
                 * dropped. Not paused (that failed), nothing is read. */
                if (full && !k->sides_paused)
                        break;
                rd_kafka_message_t *m =
                        rd_kafka_consumer_poll(k->side, n ? 0 : timeout_ms);
                if (!m)
                        break;
                size_t idx = 0;
                const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
                struct side_part *sp = side_part(k, topic, m->partition, &idx);
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (sp && m->offset > sp->pos)
                                sp->pos = m->offset;
                        if (sp && m->offset >= sp->high)
                                sp->done = 1;
                } else if (m->err) {
                        if (!config_error(k, m->err,
                                          rd_kafka_message_errstr(m)))
                                veil_log_host(VEIL_LOG_WARN, NULL,
                                              "side input %s: %s", topic,
                                              rd_kafka_message_errstr(m));
                } else if (sp) {
                        rd_kafka_timestamp_type_t tt;
                        struct veil_source src = {
                                m->key,       m->key_len, m->payload,
                                m->len,       topic,      m->partition,
                                m->offset,    rd_kafka_message_timestamp(m, &tt)};
                        char err[1024];
                        if (veil_pipeline_side_record(k->p, idx, &src, err,
                                                      sizeof(err)) < 0)
                                set_fatal(k, "side input %s: %s", topic, err);
                        k->st.side_records++;
                        sp->pos = m->offset + 1;
                        if (m->offset + 1 >= sp->high)
                                sp->done = 1;
                        n++;
                        /* A long catch-up still beats and shows its
                         * progress (throttled inside). */
                        publish(k, 0);
                }
                rd_kafka_message_destroy(m);
                if (full || (full = side_hold(k)))
                        break;
        }
        if (!k->st.side_caught_up)
                update_caught_up(k);
        return n;
}

/* ------------------------------------------------------------------ */
/* Operations: metrics and readiness                                  */
/* ------------------------------------------------------------------ */

/* Counts the brokers librdkafka reports UP. The statistics JSON lists each
 * broker with "nodeid", "source", then "state"; bootstrap entries not yet
 * resolved (nodeid -1) and logical ones (the group coordinator handle, a
 * second view of a real broker) do not count. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
        (void)rk;
        (void)len;
        struct kctx *k = opaque;
        const char *b = strstr(json, "\"brokers\":");
        const char *end = b ? strstr(b, "\"topics\":") : NULL;
        int up = 0;
        for (const char *n = b; n && (n = strstr(n, "\"nodeid\":"));) {
                if (end && n > end)
                        break;
                long id = strtol(n + 9, NULL, 10);
                const char *src = strstr(n, "\"source\":\"");
                const char *st = strstr(n, "\"state\":\"");
                if (!st || (end && st > end))
                        break;
                int logical = src && src < st &&
                              !strncmp(src + 10, "logical\"", 8);
                up += id >= 0 && !logical && !strncmp(st + 9, "UP\"", 3);
                n = st;
        }
        k->brokers_up = up;
        return 0;
}

/* Lag of every assigned partition: high watermark (as last fetched) minus
 * the position. After a rebalance, partitions no longer assigned drop out
 * of the family. */
static void publish_lag(struct kctx *k) {
        struct veil_metrics *m = k->o->metrics;
        /* Any change, not the count: a cooperative swap of one partition
         * for another keeps the count and would leave the old series. */
        if (k->rebalances != k->lag_rebalances) {
                veil_metrics_clear(m, VEIL_M_LAG);
                k->lag_rebalances = k->rebalances;
        }
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(k->consumer, &a) || !a)
                return;
        rd_kafka_position(k->consumer, a);
        for (int i = 0; i < a->cnt; i++) {
                rd_kafka_topic_partition_t *tp = &a->elems[i];
                int64_t lo = 0, hi = 0;
                if (rd_kafka_get_watermark_offsets(k->consumer, tp->topic,
                                                   tp->partition, &lo,
                                                   &hi) ||
                    hi < 0)
                        continue;
                /* No position yet (nothing fetched since the assignment):
                 * from the low watermark, an upper bound. */
                int64_t lag = tp->offset >= 0 ? hi - tp->offset : hi - lo;
                char lb[300], part[16];
                snprintf(part, sizeof(part), "%d", (int)tp->partition);
                veil_metrics_labels(lb, sizeof(lb), "topic", tp->topic,
                                    "partition", part, NULL);
                veil_metrics_set(m, VEIL_M_LAG, lb, lag < 0 ? 0 : (double)lag);
        }
        rd_kafka_topic_partition_list_destroy(a);
}

/* Side inputs: metrics, and the reason readiness waits ("consent
 * (12000/40000)"). */
static void publish_sides(struct kctx *k, char *why, size_t why_size) {
        size_t o = 0;
        why[0] = '\0';
        for (size_t i = 0; i < k->n_sides; i++) {
                const struct side_topic *s = &k->sides[i];
                const char *name = k->cfg->side_inputs[s->index].name;
                int64_t pos = 0, high = 0;
                int done = 1;
                for (int j = 0; j < s->n_parts; j++) {
                        pos += s->parts[j].done ? s->parts[j].high
                                                : s->parts[j].pos;
                        high += s->parts[j].high;
                        done &= s->parts[j].done;
                }
                if (k->o->metrics) {
                        char lb[256];
                        veil_metrics_labels(lb, sizeof(lb), "input", name,
                                            NULL);
                        veil_metrics_set(k->o->metrics, VEIL_M_SIDE_POSITION,
                                         lb, (double)pos);
                        veil_metrics_set(k->o->metrics, VEIL_M_SIDE_END, lb,
                                         (double)high);
                        veil_metrics_set(k->o->metrics, VEIL_M_SIDE_CAUGHT_UP,
                                         lb, done);
                }
                if (!done && o < why_size) {
                        int n = snprintf(why + o, why_size - o,
                                         "%s%s (%lld/%lld)", o ? ", " : "",
                                         name, (long long)pos,
                                         (long long)high);
                        o += n > 0 ? (size_t)n : 0;
                }
        }
}

/* Called every loop turn: the liveness beat always, the rest at most four
 * times a second (counters only need to be fresh when scraped). */
static void publish(struct kctx *k, int force) {
        if (!k->o->metrics && !k->o->ops)
                return;
        if (k->o->ops)
                veil_ops_beat(k->o->ops);
        int64_t t = now_ms();
        if (!force && t - k->last_publish_ms < 250)
                return;
        k->last_publish_ms = t;
        struct veil_metrics *m = k->o->metrics;
        char sides[400];
        publish_sides(k, sides, sizeof(sides));
        if (m) {
                veil_observe_pipeline(k->obs, k->p);
                const struct veil_kafka_stats *st = &k->st;
                veil_metrics_set(m, VEIL_M_RECORDS_IN, "",
                                 (double)st->records_in);
                veil_metrics_set(m, VEIL_M_PRODUCED, "", (double)st->produced);
                veil_metrics_set(m, VEIL_M_ACKED, "", (double)st->acked);
                veil_metrics_set(m, VEIL_M_RETRIED, "", (double)st->retried);
                veil_metrics_set(m, VEIL_M_COMMITS, "", (double)st->commits);
                veil_metrics_set(m, VEIL_M_BATCHES, "", (double)st->batches);
                veil_metrics_set(m, VEIL_M_SIDE_RECORDS, "",
                                 (double)st->side_records);
                veil_metrics_set(m, VEIL_M_ASSIGNED, "", st->assigned);
                veil_metrics_set(m, VEIL_M_INFLIGHT, "", k->n_inflight);
                veil_metrics_set(m, VEIL_M_HELD, "", (double)st->held);
                veil_metrics_set(m, VEIL_M_QUEUE, "",
                                 rd_kafka_outq_len(k->producer));
                veil_metrics_set(m, VEIL_M_BROKERS_UP, "", k->brokers_up);
                if (k->subscribed && t - k->last_lag_ms >= 1000) {
                        k->last_lag_ms = t;
                        publish_lag(k);
                }
        }
        char why[512];
        int ready = 0;
        if (!k->st.side_caught_up)
                snprintf(why, sizeof(why), "side inputs not caught up: %s",
                         sides[0] ? sides : "opening them");
        else if (k->brokers_up == 0)
                snprintf(why, sizeof(why), "no connection to any broker");
        else if (k->missing[0] && k->eos)
                snprintf(why, sizeof(why),
                         "topic '%s' does not exist: the input waits for it "
                         "to be created",
                         k->missing);
        else if (k->missing[0])
                snprintf(why, sizeof(why),
                         "topic '%s' does not exist: %zu record(s) wait "
                         "for it to be created",
                         k->missing, k->n_stash);
        else if (k->stalled[0])
                snprintf(why, sizeof(why), "%s", k->stalled);
        else if (!k->subscribed)
                snprintf(why, sizeof(why), "not consuming yet");
        else if (k->st.assigned <= 0)
                snprintf(why, sizeof(why),
                         "no input partition assigned in group '%s'",
                         k->cfg->kafka.group);
        else
                ready = 1;
        if (k->o->ops)
                veil_ops_set_ready(k->o->ops, ready, ready ? "" : why);
        if (m)
                veil_metrics_set(m, VEIL_M_READY, "", ready);
}

/* ------------------------------------------------------------------ */
/* Reload                                                             */
/* ------------------------------------------------------------------ */

static void free_sides(rd_kafka_t *side, struct side_topic *sides, size_t n) {
        if (side) {
                rd_kafka_consumer_close(side);
                rd_kafka_destroy(side);
        }
        for (size_t i = 0; i < n; i++)
                free(sides[i].parts);
        free(sides);
}

/* Side inputs for the configuration `cfg`, read from the beginning by a new
 * consumer: the new pipeline's stages rebuild what they derive from them
 * (the consent ledger). On failure the current ones stay. */
static int reopen_sides(struct kctx *k, const struct veil_config *cfg,
                        char *errstr, size_t errstr_size) {
        rd_kafka_t *old_side = k->side;
        struct side_topic *old_sides = k->sides;
        size_t old_n = k->n_sides;
        const struct veil_config *old_cfg = k->cfg;
        int old_caught_up = k->st.side_caught_up;
        int old_paused = k->sides_paused;
        k->side = NULL;
        k->sides_paused = 0; /* a new consumer: nothing paused */
        k->sides = NULL;
        k->n_sides = 0;
        k->cfg = cfg;
        k->st.side_caught_up = 0;
        int rc = open_sides(k, errstr, errstr_size);
        if (rc) {
                free_sides(k->side, k->sides, k->sides ? k->n_sides : 0);
                k->side = old_side;
                k->sides = old_sides;
                k->n_sides = old_n;
                k->cfg = old_cfg;
                k->st.side_caught_up = old_caught_up;
                k->sides_paused = old_paused;
                return rc;
        }
        free_sides(old_side, old_sides, old_n);
        return 0;
}

static void reload_failed(struct kctx *k, const char *err) {
        const char *fields[] = {"file", k->cfg->file, NULL};
        veil_log_fields(VEIL_LOG_ERROR, NULL, fields,
                        "reload failed, the running pipeline stays: %s", err);
        if (k->o->metrics)
                veil_metrics_add(k->o->metrics, VEIL_M_RELOAD_FAILURES, "", 1);
        if (k->o->ops)
                veil_ops_reload_done(k->o->ops, 0, err);
}

/* Between two batches (the open one has just run). */
static void reload(struct kctx *k, int shutdown_ms) {
        char err[VEIL_OPS_MSG_MAX] = "";
        struct veil_pipeline *np = NULL;
        veil_log_host(VEIL_LOG_INFO, NULL, "reloading %s", k->cfg->file);
        if (!k->o->reload_open) {
                reload_failed(k, "this command does not reload");
                return;
        }
        if (k->o->reload_open(k->o->reload_ctx, k->p, &np, err, sizeof(err))) {
                reload_failed(k, err);
                return;
        }
        /* Earlier batches finish under the pipeline that ran them; what is
         * not acknowledged in time stays tracked and commits later. */
        if (drain(k, shutdown_ms, 1) != 0 && !k->fatal)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "reload: %d batch(es) not yet acknowledged; "
                              "they commit when they are",
                              k->n_inflight);
        if (k->fatal) {
                /* The host stops: nothing of the new pipeline was taken
                 * in yet. */
                k->o->reload_close(k->o->reload_ctx, 0);
                reload_failed(k, "the host is stopping after an error");
                return;
        }
        int rc = veil_pipeline_transfer(np, k->p, err, sizeof(err));
        if (!rc && (rc = reopen_sides(k, veil_pipeline_config(np), err,
                                      sizeof(err))))
                /* The old pipeline stays: the requests it handed over
                 * come back to it. */
                veil_pipeline_take_requests(k->p, np);
        if (rc) {
                k->o->reload_close(k->o->reload_ctx, 0);
                reload_failed(k, err);
                return;
        }
        /* From here the new pipeline is taken in even if an error came up
         * meanwhile (the loop then stops): the side inputs read its
         * configuration now, so closing it would leave them dangling. */
        /* The old pipeline's last counts go out before its numbers stop. */
        publish(k, 1);
        veil_pipeline_set_sink(k->p, (struct veil_sink){NULL, NULL});
        set_sink(k, np);
        k->p = np;
        k->cfg = veil_pipeline_config(np);
        /* The state moved by plugin, the checkpoint keys are by position:
         * the keys of stages np does not have are deleted with the next
         * checkpoint (no erasure reaches them any more). */
        if (veil_checkpoint_writer_retarget(k->ckw, np))
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "reload: out of memory: the checkpoints of "
                              "stages the new pipeline no longer has stay "
                              "on the state topic until the next start "
                              "deletes them");
        /* The state section may have changed; a bad one keeps the old. */
        struct veil_checkpoint_config ck;
        if (veil_checkpoint_config_parse(k->cfg, &ck, err, sizeof(err)))
                veil_log_host(VEIL_LOG_WARN, NULL, "%s; checkpoints continue "
                              "as before", err);
        else if (ck.enabled &&
                 (!k->ck.enabled || strcmp(ck.topic, k->ck.topic)))
                /* Checkpoints are numbered above the newest on their topic,
                 * which only a start reads: numbered from here, a topic
                 * that already holds newer ones would win over them at the
                 * next start, and the state roll back. */
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "reload: the state: section now names topic "
                              "'%s'; checkpoints continue as before (%s%s%s) "
                              "until a restart, which reads that topic first",
                              ck.topic, k->ck.enabled ? "to '" : "none",
                              k->ck.enabled ? k->ck.topic : "",
                              k->ck.enabled ? "'" : "");
        else
                k->ck = ck;
        k->batch = veil_pipeline_batch_begin(np);
        k->o->reload_close(k->o->reload_ctx, 1);
        if (k->obs)
                veil_observe_reset(k->obs);
        if (k->o->metrics)
                veil_metrics_add(k->o->metrics, VEIL_M_RELOADS, "", 1);
        char n_stages[16];
        snprintf(n_stages, sizeof(n_stages), "%zu",
                 veil_pipeline_n_stages(np));
        const char *fields[] = {"file", k->cfg->file, "stages", n_stages,
                                NULL};
        veil_log_fields(VEIL_LOG_INFO, NULL, fields, "reloaded%s",
                        k->n_sides ? "; reading the side inputs again "
                                     "before events continue"
                                   : "");
        if (k->o->ops)
                veil_ops_reload_done(k->o->ops, 1, "");
}

/* ------------------------------------------------------------------ */
/* Checkpoints                                                        */
/* ------------------------------------------------------------------ */

/* How long reading the state topic may go without receiving anything.
 * Not a limit on the whole read: a large topic takes as long as it takes.
 * What stops records arriving is an open transaction holding the last
 * stable offset (read_committed stops there): the broker aborts one whose
 * producer died after its transaction.timeout.ms, so the default waits a
 * little longer than that (one of ours under this transactional.id was
 * aborted already, by init_transactions). */
static int64_t state_idle_ms(struct kctx *k) {
        if (k->o->state_idle_ms > 0)
                return k->o->state_idle_ms;
        char buf[32];
        size_t n = sizeof(buf);
        int64_t txn = 60000;
        if (k->producer &&
            rd_kafka_conf_get(rd_kafka_conf(k->producer),
                              "transaction.timeout.ms", buf,
                              &n) == RD_KAFKA_CONF_OK)
                txn = strtoll(buf, NULL, 10);
        return txn + 15000 > 60000 ? txn + 15000 : 60000;
}

/* Reads the state topic from its beginning to its end with an assign-only
 * consumer and restores the stages from it. read_committed: a checkpoint
 * whose transaction was aborted is never seen. */
static int load_state(struct kctx *k, char *errstr, size_t errstr_size) {
        const char *topic = k->ck.topic;
        char group[512];
        snprintf(group, sizeof(group), "%s.state", k->cfg->kafka.group);
        static const char *const defaults[] = {
                "group.id", NULL, "enable.partition.eof", "true",
                "auto.offset.reset", "earliest", NULL};
        const char *d[sizeof(defaults) / sizeof(*defaults)];
        memcpy(d, defaults, sizeof(defaults));
        d[1] = group;
        rd_kafka_conf_t *c =
                base_conf(k, VEIL_KAFKA_READER, d, errstr, errstr_size);
        if (!c)
                return -VEIL_EINVAL;
        rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, c, errstr, errstr_size);
        if (!rk)
                return -VEIL_EINVAL;
        rd_kafka_poll_set_consumer(rk);
        struct veil_checkpoint_reader *r = NULL;
        rd_kafka_topic_partition_list_t *assign = NULL;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int rc = veil_checkpoint_reader_new(&r, k->cfg->kafka.group, k->p);
        int64_t deadline = now_ms() + 30000;
        int n_left = 0;
        while (!rc) {
                rd_kafka_resp_err_t err =
                        rd_kafka_metadata(rk, 0, rkt, &md, 5000);
                if (!err && md->topic_cnt == 1 && !md->topics[0].err &&
                    md->topics[0].partition_cnt > 0)
                        break;
                if (!err)
                        err = md->topic_cnt ? md->topics[0].err
                                            : RD_KAFKA_RESP_ERR_UNKNOWN;
                if (md)
                        rd_kafka_metadata_destroy(md);
                md = NULL;
                /* No topic yet: no checkpoint yet (the first one creates
                 * it where the brokers auto-create topics). */
                if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                        break;
                /* A stop while waiting: nothing restored, and nothing
                 * saved either (the shutdown saves only after a
                 * subscription), so the checkpoints stay as they are. */
                if (should_stop(k) && !k->fatal)
                        break;
                if (now_ms() > deadline || k->fatal) {
                        snprintf(errstr, errstr_size,
                                 "state: topic '%s' is not available: %s",
                                 topic, rd_kafka_err2str(err));
                        rc = -VEIL_EIO;
                        break;
                }
                struct timespec ts = {0, 200 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        if (!rc && md) {
                assign = rd_kafka_topic_partition_list_new(
                        md->topics[0].partition_cnt);
                for (int j = 0; j < md->topics[0].partition_cnt && !rc; j++) {
                        int32_t pid = md->topics[0].partitions[j].id;
                        int64_t lo = 0, hi = 0;
                        rd_kafka_resp_err_t err = watermarks(
                                rk, topic, pid, &lo, &hi, now_ms() + 30000);
                        if (err) {
                                snprintf(errstr, errstr_size,
                                         "state: end offset of %s [%d]: %s",
                                         topic, (int)pid,
                                         rd_kafka_err2str(err));
                                rc = -VEIL_EIO;
                        } else if (hi > lo) {
                                rd_kafka_topic_partition_list_add(assign,
                                                                  topic, pid)
                                        ->offset = RD_KAFKA_OFFSET_BEGINNING;
                                n_left++;
                        }
                }
                if (!rc && n_left && rd_kafka_assign(rk, assign)) {
                        snprintf(errstr, errstr_size,
                                 "state: cannot assign '%s'", topic);
                        rc = -VEIL_EIO;
                }
        }
        /* To the end: a partition is done at its end-of-partition event
         * (the last stable offset, for read_committed). However long that
         * takes while records keep arriving; but nothing for idle_ms fails
         * the start. Restoring from part of the log would take the newest
         * checkpoint of that part, possibly days old (the state of people
         * erased since back), and number the next ones after what was
         * read, below checkpoints further on that would then win at the
         * next full read. Failing, the host exits 1 and is restarted (by
         * Kubernetes), by when the open transaction that held the end has
         * been aborted. */
        uint64_t records = 0;
        int64_t idle_ms = state_idle_ms(k), heard_ms = now_ms();
        int n_parts = 0; /* above the largest partition id */
        for (int j = 0; md && j < md->topics[0].partition_cnt; j++)
                if (md->topics[0].partitions[j].id >= n_parts)
                        n_parts = md->topics[0].partitions[j].id + 1;
        unsigned char *at_end = calloc(n_parts ? (size_t)n_parts : 1, 1);
        if (!at_end && !rc) {
                snprintf(errstr, errstr_size, "state: out of memory");
                rc = -VEIL_ENOMEM;
        }
        while (!rc && n_left > 0 && !k->fatal && !should_stop(k)) {
                if (now_ms() - heard_ms > idle_ms) {
                        snprintf(errstr, errstr_size,
                                 "state: nothing received from '%s' for "
                                 "%.1f s with %d partition(s) not read to "
                                 "their end (%llu record(s) read): an open "
                                 "transaction holding its last stable "
                                 "offset, or a broker not answering; not "
                                 "restoring from part of the checkpoints",
                                 topic, (double)idle_ms / 1000, n_left,
                                 (unsigned long long)records);
                        rc = -VEIL_EIO;
                        break;
                }
                /* A long read is the loop alive, not stuck (liveness). */
                publish(k, 0);
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        /* Once per partition: a partition written to
                         * meanwhile reports its end again. */
                        if (m->partition >= 0 && m->partition < n_parts &&
                            !at_end[m->partition]) {
                                at_end[m->partition] = 1;
                                n_left--;
                        }
                        heard_ms = now_ms();
                } else if (m->err) {
                        veil_log_host(VEIL_LOG_WARN, NULL, "state: %s: %s",
                                      topic, rd_kafka_message_errstr(m));
                } else {
                        veil_checkpoint_reader_add(r, m->key, m->key_len,
                                                   m->payload, m->len);
                        records++;
                        heard_ms = now_ms();
                }
                rd_kafka_message_destroy(m);
        }
        free(at_end);
        if (!rc && k->fatal) {
                snprintf(errstr, errstr_size, "state: %s", k->err);
                rc = -VEIL_EIO;
        }
        size_t restored = 0;
        if (!rc && !should_stop(k))
                rc = veil_checkpoint_reader_restore(r, k->p, topic,
                                                    k->ckw, &restored,
                                                    errstr, errstr_size);
        if (!rc) {
                veil_checkpoint_writer_floor(k->ckw, wall_ms());
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "state: read %llu record(s) of '%s', restored "
                              "%zu stage(s)",
                              (unsigned long long)records, topic, restored);
        }
        if (md)
                rd_kafka_metadata_destroy(md);
        if (assign)
                rd_kafka_topic_partition_list_destroy(assign);
        rd_kafka_topic_destroy(rkt);
        veil_checkpoint_reader_free(r);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return rc;
}

/* At a batch boundary, when the interval has passed (or force: at
 * shutdown). Produced like any output: in exactly-once mode inside the
 * batch's transaction, so a checkpoint commits with the offsets of the
 * batches whose effects it holds. */
static void save_state(struct kctx *k, int force) {
        if (!k->ck.enabled || k->fatal)
                return;
        int64_t now = now_ms();
        if (!force && now - k->ck_last_ms < k->ck.interval_ms)
                return;
        /* At-least-once: the last checkpoint is complete in the log once
         * its records are all acknowledged; only then do its stages' next
         * ones go to the other key set (exactly-once: when its transaction
         * commits, eos_commit). Until then the next one is put off to a
         * later batch boundary: written to the same keys meanwhile, a
         * record of the earlier one produced again after a failed
         * delivery could land after it and leave neither whole. At
         * shutdown it goes anyway, to those same keys, which hold no
         * checkpoint known complete. */
        if (k->ck_flight) {
                if (k->ck_flight->pending > 0 && !force)
                        return;
                if (k->ck_flight->pending <= 0)
                        veil_checkpoint_writer_settled(k->ckw, 1);
        }
        k->ck_last_ms = now;
        struct veil_sink sink = {sink_strict, k};
        char err[1024];
        size_t n = 0;
        uint64_t seq = veil_checkpoint_writer_next(k->ckw);
        /* Not kept for a redo (struct kept): a checkpoint whose
         * transaction aborts holds the aborted batch's effects, and the
         * next one supersedes it. */
        k->no_keep = 1;
        k->ck_producing = 1;
        int rc = veil_checkpoint_save(k->p, &sink, k->ck.topic,
                                      k->cfg->kafka.group, k->ckw, &n, err,
                                      sizeof(err));
        k->ck_producing = 0;
        k->no_keep = 0;
        if (rc) {
                /* The writer has used up the number: the next checkpoint
                 * never reuses it with other contents. */
                veil_log_host(VEIL_LOG_WARN, NULL, "%s", err);
                return;
        }
        if (n)
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "state: checkpoint %llu of %zu stage(s) "
                              "produced to '%s'",
                              (unsigned long long)seq, n, k->ck.topic);
}

/* ------------------------------------------------------------------ */
/* The loop                                                           */
/* ------------------------------------------------------------------ */

/* Default deny: nothing is consumed until every side input (the consent
 * ledger) has caught up with the end it had when reading began. */
static int should_stop(struct kctx *k);
static void catch_up(struct kctx *k) {
        int64_t topic_ms = 0;
        while (!k->st.side_caught_up && !should_stop(k) && !k->fatal) {
                poll_sides(k, 100, 10000);
                rd_kafka_poll(k->producer, 0);
                produce_stashed(k);
                commit_ready(k, 0);
                /* Exactly-once: no batch commits the records produced
                 * meanwhile (audit records, dead letters); committed here
                 * every KEPT_MAX records (poll_sides reads no more until a
                 * commit, see side_hold), or after CATCH_UP_TXN_MS,
                 * well within transaction.timeout.ms (60 s), after which
                 * the coordinator would abort the transaction. */
                if (k->eos && k->txn_open &&
                    (k->n_kept + k->n_redo >= KEPT_MAX ||
                     now_ms() - k->txn_begun_ms >= CATCH_UP_TXN_MS))
                        eos_commit_between(k);
                /* What the side inputs produced to a missing topic: held
                 * (eos_redo) until it exists. */
                if (k->eos)
                        eos_topic_check(k, &topic_ms);
                publish(k, 0);
        }
        publish(k, 1);
}

static int should_stop(struct kctx *k) {
        if (k->o->stop && *k->o->stop)
                return 1;
        return k->o->should_stop && k->o->should_stop(k->o->ctx, &k->st);
}

static void add_msg(struct kctx *k, rd_kafka_message_t *m) {
        if (k->n_msgs == k->cap_msgs) {
                size_t cap = k->cap_msgs ? k->cap_msgs * 2 : 256;
                rd_kafka_message_t **n =
                        realloc(k->msgs, cap * sizeof(*k->msgs));
                if (!n) {
                        /* Not committed, so read again after the restart. */
                        rd_kafka_message_destroy(m);
                        set_fatal(k, "out of memory reading a batch");
                        return;
                }
                k->msgs = n;
                k->cap_msgs = cap;
        }
        if (!k->n_msgs)
                k->first_ms = now_ms();
        k->msgs[k->n_msgs++] = m;
        k->st.records_in++;
}

/* A record into the open batch; an error is logged (or fatal). */
static void take_msg(struct kctx *k, rd_kafka_message_t *m) {
        if (!m->err) {
                add_msg(k, m);
                return;
        }
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
            !config_error(k, m->err, rd_kafka_message_errstr(m)))
                veil_log_host(VEIL_LOG_WARN, NULL, "consumer: %s",
                              rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
}

/* How long a loop turn waits for a batch's first record: max_wait_ms,
 * within these bounds. At least TURN_MIN_MS, so that an idle host sleeps in
 * the consumer's poll rather than spin (with max_wait_ms 0 every poll of
 * the loop returned at once: a core's worth of CPU doing nothing); at most
 * TURN_MAX_MS, since what else the loop serves (side inputs, delivery
 * reports, commits, reloads, readiness) waits that long. */
#define TURN_MIN_MS 20
#define TURN_MAX_MS 250

/* Fills the open batch up to max_events, or until max_wait_ms after its
 * first record arrived (it used to be after the turn began, which closed
 * a quiet input's batch anywhere from at once to max_wait_ms after its
 * record). */
static void form_batch(struct kctx *k) {
        size_t max = (size_t)k->cfg->max_events;
        int turn = k->cfg->max_wait_ms;
        turn = turn < TURN_MIN_MS ? TURN_MIN_MS
             : turn > TURN_MAX_MS ? TURN_MAX_MS
                                  : turn;
        int64_t idle_end = now_ms() + turn;
        while (k->n_msgs < max && !k->fatal) {
                int64_t end = k->n_msgs ? k->first_ms + k->cfg->max_wait_ms
                                        : idle_end;
                int64_t left = end - now_ms();
                if (left < 0)
                        left = 0;
                rd_kafka_message_t *m =
                        rd_kafka_consumer_poll(k->consumer, (int)left);
                if (k->rewind) {
                        /* A revocation dropped the batch (exactly-once).
                         * This record is read again too: noted, so that
                         * a partition without a committed offset goes
                         * back to it (eos_rewind). */
                        if (m && !m->err)
                                txn_note(k, m);
                        if (m)
                                rd_kafka_message_destroy(m);
                        break;
                }
                if (!m) {
                        if (left == 0)
                                break;
                        continue;
                }
                take_msg(k, m);
        }
}

/* Defined only when linked with a leak sanitizer. */
void __lsan_ignore_object(const void *p) __attribute__((weak));
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* A consumer left to the process exit (close_all): its threads still run. */
static int lingering;

int veil_kafka_exit(int code) {
        if (!lingering)
                return code;
        /* exit() would run the exit handlers (OpenSSL's cleanup among
         * them) while the consumer's threads may be inside TLS: an
         * occasional crash on the way out of a failed start. Flush, let a
         * sanitizer build check for leaks, and leave without them. */
        fflush(NULL);
        if (__lsan_do_recoverable_leak_check &&
            __lsan_do_recoverable_leak_check())
                code = 1;
        _exit(code);
}

static void close_all(struct kctx *k) {
        txn_from_clear(k);
        if (k->to_commit)
                rd_kafka_topic_partition_list_destroy(k->to_commit);
        if (k->committing)
                rd_kafka_topic_partition_list_destroy(k->committing);
        if (k->commit_q)
                rd_kafka_queue_destroy(k->commit_q);
        /* librdkafka before 2.3.0 asserts in
         * rd_kafka_sticky_assignor_state_destroy when a cooperative-sticky
         * consumer that joined a group but never received an assignment is
         * destroyed (librdkafka issue #4312; Debian 12 ships 2.0.2). Such a
         * consumer has been closed (it left the group) and holds nothing
         * of ours, so it is left to the process exit instead: silenced,
         * so that its threads' reconnection errors do not follow (and
         * bury) the reason veil exits with, and shown to LeakSanitizer as
         * kept on purpose; its threads then run on while the process
         * exits, so veil leaves without the exit handlers that could pull
         * the TLS library from under them (veil_kafka_exit). A consumer
         * that never subscribed never joined a group (a side input that
         * failed first, say): destroyed. */
        if (k->consumer && (k->ever_assigned || !k->subscribed)) {
                rd_kafka_destroy(k->consumer);
        } else if (k->consumer) {
                lingering = 1;
                veil_log_host(VEIL_LOG_DEBUG, NULL,
                              "consumer never assigned: not destroyed "
                              "(librdkafka #4312)");
                rd_kafka_set_log_level(k->consumer, 0);
                if (__lsan_ignore_object)
                        __lsan_ignore_object(k->consumer);
        }
        if (k->side) {
                rd_kafka_consumer_close(k->side);
                rd_kafka_destroy(k->side);
        }
        if (k->producer)
                rd_kafka_destroy(k->producer);
        /* Not produced: their batches were not committed either. */
        while (k->stash) {
                struct stashed *r = k->stash;
                k->stash = r->next;
                stashed_free(r);
        }
        k->stash_tail = &k->stash;
        k->n_stash = 0;
        for (size_t i = 0; i < k->n_msgs; i++)
                rd_kafka_message_destroy(k->msgs[i]);
        free(k->msgs);
        for (size_t i = 0; k->sides && i < k->n_sides; i++)
                free(k->sides[i].parts);
        free(k->sides);
        while (k->head) {
                struct inflight *f = k->head;
                k->head = f->next;
                if (f->offsets)
                        rd_kafka_topic_partition_list_destroy(f->offsets);
                free(f);
        }
        kept_free(k->kept);
        kept_free(k->redo);
        /* After the producer: no delivery report comes any more. */
        free(k->ck_flight);
        k->ck_flight = NULL;
        veil_checkpoint_writer_free(k->ckw);
        k->ckw = NULL;
        while (k->bare) {
                struct bare *b = k->bare;
                k->bare = b->next;
                free(b);
        }
}

/* Backpressure: with the input partitions paused the consumer stops
 * fetching, so records do not pile up in its queue while the output is
 * down; resumed once the outputs are acknowledged again. */
static void pause_input(struct kctx *k, int pause) {
        if (k->paused == pause)
                return;
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(k->consumer, &a) || !a)
                return;
        rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(
                                                  k->consumer, a)
                                        : rd_kafka_resume_partitions(
                                                  k->consumer, a);
        if (err)
                veil_log_host(VEIL_LOG_WARN, NULL, "cannot %s the input: %s",
                              pause ? "pause" : "resume",
                              rd_kafka_err2str(err));
        else {
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "%s %d input partition(s)%s%s%s",
                              pause ? "paused" : "resumed", a->cnt,
                              !pause ? ""
                              : k->sides_paused
                                      ? k->eos ? ": the side inputs wait for "
                                                 "held records to commit"
                                               : ": the side inputs wait for "
                                                 "held records to be produced"
                              : k->missing[0] ? ": topic '"
                                              : ": outputs not acknowledged",
                              pause && !k->sides_paused ? k->missing : "",
                              pause && !k->sides_paused && k->missing[0]
                                      ? "' does not exist"
                                      : "");
                k->paused = pause;
        }
        rd_kafka_topic_partition_list_destroy(a);
}

/* Exactly-once, a topic missing: the transaction that met it has been
 * aborted (or is, here), and processing the input again would only abort
 * again, charging the privacy budget every time. So the input pauses
 * (its consumer still polled: the group sees it alive) until the topic
 * exists, with no transaction open: the coordinator aborts one open past
 * transaction.timeout.ms. */
static void eos_wait_topic(struct kctx *k) {
        if (k->txn_open)
                eos_commit_between(k);
        pause_input(k, 1);
        int64_t next_ms = 0;
        while (k->missing[0] && !k->fatal && !should_stop(k)) {
                eos_topic_check(k, &next_ms);
                rd_kafka_poll(k->producer, 100);
                rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, 0);
                if (m)
                        take_msg(k, m);
                publish(k, 0);
        }
        pause_input(k, k->sides_paused);
}

/* "<group>-<instance>": stable per instance, so that a restarted instance
 * fences its zombie (its predecessor with the same id) and aborts the
 * transaction it left open. The instance is VEIL_INSTANCE_ID, else the
 * host name (a StatefulSet pod's name). Group generation fences the rest
 * (KIP-447): one id per instance suffices, whatever it is assigned. */
static void transactional_id(struct kctx *k, char *buf, size_t size) {
        char inst[256];
        veil_instance_id(inst, sizeof(inst));
        snprintf(buf, size, "%s-%s", k->cfg->kafka.group, inst);
}

/* Per call of rd_kafka_init_transactions, which goes on where the last
 * one timed out: a stop request (SIGTERM) is seen between calls. One call
 * of 30 s held a SIGTERM for up to 30 s (Kubernetes' default grace
 * period) and then exited 1 blaming the brokers' version. */
#define TXN_INIT_CALL_MS 2000
/* Returns 0 ready, 1 stopped before (nothing read: a clean exit), or a
 * negative error. */
static int init_transactions(struct kctx *k, char *errstr,
                             size_t errstr_size) {
        char hint[512];
        struct quiet warn = {0};
        for (;;) {
                rd_kafka_error_t *e = rd_kafka_init_transactions(
                        k->producer, TXN_INIT_CALL_MS);
                if (!e)
                        return 0;
                int retriable = rd_kafka_error_is_retriable(e);
                uint64_t n;
                if (retriable && should_stop(k)) {
                        veil_log_host(VEIL_LOG_INFO, NULL,
                                      "stopped while initialising "
                                      "transactions (%s): nothing was read",
                                      rd_kafka_error_string(e));
                        rd_kafka_error_destroy(e);
                        return 1;
                }
                if (!retriable &&
                    rd_kafka_error_code(e) ==
                            RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                        snprintf(errstr, errstr_size,
                                 "kafka.guarantee exactly-once: cannot "
                                 "initialise transactions: %s; %s",
                                 rd_kafka_error_string(e),
                                 txn_acl_hint(k, hint, sizeof(hint)));
                else if (!retriable)
                        snprintf(errstr, errstr_size,
                                 "kafka.guarantee exactly-once: cannot "
                                 "initialise transactions: %s (the brokers "
                                 "must support transactions, Kafka >= 2.5)",
                                 rd_kafka_error_string(e));
                else if (quiet_due(&warn, &n))
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "initialising transactions: %s; "
                                      "retrying (%llu time(s) since the last "
                                      "such line)",
                                      rd_kafka_error_string(e),
                                      (unsigned long long)n);
                rd_kafka_error_destroy(e);
                if (!retriable)
                        return -VEIL_EIO;
        }
}

int veil_kafka_run(struct veil_pipeline *p, const struct veil_kafka_opts *o,
                   struct veil_kafka_stats *stats, char *errstr,
                   size_t errstr_size) {
        struct kctx k;
        memset(&k, 0, sizeof(k));
        k.p = p;
        k.cfg = veil_pipeline_config(p);
        k.o = o;
        int max_inflight = o->max_inflight > 0 ? o->max_inflight : 16;
        int shutdown_ms = o->shutdown_timeout_ms > 0 ? o->shutdown_timeout_ms
                                                     : 10000;
        k.shutdown_ms = shutdown_ms;
        int rc = 0;
        k.brokers_up = -1;

        k.eos = k.cfg->kafka.guarantee == VEIL_EXACTLY_ONCE;
        k.kept_tail = &k.kept;
        k.stash_tail = &k.stash;
        if ((rc = veil_checkpoint_config_parse(k.cfg, &k.ck, errstr,
                                               errstr_size)))
                return rc;
        k.ck_last_ms = now_ms();

        /* The last pair is the transactional.id, exactly-once only (a
         * kafka.settings entry overrides it). */
        static const char *const pdefaults[] = {
                "linger.ms", "5", "transactional.id", NULL, NULL};
        const char *pd[sizeof(pdefaults) / sizeof(*pdefaults)];
        memcpy(pd, pdefaults, sizeof(pdefaults));
        char tid[512];
        if (k.eos) {
                transactional_id(&k, tid, sizeof(tid));
                pd[3] = tid;
        } else
                pd[2] = NULL;
        rd_kafka_conf_t *pc =
                base_conf(&k, VEIL_KAFKA_PRODUCER, pd, errstr, errstr_size);
        if (!pc)
                return -VEIL_EINVAL;
        rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
        if (!(k.producer = new_client(RD_KAFKA_PRODUCER, pc, errstr,
                                      errstr_size)))
                return -VEIL_EINVAL;
        /* Checkpoint chunks are of a fixed size: a producer that cannot
         * take them would stop the host at the first checkpoint, a minute
         * in, and again after every restart. */
        size_t mx = producer_max_bytes(k.producer);
        if (k.ck.enabled && mx && mx < CKPT_RECORD_MAX) {
                snprintf(errstr, errstr_size,
                         "state: checkpoints go to topic '%s' in records of "
                         "up to %zu bytes, and the producer's "
                         "message.max.bytes is %zu: set kafka.settings "
                         "message.max.bytes to at least %zu (and the state "
                         "topic's max.message.bytes at least the smaller of "
                         "message.max.bytes and batch.size: it limits "
                         "whole batches)",
                         k.ck.topic, (size_t)CKPT_RECORD_MAX, mx,
                         (size_t)CKPT_RECORD_MAX);
                close_all(&k);
                return -VEIL_EINVAL;
        }
        if (k.ck.enabled &&
            (rc = veil_kafka_state_topic_check(k.producer, k.ck.topic,
                                               state_topic_min(k.producer),
                                               10000, errstr, errstr_size))) {
                close_all(&k);
                return rc;
        }
        if (k.eos && (rc = init_transactions(&k, errstr, errstr_size))) {
                if (rc > 0 && stats) /* stopped: nothing was read */
                        *stats = k.st;
                close_all(&k);
                return rc > 0 ? 0 : rc;
        }

        /* Statistics (for readiness: is any broker up?) only when someone
         * asks; the last pair is cut off otherwise. */
        static const char *const cdefaults[] = {
                "group.id", NULL, "auto.offset.reset", "earliest",
                "partition.assignment.strategy", "cooperative-sticky",
                "statistics.interval.ms", "5000", NULL};
        const char *cd[sizeof(cdefaults) / sizeof(*cdefaults)];
        memcpy(cd, cdefaults, sizeof(cdefaults));
        cd[1] = k.cfg->kafka.group;
        if (!o->metrics && !o->ops)
                cd[6] = NULL;
        rd_kafka_conf_t *cc =
                base_conf(&k, VEIL_KAFKA_CONSUMER, cd, errstr, errstr_size);
        if (!cc) {
                close_all(&k);
                return -VEIL_EINVAL;
        }
        if (o->metrics || o->ops)
                rd_kafka_conf_set_stats_cb(cc, stats_cb);
        rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
        if (!(k.consumer = new_client(RD_KAFKA_CONSUMER, cc, errstr,
                                      errstr_size))) {
                close_all(&k);
                return -VEIL_EINVAL;
        }
        rd_kafka_poll_set_consumer(k.consumer);
        k.commit_q = rd_kafka_queue_new(k.consumer);

        if (o->metrics && (rc = veil_observe_new(&k.obs, o->metrics))) {
                snprintf(errstr, errstr_size, "metrics: cannot declare the "
                                              "metric families");
                close_all(&k);
                return rc;
        }
        set_sink(&k, p);
        k.batch = veil_pipeline_batch_begin(p);
        if (veil_checkpoint_writer_new(&k.ckw) ||
            (k.ck.enabled && !k.eos &&
             !(k.ck_flight = calloc(1, sizeof(*k.ck_flight))))) {
                snprintf(errstr, errstr_size, "out of memory");
                close_all(&k);
                return -VEIL_ENOMEM;
        }

        publish(&k, 1);
        /* Stages start from their checkpoint before the side inputs are
         * read, as after a reload (veil_pipeline_transfer, then
         * reopen_sides): the erasures and access requests the consent
         * topic holds apply to the restored state. The host applies them
         * every 4,096 while catching up, so a restore after the catch-up
         * brought back the state of people erased in the earlier chunks,
         * and answered their access requests without it. */
        if (k.ck.enabled && !k.fatal && !should_stop(&k) &&
            (rc = load_state(&k, errstr, errstr_size))) {
                close_all(&k);
                return rc;
        }
        if ((rc = open_sides(&k, errstr, errstr_size))) {
                close_all(&k);
                return rc;
        }
        catch_up(&k);

        int subscribed = 0;
        if (k.st.side_caught_up && !k.fatal && !should_stop(&k)) {
                rd_kafka_topic_partition_list_t *sub =
                        rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(sub, k.cfg->input.topic,
                                                  RD_KAFKA_PARTITION_UA);
                rd_kafka_resp_err_t err = rd_kafka_subscribe(k.consumer, sub);
                rd_kafka_topic_partition_list_destroy(sub);
                if (err) {
                        snprintf(errstr, errstr_size,
                                 "cannot subscribe to '%s': %s",
                                 k.cfg->input.topic, rd_kafka_err2str(err));
                        close_all(&k);
                        return -VEIL_EIO;
                }
                subscribed = k.subscribed = 1;
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "consuming '%s' in group '%s'",
                              k.cfg->input.topic, k.cfg->kafka.group);
        }

        while (subscribed && !should_stop(&k) && !k.fatal) {
                poll_sides(&k, 0, 1000);
                /* Side inputs paused for what they hold (side_hold): the
                 * input waits too, or its events would run against a
                 * consent ledger that no longer reads its topic (a
                 * withdrawal not applied). Nothing commits meanwhile
                 * anyway: the transactions are aborting, or (at-least-once)
                 * the records stashed are not produced yet. */
                pause_input(&k, k.sides_paused);
                if (k.eos && k.missing[0]) {
                        eos_wait_topic(&k);
                        /* Stopped while it waited: a batch now could only
                         * abort (the topic still missing), after learning
                         * and perhaps a charged release. */
                        if (k.missing[0])
                                continue;
                }
                form_batch(&k);
                if (k.rewind)
                        eos_rewind(&k);
                run_batch(&k);
                save_state(&k, 0);
                if (k.eos) {
                        eos_end_batch(&k);
                        if (k.rewind)
                                eos_rewind(&k);
                }
                rd_kafka_poll(k.producer, 0);
                produce_stashed(&k);
                commit_ready(&k, 0);
                publish(&k, 0);
                /* Bounded memory: stop reading while too many batches wait
                 * for acknowledgement (an output that is down). Not at
                 * once: acknowledgements within PAUSE_AFTER_MS are an
                 * output that is busy, not down, and a pause drops what the
                 * consumer prefetched (librdkafka 2.0.2 then fetches again
                 * about a second after the resume), which held a catching-
                 * up host to a few thousand records a second. */
                int64_t wait_ms = now_ms(), progress_ms = wait_ms;
                uint64_t acked = k.st.acked;
                int pause_tried = 0;
                while (k.n_inflight > max_inflight && !k.fatal &&
                       !(o->stop && *o->stop)) {
                        if (!pause_tried &&
                            now_ms() - wait_ms >= PAUSE_AFTER_MS) {
                                pause_input(&k, 1);
                                pause_tried = 1;
                        }
                        rd_kafka_poll(k.producer, pause_tried ? 100 : 10);
                        produce_stashed(&k);
                        if (k.paused && k.n_msgs < (size_t)k.cfg->max_events) {
                                /* Paused, the consumer is served too: what
                                 * it fetched before the pause is freed (a
                                 * pause makes it stale), the group sees it
                                 * alive (max.poll.interval.ms) and its
                                 * statistics reach readiness. A record of
                                 * a partition assigned meanwhile joins the
                                 * next batch. */
                                rd_kafka_message_t *m =
                                        rd_kafka_consumer_poll(k.consumer, 0);
                                if (m)
                                        take_msg(&k, m);
                        }
                        commit_ready(&k, 0);
                        if (k.st.acked != acked) {
                                acked = k.st.acked;
                                progress_ms = now_ms();
                                k.stalled[0] = '\0';
                        } else if (!k.stalled[0] &&
                                   now_ms() - progress_ms >= STALL_MS) {
                                snprintf(k.stalled, sizeof(k.stalled),
                                         "input paused: no output "
                                         "acknowledged for %d s",
                                         STALL_MS / 1000);
                                publish(&k, 1);
                        }
                        publish(&k, 0);
                }
                k.stalled[0] = '\0';
                pause_input(&k, k.sides_paused);
                /* A reload waits for a batch boundary: here. */
                int want = o->reload && *o->reload;
                if (o->ops)
                        want |= veil_ops_take_reload(o->ops);
                if (want && !k.fatal && !should_stop(&k)) {
                        if (o->reload)
                                *o->reload = 0;
                        reload(&k, shutdown_ms);
                        catch_up(&k);
                }
        }

        /* Shutdown: finish the batch, flush, commit, leave the group. */
        if (!k.fatal) {
                if (k.rewind)
                        eos_rewind(&k);
                if (k.st.side_caught_up) {
                        run_batch(&k);
                        if (subscribed)
                                save_state(&k, 1);
                } else {
                        /* A stop while a reload reads the side inputs
                         * again: the consent ledger is partial, so nothing
                         * runs against it (default deny). The records read
                         * are not committed: the next start reads them
                         * (on a partition without a committed offset, only
                         * if auto.offset.reset takes it back that far). */
                        for (size_t i = 0; i < k.n_msgs; i++)
                                rd_kafka_message_destroy(k.msgs[i]);
                        k.n_msgs = 0;
                }
                if (k.eos) {
                        eos_end_batch(&k);
                        eos_end_redo(&k);
                }
                if (drain(&k, shutdown_ms, 1) != 0 && !k.fatal)
                        set_fatal(&k,
                                  "shutdown: outputs not acknowledged within "
                                  "%d ms; their input is not committed and "
                                  "will be read again",
                                  shutdown_ms);
        }
        if (subscribed)
                rd_kafka_consumer_close(k.consumer);
        if (k.fatal) {
                snprintf(errstr, errstr_size, "%s", k.err);
                rc = -VEIL_EIO;
        }
        if (stats)
                *stats = k.st;
        if (k.obs)
                publish(&k, 1);
        veil_observe_destroy(k.obs);
        veil_pipeline_set_sink(k.p, (struct veil_sink){NULL, NULL});
        close_all(&k);
        return rc;
}

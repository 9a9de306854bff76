/*
 * checkpoint.c — framing, chunking and reassembly of stage checkpoints
 * (checkpoint.h). Integers are big-endian.
 *
 * Manifest value: "VCKM" u8 version, u64 seq, u32 stage index, u32 chunks,
 *   u64 total length, 32-byte BLAKE2b-256 of the blob, u16+plugin name,
 *   u16+plugin version.
 * Chunk value: "VCKC" u8 version, u64 seq, u32 chunk index, then bytes.
 */
#include "checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"

#define FORMAT 1
#define HASH 32
#define MAX_CHUNKS 4096 /* 3.6 GB: far beyond any stage's state */
/* Sequence numbers are 1 to SEQ_MAX - 1, for the writer and the reader
 * alike: from 1 or the clock in ms, two a checkpoint, 2^62 is never
 * reached. A record claiming 0 or 2^62 or more is not ours. Taken in, it
 * would make the next number (max_seq + 1) one the reader skips, or wrap it
 * to 0, and every later checkpoint would lose to it at restore. The writer
 * refuses a number the reader would skip (a checkpoint written but never
 * restored: the one before it restored at every start), and a restore
 * whose largest number leaves none for the next checkpoint (n and n + 1)
 * fails rather than start on a state no checkpoint can supersede. */
#define SEQ_MAX (UINT64_C(1) << 62)

static void put16(unsigned char *p, uint16_t v) {
        p[0] = (unsigned char)(v >> 8);
        p[1] = (unsigned char)v;
}
static void put32(unsigned char *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (unsigned char)(v >> (24 - 8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (56 - 8 * i));
}
static uint16_t get16(const unsigned char *p) {
        return (uint16_t)((p[0] << 8) | p[1]);
}
static uint32_t get32(const unsigned char *p) {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++)
                v = (v << 8) | p[i];
        return v;
}
static uint64_t get64(const unsigned char *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

/* ---- configuration ---- */

static int fail(const struct veil_config *cfg, const struct veil_node *n,
                char *errstr, size_t errstr_size, const char *what) {
        snprintf(errstr, errstr_size, "%s:%d:%d: state: %s", cfg->file,
                 n ? n->line : cfg->line, n ? n->col : cfg->col, what);
        return -VEIL_EINVAL;
}

int veil_checkpoint_config_parse(const struct veil_config *cfg,
                                 struct veil_checkpoint_config *cc,
                                 char *errstr, size_t errstr_size) {
        memset(cc, 0, sizeof(*cc));
        cc->interval_ms = 60000;
        const struct veil_node *s = cfg->state;
        if (!s)
                return 0;
        if (s->kind != VEIL_NODE_MAP)
                return fail(cfg, s, errstr, errstr_size,
                            "must be a mapping such as {topic: veil-state, "
                            "interval_ms: 60000}");
        char what[512];
        for (size_t i = 0; i < s->n; i++) {
                const char *k = s->keys[i]->scalar;
                if (strcmp(k, "topic") && strcmp(k, "interval_ms")) {
                        snprintf(what, sizeof(what),
                                 "unknown key '%.64s'; allowed keys: topic, "
                                 "interval_ms",
                                 k);
                        return fail(cfg, s->keys[i], errstr, errstr_size,
                                    what);
                }
                if (s->items[i]->kind != VEIL_NODE_SCALAR) {
                        snprintf(what, sizeof(what), "'%s' must be a scalar",
                                 k);
                        return fail(cfg, s->items[i], errstr, errstr_size,
                                    what);
                }
        }
        const struct veil_node *t = veil_config_get(s, "topic");
        if (!t)
                return fail(cfg, s, errstr, errstr_size,
                            "missing key 'topic' (a compacted topic, e.g. "
                            "{topic: veil-state})");
        size_t tl = strlen(t->scalar);
        if (!tl || tl > 249 || strspn(t->scalar, "abcdefghijklmnopqrstuvwxyz"
                                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                 "0123456789._-") != tl)
                return fail(cfg, t, errstr, errstr_size,
                            "topic must be 1 to 249 characters of "
                            "[a-zA-Z0-9._-]");
        const struct veil_node *iv = veil_config_get(s, "interval_ms");
        if (iv) {
                int64_t ms;
                if (veil_params_parse_int(iv->scalar, &ms) || ms < 1000 ||
                    ms > 86400000) {
                        snprintf(what, sizeof(what),
                                 "interval_ms must be an integer from 1000 "
                                 "to 86400000, got '%.64s'",
                                 iv->scalar);
                        return fail(cfg, iv, errstr, errstr_size, what);
                }
                cc->interval_ms = ms;
        }
        cc->enabled = 1;
        snprintf(cc->topic, sizeof(cc->topic), "%s", t->scalar);
        return 0;
}

/* ---- the writer ---- */

/* A stage's key sets, by parity: -1 unknown or none. */
struct writer_stage {
        char *name; /* "<index>-<plugin>" */
        int durable; /* of its newest checkpoint known complete in the log */
        int pending; /* of the one saved since, not yet settled */
        /* Per key set, the chunk keys from top[] up hold nothing: below it
         * a key may hold a chunk of an older, larger checkpoint. A
         * compacted topic keeps the last value of every key, so such a
         * chunk (profiles of people erased since, or expired) stayed for
         * good: a save tombstones the keys from its chunk count up to
         * top[], and top[] comes down to that count once those records
         * are in the log (pending_top, -1: none). */
        uint32_t top[2];
        int64_t pending_top[2];
};

/* A stage prefix of the group that this pipeline has no stage for
 * (reordered, removed): no stage can restore it, nor erase a person from
 * it, so its keys are tombstoned with the next checkpoint. */
struct orphan {
        char *name;      /* "<index>-<plugin>" */
        int manifest;    /* its manifest key holds a value */
        uint32_t top[2]; /* per key set, 1 + its highest live chunk key */
        int sent;        /* by a save not settled yet */
};

struct veil_checkpoint_writer {
        uint64_t next;
        struct writer_stage *st;
        size_t n_st;
        struct orphan *orphans;
        size_t n_orphans;
};

static void orphans_free(struct orphan *o, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(o[i].name);
        free(o);
}

int veil_checkpoint_writer_new(struct veil_checkpoint_writer **out) {
        struct veil_checkpoint_writer *w = calloc(1, sizeof(*w));
        if (!w)
                return -VEIL_ENOMEM;
        w->next = 1;
        *out = w;
        return 0;
}

void veil_checkpoint_writer_free(struct veil_checkpoint_writer *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->n_st; i++)
                free(w->st[i].name);
        free(w->st);
        orphans_free(w->orphans, w->n_orphans);
        free(w);
}

uint64_t veil_checkpoint_writer_next(const struct veil_checkpoint_writer *w) {
        return w->next;
}

void veil_checkpoint_writer_raise(struct veil_checkpoint_writer *w,
                                  uint64_t seq) {
        if (seq > w->next)
                w->next = seq;
}

void veil_checkpoint_writer_floor(struct veil_checkpoint_writer *w,
                                  int64_t wall_ms) {
        /* A clock beyond the ceiling is wrong, not a number to take. */
        if (wall_ms > 0 && (uint64_t)wall_ms < SEQ_MAX - 2)
                veil_checkpoint_writer_raise(w, (uint64_t)wall_ms);
}

void veil_checkpoint_writer_settled(struct veil_checkpoint_writer *w,
                                    int in_log) {
        for (size_t i = 0; i < w->n_st; i++) {
                struct writer_stage *e = &w->st[i];
                if (e->pending >= 0 && in_log)
                        e->durable = e->pending;
                e->pending = -1;
                for (int k = 0; k < 2; k++) {
                        if (e->pending_top[k] >= 0 && in_log)
                                e->top[k] = (uint32_t)e->pending_top[k];
                        e->pending_top[k] = -1;
                }
        }
        /* Per orphan: a reload may have added some since the save. */
        size_t n = 0;
        for (size_t i = 0; i < w->n_orphans; i++) {
                struct orphan *o = &w->orphans[i];
                if (o->sent && in_log) {
                        free(o->name);
                        continue;
                }
                o->sent = 0;
                w->orphans[n++] = *o;
        }
        w->n_orphans = n;
}

/* The entry of stage `name`, added when new; NULL out of memory. */
static struct writer_stage *writer_stage(struct veil_checkpoint_writer *w,
                                         const char *name) {
        for (size_t i = 0; i < w->n_st; i++)
                if (!strcmp(w->st[i].name, name))
                        return &w->st[i];
        struct writer_stage *st = realloc(w->st, (w->n_st + 1) * sizeof(*st));
        if (!st)
                return NULL;
        w->st = st;
        struct writer_stage *e = &st[w->n_st];
        if (!(e->name = strdup(name)))
                return NULL;
        e->durable = e->pending = -1;
        e->top[0] = e->top[1] = 0;
        e->pending_top[0] = e->pending_top[1] = -1;
        w->n_st++;
        return e;
}

/* Whether p has a stage that saves under key `name`. */
static int has_stage(const struct veil_pipeline *p, const char *name) {
        for (size_t i = 0; i < veil_pipeline_n_stages(p); i++) {
                const struct veil_plugin *pl = veil_pipeline_stage_plugin(p, i);
                char n[512];
                if (!pl || !pl->checkpoint || !pl->restore)
                        continue;
                snprintf(n, sizeof(n), "%zu-%s", i, pl->name);
                if (!strcmp(n, name))
                        return 1;
        }
        return 0;
}

int veil_checkpoint_writer_retarget(struct veil_checkpoint_writer *w,
                                    const struct veil_pipeline *p) {
        /* Both lists are built before anything changes: out of memory
         * leaves the writer as it was. */
        size_t cap = w->n_st + w->n_orphans;
        struct writer_stage *st = calloc(cap ? cap : 1, sizeof(*st));
        struct orphan *o = calloc(cap ? cap : 1, sizeof(*o));
        if (!st || !o) {
                free(st);
                free(o);
                return -VEIL_ENOMEM;
        }
        size_t n_st = 0, n_o = 0, gone = 0;
        for (size_t i = 0; i < w->n_st; i++) {
                struct writer_stage *e = &w->st[i];
                if (has_stage(p, e->name)) {
                        st[n_st++] = *e; /* its key sets as they were */
                        continue;
                }
                /* Whether its manifest key holds a value is not known
                 * here (a stage with no checkpoint yet): a tombstone of
                 * an empty key costs one record. */
                o[n_o++] = (struct orphan){e->name, 1,
                                           {e->top[0], e->top[1]}, 0};
                gone++;
        }
        for (size_t i = 0; i < w->n_orphans; i++) {
                struct orphan *x = &w->orphans[i];
                if (!has_stage(p, x->name)) {
                        o[n_o++] = *x;
                        continue;
                }
                /* Back in the pipeline: deleting its keys now would
                 * delete the stage's own next checkpoint. Its chunk keys
                 * past that checkpoint's are deleted as a shrunk state's
                 * are. */
                struct writer_stage *e = &st[n_st++];
                e->name = x->name;
                e->durable = e->pending = -1;
                for (int k = 0; k < 2; k++) {
                        e->top[k] = x->top[k];
                        e->pending_top[k] = -1;
                }
        }
        if (gone)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "state: the reloaded pipeline has no stage "
                              "under the checkpoint key of %zu stage(s) "
                              "(first '%s'; keys are <index>-<plugin>): "
                              "they are deleted with the next checkpoint, "
                              "since no stage can restore them or erase a "
                              "person from them",
                              gone, o[0].name);
        free(w->st);
        free(w->orphans);
        w->st = st;
        w->n_st = n_st;
        w->orphans = o;
        w->n_orphans = n_o;
        return 0;
}

/* ---- saving ---- */

static int stage_prefix(char *buf, size_t size, const char *group, size_t i,
                        const char *plugin) {
        int n = snprintf(buf, size, "%s/%zu-%s/", group, i, plugin);
        return n < 0 || (size_t)n >= size ? -1 : n;
}

static int save_stage(const struct veil_sink *sink, const char *topic,
                      const char *prefix, size_t idx,
                      const struct veil_plugin *pl, uint64_t seq,
                      const unsigned char *blob, size_t len, char *errstr,
                      size_t errstr_size) {
        size_t n_chunks = len ? (len + VEIL_CKPT_CHUNK - 1) / VEIL_CKPT_CHUNK
                              : 0;
        if (n_chunks > MAX_CHUNKS) {
                snprintf(errstr, errstr_size,
                         "state: stage %zu (%s): checkpoint of %zu bytes "
                         "exceeds %d chunks of %d bytes, the most a "
                         "checkpoint holds: lower the stage's parameters "
                         "that bound its state (context: max_profiles; "
                         "dp_model: dim, feature_space, max_new_items)",
                         idx, pl->name, len, MAX_CHUNKS, VEIL_CKPT_CHUNK);
                return -VEIL_EINVAL;
        }
        char key[600];
        unsigned char *buf = malloc(17 + VEIL_CKPT_CHUNK);
        if (!buf) {
                snprintf(errstr, errstr_size, "state: out of memory");
                return -VEIL_ENOMEM;
        }
        int rc = 0;
        for (size_t c = 0; c < n_chunks && !rc; c++) {
                size_t off = c * VEIL_CKPT_CHUNK;
                size_t n = len - off < VEIL_CKPT_CHUNK ? len - off
                                                       : VEIL_CKPT_CHUNK;
                memcpy(buf, "VCKC", 4);
                buf[4] = FORMAT;
                put64(buf + 5, seq);
                put32(buf + 13, (uint32_t)c);
                memcpy(buf + 17, blob + off, n);
                /* Two sets of keys, by the sequence number's parity (the
                 * writer gives each stage a number of the set its newest
                 * complete checkpoint does not use): on a compacted topic
                 * a checkpoint being written (its manifest not yet) then
                 * never replaces the chunks of that one, which a crash
                 * now would need. */
                snprintf(key, sizeof(key), seq % 2 ? "%s%zu.1" : "%s%zu",
                         prefix, c);
                rc = sink->produce(sink->ctx, topic, key, strlen(key), buf,
                                   17 + n, NULL);
        }
        if (!rc) {
                const char *ver = pl->version ? pl->version : "";
                size_t nl = strlen(pl->name), vl = strlen(ver);
                if (nl > 255)
                        nl = 255;
                if (vl > 255)
                        vl = 255;
                unsigned char *m = buf, *q = m;
                memcpy(q, "VCKM", 4);
                q[4] = FORMAT;
                put64(q + 5, seq);
                put32(q + 13, (uint32_t)idx);
                put32(q + 17, (uint32_t)n_chunks);
                put64(q + 21, (uint64_t)len);
                crypto_generichash(q + 29, HASH, blob, len, NULL, 0);
                q += 29 + HASH;
                put16(q, (uint16_t)nl);
                memcpy(q + 2, pl->name, nl);
                q += 2 + nl;
                put16(q, (uint16_t)vl);
                memcpy(q + 2, ver, vl);
                q += 2 + vl;
                snprintf(key, sizeof(key), "%smanifest", prefix);
                rc = sink->produce(sink->ctx, topic, key, strlen(key), m,
                                   (size_t)(q - m), NULL);
        }
        free(buf);
        if (rc)
                snprintf(errstr, errstr_size,
                         "state: stage %zu (%s): cannot produce the "
                         "checkpoint to '%s'",
                         idx, pl->name, topic);
        return rc;
}

/* Tombstones (null values: compaction then removes the key) for the chunk
 * keys from..to-1 of one key set under prefix. */
static int tombstone_chunks(const struct veil_sink *sink, const char *topic,
                            const char *prefix, int odd, uint32_t from,
                            uint32_t to) {
        char key[600];
        for (uint32_t c = from; c < to; c++) {
                snprintf(key, sizeof(key), odd ? "%s%" PRIu32 ".1"
                                               : "%s%" PRIu32,
                         prefix, c);
                int rc = sink->produce(sink->ctx, topic, key, strlen(key),
                                       NULL, 0, NULL);
                if (rc)
                        return rc;
        }
        return 0;
}

/* The keys of the stages this pipeline does not have, as null values. */
static int tombstone_orphans(struct veil_checkpoint_writer *w,
                             const struct veil_sink *sink, const char *topic,
                             const char *group, char *errstr,
                             size_t errstr_size) {
        for (size_t i = 0; i < w->n_orphans; i++) {
                const struct orphan *o = &w->orphans[i];
                char prefix[512], key[600];
                int n = snprintf(prefix, sizeof(prefix), "%s/%s/", group,
                                 o->name);
                int rc = n < 0 || (size_t)n >= sizeof(prefix) ? -VEIL_EINVAL
                                                              : 0;
                if (!rc && o->manifest) {
                        snprintf(key, sizeof(key), "%smanifest", prefix);
                        rc = sink->produce(sink->ctx, topic, key, strlen(key),
                                           NULL, 0, NULL);
                }
                for (int k = 0; k < 2 && !rc; k++)
                        rc = tombstone_chunks(sink, topic, prefix, k, 0,
                                              o->top[k]);
                if (rc) {
                        snprintf(errstr, errstr_size,
                                 "state: cannot delete the records of stage "
                                 "'%s', which this pipeline does not have, "
                                 "from '%s'",
                                 o->name, topic);
                        return rc;
                }
        }
        for (size_t i = 0; i < w->n_orphans; i++)
                w->orphans[i].sent = 1;
        return 0;
}

int veil_checkpoint_save(struct veil_pipeline *p, const struct veil_sink *sink,
                         const char *topic, const char *group,
                         struct veil_checkpoint_writer *w, size_t *n_saved,
                         char *errstr, size_t errstr_size) {
        size_t saved = 0;
        /* Used up whatever happens: a stage before a failing one may have
         * produced its checkpoint under this number already. */
        uint64_t base = w->next;
        w->next = base + 2;
        for (size_t i = 0; i < veil_pipeline_n_stages(p); i++) {
                const struct veil_plugin *pl = veil_pipeline_stage_plugin(p, i);
                void *state = veil_pipeline_stage_state(p, i);
                if (!pl || !pl->checkpoint || !pl->restore)
                        continue;
                char prefix[512], name[512];
                if (stage_prefix(prefix, sizeof(prefix), group, i, pl->name) <
                    0) {
                        /* "<group>/<index>-<plugin>/" must fit prefix. */
                        int rest = snprintf(NULL, 0, "/%zu-%s/", i, pl->name);
                        size_t most = (size_t)rest < sizeof(prefix) - 1
                                              ? sizeof(prefix) - 1 -
                                                        (size_t)rest
                                              : 0;
                        snprintf(errstr, errstr_size,
                                 "state: stage %zu (%s): kafka.group (%zu "
                                 "bytes) is too long for its checkpoint keys "
                                 "('<group>/%zu-%s/<chunk>'): use a "
                                 "kafka.group of at most %zu bytes",
                                 i, pl->name, strlen(group), i, pl->name,
                                 most);
                        return -VEIL_EINVAL;
                }
                snprintf(name, sizeof(name), "%zu-%s", i, pl->name);
                struct writer_stage *ws = writer_stage(w, name);
                if (!ws) {
                        snprintf(errstr, errstr_size, "state: out of memory");
                        return -VEIL_ENOMEM;
                }
                /* The key set its newest complete checkpoint does not
                 * use, whatever the other stages' are. */
                uint64_t seq = base;
                if (ws->durable >= 0 && (int)(seq % 2) == ws->durable)
                        seq++;
                if (!seq || seq >= SEQ_MAX) {
                        snprintf(errstr, errstr_size,
                                 "state: stage %zu (%s): no checkpoint "
                                 "number left (%" PRIu64 " is not below "
                                 "2^62)",
                                 i, pl->name, seq);
                        return -VEIL_EINVAL;
                }
                void *data = NULL;
                size_t len = 0;
                struct veil_pipeline *was = veil_pipeline_enter(p);
                int rc = pl->checkpoint(state, &data, &len);
                veil_pipeline_leave(was);
                if (rc) {
                        free(data);
                        /* The hook has no message of its own (veil.h). */
                        int oom = rc == -VEIL_ENOMEM;
                        snprintf(errstr, errstr_size,
                                 "state: stage %zu (%s): its checkpoint "
                                 "hook failed (code %d%s): it and the "
                                 "stages after it are not saved this time, "
                                 "the next checkpoint tries again; %s",
                                 i, pl->name, rc,
                                 oom ? ", out of memory" : "",
                                 oom ? "give the host more memory (a "
                                       "checkpoint copies the stage's "
                                       "state)"
                                     : "the stage's log lines before this "
                                       "one say why");
                        return rc < 0 ? rc : -VEIL_EIO;
                }
                rc = save_stage(sink, topic, prefix, i, pl, seq, data, len,
                                errstr, errstr_size);
                free(data);
                if (rc)
                        return rc;
                /* The chunks of an older, larger checkpoint in this key
                 * set, past this one's last, are removed. */
                int k = (int)(seq % 2);
                uint32_t n_chunks =
                        (uint32_t)((len + VEIL_CKPT_CHUNK - 1) /
                                   VEIL_CKPT_CHUNK);
                if (ws->top[k] < n_chunks)
                        ws->top[k] = n_chunks;
                if ((rc = tombstone_chunks(sink, topic, prefix, k, n_chunks,
                                           ws->top[k]))) {
                        snprintf(errstr, errstr_size,
                                 "state: stage %zu (%s): cannot produce the "
                                 "tombstones of its older chunks to '%s'",
                                 i, pl->name, topic);
                        return rc;
                }
                ws->pending_top[k] = n_chunks;
                ws->pending = k;
                saved++;
        }
        if (w->n_orphans) {
                int rc = tombstone_orphans(w, sink, topic, group, errstr,
                                           errstr_size);
                if (rc)
                        return rc;
        }
        if (n_saved)
                *n_saved = saved;
        return 0;
}

/* ---- reading ---- */

struct chunk {
        uint64_t seq;
        uint32_t index;
        unsigned char *data;
        size_t len;
};

struct manifest {
        uint64_t seq;
        uint32_t n_chunks;
        uint64_t len;
        unsigned char hash[HASH];
        char version[256];
};

/* Everything read for one stage key prefix "<idx>-<plugin>": the chunks
 * and manifests of its newest verified checkpoint (complete, checksum
 * matching) and of the numbers above it, "pending". */
struct stage_log {
        char *name;
        struct chunk *chunks;
        size_t n_chunks, cap_chunks;
        struct manifest *mans;
        size_t n_mans, cap_mans;
        uint64_t verified;     /* its number; 0: none yet */
        uint64_t verified_len; /* its length */
        unsigned char live[2][MAX_CHUNKS / 8]; /* chunk keys holding a value */
        /* Its manifest key holds a manifest of a framing format this veil
         * does not read (a newer veil's): format and number. */
        int other_format; /* -1: none */
        uint64_t other_seq;
};

/* A stage prefix of the group the pipeline has no stage for. At most
 * ORPHANS_MAX are kept (the rest counted): each start deletes these many
 * more. */
#define ORPHANS_MAX 64
struct reader_orphan {
        char *name;
        int manifest;
        unsigned char live[2][MAX_CHUNKS / 8];
};

struct veil_checkpoint_reader {
        char *group;
        struct stage_log *st; /* one per stage of the pipeline that saves */
        size_t n_st;
        uint64_t max_seq;
        uint64_t skipped;      /* unrecognisable */
        uint64_t other_stages; /* of stages this pipeline does not have */
        uint64_t dropped;      /* pending numbers dropped over the bound */
        struct reader_orphan *orphans;
        size_t n_orphans;
        uint64_t orphans_over; /* records of orphans past ORPHANS_MAX */
};

static void mark(unsigned char live[2][MAX_CHUNKS / 8], int odd, long idx,
                 int on) {
        unsigned char bit = (unsigned char)(1u << (idx % 8));
        if (on)
                live[odd][idx / 8] |= bit;
        else
                live[odd][idx / 8] &= (unsigned char)~bit;
}

/* 1 + the highest chunk key of a key set holding a value; 0 for none. */
static uint32_t live_top(const unsigned char bits[MAX_CHUNKS / 8]) {
        for (uint32_t i = MAX_CHUNKS / 8; i-- > 0;)
                if (bits[i])
                        for (int b = 7; b >= 0; b--)
                                if (bits[i] & (1u << b))
                                        return i * 8 + (uint32_t)b + 1;
        return 0;
}

int veil_checkpoint_reader_new(struct veil_checkpoint_reader **out,
                               const char *group,
                               const struct veil_pipeline *p) {
        struct veil_checkpoint_reader *r = calloc(1, sizeof(*r));
        size_t n = veil_pipeline_n_stages(p);
        if (!r || !(r->group = strdup(group)) ||
            !(r->st = calloc(n ? n : 1, sizeof(*r->st)))) {
                veil_checkpoint_reader_free(r);
                return -VEIL_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const struct veil_plugin *pl = veil_pipeline_stage_plugin(p, i);
                if (!pl || !pl->checkpoint || !pl->restore)
                        continue;
                char name[512];
                snprintf(name, sizeof(name), "%zu-%s", i, pl->name);
                if (!(r->st[r->n_st].name = strdup(name))) {
                        veil_checkpoint_reader_free(r);
                        return -VEIL_ENOMEM;
                }
                r->st[r->n_st].other_format = -1;
                r->n_st++;
        }
        *out = r;
        return 0;
}

void veil_checkpoint_reader_free(struct veil_checkpoint_reader *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_st; i++) {
                for (size_t j = 0; j < r->st[i].n_chunks; j++)
                        free(r->st[i].chunks[j].data);
                free(r->st[i].chunks);
                free(r->st[i].mans);
                free(r->st[i].name);
        }
        for (size_t i = 0; i < r->n_orphans; i++)
                free(r->orphans[i].name);
        free(r->orphans);
        free(r->st);
        free(r->group);
        free(r);
}

/* A record of stage `name`, which the pipeline does not have: what of it
 * holds a value, for the writer to delete. */
static void orphan_note(struct veil_checkpoint_reader *r, const char *name,
                        size_t len, int is_manifest, long kidx, int odd,
                        int has_value) {
        struct reader_orphan *o = NULL;
        for (size_t i = 0; i < r->n_orphans && !o; i++)
                if (strlen(r->orphans[i].name) == len &&
                    !memcmp(r->orphans[i].name, name, len))
                        o = &r->orphans[i];
        if (!o) {
                if (!has_value || (!is_manifest && kidx < 0))
                        return;
                if (len > 255 || r->n_orphans == ORPHANS_MAX) {
                        r->orphans_over++;
                        return;
                }
                if (!r->orphans &&
                    !(r->orphans = calloc(ORPHANS_MAX, sizeof(*r->orphans)))) {
                        r->orphans_over++;
                        return;
                }
                o = &r->orphans[r->n_orphans];
                if (!(o->name = strndup(name, len))) {
                        r->orphans_over++;
                        return;
                }
                r->n_orphans++;
        }
        if (is_manifest)
                o->manifest = has_value;
        else if (kidx >= 0)
                mark(o->live, odd, kidx, has_value);
}

/* The log of stage `name`: NULL when the pipeline has no such stage. */
static struct stage_log *stage_log(struct veil_checkpoint_reader *r,
                                   const char *name, size_t len) {
        for (size_t i = 0; i < r->n_st; i++)
                if (strlen(r->st[i].name) == len &&
                    !memcmp(r->st[i].name, name, len))
                        return &r->st[i];
        return NULL;
}

static int parse_manifest(const unsigned char *v, size_t n,
                          struct manifest *m) {
        if (n < 29 + HASH + 4 || memcmp(v, "VCKM", 4) || v[4] != FORMAT)
                return -1;
        m->seq = get64(v + 5);
        m->n_chunks = get32(v + 17);
        m->len = get64(v + 21);
        memcpy(m->hash, v + 29, HASH);
        const unsigned char *q = v + 29 + HASH, *end = v + n;
        uint16_t nl = get16(q);
        if ((size_t)(end - q) < 2u + nl + 2u)
                return -1;
        q += 2 + nl;
        uint16_t vl = get16(q);
        if ((size_t)(end - q) < 2u + vl || vl >= sizeof(m->version))
                return -1;
        memcpy(m->version, q + 2, vl);
        m->version[vl] = '\0';
        if (m->n_chunks > MAX_CHUNKS ||
            m->len > (uint64_t)m->n_chunks * VEIL_CKPT_CHUNK)
                return -1;
        return 0;
}

/* The chunk index a key's last part names ("<index>" for an even sequence
 * number, "<index>.1" for an odd one, as save_stage writes them), or -1. */
static long key_index(const char *w, size_t n, int *odd) {
        *odd = n > 2 && !memcmp(w + n - 2, ".1", 2);
        if (*odd)
                n -= 2;
        if (!n || n > 4 || (n > 1 && w[0] == '0'))
                return -1;
        long idx = 0;
        for (size_t i = 0; i < n; i++) {
                if (w[i] < '0' || w[i] > '9')
                        return -1;
                idx = idx * 10 + (w[i] - '0');
        }
        return idx < MAX_CHUNKS ? idx : -1;
}

/* A stage part "<index>-<plugin>": plugin names are what `use: NAME`
 * takes, [a-z0-9_-] (a plugin loaded by path declares its own; upper case
 * is let through). Anything else (a NUL, a '.') is no stage of veil's:
 * noted as one, the name written back was another's, a NUL cutting
 * "0-ckpt_blob\0x" to a stage this pipeline has, whose manifest the next
 * checkpoint then deleted. */
static int stage_name_ok(const char *n, size_t len) {
        size_t i = 0;
        while (i < len && n[i] >= '0' && n[i] <= '9')
                i++;
        if (!i || i + 1 >= len || n[i] != '-')
                return 0;
        for (i++; i < len; i++)
                if (!((n[i] >= 'a' && n[i] <= 'z') ||
                      (n[i] >= 'A' && n[i] <= 'Z') ||
                      (n[i] >= '0' && n[i] <= '9') || n[i] == '_' ||
                      n[i] == '-'))
                        return 0;
        return 1;
}

static unsigned char *assemble(const struct stage_log *s,
                               const struct manifest *m, char *why,
                               size_t why_size);

/* Frees everything of the numbers lo to hi. */
static void drop_seqs(struct stage_log *s, uint64_t lo, uint64_t hi) {
        size_t n = 0;
        for (size_t i = 0; i < s->n_chunks; i++) {
                if (s->chunks[i].seq >= lo && s->chunks[i].seq <= hi)
                        free(s->chunks[i].data);
                else
                        s->chunks[n++] = s->chunks[i];
        }
        s->n_chunks = n;
        n = 0;
        for (size_t i = 0; i < s->n_mans; i++)
                if (s->mans[i].seq < lo || s->mans[i].seq > hi)
                        s->mans[n++] = s->mans[i];
        s->n_mans = n;
}

/* A tombstone on the manifest key: no manifest read so far can be
 * restored, as none would be once compaction ran. */
static void forget_manifests(struct stage_log *s) {
        s->n_mans = 0;
        s->verified = 0;
        s->verified_len = 0;
        s->other_format = -1;
}

/* A tombstone on chunk key `idx` of key set `odd`: the chunks read under
 * it are gone, and a verified checkpoint with them is not complete any
 * more. */
static void forget_chunks(struct stage_log *s, long idx, int odd) {
        size_t n = 0;
        for (size_t i = 0; i < s->n_chunks; i++) {
                struct chunk *c = &s->chunks[i];
                if (c->index != (uint32_t)idx || (int)(c->seq % 2) != odd) {
                        s->chunks[n++] = *c;
                        continue;
                }
                if (c->seq == s->verified) {
                        s->verified = 0;
                        s->verified_len = 0;
                }
                free(c->data);
        }
        s->n_chunks = n;
}

/* Once a checkpoint is complete and verified, what is older of its stage
 * can never be restored: it is freed as the log is read. A topic that is
 * not compacted, or the active segment of one that is, holds every
 * checkpoint of days (12 MB a minute for a full model), and keeping them
 * all until the restore is memory without bound at start. */
static void prune(struct stage_log *s, const struct manifest *newest) {
        char why[128];
        unsigned char *blob = assemble(s, newest, why, sizeof(why));
        if (!blob)
                return; /* incomplete or corrupt: older ones may serve */
        free(blob);
        s->verified = newest->seq;
        s->verified_len = newest->len;
        drop_seqs(s, 0, newest->seq - 1);
}

/* What is held for the numbers above the verified checkpoint is bounded:
 * at most VEIL_CKPT_PENDING_SEQS numbers, and VEIL_CKPT_PENDING_MIN bytes
 * or twice the verified checkpoint, whichever is more (a checkpoint being
 * read, and one to fall back on if it turns out incomplete). Past that the
 * oldest pending numbers go: chunks of a checkpoint that never gets its
 * manifest (a crash, a stray record) used to stay until the end, as many
 * as the log held. The number `cur` just added stays whatever its size
 * (a checkpoint's chunks come before its manifest; MAX_CHUNKS bounds it). */
static void bound(struct veil_checkpoint_reader *r, struct stage_log *s,
                  uint64_t cur) {
        uint64_t cap = 2 * s->verified_len;
        if (cap < VEIL_CKPT_PENDING_MIN)
                cap = VEIL_CKPT_PENDING_MIN;
        for (;;) {
                uint64_t seqs[VEIL_CKPT_PENDING_SEQS + 1], cost = 0,
                                                           lowest = 0;
                size_t n_seqs = 0, over = 0;
                for (size_t i = 0; i < s->n_chunks + s->n_mans; i++) {
                        int is_chunk = i < s->n_chunks;
                        uint64_t seq = is_chunk
                                               ? s->chunks[i].seq
                                               : s->mans[i - s->n_chunks].seq;
                        if (seq <= s->verified)
                                continue;
                        cost += is_chunk ? sizeof(struct chunk) +
                                                   s->chunks[i].len
                                         : sizeof(struct manifest);
                        if (seq != cur && (!lowest || seq < lowest))
                                lowest = seq;
                        size_t j = 0;
                        while (j < n_seqs && seqs[j] != seq)
                                j++;
                        if (j == n_seqs) {
                                if (n_seqs <= VEIL_CKPT_PENDING_SEQS)
                                        seqs[n_seqs++] = seq;
                                else
                                        over = 1;
                        }
                }
                if ((cost <= cap && n_seqs <= VEIL_CKPT_PENDING_SEQS &&
                     !over) ||
                    !lowest)
                        return;
                drop_seqs(s, lowest, lowest);
                r->dropped++;
        }
}

size_t veil_checkpoint_reader_bytes(const struct veil_checkpoint_reader *r) {
        size_t n = 0;
        for (size_t i = 0; i < r->n_st; i++)
                for (size_t j = 0; j < r->st[i].n_chunks; j++)
                        n += r->st[i].chunks[j].len;
        return n;
}

/* Up to this many manifests of one number are kept, the latest (two
 * instances sharing the topic, or a retry): each is tried at restore. */
#define MANS_PER_SEQ 4

void veil_checkpoint_reader_add(struct veil_checkpoint_reader *r,
                                const void *key, size_t key_len,
                                const void *value, size_t value_len) {
        size_t gl = strlen(r->group);
        const char *k = key;
        const unsigned char *v = value;
        /* "<group>/<idx>-<plugin>/<what>": a group name may hold '/', the
         * stage part may not (plugin names are identifiers). */
        if (!k || key_len <= gl + 1 || memcmp(k, r->group, gl) ||
            k[gl] != '/')
                return;
        const char *name = k + gl + 1, *end = k + key_len;
        const char *slash = memchr(name, '/', (size_t)(end - name));
        /* Another group whose name extends this one with '/' ("veil/eu"
         * for "veil"): its keys have one more '/', or a stage part that is
         * not "<index>-<plugin>". Not ours, so not kept: its chunks would
         * never meet a manifest of ours, and pile up. */
        if (slash && (memchr(slash + 1, '/', (size_t)(end - slash - 1)) ||
                      name[0] < '0' || name[0] > '9' ||
                      !memchr(name, '-', (size_t)(slash - name))))
                return;
        if (!slash || slash == name || slash + 1 == end) {
                if (v)
                        r->skipped++;
                return;
        }
        const char *what = slash + 1;
        size_t wl = (size_t)(end - what);
        int is_manifest = wl == 8 && !memcmp(what, "manifest", 8), odd = 0;
        long kidx = is_manifest ? -1 : key_index(what, wl, &odd);
        /* A stage this pipeline does not have (reordered, removed): never
         * restored, so not kept either; its keys are noted for deletion. */
        struct stage_log *s = stage_log(r, name, (size_t)(slash - name));
        if (!s) {
                if (!stage_name_ok(name, (size_t)(slash - name))) {
                        if (v)
                                r->skipped++;
                        return;
                }
                orphan_note(r, name, (size_t)(slash - name), is_manifest,
                            kidx, odd, v != NULL);
                if (v)
                        r->other_stages++;
                return;
        }
        if (kidx >= 0)
                mark(s->live, odd, kidx, v != NULL);
        if (!v) {
                /* A tombstone: the key holds nothing now, and what was
                 * read under it is dropped, as compaction will drop it.
                 * Kept, a restart before the log cleaner ran (it never
                 * cleans the active segment, which holds days) restored a
                 * checkpoint deleted by an operator or by veil (a stage
                 * the pipeline no longer has), and the next checkpoint
                 * wrote it back for good. A value later in the log counts
                 * again. */
                if (is_manifest) {
                        forget_manifests(s);
                        bound(r, s, 0);
                } else if (kidx >= 0) {
                        forget_chunks(s, kidx, odd);
                }
                return;
        }
        if (is_manifest) {
                struct manifest m;
                /* A newer veil's manifest: noted, to fail the restore
                 * rather than start the stage empty (or from an older
                 * checkpoint) for a format this veil cannot read. */
                if (value_len >= 5 && !memcmp(v, "VCKM", 4) &&
                    v[4] != FORMAT) {
                        s->other_format = v[4];
                        s->other_seq = value_len >= 13 ? get64(v + 5) : 0;
                        return;
                }
                if (parse_manifest(v, value_len, &m) || !m.seq ||
                    m.seq >= SEQ_MAX) {
                        r->skipped++;
                        return;
                }
                s->other_format = -1;
                if (m.seq > r->max_seq)
                        r->max_seq = m.seq;
                /* Older than the verified one: never restored. */
                if (m.seq < s->verified)
                        return;
                size_t same = 0, oldest = SIZE_MAX;
                for (size_t i = 0; i < s->n_mans; i++)
                        if (s->mans[i].seq == m.seq) {
                                same++;
                                if (oldest == SIZE_MAX)
                                        oldest = i;
                        }
                if (same >= MANS_PER_SEQ) {
                        memmove(&s->mans[oldest], &s->mans[oldest + 1],
                                (s->n_mans - oldest - 1) * sizeof(*s->mans));
                        s->n_mans--;
                }
                if (s->n_mans == s->cap_mans) {
                        size_t cap = s->cap_mans ? s->cap_mans * 2 : 4;
                        struct manifest *x =
                                realloc(s->mans, cap * sizeof(*x));
                        if (!x) {
                                r->skipped++;
                                return;
                        }
                        s->mans = x;
                        s->cap_mans = cap;
                }
                s->mans[s->n_mans++] = m;
                prune(s, &s->mans[s->n_mans - 1]);
                bound(r, s, m.seq);
                return;
        }
        if (kidx < 0 || value_len < 17 || memcmp(v, "VCKC", 4) ||
            v[4] != FORMAT || value_len - 17 > VEIL_CKPT_CHUNK) {
                r->skipped++;
                return;
        }
        uint64_t seq = get64(v + 5);
        uint32_t idx = get32(v + 13);
        /* The key must be the one save_stage gives this chunk: its index,
         * and the key set of its number's parity. Anything else is not a
         * chunk of ours (and, kept, would be memory for nothing). */
        if (!seq || seq >= SEQ_MAX || idx != (uint32_t)kidx ||
            (int)(seq % 2) != odd) {
                r->skipped++;
                return;
        }
        /* The next number passes chunks too: one of a checkpoint cut short
         * is never taken again for other contents. */
        if (seq > r->max_seq)
                r->max_seq = seq;
        if (seq < s->verified)
                return; /* older than the verified one: never restored */
        /* A chunk written again for the same checkpoint (a retried
         * produce) replaces the earlier copy. */
        struct chunk *c = NULL;
        for (size_t i = 0; i < s->n_chunks; i++)
                if (s->chunks[i].seq == seq && s->chunks[i].index == idx)
                        c = &s->chunks[i];
        if (!c) {
                if (s->n_chunks == s->cap_chunks) {
                        size_t cap = s->cap_chunks ? s->cap_chunks * 2 : 4;
                        struct chunk *x =
                                realloc(s->chunks, cap * sizeof(*x));
                        if (!x) {
                                r->skipped++;
                                return;
                        }
                        s->chunks = x;
                        s->cap_chunks = cap;
                }
                c = &s->chunks[s->n_chunks++];
                memset(c, 0, sizeof(*c));
                c->seq = seq;
                c->index = idx;
        }
        free(c->data);
        c->len = value_len - 17;
        c->data = malloc(c->len ? c->len : 1);
        if (!c->data) {
                c->len = 0;
                r->skipped++;
                return;
        }
        memcpy(c->data, v + 17, c->len);
        bound(r, s, seq);
}

static const struct chunk *find_chunk(const struct stage_log *s, uint64_t seq,
                                      uint32_t idx) {
        for (size_t i = 0; i < s->n_chunks; i++)
                if (s->chunks[i].seq == seq && s->chunks[i].index == idx)
                        return &s->chunks[i];
        return NULL;
}

/* The blob of manifest m, or NULL with why (a chunk missing, a length or
 * checksum mismatch). */
static unsigned char *assemble(const struct stage_log *s,
                               const struct manifest *m, char *why,
                               size_t why_size) {
        unsigned char *blob = malloc(m->len ? m->len : 1);
        if (!blob) {
                snprintf(why, why_size, "out of memory");
                return NULL;
        }
        uint64_t off = 0;
        for (uint32_t c = 0; c < m->n_chunks; c++) {
                const struct chunk *ch = find_chunk(s, m->seq, c);
                if (!ch) {
                        snprintf(why, why_size, "chunk %" PRIu32 " of %" PRIu32
                                                " is missing",
                                 c, m->n_chunks);
                        free(blob);
                        return NULL;
                }
                if (off + ch->len > m->len) {
                        snprintf(why, why_size, "chunks exceed the length");
                        free(blob);
                        return NULL;
                }
                memcpy(blob + off, ch->data, ch->len);
                off += ch->len;
        }
        unsigned char h[HASH];
        crypto_generichash(h, HASH, blob, (unsigned long long)off, NULL, 0);
        if (off != m->len || sodium_memcmp(h, m->hash, HASH)) {
                snprintf(why, why_size, "length or checksum mismatch");
                free(blob);
                return NULL;
        }
        return blob;
}

/* What the log holds that the next checkpoints must delete: per stage,
 * chunk keys above the next checkpoint's last (a larger one of before,
 * restored or not), and the keys of the stages this pipeline does not
 * have. Neither is ever restored again, and no erasure reaches them: on a
 * compacted topic they stayed for good, with the profiles of people
 * erased or expired since. */
static int seed_writer(struct veil_checkpoint_reader *r,
                       struct veil_checkpoint_writer *w) {
        for (size_t i = 0; i < r->n_st; i++) {
                struct writer_stage *ws = writer_stage(w, r->st[i].name);
                if (!ws)
                        return -VEIL_ENOMEM;
                for (int k = 0; k < 2; k++) {
                        uint32_t t = live_top(r->st[i].live[k]);
                        if (ws->top[k] < t)
                                ws->top[k] = t;
                }
        }
        struct orphan *o = r->n_orphans ? calloc(r->n_orphans, sizeof(*o))
                                        : NULL;
        if (r->n_orphans && !o)
                return -VEIL_ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < r->n_orphans; i++) {
                struct reader_orphan *ro = &r->orphans[i];
                uint32_t t0 = live_top(ro->live[0]), t1 = live_top(ro->live[1]);
                if (!ro->manifest && !t0 && !t1)
                        continue; /* deleted already */
                o[n] = (struct orphan){ro->name, ro->manifest, {t0, t1},
                                       0};
                ro->name = NULL;
                n++;
        }
        orphans_free(w->orphans, w->n_orphans);
        w->orphans = o;
        w->n_orphans = n;
        if (n)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "state: group '%s' has checkpoints of %zu "
                              "stage(s) this pipeline does not have "
                              "(first '%s'%s): they are deleted with the "
                              "next checkpoint, since no stage can restore "
                              "them or erase a person from them",
                              r->group, n, o[0].name,
                              r->orphans_over ? "; more than the 64 deleted "
                                                "per start: the rest at the "
                                                "next start"
                                              : "");
        return 0;
}

int veil_checkpoint_reader_restore(struct veil_checkpoint_reader *r,
                                   struct veil_pipeline *p, const char *topic,
                                   struct veil_checkpoint_writer *w,
                                   size_t *n_restored, char *errstr,
                                   size_t errstr_size) {
        size_t restored = 0;
        if (r->max_seq >= SEQ_MAX - 2) {
                snprintf(errstr, errstr_size,
                         "state: the checkpoints of group '%s' are numbered "
                         "up to %" PRIu64 ", which leaves no number below "
                         "2^62 for the next one (veil numbers them from 1 "
                         "or the clock in ms: not its own); remove the "
                         "group's records from the state topic",
                         r->group, r->max_seq);
                return -VEIL_EINVAL;
        }
        if (r->skipped)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "state: %" PRIu64 " unrecognisable record(s) of "
                              "group '%s' skipped",
                              r->skipped, r->group);
        if (r->other_stages)
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "state: %" PRIu64 " record(s) of stages this "
                              "pipeline does not have skipped",
                              r->other_stages);
        if (r->dropped)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "state: %" PRIu64 " incomplete checkpoint(s) "
                              "dropped while reading (more than %d pending "
                              "for a stage, or over its memory bound)",
                              r->dropped, VEIL_CKPT_PENDING_SEQS);
        for (size_t i = 0; i < veil_pipeline_n_stages(p); i++) {
                const struct veil_plugin *pl = veil_pipeline_stage_plugin(p, i);
                if (!pl || !pl->checkpoint || !pl->restore)
                        continue;
                char name[512];
                snprintf(name, sizeof(name), "%zu-%s", i, pl->name);
                const struct stage_log *s = NULL;
                for (size_t j = 0; j < r->n_st; j++)
                        if (!strcmp(r->st[j].name, name))
                                s = &r->st[j];
                /* A downgrade: skipped, the stage started empty (the
                 * newer veil's checkpoints unread) with only the warning
                 * of unrecognisable records. */
                if (s && s->other_format >= 0) {
                        snprintf(errstr, errstr_size,
                                 "state: stage %zu (%s): checkpoint %" PRIu64
                                 " is of format %d, this veil reads %d: run "
                                 "a veil that reads it, or delete the "
                                 "stage's keys ('%s/%s/...', a tombstone "
                                 "each) from '%s' to start it empty",
                                 i, pl->name, s->other_seq, s->other_format,
                                 FORMAT, r->group, name, topic);
                        return -VEIL_EINVAL;
                }
                if (!s || !s->n_mans) {
                        veil_log_host(VEIL_LOG_INFO, NULL,
                                      "state: stage %zu (%s): no checkpoint, "
                                      "starting empty",
                                      i, pl->name);
                        continue;
                }
                /* Newest first; fall back to an older manifest that is still
                 * in the log (before compaction removed it). Of two with one
                 * number (two instances sharing the topic, or an older
                 * veil's retry after a failed stage) the later in the log
                 * first, then the other: each is tried. */
                size_t *order = malloc(s->n_mans * sizeof(*order));
                if (!order) {
                        snprintf(errstr, errstr_size,
                                 "state: out of memory");
                        return -VEIL_ENOMEM;
                }
                for (size_t j = 0; j < s->n_mans; j++) {
                        size_t k = j; /* insertion: (seq, position) down */
                        for (; k > 0 && s->mans[order[k - 1]].seq <=
                                                s->mans[j].seq;
                             k--)
                                order[k] = order[k - 1];
                        order[k] = j;
                }
                int done = 0;
                for (size_t o = 0; o < s->n_mans && !done; o++) {
                        const struct manifest *m = &s->mans[order[o]];
                        char why[128];
                        unsigned char *blob =
                                assemble(s, m, why, sizeof(why));
                        if (!blob) {
                                veil_log_host(VEIL_LOG_WARN, NULL,
                                              "state: stage %zu (%s): "
                                              "checkpoint %" PRIu64
                                              " skipped: %s",
                                              i, pl->name, m->seq, why);
                                continue;
                        }
                        char err[512] = "";
                        struct veil_pipeline *was = veil_pipeline_enter(p);
                        int rc = pl->restore(veil_pipeline_stage_state(p, i),
                                             blob, (size_t)m->len, err,
                                             sizeof(err));
                        veil_pipeline_leave(was);
                        free(blob);
                        if (rc) {
                                snprintf(errstr, errstr_size,
                                         "state: stage %zu (%s): restoring "
                                         "checkpoint %" PRIu64
                                         " (plugin version %s) failed: %s",
                                         i, pl->name, m->seq, m->version, err);
                                free(order);
                                return rc < 0 ? rc : -VEIL_EINVAL;
                        }
                        veil_log_host(VEIL_LOG_INFO, NULL,
                                      "state: stage %zu (%s): restored "
                                      "checkpoint %" PRIu64 " (%" PRIu64
                                      " bytes)",
                                      i, pl->name, m->seq, m->len);
                        /* Its chunks are the ones the next checkpoint of
                         * this stage must not replace. */
                        struct writer_stage *ws =
                                w ? writer_stage(w, name) : NULL;
                        if (w && !ws) {
                                snprintf(errstr, errstr_size,
                                         "state: out of memory");
                                free(order);
                                return -VEIL_ENOMEM;
                        }
                        if (ws)
                                ws->durable = (int)(m->seq % 2);
                        restored++;
                        done = 1;
                }
                free(order);
                if (!done)
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "state: stage %zu (%s): no complete "
                                      "checkpoint, starting empty",
                                      i, pl->name);
        }
        if (w) {
                int rc = seed_writer(r, w);
                if (rc) {
                        snprintf(errstr, errstr_size, "state: out of memory");
                        return rc;
                }
                veil_checkpoint_writer_raise(w, r->max_seq + 1);
        }
        if (n_restored)
                *n_restored = restored;
        return 0;
}

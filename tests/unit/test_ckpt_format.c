/* Checkpoints (core/checkpoint.c) through real pipelines of the ckpt_blob
 * test plugin: a state of 2 MB is framed, chunked, read back and restored
 * byte for byte; missing, corrupted and foreign records never reach a
 * restore hook; an older complete checkpoint is used when the newest is
 * partial; the state: section's errors name file, line and column. A
 * reload's transfer of the state hands the stages' gauges on with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "config.h"
#include "metrics.h"
#include "observe.h"
#include "pipeline.h"

#define BIG 2000000

struct rec {
        char *key;
        unsigned char *value;
        size_t key_len, value_len;
};

struct cap {
        struct rec r[256];
        size_t n;
};

static int cap_produce(void *ctx, const char *topic, const void *key,
                       size_t key_len, const void *value, size_t value_len,
                       const struct veil_dead_letter *dl) {
        struct cap *c = ctx;
        assert_null(dl);
        assert_string_equal(topic, "st");
        assert_true(value_len <= VEIL_CKPT_CHUNK + 17);
        assert_true(c->n < 256);
        struct rec *r = &c->r[c->n++];
        r->key = malloc(key_len);
        memcpy(r->key, key, key_len);
        r->value = NULL; /* a tombstone */
        if (value) {
                r->value = malloc(value_len ? value_len : 1);
                memcpy(r->value, value, value_len);
        }
        r->key_len = key_len;
        r->value_len = value_len;
        return 0;
}

static void cap_free(struct cap *c) {
        for (size_t i = 0; i < c->n; i++) {
                free(c->r[i].key);
                free(c->r[i].value);
        }
        c->n = 0;
}

struct pl {
        struct veil_config *cfg;
        struct veil_pipeline *p;
};

static void open_yaml(struct pl *x, const char *yaml) {
        char err[1024];
        if (veil_config_parse(&x->cfg, VEIL_SRCDIR "/tests/pipelines/t.yaml",
                              yaml, strlen(yaml), err, sizeof(err)))
                fail_msg("%s", err);
        struct veil_pipeline_opts o = {NULL, 0, NULL, 0};
        if (veil_pipeline_new(&x->p, x->cfg, &o, err, sizeof(err)))
                fail_msg("%s", err);
}

/* Two ckpt_blob stages: plugins[0] of size0 bytes from seed0, plugins[1]
 * of size1 from seed1 whose checkpoint hook fails at its call fail1. */
static void open_stages(struct pl *x, int size0, int seed0, int size1,
                        int seed1, int fail1, const char *extra,
                        const char *refuse) {
        char yaml[2048];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: g}\n"
                 "input: {topic: in, schema: ../../schemas/interaction.avsc}\n"
                 "outputs: {dead_letter: {topic: dlq}}\n"
                 "plugins:\n"
                 "  - use: %s/test_ckpt_blob.so\n"
                 "    with: {size: %d, seed: %d, refuse: %s}\n"
                 "  - use: %s/test_ckpt_blob.so\n"
                 "    with: {size: %d, seed: %d, fail_checkpoint: %d}\n"
                 "state: {topic: st, interval_ms: 1000}\n%s",
                 TEST_PLUGIN_DIR, size0, seed0, refuse, TEST_PLUGIN_DIR, size1,
                 seed1, fail1, extra);
        open_yaml(x, yaml);
}

static void open_pl_with(struct pl *x, int seed, const char *extra,
                         const char *refuse) {
        open_stages(x, BIG, seed, 0, 1, 0, extra, refuse);
}

static void open_pl(struct pl *x, int seed, const char *extra) {
        open_pl_with(x, seed, extra, "false");
}

static void open_pl_refusing(struct pl *x) {
        open_pl_with(x, 5, "", "true");
}

static void close_pl(struct pl *x) {
        veil_pipeline_destroy(x->p);
        veil_config_destroy(x->cfg);
}

/* Through the checkpoint hook (which counts the call for
 * fail_checkpoint). */
static unsigned char *stage_state(struct pl *x, size_t stage, size_t *len) {
        void *d = NULL;
        const struct veil_plugin *pl = veil_pipeline_stage_plugin(x->p, stage);
        assert_int_equal(pl->checkpoint(veil_pipeline_stage_state(x->p, stage),
                                        &d, len),
                         0);
        return d;
}

/* The error of the last save that failed. */
static char save_err[1024];

/* Saves x as the next checkpoint of w, under group g. */
static int save_group(struct pl *x, struct cap *c, const char *g,
                      struct veil_checkpoint_writer *w, size_t *n) {
        struct veil_sink s = {cap_produce, c};
        return veil_checkpoint_save(x->p, &s, "st", g, w, n, save_err,
                                    sizeof(save_err));
}

/* Saves x as the next checkpoint of w. */
static int save_w(struct pl *x, struct cap *c,
                  struct veil_checkpoint_writer *w, size_t *n) {
        return save_group(x, c, "g", w, n);
}

/* Saves x as checkpoint seq, as a new writer (every stage under seq). */
static void save(struct pl *x, struct cap *c, uint64_t seq) {
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        veil_checkpoint_writer_raise(w, seq);
        size_t n = 0;
        assert_int_equal(save_w(x, c, w, &n), 0);
        assert_int_equal(n, 2);
        veil_checkpoint_writer_free(w);
}

/* Saves x as w's next checkpoint; returns where its records begin. */
static size_t save_next(struct pl *x, struct cap *c,
                        struct veil_checkpoint_writer *w, int ok) {
        size_t first = c->n, n = 0;
        assert_int_equal(save_w(x, c, w, &n) == 0, ok);
        return first;
}

/* The error of the last load_w that failed. */
static char load_err[512];

/* Feeds c (skipping record `skip`) to a fresh reader and restores x into
 * w (may be NULL: a writer of its own, for *next). */
static int load_w(struct pl *x, const struct cap *c, size_t skip,
                  struct veil_checkpoint_writer *w, uint64_t *next,
                  size_t *restored) {
        struct veil_checkpoint_reader *r;
        struct veil_checkpoint_writer *own = NULL;
        if (!w) {
                assert_int_equal(veil_checkpoint_writer_new(&own), 0);
                w = own;
        }
        assert_int_equal(veil_checkpoint_reader_new(&r, "g", x->p), 0);
        for (size_t i = 0; i < c->n; i++)
                if (i != skip)
                        veil_checkpoint_reader_add(r, c->r[i].key,
                                                   c->r[i].key_len,
                                                   c->r[i].value,
                                                   c->r[i].value_len);
        int rc = veil_checkpoint_reader_restore(r, x->p, "st", w, restored,
                                                load_err, sizeof(load_err));
        if (next)
                *next = veil_checkpoint_writer_next(w);
        veil_checkpoint_reader_free(r);
        veil_checkpoint_writer_free(own);
        return rc;
}

static int load(struct pl *x, const struct cap *c, size_t skip,
                uint64_t *next, size_t *restored) {
        return load_w(x, c, skip, NULL, next, restored);
}

static int same_stage(struct pl *a, struct pl *b, size_t stage) {
        size_t la, lb;
        unsigned char *da = stage_state(a, stage, &la),
                      *db = stage_state(b, stage, &lb);
        int same = la == lb && !memcmp(da, db, la);
        free(da);
        free(db);
        return same;
}

static int same_state(struct pl *a, struct pl *b) {
        return same_stage(a, b, 0);
}

/* Drops the records from n on (a crash: they were never produced). */
static void cap_cut(struct cap *c, size_t n) {
        for (size_t i = n; i < c->n; i++) {
                free(c->r[i].key);
                free(c->r[i].value);
        }
        c->n = n;
}

/* Compaction: only the last record of each key stays, and none of a key
 * whose last record is a tombstone (once delete.retention.ms passed). */
static void cap_compact(struct cap *c) {
        size_t n = 0;
        for (size_t i = 0; i < c->n; i++) {
                int later = 0;
                for (size_t j = i + 1; j < c->n && !later; j++)
                        later = c->r[j].key_len == c->r[i].key_len &&
                                !memcmp(c->r[j].key, c->r[i].key,
                                        c->r[i].key_len);
                if (later || !c->r[i].value) {
                        free(c->r[i].key);
                        free(c->r[i].value);
                } else {
                        c->r[n++] = c->r[i];
                }
        }
        c->n = n;
}

static void test_roundtrip(void **st) {
        (void)st;
        struct pl a, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&b, 2, "");
        assert_false(same_state(&a, &b));
        save(&a, &c, 7);
        /* 2 MB: 3 chunks and a manifest; the empty stage: a manifest. An
         * odd sequence number's chunks are "<n>.1", an even one's "<n>". */
        assert_int_equal(c.n, 5);
        assert_int_equal(c.r[0].key_len, strlen("g/0-ckpt_blob/0.1"));
        assert_memory_equal(c.r[0].key, "g/0-ckpt_blob/0.1",
                            c.r[0].key_len);
        assert_memory_equal(c.r[3].key, "g/0-ckpt_blob/manifest",
                            c.r[3].key_len);
        assert_memory_equal(c.r[4].key, "g/1-ckpt_blob/manifest",
                            c.r[4].key_len);
        uint64_t next = 0;
        size_t restored = 0;
        assert_int_equal(load(&b, &c, SIZE_MAX, &next, &restored), 0);
        assert_int_equal(restored, 2);
        assert_int_equal(next, 8);
        assert_true(same_state(&a, &b));
        cap_free(&c);
        close_pl(&a);
        close_pl(&b);
}

static void test_partial_and_corrupt(void **st) {
        (void)st;
        struct pl a, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&b, 2, "");
        save(&a, &c, 1);
        size_t restored = 9;
        uint64_t next = 0;
        /* A missing chunk: stage 0 is skipped, its state untouched. */
        assert_int_equal(load(&b, &c, 1, &next, &restored), 0);
        assert_int_equal(restored, 1);
        assert_false(same_state(&a, &b));
        /* A flipped byte: the checksum refuses it. */
        c.r[2].value[100] ^= 1;
        assert_int_equal(load(&b, &c, SIZE_MAX, &next, &restored), 0);
        assert_int_equal(restored, 1);
        assert_false(same_state(&a, &b));
        /* A truncated manifest and garbage values are ignored. */
        c.r[2].value[100] ^= 1;
        c.r[3].value_len = 20;
        assert_int_equal(load(&b, &c, SIZE_MAX, &next, &restored), 0);
        assert_int_equal(restored, 1);
        assert_false(same_state(&a, &b));
        cap_free(&c);
        close_pl(&a);
        close_pl(&b);
}

/* Three pipelines of distinct states (a, a2 to save, b to restore into)
 * and the records captured. */
struct three {
        struct pl a, a2, b;
        struct cap c;
};

static void three_open(struct three *t) {
        memset(&t->c, 0, sizeof(t->c));
        open_pl(&t->a, 1, "");
        open_pl(&t->a2, 3, "");
        open_pl(&t->b, 2, "");
}

static void three_close(struct three *t) {
        cap_free(&t->c);
        close_pl(&t->a);
        close_pl(&t->a2);
        close_pl(&t->b);
}

static void test_older_complete(void **st) {
        (void)st;
        struct three t;
        three_open(&t);
        struct pl *a = &t.a, *a2 = &t.a2, *b = &t.b;
        struct cap *c = &t.c;
        save(a, c, 1);
        size_t first = c->n;
        save(a2, c, 2);
        /* Checkpoint 2 lost its first chunk (a crash mid-write): 1 is used,
         * and the next sequence number still passes 2. */
        size_t restored = 0;
        uint64_t next = 0;
        assert_int_equal(load(b, c, first, &next, &restored), 0);
        assert_int_equal(restored, 2);
        assert_int_equal(next, 3);
        assert_true(same_state(a, b));
        /* Complete: the newest wins. */
        assert_int_equal(load(b, c, SIZE_MAX, &next, &restored), 0);
        assert_true(same_state(a2, b));
        three_close(&t);
}

/* Two checkpoints under one number (two instances sharing the state
 * topic, or a retry after a failed stage): the second's chunks replace
 * the first's, so the first manifest no longer matches. The second is
 * restored; the first used to be tried alone, and the stage started
 * empty with the older ones already pruned. */
static void test_same_seq(void **st) {
        (void)st;
        struct three t;
        three_open(&t);
        struct pl *a = &t.a, *a2 = &t.a2, *b = &t.b;
        struct cap *c = &t.c;
        save(a, c, 4);
        save(a, c, 5);
        save(a2, c, 5);
        size_t restored = 0;
        uint64_t next = 0;
        assert_int_equal(load(b, c, SIZE_MAX, &next, &restored), 0);
        assert_int_equal(restored, 2);
        assert_int_equal(next, 6);
        assert_true(same_state(a2, b));
        three_close(&t);
}

/* Sets the sequence number of records [from, c->n) to seq: records no
 * veil writes (it refuses such numbers). */
static void reseq(struct cap *c, size_t from, uint64_t seq) {
        for (size_t i = from; i < c->n; i++)
                for (int j = 0; j < 8; j++)
                        c->r[i].value[5 + j] =
                                (unsigned char)(seq >> (56 - 8 * j));
}

/* Sequence numbers are 1 to 2^62 - 1. Records claiming 0, 2^62 or more
 * are not ours and skipped: they would make the next number one the
 * reader skips, or wrap it to 0, and every later checkpoint would lose to
 * them at restore. A checkpoint numbered 2^62 - 1 was taken in and the
 * next one numbered 2^62, which the reader skipped: 2^62 - 1 was restored
 * at every start, silently. Now the writer refuses numbers the reader
 * would skip, and a restore that leaves no number for the next checkpoint
 * (n and n + 1) fails, before any stage is restored. */
static void test_seq_out_of_range(void **st) {
        (void)st;
        struct three t;
        three_open(&t);
        struct pl *a = &t.a, *a2 = &t.a2, *b = &t.b;
        struct cap *c = &t.c;
        const uint64_t max = (UINT64_C(1) << 62) - 1;
        save(a, c, 1);
        size_t from = c->n;
        save(a2, c, 5); /* odd keys, as UINT64_MAX's */
        reseq(c, from, UINT64_MAX);
        from = c->n;
        save(a2, c, 4); /* even keys, as 2^62's and 0's */
        reseq(c, from, max + 1);
        from = c->n;
        save(a2, c, 4);
        reseq(c, from, 0);
        size_t restored = 0;
        uint64_t next = 0;
        assert_int_equal(load(b, c, SIZE_MAX, &next, &restored), 0);
        assert_int_equal(next, 2);
        assert_true(same_state(a, b));
        /* The writer refuses 2^62, and a stage that would take n + 1 =
         * 2^62: nothing produced. */
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        veil_checkpoint_writer_raise(w, max + 1);
        from = c->n;
        save_next(a2, c, w, 0);
        assert_int_equal(c->n, from);
        veil_checkpoint_writer_free(w);
        /* The largest that leaves a pair (n, n + 1) for the next. */
        save(a2, c, max - 2);
        assert_int_equal(load(b, c, SIZE_MAX, &next, &restored), 0);
        assert_int_equal(next, max - 1);
        assert_true(same_state(a2, b));
        /* One more, and none is left: the start fails, restoring
         * nothing. */
        save(a, c, max - 1);
        close_pl(b);
        open_pl(b, 2, "");
        assert_int_equal(load(b, c, SIZE_MAX, &next, &restored),
                         -VEIL_EINVAL);
        assert_false(same_state(a, b));
        assert_false(same_state(a2, b));
        /* 2^62 - 1 itself (the largest the reader takes) fails too. */
        cap_free(c);
        save(a, c, max);
        assert_int_equal(load(b, c, SIZE_MAX, &next, &restored),
                         -VEIL_EINVAL);
        three_close(&t);
}

/* Ten checkpoints of 2 MB read in a row (a topic not yet compacted): the
 * reader holds about one, not all ten, and restores the newest. */
static void test_bounded_while_reading(void **st) {
        (void)st;
        struct pl a[2], b;
        struct cap c = {0};
        open_pl(&a[0], 1, "");
        open_pl(&a[1], 3, "");
        open_pl(&b, 2, "");
        struct veil_checkpoint_reader *r;
        char err[512];
        assert_int_equal(veil_checkpoint_reader_new(&r, "g", b.p), 0);
        size_t most = 0;
        for (uint64_t seq = 1; seq <= 10; seq++) {
                save(&a[seq % 2], &c, seq);
                for (size_t i = 0; i < c.n; i++) {
                        veil_checkpoint_reader_add(r, c.r[i].key,
                                                   c.r[i].key_len,
                                                   c.r[i].value,
                                                   c.r[i].value_len);
                        size_t held = veil_checkpoint_reader_bytes(r);
                        if (held > most)
                                most = held;
                }
                cap_free(&c);
        }
        fprintf(stderr, "# most held while reading: %zu bytes\n", most);
        assert_true(most >= BIG && most < 2 * BIG + 100);
        uint64_t next = 0;
        size_t restored = 0;
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        assert_int_equal(veil_checkpoint_reader_restore(r, b.p, "st", w,
                                                        &restored, err,
                                                        sizeof(err)),
                         0);
        next = veil_checkpoint_writer_next(w);
        veil_checkpoint_writer_free(w);
        assert_int_equal(next, 11);
        assert_true(same_state(&a[0], &b)); /* checkpoint 10 */
        veil_checkpoint_reader_free(r);
        close_pl(&a[0]);
        close_pl(&a[1]);
        close_pl(&b);
}

/* A chunk record of stage key `stage` ("0-ckpt_blob") under chunk key
 * `what`, claiming number seq and index idx, of `len` bytes. */
static void add_chunk(struct veil_checkpoint_reader *r, const char *stage,
                      const char *what, uint64_t seq, uint32_t idx,
                      unsigned char *buf, size_t len) {
        char key[128];
        snprintf(key, sizeof(key), "g/%s/%s", stage, what);
        memcpy(buf, "VCKC", 4);
        buf[4] = 1;
        for (int i = 0; i < 8; i++)
                buf[5 + i] = (unsigned char)(seq >> (56 - 8 * i));
        for (int i = 0; i < 4; i++)
                buf[13 + i] = (unsigned char)(idx >> (24 - 8 * i));
        veil_checkpoint_reader_add(r, key, strlen(key), buf, 17 + len);
}

/* Chunks that never get a manifest were all kept until the end of the
 * log: 2000 stray 900 KB chunks held 1.7 GB. Now a chunk is kept only
 * under the key its index and number give it, for a stage of this
 * pipeline, and what waits above a stage's verified checkpoint is bounded
 * (VEIL_CKPT_PENDING_*), the oldest numbers dropped first. */
static void test_strays_bounded(void **st) {
        (void)st;
        struct pl a, a2, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&a2, 3, "");
        open_pl(&b, 2, "");
        struct veil_checkpoint_reader *r;
        assert_int_equal(veil_checkpoint_reader_new(&r, "g", b.p), 0);
        save(&a, &c, 10);
        for (size_t i = 0; i < c.n; i++)
                veil_checkpoint_reader_add(r, c.r[i].key, c.r[i].key_len,
                                           c.r[i].value, c.r[i].value_len);
        cap_free(&c);
        size_t base = veil_checkpoint_reader_bytes(r);
        assert_int_equal(base, BIG);
        unsigned char *buf = calloc(1, 17 + VEIL_CKPT_CHUNK);
        assert_non_null(buf);
        /* Not ours: a key that is not the chunk's index, or of the other
         * parity, an index past MAX_CHUNKS or written otherwise, a stage
         * this pipeline does not have, number 0. */
        add_chunk(r, "0-ckpt_blob", "3", 12, 5, buf, 1000);
        add_chunk(r, "0-ckpt_blob", "0.1", 12, 0, buf, 1000);
        add_chunk(r, "0-ckpt_blob", "0", 13, 0, buf, 1000);
        add_chunk(r, "0-ckpt_blob", "4096", 12, 4096, buf, 1000);
        add_chunk(r, "0-ckpt_blob", "07", 12, 7, buf, 1000);
        add_chunk(r, "0-ckpt_blob", "x", 12, 0, buf, 1000);
        add_chunk(r, "5-ckpt_blob", "0", 12, 0, buf, 1000);
        add_chunk(r, "0-other", "0", 12, 0, buf, 1000);
        add_chunk(r, "0-ckpt_blob", "0", 0, 0, buf, 1000);
        assert_int_equal(veil_checkpoint_reader_bytes(r), base);
        /* 300 full chunks of numbers that never get a manifest. */
        size_t most = 0;
        for (uint64_t i = 0; i < 300; i++) {
                uint64_t seq = 11 + i;
                char what[16];
                snprintf(what, sizeof(what), seq % 2 ? "%d.1" : "%d",
                         (int)(i % 3));
                add_chunk(r, "0-ckpt_blob", what, seq, (uint32_t)(i % 3), buf,
                          VEIL_CKPT_CHUNK);
                size_t held = veil_checkpoint_reader_bytes(r);
                if (held > most)
                        most = held;
        }
        fprintf(stderr, "# most held with 300 stray chunks: %zu bytes\n",
                most);
        assert_true(most <= base + (VEIL_CKPT_PENDING_SEQS + 1) *
                                           (size_t)VEIL_CKPT_CHUNK);
        /* Two numbers of 80 chunks (72 MB) each: together over the bytes
         * bound, so the older goes once the newer comes (the number being
         * read stays, whatever its size: a checkpoint's chunks come before
         * its manifest). */
        most = 0;
        for (uint64_t seq = 320; seq <= 322; seq += 2)
                for (uint32_t i = 0; i < 80; i++) {
                        char what[16];
                        snprintf(what, sizeof(what), "%u", i);
                        add_chunk(r, "0-ckpt_blob", what, seq, i, buf,
                                  VEIL_CKPT_CHUNK);
                        size_t held = veil_checkpoint_reader_bytes(r);
                        if (held > most)
                                most = held;
                }
        fprintf(stderr, "# most held with two 72 MB strays: %zu bytes\n",
                most);
        assert_true(most <= base + 81 * (size_t)VEIL_CKPT_CHUNK);
        free(buf);
        /* A newer checkpoint after them is restored, and the next number
         * passes the strays'. */
        save(&a2, &c, 400);
        for (size_t i = 0; i < c.n; i++)
                veil_checkpoint_reader_add(r, c.r[i].key, c.r[i].key_len,
                                           c.r[i].value, c.r[i].value_len);
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        char err[512];
        size_t restored = 0;
        assert_int_equal(veil_checkpoint_reader_restore(r, b.p, "st", w,
                                                        &restored, err,
                                                        sizeof(err)),
                         0);
        assert_int_equal(restored, 2);
        assert_true(same_state(&a2, &b));
        assert_int_equal(veil_checkpoint_writer_next(w), 401);
        veil_checkpoint_writer_free(w);
        veil_checkpoint_reader_free(r);
        cap_free(&c);
        close_pl(&a);
        close_pl(&a2);
        close_pl(&b);
}

/* A crash while a checkpoint is written, on a compacted topic (one record
 * per key survives): the chunks of the one before are under other keys,
 * so it still restores. With one set of keys, the new chunk 0 replaced
 * the old one, the old manifest's hash failed, and the state was lost. */
static void test_compacted_crash(void **st) {
        (void)st;
        struct pl a, a2, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&a2, 3, "");
        open_pl(&b, 2, "");
        for (uint64_t seq = 6; seq <= 7; seq++) { /* both parities */
                save(&a, &c, seq);
                /* Two crashes in a row, each after the first chunk of the
                 * first checkpoint of a start that restored the complete
                 * one. The next number passes the cut one's chunk (never
                 * taken again for other contents): seq + 1, then seq + 2
                 * whose stage 0 takes seq + 3 (the other key set than seq),
                 * then seq + 4. */
                const uint64_t want[] = {seq + 1, seq + 2, seq + 4};
                for (int start = 0; start < 3; start++) {
                        struct veil_checkpoint_writer *w;
                        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
                        size_t restored = 0;
                        uint64_t next = 0;
                        assert_int_equal(load_w(&b, &c, SIZE_MAX, w, &next,
                                                &restored),
                                         0);
                        assert_int_equal(restored, 2); /* and the empty one */
                        assert_true(same_state(&a, &b));
                        assert_int_equal(next, want[start]);
                        close_pl(&b);
                        open_pl(&b, 2, "");
                        if (start < 2) {
                                cap_cut(&c, save_next(&a2, &c, w, 1) + 1);
                                cap_compact(&c);
                        }
                        veil_checkpoint_writer_free(w);
                }
                cap_free(&c);
        }
        close_pl(&a);
        close_pl(&a2);
        close_pl(&b);
}

/* The clock as a floor of the numbers. A start that did not see the
 * newest records (beyond the last stable offset then: another instance's
 * transaction, committed later) numbered its checkpoints after the
 * largest it read, below those records, which then won at the next
 * restore: an older state. From the clock in ms, a later start's numbers
 * are above any earlier checkpoint's (they go up by two a checkpoint). */
static void test_seq_floor(void **st) {
        (void)st;
        struct pl a, a2, a3, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&a2, 3, "");
        open_pl(&a3, 4, "");
        open_pl(&b, 2, "");
        /* An instance started at t = 1,000,000 ms checkpoints twice. */
        struct veil_checkpoint_writer *wa, *wb;
        assert_int_equal(veil_checkpoint_writer_new(&wa), 0);
        veil_checkpoint_writer_floor(wa, 1000000);
        assert_int_equal(veil_checkpoint_writer_next(wa), 1000000);
        save_next(&a, &c, wa, 1);
        veil_checkpoint_writer_settled(wa, 1);
        struct cap seen = c; /* what the other start read: the first */
        save_next(&a2, &c, wa, 1);
        veil_checkpoint_writer_settled(wa, 1);
        /* Another starts 5 s later having read only the first. */
        assert_int_equal(veil_checkpoint_writer_new(&wb), 0);
        uint64_t next = 0;
        size_t restored = 0;
        assert_int_equal(load_w(&b, &seen, SIZE_MAX, wb, &next, &restored),
                         0);
        assert_int_equal(next, 1000001);
        veil_checkpoint_writer_floor(wb, 1005000);
        save_next(&a3, &c, wb, 1);
        /* Its checkpoint, the newest, is the one restored. */
        close_pl(&b);
        open_pl(&b, 2, "");
        assert_int_equal(load(&b, &c, SIZE_MAX, &next, &restored), 0);
        assert_true(same_state(&a3, &b));
        /* A clock behind the numbers read changes nothing. */
        veil_checkpoint_writer_floor(wb, 5);
        veil_checkpoint_writer_floor(wb, INT64_MAX);
        assert_int_equal(veil_checkpoint_writer_next(wb), 1005002);
        veil_checkpoint_writer_free(wa);
        veil_checkpoint_writer_free(wb);
        cap_free(&c);
        close_pl(&a);
        close_pl(&a2);
        close_pl(&a3);
        close_pl(&b);
}

/* A small stage 0 and a large stage 1 (BIG: three chunks), whose stage 1
 * fails its checkpoint hook at call fail1. */
static void open_small_large(struct pl *x, int seed, int fail1) {
        open_stages(x, 1000, seed, BIG, seed + 100, fail1, "", "false");
}

/* Restores a fresh pipeline from c after compaction: stage 1 must be
 * `want`'s (its last complete checkpoint), not empty. */
static void check_stage1(struct cap *c, struct pl *want) {
        struct pl b;
        open_small_large(&b, 50, 0);
        cap_compact(c);
        size_t restored = 0;
        assert_int_equal(load(&b, c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 2);
        assert_true(same_stage(want, &b, 1));
        close_pl(&b);
}

/* The key set is per stage while the sequence number is global. Stage 0
 * small, stage 1 large; checkpoint 6 complete; a crash during 7 after
 * stage 0's manifest; the next start takes 8, whose stage-1 chunks went
 * to the even keys of stage 1's last complete checkpoint (6): a second
 * crash after its first chunk, and compaction, left stage 1 with no
 * complete checkpoint (it started empty). Each stage now writes to the
 * set its newest complete checkpoint does not use. */
static void test_key_sets_per_stage(void **st) {
        (void)st;
        struct pl a, a2, a3, b;
        struct cap c = {0};
        open_small_large(&a, 1, 0);
        open_small_large(&a2, 2, 0);
        open_small_large(&a3, 3, 0);
        /* 6 and 7 as numbered one after the other (an older veil): 7's
         * stage 0 chunk and manifest, then the crash. */
        save(&a, &c, 6);
        size_t first = c.n;
        save(&a2, &c, 7);
        cap_cut(&c, first + 2);
        /* The restart: stage 0 from 7, stage 1 from 6. */
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        open_small_large(&b, 50, 0);
        size_t restored = 0;
        assert_int_equal(load_w(&b, &c, SIZE_MAX, w, NULL, &restored), 0);
        assert_int_equal(restored, 2);
        assert_true(same_stage(&a2, &b, 0));
        assert_true(same_stage(&a, &b, 1));
        close_pl(&b);
        assert_int_equal(veil_checkpoint_writer_next(w), 8);
        /* Its first checkpoint (8, stage 1 at 9): stage 0's chunk and
         * manifest, stage 1's first chunk, then the second crash. */
        cap_cut(&c, save_next(&a3, &c, w, 1) + 3);
        veil_checkpoint_writer_free(w);
        check_stage1(&c, &a);
        cap_free(&c);
        close_pl(&a);
        close_pl(&a2);
        close_pl(&a3);
}

/* The same within one run: stage 1's hook fails at checkpoint 8 after
 * stage 0 saved (the number used to go up by one, to 9, whose parity was
 * stage 1's last complete one's), then a crash during the next one; and an
 * aborted transaction (exactly-once) holding a checkpoint, then a crash
 * during the next: the aborted one is not in the log, so the next must
 * not go to the keys of the one before it either. */
static void test_key_sets_failed_and_aborted(void **st) {
        (void)st;
        struct pl a, twin;
        struct cap c = {0};
        /* Stage 1's hook: call 1 saves, call 2 fails. */
        open_small_large(&a, 1, 2);
        open_small_large(&twin, 1, 0);
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        veil_checkpoint_writer_raise(w, 6);
        save_next(&a, &c, w, 1);
        veil_checkpoint_writer_settled(w, 1);
        save_next(&a, &c, w, 0); /* stage 0 saved, stage 1 failed */
        /* The hook has no message: the code, and what to do. */
        if (!strstr(save_err, "state: stage 1 (ckpt_blob): its checkpoint "
                              "hook failed (code -3, out of memory): it and "
                              "the stages after it are not saved this time, "
                              "the next checkpoint tries again; give the "
                              "host more memory"))
                fail_msg("got '%s'", save_err);
        veil_checkpoint_writer_settled(w, 1);
        cap_cut(&c, save_next(&a, &c, w, 1) + 3);
        veil_checkpoint_writer_free(w);
        check_stage1(&c, &twin);
        cap_free(&c);

        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        veil_checkpoint_writer_raise(w, 6);
        save_next(&twin, &c, w, 1);
        veil_checkpoint_writer_settled(w, 1);
        /* Aborted: read_committed never sees its records. */
        cap_cut(&c, save_next(&a, &c, w, 1));
        veil_checkpoint_writer_settled(w, 0);
        cap_cut(&c, save_next(&a, &c, w, 1) + 3);
        veil_checkpoint_writer_free(w);
        check_stage1(&c, &twin);
        cap_free(&c);
        close_pl(&a);
        close_pl(&twin);
}

/* How many records of c have a key starting with prefix; with `value`
 * set, only those holding a value. */
static size_t count_keys(const struct cap *c, const char *prefix,
                         int value) {
        size_t n = 0, pl = strlen(prefix);
        for (size_t i = 0; i < c->n; i++)
                n += c->r[i].key_len >= pl &&
                     !memcmp(c->r[i].key, prefix, pl) &&
                     (!value || c->r[i].value);
        return n;
}

/* Saves x as w's next checkpoint and settles it (in the log or not). */
static void save_settled(struct pl *x, struct cap *c,
                         struct veil_checkpoint_writer *w, int in_log) {
        save_next(x, c, w, 1);
        veil_checkpoint_writer_settled(w, in_log);
}

/* A state that shrinks leaves no chunk of before on a compacted topic.
 * Compaction keeps the last value of every key, and the chunk keys past a
 * smaller checkpoint's last were never written again: a 2 MB state (three
 * chunks per key set) that became 1 KB kept two chunks of each set for
 * good, with the profiles of people erased since. The keys are
 * tombstoned: by the writer that wrote them, by a restarted one from what
 * it read, and again after a checkpoint whose transaction aborted. */
static void test_shrunk_chunks_deleted(void **st) {
        (void)st;
        struct pl big, small, b;
        struct cap c = {0};
        open_stages(&big, BIG, 1, 0, 1, 0, "", "false");
        open_stages(&small, 1000, 2, 0, 1, 0, "", "false");
        for (int how = 0; how < 3; how++) {
                struct veil_checkpoint_writer *w;
                assert_int_equal(veil_checkpoint_writer_new(&w), 0);
                veil_checkpoint_writer_raise(w, 10);
                save_settled(&big, &c, w, 1); /* both key sets */
                save_settled(&big, &c, w, 1);
                cap_compact(&c);
                assert_int_equal(count_keys(&c, "g/0-ckpt_blob/", 1), 7);
                if (how == 1) { /* a restart: the reader's view seeds it */
                        veil_checkpoint_writer_free(w);
                        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
                        open_stages(&b, 1000, 9, 0, 1, 0, "", "false");
                        assert_int_equal(
                                load_w(&b, &c, SIZE_MAX, w, NULL, NULL), 0);
                        close_pl(&b);
                }
                if (how == 2) { /* aborted: its records never visible */
                        size_t first = c.n;
                        save_settled(&small, &c, w, 0);
                        cap_cut(&c, first);
                }
                save_settled(&small, &c, w, 1);
                save_settled(&small, &c, w, 1);
                cap_compact(&c);
                /* A chunk in each key set and the manifest. */
                assert_int_equal(count_keys(&c, "g/0-ckpt_blob/", 1), 3);
                open_stages(&b, 1000, 9, 0, 1, 0, "", "false");
                size_t restored = 0;
                assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored), 0);
                assert_int_equal(restored, 2);
                assert_true(same_state(&small, &b));
                close_pl(&b);
                /* Once deleted, the next checkpoints delete nothing more. */
                size_t first = c.n;
                save_settled(&small, &c, w, 1);
                assert_int_equal(c.n - first, 3); /* a chunk, 2 manifests */
                veil_checkpoint_writer_free(w);
                cap_free(&c);
        }
        close_pl(&big);
        close_pl(&small);
}

/* One ckpt_blob stage of `size` bytes. */
static void open_one(struct pl *x, int size, int seed) {
        char yaml[1024];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: g}\n"
                 "input: {topic: in, schema: ../../schemas/interaction.avsc}\n"
                 "outputs: {dead_letter: {topic: dlq}}\n"
                 "plugins:\n"
                 "  - use: %s/test_ckpt_blob.so\n"
                 "    with: {size: %d, seed: %d}\n"
                 "state: {topic: st, interval_ms: 1000}\n",
                 TEST_PLUGIN_DIR, size, seed);
        open_yaml(x, yaml);
}

/* A stage the pipeline no longer has (removed, or moved to another
 * position) is never restored, and no erasure reaches its checkpoint: its
 * records are deleted with the first checkpoint after the restart, and
 * only once that is in the log. */
static void test_removed_stage_deleted(void **st) {
        (void)st;
        struct pl two, one, b;
        struct cap c = {0};
        open_stages(&two, BIG, 1, 5000, 2, 0, "", "false");
        open_one(&one, 3000, 3);
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        save_settled(&two, &c, w, 1);
        save_settled(&two, &c, w, 1);
        veil_checkpoint_writer_free(w);
        cap_compact(&c);
        assert_int_equal(count_keys(&c, "g/1-ckpt_blob/", 1), 3);
        /* The restart without stage 1: stage 0 restored, 1 noted. (Into
         * b: a restore replaces the state, and `one` saves its own.) */
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        size_t restored = 0;
        open_one(&b, 3000, 9);
        assert_int_equal(load_w(&b, &c, SIZE_MAX, w, NULL, &restored), 0);
        assert_int_equal(restored, 1);
        close_pl(&b);
        /* An aborted checkpoint deletes nothing; the next one does. */
        size_t first = c.n;
        save_settled(&one, &c, w, 0);
        assert_true(count_keys(&c, "g/1-ckpt_blob/", 0) > 3);
        cap_cut(&c, first);
        save_settled(&one, &c, w, 1);
        cap_compact(&c);
        assert_int_equal(count_keys(&c, "g/1-ckpt_blob/", 0), 0);
        /* Stage 0 shrank from 3 chunks to 1 in this key set. */
        assert_int_equal(count_keys(&c, "g/0-ckpt_blob/", 1), 5);
        save_settled(&one, &c, w, 1);
        cap_compact(&c);
        assert_int_equal(count_keys(&c, "g/0-ckpt_blob/", 1), 3);
        /* Sent once: the next checkpoint has no tombstone. */
        first = c.n;
        save_settled(&one, &c, w, 1);
        assert_int_equal(count_keys(&c, "g/1-ckpt_blob/", 0), 0);
        assert_int_equal(c.n - first, 2); /* stage 0's chunk, manifest */
        veil_checkpoint_writer_free(w);
        open_one(&b, 3000, 9);
        assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 1);
        assert_true(same_state(&one, &b));
        close_pl(&b);
        cap_free(&c);
        close_pl(&two);
        close_pl(&one);
}

/* Appends a record of key k (len bytes) holding value v (a copy; NULL: a
 * tombstone). */
static void cap_add(struct cap *c, const char *k, size_t len,
                    const unsigned char *v, size_t v_len) {
        assert_true(c->n < 256);
        struct rec *r = &c->r[c->n++];
        r->key = malloc(len);
        memcpy(r->key, k, len);
        r->key_len = len;
        r->value = NULL;
        r->value_len = v ? v_len : 0;
        if (v) {
                r->value = malloc(v_len ? v_len : 1);
                memcpy(r->value, v, v_len);
        }
}

/* A tombstone for every key of records from..to-1 holding a value (the
 * README's deletion of a group's checkpoints by hand). */
static void tombstone_keys(struct cap *c, size_t from, size_t to) {
        for (size_t i = from; i < to; i++)
                if (c->r[i].value)
                        cap_add(c, c->r[i].key, c->r[i].key_len, NULL, 0);
}

/* Restores c into a pipeline of seed 9 and checks how many stages were
 * restored and that stage 0 holds want's state (NULL: its own). The log
 * compacted (a copy) must give the same. */
static void check_restore(const struct cap *c, size_t n, struct pl *want) {
        struct cap *k = calloc(1, sizeof(*k));
        for (size_t i = 0; i < c->n; i++)
                cap_add(k, c->r[i].key, c->r[i].key_len, c->r[i].value,
                        c->r[i].value_len);
        cap_compact(k);
        struct pl own;
        open_pl(&own, 9, "");
        for (int compacted = 0; compacted < 2; compacted++) {
                struct pl b;
                size_t restored = 9;
                open_pl(&b, 9, "");
                assert_int_equal(load(&b, compacted ? k : c, SIZE_MAX, NULL,
                                      &restored),
                                 0);
                assert_int_equal(restored, n);
                assert_true(same_state(want ? want : &own, &b));
                close_pl(&b);
        }
        close_pl(&own);
        cap_free(k);
        free(k);
}

/* A hot reload moves stage state by plugin, but checkpoint keys are
 * "<index>-<plugin>". The writer never heard of the reload: the key of a
 * stage the reload removed (or moved) kept its last checkpoint from
 * before for good, which no erasure reached; and a stage a reload put
 * back at a key the start had found without a stage had its first
 * checkpoint's manifest deleted by that same checkpoint. */
static void test_reload_retarget(void **st) {
        (void)st;
        struct pl two, one, b;
        struct cap c = {0};
        open_stages(&two, 1000, 1, BIG, 2, 0, "", "false");
        open_one(&one, 3000, 3);
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        /* Numbers 1, 4, 5: both key sets of both stages, the newest
         * complete in the odd one. */
        for (int i = 0; i < 3; i++)
                save_settled(&two, &c, w, 1);
        assert_int_equal(veil_checkpoint_writer_retarget(w, one.p), 0);
        /* Stage 0 keeps its key sets: 8, even, not 7 over its newest. */
        size_t first = c.n;
        save_settled(&one, &c, w, 0); /* aborted: deletes nothing */
        assert_int_equal(c.r[first].key_len, 15);
        assert_memory_equal(c.r[first].key, "g/0-ckpt_blob/0", 15);
        assert_true(count_keys(&c, "g/1-ckpt_blob/", 0) > 7);
        cap_cut(&c, first);
        save_settled(&one, &c, w, 1);
        cap_compact(&c);
        assert_int_equal(count_keys(&c, "g/1-ckpt_blob/", 0), 0);
        /* Sent once. */
        first = c.n;
        save_settled(&one, &c, w, 1);
        assert_int_equal(count_keys(&c, "g/1-ckpt_blob/", 0), 0);
        veil_checkpoint_writer_free(w);
        cap_free(&c);
        /* A start without stage 1 notes its keys for deletion; a reload
         * adds it back before the first checkpoint. */
        struct pl two2;
        open_stages(&two2, 1000, 4, 5000, 5, 0, "", "false");
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        save_settled(&two, &c, w, 1); /* stage 1: 3 chunks, odd set */
        veil_checkpoint_writer_free(w);
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        open_one(&b, 3000, 9);
        assert_int_equal(load_w(&b, &c, SIZE_MAX, w, NULL, NULL), 0);
        close_pl(&b);
        assert_int_equal(veil_checkpoint_writer_retarget(w, two2.p), 0);
        first = c.n;
        save_settled(&two2, &c, w, 1);
        for (size_t i = first; i < c.n; i++)
                assert_non_null(c.r[i].value);
        /* The odd set's chunks past its one are still deleted, at its
         * first checkpoint there. */
        save_settled(&two2, &c, w, 1);
        veil_checkpoint_writer_free(w);
        cap_compact(&c);
        assert_int_equal(count_keys(&c, "g/1-ckpt_blob/", 1), 3);
        size_t restored = 0;
        open_stages(&b, 10, 9, 10, 9, 0, "", "false");
        assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 2);
        assert_true(same_stage(&two2, &b, 1));
        close_pl(&b);
        cap_free(&c);
        /* A reload between a checkpoint that deletes a stage's keys and
         * its settling: the stage the reload drops is deleted by the
         * checkpoint after (settling the first dropped every orphan). */
        struct pl third;
        char yaml[1024];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: g}\n"
                 "input: {topic: in, schema: ../../schemas/interaction.avsc}\n"
                 "outputs: {dead_letter: {topic: dlq}}\n"
                 "plugins:\n"
                 "  - use: %s/veil_passthrough.so\n"
                 "  - use: %s/veil_passthrough.so\n"
                 "  - use: %s/test_ckpt_blob.so\n"
                 "state: {topic: st, interval_ms: 1000}\n",
                 TEST_PLUGIN_DIR, TEST_PLUGIN_DIR, TEST_PLUGIN_DIR);
        open_yaml(&third, yaml);
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        save_settled(&two, &c, w, 1);
        veil_checkpoint_writer_free(w);
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        assert_int_equal(load_w(&third, &c, SIZE_MAX, w, NULL, NULL), 0);
        save_next(&third, &c, w, 1); /* deletes 0- and 1-ckpt_blob */
        assert_int_equal(veil_checkpoint_writer_retarget(w, one.p), 0);
        veil_checkpoint_writer_settled(w, 1);
        first = c.n;
        save_settled(&one, &c, w, 1);
        assert_int_equal(count_keys(&c, "g/2-ckpt_blob/manifest", 0) -
                                 count_keys(&c, "g/2-ckpt_blob/manifest", 1),
                         1);
        assert_null(c.r[c.n - 1].value);
        veil_checkpoint_writer_free(w);
        cap_free(&c);
        close_pl(&third);
        close_pl(&two);
        close_pl(&two2);
        close_pl(&one);
}

/* A tombstone deletes what was read under its key, as compaction will.
 * The reader only cleared the key's live bit: a restart before the log
 * cleaner ran (never on the active segment, which holds days) restored a
 * checkpoint an operator had deleted with a tombstone per key, or one of
 * a stage veil deleted because the pipeline no longer had it, and the
 * next checkpoint wrote it back for good. */
static void test_tombstones_read(void **st) {
        (void)st;
        struct pl a, a2;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&a2, 2, "");
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        /* Every key deleted: nothing is restored, stage 1's empty state
         * (a manifest alone) included. */
        save_settled(&a, &c, w, 1);
        tombstone_keys(&c, 0, c.n);
        check_restore(&c, 0, NULL);
        /* A checkpoint after the tombstones counts: log order. */
        save_settled(&a2, &c, w, 1);
        save_settled(&a, &c, w, 1);
        size_t first = c.n;
        save_settled(&a2, &c, w, 1);
        check_restore(&c, 2, &a2);
        /* One chunk key of the newest checkpoint deleted: it is not
         * complete, and the one before it was superseded (its manifest
         * key holds the newest's). */
        size_t last = first;
        for (size_t i = first; i < c.n; i++)
                if (c.r[i].value && c.r[i].key_len > 14 &&
                    !memcmp(c.r[i].key, "g/0-ckpt_blob/", 14) &&
                    c.r[i].key[14] >= '0' && c.r[i].key[14] <= '9')
                        last = i;
        cap_add(&c, c.r[last].key, c.r[last].key_len, NULL, 0);
        check_restore(&c, 1, NULL);
        /* Deleted then written again: the value counts. */
        cap_add(&c, c.r[last].key, c.r[last].key_len, c.r[last].value,
                c.r[last].value_len);
        check_restore(&c, 2, &a2);
        veil_checkpoint_writer_free(w);
        cap_free(&c);
        /* veil's own deletion of a stage a pipeline no longer has, then a
         * rollback to the two stages before compaction ran: stage 1 starts
         * empty, as after compaction (README). */
        struct pl two, one, b;
        open_stages(&two, 1000, 1, 5000, 2, 0, "", "false");
        open_one(&one, 3000, 3);
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        save_settled(&two, &c, w, 1);
        veil_checkpoint_writer_free(w);
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        open_one(&b, 3000, 9);
        assert_int_equal(load_w(&b, &c, SIZE_MAX, w, NULL, NULL), 0);
        close_pl(&b);
        save_settled(&one, &c, w, 1);
        veil_checkpoint_writer_free(w);
        size_t restored = 0;
        open_stages(&b, 10, 7, 10, 8, 0, "", "false");
        assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 1);
        assert_false(same_stage(&two, &b, 1));
        close_pl(&b);
        cap_free(&c);
        close_pl(&two);
        close_pl(&one);
        close_pl(&a);
        close_pl(&a2);
}

/* A key whose stage part is not "<index>-<plugin>" is no stage's. Its
 * name was kept up to a NUL: "g/0-ckpt_blob\0x/manifest" made stage 0 of
 * the running pipeline one to delete, and the next checkpoint tombstoned
 * its manifest. A stage this pipeline does not have whose plugin name has
 * a '-' (`use:` names may) is still deleted. */
static void test_stray_stage_names(void **st) {
        (void)st;
        struct pl a, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        save(&a, &c, 1);
        static const char nul[] = "g/0-ckpt_blob\0x/manifest",
                          dot[] = "g/0-ckpt.blob/manifest",
                          dash[] = "g/7-old-plugin/manifest";
        unsigned char x = 'x';
        cap_add(&c, nul, sizeof(nul) - 1, &x, 1);
        cap_add(&c, dot, sizeof(dot) - 1, &x, 1);
        cap_add(&c, dash, sizeof(dash) - 1, &x, 1);
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        open_pl(&b, 2, "");
        size_t restored = 0;
        assert_int_equal(load_w(&b, &c, SIZE_MAX, w, NULL, &restored), 0);
        assert_int_equal(restored, 2);
        close_pl(&b);
        size_t first = c.n;
        open_pl(&b, 3, "");
        save_settled(&b, &c, w, 1);
        veil_checkpoint_writer_free(w);
        /* Only the real stage's keys are deleted. */
        size_t tomb = 0;
        for (size_t i = first; i < c.n; i++)
                if (!c.r[i].value) {
                        assert_int_equal(c.r[i].key_len, sizeof(dash) - 1);
                        assert_memory_equal(c.r[i].key, dash,
                                            sizeof(dash) - 1);
                        tomb++;
                }
        assert_int_equal(tomb, 1);
        cap_compact(&c);
        struct pl r;
        open_pl(&r, 4, "");
        assert_int_equal(load(&r, &c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 2);
        assert_true(same_state(&b, &r));
        close_pl(&r);
        close_pl(&b);
        cap_free(&c);
        close_pl(&a);
}

/* A manifest of a framing format this veil does not read (a newer
 * veil's, read after a downgrade) fails the start, naming the stage, the
 * format and the way out: it was skipped as unrecognisable and the stage
 * started empty. Deleting the stage's keys starts it empty; chunks of
 * another format without their manifest (a newer veil's checkpoint cut
 * short) leave this veil's last complete one to restore. */
static void test_other_format(void **st) {
        (void)st;
        struct pl a, a2, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&a2, 2, "");
        open_pl(&b, 9, "");
        save(&a, &c, 5);
        size_t first = c.n, end;
        save(&a2, &c, 8);
        for (size_t i = first; i < c.n; i++)
                c.r[i].value[4] = 2;
        size_t restored = 9;
        assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored),
                         -VEIL_EINVAL);
        if (!strstr(load_err, "state: stage 0 (ckpt_blob): checkpoint 8 is "
                              "of format 2, this veil reads 1: run a veil "
                              "that reads it, or delete the stage's keys "
                              "('g/0-ckpt_blob/...', a tombstone each) from "
                              "'st' to start it empty"))
                fail_msg("got '%s'", load_err);
        /* The stages' manifest keys deleted, as the message says: they
         * start empty. */
        end = c.n;
        for (size_t i = first; i < end; i++)
                if (c.r[i].key_len > 8 &&
                    !memcmp(c.r[i].key + c.r[i].key_len - 8, "manifest", 8))
                        cap_add(&c, c.r[i].key, c.r[i].key_len, NULL, 0);
        assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 0);
        cap_free(&c);
        save(&a, &c, 5);
        first = c.n;
        save(&a2, &c, 8);
        for (size_t i = first; i < c.n; i++)
                c.r[i].value[4] = 2;
        cap_cut(&c, first + 3); /* the manifests never written */
        assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 2);
        assert_true(same_state(&a, &b));
        /* Deleted by hand: every stage starts empty. */
        tombstone_keys(&c, 0, c.n);
        assert_int_equal(load(&b, &c, SIZE_MAX, NULL, &restored), 0);
        assert_int_equal(restored, 0);
        cap_free(&c);
        close_pl(&a);
        close_pl(&a2);
        close_pl(&b);
}

static void test_foreign_and_refused(void **st) {
        (void)st;
        struct pl a, b;
        struct cap c = {0};
        open_pl(&a, 1, "");
        open_pl(&b, 2, "");
        save(&a, &c, 1);
        /* Another group's records ("g2/…", and "gx" sharing a prefix) are
         * not this pipeline's. */
        for (size_t i = 0; i < c.n; i++) {
                char *k = realloc(c.r[i].key, c.r[i].key_len + 1);
                memmove(k + 2, k + 1, c.r[i].key_len - 1);
                k[1] = '2';
                c.r[i].key = k;
                c.r[i].key_len++;
        }
        size_t restored = 9;
        uint64_t next = 0;
        assert_int_equal(load(&b, &c, SIZE_MAX, &next, &restored), 0);
        assert_int_equal(restored, 0);
        assert_int_equal(next, 1);
        cap_free(&c);
        /* A group whose name extends this one with '/' ("g/eu/…"): not
         * held either (its chunks never met a manifest of ours, and piled
         * up while reading). */
        struct veil_checkpoint_reader *rd;
        assert_int_equal(veil_checkpoint_reader_new(&rd, "g", a.p), 0);
        for (uint64_t seq = 1; seq <= 3; seq++) {
                save(&a, &c, seq);
                for (size_t i = 0; i < c.n; i++) {
                        char *k = malloc(c.r[i].key_len + 3);
                        memcpy(k, "g/eu", 4);
                        memcpy(k + 4, c.r[i].key + 1, c.r[i].key_len - 1);
                        veil_checkpoint_reader_add(rd, k,
                                                   c.r[i].key_len + 3,
                                                   c.r[i].value,
                                                   c.r[i].value_len);
                        free(k);
                }
                cap_free(&c);
        }
        assert_int_equal(veil_checkpoint_reader_bytes(rd), 0);
        veil_checkpoint_reader_free(rd);
        /* A verified checkpoint the plugin refuses fails the restore. */
        close_pl(&b);
        open_pl(&b, 2, "");
        struct pl r;
        open_pl_refusing(&r);
        save(&a, &c, 1);
        assert_true(load(&r, &c, SIZE_MAX, &next, &restored) < 0);
        cap_free(&c);
        close_pl(&r);
        /* A group too long for the keys: the message gives its limit,
         * 511 bytes less "/0-ckpt_blob/". */
        char group[600];
        memset(group, 'g', sizeof(group));
        group[499] = '\0';
        struct veil_checkpoint_writer *w;
        assert_int_equal(veil_checkpoint_writer_new(&w), 0);
        assert_int_equal(save_group(&a, &c, group, w, NULL), -VEIL_EINVAL);
        if (!strstr(save_err, "state: stage 0 (ckpt_blob): kafka.group (499 "
                              "bytes) is too long for its checkpoint keys "
                              "('<group>/0-ckpt_blob/<chunk>'): use a "
                              "kafka.group of at most 498 bytes"))
                fail_msg("got '%s'", save_err);
        group[498] = '\0';
        assert_int_equal(save_group(&a, &c, group, w, NULL), 0);
        veil_checkpoint_writer_free(w);
        cap_free(&c);
        close_pl(&a);
        close_pl(&b);
}

/* ckpt_blob stages, one per `with` (NULL-terminated). */
static void open_blobs(struct pl *x, const char *const *with) {
        char yaml[2048];
        int o = snprintf(yaml, sizeof(yaml),
                         "kafka: {bootstrap: embedded, group: g}\n"
                         "input: {topic: in, schema: "
                         "../../schemas/interaction.avsc}\n"
                         "outputs: {dead_letter: {topic: dlq}}\n"
                         "plugins:\n");
        for (; *with; with++)
                o += snprintf(yaml + o, sizeof(yaml) - (size_t)o,
                              "  - use: %s/test_ckpt_blob.so\n"
                              "    with: {%s}\n",
                              TEST_PLUGIN_DIR, *with);
        open_yaml(x, yaml);
}

static void run_empty_batch(struct pl *x) {
        char err[512];
        veil_pipeline_batch_begin(x->p);
        if (veil_pipeline_batch_run(x->p, err, sizeof(err)))
                fail_msg("%s", err);
}

/* Gauge `name` of stage i, or -1 when the stage has none of that name. */
static double gauge(struct pl *x, size_t i, const char *name) {
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(x->p, i); j++) {
                double v;
                if (!strcmp(veil_pipeline_stage_gauge(x->p, i, j, &v), name))
                        return v;
        }
        return -1;
}

/* A reload hands each stage's state to its successor, and the gauges that
 * describe it go along: /metrics keeps them from the reload on, where they
 * were missing until the new stage's first batch (which waits for the side
 * inputs to be read again). The new stage's own values replace them; a
 * stage with no predecessor has none until it sets its own. */
static void test_transfer_gauges(void **st) {
        (void)st;
        struct pl a, b;
        open_blobs(&a, (const char *const[]){"size: 100", "size: 50", NULL});
        open_blobs(&b, (const char *const[]){"size: 10, keep: 30",
                                              "size: 20", "size: 7", NULL});
        run_empty_batch(&a);
        assert_true(gauge(&a, 0, "state_bytes") == 100);
        struct veil_metrics *m;
        struct veil_observe *o;
        assert_int_equal(veil_metrics_new(&m), 0);
        assert_int_equal(veil_observe_new(&o, m), 0);
        veil_observe_pipeline(o, a.p);
        char err[512];
        assert_int_equal(veil_pipeline_transfer(b.p, a.p, err, sizeof(err)),
                         0);
        assert_true(gauge(&b, 0, "state_bytes") == 100);
        assert_true(gauge(&b, 1, "state_bytes") == 50);
        assert_true(gauge(&b, 2, "state_bytes") == -1);
        /* What the publisher shows right after the reload. */
        veil_observe_reset(o);
        veil_observe_pipeline(o, b.p);
        double v;
        assert_int_equal(veil_metrics_get(m, "veil_plugin_ckpt_blob_state_bytes",
                                          "stage=\"ckpt_blob\"", &v),
                         0);
        assert_true(v == 100);
        assert_int_equal(veil_metrics_get(m, "veil_plugin_ckpt_blob_state_bytes",
                                          "stage=\"ckpt_blob#2\"", &v),
                         0);
        assert_true(v == 50);
        assert_int_equal(veil_metrics_get(m, "veil_plugin_ckpt_blob_state_bytes",
                                          "stage=\"ckpt_blob#3\"", &v),
                         -VEIL_ENOENT);
        /* The new stages' first batch: their own values (stage 0 kept 30
         * of the 100 bytes), one gauge each. */
        run_empty_batch(&b);
        assert_true(gauge(&b, 0, "state_bytes") == 30);
        assert_true(gauge(&b, 2, "state_bytes") == 7);
        assert_int_equal(veil_pipeline_stage_n_gauges(b.p, 0), 1);
        veil_observe_pipeline(o, b.p);
        assert_int_equal(veil_metrics_get(m, "veil_plugin_ckpt_blob_state_bytes",
                                          "stage=\"ckpt_blob\"", &v),
                         0);
        assert_true(v == 30);
        veil_observe_destroy(o);
        veil_metrics_destroy(m);
        close_pl(&a);
        close_pl(&b);
}

static void test_config(void **st) {
        (void)st;
        struct {
                const char *yaml, *err;
        } cases[] = {
                {"state: {interval_ms: 5000}\n", ":9:8: state: missing key 'topic'"},
                {"state: {topic: st, every: 1}\n", ":9:20: state: unknown key 'every'"},
                {"state: {topic: 'a b'}\n", ":9:16: state: topic must be"},
                {"state: {topic: st, interval_ms: 10}\n",
                 ":9:33: state: interval_ms must be an integer from 1000"},
                /* Caught by the configuration itself. */
                {"state: [st]\n", ":9:8: state must be a mapping"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                char yaml[1024], err[512] = "";
                snprintf(yaml, sizeof(yaml),
                         "kafka: {bootstrap: embedded, group: g}\n"
                         "input: {topic: in, schema: x.avsc}\n"
                         "outputs: {dead_letter: {topic: dlq}}\n"
                         "plugins:\n"
                         "  - use: passthrough\n"
                         "\n\n\n%s",
                         cases[i].yaml);
                struct veil_config *cfg;
                int rc = veil_config_parse(&cfg, "/p.yaml", yaml,
                                           strlen(yaml), err, sizeof(err));
                struct veil_checkpoint_config cc;
                if (!rc) {
                        rc = veil_checkpoint_config_parse(cfg, &cc, err,
                                                          sizeof(err));
                        veil_config_destroy(cfg);
                }
                assert_int_equal(rc, -VEIL_EINVAL);
                if (!strstr(err, cases[i].err))
                        fail_msg("case %zu: got '%s', want '%s'", i, err,
                                 cases[i].err);
        }
        struct veil_config *cfg;
        char err[512];
        const char *ok = "kafka: {bootstrap: embedded, group: g}\n"
                         "input: {topic: in, schema: x.avsc}\n"
                         "outputs: {dead_letter: {topic: dlq}}\n"
                         "plugins: [{use: passthrough}]\n"
                         "state: {topic: veil-state}\n";
        assert_int_equal(veil_config_parse(&cfg, "/p.yaml", ok, strlen(ok),
                                           err, sizeof(err)),
                         0);
        struct veil_checkpoint_config cc;
        assert_int_equal(veil_checkpoint_config_parse(cfg, &cc, err,
                                                      sizeof(err)),
                         0);
        assert_int_equal(cc.enabled, 1);
        assert_string_equal(cc.topic, "veil-state");
        assert_int_equal(cc.interval_ms, 60000);
        veil_config_destroy(cfg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_partial_and_corrupt),
                cmocka_unit_test(test_older_complete),
                cmocka_unit_test(test_same_seq),
                cmocka_unit_test(test_seq_out_of_range),
                cmocka_unit_test(test_bounded_while_reading),
                cmocka_unit_test(test_strays_bounded),
                cmocka_unit_test(test_compacted_crash),
                cmocka_unit_test(test_seq_floor),
                cmocka_unit_test(test_key_sets_per_stage),
                cmocka_unit_test(test_key_sets_failed_and_aborted),
                cmocka_unit_test(test_shrunk_chunks_deleted),
                cmocka_unit_test(test_removed_stage_deleted),
                cmocka_unit_test(test_reload_retarget),
                cmocka_unit_test(test_tombstones_read),
                cmocka_unit_test(test_stray_stage_names),
                cmocka_unit_test(test_other_format),
                cmocka_unit_test(test_foreign_and_refused),
                cmocka_unit_test(test_transfer_gauges),
                cmocka_unit_test(test_config),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

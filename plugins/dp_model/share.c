#include "share.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Bytes of values and item ids per record: 256 KiB, well below Kafka's
 * default 1 MB message size. Counted with the ids, since a chunk sized by
 * its values alone (65,536 biases) also held 65,536 ids: a catalog of 50k
 * items with 20-byte ids, or a few thousand of 450 bytes, made a record
 * too large for the topic at every release. */
#define CHUNK_BYTES (256 << 10)
#define CHUNK_VALUES (CHUNK_BYTES / 4)
/* The encoded size of a spent_by entry, at most: the id's length (a
 * varint of 2 bytes up to 8,191) and the id (at most
 * VEIL_SHARE_INSTANCE_MAX), the lineage (a varint of 5 bytes up to 2^32),
 * ρ (8). Every sender kept fits in spent_by beside at least 64 KiB of
 * values, within CHUNK_BYTES (emit counts them in it). */
#define SPENT_ENTRY_MAX (2 + VEIL_SHARE_INSTANCE_MAX + 5 + 8)
_Static_assert((size_t)VEIL_SHARE_SENDERS_MAX * SPENT_ENTRY_MAX + 16 <=
                       CHUNK_BYTES - (64 << 10),
               "spent_by must leave room for values in a chunk");
/* Slots of the index of senders: a power of two, twice as many as kept,
 * so that a probe always ends at an empty one. */
#define INDEX_SLOTS (2 * VEIL_SHARE_SENDERS_MAX)
_Static_assert((INDEX_SLOTS & (INDEX_SLOTS - 1)) == 0,
               "INDEX_SLOTS is a power of two");
/* The largest magnitude of a value an update may carry (see parse). */
#define VALUE_MAX 0x1p100f

enum block { B_BIAS, B_VEC, B_IN, B_FEAT, N_BLOCKS };
static const char *const block_name[N_BLOCKS] = {"item_bias", "item_vectors",
                                                 "item_inputs", "features"};

/* A sender: an instance and the lineage of its accountant file
 * (accountant.h). Spends of one sender are cumulative, so the largest
 * seen counts; spends of different senders add up. */
struct peer {
        char *inst;
        uint32_t lin;
        int64_t seq;
        int32_t chunk;
        double rho; /**< the largest ρ its releases carried */
};

/* One chunk read from the topic, copied. */
struct kept {
        struct kept *next;
        char *inst;
        uint32_t lin;
        int64_t seq;
        int32_t chunk, chunks;
        enum block block;
        char **ids;
        size_t rows, width, first_row;
        float *vals;
        size_t bytes;
};

struct veil_share {
        char *self;
        uint32_t lin;     /* own lineage: its accountant file's */
        int64_t seq;      /* own: the last release's, or above */
        double own_rho;   /* the largest ρ seen for (self, lin) */
        double draws;     /* the largest draws_per_rho a counted record
                           * carried (veil_share_draws_per_rho) */
        int live;
        /* A sender could not be kept (memory, or VEIL_SHARE_SENDERS_MAX
         * were): ρ unknown. The tables keep it, so that a restart, which
         * may no longer see that sender, still counts it. */
        int lost;
        uint64_t changes; /* a sender's ρ rose (veil_share_changes) */
        size_t keep_cap, kept_bytes;
        struct kept *head, *tail;
        struct peer *peers;
        size_t n_peers, peers_cap;
        /* peers by (instance, lineage): an index into peers, -1 empty.
         * Keyed, so that records cannot pick ids that all collide. */
        int32_t *index;
        unsigned char index_key[crypto_shorthash_KEYBYTES];
        float *snap[N_BLOCKS];
        size_t snap_cap[N_BLOCKS]; /* floats allocated */
        size_t snap_items;
        int snap_bias_only;
        float *tmp;
        struct veil_share_stats st;
};

int veil_share_new(struct veil_share **out, const char *instance,
                   uint32_t lineage, size_t keep_bytes) {
        struct veil_share *sh = calloc(1, sizeof(*sh));
        if (!sh)
                return -VEIL_ENOMEM;
        sh->self = strdup(instance);
        sh->lin = lineage;
        sh->tmp = malloc(CHUNK_VALUES * sizeof(float));
        sh->keep_cap = keep_bytes;
        sh->index = malloc(INDEX_SLOTS * sizeof(*sh->index));
        if (sh->index) {
                for (size_t j = 0; j < INDEX_SLOTS; j++)
                        sh->index[j] = -1;
        }
        if (sodium_init() < 0) {
                veil_share_free(sh);
                return -VEIL_EIO;
        }
        randombytes_buf(sh->index_key, sizeof(sh->index_key));
        if (!sh->self || !sh->tmp || !sh->index) {
                veil_share_free(sh);
                return -VEIL_ENOMEM;
        }
        *out = sh;
        return 0;
}

static void kept_free(struct kept *k) {
        if (!k)
                return;
        for (size_t i = 0; k->ids && i < k->rows; i++)
                free(k->ids[i]);
        free(k->ids);
        free(k->inst);
        free(k->vals);
        free(k);
}

void veil_share_free(struct veil_share *sh) {
        if (!sh)
                return;
        while (sh->head) {
                struct kept *k = sh->head;
                sh->head = k->next;
                kept_free(k);
        }
        for (size_t i = 0; i < sh->n_peers; i++)
                free(sh->peers[i].inst);
        free(sh->peers);
        free(sh->index);
        for (int b = 0; b < N_BLOCKS; b++)
                free(sh->snap[b]);
        free(sh->tmp);
        free(sh->self);
        free(sh);
}

/* The block's rows in the model: a pointer and the row count now. */
static float *block_of(const struct veil_model *m, enum block b, size_t *rows,
                       size_t *width) {
        size_t items = veil_model_items(m);
        switch (b) {
        case B_BIAS: *rows = items; *width = 1; return m->b;
        case B_VEC: *rows = items; *width = m->d; return m->V;
        case B_IN: *rows = items; *width = m->d; return m->U;
        default: *rows = m->space; *width = m->d; return m->E;
        }
}

int veil_share_snapshot(struct veil_share *sh, const struct veil_model *m,
                        int bias_only) {
        for (int b = 0; b < N_BLOCKS; b++) {
                if (bias_only && b != B_BIAS)
                        continue;
                size_t rows, w;
                const float *x = block_of(m, (enum block)b, &rows, &w);
                size_t n = rows * w;
                if (n > sh->snap_cap[b]) {
                        float *p = realloc(sh->snap[b],
                                           (n ? n : 1) * sizeof(float));
                        if (!p)
                                return -VEIL_ENOMEM;
                        sh->snap[b] = p;
                        sh->snap_cap[b] = n;
                }
                memcpy(sh->snap[b], x, n * sizeof(float));
        }
        sh->snap_items = veil_model_items(m);
        sh->snap_bias_only = bias_only;
        return 0;
}

/* Float32 little-endian in and out, whatever the host's byte order. */
static void put_f32(unsigned char *p, float f) {
        uint32_t v;
        memcpy(&v, &f, 4);
        for (int i = 0; i < 4; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static float get_f32(const unsigned char *p) {
        uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        float f;
        memcpy(&f, &v, 4);
        return f;
}

/* Rows from r0 in one chunk: at least one, then as many as fit in budget
 * with their ids (each also takes a length prefix). */
static size_t chunk_rows(const struct veil_model *m, int b, size_t r0,
                         size_t rows, size_t w, size_t budget) {
        size_t n = 0, bytes = 0;
        while (r0 + n < rows) {
                size_t row = 4 * w;
                if (b != B_FEAT)
                        row += strlen(m->cat->id[r0 + n]) + 3;
                if (n && bytes + row > budget)
                        break;
                bytes += row;
                n++;
        }
        return n;
}

static int is_own_lineage(const struct veil_share *sh, const struct peer *p) {
        return p->lin == sh->lin && !strcmp(p->inst, sh->self);
}

/* The bytes put_spent adds to a record, at most (SPENT_ENTRY_MAX each,
 * the array's block count and end): a chunk's values and ids take
 * CHUNK_BYTES less these. Counted apart, 512 senders' 138 KB went on top
 * of 256 KiB of values (and ~3,800, before senders were bounded, made
 * every chunk ~1.2 MB: too large for the topic, at every release). */
static size_t spent_bytes(const struct veil_share *sh) {
        size_t n = 16;
        for (size_t i = 0; i < sh->n_peers; i++)
                n += 2 + strlen(sh->peers[i].inst) + 5 + 8;
        return n;
}

/* Every other sender this instance counts, in every chunk (any chunk may
 * be the only one a reader gets): a reader that never saw a sender's
 * records (gone by retention, or before it joined) still counts the
 * releases that the updates it applies were computed from. The entry for
 * (self, lineage) is in the record's own rho. */
static int put_spent(const struct veil_share *sh, veil_rec_t *r) {
        int rc = 0;
        for (size_t i = 0; i < sh->n_peers && !rc; i++) {
                const struct peer *p = &sh->peers[i];
                if (!(p->rho > 0) || is_own_lineage(sh, p))
                        continue;
                veil_rec_t *e = veil_rec_append(r, "spent_by");
                if (!e)
                        return -VEIL_EINVAL;
                rc |= veil_rec_set_str(e, "instance", p->inst);
                rc |= veil_rec_set_long(e, "lineage", p->lin);
                rc |= veil_rec_set_double(e, "rho", p->rho);
        }
        return rc;
}

int veil_share_emit(struct veil_share *sh, veil_stage_t *st,
                    const char *output, const struct veil_model *m,
                    const struct veil_share_meta *meta) {
        if (!veil_out_bound(st, output))
                return 0;
        int64_t seq = ++sh->seq;
        if (meta->steps > (uint64_t)seq && meta->steps < INT64_MAX / 2)
                sh->seq = seq = (int64_t)meta->steps;
        /* Peers' ids are at most VEIL_SHARE_INSTANCE_MAX bytes (the
         * tables refuse longer ones) and at most VEIL_SHARE_SENDERS_MAX
         * are kept: at least 64 KiB are left (the static assertion). */
        size_t spent = spent_bytes(sh);
        size_t budget = spent < CHUNK_BYTES - (64 << 10) ? CHUNK_BYTES - spent
                                                         : 64 << 10;
        size_t total = 0;
        for (int b = 0; b < N_BLOCKS; b++) {
                if (sh->snap_bias_only && b != B_BIAS)
                        continue;
                size_t rows, w;
                block_of(m, (enum block)b, &rows, &w);
                if (b != B_FEAT)
                        rows = sh->snap_items;
                for (size_t r0 = 0, n; r0 < rows; r0 += n, total++)
                        n = chunk_rows(m, b, r0, rows, w, budget);
        }
        int32_t chunk = 0;
        unsigned char *bytes = (unsigned char *)sh->tmp;
        for (int b = 0; b < N_BLOCKS; b++) {
                if (sh->snap_bias_only && b != B_BIAS)
                        continue;
                size_t rows, w;
                const float *x = block_of(m, (enum block)b, &rows, &w);
                if (b != B_FEAT)
                        rows = sh->snap_items;
                for (size_t r0 = 0, n; r0 < rows; r0 += n, chunk++) {
                        n = chunk_rows(m, b, r0, rows, w, budget);
                        veil_rec_t *r = veil_out_begin(st, output);
                        if (!r)
                                return -VEIL_EINVAL;
                        for (size_t i = 0; i < n * w; i++)
                                put_f32(bytes + 4 * i,
                                        x[r0 * w + i] -
                                                sh->snap[b][r0 * w + i]);
                        int rc = veil_rec_set_str(r, "instance", sh->self);
                        rc |= veil_rec_set_long(r, "seq", seq);
                        rc |= veil_rec_set_long(r, "chunk", chunk);
                        rc |= veil_rec_set_long(r, "chunks", (int64_t)total);
                        rc |= veil_rec_set_str(r, "block", block_name[b]);
                        for (size_t i = 0; b != B_FEAT && i < n && !rc; i++)
                                rc |= veil_rec_set_str(
                                        veil_rec_append(r, "item_ids"), "",
                                        m->cat->id[r0 + i]);
                        rc |= veil_rec_set_long(r, "first_row",
                                                b == B_FEAT ? (int64_t)r0 : 0);
                        rc |= veil_rec_set_long(r, "rows", (int64_t)n);
                        rc |= veil_rec_set_long(r, "width", (int64_t)w);
                        rc |= veil_rec_set_bytes(r, "values", bytes,
                                                 n * w * 4);
                        rc |= veil_rec_set_long(r, "model_version",
                                                (int64_t)m->steps);
                        rc |= veil_rec_set_double(r, "epsilon_spent",
                                                  meta->epsilon);
                        rc |= veil_rec_set_double(r, "delta", meta->delta);
                        rc |= veil_rec_set_double(r, "rho", meta->rho);
                        rc |= veil_rec_set_str(r, "mechanism",
                                               meta->mechanism);
                        rc |= veil_rec_set_double(r, "clip_norm", meta->clip);
                        rc |= veil_rec_set_double(r, "noise_multiplier",
                                                  meta->sigma);
                        rc |= veil_rec_set_long(r, "ts", meta->ts_ms);
                        rc |= veil_rec_set_long(r, "lineage", sh->lin);
                        rc |= veil_rec_set_double(r, "draws_per_rho",
                                                  meta->draws_per_rho);
                        rc |= put_spent(sh, r);
                        if (rc)
                                return -VEIL_EINVAL;
                        if ((rc = veil_out_emit(st, output, sh->self,
                                                strlen(sh->self))) < 0)
                                return rc;
                }
        }
        sh->st.sent_releases++;
        sh->st.sent_chunks += (uint64_t)chunk;
        sh->st.seq = (uint64_t)seq;
        return chunk;
}

/* The first slot of (inst, lin) in the index: SipHash of the id (its
 * first VEIL_SHARE_INSTANCE_MAX bytes; peers' ids are no longer) and the
 * lineage, under this instance's random key. */
static size_t slot_of(const struct veil_share *sh, const char *inst,
                      uint32_t lin) {
        unsigned char in[VEIL_SHARE_INSTANCE_MAX + 4], h[8];
        size_t l = strlen(inst);
        if (l > VEIL_SHARE_INSTANCE_MAX)
                l = VEIL_SHARE_INSTANCE_MAX;
        memcpy(in, inst, l);
        for (int i = 0; i < 4; i++)
                in[l + i] = (unsigned char)(lin >> (8 * i));
        crypto_shorthash(h, in, l + 4, sh->index_key);
        return ((size_t)h[0] | (size_t)h[1] << 8) & (INDEX_SLOTS - 1);
}

/* The sender (inst, lin), NULL when not seen: never allocates. */
static struct peer *find(const struct veil_share *sh, const char *inst,
                         uint32_t lin) {
        for (size_t j = slot_of(sh, inst, lin);; j = (j + 1) & (INDEX_SLOTS - 1)) {
                int32_t i = sh->index[j];
                if (i < 0)
                        return NULL;
                if (sh->peers[i].lin == lin && !strcmp(sh->peers[i].inst, inst))
                        return &sh->peers[i];
        }
}

/* A sender that cannot be kept cannot be counted: every later ε is
 * infinite (veil_share_others_rho), never one without it. A change, so
 * that the .others file is written with it. */
static void lose(struct veil_share *sh) {
        if (!sh->lost) {
                sh->lost = 1;
                sh->changes++;
        }
}

/* The sender (inst, lin), added when not seen; NULL (and lost) when it
 * cannot be: out of memory, or VEIL_SHARE_SENDERS_MAX kept already. */
static struct peer *peer(struct veil_share *sh, const char *inst,
                         uint32_t lin) {
        struct peer *p = find(sh, inst, lin);
        if (p)
                return p;
        if (sh->n_peers >= VEIL_SHARE_SENDERS_MAX) {
                sh->st.senders_full = 1;
                lose(sh);
                return NULL;
        }
        if (sh->n_peers == sh->peers_cap) {
                size_t cap = sh->peers_cap ? 2 * sh->peers_cap : 8;
                if (cap > VEIL_SHARE_SENDERS_MAX)
                        cap = VEIL_SHARE_SENDERS_MAX;
                p = realloc(sh->peers, cap * sizeof(*p));
                if (!p) {
                        lose(sh);
                        return NULL;
                }
                sh->peers = p;
                sh->peers_cap = cap;
        }
        p = &sh->peers[sh->n_peers];
        if (!(p->inst = strdup(inst))) {
                lose(sh);
                return NULL;
        }
        p->lin = lin;
        p->seq = -1;
        p->chunk = -1;
        p->rho = 0;
        size_t j = slot_of(sh, inst, lin);
        while (sh->index[j] >= 0)
                j = (j + 1) & (INDEX_SLOTS - 1);
        sh->index[j] = (int32_t)sh->n_peers;
        sh->n_peers++;
        return p;
}

/* What a record that named a sender not kept is refused with. */
static int not_kept(const struct veil_share *sh, char *errstr,
                    size_t errstr_size) {
        if (sh->n_peers >= VEIL_SHARE_SENDERS_MAX)
                snprintf(errstr, errstr_size,
                         "model update: a sender (instance, lineage) past "
                         "the %d this instance keeps; not applied, and "
                         "epsilon is infinite from now on",
                         VEIL_SHARE_SENDERS_MAX);
        else
                snprintf(errstr, errstr_size,
                         "model update: out of memory counting a sender; "
                         "not applied, and epsilon is infinite from now "
                         "on");
        return -VEIL_ENOMEM;
}

/* A sender's ρ: the largest seen. */
static void raise_rho(struct veil_share *sh, struct peer *p, double rho) {
        if (rho > p->rho) {
                p->rho = rho;
                sh->changes++;
        }
}

double veil_share_draws_per_rho(const struct veil_share *sh) {
        return sh->draws;
}

uint64_t veil_share_changes(const struct veil_share *sh) {
        return sh->changes;
}

static int bad(char *errstr, size_t errstr_size, const char *what) {
        snprintf(errstr, errstr_size, "model update: %s", what);
        return -VEIL_EINVAL;
}

/* The lineage of a record or of a spent_by entry: 0 when absent (a veil
 * before lineages), -1 when out of range. */
static int64_t lineage_of(const veil_rec_t *r) {
        int64_t lin = 0;
        veil_rec_get_long(r, "lineage", &lin);
        return lin >= 0 && lin <= UINT32_MAX ? lin : -1;
}

/* A ρ read from a record: an unknown cost is not a small one. */
static double rho_of(const veil_rec_t *r) {
        double rho;
        if (veil_rec_get_double(r, "rho", &rho) || !(rho >= 0))
                return INFINITY;
        return rho;
}

/* The record's draws_per_rho: 0 when absent (a veil before it, whose
 * releases count at this instance's own rate), -1 when it is not a finite
 * number ≥ 0 (the record is refused). */
static double draws_of(const veil_rec_t *r) {
        double d;
        if (veil_rec_get_double(r, "draws_per_rho", &d))
                return 0;
        return isfinite(d) && d >= 0 ? d : -1;
}

/* The sender's spent_by, checked whole before anything counts. */
static int check_spent(const veil_rec_t *r, char *errstr,
                       size_t errstr_size) {
        size_t n = veil_rec_array_size(r, "spent_by");
        if (n > VEIL_SHARE_SENDERS_MAX) {
                snprintf(errstr, errstr_size,
                         "model update: spent_by lists %zu senders, more "
                         "than the %d an instance keeps",
                         n, VEIL_SHARE_SENDERS_MAX);
                return -VEIL_EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
                const veil_rec_t *e = veil_rec_array_at(r, "spent_by", i);
                const char *inst;
                size_t l;
                if (!e || veil_rec_get_str(e, "instance", &inst, &l) ||
                    l == 0 || l > VEIL_SHARE_INSTANCE_MAX ||
                    memchr(inst, 0, l) || lineage_of(e) < 0)
                        return bad(errstr, errstr_size,
                                   "a spent_by entry has an instance id "
                                   "that is empty or longer than 255 "
                                   "bytes, or a lineage outside 0 to "
                                   "2^32-1");
        }
        return 0;
}

/* Counts a sender's ρ: the largest seen of each. (self, own lineage) is
 * this instance's accountant's to count; what is seen for it is kept
 * apart (veil_share_own_unaccounted). */
static int count(struct veil_share *sh, const char *inst, uint32_t lin,
                 double rho) {
        if (lin == sh->lin && !strcmp(inst, sh->self)) {
                if (rho > sh->own_rho)
                        sh->own_rho = rho;
                return 0;
        }
        struct peer *p = peer(sh, inst, lin);
        if (!p)
                return -VEIL_ENOMEM;
        raise_rho(sh, p, rho);
        return 0;
}

static int count_spent(struct veil_share *sh, const veil_rec_t *r) {
        size_t n = veil_rec_array_size(r, "spent_by");
        for (size_t i = 0; i < n; i++) {
                const veil_rec_t *e = veil_rec_array_at(r, "spent_by", i);
                const char *inst;
                size_t l;
                veil_rec_get_str(e, "instance", &inst, &l);
                int rc = count(sh, inst, (uint32_t)lineage_of(e), rho_of(e));
                if (rc)
                        return rc;
        }
        return 0;
}

/* What a record counts, as sender (inst, lin): its ρ, the senders its
 * spent_by lists, and its rate, which raises the one the sum is counted
 * at. */
static int count_record(struct veil_share *sh, const char *inst,
                        uint32_t lin, const veil_rec_t *r) {
        double d = draws_of(r);
        if (d > sh->draws)
                sh->draws = d;
        int rc = count(sh, inst, lin, rho_of(r));
        return rc ? rc : count_spent(sh, r);
}

/* The record, checked and copied. */
static int parse(const struct veil_model *m, const veil_rec_t *r,
                 struct kept **out, char *errstr, size_t errstr_size) {
        const char *inst, *blk;
        int64_t seq, chunk, chunks, rows, width, first = 0;
        const void *vals;
        size_t n_inst, n_blk, n_vals;
        *out = NULL;
        if (veil_rec_get_str(r, "instance", &inst, &n_inst) ||
            veil_rec_get_long(r, "seq", &seq) ||
            veil_rec_get_long(r, "chunk", &chunk) ||
            veil_rec_get_long(r, "chunks", &chunks) ||
            veil_rec_get_str(r, "block", &blk, &n_blk) ||
            veil_rec_get_long(r, "rows", &rows) ||
            veil_rec_get_long(r, "width", &width) ||
            veil_rec_get_bytes(r, "values", &vals, &n_vals))
                return bad(errstr, errstr_size, "a required field is missing");
        veil_rec_get_long(r, "first_row", &first);
        int b = 0;
        while (b < N_BLOCKS && strcmp(blk, block_name[b]))
                b++;
        if (b == N_BLOCKS)
                return bad(errstr, errstr_size, "unknown block");
        size_t want_w = b == B_BIAS ? 1 : m->d;
        if (width != (int64_t)want_w)
                return bad(errstr, errstr_size,
                           "width differs from this model's (dim must be "
                           "the same in every instance)");
        if (rows < 0 || seq < 0 || chunk < 0 || chunk >= chunks ||
            (uint64_t)rows * want_w * 4 != n_vals)
                return bad(errstr, errstr_size,
                           "rows, chunk or values are inconsistent");
        /* The instance id was checked by veil_share_on_record. */
        if (lineage_of(r) < 0)
                return bad(errstr, errstr_size,
                           "the lineage is outside 0 to 2^32-1");
        size_t n_ids = veil_rec_array_size(r, "item_ids");
        if (b == B_FEAT ? (first < 0 || (uint64_t)(first + rows) > m->space ||
                           n_ids)
                        : n_ids != (size_t)rows)
                return bad(errstr, errstr_size,
                           "rows do not match item_ids or feature_space");
        struct kept *k = calloc(1, sizeof(*k));
        if (!k)
                return -VEIL_ENOMEM;
        k->inst = strdup(inst);
        k->lin = (uint32_t)lineage_of(r);
        k->seq = seq;
        k->chunk = (int32_t)chunk;
        k->chunks = (int32_t)chunks;
        k->block = (enum block)b;
        k->rows = (size_t)rows;
        k->width = want_w;
        k->first_row = (size_t)first;
        k->vals = malloc(n_vals ? n_vals : 1);
        k->bytes = n_vals + sizeof(*k);
        if (n_ids)
                k->ids = calloc(n_ids, sizeof(char *));
        if (!k->inst || !k->vals || (n_ids && !k->ids)) {
                kept_free(k);
                return -VEIL_ENOMEM;
        }
        for (size_t i = 0; i < (size_t)rows * want_w; i++) {
                k->vals[i] = get_f32((const unsigned char *)vals + 4 * i);
                if (!(fabsf(k->vals[i]) < VALUE_MAX)) {
                        /* One NaN would spread through every score and
                         * every later checkpoint, and so would a sum of
                         * finite values that overflows: below 2^100, that
                         * takes 2^28 updates of a parameter at the bound,
                         * far beyond any release (σ·C·dp_learning_rate is
                         * at most 10^18). */
                        kept_free(k);
                        return bad(errstr, errstr_size,
                                   "a value is not a finite number below "
                                   "2^100 in magnitude");
                }
        }
        for (size_t i = 0; i < n_ids; i++) {
                const char *id;
                size_t l;
                if (veil_rec_get_str(veil_rec_array_at(r, "item_ids", i), "",
                                     &id, &l) ||
                    l == 0 || l > VEIL_ID_MAX || memchr(id, 0, l) ||
                    !(k->ids[i] = strdup(id))) {
                        /* Ids as the host allows them in events: a longer
                         * one, recommended to everyone, would make every
                         * recommendation record too large. */
                        kept_free(k);
                        return bad(errstr, errstr_size,
                                   "bad item_ids (each 1 to 512 bytes)");
                }
                k->bytes += l + 1;
        }
        *out = k;
        return 0;
}

/* Applies a chunk unless its sender's table has it already; 1 when it
 * was the last of its release. */
static int apply(struct veil_share *sh, struct veil_model *m,
                 const struct kept *k) {
        struct peer *p = peer(sh, k->inst, k->lin);
        if (!p) /* out of memory: like a replay, it is skipped */
                return 0;
        if (k->seq < p->seq || (k->seq == p->seq && k->chunk <= p->chunk)) {
                sh->st.skipped_chunks++;
                return 0;
        }
        size_t rows, w;
        float *x = block_of(m, k->block, &rows, &w);
        for (size_t i = 0; i < k->rows; i++) {
                size_t row = k->first_row + i;
                if (k->ids) {
                        int32_t j = veil_model_item(m, k->ids[i], 1);
                        if (j < 0)
                                continue; /* the catalog is full */
                        row = (size_t)j;
                }
                for (size_t c = 0; c < w; c++)
                        x[row * w + c] += k->vals[i * w + c];
        }
        p->seq = k->seq;
        p->chunk = k->chunk;
        sh->st.applied_chunks++;
        if (k->chunk != k->chunks - 1)
                return 0;
        m->steps++;
        return 1;
}

int veil_share_on_record(struct veil_share *sh, struct veil_model *m,
                         const veil_rec_t *r, char *errstr,
                         size_t errstr_size) {
        const char *inst;
        size_t n;
        int64_t seq;
        int rc = check_spent(r, errstr, errstr_size);
        if (rc)
                return rc;
        if (draws_of(r) < 0)
                return bad(errstr, errstr_size,
                           "draws_per_rho is not a finite number >= 0");
        /* Checked before it is compared with this instance's: "self\0x"
         * compared equal (strcmp stops at the NUL) and was taken as this
         * instance's own record, and "peer\0x" was kept as "peer" (strdup),
         * another sender's positions. */
        int has_inst = !veil_rec_get_str(r, "instance", &inst, &n);
        if (has_inst &&
            (n == 0 || n > VEIL_SHARE_INSTANCE_MAX || memchr(inst, 0, n)))
                return bad(errstr, errstr_size,
                           "the instance id is empty, longer than 255 "
                           "bytes, or holds a NUL byte");
        if (has_inst && !strcmp(inst, sh->self)) {
                /* Our own, from before a restart: its seq, and its ρ (a
                 * lower bound of what its lineage has spent), and what it
                 * counted of the others. Another lineage's are releases of
                 * an earlier accountant file: another sender's. */
                int64_t lin = lineage_of(r);
                int has_seq = !veil_rec_get_long(r, "seq", &seq);
                if (lin == sh->lin && has_seq && seq > sh->seq && sh->live) {
                        /* Live, this process has read everything on the
                         * topic from before its start, and numbers each
                         * release above all it read and released: what it
                         * made comes back at or below sh->seq. This record
                         * another process made, under the same instance
                         * id with a copy of the same accountant file (a
                         * copied volume). Its seq would have become this
                         * one's (their numbers then leapfrog, and a third
                         * instance, counting one sender, took the larger
                         * of the two spends while applying the releases of
                         * both): its ρ counts apart, added. Not applied,
                         * as this instance's own are not. */
                        if (!sh->st.clone_chunks++)
                                sh->st.clone_seq = (uint64_t)seq;
                        if (count_record(sh, inst, VEIL_SHARE_CLONE_LINEAGE,
                                         r))
                                return not_kept(sh, errstr, errstr_size);
                        return 0;
                }
                if (lin == sh->lin && has_seq && seq > sh->seq &&
                    seq < INT64_MAX / 2) /* ++seq must not overflow */
                        sh->seq = seq;
                if (lin < 0)
                        return bad(errstr, errstr_size,
                                   "the lineage is outside 0 to 2^32-1");
                if (count_record(sh, inst, (uint32_t)lin, r))
                        return not_kept(sh, errstr, errstr_size);
                return 0;
        }
        struct kept *k;
        rc = parse(m, r, &k, errstr, errstr_size);
        if (rc)
                return rc;
        /* The senders' spend counts whether or not the chunk is applied
         * (a restart reads chunks applied before it again). */
        if (count_record(sh, k->inst, k->lin, r)) {
                kept_free(k);
                return not_kept(sh, errstr, errstr_size);
        }
        if (sh->live || sh->kept_bytes + k->bytes > sh->keep_cap) {
                if (!sh->live)
                        sh->st.kept_dropped++;
                rc = apply(sh, m, k);
                kept_free(k);
                return rc;
        }
        sh->kept_bytes += k->bytes;
        if (sh->tail)
                sh->tail->next = k;
        else
                sh->head = k;
        sh->tail = k;
        return 0;
}

size_t veil_share_go_live(struct veil_share *sh, struct veil_model *m) {
        uint64_t before = sh->st.applied_chunks;
        sh->live = 1;
        while (sh->head) {
                struct kept *k = sh->head;
                sh->head = k->next;
                apply(sh, m, k);
                kept_free(k);
        }
        sh->tail = NULL;
        sh->kept_bytes = 0;
        return (size_t)(sh->st.applied_chunks - before);
}

/* The pseudo-sender that stands for releases of this instance's lineage
 * that its accountant does not count (its file replaced by an older
 * copy) is the entry (self, own lineage), which only
 * veil_share_own_unaccounted makes. Found without allocating, so that the
 * ρ an update carries never depends on memory. */
double veil_share_own_before(const struct veil_share *sh) {
        struct peer *p = find(sh, sh->self, sh->lin);
        return p ? p->rho : 0;
}

double veil_share_own_rho(const struct veil_share *sh, double rho_acc) {
        double before = veil_share_own_before(sh);
        return before > 0 ? nextafter(rho_acc + before, INFINITY) : rho_acc;
}

double veil_share_own_unaccounted(struct veil_share *sh, double rho_acc) {
        /* What its updates carry is compared with exactly what it sends
         * (rounded up): a sum that rounds one ulp higher would otherwise
         * read as releases the accountant does not count, at every
         * restart. */
        if (!(sh->own_rho > veil_share_own_rho(sh, rho_acc)))
                return 0;
        /* The accountant is saved before every release, so this happens
         * only when its file was replaced by an older copy (a lost file
         * begins a new lineage, whose releases count apart): those
         * releases are in the topic and in the other instances' models all
         * the same. How much of them the file already counts is unknown,
         * so all of them count again. */
        struct peer *p = peer(sh, sh->self, sh->lin);
        if (!p)
                return INFINITY;
        raise_rho(sh, p, sh->own_rho);
        return sh->own_rho;
}

/* sum + rho rounded up, like the accountant's sums: at every addition,
 * since n additions rounded to nearest and one nextafter at the end fall
 * short of the exact sum by up to (n-1)/2 ulp (n - 1 terms each just
 * under half an ulp of the sum vanish). A term of 0 adds nothing. */
static double add_up(double sum, double rho) {
        return rho > 0 ? nextafter(sum + rho, INFINITY) : sum;
}

double veil_share_own_other(const struct veil_share *sh, size_t *lineages) {
        double sum = 0;
        size_t n = 0;
        for (size_t i = 0; i < sh->n_peers; i++)
                if (sh->peers[i].lin != sh->lin &&
                    sh->peers[i].lin != VEIL_SHARE_CLONE_LINEAGE &&
                    !strcmp(sh->peers[i].inst, sh->self) &&
                    sh->peers[i].rho > 0) {
                        sum = add_up(sum, sh->peers[i].rho);
                        n++;
                }
        if (lineages)
                *lineages = n;
        return sum;
}

double veil_share_others_rho(const struct veil_share *sh, size_t *senders) {
        double sum = sh->lost ? INFINITY : 0;
        size_t n = 0;
        for (size_t i = 0; i < sh->n_peers; i++) {
                sum = add_up(sum, sh->peers[i].rho);
                n += sh->peers[i].rho > 0;
        }
        if (senders)
                *senders = n;
        return sum;
}

/* Table: "VDP3", u32 entries, then per entry u16 length, the id, u32
 * lineage, i64 seq, i32 chunk, f64 ρ (bits); the last entry is the
 * writer's own and carries what its updates carry (veil_share_own_rho).
 * An instance restoring its own checkpoint skips that entry (its
 * accountant has it) unless it is of another lineage (an earlier
 * accountant file's spend); one restoring another's (a state topic shared
 * by a group: the last writer's checkpoint) counts it as that instance's
 * releases, which the restored model contains. "VDP2" tables have no
 * lineage (0); "VDPS" ones, written before ρ was kept, no ρ either: every
 * sender but the reader itself counts as of unknown (infinite) cost. */
#define ENTRY_FIXED 24
static unsigned char *put(unsigned char *p, uint64_t v, int bytes) {
        for (int i = 0; i < bytes; i++)
                *p++ = (unsigned char)(v >> (8 * i));
        return p;
}

static uint64_t get(const unsigned char *p, int bytes) {
        uint64_t v = 0;
        for (int i = 0; i < bytes; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

/* A veil before lineages counted releases of an instance that its
 * accountant file did not count as the sender "<instance> (before its
 * accountant file)", beside the instance's own entry, which held the
 * file's ρ alone: read from its tables, that sender is the instance under
 * a lineage of its own, VEIL_SHARE_LEGACY_LINEAGE, so that the two still
 * add up (taking the larger would count less than that veil did), and its
 * name, 29 bytes longer than the instance's, never goes into spent_by
 * (where a reader would refuse one over 255 bytes). Cuts id to the
 * instance's name and returns 1 when it is such a name. */
#define LEGACY_BEFORE " (before its accountant file)"
static int legacy_before(char *id, size_t l, uint32_t *lin) {
        size_t k = sizeof(LEGACY_BEFORE) - 1;
        if (l <= k || memcmp(id + l - k, LEGACY_BEFORE, k))
                return 0;
        id[l - k] = '\0';
        *lin = VEIL_SHARE_LEGACY_LINEAGE;
        return 1;
}

static unsigned char *put_rho(unsigned char *p, double rho) {
        uint64_t bits;
        memcpy(&bits, &rho, sizeof(bits));
        return put(p, bits, 8);
}

static double get_rho(const unsigned char *p) {
        uint64_t bits = get(p, 8);
        double rho;
        memcpy(&rho, &bits, sizeof(rho));
        return rho >= 0 ? rho : INFINITY; /* unknown is not small */
}

/* Whether a table's id (after legacy_before) may be a sender: what a
 * record may carry (check_spent). An empty one is how the tables say that
 * a sender was lost (put_lost); a longer one, never written by a veil
 * that bounds ids, could not go into spent_by (readers refuse it) nor fit
 * in its bytes (spent_bytes). Neither is kept: both make ε infinite. */
static int id_kept(const char *id, int nul) {
        size_t l = strlen(id);
        return !nul && l > 0 && l <= VEIL_SHARE_INSTANCE_MAX;
}

/* The entry that stands for a sender lost (veil_share_others_rho
 * infinite), first in both tables: an empty id and ρ infinite, which a
 * veil before it also reads as infinite. Without it a restart, no longer
 * seeing the sender, counted less than before it. */
static unsigned char *put_lost(unsigned char *p, int with_pos) {
        p = put(p, 0, 2);
        p = put(p, 0, 4); /* lineage */
        if (with_pos) {
                p = put(p, (uint64_t)-1, 8);
                p = put(p, (uint32_t)-1, 4);
        }
        return put_rho(p, INFINITY);
}

int veil_share_encode(const struct veil_share *sh, double rho_self,
                      void **data, size_t *len) {
        size_t n = 8 + 2 + strlen(sh->self) + ENTRY_FIXED;
        for (size_t i = 0; i < sh->n_peers; i++)
                n += 2 + strlen(sh->peers[i].inst) + ENTRY_FIXED;
        if (sh->lost)
                n += 2 + ENTRY_FIXED;
        unsigned char *buf = malloc(n), *p = buf;
        if (!buf)
                return -VEIL_ENOMEM;
        memcpy(p, "VDP3", 4);
        p = put(p + 4, sh->n_peers + 1 + (sh->lost != 0), 4);
        if (sh->lost)
                p = put_lost(p, 1);
        for (size_t i = 0; i <= sh->n_peers; i++) {
                const struct peer *pe = i < sh->n_peers ? &sh->peers[i]
                                                        : NULL;
                const char *id = pe ? pe->inst : sh->self;
                size_t l = strlen(id);
                if (l > 65535) {
                        free(buf);
                        return -VEIL_EINVAL;
                }
                p = put(p, l, 2);
                memcpy(p, id, l);
                p = put(p + l, pe ? pe->lin : sh->lin, 4);
                p = put(p, (uint64_t)(pe ? pe->seq : sh->seq), 8);
                /* The writer's model holds every chunk of its last
                 * release (applied before any is emitted). */
                p = put(p, (uint32_t)(pe ? pe->chunk : INT32_MAX), 4);
                /* The writer's: all its lineage sent (its accountant's
                 * and the releases it does not count), since that entry
                 * and the one for those releases have the same key. */
                p = put_rho(p, pe ? pe->rho : veil_share_own_rho(sh, rho_self));
        }
        *data = buf;
        *len = n;
        return 0;
}

int veil_share_decode(struct veil_share *sh, const void *data, size_t len) {
        const unsigned char *p = data, *end = p + len;
        if (len < 8 || memcmp(p, "VDP", 3) || (p[3] != 'S' && p[3] != '2' &&
                                               p[3] != '3'))
                return -VEIL_EDECODE;
        int has_lin = p[3] == '3';
        size_t fixed = p[3] == 'S' ? 12 : has_lin ? ENTRY_FIXED : 20;
        size_t n = get(p + 4, 4);
        /* Check it all before changing anything. */
        const unsigned char *q = p + 8;
        int own = 0; /* this instance wrote it: the last entry is self */
        for (size_t i = 0; i < n; i++) {
                if (end - q < 2 || (size_t)(end - q - 2) < get(q, 2) + fixed)
                        return -VEIL_EDECODE;
                own = get(q, 2) == strlen(sh->self) &&
                      !memcmp(q + 2, sh->self, get(q, 2));
                q += 2 + get(q, 2) + fixed;
        }
        if (q != end)
                return -VEIL_EDECODE;
        /* The checkpoint's (seq, chunk) replace the table's; a sender's ρ
         * read from the topic before the restore stays if larger. */
        for (size_t i = 0; i < sh->n_peers; i++) {
                sh->peers[i].seq = -1;
                sh->peers[i].chunk = -1;
        }
        q = p + 8;
        char id[65536];
        for (size_t i = 0; i < n; i++) {
                size_t l = get(q, 2);
                memcpy(id, q + 2, l);
                id[l] = '\0';
                const unsigned char *f = q + 2 + l;
                uint32_t lin = 0;
                if (has_lin) {
                        lin = (uint32_t)get(f, 4);
                        f += 4;
                }
                int64_t seq = (int64_t)get(f, 8);
                int32_t chunk = (int32_t)get(f + 8, 4);
                q += 2 + l + fixed;
                int nul = memchr(id, 0, l) != NULL;
                /* No releases of its own: its positions are not the
                 * instance's. */
                int legacy = !has_lin && legacy_before(id, l, &lin);
                if (legacy)
                        seq = -1;
                if (!id_kept(id, nul)) {
                        lose(sh);
                        continue;
                }
                /* A "VDPS" table has no ρ, but the model restored with it
                 * holds its senders' releases: their cost is unknown, not
                 * nothing (read as 0, they counted for nothing). This
                 * instance's own entry is its accountant's, restored with
                 * the same checkpoint. */
                double rho = p[3] != 'S' ? get_rho(f + 12)
                             : !legacy && !strcmp(id, sh->self) ? 0
                                                                : INFINITY;
                if (!strcmp(id, sh->self)) {
                        /* Its own numbers: this lineage's alone (another
                         * lineage's may have run ahead of this file's). */
                        if (lin == sh->lin && seq > sh->seq &&
                            seq < INT64_MAX / 2)
                                sh->seq = seq;
                        /* The writer's entry of this lineage: the
                         * accountant restored with the checkpoint has
                         * it. Another writer's count of this lineage is
                         * what this instance sent: its accountant's to
                         * cover (veil_share_own_unaccounted), not
                         * releases it does not count, as in its own
                         * table. */
                        if (lin == sh->lin && (i == n - 1 || !own)) {
                                if (i != n - 1 && rho > sh->own_rho)
                                        sh->own_rho = rho;
                                continue;
                        }
                        chunk = -1;
                } else if (i == n - 1) {
                        /* Another writer's own entry: the model restored
                         * with it holds all of its releases up to seq, the
                         * last one whole. Tables written before said chunk
                         * -1, and a restorer applied that release's chunks
                         * from the topic a second time. */
                        chunk = INT32_MAX;
                }
                struct peer *pe = peer(sh, id, lin);
                if (!pe) {
                        /* Lost: ε is infinite, and the tables this
                         * instance writes say so. */
                        if (sh->n_peers >= VEIL_SHARE_SENDERS_MAX)
                                continue;
                        return -VEIL_ENOMEM;
                }
                if (!legacy) {
                        pe->seq = seq;
                        pe->chunk = chunk;
                }
                raise_rho(sh, pe, rho);
        }
        return 0;
}

/* "VRH2", u32 count, per sender u16 length, the id, u32 lineage, f64 ρ
 * (bits), then the BLAKE2b-256 of all before it: a damaged file is
 * refused, never read as a smaller spend. "VRH1" files have no lineage
 * (0). */
#define RHO_SUM crypto_generichash_BYTES

int veil_share_rho_encode(const struct veil_share *sh, void **data,
                          size_t *len) {
        size_t n = 8 + RHO_SUM, count = 0;
        for (size_t i = 0; i < sh->n_peers; i++)
                if (sh->peers[i].rho > 0) {
                        if (strlen(sh->peers[i].inst) > 65535)
                                return -VEIL_EINVAL;
                        n += 2 + strlen(sh->peers[i].inst) + 12;
                        count++;
                }
        if (sh->lost) {
                n += 2 + 12;
                count++;
        }
        unsigned char *buf = malloc(n), *p = buf;
        if (!buf)
                return -VEIL_ENOMEM;
        memcpy(p, "VRH2", 4);
        p = put(p + 4, count, 4);
        if (sh->lost)
                p = put_lost(p, 0);
        for (size_t i = 0; i < sh->n_peers; i++) {
                const struct peer *pe = &sh->peers[i];
                if (!(pe->rho > 0))
                        continue;
                size_t l = strlen(pe->inst);
                p = put(p, l, 2);
                memcpy(p, pe->inst, l);
                p = put(p + l, pe->lin, 4);
                p = put_rho(p, pe->rho);
        }
        crypto_generichash(p, RHO_SUM, buf, n - RHO_SUM, NULL, 0);
        *data = buf;
        *len = n;
        return 0;
}

int veil_share_rho_merge(struct veil_share *sh, const void *data,
                         size_t len) {
        const unsigned char *p = data, *end = p + len;
        unsigned char sum[RHO_SUM];
        if (len < 8 + RHO_SUM ||
            (memcmp(p, "VRH1", 4) && memcmp(p, "VRH2", 4)))
                return -VEIL_EDECODE;
        size_t fixed = p[3] == '2' ? 12 : 8;
        end -= RHO_SUM;
        crypto_generichash(sum, RHO_SUM, p, len - RHO_SUM, NULL, 0);
        if (sodium_memcmp(sum, end, RHO_SUM))
                return -VEIL_EDECODE;
        size_t n = get(p + 4, 4);
        const unsigned char *q = p + 8;
        for (size_t i = 0; i < n; i++) { /* check it all first */
                if (end - q < (ptrdiff_t)(2 + fixed) ||
                    (size_t)(end - q - 2 - fixed) < get(q, 2))
                        return -VEIL_EDECODE;
                q += 2 + get(q, 2) + fixed;
        }
        if (q != end)
                return -VEIL_EDECODE;
        char id[65536];
        for (q = p + 8; q < end;) {
                size_t l = get(q, 2);
                memcpy(id, q + 2, l);
                id[l] = '\0';
                uint32_t lin = fixed == 12 ? (uint32_t)get(q + 2 + l, 4) : 0;
                double rho = get_rho(q + 2 + l + fixed - 8);
                q += 2 + l + fixed;
                int nul = memchr(id, 0, l) != NULL;
                if (fixed == 8)
                        legacy_before(id, l, &lin);
                if (!id_kept(id, nul)) {
                        lose(sh);
                        continue;
                }
                struct peer *pe = peer(sh, id, lin);
                if (!pe) {
                        /* Lost: ε is infinite, and the file rewritten
                         * says so. A file of a veil that kept every
                         * sender it was told of stops no start. */
                        if (sh->n_peers >= VEIL_SHARE_SENDERS_MAX)
                                continue;
                        return -VEIL_ENOMEM;
                }
                raise_rho(sh, pe, rho);
        }
        return 0;
}

struct veil_share_stats veil_share_stats(const struct veil_share *sh) {
        struct veil_share_stats s = sh->st;
        s.seq = (uint64_t)sh->seq;
        return s;
}

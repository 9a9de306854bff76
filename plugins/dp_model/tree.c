#include "tree.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <veil/veil.h>

#define LEVELS 64
/* Coordinates per chunk: a node is always drawn in the same chunks, so
 * that regenerating it yields the same noise (the stream rekeys itself
 * after every fill; the sampler draws per call). */
#define CHUNK 4096

struct node {
        int used;
        unsigned char key[32];
        size_t rows[VEIL_TREE_MAX_BLOCKS];
};

/* Honaker: the stored node of one level, per block (coordinates, not
 * rows: cap[i] ≥ node.rows[i]·width). */
struct hlevel {
        int64_t *tru[VEIL_TREE_MAX_BLOCKS]; /* Σ round(g_i/g): not noised */
        double *est[VEIL_TREE_MAX_BLOCKS];  /* ê, in lattice units */
        size_t cap[VEIL_TREE_MAX_BLOCKS];
};

struct veil_tree {
        const struct veil_noise *ns;
        enum veil_tree_estimator est;
        struct hlevel *h;   /* Honaker: LEVELS of them */
        int64_t *rt;        /* one chunk on the lattice (Honaker: the
                             * right chain's true sum, */
        double *re;         /* and its estimate) */
        double v[LEVELS];   /* Honaker: v_l, the weight of a node's own y */
        double g;
        int seeded;
        unsigned char seed[32];
        uint64_t made; /* nodes made: the derivation counter with a seed */
        uint64_t pos;
        struct node node[LEVELS];
        int64_t *k;
        double *acc;
        double *xq; /* one chunk of the step's sum, gathered from its rows */
};

double veil_tree_node_variance(enum veil_tree_estimator est,
                               unsigned level) {
        double v = 1.0;
        for (unsigned l = 1; est == VEIL_TREE_HONAKER && l <= level; l++)
                v = 2 * v / (1 + 2 * v);
        return v;
}

int veil_tree_new(struct veil_tree **out, const struct veil_noise *ns,
                  enum veil_tree_estimator est, const unsigned char *seed,
                  char *errstr, size_t errstr_size) {
        *out = NULL;
        if (sodium_init() < 0) {
                snprintf(errstr, errstr_size, "dp_model: libsodium failed");
                return -VEIL_EIO;
        }
        struct veil_tree *t = calloc(1, sizeof(*t));
        if (!t)
                return -VEIL_ENOMEM;
        t->k = malloc(CHUNK * sizeof(*t->k));
        t->acc = malloc(CHUNK * sizeof(*t->acc));
        t->rt = malloc(CHUNK * sizeof(*t->rt));
        t->xq = malloc(CHUNK * sizeof(*t->xq));
        if (!t->k || !t->acc || !t->rt || !t->xq) {
                veil_tree_free(t);
                return -VEIL_ENOMEM;
        }
        t->est = est;
        if (est == VEIL_TREE_HONAKER) {
                t->h = calloc(LEVELS, sizeof(*t->h));
                t->re = malloc(CHUNK * sizeof(*t->re));
                if (!t->h || !t->re) {
                        veil_tree_free(t);
                        return -VEIL_ENOMEM;
                }
                for (unsigned l = 0; l < LEVELS; l++)
                        t->v[l] = veil_tree_node_variance(est, l);
        }
        t->ns = ns;
        t->g = veil_noise_grid(ns);
        if (seed) {
                t->seeded = 1;
                memcpy(t->seed, seed, sizeof(t->seed));
        }
        *out = t;
        return 0;
}

/* Honaker's stored sums are the users' un-noised gradients: wiped, like
 * the keys, whenever a node goes. */
static void hlevel_wipe(struct hlevel *h) {
        for (size_t i = 0; i < VEIL_TREE_MAX_BLOCKS; i++) {
                if (h->tru[i])
                        sodium_memzero(h->tru[i], h->cap[i] * sizeof(int64_t));
                if (h->est[i])
                        sodium_memzero(h->est[i], h->cap[i] * sizeof(double));
        }
}

void veil_tree_reset(struct veil_tree *t) {
        sodium_memzero(t->node, sizeof(t->node));
        for (unsigned l = 0; t->h && l < LEVELS; l++)
                hlevel_wipe(&t->h[l]);
        t->pos = 0;
}

void veil_tree_free(struct veil_tree *t) {
        if (!t)
                return;
        veil_tree_reset(t);
        sodium_memzero(t->seed, sizeof(t->seed));
        for (unsigned l = 0; t->h && l < LEVELS; l++)
                for (size_t i = 0; i < VEIL_TREE_MAX_BLOCKS; i++) {
                        free(t->h[l].tru[i]);
                        free(t->h[l].est[i]);
                }
        free(t->h);
        free(t->rt);
        free(t->re);
        free(t->k);
        free(t->acc);
        free(t->xq);
        free(t);
}

uint64_t veil_tree_position(const struct veil_tree *t) { return t->pos; }

static void new_key(struct veil_tree *t, unsigned char key[32]) {
        if (!t->seeded) {
                randombytes_buf(key, 32);
                return;
        }
        unsigned char ctr[8];
        for (int i = 0; i < 8; i++)
                ctr[i] = (unsigned char)(t->made >> (8 * i));
        crypto_generichash(key, 32, ctr, sizeof(ctr), t->seed,
                           sizeof(t->seed));
        t->made++;
}

/* The stream of one node for one block: keyed BLAKE2b of the block index
 * under the node's key. */
static int block_stream(const struct node *n, size_t block,
                        struct veil_rng_stream *st, struct veil_rng *rng) {
        unsigned char sub[32], in = (unsigned char)block;
        crypto_generichash(sub, sizeof(sub), &in, 1, n->key, sizeof(n->key));
        int rc = veil_rng_stream_init(st, sub, rng);
        sodium_memzero(sub, sizeof(sub));
        return rc;
}

static int fail(char *errstr, size_t errstr_size, const char *msg) {
        snprintf(errstr, errstr_size, "dp_model tree: %s", msg);
        return -VEIL_EINVAL;
}

/* t->rt[j] = round(x[j]/g) for the n values of rows from x (row
 * pointers, NULL: zeros): the step's sum on the noise lattice. */
static int lattice_of(struct veil_tree *t, double *const *x, size_t width,
                      size_t n, char *errstr, size_t errstr_size) {
        /* |x| ≥ 2^50·g would leave the exact range of the lattice sums. */
        double lim = ldexp(t->g, 50);
        veil_noise_gather(t->xq, x, width, 0, n, 0);
        for (size_t j = 0; j < n; j++) {
                if (!(fabs(t->xq[j]) < lim))
                        return fail(errstr, errstr_size,
                                    "a gradient coordinate is not finite or "
                                    "too large");
                t->rt[j] = (int64_t)nearbyint(t->xq[j] / t->g);
        }
        return 0;
}

/* The plain tree: the new node's noise in, the removed nodes' out. */
static int plain_release(struct veil_tree *t, const struct veil_tree_block *b,
                         size_t n_blocks, unsigned z, char *errstr,
                         size_t errstr_size) {
        struct veil_rng_stream st[LEVELS + 1];
        struct veil_rng rng[LEVELS + 1];
        int rc = 0;
        for (size_t i = 0; i < n_blocks && !rc; i++) {
                size_t w = b[i].width ? b[i].width : 1;
                size_t ch = CHUNK / w ? CHUNK / w : 1;
                /* Levels 0..z-1 are removed, level z is new. */
                for (unsigned l = 0; l <= z && !rc; l++)
                        rc = block_stream(&t->node[l], i, &st[l], &rng[l]);
                for (size_t r0 = 0; r0 < b[i].rows && !rc; r0 += ch) {
                        size_t rows = b[i].rows - r0 < ch ? b[i].rows - r0 : ch;
                        size_t n = rows * w;
                        double *const *x = b[i].x + r0;
                        float *out = b[i].out + r0 * w;
                        if (n > CHUNK) { /* width > CHUNK: one row */
                                rc = fail(errstr, errstr_size,
                                          "a block row wider than 4096");
                                break;
                        }
                        if ((rc = lattice_of(t, x, w, n, errstr,
                                             errstr_size)))
                                break;
                        rc = veil_noise_fill_lattice(t->ns, &rng[z], t->k, n,
                                                     errstr, errstr_size);
                        for (size_t j = 0; j < n && !rc; j++)
                                t->acc[j] = (double)t->rt[j] +
                                            (double)t->k[j];
                        for (unsigned l = 0; l < z && !rc; l++) {
                                size_t have = t->node[l].rows[i];
                                if (r0 >= have)
                                        continue;
                                size_t m = (have - r0 < ch ? have - r0 : ch) *
                                           w;
                                rc = veil_noise_fill_lattice(
                                        t->ns, &rng[l], t->k, m, errstr,
                                        errstr_size);
                                for (size_t j = 0; j < m && !rc; j++)
                                        t->acc[j] -= (double)t->k[j];
                        }
                        for (size_t j = 0; j < n && !rc; j++)
                                out[j] = (float)(t->g * t->acc[j]);
                }
                for (unsigned l = 0; l <= z; l++)
                        veil_rng_stream_wipe(&st[l]);
        }
        return rc;
}

/* Level z's arrays for block i hold n coordinates. They are unused (the
 * level's node is new), so nothing is copied: the old ones are wiped and
 * freed rather than realloc'd, which could leave a copy behind. */
static int hlevel_fit(struct hlevel *h, size_t i, size_t n) {
        if (h->cap[i] >= n)
                return 0;
        if (h->tru[i])
                sodium_memzero(h->tru[i], h->cap[i] * sizeof(int64_t));
        free(h->tru[i]);
        free(h->est[i]);
        h->cap[i] = 0;
        h->tru[i] = malloc(n * sizeof(int64_t));
        h->est[i] = malloc(n * sizeof(double));
        if (!h->tru[i] || !h->est[i])
                return -VEIL_ENOMEM;
        h->cap[i] = n;
        return 0;
}

/* Honaker (tree.h): the nodes of levels 0..z that end at this leaf are
 * noised, bottom up: level 0 is the leaf, level l's left child is the
 * stored node of level l−1 and its right child the level l−1 node just
 * made. Level z's node is stored; levels < z are removed. */
static int honaker_release(struct veil_tree *t,
                           const struct veil_tree_block *b, size_t n_blocks,
                           unsigned z, char *errstr, size_t errstr_size) {
        struct veil_rng_stream st;
        struct veil_rng rng;
        int rc = 0;
        for (size_t i = 0; i < n_blocks && !rc; i++) {
                size_t w = b[i].width ? b[i].width : 1;
                size_t ch = CHUNK / w ? CHUNK / w : 1;
                rc = hlevel_fit(&t->h[z], i, b[i].rows * w);
                if (rc)
                        snprintf(errstr, errstr_size,
                                 "dp_model tree: out of memory for Honaker's "
                                 "estimate (%zu coordinates)",
                                 b[i].rows * w);
                else
                        rc = block_stream(&t->node[z], i, &st, &rng);
                if (rc)
                        break;
                int64_t *rt = t->rt;
                double *re = t->re;
                for (size_t r0 = 0; r0 < b[i].rows && !rc; r0 += ch) {
                        size_t rows = b[i].rows - r0 < ch ? b[i].rows - r0 : ch;
                        size_t n = rows * w, off = r0 * w;
                        double *const *x = b[i].x + r0;
                        float *xo = b[i].out + off;
                        if (n > CHUNK) {
                                rc = fail(errstr, errstr_size,
                                          "a block row wider than 4096");
                                break;
                        }
                        rc = lattice_of(t, x, w, n, errstr, errstr_size);
                        if (!rc)
                                rc = veil_noise_fill_lattice(
                                        t->ns, &rng, t->k, n, errstr,
                                        errstr_size);
                        for (size_t j = 0; j < n && !rc; j++)
                                re[j] = (double)(rt[j] + t->k[j]);
                        for (unsigned l = 1; l <= z && !rc; l++) {
                                const struct hlevel *L = &t->h[l - 1];
                                size_t have = t->node[l - 1].rows[i] * w;
                                double wl = t->v[l];
                                rc = veil_noise_fill_lattice(
                                        t->ns, &rng, t->k, n, errstr,
                                        errstr_size);
                                for (size_t j = 0; j < n && !rc; j++) {
                                        size_t c = off + j;
                                        int64_t tl = c < have ? L->tru[i][c]
                                                              : 0;
                                        double el = c < have ? L->est[i][c]
                                                             : 0.0;
                                        int64_t tr, y;
                                        if (__builtin_add_overflow(tl, rt[j],
                                                                   &tr) ||
                                            __builtin_add_overflow(
                                                    tr, t->k[j], &y)) {
                                                rc = fail(errstr, errstr_size,
                                                          "a node sum "
                                                          "overflows");
                                                break;
                                        }
                                        re[j] = wl * (double)y +
                                                (1 - wl) * (el + re[j]);
                                        rt[j] = tr;
                                }
                        }
                        for (size_t j = 0; j < n && !rc; j++) {
                                size_t c = off + j;
                                double out = re[j];
                                for (unsigned l = 0; l < z; l++)
                                        if (c < t->node[l].rows[i] * w)
                                                out -= t->h[l].est[i][c];
                                t->h[z].tru[i][c] = rt[j];
                                t->h[z].est[i][c] = re[j];
                                xo[j] = (float)(t->g * out);
                        }
                }
                veil_rng_stream_wipe(&st);
        }
        return rc;
}

int veil_tree_release(struct veil_tree *t, const struct veil_tree_block *b,
                      size_t n_blocks, char *errstr, size_t errstr_size) {
        if (n_blocks > VEIL_TREE_MAX_BLOCKS)
                return fail(errstr, errstr_size, "too many blocks");
        uint64_t leaf = t->pos + 1;
        unsigned z = (unsigned)__builtin_ctzll(leaf);
        if (z >= LEVELS || t->node[z].used)
                return fail(errstr, errstr_size, "inconsistent node state");
        for (unsigned l = 0; l < LEVELS; l++) {
                if (l < z && !t->node[l].used)
                        return fail(errstr, errstr_size,
                                    "inconsistent node state");
                for (size_t i = 0; i < n_blocks && t->node[l].used; i++)
                        if (b[i].rows < t->node[l].rows[i])
                                return fail(errstr, errstr_size,
                                            "a block lost rows");
        }
        struct node *nn = &t->node[z];
        new_key(t, nn->key);
        for (size_t i = 0; i < n_blocks; i++)
                nn->rows[i] = b[i].rows;

        int rc = t->est == VEIL_TREE_HONAKER
                         ? honaker_release(t, b, n_blocks, z, errstr,
                                           errstr_size)
                         : plain_release(t, b, n_blocks, z, errstr,
                                         errstr_size);
        sodium_memzero(t->k, CHUNK * sizeof(*t->k));
        sodium_memzero(t->acc, CHUNK * sizeof(*t->acc));
        sodium_memzero(t->rt, CHUNK * sizeof(*t->rt));
        sodium_memzero(t->xq, CHUNK * sizeof(*t->xq));
        if (rc) {
                veil_tree_reset(t);
                return rc;
        }
        for (unsigned l = 0; l < z; l++) {
                sodium_memzero(&t->node[l], sizeof(t->node[l]));
                if (t->h)
                        hlevel_wipe(&t->h[l]);
        }
        /* Honaker keeps the estimates, not the key: nothing regenerates. */
        if (t->h)
                sodium_memzero(nn->key, sizeof(nn->key));
        nn->used = 1;
        t->pos = leaf;
        return 0;
}

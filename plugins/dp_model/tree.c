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

struct veil_tree {
        const struct veil_noise *ns;
        double g;
        int seeded;
        unsigned char seed[32];
        uint64_t made; /* nodes made: the derivation counter with a seed */
        uint64_t pos;
        struct node node[LEVELS];
        int64_t *k;
        double *acc;
};

int veil_tree_new(struct veil_tree **out, const struct veil_noise *ns,
                  const unsigned char *seed, char *errstr,
                  size_t errstr_size) {
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
        if (!t->k || !t->acc) {
                veil_tree_free(t);
                return -VEIL_ENOMEM;
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

void veil_tree_reset(struct veil_tree *t) {
        sodium_memzero(t->node, sizeof(t->node));
        t->pos = 0;
}

void veil_tree_free(struct veil_tree *t) {
        if (!t)
                return;
        veil_tree_reset(t);
        sodium_memzero(t->seed, sizeof(t->seed));
        free(t->k);
        free(t->acc);
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

        struct veil_rng_stream st[LEVELS + 1];
        struct veil_rng rng[LEVELS + 1];
        int rc = 0;
        /* |x| ≥ 2^50·g would leave the exact range of the lattice sums. */
        double lim = ldexp(t->g, 50);
        for (size_t i = 0; i < n_blocks && !rc; i++) {
                size_t w = b[i].width ? b[i].width : 1;
                size_t ch = CHUNK / w ? CHUNK / w : 1;
                /* Levels 0..z-1 are removed, level z is new. */
                for (unsigned l = 0; l <= z && !rc; l++)
                        rc = block_stream(&t->node[l], i, &st[l], &rng[l]);
                for (size_t r0 = 0; r0 < b[i].rows && !rc; r0 += ch) {
                        size_t rows = b[i].rows - r0 < ch ? b[i].rows - r0 : ch;
                        size_t n = rows * w;
                        float *x = b[i].x + r0 * w;
                        if (n > CHUNK) { /* width > CHUNK: one row */
                                rc = fail(errstr, errstr_size,
                                          "a block row wider than 4096");
                                break;
                        }
                        for (size_t j = 0; j < n; j++) {
                                if (!(fabs((double)x[j]) < lim)) {
                                        rc = fail(errstr, errstr_size,
                                                  "a gradient coordinate is "
                                                  "not finite or too large");
                                        break;
                                }
                                t->acc[j] = nearbyint((double)x[j] / t->g);
                        }
                        if (rc)
                                break;
                        rc = veil_noise_fill_lattice(t->ns, &rng[z], t->k, n,
                                                     errstr, errstr_size);
                        for (size_t j = 0; j < n && !rc; j++)
                                t->acc[j] += (double)t->k[j];
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
                                x[j] = (float)(t->g * t->acc[j]);
                }
                for (unsigned l = 0; l <= z; l++)
                        veil_rng_stream_wipe(&st[l]);
        }
        sodium_memzero(t->k, CHUNK * sizeof(*t->k));
        sodium_memzero(t->acc, CHUNK * sizeof(*t->acc));
        if (rc) {
                veil_tree_reset(t);
                return rc;
        }
        for (unsigned l = 0; l < z; l++)
                sodium_memzero(&t->node[l], sizeof(t->node[l]));
        nn->used = 1;
        t->pos = leaf;
        return 0;
}

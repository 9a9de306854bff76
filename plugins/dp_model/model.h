/*
 * model.h — the item-embedding model of the dp_model plugin.
 *
 * Parameters:
 *   V  items × d   output item vectors (what is scored)
 *   b  items       item biases (the `none` tier's list: highest bias)
 *   E  space × d   embeddings of the hashed context features
 *   U  items × d   input item vectors (the item in hand, recent items)
 * An event's query is
 *   q = Σ_f E[f] + U[item in hand] + α · mean_r U[recent r]
 * and its scores are s = V q + b: a batch is one sgemm, Q (n × d) · Vᵀ.
 *
 * Rows for every item the catalog can hold are allocated up front, so an
 * item added from an event never moves the matrices.
 */
#ifndef VEIL_DP_MODEL_MODEL_H
#define VEIL_DP_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"

struct veil_model {
        size_t d;     /**< embedding dimension */
        size_t space; /**< rows of E (feature ids are taken mod space) */
        size_t cap;   /**< item rows allocated (catalog capacity) */
        float *V, *U, *E, *b;
        /** Adagrad's running sums of squared gradients, same shapes. */
        float *aV, *aU, *aE, *ab;
        struct veil_catalog *cat; /**< owned: the item ids */
        float init_scale;
        uint64_t rng; /**< initialization of rows added from events */
        uint64_t steps; /**< learning steps applied: the model version */
};

/** Takes ownership of `cat`. Rows are initialized with independent
 *  uniform values of standard deviation init_scale from `seed`; biases 0. */
int veil_model_new(struct veil_model **out, struct veil_catalog *cat,
                   size_t d, size_t space, float init_scale, uint64_t seed,
                   char *errstr, size_t errstr_size);
void veil_model_free(struct veil_model *m);

/** Items the model scores now. */
static inline size_t veil_model_items(const struct veil_model *m) {
        return m->cat->n;
}

/** The E row of feature id f (f mod space): no division when f is
 *  already below space — always, when the context stage hashes into the
 *  same space; a division is tens of cycles, and there is one per
 *  feature of every query, explanation and training example. */
static inline size_t veil_model_erow(const struct veil_model *m, uint32_t f) {
        return f < m->space ? f : f % m->space;
}

/** Row of an item id; with add, a new item gets a fresh row while the
 *  catalog has room. -1 when absent (or full). */
int32_t veil_model_item(struct veil_model *m, const char *id, int add);

/** q = Σ E[feat[i] mod space] + U[item] (item >= 0) + alpha · mean of
 *  U[recent[j]] (n_recent > 0). */
void veil_model_query(const struct veil_model *m, const uint32_t *feat,
                      size_t n_feat, int32_t item, const int32_t *recent,
                      size_t n_recent, float alpha, float *q);

/** Asks the cache for the rows veil_model_query (or an explanation) will
 *  read: issued a little ahead of their use, it hides their misses. */
void veil_model_prefetch(const struct veil_model *m, const uint32_t *feat,
                         size_t n_feat, int32_t item, const int32_t *recent,
                         size_t n_recent);

/** S = Q · Vᵀ for the first `items` rows of V (n × items, row stride
 *  ld_s); the bias is added by the caller (topk.h fuses it). One sgemm. */
void veil_model_score(const struct veil_model *m, const float *Q, size_t n,
                      size_t items, float *S, size_t ld_s);

/** Uniform random numbers in [0, 1) from a splitmix64 state. */
double veil_model_uniform(uint64_t *state);

#endif

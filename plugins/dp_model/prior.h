/*
 * prior.h — a starting point for the item vectors from public data: the
 * catalog's descriptions.
 *
 * Every word of the descriptions gets a pseudo-random direction (from the
 * seed and the word); an item's vector is the sum of its words'
 * directions weighted by tf·idf, scaled to a fixed norm, in both U (the
 * item in hand) and V (the items scored). A query about "a red lantern"
 * then scores "a white lantern" high before anything is learned: on the
 * Online Retail purchases the next item shares words with the current one
 * often. Random projection keeps the tf·idf cosine to about 1/√d.
 *
 * The catalog is the shop's, not its users': this costs no privacy, and
 * learning (private or not) starts from here.
 */
#ifndef VEIL_DP_MODEL_PRIOR_H
#define VEIL_DP_MODEL_PRIOR_H

#include <stdint.h>

#include "model.h"

/** Sets U and V of the catalog's items from their descriptions (items
 *  without one keep their rows). Returns 0 or -VEIL_ENOMEM. */
int veil_model_prior_text(struct veil_model *m, float norm, uint64_t seed);

/** Each catalog item's nearest other items by the cosine of their
 *  descriptions' tf·idf vectors — exact, not through the d-dimensional
 *  projection above, whose ±1/√d error hides most of the neighbours.
 *  Public data too: dp_model adds `prior_neighbor_weight` × cosine to the
 *  scores of the item in hand's neighbours (and α/|recent| × cosine for
 *  each recent item's), outside the learned and noised parameters. */
struct veil_prior_nb {
        size_t n, L;    /**< catalog items, neighbours kept per item */
        uint32_t *item; /**< n × L model rows, best first; UINT32_MAX pads */
        float *sim;     /**< n × L cosines in (0, 1] */
};

/** Fills nb with up to L neighbours of each of the catalog's file items
 *  (ties: the lower row). L = 0 leaves it empty. Returns 0 or
 *  -VEIL_ENOMEM (nb then empty). Exact, through an inverted index: the
 *  time grows with the sum over words of (items holding the word)², 20 ms
 *  for the 3,665 Online Retail items; a catalog of millions of items with
 *  common words would want an approximate search instead. */
int veil_prior_neighbors(const struct veil_catalog *c, size_t L,
                         struct veil_prior_nb *nb);
void veil_prior_nb_free(struct veil_prior_nb *nb);

/** The neighbours of each of the catalog's file items by their place in
 *  the file: the items up to W rows before and after it, with similarity
 *  1/(1 + row distance), nearest first. Public data: a shop lists a
 *  collection's items together (Online Retail's stock codes are numbered
 *  by collection, and the catalog is in code order: the next purchase is
 *  the very next or previous row of the item in hand 11.8 % of the time).
 *  W = 0 leaves nb empty. Returns 0 or -VEIL_ENOMEM (nb then empty). */
int veil_prior_catalog_order(const struct veil_catalog *c, size_t W,
                             struct veil_prior_nb *nb);

/** row[j] += wt × cos(a, j) for a's neighbours j (nothing for a < 0 or an
 *  item not in the file). */
void veil_prior_nb_add(const struct veil_prior_nb *nb, int32_t a, float wt,
                       float *row);

/** cos(a, j) when j is among a's neighbours, else 0. */
float veil_prior_nb_get(const struct veil_prior_nb *nb, int32_t a,
                        uint32_t j);

#endif

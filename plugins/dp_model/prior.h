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

#endif

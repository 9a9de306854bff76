/*
 * context_info.h — what the context stage leaves on each event for the
 * model stage, beyond the SDK's ev->features and ev->recent_items.
 *
 * The SDK event has no field for the kind and the words of each feature
 * id, nor for the user's previous event, so the context stage hangs a
 * struct veil_context_info on ev->user (the "free slot for the stage that
 * owns it"), allocated in the batch arena. A reader checks `magic` before
 * trusting it and treats any other value of ev->user as "no context info".
 * Only plugins/dp_model reads it; this header is the whole contract.
 */
#ifndef VEIL_CONTEXT_INFO_H
#define VEIL_CONTEXT_INFO_H

#include <stddef.h>
#include <stdint.h>

#include <veil/veil.h>

#define VEIL_CONTEXT_INFO_MAGIC 0x76637478u /* "vctx" */
#define VEIL_CONTEXT_INFO_VERSION 2

/** At most this many features per event (one per kind). */
#define VEIL_CTX_MAX_FEATURES 16

/** Feature kinds, in extraction order. */
enum veil_ctx_kind {
        VEIL_CTX_HOUR = 0,
        VEIL_CTX_WEEKDAY,
        VEIL_CTX_DEVICE,
        VEIL_CTX_COUNTRY,
        VEIL_CTX_GEOHASH,
        VEIL_CTX_SESSION_POSITION,
        VEIL_CTX_SINCE_PREVIOUS,
        VEIL_CTX_TYPE,
        VEIL_CTX_ITEM,
        VEIL_CTX_CATEGORY,
        VEIL_CTX_PRICE_BAND,
        VEIL_CTX_N_KINDS
};

/** 1 for the kinds that describe the item in hand. */
static inline int veil_ctx_kind_is_item(int kind) {
        return kind == VEIL_CTX_ITEM || kind == VEIL_CTX_CATEGORY ||
               kind == VEIL_CTX_PRICE_BAND;
}

struct veil_context_info {
        uint32_t magic;   /**< VEIL_CONTEXT_INFO_MAGIC */
        uint32_t version; /**< VEIL_CONTEXT_INFO_VERSION */
        uint32_t space;   /**< feature ids are < space */
        veil_tier_t tier; /**< the tier the context stage applied */
        /** Parallel to ev->features: the kind of each id and its plain
         *  words ("evening", "mobile", "buying", "a lantern"); words live
         *  as long as the batch. */
        const uint8_t *kinds;
        const char *const *words;
        /** Personalized only: the features of the user's previous event in
         *  the profile (whose item is ev->recent_items[0]), so the model
         *  can learn "state before → this item". n_prev = 0 otherwise. */
        const uint32_t *prev_features;
        size_t n_prev;
        /** Personalized only: how many of ev->recent_items (the first
         *  ones) are of the current visit. */
        size_t n_visit;
        /** Personalized only, with history_items > 0: the items of the
         *  person's earlier visits (not of this one), in no order, and in
         *  how many visits each was; n_history = 0 otherwise. */
        const char *const *history;
        const uint32_t *history_visits;
        size_t n_history;
        /** The context stage's history_items: 0 when it keeps none. */
        uint32_t history_items;
};

#endif

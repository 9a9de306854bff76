/*
 * catalog.h — the item catalog shared by the context and dp_model plugins:
 * ids, categories, prices, descriptions, price bands, and an id → index
 * table. Compiled into both plugins (each keeps its own copy).
 *
 * Items come from a CSV (id, category, price, description — the columns
 * are found by name, see veil_catalog_load); items seen in events but not in
 * the file are added by veil_catalog_intern, up to a cap, so memory stays
 * bounded whatever ids a producer sends.
 *
 * When the file has no category column, an item's category is the last
 * word of its description, lower-cased ("WHITE METAL LANTERN" → "lantern"):
 * product names in the bundled data end with the noun that says what the
 * thing is. Price bands are the catalog's price quantiles, so they mean
 * "cheap for this shop", not a fixed currency amount.
 */
#ifndef VEIL_CONTEXT_CATALOG_H
#define VEIL_CONTEXT_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#define VEIL_CATALOG_MAX_BANDS 10

/** Column names of the CSV; NULL picks the first present of the defaults
 *  (id: id, item, item_id; category: category; price: price,
 *  median_unit_price, unit_price; description: description, name, title). */
struct veil_catalog_columns {
        const char *id, *category, *price, *description;
};

/** A slot of the id table: the index, the high half of the id's hash
 *  (compared first: a probe that meets another id rarely reads further)
 *  and the id itself when it is short (≤ 7 bytes, NUL-padded), else its
 *  first 8 bytes. A lookup of a short id is then one cache line of the
 *  table, not the table, the id pointer array and the id's string — three
 *  dependent misses, after the batch's score matrix has gone through the
 *  cache. */
struct veil_catalog_slot {
        uint32_t idx1; /**< index + 1, 0 = empty */
        uint32_t tag;  /**< the hash's upper 32 bits */
        char key[8];
};

struct veil_catalog {
        size_t n;        /**< items, file items first */
        size_t n_file;   /**< items read from the CSV */
        size_t cap;      /**< n_file + the cap on items added from events */
        char **id;
        char **category;    /**< never NULL ("item" when unknown) */
        char **description; /**< NULL when unknown */
        float *price;       /**< < 0 when unknown */
        int8_t *band;       /**< 0..n_bands-1, -1 when the price is unknown */
        char **phrase;      /**< "a lantern", for explanations */
        int n_bands;
        float band_edge[VEIL_CATALOG_MAX_BANDS]; /**< lower edges of bands 1.. */
        struct veil_catalog_slot *tab; /**< open addressing */
        size_t tab_cap;     /**< power of two, > 2·cap */
};

/** An empty catalog that only grows from events (up to max_new items). */
int veil_catalog_new(struct veil_catalog **out, size_t max_new, int n_bands,
                     char *errstr, size_t errstr_size);
/** Loads `path` (CSV with a header line: RFC 4180 quoting, but a quoted
 *  field cannot hold a line break; a UTF-8 byte-order mark is skipped) and
 *  leaves room for max_new more items. Item ids must be valid UTF-8 of 1
 *  to VEIL_ID_MAX bytes, descriptions and categories valid UTF-8, prices
 *  finite and >= 0. Errors name the file and line. */
int veil_catalog_load(struct veil_catalog **out, const char *path,
                      const struct veil_catalog_columns *cols, size_t max_new,
                      int n_bands, char *errstr, size_t errstr_size);
void veil_catalog_free(struct veil_catalog *c);

/** Index of an id, or -1. */
int32_t veil_catalog_find(const struct veil_catalog *c, const char *id);
/** veil_catalog_find of n ids (NULL ones give -1) into out: the table
 *  lines of all of them are asked for before the first is compared, so
 *  their misses overlap. */
void veil_catalog_find_many(const struct veil_catalog *c,
                            const char *const *ids, size_t n, int32_t *out);
/** Asks for the table line of an id ahead of its lookup. */
void veil_catalog_prefetch(const struct veil_catalog *c, const char *id);
/** Index of an id, adding it (no category, price or description) when
 *  there is room; -1 when the catalog is full or out of memory. */
int32_t veil_catalog_intern(struct veil_catalog *c, const char *id);
/** Price band of a price (-1 for a negative/unknown price). */
int veil_catalog_band(const struct veil_catalog *c, double price);

/** Resolves a path written in a pipeline file: absolute paths as they are,
 *  relative ones against the directory of the YAML file named in `where`
 *  ("dir/pipeline.yaml:12:7", from veil_params_where). malloc'd. */
char *veil_catalog_path(const char *where, const char *path);

#endif

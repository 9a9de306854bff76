#include "catalog.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <veil/veil.h>

#define MAX_CATEGORY 40

#define KEY_BYTES sizeof(((struct veil_catalog_slot *)0)->key)

/* FNV-1a of a string, its length, and its first KEY_BYTES bytes as a
 * slot's key holds them (NUL-padded), as one word. */
static uint64_t fnv(const char *s, size_t *len, uint64_t *key) {
        uint64_t h = 14695981039346656037ULL;
        char k[KEY_BYTES] = {0};
        const char *p = s;
        for (; *p; p++) {
                h = (h ^ (unsigned char)*p) * 1099511628211ULL;
                if ((size_t)(p - s) < KEY_BYTES)
                        k[p - s] = *p;
        }
        *len = (size_t)(p - s);
        memcpy(key, k, sizeof(*key));
        return h;
}

static int alloc_arrays(struct veil_catalog *c, size_t cap) {
        c->cap = cap;
        c->id = calloc(cap ? cap : 1, sizeof(char *));
        c->category = calloc(cap ? cap : 1, sizeof(char *));
        c->description = calloc(cap ? cap : 1, sizeof(char *));
        c->phrase = calloc(cap ? cap : 1, sizeof(char *));
        c->price = calloc(cap ? cap : 1, sizeof(float));
        c->band = calloc(cap ? cap : 1, sizeof(int8_t));
        c->tab_cap = 16;
        while (c->tab_cap < 2 * cap + 2)
                c->tab_cap *= 2;
        c->tab = calloc(c->tab_cap, sizeof(*c->tab));
        return c->id && c->category && c->description && c->phrase &&
                               c->price && c->band && c->tab
                       ? 0
                       : -VEIL_ENOMEM;
}

void veil_catalog_free(struct veil_catalog *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n; i++) {
                free(c->id[i]);
                free(c->category[i]);
                free(c->description[i]);
                free(c->phrase[i]);
        }
        free(c->id);
        free(c->category);
        free(c->description);
        free(c->phrase);
        free(c->price);
        free(c->band);
        free(c->tab);
        free(c);
}

/* The lookup of an id of length n, hash h and key word w. A short id
 * (no NUL in its key word: the words differ for ids of other lengths)
 * is equal to the slot's key; a long one to its first bytes and then to
 * the rest of the stored string. */
static int32_t probe(const struct veil_catalog *c, const char *id, size_t n,
                     uint64_t h, uint64_t w) {
        size_t mask = c->tab_cap - 1, j = h & mask;
        uint32_t tag = (uint32_t)(h >> 32);
        for (; c->tab[j].idx1; j = (j + 1) & mask) {
                const struct veil_catalog_slot *e = &c->tab[j];
                uint64_t k;
                memcpy(&k, e->key, sizeof(k));
                if (e->tag != tag || k != w)
                        continue;
                uint32_t i = e->idx1 - 1;
                if (n < KEY_BYTES ||
                    !strcmp(c->id[i] + KEY_BYTES, id + KEY_BYTES))
                        return (int32_t)i;
        }
        return -1;
}

int32_t veil_catalog_find(const struct veil_catalog *c, const char *id) {
        size_t n;
        uint64_t w, h = fnv(id, &n, &w);
        return probe(c, id, n, h, w);
}

void veil_catalog_prefetch(const struct veil_catalog *c, const char *id) {
        size_t n;
        uint64_t w;
        __builtin_prefetch(&c->tab[fnv(id, &n, &w) & (c->tab_cap - 1)]);
}

void veil_catalog_find_many(const struct veil_catalog *c,
                            const char *const *ids, size_t n, int32_t *out) {
        uint64_t h[16], w[16];
        size_t len[16];
        for (size_t k0 = 0; k0 < n; k0 += 16) {
                size_t m = n - k0 < 16 ? n - k0 : 16;
                for (size_t k = 0; k < m; k++) {
                        if (!ids[k0 + k])
                                continue;
                        h[k] = fnv(ids[k0 + k], &len[k], &w[k]);
                        __builtin_prefetch(&c->tab[h[k] & (c->tab_cap - 1)]);
                }
                for (size_t k = 0; k < m; k++)
                        out[k0 + k] = ids[k0 + k]
                                              ? probe(c, ids[k0 + k], len[k],
                                                      h[k], w[k])
                                              : -1;
        }
}

/* "a lantern", "an owl", and a plural without an article ("candles", not
 * "a candles": one item name in six of the Online Retail catalog ends in
 * a plural -s). A final -ss, -us, -is or -as is taken as singular ("a
 * glass", "a canvas"). */
static char *phrase_of(const char *category) {
        char buf[MAX_CATEGORY + 8];
        size_t n = strlen(category);
        int plural = n > 3 && category[n - 1] == 's' &&
                     !strchr("suia", category[n - 2]);
        int vowel = strchr("aeiou", category[0]) != NULL;
        snprintf(buf, sizeof(buf), "%s%s", plural ? "" : vowel ? "an " : "a ",
                 category);
        return strdup(buf);
}

/* Adds an item that is known to be absent; returns its index or -1. */
static int32_t add(struct veil_catalog *c, const char *id, const char *category,
                   double price, const char *description) {
        if (c->n >= c->cap)
                return -1;
        size_t i = c->n;
        c->id[i] = strdup(id);
        c->category[i] = strdup(category && *category ? category : "item");
        c->description[i] = description && *description ? strdup(description)
                                                         : NULL;
        c->phrase[i] = c->category[i] ? phrase_of(c->category[i]) : NULL;
        if (!c->id[i] || !c->category[i] || !c->phrase[i] ||
            (description && *description && !c->description[i])) {
                free(c->id[i]);
                free(c->category[i]);
                free(c->description[i]);
                free(c->phrase[i]);
                return -1;
        }
        c->price[i] = (float)price;
        c->band[i] = -1;
        size_t n;
        uint64_t w, h = fnv(id, &n, &w);
        size_t mask = c->tab_cap - 1, j = h & mask;
        while (c->tab[j].idx1)
                j = (j + 1) & mask;
        c->tab[j].idx1 = (uint32_t)i + 1;
        c->tab[j].tag = (uint32_t)(h >> 32);
        memcpy(c->tab[j].key, &w, KEY_BYTES);
        c->n++;
        return (int32_t)i;
}

int32_t veil_catalog_intern(struct veil_catalog *c, const char *id) {
        int32_t i = veil_catalog_find(c, id);
        return i >= 0 ? i : add(c, id, NULL, -1.0, NULL);
}

int veil_catalog_band(const struct veil_catalog *c, double price) {
        if (!(price >= 0) || c->n_bands < 1)
                return -1;
        int b = 0;
        while (b < c->n_bands - 1 && price >= c->band_edge[b])
                b++;
        return b;
}

int veil_catalog_new(struct veil_catalog **out, size_t max_new, int n_bands,
                     char *errstr, size_t errstr_size) {
        struct veil_catalog *c = calloc(1, sizeof(*c));
        if (!c || alloc_arrays(c, max_new)) {
                veil_catalog_free(c);
                snprintf(errstr, errstr_size, "catalog: out of memory for %zu "
                         "items", max_new);
                return -VEIL_ENOMEM;
        }
        c->n_bands = n_bands;
        *out = c;
        return 0;
}

/* Splits a line in place (RFC 4180 quoting within a line). Returns the
 * field count, -1 on an unterminated quote (a quoted line break included:
 * lines are read one at a time), -2 when there are more than max fields
 * (f has room for max). */
static int split(char *buf, char **f, int max) {
        int n = 0;
        char *r = buf, *w = buf;
        while (n < max) {
                f[n++] = w;
                if (*r == '"') {
                        r++;
                        for (;;) {
                                if (!*r)
                                        return -1;
                                if (*r == '"' && r[1] == '"') {
                                        *w++ = '"';
                                        r += 2;
                                } else if (*r == '"') {
                                        r++;
                                        break;
                                } else {
                                        *w++ = *r++;
                                }
                        }
                }
                while (*r && *r != ',')
                        *w++ = *r++;
                if (!*r) {
                        *w = '\0';
                        return n;
                }
                *w++ = '\0';
                r++;
        }
        return -2;
}

/* What split's error means, for a message. */
static const char *split_error(int rc) {
        return rc == -1 ? "unterminated quote (a quoted field cannot hold a "
                          "line break)"
                        : "more fields than the header";
}

/* Text cut to a whole UTF-8 character (a cut may split one). */
static void utf8_trim(char *s) {
        size_t l = strlen(s);
        while (l && !veil_utf8_valid(s, l))
                s[--l] = '\0';
}

static void chomp(char *s) {
        size_t l = strlen(s);
        while (l && (s[l - 1] == '\n' || s[l - 1] == '\r'))
                s[--l] = '\0';
}

static int find_col(char **hdr, int n, const char *want, const char *const *dflt) {
        if (want) {
                for (int i = 0; i < n; i++)
                        if (!strcmp(hdr[i], want))
                                return i;
                return -2; /* named but absent: an error for the caller */
        }
        for (const char *const *d = dflt; *d; d++)
                for (int i = 0; i < n; i++)
                        if (!strcmp(hdr[i], *d))
                                return i;
        return -1;
}

/* Trailing words of product names that say how a thing looks, not what
 * it is ("… HOLDER PINK", "… TINS PANTRY DESIGN"): skipped. */
static int modifier(const char *w, size_t n) {
        static const char *const words[] = {
                "design", "designs", "set", "sets", "pink", "blue", "red",
                "green", "white", "black", "cream", "ivory", "gold", "silver",
                "large", "small", "mini", "jumbo", "assorted", "retrospot",
                "polkadot", "vintage", "colour", "colours", "christmas",
                "london", "spot", "pack", "with", "and"};
        for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
                if (strlen(words[i]) == n && !strncasecmp(w, words[i], n))
                        return 1;
        return 0;
}

/* The last word of three letters or more that is not a modifier,
 * lower-cased ("WHITE METAL LANTERN" → "lantern"). */
static void category_of(const char *desc, char *out, size_t out_size) {
        out[0] = '\0';
        if (!desc)
                return;
        const char *end = desc + strlen(desc), *fallback = NULL, *fb_end = NULL;
        while (end > desc) {
                const char *e = end;
                while (e > desc && !isalpha((unsigned char)e[-1]))
                        e--;
                const char *s = e;
                while (s > desc && (isalpha((unsigned char)s[-1]) ||
                                    s[-1] == '-'))
                        s--;
                if (e - s >= 3 && !fallback) {
                        fallback = s;
                        fb_end = e;
                }
                if (e - s >= 3 && !modifier(s, (size_t)(e - s))) {
                        fallback = s;
                        fb_end = e;
                        break;
                }
                end = s;
        }
        size_t k = 0;
        for (const char *p = fallback; p && p < fb_end && k + 1 < out_size;
             p++)
                out[k++] = (char)tolower((unsigned char)*p);
        out[k] = '\0';
}

static int cmp_float(const void *a, const void *b) {
        float x = *(const float *)a, y = *(const float *)b;
        return (x > y) - (x < y);
}

static void compute_bands(struct veil_catalog *c) {
        size_t n = 0;
        float *p = malloc((c->n ? c->n : 1) * sizeof(float));
        if (!p)
                return;
        for (size_t i = 0; i < c->n; i++)
                if (c->price[i] >= 0)
                        p[n++] = c->price[i];
        if (n && c->n_bands > 0) {
                qsort(p, n, sizeof(float), cmp_float);
                for (int b = 1; b < c->n_bands; b++)
                        c->band_edge[b - 1] = p[(size_t)b * n /
                                                (size_t)c->n_bands];
        } else {
                c->n_bands = n ? c->n_bands : 0;
        }
        free(p);
        for (size_t i = 0; i < c->n; i++)
                c->band[i] = (int8_t)veil_catalog_band(c, c->price[i]);
}

int veil_catalog_load(struct veil_catalog **out, const char *path,
                      const struct veil_catalog_columns *cols, size_t max_new,
                      int n_bands, char *errstr, size_t errstr_size) {
        static const char *const d_id[] = {"id", "item", "item_id", NULL};
        static const char *const d_cat[] = {"category", NULL};
        static const char *const d_price[] = {"price", "median_unit_price",
                                              "unit_price", NULL};
        static const char *const d_desc[] = {"description", "name", "title",
                                             NULL};
        static const struct veil_catalog_columns none = {0};
        if (!cols)
                cols = &none;
        if (n_bands < 1 || n_bands > VEIL_CATALOG_MAX_BANDS) {
                snprintf(errstr, errstr_size,
                         "catalog: price bands must be 1..%d, got %d",
                         VEIL_CATALOG_MAX_BANDS, n_bands);
                return -VEIL_EINVAL;
        }
        FILE *f = fopen(path, "r");
        if (!f) {
                snprintf(errstr, errstr_size, "catalog %s: %s", path,
                         strerror(errno));
                return -VEIL_ENOENT;
        }
        char *line = NULL;
        size_t lcap = 0;
        long lineno = 0;
        size_t rows = 0;
        /* Count the rows first so the arrays are allocated once. */
        while (getline(&line, &lcap, f) > 0)
                rows++;
        rewind(f);
        struct veil_catalog *c = calloc(1, sizeof(*c));
        int rc = 0;
        char **fld = NULL;
        int max_fields = 0;
        int ci = -1, cc = -1, cp = -1, cd = -1;
        if (!c || alloc_arrays(c, rows + max_new)) {
                snprintf(errstr, errstr_size, "catalog %s: out of memory",
                         path);
                rc = -VEIL_ENOMEM;
                goto out;
        }
        c->n_bands = n_bands;
        if (getline(&line, &lcap, f) <= 0) {
                snprintf(errstr, errstr_size, "catalog %s:1: no header line",
                         path);
                rc = -VEIL_EINVAL;
                goto out;
        }
        lineno = 1;
        chomp(line);
        /* A byte-order mark (Excel's "CSV UTF-8") is not part of the first
         * column's name. */
        char *hdr = strncmp(line, "\xEF\xBB\xBF", 3) ? line : line + 3;
        /* As many fields as the header has commas, and one: no column is
         * lost however wide the export. */
        max_fields = 1;
        for (const char *q = hdr; *q; q++)
                max_fields += *q == ',';
        if (!(fld = calloc((size_t)max_fields, sizeof(*fld)))) {
                snprintf(errstr, errstr_size, "catalog %s: out of memory",
                         path);
                rc = -VEIL_ENOMEM;
                goto out;
        }
        int nh = split(hdr, fld, max_fields);
        if (nh < 0) {
                snprintf(errstr, errstr_size, "catalog %s:1: %s", path,
                         split_error(nh));
                rc = -VEIL_EINVAL;
                goto out;
        }
        ci = find_col(fld, nh, cols->id, d_id);
        cc = find_col(fld, nh, cols->category, d_cat);
        cp = find_col(fld, nh, cols->price, d_price);
        cd = find_col(fld, nh, cols->description, d_desc);
        if (ci < 0 || cc == -2 || cp == -2 || cd == -2) {
                const char *what = ci < 0 ? "id" : cc == -2 ? "category"
                                   : cp == -2 ? "price" : "description";
                const char *name = ci < 0 ? (cols->id ? cols->id : "id, item or item_id")
                                   : cc == -2 ? cols->category
                                   : cp == -2 ? cols->price : cols->description;
                snprintf(errstr, errstr_size,
                         "catalog %s:1: no column '%s' for the %s; the "
                         "header has %d columns",
                         path, name, what, nh);
                rc = -VEIL_EINVAL;
                goto out;
        }
        while (getline(&line, &lcap, f) > 0) {
                lineno++;
                chomp(line);
                if (!line[0])
                        continue;
                int n = split(line, fld, max_fields);
                if (n < 0) {
                        snprintf(errstr, errstr_size, "catalog %s:%ld: %s",
                                 path, lineno, split_error(n));
                        rc = -VEIL_EINVAL;
                        goto out;
                }
                if (n != nh) {
                        snprintf(errstr, errstr_size,
                                 "catalog %s:%ld: %d fields, the header has "
                                 "%d",
                                 path, lineno, n, nh);
                        rc = -VEIL_EINVAL;
                        goto out;
                }
                const char *id = fld[ci];
                size_t id_len = strlen(id);
                /* As the host checks an event's: an item id it would
                 * refuse in a recommendation must not be recommended. */
                if (!id_len || id_len > VEIL_ID_MAX ||
                    !veil_utf8_valid(id, id_len)) {
                        snprintf(errstr, errstr_size,
                                 "catalog %s:%ld: item id %s", path, lineno,
                                 !id_len ? "is empty"
                                 : id_len > VEIL_ID_MAX
                                         ? "is longer than 512 bytes"
                                         : "is not valid UTF-8");
                        rc = -VEIL_EINVAL;
                        goto out;
                }
                if (veil_catalog_find(c, id) >= 0)
                        continue; /* first row wins */
                double price = -1.0;
                if (cp >= 0 && *fld[cp]) {
                        char *end;
                        errno = 0;
                        price = strtod(fld[cp], &end);
                        if (*end || errno ||
                            !(isfinite(price) && price >= 0)) {
                                snprintf(errstr, errstr_size,
                                         "catalog %s:%ld: price must be a "
                                         "number >= 0",
                                         path, lineno);
                                rc = -VEIL_EINVAL;
                                goto out;
                        }
                }
                const char *desc = cd >= 0 ? fld[cd] : NULL;
                /* Both reach recommendations (an explanation's words). */
                const char *bad =
                        desc && !veil_utf8_valid(desc, strlen(desc))
                                ? "description"
                        : cc >= 0 && !veil_utf8_valid(fld[cc], strlen(fld[cc]))
                                ? "category"
                                : NULL;
                if (bad) {
                        snprintf(errstr, errstr_size,
                                 "catalog %s:%ld: the %s is not valid UTF-8",
                                 path, lineno, bad);
                        rc = -VEIL_EINVAL;
                        goto out;
                }
                char cat[MAX_CATEGORY];
                if (cc >= 0) {
                        snprintf(cat, sizeof(cat), "%s", fld[cc]);
                        for (char *p = cat; *p; p++)
                                *p = (char)tolower((unsigned char)*p);
                } else {
                        category_of(desc, cat, sizeof(cat));
                }
                utf8_trim(cat);
                if (add(c, id, cat, price, desc) < 0) {
                        snprintf(errstr, errstr_size,
                                 "catalog %s:%ld: out of memory", path,
                                 lineno);
                        rc = -VEIL_ENOMEM;
                        goto out;
                }
        }
        c->n_file = c->n;
        /* Room for max_new items from events, whatever the file held. */
        c->cap = c->n_file + max_new;
        compute_bands(c);
out:
        free(fld);
        free(line);
        fclose(f);
        if (rc) {
                veil_catalog_free(c);
                return rc;
        }
        *out = c;
        return 0;
}

char *veil_catalog_path(const char *where, const char *path) {
        if (!path)
                return NULL;
        if (path[0] == '/' || !where)
                return strdup(path);
        /* where = "<file>:<line>:<col>": cut the two numbers, then the
         * file name. */
        char *w = strdup(where);
        if (!w)
                return NULL;
        for (int k = 0; k < 2; k++) {
                char *colon = strrchr(w, ':');
                if (colon)
                        *colon = '\0';
        }
        char *slash = strrchr(w, '/');
        char *out;
        if (!slash) {
                out = strdup(path);
        } else {
                slash[1] = '\0';
                size_t n = strlen(w) + strlen(path) + 1;
                out = malloc(n);
                if (out)
                        snprintf(out, n, "%s%s", w, path);
        }
        free(w);
        return out;
}

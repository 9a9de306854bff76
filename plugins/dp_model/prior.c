#include "prior.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

struct word {
        uint64_t h;
        uint32_t item;
};

static int by_hash(const void *a, const void *b) {
        const struct word *x = a, *y = b;
        if (x->h != y->h)
                return x->h < y->h ? -1 : 1;
        return x->item < y->item ? -1 : x->item > y->item;
}

static uint64_t splitmix(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* The words of s (runs of letters, case-folded) as hashes; returns the
 * count, at most max. */
static size_t words(const char *s, uint64_t *out, size_t max) {
        size_t n = 0;
        while (*s && n < max) {
                while (*s && !isalpha((unsigned char)*s))
                        s++;
                if (!*s)
                        break;
                uint64_t h = 14695981039346656037ULL;
                for (; isalpha((unsigned char)*s); s++)
                        h = (h ^ (unsigned char)toupper((unsigned char)*s)) *
                            1099511628211ULL;
                out[n++] = h;
        }
        return n;
}

#define MAX_WORDS 64

/* Every (word, item) occurrence of the first n catalog items'
 * descriptions, sorted by word then item: a word's run gives its document
 * frequency, and each item's occurrences of it (its tf). NULL when out of
 * memory. */
static struct word *occurrences(const struct veil_catalog *c, size_t *nw_out) {
        size_t n = c->n_file, nw = 0, cap = 1024;
        struct word *w = malloc(cap * sizeof(*w));
        uint64_t hs[MAX_WORDS];
        if (!w)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                size_t k = c->description[i]
                                   ? words(c->description[i], hs, MAX_WORDS)
                                   : 0;
                for (size_t j = 0; j < k; j++) {
                        if (nw == cap) {
                                struct word *p =
                                        realloc(w, 2 * cap * sizeof(*w));
                                if (!p) {
                                        free(w);
                                        return NULL;
                                }
                                w = p;
                                cap *= 2;
                        }
                        w[nw++] = (struct word){hs[j], (uint32_t)i};
                }
        }
        qsort(w, nw, sizeof(*w), by_hash);
        *nw_out = nw;
        return w;
}

int veil_model_prior_text(struct veil_model *m, float norm, uint64_t seed) {
        const struct veil_catalog *c = m->cat;
        size_t n = c->n_file, d = m->d, nw = 0;
        struct word *w = occurrences(c, &nw);
        float *acc = malloc(d * sizeof(float));
        if (!w || !acc) {
                free(w);
                free(acc);
                return -VEIL_ENOMEM;
        }
        float *rows = calloc(n * d, sizeof(float));
        if (!rows) {
                free(w);
                free(acc);
                return -VEIL_ENOMEM;
        }
        for (size_t a = 0; a < nw;) {
                size_t b = a, df = 0;
                for (; b < nw && w[b].h == w[a].h; b++)
                        df += b == a || w[b].item != w[b - 1].item;
                float idf = (float)log((double)n / (double)df);
                uint64_t s = w[a].h ^ seed;
                for (size_t k = 0; k < d; k++)
                        acc[k] = (float)((double)(splitmix(&s) >> 11) *
                                                 0x1.0p-53 * 2.0 -
                                         1.0);
                for (size_t j = a; j < b; j++) {
                        float *r = rows + (size_t)w[j].item * d;
                        for (size_t k = 0; k < d; k++)
                                r[k] += idf * acc[k];
                }
                a = b;
        }
        for (size_t i = 0; i < n; i++) {
                float *r = rows + i * d, s = 0;
                for (size_t k = 0; k < d; k++)
                        s += r[k] * r[k];
                if (!(s > 0))
                        continue; /* no description: the row stays */
                float f = norm / sqrtf(s);
                for (size_t k = 0; k < d; k++) {
                        m->U[i * d + k] = r[k] * f;
                        m->V[i * d + k] = r[k] * f;
                }
        }
        free(rows);
        free(w);
        free(acc);
        return 0;
}

/* One word of one item: the word's index and its tf·idf weight. */
struct posting {
        uint32_t at; /* item (in a word's list) or word (in an item's) */
        float wt;
};

/* The L best (largest cosine, then lower row) of the candidates touched,
 * into item/sim, best first. */
static void keep_best(const float *acc, const float *norm, float ni,
                      const uint32_t *touched, size_t nt, uint32_t self,
                      size_t L, uint32_t *item, float *sim) {
        size_t kept = 0;
        for (size_t t = 0; t < nt; t++) {
                uint32_t j = touched[t];
                if (j == self || !(acc[j] > 0))
                        continue;
                float cs = acc[j] / (ni * norm[j]);
                if (kept == L && !(cs > sim[L - 1] ||
                                   (cs == sim[L - 1] && j < item[L - 1])))
                        continue;
                size_t p = kept < L ? kept++ : L - 1;
                for (; p > 0 && (cs > sim[p - 1] ||
                                 (cs == sim[p - 1] && j < item[p - 1]));
                     p--) {
                        sim[p] = sim[p - 1];
                        item[p] = item[p - 1];
                }
                sim[p] = cs;
                item[p] = j;
        }
}

int veil_prior_neighbors(const struct veil_catalog *c, size_t L,
                         struct veil_prior_nb *nb) {
        size_t n = c->n_file, nw = 0, nv = 0;
        int rc = -VEIL_ENOMEM;
        memset(nb, 0, sizeof(*nb));
        if (!L || !n)
                return 0;
        struct word *w = occurrences(c, &nw);
        /* Postings by word (items) and by item (words), the word runs'
         * starts, item norms, and the dot-product accumulator. */
        struct posting *by_word = malloc((nw + 1) * sizeof(*by_word));
        struct posting *by_item = malloc((nw + 1) * sizeof(*by_item));
        size_t *wstart = malloc((nw + 2) * sizeof(size_t));
        size_t *istart = calloc(n + 2, sizeof(size_t));
        float *norm = calloc(n, sizeof(float));
        float *acc = calloc(n, sizeof(float));
        uint32_t *touched = malloc(n * sizeof(uint32_t));
        nb->item = malloc(n * L * sizeof(uint32_t));
        nb->sim = malloc(n * L * sizeof(float));
        if (!w || !by_word || !by_item || !wstart || !istart || !norm ||
            !acc || !touched || !nb->item || !nb->sim)
                goto out;
        size_t np = 0;
        for (size_t a = 0; a < nw;) {
                size_t b = a, df = 0;
                for (; b < nw && w[b].h == w[a].h; b++)
                        df += b == a || w[b].item != w[b - 1].item;
                float idf = (float)log((double)n / (double)df);
                if (idf > 0) { /* a word in every item tells nothing */
                        wstart[nv++] = np;
                        for (size_t j = a; j < b;) {
                                size_t e = j;
                                while (e < b && w[e].item == w[j].item)
                                        e++;
                                float wt = (float)(e - j) * idf; /* tf·idf */
                                by_word[np++] =
                                        (struct posting){w[j].item, wt};
                                norm[w[j].item] += wt * wt;
                                istart[w[j].item + 2]++;
                                j = e;
                        }
                }
                a = b;
        }
        wstart[nv] = np;
        /* Counting sort of the postings by item. */
        for (size_t i = 0; i < n; i++)
                istart[i + 2] += istart[i + 1];
        for (size_t v = 0; v < nv; v++)
                for (size_t p = wstart[v]; p < wstart[v + 1]; p++)
                        by_item[istart[by_word[p].at + 1]++] =
                                (struct posting){(uint32_t)v, by_word[p].wt};
        for (size_t i = 0; i < n; i++)
                norm[i] = sqrtf(norm[i]);
        for (size_t i = 0; i < n * L; i++) {
                nb->item[i] = UINT32_MAX;
                nb->sim[i] = 0;
        }
        for (size_t i = 0; i < n; i++) {
                size_t nt = 0;
                for (size_t p = istart[i]; p < istart[i + 1]; p++) {
                        const struct posting *iw = &by_item[p];
                        for (size_t q = wstart[iw->at];
                             q < wstart[iw->at + 1]; q++) {
                                uint32_t j = by_word[q].at;
                                if (acc[j] == 0)
                                        touched[nt++] = j;
                                acc[j] += iw->wt * by_word[q].wt;
                        }
                }
                if (norm[i] > 0)
                        keep_best(acc, norm, norm[i], touched, nt,
                                  (uint32_t)i, L, nb->item + i * L,
                                  nb->sim + i * L);
                for (size_t t = 0; t < nt; t++)
                        acc[touched[t]] = 0;
        }
        nb->n = n;
        nb->L = L;
        rc = 0;
out:
        if (rc)
                veil_prior_nb_free(nb);
        free(w);
        free(by_word);
        free(by_item);
        free(wstart);
        free(istart);
        free(norm);
        free(acc);
        free(touched);
        return rc;
}

int veil_prior_catalog_order(const struct veil_catalog *c, size_t W,
                             struct veil_prior_nb *nb) {
        size_t n = c->n_file, L = 2 * W;
        memset(nb, 0, sizeof(*nb));
        if (!W || !n)
                return 0;
        nb->item = malloc(n * L * sizeof(uint32_t));
        nb->sim = malloc(n * L * sizeof(float));
        if (!nb->item || !nb->sim) {
                veil_prior_nb_free(nb);
                return -VEIL_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                uint32_t *it = nb->item + i * L;
                float *sim = nb->sim + i * L;
                size_t k = 0;
                for (size_t dist = 1; dist <= W; dist++) {
                        if (i >= dist) {
                                it[k] = (uint32_t)(i - dist);
                                sim[k++] = 1.0f / (float)(1 + dist);
                        }
                        if (i + dist < n) {
                                it[k] = (uint32_t)(i + dist);
                                sim[k++] = 1.0f / (float)(1 + dist);
                        }
                }
                for (; k < L; k++) {
                        it[k] = UINT32_MAX;
                        sim[k] = 0;
                }
        }
        nb->n = n;
        nb->L = L;
        return 0;
}

void veil_prior_nb_free(struct veil_prior_nb *nb) {
        free(nb->item);
        free(nb->sim);
        memset(nb, 0, sizeof(*nb));
}

void veil_prior_nb_add(const struct veil_prior_nb *nb, int32_t a, float wt,
                       float *row) {
        if (a < 0 || (size_t)a >= nb->n)
                return; /* not a catalog item: no description */
        const uint32_t *it = nb->item + (size_t)a * nb->L;
        const float *cs = nb->sim + (size_t)a * nb->L;
        for (size_t k = 0; k < nb->L && it[k] != UINT32_MAX; k++)
                row[it[k]] += wt * cs[k];
}

float veil_prior_nb_get(const struct veil_prior_nb *nb, int32_t a,
                        uint32_t j) {
        if (a < 0 || (size_t)a >= nb->n)
                return 0;
        const uint32_t *it = nb->item + (size_t)a * nb->L;
        for (size_t k = 0; k < nb->L && it[k] != UINT32_MAX; k++)
                if (it[k] == j)
                        return nb->sim[(size_t)a * nb->L + k];
        return 0;
}

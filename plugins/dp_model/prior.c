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

int veil_model_prior_text(struct veil_model *m, float norm, uint64_t seed) {
        const struct veil_catalog *c = m->cat;
        size_t n = c->n_file, d = m->d, nw = 0, cap = 1024;
        struct word *w = malloc(cap * sizeof(*w));
        float *acc = malloc(d * sizeof(float));
        if (!w || !acc) {
                free(w);
                free(acc);
                return -VEIL_ENOMEM;
        }
        uint64_t hs[MAX_WORDS];
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
                                        free(acc);
                                        return -VEIL_ENOMEM;
                                }
                                w = p;
                                cap *= 2;
                        }
                        w[nw++] = (struct word){hs[j], (uint32_t)i};
                }
        }
        /* Sorted by word then item: a word's run gives its document
         * frequency, and each item's occurrences of it (its tf). */
        qsort(w, nw, sizeof(*w), by_hash);
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

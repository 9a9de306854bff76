/*
 * test_dp_model — the model's modules on their own: the batch sgemm
 * against naive dot products, top-k ties and exclusions against a full
 * sort, learning on a stream with a planted structure against popular,
 * and per-user clipping against gradients materialized in double (checked
 * themselves by finite differences).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "learn.h"
#include "model.h"
#include "topk.h"

static uint64_t rng_state = 88172645463325252ULL;
static double urand(void) { return veil_model_uniform(&rng_state); }
static size_t irand(size_t n) { return (size_t)(urand() * (double)n) % n; }

static struct veil_model *new_model(size_t items, size_t extra, size_t d,
                                    size_t space, uint64_t seed) {
        char err[256], id[32];
        struct veil_catalog *cat;
        assert_int_equal(veil_catalog_new(&cat, items + extra, 5, err,
                                          sizeof(err)),
                         0);
        struct veil_model *m;
        assert_int_equal(veil_model_new(&m, cat, d, space, 0.3f, seed, err,
                                        sizeof(err)),
                         0);
        for (size_t i = 0; i < items; i++) {
                snprintf(id, sizeof(id), "i%zu", i);
                assert_int_equal(veil_model_item(m, id, 1), (int32_t)i);
        }
        for (size_t i = 0; i < items; i++)
                m->b[i] = (float)(urand() - 0.5);
        return m;
}

/* ---- scoring ---------------------------------------------------------- */

/* d of 13 takes the scalar query, 24 and 72 the vector one with a partial
 * register set, 64 the vector one whole. */
static void score_matches_naive(size_t d) {
        const size_t items = 37, space = 29, n = 19, ld = 41;
        struct veil_model *m = new_model(items, 4, d, space, 7);
        float *Q = calloc(n * d, sizeof(float));
        float *S = calloc(n * ld, sizeof(float));
        for (size_t i = 0; i < n; i++) {
                uint32_t feat[5];
                int32_t recent[4];
                size_t nf = irand(6), nr = irand(5);
                for (size_t f = 0; f < nf; f++)
                        feat[f] = (uint32_t)irand(1000); /* folded mod space */
                for (size_t r = 0; r < nr; r++)
                        recent[r] = (int32_t)irand(items);
                int32_t item = i % 3 ? (int32_t)irand(items) : -1;
                veil_model_query(m, feat, nf, item, recent, nr, 0.7f,
                                 Q + i * d);
                for (size_t k = 0; k < d; k++) {
                        double q = 0;
                        for (size_t f = 0; f < nf; f++)
                                q += m->E[(feat[f] % space) * d + k];
                        if (item >= 0)
                                q += m->U[(size_t)item * d + k];
                        for (size_t r = 0; r < nr; r++)
                                q += 0.7 / (double)nr *
                                     m->U[(size_t)recent[r] * d + k];
                        assert_true(fabs(q - Q[i * d + k]) < 1e-5);
                }
        }
        veil_model_score(m, Q, n, items, S, ld);
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < items; j++) {
                        double s = 0;
                        for (size_t k = 0; k < d; k++)
                                s += (double)Q[i * d + k] * m->V[j * d + k];
                        assert_true(fabs(s - S[i * ld + j]) <
                                    1e-5 * (1 + fabs(s)));
                }
        free(Q);
        free(S);
        veil_model_free(m);
}

static void test_score_matches_naive(void **st) {
        (void)st;
        const size_t dims[] = {13, 24, 64, 72};
        for (size_t i = 0; i < 4; i++)
                score_matches_naive(dims[i]);
}

/* ---- top-k ------------------------------------------------------------ */

struct cand {
        float v;
        uint32_t j;
};

static int by_score(const void *a, const void *b) {
        const struct cand *x = a, *y = b;
        if (x->v != y->v)
                return x->v > y->v ? -1 : 1;
        return x->j < y->j ? -1 : 1;
}

static void topk_against_sort(void);

/* Every vector level the CPU has: two passes with AVX-512 or AVX2, one
 * pass with SSE; each against the same reference. */
static void test_topk_against_sort(void **st) {
        (void)st;
        for (int level = 2; level >= 0; level--) {
                veil_topk_force_isa(level);
                topk_against_sort();
        }
        veil_topk_force_isa(-1);
}

static void topk_against_sort(void) {
        const size_t sizes[] = {1, 5, 15, 16, 17, 31, 32, 33, 100, 1000, 3665};
        const size_t ks[] = {1, 3, 10, 100};
        float *s = malloc(4000 * sizeof(float)), *b = malloc(4000 * sizeof(float));
        float *sb = malloc(4000 * sizeof(float));
        uint32_t *mark = calloc(4000, sizeof(uint32_t));
        struct cand *all = malloc(4000 * sizeof(*all));
        uint32_t idx[100], stamp = 0;
        float val[100];
        for (int trial = 0; trial < 300; trial++) {
                size_t n = sizes[trial % 11], k = ks[(trial / 11) % 4];
                int levels = trial % 3 == 0 ? 4 : 1000; /* many ties */
                stamp++;
                for (size_t j = 0; j < n; j++) {
                        s[j] = (float)(irand((size_t)levels)) / 7.0f;
                        b[j] = trial % 2 ? 0.0f : (float)irand(3) / 7.0f;
                        if (urand() < 0.1)
                                mark[j] = stamp;
                }
                if (trial % 5 == 0 && n > 3)
                        s[n / 2] = NAN;
                size_t ne = 0;
                for (size_t j = 0; j < n; j++) {
                        float v = s[j] + b[j];
                        if (mark[j] != stamp && v == v)
                                all[ne++] = (struct cand){v, (uint32_t)j};
                }
                qsort(all, ne, sizeof(*all), by_score);
                size_t got = veil_topk(s, b, n, mark, stamp, k, idx, val);
                assert_int_equal(got, ne < k ? ne : k);
                for (size_t i = 0; i < got; i++) {
                        assert_int_equal(idx[i], all[i].j);
                        assert_true(val[i] == all[i].v);
                        assert_int_not_equal(mark[idx[i]], stamp);
                }
                /* The bias already in the scores (b NULL): the same. */
                for (size_t j = 0; j < n; j++)
                        sb[j] = s[j] + b[j];
                assert_int_equal(veil_topk(sb, NULL, n, mark, stamp, k, idx,
                                           val),
                                 got);
                for (size_t i = 0; i < got; i++) {
                        assert_int_equal(idx[i], all[i].j);
                        assert_true(val[i] == all[i].v);
                }
        }
        /* The best items excluded (the two-pass threshold then counts
         * them, finds too few and the row is scanned again): still the
         * best of the rest. */
        for (int trial = 0; trial < 20; trial++) {
                size_t n = trial % 2 ? 3665 : 1000, k = 1 + (size_t)trial % 10;
                stamp++;
                for (size_t j = 0; j < n; j++) {
                        s[j] = (float)urand();
                        b[j] = 0.0f;
                }
                size_t ne = 0;
                for (size_t j = 0; j < n; j++)
                        all[ne++] = (struct cand){s[j], (uint32_t)j};
                qsort(all, ne, sizeof(*all), by_score);
                for (size_t i = 0; i < 2 * k + (size_t)trial; i++)
                        mark[all[i].j] = stamp;
                size_t first = 2 * k + (size_t)trial;
                assert_int_equal(veil_topk(s, b, n, mark, stamp, k, idx, val),
                                 k);
                for (size_t i = 0; i < k; i++) {
                        assert_int_equal(idx[i], all[first + i].j);
                        assert_true(val[i] == all[first + i].v);
                }
        }
        /* A dozen candidates above the threshold, several of them equal
         * (the few ranked by counting, not by insertion), some excluded,
         * with and without a separate bias. */
        for (int trial = 0; trial < 40; trial++) {
                size_t n = trial % 2 ? 3665 : 777, k = 1 + (size_t)trial % 10;
                stamp++;
                for (size_t j = 0; j < n; j++) {
                        s[j] = (float)urand();
                        b[j] = trial % 4 < 2 ? 0.0f : (float)urand() * 0.01f;
                }
                /* Ties among the best: copies of a few top scores. */
                for (int t = 0; t < 6; t++) {
                        size_t best = 0;
                        for (size_t j = 1; j < n; j++)
                                if (s[j] + b[j] > s[best] + b[best] &&
                                    irand(4))
                                        best = j;
                        size_t to = irand(n);
                        s[to] = s[best];
                        b[to] = b[best];
                        if (t == 5 && trial % 3 == 0)
                                mark[best] = stamp;
                }
                size_t ne = 0;
                for (size_t j = 0; j < n; j++)
                        if (mark[j] != stamp)
                                all[ne++] = (struct cand){s[j] + b[j],
                                                          (uint32_t)j};
                qsort(all, ne, sizeof(*all), by_score);
                assert_int_equal(veil_topk(s, b, n, mark, stamp, k, idx, val),
                                 k);
                for (size_t i = 0; i < k; i++) {
                        assert_int_equal(idx[i], all[i].j);
                        assert_true(val[i] == all[i].v);
                }
        }
        /* NaNs in every lane of a block (the block maxima pass 2 tests
         * skip them without hiding a number of the block), and rows longer
         * than the blocks pass 1 keeps a maximum of (the later blocks are
         * then tested item by item), their best items at the end. */
        {
                const size_t nl = 20011;
                float *ls = malloc(nl * sizeof(float));
                float *lb = malloc(nl * sizeof(float));
                uint32_t *lm = calloc(nl, sizeof(uint32_t));
                struct cand *la = malloc(nl * sizeof(*la));
                for (int trial = 0; trial < 24; trial++) {
                        size_t n = trial % 3 == 0 ? nl : 3665 + (size_t)trial;
                        size_t k = 1 + (size_t)trial % 10;
                        stamp++;
                        for (size_t j = 0; j < n; j++) {
                                ls[j] = (float)urand();
                                lb[j] = trial % 2 ? 0.0f
                                                  : (float)urand() * 0.01f;
                                if (irand(trial % 4 ? 40 : 3) == 0)
                                        ls[j] = NAN;
                                if (urand() < 0.02)
                                        lm[j] = stamp;
                        }
                        /* The best items one to a block, in the block's
                         * second half, a NaN 32 items before each (the
                         * same lane of the block's first half), in blocks
                         * anywhere, the last ones included. */
                        for (int t = 0; t < 14; t++) {
                                size_t blk = t < 2 ? n / 64 - 1 - (size_t)t
                                                   : irand(n / 64);
                                size_t p = blk * 64 + 32 + irand(32);
                                ls[p] = 2.0f + (float)urand();
                                ls[p - 32] = NAN;
                        }
                        for (size_t j = n - 5; j < n; j++)
                                ls[j] = 2.0f + (float)urand();
                        size_t ne = 0;
                        for (size_t j = 0; j < n; j++) {
                                float v = ls[j] + lb[j];
                                if (lm[j] != stamp && v == v)
                                        la[ne++] = (struct cand){
                                                v, (uint32_t)j};
                        }
                        qsort(la, ne, sizeof(*la), by_score);
                        assert_int_equal(veil_topk(ls, lb, n, lm, stamp, k,
                                                   idx, val),
                                         k);
                        for (size_t i = 0; i < k; i++) {
                                assert_int_equal(idx[i], la[i].j);
                                assert_true(val[i] == la[i].v);
                        }
                }
                free(ls);
                free(lb);
                free(lm);
                free(la);
        }
        /* Everything excluded: nothing. */
        stamp++;
        for (size_t j = 0; j < 40; j++)
                mark[j] = stamp;
        assert_int_equal(veil_topk(s, b, 40, mark, stamp, 10, idx, val), 0);
        /* Ties: equal scores come in index order. */
        for (size_t j = 0; j < 50; j++)
                s[j] = b[j] = 0;
        s[7] = s[44] = 1;
        assert_int_equal(veil_topk(s, b, 50, NULL, 0, 4, idx, val), 4);
        assert_int_equal(idx[0], 7);
        assert_int_equal(idx[1], 44);
        assert_int_equal(idx[2], 0);
        assert_int_equal(idx[3], 1);
        free(s);
        free(b);
        free(sb);
        free(mark);
        free(all);
}

/* ---- learning on a planted structure ----------------------------------- */

/* Items in clusters; within a visit a user mostly moves to the item's fixed
 * successor. A model that learns item → next item beats the most popular
 * items by far; one that learns nothing does not. */
static void test_learning_beats_popular(void **st) {
        (void)st;
        enum { ITEMS = 200, CLUSTER = 10, USERS = 120, EVENTS = 24000,
               BATCH = 64, K = 10 };
        struct veil_model *m = new_model(ITEMS, 0, 16, 64, 3);
        memset(m->b, 0, ITEMS * sizeof(float));
        struct veil_learn_cfg lc = {0.1f, 1.0f, 1.0f, 64, 32, 0};
        struct veil_learner *L;
        assert_int_equal(veil_learner_new(&L, &lc, m, 5), 0);
        int succ[ITEMS], cur[USERS], pend[USERS][K], npend[USERS];
        int pend_pop[USERS][K];
        long count[ITEMS];
        memset(count, 0, sizeof(count));
        memset(npend, 0, sizeof(npend));
        for (int i = 0; i < ITEMS; i++) {
                int c = i / CLUSTER;
                succ[i] = c * CLUSTER + (int)((i % CLUSTER) * 7 + 3) % CLUSTER;
        }
        for (int u = 0; u < USERS; u++)
                cur[u] = -1;
        double hits = 0, pop_hits = 0, scored = 0;
        float Q[BATCH * 16], S[BATCH * ITEMS];
        struct veil_example ex[BATCH];
        int users[BATCH], items[BATCH];
        uint32_t mark[ITEMS];
        memset(mark, 0, sizeof(mark));
        uint32_t stamp = 0;
        for (int e = 0; e < EVENTS; e += BATCH) {
                /* Popular: counts before the batch, top K + 1. */
                int top[K + 1];
                for (int t = 0; t <= K; t++) {
                        int best = -1;
                        for (int i = 0; i < ITEMS; i++) {
                                int taken = 0;
                                for (int q = 0; q < t; q++)
                                        taken |= top[q] == i;
                                if (!taken && (best < 0 || count[i] > count[best]))
                                        best = i;
                        }
                        top[t] = best;
                }
                size_t n_ex = 0;
                uint32_t uid[USERS];
                int seen[USERS];
                memset(seen, -1, sizeof(seen));
                uint32_t n_users = 0;
                for (int i = 0; i < BATCH; i++) {
                        int u = (int)irand(USERS), prev = cur[u], next;
                        if (prev < 0 || urand() < 0.1) /* a new visit */
                                next = (int)irand(ITEMS / CLUSTER / 2) *
                                               CLUSTER +
                                       (int)irand(CLUSTER);
                        else if (urand() < 0.8)
                                next = succ[prev];
                        else
                                next = prev / CLUSTER * CLUSTER +
                                       (int)irand(CLUSTER);
                        /* Score the recommendations made at u's last event. */
                        if (npend[u]) {
                                scored++;
                                for (int t = 0; t < npend[u]; t++) {
                                        hits += pend[u][t] == next;
                                        pop_hits += pend_pop[u][t] == next;
                                }
                        }
                        users[i] = u;
                        items[i] = next;
                        veil_model_query(m, NULL, 0, next, NULL, 0, 1.0f,
                                         Q + i * 16);
                        if (prev >= 0) {
                                if (seen[u] < 0)
                                        seen[u] = (int)n_users++;
                                uid[n_ex] = (uint32_t)seen[u];
                                ex[n_ex] = (struct veil_example){
                                        NULL, 0, prev, NULL, 0, next,
                                        uid[n_ex]};
                                n_ex++;
                        }
                        cur[u] = next;
                }
                veil_model_score(m, Q, BATCH, ITEMS, S, ITEMS);
                for (int i = 0; i < BATCH; i++) {
                        int u = users[i];
                        mark[items[i]] = ++stamp;
                        uint32_t idx[K];
                        float val[K];
                        size_t got = veil_topk(S + i * ITEMS, m->b, ITEMS,
                                               mark, stamp, K, idx, val);
                        npend[u] = (int)got;
                        for (size_t t = 0; t < got; t++)
                                pend[u][t] = (int)idx[t];
                        int np = 0;
                        for (int t = 0; t <= K && np < K; t++)
                                if (top[t] != items[i])
                                        pend_pop[u][np++] = top[t];
                        count[items[i]]++;
                }
                char err[128];
                assert_int_equal(veil_learn_step(L, m, ex, n_ex, n_users, err,
                                                 sizeof(err)),
                                 0);
        }
        double hr = hits / scored, pop = pop_hits / scored;
        print_message("planted structure: model hit-rate@10 %.3f, popular "
                      "%.3f over %.0f recommendations\n",
                      hr, pop, scored);
        assert_true(hr > 0.5);
        assert_true(hr > 2.0 * pop);
        assert_true(m->steps == EVENTS / BATCH);
        veil_learner_free(L);
        veil_model_free(m);
}

/* ---- the three ways a step's sum reaches the model ------------------- */

/* Without a noise hook the sums are applied from the learner's compact
 * rows; with one they are scattered into the dense accumulators first,
 * and applied from those (hook returns 0) or by the hook's owner through
 * veil_learn_apply (returns 1). All three must leave the same model, bit
 * for bit — also when a forced support repeats an item (its later column
 * wins) and feature ids beyond the space fold onto a row. */
static int take_hook(void *ctx, struct veil_grad *g, char *errstr,
                     size_t errstr_size) {
        (void)errstr, (void)errstr_size;
        *(struct veil_grad **)ctx = g;
        return 1;
}

static int pass_hook(void *ctx, struct veil_grad *g, char *errstr,
                     size_t errstr_size) {
        (void)ctx, (void)g, (void)errstr, (void)errstr_size;
        return 0;
}

static void test_apply_paths_agree(void **st) {
        (void)st;
        enum { ITEMS = 60, D = 16, SPACE = 23, STEPS = 25, N = 40 };
        struct veil_model *m[3];
        struct veil_learner *L[3];
        struct veil_grad *taken = NULL;
        struct veil_learn_cfg lc = {0.2f, 0.7f, 1.0f, 12, 4, 0};
        for (int v = 0; v < 3; v++) {
                uint64_t keep = rng_state;
                m[v] = new_model(ITEMS, 0, D, SPACE, 5);
                rng_state = keep; /* the same biases for all three */
                assert_int_equal(veil_learner_new(&L[v], &lc, m[v], 9), 0);
        }
        veil_learner_set_noise(L[1], pass_hook, NULL);
        veil_learner_set_noise(L[2], take_hook, &taken);
        uint32_t feat[N][5];
        int32_t recent[N][3];
        struct veil_example ex[N];
        char err[128];
        for (int step = 0; step < STEPS; step++) {
                size_t n = 5 + irand(N - 5);
                for (size_t i = 0; i < n; i++) {
                        for (int f = 0; f < 5; f++)
                                feat[i][f] = (uint32_t)irand(3 * SPACE);
                        for (int r = 0; r < 3; r++)
                                recent[i][r] = (int32_t)irand(ITEMS);
                        ex[i] = (struct veil_example){
                                feat[i], 1 + irand(5),
                                irand(3) ? (int32_t)irand(ITEMS) : -1,
                                recent[i], irand(4), (int32_t)irand(ITEMS),
                                (uint32_t)irand(6)};
                }
                if (step % 4 == 1) {
                        uint32_t sup[6] = {3, 17, 3, 40, 17, 59};
                        for (int v = 0; v < 3; v++)
                                veil_learn_force_support(L[v], sup, 6);
                } else if (step % 4 == 2) {
                        for (int v = 0; v < 3; v++)
                                veil_learn_force_support(L[v], NULL, 0);
                }
                for (int v = 0; v < 3; v++)
                        assert_int_equal(veil_learn_step(L[v], m[v], ex, n, 6,
                                                         err, sizeof(err)),
                                         0);
                assert_non_null(taken);
                veil_learn_apply(L[2], m[2], taken);
                taken = NULL;
        }
        for (int v = 1; v < 3; v++) {
                assert_int_equal(m[v]->steps, m[0]->steps);
                assert_memory_equal(m[v]->V, m[0]->V,
                                    ITEMS * D * sizeof(float));
                assert_memory_equal(m[v]->U, m[0]->U,
                                    ITEMS * D * sizeof(float));
                assert_memory_equal(m[v]->E, m[0]->E,
                                    SPACE * D * sizeof(float));
                assert_memory_equal(m[v]->b, m[0]->b, ITEMS * sizeof(float));
        }
        /* And the model did move. */
        struct veil_model *fresh = new_model(ITEMS, 0, D, SPACE, 5);
        assert_memory_not_equal(fresh->V, m[0]->V, ITEMS * D * sizeof(float));
        veil_model_free(fresh);
        for (int v = 0; v < 3; v++) {
                veil_learner_free(L[v]);
                veil_model_free(m[v]);
        }
}

/* ---- clipping against materialized per-example gradients --------------- */

enum { CI = 6, CD = 3, CS = 5 };

struct dense {
        double V[CI][CD], b[CI], E[CS][CD], U[CI][CD];
};

struct probe {
        struct dense sum;
        int calls;
};

static int probe_hook(void *ctx, struct veil_grad *g, char *errstr,
                      size_t errstr_size) {
        (void)errstr, (void)errstr_size;
        struct probe *p = ctx;
        veil_grad_densify(g);
        memset(&p->sum, 0, sizeof(p->sum));
        for (size_t i = 0; i < CI; i++) {
                p->sum.b[i] = g->b[i];
                for (size_t k = 0; k < CD; k++) {
                        p->sum.V[i][k] = g->V[i * CD + k];
                        p->sum.U[i][k] = g->U[i * CD + k];
                }
        }
        for (size_t r = 0; r < CS; r++)
                for (size_t k = 0; k < CD; k++)
                        p->sum.E[r][k] = g->E[r * CD + k];
        p->calls++;
        return 0;
}

/* A learner of lc on the fixed support sup (4 items) after one step over
 * ex; with pr, the step's summed gradient goes to the probe. */
static struct veil_learner *stepped(const struct veil_learn_cfg *lc,
                                    struct veil_model *m, struct probe *pr,
                                    const uint32_t *sup,
                                    const struct veil_example *ex, size_t n,
                                    size_t n_users) {
        struct veil_learner *L;
        char err[128];
        assert_int_equal(veil_learner_new(&L, lc, m, 1), 0);
        if (pr)
                veil_learner_set_noise(L, probe_hook, pr);
        veil_learn_force_support(L, sup, 4);
        assert_int_equal(veil_learn_step(L, m, ex, n, n_users, err,
                                         sizeof(err)),
                         0);
        return L;
}

static double norm2(const struct dense *x) {
        const double *p = (const double *)x;
        double s = 0;
        for (size_t i = 0; i < sizeof(*x) / sizeof(double); i++)
                s += p[i] * p[i];
        return s;
}

/* Loss of one example and its gradient, materialized in double. */
static double example_grad(const struct veil_model *m,
                           const struct veil_example *e, const uint32_t *sup,
                           size_t n_sup, float alpha, struct dense *g) {
        double q[CD] = {0};
        for (size_t f = 0; f < e->n_feat; f++)
                for (size_t k = 0; k < CD; k++)
                        q[k] += m->E[(e->feat[f] % CS) * CD + k];
        if (e->item >= 0)
                for (size_t k = 0; k < CD; k++)
                        q[k] += m->U[(size_t)e->item * CD + k];
        for (size_t r = 0; r < e->n_recent; r++)
                for (size_t k = 0; k < CD; k++)
                        q[k] += alpha / (double)e->n_recent *
                                m->U[(size_t)e->recent[r] * CD + k];
        /* The support: the sampled items, and the target if not in it. */
        uint32_t cols[CI + 1];
        size_t nc = 0;
        int in = 0;
        for (size_t j = 0; j < n_sup; j++) {
                cols[nc++] = sup[j];
                in |= sup[j] == (uint32_t)e->target;
        }
        if (!in)
                cols[nc++] = (uint32_t)e->target;
        double l[CI + 1], mx = -1e300, z = 0;
        for (size_t j = 0; j < nc; j++) {
                l[j] = m->b[cols[j]];
                for (size_t k = 0; k < CD; k++)
                        l[j] += m->V[cols[j] * CD + k] * q[k];
                mx = l[j] > mx ? l[j] : mx;
        }
        for (size_t j = 0; j < nc; j++)
                z += exp(l[j] - mx);
        double loss = 0, dq[CD] = {0};
        for (size_t j = 0; j < nc; j++) {
                double p = exp(l[j] - mx) / z;
                double r = p - (cols[j] == (uint32_t)e->target);
                if (cols[j] == (uint32_t)e->target)
                        loss = -log(p);
                if (g) {
                        g->b[cols[j]] += r;
                        for (size_t k = 0; k < CD; k++) {
                                g->V[cols[j]][k] += r * q[k];
                                dq[k] += r * m->V[cols[j] * CD + k];
                        }
                }
        }
        if (g) {
                for (size_t f = 0; f < e->n_feat; f++)
                        for (size_t k = 0; k < CD; k++)
                                g->E[e->feat[f] % CS][k] += dq[k];
                if (e->item >= 0)
                        for (size_t k = 0; k < CD; k++)
                                g->U[e->item][k] += dq[k];
                for (size_t r = 0; r < e->n_recent; r++)
                        for (size_t k = 0; k < CD; k++)
                                g->U[e->recent[r]][k] +=
                                        alpha / (double)e->n_recent * dq[k];
        }
        return loss;
}

static void test_clipping_matches_materialized(void **st) {
        (void)st;
        struct veil_model *m = new_model(CI, 0, CD, CS, 11);
        const float alpha = 0.8f;
        /* Feature 6 folds onto row 1 (mod 5): a collision inside one
         * example; item 2 is both the item in hand and a recent one. */
        static const uint32_t f0[] = {1, 3}, f1[] = {1, 6, 4}, f2[] = {0};
        static const int32_t r0[] = {2, 3}, r1[] = {2};
        const struct veil_example ex[] = {
                {f0, 2, 2, r0, 2, 1, 0}, /* user 0, target outside */
                {f1, 3, -1, NULL, 0, 2, 1}, /* user 1, target inside */
                {f2, 1, 2, r1, 1, 1, 0}, /* user 0, same target again */
                {f0, 2, 4, r0, 2, 4, 2}, /* user 2 */
                {f1, 3, 5, NULL, 0, 3, 0}, /* user 0 */
                {f2, 1, -1, r0, 2, 0, 2}, /* user 2 */
        };
        const size_t n = sizeof(ex) / sizeof(*ex), n_users = 3;
        const uint32_t sup[] = {0, 2, 3, 5};

        /* The reference: per-user sums of materialized gradients. */
        struct dense G[3];
        memset(G, 0, sizeof(G));
        for (size_t i = 0; i < n; i++)
                example_grad(m, &ex[i], sup, 4, alpha, &G[ex[i].user]);
        /* ... which are the true gradients: central finite differences. */
        for (size_t i = 0; i < n; i++) {
                struct dense g;
                memset(&g, 0, sizeof(g));
                example_grad(m, &ex[i], sup, 4, alpha, &g);
                float *params[] = {m->V + 1 * CD + 2, m->V + 3 * CD, m->b + 1,
                                   m->E + 1 * CD + 1, m->U + 2 * CD + 1};
                double want[] = {g.V[1][2], g.V[3][0], g.b[1], g.E[1][1],
                                 g.U[2][1]};
                for (size_t p = 0; p < 5; p++) {
                        float keep = *params[p];
                        const float h = 1e-3f;
                        *params[p] = keep + h;
                        double lp = example_grad(m, &ex[i], sup, 4, alpha,
                                                 NULL);
                        *params[p] = keep - h;
                        double lm = example_grad(m, &ex[i], sup, 4, alpha,
                                                 NULL);
                        *params[p] = keep;
                        assert_true(fabs((lp - lm) / (2 * h) - want[p]) <
                                    2e-3);
                }
        }
        double ref[3];
        for (size_t u = 0; u < n_users; u++)
                ref[u] = sqrt(norm2(&G[u]));

        /* 1. No clipping: the norms and the sum. */
        struct veil_learn_cfg lc = {0.0f, 1e9f, alpha, 4, 32, 0};
        struct probe pr = {0};
        struct veil_learner *L = stepped(&lc, m, &pr, sup, ex, n, n_users);
        assert_int_equal(pr.calls, 1);
        const float *norms = veil_learn_norms(L);
        for (size_t u = 0; u < n_users; u++) {
                print_message("user %zu: gradient norm %.6f (materialized "
                              "%.6f)\n",
                              u, norms[u], ref[u]);
                assert_true(fabs(norms[u] - ref[u]) < 1e-4 * (1 + ref[u]));
        }
        struct dense want;
        memset(&want, 0, sizeof(want));
        for (size_t u = 0; u < n_users; u++) {
                const double *g = (const double *)&G[u];
                double *w = (double *)&want;
                for (size_t i = 0; i < sizeof(want) / sizeof(double); i++)
                        w[i] += g[i];
        }
        const double *a = (const double *)&want, *b = (const double *)&pr.sum;
        for (size_t i = 0; i < sizeof(want) / sizeof(double); i++)
                assert_true(fabs(a[i] - b[i]) < 1e-5);
        const struct dense unclipped = want;
        veil_learner_free(L);

        /* 2. C between the norms: some users scaled down to C exactly,
         * the others untouched; the sum is the sum of the clipped ones. */
        double lo = ref[0], hi = ref[0];
        for (size_t u = 1; u < n_users; u++) {
                lo = ref[u] < lo ? ref[u] : lo;
                hi = ref[u] > hi ? ref[u] : hi;
        }
        const float C = (float)((lo + hi) / 2);
        lc.clip = C;
        L = stepped(&lc, m, &pr, sup, ex, n, n_users);
        const float *scale = veil_learn_scales(L);
        memset(&want, 0, sizeof(want));
        size_t clipped = 0;
        for (size_t u = 0; u < n_users; u++) {
                double c = ref[u] > C ? C / ref[u] : 1.0;
                assert_true(fabs(scale[u] - c) < 1e-5);
                clipped += c < 1;
                /* Each user's clipped contribution is within the bound. */
                assert_true(c * ref[u] <= C * (1 + 1e-5));
                const double *g = (const double *)&G[u];
                double *w = (double *)&want;
                for (size_t i = 0; i < sizeof(want) / sizeof(double); i++)
                        w[i] += c * g[i];
        }
        assert_true(clipped >= 1 && clipped < n_users);
        assert_int_equal(veil_learn_last(L).clipped, clipped);
        for (size_t i = 0; i < sizeof(want) / sizeof(double); i++)
                assert_true(fabs(a[i] - b[i]) < 1e-5);
        veil_learner_free(L);

        /* 2b. bias_only (dp_blocks: bias releases b alone): the norm
         * clipped is the biases' part alone, and each user's b part of
         * the sum is scaled to C exactly when above it. */
        double refb[3], blo = INFINITY, bhi = 0;
        for (size_t u = 0; u < n_users; u++) {
                double q = 0;
                for (size_t i = 0; i < CI; i++)
                        q += G[u].b[i] * G[u].b[i];
                refb[u] = sqrt(q);
                assert_true(refb[u] < ref[u]); /* a strict part */
                blo = refb[u] < blo ? refb[u] : blo;
                bhi = refb[u] > bhi ? refb[u] : bhi;
        }
        lc.clip = (float)((blo + bhi) / 2);
        lc.bias_only = 1;
        L = stepped(&lc, m, &pr, sup, ex, n, n_users);
        norms = veil_learn_norms(L);
        scale = veil_learn_scales(L);
        double bsum[CI] = {0};
        clipped = 0;
        for (size_t u = 0; u < n_users; u++) {
                assert_true(fabs(norms[u] - refb[u]) < 1e-4 * (1 + refb[u]));
                double c = refb[u] > lc.clip ? lc.clip / refb[u] : 1.0;
                assert_true(fabs(scale[u] - c) < 1e-5);
                clipped += c < 1;
                for (size_t i = 0; i < CI; i++)
                        bsum[i] += c * G[u].b[i];
        }
        assert_true(clipped >= 1 && clipped < n_users);
        for (size_t i = 0; i < CI; i++)
                assert_true(fabs(bsum[i] - pr.sum.b[i]) < 1e-5);
        veil_learner_free(L);
        lc.bias_only = 0;

        /* 3. The per-user bound on events: at most 2 of user 0's three. */
        lc.clip = 1e9f;
        lc.max_user_examples = 2;
        L = stepped(&lc, m, NULL, sup, ex, n, n_users);
        assert_int_equal(veil_learn_last(L).examples, 5);
        assert_int_equal(veil_learn_last(L).users, 3);
        veil_learner_free(L);

        /* 4. Apply: Adagrad's first step moves each touched coordinate by
         * lr against the sign of its gradient. */
        lc.max_user_examples = 32;
        lc.lr = 0.05f;
        /* (the steps above ran with lr 0 but still summed squares) */
        memset(m->aV, 0, m->cap * CD * sizeof(float));
        memset(m->aU, 0, m->cap * CD * sizeof(float));
        memset(m->aE, 0, CS * CD * sizeof(float));
        memset(m->ab, 0, m->cap * sizeof(float));
        float v13 = m->V[1 * CD + 2], e11 = m->E[1 * CD + 1];
        uint64_t steps = m->steps;
        L = stepped(&lc, m, NULL, sup, ex, n, n_users);
        assert_true(fabs(m->V[1 * CD + 2] -
                         (v13 - (unclipped.V[1][2] > 0 ? 0.05f : -0.05f))) <
                    1e-5);
        assert_true(fabs(m->E[1 * CD + 1] -
                         (e11 - (unclipped.E[1][1] > 0 ? 0.05f : -0.05f))) <
                    1e-5);
        assert_int_equal(m->steps, steps + 1);
        veil_learner_free(L);
        veil_model_free(m);
}

/* Under DP the sampled items are drawn once per step (epoch), so that a
 * person's gradient does not depend on the batch it fell in: u's example
 * alone, or after a batch of v's, gives the same sum when the epoch holds,
 * and a different one when the draw is per batch or the epoch moves. */
#define EI 50
static int take_b(void *ctx, struct veil_grad *g, char *errstr,
                  size_t errstr_size) {
        (void)errstr, (void)errstr_size;
        veil_grad_densify(g);
        memcpy(ctx, g->b, EI * sizeof(float));
        return 1; /* taken: the model stays as it is */
}

static void u_gradient(int hold, int v_first, uint64_t u_epoch,
                       float out[EI]) {
        struct veil_model *m = new_model(EI, 0, 8, 16, 3);
        for (size_t i = 0; i < EI; i++) /* new_model's are random */
                m->b[i] = 0.01f * (float)i;
        struct veil_learn_cfg lc = {0.1f, 1e9f, 1.0f, 4, 32, 0};
        static const uint32_t f[] = {1, 2};
        const struct veil_example u = {f, 2, 3, NULL, 0, 7, 0},
                                  v = {f, 2, 5, NULL, 0, 9, 0};
        struct veil_learner *L;
        char err[128];
        float scratch[EI];
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        if (hold)
                veil_learner_support_epoch(L, 1);
        if (v_first) {
                veil_learner_set_noise(L, take_b, scratch);
                assert_int_equal(veil_learn_step(L, m, &v, 1, 1, err,
                                                 sizeof(err)),
                                 0);
        }
        if (hold)
                veil_learner_support_epoch(L, u_epoch);
        veil_learner_set_noise(L, take_b, out);
        assert_int_equal(veil_learn_step(L, m, &u, 1, 1, err, sizeof(err)),
                         0);
        veil_learner_free(L);
        veil_model_free(m);
}

static void test_support_per_epoch(void **st) {
        (void)st;
        float alone[EI], after[EI];
        u_gradient(1, 0, 1, alone);
        u_gradient(1, 1, 1, after);
        assert_memory_equal(alone, after, sizeof(alone));
        u_gradient(1, 1, 2, after); /* the next step draws again */
        assert_memory_not_equal(alone, after, sizeof(alone));
        u_gradient(0, 0, 1, alone); /* a draw per batch */
        u_gradient(0, 1, 1, after);
        assert_memory_not_equal(alone, after, sizeof(alone));
}

/* An epoch's draw does not depend on the steps before it: whether an
 * earlier step had an example to learn (one person alone in it, or nobody)
 * must not change the items a later step samples, or that person would
 * change everyone's later contributions. Without the hold (counted steps,
 * a draw per batch) it may. */
static void epoch_support(int hold, int learn_first, uint64_t epoch,
                          uint32_t *out, size_t *n_out) {
        struct veil_model *m = new_model(EI, 0, 8, 16, 3);
        struct veil_learn_cfg lc = {0.1f, 1e9f, 1.0f, 4, 32, 0};
        static const uint32_t f[] = {1, 2};
        const struct veil_example u = {f, 2, 3, NULL, 0, 7, 0};
        struct veil_learner *L;
        char err[128];
        float scratch[EI];
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        veil_learner_set_noise(L, take_b, scratch);
        for (uint64_t e = 1; e < epoch; e++) {
                if (hold)
                        veil_learner_support_epoch(L, e);
                if (learn_first)
                        assert_int_equal(veil_learn_step(L, m, &u, 1, 1, err,
                                                         sizeof(err)),
                                         0);
        }
        if (hold)
                veil_learner_support_epoch(L, epoch);
        assert_int_equal(veil_learn_step(L, m, &u, 1, 1, err, sizeof(err)),
                         0);
        const uint32_t *sup = veil_learn_support(L, n_out);
        memcpy(out, sup, *n_out * sizeof(uint32_t));
        veil_learner_free(L);
        veil_model_free(m);
}

static void test_support_history_free(void **st) {
        (void)st;
        uint32_t a[4], b[4], c[4];
        size_t na, nb, nc;
        epoch_support(1, 1, 5, a, &na); /* four steps learned before */
        epoch_support(1, 0, 5, b, &nb); /* none */
        assert_int_equal(na, 4);
        assert_int_equal(nb, na);
        assert_memory_equal(a, b, na * sizeof(uint32_t));
        epoch_support(1, 0, 6, c, &nc); /* another epoch draws otherwise */
        assert_memory_not_equal(a, c, na * sizeof(uint32_t));
        epoch_support(0, 1, 5, a, &na);
        epoch_support(0, 0, 5, b, &nb);
        assert_memory_not_equal(a, b, na * sizeof(uint32_t));
}

/* With double sums (DP) one person more or less changes the step's sum by
 * their own contribution alone, up to double rounding: the sum of n
 * contributions less the same sum without person u is u's sum, whatever
 * the others' order and magnitude. Float sums miss it by ~2⁻²⁴ of the
 * whole, which is what a person could shift in every later batch of a
 * step (dp.h). Each contribution, as summed, has norm ≤ C. */
enum { NI = 60, ND = 16, NS = 23, NU = 200, NU_OUT = 57 };

struct dsum {
        double x[NI * ND * 2 + NS * ND + NI];
};

static int dsum_hook(void *ctx, struct veil_grad *g, char *errstr,
                     size_t errstr_size) {
        (void)errstr, (void)errstr_size;
        struct dsum *o = ctx;
        double *V = o->x, *U = V + NI * ND, *E = U + NI * ND,
               *b = E + NS * ND;
        memset(o, 0, sizeof(*o));
        for (size_t i = 0; i < g->n_v; i++) {
                size_t r = g->v_rows[i];
                for (size_t k = 0; k < ND; k++)
                        V[r * ND + k] = g->sV ? g->sV[i * ND + k]
                                              : g->V[r * ND + k];
                b[r] = g->sV ? g->sb[i] : g->b[r];
        }
        for (size_t i = 0; i < g->n_u; i++)
                for (size_t k = 0; k < ND; k++)
                        U[g->u_rows[i] * ND + k] =
                                g->sU ? g->sU[i * ND + k]
                                      : g->U[g->u_rows[i] * ND + k];
        for (size_t i = 0; i < g->n_e; i++)
                for (size_t k = 0; k < ND; k++)
                        E[g->e_rows[i] * ND + k] =
                                g->sE ? g->sE[i * ND + k]
                                      : g->E[g->e_rows[i] * ND + k];
        return 1;
}

/* The hook's sum of one step over the examples of the users in [0, NU)
 * but `skip` (or only `only`), users renumbered in order. */
static void dsum_step(int dbl, int skip, int only, struct dsum *out) {
        static const uint32_t sup[12] = {0, 4, 9, 13, 20, 22,
                                         31, 37, 40, 47, 51, 58};
        uint64_t keep = rng_state;
        rng_state = 77;
        struct veil_model *m = new_model(NI, 0, ND, NS, 5);
        for (size_t i = 0; i < NI * ND; i++) { /* large gradients */
                m->V[i] *= 40;
                m->U[i] *= 40;
        }
        struct veil_learn_cfg lc = {0.1f, 1.0f, 1.0f, 12, 1, 0};
        struct veil_learner *L;
        assert_int_equal(veil_learner_new(&L, &lc, m, 3), 0);
        veil_learner_set_noise(L, dsum_hook, out);
        if (dbl)
                veil_learner_double_sums(L);
        veil_learn_force_support(L, sup, 12);
        static uint32_t feat[NU][4];
        static int32_t recent[NU][2];
        struct veil_example ex[NU];
        size_t n = 0;
        for (int u = 0; u < NU; u++) {
                for (int f = 0; f < 4; f++)
                        feat[u][f] = (uint32_t)irand(3 * NS);
                for (int r = 0; r < 2; r++)
                        recent[u][r] = (int32_t)irand(NI);
                struct veil_example e = {feat[u], 1 + irand(4),
                                         (int32_t)irand(NI), recent[u],
                                         irand(3), (int32_t)irand(NI), 0};
                if (u == skip || (only >= 0 && u != only))
                        continue;
                e.user = (uint32_t)n;
                ex[n++] = e;
        }
        char err[128];
        assert_int_equal(veil_learn_step(L, m, ex, n, n, err, sizeof(err)),
                         0);
        veil_learner_free(L);
        veil_model_free(m);
        rng_state = keep;
}

static double dsum_residual(int dbl, double *whole) {
        static struct dsum all, without, one;
        dsum_step(dbl, -1, -1, &all);
        dsum_step(dbl, NU_OUT, -1, &without);
        dsum_step(dbl, -1, NU_OUT, &one);
        double r = 0, w = 0, o = 0;
        for (size_t i = 0; i < sizeof(all.x) / sizeof(double); i++) {
                double e = all.x[i] - without.x[i] - one.x[i];
                r += e * e;
                w += fabs(all.x[i]);
                o += one.x[i] * one.x[i];
        }
        *whole = w;
        /* The contribution as summed: within C with double sums, which
         * aim under C by the norm's rounding bound (the float path, aimed
         * at C itself, came out at 1 + 5·10⁻⁸ here). */
        print_message("double sums %d: one contribution's norm %.17g\n", dbl,
                      sqrt(o));
        if (dbl)
                assert_true(sqrt(o) <= 1.0);
        assert_true(sqrt(o) > 0.99); /* large gradients: clipped to C */
        return sqrt(r);
}

static void test_double_sums_neighbours(void **st) {
        (void)st;
        double wd, wf;
        double rd = dsum_residual(1, &wd), rf = dsum_residual(0, &wf);
        print_message("residual: double %.3g, float %.3g (sum of |x| %.3g)\n",
                      rd, rf, wd);
        /* 200 contributions of norm ≤ 1: double rounding is ~1e-13. */
        assert_true(rd < 1e-10);
        /* The float sums do miss it: the test can tell them apart. */
        assert_true(rf > 1e3 * rd && rf > 1e-8);
}

/* ---- a contribution does not depend on its batch ------------------ */

/* Shapes where OpenBLAS rounds small and large products differently
 * (d = 64, a support of 256: an sgemm of M ≤ 4 rows takes another kernel
 * than one of 5 or more). */
enum { BI = 300, BD = 64, BS = 40, BSUP = 256, BN = 9 };

struct bsum {
        double x[BI * BD * 2 + BS * BD + BI];
};

static int bsum_hook(void *ctx, struct veil_grad *g, char *errstr,
                     size_t errstr_size) {
        (void)errstr, (void)errstr_size;
        struct bsum *o = ctx;
        double *V = o->x, *U = V + BI * BD, *E = U + BI * BD, *b = E + BS * BD;
        memset(o, 0, sizeof(*o));
        for (size_t i = 0; i < g->n_v; i++) {
                for (size_t k = 0; k < BD; k++)
                        V[g->v_rows[i] * BD + k] = g->sV[i * BD + k];
                b[g->v_rows[i]] = g->sb[i];
        }
        for (size_t i = 0; i < g->n_u; i++)
                for (size_t k = 0; k < BD; k++)
                        U[g->u_rows[i] * BD + k] = g->sU[i * BD + k];
        for (size_t i = 0; i < g->n_e; i++)
                for (size_t k = 0; k < BD; k++)
                        E[g->e_rows[i] * BD + k] = g->sE[i * BD + k];
        return 1;
}

/* The double sum of one step over users [0, n) but `skip`, or of `only`
 * alone. */
static void bsum_step(size_t n_users, int skip, int only, struct bsum *out) {
        static uint32_t sup[BSUP];
        for (size_t j = 0; j < BSUP; j++)
                sup[j] = (uint32_t)j;
        uint64_t keep = rng_state;
        rng_state = 91;
        struct veil_model *m = new_model(BI, 0, BD, BS, 7);
        struct veil_learn_cfg lc = {0.1f, 1.0f, 1.0f, BSUP, 1, 0};
        struct veil_learner *L;
        assert_int_equal(veil_learner_new(&L, &lc, m, 3), 0);
        veil_learner_set_noise(L, bsum_hook, out);
        veil_learner_double_sums(L);
        veil_learn_force_support(L, sup, BSUP);
        static uint32_t feat[BN][4];
        static int32_t recent[BN][2];
        struct veil_example ex[BN];
        size_t n = 0;
        for (int u = 0; u < (int)n_users; u++) {
                for (int f = 0; f < 4; f++)
                        feat[u][f] = (uint32_t)irand(BS);
                for (int r = 0; r < 2; r++)
                        recent[u][r] = (int32_t)irand(BI);
                struct veil_example e = {feat[u], 4, (int32_t)irand(BI),
                                         recent[u], 2, (int32_t)irand(BI),
                                         0};
                if (u == skip || (only >= 0 && u != only))
                        continue;
                e.user = (uint32_t)n;
                ex[n++] = e;
        }
        char err[128];
        assert_int_equal(veil_learn_step(L, m, ex, n, n, err, sizeof(err)),
                         0);
        veil_learner_free(L);
        veil_model_free(m);
        rng_state = keep;
}

/* Neighbouring batches (user 0's example in or out) differ by exactly
 * user 0's contribution, whatever the batch size: one person's presence
 * must not reach the bits of the others' contributions (it would, in a
 * step that charges that person nothing, when their events move batch
 * edges), nor its own depend on who else is in the batch. */
static void test_contribution_batch_invariant(void **st) {
        (void)st;
        static struct bsum all, without, one;
        bsum_step(BN, -1, 0, &one);
        for (size_t n = 2; n <= BN; n++) {
                bsum_step(n, -1, -1, &all);
                bsum_step(n, 0, -1, &without);
                double r = 0, o = 0;
                for (size_t i = 0; i < sizeof(all.x) / sizeof(double); i++) {
                        double e = all.x[i] - without.x[i] - one.x[i];
                        r += e * e;
                        o += one.x[i] * one.x[i];
                }
                print_message("batch of %zu: residual %.3g (contribution "
                              "%.3g)\n",
                              n, sqrt(r), sqrt(o));
                /* Double sums of at most 9 contributions of norm ≤ 1
                 * round at ~1e-15; a float kernel's other last bits are
                 * ~1e-8. */
                assert_true(sqrt(r) < 1e-12);
                assert_true(sqrt(o) > 0.1);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_score_matches_naive),
                cmocka_unit_test(test_topk_against_sort),
                cmocka_unit_test(test_learning_beats_popular),
                cmocka_unit_test(test_clipping_matches_materialized),
                cmocka_unit_test(test_apply_paths_agree),
                cmocka_unit_test(test_support_per_epoch),
                cmocka_unit_test(test_support_history_free),
                cmocka_unit_test(test_double_sums_neighbours),
                cmocka_unit_test(test_contribution_batch_invariant),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

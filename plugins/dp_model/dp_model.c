/*
 * dp_model — scores every event's candidates with an item-embedding model
 * and learns it incrementally from the events flagged for training.
 *
 * Per batch: one query per event (model.h: context feature embeddings, the
 * item in hand and, for personalized users, the mean of their recent
 * items), one sgemm for the whole batch (n × items), a top-k per event that
 * skips the item in hand and the user's recent ones, and one
 * recommendation record per event with the features that contributed most
 * in words. Then one learning step (learn.h) over the training events:
 * recommend first, learn after (prequential).
 *
 * Tiers: personalized uses the profile the context stage handed over,
 * contextual this event alone, none (when serve_none) the items with the
 * highest bias — the same list for everyone, computed from the model, not
 * from a count of anyone's data.
 *
 * Differential privacy (dp.h): with mechanism gaussian or tree the
 * learner's clipped sums are accumulated over a step of the batches' clock
 * (step_interval_s; or of step_size contributions), noised once, charged
 * to the accountant (saved before the update is applied) and applied;
 * every record carries the ε spent so far. With mechanism none
 * (clipping only) records say epsilon_spent null: the model is not
 * private, and 0 would be a lie.
 */
#include <cblas.h>
#include <sodium.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

#include "catalog.h"
#include "ckpt.h"
#include "context_info.h"
#include "dp.h"
#include "dp_cmd.h"
#include "learn.h"
#include "model.h"
#include "le.h"
#include "prior.h"
#include "share.h"
#include "topk.h"

/* A privacy loss (ε, δ, ρ) as log lines state it: rounded up, never to
 * nearest (a line that read 8 for 8.0004 under-reported the spend). The
 * text lives until the end of the full expression: up(x, 4).s as a
 * veil_log argument. */
struct num_text {
        char s[32];
};
static struct num_text up(double x, int digits) {
        struct num_text t;
        veil_format_up(t.s, sizeof(t.s), x, digits);
        return t;
}

/* The noise accounted, which a reader may put into the calculator:
 * rounded down, so the epsilon it gives is never below the one spent. */
static struct num_text down(double x, int digits) {
        struct num_text t;
        veil_format_down(t.s, sizeof(t.s), x, digits);
        return t;
}

#define MAX_K 100

static const struct veil_param_def params[] = {
        {"k", VEIL_PARAM_INT, "10", 0, "items per recommendation (1..100)"},
        {"dim", VEIL_PARAM_INT, "64", 0, "embedding dimension d (1..1024)"},
        {"feature_space", VEIL_PARAM_INT, "16384", 0,
         "rows of the context feature table: the context stage's hash_space"},
        {"catalog", VEIL_PARAM_STRING, NULL, 0,
         "item catalog CSV, relative to the pipeline file (the same as the "
         "context stage's)"},
        {"catalog_columns", VEIL_PARAM_MAP, NULL, 0,
         "column names of the catalog: {id: …, price: …, category: …, "
         "description: …}"},
        {"max_new_items", VEIL_PARAM_INT, "10000", 0,
         "items seen in events but not in the catalog that are added"},
        {"recent_weight", VEIL_PARAM_DOUBLE, "1.0", 0,
         "weight α of the mean of a personalized user's recent items"},
        {"history_weight", VEIL_PARAM_DOUBLE, "0", 0,
         "score added to an item of a personalized person's earlier "
         "visits (the context stage's history_items), times ln(1 + the "
         "visits it was in); their own data for their own list, not "
         "learned. With it, only the current visit's recent items are "
         "left out of the list (0: off, and every recent item is)"},
        {"learning_rate", VEIL_PARAM_DOUBLE, "0.1", 0,
         "Adagrad step size (0 freezes the model)"},
        {"negatives", VEIL_PARAM_INT, "256", 0,
         "items sampled uniformly per batch for the sampled softmax"},
        {"clip_norm", VEIL_PARAM_DOUBLE, "1.0", 0,
         "L2 bound C on each user's gradient contribution per batch"},
        {"max_user_events", VEIL_PARAM_INT, "32", 0,
         "events of one user learned per batch (the first ones); 1 with a "
         "private mechanism on the clock (step_interval_s > 0): a "
         "person's first event in a step"},
        {"init_scale", VEIL_PARAM_DOUBLE, "0.1", 0,
         "standard deviation of the initial embeddings"},
        {"prior", VEIL_PARAM_STRING, "none", 0,
         "starting item vectors: none (random), or description (from the "
         "catalog's descriptions: public data, no privacy cost)"},
        {"prior_norm", VEIL_PARAM_DOUBLE, "3.0", 0,
         "norm of the item vectors the description prior sets"},
        {"prior_neighbors", VEIL_PARAM_INT, "0", 0,
         "with prior description: each item's this many nearest items by "
         "exact description similarity (tf·idf cosine) raise their scores "
         "when it is in hand or recent (0: off; public data, not learned)"},
        {"prior_neighbor_weight", VEIL_PARAM_DOUBLE, "10.0", 0,
         "score added per unit of description cosine to the neighbours of "
         "the item in hand (α/|recent| of it for a recent item's)"},
        {"prior_catalog_window", VEIL_PARAM_INT, "0", 0,
         "the items up to this many rows before and after an item in the "
         "catalog file raise their scores when it is in hand or recent, by "
         "1/(1 + row distance) (0: off; public data, not learned: shops "
         "list a collection's items together)"},
        {"prior_catalog_weight", VEIL_PARAM_DOUBLE, "10.0", 0,
         "score added per unit of that similarity to the item in hand's "
         "catalog neighbours (α/|recent| of it for a recent item's)"},
        {"seed", VEIL_PARAM_INT, "1", 0,
         "seed of the initialization and of the negative sampling"},
        {"default_tier", VEIL_PARAM_STRING, "contextual", 0,
         "tier of events no consent stage decided: none, contextual or "
         "personalized"},
        {"default_training", VEIL_PARAM_BOOL, "false", 0,
         "learn from events no consent stage decided (consent-less "
         "pipelines such as offline replays)"},
        {"serve_none", VEIL_PARAM_BOOL, "true", 0,
         "answer tier-none events with the highest-bias items (else no "
         "record)"},
        {"mechanism", VEIL_PARAM_STRING, "none", 0,
         "differential privacy of the learning: gaussian, tree (DP-FTRL), "
         "or none (clipping only; records then say epsilon_spent null)"},
        {"tree_steps", VEIL_PARAM_INT, "64", 0,
         "tree: steps per tree before it restarts; each user joins at most "
         "tree_participations steps of a tree"},
        {"noise_multiplier", VEIL_PARAM_DOUBLE, "1.0", 0,
         "σ: noise standard deviation per coordinate is σ·clip_norm"},
        {"dp_blocks", VEIL_PARAM_STRING, "all", 0,
         "parameters learned privately: all, or bias (the item biases "
         "alone: far less noise for small populations; embeddings stay "
         "as initialized)"},
        {"dp_optimizer", VEIL_PARAM_STRING, "adagrad", 0,
         "how a noisy step is applied: adagrad (learning_rate) or sgd "
         "(dp_learning_rate times the noisy mean)"},
        {"dp_learning_rate", VEIL_PARAM_DOUBLE, "1.0", 0,
         "SGD step size on the noisy mean gradient of a step"},
        {"step_interval_s", VEIL_PARAM_DOUBLE, "3600", 0,
         "seconds of the clock per noisy learning step (step_time says "
         "whether an event's own time or its batch's puts it in one): the "
         "first batch past a step's end (and lateness) releases it, also "
         "when nobody contributed (noise alone), so which step a "
         "contribution joins does not depend on anyone else's events; a "
         "person counts with their first event of a step. 0: a step ends "
         "after step_size contributions instead, and one person's events "
         "then move everyone's later steps (warned; for tests and "
         "benchmarks)"},
        {"step_time", VEIL_PARAM_STRING, "event", 0,
         "on the clock, what puts an event in a step: event (its own time; "
         "a step is released step_lateness_s after its end, and an event "
         "of the next step that comes before then waits for it) or batch "
         "(the time its serving batch was closed: for replaying old events "
         "through veil run, whose times are far behind the clock)"},
        {"step_lateness_s", VEIL_PARAM_DOUBLE, "60", 0,
         "step_time event: seconds past a step's end before it is "
         "released; its events that come later are not learned (counted). "
         "Below step_interval_s"},
        {"step_hold", VEIL_PARAM_INT, "100000", 0,
         "step_time event: events of the next step held at most while a "
         "step waits for its late events (one per person; 24 bytes and 4 "
         "per feature and recent item each); beyond, not learned "
         "(counted)"},
        {"step_size", VEIL_PARAM_INT, "4096", 0,
         "the contributions a step is expected to hold: the noisy sum is "
         "divided by it (sgd); with step_interval_s 0 a step ends when "
         "that many are in"},
        {"max_contributions", VEIL_PARAM_INT, "4", 0,
         "M: learning steps one user may join per accounting window"},
        {"tree_estimator", VEIL_PARAM_STRING, "plain", 0,
         "tree: plain (the prefix's noisy nodes) or honaker (every node "
         "on a leaf's path noised and averaged with its children: "
         "a node's variance down to about half, a prefix sum's to about "
         "2/3 in trees of 32 to 64 steps, at 16 bytes per parameter per "
         "tree level of memory; same epsilon)"},
        {"tree_participations", VEIL_PARAM_INT, "1", 0,
         "tree: steps of one tree a user may join; each level l of a tree "
         "then costs p·min(p, 2^l)/(2σ²), since several of a user's steps "
         "may share a node"},
        {"window_steps", VEIL_PARAM_INT, "0", 0,
         "learning steps per accounting window (on the clock, steps of "
         "step_interval_s whether released or not); 0, the default: one "
         "window, so M bounds a user's steps over the whole stream"},
        {"user_slots", VEIL_PARAM_INT, "1048576", 0,
         "initial slots of the per-user table of the bounds (40 bytes "
         "each); it doubles when 3/4 full"},
        {"epsilon_budget", VEIL_PARAM_DOUBLE, "8.0", 0,
         "total ε the model may spend (0: no budget)"},
        {"delta", VEIL_PARAM_DOUBLE, "1e-8", 0,
         "δ of every reported ε (below 1/users², the number of users "
         "squared)"},
        {"on_exhausted", VEIL_PARAM_STRING, "freeze", 0,
         "what happens when the next step would exceed the budget: freeze "
         "(stop learning, keep serving)"},
        {"instance", VEIL_PARAM_STRING, NULL, 0,
         "this instance's id in the model updates it shares (default: "
         "VEIL_INSTANCE_ID, else the host name: a StatefulSet pod's name)"},
        {"accountant_file", VEIL_PARAM_STRING, NULL, 0,
         "file the accountant's state is saved to before every noisy "
         "update (required with mechanism gaussian or tree; a persistent "
         "volume; a relative path is read beside the pipeline file)"},
        {NULL, 0, NULL, 0, NULL}};
/* model_updates: the noisy releases, shared with the other instances of
 * the pipeline, which read the same topic as a side input (share.h). */
static const char *const outputs[] = {"recommendations", "model_updates",
                                      NULL};
static const char *const optional_sides[] = {"model_updates", NULL};

/* What the batch needs per served event. */
struct row {
        size_t ev;          /* index in the batch */
        veil_tier_t tier;
        int32_t cur;        /* model row of the item in hand, -1 */
        int32_t *recent;    /* model rows of the recent items (arena) */
        size_t n_recent;
        size_t n_exclude;   /* of them, left out of the list */
        int newest_known;   /* recent[0] is the event's newest item (one
                             * the model did not know is left out) */
        int32_t *hist;      /* model rows of the earlier visits' items */
        float *hist_boost;  /* the score each gets (history_weight) */
        size_t n_hist;
        const struct veil_context_info *info;
};

/* Event time: the examples of the step after the open one, which wait for
 * the open one's release (dp.h, veil_dp_place) and are learned as soon as
 * it is out, with the model it leaves. Copies: a batch's memory goes with
 * the batch. One per person (the first they had). */
struct held {
        int32_t target, item;
        uint32_t n_feat, n_recent;
        size_t off; /* into ids: the feature ids, then the recent rows */
        uint64_t who;  /* veil_dp_user_hash of the person: found on erase */
        int erased;    /* the person was erased since: not learned */
};

struct hold {
        struct held *ex;
        size_t n, cap, max;
        uint32_t *ids;
        size_t n_ids, cap_ids;
        uint64_t step;     /* the step they are for */
        uint64_t full;     /* not held: the hold was full */
        uint64_t dropped;  /* their step was skipped (no batch in it) */
        uint64_t erased;   /* their person was erased while they waited */
        size_t n_erased;   /* of the n held now */
};

struct state {
        veil_stage_t *st;
        struct veil_model *m;
        struct veil_learner *L;
        size_t k;
        float alpha;
        float hist_weight; /* history_weight; 0: off */
        int warned_history;
        int keyed; /* the pipeline has keys: people by subject only */
        veil_tier_t default_tier;
        int default_training, serve_none;
        /* Buffers of the largest batch so far. */
        float *Q, *S;
        size_t cap_rows, cap_S;
        struct row *rows;
        uint32_t *mark, stamp; /* exclusions, per item row */
        uint64_t served, learned_events;
        int warned_space;
        struct veil_dp *dp; /* NULL: mechanism none */
        double eps_budget;
        uint64_t batch_no;
        struct veil_share *share;
        size_t senders_logged; /* other instances whose spend ε counts */
        /* accountant_file + ".others": the other instances' ρ, kept so that
         * a restart counts them even when the topic has dropped their
         * records and no checkpoint is restored (ε never goes down). */
        char *others_path;
        char *acc_path; /* accountant_file, resolved once (acc_path_of) */
        uint64_t others_saved; /* veil_share_changes that file holds */
        int others_unsaved;  /* a save failed: the next batch retries it */
        int full_logged;     /* share_alerts said senders passed the bound */
        int clone_logged;    /* share_alerts said a copy of the file runs */
        const char *mechanism;
        int clock_steps; /* step_interval_s > 0 */
        struct hold hold; /* step_time event: the next step's examples */
        double sigma, clip;
        /* The public neighbour terms, outside the learned parameters:
         * [0] by description, [1] by catalog order (empty: off). */
        struct veil_prior_nb nb[2];
        float nb_weight[2];
};

/* The public neighbours' score for item j when item a is in hand. */
static float public_get(const struct state *s, int32_t a, uint32_t j) {
        float c = 0;
        for (int t = 0; t < 2; t++)
                if (s->nb[t].L)
                        c += s->nb_weight[t] *
                             veil_prior_nb_get(&s->nb[t], a, j);
        return c;
}

/* row += scale × the public neighbours' scores for item a in hand. */
static void public_add(const struct state *s, int32_t a, float scale,
                       float *row) {
        for (int t = 0; t < 2; t++)
                if (s->nb[t].L)
                        veil_prior_nb_add(&s->nb[t], a,
                                          scale * s->nb_weight[t], row);
}

static const char *tier_name(veil_tier_t t) {
        switch (t) {
        case VEIL_TIER_NONE: return "none";
        case VEIL_TIER_CONTEXTUAL: return "contextual";
        case VEIL_TIER_PERSONALIZED: return "personalized";
        default: return "undecided";
        }
}

static int parse_tier(const char *s, veil_tier_t *t) {
        if (!strcmp(s, "none"))
                *t = VEIL_TIER_NONE;
        else if (!strcmp(s, "contextual"))
                *t = VEIL_TIER_CONTEXTUAL;
        else if (!strcmp(s, "personalized"))
                *t = VEIL_TIER_PERSONALIZED;
        else
                return -VEIL_EINVAL;
        return 0;
}

static const struct veil_context_info *info_of(const struct veil_event *ev) {
        const struct veil_context_info *i = ev->user;
        return i && i->magic == VEIL_CONTEXT_INFO_MAGIC &&
                               i->version == VEIL_CONTEXT_INFO_VERSION
                       ? i
                       : NULL;
}

/* Buffers for a batch of `rows` events; S (rows × items scores, the one
 * sgemm's output) is sized once the batch's new items are known. Grown,
 * never shrunk: steady state allocates nothing. */
static int reserve_rows(struct state *s, size_t rows) {
        if (rows <= s->cap_rows)
                return 0;
        free(s->Q);
        free(s->rows);
        s->Q = NULL;
        s->rows = calloc(rows, sizeof(*s->rows));
        if (posix_memalign((void **)&s->Q, 64,
                           rows * s->m->d * sizeof(float)) ||
            !s->rows) {
                s->cap_rows = 0;
                return -VEIL_ENOMEM;
        }
        s->cap_rows = rows;
        return 0;
}

static int reserve_scores(struct state *s, size_t n) {
        if (n <= s->cap_S)
                return 0;
        free(s->S);
        s->S = NULL;
        size_t c = n + n / 4;
        if (posix_memalign((void **)&s->S, 64, c * sizeof(float))) {
                s->cap_S = 0;
                return -VEIL_ENOMEM;
        }
        s->cap_S = c;
        return 0;
}

/* ---- explanations ---------------------------------------------------- */

struct part {
        float c;   /* contribution to the top item's score */
        int order; /* where it goes in the sentence */
        const char *w[3]; /* its words, concatenated */
};

/* Eight partial sums: independent chains the compiler turns into vector
 * instructions (one running sum would be a serial chain of adds). */
static float vdot(const float *a, const float *b, size_t n) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
                for (size_t j = 0; j < 8; j++)
                        acc[j] += a[i + j] * b[i + j];
        for (; i < n; i++)
                s += a[i] * b[i];
        for (size_t j = 0; j < 8; j++)
                s += acc[j];
        return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* vdot of n rows against one vector, the same sums in the same order (the
 * eight partial sums are the eight lanes; no FMA, so every product is
 * rounded before it is added), for d a multiple of 8: an explanation takes
 * two dozen of these, and one call each was most of its time. */
__attribute__((target("avx2"))) static float
lanes_sum(__m256 acc) {
        float l[8], x = 0;
        _mm256_storeu_ps(l, acc);
        for (size_t j = 0; j < 8; j++)
                x += l[j];
        return x;
}

/* Four rows at a time: each row's sum is a chain of dependent adds, and
 * four independent chains keep the adder busy (one chain waits on every
 * add); every row's own sequence of operations is unchanged. */
__attribute__((target("avx2"))) static void
vdots_avx2(const float *const *rows, size_t n, const float *v, size_t d,
           float *out) {
        size_t r = 0;
        for (; r + 4 <= n; r += 4) {
                const float *a0 = rows[r], *a1 = rows[r + 1],
                            *a2 = rows[r + 2], *a3 = rows[r + 3];
                __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
                for (size_t i = 0; i < d; i += 8) {
                        __m256 x = _mm256_loadu_ps(v + i);
                        c0 = _mm256_add_ps(
                                c0, _mm256_mul_ps(_mm256_loadu_ps(a0 + i), x));
                        c1 = _mm256_add_ps(
                                c1, _mm256_mul_ps(_mm256_loadu_ps(a1 + i), x));
                        c2 = _mm256_add_ps(
                                c2, _mm256_mul_ps(_mm256_loadu_ps(a2 + i), x));
                        c3 = _mm256_add_ps(
                                c3, _mm256_mul_ps(_mm256_loadu_ps(a3 + i), x));
                }
                out[r] = lanes_sum(c0);
                out[r + 1] = lanes_sum(c1);
                out[r + 2] = lanes_sum(c2);
                out[r + 3] = lanes_sum(c3);
        }
        for (; r < n; r++) {
                const float *a = rows[r];
                __m256 acc = _mm256_setzero_ps();
                for (size_t i = 0; i < d; i += 8)
                        acc = _mm256_add_ps(
                                acc, _mm256_mul_ps(_mm256_loadu_ps(a + i),
                                                   _mm256_loadu_ps(v + i)));
                out[r] = lanes_sum(acc);
        }
}
#endif

static void vdots(const float *const *rows, size_t n, const float *v, size_t d,
                  float *out) {
#if defined(__x86_64__) && defined(__GNUC__)
        static int avx2 = -1;
        if (avx2 < 0)
                avx2 = __builtin_cpu_supports("avx2");
        if (avx2 && d % 8 == 0) {
                vdots_avx2(rows, n, v, d, out);
                return;
        }
#endif
        for (size_t r = 0; r < n; r++)
                out[r] = vdot(rows[r], v, d);
}

/* The length of the UTF-8 character s starts with, 0 when s does not
 * start a well-formed one (an Avro string must be UTF-8, and a word may be
 * an event's text: a country from a CSV file, say). */
static size_t utf8_char(const unsigned char *s) {
        unsigned c = s[0];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                len = 2, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
                len = 3, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
                len = 4, cp = c & 0x07, min = 0x10000;
        else
                return 0;
        for (size_t k = 1; k < len; k++) {
                if ((s[k] & 0xc0) != 0x80) /* a NUL ends it here too */
                        return 0;
                cp = (cp << 6) | (s[k] & 0x3f);
        }
        return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)
                       ? 0
                       : len;
}

/* Appends without the cost of a printf per word (this runs per event):
 * one pass, cut to the buffer on a character boundary, a byte that is
 * not UTF-8 written as '?', so the explanation is always valid UTF-8. */
static size_t append(char *out, size_t off, size_t size, const char *s) {
        const unsigned char *u = (const unsigned char *)s;
        while (*u && off + 1 < size) {
                if (*u < 0x80) { /* the common case: ASCII words */
                        out[off++] = (char)*u++;
                        continue;
                }
                size_t len = utf8_char(u);
                if (!len) {
                        out[off++] = '?';
                        u++;
                        continue;
                }
                if (off + len >= size)
                        break;
                memcpy(out + off, u, len);
                off += len;
                u += len;
        }
        out[off] = '\0';
        return off;
}

/* The three features that pushed the top item up the most, in words:
 * "in the evening · on mobile · viewing a lantern". */
static void explain(const struct state *s, const struct veil_event *ev,
                    const struct row *rw, uint32_t top, char *out,
                    size_t size) {
        const struct veil_model *m = s->m;
        size_t d = m->d;
        const float *v = m->V + (size_t)top * d;
        out[0] = '\0';
        if (rw->tier == VEIL_TIER_NONE) {
                append(out, 0, size, "popular with everyone (nothing about "
                                     "you was used)");
                return;
        }
        const struct veil_context_info *info = rw->info;
        struct part parts[VEIL_CTX_MAX_FEATURES + 3];
        size_t np = 0;
        float item_c = 0;
        int have_item = 0;
        const char *verb = NULL, *phrase = NULL;
        /* Every dot product first, in one pass: features, item in hand,
         * recent items. */
        const float *rows[VEIL_CTX_MAX_FEATURES + 1 + 64];
        float dot[VEIL_CTX_MAX_FEATURES + 1 + 64];
        size_t nf = info && info->kinds ? ev->n_features : 0, nr = 0;
        if (nf > VEIL_CTX_MAX_FEATURES)
                nf = VEIL_CTX_MAX_FEATURES;
        size_t n_rec = rw->n_recent < 64 ? rw->n_recent : 64;
        for (size_t i = 0; i < nf; i++)
                rows[nr++] = m->E + veil_model_erow(m, ev->features[i]) * d;
        if (rw->cur >= 0)
                rows[nr++] = m->U + (size_t)rw->cur * d;
        for (size_t j = 0; j < n_rec; j++)
                rows[nr++] = m->U + (size_t)rw->recent[j] * d;
        vdots(rows, nr, v, d, dot);
        for (size_t i = 0; i < ev->n_features && info && info->kinds; i++) {
                int kind = info->kinds[i];
                const char *w = info->words ? info->words[i] : NULL;
                float c = i < nf ? dot[i]
                                 : vdot(m->E + veil_model_erow(
                                                       m, ev->features[i]) *
                                                       d,
                                        v, d);
                if (kind == VEIL_CTX_TYPE) {
                        verb = w;
                        item_c += c;
                        continue;
                }
                if (veil_ctx_kind_is_item(kind)) {
                        if (kind == VEIL_CTX_ITEM)
                                phrase = w;
                        item_c += c;
                        have_item = 1;
                        continue;
                }
                if (!w || !*w || np >= VEIL_CTX_MAX_FEATURES)
                        continue;
                parts[np++] = (struct part){
                        c, kind, {kind == VEIL_CTX_COUNTRY ? "in " : "", w, ""}};
        }
        if (rw->cur >= 0) {
                item_c += dot[nf];
                item_c += public_get(s, rw->cur, top);
                have_item = 1;
        }
        if (have_item || verb)
                parts[np++] = (struct part){
                        item_c,
                        VEIL_CTX_ITEM,
                        {verb ? verb : "viewing", have_item ? " " : "",
                         have_item ? (phrase ? phrase : "this item") : ""}};
        if (rw->n_recent) {
                /* α·mean(U[recent])·v: the recent items' share. */
                float c = 0;
                const float *rd = dot + nf + (rw->cur >= 0);
                for (size_t j = 0; j < n_rec; j++)
                        c += rd[j];
                for (size_t j = n_rec; j < rw->n_recent; j++)
                        c += vdot(m->U + (size_t)rw->recent[j] * d, v, d);
                for (size_t j = 0; j < rw->n_recent; j++)
                        c += public_get(s, rw->recent[j], top);
                parts[np++] = (struct part){
                        s->alpha * c / (float)rw->n_recent,
                        VEIL_CTX_N_KINDS,
                        {"after your recent items", "", ""}};
        }
        for (size_t j = 0; j < rw->n_hist; j++)
                if (rw->hist[j] == (int32_t)top) {
                        parts[np++] = (struct part){
                                rw->hist_boost[j], VEIL_CTX_N_KINDS + 1,
                                {"from your earlier visits", "", ""}};
                        break;
                }
        /* The three largest positive contributions, in sentence order. */
        int pick[3];
        size_t npick = 0;
        for (size_t t = 0; t < 3; t++) {
                int best = -1;
                for (size_t i = 0; i < np; i++) {
                        int taken = 0;
                        for (size_t j = 0; j < npick; j++)
                                taken |= pick[j] == (int)i;
                        if (!taken && parts[i].c > 0 &&
                            (best < 0 || parts[i].c > parts[best].c))
                                best = (int)i;
                }
                if (best < 0)
                        break;
                pick[npick++] = best;
        }
        for (size_t i = 1; i < npick; i++)
                for (size_t j = i; j > 0 && parts[pick[j - 1]].order >
                                                    parts[pick[j]].order;
                     j--) {
                        int x = pick[j];
                        pick[j] = pick[j - 1];
                        pick[j - 1] = x;
                }
        if (!npick) {
                append(out, 0, size, "popular right now");
                return;
        }
        size_t off = 0;
        for (size_t i = 0; i < npick; i++) {
                if (i)
                        off = append(out, off, size, " · ");
                for (int w = 0; w < 3; w++)
                        off = append(out, off, size, parts[pick[i]].w[w]);
        }
}

/* ---- serving ---------------------------------------------------------- */

static int emit(struct state *s, const struct veil_batch *b,
                const struct veil_event *ev, const struct row *rw,
                const uint32_t *idx, const float *val, size_t n) {
        veil_rec_t *r = veil_out_begin(s->st, "recommendations");
        if (!r)
                return 0;
        const char *subject = ev->subject ? ev->subject : "";
        veil_rec_set_str(r, "subject", subject);
        veil_rec_set_str(r, "event_id", ev->event_id ? ev->event_id : "");
        for (size_t i = 0; i < n; i++) {
                veil_rec_t *it = veil_rec_append(r, "items");
                if (!it)
                        return -VEIL_EINVAL;
                veil_rec_set_str(it, "item_id", s->m->cat->id[idx[i]]);
                veil_rec_set_double(it, "score", (double)val[i]);
        }
        veil_rec_set_str(r, "tier", tier_name(rw->tier));
        char why[320];
        if (n)
                explain(s, ev, rw, idx[0], why, sizeof(why));
        else
                append(why, 0, sizeof(why), "nothing to recommend yet");
        veil_rec_set_str(r, "explanation", why);
        veil_rec_set_long(r, "model_version", (int64_t)s->m->steps);
        if (s->dp) {
                struct veil_dp_stats ds = veil_dp_stats(s->dp);
                veil_rec_set_double(r, "epsilon_spent", ds.epsilon);
                veil_rec_set_double(r, "delta", ds.delta);
        } else {
                /* Clipping only: not private, so no ε at all. */
                veil_rec_set_null(r, "epsilon_spent");
                veil_rec_set_double(r, "delta", 0.0);
        }
        veil_rec_set_long(r, "ts", b->now_ms);
        return veil_out_emit(s->st, "recommendations", subject,
                             strlen(subject));
}

/* ---- learning --------------------------------------------------------- */

struct slot {
        const char *key;
        uint32_t id;
};

/* Compact user ids for the batch: the per-user bound is per subject. */
static uint32_t user_id(struct slot *tab, size_t cap, const char *key,
                        uint32_t *n) {
        uint64_t h = 14695981039346656037ULL;
        for (const char *p = key; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        size_t j = h & (cap - 1);
        while (tab[j].key) {
                if (!strcmp(tab[j].key, key))
                        return tab[j].id;
                j = (j + 1) & (cap - 1);
        }
        tab[j].key = key;
        tab[j].id = (*n)++;
        return tab[j].id;
}

static int learn_held(struct state *s);
static void hold_drop(struct hold *h);

/* Releases the steps that are due, each noised, charged and (with
 * model_updates bound) emitted on its own; an empty step is noise alone. */
static int release_due(struct state *s, struct veil_batch *b) {
        char err[256];
        int share = veil_out_bound(s->st, "model_updates");
        while (veil_dp_ready(s->dp)) {
                int rc;
                if (share && (rc = veil_share_snapshot(
                                      s->share, s->m,
                                      veil_dp_bias_only(s->dp))))
                        return rc;
                rc = veil_dp_release(s->dp, s->L, s->m, err, sizeof(err));
                if (rc < 0) {
                        veil_log(s->st, VEIL_LOG_ERROR, "noisy step: %s",
                                 err);
                        hold_drop(&s->hold);
                        return rc;
                }
                struct veil_dp_stats ds = veil_dp_stats(s->dp);
                if (ds.just_frozen)
                        veil_log(s->st, VEIL_LOG_WARN,
                                 "privacy budget exhausted: epsilon %s of "
                                 "%.4g spent at delta %s; learning stops, "
                                 "serving goes on",
                                 up(ds.epsilon, 4).s, s->eps_budget,
                                 up(ds.delta, 3).s);
                if (rc == 0) { /* frozen: nothing is learned any more */
                        hold_drop(&s->hold);
                        return 0;
                }
                veil_privacy_set_spent(s->st, ds.epsilon, ds.delta);
                /* The next step is open: what waited for it goes in,
                 * after the release is out (its update emitted). */
                if (!share) {
                        if ((rc = learn_held(s)))
                                return rc;
                        continue;
                }
                /* Its own lineage's spend: the others' releases are not
                 * in it (each reader adds every sender's); the releases of
                 * its lineage its accountant does not count are. */
                struct veil_share_meta meta = {
                        .epsilon = ds.epsilon_own,
                        .delta = ds.delta,
                        .rho = veil_share_own_rho(s->share, ds.rho_own),
                        .clip = s->clip,
                        .sigma = s->sigma,
                        .mechanism = s->mechanism,
                        .draws_per_rho = veil_accountant_draws_per_rho(
                                veil_dp_accountant(s->dp)),
                        .ts_ms = b->now_ms,
                        .steps = ds.steps};
                if (meta.rho != ds.rho_own)
                        meta.epsilon = veil_dp_epsilon_of(s->dp, meta.rho);
                rc = veil_share_emit(s->share, s->st, "model_updates", s->m,
                                     &meta);
                if (rc < 0) {
                        veil_log(s->st, VEIL_LOG_ERROR,
                                 "model update not emitted (code %d)", rc);
                        /* Not learned: kept, they would go into a later
                         * step under its number (learn, hold_put). */
                        hold_drop(&s->hold);
                        return rc;
                }
                veil_metric_set(s->st, "model_updates_sent",
                                (double)veil_share_stats(s->share)
                                        .sent_releases);
                if ((rc = learn_held(s)))
                        return rc;
        }
        return 0;
}

/* The example of a row: the state before its event, and its item. */
static int build_example(struct veil_batch *b, const struct row *rw,
                         const struct veil_event *ev,
                         struct veil_example *e) {
        memset(e, 0, sizeof(*e));
        e->target = rw->cur;
        e->item = -1;
        const struct veil_context_info *info = rw->info;
        /* The previous event's features belong to the newest item: with
         * an older one in its place (the newest unknown to the model) the
         * pair would teach a transition nobody made. */
        if (rw->tier == VEIL_TIER_PERSONALIZED && info && info->n_prev &&
            rw->n_recent && rw->newest_known) {
                /* The state before this event: the previous event's
                 * features, its item, the items before. */
                e->feat = info->prev_features;
                e->n_feat = info->n_prev;
                e->item = rw->recent[0];
                e->recent = rw->recent + 1;
                e->n_recent = rw->n_recent - 1;
                return 0;
        }
        /* Nothing kept: this event's context without the item itself
         * (which is the answer). */
        uint32_t *f = veil_batch_alloc(b, ev->n_features * sizeof(uint32_t) +
                                                  1);
        if (!f)
                return -VEIL_ENOMEM;
        size_t nf = 0;
        for (size_t i = 0; i < ev->n_features; i++)
                if (!info || !info->kinds ||
                    !veil_ctx_kind_is_item(info->kinds[i]))
                        f[nf++] = ev->features[i];
        e->feat = f;
        e->n_feat = nf;
        return 0;
}

static int hold_put(struct hold *h, const struct veil_example *e,
                    uint64_t who) {
        if (h->n == h->cap) {
                size_t cap = h->cap ? 2 * h->cap : 64;
                struct held *x = realloc(h->ex, cap * sizeof(*x));
                if (!x)
                        return -VEIL_ENOMEM;
                h->ex = x;
                h->cap = cap;
        }
        size_t need = e->n_feat + e->n_recent;
        if (h->n_ids + need > h->cap_ids) {
                size_t cap = h->cap_ids ? 2 * h->cap_ids : 1024;
                while (cap < h->n_ids + need)
                        cap *= 2;
                uint32_t *ids = realloc(h->ids, cap * sizeof(*ids));
                if (!ids)
                        return -VEIL_ENOMEM;
                h->ids = ids;
                h->cap_ids = cap;
        }
        struct held *x = &h->ex[h->n++];
        *x = (struct held){e->target, e->item, (uint32_t)e->n_feat,
                           (uint32_t)e->n_recent, h->n_ids, who, 0};
        if (e->n_feat) /* (a NULL array of none: memcpy's arguments may
                        * not be NULL even for 0 bytes) */
                memcpy(h->ids + h->n_ids, e->feat,
                       e->n_feat * sizeof(uint32_t));
        if (e->n_recent)
                memcpy(h->ids + h->n_ids + e->n_feat, e->recent,
                       e->n_recent * sizeof(int32_t));
        h->n_ids += need;
        return 0;
}

/* Emptied once learned or dropped, and wiped: the buffers are reused,
 * never freed, so a person's keyed hash, features and items stayed in
 * memory until a larger hold overwrote them, where a later erasure could
 * not find them (it looks only at what is held). */
static void hold_clear(struct hold *h) {
        if (h->n)
                memset(h->ex, 0, h->n * sizeof(*h->ex));
        if (h->n_ids)
                memset(h->ids, 0, h->n_ids * sizeof(*h->ids));
        h->n = 0;
        h->n_erased = 0;
        h->n_ids = 0;
}

/* The held examples will not be learned (a failed release, the budget
 * spent, their step skipped): counted. */
static void hold_drop(struct hold *h) {
        h->dropped += h->n - h->n_erased;
        hold_clear(h);
}

/* The examples held for the step just opened, learned with the model its
 * predecessor's release left and the step's draw of sampled items: as if
 * they had come after that release. Each is one person's. */
static int learn_held(struct state *s) {
        struct hold *h = &s->hold;
        if (!h->n)
                return 0;
        uint64_t open = veil_dp_step(s->dp);
        if (h->step != open) {
                /* Their step was skipped. Events are placed no later than
                 * their batch's clock, so the batch that brought them
                 * marked that step as seen (veil_dp_clock) and it is
                 * released: this is a guard, which would otherwise put
                 * them in another step. */
                hold_drop(h);
                return 0;
        }
        veil_learner_support_epoch(s->L, open);
        enum { CHUNK = 1024 };
        struct veil_example *ex = malloc(CHUNK * sizeof(*ex));
        if (!ex) {
                hold_drop(h);
                return -VEIL_ENOMEM;
        }
        char err[256];
        int rc = 0;
        for (size_t i = 0; i < h->n && !rc;) {
                size_t n = 0;
                for (; i < h->n && n < CHUNK; i++) {
                        const struct held *x = &h->ex[i];
                        if (x->erased)
                                continue;
                        const uint32_t *ids = h->ids + x->off;
                        ex[n] = (struct veil_example){
                                ids, x->n_feat, x->item,
                                (const int32_t *)(ids + x->n_feat),
                                x->n_recent, x->target, (uint32_t)n};
                        n++;
                }
                if (!n)
                        break;
                rc = veil_learn_step(s->L, s->m, ex, n, n, err, sizeof(err));
                if (rc)
                        veil_log(s->st, VEIL_LOG_ERROR, "learning step: %s",
                                 err);
                else
                        s->learned_events += veil_learn_last(s->L).examples;
        }
        free(ex);
        hold_clear(h);
        return rc;
}

static int learn(struct state *s, struct veil_batch *b, size_t n_rows) {
        struct veil_example *ex = veil_batch_alloc(b, n_rows * sizeof(*ex) + 1);
        size_t cap = 16;
        while (cap < 2 * n_rows)
                cap *= 2;
        struct slot *tab = veil_batch_alloc(b, cap * sizeof(*tab));
        struct slot *htab = veil_batch_alloc(b, cap * sizeof(*htab));
        if (!ex || !tab || !htab)
                return -VEIL_ENOMEM;
        size_t n = 0;
        uint32_t n_users = 0, last_user = 0, n_held = 0;
        const char *last_key = NULL;
        for (size_t r = 0; r < n_rows; r++) {
                const struct row *rw = &s->rows[r];
                const struct veil_event *ev = &b->events[rw->ev];
                int train = ev->tier == VEIL_TIER_UNDECIDED
                                    ? s->default_training
                                    : ev->training;
                /* As the context stage's profile (plugins/context): with
                 * keys the subject or nothing, and an empty id is nobody
                 * (a held example keyed by "" no erase could reach). */
                const char *key = s->keyed ? ev->subject
                                  : ev->subject ? ev->subject
                                                : ev->user_id;
                if (key && !*key)
                        key = NULL;
                /* An event whose record could not be written went to the
                 * dead-letter topic (emit): not learned, so learning it
                 * again from there never counts it twice. */
                if (!train || rw->tier == VEIL_TIER_NONE || rw->cur < 0 ||
                    !key || ev->status != VEIL_PASS)
                        continue;
                /* No later than the batch's clock: an event stamped ahead
                 * of it (a skewed clock) counts as now, so its step is
                 * one the clock has seen and will release. */
                int64_t ts = ev->ts_ms < b->now_ms ? ev->ts_ms : b->now_ms;
                enum veil_dp_place pl = s->dp ? veil_dp_place(s->dp, ts)
                                              : VEIL_DP_OPEN;
                if (pl == VEIL_DP_LATE || pl == VEIL_DP_EARLY)
                        continue;
                if (pl == VEIL_DP_NEXT) {
                        /* Held for the next step: the person's first
                         * event of it, once. */
                        uint32_t seen = n_held;
                        if (user_id(htab, cap, key, &n_held) < seen)
                                continue;
                        /* What is held is for the step after the open
                         * one, or it goes: relabelled by the put below, a
                         * person's example of an older step would be
                         * learned beside their new one, two in one step
                         * (after a failure that left the hold). */
                        if (s->hold.n &&
                            s->hold.step != veil_dp_step(s->dp) + 1)
                                hold_drop(&s->hold);
                        if (s->hold.n >= s->hold.max) {
                                s->hold.full++;
                                continue;
                        }
                        if (!veil_dp_admit_next(s->dp, key, s->batch_no))
                                continue;
                        struct veil_example e;
                        if (build_example(b, rw, ev, &e))
                                return -VEIL_ENOMEM;
                        if (hold_put(&s->hold, &e,
                                     veil_dp_user_hash(s->dp, key))) {
                                /* Out of memory: not held, counted (its
                                 * admission stays counted: over, not
                                 * under). */
                                s->hold.full++;
                                continue;
                        }
                        s->hold.step = veil_dp_step(s->dp) + 1;
                        continue;
                }
                if (s->dp && !veil_dp_admit(s->dp, key, s->batch_no))
                        continue;
                struct veil_example *e = &ex[n];
                if (build_example(b, rw, ev, e))
                        return -VEIL_ENOMEM;
                /* A run of one user's events: the id of the one before
                 * (the table would give it, after a hash of the key). */
                if (last_key && (key == last_key || !strcmp(key, last_key))) {
                        e->user = last_user;
                } else {
                        e->user = user_id(tab, cap, key, &n_users);
                        last_key = key;
                        last_user = e->user;
                }
                n++;
        }
        if (!n)
                return 0;
        char err[256];
        int rc = veil_learn_step(s->L, s->m, ex, n, n_users, err, sizeof(err));
        if (rc) {
                veil_log(s->st, VEIL_LOG_ERROR, "learning step: %s", err);
                return rc;
        }
        s->learned_events += veil_learn_last(s->L).examples;
        /* Counted steps: the contributions just added may complete one. */
        return s->dp ? release_due(s, b) : 0;
}

/* The model rows of an event's recent items, -1 for unknown ones, into
 * full (n long). A profile's list moves by one place per event, so most
 * of an event's items are the very strings (pointers) the event before
 * resolved one place earlier: those take that row without a lookup, when
 * they had one (an item found stays where it is; one not found may have
 * been added since). The others are looked up together, so that their
 * misses overlap. */
static void resolve_recent(const struct veil_model *m,
                           const char *const *ids, size_t n,
                           const char *const *pids, const int32_t *pres,
                           size_t pn, int32_t *full) {
        const char *miss[16];
        size_t at[16], nm = 0;
        int32_t got[16];
        for (size_t j = 0; j < n; j++) {
                if (j && j - 1 < pn && ids[j] && ids[j] == pids[j - 1] &&
                    pres[j - 1] >= 0) {
                        full[j] = pres[j - 1];
                        continue;
                }
                miss[nm] = ids[j];
                at[nm++] = j;
                if (nm == 16 || j + 1 == n) {
                        veil_catalog_find_many(m->cat, miss, nm, got);
                        for (size_t k = 0; k < nm; k++)
                                full[at[k]] = got[k];
                        nm = 0;
                }
        }
        if (nm) {
                veil_catalog_find_many(m->cat, miss, nm, got);
                for (size_t k = 0; k < nm; k++)
                        full[at[k]] = got[k];
        }
}

static int others_spent(struct state *s, char *errstr, size_t errstr_size);
static void own_unaccounted(struct state *s);
static void share_alerts(struct state *s);
static int others_save(struct state *s, char *errstr, size_t errstr_size);
static int others_load(struct state *s, const char *acc_path, char *errstr,
                       size_t errstr_size);

/* The model rows of the person's earlier visits' items (those the model
 * has; an unknown one is not added) and the score each gets. */
static int history_of(const struct state *s, struct veil_batch *b,
                      const struct veil_context_info *info, struct row *rw) {
        size_t n = info->n_history;
        rw->hist = veil_batch_alloc(b, n * sizeof(int32_t));
        rw->hist_boost = veil_batch_alloc(b, n * sizeof(float));
        if (!rw->hist || !rw->hist_boost)
                return -VEIL_ENOMEM;
        veil_catalog_find_many(s->m->cat, info->history, n, rw->hist);
        for (size_t j = 0; j < n; j++)
                if (rw->hist[j] >= 0) {
                        rw->hist[rw->n_hist] = rw->hist[j];
                        rw->hist_boost[rw->n_hist++] =
                                s->hist_weight *
                                logf(1.0f + (float)info->history_visits[j]);
                }
        return 0;
}

/* What was learned and what was not, for /metrics and the summaries of
 * veil replay and veil demo: counts of events and of steps, never about
 * one person (DESIGN: counts are not covered by the guarantee, and say
 * so). */
static void gauges(struct state *s) {
        veil_metric_set(s->st, "events_learned", (double)s->learned_events);
        if (!s->dp)
                return;
        struct veil_dp_stats ds = veil_dp_stats(s->dp);
        veil_metric_set(s->st, "not_learned_same_step",
                        (double)ds.refused_step);
        veil_metric_set(s->st, "not_learned_at_max",
                        (double)ds.refused_window);
        veil_metric_set(s->st, "not_learned_frozen",
                        (double)ds.refused_frozen);
        veil_metric_set(s->st, "not_learned_table_full",
                        (double)ds.refused_full);
        veil_metric_set(s->st, "not_learned_step_full",
                        (double)ds.refused_step_full);
        veil_metric_set(s->st, "not_learned_late", (double)ds.late);
        veil_metric_set(s->st, "not_learned_held_dropped",
                        (double)s->hold.dropped);
        veil_metric_set(s->st, "not_learned_early", (double)ds.early);
        veil_metric_set(s->st, "not_learned_hold_full",
                        (double)s->hold.full);
        veil_metric_set(s->st, "held_next_step",
                        (double)(s->hold.n - s->hold.n_erased));
        veil_metric_set(s->st, "not_learned_erased", (double)s->hold.erased);
        veil_metric_set(s->st, "noisy_steps", (double)ds.steps);
        veil_metric_set(s->st, "noisy_steps_empty", (double)ds.empty_steps);
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        struct veil_model *m = s->m;
        size_t d = m->d;
        if (reserve_rows(s, b->n))
                return -VEIL_ENOMEM;
        if (!s->batch_no) {
                /* The checkpoint (if any) is restored: the updates read
                 * from the other instances before it apply now. */
                size_t n = veil_share_go_live(s->share, m);
                if (n)
                        veil_log(s->st, VEIL_LOG_INFO,
                                 "%zu model update chunk(s) of other "
                                 "instances applied",
                                 n);
                double other;
                size_t lineages;
                if (s->dp &&
                    (other = veil_share_own_other(s->share, &lineages)) > 0)
                        /* Once per start (counted since it was read),
                         * and not a warning: it stays true at every
                         * start after a file was lost. */
                        veil_log(s->st, VEIL_LOG_INFO,
                                 "this instance released updates costing "
                                 "rho %s under %zu earlier accountant "
                                 "file(s), not the one it has now (lineage "
                                 "%u; was a file lost?): they count as "
                                 "another sender's",
                                 up(other, 4).s, lineages,
                                 (unsigned)veil_accountant_lineage(
                                         veil_dp_accountant(s->dp)));
                own_unaccounted(s);
        }
        if (s->others_unsaved) {
                /* others_spent: a raised sampler rate whose save failed
                 * is saved first, as when it was read. */
                char err[640];
                int rc = others_spent(s, err, sizeof(err));
                if (rc) {
                        veil_log(s->st, VEIL_LOG_ERROR, "%s", err);
                        return rc;
                }
                s->others_unsaved = 0;
        }
        s->batch_no++;
        /* 0. Steps on the clock: the steps it has closed are released
         * first, so that this batch is served by them and its
         * contributions join the step now open. */
        if (s->dp) {
                veil_dp_clock(s->dp, b->now_ms);
                int rc = release_due(s, b);
                if (rc)
                        return rc;
                /* On the clock, one draw of the sampled items per DP
                 * step (counted steps keep a draw per batch). */
                if (s->clock_steps)
                        veil_learner_support_epoch(s->L,
                                                   veil_dp_step(s->dp));
        }
        /* 1. Queries. */
        size_t n_rows = 0, pn = 0;
        const char *const *pids = NULL; /* the last recent items resolved */
        const int32_t *pres = NULL;
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                const struct veil_context_info *info = info_of(ev);
                veil_tier_t tier = info ? info->tier : ev->tier;
                if (tier == VEIL_TIER_UNDECIDED)
                        tier = s->default_tier;
                if (tier == VEIL_TIER_NONE && !s->serve_none)
                        continue;
                if (info && info->space != m->space && !s->warned_space) {
                        veil_log(s->st, VEIL_LOG_WARN,
                                 "the context stage hashes into %u features, "
                                 "this stage has feature_space %zu: ids are "
                                 "folded; set them equal",
                                 info->space, m->space);
                        s->warned_space = 1;
                }
                struct row *rw = &s->rows[n_rows];
                memset(rw, 0, sizeof(*rw));
                rw->ev = i;
                rw->tier = tier;
                rw->info = info;
                rw->cur = -1;
                n_rows++;
                if (tier == VEIL_TIER_NONE)
                        continue;
                /* The next event's table line, asked for while this
                 * event's ids are looked up. */
                if (i + 1 < b->n && b->events[i + 1].item_id)
                        veil_catalog_prefetch(m->cat,
                                              b->events[i + 1].item_id);
                if (ev->item_id)
                        rw->cur = veil_model_item(m, ev->item_id, 1);
                if (tier == VEIL_TIER_PERSONALIZED && ev->n_recent) {
                        int32_t *full = veil_batch_alloc(
                                b, 2 * ev->n_recent * sizeof(int32_t));
                        if (!full)
                                return -VEIL_ENOMEM;
                        resolve_recent(m, ev->recent_items, ev->n_recent,
                                       pids, pres, pn, full);
                        pids = ev->recent_items;
                        pres = full;
                        pn = ev->n_recent;
                        rw->recent = full + ev->n_recent;
                        size_t n_visit = info ? info->n_visit : 0;
                        rw->newest_known = full[0] >= 0;
                        for (size_t j = 0; j < ev->n_recent; j++)
                                if (full[j] >= 0) {
                                        rw->recent[rw->n_recent++] = full[j];
                                        if (j < n_visit)
                                                rw->n_exclude++;
                                }
                }
                /* Without the history, every recent item is left out of
                 * the list (an item just seen); with it, the earlier
                 * visits' items are what it suggests again. */
                if (!s->hist_weight || !info || !info->history_items) {
                        rw->n_exclude = rw->n_recent;
                        if (s->hist_weight && !s->warned_history &&
                            tier == VEIL_TIER_PERSONALIZED) {
                                veil_log(s->st, VEIL_LOG_WARN,
                                         "history_weight is set but the "
                                         "context stage keeps no history: "
                                         "set its history_items");
                                s->warned_history = 1;
                        }
                } else if (tier == VEIL_TIER_PERSONALIZED &&
                           info->n_history && history_of(s, b, info, rw))
                        return -VEIL_ENOMEM;
        }
        /* The queries, once every row's items are known: the next
         * query's parameter rows are asked for while this one sums. */
        for (size_t r = 0; r < n_rows; r++) {
                const struct row *rw = &s->rows[r];
                const struct veil_event *ev = &b->events[rw->ev];
                float *q = s->Q + r * d;
                if (rw->tier == VEIL_TIER_NONE) {
                        /* A zero query: the scores are the biases. */
                        memset(q, 0, d * sizeof(float));
                        continue;
                }
                if (r + 1 < n_rows && s->rows[r + 1].tier != VEIL_TIER_NONE) {
                        const struct row *nx = &s->rows[r + 1];
                        const struct veil_event *ne = &b->events[nx->ev];
                        veil_model_prefetch(m, ne->features, ne->n_features,
                                            nx->cur, nx->recent,
                                            nx->n_recent);
                }
                /* A contextual query never reads the profile, even when
                 * the context stage (or a mistaken one) supplied it. */
                veil_model_query(m, ev->features, ev->n_features, rw->cur,
                                 rw->recent, rw->n_recent, s->alpha, q);
        }
        size_t items = veil_model_items(m);
        if (reserve_scores(s, n_rows * items))
                return -VEIL_ENOMEM;
        /* 2. Scores: one sgemm for the batch (the top-k adds the bias:
         * writing the biases into S first for a beta-1 sgemm costs as
         * much as it saves there). */
        veil_model_score(m, s->Q, n_rows, items, s->S, items);
        /* 3. Top-k, row after row: the rows of S are one stream for the
         * hardware prefetcher (the sgemm writes S by column panels, so no
         * order of rows finds more of it in cache). Then the records, in
         * event order. */
        uint32_t *idx = veil_batch_alloc(b, n_rows * s->k * sizeof(uint32_t) + 1);
        float *val = veil_batch_alloc(b, n_rows * s->k * sizeof(float) + 1);
        size_t *got = veil_batch_alloc(b, n_rows * sizeof(size_t) + 1);
        if (!idx || !val || !got)
                return -VEIL_ENOMEM;
        for (size_t r = 0; r < n_rows; r++) {
                const struct row *rw = &s->rows[r];
                if (!++s->stamp) {
                        memset(s->mark, 0, m->cap * sizeof(uint32_t));
                        s->stamp = 1;
                }
                /* Excluded scores become -inf as well as marked: the
                 * top-k's threshold pass then never counts them. */
                float *row = s->S + r * items;
                if (rw->tier != VEIL_TIER_NONE) {
                        /* The public neighbours, weighted as the query
                         * weighs its items. */
                        public_add(s, rw->cur, 1, row);
                        for (size_t j = 0; j < rw->n_recent; j++)
                                public_add(s, rw->recent[j],
                                           s->alpha / (float)rw->n_recent,
                                           row);
                }
                for (size_t j = 0; j < rw->n_hist; j++)
                        row[rw->hist[j]] += rw->hist_boost[j];
                if (rw->cur >= 0) {
                        s->mark[rw->cur] = s->stamp;
                        row[rw->cur] = -INFINITY;
                }
                for (size_t j = 0; j < rw->n_exclude; j++) {
                        s->mark[rw->recent[j]] = s->stamp;
                        row[rw->recent[j]] = -INFINITY;
                }
                got[r] = veil_topk(row, m->b, items, s->mark,
                                   s->stamp, s->k, idx + r * s->k,
                                   val + r * s->k);
        }
        for (size_t r = 0; r < n_rows; r++) {
                const struct row *rw = &s->rows[r];
                /* The next explanation's rows (its top item's and the
                 * query's), asked for while this record is built. */
                if (r + 1 < n_rows && got[r + 1]) {
                        const struct row *nx = &s->rows[r + 1];
                        const struct veil_event *ne = &b->events[nx->ev];
                        const uint32_t *ni = idx + (r + 1) * s->k;
                        __builtin_prefetch(m->V + ni[0] * d);
                        __builtin_prefetch(m->V + ni[0] * d + d - 1);
                        for (size_t j = 0; j < got[r + 1]; j++)
                                __builtin_prefetch(m->cat->id[ni[j]]);
                        if (nx->tier != VEIL_TIER_NONE)
                                veil_model_prefetch(m, ne->features,
                                                    ne->n_features, nx->cur,
                                                    nx->recent, nx->n_recent);
                        for (size_t j = 0; nx->info && nx->info->words &&
                                           j < ne->n_features;
                             j++)
                                if (nx->info->words[j])
                                        __builtin_prefetch(
                                                nx->info->words[j]);
                }
                int rc = emit(s, b, &b->events[rw->ev], rw, idx + r * s->k,
                              val + r * s->k, got[r]);
                if (rc == -VEIL_EINVAL) {
                        /* The record could not be written (not encodable,
                         * or too large for the producer; the host logged
                         * why): the event goes to the dead-letter topic
                         * and the stream goes on. */
                        veil_event_dead_letter(
                                b, &b->events[rw->ev],
                                "dp_model: its recommendation record could "
                                "not be written (see the log)");
                        continue;
                }
                if (rc < 0)
                        return rc;
                s->served++;
        }
        /* 4. Learn from what was just served (prequential). */
        int rc = learn(s, b, n_rows);
        gauges(s);
        return rc;
}

static void destroy(void *state) {
        struct state *s = state;
        if (!s)
                return;
        veil_dp_free(s->dp);
        free(s->hold.ex);
        free(s->hold.ids);
        veil_share_free(s->share);
        veil_learner_free(s->L);
        veil_model_free(s->m);
        veil_prior_nb_free(&s->nb[0]);
        veil_prior_nb_free(&s->nb[1]);
        free(s->Q);
        free(s->S);
        free(s->rows);
        free(s->mark);
        free(s->others_path);
        free(s->acc_path);
        free(s);
}

static int bad(char *errstr, size_t errstr_size, const veil_params_t *p,
               const char *name, const char *valid) {
        snprintf(errstr, errstr_size, "%s: %s must be %s",
                 veil_params_where(p, name), name, valid);
        return -VEIL_EINVAL;
}

/* Frozen now, not at the first release: until then events were admitted,
 * held and counted as learned. Wherever epsilon may have grown with no
 * release of this run: the accountant file, the other instances' rho, a
 * restored checkpoint. */
static void freeze_if_spent(struct state *s, veil_stage_t *st) {
        if (!s->dp || s->eps_budget <= 0)
                return;
        struct veil_dp_stats ds = veil_dp_stats(s->dp);
        if (ds.frozen || ds.epsilon < s->eps_budget)
                return;
        veil_dp_freeze(s->dp);
        veil_log(st, VEIL_LOG_WARN,
                 "privacy budget already exhausted: epsilon %s of %.4g "
                 "spent at delta %s; serving only",
                 up(ds.epsilon, 4).s, s->eps_budget, up(ds.delta, 3).s);
}

/* The mechanism's parameters; with gaussian, the accountant is loaded
 * (a restart resumes at its saved spend) and the budget reported. */
/* accountant_file, resolved as every path in a pipeline is: a relative
 * one against the pipeline file's directory. Against the directory veil
 * happened to start in, a start from another one (a service manager's
 * working directory, a manual cd) found no file there, began a new
 * accountant at ε = 0, and the spend so far was never reported again.
 * Veils before this one did resolve it against the working directory: a
 * file found only there is refused by name, never replaced by a new one
 * beside the pipeline. */
static int acc_path_of(const veil_params_t *p, char **out, char *errstr,
                       size_t errstr_size) {
        const char *raw = veil_params_str(p, "accountant_file");
        const char *where = veil_params_where(p, "accountant_file");
        char *path = veil_catalog_path(where, raw);
        if (!path) {
                snprintf(errstr, errstr_size, "dp_model: out of memory");
                return -VEIL_ENOMEM;
        }
        struct stat here, there;
        if (raw[0] != '/' && strcmp(path, raw) &&
            stat(raw, &here) == 0 && S_ISREG(here.st_mode) &&
            (stat(path, &there) != 0 || here.st_dev != there.st_dev ||
             here.st_ino != there.st_ino)) {
                snprintf(errstr, errstr_size,
                         "%s: accountant_file '%s' is read beside the "
                         "pipeline file, as '%s', but an accountant file "
                         "'%s' is in the directory veil started in (where "
                         "earlier veils read it): move it to '%s', or "
                         "give accountant_file as an absolute path; veil "
                         "will not start a second accountant beside it",
                         where, raw, path, raw, path);
                free(path);
                return -VEIL_EINVAL;
        }
        *out = path;
        return 0;
}

static int dp_setup(struct state *s, veil_stage_t *st, const veil_params_t *p,
                    float clip, char *errstr, size_t errstr_size) {
        const char *mech = veil_params_str(p, "mechanism");
        int tree = !strcmp(mech, "tree");
        if (strcmp(mech, "gaussian") && !tree && strcmp(mech, "none"))
                return bad(errstr, errstr_size, p, "mechanism",
                           "gaussian, tree or none");
        /* The words are checked whatever the mechanism: a typo would
         * otherwise wait until noise is switched on. */
        if (strcmp(veil_params_str(p, "on_exhausted"), "freeze"))
                return bad(errstr, errstr_size, p, "on_exhausted", "freeze");
        const char *blocks = veil_params_str(p, "dp_blocks");
        if (strcmp(blocks, "all") && strcmp(blocks, "bias"))
                return bad(errstr, errstr_size, p, "dp_blocks", "all or bias");
        const char *opt = veil_params_str(p, "dp_optimizer");
        if (strcmp(opt, "sgd") && strcmp(opt, "adagrad"))
                return bad(errstr, errstr_size, p, "dp_optimizer",
                           "sgd or adagrad");
        const char *est = veil_params_str(p, "tree_estimator");
        int honaker = !strcmp(est, "honaker");
        if (strcmp(est, "plain") && !honaker)
                return bad(errstr, errstr_size, p, "tree_estimator",
                           "plain or honaker");
        if (honaker && !tree)
                return bad(errstr, errstr_size, p, "tree_estimator",
                           "plain unless mechanism is tree");
        const char *stime = veil_params_str(p, "step_time");
        int event_time = !strcmp(stime, "event");
        if (!event_time && strcmp(stime, "batch"))
                return bad(errstr, errstr_size, p, "step_time",
                           "event or batch");
        if (!strcmp(mech, "none"))
                return 0;
        int64_t tsteps = veil_params_int(p, "tree_steps", 64);
        if (tsteps < 1 || tsteps > (int64_t)1 << 40)
                return bad(errstr, errstr_size, p, "tree_steps",
                           "between 1 and 2^40");
        double sigma = veil_params_double(p, "noise_multiplier", 1.0);
        double dlr = veil_params_double(p, "dp_learning_rate", 1.0);
        if (!(dlr >= 0 && dlr <= 1e6))
                return bad(errstr, errstr_size, p, "dp_learning_rate",
                           "between 0 and 10^6");
        int64_t step = veil_params_int(p, "step_size", 4096);
        double interval_s = veil_params_double(p, "step_interval_s", 3600);
        int64_t interval = 0; /* ms, at least 1; 0: counted steps */
        if (interval_s > 0 && interval_s <= 1e8) {
                interval = llround(interval_s * 1000);
                if (interval < 1)
                        interval = 1;
        }
        double late_s = veil_params_double(p, "step_lateness_s", 60);
        int64_t hold = veil_params_int(p, "step_hold", 100000);
        int64_t m = veil_params_int(p, "max_contributions", 4);
        int64_t win = veil_params_int(p, "window_steps", 0);
        int64_t slots = veil_params_int(p, "user_slots", 1 << 20);
        double budget = veil_params_double(p, "epsilon_budget", 8.0);
        double delta = veil_params_double(p, "delta", 1e-8);
        if (!(sigma >= 0.01 && sigma <= 1e6))
                return bad(errstr, errstr_size, p, "noise_multiplier",
                           "between 0.01 and 1e6");
        if (step < 1 || step > 100000000)
                return bad(errstr, errstr_size, p, "step_size",
                           "between 1 and 10^8");
        if (!(interval_s >= 0 && interval_s <= 1e8))
                return bad(errstr, errstr_size, p, "step_interval_s",
                           "between 0 and 10^8 seconds (0: counted steps)");
        /* A counted step ends when step_size contributions are in, and a
         * step takes at most VEIL_DP_STEP_MAX: a larger one never ended,
         * and learning stopped for good with every event refused. */
        if (interval_s == 0 && step > VEIL_DP_STEP_MAX)
                return bad(errstr, errstr_size, p, "step_size",
                           "at most 1048576 (2^20, the contributions a step "
                           "takes) with step_interval_s 0");
        if (m < 1 || m > 1000000)
                return bad(errstr, errstr_size, p, "max_contributions",
                           "between 1 and 10^6");
        event_time = event_time && interval > 0;
        if (event_time && !(late_s >= 0 && late_s * 1000 < (double)interval))
                return bad(errstr, errstr_size, p, "step_lateness_s",
                           "≥ 0 and below step_interval_s (the default is "
                           "60; or set step_time: batch)");
        if (hold < 0 || hold > 100000000)
                return bad(errstr, errstr_size, p, "step_hold",
                           "between 0 and 10^8");
        int64_t tp = veil_params_int(p, "tree_participations", 1);
        if (tp < 1 || tp > 1000000)
                return bad(errstr, errstr_size, p, "tree_participations",
                           "between 1 and 10^6");
        if (win < 0)
                return bad(errstr, errstr_size, p, "window_steps",
                           "≥ 0 (0: one window, the whole stream)");
        if (slots < 64 || slots > (1 << 28))
                return bad(errstr, errstr_size, p, "user_slots",
                           "between 64 and 2^28");
        if (!(budget >= 0))
                return bad(errstr, errstr_size, p, "epsilon_budget",
                           "≥ 0 (0: no budget)");
        if (!(delta > 0 && delta < 1))
                return bad(errstr, errstr_size, p, "delta",
                           "in (0, 1), below 1/users²");
        if (!veil_params_has(p, "accountant_file"))
                return bad(errstr, errstr_size, p, "accountant_file",
                           "set with mechanism gaussian or tree (a file on "
                           "a persistent volume)");
        int rc = acc_path_of(p, &s->acc_path, errstr, errstr_size);
        if (rc)
                return rc;
        struct veil_dp_cfg c = {tree ? VEIL_DP_MODE_TREE
                                     : VEIL_DP_MODE_GAUSSIAN,
                                sigma, dlr,
                                !strcmp(opt, "adagrad"),
                                !strcmp(veil_params_str(p, "dp_blocks"),
                                        "bias"),
                                clip,
                                (uint64_t)step, (uint64_t)win,
                                (uint32_t)(tree ? tp : m),
                                (size_t)slots, budget, delta,
                                s->acc_path, NULL,
                                (uint64_t)tsteps,
                                honaker ? VEIL_TREE_HONAKER : VEIL_TREE_PLAIN,
                                interval, event_time,
                                event_time ? llround(late_s * 1000) : 0,
                                VEIL_DP_STEP_MAX, veil_stage_pipeline_id(st)};
        char err[512] = "";
        rc = veil_dp_new(&s->dp, &c, s->m, err, sizeof(err));
        if (rc) {
                /* Where the fix goes: the accountant file's line for its
                 * errors (locked, unreadable, damaged, unwritable), else
                 * the mechanism's. */
                snprintf(errstr, errstr_size, "%s: %s",
                         veil_params_where(p, strstr(err, "accountant_file")
                                                      ? "accountant_file"
                                                      : "mechanism"),
                         err[0] ? err
                                : rc == -VEIL_ENOMEM ? "out of memory"
                                                     : "failed");
                return rc;
        }
        veil_learner_set_noise(s->L, veil_dp_hook, s->dp);
        veil_learner_double_sums(s->L);
        s->clock_steps = interval > 0;
        s->hold.max = event_time ? (size_t)hold : 0;
        s->eps_budget = budget;
        struct veil_dp_stats ds = veil_dp_stats(s->dp);
        veil_privacy_set_budget(st, budget > 0 ? budget : INFINITY, delta);
        veil_privacy_set_spent(st, ds.epsilon, ds.delta);
        /* Honaker keeps 16 bytes per released parameter per tree level
         * (tree.h): said at start, so a memory limit can be set by it. */
        if (honaker) {
                struct veil_model *m = s->m;
                double params = c.bias_only
                                        ? (double)m->cap
                                        : (double)m->cap * (2 * m->d + 1) +
                                                  (double)m->space * m->d;
                veil_log(st, VEIL_LOG_INFO,
                         "Honaker's estimate keeps up to %.0f MiB (%.0f "
                         "parameters, %llu tree levels, 16 bytes each)",
                         params * 16 * (double)veil_dp_tree_depth(
                                                 (uint64_t)tsteps) /
                                 (1 << 20),
                         params,
                         (unsigned long long)veil_dp_tree_depth(
                                 (uint64_t)tsteps));
        }
        char sched[96];
        if (interval && event_time)
                snprintf(sched, sizeof(sched),
                         "steps of %gs on the clock, by the events' times, "
                         "released %gs late",
                         interval_s, late_s);
        else if (interval)
                snprintf(sched, sizeof(sched), "steps of %gs on the clock",
                         interval_s);
        else
                snprintf(sched, sizeof(sched), "steps of %lld contributions",
                         (long long)step);
        char wins[64] = "over the whole stream";
        if (win)
                snprintf(wins, sizeof(wins), "per %lld-step window",
                         (long long)win);
        if (tree)
                veil_log(st, VEIL_LOG_INFO,
                         "tree mechanism (DP-FTRL): noise multiplier %.4g "
                         "(accounted %s), %s, trees of %lld steps, %lld "
                         "step(s) per user per tree, %s estimate; epsilon "
                         "%s spent of %.4g at delta %s",
                         sigma, down(ds.sigma_acc, 6).s, sched,
                         (long long)tsteps,
                         (long long)tp, honaker ? "Honaker's" : "plain",
                         up(ds.epsilon, 4).s, budget, up(delta, 3).s);
        else
                veil_log(st, VEIL_LOG_INFO,
                         "gaussian mechanism: noise multiplier %.4g "
                         "(accounted %s), %s, at most %lld steps per user "
                         "%s; epsilon %s spent of %.4g at delta %s",
                         sigma, down(ds.sigma_acc, 6).s, sched, (long long)m,
                         wins,
                         up(ds.epsilon, 4).s, budget, up(delta, 3).s);
        if (!interval)
                veil_log(st, VEIL_LOG_WARN,
                         "%s: step_interval_s is 0: a step ends after %lld "
                         "contributions, so one person's events move the "
                         "step every later contribution joins, and epsilon "
                         "holds only between streams with the same steps; "
                         "set step_interval_s for steps on the clock",
                         veil_params_where(p, "step_interval_s"),
                         (long long)step);
        freeze_if_spent(s, st);
        return 0;
}

/* Model updates: only noisy releases may leave (a non-private step is
 * the users' gradients); the instance id names this instance's updates. */
static int share_setup(struct state *s, veil_stage_t *st,
                       const veil_params_t *p, char *errstr,
                       size_t errstr_size) {
        if (veil_out_bound(st, "model_updates") && !s->dp)
                return bad(errstr, errstr_size, p, "mechanism",
                           "gaussian or tree when the model_updates output "
                           "is bound (without noise an update would "
                           "publish the users' gradients)");
        char host[256];
        const char *inst = veil_params_has(p, "instance")
                                   ? veil_params_str(p, "instance")
                                   : "";
        const char *env = getenv("VEIL_INSTANCE_ID");
        if (!*inst && env && strlen(env) > VEIL_SHARE_INSTANCE_MAX &&
            veil_out_bound(st, "model_updates"))
                /* Cut to 255 it could equal another instance's, whose
                 * updates would then be skipped as this one's own. */
                return bad(errstr, errstr_size, p, "instance",
                           "at most 255 bytes (VEIL_INSTANCE_ID is longer)");
        if (!*inst) {
                veil_instance_id(host, sizeof(host));
                inst = host;
        } else if (strlen(inst) > VEIL_SHARE_INSTANCE_MAX)
                return bad(errstr, errstr_size, p, "instance",
                           "at most 255 bytes");
        s->sigma = veil_params_double(p, "noise_multiplier", 1.0);
        s->clip = veil_params_double(p, "clip_norm", 1.0);
        s->mechanism = !strcmp(veil_params_str(p, "mechanism"), "tree")
                               ? "tree"
                               : "gaussian";
        /* Chunks read before the first batch wait for it, and so apply
         * over a restored model whatever the host's order; past 256 MiB
         * they apply at once. */
        return veil_share_new(
                &s->share, inst,
                s->dp ? veil_accountant_lineage(veil_dp_accountant(s->dp))
                      : 0,
                (size_t)256 << 20);
}

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        int64_t k = veil_params_int(p, "k", 10);
        int64_t dim = veil_params_int(p, "dim", 64);
        int64_t space = veil_params_int(p, "feature_space", 16384);
        int64_t max_new = veil_params_int(p, "max_new_items", 10000);
        double alpha = veil_params_double(p, "recent_weight", 1.0);
        double hw = veil_params_double(p, "history_weight", 0);
        double lr = veil_params_double(p, "learning_rate", 0.1);
        int64_t neg = veil_params_int(p, "negatives", 256);
        double clip = veil_params_double(p, "clip_norm", 1.0);
        int64_t mue = veil_params_int(p, "max_user_events", 32);
        double init_scale = veil_params_double(p, "init_scale", 0.1);
        int64_t seed = veil_params_int(p, "seed", 1);
        if (k < 1 || k > MAX_K)
                return bad(errstr, errstr_size, p, "k", "between 1 and 100");
        if (dim < 1 || dim > 1024)
                return bad(errstr, errstr_size, p, "dim", "between 1 and 1024");
        if (space < 1 || space > (1 << 24))
                return bad(errstr, errstr_size, p, "feature_space",
                           "between 1 and 2^24");
        if (max_new < 0 || max_new > 10000000)
                return bad(errstr, errstr_size, p, "max_new_items",
                           "between 0 and 10000000");
        if (!(alpha >= 0 && alpha <= 100))
                return bad(errstr, errstr_size, p, "recent_weight",
                           "between 0 and 100");
        if (!(hw >= 0 && hw <= 1e6))
                return bad(errstr, errstr_size, p, "history_weight",
                           "between 0 and 10^6");
        if (!(lr >= 0 && lr <= 10))
                return bad(errstr, errstr_size, p, "learning_rate",
                           "between 0 and 10");
        if (neg < 1 || neg > 65536)
                return bad(errstr, errstr_size, p, "negatives",
                           "between 1 and 65536");
        if (!(clip >= 1e-6 && clip <= 1e6)) /* σ·C stays in the sampler's range */
                return bad(errstr, errstr_size, p, "clip_norm",
                           "between 1e-6 and 1e6");
        if (mue < 1 || mue > 4096)
                return bad(errstr, errstr_size, p, "max_user_events",
                           "between 1 and 4096");
        /* Private steps on the clock: a person's contribution to a step is
         * their first event in it. Several events of the first serving
         * batch they appear in would depend on where the batch ends, so on
         * the records of others around them. */
        if (strcmp(veil_params_str(p, "mechanism"), "none") &&
            veil_params_double(p, "step_interval_s", 3600) > 0)
                mue = 1;
        if (!(init_scale >= 0 && init_scale <= 10))
                return bad(errstr, errstr_size, p, "init_scale",
                           "between 0 and 10");
        veil_tier_t dt;
        if (parse_tier(veil_params_str(p, "default_tier"), &dt))
                return bad(errstr, errstr_size, p, "default_tier",
                           "none, contextual or personalized");

        /* One pipeline thread, one BLAS thread: the design's rule, and
         * what the benchmark's sgemm ceiling is measured with. */
        openblas_set_num_threads(1);

        struct veil_catalog *cat = NULL;
        char err[512];
        int rc;
        if (veil_params_has(p, "catalog")) {
                struct veil_catalog_columns cols = {0};
                size_t nm = veil_params_map_size(p, "catalog_columns");
                for (size_t i = 0; i < nm; i++) {
                        const char *key = veil_params_map_key(
                                p, "catalog_columns", i);
                        const char *v = veil_params_map_value(
                                p, "catalog_columns", i);
                        if (!strcmp(key, "id"))
                                cols.id = v;
                        else if (!strcmp(key, "category"))
                                cols.category = v;
                        else if (!strcmp(key, "price"))
                                cols.price = v;
                        else if (!strcmp(key, "description"))
                                cols.description = v;
                        else
                                return bad(errstr, errstr_size, p,
                                           "catalog_columns",
                                           "a map with the keys id, "
                                           "category, price, description");
                }
                char *path = veil_catalog_path(veil_params_where(p, "catalog"),
                                               veil_params_str(p, "catalog"));
                rc = path ? veil_catalog_load(&cat, path, &cols,
                                              (size_t)max_new, 5, err,
                                              sizeof(err))
                          : -VEIL_ENOMEM;
                free(path);
                if (rc) {
                        snprintf(errstr, errstr_size, "%s: %s",
                                 veil_params_where(p, "catalog"), err);
                        return rc;
                }
        } else if ((rc = veil_catalog_new(&cat, (size_t)max_new, 5, errstr,
                                          errstr_size))) {
                return rc;
        }
        if (!cat->cap) {
                veil_catalog_free(cat);
                return bad(errstr, errstr_size, p, "max_new_items",
                           "at least 1 when there is no catalog");
        }
        /* BLAS counts in int: a block of 2^31 floats or more would wrap,
         * and the update of that block be skipped without a word. */
        if ((uint64_t)dim * (uint64_t)cat->cap > INT32_MAX ||
            (uint64_t)dim * (uint64_t)space > INT32_MAX) {
                veil_catalog_free(cat);
                return bad(errstr, errstr_size, p,
                           (uint64_t)dim * (uint64_t)space > INT32_MAX
                                   ? "feature_space"
                                   : "max_new_items",
                           "such that dim x feature_space and dim x (catalog "
                           "items + max_new_items) stay below 2^31");
        }
        struct state *s = calloc(1, sizeof(*s));
        if (!s) {
                veil_catalog_free(cat);
                return -VEIL_ENOMEM;
        }
        s->st = st;
        char probe[VEIL_PSEUDONYM_MAX];
        s->keyed = veil_pseudonym(st, "subject", "probe", 5, probe,
                                  sizeof(probe)) > 0;
        s->k = (size_t)k;
        s->alpha = (float)alpha;
        s->hist_weight = (float)hw;
        s->default_tier = dt;
        s->default_training = veil_params_bool(p, "default_training", 0);
        s->serve_none = veil_params_bool(p, "serve_none", 1);
        rc = veil_model_new(&s->m, cat, (size_t)dim, (size_t)space,
                            (float)init_scale, (uint64_t)seed, errstr,
                            errstr_size);
        if (rc) {
                free(s);
                return rc;
        }
        const char *prior = veil_params_str(p, "prior");
        double pnorm = veil_params_double(p, "prior_norm", 3.0);
        if (strcmp(prior, "none") && strcmp(prior, "description"))
                rc = bad(errstr, errstr_size, p, "prior",
                         "none or description");
        else if (!(pnorm > 0 && pnorm <= 1000))
                rc = bad(errstr, errstr_size, p, "prior_norm",
                         "between 0 and 1000");
        else if (!strcmp(prior, "description") &&
                 !veil_params_has(p, "catalog"))
                rc = bad(errstr, errstr_size, p, "prior",
                         "none without a catalog (the descriptions come "
                         "from it): set catalog");
        else if (!strcmp(prior, "description"))
                rc = veil_model_prior_text(s->m, (float)pnorm,
                                           (uint64_t)seed);
        int64_t nbn = veil_params_int(p, "prior_neighbors", 0);
        double nbw = veil_params_double(p, "prior_neighbor_weight", 10.0);
        if (!rc && (nbn < 0 || nbn > 1024))
                rc = bad(errstr, errstr_size, p, "prior_neighbors",
                         "between 0 and 1024");
        else if (!rc && nbn && strcmp(prior, "description"))
                rc = bad(errstr, errstr_size, p, "prior_neighbors",
                         "0 unless prior is description (the neighbours "
                         "come from the descriptions)");
        else if (!rc && !(nbw >= 0 && nbw <= 1e6))
                rc = bad(errstr, errstr_size, p, "prior_neighbor_weight",
                         "between 0 and 1e6");
        else if (!rc && (rc = veil_prior_neighbors(s->m->cat, (size_t)nbn,
                                                   &s->nb[0])))
                snprintf(errstr, errstr_size,
                         "%s: out of memory for %lld neighbours of %zu "
                         "items",
                         veil_params_where(p, "prior_neighbors"),
                         (long long)nbn, s->m->cat->n_file);
        s->nb_weight[0] = (float)nbw;
        int64_t cow = veil_params_int(p, "prior_catalog_window", 0);
        double cww = veil_params_double(p, "prior_catalog_weight", 10.0);
        if (!rc && (cow < 0 || cow > 64))
                rc = bad(errstr, errstr_size, p, "prior_catalog_window",
                         "between 0 and 64");
        else if (!rc && cow && !veil_params_has(p, "catalog"))
                rc = bad(errstr, errstr_size, p, "prior_catalog_window",
                         "0 without a catalog (the order is the catalog "
                         "file's): set catalog");
        else if (!rc && !(cww >= 0 && cww <= 1e6))
                rc = bad(errstr, errstr_size, p, "prior_catalog_weight",
                         "between 0 and 1e6");
        else if (!rc && (rc = veil_prior_catalog_order(
                                 s->m->cat, (size_t)cow, &s->nb[1])))
                snprintf(errstr, errstr_size,
                         "%s: out of memory for %lld rows around each of "
                         "%zu items",
                         veil_params_where(p, "prior_catalog_window"),
                         (long long)cow, s->m->cat->n_file);
        s->nb_weight[1] = (float)cww;
        if (rc) {
                destroy(s);
                return rc;
        }
        struct veil_learn_cfg lc = {(float)lr, (float)clip, (float)alpha,
                                    (size_t)neg, (size_t)mue, 0};
        /* Only the biases are released: their part alone is clipped. */
        lc.bias_only = strcmp(veil_params_str(p, "mechanism"), "none") &&
                       !strcmp(veil_params_str(p, "dp_blocks"), "bias");
        s->mark = calloc(s->m->cap, sizeof(uint32_t));
        if (!s->mark ||
            veil_learner_new(&s->L, &lc, s->m, (uint64_t)seed * 7919u + 1)) {
                destroy(s);
                snprintf(errstr, errstr_size, "dp_model: out of memory");
                return -VEIL_ENOMEM;
        }
        if ((rc = dp_setup(s, st, p, (float)clip, errstr, errstr_size))) {
                destroy(s);
                return rc;
        }
        if ((rc = share_setup(s, st, p, errstr, errstr_size)) ||
            (s->dp &&
             (rc = others_load(s, s->acc_path, errstr, errstr_size)))) {
                destroy(s);
                return rc;
        }
        freeze_if_spent(s, st);
        if (s->dp && veil_params_int(p, "max_new_items", 10000) > 0)
                veil_log(st, VEIL_LOG_WARN,
                         "%s: items first seen in events get model rows, so "
                         "which rows exist, and what anyone is recommended, "
                         "depends on one person's events: the guarantee "
                         "does not cover it (README, \"Not covered\"); set "
                         "max_new_items: 0 here and in the context stage",
                         veil_params_where(p, "max_new_items"));
        if (s->dp && veil_dp_stats(s->dp).rho_others > 0) {
                struct veil_dp_stats ds = veil_dp_stats(s->dp);
                veil_privacy_set_spent(st, ds.epsilon, ds.delta);
                veil_metric_set(st, "rho_others", ds.rho_others);
                veil_log(st, VEIL_LOG_INFO,
                         "epsilon %s at delta %s counts the releases of "
                         "other instances that an earlier run applied (their "
                         "rho %s, from %s)",
                         up(ds.epsilon, 4).s, up(ds.delta, 3).s,
                         up(ds.rho_others, 4).s, s->others_path);
        }
        veil_log(st, VEIL_LOG_INFO,
                 "%zu catalog items (room for %zu), d=%lld, %lld feature "
                 "rows, %lld negatives per step",
                 cat->n_file, s->m->cap, (long long)dim, (long long)space,
                 (long long)neg);
        *state = s;
        return 0;
}

/* The model and the accountant (ckpt.h; a DP step's unreleased sums are
 * not in it), and the extra section: u32 length and the table of model
 * updates applied (share.h), then a u32 0. The second length held the
 * tree's sealed state when veil continued a tree after a restart; it no
 * longer does (tree.h), and restore skips what an older checkpoint has
 * there. */
static int checkpoint(void *state, void **data, size_t *len) {
        struct state *s = state;
        void *tab;
        size_t n;
        int rc = veil_share_encode(
                s->share, s->dp ? veil_dp_stats(s->dp).rho_own : 0, &tab, &n);
        if (rc)
                return rc;
        unsigned char *x = malloc(8 + n);
        if (x) {
                veil_le_put32(x, (uint32_t)n);
                memcpy(x + 4, tab, n);
                veil_le_put32(x + 4 + n, 0);
                rc = veil_ckpt_write(s->m,
                                     s->dp ? veil_dp_accountant(s->dp) : NULL,
                                     x, 8 + n, data, len);
        } else {
                rc = -VEIL_ENOMEM;
        }
        free(x);
        free(tab);
        return rc;
}

/* Saves the senders' ρ beside accountant_file when one grew, for the next
 * start (the ε reported counts it in memory at once). By the table's
 * changes, not by the sum: a sum that went infinite (memory ran out)
 * never grows again, and the senders counted after it must still be
 * saved. */
static int others_save(struct state *s, char *errstr, size_t errstr_size) {
        double rho = veil_dp_stats(s->dp).rho_others;
        uint64_t changes = veil_share_changes(s->share);
        if (!s->others_path || changes == s->others_saved)
                return 0;
        void *tab;
        size_t n;
        char err[512];
        int rc = veil_share_rho_encode(s->share, &tab, &n);
        if (rc) {
                snprintf(errstr, errstr_size, "dp_model: cannot save %s: %s",
                         s->others_path,
                         rc == -VEIL_ENOMEM ? "out of memory"
                                            : "an instance id over 65535 "
                                              "bytes");
                return rc;
        }
        rc = veil_dp_file_replace(s->others_path, tab, n, err, sizeof(err));
        free(tab);
        if (rc) {
                snprintf(errstr, errstr_size,
                         "dp_model: the other instances' spend (rho %.4g) "
                         "is not saved: %s",
                         rho, err);
                return rc;
        }
        s->others_saved = changes;
        return 0;
}

/* The other instances' ρ that an earlier run of this one counted (the file
 * others_save writes): a damaged file stops the start, as a damaged
 * accountant_file does, since starting without it would under-report. */
static int others_load(struct state *s, const char *acc_path, char *errstr,
                       size_t errstr_size) {
        size_t l = strlen(acc_path);
        if (!(s->others_path = malloc(l + sizeof(".others")))) {
                snprintf(errstr, errstr_size, "dp_model: out of memory");
                return -VEIL_ENOMEM;
        }
        memcpy(s->others_path, acc_path, l);
        memcpy(s->others_path + l, ".others", sizeof(".others"));
        void *data;
        size_t n;
        char err[512];
        int rc = veil_dp_file_read(s->others_path, (size_t)64 << 20, &data,
                                   &n, err, sizeof(err));
        if (rc == -VEIL_ENOENT)
                return 0;
        if (!rc) {
                rc = veil_share_rho_merge(s->share, data, n);
                free(data);
                if (rc == -VEIL_EDECODE)
                        snprintf(err, sizeof(err), "damaged (checksum or "
                                                   "layout)");
                else if (rc)
                        snprintf(err, sizeof(err), "out of memory");
        }
        if (rc) {
                snprintf(errstr, errstr_size,
                         "dp_model: %s: %s; it holds the spend of the other "
                         "instances whose model updates this one applied, "
                         "and starting without it would under-report "
                         "epsilon: restore it from a backup",
                         s->others_path, err);
                return rc;
        }
        veil_dp_set_others(s->dp, veil_share_others_rho(s->share, NULL));
        s->others_saved = veil_share_changes(s->share);
        share_alerts(s);
        return 0;
}

/* Once each: why ε went infinite when senders passed the bound; another
 * process running as this instance on a copy of its accountant file. */
static void share_alerts(struct state *s) {
        struct veil_share_stats ss = veil_share_stats(s->share);
        if (ss.clone_chunks && !s->clone_logged) {
                s->clone_logged = 1;
                veil_log(s->st, VEIL_LOG_ERROR,
                         "model updates: a release numbered %llu of this "
                         "instance's own accountant file (lineage %u) was "
                         "read, above its last (%llu): another process runs "
                         "under this instance id with a copy of the file (a "
                         "copied volume?). Its spend counts apart, added to "
                         "epsilon from now on, and its releases are not "
                         "applied; give each process its own instance id and "
                         "its own accountant file",
                         (unsigned long long)ss.clone_seq,
                         s->dp ? (unsigned)veil_accountant_lineage(
                                         veil_dp_accountant(s->dp))
                               : 0u,
                         (unsigned long long)ss.seq);
        }
        if (ss.senders_full && !s->full_logged) {
                s->full_logged = 1;
                veil_log(s->st, VEIL_LOG_ERROR,
                         "model updates: more than %d senders (instance, "
                         "lineage) to count; one that is not kept cannot "
                         "be counted, so epsilon is infinite from now on, "
                         "also after a restart (learning stops, serving "
                         "goes on). Is the updates topic written by others "
                         "than this pipeline's instances?",
                         VEIL_SHARE_SENDERS_MAX);
        }
}

/* The other instances' releases are in this model: their ρ counts in the
 * ε it reports and in its budget (in memory at once), and is saved beside
 * accountant_file for the next start. */
static int others_spent(struct state *s, char *errstr, size_t errstr_size) {
        if (!s->dp)
                return 0;
        /* Their sampler's rate first, saved in the accountant file before
         * the .others file holds a ρ that needs it; raised in memory even
         * when that save fails (the next call, or the next release, saves
         * it). */
        const struct veil_accountant *acc = veil_dp_accountant(s->dp);
        double eps_before = veil_dp_stats(s->dp).epsilon,
               rate_before = veil_accountant_draws_per_rho(acc);
        int rc = veil_dp_raise_draws(s->dp,
                                     veil_share_draws_per_rho(s->share),
                                     errstr, errstr_size);
        double rate = veil_accountant_draws_per_rho(acc);
        if (rate > rate_before)
                veil_log(s->st, VEIL_LOG_INFO,
                         "the sampler's error now counts at %s noise draws "
                         "per unit of rho, another sender's (this "
                         "instance's mechanism: %s)",
                         up(rate, 4).s,
                         up(veil_dp_draws_per_rho(veil_accountant_mech(acc)),
                            4).s);
        double before = veil_dp_stats(s->dp).rho_others;
        size_t senders;
        veil_dp_set_others(s->dp, veil_share_others_rho(s->share, &senders));
        struct veil_dp_stats ds = veil_dp_stats(s->dp);
        if (ds.epsilon != eps_before)
                veil_privacy_set_spent(s->st, ds.epsilon, ds.delta);
        if (rc)
                return rc;
        if (!(ds.rho_others > before))
                return others_save(s, errstr, errstr_size);
        veil_metric_set(s->st, "rho_others", ds.rho_others);
        /* Once per instance newly counted, not per release: why ε rose. */
        if (senders > s->senders_logged) {
                s->senders_logged = senders;
                veil_log(s->st, VEIL_LOG_INFO,
                         "epsilon %s at delta %s now counts the releases "
                         "of %zu other sender(s) (their rho %s, this "
                         "instance's %s)",
                         up(ds.epsilon, 4).s, up(ds.delta, 3).s, senders,
                         up(ds.rho_others, 4).s, up(ds.rho_own, 4).s);
        }
        return others_save(s, errstr, errstr_size);
}

/* Releases of this instance's lineage seen above what its accountant
 * counts (its file replaced by an older copy) count again, as another
 * sender's: at the first batch, over everything read before it, and at
 * every record after it, since the others' spent_by may tell it later. */
static void own_unaccounted(struct state *s) {
        double own, lost;
        if (!s->dp || !((lost = veil_share_own_unaccounted(
                                 s->share,
                                 own = veil_dp_stats(s->dp).rho_own)) > 0))
                return;
        veil_log(s->st, VEIL_LOG_WARN,
                 "releases of this instance's accountant file costing rho "
                 "%.4g were seen (its updates on the topic, or the others' "
                 "count of them), more than the file counts (%.4g): was it "
                 "replaced by an older copy? They now count again, as "
                 "another sender's",
                 lost, own);
        char err[640];
        if (others_spent(s, err, sizeof(err)))
                s->others_unsaved = 1;
}

static int on_side_record(void *state, const struct veil_side_record *r,
                          char *errstr, size_t errstr_size) {
        struct state *s = state;
        if (!r->value) /* a tombstone: nothing to apply */
                return 0;
        int rc = veil_share_on_record(s->share, s->m, r->value, errstr,
                                      errstr_size);
        share_alerts(s);
        if (s->batch_no)
                own_unaccounted(s);
        char err[640];
        if (others_spent(s, err, sizeof(err))) {
                /* Counted in memory all the same; the next batch saves it
                 * or stops the stage (the record itself was taken). */
                veil_log(s->st, VEIL_LOG_ERROR, "%s", err);
                s->others_unsaved = 1;
        }
        if (rc == 1) {
                const char *inst = "?";
                size_t n;
                veil_rec_get_str(r->value, "instance", &inst, &n);
                veil_log(s->st, VEIL_LOG_INFO,
                         "applied a model update of instance '%s' (model "
                         "version %llu)",
                         inst, (unsigned long long)s->m->steps);
                veil_metric_set(s->st, "model_updates_applied",
                                (double)veil_share_stats(s->share)
                                        .applied_chunks);
        }
        return rc < 0 ? rc : 0;
}

static int restore(void *state, const void *data, size_t len, char *errstr,
                   size_t errstr_size) {
        struct state *s = state;
        const void *tab;
        size_t n;
        int rc = veil_ckpt_read(s->m, s->dp ? veil_dp_accountant_mut(s->dp)
                                            : NULL,
                                data, len, &tab, &n, errstr, errstr_size);
        const unsigned char *x = tab;
        size_t n_tab = n >= 4 ? veil_le_get32(x) : 0, n_tree = 0;
        if (!rc && n &&
            (n < 8 || n_tab > n - 8 || (n_tree = veil_le_get32(x + 4 + n_tab),
                                        n_tree != n - 8 - n_tab) ||
             veil_share_decode(s->share, x + 4, n_tab))) {
                snprintf(errstr, errstr_size,
                         "dp_model restore: corrupt table of model updates");
                return -VEIL_EDECODE;
        }
        if (rc || !s->dp)
                return rc;
        share_alerts(s);
        if ((rc = others_spent(s, errstr, errstr_size)))
                return rc;
        rc = veil_dp_restored(s->dp, errstr, errstr_size);
        if (!rc && s->mechanism && !strcmp(s->mechanism, "tree"))
                veil_log(s->st, VEIL_LOG_INFO,
                         "restored: the next step begins tree %llu (a "
                         "restart never continues a tree)",
                         (unsigned long long)veil_dp_stats(s->dp).tree);
        if (!rc)
                freeze_if_spent(s, s->st);
        struct veil_dp_stats ds = veil_dp_stats(s->dp);
        veil_privacy_set_spent(s->st, ds.epsilon, ds.delta);
        return rc;
}

static void notice(const veil_params_t *p, veil_notice_t *n) {
        veil_notice_add(n, VEIL_NOTICE_PURPOSE,
                        "With every interaction we recommend the %lld items "
                        "a shared model scores highest for what you are doing "
                        "now and, if you allowed personalization, for your "
                        "recent items%s; each recommendation says which of "
                        "these mattered most.",
                        (long long)veil_params_int(p, "k", 10),
                        veil_params_double(p, "history_weight", 0) > 0
                                ? " and the items of your earlier visits"
                                : "");
        /* Without a consent stage every event takes the defaults: "if you
         * allowed" would then promise a choice nobody is asked. */
        if (!strcmp(veil_params_str(p, "default_tier"), "personalized"))
                veil_notice_add(n, VEIL_NOTICE_PURPOSE,
                                "The recommendation for an interaction that "
                                "no consent stage has decided is "
                                "personalized.");
        const char *mech = veil_params_str(p, "mechanism");
        int tree = !strcmp(mech, "tree");
        if (strcmp(mech, "gaussian") && !tree) {
                veil_notice_add(n, VEIL_NOTICE_PRIVACY,
                                "A shared model learns from the events of "
                                "people who allowed it; each person's "
                                "contribution to each update is bounded. It "
                                "is not differentially private: "
                                "recommendations say so (no epsilon).");
                veil_notice_bound(n, INFINITY, 0);
                goto defaults;
        }
        /* The guarantee is the budget, and only with one: a budget of 0
         * is none, and the loss then has no bound at all (it said e^inf
         * and that learning stops when the budget is spent). The numbers
         * are rounded up: a notice never states less loss than the
         * configuration allows (12.345 said 12.3). */
        double budget = veil_params_double(p, "epsilon_budget", 8.0);
        double delta = veil_params_double(p, "delta", 1e-8);
        char eps_s[32], delta_s[32], bound[512];
        veil_format_up(eps_s, sizeof(eps_s), budget, 3);
        veil_format_up(delta_s, sizeof(delta_s), delta, 3);
        veil_notice_bound(n, budget > 0 ? budget : INFINITY, delta);
        if (budget > 0)
                snprintf(bound, sizeof(bound),
                         "with differential privacy: whatever anyone can "
                         "learn from the model and from every "
                         "recommendation changes by at most a factor e^%s "
                         "(plus a probability %s) whether or not any one "
                         "person's events were used, over the whole stream",
                         eps_s, delta_s);
        else
                snprintf(bound, sizeof(bound),
                         "with the noise of differential privacy but "
                         "without a privacy budget: there is no bound on "
                         "the privacy loss, which grows with every update "
                         "over the whole stream, and the model never stops "
                         "learning");
        const char *stop = budget > 0 ? "; when the budget is spent the "
                                         "model stops learning"
                                       : "";
        if (tree) {
                int64_t tp = veil_params_int(p, "tree_participations", 1);
                veil_notice_add(
                        n, VEIL_NOTICE_PRIVACY,
                        "A shared model learns from the events of people who "
                        "allowed it, %s. Each person joins at most %lld "
                        "noisy update%s in every %lld, and as many again "
                        "after a restart, which begins anew (the epsilon "
                        "counts both)%s. Every recommendation states the "
                        "epsilon spent so far.",
                        bound, (long long)tp, tp == 1 ? "" : "s",
                        (long long)veil_params_int(p, "tree_steps", 64), stop);
                goto defaults;
        }
        int64_t win = veil_params_int(p, "window_steps", 0);
        double step_s = veil_params_double(p, "step_interval_s", 3600);
        char per[128] = "";
        /* The default window is the whole stream: no window to name. On
         * the clock a window is a span of time, whatever it held. */
        if (win > 0 && step_s > 0)
                snprintf(per, sizeof(per),
                         " in every %.6g hours (a window of %lld learning "
                         "steps of %g seconds)",
                         (double)win * step_s / 3600, (long long)win, step_s);
        else if (win > 0)
                snprintf(per, sizeof(per), " in every window of %lld updates",
                         (long long)win);
        veil_notice_add(
                n, VEIL_NOTICE_PRIVACY,
                "A shared model learns from the events of people who allowed "
                "it, %s. Each person's events count in at most %lld noisy "
                "updates%s, and as many again after a restart%s%s. Every "
                "recommendation states the epsilon spent so far.",
                bound, (long long)veil_params_int(p, "max_contributions", 4),
                per, budget > 0 ? ", which counts against the same budget" : "",
                stop);
        /* What learning holds about a person, beyond the batch: the one
         * example of theirs waiting for its step (the event's own time
         * puts it there), and their count of steps, which an erasure
         * keeps so that the bound still holds if they come back. */
        if (step_s > 0 && !strcmp(veil_params_str(p, "step_time"), "event"))
                veil_notice_add(n, VEIL_NOTICE_RETENTION,
                                "To learn, the shared model holds at most "
                                "one interaction of yours (the item, your "
                                "recent items and the context, under a keyed "
                                "hash) until its next update, at most %.6g "
                                "hours later.",
                                step_s / 3600 +
                                        veil_params_double(
                                                p, "step_lateness_s", 0) /
                                                3600);
        veil_notice_add(n, VEIL_NOTICE_RETENTION,
                        "For the privacy bound, the shared model counts the "
                        "updates your events joined, under a keyed hash, "
                        "%s; deleting what we hold about you keeps that "
                        "count, which only limits how much more of yours "
                        "can be learned.",
                        win > 0 ? "until the window ends or the service "
                                  "restarts"
                                : "until the service restarts");
defaults:
        if (veil_params_bool(p, "default_training", 0))
                veil_notice_add(n, VEIL_NOTICE_PRIVACY,
                                "Interactions that no consent stage has "
                                "decided are used to train the shared "
                                "model.");
}

/* An erasure drops the person's example held for the next step (event
 * time), found by the keyed hash it was held under: it is not learned.
 * What is already in the open step's sum is released with it (a sum of
 * clipped contributions, which the noise is there to hide), and the
 * person's count of steps is kept, so that M still bounds them if they
 * come back. */
static int erase(void *state, const struct veil_subject *subj) {
        struct state *s = state;
        if (!s->dp || !s->hold.n)
                return 0;
        /* Held under the pseudonym with keys, never the raw id then: a
         * request naming another person's pseudonym as its raw id would
         * drop that person's example. */
        const char *key = subj->pseudonym ? subj->pseudonym : subj->raw_id;
        if (!key)
                return 0;
        uint64_t who = veil_dp_user_hash(s->dp, key);
        for (size_t i = 0; i < s->hold.n; i++) {
                struct held *x = &s->hold.ex[i];
                if (x->erased || x->who != who)
                        continue;
                /* Its contents too, not only the mark: the buffers are
                 * reused, never freed, and "erased" should mean gone from
                 * memory, not skipped. */
                if (x->n_feat + x->n_recent) /* (ids NULL when none) */
                        memset(s->hold.ids + x->off, 0,
                               (x->n_feat + x->n_recent) *
                                       sizeof(*s->hold.ids));
                x->target = x->item = -1;
                x->erased = 1;
                s->hold.n_erased++;
                s->hold.erased++;
        }
        return 0;
}

/* What the stage holds about the person: an example waiting for the next
 * step, and the steps they joined in this accounting window (counted under
 * a keyed hash of their pseudonym). The model itself holds sums of
 * everyone's noised contributions, nothing of one person. */
static int export_subject(void *state, const struct veil_subject *subj,
                          veil_rec_t *out) {
        struct state *s = state;
        if (!s->dp)
                return 0;
        const char *key = subj->pseudonym ? subj->pseudonym : subj->raw_id;
        if (!key)
                return 0;
        uint64_t who = veil_dp_user_hash(s->dp, key);
        size_t held = 0;
        for (size_t i = 0; i < s->hold.n; i++)
                held += !s->hold.ex[i].erased && s->hold.ex[i].who == who;
        uint32_t steps = veil_dp_user_steps(s->dp, key);
        char buf[64], name[128], sfx[96] = "";
        /* Asked once per key (after a rotation the person joined steps
         * under each): the later ones named by their key, or each would
         * overwrite the last (as context's, plugins/context). */
        if ((held || steps) && veil_rec_map_size(out, "") > 0 &&
            subj->pseudonym) {
                const char *dot = strchr(subj->pseudonym, '.');
                snprintf(sfx, sizeof(sfx), " (under key %.*s)",
                         dot ? (int)(dot - subj->pseudonym) : 0,
                         subj->pseudonym);
        }
        if (held) {
                snprintf(name, sizeof(name), "held_for_next_step%s", sfx);
                veil_rec_map_put(out, "", name,
                                 "one example (the context features of an "
                                 "event, its item and your recent items), "
                                 "learned when the current step is "
                                 "released");
        }
        if (steps) {
                snprintf(buf, sizeof(buf), "%u", steps);
                snprintf(name, sizeof(name), "steps_joined_this_window%s",
                         sfx);
                veil_rec_map_put(out, "", name, buf);
        }
        return 0;
}

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "dp_model",
        .version = "1.0.0",
        .description = "Item-embedding recommendations: one sgemm per batch, "
                       "top-k with explanations, incremental learning with "
                       "per-user clipping and Gaussian noise (differential "
                       "privacy, an accountant and a budget).",
        .params = params,
        .outputs = outputs,
        .init = init,
        .process = process,
        .destroy = destroy,
        .erase = erase,
        .export_subject = export_subject,
        .notice = notice,
        .checkpoint = checkpoint,
        .restore = restore,
        .commands = veil_dp_model_commands,
        .on_side_record = on_side_record,
        .optional_side_inputs = optional_sides,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

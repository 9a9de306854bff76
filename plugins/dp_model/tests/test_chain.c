/*
 * test_chain — context → dp_model through the host (an in-process
 * pipeline): one recommendation per event, never the item in hand or a
 * recent one, explanations made of the event's own words, each tier using
 * only what it may, and a model that learns (its version moves).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "keyring.h"
#include "keys.h"
#include "pipeline.h"

#define MAX_RECS 256

struct rec {
        char event_id[32], subject[80], tier[16], explanation[320];
        char items[10][16];
        double scores[10];
        int n_items;
        long version;
        double eps; /* epsilon_spent; 0 when null */
};

struct harness {
        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        struct rec recs[MAX_RECS];
        int n_recs;
        long seq;
        int private_model; /* records carry epsilon_spent */
        int64_t now_ms;    /* > 0: the batches' clock */
};

static int sink(void *ctx, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        struct harness *h = ctx;
        assert_null(dl);
        assert_string_equal(topic, "recs");
        assert_true(h->n_recs < MAX_RECS);
        const veil_rec_t *r;
        char err[256];
        assert_int_equal(veil_codec_decode_rec(
                                 veil_pipeline_output_codec(h->p,
                                                            "recommendations"),
                                 value, value_len, &r, err, sizeof(err)),
                         0);
        struct rec *o = &h->recs[h->n_recs++];
        memset(o, 0, sizeof(*o));
        const char *s;
        size_t l;
        assert_int_equal(veil_rec_get_str(r, "event_id", &s, &l), 0);
        snprintf(o->event_id, sizeof(o->event_id), "%s", s);
        assert_int_equal(veil_rec_get_str(r, "subject", &s, &l), 0);
        snprintf(o->subject, sizeof(o->subject), "%s", s);
        /* keyed by the subject pseudonym */
        assert_int_equal(key_len, strlen(o->subject));
        assert_memory_equal(key, o->subject, key_len);
        assert_int_equal(veil_rec_get_str(r, "tier", &s, &l), 0);
        snprintf(o->tier, sizeof(o->tier), "%s", s);
        assert_int_equal(veil_rec_get_str(r, "explanation", &s, &l), 0);
        snprintf(o->explanation, sizeof(o->explanation), "%s", s);
        int64_t v;
        assert_int_equal(veil_rec_get_long(r, "model_version", &v), 0);
        o->version = (long)v;
        double eps = 0;
        assert_int_equal(veil_rec_get_double(r, "epsilon_spent", &eps),
                         h->private_model ? 0 : -VEIL_ENOENT);
        o->eps = eps;
        size_t n = veil_rec_array_size(r, "items");
        assert_true(n <= 10);
        for (size_t i = 0; i < n; i++) {
                const veil_rec_t *it = veil_rec_array_at(r, "items", i);
                assert_int_equal(veil_rec_get_str(it, "item_id", &s, &l), 0);
                snprintf(o->items[i], sizeof(o->items[i]), "%s", s);
                assert_int_equal(veil_rec_get_double(it, "score",
                                                     &o->scores[i]),
                                 0);
                if (i)
                        assert_true(o->scores[i] <= o->scores[i - 1]);
        }
        o->n_items = (int)n;
        return 0;
}

/* The chain context → dp_model (→ a second dp_model stage with model2_with,
 * when not NULL), built from YAML by the host; 0, or the host's refusal in
 * err. */
static int h_try(struct harness *h, const char *ctx_with,
                 const char *model_with, const char *model2_with, char *err,
                 size_t err_size) {
        char yaml[4096], second[1024] = "";
        if (model2_with)
                snprintf(second, sizeof(second),
                         "  - use: dp_model\n"
                         "    with: {catalog: ../../../config/demo/items.csv, "
                         "dim: 16, seed: 43, %s}\n",
                         model2_with);
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../../schemas/interaction.avsc,"
                 " batch: {max_events: 64, max_wait_ms: 10}}\n"
                 "outputs:\n"
                 "  recommendations: {topic: recs, schema: "
                 "../../../schemas/recommendation.avsc}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: context\n"
                 "    with: {catalog: ../../../config/demo/items.csv%s%s}\n"
                 "  - use: dp_model\n"
                 "    with: {catalog: ../../../config/demo/items.csv, dim: 16,"
                 " seed: 42%s%s}\n"
                 "%s"
                 "keys: {ephemeral: true}\n",
                 *ctx_with ? ", " : "", ctx_with, *model_with ? ", " : "",
                 model_with, second);
        memset(h, 0, sizeof(*h));
        char *dirs[] = {VEIL_PLUGIN_DIR_BUILD};
        if (veil_config_parse(&h->cfg,
                              VEIL_SRCDIR "/plugins/dp_model/tests/t.yaml",
                              yaml, strlen(yaml), err, err_size) ||
            veil_keys_load(h->cfg, &h->kr, err, err_size))
                fail_msg("%s", err);
        struct veil_pipeline_opts o = {dirs, 1, h->kr, 0};
        int rc = veil_pipeline_new(&h->p, h->cfg, &o, err, err_size);
        if (rc) {
                veil_keyring_destroy(h->kr);
                veil_config_destroy(h->cfg);
                return rc;
        }
        veil_pipeline_set_sink(h->p, (struct veil_sink){sink, h});
        return 0;
}

static void h_open(struct harness *h, const char *ctx_with,
                   const char *model_with) {
        char err[2048];
        if (h_try(h, ctx_with, model_with, NULL, err, sizeof(err)))
                fail_msg("%s", err);
}

static void h_close(struct harness *h) {
        veil_pipeline_destroy(h->p);
        veil_keyring_destroy(h->kr);
        veil_config_destroy(h->cfg);
}

struct spec {
        const char *user, *item;
        int64_t ts_s;
        veil_tier_t tier;
        int training;
        const char *device;
};

/* Runs one batch; returns the index of its first record. */
static int h_run(struct harness *h, const struct spec *sp, size_t n) {
        int first = h->n_recs;
        struct veil_batch *b = veil_pipeline_batch_begin(h->p);
        if (h->now_ms > 0)
                b->now_ms = h->now_ms;
        char id[32];
        for (size_t i = 0; i < n; i++) {
                struct veil_event ev = {0};
                snprintf(id, sizeof(id), "e%ld", ++h->seq);
                ev.event_id = id;
                ev.user_id = sp[i].user;
                ev.item_id = sp[i].item;
                ev.type = "view";
                ev.ts_ms = sp[i].ts_s * 1000;
                ev.ctx.session_id = "visit";
                ev.ctx.device = sp[i].device;
                ev.tier = sp[i].tier;
                ev.training = sp[i].training;
                ev.gpc = -1;
                assert_int_equal(veil_pipeline_batch_add_event(h->p, &ev), 1);
        }
        char err[512];
        assert_int_equal(veil_pipeline_batch_run(h->p, err, sizeof(err)), 0);
        return first;
}

static int has_item(const struct rec *r, const char *item) {
        for (int i = 0; i < r->n_items; i++)
                if (!strcmp(r->items[i], item))
                        return 1;
        return 0;
}

/* The item's score in r, -INFINITY when it is not listed. */
static double score_of(const struct rec *r, const char *item) {
        for (int i = 0; i < r->n_items; i++)
                if (!strcmp(r->items[i], item))
                        return r->scores[i];
        return -INFINITY;
}

#define P VEIL_TIER_PERSONALIZED
#define C VEIL_TIER_CONTEXTUAL
#define N VEIL_TIER_NONE

/* Items of the bundled catalog. */
static const char *const items[] = {"85123A", "71053", "84406B", "84029G",
                                    "84029E", "22752", "21730", "22633",
                                    "22632", "84879", "22745", "22748"};

static void test_one_per_event_and_exclusions(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "", "");
        struct spec sp[12];
        for (int i = 0; i < 12; i++)
                sp[i] = (struct spec){"customer-17850", items[i],
                                      1291191960 + i, P, 0, "mobile"};
        int first = h_run(&h, sp, 12);
        assert_int_equal(h.n_recs - first, 12);
        for (int i = 0; i < 12; i++) {
                const struct rec *r = &h.recs[first + i];
                char want[32];
                snprintf(want, sizeof(want), "e%d", i + 1);
                assert_string_equal(r->event_id, want);
                assert_int_equal(r->n_items, 10);
                assert_string_equal(r->tier, "personalized");
                /* Never the item in hand, nor one of the last 10 before. */
                for (int j = i - 10 > 0 ? i - 10 : 0; j <= i; j++)
                        assert_false(has_item(r, items[j]));
                assert_true(strlen(r->explanation) > 0);
                assert_null(strstr(r->subject, "17850"));
                assert_non_null(strstr(r->subject, "eph."));
        }
        /* Drops upstream are not answered: only PASS events get one. */
        h_close(&h);
}

/* Every part of an explanation is words the context stage made for this
 * event, or the model's own phrases. */
static void test_explanations_in_words(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized", "");
        static const char *const allowed[] = {
                "at night", "in the morning", "in the afternoon",
                "in the evening", "on a Monday", "on a Tuesday",
                "on a Wednesday", "on a Thursday", "on a Friday",
                "on a Saturday", "on a Sunday", "on mobile",
                "at the start of a visit", "early in a visit",
                "well into a visit", "deep into a visit", "browsing quickly",
                "after a pause", "after a break", "after your recent items",
                "from your earlier visits",
                "popular right now"};
        struct spec sp[8];
        for (int i = 0; i < 8; i++)
                sp[i] = (struct spec){"u-explain", items[i],
                                      1291230000 + 20 * i, /* an evening */
                                      VEIL_TIER_UNDECIDED, 0, "mobile"};
        int first = h_run(&h, sp, 8);
        int saw_item = 0;
        for (int i = 0; i < 8; i++) {
                char buf[320];
                snprintf(buf, sizeof(buf), "%s", h.recs[first + i].explanation);
                int parts = 0;
                for (char *save = NULL, *t = strtok_r(buf, "·", &save); t;
                     t = strtok_r(NULL, "·", &save)) {
                        while (*t == ' ')
                                t++;
                        size_t l = strlen(t);
                        while (l && t[l - 1] == ' ')
                                t[--l] = '\0';
                        int ok = !strncmp(t, "viewing ", 8);
                        saw_item |= ok;
                        for (size_t a = 0; a < sizeof(allowed) / sizeof(*allowed);
                             a++)
                                ok |= !strcmp(t, allowed[a]);
                        if (!ok)
                                fail_msg("unexpected words '%s' in '%s'", t,
                                         h.recs[first + i].explanation);
                        parts++;
                }
                assert_true(parts >= 1 && parts <= 3);
                /* Undecided events take default_tier: personalized. */
                assert_string_equal(h.recs[first + i].tier, "personalized");
        }
        assert_true(saw_item);
        h_close(&h);
}

/* A contextual event's recommendation depends on that event alone: the
 * same event after two different histories of the same person gets the
 * same items with the same scores. A personalized one does not. (The
 * histories are not training events, so the shared model is the same.) */
static void test_tier_isolation(void **st) {
        (void)st;
        struct rec ctx_rec[2], pers_rec[2];
        for (int run = 0; run < 2; run++) {
                struct harness h;
                h_open(&h, "", "");
                struct spec hist[5];
                for (int i = 0; i < 5; i++)
                        hist[i] = (struct spec){"same-person",
                                                items[run ? 6 + i : i],
                                                1291191960 + i, P, 0,
                                                "desktop"};
                h_run(&h, hist, 5);
                struct spec now[] = {
                        {"same-person", "22745", 1291192000, C, 0, "desktop"},
                        {"same-person", "22745", 1291192000, P, 0, "desktop"}};
                int first = h_run(&h, now, 1);
                ctx_rec[run] = h.recs[first];
                first = h_run(&h, now + 1, 1);
                pers_rec[run] = h.recs[first];
                assert_string_equal(ctx_rec[run].tier, "contextual");
                assert_string_equal(pers_rec[run].tier, "personalized");
                h_close(&h);
        }
        assert_int_equal(ctx_rec[0].n_items, ctx_rec[1].n_items);
        for (int i = 0; i < ctx_rec[0].n_items; i++) {
                assert_string_equal(ctx_rec[0].items[i], ctx_rec[1].items[i]);
                assert_true(ctx_rec[0].scores[i] == ctx_rec[1].scores[i]);
        }
        int differ = ctx_rec[0].n_items != pers_rec[0].n_items;
        for (int i = 0; i < pers_rec[0].n_items && !differ; i++)
                differ = strcmp(pers_rec[0].items[i], pers_rec[1].items[i]) ||
                         pers_rec[0].scores[i] != pers_rec[1].scores[i];
        assert_true(differ);
        assert_null(strstr(ctx_rec[0].explanation, "recent"));
}

/* none: the same list for everyone and every context, from the model's
 * biases; nothing about the person. With serve_none false, no record. */
static void test_tier_none(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "", "");
        struct spec sp[] = {{"a", "85123A", 1291191960, N, 0, "mobile"},
                            {"b", "22745", 1291299999, N, 0, "desktop"},
                            {"c", NULL, 1291000000, N, 0, NULL}};
        int first = h_run(&h, sp, 3);
        assert_int_equal(h.n_recs - first, 3);
        for (int i = 1; i < 3; i++) {
                assert_int_equal(h.recs[first + i].n_items, 10);
                for (int j = 0; j < 10; j++)
                        assert_string_equal(h.recs[first + i].items[j],
                                            h.recs[first].items[j]);
        }
        assert_string_equal(h.recs[first].tier, "none");
        assert_non_null(strstr(h.recs[first].explanation, "nothing about you"));
        h_close(&h);
        h_open(&h, "", "serve_none: false");
        first = h_run(&h, sp, 3);
        assert_int_equal(h.n_recs - first, 0);
        h_close(&h);
}

/* Training events move the model; the version counts the steps. Events
 * not flagged for training (and undecided ones without default_training)
 * leave it where it is. */
static void test_learning_moves_the_model(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "", "");
        struct spec sp[12];
        for (int i = 0; i < 12; i++)
                sp[i] = (struct spec){i % 2 ? "p1" : "p2", items[i],
                                      1291191960 + i, P, 0, NULL};
        h_run(&h, sp, 12);
        int first = h_run(&h, sp, 12);
        assert_int_equal(h.recs[first].version, 0);
        for (int i = 0; i < 12; i++)
                sp[i].training = 1;
        h_run(&h, sp, 12);
        first = h_run(&h, sp, 12);
        assert_int_equal(h.recs[first].version, 1);
        first = h_run(&h, sp, 12);
        assert_int_equal(h.recs[first].version, 2);
        h_close(&h);
        /* Undecided events learn only with default_training. */
        h_open(&h, "", "default_training: true");
        for (int i = 0; i < 12; i++) {
                sp[i].training = 0;
                sp[i].tier = VEIL_TIER_UNDECIDED;
        }
        h_run(&h, sp, 12);
        first = h_run(&h, sp, 12);
        assert_int_equal(h.recs[first].version, 1);
        h_close(&h);
}

/* An accountant file and what dp_model keeps beside it (the lock, the
 * other instances' spend), removed. The names hold the pid: a .others left
 * by an earlier run under the same pid would be loaded at start. */
static void unlink_acc(const char *acc) {
        char side[300];
        unlink(acc);
        snprintf(side, sizeof(side), "%s.lock", acc);
        unlink(side);
        snprintf(side, sizeof(side), "%s.others", acc);
        unlink(side);
}

/* Two private stages of one pipeline, each with its own accountant file:
 * the pipeline's spend (the /metrics gauge, the demo's line) is the sum of
 * theirs, as their releases compose; each stage's records carry its own.
 * One file given to both stages is refused at start. */
static void test_two_private_stages(void **st) {
        (void)st;
        char acc[2][64], with[2][512], err[2048];
        for (int k = 0; k < 2; k++) {
                snprintf(acc[k], sizeof(acc[k]), "/tmp/veil-test-chain-2p%d-%d.acc",
                         k, (int)getpid());
                unlink_acc(acc[k]);
                snprintf(with[k], sizeof(with[k]),
                         "mechanism: gaussian, noise_multiplier: %d, "
                         "step_size: 1, step_interval_s: 0, "
                         "max_contributions: 100, epsilon_budget: 0, "
                         "accountant_file: %s",
                         k + 1, acc[k]);
        }
        struct harness h;
        assert_int_equal(h_try(&h, "", with[0], with[0], err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "two dp_model stages of this pipeline"));
        if (h_try(&h, "", with[0], with[1], err, sizeof(err)))
                fail_msg("%s", err);
        h.private_model = 1;
        struct spec sp[] = {{"a", items[0], 1291191960, C, 1, NULL},
                            {"b", items[1], 1291191961, C, 1, NULL}};
        for (int i = 0; i < 3; i++)
                h_run(&h, sp, 2);
        /* The spend now, and the next batch's records (served before
         * that batch's releases): one per event and stage, the first
         * stage's first (its σ is smaller: it spent more). */
        double eps, delta;
        veil_pipeline_privacy_spent(h.p, &eps, &delta);
        int first = h_run(&h, sp, 2);
        assert_int_equal(h.n_recs - first, 4);
        double e1 = h.recs[first].eps, e2 = h.recs[first + 2].eps;
        assert_true(e1 > e2 && e2 > 0);
        if (!(fabs(eps - (e1 + e2)) <= 1e-9 * eps))
                fail_msg("the pipeline reports epsilon %.17g, the stages "
                         "%.17g + %.17g",
                         eps, e1, e2);
        h_close(&h);
        unlink_acc(acc[0]);
        unlink_acc(acc[1]);
}

/* A private model on the clock, from the YAML through the host: the
 * first batch past a step's end releases it before it is served, and a
 * step whose one batch brought no contribution is released too (noise
 * alone; the version counts both); a person's contribution is their first
 * event of the step, so of a's three items only the first gains bias (the
 * none tier shows the highest biases). Counted steps learn from all
 * three. */
static void test_private_clock_steps(void **st) {
        (void)st;
        char acc[64], with[512];
        snprintf(acc, sizeof(acc), "/tmp/veil-test-chain-%d.acc",
                 (int)getpid());
        /* By the events' times (10 s late), by the batches', counted. */
        static const char *const modes[] = {"step_time: event, "
                                            "step_lateness_s: 10",
                                            "step_time: batch",
                                            "step_time: event"};
        for (int mode = 0; mode < 3; mode++) {
                int counted = mode == 2;
                unlink_acc(acc);
                snprintf(with, sizeof(with),
                         "mechanism: gaussian, noise_multiplier: 0.01, "
                         "dp_blocks: bias, dp_optimizer: sgd, "
                         "dp_learning_rate: 100, step_size: 1, "
                         "step_interval_s: %d, max_contributions: 100, "
                         "epsilon_budget: 0, accountant_file: %s, %s",
                         counted ? 0 : 60, acc, modes[mode]);
                struct harness h;
                h_open(&h, "", with);
                h.private_model = 1;
                h.now_ms = 1291191960000;
                struct spec sp[] = {{"a", items[0], 1291191960, C, 1, NULL},
                                    {"a", items[1], 1291191961, C, 1, NULL},
                                    {"a", items[2], 1291191962, C, 1, NULL}};
                h_run(&h, sp, 3);
                struct spec none = {"z", NULL, 1291192085, N, 0, NULL};
                h.now_ms += 65000; /* the next step: nothing to learn */
                h_run(&h, &none, 1);
                h.now_ms += 60000;
                int first = h_run(&h, &none, 1);
                struct rec *r = &h.recs[first];
                assert_string_equal(r->tier, "none");
                if (!counted) {
                        assert_int_equal(r->version, 2);
                        assert_string_equal(r->items[0], items[0]);
                        /* The others learned nothing: at most noise (the
                         * largest of ~13,000 noisy biases, about 5, may
                         * list one of them at random, 1 run in ~50, and
                         * failed the test; learned, as counted steps
                         * learn all three, each scores about 58). */
                        for (int i = 1; i < 3; i++)
                                if (!(score_of(r, items[i]) <
                                      r->scores[0] / 4))
                                        fail_msg("item %d scores %g, the "
                                                 "first %g",
                                                 i, score_of(r, items[i]),
                                                 r->scores[0]);
                } else {
                        /* one step (of 1 contribution), at the first batch:
                         * the three items on top, in any order */
                        assert_int_equal(r->version, 1);
                        r->n_items = 3;
                        for (int i = 0; i < 3; i++)
                                assert_true(has_item(r, items[i]));
                }
                h_close(&h);
        }
        unlink_acc(acc);
}

/* share.h's VEIL_SHARE_CLONE_LINEAGE: the releases of another process
 * running as the sender on a copy of its accountant file. */
#define CLONE_LINEAGE ((int64_t)UINT32_MAX - 1)

/* Model updates are cut by bytes, ids included: with 3,000 catalog items
 * of 450-byte ids (the host allows 512), one item_bias chunk sized by its
 * values alone held every id, 1.3 MB, more than Kafka's default record
 * limit, and the release failed at every step. spent_by included: 500
 * other senders of 255-byte ids, listed in every chunk, went on top of
 * the 256 KiB of values and ids (~390 KB a chunk; with the ~3,800 senders
 * one record could add before senders were bounded, ~1.2 MB). */
static struct {
        struct veil_pipeline *p;
        size_t records, max_len, rows[4];
        int64_t chunks;
        int64_t lineage; /* the last record's */
        double rho;
        double draws; /* the last record's draws_per_rho */
        size_t spent; /* the last record's spent_by entries */
        double clone_rho; /* its spent_by entry of a copy's releases, or 0 */
} mu;

static int mu_sink(void *ctx, const char *topic, const void *key,
                   size_t key_len, const void *value, size_t value_len,
                   const struct veil_dead_letter *dl) {
        (void)ctx, (void)key, (void)key_len;
        assert_null(dl);
        if (strcmp(topic, "mu"))
                return 0;
        const veil_rec_t *r;
        char err[256];
        assert_int_equal(veil_codec_decode_rec(
                                 veil_pipeline_output_codec(mu.p,
                                                            "model_updates"),
                                 value, value_len, &r, err, sizeof(err)),
                         0);
        static const char *const blocks[] = {"item_bias", "item_vectors",
                                             "item_inputs", "features"};
        const char *b;
        size_t l;
        int64_t rows;
        assert_int_equal(veil_rec_get_str(r, "block", &b, &l), 0);
        assert_int_equal(veil_rec_get_long(r, "rows", &rows), 0);
        assert_int_equal(veil_rec_get_long(r, "chunks", &mu.chunks), 0);
        assert_int_equal(veil_rec_get_long(r, "lineage", &mu.lineage), 0);
        assert_int_equal(veil_rec_get_double(r, "rho", &mu.rho), 0);
        assert_int_equal(veil_rec_get_double(r, "draws_per_rho", &mu.draws),
                         0);
        mu.spent = veil_rec_array_size(r, "spent_by");
        mu.clone_rho = 0;
        for (size_t i = 0; i < mu.spent; i++) {
                const veil_rec_t *e = veil_rec_array_at(r, "spent_by", i);
                int64_t lin;
                assert_int_equal(veil_rec_get_long(e, "lineage", &lin), 0);
                if (lin == CLONE_LINEAGE)
                        assert_int_equal(veil_rec_get_double(e, "rho",
                                                             &mu.clone_rho),
                                         0);
        }
        for (int i = 0; i < 4; i++)
                if (!strcmp(b, blocks[i]))
                        mu.rows[i] += (size_t)rows;
        mu.records++;
        if (value_len > mu.max_len)
                mu.max_len = value_len;
        return 0;
}

/* A pipeline from yaml whose model updates mu_sink reads. */
static void mu_open(struct harness *h, const char *yaml) {
        char err[2048];
        memset(h, 0, sizeof(*h));
        memset(&mu, 0, sizeof(mu));
        char *dirs[] = {VEIL_PLUGIN_DIR_BUILD};
        if (veil_config_parse(&h->cfg,
                              VEIL_SRCDIR "/plugins/dp_model/tests/t.yaml",
                              yaml, strlen(yaml), err, sizeof(err)) ||
            veil_keys_load(h->cfg, &h->kr, err, sizeof(err)))
                fail_msg("%s", err);
        struct veil_pipeline_opts o = {dirs, 1, h->kr, 0};
        if (veil_pipeline_new(&h->p, h->cfg, &o, err, sizeof(err)))
                fail_msg("%s", err);
        mu.p = h->p;
        veil_pipeline_set_sink(h->p, (struct veil_sink){mu_sink, NULL});
}

static void feed_update(struct harness *h, const char *inst, double rho,
                        const char *spent, int64_t spent_lin,
                        double spent_rho);

static void test_update_chunks_bounded(void **st) {
        (void)st;
        char cat[64], acc[64], yaml[2048], id[480];
        snprintf(cat, sizeof(cat), "/tmp/veil-test-chain-cat-%d.csv",
                 (int)getpid());
        snprintf(acc, sizeof(acc), "/tmp/veil-test-chain-mu-%d.acc",
                 (int)getpid());
        unlink_acc(acc);
        FILE *f = fopen(cat, "w");
        assert_non_null(f);
        fprintf(f, "\"item\",\"median_unit_price\",\"description\"\n");
        memset(id, 'x', 440);
        for (int i = 0; i < 3000; i++) {
                snprintf(id + 440, sizeof(id) - 440, "%05d", i);
                fprintf(f, "\"%s\",1.0,\"ITEM %d\"\n", id, i);
        }
        assert_int_equal(fclose(f), 0);
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../../schemas/interaction.avsc}\n"
                 "side_inputs:\n"
                 "  model_updates: {topic: mu, schema: "
                 "../../../schemas/model_update.avsc}\n"
                 "outputs:\n"
                 "  recommendations: {topic: recs, schema: "
                 "../../../schemas/recommendation.avsc}\n"
                 "  model_updates: {topic: mu, schema: "
                 "../../../schemas/model_update.avsc}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: context\n"
                 "  - use: dp_model\n"
                 "    with: {catalog: %s, dim: 16, max_new_items: 0, "
                 "default_training: true, default_tier: contextual, "
                 "mechanism: gaussian, noise_multiplier: 1, step_size: 1, "
                 "step_interval_s: 0, epsilon_budget: 0, "
                 "accountant_file: %s}\n"
                 "keys: {ephemeral: true}\n",
                 cat, acc);
        struct harness h;
        mu_open(&h, yaml);
        char sender[262]; /* 255 characters; room for any int */
        memset(sender, 's', 250);
        for (int i = 0; i < 500; i++) {
                snprintf(sender + 250, sizeof(sender) - 250, "%05d", i);
                feed_update(&h, sender, 1e-9, NULL, 0, 0);
        }
        id[445] = '\0';
        memcpy(id + 440, "00007", 5);
        struct spec sp = {"a", id, 1291191960, C, 1, NULL};
        h_run(&h, &sp, 1);
        h_run(&h, &sp, 1);
        assert_true(mu.records > 0);
        assert_true(mu.max_len <= 300 * 1024);
        assert_int_equal(mu.spent, 500);
        /* every item's row in each item block, the feature table too */
        assert_true(mu.rows[0] % 3000 == 0 && mu.rows[0] > 0);
        assert_true(mu.rows[1] == mu.rows[0] && mu.rows[2] == mu.rows[0]);
        assert_true(mu.rows[3] > 0);
        assert_true(mu.records == (size_t)mu.chunks * (mu.rows[0] / 3000));
        h_close(&h);
        unlink(cat);
        unlink_acc(acc);
}

/* What this instance's own lineage is seen to have sent, told by another
 * instance's spent_by after the first batch (its accountant file replaced
 * by an older copy, its own records gone from the topic): it counts again
 * from then on, in what its next update carries. It was looked at only at
 * the first batch. */
/* The draws_per_rho of the updates fed (0: the field's default). */
static double feed_draws;

/* A model update of no rows from inst (lineage 7) through the host's side
 * input, its spent_by naming (spent, spent_lin) at spent_rho when spent is
 * not NULL. */
static void feed_update_at(struct harness *h, const char *inst, int64_t lin,
                           int64_t seq, double rho, const char *spent,
                           int64_t spent_lin, double spent_rho) {
        char err[512];
        struct veil_codec *c = veil_pipeline_output_codec(h->p,
                                                          "model_updates");
        veil_rec_t *w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "instance", inst), 0);
        assert_int_equal(veil_rec_set_long(w, "seq", seq), 0);
        assert_int_equal(veil_rec_set_long(w, "chunk", 0), 0);
        assert_int_equal(veil_rec_set_long(w, "chunks", 1), 0);
        assert_int_equal(veil_rec_set_str(w, "block", "item_bias"), 0);
        assert_int_equal(veil_rec_set_long(w, "rows", 0), 0);
        assert_int_equal(veil_rec_set_long(w, "width", 1), 0);
        assert_int_equal(veil_rec_set_bytes(w, "values", "", 0), 0);
        assert_int_equal(veil_rec_set_double(w, "rho", rho), 0);
        assert_int_equal(veil_rec_set_str(w, "mechanism", "gaussian"), 0);
        assert_int_equal(veil_rec_set_long(w, "lineage", lin), 0);
        if (feed_draws != 0)
                assert_int_equal(veil_rec_set_double(w, "draws_per_rho",
                                                     feed_draws),
                                 0);
        if (spent) {
                veil_rec_t *e = veil_rec_append(w, "spent_by");
                assert_int_equal(veil_rec_set_str(e, "instance", spent), 0);
                assert_int_equal(veil_rec_set_long(e, "lineage", spent_lin),
                                 0);
                assert_int_equal(veil_rec_set_double(e, "rho", spent_rho), 0);
        }
        struct veil_buf b = {0};
        assert_int_equal(veil_codec_rec_encode(c, &b, err, sizeof(err)), 0);
        struct veil_source src = {inst, strlen(inst), b.data, b.len, "mu",
                                  0, 0, 0};
        assert_int_equal(veil_pipeline_side_record(h->p, 0, &src, err,
                                                   sizeof(err)),
                         0);
        veil_buf_free(&b);
}

static void feed_update(struct harness *h, const char *inst, double rho,
                        const char *spent, int64_t spent_lin,
                        double spent_rho) {
        feed_update_at(h, inst, 7, 1, rho, spent, spent_lin, spent_rho);
}

/* Instance "me", learning the biases alone from every event (steps of one
 * contribution), its updates to and from topic mu; its accountant file
 * acc (tag names it), removed first. */
static void me_reopen(struct harness *h, const char *acc);
static void me_open(struct harness *h, char *acc, size_t acc_size,
                    const char *tag) {
        snprintf(acc, acc_size, "/tmp/veil-test-chain-%s-%d.acc", tag,
                 (int)getpid());
        unlink_acc(acc);
        me_reopen(h, acc);
}

/* The same, its accountant file (and .others) kept: a restart. */
static void me_reopen(struct harness *h, const char *acc) {
        char yaml[2048];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../../schemas/interaction.avsc}\n"
                 "side_inputs:\n"
                 "  model_updates: {topic: mu, schema: "
                 "../../../schemas/model_update.avsc}\n"
                 "outputs:\n"
                 "  model_updates: {topic: mu, schema: "
                 "../../../schemas/model_update.avsc}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: context\n"
                 "  - use: dp_model\n"
                 "    with: {catalog: ../../../config/demo/items.csv, dim: 4, "
                 "instance: me, dp_blocks: bias, default_training: true, "
                 "default_tier: contextual, mechanism: gaussian, "
                 "noise_multiplier: 10, step_size: 1, step_interval_s: 0, "
                 "epsilon_budget: 0, accountant_file: %s}\n"
                 "keys: {ephemeral: true}\n",
                 acc);
        mu_open(h, yaml);
}

/* Another instance's sampler draws more noise per unit of ρ than this
 * one's (a larger model, or more noise): the rate its updates carry counts
 * the sampler's error of the whole sum of ρ here, is kept across a
 * restart that no longer reads it (the accountant file), and goes on in
 * this instance's updates, so that whoever reads them counts it too. It
 * was counted at this instance's own rate. */
static void test_other_sampler_rate(void **st) {
        (void)st;
        char acc[2][64], others[256];
        double eps[2], later, delta, own = 0, big = 0;
        struct spec sp = {"a", "85123A", 1291191960, C, 1, NULL};
        struct harness h;
        for (int k = 0; k < 2; k++) {
                me_open(&h, acc[k], sizeof(acc[k]), k ? "rate1" : "rate0");
                h_run(&h, &sp, 1);
                assert_int_equal(mu.records, 1);
                own = mu.draws; /* this instance's mechanism's */
                assert_true(own > 1000);
                big = own * 1e6;
                /* run 0: the peer's rate unknown (a veil before it) */
                feed_draws = k ? big : 0;
                feed_update(&h, "peer", 0.5, NULL, 0, 0);
                feed_draws = 0;
                veil_pipeline_privacy_spent(h.p, &eps[k], &delta);
                h_close(&h);
                if (!k) {
                        unlink_acc(acc[k]);
                        snprintf(others, sizeof(others), "%s.others",
                                 acc[k]);
                        unlink(others);
                }
        }
        /* The same spends (one release, then the peer's 0.5): ε differs
         * by the sampler's error of the peer's draws, at least
         * 0.5·big·ln((1+η)/(1-η)) with η = 2^-55, here ~3·10^-4. */
        print_message("own rate %.6g, the peer's %.6g: epsilon %.10g at "
                      "the own rate, %.10g at the peer's (+%.3g)\n",
                      own, big, eps[0], eps[1], eps[1] - eps[0]);
        assert_true(eps[1] - eps[0] >= 0.5 * big * 0x1p-54 * 0.99);
        /* A restart with no release since, reading no update: the
         * accountant file kept the rate, ε does not go down, and this
         * instance's next update carries the rate on. */
        me_reopen(&h, acc[1]);
        sp.user = "b";
        h_run(&h, &sp, 1);
        assert_int_equal(mu.records, 1);
        assert_true(mu.draws == big);
        veil_pipeline_privacy_spent(h.p, &later, &delta);
        assert_true(later >= eps[1]);
        /* A lower rate read later does not lower it. */
        feed_draws = own;
        feed_update(&h, "peer2", 0.01, NULL, 0, 0);
        feed_draws = 0;
        sp.user = "c";
        h_run(&h, &sp, 1);
        assert_true(mu.draws == big);
        h_close(&h);
        unlink_acc(acc[1]);
        snprintf(others, sizeof(others), "%s.others", acc[1]);
        unlink(others);
}

static void test_own_lineage_told_later(void **st) {
        (void)st;
        char acc[64];
        struct harness h;
        me_open(&h, acc, sizeof(acc), "own");
        struct spec sp = {"a", "85123A", 1291191960, C, 1, NULL};
        h_run(&h, &sp, 1);
        assert_int_equal(mu.records, 1);
        double rho1 = mu.rho;
        assert_true(rho1 > 0 && rho1 < 1);
        /* Another instance's update: its spent_by says this lineage sent
         * rho 4. */
        feed_update(&h, "peer", 0.125, "me", mu.lineage, 4.0);
        sp.user = "b";
        h_run(&h, &sp, 1);
        assert_int_equal(mu.records, 2);
        /* Its own lineage's spend: the accountant's, and the 4 it does not
         * count. */
        assert_true(mu.rho >= 4.0 + rho1);
        /* A sender of unknown cost (rho not a number) makes the others'
         * spend infinite; one counted after it is still saved beside the
         * accountant file (it was not: the saved sum could not grow). */
        feed_update(&h, "unknown", NAN, NULL, 0, 0);
        feed_update(&h, "later", 0.5, NULL, 0, 0);
        char others[80], file[4096];
        snprintf(others, sizeof(others), "%s.others", acc);
        FILE *f = fopen(others, "rb");
        assert_non_null(f);
        size_t n = fread(file, 1, sizeof(file), f);
        fclose(f);
        assert_non_null(memmem(file, n, "unknown", 7));
        assert_non_null(memmem(file, n, "later", 5));
        h_close(&h);
        unlink_acc(acc);
        unlink(others);
}

/* Another process runs as this instance on a copy of its accountant file
 * (a copied volume, the same pod name): a record of its lineage read after
 * the first batch, numbered above this instance's last release, is that
 * process's. It was taken as this instance's own (its seq jumped to it,
 * and a third instance counted both as one sender, at the larger spend):
 * it counts apart now, and the updates this instance sends list it (under
 * VEIL_SHARE_CLONE_LINEAGE), beside their own ρ, not in it. */
static void test_clone_counted_apart(void **st) {
        (void)st;
        char acc[64];
        struct harness h;
        me_open(&h, acc, sizeof(acc), "clone");
        struct spec sp = {"a", "85123A", 1291191960, C, 1, NULL};
        h_run(&h, &sp, 1);
        assert_int_equal(mu.records, 1);
        double rho1 = mu.rho;
        assert_true(mu.clone_rho == 0);
        /* The copy's release 50, at rho 2. */
        feed_update_at(&h, "me", mu.lineage, 50, 2.0, NULL, 0, 0);
        sp.user = "b";
        h_run(&h, &sp, 1);
        assert_int_equal(mu.records, 2);
        assert_true(mu.clone_rho == 2.0);
        /* Its own: this instance's releases alone. */
        assert_true(mu.rho > rho1 && mu.rho < 3 * rho1);
        h_close(&h);
        unlink_acc(acc);
        char others[80];
        snprintf(others, sizeof(others), "%s.others", acc);
        unlink(others);
}

/* Steps by the events' own times (step_time: event): an event of the open
 * step joins it, also when it comes after the step's end but within the
 * lateness; one of the next step waits for the open step's release and is
 * learned in its own step; one of a released step is not learned; one
 * stamped ahead of its batch's clock counts as stamped at the clock; and a
 * person joins each step once, whichever came first. */
static void test_event_time_steps(void **st) {
        (void)st;
        char acc[64], with[512];
        snprintf(acc, sizeof(acc), "/tmp/veil-test-chain-e%d.acc",
                 (int)getpid());
        unlink_acc(acc);
        snprintf(with, sizeof(with),
                 "mechanism: gaussian, noise_multiplier: 0.01, "
                 "dp_blocks: bias, dp_optimizer: sgd, dp_learning_rate: 1, "
                 "step_size: 1, step_interval_s: 60, step_lateness_s: 10, "
                 "max_contributions: 100, epsilon_budget: 0, "
                 "accountant_file: %s",
                 acc);
        /* A small step (learning rate 1): at 100 the first step's items
         * would lead the softmax of the second so far that its update
         * pushes them down again. */
        struct harness h;
        h_open(&h, "", with);
        h.private_model = 1;
        const int64_t S0 = 1291191960; /* a step begins: [S0, S0 + 60) */
        h.now_ms = (S0 + 30) * 1000;
        struct spec b1[] = {{"a", items[0], S0 + 20, C, 1, NULL},
                            {"b", items[1], S0 - 5, C, 1, NULL},  /* late */
                            {"c", items[2], S0 + 125, C, 1, NULL}}; /* now */
        h_run(&h, b1, 3);
        h.now_ms = (S0 + 65) * 1000; /* past the end, within the lateness */
        struct spec b2[] = {{"d", items[3], S0 + 61, C, 1, NULL},  /* held */
                            {"e", items[4], S0 + 55, C, 1, NULL},  /* in */
                            {"d", items[5], S0 + 62, C, 1, NULL},  /* twice */
                            /* g: held for the next step, then in this one
                             * (a late event); k: in this one, then held
                             * for the next */
                            {"g", items[8], S0 + 61, C, 1, NULL},
                            {"g", items[9], S0 + 58, C, 1, NULL},
                            {"k", items[11], S0 + 50, C, 1, NULL},
                            {"k", "22727", S0 + 61, C, 1, NULL}};
        h_run(&h, b2, 7);
        /* Another batch before the release: g and k in this step again
         * (the learner's one-per-batch cap cannot hide a second one). */
        h.now_ms = (S0 + 68) * 1000;
        struct spec b2b[] = {{"g", items[10], S0 + 59, C, 1, NULL},
                             {"k", "22728", S0 + 52, C, 1, NULL}};
        h_run(&h, b2b, 2);
        h.now_ms = (S0 + 75) * 1000; /* the step is released */
        struct spec b3[] = {{"d", items[6], S0 + 70, C, 1, NULL}, /* again */
                            {"f", items[7], S0 + 50, C, 1, NULL}}; /* late */
        h_run(&h, b3, 2);
        h.now_ms = (S0 + 135) * 1000; /* and the next */
        struct spec none = {"z", NULL, S0 + 135, N, 0, NULL};
        int first = h_run(&h, &none, 1);
        struct rec *r = &h.recs[first];
        assert_string_equal(r->tier, "none");
        assert_int_equal(r->version, 2);
        /* The biases learned: items 0, 2, 4, 9 and 11 (the first step), 3,
         * 8 and 22727 (held for the second); not the late or second ones. */
        r->n_items = 8;
        assert_true(has_item(r, "22727"));
        assert_false(has_item(r, "22728"));
        for (int i = 0; i < 12; i++)
                if (has_item(r, items[i]) !=
                    (i == 0 || i == 2 || i == 3 || i == 4 || i == 8 ||
                     i == 9 || i == 11))
                        fail_msg("item %d: %s the top eight", i,
                                 has_item(r, items[i]) ? "in" : "not in");
        h_close(&h);
        unlink_acc(acc);
}

/* The description neighbours' score counts in the explanation's parts:
 * in the item in hand's, and in the recent items'. The item vectors are
 * made tiny (prior_norm) and the feature rows large and random
 * (init_scale): the neighbour term then decides the top item, and left
 * out of the explanation the item and recent parts would be about zero
 * (the item's own feature row of either sign), so the context features'
 * parts would crowd them out of the three shown. */
static void test_explanations_count_neighbours(void **st) {
        (void)st;
        struct harness h;
        const char *model = "prior: description, prior_norm: 0.001, "
                            "init_scale: 1, prior_neighbors: 16, "
                            "prior_neighbor_weight: 10";
        const char *ctx = "features: [hour, weekday, device, type, item, "
                          "category, price_band]";
        h_open(&h, ctx, model);
        struct spec sp[12];
        for (int i = 0; i < 12; i++)
                sp[i] = (struct spec){"u-nb", items[i], 1291230000 + 20 * i,
                                      C, 0, "mobile"};
        int first = h_run(&h, sp, 12);
        for (int i = 0; i < 12; i++) {
                const char *x = h.recs[first + i].explanation;
                if (!strstr(x, "viewing "))
                        fail_msg("contextual, item %s: '%s', want the item",
                                 items[i], x);
        }
        h_close(&h);
        /* Personalized, six people with one item before the one in hand,
         * the recent item weighted far above it: the top items are the
         * recent item's neighbours, and the explanation says so. */
        char with[256], cwith[256], user[6][16];
        snprintf(with, sizeof(with), "%s, recent_weight: 100", model);
        snprintf(cwith, sizeof(cwith), "%s, default_tier: personalized", ctx);
        h_open(&h, cwith, with);
        for (int i = 0; i < 6; i++) {
                snprintf(user[i], sizeof(user[i]), "u-nb%d", i);
                sp[i] = (struct spec){user[i], items[2 * i], 1291230000,
                                      VEIL_TIER_UNDECIDED, 0, "mobile"};
                sp[6 + i] = sp[i];
                sp[6 + i].item = items[2 * i + 1];
                sp[6 + i].ts_s += 20;
        }
        h_run(&h, sp, 6);
        first = h_run(&h, sp + 6, 6);
        for (int i = 0; i < 6; i++) {
                const char *x = h.recs[first + i].explanation;
                if (!strstr(x, "after your recent items"))
                        fail_msg("personalized, item %s after %s: '%s'",
                                 items[2 * i + 1], items[2 * i], x);
        }
        h_close(&h);
}


/* The earlier visits' items (context's history_items, history_weight):
 * suggested again, with the visits they were in, never the current
 * visit's; the explanation says where they come from. */
static void test_history(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized, history_items: 8, "
                   "session_gap_s: 600",
               "history_weight: 1000");
        const int64_t t0 = 1291191960;
        struct spec sp[] = {
                /* visit 1 */
                {"u-h", items[0], t0, P, 0, "mobile"},
                {"u-h", items[1], t0 + 1, P, 0, "mobile"},
                {"u-h", items[2], t0 + 2, P, 0, "mobile"},
                /* visit 2, an hour later */
                {"u-h", items[3], t0 + 3600, P, 0, "mobile"},
                {"u-h", items[4], t0 + 3610, P, 0, "mobile"},
                /* visit 3: items[0] again */
                {"u-h", items[0], t0 + 7200, P, 0, "mobile"},
                {"u-h", items[5], t0 + 7210, P, 0, "mobile"},
                /* visit 4 */
                {"u-h", items[6], t0 + 10800, P, 0, "mobile"},
                /* contextual: nothing kept, so no history */
                {"u-c", items[0], t0, C, 0, "mobile"},
                {"u-c", items[1], t0 + 3600, C, 0, "mobile"},
        };
        int first = h_run(&h, sp, sizeof(sp) / sizeof(sp[0]));
        const struct rec *r = &h.recs[first];
        /* Visit 1 has no earlier visit. */
        for (int i = 0; i < 3; i++)
                assert_null(strstr(r[i].explanation, "earlier visits"));
        /* Visit 2: visit 1's items lead, though they are recent items. */
        for (int j = 0; j < 3; j++)
                assert_true(has_item(&r[3], items[j]));
        assert_non_null(strstr(r[3].explanation,
                               "from your earlier visits"));
        /* ... and the current visit's item is left out. */
        assert_false(has_item(&r[4], items[3]));
        for (int j = 0; j < 3; j++)
                assert_true(has_item(&r[4], items[j]));
        /* Visit 3: items[0] is in it, so not suggested; the others are. */
        assert_false(has_item(&r[6], items[0]));
        assert_false(has_item(&r[6], items[5]));
        for (int j = 1; j < 5; j++)
                assert_true(has_item(&r[6], items[j]));
        /* Visit 4: items[0] was in two visits, the others in one: the
         * scores differ by w·(ln 3 − ln 2), the model's own part of them
         * being small here. */
        assert_string_equal(r[7].items[0], items[0]);
        for (int i = 1; i < r[7].n_items; i++)
                if (!strcmp(r[7].items[i], items[1])) {
                        double gap = r[7].scores[0] - r[7].scores[i];
                        if (fabs(gap - 1000 * log(1.5)) > 20)
                                fail_msg("2 visits against 1: %.1f apart", gap);
                }
        for (int j = 1; j < 6; j++)
                assert_true(has_item(&r[7], items[j]));
        /* Contextual: no history. */
        for (int i = 8; i < 10; i++)
                assert_null(strstr(r[i].explanation, "earlier visits"));
        h_close(&h);

        /* history_weight 0: every recent item is left out, as before,
         * though the recent items would lead the list here (their
         * description vectors meet their own in the query). */
        h_open(&h, "default_tier: personalized, history_items: 8, "
                   "session_gap_s: 600",
               "prior: description, recent_weight: 100");
        first = h_run(&h, sp, 5);
        r = &h.recs[first];
        for (int j = 0; j < 3; j++)
                assert_false(has_item(&r[3], items[j]));
        assert_null(strstr(r[3].explanation, "earlier visits"));
        h_close(&h);
        /* history_weight without a history in the context stage: as
         * without the weight (and a warning), not "nothing excluded". */
        h_open(&h, "default_tier: personalized, session_gap_s: 600",
               "prior: description, recent_weight: 100, "
               "history_weight: 1000");
        first = h_run(&h, sp, 5);
        r = &h.recs[first];
        for (int j = 0; j < 3; j++)
                assert_false(has_item(&r[3], items[j]));
        h_close(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_one_per_event_and_exclusions),
                cmocka_unit_test(test_explanations_in_words),
                cmocka_unit_test(test_tier_isolation),
                cmocka_unit_test(test_tier_none),
                cmocka_unit_test(test_learning_moves_the_model),
                cmocka_unit_test(test_private_clock_steps),
                cmocka_unit_test(test_two_private_stages),
                cmocka_unit_test(test_event_time_steps),
                cmocka_unit_test(test_explanations_count_neighbours),
                cmocka_unit_test(test_history),
                cmocka_unit_test(test_update_chunks_bounded),
                cmocka_unit_test(test_own_lineage_told_later),
                cmocka_unit_test(test_other_sampler_rate),
                cmocka_unit_test(test_clone_counted_apart),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

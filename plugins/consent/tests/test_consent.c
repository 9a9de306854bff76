/*
 * test_consent.c — the consent stage through the real host: the ledger
 * (grant, narrow, withdraw, tombstone, out-of-order records), the tier
 * mapping of TC strings (event and ledger, vendor, restrictions, LI), GPC,
 * the audit trail, erasure reaching another stage, access requests,
 * rejected records, the notice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "keyring.h"
#include "ledger.h" /* VEIL_PURPOSE_* */
#include "notice.h"
#include "pipeline.h"

#define T0 1700000000000LL

static int64_t get_long(const veil_rec_t *r, const char *path) {
        int64_t v = -1;
        assert_int_equal(veil_rec_get_long(r, path, &v), 0);
        return v;
}

static int get_bool(const veil_rec_t *r, const char *path) {
        int v = -1;
        assert_int_equal(veil_rec_get_bool(r, path, &v), 0);
        return v;
}

static void assert_str(const veil_rec_t *r, const char *path,
                       const char *want) {
        const char *s = NULL;
        size_t n = 0;
        assert_int_equal(veil_rec_get_str(r, path, &s, &n), 0);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(s, want, n);
}

/* An access request for user, answered: its section of `stage` (freed
 * by the caller). */
static char *access_section(struct harness *h, const char *user,
                            const char *stage) {
        size_t before = h_count(h, "access");
        assert_int_equal(h_consent(h, "access-req", user, "access", 0, 0, 0,
                                   -1, NULL, "support_desk", T0),
                         0);
        h_tick(h);
        assert_int_equal(h_count(h, "access"), before + 1);
        return h_section(h, before, stage);
}

/* A personalized event leaves per-person state in the holder stage. */
static size_t holder_events(struct harness *h, const char *user) {
        char *sec = access_section(h, user, "holder");
        const char *at = strstr(sec, "\"personalized_events\": \"");
        size_t n = at ? (size_t)atol(at + 24) : 0;
        free(sec);
        return n;
}

static void test_grant(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "alice", 1, 1, 0, T0), 0);
        const struct veil_event *ev = h_event(&h, "alice", NULL, -1);
        assert_int_equal(ev->status, VEIL_PASS);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 1);
        assert_int_equal(ev->special_features, 0); /* no TC string anywhere */
        char subject[VEIL_PSEUDONYM_MAX];
        snprintf(subject, sizeof(subject), "%s", ev->subject);

        assert_int_equal(h_count(&h, "audit"), 1);
        const struct captured *c = h_at(&h, "audit", 0);
        const veil_rec_t *a = h_audit(&h, 0);
        assert_str(a, "action", "granted");
        assert_str(a, "source", "app");
        assert_int_equal(get_long(a, "ts"), T0);
        assert_int_equal(veil_rec_get_bool(a, "purposes_before.training", NULL),
                         -VEIL_ENOENT);
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 1);
        assert_int_equal(get_bool(a, "purposes_after.training"), 1);
        assert_int_equal(get_bool(a, "purposes_after.analytics"), 0);
        /* Pseudonymous, in the audit domain: not the id, not the subject
         * pseudonym the other outputs use. */
        const char *subj;
        size_t n;
        assert_int_equal(veil_rec_get_str(a, "subject", &subj, &n), 0);
        assert_true(n > 4 && !strncmp(subj, "eph.", 4));
        assert_null(memmem(c->value, c->value_len, "alice", 5));
        assert_null(strstr(c->key, "alice"));
        assert_string_equal(c->key, subj);
        assert_string_not_equal(subj, subject);

        /* The same choice again is no change: no audit record. */
        assert_int_equal(h_grant(&h, "alice", 1, 1, 0, T0 + 1), 0);
        assert_int_equal(h_count(&h, "audit"), 1);
        assert_int_equal(veil_pipeline_tier_count(h.p, VEIL_TIER_PERSONALIZED),
                         1);
        h_close(&h);
}

static void test_no_record_is_denied(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        const struct veil_event *ev = h_event(&h, "nobody", NULL, -1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(ev->training, 0);
        assert_string_equal(ev->reason, "consent: no record");
        uint64_t cnt = 0;
        assert_int_equal(veil_pipeline_n_drop_reasons(h.p), 1);
        assert_string_equal(veil_pipeline_drop_reason(h.p, 0, &cnt),
                            "consent: no record");
        assert_int_equal(cnt, 1);
        assert_int_equal(veil_pipeline_tier_count(h.p, VEIL_TIER_NONE), 1);
        /* A TC string on the event alone does not grant by default. */
        char tc[256];
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 10, 11, 0),
                             .pub = 1};
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "nobody", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_close(&h);

        /* Unless the operator says so. */
        h_open(&h, "{require_ledger: false}");
        ev = h_event(&h, "nobody", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 1);
        ev = h_event(&h, "nobody", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        /* An empty id is no person, whatever its TC string says: there is
         * nobody to personalize for, and every such visitor would share
         * what later stages keep under "". */
        ev = h_event(&h, "", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(ev->training, 0);
        h_close(&h);
}

/* Two stages of one plugin: an event the first drops counts in the
 * first's drops only (the host used to credit the second too, which
 * shares the plugin's name). */
static void test_drops_per_stage(void **state) {
        (void)state;
        struct harness h;
        h_extra_stage = "  - use: consent\n    with: {}\n";
        h_open(&h, "{}");
        h_extra_stage = "";
        const struct veil_event *ev = h_event(&h, "nobody", NULL, -1);
        assert_int_equal(ev->status, VEIL_DROP);
        h_tick(&h);
        assert_int_equal(veil_pipeline_stage_stats(h.p, 0).dropped, 1);
        assert_int_equal(veil_pipeline_stage_stats(h.p, 1).dropped, 0);
        assert_int_equal(veil_pipeline_stage_stats(h.p, 1).in, 0);
        h_close(&h);
}

static void test_narrow_erases(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "bob", 1, 1, 1, T0), 0);
        h_event(&h, "bob", NULL, -1);
        h_event(&h, "bob", NULL, -1);
        assert_int_equal(holder_events(&h, "bob"), 2);
        /* Personalization withdrawn, training kept. */
        assert_int_equal(h_grant(&h, "bob", 0, 1, 1, T0 + 10), 0);
        const veil_rec_t *a = h_audit(&h, h_count(&h, "audit") - 1);
        assert_str(a, "action", "changed");
        assert_int_equal(get_bool(a, "purposes_before.personalization"), 1);
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 0);
        assert_int_equal(get_bool(a, "purposes_after.training"), 1);
        /* The next batch: contextual, and the profile is gone. */
        const struct veil_event *ev = h_event(&h, "bob", NULL, -1);
        assert_int_equal(ev->status, VEIL_PASS);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 1);
        assert_int_equal(holder_events(&h, "bob"), 0);
        double max_ms = -1, mean_ms = -1;
        assert_int_equal(veil_pipeline_erasures(h.p, &max_ms, &mean_ms), 1);
        assert_true(max_ms >= 0 && max_ms < 5000);
        /* The ledger keeps the remaining consent: its section says so. */
        h_consent(&h, "access-2", "bob", "access", 0, 0, 0, -1, NULL, "app",
                  T0);
        h_tick(&h);
        char *sec = h_section(&h, h_count(&h, "access") - 1, "consent");
        assert_non_null(strstr(sec, "\"personalization\": \"not granted\""));
        assert_non_null(strstr(sec, "\"training\": \"granted\""));
        assert_non_null(strstr(sec, "\"in_force\": \"contextual, training, "
                                    "analytics\""));
        assert_null(strstr(sec, "bob"));
        free(sec);
        h_close(&h);
}

/* A stage that fails to erase: the host does not count the erasure as
 * applied in every stage, and counts the stage's error. */
static void test_erase_failure_reported(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "bob", 1, 1, 1, T0), 0);
        h_event(&h, "bob", NULL, -1);
        assert_int_equal(holder_events(&h, "bob"), 1);
        setenv("HOLDER_FAIL_ERASE", "1", 1);
        assert_int_equal(h_grant(&h, "bob", 0, 1, 1, T0 + 10), 0);
        h_tick(&h); /* the erasure is applied (and fails) here */
        unsetenv("HOLDER_FAIL_ERASE");
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), 0);
        assert_int_equal(holder_events(&h, "bob"), 1); /* still held */
        assert_int_equal(veil_pipeline_stage_stats(h.p, 1).errors, 1);
        assert_int_equal(veil_pipeline_stage_stats(h.p, 0).errors, 0);
        h_close(&h);
}

/* A key rotation: what a stage holds under the older key's pseudonym is
 * still exported and erased (the host tries every key of the keyring). */
static void test_rotation_erases_under_old_key(void **state) {
        (void)state;
        char dir[] = "/tmp/veil-rot-XXXXXX", k1[64], k2[64], keys[256],
             err[512];
        assert_non_null(mkdtemp(dir));
        snprintf(k1, sizeof(k1), "%s/k1", dir);
        snprintf(k2, sizeof(k2), "%s/k2", dir);
        assert_int_equal(veil_keyring_keygen(k1, err, sizeof(err)), 0);
        assert_int_equal(veil_keyring_keygen(k2, err, sizeof(err)), 0);
        snprintf(keys, sizeof(keys), "{active: k1, files: {k1: %s, k2: %s}}",
                 k1, k2);
        h_keys = keys;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "bob", 1, 1, 1, T0), 0);
        h_event(&h, "bob", NULL, -1); /* held under k1.… */
        assert_int_equal(veil_keyring_set_active(h.kr, "k2", err,
                                                 sizeof(err)),
                         0);
        assert_int_equal(holder_events(&h, "bob"), 1); /* found */
        assert_int_equal(h_grant(&h, "bob", 0, 1, 1, T0 + 10), 0);
        h_tick(&h);
        assert_int_equal(holder_events(&h, "bob"), 0); /* erased */
        h_close(&h);
        h_keys = "{ephemeral: true}";
        unlink(k1);
        unlink(k2);
        rmdir(dir);
}

/* dead_letter is bound but takes no records from plugins: refused, not a
 * crash (it has no codec). */
static void test_dead_letter_output_refused(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "bob", 1, 1, 1, T0), 0);
        setenv("HOLDER_EMIT_DLQ", "1", 1);
        const struct veil_event *ev = h_event(&h, "bob", NULL, -1);
        unsetenv("HOLDER_EMIT_DLQ");
        assert_int_equal(ev->status, VEIL_PASS);
        h_close(&h);
}

static void test_withdraw_everything(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "carol", 1, 0, 0, T0), 0);
        h_event(&h, "carol", NULL, -1);
        assert_int_equal(h_grant(&h, "carol", 0, 0, 0, T0 + 5), 0);
        const veil_rec_t *a = h_audit(&h, 1);
        assert_str(a, "action", "withdrawn");
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 0);
        const struct veil_event *ev = h_event(&h, "carol", NULL, -1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        /* Nothing granted: the refusal stays in the ledger (it is the
         * reason), the other stages' data went with the erasure. */
        assert_string_equal(ev->reason, "consent: not granted");
        assert_int_equal(holder_events(&h, "carol"), 0);
        /* A grant with an older ts, arriving late, cannot undo it. */
        assert_int_equal(h_grant(&h, "carol", 1, 1, 1, T0 + 3), 0);
        ev = h_event(&h, "carol", NULL, -1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_string_equal(ev->reason, "consent: not granted");
        assert_int_equal(holder_events(&h, "carol"), 0);
        h_close(&h);
}

static void test_tombstone(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "dave", 1, 1, 1, T0), 0);
        h_event(&h, "dave", NULL, -1);
        assert_int_equal(holder_events(&h, "dave"), 1);
        size_t n_audit = h_count(&h, "audit");
        assert_int_equal(h_tombstone(&h, "dave"), 0);
        assert_int_equal(h_count(&h, "audit"), n_audit + 1);
        const veil_rec_t *a = h_audit(&h, n_audit);
        assert_str(a, "action", "withdrawn");
        assert_str(a, "source", "tombstone");
        assert_int_equal(get_bool(a, "purposes_before.personalization"), 1);
        assert_int_equal(veil_rec_get_bool(a, "purposes_after.training", NULL),
                         -VEIL_ENOENT);
        /* Every stage's section is empty after the erasure (an access
         * request in the same interval would answer with what was held
         * before it: the host applies exports first). */
        h_tick(&h);
        h_consent(&h, "access-3", "dave", "access", 0, 0, 0, -1, NULL, "app",
                  T0);
        h_tick(&h);
        size_t last = h_count(&h, "access") - 1;
        for (const char *const *st = (const char *const[]){"consent", "holder",
                                                           NULL};
             *st; st++) {
                char *sec = h_section(&h, last, *st);
                assert_string_equal(sec, "");
                free(sec);
        }
        const struct veil_event *ev = h_event(&h, "dave", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        /* A tombstone for someone unknown still erases (state restored
         * from a checkpoint), but audits no change. */
        n_audit = h_count(&h, "audit");
        uint64_t erased = veil_pipeline_erasures(h.p, NULL, NULL);
        assert_int_equal(h_tombstone(&h, "stranger"), 0);
        h_tick(&h);
        assert_int_equal(h_count(&h, "audit"), n_audit);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), erased + 1);
        h_close(&h);
}

/* While the side inputs catch up no batch begins: erasures queued by a
 * long run of tombstones are applied once 4,096 are held, not kept until
 * the first batch (a consent topic of millions of tombstones held them
 * all: 152 MiB for 2 M). */
static void test_erasures_held_bounded(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        char user[32];
        for (int i = 0; i < 5000; i++) {
                snprintf(user, sizeof(user), "gone-%d", i);
                assert_int_equal(h_tombstone(&h, user), 0);
        }
        /* No batch began since: the first 4,096 are applied already. */
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), 4096);
        h_tick(&h);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), 5000);
        /* Access requests wait for the batch, but not without bound: a
         * topic that keeps them (keyed by request id) held them all. */
        size_t n_access = h_count(&h, "access");
        for (int i = 0; i < 5000; i++) {
                char key[32];
                snprintf(user, sizeof(user), "asker-%d", i);
                snprintf(key, sizeof(key), "access-%d", i);
                h_consent(&h, key, user, "access", 0, 0, 0, -1, NULL, "app",
                          T0);
        }
        assert_int_equal(h_count(&h, "access"), n_access + 4096);
        h_tick(&h);
        assert_int_equal(h_count(&h, "access"), n_access + 5000);
        h_close(&h);
}

/* The gauge `name` of a stage (0 consent, 1 the extra stage, then
 * holder), as its last batch published it. */
static double gauge(struct harness *h, size_t stage, const char *name) {
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(h->p, stage);
             j++) {
                double v;
                const char *g = veil_pipeline_stage_gauge(h->p, stage, j, &v);
                if (g && !strcmp(g, name))
                        return v;
        }
        fail_msg("stage %zu has no gauge %s", stage, name);
        return -1;
}

/* The gauge `name` of the extra stage. */
static double stage_gauge(struct harness *h, const char *name) {
        return gauge(h, 1, name);
}

/* With steps of event time, dp_model holds a person's example of the next
 * step until the open one is released. An erasure in between drops it: it
 * is not learned. An access request lists it, and the steps the person
 * joined. */
static void test_erase_drops_held_example(void **state) {
        (void)state;
        char acc[64], stage[1024];
        snprintf(acc, sizeof(acc), "/tmp/veil-test-consent-held%d.acc",
                 (int)getpid());
        snprintf(stage, sizeof(stage),
                 "  - use: dp_model\n"
                 "    with: {catalog: %s/config/demo/items.csv, dim: 8, "
                 "mechanism: gaussian, noise_multiplier: 0.01, dp_blocks: "
                 "bias, dp_optimizer: sgd, step_size: 1, step_interval_s: "
                 "60, step_lateness_s: 10, max_contributions: 100, "
                 "epsilon_budget: 0, accountant_file: %s}\n",
                 VEIL_SRCDIR, acc);
        h_extra_stage = stage;
        h_event_item = "85123A";
        struct harness h;
        h_open(&h, "{}");
        const int64_t S0 = 1291191960000LL; /* a step begins: [S0, S0+60 s) */
        assert_int_equal(h_grant(&h, "bob", 1, 1, 1, T0), 0);
        assert_int_equal(h_grant(&h, "carol", 1, 1, 1, T0), 0);
        h_event_now_ms = S0 + 30000, h_event_ts_ms = S0 + 20000;
        h_event(&h, "bob", NULL, -1); /* the open step */
        h_event_now_ms = S0 + 65000, h_event_ts_ms = S0 + 61000;
        h_event(&h, "bob", NULL, -1);   /* held for the next step */
        h_event(&h, "carol", NULL, -1); /* held too */
        assert_int_equal(stage_gauge(&h, "held_next_step"), 2);
        h_consent(&h, "access-bob", "bob", "access", 0, 0, 0, -1, NULL,
                  "app", T0);
        h_tick(&h);
        char *sec = h_section(&h, h_count(&h, "access") - 1, "dp_model");
        assert_non_null(strstr(sec, "\"held_for_next_step\": \"one example"));
        assert_non_null(strstr(sec, "\"steps_joined_this_window\": \"2\""));
        free(sec);
        assert_int_equal(h_tombstone(&h, "bob"), 0);
        /* carol withdraws training alone: her held example goes too, her
         * personalization stays. */
        assert_int_equal(h_grant(&h, "carol", 1, 0, 1, T0 + 1000), 0);
        /* The erasures are applied as the next batch begins (dave has no
         * consent: nothing of his is learned; the batch refreshes the
         * gauges). */
        h_event_now_ms = S0 + 66000, h_event_ts_ms = S0 + 62000;
        h_event(&h, "dave", NULL, -1);
        assert_int_equal(stage_gauge(&h, "held_next_step"), 0);
        assert_int_equal(stage_gauge(&h, "not_learned_erased"), 2);
        /* The host counts both, carol's as an erasure of training alone. */
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), 2);
        assert_int_equal(veil_pipeline_training_erasures(h.p), 1);
        const struct veil_event *ev = h_event(&h, "carol", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 0);
        /* The open step is released: neither held example is learned,
         * only bob's first event, of the open step. */
        h_event_now_ms = S0 + 75000, h_event_ts_ms = S0 + 70000;
        h_event(&h, "dave", NULL, -1); /* no consent: tier none */
        assert_int_equal(stage_gauge(&h, "events_learned"), 1);
        assert_int_equal(stage_gauge(&h, "held_next_step"), 0);
        h_close(&h);
        h_extra_stage = "";
        h_event_item = NULL;
        h_event_now_ms = h_event_ts_ms = 0;
        unlink(acc);
        strcat(acc, ".lock");
        unlink(acc);
}

/* Counting items is the analytics purpose: popular counts the events of
 * people who allowed it, and serves everyone. */
static void test_analytics_gates_counting(void **state) {
        (void)state;
        h_extra_stage = "  - use: popular\n";
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "bob", 1, 1, 0, T0), 0);   /* no */
        assert_int_equal(h_grant(&h, "carol", 1, 1, 1, T0), 0); /* yes */
        const struct veil_event *ev = h_event(&h, "bob", NULL, -1);
        assert_int_equal(ev->status, VEIL_PASS);
        assert_int_equal(ev->analytics, 0);
        h_event(&h, "bob", NULL, -1);
        ev = h_event(&h, "carol", NULL, -1);
        assert_int_equal(ev->analytics, 1);
        assert_int_equal(stage_gauge(&h, "events_counted"), 1);
        assert_int_equal(stage_gauge(&h, "not_counted_no_analytics"), 2);
        h_close(&h);
        h_extra_stage = "";
}

/* A record the stage rejects changes nothing in the ledger. For a person
 * it has no entry for (no consent), it also requests an erasure, as a
 * tombstone does: a stage may hold their state from a checkpoint, and when
 * compaction left only this record nothing else would erase it. For a
 * person with consent it erases nothing. */
static void test_rejected_unknown_erases(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "amy", 1, 1, 1, T0), 0);
        h_tick(&h);
        uint64_t n = veil_pipeline_erasures(h.p, NULL, NULL);
        /* key and user_id differ: rejected, dead-lettered */
        h_consent(&h, "ghost", "ghost-2", "consent", 1, 1, 1, -1, NULL,
                  "app", T0);
        h_tick(&h);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), n + 1);
        h_consent(&h, "amy", "amy-2", "consent", 1, 1, 1, -1, NULL, "app",
                  T0);
        h_tick(&h);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), n + 1);
        assert_int_equal(h.n_out > 0 && h.out[h.n_out - 1].dead_letter, 1);
        /* An access request keyed by the person's id replaces their consent
         * record at compaction: for someone with no entry it erases too,
         * after the export; keyed apart, or for someone with an entry, not. */
        h_consent(&h, "kim", "kim", "access", 0, 0, 0, -1, NULL, "app", T0);
        h_tick(&h);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), n + 2);
        h_consent(&h, "access-lee", "lee", "access", 0, 0, 0, -1, NULL, "app",
                  T0);
        h_consent(&h, "amy", "amy", "access", 0, 0, 0, -1, NULL, "app", T0);
        h_tick(&h);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), n + 2);
        h_close(&h);
}

static void test_out_of_order(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "erin", 1, 1, 0, T0 + 2000), 0);
        /* An older withdrawal of personalization arrives late: it narrows. */
        assert_int_equal(h_grant(&h, "erin", 0, 1, 0, T0 + 1000), 0);
        const struct veil_event *ev = h_event(&h, "erin", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 1);
        /* An older grant cannot widen. */
        assert_int_equal(h_grant(&h, "erin", 1, 1, 1, T0 + 1500), 0);
        ev = h_event(&h, "erin", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        /* A newer one replaces. */
        assert_int_equal(h_grant(&h, "erin", 1, 0, 0, T0 + 3000), 0);
        ev = h_event(&h, "erin", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 0);
        /* Equal timestamps: the later record (offset) wins. */
        assert_int_equal(h_grant(&h, "erin", 0, 1, 0, T0 + 3000), 0);
        ev = h_event(&h, "erin", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 1);
        /* The record in force has no TC string, so no special feature: an
         * older one whose string opts in to precise geolocation narrows
         * the purposes and cannot add the feature (it did). */
        assert_int_equal(h_grant(&h, "finn", 1, 1, 1, T0 + 2000), 0);
        char tc[256];
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 10, 11, 0),
                             .pub = 1,
                             .special = 1};
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "finn", "finn", "consent", 1, 1, 1,
                                   -1, tc, "cmp", T0 + 1000),
                         0);
        ev = h_event(&h, "finn", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->special_features, 0);
        h_close(&h);
}

/* Where an event's TC string speaks for people without a record, a
 * tombstone keeps the person as a refusal: their next event's string does
 * not grant again what the tombstone withdrew. A record naming
 * "tombstone" as its source is audited as "other". */
static void test_tombstone_without_ledger_rule(void **state) {
        (void)state;
        struct harness h;
        char tc[256];
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0),
                             .pub = 1};
        h_tc(&m, tc, sizeof(tc));
        h_open(&h, "{require_ledger: false}");
        const struct veil_event *ev = h_event(&h, "gus", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(h_tombstone(&h, "gus"), 0);
        ev = h_event(&h, "gus", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(ev->training, 0);
        /* A consent record after the tombstone grants, whatever its ts
         * (records compare their own ts, which the tombstone has none
         * of). */
        size_t n_audit = h_count(&h, "audit");
        assert_int_equal(h_consent(&h, "gus", "gus", "consent", 1, 0, 0, -1,
                                   NULL, "tombstone", T0),
                         0);
        assert_str(h_audit(&h, n_audit), "source", "other");
        ev = h_event(&h, "gus", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        h_close(&h);
}

/* Access requests keyed apart from their person (access/<id>, as the
 * README asks), each tombstoned once answered: with require_ledger: false
 * the tombstone of such a key is not taken for a person's, so it leaves
 * no refusal in the ledger (each request used to leave one for good). The
 * key is nobody's meanwhile: an event whose user id it is gets no
 * record's answer. A person's own tombstone still keeps a refusal. */
static void test_access_keys_leave_nothing(void **state) {
        (void)state;
        struct harness h;
        char tc[256], key[32], user[32];
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0),
                             .pub = 1};
        h_tc(&m, tc, sizeof(tc));
        h_open(&h, "{require_ledger: false}");
        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "access/%d", i);
                snprintf(user, sizeof(user), "user-%d", i);
                assert_int_equal(h_consent(&h, key, user, "access", 0, 0, 0,
                                           -1, NULL, "support_desk", T0),
                                 0);
        }
        const struct veil_event *ev = h_event(&h, "access/7", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "access/%d", i);
                assert_int_equal(h_tombstone(&h, key), 0);
        }
        ev = h_event(&h, "someone", NULL, -1);
        assert_int_equal(gauge(&h, 0, "ledger_people"), 0);
        /* A tombstone for a key no request used is a person's: refused. */
        assert_int_equal(h_tombstone(&h, "access/100"), 0);
        ev = h_event(&h, "access/100", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(gauge(&h, 0, "ledger_people"), 1);
        h_close(&h);
}

static void test_event_tc_is_stricter(void **state) {
        (void)state;
        struct harness h;
        char tc[512];
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "fay", 1, 1, 1, T0), 0);
        /* 5 and 6 consented, no 10: personalized without training. */
        struct tc_model m = {.pub = 1, .purposes = h_purposes(1, 5, 6, 11, 0),
                             .special = 1};
        h_tc(&m, tc, sizeof(tc));
        const struct veil_event *ev = h_event(&h, "fay", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 0);
        assert_int_equal(ev->special_features, 1);
        /* 5 without 6: contextual (11 by legitimate interest is enough). */
        m = (struct tc_model){.pub = 1, .purposes = h_purposes(5, 10, 0),
                              .purposes_li = h_purposes(11, 0)};
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "fay", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 1);
        /* LI for 5 and 6 is ignored under TCF 2.2, whatever the bits say. */
        m = (struct tc_model){.pub = 1, .purposes = h_purposes(11, 0),
                              .purposes_li = h_purposes(5, 6, 0)};
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "fay", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        /* Nothing: none, counted by reason. */
        m = (struct tc_model){.pub = 1};
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "fay", tc, -1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_string_equal(ev->reason,
                            "consent: refused by the event's TC string");
        /* An invalid string means no consent. */
        ev = h_event(&h, "fay", "not-a-tc-string!", -1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_string_equal(ev->reason,
                            "consent: invalid TC string on the event");
        h_close(&h);
}

static void test_ledger_tc_and_features(void **state) {
        (void)state;
        struct harness h;
        char tc[512], tc2[512];
        h_open(&h, "{}");
        /* The record's own purposes say yes, its TC string lacks 6. */
        struct tc_model m = {.pub = 1, .purposes = h_purposes(5, 10, 11, 0),
                             .special = 3};
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "gil", "gil", "consent", 1, 1, 0, -1,
                                   tc, "cmp", T0),
                         0);
        const struct veil_event *ev = h_event(&h, "gil", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 1);
        assert_int_equal(ev->special_features, 3);
        /* Both strings: the features both opted in to. */
        m = (struct tc_model){.purposes = h_purposes(11, 0), .special = 2,
                              .pub = 1};
        h_tc(&m, tc2, sizeof(tc2));
        ev = h_event(&h, "gil", tc2, -1);
        assert_int_equal(ev->special_features, 2);
        assert_int_equal(ev->training, 0);
        const veil_rec_t *a = h_audit(&h, 0);
        assert_str(a, "source", "cmp");
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 0);
        /* A first record whose TC string allows nothing: audited as
         * withdrawn (nothing in force), not as granted. */
        m = (struct tc_model){.pub = 1, .purposes = h_purposes(0)};
        h_tc(&m, tc2, sizeof(tc2));
        assert_int_equal(h_consent(&h, "hal", "hal", "consent", 1, 1, 1, -1,
                                   tc2, "cmp", T0),
                         0);
        a = h_audit(&h, h_count(&h, "audit") - 1);
        assert_str(a, "action", "withdrawn");
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 0);
        assert_int_equal(get_bool(a, "purposes_after.training"), 0);
        h_close(&h);
}

/* The special features of audit record i's purposes_<side> as a mask
 * (bit f-1 = feature f); -1 when that side is null. */
static int audit_sf(struct harness *h, size_t i, const char *side) {
        const veil_rec_t *a = h_audit(h, i);
        char path[64];
        snprintf(path, sizeof(path), "purposes_%s.personalization", side);
        int b;
        if (veil_rec_get_bool(a, path, &b) == -VEIL_ENOENT)
                return -1;
        snprintf(path, sizeof(path), "purposes_%s.special_features", side);
        int mask = 0;
        for (size_t k = 0; k < veil_rec_array_size(a, path); k++) {
                int64_t f = get_long(veil_rec_array_at(a, path, k), "");
                assert_true(f >= 1 && f <= 12);
                mask |= 1 << (f - 1);
        }
        return mask;
}

/* A record that keeps every purpose and only turns precise geolocation
 * (TCF special feature 1) off or on changes what the person allows: it is
 * audited as a change, saying which features were in force before and
 * after. */
static void test_audit_special_features(void **state) {
        (void)state;
        struct harness h;
        char on[512], off[512];
        h_open(&h, "{}");
        struct tc_model m = {.pub = 1, .purposes = h_purposes(5, 6, 10, 11, 0),
                             .special = 1};
        h_tc(&m, on, sizeof(on));
        m.special = 0;
        h_tc(&m, off, sizeof(off));

        assert_int_equal(h_consent(&h, "kim", "kim", "consent", 1, 1, 0, -1,
                                   on, "cmp", T0),
                         0);
        assert_int_equal(h_count(&h, "audit"), 1);
        assert_str(h_audit(&h, 0), "action", "granted");
        assert_int_equal(audit_sf(&h, 0, "before"), -1);
        assert_int_equal(audit_sf(&h, 0, "after"), 1);
        const struct veil_event *ev = h_event(&h, "kim", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->special_features, 1);

        /* Withdrawal of precise geolocation alone. */
        assert_int_equal(h_consent(&h, "kim", "kim", "consent", 1, 1, 0, -1,
                                   off, "cmp", T0 + 10),
                         0);
        assert_int_equal(h_count(&h, "audit"), 2);
        const veil_rec_t *a = h_audit(&h, 1);
        assert_str(a, "action", "changed");
        assert_str(a, "source", "cmp");
        assert_int_equal(get_long(a, "ts"), T0 + 10);
        static const char *const purposes[] = {"personalization", "training",
                                               "analytics"};
        for (int p = 0; p < 3; p++) {
                char before[64], after[64];
                snprintf(before, sizeof(before), "purposes_before.%s",
                         purposes[p]);
                snprintf(after, sizeof(after), "purposes_after.%s",
                         purposes[p]);
                assert_int_equal(get_bool(a, before), get_bool(a, after));
        }
        assert_int_equal(audit_sf(&h, 1, "before"), 1);
        assert_int_equal(audit_sf(&h, 1, "after"), 0);
        ev = h_event(&h, "kim", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->special_features, 0);

        /* Opting in again is a change too; the same choice again is not. */
        assert_int_equal(h_consent(&h, "kim", "kim", "consent", 1, 1, 0, -1,
                                   on, "cmp", T0 + 20),
                         0);
        assert_int_equal(h_count(&h, "audit"), 3);
        assert_str(h_audit(&h, 2), "action", "changed");
        assert_int_equal(audit_sf(&h, 2, "before"), 0);
        assert_int_equal(audit_sf(&h, 2, "after"), 1);
        assert_int_equal(h_consent(&h, "kim", "kim", "consent", 1, 1, 0, -1,
                                   on, "cmp", T0 + 30),
                         0);
        assert_int_equal(h_count(&h, "audit"), 3);

        /* A late record (older ts) can only narrow, the feature too, and
         * that narrowing is audited. */
        assert_int_equal(h_consent(&h, "kim", "kim", "consent", 1, 1, 0, -1,
                                   off, "cmp", T0 + 5),
                         0);
        assert_int_equal(h_count(&h, "audit"), 4);
        assert_str(h_audit(&h, 3), "action", "changed");
        assert_int_equal(audit_sf(&h, 3, "before"), 1);
        assert_int_equal(audit_sf(&h, 3, "after"), 0);
        ev = h_event(&h, "kim", NULL, -1);
        assert_int_equal(ev->special_features, 0);

        /* The tombstone's record says what it took away. */
        assert_int_equal(h_consent(&h, "kim", "kim", "consent", 1, 1, 0, -1,
                                   on, "cmp", T0 + 40),
                         0);
        assert_int_equal(h_count(&h, "audit"), 5);
        assert_int_equal(h_tombstone(&h, "kim"), 0);
        assert_int_equal(h_count(&h, "audit"), 6);
        assert_str(h_audit(&h, 5), "action", "withdrawn");
        assert_int_equal(audit_sf(&h, 5, "before"), 1);
        assert_int_equal(audit_sf(&h, 5, "after"), -1);
        h_close(&h);
}

#define DAY 86400000LL

/* The purpose mapping is written for TCF 2.2 (policy version 4): a string
 * of an earlier policy decodes (the conformance vectors are policy 2) but
 * cannot grant under it. On an event it is treated as a string that
 * cannot be decoded; in a ledger record it allows nothing, and the record
 * is dead-lettered saying why. */
/* The consent section of the access record answering a request for user
 * says that its TC string allows `allows`, and nothing is in force. */
static void assert_access_tc(struct harness *h, const char *user,
                             const char *allows) {
        char want[256];
        char *sec = access_section(h, user, "consent");
        snprintf(want, sizeof(want), "\"tc_string_allows\": \"%s\"",
                 allows);
        if (!strstr(sec, want) || !strstr(sec, "\"in_force\": \"nothing\""))
                fail_msg("access record lacks '%s':\n%s", want, sec);
        free(sec);
}

/* Audit record i's purposes on one side ("purposes_before" or
 * "purposes_after") are exactly `want` (VEIL_PURPOSE_* bits). */
static void assert_audit_purposes(struct harness *h, size_t i,
                                  const char *side, uint8_t want) {
        static const struct {
                const char *name;
                uint8_t bit;
        } f[] = {{"personalization", VEIL_PURPOSE_PERSONALIZATION},
                 {"contextual", VEIL_PURPOSE_CONTEXTUAL},
                 {"training", VEIL_PURPOSE_TRAINING},
                 {"analytics", VEIL_PURPOSE_ANALYTICS}};
        const veil_rec_t *a = h_audit(h, i);
        char p[64];
        for (size_t k = 0; k < sizeof(f) / sizeof(*f); k++) {
                snprintf(p, sizeof(p), "%s.%s", side, f[k].name);
                if (get_bool(a, p) != !!(want & f[k].bit))
                        fail_msg("audit %zu: %s is %d", i, p, !(want & f[k].bit));
        }
}

/* The contextual tier alone is in force, and audited: a grant of it, its
 * withdrawal. Training and analytics count only with a tier, as events get
 * them (an event without one is dropped): the audit and the access export
 * say so too. */
static void test_audit_contextual(void **state) {
        (void)state;
        struct harness h;
        char tc[512];
        h_open(&h, "{}");
        /* The person allows analytics; the string contextual use (11). */
        struct tc_model m = {.pub = 2, .pub_purposes = h_purposes(11, 0)};
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "lou", "lou", "consent", 0, 0, 1, -1,
                                   tc, "cmp", T0),
                         0);
        const struct veil_event *ev = h_event(&h, "lou", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(h_count(&h, "audit"), 1);
        assert_str(h_audit(&h, 0), "action", "granted");
        assert_audit_purposes(&h, 0, "purposes_after",
                              VEIL_PURPOSE_CONTEXTUAL);

        /* Analytics too (8). */
        m.pub_purposes = h_purposes(8, 11, 0);
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "lou", "lou", "consent", 0, 0, 1, -1,
                                   tc, "cmp", T0 + 1),
                         0);
        ev = h_event(&h, "lou", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->analytics, 1);
        assert_int_equal(h_count(&h, "audit"), 2);
        assert_str(h_audit(&h, 1), "action", "changed");
        assert_audit_purposes(&h, 1, "purposes_after",
                              VEIL_PURPOSE_CONTEXTUAL |
                                      VEIL_PURPOSE_ANALYTICS);

        /* Contextual use withdrawn: no tier, so no analytics either. */
        m.pub_purposes = h_purposes(8, 0);
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "lou", "lou", "consent", 0, 0, 1, -1,
                                   tc, "cmp", T0 + 2),
                         0);
        ev = h_event(&h, "lou", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(h_count(&h, "audit"), 3);
        assert_str(h_audit(&h, 2), "action", "withdrawn");
        assert_audit_purposes(&h, 2, "purposes_before",
                              VEIL_PURPOSE_CONTEXTUAL |
                                      VEIL_PURPOSE_ANALYTICS);
        assert_audit_purposes(&h, 2, "purposes_after", 0);
        char *sec = access_section(&h, "lou", "consent");
        if (!strstr(sec, "\"in_force\": \"nothing\""))
                fail_msg("access: %s", sec);
        free(sec);
        h_close(&h);
}

static void test_tc_policy_version(void **state) {
        (void)state;
        struct harness h;
        char tc[512];
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "ola", 1, 1, 1, T0), 0);
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0),
                             .pub = 1,
                             .special = 1};
        static const struct {
                int policy, granted;
        } cases[] = {{2, 0}, {3, 0}, {4, 1}, {5, 1}};
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                m.policy = cases[i].policy;
                h_tc(&m, tc, sizeof(tc));
                const struct veil_event *ev = h_event(&h, "ola", tc, -1);
                if (cases[i].granted) {
                        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
                        assert_int_equal(ev->special_features, 1);
                } else {
                        assert_int_equal(ev->status, VEIL_DROP);
                        assert_int_equal(ev->tier, VEIL_TIER_NONE);
                        assert_int_equal(ev->special_features, 0);
                        assert_string_equal(
                                ev->reason,
                                "consent: invalid TC string on the event");
                }
        }

        /* In the ledger: a first record granting everything through a
         * policy-2 string grants nothing (audited as withdrawn), and is
         * dead-lettered; the same with a policy-4 string grants. */
        m.policy = 2;
        h_tc(&m, tc, sizeof(tc));
        size_t n_audit = h_count(&h, "audit"), n_dlq = h_count(&h, "dlq");
        assert_int_equal(h_consent(&h, "pia", "pia", "consent", 1, 1, 1, -1,
                                   tc, "cmp", T0),
                         0);
        assert_int_equal(h_count(&h, "dlq"), n_dlq + 1);
        const struct captured *d = h_at(&h, "dlq", n_dlq);
        assert_string_equal(d->stage, "consent");
        assert_non_null(strstr(d->error, "tcfPolicyVersion 2 is older than "
                                         "4 (TCF 2.2)"));
        assert_non_null(strstr(d->error, "applied as if its TC string "
                                         "allowed nothing"));
        assert_null(strstr(d->error, "pia"));
        assert_null(strstr(d->error, tc));
        assert_int_equal(h_count(&h, "audit"), n_audit + 1);
        assert_str(h_audit(&h, n_audit), "action", "withdrawn");
        const struct veil_event *ev = h_event(&h, "pia", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(ev->special_features, 0);
        /* The access record says the string could not be used, not that
         * it lapsed (it has no date: not a lapse "since 1971"). */
        assert_access_tc(&h, "pia",
                         "nothing (the TC string could not be used: not a "
                         "valid TC string, made before TCF 2.2, or over 395 "
                         "days old when recorded)");
        m.policy = 4;
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "pia", "pia", "consent", 1, 1, 1, -1,
                                   tc, "cmp", T0 + 1),
                         0);
        assert_int_equal(h_count(&h, "dlq"), n_dlq + 1);
        ev = h_event(&h, "pia", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->special_features, 1);
        /* Late (older ts), the policy-2 string still narrows to nothing,
         * and is still no lapse. */
        m.policy = 2;
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "pia", "pia", "consent", 1, 1, 1, -1,
                                   tc, "cmp", T0),
                         0);
        ev = h_event(&h, "pia", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_access_tc(&h, "pia",
                         "nothing (the TC string could not be used: not a "
                         "valid TC string, made before TCF 2.2, or over 395 "
                         "days old when recorded)");
        h_close(&h);
}

/* A TC string whose lastUpdated is more than tc_max_age_days (395 by
 * default) before its use allows nothing. Its age counts from the UTC day
 * of its lastUpdated (CMPs write the day), so one rule serves the event's
 * string and the ledger's, which keeps only the day. An event's string is
 * judged at the batch's clock; a ledger record's string at the record's
 * ts too, and a record it does not fit is dead-lettered. */
static void test_tc_max_age(void **state) {
        (void)state;
        struct harness h;
        char tc[512];
        const int64_t D0 = T0 / DAY * DAY;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "quin", 1, 1, 1, T0), 0);
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0),
                             .pub = 1};
        h_event_now_ms = D0;
        m.updated_ms = D0 - 395 * DAY;
        h_tc(&m, tc, sizeof(tc));
        const struct veil_event *ev = h_event(&h, "quin", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        m.updated_ms = D0 - 396 * DAY;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "quin", tc, -1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_string_equal(ev->reason,
                            "consent: invalid TC string on the event");
        /* The same string a day after it was written. */
        h_event_now_ms = D0 - 395 * DAY;
        ev = h_event(&h, "quin", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        /* The day counts, not the hour: a string of 23:00 on the day 395
         * days ago expires with the day. */
        m.updated_ms = D0 - 395 * DAY + 23 * 3600000LL;
        h_tc(&m, tc, sizeof(tc));
        h_event_now_ms = D0 + 1;
        ev = h_event(&h, "quin", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_event_now_ms = 0;

        /* A ledger record's string is judged at the record's ts as well:
         * one already too old then grants nothing and is dead-lettered. */
        size_t n_dlq = h_count(&h, "dlq");
        m.updated_ms = D0 - 400 * DAY;
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "rui", "rui", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0 + 1),
                         0);
        assert_int_equal(h_count(&h, "dlq"), n_dlq + 1);
        const struct captured *d = h_at(&h, "dlq", n_dlq);
        assert_non_null(strstr(d->error, "lastUpdated is 400 days before its "
                                         "use, over tc_max_age_days (395)"));
        assert_non_null(strstr(d->error, "allowed nothing"));
        h_event_now_ms = D0 + 1;
        ev = h_event(&h, "rui", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_access_tc(&h, "rui",
                         "nothing (the TC string could not be used: not a "
                         "valid TC string, made before TCF 2.2, or over 395 "
                         "days old when recorded)");
        h_event_now_ms = 0;
        h_close(&h);

        /* The limit is configuration; 0 turns it off, for the ledger's
         * strings too. */
        h_open(&h, "{tc_max_age_days: 30}");
        assert_int_equal(h_grant(&h, "quin", 1, 1, 1, T0), 0);
        h_event_now_ms = D0;
        m.updated_ms = D0 - 31 * DAY;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "quin", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_close(&h);
        h_open(&h, "{tc_max_age_days: 0}");
        assert_int_equal(h_grant(&h, "quin", 1, 1, 1, T0), 0);
        m.updated_ms = D0 - 3000 * DAY;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "quin", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(h_consent(&h, "rui", "rui", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0 - 3000 * DAY),
                         0);
        ev = h_event(&h, "rui", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        h_event_now_ms = 0;
        h_close(&h);
}

/* The audit record of a lapse: withdrawn, by source "expired", at the
 * first millisecond past the limit, from personalization (and the rest)
 * to nothing. */
static void assert_lapse(struct harness *h, size_t i, int64_t at) {
        const veil_rec_t *a = h_audit(h, i);
        assert_str(a, "action", "withdrawn");
        assert_str(a, "source", "expired");
        assert_int_equal(get_long(a, "ts"), at);
        assert_int_equal(get_bool(a, "purposes_before.personalization"), 1);
        assert_int_equal(get_bool(a, "purposes_before.training"), 1);
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 0);
        assert_int_equal(get_bool(a, "purposes_after.training"), 0);
        assert_int_equal(get_bool(a, "purposes_after.analytics"), 0);
        assert_int_equal(audit_sf(h, i, "before"), 1);
        assert_int_equal(audit_sf(h, i, "after"), 0);
}

/* A TC string in the ledger grants for tc_max_age_days after the day of
 * its lastUpdated and not a day longer, however long ago its record was
 * written: each event is judged at its batch's clock, as an event's own
 * string is. The lapse is a withdrawal: audited once (source expired, ts
 * the first millisecond past the limit, the same after a restart), and
 * every stage erases the person. A record whose ts is before its string's
 * lastUpdated (a ts in seconds, say) cannot skip the check. */
static void test_tc_expires_in_ledger(void **state) {
        (void)state;
        struct harness h;
        char tc[512], fresh[512];
        const int64_t D0 = T0 / DAY * DAY, LAPSE = D0 + 30 * DAY + 1;
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0),
                             .pub = 1,
                             .special = 1,
                             .updated_ms = D0};
        h_tc(&m, tc, sizeof(tc));
        for (int run = 0; run < 2; run++) {
                /* The second run is a restart: the same record, read
                 * again, gives the same audit records. */
                h_open(&h, "{tc_max_age_days: 30}");
                assert_int_equal(h_consent(&h, "rui", "rui", "consent", 1, 1,
                                           1, -1, tc, "cmp", D0),
                                 0);
                /* The last millisecond it counts. */
                h_event_now_ms = LAPSE - 1;
                const struct veil_event *ev = h_event(&h, "rui", NULL, -1);
                assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
                assert_int_equal(ev->training, 1);
                assert_int_equal(ev->special_features, 1);
                assert_int_equal(holder_events(&h, "rui"), 1);
                size_t n_audit = h_count(&h, "audit");
                /* A millisecond later it grants nothing. */
                h_event_now_ms = LAPSE;
                ev = h_event(&h, "rui", NULL, -1);
                assert_int_equal(ev->status, VEIL_DROP);
                assert_int_equal(ev->tier, VEIL_TIER_NONE);
                assert_int_equal(ev->training, 0);
                assert_int_equal(ev->special_features, 0);
                assert_string_equal(ev->reason, "consent: not granted");
                assert_int_equal(h_count(&h, "audit"), n_audit + 1);
                assert_lapse(&h, n_audit, LAPSE);
                h_tick(&h);
                assert_int_equal(holder_events(&h, "rui"), 0);
                /* Audited once; years later it still grants nothing. */
                n_audit = h_count(&h, "audit");
                h_event_now_ms = D0 + 3000 * DAY;
                ev = h_event(&h, "rui", NULL, -1);
                assert_int_equal(ev->tier, VEIL_TIER_NONE);
                assert_int_equal(h_count(&h, "audit"), n_audit);
                /* The access record says what is in force now. */
                h_consent(&h, "access-rui", "rui", "access", 0, 0, 0, -1, NULL,
                          "app", T0);
                h_tick(&h);
                char *sec = h_section(&h, h_count(&h, "access") - 1,
                                      "consent");
                assert_non_null(strstr(sec, "\"in_force\": \"nothing\""));
                assert_non_null(strstr(sec, "\"tc_string_allows\": \"nothing "
                                            "since 2023-12-14T00:00:00.001Z"));
                free(sec);
                h_event_now_ms = 0;
                h_close(&h);
        }

        h_open(&h, "{tc_max_age_days: 30}");
        /* A ts before the string's lastUpdated (here in seconds): judged
         * at the batch's clock all the same. */
        assert_int_equal(h_consent(&h, "sam", "sam", "consent", 1, 1, 1, -1,
                                   tc, "cmp", T0 / 1000),
                         0);
        h_event_now_ms = LAPSE;
        const struct veil_event *ev = h_event(&h, "sam", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_lapse(&h, h_count(&h, "audit") - 1, LAPSE);

        /* No event: a record read after the limit applies the lapse first,
         * at the record's (Kafka) time. A tombstone then withdraws what is
         * left, nothing; a new choice with a fresh string is a change from
         * nothing. */
        assert_int_equal(h_consent(&h, "tia", "tia", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0),
                         0);
        assert_int_equal(h_consent(&h, "uma", "uma", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0),
                         0);
        size_t n_audit = h_count(&h, "audit");
        h_side_ts_ms = D0 + 40 * DAY;
        assert_int_equal(h_tombstone(&h, "tia"), 0);
        assert_int_equal(h_count(&h, "audit"), n_audit + 2);
        assert_lapse(&h, n_audit, LAPSE);
        const veil_rec_t *a = h_audit(&h, n_audit + 1);
        assert_str(a, "source", "tombstone");
        assert_int_equal(get_bool(a, "purposes_before.personalization"), 0);
        m.updated_ms = D0 + 40 * DAY;
        h_tc(&m, fresh, sizeof(fresh));
        assert_int_equal(h_consent(&h, "uma", "uma", "consent", 1, 1, 1, -1,
                                   fresh, "cmp", D0 + 40 * DAY),
                         0);
        assert_int_equal(h_count(&h, "audit"), n_audit + 4);
        assert_lapse(&h, n_audit + 2, LAPSE);
        a = h_audit(&h, n_audit + 3);
        assert_str(a, "action", "changed");
        assert_int_equal(get_bool(a, "purposes_before.personalization"), 0);
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 1);
        /* An access request too; and the access record says what is in
         * force at the latest time the stage has seen. */
        h_side_ts_ms = 0;
        assert_int_equal(h_consent(&h, "wes", "wes", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0),
                         0);
        n_audit = h_count(&h, "audit");
        h_side_ts_ms = D0 + 40 * DAY;
        assert_int_equal(h_consent(&h, "access-wes", "wes", "access", 0, 0, 0,
                                   -1, NULL, "app", D0 + 40 * DAY),
                         0);
        assert_int_equal(h_count(&h, "audit"), n_audit + 2);
        assert_lapse(&h, n_audit, LAPSE);
        a = h_audit(&h, n_audit + 1);
        assert_str(a, "action", "access");
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 0);
        h_tick(&h);
        char *sec = h_section(&h, h_count(&h, "access") - 1, "consent");
        assert_non_null(strstr(sec, "\"in_force\": \"nothing\""));
        free(sec);
        /* A record read only after its string's limit (a restart long
         * after, a backfill): granted as of its ts, then lapsed. */
        n_audit = h_count(&h, "audit");
        uint64_t erased = veil_pipeline_erasures(h.p, NULL, NULL);
        assert_int_equal(h_consent(&h, "val", "val", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0),
                         0);
        assert_int_equal(h_count(&h, "audit"), n_audit + 2);
        assert_str(h_audit(&h, n_audit), "action", "granted");
        assert_lapse(&h, n_audit + 1, LAPSE);
        h_tick(&h);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), erased + 1);
        h_side_ts_ms = 0;
        h_event_now_ms = D0 + 41 * DAY;
        ev = h_event(&h, "uma", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        ev = h_event(&h, "val", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_event_now_ms = 0;
        /* An older record that arrives late narrows the limit too: the
         * earlier of the two strings' limits holds. */
        m.updated_ms = D0 + 20 * DAY;
        h_tc(&m, fresh, sizeof(fresh));
        assert_int_equal(h_consent(&h, "xia", "xia", "consent", 1, 1, 1, -1,
                                   fresh, "cmp", D0 + 20 * DAY),
                         0);
        assert_int_equal(h_consent(&h, "xia", "xia", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0 + 10 * DAY),
                         0);
        h_event_now_ms = LAPSE;
        ev = h_event(&h, "xia", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_event_now_ms = 0;
        /* Asked for before the limit (the request's time) and answered
         * after it (the clock of a batch since): the answer says what is
         * in force when it is collected. */
        assert_int_equal(h_consent(&h, "yan", "yan", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0),
                         0);
        assert_int_equal(h_consent(&h, "access-yan", "yan", "access", 0, 0, 0,
                                   -1, NULL, "app", D0),
                         0);
        h_tick(&h);
        sec = h_section(&h, h_count(&h, "access") - 1, "consent");
        assert_non_null(strstr(sec, "\"in_force\": \"nothing\""));
        assert_non_null(strstr(sec, "\"special_features\": \"none\""));
        free(sec);
        h_close(&h);

        /* Served rather than dropped, an event whose person's string lapsed
         * leaves the stream when the lapse's audit record cannot be
         * written, so that the batch is still committed. */
        h_open(&h, "{tc_max_age_days: 30, on_none: serve}");
        assert_int_equal(h_consent(&h, "rui", "rui", "consent", 1, 1, 1, -1,
                                   tc, "cmp", D0),
                         0);
        h.refuse_topic = "audit";
        h_event_now_ms = LAPSE;
        ev = h_event(&h, "rui", NULL, -1);
        assert_int_equal(ev->status, VEIL_DEAD_LETTER);
        assert_int_equal(h.refused, 1);
        ev = h_event(&h, "rui", NULL, -1);
        assert_int_equal(ev->status, VEIL_PASS);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_event_now_ms = 0;
        h_close(&h);
}

static void test_gpc(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "hal", 1, 1, 1, T0), 0);
        const struct veil_event *ev = h_event(&h, "hal", NULL, 1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 0);
        ev = h_event(&h, "hal", NULL, 0);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        /* GPC in the ledger: the same, and it is a withdrawal. */
        assert_int_equal(h_consent(&h, "hal", "hal", "consent", 1, 1, 1, 1,
                                   NULL, "app", T0 + 1),
                         0);
        ev = h_event(&h, "hal", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 0);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), 1);
        /* Personalization alone: GPC leaves nothing but context... */
        assert_int_equal(h_grant(&h, "ivy", 1, 0, 0, T0), 0);
        ev = h_event(&h, "ivy", NULL, 1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        h_close(&h);

        /* ...and what GPC withdraws is configuration. */
        h_open(&h, "{gpc_withdraws: [personalization, contextual]}");
        assert_int_equal(h_grant(&h, "ivy", 1, 1, 0, T0), 0);
        ev = h_event(&h, "ivy", NULL, 1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_string_equal(ev->reason, "consent: GPC");
        h_close(&h);
        h_open(&h, "{gpc_withdraws: []}");
        assert_int_equal(h_grant(&h, "ivy", 1, 1, 0, T0), 0);
        ev = h_event(&h, "ivy", NULL, 1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 1);
        h_close(&h);
}

static void test_vendor_and_restrictions(void **state) {
        (void)state;
        struct harness h;
        char tc[2048];
        static const int us[] = {7, 755}, others[] = {7};
        h_open(&h, "{vendor_id: 755, contextual: [\"11|1\"]}");
        assert_int_equal(h_grant(&h, "jo", 1, 1, 1, T0), 0);
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 10, 11, 0),
                             .vendors = others, .n_vendors = 1};
        h_tc(&m, tc, sizeof(tc));
        /* Our vendor has no consent: nothing the string says counts. */
        const struct veil_event *ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        m.vendors = us;
        m.n_vendors = 2;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        /* The publisher does not allow purpose 6 for us. */
        m.restr[0].purpose = 6;
        m.restr[0].type = 0;
        m.restr[0].vendor = 755;
        m.n_restr = 1;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 1);
        /* A restriction on another vendor changes nothing for us. */
        m.restr[0].vendor = 7;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        /* Contextual by LI on 11 needs our vendor's LI, and "require
         * consent" removes the LI path; "11|1" lets consent to 1 do. */
        static const int li_us[] = {755};
        m = (struct tc_model){.purposes_li = h_purposes(11, 0),
                              .vendors = us, .n_vendors = 2};
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        m.vendors_li = li_us;
        m.n_vendors_li = 1;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        m.restr[0].purpose = 11;
        m.restr[0].type = 1;
        m.restr[0].vendor = 755;
        m.n_restr = 1;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        m.purposes = h_purposes(1, 0);
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "jo", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        h_close(&h);
}

static void test_bad_parameters(void **state) {
        (void)state;
        struct harness h;
        char err[2048];
        static const struct {
                const char *with, *want;
        } cases[] = {
                {"{legitimate_interest: [5]}",
                 "TCF 2.2 allows no legitimate interest for purpose 5"},
                {"{personalization: [5, 25]}",
                 "'25' is not a TCF purpose id 1..24"},
                {"{contextual: [\"11|x\"]}", "alternatives"},
                {"{gpc_withdraws: [everything]}",
                 "'everything' is not one of personalization"},
                {"{on_none: ignore}", "on_none must be drop or serve"},
                {"{vendor_id: 70000}", "vendor_id must be an IAB vendor id"},
                {"{tc_max_age_days: -1}",
                 "tc_max_age_days must be 1..3660 days, or 0 for no limit"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                err[0] = '\0';
                assert_int_not_equal(h_try_open(&h, cases[i].with, err,
                                                 sizeof(err)),
                                     0);
                if (!strstr(err, cases[i].want))
                        fail_msg("%s: got '%s'", cases[i].with, err);
                /* Names the place in the pipeline file. */
                assert_non_null(strstr(err, "t.yaml:"));
        }
}

static void test_serve_none(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{on_none: serve}");
        const struct veil_event *ev = h_event(&h, "kim", NULL, -1);
        assert_int_equal(ev->status, VEIL_PASS);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(veil_pipeline_n_drop_reasons(h.p), 0);
        assert_int_equal(veil_pipeline_tier_count(h.p, VEIL_TIER_NONE), 1);
        /* No user id at all. */
        struct veil_batch *b = veil_pipeline_batch_begin(h.p);
        struct veil_event e;
        memset(&e, 0, sizeof(e));
        e.event_id = "x";
        e.type = "view";
        e.item_id = "i";
        e.gpc = -1;
        assert_int_equal(veil_pipeline_batch_add_event(h.p, &e), 1);
        char err[512];
        assert_int_equal(veil_pipeline_batch_run(h.p, err, sizeof(err)), 0);
        assert_int_equal(b->events[0].tier, VEIL_TIER_NONE);
        h_close(&h);
}

/* A kind the reader schema lacks (a newer writer's objection, say) reads
 * as the enum default "unknown": rejected, whatever purposes it carries,
 * never applied as a grant (schemas/consent.avsc). */
static int unknown_kind(struct harness *h, const char *user) {
        veil_rec_t *r = veil_codec_rec_begin(h->consent);
        assert_non_null(r);
        assert_int_equal(veil_rec_set_str(r, "user_id", user), 0);
        assert_int_equal(veil_rec_set_str(r, "kind", "unknown"), 0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.personalization", 1),
                         0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.training", 1), 0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.analytics", 1), 0);
        assert_int_equal(veil_rec_set_str(r, "source", "cmp"), 0);
        assert_int_equal(veil_rec_set_long(r, "ts", T0 + 5), 0);
        struct veil_buf buf = {0};
        char err[512];
        assert_int_equal(veil_codec_rec_encode(h->consent, &buf, err,
                                               sizeof(err)),
                         0);
        int rc = h_raw(h, user, strlen(user), buf.data, buf.len);
        veil_buf_free(&buf);
        return rc;
}

static void test_unknown_kind_rejected(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "ola", 0, 0, 1, T0), 0);
        size_t n_audit = h_count(&h, "audit");
        assert_int_equal(unknown_kind(&h, "ola"), 0);
        assert_int_equal(unknown_kind(&h, "pia"), 0);
        assert_int_equal(h_count(&h, "dlq"), 2);
        for (size_t i = 0; i < 2; i++) {
                const struct captured *d = h_at(&h, "dlq", i);
                assert_string_equal(d->stage, "consent");
                assert_non_null(strstr(d->error, "kind unknown"));
                assert_non_null(strstr(d->error, "ledger is unchanged"));
                assert_null(strstr(d->error, "ola"));
                assert_null(strstr(d->error, "pia"));
        }
        assert_int_equal(h_count(&h, "audit"), n_audit);
        const struct veil_event *ev = h_event(&h, "ola", NULL, -1);
        assert_int_equal(ev->training, 0);
        assert_int_not_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        ev = h_event(&h, "pia", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(ev->training, 0);
        h_close(&h);
}

static void test_rejected_records(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "lea", 1, 1, 0, T0), 0);
        size_t n_audit = h_count(&h, "audit");
        /* Not Avro: the host's decoder refuses it. */
        assert_int_equal(h_raw(&h, "lea", 3, "\x01", 1), 0);
        /* Valid Avro the stage refuses: a key that is not the user id, an
         * empty key. */
        assert_int_equal(h_consent(&h, "lea", "someone-else", "consent", 0, 0,
                                   0, -1, NULL, "app", T0 + 10),
                         0);
        assert_int_equal(h_raw(&h, "", 0, NULL, 0), 0);
        assert_int_equal(h_count(&h, "dlq"), 3);
        const struct captured *d = h_at(&h, "dlq", 0);
        assert_string_equal(d->stage, "decode");
        for (size_t i = 1; i < 3; i++) {
                d = h_at(&h, "dlq", i);
                assert_true(d->dead_letter);
                assert_string_equal(d->stage, "consent");
                assert_non_null(strstr(d->error, "ledger is unchanged"));
                assert_null(strstr(d->error, "lea"));
                assert_null(strstr(d->error, "someone-else"));
        }
        assert_non_null(strstr(h_at(&h, "dlq", 1)->error, "key and user_id"));
        /* Nothing changed. */
        assert_int_equal(h_count(&h, "audit"), n_audit);
        const struct veil_event *ev = h_event(&h, "lea", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), 0);

        /* A broken TC string allows nothing, as on an event: a withdrawal
         * whose CMP wrote one still withdraws (after a restart it may be
         * the only record), and goes to the dead-letter topic too. */
        assert_int_equal(h_consent(&h, "lea", "lea", "consent", 0, 0, 0, 1,
                                   "CPi8wgAPi8w!", "cmp", T0 + 10),
                         0);
        assert_int_equal(h_count(&h, "dlq"), 4);
        d = h_at(&h, "dlq", 3);
        assert_string_equal(d->stage, "consent");
        assert_non_null(strstr(d->error, "tc_string"));
        assert_non_null(strstr(d->error, "applied as if its TC string "
                                         "allowed nothing"));
        assert_null(strstr(d->error, "lea"));
        assert_int_equal(h_count(&h, "audit"), n_audit + 1);
        assert_str(h_audit(&h, n_audit), "action", "withdrawn");
        h_tick(&h);
        assert_int_equal(veil_pipeline_erasures(h.p, NULL, NULL), 1);
        ev = h_event(&h, "lea", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        /* So does a grant: the string cannot be read, so it allows
         * nothing, and neither can an older one with it. */
        assert_int_equal(h_consent(&h, "max", "max", "consent", 1, 1, 1, -1,
                                   "CPi8wgAPi8w!", "cmp", T0),
                         0);
        ev = h_event(&h, "max", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_close(&h);
}

static void test_access_request(void **state) {
        (void)state;
        struct harness h;
        char tc[256];
        h_open(&h, "{}");
        struct tc_model m = {.purposes = h_purposes(5, 6, 11, 0), .special = 1,
                             .pub = 1};
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "nia", "nia", "consent", 1, 0, 1, 0, tc,
                                   "cmp", T0),
                         0);
        const struct veil_event *ev = h_event(&h, "nia", NULL, -1);
        char subject[VEIL_PSEUDONYM_MAX];
        snprintf(subject, sizeof(subject), "%s", ev->subject);
        size_t n_audit = h_count(&h, "audit");
        /* Any key: the person is the user_id. Nothing changes. */
        assert_int_equal(h_consent(&h, "request-17", "nia", "access", 0, 0, 0,
                                   -1, NULL, "support_desk", T0 + 5),
                         0);
        assert_int_equal(h_count(&h, "access"), 0); /* before the batch */
        h_tick(&h);
        assert_int_equal(h_count(&h, "access"), 1);
        const struct captured *c = h_at(&h, "access", 0);
        assert_string_equal(c->key, subject);
        assert_null(memmem(c->value, c->value_len, "nia", 3));
        const veil_rec_t *acc = h_access(&h, 0);
        assert_str(acc, "subject", subject);
        char *sec = h_section(&h, 0, "consent");
        assert_non_null(strstr(sec, "\"personalization\": \"granted\""));
        assert_non_null(strstr(sec, "\"training\": \"not granted\""));
        assert_non_null(strstr(sec, "\"special_features\": \"1\""));
        assert_non_null(strstr(sec, "\"source\": \"cmp\""));
        assert_non_null(strstr(sec, "\"recorded_at\": \"2023-11-14T"));
        free(sec);
        sec = h_section(&h, 0, "holder");
        assert_non_null(strstr(sec, "\"personalized_events\": \"1\""));
        free(sec);
        /* Audited as an access, purposes unchanged. */
        assert_int_equal(h_count(&h, "audit"), n_audit + 1);
        const veil_rec_t *a = h_audit(&h, n_audit);
        assert_str(a, "action", "access");
        assert_int_equal(get_bool(a, "purposes_before.personalization"), 1);
        assert_int_equal(get_bool(a, "purposes_after.personalization"), 1);
        ev = h_event(&h, "nia", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        h_close(&h);
}

/* Audit and access records come between batches: when the host refuses
 * one (too large for its topic), there is no event to dead-letter. The
 * consent record stays applied, nothing is dead-lettered, and the batches
 * after it run. */
static void test_refused_between_batches(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{require_ledger: true}");
        h.refuse_topic = "audit";
        assert_int_equal(h_grant(&h, "olga", 1, 1, 1, T0), 0);
        assert_int_equal(h.refused, 1);
        assert_int_equal(h_count(&h, "audit"), 0);
        assert_int_equal(h_count(&h, "dlq"), 0);
        const struct veil_event *ev = h_event(&h, "olga", NULL, -1);
        assert_int_equal(ev->status, VEIL_PASS);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        /* The host's access record: not produced, the next batch runs. */
        h.refuse_topic = "access";
        assert_int_equal(h_consent(&h, "request-1", "olga", "access", 0, 0, 0,
                                   -1, NULL, "support_desk", T0 + 1),
                         0);
        assert_int_equal(h_count(&h, "audit"), 1); /* action: access */
        h_tick(&h);
        assert_int_equal(h.refused, 2);
        assert_int_equal(h_count(&h, "access"), 0);
        ev = h_event(&h, "olga", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(h_count(&h, "dlq"), 0);
        h_close(&h);
}

/* The consent stage's notice for a with: block, one line per point. */
static char *notice_of(const char *with) {
        struct harness h;
        h_open(&h, with);
        struct veil_notice n;
        memset(&n, 0, sizeof(n));
        veil_notice_collect(&n, veil_pipeline_stage_plugin(h.p, 0),
                            veil_pipeline_stage_params(h.p, 0));
        size_t len = 0;
        for (size_t i = 0; i < n.n; i++)
                len += strlen(n.l[i].text) + 1;
        char *all = calloc(1, len + 1);
        for (size_t i = 0; i < n.n; i++) {
                strcat(all, n.l[i].text);
                strcat(all, "\n");
                assert_string_equal(n.l[i].stage, "consent");
        }
        veil_notice_free(&n);
        h_close(&h);
        return all;
}

static void test_notice(void **state) {
        (void)state;
        char *all = notice_of("{contextual: [\"11|1\"], vendor_id: 755}");
        static const char *const want[] = {
                "personalization needs TCF purposes 5 and 6",
                "contextual recommendations need TCF purposes 1 or 11",
                "contributing to the shared model needs TCF purpose 10",
                "For TCF purpose(s) 11 we accept legitimate interest",
                /* Our vendor's LI alone grants purpose 11, the
                 * contextual tier (test_vendor_and_restrictions). */
                "A consent string counts only when it also gives our "
                "vendor (IAB id 755) consent or, for TCF purpose(s) 11, "
                "legitimate interest, and the site's restrictions on our "
                "vendor are applied.",
                "withdraws personalization and contributing to the shared model",
                "every stage deletes what it holds",
                "the interaction is not processed",
                "never the id itself",
                "made under TCF 2.2 or later (TCF policy version 4 or "
                "higher), and only for 395 days after the day you last made "
                "or confirmed your choices in it, whether it comes with an "
                "interaction or with your recorded choices. After that it "
                "allows nothing, and nothing personal happens until you "
                "confirm your choices again; what the stages hold about you "
                "is deleted, as when you withdraw, when you next interact "
                "with us (we keep no id to find you by before), or else when "
                "each stage's own retention, stated here, ends.",
                "the day the consent string was last updated",
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
                if (!strstr(all, want[i]))
                        fail_msg("notice lacks '%s':\n%s", want[i], all);
        assert_null(strstr(all, "choices for this site itself"));
        free(all);
        /* Without legitimate interest, vendor consent alone counts. */
        all = notice_of("{vendor_id: 755, legitimate_interest: [], "
                        "publisher_restrictions: false}");
        if (!strstr(all, "A consent string counts only when it also gives "
                         "our vendor (IAB id 755) consent.\n"))
                fail_msg("notice lacks the vendor's rule:\n%s", all);
        free(all);
        /* The default: we are the publisher. */
        all = notice_of("{}");
        if (!strstr(all, "A consent string counts only through the choices "
                         "you made for this site itself (the publisher's "
                         "purposes in TCF), not those for advertising "
                         "vendors; a consent string without them allows "
                         "nothing."))
                fail_msg("notice lacks the publisher's rule:\n%s", all);
        assert_null(strstr(all, "our vendor"));
        free(all);
}

/* With the default vendor_id 0 we are the publisher: a TC string grants
 * through its publisher TC segment alone (PubPurposesConsent, and
 * PubPurposesLITransparency under the same legitimate-interest rules), not
 * through the purposes the person allowed vendors in the core segment,
 * which each vendor may use only with its own vendor consent. A string
 * without a publisher segment grants nothing. */
static void test_publisher_segment(void **state) {
        (void)state;
        struct harness h;
        char tc[512];
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "zoe", 1, 1, 1, T0), 0);
        /* Every purpose consented for vendors, every vendor refused, no
         * publisher segment: nothing for us. */
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0),
                             .purposes_li = h_purposes(11, 0),
                             .special = 1};
        h_tc(&m, tc, sizeof(tc));
        const struct veil_event *ev = h_event(&h, "zoe", tc, -1);
        assert_int_equal(ev->status, VEIL_DROP);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_string_equal(ev->reason,
                            "consent: refused by the event's TC string");
        /* The publisher segment decides, whatever the core says. */
        m.pub = 2;
        m.pub_purposes = h_purposes(5, 6, 0);
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "zoe", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 0);
        assert_int_equal(ev->analytics, 0);
        m.purposes = m.purposes_li = 0;
        m.pub_purposes = h_purposes(5, 6, 8, 10, 0);
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "zoe", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 1);
        assert_int_equal(ev->analytics, 1);
        /* Legitimate interest in the publisher segment: for 11 (accepted
         * by default), yes; for 5 and 6, never. */
        m.pub_purposes = h_purposes(10, 0);
        m.pub_purposes_li = h_purposes(5, 6, 11, 0);
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "zoe", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_CONTEXTUAL);
        assert_int_equal(ev->training, 1);
        /* In the ledger the same: a record whose string allows vendors
         * everything and the publisher nothing grants nothing. */
        m = (struct tc_model){.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0)};
        h_tc(&m, tc, sizeof(tc));
        assert_int_equal(h_consent(&h, "amo", "amo", "consent", 1, 1, 1, -1,
                                   tc, "cmp", T0),
                         0);
        assert_str(h_audit(&h, h_count(&h, "audit") - 1), "action",
                   "withdrawn");
        ev = h_event(&h, "amo", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        h_close(&h);

        /* With vendor_id set, our vendor's consent and the core purposes
         * grant, as before; the publisher segment does not stand in for
         * them. */
        static const int us[] = {755};
        h_open(&h, "{vendor_id: 755}");
        assert_int_equal(h_grant(&h, "zoe", 1, 1, 1, T0), 0);
        m = (struct tc_model){.vendors = us, .n_vendors = 1, .pub = 2,
                              .pub_purposes = h_purposes(1, 5, 6, 8, 10, 11,
                                                         0)};
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "zoe", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        m.purposes = h_purposes(5, 6, 0);
        m.pub = 0;
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "zoe", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        h_close(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_grant),
                cmocka_unit_test(test_no_record_is_denied),
                cmocka_unit_test(test_drops_per_stage),
                cmocka_unit_test(test_narrow_erases),
                cmocka_unit_test(test_erase_failure_reported),
                cmocka_unit_test(test_rotation_erases_under_old_key),
                cmocka_unit_test(test_dead_letter_output_refused),
                cmocka_unit_test(test_withdraw_everything),
                cmocka_unit_test(test_tombstone),
                cmocka_unit_test(test_erasures_held_bounded),
                cmocka_unit_test(test_erase_drops_held_example),
                cmocka_unit_test(test_analytics_gates_counting),
                cmocka_unit_test(test_rejected_unknown_erases),
                cmocka_unit_test(test_out_of_order),
                cmocka_unit_test(test_tombstone_without_ledger_rule),
                cmocka_unit_test(test_access_keys_leave_nothing),
                cmocka_unit_test(test_event_tc_is_stricter),
                cmocka_unit_test(test_ledger_tc_and_features),
                cmocka_unit_test(test_audit_special_features),
                cmocka_unit_test(test_audit_contextual),
                cmocka_unit_test(test_tc_policy_version),
                cmocka_unit_test(test_tc_max_age),
                cmocka_unit_test(test_tc_expires_in_ledger),
                cmocka_unit_test(test_gpc),
                cmocka_unit_test(test_vendor_and_restrictions),
                cmocka_unit_test(test_publisher_segment),
                cmocka_unit_test(test_bad_parameters),
                cmocka_unit_test(test_serve_none),
                cmocka_unit_test(test_rejected_records),
                cmocka_unit_test(test_unknown_kind_rejected),
                cmocka_unit_test(test_access_request),
                cmocka_unit_test(test_refused_between_batches),
                cmocka_unit_test(test_notice),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

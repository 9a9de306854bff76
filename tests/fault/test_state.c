/*
 * Reading the state topic at start (the state: section) on the mock
 * cluster: slow but moving, it is read to its end however long that takes,
 * and restored; stalled (nothing arriving), the start fails rather than
 * restore from part of the checkpoints. Writing it: a shrunk state's
 * chunk keys past its end, and after a hot reload that moved the
 * checkpointing stage, the keys of its old position, end in tombstones.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "fault_lib.h"
#include "mock.h"
#include "pipeline.h"

/* How long the test's host waits without receiving anything (the real
 * default is a minute or more). */
#define IDLE_MS 1500

static struct fault_env *state_env(void) {
        setenv("VEIL_PLUGIN_DIR", TEST_PLUGIN_DIR, 1);
        setenv("VEIL_BLOB_SEED", "1", 1);
        struct fault_opts o = {0};
        o.yaml = TEST_ROOT "/tests/fault/state.yaml";
        o.partitions = 1;
        o.state_idle_ms = IDLE_MS;
        struct fault_env *e = fault_env_new(&o);
        char err[512];
        assert_int_equal(veil_mock_create_topic(e->mock, "state", 1, err,
                                                sizeof(err)),
                         0);
        return e;
}

/* The state of the checkpointing stage (plugins[1]). */
static unsigned char *blob_of(struct veil_pipeline *p, size_t *len) {
        const struct veil_plugin *pl = veil_pipeline_stage_plugin(p, 1);
        void *d = NULL;
        assert_non_null(pl->checkpoint);
        assert_int_equal(pl->checkpoint(veil_pipeline_stage_state(p, 1), &d,
                                        len),
                         0);
        return d;
}

/* The pipeline built again from the file, with the environment now set
 * (VEIL_BLOB_SEED, VEIL_BLOB_KEEP), for the next run. */
static void rebuild(struct fault_env *e) {
        char err[1024];
        veil_pipeline_destroy(e->p);
        veil_config_destroy(e->cfg);
        assert_int_equal(veil_config_load(&e->cfg, e->o.yaml, err,
                                          sizeof(err)),
                         0);
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts po = {path, 1, e->kr, 0};
        assert_int_equal(veil_pipeline_new(&e->p, e->cfg, &po, err,
                                           sizeof(err)),
                         0);
}

/* A run of n input records, to its clean end (a checkpoint at shutdown). */
static void run_n(struct fault_env *e, long n) {
        fault_feed(e, n, 0);
        fault_run_start(e, n, 60);
        fault_run_join(e);
}

/* The checkpointing stage holds exactly want[0..len). */
static void check_blob(struct fault_env *e, const unsigned char *want,
                       size_t len) {
        size_t n;
        unsigned char *got = blob_of(e->p, &n);
        assert_int_equal(n, len);
        assert_memory_equal(got, want, n);
        free(got);
}

/* A first run leaves a checkpoint (at its shutdown) of a 2 MB state: three
 * chunks and a manifest. Returns that state; the pipeline is then built
 * again with another one, for the next run to restore into. */
static unsigned char *first_run(struct fault_env *e, size_t *len) {
        run_n(e, 10);
        unsigned char *saved = blob_of(e->p, len);
        setenv("VEIL_BLOB_SEED", "2", 1);
        rebuild(e);
        size_t n;
        unsigned char *other = blob_of(e->p, &n);
        assert_false(n == *len && !memcmp(other, saved, n));
        free(other);
        return saved;
}

/* Every fetch answered after 0.7 s, one record each: the state topic takes
 * several times IDLE_MS to read, with something arriving well within it
 * each time. The read used to have a total deadline (60 s) after which it
 * restored from what it had: on a large topic, an old checkpoint. */
static void test_slow_read_restores(void **state) {
        struct fault_env *e = state_env();
        *state = e;
        size_t len;
        unsigned char *saved = first_run(e, &len);
        rd_kafka_mock_broker_push_request_error_rtts(
                fault_cluster(e), 1, API_FETCH, 8, 0, 700, 0, 700, 0, 700, 0,
                700, 0, 700, 0, 700, 0, 700, 0, 700);
        double t0 = now_s();
        run_n(e, 1);
        double secs = now_s() - t0;
        fprintf(stderr, "# second run (reading the state slowly): %.1f s\n",
                secs);
        assert_true(secs > 2.0 * IDLE_MS / 1000);
        check_blob(e, saved, len);
        free(saved);
}

/* A fetch answered only after four times IDLE_MS: nothing arrives, as
 * behind an open transaction that holds the last stable offset. The start
 * fails (exit 1: Kubernetes restarts the host) instead of restoring from
 * part of the log. */
static void test_stalled_read_fails(void **state) {
        struct fault_env *e = state_env();
        *state = e;
        size_t len;
        free(first_run(e, &len));
        rd_kafka_mock_broker_push_request_error_rtts(fault_cluster(e), 1,
                                                     API_FETCH, 1, 0,
                                                     4 * IDLE_MS);
        fault_feed(e, 1, 0);
        fault_run_start(e, 1, 60);
        fault_run_join_failed(e);
        fprintf(stderr, "# run: %s\n", e->err);
        assert_non_null(strstr(e->err, "nothing received from 'state'"));
        assert_non_null(strstr(e->err, "not restoring"));
}

/* The state topic's keys of the checkpointing stage under `stage`
 * ("<index>-ckpt_blob"), by chunk: whether the last record of "…/<n>"
 * (even key set) and "…/<n>.1" (odd), and of "…/manifest", holds a value
 * (1), is a tombstone (0), or was never written (-1). */
struct last_values {
        const char *stage;
        int even[4], odd[4], manifest;
};

static void last_values_init(struct last_values *lv, const char *stage) {
        lv->stage = stage;
        lv->manifest = -1;
        for (int i = 0; i < 4; i++)
                lv->even[i] = lv->odd[i] = -1;
}

static void note_last(const rd_kafka_message_t *m, int i, void *ctx) {
        (void)i;
        struct last_values *lv = ctx;
        const char *k = m->key, *at;
        char key[256], stage[64];
        snprintf(key, sizeof(key), "%.*s", (int)m->key_len, k ? k : "");
        snprintf(stage, sizeof(stage), "/%s/", lv->stage);
        if (!(at = strstr(key, stage)))
                return;
        at += strlen(stage);
        if (!strcmp(at, "manifest")) {
                lv->manifest = m->payload != NULL;
                return;
        }
        if (at[0] < '0' || at[0] > '3')
                return;
        int *slot = !strcmp(at + 1, ".1") ? &lv->odd[at[0] - '0']
                    : !at[1]              ? &lv->even[at[0] - '0']
                                          : NULL;
        if (slot)
                *slot = m->payload != NULL;
}

static void print_last(const struct last_values *lv) {
        fprintf(stderr, "# last values of %s: manifest %d, even %d %d %d %d, "
                "odd %d %d %d %d\n", lv->stage, lv->manifest, lv->even[0],
                lv->even[1], lv->even[2], lv->even[3], lv->odd[0], lv->odd[1],
                lv->odd[2], lv->odd[3]);
}

/* Two runs checkpoint a 2 MB state (three chunks, one run in each key
 * set), then two a 1 KB one (the stage keeps 1 KB of what it restores):
 * the chunk keys past the small state's one
 * end in tombstones through the host's producer (null values), so
 * compaction removes them and the profiles they held. They used to keep
 * the large state's chunks for good. A run after that restores the small
 * state. */
static void test_shrunk_state_tombstoned(void **state) {
        struct fault_env *e = state_env();
        *state = e;
        for (int run = 0; run < 4; run++) {
                if (run == 2) { /* it restores only 1 KB of it */
                        setenv("VEIL_BLOB_KEEP", "1000", 1);
                        rebuild(e);
                }
                run_n(e, 2);
        }
        size_t len;
        unsigned char *saved = blob_of(e->p, &len);
        assert_int_equal(len, 1000);
        struct last_values lv;
        last_values_init(&lv, "1-ckpt_blob");
        fault_read_all(e, "state", "state-reader", note_last, &lv);
        print_last(&lv);
        assert_int_equal(lv.even[0], 1);
        assert_int_equal(lv.odd[0], 1);
        for (int c = 1; c <= 2; c++) {
                assert_int_equal(lv.even[c], 0);
                assert_int_equal(lv.odd[c], 0);
        }
        assert_int_equal(lv.even[3], -1);
        assert_int_equal(lv.odd[3], -1);
        setenv("VEIL_BLOB_SEED", "3", 1);
        rebuild(e);
        run_n(e, 1);
        check_blob(e, saved, len);
        free(saved);
        unsetenv("VEIL_BLOB_KEEP");
}

/* Asks for a reload once the run's records are processed, and ends the
 * run once it swapped pipelines: its checkpoint at shutdown is the first
 * after the reload. */
static int reload_then_stop(struct fault_env *e,
                            const struct veil_kafka_stats *st) {
        int *asked = e->hook_ctx;
        if (e->reloads_swapped)
                return 1;
        if (!*asked && st->records_in >= 2 && st->acked == st->produced) {
                *asked = 1;
                e->reload = 1;
        }
        return 0;
}

/* A run checkpoints the stage at index 1 (a manifest and three chunks in
 * one key set); the next restores it, is hot-reloaded to state_moved.yaml
 * (the stage now at index 0; its state moves by plugin name) and stops:
 * the checkpoint at its shutdown writes the state under "0-ckpt_blob/"
 * and tombstones every key under "1-ckpt_blob/". Those keys used to keep
 * the last checkpoint before the reload for good, out of reach of any
 * erasure, until a start found them. */
static void test_reload_moved_tombstoned(void **state) {
        struct fault_env *e = state_env();
        *state = e;
        run_n(e, 2);
        /* The run's reloads build from this file (reload_open); read on
         * the run's thread, so set before it starts. */
        e->o.yaml = TEST_ROOT "/tests/fault/state_moved.yaml";
        int asked = 0;
        e->hook = reload_then_stop;
        e->hook_ctx = &asked;
        fault_feed(e, 2, 0);
        fault_run_start(e, 0, 60);
        fault_run_join(e);
        assert_int_equal(e->reloads_swapped, 1);
        struct last_values old, moved;
        last_values_init(&old, "1-ckpt_blob");
        last_values_init(&moved, "0-ckpt_blob");
        fault_read_all(e, "state", "state-reader", note_last, &old);
        fault_read_all(e, "state", "state-reader", note_last, &moved);
        print_last(&old);
        print_last(&moved);
        assert_int_equal(old.manifest, 0);
        assert_int_equal(moved.manifest, 1);
        for (int c = 0; c < 3; c++) {
                /* Written in one key set, never in the other. */
                assert_true(old.even[c] == 0 || old.odd[c] == 0);
                assert_true(old.even[c] != 1 && old.odd[c] != 1);
                assert_true(moved.even[c] == 1 || moved.odd[c] == 1);
        }
        assert_int_equal(old.even[3], -1);
        assert_int_equal(old.odd[3], -1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_slow_read_restores,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_stalled_read_fails,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_reload_moved_tombstoned,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_shrunk_state_tombstoned,
                                          fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

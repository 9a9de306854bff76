/*
 * Records the sink refuses as too large (-VEIL_EINVAL, what the Kafka sink
 * answers when the producer refuses a record over message.max.bytes), in
 * the pipeline alone: each bundled plugin that emits per event
 * dead-letters that event and goes on, the others of the batch come out,
 * and the host's line names the output, the topic, the size and the limit
 * but not the record; a stage that ignores the refusal (careless.c, from
 * tests/fault) fails its batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "pipeline.h"

/* In the refused events' event_id, so in every record made of them. */
#define MARK "oversized-e2"

struct cap {
        int records, dead_letters, refused;
        char dl_error[512], dl_stage[64];
        char dl_key[64];
};

static int sink(void *ctx, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        struct cap *c = ctx;
        (void)topic;
        if (dl) {
                c->dead_letters++;
                snprintf(c->dl_error, sizeof(c->dl_error), "%s", dl->error);
                snprintf(c->dl_stage, sizeof(c->dl_stage), "%s", dl->stage);
                snprintf(c->dl_key, sizeof(c->dl_key), "%.*s", (int)key_len,
                         (const char *)key);
                return 0;
        }
        if (memmem(value, value_len, MARK, strlen(MARK))) {
                c->refused++;
                return -VEIL_EINVAL;
        }
        c->records++;
        return 0;
}

struct run {
        struct veil_config *cfg;
        struct veil_pipeline *p;
        struct cap cap;
        char err[2048];
        char log[8192]; /* stderr while the batch ran */
};

/* One stage (`use`, `with`) writing `output` to topic "out"; three events,
 * e2 of which is refused; returns what batch_run returned. */
static int run_three(struct run *r, const char *use, const char *with,
                     const char *output, const char *schema) {
        char yaml[2048], err[1024];
        memset(r, 0, sizeof(*r));
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../schemas/"
                 "interaction.avsc}\n"
                 "outputs:\n"
                 "  %s: {topic: out, schema: ../../schemas/%s}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: %s\n"
                 "    with: %s\n",
                 output, schema, use, with);
        int rc = veil_config_parse(&r->cfg, VEIL_SRCDIR "/tests/unit/t.yaml",
                                   yaml, strlen(yaml), err, sizeof(err));
        if (rc)
                fail_msg("config: %s", err);
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts o = {path, 1, NULL, 0};
        rc = veil_pipeline_new(&r->p, r->cfg, &o, err, sizeof(err));
        if (rc)
                fail_msg("pipeline: %s", err);
        veil_pipeline_set_sink(r->p, (struct veil_sink){sink, &r->cap});
        veil_pipeline_set_max_record(r->p, 1000000);
        veil_pipeline_batch_begin(r->p);
        static const char *const ids[] = {"e1", MARK, "e3"};
        for (int i = 0; i < 3; i++) {
                struct veil_event ev;
                memset(&ev, 0, sizeof(ev));
                ev.event_id = ids[i];
                ev.user_id = "u1";
                ev.ts_ms = 1700000000000LL + i;
                ev.type = "view";
                ev.item_id = "item-1";
                ev.value = 1;
                ev.gpc = -1;
                assert_int_equal(veil_pipeline_batch_add_event(r->p, &ev), 1);
        }
        /* The host's lines go to stderr: kept for the test to read. */
        FILE *tmp = tmpfile();
        assert_non_null(tmp);
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(tmp), 2) >= 0);
        rc = veil_pipeline_batch_run(r->p, r->err, sizeof(r->err));
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        rewind(tmp);
        size_t n = fread(r->log, 1, sizeof(r->log) - 1, tmp);
        r->log[n] = '\0';
        fclose(tmp);
        fprintf(stderr, "%s", r->log);
        return rc;
}

static void run_done(struct run *r) {
        veil_pipeline_destroy(r->p);
        veil_config_destroy(r->cfg);
}

/* A plugin that dead-letters on -VEIL_EINVAL: the batch succeeds, e2 is
 * a dead letter of that stage, e1 and e3 come out. */
static void dead_lettered(const char *use, const char *with,
                          const char *output, const char *schema,
                          const char *error) {
        struct run r;
        int rc = run_three(&r, use, with, output, schema);
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.refused, 1);
        assert_int_equal(r.cap.records, 2);
        assert_int_equal(r.cap.dead_letters, 1);
        assert_non_null(strstr(use, r.cap.dl_stage)); /* plugin name */
        assert_non_null(strstr(r.cap.dl_error, error));
        struct veil_stage_stats st = veil_pipeline_stage_stats(r.p, 0);
        assert_int_equal(st.dead_letters, 1);
        assert_int_equal(st.out, 2);
        assert_int_equal(veil_pipeline_dead_letters(r.p), 1);
        assert_int_equal(veil_pipeline_output_count(r.p, output), 2);
        /* One line: output, topic, size and limit; never the record. */
        char want[128];
        snprintf(want, sizeof(want), "output '%s': a record of ", output);
        const char *line = strstr(r.log, want);
        assert_non_null(line);
        assert_non_null(strstr(line, "bytes is too large for topic 'out' "
                                     "(the producer's message.max.bytes is "
                                     "1000000)"));
        assert_null(strstr(r.log, MARK));
        run_done(&r);
}

static void test_passthrough(void **state) {
        (void)state;
        dead_lettered("passthrough", "{}", "events", "interaction.avsc",
                      "passthrough: the event's output record could not be "
                      "written");
}

static void test_example(void **state) {
        (void)state;
        dead_lettered(EXAMPLE_PLUGIN, "{min_value: 0}", "events",
                      "interaction.avsc",
                      "example: the event's output record could not be "
                      "written");
}

static void test_popular(void **state) {
        (void)state;
        dead_lettered("popular", "{}", "recommendations",
                      "recommendation.avsc",
                      "popular: the event's recommendation record could not "
                      "be written");
}

/* dp_model: the event whose recommendation was refused is dead-lettered
 * and not learned either (learning it again from the dead-letter topic
 * would count it twice). */
static void test_dp_model(void **state) {
        (void)state;
        char with[512];
        snprintf(with, sizeof(with),
                 "{catalog: %s/config/demo/items.csv, dim: 8, k: 3, "
                 "mechanism: none, default_training: true, "
                 "default_tier: personalized}",
                 VEIL_SRCDIR);
        struct run r;
        int rc = run_three(&r, "dp_model", with, "recommendations",
                           "recommendation.avsc");
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.refused, 1);
        assert_int_equal(r.cap.records, 2);
        assert_int_equal(r.cap.dead_letters, 1);
        double learned = -1;
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(r.p, 0); j++) {
                double x;
                if (!strcmp(veil_pipeline_stage_gauge(r.p, 0, j, &x),
                            "events_learned"))
                        learned = x;
        }
        assert_true(learned == 2);
        run_done(&r);
}

/* A stage that ignores the refusal and dead-letters nothing: its batch
 * fails, with the output, the topic and the stage named. */
static void test_ignored(void **state) {
        (void)state;
        struct run r;
        int rc = run_three(&r, FAULT_PLUGINS "/veil_careless.so", "{}",
                           "events", "interaction.avsc");
        assert_true(rc < 0);
        fprintf(stderr, "# %s\n", r.err);
        assert_int_equal(r.cap.refused, 1);
        assert_int_equal(r.cap.dead_letters, 0);
        assert_non_null(strstr(r.err, "stage 1 (careless)"));
        assert_non_null(strstr(r.err, "not committed"));
        assert_non_null(strstr(r.err, "output 'events'"));
        assert_non_null(strstr(r.err, "topic 'out'"));
        assert_null(strstr(r.err, MARK));
        run_done(&r);
}

/* The refused record is e2's own (veil_out_event): the stage dropping e3
 * for its own reasons afterwards does not answer it. */
static void test_ignored_other_dropped(void **state) {
        (void)state;
        struct run r;
        int rc = run_three(&r, FAULT_PLUGINS "/veil_careless.so",
                           "{drop_last: true}", "events", "interaction.avsc");
        assert_true(rc < 0);
        fprintf(stderr, "# %s\n", r.err);
        assert_int_equal(r.cap.refused, 1);
        assert_non_null(strstr(r.err, "stage 1 (careless)"));
        assert_non_null(strstr(r.err, "not committed"));
        run_done(&r);
}

/* A record that does not encode is not written either: ignored, it fails
 * the batch as a refused one does; dead-lettering its event would not. */
static void test_ignored_not_encodable(void **state) {
        (void)state;
        struct run r;
        int rc = run_three(&r, FAULT_PLUGINS "/veil_careless.so",
                           "{garble: true}", "events", "interaction.avsc");
        assert_true(rc < 0);
        fprintf(stderr, "# %s\n", r.err);
        assert_int_equal(r.cap.refused, 0); /* never reached the sink */
        assert_int_equal(r.cap.records, 2);
        assert_non_null(strstr(r.err, "stage 1 (careless)"));
        assert_non_null(strstr(r.err, "output 'events'"));
        assert_non_null(strstr(r.err, "not committed"));
        assert_null(strstr(r.err, MARK));
        run_done(&r);
}

/* Statuses set by hand, without a reason (the fields are the stages'):
 * the host fills in a reason and the stage rather than crashing on them. */
static void test_bare_status(void **state) {
        (void)state;
        struct run r;
        int rc = run_three(&r, FAULT_PLUGINS "/veil_careless.so",
                           "{bare_status: true}", "events", "interaction.avsc");
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.records, 1);
        assert_int_equal(r.cap.dead_letters, 1);
        assert_string_equal(r.cap.dl_error, "unspecified");
        assert_string_equal(r.cap.dl_stage, "careless");
        struct veil_stage_stats st = veil_pipeline_stage_stats(r.p, 0);
        assert_int_equal(st.dropped, 1);
        assert_int_equal(st.dead_letters, 1);
        run_done(&r);
}

/* A stage of records tied to no event (veil_out_emit, as dp_model's and
 * popular's) that answers a refusal by setting the event's status by hand
 * (the fields are the stages'): the batch goes on (it failed, and was read
 * again and again). */
static void test_answered_by_hand(void **state) {
        (void)state;
        struct run r;
        int rc = run_three(&r, FAULT_PLUGINS "/veil_careless.so",
                           "{by_hand: true}", "events", "interaction.avsc");
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.refused, 1);
        assert_int_equal(r.cap.records, 2);
        assert_int_equal(r.cap.dead_letters, 1);
        assert_string_equal(r.cap.dl_error, "careless: its record was refused");
        run_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_passthrough),
                cmocka_unit_test(test_example),
                cmocka_unit_test(test_popular),
                cmocka_unit_test(test_dp_model),
                cmocka_unit_test(test_ignored),
                cmocka_unit_test(test_ignored_other_dropped),
                cmocka_unit_test(test_ignored_not_encodable),
                cmocka_unit_test(test_bare_status),
                cmocka_unit_test(test_answered_by_hand),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

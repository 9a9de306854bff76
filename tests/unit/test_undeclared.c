/*
 * A stage writing to an output its plugin does not declare, through the
 * host: the privacy lint checks an output only at the stages that declare
 * it, so `sneaky → pseudonymize → passthrough` passes the lint while
 * sneaky (tests/unit/plugins/sneaky.c, declaring only `notes`) would put
 * the raw event on `events`. The host refuses every such write: the
 * calls fail, nothing of sneaky's reaches the sink, the line naming the
 * stage and the output is said once (not per event) and holds no value,
 * and the declared writers (sneaky's own `notes`, passthrough's `events`)
 * work as before. An event out of the stream is never written, even to
 * the stage's own output, and the batch arena survives a copy of the
 * batch and sizes that overflow (test_dropped_not_written).
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
#include "keyring.h"
#include "keys.h"
#include "pipeline.h"

#define SNEAKY TEST_PLUGIN_DIR "/test_sneaky.so"
/* In the raw events: no record may carry them. */
#define RAW_UID "raw-user-4711"
#define RAW_IP "203.0.113.77"
#define N_EVENTS 3

struct cap {
        int records;   /* on topic out (`events`) */
        int notes;     /* on topic notes.t */
        int raw;       /* records holding a raw value */
        int access;    /* on topic access.t */
        int incomplete; /* access records marking a section _incomplete */
        int other;     /* anything else */
};

static int sink(void *ctx, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        struct cap *c = ctx;
        if (dl) {
                c->other++;
                return 0;
        }
        if (memmem(value, value_len, RAW_UID, strlen(RAW_UID)) ||
            memmem(value, value_len, RAW_IP, strlen(RAW_IP)) ||
            memmem(key, key_len, RAW_UID, strlen(RAW_UID)))
                c->raw++;
        if (!strcmp(topic, "out"))
                c->records++;
        else if (!strcmp(topic, "notes.t"))
                c->notes++;
        else if (!strcmp(topic, "access.t")) {
                c->access++;
                c->incomplete += memmem(value, value_len, "_incomplete",
                                        11) != NULL;
        }
        else
                c->other++;
        return 0;
}

struct run {
        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        struct cap cap;
        char err[2048];
        char log[16384]; /* stderr while the batch ran */
};

/* sneaky (with `with`) → pseudonymize → passthrough, `events` bound to
 * topic "out", `notes` (sneaky's own) to "notes.t" when `notes` & 1 and
 * `access` to "access.t" when `notes` & 2;
 * N_EVENTS raw events. Returns what batch_run returned; the lint's
 * answer in *lint_rc. */
static int run(struct run *r, const char *with, int notes, int *lint_rc) {
        char yaml[2048], err[2048];
        memset(r, 0, sizeof(*r));
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../schemas/"
                 "interaction.avsc}\n"
                 "outputs:\n"
                 "  events: {topic: out, schema: ../../schemas/"
                 "interaction.avsc}\n"
                 "%s%s"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: %s\n"
                 "    with: %s\n"
                 "  - use: pseudonymize\n"
                 "  - use: passthrough\n"
                 "keys: {ephemeral: true}\n",
                 notes & 1 ? "  notes: {topic: notes.t, schema: ../../schemas/"
                             "interaction.avsc}\n"
                           : "",
                 notes & 2 ? "  access: {topic: access.t, schema: ../../"
                             "schemas/access.avsc}\n"
                           : "",
                 SNEAKY, with);
        if (veil_config_parse(&r->cfg, VEIL_SRCDIR "/tests/unit/t.yaml", yaml,
                              strlen(yaml), err, sizeof(err)) ||
            veil_keys_load(r->cfg, &r->kr, err, sizeof(err)))
                fail_msg("config: %s", err);
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts o = {path, 1, r->kr, 0};
        if (veil_pipeline_new(&r->p, r->cfg, &o, err, sizeof(err)))
                fail_msg("pipeline: %s", err);
        *lint_rc = veil_pipeline_lint(r->p, err, sizeof(err));
        veil_pipeline_set_sink(r->p, (struct veil_sink){sink, &r->cap});
        veil_pipeline_batch_begin(r->p);
        for (int i = 0; i < N_EVENTS; i++) {
                char id[16];
                snprintf(id, sizeof(id), "e%d", i);
                struct veil_event ev;
                memset(&ev, 0, sizeof(ev));
                ev.event_id = id;
                ev.user_id = RAW_UID;
                ev.ts_ms = 1700000000000LL + i;
                ev.type = "view";
                ev.item_id = "item-1";
                ev.value = 1;
                ev.gpc = -1;
                ev.ctx.ip = RAW_IP;
                assert_int_equal(veil_pipeline_batch_add_event(r->p, &ev), 1);
        }
        FILE *tmp = tmpfile();
        assert_non_null(tmp);
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(tmp), 2) >= 0);
        int rc = veil_pipeline_batch_run(r->p, r->err, sizeof(r->err));
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
        veil_keyring_destroy(r->kr);
        veil_config_destroy(r->cfg);
}

static double gauge(const struct run *r, size_t stage, const char *name) {
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(r->p, stage);
             j++) {
                double x;
                if (!strcmp(veil_pipeline_stage_gauge(r->p, stage, j, &x),
                            name))
                        return x;
        }
        fail_msg("no gauge %s", name);
        return 0;
}

static int count(const char *hay, const char *needle) {
        int n = 0;
        for (const char *s = hay; (s = strstr(s, needle)); s++)
                n++;
        return n;
}

/* The reviewer's pipeline: the lint passes it (the lint need not see
 * sneaky's write, the host refuses it), and only passthrough's
 * pseudonymized records come out. */
static void test_undeclared_bound(void **state) {
        (void)state;
        struct run r;
        int lint_rc;
        int rc = run(&r, "{}", 0, &lint_rc);
        assert_int_equal(lint_rc, 0);
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.records, N_EVENTS); /* passthrough's */
        assert_int_equal(r.cap.raw, 0);
        assert_int_equal(r.cap.other, 0);
        assert_int_equal(veil_pipeline_output_count(r.p, "events"), N_EVENTS);
        /* Every call refused. */
        assert_true(gauge(&r, 0, "event_rc") == -VEIL_EINVAL);
        assert_true(gauge(&r, 0, "begin_null") == 1);
        assert_true(gauge(&r, 0, "emit_rc") == -VEIL_EINVAL);
        assert_true(gauge(&r, 0, "bound") == 0);
        /* Its own output, unbound here: a no-op as before. */
        assert_true(gauge(&r, 0, "notes_rc") == 0);
        /* Once per stage and output, for each call; counted every time. */
        assert_int_equal(count(r.log, "stage 1 (sneaky): veil_out_event to "
                                      "output 'events', which is not among "
                                      "the plugin's outputs: refused"),
                         1);
        assert_int_equal(count(r.log, "stage 1 (sneaky): veil_out_"), 1);
        struct veil_stage_stats st = veil_pipeline_stage_stats(r.p, 0);
        assert_int_equal(st.errors, 3 * N_EVENTS);
        assert_int_equal(veil_pipeline_stage_stats(r.p, 2).errors, 0);
        assert_null(strstr(r.log, RAW_UID));
        assert_null(strstr(r.log, RAW_IP));
        run_done(&r);
}

/* A name the pipeline does not bind either: refused too (it was a silent
 * no-op), and the line does not repeat the plugin's text, which could be
 * anything. */
static void test_undeclared_unbound(void **state) {
        (void)state;
        struct run r;
        int lint_rc;
        int rc = run(&r, "{output: " RAW_UID "}", 0, &lint_rc);
        assert_int_equal(lint_rc, 0);
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.records, N_EVENTS);
        assert_int_equal(r.cap.raw, 0);
        assert_true(gauge(&r, 0, "event_rc") == -VEIL_EINVAL);
        assert_true(gauge(&r, 0, "begin_null") == 1);
        assert_true(gauge(&r, 0, "emit_rc") == -VEIL_EINVAL);
        assert_true(gauge(&r, 0, "bound") == 0);
        assert_int_equal(count(r.log, "stage 1 (sneaky): veil_out_event to "
                                      "an output that is not among the "
                                      "plugin's outputs and that the "
                                      "pipeline does not bind: refused"),
                         1);
        assert_null(strstr(r.log, RAW_UID));
        run_done(&r);
}

/* The stage's own output, bound: written as before, while the undeclared
 * one is still refused. */
static void test_declared_still_written(void **state) {
        (void)state;
        struct run r;
        int lint_rc;
        int rc = run(&r, "{}", 1, &lint_rc);
        /* Raw events to notes, by the stage that declares it: the lint
         * sees that one. */
        assert_int_equal(lint_rc, -VEIL_EINVAL);
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.records, N_EVENTS);
        assert_int_equal(r.cap.notes, N_EVENTS);
        assert_int_equal(r.cap.raw, N_EVENTS); /* the notes, all of them */
        assert_int_equal(veil_pipeline_output_count(r.p, "notes"), N_EVENTS);
        assert_true(gauge(&r, 0, "notes_rc") == 0);
        assert_true(gauge(&r, 0, "event_rc") == -VEIL_EINVAL);
        run_done(&r);
}

/* Events the stage dropped, written to its own bound output afterwards:
 * refused (they reached notes.t raw), said once; and the arena through a
 * copy of the batch (pointed into the plugin's stack) and with sizes that
 * overflow (a memset past the chunk; a doubling that never ended). */
static void test_dropped_not_written(void **state) {
        (void)state;
        struct run r;
        int lint_rc;
        int rc = run(&r, "{drop_first: true}", 1, &lint_rc);
        if (rc)
                fail_msg("batch: %s", r.err);
        assert_int_equal(r.cap.notes, 0);
        assert_int_equal(r.cap.records, 0);
        assert_int_equal(r.cap.raw, 0);
        assert_true(gauge(&r, 0, "dropped_rc") == -VEIL_EINVAL);
        assert_int_equal(count(r.log, "veil_out_event of an event taken out "
                                      "of the stream"),
                         1);
        assert_true(gauge(&r, 0, "copy_ok") == 1);
        assert_true(gauge(&r, 0, "huge_null") == 1);
        assert_null(strstr(r.log, RAW_UID));
        run_done(&r);
}

/* A stage whose export fails: the access record still goes out, with the
 * stage's section marked _incomplete (it passed for complete), the
 * failure counted and logged. */
static void test_export_failure_marked(void **state) {
        (void)state;
        struct run r;
        int lint_rc;
        int rc = run(&r, "{export_fails: true}", 2, &lint_rc);
        if (rc)
                fail_msg("batch: %s", r.err);
        uint64_t errors = veil_pipeline_stage_stats(r.p, 0).errors;
        veil_pipeline_batch_begin(r.p); /* answers the access request */
        assert_int_equal(r.cap.access, 1);
        assert_int_equal(r.cap.incomplete, 1);
        assert_int_equal(r.cap.raw, 0);
        assert_int_equal(veil_pipeline_stage_stats(r.p, 0).errors,
                         errors + 1);
        run_done(&r);
}

/* The host's functions called from a thread of the plugin's own: each
 * refused (it would race the loop on the output's record, the arena, the
 * erase queue; the keyring a reload replaces), said once for the stage and
 * once for the batch; nothing written, queued or changed; logging works. */
/* The log line holding `what`, in a static copy ("" when none). */
static const char *line_of(const char *log, const char *what) {
        static char line[4096];
        const char *at = strstr(log, what);
        line[0] = '\0';
        if (!at)
                return line;
        const char *b = at, *e = strchr(at, '\n');
        while (b > log && b[-1] != '\n')
                b--;
        size_t n = (size_t)((e ? e : at + strlen(at)) - b);
        if (n >= sizeof(line))
                n = sizeof(line) - 1;
        memcpy(line, b, n);
        line[n] = '\0';
        return line;
}

static void test_off_thread_refused(void **state) {
        (void)state;
        struct run r;
        int lint_rc;
        int rc = run(&r, "{off_thread: true}", 1, &lint_rc);
        if (rc)
                fail_msg("batch: %s", r.err);
        static const char *const refused[] = {
                "off_metric_rc", "off_emit_rc", "off_erase_rc",
                "off_export_rc", "off_pseudonym_rc"};
        for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++)
                if (gauge(&r, 0, refused[i]) != -VEIL_ESTATE)
                        fail_msg("%s: %g", refused[i],
                                 gauge(&r, 0, refused[i]));
        assert_true(gauge(&r, 0, "off_begin_null") == 1);
        assert_true(gauge(&r, 0, "off_alloc_null") == 1);
        assert_true(gauge(&r, 0, "off_drop_ignored") == 1);
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(r.p, 0); j++) {
                double x;
                assert_string_not_equal(
                        veil_pipeline_stage_gauge(r.p, 0, j, &x),
                        "from_thread");
        }
        assert_int_equal(count(r.log, "called outside the stage's "
                                      "callbacks"),
                         2);
        assert_int_equal(count(r.log, "veil_metric_set called outside"), 1);
        assert_int_equal(count(r.log, "veil_batch_alloc called outside"), 1);
        /* The stage's line names it by its `use:`; the batch's names none
         * (the loop's current stage is not the calling thread's to read,
         * and need not be the caller). */
        char stage_field[600];
        snprintf(stage_field, sizeof(stage_field), "\"stage\":\"%s\"",
                 SNEAKY);
        assert_non_null(strstr(line_of(r.log, "veil_metric_set called"),
                               stage_field));
        assert_null(strstr(line_of(r.log, "veil_batch_alloc called"),
                           "\"stage\""));
        assert_int_equal(count(r.log, "a line from the plugin's thread"), 1);
        /* Nothing written from the thread; every event through the rest
         * of the pipeline (the drop was refused too). */
        assert_int_equal(r.cap.notes, 0);
        assert_int_equal(r.cap.records, N_EVENTS); /* passthrough's */
        assert_int_equal(r.cap.raw, 0);
        run_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_undeclared_bound),
                cmocka_unit_test(test_undeclared_unbound),
                cmocka_unit_test(test_declared_still_written),
                cmocka_unit_test(test_dropped_not_written),
                cmocka_unit_test(test_export_failure_marked),
                cmocka_unit_test(test_off_thread_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

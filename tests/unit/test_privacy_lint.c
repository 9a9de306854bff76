/*
 * test_privacy_lint.c — veil_pipeline_lint's privacy check on pipelines
 * built as `veil lint` builds them (plugins loaded, never started): leaks
 * of identifiers and quasi-identifiers, the order of stages, reasons, keys,
 * and the shape of every message (position, field, output, fix).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "keyring.h"
#include "keys.h"
#include "pipeline.h"

/* The test plugin, by path: test plugins are not named veil_*.so. */
#define DECL TEST_PLUGIN_DIR "/test_lint_decl.so"
#define GATE TEST_PLUGIN_DIR "/test_gate.so"

struct fx {
        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        char err[8192];
};

static void close_all(struct fx *f) {
        veil_pipeline_destroy(f->p);
        veil_keyring_destroy(f->kr);
        veil_config_destroy(f->cfg);
        memset(f, 0, sizeof(*f));
}

/* The schema the next lint binds to `events` (relative to the YAML, or
 * absolute). */
static const char *events_schema = "../../schemas/interaction.avsc";

/* The plugins: section is `plugins` (YAML lines, 2-space indented items).
 * Line 7 is the first plugin item. */
static int lint_size(struct fx *f, const char *plugins, int keys,
                     size_t err_size) {
        char yaml[4096];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../schemas/interaction.avsc}\n"
                 "outputs:\n"
                 "  events: {topic: out, schema: %s}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "%s"
                 "%s",
                 events_schema, plugins,
                 keys ? "keys: {ephemeral: true}\n" : "");
        assert_int_equal(veil_config_parse(&f->cfg,
                                           VEIL_SRCDIR "/tests/pipelines/t.yaml",
                                           yaml, strlen(yaml), f->err,
                                           sizeof(f->err)),
                         0);
        assert_int_equal(veil_keys_load(f->cfg, &f->kr, f->err,
                                        sizeof(f->err)),
                         0);
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts o = {path, 1, f->kr, 1};
        int rc = veil_pipeline_new(&f->p, f->cfg, &o, f->err, sizeof(f->err));
        if (rc)
                fail_msg("%s", f->err);
        f->err[0] = '\0';
        return veil_pipeline_lint(f->p, f->err, err_size);
}

static int lint(struct fx *f, const char *plugins, int keys) {
        return lint_size(f, plugins, keys, sizeof(f->err));
}

static int count_lines(const char *s) {
        int n = *s ? 1 : 0;
        for (; *s; s++)
                n += *s == '\n';
        return n;
}

static void has(const char *msg, const char *needle) {
        if (!strstr(msg, needle))
                fail_msg("want '%s' in:\n%s", needle, msg);
}

static void test_raw_events_leak(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f, "  - use: passthrough\n", 1), -VEIL_EINVAL);
        /* One line per marked field of the interaction schema. */
        assert_int_equal(count_lines(f->err), 11);
        has(f->err,
            VEIL_SRCDIR "/tests/pipelines/t.yaml:7:5: field 'user_id' (pii: "
            "identifier) can reach output 'events' (topic out) in the clear: "
            "stage 1 'passthrough' emits it and no earlier stage treats it; "
            "add a pseudonymize stage before it with user_id: pseudonym (or "
            "drop)\n");
        has(f->err,
            "t.yaml:7:5: field 'context.ip' (pii: quasi) can reach output "
            "'events' (topic out) in the clear: stage 1 'passthrough' emits "
            "it and no earlier stage treats it; add a pseudonymize stage "
            "before it with context.ip: truncate_ip (or drop), or keep it "
            "with a reason ('keep: WHY')");
        has(f->err, "field 'context.session_id' (pii: quasi)");
        has(f->err, "field 'context.lat' (pii: quasi)");
        close_all(f);
}

static void test_pseudonymized_passes(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "  - use: passthrough\n",
                              1),
                         0);
        assert_string_equal(f->err, "");
        close_all(f);
        /* Recommendations carry no marked field: no stage needed. */
        char yaml[] = "kafka: {bootstrap: embedded, group: t}\n"
                      "input: {topic: in, schema: "
                      "../../schemas/interaction.avsc}\n"
                      "outputs:\n"
                      "  recommendations: {topic: r, schema: "
                      "../../schemas/recommendation.avsc}\n"
                      "  dead_letter: {topic: dlq}\n"
                      "plugins:\n  - use: popular\n";
        assert_int_equal(veil_config_parse(&f->cfg,
                                           VEIL_SRCDIR "/tests/pipelines/t.yaml",
                                           yaml, strlen(yaml), f->err,
                                           sizeof(f->err)),
                         0);
        char *path[] = {TEST_PLUGIN_DIR};
        struct veil_pipeline_opts o = {path, 1, NULL, 1};
        assert_int_equal(veil_pipeline_new(&f->p, f->cfg, &o, f->err,
                                           sizeof(f->err)),
                         0);
        assert_int_equal(veil_pipeline_lint(f->p, f->err, sizeof(f->err)), 0);
        close_all(f);
}

static void test_ip_kept_without_reason(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "    with: {context.ip: keep}\n"
                              "  - use: passthrough\n",
                              1),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 1);
        /* Points at the value to fix, not at the stage. */
        has(f->err,
            "t.yaml:8:24: field 'context.ip' (pii: quasi) can reach output "
            "'events' (topic out) in the clear: stage 1 'pseudonymize' keeps "
            "it without a reason; write context.ip: 'keep: WHY IT IS "
            "NEEDED', or truncate_ip (or drop) instead");
        close_all(f);
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "    with: {context.ip: 'keep: abuse "
                              "investigations need the address'}\n"
                              "  - use: passthrough\n",
                              1),
                         0);
        close_all(f);
}

/* A pseudonym keeps a quasi-identifier as unique as it was and, where it
 * has few values, is mapped back by frequency: it needs a reason, as keep
 * does. An identifier's pseudonym needs none. */
static void test_quasi_pseudonym_needs_reason(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "    with: {context.country: pseudonym, "
                              "context.user_agent: pseudonym}\n"
                              "  - use: passthrough\n",
                              1),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 2);
        has(f->err,
            "t.yaml:8:29: field 'context.country' (pii: quasi) can reach "
            "output 'events' (topic out) in the clear: stage 1 "
            "'pseudonymize' pseudonymizes it without a reason, and a "
            "pseudonym keeps a quasi-identifier as unique as it was and, "
            "where it has few values, can be mapped back; write "
            "context.country: 'pseudonym: WHY IT IS NEEDED', or drop "
            "instead");
        has(f->err, "field 'context.user_agent' (pii: quasi) can reach "
                    "output 'events' (topic out) in the clear: stage 1 "
                    "'pseudonymize' pseudonymizes it without a reason");
        has(f->err, "or reduce_ua (or drop) instead");
        close_all(f);
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "    with: {context.country: 'pseudonym: "
                              "prices differ per country'}\n"
                              "  - use: passthrough\n",
                              1),
                         0);
        close_all(f);
        /* The same rule for any plugin's declaration (every other marked
         * field dropped one by one: "context: drop" would cover all but tc_string). */
#define OTHERS                                                                \
        "context.device: drop, context.ip: drop, context.user_agent: drop, "  \
        "context.lat: drop, context.lon: drop, context.geohash: drop, "       \
        "context.country: drop, context.session_id: drop, tc_string: drop"
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: pseudonym, " OTHERS
                              ", context.timezone: pseudonym}}\n",
                              1),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 1);
        has(f->err, "field 'context.timezone' (pii: quasi)");
        has(f->err, "'lint_decl' pseudonymizes it without a reason");
        close_all(f);
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: pseudonym, " OTHERS
                              ", context.timezone: 'pseudonym:a reason'}}\n",
                              1),
                         0);
#undef OTHERS
        close_all(f);
}

static void test_wrong_order(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f,
                              "  - use: passthrough\n"
                              "  - use: pseudonymize\n",
                              1),
                         -VEIL_EINVAL);
        has(f->err,
            "t.yaml:7:5: field 'user_id' (pii: identifier) can reach output "
            "'events' (topic out) in the clear: stage 1 'passthrough' emits "
            "it and no earlier stage treats it; stage 2 'pseudonymize' "
            "pseudonymizes it but runs after: move that stage before stage "
            "1");
        has(f->err, "field 'context.ip' (pii: quasi) can reach output "
                    "'events' (topic out) in the clear: stage 1 "
                    "'passthrough' emits it and no earlier stage treats it; "
                    "stage 2 'pseudonymize' generalizes it but runs after");
        close_all(f);
}

static void test_no_keys(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "  - use: passthrough\n",
                              0),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 1);
        has(f->err, "t.yaml:7:5: stage 1 'pseudonymize' pseudonymizes "
                    "'user_id' but the pipeline has no keys: section; add "
                    "keys:");
        close_all(f);
}

static void test_invalid_policy(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "    with:\n"
                              "      context.lat: 'geohash:9'\n"
                              "  - use: passthrough\n",
                              1),
                         -VEIL_EINVAL);
        /* That line only: no "add a pseudonymize stage" for that field. */
        assert_int_equal(count_lines(f->err), 1);
        has(f->err, "t.yaml:9:20: stage 1 'pseudonymize': field "
                    "'context.lat': geohash:9 keeps cells of about 4.8 m × "
                    "4.8 m, under about 500 m: precise geolocation in TCF "
                    "terms; set require_special_feature_1: true");
        close_all(f);
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "    with:\n"
                              "      context.lat: 'geohash:9'\n"
                              "      require_special_feature_1: true\n"
                              "  - use: passthrough\n",
                              1),
                         0);
        close_all(f);
}

static void test_declarations(void **state) {
        struct fx *f = *state;
        /* A later stage keeping what an earlier one treated is fine... */
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: 'keep:we need "
                              "it'}}\n",
                              1),
                         0);
        close_all(f);
        /* ...but an identifier kept with a reason leaks. */
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: 'keep:we need it', "
                              "context: drop, tc_string: drop}}\n",
                              0),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 1); /* context covers nine */
        has(f->err, "t.yaml:7:5: field 'user_id' (pii: identifier) can reach "
                    "output 'events' (topic out) in the clear: stage 1 "
                    "'lint_decl' keeps it, and an identifier must be "
                    "pseudonymized or dropped (a reason is not enough); "
                    "write user_id: pseudonym (or drop)");
        close_all(f);
        /* Generalizing an identifier is not enough either; quasi is. */
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: generalize, "
                              "context: generalize, tc_string: drop}}\n",
                              0),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 1);
        has(f->err, "'lint_decl' generalizes it, and an identifier must be");
        close_all(f);
        /* "context" covers context.ip, not a field named context_x. */
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: drop, contex: "
                              "drop}}\n",
                              0),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 10);
        close_all(f);
        /* A declaration without a known treatment fails with the field. */
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: bogus, context: "
                              "drop, tc_string: drop}}\n",
                              0),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 1);
        has(f->err, "stage 1 'lint_decl': field 'user_id': declared with an "
                    "unknown treatment (a plugin bug)");
        close_all(f);
}

/* The interaction schema with every `from` mark (NULL: any) made `to`
 * ("" drops the mark), in a file of its own; its path in `path`. */
static void remarked_schema(char *path, size_t size, const char *from,
                            const char *to) {
        FILE *in = fopen(VEIL_SRCDIR "/schemas/interaction.avsc", "r");
        assert_non_null(in);
        snprintf(path, size, "/tmp/veil-lint-XXXXXX.avsc");
        int fd = mkstemps(path, 5);
        assert_true(fd >= 0);
        FILE *out = fdopen(fd, "w");
        assert_non_null(out);
        char line[1024], want[64];
        snprintf(want, sizeof(want), "\"pii\": \"%s", from ? from : "");
        int n = 0;
        while (fgets(line, sizeof(line), in)) {
                char *m = strstr(line, want);
                if (!m) {
                        fputs(line, out);
                        continue;
                }
                n++;
                if (*to)
                        fprintf(out, "%.*s\"pii\": \"%s\",\n",
                                (int)(m - line), line, to);
        }
        assert_true(n > 0);
        fclose(in);
        fclose(out);
}

/* The event encoder fills an output's fields from the event whatever the
 * output schema marks: the input schema's marks hold there too, the
 * stricter where both mark a field. */
static char remarked[64]; /* the file, removed by marks_teardown */

static int marks_teardown(void **state) {
        close_all(*state);
        if (remarked[0])
                unlink(remarked);
        remarked[0] = '\0';
        events_schema = "../../schemas/interaction.avsc";
        return 0;
}

static void test_output_marks_input(void **state) {
        struct fx *f = *state;
        char *path = remarked;
        /* No marks at all: every field the input marks, as before. */
        remarked_schema(path, sizeof(remarked), NULL, "");
        events_schema = path;
        assert_int_equal(lint(f, "  - use: passthrough\n", 1), -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 11);
        has(f->err, "t.yaml:7:5: field 'user_id' (pii: identifier, from the "
                    "input schema: the output copies it from the event) can "
                    "reach output 'events' (topic out) in the clear: stage 1 "
                    "'passthrough' emits it and no earlier stage treats it; "
                    "add a pseudonymize stage before it with user_id: "
                    "pseudonym (or drop)");
        has(f->err, "field 'context.ip' (pii: quasi, from the input schema: "
                    "the output copies it from the event) can reach");
        close_all(f);
        unlink(path);
        path[0] = '\0';

        /* user_id marked only "quasi" in the output: the input's
         * "identifier" holds, so a reason does not let it out. */
        remarked_schema(path, sizeof(remarked), "identifier", "quasi");
        events_schema = path;
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n"
                              "    with: {decl: {user_id: 'keep:we need "
                              "it', context: drop, tc_string: drop}}\n",
                              0),
                         -VEIL_EINVAL);
        assert_int_equal(count_lines(f->err), 1);
        has(f->err, "t.yaml:7:5: field 'user_id' (pii: identifier, from the "
                    "input schema: the output copies it from the event) can "
                    "reach output 'events' (topic out) in the clear: stage 1 "
                    "'lint_decl' keeps it, and an identifier must be "
                    "pseudonymized or dropped");
        close_all(f);
        /* ...and treated as an identifier, it passes. */
        assert_int_equal(lint(f,
                              "  - use: pseudonymize\n"
                              "  - use: passthrough\n",
                              1),
                         0);
        close_all(f);
        unlink(path);
        path[0] = '\0';

        /* A schema that cannot stand for an event takes nothing from one
         * (veil_out_event refuses every event): only its own marks. */
        events_schema = "../../schemas/recommendation.avsc";
        assert_int_equal(lint(f, "  - use: passthrough\n", 1), 0);
}

static void test_small_buffer(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint_size(f, "  - use: passthrough\n", 1, 700),
                         -VEIL_EINVAL);
        assert_true(strlen(f->err) < 700);
        has(f->err, "field 'user_id'");
        has(f->err, "more privacy problems; fix these and run veil lint "
                    "again)");
        close_all(f);
}

/* The stage that decides consent is the one whose plugin says so, by
 * any name: a stage with an output before it is refused, after it not. */
#define ALL_DROPPED                                                           \
        "    with: {decl: {user_id: drop, context.device: drop, context.ip: " \
        "drop, context.user_agent: drop, context.lat: drop, context.lon: "    \
        "drop, context.geohash: drop, context.country: drop, "                \
        "context.session_id: drop, context.timezone: drop, tc_string: "       \
        "drop}}\n"
static void test_consent_stage_by_flag(void **state) {
        struct fx *f = *state;
        assert_int_equal(lint(f,
                              "  - use: " DECL "\n" ALL_DROPPED
                              "  - use: " GATE "\n",
                              1),
                         -VEIL_EINVAL);
        has(f->err, "t.yaml:7:5: stage 1 (lint_decl) comes before the "
                    "consent stage (line 9): it writes outputs");
        has(f->err, "move `- use: gate` above it");
        close_all(f);
        assert_int_equal(lint(f,
                              "  - use: " GATE "\n"
                              "  - use: " DECL "\n" ALL_DROPPED,
                              1),
                         0);
        close_all(f);
}
#undef ALL_DROPPED

static int setup(void **state) {
        *state = calloc(1, sizeof(struct fx));
        return 0;
}

static int teardown(void **state) {
        close_all(*state);
        free(*state);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_raw_events_leak),
                cmocka_unit_test(test_pseudonymized_passes),
                cmocka_unit_test(test_ip_kept_without_reason),
                cmocka_unit_test(test_quasi_pseudonym_needs_reason),
                cmocka_unit_test(test_wrong_order),
                cmocka_unit_test(test_no_keys),
                cmocka_unit_test(test_invalid_policy),
                cmocka_unit_test(test_declarations),
                cmocka_unit_test_teardown(test_output_marks_input,
                                          marks_teardown),
                cmocka_unit_test(test_small_buffer),
                cmocka_unit_test(test_consent_stage_by_flag),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}

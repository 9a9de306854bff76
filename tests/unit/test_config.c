/*
 * test_config.c — the pipeline YAML (core/config.c) and plugin parameters
 * (core/params.c): valid pipelines, every kind of error at its exact
 * file:line:col, ${VAR} substitution, and the veil_params_* accessors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

#ifndef VEIL_TEST_DATA_DIR
#define VEIL_TEST_DATA_DIR NULL
#endif

/* tests/unit/data/config, from the build flag or next to this source. */
static char *data_path(const char *file) {
        const char *dir = VEIL_TEST_DATA_DIR;
        char *out = malloc(4096);
        assert_non_null(out);
        if (dir) {
                snprintf(out, 4096, "%s/%s", dir, file);
        } else {
                const char *src = __FILE__, *slash = strrchr(src, '/');
                int dl = slash ? (int)(slash - src) : 1;
                snprintf(out, 4096, "%.*s/data/config/%s", dl,
                         slash ? src : ".", file);
        }
        return out;
}

/* The environment seen by ${VAR} in these tests (no process env). */
static const char *test_env(const char *name, void *ud) {
        static const char *const vars[][2] = {{"HOST", "broker:9092"},
                                              {"EMPTY", ""},
                                              {"PORT", "9092"},
                                              {"GROUP", "team-a"},
                                              {"K", "25"}};
        size_t i;
        (void)ud;
        for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
                if (!strcmp(vars[i][0], name))
                        return vars[i][1];
        return NULL;
}

static struct veil_config *parse_ok(const char *text) {
        struct veil_config *cfg = NULL;
        char err[1024] = "";
        int rc = veil_config_parse_env(&cfg, "pipeline.yaml", text,
                                       strlen(text), test_env, NULL, err,
                                       sizeof(err));
        if (rc)
                fail_msg("rc %d: %s\n--- for ---\n%s", rc, err, text);
        assert_non_null(cfg);
        return cfg;
}

static void expect_err_len(const char *text, size_t len, const char *want) {
        struct veil_config *cfg = (struct veil_config *)&cfg;
        char err[1024] = "";
        int rc = veil_config_parse_env(&cfg, "pipeline.yaml", text, len,
                                       test_env, NULL, err, sizeof(err));
        if (rc != -VEIL_EINVAL || strncmp(err, want, strlen(want)))
                fail_msg("rc %d\n got: %s\nwant: %s\n--- for ---\n%.300s", rc,
                         err, want, text);
        assert_null(cfg);
}

static void expect_err(const char *text, const char *want) {
        expect_err_len(text, strlen(text), want);
}

#define K "kafka: {bootstrap: b, group: g}\n"
#define I "input: {topic: t, schema: s.avsc}\n"
#define O "outputs: {dead_letter: {topic: d}}\n"
#define P "plugins: [{use: p}]\n"

/* ------------------------------------------------------------------ */
/* Valid pipelines                                                    */
/* ------------------------------------------------------------------ */

static void test_full_file(void **state) {
        char *path = data_path("full.yaml"), *dir, *p;
        struct veil_config *cfg = NULL;
        const struct veil_binding *b;
        char err[1024] = "", want[4200];
        (void)state;

        unsetenv("VEIL_TEST_BOOTSTRAP");
        assert_int_equal(veil_config_load(&cfg, path, err, sizeof(err)), 0);
        assert_string_equal(cfg->file, path);
        dir = strndup(path, (size_t)(strrchr(path, '/') - path));
        assert_string_equal(cfg->dir, dir);

        assert_string_equal(cfg->kafka.bootstrap, "embedded");
        assert_string_equal(cfg->kafka.group, "veil-demo");
        assert_int_equal(cfg->kafka.guarantee, VEIL_EXACTLY_ONCE);
        assert_int_equal(cfg->kafka.n_settings, 2);
        assert_string_equal(cfg->kafka.settings[0].key, "security.protocol");
        assert_string_equal(cfg->kafka.settings[0].value, "SASL_SSL");
        assert_int_equal(cfg->kafka.settings[0].line, 7);
        assert_int_equal(cfg->kafka.settings[0].col, 5);
        assert_string_equal(cfg->kafka.settings[1].key, "sasl.mechanism");

        assert_null(cfg->input.name);
        assert_string_equal(cfg->input.topic, "interactions");
        assert_string_equal(cfg->input.schema,
                            "../../schemas/interaction.avsc");
        assert_int_equal(cfg->input.framing, VEIL_FRAMING_CONFLUENT);
        assert_int_equal(cfg->input.n_writer_schemas, 2);
        assert_string_equal(cfg->input.writer_schemas[0].key, "1");
        assert_string_equal(cfg->input.writer_schemas[0].value,
                            "../../schemas/interaction.avsc");
        assert_string_equal(cfg->input.writer_schemas[1].key, "2"); /* 0x2 */
        assert_string_equal(cfg->input.writer_schemas[1].value,
                            "/abs/interaction-v2.avsc");
        assert_int_equal(cfg->input.partitions, 3);
        assert_int_equal(cfg->input.line, 10);
        assert_int_equal(cfg->input.col, 3);
        assert_int_equal(cfg->max_events, 512);
        assert_int_equal(cfg->max_wait_ms, 20);

        assert_int_equal(cfg->n_side_inputs, 1);
        assert_string_equal(cfg->side_inputs[0].name, "consent");
        assert_string_equal(cfg->side_inputs[0].topic, "consent");
        assert_string_equal(cfg->side_inputs[0].schema,
                            "../../schemas/consent.avsc");
        assert_int_equal(cfg->side_inputs[0].line, 17);
        assert_int_equal(cfg->side_inputs[0].col, 3);

        assert_int_equal(cfg->n_outputs, 3);
        b = veil_config_output(cfg, "recommendations");
        assert_non_null(b);
        assert_string_equal(b->topic, "recommendations");
        assert_int_equal(b->framing, VEIL_FRAMING_RAW);
        assert_int_equal(b->schema_id, 3);
        assert_int_equal(b->partitions, 1);
        b = veil_config_output(cfg, "model_updates");
        assert_non_null(b);
        assert_string_equal(b->topic, "model-updates");
        assert_int_equal(b->framing, VEIL_FRAMING_CONFLUENT);
        assert_int_equal(b->schema_id, 7);
        b = veil_config_output(cfg, "dead_letter");
        assert_non_null(b);
        assert_string_equal(b->topic, "interactions.dlq");
        assert_null(b->schema);
        assert_int_equal(b->schema_id, -1);
        assert_null(veil_config_output(cfg, "audit"));

        assert_int_equal(cfg->n_stages, 3);
        assert_string_equal(cfg->stages[0].use, "consent");
        assert_null(cfg->stages[0].with);
        assert_int_equal(cfg->stages[0].line, 27);
        assert_int_equal(cfg->stages[0].col, 5);
        assert_string_equal(cfg->stages[1].use, "popular");
        assert_non_null(cfg->stages[1].with);
        assert_string_equal(veil_config_get(cfg->stages[1].with, "k")->scalar,
                            "10");
        assert_string_equal(cfg->stages[2].use, "./plugins/veil_custom.so");
        assert_int_equal(cfg->stages[2].with->kind, VEIL_NODE_MAP);

        assert_int_equal(cfg->n_plugin_path, 2);
        snprintf(want, sizeof(want), "%s/../../build/plugins", dir);
        assert_string_equal(cfg->plugin_path[0], want);
        assert_string_equal(cfg->plugin_path[1], "/usr/lib/veil");

        assert_non_null(cfg->http);
        assert_string_equal(veil_config_get(cfg->http, "listen")->scalar,
                            "0.0.0.0:8080");
        assert_true(veil_config_get(cfg->http, "listen")->quoted);
        assert_non_null(cfg->log);
        assert_non_null(cfg->keys);
        assert_non_null(cfg->demo);
        assert_null(veil_config_get(cfg->log, "nope"));

        p = veil_config_path(cfg, cfg->input.schema);
        snprintf(want, sizeof(want), "%s/../../schemas/interaction.avsc", dir);
        assert_string_equal(p, want);
        free(p);
        p = veil_config_path(cfg, cfg->input.writer_schemas[1].value);
        assert_string_equal(p, "/abs/interaction-v2.avsc");
        free(p);

        veil_config_destroy(cfg);
        free(dir);
        free(path);
}

static void test_minimal_defaults(void **state) {
        char *path = data_path("minimal.yaml");
        struct veil_config *cfg = NULL;
        char err[1024] = "";
        (void)state;

        assert_int_equal(veil_config_load(&cfg, path, err, sizeof(err)), 0);
        assert_string_equal(cfg->kafka.bootstrap, "embedded");
        assert_int_equal(cfg->kafka.guarantee, VEIL_AT_LEAST_ONCE);
        assert_int_equal(cfg->kafka.n_settings, 0);
        assert_int_equal(cfg->input.framing, VEIL_FRAMING_RAW);
        assert_int_equal(cfg->input.schema_id, -1);
        assert_int_equal(cfg->input.partitions, 1);
        assert_int_equal(cfg->input.n_writer_schemas, 0);
        assert_int_equal(cfg->max_events, 256);
        assert_int_equal(cfg->max_wait_ms, 50);
        assert_int_equal(cfg->n_side_inputs, 0);
        assert_int_equal(cfg->n_outputs, 1);
        assert_int_equal(cfg->n_stages, 1);
        assert_string_equal(cfg->stages[0].use, "passthrough");
        assert_int_equal(cfg->n_plugin_path, 0);
        assert_null(cfg->http);
        assert_null(cfg->log);
        assert_null(cfg->keys);
        assert_null(cfg->demo);
        assert_int_equal(cfg->line, 1);
        assert_int_equal(cfg->col, 1);
        veil_config_destroy(cfg);
        free(path);
}

static void test_raw_writer_schema_and_nulls(void **state) {
        struct veil_config *cfg;
        (void)state;

        cfg = parse_ok(K "input:\n"
                         "  topic: t\n"
                         "  schema: s.avsc\n"
                         "  writer_schema: old.avsc\n"
                         "  batch: ~\n" O P "side_inputs:\n"
                         "plugin_path: null\n"
                         "http:\n");
        assert_int_equal(cfg->input.n_writer_schemas, 1);
        assert_string_equal(cfg->input.writer_schemas[0].key, "");
        assert_string_equal(cfg->input.writer_schemas[0].value, "old.avsc");
        assert_int_equal(cfg->input.writer_schemas[0].line, 5);
        assert_int_equal(cfg->input.writer_schemas[0].col, 18);
        assert_int_equal(cfg->max_events, 256);
        assert_int_equal(cfg->n_side_inputs, 0);
        assert_int_equal(cfg->n_plugin_path, 0);
        assert_null(cfg->http);
        veil_config_destroy(cfg);
}

static void test_node_positions(void **state) {
        struct veil_config *cfg;
        const struct veil_node *k, *g;
        (void)state;

        cfg = parse_ok("# comment\n"
                       "kafka:\n"
                       "  bootstrap: \"b\"\n"
                       "  group:   g\n" I O P);
        assert_int_equal(cfg->root->kind, VEIL_NODE_MAP);
        assert_int_equal(cfg->root->line, 2);
        assert_int_equal(cfg->root->col, 1);
        assert_string_equal(cfg->root->keys[0]->scalar, "kafka");
        k = cfg->root->items[0];
        assert_int_equal(k->line, 3);
        assert_int_equal(k->col, 3);
        assert_int_equal(k->items[0]->line, 3);
        assert_int_equal(k->items[0]->col, 14);
        assert_true(k->items[0]->quoted);
        g = veil_config_get(k, "group");
        assert_int_equal(g->line, 4);
        assert_int_equal(g->col, 12);
        assert_false(g->quoted);
        veil_config_destroy(cfg);
}

static void test_utf8_bom(void **state) {
        struct veil_config *cfg;
        (void)state;

        cfg = parse_ok("\xef\xbb\xbf" K I O P "log: {name: caf\xc3\xa9}\n");
        assert_int_equal(cfg->root->line, 1);
        assert_int_equal(cfg->root->col, 1);
        assert_string_equal(veil_config_get(cfg->log, "name")->scalar,
                            "caf\xc3\xa9");
        veil_config_destroy(cfg);
        /* Columns count characters, not bytes. */
        expect_err(K I O P "log: {\xc3\xa9t\xc3\xa9: 1, x: [}\n",
                   "pipeline.yaml:5:19: YAML syntax error: did not find "
                   "expected node content");
}

static void test_config_path(void **state) {
        struct veil_config *cfg;
        char err[256];
        char *p;
        (void)state;

        cfg = parse_ok(K I O P);
        assert_string_equal(cfg->dir, ".");
        p = veil_config_path(cfg, "a/b.avsc");
        assert_string_equal(p, "a/b.avsc");
        free(p);
        veil_config_destroy(cfg);

        assert_int_equal(veil_config_parse(&cfg, "/etc/veil/p.yaml",
                                           K I O P, strlen(K I O P), err,
                                           sizeof(err)),
                         0);
        assert_string_equal(cfg->dir, "/etc/veil");
        p = veil_config_path(cfg, "../s/x.avsc");
        assert_string_equal(p, "/etc/veil/../s/x.avsc");
        free(p);
        p = veil_config_path(cfg, "/abs.avsc");
        assert_string_equal(p, "/abs.avsc");
        free(p);
        assert_null(veil_config_path(cfg, NULL));
        veil_config_destroy(cfg);

        assert_int_equal(veil_config_parse(&cfg, "/p.yaml", K I O P,
                                           strlen(K I O P), err, sizeof(err)),
                         0);
        p = veil_config_path(cfg, "x.avsc");
        assert_string_equal(p, "/x.avsc");
        free(p);
        veil_config_destroy(cfg);
}

/* ------------------------------------------------------------------ */
/* Errors, each at its exact position                                 */
/* ------------------------------------------------------------------ */

static void test_err_unknown_keys(void **state) {
        (void)state;
        expect_err("kafak: {}\n" K I O P,
                   "pipeline.yaml:1:1: unknown key 'kafak' in the top level; "
                   "allowed keys: kafka, input, side_inputs, outputs, "
                   "plugins, plugin_path, http, log, keys, demo");
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  grup: x\n" I O P,
                   "pipeline.yaml:4:3: unknown key 'grup' in kafka; allowed "
                   "keys: bootstrap, group, guarantee, settings");
        expect_err(K "input:\n  topic: t\n  schema: s\n  topik: t\n" O P,
                   "pipeline.yaml:5:3: unknown key 'topik' in input; allowed "
                   "keys: topic, schema, framing, writer_schemas, "
                   "writer_schema, partitions, batch");
        expect_err(K "input:\n  topic: t\n  schema: s\n"
                     "  batch: {max_event: 3}\n" O P,
                   "pipeline.yaml:5:11: unknown key 'max_event' in "
                   "input.batch; allowed keys: max_events, max_wait_ms");
        expect_err(K I "side_inputs:\n"
                       "  consent: {topic: c, schema: c.avsc, group: x}\n" O
                           P,
                   "pipeline.yaml:4:39: unknown key 'group' in "
                   "side_inputs.consent; allowed keys: topic, schema, "
                   "framing, writer_schemas, writer_schema, partitions");
        expect_err(K I "outputs:\n  dead_letter: {topic: d, shema: x}\n" P,
                   "pipeline.yaml:4:27: unknown key 'shema' in "
                   "outputs.dead_letter; allowed keys: topic, schema, "
                   "framing, schema_id, partitions");
        expect_err(K I O "plugins:\n  - use: p\n    whith: {}\n",
                   "pipeline.yaml:6:5: unknown key 'whith' in plugins[0]; "
                   "allowed keys: use, with");
}

static void test_err_wrong_types(void **state) {
        (void)state;
        expect_err("kafka:\n  bootstrap: b\n  group: [a, b]\n" I O P,
                   "pipeline.yaml:3:10: kafka.group must be a single value, "
                   "not a sequence; write one value after the colon");
        expect_err("kafka: embedded\n" I O P,
                   "pipeline.yaml:1:8: kafka must be a mapping, not a scalar; "
                   "write key: value pairs");
        expect_err("kafka:\n" I O P,
                   "pipeline.yaml:1:7: kafka must be a mapping, not an empty "
                   "value;");
        expect_err(K I O "plugins: {use: p}\n",
                   "pipeline.yaml:4:10: plugins must be a sequence, not a "
                   "mapping; write [a, b] or one '- item' per line");
        expect_err(K I O "plugins:\n  - use: p\n    with: [k, 10]\n",
                   "pipeline.yaml:6:11: plugins[0].with must be a mapping, "
                   "not a sequence;");
        expect_err(K I O "plugins:\n  - use: p\n    with: 10\n",
                   "pipeline.yaml:6:11: plugins[0].with must be a mapping, "
                   "not a scalar;");
        expect_err(K I O "plugins:\n  - popular\n",
                   "pipeline.yaml:5:5: plugins[0] must be a mapping, not a "
                   "scalar;");
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  settings:\n"
                   "    security.protocol: [a]\n" I O P,
                   "pipeline.yaml:5:24: kafka.settings.security.protocol "
                   "must be a single value, not a sequence;");
        expect_err(K I O P "plugin_path: /x\n",
                   "pipeline.yaml:5:14: plugin_path must be a sequence, not a "
                   "scalar;");
        expect_err(K I O P "plugin_path: [[a]]\n",
                   "pipeline.yaml:5:15: plugin_path[0] must be a single "
                   "value, not a sequence;");
        expect_err(K I O P "http: [a]\n",
                   "pipeline.yaml:5:7: http must be a mapping, not a "
                   "sequence;");
        expect_err("- a\n",
                   "pipeline.yaml:1:1: a pipeline must be a mapping, not a "
                   "sequence; its keys are: kafka, input, side_inputs, "
                   "outputs, plugins, plugin_path, http, log, keys, demo");
        expect_err("",
                   "pipeline.yaml:1:1: a pipeline must be a mapping, not an "
                   "empty document;");
        expect_err("# only a comment\n",
                   "pipeline.yaml:1:1: a pipeline must be a mapping, not an "
                   "empty document;");
        expect_err("kafka:\n  bootstrap:\n  group: g\n" I O P,
                   "pipeline.yaml:2:13: kafka.bootstrap is empty; give a "
                   "value");
        expect_err("{[a]: b}\n",
                   "pipeline.yaml:1:2: a mapping key must be a single value, "
                   "not a sequence; write key: value");
}

static void test_err_enums_and_ints(void **state) {
        (void)state;
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  guarantee: twice\n"
                   I O P,
                   "pipeline.yaml:4:14: kafka.guarantee is 'twice'; valid "
                   "values: at-least-once, exactly-once");
        expect_err(K "input:\n  topic: t\n  schema: s\n  framing: avro\n" O P,
                   "pipeline.yaml:5:12: input.framing is 'avro'; valid "
                   "values: raw, confluent");
        expect_err(K I "outputs:\n  dead_letter: {topic: d}\n"
                       "  r: {topic: r, schema: r.avsc, framing: json}\n" P,
                   "pipeline.yaml:5:42: outputs.r.framing is 'json'; valid "
                   "values: raw, confluent");
        expect_err(K "input:\n  topic: t\n  schema: s\n  batch:\n"
                     "    max_events: ten\n" O P,
                   "pipeline.yaml:6:17: input.batch.max_events must be an "
                   "integer, got 'ten'; valid range: 1..100000");
        expect_err(K "input:\n  topic: t\n  schema: s\n  batch:\n"
                     "    max_events: 0\n" O P,
                   "pipeline.yaml:6:17: input.batch.max_events is 0, out of "
                   "range; valid range: 1..100000");
        expect_err(K "input:\n  topic: t\n  schema: s\n  batch:\n"
                     "    max_events: 100001\n" O P,
                   "pipeline.yaml:6:17: input.batch.max_events is 100001, "
                   "out of range; valid range: 1..100000");
        expect_err(K "input:\n  topic: t\n  schema: s\n  batch:\n"
                     "    max_events: 1.5\n" O P,
                   "pipeline.yaml:6:17: input.batch.max_events must be an "
                   "integer, got '1.5'; valid range: 1..100000");
        expect_err(K "input:\n  topic: t\n  schema: s\n  batch:\n"
                     "    max_wait_ms: 60001\n" O P,
                   "pipeline.yaml:6:18: input.batch.max_wait_ms is 60001, out "
                   "of range; valid range: 0..60000");
        expect_err(K "input:\n  topic: t\n  schema: s\n  batch:\n"
                     "    max_wait_ms: -1\n" O P,
                   "pipeline.yaml:6:18: input.batch.max_wait_ms is -1, out "
                   "of range; valid range: 0..60000");
        expect_err(K "input: {topic: t, schema: s, partitions: 0}\n" O P,
                   "pipeline.yaml:2:42: input.partitions is 0, out of range; "
                   "valid range: 1..10000");
        expect_err(K I "outputs:\n  dead_letter: {topic: d}\n"
                       "  r: {topic: r, schema: r.avsc, schema_id: x}\n" P,
                   "pipeline.yaml:5:44: outputs.r.schema_id must be an "
                   "integer, got 'x'; valid range: 0..2147483647");
        expect_err(K "input:\n  topic: t\n  schema: s\n  framing: confluent\n"
                     "  writer_schemas: {v1: a.avsc}\n" O P,
                   "pipeline.yaml:6:20: input.writer_schemas key 'v1' is not "
                   "a schema id; valid ids: 0..2147483647");
}

static void test_err_missing(void **state) {
        (void)state;
        expect_err("kafka:\n  group: g\n" I O P,
                   "pipeline.yaml:2:3: missing key 'bootstrap' in kafka; "
                   "kafka needs: bootstrap, group");
        expect_err("kafka: {bootstrap: b}\n" I O P,
                   "pipeline.yaml:1:8: missing key 'group' in kafka; kafka "
                   "needs: bootstrap, group");
        expect_err(K "input:\n  schema: s\n" O P,
                   "pipeline.yaml:3:3: missing key 'topic' in input; input "
                   "needs: topic, schema");
        expect_err(K "input: {topic: t}\n" O P,
                   "pipeline.yaml:2:8: missing key 'schema' in input; input "
                   "needs: topic, schema");
        expect_err(K I O,
                   "pipeline.yaml:1:1: missing key 'plugins' in the top "
                   "level; the top level needs: kafka, input, outputs, "
                   "plugins");
        expect_err(K I O "plugins: []\n",
                   "pipeline.yaml:4:10: plugins lists no stage; list at "
                   "least one: - use: NAME");
        expect_err(K I O "plugins:\n",
                   "pipeline.yaml:4:9: plugins lists no stage;");
        expect_err(K I "outputs:\n  recs: {topic: r, schema: r.avsc}\n" P,
                   "pipeline.yaml:4:3: missing output 'dead_letter' in "
                   "outputs; bind it for records that cannot be processed: "
                   "dead_letter: {topic: NAME}");
        expect_err(K I "outputs:\n  dead_leter: {topic: d}\n" P,
                   "pipeline.yaml:4:3: missing output 'dead_letter' in "
                   "outputs;");
        expect_err(K I "outputs:\n" P,
                   "pipeline.yaml:3:9: missing output 'dead_letter' in "
                   "outputs;");
        expect_err(K I "outputs:\n  dead_letter: {partitions: 2}\n" P,
                   "pipeline.yaml:4:16: missing key 'topic' in "
                   "outputs.dead_letter; outputs.dead_letter needs: topic");
        expect_err(K I O "plugins:\n  - with: {k: 1}\n",
                   "pipeline.yaml:5:5: missing key 'use' in plugins[0]; "
                   "plugins[0] needs: use");
        expect_err(K I "outputs:\n  dead_letter: {topic: d}\n"
                       "  recs: {topic: r}\n" P,
                   "pipeline.yaml:5:9: missing key 'schema' in outputs.recs; "
                   "an output needs the writer schema");
        expect_err(K I "outputs:\n  dead_letter: {topic: d}\n"
                       "  recs: {topic: r, schema: r.avsc, framing: "
                       "confluent}\n" P,
                   "pipeline.yaml:5:9: missing key 'schema_id' in "
                   "outputs.recs; framing: confluent writes a schema id "
                   "(0..2147483647) before each record");
        expect_err(K "side_inputs:\n  consent: {topic: c}\n" I O P,
                   "pipeline.yaml:3:12: missing key 'schema' in "
                   "side_inputs.consent; side_inputs.consent needs: topic, "
                   "schema");
}

static void test_err_rules(void **state) {
        (void)state;
        expect_err(K I "outputs:\n  dead_letter: {topic: d, schema: x.avsc}\n"
                       P,
                   "pipeline.yaml:4:35: outputs.dead_letter takes no schema: "
                   "it carries the original bytes; remove 'schema'");
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  settings:\n"
                   "    group.id: x\n" I O P,
                   "pipeline.yaml:5:5: kafka.settings.group.id is set by "
                   "veil; give it as kafka.group instead");
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  settings:\n"
                   "    bootstrap.servers: x\n" I O P,
                   "pipeline.yaml:5:5: kafka.settings.bootstrap.servers is "
                   "set by veil; give it as kafka.bootstrap instead");
        /* librdkafka's check, at load: a misspelt name, a bad value. */
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  settings:\n"
                   "    linger.ms: 5\n    no.such.prop: 1\n" I O P,
                   "pipeline.yaml:6:5: kafka.settings.no.such.prop: No such "
                   "configuration property: \"no.such.prop\"");
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  settings:\n"
                   "    security.protocol: SASL_SSLX\n" I O P,
                   "pipeline.yaml:5:5: kafka.settings.security.protocol: "
                   "Invalid value \"SASL_SSLX\" for configuration property "
                   "\"security.protocol\"");
        expect_err(K "input:\n  topic: t\n  schema: s\n"
                     "  writer_schemas: {1: a.avsc}\n" O P,
                   "pipeline.yaml:5:19: input.writer_schemas needs framing: "
                   "confluent; with raw framing give one writer_schema: "
                   "PATH");
        expect_err(K "input:\n  topic: t\n  schema: s\n  framing: confluent\n"
                     "  writer_schema: a.avsc\n" O P,
                   "pipeline.yaml:6:18: input.writer_schema is for raw "
                   "framing; with framing: confluent list writer_schemas: "
                   "{ID: PATH}");
        expect_err(K I "outputs:\n  dead_letter: {topic: d}\n  '': {topic: "
                       "x}\n" P,
                   "pipeline.yaml:5:3: a name in outputs is empty;");
}

static void test_err_duplicates(void **state) {
        (void)state;
        expect_err("kafka:\n  bootstrap: b\n  group: g\n  bootstrap: c\n" I O
                           P,
                   "pipeline.yaml:4:3: duplicate key 'bootstrap' (first at "
                   "pipeline.yaml:2:3); give each key once");
        expect_err(K I O P "kafka: {}\n",
                   "pipeline.yaml:5:1: duplicate key 'kafka' (first at "
                   "pipeline.yaml:1:1); give each key once");
        /* Equal after substitution is equal. */
        expect_err(K I O "plugins:\n  - use: p\n    with: {${GROUP}: 1, "
                         "team-a: 2}\n",
                   "pipeline.yaml:6:25: duplicate key 'team-a' (first at "
                   "pipeline.yaml:6:12)");
}

static void test_err_substitution(void **state) {
        (void)state;
        expect_err("kafka:\n  bootstrap: ${VEIL_TEST_UNSET_XYZ}\n" I O P,
                   "pipeline.yaml:2:14: environment variable "
                   "'VEIL_TEST_UNSET_XYZ' is not set; set it, or give a "
                   "default with ${VEIL_TEST_UNSET_XYZ:-default}");
        expect_err("kafka:\n  bootstrap: \"${HOST}/${NOPE}\"\n" I O P,
                   "pipeline.yaml:2:14: environment variable 'NOPE' is not "
                   "set;");
        expect_err("kafka:\n  bootstrap: \"x-${HOST\"\n" I O P,
                   "pipeline.yaml:2:14: unterminated '${' in this value; "
                   "write ${NAME} or ${NAME:-default}, and $$ for a literal "
                   "'$'");
        expect_err("kafka:\n  bootstrap: ${\n" I O P,
                   "pipeline.yaml:2:14: unterminated '${' in this value;");
        expect_err("kafka:\n  bootstrap: ${1X}\n" I O P,
                   "pipeline.yaml:2:14: invalid reference '${1X}'; write "
                   "${NAME} or ${NAME:-default}");
        expect_err("kafka:\n  bootstrap: ${HOST-x}\n" I O P,
                   "pipeline.yaml:2:14: invalid reference '${HOST-x}';");
        expect_err("kafka:\n  bootstrap: ${}\n" I O P,
                   "pipeline.yaml:2:14: invalid reference '${}';");
        /* A default is literal: a nested reference or $$ in it is refused
         * (it was kept as text: a group named "${HOSTNAME}"). */
        expect_err("kafka:\n  bootstrap: ${VEIL_TEST_UNSET_XYZ:-${HOST}}\n" I
                           O P,
                   "pipeline.yaml:2:14: the default of "
                   "'${VEIL_TEST_UNSET_XYZ:-…}' holds a '$'");
        expect_err("kafka:\n  bootstrap: ${VEIL_TEST_UNSET_XYZ:-a$$b}\n" I O P,
                   "pipeline.yaml:2:14: the default of "
                   "'${VEIL_TEST_UNSET_XYZ:-…}' holds a '$'");
}

static void test_err_yaml(void **state) {
        char *path = data_path("bad_syntax.yaml"), want[4200], err[1024];
        struct veil_config *cfg = NULL;
        char *deep, *big;
        size_t i;
        int rc;
        (void)state;

        /* libyaml's own message, at libyaml's position. */
        rc = veil_config_load(&cfg, path, err, sizeof(err));
        assert_int_equal(rc, -VEIL_EINVAL);
        assert_null(cfg);
        snprintf(want, sizeof(want),
                 "%s:4:6: YAML syntax error: did not find expected ',' or "
                 "']' (while parsing a flow sequence at 3:10);",
                 path);
        assert_memory_equal(err, want, strlen(want));
        free(path);

        path = data_path("unknown_key.yaml");
        assert_int_equal(veil_config_load(&cfg, path, err, sizeof(err)),
                         -VEIL_EINVAL);
        snprintf(want, sizeof(want), "%s:1:1: unknown key 'kafak'", path);
        assert_memory_equal(err, want, strlen(want));
        free(path);

        path = data_path("two_docs.yaml");
        assert_int_equal(veil_config_load(&cfg, path, err, sizeof(err)),
                         -VEIL_EINVAL);
        snprintf(want, sizeof(want),
                 "%s:2:1: a second YAML document starts here; a pipeline "
                 "file holds exactly one document",
                 path);
        assert_string_equal(err, want);
        free(path);

        path = data_path("does-not-exist.yaml");
        assert_int_equal(veil_config_load(&cfg, path, err, sizeof(err)),
                         -VEIL_ENOENT);
        assert_null(cfg);
        assert_non_null(strstr(err, "cannot open"));
        free(path);

        expect_err("kafka:\n  bootstrap: b\n group: g\n",
                   "pipeline.yaml:3:2: YAML syntax error: did not find "
                   "expected key (while parsing a block mapping at 1:1);");
        expect_err("kafka: {bootstrap: b, group: g\n",
                   "pipeline.yaml:2:1: YAML syntax error: did not find "
                   "expected ',' or '}' (while parsing a flow mapping at "
                   "1:8);");
        expect_err("kafka: 'open\n",
                   "pipeline.yaml:2:1: YAML syntax error: found unexpected "
                   "end of stream (while scanning a quoted scalar at 1:8);");
        expect_err("kafka: {bootstrap: b, group: g}\n\tinput: x\n",
                   "pipeline.yaml:2:1: YAML syntax error: found character "
                   "that cannot start any token (while scanning for the "
                   "next token at 2:1);");
        expect_err("kafka: \xff\n",
                   "pipeline.yaml:1:8: unreadable text: invalid leading "
                   "UTF-8 octet; a pipeline file is UTF-8 text");
        expect_err("kafka:\n  group: x\xee\x80\x81\n",
                   "pipeline.yaml:2:11: the characters U+E000 and U+E001 are "
                   "reserved (veil uses them to read ${...}); remove this "
                   "one");
        expect_err("\xff\xfek\0:\0",
                   "pipeline.yaml:1:1: unreadable text: invalid leading "
                   "UTF-8 octet;");
        expect_err("a: 1\n---\nb: 2\n",
                   "pipeline.yaml:2:1: a second YAML document starts here;");
        expect_err("kafka: &k {bootstrap: b, group: g}\n" I O P,
                   "pipeline.yaml:1:8: anchor '&k' is not supported; write "
                   "the value out in full");
        expect_err("kafka:\n  bootstrap: *b\n" I O P,
                   "pipeline.yaml:2:14: alias '*b' is not supported; write "
                   "the value out in full");
        expect_err("kafka: !!map {bootstrap: b}\n" I O P,
                   "pipeline.yaml:1:8: tag 'tag:yaml.org,2002:map' is not "
                   "supported; remove it");
        expect_err("kafka:\n  group: !custom g\n" I O P,
                   "pipeline.yaml:2:10: tag '!custom' is not supported;");
        expect_err_len("kafka: {bootstrap: \"a\\0b\", group: g}\n",
                       strlen("kafka: {bootstrap: \"a\\0b\", group: g}\n"),
                       "pipeline.yaml:1:20: this value contains a NUL "
                       "character; remove the \\0 escape");

        /* The root mapping is level 1; the 64th '[' would be level 65. */
        deep = malloc(3 + 2 * 70 + 1);
        assert_non_null(deep);
        memcpy(deep, "a: ", 3);
        for (i = 0; i < 70; i++) {
                deep[3 + i] = '[';
                deep[3 + 70 + i] = ']';
        }
        deep[3 + 140] = '\0';
        expect_err(deep, "pipeline.yaml:1:67: nesting deeper than 64 levels;");
        deep[3 + 63] = '\0'; /* 63 '[' and no ']': depth is fine, syntax not */
        expect_err(deep, "pipeline.yaml:2:1: YAML syntax error");
        free(deep);

        /* Node 100001 is item 99997 of the sequence (after the root, the
         * key and the sequence itself). */
        big = malloc(4 + 2 * 100001 + 2);
        assert_non_null(big);
        memcpy(big, "a: [", 4);
        for (i = 0; i < 100001; i++)
                memcpy(big + 4 + 2 * i, "1,", 2);
        memcpy(big + 4 + 2 * 100001, "]", 2);
        expect_err(big, "pipeline.yaml:1:199999: more than 100000 YAML nodes;");
        free(big);

        big = malloc(((size_t)4 << 20) + 2);
        assert_non_null(big);
        memset(big, '#', ((size_t)4 << 20) + 1);
        big[((size_t)4 << 20) + 1] = '\0';
        expect_err(big, "pipeline.yaml:1:1: the text is 4194305 bytes long; "
                        "the limit is 4194304 bytes (4 MiB)");
        free(big);
}

/* ------------------------------------------------------------------ */
/* ${VAR} substitution                                                */
/* ------------------------------------------------------------------ */

static void test_substitution(void **state) {
        struct veil_config *cfg;
        (void)state;

        cfg = parse_ok("kafka:\n"
                       "  bootstrap: ${HOST}\n"
                       "  group: ${NOPE:-fallback}\n"
                       "  settings:\n"
                       "    client.id: ${EMPTY:-was-empty}\n"
                       "    client.rack: pre-${HOST}-mid-${PORT}-suf\n"
                       "    sasl.username: \"cost: $$5 and $HOME and $\"\n"
                       "    sasl.password: ${EMPTY}\n"
                       "    sasl.oauthbearer.config: ${GROUP:-unused}\n"
                       "    ssl.curves.list: 'single ${PORT}'\n"
                       "    ssl.sigalgs.list: ${NOPE:-a b:c-d}\n"
                       "    ssl.key.password: $${HOST}\n"
                       "    ${NOPE:-linger}.ms: ${K}\n" I O P);
        assert_string_equal(cfg->kafka.bootstrap, "broker:9092");
        assert_string_equal(cfg->kafka.group, "fallback");
        assert_string_equal(cfg->kafka.settings[0].value, "was-empty");
        assert_string_equal(cfg->kafka.settings[1].value,
                            "pre-broker:9092-mid-9092-suf");
        assert_string_equal(cfg->kafka.settings[2].value,
                            "cost: $5 and $HOME and $");
        assert_string_equal(cfg->kafka.settings[3].value, "");
        assert_string_equal(cfg->kafka.settings[4].value, "team-a");
        assert_string_equal(cfg->kafka.settings[5].value, "single 9092");
        assert_string_equal(cfg->kafka.settings[6].value, "a b:c-d");
        assert_string_equal(cfg->kafka.settings[7].value, "${HOST}");
        assert_string_equal(cfg->kafka.settings[8].key, "linger.ms");
        assert_string_equal(cfg->kafka.settings[8].value, "25");
        veil_config_destroy(cfg);

        /* A substituted number is read by its key's rules. */
        cfg = parse_ok(K "input:\n  topic: t\n  schema: s\n"
                         "  batch: {max_events: \"${K}\", max_wait_ms: "
                         "'${W:-7}'}\n" O P);
        assert_int_equal(cfg->max_events, 25);
        assert_int_equal(cfg->max_wait_ms, 7);
        veil_config_destroy(cfg);

        /* Unquoted inside flow collections, where YAML would read the
         * braces as its own; positions after them stay exact. */
        cfg = parse_ok(K "input: {topic: ${NOPE:-t}, schema: s, batch: "
                         "{max_events: ${K}, max_wait_ms: ${W:-7}}}\n"
                         "outputs: {dead_letter: {topic: ${HOST}-dlq}}\n"
                         "plugins: [{use: p}]\n"
                         "plugin_path: [${GROUP}, '${PORT}', \"${K}x\"]\n");
        assert_string_equal(cfg->input.topic, "t");
        assert_int_equal(cfg->max_events, 25);
        assert_int_equal(cfg->max_wait_ms, 7);
        assert_string_equal(cfg->outputs[0].topic, "broker:9092-dlq");
        assert_int_equal(cfg->n_plugin_path, 3);
        assert_string_equal(cfg->plugin_path[0], "team-a");
        assert_string_equal(cfg->plugin_path[1], "9092");
        assert_string_equal(cfg->plugin_path[2], "25x");
        veil_config_destroy(cfg);
        expect_err(K I "outputs: {dead_letter: {topic: ${HOST}, shema: x}}\n"
                       P,
                   "pipeline.yaml:3:41: unknown key 'shema' in "
                   "outputs.dead_letter;");
        expect_err(K I "outputs: {dead_letter: {topic: ${NOPE}}}\n" P,
                   "pipeline.yaml:3:32: environment variable 'NOPE' is not "
                   "set;");
}

static void test_substitution_getenv(void **state) {
        struct veil_config *cfg = NULL;
        const char *text = "kafka: {bootstrap: \"${VEIL_TEST_CFG_BROKER}\", "
                           "group: g}\n" I O P;
        char err[512];
        (void)state;

        setenv("VEIL_TEST_CFG_BROKER", "k1:9092,k2:9092", 1);
        assert_int_equal(veil_config_parse(&cfg, "p.yaml", text, strlen(text),
                                           err, sizeof(err)),
                         0);
        assert_string_equal(cfg->kafka.bootstrap, "k1:9092,k2:9092");
        veil_config_destroy(cfg);
        unsetenv("VEIL_TEST_CFG_BROKER");
        assert_int_equal(veil_config_parse(&cfg, "p.yaml", text, strlen(text),
                                           err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_string_equal(err, "p.yaml:1:20: environment variable "
                                 "'VEIL_TEST_CFG_BROKER' is not set; set it, "
                                 "or give a default with "
                                 "${VEIL_TEST_CFG_BROKER:-default}");
}

/* ------------------------------------------------------------------ */
/* Plugin parameters                                                  */
/* ------------------------------------------------------------------ */

static const struct veil_param_def defs[] = {
        {"name", VEIL_PARAM_STRING, "anon", 0, "a label"},
        {"k", VEIL_PARAM_INT, "10", 0, "items to return"},
        {"rate", VEIL_PARAM_DOUBLE, "0.25", 0, "learning rate"},
        {"on", VEIL_PARAM_BOOL, "false", 0, "switch"},
        {"tags", VEIL_PARAM_LIST, "[x, y]", 0, "tags"},
        {"labels", VEIL_PARAM_MAP, "{a: b}", 0, "labels"},
        {"none", VEIL_PARAM_STRING, NULL, 0, "no default"},
        {NULL, 0, NULL, 0, NULL}};

/* The stage is at 5:5; `with:`'s value starts at 6:11. */
#define STAGE K I O "plugins:\n  - use: popular\n"

static int build(const char *text, const struct veil_param_def *table,
                 veil_params_t **out, struct veil_config **cfgp, char *err,
                 size_t errsize) {
        struct veil_config *cfg = parse_ok(text);
        int rc = veil_params_build(out, cfg, &cfg->stages[0], "popular",
                                   table, err, errsize);
        *cfgp = cfg;
        return rc;
}

static void expect_param_err(const char *with,
                             const struct veil_param_def *table,
                             const char *want) {
        char text[2048], err[1024] = "";
        struct veil_config *cfg;
        veil_params_t *p = (veil_params_t *)&p;
        int rc;

        snprintf(text, sizeof(text), STAGE "%s", with);
        rc = build(text, table, &p, &cfg, err, sizeof(err));
        if (rc != -VEIL_EINVAL || strncmp(err, want, strlen(want)))
                fail_msg("rc %d\n got: %s\nwant: %s\n--- for ---\n%s", rc, err,
                         want, text);
        assert_null(p);
        veil_config_destroy(cfg);
}

static void test_params_values(void **state) {
        struct veil_config *cfg;
        veil_params_t *p;
        char err[1024];
        (void)state;

        assert_int_equal(build(STAGE "    with:\n"
                                     "      name: \"hello world\"\n"
                                     "      k: -0x1F\n"
                                     "      rate: 3\n"
                                     "      on: True\n"
                                     "      tags: [a, 'b c', \"\"]\n"
                                     "      labels: {x: 1, y: two}\n",
                               defs, &p, &cfg, err, sizeof(err)),
                         0);
        assert_string_equal(veil_params_str(p, "name"), "hello world");
        assert_int_equal(veil_params_int(p, "k", 0), -31);
        assert_true(veil_params_double(p, "rate", 0) == 3.0);
        assert_int_equal(veil_params_bool(p, "on", 0), 1);
        assert_int_equal(veil_params_list_size(p, "tags"), 3);
        assert_string_equal(veil_params_list_at(p, "tags", 0), "a");
        assert_string_equal(veil_params_list_at(p, "tags", 1), "b c");
        assert_string_equal(veil_params_list_at(p, "tags", 2), "");
        assert_null(veil_params_list_at(p, "tags", 3));
        assert_int_equal(veil_params_map_size(p, "labels"), 2);
        assert_string_equal(veil_params_map_key(p, "labels", 0), "x");
        assert_string_equal(veil_params_map_value(p, "labels", 0), "1");
        assert_string_equal(veil_params_map_key(p, "labels", 1), "y");
        assert_string_equal(veil_params_map_value(p, "labels", 1), "two");
        assert_null(veil_params_map_key(p, "labels", 2));
        assert_null(veil_params_map_value(p, "labels", 2));

        /* Where: the value when written, the `with:` block otherwise. */
        assert_string_equal(veil_params_where(p, "k"), "pipeline.yaml:8:10");
        assert_string_equal(veil_params_where(p, "tags"),
                            "pipeline.yaml:11:13");
        assert_string_equal(veil_params_where(p, "none"), "pipeline.yaml:7:7");
        assert_string_equal(veil_params_where(p, "undeclared"),
                            "pipeline.yaml:7:7");

        /* Absent, undeclared and wrong-type reads answer the fallback. */
        assert_false(veil_params_has(p, "none"));
        assert_null(veil_params_str(p, "none"));
        assert_false(veil_params_has(p, "undeclared"));
        assert_int_equal(veil_params_int(p, "undeclared", 42), 42);
        assert_int_equal(veil_params_int(p, "rate", 42), 42);
        assert_true(veil_params_double(p, "k", -1.5) == -1.5);
        assert_null(veil_params_str(p, "k"));
        assert_int_equal(veil_params_bool(p, "name", -1), -1);
        assert_int_equal(veil_params_list_size(p, "labels"), 0);
        assert_int_equal(veil_params_map_size(p, "tags"), 0);
        assert_true(veil_params_has(p, "k"));
        veil_params_destroy(p);
        veil_config_destroy(cfg);

        /* NULL-safe accessors. */
        assert_false(veil_params_has(NULL, "k"));
        assert_int_equal(veil_params_int(NULL, "k", 5), 5);
        assert_null(veil_params_where(NULL, "k"));
        veil_params_destroy(NULL);
}

static void test_params_defaults(void **state) {
        struct veil_config *cfg;
        veil_params_t *p;
        char err[1024];
        (void)state;

        assert_int_equal(build(STAGE, defs, &p, &cfg, err, sizeof(err)), 0);
        assert_string_equal(veil_params_str(p, "name"), "anon");
        assert_int_equal(veil_params_int(p, "k", 0), 10);
        assert_true(veil_params_double(p, "rate", 0) == 0.25);
        assert_int_equal(veil_params_bool(p, "on", 1), 0);
        assert_int_equal(veil_params_list_size(p, "tags"), 2);
        assert_string_equal(veil_params_list_at(p, "tags", 1), "y");
        assert_int_equal(veil_params_map_size(p, "labels"), 1);
        assert_string_equal(veil_params_map_value(p, "labels", 0), "b");
        assert_true(veil_params_has(p, "k"));
        assert_false(veil_params_has(p, "none"));
        /* No with: block, so a default is placed at the plugin item. */
        assert_string_equal(veil_params_where(p, "k"), "pipeline.yaml:5:5");
        veil_params_destroy(p);
        veil_config_destroy(cfg);

        /* A given value beats the default; an empty LIST default. */
        {
                static const struct veil_param_def d2[] = {
                        {"k", VEIL_PARAM_INT, "10", 0, NULL},
                        {"l", VEIL_PARAM_LIST, "[]", 0, NULL},
                        {"m", VEIL_PARAM_MAP, "{}", 0, NULL},
                        {NULL, 0, NULL, 0, NULL}};
                assert_int_equal(build(STAGE "    with: {k: 3}\n", d2, &p,
                                       &cfg, err, sizeof(err)),
                                 0);
                assert_int_equal(veil_params_int(p, "k", 0), 3);
                assert_true(veil_params_has(p, "l"));
                assert_int_equal(veil_params_list_size(p, "l"), 0);
                assert_true(veil_params_has(p, "m"));
                assert_int_equal(veil_params_map_size(p, "m"), 0);
                veil_params_destroy(p);
                veil_config_destroy(cfg);
        }
        /* A table without parameters and no with: block. */
        assert_int_equal(build(STAGE, NULL, &p, &cfg, err, sizeof(err)), 0);
        assert_false(veil_params_has(p, "k"));
        veil_params_destroy(p);
        veil_config_destroy(cfg);
}

static void test_params_errors(void **state) {
        static const struct veil_param_def req[] = {
                {"k", VEIL_PARAM_INT, "5", 1, "items to return"},
                {"x", VEIL_PARAM_STRING, NULL, 0, NULL},
                {NULL, 0, NULL, 0, NULL}};
        static const struct veil_param_def none[] = {{NULL, 0, NULL, 0, NULL}};
        (void)state;

        expect_param_err("    with: {k: ten}\n", defs,
                         "pipeline.yaml:6:15: plugin 'popular' parameter 'k' "
                         "must be an integer, got 'ten'; write a whole number");
        expect_param_err("    with: {k: 9223372036854775808}\n", defs,
                         "pipeline.yaml:6:15: plugin 'popular' parameter 'k' "
                         "must be an integer, got '9223372036854775808';");
        expect_param_err("    with: {k: 0x}\n", defs,
                         "pipeline.yaml:6:15: plugin 'popular' parameter 'k' "
                         "must be an integer, got '0x';");
        expect_param_err("    with: {k: ' 1'}\n", defs,
                         "pipeline.yaml:6:15: plugin 'popular' parameter 'k' "
                         "must be an integer, got ' 1';");
        expect_param_err("    with: {k: [1]}\n", defs,
                         "pipeline.yaml:6:15: plugin 'popular' parameter 'k' "
                         "must be an integer, got a sequence;");
        expect_param_err("    with: {rate: fast}\n", defs,
                         "pipeline.yaml:6:18: plugin 'popular' parameter "
                         "'rate' must be a number, got 'fast'; write a "
                         "number");
        expect_param_err("    with: {rate: .inf}\n", defs,
                         "pipeline.yaml:6:18: plugin 'popular' parameter "
                         "'rate' must be a number, got '.inf';");
        expect_param_err("    with: {rate: nan}\n", defs,
                         "pipeline.yaml:6:18: plugin 'popular' parameter "
                         "'rate' must be a number, got 'nan';");
        expect_param_err("    with: {on: yes}\n", defs,
                         "pipeline.yaml:6:16: plugin 'popular' parameter 'on' "
                         "must be a boolean, got 'yes'; write true or false");
        expect_param_err("    with: {name: {a: b}}\n", defs,
                         "pipeline.yaml:6:18: plugin 'popular' parameter "
                         "'name' must be a string, got a mapping;");
        expect_param_err("    with: {tags: solo}\n", defs,
                         "pipeline.yaml:6:18: plugin 'popular' parameter "
                         "'tags' must be a list of values, got 'solo'; write "
                         "[a, b]");
        expect_param_err("    with: {tags: [a, [b]]}\n", defs,
                         "pipeline.yaml:6:22: plugin 'popular' parameter "
                         "'tags' item 1 must be a single value, not a "
                         "sequence;");
        expect_param_err("    with: {labels: [a]}\n", defs,
                         "pipeline.yaml:6:20: plugin 'popular' parameter "
                         "'labels' must be a mapping of names to values, got "
                         "a sequence;");
        expect_param_err("    with: {labels: {a: {b: c}}}\n", defs,
                         "pipeline.yaml:6:24: plugin 'popular' parameter "
                         "'labels' entry 'a' must be a single value, not a "
                         "mapping;");
        expect_param_err("    with: {kk: 1}\n", defs,
                         "pipeline.yaml:6:12: unknown parameter 'kk' for "
                         "plugin 'popular'; did you mean 'k'? allowed "
                         "parameters: name, k, rate, on, tags, labels, none");
        expect_param_err("    with: {zzzzz: 1}\n", defs,
                         "pipeline.yaml:6:12: unknown parameter 'zzzzz' for "
                         "plugin 'popular'; allowed parameters: name, k, "
                         "rate, on, tags, labels, none");
        expect_param_err("    with: {k: 1}\n", none,
                         "pipeline.yaml:6:12: unknown parameter 'k' for "
                         "plugin 'popular'; the plugin takes no parameters");
        /* Required: at the with: block, or at the item without one. */
        expect_param_err("    with: {x: y}\n", req,
                         "pipeline.yaml:6:11: plugin 'popular' is missing "
                         "required parameter 'k'; add k: VALUE (an integer: "
                         "items to return) under with:");
        expect_param_err("", req,
                         "pipeline.yaml:5:5: plugin 'popular' is missing "
                         "required parameter 'k';");
}

static void test_params_bad_table(void **state) {
        static const struct veil_param_def bad_int[] = {
                {"k", VEIL_PARAM_INT, "ten", 0, NULL},
                {NULL, 0, NULL, 0, NULL}};
        static const struct veil_param_def bad_list[] = {
                {"l", VEIL_PARAM_LIST, "[a, ", 0, NULL},
                {NULL, 0, NULL, 0, NULL}};
        static const struct veil_param_def scalar_list[] = {
                {"l", VEIL_PARAM_LIST, "a", 0, NULL},
                {NULL, 0, NULL, 0, NULL}};
        static const struct veil_param_def twice[] = {
                {"k", VEIL_PARAM_INT, NULL, 0, NULL},
                {"k", VEIL_PARAM_STRING, NULL, 0, NULL},
                {NULL, 0, NULL, 0, NULL}};
        static const struct veil_param_def bad_type[] = {
                {"k", (veil_param_type_t)42, NULL, 0, NULL},
                {NULL, 0, NULL, 0, NULL}};
        (void)state;

        expect_param_err("", bad_int,
                         "plugin 'popular' default for parameter 'k' must be "
                         "an integer, got 'ten'; fix the plugin's parameter "
                         "table");
        /* Given a value, the broken default is still refused: it would
         * fail the first pipeline that leaves the parameter out. */
        expect_param_err("    with: {k: 3}\n", bad_int,
                         "plugin 'popular' default for parameter 'k' must be "
                         "an integer, got 'ten'; fix the plugin's parameter "
                         "table");
        expect_param_err("", bad_list,
                         "plugin 'popular' default for parameter 'l' is not "
                         "YAML (default:");
        expect_param_err("", scalar_list,
                         "plugin 'popular' default for parameter 'l' must be "
                         "a list of values, got 'a';");
        expect_param_err("", twice,
                         "plugin 'popular' declares parameter 'k' twice;");
        expect_param_err("", bad_type,
                         "plugin 'popular' parameter 'k' has unknown type "
                         "42;");
}

static void test_params_scalar_rules(void **state) {
        int64_t i;
        double d;
        int b;
        (void)state;

        assert_int_equal(veil_params_parse_int("42", &i), 0);
        assert_int_equal(i, 42);
        assert_int_equal(veil_params_parse_int("+7", &i), 0);
        assert_int_equal(i, 7);
        assert_int_equal(veil_params_parse_int("010", &i), 0);
        assert_int_equal(i, 10); /* decimal, not octal */
        assert_int_equal(veil_params_parse_int("0XfF", &i), 0);
        assert_int_equal(i, 255);
        assert_int_equal(veil_params_parse_int("-9223372036854775808", &i), 0);
        assert_true(i == INT64_MIN);
        assert_int_equal(veil_params_parse_int("", &i), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_int("-", &i), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_int("1 ", &i), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_int("+-1", &i), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_int("0x-1", &i), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_int("1_000", &i), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_int("1e3", &i), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_int(NULL, &i), -VEIL_EINVAL);

        assert_int_equal(veil_params_parse_double("1e-3", &d), 0);
        assert_true(d == 1e-3);
        assert_int_equal(veil_params_parse_double("-2", &d), 0);
        assert_true(d == -2.0);
        assert_int_equal(veil_params_parse_double(".5", &d), 0);
        assert_true(d == 0.5);
        assert_int_equal(veil_params_parse_double("1e999", &d), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_double("inf", &d), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_double(" 1", &d), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_double("1x", &d), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_double("", &d), -VEIL_EINVAL);

        assert_int_equal(veil_params_parse_bool("true", &b), 0);
        assert_int_equal(b, 1);
        assert_int_equal(veil_params_parse_bool("FALSE", &b), 0);
        assert_int_equal(b, 0);
        assert_int_equal(veil_params_parse_bool("yes", &b), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_bool("on", &b), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_bool("1", &b), -VEIL_EINVAL);
        assert_int_equal(veil_params_parse_bool("tRue", &b), -VEIL_EINVAL);
}

static void test_parse_node(void **state) {
        struct veil_node *n = NULL;
        char err[256];
        (void)state;

        /* No substitution in YAML that is not a pipeline (defaults). */
        assert_int_equal(veil_config_parse_node(&n, "d", "['${X}', b]", 11, err,
                                                sizeof(err)),
                         0);
        assert_int_equal(n->kind, VEIL_NODE_SEQ);
        assert_int_equal(n->n, 2);
        assert_string_equal(n->items[0]->scalar, "${X}");
        veil_config_free_node(n);
        assert_int_equal(veil_config_parse_node(&n, "d", "x", 1, err,
                                                sizeof(err)),
                         0);
        assert_int_equal(n->kind, VEIL_NODE_SCALAR);
        veil_config_free_node(n);
        assert_int_equal(veil_config_parse_node(&n, "d", "[a", 2, err,
                                                sizeof(err)),
                         -VEIL_EINVAL);
        assert_null(n);
        assert_null(veil_config_get(NULL, "x"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full_file),
                cmocka_unit_test(test_minimal_defaults),
                cmocka_unit_test(test_raw_writer_schema_and_nulls),
                cmocka_unit_test(test_node_positions),
                cmocka_unit_test(test_utf8_bom),
                cmocka_unit_test(test_config_path),
                cmocka_unit_test(test_err_unknown_keys),
                cmocka_unit_test(test_err_wrong_types),
                cmocka_unit_test(test_err_enums_and_ints),
                cmocka_unit_test(test_err_missing),
                cmocka_unit_test(test_err_rules),
                cmocka_unit_test(test_err_duplicates),
                cmocka_unit_test(test_err_substitution),
                cmocka_unit_test(test_err_yaml),
                cmocka_unit_test(test_substitution),
                cmocka_unit_test(test_substitution_getenv),
                cmocka_unit_test(test_params_values),
                cmocka_unit_test(test_params_defaults),
                cmocka_unit_test(test_params_errors),
                cmocka_unit_test(test_params_bad_table),
                cmocka_unit_test(test_params_scalar_rules),
                cmocka_unit_test(test_parse_node),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

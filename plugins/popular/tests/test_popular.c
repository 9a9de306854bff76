/*
 * test_popular — the popular plugin through the host (an in-process
 * pipeline of this stage alone): what its lists hold, and its gauges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "pipeline.h"

struct harness {
        struct veil_config *cfg;
        struct veil_pipeline *p;
        char last[4096]; /* the last recommendation, as JSON */
};

static int sink(void *ctx, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        struct harness *h = ctx;
        (void)key, (void)key_len;
        if (dl || strcmp(topic, "recs"))
                return 0;
        char *json = veil_codec_rec_json(
                veil_pipeline_output_codec(h->p, "recommendations"), value,
                value_len);
        assert_non_null(json);
        snprintf(h->last, sizeof(h->last), "%s", json);
        free(json);
        return 0;
}

static void h_open(struct harness *h, const char *with) {
        char yaml[1024], err[1024];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../schemas/interaction.avsc}\n"
                 "outputs:\n"
                 "  recommendations: {topic: recs, schema: "
                 "../../schemas/recommendation.avsc}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: popular\n"
                 "    with: %s\n",
                 with);
        memset(h, 0, sizeof(*h));
        char *dirs[] = {VEIL_PLUGIN_DIR_BUILD};
        struct veil_pipeline_opts o = {dirs, 1, NULL, 0};
        if (veil_config_parse(&h->cfg, VEIL_SRCDIR "/plugins/popular/t.yaml",
                              yaml, strlen(yaml), err, sizeof(err)) ||
            veil_pipeline_new(&h->p, h->cfg, &o, err, sizeof(err)))
                fail_msg("%s", err);
        veil_pipeline_set_sink(h->p, (struct veil_sink){sink, h});
}

static void h_close(struct harness *h) {
        veil_pipeline_destroy(h->p);
        veil_config_destroy(h->cfg);
}

static double gauge(struct harness *h, const char *name) {
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(h->p, 0); j++) {
                double x;
                if (!strcmp(veil_pipeline_stage_gauge(h->p, 0, j, &x), name))
                        return x;
        }
        fail_msg("no gauge %s", name);
        return -1;
}

/* max_items distinct items are counted; an interaction with an item first
 * seen after that is not (it was silently dropped and still counted in
 * events_counted): the gauge items_ignored says how many. */
static void test_items_ignored(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "{k: 3, max_items: 2}");
        static const char *const items[] = {"A", "B", "C", "C", "A", "D"};
        veil_pipeline_batch_begin(h.p);
        for (int i = 0; i < 6; i++) {
                struct veil_event ev = {0};
                char id[16];
                snprintf(id, sizeof(id), "e%d", i);
                ev.event_id = id;
                ev.user_id = "u";
                ev.item_id = items[i];
                ev.type = "view";
                ev.ts_ms = 1700000000000LL + i;
                ev.gpc = -1;
                assert_int_equal(veil_pipeline_batch_add_event(h.p, &ev), 1);
        }
        char err[256];
        assert_int_equal(veil_pipeline_batch_run(h.p, err, sizeof(err)), 0);
        assert_true(gauge(&h, "items_ignored") == 3);
        assert_true(gauge(&h, "events_counted") == 3);
        /* The list before D: A twice, B once, C never. */
        fprintf(stderr, "# %s\n", h.last);
        assert_non_null(strstr(h.last, "\"item_id\": \"A\", \"score\": 2"));
        assert_non_null(strstr(h.last, "\"item_id\": \"B\", \"score\": 1"));
        assert_null(strstr(h.last, "\"C\""));
        h_close(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_items_ignored),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

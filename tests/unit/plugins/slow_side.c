/*
 * slow_side — a test plugin that reads the side input "consent" slowly
 * (delay_us per record), so that a test can watch readiness while side
 * inputs catch up, and reports how many records it read as a gauge.
 * Events pass unchanged.
 */
#include <stdlib.h>
#include <time.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {
        {"delay_us", VEIL_PARAM_INT, "1000", 0,
         "time spent on each side-input record"},
        {NULL, 0, NULL, 0, NULL}};
static const char *const side_inputs[] = {"consent", NULL};

struct state {
        veil_stage_t *st;
        long delay_us;
        double records;
};

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        (void)errstr;
        (void)errstr_size;
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        s->delay_us = (long)veil_params_int(p, "delay_us", 1000);
        s->records = 0;
        veil_metric_set(st, "side_records", 0);
        *state = s;
        return 0;
}

static int on_side(void *state, const struct veil_side_record *r,
                   char *errstr, size_t errstr_size) {
        (void)r;
        (void)errstr;
        (void)errstr_size;
        struct state *s = state;
        struct timespec ts = {0, s->delay_us * 1000L};
        nanosleep(&ts, NULL);
        veil_metric_set(s->st, "side_records", ++s->records);
        return 0;
}

static int process(void *state, struct veil_batch *b) {
        (void)state;
        (void)b;
        return 0;
}

static void destroy(void *state) { free(state); }

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "slow_side",
        .version = "1",
        .description = "test: reads the consent side input slowly",
        .params = params,
        .side_inputs = side_inputs,
        .init = init,
        .process = process,
        .destroy = destroy,
        .on_side_record = on_side,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

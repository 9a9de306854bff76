/*
 * careless — a test plugin (tests/fault) that emits every event to the
 * `events` output and ignores what veil_out_event returns, as a plugin
 * with a best-effort output might. The host must still not commit a batch
 * one of whose records it could not produce: a record refused as too
 * large (-VEIL_EINVAL) that no dead letter answers fails the batch
 * (test_poison, and tests/unit/test_refused.c).
 */
#include <stdlib.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {{NULL, 0, NULL, 0, NULL}};
static const char *const outputs[] = {"events", NULL};

struct state {
        veil_stage_t *st;
};

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        (void)p;
        (void)errstr;
        (void)errstr_size;
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        *state = s;
        return 0;
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        for (size_t i = 0; i < b->n; i++)
                if (b->events[i].status == VEIL_PASS)
                        (void)veil_out_event(s->st, "events", &b->events[i]);
        return 0; /* whatever the output said */
}

static void destroy(void *state) { free(state); }

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "careless",
        .version = "1.0.0",
        .description = "Test plugin: emits every event to 'events' and "
                       "ignores the output's errors.",
        .params = params,
        .outputs = outputs,
        .init = init,
        .process = process,
        .destroy = destroy,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

/*
 * passthrough — emits every event that reaches it to the `events` output,
 * unchanged. The host benchmark runs it to measure the host alone. An
 * event whose record cannot be written goes to the dead-letter topic.
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
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                int rc = veil_out_event(s->st, "events", ev);
                if (rc == -VEIL_EINVAL) {
                        /* The record cannot be written (too large for
                         * its topic, or not valid for its schema; the host
                         * logged which): the event goes to the
                         * dead-letter topic and the stream goes on. */
                        veil_event_dead_letter(
                                b, ev,
                                "passthrough: the event's output record "
                                "could not be written (see the log)");
                        continue;
                }
                if (rc < 0)
                        return rc; /* the batch is not committed */
        }
        return 0;
}

static void destroy(void *state) { free(state); }

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "passthrough",
        .version = "1.0.0",
        .description = "Emits every event unchanged to the 'events' output "
                       "(benchmarks and debugging).",
        .params = params,
        .outputs = outputs,
        .init = init,
        .process = process,
        .destroy = destroy,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

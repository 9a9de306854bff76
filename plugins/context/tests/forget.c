/*
 * forget — a test stage standing in for the consent stage's requests: an
 * event of type "forget" asks the host to erase its user ("forget_training":
 * what is held for training alone), one of type
 * "export" asks for an access record; both are dropped. Every other event
 * passes unchanged. Lets the tests reach the context stage's erase and
 * export callbacks through the host, as consent would.
 */
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

struct state {
        veil_stage_t *st;
};

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS || !ev->type || !ev->user_id)
                        continue;
                int rc = 0;
                if (!strcmp(ev->type, "forget"))
                        rc = veil_request_erase(s->st, ev->user_id);
                else if (!strcmp(ev->type, "forget_training"))
                        rc = veil_request_erase_training(s->st, ev->user_id);
                else if (!strcmp(ev->type, "export"))
                        rc = veil_request_export(s->st, ev->user_id);
                else
                        continue;
                if (rc)
                        return rc;
                veil_event_drop(b, ev, "forget: request");
        }
        return 0;
}

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        (void)p, (void)errstr, (void)errstr_size;
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        *state = s;
        return 0;
}

static void destroy(void *state) { free(state); }

static const struct veil_param_def params[] = {{NULL, 0, NULL, 0, NULL}};

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "forget",
        .version = "0",
        .description = "test stage: erase and export requests from events",
        .params = params,
        .init = init,
        .process = process,
        .destroy = destroy,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

/*
 * example — a complete veil plugin in one file, to copy: it keeps the
 * interactions whose value reaches a threshold and writes them to its
 * `events` output; the others are dropped with a reason.
 *
 * It shows every part a plugin usually needs: a typed parameter table
 * (validated by the host, listed by `veil plugins`), init/process/destroy,
 * a named output, drops with a reason, a dead letter for a record that
 * cannot be written, a gauge on /metrics, and the notice hook that
 * `veil notice` asks. It includes <veil/veil.h> only and links
 * nothing from veil.
 */
#include <stdio.h>
#include <stdlib.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {
        {"min_value", VEIL_PARAM_DOUBLE, "1", 0,
         "keep interactions whose value is at least this"},
        {NULL, 0, NULL, 0, NULL}};
static const char *const outputs[] = {"events", NULL};

struct state {
        veil_stage_t *st;
        double min_value;
        uint64_t kept;
};

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        double min = veil_params_double(p, "min_value", 1);
        if (min < 0) {
                snprintf(errstr, errstr_size,
                         "%s: min_value must be 0 or more, got %g",
                         veil_params_where(p, "min_value"), min);
                return -VEIL_EINVAL;
        }
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        s->min_value = min;
        *state = s;
        return 0;
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue; /* an earlier stage decided */
                if (ev->value < s->min_value) {
                        veil_event_drop(b, ev, "below_min_value");
                        continue;
                }
                /* Keyed by the event's user_id: a pseudonym, since the
                 * pipeline runs pseudonymize first (veil lint insists). */
                int rc = veil_out_event(s->st, "events", ev);
                if (rc == -VEIL_EINVAL) {
                        /* This event's record cannot be written (too
                         * large for its topic, or not valid for its
                         * schema; the host logged which): the event goes
                         * to the dead-letter topic, the stream goes on. */
                        veil_event_dead_letter(
                                b, ev,
                                "example: the event's output record could "
                                "not be written (see the log)");
                        continue;
                }
                if (rc < 0)
                        return rc; /* the output failed: the batch is not
                                      committed */
                s->kept++;
        }
        /* A count, never anything about one person. */
        veil_metric_set(s->st, "kept", (double)s->kept);
        return 0;
}

static void destroy(void *state) { free(state); }

static void notice(const veil_params_t *p, veil_notice_t *n) {
        veil_notice_add(n, VEIL_NOTICE_PURPOSE,
                        "We forward the interactions whose value is at "
                        "least %g, and no others.",
                        veil_params_double(p, "min_value", 1));
}

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "example",
        .version = "1.0.0",
        .description = "Keeps the interactions whose value reaches "
                       "min_value and writes them to its events output "
                       "(the SDK's example).",
        .params = params,
        .outputs = outputs,
        .init = init,
        .process = process,
        .destroy = destroy,
        .notice = notice,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

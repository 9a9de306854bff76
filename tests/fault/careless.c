/*
 * careless — a test plugin (tests/fault) that emits every event to the
 * `events` output and ignores what veil_out_event returns, as a plugin
 * with a best-effort output might. The host must still not commit a batch
 * one of whose records it could not produce: a record refused as too
 * large (-VEIL_EINVAL) that no dead letter answers fails the batch
 * (test_poison, and tests/unit/test_refused.c). Two settings make it
 * worse: `drop_last` drops the batch's last event for a reason of its own
 * after emitting (which must not answer another event's refused record),
 * and `garble` makes the record of every event whose id contains
 * "oversized" not encodable (its required `type` taken away), which the host
 * must count like a refusal. `bare_status` sets the status of the
 * batch's second event to VEIL_DEAD_LETTER and of its third to VEIL_DROP
 * by hand, without a reason, before emitting. `by_hand` writes each event
 * as a record of its own (veil_out_emit, tied to no event) and
 * dead-letters one the sink refused by setting its status by hand.
 */
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {
        {"drop_last", VEIL_PARAM_BOOL, "false", 0,
         "drop the batch's last event after emitting"},
        {"garble", VEIL_PARAM_BOOL, "false", 0,
         "make the records of events whose id contains \"oversized\" not "
         "encodable"},
        {"bare_status", VEIL_PARAM_BOOL, "false", 0,
         "set statuses by hand, without a reason"},
        {"by_hand", VEIL_PARAM_BOOL, "false", 0,
         "write each event as a record of its own (veil_out_emit) and "
         "dead-letter one refused by setting its status by hand"},
        {NULL, 0, NULL, 0, NULL}};
static const char *const outputs[] = {"events", NULL};

struct state {
        veil_stage_t *st;
        int drop_last, garble, bare_status, by_hand;
};

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        (void)errstr;
        (void)errstr_size;
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        s->drop_last = veil_params_bool(p, "drop_last", 0);
        s->garble = veil_params_bool(p, "garble", 0);
        s->bare_status = veil_params_bool(p, "bare_status", 0);
        s->by_hand = veil_params_bool(p, "by_hand", 0);
        *state = s;
        return 0;
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        if (s->bare_status && b->n >= 3) {
                b->events[1].status = VEIL_DEAD_LETTER;
                b->events[2].status = VEIL_DROP;
        }
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                if (s->garble && ev->event_id &&
                    strstr(ev->event_id, "oversized"))
                        ev->type = NULL;
                if (!s->by_hand) {
                        (void)veil_out_event(s->st, "events", ev);
                        continue;
                }
                veil_rec_t *r = veil_out_begin(s->st, "events");
                if (!r)
                        return -VEIL_EINVAL;
                int rc = veil_rec_set_str(r, "event_id", ev->event_id);
                rc |= veil_rec_set_str(r, "user_id", ev->user_id);
                rc |= veil_rec_set_long(r, "ts", ev->ts_ms);
                rc |= veil_rec_set_str(r, "type", ev->type);
                rc |= veil_rec_set_str(r, "item_id", ev->item_id);
                rc |= veil_rec_set_double(r, "value", ev->value);
                if (rc)
                        return -VEIL_EINVAL;
                if (veil_out_emit(s->st, "events", ev->user_id,
                                  strlen(ev->user_id)) == -VEIL_EINVAL) {
                        ev->status = VEIL_DEAD_LETTER;
                        ev->reason = "careless: its record was refused";
                }
        }
        if (s->drop_last && b->n &&
            b->events[b->n - 1].status == VEIL_PASS)
                veil_event_drop(b, &b->events[b->n - 1], "careless: last");
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

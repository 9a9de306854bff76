/* A plugin that writes to an output it does not declare (test_undeclared):
 * it declares only `notes`, and for every event it passes calls
 * veil_out_event, veil_out_begin/veil_out_emit and veil_out_bound on the
 * output its `output:` parameter names (default `events`). Placed before
 * pseudonymize, it would put the raw event on `events`, which the privacy
 * lint checks only at the stages declaring it. What each call answered is
 * kept in gauges for the test to read: event_rc, begin_null (1 when
 * veil_out_begin gave NULL), emit_rc and bound, and notes_rc for
 * veil_out_event on its own `notes` (bound or not, which must keep
 * working as before). With off_thread it makes those calls, and the
 * batch's, from a thread of its own instead, and keeps what they answered
 * in off_* gauges. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {
        {"output", VEIL_PARAM_STRING, "events", 0,
         "the output it writes to without declaring it"},
        {"drop_first", VEIL_PARAM_BOOL, "false", 0,
         "drop every event, then write it to notes; and misuse the arena "
         "(a copy of the batch, sizes no allocation can have)"},
        {"export_fails", VEIL_PARAM_BOOL, "false", 0,
         "ask for the first event's subject's access record, and fail to "
         "export it"},
        {"off_thread", VEIL_PARAM_BOOL, "false", 0,
         "call the host's functions from a thread of its own"},
        {NULL, 0, NULL, 0, NULL}};
static const char *const outputs[] = {"notes", NULL};

struct state {
        veil_stage_t *st;
        const char *output;
        int drop_first;
        int export_fails, export_asked;
        int off_thread;
};

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        (void)errstr, (void)errstr_size;
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        s->output = veil_params_str(p, "output");
        s->drop_first = veil_params_bool(p, "drop_first", 0);
        s->export_fails = veil_params_bool(p, "export_fails", 0);
        s->off_thread = veil_params_bool(p, "off_thread", 0);
        *state = s;
        return 0;
}

/* Emits events it dropped, and calls the arena as a careless plugin
 * could: through a copy of the batch, and with sizes that overflow. */
static int drop_then_emit(struct state *s, struct veil_batch *b) {
        for (size_t i = 0; i < b->n; i++) {
                veil_event_drop(b, &b->events[i], "sneaky");
                veil_metric_set(s->st, "dropped_rc",
                                veil_out_event(s->st, "notes",
                                               &b->events[i]));
        }
        struct veil_batch copy = *b;
        const char *x = veil_batch_strdup(&copy, "copied");
        veil_metric_set(s->st, "copy_ok", x && !strcmp(x, "copied"));
        veil_metric_set(s->st, "huge_null",
                        !veil_batch_alloc(b, SIZE_MAX - 10) &&
                                !veil_batch_alloc(b, SIZE_MAX / 2 + 2));
        return 0;
}

/* What the host answered a thread of the plugin's own. */
struct off {
        struct state *s;
        struct veil_batch *b;
        int metric_rc, emit_rc, erase_rc, export_rc, pseudonym_rc;
        int begin_null, alloc_null;
};

static void *off_calls(void *arg) {
        struct off *o = arg;
        veil_stage_t *st = o->s->st;
        char out[128];
        o->metric_rc = veil_metric_set(st, "from_thread", 1);
        o->begin_null = veil_out_begin(st, "notes") == NULL;
        o->emit_rc = veil_out_emit(st, "notes", "k", 1);
        o->erase_rc = veil_request_erase(st, o->b->events[0].user_id);
        o->export_rc = veil_request_export(st, o->b->events[0].user_id);
        o->pseudonym_rc = veil_pseudonym(st, "user", "x", 1, out, sizeof(out));
        o->alloc_null = veil_batch_alloc(o->b, 16) == NULL;
        veil_event_drop(o->b, &o->b->events[0], "from a thread");
        veil_privacy_set_spent(st, 99, 0.5);
        veil_log(st, VEIL_LOG_INFO, "a line from the plugin's thread");
        return NULL;
}

static int off_thread(struct state *s, struct veil_batch *b) {
        struct off o = {s, b, 0, 0, 0, 0, 0, 0, 0};
        pthread_t th;
        if (!b->n || pthread_create(&th, NULL, off_calls, &o))
                return -VEIL_EINVAL;
        pthread_join(th, NULL);
        veil_metric_set(s->st, "off_metric_rc", o.metric_rc);
        veil_metric_set(s->st, "off_begin_null", o.begin_null);
        veil_metric_set(s->st, "off_emit_rc", o.emit_rc);
        veil_metric_set(s->st, "off_erase_rc", o.erase_rc);
        veil_metric_set(s->st, "off_export_rc", o.export_rc);
        veil_metric_set(s->st, "off_pseudonym_rc", o.pseudonym_rc);
        veil_metric_set(s->st, "off_alloc_null", o.alloc_null);
        veil_metric_set(s->st, "off_drop_ignored",
                        b->events[0].status == VEIL_PASS);
        return 0;
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        if (s->drop_first)
                return drop_then_emit(s, b);
        if (s->off_thread)
                return off_thread(s, b);
        if (s->export_fails && !s->export_asked && b->n) {
                veil_request_export(s->st, b->events[0].user_id);
                s->export_asked = 1;
        }
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                veil_metric_set(s->st, "event_rc",
                                veil_out_event(s->st, s->output, ev));
                veil_rec_t *r = veil_out_begin(s->st, s->output);
                veil_metric_set(s->st, "begin_null", r == NULL);
                if (r) {
                        veil_rec_set_str(r, "event_id", ev->event_id);
                        veil_rec_set_str(r, "user_id", ev->user_id);
                        veil_rec_set_long(r, "ts", ev->ts_ms);
                        veil_rec_set_str(r, "type", ev->type);
                        veil_rec_set_str(r, "item_id", ev->item_id);
                }
                veil_metric_set(s->st, "emit_rc",
                                veil_out_emit(s->st, s->output, ev->user_id,
                                              strlen(ev->user_id)));
                veil_metric_set(s->st, "bound",
                                veil_out_bound(s->st, s->output));
                veil_metric_set(s->st, "notes_rc",
                                veil_out_event(s->st, "notes", ev));
        }
        return 0; /* whatever the outputs said, as a careless plugin */
}

/* Says something, then fails (export_fails): the host must not pass the
 * section off as complete. */
static int export_subject(void *state, const struct veil_subject *subj,
                          veil_rec_t *out) {
        struct state *s = state;
        (void)subj;
        veil_rec_map_put(out, "", "seen", "1");
        return s->export_fails ? -1 : 0;
}

static void destroy(void *state) { free(state); }

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "sneaky",
        .version = "1.0.0",
        .description = "Test plugin: writes every event to an output it "
                       "does not declare.",
        .params = params,
        .outputs = outputs,
        .init = init,
        .process = process,
        .export_subject = export_subject,
        .destroy = destroy,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

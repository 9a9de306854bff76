/*
 * holder — a test stage that keeps per-person state the way a profile
 * stage does: for each subject pseudonym of a personalized event, the
 * number of such events. It implements erase and export so the tests can
 * see an erasure reach a stage other than consent, and a section in the
 * access record come from one. Stage-local, pseudonymous, small.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

struct held {
        char *subject;
        long events;
};

struct state {
        struct held *h;
        size_t n, cap;
        veil_stage_t *st;
};

static struct held *find(struct state *s, const char *subject) {
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->h[i].subject, subject))
                        return &s->h[i];
        return NULL;
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        /* HOLDER_EMIT_DLQ set: tries to produce to dead_letter, which takes
         * no records from plugins; the batch fails unless it is refused. */
        if (getenv("HOLDER_EMIT_DLQ") && b->n &&
            (veil_out_bound(s->st, "dead_letter") ||
             veil_out_event(s->st, "dead_letter", &b->events[0]) !=
                     -VEIL_EINVAL))
                return -VEIL_EIO;
        for (size_t i = 0; i < b->n; i++) {
                const struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS ||
                    ev->tier != VEIL_TIER_PERSONALIZED || !ev->subject)
                        continue;
                struct held *h = find(s, ev->subject);
                if (!h) {
                        if (s->n == s->cap) {
                                size_t cap = s->cap ? s->cap * 2 : 16;
                                struct held *n =
                                        realloc(s->h, cap * sizeof(*n));
                                if (!n)
                                        return -VEIL_ENOMEM;
                                s->h = n;
                                s->cap = cap;
                        }
                        h = &s->h[s->n++];
                        h->subject = strdup(ev->subject);
                        h->events = 0;
                }
                h->events++;
        }
        return 0;
}

/* HOLDER_FAIL_ERASE set: every erase fails, as a stage whose store is
 * down would, so the tests see how the host reports it. */
static int erase(void *state, const struct veil_subject *subj) {
        struct state *s = state;
        if (getenv("HOLDER_FAIL_ERASE"))
                return -VEIL_EIO;
        struct held *h = subj->pseudonym ? find(s, subj->pseudonym) : NULL;
        if (h) {
                free(h->subject);
                *h = s->h[--s->n];
        }
        return 0;
}

static int export_subject(void *state, const struct veil_subject *subj,
                          veil_rec_t *out) {
        struct state *s = state;
        struct held *h = subj->pseudonym ? find(s, subj->pseudonym) : NULL;
        if (h) {
                char n[32];
                snprintf(n, sizeof(n), "%ld", h->events);
                veil_rec_map_put(out, "", "personalized_events", n);
        }
        return 0;
}

static void destroy(void *state) {
        struct state *s = state;
        for (size_t i = 0; i < s->n; i++)
                free(s->h[i].subject);
        free(s->h);
        free(s);
}

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        (void)p;
        (void)errstr;
        (void)errstr_size;
        struct state *s = calloc(1, sizeof(struct state));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        *state = s;
        return 0;
}

static const struct veil_param_def params[] = {{NULL, 0, NULL, 0, NULL}};

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "holder",
        .version = "0",
        .description = "test stage keeping per-person counts",
        .params = params,
        .init = init,
        .process = process,
        .destroy = destroy,
        .erase = erase,
        .export_subject = export_subject,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

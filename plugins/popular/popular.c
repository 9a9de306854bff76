/*
 * popular — recommends the k items bought or seen most often so far.
 *
 * Non-personal and the evaluation baseline for the learned model. Its
 * counts are exact, so it is NOT differentially private: its records carry
 * epsilon_spent = null, and a production pipeline uses dp_model instead.
 *
 * Per event: recommend from the counts so far (prequential: recommend,
 * then learn), then count the event's item — behind a consent stage only
 * when the event's consent allows analytics. Counts only ever grow by one, so
 * a sorted top-(k+1) list kept beside the hash table stays exact.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {
        {"k", VEIL_PARAM_INT, "10", 0, "items per recommendation (1..100)"},
        {"max_items", VEIL_PARAM_INT, "1000000", 0,
         "distinct items counted; interactions with further new items are "
         "not counted (gauge items_ignored)"},
        {NULL, 0, NULL, 0, NULL}};
static const char *const outputs[] = {"recommendations", NULL};

struct item {
        char *id; /* NULL: empty slot */
        uint64_t count;
};

struct state {
        veil_stage_t *st;
        int k;
        size_t max_items;
        struct item *tab; /* open addressing, power of two */
        size_t cap, n;
        struct item **top; /* k+1 entries sorted by count, descending */
        int n_top;
        uint64_t events;
        uint64_t counted, not_counted; /* gauges: counts of events */
        uint64_t ignored; /* gauge: events whose item found no room */
};

static uint64_t hash(const char *s) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

static int grow(struct state *s) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        struct item *tab = calloc(cap, sizeof(*tab));
        if (!tab)
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
                if (!s->tab[i].id)
                        continue;
                size_t j = hash(s->tab[i].id) & (cap - 1);
                while (tab[j].id)
                        j = (j + 1) & (cap - 1);
                tab[j] = s->tab[i];
                /* The top list points into the table: follow the move. */
                for (int t = 0; t < s->n_top; t++)
                        if (s->top[t] == &s->tab[i])
                                s->top[t] = &tab[j];
        }
        free(s->tab);
        s->tab = tab;
        s->cap = cap;
        return 0;
}

static struct item *lookup(struct state *s, const char *id, int insert) {
        if (insert && (s->n + 1) * 4 > s->cap * 3 && grow(s))
                return NULL;
        if (!s->cap)
                return NULL;
        size_t j = hash(id) & (s->cap - 1);
        while (s->tab[j].id) {
                if (!strcmp(s->tab[j].id, id))
                        return &s->tab[j];
                j = (j + 1) & (s->cap - 1);
        }
        if (!insert || s->n >= s->max_items)
                return NULL;
        if (!(s->tab[j].id = strdup(id)))
                return NULL;
        s->n++;
        return &s->tab[j];
}

/* 0 when the item is not counted: a new one with max_items counted
 * already (or no memory for it). */
static int count(struct state *s, const char *id) {
        struct item *it = lookup(s, id, 1);
        if (!it)
                return 0;
        it->count++;
        int pos = -1;
        for (int t = 0; t < s->n_top; t++)
                if (s->top[t] == it)
                        pos = t;
        if (pos < 0) {
                if (s->n_top <= s->k)
                        pos = s->n_top++;
                else if (it->count > s->top[s->k]->count)
                        pos = s->k;
                else
                        return 1;
                s->top[pos] = it;
        }
        /* Ties keep their older rank: a stable, reproducible order. */
        while (pos > 0 && s->top[pos - 1]->count < it->count) {
                s->top[pos] = s->top[pos - 1];
                s->top[--pos] = it;
        }
        return 1;
}

static const char *tier_name(veil_tier_t t) {
        switch (t) {
        case VEIL_TIER_NONE: return "none";
        case VEIL_TIER_CONTEXTUAL: return "contextual";
        case VEIL_TIER_PERSONALIZED: return "personalized";
        default: return "undecided";
        }
}

static int recommend(struct state *s, const struct veil_batch *b,
                     const struct veil_event *ev) {
        veil_rec_t *r = veil_out_begin(s->st, "recommendations");
        if (!r)
                return 0;
        const char *subject = ev->subject ? ev->subject : "";
        veil_rec_set_str(r, "subject", subject);
        veil_rec_set_str(r, "event_id", ev->event_id ? ev->event_id : "");
        int n = 0;
        for (int t = 0; t < s->n_top && n < s->k; t++) {
                if (ev->item_id && !strcmp(s->top[t]->id, ev->item_id))
                        continue;
                veil_rec_t *it = veil_rec_append(r, "items");
                if (!it)
                        return -VEIL_EINVAL;
                veil_rec_set_str(it, "item_id", s->top[t]->id);
                veil_rec_set_double(it, "score", (double)s->top[t]->count);
                n++;
        }
        veil_rec_set_str(r, "tier", tier_name(ev->tier));
        veil_rec_set_str(r, "explanation",
                         "most popular items so far (baseline, exact counts, "
                         "not differentially private)");
        veil_rec_set_long(r, "model_version", (int64_t)s->events);
        veil_rec_set_null(r, "epsilon_spent"); /* not private */
        veil_rec_set_double(r, "delta", 0.0);
        veil_rec_set_long(r, "ts", b->now_ms);
        return veil_out_emit(s->st, "recommendations", subject,
                             strlen(subject));
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                int rc = recommend(s, b, ev);
                if (rc == -VEIL_EINVAL) {
                        /* The recommendation cannot be written (too large
                         * for its topic, or not valid for its schema; the
                         * host logged which): the event goes to the
                         * dead-letter topic, uncounted like any event that
                         * stops before this stage, and the stream goes
                         * on. */
                        veil_event_dead_letter(
                                b, ev,
                                "popular: the event's recommendation record "
                                "could not be written (see the log)");
                        continue;
                }
                if (rc < 0)
                        return rc; /* the batch is not committed */
                /* Counting is the analytics purpose: with a consent stage
                 * (a decided tier), only the events whose consent allows
                 * it count; everyone is still served. */
                if (ev->tier != VEIL_TIER_UNDECIDED && !ev->analytics) {
                        s->not_counted++;
                } else if (ev->item_id) {
                        /* The table is full once max_items ids are in:
                         * items first seen later are never counted, which
                         * only this gauge shows (raise max_items). */
                        if (count(s, ev->item_id))
                                s->counted++;
                        else
                                s->ignored++;
                }
                s->events++;
        }
        veil_metric_set(s->st, "events_counted", (double)s->counted);
        veil_metric_set(s->st, "not_counted_no_analytics",
                        (double)s->not_counted);
        veil_metric_set(s->st, "items_ignored", (double)s->ignored);
        return 0;
}

static void destroy(void *state) {
        struct state *s = state;
        if (!s)
                return;
        for (size_t i = 0; i < s->cap; i++)
                free(s->tab[i].id);
        free(s->tab);
        free(s->top);
        free(s);
}

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        int64_t k = veil_params_int(p, "k", 10);
        int64_t max_items = veil_params_int(p, "max_items", 1000000);
        if (k < 1 || k > 100) {
                snprintf(errstr, errstr_size,
                         "%s: k must be between 1 and 100, got %lld",
                         veil_params_where(p, "k"), (long long)k);
                return -VEIL_EINVAL;
        }
        if (max_items < 1) {
                snprintf(errstr, errstr_size,
                         "%s: max_items must be at least 1",
                         veil_params_where(p, "max_items"));
                return -VEIL_EINVAL;
        }
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        s->k = (int)k;
        s->max_items = (size_t)max_items;
        s->top = calloc((size_t)k + 1, sizeof(*s->top));
        if (!s->top) {
                free(s);
                return -VEIL_ENOMEM;
        }
        *state = s;
        return 0;
}

/* For `veil notice`, from the parameters. */
static void notice(const veil_params_t *p, veil_notice_t *n) {
        long long k = (long long)veil_params_int(p, "k", 10);
        long long max_items = (long long)veil_params_int(p, "max_items",
                                                         1000000);
        veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                        "To rank popular items we use only which item each "
                        "interaction is about, and only when you allowed "
                        "analytics (where consent is asked).");
        veil_notice_add(n, VEIL_NOTICE_PURPOSE,
                        "With every interaction we recommend the %lld items "
                        "that everyone interacted with most so far; this is "
                        "the same for everyone and does not depend on who "
                        "you are.",
                        k);
        veil_notice_add(n, VEIL_NOTICE_RETENTION,
                        "For popularity we keep one count per item (at most "
                        "%lld items; interactions with further items are not "
                        "counted), in memory until the service restarts "
                        "or reloads its configuration; "
                        "a count records no person.",
                        max_items);
        /* The counts go out with every list, each list keyed by the
         * pseudonym of the person it answers: the next list's counts
         * show the item of the interaction before (prequential: recommend,
         * then count), so together they tie that item to that pseudonym.
         * Ranks instead of counts would not close it: a count that goes up
         * moves its item past others, and a person's own list leaves out
         * the item in hand. */
        veil_notice_add(n, VEIL_NOTICE_PRIVACY,
                        "The popularity counts are exact, not "
                        "differentially private, and every list shows them: "
                        "an interaction we count raises its item's count by "
                        "one in the lists that follow, and the list made for "
                        "an interaction, sent under the person's pseudonym, "
                        "leaves out the item it is about, so whoever can "
                        "read the recommendations can often tell which item "
                        "the person behind a pseudonym interacted with.");
}

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "popular",
        .version = "1.0.0",
        .description = "Recommends the k most frequent items so far; "
                       "non-personal; the evaluation baseline (exact counts, "
                       "not differentially private).",
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

/*
 * replay.c — `veil replay PIPELINE.yaml --events FILE.csv [--evaluate]`:
 * the pipeline's plugin chain in-process over a CSV of events, without
 * Kafka, in batches of the pipeline's max_events; prints throughput.
 *
 * --evaluate scores every recommendation against the same user's next
 * event (prequential: the chain recommends, then learns, batch by batch)
 * and prints hit-rate@K and NDCG@K (K the pipeline's list length, at
 * most 10) next to those of the `popular` baseline on the same stream,
 * its lists cut to the pipeline's length event by event. The baseline is the popular plugin itself,
 * run as a second in-process pipeline in lock-step (same batches, same
 * events), and it is scored on exactly the events the pipeline answered,
 * so both numbers describe the same predictions.
 *
 * Outputs are decoded with the output codec and kept in memory; side
 * inputs are not replayed. User ids are held in memory to find each user's
 * next event and are never printed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "codec.h"
#include "csv.h"
#include "log.h"

#define EVAL_K 10

/* ---- string → int dictionaries (users, items, event ids) ----------- */

struct dict {
        char **key;
        int *val;
        size_t cap, n;
};

static uint64_t hash_str(const char *s) {
        uint64_t h = 14695981039346656037ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

static void dict_free(struct dict *d) {
        for (size_t i = 0; i < d->cap; i++)
                free(d->key[i]);
        free(d->key);
        free(d->val);
        memset(d, 0, sizeof(*d));
}

static void dict_clear(struct dict *d) {
        for (size_t i = 0; i < d->cap; i++) {
                free(d->key[i]);
                d->key[i] = NULL;
        }
        d->n = 0;
}

/* Index of key (inserted with value `val` when absent), -1 on no memory. */
static long dict_slot(struct dict *d, const char *key, int insert, int val) {
        if (insert && (d->n + 1) * 2 > d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 1024;
                char **k = calloc(cap, sizeof(char *));
                int *v = calloc(cap, sizeof(int));
                if (!k || !v) {
                        free(k);
                        free(v);
                        return -1;
                }
                for (size_t i = 0; i < d->cap; i++) {
                        if (!d->key[i])
                                continue;
                        size_t j = hash_str(d->key[i]) & (cap - 1);
                        while (k[j])
                                j = (j + 1) & (cap - 1);
                        k[j] = d->key[i];
                        v[j] = d->val[i];
                }
                free(d->key);
                free(d->val);
                d->key = k;
                d->val = v;
                d->cap = cap;
        }
        if (!d->cap)
                return -1;
        size_t j = hash_str(key) & (d->cap - 1);
        while (d->key[j]) {
                if (!strcmp(d->key[j], key))
                        return (long)j;
                j = (j + 1) & (d->cap - 1);
        }
        if (!insert || !(d->key[j] = strdup(key)))
                return -1;
        d->val[j] = val;
        d->n++;
        return (long)j;
}

/* ---- the evaluation -------------------------------------------------- */

struct rec {
        int n;
        int item[EVAL_K];
};

/* One event of the batch being evaluated. */
struct slot {
        int user, item;
        long line; /* the event's line in the CSV, for messages */
        int64_t ts; /* the event's time (ms), 0 when it has none */
        int answered; /* the pipeline emitted a recommendation */
        struct rec model, pop;
};

struct pending {
        int has;
        int64_t ts; /* of the event the recommendation answered */
        struct rec model, pop;
};

struct eval {
        struct dict items, users, ids; /* ids: event id → slot, per batch */
        struct slot *slots;
        size_t n_slots, cap_slots;
        struct pending *pend; /* by user */
        size_t cap_pend;
        uint64_t scored;
        double hits[2], ndcg[2];
        /* The pairs whose next event came later than the one recommended
         * for: a later visit. The others have the same time, which in
         * shop data is the rest of the same basket (an invoice's lines
         * share their time), arriving together in a live stream. */
        uint64_t later;
        double later_hits[2], later_ndcg[2];
        int k; /* the longest list the pipeline emitted (≤ EVAL_K) */
};

struct capture {
        struct veil_codec *codec;
        const char *topic;
        struct eval *ev; /* NULL: count only */
        int which;       /* 0 the pipeline, 1 popular */
        uint64_t records, dead_letters, other;
        /* The pipeline's dead letters are shown (the baseline's are the
         * same events'): `file` the CSV's name, NULL for none; `line` the
         * line of the event being added, 0 outside the call that adds it
         * (a stage's dead letters are shown once their batch ran). */
        const char *file;
        long line;
        uint64_t shown;
};

/* The first few dead letters, each with its line, stage and error: the
 * count alone told neither why nor where (a file with ms in its ts column
 * dead-letters every event). The errors name fields, never their ids or
 * text (a time out of range is given in ms): the host writes them to the
 * dead-letter topic's headers too. */
#define DEAD_LETTERS_SHOWN 5

static void show_dead_letter(struct capture *c, long line, const char *stage,
                             const char *error) {
        if (c->shown++ < DEAD_LETTERS_SHOWN)
                fprintf(stderr, "veil replay: %s:%ld: dead letter (stage "
                                "'%s'): %s\n",
                        c->file, line, stage ? stage : "?",
                        error ? error : "no reason given");
}

static int item_id(struct eval *e, const char *id) {
        long j = dict_slot(&e->items, id, 1, (int)e->items.n);
        return j < 0 ? -1 : e->items.val[j];
}

static int produce(void *ctx, const char *topic, const void *key,
                   size_t key_len, const void *value, size_t value_len,
                   const struct veil_dead_letter *dl) {
        struct capture *c = ctx;
        (void)key;
        (void)key_len;
        if (dl) {
                c->dead_letters++;
                if (c->file && c->line)
                        show_dead_letter(c, c->line, dl->stage, dl->error);
                return 0;
        }
        if (!c->topic || strcmp(topic, c->topic)) {
                c->other++;
                return 0;
        }
        c->records++;
        if (!c->ev)
                return 0;
        const veil_rec_t *r;
        char err[256];
        if (veil_codec_decode_rec(c->codec, value, value_len, &r, err,
                                  sizeof(err)))
                return -VEIL_EDECODE;
        const char *eid;
        size_t len;
        if (veil_rec_get_str(r, "event_id", &eid, &len))
                return 0;
        long j = dict_slot(&c->ev->ids, eid, 0, 0);
        if (j < 0)
                return 0; /* not an event of this batch */
        struct slot *s = &c->ev->slots[c->ev->ids.val[j]];
        struct rec *out = c->which ? &s->pop : &s->model;
        if (!c->which)
                s->answered = 1;
        out->n = 0;
        size_t n = veil_rec_array_size(r, "items");
        for (size_t i = 0; i < n && out->n < EVAL_K; i++) {
                const veil_rec_t *it = veil_rec_array_at(r, "items", i);
                const char *item;
                if (it && !veil_rec_get_str(it, "item_id", &item, &len))
                        out->item[out->n++] = item_id(c->ev, item);
        }
        return 0;
}

static void score(struct eval *e, const struct rec *r, int target, int which,
                  int later) {
        for (int i = 0; i < r->n; i++) {
                if (r->item[i] == target) {
                        e->hits[which] += 1;
                        e->ndcg[which] += 1.0 / log2(i + 2.0);
                        if (later) {
                                e->later_hits[which] += 1;
                                e->later_ndcg[which] += 1.0 / log2(i + 2.0);
                        }
                        return;
                }
        }
}

/* After both pipelines ran the batch: each event closes its user's
 * pending recommendation and opens its own. */
static int eval_batch(struct eval *e) {
        for (size_t i = 0; i < e->n_slots; i++) {
                struct slot *s = &e->slots[i];
                if ((size_t)s->user >= e->cap_pend) {
                        size_t cap = e->cap_pend ? e->cap_pend : 1024;
                        while (cap <= (size_t)s->user)
                                cap *= 2;
                        struct pending *p = realloc(e->pend,
                                                    cap * sizeof(*p));
                        if (!p)
                                return -VEIL_ENOMEM;
                        memset(p + e->cap_pend, 0,
                               (cap - e->cap_pend) * sizeof(*p));
                        e->pend = p;
                        e->cap_pend = cap;
                }
                struct pending *p = &e->pend[s->user];
                if (p->has) {
                        int later = s->ts > p->ts;
                        e->scored++;
                        e->later += later;
                        score(e, &p->model, s->item, 0, later);
                        score(e, &p->pop, s->item, 1, later);
                        p->has = 0;
                }
                if (s->answered) {
                        /* popular is scored at the pipeline's length for
                         * the same event: a pipeline with k: 5 is not
                         * held against popular's 10. */
                        if (s->pop.n > s->model.n)
                                s->pop.n = s->model.n;
                        if (s->model.n > e->k)
                                e->k = s->model.n;
                        p->has = 1;
                        p->ts = s->ts;
                        p->model = s->model;
                        p->pop = s->pop;
                }
        }
        e->n_slots = 0;
        dict_clear(&e->ids);
        return 0;
}

/* Adds the batch's next event. Recommendations are matched to their
 * event by its id, so two events of one batch may not share one: that is
 * refused (-VEIL_EINVAL, the message in err naming both lines) rather
 * than both scored as the first. */
static int eval_add(struct eval *e, const struct veil_event *ev,
                    const char *file, long line, char *err,
                    size_t err_size) {
        const char *id = ev->event_id ? ev->event_id : "";
        long d = dict_slot(&e->ids, id, 0, 0);
        if (d >= 0) {
                snprintf(err, err_size,
                         "%s:%ld: the same event_id as line %ld, in the "
                         "same batch: --evaluate matches each "
                         "recommendation to its event by id, so the events "
                         "of a batch need ids of their own (an empty "
                         "event_id gets a generated one)",
                         file, line, e->slots[e->ids.val[d]].line);
                return -VEIL_EINVAL;
        }
        if (e->n_slots == e->cap_slots) {
                size_t cap = e->cap_slots ? e->cap_slots * 2 : 1024;
                struct slot *s = realloc(e->slots, cap * sizeof(*s));
                if (!s)
                        return -VEIL_ENOMEM;
                e->slots = s;
                e->cap_slots = cap;
        }
        struct slot *s = &e->slots[e->n_slots];
        memset(s, 0, sizeof(*s));
        long u = dict_slot(&e->users, ev->user_id, 1, (int)e->users.n);
        s->item = item_id(e, ev->item_id);
        if (u < 0 || s->item < 0 ||
            dict_slot(&e->ids, id, 1, (int)e->n_slots) < 0) {
                snprintf(err, err_size, "out of memory");
                return -VEIL_ENOMEM;
        }
        s->user = e->users.val[u];
        s->line = line;
        s->ts = ev->ts_ms > 0 ? ev->ts_ms : 0;
        e->n_slots++;
        return 0;
}

static void eval_free(struct eval *e) {
        dict_free(&e->items);
        dict_free(&e->users);
        dict_free(&e->ids);
        free(e->slots);
        free(e->pend);
}

/* ---- the command ------------------------------------------------------ */

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int usage(FILE *f, int rc) {
        fprintf(f,
                "usage: veil replay PIPELINE.yaml --events FILE.csv "
                "[--evaluate] [--column NAME=FIELD]... [--limit N] "
                "[--batch N] [--batch-wait MS]\n"
                "Runs the pipeline's plugin chain in-process over a CSV of "
                "events (plain or gzip; --events - reads it from stdin; no "
                "Kafka, no side inputs) in batches "
                "of the pipeline's max_events, and prints the throughput.\n"
                "Columns are found by header name (ts, ts_ms, user_id, "
                "item, qty, invoice, country and any interaction field: "
                "event_id, type, device, timezone…); --column NAME=FIELD "
                "reads column NAME as FIELD (e.g. --column "
                "customer=user_id), one --column per column; NAME is the "
                "header's own name, so two --column can swap columns; "
                "--column NAME=- leaves column NAME out (two columns read "
                "as one field, such as item and item_id, are refused).\n"
                "--evaluate: prequential evaluation: every recommendation "
                "the pipeline emits is scored against the same user's next "
                "event (recommendations are matched to their events by "
                "event_id, so the events of one batch need ids of their own; "
                "an empty event_id gets a generated one); prints "
                "hit-rate@K and NDCG@K next to the popular plugin's, run "
                "in lock-step on the same events (K: the length of the "
                "pipeline's lists, at most 10; popular's are "
                "cut to the same length), then the same for the pairs whose "
                "next event came at a later time (a later visit; in shop "
                "data the others are the rest of the same basket).\n"
                "Dead letters (events refused: an id too long, a time out "
                "of range such as ms in a ts column) are shown on stderr "
                "with their line, stage and error, the first five, then "
                "counted; --evaluate exits 1 when every event was "
                "dead-lettered.\n"
                "The plugins' clock (profile expiry, record times, "
                "dp_model's steps on the clock) is the latest event time "
                "read so far, as the wall clock would be in a live stream: "
                "the file's order is taken as the order of arrival, so sort "
                "it by time (the summary counts events earlier than one "
                "before them).\n"
                "--limit N: the first N events only. --batch N: batches of "
                "N events instead of max_events. --batch-wait MS: a batch "
                "also closes before an event more than MS milliseconds of "
                "event time after the batch's first, as a live host's "
                "closes max_wait_ms after its first event arrived (use the "
                "pipeline's max_wait_ms to replay a stream's batches; "
                "without it a batch of a quiet hour spans the hour).\n"
                "Privacy: a private dp_model stage (mechanism gaussian or "
                "tree) charges its accountant_file as a live run does, and "
                "the spend is never given back: replaying the production "
                "pipeline spends its real budget. Replay a copy whose "
                "accountant_file is a scratch file (for demo.yaml, "
                "VEIL_DEMO_ACCOUNTANT=/tmp/scratch.acc).\n");
        return rc;
}

/* A whole decimal number, 0 or more, into *out; -1 when s is not one. */
static int nonneg(const char *s, long long *out) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < 0)
                return -1;
        *out = v;
        return 0;
}

int veil_cmd_replay(int argc, char **argv) {
        const char *file = NULL, *events = NULL;
        int evaluate = 0;
        long long limit = -1, wait_ms = -1; /* wait_ms -1: by count alone */
        long long batch = 0;
        const char **cols = calloc((size_t)argc + 1, sizeof(char *));
        size_t n_cols = 0;
        if (!cols)
                return VEIL_EXIT_RUNTIME;
        if (veil_cli_wants_help(argc, argv)) {
                free(cols);
                return usage(stdout, VEIL_EXIT_OK);
        }
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (!strcmp(a, "--events") && i + 1 < argc) {
                        events = argv[++i];
                } else if (!strcmp(a, "--evaluate")) {
                        evaluate = 1;
                } else if (!strcmp(a, "--column") && i + 1 < argc) {
                        cols[n_cols++] = argv[++i];
                } else if (!strcmp(a, "--limit") && i + 1 < argc) {
                        if (nonneg(argv[++i], &limit)) {
                                fprintf(stderr, "veil replay: --limit must "
                                                "be a number of events, 0 "
                                                "or more\n");
                                free(cols);
                                return VEIL_EXIT_USAGE;
                        }
                } else if ((!strcmp(a, "--events") ||
                            !strcmp(a, "--column") ||
                            !strcmp(a, "--limit") || !strcmp(a, "--batch") ||
                            !strcmp(a, "--batch-wait")) &&
                           i + 1 == argc) {
                        fprintf(stderr, "veil replay: %s needs a value\n", a);
                        free(cols);
                        return usage(stderr, VEIL_EXIT_USAGE);
                } else if (!strcmp(a, "--batch") && i + 1 < argc) {
                        if (nonneg(argv[++i], &batch) || batch < 1 ||
                            batch > 1000000) {
                                fprintf(stderr, "veil replay: --batch must "
                                                "be a number of events, "
                                                "1..1000000, got '%s'\n",
                                        argv[i]);
                                free(cols);
                                return VEIL_EXIT_USAGE;
                        }
                } else if (!strcmp(a, "--batch-wait") && i + 1 < argc) {
                        if (nonneg(argv[++i], &wait_ms)) {
                                fprintf(stderr, "veil replay: --batch-wait "
                                                "must be milliseconds, 0 or "
                                                "more (the pipeline's "
                                                "input.batch.max_wait_ms "
                                                "replays a live stream's "
                                                "batches)\n");
                                free(cols);
                                return VEIL_EXIT_USAGE;
                        }
                } else if (a[0] == '-') {
                        fprintf(stderr, "veil replay: unknown option '%s'\n",
                                a);
                        free(cols);
                        return usage(stderr, VEIL_EXIT_USAGE);
                } else if (!file) {
                        file = a;
                } else {
                        fprintf(stderr, "veil replay: one pipeline only, got "
                                        "an extra argument '%s'\n",
                                a);
                        free(cols);
                        return VEIL_EXIT_USAGE;
                }
        }
        if (!file || !events) {
                free(cols);
                return usage(stderr, VEIL_EXIT_USAGE);
        }
        veil_cli_quiet_by_default();
        struct veil_cli_pipeline cp;
        int rc = veil_cli_open(&cp, file, 0);
        if (rc) {
                free(cols);
                return rc;
        }
        char err[2048];
        struct veil_csv *csv = NULL;
        if (veil_csv_open_mapped(&csv, events, cols, n_cols, err,
                                 sizeof(err))) {
                fprintf(stderr, "veil replay: %s\n", err);
                veil_cli_close(&cp);
                free(cols);
                return VEIL_EXIT_USAGE;
        }
        free(cols);

        const struct veil_binding *recb =
                veil_config_output(cp.cfg, "recommendations");
        struct eval ev;
        memset(&ev, 0, sizeof(ev));
        const char *csv_name = strcmp(events, "-") ? events : "stdin";
        struct capture cap_main = {
                veil_pipeline_output_codec(cp.p, "recommendations"),
                recb ? recb->topic : NULL, evaluate ? &ev : NULL, 0, 0, 0, 0,
                csv_name, 0, 0};
        veil_pipeline_set_sink(cp.p, (struct veil_sink){produce, &cap_main});

        /* The baseline: the same configuration with popular as its only
         * stage (defaults: k = 10), sharing the keyring. */
        struct veil_pipeline *pop = NULL;
        struct veil_config pcfg;
        char use[] = "popular";
        struct veil_stage_cfg pstage = {use, NULL, 1, 1};
        struct capture cap_pop = {NULL, recb ? recb->topic : NULL, &ev, 1,
                                  0, 0, 0, NULL, 0, 0};
        if (evaluate) {
                if (!recb) {
                        fprintf(stderr,
                                "veil replay: %s binds no recommendations "
                                "output: nothing to evaluate\n",
                                cp.cfg->file);
                        veil_csv_close(csv);
                        veil_cli_close(&cp);
                        return VEIL_EXIT_USAGE;
                }
                pcfg = *cp.cfg;
                pcfg.stages = &pstage;
                pcfg.n_stages = 1;
                char **dirs;
                size_t nd;
                veil_cli_plugin_path(&dirs, &nd);
                struct veil_pipeline_opts o = {dirs, nd, cp.keyring, 0};
                rc = veil_pipeline_new(&pop, &pcfg, &o, err, sizeof(err));
                veil_cli_free_path(dirs, nd);
                if (rc) {
                        fprintf(stderr, "veil replay: the popular baseline: "
                                        "%s\n",
                                err);
                        veil_csv_close(csv);
                        veil_cli_close(&cp);
                        return VEIL_EXIT_RUNTIME;
                }
                cap_pop.codec = veil_pipeline_output_codec(pop,
                                                           "recommendations");
                veil_pipeline_set_sink(pop, (struct veil_sink){produce,
                                                               &cap_pop});
        }

        size_t bsize = batch ? (size_t)batch
                             : (size_t)(cp.cfg->max_events > 0
                                                ? cp.cfg->max_events
                                                : 256);
        /* Counted as their batch completes: a batch an error cut short
         * (a malformed line mid-batch) is reported apart. */
        uint64_t n_events = 0, n_batches = 0, n_behind = 0;
        uint64_t n_unfinished = 0;
        /* The last line of the last batch that ran: an error after it
         * leaves their evaluation standing, up to there. */
        long ran_to_line = 0;
        /* What the counters held before the batch now running: a batch
         * cut short is left out whole, its dead letters (made as its
         * events were added) and any records and drops included. */
        uint64_t records0 = 0, dead0 = 0, *drops0 = NULL;
        int done = 0, failed = 0;
        size_t n_drops0 = 0;
        /* The line of each event of the batch, to show a stage's dead
         * letters at theirs. */
        long *lines = calloc(bsize, sizeof(*lines));
        if (!lines) {
                snprintf(err, sizeof(err), "out of memory");
                failed = 1;
        }
        int64_t clock_ms = 0;
        double t0 = now_s(), chain = 0;
        while (!done && !failed) {
                records0 = cap_main.records;
                dead0 = cap_main.dead_letters;
                n_drops0 = veil_pipeline_n_drop_reasons(cp.p);
                uint64_t *d0 = n_drops0 ? realloc(drops0, n_drops0 *
                                                          sizeof(*d0))
                                        : drops0;
                if (n_drops0 && !d0) {
                        snprintf(err, sizeof(err), "out of memory");
                        failed = 1;
                        break;
                }
                drops0 = d0;
                for (size_t i = 0; i < n_drops0; i++)
                        veil_pipeline_drop_reason(cp.p, i, &drops0[i]);
                struct veil_batch *mb = veil_pipeline_batch_begin(cp.p),
                                  *pb = pop ? veil_pipeline_batch_begin(pop)
                                            : NULL;
                size_t n = 0;
                uint64_t behind = 0;
                /* The time of the batch's first event added: a
                 * dead-lettered one (a time in ms under ts: year 33658)
                 * opened no batch, and as first it held every later event
                 * in its batch, cut by count alone. */
                int64_t first_ms = 0;
                int opened = 0;
                long last_line = 0;
                while (n < bsize) {
                        if (limit >= 0 && n_events + n >= (uint64_t)limit) {
                                done = 1;
                                break;
                        }
                        struct veil_event e;
                        rc = veil_csv_next(csv, &e, err, sizeof(err));
                        if (rc <= 0) {
                                failed = rc < 0;
                                done = 1;
                                break;
                        }
                        /* A live batch closes max_wait_ms after its first
                         * event arrived: this event would have opened the
                         * next one. */
                        if (wait_ms >= 0 && opened &&
                            e.ts_ms > first_ms &&
                            (uint64_t)e.ts_ms - (uint64_t)first_ms >
                                    (uint64_t)wait_ms) {
                                veil_csv_unread(csv, &e);
                                break;
                        }
                        size_t at = mb->n;
                        long line = veil_csv_line(csv);
                        cap_main.line = line;
                        int added = veil_pipeline_batch_add_event(cp.p, &e);
                        cap_main.line = 0;
                        if (added > 0)
                                lines[at] = line;
                        if (added < 0 ||
                            (pop && veil_pipeline_batch_add_event(pop, &e) <
                                            0)) {
                                snprintf(err, sizeof(err), "out of memory");
                                failed = 1;
                                break;
                        }
                        n++;
                        last_line = line;
                        /* A dead-lettered event (an id too long, a time
                         * out of range) is neither scored nor moves the
                         * clock. */
                        if (!added)
                                continue;
                        if (!opened) {
                                opened = 1;
                                first_ms = e.ts_ms;
                        }
                        if (evaluate &&
                            eval_add(&ev, &e, csv_name,
                                     veil_csv_line(csv), err, sizeof(err))) {
                                failed = 1;
                                break;
                        }
                        if (e.ts_ms > clock_ms)
                                clock_ms = e.ts_ms;
                        else if (e.ts_ms < clock_ms)
                                behind++;
                }
                if (failed || !n) {
                        n_unfinished = n;
                        break;
                }
                /* The clock of a live stream is about the time its events
                 * arrive: here the latest event time so far (context's
                 * profile expiry would never fire over a year replayed in
                 * seconds). */
                if (clock_ms > 0) {
                        mb->now_ms = clock_ms;
                        if (pb)
                                pb->now_ms = clock_ms;
                }
                double t = now_s();
                rc = veil_pipeline_batch_run(cp.p, err, sizeof(err));
                chain += now_s() - t;
                if (!rc && pop)
                        rc = veil_pipeline_batch_run(pop, err, sizeof(err));
                if (!rc && evaluate)
                        rc = eval_batch(&ev);
                if (rc) {
                        failed = 1;
                        n_unfinished = n;
                        break;
                }
                n_batches++;
                ran_to_line = last_line;
                n_events += n;
                n_behind += behind;
                for (size_t i = 0; i < mb->n; i++)
                        if (mb->events[i].status == VEIL_DEAD_LETTER)
                                show_dead_letter(&cap_main, lines[i],
                                                 mb->events[i].stage,
                                                 mb->events[i].reason);
        }
        double secs = now_s() - t0;
        free(lines);
        if (cap_main.shown > DEAD_LETTERS_SHOWN)
                fprintf(stderr,
                        "veil replay: %llu more dead letters not shown (%llu "
                        "in all)\n",
                        (unsigned long long)(cap_main.shown -
                                             DEAD_LETTERS_SHOWN),
                        (unsigned long long)cap_main.shown);
        if (failed)
                fprintf(stderr, "veil replay: %s\n", err);
        printf("veil replay — %s over %s\n", cp.cfg->file, events);
        printf("  events:      %llu in %llu batches of up to %zu",
               (unsigned long long)n_events, (unsigned long long)n_batches,
               bsize);
        if (wait_ms >= 0)
                printf(", each within %lld ms of event time", wait_ms);
        printf("\n");
        uint64_t cut_records = 0, cut_dead = 0;
        if (n_unfinished) {
                cut_records = cap_main.records - records0;
                cut_dead = cap_main.dead_letters - dead0;
                printf("  stopped:     by the error above; the %llu events "
                       "read into the batch it cut short are not counted, "
                       "nor its outputs (%llu recommendations, %llu dead "
                       "letters)\n",
                       (unsigned long long)n_unfinished,
                       (unsigned long long)cut_records,
                       (unsigned long long)cut_dead);
        }
        printf("  throughput:  %.0f events/s through the chain (%.2f s in "
               "the plugins; %.2f s in all, with CSV reading%s)\n",
               chain > 0 ? (double)n_events / chain : 0.0, chain, secs,
               evaluate ? " and the baseline" : "");
        printf("  records:     %llu recommendations, %llu dead letters\n",
               (unsigned long long)(cap_main.records - cut_records),
               (unsigned long long)(cap_main.dead_letters - cut_dead));
        for (size_t i = 0; i < veil_pipeline_n_drop_reasons(cp.p); i++) {
                uint64_t c;
                const char *r = veil_pipeline_drop_reason(cp.p, i, &c);
                if (n_unfinished && !(c = i < n_drops0 ? drops0[i] : 0))
                        continue;
                printf("  dropped:     %llu (%s)\n", (unsigned long long)c,
                       r);
        }
        free(drops0);
        veil_cli_print_gauges(cp.p, 13);
        /* The clock is the latest event time read: one event stamped
         * ahead of the others moves it for everyone after (profile expiry,
         * DP steps on the clock), as it could not in a live stream. */
        if (n_behind)
                printf("  clock:       %llu events earlier than one read "
                       "before them: the replay takes the file's order as "
                       "the order of arrival, and its clock is the latest "
                       "event time read (sort the file by time)\n",
                       (unsigned long long)n_behind);
        if (n_events && !cap_main.records && cp.cfg->n_side_inputs)
                printf("  note:        replay feeds no side inputs: a consent "
                       "stage without its ledger denies every event (use a "
                       "pipeline without one, such as "
                       "config/pipelines/retail.yaml)\n");
        /* Every event dead-lettered (ms in a ts column, say): an
         * evaluation of nothing printed hit-rate 0.0000 and exit 0, as if
         * the model had been measured. */
        int all_dead = evaluate && !failed && n_events &&
                       cap_main.dead_letters >= n_events;
        if (all_dead)
                fprintf(stderr,
                        "veil replay: --evaluate: nothing to evaluate: every "
                        "one of the %llu events was dead-lettered (the "
                        "first ones are above)\n",
                        (unsigned long long)n_events);
        /* Stopped by an error (a malformed line), the batches before it
         * were evaluated all the same: one bad line at the end of a year
         * threw their evaluation away. */
        if (evaluate && !all_dead && (!failed || ev.scored)) {
                double n = ev.scored ? (double)ev.scored : 1.0;
                printf("  evaluation:  prequential, each recommendation "
                       "against the same user's next event (%llu scored",
                       (unsigned long long)ev.scored);
                if (failed)
                        printf("; only up to %s:%ld, the last line of the "
                               "last batch that ran",
                               csv_name, ran_to_line);
                printf(")\n");
                int k = ev.k ? ev.k : EVAL_K;
                printf("    %-10s hit-rate@%d %.4f   NDCG@%d %.4f\n",
                       "pipeline", k, ev.hits[0] / n, k, ev.ndcg[0] / n);
                printf("    %-10s hit-rate@%d %.4f   NDCG@%d %.4f\n",
                       "popular", k, ev.hits[1] / n, k, ev.ndcg[1] / n);
                if (ev.hits[1] > 0)
                        printf("    ratio      hit-rate %.2fx   NDCG %.2fx\n",
                               ev.hits[0] / ev.hits[1],
                               ev.ndcg[1] > 0 ? ev.ndcg[0] / ev.ndcg[1]
                                              : 0.0);
                double nl = ev.later ? (double)ev.later : 1.0;
                printf("  later visits: %llu of the pairs have their next "
                       "event at a later time (the others share the "
                       "recommended-for event's time: the same basket)\n",
                       (unsigned long long)ev.later);
                printf("    %-24s hit-rate@%d %.4f   NDCG@%d %.4f\n",
                       "pipeline, later visits", k, ev.later_hits[0] / nl, k,
                       ev.later_ndcg[0] / nl);
                printf("    %-24s hit-rate@%d %.4f   NDCG@%d %.4f\n",
                       "popular, later visits", k, ev.later_hits[1] / nl, k,
                       ev.later_ndcg[1] / nl);
        }
        eval_free(&ev);
        veil_csv_close(csv);
        veil_pipeline_destroy(pop);
        veil_cli_close(&cp);
        return failed || all_dead ? VEIL_EXIT_RUNTIME : VEIL_EXIT_OK;
}

#include "observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REASONS 64 /* the pipeline's cap on drop reasons */

struct veil_observe {
        struct veil_metrics *m;
        /* last values read from the current pipeline */
        struct veil_stage_stats *stages;
        size_t n_stages;
        uint64_t reasons[MAX_REASONS];
        uint64_t *outputs;
        size_t n_outputs;
        uint64_t events_in, decode_errors, dead_letters;
};

struct family {
        const char *name;
        enum veil_metric_type type;
        const char *help;
        const double *buckets;
        size_t n_buckets;
};

static const double size_buckets[] = {1,   2,    4,    8,    16,   32,  64,
                                      128, 256,  512,  1024, 4096, 16384,
                                      65536};
static const double batch_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                       0.005,  0.01,    0.025,  0.05,  0.1,
                                       0.25,   0.5,     1,      2.5,   10};
static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,  1,     2.5,  5,
                                         10,    30,   60,    300,  3600,
                                         86400};
#define B(a) a, sizeof(a) / sizeof(*(a))

static const struct family families[] = {
        {VEIL_M_RECORDS_IN, VEIL_METRIC_COUNTER,
         "Input records consumed from the input topic.", NULL, 0},
        {"veil_events_decoded_total", VEIL_METRIC_COUNTER,
         "Input records decoded into events.", NULL, 0},
        {"veil_decode_errors_total", VEIL_METRIC_COUNTER,
         "Input and side-input records that did not decode (sent to the "
         "dead-letter topic).",
         NULL, 0},
        {"veil_stage_events_in_total", VEIL_METRIC_COUNTER,
         "Events a stage received.", NULL, 0},
        {"veil_stage_events_out_total", VEIL_METRIC_COUNTER,
         "Events a stage passed on.", NULL, 0},
        {"veil_stage_dropped_total", VEIL_METRIC_COUNTER,
         "Events a stage dropped.", NULL, 0},
        {"veil_stage_dead_letters_total", VEIL_METRIC_COUNTER,
         "Events a stage sent to the dead-letter topic.", NULL, 0},
        {"veil_plugin_errors_total", VEIL_METRIC_COUNTER,
         "Errors of a stage: failed batches, rejected side-input records "
         "and error log lines.",
         NULL, 0},
        {"veil_drops_total", VEIL_METRIC_COUNTER,
         "Dropped events by reason (the plugins' reasons, at most 64).", NULL,
         0},
        {"veil_dead_letters_total", VEIL_METRIC_COUNTER,
         "Records sent to the dead-letter topic.", NULL, 0},
        {"veil_output_records_total", VEIL_METRIC_COUNTER,
         "Records produced to each output.", NULL, 0},
        {VEIL_M_PRODUCED, VEIL_METRIC_COUNTER,
         "Records handed to the producer (outputs and dead letters).", NULL,
         0},
        {VEIL_M_ACKED, VEIL_METRIC_COUNTER,
         "Records acknowledged by the broker.", NULL, 0},
        {VEIL_M_RETRIED, VEIL_METRIC_COUNTER,
         "Records produced again after a failed delivery.", NULL, 0},
        {VEIL_M_COMMITS, VEIL_METRIC_COUNTER,
         "Input offset commits (each after every output of its batch was "
         "acknowledged).",
         NULL, 0},
        {VEIL_M_BATCHES, VEIL_METRIC_COUNTER, "Micro-batches run.", NULL, 0},
        {VEIL_M_BATCH_SIZE, VEIL_METRIC_HISTOGRAM,
         "Input records per micro-batch.", B(size_buckets)},
        {VEIL_M_BATCH_SECONDS, VEIL_METRIC_HISTOGRAM,
         "Time to decode a micro-batch and run it through every stage.",
         B(batch_buckets)},
        {VEIL_M_COMMIT_SECONDS, VEIL_METRIC_HISTOGRAM,
         "Time from forming a micro-batch to its offsets being committed "
         "(every output acknowledged).",
         B(latency_buckets)},
        {VEIL_M_EVENT_SECONDS, VEIL_METRIC_HISTOGRAM,
         "End-to-end latency: from an event's own timestamp (its ts field) "
         "to its batch's outputs being acknowledged.",
         B(latency_buckets)},
        {VEIL_M_ASSIGNED, VEIL_METRIC_GAUGE,
         "Input partitions assigned to this instance.", NULL, 0},
        {VEIL_M_LAG, VEIL_METRIC_GAUGE,
         "Records between this instance's position and the end of each "
         "assigned input partition.",
         NULL, 0},
        {VEIL_M_QUEUE, VEIL_METRIC_GAUGE,
         "Records and requests waiting in the producer's queue.", NULL, 0},
        {VEIL_M_INFLIGHT, VEIL_METRIC_GAUGE,
         "Micro-batches waiting for their outputs to be acknowledged.", NULL,
         0},
        {VEIL_M_HELD, VEIL_METRIC_GAUGE,
         "Exactly-once: records produced between batches (side-input dead "
         "letters, audit and access records) held until a transaction that "
         "holds them commits, to be produced again after an abort.",
         NULL, 0},
        {VEIL_M_BROKERS_UP, VEIL_METRIC_GAUGE,
         "Brokers the consumer is connected to (from librdkafka statistics; "
         "-1 before the first report).",
         NULL, 0},
        {VEIL_M_SIDE_RECORDS, VEIL_METRIC_COUNTER,
         "Side-input records consumed (e.g. consent records).", NULL, 0},
        {VEIL_M_SIDE_CAUGHT_UP, VEIL_METRIC_GAUGE,
         "1 when a side input has been read up to the end it had when "
         "reading began; events wait until every one has.",
         NULL, 0},
        {VEIL_M_SIDE_POSITION, VEIL_METRIC_GAUGE,
         "Offsets read so far in a side input, summed over its partitions.",
         NULL, 0},
        {VEIL_M_SIDE_END, VEIL_METRIC_GAUGE,
         "End offsets a side input had when reading began, summed over its "
         "partitions.",
         NULL, 0},
        {VEIL_M_READY, VEIL_METRIC_GAUGE,
         "1 when /readyz answers ready.", NULL, 0},
        {"veil_privacy_epsilon_spent", VEIL_METRIC_GAUGE,
         "Privacy loss epsilon spent so far, as the pipeline's accountant "
         "reports it.",
         NULL, 0},
        {"veil_privacy_delta", VEIL_METRIC_GAUGE,
         "The delta of the epsilon spent.", NULL, 0},
        {"veil_privacy_epsilon_budget", VEIL_METRIC_GAUGE,
         "The epsilon budget the pipeline enforces.", NULL, 0},
        {"veil_privacy_epsilon_remaining", VEIL_METRIC_GAUGE,
         "Epsilon budget left (budget minus spent, not below 0).", NULL, 0},
        {"veil_privacy_delta_budget", VEIL_METRIC_GAUGE,
         "The delta the pipeline's budget is stated with.", NULL, 0},
        {VEIL_M_RELOADS, VEIL_METRIC_COUNTER,
         "Configuration reloads applied (SIGHUP or POST /reload).", NULL, 0},
        {VEIL_M_RELOAD_FAILURES, VEIL_METRIC_COUNTER,
         "Configuration reloads refused; the previous pipeline kept running.",
         NULL, 0},
};

int veil_observe_new(struct veil_observe **out, struct veil_metrics *m) {
        struct veil_observe *o = calloc(1, sizeof(*o));
        if (!o)
                return -VEIL_ENOMEM;
        o->m = m;
        for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++) {
                const struct family *f = &families[i];
                int rc = veil_metrics_declare(m, f->name, f->type, f->help,
                                              f->buckets, f->n_buckets);
                if (rc) {
                        free(o);
                        return rc;
                }
        }
        /* Counters exist from the start, so a rate() sees the first
         * increase and a dashboard shows 0 rather than nothing. */
        veil_metrics_add(m, VEIL_M_RELOADS, "", 0);
        veil_metrics_add(m, VEIL_M_RELOAD_FAILURES, "", 0);
        *out = o;
        return 0;
}

void veil_observe_destroy(struct veil_observe *o) {
        if (!o)
                return;
        free(o->stages);
        free(o->outputs);
        free(o);
}

void veil_observe_reset(struct veil_observe *o) {
        /* The plugins' gauges are the old stages' state: the new ones set
         * theirs at the next publish. (veil_plugin_errors_total is a
         * counter and stays, as the stage counters do.) */
        veil_metrics_forget(o->m, "veil_plugin_", VEIL_METRIC_GAUGE);
        /* So are the budget (a pipeline without one must not show the old
         * one's) and the side inputs' gauges (a renamed input's series
         * would stay): both are set again at the next publish. Only their
         * series go: forgotten, the families were declared again by the
         * next set as a plugin's gauge, with its help text, at the end of
         * the page. The spent ε stays: the transfer carries it over. */
        static const char *const host_gauges[] = {
                "veil_privacy_epsilon_budget",
                "veil_privacy_epsilon_remaining", "veil_privacy_delta_budget",
                VEIL_M_SIDE_CAUGHT_UP, VEIL_M_SIDE_POSITION, VEIL_M_SIDE_END};
        for (size_t i = 0; i < sizeof(host_gauges) / sizeof(*host_gauges);
             i++)
                veil_metrics_clear(o->m, host_gauges[i]);
        free(o->stages);
        free(o->outputs);
        o->stages = NULL;
        o->outputs = NULL;
        o->n_stages = o->n_outputs = 0;
        memset(o->reasons, 0, sizeof(o->reasons));
        o->events_in = o->decode_errors = o->dead_letters = 0;
}

void veil_observe_stage_label(const struct veil_pipeline *p, size_t i,
                              char *buf, size_t size) {
        const char *name = veil_pipeline_stage_name(p, i);
        size_t nth = 1;
        for (size_t j = 0; j < i; j++)
                nth += !strcmp(veil_pipeline_stage_name(p, j), name);
        if (nth == 1)
                snprintf(buf, size, "%s", name);
        else
                snprintf(buf, size, "%s#%zu", name, nth);
}

/* Adds cur - *last to a counter and remembers cur. */
static void delta(struct veil_observe *o, const char *name,
                  const char *labels, uint64_t cur, uint64_t *last) {
        /* Adding 0 still creates the series: it shows 0 from the start. */
        veil_metrics_add(o->m, name, labels,
                         cur > *last ? (double)(cur - *last) : 0);
        *last = cur;
}

/* Metric names allow [a-zA-Z0-9_:]; plugin names may hold more. */
static void sanitize(char *s) {
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '_'))
                        *s = '_';
}

void veil_observe_pipeline(struct veil_observe *o,
                           const struct veil_pipeline *p) {
        size_t n = veil_pipeline_n_stages(p);
        if (o->n_stages != n) {
                struct veil_stage_stats *s = calloc(n ? n : 1, sizeof(*s));
                if (!s)
                        return;
                free(o->stages);
                o->stages = s;
                o->n_stages = n;
        }
        char lb[256], stage[160];
        for (size_t i = 0; i < n; i++) {
                struct veil_stage_stats cur = veil_pipeline_stage_stats(p, i);
                struct veil_stage_stats *last = &o->stages[i];
                veil_observe_stage_label(p, i, stage, sizeof(stage));
                veil_metrics_labels(lb, sizeof(lb), "stage", stage, NULL);
                delta(o, "veil_stage_events_in_total", lb, cur.in, &last->in);
                delta(o, "veil_stage_events_out_total", lb, cur.out,
                      &last->out);
                delta(o, "veil_stage_dropped_total", lb, cur.dropped,
                      &last->dropped);
                delta(o, "veil_stage_dead_letters_total", lb,
                      cur.dead_letters, &last->dead_letters);
                delta(o, "veil_plugin_errors_total", lb, cur.errors,
                      &last->errors);
                for (size_t j = 0; j < veil_pipeline_stage_n_gauges(p, i);
                     j++) {
                        double v;
                        const char *g = veil_pipeline_stage_gauge(p, i, j, &v);
                        char name[256];
                        snprintf(name, sizeof(name), "veil_plugin_%s_%s",
                                 veil_pipeline_stage_name(p, i), g);
                        sanitize(name);
                        veil_metrics_set(o->m, name, lb, v);
                }
        }
        size_t nr = veil_pipeline_n_drop_reasons(p);
        for (size_t i = 0; i < nr && i < MAX_REASONS; i++) {
                uint64_t c;
                const char *r = veil_pipeline_drop_reason(p, i, &c);
                veil_metrics_labels(lb, sizeof(lb), "reason", r, NULL);
                delta(o, "veil_drops_total", lb, c, &o->reasons[i]);
        }
        const struct veil_config *cfg = veil_pipeline_config(p);
        if (o->n_outputs != cfg->n_outputs) {
                uint64_t *out = calloc(cfg->n_outputs ? cfg->n_outputs : 1,
                                       sizeof(*out));
                if (!out)
                        return;
                free(o->outputs);
                o->outputs = out;
                o->n_outputs = cfg->n_outputs;
        }
        for (size_t i = 0; i < cfg->n_outputs; i++) {
                const char *name = cfg->outputs[i].name;
                veil_metrics_labels(lb, sizeof(lb), "output", name, NULL);
                delta(o, "veil_output_records_total", lb,
                      veil_pipeline_output_count(p, name), &o->outputs[i]);
        }
        delta(o, "veil_events_decoded_total", "", veil_pipeline_events_in(p),
              &o->events_in);
        delta(o, "veil_decode_errors_total", "",
              veil_pipeline_decode_errors(p), &o->decode_errors);
        delta(o, "veil_dead_letters_total", "", veil_pipeline_dead_letters(p),
              &o->dead_letters);

        /* Only a pipeline with an accountant reports privacy: a 0 from one
         * without would read as "private at no cost". */
        double eps, dl, beps, bdl;
        veil_pipeline_privacy_spent(p, &eps, &dl);
        int budget = veil_pipeline_privacy_budget(p, &beps, &bdl);
        if (budget || eps > 0) {
                veil_metrics_set(o->m, "veil_privacy_epsilon_spent", "", eps);
                veil_metrics_set(o->m, "veil_privacy_delta", "", dl);
        }
        if (budget) {
                veil_metrics_set(o->m, "veil_privacy_epsilon_budget", "",
                                 beps);
                veil_metrics_set(o->m, "veil_privacy_epsilon_remaining", "",
                                 beps > eps ? beps - eps : 0);
                veil_metrics_set(o->m, "veil_privacy_delta_budget", "", bdl);
        }
}

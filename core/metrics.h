/*
 * metrics.h — a small Prometheus registry shared by two threads: the
 * pipeline loop updates it, the HTTP server renders it (text format 0.0.4).
 *
 * One mutex guards everything: the loop publishes a few hundred values per
 * publish and a scrape renders them all, so contention is negligible and a
 * scrape always sees whole updates.
 *
 * Series are bounded: at most VEIL_METRICS_MAX_SERIES in all (label sets
 * come from stage names, drop reasons — which the host caps —, outputs and
 * assigned partitions); updates past the cap are counted in
 * veil_metrics_series_dropped_total and otherwise ignored. Label values are
 * escaped here; callers never put an identifier in one.
 */
#ifndef VEIL_METRICS_H
#define VEIL_METRICS_H

#include <stddef.h>

#define VEIL_METRICS_MAX_SERIES 4096
#define VEIL_METRICS_MAX_BUCKETS 24

enum veil_metric_type {
        VEIL_METRIC_COUNTER = 1,
        VEIL_METRIC_GAUGE,
        VEIL_METRIC_HISTOGRAM
};

struct veil_metrics;

int veil_metrics_new(struct veil_metrics **out);
void veil_metrics_destroy(struct veil_metrics *m);

/** Declares a family. Histograms need ascending `buckets` (+Inf is
 *  implicit). Declaring a name again changes nothing. -VEIL_EINVAL for a
 *  name outside [a-zA-Z_:][a-zA-Z0-9_:]* or bad buckets. */
int veil_metrics_declare(struct veil_metrics *m, const char *name,
                         enum veil_metric_type type, const char *help,
                         const double *buckets, size_t n_buckets);

/** Builds a label list `k1="v1",k2="v2"` from NULL-terminated key/value
 *  pairs, escaping values; returns `buf`. */
char *veil_metrics_labels(char *buf, size_t size, ...);

/* Updates. `labels` is a list from veil_metrics_labels() or "" (none); the
 * series is created on first use. An undeclared family is refused (returns
 * -VEIL_ENOENT) except by veil_metrics_set, which declares a gauge (the
 * plugins' gauges). */
int veil_metrics_add(struct veil_metrics *m, const char *name,
                     const char *labels, double v);
int veil_metrics_set(struct veil_metrics *m, const char *name,
                     const char *labels, double v);
int veil_metrics_observe(struct veil_metrics *m, const char *name,
                         const char *labels, const double *v, size_t n);
/** Removes every series of a family (e.g. lag of partitions no longer
 *  assigned) before the current ones are set again. */
void veil_metrics_clear(struct veil_metrics *m, const char *name);

/** Removes the families of `type` whose names begin with `prefix`, and
 *  all their series: a reload drops the plugins' gauges, so that a stage
 *  the new pipeline lacks leaves no stale value (and the families do not
 *  pile up over reloads); the stages there set theirs again. */
void veil_metrics_forget(struct veil_metrics *m, const char *prefix,
                         enum veil_metric_type type);

/** Reads a counter or gauge; -VEIL_ENOENT when the series does not exist. */
int veil_metrics_get(struct veil_metrics *m, const char *name,
                     const char *labels, double *v);

/** Renders every family in declaration order; malloc'd text in *out. */
int veil_metrics_render(struct veil_metrics *m, char **out, size_t *len);

#endif

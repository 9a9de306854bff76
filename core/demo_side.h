/*
 * demo_side.h — the demo's side-input records (consent records): read from
 * the CSV files the pipeline's demo: section names by side-input name
 *   demo: {events: ../demo/events.csv, consent: ../demo/consent.csv}
 * (format in reccsv.h), produced before the events so that the ledger has
 * them when the pipeline starts, except the rows marked `_after: N`, which
 * are produced once N events have been fed (withdrawals mid-stream).
 */
#ifndef VEIL_DEMO_SIDE_H
#define VEIL_DEMO_SIDE_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "config.h"

struct veil_demo_side;

/** The most garbage records `demo.garbage` may ask for. */
#define VEIL_DEMO_MAX_GARBAGE 1000000

/** Checks the pipeline's demo: section (none: *events NULL, *garbage 0):
 *  its keys are events (the CSV of events, required), garbage (a whole
 *  number of undecodable records to mix in, 0..VEIL_DEMO_MAX_GARBAGE) and
 *  the side inputs' names (their record CSVs); any other key is refused.
 *  `veil lint`, `run` and `demo` check it alike. Errors name
 *  file:line:column and the fix. */
int veil_demo_config_parse(const struct veil_config *cfg,
                           const struct veil_node **events, long *garbage,
                           char *errstr, size_t errstr_size);

/** Reads every side input's CSV named in cfg->demo (none: an empty set).
 *  Errors name file:line. */
int veil_demo_side_load(struct veil_demo_side **s,
                        const struct veil_config *cfg, char *errstr,
                        size_t errstr_size);
/** Produces the rows due once `fed` events have been fed (fed = 0: the
 *  rows to produce before any event). Returns how many, or -1 when
 *  producing failed. */
long veil_demo_side_produce(struct veil_demo_side *s, rd_kafka_t *rk,
                            long fed);
/** Rows produced so far: before the events, and during them. */
void veil_demo_side_counts(const struct veil_demo_side *s, long *before,
                           long *during);
void veil_demo_side_destroy(struct veil_demo_side *s);

#endif

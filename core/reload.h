/*
 * reload.h — what a configuration reload may change while veil runs.
 *
 * A reload swaps the pipeline (plugins, parameters, schemas, outputs, side
 * inputs, batching, keys, log level) but keeps the Kafka clients and the
 * HTTP server: a change to kafka.bootstrap, kafka.group, kafka.guarantee,
 * kafka.settings, the input topic or the http: section needs a restart, and
 * such a reload is refused with a message saying so.
 */
#ifndef VEIL_RELOAD_H
#define VEIL_RELOAD_H

#include <stddef.h>

#include "config.h"

/** 0 when `next` can replace `cur` in a running veil; -VEIL_EINVAL naming
 *  the first setting that needs a restart. */
int veil_reload_check(const struct veil_config *cur,
                      const struct veil_config *next, char *errstr,
                      size_t errstr_size);

#endif

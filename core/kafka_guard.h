/*
 * kafka_guard.h — the librdkafka properties the delivery guarantees rest
 * on: set on the clients by kafka.c, protected from kafka.settings by
 * config.c, written once in kafka_guard.c.
 */
#ifndef VEIL_KAFKA_GUARD_H
#define VEIL_KAFKA_GUARD_H

#include <stddef.h>

/** The clients whose properties veil_kafka_guard_apply() sets: the input's
 *  group consumer, the producer, and the assign-only readers of the side
 *  inputs and the state topic. */
#define VEIL_KAFKA_PRODUCER 1u
#define VEIL_KAFKA_CONSUMER 2u
#define VEIL_KAFKA_READER 4u

struct rd_kafka_conf_s; /* rd_kafka_conf_t */

/** Sets on `c` the properties the delivery guarantees rest on for a
 *  `client` (one of VEIL_KAFKA_*). Applied after kafka.settings, which
 *  may repeat these values but not change them. */
int veil_kafka_guard_apply(struct rd_kafka_conf_s *c, unsigned client,
                           char *errstr, size_t errstr_size);

/** What `property`, as `c` reads it, would break when it is one of those
 *  properties with another value; NULL otherwise. */
const char *veil_kafka_guard_weakens(struct rd_kafka_conf_s *c,
                                     const char *property);

#endif

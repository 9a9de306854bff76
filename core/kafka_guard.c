/*
 * kafka_guard.c — the librdkafka properties the delivery guarantees rest
 * on, in one table: kafka.c sets them on the clients from it, and the
 * configuration check refuses a kafka.settings entry that would change
 * them. Before, the values were written twice (the clients' defaults and
 * the check), and nothing stopped the two from drifting apart.
 */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "kafka_guard.h"
#include "veil/veil.h"

/* Values as librdkafka reads them back (acks: all reads as -1, a boolean
 * as true/false), since the check compares what it read. A row for no
 * client is an alias of another row: checked, never set (setting both
 * would only say the same thing twice). */
static const struct {
        const char *property, *value, *why;
        unsigned clients;
} guards[] = {
        {"acks", "-1", "every record acknowledged by all in-sync replicas",
         VEIL_KAFKA_PRODUCER},
        {"request.required.acks", "-1",
         "every record acknowledged by all in-sync replicas", 0},
        {"enable.idempotence", "true",
         "the producer's retries neither duplicate nor reorder records",
         VEIL_KAFKA_PRODUCER},
        {"enable.auto.commit", "false",
         "offsets are committed only after a batch's outputs are "
         "acknowledged",
         VEIL_KAFKA_CONSUMER | VEIL_KAFKA_READER},
        {"enable.auto.offset.store", "false",
         "offsets are committed only after a batch's outputs are "
         "acknowledged",
         VEIL_KAFKA_CONSUMER},
        {"isolation.level", "read_committed",
         "an aborted transaction's records never become input",
         VEIL_KAFKA_CONSUMER | VEIL_KAFKA_READER}};

#define N_GUARDS (sizeof(guards) / sizeof(guards[0]))

int veil_kafka_guard_apply(struct rd_kafka_conf_s *c, unsigned client,
                           char *errstr, size_t errstr_size) {
        for (size_t i = 0; i < N_GUARDS; i++) {
                char e[512];
                if (!(guards[i].clients & client))
                        continue;
                if (rd_kafka_conf_set(c, guards[i].property, guards[i].value,
                                      e, sizeof(e)) != RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size,
                                 "kafka setting '%s': %s",
                                 guards[i].property, e);
                        return -VEIL_EINVAL;
                }
        }
        return 0;
}

const char *veil_kafka_guard_weakens(struct rd_kafka_conf_s *c,
                                     const char *property) {
        for (size_t i = 0; i < N_GUARDS; i++) {
                if (strcmp(property, guards[i].property))
                        continue;
                char got[64];
                size_t n = sizeof(got);
                if (rd_kafka_conf_get(c, property, got, &n) !=
                            RD_KAFKA_CONF_OK ||
                    strcmp(got, guards[i].value))
                        return guards[i].why;
        }
        return NULL;
}

/*
 * mock.h — the embedded broker: librdkafka's in-process mock cluster, for
 * `kafka.bootstrap: embedded` (the demo) and for fault-injection tests.
 * It keeps only about the newest 5 MB of each partition, so whoever feeds it
 * must consume while producing.
 */
#ifndef VEIL_MOCK_H
#define VEIL_MOCK_H

#include "config.h"

struct veil_mock;
struct rd_kafka_mock_cluster_s;

/** Starts a cluster of `brokers` brokers. */
int veil_mock_start(struct veil_mock **m, int brokers, char *errstr,
                    size_t errstr_size);
/** Creates every topic the pipeline names (input, outputs, side inputs). */
int veil_mock_create_topics(struct veil_mock *m, const struct veil_config *cfg,
                            char *errstr, size_t errstr_size);
int veil_mock_create_topic(struct veil_mock *m, const char *topic,
                           int partitions, char *errstr, size_t errstr_size);
const char *veil_mock_bootstrap(const struct veil_mock *m);
/** The cluster, for fault injection (rdkafka_mock.h). */
struct rd_kafka_mock_cluster_s *veil_mock_cluster(struct veil_mock *m);
void veil_mock_destroy(struct veil_mock *m);

#endif

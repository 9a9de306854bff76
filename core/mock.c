#include "mock.h"

#include "checkpoint.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>

struct veil_mock {
        rd_kafka_t *rk; /**< owns the cluster's threads */
        rd_kafka_mock_cluster_t *mc;
};

int veil_mock_start(struct veil_mock **mp, int brokers, char *errstr,
                    size_t errstr_size) {
        struct veil_mock *m = calloc(1, sizeof(*m));
        char e[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "log_level", "3", NULL, 0);
        m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
        if (!m->rk) {
                snprintf(errstr, errstr_size, "embedded broker: %s", e);
                rd_kafka_conf_destroy(c);
                free(m);
                return -VEIL_EIO;
        }
        m->mc = rd_kafka_mock_cluster_new(m->rk, brokers);
        if (!m->mc) {
                snprintf(errstr, errstr_size,
                         "embedded broker: cannot start the mock cluster");
                rd_kafka_destroy(m->rk);
                free(m);
                return -VEIL_EIO;
        }
        *mp = m;
        return 0;
}

int veil_mock_create_topic(struct veil_mock *m, const char *topic,
                           int partitions, char *errstr, size_t errstr_size) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
                m->mc, topic, partitions > 0 ? partitions : 1, 1);
        if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                snprintf(errstr, errstr_size,
                         "embedded broker: cannot create topic '%s': %s",
                         topic, rd_kafka_err2str(err));
                return -VEIL_EIO;
        }
        return 0;
}

int veil_mock_create_topics(struct veil_mock *m, const struct veil_config *cfg,
                            char *errstr, size_t errstr_size) {
        int rc = veil_mock_create_topic(m, cfg->input.topic,
                                        cfg->input.partitions, errstr,
                                        errstr_size);
        for (size_t i = 0; !rc && i < cfg->n_outputs; i++)
                rc = veil_mock_create_topic(m, cfg->outputs[i].topic,
                                            cfg->outputs[i].partitions,
                                            errstr, errstr_size);
        for (size_t i = 0; !rc && i < cfg->n_side_inputs; i++)
                rc = veil_mock_create_topic(m, cfg->side_inputs[i].topic,
                                            cfg->side_inputs[i].partitions,
                                            errstr, errstr_size);
        struct veil_checkpoint_config cc;
        if (!rc)
                rc = veil_checkpoint_config_parse(cfg, &cc, errstr,
                                                  errstr_size);
        if (!rc && cc.enabled)
                rc = veil_mock_create_topic(m, cc.topic, 1, errstr,
                                            errstr_size);
        return rc;
}

const char *veil_mock_bootstrap(const struct veil_mock *m) {
        return rd_kafka_mock_cluster_bootstraps(m->mc);
}

struct rd_kafka_mock_cluster_s *veil_mock_cluster(struct veil_mock *m) {
        return m->mc;
}

void veil_mock_destroy(struct veil_mock *m) {
        if (!m)
                return;
        rd_kafka_mock_cluster_destroy(m->mc);
        rd_kafka_destroy(m->rk);
        free(m);
}

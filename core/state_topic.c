/*
 * state_topic.c — the state topic's settings, checked once at start.
 *
 * Checkpoints rely on two topic settings the host cannot see while it
 * produces: compaction, which is what makes a checkpoint's tombstones
 * delete an erased person's profile from the topic (without it every old
 * checkpoint stays until retention.ms), and a max.message.bytes that takes
 * a batch of checkpoint records (below it the first checkpoint, a minute
 * in, stops the host, and every restart after it). So at start the host
 * describes the topic: a topic too small for the records is refused with
 * the command that fixes it, a topic that is not compacted is warned
 * about, and a topic that does not exist yet is created compacted (broker
 * auto-creation would create it with the broker's defaults: not
 * compacted). A cluster that cannot answer (no DescribeConfigs ACL, an old
 * broker, the embedded mock) leaves things as they were, with a line that
 * says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "kafka.h"
#include "log.h"

static rd_kafka_AdminOptions_t *admin_opts(rd_kafka_t *rk,
                                           rd_kafka_admin_op_t op,
                                           int timeout_ms) {
        char e[256];
        rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, op);
        if (!ao)
                return NULL;
        rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, e,
                                                  sizeof(e));
        /* A topic created is one the brokers have: the first checkpoint's
         * records would otherwise race its creation. */
        if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS)
                rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, e,
                                                            sizeof(e));
        return ao;
}

/* Creates the topic compacted, with room for the checkpoint batches.
 * Another instance creating it at the same time is not an error. */
static void create_compacted(rd_kafka_t *rk, const char *topic,
                             size_t min_bytes, int timeout_ms) {
        char e[256], mmb[32];
        snprintf(mmb, sizeof(mmb), "%zu", min_bytes);
        /* One partition: checkpoints are read whole at every start, in
         * order; replication from the broker's default (-1, KIP-464). */
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, -1, e,
                                                        sizeof(e));
        if (!nt ||
            rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact") ||
            rd_kafka_NewTopic_set_config(nt, "max.message.bytes", mmb)) {
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "state: cannot ask to create topic '%s': %s",
                              topic, nt ? "bad config" : e);
                if (nt)
                        rd_kafka_NewTopic_destroy(nt);
                return;
        }
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *ao =
                admin_opts(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms);
        rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        const char *why = "no answer";
        if (ev && (err = rd_kafka_event_error(ev)))
                why = rd_kafka_event_error_string(ev);
        else if (ev) {
                size_t n = 0;
                const rd_kafka_topic_result_t **tr =
                        rd_kafka_CreateTopics_result_topics(
                                rd_kafka_event_CreateTopics_result(ev), &n);
                err = n ? rd_kafka_topic_result_error(tr[0])
                        : RD_KAFKA_RESP_ERR_UNKNOWN;
                why = n && rd_kafka_topic_result_error_string(tr[0])
                              ? rd_kafka_topic_result_error_string(tr[0])
                              : rd_kafka_err2str(err);
        }
        if (!err)
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "state: created topic '%s' (1 partition, "
                              "cleanup.policy=compact, max.message.bytes=%s)",
                              topic, mmb);
        else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "state: cannot create topic '%s' (%s): the "
                              "first checkpoint creates it where the brokers "
                              "auto-create topics, with their defaults "
                              "(not compacted: erased people's data stays "
                              "in old checkpoints until retention.ms); "
                              "create it as the README's \"Creating the "
                              "topic\" shows",
                              topic, why);
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(ao);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
}

/* librdkafka sends DescribeConfigs and CreateTopics to the controller the
 * metadata names, and waits for it until the request times out. A cluster
 * whose metadata names no broker of its own as controller (librdkafka's
 * mock cluster, the embedded broker, says 0 and numbers its brokers from
 * 1) would cost every start that wait. */
static int controller_known(rd_kafka_t *rk, int timeout_ms) {
        const struct rd_kafka_metadata *md = NULL;
        int known = 0;
        if (rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms))
                return 0;
        int32_t ctl = rd_kafka_controllerid(rk, 0);
        for (int i = 0; i < md->broker_cnt; i++)
                known |= md->brokers[i].id == ctl;
        rd_kafka_metadata_destroy(md);
        return known;
}

int veil_kafka_state_topic_check(rd_kafka_t *rk, const char *topic,
                                 size_t min_bytes, int timeout_ms,
                                 char *errstr, size_t errstr_size) {
        if (!controller_known(rk, timeout_ms)) {
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "state: the cluster names no controller among "
                              "its brokers; not checked that topic '%s' is "
                              "compacted and takes records of %zu bytes",
                              topic, min_bytes);
                return 0;
        }
        rd_kafka_ConfigResource_t *res =
                rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *ao =
                admin_opts(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout_ms);
        rd_kafka_DescribeConfigs(rk, &res, 1, ao, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
        int rc = 0, missing = 0;
        const char *why = NULL;
        const rd_kafka_ConfigResource_t *r = NULL;
        if (!ev)
                why = "no answer";
        else if (rd_kafka_event_error(ev))
                why = rd_kafka_event_error_string(ev);
        else {
                size_t n = 0;
                const rd_kafka_ConfigResource_t **rs =
                        rd_kafka_DescribeConfigs_result_resources(
                                rd_kafka_event_DescribeConfigs_result(ev),
                                &n);
                rd_kafka_resp_err_t err =
                        n ? rd_kafka_ConfigResource_error(rs[0])
                          : RD_KAFKA_RESP_ERR_UNKNOWN;
                if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                        missing = 1;
                else if (err)
                        why = n && rd_kafka_ConfigResource_error_string(rs[0])
                                      ? rd_kafka_ConfigResource_error_string(
                                                rs[0])
                                      : rd_kafka_err2str(err);
                else
                        r = rs[0];
        }
        if (why)
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "state: cannot read topic '%s''s settings "
                              "(%s); not checked that it is compacted and "
                              "takes records of %zu bytes",
                              topic, why, min_bytes);
        else if (missing)
                create_compacted(rk, topic, min_bytes, timeout_ms);
        else {
                size_t n = 0;
                const rd_kafka_ConfigEntry_t **ce =
                        rd_kafka_ConfigResource_configs(r, &n);
                const char *policy = NULL, *mmb = NULL;
                for (size_t i = 0; i < n; i++) {
                        const char *name = rd_kafka_ConfigEntry_name(ce[i]);
                        if (!strcmp(name, "cleanup.policy"))
                                policy = rd_kafka_ConfigEntry_value(ce[i]);
                        else if (!strcmp(name, "max.message.bytes"))
                                mmb = rd_kafka_ConfigEntry_value(ce[i]);
                }
                if (mmb && strtoull(mmb, NULL, 10) < min_bytes) {
                        snprintf(errstr, errstr_size,
                                 "state: topic '%s' has max.message.bytes=%s "
                                 "and checkpoints are sent in batches of up "
                                 "to %zu bytes (the smaller of the "
                                 "producer's batch.size and "
                                 "message.max.bytes, and at least one "
                                 "record): raise it, e.g. kafka-configs.sh "
                                 "--alter --entity-type topics "
                                 "--entity-name '%s' --add-config "
                                 "max.message.bytes=%zu",
                                 topic, mmb, min_bytes, topic, min_bytes);
                        rc = -VEIL_EINVAL;
                } else if (policy && !strstr(policy, "compact"))
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "state: topic '%s' has "
                                      "cleanup.policy=%s, not compact: "
                                      "checkpoints' tombstones delete "
                                      "nothing, and erased people's data "
                                      "stays in old checkpoints until "
                                      "retention.ms; set it with "
                                      "kafka-configs.sh --alter "
                                      "--entity-type topics --entity-name "
                                      "'%s' --add-config "
                                      "cleanup.policy=compact",
                                      topic, policy, topic);
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(ao);
        rd_kafka_queue_destroy(q);
        rd_kafka_ConfigResource_destroy(res);
        return rc;
}

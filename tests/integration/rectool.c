/*
 * rectool — records of any schema from CSV for kcat (the integration
 * tests' consent records):
 *
 *   rectool encode SCHEMA.avsc RECORDS.csv
 *     writes each row as  KEY <KDELIM> AVRO <DELIM>  for
 *     kcat -P -Z -K '\x1f|K|\x1f' -D '\x1e|M|\x1e'; a row with
 *     _tombstone=true has an empty value, which -Z sends as a tombstone.
 *     The CSV format is core/reccsv.h's (columns are field paths).
 *
 *   rectool create-topic BOOTSTRAP TOPIC PARTITIONS [NAME=VALUE...]
 *   rectool add-partitions BOOTSTRAP TOPIC TOTAL
 *   rectool topic-config BOOTSTRAP TOPIC NAME
 *     the admin calls kcat does not have: a topic with a partition count
 *     other than the broker's num.partitions (and topic settings), more
 *     partitions for an existing topic (TOTAL is the count afterwards),
 *     and one setting of a topic, printed. Each waits for the broker's
 *     answer (30 s at most) and exits 1 with its error.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "reccsv.h"

#define KDELIM "\x1f|K|\x1f"
#define MDELIM "\x1e|M|\x1e"
#define ADMIN_TIMEOUT_MS 30000

static int usage(void) {
        fprintf(stderr,
                "usage: rectool encode SCHEMA.avsc RECORDS.csv\n"
                "       rectool create-topic BOOTSTRAP TOPIC PARTITIONS "
                "[NAME=VALUE...]\n"
                "       rectool add-partitions BOOTSTRAP TOPIC TOTAL\n"
                "       rectool topic-config BOOTSTRAP TOPIC NAME\n");
        return 2;
}

/* The result of one admin request for one topic: 0, or 1 after printing
 * what the broker said (or that it said nothing in time). */
static int admin_result(rd_kafka_queue_t *q, const char *what,
                        const char *topic) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS + 5000);
        if (!ev) {
                fprintf(stderr, "rectool: %s '%s': no answer from the broker "
                                "within %d ms\n",
                        what, topic, ADMIN_TIMEOUT_MS + 5000);
                return 1;
        }
        int rc = 0;
        const rd_kafka_topic_result_t **tr = NULL;
        size_t n = 0;
        if (rd_kafka_event_error(ev)) {
                fprintf(stderr, "rectool: %s '%s': %s\n", what, topic,
                        rd_kafka_event_error_string(ev));
                rc = 1;
        } else {
                if (rd_kafka_event_type(ev) ==
                    RD_KAFKA_EVENT_CREATETOPICS_RESULT)
                        tr = rd_kafka_CreateTopics_result_topics(
                                rd_kafka_event_CreateTopics_result(ev), &n);
                else
                        tr = rd_kafka_CreatePartitions_result_topics(
                                rd_kafka_event_CreatePartitions_result(ev),
                                &n);
                for (size_t i = 0; i < n; i++) {
                        rd_kafka_resp_err_t err =
                                rd_kafka_topic_result_error(tr[i]);
                        const char *msg =
                                rd_kafka_topic_result_error_string(tr[i]);
                        if (!err)
                                continue;
                        fprintf(stderr, "rectool: %s '%s': %s\n", what,
                                rd_kafka_topic_result_name(tr[i]),
                                msg ? msg : rd_kafka_err2str(err));
                        rc = 1;
                }
                if (!n) {
                        fprintf(stderr, "rectool: %s '%s': the broker's "
                                        "answer names no topic\n",
                                what, topic);
                        rc = 1;
                }
        }
        rd_kafka_event_destroy(ev);
        return rc;
}

/* topic-config: the value of the setting `name` of `topic`, printed. */
static int print_config(rd_kafka_queue_t *q, const char *topic,
                        const char *name) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS + 5000);
        if (!ev || rd_kafka_event_error(ev)) {
                fprintf(stderr, "rectool: topic-config '%s': %s\n", topic,
                        ev ? rd_kafka_event_error_string(ev) : "no answer");
                if (ev)
                        rd_kafka_event_destroy(ev);
                return 1;
        }
        size_t n = 0, nc = 0;
        const rd_kafka_ConfigResource_t **rs =
                rd_kafka_DescribeConfigs_result_resources(
                        rd_kafka_event_DescribeConfigs_result(ev), &n);
        int rc = 1;
        if (n && rd_kafka_ConfigResource_error(rs[0]))
                fprintf(stderr, "rectool: topic-config '%s': %s\n", topic,
                        rd_kafka_err2str(rd_kafka_ConfigResource_error(rs[0])));
        else if (n) {
                const rd_kafka_ConfigEntry_t **ce =
                        rd_kafka_ConfigResource_configs(rs[0], &nc);
                for (size_t i = 0; i < nc; i++)
                        if (!strcmp(rd_kafka_ConfigEntry_name(ce[i]), name)) {
                                const char *v =
                                        rd_kafka_ConfigEntry_value(ce[i]);
                                printf("%s\n", v ? v : "");
                                rc = 0;
                        }
                if (rc)
                        fprintf(stderr, "rectool: topic '%s' has no setting "
                                        "'%s'\n", topic, name);
        }
        rd_kafka_event_destroy(ev);
        return rc;
}

/* create-topic and add-partitions: one admin request on a producer handle
 * (no group, no records), its result waited for. */
static int admin(const char *cmd, const char *bootstrap, const char *topic,
                 const char *count, char **configs, int n_configs) {
        char *end;
        long cnt = strtol(count, &end, 10);
        int describe = !strcmp(cmd, "topic-config");
        if (!describe && (*end || cnt < 1 || cnt > 100000)) {
                fprintf(stderr, "rectool %s: '%s' is not a partition count "
                                "(1 or more)\n",
                        cmd, count);
                return 2;
        }
        char errstr[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "rectool %s: bootstrap.servers: %s\n", cmd,
                        errstr);
                rd_kafka_conf_destroy(conf);
                return 2;
        }
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                      sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "rectool %s: %s\n", cmd, errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opts =
                rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
        rd_kafka_AdminOptions_set_request_timeout(opts, ADMIN_TIMEOUT_MS,
                                                  errstr, sizeof(errstr));
        /* Done when the broker has applied it, not only accepted it. */
        rd_kafka_AdminOptions_set_operation_timeout(opts, ADMIN_TIMEOUT_MS,
                                                    errstr, sizeof(errstr));
        int rc;
        if (!strcmp(cmd, "create-topic")) {
                rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
                        topic, (int)cnt, -1, errstr, sizeof(errstr));
                if (!nt) {
                        fprintf(stderr, "rectool create-topic '%s': %s\n",
                                topic, errstr);
                        rc = 2;
                        goto out;
                }
                for (int i = 0; i < n_configs; i++) {
                        char *eq = strchr(configs[i], '=');
                        if (eq)
                                *eq = 0;
                        if (!eq || rd_kafka_NewTopic_set_config(
                                           nt, configs[i], eq + 1)) {
                                fprintf(stderr, "rectool create-topic: "
                                                "'%s' is not NAME=VALUE\n",
                                        configs[i]);
                                rd_kafka_NewTopic_destroy(nt);
                                rc = 2;
                                goto out;
                        }
                }
                rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
                rc = admin_result(q, "create-topic", topic);
                rd_kafka_NewTopic_destroy(nt);
        } else if (describe) {
                rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(
                        RD_KAFKA_RESOURCE_TOPIC, topic);
                rd_kafka_DescribeConfigs(rk, &res, 1, opts, q);
                rc = print_config(q, topic, count);
                rd_kafka_ConfigResource_destroy(res);
        } else {
                rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(
                        topic, (size_t)cnt, errstr, sizeof(errstr));
                if (!np) {
                        fprintf(stderr, "rectool add-partitions '%s': %s\n",
                                topic, errstr);
                        rc = 2;
                        goto out;
                }
                rd_kafka_CreatePartitions(rk, &np, 1, opts, q);
                rc = admin_result(q, "add-partitions", topic);
                rd_kafka_NewPartitions_destroy(np);
        }
out:
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return rc;
}

int main(int argc, char **argv) {
        if ((argc >= 5 && !strcmp(argv[1], "create-topic")) ||
            (argc == 5 && (!strcmp(argv[1], "add-partitions") ||
                           !strcmp(argv[1], "topic-config"))))
                return admin(argv[1], argv[2], argv[3], argv[4], argv + 5,
                             argc - 5);
        if (argc != 4 || strcmp(argv[1], "encode"))
                return usage();
        char err[1024];
        struct veil_codec *c = NULL;
        struct veil_reccsv *csv = NULL;
        if (veil_codec_new_file(&c, argv[2], VEIL_FRAMING_RAW, -1, err,
                                sizeof(err)) ||
            veil_reccsv_open(&csv, argv[3], err, sizeof(err))) {
                fprintf(stderr, "rectool: %s\n", err);
                veil_codec_destroy(c);
                return 1;
        }
        struct veil_reccsv_row r;
        int rc;
        while ((rc = veil_reccsv_next(csv, c, &r, err, sizeof(err))) == 1) {
                printf("%s" KDELIM, r.key);
                if (!r.tombstone)
                        fwrite(r.value, 1, r.value_len, stdout);
                fputs(MDELIM, stdout);
        }
        if (rc < 0)
                fprintf(stderr, "rectool: %s\n", err);
        veil_reccsv_close(csv);
        veil_codec_destroy(c);
        return rc < 0 ? 1 : 0;
}

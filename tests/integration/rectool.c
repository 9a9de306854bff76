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
 *   rectool create-topic BOOTSTRAP TOPIC PARTITIONS
 *   rectool add-partitions BOOTSTRAP TOPIC TOTAL
 *     the two admin calls kcat does not have: a topic with a partition
 *     count other than the broker's num.partitions, and more partitions
 *     for an existing topic (TOTAL is the count afterwards). Both wait for
 *     the broker's answer (30 s at most) and exit 1 with its error.
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
                "       rectool create-topic BOOTSTRAP TOPIC PARTITIONS\n"
                "       rectool add-partitions BOOTSTRAP TOPIC TOTAL\n");
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

/* create-topic and add-partitions: one admin request on a producer handle
 * (no group, no records), its result waited for. */
static int admin(const char *cmd, const char *bootstrap, const char *topic,
                 const char *count) {
        char *end;
        long cnt = strtol(count, &end, 10);
        if (*end || cnt < 1 || cnt > 100000) {
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
                rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
                rc = admin_result(q, "create-topic", topic);
                rd_kafka_NewTopic_destroy(nt);
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
        if (argc == 5 && (!strcmp(argv[1], "create-topic") ||
                          !strcmp(argv[1], "add-partitions")))
                return admin(argv[1], argv[2], argv[3], argv[4]);
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

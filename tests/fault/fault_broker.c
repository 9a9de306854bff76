/*
 * fault_broker — librdkafka's mock cluster in a process of its own, so that
 * a test can measure its own memory without the cluster's logs in it.
 *
 *   fault_broker BROKERS PARTITIONS TOPIC...
 *
 * Prints "bootstrap HOST:PORT,..." and then answers each command on stdin
 * with one line, "ok N" or "error MESSAGE":
 *
 *   down ID | up ID            take broker ID down or up
 *   leader TOPIC ID            broker ID leads every partition of TOPIC
 *   coordinator TYPE KEY ID    "group" or "transaction" KEY on broker ID
 *   feed TOPIC FIRST N SIZE    produce events eFIRST.. (N of them, about
 *                              SIZE bytes each); N is the answer
 *   quit                       (or end of input)
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_lib.h"
#include "mock.h"

/* One partition's leader. The mock cluster serves such a request at its
 * next wake-up, up to a second away when it is idle: one thread a
 * partition waits for one wake-up, not one each. */
struct leader {
        pthread_t th;
        rd_kafka_mock_cluster_t *mc;
        const char *topic;
        int32_t partition, broker;
        rd_kafka_resp_err_t err;
        int started;
};

static void *set_leader(void *arg) {
        struct leader *l = arg;
        l->err = rd_kafka_mock_partition_set_leader(l->mc, l->topic,
                                                    l->partition, l->broker);
        return NULL;
}

static rd_kafka_resp_err_t set_leaders(rd_kafka_mock_cluster_t *mc,
                                       const char *topic, int parts,
                                       int32_t broker) {
        struct leader *l = calloc((size_t)parts, sizeof(*l));
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (!l)
                return RD_KAFKA_RESP_ERR__FAIL;
        for (int p = 0; p < parts; p++) {
                l[p].mc = mc;
                l[p].topic = topic;
                l[p].partition = p;
                l[p].broker = broker;
                l[p].started =
                        !pthread_create(&l[p].th, NULL, set_leader, &l[p]);
                if (!l[p].started)
                        set_leader(&l[p]); /* then one at a time */
        }
        for (int p = 0; p < parts; p++) {
                if (l[p].started)
                        pthread_join(l[p].th, NULL);
                if (l[p].err && !err)
                        err = l[p].err;
        }
        free(l);
        return err;
}

int main(int argc, char **argv) {
        if (argc < 4) {
                fprintf(stderr,
                        "usage: fault_broker BROKERS PARTITIONS TOPIC...\n");
                return 2;
        }
        char err[1024];
        struct veil_mock *m;
        if (veil_mock_start(&m, atoi(argv[1]), err, sizeof(err))) {
                fprintf(stderr, "fault_broker: %s\n", err);
                return 1;
        }
        rd_kafka_mock_cluster_t *mc = veil_mock_cluster(m);
        int parts = atoi(argv[2]);
        for (int i = 3; i < argc; i++)
                if (veil_mock_create_topic(m, argv[i], parts, err,
                                           sizeof(err))) {
                        fprintf(stderr, "fault_broker: %s\n", err);
                        return 1;
                }
        printf("bootstrap %s\n", veil_mock_bootstrap(m));
        fflush(stdout);

        char line[1024];
        while (fgets(line, sizeof(line), stdin)) {
                char a[256] = "", b[256] = "";
                long x = 0, y = 0, z = 0;
                rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
                long answer = 0;
                if (sscanf(line, "down %ld", &x) == 1) {
                        e = rd_kafka_mock_broker_set_down(mc, (int32_t)x);
                } else if (sscanf(line, "up %ld", &x) == 1) {
                        e = rd_kafka_mock_broker_set_up(mc, (int32_t)x);
                } else if (sscanf(line, "leader %255s %ld", a, &x) == 2) {
                        e = set_leaders(mc, a, parts, (int32_t)x);
                } else if (sscanf(line, "coordinator %255s %255s %ld", a, b,
                                  &x) == 3) {
                        e = rd_kafka_mock_coordinator_set(mc, a, b,
                                                          (int32_t)x);
                } else if (sscanf(line, "feed %255s %ld %ld %ld", a, &x, &y,
                                  &z) == 4) {
                        if (fault_produce_events(veil_mock_bootstrap(m), a, x,
                                                 y, (size_t)z, err,
                                                 sizeof(err))) {
                                printf("error %s\n", err);
                                fflush(stdout);
                                continue;
                        }
                        answer = y;
                } else if (!strncmp(line, "quit", 4)) {
                        break;
                } else {
                        printf("error unknown command\n");
                        fflush(stdout);
                        continue;
                }
                if (e)
                        printf("error %s\n", rd_kafka_err2str(e));
                else
                        printf("ok %ld\n", answer);
                fflush(stdout);
        }
        veil_mock_destroy(m);
        return 0;
}

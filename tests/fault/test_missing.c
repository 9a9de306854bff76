/*
 * A topic that does not exist, on a cluster that does not create topics
 * (auto.create.topics.enable=false), is an output that is down: its
 * records wait and are produced again, the input pauses once too many
 * batches wait, readiness says which topic is missing, nothing is
 * committed past them, and once the topic is created every record
 * arrives. The host used to stop (exit 1): librdkafka fails the records
 * queued for an unknown topic after topic.metadata.propagation.max.ms
 * (30 s by default; 2 s here), and producing them again was refused at
 * once (ERR__UNKNOWN_TOPIC), which stopped the host.
 *
 * On librdkafka's mock cluster (fault.yaml), which creates any topic a
 * client asks for unless the client says not to: fault_lib makes it heed
 * that (Metadata v4) and the host's producer say it (VEIL_AUTO_CREATE).
 *
 * - test_missing_output_at_least_once: "out" missing; every event's
 *   output waits for it.
 * - test_missing_dead_letter_at_least_once: "dlq" missing; the events'
 *   outputs are acknowledged, but the batches whose dead letters wait are
 *   not committed, nor any after them.
 * - test_missing_output_exactly_once: "out" missing; the transaction is
 *   aborted and the input waits (it is not processed again and again
 *   meanwhile: that took 33 aborts in this test), then every event once.
 *
 * - test_missing_big_dead_letter_at_least_once: "dlq" missing, an
 *   undecodable record of almost 1 MB read meanwhile: its dead letter
 *   (over the producer's message.max.bytes with veil's headers) waits
 *   without its value and arrives so. It used to wait whole, be refused
 *   once the topic existed, and stop the host (exit 1) with advice to
 *   raise message.max.bytes.
 * - test_missing_big_output_at_least_once: "out" missing, an event whose
 *   output is over message.max.bytes read meanwhile: passthrough is told
 *   and dead-letters it (without its value), as when the topic exists;
 *   the other events all arrive. It used to stop the host the same way.
 * - test_missing_side_bounded_at_least_once: "dlq" missing, a side input
 *   (tests/fault/redo.yaml) of undecodable consent records read meanwhile:
 *   their dead letters wait, at most VEIL_KAFKA_HELD_MAX (the side inputs
 *   pause there), then all arrive. They used to wait without bound (40,000
 *   records: 50 MB more).
 * - test_missing_stays_missing_at_least_once: "out" missing for 10 s
 *   after its records first failed: the host is not ready meanwhile,
 *   and says the topic exists only once it does. It used to take
 *   librdkafka queueing a record again for the topic as the topic
 *   existing ("topic 'out' exists now", missing cleared), at times (the
 *   reviewer's run: within 4 s of the first failure; not every run).
 *
 * `test_missing [NAME]` runs the tests whose name matches NAME.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault_lib.h"

static struct fault_env *missing_env(void **state, const char *topic,
                                     int partitions, int exactly_once) {
        struct fault_opts o = {0};
        o.partitions = partitions;
        o.exactly_once = exactly_once;
        o.allow_aborts = exactly_once;
        o.missing_topic = topic;
        /* The records queued for the topic fail after 2 s, not 30. */
        o.propagation_ms = "2000";
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        return e;
}

/* Waits (up to 30 s) until readiness says `topic` is missing, then 4 s
 * more: the host runs on, and nothing is committed. */
static void wait_missing(struct fault_env *e, const char *topic) {
        char what[128], why[512] = "";
        snprintf(what, sizeof(what), "topic '%s' does not exist", topic);
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline &&
               (fault_ready(e, why, sizeof(why)) || !strstr(why, what)))
                sleep_ms(50);
        fprintf(stderr, "# not ready: %s\n", why);
        assert_non_null(strstr(why, what));
        double until = now_s() + 4;
        while (!e->ended && now_s() < until)
                sleep_ms(100);
        assert_false(e->ended);
        assert_int_equal(e->commits, 0);
        for (int i = 0; i < e->o.partitions; i++)
                assert_true(fault_committed(e, i) < 0);
        /* Produced again (at-least-once), or aborted (exactly-once). */
        assert_true(e->o.exactly_once ? e->aborted > 0 : e->retried > 0);
}

/* Creates `topic`, then waits until every input record is committed and
 * every record produced (at least `acked`) is acknowledged; ends the run
 * cleanly. */
static void create_and_finish_n(struct fault_env *e, const char *topic,
                                uint64_t acked) {
        assert_int_equal(rd_kafka_mock_topic_create(fault_cluster(e), topic,
                                                    e->o.partitions, 1),
                         0);
        double deadline = now_s() + 60;
        while (!e->ended && now_s() < deadline &&
               !(e->acked == e->produced && e->acked >= acked &&
                 fault_all_committed(e)))
                sleep_ms(100);
        /* Readiness is published four times a second. */
        char why[512] = "";
        while (!e->ended && now_s() < deadline &&
               !fault_ready(e, why, sizeof(why)))
                sleep_ms(50);
        if (!fault_ready(e, why, sizeof(why)))
                fprintf(stderr, "# not ready after: %s\n", why);
        assert_true(fault_ready(e, why, sizeof(why)));
        e->stop = 1;
        fault_run_join(e);
        assert_true(fault_all_committed(e));
}

static void create_and_finish(struct fault_env *e, const char *topic) {
        create_and_finish_n(e, topic, 0);
}

static void test_missing_output_at_least_once(void **state) {
        struct fault_env *e = missing_env(state, "out", 3, 0);
        fault_feed(e, 500, 0);
        fault_run_start(e, 0, 120);
        wait_missing(e, "out");
        create_and_finish(e, "out");
        /* Nothing was written before the topic existed: none twice. */
        fault_out_once(e, "output topic created late");
}

static void test_missing_dead_letter_at_least_once(void **state) {
        /* One partition, an undecodable record first: the first batch
         * waits for its dead letter, and every batch after it. */
        struct fault_env *e = missing_env(state, "dlq", 1, 0);
        fault_produce(e, "in", "g1", "\x02\x37garbage", 9);
        fault_feed(e, 150, 0);
        fault_produce(e, "in", "g2", "\x02\x37garbage", 9);
        fault_feed(e, 150, 0);
        fault_run_start(e, 0, 120);
        wait_missing(e, "dlq");
        create_and_finish(e, "dlq");
        assert_int_equal(fault_read_all(e, "dlq", "dlq-checker", NULL, NULL),
                         2);
        fault_out_once(e, "dead-letter topic created late");
}

/* The mock cluster stores no transactional offset commits: the run is
 * done once every event's output is acknowledged, in transactions that
 * committed (each commits in the loop turn that produced it, before the
 * counters reach the test). */
static void test_missing_output_exactly_once(void **state) {
        struct fault_env *e = missing_env(state, "out", 3, 1);
        fault_feed(e, 500, 0);
        fault_run_start(e, 0, 120);
        wait_missing(e, "out");
        assert_int_equal(e->acked, 0);
        assert_int_equal(rd_kafka_mock_topic_create(fault_cluster(e), "out",
                                                    3, 1),
                         0);
        double deadline = now_s() + 60;
        while (!e->ended && now_s() < deadline &&
               e->acked < 500)
                sleep_ms(100);
        e->stop = 1;
        fault_run_join(e);
        assert_true(e->st.commits > 0);
        /* The input waited for the topic: it was not processed again
         * (and aborted again) meanwhile. */
        assert_true(e->st.aborted <= 2);
        /* The aborted transactions wrote nothing (their records were
         * refused), so the mock's lack of transaction markers cannot
         * hide a duplicate here. */
        fault_out_once(e, "exactly-once, output topic created late");
}

#define BIG 999950 /* under message.max.bytes (1,000,000) by itself */

/* Waits (up to 30 s) until `n` input records are read. */
static void wait_read(struct fault_env *e, uint64_t n) {
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline && e->records_in < n)
                sleep_ms(50);
        assert_true(e->records_in >= n);
}

/* Counts the dead letters without their value whose veil.error says
 * `why` (ctx: struct bare_count). */
struct bare_count {
        const char *why;
        int n;
};

static void count_bare(const rd_kafka_message_t *m, int i, void *ctx) {
        (void)i;
        struct bare_count *c = ctx;
        char error[1024];
        fault_header(m, "veil.error", error, sizeof(error));
        if (!m->len && strstr(error, "too large for topic 'dlq'") &&
            strstr(error, c->why))
                c->n++;
}

static void test_missing_big_dead_letter_at_least_once(void **state) {
        struct fault_env *e = missing_env(state, "dlq", 1, 0);
        fault_produce(e, "in", "g1", "\x02\x37garbage", 9);
        fault_feed(e, 20, 0);
        fault_run_start(e, 0, 120);
        wait_missing(e, "dlq");
        char *junk = malloc(BIG);
        assert_non_null(junk);
        memset(junk, 'X', BIG); /* not Avro: undecodable */
        fault_produce_big(e, "big", 3, junk, BIG);
        free(junk);
        fault_feed(e, 20, 0);
        wait_read(e, 42);
        create_and_finish(e, "dlq");
        struct bare_count c = {"999950 bytes", 0};
        assert_int_equal(fault_read_all(e, "dlq", "dlq-checker", count_bare,
                                        &c),
                         2);
        assert_int_equal(c.n, 1);
        fault_out_once(e, "dead-letter topic created late, one too large");
}

static void test_missing_big_output_at_least_once(void **state) {
        struct fault_env *e = missing_env(state, "out", 1, 0);
        fault_feed(e, 20, 0);
        fault_run_start(e, 0, 120);
        wait_missing(e, "out");
        fault_big_event(e); /* e21 */
        fault_feed(e, 20, 0);
        wait_read(e, 41);
        create_and_finish(e, "out");
        struct fault_count cnt;
        fault_count_out(e, &cnt);
        fault_print_count("output topic created late, one too large", e,
                          &cnt);
        assert_int_equal(cnt.missing, 1);
        assert_int_equal(cnt.dups, 0);
        struct bare_count c = {"the event's output record could not be "
                               "written", 0};
        assert_int_equal(fault_read_all(e, "dlq", "dlq-checker", count_bare,
                                        &c),
                         1);
        assert_int_equal(c.n, 1);
}

/* The number readiness says wait for the missing topic, or -1. */
static long waiting(struct fault_env *e) {
        char why[512] = "";
        const char *n;
        if (fault_ready(e, why, sizeof(why)) ||
            !(n = strstr(why, "does not exist: ")))
                return -1;
        return atol(n + strlen("does not exist: "));
}

#define N_SIDE (VEIL_KAFKA_HELD_MAX + 5000)
static void test_missing_side_bounded_at_least_once(void **state) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.yaml = TEST_ROOT "/tests/fault/redo.yaml";
        o.missing_topic = "dlq";
        o.propagation_ms = "2000";
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "consent", 1, 1), 0);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "audit", 1, 1), 0);
        /* "dlq" known missing first, so that every side dead letter after
         * it waits in veil, none in librdkafka's queue. */
        fault_produce(e, "in", "g1", "\x02\x37garbage", 9);
        fault_feed(e, 20, 0);
        fault_run_start(e, 0, 180);
        wait_missing(e, "dlq");
        fault_produce_garbage(e, "consent", N_SIDE);
        /* Until the number waiting holds still for 3 s. */
        long n = -1, most = -1;
        double still = now_s(), deadline = still + 60;
        while (!e->ended && now_s() < deadline && now_s() - still < 3) {
                long w = waiting(e);
                if (w != n)
                        still = now_s();
                n = w;
                most = w > most ? w : most;
                sleep_ms(50);
        }
        fprintf(stderr, "# %ld record(s) wait for 'dlq' (at most %ld; bound "
                "%d)\n", n, most, VEIL_KAFKA_HELD_MAX);
        assert_true(most >= VEIL_KAFKA_HELD_MAX);
        assert_true(most <= VEIL_KAFKA_HELD_MAX);
        /* The side records not read yet come once the stash drains. */
        create_and_finish_n(e, "dlq", 20 + N_SIDE + 1);
        assert_int_equal(fault_read_all(e, "dlq", "dlq-checker", NULL, NULL),
                         N_SIDE + 1);
        fault_out_once(e, "side dead letters bounded");
}

/* The log (stderr) into a temporary file until log_restore; returns the
 * saved descriptor. */
static int log_capture(FILE **f) {
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0);
        assert_non_null(*f = tmpfile());
        assert_true(dup2(fileno(*f), 2) >= 0);
        return saved;
}

/* Restores stderr; the number of captured lines that hold `what`. */
static int log_restore(int saved, FILE *f, const char *what) {
        fflush(stderr);
        assert_true(dup2(saved, 2) >= 0);
        close(saved);
        char line[4096];
        int n = 0;
        rewind(f);
        while (fgets(line, sizeof(line), f))
                n += strstr(line, what) != NULL;
        fclose(f);
        return n;
}

static void test_missing_stays_missing_at_least_once(void **state) {
        struct fault_env *e = missing_env(state, "out", 1, 0);
        fault_feed(e, 50, 0);
        /* From the start: it came within seconds of the first failure. */
        FILE *f;
        int saved = log_capture(&f);
        fault_run_start(e, 0, 120);
        char why[512] = "";
        double until = now_s() + 30;
        while (!e->ended && now_s() < until &&
               !strstr(why, "topic 'out' does not exist")) {
                fault_ready(e, why, sizeof(why));
                sleep_ms(50);
        }
        int ready = 0;
        until = now_s() + 10;
        while (!e->ended && now_s() < until) {
                ready += fault_ready(e, why, sizeof(why));
                sleep_ms(50);
        }
        int exists = log_restore(saved, f, "exists now");
        fprintf(stderr, "# while missing: ready %d time(s), \"exists now\" "
                "%d time(s)\n", ready, exists);
        assert_int_equal(exists, 0);
        assert_int_equal(ready, 0);
        saved = log_capture(&f);
        create_and_finish(e, "out");
        exists = log_restore(saved, f, "topic 'out' exists now");
        assert_int_equal(exists, 1);
        fault_out_once(e, "output topic created late");
}

int main(int argc, char **argv) {
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_missing_output_at_least_once,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_missing_dead_letter_at_least_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(test_missing_output_exactly_once,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_missing_big_dead_letter_at_least_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_missing_big_output_at_least_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_missing_side_bounded_at_least_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_missing_stays_missing_at_least_once,
                        fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

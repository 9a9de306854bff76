/*
 * Records too large for a topic, on librdkafka's mock cluster (one
 * partition, tests/fault/fault.yaml):
 *
 * - test_oversized_dead_letter: an undecodable record of almost 1 MB,
 *   whose dead letter (the record plus veil's headers) is over the
 *   producer's message.max.bytes, goes to the dead-letter topic without
 *   its value, with the headers that say what and where it was; the events
 *   around it all come out, and the run ends cleanly. It was a poison pill:
 *   the host exited at every start.
 * - test_oversized_key_dead_letter: the same with a key of almost 1 MB:
 *   the dead letter goes without its key as well.
 * - test_oversized_output_{at_least_once,exactly_once}: a valid event of
 *   1.1 MB whose output record is over the producer's message.max.bytes,
 *   first in its batch: the producer refuses the record, passthrough gets
 *   -VEIL_EINVAL and dead-letters the event, whose dead letter (its 1.1 MB
 *   input) goes without its value; the other 100 events come out, the
 *   batch commits and the run ends cleanly. The host used to exit with
 *   the batch uncommitted, so every restart read the event and exited
 *   again; before that, the batch was committed and the event lost.
 * - test_ignored_output_error_{at_least_once,exactly_once}: the same event
 *   through a stage that ignores the refusal (careless.c) and dead-letters
 *   nothing: the batch fails (the host exits with the output's and the
 *   topic's name) and nothing of it is committed, so a restart reads it
 *   again. It used to be committed, since only the stage's return code
 *   failed a batch.
 * - test_dead_letter_refused_{at_least_once,exactly_once}: the broker
 *   refuses a dead letter as too large (a topic whose max.message.bytes is
 *   below the producer's): it goes without its value in both modes. With
 *   exactly-once the host used to exit at every start on it; now the
 *   transaction aborts and the batch is processed again with the dead
 *   letter bare.
 * - test_abort_fresh_group_latest: exactly-once, a new group that starts
 *   at the end (auto.offset.reset latest): after an abort the input goes
 *   back to the first record the transaction read, not to the beginning.
 * - test_output_refused_by_broker: the broker refuses an output record as
 *   too large: the host stops, nothing committed, with a message that
 *   names the setting to change.
 * - test_dead_letters_refused_beyond_bare_max: exactly-once, the broker
 *   refuses 1,100 side-input dead letters of one transaction as too
 *   large (tests/fault/redo.yaml, undecodable consent records read while
 *   catching up): more than the 1,024 the host remembers to send without
 *   their value, so it stops (exit 1) naming the topic's
 *   max.message.bytes. It used to forget the first ones, send them whole
 *   again, and abort for ever.
 *
 * `test_poison [NAME]` runs the tests whose name matches NAME.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fault_lib.h"

#define BIG 999950 /* under message.max.bytes (1,000,000) by itself */

static void produce_big(struct fault_env *e, const char *key,
                        const void *value, size_t len) {
        fault_produce_big(e, key, strlen(key), value, len);
}

struct dead_letter {
        size_t key_len, len;
        char key[64], error[1024], size[32], key_size[32], offset[32];
};

/* The first max records of "dlq" into out (struct dead_letter[max]). */
struct dlq_read {
        struct dead_letter *out;
        int max;
};

static void keep_dead_letter(const rd_kafka_message_t *m, int i, void *ctx) {
        struct dlq_read *r = ctx;
        if (i >= r->max)
                return;
        struct dead_letter *d = &r->out[i];
        d->key_len = m->key_len;
        d->len = m->len;
        snprintf(d->key, sizeof(d->key), "%.*s", (int)m->key_len,
                 (const char *)m->key);
        fault_header(m, "veil.error", d->error, sizeof(d->error));
        fault_header(m, "veil.value.size", d->size, sizeof(d->size));
        fault_header(m, "veil.key.size", d->key_size, sizeof(d->key_size));
        fault_header(m, "veil.source.offset", d->offset, sizeof(d->offset));
}

/* Reads "dlq" (one partition) to its end; the first max records into out.
 * Returns how many it holds. */
static int read_dlq(struct fault_env *e, struct dead_letter *out, int max) {
        struct dlq_read r = {out, max};
        return fault_read_all(e, "dlq", "dlq-checker", keep_dead_letter, &r);
}

static int setup(void **state) {
        struct fault_opts o = {0};
        o.partitions = 1;
        *state = fault_env_new(&o);
        return 0;
}

/* e1..e50, an undecodable record (key, value) at offset 50, e51..e100:
 * the run goes on and ends cleanly, every event comes out, everything is
 * committed, and the record is the one dead letter (into *dl). */
static void undecodable_around(struct fault_env *e, const char *what,
                               const char *key, size_t key_len,
                               const char *value, size_t len,
                               struct dead_letter *dl) {
        fault_feed(e, 50, 0); /* e1..e50 at offsets 0..49 */
        fault_produce_big(e, key, key_len, value, len); /* offset 50 */
        fault_feed(e, 50, 0); /* e51..e100 */
        fault_run_start(e, e->fed + 1, 120);
        fault_run_join(e); /* rc 0: the run went on and ended cleanly */

        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count(what, e, &c);
        assert_int_equal(c.missing, 0);
        assert_true(fault_all_committed(e));

        struct dead_letter two[2];
        assert_int_equal(read_dlq(e, two, 2), 1);
        fprintf(stderr, "# veil.error: %s\n", two[0].error);
        *dl = two[0];
        assert_string_equal(dl->offset, "50");
        assert_int_equal(dl->len, 0); /* the value is left out */
        assert_non_null(strstr(dl->error, "too large for topic 'dlq'"));
}

static void test_oversized_dead_letter(void **state) {
        char *junk = malloc(BIG);
        assert_non_null(junk);
        memset(junk, 'X', BIG); /* not Avro: undecodable */
        struct dead_letter dl;
        undecodable_around(*state, "around an oversized record", "big", 3,
                           junk, BIG, &dl);
        free(junk);
        assert_string_equal(dl.key, "big");
        assert_string_equal(dl.size, "999950");
}

/* An undecodable record whose key alone (999,990 bytes) leaves no room
 * for the dead letter's headers: without its value it is still over the
 * producer's limit, so it goes without its key too. It was still fatal at
 * every start. */
static void test_oversized_key_dead_letter(void **state) {
        size_t kl = 999990;
        char *key = malloc(kl);
        assert_non_null(key);
        memset(key, 'K', kl);
        struct dead_letter dl;
        undecodable_around(*state, "around a record with an oversized key",
                           key, kl, "XX", 2, &dl);
        free(key);
        assert_int_equal(dl.key_len, 0);
        assert_string_equal(dl.size, "2");
        assert_string_equal(dl.key_size, "999990");
        assert_non_null(strstr(dl.error, "and its key (999990 bytes) are "
                                         "left out"));
}

/* e1 (1.1 MB, offset 0), then e2..e101 (offsets 1..100), read as one
 * batch (max_events 128) by pseudonymize and passthrough. */
static void oversized_output(void **state, int exactly_once) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.exactly_once = exactly_once;
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        size_t big = fault_big_event(e);
        fault_feed(e, 100, 0); /* e2..e101 */
        fault_run_start(e, e->fed, 60);
        fault_run_join(e); /* rc 0: the host went on and ended cleanly */

        /* Every other event came out, e1 alone is missing. */
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count(exactly_once ? "exactly-once" : "at-least-once", e,
                          &c);
        assert_int_equal(c.missing, 1);
        assert_int_equal(c.distinct, 100);
        assert_int_equal(c.dups, 0);
        /* The batch committed: its offsets (at-least-once: up to the end
         * of "in"; the mock cluster keeps no transactional offset commits,
         * so exactly-once counts its committed transactions). */
        assert_int_equal(e->st.aborted, 0);
        if (exactly_once)
                assert_true(e->st.commits >= 1);
        else
                assert_true(fault_all_committed(e));

        /* e1 is a dead letter: its input bytes (1.1 MB) are over the limit
         * too, so it goes without them, with passthrough's error and
         * where the record is. */
        struct dead_letter dl[2];
        assert_int_equal(read_dlq(e, dl, 2), 1);
        fprintf(stderr, "# veil.error: %s\n", dl[0].error);
        assert_string_equal(dl[0].key, "e1");
        assert_int_equal(dl[0].len, 0);
        char size[32];
        snprintf(size, sizeof(size), "%zu", big);
        assert_string_equal(dl[0].size, size);
        assert_string_equal(dl[0].offset, "0");
        assert_non_null(strstr(dl[0].error, "passthrough: the event's output "
                                            "record could not be written"));
        assert_non_null(strstr(dl[0].error, "too large for topic 'dlq'"));
}

static void test_oversized_output_at_least_once(void **state) {
        oversized_output(state, 0);
}

static void test_oversized_output_exactly_once(void **state) {
        oversized_output(state, 1);
}

/* The stage goes on after veil_out_event was refused for e1, the only
 * record of the run, and dead-letters nothing. */
static void ignored_output_error(void **state, int exactly_once) {
        setenv("VEIL_FAULT_PLUGINS", FAULT_PLUGINS, 1);
        struct fault_opts o = {0};
        o.partitions = 1;
        o.exactly_once = exactly_once;
        o.yaml = TEST_ROOT "/tests/fault/careless.yaml";
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        fault_big_event(e);
        fault_run_start(e, 0, 15);
        double deadline = now_s() + 15;
        while (!e->ended && now_s() < deadline)
                sleep_ms(20);
        assert_true(e->ended);
        fault_run_join_failed(e);
        fprintf(stderr, "# run: %s\n", e->err);
        assert_non_null(strstr(e->err, "stage 1 (careless)"));
        assert_non_null(strstr(e->err, "output 'events'"));
        assert_non_null(strstr(e->err, "topic 'out'"));
        assert_non_null(strstr(e->err, "not committed"));
        /* Nothing committed (exactly-once: the transaction aborted), and
         * no dead letter: a restart reads e1 again. */
        if (exactly_once) {
                assert_int_equal(e->st.commits, 0);
        } else {
                int64_t off = fault_committed(e, 0);
                fprintf(stderr, "# committed offset of in [0]: %lld\n",
                        (long long)off);
                assert_true(off <= 0);
        }
        struct dead_letter dl[1];
        assert_int_equal(read_dlq(e, dl, 1), 0);
}

static void test_ignored_output_error_at_least_once(void **state) {
        ignored_output_error(state, 0);
}

static void test_ignored_output_error_exactly_once(void **state) {
        ignored_output_error(state, 1);
}

/* Reads "dlq" without waiting for a record that is not there yet. */
static int dlq_records(struct fault_env *e) {
        struct dead_letter dl[1];
        return read_dlq(e, dl, 1);
}

/* Asks the run to stop once at least `in` records are read, the dead
 * letter is there and the host has been idle for 2 s (nothing read,
 * produced or acknowledged: the records of aborted transactions that
 * failed are never acknowledged, so the counts cannot tell otherwise), or
 * after 60 s. */
static void stop_when_settled(struct fault_env *e, uint64_t in) {
        double deadline = now_s() + 60, idle_since = now_s();
        uint64_t last = 0;
        while (!e->ended && now_s() < deadline) {
                uint64_t moved = e->records_in + e->produced + e->acked;
                if (moved != last) {
                        last = moved;
                        idle_since = now_s();
                } else if (e->records_in >= in &&
                           now_s() - idle_since >= 2 && dlq_records(e) >= 1) {
                        break;
                }
                sleep_ms(200);
        }
        e->stop = 1;
}

/* e1..e50, an undecodable record of 9 bytes (offset 50), e51..e100; the
 * broker that leads "dlq" (alone) refuses the first produce request to it
 * as too large. The mock cluster has no topic configurations, so this is
 * how a dead-letter topic with a smaller max.message.bytes than the
 * producer's looks to the host. */
/* Two brokers, "dlq" led by broker 2 alone, the other topics by broker
 * 1: a test refuses the dead letters by failing broker 2's produce
 * requests. *state owns the environment. */
static struct fault_env *dlq_apart(void **state, int exactly_once,
                                   const char *offset_reset) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.brokers = 2;
        o.exactly_once = exactly_once;
        o.allow_aborts = 1;
        o.offset_reset = offset_reset;
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        fault_lead(e, "in", 1, 1);
        fault_lead(e, "out", 1, 1);
        fault_lead(e, "recs", 1, 1);
        fault_lead(e, "dlq", 1, 2);
        return e;
}

static void refused_by_broker(void **state, int exactly_once) {
        struct fault_env *e = dlq_apart(state, exactly_once, NULL);
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        fault_feed(e, 50, 0);
        produce_big(e, "bad", "\x02\x37garbage", 9);
        fault_feed(e, 50, 0);
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 mc, 2, API_PRODUCE, 1,
                                 RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
                         0);
        fault_run_start(e, 0, 90);
        stop_when_settled(e, (uint64_t)e->fed + 1);
        fault_run_join(e); /* rc 0: the host went on */
        size_t left = 1;
        rd_kafka_mock_broker_error_stack_cnt(mc, 2, API_PRODUCE, &left);
        assert_int_equal(left, 0); /* the refusal met the dead letter */
        /* Exactly-once: its transaction aborted (librdkafka 2.0.2 may
         * abort the next one too, the sequence numbers skipped by the
         * refused record needing an epoch bump). */
        if (exactly_once)
                assert_true(e->st.aborted >= 1);
        else
                assert_int_equal(e->st.aborted, 0);

        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count(exactly_once ? "exactly-once" : "at-least-once", e,
                          &c);
        assert_int_equal(c.missing, 0);
        /* The refused one never got into the log: one dead letter, bare,
         * with the headers that say what and where it was. */
        struct dead_letter dl[2];
        assert_int_equal(read_dlq(e, dl, 2), 1);
        fprintf(stderr, "# veil.error: %s\n", dl[0].error);
        assert_int_equal(dl[0].len, 0);
        assert_string_equal(dl[0].key, "bad");
        assert_string_equal(dl[0].size, "9");
        assert_string_equal(dl[0].offset, "50");
        assert_non_null(strstr(dl[0].error, "too large for topic 'dlq'"));
}

static void test_dead_letter_refused_at_least_once(void **state) {
        refused_by_broker(state, 0);
}

static void test_dead_letter_refused_exactly_once(void **state) {
        refused_by_broker(state, 1);
}

/* Exactly-once, a group without committed offsets that starts at the end
 * (auto.offset.reset latest) over 30 events of history: the first
 * transaction aborts (the broker refuses its dead letter, as above), and
 * the input goes back to the first record that transaction read, not to
 * the topic's beginning: the history is never processed. */
static void test_abort_fresh_group_latest(void **state) {
        struct fault_env *e = dlq_apart(state, 1, "latest");
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        fault_feed(e, 30, 0); /* e1..e30: before the group's start */
        fault_run_start(e, 0, 90);
        char why[256];
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline && !fault_ready(e, why,
                                                               sizeof(why)))
                sleep_ms(100);
        assert_true(fault_ready(e, why, sizeof(why)));
        sleep_ms(2000); /* the consumer has found the end by now */
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 mc, 2, API_PRODUCE, 1,
                                 RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
                         0);
        fault_feed(e, 10, 0); /* e31..e40 */
        produce_big(e, "bad", "\x02\x37garbage", 9);
        fault_feed(e, 10, 0); /* e41..e50 */
        stop_when_settled(e, 21);
        fault_run_join(e); /* rc 0: the host went on */
        assert_true(e->st.aborted >= 1);
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count("latest, after an abort", e, &c);
        assert_int_equal(c.distinct, 20); /* e31..e50 */
        assert_int_equal(c.missing, 30);  /* e1..e30, history */
}

/* The broker that leads "out" (alone) refuses an output record as too
 * large: a topic whose max.message.bytes is below the producer's. That is a
 * setting to fix: the host stops with the batch uncommitted and says
 * which one (the producer's limit at most the topic's, so that the
 * producer refuses such a record and its event is dead-lettered). */
static void test_output_refused_by_broker(void **state) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.brokers = 2;
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        fault_lead(e, "in", 1, 1);
        fault_lead(e, "out", 1, 2);
        fault_lead(e, "dlq", 1, 1);
        fault_feed(e, 20, 0);
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 mc, 2, API_PRODUCE, 1,
                                 RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
                         0);
        fault_run_start(e, 0, 30);
        double deadline = now_s() + 30;
        while (!e->ended && now_s() < deadline)
                sleep_ms(20);
        assert_true(e->ended);
        fault_run_join_failed(e);
        fprintf(stderr, "# run: %s\n", e->err);
        assert_non_null(strstr(e->err, "topic 'out'"));
        assert_non_null(strstr(e->err, "message.max.bytes of 1000000"));
        assert_non_null(strstr(e->err, "set kafka.settings "
                                       "message.max.bytes and batch.size to "
                                       "at most the topic's limit"));
        assert_true(fault_committed(e, 0) <= 0);
}

static void test_dead_letters_refused_beyond_bare_max(void **state) {
        struct fault_opts o = {0};
        o.partitions = 1;
        o.brokers = 2;
        o.exactly_once = 1;
        o.allow_aborts = 1;
        o.yaml = TEST_ROOT "/tests/fault/redo.yaml";
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "consent", 1, 1), 0);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "audit", 1, 1), 0);
        fault_lead(e, "in", 1, 1);
        fault_lead(e, "out", 1, 1);
        fault_lead(e, "consent", 1, 1);
        fault_lead(e, "dlq", 1, 2);
        fault_produce_garbage(e, "consent", 1100);
        /* Every produce request of the first pass (and more). */
        for (int i = 0; i < 50; i++)
                assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                         mc, 2, API_PRODUCE, 1,
                                         RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                                         0),
                                 0);
        fault_run_start(e, 0, 60);
        fault_run_join_failed(e);
        fprintf(stderr, "# run: %s\n", e->err);
        assert_non_null(strstr(e->err, "more than 1024 dead letters"));
        assert_non_null(strstr(e->err, "max.message.bytes"));
}

int main(int argc, char **argv) {
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_oversized_dead_letter,
                                                setup, fault_env_teardown),
                cmocka_unit_test_setup_teardown(
                        test_oversized_key_dead_letter, setup,
                        fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_oversized_output_at_least_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(test_oversized_output_exactly_once,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_ignored_output_error_at_least_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_ignored_output_error_exactly_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_dead_letter_refused_at_least_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_dead_letter_refused_exactly_once,
                        fault_env_teardown),
                cmocka_unit_test_teardown(test_output_refused_by_broker,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_abort_fresh_group_latest,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(
                        test_dead_letters_refused_beyond_bare_max,
                        fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

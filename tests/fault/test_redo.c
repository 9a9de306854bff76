/*
 * Exactly-once: records produced between batches — a side input's dead
 * letter, the consent stage's audit record — go into the open transaction.
 * When it aborts, the input is rewound and its batch processed again, but
 * nothing reads those side records again (the side consumer has moved
 * on). They are kept until a transaction that holds them commits, and
 * produced again after an abort; they used to be lost.
 *
 * On librdkafka's mock cluster (tests/fault/redo.yaml): two brokers, the
 * dead-letter and audit topics led by broker 2 alone, whose produce
 * requests fail (with an error that fails a record at once, without
 * retries); the transaction that holds them aborts. The mock cluster keeps
 * an aborted transaction's records visible (it writes no transaction
 * markers), so the records are refused rather than written and then
 * aborted: what the topics hold afterwards is what was produced again.
 *
 * test_held_bounded_*: while transactions abort again and again, every
 * side record read adds one such record to hold; the host holds at most
 * VEIL_KAFKA_HELD_MAX (it pauses the side inputs until a commit), and
 * once the aborts stop every record is there exactly once. The aborts
 * come from refused AddPartitionsToTxn requests, so that nothing of an
 * aborted transaction is written.
 *
 * `test_redo [NAME]` runs the tests whose name matches NAME (a pattern:
 * 'test_held_bounded*').
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

#include "codec.h"
#include "fault_lib.h"

/* A consent record that grants everything to `user`: its first record, so
 * the consent stage emits an audit record ("granted"). */
static void produce_consent(struct fault_env *e, const char *user) {
        struct veil_buf b = {0};
        fault_consent_grant(user, &b);
        fault_produce(e, "consent", user, b.data, b.len);
        veil_buf_free(&b);
}

/* The first record's veil.source.offset header. */
struct first_off {
        char *buf;
        size_t size;
};

static void first_offset(const rd_kafka_message_t *m, int i, void *ctx) {
        struct first_off *f = ctx;
        if (!i)
                fault_header(m, "veil.source.offset", f->buf, f->size);
}

/* Records in `topic` (one partition, read_committed, to its end); the
 * first one's veil.source.offset header into `src_off`. */
static int count(struct fault_env *e, const char *topic, char *src_off,
                 size_t size) {
        struct first_off f = {src_off, size};
        if (src_off)
                src_off[0] = '\0';
        return fault_read_all(e, topic, "redo-checker",
                              src_off ? first_offset : NULL, &f);
}

/* The consent topic holds an undecodable record (offset 0: a dead letter)
 * and a first consent (offset 1: an audit record); both are produced while
 * the side input catches up, into the transaction of the first batch. */
static void test_side_records_after_abort(void **state) {
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
        fault_lead(e, "audit", 1, 2);
        fault_produce(e, "consent", "u9", "\x02\x37garbage", 9);
        produce_consent(e, "u1");
        fault_feed(e, 20, 0);
        /* Two, in case the two records go in two requests: each is
         * refused at least once, and each refusal aborts (a first
         * request refused, a second written in the aborted transaction,
         * would leave a visible copy on the mock cluster). */
        for (int i = 0; i < 2; i++)
                assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                         mc, 2, API_PRODUCE, 1,
                                         RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP,
                                         0),
                                 0);
        fault_run_start(e, 0, 90);
        /* Done once both errors met a request, the events are read and
         * every record of a transaction that did not abort is
         * acknowledged, or at the deadline. */
        double deadline = now_s() + 45;
        size_t left = 2;
        while (!e->ended && now_s() < deadline) {
                rd_kafka_mock_broker_error_stack_cnt(mc, 2, API_PRODUCE,
                                                     &left);
                if (!left && e->records_in >= (uint64_t)e->fed &&
                    count(e, "dlq", NULL, 0) >= 1 &&
                    count(e, "audit", NULL, 0) >= 1)
                        break;
                sleep_ms(200);
        }
        sleep_ms(500);
        e->stop = 1;
        fault_run_join(e);
        assert_int_equal(left, 0);
        assert_true(e->st.aborted >= 1);
        char off[32];
        int dl = count(e, "dlq", off, sizeof(off));
        int audit = count(e, "audit", NULL, 0);
        fprintf(stderr, "# %llu aborted; dlq: %d record(s), audit: %d\n",
                (unsigned long long)e->st.aborted, dl, audit);
        assert_int_equal(dl, 1);
        assert_string_equal(off, "0");
        assert_int_equal(audit, 1);
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count("exactly-once", e, &c);
        assert_int_equal(c.missing, 0);
}

/* ------------------------------------------------------------------ */
/* The records held for a redo are bounded                            */
/* ------------------------------------------------------------------ */

/* Side records that every transaction holds while they abort: undecodable
 * consent records, one dead letter each (their copies are what the host
 * holds). Over three times the bound, so that without it the host would
 * hold them all. */
#define N_SIDE (3 * VEIL_KAFKA_HELD_MAX + 1234)
/* Aborted transactions in a row once the host holds VEIL_KAFKA_HELD_MAX
 * records: without the bound, each would let it read up to 1,000 side
 * records more (10,000 while catching up). */
#define N_AFTER 10
#define N_EVENTS 2000

/* The next n transactions' first AddPartitionsToTxn are refused (an
 * error librdkafka aborts on). The refused partitions' records are never
 * sent, so an aborted transaction leaves nothing on the mock cluster
 * (which writes no transaction markers) and what the topics hold
 * afterwards is exactly what committed. */
static void push_aborts(rd_kafka_mock_cluster_t *mc, int n) {
        for (int i = 0; i < n; i++)
                assert_int_equal(
                        rd_kafka_mock_broker_push_request_error_rtts(
                                mc, 1, API_ADD_PARTITIONS_TO_TXN, 1,
                                RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                0),
                        0);
}

struct held {
        int mid_run; /**< faults once events are committed, not at start */
        _Atomic int injected; /**< the side records are in */
        int faults_done;      /**< the last N_AFTER refusals are pushed */
        _Atomic int pushed;   /**< refusals pushed */
        _Atomic uint64_t held, side_records;
        /* Input records read while the bound was held (the input waits
         * with the side inputs), from the first turn that found it. */
        int full; /**< 0 before, 1 while held at the bound, 2 after */
        uint64_t in_at_full, read_while_full;
};

/* On the run's thread, at every loop turn's start (also while catching
 * up). Every transaction aborts until the host holds VEIL_KAFKA_HELD_MAX
 * records, and N_AFTER more after that: by a count of what it holds, not
 * of time, so that the host reaches the bound however fast it reads. The
 * refusals never run out meanwhile (a turn takes one or two: the one
 * that aborts, and the redo's next one), or a transaction could add its
 * partitions between two and commit. */
static int held_hook(struct fault_env *e, const struct veil_kafka_stats *st) {
        struct held *h = e->hook_ctx;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        h->held = st->held;
        h->side_records = st->side_records;
        if (h->full < 2 && st->held >= VEIL_KAFKA_HELD_MAX) {
                if (!h->full)
                        h->in_at_full = st->records_in;
                h->full = 1;
                h->read_while_full = st->records_in - h->in_at_full;
        } else if (h->full == 1) {
                h->full = 2;
        }
        if (!h->injected) {
                /* Mid-run: once a batch has committed. The side records go
                 * in while the host waits here, so its next turns find
                 * them. */
                if (!st->side_caught_up || !st->commits)
                        return 0;
                fault_produce_garbage(e, "consent", N_SIDE);
                h->injected = 1;
        }
        if (h->faults_done)
                return 0;
        if (st->held >= VEIL_KAFKA_HELD_MAX) {
                push_aborts(mc, N_AFTER);
                h->pushed += N_AFTER;
                h->faults_done = 1;
                return 0;
        }
        size_t left = 0;
        rd_kafka_mock_broker_error_stack_cnt(mc, 1,
                                             API_ADD_PARTITIONS_TO_TXN, &left);
        if (left < N_AFTER) {
                push_aborts(mc, N_AFTER);
                h->pushed += N_AFTER;
        }
        return 0;
}

/* Each dead letter's source offset, counted. */
struct dl_seen {
        unsigned char *seen;
        long n, bad;
};

static void dl_offset(const rd_kafka_message_t *m, int i, void *ctx) {
        struct dl_seen *d = ctx;
        (void)i;
        char off[32];
        fault_header(m, "veil.source.offset", off, sizeof(off));
        long o = off[0] ? atol(off) : -1;
        if (o < 0 || o >= d->n) {
                d->bad++;
                return;
        }
        if (d->seen[o] < 255)
                d->seen[o]++;
}

/* Every partition of "dlq" to its end (read_committed): three, since the
 * mock cluster keeps 5 MB of a partition and drops the oldest beyond,
 * less than N_SIDE dead letters take. */
static int read_dlq(struct fault_env *e, struct dl_seen *d) {
        return fault_read_all(e, "dlq", "held-checker", dl_offset, d);
}

/* Transactions abort again and again while the side input brings records
 * that each transaction holds (a dead letter each). The host holds at most
 * VEIL_KAFKA_HELD_MAX of them: it stops reading the side input once it
 * holds that many and goes on once a transaction commits. Once the aborts
 * stop, every side record's dead letter and every event's output is
 * there exactly once. */
static void run_held(void **state, int mid_run) {
        struct fault_opts o = {0};
        o.partitions = 3; /* of in, out and dlq: see read_dlq */
        o.exactly_once = 1;
        o.allow_aborts = 1;
        o.yaml = TEST_ROOT "/tests/fault/redo.yaml";
        struct fault_env *e = fault_env_new(&o);
        *state = e;
        rd_kafka_mock_cluster_t *mc = fault_cluster(e);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "consent", 1, 1), 0);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "audit", 1, 1), 0);
        fault_feed(e, N_EVENTS, 0);
        struct held h = {0};
        h.mid_run = mid_run;
        e->hook = held_hook;
        e->hook_ctx = &h;
        if (!mid_run) {
                /* Read while the side input catches up, before any
                 * event: commits come every VEIL_KAFKA_HELD_MAX then. */
                fault_produce_garbage(e, "consent", N_SIDE);
                h.injected = 1;
        }
        fault_run_start(e, 0, 240);
        /* Done once every refusal met a request, every side record was
         * read and nothing is held any more, and every event's output is
         * there; or at the deadline (a hang guard only: the assertions
         * below say what failed). Not "every record produced is
         * acknowledged": an aborted transaction's never are. */
        double deadline = now_s() + 200;
        size_t left = 1;
        for (;;) {
                if (e->ended || now_s() > deadline)
                        break;
                sleep_ms(200);
                if (!h.injected)
                        continue;
                rd_kafka_mock_broker_error_stack_cnt(
                        mc, 1, API_ADD_PARTITIONS_TO_TXN, &left);
                if (left || !h.faults_done ||
                    h.side_records < (uint64_t)N_SIDE || h.held)
                        continue;
                struct fault_count c;
                fault_count_out(e, &c);
                if (!c.missing)
                        break;
        }
        e->stop = 1;
        fault_run_join(e);
        fprintf(stderr,
                "# %s: %d refused, %llu aborted; held at most %llu "
                "record(s) (bound %d); %llu side records\n",
                mid_run ? "mid-run" : "catch-up", h.pushed,
                (unsigned long long)e->st.aborted,
                (unsigned long long)e->st.held_max, VEIL_KAFKA_HELD_MAX,
                (unsigned long long)e->st.side_records);
        /* The faults happened: each refusal met a transaction and
         * aborted it, and the last N_AFTER came with the bound reached. */
        assert_true(h.faults_done);
        assert_int_equal(left, 0);
        assert_true(e->st.aborted >= (uint64_t)h.pushed);
        /* The bound held through them: each side record here yields one
         * record to hold (a dead letter), so it is exact. */
        assert_true(e->st.held_max >= VEIL_KAFKA_HELD_MAX);
        assert_true(e->st.held_max <= VEIL_KAFKA_HELD_MAX);
        assert_int_equal(e->st.held, 0);
        /* No event read while the side inputs waited (a consent record
         * not applied meanwhile must not be missed by events). */
        fprintf(stderr, "# input records read while held at the bound: "
                "%llu\n", (unsigned long long)h.read_while_full);
        assert_int_equal(h.full, 2);
        assert_int_equal(h.read_while_full, 0);
        /* Nothing lost, nothing twice: each side record's dead letter
         * and each event's output, once. */
        struct dl_seen d = {calloc(N_SIDE, 1), N_SIDE, 0};
        assert_non_null(d.seen);
        int dl = read_dlq(e, &d);
        long once = 0, twice = 0;
        for (long i = 0; i < N_SIDE; i++) {
                once += d.seen[i] == 1;
                twice += d.seen[i] > 1;
        }
        free(d.seen);
        fprintf(stderr, "# dlq: %d record(s), %ld of %d once, %ld more "
                "than once, %ld foreign\n", dl, once, N_SIDE, twice, d.bad);
        assert_int_equal(d.bad, 0);
        assert_int_equal(twice, 0);
        assert_int_equal(once, N_SIDE);
        assert_int_equal(dl, N_SIDE);
        fault_out_once(e, "exactly-once");
}

static void test_held_bounded_catch_up(void **state) {
        run_held(state, 0);
}

static void test_held_bounded_mid_run(void **state) {
        run_held(state, 1);
}

int main(int argc, char **argv) {
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_side_records_after_abort,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_held_bounded_catch_up,
                                          fault_env_teardown),
                cmocka_unit_test_teardown(test_held_bounded_mid_run,
                                          fault_env_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

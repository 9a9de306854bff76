/*
 * Backpressure: the output topics' broker is down for longer than the
 * producer's message timeout while 120,000 events of about 200 bytes arrive
 * on the input. The host pauses its input partitions, reads only what its
 * in-flight batches hold, and its memory stays bounded; once the broker is
 * back every event has its output (at-least-once).
 *
 * The cluster runs in a child process (fault_broker), so that this
 * process's RSS is the host's: the pipeline, its clients and their queues.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault_lib.h"

#define WARM 2000      /* events before the outage */
#define FLOOD 120000   /* events while the output is down */
#define SIZE 200       /* bytes an input record */
#define DOWN_S 15      /* the output stays down after the flood */
/* AddressSanitizer's allocator keeps what is freed in quarantine and pads
 * every block: RSS says nothing about the host's bound there, so it is
 * reported but not held against the bound. */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif

#define WAITING_S 5    /* RSS measured over the outage's last seconds */
#define BOUND_MIB 32   /* RSS growth allowed while the flood waits: the
                          8 MiB prefetch and the in-flight batches, with
                          room (a host that does not pause: +60 MiB) */

struct bp {
        struct fault_env *e;
        int saved_stderr; /* the log goes to `log` meanwhile */
        FILE *log;
        /* RSS sampler */
        pthread_t th;
        _Atomic int sampling;
        _Atomic long peak_kib;
};

static void *sample_rss(void *arg) {
        struct bp *b = arg;
        while (b->sampling) {
                long v = proc_kib("VmRSS");
                if (v > b->peak_kib)
                        b->peak_kib = v;
                sleep_ms(50);
        }
        return NULL;
}

/* Lines of the captured log that contain `what`; prints them. */
static int log_count(struct bp *b, const char *what) {
        char line[2048];
        int n = 0;
        fflush(stderr);
        rewind(b->log);
        while (fgets(line, sizeof(line), b->log))
                if (strstr(line, what)) {
                        if (n++ < 3)
                                fprintf(stdout, "# log: %s", line);
                }
        fseek(b->log, 0, SEEK_END);
        return n;
}

static void restore_stderr(struct bp *b) {
        if (b->saved_stderr < 0)
                return;
        fflush(stderr);
        dup2(b->saved_stderr, 2);
        close(b->saved_stderr);
        b->saved_stderr = -1;
        /* The host's log, after the fact, for a failure's diagnosis. */
        char line[2048];
        rewind(b->log);
        long skipped = 0;
        while (fgets(line, sizeof(line), b->log)) {
                if (strstr(line, "Connect to") ||
                    strstr(line, "Disconnected") ||
                    strstr(line, "delivery to topic") ||
                    strstr(line, "input partition(s)"))
                        skipped++;
                else
                        fputs(line, stderr);
        }
        fprintf(stderr, "# (%ld log lines on connections, pauses and "
                "deliveries left out)\n", skipped);
        fclose(b->log);
        b->log = NULL;
}

static int teardown(void **state) {
        struct bp *b = *state;
        if (!b)
                return 0;
        if (b->sampling) {
                b->sampling = 0;
                pthread_join(b->th, NULL);
        }
        restore_stderr(b);
        fault_env_free(b->e);
        free(b);
        return 0;
}

static double mib(long kib) {
        return (double)kib / 1024.0;
}

/* The cluster in a child, two brokers: the input and the group on broker
 * 1, the outputs on broker 2 (the one that goes down). */
static struct fault_env *two_brokers(void **state, struct fault_opts *o) {
        struct bp *b = calloc(1, sizeof(*b));
        assert_non_null(b);
        b->saved_stderr = -1;
        *state = b;
        o->external = 1;
        o->brokers = 2;
        struct fault_env *e = b->e = fault_env_new(o);
        assert_int_equal(fault_child_cmd(e, "leader in 1"), 0);
        assert_int_equal(fault_child_cmd(e, "leader out 2"), 0);
        assert_int_equal(fault_child_cmd(e, "leader dlq 2"), 0);
        assert_int_equal(fault_child_cmd(e, "coordinator group %s 1",
                                         e->group),
                         0);
        return e;
}

static void test_output_down(void **state) {
        struct fault_opts o = {0};
        /* 16 partitions: the mock keeps about 5 MB of each. */
        o.partitions = 16;
        /* Shorter than the outage: records time out in the producer and
         * the host produces them again. */
        o.message_timeout_ms = "5000";
        /* What the consumer may fetch ahead, before the pause takes hold
         * (librdkafka's default is 64 MiB, about as much as an unpaused
         * host holds at most: its producer queue is full at 100,000
         * records). Smaller, the host's own share shows. */
        o.prefetch_kb = "8192";
        struct fault_env *e = two_brokers(state, &o);
        struct bp *b = *state;

        /* The host's log, to find its pause in. */
        b->log = tmpfile();
        assert_non_null(b->log);
        fflush(stderr);
        b->saved_stderr = dup(2);
        dup2(fileno(b->log), 2);

        fault_run_start(e, 0, 170);
        fault_feed(e, WARM, SIZE);
        double dl = now_s() + 60;
        while (!e->ended && now_s() < dl && !fault_all_committed(e))
                sleep_ms(100);
        assert_true(fault_all_committed(e));

        /* Steady state: the baseline. Then the output goes. */
        long before = proc_kib("VmRSS");
        b->peak_kib = before;
        b->sampling = 1;
        assert_int_equal(pthread_create(&b->th, NULL, sample_rss, b), 0);
        fault_broker_set(e, 2, 0);
        uint64_t in0 = e->records_in;
        double t0 = now_s();
        fault_feed(e, FLOOD, SIZE);
        double fed_s = now_s() - t0;
        /* The last seconds of the outage: the host paused, the flood
         * waiting in the input topic. */
        sleep_ms((DOWN_S - WAITING_S) * 1000);
        long waiting = 0;
        for (double t = now_s(); now_s() - t < WAITING_S;) {
                long v = proc_kib("VmRSS");
                if (v > waiting)
                        waiting = v;
                sleep_ms(100);
        }
        uint64_t read_down = e->records_in - in0;
        char why[512];
        int ready = fault_ready(e, why, sizeof(why));
        long peak = b->peak_kib;
        int paused = log_count(b, "paused 16 input partition(s)");

        fault_broker_set(e, 2, 1);
        dl = now_s() + 120;
        while (!e->ended && now_s() < dl && !fault_all_committed(e))
                sleep_ms(200);
        b->sampling = 0;
        pthread_join(b->th, NULL);
        long after = proc_kib("VmRSS"), hwm = proc_kib("VmHWM");
        e->stop = 1;
        fault_run_join(e);
        double run_s = now_s() - t0;
        int redeliver_lines = log_count(b, "; producing again (");
        restore_stderr(b);

        fprintf(stderr,
                "# output down %.0f s: %d records of %d B (%.1f MiB) fed in "
                "%.1f s, %llu of them read meanwhile; %s (\"%s\"); "
                "%llu records timed out in the producer and produced "
                "again\n",
                fed_s + DOWN_S, FLOOD, SIZE, FLOOD * (double)SIZE / 1048576,
                fed_s, (unsigned long long)read_down,
                ready ? "ready" : "not ready", ready ? "" : why,
                (unsigned long long)e->st.retried);
        fprintf(stderr,
                "# RSS: before %.1f MiB; while the flood waited (the last "
                "%d s of the outage) %.1f MiB (%+.1f); peak %.1f MiB (%+.1f, "
                "the consumer's prefetch before the pause took hold); after "
                "the catch-up %.1f MiB; VmHWM %.1f MiB\n",
                mib(before), WAITING_S, mib(waiting), mib(waiting - before),
                mib(peak), mib(peak - before), mib(after), mib(hwm));
        /* The host paused its input and read a few batches' worth, not the
         * flood; produced again what timed out; said it was not ready. */
        assert_true(paused >= 1);
        assert_true(read_down < FLOOD / 10);
        assert_true(e->st.retried > 0);
        assert_false(ready);
        /* Every record that timed out is produced again, but the log says
         * so once per 10 s, not once per record. */
        fprintf(stderr, "# %d log line(s) for %llu records produced again "
                "in %.0f s\n", redeliver_lines,
                (unsigned long long)e->st.retried, run_s);
        assert_true(redeliver_lines >= 1);
        assert_true(redeliver_lines <= (int)(run_s / 10) + 1);
        /* Bounded while the flood waits. (Before the pause takes hold the
         * consumer prefetches what queued.max.messages.kbytes allows; the
         * pause makes it stale and the host frees it.) */
        if (ASAN)
                fprintf(stderr, "# (AddressSanitizer: RSS not held against "
                        "the %d MiB bound)\n", BOUND_MIB);
        else
                assert_true(waiting - before < BOUND_MIB * 1024);

        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count("backpressure", e, &c);
        assert_int_equal(e->fed, WARM + FLOOD);
        assert_int_equal(c.missing, 0);
}

/* The producer's queue full when the records of an outage time out: each
 * delivery report that produces its record again finds no room (the
 * failed record still counts until its report returns). The report
 * stashes it for the loop instead of polling from inside the callback, as
 * deep as the reports queued; once the broker is back every event has its
 * output. */
static void test_queue_full_in_reports(void **state) {
        struct fault_opts o = {0};
        o.partitions = 4;
        o.message_timeout_ms = "3000";
        o.queue_max = "200"; /* 16 batches of 128 wait for room */
        struct fault_env *e = two_brokers(state, &o);
        fault_run_start(e, 0, 150);
        fault_feed(e, 500, 100);
        double dl = now_s() + 60;
        while (!e->ended && now_s() < dl && !fault_all_committed(e))
                sleep_ms(100);
        assert_true(fault_all_committed(e));
        fault_broker_set(e, 2, 0);
        fault_feed(e, 3000, 100);
        sleep_ms(8000); /* two message timeouts */
        fault_broker_set(e, 2, 1);
        dl = now_s() + 90;
        while (!e->ended && now_s() < dl && !fault_all_committed(e))
                sleep_ms(200);
        e->stop = 1;
        fault_run_join(e);
        fprintf(stderr, "# %llu records produced again, %llu of them from "
                "the loop (the queue was full in the report)\n",
                (unsigned long long)e->st.retried,
                (unsigned long long)e->st.stashed);
        assert_true(e->st.retried > 0);
        assert_true(e->st.stashed > 0);
        struct fault_count c;
        fault_count_out(e, &c);
        fault_print_count("queue full in reports", e, &c);
        assert_int_equal(e->fed, 3500);
        assert_int_equal(c.missing, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_output_down, teardown),
                cmocka_unit_test_teardown(test_queue_full_in_reports,
                                          teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

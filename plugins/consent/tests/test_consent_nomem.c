/*
 * test_consent_nomem.c — running out of memory while decoding, or while
 * the consent ledger takes a record, is no fault of the record: a valid
 * event, or a consent record, must not go to the dead-letter topic for it
 * (it would leave the stream). The host gets -VEIL_ENOMEM and stops
 * without committing; what it read is read again.
 *
 * Memory runs out on request: realloc (side inputs decode into Avro-C
 * values through a scratch buffer) and posix_memalign (the batch arena's
 * chunks), for blocks over 1 MiB only, so that the host itself goes on
 * working; calloc for the ledger's slots; and realloc called from the
 * consent plugin itself, the TC decoder's buffers (plugins/consent/tcf.c).
 */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define T0 1700000000000LL
#define BIG (2u << 20)
#define LIMIT (1u << 20)

static int starve;     /* refuse blocks over LIMIT */
static int starve_tcf; /* refuse the consent plugin's reallocs */

/* Interposed for the codec's scratch buffer (core/codec.c), which
 * terminates strings for Avro-C. (Not Avro-C's own allocator: Avro-C
 * 1.11's avro_raw_string_set_length ignores a failed allocation and
 * copies anyway, so its running out of memory cannot be reported.) And
 * for the TC decoder's buffers, the only reallocs of veil_consent.so a
 * record or an event reaches: they grow once, at a stage's first
 * string, so a test starves a fresh stage. */
void *realloc(void *ptr, size_t size) {
        static void *(*real)(void *, size_t);
        if (!real)
                real = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
        if (starve && size > LIMIT)
                return NULL;
        Dl_info di;
        if (starve_tcf && dladdr(__builtin_return_address(0), &di) &&
            di.dli_fname && strstr(di.dli_fname, "veil_consent.so"))
                return NULL;
        return real(ptr, size);
}

/* Interposed for libveil's arena (core/arena.c). */
int posix_memalign(void **p, size_t align, size_t size) {
        static int (*real)(void **, size_t, size_t);
        if (!real)
                real = (int (*)(void **, size_t, size_t))dlsym(
                        RTLD_NEXT, "posix_memalign");
        if (starve && size > LIMIT)
                return ENOMEM;
        return real(p, align, size);
}

/* Interposed for the ledger's table (plugins/consent/ledger.c), which
 * callocs its slots, 32 bytes each, until it maps big tables. The first
 * calls may come from dlsym itself: they get a zeroed static block. */
static int starve_ledger; /* refuse calloc(n, 32) */
void *calloc(size_t n, size_t size) {
        static void *(*real)(size_t, size_t);
        static int resolving;
        static char early[4096];
        static size_t early_used;
        if (!real) {
                if (resolving) {
                        size_t want = (n * size + 15) & ~(size_t)15;
                        if (want > sizeof(early) - early_used)
                                return NULL;
                        early_used += want;
                        return early + early_used - want;
                }
                resolving = 1;
                real = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
                resolving = 0;
        }
        if (starve_ledger && size == 32)
                return NULL;
        return real(n, size);
}

static char *big_text(void) {
        char *s = malloc(BIG + 1);
        assert_non_null(s);
        memset(s, 'x', BIG);
        s[BIG] = '\0';
        return s;
}

/* A consent record for user (every purpose `allowed`), as the topic
 * holds it. */
static void consent_record(struct harness *h, const char *user, int allowed,
                           const char *tc, const char *source, int64_t ts,
                           struct veil_buf *buf) {
        veil_rec_t *r = veil_codec_rec_begin(h->consent);
        assert_non_null(r);
        assert_int_equal(veil_rec_set_str(r, "user_id", user), 0);
        assert_int_equal(veil_rec_set_str(r, "kind", "consent"), 0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.personalization",
                                           allowed),
                         0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.training", allowed),
                         0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.analytics", allowed),
                         0);
        if (tc)
                assert_int_equal(veil_rec_set_str(r, "tc_string", tc), 0);
        assert_int_equal(veil_rec_set_str(r, "source", source), 0);
        assert_int_equal(veil_rec_set_long(r, "ts", ts), 0);
        char err[512];
        assert_int_equal(veil_codec_rec_encode(h->consent, buf, err,
                                               sizeof(err)),
                         0);
}

/* A withdrawal (every purpose false) whose source is 2 MiB long. */
static void withdrawal(struct harness *h, const char *user,
                       struct veil_buf *buf) {
        char *src = big_text();
        consent_record(h, user, 0, NULL, src, T0 + 10, buf);
        free(src);
}

static void test_side_record_out_of_memory(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "una", 1, 1, 1, T0), 0);
        struct veil_buf buf = {0};
        withdrawal(&h, "una", &buf);

        struct veil_source src = {"una", 3, buf.data, buf.len, "consent",
                                  0, 7, T0 + 10};
        char err[1024] = "";
        starve = 1;
        int rc = veil_pipeline_side_record(h.p, 0, &src, err, sizeof(err));
        starve = 0;
        assert_int_equal(rc, -VEIL_ENOMEM);
        assert_non_null(strstr(err, "consent[0]@7"));
        assert_null(strstr(err, "una"));
        assert_int_equal(h_count(&h, "dlq"), 0);
        assert_int_equal(veil_pipeline_decode_errors(h.p), 0);

        /* Read again (the restart), it withdraws. */
        assert_int_equal(veil_pipeline_side_record(h.p, 0, &src, err,
                                                   sizeof(err)),
                         0);
        assert_int_equal(h_count(&h, "dlq"), 0);
        const struct veil_event *ev = h_event(&h, "una", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        assert_int_equal(ev->training, 0);
        veil_buf_free(&buf);
        h_close(&h);
}

/* The side record at offset 7 with memory for the ledger refused; it must
 * stop the host (-VEIL_ENOMEM, named), never be dead-lettered. */
static void starved_record(struct harness *h, const char *user,
                           const struct veil_buf *buf) {
        struct veil_source src = {user, strlen(user),
                                  buf ? buf->data : NULL,
                                  buf ? buf->len : 0, "consent", 0, 7, T0};
        char err[1024] = "";
        starve_ledger = 1;
        int rc = veil_pipeline_side_record(h->p, 0, &src, err, sizeof(err));
        starve_ledger = 0;
        assert_int_equal(rc, -VEIL_ENOMEM);
        if (!strstr(err, "stage 1 (consent), the record at consent[0]@7: "
                         "out of memory for the consent ledger (12 "
                         "entries)"))
                fail_msg("%s", err);
        assert_null(strstr(err, user));
        assert_int_equal(h_count(h, "dlq"), 0);
        /* Read again (the restart), it applies. */
        assert_int_equal(veil_pipeline_side_record(h->p, 0, &src, err,
                                                   sizeof(err)),
                         0);
        assert_int_equal(h_count(h, "dlq"), 0);
}

/* The ledger cannot grow: a first record of a person (a grant), or a
 * tombstone for someone without an entry kept as a refusal. 16 slots,
 * grown at the 13th person. */
static void test_ledger_out_of_memory(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{expected_users: 0}");
        char user[16];
        for (int i = 0; i < 12; i++) {
                snprintf(user, sizeof(user), "u%d", i);
                assert_int_equal(h_grant(&h, user, 1, 1, 1, T0), 0);
        }
        struct veil_buf buf = {0};
        consent_record(&h, "newcomer", 1, NULL, "app", T0, &buf);
        starved_record(&h, "newcomer", &buf);
        veil_buf_free(&buf);
        const struct veil_event *ev = h_event(&h, "newcomer", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        h_close(&h);

        /* Kept as a refusal, the tombstone stops the person's own TC
         * string from granting; lost, it would not. */
        h_open(&h, "{expected_users: 0, require_ledger: false}");
        for (int i = 0; i < 12; i++) {
                snprintf(user, sizeof(user), "u%d", i);
                assert_int_equal(h_grant(&h, user, 1, 1, 1, T0), 0);
        }
        char tc[256];
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 10, 11, 0),
                             .pub = 1};
        h_tc(&m, tc, sizeof(tc));
        ev = h_event(&h, "stranger", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        starved_record(&h, "other", NULL);
        ev = h_event(&h, "other", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_NONE);
        ev = h_event(&h, "stranger", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        h_close(&h);
}

static void test_event_out_of_memory(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        char e2[512];
        struct veil_codec *in = NULL;
        assert_int_equal(veil_codec_new_file(&in,
                                             VEIL_SRCDIR
                                             "/schemas/interaction.avsc",
                                             VEIL_FRAMING_RAW, -1, e2,
                                             sizeof(e2)),
                         0);
        char *ua = big_text();
        struct veil_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.event_id = "e1";
        ev.user_id = "vic";
        ev.ts_ms = T0;
        ev.type = "view";
        ev.item_id = "item-1";
        ev.gpc = -1;
        ev.ctx.user_agent = ua;
        struct veil_buf buf = {0};
        assert_int_equal(veil_codec_encode_event(in, &ev, &buf, e2,
                                                 sizeof(e2)),
                         0);
        free(ua);

        veil_pipeline_batch_begin(h.p);
        struct veil_source src = {"vic", 3, buf.data, buf.len, "in", 2, 41,
                                  T0};
        starve = 1;
        int rc = veil_pipeline_batch_add(h.p, &src);
        starve = 0;
        assert_int_equal(rc, -VEIL_ENOMEM);
        const char *why = veil_pipeline_add_error(h.p);
        assert_non_null(strstr(why, "in[2]@41"));
        assert_non_null(strstr(why, "out of memory"));
        assert_null(strstr(why, "vic"));
        assert_int_equal(h_count(&h, "dlq"), 0);
        assert_int_equal(veil_pipeline_decode_errors(h.p), 0);

        /* With memory, the same record is an event. */
        veil_pipeline_batch_begin(h.p);
        assert_int_equal(veil_pipeline_batch_add(h.p, &src), 1);
        assert_int_equal(h_count(&h, "dlq"), 0);
        veil_buf_free(&buf);
        veil_codec_destroy(in);
        h_close(&h);
}

/* A TC string that grants everything (the publisher segment repeats the
 * core's purposes, as vendor_id 0 reads them). */
static void granting_tc(char *tc, size_t size) {
        struct tc_model m = {.purposes = h_purposes(1, 5, 6, 8, 10, 11, 0),
                             .pub = 1};
        h_tc(&m, tc, size);
}

/* The TC decoder cannot grow its buffers while a record's string is
 * decoded: read as a string that allows nothing, a grant would be lost
 * (and narrow what is in force) and the record dead-lettered. */
static void test_record_tc_out_of_memory(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{}");
        assert_int_equal(h_grant(&h, "una", 1, 1, 1, T0), 0);
        size_t audits = h_count(&h, "audit");
        char tc[256];
        granting_tc(tc, sizeof(tc));
        struct veil_buf buf = {0};
        consent_record(&h, "una", 1, tc, "cmp", T0 + 10, &buf);
        struct veil_source src = {"una", 3, buf.data, buf.len, "consent",
                                  0, 7, T0 + 10};
        char err[1024] = "";
        starve_tcf = 1;
        int rc = veil_pipeline_side_record(h.p, 0, &src, err, sizeof(err));
        starve_tcf = 0;
        assert_int_equal(rc, -VEIL_ENOMEM);
        if (!strstr(err, "stage 1 (consent), the record at consent[0]@7: "
                         "tc_string: out of memory"))
                fail_msg("%s", err);
        assert_int_equal(h_count(&h, "dlq"), 0);
        /* The ledger is as it was: nothing audited, nothing erased. */
        assert_int_equal(h_count(&h, "audit"), audits);
        const struct veil_event *ev = h_event(&h, "una", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 1);

        /* Read again (the restart), it applies. */
        assert_int_equal(veil_pipeline_side_record(h.p, 0, &src, err,
                                                   sizeof(err)),
                         0);
        assert_int_equal(h_count(&h, "dlq"), 0);
        ev = h_event(&h, "una", NULL, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        assert_int_equal(ev->training, 1);
        veil_buf_free(&buf);
        h_close(&h);
}

/* Same for an event's own string: dropped as invalid, a valid event would
 * leave the stream. The batch fails instead, uncommitted. */
static void test_event_tc_out_of_memory(void **state) {
        (void)state;
        struct harness h;
        h_open(&h, "{require_ledger: false}");
        char tc[256];
        granting_tc(tc, sizeof(tc));
        struct veil_batch *b = veil_pipeline_batch_begin(h.p);
        struct veil_event in;
        memset(&in, 0, sizeof(in));
        in.event_id = "e1";
        in.user_id = "vic";
        in.ts_ms = T0;
        in.type = "view";
        in.item_id = "item-1";
        in.tc_string = tc;
        in.gpc = -1;
        assert_int_equal(veil_pipeline_batch_add_event(h.p, &in), 1);
        char err[1024] = "";
        starve_tcf = 1;
        int rc = veil_pipeline_batch_run(h.p, err, sizeof(err));
        starve_tcf = 0;
        assert_int_equal(rc, -VEIL_ENOMEM);
        if (!strstr(err, "stage 1 (consent) failed"))
                fail_msg("%s", err);
        assert_int_equal(b->events[0].status, VEIL_PASS);
        assert_int_equal(h_count(&h, "dlq"), 0);

        /* With memory, the same event is personalized. */
        const struct veil_event *ev = h_event(&h, "vic", tc, -1);
        assert_int_equal(ev->tier, VEIL_TIER_PERSONALIZED);
        h_close(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_side_record_out_of_memory),
                cmocka_unit_test(test_event_out_of_memory),
                cmocka_unit_test(test_ledger_out_of_memory),
                cmocka_unit_test(test_record_tc_out_of_memory),
                cmocka_unit_test(test_event_tc_out_of_memory),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_consent_nomem.c — running out of memory while decoding is no fault
 * of the record: a valid event, or a consent withdrawal, must not go to
 * the dead-letter topic for it (it would leave the stream). The host gets
 * -VEIL_ENOMEM and fails the batch, which is read again.
 *
 * Memory runs out on request: realloc (side inputs decode into Avro-C
 * values through a scratch buffer) and posix_memalign (the batch arena's
 * chunks), for blocks over 1 MiB only, so that the host itself goes on
 * working.
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

static int starve; /* refuse blocks over LIMIT */

/* Interposed for the codec's scratch buffer (core/codec.c), which
 * terminates strings for Avro-C. (Not Avro-C's own allocator: Avro-C
 * 1.11's avro_raw_string_set_length ignores a failed allocation and
 * copies anyway, so its running out of memory cannot be reported.) */
void *realloc(void *ptr, size_t size) {
        static void *(*real)(void *, size_t);
        if (!real)
                real = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
        if (starve && size > LIMIT)
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

static char *big_text(void) {
        char *s = malloc(BIG + 1);
        assert_non_null(s);
        memset(s, 'x', BIG);
        s[BIG] = '\0';
        return s;
}

/* A withdrawal (every purpose false) whose source is 2 MiB long. */
static void withdrawal(struct harness *h, const char *user,
                       struct veil_buf *buf) {
        char *src = big_text();
        veil_rec_t *r = veil_codec_rec_begin(h->consent);
        assert_non_null(r);
        assert_int_equal(veil_rec_set_str(r, "user_id", user), 0);
        assert_int_equal(veil_rec_set_str(r, "kind", "consent"), 0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.personalization", 0),
                         0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.training", 0), 0);
        assert_int_equal(veil_rec_set_bool(r, "purposes.analytics", 0), 0);
        assert_int_equal(veil_rec_set_str(r, "source", src), 0);
        assert_int_equal(veil_rec_set_long(r, "ts", T0 + 10), 0);
        char err[512];
        assert_int_equal(veil_codec_rec_encode(h->consent, buf, err,
                                               sizeof(err)),
                         0);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_side_record_out_of_memory),
                cmocka_unit_test(test_event_out_of_memory),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

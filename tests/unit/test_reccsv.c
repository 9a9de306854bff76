/*
 * test_reccsv.c — records from CSV (core/reccsv.c): comments only before
 * the header (after it a line starting with '#' is a row: a withdrawal
 * for user "#u2" must not vanish), and out of memory reported, with the
 * file and line, never crashing. Memory runs out on request: strdup and
 * malloc are interposed (libveil's calls come here).
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "reccsv.h"

#define SCHEMA(n) VEIL_SRCDIR "/schemas/" n

static int starve_strdup, starve_malloc;

char *strdup(const char *s) {
        if (starve_strdup && !--starve_strdup)
                return NULL;
        size_t n = strlen(s) + 1;
        char *d = malloc(n);
        if (d)
                memcpy(d, s, n);
        return d;
}

/* dlsym may allocate while the real malloc is looked up: from here. */
static _Alignas(16) char early[4096];
static size_t early_used;

void *malloc(size_t n) {
        static void *(*real)(size_t);
        static int looking;
        if (!real) {
                if (looking) {
                        n = (n + 15) & ~(size_t)15;
                        if (early_used + n > sizeof(early))
                                return NULL;
                        early_used += n;
                        return early + early_used - n;
                }
                looking = 1;
                real = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
                looking = 0;
        }
        if (starve_malloc)
                return NULL;
        return real(n);
}

static char *write_csv(const char *text) {
        static char path[64];
        snprintf(path, sizeof(path), "/tmp/veil-reccsv-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        size_t n = strlen(text);
        assert_true(write(fd, text, n) == (ssize_t)n);
        close(fd);
        return path;
}

static struct veil_codec *codec_or_die(const char *path) {
        struct veil_codec *c = NULL;
        char err[512];
        if (veil_codec_new_file(&c, path, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err)))
                fail_msg("%s", err);
        return c;
}

static void test_hash_row_after_header(void **state) {
        (void)state;
        char *path = write_csv(
                "# a comment before the header\n"
                "\n"
                "user_id,kind,purposes.personalization,purposes.training,"
                "purposes.analytics,source,ts\n"
                "u1,consent,true,true,true,app,1\n"
                "#u2,consent,false,false,false,app,2\n"
                "\n"
                "  # spaced,consent,false,false,false,app,3\n");
        struct veil_codec *c = codec_or_die(SCHEMA("consent.avsc"));
        struct veil_reccsv *csv = NULL;
        char err[512] = "";
        if (veil_reccsv_open(&csv, path, err, sizeof(err)))
                fail_msg("%s", err);
        struct veil_reccsv_row row;
        static const char *const keys[] = {"u1", "#u2", "  # spaced"};
        for (int i = 0; i < 3; i++) {
                int rc = veil_reccsv_next(csv, c, &row, err, sizeof(err));
                if (rc != 1)
                        fail_msg("row %d: %d %s", i, rc, err);
                assert_string_equal(row.key, keys[i]);
                const veil_rec_t *r = NULL;
                assert_int_equal(veil_codec_decode_rec(c, row.value,
                                                       row.value_len, &r, err,
                                                       sizeof(err)),
                                 0);
                int training = -1;
                assert_int_equal(veil_rec_get_bool(r, "purposes.training",
                                                   &training),
                                 0);
                assert_int_equal(training, i == 0);
        }
        assert_int_equal(veil_reccsv_next(csv, c, &row, err, sizeof(err)), 0);
        veil_reccsv_close(csv);
        veil_codec_destroy(c);
        unlink(path);
}

/* A byte-order mark (Excel's "CSV UTF-8") before the first line, here a
 * comment, then before the header itself. */
static void test_byte_order_mark(void **state) {
        (void)state;
        static const char *const texts[] = {
                "\xEF\xBB\xBF# exported\nuser_id,source,kind,ts\nu1,app,"
                "consent,1\n",
                "\xEF\xBB\xBFuser_id,source,kind,ts\nu1,app,consent,1\n",
        };
        struct veil_codec *c = codec_or_die(SCHEMA("consent.avsc"));
        for (size_t t = 0; t < sizeof(texts) / sizeof(*texts); t++) {
                char *path = write_csv(texts[t]);
                struct veil_reccsv *csv = NULL;
                char err[512] = "";
                if (veil_reccsv_open(&csv, path, err, sizeof(err)))
                        fail_msg("text %zu: %s", t, err);
                struct veil_reccsv_row row;
                if (veil_reccsv_next(csv, c, &row, err, sizeof(err)) != 1)
                        fail_msg("text %zu: %s", t, err);
                assert_string_equal(row.key, "u1");
                veil_reccsv_close(csv);
                unlink(path);
        }
        veil_codec_destroy(c);
}

static void test_out_of_memory(void **state) {
        (void)state;
        char path[64];
        snprintf(path, sizeof(path), "%s",
                 write_csv("user_id,source,kind,ts\n"
                           "u1,app,consent,1\n"));
        struct veil_reccsv *csv = NULL;
        char err[512];
        /* The path, then each column name. */
        for (int k = 1; k <= 6; k++) {
                err[0] = '\0';
                starve_strdup = k;
                int rc = veil_reccsv_open(&csv, path, err, sizeof(err));
                starve_strdup = 0;
                if (k == 6) {
                        assert_int_equal(rc, 0);
                        break;
                }
                assert_int_equal(rc, -VEIL_ENOMEM);
                assert_non_null(strstr(err, "out of memory"));
        }
        /* The record: a flat schema's first one takes a malloc'd chunk. */
        const char *flat = write_csv(
                "{\"type\": \"record\", \"name\": \"F\", \"fields\": ["
                "{\"name\": \"user_id\", \"type\": \"string\"},"
                "{\"name\": \"source\", \"type\": \"string\"},"
                "{\"name\": \"kind\", \"type\": \"string\"},"
                "{\"name\": \"ts\", \"type\": \"long\"}]}");
        char schema[64];
        snprintf(schema, sizeof(schema), "%s", flat);
        struct veil_codec *c = codec_or_die(schema);
        struct veil_reccsv_row row;
        err[0] = '\0';
        starve_malloc = 1;
        int rc = veil_reccsv_next(csv, c, &row, err, sizeof(err));
        starve_malloc = 0;
        assert_int_equal(rc, -VEIL_ENOMEM);
        assert_non_null(strstr(err, ":2: out of memory"));
        veil_reccsv_close(csv);
        veil_codec_destroy(c);
        unlink(schema);
        unlink(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hash_row_after_header),
                cmocka_unit_test(test_byte_order_mark),
                cmocka_unit_test(test_out_of_memory),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_reccsv.c — records from CSV (core/reccsv.c): comments only before
 * the header (after it a line starting with '#' is a row: a withdrawal
 * for user "#u2" must not vanish).
 */
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hash_row_after_header),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The CSV event reader: the online-retail columns as they are, gzip input,
 * RFC 4180 quoting, and errors that name file:line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "csv.h"

static char *write_tmp(const char *text, int gz) {
        static char path[64];
        snprintf(path, sizeof(path), "/tmp/veil-csv-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        if (gz) {
                gzFile f = gzopen(path, "wb");
                gzputs(f, text);
                gzclose(f);
        } else {
                FILE *f = fopen(path, "w");
                fputs(text, f);
                fclose(f);
        }
        return path;
}

static void test_retail(void **state) {
        (void)state;
        for (int gz = 0; gz < 2; gz++) {
                char *p = write_tmp("ts,user_id,item,qty,invoice,country\n"
                                    "1291191960,17850,85123A,6,536365,"
                                    "United Kingdom\n"
                                    "1291191961,13047,22622,2.5,536367,\n",
                                    gz);
                struct veil_csv *c;
                char err[256];
                assert_int_equal(veil_csv_open(&c, p, err, sizeof(err)), 0);
                struct veil_event ev;
                assert_int_equal(veil_csv_next(c, &ev, err, sizeof(err)), 1);
                assert_string_equal(ev.user_id, "17850");
                assert_string_equal(ev.item_id, "85123A");
                assert_int_equal(ev.ts_ms, 1291191960000LL);
                assert_true(ev.value == 6.0);
                assert_string_equal(ev.ctx.session_id, "536365");
                assert_string_equal(ev.ctx.country, "United Kingdom");
                assert_string_equal(ev.event_id, "e1");
                assert_string_equal(ev.type, "purchase");
                assert_int_equal(ev.gpc, -1);
                assert_int_equal(veil_csv_next(c, &ev, err, sizeof(err)), 1);
                assert_true(ev.value == 2.5);
                assert_null(ev.ctx.country);
                assert_string_equal(ev.event_id, "e2");
                /* Handed back (a batch cut by time), the same event
                 * comes again, once, its strings intact. */
                veil_csv_unread(c, &ev);
                memset(&ev, 0, sizeof(ev));
                assert_int_equal(veil_csv_next(c, &ev, err, sizeof(err)), 1);
                assert_string_equal(ev.event_id, "e2");
                assert_string_equal(ev.user_id, "13047");
                assert_string_equal(ev.item_id, "22622");
                assert_int_equal(ev.ts_ms, 1291191961000LL);
                assert_int_equal(veil_csv_next(c, &ev, err, sizeof(err)), 0);
                veil_csv_close(c);
                unlink(p);
        }
}

static void test_quoting_and_columns(void **state) {
        (void)state;
        char *p = write_tmp("event_id,user_id,item_id,type,ip,user_agent,lat,"
                            "lon,gpc,ts_ms\n"
                            "x1,u1,i1,view,203.0.113.9,\"Mozilla/5.0 (X11, "
                            "\"\"Linux\"\")\",51.5,-0.12,1,1700000000123\n",
                            0);
        struct veil_csv *c;
        char err[256];
        assert_int_equal(veil_csv_open(&c, p, err, sizeof(err)), 0);
        struct veil_event ev;
        assert_int_equal(veil_csv_next(c, &ev, err, sizeof(err)), 1);
        assert_string_equal(ev.event_id, "x1");
        assert_string_equal(ev.type, "view");
        assert_string_equal(ev.ctx.user_agent,
                            "Mozilla/5.0 (X11, \"Linux\")");
        assert_int_equal(ev.ctx.has_geo, 1);
        assert_true(ev.ctx.lat == 51.5 && ev.ctx.lon == -0.12);
        assert_int_equal(ev.gpc, 1);
        assert_int_equal(ev.ts_ms, 1700000000123LL);
        veil_csv_close(c);
        unlink(p);
}

static void expect_error(const char *text, const char *want) {
        char *p = write_tmp(text, 0);
        struct veil_csv *c;
        char err[256] = "";
        int rc = veil_csv_open(&c, p, err, sizeof(err));
        if (rc == 0) {
                struct veil_event ev;
                while ((rc = veil_csv_next(c, &ev, err, sizeof(err))) == 1)
                        ;
                veil_csv_close(c);
        }
        assert_true(rc < 0);
        char full[512];
        snprintf(full, sizeof(full), "%s:%s", p, want);
        if (!strstr(err, full))
                fail_msg("error '%s' lacks '%s'", err, full);
        unlink(p);
}

/* A byte-order mark (Excel's "CSV UTF-8" export) before the header. */
static void test_byte_order_mark(void **state) {
        (void)state;
        char *p = write_tmp("\xEF\xBB\xBFts,user_id,item\n5,u,i\n", 0);
        struct veil_csv *c;
        char err[256];
        assert_int_equal(veil_csv_open(&c, p, err, sizeof(err)), 0);
        struct veil_event ev;
        assert_int_equal(veil_csv_next(c, &ev, err, sizeof(err)), 1);
        assert_int_equal(ev.ts_ms, 5000);
        assert_string_equal(ev.user_id, "u");
        veil_csv_close(c);
        unlink(p);
}

static void test_errors(void **state) {
        (void)state;
        expect_error("", "1: no header line");
        expect_error("ts,user,thing\n1,2,3\n", "1: the header needs");
        expect_error("ts,user_id,item\n1,u,i\n1,u,i,extra\n", "3: 4 fields, the header has 3");
        expect_error("ts,user_id,item,qty\n1,u,i,lots\n", "2: field 4 must be a number");
        expect_error("ts,user_id,item\n1,\"u,i\n", "2: unterminated quote");
        /* read a line at a time: the field's line break ends its line */
        expect_error("ts,user_id,item\n1,u,\"85\n123A\"\n",
                     "2: unterminated quote (a quoted field cannot hold a "
                     "line break)");
        expect_error("ts,\"user\nid\",item\n",
                     "1: unterminated quote (a quoted field cannot hold a "
                     "line break)");
        expect_error("ts,user_id,item\n1,,i\n", "2: user_id and item must not be empty");
        /* every event would be at 1970-01-01 00:00 */
        expect_error("user_id,item\nu,i\n", "1: the header needs a time column, ts (seconds) or ts_ms");
        /* strtod reads these; no field holds them */
        expect_error("ts,user_id,item,qty\n1,u,i,nan\n", "2: field 4 must be a number");
        expect_error("ts,user_id,item,qty\n1,u,i,-inf\n", "2: field 4 must be a number");
        expect_error("ts,user_id,item,lat,lon\n1,u,i,inf,1\n", "2: field 4 must be a number");
        expect_error("ts_ms,user_id,item\nnan,u,i\n", "2: field 1 must be a number");
        /* CR line endings: one long line that would pass as a header */
        expect_error("ts,user_id,item\r1,u,i\r2,u,j\r", "1: a carriage return inside the line");
        expect_error("ts,user_id,item\r\n1,u\r,i\r\n", "2: a carriage return inside the line");
}

/* Two columns read as one field: each set it in turn and the last won
 * without a word. Refused, naming both; --column NAME=- leaves one out. */
static void test_two_columns_one_field(void **state) {
        (void)state;
        expect_error("ts,user_id,item,item_id\n1,u,i,j\n",
                     "1: columns 3 'item' and 4 'item_id' are both read as "
                     "one field (item, item_id): read one as another field "
                     "with --column NAME=FIELD, or not at all with --column "
                     "NAME=- (e.g. --column item_id=-)");
        expect_error("ts,ts_ms,user_id,item\n1,1000,u,i\n",
                     "1: columns 1 'ts' and 2 'ts_ms' are both read as one "
                     "field (ts, ts_ms)");
        expect_error("qty,ts,user_id,item,value\n1,1,u,i,2\n",
                     "1: columns 1 'qty' and 5 'value' are both read as one "
                     "field (qty, value)");
        expect_error("ts,user_id,item,user_id\n1,u,i,v\n",
                     "1: columns 2 and 4 are both named 'user_id': rename "
                     "one in the header");
        char *p = write_tmp("customer,ts,user_id,item\nc,1,u,i\n", 0);
        struct veil_csv *c;
        char err[512] = "";
        const char *onto[] = {"customer=user_id"};
        assert_int_equal(veil_csv_open_mapped(&c, p, onto, 1, err,
                                              sizeof(err)),
                         -VEIL_EINVAL);
        if (!strstr(err, ":1: columns 1 'customer' and 3 'user_id' are both "
                         "read as one field (user_id): read one as another "
                         "field with --column NAME=FIELD, or not at all with "
                         "--column NAME=- (e.g. --column user_id=-)"))
                fail_msg("error '%s'", err);
        const char *left_out[] = {"customer=user_id", "user_id=-"};
        assert_int_equal(veil_csv_open_mapped(&c, p, left_out, 2, err,
                                              sizeof(err)),
                         0);
        struct veil_event ev;
        assert_int_equal(veil_csv_next(c, &ev, err, sizeof(err)), 1);
        assert_string_equal(ev.user_id, "c");
        veil_csv_close(c);
        unlink(p);
}

static void test_missing_file(void **state) {
        (void)state;
        struct veil_csv *c;
        char err[256];
        assert_int_equal(veil_csv_open(&c, "/nonexistent/x.csv", err,
                                       sizeof(err)),
                         -VEIL_ENOENT);
        assert_non_null(strstr(err, "/nonexistent/x.csv"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_retail),
                cmocka_unit_test(test_quoting_and_columns),
                cmocka_unit_test(test_byte_order_mark),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_two_columns_one_field),
                cmocka_unit_test(test_missing_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

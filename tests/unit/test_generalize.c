/*
 * test_generalize.c — IP prefixes, geohash, durations and time buckets,
 * user-agent reduction (table in tests/unit/data/useragents.tsv).
 *
 * Usage: test_generalize [path/to/useragents.tsv]
 * (default: data/useragents.tsv, else tests/unit/data/useragents.tsv, so it
 * runs from tests/unit — where ctest runs it — or from the repository).
 */
#include <arpa/inet.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "generalize.h"

/* Deterministic generator for property tests (xorshift64*). */
static uint64_t next(uint64_t *s) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 0x2545F4914F6CDD1DULL;
}

/* ---- IP ---- */

static void ip_ok(const char *in, int p4, int p6, const char *want) {
        char out[VEIL_IP_OUT_MAX];
        int n = veil_ip_truncate(in, p4, p6, out, sizeof(out));
        if (n < 0)
                fail_msg("%s /%d /%d: error %d, want %s", in, p4, p6, n, want);
        assert_string_equal(out, want);
        assert_int_equal(n, (int)strlen(want));
}

static void test_ip_v4(void **state) {
        (void)state;
        ip_ok("192.168.1.77", VEIL_IP_V4_PREFIX, VEIL_IP_V6_PREFIX,
              "192.168.1.0");
        ip_ok("10.20.30.40", 0, 48, "0.0.0.0");
        ip_ok("10.20.30.40", 8, 48, "10.0.0.0");
        ip_ok("10.20.30.40", 16, 48, "10.20.0.0");
        ip_ok("10.20.31.40", 23, 48, "10.20.30.0");
        ip_ok("200.1.1.1", 1, 48, "128.0.0.0");
        ip_ok("10.20.30.40", 32, 48, "10.20.30.40");
        ip_ok("255.255.255.255", 24, 48, "255.255.255.0");
}

static void test_ip_v4_property(void **state) {
        (void)state;
        uint64_t s = 0x9e3779b97f4a7c15ULL;
        char in[16], want[16], out[VEIL_IP_OUT_MAX];
        for (int i = 0; i < 2000; i++) {
                uint32_t a = (uint32_t)next(&s);
                int p = (int)(next(&s) % 33);
                uint32_t m = p ? ~(uint32_t)0 << (32 - p) : 0;
                uint32_t n = a & m;
                snprintf(in, sizeof(in), "%u.%u.%u.%u", a >> 24,
                         (a >> 16) & 255, (a >> 8) & 255, a & 255);
                snprintf(want, sizeof(want), "%u.%u.%u.%u", n >> 24,
                         (n >> 16) & 255, (n >> 8) & 255, n & 255);
                assert_true(veil_ip_truncate(in, p, 48, out, sizeof(out)) > 0);
                assert_string_equal(out, want);
        }
}

static void test_ip_v6(void **state) {
        (void)state;
        ip_ok("2001:db8:1:2:3:4:5:6", 24, VEIL_IP_V6_PREFIX, "2001:db8::");
        ip_ok("2001:db8:1234:2:3:4:5:6", 24, VEIL_IP_V6_PREFIX,
              "2001:db8:1200::");
        ip_ok("2001:0DB8:0001:0002:0000:0000:0000:0001", 24, 48,
              "2001:db8:1::");
        ip_ok("2001:db8:1:2:3:4:5:6", 24, 0, "::");
        ip_ok("2001:db8:1:2:3:4:5:6", 24, 128, "2001:db8:1:2:3:4:5:6");
        ip_ok("2001:db8:1:2fff::1", 24, 52, "2001:db8:1:2000::");
        ip_ok("2001:db8:0:1:2:3:4:5", 24, 64, "2001:db8:0:1::");
        ip_ok("::1", 24, 48, "::");
        ip_ok("fe80::1%eth0", 24, 48, "fe80::");
        /* IPv4-mapped: the IPv4 rule, IPv4 text. */
        ip_ok("::ffff:192.168.1.77", 24, 48, "192.168.1.0");
        ip_ok("::ffff:c0a8:14d", 24, 48, "192.168.1.0");
        ip_ok("::ffff:192.168.1.77", 16, 48, "192.168.0.0");
        /* 6to4: the embedded IPv4 is cut like a plain one. */
        ip_ok("2002:c0a8:0101::1", 24, 48, "2002:c0a8:100::");
        ip_ok("2002:c0a8:0101::1", 16, 48, "2002:c0a8::");
        ip_ok("2002:c0a8:0101::1", 24, 16, "2002::");
}

static void test_ip_v6_property(void **state) {
        (void)state;
        uint64_t s = 42;
        unsigned char a[16], b[16];
        char in[VEIL_IP_OUT_MAX], out[VEIL_IP_OUT_MAX];
        for (int i = 0; i < 2000; i++) {
                for (int j = 0; j < 16; j++)
                        a[j] = (unsigned char)next(&s);
                a[0] = 0x20; /* global unicast, not 2002:: or ::ffff: */
                a[1] = 0x01;
                int p = (int)(next(&s) % 129);
                assert_non_null(inet_ntop(AF_INET6, a, in, sizeof(in)));
                assert_true(veil_ip_truncate(in, 24, p, out, sizeof(out)) > 0);
                assert_int_equal(inet_pton(AF_INET6, out, b), 1);
                for (int bit = 0; bit < 128; bit++) {
                        int x = (a[bit / 8] >> (7 - bit % 8)) & 1;
                        int y = (b[bit / 8] >> (7 - bit % 8)) & 1;
                        assert_int_equal(y, bit < p ? x : 0);
                }
        }
}

static void test_ip_invalid(void **state) {
        (void)state;
        const char *bad[] = {"",           "1.2.3",      "256.1.1.1",
                             "01.2.3.4",   "1.2.3.4 ",   " 1.2.3.4",
                             "1.2.3.4/24", "hello",      "::g",
                             "1::2::3",    "%eth0",      "fe80::1%",
                             "1.2.3.4%x",  "2001:db8:1:2:3:4:5:6:7",
                             "0x7f.0.0.1"};
        char out[VEIL_IP_OUT_MAX];
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                strcpy(out, "junk");
                if (veil_ip_truncate(bad[i], 24, 48, out, sizeof(out)) !=
                    -VEIL_EINVAL)
                        fail_msg("accepted '%s'", bad[i]);
                assert_string_equal(out, "");
        }
        assert_int_equal(veil_ip_truncate(NULL, 24, 48, out, sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_ip_truncate("1.2.3.4", -1, 48, out, sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_ip_truncate("1.2.3.4", 33, 48, out, sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_ip_truncate("::1", 24, 129, out, sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_ip_truncate("::1", 24, -1, out, sizeof(out)),
                         -VEIL_EINVAL);
        /* "192.168.1.0" needs 12 bytes with the terminator. */
        assert_int_equal(veil_ip_truncate("192.168.1.7", 24, 48, out, 11),
                         -VEIL_EINVAL);
        assert_string_equal(out, "");
        assert_int_equal(veil_ip_truncate("192.168.1.7", 24, 48, out, 12), 11);
        assert_int_equal(veil_ip_truncate("1.2.3.4", 24, 48, NULL, 12),
                         -VEIL_EINVAL);
}

/* ---- geohash ---- */

/* An independent decoder: the cell a hash names. */
static void gh_cell(const char *h, double *lat_lo, double *lat_hi,
                    double *lon_lo, double *lon_hi) {
        static const char b32[] = "0123456789bcdefghjkmnpqrstuvwxyz";
        int even = 1;
        *lat_lo = -90, *lat_hi = 90, *lon_lo = -180, *lon_hi = 180;
        for (; *h; h++) {
                const char *p = strchr(b32, *h);
                assert_non_null(p);
                int v = (int)(p - b32);
                for (int b = 4; b >= 0; b--) {
                        double *lo = even ? lon_lo : lat_lo;
                        double *hi = even ? lon_hi : lat_hi;
                        double mid = (*lo + *hi) / 2;
                        if ((v >> b) & 1)
                                *lo = mid;
                        else
                                *hi = mid;
                        even = !even;
                }
        }
}

static void gh_ok(double lat, double lon, const char *want) {
        char out[VEIL_GEOHASH_MAX + 1];
        int p = (int)strlen(want);
        assert_int_equal(veil_geohash_encode(lat, lon, p, out, sizeof(out)),
                         p);
        assert_string_equal(out, want);
}

static void test_geohash_known(void **state) {
        (void)state;
        /* Wikipedia's examples. */
        gh_ok(57.64911, 10.40744, "u4pruydqqvj");
        gh_ok(42.6, -5.6, "ezs42");
        /* ngeohash's README (node-geohash). */
        gh_ok(37.8324, 112.5584, "ww8p1r4t8");
        /* Redis's GEOHASH docs: Palermo "sqc8b49rny0", Catania
         * "sqdtr74hyu0". Redis derives the 11th char from its 52-bit
         * internal value, so only the first 10 are standard. */
        gh_ok(38.115556, 13.361389, "sqc8b49rny");
        gh_ok(37.502669, 15.087269, "sqdtr74hyu");
        /* Corners and the origin follow from the bisection rule. */
        gh_ok(90, 180, "zzzzzzzzzzzz");
        gh_ok(-90, -180, "000000000000");
        gh_ok(0, 0, "s0000");
        gh_ok(-0.000001, -0.000001, "7zzzz");
}

static void test_geohash_property(void **state) {
        (void)state;
        uint64_t s = 7;
        char out[VEIL_GEOHASH_MAX + 1], full[VEIL_GEOHASH_MAX + 1];
        double a, b, c, d;
        for (int i = 0; i < 3000; i++) {
                double lat = (double)(next(&s) % 1800001) / 10000.0 - 90.0;
                double lon = (double)(next(&s) % 3600001) / 10000.0 - 180.0;
                assert_int_equal(veil_geohash_encode(lat, lon, 12, full,
                                                     sizeof(full)),
                                 12);
                for (int p = 1; p <= 12; p++) {
                        assert_int_equal(veil_geohash_encode(lat, lon, p, out,
                                                             sizeof(out)),
                                         p);
                        /* Shorter is a prefix, and the cell holds the
                         * point. */
                        assert_memory_equal(out, full, (size_t)p);
                        gh_cell(out, &a, &b, &c, &d);
                        assert_true(lat >= a && lat <= b);
                        assert_true(lon >= c && lon <= d);
                }
        }
}

static void test_geohash_invalid(void **state) {
        (void)state;
        char out[VEIL_GEOHASH_MAX + 1];
        struct {
                double lat, lon;
                int p;
        } bad[] = {{90.0001, 0, 5},  {-90.0001, 0, 5}, {0, 180.0001, 5},
                   {0, -180.1, 5},   {NAN, 0, 5},      {0, NAN, 5},
                   {INFINITY, 0, 5}, {0, -INFINITY, 5}, {0, 0, 0},
                   {0, 0, 13},       {0, 0, -1}};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                strcpy(out, "junk");
                assert_int_equal(veil_geohash_encode(bad[i].lat, bad[i].lon,
                                                     bad[i].p, out,
                                                     sizeof(out)),
                                 -VEIL_EINVAL);
                assert_string_equal(out, "");
        }
        assert_int_equal(veil_geohash_encode(1, 1, 5, out, 5), -VEIL_EINVAL);
        assert_int_equal(veil_geohash_encode(1, 1, 5, out, 6), 5);
        assert_int_equal(veil_geohash_encode(1, 1, 5, NULL, 6), -VEIL_EINVAL);
}

/* ---- durations and buckets ---- */

static void test_duration_parse(void **state) {
        (void)state;
        struct {
                const char *s;
                int64_t ms;
        } ok[] = {{"30s", 30000},
                  {"15m", 900000},
                  {"1h", 3600000},
                  {"1d", 86400000},
                  {"7d", 604800000},
                  {"2w", 1209600000},
                  {"250ms", 250},
                  {"010s", 10000},
                  {"9223372036854775807ms", INT64_MAX},
                  {"106751991167d", INT64_C(106751991167) * 86400000}};
        int64_t v;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                v = -1;
                assert_int_equal(veil_duration_parse(ok[i].s, &v), 0);
                assert_true(v == ok[i].ms);
        }
        const char *bad[] = {"",      "s",     "10",    "-5m",   "+5m",
                             "0s",    "0ms",   "1.5h",  "10x",   "1 h",
                             " 1h",   "1h ",   "1h30m", "1H",    "1y",
                             "1msx",  "m1",
                             "9223372036854775808ms",
                             "106751991168d",
                             "99999999999999999999999999s"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                v = 12345;
                if (veil_duration_parse(bad[i], &v) != -VEIL_EINVAL)
                        fail_msg("accepted '%s'", bad[i]);
                assert_true(v == 12345);
        }
        assert_int_equal(veil_duration_parse(NULL, &v), -VEIL_EINVAL);
        assert_int_equal(veil_duration_parse("1s", NULL), -VEIL_EINVAL);
}

static void test_time_bucket(void **state) {
        (void)state;
        assert_true(veil_time_bucket(INT64_C(1700000123456), 3600000) ==
                    INT64_C(1699999200000));
        assert_true(veil_time_bucket(0, 1000) == 0);
        assert_true(veil_time_bucket(999, 1000) == 0);
        assert_true(veil_time_bucket(1000, 1000) == 1000);
        /* Before the epoch: floor, not truncation toward zero. */
        assert_true(veil_time_bucket(-1, 1000) == -1000);
        assert_true(veil_time_bucket(-1000, 1000) == -1000);
        assert_true(veil_time_bucket(-1001, 1000) == -2000);
        assert_true(veil_time_bucket(-86400001, 86400000) == -172800000);
        /* No bucketing. */
        assert_true(veil_time_bucket(12345, 0) == 12345);
        assert_true(veil_time_bucket(12345, -60000) == 12345);
        /* Ends of the range. */
        assert_true(veil_time_bucket(INT64_MAX, 1000) == INT64_MAX - 807);
        assert_true(veil_time_bucket(INT64_MIN, 1000) == INT64_MIN);
        assert_true(veil_time_bucket(INT64_MIN + 1000, 1) == INT64_MIN + 1000);
        assert_true(veil_time_bucket(INT64_MIN, INT64_MAX) == INT64_MIN);

        uint64_t s = 99;
        for (int i = 0; i < 10000; i++) {
                int64_t ts = (int64_t)(next(&s) % 8000000000000ULL) -
                             4000000000000LL;
                int64_t b = (int64_t)(next(&s) % 604800000) + 1;
                int64_t r = veil_time_bucket(ts, b);
                assert_true(r <= ts);
                assert_true(ts - r < b);
                assert_true(r % b == 0);
        }
}

/* ---- user agents ---- */

static void test_ua_table(void **state) {
        const char *path = *state;
        FILE *f = fopen(path, "r");
        char line[2048], out[VEIL_UA_OUT_MAX], want[VEIL_UA_OUT_MAX];
        int lineno = 0, rows = 0, kinds[5] = {0};
        if (!f)
                fail_msg("cannot open %s (pass its path as argv[1])", path);
        while (fgets(line, sizeof(line), f)) {
                char *fld[5], *save = NULL, *p = line;
                struct veil_ua ua;
                lineno++;
                line[strcspn(line, "\r\n")] = '\0';
                if (!line[0] || line[0] == '#')
                        continue;
                for (int i = 0; i < 5; i++, p = NULL) {
                        fld[i] = strtok_r(p, i < 4 ? "\t" : "", &save);
                        if (!fld[i])
                                fail_msg("%s:%d: needs 5 tab-separated "
                                         "columns",
                                         path, lineno);
                }
                assert_int_equal(veil_ua_reduce(fld[4], &ua), 0);
                int n = veil_ua_format(&ua, out, sizeof(out));
                assert_int_equal(n, (int)strlen(out));
                if (atoi(fld[1]) > 0)
                        snprintf(want, sizeof(want), "%s %s / %s / %s",
                                 fld[0], fld[1], fld[2], fld[3]);
                else
                        snprintf(want, sizeof(want), "%s / %s / %s", fld[0],
                                 fld[2], fld[3]);
                if (strcmp(out, want) != 0)
                        fail_msg("%s:%d: got \"%s\", want \"%s\" for %s",
                                 path, lineno, out, want, fld[4]);
                assert_string_equal(veil_ua_browser_name(ua.browser), fld[0]);
                assert_int_equal(ua.major, atoi(fld[1]));
                assert_string_equal(veil_ua_os_name(ua.os), fld[2]);
                assert_string_equal(veil_ua_device_name(ua.device), fld[3]);
                kinds[ua.device]++;
                rows++;
        }
        fclose(f);
        assert_true(rows >= 25);
        /* The table covers every device class. */
        for (int i = 0; i < 5; i++)
                assert_true(kinds[i] > 0);
}

static void test_ua_edges(void **state) {
        (void)state;
        struct veil_ua ua;
        char out[VEIL_UA_OUT_MAX], big[3000];

        assert_int_equal(veil_ua_reduce(NULL, &ua), -VEIL_EINVAL);
        assert_int_equal(veil_ua_reduce("x", NULL), -VEIL_EINVAL);
        assert_int_equal(veil_ua_reduce("", &ua), 0);
        assert_int_equal(veil_ua_format(&ua, out, sizeof(out)), 21);
        assert_string_equal(out, "Other / Other / other");

        /* "bot" inside a word is not a bot. */
        assert_int_equal(veil_ua_reduce("Mozilla/5.0 (Windows NT 10.0) "
                                        "Bottlerocket/1.0",
                                        &ua),
                         0);
        assert_int_equal(ua.device, VEIL_UA_DEVICE_DESKTOP);
        assert_int_equal(ua.os, VEIL_UA_OS_WINDOWS);

        /* Absurd versions are dropped, not wrapped. */
        assert_int_equal(veil_ua_reduce("Mozilla/5.0 (X11; Linux x86_64) "
                                        "Firefox/99999999999999",
                                        &ua),
                         0);
        assert_int_equal(ua.browser, VEIL_UA_BROWSER_FIREFOX);
        assert_int_equal(ua.major, 0);
        /* ...and so is anything over 3 digits: no browser has one, and 5
         * digits after a user id carried 17 bits the producer chose. */
        static const char *const over[] = {
                "MyApp uid 4242 Chrome/99999", "MyApp Chrome/1000.0.1",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/0120.0"};
        for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
                assert_int_equal(veil_ua_reduce(over[i], &ua), 0);
                assert_int_not_equal(ua.browser, VEIL_UA_BROWSER_OTHER);
                assert_int_equal(ua.major, 0);
        }
        assert_int_equal(veil_ua_reduce("MyApp Chrome/999.1", &ua), 0);
        assert_int_equal(ua.major, 999);

        /* Only the first VEIL_UA_SCAN_MAX bytes are read. */
        memset(big, 'a', sizeof(big));
        memcpy(big, "Mozilla/5.0 (X11; Linux x86_64) ", 32);
        memcpy(big + VEIL_UA_SCAN_MAX - 12, "Firefox/120", 11);
        big[sizeof(big) - 1] = '\0';
        assert_int_equal(veil_ua_reduce(big, &ua), 0);
        assert_int_equal(ua.browser, VEIL_UA_BROWSER_FIREFOX);
        memset(big + VEIL_UA_SCAN_MAX - 12, 'a', 11);
        memcpy(big + VEIL_UA_SCAN_MAX + 10, "Firefox/120", 11);
        assert_int_equal(veil_ua_reduce(big, &ua), 0);
        assert_int_equal(ua.browser, VEIL_UA_BROWSER_OTHER);

        /* Formatting: the longest output fits VEIL_UA_OUT_MAX; a short
         * buffer and out-of-range values are refused with an empty out. */
        struct veil_ua lng = {VEIL_UA_BROWSER_SAMSUNG, VEIL_UA_MAJOR_MAX,
                              VEIL_UA_OS_CHROMEOS, VEIL_UA_DEVICE_DESKTOP};
        int n = veil_ua_format(&lng, out, sizeof(out));
        assert_true(n > 0 && n < VEIL_UA_OUT_MAX);
        assert_string_equal(out, "Samsung Internet 999 / ChromeOS / desktop");
        assert_int_equal(veil_ua_format(&lng, out, (size_t)n), -VEIL_EINVAL);
        assert_string_equal(out, "");
        assert_int_equal(veil_ua_format(&lng, out, (size_t)n + 1), n);
        struct veil_ua bad = lng;
        bad.os = (enum veil_ua_os)99;
        assert_int_equal(veil_ua_format(&bad, out, sizeof(out)),
                         -VEIL_EINVAL);
        bad = lng;
        bad.major = VEIL_UA_MAJOR_MAX + 1;
        assert_int_equal(veil_ua_format(&bad, out, sizeof(out)),
                         -VEIL_EINVAL);
        assert_string_equal(out, "");
        bad = lng;
        bad.major = -3;
        assert_int_equal(veil_ua_format(&bad, out, sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_ua_format(NULL, out, sizeof(out)),
                         -VEIL_EINVAL);
        assert_null(veil_ua_browser_name((enum veil_ua_browser)7));
        assert_null(veil_ua_device_name((enum veil_ua_device)-1));
}

int main(int argc, char **argv) {
        /* ctest runs unit tests from tests/unit; people, from the root. */
        const char *tsv = argc > 1 ? argv[1] : "data/useragents.tsv";
        if (argc <= 1 && access(tsv, R_OK) != 0)
                tsv = "tests/unit/data/useragents.tsv";
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ip_v4),
                cmocka_unit_test(test_ip_v4_property),
                cmocka_unit_test(test_ip_v6),
                cmocka_unit_test(test_ip_v6_property),
                cmocka_unit_test(test_ip_invalid),
                cmocka_unit_test(test_geohash_known),
                cmocka_unit_test(test_geohash_property),
                cmocka_unit_test(test_geohash_invalid),
                cmocka_unit_test(test_duration_parse),
                cmocka_unit_test(test_time_bucket),
                cmocka_unit_test_prestate(test_ua_table, (void *)tsv),
                cmocka_unit_test(test_ua_edges),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

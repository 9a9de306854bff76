/*
 * test_context — the context plugin: feature ids of known events against
 * an independent FNV-1a, time zones, the catalog, profile bounds (cap,
 * LRU, TTL, erase) on the module, and sessions, tiers, erase and export
 * through the host (forget → context on an in-process pipeline).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "codec.h"
#include "config.h"
#include "context_info.h"
#include "featurize.h"
#include "keyring.h"
#include "keys.h"
#include "pipeline.h"
#include "profile.h"
#include "tz.h"

#ifndef FORGET_DIR
#error "FORGET_DIR must be defined"
#endif

/* ---- an independent hash: the documented formula, written again ---- */

static uint32_t expect_id(uint32_t space, const char *kind, const char *value) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s=%s", kind, value);
        uint64_t h = 0xcbf29ce484222325ULL;
        for (const unsigned char *p = (const unsigned char *)buf; *p; p++) {
                h ^= *p;
                h *= 0x100000001b3ULL;
        }
        return (uint32_t)(h % space);
}

static char *write_tmp(const char *text) {
        char *path = strdup("/tmp/veil-test-catalog-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        return path;
}

static const char catalog_csv[] =
        "id,category,price,description\n"
        "A1,Lighting,2.50,WHITE METAL LANTERN\n"
        "B2,Kitchen,0.40,\"MUG, \"\"HOME\"\"\"\n"
        "C3,Kitchen,12.00,TEA SET\n"
        "D4,Garden,5.00,BIRD HOUSE\n"
        "E5,Garden,1.00,\n";

/* ---- features of a known event ------------------------------------- */

static void test_feature_ids(void **st) {
        (void)st;
        char err[256];
        char *path = write_tmp(catalog_csv);
        struct veil_catalog *cat;
        assert_int_equal(veil_catalog_load(&cat, path, NULL, 2, 5, err,
                                           sizeof(err)),
                         0);
        unlink(path);
        free(path);
        struct veil_tz_cache *tz = veil_tz_new(NULL, 8);
        assert_non_null(tz);
        /* 2024-01-15T20:30:00Z, a Monday; in Tokyo (UTC+9) Tuesday 05:30. */
        struct veil_event ev = {0};
        ev.ts_ms = 1705350600000LL;
        ev.type = "ADD_TO_CART";
        ev.item_id = "A1";
        ev.ctx.device = "Phone";
        ev.ctx.country = "FR";
        ev.ctx.geohash = "u09tvw0f";
        ev.ctx.timezone = "Asia/Tokyo";
        int32_t off;
        assert_int_equal(veil_tz_offset(tz, ev.ctx.timezone, ev.ts_ms, &off),
                         0);
        assert_int_equal(off, 9 * 3600);
        int hour, wd;
        veil_tz_local(ev.ts_ms, off, &hour, &wd);
        assert_int_equal(hour, 5);
        assert_int_equal(wd, 2);

        struct veil_features_cfg cfg = {1000003u, (1u << VEIL_CTX_N_KINDS) - 1,
                                        4};
        struct veil_session_info si = {3, 42000};
        struct veil_feature_set fs;
        int32_t item = veil_catalog_find(cat, "A1");
        assert_int_equal(item, 0);
        veil_features_extract(&cfg, &ev, cat, item, hour, wd, &si, &fs);
        /* The lantern is in the middle band of five by price (0.40, 1.00,
         * 2.50, 5.00, 12.00). */
        const struct {
                int kind;
                const char *name, *value, *word;
        } want[] = {
                {VEIL_CTX_HOUR, "hour", "5", "at night"},
                {VEIL_CTX_WEEKDAY, "weekday", "2", "on a Tuesday"},
                {VEIL_CTX_DEVICE, "device", "mobile", "on mobile"},
                {VEIL_CTX_COUNTRY, "country", "FR", "FR"},
                {VEIL_CTX_GEOHASH, "geohash", "u09t", "nearby"},
                {VEIL_CTX_SESSION_POSITION, "session_position", "3",
                 "early in a visit"},
                {VEIL_CTX_SINCE_PREVIOUS, "since_previous", "10-60s",
                 "browsing quickly"},
                {VEIL_CTX_TYPE, "type", "add_to_cart", "adding to the cart"},
                {VEIL_CTX_ITEM, "item", "A1", "a lighting"},
                {VEIL_CTX_CATEGORY, "category", "lighting", "lighting"},
                {VEIL_CTX_PRICE_BAND, "price_band", "2", "mid-priced"},
        };
        size_t nw = sizeof(want) / sizeof(*want);
        assert_int_equal(fs.n, nw);
        for (size_t i = 0; i < nw; i++) {
                assert_int_equal(fs.kind[i], want[i].kind);
                assert_int_equal(fs.id[i], expect_id(cfg.space, want[i].name,
                                                     want[i].value));
                assert_string_equal(fs.word[i], want[i].word);
        }
        /* Only the kinds asked for; absent values give no feature. */
        cfg.enabled = 1u << VEIL_CTX_DEVICE | 1u << VEIL_CTX_GEOHASH |
                      1u << VEIL_CTX_SESSION_POSITION;
        ev.ctx.geohash = NULL;
        veil_features_extract(&cfg, &ev, cat, item, hour, wd, NULL, &fs);
        assert_int_equal(fs.n, 1);
        assert_int_equal(fs.kind[0], VEIL_CTX_DEVICE);
        /* An item outside the catalog: its id only. */
        cfg.enabled = (1u << VEIL_CTX_N_KINDS) - 1;
        ev.item_id = "ZZ";
        veil_features_extract(&cfg, &ev, cat, -1, hour, wd, NULL, &fs);
        assert_int_equal(fs.kind[fs.n - 1], VEIL_CTX_ITEM);
        assert_int_equal(fs.id[fs.n - 1], expect_id(cfg.space, "item", "ZZ"));
        veil_tz_free(tz);
        veil_catalog_free(cat);
}

static void test_normalization(void **st) {
        (void)st;
        assert_string_equal(veil_features_device("DESKTOP", NULL), "desktop");
        assert_string_equal(veil_features_device("smartphone", NULL), "mobile");
        assert_string_equal(veil_features_device("fridge", NULL), "other");
        /* A reduced user agent of class "other" (a bot, a console) is not
         * a desktop. */
        assert_string_equal(veil_features_device(NULL,
                                                 "Googlebot 2 / Linux / other"),
                            "other");
        assert_string_equal(veil_features_device(NULL,
                                                 "Nintendo 1 / Switch / other"),
                            "other");
        assert_null(veil_features_device(NULL, NULL));
        assert_string_equal(veil_features_device(NULL,
                                                 "Chrome 120 / Android / mobile"),
                            "mobile");
        assert_string_equal(
                veil_features_device(NULL, "Mozilla/5.0 (iPad; CPU OS 17_0 "
                                           "like Mac OS X) Mobile/15E148"),
                "tablet");
        assert_string_equal(veil_features_device(NULL, "Firefox 121 / Linux "
                                                       "/ desktop"),
                            "desktop");
        assert_string_equal(veil_features_type("Purchase"), "purchase");
        assert_string_equal(veil_features_type("wishlist"), "view");
        assert_string_equal(veil_features_type(NULL), "view");
        assert_string_equal(veil_features_position_bucket(1), "1");
        assert_string_equal(veil_features_position_bucket(5), "4-5");
        assert_string_equal(veil_features_position_bucket(11), "11-20");
        assert_string_equal(veil_features_position_bucket(500), "21+");
        assert_string_equal(veil_features_gap_bucket(0), "0-10s");
        assert_string_equal(veil_features_gap_bucket(60000), "1-5m");
        assert_string_equal(veil_features_gap_bucket(1800000), "30m+");
        assert_int_equal(veil_features_kind("price_band"), VEIL_CTX_PRICE_BAND);
        assert_int_equal(veil_features_kind("mood"), -1);
}

static void test_timezones(void **st) {
        (void)st;
        struct veil_tz_cache *tz = veil_tz_new(NULL, 2);
        int32_t off;
        /* Paris: +1 in winter, +2 in summer. */
        assert_int_equal(veil_tz_offset(tz, "Europe/Paris", 1704110400000LL,
                                        &off),
                         0);
        assert_int_equal(off, 3600);
        assert_int_equal(veil_tz_offset(tz, "Europe/Paris", 1719835200000LL,
                                        &off),
                         0);
        assert_int_equal(off, 7200);
        /* New York, summer; more zones than the cache holds. */
        assert_int_equal(veil_tz_offset(tz, "America/New_York",
                                        1719835200000LL, &off),
                         0);
        assert_int_equal(off, -4 * 3600);
        assert_int_equal(veil_tz_offset(tz, "Europe/Paris", 1704110400000LL,
                                        &off),
                         0);
        assert_int_equal(off, 3600);
        /* Unknown or unsafe names: UTC, and an error. */
        assert_int_equal(veil_tz_offset(tz, "Mars/Olympus", 0, &off), -1);
        assert_int_equal(off, 0);
        assert_int_equal(veil_tz_offset(tz, "../../etc/passwd", 0, &off), -1);
        assert_int_equal(veil_tz_offset(tz, "/etc/localtime", 0, &off), -1);
        assert_int_equal(veil_tz_offset(tz, "", 0, &off), -1);
        int h, wd;
        veil_tz_local(0, 0, &h, &wd);
        assert_int_equal(h, 0);
        assert_int_equal(wd, 4); /* 1970-01-01 was a Thursday */
        veil_tz_local(-1000, 0, &h, &wd);
        assert_int_equal(h, 23);
        assert_int_equal(wd, 3);
        veil_tz_local(1705350600000LL, -5 * 3600, &h, &wd);
        assert_int_equal(h, 15);
        assert_int_equal(wd, 1);
        veil_tz_free(tz);
}

/* The explanations' phrase for an item: an article, none for plurals. */
/* ---- time zones after the last listed transition ---------------------- */

/* The offset glibc's localtime_r gives for `tz` (a TZ value) at t: the
 * reference, read from the same files by another implementation. */
static long glibc_offset(time_t t) {
        struct tm tm;
        assert_non_null(localtime_r(&t, &tm));
        return tm.tm_gmtoff;
}

/* Every 30 minutes of [from, to) years, and the zone's offset by veil and
 * by glibc (TZ set for the test only: veil never touches it). */
static void compare_years(struct veil_tz_cache *c, const char *zone,
                          const char *tz, int from, int to) {
        setenv("TZ", tz, 1);
        tzset();
        int64_t t0 = (int64_t)(from - 1970) * 31556952 - 86400;
        int64_t t1 = (int64_t)(to - 1970) * 31556952 + 86400;
        for (int64_t t = t0; t < t1; t += 1800) {
                int32_t off;
                assert_int_equal(veil_tz_offset(c, zone, t * 1000, &off), 0);
                if (off != glibc_offset((time_t)t))
                        fail_msg("%s at %lld: veil %d, glibc %ld", zone,
                                 (long long)t, off,
                                 glibc_offset((time_t)t));
        }
}

/* A TZif v2 file in dir/name: one transition (2000-01-01) to a type of
 * offset `off` and the footer `rule`, as a "slim" file (zic -b slim) lists
 * only the transitions the rule does not give. */
static void write_tzif(const char *dir, const char *name, int32_t off,
                       const char *rule) {
        unsigned char b[256];
        size_t n = 0;
#define BE(v, k)                                                   \
        for (int i_ = (k) - 1; i_ >= 0; i_--)                      \
                b[n++] = (unsigned char)((uint64_t)(v) >> (8 * i_));
        for (int v = 0; v < 2; v++) {
                memcpy(b + n, "TZif2", 5);
                memset(b + n + 5, 0, 15);
                n += 20;
                uint32_t counts[6] = {0, 0, 0, v ? 1 : 0, 1, 4};
                for (int i = 0; i < 6; i++) {
                        BE(counts[i], 4);
                }
                if (v) {
                        BE(946684800, 8);
                        b[n++] = 0;
                }
                BE(off, 4);
                b[n++] = 0;
                b[n++] = 0;
                memcpy(b + n, "ZZZ", 4);
                n += 4;
        }
#undef BE
        n += (size_t)snprintf((char *)b + n, sizeof(b) - n, "\n%s\n", rule);
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(b, 1, n, f), n);
        fclose(f);
}

/* The footer's rule (TZif v2+) gives the offsets after the last listed
 * transition: Debian's files list them to 2037 and the last one (winter
 * time) held for ever after, so Paris was an hour off every summer from
 * 2038; "slim" files list much less. Against glibc: northern and southern
 * zones, daylight time in winter (Dublin), times of change past 24 h or
 * negative, half and quarter hours, and the Jn and n forms. */
static void test_tz_footer(void **st) {
        (void)st;
        char *saved = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
        struct veil_tz_cache *c = veil_tz_new(NULL, 4);
        static const char *const zones[] = {
                "Europe/Paris",      "America/New_York", "Australia/Sydney",
                "America/Santiago",  "Pacific/Auckland", "America/Nuuk",
                "Europe/Dublin",     "Asia/Jerusalem",   "America/St_Johns",
                "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Tokyo",
                "Africa/Casablanca", "America/Sao_Paulo"};
        for (size_t i = 0; i < sizeof(zones) / sizeof(*zones); i++) {
                char tz[80];
                snprintf(tz, sizeof(tz), ":%s", zones[i]);
                compare_years(c, zones[i], tz, 2030, 2046);
                compare_years(c, zones[i], tz, 2096, 2101);
                compare_years(c, zones[i], tz, 1995, 1997); /* the table */
        }
        int32_t off;
        /* 2040-07-01T12:00Z in Paris: summer time. */
        assert_int_equal(veil_tz_offset(c, "Europe/Paris", 2224756800000LL,
                                        &off),
                         0);
        assert_int_equal(off, 7200);
        veil_tz_free(c);
        /* Slim files: the rule from 2000 on, in every form. */
        char dir[] = "/tmp/veil-test-tz-XXXXXX";
        assert_non_null(mkdtemp(dir));
        static const struct {
                int32_t off;
                const char *rule;
        } slim[] = {
                {3600, "CET-1CEST,M3.5.0,M10.5.0/3"},
                {-10800, "<-03>3<-02>,J60/2,J300/2"},
                {-10800, "<-03>3<-02>,59,299/1:30"},
                {19800, "<+0530>-5:30<+0630>,M4.5.6/-1:30,M9.5.0/26"},
                {43200, "<+12>-12<+13>-13:00:00,M9.5.0/2:45:30,M4.1.0/3"},
                {-18000, "<-05>5"},
        };
        c = veil_tz_new(dir, 2);
        for (size_t i = 0; i < sizeof(slim) / sizeof(*slim); i++) {
                char name[16], tz[600];
                snprintf(name, sizeof(name), "Slim%zu", i);
                write_tzif(dir, name, slim[i].off, slim[i].rule);
                snprintf(tz, sizeof(tz), ":%s/%s", dir, name);
                compare_years(c, name, tz, 2000, 2006);
                compare_years(c, name, tz, 2038, 2042);
        }
        /* (Removed only now: glibc takes a file of the inode and time of
         * the one it read last for that one.) */
        for (size_t i = 0; i < sizeof(slim) / sizeof(*slim); i++) {
                char path[600];
                snprintf(path, sizeof(path), "%s/Slim%zu", dir, i);
                unlink(path);
        }
        veil_tz_free(c);
        rmdir(dir);
        if (saved)
                setenv("TZ", saved, 1);
        else
                unsetenv("TZ");
        free(saved);
        tzset();
}

static void test_catalog_phrases(void **st) {
        (void)st;
        char err[512];
        char *path = write_tmp("item,median_unit_price,description\n"
                               "1,1,SET OF 12 T-LIGHT CANDLES\n"
                               "2,1,ORANGE WOODEN OWL\n"
                               "3,1,DRINKING GLASS\n"
                               "4,1,ARTIST CANVAS\n"
                               "5,1,GIFT BOXES\n"
                               "6,1,BUS\n");
        struct veil_catalog *c;
        assert_int_equal(veil_catalog_load(&c, path, NULL, 0, 3, err,
                                           sizeof(err)),
                         0);
        static const char *const want[] = {"candles", "an owl",
                                           "a glass", "a canvas",
                                           "boxes", "a bus"};
        for (size_t i = 0; i < 6; i++)
                assert_string_equal(c->phrase[i], want[i]);
        veil_catalog_free(c);
        unlink(path);
        free(path);
}

/* A catalog file is refused, naming its line, for what would otherwise be
 * lost or refused later without a word: an id, a description or a
 * category the host would refuse in a recommendation; a byte-order mark
 * before the header is skipped, and no column is lost however many there
 * are (at 64 the description was, and every item became "item"). */
static void catalog_refused(const char *text, const char *want) {
        char err[512] = "";
        char *path = write_tmp(text);
        struct veil_catalog *c = NULL;
        assert_int_equal(veil_catalog_load(&c, path, NULL, 0, 3, err,
                                           sizeof(err)),
                         -VEIL_EINVAL);
        if (!strstr(err, want))
                fail_msg("'%s' lacks '%s'", err, want);
        unlink(path);
        free(path);
}

static void test_catalog_refused(void **st) {
        (void)st;
        char text[4096], *w = text;
        catalog_refused("item,description\nA,LANTERN,extra\n",
                        ":2: more fields than the header");
        catalog_refused("item,description\nA\xe9,LANTERN\n",
                        ":2: item id is not valid UTF-8");
        catalog_refused("item,description\nA,LANT\xe9RN\n",
                        ":2: the description is not valid UTF-8");
        catalog_refused("item,category\nA,lamp\xe9\n",
                        ":2: the category is not valid UTF-8");
        w = text + sprintf(text, "item,description\n");
        memset(w, 'x', 513);
        strcpy(w + 513, ",LANTERN\n");
        catalog_refused(text, ":2: item id is longer than 512 bytes");
        catalog_refused("item,median_unit_price\nA,inf\n",
                        ":2: price must be a number >= 0");
        catalog_refused("item,description\nA,\"TWO\nLINES\"\n",
                        ":2: unterminated quote (a quoted field cannot hold "
                        "a line break)");
        char err[512] = "";
        char *path = write_tmp("\xEF\xBB\xBF" "description,item\n"
                               "WHITE LANTERN,A\n");
        struct veil_catalog *c = NULL;
        assert_int_equal(veil_catalog_load(&c, path, NULL, 0, 3, err,
                                           sizeof(err)),
                         0);
        assert_int_equal(veil_catalog_find(c, "A"), 0);
        assert_string_equal(c->category[0], "lantern");
        veil_catalog_free(c);
        unlink(path);
        free(path);
        /* 80 columns, the description last; a category of 25 two-byte
         * characters, cut to the longest whole ones that fit. */
        w = text;
        for (int i = 0; i < 77; i++)
                w += sprintf(w, "extra%d,", i);
        w += sprintf(w, "item,category,description\n");
        for (int i = 0; i < 77; i++)
                w += sprintf(w, "%d,", i);
        w += sprintf(w, "A,");
        for (int i = 0; i < 25; i++)
                w += sprintf(w, "\xc3\xa9");
        sprintf(w, ",WHITE LANTERN\n");
        path = write_tmp(text);
        assert_int_equal(veil_catalog_load(&c, path, NULL, 0, 3, err,
                                           sizeof(err)),
                         0);
        assert_int_equal(veil_catalog_find(c, "A"), 0);
        assert_non_null(c->description[0]);
        assert_string_equal(c->description[0], "WHITE LANTERN");
        assert_true(veil_utf8_valid(c->category[0], strlen(c->category[0])));
        assert_int_equal(strlen(c->category[0]), 38);
        veil_catalog_free(c);
        unlink(path);
        free(path);
}

static void test_catalog(void **st) {
        (void)st;
        char err[512];
        char *path = write_tmp(
                "item,median_unit_price,description\n"
                "10,0.85,INFLATABLE POLITICAL GLOBE\n"
                "11,1.25,HEART T-LIGHT HOLDER PINK\n"
                "12,2.10,SET OF 3 CAKE TINS PANTRY DESIGN\n"
                "10,9.99,DUPLICATE\n"
                "13,,\n");
        struct veil_catalog *c;
        assert_int_equal(veil_catalog_load(&c, path, NULL, 2, 3, err,
                                           sizeof(err)),
                         0);
        assert_int_equal(c->n_file, 4);
        assert_string_equal(c->category[0], "globe");
        assert_string_equal(c->category[1], "holder");
        assert_string_equal(c->category[2], "pantry");
        assert_string_equal(c->category[3], "item");
        assert_string_equal(c->phrase[0], "a globe");
        assert_string_equal(c->phrase[1], "a holder");
        assert_true(c->price[0] > 0.84f && c->price[0] < 0.86f); /* first */
        assert_int_equal(c->band[3], -1);
        assert_int_equal(c->band[0], 0);
        assert_int_equal(c->band[2], 2);
        /* Items from events: up to the cap. */
        assert_int_equal(veil_catalog_intern(c, "x"), 4);
        assert_int_equal(veil_catalog_intern(c, "x"), 4);
        assert_int_equal(veil_catalog_intern(c, "y"), 5);
        assert_int_equal(veil_catalog_intern(c, "z"), -1);
        assert_int_equal(veil_catalog_find(c, "12"), 2);
        veil_catalog_free(c);
        /* Ids kept whole in the table's slot (up to 7 bytes) and longer
         * ones (8 and more: their first 8 bytes, then the string), with
         * common prefixes on both sides of the boundary. */
        static const char *const ids[] = {
                "", "A", "ABCDEF", "ABCDEFG", "ABCDEFGH", "ABCDEFGHI",
                "ABCDEFGHIJ", "ABCDEFGX", "ABCDEFGHX", "a-much-longer-id-1",
                "a-much-longer-id-2", "ABCDEFG\xc3\xa9"};
        size_t nid = sizeof(ids) / sizeof(*ids);
        assert_int_equal(veil_catalog_new(&c, nid, 3, err, sizeof(err)), 0);
        for (size_t i = 0; i < nid; i++)
                assert_int_equal(veil_catalog_intern(c, ids[i]), (int32_t)i);
        for (size_t i = 0; i < nid; i++)
                assert_int_equal(veil_catalog_find(c, ids[i]), (int32_t)i);
        static const char *const absent[] = {
                "AB", "ABCDE", "ABCDEFGHIJK", "ABCDEFGHIJX", "ABCDEFGY",
                "a-much-longer-id-", "a-much-longer-id-3", "ABCDEFG\xc3"};
        for (size_t i = 0; i < sizeof(absent) / sizeof(*absent); i++)
                assert_int_equal(veil_catalog_find(c, absent[i]), -1);
        /* Many at once: the same answers, NULL ids give -1 (more than one
         * group of 16). */
        const char *many[40];
        int32_t got[40];
        for (size_t i = 0; i < 40; i++)
                many[i] = i % 7 == 3 ? NULL
                          : i % 3 == 0 ? absent[i % 8]
                                       : ids[i % nid];
        veil_catalog_find_many(c, many, 40, got);
        for (size_t i = 0; i < 40; i++)
                assert_int_equal(got[i], many[i] ? veil_catalog_find(
                                                           c, many[i])
                                                 : -1);
        veil_catalog_free(c);
        /* A named column that is absent: the message names it. */
        struct veil_catalog_columns cols = {0};
        cols.category = "kind";
        assert_int_equal(veil_catalog_load(&c, path, &cols, 0, 3, err,
                                           sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "'kind'"));
        unlink(path);
        free(path);
        assert_int_equal(veil_catalog_load(&c, "/nonexistent/items.csv", NULL,
                                           0, 5, err, sizeof(err)),
                         -VEIL_ENOENT);
        char *rel = veil_catalog_path("conf/x/p.yaml:3:9", "../items.csv");
        assert_string_equal(rel, "conf/x/../items.csv");
        free(rel);
        rel = veil_catalog_path("p.yaml:3:9", "/abs/items.csv");
        assert_string_equal(rel, "/abs/items.csv");
        free(rel);
}

/* ---- the profile store ---------------------------------------------- */

static void test_profile_bounds(void **st) {
        (void)st;
        struct veil_profiles *s;
        assert_int_equal(veil_profiles_new(&s, 3, 2, 0, 1000), 0);
        int created;
        struct veil_profile *p = veil_profiles_touch(s, "a", 0, &created);
        assert_true(created);
        veil_profiles_push(s, p, 1, 10);
        veil_profiles_push(s, p, 2, 20);
        veil_profiles_push(s, p, 3, 30); /* L = 2: item 1 goes */
        assert_int_equal(p->n_items, 2);
        assert_int_equal(p->items[0], 3);
        assert_int_equal(p->items[1], 2);
        assert_int_equal(p->item_ts[0], 30);
        veil_profiles_touch(s, "b", 1, &created);
        veil_profiles_touch(s, "c", 2, &created);
        p = veil_profiles_touch(s, "a", 3, &created); /* a is fresh again */
        assert_false(created);
        veil_profiles_touch(s, "d", 4, &created); /* full: b (LRU) goes */
        assert_true(created);
        assert_int_equal(veil_profiles_count(s), 3);
        assert_null(veil_profiles_get(s, "b", 5));
        p = veil_profiles_get(s, "a", 5);
        assert_non_null(p);
        assert_int_equal(p->items[0], 3);
        /* TTL: unused for longer than 1000 ms. */
        assert_null(veil_profiles_get(s, "c", 1003));
        assert_int_equal(veil_profiles_count(s), 2);
        assert_int_equal(veil_profiles_expire(s, 1005), 2);
        assert_int_equal(veil_profiles_count(s), 0);
        /* Erase. */
        veil_profiles_touch(s, "e", 2000, &created);
        assert_int_equal(veil_profiles_erase(s, "e"), 1);
        assert_int_equal(veil_profiles_erase(s, "e"), 0);
        assert_null(veil_profiles_get(s, "e", 2000));
        p = veil_profiles_touch(s, "e", 2001, &created);
        assert_true(created);
        assert_int_equal(p->n_items, 0); /* nothing of the old one */
        veil_profiles_free(s);
}

/* The history: one count per visit an item was in (visits numbered, so an
 * event out of time order stays in its visit), the item seen longest ago
 * makes room, items not seen since a time go, and erase wipes it. */
static void test_profile_history(void **st) {
        (void)st;
        struct veil_profiles *s;
        assert_int_equal(veil_profiles_new(&s, 4, 2, 3, 0), 0);
        int created;
        struct veil_profile *p = veil_profiles_touch(s, "a", 0, &created);
        veil_profiles_new_visit(p); /* visit 1: items 1, 2, 1 */
        veil_profiles_remember(s, p, 1, 10);
        veil_profiles_remember(s, p, 2, 11);
        veil_profiles_remember(s, p, 1, 12);
        assert_int_equal(p->n_hist, 2);
        assert_int_equal(p->hist[0], 1);
        assert_int_equal(p->hist_visits[0], 1); /* twice in one visit */
        assert_int_equal(p->hist_ts[0], 12);
        veil_profiles_new_visit(p); /* visit 2: items 2, 3, then a late 1 */
        veil_profiles_remember(s, p, 2, 100);
        veil_profiles_remember(s, p, 3, 101);
        veil_profiles_remember(s, p, 1, 5);
        assert_int_equal(p->n_hist, 3);
        assert_int_equal(p->hist_visits[1], 2);
        assert_int_equal(p->hist_visits[0], 2);
        assert_int_equal(p->hist_visit[0], 2);
        assert_int_equal(p->hist_ts[0], 12); /* the latest time stays */
        veil_profiles_remember(s, p, 3, 102); /* same visit: no count */
        assert_int_equal(p->hist_visits[2], 1);
        veil_profiles_new_visit(p); /* visit 3: item 4; H = 3 is full */
        veil_profiles_remember(s, p, 4, 200);
        /* Item 3 was in one visit, 1 and 2 in two. */
        assert_int_equal(p->n_hist, 3);
        int32_t want[] = {1, 2, 4};
        for (int k = 0; k < 3; k++)
                assert_int_equal(p->hist[k], want[k]);
        assert_int_equal(p->hist_visits[2], 1);
        veil_profiles_new_visit(p); /* visit 4: item 5, full again */
        veil_profiles_remember(s, p, 5, 300);
        /* Items 1 and 2 were in two visits; 4, in one, goes. */
        assert_int_equal(p->hist[2], 5);
        /* Not seen since 100: item 1 (12) goes, then 2 (100) stays. */
        veil_profiles_age(p, 100);
        assert_int_equal(p->n_hist, 2);
        assert_int_equal(p->hist[0], 2);
        assert_int_equal(p->hist[1], 5);
        assert_int_equal(p->hist_ts[1], 300);
        /* Erase wipes the slot, not just its count: the next profile in
         * it finds zeros. */
        assert_int_equal(veil_profiles_erase(s, "a"), 1);
        p = veil_profiles_touch(s, "b", 1, &created);
        assert_true(created);
        assert_int_equal(p->n_hist, 0);
        assert_int_equal(p->visit_no, 0);
        for (int k = 0; k < 3; k++) {
                assert_int_equal(p->hist[k], 0);
                assert_int_equal(p->hist_visits[k], 0);
                assert_int_equal(p->hist_ts[k], 0);
        }
        veil_profiles_free(s);
        /* H = 0: nothing is kept. */
        assert_int_equal(veil_profiles_new(&s, 4, 2, 0, 0), 0);
        p = veil_profiles_touch(s, "a", 0, &created);
        veil_profiles_remember(s, p, 1, 10);
        assert_int_equal(p->n_hist, 0);
        veil_profiles_free(s);
}

/* Random touches and erasures against a plain list: the hash table with
 * backward-shift deletion and the LRU never lose or confuse a key. */
static const char *const saved_ids[] = {"i0", "i1", "i2", "i3"};

static const char *id_of(void *ctx, int32_t item) {
        (void)ctx;
        return saved_ids[item];
}

/* Restored into a store whose catalog numbers items differently. */
static int32_t index_of(void *ctx, const char *id) {
        int *calls = ctx;
        (*calls)++;
        if (!strcmp(id, "i3"))
                return -1; /* a full catalog: the item is dropped */
        return 10 + (id[1] - '0');
}

/* Checkpoint and restore: items by id, sessions, previous features, the
 * LRU order, and the last-use time so the TTL still counts from it. */
static void test_profile_checkpoint(void **st) {
        (void)st;
        struct veil_profiles *s, *t;
        int created, calls = 0;
        char err[256];
        assert_int_equal(veil_profiles_new(&s, 10, 3, 3, 1000), 0);
        struct veil_profile *p = veil_profiles_touch(s, "ua", 100, &created);
        veil_profiles_new_visit(p);
        veil_profiles_remember(s, p, 2, 5);
        veil_profiles_remember(s, p, 3, 6);
        veil_profiles_new_visit(p);
        veil_profiles_remember(s, p, 2, 11);
        veil_profiles_remember(s, p, 0, 12);
        veil_profiles_push(s, p, 0, 11);
        veil_profiles_push(s, p, 3, 12);
        veil_profiles_push(s, p, 1, 13);
        p->session = 77;
        p->position = 4;
        p->n_prev = 2;
        p->prev_features[0] = 5;
        p->prev_features[1] = 6;
        p->prev_kinds = 1u << VEIL_CTX_HOUR | 1u << VEIL_CTX_ITEM;
        veil_profiles_touch(s, "ub", 500, &created);
        void *data = NULL;
        size_t len = 0;
        assert_int_equal(veil_profiles_save(s, id_of, NULL, &data, &len), 0);

        /* Truncated: refused as a whole, nothing added. */
        assert_int_equal(veil_profiles_new(&t, 2, 2, 2, 1000), 0);
        assert_int_equal(veil_profiles_load(t, data, len - 1, 600, index_of,
                                            &calls, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "truncated"));
        assert_int_equal(veil_profiles_count(t), 0);
        assert_int_equal(calls, 0);

        /* L = 2 here: the two newest items survive, i3 is dropped. */
        assert_int_equal(veil_profiles_load(t, data, len, 600, index_of, &calls,
                                            err, sizeof(err)),
                         0);
        assert_int_equal(veil_profiles_count(t), 2);
        struct veil_profile *q = veil_profiles_get(t, "ua", 600);
        assert_non_null(q);
        assert_int_equal(q->n_items, 2);
        assert_int_equal(q->items[0], 11);
        assert_int_equal(q->item_ts[0], 13);
        assert_int_equal(q->items[1], 10);
        assert_int_equal(q->item_ts[1], 11);
        assert_int_equal(q->session, 77);
        assert_int_equal(q->position, 4);
        assert_int_equal(q->n_prev, 2);
        assert_int_equal(q->prev_features[1], 6);
        assert_int_equal(q->prev_kinds, 1u << VEIL_CTX_HOUR | 1u << VEIL_CTX_ITEM);
        /* The visits and the history (H = 2 here: i3 cannot be resolved,
         * the two others fit). */
        assert_int_equal(q->visit_no, 2);
        assert_int_equal(q->visit_items, 3); /* the three pushes above */
        assert_int_equal(q->n_hist, 2);
        assert_int_equal(q->hist[0], 12);
        assert_int_equal(q->hist_visits[0], 2);
        assert_int_equal(q->hist_visit[0], 2);
        assert_int_equal(q->hist_ts[0], 11);
        assert_int_equal(q->hist[1], 10);
        assert_int_equal(q->hist_visits[1], 1);
        /* ua was last used at 100, ub at 500: the store is full, so a new
         * user replaces ua, the least recently used. */
        veil_profiles_touch(t, "uc", 700, &created);
        assert_null(veil_profiles_get(t, "ua", 700));
        assert_non_null(veil_profiles_get(t, "ub", 700));
        /* The TTL counts from the restored last use (500), not from the
         * restore. */
        assert_int_equal(veil_profiles_expire(t, 1501), 1);
        assert_null(veil_profiles_get(t, "ub", 1501));
        veil_profiles_free(t);
        /* Restored at 1101, past ua's TTL (last used at 100, TTL 1000):
         * ua is deleted, not restored (an old checkpoint, or one saved by
         * an idle instance); ub (500) stays. */
        assert_int_equal(veil_profiles_new(&t, 2, 2, 2, 1000), 0);
        assert_int_equal(veil_profiles_load(t, data, len, 1101, index_of,
                                            &calls, err, sizeof(err)),
                         0);
        assert_int_equal(veil_profiles_count(t), 1);
        assert_null(veil_profiles_get(t, "ua", 1101));
        assert_non_null(veil_profiles_get(t, "ub", 1101));
        veil_profiles_free(t);
        /* A history of one keeps the item seen last (i0, at 12). */
        assert_int_equal(veil_profiles_new(&t, 2, 2, 1, 1000), 0);
        assert_int_equal(veil_profiles_load(t, data, len, 600, index_of, &calls,
                                            err, sizeof(err)),
                         0);
        q = veil_profiles_get(t, "ua", 600);
        assert_int_equal(q->n_hist, 1);
        assert_int_equal(q->hist[0], 10);
        veil_profiles_free(t);
        veil_profiles_free(s);
        free(data);
        /* Format 1 (before the history) is still read. */
        static const unsigned char v1[] = {
                'V', 'P', 'R', 'F', 1, 0, 0, 0, 1,  /* one profile */
                0, 1, 'u',                          /* key */
                0, 0, 0, 0, 0, 0, 0, 5,             /* last use */
                0, 0, 0, 0, 0, 0, 0, 0,             /* session */
                0, 0, 0, 0, 0, 0, 0, 7,             /* last event */
                0, 0, 0, 1, 0, 0, 0, 0,             /* position, n_prev */
                0, 0, 0, 1, 0, 2, 'i', '1',         /* one item, i1 */
                0, 0, 0, 0, 0, 0, 0, 9};            /* at 9 */
        assert_int_equal(veil_profiles_new(&t, 2, 2, 2, 1000), 0);
        assert_int_equal(veil_profiles_load(t, v1, sizeof(v1), 6, index_of,
                                            &calls, err, sizeof(err)),
                         0);
        q = veil_profiles_get(t, "u", 6);
        assert_non_null(q);
        assert_int_equal(q->n_items, 1);
        assert_int_equal(q->items[0], 11);
        assert_int_equal(q->n_hist, 0);
        assert_int_equal(q->visit_items, 1); /* all of this visit */
        assert_int_equal(q->prev_kinds, 0);  /* not known */
        veil_profiles_free(t);
        /* Format 3: the previous features' kinds, one per feature. */
        static const unsigned char v3[] = {
                'V', 'P', 'R', 'F', 3, 0, 0, 0, 1,  /* one profile */
                0, 1, 'u',                          /* key */
                0, 0, 0, 0, 0, 0, 0, 5,             /* last use */
                0, 0, 0, 0, 0, 0, 0, 0,             /* session */
                0, 0, 0, 0, 0, 0, 0, 7,             /* last event */
                0, 0, 0, 1, 0, 0, 0, 1,             /* position, n_prev */
                0, 0, 0, 9, 0, 0, 1, 0,             /* id 9, kind item */
                0, 0, 0, 0,                         /* no items */
                0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}; /* visit 1, no history */
        assert_int_equal(veil_profiles_new(&t, 2, 2, 2, 1000), 0);
        assert_int_equal(veil_profiles_load(t, v3, sizeof(v3), 6, index_of,
                                            &calls, err, sizeof(err)),
                         0);
        q = veil_profiles_get(t, "u", 6);
        assert_int_equal(q->prev_kinds, 1u << VEIL_CTX_ITEM);
        veil_profiles_free(t);
        /* Two kinds for one feature, or a kind there is not: refused. */
        for (int bad = 0; bad < 2; bad++) {
                unsigned char b3[sizeof(v3)];
                memcpy(b3, v3, sizeof(v3));
                b3[50] = bad ? 8 : 1;  /* 1 << 11, or 1 << 8 | 1 << 0 */
                b3[51] = bad ? 0 : 1;
                assert_int_equal(veil_profiles_new(&t, 2, 2, 2, 1000), 0);
                assert_int_equal(veil_profiles_load(t, b3, sizeof(b3), 6,
                                                    index_of, &calls, err,
                                                    sizeof(err)),
                                 -VEIL_EINVAL);
                veil_profiles_free(t);
        }
        /* A last use ahead of this host's clock (2100: a host whose clock
         * ran fast) counts as now: expiry walks from the least recently
         * used and stopped at it, so nothing expired any more. */
        unsigned char fut[sizeof(v1)];
        memcpy(fut, v1, sizeof(v1));
        static const unsigned char y2100[8] = {0, 0, 3, 187, 44, 195, 216, 0};
        memcpy(fut + 12, y2100, 8);
        assert_int_equal(veil_profiles_new(&t, 2, 2, 2, 1000), 0);
        assert_int_equal(veil_profiles_load(t, fut, sizeof(fut),
                                            (int64_t)time(NULL) * 1000, index_of,
                                            &calls, err, sizeof(err)),
                         0);
        veil_profiles_touch(t, "later", (int64_t)time(NULL) * 1000,
                            &created);
        assert_int_equal(veil_profiles_expire(t, ((int64_t)time(NULL) +
                                                  30 * 86400) * 1000),
                         2);
        veil_profiles_free(t);
        /* Times outside 1970..9999 are no checkpoint of ours: refused
         * (a later time less INT64_MIN overflowed). */
        memcpy(fut, v1, sizeof(v1));
        fut[28] = 0x80; /* the last event at INT64_MIN */
        assert_int_equal(veil_profiles_new(&t, 2, 2, 2, 1000), 0);
        assert_int_equal(veil_profiles_load(t, fut, sizeof(fut), 600, index_of,
                                            &calls, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_profiles_count(t), 0);
        veil_profiles_free(t);
}

static void test_profile_stress(void **st) {
        (void)st;
        enum { MAX = 50, KEYS = 200, OPS = 20000 };
        struct veil_profiles *s;
        assert_int_equal(veil_profiles_new(&s, MAX, 1, 0, 0), 0);
        int64_t last_use[KEYS];
        int held[KEYS];
        memset(held, 0, sizeof(held));
        uint64_t r = 12345;
        char key[16];
        for (int op = 0; op < OPS; op++) {
                r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                int k = (int)((r >> 33) % KEYS);
                snprintf(key, sizeof(key), "k%d", k);
                if ((r >> 20) % 5 == 0) {
                        assert_int_equal(veil_profiles_erase(s, key),
                                         held[k]);
                        held[k] = 0;
                } else {
                        int created;
                        struct veil_profile *p =
                                veil_profiles_touch(s, key, op, &created);
                        assert_non_null(p);
                        assert_int_equal(created, !held[k]);
                        if (created) {
                                veil_profiles_push(s, p, k, op);
                        } else {
                                assert_int_equal(p->items[0], k);
                        }
                        if (!held[k]) {
                                int n = 0, oldest = -1;
                                for (int j = 0; j < KEYS; j++) {
                                        if (!held[j])
                                                continue;
                                        n++;
                                        if (oldest < 0 ||
                                            last_use[j] < last_use[oldest])
                                                oldest = j;
                                }
                                if (n == MAX) /* the store dropped the LRU */
                                        held[oldest] = 0;
                        }
                        held[k] = 1;
                        last_use[k] = op;
                }
                int n = 0;
                for (int j = 0; j < KEYS; j++)
                        n += held[j];
                assert_int_equal(veil_profiles_count(s), n);
        }
        for (int j = 0; j < KEYS; j++) {
                snprintf(key, sizeof(key), "k%d", j);
                struct veil_profile *p = veil_profiles_get(s, key, OPS);
                assert_int_equal(p != NULL, held[j]);
        }
        veil_profiles_free(s);
}

/* ---- through the host: forget → context ---------------------------- */

struct harness {
        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        char access[4096];
        int n_access;
        long seq;
        int training; /* events carry training consent */
};

/* Stages after context in the next h_open's pipeline ("" for none). */
static const char *h_after = "";

static int sink(void *ctx, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        struct harness *h = ctx;
        (void)key, (void)key_len;
        if (dl || strcmp(topic, "acc"))
                return 0;
        char *json = veil_codec_rec_json(
                veil_pipeline_output_codec(h->p, "access"), value, value_len);
        assert_non_null(json);
        snprintf(h->access, sizeof(h->access), "%s", json);
        free(json);
        h->n_access++;
        return 0;
}

static void h_open(struct harness *h, const char *with) {
        char yaml[2048], err[2048];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../../schemas/interaction.avsc,"
                 " batch: {max_events: 64, max_wait_ms: 10}}\n"
                 "outputs:\n"
                 "  access: {topic: acc, schema: "
                 "../../../schemas/access.avsc}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: %s/veil_forget.so\n"
                 "  - use: context\n"
                 "    with: {catalog: ../../../config/demo/items.csv, %s}\n"
                 "%s"
                 "keys: {ephemeral: true}\n",
                 FORGET_DIR, with, h_after);
        memset(h, 0, sizeof(*h));
        char *dirs[] = {VEIL_PLUGIN_DIR_BUILD};
        if (veil_config_parse(&h->cfg,
                              VEIL_SRCDIR "/plugins/context/tests/t.yaml",
                              yaml, strlen(yaml), err, sizeof(err)) ||
            veil_keys_load(h->cfg, &h->kr, err, sizeof(err)))
                fail_msg("%s", err);
        struct veil_pipeline_opts o = {dirs, 1, h->kr, 0};
        if (veil_pipeline_new(&h->p, h->cfg, &o, err, sizeof(err)))
                fail_msg("%s", err);
        veil_pipeline_set_sink(h->p, (struct veil_sink){sink, h});
}

static void h_close(struct harness *h) {
        veil_pipeline_destroy(h->p);
        veil_keyring_destroy(h->kr);
        veil_config_destroy(h->cfg);
}

struct spec {
        const char *user, *item, *session, *type;
        int64_t ts_s;
        veil_tier_t tier;
};

/* A batch whose clock is now_ms (0: the wall clock, as the host's). */
static struct veil_batch *h_run_at(struct harness *h, const struct spec *sp,
                                   size_t n, int64_t now_ms) {
        struct veil_batch *b = veil_pipeline_batch_begin(h->p);
        if (now_ms)
                b->now_ms = now_ms;
        char id[32];
        for (size_t i = 0; i < n; i++) {
                struct veil_event ev = {0};
                snprintf(id, sizeof(id), "e%ld", ++h->seq);
                ev.event_id = id;
                ev.user_id = sp[i].user;
                ev.item_id = sp[i].item;
                ev.type = sp[i].type ? sp[i].type : "view";
                ev.ts_ms = sp[i].ts_s * 1000;
                ev.ctx.session_id = sp[i].session;
                ev.tier = sp[i].tier;
                ev.training = h->training;
                ev.gpc = -1;
                assert_int_equal(veil_pipeline_batch_add_event(h->p, &ev), 1);
        }
        char err[512];
        assert_int_equal(veil_pipeline_batch_run(h->p, err, sizeof(err)), 0);
        return b;
}

static struct veil_batch *h_run(struct harness *h, const struct spec *sp,
                                size_t n) {
        return h_run_at(h, sp, n, 0);
}

static const struct veil_context_info *info(const struct veil_event *ev) {
        const struct veil_context_info *i = ev->user;
        assert_non_null(i);
        assert_int_equal(i->magic, VEIL_CONTEXT_INFO_MAGIC);
        return i;
}

/* The id of the feature of `kind` on the event, or UINT32_MAX. */
static uint32_t feature(const struct veil_event *ev, int kind) {
        const struct veil_context_info *i = info(ev);
        for (size_t k = 0; k < ev->n_features; k++)
                if (i->kinds[k] == kind)
                        return ev->features[k];
        return UINT32_MAX;
}

#define P VEIL_TIER_PERSONALIZED
#define C VEIL_TIER_CONTEXTUAL

static void test_sessions(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "session_gap_s: 600, profile_items: 3");
        const uint32_t S = 16384;
        /* One visit of three events, a new session id, then a long gap. */
        struct spec a[] = {
                {"customer-17850", "85123A", "s1", NULL, 1000000, P},
                {"customer-17850", "71053", "s1", NULL, 1000005, P},
                {"customer-17850", "84406B", "s1", NULL, 1000100, P},
                {"customer-17850", "22752", "s2", NULL, 1000200, P},
                {"customer-17850", "21730", "s2", NULL, 1000200 + 601, P},
        };
        struct veil_batch *b = h_run(&h, a, 5);
        const char *pos[] = {"1", "2", "3", "1", "1"};
        for (int i = 0; i < 5; i++)
                assert_int_equal(feature(&b->events[i],
                                         VEIL_CTX_SESSION_POSITION),
                                 expect_id(S, "session_position", pos[i]));
        /* Time since the previous event only inside a session. */
        assert_int_equal(feature(&b->events[0], VEIL_CTX_SINCE_PREVIOUS),
                         UINT32_MAX);
        assert_int_equal(feature(&b->events[1], VEIL_CTX_SINCE_PREVIOUS),
                         expect_id(S, "since_previous", "0-10s"));
        assert_int_equal(feature(&b->events[2], VEIL_CTX_SINCE_PREVIOUS),
                         expect_id(S, "since_previous", "1-5m"));
        assert_int_equal(feature(&b->events[4], VEIL_CTX_SINCE_PREVIOUS),
                         UINT32_MAX);
        /* Recent items: before this event, newest first, at most L = 3;
         * the previous event's features travel with them. */
        assert_int_equal(b->events[0].n_recent, 0);
        assert_int_equal(info(&b->events[0])->n_prev, 0);
        const struct veil_event *e4 = &b->events[4];
        assert_int_equal(e4->n_recent, 3);
        assert_string_equal(e4->recent_items[0], "22752");
        assert_string_equal(e4->recent_items[1], "84406B");
        assert_string_equal(e4->recent_items[2], "71053");
        const struct veil_context_info *i4 = info(e4);
        assert_int_equal(i4->n_prev, b->events[3].n_features);
        assert_memory_equal(i4->prev_features, b->events[3].features,
                            i4->n_prev * sizeof(uint32_t));
        /* An event without an item moves no item into the list, so not
         * the features either: they stay those of the newest item's
         * event, the one recent_items[0] came from. */
        struct spec v[] = {{"customer-17850", NULL, "s2", NULL, 1000900, P},
                           {"customer-17850", "85099B", "s2", NULL, 1000905,
                            P}};
        uint32_t f4[VEIL_CTX_MAX_FEATURES];
        size_t n4 = b->events[4].n_features;
        memcpy(f4, b->events[4].features, n4 * sizeof(uint32_t));
        b = h_run(&h, v, 2);
        const struct veil_context_info *iv = info(&b->events[1]);
        assert_string_equal(b->events[1].recent_items[0], "21730");
        assert_int_equal(iv->n_prev, n4);
        assert_memory_equal(iv->prev_features, f4, n4 * sizeof(uint32_t));
        /* Subjects are pseudonyms: the profile never sees the raw id. */
        assert_non_null(b->events[0].subject);
        assert_null(strstr(b->events[0].subject, "17850"));

        /* Contextual: nothing kept, nothing handed over, no session. */
        struct spec c[] = {{"u2", "85123A", "s9", NULL, 2000000, C},
                           {"u2", "71053", "s9", NULL, 2000001, C}};
        b = h_run(&h, c, 2);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(b->events[i].n_recent, 0);
                assert_int_equal(info(&b->events[i])->n_prev, 0);
                assert_int_equal(feature(&b->events[i],
                                         VEIL_CTX_SESSION_POSITION),
                                 UINT32_MAX);
                assert_int_equal(info(&b->events[i])->tier, C);
        }
        /* none: no personal processing at all. */
        struct spec n[] = {{"u3", "85123A", "s9", NULL, 2000000,
                            VEIL_TIER_NONE}};
        b = h_run(&h, n, 1);
        assert_int_equal(b->events[0].n_features, 0);
        assert_int_equal(info(&b->events[0])->tier, VEIL_TIER_NONE);
        /* Undecided: default_tier (contextual here). */
        struct spec u[] = {{"u4", "85123A", "s9", NULL, 2000000,
                            VEIL_TIER_UNDECIDED},
                           {"u4", "71053", "s9", NULL, 2000001,
                            VEIL_TIER_UNDECIDED}};
        b = h_run(&h, u, 2);
        assert_int_equal(info(&b->events[1])->tier, C);
        assert_int_equal(b->events[1].n_recent, 0);
        /* An empty user id is nobody: personalized or not, these three
         * visitors must not share one profile (the keyring gives "" no
         * subject, and the raw id is never the key under keys). */
        struct spec anon[] = {{"", "85123A", "a1", NULL, 3000000, P},
                              {"", "71053", "a2", NULL, 3000001, P},
                              {"", "84406B", "a3", NULL, 3000002, P}};
        b = h_run(&h, anon, 3);
        for (int i = 0; i < 3; i++) {
                assert_null(b->events[i].subject);
                assert_int_equal(b->events[i].n_recent, 0);
                assert_int_equal(info(&b->events[i])->tier, P);
        }
        h_close(&h);
}

/* A second key, k2, in the harness's keyring (not active): its file is
 * path, in the new directory dir (a mkdtemp template). */
static void add_k2(struct harness *h, char *dir, char *path) {
        char err[512];
        assert_non_null(mkdtemp(dir));
        snprintf(path, 64, "%s/k2", dir);
        assert_int_equal(veil_keyring_keygen(path, err, sizeof(err)), 0);
        assert_int_equal(
                veil_keyring_add_file(h->kr, "k2", path, err, sizeof(err)), 0);
}

/* The host gives a run of one user's events the pseudonym of the first
 * (no second HMAC): each must still be the keyed hash under the key
 * active when the event was added, also across a rotation inside the
 * batch. Runs interleaved with another user keep their own profiles. */
static void test_subject_runs(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized");
        char dir[] = "/tmp/veil-test-keys-XXXXXX", path[64], err[512];
        add_k2(&h, dir, path);
        const char *first = veil_keyring_active_id(h.kr);
        assert_string_equal(first, "eph");
        static const struct {
                const char *user, *item;
                int rotate; /* make k2 active before this event */
        } ev_spec[] = {{"alice", "85123A", 0}, {"alice", "71053", 0},
                       {"bob", "84406B", 0},   {"alice", "22752", 0},
                       {"alice", "21730", 1},  {"alice", "85123A", 0},
                       {"bob", "71053", 0}};
        size_t n = sizeof(ev_spec) / sizeof(*ev_spec);
        const char *key_of[16];
        struct veil_batch *b = veil_pipeline_batch_begin(h.p);
        for (size_t i = 0; i < n; i++) {
                if (ev_spec[i].rotate)
                        assert_int_equal(veil_keyring_set_active(
                                                 h.kr, "k2", err, sizeof(err)),
                                         0);
                key_of[i] = veil_keyring_active_id(h.kr);
                struct veil_event ev = {0};
                char id[16];
                snprintf(id, sizeof(id), "r%zu", i);
                ev.event_id = id;
                ev.user_id = ev_spec[i].user;
                ev.item_id = ev_spec[i].item;
                ev.type = "view";
                ev.ts_ms = 1000000 + (int64_t)i;
                ev.tier = P;
                ev.gpc = -1;
                assert_int_equal(veil_pipeline_batch_add_event(h.p, &ev), 1);
        }
        assert_int_equal(veil_pipeline_batch_run(h.p, err, sizeof(err)), 0);
        for (size_t i = 0; i < n; i++) {
                char want[VEIL_PSEUDONYM_MAX];
                const char *u = ev_spec[i].user;
                assert_true(veil_keyring_pseudonym_key(h.kr, key_of[i],
                                                       "subject", u,
                                                       strlen(u), want,
                                                       sizeof(want)) > 0);
                assert_string_equal(b->events[i].subject, want);
        }
        assert_string_not_equal(b->events[3].subject, b->events[4].subject);
        /* Profiles follow the users through the interleaving (and the
         * new pseudonym starts a new one). */
        assert_int_equal(b->events[2].n_recent, 0);
        assert_int_equal(b->events[3].n_recent, 2);
        assert_string_equal(b->events[3].recent_items[0], "71053");
        assert_string_equal(b->events[3].recent_items[1], "85123A");
        assert_int_equal(b->events[4].n_recent, 0);
        assert_int_equal(b->events[5].n_recent, 1);
        assert_string_equal(b->events[5].recent_items[0], "21730");
        assert_int_equal(b->events[6].n_recent, 0);
        h_close(&h);
        unlink(path);
        rmdir(dir);
}

static void test_contextual_attrs(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: contextual");
        struct veil_batch *b = veil_pipeline_batch_begin(h.p);
        struct veil_kv attrs[] = {{"session_position", "7"},
                                  {"since_previous_s", "30"}};
        struct veil_event ev = {0};
        ev.event_id = "x1";
        ev.user_id = "u9";
        ev.item_id = "85123A";
        ev.type = "view";
        ev.gpc = -1;
        ev.ctx.attrs = attrs;
        ev.ctx.n_attrs = 2;
        assert_int_equal(veil_pipeline_batch_add_event(h.p, &ev), 1);
        char err[256];
        assert_int_equal(veil_pipeline_batch_run(h.p, err, sizeof(err)), 0);
        assert_int_equal(feature(&b->events[0], VEIL_CTX_SESSION_POSITION),
                         expect_id(16384, "session_position", "6-10"));
        assert_int_equal(feature(&b->events[0], VEIL_CTX_SINCE_PREVIOUS),
                         expect_id(16384, "since_previous", "10-60s"));
        h_close(&h);
}

/* An idle instance runs no batch to expire profiles: its checkpoint and
 * an access export must still not hold one past the TTL (they did, and a
 * restore brought it back). */
static void test_idle_ttl(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized, profile_ttl_s: 1");
        struct spec a[] = {{"alice", "85123A", "s1", NULL, 100, P},
                           {"alice", "71053", "s1", NULL, 101, P}};
        h_run(&h, a, 2);
        const struct veil_plugin *def = veil_pipeline_stage_plugin(h.p, 1);
        void *state = veil_pipeline_stage_state(h.p, 1);
        void *data = NULL;
        size_t len = 0;
        assert_int_equal(def->checkpoint(state, &data, &len), 0);
        assert_non_null(memmem(data, len, "85123A", 6)); /* still fresh */
        free(data);
        usleep(1300 * 1000); /* idle past the TTL */
        assert_int_equal(def->checkpoint(state, &data, &len), 0);
        assert_null(memmem(data, len, "85123A", 6));
        free(data);
        h_close(&h);
        /* An export between batches finds nothing either. */
        h_open(&h, "default_tier: personalized, profile_ttl_s: 1");
        h_run(&h, a, 2);
        def = veil_pipeline_stage_plugin(h.p, 1);
        state = veil_pipeline_stage_state(h.p, 1);
        char pseudo[VEIL_PSEUDONYM_MAX];
        assert_true(veil_keyring_pseudonym(h.kr, "subject", "alice", 5,
                                           pseudo, sizeof(pseudo)) > 0);
        struct veil_subject subj = {.raw_id = "alice", .pseudonym = pseudo};
        struct veil_codec *ac = veil_pipeline_output_codec(h.p, "access");
        for (int idle = 0; idle < 2; idle++) {
                if (idle)
                        usleep(1300 * 1000);
                veil_rec_t *r = veil_codec_rec_begin(ac);
                veil_rec_t *sec = veil_rec_map_add(r, "sections", "context");
                assert_non_null(sec);
                assert_int_equal(def->export_subject(state, &subj, sec), 0);
                assert_int_equal(veil_rec_map_size(sec, "") > 0, !idle);
        }
        h_close(&h);
}

/* After a key rotation a person has a profile under each key: an access
 * export reports both (the older one overwrote the newer); and dp_model's
 * section after it the steps they joined under each, the older key's
 * named by it. Keyed by the subject, never the raw id. */
static void test_export_after_rotation(void **st) {
        (void)st;
        char acc[] = "/tmp/veil-test-acc-XXXXXX", yaml[1024];
        assert_non_null(mkdtemp(acc));
        snprintf(yaml, sizeof(yaml),
                 "  - use: dp_model\n"
                 "    with: {catalog: ../../../config/demo/items.csv, dim: 8,"
                 " mechanism: gaussian, noise_multiplier: 2,"
                 " max_contributions: 4, step_size: 1000,"
                 " step_interval_s: 0, delta: 1e-6, epsilon_budget: 0,"
                 " accountant_file: %s/acc}\n",
                 acc);
        h_after = yaml;
        struct harness h;
        h_open(&h, "default_tier: personalized");
        h_after = "";
        h.training = 1;
        char dir[] = "/tmp/veil-test-keys-XXXXXX", path[64], err[512];
        add_k2(&h, dir, path);
        struct spec a[] = {{"alice", "85123A", "s1", NULL, 100, P}};
        h_run(&h, a, 1);
        assert_int_equal(veil_keyring_set_active(h.kr, "k2", err, sizeof(err)),
                         0);
        struct spec b[] = {{"alice", "71053", "s2", NULL, 200, P}};
        h_run(&h, b, 1);
        struct spec ex[] = {{"alice", "x", NULL, "export", 300, P}};
        h_run(&h, ex, 1);
        h_run(&h, NULL, 0);
        assert_int_equal(h.n_access, 1);
        fprintf(stderr, "# %s\n", h.access);
        assert_non_null(strstr(h.access, "\"recent_items\": \"71053@200000"));
        assert_non_null(strstr(h.access, "\"recent_items (under key eph)\": "
                                         "\"85123A@100000"));
        assert_non_null(strstr(h.access, "\"steps_joined_this_window\": \"1\""));
        assert_non_null(strstr(h.access, "\"steps_joined_this_window (under "
                                         "key eph)\": \"1\""));
        assert_null(strstr(h.access, "alice"));
        h_close(&h);
        unlink(path);
        rmdir(dir);
        snprintf(path, sizeof(path), "%s/acc", acc);
        unlink(path);
        snprintf(path, sizeof(path), "%s/acc.lock", acc);
        unlink(path);
        rmdir(acc);
}

/* A request whose raw id is another person's pseudonym (pseudonyms are
 * the keys of output records: anyone can read one) finds nothing of that
 * person: with keys, profiles are looked up by the requester's pseudonym
 * alone. Context exported alice's items to such a requester and its
 * forget wiped her profile. (dp_model's erase of a held example made the
 * same lookup; checked by reading.) */
static void test_request_by_pseudonym(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized");
        char pa[VEIL_PSEUDONYM_MAX];
        assert_true(veil_keyring_pseudonym(h.kr, "subject", "alice", 5, pa,
                                           sizeof(pa)) > 0);
        struct spec a[] = {{"alice", "85123A", "s1", NULL, 100, P},
                           {"alice", "71053", "s1", NULL, 101, P}};
        h_run(&h, a, 2);
        struct spec ex[] = {{pa, "x", NULL, "export", 102, P}};
        h_run(&h, ex, 1);
        h_run(&h, NULL, 0);
        assert_int_equal(h.n_access, 1);
        fprintf(stderr, "# %s\n", h.access);
        assert_null(strstr(h.access, "85123A"));
        struct spec f[] = {{pa, "x", NULL, "forget", 103, P}};
        h_run(&h, f, 1);
        /* alice's own request still finds her profile, and her next
         * event her items. */
        struct spec ex2[] = {{"alice", "x", NULL, "export", 104, P}};
        h_run(&h, ex2, 1);
        h_run(&h, NULL, 0);
        assert_int_equal(h.n_access, 2);
        assert_non_null(strstr(h.access, "71053@101000 85123A@100000"));
        struct spec a2[] = {{"alice", "84406B", "s1", NULL, 105, P}};
        struct veil_batch *b = h_run(&h, a2, 1);
        assert_int_equal(b->events[0].n_recent, 2);
        h_close(&h);
}

static void test_erase_export_cap(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized, max_profiles: 3");
        struct spec a[] = {{"alice", "85123A", "s1", NULL, 100, P},
                           {"alice", "71053", "s1", NULL, 101, P}};
        h_run(&h, a, 2);
        /* An access request: the context section lists alice's items. */
        struct spec ex[] = {{"alice", "x", NULL, "export", 102, P}};
        h_run(&h, ex, 1);
        h_run(&h, NULL, 0); /* exports are answered before the next batch */
        assert_int_equal(h.n_access, 1);
        assert_non_null(strstr(h.access, "\"context\""));
        assert_non_null(strstr(h.access, "71053@101000 85123A@100000"));
        assert_null(strstr(h.access, "alice"));
        /* Erased: the next event starts from nothing. */
        struct spec f[] = {{"alice", "x", NULL, "forget", 103, P}};
        h_run(&h, f, 1);
        struct spec a2[] = {{"alice", "84406B", "s1", NULL, 104, P}};
        struct veil_batch *b = h_run(&h, a2, 1);
        assert_int_equal(b->events[0].n_recent, 0);
        assert_int_equal(feature(&b->events[0], VEIL_CTX_SESSION_POSITION),
                         expect_id(16384, "session_position", "1"));
        h_run(&h, ex, 1);
        h_run(&h, NULL, 0);
        assert_int_equal(h.n_access, 2);
        assert_null(strstr(h.access, "85123A"));
        /* The cap: a fourth person replaces the least recently used. */
        struct spec more[] = {{"bob", "85123A", "s", NULL, 200, P},
                              {"carol", "85123A", "s", NULL, 201, P},
                              {"dave", "85123A", "s", NULL, 202, P},
                              {"bob", "71053", "s", NULL, 203, P},
                              {"alice", "71053", "s1", NULL, 204, P}};
        b = h_run(&h, more, 5);
        assert_int_equal(b->events[3].n_recent, 1); /* bob kept */
        assert_int_equal(b->events[4].n_recent, 0); /* alice was the LRU */
        /* Counted: dave replaced alice, alice then carol. */
        double v = -1, profiles = -1;
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(h.p, 1); j++) {
                double x;
                const char *name = veil_pipeline_stage_gauge(h.p, 1, j, &x);
                if (!strcmp(name, "profiles_evicted"))
                        v = x;
                if (!strcmp(name, "profiles"))
                        profiles = x;
        }
        assert_true(v == 2);
        assert_true(profiles == 3);
        h_close(&h);
}

/* A reload between a request and the batch that applies it: the new
 * pipeline takes the requests over with the state (they were dropped with
 * the old pipeline, and the person's profile went on in the new one). */
static void test_requests_survive_reload(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized");
        struct spec a[] = {{"alice", "85123A", "s1", NULL, 100, P},
                           {"bob", "71053", "s2", NULL, 101, P}};
        h_run(&h, a, 2);
        struct spec req[] = {{"alice", "x", NULL, "export", 102, P},
                             {"bob", "x", NULL, "forget", 102, P}};
        h_run(&h, req, 2);
        assert_int_equal(h.n_access, 0); /* queued for the next batch */

        /* A reload that fails after the transfer (its side inputs could
         * not be opened): the running pipeline takes the requests back. */
        struct veil_pipeline *np = NULL;
        char err[1024];
        char *dirs[] = {VEIL_PLUGIN_DIR_BUILD};
        struct veil_pipeline_opts o = {dirs, 1, h.kr, 0};
        if (veil_pipeline_new(&np, h.cfg, &o, err, sizeof(err)) ||
            veil_pipeline_transfer(np, h.p, err, sizeof(err)))
                fail_msg("%s", err);
        veil_pipeline_take_requests(h.p, np);
        veil_pipeline_destroy(np);

        /* The reload, as the host makes it (core/kafka.c, reload()). */
        if (veil_pipeline_new(&np, h.cfg, &o, err, sizeof(err)) ||
            veil_pipeline_transfer(np, h.p, err, sizeof(err)))
                fail_msg("%s", err);
        veil_pipeline_destroy(h.p);
        h.p = np;
        veil_pipeline_set_sink(h.p, (struct veil_sink){sink, &h});

        h_run(&h, NULL, 0);
        assert_int_equal(h.n_access, 1);
        assert_non_null(strstr(h.access, "85123A@100000"));
        struct spec b2[] = {{"bob", "84406B", "s2", NULL, 103, P},
                            {"alice", "84406B", "s1", NULL, 103, P}};
        struct veil_batch *b = h_run(&h, b2, 2);
        assert_int_equal(b->events[0].n_recent, 0); /* bob was erased */
        assert_int_equal(b->events[1].n_recent, 1); /* alice was not */
        h_close(&h);
}

/* The history through the host: the items of earlier visits with their
 * visit counts, never the current visit's; how many recent items are of
 * this visit; the export lists it and forget deletes it. */
static const struct veil_context_info *hist_of(const struct veil_event *ev,
                                                const char *item,
                                                uint32_t *visits) {
        const struct veil_context_info *i = info(ev);
        *visits = 0;
        for (size_t k = 0; k < i->n_history; k++)
                if (!strcmp(i->history[k], item))
                        *visits = i->history_visits[k];
        return i;
}

static void test_history(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized, session_gap_s: 600, "
                   "history_items: 4");
        struct spec a[] = {
                {"ann", "85123A", "s1", NULL, 1000, P},
                {"ann", "71053", "s1", NULL, 1001, P},
                {"ann", "85123A", "s1", NULL, 1002, P},
                {"ann", "84406B", "s2", NULL, 5000, P}, /* visit 2 */
                {"ann", "22752", "s2", NULL, 5001, P},
                {"ann", "85123A", "s3", NULL, 9000, P}, /* visit 3 */
                {"ann", "21730", "s3", NULL, 9001, P},
                {"bob", "85123A", "s1", NULL, 1000, C},
                {"bob", "71053", "s2", NULL, 5000, C},
                /* An event out of time order stays in its visit. */
                {"cat", "85123A", "s1", NULL, 1000, P},
                {"cat", "71053", "s1", NULL, 1001, P},
                {"cat", "84406B", "s1", NULL, 990, P},
                {"cat", "22752", "s1", NULL, 1002, P},
                {"cat", "21730", "s2", NULL, 5000, P},
        };
        struct veil_batch *b = h_run(&h, a, 14);
        uint32_t v;
        /* Visit 1: nothing earlier. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(info(&b->events[i])->n_history, 0);
        assert_int_equal(info(&b->events[2])->n_visit, 2);
        /* Visit 2 begins: visit 1's two items, once each (85123A was in
         * it twice), and no recent item is of this visit. */
        const struct veil_context_info *i3 = hist_of(&b->events[3],
                                                     "85123A", &v);
        assert_int_equal(i3->n_history, 2);
        assert_int_equal(v, 1);
        assert_int_equal(i3->n_visit, 0);
        /* Its second event: 84406B is of this visit, not handed. */
        const struct veil_context_info *i4 = hist_of(&b->events[4],
                                                     "84406B", &v);
        assert_int_equal(i4->n_history, 2);
        assert_int_equal(v, 0);
        assert_int_equal(i4->n_visit, 1);
        /* Visit 3: 85123A is in it now, so not handed; the rest are. */
        const struct veil_context_info *i6 = hist_of(&b->events[6],
                                                     "85123A", &v);
        assert_int_equal(v, 0);
        assert_int_equal(i6->n_history, 3);
        hist_of(&b->events[6], "22752", &v);
        assert_int_equal(v, 1);
        /* Contextual: nothing. */
        assert_int_equal(info(&b->events[8])->n_history, 0);
        /* cat's visit 1, late event and all: no history, every recent
         * item of this visit; visit 2 has the three, once each. */
        assert_int_equal(info(&b->events[12])->n_history, 0);
        assert_int_equal(info(&b->events[12])->n_visit, 3);
        const struct veil_context_info *i13 = hist_of(&b->events[13],
                                                      "84406B", &v);
        assert_int_equal(v, 1);
        assert_int_equal(i13->n_history, 4);
        assert_int_equal(i13->n_visit, 0);
        /* Visit 4: 85123A was in two visits. */
        struct spec a4[] = {{"ann", "22633", "s4", NULL, 13000, P}};
        b = h_run(&h, a4, 1);
        hist_of(&b->events[0], "85123A", &v);
        assert_int_equal(v, 2);
        assert_int_equal(info(&b->events[0])->n_history, 4);
        /* The export lists the history; forget deletes it. (On a clock
         * of these events' times, as a replay's: by the wall clock they
         * are decades past the TTL, and an export leaves them out.) */
        struct spec ex[] = {{"ann", "x", NULL, "export", 13001, P}};
        h_run_at(&h, ex, 1, 13001000);
        h_run_at(&h, NULL, 0, 13001000);
        assert_int_equal(h.n_access, 1);
        assert_non_null(strstr(h.access, "85123A@9000000 (visits: 2)"));
        assert_non_null(strstr(h.access, "\"visits\": \"4\""));
        /* A withdrawal of training alone leaves the profile: it serves
         * personalization. */
        struct spec ft[] = {{"ann", "x", NULL, "forget_training", 13002, P}};
        h_run(&h, ft, 1);
        b = h_run(&h, a4, 1);
        /* (three: 22633 is of this visit now, so not handed) */
        assert_int_equal(info(&b->events[0])->n_history, 3);
        struct spec f[] = {{"ann", "x", NULL, "forget", 13002, P}};
        h_run(&h, f, 1);
        b = h_run(&h, a4, 1);
        assert_int_equal(info(&b->events[0])->n_history, 0);
        h_close(&h);
        /* The history reaches back profile_ttl_s in event time: an item
         * last seen longer ago is not handed, nor kept. */
        h_open(&h, "default_tier: personalized, session_gap_s: 600, "
                   "history_items: 4, profile_ttl_s: 3600");
        struct spec d[] = {
                {"dan", "85123A", "s1", NULL, 1000, P},
                {"dan", "71053", "s2", NULL, 1000 + 1800, P},
                {"dan", "84406B", "s3", NULL, 1000 + 1800 + 3601, P},
        };
        b = h_run(&h, d, 3);
        hist_of(&b->events[1], "85123A", &v);
        assert_int_equal(v, 1);
        const struct veil_context_info *i2 = hist_of(&b->events[2],
                                                     "71053", &v);
        assert_int_equal(v, 0);
        assert_int_equal(i2->n_history, 0);
        /* An event stamped far ahead of the batch's clock (year 9999)
         * counts as stamped at the clock: it does not age the history out
         * (its time less the TTL was the cutoff), and its item ages as
         * any other. */
        int64_t t = (int64_t)time(NULL);
        struct spec fut[] = {
                {"eve", "85123A", "s1", NULL, t - 600, P},
                {"eve", "71053", "s2", NULL, t - 300, P},
                {"eve", "84406B", "s3", NULL, 253402300000, P},
                /* at the clock too: a minute ahead of it. (t + 1 was
                 * behind the clock when a second ticked over between
                 * time() and the batch, under load: then late, before
                 * the year-9999 event, and its history lacked that.) */
                {"eve", "22752", "s4", NULL, t + 60, P},
        };
        b = h_run(&h, fut, 4);
        assert_int_equal(info(&b->events[2])->n_history, 2);
        const struct veil_context_info *i4f = hist_of(&b->events[3],
                                                      "84406B", &v);
        assert_int_equal(v, 1);
        assert_int_equal(i4f->n_history, 3);
        h_close(&h);
}

/* An event that arrives late (stamped before the visit's last one) stays
 * in the visit in progress, whatever its session id, and the next event's gap is measured from the
 * visit's latest time: the late event's older time used to become the
 * visit's end, so the next event, 700 s after it but 200 s after the
 * visit's latest, began a new visit and the visit in progress was handed
 * on as earlier visits. Nor does an event late by more than the gap begin
 * a visit (it began two: its own and, again, the next event's). */
static void test_late_event(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized, session_gap_s: 600, "
                   "history_items: 8");
        const uint32_t S = 16384;
        struct spec a[] = {
                {"ann", "85123A", "s1", NULL, 10000, P},
                {"ann", "71053", "s1", NULL, 10500, P},
                {"ann", "84406B", "s1", NULL, 10000, P}, /* late */
                {"ann", "22752", "s1", NULL, 10700, P},
        };
        struct veil_batch *b = h_run(&h, a, 4);
        const struct veil_event *e3 = &b->events[3];
        assert_int_equal(feature(e3, VEIL_CTX_SESSION_POSITION),
                         expect_id(S, "session_position", "4-5"));
        assert_int_equal(feature(e3, VEIL_CTX_SINCE_PREVIOUS),
                         expect_id(S, "since_previous", "1-5m"));
        assert_int_equal(info(e3)->n_visit, 3);
        assert_int_equal(info(e3)->n_history, 0);
        /* Late by more than the gap: still this visit, and so is the
         * event after it. */
        struct spec c[] = {
                {"cy", "85123A", "s1", NULL, 10000, P},
                {"cy", "71053", "s1", NULL, 20000, P}, /* visit 2 */
                {"cy", "84406B", "s1", NULL, 10100, P}, /* late */
                {"cy", "22752", "s1", NULL, 20100, P},
        };
        b = h_run(&h, c, 4);
        assert_int_equal(feature(&b->events[2], VEIL_CTX_SESSION_POSITION),
                         expect_id(S, "session_position", "2"));
        assert_int_equal(feature(&b->events[3], VEIL_CTX_SESSION_POSITION),
                         expect_id(S, "session_position", "3"));
        uint32_t v;
        hist_of(&b->events[3], "85123A", &v);
        assert_int_equal(v, 1);
        assert_int_equal(info(&b->events[3])->n_history, 1);
        assert_int_equal(info(&b->events[3])->n_visit, 2);
        /* A late event of another session (an earlier visit's, buffered)
         * joins the visit in progress: no new visit, and the next event
         * of this session is still in it. */
        struct spec d[] = {
                {"dee", "85123A", "s1", NULL, 10000, P},
                {"dee", "71053", "s2", NULL, 20000, P}, /* visit 2 */
                {"dee", "84406B", "s1", NULL, 10100, P}, /* late, s1 */
                {"dee", "22752", "s2", NULL, 20100, P},
        };
        b = h_run(&h, d, 4);
        assert_int_equal(feature(&b->events[3], VEIL_CTX_SESSION_POSITION),
                         expect_id(S, "session_position", "3"));
        assert_int_equal(info(&b->events[3])->n_visit, 2);
        assert_int_equal(info(&b->events[3])->n_history, 1);
        h_close(&h);
}

/* The context stage's checkpoint, as the host takes it. */
static void h_checkpoint(struct harness *h, void **data, size_t *len) {
        const struct veil_plugin *def = veil_pipeline_stage_plugin(h->p, 1);
        assert_int_equal(def->checkpoint(veil_pipeline_stage_state(h->p, 1),
                                         data, len),
                         0);
}

/* Restores the context stage from a checkpoint, as the host does. */
static void h_restore(struct harness *h, const void *data, size_t len) {
        const struct veil_plugin *def = veil_pipeline_stage_plugin(h->p, 1);
        char err[256];
        if (def->restore(veil_pipeline_stage_state(h->p, 1), data, len, err,
                         sizeof(err)))
                fail_msg("%s", err);
}

/* A history item not seen for the TTL is dropped on the person's next
 * event; one who comes back no more kept it until the whole profile
 * expired, a TTL after their last event, and a checkpoint, a restore and
 * an access export held it until then: almost twice the TTL, against the
 * notice's "an item you have not chosen for N days is dropped". */
static void test_history_ttl(void **st) {
        (void)st;
        const char *with = "default_tier: personalized, session_gap_s: 600, "
                           "history_items: 4, profile_items: 1, "
                           "profile_ttl_s: 3600";
        struct harness h, h2;
        h_open(&h, with);
        /* The batch 700 s ago: 85123A was then 3000 s old (kept), now it
         * is 3700 s old; 71053 is 800 s old. */
        int64_t t0 = (int64_t)time(NULL) - 700;
        struct spec a[] = {{"ann", "85123A", "s1", NULL, t0 - 3000, P},
                           {"ann", "71053", "s2", NULL, t0 - 100, P}};
        h_run_at(&h, a, 2, t0 * 1000);
        void *then = NULL, *data = NULL;
        size_t then_len = 0, len = 0;
        h_checkpoint(&h, &then, &then_len);
        assert_non_null(memmem(then, then_len, "85123A", 6));
        /* Now (a batch of someone else's, or none at all): an export,
         * then a checkpoint. */
        struct spec ex[] = {{"ann", "x", NULL, "export", t0 + 700, P}};
        h_run(&h, ex, 1);
        h_run(&h, NULL, 0);
        assert_int_equal(h.n_access, 1);
        assert_null(strstr(h.access, "85123A"));
        assert_non_null(strstr(h.access, "71053@"));
        h_open(&h2, with);
        h_run_at(&h2, a, 2, t0 * 1000);
        h_run(&h2, NULL, 0);
        h_checkpoint(&h2, &data, &len);
        assert_null(memmem(data, len, "85123A", 6));
        assert_non_null(memmem(data, len, "71053", 5));
        free(data);
        h_close(&h2);
        /* The checkpoint of 700 s ago, restored now (over the profile, in
         * the same keyring): without the item, so ann's next event, even
         * one stamped a little back, does not get it from her earlier
         * visits. */
        h_restore(&h, then, then_len);
        free(then);
        struct spec next[] = {{"ann", "84406B", "s3", NULL, t0 - 50, P}};
        struct veil_batch *b = h_run(&h, next, 1);
        uint32_t v;
        hist_of(&b->events[0], "85123A", &v);
        assert_int_equal(v, 0);
        hist_of(&b->events[0], "71053", &v);
        assert_int_equal(v, 1);
        h_close(&h);
}

/* The stage's gauge `name`. */
static double h_gauge(struct harness *h, const char *name) {
        for (size_t j = 0; j < veil_pipeline_stage_n_gauges(h->p, 1); j++) {
                double x;
                if (!strcmp(veil_pipeline_stage_gauge(h->p, 1, j, &x), name))
                        return x;
        }
        fail_msg("no gauge %s", name);
        return -1;
}

/* Last uses are stamped with the batches' clock (the wall clock live).
 * After it stepped back, bob, used since, has an earlier stamp than
 * alice, used before: expiry walked from the least recently used (alice),
 * stopped at her as fresh, and bob, past his TTL, went into checkpoints
 * and came back from them for as long as the step. */
static void test_clock_step_back(void **st) {
        (void)st;
        const char *with = "default_tier: personalized, profile_ttl_s: 86400";
        struct harness h, h2;
        h_open(&h, with);
        int64_t w = (int64_t)time(NULL);
        struct spec al[] = {{"alice", "85123A", "s1", NULL, w, P}};
        struct spec bo[] = {{"bob", "71053", "s1", NULL, w - 2 * 86400, P}};
        h_run_at(&h, al, 1, (w + 3600) * 1000); /* a clock running fast */
        h_run_at(&h, bo, 1, (w - 2 * 86400) * 1000); /* set back, too far */
        void *then = NULL, *data = NULL;
        size_t then_len = 0, len = 0;
        h_checkpoint(&h, &then, &then_len);
        assert_non_null(memmem(then, then_len, "71053", 5));
        h_run(&h, NULL, 0); /* now: bob's last use is two days old */
        h_checkpoint(&h, &data, &len);
        assert_null(memmem(data, len, "71053", 5));
        assert_non_null(memmem(data, len, "85123A", 6));
        free(data);
        h_close(&h);
        /* The checkpoint of then, restored now: alice alone. */
        h_open(&h2, with);
        h_restore(&h2, then, then_len);
        free(then);
        h_run(&h2, NULL, 0);
        assert_true(h_gauge(&h2, "profiles") == 1);
        h_close(&h2);
}

/* An access export reports all the profile keeps: besides the items,
 * the previous event's features (kind=value where the value can be told
 * back from its id, kind=#id where only the id is kept) and the hash of
 * the session id, also after a checkpoint and a restore. They were kept
 * and checkpointed but not reported. */
static void test_export_whole_profile(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: personalized");
        /* 2024-01-15T20:30:00Z, a Monday. */
        struct veil_event ev = {0};
        ev.event_id = "w1";
        ev.user_id = "ann";
        ev.item_id = "85123A";
        ev.type = "Purchase";
        ev.ts_ms = 1705350600000LL;
        ev.ctx.session_id = "s1";
        ev.ctx.device = "phone";
        ev.ctx.country = "FR";
        ev.ctx.geohash = "u09tvw0f";
        ev.tier = P;
        ev.gpc = -1;
        veil_pipeline_batch_begin(h.p);
        assert_int_equal(veil_pipeline_batch_add_event(h.p, &ev), 1);
        char err[256];
        assert_int_equal(veil_pipeline_batch_run(h.p, err, sizeof(err)), 0);
        char want[512];
        snprintf(want, sizeof(want),
                 "\"previous_event_features\": \"hour=20, weekday=1, "
                 "device=mobile, country=#%u, geohash=#%u, "
                 "session_position=1, type=purchase, item=85123A, "
                 "category=",
                 expect_id(16384, "country", "FR"),
                 expect_id(16384, "geohash", "u09t"));
        uint64_t sh = 0xcbf29ce484222325ULL;
        for (const char *c = "s1"; *c; c++)
                sh = (sh ^ (unsigned char)*c) * 0x100000001b3ULL;
        char want_session[64];
        snprintf(want_session, sizeof(want_session),
                 "\"session_id_hash\": \"%016llx\"", (unsigned long long)sh);
        struct spec ex[] = {{"ann", "x", NULL, "export", 1705350601, P}};
        for (int restored = 0; restored < 2; restored++) {
                if (restored) {
                        void *data = NULL;
                        size_t len = 0;
                        h_checkpoint(&h, &data, &len);
                        h_restore(&h, data, len);
                        free(data);
                }
                h_run(&h, ex, 1);
                h_run(&h, NULL, 0);
                assert_int_equal(h.n_access, 1 + restored);
                fprintf(stderr, "# %s\n", h.access);
                assert_non_null(strstr(h.access, want));
                assert_non_null(strstr(h.access, "price_band="));
                assert_non_null(strstr(h.access, want_session));
                assert_non_null(strstr(h.access, "\"visits\": \"1\""));
                assert_non_null(
                        strstr(h.access, "\"items_this_visit\": \"1\""));
        }
        h_close(&h);
}

/* The hour and weekday of an event in its time zone, through the stage:
 * in 2040 Paris keeps summer time (the zone file lists changes to 2037,
 * its footer the rule after), and a zone the stage does not know is
 * counted in the gauge timezone_unknown (its hour is UTC's). */
static void test_event_timezone(void **st) {
        (void)st;
        struct harness h;
        h_open(&h, "default_tier: contextual");
        static const char *const zones[] = {"Europe/Paris", "Mars/Olympus",
                                            "Australia/Sydney"};
        /* 2040-07-01T12:00Z (a Sunday), 2040-01-01T00:00Z (a Sunday). */
        static const int64_t ts[] = {2224756800000LL, 2224756800000LL,
                                     2208988800000LL};
        struct veil_batch *b = veil_pipeline_batch_begin(h.p);
        for (int i = 0; i < 3; i++) {
                struct veil_event ev = {0};
                char id[16];
                snprintf(id, sizeof(id), "z%d", i);
                ev.event_id = id;
                ev.user_id = "ann";
                ev.item_id = "85123A";
                ev.type = "view";
                ev.ts_ms = ts[i];
                ev.ctx.timezone = zones[i];
                ev.gpc = -1;
                assert_int_equal(veil_pipeline_batch_add_event(h.p, &ev), 1);
        }
        char err[256];
        assert_int_equal(veil_pipeline_batch_run(h.p, err, sizeof(err)), 0);
        assert_int_equal(feature(&b->events[0], VEIL_CTX_HOUR),
                         expect_id(16384, "hour", "14"));
        assert_int_equal(feature(&b->events[1], VEIL_CTX_HOUR),
                         expect_id(16384, "hour", "12"));
        assert_int_equal(feature(&b->events[2], VEIL_CTX_HOUR),
                         expect_id(16384, "hour", "11"));
        assert_true(h_gauge(&h, "timezone_unknown") == 1);
        h_close(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_feature_ids),
                cmocka_unit_test(test_normalization),
                cmocka_unit_test(test_timezones),
                cmocka_unit_test(test_tz_footer),
                cmocka_unit_test(test_catalog),
                cmocka_unit_test(test_catalog_refused),
                cmocka_unit_test(test_catalog_phrases),
                cmocka_unit_test(test_profile_bounds),
                cmocka_unit_test(test_profile_history),
                cmocka_unit_test(test_profile_stress),
                cmocka_unit_test(test_profile_checkpoint),
                cmocka_unit_test(test_sessions),
                cmocka_unit_test(test_subject_runs),
                cmocka_unit_test(test_contextual_attrs),
                cmocka_unit_test(test_erase_export_cap),
                cmocka_unit_test(test_requests_survive_reload),
                cmocka_unit_test(test_request_by_pseudonym),
                cmocka_unit_test(test_idle_ttl),
                cmocka_unit_test(test_export_after_rotation),
                cmocka_unit_test(test_history),
                cmocka_unit_test(test_late_event),
                cmocka_unit_test(test_history_ttl),
                cmocka_unit_test(test_clock_step_back),
                cmocka_unit_test(test_export_whole_profile),
                cmocka_unit_test(test_event_timezone),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

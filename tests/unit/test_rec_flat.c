/*
 * test_rec_flat.c — output records of flat schemas live in slots of their
 * own (core/recflat.c), not in Avro-C values: every veil_rec_* call must
 * do the same on both. Random sequences of calls (good and bad paths,
 * every setter and getter, element handles) run on two codecs of one
 * schema, one of them forced to Avro-C values; every return code, every
 * value read and the encoded bytes (or the error naming the unset field)
 * must be equal. The one difference, by design: a field without default
 * that a record never set (test_unset_refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"

#ifndef VEIL_SRCDIR
#define VEIL_SRCDIR "."
#endif

/* config.c has the real one when the test links the whole core. */
__attribute__((weak)) char *veil_config_path(const struct veil_config *cfg,
                                             const char *p) {
        (void)cfg;
        return strdup(p);
}

/* Every kind a flat schema may hold, with and without defaults. */
static const char *schema_text =
        "{\"type\": \"record\", \"name\": \"Flat\", \"namespace\": \"t\","
        " \"fields\": ["
        "  {\"name\": \"n\", \"type\": \"null\"},"
        "  {\"name\": \"b\", \"type\": \"boolean\", \"default\": true},"
        "  {\"name\": \"i\", \"type\": \"int\", \"default\": 7},"
        "  {\"name\": \"l\", \"type\": \"long\"},"
        "  {\"name\": \"f\", \"type\": \"float\", \"default\": 1.5},"
        "  {\"name\": \"d\", \"type\": \"double\"},"
        "  {\"name\": \"s\", \"type\": \"string\"},"
        "  {\"name\": \"sd\", \"type\": \"string\", \"default\": \"x\"},"
        "  {\"name\": \"e\", \"type\": {\"type\": \"enum\", \"name\": \"E\","
        "   \"symbols\": [\"A\", \"B\", \"C\"]}, \"default\": \"B\"},"
        "  {\"name\": \"e2\", \"type\": \"E\"},"
        "  {\"name\": \"us\", \"type\": [\"null\", \"string\"],"
        "   \"default\": null},"
        "  {\"name\": \"un\", \"type\": [\"null\", \"int\", \"double\"]},"
        "  {\"name\": \"ub\", \"type\": [\"boolean\", \"float\", \"E\"]},"
        "  {\"name\": \"inner\", \"type\": {\"type\": \"record\","
        "   \"name\": \"In\", \"fields\": ["
        "    {\"name\": \"a\", \"type\": \"string\", \"default\": \"\"},"
        "    {\"name\": \"c\", \"type\": \"int\"}]}},"
        "  {\"name\": \"items\", \"default\": [], \"type\": {\"type\":"
        "   \"array\", \"items\": {\"type\": \"record\", \"name\": \"It\","
        "   \"fields\": ["
        "    {\"name\": \"id\", \"type\": \"string\"},"
        "    {\"name\": \"score\", \"type\": \"double\", \"default\": 0},"
        "    {\"name\": \"tag\", \"type\": [\"null\", \"string\"],"
        "     \"default\": null},"
        "    {\"name\": \"deep\", \"type\": \"In\"}]}}},"
        "  {\"name\": \"more\", \"type\": {\"type\": \"array\", \"items\":"
        "   {\"type\": \"record\", \"name\": \"M\", \"fields\": ["
        "    {\"name\": \"x\", \"type\": \"long\"}]}}}"
        " ]}";

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint32_t)(rng % n);
}

/* schema_text in a new file named after the template path. */
static void schema_file(char *path) {
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, schema_text, strlen(schema_text)),
                         (ssize_t)strlen(schema_text));
        close(fd);
}

static struct veil_codec *codec_of(const char *path, int flat) {
        struct veil_codec *c = NULL;
        char err[512] = "";
        if (veil_codec_new_file(&c, path, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err)))
                fail_msg("%s: %s", path, err);
        veil_codec_set_flat(c, flat);
        return c;
}

static const char *const paths[] = {
        "", "n", "b", "i", "l", "f", "d", "s", "sd", "e", "e2", "us", "un",
        "ub", "inner", "inner.a", "inner.c", "inner.nope", "inner.", ".s",
        "s.", "a..b", "nope", "items", "more", "items.id", "id", "score",
        "tag", "deep", "deep.a", "deep.c", "x", "e.x", "n.x"};
static const char *const strs[] = {"", "A", "B", "C", "D", "hello",
                                   "ünïcode ✓", "x"};
static const int64_t longs[] = {0, 1, -1, 7, 2147483647LL, 2147483648LL,
                                -2147483648LL, -2147483649LL,
                                INT64_MAX, INT64_MIN};
static const double dbls[] = {0.0, -0.0, 1.25, -3.5e300, 1e-320, 0.1};

struct pair {
        veil_rec_t *a, *b;
};

/* One random call on both; everything it returns must agree. */
static void step(struct pair *h, size_t *nh, size_t cap) {
        struct pair p = h[rnd((uint32_t)*nh)];
        /* a path in a buffer of its own now and then (not a literal) */
        char buf[64];
        const char *path = paths[rnd(sizeof(paths) / sizeof(*paths))];
        if (rnd(4) == 0) {
                snprintf(buf, sizeof(buf), "%s", path);
                path = buf;
        }
        int ra, rb;
        switch (rnd(15)) {
        case 0: {
                const char *s = rnd(10) ? strs[rnd(8)] : NULL;
                ra = veil_rec_set_str(p.a, path, s);
                rb = veil_rec_set_str(p.b, path, s);
                assert_int_equal(ra, rb);
                break;
        }
        case 1: {
                int64_t v = longs[rnd(10)];
                assert_int_equal(veil_rec_set_long(p.a, path, v),
                                 veil_rec_set_long(p.b, path, v));
                break;
        }
        case 2: {
                double v = dbls[rnd(6)];
                assert_int_equal(veil_rec_set_double(p.a, path, v),
                                 veil_rec_set_double(p.b, path, v));
                break;
        }
        case 3: {
                int v = (int)rnd(3);
                assert_int_equal(veil_rec_set_bool(p.a, path, v),
                                 veil_rec_set_bool(p.b, path, v));
                break;
        }
        case 4:
                assert_int_equal(veil_rec_set_null(p.a, path),
                                 veil_rec_set_null(p.b, path));
                break;
        case 5: {
                veil_rec_t *x = veil_rec_append(p.a, path);
                veil_rec_t *y = veil_rec_append(p.b, path);
                assert_int_equal(x != NULL, y != NULL);
                if (x && *nh < cap)
                        h[(*nh)++] = (struct pair){x, y};
                break;
        }
        case 6: {
                const char *sa = NULL, *sb = NULL;
                size_t la = 99, lb = 99;
                ra = veil_rec_get_str(p.a, path, &sa, &la);
                rb = veil_rec_get_str(p.b, path, &sb, &lb);
                assert_int_equal(ra, rb);
                if (!ra) {
                        assert_int_equal(la, lb);
                        assert_memory_equal(sa, sb, la);
                        /* as C strings too: a string never set in this
                         * record reads "", not what was in its buffer */
                        assert_string_equal(sa, sb);
                }
                break;
        }
        case 7: {
                int64_t va = 5, vb = 5;
                assert_int_equal(veil_rec_get_long(p.a, path, &va),
                                 veil_rec_get_long(p.b, path, &vb));
                assert_true(va == vb);
                break;
        }
        case 8: {
                double va = 5, vb = 5;
                assert_int_equal(veil_rec_get_double(p.a, path, &va),
                                 veil_rec_get_double(p.b, path, &vb));
                assert_memory_equal(&va, &vb, sizeof(va));
                break;
        }
        case 9: {
                int va = 5, vb = 5;
                assert_int_equal(veil_rec_get_bool(p.a, path, &va),
                                 veil_rec_get_bool(p.b, path, &vb));
                assert_int_equal(va, vb);
                break;
        }
        case 10:
                assert_int_equal(veil_rec_array_size(p.a, path),
                                 veil_rec_array_size(p.b, path));
                break;
        case 11: {
                size_t i = rnd(4);
                const veil_rec_t *x = veil_rec_array_at(p.a, path, i);
                const veil_rec_t *y = veil_rec_array_at(p.b, path, i);
                assert_int_equal(x != NULL, y != NULL);
                if (x && *nh < cap)
                        h[(*nh)++] = (struct pair){(veil_rec_t *)x,
                                                   (veil_rec_t *)y};
                break;
        }
        case 12:
                assert_int_equal(veil_rec_map_size(p.a, path),
                                 veil_rec_map_size(p.b, path));
                assert_int_equal(veil_rec_map_at(p.a, path, 0, NULL, NULL),
                                 veil_rec_map_at(p.b, path, 0, NULL, NULL));
                break;
        case 13:
                assert_int_equal(veil_rec_map_put(p.a, path, "k", "v"),
                                 veil_rec_map_put(p.b, path, "k", "v"));
                assert_int_equal(veil_rec_set_bytes(p.a, path, "ab", 2),
                                 veil_rec_set_bytes(p.b, path, "ab", 2));
                assert_int_equal(veil_rec_map_add(p.a, path, "k") != NULL,
                                 veil_rec_map_add(p.b, path, "k") != NULL);
                break;
        default: /* set the fields encoding needs, so most records encode */
                veil_rec_set_str(p.a, "s", "need");
                veil_rec_set_str(p.b, "s", "need");
                veil_rec_set_long(p.a, "un", 3);
                veil_rec_set_long(p.b, "un", 3);
                veil_rec_set_bool(p.a, "ub", 1);
                veil_rec_set_bool(p.b, "ub", 1);
                veil_rec_set_str(p.a, "id", "it");
                veil_rec_set_str(p.b, "id", "it");
        }
}

/* A record built by the same calls on both; `first`: the codecs' first
 * record. */
static void compare(struct veil_codec *a, struct veil_codec *b, int ops,
                    int first) {
        struct pair h[64];
        size_t nh = 1;
        h[0] = (struct pair){veil_codec_rec_begin(a), veil_codec_rec_begin(b)};
        assert_non_null(h[0].a);
        assert_non_null(h[0].b);
        for (int k = 0; k < ops; k++)
                step(h, &nh, 64);
        /* Strings without default set before encoding: Avro-C encodes a
         * string never set in a fresh value as "" (in a reset one as never
         * set); slots refuse it, as veil_codec_rec_encode promises
         * (test_unset_refused). */
        if (!first || rnd(2)) {
                for (int w = 0; w < 2; w++) {
                        veil_rec_t *r = w ? h[0].b : h[0].a;
                        veil_rec_set_str(r, "s", "end");
                        for (size_t i = 0; i < veil_rec_array_size(r, "items");
                             i++)
                                veil_rec_set_str(
                                        (veil_rec_t *)veil_rec_array_at(
                                                r, "items", i),
                                        "id", "end");
                }
        } else {
                /* Left as set, or set to "" where they read "": Avro-C
                 * reads "" where it was never set. */
                const char *x;
                if (veil_rec_get_str(h[0].b, "s", &x, NULL) || !*x)
                        veil_rec_set_str(h[0].a, "s", ""),
                                veil_rec_set_str(h[0].b, "s", "");
                for (size_t i = 0; i < veil_rec_array_size(h[0].a, "items");
                     i++) {
                        veil_rec_t *ea = (veil_rec_t *)veil_rec_array_at(
                                h[0].a, "items", i);
                        veil_rec_t *eb = (veil_rec_t *)veil_rec_array_at(
                                h[0].b, "items", i);
                        if (veil_rec_get_str(eb, "id", &x, NULL) || !*x)
                                veil_rec_set_str(ea, "id", ""),
                                        veil_rec_set_str(eb, "id", "");
                }
        }
        struct veil_buf ba = {0}, bb = {0};
        char ea[256] = "", eb[256] = "";
        int ra = veil_codec_rec_encode(a, &ba, ea, sizeof(ea));
        int rb = veil_codec_rec_encode(b, &bb, eb, sizeof(eb));
        assert_int_equal(ra, rb);
        assert_string_equal(ea, eb);
        if (!ra) {
                assert_int_equal(ba.len, bb.len);
                assert_memory_equal(ba.data, bb.data, ba.len);
        }
        veil_buf_free(&ba);
        veil_buf_free(&bb);
}

static void test_random_calls_agree(void **state) {
        (void)state;
        char path[] = "/tmp/test_rec_flat_XXXXXX";
        schema_file(path);
        int encoded = 0, records = 0, later[2] = {0, 0};
        for (int trial = 0; trial < 2000; trial++) {
                /* Four records on every fifth codec pair: a record
                 * after another must not read or write what the previous
                 * one set (Avro-C's reset keeps a union's branch). */
                struct veil_codec *a = codec_of(path, 1),
                                  *b = codec_of(path, 0);
                for (int rec = 0; rec < (trial % 5 ? 1 : 4); rec++) {
                        compare(a, b, 1 + (int)rnd(40), rec == 0);
                        struct veil_buf x = {0};
                        int ok = veil_codec_rec_encode(a, &x, NULL, 0) == 0;
                        encoded += ok;
                        records++;
                        if (rec)
                                later[ok]++;
                        veil_buf_free(&x);
                }
                veil_codec_destroy(a);
                veil_codec_destroy(b);
        }
        /* Both outcomes were met, also by records after another: records
         * that encode, and records that name a field never set. */
        assert_true(encoded > 100 && encoded < records);
        assert_true(later[0] > 50 && later[1] > 50);
        unlink(path);
}

/* Where slots differ from Avro-C values, by design: a string without
 * default that the record never set is refused by name, also in a fresh
 * record or element (Avro-C writes "" for a string never set in a fresh
 * value). */
static void test_unset_refused(void **state) {
        (void)state;
        char path[] = "/tmp/test_rec_flat_XXXXXX";
        schema_file(path);
        struct veil_codec *c = codec_of(path, 1);
        struct veil_buf b = {0};
        char err[256] = "";
        veil_rec_t *r = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_long(r, "un", 1), 0);
        assert_int_equal(veil_rec_set_bool(r, "ub", 1), 0);
        assert_int_equal(veil_codec_rec_encode(c, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "field s was not set"));
        assert_int_equal(veil_rec_set_str(r, "s", ""), 0);
        veil_rec_t *it = veil_rec_append(r, "items");
        assert_non_null(it);
        assert_int_equal(veil_codec_rec_encode(c, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "field items[0].id was not set"));
        assert_int_equal(veil_rec_set_str(it, "id", "x"), 0);
        assert_int_equal(veil_codec_rec_encode(c, &b, err, sizeof(err)), 0);
        /* The next record starts from the defaults: no branch of un. */
        r = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(r, "s", "y"), 0);
        assert_int_equal(veil_rec_get_long(r, "un", NULL), -VEIL_ENOENT);
        assert_int_equal(veil_codec_rec_encode(c, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "field un was not set"));
        veil_buf_free(&b);
        veil_codec_destroy(c);
        unlink(path);
}

/* A record after another, on both representations: what the first set
 * and the second did not is never set in the second. It reads as absent
 * (a union) or "" (a string), and the record is refused naming it; once
 * set, both write the same bytes, none of them the first record's. Avro-C
 * keeps a union's branch through its reset, and a string's text in its
 * buffer: the codec must not take either for the second record's. */
static void test_next_record_agrees(void **state) {
        (void)state;
        char path[] = "/tmp/test_rec_flat_XXXXXX";
        schema_file(path);
        static const char *const unset[] = {"s", "un", "ub"};
        struct veil_buf out[2] = {{0}, {0}};
        for (int flat = 0; flat < 2; flat++) {
                struct veil_codec *c = codec_of(path, flat);
                struct veil_buf *b = &out[flat];
                char err[256] = "";
                veil_rec_t *r = veil_codec_rec_begin(c);
                assert_int_equal(veil_rec_set_long(r, "un", 5), 0);
                assert_int_equal(veil_rec_set_bool(r, "ub", 1), 0);
                assert_int_equal(veil_rec_set_str(r, "s", "alice"), 0);
                assert_int_equal(veil_rec_set_str(r, "us", "alice-us"), 0);
                veil_rec_t *it = veil_rec_append(r, "items");
                assert_non_null(it);
                assert_int_equal(veil_rec_set_str(it, "id", "alice-id"), 0);
                assert_int_equal(veil_codec_rec_encode(c, b, err, sizeof(err)),
                                 0);

                r = veil_codec_rec_begin(c);
                const char *s = NULL;
                size_t n = 99;
                assert_int_equal(veil_rec_get_long(r, "un", NULL),
                                 -VEIL_ENOENT);
                assert_int_equal(veil_rec_get_bool(r, "ub", NULL),
                                 -VEIL_ENOENT);
                assert_int_equal(veil_rec_get_str(r, "us", &s, NULL),
                                 -VEIL_ENOENT);
                assert_int_equal(veil_rec_get_str(r, "s", &s, &n), 0);
                assert_string_equal(s, "");
                assert_int_equal(n, 0);
                assert_int_equal(veil_rec_array_size(r, "items"), 0);
                for (size_t k = 0; k < 3; k++) {
                        char want[64];
                        snprintf(want, sizeof(want), "field %s was not set",
                                 unset[k]);
                        assert_int_equal(
                                veil_codec_rec_encode(c, b, err, sizeof(err)),
                                -VEIL_EINVAL);
                        if (!strstr(err, want))
                                fail_msg("flat %d: want \"%s\", got \"%s\"",
                                         flat, want, err);
                        assert_int_equal(b->len, 0);
                        if (k == 0)
                                assert_int_equal(
                                        veil_rec_set_str(r, "s", "bob"), 0);
                        else if (k == 1)
                                assert_int_equal(veil_rec_set_null(r, "un"),
                                                 0);
                        else
                                assert_int_equal(
                                        veil_rec_set_double(r, "ub", 0.5), 0);
                }
                assert_int_equal(veil_codec_rec_encode(c, b, err, sizeof(err)),
                                 0);
                for (size_t i = 0; i + 5 <= b->len; i++)
                        assert_memory_not_equal(b->data + i, "alice", 5);
                veil_codec_destroy(c);
        }
        assert_int_equal(out[0].len, out[1].len);
        assert_memory_equal(out[0].data, out[1].data, out[0].len);
        veil_buf_free(&out[0]);
        veil_buf_free(&out[1]);
        unlink(path);
}

/* A string that is not UTF-8 is refused on the way out, by both
 * representations alike, and the message does not carry it. */
static void test_not_utf8_refused(void **state) {
        (void)state;
        char path[] = "/tmp/test_rec_flat_XXXXXX";
        schema_file(path);
        static const char *const bad[] = {
                "caf\xc3",             /* cut inside a character */
                "\xff",                /* never in UTF-8 */
                "\xc0\xaf",           /* an overlong '/' */
                "\xed\xa0\x80",      /* a surrogate */
                "\xf4\x90\x80\x80", /* above U+10FFFF */
        };
        static const char *const good[] = {"", "caf\xc3\xa9", "\xe2\x82\xac",
                                           "\xf0\x9f\x8e\x84"};
        for (int flat = 0; flat < 2; flat++) {
                struct veil_codec *c = codec_of(path, flat);
                struct veil_buf b = {0};
                char err[256];
                for (size_t k = 0; k < 5 + 4; k++) {
                        const char *v = k < 5 ? bad[k] : good[k - 5];
                        veil_rec_t *r = veil_codec_rec_begin(c);
                        assert_int_equal(veil_rec_set_long(r, "un", 1), 0);
                        assert_int_equal(veil_rec_set_bool(r, "ub", 1), 0);
                        assert_int_equal(veil_rec_set_str(r, "s", v), 0);
                        err[0] = '\0';
                        int rc = veil_codec_rec_encode(c, &b, err,
                                                       sizeof(err));
                        if (k >= 5) {
                                if (rc)
                                        fail_msg("flat %d, good %zu: %s",
                                                 flat, k - 5, err);
                                continue;
                        }
                        if (rc != -VEIL_EINVAL)
                                fail_msg("flat %d, bad %zu: rc %d", flat, k,
                                         rc);
                        assert_non_null(strstr(err, "not valid UTF-8"));
                        assert_null(strstr(err, v));
                }
                veil_buf_free(&b);
                veil_codec_destroy(c);
        }
        unlink(path);
}

/* The bundled recommendation schema, as dp_model fills it. */
static void test_recommendation_agrees(void **state) {
        (void)state;
        const char *path = VEIL_SRCDIR "/schemas/recommendation.avsc";
        struct veil_codec *a = codec_of(path, 1), *b = codec_of(path, 0);
        for (int rec = 0; rec < 50; rec++) {
                veil_rec_t *r[2] = {veil_codec_rec_begin(a),
                                    veil_codec_rec_begin(b)};
                for (int w = 0; w < 2; w++) {
                        veil_rec_set_str(r[w], "subject", "k1.AbC");
                        veil_rec_set_str(r[w], "event_id", "e1");
                        for (int i = 0; i < rec % 12; i++) {
                                veil_rec_t *it = veil_rec_append(r[w], "items");
                                assert_non_null(it);
                                char id[16];
                                snprintf(id, sizeof(id), "item%d", i * rec);
                                veil_rec_set_str(it, "item_id", id);
                                veil_rec_set_double(it, "score",
                                                    1.0 / (i + 1));
                        }
                        veil_rec_set_str(r[w], "tier", "contextual");
                        if (rec % 3)
                                veil_rec_set_str(r[w], "explanation", "why");
                        veil_rec_set_long(r[w], "model_version", rec);
                        if (rec % 2)
                                veil_rec_set_double(r[w], "epsilon_spent",
                                                    0.5 * rec);
                        else
                                veil_rec_set_null(r[w], "epsilon_spent");
                        veil_rec_set_double(r[w], "delta", 1e-8);
                        if (rec % 5)
                                veil_rec_set_long(r[w], "ts", 1700000000000);
                }
                struct veil_buf x = {0}, y = {0};
                char ex[256] = "", ey[256] = "";
                int rx = veil_codec_rec_encode(a, &x, ex, sizeof(ex));
                assert_int_equal(rx, veil_codec_rec_encode(b, &y, ey,
                                                           sizeof(ey)));
                assert_string_equal(ex, ey);
                assert_int_equal(x.len, y.len);
                if (x.len)
                        assert_memory_equal(x.data, y.data, x.len);
                veil_buf_free(&x);
                veil_buf_free(&y);
        }
        veil_codec_destroy(a);
        veil_codec_destroy(b);
}

/* A path is first looked for by its address: a literal's text cannot
 * change, a buffer's can. The same writable address (static, heap, stack)
 * with a new text must name the new field, the literals still theirs. */
static char wpath[16];

static void test_path_text_changes(void **state) {
        (void)state;
        const char *path = VEIL_SRCDIR "/schemas/recommendation.avsc";
        struct veil_codec *c = codec_of(path, 1);
        char *heap = malloc(16), stack[16];
        char *bufs[] = {wpath, heap, stack};
        const char *s = NULL;
        for (int round = 0; round < 3; round++) {
                veil_rec_t *r = veil_codec_rec_begin(c);
                for (size_t k = 0; k < 3; k++) {
                        char *w = bufs[k];
                        /* Twice each: the second call finds it cached. */
                        for (int twice = 0; twice < 2; twice++) {
                                strcpy(w, "subject");
                                assert_int_equal(
                                        veil_rec_set_str(r, w, "s1"), 0);
                                strcpy(w, "tier");
                                assert_int_equal(
                                        veil_rec_set_str(r, w, "t1"), 0);
                                strcpy(w, "ts");
                                assert_int_equal(veil_rec_set_long(r, w, 5),
                                                 0);
                                strcpy(w, "nope");
                                assert_int_equal(veil_rec_set_long(r, w, 6),
                                                 -VEIL_ENOENT);
                                strcpy(w, "tier");
                                assert_int_equal(veil_rec_get_str(r, w, &s,
                                                                  NULL),
                                                 0);
                                assert_string_equal(s, "t1");
                                strcpy(w, "items");
                                veil_rec_t *it = veil_rec_append(r, w);
                                assert_non_null(it);
                                strcpy(w, "item_id");
                                assert_int_equal(
                                        veil_rec_set_str(it, w, "i1"), 0);
                                strcpy(w, "score");
                                assert_int_equal(
                                        veil_rec_set_double(it, w, 0.5), 0);
                        }
                        /* The literals name their own fields still. */
                        assert_int_equal(veil_rec_set_str(r, "tier", "t2"),
                                         0);
                        assert_int_equal(veil_rec_get_str(r, "subject", &s,
                                                          NULL),
                                         0);
                        assert_string_equal(s, "s1");
                        assert_int_equal(veil_rec_get_str(r, "tier", &s,
                                                          NULL),
                                         0);
                        assert_string_equal(s, "t2");
                        int64_t ts = 0;
                        assert_int_equal(veil_rec_get_long(r, "ts", &ts), 0);
                        assert_int_equal(ts, 5);
                        assert_int_equal(veil_rec_get_long(r, "nope", &ts),
                                         -VEIL_ENOENT);
                }
                assert_int_equal(veil_rec_array_size(r, "items"), 6);
                const veil_rec_t *it = veil_rec_array_at(r, "items", 5);
                assert_non_null(it);
                assert_int_equal(veil_rec_get_str(it, "item_id", &s, NULL), 0);
                assert_string_equal(s, "i1");
        }
        free(heap);
        veil_codec_destroy(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_random_calls_agree),
                cmocka_unit_test(test_unset_refused),
                cmocka_unit_test(test_next_record_agrees),
                cmocka_unit_test(test_not_utf8_refused),
                cmocka_unit_test(test_recommendation_agrees),
                cmocka_unit_test(test_path_text_changes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

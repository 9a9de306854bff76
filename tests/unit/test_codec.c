/*
 * test_codec.c — the Avro codec: schemas, events, records, evolution,
 * framing, hostile input and the veil_rec_* SDK accessors.
 *
 * Avro-C's own generic writer is used as the independent implementation:
 * our encoder must produce its bytes, and our decoder must read what it
 * writes, old schema versions included.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "codec.h"
#include "config.h"

#ifndef VEIL_SRCDIR
#define VEIL_SRCDIR "."
#endif
#define SCHEMA(n) VEIL_SRCDIR "/schemas/" n
#define DATA(n) VEIL_SRCDIR "/tests/unit/data/codec/" n

/* config.c provides the real one; this lets the test link without it. */
__attribute__((weak)) char *veil_config_path(const struct veil_config *cfg,
                                             const char *p) {
        if (p[0] == '/' || !cfg || !cfg->dir)
                return strdup(p);
        size_t n = strlen(cfg->dir) + strlen(p) + 2;
        char *s = malloc(n);
        if (s)
                snprintf(s, n, "%s/%s", cfg->dir, p);
        return s;
}

static const char *const SECRET = "alice-secret-id";

static struct veil_codec *codec_or_die(const char *path,
                                       enum veil_framing framing, int32_t id) {
        struct veil_codec *c = NULL;
        char err[512] = "";
        int rc = veil_codec_new_file(&c, path, framing, id, err, sizeof(err));
        if (rc)
                fail_msg("veil_codec_new_file(%s): %d %s", path, rc, err);
        return c;
}

static struct veil_kv the_attrs[] = {{"page", "home"}, {"arm", "b"}};

static void full_event(struct veil_event *ev) {
        memset(ev, 0, sizeof(*ev));
        ev->event_id = "6f1c2d1e-0000-4000-8000-000000000001";
        ev->user_id = SECRET;
        ev->ts_ms = 1717000000123;
        ev->type = "purchase";
        ev->item_id = "sku-42";
        ev->value = 2.5;
        ev->tc_string = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA";
        ev->gpc = 1;
        ev->ctx.device = "mobile";
        ev->ctx.ip = "203.0.113.7";
        ev->ctx.user_agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0";
        ev->ctx.has_geo = 1;
        ev->ctx.lat = 48.8566;
        ev->ctx.lon = 2.3522;
        ev->ctx.geohash = "u09tv";
        ev->ctx.country = "FR";
        ev->ctx.session_id = "sess-9";
        ev->ctx.timezone = "Europe/Paris";
        ev->ctx.attrs = the_attrs;
        ev->ctx.n_attrs = 2;
}

static void min_event(struct veil_event *ev) {
        memset(ev, 0, sizeof(*ev));
        ev->event_id = "e2";
        ev->user_id = "bob";
        ev->ts_ms = -5; /* before the epoch: zigzag must survive it */
        ev->type = "view";
        ev->item_id = "";
        ev->gpc = -1;
}

static void assert_str_same(const char *a, const char *b) {
        if (!a || !b)
                assert_ptr_equal(a, b);
        else
                assert_string_equal(a, b);
}

static void assert_events_equal(const struct veil_event *a,
                                const struct veil_event *b) {
        assert_str_same(a->event_id, b->event_id);
        assert_str_same(a->user_id, b->user_id);
        assert_int_equal(a->ts_ms, b->ts_ms);
        assert_str_same(a->type, b->type);
        assert_str_same(a->item_id, b->item_id);
        assert_true(a->value == b->value);
        assert_str_same(a->tc_string, b->tc_string);
        assert_int_equal(a->gpc, b->gpc);
        assert_str_same(a->ctx.device, b->ctx.device);
        assert_str_same(a->ctx.ip, b->ctx.ip);
        assert_str_same(a->ctx.user_agent, b->ctx.user_agent);
        assert_int_equal(a->ctx.has_geo, b->ctx.has_geo);
        if (a->ctx.has_geo) {
                assert_true(a->ctx.lat == b->ctx.lat);
                assert_true(a->ctx.lon == b->ctx.lon);
        }
        assert_str_same(a->ctx.geohash, b->ctx.geohash);
        assert_str_same(a->ctx.country, b->ctx.country);
        assert_str_same(a->ctx.session_id, b->ctx.session_id);
        assert_str_same(a->ctx.timezone, b->ctx.timezone);
        assert_int_equal(a->ctx.n_attrs, b->ctx.n_attrs);
        for (size_t i = 0; i < a->ctx.n_attrs; i++) {
                assert_string_equal(a->ctx.attrs[i].key, b->ctx.attrs[i].key);
                assert_string_equal(a->ctx.attrs[i].value,
                                    b->ctx.attrs[i].value);
        }
}

/* ---- Avro-C as the independent writer -------------------------------- */

static avro_schema_t avroc_schema(const char *path) {
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        static char text[65536];
        size_t n = fread(text, 1, sizeof(text), f);
        fclose(f);
        avro_schema_t s;
        assert_int_equal(avro_schema_from_json_length(text, n, &s), 0);
        return s;
}

static void set_opt_str(avro_value_t *rec, const char *name, const char *s) {
        avro_value_t f, b;
        assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
        assert_int_equal(avro_value_set_branch(&f, s ? 1 : 0, &b), 0);
        assert_int_equal(s ? avro_value_set_string(&b, s) : avro_value_set_null(&b),
                         0);
}

static void set_opt_double(avro_value_t *rec, const char *name, int has,
                           double d) {
        avro_value_t f, b;
        assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
        assert_int_equal(avro_value_set_branch(&f, has ? 1 : 0, &b), 0);
        assert_int_equal(has ? avro_value_set_double(&b, d) : avro_value_set_null(&b),
                         0);
}

static void set_str(avro_value_t *rec, const char *name, const char *s) {
        avro_value_t f;
        assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
        assert_int_equal(avro_value_set_string(&f, s), 0);
}

/* Writes ev with Avro-C's generic writer under the schema at path; v0 is
 * the old interaction schema (int value, a referrer, no gpc/geohash/tz). */
static size_t avroc_event(const char *path, const struct veil_event *ev,
                          int v0, char *out, size_t cap) {
        avro_schema_t s = avroc_schema(path);
        avro_value_iface_t *cls = avro_generic_class_from_schema(s);
        avro_value_t v, f, ctx;
        assert_int_equal(avro_generic_value_new(cls, &v), 0);
        set_str(&v, "event_id", ev->event_id);
        set_str(&v, "user_id", ev->user_id);
        set_str(&v, "type", ev->type);
        set_str(&v, "item_id", ev->item_id);
        assert_int_equal(avro_value_get_by_name(&v, "ts", &f, NULL), 0);
        assert_int_equal(avro_value_set_long(&f, ev->ts_ms), 0);
        assert_int_equal(avro_value_get_by_name(&v, "value", &f, NULL), 0);
        assert_int_equal(v0 ? avro_value_set_int(&f, (int32_t)ev->value)
                            : avro_value_set_double(&f, ev->value),
                         0);
        set_opt_str(&v, "tc_string", ev->tc_string);
        if (v0) {
                set_opt_str(&v, "referrer", "https://example.org/");
        } else {
                avro_value_t b;
                assert_int_equal(avro_value_get_by_name(&v, "gpc", &f, NULL), 0);
                assert_int_equal(avro_value_set_branch(&f, ev->gpc >= 0, &b), 0);
                assert_int_equal(ev->gpc >= 0 ? avro_value_set_boolean(&b, ev->gpc)
                                              : avro_value_set_null(&b),
                                 0);
        }
        assert_int_equal(avro_value_get_by_name(&v, "context", &ctx, NULL), 0);
        set_opt_str(&ctx, "device", ev->ctx.device);
        set_opt_str(&ctx, "ip", ev->ctx.ip);
        set_opt_str(&ctx, "user_agent", ev->ctx.user_agent);
        set_opt_double(&ctx, "lat", ev->ctx.has_geo, ev->ctx.lat);
        set_opt_double(&ctx, "lon", ev->ctx.has_geo, ev->ctx.lon);
        set_opt_str(&ctx, "country", ev->ctx.country);
        set_opt_str(&ctx, "session_id", ev->ctx.session_id);
        if (!v0) {
                set_opt_str(&ctx, "geohash", ev->ctx.geohash);
                set_opt_str(&ctx, "timezone", ev->ctx.timezone);
        }
        assert_int_equal(avro_value_get_by_name(&ctx, "attrs", &f, NULL), 0);
        for (size_t i = 0; i < ev->ctx.n_attrs; i++) {
                avro_value_t e;
                assert_int_equal(avro_value_add(&f, ev->ctx.attrs[i].key, &e,
                                                NULL, NULL),
                                 0);
                assert_int_equal(avro_value_set_string(&e, ev->ctx.attrs[i].value),
                                 0);
        }
        avro_writer_t w = avro_writer_memory(out, (int64_t)cap);
        assert_int_equal(avro_value_write(w, &v), 0);
        size_t n = (size_t)avro_writer_tell(w);
        avro_writer_free(w);
        avro_value_decref(&v);
        avro_value_iface_decref(cls);
        avro_schema_decref(s);
        return n;
}

/* ---- schemas ---------------------------------------------------------- */

static void test_schemas_load(void **state) {
        (void)state;
        static const char *const all[] = {
                SCHEMA("interaction.avsc"),    SCHEMA("consent.avsc"),
                SCHEMA("recommendation.avsc"), SCHEMA("model_update.avsc"),
                SCHEMA("audit.avsc"),          SCHEMA("access.avsc"),
                DATA("kitchen.avsc"),          DATA("interaction_v0.avsc")};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
                struct veil_codec *c = NULL;
                char err[512] = "";
                int rc = veil_codec_new_file(&c, all[i], VEIL_FRAMING_RAW, 0,
                                             err, sizeof(err));
                /* v0's int value cannot stand for the event's double, and a
                 * schema named Interaction must: refused up front. */
                if (strstr(all[i], "_v0")) {
                        assert_int_equal(rc, -VEIL_EINVAL);
                        assert_non_null(strstr(err, "value"));
                        continue;
                }
                if (rc)
                        fail_msg("%s: %s", all[i], err);
                veil_codec_destroy(c);
        }
        struct veil_codec *c = NULL;
        char err[256] = "";
        assert_int_equal(veil_codec_new_file(&c, DATA("nope.avsc"),
                                             VEIL_FRAMING_RAW, 0, err,
                                             sizeof(err)),
                         -VEIL_ENOENT);
        assert_non_null(strstr(err, "nope.avsc"));
}

/* A capped batch arena refusing a record: one that alone needs more than
 * the cap would never fit, a decode error (dead-letter topic); one that
 * would fit in an emptier batch is out of memory (-VEIL_ENOMEM: the host
 * fails the batch rather than dead-letter a valid event). */
static void test_decode_arena_cap(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_event ev;
        struct veil_buf big = {0}, small = {0};
        char err[256] = "", ua[6000];
        memset(ua, 'a', sizeof(ua) - 1);
        ua[sizeof(ua) - 1] = '\0';
        full_event(&ev);
        ev.ctx.user_agent = ua;
        assert_int_equal(veil_codec_encode_event(c, &ev, &big, err,
                                                 sizeof(err)),
                         0);
        full_event(&ev);
        assert_int_equal(veil_codec_encode_event(c, &ev, &small, err,
                                                 sizeof(err)),
                         0);
        struct veil_arena a;
        veil_arena_init(&a, 1024, 4096);
        assert_int_equal(veil_codec_decode_event(c, big.data, big.len, &ev, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "never fit"));
        veil_arena_reset(&a);
        int rc, n = 0;
        while ((rc = veil_codec_decode_event(c, small.data, small.len, &ev, &a,
                                             err, sizeof(err))) == 0)
                n++;
        assert_true(n > 1);
        assert_int_equal(rc, -VEIL_ENOMEM);
        assert_non_null(strstr(err, "batch arena full"));
        assert_null(strstr(err, SECRET));
        veil_arena_free(&a);
        veil_buf_free(&big);
        veil_buf_free(&small);
        veil_codec_destroy(c);
}

static void test_not_an_event_schema(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("consent.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_event ev;
        struct veil_arena a;
        struct veil_buf b = {0};
        char err[256] = "";
        veil_arena_init(&a, 4096, 0);
        assert_int_equal(veil_codec_decode_event(c, "\0", 1, &ev, &a, err,
                                                 sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "event_id"));
        full_event(&ev);
        assert_int_equal(veil_codec_encode_event(c, &ev, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        veil_buf_free(&b);
        veil_arena_free(&a);
        veil_codec_destroy(c);
}

/* A record that is no interaction may name its fields as an event's are,
 * with other types (an enum "type", an int "value", a map of long
 * "context.attrs"): read as records, they are nobody's slots. */
static void test_event_names_other_types(void **state) {
        (void)state;
        char path[] = "/tmp/veil-test-order-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char schema[] =
                "{\"type\": \"record\", \"name\": \"Order\", \"fields\": ["
                "{\"name\": \"user_id\", \"type\": \"string\"},"
                "{\"name\": \"type\", \"type\": {\"type\": \"enum\", "
                "\"name\": \"Kind\", \"symbols\": [\"A\", \"B\"]}},"
                "{\"name\": \"value\", \"type\": \"int\"},"
                "{\"name\": \"ts\", \"type\": \"long\"},"
                "{\"name\": \"context\", \"type\": {\"type\": \"record\", "
                "\"name\": \"Ctx\", \"fields\": [{\"name\": \"attrs\", "
                "\"type\": {\"type\": \"map\", \"values\": \"long\"}}]}}]}";
        assert_true(write(fd, schema, sizeof(schema) - 1) ==
                    (ssize_t)(sizeof(schema) - 1));
        close(fd);
        struct veil_codec *c = codec_or_die(path, VEIL_FRAMING_RAW, 0);
        /* "u", B, 5, 7, {} */
        static const unsigned char rec[] = {0x02, 'u', 0x02, 0x0a, 0x0e, 0x00};
        const veil_rec_t *r;
        char err[256] = "";
        if (veil_codec_decode_rec(c, rec, sizeof(rec), &r, err, sizeof(err)))
                fail_msg("%s", err);
        int64_t ts;
        assert_int_equal(veil_rec_get_long(r, "ts", &ts), 0);
        assert_int_equal(ts, 7);
        veil_codec_destroy(c);
        unlink(path);
}

static void test_pii_fields(void **state) {
        (void)state;
        static const char *const want_quasi[] = {
                "context.device",  "context.ip",      "context.user_agent",
                "context.lat",     "context.lon",     "context.geohash",
                "context.country", "context.session_id", "context.timezone",
                "tc_string"};
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        const char **paths, **marks;
        size_t n = veil_codec_pii_fields(c, &paths, &marks);
        assert_int_equal(n, 11);
        size_t found = 0;
        for (size_t i = 0; i < n; i++) {
                if (!strcmp(paths[i], "user_id")) {
                        assert_string_equal(marks[i], "identifier");
                        found++;
                        continue;
                }
                assert_string_equal(marks[i], "quasi");
                for (size_t k = 0; k < 10; k++)
                        found += !strcmp(paths[i], want_quasi[k]);
        }
        assert_int_equal(found, 11);
        veil_codec_destroy(c);

        c = codec_or_die(SCHEMA("consent.avsc"), VEIL_FRAMING_RAW, 0);
        assert_int_equal(veil_codec_pii_fields(c, &paths, &marks), 2);
        assert_string_equal(paths[0], "user_id");
        assert_string_equal(marks[0], "identifier");
        assert_string_equal(paths[1], "tc_string");
        assert_string_equal(marks[1], "quasi");
        veil_codec_destroy(c);

        static const char *const none[] = {
                SCHEMA("recommendation.avsc"), SCHEMA("model_update.avsc"),
                SCHEMA("audit.avsc"), SCHEMA("access.avsc")};
        for (size_t i = 0; i < 4; i++) {
                c = codec_or_die(none[i], VEIL_FRAMING_RAW, 0);
                assert_int_equal(veil_codec_pii_fields(c, NULL, NULL), 0);
                veil_codec_destroy(c);
        }
        /* marks inside a union's record and through a named reference */
        c = codec_or_die(DATA("kitchen.avsc"), VEIL_FRAMING_RAW, 0);
        n = veil_codec_pii_fields(c, &paths, &marks);
        assert_int_equal(n, 2);
        assert_string_equal(paths[0], "opt.y");
        assert_string_equal(paths[1], "inners.y");
        veil_codec_destroy(c);

        /* A mark under nine nested ["null", record] levels (it was left
         * out past seven, silently), and one in a recursive type (the
         * walk ends, the mark is listed). */
        char deep[4096] = "", tail[1024] = "";
        size_t dl = 0, tl = 0;
        for (int i = 0; i < 9; i++) {
                dl += (size_t)snprintf(deep + dl, sizeof(deep) - dl,
                                       "{\"type\": \"record\", \"name\": "
                                       "\"L%d\", \"fields\": [{\"name\": "
                                       "\"n\", \"type\": [\"null\", ",
                                       i);
                tl += (size_t)snprintf(tail + tl, sizeof(tail) - tl, "]}]}");
        }
        char schema[8192];
        snprintf(schema, sizeof(schema),
                 "%s{\"type\": \"record\", \"name\": \"Leaf\", "
                 "\"fields\": [{\"name\": \"who\", \"type\": "
                 "\"string\", \"pii\": \"identifier\"}]}%s",
                 deep, tail);
        char dpath[] = "/tmp/veil-test-deep-XXXXXX";
        int fd = mkstemp(dpath);
        assert_true(fd >= 0);
        assert_true(write(fd, schema, strlen(schema)) ==
                    (ssize_t)strlen(schema));
        close(fd);
        c = codec_or_die(dpath, VEIL_FRAMING_RAW, 0);
        assert_int_equal(veil_codec_pii_fields(c, &paths, &marks), 1);
        assert_string_equal(paths[0], "n.n.n.n.n.n.n.n.n.who");
        veil_codec_destroy(c);
        static const char list[] =
                "{\"type\": \"record\", \"name\": \"Node\", \"fields\": ["
                "{\"name\": \"who\", \"type\": \"string\", "
                "\"pii\": \"quasi\"},"
                "{\"name\": \"next\", \"type\": [\"null\", \"Node\"]}]}";
        fd = open(dpath, O_WRONLY | O_TRUNC);
        assert_true(fd >= 0);
        assert_true(write(fd, list, sizeof(list) - 1) ==
                    (ssize_t)(sizeof(list) - 1));
        close(fd);
        c = codec_or_die(dpath, VEIL_FRAMING_RAW, 0);
        n = veil_codec_pii_fields(c, &paths, &marks);
        assert_true(n >= 1);
        assert_string_equal(paths[0], "who");
        veil_codec_destroy(c);
        /* Types that each use the one before twice: 2^n paths. Refused
         * at once past the walk's budget, not listed for minutes (n = 30
         * would be 10^9 paths). Defined side by side in a union, so the
         * JSON stays shallow. */
        static char twice[16384];
        size_t tw = (size_t)snprintf(twice, sizeof(twice),
                                     "[{\"type\": \"record\", \"name\": "
                                     "\"T0\", \"fields\": [{\"name\": "
                                     "\"who\", \"type\": \"string\", "
                                     "\"pii\": \"quasi\"}]}");
        for (int i = 1; i <= 30; i++)
                tw += (size_t)snprintf(
                        twice + tw, sizeof(twice) - tw,
                        ", {\"type\": \"record\", \"name\": \"T%d\", "
                        "\"fields\": [{\"name\": \"a\", \"type\": "
                        "\"T%d\"}, {\"name\": \"b\", \"type\": "
                        "\"T%d\"}]}",
                        i, i - 1, i - 1);
        tw += (size_t)snprintf(twice + tw, sizeof(twice) - tw, "]");
        assert_true(tw < sizeof(twice));
        fd = open(dpath, O_WRONLY | O_TRUNC);
        assert_true(fd >= 0);
        assert_true(write(fd, twice, tw) == (ssize_t)tw);
        close(fd);
        char cerr[1024] = "";
        c = NULL;
        int rc = veil_codec_new_file(&c, dpath, VEIL_FRAMING_RAW, 0, cerr,
                                     sizeof(cerr));
        fprintf(stderr, "# %s\n", cerr);
        assert_int_not_equal(rc, 0);
        assert_null(c);
        assert_non_null(strstr(cerr, "reuses its named types so often"));
        unlink(dpath);
}

/* ---- events ----------------------------------------------------------- */

static void roundtrip(struct veil_codec *c, const struct veil_event *in) {
        struct veil_buf b = {0};
        struct veil_arena a;
        struct veil_event out;
        char err[256] = "";
        veil_arena_init(&a, 4096, 0);
        if (veil_codec_encode_event(c, in, &b, err, sizeof(err)))
                fail_msg("encode: %s", err);
        if (veil_codec_decode_event(c, b.data, b.len, &out, &a, err,
                                    sizeof(err)))
                fail_msg("decode: %s", err);
        assert_events_equal(in, &out);
        assert_int_equal(out.status, VEIL_PASS);
        assert_null(out.subject);
        veil_arena_free(&a);
        veil_buf_free(&b);
}

static void test_event_roundtrip(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_event ev;
        full_event(&ev);
        roundtrip(c, &ev);
        min_event(&ev);
        roundtrip(c, &ev);
        /* gpc false is not absent; a lone latitude is no location */
        min_event(&ev);
        ev.gpc = 0;
        roundtrip(c, &ev);
        /* A string a stage set that is not UTF-8 is not encoded (the
         * bytes would be refused by any reader, this decoder too). */
        struct veil_buf b = {0};
        char err[256] = "";
        full_event(&ev);
        ev.type = "view\xff";
        assert_int_equal(veil_codec_encode_event(c, &ev, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_string_equal(err, "event field type is not valid UTF-8");
        full_event(&ev);
        struct veil_kv bad[] = {{"page", "\xc3"}};
        ev.ctx.attrs = bad;
        ev.ctx.n_attrs = 1;
        assert_int_equal(veil_codec_encode_event(c, &ev, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_string_equal(err,
                            "event context.attrs entry 0 is not valid UTF-8");
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

static void test_event_matches_avro_c(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_event evs[2], out;
        full_event(&evs[0]);
        min_event(&evs[1]);
        for (int i = 0; i < 2; i++) {
                char ref[1024];
                size_t n = avroc_event(SCHEMA("interaction.avsc"), &evs[i], 0,
                                       ref, sizeof(ref));
                struct veil_buf b = {0};
                struct veil_arena a;
                char err[256] = "";
                veil_arena_init(&a, 4096, 0);
                assert_int_equal(veil_codec_encode_event(c, &evs[i], &b, err,
                                                         sizeof(err)),
                                 0);
                /* Avro binary is canonical: same value, same bytes. */
                assert_int_equal(b.len, n);
                assert_memory_equal(b.data, ref, n);
                assert_int_equal(veil_codec_decode_event(c, ref, n, &out, &a,
                                                         err, sizeof(err)),
                                 0);
                assert_events_equal(&evs[i], &out);
                veil_arena_free(&a);
                veil_buf_free(&b);
        }
        veil_codec_destroy(c);
}

static struct veil_codec *evolved_codec(enum veil_framing framing) {
        struct veil_config cfg = {0};
        struct veil_kvpair ws[2];
        struct veil_binding b = {0};
        char dir[] = VEIL_SRCDIR, k0[] = "", k1[] = "1", k2[] = "2",
             v0[] = "tests/unit/data/codec/interaction_v0.avsc",
             v1[] = "schemas/interaction.avsc", topic[] = "interactions";
        cfg.dir = dir;
        b.topic = topic;
        b.schema = v1;
        b.framing = framing;
        b.schema_id = -1; /* as config.c leaves it when not given */
        b.writer_schemas = ws;
        if (framing == VEIL_FRAMING_RAW) {
                ws[0] = (struct veil_kvpair){.key = k0, .value = v0};
                b.n_writer_schemas = 1;
        } else {
                ws[0] = (struct veil_kvpair){.key = k1, .value = v0};
                ws[1] = (struct veil_kvpair){.key = k2, .value = v1};
                b.n_writer_schemas = 2;
        }
        struct veil_codec *c = NULL;
        char err[512] = "";
        if (veil_codec_new(&c, &cfg, &b, err, sizeof(err)))
                fail_msg("veil_codec_new: %s", err);
        return c;
}

static void check_v0_event(const struct veil_event *in,
                           const struct veil_event *out) {
        assert_string_equal(out->event_id, in->event_id);
        assert_string_equal(out->user_id, in->user_id);
        assert_int_equal(out->ts_ms, in->ts_ms);
        assert_true(out->value == 2.0); /* int 2, promoted */
        assert_int_equal(out->gpc, -1); /* not in v0: the default, null */
        assert_null(out->ctx.timezone);
        assert_null(out->ctx.geohash);
        assert_string_equal(out->ctx.device, in->ctx.device);
        assert_int_equal(out->ctx.has_geo, 1);
        assert_true(out->ctx.lat == in->ctx.lat);
        assert_int_equal(out->ctx.n_attrs, 2);
}

static void test_event_older_schema(void **state) {
        (void)state;
        struct veil_codec *c = evolved_codec(VEIL_FRAMING_RAW);
        struct veil_event in, out;
        struct veil_arena a;
        char buf[1024], err[256] = "";
        full_event(&in);
        in.value = 2;
        size_t n = avroc_event(DATA("interaction_v0.avsc"), &in, 1, buf,
                               sizeof(buf));
        veil_arena_init(&a, 4096, 0);
        if (veil_codec_decode_event(c, buf, n, &out, &a, err, sizeof(err)))
                fail_msg("decode v0: %s", err);
        check_v0_event(&in, &out);

        /* the same through the generic path: defaults in Avro values */
        const veil_rec_t *r;
        const char *s;
        double d;
        int bv;
        if (veil_codec_decode_rec(c, buf, n, &r, err, sizeof(err)))
                fail_msg("decode_rec v0: %s", err);
        assert_int_equal(veil_rec_get_double(r, "value", &d), 0);
        assert_true(d == 2.0);
        assert_int_equal(veil_rec_get_bool(r, "gpc", &bv), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_str(r, "context.timezone", &s, NULL),
                         -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_str(r, "referrer", &s, NULL),
                         -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_str(r, "context.country", &s, NULL), 0);
        assert_string_equal(s, "FR");
        assert_int_equal(veil_rec_map_size(r, "context.attrs"), 2);
        veil_codec_destroy(c);

        /* Confluent: id 1 is v0, id 2 the current schema */
        c = evolved_codec(VEIL_FRAMING_CONFLUENT);
        char framed[1100] = {0, 0, 0, 0, 1};
        memcpy(framed + 5, buf, n);
        veil_arena_reset(&a);
        if (veil_codec_decode_event(c, framed, n + 5, &out, &a, err,
                                    sizeof(err)))
                fail_msg("decode framed v0: %s", err);
        check_v0_event(&in, &out);
        full_event(&in);
        n = avroc_event(SCHEMA("interaction.avsc"), &in, 0, framed + 5,
                        sizeof(framed) - 5);
        framed[4] = 2;
        assert_int_equal(veil_codec_decode_event(c, framed, n + 5, &out, &a,
                                                 err, sizeof(err)),
                         0);
        assert_events_equal(&in, &out);
        framed[4] = 7;
        assert_int_equal(veil_codec_decode_event(c, framed, n + 5, &out, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_string_equal(err, "unknown Confluent schema id 7 (known: 1, 2)");
        veil_arena_free(&a);
        veil_codec_destroy(c);
}

static void test_incompatible_writers(void **state) {
        (void)state;
        static const struct {
                const char *file, *want;
        } cases[] = {
                {"tests/unit/data/codec/interaction_badtype.avsc",
                 "field user_id: writer type long cannot be read as string"},
                {"tests/unit/data/codec/interaction_noitem.avsc",
                 "reader field item_id is not in the writer schema and has "
                 "no default"},
        };
        for (size_t i = 0; i < 2; i++) {
                struct veil_config cfg = {0};
                char dir[] = VEIL_SRCDIR, file[] = "pipeline.yaml",
                     k[] = "3", v1[] = "schemas/interaction.avsc";
                struct veil_kvpair ws = {.key = k, .value = (char *)cases[i].file,
                                         .line = 7, .col = 5};
                struct veil_binding b = {.topic = "in",
                                         .schema = v1,
                                         .framing = VEIL_FRAMING_CONFLUENT,
                                         .writer_schemas = &ws,
                                         .n_writer_schemas = 1,
                                         .line = 4,
                                         .col = 3};
                cfg.dir = dir;
                cfg.file = file;
                struct veil_codec *c = NULL;
                char err[1024] = "";
                assert_int_equal(veil_codec_new(&c, &cfg, &b, err, sizeof(err)),
                                 -VEIL_EINVAL);
                assert_null(c);
                if (!strstr(err, cases[i].want))
                        fail_msg("message '%s' lacks '%s'", err, cases[i].want);
                assert_non_null(strstr(err, "pipeline.yaml:7:5"));
        }
        /* a key that is not a schema id */
        struct veil_config cfg = {0};
        char dir[] = VEIL_SRCDIR, k[] = "v1", v1[] = "schemas/interaction.avsc";
        struct veil_kvpair ws = {.key = k, .value = v1};
        struct veil_binding b = {.topic = "in", .schema = v1,
                                 .framing = VEIL_FRAMING_CONFLUENT,
                                 .writer_schemas = &ws, .n_writer_schemas = 1};
        cfg.dir = dir;
        struct veil_codec *c = NULL;
        char err[512] = "";
        assert_int_equal(veil_codec_new(&c, &cfg, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "decimal Confluent schema id"));
}

/* A writer union branch the reader cannot take fails only the records that
 * use it. Bytes by hand: event_id "e", user_id "u", ts 1, type "v",
 * item_id "i", then tc_string. */
static void test_writer_union_branch(void **state) {
        (void)state;
        struct veil_config cfg = {0};
        char dir[] = VEIL_SRCDIR, k[] = "",
             w[] = "tests/unit/data/codec/interaction_wideunion.avsc",
             v1[] = "schemas/interaction.avsc";
        struct veil_kvpair ws = {.key = k, .value = w};
        struct veil_binding b = {.topic = "in", .schema = v1,
                                 .writer_schemas = &ws, .n_writer_schemas = 1,
                                 .schema_id = -1};
        cfg.dir = dir;
        struct veil_codec *c = NULL;
        char err[512] = "";
        if (veil_codec_new(&c, &cfg, &b, err, sizeof(err)))
                fail_msg("%s", err);
        unsigned char rec[] = {2, 'e', 2, 'u', 2, 2, 'v', 2, 'i',
                               2, 4, 'C', 'P'};
        struct veil_event ev;
        struct veil_arena a;
        veil_arena_init(&a, 4096, 0);
        assert_int_equal(veil_codec_decode_event(c, rec, sizeof(rec), &ev, &a,
                                                 err, sizeof(err)),
                         0);
        assert_string_equal(ev.tc_string, "CP");
        assert_true(ev.value == 0.0); /* reader default */
        assert_null(ev.ctx.device);   /* context: reader default {} */
        assert_int_equal(ev.ctx.n_attrs, 0);
        rec[9] = 4; /* branch 2: long 1 */
        rec[10] = 2;
        assert_int_equal(veil_codec_decode_event(c, rec, 11, &ev, &a, err,
                                                 sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "union branch 2 at byte 9 cannot be "
                                    "read"));
        assert_non_null(strstr(err, "writer type long is in no branch"));
        const veil_rec_t *r;
        assert_int_equal(veil_codec_decode_rec(c, rec, 11, &r, err,
                                               sizeof(err)),
                         -VEIL_EDECODE);
        veil_arena_free(&a);
        veil_codec_destroy(c);
}

static void test_confluent_framing(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_CONFLUENT, 42);
        struct veil_event in, out;
        struct veil_buf b = {0};
        struct veil_arena a;
        char err[256] = "";
        veil_arena_init(&a, 4096, 0);
        full_event(&in);
        assert_int_equal(veil_codec_encode_event(c, &in, &b, err, sizeof(err)),
                         0);
        static const unsigned char hdr[5] = {0, 0, 0, 0, 42};
        assert_memory_equal(b.data, hdr, 5);
        assert_int_equal(veil_codec_decode_event(c, b.data, b.len, &out, &a,
                                                 err, sizeof(err)),
                         0);
        assert_events_equal(&in, &out);

        b.data[4] = 7;
        assert_int_equal(veil_codec_decode_event(c, b.data, b.len, &out, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_string_equal(err, "unknown Confluent schema id 7 (known: 42)");
        b.data[4] = 42;
        b.data[0] = 0x41;
        assert_int_equal(veil_codec_decode_event(c, b.data, b.len, &out, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_string_equal(err,
                            "magic byte 0x41, expected 0x00 for Confluent "
                            "framing");
        b.data[0] = 0;
        assert_int_equal(veil_codec_decode_event(c, b.data, 3, &out, &a, err,
                                                 sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "truncated record at byte 3"));
        veil_buf_free(&b);
        veil_arena_free(&a);
        veil_codec_destroy(c);
}

/* ---- hostile input ---------------------------------------------------- */

/* Every prefix of a valid record is an error, with a message that names
 * a byte and never echoes a value. */
static void truncate_all(struct veil_codec *c, const unsigned char *buf,
                         size_t len, int events) {
        struct veil_arena a;
        struct veil_event ev;
        char err[512];
        veil_arena_init(&a, 4096, 0);
        for (size_t n = 0; n < len; n++) {
                const veil_rec_t *r = (const veil_rec_t *)1;
                err[0] = '\0';
                int rc = events ? veil_codec_decode_event(c, buf, n, &ev, &a,
                                                          err, sizeof(err))
                                : veil_codec_decode_rec(c, buf, n, &r, err,
                                                        sizeof(err));
                if (rc != -VEIL_EDECODE)
                        fail_msg("prefix %zu of %zu: rc %d (%s)", n, len, rc,
                                 err);
                assert_non_null(strstr(err, "byte"));
                assert_null(strstr(err, "alice"));
                if (!events)
                        assert_null(r);
                veil_arena_reset(&a);
        }
        veil_arena_free(&a);
}

static void test_truncated(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_codec *cf = codec_or_die(SCHEMA("interaction.avsc"),
                                             VEIL_FRAMING_CONFLUENT, 9);
        struct veil_codec *c0 = evolved_codec(VEIL_FRAMING_RAW);
        struct veil_event ev;
        struct veil_buf b = {0}, bf = {0};
        struct veil_arena a;
        char err[256], v0[1024];
        full_event(&ev);
        assert_int_equal(veil_codec_encode_event(c, &ev, &b, err, sizeof(err)),
                         0);
        assert_int_equal(veil_codec_encode_event(cf, &ev, &bf, err, sizeof(err)),
                         0);
        truncate_all(c, b.data, b.len, 1);
        truncate_all(c, b.data, b.len, 0);
        truncate_all(cf, bf.data, bf.len, 1);
        ev.value = 3;
        size_t n0 = avroc_event(DATA("interaction_v0.avsc"), &ev, 1, v0,
                                sizeof(v0));
        truncate_all(c0, (unsigned char *)v0, n0, 1);
        truncate_all(c0, (unsigned char *)v0, n0, 0);

        /* one byte too many */
        veil_arena_init(&a, 4096, 0);
        assert_int_equal(veil_buf_reserve(&b, b.len + 1), 0);
        b.data[b.len] = 0;
        assert_int_equal(veil_codec_decode_event(c, b.data, b.len + 1, &ev, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        char want[128];
        snprintf(want, sizeof(want),
                 "trailing bytes: the record ends at byte %zu of %zu", b.len,
                 b.len + 1);
        assert_string_equal(err, want);
        veil_arena_free(&a);
        veil_buf_free(&b);
        veil_buf_free(&bf);
        veil_codec_destroy(c);
        veil_codec_destroy(cf);
        veil_codec_destroy(c0);
}

/* Hand-made hostile records: each a specific lie about a length. */
static void test_hostile_lengths(void **state) {
        (void)state;
        static const struct {
                unsigned char bytes[32];
                size_t len;
                const char *want;
        } cases[] = {
                /* event_id claims 2^39 bytes */
                {{0x80, 0x80, 0x80, 0x80, 0x80, 0x20}, 6,
                 "truncated record at byte 6: string of 549755813888 bytes, "
                 "0 left (field event_id)"},
                /* negative length */
                {{0x03}, 1, "string at byte 0 has negative length -2 (field "
                            "event_id)"},
                /* a varint that never ends */
                {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                  0xff, 0x01},
                 12,
                 "string at byte 0 is a varint longer than 64 bits (field "
                 "event_id)"},
                /* 4 empty strings and ts 0 (5 bytes), value 0.0 (8),
                 * then branch 5 of tc_string's 2-branch union */
                {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a}, 14,
                 "union branch 5 at byte 13, the writer's union has 2 (field "
                 "tc_string)"},
                /* tc_string null, gpc branch 1 (boolean) holding 0x02 */
                {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2}, 16,
                 "boolean at byte 15 is 0x02, expected 0x00 or 0x01 (field "
                 "gpc)"},
                /* 9 null context unions, then attrs' count cut short */
                {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                  0, 0, 0, 0, 0x80, 0x80},
                 26, "truncated record at byte 24: map block count runs past "
                     "the end (26 bytes) (field context.attrs)"},
        };
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_arena a;
        struct veil_event ev;
        veil_arena_init(&a, 4096, 0);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[256] = "";
                int rc = veil_codec_decode_event(c, cases[i].bytes,
                                                 cases[i].len, &ev, &a, err,
                                                 sizeof(err));
                if (rc != -VEIL_EDECODE || strcmp(err, cases[i].want))
                        fail_msg("case %zu: rc %d '%s', want '%s'", i, rc, err,
                                 cases[i].want);
        }
        /* a map block of 2^30 entries in 4 bytes */
        unsigned char big[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80,
                               0x80, 0x80, 0x08, 0, 0, 0, 0};
        char err[256] = "";
        assert_int_equal(veil_codec_decode_event(c, big, sizeof(big), &ev, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "block of 1073741824 items at byte 24 "
                                    "cannot fit in the 4 bytes left"));
        /* attrs as 1024 one-entry blocks (the most an event may have),
         * every other one with a negative count and its byte size: all
         * entries arrive, in order; one more is refused */
        for (int more = 0; more < 2; more++) {
                static unsigned char blk[24 + 1025 * 8 + 1];
                size_t n = 24; /* 15 fixed bytes, 9 null context unions */
                int entries = 1024 + more;
                for (int i = 0; i < entries; i++) {
                        if (i & 1) {
                                blk[n++] = 0x01; /* count -1 */
                                blk[n++] = 0x08; /* 4 bytes follow */
                        } else {
                                blk[n++] = 0x02; /* count 1 */
                        }
                        blk[n++] = 2;
                        blk[n++] = (unsigned char)('a' + i % 26);
                        blk[n++] = 2;
                        blk[n++] = (unsigned char)('0' + i % 10);
                }
                blk[n++] = 0;
                char e2[256] = "";
                int rc = veil_codec_decode_event(c, blk, n, &ev, &a, e2,
                                                 sizeof(e2));
                if (more) {
                        veil_arena_reset(&a);
                        assert_int_equal(rc, -VEIL_EDECODE);
                        assert_non_null(strstr(e2, "context.attrs at byte "));
                        assert_non_null(strstr(e2, "has more than 1024 "
                                                   "entries"));
                        continue;
                }
                if (rc)
                        fail_msg("blocks: %s", e2);
                assert_int_equal(ev.ctx.n_attrs, 1024);
                assert_string_equal(ev.ctx.attrs[1023].key, "j"); /* 1023 % 26 */
                assert_string_equal(ev.ctx.attrs[1023].value, "3");
                assert_true(a.used_total < 200 * 1024);
                veil_arena_reset(&a);
        }
        /* One block claiming an entry per byte left, as empty entries of a
         * 1 MB record would: refused before any room is taken for them
         * (it cost 16 bytes of arena per claimed entry). */
        {
                static unsigned char claim[24 + 3 + 4000];
                size_t n = 24;
                claim[n++] = 0xc0; /* count 4000, zigzag: 8000 */
                claim[n++] = 0x3e;
                n += 4000;
                char e3[256] = "";
                size_t before = a.used_total;
                assert_int_equal(veil_codec_decode_event(c, claim, n, &ev, &a,
                                                         e3, sizeof(e3)),
                                 -VEIL_EDECODE);
                assert_non_null(strstr(e3, "has more than 1024 entries"));
                assert_true(a.used_total - before < 4096);
                veil_arena_reset(&a);
        }
        /* value NaN: valid Avro, refused for the event */
        unsigned char nan[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        assert_int_equal(veil_codec_decode_event(c, nan, sizeof(nan), &ev, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_string_equal(err, "value before byte 13 is not a finite number "
                                 "(field value)");
        /* an embedded NUL in an event string */
        unsigned char nul[] = {0x04, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        assert_int_equal(veil_codec_decode_event(c, nul, sizeof(nul), &ev, &a,
                                                 err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "holds a NUL byte"));
        veil_arena_free(&a);
        veil_codec_destroy(c);
}

#ifndef VEIL_TEST_MUTATIONS
#define VEIL_TEST_MUTATIONS 4000
#endif

/* Items that take no bytes are bounded per record, not per array: nesting
 * must not multiply the work a few bytes can ask for. */
static void test_zero_size_items(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(DATA("nulls.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        const veil_rec_t *r;
        char err[256] = "";
        /* outer: 2 arrays; the first holds 2^20 nulls (the whole budget) */
        unsigned char ok[] = {0x04, 0x80, 0x80, 0x80, 0x01, 0x00, 0x00, 0x00};
        if (veil_codec_decode_rec(c, ok, sizeof(ok), &r, err, sizeof(err)))
                fail_msg("%s", err);
        assert_int_equal(veil_rec_array_size(r, "a"), 2);
        /* the second asks for one more */
        unsigned char more[] = {0x04, 0x80, 0x80, 0x80, 0x01, 0x00,
                                0x02, 0x00, 0x00};
        assert_int_equal(veil_codec_decode_rec(c, more, sizeof(more), &r, err,
                                               sizeof(err)),
                         -VEIL_EDECODE);
        assert_string_equal(err, "block of 1 items at byte 6 exceeds the "
                                 "record's budget of 1048576 items that take "
                                 "no bytes (field a)");
        veil_codec_destroy(c);
}

/* A record read whole (side inputs, model updates) may take 16 times its
 * size plus 16 MiB in memory: a million empty strings in 1 MB took 80 MB
 * before, a million small ints take 5 MB and still read. */
static size_t small_items(unsigned char *buf, size_t strings, size_t ints) {
        size_t n = 0;
        for (int a = 0; a < 2; a++) {
                uint64_t z = (uint64_t)(a ? ints : strings) << 1;
                if (!z) {
                        buf[n++] = 0; /* an empty array */
                        continue;
                }
                while (z >= 0x80) {
                        buf[n++] = (unsigned char)(z | 0x80);
                        z >>= 7;
                }
                buf[n++] = (unsigned char)z;
                memset(buf + n, 0, a ? ints : strings); /* "" or 0 */
                n += a ? ints : strings;
                buf[n++] = 0; /* end of the array */
        }
        return n;
}

static void test_generic_memory_bound(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(DATA("small_items.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        const veil_rec_t *r;
        char err[512] = "";
        unsigned char *buf = malloc(2100000);
        assert_non_null(buf);
        size_t n = small_items(buf, 0, 1000000);
        if (veil_codec_decode_rec(c, buf, n, &r, err, sizeof(err)))
                fail_msg("%s", err);
        assert_int_equal(veil_rec_array_size(r, "i"), 1000000);
        /* 200,000 empty strings: 19 MB by the decoder's count, within
         * 16 · 200 KB + 16 MiB */
        n = small_items(buf, 200000, 0);
        if (veil_codec_decode_rec(c, buf, n, &r, err, sizeof(err)))
                fail_msg("%s", err);
        assert_int_equal(veil_rec_array_size(r, "s"), 200000);
        n = small_items(buf, 2000000, 0);
        assert_int_equal(veil_codec_decode_rec(c, buf, n, &r, err,
                                               sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "record of 2000006 bytes would take "
                                    "more than 48777312 bytes of memory"));
        assert_non_null(strstr(err, "16 times its size plus 16 MiB"));
        free(buf);
        veil_codec_destroy(c);
}

static uint64_t xorshift(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void test_garbage(void **state) {
        (void)state;
        static const char *const schemas[] = {
                SCHEMA("interaction.avsc"), SCHEMA("consent.avsc"),
                SCHEMA("recommendation.avsc"), SCHEMA("model_update.avsc"),
                SCHEMA("audit.avsc"), SCHEMA("access.avsc"),
                DATA("kitchen.avsc")};
        uint64_t seed = 0x9e3779b97f4a7c15ull;
        struct veil_arena a;
        unsigned char buf[512];
        size_t errors = 0, ok = 0;
        veil_arena_init(&a, 1 << 16, 0);
        for (size_t s = 0; s < sizeof(schemas) / sizeof(schemas[0]); s++) {
                struct veil_codec *c = codec_or_die(schemas[s],
                                                    VEIL_FRAMING_RAW, 0);
                for (int i = 0; i < 1500; i++) {
                        size_t len = xorshift(&seed) % sizeof(buf);
                        for (size_t k = 0; k < len; k++)
                                buf[k] = (unsigned char)xorshift(&seed);
                        /* small bytes reach deeper than uniform ones */
                        if (i & 1)
                                for (size_t k = 0; k < len; k++)
                                        buf[k] &= 0x0f;
                        char err[256];
                        const veil_rec_t *r;
                        struct veil_event ev;
                        int rc = veil_codec_decode_rec(c, buf, len, &r, err,
                                                       sizeof(err));
                        assert_true(rc == 0 || rc == -VEIL_EDECODE);
                        rc ? errors++ : ok++;
                        if (s == 0) {
                                rc = veil_codec_decode_event(c, buf, len, &ev,
                                                             &a, err,
                                                             sizeof(err));
                                assert_true(rc == 0 || rc == -VEIL_EDECODE);
                                veil_arena_reset(&a);
                        }
                }
                veil_codec_destroy(c);
        }
        assert_true(errors > 0);
        print_message("garbage: %zu rejected, %zu decoded\n", errors, ok);
        veil_arena_free(&a);
}

/* Valid records with a few bytes changed: past the first field, into
 * unions, maps and arrays. */
static void test_mutations(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("interaction.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_codec *c0 = evolved_codec(VEIL_FRAMING_RAW);
        struct veil_event ev;
        struct veil_buf b = {0};
        struct veil_arena a;
        char err[256], v0[1024];
        uint64_t seed = 42;
        size_t decoded = 0;
        full_event(&ev);
        assert_int_equal(veil_codec_encode_event(c, &ev, &b, err, sizeof(err)),
                         0);
        ev.value = 1;
        size_t n0 = avroc_event(DATA("interaction_v0.avsc"), &ev, 1, v0,
                                sizeof(v0));
        veil_arena_init(&a, 1 << 16, 0);
        for (int i = 0; i < VEIL_TEST_MUTATIONS; i++) {
                unsigned char m[1024];
                int old = i & 1;
                size_t len = old ? n0 : b.len;
                memcpy(m, old ? (unsigned char *)v0 : b.data, len);
                int flips = 1 + (int)(xorshift(&seed) % 3);
                for (int k = 0; k < flips; k++)
                        m[xorshift(&seed) % len] = (unsigned char)xorshift(&seed);
                struct veil_codec *cc = old ? c0 : c;
                const veil_rec_t *r;
                int rc = veil_codec_decode_event(cc, m, len, &ev, &a, err,
                                                 sizeof(err));
                assert_true(rc == 0 || rc == -VEIL_EDECODE);
                decoded += rc == 0;
                rc = veil_codec_decode_rec(cc, m, len, &r, err, sizeof(err));
                assert_true(rc == 0 || rc == -VEIL_EDECODE);
                if (rc == 0) {
                        char *json = veil_codec_rec_json(cc, m, len);
                        assert_non_null(json);
                        free(json);
                }
                veil_arena_reset(&a);
        }
        print_message("mutations: %zu of %d events still decode\n", decoded,
                      VEIL_TEST_MUTATIONS);
        veil_arena_free(&a);
        veil_buf_free(&b);
        veil_codec_destroy(c);
        veil_codec_destroy(c0);
}

/* Mutations of a valid record of any schema, through the generic path. */
static void mutate_rec(struct veil_codec *c, const unsigned char *buf,
                       size_t len, uint64_t seed) {
        unsigned char m[4096];
        size_t ok = 0;
        assert_true(len <= sizeof(m) && len > 0);
        for (int i = 0; i < VEIL_TEST_MUTATIONS / 4; i++) {
                const veil_rec_t *r;
                char err[256];
                memcpy(m, buf, len);
                int flips = 1 + (int)(xorshift(&seed) % 3);
                for (int k = 0; k < flips; k++)
                        m[xorshift(&seed) % len] = (unsigned char)xorshift(&seed);
                int rc = veil_codec_decode_rec(c, m, len, &r, err, sizeof(err));
                assert_true(rc == 0 || rc == -VEIL_EDECODE);
                if (rc == 0) {
                        /* JSON has no NaN or infinity: only those may make
                         * a decodable record unprintable */
                        char *json = veil_codec_rec_json(c, m, len);
                        if (!json)
                                assert_non_null(strstr(avro_strerror(),
                                                       "Cannot allocate JSON"));
                        free(json);
                        ok++;
                }
        }
        assert_true(ok < (size_t)VEIL_TEST_MUTATIONS / 4);
}

/* ---- records (veil_rec_*) --------------------------------------------- */

static const veil_rec_t *reencode(struct veil_codec *c, struct veil_buf *b) {
        char err[256] = "";
        const veil_rec_t *r = NULL;
        if (veil_codec_rec_encode(c, b, err, sizeof(err)))
                fail_msg("rec_encode: %s", err);
        if (veil_codec_decode_rec(c, b->data, b->len, &r, err, sizeof(err)))
                fail_msg("decode_rec: %s", err);
        return r;
}

static void test_rec_consent(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("consent.avsc"),
                                            VEIL_FRAMING_CONFLUENT, 5);
        struct veil_buf b = {0};
        veil_rec_t *w = veil_codec_rec_begin(c);
        assert_non_null(w);
        assert_int_equal(veil_rec_set_str(w, "user_id", "u1"), 0);
        assert_int_equal(veil_rec_set_str(w, "kind", "consent"), 0);
        assert_int_equal(veil_rec_set_str(w, "kind", "erasure"), -VEIL_EINVAL);
        assert_int_equal(veil_rec_set_bool(w, "purposes.personalization", 1), 0);
        assert_int_equal(veil_rec_set_bool(w, "purposes.analytics", 1), 0);
        assert_int_equal(veil_rec_set_str(w, "tc_string", "CP-tc"), 0);
        assert_int_equal(veil_rec_set_bool(w, "gpc", 0), 0);
        assert_int_equal(veil_rec_set_str(w, "source", "cmp"), 0);
        assert_int_equal(veil_rec_set_long(w, "ts", 1717000000000), 0);
        assert_int_equal(veil_rec_set_long(w, "nope", 1), -VEIL_ENOENT);
        assert_int_equal(veil_rec_set_long(w, "purposes.nope", 1), -VEIL_ENOENT);
        assert_int_equal(veil_rec_set_long(w, "source", 1), -VEIL_EINVAL);

        const veil_rec_t *r = reencode(c, &b);
        const char *s;
        size_t len;
        int v;
        int64_t l;
        assert_int_equal(b.data[0], 0);
        assert_int_equal(b.data[4], 5);
        assert_int_equal(veil_rec_get_str(r, "user_id", &s, &len), 0);
        assert_string_equal(s, "u1");
        assert_int_equal(len, 2);
        assert_int_equal(veil_rec_get_str(r, "kind", &s, NULL), 0);
        assert_string_equal(s, "consent");
        assert_int_equal(veil_rec_get_bool(r, "purposes.personalization", &v), 0);
        assert_int_equal(v, 1);
        /* training was never set: the Purposes default (false) applies */
        assert_int_equal(veil_rec_get_bool(r, "purposes.training", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(veil_rec_get_bool(r, "purposes.analytics", &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(veil_rec_get_str(r, "tc_string", &s, NULL), 0);
        assert_string_equal(s, "CP-tc");
        assert_int_equal(veil_rec_get_bool(r, "gpc", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(veil_rec_get_long(r, "ts", &l), 0);
        assert_int_equal(l, 1717000000000);
        assert_int_equal(veil_rec_get_long(r, "user_id", &l), -VEIL_EINVAL);
        assert_int_equal(veil_rec_get_long(r, "a..b", &l), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_long(r, "ts.", &l), -VEIL_ENOENT);
        mutate_rec(c, b.data, b.len, 1);

        /* The next record starts from the defaults: nothing of the
         * previous one (another person's) survives. */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "user_id", "u2"), 0);
        assert_int_equal(veil_rec_set_str(w, "kind", "access"), 0);
        assert_int_equal(veil_rec_set_str(w, "source", "support_desk"), 0);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_str(r, "kind", &s, NULL), 0);
        assert_string_equal(s, "access");
        assert_int_equal(veil_rec_get_bool(r, "purposes.training", &v),
                         -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_str(r, "tc_string", &s, NULL),
                         -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_bool(r, "gpc", &v), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_long(r, "ts", &l), 0);
        assert_int_equal(l, 0);

        /* a required string left unset is refused, by name */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "user_id", "u4"), 0);
        char err[256] = "";
        assert_int_equal(veil_codec_rec_encode(c, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "field source was not set"));
        assert_int_equal(veil_rec_set_str(w, "source", ""), 0);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_str(r, "source", &s, &len), 0);
        assert_int_equal(len, 0);

        /* set then null */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "user_id", "u5"), 0);
        assert_int_equal(veil_rec_set_str(w, "source", "app"), 0);
        assert_int_equal(veil_rec_set_str(w, "tc_string", "x"), 0);
        assert_int_equal(veil_rec_set_null(w, "tc_string"), 0);
        assert_int_equal(veil_rec_set_null(w, "source"), -VEIL_EINVAL);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_str(r, "tc_string", &s, NULL),
                         -VEIL_ENOENT);

        char *json = veil_codec_rec_json(c, b.data, b.len);
        assert_non_null(json);
        assert_non_null(strstr(json, "\"kind\": \"consent\""));
        free(json);
        assert_null(veil_codec_rec_json(c, b.data, 3));
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

static void test_rec_consent_enum_default(void **state) {
        (void)state;
        /* kind "objection" from a newer writer, with training true, reads
         * as the reader enum's default: "unknown", which the consent stage
         * rejects; never "consent", which would record a grant. */
        avro_schema_t s = avroc_schema(DATA("consent_v2.avsc"));
        avro_value_iface_t *cls = avro_generic_class_from_schema(s);
        avro_value_t v, f, br, t;
        assert_int_equal(avro_generic_value_new(cls, &v), 0);
        set_str(&v, "user_id", "u3");
        set_str(&v, "source", "app");
        assert_int_equal(avro_value_get_by_name(&v, "kind", &f, NULL), 0);
        assert_int_equal(avro_value_set_enum(&f, 2), 0);
        static const char *const unions[] = {"tc_string", "gpc"};
        for (int i = 0; i < 2; i++) {
                assert_int_equal(avro_value_get_by_name(&v, unions[i], &f, NULL), 0);
                assert_int_equal(avro_value_set_branch(&f, 0, &br), 0);
        }
        assert_int_equal(avro_value_get_by_name(&v, "purposes", &f, NULL), 0);
        assert_int_equal(avro_value_set_branch(&f, 1, &br), 0);
        static const char *const purposes[] = {"personalization", "training",
                                               "analytics"};
        for (int i = 0; i < 3; i++) {
                assert_int_equal(avro_value_get_by_name(&br, purposes[i], &t,
                                                        NULL), 0);
                assert_int_equal(avro_value_set_boolean(&t, i == 1), 0);
        }
        char buf[256];
        avro_writer_t w = avro_writer_memory(buf, sizeof(buf));
        assert_int_equal(avro_value_write(w, &v), 0);
        size_t n = (size_t)avro_writer_tell(w);
        avro_writer_free(w);
        avro_value_decref(&v);
        avro_value_iface_decref(cls);
        avro_schema_decref(s);

        struct veil_config cfg = {0};
        char dir[] = VEIL_SRCDIR, k[] = "",
             v2[] = "tests/unit/data/codec/consent_v2.avsc",
             v1[] = "schemas/consent.avsc";
        struct veil_kvpair ws = {.key = k, .value = v2};
        struct veil_binding b = {.topic = "consent", .schema = v1,
                                 .writer_schemas = &ws, .n_writer_schemas = 1};
        cfg.dir = dir;
        struct veil_codec *c = NULL;
        char err[512] = "";
        if (veil_codec_new(&c, &cfg, &b, err, sizeof(err)))
                fail_msg("%s", err);
        const veil_rec_t *r;
        const char *str;
        int train = 0;
        if (veil_codec_decode_rec(c, buf, n, &r, err, sizeof(err)))
                fail_msg("%s", err);
        assert_int_equal(veil_rec_get_str(r, "kind", &str, NULL), 0);
        assert_string_equal(str, "unknown");
        assert_int_equal(veil_rec_get_bool(r, "purposes.training", &train), 0);
        assert_int_equal(train, 1);
        assert_int_equal(veil_rec_get_str(r, "user_id", &str, NULL), 0);
        assert_string_equal(str, "u3");
        veil_codec_destroy(c);
}

/* A writer enum symbol the reader lacks (no default) is a decode error
 * that names the symbol's index, never the symbol: it is a value, here a
 * quasi-identifying one. */
static void test_rec_enum_error_no_symbol(void **state) {
        (void)state;
        avro_schema_t s = avroc_schema(DATA("place_w.avsc"));
        avro_value_iface_t *cls = avro_generic_class_from_schema(s);
        avro_value_t v, f;
        assert_int_equal(avro_generic_value_new(cls, &v), 0);
        set_str(&v, "id", "p1");
        assert_int_equal(avro_value_get_by_name(&v, "country", &f, NULL), 0);
        assert_int_equal(avro_value_set_enum(&f, 2), 0);
        char buf[64];
        avro_writer_t w = avro_writer_memory(buf, sizeof(buf));
        assert_int_equal(avro_value_write(w, &v), 0);
        size_t n = (size_t)avro_writer_tell(w);
        avro_writer_free(w);
        avro_value_decref(&v);
        avro_value_iface_decref(cls);
        avro_schema_decref(s);

        struct veil_config cfg = {0};
        char dir[] = VEIL_SRCDIR, k[] = "",
             wp[] = "tests/unit/data/codec/place_w.avsc",
             rp[] = "tests/unit/data/codec/place_r.avsc";
        struct veil_kvpair ws = {.key = k, .value = wp};
        struct veil_binding b = {.topic = "places", .schema = rp,
                                 .writer_schemas = &ws, .n_writer_schemas = 1};
        cfg.dir = dir;
        struct veil_codec *c = NULL;
        char err[512] = "";
        if (veil_codec_new(&c, &cfg, &b, err, sizeof(err)))
                fail_msg("%s", err);
        const veil_rec_t *r = NULL;
        assert_int_equal(veil_codec_decode_rec(c, buf, n, &r, err,
                                               sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "enum index 2"));
        assert_non_null(strstr(err, "country"));
        assert_null(strstr(err, "XQ_RARE"));
        veil_codec_destroy(c);
}

/* A record read for a side input refuses a NUL inside a string or a map
 * key, as an event does: plugins read them as C strings ("u1\0x" would
 * be u1), and Avro-C stores keys as C strings ("a\0x" and "a\0y" would
 * be one key). */
static void test_rec_nul_refused(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("access.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        /* subject, ts 1, sections */
        static const unsigned char in_str[] = {6, 'u', 0, 'x', 2, 0};
        static const unsigned char in_key[] = {2, 's', 2, 4,
                                               6, 'a', 0, 'x', 0,
                                               6, 'a', 0, 'y', 0, 0};
        static const unsigned char fine[] = {2, 's', 2, 2, 6, 'a', 'b', 'x',
                                             0, 0};
        const veil_rec_t *r = NULL;
        char err[256] = "";
        assert_int_equal(veil_codec_decode_rec(c, in_str, sizeof(in_str), &r,
                                               err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "NUL"));
        assert_non_null(strstr(err, "subject"));
        assert_int_equal(veil_codec_decode_rec(c, in_key, sizeof(in_key), &r,
                                               err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "NUL"));
        assert_non_null(strstr(err, "sections"));
        if (veil_codec_decode_rec(c, fine, sizeof(fine), &r, err, sizeof(err)))
                fail_msg("%s", err);
        assert_int_equal(veil_rec_map_size(r, "sections"), 1);
        veil_codec_destroy(c);
}

/* A value nested deeper than the encoder goes (a recursive schema lets a
 * plugin build one) is refused naming that limit, not as a mismatch. */
static void test_rec_too_deep(void **state) {
        (void)state;
        char path[] = "/tmp/veil-test-tree-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char schema[] =
                "{\"type\": \"record\", \"name\": \"Tree\", \"fields\": ["
                "{\"name\": \"kids\", \"type\": {\"type\": \"array\", "
                "\"items\": \"Tree\"}, \"default\": []}]}";
        assert_true(write(fd, schema, sizeof(schema) - 1) ==
                    (ssize_t)(sizeof(schema) - 1));
        close(fd);
        struct veil_codec *c = codec_or_die(path, VEIL_FRAMING_RAW, 0);
        struct veil_buf b = {0};
        char err[256] = "";
        for (int levels = 10; levels <= 80; levels += 70) {
                veil_rec_t *h = veil_codec_rec_begin(c);
                for (int i = 0; i < levels; i++)
                        assert_non_null(h = veil_rec_append(h, "kids"));
                int rc = veil_codec_rec_encode(c, &b, err, sizeof(err));
                if (levels == 10) {
                        if (rc)
                                fail_msg("%s", err);
                        continue;
                }
                assert_int_equal(rc, -VEIL_EINVAL);
                assert_non_null(strstr(err, "nested deeper than 64"));
        }
        veil_buf_free(&b);
        veil_codec_destroy(c);
        unlink(path);
}

static void test_rec_recommendation(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("recommendation.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_buf b = {0};
        veil_rec_t *w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "subject", "k1.AbC_-"), 0);
        assert_int_equal(veil_rec_set_str(w, "event_id", "e1"), 0);
        assert_int_equal(veil_rec_set_str(w, "tier", "contextual"), 0);
        assert_int_equal(veil_rec_set_long(w, "model_version", 3), 0);
        assert_int_equal(veil_rec_set_double(w, "epsilon_spent", 0.75), 0);
        assert_int_equal(veil_rec_set_double(w, "delta", 1e-6), 0);
        assert_int_equal(veil_rec_set_long(w, "ts", 99), 0);
        /* more elements than a pool chunk: the first handle must survive */
        veil_rec_t *first = NULL;
        for (int i = 0; i < 40; i++) {
                char id[32];
                veil_rec_t *it = veil_rec_append(w, "items");
                assert_non_null(it);
                if (!first)
                        first = it;
                snprintf(id, sizeof(id), "item-%d", i);
                assert_int_equal(veil_rec_set_str(it, "item_id", id), 0);
                assert_int_equal(veil_rec_set_double(it, "score", 1.0 / (i + 1)),
                                 0);
        }
        assert_int_equal(veil_rec_set_str(first, "item_id", "top"), 0);
        assert_null(veil_rec_append(w, "tier"));
        assert_null(veil_rec_append(w, "nope"));

        const veil_rec_t *r = reencode(c, &b);
        const char *s;
        double d;
        int64_t l;
        assert_int_equal(veil_rec_array_size(r, "items"), 40);
        assert_int_equal(veil_rec_array_size(r, "nope"), 0);
        for (size_t i = 0; i < 40; i++) {
                const veil_rec_t *it = veil_rec_array_at(r, "items", i);
                char id[32];
                assert_non_null(it);
                snprintf(id, sizeof(id), "item-%zu", i);
                assert_int_equal(veil_rec_get_str(it, "item_id", &s, NULL), 0);
                assert_string_equal(s, i ? id : "top");
                assert_int_equal(veil_rec_get_double(it, "score", &d), 0);
                assert_true(d == 1.0 / (double)(i + 1));
        }
        assert_null(veil_rec_array_at(r, "items", 40));
        assert_int_equal(veil_rec_get_str(r, "explanation", &s, NULL), 0);
        assert_string_equal(s, ""); /* the default */
        assert_int_equal(veil_rec_get_long(r, "model_version", &l), 0);
        assert_int_equal(l, 3);
        assert_int_equal(veil_rec_get_double(r, "epsilon_spent", &d), 0);
        assert_true(d == 0.75);
        mutate_rec(c, b.data, b.len, 2);

        /* the next record's array starts empty; a non-private answer
         * says so with a null epsilon, its default */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "subject", "k1.x"), 0);
        assert_int_equal(veil_rec_set_str(w, "event_id", "e2"), 0);
        assert_int_equal(veil_rec_set_str(w, "tier", "none"), 0);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_array_size(r, "items"), 0);
        assert_int_equal(veil_rec_get_double(r, "epsilon_spent", &d),
                         -VEIL_ENOENT);
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "subject", "k1.x"), 0);
        assert_int_equal(veil_rec_set_str(w, "event_id", "e3"), 0);
        assert_int_equal(veil_rec_set_str(w, "tier", "none"), 0);
        assert_int_equal(veil_rec_set_double(w, "epsilon_spent", 2.0), 0);
        assert_int_equal(veil_rec_set_null(w, "epsilon_spent"), 0);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_double(r, "epsilon_spent", &d),
                         -VEIL_ENOENT);
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

static void test_rec_model_update(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("model_update.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_buf b = {0};
        veil_rec_t *w = veil_codec_rec_begin(c);
        float vals[3 * 4];
        for (int i = 0; i < 12; i++)
                vals[i] = (float)i * 0.25f - 1.0f;
        assert_int_equal(veil_rec_set_str(w, "instance", "veil-0"), 0);
        assert_int_equal(veil_rec_set_long(w, "seq", 17), 0);
        assert_int_equal(veil_rec_set_long(w, "chunk", 1), 0);
        assert_int_equal(veil_rec_set_long(w, "chunks", 2), 0);
        assert_int_equal(veil_rec_set_str(w, "block", "item_vectors"), 0);
        assert_int_equal(veil_rec_set_str(w, "block", "weights"), -VEIL_EINVAL);
        assert_int_equal(veil_rec_set_long(w, "rows", 3), 0);
        assert_int_equal(veil_rec_set_long(w, "width", 4), 0);
        assert_int_equal(veil_rec_set_long(w, "width", 1ll << 40), -VEIL_EINVAL);
        assert_int_equal(veil_rec_set_bytes(w, "values", vals, sizeof(vals)), 0);
        assert_int_equal(veil_rec_set_bytes(w, "instance", vals, 4),
                         -VEIL_EINVAL);
        assert_int_equal(veil_rec_set_double(w, "epsilon_spent", 1.5), 0);
        assert_int_equal(veil_rec_set_double(w, "delta", 1e-7), 0);
        assert_int_equal(veil_rec_set_str(w, "mechanism", "tree"), 0);
        for (int row = 0; row < 3; row++) {
                char id[16];
                snprintf(id, sizeof(id), "i%d", row);
                assert_int_equal(veil_rec_set_str(veil_rec_append(w, "item_ids"),
                                                  "", id),
                                 0);
        }
        const veil_rec_t *r = reencode(c, &b);
        const void *got;
        size_t n;
        const char *s;
        assert_int_equal(veil_rec_get_bytes(r, "values", &got, &n), 0);
        assert_int_equal(n, sizeof(vals));
        assert_memory_equal(got, vals, sizeof(vals));
        assert_int_equal(veil_rec_get_bytes(r, "instance", &got, &n),
                         -VEIL_EINVAL);
        assert_int_equal(veil_rec_get_str(r, "block", &s, &n), 0);
        assert_string_equal(s, "item_vectors");
        assert_int_equal(veil_rec_array_size(r, "item_ids"), 3);
        assert_int_equal(veil_rec_get_str(veil_rec_array_at(r, "item_ids", 2),
                                          "", &s, &n),
                         0);
        assert_string_equal(s, "i2");
        mutate_rec(c, b.data, b.len, 3);
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

static void test_rec_audit_access(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("audit.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_buf b = {0};
        veil_rec_t *w = veil_codec_rec_begin(c);
        int v;
        assert_int_equal(veil_rec_set_str(w, "subject", "k1.s"), 0);
        assert_int_equal(veil_rec_set_str(w, "action", "changed"), 0);
        assert_int_equal(veil_rec_set_bool(w, "purposes_after.training", 1), 0);
        assert_int_equal(veil_rec_set_str(w, "source", "cmp"), 0);
        const veil_rec_t *r = reencode(c, &b);
        assert_int_equal(veil_rec_get_bool(r, "purposes_before.training", &v),
                         -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_bool(r, "purposes_after.training", &v), 0);
        assert_int_equal(v, 1);
        veil_codec_destroy(c);

        c = codec_or_die(SCHEMA("access.avsc"), VEIL_FRAMING_RAW, 0);
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "subject", "k1.s"), 0);
        veil_rec_t *sec = veil_rec_map_add(w, "sections", "consent");
        assert_non_null(sec);
        assert_int_equal(veil_rec_map_put(sec, "", "training", "false"), 0);
        assert_int_equal(veil_rec_map_put(sec, "", "since", "2024-05-01"), 0);
        sec = veil_rec_map_add(w, "sections", "context");
        assert_int_equal(veil_rec_map_put(sec, "", "recent", "3 items"), 0);
        assert_int_equal(veil_rec_map_put(w, "subject", "k", "v"), -VEIL_EINVAL);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_map_size(r, "sections"), 2);
        char *json = veil_codec_rec_json(c, b.data, b.len);
        assert_non_null(json);
        assert_non_null(strstr(json, "\"training\": \"false\""));
        assert_non_null(strstr(json, "\"recent\": \"3 items\""));
        free(json);
        mutate_rec(c, b.data, b.len, 4);
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

/* A map key is an Avro string: one that is not UTF-8 is refused on the
 * way out, as a value is, and the message names neither. */
static void test_rec_map_key_not_utf8(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(SCHEMA("access.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_buf b = {0};
        char err[256] = "";
        for (int where = 0; where < 2; where++) {
                veil_rec_t *w = veil_codec_rec_begin(c);
                assert_int_equal(veil_rec_set_str(w, "subject", "k1.s"), 0);
                assert_int_equal(veil_rec_set_long(w, "ts", 1), 0);
                veil_rec_t *sec = veil_rec_map_add(
                        w, "sections", where ? "caf\xe9" : "consent");
                assert_non_null(sec);
                assert_int_equal(veil_rec_map_put(sec, "",
                                                  where ? "k" : "caf\xe9",
                                                  "v"),
                                 0);
                assert_int_equal(veil_codec_rec_encode(c, &b, err,
                                                       sizeof(err)),
                                 -VEIL_EINVAL);
                assert_non_null(strstr(err, "UTF-8"));
                assert_null(strstr(err, "caf"));
                assert_int_equal(b.len, 0);
        }
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

/* A setter that fails (an enum symbol the schema lacks, a long out of an
 * int's range, a NULL key) returns an error and leaves the record as it
 * was: no union switched to a branch it then leaves zeroed, on the way
 * (sub) or at the end (tier, n, m). Flat and Avro-C records alike. */
static void test_rec_failed_set_keeps_union(void **state) {
        (void)state;
        static const char *const schemas[] = {DATA("setfail_flat.avsc"),
                                              DATA("setfail_tree.avsc")};
        for (int t = 0; t < 2; t++) {
                struct veil_codec *c = codec_or_die(schemas[t],
                                                    VEIL_FRAMING_RAW, 0);
                struct veil_buf b = {0};
                char err[256];
                for (int set_first = 0; set_first < 2; set_first++) {
                        veil_rec_t *w = veil_codec_rec_begin(c);
                        if (set_first) {
                                assert_int_equal(
                                        veil_rec_set_str(w, "tier", "gold"), 0);
                                assert_int_equal(veil_rec_set_long(w, "n", 5),
                                                 0);
                        }
                        assert_int_equal(veil_rec_set_str(w, "tier", "bogus"),
                                         -VEIL_EINVAL);
                        assert_int_equal(
                                veil_rec_set_long(w, "n", (int64_t)1 << 40),
                                -VEIL_EINVAL);
                        if (t) {
                                assert_int_equal(
                                        veil_rec_set_str(w, "sub.e", "bogus"),
                                        -VEIL_EINVAL);
                                assert_int_equal(
                                        veil_rec_set_long(w, "sub.k",
                                                          (int64_t)1 << 40),
                                        -VEIL_EINVAL);
                                assert_int_equal(
                                        veil_rec_map_put(w, "m", NULL, "v"),
                                        -VEIL_EINVAL);
                        }
                        if (veil_codec_rec_encode(c, &b, err, sizeof(err)))
                                fail_msg("%s", err);
                        char *json = veil_codec_rec_json(c, b.data, b.len);
                        assert_non_null(json);
                        const char *want_tier =
                                set_first ? "\"tier\": {\"T\": "
                                            "\"gold\"}"
                                          : "\"tier\": null";
                        const char *want_n = set_first
                                                     ? "\"n\": {\"int\": 5}"
                                                     : "\"n\": null";
                        if (!strstr(json, want_tier) || !strstr(json, want_n) ||
                            (t && (!strstr(json, "\"sub\": null") ||
                                   !strstr(json, "\"m\": null"))))
                                fail_msg("schema %d, set first %d: %s", t,
                                         set_first, json);
                        free(json);
                }
                veil_buf_free(&b);
                veil_codec_destroy(c);
        }
}

static void test_rec_kitchen(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(DATA("kitchen.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_buf b = {0};
        char err[256] = "";
        veil_rec_t *w = veil_codec_rec_begin(c);
        /* u has no default: encoding refuses, naming it */
        assert_int_equal(veil_codec_rec_encode(c, &b, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "field u was not set"));
        assert_int_equal(veil_rec_set_long(w, "u", 5), 0);

        const veil_rec_t *r = reencode(c, &b);
        const char *s, *k, *v;
        int64_t l;
        double d;
        int bv;
        /* defaults */
        assert_int_equal(veil_rec_get_long(r, "l", &l), 0);
        assert_int_equal(l, -1);
        assert_int_equal(veil_rec_get_double(r, "f", &d), 0);
        assert_true(d == 0.5);
        assert_int_equal(veil_rec_get_str(r, "s", &s, NULL), 0);
        assert_string_equal(s, "dflt");
        assert_int_equal(veil_rec_get_str(r, "color", &s, NULL), 0);
        assert_string_equal(s, "green");
        assert_int_equal(veil_rec_array_size(r, "nums"), 2);
        assert_int_equal(veil_rec_get_long(veil_rec_array_at(r, "nums", 1), "", &l),
                         0);
        assert_int_equal(l, 2);
        assert_int_equal(veil_rec_map_size(r, "m"), 1);
        assert_int_equal(veil_rec_map_at(r, "m", 0, &k, &v), 0);
        assert_string_equal(k, "k");
        assert_string_equal(v, "v");
        assert_int_equal(veil_rec_map_at(r, "m", 1, &k, &v), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_long(r, "u", &l), 0);
        assert_int_equal(l, 5);
        assert_int_equal(veil_rec_get_long(r, "opt.x", &l), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_double(r, "pos.x", &d), 0);
        assert_true(d == 1.5);
        assert_int_equal(veil_rec_get_long(r, "pos.sub.z", &l), 0);
        assert_int_equal(l, 3);
        char *json = veil_codec_rec_json(c, b.data, b.len);
        assert_non_null(json);
        /* bytes default "\u00ffA\u0001" is three bytes */
        assert_non_null(strstr(json, "\"raw\": \"\\u00FFA\\u0001\""));
        assert_non_null(strstr(json, "\"fx\": \"abcd\""));
        free(json);

        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_long(w, "i", 1ll << 31), -VEIL_EINVAL);
        assert_int_equal(veil_rec_set_long(w, "i", -7), 0);
        assert_int_equal(veil_rec_set_double(w, "f", 1.25), 0);
        assert_int_equal(veil_rec_set_long(w, "d", 3), 0);
        assert_int_equal(veil_rec_set_bool(w, "flag", 5), 0);
        assert_int_equal(veil_rec_set_str(w, "color", "blue"), 0);
        assert_int_equal(veil_rec_set_str(w, "u", "text"), 0);
        assert_int_equal(veil_rec_set_bool(w, "u", 1), -VEIL_EINVAL);
        /* choosing opt's record branch gives y its default */
        assert_int_equal(veil_rec_set_long(w, "opt.x", 11), 0);
        for (int i = 0; i < 3; i++) {
                veil_rec_t *t = veil_rec_append(w, "tags");
                assert_int_equal(veil_rec_set_str(t, "", i ? "b" : "a"), 0);
                assert_int_equal(veil_rec_set_long(t, "", 1), -VEIL_EINVAL);
        }
        veil_rec_t *n = veil_rec_append(w, "nums");
        assert_int_equal(veil_rec_set_long(n, "", 3), 0); /* after 1, 2 */
        veil_rec_t *in = veil_rec_append(w, "inners");
        assert_int_equal(veil_rec_set_str(in, "y", "set"), 0);
        assert_int_equal(veil_rec_map_put(w, "m", "k2", "v2"), 0);
        assert_int_equal(veil_rec_map_put(w, "m", "k", "v1"), 0); /* replace */
        veil_rec_t *nm = veil_rec_map_add(w, "nested", "a");
        assert_int_equal(veil_rec_map_put(nm, "", "x", "1"), 0);

        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_long(r, "i", &l), 0);
        assert_int_equal(l, -7);
        assert_int_equal(veil_rec_get_double(r, "f", &d), 0);
        assert_true(d == 1.25);
        assert_int_equal(veil_rec_get_double(r, "d", &d), 0);
        assert_true(d == 3.0);
        assert_int_equal(veil_rec_get_bool(r, "flag", &bv), 0);
        assert_int_equal(bv, 1);
        assert_int_equal(veil_rec_get_str(r, "color", &s, NULL), 0);
        assert_string_equal(s, "blue");
        assert_int_equal(veil_rec_get_str(r, "u", &s, NULL), 0);
        assert_string_equal(s, "text");
        assert_int_equal(veil_rec_get_long(r, "u", &l), -VEIL_EINVAL);
        assert_int_equal(veil_rec_get_long(r, "opt.x", &l), 0);
        assert_int_equal(l, 11);
        assert_int_equal(veil_rec_get_str(r, "opt.y", &s, NULL), 0);
        assert_string_equal(s, "why");
        assert_int_equal(veil_rec_array_size(r, "tags"), 3);
        assert_int_equal(veil_rec_get_str(veil_rec_array_at(r, "tags", 2), "", &s,
                                          NULL),
                         0);
        assert_string_equal(s, "b");
        assert_int_equal(veil_rec_array_size(r, "nums"), 3);
        assert_int_equal(veil_rec_get_long(veil_rec_array_at(r, "nums", 2), "", &l),
                         0);
        assert_int_equal(l, 3);
        const veil_rec_t *ir = veil_rec_array_at(r, "inners", 0);
        assert_int_equal(veil_rec_get_long(ir, "x", &l), 0);
        assert_int_equal(l, 7); /* default of an appended record */
        assert_int_equal(veil_rec_get_str(ir, "y", &s, NULL), 0);
        assert_string_equal(s, "set");
        assert_int_equal(veil_rec_map_size(r, "m"), 2);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(veil_rec_map_at(r, "m", i, &k, &v), 0);
                assert_string_equal(v, !strcmp(k, "k") ? "v1" : "v2");
        }
        assert_int_equal(veil_rec_map_size(r, "nested"), 1);
        mutate_rec(c, b.data, b.len, 5);

        /* null through the union, then absent */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_null(w, "u"), 0);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_str(r, "u", &s, NULL), -VEIL_ENOENT);
        assert_int_equal(veil_rec_set_str(NULL, "u", "x"), -VEIL_EINVAL);
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

/* Whether text occurs in the bytes of b. */
static int holds(const struct veil_buf *b, const char *text) {
        size_t n = strlen(text);
        for (size_t i = 0; n && i + n <= b->len; i++)
                if (!memcmp(b->data + i, text, n))
                        return 1;
        return 0;
}

/* The encode of record that must be refused for its field `field`, and
 * leaves nothing in b. */
static void assert_unset(struct veil_codec *c, struct veil_buf *b,
                         const char *field) {
        char err[256] = "", want[64];
        snprintf(want, sizeof(want), "field %s was not set", field);
        assert_int_equal(veil_codec_rec_encode(c, b, err, sizeof(err)),
                         -VEIL_EINVAL);
        if (!strstr(err, want))
                fail_msg("want \"%s\", got \"%s\"", want, err);
        assert_int_equal(b->len, 0);
}

/* A union without default that a record does not set is unset in it,
 * whatever the previous record (another person's) held there: it reads as
 * absent and the record is refused naming it, as in a codec's first record
 * and in flat records. Avro-C's reset keeps a union's branch with its value
 * zeroed, and a string's text in its buffer: a long never set was written
 * as the previous record's branch holding 0, the getters read the previous
 * record's strings, and a record branch chosen again had its fields zeroed
 * instead of its defaults. The schema has a record branch, so these
 * records are Avro-C values. */
static void test_rec_union_not_carried(void **state) {
        (void)state;
        struct veil_codec *c = codec_or_die(DATA("unions.avsc"),
                                            VEIL_FRAMING_RAW, 0);
        struct veil_buf b = {0};
        const char *s;
        size_t n;
        int64_t l;
        double d;
        int bv;

        /* A: every field set, A's identifier in every string */
        veil_rec_t *w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "u", SECRET), 0);
        assert_int_equal(veil_rec_set_bool(w, "nb", 1), 0);
        assert_int_equal(veil_rec_set_str(w, "s", SECRET), 0);
        assert_int_equal(veil_rec_set_long(w, "p.v", 4343), 0);
        assert_int_equal(veil_rec_set_long(w, "r.x", 99), 0);
        assert_int_equal(veil_rec_set_str(w, "r.t", SECRET), 0);
        assert_int_equal(veil_rec_set_long(w, "r.w", 4242), 0);
        const veil_rec_t *r = reencode(c, &b);
        assert_int_equal(veil_rec_get_str(r, "u", &s, NULL), 0);
        assert_string_equal(s, SECRET);
        assert_int_equal(veil_rec_get_str(r, "r.t", &s, NULL), 0);
        assert_string_equal(s, SECRET);

        /* B sets nothing: nothing of A's reads back, and the unions
         * without default are refused one by one */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_get_str(w, "u", &s, NULL), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_bool(w, "nb", &bv), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_long(w, "p.v", &l), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_long(w, "r.x", &l), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_str(w, "r.t", &s, NULL), -VEIL_ENOENT);
        /* a string never set reads "", as in flat records */
        s = NULL;
        n = 99;
        assert_int_equal(veil_rec_get_str(w, "s", &s, &n), 0);
        assert_string_equal(s, "");
        assert_int_equal(n, 0);
        assert_unset(c, &b, "u");
        assert_int_equal(veil_rec_set_null(w, "u"), 0);
        assert_unset(c, &b, "nb");
        assert_int_equal(veil_rec_set_double(w, "nb", 0.5), 0);
        assert_unset(c, &b, "s");
        assert_int_equal(veil_rec_set_str(w, "s", "b"), 0);
        assert_unset(c, &b, "p.v");
        assert_int_equal(veil_rec_set_null(w, "p.v"), 0);
        assert_unset(c, &b, "r");
        /* choosing r's record gives it its defaults, not A's x and t; its
         * own union w is unset still */
        assert_int_equal(veil_rec_set_long(w, "r.x", 8), 0);
        assert_int_equal(veil_rec_get_str(w, "r.t", &s, NULL), 0);
        assert_string_equal(s, "tee");
        assert_int_equal(veil_rec_get_long(w, "r.w", &l), -VEIL_ENOENT);
        assert_unset(c, &b, "r.w");
        assert_int_equal(veil_rec_set_long(w, "r.w", 1), 0);
        r = reencode(c, &b);
        assert_false(holds(&b, SECRET));
        assert_int_equal(veil_rec_get_str(r, "u", &s, NULL), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_double(r, "nb", &d), 0);
        assert_true(d == 0.5);
        assert_int_equal(veil_rec_get_str(r, "s", &s, NULL), 0);
        assert_string_equal(s, "b");
        assert_int_equal(veil_rec_get_long(r, "r.x", &l), 0);
        assert_int_equal(l, 8);
        assert_int_equal(veil_rec_get_str(r, "r.t", &s, NULL), 0);
        assert_string_equal(s, "tee");
        assert_int_equal(veil_rec_get_long(r, "r.w", &l), 0);
        assert_int_equal(l, 1);

        /* C: a long in u, a double in nb */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_long(w, "u", 4242424242LL), 0);
        assert_int_equal(veil_rec_set_double(w, "nb", 2.5), 0);
        assert_int_equal(veil_rec_set_str(w, "s", "c"), 0);
        assert_int_equal(veil_rec_set_null(w, "p.v"), 0);
        assert_int_equal(veil_rec_set_null(w, "r"), 0);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_long(r, "u", &l), 0);
        assert_int_equal(l, 4242424242LL);

        /* D sets neither: refused, not written as C's branches holding 0 */
        w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_get_long(w, "u", &l), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_double(w, "nb", &d), -VEIL_ENOENT);
        assert_int_equal(veil_rec_set_str(w, "s", "d"), 0);
        assert_int_equal(veil_rec_set_null(w, "p.v"), 0);
        assert_int_equal(veil_rec_set_null(w, "r"), 0);
        assert_unset(c, &b, "u");
        assert_int_equal(veil_rec_set_null(w, "u"), 0);
        assert_unset(c, &b, "nb");
        assert_int_equal(veil_rec_set_bool(w, "nb", 0), 0);
        r = reencode(c, &b);
        assert_int_equal(veil_rec_get_long(r, "u", &l), -VEIL_ENOENT);
        assert_int_equal(veil_rec_get_bool(r, "nb", &bv), 0);
        assert_int_equal(bv, 0);
        char *json = veil_codec_rec_json(c, b.data, b.len);
        assert_non_null(json);
        assert_non_null(strstr(json, "\"u\": null"));
        assert_non_null(strstr(json, "\"nb\": {\"boolean\": false}"));
        free(json);
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_schemas_load),
                cmocka_unit_test(test_not_an_event_schema),
                cmocka_unit_test(test_event_names_other_types),
                cmocka_unit_test(test_pii_fields),
                cmocka_unit_test(test_event_roundtrip),
                cmocka_unit_test(test_event_matches_avro_c),
                cmocka_unit_test(test_event_older_schema),
                cmocka_unit_test(test_incompatible_writers),
                cmocka_unit_test(test_writer_union_branch),
                cmocka_unit_test(test_confluent_framing),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_hostile_lengths),
                cmocka_unit_test(test_zero_size_items),
                cmocka_unit_test(test_generic_memory_bound),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_mutations),
                cmocka_unit_test(test_rec_consent),
                cmocka_unit_test(test_rec_consent_enum_default),
                cmocka_unit_test(test_decode_arena_cap),
                cmocka_unit_test(test_rec_enum_error_no_symbol),
                cmocka_unit_test(test_rec_map_key_not_utf8),
                cmocka_unit_test(test_rec_failed_set_keeps_union),
                cmocka_unit_test(test_rec_nul_refused),
                cmocka_unit_test(test_rec_too_deep),
                cmocka_unit_test(test_rec_recommendation),
                cmocka_unit_test(test_rec_model_update),
                cmocka_unit_test(test_rec_audit_access),
                cmocka_unit_test(test_rec_kitchen),
                cmocka_unit_test(test_rec_union_not_carried),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

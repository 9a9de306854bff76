/*
 * test_rec_paths.c — the path and element caches of rec.c must never
 * change what a veil_rec_* call does: a path in a buffer that is rewritten
 * between calls, more paths than the cache holds, element handles across
 * appends, and the encoding byte for byte against Avro-C's own writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"

#ifndef VEIL_SRCDIR
#define VEIL_SRCDIR "."
#endif
#define SCHEMA(n) VEIL_SRCDIR "/schemas/" n

/* config.c has the real one when the test links the whole core. */
__attribute__((weak)) char *veil_config_path(const struct veil_config *cfg,
                                             const char *p) {
        (void)cfg;
        return strdup(p);
}

static struct veil_codec *codec(const char *path) {
        struct veil_codec *c = NULL;
        char err[512] = "";
        if (veil_codec_new_file(&c, path, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err)))
                fail_msg("%s: %s", path, err);
        return c;
}

static const veil_rec_t *reencode(struct veil_codec *c, struct veil_buf *b) {
        char err[256] = "";
        const veil_rec_t *r = NULL;
        if (veil_codec_rec_encode(c, b, err, sizeof(err)))
                fail_msg("rec_encode: %s", err);
        if (veil_codec_decode_rec(c, b->data, b->len, &r, err, sizeof(err)))
                fail_msg("decode_rec: %s", err);
        return r;
}

/* One buffer, three paths in turn, as plugins/consent builds them: the
 * address is the same every time, the field is not. */
static void test_same_address_other_path(void **state) {
        (void)state;
        struct veil_codec *c = codec(SCHEMA("consent.avsc"));
        struct veil_buf b = {0};
        static const char *const purpose[] = {"personalization", "training",
                                              "analytics"};
        for (int round = 0; round < 3; round++) {
                veil_rec_t *w = veil_codec_rec_begin(c);
                char p[64];
                assert_int_equal(veil_rec_set_str(w, "user_id", "u1"), 0);
                assert_int_equal(veil_rec_set_str(w, "kind", "consent"), 0);
                assert_int_equal(veil_rec_set_str(w, "source", "cmp"), 0);
                assert_int_equal(veil_rec_set_long(w, "ts", 1), 0);
                for (int i = 0; i < 3; i++) {
                        snprintf(p, sizeof(p), "purposes.%s", purpose[i]);
                        assert_int_equal(
                                veil_rec_set_bool(w, p, i == round), 0);
                }
                /* a path that no longer names a field fails, cached or not */
                snprintf(p, sizeof(p), "purposes.nope");
                assert_int_equal(veil_rec_set_bool(w, p, 1), -VEIL_ENOENT);
                const veil_rec_t *r = reencode(c, &b);
                for (int i = 0; i < 3; i++) {
                        int v = -1;
                        snprintf(p, sizeof(p), "purposes.%s", purpose[i]);
                        assert_int_equal(veil_rec_get_bool(r, p, &v), 0);
                        assert_int_equal(v, i == round);
                }
        }
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

/* The recommendation built through the SDK, element handles kept across
 * appends that move the array, encodes as Avro-C writes the same value. */
static void test_matches_avro_c(void **state) {
        (void)state;
        struct veil_codec *c = codec(SCHEMA("recommendation.avsc"));
        struct veil_buf b = {0};
        veil_rec_t *h[64];
        for (int round = 0; round < 2; round++) {
                veil_rec_t *w = veil_codec_rec_begin(c);
                assert_int_equal(veil_rec_set_str(w, "subject", "k1.s"), 0);
                assert_int_equal(veil_rec_set_str(w, "event_id", "e"), 0);
                for (int i = 0; i < 64; i++) {
                        char id[16];
                        h[i] = veil_rec_append(w, "items");
                        assert_non_null(h[i]);
                        snprintf(id, sizeof(id), "i%d", i);
                        assert_int_equal(veil_rec_set_str(h[i], "item_id", id),
                                         0);
                }
                /* set after every append: each handle found again */
                for (int i = 63; i >= 0; i--)
                        assert_int_equal(
                                veil_rec_set_double(h[i], "score", i * 0.5), 0);
                assert_int_equal(veil_rec_set_str(w, "tier", "none"), 0);
                assert_int_equal(veil_rec_set_long(w, "ts", 7), 0);
                if (round)
                        assert_int_equal(
                                veil_rec_set_double(w, "epsilon_spent", 1.5),
                                0);
                char err[256];
                assert_int_equal(veil_codec_rec_encode(c, &b, err,
                                                       sizeof(err)),
                                 0);

                /* the same record through Avro-C */
                FILE *f = fopen(SCHEMA("recommendation.avsc"), "rb");
                static char text[16384];
                assert_non_null(f);
                size_t tn = fread(text, 1, sizeof(text), f);
                fclose(f);
                avro_schema_t s;
                assert_int_equal(avro_schema_from_json_length(text, tn, &s), 0);
                avro_value_iface_t *cls = avro_generic_class_from_schema(s);
                avro_value_t v, fv, e, x;
                avro_generic_value_new(cls, &v);
                avro_value_get_by_name(&v, "subject", &fv, NULL);
                avro_value_set_string(&fv, "k1.s");
                avro_value_get_by_name(&v, "event_id", &fv, NULL);
                avro_value_set_string(&fv, "e");
                avro_value_get_by_name(&v, "items", &fv, NULL);
                for (int i = 0; i < 64; i++) {
                        char id[16];
                        snprintf(id, sizeof(id), "i%d", i);
                        avro_value_append(&fv, &e, NULL);
                        avro_value_get_by_name(&e, "item_id", &x, NULL);
                        avro_value_set_string(&x, id);
                        avro_value_get_by_name(&e, "score", &x, NULL);
                        avro_value_set_double(&x, i * 0.5);
                }
                avro_value_get_by_name(&v, "tier", &fv, NULL);
                avro_value_set_string(&fv, "none");
                avro_value_get_by_name(&v, "explanation", &fv, NULL);
                avro_value_set_string(&fv, "");
                avro_value_get_by_name(&v, "model_version", &fv, NULL);
                avro_value_set_long(&fv, 0);
                avro_value_get_by_name(&v, "epsilon_spent", &fv, NULL);
                if (round) {
                        avro_value_set_branch(&fv, 1, &x);
                        avro_value_set_double(&x, 1.5);
                } else {
                        avro_value_set_branch(&fv, 0, &x);
                }
                avro_value_get_by_name(&v, "delta", &fv, NULL);
                avro_value_set_double(&fv, 0);
                avro_value_get_by_name(&v, "ts", &fv, NULL);
                avro_value_set_long(&fv, 7);
                static char want[8192];
                avro_writer_t aw = avro_writer_memory(want, sizeof(want));
                assert_int_equal(avro_value_write(aw, &v), 0);
                assert_int_equal(b.len, (size_t)avro_writer_tell(aw));
                assert_memory_equal(b.data, want, b.len);
                avro_writer_free(aw);
                avro_value_decref(&v);
                avro_value_iface_decref(cls);
                avro_schema_decref(s);
        }
        veil_buf_free(&b);
        veil_codec_destroy(c);
}

/* More distinct paths than the cache has slots: every one still resolves,
 * and the cached ones keep theirs. */
static void test_many_paths(void **state) {
        (void)state;
        struct veil_codec *c = codec(SCHEMA("recommendation.avsc"));
        struct veil_buf b = {0};
        veil_rec_t *w = veil_codec_rec_begin(c);
        for (int i = 0; i < 600; i++) {
                char p[48];
                snprintf(p, sizeof(p), "no_such_field_%d", i);
                assert_int_equal(veil_rec_set_long(w, p, i), -VEIL_ENOENT);
                assert_int_equal(veil_rec_set_long(w, "ts", i), 0);
        }
        assert_int_equal(veil_rec_set_str(w, "subject", "k1.s"), 0);
        assert_int_equal(veil_rec_set_str(w, "tier", "none"), 0);
        assert_int_equal(veil_rec_set_str(w, "event_id", "e"), 0);
        const veil_rec_t *r = reencode(c, &b);
        int64_t l = 0;
        assert_int_equal(veil_rec_get_long(r, "ts", &l), 0);
        assert_int_equal(l, 599);

        veil_buf_free(&b);
        veil_codec_destroy(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_same_address_other_path),
                cmocka_unit_test(test_matches_avro_c),
                cmocka_unit_test(test_many_paths),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

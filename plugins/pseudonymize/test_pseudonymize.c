/*
 * test_pseudonymize.c — the pseudonymize plugin through the host: a real
 * pipeline (pseudonymize → passthrough) on events, with the output read
 * back by the codec and by a byte scan; the policies' refusals; the lint
 * and notice declarations; the keygen command.
 *
 * Expected pseudonyms come from a second keyring loaded from the same key
 * file, so the test checks the plugin's choice of key and domain, not a
 * copy of its own output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "arena.h"
#include "codec.h"
#include "config.h"
#include "keyring.h"
#include "keys.h"
#include "lint.h"
#include "notice.h"
#include "pipeline.h"
#include "plugin.h"

#define MAX_OUT 64
#define SCHEMA VEIL_SRCDIR "/schemas/interaction.avsc"

struct out {
        char topic[64];
        char key[128];
        unsigned char *val;
        size_t len;
};

struct fx {
        char dir[64], key1[96], key2[96];
        struct veil_config *cfg;
        struct veil_keyring *kr;
        struct veil_pipeline *p;
        struct out out[MAX_OUT];
        size_t n_out;
        struct veil_codec *dec;
        struct veil_arena arena;
        struct veil_event ev[MAX_OUT]; /* decoded outputs */
        char err[4096];
};

static void write_key(const char *path, char fill) {
        unsigned char k[48];
        memset(k, fill, sizeof(k));
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(k, 1, sizeof(k), f), sizeof(k));
        fclose(f);
        assert_int_equal(chmod(path, 0600), 0);
}

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));
        strcpy(f->dir, "/tmp/veil-pz-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->key1, sizeof(f->key1), "%s/k1", f->dir);
        snprintf(f->key2, sizeof(f->key2), "%s/k2", f->dir);
        write_key(f->key1, 'a');
        write_key(f->key2, 'b');
        char err[512];
        assert_int_equal(veil_codec_new_file(&f->dec, SCHEMA, VEIL_FRAMING_RAW,
                                             -1, err, sizeof(err)),
                         0);
        veil_arena_init(&f->arena, 1 << 16, 0);
        *state = f;
        return 0;
}

static void close_pipeline(struct fx *f) {
        veil_pipeline_destroy(f->p);
        veil_keyring_destroy(f->kr);
        veil_config_destroy(f->cfg);
        f->p = NULL;
        f->kr = NULL;
        f->cfg = NULL;
        for (size_t i = 0; i < f->n_out; i++)
                free(f->out[i].val);
        f->n_out = 0;
}

static int teardown(void **state) {
        struct fx *f = *state;
        close_pipeline(f);
        veil_codec_destroy(f->dec);
        veil_arena_free(&f->arena);
        unlink(f->key1);
        unlink(f->key2);
        rmdir(f->dir);
        free(f);
        return 0;
}

static int sink(void *ctx, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        struct fx *f = ctx;
        (void)dl;
        assert_true(f->n_out < MAX_OUT);
        struct out *o = &f->out[f->n_out++];
        snprintf(o->topic, sizeof(o->topic), "%s", topic);
        snprintf(o->key, sizeof(o->key), "%.*s", (int)key_len,
                 (const char *)key);
        o->val = malloc(value_len ? value_len : 1);
        memcpy(o->val, value, value_len);
        o->len = value_len;
        return 0;
}

/* A pipeline pseudonymize(with) → passthrough. keys: "" for none, "k1",
 * or "k2" (both files, k2 active). Returns veil_pipeline_new's code. */
static int open_pipeline(struct fx *f, const char *with, const char *keys) {
        char yaml[4096], keysec[512] = "";
        if (!strcmp(keys, "k1"))
                snprintf(keysec, sizeof(keysec),
                         "keys: {active: k1, files: {k1: %s}}\n", f->key1);
        else if (!strcmp(keys, "k2"))
                snprintf(keysec, sizeof(keysec),
                         "keys: {active: k2, files: {k1: %s, k2: %s}}\n",
                         f->key1, f->key2);
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../schemas/interaction.avsc}\n"
                 "outputs:\n"
                 "  events: {topic: out, schema: "
                 "../../schemas/interaction.avsc}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugins:\n"
                 "  - use: pseudonymize\n"
                 "    with: %s\n"
                 "  - use: passthrough\n"
                 "%s",
                 with, keysec);
        assert_int_equal(veil_config_parse(&f->cfg,
                                           VEIL_SRCDIR "/tests/pipelines/t.yaml",
                                           yaml, strlen(yaml), f->err,
                                           sizeof(f->err)),
                         0);
        assert_int_equal(veil_keys_load(f->cfg, &f->kr, f->err,
                                        sizeof(f->err)),
                         0);
        char *path[] = {VEIL_PLUGIN_DIR_BUILD};
        struct veil_pipeline_opts o = {path, 1, f->kr, 0};
        int rc = veil_pipeline_new(&f->p, f->cfg, &o, f->err, sizeof(f->err));
        if (rc == 0)
                veil_pipeline_set_sink(f->p, (struct veil_sink){sink, f});
        return rc;
}

/* Runs events through and decodes what came out on the events topic. */
static size_t run(struct fx *f, const struct veil_event *in, size_t n) {
        veil_pipeline_batch_begin(f->p);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(veil_pipeline_batch_add_event(f->p, &in[i]),
                                 1);
        int rc = veil_pipeline_batch_run(f->p, f->err, sizeof(f->err));
        if (rc)
                fprintf(stderr, "%s\n", f->err);
        assert_int_equal(rc, 0);
        veil_arena_reset(&f->arena);
        size_t k = 0;
        for (size_t i = 0; i < f->n_out; i++) {
                if (strcmp(f->out[i].topic, "out"))
                        continue;
                char err[512];
                assert_int_equal(veil_codec_decode_event(
                                         f->dec, f->out[i].val, f->out[i].len,
                                         &f->ev[k], &f->arena, err,
                                         sizeof(err)),
                                 0);
                k++;
        }
        return k;
}

static int output_contains(const struct fx *f, const char *needle) {
        for (size_t i = 0; i < f->n_out; i++) {
                if (memmem(f->out[i].val, f->out[i].len, needle,
                           strlen(needle)) ||
                    strstr(f->out[i].key, needle))
                        return 1;
        }
        return 0;
}

/* The pseudonym a keyring built from `keyfile` gives under `domain`. */
static void expect_pseudonym(const char *keyfile, const char *id,
                             const char *domain, const char *raw, char *out) {
        struct veil_keyring *kr;
        char err[256];
        assert_int_equal(veil_keyring_new(&kr, err, sizeof(err)), 0);
        assert_int_equal(veil_keyring_add_file(kr, id, keyfile, err,
                                               sizeof(err)),
                         0);
        assert_true(veil_keyring_pseudonym(kr, domain, raw, strlen(raw), out,
                                           VEIL_PSEUDONYM_MAX) > 0);
        veil_keyring_destroy(kr);
}

static const char UA_CHROME[] =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
static const char UA_IPHONE[] =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) "
        "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 "
        "Mobile/15E148 Safari/604.1";

static struct veil_event event(const char *id, const char *user) {
        struct veil_event e;
        memset(&e, 0, sizeof(e));
        e.event_id = id;
        e.user_id = user;
        e.ts_ms = 1700000123456;
        e.type = "view";
        e.item_id = "item-1";
        e.gpc = -1;
        return e;
}

/* ---- default policies ---- */

static void test_defaults(void **state) {
        struct fx *f = *state;
        static struct veil_kv attrs[] = {{"page", "home"},
                                         {"email", "alice@example.org"}};
        struct veil_event in[4];
        in[0] = event("e1", "alice-raw-id");
        in[0].tc_string = "CPzHq4APzHq4AAGABCENAzCsAP_AAH_AAAqIHNNf";
        in[0].ctx.device = "Mobile";
        in[0].ctx.ip = "203.0.113.77";
        in[0].ctx.user_agent = UA_CHROME;
        in[0].ctx.has_geo = 1;
        in[0].ctx.lat = 48.8584;
        in[0].ctx.lon = 2.2945;
        in[0].ctx.country = "FR";
        in[0].ctx.session_id = "session-raw-42";
        in[0].ctx.timezone = "Europe/Paris";
        in[0].ctx.attrs = attrs;
        in[0].ctx.n_attrs = 2;
        in[1] = event("e2", "bob-raw-id");
        in[1].ctx.device = "iPhone 15 Pro";
        in[1].ctx.ip = "2001:db8:abcd:12:1::5";
        in[1].ctx.user_agent = UA_IPHONE;
        in[1].ctx.geohash = "u09tunquc";
        in[2] = event("e3", "carol-raw-id");
        in[2].ctx.device = "Phone";
        in[3] = event("e4", "dan-raw-id");
        in[3].ctx.device = "laptop";

        assert_int_equal(open_pipeline(f, "{}", "k1"), 0);
        assert_int_equal(run(f, in, 4), 4);
        const struct veil_event *a = &f->ev[0], *b = &f->ev[1];
        char want[VEIL_PSEUDONYM_MAX];

        /* user_id: the subject pseudonym, also the record key. */
        expect_pseudonym(f->key1, "k1", "subject", "alice-raw-id", want);
        assert_string_equal(a->user_id, want);
        assert_string_equal(f->out[0].key, want);
        assert_int_equal(strncmp(want, "k1.", 3), 0);
        assert_int_equal(strlen(want), 3 + 22);
        expect_pseudonym(f->key1, "k1", "subject", "bob-raw-id", want);
        assert_string_equal(b->user_id, want);
        /* session_id: its own domain, so not the subject function. */
        expect_pseudonym(f->key1, "k1", "context.session_id", "session-raw-42",
                         want);
        assert_string_equal(a->ctx.session_id, want);
        expect_pseudonym(f->key1, "k1", "subject", "session-raw-42", want);
        assert_string_not_equal(a->ctx.session_id, want);
        assert_null(b->ctx.session_id);
        /* Generalized. */
        assert_string_equal(a->ctx.ip, "203.0.113.0");
        assert_string_equal(b->ctx.ip, "2001:db8:ab00::");
        assert_string_equal(a->ctx.user_agent, "Chrome 120 / Windows / desktop");
        assert_string_equal(b->ctx.user_agent, "Safari 17 / iOS / mobile");
        assert_false(a->ctx.has_geo);
        assert_string_equal(a->ctx.geohash, "u09tu");
        assert_string_equal(b->ctx.geohash, "u09tu");
        assert_string_equal(a->ctx.device, "mobile");
        assert_string_equal(b->ctx.device, "other");
        /* The context stage's words: a phone stays mobile, a laptop a
         * desktop (they were cut to "other" before the context read them). */
        assert_string_equal(f->ev[2].ctx.device, "mobile");
        assert_string_equal(f->ev[3].ctx.device, "desktop");
        /* Dropped. */
        assert_null(a->ctx.country);
        assert_null(a->ctx.timezone);
        assert_null(a->tc_string);
        assert_int_equal(a->ctx.n_attrs, 0);
        /* Kept. */
        assert_string_equal(a->event_id, "e1");
        assert_int_equal(a->ts_ms, 1700000123456);
        assert_string_equal(a->item_id, "item-1");
        /* Not a byte of a raw value anywhere in what left. */
        static const char *const raw[] = {
                "alice-raw-id", "bob-raw-id", "session-raw-42", "203.0.113.77",
                "abcd:12", "Mozilla", "Europe/Paris", "alice@example.org",
                "u09tun", "CPzHq4"};
        for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
                assert_false(output_contains(f, raw[i]));
        close_pipeline(f);
}

/* ---- configured policies ---- */

static void test_configured(void **state) {
        struct fx *f = *state;
        static struct veil_kv attrs[] = {{"page", "home"},
                                         {"email", "alice@example.org"},
                                         {"arm", "b"}};
        struct veil_event in = event("e1", "alice");
        in.ctx.ip = "198.51.100.200";
        in.ctx.has_geo = 1;
        in.ctx.lat = 48.8584;
        in.ctx.lon = 2.2945;
        in.ctx.country = "FR";
        in.ctx.timezone = "Europe/Paris";
        in.ctx.device = "tablet";
        in.ctx.user_agent = UA_CHROME;
        in.ctx.session_id = "s1";
        in.ctx.attrs = attrs;
        in.ctx.n_attrs = 3;
        in.tc_string = "CPzHq4AP";
        assert_int_equal(
                open_pipeline(f,
                              "{user_id: drop, event_id: pseudonym, ts: "
                              "'bucket_time:1h', context.ip: "
                              "'truncate_ip:/16,/32', context.lat: "
                              "'geohash:3', context.country: 'keep: shop "
                              "country', context.timezone: pseudonym, "
                              "context.device: 'keep: five classes', "
                              "context.user_agent: drop, context.session_id: "
                              "drop, tc_string: keep, context.attrs: [page, "
                              "arm]}",
                              "k1"),
                0);
        assert_int_equal(run(f, &in, 1), 1);
        const struct veil_event *a = &f->ev[0];
        char want[VEIL_PSEUDONYM_MAX];
        assert_string_equal(a->user_id, ""); /* required by the schema */
        expect_pseudonym(f->key1, "k1", "event_id", "e1", want);
        assert_string_equal(a->event_id, want);
        expect_pseudonym(f->key1, "k1", "context.timezone", "Europe/Paris",
                         want);
        assert_string_equal(a->ctx.timezone, want);
        assert_int_equal(a->ts_ms, 1700000123456 - 1700000123456 % 3600000);
        assert_string_equal(a->ctx.ip, "198.51.0.0");
        assert_string_equal(a->ctx.geohash, "u09");
        assert_false(a->ctx.has_geo);
        assert_string_equal(a->ctx.country, "FR");
        assert_string_equal(a->ctx.device, "tablet");
        assert_null(a->ctx.user_agent);
        assert_null(a->ctx.session_id);
        assert_string_equal(a->tc_string, "CPzHq4AP");
        assert_int_equal(a->ctx.n_attrs, 2);
        assert_string_equal(a->ctx.attrs[0].key, "page");
        assert_string_equal(a->ctx.attrs[1].key, "arm");
        assert_false(output_contains(f, "alice@example.org"));
        close_pipeline(f);
}

/* What cannot be coarsened is dropped, never passed on. */
static void test_unreadable_values(void **state) {
        struct fx *f = *state;
        struct veil_event in = event("e1", "alice");
        in.ctx.ip = "not-an-ip 10.1.2.3";
        in.ctx.has_geo = 1;
        in.ctx.lat = 91.5; /* out of range */
        in.ctx.lon = 2.0;
        in.ctx.geohash = "u09t!secret";
        assert_int_equal(open_pipeline(f, "{}", "k1"), 0);
        assert_int_equal(run(f, &in, 1), 1);
        assert_null(f->ev[0].ctx.ip);
        assert_false(f->ev[0].ctx.has_geo);
        assert_null(f->ev[0].ctx.geohash);
        assert_false(output_contains(f, "10.1.2.3"));
        assert_false(output_contains(f, "secret"));
        close_pipeline(f);
}

/* A user agent is the producer's text: a "version" longer than any
 * browser's is data it chose (here 17 bits after a user id) and leaves as
 * no version; real ones are kept. */
static void test_user_agent_version(void **state) {
        struct fx *f = *state;
        struct veil_event in[3];
        in[0] = event("e1", "alice");
        in[0].ctx.user_agent = "MyApp uid 4242 Chrome/99999";
        in[1] = event("e2", "bob");
        in[1].ctx.user_agent = "MyApp uid 4242 Chrome/1234.5";
        in[2] = event("e3", "carol");
        in[2].ctx.user_agent = UA_CHROME;
        assert_int_equal(open_pipeline(f, "{}", "k1"), 0);
        assert_int_equal(run(f, in, 3), 3);
        assert_string_equal(f->ev[0].ctx.user_agent, "Chrome / Other / other");
        assert_string_equal(f->ev[1].ctx.user_agent, "Chrome / Other / other");
        assert_string_equal(f->ev[2].ctx.user_agent,
                            "Chrome 120 / Windows / desktop");
        assert_false(output_contains(f, "99999"));
        assert_false(output_contains(f, "1234"));
        close_pipeline(f);
}

/* ---- precise geolocation ---- */

static void test_special_feature_1(void **state) {
        struct fx *f = *state;
        struct veil_event in[2];
        in[0] = event("e1", "alice");
        in[1] = event("e2", "bob");
        for (int i = 0; i < 2; i++) {
                in[i].ctx.has_geo = 1;
                in[i].ctx.lat = 48.8584;
                in[i].ctx.lon = 2.2945;
        }
        in[0].special_features = 1u; /* consented to precise geolocation */
        in[1].special_features = 2u; /* another feature only */
        assert_int_equal(open_pipeline(f,
                                       "{context.lat: 'geohash:8', "
                                       "require_special_feature_1: true}",
                                       "k1"),
                         0);
        assert_int_equal(run(f, in, 2), 2);
        assert_string_equal(f->ev[0].ctx.geohash, "u09tunqu");
        assert_string_equal(f->ev[1].ctx.geohash, "u09tun");
        close_pipeline(f);

        /* Kept coordinates and a kept front-end geohash are as precise as
         * a location gets: with the option, kept only for events with
         * special feature 1, the others get the coarse cell as for
         * geohash:8. */
        in[0].ctx.geohash = "u09tunqu12";
        in[1].ctx.geohash = "u09tunqu12";
        assert_int_equal(open_pipeline(f,
                                       "{context.lat: 'keep: store finder', "
                                       "require_special_feature_1: true}",
                                       "k1"),
                         0);
        assert_int_equal(run(f, in, 2), 2);
        assert_true(f->ev[0].ctx.has_geo);
        assert_true(f->ev[0].ctx.lat == 48.8584);
        assert_true(f->ev[0].ctx.lon == 2.2945);
        assert_string_equal(f->ev[0].ctx.geohash, "u09tunqu12");
        assert_false(f->ev[1].ctx.has_geo);
        assert_true(f->ev[1].ctx.lat == 0 && f->ev[1].ctx.lon == 0);
        assert_string_equal(f->ev[1].ctx.geohash, "u09tun");
        close_pipeline(f);
        /* The geohash field alone kept: lat/lon as geohash:5 for everyone,
         * the front end's cell kept with consent, cut to 6 without. */
        in[0].ctx.has_geo = in[1].ctx.has_geo = 0;
        assert_int_equal(open_pipeline(f,
                                       "{context.geohash: 'keep: store "
                                       "finder', require_special_feature_1: "
                                       "true}",
                                       "k1"),
                         0);
        assert_int_equal(run(f, in, 2), 2);
        assert_string_equal(f->ev[0].ctx.geohash, "u09tunqu12");
        assert_string_equal(f->ev[1].ctx.geohash, "u09tun");
        close_pipeline(f);

        /* Without the option, geohash:7 and finer is refused. */
        assert_int_not_equal(open_pipeline(f, "{context.lat: 'geohash:7'}",
                                           "k1"),
                             0);
        assert_non_null(strstr(f->err, "t.yaml:"));
        assert_non_null(strstr(f->err, "context.lat"));
        assert_non_null(strstr(f->err, "require_special_feature_1: true"));
        assert_non_null(strstr(f->err, "geohash:6 or coarser"));
        close_pipeline(f);
}

/* ---- refusals ---- */

static void test_invalid_policies(void **state) {
        struct fx *f = *state;
        static const struct {
                const char *with, *want1, *want2;
        } t[] = {
                {"{context.ip: 'geohash:5'}", "context.ip: 'geohash:5' does "
                 "not apply", "truncate_ip (or truncate_ip:/V4,/V6)"},
                {"{context.ip: 'truncate_ip:/28'}", "context.ip",
                 "prefix of 0 to 24"},
                {"{context.ip: 'truncate_ip:/24,/64'}", "context.ip",
                 "IPv6 prefix of 0 to 40"},
                {"{user_id: keep}", "user_id: 'keep' does not apply",
                 "pseudonym or 'pseudonym: REASON', drop"},
                {"{ts: 'bucket_time:1.5h'}", "ts: 'bucket_time:1.5h'",
                 "such as 15m, 1h or 1d"},
                {"{ts: drop}", "ts: 'drop' does not apply",
                 "bucket_time:DURATION"},
                {"{context.lat: 'geohash:5', context.lon: 'geohash:4'}",
                 "context.lon: 'geohash:4' differs from context.lat's",
                 "as a pair"},
                {"{context.lat: 'geohash:0'}", "context.lat",
                 "1 to 12"},
                {"{context.device: 'reduce_ua'}", "does not apply",
                 "device_class"},
                {"{context.country: 'keeping'}", "'keeping' is not a policy",
                 "'keep: REASON'"},
                {"{context.session_id: 'drop:x'}",
                 "drop takes no argument", "context.session_id"},
                /* A reason says why, not that this person agreed: keep
                 * is as precise as a location gets, so it needs the
                 * option that asks for consent. */
                {"{context.lat: 'keep: store finder'}",
                 "context.lat: 'keep: store finder' keeps the exact "
                 "coordinates", "require_special_feature_1: true"},
                {"{context.geohash: 'keep: store finder'}",
                 "context.geohash: 'keep: store finder' keeps the front "
                 "end's geohash at any length", "geohash:6 or coarser"},
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                assert_int_not_equal(open_pipeline(f, t[i].with, "k1"), 0);
                if (!strstr(f->err, t[i].want1) ||
                    !strstr(f->err, t[i].want2) || !strstr(f->err, "t.yaml:"))
                        fail_msg("%s: got '%s'", t[i].with, f->err);
                close_pipeline(f);
        }
}

static void test_needs_keys(void **state) {
        struct fx *f = *state;
        assert_int_not_equal(open_pipeline(f, "{}", ""), 0);
        assert_non_null(strstr(f->err, "no keys:"));
        assert_non_null(strstr(f->err, "veil pseudonymize keygen"));
        close_pipeline(f);
        /* Nothing to pseudonymize: no key needed. */
        assert_int_equal(open_pipeline(f,
                                       "{user_id: drop, context.session_id: "
                                       "drop}",
                                       ""),
                         0);
        close_pipeline(f);
}

/* ---- keys: stability and rotation ---- */

static void test_stable_and_rotated(void **state) {
        struct fx *f = *state;
        struct veil_event in = event("e1", "alice");
        char first[VEIL_PSEUDONYM_MAX], want[VEIL_PSEUDONYM_MAX];
        assert_int_equal(open_pipeline(f, "{}", "k1"), 0);
        assert_int_equal(run(f, &in, 1), 1);
        snprintf(first, sizeof(first), "%s", f->ev[0].user_id);
        close_pipeline(f);
        /* Same key, another run: the same pseudonym (personalization). */
        assert_int_equal(open_pipeline(f, "{}", "k1"), 0);
        assert_int_equal(run(f, &in, 1), 1);
        assert_string_equal(f->ev[0].user_id, first);
        close_pipeline(f);
        /* Rotated to k2: another pseudonym, under the new key id. */
        assert_int_equal(open_pipeline(f, "{}", "k2"), 0);
        assert_int_equal(run(f, &in, 1), 1);
        expect_pseudonym(f->key2, "k2", "subject", "alice", want);
        assert_string_equal(f->ev[0].user_id, want);
        assert_string_not_equal(f->ev[0].user_id, first);
        assert_int_equal(strncmp(want, "k2.", 3), 0);
        assert_string_not_equal(want + 3, first + 3);
        close_pipeline(f);
}

/* ---- lint and notice ---- */

static const struct veil_lint_entry *find_decl(const struct veil_lint *l,
                                               const char *path) {
        for (size_t i = 0; i < l->n; i++)
                if (!strcmp(l->e[i].path, path))
                        return &l->e[i];
        fail_msg("no declaration for %s", path);
        return NULL;
}

static void collect(struct fx *f, const char *with, struct veil_lint *l,
                    struct veil_notice *n) {
        char yaml[2048];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../schemas/interaction.avsc}\n"
                 "outputs: {dead_letter: {topic: dlq}}\n"
                 "plugins:\n  - use: pseudonymize\n    with: %s\n",
                 with);
        assert_int_equal(veil_config_parse(&f->cfg,
                                           VEIL_SRCDIR "/tests/pipelines/t.yaml",
                                           yaml, strlen(yaml), f->err,
                                           sizeof(f->err)),
                         0);
        char *path[] = {VEIL_PLUGIN_DIR_BUILD};
        /* lint_only: the plugin is never started, as in `veil lint`. */
        struct veil_pipeline_opts o = {path, 1, NULL, 1};
        assert_int_equal(veil_pipeline_new(&f->p, f->cfg, &o, f->err,
                                           sizeof(f->err)),
                         0);
        const struct veil_plugin *def = veil_pipeline_stage_plugin(f->p, 0);
        const veil_params_t *params = veil_pipeline_stage_params(f->p, 0);
        if (l)
                veil_lint_collect(l, def, params);
        if (n)
                veil_notice_collect(n, def, params);
}

static void test_lint_declarations(void **state) {
        struct fx *f = *state;
        struct veil_lint l = {0};
        collect(f,
                "{context.country: 'keep: the shop ships per country', "
                "context.timezone: keep, context.ip: 'geohash:5', "
                "context.attrs: [page]}",
                &l, NULL);
        assert_int_equal(find_decl(&l, "user_id")->treatment,
                         VEIL_FIELD_PSEUDONYMIZED);
        /* The default pseudonym of a quasi-identifier states its reason
         * (the lint wants one); the identifier's needs none. */
        const struct veil_lint_entry *sid =
                find_decl(&l, "context.session_id");
        assert_int_equal(sid->treatment, VEIL_FIELD_PSEUDONYMIZED);
        assert_non_null(sid->reason);
        assert_non_null(strstr(sid->reason, "one visit"));
        assert_null(find_decl(&l, "user_id")->reason);
        assert_int_equal(find_decl(&l, "context.user_agent")->treatment,
                         VEIL_FIELD_GENERALIZED);
        assert_int_equal(find_decl(&l, "context.lat")->treatment,
                         VEIL_FIELD_GENERALIZED);
        assert_int_equal(find_decl(&l, "context.lon")->treatment,
                         VEIL_FIELD_GENERALIZED);
        assert_int_equal(find_decl(&l, "context.geohash")->treatment,
                         VEIL_FIELD_GENERALIZED);
        assert_int_equal(find_decl(&l, "context.device")->treatment,
                         VEIL_FIELD_GENERALIZED);
        assert_int_equal(find_decl(&l, "tc_string")->treatment,
                         VEIL_FIELD_DROPPED);
        const struct veil_lint_entry *c = find_decl(&l, "context.country");
        assert_int_equal(c->treatment, VEIL_FIELD_KEPT);
        assert_string_equal(c->reason, "the shop ships per country");
        const struct veil_lint_entry *tz = find_decl(&l, "context.timezone");
        assert_int_equal(tz->treatment, VEIL_FIELD_KEPT);
        assert_null(tz->reason);
        const struct veil_lint_entry *ip = find_decl(&l, "context.ip");
        assert_int_equal(ip->treatment, VEIL_FIELD_INVALID);
        assert_non_null(strstr(ip->reason, "does not apply"));
        assert_int_equal(find_decl(&l, "context.attrs")->treatment,
                         VEIL_FIELD_KEPT);
        veil_lint_free(&l);
        close_pipeline(f);

        /* A pseudonym's reason is the written one, none when bare. */
        collect(f,
                "{context.country: 'pseudonym: prices per country', "
                "context.timezone: pseudonym}",
                &l, NULL);
        assert_int_equal(find_decl(&l, "context.country")->treatment,
                         VEIL_FIELD_PSEUDONYMIZED);
        assert_string_equal(find_decl(&l, "context.country")->reason,
                            "prices per country");
        assert_int_equal(find_decl(&l, "context.timezone")->treatment,
                         VEIL_FIELD_PSEUDONYMIZED);
        assert_null(find_decl(&l, "context.timezone")->reason);
        veil_lint_free(&l);
        close_pipeline(f);

        /* Kept lat/lon with consent: the geohash field, dropped, still
         * carries the coarse cell of events without it. */
        collect(f,
                "{context.lat: 'keep: store finder', context.geohash: drop, "
                "require_special_feature_1: true}",
                &l, NULL);
        assert_int_equal(find_decl(&l, "context.lat")->treatment,
                         VEIL_FIELD_KEPT);
        assert_int_equal(find_decl(&l, "context.geohash")->treatment,
                         VEIL_FIELD_GENERALIZED);
        veil_lint_free(&l);
        close_pipeline(f);

        /* Location dropped: lon and the geohash field follow lat. */
        collect(f, "{context.lat: drop}", &l, NULL);
        assert_int_equal(find_decl(&l, "context.lon")->treatment,
                         VEIL_FIELD_DROPPED);
        assert_int_equal(find_decl(&l, "context.geohash")->treatment,
                         VEIL_FIELD_DROPPED);
        assert_int_equal(find_decl(&l, "context.attrs")->treatment,
                         VEIL_FIELD_DROPPED);
        veil_lint_free(&l);
        close_pipeline(f);
}

static int notice_has(const struct veil_notice *n, veil_notice_topic_t t,
                      const char *needle) {
        for (size_t i = 0; i < n->n; i++)
                if (n->l[i].topic == t && strstr(n->l[i].text, needle))
                        return 1;
        return 0;
}

static void test_notice(void **state) {
        struct fx *f = *state;
        struct veil_notice n = {0};
        collect(f,
                "{context.ip: 'truncate_ip:/16,/40', context.lat: "
                "'geohash:8', require_special_feature_1: true, ts: "
                "'bucket_time:15m', context.country: 'keep: shipping', "
                "context.attrs: [page, arm]}",
                NULL, &n);
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "Your user id is replaced by a pseudonym"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "first 16 bits of an IPv4 address and the "
                               "first 40"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "geohash of 8 characters"));
        assert_true(notice_has(&n, VEIL_NOTICE_CONSENT,
                               "TCF special feature 1"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "rounded down to steps of 15m"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "Your country is kept as sent: shipping"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "only page, arm are kept"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "Your time zone is discarded"));
        assert_string_equal(n.l[0].stage, "pseudonymize");
        veil_notice_free(&n);
        close_pipeline(f);

        collect(f, "{}", NULL, &n);
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "first 24 bits of an IPv4 address and the "
                               "first 40"));
        /* A deterministic code is never said to be irreversible. */
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "Your session id is replaced by a "
                               "pseudonym"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "recognizes it wherever it appears"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "Why a pseudonym: links the events of one "
                               "visit"));
        assert_false(notice_has(&n, VEIL_NOTICE_PROTECTION, "cannot be"));
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "about 4.9 km × 4.9 km"));
        assert_false(notice_has(&n, VEIL_NOTICE_CONSENT, "special feature"));
        veil_notice_free(&n);
        close_pipeline(f);

        /* Kept coordinates are precise geolocation, said as such. */
        collect(f,
                "{context.lat: 'keep: store finder', "
                "require_special_feature_1: true}",
                NULL, &n);
        assert_true(notice_has(&n, VEIL_NOTICE_PROTECTION,
                               "Your location is kept as sent: store "
                               "finder"));
        assert_true(notice_has(&n, VEIL_NOTICE_CONSENT,
                               "kept only if your consent includes precise "
                               "geolocation (TCF special feature 1); "
                               "otherwise it is reduced to a map cell of "
                               "about 1.2 km × 0.6 km"));
        veil_notice_free(&n);
        close_pipeline(f);
}

/* ---- the keygen command ---- */

static void test_keygen_command(void **state) {
        struct fx *f = *state;
        struct veil_plugin_handle h;
        char *path[] = {VEIL_PLUGIN_DIR_BUILD};
        assert_int_equal(veil_plugin_load(&h, "pseudonymize", path, 1, f->err,
                                          sizeof(f->err)),
                         0);
        const struct veil_command *c = h.def->commands;
        assert_non_null(c);
        assert_string_equal(c->name, "keygen");
        char file[128];
        snprintf(file, sizeof(file), "%s/new.key", f->dir);
        char *argv[] = {"keygen", file, NULL};
        assert_int_equal(c->run(2, argv), 0);
        struct stat st;
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_size, 32);
        assert_int_equal(c->run(2, argv), 2); /* never overwrites: a usage error */
        char *usage[] = {"keygen", NULL};
        assert_int_equal(c->run(1, usage), 2);
        /* What it wrote, the keyring loads. */
        struct veil_keyring *kr;
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        assert_int_equal(veil_keyring_add_file(kr, "k9", file, f->err,
                                               sizeof(f->err)),
                         0);
        veil_keyring_destroy(kr);
        unlink(file);
        veil_plugin_unload(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_defaults, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_configured, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_unreadable_values, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_user_agent_version,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_special_feature_1, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_invalid_policies, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_needs_keys, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_stable_and_rotated,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_lint_declarations, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_notice, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keygen_command, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * harness.c — the consent plugin through the real host (see harness.h).
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "keyring.h"
#include "keys.h"

#define SCHEMAS VEIL_SRCDIR "/schemas/"

static int sink(void *ctx, const char *topic, const void *key, size_t key_len,
                const void *value, size_t value_len,
                const struct veil_dead_letter *dl) {
        struct harness *h = ctx;
        if (!dl && h->refuse_topic && !strcmp(topic, h->refuse_topic)) {
                h->refused++;
                return -VEIL_EINVAL;
        }
        if (h->n_out == h->cap_out) {
                h->cap_out = h->cap_out ? h->cap_out * 2 : 64;
                h->out = realloc(h->out, h->cap_out * sizeof(*h->out));
                assert_non_null(h->out);
        }
        struct captured *c = &h->out[h->n_out++];
        memset(c, 0, sizeof(*c));
        c->topic = strdup(topic);
        c->key = malloc(key_len + 1);
        if (key_len)
                memcpy(c->key, key, key_len);
        c->key[key_len] = '\0';
        c->key_len = key_len;
        c->value = malloc(value_len + 1);
        if (value_len)
                memcpy(c->value, value, value_len);
        c->value_len = value_len;
        c->dead_letter = dl != NULL;
        if (dl) {
                c->error = strdup(dl->error);
                c->stage = strdup(dl->stage);
        }
        return 0;
}

const char *h_keys = "{ephemeral: true}";
const char *h_extra_stage = "";

int h_try_open(struct harness *h, const char *with, char *err,
               size_t err_size) {
        memset(h, 0, sizeof(*h));
        char yaml[4096];
        snprintf(yaml, sizeof(yaml),
                 "kafka: {bootstrap: embedded, group: t}\n"
                 "input: {topic: in, schema: ../../../schemas/"
                 "interaction.avsc}\n"
                 "side_inputs:\n"
                 "  consent: {topic: consent, schema: ../../../schemas/"
                 "consent.avsc}\n"
                 "outputs:\n"
                 "  audit: {topic: audit, schema: ../../../schemas/"
                 "audit.avsc}\n"
                 "  access: {topic: access, schema: ../../../schemas/"
                 "access.avsc}\n"
                 "  dead_letter: {topic: dlq}\n"
                 "plugin_path: [%s, %s]\n"
                 "plugins:\n"
                 "  - use: consent\n"
                 "    with: %s\n"
                 "%s"
                 "  - use: holder\n"
                 "keys: %s\n",
                 VEIL_PLUGIN_DIR_BUILD, HOLDER_DIR, with, h_extra_stage,
                 h_keys);
        int rc = veil_config_parse(&h->cfg,
                                   VEIL_SRCDIR "/plugins/consent/tests/t.yaml",
                                   yaml, strlen(yaml), err, err_size);
        if (!rc)
                rc = veil_keys_load(h->cfg, &h->kr, err, err_size);
        struct veil_pipeline_opts o = {NULL, 0, h->kr, 0};
        if (!rc)
                rc = veil_pipeline_new(&h->p, h->cfg, &o, err, err_size);
        if (!rc)
                rc = veil_pipeline_lint(h->p, err, err_size);
        if (rc) {
                h_close(h);
                return rc;
        }
        veil_pipeline_set_sink(h->p, (struct veil_sink){sink, h});
        char err2[512];
        assert_int_equal(veil_codec_new_file(&h->consent,
                                             SCHEMAS "consent.avsc",
                                             VEIL_FRAMING_RAW, -1, err2,
                                             sizeof(err2)),
                         0);
        assert_int_equal(veil_codec_new_file(&h->audit, SCHEMAS "audit.avsc",
                                             VEIL_FRAMING_RAW, -1, err2,
                                             sizeof(err2)),
                         0);
        assert_int_equal(veil_codec_new_file(&h->access,
                                             SCHEMAS "access.avsc",
                                             VEIL_FRAMING_RAW, -1, err2,
                                             sizeof(err2)),
                         0);
        veil_pipeline_batch_begin(h->p);
        return 0;
}

void h_open(struct harness *h, const char *with) {
        char err[2048];
        if (h_try_open(h, with, err, sizeof(err)))
                fail_msg("pipeline: %s", err);
}

void h_close(struct harness *h) {
        veil_pipeline_destroy(h->p);
        veil_keyring_destroy(h->kr);
        veil_config_destroy(h->cfg);
        veil_codec_destroy(h->consent);
        veil_codec_destroy(h->audit);
        veil_codec_destroy(h->access);
        for (size_t i = 0; i < h->n_out; i++) {
                free(h->out[i].topic);
                free(h->out[i].key);
                free(h->out[i].value);
                free(h->out[i].error);
                free(h->out[i].stage);
        }
        free(h->out);
        memset(h, 0, sizeof(*h));
}

int64_t h_side_ts_ms;

int h_raw(struct harness *h, const void *key, size_t key_len,
          const void *value, size_t value_len) {
        int64_t offset = h->offset++;
        int64_t ts = h_side_ts_ms ? h_side_ts_ms
                                  : 1700000000000LL + offset + 1;
        struct veil_source src = {key,       key_len,   value,  value_len,
                                  "consent", 0,         offset, ts};
        char err[1024];
        return veil_pipeline_side_record(h->p, 0, &src, err, sizeof(err));
}

int h_consent(struct harness *h, const char *key, const char *user,
              const char *kind, int pers, int train, int anal, int gpc,
              const char *tc, const char *source, int64_t ts) {
        veil_rec_t *r = veil_codec_rec_begin(h->consent);
        assert_non_null(r);
        assert_int_equal(veil_rec_set_str(r, "user_id", user), 0);
        assert_int_equal(veil_rec_set_str(r, "kind", kind), 0);
        if (!strcmp(kind, "consent")) {
                assert_int_equal(
                        veil_rec_set_bool(r, "purposes.personalization", pers),
                        0);
                assert_int_equal(
                        veil_rec_set_bool(r, "purposes.training", train), 0);
                assert_int_equal(
                        veil_rec_set_bool(r, "purposes.analytics", anal), 0);
        }
        if (tc)
                assert_int_equal(veil_rec_set_str(r, "tc_string", tc), 0);
        if (gpc >= 0)
                assert_int_equal(veil_rec_set_bool(r, "gpc", gpc), 0);
        assert_int_equal(veil_rec_set_str(r, "source", source), 0);
        assert_int_equal(veil_rec_set_long(r, "ts", ts), 0);
        struct veil_buf buf = {0};
        char err[512];
        assert_int_equal(veil_codec_rec_encode(h->consent, &buf, err,
                                               sizeof(err)),
                         0);
        int rc = h_raw(h, key, strlen(key), buf.data, buf.len);
        veil_buf_free(&buf);
        return rc;
}

int h_grant(struct harness *h, const char *user, int pers, int train,
            int anal, int64_t ts) {
        return h_consent(h, user, user, "consent", pers, train, anal, -1,
                         NULL, "app", ts);
}

int h_tombstone(struct harness *h, const char *user) {
        return h_raw(h, user, strlen(user), NULL, 0);
}

int64_t h_event_ts_ms, h_event_now_ms;
const char *h_event_item;

const struct veil_event *h_event(struct harness *h, const char *user,
                                 const char *tc, int gpc) {
        struct veil_batch *b = veil_pipeline_batch_begin(h->p);
        if (h_event_now_ms)
                b->now_ms = h_event_now_ms;
        struct veil_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.event_id = "e1";
        ev.user_id = user;
        ev.ts_ms = h_event_ts_ms ? h_event_ts_ms : 1700000000000LL;
        ev.type = "view";
        ev.item_id = h_event_item ? h_event_item : "item-1";
        ev.tc_string = tc;
        ev.gpc = gpc;
        assert_int_equal(veil_pipeline_batch_add_event(h->p, &ev), 1);
        char err[1024];
        int rc = veil_pipeline_batch_run(h->p, err, sizeof(err));
        if (rc)
                fail_msg("batch: %s", err);
        return &b->events[0];
}

void h_tick(struct harness *h) { veil_pipeline_batch_begin(h->p); }

size_t h_count(const struct harness *h, const char *topic) {
        size_t n = 0;
        for (size_t i = 0; i < h->n_out; i++)
                n += !strcmp(h->out[i].topic, topic);
        return n;
}

const struct captured *h_at(const struct harness *h, const char *topic,
                            size_t i) {
        for (size_t k = 0; k < h->n_out; k++)
                if (!strcmp(h->out[k].topic, topic) && i-- == 0)
                        return &h->out[k];
        return NULL;
}

static const veil_rec_t *decoded(struct veil_codec *c,
                                 const struct captured *cap) {
        const veil_rec_t *r = NULL;
        char err[512];
        assert_non_null(cap);
        if (veil_codec_decode_rec(c, cap->value, cap->value_len, &r, err,
                                  sizeof(err)))
                fail_msg("decode: %s", err);
        return r;
}

const veil_rec_t *h_audit(struct harness *h, size_t i) {
        return decoded(h->audit, h_at(h, "audit", i));
}

const veil_rec_t *h_access(struct harness *h, size_t i) {
        return decoded(h->access, h_at(h, "access", i));
}

char *h_section(struct harness *h, size_t i, const char *stage) {
        const struct captured *c = h_at(h, "access", i);
        assert_non_null(c);
        char *json = veil_codec_rec_json(h->access, c->value, c->value_len);
        assert_non_null(json);
        char pat[128];
        snprintf(pat, sizeof(pat), "\"%s\": {", stage);
        char *at = strstr(json, pat);
        char *out;
        if (!at) {
                out = strdup("");
        } else {
                at += strlen(pat);
                size_t n = strcspn(at, "}");
                out = strndup(at, n);
        }
        free(json);
        return out;
}

/* ------------------------------------------------------------------ */
/* TC strings                                                         */
/* ------------------------------------------------------------------ */

struct bits {
        unsigned char b[4096];
        size_t n;
};

static void put(struct bits *w, uint64_t v, unsigned n) {
        for (unsigned i = n; i-- > 0;) {
                if ((v >> i) & 1)
                        w->b[w->n >> 3] |= (unsigned char)(0x80 >> (w->n & 7));
                w->n++;
        }
}

static void put_ids(struct bits *w, const int *ids, size_t n) {
        int max = 0;
        for (size_t i = 0; i < n; i++)
                if (ids[i] > max)
                        max = ids[i];
        put(w, (uint64_t)max, 16);
        put(w, 0, 1); /* bitfield */
        for (int id = 1; id <= max; id++) {
                int on = 0;
                for (size_t i = 0; i < n; i++)
                        on |= ids[i] == id;
                put(w, (uint64_t)on, 1);
        }
}

/* base64url without padding, as TC strings are written; the length. */
static size_t b64(const struct bits *w, char *out, size_t size) {
        static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                                "tuvwxyz0123456789-_";
        size_t bytes = (w->n + 7) / 8, chars = (bytes * 8 + 5) / 6, o = 0;
        assert_true(chars < size);
        for (size_t c = 0; c < chars; c++) {
                unsigned v = 0;
                for (int k = 0; k < 6; k++) {
                        size_t bit = c * 6 + (size_t)k;
                        v = (v << 1) |
                            (bit < bytes * 8
                                     ? (w->b[bit >> 3] >> (7 - (bit & 7))) & 1
                                     : 0);
                }
                out[o++] = a[v];
        }
        out[o] = '\0';
        return o;
}

void h_tc(const struct tc_model *m, char *out, size_t size) {
        struct bits w;
        memset(&w, 0, sizeof(w));
        int64_t day = 86400000LL;
        int64_t at = m->updated_ms ? m->updated_ms
                                   : (int64_t)time(NULL) * 1000 / day * day;
        put(&w, 2, 6);                     /* version */
        put(&w, (uint64_t)(at / 100), 36); /* created, deciseconds */
        put(&w, (uint64_t)(at / 100), 36); /* lastUpdated */
        put(&w, 7, 12);             /* cmpId */
        put(&w, 1, 12);             /* cmpVersion */
        put(&w, 1, 6);              /* consentScreen */
        put(&w, 'E' - 'A', 6);      /* consentLanguage EN */
        put(&w, 'N' - 'A', 6);
        put(&w, 100, 12); /* vendorListVersion */
        put(&w, (uint64_t)(m->policy ? m->policy : 4), 6);
        put(&w, 0, 1); /* isServiceSpecific */
        put(&w, 0, 1); /* useNonStandardTexts */
        for (int i = 0; i < 12; i++)
                put(&w, (m->special >> i) & 1, 1);
        for (int i = 0; i < 24; i++)
                put(&w, (m->purposes >> i) & 1, 1);
        for (int i = 0; i < 24; i++)
                put(&w, (m->purposes_li >> i) & 1, 1);
        put(&w, 0, 1);         /* purposeOneTreatment */
        put(&w, 'F' - 'A', 6); /* publisherCC FR */
        put(&w, 'R' - 'A', 6);
        put_ids(&w, m->vendors, m->n_vendors);
        put_ids(&w, m->vendors_li, m->n_vendors_li);
        put(&w, m->n_restr, 12);
        for (size_t i = 0; i < m->n_restr; i++) {
                put(&w, (uint64_t)m->restr[i].purpose, 6);
                put(&w, (uint64_t)m->restr[i].type, 2);
                put(&w, 1, 12); /* one entry */
                put(&w, 0, 1);  /* a single id */
                put(&w, (uint64_t)m->restr[i].vendor, 16);
        }
        size_t o = b64(&w, out, size);
        if (m->pub) {
                /* SegmentType 3, PubPurposesConsent,
                 * PubPurposesLITransparency, NumCustomPurposes 0. */
                uint32_t c = m->pub == 1 ? m->purposes : m->pub_purposes;
                uint32_t li = m->pub == 1 ? m->purposes_li
                                          : m->pub_purposes_li;
                memset(&w, 0, sizeof(w));
                put(&w, 3, 3);
                for (int i = 0; i < 24; i++)
                        put(&w, (c >> i) & 1, 1);
                for (int i = 0; i < 24; i++)
                        put(&w, (li >> i) & 1, 1);
                put(&w, 0, 6);
                assert_true(o + 1 < size);
                out[o++] = '.';
                b64(&w, out + o, size - o);
        }
}

uint32_t h_purposes(int first, ...) {
        uint32_t m = 0;
        va_list ap;
        va_start(ap, first);
        for (int p = first; p; p = va_arg(ap, int))
                m |= 1u << (p - 1);
        va_end(ap);
        return m;
}

/*
 * demo_side.c — the demo's side-input records (see demo_side.h).
 */
#include "demo_side.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "reccsv.h"

struct row {
        const char *topic; /* the binding's, owned by the config */
        char *key;
        void *value; /* NULL: tombstone */
        size_t len;
        long after;
};

struct veil_demo_side {
        struct row *rows; /* sorted by `after`, file order kept */
        size_t n, cap, next;
        long before, during;
};

static int by_after(const void *a, const void *b) {
        const struct row *x = a, *y = b;
        return (x->after > y->after) - (x->after < y->after);
}

void veil_demo_side_destroy(struct veil_demo_side *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++) {
                free(s->rows[i].key);
                free(s->rows[i].value);
        }
        free(s->rows);
        free(s);
}

static int add(struct veil_demo_side *s, const char *topic,
               const struct veil_reccsv_row *r) {
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 256;
                struct row *rows = realloc(s->rows, cap * sizeof(*rows));
                if (!rows)
                        return -VEIL_ENOMEM;
                s->rows = rows;
                s->cap = cap;
        }
        struct row *w = &s->rows[s->n];
        memset(w, 0, sizeof(*w));
        w->topic = topic;
        w->after = r->after;
        if (!(w->key = strdup(r->key)))
                return -VEIL_ENOMEM;
        if (!r->tombstone) {
                if (!(w->value = malloc(r->value_len ? r->value_len : 1))) {
                        free(w->key);
                        return -VEIL_ENOMEM;
                }
                memcpy(w->value, r->value, r->value_len);
                w->len = r->value_len;
        }
        s->n++;
        return 0;
}

int veil_demo_side_load(struct veil_demo_side **sp,
                        const struct veil_config *cfg, char *errstr,
                        size_t errstr_size) {
        struct veil_demo_side *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        int rc = 0;
        for (size_t i = 0; i < cfg->n_side_inputs && !rc; i++) {
                const struct veil_binding *b = &cfg->side_inputs[i];
                const struct veil_node *n = veil_config_get(cfg->demo, b->name);
                if (!n || n->kind != VEIL_NODE_SCALAR)
                        continue;
                char *path = veil_config_path(cfg, n->scalar);
                struct veil_codec *codec = NULL;
                struct veil_reccsv *csv = NULL;
                rc = veil_codec_new(&codec, cfg, b, errstr, errstr_size);
                if (!rc)
                        rc = veil_reccsv_open(&csv, path, errstr, errstr_size);
                struct veil_reccsv_row r;
                while (!rc && (rc = veil_reccsv_next(csv, codec, &r, errstr,
                                                     errstr_size)) == 1)
                        rc = add(s, b->topic, &r);
                veil_reccsv_close(csv);
                veil_codec_destroy(codec);
                free(path);
        }
        if (rc < 0) {
                veil_demo_side_destroy(s);
                return rc;
        }
        /* Stable: rows due at the same point keep their file order, which
         * for one key is the order the ledger must see them in. */
        for (size_t i = 1; i < s->n; i++)
                for (size_t j = i; j > 0 && by_after(&s->rows[j - 1],
                                                     &s->rows[j]) > 0;
                     j--) {
                        struct row t = s->rows[j];
                        s->rows[j] = s->rows[j - 1];
                        s->rows[j - 1] = t;
                }
        *sp = s;
        return 0;
}

long veil_demo_side_produce(struct veil_demo_side *s, rd_kafka_t *rk,
                            long fed) {
        long n = 0;
        while (s->next < s->n && s->rows[s->next].after <= fed) {
                struct row *w = &s->rows[s->next];
                rd_kafka_resp_err_t e;
                for (;;) {
                        e = rd_kafka_producev(
                                rk, RD_KAFKA_V_TOPIC(w->topic),
                                RD_KAFKA_V_KEY(w->key, strlen(w->key)),
                                RD_KAFKA_V_VALUE(w->value, w->len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END);
                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                break;
                        rd_kafka_poll(rk, 50);
                }
                if (e)
                        return -1;
                if (w->after)
                        s->during++;
                else
                        s->before++;
                s->next++;
                n++;
        }
        return n;
}

void veil_demo_side_counts(const struct veil_demo_side *s, long *before,
                           long *during) {
        *before = s ? s->before : 0;
        *during = s ? s->during : 0;
}

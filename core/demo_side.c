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

/* A path: a scalar that is not empty. */
static int is_path(const struct veil_node *n) {
        return n->kind == VEIL_NODE_SCALAR && n->scalar[0];
}

int veil_demo_config_parse(const struct veil_config *cfg,
                           const struct veil_node **events, long *garbage,
                           char *errstr, size_t errstr_size) {
        *events = NULL;
        *garbage = 0;
        const struct veil_node *d = cfg->demo;
        if (!d)
                return 0;
        for (size_t i = 0; i < d->n; i++) {
                const struct veil_node *k = d->keys[i], *v = d->items[i];
                const char *name = k->scalar;
                int side = 0;
                for (size_t j = 0; j < cfg->n_side_inputs && !side; j++)
                        side = !strcmp(name, cfg->side_inputs[j].name);
                if (!strcmp(name, "events") || side) {
                        if (is_path(v))
                                continue;
                        snprintf(errstr, errstr_size,
                                 "%s:%d:%d: demo.%s must be the path of a "
                                 "CSV file (relative to the pipeline "
                                 "file), such as %s",
                                 cfg->file, v->line, v->col, name,
                                 side ? "../demo/consent.csv"
                                      : "../demo/events.csv");
                        return -VEIL_EINVAL;
                }
                if (!strcmp(name, "garbage")) {
                        /* strtol alone took "2x" for 2 and "lots" for 0. */
                        const char *s = v->kind == VEIL_NODE_SCALAR
                                                ? v->scalar
                                                : "";
                        char *end;
                        long g = strtol(s, &end, 10);
                        if (v->kind == VEIL_NODE_SCALAR && *s >= '0' &&
                            *s <= '9' && !*end && g >= 0 &&
                            g <= VEIL_DEMO_MAX_GARBAGE) {
                                *garbage = g;
                                continue;
                        }
                        snprintf(errstr, errstr_size,
                                 "%s:%d:%d: demo.garbage must be a whole "
                                 "number of undecodable records to mix in, "
                                 "0..%d, got %s%s%s; write it in digits, "
                                 "such as garbage: 3",
                                 cfg->file, v->line, v->col,
                                 VEIL_DEMO_MAX_GARBAGE,
                                 v->kind == VEIL_NODE_SCALAR ? "'" : "",
                                 v->kind == VEIL_NODE_SCALAR ? s
                                 : v->kind == VEIL_NODE_MAP  ? "a mapping"
                                                             : "a sequence",
                                 v->kind == VEIL_NODE_SCALAR ? "'" : "");
                        return -VEIL_EINVAL;
                }
                char allowed[1024];
                size_t o = (size_t)snprintf(allowed, sizeof(allowed),
                                            "events, garbage");
                for (size_t j = 0; j < cfg->n_side_inputs &&
                                   o < sizeof(allowed);
                     j++)
                        o += (size_t)snprintf(allowed + o,
                                              sizeof(allowed) - o, ", %s",
                                              cfg->side_inputs[j].name);
                snprintf(errstr, errstr_size,
                         "%s:%d:%d: demo: unknown key '%s'; allowed keys: "
                         "%s (%s)",
                         cfg->file, k->line, k->col, name, allowed,
                         cfg->n_side_inputs
                                 ? "a side input's name names the CSV of "
                                   "its records"
                                 : "a side input's name, when the pipeline "
                                   "binds one, names the CSV of its "
                                   "records");
                return -VEIL_EINVAL;
        }
        if (!(*events = veil_config_get(d, "events"))) {
                snprintf(errstr, errstr_size,
                         "%s:%d:%d: demo: events is missing: name the CSV "
                         "of events the demo replays, such as events: "
                         "../demo/events.csv",
                         cfg->file, d->line, d->col);
                return -VEIL_EINVAL;
        }
        return 0;
}

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

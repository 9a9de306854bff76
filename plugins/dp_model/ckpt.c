#include "ckpt.h"
#include "le.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

#define HEAD (4 + 4 + 4 + 4 + 4 + 8 + 1 + VEIL_ACCOUNTANT_RECORD_SIZE)

static unsigned char *putf(unsigned char *p, const float *x, size_t n) {
        for (size_t i = 0; i < n; i++) {
                uint32_t v;
                memcpy(&v, &x[i], 4);
                p = veil_le_put32(p, v);
        }
        return p;
}

static const unsigned char *getf(const unsigned char *p, float *x, size_t n) {
        for (size_t i = 0; i < n; i++, p += 4) {
                uint32_t v = veil_le_get32(p);
                memcpy(&x[i], &v, 4);
        }
        return p;
}

int veil_ckpt_write(const struct veil_model *m,
                    const struct veil_accountant *acc, const void *extra,
                    size_t extra_len, void **data, size_t *len) {
        size_t items = veil_model_items(m), d = m->d;
        size_t n = HEAD;
        for (size_t i = 0; i < items; i++)
                n += 2 + strlen(m->cat->id[i]);
        size_t nf = 2 * (2 * items * d + m->space * d + items);
        n += 4 * nf + 4 + extra_len;
        if (extra_len > UINT32_MAX)
                return -VEIL_EINVAL;
        unsigned char *buf = malloc(n), *p = buf;
        if (!buf)
                return -VEIL_ENOMEM;
        memcpy(p, "VDPM", 4);
        p = veil_le_put32(p + 4, 2);
        p = veil_le_put32(p, (uint32_t)d);
        p = veil_le_put32(p, (uint32_t)m->space);
        p = veil_le_put32(p, (uint32_t)items);
        p = veil_le_put32(p, (uint32_t)m->steps);
        p = veil_le_put32(p, (uint32_t)(m->steps >> 32));
        *p++ = acc != NULL;
        memset(p, 0, VEIL_ACCOUNTANT_RECORD_SIZE);
        if (acc)
                veil_accountant_encode(acc, p);
        p += VEIL_ACCOUNTANT_RECORD_SIZE;
        for (size_t i = 0; i < items; i++) {
                size_t l = strlen(m->cat->id[i]);
                if (l > 65535) {
                        free(buf);
                        return -VEIL_EINVAL;
                }
                *p++ = (unsigned char)l;
                *p++ = (unsigned char)(l >> 8);
                memcpy(p, m->cat->id[i], l);
                p += l;
        }
        p = putf(p, m->V, items * d);
        p = putf(p, m->U, items * d);
        p = putf(p, m->E, m->space * d);
        p = putf(p, m->b, items);
        p = putf(p, m->aV, items * d);
        p = putf(p, m->aU, items * d);
        p = putf(p, m->aE, m->space * d);
        p = putf(p, m->ab, items);
        p = veil_le_put32(p, (uint32_t)extra_len);
        if (extra_len)
                memcpy(p, extra, extra_len);
        *data = buf;
        *len = n;
        return 0;
}

static int bad(char *errstr, size_t errstr_size, const char *what) {
        snprintf(errstr, errstr_size, "dp_model restore: %s", what);
        return -VEIL_EDECODE;
}

/* One table (rows of width w) from the checkpoint's row order to ours. */
static const unsigned char *rows(const unsigned char *p, float *dst,
                                 const int32_t *map, size_t n, size_t w) {
        for (size_t i = 0; i < n; i++, p += 4 * w)
                if (map[i] >= 0)
                        getf(p, dst + (size_t)map[i] * w, w);
        return p;
}

int veil_ckpt_read(struct veil_model *m, struct veil_accountant *acc,
                   const void *data, size_t len, const void **extra,
                   size_t *extra_len, char *errstr, size_t errstr_size) {
        const unsigned char *p = data, *end = p + len;
        uint32_t version = len >= HEAD ? veil_le_get32(p + 4) : 0;
        *extra = NULL;
        *extra_len = 0;
        if (len < HEAD || memcmp(p, "VDPM", 4) || version < 1 || version > 2)
                return bad(errstr, errstr_size, "not a dp_model checkpoint");
        size_t d = veil_le_get32(p + 8), space = veil_le_get32(p + 12), items = veil_le_get32(p + 16);
        uint64_t steps = veil_le_get32(p + 20) | (uint64_t)veil_le_get32(p + 24) << 32;
        int has_acc = p[28];
        const unsigned char *rec = p + 29;
        if (d != m->d || space != m->space) {
                char what[256];
                snprintf(what, sizeof(what),
                         "the checkpoint's model has dim %zu and "
                         "feature_space %zu, this stage %zu and %zu: set "
                         "them back, or, to start the model empty, give the "
                         "pipeline a new state topic (state.topic) and "
                         "restart",
                         d, space, m->d, m->space);
                return bad(errstr, errstr_size, what);
        }
        /* Check the whole buffer before touching anything. */
        const unsigned char *q = p + HEAD;
        for (size_t i = 0; i < items; i++) {
                if (end - q < 2)
                        return bad(errstr, errstr_size, "truncated item ids");
                size_t l = (size_t)q[0] | (size_t)q[1] << 8;
                if ((size_t)(end - q - 2) < l)
                        return bad(errstr, errstr_size, "truncated item ids");
                q += 2 + l;
        }
        size_t nf = 2 * (2 * items * d + space * d + items);
        if ((size_t)(end - q) < 4 * nf)
                return bad(errstr, errstr_size, "wrong parameter size");
        const unsigned char *x = q + 4 * nf;
        if (version == 1 ? x != end
                         : end - x < 4 || (size_t)(end - x - 4) != veil_le_get32(x))
                return bad(errstr, errstr_size, "wrong parameter size");
        if (acc && !has_acc)
                /* Its model learned from un-noised gradients: starting a
                 * private stage from it would release that model under an
                 * epsilon that does not count it. */
                return bad(errstr, errstr_size,
                           "the checkpoint is of a model learned without "
                           "differential privacy (mechanism: none); a "
                           "private stage cannot start from it: give this "
                           "pipeline a new state topic (state.topic)");
        if (has_acc && acc) {
                int rc = veil_accountant_restore(
                        acc, rec, VEIL_ACCOUNTANT_RECORD_SIZE, errstr,
                        errstr_size);
                if (rc)
                        return rc;
        }
        int32_t *map = malloc((items ? items : 1) * sizeof(int32_t));
        char *id = malloc(65536);
        if (!map || !id) {
                free(map);
                free(id);
                return -VEIL_ENOMEM;
        }
        q = p + HEAD;
        for (size_t i = 0; i < items; i++) {
                size_t l = (size_t)q[0] | (size_t)q[1] << 8;
                memcpy(id, q + 2, l);
                id[l] = '\0';
                map[i] = veil_model_item(m, id, 1); /* -1: catalog full */
                q += 2 + l;
        }
        free(id);
        q = rows(q, m->V, map, items, d);
        q = rows(q, m->U, map, items, d);
        q = getf(q, m->E, space * d);
        q = rows(q, m->b, map, items, 1);
        q = rows(q, m->aV, map, items, d);
        q = rows(q, m->aU, map, items, d);
        q = getf(q, m->aE, space * d);
        rows(q, m->ab, map, items, 1);
        free(map);
        if (version == 2 && veil_le_get32(x)) {
                *extra = x + 4;
                *extra_len = veil_le_get32(x);
        }
        if (steps > m->steps)
                m->steps = steps;
        return 0;
}

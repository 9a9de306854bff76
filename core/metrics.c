#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/veil.h"

struct family {
        char *name;
        char *help;
        enum veil_metric_type type;
        double buckets[VEIL_METRICS_MAX_BUCKETS];
        size_t n_buckets;
};

struct series {
        size_t family;
        uint64_t hash;
        char *labels;
        double value; /* counter, gauge */
        /* histogram: per-bucket counts (not cumulative), the +Inf bucket
         * last */
        uint64_t counts[VEIL_METRICS_MAX_BUCKETS + 1];
        uint64_t count;
        double sum;
};

struct veil_metrics {
        pthread_mutex_t mu;
        struct family *fam;
        size_t n_fam, cap_fam;
        struct series *ser;
        size_t n_ser, cap_ser;
        double dropped_series;
};

static int valid_name(const char *s) {
        if (!s || !*s)
                return 0;
        for (const char *c = s; *c; c++) {
                int alpha = (*c >= 'a' && *c <= 'z') ||
                            (*c >= 'A' && *c <= 'Z') || *c == '_' || *c == ':';
                int digit = *c >= '0' && *c <= '9';
                if (!alpha && !(digit && c != s))
                        return 0;
        }
        return 1;
}

int veil_metrics_new(struct veil_metrics **out) {
        struct veil_metrics *m = calloc(1, sizeof(*m));
        if (!m)
                return -VEIL_ENOMEM;
        pthread_mutex_init(&m->mu, NULL);
        *out = m;
        return 0;
}

void veil_metrics_destroy(struct veil_metrics *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_fam; i++) {
                free(m->fam[i].name);
                free(m->fam[i].help);
        }
        for (size_t i = 0; i < m->n_ser; i++)
                free(m->ser[i].labels);
        free(m->fam);
        free(m->ser);
        pthread_mutex_destroy(&m->mu);
        free(m);
}

static long find_family(const struct veil_metrics *m, const char *name) {
        for (size_t i = 0; i < m->n_fam; i++)
                if (!strcmp(m->fam[i].name, name))
                        return (long)i;
        return -1;
}

static int declare_locked(struct veil_metrics *m, const char *name,
                          enum veil_metric_type type, const char *help,
                          const double *buckets, size_t n_buckets) {
        if (!valid_name(name))
                return -VEIL_EINVAL;
        if (find_family(m, name) >= 0)
                return 0;
        if (type == VEIL_METRIC_HISTOGRAM) {
                if (n_buckets == 0 || n_buckets > VEIL_METRICS_MAX_BUCKETS)
                        return -VEIL_EINVAL;
                for (size_t i = 1; i < n_buckets; i++)
                        if (!(buckets[i] > buckets[i - 1]))
                                return -VEIL_EINVAL;
        }
        if (m->n_fam == m->cap_fam) {
                size_t cap = m->cap_fam ? m->cap_fam * 2 : 64;
                struct family *f = realloc(m->fam, cap * sizeof(*f));
                if (!f)
                        return -VEIL_ENOMEM;
                m->fam = f;
                m->cap_fam = cap;
        }
        struct family *f = &m->fam[m->n_fam];
        memset(f, 0, sizeof(*f));
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        if (!f->name || !f->help) {
                free(f->name);
                free(f->help);
                return -VEIL_ENOMEM;
        }
        f->type = type;
        if (type == VEIL_METRIC_HISTOGRAM) {
                memcpy(f->buckets, buckets, n_buckets * sizeof(double));
                f->n_buckets = n_buckets;
        }
        m->n_fam++;
        return 0;
}

int veil_metrics_declare(struct veil_metrics *m, const char *name,
                         enum veil_metric_type type, const char *help,
                         const double *buckets, size_t n_buckets) {
        pthread_mutex_lock(&m->mu);
        int rc = declare_locked(m, name, type, help, buckets, n_buckets);
        pthread_mutex_unlock(&m->mu);
        return rc;
}

char *veil_metrics_labels(char *buf, size_t size, ...) {
        va_list ap;
        va_start(ap, size);
        size_t o = 0;
        if (size)
                buf[0] = '\0';
        const char *k;
        while ((k = va_arg(ap, const char *)) != NULL) {
                const char *v = va_arg(ap, const char *);
                if (!v)
                        v = "";
                int n = snprintf(buf + o, size > o ? size - o : 0, "%s%s=\"",
                                 o ? "," : "", k);
                o += n > 0 ? (size_t)n : 0;
                for (; *v && o + 3 < size; v++) {
                        unsigned char c = (unsigned char)*v;
                        if (c == '\\' || c == '"') {
                                buf[o++] = '\\';
                                buf[o++] = (char)c;
                        } else if (c == '\n') {
                                buf[o++] = '\\';
                                buf[o++] = 'n';
                        } else {
                                /* Control bytes, and every byte of a non-
                                 * ASCII character: a value cut in the
                                 * middle of one would fail the scrape. */
                                buf[o++] = c < 0x20 || c >= 0x7f ? '?'
                                                                 : (char)c;
                        }
                }
                if (o + 1 < size)
                        buf[o++] = '"';
                if (o < size)
                        buf[o] = '\0';
        }
        va_end(ap);
        if (size)
                buf[size - 1] = '\0';
        return buf;
}

static uint64_t hash_of(size_t family, const char *labels) {
        uint64_t h = 1469598103934665603ULL ^ family;
        for (const char *s = labels; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

/* The series, created when absent; NULL past the cap or without memory. */
static struct series *series_locked(struct veil_metrics *m, size_t family,
                                    const char *labels) {
        if (!labels)
                labels = "";
        uint64_t h = hash_of(family, labels);
        for (size_t i = 0; i < m->n_ser; i++) {
                struct series *s = &m->ser[i];
                if (s->hash == h && s->family == family &&
                    !strcmp(s->labels, labels))
                        return s;
        }
        if (m->n_ser >= VEIL_METRICS_MAX_SERIES) {
                m->dropped_series++;
                return NULL;
        }
        if (m->n_ser == m->cap_ser) {
                size_t cap = m->cap_ser ? m->cap_ser * 2 : 128;
                struct series *s = realloc(m->ser, cap * sizeof(*s));
                if (!s)
                        return NULL;
                m->ser = s;
                m->cap_ser = cap;
        }
        struct series *s = &m->ser[m->n_ser];
        memset(s, 0, sizeof(*s));
        if (!(s->labels = strdup(labels)))
                return NULL;
        s->family = family;
        s->hash = h;
        m->n_ser++;
        return s;
}

static int update(struct veil_metrics *m, const char *name, const char *labels,
                  double v, int set) {
        pthread_mutex_lock(&m->mu);
        long f = find_family(m, name);
        int rc = 0;
        if (f < 0 && set) {
                rc = declare_locked(m, name, VEIL_METRIC_GAUGE,
                                    "A value a plugin reports "
                                    "(veil_metric_set).",
                                    NULL, 0);
                f = rc ? -1 : find_family(m, name);
        }
        if (f < 0 || m->fam[f].type == VEIL_METRIC_HISTOGRAM) {
                pthread_mutex_unlock(&m->mu);
                return rc ? rc : f < 0 ? -VEIL_ENOENT : -VEIL_EINVAL;
        }
        struct series *s = series_locked(m, (size_t)f, labels);
        if (s) {
                if (set)
                        s->value = v;
                else
                        s->value += v;
        }
        pthread_mutex_unlock(&m->mu);
        return s ? 0 : -VEIL_ENOMEM;
}

int veil_metrics_add(struct veil_metrics *m, const char *name,
                     const char *labels, double v) {
        return update(m, name, labels, v, 0);
}

int veil_metrics_set(struct veil_metrics *m, const char *name,
                     const char *labels, double v) {
        return update(m, name, labels, v, 1);
}

int veil_metrics_observe(struct veil_metrics *m, const char *name,
                         const char *labels, const double *v, size_t n) {
        pthread_mutex_lock(&m->mu);
        long f = find_family(m, name);
        if (f < 0 || m->fam[f].type != VEIL_METRIC_HISTOGRAM) {
                pthread_mutex_unlock(&m->mu);
                return f < 0 ? -VEIL_ENOENT : -VEIL_EINVAL;
        }
        const struct family *fam = &m->fam[f];
        struct series *s = series_locked(m, (size_t)f, labels);
        for (size_t i = 0; s && i < n; i++) {
                if (isnan(v[i]))
                        continue;
                size_t b = 0;
                while (b < fam->n_buckets && v[i] > fam->buckets[b])
                        b++;
                s->counts[b]++;
                s->count++;
                s->sum += v[i];
        }
        pthread_mutex_unlock(&m->mu);
        return s ? 0 : -VEIL_ENOMEM;
}

void veil_metrics_clear(struct veil_metrics *m, const char *name) {
        pthread_mutex_lock(&m->mu);
        long f = find_family(m, name);
        size_t o = 0;
        for (size_t i = 0; i < m->n_ser; i++) {
                if (f >= 0 && m->ser[i].family == (size_t)f) {
                        free(m->ser[i].labels);
                        continue;
                }
                m->ser[o++] = m->ser[i];
        }
        m->n_ser = o;
        pthread_mutex_unlock(&m->mu);
}

void veil_metrics_forget(struct veil_metrics *m, const char *prefix,
                         enum veil_metric_type type) {
        size_t plen = strlen(prefix);
        pthread_mutex_lock(&m->mu);
        /* to[f]: family f's new index, or SIZE_MAX when it goes. */
        size_t *to = malloc((m->n_fam ? m->n_fam : 1) * sizeof(*to));
        if (!to) { /* keep everything: stale values, not a lost registry */
                pthread_mutex_unlock(&m->mu);
                return;
        }
        size_t nf = 0;
        for (size_t f = 0; f < m->n_fam; f++) {
                struct family *fam = &m->fam[f];
                if (fam->type == type && !strncmp(fam->name, prefix, plen)) {
                        free(fam->name);
                        free(fam->help);
                        to[f] = SIZE_MAX;
                        continue;
                }
                to[f] = nf;
                m->fam[nf++] = *fam;
        }
        m->n_fam = nf;
        size_t o = 0;
        for (size_t i = 0; i < m->n_ser; i++) {
                struct series *s = &m->ser[i];
                if (to[s->family] == SIZE_MAX) {
                        free(s->labels);
                        continue;
                }
                s->family = to[s->family];
                s->hash = hash_of(s->family, s->labels);
                m->ser[o++] = *s;
        }
        m->n_ser = o;
        free(to);
        pthread_mutex_unlock(&m->mu);
}

int veil_metrics_get(struct veil_metrics *m, const char *name,
                     const char *labels, double *v) {
        pthread_mutex_lock(&m->mu);
        long f = find_family(m, name);
        int rc = -VEIL_ENOENT;
        if (!labels)
                labels = "";
        for (size_t i = 0; f >= 0 && i < m->n_ser; i++) {
                if (m->ser[i].family == (size_t)f &&
                    !strcmp(m->ser[i].labels, labels)) {
                        *v = m->ser[i].value;
                        rc = 0;
                        break;
                }
        }
        pthread_mutex_unlock(&m->mu);
        return rc;
}

/* ------------------------------------------------------------------ */
/* Rendering                                                          */
/* ------------------------------------------------------------------ */

struct out {
        char *d;
        size_t len, cap;
        int oom;
};

static void put(struct out *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...) {
        if (o->oom)
                return;
        for (;;) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(o->d + o->len, o->cap - o->len, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        o->oom = 1;
                        return;
                }
                if ((size_t)n < o->cap - o->len) {
                        o->len += (size_t)n;
                        return;
                }
                size_t cap = (o->cap + (size_t)n + 1) * 2;
                char *d = realloc(o->d, cap);
                if (!d) {
                        o->oom = 1;
                        return;
                }
                o->d = d;
                o->cap = cap;
        }
}

/* Prometheus numbers: integers without an exponent, the rest round-trip. */
static const char *num(char *buf, size_t size, double v) {
        if (isnan(v))
                return "NaN";
        if (isinf(v))
                return v > 0 ? "+Inf" : "-Inf";
        if (v == floor(v) && fabs(v) < 1e15) {
                snprintf(buf, size, "%.0f", v);
                return buf;
        }
        /* The shortest of 15 or 17 digits that reads back exactly: bucket
         * bounds print as 0.005, not 0.0050000000000000001. */
        snprintf(buf, size, "%.15g", v);
        if (strtod(buf, NULL) != v)
                snprintf(buf, size, "%.17g", v);
        return buf;
}

static void put_help(struct out *o, const struct family *f) {
        static const char *const types[] = {"", "counter", "gauge",
                                            "histogram"};
        put(o, "# HELP %s ", f->name);
        for (const char *c = f->help; *c; c++) {
                if (*c == '\\')
                        put(o, "\\\\");
                else if (*c == '\n')
                        put(o, "\\n");
                else
                        put(o, "%c", *c);
        }
        put(o, "\n# TYPE %s %s\n", f->name, types[f->type]);
}

static void put_histogram(struct out *o, const struct family *f,
                          const struct series *s) {
        char b[64];
        const char *sep = s->labels[0] ? "," : "";
        uint64_t cum = 0;
        for (size_t i = 0; i <= f->n_buckets; i++) {
                cum += s->counts[i];
                const char *le = i < f->n_buckets
                                         ? num(b, sizeof(b), f->buckets[i])
                                         : "+Inf";
                put(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels,
                    sep, le, (unsigned long long)cum);
        }
        const char *lb = s->labels[0] ? "{" : "", *rb = s->labels[0] ? "}" : "";
        put(o, "%s_sum%s%s%s %s\n", f->name, lb, s->labels, rb,
            num(b, sizeof(b), s->sum));
        put(o, "%s_count%s%s%s %llu\n", f->name, lb, s->labels, rb,
            (unsigned long long)s->count);
}

int veil_metrics_render(struct veil_metrics *m, char **out, size_t *len) {
        struct out o = {malloc(16384), 0, 16384, 0};
        if (!o.d)
                return -VEIL_ENOMEM;
        o.d[0] = '\0';
        char b[64];
        pthread_mutex_lock(&m->mu);
        for (size_t f = 0; f < m->n_fam; f++) {
                const struct family *fam = &m->fam[f];
                int any = 0;
                for (size_t i = 0; i < m->n_ser; i++) {
                        const struct series *s = &m->ser[i];
                        if (s->family != f)
                                continue;
                        if (!any++)
                                put_help(&o, fam);
                        if (fam->type == VEIL_METRIC_HISTOGRAM)
                                put_histogram(&o, fam, s);
                        else if (s->labels[0])
                                put(&o, "%s{%s} %s\n", fam->name, s->labels,
                                    num(b, sizeof(b), s->value));
                        else
                                put(&o, "%s %s\n", fam->name,
                                    num(b, sizeof(b), s->value));
                }
        }
        put(&o,
            "# HELP veil_metrics_series_dropped_total Metric updates ignored "
            "because the registry holds %d series.\n"
            "# TYPE veil_metrics_series_dropped_total counter\n"
            "veil_metrics_series_dropped_total %s\n",
            VEIL_METRICS_MAX_SERIES, num(b, sizeof(b), m->dropped_series));
        pthread_mutex_unlock(&m->mu);
        if (o.oom) {
                free(o.d);
                return -VEIL_ENOMEM;
        }
        *out = o.d;
        *len = o.len;
        return 0;
}

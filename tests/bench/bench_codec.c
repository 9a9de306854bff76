/*
 * bench_codec.c — decode/encode throughput of the codec on one core, and
 * allocations per event in steady state. Prints numbers, never fails.
 *
 * The reference in the same run is Avro-C's own avro_value_read() of the
 * same bytes into a reused generic value (no schema resolution, no copy to
 * an event), and a plain memcpy of the record into the arena as the floor
 * of any decoder that copies.
 *
 * usage: bench_codec [SRCDIR [SECONDS]]   (SRCDIR defaults to BENCH_ROOT)
 */
#include <avro.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "codec.h"

/* Counting allocations means interposing malloc: the count has to be a
 * global, which is fine in a benchmark's main file. Not under ASan, which
 * interposes malloc itself. */
static unsigned long n_alloc;
#if defined(__SANITIZE_ADDRESS__)
#define ALLOCS_COUNTED 0
#else
#define ALLOCS_COUNTED 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

void *malloc(size_t n) {
        n_alloc++;
        return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
        n_alloc++;
        return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
        n_alloc++;
        return __libc_realloc(p, n);
}
int posix_memalign(void **p, size_t a, size_t n) {
        n_alloc++;
        *p = __libc_memalign(a, n);
        return *p ? 0 : ENOMEM;
}
void free(void *p) {
        __libc_free(p);
}
#endif

/* config.c has the real one when the bench links the whole core. */
__attribute__((weak)) char *veil_config_path(const struct veil_config *cfg,
                                             const char *p) {
        size_t n = strlen(cfg->dir) + strlen(p) + 2;
        char *s = malloc(n);
        if (s)
                snprintf(s, n, "%s/%s", cfg->dir, p);
        return s;
}

static double now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define BATCH 256

struct run {
        const char *name;
        double rate;
        double allocs;
};

enum what { DECODE_EVENT, DECODE_REC, ENCODE_EVENT, AVROC_READ, MEMCPY };

struct ctx {
        struct veil_codec *c;
        const unsigned char *buf;
        size_t len;
        struct veil_arena *arena;
        struct veil_event *evs;
        struct veil_buf *out;
        avro_reader_t reader;
        avro_value_t *value;
};

static int once(struct ctx *x, enum what w, size_t i) {
        char err[256];
        const veil_rec_t *r;
        switch (w) {
        case DECODE_EVENT:
                return veil_codec_decode_event(x->c, x->buf, x->len,
                                               &x->evs[i % BATCH], x->arena,
                                               err, sizeof(err));
        case DECODE_REC:
                return veil_codec_decode_rec(x->c, x->buf, x->len, &r, err,
                                             sizeof(err));
        case ENCODE_EVENT:
                return veil_codec_encode_event(x->c, &x->evs[0], x->out, err,
                                               sizeof(err));
        case AVROC_READ:
                avro_reader_memory_set_source(x->reader, (const char *)x->buf,
                                              (int64_t)x->len);
                return avro_value_read(x->reader, x->value);
        case MEMCPY: {
                char *p = veil_arena_alloc(x->arena, x->len);
                if (!p)
                        return -1;
                memcpy(p, x->buf, x->len);
                return 0;
        }
        }
        return -1;
}

static struct run measure(const char *name, struct ctx *x, enum what w,
                          double seconds) {
        size_t n = 0;
        /* warm up: arena and buffers reach their working size */
        for (size_t i = 0; i < 4 * BATCH; i++) {
                if (i % BATCH == 0)
                        veil_arena_reset(x->arena);
                if (once(x, w, i)) {
                        fprintf(stderr, "%s failed\n", name);
                        exit(1);
                }
        }
        veil_arena_reset(x->arena);
        unsigned long a0 = n_alloc;
        double t0 = now(), t;
        do {
                for (size_t i = 0; i < 16 * BATCH; i++, n++) {
                        if (i % BATCH == 0)
                                veil_arena_reset(x->arena);
                        once(x, w, i);
                }
                t = now();
        } while (t - t0 < seconds);
        struct run r = {name, (double)n / (t - t0),
                        (double)(n_alloc - a0) / (double)n};
        return r;
}

/* A recommendation record as dp_model builds one (10 scored items, a few
 * strings), through the SDK's veil_rec_* setters and encoded; the ceiling
 * is Avro-C filling a reused generic value by field index and writing it,
 * which is what a path-free builder could at best do. */
static int rec_build(struct veil_codec *c, struct veil_buf *out, int n) {
        char err[256];
        static const char *const ids[] = {"sku-000042", "sku-000007",
                                          "sku-001234", "sku-000999",
                                          "sku-000100"};
        veil_rec_t *r = veil_codec_rec_begin(c);
        if (!r)
                return -1;
        veil_rec_set_str(r, "subject", "k1.Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4");
        veil_rec_set_str(r, "event_id", "6f1c2d1e-8c4b-4a51-9d7e-000000000001");
        for (int i = 0; i < n; i++) {
                veil_rec_t *it = veil_rec_append(r, "items");
                if (!it)
                        return -1;
                veil_rec_set_str(it, "item_id", ids[i % 5]);
                veil_rec_set_double(it, "score", 1.0 / (i + 1));
        }
        veil_rec_set_str(r, "tier", "personalized");
        veil_rec_set_str(r, "explanation", "because you viewed similar items");
        veil_rec_set_long(r, "model_version", 42);
        veil_rec_set_null(r, "epsilon_spent");
        veil_rec_set_double(r, "delta", 0.0);
        veil_rec_set_long(r, "ts", 1717000000123);
        out->len = 0;
        return veil_codec_rec_encode(c, out, err, sizeof(err));
}

static int rec_avroc(avro_value_t *v, avro_writer_t w, char *buf, size_t cap,
                     int n) {
        static const char *const ids[] = {"sku-000042", "sku-000007",
                                          "sku-001234", "sku-000999",
                                          "sku-000100"};
        avro_value_t f, e, x;
        avro_value_reset(v);
        avro_value_get_by_index(v, 0, &f, NULL);
        avro_value_set_string(&f, "k1.Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4");
        avro_value_get_by_index(v, 1, &f, NULL);
        avro_value_set_string(&f, "6f1c2d1e-8c4b-4a51-9d7e-000000000001");
        avro_value_get_by_index(v, 2, &f, NULL);
        for (int i = 0; i < n; i++) {
                avro_value_append(&f, &e, NULL);
                avro_value_get_by_index(&e, 0, &x, NULL);
                avro_value_set_string(&x, ids[i % 5]);
                avro_value_get_by_index(&e, 1, &x, NULL);
                avro_value_set_double(&x, 1.0 / (i + 1));
        }
        avro_value_get_by_index(v, 3, &f, NULL);
        avro_value_set_string(&f, "personalized");
        avro_value_get_by_index(v, 4, &f, NULL);
        avro_value_set_string(&f, "because you viewed similar items");
        avro_value_get_by_index(v, 5, &f, NULL);
        avro_value_set_long(&f, 42);
        avro_value_get_by_index(v, 6, &f, NULL);
        avro_value_set_branch(&f, 0, &e);
        avro_value_get_by_index(v, 7, &f, NULL);
        avro_value_set_double(&f, 0.0);
        avro_value_get_by_index(v, 8, &f, NULL);
        avro_value_set_long(&f, 1717000000123);
        avro_writer_memory_set_dest(w, buf, (int64_t)cap);
        return avro_value_write(w, v);
}

static void bench_rec(const char *src, double seconds) {
        char path[1024], err[512];
        struct veil_codec *c;
        snprintf(path, sizeof(path), "%s/schemas/recommendation.avsc", src);
        if (veil_codec_new_file(&c, path, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                return;
        }
        avro_schema_t s;
        avro_value_iface_t *cls;
        avro_value_t v;
        static char text[65536], buf[4096];
        FILE *f = fopen(path, "rb");
        size_t tn = f ? fread(text, 1, sizeof(text), f) : 0;
        if (f)
                fclose(f);
        if (avro_schema_from_json_length(text, tn, &s))
                return;
        cls = avro_generic_class_from_schema(s);
        avro_generic_value_new(cls, &v);
        avro_writer_t w = avro_writer_memory(buf, sizeof(buf));
        struct veil_buf out = {0};
        double rate[2], allocs[2];
        for (int k = 0; k < 2; k++) {
                size_t n = 0;
                for (int i = 0; i < 1000; i++)
                        if (k ? rec_avroc(&v, w, buf, sizeof(buf), 10)
                              : rec_build(c, &out, 10)) {
                                fprintf(stderr, "record build failed\n");
                                return;
                        }
                unsigned long a0 = n_alloc;
                double t0 = now(), t;
                do {
                        for (int i = 0; i < 4096; i++, n++)
                                if (k)
                                        rec_avroc(&v, w, buf, sizeof(buf), 10);
                                else
                                        rec_build(c, &out, 10);
                        t = now();
                } while (t - t0 < seconds);
                rate[k] = (double)n / (t - t0);
                allocs[k] = (double)(n_alloc - a0) / (double)n;
        }
        printf("\nrecommendation record, 10 items: %zu bytes\n", out.len);
        printf("%-42s %14s %12s %12s\n", "", "us/record", "vs Avro-C",
               "allocs/rec");
        printf("%-42s %14.3f %11.2fx %12.3f\n",
               "Avro-C by index + write (ceiling)", 1e6 / rate[1], 1.0,
               ALLOCS_COUNTED ? allocs[1] : 0.0);
        printf("%-42s %14.3f %11.2fx %12.3f\n",
               "veil_rec_* by path + rec_encode", 1e6 / rate[0],
               rate[0] / rate[1], ALLOCS_COUNTED ? allocs[0] : 0.0);
        avro_writer_free(w);
        avro_value_decref(&v);
        avro_value_iface_decref(cls);
        avro_schema_decref(s);
        veil_buf_free(&out);
        veil_codec_destroy(c);
}

int main(int argc, char **argv) {
#ifndef BENCH_ROOT
#define BENCH_ROOT "."
#endif
        const char *src = argc > 1 ? argv[1] : BENCH_ROOT;
        double seconds = argc > 2 ? atof(argv[2]) : 1.0;
        char path[1024], err[512];
        struct veil_codec *c, *c0;
        snprintf(path, sizeof(path), "%s/schemas/interaction.avsc", src);
        if (veil_codec_new_file(&c, path, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        struct veil_config cfg = {0};
        char dir[1024], k[] = "", v0[] = "tests/unit/data/codec/interaction_v0.avsc",
             v1[] = "schemas/interaction.avsc";
        snprintf(dir, sizeof(dir), "%s", src);
        cfg.dir = dir;
        struct veil_kvpair ws = {.key = k, .value = v0};
        struct veil_binding b = {.topic = "in", .schema = v1,
                                 .writer_schemas = &ws, .n_writer_schemas = 1,
                                 .schema_id = -1};
        if (veil_codec_new(&c0, &cfg, &b, err, sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }

        static struct veil_kv attrs[] = {{"page", "product"}, {"arm", "b"}};
        struct veil_event ev = {
                .event_id = "6f1c2d1e-8c4b-4a51-9d7e-000000000001",
                .user_id = "user-000123456789",
                .ts_ms = 1717000000123,
                .type = "add_to_cart",
                .item_id = "sku-000042",
                .value = 2,
                .gpc = 0,
                .ctx = {.device = "mobile",
                        .ip = "203.0.113.7",
                        .user_agent = "Mozilla/5.0 (Android 14)",
                        .has_geo = 1,
                        .lat = 48.8566,
                        .lon = 2.3522,
                        .country = "FR",
                        .session_id = "s-9f2c",
                        .timezone = "Europe/Paris",
                        .attrs = attrs,
                        .n_attrs = 2}};
        struct veil_buf enc = {0}, out = {0};
        if (veil_codec_encode_event(c, &ev, &enc, err, sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }

        /* the same event written with the old schema, through Avro-C */
        avro_schema_t s0, s1;
        snprintf(path, sizeof(path), "%s/%s", src, v0);
        FILE *f = fopen(path, "rb");
        static char text[65536];
        size_t tn = f ? fread(text, 1, sizeof(text), f) : 0;
        if (f)
                fclose(f);
        if (avro_schema_from_json_length(text, tn, &s0))
                return 1;
        avro_value_iface_t *cls0 = avro_generic_class_from_schema(s0);
        avro_value_t val0, fv;
        avro_generic_value_new(cls0, &val0);
        static const char *const strs[][2] = {{"event_id", "6f1c2d1e-8c4b-4a51-9d7e-000000000001"},
                                               {"user_id", "user-000123456789"},
                                               {"type", "add_to_cart"},
                                               {"item_id", "sku-000042"}};
        for (int i = 0; i < 4; i++) {
                avro_value_get_by_name(&val0, strs[i][0], &fv, NULL);
                avro_value_set_string(&fv, strs[i][1]);
        }
        avro_value_get_by_name(&val0, "ts", &fv, NULL);
        avro_value_set_long(&fv, ev.ts_ms);
        avro_value_get_by_name(&val0, "value", &fv, NULL);
        avro_value_set_int(&fv, 2);
        avro_value_t br, ctx;
        avro_value_get_by_name(&val0, "referrer", &fv, NULL);
        avro_value_set_branch(&fv, 0, &br);
        avro_value_get_by_name(&val0, "tc_string", &fv, NULL);
        avro_value_set_branch(&fv, 0, &br);
        avro_value_get_by_name(&val0, "context", &ctx, NULL);
        static const char *const cs[][2] = {{"device", "mobile"},
                                            {"ip", "203.0.113.7"},
                                            {"user_agent", "Mozilla/5.0 (Android 14)"},
                                            {"country", "FR"},
                                            {"session_id", "s-9f2c"}};
        for (int i = 0; i < 5; i++) {
                avro_value_get_by_name(&ctx, cs[i][0], &fv, NULL);
                avro_value_set_branch(&fv, 1, &br);
                avro_value_set_string(&br, cs[i][1]);
        }
        avro_value_get_by_name(&ctx, "lat", &fv, NULL);
        avro_value_set_branch(&fv, 1, &br);
        avro_value_set_double(&br, ev.ctx.lat);
        avro_value_get_by_name(&ctx, "lon", &fv, NULL);
        avro_value_set_branch(&fv, 1, &br);
        avro_value_set_double(&br, ev.ctx.lon);
        avro_value_get_by_name(&ctx, "attrs", &fv, NULL);
        for (int i = 0; i < 2; i++) {
                avro_value_t e;
                avro_value_add(&fv, attrs[i].key, &e, NULL, NULL);
                avro_value_set_string(&e, attrs[i].value);
        }
        static char old[1024];
        avro_writer_t w = avro_writer_memory(old, sizeof(old));
        if (avro_value_write(w, &val0))
                return 1;
        size_t old_len = (size_t)avro_writer_tell(w);

        /* Avro-C's reader of the current schema, for the reference */
        snprintf(path, sizeof(path), "%s/schemas/interaction.avsc", src);
        f = fopen(path, "rb");
        tn = f ? fread(text, 1, sizeof(text), f) : 0;
        if (f)
                fclose(f);
        if (avro_schema_from_json_length(text, tn, &s1))
                return 1;
        avro_value_iface_t *cls1 = avro_generic_class_from_schema(s1);
        avro_value_t val1;
        avro_generic_value_new(cls1, &val1);

        struct veil_arena arena;
        veil_arena_init(&arena, 64 << 10, 0);
        static struct veil_event evs[BATCH];
        evs[0] = ev;
        struct ctx x = {c, enc.data, enc.len, &arena, evs, &out,
                        avro_reader_memory("", 0), &val1};
        struct ctx x0 = x;
        x0.c = c0;
        x0.buf = (const unsigned char *)old;
        x0.len = old_len;

        struct run runs[6];
        runs[0] = measure("memcpy into the arena (floor)", &x, MEMCPY, seconds);
        runs[1] = measure("Avro-C avro_value_read (reference)", &x, AVROC_READ,
                          seconds);
        runs[2] = measure("veil decode_event", &x, DECODE_EVENT, seconds);
        runs[3] = measure("veil decode_event, v0 writer (resolved)", &x0,
                          DECODE_EVENT, seconds);
        runs[4] = measure("veil decode_rec (Avro-C value)", &x, DECODE_REC,
                          seconds);
        evs[0] = ev;
        runs[5] = measure("veil encode_event", &x, ENCODE_EVENT, seconds);

        printf("event: %zu bytes (v0 writer: %zu bytes), batches of %d, "
               "one core\n",
               enc.len, old_len, BATCH);
        printf("%-42s %14s %12s %12s\n", "", "events/s", "vs Avro-C",
               "allocs/ev");
        for (int i = 0; i < 6; i++)
                if (ALLOCS_COUNTED)
                        printf("%-42s %14.0f %11.2fx %12.3f\n", runs[i].name,
                               runs[i].rate, runs[i].rate / runs[1].rate,
                               runs[i].allocs);
                else
                        printf("%-42s %14.0f %11.2fx %12s\n", runs[i].name,
                               runs[i].rate, runs[i].rate / runs[1].rate,
                               "n/a");

        avro_reader_free(x.reader);
        avro_writer_free(w);
        avro_value_decref(&val0);
        avro_value_decref(&val1);
        avro_value_iface_decref(cls0);
        avro_value_iface_decref(cls1);
        avro_schema_decref(s0);
        avro_schema_decref(s1);
        veil_arena_free(&arena);
        veil_buf_free(&enc);
        veil_buf_free(&out);
        veil_codec_destroy(c);
        veil_codec_destroy(c0);
        bench_rec(src, seconds);
        return 0;
}

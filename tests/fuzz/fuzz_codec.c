/*
 * libFuzzer: the Avro decoder with each schema. The first byte picks the
 * schema (and, for the interaction schema, the typed-event path or the
 * generic record path); the rest is the record. Decoding hostile bytes must
 * fail cleanly, never crash, leak or read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "arena.h"
#include "codec.h"

static const char *const schemas[] = {
        "interaction", "consent", "recommendation", "model_update", "audit",
        "access"};
#define N_SCHEMAS (sizeof(schemas) / sizeof(*schemas))

static struct veil_codec *codecs[N_SCHEMAS];
static struct veil_codec *confluent;
static struct veil_arena arena;

static void cleanup(void) {
        for (size_t i = 0; i < N_SCHEMAS; i++)
                veil_codec_destroy(codecs[i]);
        veil_codec_destroy(confluent);
        veil_arena_free(&arena);
}

/* Called once before fuzzing: what it allocates lives for the process and
 * is not a leak of any input. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        char path[4096], err[512];
        for (size_t i = 0; i < N_SCHEMAS; i++) {
                snprintf(path, sizeof(path), "%s/schemas/%s.avsc",
                         VEIL_SRCDIR, schemas[i]);
                if (veil_codec_new_file(&codecs[i], path, VEIL_FRAMING_RAW, 0,
                                        err, sizeof(err))) {
                        fprintf(stderr, "%s\n", err);
                        abort();
                }
        }
        snprintf(path, sizeof(path), "%s/schemas/interaction.avsc",
                 VEIL_SRCDIR);
        if (veil_codec_new_file(&confluent, path, VEIL_FRAMING_CONFLUENT, 7,
                                err, sizeof(err)))
                abort();
        veil_arena_init(&arena, 1 << 16, 64 << 20);
        atexit(cleanup);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        unsigned sel = data[0];
        data++;
        size--;
        char err[512];
        if (sel % 8 == 6 || sel % 8 == 7) {
                struct veil_event ev;
                struct veil_codec *c = sel % 8 == 6 ? codecs[0] : confluent;
                if (veil_codec_decode_event(c, data, size, &ev, &arena, err,
                                            sizeof(err)) == 0) {
                        /* What decodes must encode again. */
                        struct veil_buf out = {0};
                        if (veil_codec_encode_event(c, &ev, &out, err,
                                                    sizeof(err)))
                                abort();
                        veil_buf_free(&out);
                }
                veil_arena_reset(&arena);
                return 0;
        }
        const veil_rec_t *rec;
        struct veil_codec *c = codecs[sel % 8 % N_SCHEMAS];
        if (veil_codec_decode_rec(c, data, size, &rec, err, sizeof(err)) == 0) {
                char *json = veil_codec_rec_json(c, data, size);
                free(json);
        }
        return 0;
}

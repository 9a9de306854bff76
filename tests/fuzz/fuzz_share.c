/*
 * libFuzzer: what dp_model reads of the other instances' spend and
 * updates (plugins/dp_model/share.c). The first byte picks the input:
 *   0  a model_update record (raw Avro), applied to a small model, both
 *      live and kept until a first batch;
 *   1  the checkpoint's table of senders (VDP3, or older VDP2/VDPS);
 *   2  the file beside accountant_file (VRH2/VRH1), its checksum made
 *      here (a fuzzer cannot forge BLAKE2b).
 * Hostile bytes must be refused cleanly, never crash, leak or read out of
 * bounds. And what is taken must survive the trip through this build's
 * own encoder: the other senders' ρ read back is the ρ written, bit for
 * bit, so a restart never counts less (nor more) than before it. A model
 * value must stay finite: one NaN or infinity spreads through every
 * score and checkpoint.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "catalog.h"
#include "codec.h"
#include "model.h"
#include "share.h"

#define SELF "self"
#define LINEAGE 5u

static struct veil_codec *codec;

static void cleanup(void) {
        veil_codec_destroy(codec);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        char path[4096], err[512];
        snprintf(path, sizeof(path), "%s/schemas/model_update.avsc",
                 VEIL_SRCDIR);
        if (sodium_init() < 0 ||
            veil_codec_new_file(&codec, path, VEIL_FRAMING_RAW, 0, err,
                                sizeof(err))) {
                fprintf(stderr, "fuzz_share: %s\n", err);
                abort();
        }
        atexit(cleanup);
        return 0;
}

/* Items i0..i3 of room for 8, dim 2, 4 feature rows. */
static struct veil_model *small_model(void) {
        char err[256], id[8];
        struct veil_catalog *cat;
        struct veil_model *m;
        if (veil_catalog_new(&cat, 8, 5, err, sizeof(err)) ||
            veil_model_new(&m, cat, 2, 4, 0.1f, 3, err, sizeof(err)))
                abort();
        for (int i = 0; i < 4; i++) {
                snprintf(id, sizeof(id), "i%d", i);
                if (veil_model_item(m, id, 1) != i)
                        abort();
        }
        return m;
}

static void finite_or_abort(const struct veil_model *m) {
        size_t items = veil_model_items(m);
        for (size_t i = 0; i < items; i++) {
                if (!isfinite(m->b[i]))
                        abort();
                for (size_t c = 0; c < m->d; c++)
                        if (!isfinite(m->V[i * m->d + c]) ||
                            !isfinite(m->U[i * m->d + c]))
                                abort();
        }
        for (size_t i = 0; i < m->space * m->d; i++)
                if (!isfinite(m->E[i]))
                        abort();
}

static struct veil_share *share(void) {
        struct veil_share *sh;
        if (veil_share_new(&sh, SELF, LINEAGE, 1 << 20))
                abort();
        return sh;
}

/* The senders' ρ of sh, through the checkpoint table and through the
 * .others file, into fresh instances: the same, bit for bit. */
static void round_trip(const struct veil_share *sh) {
        double want = veil_share_others_rho(sh, NULL);
        void *data;
        size_t len;
        struct veil_share *back = share();
        if (veil_share_encode(sh, 0.5, &data, &len) ||
            veil_share_decode(back, data, len))
                abort();
        free(data);
        if (memcmp(&(double){veil_share_others_rho(back, NULL)}, &want,
                   sizeof(want)) ||
            veil_share_own_before(back) != veil_share_own_before(sh))
                abort();
        veil_share_free(back);
        back = share();
        if (veil_share_rho_encode(sh, &data, &len) ||
            veil_share_rho_merge(back, data, len))
                abort();
        free(data);
        if (memcmp(&(double){veil_share_others_rho(back, NULL)}, &want,
                   sizeof(want)))
                abort();
        veil_share_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        unsigned sel = data[0] % 3;
        data++;
        size--;
        char err[512];
        struct veil_share *sh = share();
        if (sel == 0) {
                const veil_rec_t *r;
                if (veil_codec_decode_rec(codec, data, size, &r, err,
                                          sizeof(err)) == 0) {
                        struct veil_model *m = small_model();
                        struct veil_share *kept = share();
                        veil_share_go_live(sh, m);
                        /* Twice: the second is a replay, skipped. */
                        for (int i = 0; i < 2; i++)
                                veil_share_on_record(sh, m, r, err,
                                                     sizeof(err));
                        veil_share_on_record(kept, m, r, err, sizeof(err));
                        veil_share_go_live(kept, m);
                        finite_or_abort(m);
                        /* The rate raises the accountant's, which keeps
                         * only a finite number ≥ 0. */
                        double dr = veil_share_draws_per_rho(sh);
                        if (!(isfinite(dr) && dr >= 0))
                                abort();
                        round_trip(sh);
                        veil_share_free(kept);
                        veil_model_free(m); /* and its catalog */
                }
        } else if (sel == 1) {
                if (veil_share_decode(sh, data, size) == 0)
                        round_trip(sh);
        } else {
                unsigned char *buf = malloc(size + crypto_generichash_BYTES);
                if (!buf)
                        abort();
                memcpy(buf, data, size);
                crypto_generichash(buf + size, crypto_generichash_BYTES, buf,
                                   size, NULL, 0);
                if (veil_share_rho_merge(sh, buf,
                                         size + crypto_generichash_BYTES) == 0)
                        round_trip(sh);
                free(buf);
        }
        veil_share_free(sh);
        return 0;
}

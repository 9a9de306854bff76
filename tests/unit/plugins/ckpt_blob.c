/* A plugin whose whole state is `size` bytes drawn from `seed`, saved and
 * restored verbatim: the host's checkpoint framing, chunking and
 * reassembly are tested on states of any size (test_checkpoint). Each
 * batch reports the state's size in the gauge state_bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {
        {"size", VEIL_PARAM_INT, "1000", 0, "bytes of state"},
        {"seed", VEIL_PARAM_INT, "1", 0, "seed of the bytes"},
        {"refuse", VEIL_PARAM_BOOL, "false", 0, "restore refuses anything"},
        {"fail_checkpoint", VEIL_PARAM_INT, "0", 0,
         "the checkpoint hook's call of this number (from 1) fails"},
        {"keep", VEIL_PARAM_INT, "0", 0,
         "restore keeps at most this many bytes (0: all), as a state that "
         "shrank since its checkpoint (profiles expired, people erased)"},
        {NULL, 0, NULL, 0, NULL}};

struct blob {
        veil_stage_t *st;
        unsigned char *p;
        size_t n;
        int refuse;
        long fail_at, calls;
        size_t keep;
};

static int init(veil_stage_t *st, const veil_params_t *p, void **s, char *e,
                size_t n) {
        struct blob *b = calloc(1, sizeof(*b));
        b->st = st;
        b->n = (size_t)veil_params_int(p, "size", 1000);
        b->refuse = veil_params_bool(p, "refuse", 0);
        b->fail_at = (long)veil_params_int(p, "fail_checkpoint", 0);
        b->keep = (size_t)veil_params_int(p, "keep", 0);
        b->p = malloc(b->n ? b->n : 1);
        if (!b->p) {
                snprintf(e, n, "out of memory");
                free(b);
                return -VEIL_ENOMEM;
        }
        uint64_t x = (uint64_t)veil_params_int(p, "seed", 1) * 2654435761u + 1;
        for (size_t i = 0; i < b->n; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                b->p[i] = (unsigned char)x;
        }
        *s = b;
        return 0;
}
static int process(void *s, struct veil_batch *b) {
        (void)b;
        struct blob *x = s;
        veil_metric_set(x->st, "state_bytes", (double)x->n);
        return 0;
}
static void destroy(void *s) {
        struct blob *b = s;
        free(b->p);
        free(b);
}
/* With fail_checkpoint: N, its N-th call fails, as a plugin's hook may
 * (out of memory): the stages after it are not saved that time. */
static int checkpoint(void *s, void **data, size_t *len) {
        struct blob *b = s;
        if (++b->calls == b->fail_at)
                return -VEIL_ENOMEM;
        if (!(*data = malloc(b->n ? b->n : 1)))
                return -VEIL_ENOMEM;
        memcpy(*data, b->p, b->n);
        *len = b->n;
        return 0;
}
/* With refuse: true, as a plugin refuses a checkpoint it cannot use. */
static int restore(void *s, const void *data, size_t len, char *e, size_t n) {
        struct blob *b = s;
        if (b->refuse) {
                snprintf(e, n, "refused");
                return -VEIL_EINVAL;
        }
        if (b->keep && len > b->keep)
                len = b->keep;
        unsigned char *p = malloc(len ? len : 1);
        if (!p)
                return -VEIL_ENOMEM;
        memcpy(p, data, len);
        free(b->p);
        b->p = p;
        b->n = len;
        return 0;
}

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "ckpt_blob",
        .version = "0.1",
        .params = params,
        .init = init,
        .process = process,
        .destroy = destroy,
        .checkpoint = checkpoint,
        .restore = restore,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

/* A plugin built for another ABI version: the loader must refuse it
 * (TEST_ABI: a version to build for instead, tests/unit/CMakeLists.txt).
 * With TEST_BAD_COMMAND, a command without its run, and with
 * TEST_HALF_STATE, a checkpoint without its restore, which the loader must
 * refuse too. */
#include <veil/veil.h>

#ifndef TEST_ABI
#define TEST_ABI (VEIL_ABI_VERSION + 41)
#endif

static int init(veil_stage_t *st, const veil_params_t *p, void **s, char *e,
                size_t n) {
        (void)st, (void)p, (void)s, (void)e, (void)n;
        return 0;
}
static int process(void *s, struct veil_batch *b) {
        (void)s, (void)b;
        return 0;
}
static void destroy(void *s) { (void)s; }

#ifdef TEST_BAD_COMMAND
static const struct veil_command commands[] = {
        {"probe", "probe", "a command without run", NULL}, {NULL, NULL, NULL, NULL}};
#endif

#ifdef TEST_HALF_STATE
static int checkpoint(void *s, void **data, size_t *len) {
        (void)s, (void)data, (void)len;
        return 0;
}
#endif

static const struct veil_plugin plugin = {
#ifdef TEST_BAD_COMMAND
        .commands = commands,
#endif
#ifdef TEST_HALF_STATE
        .checkpoint = checkpoint,
#endif
        .abi_version = TEST_ABI,
        .struct_size = sizeof(struct veil_plugin),
        .name = "bad_abi",
        .init = init,
        .process = process,
        .destroy = destroy,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

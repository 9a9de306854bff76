/* A plugin that says it decides consent (VEIL_PLUGIN_DECIDES_CONSENT) under
 * a name that is not "consent", so the host's order check is tested on the
 * flag and not on a name. It processes nothing. */
#include <veil/veil.h>

static int init(veil_stage_t *st, const veil_params_t *p, void **s, char *e,
                size_t n) {
        (void)p, (void)e, (void)n;
        *s = st;
        return 0;
}
static int process(void *s, struct veil_batch *b) {
        (void)s, (void)b;
        return 0;
}
static void destroy(void *s) { (void)s; }

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "gate",
        .init = init,
        .process = process,
        .destroy = destroy,
        .flags = VEIL_PLUGIN_DECIDES_CONSENT,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

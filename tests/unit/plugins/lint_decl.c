/* A plugin that declares whatever its `decl:` map says for the privacy lint
 * (path: keep | keep:REASON | pseudonym | pseudonym:REASON | generalize |
 * drop | invalid) and
 * declares an `events` output, so the host's lint is tested on
 * declarations no bundled plugin makes. It processes nothing. */
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

static const struct veil_param_def params[] = {
        {"decl", VEIL_PARAM_MAP, "{}", 0, "field path: treatment"},
        {NULL, 0, NULL, 0, NULL}};
static const char *const outputs[] = {"events", NULL};

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

static void lint(const veil_params_t *p, veil_lint_t *l) {
        for (size_t i = 0; i < veil_params_map_size(p, "decl"); i++) {
                const char *path = veil_params_map_key(p, "decl", i);
                const char *t = veil_params_map_value(p, "decl", i);
                if (!strncmp(t, "keep", 4))
                        veil_lint_field(l, path, VEIL_FIELD_KEPT,
                                        t[4] == ':' ? t + 5 : NULL);
                else if (!strncmp(t, "pseudonym", 9))
                        veil_lint_field(l, path, VEIL_FIELD_PSEUDONYMIZED,
                                        t[9] == ':' ? t + 10 : NULL);
                else if (!strcmp(t, "generalize"))
                        veil_lint_field(l, path, VEIL_FIELD_GENERALIZED,
                                        NULL);
                else if (!strcmp(t, "drop"))
                        veil_lint_field(l, path, VEIL_FIELD_DROPPED, NULL);
                else
                        veil_lint_field(l, path, VEIL_FIELD_INVALID, NULL);
        }
}

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "lint_decl",
        .params = params,
        .outputs = outputs,
        .init = init,
        .process = process,
        .destroy = destroy,
        .lint = lint,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

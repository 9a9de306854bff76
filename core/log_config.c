/*
 * log_config.c — the pipeline's `log:` section: `log: {level: info}`.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"

int veil_log_config_parse(const struct veil_config *cfg, int *level,
                          char *errstr, size_t errstr_size) {
        *level = -1;
        const struct veil_node *l = cfg->log;
        if (!l)
                return 0;
        const struct veil_node *at = l;
        const char *what = "must be a mapping such as {level: info}";
        if (l->kind == VEIL_NODE_MAP) {
                for (size_t i = 0; i < l->n; i++) {
                        if (strcmp(l->keys[i]->scalar, "level")) {
                                snprintf(errstr, errstr_size,
                                         "%s:%d:%d: log: unknown key '%s'; "
                                         "allowed keys: level",
                                         cfg->file, l->keys[i]->line,
                                         l->keys[i]->col, l->keys[i]->scalar);
                                return -VEIL_EINVAL;
                        }
                }
                const struct veil_node *v = veil_config_get(l, "level");
                if (!v)
                        return 0;
                at = v;
                what = "level must be error, warn, info or debug";
                if (v->kind == VEIL_NODE_SCALAR &&
                    (*level = veil_log_level_parse(v->scalar)) >= 0)
                        return 0;
        }
        snprintf(errstr, errstr_size, "%s:%d:%d: log: %s", cfg->file,
                 at->line, at->col, what);
        return -VEIL_EINVAL;
}

#include "lint.h"

#include <stdlib.h>
#include <string.h>

void veil_lint_field(veil_lint_t *l, const char *path,
                     veil_field_treatment_t t, const char *reason) {
        if (!l || !path)
                return;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                struct veil_lint_entry *e = realloc(l->e, cap * sizeof(*e));
                if (!e)
                        return;
                l->e = e;
                l->cap = cap;
        }
        l->e[l->n].path = strdup(path);
        l->e[l->n].treatment = t;
        l->e[l->n].reason = reason && *reason ? strdup(reason) : NULL;
        l->n++;
}

void veil_lint_collect(struct veil_lint *l, const struct veil_plugin *def,
                       const veil_params_t *params) {
        if (def->lint)
                def->lint(params, l);
}

void veil_lint_free(struct veil_lint *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->e[i].path);
                free(l->e[i].reason);
        }
        free(l->e);
        memset(l, 0, sizeof(*l));
}

/*
 * lint.h — what plugins declare for the privacy lint: how each stage treats
 * each event field (veil_lint_field), collected per stage.
 */
#ifndef VEIL_LINT_H
#define VEIL_LINT_H

#include <stddef.h>

#include "veil/veil.h"

struct veil_lint_entry {
        char *path;
        veil_field_treatment_t treatment;
        char *reason; /**< NULL when none was given */
};

struct veil_lint {
        struct veil_lint_entry *e;
        size_t n, cap;
};

/** Asks a plugin for its declarations (none when it has no lint hook). */
void veil_lint_collect(struct veil_lint *l, const struct veil_plugin *def,
                       const veil_params_t *params);
void veil_lint_free(struct veil_lint *l);

#endif

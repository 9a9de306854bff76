/*
 * plugin.h — finding and loading plugin shared objects.
 *
 * Like nginx, the loader checks the module's ABI version before it trusts
 * anything else in the struct; unlike a bare dlopen, every refusal names the
 * file and what would be valid.
 */
#ifndef VEIL_PLUGIN_H
#define VEIL_PLUGIN_H

#include <stddef.h>

#include "veil/veil.h"

/** The plugin's optional side inputs; NULL for a plugin built before the
 *  field existed (its struct ends before it). */
static inline const char *const *
veil_plugin_optional_sides(const struct veil_plugin *d) {
        return d->struct_size >= offsetof(struct veil_plugin,
                                          optional_side_inputs) +
                                         sizeof(d->optional_side_inputs)
                       ? d->optional_side_inputs
                       : NULL;
}

/** The plugin's VEIL_PLUGIN_* flags; 0 for a plugin built before the
 *  field existed. */
static inline uint32_t veil_plugin_flags(const struct veil_plugin *d) {
        return d->struct_size >= offsetof(struct veil_plugin, flags) +
                                         sizeof(d->flags)
                       ? d->flags
                       : 0;
}

struct veil_plugin_handle {
        const struct veil_plugin *def;
        void *dl;
        char *path; /**< the file loaded */
};

/** Loads `name_or_path`: a path if it contains '/', else "veil_<name>.so"
 *  searched in each directory of `path` in order. The message for a name
 *  found nowhere lists every place searched. */
int veil_plugin_load(struct veil_plugin_handle *h, const char *name_or_path,
                     char *const *path, size_t n_path, char *errstr,
                     size_t errstr_size);
void veil_plugin_unload(struct veil_plugin_handle *h);

/** Lists "veil_*.so" plugins in the path directories (malloc'd paths,
 *  first occurrence of a name wins); returns the count or negative. */
int veil_plugin_list(char *const *path, size_t n_path, char ***files);

#endif

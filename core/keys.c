#include "keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyring.h"

static int fail(const struct veil_config *cfg, const struct veil_node *n,
                char *errstr, size_t errstr_size, const char *what) {
        snprintf(errstr, errstr_size, "%s:%d:%d: keys: %s", cfg->file,
                 n ? n->line : 0, n ? n->col : 0, what);
        return -VEIL_EINVAL;
}

/* A throw-away key, drawn into locked memory: a temporary file, even
 * deleted at once, can leave the key in a disk's freed blocks. */
static int ephemeral(struct veil_keyring *kr, char *errstr,
                     size_t errstr_size) {
        int rc = veil_keyring_add_random(kr, "eph", errstr, errstr_size);
        if (!rc)
                rc = veil_keyring_set_active(kr, "eph", errstr, errstr_size);
        return rc;
}

int veil_keys_check(const struct veil_config *cfg, char *errstr,
                    size_t errstr_size) {
        const struct veil_node *keys = cfg->keys;
        if (!keys)
                return 0;
        if (keys->kind != VEIL_NODE_MAP)
                return fail(cfg, keys, errstr, errstr_size,
                            "must be a mapping with active and files, or "
                            "ephemeral: true");
        for (size_t i = 0; i < keys->n; i++) {
                const char *k = keys->keys[i]->scalar;
                if (strcmp(k, "active") && strcmp(k, "files") &&
                    strcmp(k, "ephemeral")) {
                        char m[256];
                        snprintf(m, sizeof(m),
                                 "unknown key '%s'; allowed keys: active, "
                                 "files, ephemeral",
                                 k);
                        return fail(cfg, keys->keys[i], errstr, errstr_size,
                                    m);
                }
        }
        const struct veil_node *eph = veil_config_get(keys, "ephemeral");
        const struct veil_node *files = veil_config_get(keys, "files");
        const struct veil_node *active = veil_config_get(keys, "active");
        if (eph) {
                if (eph->kind != VEIL_NODE_SCALAR ||
                    strcmp(eph->scalar, "true") || files || active)
                        return fail(cfg, eph, errstr, errstr_size,
                                    "ephemeral must be true and stand alone "
                                    "(no files, no active)");
                return 0;
        }
        if (!files || files->kind != VEIL_NODE_MAP || !files->n)
                return fail(cfg, files ? files : keys, errstr, errstr_size,
                            "files must map key ids to key files, e.g. "
                            "files: {k1: /etc/veil/keys/k1}");
        if (files->n > VEIL_KEYRING_MAX_KEYS) {
                char m[160];
                snprintf(m, sizeof(m),
                         "files lists %zu keys, the keyring holds at most "
                         "%d; retire old keys first",
                         files->n, VEIL_KEYRING_MAX_KEYS);
                return fail(cfg, files, errstr, errstr_size, m);
        }
        for (size_t i = 0; i < files->n; i++) {
                if (!veil_keyring_key_id_valid(files->keys[i]->scalar)) {
                        char m[200];
                        snprintf(m, sizeof(m),
                                 "key id '%.32s' is invalid: use 1 to %d "
                                 "characters from a-z, 0-9, '_' and '-'",
                                 files->keys[i]->scalar,
                                 VEIL_KEYRING_KEY_ID_MAX);
                        return fail(cfg, files->keys[i], errstr, errstr_size,
                                    m);
                }
                if (files->items[i]->kind != VEIL_NODE_SCALAR)
                        return fail(cfg, files->items[i], errstr, errstr_size,
                                    "each key file must be a path, e.g. "
                                    "files: {k1: /etc/veil/keys/k1}");
        }
        if (!active)
                return fail(cfg, keys, errstr, errstr_size,
                            "active is required: the key id new pseudonyms "
                            "are made with");
        if (active->kind != VEIL_NODE_SCALAR)
                return fail(cfg, active, errstr, errstr_size,
                            "active must be one key id, e.g. active: k1 "
                            "(new pseudonyms are made with one key)");
        char held[256] = "";
        size_t o = 0;
        for (size_t i = 0; i < files->n; i++) {
                if (!strcmp(files->keys[i]->scalar, active->scalar))
                        return 0;
                if (o < sizeof(held))
                        o += (size_t)snprintf(held + o, sizeof(held) - o,
                                              "%s%s", i ? ", " : "",
                                              files->keys[i]->scalar);
        }
        char m[512];
        snprintf(m, sizeof(m),
                 "active key '%s' is not in the keyring: the keyring holds %s",
                 active->scalar, held);
        return fail(cfg, active, errstr, errstr_size, m);
}

int veil_keys_ephemeral(const struct veil_config *cfg) {
        return cfg->keys && veil_config_get(cfg->keys, "ephemeral") != NULL;
}

int veil_keys_load(const struct veil_config *cfg, struct veil_keyring **out,
                   char *errstr, size_t errstr_size) {
        *out = NULL;
        int rc = veil_keys_check(cfg, errstr, errstr_size);
        if (rc || !cfg->keys)
                return rc;
        const struct veil_node *keys = cfg->keys;
        const struct veil_node *files = veil_config_get(keys, "files");
        const struct veil_node *active = veil_config_get(keys, "active");
        struct veil_keyring *kr;
        if ((rc = veil_keyring_new(&kr, errstr, errstr_size)))
                return rc;
        if (veil_keys_ephemeral(cfg)) {
                rc = ephemeral(kr, errstr, errstr_size);
        } else {
                for (size_t i = 0; !rc && i < files->n; i++) {
                        char e[512];
                        char *path = veil_config_path(cfg,
                                                      files->items[i]->scalar);
                        rc = path ? veil_keyring_add_file(
                                            kr, files->keys[i]->scalar, path,
                                            e, sizeof(e))
                                  : -VEIL_ENOMEM;
                        if (!path)
                                snprintf(e, sizeof(e), "out of memory");
                        free(path);
                        if (rc)
                                fail(cfg, files->items[i], errstr,
                                     errstr_size, e);
                }
                if (!rc) {
                        char e[512];
                        rc = veil_keyring_set_active(kr, active->scalar, e,
                                                     sizeof(e));
                        if (rc)
                                fail(cfg, active, errstr, errstr_size, e);
                }
        }
        if (rc) {
                veil_keyring_destroy(kr);
                return rc;
        }
        *out = kr;
        return 0;
}

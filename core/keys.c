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

/* A throw-away key: written to a private temporary file only long enough
 * for the keyring to read it into locked memory. */
static int ephemeral(struct veil_keyring *kr, char *errstr,
                     size_t errstr_size) {
        char dir[] = "/tmp/veil-key-XXXXXX";
        if (!mkdtemp(dir)) {
                snprintf(errstr, errstr_size,
                         "keys: cannot create a temporary directory");
                return -VEIL_EIO;
        }
        char path[64];
        snprintf(path, sizeof(path), "%s/ephemeral", dir);
        int rc = veil_keyring_keygen(path, errstr, errstr_size);
        if (!rc)
                rc = veil_keyring_add_file(kr, "eph", path, errstr,
                                           errstr_size);
        if (!rc)
                rc = veil_keyring_set_active(kr, "eph", errstr, errstr_size);
        unlink(path);
        rmdir(dir);
        return rc;
}

int veil_keys_load(const struct veil_config *cfg, struct veil_keyring **out,
                   char *errstr, size_t errstr_size) {
        *out = NULL;
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
        struct veil_keyring *kr;
        int rc = veil_keyring_new(&kr, errstr, errstr_size);
        if (rc)
                return rc;
        if (eph) {
                if (eph->kind != VEIL_NODE_SCALAR ||
                    strcmp(eph->scalar, "true") || files || active) {
                        veil_keyring_destroy(kr);
                        return fail(cfg, eph, errstr, errstr_size,
                                    "ephemeral must be true and stand alone "
                                    "(no files, no active)");
                }
                rc = ephemeral(kr, errstr, errstr_size);
        } else {
                if (!files || files->kind != VEIL_NODE_MAP || !files->n) {
                        veil_keyring_destroy(kr);
                        return fail(cfg, files ? files : keys, errstr,
                                    errstr_size,
                                    "files must map key ids to key files, "
                                    "e.g. files: {k1: /etc/veil/keys/k1}");
                }
                if (!active || active->kind != VEIL_NODE_SCALAR) {
                        veil_keyring_destroy(kr);
                        return fail(cfg, keys, errstr, errstr_size,
                                    "active is required: the key id new "
                                    "pseudonyms are made with");
                }
                for (size_t i = 0; !rc && i < files->n; i++) {
                        char e[512];
                        char *path = veil_config_path(cfg,
                                                      files->items[i]->scalar);
                        rc = veil_keyring_add_file(kr, files->keys[i]->scalar,
                                                   path, e, sizeof(e));
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

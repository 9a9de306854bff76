#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Who may change `path` (a file or a directory): only its owner, root or
 * us, and not group or others, or they could replace the code veil runs.
 * A sticky directory (/tmp) lets no one rename or remove another's
 * entries, so its write bits are fine. */
static int check_owner(const char *path, const char *plugin, int is_dir,
                       char *errstr, size_t errstr_size) {
        struct stat st;
        if (stat(path, &st) != 0) {
                snprintf(errstr, errstr_size, "plugin %s: %s: %s", plugin,
                         path, strerror(errno));
                return -VEIL_ENOENT;
        }
        const char *what = is_dir ? "its directory " : "";
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                snprintf(errstr, errstr_size,
                         "plugin %s: refused: %s%s is owned by uid %u, "
                         "neither root nor this process's user, who could "
                         "replace the code veil runs; fix with chown",
                         plugin, what, path, (unsigned)st.st_uid);
                return -VEIL_EINVAL;
        }
        mode_t w = st.st_mode & (S_IWGRP | S_IWOTH);
        if (is_dir && (st.st_mode & S_ISVTX))
                w = 0;
        if (w) {
                snprintf(errstr, errstr_size,
                         "plugin %s: refused: %s%s is writable by %s (mode "
                         "%04o), who could replace the code veil runs; fix "
                         "with chmod %s %s",
                         plugin, what, path,
                         w & S_IWOTH ? "others" : "its group",
                         (unsigned)(st.st_mode & 07777),
                         w & S_IWOTH ? (w & S_IWGRP ? "go-w" : "o-w") : "g-w",
                         path);
                return -VEIL_EINVAL;
        }
        return 0;
}

/* A plugin runs as us from its first instruction (dlopen runs its
 * constructors): the file, after symlinks, and every directory above it
 * must be ours or root's and writable by no one else, or someone else
 * could put their code in its place. The path returned (resolved, into
 * `real`) is the one to load: a link changed after the check cannot take
 * it elsewhere without writing a directory checked here. */
static int check_file(const char *file, char *real, char *errstr,
                      size_t errstr_size) {
        if (!realpath(file, real)) {
                snprintf(errstr, errstr_size, "plugin %s: %s", file,
                         strerror(errno));
                return -VEIL_ENOENT;
        }
        struct stat st;
        if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
                snprintf(errstr, errstr_size,
                         "plugin %s: not a regular file", file);
                return -VEIL_EINVAL;
        }
        int rc = check_owner(real, file, 0, errstr, errstr_size);
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", real);
        for (char *slash; !rc && (slash = strrchr(dir, '/'));) {
                slash[slash == dir] = '\0'; /* "/x" -> "/" */
                rc = check_owner(dir, file, 1, errstr, errstr_size);
                if (slash == dir)
                        break;
        }
        return rc;
}

static int load_file(struct veil_plugin_handle *h, const char *file,
                     char *errstr, size_t errstr_size) {
        char real[PATH_MAX];
        int rc = check_file(file, real, errstr, errstr_size);
        if (rc)
                return rc;
        /* RTLD_NOW: an unresolved symbol fails here, with a message, rather
         * than in the middle of a batch. RTLD_LOCAL: plugins cannot see or
         * interpose on each other's symbols. */
        void *dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
                snprintf(errstr, errstr_size, "plugin %s: cannot load: %s",
                         file, dlerror());
                return -VEIL_EINVAL;
        }
        const struct veil_plugin *(*entry)(void);
        *(void **)&entry = dlsym(dl, VEIL_PLUGIN_ENTRY_SYMBOL);
        if (!entry) {
                snprintf(errstr, errstr_size,
                         "plugin %s: no entry symbol '%s'; a veil plugin "
                         "defines const struct veil_plugin "
                         "*veil_plugin_entry(void)",
                         file, VEIL_PLUGIN_ENTRY_SYMBOL);
                dlclose(dl);
                return -VEIL_EINVAL;
        }
        const struct veil_plugin *def = entry();
        if (!def) {
                snprintf(errstr, errstr_size,
                         "plugin %s: %s() returned NULL", file,
                         VEIL_PLUGIN_ENTRY_SYMBOL);
                dlclose(dl);
                return -VEIL_EINVAL;
        }
        /* abi_version is the first member in every ABI version, so reading
         * it is safe whatever the plugin was built against. */
        if (def->abi_version < VEIL_ABI_MIN ||
            def->abi_version > VEIL_ABI_VERSION) {
                snprintf(errstr, errstr_size,
                         "plugin %s: built for plugin ABI version %u, this "
                         "veil has ABI version %u (and loads plugins built "
                         "for %u to %u); rebuild it against this veil's SDK "
                         "headers",
                         file, def->abi_version, VEIL_ABI_VERSION,
                         VEIL_ABI_MIN, VEIL_ABI_VERSION);
                dlclose(dl);
                return -VEIL_EABI;
        }
        /* Fields were appended since ABI 1: a plugin built before them is
         * complete up to the commands. */
        if (def->struct_size < offsetof(struct veil_plugin,
                                        optional_side_inputs) ||
            !def->name ||
            !def->init || !def->process || !def->destroy) {
                snprintf(errstr, errstr_size,
                         "plugin %s: incomplete struct veil_plugin (a name "
                         "and init, process and destroy are required)",
                         file);
                dlclose(dl);
                return -VEIL_EINVAL;
        }
        /* The host calls checkpoint only where restore can take the
         * bytes back: one without the other would drop the stage's state
         * at every reload and start without a word. */
        if (!def->checkpoint != !def->restore) {
                snprintf(errstr, errstr_size,
                         "plugin %s: %s without %s (a stage that keeps "
                         "state provides both, or neither)",
                         file, def->checkpoint ? "checkpoint" : "restore",
                         def->checkpoint ? "restore" : "checkpoint");
                dlclose(dl);
                return -VEIL_EINVAL;
        }
        /* A command's usage, doc and run are required (veil.h): `veil
         * PLUGIN CMD` would call a NULL run, and --help print NULL. */
        for (const struct veil_command *c = def->commands; c && c->name;
             c++)
                if (!c->usage || !c->doc || !c->run) {
                        snprintf(errstr, errstr_size,
                                 "plugin %s: command '%s' lacks its %s (a "
                                 "command needs a usage, a doc and run)",
                                 file, c->name,
                                 !c->run ? "run" : !c->usage ? "usage"
                                                             : "doc");
                        dlclose(dl);
                        return -VEIL_EINVAL;
                }
        h->def = def;
        h->dl = dl;
        h->path = strdup(file);
        return 0;
}

int veil_plugin_load(struct veil_plugin_handle *h, const char *name,
                     char *const *path, size_t n_path, char *errstr,
                     size_t errstr_size) {
        memset(h, 0, sizeof(*h));
        if (strchr(name, '/'))
                return load_file(h, name, errstr, errstr_size);

        for (const char *c = name; *c; c++) {
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
                      *c == '_' || *c == '-')) {
                        snprintf(errstr, errstr_size,
                                 "plugin name '%s' is not valid: use "
                                 "[a-z0-9_-] or a path containing '/'",
                                 name);
                        return -VEIL_EINVAL;
                }
        }
        char searched[2048] = "";
        size_t off = 0;
        for (size_t i = 0; i < n_path; i++) {
                char file[4096];
                snprintf(file, sizeof(file), "%s/veil_%s.so", path[i], name);
                if (access(file, F_OK) == 0)
                        return load_file(h, file, errstr, errstr_size);
                off += (size_t)snprintf(searched + off,
                                        off < sizeof(searched)
                                                ? sizeof(searched) - off
                                                : 0,
                                        "%s%s", i ? ", " : "", file);
                if (off >= sizeof(searched))
                        off = sizeof(searched) - 1;
        }
        snprintf(errstr, errstr_size,
                 "plugin '%s' not found; searched: %s; set plugin_path in "
                 "the pipeline or VEIL_PLUGIN_PATH, or give a path",
                 name, n_path ? searched : "(no plugin path configured)");
        return -VEIL_ENOENT;
}

void veil_plugin_unload(struct veil_plugin_handle *h) {
        if (h->dl)
                dlclose(h->dl);
        free(h->path);
        memset(h, 0, sizeof(*h));
}

static int cmpstr(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int veil_plugin_list(char *const *path, size_t n_path, char ***files) {
        char **out = NULL;
        size_t n = 0, cap = 0;
        for (size_t i = 0; i < n_path; i++) {
                DIR *d = opendir(path[i]);
                if (!d)
                        continue;
                struct dirent *e;
                char **dir_files = NULL;
                size_t dn = 0, dcap = 0;
                while ((e = readdir(d))) {
                        size_t l = strlen(e->d_name);
                        if (strncmp(e->d_name, "veil_", 5) || l < 9 ||
                            strcmp(e->d_name + l - 3, ".so"))
                                continue;
                        int dup = 0;
                        for (size_t j = 0; j < n && !dup; j++) {
                                const char *base = strrchr(out[j], '/');
                                dup = !strcmp(base ? base + 1 : out[j],
                                              e->d_name);
                        }
                        if (dup)
                                continue;
                        if (dn == dcap) {
                                dcap = dcap ? dcap * 2 : 8;
                                dir_files = realloc(dir_files,
                                                    dcap * sizeof(char *));
                        }
                        size_t fl = strlen(path[i]) + l + 2;
                        dir_files[dn] = malloc(fl);
                        snprintf(dir_files[dn], fl, "%s/%s", path[i],
                                 e->d_name);
                        dn++;
                }
                closedir(d);
                qsort(dir_files, dn, sizeof(char *), cmpstr);
                for (size_t j = 0; j < dn; j++) {
                        if (n == cap) {
                                cap = cap ? cap * 2 : 8;
                                out = realloc(out, cap * sizeof(char *));
                        }
                        out[n++] = dir_files[j];
                }
                free(dir_files);
        }
        *files = out;
        return (int)n;
}

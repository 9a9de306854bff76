/*
 * The plugin loader: a good plugin, one of another ABI version, one without
 * the entry symbol, a missing one, and one writable by others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "plugin.h"

/* Set by CMake: the directory holding veil_passthrough.so and the test
 * plugins. */
#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

static void test_good(void **state) {
        (void)state;
        char *path[] = {"/nonexistent", TEST_PLUGIN_DIR};
        struct veil_plugin_handle h;
        char err[1024] = "";
        int rc = veil_plugin_load(&h, "passthrough", path, 2, err, sizeof(err));
        assert_int_equal(rc, 0);
        assert_string_equal(h.def->name, "passthrough");
        assert_int_equal(h.def->abi_version, VEIL_ABI_VERSION);
        assert_non_null(strstr(h.path, "veil_passthrough.so"));
        veil_plugin_unload(&h);
}

static void test_other_abi(void **state) {
        (void)state;
        struct veil_plugin_handle h;
        char err[1024] = "";
        int rc = veil_plugin_load(&h, TEST_PLUGIN_DIR "/test_bad_abi.so", NULL,
                                  0, err, sizeof(err));
        assert_int_equal(rc, -VEIL_EABI);
        assert_non_null(strstr(err, "test_bad_abi.so"));
        char both[128];
        snprintf(both, sizeof(both), "ABI version %d, this veil has ABI "
                 "version %d", VEIL_ABI_VERSION + 41, VEIL_ABI_VERSION);
        assert_non_null(strstr(err, both));
        /* A plugin built for the oldest ABI this veil still takes loads;
         * one built for the version before does not. */
        rc = veil_plugin_load(&h, TEST_PLUGIN_DIR "/test_abi_min.so", NULL, 0,
                              err, sizeof(err));
        assert_int_equal(rc, 0);
        assert_int_equal(h.def->abi_version, VEIL_ABI_MIN);
        veil_plugin_unload(&h);
        rc = veil_plugin_load(&h, TEST_PLUGIN_DIR "/test_abi_below_min.so",
                              NULL, 0, err, sizeof(err));
        assert_int_equal(rc, -VEIL_EABI);
        snprintf(both, sizeof(both), "loads plugins built for %d to %d",
                 VEIL_ABI_MIN, VEIL_ABI_VERSION);
        assert_non_null(strstr(err, both));
}

static void test_no_entry(void **state) {
        (void)state;
        struct veil_plugin_handle h;
        char err[1024] = "";
        int rc = veil_plugin_load(&h, TEST_PLUGIN_DIR "/test_no_entry.so",
                                  NULL, 0, err, sizeof(err));
        assert_int_equal(rc, -VEIL_EINVAL);
        assert_non_null(strstr(err, "test_no_entry.so"));
        assert_non_null(strstr(err, "no entry symbol 'veil_plugin_entry'"));
}

static void test_missing(void **state) {
        (void)state;
        char *path[] = {"/opt/a", "/opt/b"};
        struct veil_plugin_handle h;
        char err[1024] = "";
        int rc = veil_plugin_load(&h, "nosuch", path, 2, err, sizeof(err));
        assert_int_equal(rc, -VEIL_ENOENT);
        assert_non_null(strstr(err, "plugin 'nosuch' not found"));
        assert_non_null(strstr(err, "/opt/a/veil_nosuch.so"));
        assert_non_null(strstr(err, "/opt/b/veil_nosuch.so"));
}

/* A command lacking its run would be called as NULL by `veil PLUGIN
 * CMD`: refused at load. */
static void test_bad_command(void **state) {
        (void)state;
        struct veil_plugin_handle h;
        char err[1024] = "";
        assert_int_equal(veil_plugin_load(&h, TEST_PLUGIN_DIR
                                          "/test_abi_bad_cmd.so",
                                          NULL, 0, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "command 'probe' lacks its run"));
}

/* A checkpoint without its restore (or the reverse) would have its state
 * dropped at every reload and start, silently: refused at load. */
static void test_half_state(void **state) {
        (void)state;
        struct veil_plugin_handle h;
        char err[1024] = "";
        assert_int_equal(veil_plugin_load(&h, TEST_PLUGIN_DIR
                                          "/test_abi_half_state.so",
                                          NULL, 0, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "test_abi_half_state.so: checkpoint "
                                    "without restore"));
}

static void test_bad_name(void **state) {
        (void)state;
        struct veil_plugin_handle h;
        char err[1024] = "";
        assert_int_equal(veil_plugin_load(&h, "Bad Name", NULL, 0, err,
                                          sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "not valid"));
}

static void test_writable_by_others(void **state) {
        (void)state;
        char tmp[] = "/tmp/veil-loader-XXXXXX";
        assert_non_null(mkdtemp(tmp));
        char dst[256];
        snprintf(dst, sizeof(dst), "%s/veil_passthrough.so", tmp);
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "cp %s/veil_passthrough.so %s",
                 TEST_PLUGIN_DIR, dst);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(chmod(dst, 0666), 0);
        char *path[] = {tmp};
        struct veil_plugin_handle h;
        char err[1024] = "";
        int rc = veil_plugin_load(&h, "passthrough", path, 1, err, sizeof(err));
        assert_int_equal(rc, -VEIL_EINVAL);
        assert_non_null(strstr(err, "writable by others"));
        assert_int_equal(chmod(dst, 0644), 0);
        /* Its directory too: whoever may write it may put another file in
         * the plugin's place. (/tmp above it is sticky: no one replaces
         * another's entries there.) */
        assert_int_equal(chmod(tmp, 0775), 0);
        rc = veil_plugin_load(&h, "passthrough", path, 1, err, sizeof(err));
        assert_int_equal(rc, -VEIL_EINVAL);
        assert_non_null(strstr(err, "its directory"));
        assert_non_null(strstr(err, "writable by its group (mode 0775)"));
        assert_non_null(strstr(err, "fix with chmod g-w"));
        assert_int_equal(chmod(tmp, 0755), 0);
        /* Owned by someone else, who may change it whatever its mode (only
         * root can give a file away: CI runs as root). */
        if (geteuid() == 0) {
                assert_int_equal(chown(dst, 65534, (gid_t)-1), 0);
                rc = veil_plugin_load(&h, "passthrough", path, 1, err,
                                      sizeof(err));
                assert_int_equal(rc, -VEIL_EINVAL);
                assert_non_null(strstr(err, "is owned by uid 65534"));
                assert_int_equal(chown(dst, 0, (gid_t)-1), 0);
        }
        rc = veil_plugin_load(&h, "passthrough", path, 1, err, sizeof(err));
        if (rc)
                fail_msg("%s", err);
        veil_plugin_unload(&h);
        unlink(dst);
        rmdir(tmp);
}

static void test_list(void **state) {
        (void)state;
        char *path[] = {TEST_PLUGIN_DIR};
        char **files;
        int n = veil_plugin_list(path, 1, &files);
        assert_true(n >= 2);
        int seen = 0;
        for (int i = 0; i < n; i++) {
                seen += strstr(files[i], "veil_passthrough.so") != NULL;
                seen += strstr(files[i], "veil_popular.so") != NULL;
                free(files[i]);
        }
        free(files);
        assert_int_equal(seen, 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good),
                cmocka_unit_test(test_other_abi),
                cmocka_unit_test(test_no_entry),
                cmocka_unit_test(test_missing),
                cmocka_unit_test(test_bad_name),
                cmocka_unit_test(test_bad_command),
                cmocka_unit_test(test_half_state),
                cmocka_unit_test(test_writable_by_others),
                cmocka_unit_test(test_list),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

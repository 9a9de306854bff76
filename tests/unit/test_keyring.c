/*
 * test_keyring.c — key files, pseudonyms, rotation, keygen, and the promise
 * that no error message carries key bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "keyring.h"

struct fx {
        char dir[64];
        char err[512];
};

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/veil-keyring-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        *state = f;
        return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
        (void)sb, (void)flag, (void)ftw;
        return remove(p);
}

static int teardown(void **state) {
        struct fx *f = *state;
        nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* Writes a file with an exact mode (chmod after, so the umask is moot). */
static const char *put_file(struct fx *f, char *path, size_t path_size,
                            const char *name, const void *data, size_t len,
                            mode_t mode) {
        snprintf(path, path_size, "%s/%s", f->dir, name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        assert_int_equal(close(fd), 0);
        assert_int_equal(chmod(path, mode), 0);
        return path;
}

static const unsigned char key_a[32] = {
        0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
        16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

static struct veil_keyring *ring_with(struct fx *f, const char *id,
                                      const void *key, size_t len) {
        struct veil_keyring *kr;
        char path[128], name[32];
        snprintf(name, sizeof(name), "%s.key", id);
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        put_file(f, path, sizeof(path), name, key, len, 0600);
        assert_int_equal(
                veil_keyring_add_file(kr, id, path, f->err, sizeof(f->err)),
                0);
        return kr;
}

/* ---- HMAC-SHA-256 known answers: RFC 4231 §4.2–4.8 ---- */

static void hex(const unsigned char *b, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_mac_rfc4231(void **state) {
        (void)state;
        unsigned char k3[20], d3[50], k4[25], d4[50], k6[131], mac[32];
        char h[65];
        memset(k3, 0xaa, sizeof(k3));
        memset(d3, 0xdd, sizeof(d3));
        for (int i = 0; i < 25; i++)
                k4[i] = (unsigned char)(i + 1);
        memset(d4, 0xcd, sizeof(d4));
        memset(k6, 0xaa, sizeof(k6));
        struct {
                const void *key;
                size_t klen;
                const void *msg;
                size_t mlen;
                const char *hex;
        } v[] = {
                {"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b"
                 "\x0b\x0b\x0b\x0b\x0b\x0b",
                 20, "Hi There", 8,
                 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e3"
                 "2cff7"},
                {"Jefe", 4, "what do ya want for nothing?", 28,
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964e"
                 "c3843"},
                {k3, 20, d3, 50,
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced"
                 "565fe"},
                {k4, 25, d4, 50,
                 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff4672"
                 "9665b"},
                /* Case 5 publishes only the first 128 bits: exactly what a
                 * pseudonym keeps. */
                {"\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c"
                 "\x0c\x0c\x0c\x0c\x0c\x0c",
                 20, "Test With Truncation", 20,
                 "a3b6167473100ee06e0c796c2955552b"},
                {k6, 131, "Test Using Larger Than Block-Size Key - Hash Key "
                          "First",
                 54,
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee"
                 "37f54"},
                {k6, 131,
                 "This is a test using a larger than block-size key and a "
                 "larger than block-size data. The key needs to be hashed "
                 "before being used by the HMAC algorithm.",
                 152,
                 "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3"
                 "a35e2"},
        };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                size_t n = strlen(v[i].hex) / 2;
                assert_int_equal(veil_keyring_mac(v[i].key, v[i].klen,
                                                  v[i].msg, v[i].mlen, mac),
                                 0);
                hex(mac, n, h);
                assert_string_equal(h, v[i].hex);
        }
}

/* ---- cross-implementation known answers ----
 * Computed with Python's hashlib and hmac (OpenSSL), not with libsodium:
 *   master  = blake2b(file, digest_size=32, person=b"veil.keyfile.v1\0")
 *   purpose = blake2b(b"", key=master, salt=pack("<Q",1)+b"\0"*8,
 *                     person=b"veilpsdn"+b"\0"*8, digest_size=32)
 *   sub     = blake2b(domain, key=purpose, digest_size=32)
 *   body    = urlsafe_b64(hmac(sub, id, sha256)[:16]) without "="
 * Any reimplementation that follows keyring.c's comment gets the same. */
static void test_pseudonym_known_answer(void **state) {
        struct fx *f = *state;
        unsigned char id16[16], key_b[45];
        char out[VEIL_PSEUDONYM_MAX];
        for (int i = 0; i < 16; i++)
                id16[i] = (unsigned char)i;
        for (int i = 0; i < 45; i++)
                key_b[i] = (unsigned char)(0x40 + i);

        struct veil_keyring *kr = ring_with(f, "k1", key_a, sizeof(key_a));
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "alice", 5,
                                                out, sizeof(out)),
                         25);
        assert_string_equal(out, "k1.RYQ8DrzQFpJcNYC71y-DDw");
        assert_int_equal(veil_keyring_pseudonym(kr, "audit", id16, 16, out,
                                                sizeof(out)),
                         25);
        assert_string_equal(out, "k1.2-mP0ysVakL2nZoGMCDb6w");
        veil_keyring_destroy(kr);

        kr = ring_with(f, "k2", key_b, sizeof(key_b));
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "alice", 5,
                                                out, sizeof(out)),
                         25);
        assert_string_equal(out, "k2.6mcna7fOP9GhXUGznD0S4Q");
        veil_keyring_destroy(kr);
}

/* ---- permissions, type, length ---- */

static void test_permissions(void **state) {
        struct fx *f = *state;
        struct veil_keyring *kr;
        char path[128];
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);

        put_file(f, path, sizeof(path), "a644", key_a, 32, 0644);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, path));
        assert_non_null(strstr(f->err, "0644"));
        assert_non_null(strstr(f->err, "chmod 600"));

        put_file(f, path, sizeof(path), "a640", key_a, 32, 0640);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "0640"));

        put_file(f, path, sizeof(path), "a602", key_a, 32, 0602);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "0602"));
        assert_null(veil_keyring_active_id(kr));

        put_file(f, path, sizeof(path), "a600", key_a, 32, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         0);
        assert_string_equal(veil_keyring_active_id(kr), "a");

        unsigned char other[32];
        memset(other, 7, sizeof(other));
        put_file(f, path, sizeof(path), "b400", other, 32, 0400);
        assert_int_equal(veil_keyring_add_file(kr, "b", path, f->err,
                                               sizeof(f->err)),
                         0);
        veil_keyring_destroy(kr);
}

static void test_file_type(void **state) {
        struct fx *f = *state;
        struct veil_keyring *kr;
        char path[128];
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);

        snprintf(path, sizeof(path), "%s/dir", f->dir);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "directory"));

        /* A FIFO must be refused at once, not block waiting for a writer. */
        snprintf(path, sizeof(path), "%s/fifo", f->dir);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "FIFO"));

        assert_int_equal(veil_keyring_add_file(kr, "a", "/dev/null", f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "/dev/null"));

        snprintf(path, sizeof(path), "%s/missing", f->dir);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_ENOENT);
        assert_non_null(strstr(f->err, path));

        /* A symlink to a good key is followed: Kubernetes mounts secrets
         * through ..data symlinks. */
        char target[128];
        put_file(f, target, sizeof(target), "real", key_a, 32, 0600);
        snprintf(path, sizeof(path), "%s/link", f->dir);
        assert_int_equal(symlink(target, path), 0);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         0);
        veil_keyring_destroy(kr);
}

static void test_length(void **state) {
        struct fx *f = *state;
        struct veil_keyring *kr;
        char path[128];
        unsigned char big[VEIL_KEYRING_KEY_MAX + 1];
        memset(big, 0x5a, sizeof(big));
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);

        put_file(f, path, sizeof(path), "k31", key_a, 31, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "31 bytes"));
        assert_non_null(strstr(f->err, "32"));
        assert_non_null(strstr(f->err, path));

        put_file(f, path, sizeof(path), "k0", key_a, 0, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "0 bytes"));

        put_file(f, path, sizeof(path), "k4097", big, sizeof(big), 0600);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "4096"));

        put_file(f, path, sizeof(path), "k32", key_a, 32, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "a", path, f->err,
                                               sizeof(f->err)),
                         0);
        put_file(f, path, sizeof(path), "k4096", big, sizeof(big) - 1, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "b", path, f->err,
                                               sizeof(f->err)),
                         0);
        veil_keyring_destroy(kr);
}

/* A key file of short text (a passphrase, likely) is warned about, by
 * path and length, never content; 44 base64 characters (256 bits) and
 * binary keys are not. */
static void test_passphrase_warned(void **state) {
        struct fx *f = *state;
        struct veil_keyring *kr;
        char p1[128], p2[128], p3[128], log[4096] = "";
        static const char pass[] = "correcthorsebatterystaplexyzzy42";
        static const char b64[] =
                "q3J0bLpKz0Y9c2Vt8bXlR1o4dHk2WnJ0eVhQc0k5bTA=\n";
        put_file(f, p1, sizeof(p1), "pass", pass, 32, 0600);
        put_file(f, p2, sizeof(p2), "b64", b64, sizeof(b64) - 1, 0600);
        put_file(f, p3, sizeof(p3), "bin", key_a, 32, 0600);
        char lp[] = "/tmp/veil-test-keylog-XXXXXX";
        int fd = mkstemp(lp);
        assert_true(fd >= 0);
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0 && dup2(fd, 2) == 2);
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        int r1 = veil_keyring_add_file(kr, "p", p1, f->err, sizeof(f->err));
        int r2 = veil_keyring_add_file(kr, "b", p2, f->err, sizeof(f->err));
        int r3 = veil_keyring_add_file(kr, "k", p3, f->err, sizeof(f->err));
        fflush(stderr);
        assert_true(dup2(saved, 2) == 2);
        close(saved);
        assert_true(lseek(fd, 0, SEEK_SET) == 0);
        ssize_t n = read(fd, log, sizeof(log) - 1);
        close(fd);
        unlink(lp);
        veil_keyring_destroy(kr);
        assert_int_equal(r1, 0);
        assert_int_equal(r2, 0);
        assert_int_equal(r3, 0);
        assert_true(n > 0);
        fprintf(stderr, "# %s", log);
        assert_non_null(strstr(log, p1));
        assert_non_null(strstr(log, "is 32 characters of text, too few for "
                                    "256 bits"));
        assert_null(strstr(log, p2));
        assert_null(strstr(log, p3));
        assert_null(strstr(log, "horse"));
}

/* ---- key ids ---- */

static void test_key_ids(void **state) {
        struct fx *f = *state;
        const char *good[] = {"k", "k1", "2024-01_a", "abcdefghijklmnop",
                              "0", "-", "_"};
        const char *bad[] = {"", "abcdefghijklmnopq", "K1", "a.b", "a b",
                             "a/b", "k\xc3\xbc", "a\n", "a:b"};
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(veil_keyring_key_id_valid(good[i]));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_false(veil_keyring_key_id_valid(bad[i]));
        assert_false(veil_keyring_key_id_valid(NULL));

        struct veil_keyring *kr;
        char path[128];
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        put_file(f, path, sizeof(path), "key", key_a, 32, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "K1", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "'K1'"));
        assert_non_null(strstr(f->err, "a-z, 0-9"));
        assert_int_equal(veil_keyring_add_file(kr, NULL, path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_keyring_add_file(kr, "k1", path, f->err,
                                               sizeof(f->err)),
                         0);
        /* Same id again, even with other material. */
        unsigned char other[32];
        memset(other, 9, sizeof(other));
        put_file(f, path, sizeof(path), "other", other, 32, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "k1", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "already"));

        assert_int_equal(veil_keyring_set_active(kr, "k9", f->err,
                                                 sizeof(f->err)),
                         -VEIL_ENOENT);
        assert_non_null(strstr(f->err, "'k9'"));
        assert_non_null(strstr(f->err, "k1"));
        assert_string_equal(veil_keyring_active_id(kr), "k1");
        veil_keyring_destroy(kr);
}

static void test_key_limit(void **state) {
        struct fx *f = *state;
        struct veil_keyring *kr;
        char path[128], name[16], id[16];
        unsigned char k[32];
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        for (int i = 0; i <= VEIL_KEYRING_MAX_KEYS; i++) {
                memset(k, i + 1, sizeof(k));
                snprintf(name, sizeof(name), "lim%d", i);
                snprintf(id, sizeof(id), "k%d", i);
                put_file(f, path, sizeof(path), name, k, 32, 0600);
                int rc = veil_keyring_add_file(kr, id, path, f->err,
                                               sizeof(f->err));
                assert_int_equal(rc, i < VEIL_KEYRING_MAX_KEYS ? 0
                                                               : -VEIL_EINVAL);
        }
        assert_non_null(strstr(f->err, "16 keys"));
        veil_keyring_destroy(kr);
}

/* ---- pseudonym properties ---- */

static void test_determinism_and_separation(void **state) {
        struct fx *f = *state;
        char p1[VEIL_PSEUDONYM_MAX], p2[VEIL_PSEUDONYM_MAX];
        char p3[VEIL_PSEUDONYM_MAX];
        struct veil_keyring *kr = ring_with(f, "k1", key_a, sizeof(key_a));
        struct veil_keyring *kr2 = ring_with(f, "k1", key_a, sizeof(key_a));

        /* Same id, key, domain: same pseudonym, in this keyring and in an
         * independently loaded one (nothing depends on process state). */
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "u-42", 4, p1,
                                                sizeof(p1)),
                         25);
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "u-42", 4, p2,
                                                sizeof(p2)),
                         25);
        assert_string_equal(p1, p2);
        assert_int_equal(veil_keyring_pseudonym(kr2, "subject", "u-42", 4, p2,
                                                sizeof(p2)),
                         25);
        assert_string_equal(p1, p2);
        assert_null(strstr(p1, "u-42"));
        assert_int_equal(strncmp(p1, "k1.", 3), 0);

        /* Other domain, other id (one bit), a domain that is a prefix:
         * unrelated. */
        assert_int_equal(veil_keyring_pseudonym(kr, "audit", "u-42", 4, p2,
                                                sizeof(p2)),
                         25);
        assert_string_not_equal(p1, p2);
        assert_int_equal(veil_keyring_pseudonym(kr, "subjec", "u-42", 4, p2,
                                                sizeof(p2)),
                         25);
        assert_string_not_equal(p1, p2);
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "u-43", 4, p2,
                                                sizeof(p2)),
                         25);
        assert_string_not_equal(p1, p2);
        /* The id is bytes, not a C string: an embedded NUL counts. */
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "u-42\0x", 6,
                                                p2, sizeof(p2)),
                         25);
        assert_string_not_equal(p1, p2);

        /* Other key material under the same id: unrelated body. */
        unsigned char kb[32];
        memcpy(kb, key_a, 32);
        kb[31] ^= 1;
        struct veil_keyring *kr3 = ring_with(f, "k1", kb, sizeof(kb));
        assert_int_equal(veil_keyring_pseudonym(kr3, "subject", "u-42", 4,
                                                p3, sizeof(p3)),
                         25);
        assert_string_not_equal(p1, p3);

        veil_keyring_destroy(kr);
        veil_keyring_destroy(kr2);
        veil_keyring_destroy(kr3);
}

/* keys: {ephemeral: true}: random material drawn in memory. Two draws
 * never give the same pseudonyms, in one keyring or in two. */
static void test_add_random(void **state) {
        (void)state;
        struct veil_keyring *a, *b;
        char err[256], p1[VEIL_PSEUDONYM_MAX], p2[VEIL_PSEUDONYM_MAX];
        assert_int_equal(veil_keyring_new(&a, err, sizeof(err)), 0);
        assert_int_equal(veil_keyring_new(&b, err, sizeof(err)), 0);
        assert_int_equal(veil_keyring_add_random(a, "eph", err, sizeof(err)),
                         0);
        assert_int_equal(veil_keyring_add_random(b, "eph", err, sizeof(err)),
                         0);
        assert_string_equal(veil_keyring_active_id(a), "eph");
        assert_int_equal(veil_keyring_pseudonym(a, "subject", "u-42", 4, p1,
                                                sizeof(p1)),
                         26);
        assert_int_equal(strncmp(p1, "eph.", 4), 0);
        assert_int_equal(veil_keyring_pseudonym(b, "subject", "u-42", 4, p2,
                                                sizeof(p2)),
                         26);
        assert_string_not_equal(p1, p2);
        /* A second draw is another key, and ids stay unique. */
        assert_int_equal(veil_keyring_add_random(a, "eph2", err, sizeof(err)),
                         0);
        assert_int_equal(veil_keyring_set_active(a, "eph2", err, sizeof(err)),
                         0);
        assert_int_equal(veil_keyring_pseudonym(a, "subject", "u-42", 4, p2,
                                                sizeof(p2)),
                         27);
        assert_string_not_equal(p1 + 4, p2 + 5);
        assert_int_equal(veil_keyring_add_random(a, "eph", err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "already in the keyring"));
        veil_keyring_destroy(a);
        veil_keyring_destroy(b);
}

static void test_arguments(void **state) {
        struct fx *f = *state;
        char out[VEIL_PSEUDONYM_MAX];
        char dom[VEIL_KEYRING_DOMAIN_MAX + 2];
        struct veil_keyring *kr;

        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        assert_null(veil_keyring_active_id(kr));
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "a", 1, out,
                                                sizeof(out)),
                         -VEIL_ESTATE);
        veil_keyring_destroy(kr);

        kr = ring_with(f, "abcdefghijklmnop", key_a, sizeof(key_a));
        /* Longest id: 16 + 1 + 22 = 39 chars, 40 with the NUL. */
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "a", 1, out,
                                                40),
                         39);
        assert_int_equal(strlen(out), 39);
        memset(out, '#', sizeof(out));
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "a", 1, out,
                                                39),
                         -VEIL_EINVAL);
        assert_int_equal(out[0], '#');
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "a", 0, out,
                                                sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", NULL, 1, out,
                                                sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_keyring_pseudonym(kr, "", "a", 1, out,
                                                sizeof(out)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_keyring_pseudonym(kr, NULL, "a", 1, out,
                                                sizeof(out)),
                         -VEIL_EINVAL);
        memset(dom, 'd', sizeof(dom) - 1);
        dom[sizeof(dom) - 1] = '\0';
        assert_int_equal(veil_keyring_pseudonym(kr, dom, "a", 1, out,
                                                sizeof(out)),
                         -VEIL_EINVAL);
        dom[VEIL_KEYRING_DOMAIN_MAX] = '\0';
        assert_int_equal(veil_keyring_pseudonym(kr, dom, "a", 1, out,
                                                sizeof(out)),
                         39);
        assert_int_equal(veil_keyring_pseudonym(NULL, "s", "a", 1, out,
                                                sizeof(out)),
                         -VEIL_EINVAL);
        veil_keyring_destroy(kr);
        veil_keyring_destroy(NULL);
}

/* ---- rotation ---- */

static void test_rotation(void **state) {
        struct fx *f = *state;
        struct veil_keyring *kr;
        char path[128], old[VEIL_PSEUDONYM_MAX], cur[VEIL_PSEUDONYM_MAX];
        char again[VEIL_PSEUDONYM_MAX], id[VEIL_KEYRING_KEY_ID_MAX + 1];
        unsigned char kb[32];
        memset(kb, 0xb2, sizeof(kb));

        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        put_file(f, path, sizeof(path), "2024", key_a, 32, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "k2024", path, f->err,
                                               sizeof(f->err)),
                         0);
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "bob", 3, old,
                                                sizeof(old)),
                         28);
        put_file(f, path, sizeof(path), "2025", kb, 32, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "k2025", path, f->err,
                                               sizeof(f->err)),
                         0);
        /* Adding a key does not rotate; set_active does. */
        assert_string_equal(veil_keyring_active_id(kr), "k2024");
        assert_int_equal(veil_keyring_set_active(kr, "k2025", f->err,
                                                 sizeof(f->err)),
                         0);
        assert_string_equal(veil_keyring_active_id(kr), "k2025");
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "bob", 3, cur,
                                                sizeof(cur)),
                         28);
        assert_int_equal(strncmp(cur, "k2025.", 6), 0);
        assert_string_not_equal(old + 6, cur + 6);

        /* Old pseudonyms name their key... */
        assert_int_equal(veil_keyring_key_id_of(old, id, sizeof(id)), 5);
        assert_string_equal(id, "k2024");
        assert_int_equal(veil_keyring_key_id_of(cur, id, sizeof(id)), 5);
        assert_string_equal(id, "k2025");
        /* ...and can still be computed, for erase and export. */
        assert_int_equal(veil_keyring_pseudonym_key(kr, "k2024", "subject",
                                                    "bob", 3, again,
                                                    sizeof(again)),
                         28);
        assert_string_equal(again, old);
        assert_int_equal(veil_keyring_pseudonym_key(kr, "k1999", "subject",
                                                    "bob", 3, again,
                                                    sizeof(again)),
                         -VEIL_ENOENT);
        /* Back again: the very same pseudonyms. */
        assert_int_equal(veil_keyring_set_active(kr, "k2024", f->err,
                                                 sizeof(f->err)),
                         0);
        assert_int_equal(veil_keyring_pseudonym(kr, "subject", "bob", 3,
                                                again, sizeof(again)),
                         28);
        assert_string_equal(again, old);

        /* The same material under a new id is no rotation at all. */
        put_file(f, path, sizeof(path), "copy", key_a, 32, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "k2026", path, f->err,
                                               sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, "k2024"));
        assert_non_null(strstr(f->err, "same key"));
        veil_keyring_destroy(kr);
}

static void test_key_id_of(void **state) {
        (void)state;
        char id[VEIL_KEYRING_KEY_ID_MAX + 1];
        const char *body = "RYQ8DrzQFpJcNYC71y-DDw";
        char p[80];
        snprintf(p, sizeof(p), "k-1_x.%s", body);
        assert_int_equal(veil_keyring_key_id_of(p, id, sizeof(id)), 5);
        assert_string_equal(id, "k-1_x");
        assert_int_equal(veil_keyring_key_id_of(p, id, 5), -VEIL_EINVAL);

        const char *bad[] = {
                "",
                "k1",
                "k1.",
                ".RYQ8DrzQFpJcNYC71y-DDw",
                "K1.RYQ8DrzQFpJcNYC71y-DDw",
                "k1.RYQ8DrzQFpJcNYC71y-DD",
                "k1.RYQ8DrzQFpJcNYC71y-DDwA",
                "k1.RYQ8DrzQFpJcNYC71y+DDw",
                "k1.RYQ8DrzQFpJcNYC71y-DD=",
                "abcdefghijklmnopq.RYQ8DrzQFpJcNYC71y-DDw",
                "k 1.RYQ8DrzQFpJcNYC71y-DDw",
                "alice@example.com",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(veil_keyring_key_id_of(bad[i], id,
                                                        sizeof(id)),
                                 -VEIL_EINVAL);
}

/* ---- keygen ---- */

static void test_keygen(void **state) {
        struct fx *f = *state;
        char p1[128], p2[128], link[128];
        unsigned char a[64], b[64];
        struct stat st;
        mode_t old = umask(0);

        snprintf(p1, sizeof(p1), "%s/gen1.key", f->dir);
        snprintf(p2, sizeof(p2), "%s/gen2.key", f->dir);
        assert_int_equal(veil_keyring_keygen(p1, f->err, sizeof(f->err)), 0);
        umask(old);
        assert_int_equal(stat(p1, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_size, 32);
        assert_int_equal(veil_keyring_keygen(p2, f->err, sizeof(f->err)), 0);

        int fd = open(p1, O_RDONLY);
        assert_int_equal(read(fd, a, sizeof(a)), 32);
        close(fd);
        fd = open(p2, O_RDONLY);
        assert_int_equal(read(fd, b, sizeof(b)), 32);
        close(fd);
        assert_memory_not_equal(a, b, 32);

        /* Never overwrite: the file keeps its bytes. */
        assert_int_equal(veil_keyring_keygen(p1, f->err, sizeof(f->err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(f->err, p1));
        assert_non_null(strstr(f->err, "already exists"));
        fd = open(p1, O_RDONLY);
        assert_int_equal(read(fd, b, sizeof(b)), 32);
        close(fd);
        assert_memory_equal(a, b, 32);

        /* Nor through a symlink, even a dangling one. */
        snprintf(link, sizeof(link), "%s/dangling", f->dir);
        assert_int_equal(symlink("/nonexistent/veil-target", link), 0);
        assert_int_not_equal(veil_keyring_keygen(link, f->err,
                                                 sizeof(f->err)),
                             0);
        assert_int_equal(access("/nonexistent/veil-target", F_OK), -1);

        snprintf(link, sizeof(link), "%s/no/such/dir/k", f->dir);
        assert_int_equal(veil_keyring_keygen(link, f->err, sizeof(f->err)),
                         -VEIL_EIO);
        assert_non_null(strstr(f->err, link));

        /* What keygen writes, the keyring loads; the two keys differ. */
        struct veil_keyring *kr;
        char o1[VEIL_PSEUDONYM_MAX], o2[VEIL_PSEUDONYM_MAX];
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);
        assert_int_equal(veil_keyring_add_file(kr, "g1", p1, f->err,
                                               sizeof(f->err)),
                         0);
        assert_int_equal(veil_keyring_add_file(kr, "g2", p2, f->err,
                                               sizeof(f->err)),
                         0);
        assert_int_equal(veil_keyring_pseudonym_key(kr, "g1", "s", "x", 1,
                                                    o1, sizeof(o1)),
                         25);
        assert_int_equal(veil_keyring_pseudonym_key(kr, "g2", "s", "x", 1,
                                                    o2, sizeof(o2)),
                         25);
        assert_string_not_equal(o1 + 3, o2 + 3);
        veil_keyring_destroy(kr);
}

/* ---- no key bytes in any message ---- */

/* 1 when any 6-byte window of `key` appears in `msg` raw, or any 12-char
 * window of its hex (either case). Short windows catch partial leaks. */
static int leaks(const char *msg, const unsigned char *key, size_t len) {
        char hx[2 * 64 + 1], HX[2 * 64 + 1];
        hex(key, len, hx);
        for (size_t i = 0; i < 2 * len; i++)
                HX[i] = (char)((hx[i] >= 'a' && hx[i] <= 'f') ? hx[i] - 32
                                                             : hx[i]);
        HX[2 * len] = '\0';
        size_t ml = strlen(msg);
        for (size_t i = 0; i + 6 <= len; i++)
                if (memmem(msg, ml, key + i, 6))
                        return 1;
        for (size_t i = 0; i + 12 <= 2 * len; i++)
                if (memmem(msg, ml, hx + i, 12) || memmem(msg, ml, HX + i, 12))
                        return 1;
        return 0;
}

static void test_no_key_bytes_in_messages(void **state) {
        struct fx *f = *state;
        /* Printable on purpose, so a leak would be visible; no English word in
         * it, since "secret" or "key" legitimately appear in messages. */
        static const unsigned char secret[40] =
                "Qz7#Vx9!Lm2$Pk4^Rt6&Wy8*Hb3(Nc5)Jd1@Fg0%";
        unsigned char big[VEIL_KEYRING_KEY_MAX + 1];
        char path[128], okpath[128], msgs[12][512];
        int n = 0;
        struct veil_keyring *kr;

        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = secret[i % sizeof(secret)];
        assert_int_equal(veil_keyring_new(&kr, f->err, sizeof(f->err)), 0);

#define PROVOKE(call)                                                         \
        do {                                                                  \
                f->err[0] = '\0';                                             \
                assert_true((call) < 0);                                      \
                assert_true(strlen(f->err) > 10);                             \
                memcpy(msgs[n++], f->err, sizeof(f->err));                    \
        } while (0)

        put_file(f, path, sizeof(path), "s644", secret, 40, 0644);
        PROVOKE(veil_keyring_add_file(kr, "s", path, f->err, sizeof(f->err)));
        put_file(f, path, sizeof(path), "s640", secret, 40, 0640);
        PROVOKE(veil_keyring_add_file(kr, "s", path, f->err, sizeof(f->err)));
        put_file(f, path, sizeof(path), "s31", secret, 31, 0600);
        PROVOKE(veil_keyring_add_file(kr, "s", path, f->err, sizeof(f->err)));
        put_file(f, path, sizeof(path), "sbig", big, sizeof(big), 0600);
        PROVOKE(veil_keyring_add_file(kr, "s", path, f->err, sizeof(f->err)));
        put_file(f, okpath, sizeof(okpath), "sok", secret, 40, 0600);
        assert_int_equal(veil_keyring_add_file(kr, "s", okpath, f->err,
                                               sizeof(f->err)),
                         0);
        PROVOKE(veil_keyring_add_file(kr, "t", okpath, f->err,
                                      sizeof(f->err))); /* same material */
        PROVOKE(veil_keyring_add_file(kr, "s", okpath, f->err,
                                      sizeof(f->err))); /* same id */
        PROVOKE(veil_keyring_add_file(kr, "S!", okpath, f->err,
                                      sizeof(f->err))); /* bad id */
        PROVOKE(veil_keyring_set_active(kr, "nope", f->err, sizeof(f->err)));
        PROVOKE(veil_keyring_keygen(okpath, f->err, sizeof(f->err)));
        snprintf(path, sizeof(path), "%s", f->dir);
        PROVOKE(veil_keyring_add_file(kr, "d", path, f->err,
                                      sizeof(f->err))); /* directory */
#undef PROVOKE
        for (int i = 0; i < n; i++) {
                if (leaks(msgs[i], secret, sizeof(secret)))
                        fail_msg("message %d leaks key bytes: %s", i, msgs[i]);
                /* The check itself can fail: it finds a planted leak. */
                char planted[530];
                snprintf(planted, sizeof(planted), "%.511s %.8s", msgs[i],
                         (const char *)secret + 17);
                assert_true(leaks(planted, secret, sizeof(secret)));
        }
        veil_keyring_destroy(kr);
}

/* ---- cache: past its cap, and under threads ---- */

#define N_DOM 100 /* more than the keyring's 64 cached domains per key */

struct worker {
        struct veil_keyring *kr;
        char (*expect)[VEIL_PSEUDONYM_MAX];
        int mismatches;
        int offset;
};

static void *work(void *arg) {
        struct worker *w = arg;
        char dom[16], out[VEIL_PSEUDONYM_MAX];
        for (int round = 0; round < 3; round++)
                for (int j = 0; j < N_DOM; j++) {
                        int d = (j + w->offset) % N_DOM;
                        snprintf(dom, sizeof(dom), "dom%d", d);
                        if (veil_keyring_pseudonym(w->kr, dom, "carol", 5,
                                                   out, sizeof(out)) != 25 ||
                            strcmp(out, w->expect[d]) != 0)
                                w->mismatches++;
                }
        return NULL;
}

static void test_cache_overflow_and_threads(void **state) {
        struct fx *f = *state;
        static char expect[N_DOM][VEIL_PSEUDONYM_MAX];
        char dom[16];

        /* Expected values: each domain computed first in a fresh keyring,
         * so every one of them came through a freshly cached subkey. */
        for (int d = 0; d < N_DOM; d++) {
                struct veil_keyring *one = ring_with(f, "k1", key_a, 32);
                snprintf(dom, sizeof(dom), "dom%d", d);
                assert_int_equal(veil_keyring_pseudonym(one, dom, "carol", 5,
                                                        expect[d],
                                                        VEIL_PSEUDONYM_MAX),
                                 25);
                veil_keyring_destroy(one);
        }
        for (int d = 1; d < N_DOM; d++)
                assert_string_not_equal(expect[d], expect[d - 1]);

        /* One shared keyring, two threads racing to fill its cache and run
         * past the cap (derive-per-call path). */
        struct veil_keyring *kr = ring_with(f, "k1", key_a, 32);
        struct worker w[2] = {{kr, expect, 0, 0}, {kr, expect, 0, N_DOM / 2}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].mismatches, 0);
        }
        veil_keyring_destroy(kr);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_mac_rfc4231),
                T(test_pseudonym_known_answer),
                T(test_permissions),
                T(test_file_type),
                T(test_length),
                T(test_passphrase_warned),
                T(test_key_ids),
                T(test_key_limit),
                T(test_determinism_and_separation),
                T(test_add_random),
                T(test_arguments),
                T(test_rotation),
                T(test_key_id_of),
                T(test_keygen),
                T(test_no_key_bytes_in_messages),
                T(test_cache_overflow_and_threads),
        };
#undef T
        return cmocka_run_group_tests(tests, NULL, NULL);
}

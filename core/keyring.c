/*
 * keyring.c — key files, per-purpose subkeys, keyed pseudonyms.
 *
 * Key hierarchy, and why each step exists:
 *
 *   key file bytes (32..4096)
 *     └─ master   = BLAKE2b-256(file, personal "veil.keyfile.v1")
 *          Lets any file length ≥ 32 serve and gives a fixed-size key.
 *     └─ purpose  = crypto_kdf_derive_from_key(master, id 1, "veilpsdn")
 *          libsodium's KDF separates the pseudonym purpose from anything
 *          else a later version derives from the same file (audit MACs,
 *          checkpoint encryption: other 8-char contexts), so no two
 *          purposes ever share key bits.
 *     └─ subkey   = BLAKE2b-256(key = purpose, msg = domain)
 *          Domain separation ("subject", "audit", "ctx.session_id"…). We do
 *          not hash the domain into crypto_kdf's 64-bit subkey id: 64 bits
 *          collide after ~2^32 names, or by a deliberate 2^32-step search by
 *          whoever writes a pipeline, and two colliding domains would share a
 *          subkey and make their pseudonyms linkable — exactly what domain
 *          separation is for. Keyed BLAKE2b over the whole string is a PRF
 *          (the primitive crypto_kdf itself is built on) with no such limit.
 *     └─ pseudonym = HMAC-SHA-256(subkey, id)[0..16) → base64url
 *
 * Why HMAC-SHA-256 rather than keyed BLAKE2b: the design promises HMAC
 * pseudonyms, RFC 4231 gives known answers including the very 128-bit
 * truncation we use, and any language's standard library can recompute a
 * pseudonym when a DPO or a downstream system must verify one. The cost is
 * speed: libsodium 1.0.18's SHA-256 is portable C, about 1.6× slower here
 * than keyed BLAKE2b (tests/bench/bench_pseudonym prints both). What we
 * control is everything around the MAC: per (key, domain) we cache the HMAC
 * state with the ipad/opad blocks already absorbed, so a pseudonym of a
 * short id costs two SHA-256 compressions, no derivation, no allocation,
 * and runs at ~97% of the bare MAC's rate (> 2 M/s per core here).
 *
 * Secrets (purpose keys, cached HMAC states, the file read buffer) live in
 * sodium_malloc'd memory: guard pages, mlock'd, zeroed by sodium_free. The
 * purpose key is only read to derive a subkey, under the lock, so it stays
 * PROT_NONE the rest of the time. The cache entries are read concurrently
 * without a lock and cannot be toggled the same way.
 */
#include "keyring.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define KEYFILE_PERSONAL "veil.keyfile.v1" /* 15 chars + NUL = 16 bytes */
#define KDF_CONTEXT "veilpsdn"
#define KDF_ID_PSEUDONYM 1
#define KEY_BYTES 32
#define KEYGEN_BYTES 32
/* Domains come from configuration, so a handful per key; the cap bounds
 * locked memory if a caller ever passes data-derived domains. Beyond it
 * subkeys are derived per call: slower, same result. */
#define CACHE_MAX 64
#define B64_LEN 22 /* base64url, no padding, of 16 bytes */
_Static_assert(B64_LEN == (VEIL_KEYRING_PSEUDONYM_BYTES * 4 + 2) / 3,
               "B64_LEN follows from VEIL_KEYRING_PSEUDONYM_BYTES");

/* One cached subkey: the HMAC state after the key blocks. The domain stays
 * in ordinary memory: sodium_malloc puts a block against a PROT_NONE guard
 * page, and libc's vector memcmp reading near that edge costs a microcode
 * assist (70 ns a lookup, measured) — and a domain is no secret. */
struct subkey {
        struct subkey *next; /* immutable once published */
        crypto_auth_hmacsha256_state *mac; /* sodium_malloc */
        size_t domain_len;
        char domain[];
};

struct key {
        char id[VEIL_KEYRING_KEY_ID_MAX + 1];
        unsigned char *purpose; /* sodium_malloc, PROT_NONE when idle */
        _Atomic(struct subkey *) cache;
        unsigned n_cached; /* under the lock */
};

struct veil_keyring {
        /* Slots are filled before n_keys is raised and never emptied before
         * destroy, so readers index them without the lock. */
        struct key *keys[VEIL_KEYRING_MAX_KEYS];
        _Atomic size_t n_keys;
        _Atomic int active; /* index into keys, -1 when none */
        pthread_mutex_t lock; /* writers: add_file, set_active, cache fill */
};

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...) {
        va_list ap;
        if (!errstr || !errstr_size)
                return;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

/* ---- HMAC layer (the KAT runs through these two) ---- */

static void mac_start(crypto_auth_hmacsha256_state *st, const void *key,
                      size_t key_len) {
        crypto_auth_hmacsha256_init(st, key, key_len);
}

static void mac_finish(const crypto_auth_hmacsha256_state *base,
                       const void *msg, size_t msg_len,
                       unsigned char out[32]) {
        crypto_auth_hmacsha256_state st = *base;
        crypto_auth_hmacsha256_update(&st, msg, msg_len);
        crypto_auth_hmacsha256_final(&st, out);
        sodium_memzero(&st, sizeof(st));
}

int veil_keyring_mac(const void *key, size_t key_len, const void *msg,
                     size_t msg_len, unsigned char out[32]) {
        crypto_auth_hmacsha256_state st;
        mac_start(&st, key, key_len);
        mac_finish(&st, msg, msg_len, out);
        sodium_memzero(&st, sizeof(st));
        return 0;
}

/* ---- key ids ---- */

int veil_keyring_key_id_valid(const char *key_id) {
        size_t n = 0;
        if (!key_id)
                return 0;
        for (const char *p = key_id; *p; p++, n++) {
                char c = *p;
                if (n >= VEIL_KEYRING_KEY_ID_MAX)
                        return 0;
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-'))
                        return 0;
        }
        return n > 0;
}

static struct key *find_key(const struct veil_keyring *kr, const char *id) {
        size_t n = atomic_load_explicit(&kr->n_keys, memory_order_acquire);
        for (size_t i = 0; i < n; i++)
                if (strcmp(kr->keys[i]->id, id) == 0)
                        return kr->keys[i];
        return NULL;
}

/* ---- lifecycle ---- */

int veil_keyring_new(struct veil_keyring **krp, char *errstr,
                     size_t errstr_size) {
        struct veil_keyring *kr;
        if (!krp) {
                seterr(errstr, errstr_size, "keyring: no output pointer");
                return -VEIL_EINVAL;
        }
        *krp = NULL;
        if (sodium_init() < 0) {
                seterr(errstr, errstr_size,
                       "keyring: libsodium failed to initialize");
                return -VEIL_ESTATE;
        }
        kr = calloc(1, sizeof(*kr));
        if (!kr) {
                seterr(errstr, errstr_size, "keyring: out of memory");
                return -VEIL_ENOMEM;
        }
        atomic_init(&kr->n_keys, 0);
        atomic_init(&kr->active, -1);
        if (pthread_mutex_init(&kr->lock, NULL) != 0) {
                free(kr);
                seterr(errstr, errstr_size, "keyring: cannot create a lock");
                return -VEIL_ENOMEM;
        }
        *krp = kr;
        return 0;
}

static void key_free(struct key *k) {
        struct subkey *e, *next;
        if (!k)
                return;
        for (e = atomic_load_explicit(&k->cache, memory_order_relaxed); e;
             e = next) {
                next = e->next;
                sodium_free(e->mac); /* zeroes before unmapping */
                free(e);
        }
        if (k->purpose) {
                sodium_mprotect_readwrite(k->purpose);
                sodium_free(k->purpose);
        }
        free(k);
}

void veil_keyring_destroy(struct veil_keyring *kr) {
        if (!kr)
                return;
        size_t n = atomic_load_explicit(&kr->n_keys, memory_order_acquire);
        for (size_t i = 0; i < n; i++)
                key_free(kr->keys[i]);
        pthread_mutex_destroy(&kr->lock);
        free(kr);
}

/* ---- key files ---- */

static const char *file_kind(mode_t m) {
        if (S_ISDIR(m))
                return "a directory";
        if (S_ISFIFO(m))
                return "a FIFO";
        if (S_ISCHR(m))
                return "a character device";
        if (S_ISBLK(m))
                return "a block device";
        if (S_ISSOCK(m))
                return "a socket";
        return "not a regular file";
}

/* Reads the key file into buf (VEIL_KEYRING_KEY_MAX + 1 bytes). Every
 * message names the path and what is wrong, never a byte of content. */
static int read_key_file(const char *path, unsigned char *buf, size_t *len,
                         char *errstr, size_t errstr_size) {
        struct stat st;
        size_t total = 0;
        int fd, rc = 0;

        /* O_NONBLOCK: opening a FIFO must fail the type check below, not
         * hang the host waiting for a writer. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                seterr(errstr, errstr_size,
                       "key file '%s': cannot open: %s", path,
                       strerror(errno));
                return errno == ENOENT ? -VEIL_ENOENT : -VEIL_EIO;
        }
        /* fstat of the open descriptor: what we check is what we read. */
        if (fstat(fd, &st) != 0) {
                seterr(errstr, errstr_size, "key file '%s': cannot stat: %s",
                       path, strerror(errno));
                rc = -VEIL_EIO;
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                seterr(errstr, errstr_size,
                       "key file '%s' is %s: give the path of a regular "
                       "file holding %d to %d bytes of key material",
                       path, file_kind(st.st_mode), VEIL_KEYRING_KEY_MIN,
                       VEIL_KEYRING_KEY_MAX);
                rc = -VEIL_EINVAL;
                goto out;
        }
        if (st.st_mode & 077) {
                seterr(errstr, errstr_size,
                       "key file '%s' has mode %04o: it is readable or "
                       "writable by group or others; run `chmod 600 %s` "
                       "(in Kubernetes, copy the Secret's files into an "
                       "emptyDir owned by veil's user with mode 0400, as "
                       "deploy/k8s's init container `keys` does: a Secret "
                       "volume's files belong to root)",
                       path, (unsigned)(st.st_mode & 07777), path);
                rc = -VEIL_EINVAL;
                goto out;
        }
        for (;;) {
                ssize_t r = read(fd, buf + total,
                                 VEIL_KEYRING_KEY_MAX + 1 - total);
                if (r < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (r < 0) {
                        seterr(errstr, errstr_size,
                               "key file '%s': cannot read: %s", path,
                               strerror(errno));
                        rc = -VEIL_EIO;
                        goto out;
                }
                if (r == 0)
                        break;
                total += (size_t)r;
                if (total > VEIL_KEYRING_KEY_MAX)
                        break;
        }
        if (total > VEIL_KEYRING_KEY_MAX) {
                seterr(errstr, errstr_size,
                       "key file '%s' is longer than %d bytes: a key file "
                       "holds %d to %d bytes (veil pseudonymize keygen "
                       "writes %d)",
                       path, VEIL_KEYRING_KEY_MAX, VEIL_KEYRING_KEY_MIN,
                       VEIL_KEYRING_KEY_MAX, KEYGEN_BYTES);
                rc = -VEIL_EINVAL;
                goto out;
        }
        if (total < VEIL_KEYRING_KEY_MIN) {
                seterr(errstr, errstr_size,
                       "key file '%s' holds %zu bytes: a key needs at "
                       "least %d (generate one with `veil pseudonymize "
                       "keygen PATH`)",
                       path, total, VEIL_KEYRING_KEY_MIN);
                rc = -VEIL_EINVAL;
                goto out;
        }
        *len = total;
        /* Text of fewer than 43 characters cannot hold 256 bits even at six
         * a character (base64): likely a passphrase, which anyone who
         * knows a user id and sees its pseudonym can test guesses
         * against. Warned, not refused: a strong one exists too. Its
         * length only, never a byte. */
        size_t text = 0;
        while (text < total && buf[text] >= 0x20 && buf[text] < 0x7f)
                text++;
        if (text + (text < total && buf[text] == '\n') == total &&
            text < 43)
                veil_log_host(VEIL_LOG_WARN, NULL,
                              "key file '%s' is %zu characters of text, "
                              "too few for 256 bits: if it is a passphrase, "
                              "pseudonyms of known ids let anyone test "
                              "guesses of it; make keys with `veil "
                              "pseudonymize keygen PATH` (32 random bytes)",
                              path, text);
out:
        close(fd);
        return rc;
}

/* File bytes → purpose key, with the intermediate master wiped. */
static int derive_purpose(const unsigned char *file, size_t len,
                          unsigned char *purpose) {
        unsigned char master[KEY_BYTES];
        unsigned char personal[crypto_generichash_blake2b_PERSONALBYTES] =
                KEYFILE_PERSONAL;
        int rc = crypto_generichash_blake2b_salt_personal(
                master, sizeof(master), file, len, NULL, 0, NULL, personal);
        if (rc == 0)
                rc = crypto_kdf_derive_from_key(purpose, KEY_BYTES,
                                                KDF_ID_PSEUDONYM, KDF_CONTEXT,
                                                master);
        sodium_memzero(master, sizeof(master));
        return rc;
}

/* Same material under two ids would give pseudonyms that differ only in
 * the prefix: a "rotation" that unlinks nothing. Called under the lock. */
static struct key *same_material(struct veil_keyring *kr,
                                 const unsigned char *purpose) {
        size_t n = atomic_load_explicit(&kr->n_keys, memory_order_relaxed);
        for (size_t i = 0; i < n; i++) {
                struct key *k = kr->keys[i];
                int eq;
                sodium_mprotect_readonly(k->purpose);
                eq = sodium_memcmp(k->purpose, purpose, KEY_BYTES) == 0;
                sodium_mprotect_noaccess(k->purpose);
                if (eq)
                        return k;
        }
        return NULL;
}

/* A key file's bytes (path) or, path NULL, random ones drawn here: the
 * material never leaves locked memory (an ephemeral key). Messages name
 * the path or the id, never a byte. */
static int add_key(struct veil_keyring *kr, const char *key_id,
                   const char *path, char *errstr, size_t errstr_size) {
        unsigned char *buf = NULL;
        struct key *k = NULL, *dup;
        size_t len = 0, n;
        int rc;
        const char *name = path ? path : "(random, in memory)";

        if (!kr) {
                seterr(errstr, errstr_size, "keyring: no keyring or path");
                return -VEIL_EINVAL;
        }
        if (!veil_keyring_key_id_valid(key_id)) {
                seterr(errstr, errstr_size,
                       "key id '%.32s' (for key file '%s') is invalid: use "
                       "1 to %d characters from a-z, 0-9, '_' and '-'",
                       key_id ? key_id : "", name, VEIL_KEYRING_KEY_ID_MAX);
                return -VEIL_EINVAL;
        }
        pthread_mutex_lock(&kr->lock);
        n = atomic_load_explicit(&kr->n_keys, memory_order_relaxed);
        if (find_key(kr, key_id)) {
                seterr(errstr, errstr_size,
                       "key id '%s' (for key file '%s') is already in the "
                       "keyring: give every key its own id",
                       key_id, name);
                rc = -VEIL_EINVAL;
                goto out;
        }
        if (n >= VEIL_KEYRING_MAX_KEYS) {
                seterr(errstr, errstr_size,
                       "key file '%s' (key id '%s'): the keyring already "
                       "holds %d keys, the most it holds; retire an old "
                       "key first",
                       name, key_id, VEIL_KEYRING_MAX_KEYS);
                rc = -VEIL_EINVAL;
                goto out;
        }
        buf = sodium_malloc(VEIL_KEYRING_KEY_MAX + 1);
        k = calloc(1, sizeof(*k));
        if (!buf || !k || !(k->purpose = sodium_malloc(KEY_BYTES))) {
                seterr(errstr, errstr_size,
                       "key file '%s': out of (locked) memory", name);
                rc = -VEIL_ENOMEM;
                goto out;
        }
        if (path) {
                rc = read_key_file(path, buf, &len, errstr, errstr_size);
                if (rc)
                        goto out;
        } else {
                if (sodium_init() < 0) {
                        seterr(errstr, errstr_size,
                               "keyring: libsodium failed to initialize");
                        rc = -VEIL_ESTATE;
                        goto out;
                }
                len = KEYGEN_BYTES;
                randombytes_buf(buf, len);
        }
        if (derive_purpose(buf, len, k->purpose) != 0) {
                seterr(errstr, errstr_size,
                       "key file '%s': key derivation failed", name);
                rc = -VEIL_ESTATE;
                goto out;
        }
        if ((dup = same_material(kr, k->purpose))) {
                seterr(errstr, errstr_size,
                       "key file '%s' (key id '%s') holds the same key as "
                       "key id '%s': a rotation needs a new key (veil "
                       "pseudonymize keygen)",
                       name, key_id, dup->id);
                rc = -VEIL_EINVAL;
                goto out;
        }
        sodium_mprotect_noaccess(k->purpose);
        memcpy(k->id, key_id, strlen(key_id) + 1);
        atomic_init(&k->cache, NULL);
        kr->keys[n] = k;
        k = NULL;
        atomic_store_explicit(&kr->n_keys, n + 1, memory_order_release);
        if (atomic_load_explicit(&kr->active, memory_order_relaxed) < 0)
                atomic_store_explicit(&kr->active, (int)n,
                                      memory_order_release);
        rc = 0;
out:
        pthread_mutex_unlock(&kr->lock);
        if (buf)
                sodium_free(buf);
        key_free(k);
        return rc;
}

int veil_keyring_add_file(struct veil_keyring *kr, const char *key_id,
                          const char *path, char *errstr,
                          size_t errstr_size) {
        if (!path) {
                seterr(errstr, errstr_size, "keyring: no key file path");
                return -VEIL_EINVAL;
        }
        return add_key(kr, key_id, path, errstr, errstr_size);
}

int veil_keyring_add_random(struct veil_keyring *kr, const char *key_id,
                            char *errstr, size_t errstr_size) {
        return add_key(kr, key_id, NULL, errstr, errstr_size);
}

int veil_keyring_set_active(struct veil_keyring *kr, const char *key_id,
                            char *errstr, size_t errstr_size) {
        int rc = -VEIL_ENOENT;
        if (!kr || !key_id) {
                seterr(errstr, errstr_size, "keyring: no keyring or key id");
                return -VEIL_EINVAL;
        }
        pthread_mutex_lock(&kr->lock);
        size_t n = atomic_load_explicit(&kr->n_keys, memory_order_relaxed);
        for (size_t i = 0; i < n; i++) {
                if (strcmp(kr->keys[i]->id, key_id) == 0) {
                        atomic_store_explicit(&kr->active, (int)i,
                                              memory_order_release);
                        rc = 0;
                        break;
                }
        }
        pthread_mutex_unlock(&kr->lock);
        if (rc) {
                char ids[VEIL_KEYRING_MAX_KEYS * (VEIL_KEYRING_KEY_ID_MAX + 2)
                         + 1] = "";
                size_t used = 0;
                for (size_t i = 0; i < n; i++) {
                        int w = snprintf(ids + used, sizeof(ids) - used,
                                         "%s%s", i ? ", " : "",
                                         kr->keys[i]->id);
                        if (w < 0 || (size_t)w >= sizeof(ids) - used)
                                break;
                        used += (size_t)w;
                }
                seterr(errstr, errstr_size,
                       "active key '%.32s' is not in the keyring: the keyring "
                       "holds %s",
                       key_id, n ? ids : "no key yet (add a key file first)");
        }
        return rc;
}

const char *veil_keyring_active_id(const struct veil_keyring *kr) {
        int a;
        if (!kr)
                return NULL;
        a = atomic_load_explicit(&kr->active, memory_order_acquire);
        return a < 0 ? NULL : kr->keys[a]->id;
}

size_t veil_keyring_n_keys(const struct veil_keyring *kr) {
        return kr ? atomic_load_explicit(&kr->n_keys, memory_order_acquire)
                  : 0;
}

const char *veil_keyring_key_id(const struct veil_keyring *kr, size_t i) {
        return i < veil_keyring_n_keys(kr) ? kr->keys[i]->id : NULL;
}

/* ---- subkeys ---- */

static const struct subkey *cache_find(const struct key *k,
                                       const char *domain, size_t dlen) {
        const struct subkey *e =
                atomic_load_explicit(&k->cache, memory_order_acquire);
        for (; e; e = e->next)
                if (e->domain_len == dlen &&
                    memcmp(e->domain, domain, dlen) == 0)
                        return e;
        return NULL;
}

/* HMAC state for (k, domain). Called under the lock. */
static void subkey_derive(const struct key *k, const char *domain,
                          size_t dlen, crypto_auth_hmacsha256_state *st) {
        unsigned char sub[KEY_BYTES];
        sodium_mprotect_readonly(k->purpose);
        crypto_generichash(sub, sizeof(sub), (const unsigned char *)domain,
                           dlen, k->purpose, KEY_BYTES);
        sodium_mprotect_noaccess(k->purpose);
        mac_start(st, sub, sizeof(sub));
        sodium_memzero(sub, sizeof(sub));
}

/* The HMAC state to use: the cached one, a newly cached one, or — past the
 * cache cap — one derived into *tmp (the caller wipes it). */
static const crypto_auth_hmacsha256_state *
subkey_get(const struct veil_keyring *kr, struct key *k, const char *domain,
           size_t dlen, crypto_auth_hmacsha256_state *tmp) {
        /* The lock is the keyring's own, and the keyring was allocated
         * non-const: filling a cache is not an observable change. */
        pthread_mutex_t *lock = (pthread_mutex_t *)&kr->lock;
        const struct subkey *hit = cache_find(k, domain, dlen);
        const crypto_auth_hmacsha256_state *res = NULL;
        struct subkey *e;
        size_t sz;

        if (hit)
                return hit->mac;
        pthread_mutex_lock(lock);
        if ((hit = cache_find(k, domain, dlen))) {
                res = hit->mac;
                goto out;
        }
        if (k->n_cached >= CACHE_MAX) {
                subkey_derive(k, domain, dlen, tmp);
                res = tmp;
                goto out;
        }
        /* sodium_malloc places the block against its end guard page, so
         * the start is only aligned if the size is a multiple of it. */
        sz = (sizeof(*e->mac) + _Alignof(max_align_t) - 1) &
             ~(size_t)(_Alignof(max_align_t) - 1);
        e = malloc(sizeof(*e) + dlen);
        if (!e)
                goto out;
        if (!(e->mac = sodium_malloc(sz))) {
                free(e);
                goto out;
        }
        subkey_derive(k, domain, dlen, e->mac);
        e->domain_len = dlen;
        memcpy(e->domain, domain, dlen);
        e->next = atomic_load_explicit(&k->cache, memory_order_relaxed);
        atomic_store_explicit(&k->cache, e, memory_order_release);
        k->n_cached++;
        res = e->mac;
out:
        pthread_mutex_unlock(lock);
        return res;
}

/* ---- pseudonyms ---- */

/* base64url without padding. Not sodium_bin2base64: that one is
 * constant-time, which costs 70 ns a call here, and a pseudonym is public
 * output — its bytes need no protection from timing. */
static void b64url(const unsigned char *in, size_t n, char *out) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "abcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t i = 0;
        for (; i + 3 <= n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
                             in[i + 2];
                *out++ = tab[v >> 18];
                *out++ = tab[(v >> 12) & 63];
                *out++ = tab[(v >> 6) & 63];
                *out++ = tab[v & 63];
        }
        if (n - i == 1) {
                *out++ = tab[in[i] >> 2];
                *out++ = tab[(in[i] & 3) << 4];
        } else if (n - i == 2) {
                uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];
                *out++ = tab[v >> 10];
                *out++ = tab[(v >> 4) & 63];
                *out++ = tab[(v & 15) << 2];
        }
        *out = '\0';
}

static int pseudonym_with(const struct veil_keyring *kr, struct key *k,
                          const char *domain, const void *id, size_t id_len,
                          char *out, size_t out_size) {
        crypto_auth_hmacsha256_state tmp;
        const crypto_auth_hmacsha256_state *st;
        unsigned char mac[32];
        size_t dlen, idl;

        if (!domain || !id || !id_len || !out)
                return -VEIL_EINVAL;
        dlen = strnlen(domain, VEIL_KEYRING_DOMAIN_MAX + 1);
        if (dlen == 0 || dlen > VEIL_KEYRING_DOMAIN_MAX)
                return -VEIL_EINVAL;
        idl = strlen(k->id);
        if (out_size < idl + 1 + B64_LEN + 1)
                return -VEIL_EINVAL;
        st = subkey_get(kr, k, domain, dlen, &tmp);
        if (!st)
                return -VEIL_ENOMEM;
        mac_finish(st, id, id_len, mac);
        if (st == &tmp)
                sodium_memzero(&tmp, sizeof(tmp));
        memcpy(out, k->id, idl);
        out[idl] = '.';
        b64url(mac, VEIL_KEYRING_PSEUDONYM_BYTES, out + idl + 1);
        sodium_memzero(mac, sizeof(mac));
        return (int)(idl + 1 + B64_LEN);
}

int veil_keyring_pseudonym(const struct veil_keyring *kr, const char *domain,
                           const void *id, size_t id_len, char *out,
                           size_t out_size) {
        int a;
        if (!kr)
                return -VEIL_EINVAL;
        a = atomic_load_explicit(&kr->active, memory_order_acquire);
        if (a < 0)
                return -VEIL_ESTATE;
        return pseudonym_with(kr, kr->keys[a], domain, id, id_len, out,
                              out_size);
}

int veil_keyring_pseudonym_key(const struct veil_keyring *kr,
                               const char *key_id, const char *domain,
                               const void *id, size_t id_len, char *out,
                               size_t out_size) {
        struct key *k;
        if (!kr || !key_id)
                return -VEIL_EINVAL;
        if (!(k = find_key(kr, key_id)))
                return -VEIL_ENOENT;
        return pseudonym_with(kr, k, domain, id, id_len, out, out_size);
}

int veil_keyring_key_id_of(const char *pseudonym, char *out,
                           size_t out_size) {
        const char *dot, *p;
        size_t n;
        if (!pseudonym || !out)
                return -VEIL_EINVAL;
        dot = memchr(pseudonym, '.', strnlen(pseudonym, VEIL_PSEUDONYM_MAX));
        if (!dot)
                return -VEIL_EINVAL;
        n = (size_t)(dot - pseudonym);
        if (n == 0 || n > VEIL_KEYRING_KEY_ID_MAX || n + 1 > out_size)
                return -VEIL_EINVAL;
        for (p = dot + 1; *p; p++) {
                char c = *p;
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (c >= '0' && c <= '9') || c == '-' || c == '_'))
                        return -VEIL_EINVAL;
        }
        if ((size_t)(p - dot - 1) != B64_LEN)
                return -VEIL_EINVAL;
        memcpy(out, pseudonym, n);
        out[n] = '\0';
        if (!veil_keyring_key_id_valid(out)) {
                out[0] = '\0';
                return -VEIL_EINVAL;
        }
        return (int)n;
}

/* ---- keygen ---- */

int veil_keyring_keygen(const char *path, char *errstr, size_t errstr_size) {
        unsigned char key[KEYGEN_BYTES];
        size_t done = 0;
        int fd, err;

        if (!path || !*path) {
                seterr(errstr, errstr_size, "keygen: no path given");
                return -VEIL_EINVAL;
        }
        if (sodium_init() < 0) {
                seterr(errstr, errstr_size,
                       "keygen: libsodium failed to initialize");
                return -VEIL_ESTATE;
        }
        /* O_EXCL also refuses a symlink, dangling or not: a key is never
         * written through a link someone else placed. */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
        if (fd < 0) {
                if (errno == EEXIST)
                        seterr(errstr, errstr_size,
                               "key file '%s' already exists: keygen never "
                               "overwrites a key (a rotation adds a new key "
                               "file under a new key id); choose another "
                               "path",
                               path);
                else
                        seterr(errstr, errstr_size,
                               "key file '%s': cannot create: %s", path,
                               strerror(errno));
                return errno == EEXIST ? -VEIL_EINVAL : -VEIL_EIO;
        }
        /* The umask can only narrow 0600, but a key file's mode must be
         * exactly what the loader accepts and the operator expects. */
        if (fchmod(fd, 0600) != 0)
                goto fail;
        randombytes_buf(key, sizeof(key));
        while (done < sizeof(key)) {
                ssize_t w = write(fd, key + done, sizeof(key) - done);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w == 0)
                        errno = EIO;
                if (w <= 0)
                        goto fail;
                done += (size_t)w;
        }
        sodium_memzero(key, sizeof(key));
        if (fsync(fd) != 0)
                goto fail;
        if (close(fd) != 0) {
                fd = -1;
                goto fail;
        }
        return 0;
fail:
        err = errno ? errno : EIO;
        sodium_memzero(key, sizeof(key));
        seterr(errstr, errstr_size, "key file '%s': cannot write: %s", path,
               strerror(err));
        if (fd >= 0)
                close(fd);
        unlink(path);
        return -VEIL_EIO;
}

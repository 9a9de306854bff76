/*
 * bench_pseudonym.c — pseudonyms and generalizers per second, one core.
 *
 * Prints numbers, never fails on them. The pseudonym rate is given as a
 * ratio against its ceiling measured in the same run: libsodium's
 * HMAC-SHA-256 of the same ids from a precomputed state, which is the
 * irreducible cost (everything else — domain lookup, base64, formatting — is
 * overhead). Keyed BLAKE2b is printed alongside as the alternative primitive.
 *
 * Then the whole pseudonymize stage with its default policies, through the
 * host (a pipeline of that one stage, batches of 512 web events with every
 * context field set), per event; its ceiling is the two bare MACs the
 * default policies need per event (user id and session id).
 *
 * Usage: bench_pseudonym [seconds for the pseudonym loop, default 2]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "config.h"
#include "generalize.h"
#include "keyring.h"
#include "pipeline.h"

static double now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs body in chunks of 4096 until `secs` have passed; the rate into
 * `rate`. */
#define RATE(rate, secs, body)                                                \
        do {                                                                  \
                double t0_ = now(), el_;                                      \
                uint64_t n_ = 0;                                              \
                do {                                                          \
                        for (int k_ = 0; k_ < 4096; k_++, n_++) {             \
                                body;                                         \
                        }                                                     \
                } while ((el_ = now() - t0_) < (secs));                       \
                (rate) = (double)n_ / el_;                                    \
        } while (0)

static void id_of(uint64_t i, unsigned char id[16]) {
        memcpy(id, &i, 8);
        memcpy(id + 8, "veil-bnc", 8);
}

#define STAGE_BATCH 512

/* Events as a web front end sends them: every field the defaults touch. */
static void web_event(uint64_t i, struct veil_event *e, char *user,
                      char *session, char *ip, struct veil_kv attrs[2]) {
        static const char *const uas[] = {
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) "
                "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 "
                "Mobile/15E148 Safari/604.1"};
        memset(e, 0, sizeof(*e));
        /* A 16-byte user id, as in the pseudonym loop. */
        snprintf(user, 17, "u%015llu", (unsigned long long)i);
        snprintf(session, 24, "s%llu", (unsigned long long)(i / 7));
        if (i % 4)
                snprintf(ip, 46, "10.%u.%u.%u", (unsigned)(i % 250),
                         (unsigned)(i / 250 % 250), (unsigned)(1 + i % 253));
        else
                snprintf(ip, 46, "2001:db8:%x:%x::1", (unsigned)(i % 65536),
                         (unsigned)(i / 7 % 65536));
        e->event_id = "e";
        e->user_id = user;
        e->ts_ms = 1700000000000 + (int64_t)i;
        e->type = "view";
        e->item_id = "item";
        e->gpc = -1;
        e->tc_string = "CPzHq4APzHq4AAGABCENAzCsAP_AAH_AAAqIHNNf";
        e->ctx.device = "mobile";
        e->ctx.ip = ip;
        e->ctx.user_agent = uas[i % 2];
        e->ctx.has_geo = 1;
        e->ctx.lat = 48.0 + (double)(i % 1000) / 1000.0;
        e->ctx.lon = 2.0 + (double)(i % 777) / 777.0;
        e->ctx.country = "FR";
        e->ctx.session_id = session;
        e->ctx.timezone = "Europe/Paris";
        e->ctx.attrs = attrs;
        e->ctx.n_attrs = 2;
}

/* Events per second through the stage alone: only batch_run is timed
 * (adding events copies them and computes the host's subject pseudonym,
 * which is not the stage's work). 0 when the pipeline does not start. */
static double stage_rate(struct veil_keyring *kr, double secs) {
        static const char text[] =
                "kafka: {bootstrap: embedded, group: bench}\n"
                "input:\n"
                "  topic: in\n"
                "  schema: ../../schemas/interaction.avsc\n"
                "  batch: {max_events: 512}\n"
                "outputs: {dead_letter: {topic: dlq}}\n"
                "plugins: [{use: pseudonymize}]\n";
        struct veil_config *cfg;
        struct veil_pipeline *p;
        char err[1024];
        if (veil_config_parse(&cfg, BENCH_ROOT "/tests/pipelines/bench.yaml",
                              text, strlen(text), err, sizeof(err))) {
                fprintf(stderr, "bench: %s\n", err);
                return 0;
        }
        char *path[] = {BENCH_PLUGIN_DIR};
        struct veil_pipeline_opts o = {path, 1, kr, 0};
        if (veil_pipeline_new(&p, cfg, &o, err, sizeof(err))) {
                fprintf(stderr, "bench: %s\n", err);
                veil_config_destroy(cfg);
                return 0;
        }
        /* The batch copies the strings; these only need to outlive the
         * add of their event. */
        char user[17], session[24], ip[46];
        struct veil_kv attrs[2] = {{"page", "home"}, {"arm", "b"}};
        struct veil_event ev;
        uint64_t i = 0, n = 0;
        double busy = 0, start = now();
        do {
                veil_pipeline_batch_begin(p);
                for (int k = 0; k < STAGE_BATCH; k++, i++) {
                        web_event(i, &ev, user, session, ip, attrs);
                        veil_pipeline_batch_add_event(p, &ev);
                }
                double t0 = now();
                if (veil_pipeline_batch_run(p, err, sizeof(err))) {
                        fprintf(stderr, "bench: %s\n", err);
                        break;
                }
                busy += now() - t0;
                n += STAGE_BATCH;
        } while (now() - start < secs);
        veil_pipeline_destroy(p);
        veil_config_destroy(cfg);
        return busy > 0 ? (double)n / busy : 0;
}

int main(int argc, char **argv) {
        double secs = argc > 1 ? atof(argv[1]) : 2.0;
        char dir[] = "/tmp/veil-bench-XXXXXX", path[64], err[256];
        char out[VEIL_PSEUDONYM_MAX];
        unsigned char id[16], mac[32];
        struct veil_keyring *kr;
        unsigned sink = 0;
        uint64_t i = 0;

        if (secs <= 0)
                secs = 2.0;
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(path, sizeof(path), "%s/k1.key", dir);
        if (veil_keyring_keygen(path, err, sizeof(err)) ||
            veil_keyring_new(&kr, err, sizeof(err)) ||
            veil_keyring_add_file(kr, "k1", path, err, sizeof(err))) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
        }

        double ps;
        RATE(ps, secs, {
                id_of(i++, id);
                sink += (unsigned)veil_keyring_pseudonym(
                        kr, "subject", id, sizeof(id), out, sizeof(out));
                sink += (unsigned char)out[5];
        });

        /* Ceiling: the MAC alone, state precomputed, same ids. */
        unsigned char key[32];
        randombytes_buf(key, sizeof(key));
        crypto_auth_hmacsha256_state base, st;
        crypto_auth_hmacsha256_init(&base, key, sizeof(key));
        double hs;
        RATE(hs, secs / 2, {
                id_of(i++, id);
                st = base;
                crypto_auth_hmacsha256_update(&st, id, sizeof(id));
                crypto_auth_hmacsha256_final(&st, mac);
                sink += mac[0];
        });
        crypto_generichash_state gbase, gst;
        crypto_generichash_init(&gbase, key, sizeof(key), 16);
        double bs;
        RATE(bs, secs / 2, {
                id_of(i++, id);
                gst = gbase;
                crypto_generichash_update(&gst, id, sizeof(id));
                crypto_generichash_final(&gst, mac, 16);
                sink += mac[0];
        });
        sodium_memzero(key, sizeof(key));
        sodium_memzero(&base, sizeof(base));
        sodium_memzero(&gbase, sizeof(gbase));

        double es = stage_rate(kr, secs);

        /* Generalizers, on varied inputs. */
        static const char *const ips[] = {
                "192.168.1.77", "10.20.30.40", "2001:db8:1:2:3:4:5:6",
                "::ffff:203.0.113.9", "2a00:1450:4001:82a::200e",
                "198.51.100.254"};
        static const char *const uas[] = {
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) "
                "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 "
                "Mobile/15E148 Safari/604.1",
                "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) "
                "AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 "
                "Chrome/115.0.0.0 Mobile Safari/537.36",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:120.0) "
                "Gecko/20100101 Firefox/120.0",
                "Mozilla/5.0 (compatible; Googlebot/2.1; "
                "+http://www.google.com/bot.html)"};
        char gout[64];
        struct veil_ua ua;
        double is;
        RATE(is, secs / 2, {
                sink += (unsigned)veil_ip_truncate(ips[i++ % 6], 24, 48, gout,
                                                   sizeof(gout));
        });
        double gs;
        RATE(gs, secs / 2, {
                double lat = (double)(i % 1800) / 10.0 - 90.0;
                double lon = (double)(i++ % 3600) / 10.0 - 180.0;
                sink += (unsigned)veil_geohash_encode(lat, lon, 6, gout,
                                                      sizeof(gout));
        });
        double us;
        RATE(us, secs / 2, {
                veil_ua_reduce(uas[i++ % 5], &ua);
                sink += (unsigned)veil_ua_format(&ua, gout, sizeof(gout));
        });
        double ts;
        RATE(ts, secs / 2, {
                sink += (unsigned)veil_time_bucket((int64_t)(i++ * 7919),
                                                   3600000);
        });

        printf("pseudonym (16-byte id, HMAC-SHA-256, cached subkey): "
               "%.2f M/s per core\n",
               ps / 1e6);
        printf("  ceiling, HMAC-SHA-256 alone from precomputed state: "
               "%.2f M/s  -> pseudonym at %.0f%% of ceiling\n",
               hs / 1e6, 100.0 * ps / hs);
        printf("  for comparison, keyed BLAKE2b-128 alone: %.2f M/s "
               "(%.2fx HMAC)\n",
               bs / 1e6, bs / hs);
        printf("ip truncate (v4 /24, v6 /48, mixed): %.2f M/s\n", is / 1e6);
        printf("geohash encode (precision 6):        %.2f M/s\n", gs / 1e6);
        printf("user agent reduce + format:          %.2f M/s\n", us / 1e6);
        printf("time bucket (1h):                    %.2f M/s\n", ts / 1e6);
        if (es > 0) {
                printf("pseudonymize stage, default policies (2 pseudonyms, "
                       "IP, user agent, geohash, device, drops): %.0f "
                       "events/s per core, %.2f us/event\n",
                       es, 1e6 / es);
                printf("  ceiling, the 2 bare HMACs per event: %.0f "
                       "events/s  -> stage at %.0f%% of ceiling\n",
                       hs / 2, 100.0 * es / (hs / 2));
        }
        printf("(checksum %u, keeps the loops from being optimized away)\n",
               sink);

        veil_keyring_destroy(kr);
        unlink(path);
        rmdir(dir);
        return 0;
}

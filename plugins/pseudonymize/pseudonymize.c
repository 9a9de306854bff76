/*
 * pseudonymize — raw identifiers stop here.
 *
 * Rewrites each event in place, field by field, as its policy says
 * (policy.h): identifiers become keyed pseudonyms from the host keyring,
 * quasi-identifiers are generalized (IP prefix, geohash cell, reduced user
 * agent, device class, time bucket), attributes are cut to an allow-list,
 * the rest is kept or dropped. New strings live in the batch arena.
 *
 * user_id is pseudonymized under the domain "subject", the very function
 * the host uses for ev->subject, so after this stage user_id == subject and
 * erase/export requests find the user on either side. Other fields use
 * their field path as the domain, so equal values in two fields (a session
 * id that happens to equal a user id) do not get equal pseudonyms.
 *
 * A value the generalizer cannot read (an IP that is not one, a latitude
 * out of range, a geohash with foreign characters) is dropped: what cannot
 * be coarsened is never passed on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

#include "generalize.h"
#include "policy.h"

struct state {
        veil_stage_t *st;
        struct veil_policy pol;
};

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        struct state *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        if (veil_policy_parse(&s->pol, p)) {
                for (int f = 0; f < VEIL_PF_N; f++) {
                        if (s->pol.err[f][0]) {
                                snprintf(errstr, errstr_size, "%s: %s: %s",
                                         s->pol.where[f],
                                         veil_policy_field_path(f),
                                         s->pol.err[f]);
                                break;
                        }
                }
                free(s);
                return -VEIL_EINVAL;
        }
        /* A pseudonym policy without keys could only fail per event;
         * refuse to start instead. */
        char probe[VEIL_PSEUDONYM_MAX];
        int needs_key = 0;
        for (int f = 0; f < VEIL_PF_N; f++)
                needs_key |= s->pol.rule[f].kind == VEIL_POLICY_PSEUDONYM;
        if (needs_key &&
            veil_pseudonym(st, "subject", "probe", 5, probe, sizeof(probe)) <
                    0) {
                snprintf(errstr, errstr_size,
                         "pseudonymize needs the host keyring and the "
                         "pipeline has no keys: add keys: {active: k1, "
                         "files: {k1: /path/to/key}} (`veil pseudonymize "
                         "keygen FILE` writes a key), or keys: {ephemeral: "
                         "true} for a throw-away key");
                free(s);
                return -VEIL_EINVAL;
        }
        *state = s;
        return 0;
}

static void destroy(void *state) { free(state); }

/* ---- per field ---- */

static char *arena_copy(struct veil_batch *b, const char *s, size_t n) {
        char *d = veil_batch_alloc(b, n + 1);
        if (d) {
                memcpy(d, s, n);
                d[n] = '\0';
        }
        return d;
}

/* 0 and *v rewritten, or -VEIL_ENOMEM / the keyring's error. */
static int pseudonymize(struct state *s, struct veil_batch *b,
                        const char *domain, const char **v) {
        char out[VEIL_PSEUDONYM_MAX];
        size_t len;
        if (!*v || !**v)
                return 0; /* absent or empty: nothing to hide */
        len = strlen(*v);
        int n = veil_pseudonym(s->st, domain, *v, len, out, sizeof(out));
        if (n < 0)
                return n;
        const char *d = arena_copy(b, out, (size_t)n);
        if (!d)
                return -VEIL_ENOMEM;
        *v = d;
        return 0;
}

/* A string field under its rule. `required`: the schema has no null for
 * it, so drop leaves an empty string. */
static int apply_str(struct state *s, struct veil_batch *b,
                     enum veil_policy_field f, const char **v, int required) {
        const struct veil_policy_rule *r = &s->pol.rule[f];
        char buf[VEIL_UA_OUT_MAX > VEIL_IP_OUT_MAX ? VEIL_UA_OUT_MAX
                                                   : VEIL_IP_OUT_MAX];
        int n;

        switch (r->kind) {
        case VEIL_POLICY_KEEP:
                return 0;
        case VEIL_POLICY_DROP:
                *v = required ? "" : NULL;
                return 0;
        case VEIL_POLICY_PSEUDONYM:
                return pseudonymize(s, b,
                                    f == VEIL_PF_USER_ID
                                            ? "subject"
                                            : veil_policy_field_path(f),
                                    v);
        case VEIL_POLICY_TRUNCATE_IP:
                if (!*v)
                        return 0;
                n = veil_ip_truncate(*v, r->v4_prefix, r->v6_prefix, buf,
                                     sizeof(buf));
                break;
        case VEIL_POLICY_REDUCE_UA: {
                struct veil_ua ua;
                if (!*v)
                        return 0;
                n = veil_ua_reduce(*v, &ua);
                if (n >= 0)
                        n = veil_ua_format(&ua, buf, sizeof(buf));
                break;
        }
        case VEIL_POLICY_DEVICE_CLASS:
                *v = veil_policy_device_class(*v); /* static strings */
                return 0;
        default:
                *v = NULL; /* policy.c admits no other kind here */
                return 0;
        }
        if (n < 0) {
                *v = NULL; /* unreadable: dropped, never passed on */
                return 0;
        }
        if (!(*v = arena_copy(b, buf, (size_t)n)))
                return -VEIL_ENOMEM;
        return 0;
}

static int geohash_valid(const char *g, size_t n) {
        static const char base32[] = "0123456789bcdefghjkmnpqrstuvwxyz";
        for (size_t i = 0; i < n; i++)
                if (!g[i] || !strchr(base32, g[i]))
                        return 0;
        return n > 0;
}

/* The cell length an event gets under a location rule: keep is the finest
 * there is. 0: the value is dropped. */
static int geo_precision(const struct veil_policy_rule *r, int coarse) {
        int p = r->kind == VEIL_POLICY_GEOHASH ? r->precision
                : r->kind == VEIL_POLICY_KEEP  ? VEIL_GEOHASH_MAX
                                               : 0;
        return coarse && p > VEIL_POLICY_COARSE_GEOHASH
                       ? VEIL_POLICY_COARSE_GEOHASH
                       : p;
}

/* lat/lon and the geohash field: one location, one decision. */
static int apply_geo(struct state *s, struct veil_batch *b,
                     struct veil_event *ev) {
        const struct veil_policy_rule *loc = &s->pol.rule[VEIL_PF_LAT];
        const struct veil_policy_rule *gr = &s->pol.rule[VEIL_PF_GEOHASH];
        /* Precise locations only with special feature 1 (bit 0): cells of
         * 7 characters or more, and keep (policy.c refuses both without
         * require_special_feature_1). Others get geohash:6, whether the
         * rule was a fine cell or keep. */
        int coarse = s->pol.special_feature_1 &&
                     !(ev->special_features & 1u);

        if (ev->ctx.geohash && (gr->kind != VEIL_POLICY_KEEP || coarse)) {
                const char *g = ev->ctx.geohash;
                size_t n = strlen(g), p = (size_t)geo_precision(gr, coarse);
                /* A kept geohash that is cut has to be one: what cannot be
                 * coarsened is dropped. */
                if (!p || !geohash_valid(g, n))
                        ev->ctx.geohash = NULL;
                else if (n > p && !(ev->ctx.geohash = arena_copy(b, g, p)))
                        return -VEIL_ENOMEM;
        }
        if (!ev->ctx.has_geo || (loc->kind == VEIL_POLICY_KEEP && !coarse))
                return 0;
        double lat = ev->ctx.lat, lon = ev->ctx.lon;
        ev->ctx.has_geo = 0;
        ev->ctx.lat = ev->ctx.lon = 0;
        int p = geo_precision(loc, coarse);
        if (!p)
                return 0; /* drop */
        char buf[VEIL_GEOHASH_MAX + 1];
        int n = veil_geohash_encode(lat, lon, p, buf, sizeof(buf));
        if (n < 0)
                return 0; /* out of range: the location is dropped */
        /* The cell computed from lat/lon replaces one the front end sent:
         * same place, and this one has the precision the policy allows. */
        if (!(ev->ctx.geohash = arena_copy(b, buf, (size_t)n)))
                return -VEIL_ENOMEM;
        return 0;
}

static void apply_attrs(const struct veil_policy *pol,
                        struct veil_event *ev) {
        size_t kept = 0;
        for (size_t i = 0; i < ev->ctx.n_attrs; i++) {
                const struct veil_kv *kv = &ev->ctx.attrs[i];
                for (size_t k = 0; k < pol->n_attrs; k++) {
                        if (kv->key && !strcmp(kv->key, pol->attrs[k])) {
                                ev->ctx.attrs[kept++] = *kv;
                                break;
                        }
                }
        }
        ev->ctx.n_attrs = kept;
        if (!kept)
                ev->ctx.attrs = NULL;
}

static int apply(struct state *s, struct veil_batch *b,
                 struct veil_event *ev) {
        const struct veil_policy *pol = &s->pol;
        int rc;
        if ((rc = apply_str(s, b, VEIL_PF_USER_ID, &ev->user_id, 1)) ||
            (rc = apply_str(s, b, VEIL_PF_EVENT_ID, &ev->event_id, 1)) ||
            (rc = apply_str(s, b, VEIL_PF_TC_STRING, &ev->tc_string, 0)) ||
            (rc = apply_str(s, b, VEIL_PF_DEVICE, &ev->ctx.device, 0)) ||
            (rc = apply_str(s, b, VEIL_PF_IP, &ev->ctx.ip, 0)) ||
            (rc = apply_str(s, b, VEIL_PF_USER_AGENT, &ev->ctx.user_agent,
                            0)) ||
            (rc = apply_str(s, b, VEIL_PF_COUNTRY, &ev->ctx.country, 0)) ||
            (rc = apply_str(s, b, VEIL_PF_SESSION_ID, &ev->ctx.session_id,
                            0)) ||
            (rc = apply_str(s, b, VEIL_PF_TIMEZONE, &ev->ctx.timezone, 0)) ||
            (rc = apply_geo(s, b, ev)))
                return rc;
        if (pol->rule[VEIL_PF_TS].kind == VEIL_POLICY_BUCKET_TIME)
                ev->ts_ms = veil_time_bucket(ev->ts_ms,
                                             pol->rule[VEIL_PF_TS].bucket_ms);
        apply_attrs(pol, ev);
        return 0;
}

static int process(void *state, struct veil_batch *b) {
        struct state *s = state;
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                int rc = apply(s, b, ev);
                if (rc) {
                        /* Half-rewritten events must not go on: the host
                         * fails the batch and commits nothing. */
                        veil_log(s->st, VEIL_LOG_ERROR,
                                 "pseudonymize failed on event %zu of the "
                                 "batch (code %d); the batch is not "
                                 "committed",
                                 i, rc);
                        return rc < 0 ? rc : -VEIL_ESTATE;
                }
        }
        return 0;
}

/* ---- lint and notice: from the parameters alone ---- */

static veil_field_treatment_t treatment(enum veil_policy_kind k) {
        switch (k) {
        case VEIL_POLICY_KEEP:
                return VEIL_FIELD_KEPT;
        case VEIL_POLICY_DROP:
                return VEIL_FIELD_DROPPED;
        case VEIL_POLICY_PSEUDONYM:
                return VEIL_FIELD_PSEUDONYMIZED;
        default:
                return VEIL_FIELD_GENERALIZED;
        }
}

static void lint(const veil_params_t *p, veil_lint_t *l) {
        struct veil_policy *pol = malloc(sizeof(*pol));
        if (!pol)
                return;
        veil_policy_parse(pol, p);
        for (int f = 0; f < VEIL_PF_N; f++) {
                const struct veil_policy_rule *r = &pol->rule[f];
                const char *path = veil_policy_field_path(f);
                if (pol->err[f][0]) {
                        veil_lint_field(l, path, VEIL_FIELD_INVALID,
                                        pol->err[f]);
                        continue;
                }
                veil_field_treatment_t t = treatment(r->kind);
                /* keep and pseudonym pass on the written reason only, NULL
                 * when there is none: the lint wants one for a
                 * quasi-identifier either way. */
                const char *reason = r->kind == VEIL_POLICY_KEEP ||
                                                     r->kind ==
                                                             VEIL_POLICY_PSEUDONYM
                                             ? r->reason
                                             : r->text;
                /* The geohash field also carries the cell computed from
                 * lat/lon (kept lat/lon: the coarse cell of an event
                 * without precise-geolocation consent): its treatment is
                 * the weaker of the two. */
                if (f == VEIL_PF_GEOHASH && t == VEIL_FIELD_DROPPED &&
                    pol->rule[VEIL_PF_LAT].kind == VEIL_POLICY_GEOHASH) {
                        t = VEIL_FIELD_GENERALIZED;
                        reason = pol->rule[VEIL_PF_LAT].text;
                } else if (f == VEIL_PF_GEOHASH && t == VEIL_FIELD_DROPPED &&
                           pol->rule[VEIL_PF_LAT].kind == VEIL_POLICY_KEEP &&
                           pol->special_feature_1) {
                        t = VEIL_FIELD_GENERALIZED;
                        reason = "a coarse cell for events without "
                                 "precise-geolocation consent";
                }
                if (f == VEIL_PF_ATTRS)
                        reason = pol->n_attrs ? "allow-listed keys only"
                                              : "every attribute dropped";
                veil_lint_field(l, path, t, reason);
        }
        free(pol);
}

static const char *field_words(enum veil_policy_field f) {
        switch (f) {
        case VEIL_PF_EVENT_ID: return "the event id";
        case VEIL_PF_USER_ID: return "your user id";
        case VEIL_PF_TS: return "the time of the event";
        case VEIL_PF_TC_STRING: return "the consent string (TCF) sent with the event";
        case VEIL_PF_DEVICE: return "the device type";
        case VEIL_PF_IP: return "your IP address";
        case VEIL_PF_USER_AGENT: return "your browser's user agent";
        case VEIL_PF_LAT: return "your location";
        case VEIL_PF_LON: return "your location";
        case VEIL_PF_GEOHASH: return "a location cell sent with the event";
        case VEIL_PF_COUNTRY: return "your country";
        case VEIL_PF_SESSION_ID: return "your session id";
        case VEIL_PF_TIMEZONE: return "your time zone";
        default: return "the attributes sent with the event";
        }
}

static void notice_rule(const struct veil_policy *pol, veil_notice_t *n,
                        enum veil_policy_field f) {
        const struct veil_policy_rule *r = &pol->rule[f];
        const char *what = field_words(f);
        char cap[96];
        snprintf(cap, sizeof(cap), "%s", what);
        cap[0] = (char)(cap[0] >= 'a' && cap[0] <= 'z' ? cap[0] - 32 : cap[0]);
        switch (r->kind) {
        case VEIL_POLICY_KEEP:
                /* The event id and time are not personal on their own:
                 * keeping them is no news to the reader. */
                if ((f == VEIL_PF_EVENT_ID || f == VEIL_PF_TS) && !r->reason)
                        break;
                veil_notice_add(n, VEIL_NOTICE_PROTECTION, "%s is kept as "
                                "sent%s%s.", cap, r->reason ? ": " : "",
                                r->reason ? r->reason : "");
                /* A kept location is precise: policy.c allows it only
                 * with require_special_feature_1, and apply_geo coarsens
                 * it for everyone else. */
                if (f == VEIL_PF_LAT || f == VEIL_PF_GEOHASH)
                        veil_notice_add(
                                n, VEIL_NOTICE_CONSENT,
                                "%s as sent is precise geolocation: it is "
                                "kept only if your consent includes precise "
                                "geolocation (TCF special feature 1); "
                                "otherwise it is reduced to a map cell of "
                                "%s.",
                                cap,
                                veil_policy_geohash_size(
                                        VEIL_POLICY_COARSE_GEOHASH));
                break;
        case VEIL_POLICY_DROP:
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "%s is discarded before any further "
                                "processing.", cap);
                break;
        case VEIL_POLICY_PSEUDONYM:
                /* No promise that the code cannot be turned back: it is
                 * deterministic, so it keeps the value's uniqueness (a
                 * user agent's code is still a fingerprint), and a value
                 * among few (a country) is read off its code by frequency
                 * or from one event whose value is known. */
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "%s is replaced by a pseudonym, a code "
                                "computed from it with a secret key "
                                "(HMAC-SHA-256): %s itself is not passed "
                                "on, but the same value always gives the "
                                "same code, so the code links the events "
                                "that share it, and whoever learns which "
                                "value a code stands for (from how often it "
                                "occurs, or from one event whose value they "
                                "know) recognizes it wherever it appears. "
                                "When the key is replaced, old and new "
                                "codes can no longer be linked.%s%s%s",
                                cap, what, r->reason ? " Why a pseudonym: " : "",
                                r->reason ? r->reason : "",
                                r->reason ? "." : "");
                break;
        case VEIL_POLICY_TRUNCATE_IP:
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "%s is cut to its network: the first %d "
                                "bits of an IPv4 address and the first %d "
                                "of an IPv6 address are kept, which names "
                                "a network shared by many households or "
                                "businesses, not yours.",
                                cap, r->v4_prefix, r->v6_prefix);
                break;
        case VEIL_POLICY_REDUCE_UA:
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "%s is reduced to the browser family and "
                                "major version, the operating system family "
                                "and the device class (desktop, mobile, "
                                "tablet); the full string is discarded.",
                                cap);
                break;
        case VEIL_POLICY_DEVICE_CLASS:
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "%s is reduced to one of desktop, mobile, "
                                "tablet, tv or other.", cap);
                break;
        case VEIL_POLICY_BUCKET_TIME:
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "%s is rounded down to steps of %s.", cap,
                                strchr(r->text, ':') + 1);
                break;
        case VEIL_POLICY_GEOHASH:
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "%s, when shared, is reduced to a map cell "
                                "of %s (a geohash of %d characters); the "
                                "exact coordinates are discarded.",
                                cap, veil_policy_geohash_size(r->precision),
                                r->precision);
                if (pol->special_feature_1 &&
                    r->precision > VEIL_POLICY_COARSE_GEOHASH)
                        veil_notice_add(
                                n, VEIL_NOTICE_CONSENT,
                                "A cell that small is precise geolocation: it "
                                "is used only if your consent includes "
                                "precise geolocation (TCF special feature "
                                "1); otherwise the cell is %s.",
                                veil_policy_geohash_size(
                                        VEIL_POLICY_COARSE_GEOHASH));
                break;
        }
}

static void notice(const veil_params_t *p, veil_notice_t *n) {
        struct veil_policy *pol = malloc(sizeof(*pol));
        if (!pol)
                return;
        veil_policy_parse(pol, p);
        for (int f = 0; f < VEIL_PF_ATTRS; f++) {
                /* lon speaks through lat; a geohash that follows lat too. */
                if (f == VEIL_PF_LON ||
                    (f == VEIL_PF_GEOHASH &&
                     !veil_params_str(p, "context.geohash")))
                        continue;
                if (pol->err[f][0])
                        continue; /* such a pipeline does not start */
                notice_rule(pol, n, (enum veil_policy_field)f);
        }
        if (!pol->n_attrs) {
                veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                "Other attributes sent with the event are "
                                "discarded.");
        } else {
                /* Every key, however many: a list cut short would say
                 * that the rest are discarded. */
                char *keys = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&keys, &len);
                for (size_t i = 0; f && i < pol->n_attrs; i++)
                        fprintf(f, "%s%s", i ? ", " : "", pol->attrs[i]);
                if (f && fclose(f) == 0 && keys)
                        veil_notice_add(n, VEIL_NOTICE_PROTECTION,
                                        "Of the attributes sent with the "
                                        "event, only %s %s kept; the others "
                                        "are discarded.",
                                        keys,
                                        pol->n_attrs > 1 ? "are" : "is");
                free(keys);
        }
        free(pol);
}

/* ---- commands ---- */

static int cmd_keygen(int argc, char **argv) {
        char err[512];
        if (argc != 2 || argv[1][0] == '-') {
                fprintf(stderr,
                        "usage: veil pseudonymize keygen FILE\n"
                        "Writes a new random key (32 bytes) to FILE with "
                        "mode 0600; never overwrites.\n");
                return 2;
        }
        int rc = veil_keygen(argv[1], err, sizeof(err));
        if (rc) {
                fprintf(stderr, "veil pseudonymize keygen: %s\n", err);
                /* An existing path is the caller's to change (2); a disk
                 * that fails is not (1). */
                return rc == -VEIL_EINVAL ? 2 : 1;
        }
        /* The key itself is never printed: only where it is. The snippet
         * gives the absolute path: a relative one would be read relative
         * to the pipeline file, not to where keygen ran. */
        char *abs = realpath(argv[1], NULL);
        const char *path = abs ? abs : argv[1];
        /* Quoted when a plain YAML scalar could not hold it (a ':', a ','
         * or a brace in a flow mapping, spaces). */
        int plain = strspn(path, "abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                 "/._-+@") == strlen(path);
        printf("wrote a new key to %s (mode 0600). Use it with\n"
               "  keys: {active: ID, files: {ID: ",
               argv[1]);
        if (plain) {
                fputs(path, stdout);
        } else {
                putchar('"');
                for (const char *c = path; *c; c++) {
                        if (*c == '"' || *c == '\\')
                                putchar('\\');
                        if (*c == '$') /* ${VAR} is substituted in quotes
                                        * too: $$ is a '$' */
                                putchar('$');
                        putchar(*c);
                }
                putchar('"');
        }
        printf("}}\n"
               "choosing a new ID (a-z, 0-9, '_', '-') for every key (the "
               "path is absolute: a relative one is read relative to the "
               "pipeline file).\n");
        free(abs);
        return 0;
}

static const struct veil_command commands[] = {
        {"keygen", "keygen FILE",
         "Writes a new random key for the host keyring to FILE (mode 0600, "
         "never overwriting). Add it to the pipeline's keys: files: under a "
         "new key id and make that id active to rotate: pseudonyms made "
         "under the new key cannot be linked to the old ones.",
         cmd_keygen},
        {NULL, NULL, NULL, NULL}};

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "pseudonymize",
        .version = "1.0.0",
        .description = "Replaces identifiers by keyed pseudonyms (HMAC-SHA-256 "
                       "with key ids) and generalizes quasi-identifiers (IP "
                       "prefix, geohash, user agent, time buckets); one "
                       "policy per field path.",
        .params = veil_policy_params,
        .init = init,
        .process = process,
        .destroy = destroy,
        .lint = lint,
        .notice = notice,
        .commands = commands,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

#include "reload.h"

#include <stdio.h>
#include <string.h>

#include "http.h"
#include "keys.h"

static int differs(const char *a, const char *b) {
        return strcmp(a ? a : "", b ? b : "") != 0;
}

static int refuse(const struct veil_config *next, char *errstr,
                  size_t errstr_size, const char *what, const char *from,
                  const char *to) {
        snprintf(errstr, errstr_size,
                 "%s: %s changed from '%s' to '%s'; a running veil keeps its "
                 "Kafka clients and HTTP server, so this needs a restart "
                 "(nothing was changed)",
                 next->file, what, from, to);
        return -VEIL_EINVAL;
}

static const struct veil_kvpair *setting(const struct veil_config *c,
                                        const char *key) {
        for (size_t i = 0; i < c->kafka.n_settings; i++)
                if (!strcmp(c->kafka.settings[i].key, key))
                        return &c->kafka.settings[i];
        return NULL;
}

/* The key ids a `keys:` section names ("eph" for an ephemeral key, none
 * without a section), in its files map. */
static const struct veil_node *key_files(const struct veil_config *c) {
        const struct veil_node *f =
                c->keys ? veil_config_get(c->keys, "files") : NULL;
        return f && f->kind == VEIL_NODE_MAP ? f : NULL;
}

static int has_key(const struct veil_node *files, const char *id) {
        for (size_t i = 0; files && i < files->n; i++)
                if (!strcmp(files->keys[i]->scalar, id))
                        return 1;
        return 0;
}

/* The stages go on with their state across a reload, held under the
 * running keyring's pseudonyms: a key they may hold data under must stay,
 * or erase and export could no longer compute the pseudonyms to find it
 * (a withdrawal would erase nothing). Adding keys and changing the active
 * one are fine. */
static int keys_check(const struct veil_config *cur,
                      const struct veil_config *next, char *errstr,
                      size_t errstr_size) {
        int ce = cur->keys && veil_keys_ephemeral(cur),
            ne = next->keys && veil_keys_ephemeral(next);
        const struct veil_node *cf = key_files(cur), *nf = key_files(next);
        const char *why = NULL, *id = "";
        if (!!cur->keys != !!next->keys)
                why = cur->keys ? "the keys: section was removed"
                                : "a keys: section was added";
        else if (ce != ne)
                why = ce ? "the ephemeral key was replaced by key files"
                         : "the key files were replaced by an ephemeral key";
        for (size_t i = 0; !why && cf && i < cf->n; i++)
                if (!has_key(nf, cf->keys[i]->scalar)) {
                        why = "a key was removed from keys.files: ";
                        id = cf->keys[i]->scalar;
                }
        if (!why)
                return 0;
        snprintf(errstr, errstr_size,
                 "%s: %s%s; the stages' state, which a reload keeps, is held "
                 "under the running keys, and erase and export could no "
                 "longer find it: restart instead (nothing was changed)",
                 next->file, why, id);
        return -VEIL_EINVAL;
}

int veil_reload_check(const struct veil_config *cur,
                      const struct veil_config *next, char *errstr,
                      size_t errstr_size) {
        if (differs(cur->kafka.bootstrap, next->kafka.bootstrap))
                return refuse(next, errstr, errstr_size, "kafka.bootstrap",
                              cur->kafka.bootstrap, next->kafka.bootstrap);
        if (differs(cur->kafka.group, next->kafka.group))
                return refuse(next, errstr, errstr_size, "kafka.group",
                              cur->kafka.group, next->kafka.group);
        if (cur->kafka.guarantee != next->kafka.guarantee) {
                static const char *const g[] = {"at-least-once",
                                                "exactly-once"};
                return refuse(next, errstr, errstr_size, "kafka.guarantee",
                              g[cur->kafka.guarantee],
                              g[next->kafka.guarantee]);
        }
        if (differs(cur->input.topic, next->input.topic))
                return refuse(next, errstr, errstr_size, "input.topic",
                              cur->input.topic, next->input.topic);
        /* Settings in both directions: added, removed or changed. */
        const struct veil_config *pair[2][2] = {{cur, next}, {next, cur}};
        for (int d = 0; d < 2; d++) {
                const struct veil_config *a = pair[d][0], *b = pair[d][1];
                for (size_t i = 0; i < a->kafka.n_settings; i++) {
                        const struct veil_kvpair *kv = &a->kafka.settings[i];
                        const struct veil_kvpair *o = setting(b, kv->key);
                        if (o && !strcmp(o->value, kv->value))
                                continue;
                        /* Never their values: which settings are
                         * credentials is an open list (sasl.username is
                         * an API key on some clouds, a PEM is a key). */
                        const struct veil_kvpair *at = d ? kv : o;
                        char where[64] = "";
                        if (at)
                                snprintf(where, sizeof(where), ":%d:%d",
                                         at->line, at->col);
                        snprintf(errstr, errstr_size,
                                 "%s%s: kafka.settings.%s %s (values not "
                                 "shown); a running veil keeps its Kafka "
                                 "clients, so this needs a restart (nothing "
                                 "was changed)",
                                 next->file, where, kv->key,
                                 !o ? (d ? "was added" : "was removed")
                                    : "changed");
                        return -VEIL_EINVAL;
                }
        }
        if (keys_check(cur, next, errstr, errstr_size))
                return -VEIL_EINVAL;
        struct veil_http_config ha, hb;
        char e[512];
        if (veil_http_config_parse(cur, &ha, e, sizeof(e)) ||
            veil_http_config_parse(next, &hb, errstr, errstr_size))
                return -VEIL_EINVAL;
        if (!veil_http_config_same(&ha, &hb)) {
                char from[300], to[300];
                snprintf(from, sizeof(from),
                         "%s, reload %s, liveness_timeout_ms %d",
                         ha.enabled ? ha.listen : "off",
                         ha.reload ? "on" : "off", ha.liveness_timeout_ms);
                snprintf(to, sizeof(to),
                         "%s, reload %s, liveness_timeout_ms %d",
                         hb.enabled ? hb.listen : "off",
                         hb.reload ? "on" : "off", hb.liveness_timeout_ms);
                return refuse(next, errstr, errstr_size, "http", from, to);
        }
        return 0;
}

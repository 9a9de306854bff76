#include "reload.h"

#include <stdio.h>
#include <string.h>

#include "http.h"

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

static const char *setting(const struct veil_config *c, const char *key) {
        for (size_t i = 0; i < c->kafka.n_settings; i++)
                if (!strcmp(c->kafka.settings[i].key, key))
                        return c->kafka.settings[i].value;
        return NULL;
}

/* librdkafka properties whose values are credentials (sasl.password,
 * ssl.key.password, sasl.oauthbearer.client.secret, a private key in PEM…):
 * a refusal says they changed, never what they were or became. */
static int secret(const char *key) {
        return strstr(key, "password") || strstr(key, "secret") ||
               !strcmp(key, "ssl.key.pem") ||
               !strcmp(key, "sasl.oauthbearer.config");
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
                        const char *other = setting(b, kv->key);
                        if (other && !strcmp(other, kv->value))
                                continue;
                        char what[300];
                        snprintf(what, sizeof(what), "kafka.settings.%s",
                                 kv->key);
                        const char *from = d ? other : kv->value;
                        const char *to = d ? kv->value : other;
                        if (secret(kv->key)) {
                                from = from ? "(hidden)" : NULL;
                                to = to ? "(hidden)" : NULL;
                        }
                        return refuse(next, errstr, errstr_size, what,
                                      from ? from : "(unset)",
                                      to ? to : "(unset)");
                }
        }
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

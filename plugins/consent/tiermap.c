/*
 * tiermap.c — TCF purposes to our purposes (rules in tiermap.h).
 */
#include "tiermap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <veil/veil.h>

/* "11|1" -> mask; -1 when malformed. */
static long parse_alternatives(const char *s) {
        uint32_t mask = 0;
        const char *p = s;
        if (!*p)
                return -1;
        for (;;) {
                char *end;
                if (*p < '0' || *p > '9')
                        return -1;
                long id = strtol(p, &end, 10);
                if (end == p || id < 1 || id > VEIL_TCF_MAX_PURPOSE)
                        return -1;
                mask |= 1u << (id - 1);
                p = end;
                while (*p == ' ')
                        p++;
                if (!*p)
                        return mask;
                if (*p != '|')
                        return -1;
                p++;
                while (*p == ' ')
                        p++;
        }
}

int veil_tiermap_add_group(struct veil_tiermap *m, unsigned purpose,
                           const char *item, char *errstr,
                           size_t errstr_size) {
        long mask = parse_alternatives(item ? item : "");
        if (mask < 0) {
                snprintf(errstr, errstr_size,
                         "'%s' is not a TCF purpose id 1..24 or a list of "
                         "alternatives such as \"11|1\"",
                         item ? item : "");
                return -VEIL_EINVAL;
        }
        if (purpose >= VEIL_TIERMAP_PURPOSES ||
            m->n_groups[purpose] == VEIL_TIERMAP_MAX_GROUPS) {
                snprintf(errstr, errstr_size,
                         "at most %d items per purpose mapping",
                         VEIL_TIERMAP_MAX_GROUPS);
                return -VEIL_EINVAL;
        }
        m->groups[purpose][m->n_groups[purpose]++] = (uint32_t)mask;
        return 0;
}

int veil_tiermap_allow_li(struct veil_tiermap *m, const char *item,
                          char *errstr, size_t errstr_size) {
        char *end;
        long id = item ? strtol(item, &end, 10) : 0;
        if (!item || end == item || *end || id < 1 ||
            id > VEIL_TCF_MAX_PURPOSE) {
                snprintf(errstr, errstr_size,
                         "'%s' is not a TCF purpose id 1..24",
                         item ? item : "");
                return -VEIL_EINVAL;
        }
        if (VEIL_TIERMAP_NO_LI & (1u << (id - 1))) {
                snprintf(errstr, errstr_size,
                         "TCF 2.2 allows no legitimate interest for purpose "
                         "%ld (nor for 1, 3, 4, 5, 6): only consent can "
                         "cover it",
                         id);
                return -VEIL_EINVAL;
        }
        m->li_ok |= 1u << (id - 1);
        return 0;
}

uint32_t veil_tiermap_tcf_allowed(const struct veil_tiermap *m,
                                  const struct veil_tcf *t) {
        if (!t->valid)
                return 0;
        if (m->vendor_id == 0) {
                /* We are the publisher: the core segment's purposes are
                 * what the person allowed vendors (each then needs its
                 * own vendor consent), not the site; TCF's signal for a
                 * publisher's own processing is the publisher TC segment.
                 * Without one, the string says nothing for us. Publisher
                 * restrictions are the publisher's terms for vendors, and
                 * do not apply to it. */
                if (!t->has_publisher_tc)
                        return 0;
                return t->pub_purpose_consents |
                       (t->pub_purpose_li & m->li_ok & ~VEIL_TIERMAP_NO_LI);
        }
        uint32_t consent = t->purpose_consents;
        uint32_t li = t->purpose_li & m->li_ok & ~VEIL_TIERMAP_NO_LI;
        if (!veil_tcf_vendor_consent(t, m->vendor_id))
                consent = 0;
        if (!veil_tcf_vendor_li(t, m->vendor_id))
                li = 0;
        if (m->restrictions && t->num_restrictions) {
                for (int p = 1; p <= VEIL_TCF_MAX_PURPOSE; p++) {
                        unsigned r = veil_tcf_restrictions(t, p, m->vendor_id);
                        uint32_t bit = 1u << (p - 1);
                        if (r & (1u << VEIL_TCF_NOT_ALLOWED))
                                consent &= ~bit, li &= ~bit;
                        if (r & (1u << VEIL_TCF_REQUIRE_CONSENT))
                                li &= ~bit;
                        if (r & (1u << VEIL_TCF_REQUIRE_LI))
                                consent &= ~bit;
                }
        }
        return consent | li;
}

uint8_t veil_tiermap_eval(const struct veil_tiermap *m,
                          const struct veil_tcf *t) {
        uint32_t allowed = veil_tiermap_tcf_allowed(m, t);
        uint8_t out = 0;
        if (!t->valid)
                return 0;
        for (unsigned p = 0; p < VEIL_TIERMAP_PURPOSES; p++) {
                /* An empty mapping grants nothing: no TCF signal for it. */
                int ok = m->n_groups[p] > 0;
                for (unsigned g = 0; g < m->n_groups[p] && ok; g++)
                        ok = (m->groups[p][g] & allowed) != 0;
                if (ok)
                        out |= (uint8_t)(1u << p);
        }
        return out;
}

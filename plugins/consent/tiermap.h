/*
 * tiermap.h — from a decoded TC string to our purposes.
 *
 * Each of our purposes (personalization, contextual, training, analytics)
 * is a conjunction of groups, each group a disjunction of TCF purposes:
 * the YAML list [5, 6] means "5 and 6", ["11|1"] means "11 or 1".
 *
 * With vendor_id set we are that IAB vendor, and a TCF purpose counts as
 * allowed for us when
 *   - it has purpose consent and our vendor has vendor consent, or
 *   - the operator accepts legitimate interest for it, TCF 2.2 allows
 *     legitimate interest for it at all (never for 1, 3, 4, 5, 6, whatever
 *     the string's LI bit says), and the string signals it for the purpose
 *     and for our vendor;
 * and, with publisher restrictions on, a restriction naming our vendor for
 * that purpose can only take away: "not allowed" removes the purpose,
 * "require consent" removes the LI path, "require legitimate interest"
 * removes the consent path (several types at once: all apply).
 *
 * With vendor_id 0 we are the publisher, processing for ourselves, and
 * only the publisher TC segment speaks for that (the core segment's
 * purposes are the person's choices for vendors, who each also need vendor
 * consent): a purpose counts when its PubPurposesConsent bit is set, or
 * under the same legitimate-interest rules, its PubPurposesLITransparency
 * bit. A string without a publisher TC segment allows nothing.
 */
#ifndef VEIL_CONSENT_TIERMAP_H
#define VEIL_CONSENT_TIERMAP_H

#include <stddef.h>
#include <stdint.h>

#include "tcf.h"

#define VEIL_TIERMAP_PURPOSES 4 /**< personalization, contextual, training,
                                     analytics: bit i = VEIL_PURPOSE_* */
#define VEIL_TIERMAP_MAX_GROUPS 16

/** TCF purposes TCF 2.2 allows no legitimate interest for (bit p-1). */
#define VEIL_TIERMAP_NO_LI ((1u << 0) | (1u << 2) | (1u << 3) | (1u << 4) | \
                            (1u << 5))

struct veil_tiermap {
        /* groups[p][g]: TCF purposes (bit i-1 = purpose i), any suffices */
        uint32_t groups[VEIL_TIERMAP_PURPOSES][VEIL_TIERMAP_MAX_GROUPS];
        unsigned n_groups[VEIL_TIERMAP_PURPOSES];
        uint32_t li_ok;    /**< purposes legitimate interest may cover */
        int vendor_id;     /**< 0: we are the publisher (its TC segment) */
        int restrictions;  /**< apply publisher restrictions (needs vendor) */
};

/** Adds one list item ("5", "11|1") to our purpose `purpose` (0..3).
 *  -VEIL_EINVAL with a message when it is not a '|'-separated list of TCF
 *  purpose ids 1..24 or there are too many groups. */
int veil_tiermap_add_group(struct veil_tiermap *m, unsigned purpose,
                           const char *item, char *errstr,
                           size_t errstr_size);
/** Accepts legitimate interest for a TCF purpose; -VEIL_EINVAL (with the
 *  reason) for ids outside 1..24 and for 1, 3, 4, 5, 6. */
int veil_tiermap_allow_li(struct veil_tiermap *m, const char *item,
                          char *errstr, size_t errstr_size);

/** TCF purposes (bit p-1) the decoded string allows us, after vendor and
 *  restriction checks. 0 for an undecoded string. */
uint32_t veil_tiermap_tcf_allowed(const struct veil_tiermap *m,
                                  const struct veil_tcf *t);
/** Our purposes (VEIL_PURPOSE_* bits) the string grants. */
uint8_t veil_tiermap_eval(const struct veil_tiermap *m,
                          const struct veil_tcf *t);

#endif

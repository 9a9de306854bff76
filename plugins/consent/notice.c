/*
 * notice.c — what the consent stage tells people, in `veil notice`, written
 * from the stage's actual parameters.
 */
#include <stdio.h>
#include <string.h>

#include "consent.h"

/* "purposes 5 and 6", "purpose 11 or 1", "purposes 5 and (11 or 1)". */
static const char *tcf_words(const struct veil_tiermap *m, unsigned p,
                             char *buf, size_t size) {
        size_t off = 0;
        unsigned n = m->n_groups[p], ids = 0;
        buf[0] = '\0';
        if (!n) {
                snprintf(buf, size, "no TCF purpose (a TC string never "
                                    "grants it)");
                return buf;
        }
        for (unsigned g = 0; g < n; g++)
                ids += (unsigned)__builtin_popcount(m->groups[p][g]);
        off += (size_t)snprintf(buf, size, "%s ",
                                ids > 1 ? "TCF purposes" : "TCF purpose");
        for (unsigned g = 0; g < n && off < size; g++) {
                uint32_t mask = m->groups[p][g];
                int alts = __builtin_popcount(mask), k = 0;
                if (g)
                        off += (size_t)snprintf(buf + off, size - off, "%s",
                                                g + 1 == n ? " and " : ", ");
                if (alts > 1 && n > 1 && off < size)
                        off += (size_t)snprintf(buf + off, size - off, "(");
                for (int i = 0; i < VEIL_TCF_MAX_PURPOSE && off < size; i++)
                        if (mask & (1u << i))
                                off += (size_t)snprintf(buf + off, size - off,
                                                        "%s%d",
                                                        k++ ? " or " : "",
                                                        i + 1);
                if (alts > 1 && n > 1 && off < size)
                        off += (size_t)snprintf(buf + off, size - off, ")");
        }
        return buf;
}

/* "personalization and training", "a, b and c". */
static const char *and_list(uint8_t mask, char *buf, size_t size) {
        static const char *const names[] = {"personalization",
                                            "contextual recommendations",
                                            "contributing to the shared model",
                                            "analytics"};
        int total = __builtin_popcount(mask), k = 0;
        size_t off = 0;
        buf[0] = '\0';
        for (unsigned p = 0; p < 4 && off < size; p++)
                if (mask & (1u << p)) {
                        k++;
                        off += (size_t)snprintf(buf + off, size - off, "%s%s",
                                                k == 1       ? ""
                                                : k == total ? " and "
                                                             : ", ",
                                                names[p]);
                }
        return buf;
}

void veil_consent_notice(const veil_params_t *params, veil_notice_t *n) {
        struct veil_consent_cfg c;
        char err[256], a[160], b[160], t[160], an[160], li[160] = "";
        if (veil_consent_cfg_load(&c, params, err, sizeof(err))) {
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "The consent stage is misconfigured (%s); "
                                "it will not start, so nothing is processed.",
                                err);
                return;
        }
        veil_notice_add(n, VEIL_NOTICE_COLLECTED,
                        "For each interaction we read your user id, the IAB "
                        "TCF consent string and the Global Privacy Control "
                        "signal sent with it, to look up what you allowed.");
        veil_notice_add(n, VEIL_NOTICE_CONSENT,
                        "Before any of your personal data is used, every "
                        "interaction gets a tier from your consent: "
                        "personalized (a profile and history kept under a "
                        "pseudonym), contextual (only this interaction's "
                        "context is used, and nothing is kept) or none (no "
                        "personal processing: %s). Contributing to the "
                        "shared model is a separate choice.",
                        c.serve_none ? "you are shown the same popular "
                                       "items as everyone"
                                     : "the interaction is not processed");
        veil_notice_add(n, VEIL_NOTICE_CONSENT,
                        "Your choices come from the consent records our "
                        "consent dialog, apps and support desk send. Until "
                        "all of them have been read, nothing is processed. "
                        "%s",
                        c.require_ledger
                                ? "Without a consent record from you, "
                                  "nothing personal happens."
                                : "Without a consent record, the consent "
                                  "string sent with the interaction "
                                  "decides alone.");
        veil_notice_add(n, VEIL_NOTICE_CONSENT,
                        "From an IAB TCF consent string: personalization "
                        "needs %s; contextual recommendations need %s; "
                        "contributing to the shared model needs %s; "
                        "analytics needs %s. When an interaction carries "
                        "its own consent string, the stricter of it and "
                        "your recorded choices applies.",
                        tcf_words(&c.map, 0, a, sizeof(a)),
                        tcf_words(&c.map, 1, b, sizeof(b)),
                        tcf_words(&c.map, 2, t, sizeof(t)),
                        tcf_words(&c.map, 3, an, sizeof(an)));
        /* The rules of veil_consent_tc_decode and veil_consent_lapse, in
         * words: people should know that a string from an older TCF, or
         * an old one, no longer speaks for them, also once recorded, and
         * what then happens to what is held. */
        if (c.tc_max_age_days)
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "A consent string counts only when it was "
                                "made under TCF 2.2 or later (TCF policy "
                                "version %d or higher), and only for %lld "
                                "days after the day you last made or "
                                "confirmed your choices in it, whether it "
                                "comes with an interaction or with your "
                                "recorded choices. After that it allows "
                                "nothing, and nothing personal happens until "
                                "you confirm your choices again; what the "
                                "stages hold about you is deleted, as when "
                                "you withdraw, when you next interact with "
                                "us (we keep no id to find you by before), "
                                "or else when each stage's own retention, "
                                "stated here, ends.",
                                VEIL_CONSENT_TCF_MIN_POLICY,
                                (long long)c.tc_max_age_days);
        else
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "A consent string counts only when it was "
                                "made under TCF 2.2 or later (TCF policy "
                                "version %d or higher); otherwise it allows "
                                "nothing.",
                                VEIL_CONSENT_TCF_MIN_POLICY);
        if (c.map.li_ok) {
                size_t off = 0;
                for (int i = 0; i < VEIL_TCF_MAX_PURPOSE; i++)
                        if ((c.map.li_ok & (1u << i)) && off < sizeof(li))
                                off += (size_t)snprintf(li + off,
                                                        sizeof(li) - off,
                                                        "%s%d",
                                                        off ? ", " : "",
                                                        i + 1);
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "For TCF purpose(s) %s we accept legitimate "
                                "interest instead of consent; you can object "
                                "to it in the consent dialog, and an "
                                "objection counts as a refusal.",
                                li);
        } else {
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "Legitimate interest is never accepted "
                                "instead of consent.");
        }
        /* tiermap.c: for a purpose taken on legitimate interest our
         * vendor's LI counts without its consent (the contextual tier, by
         * default). */
        if (c.map.vendor_id)
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "A consent string counts only when it also "
                                "gives our vendor (IAB id %d) consent%s%s%s%s.",
                                c.map.vendor_id,
                                *li ? " or, for TCF purpose(s) " : "", li,
                                *li ? ", legitimate interest" : "",
                                c.map.restrictions
                                        ? ", and the site's restrictions on "
                                          "our vendor are applied"
                                        : "");
        else
                /* tiermap.h: without a vendor id we are the publisher. */
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "A consent string counts only through the "
                                "choices you made for this site itself (the "
                                "publisher's purposes in TCF), not those for "
                                "advertising vendors; a consent string "
                                "without them allows nothing.");
        if (c.gpc_withdraws)
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "A Global Privacy Control signal recorded "
                                "with your choices withdraws %s; sent with "
                                "an interaction, it does so for that "
                                "interaction.",
                                and_list(c.gpc_withdraws, a, sizeof(a)));
        else
                veil_notice_add(n, VEIL_NOTICE_CONSENT,
                                "The Global Privacy Control signal is not "
                                "applied by this configuration.");
        veil_notice_add(n, VEIL_NOTICE_CONSENT,
                        "You can withdraw at any time, as easily as you "
                        "gave consent. When you withdraw personalization or "
                        "everything, every stage deletes what it holds "
                        "about you before the next batch of interactions is "
                        "processed.");
        veil_notice_add(n, VEIL_NOTICE_CONSENT,
                        "You can ask what we hold about you: every stage "
                        "reports it, and you receive it as one record.");
        veil_notice_add(n, VEIL_NOTICE_RETENTION,
                        "The consent ledger keeps, for each person, a keyed "
                        "hash of the user id (never the id itself), the "
                        "purposes allowed, whether a consent string and a "
                        "GPC signal came with them (and the day the consent "
                        "string was last updated, to know when it stops "
                        "counting), where they came from and when. It lives in memory and is rebuilt from the "
                        "consent records at each start. When you refuse "
                        "everything your entry keeps that refusal, so that "
                        "no older consent can take its place; it is deleted "
                        "when your consent record is deleted.");
        veil_notice_add(n, VEIL_NOTICE_RETENTION,
                        "Every change of your consent is written to an "
                        "audit log that names you by a pseudonym, never by "
                        "your id.");
}

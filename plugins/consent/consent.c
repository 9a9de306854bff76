/*
 * consent — every event gets a tier before any personal data is used.
 *
 * The ledger (ledger.h) is built from the consent topic, a side input read
 * from the beginning; the host consumes no event before it has caught up
 * (default deny). Per event: the person's ledger entry, narrowed by the
 * event's own TC string and GPC signal (the stricter wins), gives the tier
 * (personalized, contextual, none), the training flag and the TCF special
 * features. Records that withdraw ask the host to erase the person in
 * every stage before the next batch (record.c), and so does the lapse of a
 * recorded TC string, which each event judges at its batch's clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <veil/veil.h>

#include "consent.h"
#include "decode_cmd.h"

static const struct veil_param_def params[] = {
        {"personalization", VEIL_PARAM_LIST, "[5, 6]", 0,
         "TCF purposes a TC string must allow for the personalized tier: "
         "every item, an item being one purpose or alternatives \"a|b\""},
        {"contextual", VEIL_PARAM_LIST, "[11]", 0,
         "TCF purposes a TC string must allow for the contextual tier"},
        {"training", VEIL_PARAM_LIST, "[10]", 0,
         "TCF purposes a TC string must allow for the training flag"},
        {"analytics", VEIL_PARAM_LIST, "[8]", 0,
         "TCF purposes a TC string must allow for analytics"},
        {"legitimate_interest", VEIL_PARAM_LIST, "[11]", 0,
         "TCF purposes for which legitimate interest counts instead of "
         "consent (never 1, 3, 4, 5, 6: TCF 2.2 forbids it)"},
        {"vendor_id", VEIL_PARAM_INT, "0", 0,
         "our IAB vendor id: a TC string grants through its core purposes "
         "and its vendor consent (or LI) for us; 0: we are the publisher, "
         "and a TC string grants through its publisher TC segment alone "
         "(PubPurposesConsent, PubPurposesLITransparency), nothing without "
         "one"},
        {"publisher_restrictions", VEIL_PARAM_BOOL, "true", 0,
         "apply the publisher restrictions that name vendor_id (none apply "
         "to the publisher itself, vendor_id 0)"},
        {"gpc_withdraws", VEIL_PARAM_LIST, "[personalization, training]", 0,
         "purposes a GPC signal (event or ledger) withdraws: "
         "personalization, contextual, training, analytics"},
        {"on_none", VEIL_PARAM_STRING, "drop", 0,
         "events of tier none: drop (counted by reason) or serve (passed on "
         "for non-personal items)"},
        {"require_ledger", VEIL_PARAM_BOOL, "true", 0,
         "a person needs a consent record; false: for people without one, "
         "the event's TC string alone decides"},
        {"expected_users", VEIL_PARAM_INT, "100000", 0,
         "people the ledger is sized for at start (it grows by itself)"},
        {"tc_max_age_days", VEIL_PARAM_INT, "395", 0,
         "a TC string whose lastUpdated (its UTC day) is more than this many "
         "days before its use allows nothing: an event's at its batch's "
         "clock; a ledger record's at the record's ts and again at every "
         "later batch, its lapse audited (withdrawn, source expired) and "
         "erased as a withdrawal; 395 is 13 months, the longest interval "
         "between reminders of TCF policies before 2.2 (2.2 leaves it to "
         "each regulator: 6 to 24 months); 0: no limit"},
        {NULL, 0, NULL, 0, NULL}};

static const char *const outputs[] = {"audit", "access", NULL};
static const char *const side_inputs[] = {"consent", NULL};

const char *const veil_consent_reasons[VEIL_CONSENT_N_REASONS] = {
        "consent: no record",
        "consent: not granted",
        "consent: GPC",
        "consent: refused by the event's TC string",
        "consent: invalid TC string on the event",
        "consent: no user id",
};

static const char *const purpose_param[VEIL_TIERMAP_PURPOSES] = {
        "personalization", "contextual", "training", "analytics"};

const char *veil_consent_purpose_names(uint8_t mask, char *buf,
                                       size_t size) {
        size_t off = 0;
        buf[0] = '\0';
        for (unsigned p = 0; p < VEIL_TIERMAP_PURPOSES; p++)
                if ((mask & (1u << p)) && off < size)
                        off += (size_t)snprintf(buf + off, size - off, "%s%s",
                                                off ? ", " : "",
                                                purpose_param[p]);
        if (!off)
                snprintf(buf, size, "nothing");
        return buf;
}

static int purpose_bit(const char *name, uint8_t *bit) {
        for (unsigned p = 0; p < VEIL_TIERMAP_PURPOSES; p++) {
                if (!strcmp(name, purpose_param[p])) {
                        *bit = (uint8_t)(1u << p);
                        return 0;
                }
        }
        return -VEIL_EINVAL;
}

int veil_consent_cfg_load(struct veil_consent_cfg *c, const veil_params_t *p,
                          char *errstr, size_t errstr_size) {
        char e[256];
        memset(c, 0, sizeof(*c));
        for (unsigned k = 0; k < VEIL_TIERMAP_PURPOSES; k++) {
                const char *name = purpose_param[k];
                for (size_t i = 0; i < veil_params_list_size(p, name); i++) {
                        if (veil_tiermap_add_group(
                                    &c->map, k, veil_params_list_at(p, name, i),
                                    e, sizeof(e))) {
                                snprintf(errstr, errstr_size, "%s: %s: %s",
                                         veil_params_where(p, name), name, e);
                                return -VEIL_EINVAL;
                        }
                }
        }
        for (size_t i = 0; i < veil_params_list_size(p, "legitimate_interest");
             i++) {
                if (veil_tiermap_allow_li(
                            &c->map,
                            veil_params_list_at(p, "legitimate_interest", i),
                            e, sizeof(e))) {
                        snprintf(errstr, errstr_size,
                                 "%s: legitimate_interest: %s",
                                 veil_params_where(p, "legitimate_interest"),
                                 e);
                        return -VEIL_EINVAL;
                }
        }
        int64_t vendor = veil_params_int(p, "vendor_id", 0);
        if (vendor < 0 || vendor > 65535) {
                snprintf(errstr, errstr_size,
                         "%s: vendor_id must be an IAB vendor id 1..65535, or "
                         "0 when we are the publisher; got %lld",
                         veil_params_where(p, "vendor_id"), (long long)vendor);
                return -VEIL_EINVAL;
        }
        c->map.vendor_id = (int)vendor;
        c->map.restrictions = veil_params_bool(p, "publisher_restrictions", 1);
        for (size_t i = 0; i < veil_params_list_size(p, "gpc_withdraws"); i++) {
                const char *name = veil_params_list_at(p, "gpc_withdraws", i);
                uint8_t bit;
                if (purpose_bit(name, &bit)) {
                        snprintf(errstr, errstr_size,
                                 "%s: gpc_withdraws: '%s' is not one of "
                                 "personalization, contextual, training, "
                                 "analytics",
                                 veil_params_where(p, "gpc_withdraws"), name);
                        return -VEIL_EINVAL;
                }
                c->gpc_withdraws |= bit;
        }
        const char *on_none = veil_params_str(p, "on_none");
        if (!on_none || (strcmp(on_none, "drop") && strcmp(on_none, "serve"))) {
                snprintf(errstr, errstr_size,
                         "%s: on_none must be drop or serve, got '%s'",
                         veil_params_where(p, "on_none"),
                         on_none ? on_none : "");
                return -VEIL_EINVAL;
        }
        c->serve_none = !strcmp(on_none, "serve");
        c->require_ledger = veil_params_bool(p, "require_ledger", 1);
        c->expected_users = veil_params_int(p, "expected_users", 100000);
        if (c->expected_users < 0 || c->expected_users > 1000000000) {
                snprintf(errstr, errstr_size,
                         "%s: expected_users must be 0..1000000000",
                         veil_params_where(p, "expected_users"));
                return -VEIL_EINVAL;
        }
        c->tc_max_age_days = veil_params_int(p, "tc_max_age_days", 395);
        if (c->tc_max_age_days < 0 || c->tc_max_age_days > 3660) {
                snprintf(errstr, errstr_size,
                         "%s: tc_max_age_days must be 1..3660 days, or 0 for "
                         "no limit; got %lld",
                         veil_params_where(p, "tc_max_age_days"),
                         (long long)c->tc_max_age_days);
                return -VEIL_EINVAL;
        }
        return 0;
}

int veil_consent_tc_decode(struct veil_consent *s, const char *tc, size_t len,
                           int64_t at_ms, char *errstr, size_t errstr_size) {
        int rc = veil_tcf_decode(tc, len, &s->tcf, errstr, errstr_size);
        if (rc)
                return rc;
        /* The decoder reads any policy version (the conformance vectors
         * are policy 2); the grant does not: purposes 1-11 were reworded
         * and LI for 3-6 removed in TCF 2.2, and the IAB asks for consent
         * to be established again under a new policy version, so an older
         * string speaks of choices our mapping does not describe. */
        if (s->tcf.tcf_policy_version < VEIL_CONSENT_TCF_MIN_POLICY) {
                snprintf(errstr, errstr_size,
                         "tcfPolicyVersion %u is older than %d (TCF 2.2), "
                         "which the purpose mapping is written for",
                         (unsigned)s->tcf.tcf_policy_version,
                         VEIL_CONSENT_TCF_MIN_POLICY);
                veil_tcf_forget(&s->tcf);
                return -VEIL_EDECODE;
        }
        /* lastUpdated is when the person last chose (or confirmed) in the
         * CMP, which must remind them of their choices (every 13 months
         * at most before TCF 2.2; since, as their regulator says): a
         * string older than that was not refreshed as it should have
         * been, and may no longer be what the person wants. A string
         * dated after at_ms is not refused: nothing signs a TC string, so
         * whoever could post-date one could as well date it today, and a
         * CMP may write a record's string after the record's ts (such a
         * record is judged as of the string's day, and at every later
         * use: consent.c decide, veil_consent_lapse). Its day counts, as
         * the ledger keeps it, so that an event's string and a ledger's
         * follow one rule. */
        uint16_t day = veil_consent_tc_day(s->tcf.last_updated);
        if (at_ms > veil_consent_tc_until(s, day)) {
                snprintf(errstr, errstr_size,
                         "lastUpdated is %lld days before its use, "
                         "over tc_max_age_days (%lld)",
                         (long long)((at_ms - day * VEIL_CONSENT_DAY_MS) /
                                     VEIL_CONSENT_DAY_MS),
                         (long long)s->cfg.tc_max_age_days);
                veil_tcf_forget(&s->tcf);
                return -VEIL_EDECODE;
        }
        return 0;
}

uint16_t veil_consent_tc_day(uint64_t last_updated_ds) {
        uint64_t day = last_updated_ds / 864000u; /* deciseconds a day */
        return day > UINT16_MAX ? UINT16_MAX : (uint16_t)day;
}

/* The day's start: CMPs write lastUpdated to the day (the harness and the
 * IAB's encoders do), and for one written to the hour the day grants less,
 * never more. Below 6.2e12 ms: no overflow for any at_ms compared. */
int64_t veil_consent_tc_until(const struct veil_consent *s, uint16_t day) {
        if (!s->cfg.tc_max_age_days)
                return INT64_MAX;
        return ((int64_t)day + s->cfg.tc_max_age_days) * VEIL_CONSENT_DAY_MS;
}

int veil_consent_tc_lapsed(const struct veil_consent *s,
                           const struct veil_ledger_entry *e, int64_t at_ms) {
        /* A string that could not be used allows nothing already, and has
         * no day to lapse from (its tc_day would date it to 1970). */
        if (!(e->flags & VEIL_LEDGER_HAS_TCF) ||
            (e->flags & VEIL_LEDGER_TC_UNUSABLE))
                return 0;
        return (e->flags & VEIL_LEDGER_LAPSED) ||
               at_ms > veil_consent_tc_until(s, e->tc_day);
}

uint8_t veil_consent_allowed(const struct veil_consent *s,
                             const struct veil_ledger_entry *e,
                             int64_t at_ms) {
        uint8_t a = e->own;
        if (e->flags & VEIL_LEDGER_HAS_TCF)
                a &= veil_consent_tc_lapsed(s, e, at_ms) ? 0 : e->tcf;
        if (e->flags & VEIL_LEDGER_GPC)
                a &= (uint8_t)~s->cfg.gpc_withdraws;
        /* As an event gets them (decide): training and analytics ride on
         * a tier, and without one the event is dropped, so nothing is in
         * force (the audit and the access export say what events get). */
        if (!(a & (VEIL_PURPOSE_PERSONALIZATION | VEIL_PURPOSE_CONTEXTUAL)))
                a = 0;
        return a;
}

struct veil_ledger_entry *veil_consent_find(const struct veil_consent *s,
                                            const struct veil_ledger_key *k) {
        struct veil_ledger_entry *e = veil_ledger_find(&s->ledger, k);
        return e && !(e->flags & VEIL_LEDGER_ACCESS_KEY) ? e : NULL;
}

static veil_tier_t tier_of(uint8_t a) {
        if (a & VEIL_PURPOSE_PERSONALIZATION)
                return VEIL_TIER_PERSONALIZED;
        if (a & VEIL_PURPOSE_CONTEXTUAL)
                return VEIL_TIER_CONTEXTUAL;
        return VEIL_TIER_NONE;
}

/* One event: start from the ledger, let each further signal only narrow,
 * and remember which one took the last tier away. 0, or -VEIL_ENOMEM when
 * the event's TC string could not be decoded for want of memory: no fault
 * of the event, which would leave the stream for it; the host stops
 * without committing the batch. */
static int decide(struct veil_consent *s, struct veil_batch *b,
                   struct veil_event *ev, const struct veil_ledger_entry *e) {
        uint8_t a;
        uint16_t sf = 0;
        int have_sf = 0;
        int why;
        if (!ev->user_id || !*ev->user_id) {
                /* An empty id is no person either: nothing to hold a
                 * choice, nor a profile, under. */
                a = 0;
                why = VEIL_CONSENT_NO_USER;
        } else if (e) {
                a = e->own;
                if (e->flags & VEIL_LEDGER_HAS_TCF) {
                        /* The ledger's string is judged at the batch's
                         * clock, as the event's is: a record written when
                         * the person chose would otherwise grant forever
                         * after. */
                        int lapsed = veil_consent_tc_lapsed(s, e, b->now_ms);
                        a &= lapsed ? 0 : e->tcf;
                        sf = lapsed ? 0 : e->sf;
                        have_sf = 1;
                }
                why = VEIL_CONSENT_NOT_GRANTED;
                if ((e->flags & VEIL_LEDGER_GPC) && tier_of(a)) {
                        a &= (uint8_t)~s->cfg.gpc_withdraws;
                        why = VEIL_CONSENT_GPC;
                }
        } else {
                /* Without a record only an explicit setting lets the
                 * event's own TC string speak for the person. */
                a = !s->cfg.require_ledger && ev->tc_string
                            ? VEIL_PURPOSE_ALL
                            : 0;
                why = VEIL_CONSENT_NO_RECORD;
        }
        if (ev->tc_string && tier_of(a) != VEIL_TIER_NONE) {
                char err[256];
                /* Judged at the batch's clock (the host's: the wall clock
                 * live, the stream's time in a replay), not the event's
                 * own ts, which its producer sets like the string. */
                int rc = veil_consent_tc_decode(s, ev->tc_string,
                                                strlen(ev->tc_string),
                                                b->now_ms, err, sizeof(err));
                if (rc == -VEIL_ENOMEM) {
                        veil_log(s->st, VEIL_LOG_ERROR,
                                 "an event's TC string: %s", err);
                        return rc;
                }
                if (rc) {
                        a = 0;
                        why = VEIL_CONSENT_EVENT_INVALID;
                } else {
                        a &= veil_tiermap_eval(&s->cfg.map, &s->tcf);
                        sf = have_sf ? sf & s->tcf.special_feature_optins
                                     : s->tcf.special_feature_optins;
                        have_sf = 1;
                        why = VEIL_CONSENT_EVENT_REFUSES;
                }
        }
        if (ev->gpc == 1 && tier_of(a) != VEIL_TIER_NONE) {
                a &= (uint8_t)~s->cfg.gpc_withdraws;
                why = VEIL_CONSENT_GPC;
        }
        veil_tier_t t = tier_of(a);
        ev->tier = t;
        ev->training = t != VEIL_TIER_NONE && (a & VEIL_PURPOSE_TRAINING);
        ev->analytics = t != VEIL_TIER_NONE && (a & VEIL_PURPOSE_ANALYTICS);
        ev->special_features = t != VEIL_TIER_NONE && have_sf ? sf : 0;
        s->tiers[t]++;
        if (t == VEIL_TIER_NONE) {
                s->none[why]++;
                if (!s->cfg.serve_none)
                        veil_event_drop(b, ev, veil_consent_reasons[why]);
        }
        return 0;
}

/* Gauges on /metrics: sizes and counts, never about one person. */
static void publish(struct veil_consent *s) {
        static const char *const none_names[VEIL_CONSENT_N_REASONS] = {
                "none_no_record",      "none_not_granted",
                "none_gpc",            "none_event_refuses",
                "none_event_invalid",  "none_no_user_id"};
        veil_metric_set(s->st, "ledger_people",
                        (double)veil_ledger_count(&s->ledger));
        veil_metric_set(s->st, "ledger_bytes",
                        (double)veil_ledger_bytes(&s->ledger));
        veil_metric_set(s->st, "events_personalized",
                        (double)s->tiers[VEIL_TIER_PERSONALIZED]);
        veil_metric_set(s->st, "events_contextual",
                        (double)s->tiers[VEIL_TIER_CONTEXTUAL]);
        veil_metric_set(s->st, "events_none",
                        (double)s->tiers[VEIL_TIER_NONE]);
        for (int i = 0; i < VEIL_CONSENT_N_REASONS; i++)
                veil_metric_set(s->st, none_names[i], (double)s->none[i]);
        veil_metric_set(s->st, "records_rejected", (double)s->rejected);
        veil_metric_set(s->st, "records_out_of_order", (double)s->stale);
        veil_metric_set(s->st, "erasures_requested", (double)s->erasures);
        veil_metric_set(s->st, "training_erasures_requested",
                        (double)s->training_erasures);
}

static int process(void *state, struct veil_batch *b) {
        struct veil_consent *s = state;
        if (b->now_ms > s->clock_ms)
                s->clock_ms = b->now_ms;
        if (!b->n)
                return 0;
        /* Hash every id first and start the loads, then decide: the
         * table's cache misses overlap instead of queueing. */
        struct veil_ledger_key *keys = veil_batch_alloc(b, b->n * sizeof(*keys));
        if (!keys)
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < b->n; i++) {
                const struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS || !ev->user_id)
                        continue;
                veil_ledger_key(&s->ledger, ev->user_id, strlen(ev->user_id),
                                &keys[i]);
                veil_ledger_prefetch(&s->ledger, &keys[i]);
        }
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                if (ev->status != VEIL_PASS)
                        continue;
                struct veil_ledger_entry *e =
                        ev->user_id ? veil_consent_find(s, &keys[i]) : NULL;
                /* The person is at hand (the ledger keeps no id): a lapse
                 * of their TC string is applied now, audited and erased
                 * as a withdrawal. */
                int rc = e ? veil_consent_lapse(s, e, ev->user_id,
                                                strlen(ev->user_id),
                                                b->now_ms)
                           : 0;
                if (rc == -VEIL_EINVAL) {
                        /* Its audit record was refused: the event leaves
                         * the stream, as the host asks of a stage whose
                         * record could not be written (served, it would
                         * not; the lapse is in force all the same). */
                        ev->tier = VEIL_TIER_NONE;
                        ev->training = ev->analytics = 0;
                        ev->special_features = 0;
                        veil_event_dead_letter(
                                b, ev,
                                "consent: the audit record of a lapsed TC "
                                "string could not be written (see the log); "
                                "the lapse is in force");
                        continue;
                }
                if (rc < 0)
                        return rc;
                rc = decide(s, b, ev, e);
                if (rc < 0)
                        return rc;
        }
        publish(s);
        return 0;
}

static int on_side_record(void *state, const struct veil_side_record *r,
                          char *errstr, size_t errstr_size) {
        return veil_consent_record(state, r, errstr, errstr_size);
}

/* The ledger entry is the person's current choice, which other stages rely
 * on, and an erasure leaves it: a refusal of everything is a choice too.
 * Kept, it stops a grant with an older ts that arrives late from undoing
 * the refusal (the entry is gone, so the grant would be taken as a first
 * record), keeps an event's own TC string from speaking for a person who
 * refused (require_ledger: false), and tells "not granted" from "no
 * record" in the drop counts. Only a tombstone removes the entry
 * (record.c). */
static int erase(void *state, const struct veil_subject *subj) {
        (void)state;
        (void)subj;
        return 0;
}

static void iso8601(int64_t ms, char *out, size_t size) {
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        if (ms < 0 || !gmtime_r(&t, &tm)) {
                snprintf(out, size, "%lld ms", (long long)ms);
                return;
        }
        char d[32];
        strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out, size, "%s.%03dZ", d, (int)(ms % 1000));
}

static const char *yes(int b) { return b ? "granted" : "not granted"; }

static int export_subject(void *state, const struct veil_subject *subj,
                          veil_rec_t *out) {
        struct veil_consent *s = state;
        if (!subj->raw_id)
                return 0;
        struct veil_ledger_key k;
        veil_ledger_key(&s->ledger, subj->raw_id, strlen(subj->raw_id), &k);
        const struct veil_ledger_entry *e = veil_consent_find(s, &k);
        if (!e)
                return 0; /* holds nothing: an empty section */
        char buf[128];
        /* What is in force when the answer is collected, between batches:
         * the string may have lapsed since the person's last event or
         * record. The wall clock, as the next batch's will be when live;
         * a batch clock ahead of it (a test's) counts too. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t at = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        if (s->clock_ms > at)
                at = s->clock_ms;
        uint8_t a = veil_consent_allowed(s, e, at);
        veil_rec_map_put(out, "", "held_as",
                         "a keyed hash of your user id (the id itself is "
                         "not kept)");
        veil_rec_map_put(out, "", "personalization",
                         yes(e->own & VEIL_PURPOSE_PERSONALIZATION));
        veil_rec_map_put(out, "", "training",
                         yes(e->own & VEIL_PURPOSE_TRAINING));
        veil_rec_map_put(out, "", "analytics",
                         yes(e->own & VEIL_PURPOSE_ANALYTICS));
        veil_rec_map_put(out, "", "gpc",
                         e->flags & VEIL_LEDGER_GPC ? "true" : "false");
        if (e->flags & VEIL_LEDGER_TC_UNUSABLE) {
                /* Not a lapse: it never allowed anything (record.c). */
                char text[200], age[64] = "";
                if (s->cfg.tc_max_age_days)
                        snprintf(age, sizeof(age),
                                 ", or over %lld days old when recorded",
                                 (long long)s->cfg.tc_max_age_days);
                snprintf(text, sizeof(text),
                         "nothing (the TC string could not be used: not a "
                         "valid TC string, made before TCF 2.2%s)",
                         age);
                veil_rec_map_put(out, "", "tc_string_allows", text);
                veil_rec_map_put(out, "", "special_features", "none");
        } else if (veil_consent_tc_lapsed(s, e, at)) {
                char since[40], text[200];
                iso8601(veil_consent_tc_until(s, e->tc_day) + 1, since,
                        sizeof(since));
                snprintf(text, sizeof(text),
                         "nothing since %s, %lld days after your choices in "
                         "it were last made or confirmed",
                         since, (long long)s->cfg.tc_max_age_days);
                veil_rec_map_put(out, "", "tc_string_allows", text);
                veil_rec_map_put(out, "", "special_features", "none");
        } else if (e->flags & VEIL_LEDGER_HAS_TCF) {
                veil_rec_map_put(out, "", "tc_string_allows",
                                 veil_consent_purpose_names(e->tcf, buf,
                                                            sizeof(buf)));
                size_t off = 0;
                buf[0] = '\0';
                for (int f = 1; f <= VEIL_TCF_MAX_SPECIAL_FEATURE; f++)
                        if (e->sf & (1u << (f - 1)))
                                off += (size_t)snprintf(buf + off,
                                                        sizeof(buf) - off,
                                                        "%s%d", off ? "," : "",
                                                        f);
                veil_rec_map_put(out, "", "special_features",
                                 off ? buf : "none");
        } else {
                veil_rec_map_put(out, "", "tc_string_allows",
                                 "no TC string recorded");
        }
        veil_rec_map_put(out, "", "in_force",
                         veil_consent_purpose_names(a, buf, sizeof(buf)));
        veil_rec_map_put(out, "", "source", veil_consent_sources[e->source]);
        iso8601(e->ts_ms, buf, sizeof(buf));
        veil_rec_map_put(out, "", "recorded_at", buf);
        return 0;
}

static void destroy(void *state) {
        struct veil_consent *s = state;
        if (!s)
                return;
        veil_log(s->st, VEIL_LOG_INFO,
                 "consent: %llu records (%llu rejected, %llu out of order, "
                 "%llu tombstones, %llu access requests), %llu erasures "
                 "requested; tiers: personalized %llu, contextual %llu, "
                 "none %llu (no record %llu, not granted %llu, GPC %llu, "
                 "event TC string refuses %llu, invalid %llu, no user id "
                 "%llu)",
                 (unsigned long long)s->records,
                 (unsigned long long)s->rejected,
                 (unsigned long long)s->stale,
                 (unsigned long long)s->tombstones,
                 (unsigned long long)s->access,
                 (unsigned long long)s->erasures,
                 (unsigned long long)s->tiers[VEIL_TIER_PERSONALIZED],
                 (unsigned long long)s->tiers[VEIL_TIER_CONTEXTUAL],
                 (unsigned long long)s->tiers[VEIL_TIER_NONE],
                 (unsigned long long)s->none[VEIL_CONSENT_NO_RECORD],
                 (unsigned long long)s->none[VEIL_CONSENT_NOT_GRANTED],
                 (unsigned long long)s->none[VEIL_CONSENT_GPC],
                 (unsigned long long)s->none[VEIL_CONSENT_EVENT_REFUSES],
                 (unsigned long long)s->none[VEIL_CONSENT_EVENT_INVALID],
                 (unsigned long long)s->none[VEIL_CONSENT_NO_USER]);
        veil_ledger_free(&s->ledger);
        veil_tcf_clear(&s->tcf);
        free(s);
}

static int init(veil_stage_t *st, const veil_params_t *p, void **state,
                char *errstr, size_t errstr_size) {
        if (sodium_init() < 0) {
                snprintf(errstr, errstr_size, "libsodium failed to start");
                return -VEIL_EINVAL;
        }
        struct veil_consent *s = calloc(1, sizeof(*s));
        if (!s)
                return -VEIL_ENOMEM;
        s->st = st;
        int rc = veil_consent_cfg_load(&s->cfg, p, errstr, errstr_size);
        if (rc) {
                free(s);
                return rc;
        }
        if (veil_out_bound(st, "audit")) {
                /* The audit names people by pseudonym only: without keys
                 * there is nothing it could name them by. */
                char probe[VEIL_PSEUDONYM_MAX];
                if (veil_pseudonym(st, "audit", "probe", 5, probe,
                                   sizeof(probe)) < 0) {
                        snprintf(errstr, errstr_size,
                                 "the audit output needs the pipeline's keys "
                                 "(keys:) to name people by pseudonym; add "
                                 "keys: or unbind the audit output");
                        free(s);
                        return -VEIL_EINVAL;
                }
                s->audit = 1;
        }
        if (veil_ledger_init(&s->ledger, (size_t)s->cfg.expected_users)) {
                snprintf(errstr, errstr_size,
                         "out of memory for a ledger of %lld people",
                         (long long)s->cfg.expected_users);
                free(s);
                return -VEIL_ENOMEM;
        }
        *state = s;
        return 0;
}

static const struct veil_command commands[] = {
        {"decode", "decode TC_STRING",
         "prints an IAB TCF v2 TC string as JSON with the TCF field names; "
         "exits 2 with a message when it is not a valid TC string",
         veil_consent_decode_run},
        {NULL, NULL, NULL, NULL}};

static const struct veil_plugin plugin = {
        .abi_version = VEIL_ABI_VERSION,
        .struct_size = sizeof(struct veil_plugin),
        .name = "consent",
        .version = "1.0.0",
        .description = "Gives every event a tier (personalized, contextual, "
                       "none) and a training flag from a consent ledger "
                       "(compacted topic), IAB TCF v2.2 TC strings (policy "
                       "version 4 or later, not older than tc_max_age_days) "
                       "and GPC; "
                       "withdrawal erases the person in every stage.",
        .params = params,
        .outputs = outputs,
        .side_inputs = side_inputs,
        .init = init,
        .process = process,
        .destroy = destroy,
        .on_side_record = on_side_record,
        .erase = erase,
        .export_subject = export_subject,
        .notice = veil_consent_notice,
        .commands = commands,
        .flags = VEIL_PLUGIN_DECIDES_CONSENT,
};

VEIL_PLUGIN_EXPORT const struct veil_plugin *veil_plugin_entry(void) {
        return &plugin;
}

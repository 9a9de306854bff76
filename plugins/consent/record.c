/*
 * record.c — consent-topic records into the ledger, and the audit trail.
 *
 * Kinds of record (schemas/consent.avsc), keyed by the user id:
 *   consent    the person's choices. Applied when its ts is not older than
 *              the entry in force; an older one (out of order) can only
 *              narrow: the result is the stricter of both, its ts is kept.
 *   access     a right-of-access request: nothing changes, the host
 *              collects every stage's export for the person. Its key may be
 *              anything (the person is its user_id): a key other than the
 *              user id keeps compaction from replacing the consent record.
 *   unknown    what a kind the schema lacks reads as (a newer writer's,
 *              e.g. an objection): rejected, never applied.
 *   tombstone  (null value) withdraws everything: the entry goes (kept as
 *              a refusal where events' TC strings speak for people
 *              without a record, require_ledger: false).
 * A record that cannot be used (no key, key and user_id differ, no
 * purposes…) is rejected: the host puts it on the dead-letter topic and
 * the ledger is left exactly as it was. A record whose TC string alone
 * cannot be decoded is applied as if the string allowed nothing (it can
 * only narrow) and dead-lettered too. Out of memory (the ledger's, the TC
 * decoder's) is no fault of the record: -VEIL_ENOMEM stops the host, the
 * ledger unchanged.
 *
 * Erasure: whenever personalization is not in force after a record and it
 * was before, or everything is withdrawn, or the person had no entry (a
 * stage may have restored a profile from a checkpoint older than the
 * withdrawal), the host is asked to erase the person in every stage. The
 * lapse of a recorded TC string past tc_max_age_days is a withdrawal too
 * (veil_consent_lapse), applied whenever the person is at hand: their
 * event (consent.c), record or access request.
 */
#include <stdio.h>
#include <string.h>

#include "consent.h"

const char *const veil_consent_sources[] = {
        "other", "cmp", "app", "support_desk", "import", "tombstone", NULL};

/* "tombstone" is what the audit trail says of a null record; a record
 * that names it as its source is kept as "other", as any unknown one. */
size_t veil_consent_source_index(const char *s, size_t len) {
        for (size_t i = 1; veil_consent_sources[i] &&
                           strcmp(veil_consent_sources[i], "tombstone");
             i++)
                if (strlen(veil_consent_sources[i]) == len &&
                    !memcmp(veil_consent_sources[i], s, len))
                        return i;
        return 0;
}

/* What is in force for a person, as the audit trail records it: a change
 * of either part is a change of what the person allows. */
struct in_force {
        uint8_t purposes; /**< VEIL_PURPOSE_* */
        uint16_t sf;      /**< TCF special features, bit i-1 = feature i */
};

/* Special features count only where an event would get them (consent.c,
 * decide): with a TC string in force and a tier. Precise geolocation
 * (feature 1) is an opt-in of its own, which pseudonymize reads, so its
 * withdrawal must be audited even when every purpose stays the same.
 *
 * As applied: a TC string's lapse counts once veil_consent_lapse has
 * applied it (at a clock of its caller's), so that a record's own change
 * is judged as of the record, the same at every restart. */
static struct in_force in_force(const struct veil_consent *s,
                                const struct veil_ledger_entry *e) {
        struct in_force f = {veil_consent_allowed(s, e, INT64_MIN), 0};
        if ((e->flags & VEIL_LEDGER_HAS_TCF) &&
            (f.purposes &
             (VEIL_PURPOSE_PERSONALIZATION | VEIL_PURPOSE_CONTEXTUAL)))
                f.sf = e->sf;
        return f;
}

static int same(const struct in_force *a, const struct in_force *b) {
        return a->purposes == b->purposes && a->sf == b->sf;
}

static void set_in_force(veil_rec_t *r, const char *path,
                         const struct in_force *f) {
        char p[64];
        uint8_t a = f->purposes;
        snprintf(p, sizeof(p), "%s.personalization", path);
        veil_rec_set_bool(r, p, a & VEIL_PURPOSE_PERSONALIZATION);
        snprintf(p, sizeof(p), "%s.training", path);
        veil_rec_set_bool(r, p, (a & VEIL_PURPOSE_TRAINING) != 0);
        snprintf(p, sizeof(p), "%s.analytics", path);
        veil_rec_set_bool(r, p, (a & VEIL_PURPOSE_ANALYTICS) != 0);
        /* The contextual tier alone is something in force too: without
         * it a grant of it, or its withdrawal, would read as no change. */
        snprintf(p, sizeof(p), "%s.contextual", path);
        veil_rec_set_bool(r, p, (a & VEIL_PURPOSE_CONTEXTUAL) != 0);
        snprintf(p, sizeof(p), "%s.special_features", path);
        for (int i = 1; i <= VEIL_TCF_MAX_SPECIAL_FEATURE; i++) {
                if (!(f->sf & (1u << (i - 1))))
                        continue;
                veil_rec_t *el = veil_rec_append(r, p);
                if (el)
                        veil_rec_set_long(el, "", i);
        }
}

/* One audit record, keyed and named by the "audit" pseudonym of the id. A
 * failure to emit is logged, not returned: the record has been applied,
 * and rejecting it now would dead-letter a consent that is in force.
 *
 * It is emitted between batches (from on_side_record), so there is no
 * event to dead-letter and no batch to hold back when the host refuses it
 * (-VEIL_EINVAL: too large for its topic, or not valid for its schema; the
 * host logged which, without the record). Stopping the host instead would
 * not help: the consent topic is read from its beginning at every start,
 * so the same record would stop it again. The change stays in force,
 * unaudited, and the record on the consent topic still says what it was
 * (it is audited again at the next start, while it is there). Neither
 * refusal can come from the record's size in practice: an audit record is
 * a pseudonym, words, booleans and at most 24 one-byte special-feature
 * ids (under 250 bytes), and librdkafka's
 * message.max.bytes is at least 1000. Any other error stops the host. */
static int audit(struct veil_consent *s, const char *id, size_t len,
                 const char *action, const struct in_force *before,
                 const struct in_force *after, const char *source,
                 int64_t ts) {
        if (!s->audit)
                return 0;
        char subj[VEIL_PSEUDONYM_MAX];
        if (veil_pseudonym(s->st, "audit", id, len, subj, sizeof(subj)) < 0) {
                veil_log(s->st, VEIL_LOG_ERROR,
                         "audit: no pseudonym (keys unavailable); a consent "
                         "change is not audited");
                return 0;
        }
        veil_rec_t *r = veil_out_begin(s->st, "audit");
        if (!r)
                return 0;
        veil_rec_set_str(r, "subject", subj);
        veil_rec_set_str(r, "action", action);
        if (before)
                set_in_force(r, "purposes_before", before);
        else
                veil_rec_set_null(r, "purposes_before");
        if (after)
                set_in_force(r, "purposes_after", after);
        else
                veil_rec_set_null(r, "purposes_after");
        veil_rec_set_str(r, "source", source);
        veil_rec_set_long(r, "ts", ts);
        int rc = veil_out_emit(s->st, "audit", subj, strlen(subj));
        if (rc == -VEIL_EINVAL)
                veil_log(s->st, VEIL_LOG_ERROR,
                         "audit: a consent change (%s) is in force but its "
                         "audit record could not be written (see above)",
                         action);
        else if (rc < 0)
                veil_log(s->st, VEIL_LOG_ERROR,
                         "audit: a consent change could not be produced");
        return rc < 0 ? rc : 0;
}

static int reject(struct veil_consent *s, const struct veil_side_record *r,
                  char *errstr, size_t errstr_size, const char *what) {
        s->rejected++;
        /* Position, not content: the key is a raw user id. */
        snprintf(errstr, errstr_size,
                 "consent record at %s[%d]@%lld rejected, the ledger is "
                 "unchanged: %s",
                 r->input, (int)r->partition, (long long)r->offset, what);
        return -VEIL_EDECODE;
}

/* A record applied as far as it could be, and dead-lettered for what
 * could not be read. */
static int reject_applied(struct veil_consent *s,
                          const struct veil_side_record *r, char *errstr,
                          size_t errstr_size, const char *what) {
        s->rejected++;
        snprintf(errstr, errstr_size,
                 "consent record at %s[%d]@%lld dead-lettered: %s", r->input,
                 (int)r->partition, (long long)r->offset, what);
        return -VEIL_EDECODE;
}

/* The record is applied whatever happens here: a queueing failure (out of
 * memory) is logged rather than turning an applied record into a dead
 * letter. */
/* Everything held about the person, or (training_only) what is held for
 * training alone. */
static void request(struct veil_consent *s, const char *id,
                    int training_only) {
        int rc = training_only ? veil_request_erase_training(s->st, id)
                               : veil_request_erase(s->st, id);
        if (training_only)
                s->training_erasures++;
        else
                s->erasures++;
        if (rc)
                veil_log(s->st, VEIL_LOG_ERROR,
                         "cannot queue an erasure%s (code %d)",
                         training_only ? " of training data" : "", rc);
}

static void erase(struct veil_consent *s, const char *id) {
        request(s, id, 0);
}

/* A lapse leaves nothing in force (the string allows nothing, and the
 * record's own purposes count only as far as its string allows), so it is
 * a withdrawal of everything or no change at all. */
int veil_consent_lapse(struct veil_consent *s, struct veil_ledger_entry *e,
                       const char *id, size_t len, int64_t at_ms) {
        if (!(e->flags & VEIL_LEDGER_HAS_TCF) ||
            (e->flags & VEIL_LEDGER_LAPSED) ||
            !veil_consent_tc_lapsed(s, e, at_ms))
                return 0;
        struct in_force before = in_force(s, e);
        e->flags |= VEIL_LEDGER_LAPSED;
        struct in_force after = in_force(s, e);
        if (same(&before, &after))
                return 0;
        /* ts is when the lapse took effect, not when it was found: the
         * same record whichever event or restart finds it. */
        int rc = audit(s, id, len, "withdrawn", &before, &after, "expired",
                       veil_consent_tc_until(s, e->tc_day) + 1);
        erase(s, id);
        return rc;
}

/* A rejected record with a usable key: the ledger is unchanged, and a
 * person it has no entry for has no consent, so, as for a tombstone, a
 * stage's state restored from a checkpoint must go (when compaction left
 * only this record, nothing else would erase it). */
static int reject_keyed(struct veil_consent *s,
                        const struct veil_side_record *r, const char *id,
                        size_t len, char *errstr, size_t errstr_size,
                        const char *what) {
        struct veil_ledger_key k;
        veil_ledger_key(&s->ledger, id, len, &k);
        if (!veil_consent_find(s, &k))
                erase(s, id);
        return reject(s, r, errstr, errstr_size, what);
}

static int tombstone(struct veil_consent *s, const struct veil_side_record *r,
                     const char *id, size_t len, char *errstr,
                     size_t errstr_size) {
        struct veil_ledger_key k;
        s->tombstones++;
        veil_ledger_key(&s->ledger, id, len, &k);
        struct veil_ledger_entry *e = veil_ledger_find(&s->ledger, &k);
        if (e && (e->flags & VEIL_LEDGER_ACCESS_KEY)) {
                /* An answered access request's key: kept as a refusal it
                 * would stay for good, one entry per request. It names
                 * nobody, unless an operator keyed the request by another
                 * person's id: the erasure below is for them. */
                veil_ledger_remove(&s->ledger, &k);
                erase(s, id);
                return 0;
        }
        if (e) {
                /* A lapse that came first is audited first. */
                veil_consent_lapse(s, e, id, len, r->timestamp_ms);
                struct in_force before = in_force(s, e);
                veil_ledger_remove(&s->ledger, &k);
                audit(s, id, len, "withdrawn", &before, NULL, "tombstone",
                      r->timestamp_ms);
        }
        /* Where an event's own TC string speaks for people without a
         * record (require_ledger: false), a removed entry would let it
         * grant again what the tombstone withdrew: the person is kept as
         * a refusal instead, as a record with every purpose false is
         * (until compaction drops the tombstone; then nothing is known
         * of them at all). */
        if (!s->cfg.require_ledger) {
                int created;
                struct veil_ledger_entry *n =
                        veil_ledger_insert(&s->ledger, &k, &created);
                if (n) {
                        memset(n, 0, sizeof(*n));
                        n->key = k;
                        /* Older than any record: the next consent record
                         * applies as it would with no entry (records
                         * compare their own ts, not the topic's clock). */
                        n->ts_ms = INT64_MIN;
                        n->tcf = VEIL_PURPOSE_ALL;
                        /* "tombstone", the last name of the list. */
                        n->source = (uint8_t)(sizeof(veil_consent_sources) /
                                                      sizeof(char *) -
                                              2);
                } else {
                        /* Without the refusal an event's TC string would
                         * speak for the person again: the host stops, and
                         * reads the topic again at the next start. */
                        snprintf(errstr, errstr_size,
                                 "out of memory for the consent ledger "
                                 "(%zu entries), keeping a tombstone as a "
                                 "refusal",
                                 s->ledger.n);
                        return -VEIL_ENOMEM;
                }
        }
        /* Even without an entry: a stage may hold state restored from a
         * checkpoint taken before the person's records were compacted. */
        erase(s, id);
        return 0;
}

/* Where a tombstone is kept as a refusal (require_ledger: false), the
 * tombstone that ends an access request keyed apart from its person would
 * leave one entry per request for good: the key is remembered until then,
 * as nobody's, and its tombstone removes it. A key that is someone's entry
 * already stays theirs. Without memory the tombstone is kept as a refusal,
 * as before: an entry too many, never a grant. */
static void hold_access_key(struct veil_consent *s, const char *key,
                            size_t key_len) {
        struct veil_ledger_key k;
        veil_ledger_key(&s->ledger, key, key_len, &k);
        int created;
        struct veil_ledger_entry *e =
                veil_ledger_insert(&s->ledger, &k, &created);
        if (!e || !created)
                return;
        e->ts_ms = INT64_MIN; /* any record for the key replaces it */
        e->flags = VEIL_LEDGER_ACCESS_KEY;
}

static int access_request(struct veil_consent *s,
                          const struct veil_side_record *r, const char *uid,
                          size_t len, const char *source, int64_t ts,
                          const char *key, size_t key_len) {
        struct veil_ledger_key k;
        s->access++;
        veil_ledger_key(&s->ledger, uid, len, &k);
        struct veil_ledger_entry *e = veil_consent_find(s, &k);
        struct in_force now = {0, 0};
        if (e) {
                veil_consent_lapse(s, e, uid, len, r->timestamp_ms);
                now = in_force(s, e);
        }
        audit(s, uid, len, "access", e ? &now : NULL, e ? &now : NULL, source,
              ts);
        int rc = veil_request_export(s->st, uid);
        /* Keyed by the person's id, the request replaced their consent
         * record at compaction: with no entry they have no consent, and
         * state restored from a checkpoint must go, as for a tombstone
         * (after the export, which the host applies first). */
        if (!rc && !e && key_len == len && !memcmp(key, uid, len))
                erase(s, uid);
        else if (!s->cfg.require_ledger &&
                 (key_len != len || memcmp(key, uid, len)))
                hold_access_key(s, key, key_len);
        return rc;
}

int veil_consent_record(struct veil_consent *s,
                        const struct veil_side_record *r, char *errstr,
                        size_t errstr_size) {
        if (strcmp(r->input, "consent"))
                return 0;
        s->records++;
        char id[VEIL_CONSENT_ID_MAX + 1];
        size_t len = r->key_len;
        if (!r->key || !len)
                return reject(s, r, errstr, errstr_size,
                              "no key; consent records are keyed by the "
                              "user id");
        if (len > VEIL_CONSENT_ID_MAX || memchr(r->key, 0, len))
                return reject(s, r, errstr, errstr_size,
                              "the key is not a user id (longer than 512 "
                              "bytes or holding a NUL byte)");
        memcpy(id, r->key, len);
        id[len] = '\0';
        if (!r->value)
                return tombstone(s, r, id, len, errstr, errstr_size);

        const char *kind, *uid, *src;
        size_t kind_len, uid_len, src_len;
        int64_t ts;
        if (veil_rec_get_str(r->value, "kind", &kind, &kind_len) ||
            veil_rec_get_str(r->value, "user_id", &uid, &uid_len) ||
            veil_rec_get_str(r->value, "source", &src, &src_len) ||
            veil_rec_get_long(r->value, "ts", &ts))
                return reject_keyed(s, r, id, len, errstr, errstr_size,
                              "kind, user_id, source or ts missing");
        if (!uid_len || uid_len > VEIL_CONSENT_ID_MAX ||
            strlen(uid) != uid_len)
                return reject_keyed(s, r, id, len, errstr, errstr_size,
                              "user_id is empty, longer than 512 bytes or "
                              "holds a NUL byte");
        const char *source = veil_consent_sources[veil_consent_source_index(
                src, src_len)];
        if (!strcmp(kind, "access"))
                return access_request(s, r, uid, uid_len, source, ts, id,
                                      len);
        /* "unknown" is what a kind the reader schema lacks reads as (the
         * enum's default): a newer writer's kind, an objection say, is
         * never taken for a grant. */
        if (!strcmp(kind, "unknown"))
                return reject_keyed(s, r, id, len, errstr, errstr_size,
                              "kind unknown: the writer used a kind this "
                              "consent schema does not have; only consent "
                              "and access records are applied");
        if (strcmp(kind, "consent"))
                return reject_keyed(s, r, id, len, errstr, errstr_size,
                              "kind is neither consent nor access");
        /* The key is what compaction keeps one record per: a consent
         * record under another key would outlive the person's tombstone. */
        if (uid_len != len || memcmp(uid, id, len))
                return reject_keyed(s, r, id, len, errstr, errstr_size,
                              "the key and user_id differ; a consent record "
                              "is keyed by its user_id");

        int pers, train, anal, gpc = 0;
        if (veil_rec_get_bool(r->value, "purposes.personalization", &pers) ||
            veil_rec_get_bool(r->value, "purposes.training", &train) ||
            veil_rec_get_bool(r->value, "purposes.analytics", &anal))
                return reject_keyed(s, r, id, len, errstr, errstr_size,
                              "a consent record needs purposes");
        int g;
        if (veil_rec_get_bool(r->value, "gpc", &g) == 0)
                gpc = g;

        struct veil_ledger_entry n;
        memset(&n, 0, sizeof(n));
        n.ts_ms = ts;
        n.own = (uint8_t)((pers ? VEIL_PURPOSE_PERSONALIZATION : 0) |
                          (train ? VEIL_PURPOSE_TRAINING : 0) |
                          (anal ? VEIL_PURPOSE_ANALYTICS : 0));
        /* Whoever allows any processing at all allows its least intrusive
         * form: this event's context, nothing kept. */
        if (n.own)
                n.own |= VEIL_PURPOSE_CONTEXTUAL;
        n.tcf = VEIL_PURPOSE_ALL;
        n.flags = gpc ? VEIL_LEDGER_GPC : 0;
        n.source = (uint8_t)veil_consent_source_index(src, src_len);
        const char *tc;
        size_t tc_len;
        char bad_tc[400] = "";
        if (veil_rec_get_str(r->value, "tc_string", &tc, &tc_len) == 0) {
                char e[256];
                /* Judged at the record's ts, when the person chose (a ts
                 * before the string's lastUpdated, as of the string's
                 * day): what the record put in force then, the same at
                 * every restart. Every later use judges it again at its
                 * own clock, and its lapse is a change of its own
                 * (veil_consent_lapse). */
                int rc = veil_consent_tc_decode(s, tc, tc_len, ts, e,
                                                sizeof(e));
                if (rc == -VEIL_ENOMEM) {
                        /* Not the string's fault: applied as one that
                         * allows nothing, a valid grant would be lost and
                         * dead-lettered. The host stops before the ledger
                         * is touched, and reads the record again. */
                        snprintf(errstr, errstr_size, "tc_string: %s", e);
                        return rc;
                }
                if (rc) {
                        /* A string that cannot be read, or cannot grant
                         * under our mapping (policy before TCF 2.2, too
                         * old), allows nothing, as on an event: the record
                         * still narrows (a withdrawal whose CMP wrote a
                         * broken string is a withdrawal, now and after a
                         * restart, when it may be the person's only
                         * record), and goes to the dead-letter topic to be
                         * looked at. */
                        snprintf(bad_tc, sizeof(bad_tc),
                                 "tc_string: %s; the record was applied as "
                                 "if its TC string allowed nothing",
                                 e);
                        n.tcf = 0;
                        n.sf = 0;
                        n.flags |= VEIL_LEDGER_TC_UNUSABLE;
                } else {
                        n.tcf = veil_tiermap_eval(&s->cfg.map, &s->tcf);
                        n.sf = s->tcf.special_feature_optins;
                        n.tc_day = veil_consent_tc_day(s->tcf.last_updated);
                }
                n.flags |= VEIL_LEDGER_HAS_TCF;
        }

        struct veil_ledger_key k;
        veil_ledger_key(&s->ledger, id, len, &k);
        struct veil_ledger_entry *e = veil_consent_find(s, &k);
        int had = e != NULL;
        struct in_force was = {0, 0};
        if (had) {
                /* What was in force when the record came (its Kafka time,
                 * so that a restart reading the topic again judges it the
                 * same): a lapse before it is audited first. */
                veil_consent_lapse(s, e, id, len, r->timestamp_ms);
                was = in_force(s, e);
        }
        uint8_t before = was.purposes;
        if (had && ts < e->ts_ms) {
                /* Out of order: a late withdrawal still counts, a late
                 * grant cannot undo a newer refusal. */
                s->stale++;
                e->own &= n.own;
                if (n.flags & VEIL_LEDGER_HAS_TCF) {
                        /* Special features count only with a string in
                         * force: without one the entry opted in to none,
                         * and the older string cannot add any. */
                        int both = e->flags & VEIL_LEDGER_HAS_TCF;
                        e->tcf = both ? e->tcf & n.tcf : n.tcf;
                        e->sf = both ? e->sf & n.sf : 0;
                        /* The stricter of the two limits, too (a lapse
                         * applied stays). */
                        e->tc_day = both && e->tc_day < n.tc_day ? e->tc_day
                                                                 : n.tc_day;
                        e->flags |= VEIL_LEDGER_HAS_TCF;
                }
                e->flags |= n.flags &
                            (VEIL_LEDGER_GPC | VEIL_LEDGER_TC_UNUSABLE);
        } else {
                int created;
                e = veil_ledger_insert(&s->ledger, &k, &created);
                if (!e) {
                        /* Not the record's fault: the host stops rather
                         * than dead-letter it. */
                        snprintf(errstr, errstr_size,
                                 "out of memory for the consent ledger "
                                 "(%zu entries)",
                                 s->ledger.n);
                        return -VEIL_ENOMEM;
                }
                n.key = k;
                *e = n;
        }
        struct in_force is = in_force(s, e);
        uint8_t after = is.purposes;
        int own_none = e->own == 0;
        if (!had || !same(&was, &is))
                audit(s, id, len,
                      /* Nothing in force (every purpose false, or a TC
                       * string that allows none): withdrawn, also for a
                       * first record, as schemas/audit.avsc says. */
                      own_none || !after ? "withdrawn"
                      : had              ? "changed"
                                         : "granted",
                      had ? &was : NULL, &is, source, ts);
        if (!(after & VEIL_PURPOSE_PERSONALIZATION) &&
            (!had || (before & VEIL_PURPOSE_PERSONALIZATION) || !after))
                erase(s, id);
        else if (had && (before & VEIL_PURPOSE_TRAINING) &&
                 !(after & VEIL_PURPOSE_TRAINING))
                /* Training withdrawn, personalization kept: what is held
                 * for training goes (dp_model's example held for its next
                 * step would otherwise be learned), the profile stays. */
                request(s, id, 1);
        /* A string fit at the record's ts may be past its limit by the
         * time the record is read (a record read again at a restart, a
         * backfill): that lapse is applied now, after the record's own
         * change, and audited as of its own time. */
        veil_consent_lapse(s, e, id, len, r->timestamp_ms);
        if (*bad_tc)
                return reject_applied(s, r, errstr, errstr_size, bad_tc);
        return 0;
}

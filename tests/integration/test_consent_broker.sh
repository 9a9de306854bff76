#!/usr/bin/env bash
# The consent stage on the real broker, fed and read by kcat:
#  1. default deny: events already waiting are not processed before the
#     ledger has caught up with a 40,000-record consent topic (their people's
#     records are its very last ones), and then every one gets its tier;
#  2. a withdrawal between two batches stops personalization for the next
#     batch, and the person's state is gone from every stage (an access
#     request after the erasure finds every section empty); the erasure
#     latency (record produced -> last stage's erase) is measured;
#  3. broken consent records go to the dead-letter topic: one that is not
#     Avro changes nothing, one whose TC string cannot be decoded allows
#     nothing (a withdrawal with a broken string withdraws);
#  4. the audit and access topics hold no raw id.
source "$(dirname "$0")/lib.sh"
RECTOOL=${RECTOOL:-$(dirname "$AVROTOOL")/rectool}
AUDIT_SCHEMA="$ROOT/schemas/audit.avsc"
ACCESS_SCHEMA="$ROOT/schemas/access.avsc"
CONSENT_SCHEMA="$ROOT/schemas/consent.avsc"

export VEIL_INPUT="cons-in-$SUFFIX" VEIL_CONSENT="cons-consent-$SUFFIX" \
  VEIL_RECS="cons-recs-$SUFFIX" VEIL_AUDIT="cons-audit-$SUFFIX" \
  VEIL_ACCESS="cons-access-$SUFFIX" VEIL_DLQ="cons-dlq-$SUFFIX" \
  VEIL_GROUP="cons-$SUFFIX"
HDR="user_id,kind,purposes.personalization,purposes.training,purposes.analytics,tc_string,gpc,source,ts,_key,_tombstone"
now_ms() { date +%s%3N; }

# consent CSV: rows of the consent topic, produced in file order
consent() {
  "$RECTOOL" encode "$CONSENT_SCHEMA" "$1" >"$WORK/consent.bin" || fail "rectool"
  kcat -b "$BROKER" -P -Z -t "$VEIL_CONSENT" -K "$KDELIM" -D "$MDELIM" \
    <"$WORK/consent.bin" 2>"$WORK/kcat.err" || { cat "$WORK/kcat.err"; fail "kcat consent"; }
}
# events PREFIX USER... : 10 (or $N) events each, event ids PREFIX-USER-k
events() {
  local prefix=$1; shift
  { echo "event_id,ts,user_id,item,qty"
    for u in "$@"; do for k in $(seq 1 "${N:-10}"); do
      echo "$prefix-$u-$k,$((1700000000 + k)),$u,item-$k,1"; done; done; } >"$WORK/ev.csv"
  produce "$VEIL_INPUT" "$WORK/ev.csv"
}

# --- 1. default deny --------------------------------------------------
T0=1700000000000
{ echo "$HDR"
  for i in $(seq 1 40000); do echo "f$i,consent,true,true,false,,,import,$T0,,"; done
  for i in $(seq 1 30); do echo "u$i,consent,true,true,true,,,app,$T0,,"; done
  for i in $(seq 31 35); do echo "u$i,consent,false,false,true,,,app,$T0,,"; done
  for i in $(seq 36 40); do echo "u$i,consent,false,false,false,,,cmp,$T0,,"; done
} >"$WORK/ledger.csv"
consent "$WORK/ledger.csv"
USERS=$(seq -f 'u%g' 1 40)
events a $USERS   # 400 events, waiting before veil starts
start_veil "$ROOT/tests/pipelines/consent.yaml" "$WORK/veil.log"
wait_count "$VEIL_RECS" 350 60 || { tail -20 "$WORK/veil.log"; fail "recommendations of batch a"; }
sleep 1
consume "$VEIL_RECS" "$REC_SCHEMA" >"$WORK/recs.json"
[ "$(wc -l <"$WORK/recs.json")" -eq 350 ] || fail "want 350 recommendations (u36-u40 have refused everything)"
tiers() { # PREFIX USER -> the tiers of that user's events, sorted unique
  jq -r --arg p "$1-$2-" 'select(.value.event_id | startswith($p)) | .value.tier' "$WORK/recs.json" | sort | uniq -c | tr -s ' '
}
for u in u1 u17 u30; do [ "$(tiers a $u)" = " 10 personalized" ] || fail "$u: $(tiers a $u)"; done
for u in u31 u35; do [ "$(tiers a $u)" = " 10 contextual" ] || fail "$u: $(tiers a $u)"; done
for u in u36 u40; do [ -z "$(tiers a $u)" ] || fail "$u was not dropped"; done
caught=$(grep -n 'side inputs caught up' "$WORK/veil.log" | head -1 | cut -d: -f1)
consuming=$(grep -n "consuming '$VEIL_INPUT'" "$WORK/veil.log" | head -1 | cut -d: -f1)
[ -n "$caught" ] && [ -n "$consuming" ] && [ "$caught" -lt "$consuming" ] ||
  fail "the input was consumed before the ledger caught up"
ok "default deny: nothing consumed before the 40,040-record ledger caught up; then every event got its tier"

# --- 2. withdrawal between two batches --------------------------------
{ echo "$HDR"; echo "u1,access,,,,,,support_desk,$T0,access-u1-a,"; } >"$WORK/c.csv"
consent "$WORK/c.csv"
wait_count "$VEIL_ACCESS" 1 30 || fail "access record before the withdrawal"
consume "$VEIL_ACCESS" "$ACCESS_SCHEMA" >"$WORK/access.json"
# (-s: jq -e alone reports the last record's result.)
jq -e -s 'any(.[]; (.key | startswith("eph.")) and .value.sections.consent.personalization == "granted")' \
  "$WORK/access.json" >/dev/null || fail "u1's ledger entry before the withdrawal"

audits=$(count "$VEIL_AUDIT")
erase_lines=$(grep -c 'erased [0-9]* subject' "$WORK/veil.log" || true)
sent=$(now_ms)
{ echo "$HDR"
  echo "u1,,,,,,,,,,true"
  echo "u2,consent,false,true,true,,,app,$((T0 + 1)),," ; } >"$WORK/c.csv"
consent "$WORK/c.csv"
wait_count "$VEIL_AUDIT" $((audits + 2)) 30 || fail "audit of the withdrawals"
deadline=$((SECONDS + 20))
until [ "$(grep -c 'erased [0-9]* subject' "$WORK/veil.log" || true)" -gt "$erase_lines" ]; do
  [ $SECONDS -lt $deadline ] || fail "no erasure logged"; sleep 0.2; done
line=$(grep 'erased [0-9]* subject' "$WORK/veil.log" | sed -n "$((erase_lines + 1))p")
erased_at=$(date -d "$(jq -r .time <<<"$line")" +%s%3N)
inside=$(sed -nE 's/.*, ([0-9.]+) ms after the oldest request.*/\1/p' <<<"$line")
latency=$((erased_at - sent))
echo "erasure latency: ${latency} ms from producing the withdrawal to the last stage's erase (${inside} ms from its arrival in veil)"
[ "$latency" -lt 5000 ] || fail "erasure took $latency ms"

# The state is gone from every stage: an access request after the erasure.
{ echo "$HDR"
  echo "u1,access,,,,,,support_desk,$T0,access-u1-b,"
  echo "u2,access,,,,,,support_desk,$T0,access-u2-b,"; } >"$WORK/c.csv"
consent "$WORK/c.csv"
wait_count "$VEIL_ACCESS" 3 30 || fail "access records after the withdrawal"
consume "$VEIL_ACCESS" "$ACCESS_SCHEMA" >"$WORK/access.json"
jq -se 'length == 3' "$WORK/access.json" >/dev/null || fail "want 3 access records"
# Keyed by the subject pseudonym: u1's is the key of the first answer.
u1=$(jq -r 'select(.value.sections.consent.personalization == "granted") | .key' "$WORK/access.json")
# u1 (tombstone): every stage's section empty; u2 (personalization only):
# the ledger keeps the remaining consent, every other stage holds nothing.
jq -se --arg k "$u1" 'map(select(.key == $k and .value.sections.consent.personalization != "granted"))
    | length == 1 and (.[0].value.sections | to_entries | length >= 1 and all(.value | length == 0))' \
  "$WORK/access.json" >/dev/null || fail "u1: a stage still holds something: $(cat "$WORK/access.json")"
jq -se --arg k "$u1" 'map(select(.key != $k)) | length == 1 and (.[0].value.sections |
    (.consent.personalization == "not granted") and (.consent.training == "granted") and
    (to_entries | map(select(.key != "consent")) | all(.value | length == 0)))' \
  "$WORK/access.json" >/dev/null || fail "u2: $(cat "$WORK/access.json")"
ok "withdrawal: erased in every stage ($(jq -sr '.[0].value.sections | keys | join(", ")' "$WORK/access.json"))"

# --- 3. broken records ------------------------------------------------
printf 'u4%s\x01%s' "$KDELIM" "$MDELIM" |
  kcat -b "$BROKER" -P -t "$VEIL_CONSENT" -K "$KDELIM" -D "$MDELIM" || fail "kcat"
{ echo "$HDR"; echo "u3,consent,false,false,false,CPi8w!broken,,cmp,$((T0 + 9)),,"; } >"$WORK/c.csv"
consent "$WORK/c.csv"
wait_count "$VEIL_DLQ" 2 30 || fail "broken consent records on the dead-letter topic"
kcat -b "$BROKER" -C -t "$VEIL_DLQ" -o beginning -e -q -f '%h\n' >"$WORK/dlq.h" 2>/dev/null
grep -q 'veil.stage=decode' "$WORK/dlq.h" && grep -q 'veil.stage=consent' "$WORK/dlq.h" ||
  fail "dead letters: $(cat "$WORK/dlq.h")"
grep -q 'veil.error=.*tc_string.*applied as if its TC string allowed nothing' "$WORK/dlq.h" ||
  fail "the TC string error: $(cat "$WORK/dlq.h")"

# The next batch: u1 gone (dropped), u2 contextual, u3 withdrawn by its
# record with a broken TC string (dropped), u4 still personalized.
N=5 events b u1 u2 u3 u4
wait_count "$VEIL_RECS" 360 30 || fail "recommendations of batch b"
sleep 1
consume "$VEIL_RECS" "$REC_SCHEMA" >"$WORK/recs.json"
[ "$(wc -l <"$WORK/recs.json")" -eq 360 ] || fail "u1's events were not dropped"
[ -z "$(tiers b u1)" ] || fail "u1 after the tombstone: $(tiers b u1)"
[ "$(tiers b u2)" = " 5 contextual" ] || fail "u2 after withdrawing personalization: $(tiers b u2)"
[ -z "$(tiers b u3)" ] || fail "u3 after its withdrawal with a broken TC string: $(tiers b u3)"
[ "$(tiers b u4)" = " 5 personalized" ] || fail "u4 after its record that is not Avro: $(tiers b u4)"
ok "the next batch: personalization stopped for u1 and u2, and for u3 (a withdrawal with a broken TC string); a record that is not Avro changed nothing for u4"

# --- 4. no raw id in the audit or access topics ----------------------
consume "$VEIL_AUDIT" "$AUDIT_SCHEMA" >"$WORK/audit.json"
[ "$(wc -l <"$WORK/audit.json")" -ge 40040 ] || fail "audit records: $(wc -l <"$WORK/audit.json")"
jq -r '.key, .value.subject' "$WORK/audit.json" "$WORK/access.json" | sort -u >"$WORK/subjects"
{ seq -f 'f%g' 1 40000; seq -f 'u%g' 1 40; } >"$WORK/raw"
grep -qxFf "$WORK/raw" "$WORK/subjects" && fail "a raw id in the audit or access topic"
# Every other string of every record, decoded with its schema: none holds a
# raw id as a word. (A grep over the raw bytes cannot tell: one pseudonym in
# ten thousand reads "eph.u7-..." and holds "u7" as a word.)
jq -r '.key, (.value | .. | strings)' "$WORK/audit.json" "$WORK/access.json" |
  grep -v '^eph\.[A-Za-z0-9_-]\{22\}$' >"$WORK/strings"
grep -wFf "$WORK/raw" "$WORK/strings" && fail "a raw id in a field of the audit or access topic"
grep -qv '^eph\.[A-Za-z0-9_-]\{22\}$' "$WORK/subjects" && fail "a subject that is not a pseudonym"
# The audit's pseudonyms are not the subjects of the other outputs.
# (access records are keyed by the subject pseudonym, by design: they go
# back to the person the other outputs name that way.)
jq -r '.value.subject' "$WORK/recs.json" | sort -u >"$WORK/rec_subjects"
jq -r '.value.subject' "$WORK/audit.json" | sort -u >"$WORK/audit_subjects"
comm -12 "$WORK/audit_subjects" "$WORK/rec_subjects" | grep -q . && fail "audit subjects link to recommendation subjects"
jq -se 'map(select(.value.action == "withdrawn" and .value.source == "tombstone")) | length == 1' \
  "$WORK/audit.json" >/dev/null || fail "the tombstone's audit record"
ok "audit ($(wc -l <"$WORK/audit.json") records) and access topics: pseudonyms only, in their own domain"

stop_veil 20
grep -q '"level":"error"' "$WORK/veil.log" && fail "errors in the log"
# The undecodable consent record counts among the decode errors (it did not
# before: only the input's did), the rejected one among the dead letters.
grep -q '"message":"stopped: .* (re)loaded 1 undecodable (input and side inputs), 2 dead letters"' "$WORK/veil.log" ||
  fail "stop line: $(grep '"stopped' "$WORK/veil.log")"
echo "PASS test_consent_broker"

#!/usr/bin/env bash
# Erasures and access requests read from the consent topic at start apply
# to the state restored from the checkpoint, however many there are: a
# person tombstoned while veil was down, followed by 4,100 more erasures
# (the host applies held erasures every 4,096 while the side inputs catch
# up), has no profile after the restart, and an access request read before
# those erasures lists the restored profile of the person who asked.
# Restoring after the catch-up brought the first person's profile back.
# Access requests wait for the whole catch-up: one read before the 4,096
# bound, from a person whose grant comes after it, lists the grant.
source "$(dirname "$0")/lib.sh"
RECTOOL=${RECTOOL:-$(dirname "$AVROTOOL")/rectool}
ACCESS_SCHEMA="$ROOT/schemas/access.avsc"
CONSENT_SCHEMA="$ROOT/schemas/consent.avsc"

export VEIL_INPUT="consr-in-$SUFFIX" VEIL_CONSENT="consr-consent-$SUFFIX" \
  VEIL_RECS="consr-recs-$SUFFIX" VEIL_AUDIT="consr-audit-$SUFFIX" \
  VEIL_ACCESS="consr-access-$SUFFIX" VEIL_DLQ="consr-dlq-$SUFFIX" \
  VEIL_GROUP="consr-$SUFFIX" VEIL_STATE="consr-state-$SUFFIX" \
  VEIL_KEYFILE="$WORK/key"
head -c 32 /dev/urandom >"$VEIL_KEYFILE"
chmod 600 "$VEIL_KEYFILE"
PIPE="$ROOT/tests/pipelines/consent_state.yaml"
HDR="user_id,kind,purposes.personalization,purposes.training,purposes.analytics,tc_string,gpc,source,ts,_key,_tombstone"
T0=1700000000000

consent() {
  "$RECTOOL" encode "$CONSENT_SCHEMA" "$1" >"$WORK/consent.bin" || fail "rectool"
  kcat -b "$BROKER" -P -Z -t "$VEIL_CONSENT" -K "$KDELIM" -D "$MDELIM" \
    <"$WORK/consent.bin" 2>"$WORK/kcat.err" || { cat "$WORK/kcat.err"; fail "kcat consent"; }
}

# One partition: the requests below take effect in the order written.
"$RECTOOL" create-topic "$BROKER" "$VEIL_CONSENT" 1 || fail "create the consent topic"

# --- run 1: u1 and u2 personalized, their profiles checkpointed --------
{ echo "$HDR"; for u in u1 u2; do echo "$u,consent,true,true,true,,,app,$T0,,"; done; } >"$WORK/c.csv"
consent "$WORK/c.csv"
{ echo "event_id,ts,user_id,item,qty"
  for u in u1 u2; do for i in 10002 10080 10120; do
    echo "a-$u-$i,1700000000,$u,$i,1"; done; done; } >"$WORK/ev.csv"
produce "$VEIL_INPUT" "$WORK/ev.csv"
start_veil "$PIPE" "$WORK/veil1.log"
wait_count "$VEIL_RECS" 6 60 || { tail -20 "$WORK/veil1.log"; fail "recommendations of run 1"; }
sleep 3 # a checkpoint at the 2 s interval, and one more on SIGTERM
stop_veil 20
grep -q 'state: checkpoint [0-9]* of 1 stage(s) produced' "$WORK/veil1.log" || fail "run 1 wrote no checkpoint"

# --- while veil is down ------------------------------------------------
# u2 asks for their data; u1 is tombstoned; 4,100 more tombstones (each an
# erasure) follow; then u1 asks for theirs. The first 4,096 erasures are
# applied during the catch-up, the access requests at the first batch,
# with the whole ledger (an access request applied with an erasure of the
# same person answers with what was held before it: u1's comes after a
# chunk of erasures that held theirs). u3 asks before the erasures and
# grants consent after them: answered at the 4,096 bound, the request would
# find no consent.
{ echo "$HDR"
  echo "u2,access,,,,,,support_desk,$T0,access-u2,"
  echo "u3,access,,,,,,support_desk,$T0,access-u3,"
  echo "u1,,,,,,,,,,true"
  for i in $(seq 1 4100); do echo "gone$i,,,,,,,,,,true"; done
  echo "u3,consent,true,true,true,,,app,$T0,,"
  echo "u1,access,,,,,,support_desk,$T0,access-u1,"; } >"$WORK/c.csv"
consent "$WORK/c.csv"

# --- run 2: restored, then the ledger's requests applied ----------------
start_veil "$PIPE" "$WORK/veil2.log"
wait_count "$VEIL_ACCESS" 3 60 || { tail -20 "$WORK/veil2.log"; fail "access records of run 2"; }
grep -q 'restored 2 profiles' "$WORK/veil2.log" || fail "run 2 restored no profiles: $(grep -i restor "$WORK/veil2.log" | tail -3)"
sleep 1
consume "$VEIL_ACCESS" "$ACCESS_SCHEMA" >"$WORK/access.json"
jq -se 'length == 3' "$WORK/access.json" >/dev/null || fail "want 3 access records: $(cat "$WORK/access.json")"
# Stamped when collected (the first batch's clock was unset: 1970).
jq -se --argjson t "$(( $(date +%s) - 3600 ))000" 'all(.value.ts > $t)' "$WORK/access.json" >/dev/null ||
  fail "access records stamped before the run: $(jq -c .value.ts "$WORK/access.json")"
# u2's: consent in force, and the restored profile listed.
jq -se 'map(select(.value.sections.consent.personalization == "granted" and
                   (.value.sections.context.recent_items // "" | length > 0))) | length == 1' \
  "$WORK/access.json" >/dev/null ||
  fail "u2's access record does not list the restored profile: $(jq -c '.value.sections' "$WORK/access.json")"
# u3's: the grant read after the erasures, no profile.
jq -se 'map(select(.value.sections.consent.personalization == "granted" and
                   ((.value.sections.context // {}) | length == 0))) | length == 1' \
  "$WORK/access.json" >/dev/null ||
  fail "u3's access record misses the grant read later in the catch-up: $(jq -c '.value.sections' "$WORK/access.json")"
# u1's: erased everywhere, the restored profile included.
jq -se 'map(select(.value.sections.consent.personalization != "granted")) | length == 1 and
        ((.[0].value.sections.context // {}) | length == 0)' "$WORK/access.json" >/dev/null ||
  fail "u1's profile came back after the erasure: $(jq -c 'select(.value.sections.consent.personalization != "granted") | .value.sections' "$WORK/access.json")"
ok "erasure and access read at start apply to the restored profiles (4,101 erasures); access waits for the whole catch-up"
stop_veil 20
grep -q '"level":"error"' "$WORK/veil2.log" && fail "errors in the log"
echo "PASS test_consent_restore"

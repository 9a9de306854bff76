#!/usr/bin/env bash
# A partition added to the consent topic while veil runs is read, from its
# beginning, without a restart: a withdrawal and an erasure written to the
# new partition (and only there) stop personalization for the next events.
# Before refresh_sides (core/kafka.c) the side consumer kept the partitions
# it had at start, and such a withdrawal was never applied, silently.
source "$(dirname "$0")/lib.sh"
RECTOOL=${RECTOOL:-$(dirname "$AVROTOOL")/rectool}
CONSENT_SCHEMA="$ROOT/schemas/consent.avsc"

export VEIL_INPUT="consp-in-$SUFFIX" VEIL_CONSENT="consp-consent-$SUFFIX" \
  VEIL_RECS="consp-recs-$SUFFIX" VEIL_AUDIT="consp-audit-$SUFFIX" \
  VEIL_ACCESS="consp-access-$SUFFIX" VEIL_DLQ="consp-dlq-$SUFFIX" \
  VEIL_GROUP="consp-$SUFFIX"
HDR="user_id,kind,purposes.personalization,purposes.training,purposes.analytics,tc_string,gpc,source,ts,_key,_tombstone"
T0=1700000000000

# consent PARTITION CSV: the rows, in file order, to that partition
consent() {
  "$RECTOOL" encode "$CONSENT_SCHEMA" "$2" >"$WORK/consent.bin" || fail "rectool encode"
  kcat -b "$BROKER" -P -Z -t "$VEIL_CONSENT" -p "$1" -K "$KDELIM" -D "$MDELIM" \
    <"$WORK/consent.bin" 2>"$WORK/kcat.err" || { cat "$WORK/kcat.err"; fail "kcat consent -p $1"; }
}
# events PREFIX USER...: 5 events each, event ids PREFIX-USER-k
events() {
  local prefix=$1; shift
  { echo "event_id,ts,user_id,item,qty"
    for u in "$@"; do for k in $(seq 1 5); do
      echo "$prefix-$u-$k,$((1700000000 + k)),$u,item-$k,1"; done; done; } >"$WORK/ev.csv"
  produce "$VEIL_INPUT" "$WORK/ev.csv"
}
tiers() { # PREFIX USER -> the tiers of that user's events, counted
  jq -r --arg p "$1-$2-" 'select(.value.event_id | startswith($p)) | .value.tier' "$WORK/recs.json" | sort | uniq -c | tr -s ' '
}

# --- the ledger on one partition; veil reads it -----------------------
"$RECTOOL" create-topic "$BROKER" "$VEIL_CONSENT" 1 || fail "create the consent topic"
{ echo "$HDR"; for u in u1 u2 u3; do echo "$u,consent,true,true,true,,,app,$T0,,"; done; } >"$WORK/c.csv"
consent 0 "$WORK/c.csv"
start_veil "$ROOT/tests/pipelines/consent.yaml" "$WORK/veil.log"
events a u1 u2 u3
wait_count "$VEIL_RECS" 15 60 || { tail -20 "$WORK/veil.log"; fail "recommendations of batch a"; }
consume "$VEIL_RECS" "$REC_SCHEMA" >"$WORK/recs.json"
for u in u1 u2 u3; do [ "$(tiers a $u)" = " 5 personalized" ] || fail "$u before: $(tiers a $u)"; done
audits=$(count "$VEIL_AUDIT")
ok "one consent partition: u1-u3 personalized ($audits audit records)"

# --- a second partition; the withdrawals only there -------------------
"$RECTOOL" add-partitions "$BROKER" "$VEIL_CONSENT" 2 || fail "add a partition to the consent topic"
added=$SECONDS
# Produced at once, before veil can have seen the partition: it must read
# the new partition from its beginning, not from its end.
{ echo "$HDR"
  echo "u1,,,,,,,,,,true"
  echo "u2,consent,false,true,true,,,app,$((T0 + 1)),,"; } >"$WORK/c.csv"
consent 1 "$WORK/c.csv"
# Both applied (one audit record each) within the refresh period (10 s)
# and some slack.
wait_count "$VEIL_AUDIT" $((audits + 2)) 30 ||
  { tail -5 "$WORK/veil.log"; fail "the withdrawals on the new partition were not applied within 30 s"; }
echo "withdrawals on the new partition applied $((SECONDS - added)) s after adding it"
grep -q "\"side input 'consent': new partition $VEIL_CONSENT \[1\], reading it from the beginning\"" \
  "$WORK/veil.log" || fail "no INFO line for the new partition: $(grep -i partition "$WORK/veil.log" | tail -3)"
[ "$(grep -c "new partition $VEIL_CONSENT \[1\]" "$WORK/veil.log")" = 1 ] || fail "the new partition was logged more than once"
grep "new partition $VEIL_CONSENT \[1\]" "$WORK/veil.log" | grep -q '"level":"info"' || fail "the new partition's line is not at INFO"

events b u1 u2 u3
wait_count "$VEIL_RECS" 25 30 || fail "recommendations of batch b"
sleep 1
consume "$VEIL_RECS" "$REC_SCHEMA" >"$WORK/recs.json"
[ "$(wc -l <"$WORK/recs.json")" -eq 25 ] || fail "want 25 recommendations (u1's 5 events of batch b dropped), got $(wc -l <"$WORK/recs.json")"
[ -z "$(tiers b u1)" ] || fail "u1 after the erasure on the new partition: $(tiers b u1)"
[ "$(tiers b u2)" = " 5 contextual" ] || fail "u2 after the withdrawal on the new partition: $(tiers b u2)"
[ "$(tiers b u3)" = " 5 personalized" ] || fail "u3: $(tiers b u3)"
ok "new partition: u1 erased, u2's personalization withdrawn, u3 unchanged"

stop_veil 20
grep -q '"level":"error"' "$WORK/veil.log" && fail "errors in the log"
[ "$(count "$VEIL_DLQ")" = 0 ] || fail "dead letters"
echo "PASS test_consent_partitions"

#!/usr/bin/env bash
# DP steps by the events' own times (step_time: event) on the real broker:
# events stamped now join their steps and are learned; events stamped an
# hour ago are late for every step still open, so they are served but not
# learned, and counted; steps are released once their lateness has passed.
source "$(dirname "$0")/lib.sh"

export VEIL_INPUT="evs-in-$SUFFIX" VEIL_RECS="evs-recs-$SUFFIX" \
  VEIL_DLQ="evs-dlq-$SUFFIX" VEIL_GROUP="evs-$SUFFIX" VEIL_ACCOUNTANT="$WORK/acc"
topic "$VEIL_INPUT"
start_veil "$ROOT/tests/pipelines/event_steps.yaml" "$WORK/veil.log"
wait_log "$WORK/veil.log" '"assigned [0-9]* partition' 60 || fail "no partitions assigned"
grep -q "steps of 6s on the clock, by the events' times, released 3s late" "$WORK/veil.log" ||
  fail "not by the events' times: $(grep -o 'gaussian mechanism[^"]*' "$WORK/veil.log" | head -1)"

# events FILE STAMP N FIRST: N events of users FIRST.. stamped STAMP (s)
# (awk reads the whole file: a head closing the pipe early would be a
# SIGPIPE, which pipefail turns into a failure)
items=($(awk -F, 'NR > 1 && NR <= 51 { gsub(/"/, "", $1); print $1 }' "$ROOT/config/demo/items.csv"))
events() {
  { echo "ts,user_id,item,qty,invoice,country"
    for i in $(seq 0 $(($3 - 1))); do
      echo "$2,u$(($4 + i)),${items[$((i % 50))]},1,$(($4 + i)),United Kingdom"
    done; } >"$1"
}
# step_start: the current second, once it is the first of a 6 s step
# (steps are epoch-aligned: time / 6 s). Events stamped then stay in an open
# step for 9 s (6 + 3 s of lateness); stamped in a step's last second they
# had as little as 3 s to be read, and a loaded machine made them late.
step_start() {
  local t
  until t=$(date +%s); [ $((t % 6)) -eq 0 ]; do sleep 0.1; done
  echo "$t"
}
events "$WORK/old.csv" "$(($(date +%s) - 3600))" 50 2000
events "$WORK/fresh.csv" "$(step_start)" 200 1000
produce "$VEIL_INPUT" "$WORK/fresh.csv"
produce "$VEIL_INPUT" "$WORK/old.csv"
wait_count "$VEIL_RECS" 250 60 || fail "recommendations"
# A release needs a batch past the step's end and lateness: more events,
# stamped at their time, after 10 s (past one step of 6 s and 3 s late).
sleep 10
events "$WORK/later.csv" "$(date +%s)" 10 3000
produce "$VEIL_INPUT" "$WORK/later.csv"
wait_count "$VEIL_RECS" 260 30 || fail "recommendations of the later events"
addr=$(grep -o '"address":"[^"]*"' "$WORK/veil.log" | sed -n '1s/.*:"\(.*\)"/\1/p')
curl -sf "http://$addr/metrics" >"$WORK/metrics" || fail "/metrics at $addr"
gauge() { sed -n "s/^veil_plugin_dp_model_$1{[^}]*} //p" "$WORK/metrics"; }
learned=$(gauge events_learned) late=$(gauge not_learned_late) steps=$(gauge noisy_steps)
early=$(gauge not_learned_early)
[ "$late" = 50 ] || fail "not_learned_late is '$late', want the 50 events of an hour ago"
[ "$early" = 0 ] || fail "not_learned_early is '$early'"
awk -v l="$learned" 'BEGIN { exit !(l >= 200 && l <= 210) }' ||
  fail "events_learned is '$learned', want the 200 fresh events (and up to 10 later ones)"
awk -v s="$steps" 'BEGIN { exit !(s >= 1) }' || fail "noisy_steps is '$steps'"
ok "learned $learned events stamped now, 50 of an hour ago late; $steps steps released"
stop_veil 20
acc_steps=$("$VEIL" dp_model accountant --file "$VEIL_ACCOUNTANT" --delta 1e-8 | sed -n 's/^steps=//p')
[ "$acc_steps" -ge "$steps" ] || fail "the accountant file says $acc_steps steps, /metrics said $steps"
echo "PASS test_event_steps"

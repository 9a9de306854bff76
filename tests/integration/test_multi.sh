#!/usr/bin/env bash
# Scale-out: three `veil run` instances of the flow pipeline share one
# consumer group on a 3-partition input. Each gets a partition; one is
# killed with SIGKILL mid-stream; the two survivors take over its partition
# (their "assigned" log lines) and every event still has an output
# (at-least-once: the dead instance's uncommitted batches are read again).
source "$(dirname "$0")/lib.sh"

export VEIL_INPUT="multi-in-$SUFFIX" VEIL_OUTPUT="multi-out-$SUFFIX" \
  VEIL_RECS="multi-recs-$SUFFIX" VEIL_DLQ="multi-dlq-$SUFFIX" VEIL_GROUP="multi-$SUFFIX"
N=10000
awk -F, -v n=$N 'NR==1 {print "event_id," $0; next} NR<=n+1 {print "e" NR-1 "," $0}' \
  "$ROOT/config/demo/events.csv" >"$WORK/events.csv"
tail -n +2 "$WORK/events.csv" | split -l 1000 - "$WORK/chunk."
for c in "$WORK"/chunk.??; do { head -1 "$WORK/events.csv"; cat "$c"; } >"$c.csv"; done
topic "$VEIL_INPUT"
produce "$VEIL_INPUT" "$WORK/chunk.aa.csv"

# net LOG: partitions the instance holds now, from its log lines
net() {
  awk '/"assigned [0-9]+ partition/ {match($0, /assigned [0-9]+/); a += substr($0, RSTART + 9, RLENGTH - 9)}
       /"revoking [0-9]+ partition/ {match($0, /revoking [0-9]+/); a -= substr($0, RSTART + 9, RLENGTH - 9)}
       END {print a + 0}' "$1"
}

PIDS=()
for i in 1 2 3; do
  VEIL_INSTANCE_ID="i$i" start_veil "$ROOT/tests/pipelines/flow.yaml" "$WORK/veil$i.log"
  PIDS+=("$VEIL_PID")
done
deadline=$((SECONDS + 30))
until [ "$(net "$WORK/veil1.log")" -eq 1 ] && [ "$(net "$WORK/veil2.log")" -eq 1 ] &&
  [ "$(net "$WORK/veil3.log")" -eq 1 ]; do
  [ $SECONDS -lt $deadline ] ||
    fail "partitions not spread over the three instances: $(net "$WORK/veil1.log") $(net "$WORK/veil2.log") $(net "$WORK/veil3.log")"
  sleep 0.5
done
ok "one partition per instance"

# The rest of the input arrives while instance 2 dies.
(
  for c in "$WORK"/chunk.??.csv; do
    [ "$c" = "$WORK/chunk.aa.csv" ] && continue
    produce "$VEIL_INPUT" "$c"
    sleep 0.4
  done
) &
FEEDER=$!
sleep 1.5
kill -9 "${PIDS[1]}"
wait "${PIDS[1]}" 2>/dev/null || true
wait "$FEEDER" || fail "the producer failed"
# The group notices after session.timeout.ms (6 s).
deadline=$((SECONDS + 30))
until [ $(($(net "$WORK/veil1.log") + $(net "$WORK/veil3.log"))) -eq 3 ]; do
  [ $SECONDS -lt $deadline ] || fail "the survivors did not take over: $(net "$WORK/veil1.log") + $(net "$WORK/veil3.log") partitions"
  sleep 0.5
done
ok "survivors hold $(net "$WORK/veil1.log") + $(net "$WORK/veil3.log") partitions after the SIGKILL"

wait_count "$VEIL_OUTPUT" $N 40 || fail "the output never caught up"
sleep 1
for i in 1 3; do VEIL_PID=${PIDS[$((i - 1))]}; stop_veil 20; done
consume "$VEIL_OUTPUT" "$SCHEMA" | jq -r '.value.event_id' | sort -u >"$WORK/seen"
missing=$(tail -n +2 "$WORK/events.csv" | cut -d, -f1 | sort | comm -23 - "$WORK/seen" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing input events have no output"
total=$(count "$VEIL_OUTPUT")
ok "all $N events have an output ($((total - N)) duplicates)"
for i in 1 3; do
  grep -q '"level":"error"' "$WORK/veil$i.log" && fail "errors in the log of instance $i"
done
echo "PASS test_multi"

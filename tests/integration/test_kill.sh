#!/usr/bin/env bash
# At-least-once: a host killed with SIGKILL mid-stream and restarted leaves no
# input event without its output.
source "$(dirname "$0")/lib.sh"

export VEIL_INPUT="kill-in-$SUFFIX" VEIL_OUTPUT="kill-out-$SUFFIX" \
  VEIL_RECS="kill-recs-$SUFFIX" VEIL_DLQ="kill-dlq-$SUFFIX" VEIL_GROUP="kill-$SUFFIX"
N=20000
# Event ids e1..eN in a column of their own, so that chunks keep them.
awk -F, 'NR==1 {print "event_id," $0; next} {print "e" NR-1 "," $0}' \
  "$ROOT/config/demo/events.csv" >"$WORK/events.csv"
# The producer feeds the input in 20 chunks, one every 0.5 s, while the host
# is killed at random moments and restarted.
tail -n +2 "$WORK/events.csv" | split -l 1000 - "$WORK/chunk."
(
  for c in "$WORK"/chunk.??; do
    { head -1 "$WORK/events.csv"; cat "$c"; } >"$c.csv"
    produce "$VEIL_INPUT" "$c.csv"
    sleep 0.5
  done
) &
FEEDER=$!
kills=0
while kill -0 "$FEEDER" 2>/dev/null; do
  start_veil "$ROOT/tests/pipelines/flow.yaml" "$WORK/veil.log"
  sleep "$((1 + RANDOM % 3)).$((RANDOM % 10))"
  kill -9 "$VEIL_PID"
  wait "$VEIL_PID" 2>/dev/null || true
  kills=$((kills + 1))
done
wait "$FEEDER" || fail "the producer failed"
out_before=$(count "$VEIL_OUTPUT")
[ "$kills" -ge 3 ] || fail "only $kills kills"
ok "killed veil $kills times with SIGKILL while producing ($out_before events out so far)"
start_veil "$ROOT/tests/pipelines/flow.yaml" "$WORK/veil.log"
wait_count "$VEIL_OUTPUT" $N 120 || fail "the output never caught up"
# Let the last batches land, then stop cleanly.
sleep 2
stop_veil 20
consume "$VEIL_OUTPUT" "$SCHEMA" | jq -r '.value.event_id' | sort -u >"$WORK/seen"
missing=$(tail -n +2 "$WORK/events.csv" | cut -d, -f1 | sort | comm -23 - "$WORK/seen" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing input events have no output"
total=$(count "$VEIL_OUTPUT")
ok "all $N events have an output ($((total - N)) duplicates after $kills kills)"
echo "PASS test_kill"

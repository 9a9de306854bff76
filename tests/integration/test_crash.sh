#!/usr/bin/env bash
# Crash test, both guarantees: N >= 100,000 events (every 500th followed by a
# malformed record) are produced while the host is killed with SIGKILL at
# random moments (at least 10 times) and restarted. exactly-once: every input
# event has exactly one recommendation in the read_committed view;
# at-least-once: at least one. Both: the dead-letter topic holds exactly the
# malformed records (distinct by source offset; exactly-once: no duplicate
# either), and the ε the model's accountant has spent, read after every
# kill, never goes down.
# GUARANTEES="exactly-once" or N=... narrow it down.
source "$(dirname "$0")/lib.sh"

N=${N:-100000}
CHUNKS=${CHUNKS:-20}
GARBAGE_EVERY=500
KCAT_OPTS=(-X isolation.level=read_committed)
REC_SCHEMA="$ROOT/schemas/recommendation.avsc"
# epsilon: what the accountant file says (0 before the first release).
epsilon() {
  [ -s "$VEIL_ACCOUNTANT" ] || { echo 0; return; }
  "$VEIL" dp_model accountant --file "$VEIL_ACCOUNTANT" --delta 1e-8 | sed -n 's/^epsilon=//p'
}
# Event ids e1..eN in a column of their own, the demo events repeated.
awk -F, -v n="$N" 'NR==1 {h="event_id," $0; next} {r[++m]=$0}
  END {print h; for (i = 1; i <= n; i++) print "e" i "," r[(i - 1) % m + 1]}' \
  "$ROOT/config/demo/events.csv" >"$WORK/events.csv"
tail -n +2 "$WORK/events.csv" >"$WORK/body"
split -n "l/$CHUNKS" -a 3 "$WORK/body" "$WORK/chunk."
for c in "$WORK"/chunk.???; do
  { head -1 "$WORK/events.csv"; cat "$c"; } >"$c.csv"
  "$AVROTOOL" encode "$SCHEMA" "$c.csv" "$GARBAGE_EVERY" >"$c.bin"
done
garbage=$(cat "$WORK"/chunk.???.bin | grep -a -o 'garbage-[0-9]*' | wc -l)

run_one() {
  local g=$1 tag=${1%%-*}
  export VEIL_GUARANTEE="$g" VEIL_INPUT="crash-in-$tag-$SUFFIX" \
    VEIL_OUTPUT="crash-out-$tag-$SUFFIX" VEIL_DLQ="crash-dlq-$tag-$SUFFIX" \
    VEIL_GROUP="crash-$tag-$SUFFIX" VEIL_ACCOUNTANT="$WORK/acc-$tag"
  local log="$WORK/veil-$tag.log" t0=$SECONDS eps=0 e
  # The producer feeds the chunks one every 0.4 s while veil is killed.
  (
    for c in "$WORK"/chunk.???.bin; do
      kcat -b "$BROKER" -P -t "$VEIL_INPUT" -K "$KDELIM" -D "$MDELIM" -z snappy <"$c" ||
        exit 1
      sleep 0.4
    done
  ) &
  local feeder=$! kills=0
  # At least 10 kills, the later ones after the producer finished.
  while kill -0 "$feeder" 2>/dev/null || [ "$kills" -lt 10 ]; do
    start_veil "$ROOT/tests/pipelines/crash.yaml" "$log"
    # A restarted instance waits for its killed predecessor to leave the
    # group (session.timeout.ms 6 s) before it is assigned partitions: long
    # enough lives that many kills land mid-stream.
    sleep "$((2 + RANDOM % 7)).$((RANDOM % 10))"
    kill -9 "$VEIL_PID"
    wait "$VEIL_PID" 2>/dev/null || true
    kills=$((kills + 1))
    e=$(epsilon)
    [ -n "$e" ] || fail "$g: the accountant file is unreadable after kill $kills"
    awk -v a="$e" -v b="$eps" 'BEGIN { exit !(a + 0 >= b + 0) }' ||
      fail "$g: epsilon went down from $eps to $e after kill $kills"
    eps=$e
  done
  wait "$feeder" || fail "$g: the producer failed"
  local before
  before=$(count "$VEIL_OUTPUT")
  ok "$g: killed veil $kills times with SIGKILL while producing $N events ($garbage malformed, $before outputs committed by then)"
  start_veil "$ROOT/tests/pipelines/crash.yaml" "$log"
  wait_count "$VEIL_OUTPUT" "$N" 120 || fail "$g: the output never caught up"
  sleep 3
  stop_veil 30
  e=$(epsilon)
  awk -v a="$e" -v b="$eps" 'BEGIN { exit !(a + 0 >= b + 0 && a + 0 > 0) }' ||
    fail "$g: epsilon at the end $e, after the kills $eps"
  ok "$g: epsilon spent only grew over the $kills kills, to $e"
  consume "$VEIL_OUTPUT" "$REC_SCHEMA" | jq -r '.value.event_id' | sort >"$WORK/seen-$tag"
  local total distinct missing dlq dlq_distinct
  total=$(wc -l <"$WORK/seen-$tag")
  distinct=$(sort -u "$WORK/seen-$tag" | wc -l)
  missing=$(tail -n +2 "$WORK/events.csv" | cut -d, -f1 | sort | comm -23 - <(sort -u "$WORK/seen-$tag") | wc -l)
  [ "$missing" -eq 0 ] || fail "$g: $missing input events have no output"
  kcat -b "$BROKER" "${KCAT_OPTS[@]}" -C -t "$VEIL_DLQ" -o beginning -e -q \
    -f '%k %h\n' 2>/dev/null >"$WORK/dlq-$tag" || true
  dlq=$(wc -l <"$WORK/dlq-$tag")
  dlq_distinct=$(grep -o 'veil.source.partition=[0-9]*,veil.source.offset=[0-9]*' "$WORK/dlq-$tag" | sort -u | wc -l)
  dlq_keys=$(cut -d' ' -f1 "$WORK/dlq-$tag" | sort -u | wc -l)
  grep -v -q '^garbage-' "$WORK/dlq-$tag" && fail "$g: a dead letter that was not sent malformed"
  [ "$dlq_distinct" -eq "$garbage" ] ||
    fail "$g: $dlq_distinct distinct dead letters for $garbage malformed records"
  if [ "$g" = exactly-once ]; then
    [ "$total" -eq "$N" ] || fail "$g: $total outputs for $N events ($((total - distinct)) duplicates)"
    [ "$dlq" -eq "$garbage" ] || fail "$g: $dlq dead letters for $garbage malformed records"
    ok "$g: exactly one output per event ($N) and one dead letter per malformed record ($garbage) after $kills kills, $((SECONDS - t0)) s"
  else
    ok "$g: every event has an output ($((total - N)) duplicates, $((dlq - garbage)) duplicate dead letters) after $kills kills, $((SECONDS - t0)) s"
  fi
  echo "crash-test $g: N=$N kills=$kills outputs=$total dead_letters=$dlq malformed=$garbage epsilon=$e" >>"$WORK/summary"
}

for g in ${GUARANTEES:-exactly-once at-least-once}; do run_one "$g"; done
cat "$WORK/summary"
echo "PASS test_crash"

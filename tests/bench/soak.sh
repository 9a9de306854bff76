#!/usr/bin/env bash
# Soak: veil under a steady load on the real test broker for DURATION
# seconds (default 600) at RATE events/s (default 10000, about half of what
# the host sustains here), sampling its RSS every 10 s. Prints the samples,
# the RSS after warm-up (the first 20% of the run) and the largest change
# after it. A documented run, not a CI test:
#   tests/bench/soak.sh [DURATION] [RATE]
# Needs a build (build/veil, build/avrotool) and starts the broker of
# deploy/local/kafka when none is running on VEIL_KAFKA_PORT (19092).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${1:-600}
RATE=${2:-10000}
export ROOT VEIL=${VEIL:-$ROOT/build/veil} AVROTOOL=${AVROTOOL:-$ROOT/build/avrotool}
source "$ROOT/tests/integration/lib.sh"
started=0
if ! kcat -b "$BROKER" -L -m 2 >/dev/null 2>&1; then
  "$ROOT/deploy/local/kafka/kafka.sh" start >/dev/null
  "$ROOT/deploy/local/kafka/kafka.sh" wait-ready 60 >/dev/null
  started=1
fi
stop_broker() { [ "$started" = 1 ] && "$ROOT/deploy/local/kafka/kafka.sh" stop >/dev/null || true; }
trap 'cleanup; stop_broker' EXIT

export VEIL_INPUT="soak-in-$SUFFIX" VEIL_OUTPUT="soak-out-$SUFFIX" \
  VEIL_RECS="soak-recs-$SUFFIX" VEIL_DLQ="soak-dlq-$SUFFIX" VEIL_GROUP="soak-$SUFFIX"
# One second of load: RATE events from the demo data (repeated as needed).
{ head -1 "$ROOT/config/demo/events.csv"
  for _ in $(seq $(( (RATE + 19999) / 20000 ))); do tail -n +2 "$ROOT/config/demo/events.csv"; done |
    awk -v n="$RATE" 'NR <= n'; } >"$WORK/second.csv"
"$AVROTOOL" encode "$SCHEMA" "$WORK/second.csv" >"$WORK/second.bin"

start_veil "$ROOT/tests/pipelines/flow.yaml" "$WORK/veil.log"
end=$((SECONDS + DURATION))
(
  while [ $SECONDS -lt $end ]; do
    t0=$(date +%s%N)
    kcat -b "$BROKER" -P -t "$VEIL_INPUT" -K "$KDELIM" -D "$MDELIM" <"$WORK/second.bin" 2>/dev/null
    left=$(( 1000000000 - ($(date +%s%N) - t0) ))
    [ $left -gt 0 ] && sleep "0.$(printf '%09d' $left)"
  done
) &
feeder=$!
printf '%6s %10s\n' "t(s)" "RSS(KiB)"
samples=()
t=0
while [ $SECONDS -lt $end ]; do
  sleep 10
  t=$((t + 10))
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$VEIL_PID/status")
  samples+=("$rss")
  printf '%6d %10d\n' "$t" "$rss"
done
wait "$feeder" || true
stop_veil 30
in=$(count "$VEIL_INPUT"); out=$(count "$VEIL_OUTPUT")
n=${#samples[@]}
warm=$(( n / 5 > 0 ? n / 5 : 1 ))
base=${samples[$((warm - 1))]}
max=$base; min=$base
for ((i = warm; i < n; i++)); do
  [ "${samples[$i]}" -gt "$max" ] && max=${samples[$i]}
  [ "${samples[$i]}" -lt "$min" ] && min=${samples[$i]}
done
echo "soak: ${DURATION} s at ${RATE} events/s; ${in} events in, ${out} out"
awk -v b="$base" -v mx="$max" -v mn="$min" 'BEGIN {
  printf "RSS after warm-up %d KiB; after it: min %d, max %d KiB (%+.1f%% / %+.1f%%)\n",
    b, mn, mx, 100 * (mn - b) / b, 100 * (mx - b) / b }'

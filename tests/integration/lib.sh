# Shared by the integration tests: a real broker (deploy/local/kafka), kcat as
# the independent producer and consumer, avrotool to turn CSV into Avro and
# Avro back into JSON. Sourced; expects VEIL, AVROTOOL and ROOT from ctest.
set -euo pipefail

BROKER="127.0.0.1:${VEIL_KAFKA_PORT:-19092}"
# Extra kcat options for every call below (-X security.protocol=... on a
# secured listener); a test sets it after sourcing this file.
KCAT_OPTS=()
SCHEMA="$ROOT/schemas/interaction.avsc"
REC_SCHEMA="$ROOT/schemas/recommendation.avsc"
KDELIM='\x1f|K|\x1f'
MDELIM='\x1e|M|\x1e'
FRAME='%p\t%o\t%K\t%k%R%s%h\n'
WORK=$(mktemp -d /tmp/veil-it-XXXXXX)
SUFFIX="$(date +%s)-$$-$RANDOM"
VEIL_PIDS=()

cleanup() {
  for p in "${VEIL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# topic NAME PARTITIONS: creates the topic (kcat has no admin API: producing
# an empty-keyed probe would pollute it, so rely on auto-create with the
# broker's num.partitions=3 by asking for metadata of the topic).
topic() { kcat -b "$BROKER" "${KCAT_OPTS[@]}" -L -t "$1" >/dev/null 2>&1 || true; }

# produce TOPIC CSV [GARBAGE_EVERY]
produce() {
  "$AVROTOOL" encode "$SCHEMA" "$2" "${3:-0}" >"$WORK/produce.bin"
  kcat -b "$BROKER" "${KCAT_OPTS[@]}" -P -t "$1" -K "$KDELIM" -D "$MDELIM" -z snappy \
    <"$WORK/produce.bin" 2>"$WORK/kcat-produce.err" ||
    { cat "$WORK/kcat-produce.err" >&2; fail "kcat could not produce to $1"; }
}

# consume TOPIC SCHEMA > json lines (everything up to the end now)
consume() {
  kcat -b "$BROKER" "${KCAT_OPTS[@]}" -C -t "$1" -o beginning -e -q -f "$FRAME" 2>/dev/null |
    "$AVROTOOL" decode "$2"
}

# count TOPIC: records in the topic now
# (0 while the topic does not exist yet: kcat fails, and under pipefail that
# must not end the test)
count() {
  local n
  n=$(kcat -b "$BROKER" "${KCAT_OPTS[@]}" -C -t "$1" -o beginning -e -q -f 'x\n' 2>/dev/null | wc -l) || true
  echo "${n:-0}"
}

# wait_count TOPIC N SECONDS: until the topic holds at least N records
wait_count() {
  local deadline=$((SECONDS + $3)) n=0
  while [ $SECONDS -lt "$deadline" ]; do
    n=$(count "$1")
    [ "$n" -ge "$2" ] && return 0
    sleep 1
  done
  echo "only $n of $2 records in $1 after $3 s" >&2
  return 1
}

# wait_log LOG PATTERN SECONDS: until a line of LOG matches PATTERN (grep's
# basic syntax); else its last lines on stderr and status 1
wait_log() {
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge "$deadline" ]; then
      echo "no line matching '$2' in $1 after $3 s:" >&2
      tail -n 5 "$1" >&2
      return 1
    fi
    sleep 0.5
  done
}

# start_veil PIPELINE LOG: in the background; the pid lands in VEIL_PID
start_veil() {
  KAFKA_BOOTSTRAP="$BROKER" "$VEIL" run "$1" --log-level info 2>>"$2" &
  VEIL_PID=$!
  VEIL_PIDS+=("$VEIL_PID")
}

# stop_veil SECONDS: SIGTERM, and the exit code must be 0 within SECONDS
stop_veil() {
  kill -TERM "$VEIL_PID"
  local deadline=$((SECONDS + $1))
  while kill -0 "$VEIL_PID" 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || fail "veil did not exit within $1 s of SIGTERM"
    sleep 0.2
  done
  local rc=0
  wait "$VEIL_PID" || rc=$?
  [ "$rc" -eq 0 ] || fail "veil exited with $rc after SIGTERM"
}

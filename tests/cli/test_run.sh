#!/usr/bin/env bash
# `veil run` on the embedded broker, started and stopped as an operator
# does: a SIGTERM or SIGHUP while the plugins start does not kill it (it
# stops cleanly, exit 0, or reloads later), and the YAML's log level holds
# from the first line, the plugins' set-up lines included.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VEIL=${VEIL:?}
fails=0 passes=0
pass() { passes=$((passes + 1)); echo "ok $1"; }
failed() { fails=$((fails + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && head -5 <<<"$2"; }
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
export VEIL_HTTP_LISTEN=127.0.0.1:0 VEIL_DEMO_ACCOUNTANT="$tmp/dp.acc"
unset VEIL_LOG_LEVEL KAFKA_BOOTSTRAP

# pipeline LEVEL: the demo pipeline (embedded broker) with log.level LEVEL
pipeline() {
  { echo "log: {level: $1}"
    sed -e "s#\.\./\.\./schemas/#$root/schemas/#g" -e "s#\.\./demo/#$root/config/demo/#g" \
      "$root/config/pipelines/demo.yaml"; } >"$tmp/p.yaml"
}
# run SIGNAL DELAY: start, send SIGNAL after DELAY s, then SIGTERM after 4 s
# more if still running; the exit code in $rc, stderr in $tmp/log
run() {
  "$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
  pid=$!
  sleep "$2"
  kill "-$1" "$pid"
  alive=0
  sleep 4
  if kill -0 "$pid" 2>/dev/null; then alive=1; kill -TERM "$pid"; fi
  rc=0
  wait "$pid" || rc=$?
  pid=
}

pipeline info
run TERM 0.2
if [ "$rc" -eq 0 ] && grep -q '"message":"stopped' "$tmp/log"; then
  pass "SIGTERM during start-up: a clean stop, exit 0"
else failed "SIGTERM during start-up: exit $rc" "$(cat "$tmp/log")"; fi

run HUP 0.2
if [ "$alive" = 1 ] && [ "$rc" -eq 0 ]; then
  pass "SIGHUP during start-up: still running, then a clean stop"
else failed "SIGHUP during start-up: alive $alive, exit $rc" "$(cat "$tmp/log")"; fi

# The info run above logged the plugins' set-up (dp_model's mechanism line);
# with log.level warn nothing at info appears, from the first line on.
if grep -q '"level":"info","message":"gaussian mechanism' "$tmp/log"; then
  pass "log.level info: the plugins' set-up lines"
else failed "log.level info: no set-up line" "$(cat "$tmp/log")"; fi
pipeline warn
run TERM 3
if [ "$rc" -eq 0 ] && ! grep -q '"level":"info"' "$tmp/log"; then
  pass "log.level warn: no info line, the plugins' set-up included"
else failed "log.level warn: exit $rc" "$(grep '"level":"info"' "$tmp/log")"; fi

# A reload to a file without a log: section goes back to info.
pipeline warn
"$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
pid=$!
sleep 3
sed -i '/^log: /d' "$tmp/p.yaml"
kill -HUP "$pid"; sleep 2
kill -HUP "$pid"; sleep 2
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=
if [ "$rc" -eq 0 ] && grep -q '"level":"info","message":"reloading' "$tmp/log"; then
  pass "a reload that removes log: goes back to info"
else failed "reload without log: (exit $rc)" "$(cat "$tmp/log")"; fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]

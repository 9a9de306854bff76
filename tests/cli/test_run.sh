#!/usr/bin/env bash
# `veil run` on the embedded broker, started and stopped as an operator
# does: a SIGTERM or SIGHUP while the plugins start does not kill it (it
# stops cleanly, exit 0, or reloads later), and the YAML's log level holds
# from the first line, the plugins' set-up lines included; clients that
# trickle their headers from one address do not shut the probes out.
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

# served_on ERE: what its group matches in the ops server's address line
# of $tmp/log, once it is there (up to 5 s)
served_on() {
  local v=
  for _ in $(seq 50); do
    v=$(sed -nE "s/.*serving \\/metrics, \\/healthz and \\/readyz on $1.*/\\1/p" "$tmp/log" | head -1)
    [ -n "$v" ] && break
    sleep 0.1
  done
  echo "$v"
}
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

# The properties the delivery guarantees rest on are in effect on every
# client the host makes (kafka_guard.c), as librdkafka's own dump of each
# client's configuration (debug: conf) shows them.
pipeline debug
sed -i 's/^  guarantee: at-least-once$/&\n  settings: {debug: conf}/' "$tmp/p.yaml"
# (state: needs key files: the privacy lint refuses an ephemeral key)
"$VEIL" pseudonymize keygen "$tmp/kst" >/dev/null 2>&1
sed -i "s#^keys: {ephemeral: true}#keys: {active: k1, files: {k1: $tmp/kst}}#" "$tmp/p.yaml"
echo "state: {topic: st}" >>"$tmp/p.yaml"
"$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
pid=$!
# The side reader is the last client made: wait for its dump (up to 20 s;
# a build under AddressSanitizer starts slowly), then stop.
for _ in $(seq 200); do
  grep -q 'group.id = veil-demo.side' "$tmp/log" && break
  sleep 0.1
done
sleep 0.5
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=
# One line per client: its group (or "producer") and its non-default
# properties, from the dump's "Client configuration:" and "Default topic
# configuration:" blocks.
clients=$(sed -n 's/.*librdkafka CONF: \[thrd:[a-z]*\]: \(.*\)"}$/\1/p' "$tmp/log" |
  awk '/^Client configuration:/ { if (c) print c; c = "" ; next }
       /^Topic / { if (c) print c; c = ""; next }
       /^  group.id = / { c = $3 " " c; next }
       /^  dr_msg_cb = / { c = "producer " c; next }
       /^  / { c = c " " $1 "=" $3 }
       END { if (c) print c }')
guards_ok=1
for want in "producer .*enable.idempotence=true" "producer .*request.required.acks=-1" \
            "veil-demo .*enable.auto.commit=false" "veil-demo .*enable.auto.offset.store=false" \
            "veil-demo .*isolation.level=read_committed" \
            "veil-demo.side .*enable.auto.commit=false" "veil-demo.side .*isolation.level=read_committed" \
            "veil-demo.state .*enable.auto.commit=false" "veil-demo.state .*isolation.level=read_committed"; do
  grep -qE "^$want( |$)" <<<"$clients" || { guards_ok=0; echo "  missing: $want"; }
done
if [ "$guards_ok" = 1 ] && [ "$(grep -c . <<<"$clients")" -ge 4 ]; then
  pass "the guarded properties on the producer and the three consumers"
else failed "guarded properties: exit $rc" "$clients"; fi

# A reload to a file without a log: section goes back to info.
pipeline warn
"$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
pid=$!
sleep 3
sed -i '/^log: /d' "$tmp/p.yaml"
kill -HUP "$pid"; sleep 2
kill -HUP "$pid"; sleep 2
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=
# The new stages start under the new file's level: their set-up lines
# (dp_model's mechanism line) are logged at both reloads, the first from
# warn included.
if [ "$rc" -eq 0 ] && grep -q '"level":"info","message":"reloading' "$tmp/log" &&
   [ "$(grep -c '"level":"info","message":"gaussian mechanism' "$tmp/log")" -eq 2 ]; then
  pass "a reload that removes log: goes back to info, the new stages' set-up included"
else failed "reload without log: (exit $rc)" "$(cat "$tmp/log")"; fi

# A reload to log.level error starts its stages under it: none of their
# info set-up lines. One refused (kafka.group) puts the running level
# back: the next reload's "reloading" line is still logged.
pipeline info
"$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
pid=$!
addr=$(served_on '([0-9.]+:[0-9]+)')
sleep 2
sed -i -e 's/^log: .*/log: {level: error}/' -e 's/^  group: .*/  group: another-group/' "$tmp/p.yaml"
kill -HUP "$pid"; sleep 2
pipeline error
kill -HUP "$pid"; sleep 2
metrics=$(curl -s --max-time 5 "http://$addr/metrics")
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=
n=$(grep -c '"message":"gaussian mechanism' "$tmp/log")
r=$(grep -c '"level":"info","message":"reloading' "$tmp/log")
if [ "$rc" -eq 0 ] && [ "$n" -eq 1 ] && [ "$r" -eq 2 ] &&
   grep -q '^veil_reloads_total 1$' <<<"$metrics" &&
   grep -q '^veil_reload_failures_total 1$' <<<"$metrics"; then
  pass "a reload to log.level error: the new stages start under it; a refused one keeps the level"
else failed "reload to error: exit $rc, $n set-up lines, $r reloading lines" "$(grep -E 'gaussian|reload' "$tmp/log"; grep reload <<<"$metrics")"; fi

# A reload refused for a change that needs a restart (kafka.group) starts
# none of the new stages: their set-up lines (dp_model's mechanism line)
# appear once, from the start, and never for the refused file.
pipeline info
"$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
pid=$!
sleep 3
sed -i 's/^  group: .*/  group: another-group/' "$tmp/p.yaml"
kill -HUP "$pid"; sleep 2
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=
n=$(grep -c '"message":"gaussian mechanism' "$tmp/log")
if [ "$rc" -eq 0 ] && [ "$n" -eq 1 ] && grep -q 'kafka.group changed from' "$tmp/log"; then
  pass "a reload refused for kafka.group starts no new stage"
else failed "refused reload: exit $rc, $n set-up lines" "$(grep -E 'gaussian|restart' "$tmp/log")"; fi

# Key files are read again at a reload and must give the running keys
# back: the stages keep their state, held under them. An unchanged key and
# an added one reload; a key whose file changed in place (a Secret rotated
# under the same id) is refused, and the process runs on.
pipeline info
"$VEIL" pseudonymize keygen "$tmp/k1" >/dev/null 2>&1
sed -i "s#^keys: {ephemeral: true}#keys: {active: k1, files: {k1: $tmp/k1}}#" "$tmp/p.yaml"
"$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
pid=$!
sleep 3
"$VEIL" pseudonymize keygen "$tmp/k2" >/dev/null 2>&1
sed -i "s#^keys: .*#keys: {active: k2, files: {k1: $tmp/k1, k2: $tmp/k2}}#" "$tmp/p.yaml"
kill -HUP "$pid"; sleep 2
rm -f "$tmp/k1"; "$VEIL" pseudonymize keygen "$tmp/k1" >/dev/null 2>&1
kill -HUP "$pid"; sleep 2
alive=0; kill -0 "$pid" 2>/dev/null && alive=1
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=
if [ "$alive" = 1 ] && [ "$rc" -eq 0 ] && [ "$(grep -c '"message":"reloaded' "$tmp/log")" -eq 1 ] &&
   grep -q "reload failed, the running pipeline stays: .*p.yaml: key 'k1' is not the running one (its file changed)" "$tmp/log"; then
  pass "a reload keeps the running keys: one added reloads, one changed in place is refused"
else failed "reload of key files: alive $alive, exit $rc" "$(grep -E 'reload|key' "$tmp/log")"; fi

# A listen host that cannot be a name (an empty label: no resolver is
# asked, so no network is needed) is the file's error: exit 2, like the
# rest of the file's; a resolver that does not answer is exit 1.
pipeline info
rc=0; VEIL_HTTP_LISTEN='bad..host:0' timeout 60 "$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" || rc=$?
if [ "$rc" -eq 2 ] && grep -q "p.yaml:[0-9]*:[0-9]*: http: listen 'bad..host:0': cannot resolve" "$tmp/log"; then
  pass "an impossible listen host: exit 2, the file's place named"
else failed "impossible listen host: exit $rc" "$(cat "$tmp/log")"; fi

# The ops server under clients that trickle their headers: one address
# holds at most 8 connections, so the kubelet's probes (another address,
# here 127.0.0.2) still get through; it took all 64 slots before.
pipeline info # for the line that gives the address
"$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
pid=$!
addr=$(served_on '([0-9.]+:[0-9]+)')
fds=()
trap '' PIPE # the server closes the connections past its limit
for _ in $(seq 70); do
  if exec {fd}<>"/dev/tcp/${addr%:*}/${addr#*:}" 2>/dev/null; then
    printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&"$fd" 2>/dev/null
    fds+=("$fd")
  fi
done
sleep 1
code=$(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.2 --max-time 5 "http://$addr/healthz")
for fd in "${fds[@]}"; do exec {fd}>&-; done
trap - PIPE
if [ -n "$addr" ] && [ "$code" = 200 ]; then
  pass "70 slow clients from one address: /healthz from another still answers"
else failed "slow clients: /healthz answered '$code' (server ${addr:-not found})" "$(cat "$tmp/log")"; fi

kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=

# listen "[::]:PORT" is every interface, IPv4 too: a dual-stack pod's IPv4
# probes were refused (libmicrohttpd binds IPv6-only unless asked).
if [ -e /proc/net/if_inet6 ]; then
  pipeline info
  VEIL_HTTP_LISTEN='[::]:0' "$VEIL" run "$tmp/p.yaml" 2>"$tmp/log" &
  pid=$!
  port=$(served_on '\[::\]:([0-9]+)')
  c4=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/healthz")
  c6=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://[::1]:$port/healthz")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=
  if [ -n "$port" ] && [ "$c4" = 200 ] && [ "$c6" = 200 ]; then
    pass "listen [::]: /healthz over IPv4 and IPv6"
  else failed "listen [::]:$port: IPv4 $c4, IPv6 $c6" "$(tail -3 "$tmp/log")"; fi
else
  echo "# no IPv6 on this machine: [::] not checked"
fi

# A state: section with a producer that cannot take a checkpoint chunk is
# refused at start, naming the setting and the size (it stopped the host
# at the first checkpoint, a minute in, and after every restart).
{ echo "kafka: {bootstrap: 127.0.0.1:1, group: g, settings: {message.max.bytes: \"500000\"}}"
  echo "input: {topic: in, schema: $root/schemas/interaction.avsc}"
  echo "outputs: {dead_letter: {topic: dlq}}"
  echo "plugins:"
  echo "  - use: pseudonymize"
  echo "  - use: context"
  echo "    with: {catalog: $root/config/demo/items.csv}"
  echo "keys: {active: k1, files: {k1: $tmp/kst}}"
  echo "state: {topic: st}"; } >"$tmp/ck.yaml"
out=$(timeout 30 "$VEIL" run "$tmp/ck.yaml" 2>&1); rc=$?
if [ "$rc" = 1 ] && grep -q "state: checkpoints go to topic 'st' in records of up to 901041 bytes, and the producer's message.max.bytes is 500000: set kafka.settings message.max.bytes to at least 901041" <<<"$out"; then
  pass "a producer too small for checkpoint chunks: refused at start"
else failed "checkpoint chunks vs message.max.bytes: exit $rc" "$out"; fi

# A SIGTERM while the start waits for the state topic (no broker answers)
# stops it cleanly: exit 0, not "topic not available" (exit 1).
sed -e 's/^kafka: .*/kafka: {bootstrap: "127.0.0.1:1", group: g}/' \
  "$tmp/ck.yaml" >"$tmp/st.yaml"
"$VEIL" run "$tmp/st.yaml" 2>"$tmp/log" &
pid=$!
sleep 2
kill -TERM "$pid"
t0=$SECONDS
wait "$pid"; rc=$?; pid=
if [ "$rc" = 0 ] && [ $((SECONDS - t0)) -lt 10 ] && ! grep -q "is not available" "$tmp/log"; then
  pass "SIGTERM while waiting for the state topic: exit 0"
else failed "SIGTERM while waiting for the state topic: exit $rc after $((SECONDS - t0)) s" "$(tail -3 "$tmp/log")"; fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]

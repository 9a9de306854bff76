#!/usr/bin/env bash
# The veil command through its real interface: lint, plugins, plugin
# commands, help and exit codes (0 ok, 1 runtime, 2 usage/configuration).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VEIL=${VEIL:?}
fails=0 passes=0
check() { # NAME WANT_RC WANT_PATTERN -- CMD...
  local name=$1 want=$2 pat=$3; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit $rc, want $want"; echo "$out" | head -5; fails=$((fails + 1)); return
  fi
  if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
    echo "FAIL $name: output lacks /$pat/"; echo "$out" | head -5; fails=$((fails + 1)); return
  fi
  passes=$((passes + 1)); echo "ok $name"
}

for f in "$root"/config/pipelines/*.yaml; do
  check "lint $(basename "$f")" 0 ': ok$' -- "$VEIL" lint "$f"
done
check "lint broken guarantee" 2 "broken.yaml:4:14: .*guarantee.*at-least-once.*exactly-once" -- "$VEIL" lint "$here/broken.yaml"
check "lint bad parameter" 2 "bad_param.yaml:9:10: plugin 'popular' parameter 'k' must be an integer" -- "$VEIL" lint "$here/bad_param.yaml"
check "lint missing file" 2 "nope.yaml" -- "$VEIL" lint "$here/nope.yaml"
# A value only the plugin itself checks (dp_model's k is 1..100): lint
# passes it, lint --start starts the plugins and refuses it as veil run does.
tmp=$(mktemp -d)
sed -e 's/^      k: 10$/      k: 1000/' -e "s#\.\./demo/#$root/config/demo/#g" \
  -e "s#\.\./\.\./schemas/#$root/schemas/#g" "$root/config/pipelines/retail.yaml" >"$tmp/k.yaml"
check "lint k 1000 (plugin not started)" 0 "k.yaml: ok" -- "$VEIL" lint "$tmp/k.yaml"
check "lint --start k 1000" 2 "k.yaml:[0-9]+:10: k must be between 1 and 100" -- "$VEIL" lint --start "$tmp/k.yaml"
# context's times become milliseconds subtracted from event times: bounded.
sed -e 's/^      profile_ttl_s: 7776000$/      profile_ttl_s: 10000000000000000/' \
  -e "s#\.\./demo/#$root/config/demo/#g" -e "s#\.\./\.\./schemas/#$root/schemas/#g" \
  "$root/config/pipelines/retail.yaml" >"$tmp/ttl.yaml"
check "lint --start profile_ttl_s 1e16" 2 "ttl.yaml:[0-9]+:[0-9]+: .*profile_ttl_s.*between 1 and 3155760000" -- "$VEIL" lint --start "$tmp/ttl.yaml"
# librdkafka's settings are checked at load, by lint and run alike.
sed -e 's/^  group: \(.*\)$/  group: \1\n  settings: {security.protocol: SASL_SSLX}/' "$tmp/k.yaml" >"$tmp/kset.yaml"
check "lint bad kafka setting" 2 "kset.yaml:[0-9]+:[0-9]+: kafka.settings.security.protocol: Invalid value" -- "$VEIL" lint "$tmp/kset.yaml"
check "run bad kafka setting" 2 "kset.yaml:[0-9]+:[0-9]+: kafka.settings.security.protocol: Invalid value" -- "$VEIL" run "$tmp/kset.yaml"
# librdkafka reads numbers leniently (20000x as 20000, 020000 as octal
# 8192): a property it types as integer or float needs a number written
# whole; a name it maps to a number (acks: all) passes.
sline=$(grep -n '^  group: ' "$tmp/k.yaml" | cut -d: -f1); sline=$((sline + 1))
for kv in "socket.timeout.ms: 20000x|integer, would read it as 20000" "socket.timeout.ms: '020000'|integer, would read it as 8192" \
          "request.required.acks: 0x1|integer, would read it as 1" "linger.ms: 5x|float, would read it as 5"; do
  sed -e "s/^  group: \(.*\)\$/  group: \1\n  settings: {${kv%%|*}}/" "$tmp/k.yaml" >"$tmp/knum.yaml"
  check "lint kafka setting ${kv%%|*}" 2 "knum.yaml:$sline:14: kafka.settings.${kv%%:*}: .* is not a (whole|decimal) number.*types the property ${kv#*|}; write the number meant in digits" -- "$VEIL" lint "$tmp/knum.yaml"
done
# Settings are applied after the host's: one the delivery guarantee rests
# on may repeat the host's value (acks: all, read as -1), never change it.
for kv in "enable.auto.commit: true|offsets are committed only after" "enable.auto.offset.store: 'true'|offsets are committed only after" \
          "isolation.level: read_uncommitted|an aborted transaction" "acks: 1|all in-sync replicas" \
          "request.required.acks: 0|all in-sync replicas" "enable.idempotence: false|neither duplicate nor reorder"; do
  sed -e "s/^  group: \(.*\)\$/  group: \1\n  settings: {${kv%%|*}}/" "$tmp/k.yaml" >"$tmp/kguard.yaml"
  check "lint kafka setting ${kv%%|*}" 2 "kguard.yaml:$sline:14: kafka.settings.${kv%%:*}: .* would break what the delivery guarantee rests on \\(.*${kv#*|}.*leave it out" -- "$VEIL" lint "$tmp/kguard.yaml"
done
sed -e "s/^  group: \(.*\)\$/  group: \1\n  settings: {metadata.broker.list: 'b:9092'}/" "$tmp/k.yaml" >"$tmp/kguard.yaml"
check "lint kafka setting metadata.broker.list" 2 "kguard.yaml:$sline:14: kafka.settings.metadata.broker.list is set by veil; give it as kafka.bootstrap" -- "$VEIL" lint "$tmp/kguard.yaml"
sed -e "s/^  group: \(.*\)\$/  group: \1\n  settings: {socket.timeout.ms: 20000, acks: all, linger.ms: 0.5, topic.metadata.refresh.interval.ms: -1, enable.idempotence: true, isolation.level: read_committed, enable.auto.commit: false}/" "$tmp/k.yaml" >"$tmp/knum.yaml"
# An output on the topic the pipeline reads: records would come back as
# input without end.
check "lint dead letters on the input topic" 2 "k.yaml:[0-9]+:[0-9]+: output 'dead_letter' writes to topic 'retail-interactions', which the pipeline also reads \\(the input, line [0-9]+\\).*give it a topic of its own" -- env VEIL_DLQ=retail-interactions "$VEIL" lint "$tmp/k.yaml"
check "lint recommendations on the input topic" 2 "output 'recommendations' writes to topic 'retail-interactions', which the pipeline also reads" -- env VEIL_RECS=retail-interactions "$VEIL" lint "$tmp/k.yaml"
# A side input no plugin reads (dp_model's is model_updates): a typo that
# left the exchange off, silently.
sed -e "s#^outputs:\$#side_inputs:\n  model_update: {topic: upd, schema: $root/schemas/model_update.avsc}\noutputs:#" "$tmp/k.yaml" >"$tmp/kside.yaml"
check "lint side input no plugin reads" 2 "kside.yaml:[0-9]+:3: side input 'model_update' is read by no plugin of the pipeline; the plugins read: .*model_updates" -- "$VEIL" lint "$tmp/kside.yaml"
# A stage that writes outputs or keeps state before the consent stage
# would serve and profile people whose consent is not decided yet.
sed -e "s#\.\./demo/#$root/config/demo/#g" -e "s#\.\./\.\./schemas/#$root/schemas/#g" \
  -e 's/^  - use: consent$/  - use: popular\n  - use: consent/' "$root/config/pipelines/demo.yaml" >"$tmp/order.yaml"
check "lint a stage before consent" 2 "order.yaml:[0-9]+:[0-9]+: stage 1 \\(popular\\) comes before the consent stage \\(line [0-9]+\\).*move \`- use: consent\` above it" -- "$VEIL" lint "$tmp/order.yaml"
check "lint help: numeric and guarded settings, the demo: section, side inputs read, consent first" 0 "a numeric setting is a number written whole.*no setting weakens the delivery guarantee.*demo:.*every side input is read.*before the consent stage" -- bash -c "'$VEIL' lint --help | tr '\n' ' '"
check "lint kafka settings written whole" 0 "knum.yaml: ok" -- "$VEIL" lint "$tmp/knum.yaml"
# A schema that cannot be read is named at its own line.
sed -e 's#^  schema: .*interaction.avsc$#  schema: nope.avsc#' "$tmp/k.yaml" >"$tmp/noschema.yaml"
check "lint missing schema" 2 "noschema.yaml:$(grep -n '^  schema: nope.avsc' "$tmp/noschema.yaml" | cut -d: -f1):11: input .*nope.avsc: cannot open" -- "$VEIL" lint "$tmp/noschema.yaml"
# An input schema whose event fields could decode to another type than
# the event holds is refused: a boolean in a union of context.device was
# written into the event's string and crashed the host on its first use;
# a union around context left every context field out of the output.
sed '/"name": "device"/{n;s/\["null", "string"\]/["null", "string", "boolean"]/}' \
  "$root/schemas/interaction.avsc" >"$tmp/devbool.avsc"
jq '.fields |= map(if .name == "context" then .type = ["null", .type] | .default = null else . end)' \
  "$root/schemas/interaction.avsc" >"$tmp/ctxunion.avsc"
for v in devbool ctxunion; do
  sed -e "s#^  schema: .*interaction.avsc\$#  schema: $tmp/$v.avsc#" "$tmp/k.yaml" >"$tmp/$v.yaml"
done
line=$(grep -n "^  schema: $tmp/devbool.avsc" "$tmp/devbool.yaml" | cut -d: -f1)
check "lint a union of string and boolean for context.device" 2 \
  "devbool.yaml:$line:11: input .*: schema .*devbool.avsc: field context.device is union, an interaction needs string \(or a union of null and string\)" \
  -- "$VEIL" lint "$tmp/devbool.yaml"
check "lint context as a union" 2 \
  "ctxunion.yaml:$line:11: input .*: schema .*ctxunion.avsc: field context is a union, an interaction needs a record there" \
  -- "$VEIL" lint "$tmp/ctxunion.yaml"
# ... whatever the input schema's name (the codec refuses only one named
# Interaction up front; another would dead-letter every event).
jq '.name = "Click"' "$tmp/ctxunion.avsc" >"$tmp/click.avsc"
sed -e "s#^  schema: .*interaction.avsc\$#  schema: $tmp/click.avsc#" "$tmp/k.yaml" >"$tmp/click.yaml"
check "lint an input schema that is no event, by another name" 2 \
  "click.yaml:$line:11: input [^:]*: schema .*click.avsc: field context is a union" \
  -- "$VEIL" lint "$tmp/click.yaml"
# An instance id over 255 bytes would be cut, and could then equal
# another instance's: refused where model updates are shared.
shenv=(KAFKA_BOOTSTRAP=b:9092 VEIL_GROUP=g VEIL_INPUT=i VEIL_UPDATES=u VEIL_RECS=r VEIL_DLQ=d VEIL_ACCOUNTANT="$tmp/share.acc")
check "lint --start VEIL_INSTANCE_ID of 256 bytes" 2 "share.yaml:[0-9]+:[0-9]+: instance must be at most 255 bytes \\(VEIL_INSTANCE_ID is longer\\)" -- \
  env "${shenv[@]}" VEIL_INSTANCE_ID="$(printf 'i%.0s' $(seq 256))" "$VEIL" lint --start "$root/tests/pipelines/share.yaml"
check "lint --start VEIL_INSTANCE_ID of 255 bytes" 0 "share.yaml: ok" -- \
  env "${shenv[@]}" VEIL_INSTANCE_ID="$(printf 'i%.0s' $(seq 255))" "$VEIL" lint --start "$root/tests/pipelines/share.yaml"
# A typo gets the near name first, and the list is whole (dp_model has
# over 50 parameters; the last ones were cut off).
sed -e 's/^      history_weight: 2$/      history_weight: 2\n      accountant_fle: x/' "$tmp/k.yaml" >"$tmp/typo.yaml"
check "lint parameter typo" 2 "typo.yaml:[0-9]+:[0-9]+: unknown parameter 'accountant_fle' for plugin 'dp_model'; did you mean 'accountant_file'\? allowed parameters: k, .*, tree_participations, .*accountant_file" -- "$VEIL" lint "$tmp/typo.yaml"
check "lint --start shipped pipelines" 0 "retail.yaml: ok" -- env VEIL_DEMO_ACCOUNTANT="$tmp/demo.acc" "$VEIL" lint --start "$root"/config/pipelines/*.yaml
check "lint unknown option" 2 "unknown option '--bogus'" -- "$VEIL" lint --bogus "$tmp/k.yaml"
check "run --log-level without a value" 2 "--log-level needs a value" -- "$VEIL" run "$tmp/k.yaml" --log-level
check "notice --format without a value" 2 "--format needs a value" -- "$VEIL" notice "$tmp/k.yaml" --format
rm -rf "$tmp"
check "lint unset variable" 2 "passthrough.yaml:.*VEIL_INPUT|KAFKA_BOOTSTRAP" -- env -u KAFKA_BOOTSTRAP -u VEIL_INPUT "$VEIL" lint "$root/tests/pipelines/flow.yaml"
check "help" 0 "run PIPELINE.yaml" -- "$VEIL" --help
check "no command" 2 "usage: veil" -- "$VEIL"
check "unknown command" 2 "neither a command nor a plugin" -- "$VEIL" frobnicate
check "unknown option" 2 "unknown option" -- "$VEIL" --frobnicate
check "run help" 0 "at-least-once" -- "$VEIL" run --help
check "run without file" 2 "usage: veil run" -- "$VEIL" run
check "run bad log level" 2 "log-level" -- "$VEIL" run x.yaml --log-level loud
check "lint help" 0 "file:line:column" -- "$VEIL" lint --help
check "demo help" 0 "embedded broker" -- "$VEIL" demo --help
check "demo help: a configured broker is refused" 0 "refuses to start \\(exit 2\\).*--configured-broker: run on the cluster" -- bash -c "'$VEIL' demo --help | tr '\n' ' '"
# The demo writes its events and consent records (tombstones included) to
# the pipeline's topics: with KAFKA_BOOTSTRAP exported the demo pipeline
# names a cluster, and veil demo refuses before it starts a plugin or
# connects (port 9: nothing listens; the accountant file is not created).
demo_tmp=$(mktemp -d)
check "demo refuses a KAFKA_BOOTSTRAP cluster" 2 "demo.yaml:[0-9]+:[0-9]+: kafka.bootstrap is '127.0.0.1:9' \\(from KAFKA_BOOTSTRAP\\), not embedded.*unset KAFKA_BOOTSTRAP.*--configured-broker" -- \
  bash -c "KAFKA_BOOTSTRAP=127.0.0.1:9 VEIL_DEMO_ACCOUNTANT='$demo_tmp/dp.acc' timeout 20 '$VEIL' demo '$root/config/pipelines/demo.yaml' 2>&1 | tr '\n' ' '; exit \${PIPESTATUS[0]}"
check "demo refuses a configured bootstrap: nothing started" 0 "^no accountant file$" -- \
  bash -c "[ -e '$demo_tmp/dp.acc' ] && echo 'accountant file created' || echo 'no accountant file'"
# An empty VEIL_HOME counts as unset, as for the other VEIL_ variables:
# it named /config/pipelines/demo.yaml. (The default pipeline is then the
# one beside the executable, refused here for its KAFKA_BOOTSTRAP.)
check "demo: an empty VEIL_HOME counts as unset" 2 "^veil demo: /[^ ]+/config/pipelines/demo.yaml:[0-9]+:[0-9]+: kafka.bootstrap is '127.0.0.1:9'" -- \
  env VEIL_HOME= KAFKA_BOOTSTRAP=127.0.0.1:9 VEIL_DEMO_ACCOUNTANT="$demo_tmp/dp.acc" timeout 20 "$VEIL" demo
check "demo: VEIL_HOME names the directory" 2 "^veil: $demo_tmp/config/pipelines/demo.yaml: cannot open" -- \
  env VEIL_HOME="$demo_tmp" KAFKA_BOOTSTRAP=127.0.0.1:9 timeout 20 "$VEIL" demo
check "demo unknown option" 2 "veil demo: unknown option '--fast'" -- env -u KAFKA_BOOTSTRAP VEIL_DEMO_ACCOUNTANT="$demo_tmp/dp.acc" timeout 60 "$VEIL" demo --fast
check "demo extra argument" 2 "veil demo: one pipeline only, got an extra argument 'extra.yaml'" -- \
  env -u KAFKA_BOOTSTRAP VEIL_DEMO_ACCOUNTANT="$demo_tmp/dp.acc" timeout 60 "$VEIL" demo "$root/config/pipelines/demo.yaml" extra.yaml
# The demo: section is checked by lint (and run, and demo) like any other:
# garbage was read with atol, so "2x" gave 2 and "lots" 0, and an unknown
# key passed.
sed -e "s#\.\./demo/#$root/config/demo/#g" -e "s#\.\./\.\./schemas/#$root/schemas/#g" \
  "$root/config/pipelines/demo.yaml" >"$demo_tmp/demo.yaml"
gline=$(grep -n '^  garbage: 3$' "$demo_tmp/demo.yaml" | cut -d: -f1)
for g in 2x lots -1 1000001 "{n: 3}"; do
  sed "s/^  garbage: 3\$/  garbage: $g/" "$demo_tmp/demo.yaml" >"$demo_tmp/g.yaml"
  check "lint demo.garbage: $g" 2 "g.yaml:$gline:12: demo.garbage must be a whole number of undecodable records to mix in, 0..1000000, got .*; write it in digits" -- \
    "$VEIL" lint "$demo_tmp/g.yaml"
done
sed "s/^  garbage: 3\$/  garbage: 1000000/" "$demo_tmp/demo.yaml" >"$demo_tmp/g.yaml"
check "lint demo.garbage: 1000000" 0 "g.yaml: ok" -- "$VEIL" lint "$demo_tmp/g.yaml"
sed "s/^  garbage: 3\$/  garbage: 2x/" "$demo_tmp/demo.yaml" >"$demo_tmp/g.yaml"
check "demo refuses demo.garbage: 2x before it starts" 2 "g.yaml:$gline:12: demo.garbage must be a whole number" -- \
  env -u KAFKA_BOOTSTRAP VEIL_DEMO_ACCOUNTANT="$demo_tmp/dp.acc" timeout 60 "$VEIL" demo "$demo_tmp/g.yaml"
sed "s/^  garbage: 3\$/  garbag: 3/" "$demo_tmp/demo.yaml" >"$demo_tmp/g.yaml"
check "lint demo: unknown key" 2 "g.yaml:$gline:3: demo: unknown key 'garbag'; allowed keys: events, garbage, consent" -- \
  "$VEIL" lint "$demo_tmp/g.yaml"
sed '/^  events: /d' "$demo_tmp/demo.yaml" >"$demo_tmp/g.yaml"
check "lint demo: events missing" 2 "g.yaml:[0-9]+:3: demo: events is missing" -- "$VEIL" lint "$demo_tmp/g.yaml"
rm -rf "$demo_tmp"
check "help: demo's option" 0 "demo \\[--configured-broker\\] \\[PIPELINE.yaml\\]" -- "$VEIL" --help
# veil run: a SIGTERM exits 1 when outputs are not acknowledged in time.
check "run help: exit 1 at a stop with unacknowledged outputs" 0 "exit 0, within the shutdown timeout.*not acknowledged then are not committed.*exit code is 1" -- bash -c "'$VEIL' run --help | tr '\n' ' '"
check "run help: a reload refused when a running key goes" 0 "refused too when keys: drops a running key: a key id removed from keys.files, a key file changed in place .*a switch between ephemeral and key files" -- bash -c "'$VEIL' run --help | tr '\n' ' '"
check "run help: a reload starts the plugins" 0 "validated as .veil lint --start. does" -- "$VEIL" run --help
check "run extra argument" 2 "veil run: one pipeline only, got an extra argument 'b.yaml'" -- "$VEIL" run a.yaml b.yaml
# A replay spends the pipeline's real privacy budget: its help says so.
check "replay help: the accountant file is charged" 0 "charges its accountant_file as a live run does.*Replay a copy whose accountant_file is a scratch file" -- bash -c "'$VEIL' replay --help | tr '\n' ' '"
# veil replay parses every number strictly: --batch 12abc is not 12.
for b in 12abc 0 1000001 -3 1e3; do
  check "replay --batch $b" 2 "--batch must be a number of events, 1..1000000, got '$b'" -- \
    "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$root/config/demo/events.csv" --limit 0 --batch "$b"
done
check "replay --batch 7" 0 "0 in 0 batches of up to 7$" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$root/config/demo/events.csv" --limit 0 --batch 7
check "replay extra argument" 2 "one pipeline only, got an extra argument 'extra.yaml'" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" extra.yaml --events "$root/config/demo/events.csv" --limit 0
# Ids over 512 bytes or not UTF-8 (a CSV is not checked as Kafka's Avro is)
# and times outside 1970..9999 are dead-lettered before
# any stage sees them (stages keep ids and put them in every record, and
# subtract times); an id of exactly 512 bytes passes.
tmp=$(mktemp -d)
x512=$(printf 'x%.0s' $(seq 1 512))
{ head -31 "$root/config/demo/events.csv"
  echo "1291191960,17850,$x512,6,536365,United Kingdom"
  echo "1291191960,17850,${x512}y,6,536365,United Kingdom"
  echo "-9100000000000000,17851,85123A,6,536365,United Kingdom"
  echo "9100000000000000,17852,85123A,6,536365,United Kingdom"
  printf '1291191960,17853,BAD\377,6,536365,United Kingdom\n'
  printf '1291191960,17854,85123A,6,536365,C\364te d Ivoire\n'; } >"$tmp/hostile.csv"
check "replay: long ids, far times, ids and text not UTF-8 dead-lettered" 0 "31 recommendations, 5 dead letters" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/hostile.csv"
# Each dead letter is shown with its line, stage and error (the first
# five), never with the values: the count alone said neither why nor where.
check "replay: dead letters shown at their lines" 0 "hostile.csv:33: dead letter \(stage 'decode'\): field 'item_id' is longer than the 512 bytes.*hostile.csv:36: dead letter \(stage 'decode'\): field 'item_id' is not valid UTF-8" -- \
  bash -c "'$VEIL' replay '$root/config/pipelines/retail.yaml' --events '$tmp/hostile.csv' 2>&1 | tr '\n' ' '"
check "replay: dead letters shown without their values" 0 "" -- \
  bash -c "! '$VEIL' replay '$root/config/pipelines/retail.yaml' --events '$tmp/hostile.csv' 2>&1 | grep -e 17853 -e xxxxxxxx -e BAD -e 'te d Ivoire'"
# ... past five, counted; and --evaluate of events all dead-lettered (ms
# in the ts column: year 42885) is no evaluation: it printed hit-rate
# 0.0000 "(0 scored)", exit 0.
{ echo "ts,user_id,item"; for i in 1 2 3 4 5 6 7; do echo "129119196000$i,1785$i,85123A"; done; } >"$tmp/ms.csv"
check "replay: dead letters past five counted" 0 "ms.csv:6: dead letter \(stage 'decode'\): field 'ts' .*veil replay: 2 more dead letters not shown \(7 in all\)" -- \
  bash -c "'$VEIL' replay '$root/config/pipelines/retail.yaml' --events '$tmp/ms.csv' 2>&1 | tr '\n' ' '"
check "replay --evaluate: every event dead-lettered is an error" 1 "--evaluate: nothing to evaluate: every one of the 7 events was dead-lettered" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/ms.csv" --evaluate
# A stage's dead letters (here: passthrough's output schema cannot hold
# an interaction) are shown at their events' lines too.
sed -e "s#schema: interaction-unmarked.avsc#schema: $root/schemas/recommendation.avsc#" \
  -e "s#\.\./\.\./schemas/#$root/schemas/#" "$here/leak_unmarked_output.yaml" >"$tmp/stage_dl.yaml"
{ echo "ts,user_id,item"; echo "1291191960,17850,85123A"; echo "1291191961,17850,71053"; } >"$tmp/two.csv"
check "replay: a stage's dead letters shown at their lines" 0 "two.csv:3: dead letter \(stage 'passthrough'\): passthrough: the event's output record could not be written" -- \
  "$VEIL" replay "$tmp/stage_dl.yaml" --events "$tmp/two.csv"
# Hostile CSVs: each is refused at its line, or read as it says.
H=ts,user_id,item,qty,invoice,country
row=1291191960,17850,85123A,6,536365,UK
# A NUL byte, here in a line over 64 KB: strlen saw a short line, and the
# rest of the line became an event of its own.
{ echo "$H"; echo "$row"; printf '%s\0' "$row"; head -c $((65535 - ${#row} - 1)) /dev/zero | tr '\0' x
  echo "$row"; } >"$tmp/nul.csv"
check "replay: a NUL byte refused at its line" 1 "nul.csv:3: a NUL byte in the line" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/nul.csv"
# Empty event ids are generated ones (100 events of 5 users: 95 scored);
# ids repeated within a batch are refused, as --evaluate matches by id.
{ echo "event_id,$H"; sed -n 2,101p "$root/config/demo/events.csv" | awk -F, '{ print ",1291191960," NR % 5 "," $3 ",1,1,UK" }'; } >"$tmp/noid.csv"
check "replay --evaluate: empty event ids generated" 0 "\\(95 scored\\)" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/noid.csv" --evaluate
# A malformed line after batches that ran leaves their evaluation, marked
# as up to their last line (it was thrown away: one bad line at the end
# of a year, no evaluation at all).
{ cat "$tmp/noid.csv"; echo ",1291191960,1"; } >"$tmp/noid_bad.csv"
check "replay --evaluate: the batches before an error evaluated" 1 "\\(95 scored; only up to .*noid_bad.csv:101, the last line of the last batch that ran\\)" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/noid_bad.csv" --evaluate --batch 50
{ echo "event_id,$H"; echo "a,$row"; echo "b,$row"; echo "a,$row"; } >"$tmp/dup.csv"
check "replay --evaluate: a repeated event id refused" 1 "dup.csv:4: the same event_id as line 2, in the same batch" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/dup.csv" --evaluate
# Every field counts: user_id as the 34th column, a 47-field row under 40
# columns, and more columns than the limit.
{ printf 'c%d,' $(seq 31); echo "ts,item,user_id"; printf 'x,%.0s' $(seq 31); echo "1291191960,85123A,17850"; } >"$tmp/wide.csv"
check "replay: the 34th column read" 0 "events: +1 in 1 batches" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/wide.csv"
{ printf 'ts,item,user_id'; printf ',c%d' $(seq 37); echo; printf '1291191960,85123A,17850'; printf ',x%.0s' $(seq 37); echo
  printf '1291191960,85123A,17850'; printf ',x%.0s' $(seq 44); echo; } >"$tmp/long_row.csv"
check "replay: a row with more fields than the header refused" 1 "long_row.csv:3: 47 fields, the header has 40" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/long_row.csv"
{ printf 'c%d,' $(seq 300); echo "ts,item,user_id"; } >"$tmp/many.csv"
check "replay: columns past the limit refused" 2 "many.csv:1: 303 columns, more than the 256" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/many.csv"
# --column naming no column of the header is a typo, not a no-op; one
# that does renames it.
check "replay: --column of no such column refused" 2 "wide.csv:1: --column customer=user_id: the header has no column 'customer' \\(it has: c1, " -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/wide.csv" --column customer=user_id
# A file without a header: its first line is data, and is never echoed.
printf '1291191960,17850,85123A,203.0.113.7\n' >"$tmp/nohdr.csv"
check "replay: --column on a file without a header, no data echoed" 2 "nohdr.csv:1: the header needs the columns user_id and item" -- \
  bash -c "! '$VEIL' replay '$root/config/pipelines/retail.yaml' --events '$tmp/nohdr.csv' --column customer=user_id 2>&1 | tee /dev/stderr | grep -q -e 17850 -e 203.0.113.7 && exit 2"
sed 's/user_id$/customer/' "$tmp/wide.csv" >"$tmp/cust.csv"
check "replay: --column renames" 0 "events: +1 in 1 batches" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/cust.csv" --column customer=user_id
# Renames apply together, against the header as written: two --column
# swap two columns (applied in turn, the second undid the first and the
# header lacked user_id). Here the user ids are under "item": swapped, one
# user has two events, and one pair is scored.
printf 'ts,user_id,item\n1291191960,85123A,17850\n1291191961,71053,17850\n1291191962,84406B,17851\n' >"$tmp/swapped.csv"
check "replay: --column swaps two columns" 0 "\(1 scored\)" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/swapped.csv" --column user_id=item --column item=user_id --evaluate
check "replay: one --column per column" 2 "--column user_id=item and --column user_id=ts both rename column 'user_id': give one --column per column" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/swapped.csv" --column user_id=item --column user_id=ts
# Two columns read as one field (here a --column onto a name the header
# has too) are refused, naming both: the last one won, without a word.
# --column NAME=- leaves one out.
printf 'customer,ts,user_id,item\n17850,1291191960,x,85123A\n' >"$tmp/onto.csv"
check "replay: two columns read as one field refused" 2 "onto.csv:1: columns 1 'customer' and 3 'user_id' are both read as one field \(user_id\).*--column NAME=- \(e.g. --column user_id=-\)" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/onto.csv" --column customer=user_id
check "replay: --column NAME=- leaves a column out" 0 "events: +1 in 1 batches" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/onto.csv" --column customer=user_id --column user_id=-
# --events - reads the CSV from stdin (and says so in the help).
check "replay --events - reads stdin" 0 "events: +3 in 1 batches" -- \
  bash -c "'$VEIL' replay '$root/config/pipelines/retail.yaml' --events - --column user_id=item --column item=user_id <'$tmp/swapped.csv'"
check "replay help: --events -" 0 "--events - reads it from stdin" -- "$VEIL" replay --help
# gpc: true/false/1/0/yes/no in any case, or empty; anything else refused.
printf 'ts,user_id,item,gpc\n1291191960,17850,85123A,TRUE\n1291191960,17850,85123A,No\n1291191960,17850,85123A,\n1291191960,17850,85123A,maybe\n' >"$tmp/gpc.csv"
check "replay: a gpc value not a boolean refused" 1 "gpc.csv:5: field 4 must be true, false, 1, 0, yes, no or empty \\(column 'gpc'\\)" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/gpc.csv"
# A malformed line mid-batch: the batch never ran, and is not counted.
{ echo "$H"; echo "$row"; echo "$row"; echo "1291191960,17850"; } >"$tmp/cut.csv"
check "replay: a batch cut short by an error not counted" 1 "events: +0 in 0 batches.*stopped: .*the 2 events read into the batch it cut short" -- \
  bash -c "'$VEIL' replay '$root/config/pipelines/retail.yaml' --events '$tmp/cut.csv' 2>&1 | tr '\n' ' '; exit \${PIPESTATUS[0]}"
# ... nor its dead letters: an id over 512 bytes is dead-lettered as it is
# added, and was counted while its batch's events were not.
{ echo "$H"; echo "1291191960,17850,${x512}y,6,536365,UK"; echo "$row"; echo "1291191960,17850"; } >"$tmp/cut_dl.csv"
check "replay: a cut batch's dead letters not counted either" 1 "events: +0 in 0 batches.*stopped: .*the 2 events read into the batch it cut short are not counted, nor its outputs \(0 recommendations, 1 dead letters\).*records: +0 recommendations, 0 dead letters" -- \
  bash -c "'$VEIL' replay '$root/config/pipelines/retail.yaml' --events '$tmp/cut_dl.csv' 2>&1 | tr '\n' ' '; exit \${PIPESTATUS[0]}"
# A dead-lettered event opens no batch: first in its batch (a time in ms
# under ts, year 33658), it set the --batch-wait window, no later event
# was past it, and six events a minute apart shared one batch.
{ echo ts,user_id,item; echo 1000000000000,bad,85123A
  for i in 0 1 2 3 4 5; do echo "$((1291191960 + 60 * i)),u$i,85123A"; done; } >"$tmp/gaps.csv"
check "replay --batch-wait: a dead letter first in its batch sets no window" 0 "events: +7 in 6 batches of up to 256, each within 1000 ms" -- \
  "$VEIL" replay "$root/config/pipelines/retail.yaml" --events "$tmp/gaps.csv" --batch-wait 1000
rm -rf "$tmp"
# lint --start, replay and demo log at warn by default (their summary is
# the output), but an explicit VEIL_LOG_LEVEL, info included, is honoured:
# it was taken for the default and lowered to warn.
retail=$root/config/pipelines/retail.yaml
check "lint --start: quiet by default" 0 "^[^{]*$" -- bash -c "'$VEIL' lint --start '$retail' 2>&1 | tr '\n' ' '"
check "lint --start: VEIL_LOG_LEVEL=info honoured" 0 '"level":"info","message":"3665 catalog items' -- env VEIL_LOG_LEVEL=info "$VEIL" lint --start "$retail"
check "replay: VEIL_LOG_LEVEL=info honoured" 0 '"level":"info","message":"3665 catalog items' -- \
  env VEIL_LOG_LEVEL=info "$VEIL" replay "$retail" --events "$root/config/demo/events.csv" --limit 0
# (retail.yaml has no demo: section: the demo stops once its plugins started.)
check "demo: VEIL_LOG_LEVEL=info honoured" 2 '"level":"info","message":"3665 catalog items' -- \
  env -u KAFKA_BOOTSTRAP VEIL_LOG_LEVEL=info "$VEIL" demo "$retail"
check "plugins" 0 "popular .*max_items +int +default 1000000" -- bash -c "'$VEIL' plugins | tr '\n' ' '"
check "plugins: the consent stage says it decides" 0 "decides consent: stages with outputs or state go after it" -- "$VEIL" plugins consent
check "plugins NAME" 0 "k +int +default 10" -- "$VEIL" plugins popular
check "plugins with two names" 2 "one plugin name at most" -- "$VEIL" plugins popular context
check "version with an argument" 2 "takes no arguments" -- "$VEIL" version --x
check "a misspelt VEIL_LOG_LEVEL" 2 "VEIL_LOG_LEVEL must be error, warn, info or debug, got 'loud'; set one of those or unset it" -- env VEIL_LOG_LEVEL=loud "$VEIL" lint "$root/config/pipelines/retail.yaml"
# ... but help and the versions, which log nothing, still answer (with a
# warning on stderr): the help is where the valid values are found.
check "a misspelt VEIL_LOG_LEVEL: --help answers" 0 "usage: veil <command>" -- env VEIL_LOG_LEVEL=verbose "$VEIL" --help
check "a misspelt VEIL_LOG_LEVEL: --help warns on stderr" 0 "got 'verbose' \(ignored by --help and version" -- bash -c "VEIL_LOG_LEVEL=verbose '$VEIL' --help 2>&1 >/dev/null"
check "a misspelt VEIL_LOG_LEVEL: version answers" 0 "^plugin ABI" -- env VEIL_LOG_LEVEL=verbose "$VEIL" version
check "a misspelt VEIL_LOG_LEVEL: run --help answers" 0 "usage: veil run" -- env VEIL_LOG_LEVEL=verbose "$VEIL" run --help
# A plugin file that does not load is reported and the others still
# listed, but the exit code says so: a pipeline using it would not start.
broken=$(mktemp -d); echo "not a shared object" >"$broken/veil_broken.so"
check "plugins: a broken plugin file exits 1" 1 "veil_broken.so: cannot load" -- env VEIL_PLUGIN_PATH="$broken" "$VEIL" plugins
check "plugins: the others listed despite a broken one" 0 "^popular " -- bash -c "VEIL_PLUGIN_PATH='$broken' '$VEIL' plugins 2>/dev/null; true"
rm -rf "$broken"
check "plugins missing" 2 "plugin 'nosuch' not found; searched:" -- "$VEIL" plugins nosuch
# No lines of blanks (a command without its doc printed one), and a parameter
# name longer than 20 characters still leaves its type in a column.
plist=$("$VEIL" plugins)
if ! grep -qE '^ +$' <<<"$plist" && grep -qE '^    require_special_feature_1 bool   default false' <<<"$plist"; then
  passes=$((passes + 1)); echo "ok plugins: no blank lines, names in their column"
else fails=$((fails + 1)); echo "FAIL plugins: blank lines or a name out of its column"; fi
check "plugin without commands" 2 "has no command 'x'" -- "$VEIL" popular x
# A plugin named without a command is a usage error: the description goes
# to stderr (stdout stays empty), exit 2; with --help it is the answer,
# on stdout, exit 0.
check "plugin without a command: exit 2, stdout empty" 2 "^stdout: 0 bytes$" -- bash -c "out=\$('$VEIL' dp_model 2>/dev/null); rc=\$?; echo stdout: \${#out} bytes; exit \$rc"
check "plugin without a command: the commands on stderr" 2 "a command is needed: veil dp_model COMMAND.* commands: +veil dp_model epsilon" -- bash -c "'$VEIL' dp_model 2>&1 >/dev/null | tr '\n' ' '; exit \${PIPESTATUS[0]}"
check "plugin --help on stdout" 0 "^dp_model .* commands: +veil dp_model epsilon" -- bash -c "'$VEIL' dp_model --help 2>/dev/null | tr '\n' ' '; exit \${PIPESTATUS[0]}"
check "plugin command help" 0 "^usage: veil dp_model noise --epsilon E .*smallest noise multiplier" -- bash -c "'$VEIL' dp_model noise --help | tr '\n' ' '"
check "plugin command -h after options" 0 "^usage: veil dp_model epsilon " -- "$VEIL" dp_model epsilon --delta 1e-8 -h
empty=$(mktemp -d); trap 'rm -rf "$empty"' EXIT
check "plugin command help writes no key" 0 "^usage: veil pseudonymize keygen FILE.* 0 files" -- bash -c "cd '$empty' && { '$VEIL' pseudonymize keygen --help; echo \$(ls -A | wc -l) files; } | tr '\n' ' '"

check "plugin command bad option" 2 "unknown option --frobnicate" -- "$VEIL" dp_model epsilon --frobnicate 1
check "version" 0 "plugin ABI 3" -- "$VEIL" version
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]

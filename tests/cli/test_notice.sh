#!/usr/bin/env bash
# `veil notice` through its real interface: for every shipped pipeline it
# states each point (collected, purpose, consent, protection, retention,
# differential privacy) in Markdown and HTML, and each statement follows
# the configuration: change a value in a copy of a pipeline and the notice
# changes with it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VEIL=${VEIL:?}
fails=0 passes=0
pass() { passes=$((passes + 1)); echo "ok $1"; }
failed() { fails=$((fails + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && head -20 <<<"$2"; }

HEADINGS=("What we collect" "Why we use it" "Your consent" "How we protect it"
  "What we keep, where, and for how long" "Differential privacy")

# A copy of the tree's layout whose config/pipelines holds writable copies,
# so a changed pipeline resolves its relative paths (schemas, demo data)
# exactly as the original does.
T=$(mktemp -d /tmp/veil-notice-XXXXXX)
trap 'rm -rf "$T"' EXIT
for e in "$root"/*; do [ "$(basename "$e")" = config ] || ln -s "$e" "$T/"; done
mkdir -p "$T/config/pipelines"
for e in "$root"/config/*; do [ "$(basename "$e")" = pipelines ] || ln -s "$e" "$T/config/"; done

# section FILE HEADING: the bullets under a Markdown heading
section() { awk -v h="## $2" '$0==h {on=1; next} /^## / {on=0} on && /^- /' "$1"; }

for f in "$root"/config/pipelines/*.yaml; do
  name=$(basename "$f")
  md="$T/$name.md" html="$T/$name.html"
  if ! "$VEIL" notice "$f" >"$md" 2>"$T/err" || ! "$VEIL" notice "$f" --format html >"$html" 2>>"$T/err"; then
    failed "notice $name" "$(cat "$T/err")"; continue
  fi
  ok=1
  for h in "${HEADINGS[@]}"; do
    [ -n "$(section "$md" "$h")" ] || { failed "notice $name: nothing under '$h'" "$(cat "$md")"; ok=0; }
    grep -qF "<h2>${h//&/&amp;}</h2>" "$html" || { failed "notice $name --format html: no '$h'"; ok=0; }
  done
  [ "$(grep -c '^- ' "$md")" = "$(grep -c '^<li>' "$html")" ] || { failed "notice $name: md and html differ"; ok=0; }
  # Text is escaped in HTML: a list item holds no markup of its own.
  grep '^<li>' "$html" | sed 's/^<li>//; s/<\/li>$//' | grep -q '[<>]' && { failed "notice $name: unescaped html"; ok=0; }
  # Every topic of the pipeline is named where the data goes or comes from.
  for t in $(grep -oE 'topic: *[^ ,}]+' "$f" | sed 's/topic: *//'); do
    [[ $t == *'$'* ]] && continue
    grep -q "'$t'" "$md" || { failed "notice $name does not name topic $t"; ok=0; }
  done
  # Numbers of the privacy guarantee come from the file, and follow it.
  cp "$f" "$T/config/pipelines/$name"
  for key in epsilon delta; do
    grep -qE "^\s+$key: *[0-9.e-]+" "$f" || continue
    sed -E "s/^(\s+$key:) *[0-9.e-]+/\1 0.000123/" "$f" >"$T/config/pipelines/$name"
    "$VEIL" notice "$T/config/pipelines/$name" 2>&1 | grep -q '0.000123' ||
      { failed "notice $name: changing $key does not show"; ok=0; }
  done
  # Every marked field is named in plain words, never by its schema path.
  grep -E '^- These could help to identify you' "$md" | grep -qE '(^|[ ;:])(tc_string|context\.[a-z_]+|user_id)([;.]|$)' &&
    { failed "notice $name names a field by its path" "$(grep -E '^- These could help' "$md")"; ok=0; }
  grep -qE '^- These could help to identify you.*the consent string \(TCF\)' "$md" ||
    { failed "notice $name does not list the consent string as identifying" "$(cat "$md")"; ok=0; }
  [ $ok = 1 ] && pass "notice $name: six points, md and html, topics and privacy numbers from the file"
done

# The demo pipeline, changed one value at a time in a copy.
demo="$root/config/pipelines/demo.yaml"
copy="$T/config/pipelines/demo-copy.yaml"
base="$T/base.md"
"$VEIL" notice "$demo" >"$base" 2>&1 || failed "notice demo" "$(cat "$base")"
# change SED_EXPR: the copy's notice in $T/new.md
change() { sed -E "$1" "$demo" >"$copy"; "$VEIL" notice "$copy" >"$T/new.md" 2>"$T/new.err"; }

change 's/^(\s+)k: 10$/\1k: 7/'
if grep -q "recommend the 10 items" "$base" && grep -q "recommend the 7 items" "$T/new.md" &&
   ! grep -q "recommend the 10 items" "$T/new.md"; then pass "popular's k is the notice's number"
else failed "popular's k" "$(cat "$T/new.md" "$T/new.err")"; fi

change 's/^(\s+)history_items: 32$/\1history_items: 7/'
if grep -q "up to 32 items of your visits" "$base" && grep -q "up to 7 items of your visits" "$T/new.md" &&
   grep -q "and the items of your earlier visits" "$base"; then pass "the history's size is the notice's number"
else failed "history_items" "$(cat "$T/new.md" "$T/new.err")"; fi
change 's/^(\s+)history_items: 32$/\1history_items: 0/; s/^(\s+)history_weight: 15$/\1history_weight: 0/'
if ! grep -q "items of your visits\|earlier visits" "$T/new.md"; then pass "no history, no word of one"
else failed "history_items 0" "$(cat "$T/new.md" "$T/new.err")"; fi

# Everything a profile keeps is named, the previous interaction's features
# by the kinds the pipeline extracts.
change 's/^(\s+)history_items: 32$/\1history_items: 32\n\1features: [hour, type]/'
kept="your last 10 items with their times, a code of your visit's session id, how many visits you made and your place in the current one, and the feature numbers of your last interaction with an item"
if grep -qF "$kept (its time of day, weekday, device class, country, coarse area, " "$base" &&
   grep -qF "$kept (its time of day and kind of interaction);" "$T/new.md" &&
   grep -qF "the time of day and kind of interaction of each interaction are turned into feature numbers" "$T/new.md"; then
  pass "the profile's previous features are named, by the configured kinds"
else failed "context features" "$(cat "$T/new.md" "$T/new.err")"; fi

# The guarantee is the budget, rounded up at the printed precision (never
# less loss than configured: 12.345 was stated as 12.3); with no budget
# (0) there is no bound, and learning never stops (it said "e^inf" and
# that learning stops when the budget is spent).
change 's/^(\s+)epsilon_budget: 8$/\1epsilon_budget: 12.345/; s/^(\s+)delta: 1e-6$/\1delta: 1.2349e-6/'
if section "$T/new.md" "Differential privacy" | grep -qF "at most a factor e^12.4 (plus a probability 1.24e-06)"; then
  pass "the budget and delta are rounded up"
else failed "budget rounding" "$(section "$T/new.md" "Differential privacy"; cat "$T/new.err")"; fi
for mech in gaussian tree; do
  change "s/^(\s+)epsilon_budget: 8\$/\1epsilon_budget: 0/; s/^(\s+)mechanism: gaussian\$/\1mechanism: $mech/"
  dp=$(section "$T/new.md" "Differential privacy")
  if grep -q "mechanism: $mech" "$copy" && grep -q "epsilon_budget: 0$" "$copy" &&
     grep -q "there is no bound on the privacy loss, .*the model never stops learning" <<<"$dp" &&
     ! grep -qiE "e\^|\binf\b|model stops learning|budget is spent|same budget" <<<"$dp"; then
    pass "no budget ($mech): no bound, and learning never stops"
  else failed "no budget ($mech)" "$dp$(cat "$T/new.err")"; fi
done

# Model updates shared through a topic the pipeline writes and reads back:
# each instance stops at its own view of the total, so the notice says the
# instances' guarantees add up.
change 's|^side_inputs:$|side_inputs:\n  model_updates: {topic: demo.updates, schema: ../../schemas/model_update.avsc}|; s|^outputs:$|outputs:\n  model_updates: {topic: demo.updates, schema: ../../schemas/model_update.avsc}|'
if section "$T/new.md" "Differential privacy" | grep -qF "When this service runs as several instances, they share what they learn through Kafka topic 'demo.updates', and the guarantee above holds for each instance: taken together, the instances' guarantees add up." &&
   ! grep -q "several instances" "$base"; then
  pass "shared model updates: the instances' guarantees add up"
else failed "shared model updates" "$(section "$T/new.md" "Differential privacy"; cat "$T/new.err")"; fi

# Two private stages: each states its own bound, and the notice states
# their sum, the bound for both together (a reader would otherwise take
# the larger for the whole). A second stage without a budget leaves none.
# twice BUDGET: the demo with a copy of its dp_model stage (the last one)
# at epsilon_budget BUDGET and delta 1e-7, notice in $T/new.md
twice() {
  awk -v eps="$1" '/^  - use: dp_model$/ {on = 1}
    on && /^keys:/ {on = 0; printf "%s", blk}
    on {b = $0; sub(/epsilon_budget: 8$/, "epsilon_budget: " eps, b)
        sub(/delta: 1e-6$/, "delta: 1e-7", b)
        sub(/accountant_file: .*/, "accountant_file: /tmp/veil-notice-second.acc", b)
        blk = blk b "\n"}
    {print}' "$demo" >"$copy"
  "$VEIL" notice "$copy" >"$T/new.md" 2>"$T/new.err"
}
twice 2.3456
dp=$(section "$T/new.md" "Differential privacy")
if [ "$(grep -c "^- A shared model learns" <<<"$dp")" = 2 ] && grep -q "factor e^2.35 (plus a probability 1e-07)" <<<"$dp" &&
   grep -q "^- The 2 guarantees above add up: together, whatever anyone can learn from everything these stages produce changes by at most a factor e^10.4 (plus a probability 1.1e-06)" <<<"$dp" &&
   ! grep -q "add up\|Taken together" "$base"; then
  pass "two private stages: the notice states their sum, rounded up"
else failed "two private stages" "$dp$(cat "$T/new.err")"; fi
twice 0
dp=$(section "$T/new.md" "Differential privacy")
if grep -q "^- Taken together, these 2 stages give no bound on the privacy loss" <<<"$dp" && ! grep -q "add up" <<<"$dp"; then
  pass "two private stages, one without a budget: no bound together"
else failed "two private stages, one unbounded" "$dp$(cat "$T/new.err")"; fi

# popular's exact counts: the notice says its lists tie an item to a
# pseudonym, and that items past max_items are not counted.
change 's/^  - use: dp_model$/  - use: popular\n    with: {max_items: 77}\n  - use: dp_model/'
if grep -q "at most 77 items; interactions with further items are not counted" "$T/new.md" &&
   grep -q "exact, not differentially private, .*sent under the person's pseudonym, .*can often tell which item the person behind a pseudonym interacted with" "$T/new.md"; then
  pass "popular: what its counts reveal, and its bound"
else failed "popular notice" "$(grep -i popular "$T/new.md"; cat "$T/new.err")"; fi

change 's/topic: recommendations$/topic: recs-for-notice/'
if grep -q "'recs-for-notice'" "$T/new.md" && ! grep -q "'recommendations'" "$T/new.md"; then
  pass "an output's topic is where the notice says results go"
else failed "output topic" "$(cat "$T/new.md" "$T/new.err")"; fi

change 's/dead_letter: \{topic: interactions.dlq\}/dead_letter: {topic: kept-for-notice}/'
if section "$T/new.md" "What we keep, where, and for how long" | grep -q "unchanged, with any identifier in it, on Kafka topic 'kept-for-notice'"; then
  pass "the dead-letter topic is named with what it keeps"
else failed "dead-letter topic" "$(cat "$T/new.md" "$T/new.err")"; fi

change 's/max_events: 256/max_events: 99/'
if grep -q "at most 99 interactions" "$T/new.md" && grep -q "at most 256 interactions" "$base"; then
  pass "the batch size bounds what is held in memory"
else failed "max_events" "$(cat "$T/new.md" "$T/new.err")"; fi

change 's/^keys: \{ephemeral: true\}/keys: {active: k9, files: {k8: \/nonexistent\/k8, k9: \/nonexistent\/k9}}/'
if grep -q "secret key 'k9' (2 keys configured" "$T/new.md" && ! grep -q "every restart" "$T/new.md" &&
   grep -q "every restart" "$base"; then
  pass "the key id and count come from keys: (key files are not read)"
else failed "keys" "$(cat "$T/new.md" "$T/new.err")"; fi

# Checkpoints copy what the stages keep to a topic: the notice names it,
# with the interval, and says how deleted data leaves the copies.
change 's/^keys: \{ephemeral: true\}/keys: {active: k1, files: {k1: \/nonexistent\/k1}}\nstate: {topic: state-for-notice, interval_ms: 90000}/'
if section "$T/new.md" "What we keep, where, and for how long" | grep -q "also copied every 90 seconds to Kafka topic 'state-for-notice'.*leaves the copies" &&
   ! grep -q "also copied" "$base"; then
  pass "the state topic is named with its interval"
else failed "state topic" "$(cat "$T/new.md" "$T/new.err")"; fi

# Learning holds one example per person until its step when the event's
# own time places it (a live shop's setting), and a count of steps that
# an erasure keeps.
change 's/^(\s+)step_time: batch$/\1step_time: event/'
held="holds at most one interaction of yours .* until its next update, at most"
if section "$T/new.md" "What we keep, where, and for how long" | grep -q "$held" && ! grep -q "$held" "$base" &&
   grep -q "counts the updates your events joined, under a keyed hash, .*keeps that count" "$base"; then
  pass "what learning holds about a person is stated"
else failed "learning's held example" "$(cat "$T/new.md" "$T/new.err")"; fi

# Keys the lint refuses get no notice either (the notice reads no key
# file, but takes the section as lint and run do).
for k in '{ephemeral: True}' '{active: k3, files: {k1: k1.key}}' '{active: k1, files: {k1: {a: b}}}' '{active: Key1, files: {Key1: k1.key}}'; do
  change "s/^keys: \{ephemeral: true\}/keys: $k/"
  want="ephemeral must be true|active key 'k3' is not in the keyring: the keyring holds k1|each key file must be a path|key id 'Key1' is invalid"
  if [ ! -s "$T/new.md" ] && grep -qE "demo-copy.yaml:[0-9]+:[0-9]+: keys: ($want)" "$T/new.err"; then
    pass "no notice for keys: $k"
  else failed "keys: $k" "$(head -3 "$T/new.md"; cat "$T/new.err")"; fi
done

# Every kept attribute is named, however many (the list was cut at 512
# bytes, and the notice then said the rest were discarded).
attrs=$(for i in $(seq -w 1 40); do printf 'attribute_key_number_%s, ' "$i"; done)
change "s/^  - use: pseudonymize\$/  - use: pseudonymize\n    with: {context.attrs: [${attrs%, }]}/"
if grep -q "attribute_key_number_01, .*attribute_key_number_40 are kept; the others are discarded" "$T/new.md"; then
  pass "every kept attribute is named"
else failed "kept attributes" "$(grep -i attribute "$T/new.md" | head -3; cat "$T/new.err")"; fi

# A pseudonym is deterministic: the notice never says it cannot be turned
# back (a country's code is read off by frequency), and says why it is
# used where the pipeline gives a reason.
change "s/^  - use: pseudonymize\$/  - use: pseudonymize\n    with: {context.country: 'pseudonym: prices differ per country'}/"
if section "$T/new.md" "How we protect it" | grep -q "Your country is replaced by a pseudonym, .* recognizes it wherever it appears\..* Why a pseudonym: prices differ per country\.$" &&
   ! grep -qi "cannot be turned back\|cannot be reversed" "$base" "$T/new.md"; then
  pass "a pseudonym is not promised to be irreversible, and its reason is given"
else failed "pseudonym sentence" "$(grep -i pseudonym "$T/new.md"; cat "$T/new.err")"; fi
change "s/^  - use: pseudonymize\$/  - use: pseudonymize\n    with: {context.country: pseudonym}/"
# (demo has no events output: the context stage reads the country.)
if [ ! -s "$T/new.md" ] && grep -q "stage 3 'context' reads 'context.country' (pii: quasi) .*no earlier stage treats them (generalized, dropped, or kept or pseudonymized with a reason).*'pseudonym: WHY'" "$T/new.err"; then
  pass "no notice for a quasi-identifier pseudonymized without a reason"
else failed "pseudonym without a reason" "$(head -3 "$T/new.md"; cat "$T/new.err")"; fi

# Kept coordinates are precise geolocation: only with special feature 1,
# and the notice says what everyone else gets.
change "s/^  - use: pseudonymize\$/  - use: pseudonymize\n    with: {context.lat: 'keep: store finder', require_special_feature_1: true}/"
if section "$T/new.md" "How we protect it" | grep -q "Your location is kept as sent: store finder\." &&
   section "$T/new.md" "Your consent" | grep -q "Your location as sent is precise geolocation: it is kept only if your consent includes precise geolocation (TCF special feature 1); otherwise it is reduced to a map cell of about 1.2 km × 0.6 km\."; then
  pass "kept coordinates: precise geolocation, only with consent"
else failed "kept coordinates" "$(grep -i location "$T/new.md"; cat "$T/new.err")"; fi
change "s/^  - use: pseudonymize\$/  - use: pseudonymize\n    with: {context.lat: 'keep: store finder'}/"
if [ ! -s "$T/new.md" ] && grep -q "keeps the exact coordinates, precise geolocation in TCF terms" "$T/new.err"; then
  pass "no notice for kept coordinates without require_special_feature_1"
else failed "kept coordinates without the option" "$(head -3 "$T/new.md"; cat "$T/new.err")"; fi

# As IAB vendor, our vendor's legitimate interest alone counts for the
# purposes taken on LI (default [11]: the contextual tier); without them,
# vendor consent alone.
change 's/^(\s+)tc_max_age_days: 0$/\1tc_max_age_days: 0\n\1vendor_id: 755/'
if section "$T/new.md" "Your consent" | grep -qF "A consent string counts only when it also gives our vendor (IAB id 755) consent or, for TCF purpose(s) 11, legitimate interest, and the site's restrictions on our vendor are applied." &&
   change 's/^(\s+)tc_max_age_days: 0$/\1tc_max_age_days: 0\n\1vendor_id: 755\n\1legitimate_interest: []/' &&
   section "$T/new.md" "Your consent" | grep -qF "A consent string counts only when it also gives our vendor (IAB id 755) consent, and the site's restrictions on our vendor are applied."; then
  pass "vendor_id: the notice names the paths through our vendor, LI included"
else failed "vendor_id" "$(grep -i "our vendor" "$T/new.md"; cat "$T/new.err")"; fi

# The schema's pii marks decide what is listed as collected.
sed 's/"pii": "quasi",//' "$root/schemas/interaction.avsc" >"$T/nopii.avsc"
change "s#schema: \.\./\.\./schemas/interaction\.avsc#schema: $T/nopii.avsc#"
if section "$base" "What we collect" | grep -q "your IP address" &&
   ! section "$T/new.md" "What we collect" | grep -q "your IP address" &&
   section "$T/new.md" "What we collect" | grep -q "your user id"; then
  pass "what is collected follows the schema's pii marks"
else failed "pii marks" "$(cat "$T/new.md" "$T/new.err")"; fi

# Every marked field is named, however many (the host's lists were cut at
# 2 KiB, mid-word).
python3 - "$root/schemas/interaction.avsc" "$T/many.avsc" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["fields"] += [{"name": "loyalty_programme_membership_identifier_from_partner_%02d" % i,
                 "type": ["null", "string"], "default": None, "pii": "quasi"}
                for i in range(1, 41)]
json.dump(s, open(sys.argv[2], "w"))
PY
change "s#schema: \.\./\.\./schemas/interaction\.avsc#schema: $T/many.avsc#"
if section "$T/new.md" "What we collect" |
   grep -q "partner_01; .*partner_39; loyalty_programme_membership_identifier_from_partner_40\.$"; then
  pass "every marked field is named"
else failed "many marked fields" "$(grep -c partner_ "$T/new.md"; cat "$T/new.err")"; fi

# Without a consent stage the notice says so; with a dp-less pipeline too.
if section "$base" "Your consent" | grep -q "does not check consent"; then
  if grep -q "use: consent" "$demo"; then failed "demo has consent but the notice says it does not check"
  else pass "no consent stage: the notice says consent is not checked"; fi
elif grep -q "use: consent" "$demo"; then pass "consent stage: the notice states its consent rules"
else failed "consent" "$(cat "$base")"; fi

# Without a consent stage the defaults decide, and the notice says what
# they grant rather than "if you allowed" alone (retail.yaml: personalized,
# training; each line goes with its setting).
retail="$root/config/pipelines/retail.yaml" rcopy="$T/config/pipelines/retail-copy.yaml"
"$VEIL" notice "$retail" >"$T/r.md" 2>&1
sed -E 's/^(\s+)default_training: true$/\1default_training: false/; s/^(\s+)default_tier: personalized$/\1default_tier: contextual/' \
  "$retail" >"$rcopy"
"$VEIL" notice "$rcopy" >"$T/r2.md" 2>&1
if section "$T/r.md" "Differential privacy" | grep -q "Interactions that no consent stage has decided are used to train" &&
   section "$T/r.md" "Why we use it" | grep -q "The recommendation for an interaction that no consent stage has decided is personalized" &&
   section "$T/r.md" "What we keep, where, and for how long" | grep -q "An interaction that no consent stage has decided is treated as if personalization were allowed" &&
   ! grep -q "no consent stage has decided" "$T/r2.md" && grep -q "Differential privacy" "$T/r2.md"; then
  pass "the defaults a pipeline without consent applies are stated"
else failed "defaults" "$(grep -i "consent stage" "$T/r.md" "$T/r2.md")"; fi

# A pipeline the privacy lint refuses gets no notice.
change 's/^  - use: pseudonymize$/  - use: passthrough/; s#^  dead_letter:#  events: {topic: raw-events, schema: ../../schemas/interaction.avsc}\n  dead_letter:#'
if [ ! -s "$T/new.md" ] && grep -q "in the clear" "$T/new.err"; then
  pass "no notice for a pipeline that fails the privacy lint"
else failed "privacy lint" "$(cat "$T/new.md" "$T/new.err")"; fi

check_usage() { # NAME WANT_RC PATTERN -- CMD
  local n=$1 want=$2 pat=$3; shift 4
  local out rc; out=$("$@" 2>&1); rc=$?
  if [ $rc -eq "$want" ] && grep -qE -- "$pat" <<<"$out"; then pass "$n"; else failed "$n (exit $rc)" "$out"; fi
}
check_usage "notice help" 0 "usage: veil notice PIPELINE.yaml" -- "$VEIL" notice --help
check_usage "notice without file" 2 "usage: veil notice" -- "$VEIL" notice
check_usage "notice bad format" 2 "--format must be md or html" -- "$VEIL" notice "$demo" --format pdf
check_usage "notice extra argument" 2 "one pipeline only, got an extra argument 'extra.yaml'" -- "$VEIL" notice "$demo" extra.yaml
check_usage "notice missing file" 2 "nope.yaml" -- "$VEIL" notice "$T/nope.yaml"
check_usage "veil help lists notice" 0 "notice PIPELINE.yaml" -- "$VEIL" --help
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]

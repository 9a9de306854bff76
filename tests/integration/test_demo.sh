#!/usr/bin/env bash
# `veil demo` on the embedded broker: exits 0 within a minute and its summary
# accounts for every bundled event, the garbage and the outputs read back.
set -euo pipefail
out=$(mktemp)
export VEIL_DEMO_ACCOUNTANT=$out.acc
trap 'rm -f "$out" "$out".acc*' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# A KAFKA_BOOTSTRAP in the environment names a cluster for the demo
# pipeline: veil demo refuses it (exit 2) and writes nothing there, unless
# --configured-broker asks for it (tests/integration/test_model.sh).
rc=0
KAFKA_BOOTSTRAP=127.0.0.1:9 timeout 20 "$VEIL" demo >"$out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "not embedded" "$out" && grep -q -- "--configured-broker" "$out" &&
  [ ! -e "$out.acc" ] || { cat "$out"; fail "veil demo with KAFKA_BOOTSTRAP set: exit $rc, want 2 and a refusal"; }
unset KAFKA_BOOTSTRAP
start=$SECONDS
timeout 90 "$VEIL" demo >"$out" 2>&1 || { cat "$out"; echo "FAIL: veil demo exited non-zero"; exit 1; }
took=$((SECONDS - start))
cat "$out" | cut -c1-200
grep -q "^veil demo — .* on the embedded broker$" "$out" || fail "not on the embedded broker"
[ "$took" -lt 60 ] || fail "veil demo took $took s"
n=$(($(wc -l <"$ROOT/config/demo/events.csv") - 1))
grep -q "decoded events: $n   undecodable: 3" "$out" || fail "not all $n events decoded"
grep -qE "^  dead letters: +3$" "$out" || fail "dead letters"
# consent decides first: what it keeps (personalized, contextual) goes on,
# tier none is dropped and counted by reason.
kept=$(sed -nE 's/^ +1\. consent +in '"$n"' +out ([0-9]+) .*/\1/p' "$out")
[ -n "$kept" ] && [ "$kept" -gt 0 ] && [ "$kept" -lt "$n" ] || fail "stage counts (consent)"
grep -qE "2\. pseudonymize +in $kept +out $kept" "$out" || fail "stage counts (pseudonymize)"
grep -qE "3\. context +in $kept +out $kept" "$out" || fail "stage counts (context)"
grep -qE "4\. dp_model +in $kept +out $kept" "$out" || fail "stage counts (dp_model)"
# never answered or tombstoned (no record), refused everything (not granted)
nr=$(sed -nE 's/^    consent: no record +([0-9]+)$/\1/p' "$out")
ng=$(sed -nE 's/^    consent: not granted +([0-9]+)$/\1/p' "$out")
[ -n "$nr" ] && [ -n "$ng" ] && [ "$ng" -gt 0 ] && [ $((nr + ng)) -eq $((n - kept)) ] ||
  fail "drops by reason (no record '$nr', not granted '$ng', want $((n - kept)) in all)"
read -r tp tc tn < <(sed -nE 's/^  tiers: +personalized ([0-9]+) +contextual ([0-9]+) +none ([0-9]+)$/\1 \2 \3/p' "$out")
[ "$((tp + tc))" -eq "$kept" ] && [ "$tn" -eq $((n - kept)) ] && [ "$tp" -gt 0 ] && [ "$tc" -gt 0 ] || fail "tiers"
w=$(grep -c ',true,[0-9]*$\|,app,[0-9]*,,[0-9][0-9]*$' "$ROOT/config/demo/consent.csv")
grep -qE "^  side records: +[0-9]+ before the events, $w during them" "$out" || fail "mid-stream withdrawals fed"
e=$(sed -nE 's/^  erasures: +([0-9]+) applied in every stage.*/\1/p' "$out")
[ -n "$e" ] && [ "$e" -ge "$w" ] || fail "erasures"
grep -qE "… $kept records" "$out" || fail "recommendations read back"
# The latest recommendations as a person sees them: items and the features
# that weighed most, in words.
[ "$(grep -cE '^    eph\.[^ ]+ e[0-9]+ \((personalized|contextual)\):( [^ ]+){5} … — "[a-z].+"$' "$out")" -eq 3 ] ||
  fail "recommendations with explanations"
grep -q '"subject": "eph\.' "$out" || fail "no decoded recommendation with a pseudonymous subject"
cut -d, -f2 "$ROOT/config/demo/events.csv" | sort -u | grep -v user_id >"$out.users"
grep -oE '"subject": "[^"]*"' "$out" | grep -qFf "$out.users" && fail "a raw user id in the demo output"
rm -f "$out.users"
# What the model learned, and the steps it released, from the stage's
# gauges: some events, and as many noisy steps as the accountant charged
# (a fresh file) or more.
grep -qE '^  gauges: +dp_model: events_learned [1-9][0-9]*, .*, noisy_steps [1-9][0-9]*, noisy_steps_empty [0-9]+$' "$out" ||
  fail "dp_model's gauges: $(grep 'gauges: *dp_model' "$out")"
# The model learns under differential privacy: the summary states the ε the
# accountant file holds, at most the ε = 1 one run may cost, and every
# record read back carries ε and δ.
eps=$(sed -nE 's/^  privacy: +epsilon ([0-9.e+-]+) spent of a budget of 8 at delta 1e-06 .*/\1/p' "$out")
acc=$("$VEIL" dp_model accountant --file "$VEIL_DEMO_ACCOUNTANT" --delta 1e-6 | sed -n 's/^epsilon=//p')
[ -n "$eps" ] && awk -v e="$eps" -v a="$acc" 'BEGIN { exit !(e > 0 && e <= 1 && (e - a) ^ 2 < 1e-6) }' ||
  fail "privacy line '$eps' (accountant file: '$acc')"
[ "$(grep -c '"epsilon_spent": {"double": [0-9.e-]*}, "delta": 9.99' "$out")" -eq 3 ] ||
  fail "records without epsilon_spent and delta"
# A second run replays the same people: the same file charges it again.
timeout 90 "$VEIL" demo >"$out" 2>&1 || { cat "$out"; fail "second veil demo"; }
eps2=$(sed -nE 's/^  privacy: +epsilon ([0-9.e+-]+) spent .*/\1/p' "$out")
[ -n "$eps2" ] && awk -v a="$eps" -v b="$eps2" 'BEGIN { exit !(b > a) }' ||
  fail "a second run did not add to epsilon ($eps, then '$eps2')"
echo "PASS test_demo ($took s; epsilon $eps, then $eps2 after a second run)"

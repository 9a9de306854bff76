#!/usr/bin/env bash
# The demo pipeline (consent → pseudonymize → context → dp_model) on the
# real broker: `veil demo` feeds the bundled events and consent records to
# fresh topics; every consented event gets exactly one recommendation,
# read back independently with kcat: ten items, a tier it may use, an
# explanation in words, a pseudonymous subject and no raw id.
source "$(dirname "$0")/lib.sh"

export KAFKA_BOOTSTRAP="$BROKER" VEIL_GROUP="model-$SUFFIX" VEIL_DEMO_ACCOUNTANT="$WORK/dp.acc"
DEMO="$ROOT/config/pipelines/demo.yaml"
grep -qE '^  - use: context$' "$DEMO" && grep -qE '^  - use: dp_model$' "$DEMO" ||
  fail "the demo pipeline does not end with context → dp_model"
# The demo pipeline as it is, but with topics of its own on the shared
# broker (and its relative paths made absolute for the copy).
VEIL_RECS="model-recs-$SUFFIX"
PIPELINE="$WORK/demo.yaml"
sed -E -e "s#\.\./\.\./schemas/#$ROOT/schemas/#g" -e "s#\.\./demo/#$ROOT/config/demo/#g" \
  -e "s#^  topic: interactions\$#  topic: model-in-$SUFFIX#" \
  -e "s#^    topic: recommendations\$#    topic: $VEIL_RECS#" \
  -e "s#\{topic: (interactions\.dlq|consent|consent-audit|access),#{topic: model-\1-$SUFFIX,#" \
  -e "s#\{topic: interactions\.dlq\}#{topic: model-dlq-$SUFFIX}#" \
  "$DEMO" >"$PIPELINE"
for t in "model-in-" "$VEIL_RECS" "model-consent-" "model-consent-audit-" "model-access-" "model-dlq-"; do
  grep -q "topic: $t" "$PIPELINE" || fail "could not rename topic $t in the copy of demo.yaml"
done

# KAFKA_BOOTSTRAP names the test broker: veil demo writes there only when
# asked to (--configured-broker), else it refuses.
timeout 150 "$VEIL" demo --configured-broker "$PIPELINE" >"$WORK/demo.out" 2>&1 ||
  { cat "$WORK/demo.out"; fail "veil demo on the broker exited non-zero"; }
grep -q "on the configured broker" "$WORK/demo.out" || fail "not on the real broker"
n=$(($(wc -l <"$ROOT/config/demo/events.csv") - 1))
# Consented: what the first stage lets through; every later stage keeps it.
kept=$(sed -nE 's/^ +1\. consent +in '"$n"' +out ([0-9]+) .*/\1/p' "$WORK/demo.out")
[ -n "$kept" ] && [ "$kept" -gt 0 ] || { cat "$WORK/demo.out"; fail "consent counts"; }
grep -qE "[0-9]\. dp_model +in $kept +out $kept +dropped 0 " "$WORK/demo.out" ||
  fail "dp_model did not see every consented event"
ok "$kept of $n events consented"

wait_count "$VEIL_RECS" "$kept" 30 || fail "recommendations on the topic"
consume "$VEIL_RECS" "$REC_SCHEMA" >"$WORK/recs.json"
total=$(wc -l <"$WORK/recs.json")
distinct=$(jq -r '.value.event_id' "$WORK/recs.json" | sort -u | wc -l)
[ "$total" -eq "$kept" ] && [ "$distinct" -eq "$kept" ] ||
  fail "$total recommendations for $distinct events, want one for each of $kept"
ok "one recommendation per consented event ($kept), read back with kcat"

jq -se 'all(.[]; .value.tier == "personalized" or .value.tier == "contextual")' \
  "$WORK/recs.json" >/dev/null || fail "a recommendation in a tier consent does not let through"
jq -se 'all(.[]; (.value.items | length) == 10 and (.value.explanation | length) > 0
              and .value.epsilon_spent.double >= 0 and .value.epsilon_spent.double <= 1
              and (.value.delta - 1e-6 | fabs) < 1e-12 and .key == .value.subject)' \
  "$WORK/recs.json" >/dev/null || fail "items, explanation, epsilon and delta, or key"
jq -se 'map(.value.model_version) | max > 0' "$WORK/recs.json" >/dev/null ||
  fail "the model never learned"
jq -se 'map(.value.epsilon_spent.double) | max > 0' "$WORK/recs.json" >/dev/null ||
  fail "no record carries the epsilon its learning spent"
jq -r '.key, .value.subject' "$WORK/recs.json" | sort -u >"$WORK/subjects"
grep -qv '^eph\.[A-Za-z0-9_-]\{22\}$' "$WORK/subjects" && fail "a subject that is not a pseudonym"
cut -d, -f2 "$ROOT/config/demo/events.csv" | tail -n +2 | sort -u >"$WORK/users"
grep -qxFf "$WORK/users" "$WORK/subjects" && fail "a raw user id in the recommendations"
ok "ten items, an explanation and a pseudonymous subject each"
jq -r '.value.explanation' "$WORK/recs.json" | sort | uniq -c | sort -rn | sed -n '1,3p'
echo "PASS test_model"

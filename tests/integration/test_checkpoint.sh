#!/usr/bin/env bash
# Stage state checkpointed to a state topic (the state: section): a run of
# pseudonymize → context → dp_model (Gaussian mechanism) writes checkpoints
# at its interval and on SIGTERM; a restart with an empty accountant
# directory restores the profiles and the model, and its ε never goes below
# what the first run had spent. A garbage record in the state topic is
# skipped with a warning. With VEIL_MECHANISM=tree (test_checkpoint_tree):
# the restart begins a new tree, and ε still never goes down. The state
# topic: created compacted at start when missing; one too small for a
# checkpoint's batches refused at start; one not compacted warned about.
source "$(dirname "$0")/lib.sh"
RECTOOL=${RECTOOL:-$(dirname "$AVROTOOL")/rectool}

export VEIL_INPUT="ckpt-in-$SUFFIX" VEIL_RECS="ckpt-recs-$SUFFIX" \
  VEIL_DLQ="ckpt-dlq-$SUFFIX" VEIL_GROUP="ckpt-$SUFFIX" VEIL_STATE="ckpt-state-$SUFFIX"
export VEIL_KEYFILE="$WORK/key" VEIL_ACCOUNTANT="$WORK/acc1/accountant"
mkdir -p "$WORK/acc1" "$WORK/acc2"
head -c 32 /dev/urandom >"$VEIL_KEYFILE"
chmod 600 "$VEIL_KEYFILE"
PIPE="$ROOT/tests/pipelines/checkpoint.yaml"

N=2000
head -n $((N + 1)) "$ROOT/config/demo/events.csv" >"$WORK/a.csv"
produce "$VEIL_INPUT" "$WORK/a.csv"
start_veil "$PIPE" "$WORK/veil1.log"
wait_count "$VEIL_RECS" $N 40 || { tail -20 "$WORK/veil1.log"; fail "recommendations of run 1"; }
# At least one checkpoint at the 2 s interval before the one on SIGTERM.
wait_log "$WORK/veil1.log" 'state: checkpoint [0-9]* of 2 stage(s) produced' 30 ||
  fail "run 1 wrote no checkpoint at its 2 s interval"
stop_veil 20
grep -q 'state: stage 1 (context): no checkpoint, starting empty' "$WORK/veil1.log" || fail "run 1 should start without a checkpoint"
# Created by the host, compacted: broker auto-creation would have made it
# with cleanup.policy=delete, where tombstones delete nothing.
grep -q "state: created topic '$VEIL_STATE' (1 partition, cleanup.policy=compact" "$WORK/veil1.log" ||
  { grep state: "$WORK/veil1.log" | head -3; fail "the state topic was not created at start"; }
[ "$("$RECTOOL" topic-config "$BROKER" "$VEIL_STATE" cleanup.policy)" = compact ] ||
  fail "the state topic is not compacted"
ok "the state topic was created compacted at start"
n_ck=$(grep -c 'state: checkpoint [0-9]* of 2 stage(s) produced' "$WORK/veil1.log" || true)
[ "$n_ck" -ge 2 ] || fail "run 1 wrote $n_ck checkpoints, want one at the interval and one on SIGTERM"
n_state=$(count "$VEIL_STATE")
[ "$n_state" -ge 4 ] || fail "state topic holds $n_state records"
ok "$n_ck checkpoints of context and dp_model, $n_state records on the state topic"

if [ -n "${VEIL_STEP_S:-}" ]; then
  grep -q "mechanism (DP-FTRL): .*steps of ${VEIL_STEP_S}s on the clock" "$WORK/veil1.log" ||
    fail "not on the clock: $(grep -o 'mechanism[^"]*' "$WORK/veil1.log" | head -1)"
  ok "steps of ${VEIL_STEP_S} s on the clock"
fi
consume "$VEIL_RECS" "$REC_SCHEMA" >"$WORK/recs1.json"
eps1=$(jq -s 'map(.value.epsilon_spent.double // 0) | max' "$WORK/recs1.json")
jq -e -n --argjson e "$eps1" '$e > 0' >/dev/null || fail "run 1 spent no ε ($eps1)"

# Garbage on a checkpoint key: unrecognisable, skipped with a warning.
printf '%s/1-context/0\tnot a chunk\n' "$VEIL_GROUP" |
  kcat -b "$BROKER" "${KCAT_OPTS[@]}" -P -t "$VEIL_STATE" -K $'\t' 2>/dev/null ||
  fail "kcat could not produce the garbage record"

# Restart with an empty accountant directory: ε comes from the checkpoint.
export VEIL_ACCOUNTANT="$WORK/acc2/accountant"
M=500
{ head -n 1 "$ROOT/config/demo/events.csv"; sed -n "$((N + 2)),$((N + M + 1))p" "$ROOT/config/demo/events.csv"; } >"$WORK/b.csv"
produce "$VEIL_INPUT" "$WORK/b.csv"
# Run 2 from a copy of the file, so that a reload can change its state:
# section (paths made absolute).
sed -e "s#\.\./\.\./config/#$ROOT/config/#g" -e "s#\.\./\.\./schemas/#$ROOT/schemas/#g" \
  "$PIPE" >"$WORK/ck.yaml"
start_veil "$WORK/ck.yaml" "$WORK/veil2.log"
wait_count "$VEIL_RECS" $((N + M)) 40 || { tail -20 "$WORK/veil2.log"; fail "recommendations of run 2"; }
# A reload that names another state topic: checkpoints go on to the one
# the start read (numbered above its newest), with a warning; numbered
# from 1 on the other topic, they would lose to older ones there.
sed -i "s#topic: \"\${VEIL_STATE}\"#topic: \"$VEIL_STATE-other\"#" "$WORK/ck.yaml"
grep -q "$VEIL_STATE-other" "$WORK/ck.yaml" || fail "the state topic was not changed in the copy"
kill -HUP "$VEIL_PID"
for _ in $(seq 50); do grep -q 'reload: the state: section now names topic' "$WORK/veil2.log" && break; sleep 0.2; done
grep -q "reload: the state: section now names topic '$VEIL_STATE-other'; checkpoints continue as before (to '$VEIL_STATE')" "$WORK/veil2.log" ||
  { tail -5 "$WORK/veil2.log"; fail "the reload did not keep the state topic"; }
sleep 3 # a checkpoint at the interval, after the reload
stop_veil 20
sed -n '/reload: the state: section now names topic/,$p' "$WORK/veil2.log" |
  grep -q "state: checkpoint [0-9]* of 2 stage(s) produced to '$VEIL_STATE'" ||
  fail "no checkpoint to '$VEIL_STATE' after the reload"
[ "$(count "$VEIL_STATE-other")" = 0 ] || fail "checkpoints went to the new topic"
ok "a reload naming another state topic keeps checkpointing to the one the start read"
grep -q 'state: stage 1 (context): restored checkpoint' "$WORK/veil2.log" ||
  { grep state "$WORK/veil2.log" | head; fail "context not restored"; }
grep -q 'state: stage 2 (dp_model): restored checkpoint' "$WORK/veil2.log" || fail "dp_model not restored"
grep -q 'unrecognisable record' "$WORK/veil2.log" || fail "the garbage record was not reported"
users=$(tail -n +2 "$WORK/a.csv" | cut -d, -f2 | sort -u | wc -l)
n_prof=$(grep -o 'restored [0-9]* profiles' "$WORK/veil2.log" | head -1 | grep -o '[0-9]*')
[ "${n_prof:-0}" -eq "$users" ] || fail "restored ${n_prof:-0} profiles, want the $users users of run 1"
ok "context restored $n_prof profiles (the $users users of run 1)"

# Run 2's records: those not already there after run 1 (by position).
consume "$VEIL_RECS" "$REC_SCHEMA" >"$WORK/recs_all.json"
jq -sc --slurpfile one "$WORK/recs1.json" \
  '($one | map("\(.partition):\(.offset)") | INDEX(.)) as $seen |
   .[] | select($seen["\(.partition):\(.offset)"] == null)' \
  "$WORK/recs_all.json" >"$WORK/recs2.json"
[ "$(wc -l <"$WORK/recs2.json")" -ge $M ] || fail "run 2 has fewer than $M recommendations"
[ -s "$WORK/recs2.json" ] || fail "no recommendations of run 2"
eps2=$(jq -s 'map(.value.epsilon_spent.double // 0) | min' "$WORK/recs2.json")
jq -e -n --argjson a "$eps1" --argjson b "$eps2" '$b >= $a' >/dev/null ||
  fail "ε went down across the restart: $eps1 before, $eps2 after"
ok "ε after the restart ($eps2) >= before ($eps1) with an empty accountant directory"
if [ "${VEIL_MECHANISM:-gaussian}" = tree ]; then
  # The restored accountant stands in tree 0; the restart opens tree 1
  # (a continued tree could see a user twice, in shared nodes).
  grep -q '"restored: the next step begins tree 1 ' "$WORK/veil2.log" ||
    { grep -i tree "$WORK/veil2.log" | head -3; fail "the restart did not begin a new tree"; }
  ok "the restart begins tree 1"
fi
grep -q '"level":"error"' "$WORK/veil1.log" "$WORK/veil2.log" && fail "errors in the log"

if [ "${VEIL_MECHANISM:-gaussian}" = gaussian ]; then
  # A state topic whose max.message.bytes cannot take a checkpoint's batch
  # (1,000,000 bytes with librdkafka's defaults): refused at start, with
  # the command that fixes it, instead of at the first checkpoint.
  export VEIL_STATE="ckpt-small-$SUFFIX" VEIL_ACCOUNTANT="$WORK/acc3/accountant"
  mkdir -p "$WORK/acc3"
  "$RECTOOL" create-topic "$BROKER" "$VEIL_STATE" 1 max.message.bytes=500000 ||
    fail "create the small state topic"
  rc=0
  KAFKA_BOOTSTRAP="$BROKER" timeout 60 "$VEIL" run "$PIPE" 2>"$WORK/veil3.log" || rc=$?
  [ "$rc" = 1 ] || { tail -3 "$WORK/veil3.log"; fail "a too small state topic: exit $rc, want 1"; }
  grep -q "topic '$VEIL_STATE' has max.message.bytes=500000 and checkpoints are sent in batches of up to 1000000 bytes.*--add-config max.message.bytes=1000000" "$WORK/veil3.log" ||
    { tail -3 "$WORK/veil3.log"; fail "the refusal does not name the setting and its fix"; }
  ok "a state topic too small for the checkpoints is refused at start"

  # Not compacted: runs, with a warning that names the fix.
  export VEIL_STATE="ckpt-delete-$SUFFIX"
  "$RECTOOL" create-topic "$BROKER" "$VEIL_STATE" 1 cleanup.policy=delete ||
    fail "create the non-compacted state topic"
  start_veil "$PIPE" "$WORK/veil4.log"
  wait_log "$WORK/veil4.log" "state: topic '$VEIL_STATE' has cleanup.policy=delete, not compact" 30 ||
    { tail -3 "$WORK/veil4.log"; fail "no warning about a state topic that is not compacted"; }
  stop_veil 20
  ok "a state topic that is not compacted is warned about"
fi
echo "PASS test_checkpoint"

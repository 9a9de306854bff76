#!/usr/bin/env bash
# Model updates between instances: two `veil run` instances of one pipeline
# (tree mechanism) in one group each publish their noisy releases on the
# model-updates topic and apply the other's, read from the same topic as a
# side input. A restarted instance applies every release of the other one
# on the topic exactly once, and numbers its own releases after those it
# made before.
source "$(dirname "$0")/lib.sh"

export VEIL_INPUT="share-in-$SUFFIX" VEIL_RECS="share-recs-$SUFFIX" \
  VEIL_DLQ="share-dlq-$SUFFIX" VEIL_UPDATES="share-upd-$SUFFIX" VEIL_GROUP="share-$SUFFIX"
UPD_SCHEMA="$ROOT/schemas/model_update.avsc"
N=6000
head -n $((N + 1)) "$ROOT/config/demo/events.csv" >"$WORK/events.csv"
sed -n "1p;$((N + 2)),$((N + 2001))p" "$ROOT/config/demo/events.csv" >"$WORK/more.csv"
topic "$VEIL_INPUT"
topic "$VEIL_UPDATES"

# net LOG: partitions the instance holds now, from its log lines
net() {
  awk '/"assigned [0-9]+ partition/ {match($0, /assigned [0-9]+/); a += substr($0, RSTART + 9, RLENGTH - 9)}
       /"revoking [0-9]+ partition/ {match($0, /revoking [0-9]+/); a -= substr($0, RSTART + 9, RLENGTH - 9)}
       END {print a + 0}' "$1"
}
# Both instances hold input partitions before the events arrive, so that
# both learn (and release) from their share of the users.
PIDS=()
for i in a b; do
  VEIL_INSTANCE_ID=$i VEIL_ACCOUNTANT="$WORK/acc-$i" \
    start_veil "$ROOT/tests/pipelines/share.yaml" "$WORK/veil-$i.log"
  PIDS+=("$VEIL_PID")
done
# (A cooperative rebalance takes two rounds; on a loaded machine, seconds.)
deadline=$((SECONDS + 90))
until [ "$(net "$WORK/veil-a.log")" -ge 1 ] && [ "$(net "$WORK/veil-b.log")" -ge 1 ]; do
  [ $SECONDS -lt $deadline ] ||
    fail "partitions not spread over the two instances: $(net "$WORK/veil-a.log") and $(net "$WORK/veil-b.log")"
  sleep 0.5
done
produce "$VEIL_INPUT" "$WORK/events.csv"
wait_count "$VEIL_RECS" $N 90 || { tail -5 "$WORK/veil-a.log"; fail "recommendations"; }
applied() { grep -c "applied a model update of instance '$2'" "$WORK/veil-$1.log"; }
deadline=$((SECONDS + 30))
until [ "$(applied a b)" -gt 0 ] && [ "$(applied b a)" -gt 0 ]; do
  [ $SECONDS -lt $deadline ] ||
    fail "updates did not flow both ways: a applied $(applied a b) of b's, b $(applied b a) of a's"
  sleep 0.5
done
grep -q 'tree mechanism (DP-FTRL): .*steps of 0.001s on the clock' "$WORK/veil-a.log" ||
  fail "not on the clock: $(grep -o 'tree mechanism[^"]*' "$WORK/veil-a.log" | head -1)"
# The other instance's part of the spend, on a's /metrics.
addr=$(grep -o '"address":"[^"]*"' "$WORK/veil-a.log" | sed -n '1s/.*:"\(.*\)"/\1/p')
others=$(curl -sf "http://$addr/metrics" | sed -n 's/^veil_plugin_dp_model_rho_others{[^}]*} //p')
awk -v r="${others:-0}" 'BEGIN{exit !(r > 0)}' ||
  fail "a's /metrics ($addr) has no positive veil_plugin_dp_model_rho_others: '${others}'"
ok "a's /metrics: veil_plugin_dp_model_rho_others $others"
for i in 0 1; do VEIL_PID=${PIDS[$i]}; stop_veil 20; done
ok "a applied $(applied a b) releases of b, b applied $(applied b a) of a"

consume "$VEIL_UPDATES" "$UPD_SCHEMA" |
  jq -c '.value | {instance, seq, chunk, chunks, rows, eps: .epsilon_spent, rho, delta, m: .mechanism, d: .draws_per_rho}' >"$WORK/upd1.json"
[ "$(jq -r .instance "$WORK/upd1.json" | sort -u | tr '\n' ' ')" = "a b " ] ||
  fail "the updates topic should hold releases of a and b"
# (jq -e reports the last input's result alone: -s looks at them all.)
jq -e -s 'any(.[]; .m != "tree" or .eps <= 0)' "$WORK/upd1.json" >/dev/null &&
  fail "an update without the tree mechanism or an epsilon"
a_chunks=$(jq -r 'select(.instance == "a") | 1' "$WORK/upd1.json" | wc -l)
b_max=$(jq -r 'select(.instance == "b") | .seq' "$WORK/upd1.json" | sort -n | tail -1)
ok "$(wc -l <"$WORK/upd1.json") chunks on the topic ($a_chunks of a), b's last release $b_max"
# Each update carries its sender's sampler rate, which its readers count
# the sum of ρ at: its accountant file's (the same configuration here).
for i in a b; do
  file_d=$("$VEIL" dp_model accountant --file "$WORK/acc-$i" --delta 1e-8 | sed -n 's/^draws_per_rho=//p')
  topic_d=$(jq -r "select(.instance == \"$i\") | .d" "$WORK/upd1.json" | sort -gu | tr '\n' ' ')
  awk -v f="$file_d" -v t="$topic_d" 'BEGIN{split(t, x, " "); exit !(f > 0 && length(x) == 1 && x[1] >= f * (1 - 1e-4) && x[1] <= f * (1 + 1e-9))}' ||
    fail "$i's updates carry draws_per_rho '$topic_d', its accountant file says '$file_d'"
done
ok "the updates carry their sender's draws_per_rho ($file_d)"

# A user whose partition moved is in both instances' releases, and each
# model holds both: the ε a record reports adds the other instance's ρ to
# the instance's own. So it exceeds every ε an instance spent alone (the
# updates carry their sender's own), and never the ε of both ρ together.
# eps_after SEEN: the ε of the records after those listed in $WORK/SEEN
# ({p, o} per record), in increasing order.
eps_after() {
  consume "$VEIL_RECS" "$ROOT/schemas/recommendation.avsc" |
    jq -nr --slurpfile old "$WORK/$1" '
      ($old | group_by(.p) | map({key: (.[0].p | tostring), value: (map(.o) | max)}) | from_entries) as $last
      | inputs | select(.offset > ($last[.partition | tostring] // -1))
      | .value.epsilon_spent.double // 0' | sort -g
}
max_of() { jq -r "select(.instance == \"$1\") | .$2" "$WORK/upd1.json" | sort -g | tail -1; }
own_max=$(printf '%s\n' "$(max_of a eps)" "$(max_of b eps)" | sort -g | tail -1)
delta=$(jq -r .delta "$WORK/upd1.json" | sed -n 1p)
both=$("$VEIL" dp_model epsilon --rho "$(awk -v a="$(max_of a rho)" -v b="$(max_of b rho)" 'BEGIN{printf "%.17g", a + b}')" \
  --delta "$delta" | sed -n 's/^epsilon=//p')
consume "$VEIL_RECS" "$ROOT/schemas/recommendation.avsc" |
  jq -c '{p: .partition, o: .offset, eps: .value.epsilon_spent.double}' >"$WORK/recs1.json"
rec_max=$(jq -r '.eps // empty' "$WORK/recs1.json" | sort -g | tail -1)
awk -v r="$rec_max" -v o="$own_max" -v b="$both" 'BEGIN{exit !(r > o && r <= b * (1 + 1e-5))}' ||
  fail "records report epsilon up to $rec_max; each instance alone spent up to $own_max, both together $both"
ok "records report epsilon up to $rec_max: above either instance's own ($own_max), within both together ($both)"
for i in a b; do
  grep -q "now counts the releases of 1 other sender(s)" "$WORK/veil-$i.log" ||
    fail "$i did not log that its epsilon counts the other instance's releases"
done

# more ID LOG UPDATES WHAT: instance ID alone on the updates topic UPDATES
# serves the 2,000 further events, then stops.
served=$N
more() {
  VEIL_INSTANCE_ID=$1 VEIL_ACCOUNTANT="$WORK/acc-$1" VEIL_UPDATES="$3" \
    start_veil "$ROOT/tests/pipelines/share.yaml" "$WORK/$2"
  produce "$VEIL_INPUT" "$WORK/more.csv"
  served=$((served + 2000))
  wait_count "$VEIL_RECS" $served 60 || fail "recommendations $4"
  stop_veil 20
}

# b alone again: before its first batch it applies every chunk of a on the
# topic (no checkpoint here), and its new releases come after b_max.
VEIL_INSTANCE_ID=b VEIL_ACCOUNTANT="$WORK/acc-b" \
  start_veil "$ROOT/tests/pipelines/share.yaml" "$WORK/veil-b2.log"
produce "$VEIL_INPUT" "$WORK/more.csv"
served=$((served + 2000))
wait_count "$VEIL_RECS" $served 60 || fail "recommendations after the restart"
deadline=$((SECONDS + 30))
until [ "$(consume "$VEIL_UPDATES" "$UPD_SCHEMA" | wc -l)" -gt "$(wc -l <"$WORK/upd1.json")" ]; do
  [ $SECONDS -lt $deadline ] || fail "no release after the restart"
  sleep 0.5
done
stop_veil 20
got=$(sed -nE 's/.*"([0-9]+) model update chunk\(s\) of other instances applied.*/\1/p' "$WORK/veil-b2.log")
[ "$got" = "$a_chunks" ] || fail "the restarted b applied ${got:-no} chunks of a, want $a_chunks"
consume "$VEIL_UPDATES" "$UPD_SCHEMA" | jq -c '.value | {instance, seq, chunk}' >"$WORK/upd2.json"
# b's releases after the restart: the seqs of b that were not there before.
first_new=$(comm -13 <(jq -r 'select(.instance == "b") | .seq' "$WORK/upd1.json" | sort -u) \
  <(jq -r 'select(.instance == "b") | .seq' "$WORK/upd2.json" | sort -u) | sort -n | head -1)
[ -n "$first_new" ] && [ "$first_new" -gt "$b_max" ] ||
  fail "b's first release after the restart is ${first_new:-missing}, want > $b_max"
[ "$(jq -r 'select(.instance == "b") | "\(.seq) \(.chunk)"' "$WORK/upd2.json" | sort | uniq -d | wc -l)" -eq 0 ] ||
  fail "b reused a (seq, chunk)"
# The restarted b read a's releases before its first batch: every record
# it made counts a's spend.
a_eps=$(max_of a eps)
new_min=$(eps_after recs1.json | sed -n 1p)
awk -v n="$new_min" -v a="$a_eps" 'BEGIN{exit !(n > a)}' ||
  fail "a record of the restarted b reports epsilon $new_min, not above a's own $a_eps"
ok "the restarted b's records report epsilon from $new_min, above a's own $a_eps"
grep -q '"level":"error"' "$WORK/veil-b2.log" && fail "errors in the log"
ok "restarted b applied all $a_chunks chunks of a once; its releases resume at seq $first_new"

# The topic has dropped a's releases (retention) and no checkpoint is
# restored: b still counts a's spend, from the file beside its accountant
# file, so ε never goes below what b reported before (an empty updates
# topic stands for the dropped records).
b2_max=$(eps_after recs1.json | tail -1)
consume "$VEIL_RECS" "$ROOT/schemas/recommendation.avsc" | jq -c '{p: .partition, o: .offset}' >"$WORK/recs2.json"
[ -s "$WORK/acc-b.others" ] || fail "b kept no file of the other instances' spend beside its accountant file"
topic "share-upd-empty-$SUFFIX"
more b veil-b4.log "share-upd-empty-$SUFFIX" "with an empty updates topic"
# Its releases there are numbered after the ones before, from its
# accountant file alone: a reader whose checkpoint holds b's last number
# would skip any below it as applied.
b4_first=$(consume "share-upd-empty-$SUFFIX" "$UPD_SCHEMA" | jq -r '.value | select(.instance == "b") | .seq' | sort -n | sed -n 1p)
b2_last=$(jq -r 'select(.instance == "b") | .seq' "$WORK/upd2.json" | sort -n | tail -1)
[ -n "$b4_first" ] && [ "$b4_first" -gt "$b2_last" ] ||
  fail "b's first release on the empty topic is seq ${b4_first:-none}, its last before was $b2_last"
grep -q "counts the releases of other instances that an earlier run applied" "$WORK/veil-b4.log" ||
  fail "b did not count a's spend from its file at start"
b4_min=$(eps_after recs2.json | sed -n 1p)
awk -v n="$b4_min" -v o="$b2_max" 'BEGIN{exit !(n >= o && o > 0)}' ||
  fail "with a's records gone b reports epsilon from $b4_min, below the $b2_max it reported before"
grep -q '"level":"error"' "$WORK/veil-b4.log" && fail "errors in the log"
ok "with a's records gone, b reports epsilon from $b4_min (before: up to $b2_max)"
# The operator's view: the accountant file and the others' ρ beside it.
acct=$("$VEIL" dp_model accountant --file "$WORK/acc-b" --delta "$delta")
total=$(sed -n 's/^epsilon_total=//p' <<<"$acct")
own=$(sed -n 's/^epsilon=//p' <<<"$acct")
awk -v t="${total:-0}" -v o="$own" -v r="$b4_min" 'BEGIN{exit !(t > o && t >= r * (1 - 1e-5))}' ||
  fail "veil dp_model accountant: epsilon_total '${total}' (own $own), b's records report up to $b4_min: $acct"
ok "veil dp_model accountant on b's file: epsilon $own of its own, $total with the others'"

# b's accountant file lost: its releases on the topic still count, as
# another sender's, from its first batch.
b_rho=$(consume "$VEIL_UPDATES" "$UPD_SCHEMA" | jq -r '.value | select(.instance == "b") | .rho' | sort -g | tail -1)
old_lin=$(consume "$VEIL_UPDATES" "$UPD_SCHEMA" | jq -r '.value | select(.instance == "b") | .lineage' | sort -u)
[ "$(wc -w <<<"$old_lin")" -eq 1 ] || fail "b's releases before the loss carry lineages '$old_lin', want one"
rm -f "$WORK/acc-b"
more b veil-b3.log "$VEIL_UPDATES" "after the file was lost"
lost=$(sed -nE 's/.*released updates costing rho ([0-9.e+-]+) under 1 earlier accountant file.*/\1/p' "$WORK/veil-b3.log")
[ -n "$lost" ] || fail "b did not say that the topic holds releases of its earlier accountant file"
# The log gives 4 digits.
awk -v l="$lost" -v b="$b_rho" 'BEGIN{exit !(l >= b * 0.999)}' ||
  fail "b counts rho $lost of its lost releases, the topic holds up to $b_rho"
grep -q "now counts the releases of 2 other sender(s)" "$WORK/veil-b3.log" ||
  fail "b's lost releases do not count in its epsilon"
ok "with its accountant file lost, b counts its earlier releases (rho $lost) as another sender's"
# ... and so do the others: a new file is a new lineage, which a reader
# counts beside the old one (not the larger of the two), and b's releases
# list the old one in spent_by.
new=$(consume "$VEIL_UPDATES" "$UPD_SCHEMA" |
  jq -c --argjson l "$old_lin" '.value | select(.instance == "b" and .lineage != $l) | {lineage, spent_by}' | sed -n 1p)
[ -n "$new" ] || fail "b released nothing after its accountant file was lost"
new_lin=$(jq -r .lineage <<<"$new")
listed=$(jq -r --argjson l "$old_lin" '.spent_by[] | select(.instance == "b" and .lineage == $l) | .rho' <<<"$new")
awk -v n="${listed:-0}" -v b="$b_rho" 'BEGIN{exit !(n >= b)}' ||
  fail "b's releases after the loss list its old lineage $old_lin at rho '${listed}', the topic holds up to $b_rho: $new"
file_lin=$("$VEIL" dp_model accountant --file "$WORK/acc-b" --delta "$delta" | sed -n 's/^lineage=//p')
[ -n "$file_lin" ] && [ "$file_lin" = "$new_lin" ] ||
  fail "veil dp_model accountant says lineage '${file_lin}', b's releases carry $new_lin"
ok "b's releases after its file was lost carry lineage $new_lin (before: $old_lin, listed at rho $listed)"
# A plain restart after that counts nothing twice: what b's updates carry
# is what its accountant and the earlier releases count, to the last bit.
more b veil-b5.log "$VEIL_UPDATES" "after a plain restart"
grep -q "accountant file costing" "$WORK/veil-b5.log" &&
  fail "a plain restart took b's own releases for uncounted ones: $(grep -m1 'accountant file costing' "$WORK/veil-b5.log")"
ok "a plain restart after the loss counts b's releases once"

# Lost again, with the file beside it, and the topic's records gone too
# (an empty topic stands for retention): a, which counted b's first
# lineage before, counts the new one beside it; and b learns its earlier
# spend back from a's updates.
a_before=$("$VEIL" dp_model accountant --file "$WORK/acc-a" --delta "$delta" | sed -n 's/^rho_others=//p')
[ -n "$a_before" ] || fail "a kept no spend of b beside its accountant file"
rm -f "$WORK/acc-b" "$WORK/acc-b.others"
topic "share-upd-gone-$SUFFIX"
more b veil-b6.log "share-upd-gone-$SUFFIX" "with b's state gone"
rho_b3=$(consume "share-upd-gone-$SUFFIX" "$UPD_SCHEMA" | jq -r '.value | select(.instance == "b") | .rho' | sort -g | tail -1)
[ -n "$rho_b3" ] || fail "b released nothing with its state gone"
VEIL_INSTANCE_ID=a VEIL_ACCOUNTANT="$WORK/acc-a" VEIL_UPDATES="share-upd-gone-$SUFFIX" \
  start_veil "$ROOT/tests/pipelines/share.yaml" "$WORK/veil-a2.log"
produce "$VEIL_INPUT" "$WORK/more.csv"
served=$((served + 2000))
wait_count "$VEIL_RECS" $served 60 || fail "recommendations of a on the emptied topic"
deadline=$((SECONDS + 30))
until consume "share-upd-gone-$SUFFIX" "$UPD_SCHEMA" | jq -e -s 'any(.[]; .value.instance == "a")' >/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "a released nothing on the emptied topic"
  sleep 0.5
done
stop_veil 20
a_acct=$("$VEIL" dp_model accountant --file "$WORK/acc-a" --delta "$delta")
a_others=$(sed -n 's/^rho_others=//p' <<<"$a_acct")
awk -v o="${a_others:-0}" -v x="$a_before" -v y="$rho_b3" 'BEGIN{exit !(o >= (x + y) * (1 - 1e-5))}' ||
  fail "a counts rho_others ${a_others}: b's first accountant file (as a counted it) $a_before and its new one $rho_b3: $a_acct"
ok "a counts b's two accountant files apart: rho_others $a_others >= $a_before + $rho_b3"
# What a's updates list of b's earlier files: b's due from them.
b_lin=$("$VEIL" dp_model accountant --file "$WORK/acc-b" --delta "$delta" | sed -n 's/^lineage=//p')
listed=$(consume "share-upd-gone-$SUFFIX" "$UPD_SCHEMA" |
  jq -r --argjson l "$b_lin" '.value | select(.instance == "a") | [.spent_by[] | select(.instance == "b" and .lineage != $l) | .rho] | add // 0' |
  sort -g | tail -1)
awk -v n="$listed" 'BEGIN{exit !(n > 0)}' || fail "a's updates list no earlier accountant file of b"
more b veil-b7.log "share-upd-gone-$SUFFIX" "of b after a's releases"
back=$(sed -nE 's/.*released updates costing rho ([0-9.e+-]+) under [0-9]+ earlier accountant file.*/\1/p' "$WORK/veil-b7.log")
awk -v n="${back:-0}" -v x="$listed" 'BEGIN{exit !(n >= x * 0.999)}' ||
  fail "b counts rho '${back}' of its earlier accountant files, a's updates list $listed"
grep -q '"level":"error"' "$WORK/veil-b7.log" && fail "errors in the log"
ok "b learned its earlier spend (rho $back) back from a's updates"
echo "PASS test_share"

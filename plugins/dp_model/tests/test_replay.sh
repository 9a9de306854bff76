#!/usr/bin/env bash
# `veil replay` on the bundled 20,000-event slice of the Online Retail data
# with config/pipelines/retail.yaml: every event answered, and with
# --evaluate the model beats the popular baseline on hit-rate@10 by a clear
# margin (prequential, the same stream). Column mapping and usage errors.
set -euo pipefail
: "${VEIL:?}" "${ROOT:?}"
fail() { echo "FAIL: $*"; exit 1; }
out=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$out" "$work"' EXIT
events="$ROOT/config/demo/events.csv"
n=$(($(wc -l <"$events") - 1))

"$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$events" \
  --evaluate >"$out" 2>&1 || { cat "$out"; fail "veil replay exited non-zero"; }
cat "$out"
grep -qE "^  events: +$n in [0-9]+ batches of up to 256$" "$out" || fail "events"
grep -qE "^  records: +$n recommendations, 0 dead letters$" "$out" || fail "one recommendation per event"
grep -qE "^  throughput: +[0-9]+ events/s" "$out" || fail "throughput"
model=$(sed -nE 's/^    pipeline +hit-rate@10 ([0-9.]+) +NDCG@10 ([0-9.]+)$/\1/p' "$out")
pop=$(sed -nE 's/^    popular +hit-rate@10 ([0-9.]+) +NDCG@10 ([0-9.]+)$/\1/p' "$out")
[ -n "$model" ] && [ -n "$pop" ] || fail "no hit-rates"
awk -v m="$model" -v p="$pop" 'BEGIN { exit !(p > 0 && m >= 1.5 * p) }' ||
  fail "model hit-rate@10 $model is not 1.5x popular's $pop"
echo "ok: model hit-rate@10 $model vs popular $pop"

# Other column names, mapped with --column; the same events, the same
# answers (a deterministic replay).
{ echo "time,customer,sku,quantity,basket,land"
  sed -n '2,2001p' "$events"; } >"$work/renamed.csv"
sed -n '1,2001p' "$events" >"$work/plain.csv"
"$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$work/renamed.csv" \
  --column time=ts --column customer=user_id --column sku=item \
  --column quantity=qty --column basket=invoice --column land=country \
  --evaluate >"$work/a" 2>&1 || { cat "$work/a"; fail "replay with --column"; }
"$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$work/plain.csv" \
  --evaluate >"$work/b" 2>&1 || { cat "$work/b"; fail "replay of the same slice"; }
grep -q "records:     2000 recommendations" "$work/a" || fail "mapped columns: $(cat "$work/a")"
diff <(grep -E "^    (pipeline|popular) " "$work/a") <(grep -E "^    (pipeline|popular) " "$work/b") >/dev/null ||
  fail "mapped columns gave other answers"
echo "ok: --column maps other headers"

# The description prior through YAML: a model that never learns
# (learning_rate 0) recommends nothing useful from a random start, and
# items that share words with the one in hand from the catalog's text.
frozen() { # EXTRA-LINES
  sed -e "s|\.\./demo/|$ROOT/config/demo/|g" -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" \
    -e "s|^      default_training: true$|      default_training: true\n      learning_rate: 0$1|" \
    "$ROOT/config/pipelines/retail.yaml" >"$work/frozen.yaml"
  "$VEIL" replay "$work/frozen.yaml" --events "$events" --evaluate 2>&1 |
    sed -nE 's/^    pipeline +hit-rate@10 ([0-9.]+) .*/\1/p'
}
rand=$(frozen "")
prior=$(frozen "\n      prior: description")
[ -n "$rand" ] && [ -n "$prior" ] || fail "no hit-rates for the frozen models"
awk -v r="$rand" -v q="$prior" -v p="$pop" 'BEGIN { exit !(q >= 3 * p && q >= 5 * r) }' ||
  fail "description prior: hit-rate@10 $prior (random start $rand, popular $pop)"
echo "ok: frozen model, description prior $prior, random start $rand, popular $pop"
# The exact description neighbours on top of the projected prior: still
# public data, still no learning, and better than the projection alone.
nbrs=$(frozen "\n      prior: description\n      prior_neighbors: 32\n      prior_neighbor_weight: 30")
[ -n "$nbrs" ] || fail "no hit-rate with prior_neighbors"
awk -v n="$nbrs" -v q="$prior" 'BEGIN { exit !(n >= 1.05 * q) }' ||
  fail "prior_neighbors: hit-rate@10 $nbrs, the prior alone $prior"
echo "ok: frozen model with description neighbours $nbrs (prior alone $prior)"
# The catalog's order on top: the items listed next to the one in hand
# (public too). Online Retail's stock codes number a collection's items
# together, so this finds more of the next purchases.
order=$(frozen "\n      prior: description\n      prior_neighbors: 32\n      prior_neighbor_weight: 30\n      prior_catalog_window: 10\n      prior_catalog_weight: 60")
[ -n "$order" ] || fail "no hit-rate with prior_catalog_window"
awk -v o="$order" -v n="$nbrs" 'BEGIN { exit !(o >= 1.05 * n) }' ||
  fail "prior_catalog_window: hit-rate@10 $order, description neighbours alone $nbrs"
echo "ok: frozen model with catalog order $order (description neighbours alone $nbrs)"
check_bad() { # PARAM-LINE PATTERN
  frozen "\n      $1" >/dev/null || true
  rc=0; "$VEIL" replay "$work/frozen.yaml" --events "$events" --limit 10 >"$work/c" 2>&1 || rc=$?
  [ "$rc" -eq 2 ] && grep -q "$2" "$work/c" || fail "$1: exit $rc, $(cat "$work/c")"
}
check_bad "prior: words" "prior must be none or description"
check_bad "prior_norm: -1" "prior_norm must be"
check_bad "prior_neighbors: 8" "prior_neighbors must be 0 unless prior is description"
check_bad "prior_neighbors: -1" "prior_neighbors must be between 0 and 1024"
check_bad "prior_catalog_window: 65" "prior_catalog_window must be between 0 and 64"
check_bad "prior_catalog_weight: -1" "prior_catalog_weight must be between 0 and 1e6"
# Without a catalog there are no descriptions and no order: refused, not
# silently off. (dp_model's catalog line is the one without a comment.)
nocat() { # PARAM-LINE: the pipeline without dp_model's catalog → $work/c
  sed -e "s|\.\./demo/|$ROOT/config/demo/|g" -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" \
    -e '/^      catalog: [^#]*$/d' \
    -e "s|^      default_training: true$|      default_training: true\n      $1|" \
    "$ROOT/config/pipelines/retail.yaml" >"$work/nocat.yaml"
  "$VEIL" replay "$work/nocat.yaml" --events "$events" --limit 10 >"$work/c" 2>&1
}
for bad in "prior: description|prior must be none without a catalog" \
           "prior_catalog_window: 3|prior_catalog_window must be 0 without a catalog"; do
  rc=0; nocat "${bad%%|*}" || rc=$?
  [ "$rc" -eq 2 ] && grep -q "${bad#*|}" "$work/c" ||
    fail "${bad%%|*} without a catalog: exit $rc, $(cat "$work/c")"
done
# The same pipeline without those lines runs: the refusals are theirs.
nocat "seed: 1" || fail "no catalog, no prior: $(cat "$work/c")"
echo "ok: prior and catalog order refused without a catalog"

rc=0
"$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$work/renamed.csv" \
  >"$work/c" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "user_id" "$work/c" || fail "unmapped columns: exit $rc"
rc=0
"$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$events" \
  --column customer=nonsense >"$work/c" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "nonsense" "$work/c" || fail "bad mapping: exit $rc"
rc=0
"$VEIL" replay "$ROOT/config/pipelines/retail.yaml" >"$work/c" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "missing --events: exit $rc"
for bad in "--limit abc|--limit must be a number" "--limit -5|--limit must be a number" \
           "--events|--events needs a value"; do
  rc=0
  # shellcheck disable=SC2086
  "$VEIL" replay "$ROOT/config/pipelines/retail.yaml" ${bad%%|*} >"$work/c" 2>&1 || rc=$?
  [ "$rc" -eq 2 ] && grep -q -- "${bad#*|}" "$work/c" || fail "${bad%%|*}: exit $rc, $(cat "$work/c")"
done
echo "ok: usage errors"

# Lists of 5 are scored at 5, popular's cut to the same length: both
# lines say @5, and popular scores less than at 10 on the same events.
sed -e 's/^      k: 10$/      k: 5/' -e "s|\.\./demo/|$ROOT/config/demo/|g" \
  -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" "$ROOT/config/pipelines/retail.yaml" >"$work/k5.yaml"
"$VEIL" replay "$work/k5.yaml" --events "$events" --evaluate >"$work/c" 2>&1 ||
  fail "replay with k: 5: $(cat "$work/c")"
pop5=$(sed -nE 's/^    popular +hit-rate@5 ([0-9.]+) +NDCG@5 [0-9.]+$/\1/p' "$work/c")
grep -qE '^    pipeline +hit-rate@5 [0-9.]+ +NDCG@5 ' "$work/c" && [ -n "$pop5" ] &&
  awk -v a="$pop5" -v b="$pop" 'BEGIN { exit !(a < b) }' ||
  fail "k: 5 scored at 5 (popular $pop5 against $pop at 10): $(grep hit-rate "$work/c")"
echo "ok: k: 5 is scored at 5 (popular $pop5 against $pop at 10)"

# The pairs whose next event came at a later time (a later visit), counted
# from the CSV: the user's next row with a greater ts.
later=$(awk -F, 'NR>1 { if (($2 in t) && $1 > t[$2]) n++; t[$2] = $1 } END { print n }' "$events")
grep -qE "^  later visits: $later of the pairs have their next event at a later time" "$out" ||
  fail "later visits: want $later: $(grep 'later' "$out")"
grep -qE '^    pipeline, later visits +hit-rate@10 [0-9.]+ +NDCG@10 [0-9.]+$' "$out" &&
  grep -qE '^    popular, later visits +hit-rate@10 [0-9.]+ +NDCG@10 [0-9.]+$' "$out" ||
  fail "no later-visit hit-rates"
echo "ok: $later later visits scored on their own"

# The plugins' clock follows the events' times: with profiles that expire
# after a second, the customers' returns find no profile and score
# differently than with profiles kept for ten years. (The replay takes well
# under a second of wall time, so the wall clock would expire nothing.)
for ttl in 1 315360000; do
  sed -e "s|^      profile_ttl_s: .*|      profile_ttl_s: $ttl|" \
    -e "s|\.\./demo/|$ROOT/config/demo/|g" -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" \
    "$ROOT/config/pipelines/retail.yaml" >"$work/ttl$ttl.yaml"
  grep -q "profile_ttl_s: $ttl" "$work/ttl$ttl.yaml" || fail "ttl variant"
  "$VEIL" replay "$work/ttl$ttl.yaml" --events "$events" --evaluate 2>&1 |
    grep 'pipeline, later visits' >"$work/later$ttl" || fail "replay with profile_ttl_s: $ttl"
done
! cmp -s "$work/later1" "$work/later315360000" ||
  fail "profiles expiring after 1 s of event time changed nothing: $(cat "$work/later1")"
echo "ok: profile expiry follows event time ($(cat "$work/later1") with a TTL of 1 s)"
# The clock is the latest event time read: a file out of time order says
# so, with the number of events earlier than one before them (the last
# row first: every other row is behind it); a sorted file does not.
{ head -1 "$events"; tail -1 "$events"; sed -n '2,200p' "$events"; } >"$work/unsorted.csv"
behind=$(awk -F, 'NR>1 { if ($1 < m) n++; if ($1 > m) m = $1 } END { print n + 0 }' "$work/unsorted.csv")
[ "$behind" -gt 0 ] || fail "the unsorted file is sorted"
"$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$work/unsorted.csv" >"$work/u" 2>&1 || fail "replay of the unsorted file"
grep -q "^  clock: *$behind events earlier than one read before them" "$work/u" ||
  fail "clock line: want $behind: $(grep clock "$work/u")"
grep -q "^  clock:" "$out" && fail "a clock line for a sorted file"
echo "ok: $behind events out of time order counted"

# --batch-wait MS cuts a batch, as a live host's, before an event more than
# MS of event time after the batch's first; the count bound (256) still
# holds. The batches counted from the CSV by the same rule.
for w in 0 600000; do
  want=$(awk -F, -v w="$w" 'NR>1 { if (n == 0 || n == 256 || $1 * 1000 - f * 1000 > w) { b++; n = 0; f = $1 } n++ } END { print b }' "$events")
  "$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$events" \
    --batch-wait "$w" >"$work/w$w" 2>&1 || fail "replay with --batch-wait $w: $(cat "$work/w$w")"
  grep -qE "^  events: +$n in $want batches of up to 256, each within $w ms of event time$" "$work/w$w" ||
    fail "--batch-wait $w: want $want batches: $(grep events: "$work/w$w")"
  grep -qE "^  records: +$n recommendations, 0 dead letters$" "$work/w$w" || fail "--batch-wait $w lost events"
  echo "ok: --batch-wait $w: $want batches"
done
check_usage() { # ARGS... : exit 2 and a message that names the option
  local rc=0
  "$VEIL" replay "$ROOT/config/pipelines/retail.yaml" --events "$events" "$@" >"$work/e" 2>&1 || rc=$?
  [ "$rc" -eq 2 ] && grep -q -- "--batch-wait" "$work/e" || fail "replay $*: exit $rc: $(cat "$work/e")"
}
check_usage --batch-wait -5
check_usage --batch-wait 5s
check_usage --batch-wait
echo "ok: --batch-wait checks its value"
# What it is for: with dp_model's steps by the events' own times (an hour,
# a minute's lateness), a batch cut by count spans hours of a quiet day,
# so its early events are late for the step they belong to and not
# learned; batches within 50 ms of event time leave none late.
late() { # ARGS...: not_learned_late of a private replay
  rm -f "$work/late.acc"
  sed -e "s|\.\./demo/|$ROOT/config/demo/|g" -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" \
    -e "s|^      default_training: true$|      default_training: true\n      mechanism: gaussian\n      noise_multiplier: 1\n      max_contributions: 1000\n      step_interval_s: 3600\n      delta: 1e-8\n      epsilon_budget: 0\n      accountant_file: $work/late.acc|" \
    "$ROOT/config/pipelines/retail.yaml" >"$work/late.yaml"
  "$VEIL" replay "$work/late.yaml" --events "$events" "$@" 2>&1 |
    sed -nE 's/^  gauges: .* not_learned_late ([0-9]+),.*/\1/p'
}
by_count=$(late)
by_time=$(late --batch-wait 50)
[ -n "$by_count" ] && [ "$by_count" -gt 1000 ] && [ "$by_time" = 0 ] ||
  fail "late events: $by_count with count batches, $by_time within 50 ms"
echo "ok: $by_count events late in batches cut by count, none within 50 ms"
echo "PASS test_replay"

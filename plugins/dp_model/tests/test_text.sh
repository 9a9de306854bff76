#!/usr/bin/env bash
# Event text in a recommendation: a country of many multi-byte characters
# (cut where the explanation is full) must still give every event a valid
# recommendation record: none refused, none dead-lettered, no stop. Bytes
# that are not UTF-8 at all are dead-lettered before any stage, as Kafka's
# decoder refuses them: exactly those events, and the stream goes on.
set -euo pipefail
: "${VEIL:?}" "${ROOT:?}"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=3000
e=$(printf '\xc3\xa9') eu=$(printf '\xe2\x82\xac') tree=$(printf '\xf0\x9f\x8e\x84')
rep() { local s=$1 k=$2 out=; for ((i = 0; i < k; i++)); do out+=$s; done; printf '%s' "$out"; }
countries=("$(rep "$e" 200)" "x$(rep "$e" 200)" "xy$(rep "$eu" 120)"
  "$(rep "$tree" 90)" "z$(rep "$tree" 90)" "$(printf 'ab\xff\xfe\xc3(cd\xed\xa0\x80')")
{
  echo "ts,user_id,item,qty,invoice,country"
  awk -v n="$n" 'NR > 1 && NR <= n + 1' "$ROOT/config/demo/events.csv" |
    while IFS=, read -r ts user item qty invoice _; do
      c=$((RANDOM % ${#countries[@]}))
      echo "$ts,$user,$item,$qty,$invoice,${countries[$c]}"
      if [ "$c" -eq 5 ]; then echo bad >>"$work/bad"; fi
    done
} >"$work/events.csv"
bad=$(wc -l <"$work/bad" 2>/dev/null || echo 0)

out=$("$VEIL" replay "$ROOT/config/pipelines/retail.yaml" \
  --events "$work/events.csv" --evaluate 2>&1) || { echo "$out"; fail "veil replay exited non-zero"; }
echo "$out" | grep -qE "^  records: +$((n - bad)) recommendations, $bad dead letters$" ||
  { echo "$out"; fail "not one valid recommendation per event but the $bad not UTF-8"; }
echo "ok: $n events with hostile text, $((n - bad)) recommendations, $bad not UTF-8 dead-lettered"

#!/usr/bin/env bash
# `veil demo` on the embedded broker: exits 0 within a minute and its summary
# accounts for every bundled event, the garbage and the outputs read back.
set -euo pipefail
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$SECONDS
timeout 90 "$VEIL" demo >"$out" 2>&1 || { cat "$out"; echo "FAIL: veil demo exited non-zero"; exit 1; }
took=$((SECONDS - start))
cat "$out" | cut -c1-200
fail() { echo "FAIL: $*"; exit 1; }
[ "$took" -lt 60 ] || fail "veil demo took $took s"
n=$(($(wc -l <"$ROOT/config/demo/events.csv") - 1))
grep -q "decoded events: $n   undecodable: 3" "$out" || fail "not all $n events decoded"
grep -qE "^  dead letters: +3$" "$out" || fail "dead letters"
grep -qE "1\. popular +in $n +out $n" "$out" || fail "stage counts"
grep -qE "… $n records" "$out" || fail "recommendations read back"
grep -q '"subject": "eph\.' "$out" || fail "no decoded recommendation with a pseudonymous subject"
cut -d, -f2 "$ROOT/config/demo/events.csv" | sort -u | grep -v user_id >"$out.users"
grep -oE '"subject": "[^"]*"' "$out" | grep -qFf "$out.users" && fail "a raw user id in the demo output"
rm -f "$out.users"
echo "PASS test_demo ($took s)"

#!/usr/bin/env bash
# The privacy calculator through `veil dp_model …`, and the accountant
# through real runs: a replay SIGKILLed mid-stream leaves a state that a
# restart resumes at or above; an exhausted budget freezes learning once
# and keeps serving every event.
set -uo pipefail
: "${VEIL:?}" "${ROOT:?}"
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
ok() { if "$@"; then passes=$((passes + 1)); echo "ok $*"; else fails=$((fails + 1)); echo "FAIL $*"; fi; }
val() { sed -nE "s/^$1=//p"; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * b) }'; }

# --- the calculator ---------------------------------------------------
# ρ = M/(2σ²) = 4/8; tree: R·⌈log2(T+1)⌉/(2σ²) = 2·10/2.
check "epsilon gaussian" 0 "^rho=0.5$" -- "$VEIL" dp_model epsilon --mechanism gaussian --noise-multiplier 2 --participations 4 --delta 1e-8
check "epsilon tree" 0 "^rho=10$" -- "$VEIL" dp_model epsilon --mechanism tree --noise-multiplier 1 --steps 1000 --restarts 2 --delta 1e-5
eps=$("$VEIL" dp_model epsilon --mechanism gaussian --noise-multiplier 2 --participations 4 --delta 1e-8 | val epsilon)
ok gt "$eps" 0
sig=$("$VEIL" dp_model noise --mechanism gaussian --epsilon "$eps" --delta 1e-8 --participations 4 | val noise_multiplier)
ok near "$sig" 2   # the inverse of epsilon, to its printed precision
check "noise tree" 0 "^noise_multiplier=" -- "$VEIL" dp_model noise --mechanism tree --epsilon 4 --delta 1e-8 --steps 100 --restarts 3
# ε is printed rounded up at its 6 digits (to nearest, 4.0000000008 was
# printed as 4); the accountant's and the total's too (same function).
check "epsilon rounded up" 0 "^epsilon=4.00001$" -- "$VEIL" dp_model epsilon --noise-multiplier 5.59888786 --delta 5e-8 --participations 16
check "epsilon exact stays" 0 "^epsilon=6.08616$" -- "$VEIL" dp_model epsilon --noise-multiplier 2 --participations 4 --delta 1e-8
# `noise` prints the smallest S, at its 9 digits, that keeps the horizon
# within E: rounded up, and within E as `epsilon` computes it from the
# printed S (rounded to nearest, about half of them spent a little more:
# 5.59888786 below, ε 4.0000000008). `epsilon` prints ε rounded up, so
# an ε even slightly above E shows.
noise_within() { # E DELTA MECHANISM-OPTIONS...
  local e=$1 d=$2; shift 2
  local s back
  s=$("$VEIL" dp_model noise --epsilon "$e" --delta "$d" "$@" | val noise_multiplier)
  back=$("$VEIL" dp_model epsilon --noise-multiplier "$s" --delta "$d" "$@" | val epsilon)
  if [ -n "$s" ] && [ -n "$back" ] && awk -v b="$back" -v e="$e" 'BEGIN { exit !(b + 0 <= e + 0) }'; then
    passes=$((passes + 1)); echo "ok noise $e $d $*: S=$s, epsilon $back"
  else fails=$((fails + 1)); echo "FAIL noise $e $d $*: S=$s gives epsilon $back, above $e"; fi
}
noise_within 4 5e-8 --participations 16
check "noise: the example, rounded up" 0 "^noise_multiplier=5.59888787$" -- "$VEIL" dp_model noise --epsilon 4 --delta 5e-8 --participations 16
for e in 0.5 1 3 8; do
  for m in 1 4 12; do noise_within "$e" 1e-8 --participations "$m"; done
  noise_within "$e" 1e-6 --participations 4 --windows 10
  noise_within "$e" 1e-5 --mechanism tree --steps 100 --restarts 3 --participations 2
done
# --rho: the ε of a ρ (several instances' accountants added), the same as
# the mechanism that spends it.
ok test "$("$VEIL" dp_model epsilon --rho 0.5 --delta 1e-8 | val epsilon)" = "$eps"
check "epsilon rho and sigma" 2 "rho is a whole horizon's ρ: give it with --delta alone" -- "$VEIL" dp_model epsilon --rho 1 --noise-multiplier 2 --delta 1e-8
# An option of the other mechanism, or of the other command, is refused
# rather than ignored.
check "gaussian with --steps" 2 "steps and --restarts are for --mechanism tree" -- "$VEIL" dp_model epsilon --noise-multiplier 2 --steps 1000 --delta 1e-8
check "tree with --windows" 2 "windows is for the gaussian mechanism" -- "$VEIL" dp_model noise --mechanism tree --epsilon 4 --windows 2 --delta 1e-8
check "epsilon with --epsilon" 2 "epsilon is for .noise." -- "$VEIL" dp_model epsilon --noise-multiplier 2 --epsilon 3 --delta 1e-8
check "noise with --noise-multiplier" 2 "noise-multiplier are for .epsilon." -- "$VEIL" dp_model noise --epsilon 1 --noise-multiplier 3 --delta 1e-8
check "rho with a mechanism" 2 "give it with --delta alone" -- "$VEIL" dp_model epsilon --rho 1 --mechanism tree --delta 1e-8
check "rho with participations" 2 "give it with --delta alone" -- "$VEIL" dp_model epsilon --rho 1 --participations 3 --delta 1e-8
check "epsilon negative rho" 2 "dp_model epsilon: --rho must be a decimal number equal to 0 or in \\[1e-307, 1e308\\], got '-1'" -- "$VEIL" dp_model epsilon --rho -1 --delta 1e-8
check "noise with rho" 2 "rho and --noise-multiplier are for .epsilon." -- "$VEIL" dp_model noise --epsilon 1 --rho 1 --delta 1e-8
check "epsilon no delta" 2 "delta is required" -- "$VEIL" dp_model epsilon --noise-multiplier 2
check "epsilon bad mechanism" 2 "mechanism" -- "$VEIL" dp_model epsilon --mechanism laplace --noise-multiplier 2 --delta 1e-8
check "noise no epsilon" 2 "epsilon is required" -- "$VEIL" dp_model noise --delta 1e-8
check "negative sigma" 2 "noise-multiplier" -- "$VEIL" dp_model epsilon --noise-multiplier -1 --delta 1e-8
# Numbers are read strictly (decimal, the whole argument, finite, in range):
# a usage error (exit 2) naming the option and its range, never a value
# read as something else (" -1" and 10^23 became 2^64-1 participations,
# and an ε of 2.3e18 printed with exit 0; 0x2 was read as 2).
E="--noise-multiplier 2 --delta 1e-8"
re() { sed 's/[][\\.*^$+?(){}|]/\\&/g' <<<"$1"; } # a value, literally, in a pattern
for v in " -1" "-1" 0 1000001 99999999999999999999999 "+3" "3 " "1e3" "0x10" ""; do
  check "--participations '$v'" 2 "^dp_model epsilon: --participations must be a whole number in \\[1, 10\\^6\\], got '$(re "$v")'$" -- \
    "$VEIL" dp_model epsilon $E --participations "$v"
done
for v in 0x2 " 2" "2 " inf nan 1e-13 2e12 1e-320 1e308 "2,5" . 1e; do
  check "--noise-multiplier '$v'" 2 "^dp_model epsilon: --noise-multiplier must be a decimal number in \\[1e-12, 1e12\\], got '$(re "$v")'" -- \
    "$VEIL" dp_model epsilon --noise-multiplier "$v" --delta 1e-8
done
for o in --windows "--mechanism tree --restarts" "--mechanism tree --steps"; do
  for v in 18446744073709551615 9007199254740993 0; do
    check "$o $v" 2 "^dp_model epsilon: ${o##* } must be a whole number in \\[1, 2\\^53\\], got '$v'$" -- \
      "$VEIL" dp_model epsilon $E $o "$v"
  done
done
check "--windows 2^53" 0 "^rho=1.1259e\\+15$" -- "$VEIL" dp_model epsilon $E --windows 9007199254740992
for v in 0 1 -1e-8 0x1p-20 1e-400 " 1e-8"; do
  check "--delta '$v'" 2 "^dp_model epsilon: --delta must be a decimal number in \\(0, 1\\), got '$(re "$v")'" -- \
    "$VEIL" dp_model epsilon --noise-multiplier 2 --delta "$v"
done
check "--rho 1e-400 (not read as 0)" 2 "--rho must be a decimal number equal to 0 or in \\[1e-307, 1e308\\], got '1e-400' \\(outside a double's normal range\\)" -- \
  "$VEIL" dp_model epsilon --rho 1e-400 --delta 1e-8
check "noise --epsilon 0x1" 2 "^dp_model noise: --epsilon must be a decimal number in \\[1e-307, 1e308\\], got '0x1'" -- \
  "$VEIL" dp_model noise --epsilon 0x1 --delta 1e-8
# The largest σ still has a positive ρ (σ = 1e308 made ρ 0, so epsilon=0
# and rho=0 for a positive loss).
# (1e24 is not a double: the ρ computed is rounded up, and so is its text.)
check "--noise-multiplier 1e12: rho above 0" 0 "^rho=5.00001e-25$" -- "$VEIL" dp_model epsilon --noise-multiplier 1e12 --delta 0.1
check "forms of a decimal" 0 "^rho=2$" -- "$VEIL" dp_model epsilon --noise-multiplier .5 --delta 1E-8
# ρ is a statement of loss like ε: its text is rounded up, never to
# nearest (1/(2 · 1.1²) = 0.41322314… was printed 0.413223, and for
# σ = 1.09999845, 0.41322430… as 0.413224).
check "rho rounded up" 0 "^rho=0.413224$" -- "$VEIL" dp_model epsilon --noise-multiplier 1.1 --delta 1e-5
# The ε printed is within the E asked for: at 6 digits, rounded up, it
# read 4.72851 for E = 4.728507.
for target in 4.728507 1.0000001; do
  ok ge "$target" "$("$VEIL" dp_model noise --epsilon $target --delta 1e-5 | val epsilon)"
done
check "noise: rho rounded up" 0 "^rho=0.413225$" -- "$VEIL" dp_model noise --epsilon 4.23948 --delta 1e-5
# A missing value is named as such (it was "unknown option --delta").
check "--delta without a value" 2 "^dp_model epsilon: --delta needs a value$" -- "$VEIL" dp_model epsilon --noise-multiplier 2 --delta
check "noise --epsilon without a value" 2 "^dp_model noise: --epsilon needs a value$" -- "$VEIL" dp_model noise --delta 1e-8 --epsilon
check "a stray argument" 2 "^dp_model epsilon: unknown option extra$" -- "$VEIL" dp_model epsilon $E extra

# --- runs -------------------------------------------------------------
work=$(mktemp -d)
[ -n "${KEEP_WORK:-}" ] && echo "work: $work" || trap 'rm -rf "$work"' EXIT
events="$ROOT/config/demo/events.csv"
n=$(($(wc -l <"$events") - 1))
pipeline() { # ACC BUDGET STEP [MECHANISM]
  sed -e "s|\.\./demo/|$ROOT/config/demo/|g" -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" \
    "$ROOT/config/pipelines/retail.yaml" |
    sed -e "s|      default_training: true|      default_training: true\n      mechanism: ${4:-gaussian}\n      tree_steps: 8\n      noise_multiplier: 8\n      step_size: $3\n      max_contributions: 1000\n      epsilon_budget: $2\n      delta: 1e-8\n      accountant_file: $1|"
}
pipeline "$work/acc" 0 8 >"$work/p.yaml"
"$VEIL" replay "$work/p.yaml" --events "$events" --batch 16 >"$work/run1" 2>&1 &
pid=$!
# (the file exists from the start; wait for a charged step)
for _ in $(seq 100); do
  [ "$("$VEIL" dp_model accountant --file "$work/acc" --delta 1e-8 2>/dev/null | val steps)" -gt 0 ] 2>/dev/null && break
  sleep 0.05
done
sleep 0.3
kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
ok test -s "$work/acc"
# Every argument of `accountant` is read: the calculator's --windows is
# refused, not skipped (it printed the file's ε, exit 0), and an unknown
# option is named (it said "--delta is required" with --delta given).
A=(dp_model accountant --file "$work/acc")
check "accountant --windows" 2 "^dp_model accountant: unknown option --windows \\(it takes --file F and --delta D\\)$" -- "$VEIL" "${A[@]}" --delta 1e-6 --windows 5
check "accountant --bogus" 2 "^dp_model accountant: unknown option --bogus " -- "$VEIL" "${A[@]}" --bogus 1 --delta 1e-8
check "accountant --delta without a value" 2 "^dp_model accountant: --delta needs a value$" -- "$VEIL" "${A[@]}" --delta
check "accountant without --delta" 2 "^dp_model accountant: --delta is required$" -- "$VEIL" "${A[@]}"
check "accountant without --file" 2 "^dp_model accountant: --file is required$" -- "$VEIL" dp_model accountant --delta 1e-8
check "accountant --delta 0x1p-20" 2 "^dp_model accountant: --delta must be a decimal number in \\(0, 1\\), got '0x1p-20'$" -- "$VEIL" "${A[@]}" --delta 0x1p-20
st1=$("$VEIL" dp_model accountant --file "$work/acc" --delta 1e-8)
e1=$(val epsilon <<<"$st1"); s1=$(val steps <<<"$st1")
ok gt "$s1" 0
ok gt "$e1" 0
# The file keeps the stage's rate of noise draws per unit of ρ (every
# coordinate a release noises, times 2σ²: the sampler's own error,
# accountant.h), and the calculator converts a ρ at that rate as the stage
# does: from the printed ρ and rate (both rounded up), never below.
d1=$(val draws_per_rho <<<"$st1"); r1=$(val rho <<<"$st1")
ok gt "$d1" 1000000
ok ge "$("$VEIL" dp_model epsilon --rho "$r1" --delta 1e-8 --draws-per-rho "$d1" | val epsilon)" "$e1"
check "epsilon --draws-per-rho: no bound left" 0 "^epsilon=inf$" -- "$VEIL" dp_model epsilon --rho 1 --delta 1e-8 --draws-per-rho 1e30
check "--draws-per-rho without --rho" 2 "^dp_model: --draws-per-rho goes with --rho" -- "$VEIL" dp_model epsilon --noise-multiplier 2 --delta 1e-8 --draws-per-rho 5
check "--draws-per-rho -1" 2 "^dp_model epsilon: --draws-per-rho must be a decimal number equal to 0 or in" -- "$VEIL" dp_model epsilon --rho 1 --delta 1e-8 --draws-per-rho -1
"$VEIL" replay "$work/p.yaml" --events "$events" --batch 16 --limit 2000 >"$work/run2" 2>&1
# A private model that adds rows for items first seen in events says the
# guarantee does not cover that; with max_new_items: 0 it says nothing.
ok grep -q "items first seen in events get model rows.*set max_new_items: 0" "$work/run2"
sed -e 's|      accountant_file: |      max_new_items: 0\n      accountant_file: |' -e "s|$work/acc|$work/acc0|" "$work/p.yaml" >"$work/p0.yaml"
"$VEIL" replay "$work/p0.yaml" --events "$events" --batch 16 --limit 100 >"$work/run0" 2>&1
ok grep -q "dp_model: " "$work/run0"
ok bash -c "! grep -q 'items first seen in events get model rows' '$work/run0'"
ok grep -q "records: *2000 recommendations" "$work/run2"
st2=$("$VEIL" dp_model accountant --file "$work/acc" --delta 1e-8)
ok gt "$(val steps <<<"$st2")" "$s1"   # resumed from the saved state
ok gt "$(val epsilon <<<"$st2")" "$e1"   # a replay is charged again

# The tree mechanism from YAML: trees of 8 steps, each charged as the
# calculator says (the accountant's σ is the grid-adjusted one, a hair
# below 8, so its ρ is at most 0.5 % above the calculator's; the gaussian
# mechanism would have charged every step, twice as much here).
pipeline "$work/acct" 0 8 tree >"$work/t.yaml"
"$VEIL" replay "$work/t.yaml" --events "$events" --batch 16 --limit 4000 >"$work/runt" 2>&1
ok grep -q "records: *4000 recommendations" "$work/runt"
stt=$("$VEIL" dp_model accountant --file "$work/acct" --delta 1e-8)
st=$(val steps <<<"$stt"); rt=$(val rho <<<"$stt")
ok gt "$st" 8
full=$((st / 8)); part=$((st % 8))
depth=0; while [ $(((1 << depth) - 1)) -lt "$part" ]; do depth=$((depth + 1)); done
want=$("$VEIL" dp_model epsilon --mechanism tree --noise-multiplier 8 --steps 8 --restarts 1 --delta 1e-8 | val rho)
want=$(awk -v w="$want" -v f="$full" -v d="$depth" 'BEGIN { printf "%.12g", w * f + w / 4 * d }')
ok ge "$rt" "$want"
ok ge "$(awk -v w="$want" 'BEGIN { printf "%.12g", w * 1.005 }')" "$rt"
# Honaker's estimator (tree_estimator: honaker) is post-processing of the
# same noised nodes: the same steps are charged the same ρ.
sed 's|      tree_steps: 8|      tree_steps: 8\n      tree_estimator: honaker|' "$work/t.yaml" |
  sed "s|$work/acct|$work/acch|" >"$work/th.yaml"
VEIL_LOG_LEVEL=debug "$VEIL" replay "$work/th.yaml" --events "$events" --batch 16 --limit 4000 >"$work/runth" 2>&1
ok grep -q "records: *4000 recommendations" "$work/runth"
ok grep -q "Honaker's estimate;" "$work/runth"
ok grep -q "Honaker's estimate keeps up to [0-9]* MiB" "$work/runth"
sth=$("$VEIL" dp_model accountant --file "$work/acch" --delta 1e-8)
ok test "$(val steps <<<"$sth")" = "$st"
ok test "$(val rho <<<"$sth")" = "$rt"
check "tree_estimator foo" 2 "tree_estimator must be plain or honaker" -- bash -c "sed 's/tree_estimator: honaker/tree_estimator: foo/' '$work/th.yaml' >'$work/l3.yaml'; '$VEIL' replay '$work/l3.yaml' --events '$events' --limit 10"
check "dim x feature_space over 2^31" 2 "feature_space must be such that dim x feature_space" -- bash -c "sed -e 's/^\\( *\\)dim: [0-9]*/\\1dim: 1024/' -e 's/^\\( *\\)feature_space: [0-9]*/\\1feature_space: 4194304/' '$work/th.yaml' >'$work/l10.yaml'; grep -q 'feature_space: 4194304' '$work/l10.yaml' || sed -i 's/tree_estimator: honaker/feature_space: 4194304/' '$work/l10.yaml'; '$VEIL' lint --start '$work/l10.yaml'"
check "clip_norm 1e-20" 2 "clip_norm must be between 1e-6 and 1e6" -- bash -c "sed 's/tree_estimator: honaker/clip_norm: 1e-20/' '$work/th.yaml' >'$work/l9.yaml'; '$VEIL' lint --start '$work/l9.yaml'"
# The words are checked without noise too: a typo would wait until the
# mechanism is switched on.
check "on_exhausted typo, mechanism none" 2 "on_exhausted must be freeze" -- bash -c "sed -e 's/mechanism: tree/mechanism: none/' -e 's/tree_estimator: honaker/on_exhausted: stop/' '$work/th.yaml' >'$work/l8.yaml'; '$VEIL' lint --start '$work/l8.yaml'"
check "honaker without tree" 2 "tree_estimator must be plain unless mechanism is tree" -- bash -c "sed 's/mechanism: tree/mechanism: gaussian/' '$work/th.yaml' >'$work/l4.yaml'; '$VEIL' replay '$work/l4.yaml' --events '$events' --limit 10"
# Two participations per tree (tree_participations: 2): level l of a tree
# costs 2·min(2, 2^l) units, 14 for a tree of 8 (the calculator's
# --participations 2), the partial last tree its open levels.
check "epsilon tree, 2 participations" 0 "^rho=7$" -- "$VEIL" dp_model epsilon --mechanism tree --noise-multiplier 1 --steps 8 --restarts 1 --participations 2 --delta 1e-5
sed 's|      tree_steps: 8|      tree_steps: 8\n      tree_participations: 2|' "$work/t.yaml" |
  sed "s|$work/acct|$work/acct2|" >"$work/t2.yaml"
"$VEIL" replay "$work/t2.yaml" --events "$events" --batch 16 --limit 4000 >"$work/runt2" 2>&1
ok grep -q "records: *4000 recommendations" "$work/runt2"
stt=$("$VEIL" dp_model accountant --file "$work/acct2" --delta 1e-8)
st=$(val steps <<<"$stt"); rt=$(val rho <<<"$stt")
ok gt "$st" 8
full=$((st / 8)); part=$((st % 8))
units=0; l=0; while [ $(((1 << l) - 1)) -lt "$part" ]; do
  units=$((units + 2 * ((1 << l) < 2 ? (1 << l) : 2))); l=$((l + 1)); done
want=$("$VEIL" dp_model epsilon --mechanism tree --noise-multiplier 8 --steps 8 --restarts 1 --participations 2 --delta 1e-8 | val rho)
want=$(awk -v w="$want" -v f="$full" -v u="$units" 'BEGIN { printf "%.12g", w * f + w / 14 * u }')
ok ge "$rt" "$want"
ok ge "$(awk -v w="$want" 'BEGIN { printf "%.12g", w * 1.005 }')" "$rt"
check "tree_participations 0" 2 "tree_participations must be between 1 and 10" -- bash -c "sed 's/tree_participations: 2/tree_participations: 0/' '$work/t2.yaml' >'$work/l2.yaml'; '$VEIL' replay '$work/l2.yaml' --events '$events' --limit 10"
check "mechanism laplace" 2 "mechanism must be gaussian, tree or none" -- bash -c "sed 's/mechanism: tree/mechanism: laplace/' '$work/t.yaml' >'$work/l.yaml'; '$VEIL' replay '$work/l.yaml' --events '$events' --limit 10"

# A budget of a few steps: frozen once, every event still answered.
pipeline "$work/acc2" 1.0 8 >"$work/b.yaml"
"$VEIL" replay "$work/b.yaml" --events "$events" --limit 3000 >"$work/run3" 2>&1
ok grep -q "records: *3000 recommendations" "$work/run3"
ok test "$(grep -c "privacy budget exhausted" "$work/run3")" -eq 1
e3=$("$VEIL" dp_model accountant --file "$work/acc2" --delta 1e-8 | val epsilon)
ok ge 1.0 "$e3"
ok gt "$e3" 0
# A restart on an exhausted budget keeps serving.
"$VEIL" replay "$work/b.yaml" --events "$events" --limit 500 >"$work/run4" 2>&1
ok grep -q "records: *500 recommendations" "$work/run4"
ok test "$(val epsilon < <("$VEIL" dp_model accountant --file "$work/acc2" --delta 1e-8))" = "$e3"
# Its .others file saying a sender was lost (an empty id, rho infinite,
# BLAKE2b-256 after): the total the stage reports is infinite, printed as
# such (it was refused as a rho that is not finite).
# VRH2, 1 entry: id length 0, lineage 0, rho +inf (f64 little-endian).
printf 'VRH2\x01\x00\x00\x00''\x00\x00''\x00\x00\x00\x00''\x00\x00\x00\x00\x00\x00\xf0\x7f' >"$work/acc2.others"
b2sum -l 256 "$work/acc2.others" | cut -d' ' -f1 | xxd -r -p >>"$work/acc2.others"
check "accountant: a lost sender" 0 "^epsilon_total=inf$" -- "$VEIL" dp_model accountant --file "$work/acc2" --delta 1e-8
rm -f "$work/acc2.others"
# A corrupt state file stops the stage instead of starting from zero.
printf 'garbage' >"$work/acc3"
pipeline "$work/acc3" 0 8 >"$work/c.yaml"
check "corrupt accountant" 2 "accountant_file" -- "$VEIL" replay "$work/c.yaml" --events "$events" --limit 10
# A path that cannot be written fails the start, not the first noisy step.
pipeline "$work/no-such-dir/acc" 0 8 >"$work/e.yaml"
check "accountant_file in a missing directory" 2 "accountant_file: .*no-such-dir/acc.*is its directory there and writable" -- "$VEIL" replay "$work/e.yaml" --events "$events" --limit 10
# A file another process holds (this shell, through flock(1), as a second
# veil would): refused, since each would count only its own releases.
exec 9<"$work/acc2"
flock -n 9
# Named at the accountant_file line, where the fix goes.
check "accountant_file in use" 2 "b.yaml:$(grep -n 'accountant_file:' "$work/b.yaml" | cut -d: -f1):[0-9]+: .*accountant_file '.*acc2' is in use by another process" -- "$VEIL" replay "$work/b.yaml" --events "$events" --limit 10
exec 9<&-
check "accountant_file free again" 0 "recommendations" -- "$VEIL" replay "$work/b.yaml" --events "$events" --limit 10
# A veil holds accountant_file.lock, which is never renamed: an older
# veil's one-record file is replaced at the first save by renaming a new
# file over it (another inode), and a lock on the file itself would then
# guard nothing. The lock file keeps its inode; a holder of it is refused.
pipeline "$work/acc5" 0 8 >"$work/f.yaml"
"$VEIL" replay "$work/f.yaml" --events "$events" --limit 3000 >/dev/null 2>&1
head -c 128 "$work/acc5" >"$work/acc5.old" && mv "$work/acc5.old" "$work/acc5"
ino_lock=$(stat -c %i "$work/acc5.lock") ino_data=$(stat -c %i "$work/acc5")
check "an older veil's file" 0 "recommendations" -- "$VEIL" replay "$work/f.yaml" --events "$events" --limit 3000
ok test "$(stat -c %s "$work/acc5")" = 8192
ok test "$(stat -c %i "$work/acc5")" != "$ino_data"
ok test "$(stat -c %i "$work/acc5.lock")" = "$ino_lock"
exec 9<"$work/acc2.lock"
flock -n 9
check "accountant_file's lock in use" 2 "accountant_file '.*acc2' is in use by another process" -- "$VEIL" replay "$work/b.yaml" --events "$events" --limit 10
exec 9<&-
# Two dp_model stages of one pipeline on one file: each would count only
# its own releases (the lock is shared only with a reload's successor).
# (the dp_model stage's lines, written twice)
awk '/^  - use: dp_model/ {inb = 1} inb && !/^  - use: dp_model/ && !/^    / {inb = 0; printf "%s", blk}
  inb {blk = blk $0 "\n"} {print} END {if (inb) printf "%s", blk}' "$work/b.yaml" >"$work/two.yaml"
ok test "$(grep -c "use: dp_model" "$work/two.yaml")" = 2
check "one accountant_file, two stages" 2 "accountant_file '.*acc2' is given to two dp_model stages of this pipeline" -- "$VEIL" lint --start "$work/two.yaml"
check "no accountant_file" 2 "accountant_file" -- bash -c "sed '/accountant_file/d' '$work/c.yaml' >'$work/d.yaml'; '$VEIL' replay '$work/d.yaml' --events '$events' --limit 10"

# The step schedule from YAML, at most one step per person
# (max_contributions: 1). On the clock (step_interval_s: 3600) by the
# batches' times (step_time: batch): a, b and c buy at hour 0, a again at
# hour 2 (refused: at M), all three at hour 5. The replay's clock (the
# events' time) releases hour 0's step (three contributions) and hour 2's
# (none: noise alone), skips hours 1, 3 and 4 (no batch) and leaves hour
# 5's open: 2 releases. Counted (step_interval_s: 0, step_size 3): 1, and a
# warning that names the parameter.
{ head -1 "$events"; h0=$(( $(sed -n 2p "$events" | cut -d, -f1) / 3600 * 3600 ))
  for u in 90001 90002 90003; do echo "$h0,$u,85123A,1,1,United Kingdom"; done
  echo "$((h0 + 2 * 3600)),90001,85123A,1,2,United Kingdom"
  for u in 90001 90002 90003; do echo "$((h0 + 5 * 3600)),$u,85123A,1,3,United Kingdom"; done
} >"$work/sched.csv"
pipeline "$work/accs" 0 3 | sed -e 's|      step_size: 3|      step_size: 3\n      step_interval_s: 3600\n      step_time: batch|' \
  -e 's|max_contributions: 1000|max_contributions: 1|' >"$work/s.yaml"
check "clock steps" 0 "gaussian mechanism: .*steps of 3600s on the clock" -- bash -c "VEIL_LOG_LEVEL=debug '$VEIL' replay '$work/s.yaml' --events '$work/sched.csv' --batch 1 2>&1 | tee '$work/runs'"
# What was learned and not, in the summary (the stage's gauges): three
# first purchases; four at M; two steps, hour 2's empty.
ok grep -qE "gauges: +dp_model: events_learned 3, not_learned_same_step 0, not_learned_at_max 4, not_learned_frozen 0, not_learned_table_full 0, not_learned_step_full 0, not_learned_late 0, not_learned_held_dropped 0, not_learned_early 0, not_learned_hold_full 0, held_next_step 0, not_learned_erased 0, noisy_steps 2, noisy_steps_empty 1$" "$work/runs"
ok test "$("$VEIL" dp_model accountant --file "$work/accs" --delta 1e-8 | val steps)" = 2
# Started again on that file with a budget below what it spent: frozen from
# the start, so nothing is admitted, held or counted as learned (they were,
# until the first step's release found the budget spent).
sed -e 's|epsilon_budget: 0|epsilon_budget: 0.5|' "$work/s.yaml" >"$work/s2.yaml"
check "budget spent at start" 0 "privacy budget already exhausted: epsilon [0-9.]+ of 0.5 spent at delta 1e-08; serving only" -- bash -c "'$VEIL' replay '$work/s2.yaml' --events '$work/sched.csv' --batch 1 2>&1 | tee '$work/runf'"
ok grep -qE "gauges: +dp_model: events_learned 0, not_learned_same_step 0, not_learned_at_max 0, not_learned_frozen 7," "$work/runf"
# The ε that line states is rounded up, never to nearest: at or above what
# the accountant says (its 6 digits are rounded up too, so above the
# exact). At delta 2e-8 this file's ε is 0.646126, to nearest 0.6461.
sed -e 's|      delta: 1e-8|      delta: 2e-8|' "$work/s2.yaml" >"$work/s3.yaml"
check "budget spent at start: epsilon rounded up" 0 "privacy budget already exhausted: epsilon 0.6462 of 0.5 spent at delta 2e-08; serving only" -- bash -c "'$VEIL' replay '$work/s3.yaml' --events '$work/sched.csv' --batch 1 2>&1"
ok test "$("$VEIL" dp_model accountant --file "$work/accs" --delta 2e-8 | val epsilon)" = 0.646126
ok test "$("$VEIL" dp_model accountant --file "$work/accs" --delta 1e-8 | val steps)" = 2
# The same by the events' own times (step_time: event, the default; a
# minute's lateness). The first batch's clock, hour 0, is within the
# lateness of the hour before, so that step is open and hour 0's three
# purchases wait for it. Hour 2's batch releases the hour before hour 0
# (noise alone), then hour 0 with the three it held, and opens hour 1 (its
# lateness runs into hour 2): a's hour-2 purchase is at M. Hour 5's batch
# releases hours 1 and 2 (a batch came in hour 2), skips 3 and opens 4;
# the hour-5 purchases are all at M: 4 releases, 3 of them noise alone.
sed -e 's|      step_time: batch||' -e "s|$work/accs|$work/acce|" "$work/s.yaml" >"$work/se.yaml"
check "event time steps" 0 "gaussian mechanism: .*steps of 3600s on the clock, by the events' times, released 60s late" -- bash -c "VEIL_LOG_LEVEL=debug '$VEIL' replay '$work/se.yaml' --events '$work/sched.csv' --batch 1 2>&1 | tee '$work/rune'"
ok grep -qE "gauges: +dp_model: events_learned 3, not_learned_same_step 0, not_learned_at_max 4, not_learned_frozen 0, not_learned_table_full 0, not_learned_step_full 0, not_learned_late 0, not_learned_held_dropped 0, not_learned_early 0, not_learned_hold_full 0, held_next_step 0, not_learned_erased 0, noisy_steps 4, noisy_steps_empty 3$" "$work/rune"
ok test "$("$VEIL" dp_model accountant --file "$work/acce" --delta 1e-8 | val steps)" = 4
# A counted step takes at most 2^20 contributions: a larger step_size
# never ended, and every later event was refused.
check "step_size over a step's take" 2 "step_size must be at most 1048576 \(2\^20, the contributions a step takes\) with step_interval_s 0" -- bash -c "sed 's/step_size: 3$/step_size: 2000000/' '$work/s.yaml' | sed 's/step_interval_s: 3600/step_interval_s: 0/' >'$work/big.yaml'; '$VEIL' lint --start '$work/big.yaml'"
check "step_lateness_s at the step" 2 "step_lateness_s must be ≥ 0 and below step_interval_s" -- bash -c "sed 's/step_interval_s: 3600/step_interval_s: 3600\n      step_lateness_s: 3600/' '$work/se.yaml' >'$work/l6.yaml'; '$VEIL' replay '$work/l6.yaml' --events '$events' --limit 10"
check "step_time words" 2 "step_time must be event or batch" -- bash -c "sed 's/step_interval_s: 3600/step_interval_s: 3600\n      step_time: wall/' '$work/se.yaml' >'$work/l7.yaml'; '$VEIL' replay '$work/l7.yaml' --events '$events' --limit 10"
sed -e 's|step_interval_s: 3600|step_interval_s: 0|' -e "s|$work/accs|$work/accc|" "$work/s.yaml" >"$work/sc.yaml"
check "counted steps warned" 0 "sc\\.yaml:[0-9]+:[0-9]+: step_interval_s is 0: a step ends after 3 contributions" -- "$VEIL" replay "$work/sc.yaml" --events "$work/sched.csv" --batch 1
ok test "$("$VEIL" dp_model accountant --file "$work/accc" --delta 1e-8 | val steps)" = 1
check "step_interval_s -1" 2 "step_interval_s must be between 0 and 10\^8 seconds" -- bash -c "sed 's/step_interval_s: 3600/step_interval_s: -1/' '$work/s.yaml' >'$work/l5.yaml'; '$VEIL' replay '$work/l5.yaml' --events '$events' --limit 10"

# A relative accountant_file is read beside the pipeline file: run from
# another directory, it found no file there and began a new accountant at
# ε = 0, the spend so far never reported again.
mkdir -p "$work/pl" "$work/cwd"
pipeline rel.acc 0 8 >"$work/pl/r.yaml"
check "accountant_file beside the pipeline" 0 "" -- bash -c "cd '$work/cwd' && '$VEIL' replay ../pl/r.yaml --events '$events' --limit 2000"
ok test -s "$work/pl/rel.acc"
ok test ! -e "$work/cwd/rel.acc"
r1=$("$VEIL" dp_model accountant --file "$work/pl/rel.acc" --delta 1e-8 | val rho)
check "accountant_file from another directory" 0 "" -- bash -c "cd '$work' && '$VEIL' replay pl/r.yaml --events '$events' --limit 2000"
ok gt "$("$VEIL" dp_model accountant --file "$work/pl/rel.acc" --delta 1e-8 | val rho)" "$r1"
# An earlier veil's file in the working directory is refused by name, not
# replaced by a new accountant beside the pipeline.
mv "$work/pl/rel.acc" "$work/cwd/rel.acc"
check "accountant_file left in the working directory" 2 "r\\.yaml:[0-9]+:[0-9]+: accountant_file 'rel.acc' is read beside the pipeline file, as '\\.\\./pl/rel.acc', but an accountant file 'rel.acc' is in the directory veil started in .*move it to '\\.\\./pl/rel.acc', or give accountant_file as an absolute path" -- bash -c "cd '$work/cwd' && '$VEIL' replay ../pl/r.yaml --events '$events' --limit 10"
ok test ! -e "$work/pl/rel.acc"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]

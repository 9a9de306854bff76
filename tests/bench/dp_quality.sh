#!/usr/bin/env bash
# Quality of the private model on the Online Retail purchases: hit-rate@10
# and NDCG@10 of `veil replay --evaluate` (prequential, every
# recommendation against the same user's next event) at ε ∈ {1, 2, 4, 8}
# and without noise, next to `popular`; and the hit-rate over the pairs
# whose next event came later (a later visit, not the rest of the basket). Prints a Markdown table and writes
# the data file dp_quality.dat for dp_quality.gp (gnuplot → PNG).
#
#   VEIL=build/veil tests/bench/dp_quality.sh [EVENTS.csv.gz] [OUT_DIR]
#
# Each private run learns with the gaussian mechanism, δ = 5e-8 (< 1/n² for
# the data set's 4,339 customers), at most M = 12 noisy steps per customer
# over the whole stream (one accounting window), and the noise multiplier
# the calculator solves for the target ε over that horizon
# (`veil dp_model noise`): ρ = M/(2σ²) for the whole stream, whatever the
# number of steps. Steps are 15 days of the events' time (STEP_S), 25
# releases over the year; a customer counts with their first purchase of a
# step, in at most M of them.
# Every model but the random start begins from the description prior
# (prior: description: item vectors from the public catalog text, no
# privacy cost) and adds the exact description neighbours (prior_neighbors:
# 32) and the items next to the one in hand in the catalog file
# (prior_catalog_window: 10; Online Retail's stock codes number a
# collection's items together), both public, not learned. Their weights are
# each model's best on this data (neighbours among 1, 3, 6, 10, 30, 100;
# catalog order among 1, 3, 10, 20, 30 and 15, 30, 60, 100): 3 and 10 for
# the non-private model (the reference, "vs non-private"), 30 and 60 for
# the private ones and for the public data alone (no learning at all,
# ε = 0). One more non-private row leaves the catalog order out, to show
# what it adds. Two private variants: the full
# model (all parameters, d = 64) and the item biases alone (dp_blocks:
# bias, SGD; the prior's vectors stay) — with 4,339 users the full model's
# 1.5 M noised coordinates drown the signal. Each private variant also
# runs once with σ = 0.01, the smallest the plugin takes (noise practically
# off; its ε is meaningless): the same contribution bounds and steps, to
# tell what the bounds cost from what the noise costs. Numbers, not
# pass/fail; about 50 seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
: "${VEIL:?set VEIL to the veil binary}"
events=${1:-$ROOT/../shared/data/online-retail/interactions.csv.gz}
out=${2:-.}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
DELTA=5e-8 M=${M:-12}
# Steps on the clock, the events' time in a replay (README, "How it
# works"): STEP_S seconds per noisy step; 1,024 (step_size) is the divisor
# of the noisy sum, about what a step holds.
STEP_S=${STEP_S:-1296000}
sed -e "s|\.\./demo/|$ROOT/config/demo/|g" -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" \
  "$ROOT/config/pipelines/retail.yaml" >"$work/none.yaml"
with() { # SRC DST LINE...: the pipeline with dp_model lines added
  local src=$1 dst=$2; shift 2
  { sed -n '1,/default_training: true/p' "$src"
    for e in "$@"; do printf '      %s\n' "$e"; done
    sed -n '/default_training: true/,$p' "$src" | tail -n +2
  } >"$dst"
}
with "$work/none.yaml" "$work/prior.yaml" "prior: description" "init_scale: 0.01"
with "$work/prior.yaml" "$work/noorder.yaml" "prior_neighbors: 32" "prior_neighbor_weight: 3"
with "$work/noorder.yaml" "$work/nonpriv.yaml" "prior_catalog_window: 10" "prior_catalog_weight: 10"
pub=("prior_neighbors: 32" "prior_neighbor_weight: 30" "prior_catalog_window: 10" "prior_catalog_weight: 60")
with "$work/prior.yaml" "$work/public.yaml" "${pub[@]}" "learning_rate: 0"
with "$work/prior.yaml" "$work/private.yaml" "${pub[@]}"
# The customers' own earlier visits (retail.yaml: history_items 32, weight
# 2, each model's best among 1, 2, 3, 5 and 10 non-private, 10, 15, 20 and
# 30 for the public data and the private ones).
sed -i 's/history_weight: .*/history_weight: 15/' "$work/public.yaml" "$work/private.yaml"
variant() { # NAME SIGMA STEP EXTRA...
  local name=$1 sigma=$2 step=$3; shift 3
  with "$work/private.yaml" "$work/$name.yaml" "mechanism: gaussian" \
    "noise_multiplier: $sigma" "max_contributions: $M" "step_size: $step" \
    "step_interval_s: $STEP_S" \
    "delta: $DELTA" "epsilon_budget: 0" "accountant_file: $work/$name.acc" "$@"
}
run() { # NAME → "hit ndcg pop_hit pop_ndcg eps later_hit later_pop_hit"
  local r
  r=$("$VEIL" replay "$work/$1.yaml" --events "$events" --evaluate 2>&1)
  local p q l lp eps=inf
  p=$(sed -nE 's/^    pipeline +hit-rate@10 ([0-9.]+) +NDCG@10 ([0-9.]+)$/\1 \2/p' <<<"$r")
  q=$(sed -nE 's/^    popular +hit-rate@10 ([0-9.]+) +NDCG@10 ([0-9.]+)$/\1 \2/p' <<<"$r")
  l=$(sed -nE 's/^    pipeline, later visits +hit-rate@10 ([0-9.]+) .*/\1/p' <<<"$r")
  lp=$(sed -nE 's/^    popular, later visits +hit-rate@10 ([0-9.]+) .*/\1/p' <<<"$r")
  [ -f "$work/$1.acc" ] &&
    eps=$("$VEIL" dp_model accountant --file "$work/$1.acc" --delta "$DELTA" | sed -n 's/^epsilon=//p')
  echo "$p $q $eps $l $lp" >"$work/$1.res"
}
jobs=()
for eps in 1 2 4 8; do
  s=$("$VEIL" dp_model noise --mechanism gaussian --epsilon "$eps" --delta "$DELTA" --participations "$M" | sed -n 's/^noise_multiplier=//p')
  echo "$s" >"$work/sigma$eps"
  variant "bias$eps" "$s" 1024 "dp_blocks: bias" "dp_optimizer: sgd" "dp_learning_rate: 30"
  variant "full$eps" "$s" 1024
done
variant bias0 0.01 1024 "dp_blocks: bias" "dp_optimizer: sgd" "dp_learning_rate: 30"
variant full0 0.01 1024
# NAMES runs some of the models only and prints their raw results
# ("NAME hit ndcg pop_hit pop_ndcg eps later_hit later_pop_hit"), no table.
names=${NAMES:-none prior noorder nonpriv public bias0 full0 bias1 bias2 bias4 bias8 full1 full8}
set -- $names
while [ $# -gt 0 ]; do # two at a time: the machine has two cores
  run "$1" & [ $# -gt 1 ] && { run "$2" & }
  wait; shift; [ $# -gt 0 ] && shift
done
if [ -n "${NAMES:-}" ]; then
  for n in $names; do echo "$n $(cat "$work/$n.res")"; done
  exit 0
fi
read -r rh rn ph pn _ rl pl <"$work/none.res"
read -r qh qn _ _ _ ql _ <"$work/prior.res"
read -r nh nn _ _ _ nl _ <"$work/nonpriv.res"
read -r oh on _ _ _ ol _ <"$work/noorder.res"
read -r uh un _ _ _ ul _ <"$work/public.res"
read -r bzh bzn _ _ _ bzl _ <"$work/bias0.res"
read -r fzh fzn _ _ _ fzl _ <"$work/full0.res"
ratio() { awk -v a="$1" -v b="$nh" 'BEGIN{printf "%.2f", a/b}'; }
# The last column: the same hit-rate over the pairs whose next purchase
# came at a later time (a later visit); the others are the rest of the
# basket the recommendation was made in (an invoice's lines share a time).
printf '| model | target ε | σ | ε spent (δ=%s) | hit-rate@10 | NDCG@10 | vs non-private | hit-rate@10, later visits |\n' "$DELTA"
printf '|---|---|---|---|---|---|---|---|\n'
printf '| non-private: description prior, neighbours and catalog order (clipping only) | – | – | ∞ | %s | %s | 1.00 | %s |\n' "$nh" "$nn" "$nl"
printf '| non-private: description prior and neighbours, no catalog order | – | – | ∞ | %s | %s | %s | %s |\n' "$oh" "$on" "$(ratio "$oh")" "$ol"
printf '| non-private: description prior, no neighbours | – | – | ∞ | %s | %s | %s | %s |\n' "$qh" "$qn" "$(ratio "$qh")" "$ql"
printf '| non-private: random start | – | – | ∞ | %s | %s | %s | %s |\n' "$rh" "$rn" "$(ratio "$rh")" "$rl"
printf '| public data alone: prior, neighbours and catalog order, no learning | 0 | – | 0 | %s | %s | %s | %s |\n' "$uh" "$un" "$(ratio "$uh")" "$ul"
printf '| popular (exact counts, not private) | – | – | ∞ | %s | %s | %s | %s |\n' "$ph" "$pn" "$(ratio "$ph")" "$pl"
printf '| private configuration, biases only, noise off (σ = 0.01) | – | 0.01 | ∞ | %s | %s | %s | %s |\n' "$bzh" "$bzn" "$(ratio "$bzh")" "$bzl"
printf '| private configuration, full model, noise off (σ = 0.01) | – | 0.01 | ∞ | %s | %s | %s | %s |\n' "$fzh" "$fzn" "$(ratio "$fzh")" "$fzl"
: >"$out/dp_quality.dat"
echo "# eps bias_hit bias_ndcg full_hit full_ndcg nonprivate_hit popular_hit public_only_hit full_noise_off_hit" >"$out/dp_quality.dat"
for eps in 1 2 4 8; do
  for kind in bias full; do
    [ -f "$work/$kind$eps.res" ] || continue
    read -r h n _ _ e l _ <"$work/$kind$eps.res"
    label=$([ $kind = bias ] && echo "private, biases only" || echo "private, full model")
    printf '| %s | %s | %.4g | %.4g | %s | %s | %s | %s |\n' "$label" "$eps" "$(cat "$work/sigma$eps")" "$e" "$h" "$n" "$(ratio "$h")" "$l"
  done
  read -r bh bn _ _ _ <"$work/bias$eps.res"
  fh=NaN fn=NaN
  [ -f "$work/full$eps.res" ] && read -r fh fn _ _ _ <"$work/full$eps.res"
  echo "$eps $bh $bn $fh $fn $nh $ph $uh $fzh" >>"$out/dp_quality.dat"
done

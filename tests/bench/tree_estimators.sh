#!/usr/bin/env bash
# The tree mechanism's two estimators on Online Retail (README, "The tree
# mechanism", Honaker's estimator): biases only, steps of 3.5 days of the
# events' time (STEP_S; the noisy sum divided by 128), trees of 32, 8
# participations per tree, σ = 22 (ε ≈ 8.05 at δ = 5e-8), at three
# dp_learning_rates; prints hit-rate@10 of plain and honaker and the ε spent.
#   VEIL=build/veil tests/bench/tree_estimators.sh [EVENTS.csv.gz]   (~1 min)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
: "${VEIL:?set VEIL to the veil binary}"
events=${1:-$ROOT/../shared/data/online-retail/interactions.csv.gz}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s|\.\./demo/|$ROOT/config/demo/|g" -e "s|\.\./\.\./schemas/|$ROOT/schemas/|g" \
  "$ROOT/config/pipelines/retail.yaml" >"$work/none.yaml"
run() { # NAME ESTIMATOR LR → $work/NAME.res: "hit epsilon"
  { sed -n '1,/default_training: true/p' "$work/none.yaml"
    for e in "prior: description" "init_scale: 0.01" "prior_neighbors: 32" \
      "prior_neighbor_weight: 30" "prior_catalog_window: 10" "prior_catalog_weight: 60" \
      "mechanism: tree" "tree_steps: 32" "tree_participations: 8" "noise_multiplier: 22" \
      "step_size: 128" "step_interval_s: ${STEP_S:-302400}" "delta: 5e-8" "epsilon_budget: 0" "accountant_file: $work/$1.acc" \
      "tree_estimator: $2" "dp_blocks: bias" "dp_optimizer: sgd" "dp_learning_rate: $3"; do
      printf '      %s\n' "$e"; done
    sed -n '/default_training: true/,$p' "$work/none.yaml" | tail -n +2; } >"$work/$1.yaml"
  local hit eps
  hit=$("$VEIL" replay "$work/$1.yaml" --events "$events" --evaluate 2>&1 |
    sed -nE 's/^    pipeline +hit-rate@10 ([0-9.]+) .*/\1/p')
  eps=$("$VEIL" dp_model accountant --file "$work/$1.acc" --delta 5e-8 | sed -n 's/^epsilon=//p')
  echo "$hit $eps" >"$work/$1.res"
}
echo "| dp_learning_rate | plain | honaker | ε spent |"
echo "|---|---|---|---|"
for lr in 30 10 3; do
  run "p$lr" plain "$lr" & run "h$lr" honaker "$lr"; wait
  read -r ph pe <"$work/p$lr.res"; read -r hh _ <"$work/h$lr.res"
  printf '| %s | %s | %s | %.3g |\n' "$lr" "$ph" "$hh" "$pe"
done

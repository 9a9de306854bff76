#!/usr/bin/env bash
# How far could a private model get by learning the customers' item-to-item
# transitions? An experiment, not a test: it measures the ceiling the
# README's "What the numbers say" quotes for the 90 % quality aim.
#
#   tests/bench/pair_oracle.sh [EVENTS.csv.gz]
#
# It builds veil from HEAD in a temporary worktree with pair_oracle.patch
# (dp_model adds a third public neighbour term read from a file named by
# VEIL_PAIRS, weighted by VEIL_PAIRS_WEIGHT), makes transition lists with
# pair_oracle.py and scores each with dp_quality.sh's "public data alone"
# model (description prior, neighbours, catalog order, the customer's own
# earlier visits; no learning), at the list's best weight among 10, 30, 100
# and 300. The lists:
#   - exact, given in advance: the pairs made by ≥ T distinct customers
#     over the whole year (T = 10, 20, 30, 50): what knowing the popular
#     transitions would be worth, beyond anything a private release knows;
#   - one user-level private release at ε = 8 (δ = 2.5e-8 for the noise,
#     2.5e-8 for the selection; the whole budget, read from the first
#     event): Gaussian partition selection over all pairs, and noisy
#     counts over a public domain (pairs at most 10 catalog rows apart,
#     noise on and off).
# Needs python3; builds into a temporary directory (a few minutes), then
# about 12 replays of 15 s per list.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
events=${1:-$ROOT/../shared/data/online-retail/interactions.csv.gz}
items=$ROOT/config/demo/items.csv
work=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$work/src" 2>/dev/null; rm -rf "$work"' EXIT
git -C "$ROOT" worktree add -q --detach "$work/src" HEAD
git -C "$work/src" apply "$here/pair_oracle.patch"
cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DVEIL_BENCH=OFF >/dev/null
cmake --build "$work/build" -j2 >/dev/null
veil=$work/build/veil
# σ of one Gaussian release at ε = 8 with δ = 2.5e-8 (the other half of
# δ = 5e-8 goes to the selection's threshold).
sigma=$("$veil" dp_model noise --mechanism gaussian --epsilon 8 \
  --delta 2.5e-8 --participations 1 | sed -n 's/^noise_multiplier=//p')
py() { python3 "$here/pair_oracle.py" "$items" "$events" "$@"; }
lists=()
for t in 10 20 30 50; do py oracle "$t" "$work/oracle$t" >&2; lists+=("oracle$t"); done
py select "$sigma" 2.5e-8 "$work/select" >&2; lists+=(select)
py domain 10 0 "$work/domain_nonoise" >&2; lists+=(domain_nonoise)
py domain 10 "$sigma" "$work/domain" >&2; lists+=(domain)
score() { # LIST WEIGHT → hit-rate@10 of the public model with the list
  VEIL_PAIRS=$1 VEIL_PAIRS_WEIGHT=$2 NAMES=public VEIL=$veil \
    "$here/dp_quality.sh" "$events" "$work" | awk '$1 == "public" {print $2}'
}
base=$(NAMES=public VEIL=$veil "$here/dp_quality.sh" "$events" "$work" |
  awk '$1 == "public" {print $2}')
echo "| transitions added to the public data alone | best weight | hit-rate@10 |"
echo "|---|---|---|"
echo "| none | – | $base |"
for l in "${lists[@]}"; do
  best=0 bw=-
  for w in 10 30 100 300; do
    h=$(score "$work/$l" "$w")
    awk -v a="$h" -v b="$best" 'BEGIN{exit !(a > b)}' && { best=$h; bw=$w; }
  done
  echo "| $l | $bw | $best |"
done

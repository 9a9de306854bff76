#!/usr/bin/env bash
# The long fuzzing run (not in CI): every target for RUNS executions
# (default 10 million) on its corpus, with ASan and UBSan. Prints each
# target's execution count and exits non-zero on any crash.
#   tests/fuzz/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-10000000}
B=build-fuzz
CC=clang cmake -S . -B $B -DVEIL_FUZZ=ON -DVEIL_SANITIZE=ON -DVEIL_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build $B -j"$(nproc)" --target fuzz_codec fuzz_config fuzz_csv fuzz_tcf fuzz_share
for t in fuzz_codec fuzz_config fuzz_csv fuzz_tcf fuzz_share; do
  mkdir -p "$B/fuzz-corpus/$t"
  cp -n tests/fuzz/corpus/$t/* "$B/fuzz-corpus/$t/"
  echo "== $t: $RUNS runs"
  "$B/$t" -runs="$RUNS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    "$B/fuzz-corpus/$t" 2>&1 | grep -E 'stat::number_of_executed_units|Done|ERROR|SUMMARY'
done

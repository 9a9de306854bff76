#!/usr/bin/env bash
# The unit suite under valgrind memcheck: every ctest test labelled unit runs
# with its own command line, working directory and environment, under
#   valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
# Any memcheck error or definite leak fails it.
#   tests/valgrind/memcheck.sh BUILD_DIR [ctest -R regex]
# Tests run MEMCHECK_JOBS at a time (default 2: valgrind keeps one core
# busy per test, and the unit tests share no file or port). Each test's
# output goes to BUILD_DIR/memcheck/NAME.log (MEMCHECK_LOG_DIR), and the
# last 60 lines of each failing test's log are printed at the end.
set -euo pipefail
BUILD=${1:?usage: memcheck.sh BUILD_DIR [REGEX]}
REGEX=${2:-.}
JOBS=${MEMCHECK_JOBS:-2}
LOGS=${MEMCHECK_LOG_DIR:-$BUILD/memcheck}
case "$JOBS" in '' | 0* | *[!0-9]*) echo "MEMCHECK_JOBS='$JOBS' is not a count" >&2; exit 2;; esac
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
# Out-of-memory tests (test_reccsv, test_consent_nomem) define their own
# malloc/realloc/posix_memalign that fail on request and pass the rest on to
# libc's; by default valgrind would replace those in the test binary too and
# the failures would never happen. nouserintercepts replaces libc's only, so
# every block is still tracked.
VG=(valgrind -q --error-exitcode=99 --leak-check=full
  --errors-for-leak-kinds=definite --show-leak-kinds=definite
  --soname-synonyms=somalloc=nouserintercepts
  --suppressions="$(cd "$(dirname "$0")" && pwd)/veil.supp")
json=$(ctest --test-dir "$BUILD" -L unit -R "$REGEX" --show-only=json-v1)
n=$(jq '.tests | length' <<<"$json")
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$LOGS"/*.status

# run NAME DIR: the test's command (cmd, envs) under valgrind in DIR; its
# output in NAME.log, then "STATUS SECONDS" in NAME.status
run() {
  local name=$1 dir=$2 start=$SECONDS rc=0
  (cd "$dir" && env "${envs[@]}" "${VG[@]}" "${cmd[@]}") >"$LOGS/$name.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - start))" >"$LOGS/$name.status"
  if [ "$rc" -eq 0 ]; then
    echo "ok   $name ($((SECONDS - start)) s)"
  else
    echo "FAIL $name ($((SECONDS - start)) s, exit $rc): $LOGS/$name.log"
  fi
}

names=() running=0
for ((i = 0; i < n; i++)); do
  t=$(jq -c ".tests[$i]" <<<"$json")
  name=$(jq -r '.name' <<<"$t")
  mapfile -t cmd < <(jq -r '.command[]' <<<"$t")
  # Scripts (CLI tests, fixtures) would measure bash, not veil.
  case "$(basename "${cmd[0]}")" in bash|sh|*.sh) echo "skip $name (a script)"; continue;; esac
  dir=$(jq -r '(.properties // [])[] | select(.name == "WORKING_DIRECTORY") | .value' <<<"$t")
  mapfile -t envs < <(jq -r '(.properties // [])[] | select(.name == "ENVIRONMENT") | .value[]' <<<"$t")
  # A free slot first (run's own status is 0: the verdict is in the files).
  if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
  run "$name" "${dir:-$BUILD}" &
  running=$((running + 1))
  names+=("$name")
done
wait

# The verdict from the status files, in ctest's order: a test whose status
# is missing (its job died) failed too.
failed=()
for name in "${names[@]}"; do
  rc=missing
  if [ -f "$LOGS/$name.status" ]; then read -r rc _ <"$LOGS/$name.status" || true; fi
  [ "$rc" = 0 ] || failed+=("$name")
done
# Each failure's diagnosis where CI shows it: valgrind's lines from before
# the last 60 (an error early in a long test), then the last 60 lines.
for name in "${failed[@]}"; do
  log=$LOGS/$name.log
  printf '\n== memcheck %s: %s\n' "$name" "$log"
  [ -f "$log" ] || { echo "(no log)"; continue; }
  awk -v n="$(wc -l <"$log")" 'FNR <= n - 60 && /^==[0-9]+==/ && c++ < 100' "$log"
  echo "-- the last 60 lines:"
  tail -n 60 "$log"
done
echo "memcheck: ${#failed[@]} of ${#names[@]} compiled unit test(s) with findings${failed[*]:+: ${failed[*]}} (logs in $LOGS)"
[ "${#failed[@]}" -eq 0 ]

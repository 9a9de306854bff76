#!/usr/bin/env bash
# The unit suite under valgrind memcheck: every ctest test labelled unit runs
# with its own command line, working directory and environment, under
#   valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
# Any memcheck error or definite leak fails it.
#   tests/valgrind/memcheck.sh BUILD_DIR [ctest -R regex]
set -euo pipefail
BUILD=${1:?usage: memcheck.sh BUILD_DIR [REGEX]}
REGEX=${2:-.}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
VG=(valgrind -q --error-exitcode=99 --leak-check=full
  --errors-for-leak-kinds=definite --show-leak-kinds=definite
  --suppressions="$(cd "$(dirname "$0")" && pwd)/veil.supp")
json=$(ctest --test-dir "$BUILD" -L unit -R "$REGEX" --show-only=json-v1)
n=$(jq '.tests | length' <<<"$json")
failed=()
for ((i = 0; i < n; i++)); do
  t=$(jq -c ".tests[$i]" <<<"$json")
  name=$(jq -r '.name' <<<"$t")
  mapfile -t cmd < <(jq -r '.command[]' <<<"$t")
  # Scripts (CLI tests, fixtures) would measure bash, not veil.
  case "$(basename "${cmd[0]}")" in bash|sh|*.sh) echo "skip $name (a script)"; continue;; esac
  dir=$(jq -r '(.properties // [])[] | select(.name == "WORKING_DIRECTORY") | .value' <<<"$t")
  mapfile -t envs < <(jq -r '(.properties // [])[] | select(.name == "ENVIRONMENT") | .value[]' <<<"$t")
  start=$SECONDS
  if (cd "${dir:-$BUILD}" && env "${envs[@]}" "${VG[@]}" "${cmd[@]}") >"/tmp/memcheck-$name.log" 2>&1; then
    echo "ok   $name ($((SECONDS - start)) s)"
  else
    echo "FAIL $name ($((SECONDS - start)) s): /tmp/memcheck-$name.log"
    failed+=("$name")
  fi
done
echo "memcheck: ${#failed[@]} compiled unit test(s) with findings"
[ "${#failed[@]}" -eq 0 ]

#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for veil and then runs the demo or the
# whole test suite. Idempotent: installed packages and built trees are reused.
#
#   deploy/setup.sh demo    install, build, run `veil demo`
#   deploy/setup.sh test    install, build, fetch the test broker, run every
#                           test (unit, fault, integration; ASan+UBSan unit run;
#                           each libFuzzer target briefly), then one line with
#                           each phase's result; the first failing phase ends
#                           the run with its exit status
#   deploy/setup.sh build   install and build only
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${VEIL_BUILD_DIR:-$ROOT/build}

# Everything veil links or its tests run, from Debian.
PACKAGES=(build-essential cmake pkg-config
  librdkafka-dev libavro-dev libopenblas-dev libyaml-dev libcmocka-dev
  libsodium-dev zlib1g-dev libmicrohttpd-dev curl
  kcat openjdk-17-jdk-headless maven gzip shellcheck openssl jq clang python3
  valgrind)
# clang's sanitizer and libFuzzer runtimes, for the tests' fuzz build: clang
# only recommends them (--no-install-recommends leaves them out). A tool's
# runtime, not a library veil links, so the image's builder goes without.
PACKAGES+=(libclang-rt-dev)
# tests/deploy renders the Kubernetes manifests with kubectl and checks them
# with node. A kubectl or node installed otherwise (Cloud SDK, NodeSource) is
# kept: Debian's packages would conflict with it.
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)
command -v npm >/dev/null || PACKAGES+=(nodejs npm)

log() { printf '\n== %s\n' "$*"; }

# phase NAME CMD...: CMD as one phase of `test`, under set -e (functions
# too: a subshell outside any || or if, where bash would ignore -e), its
# result and time noted for the last line; the first failure prints that
# line and ends the run with the phase's exit status.
results=()
phase() {
  local name=$1 start=$SECONDS rc
  shift
  log "$name"
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    results+=("$name FAILED (exit $rc)")
    echo
    echo "deploy/setup.sh test: FAILED in $((SECONDS / 60)) min $((SECONDS % 60)) s, later phases not run: $(summary)"
    exit "$rc"
  fi
  results+=("$name ok $((SECONDS - start)) s")
}
summary() { local s; s=$(printf '%s; ' "${results[@]}"); echo "${s%; }"; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}"
}

build() {
  log "building in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)"
}

build_fuzz() {
  log "building the libFuzzer targets (clang, ASan+UBSan) in $BUILD-fuzz"
  CC=clang cmake -S "$ROOT" -B "$BUILD-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DVEIL_FUZZ=ON -DVEIL_SANITIZE=ON -DVEIL_BENCH=OFF >/dev/null
  cmake --build "$BUILD-fuzz" -j"$(nproc)" \
    --target fuzz_codec fuzz_config fuzz_csv fuzz_tcf fuzz_share
}

build_asan() {
  log "building with AddressSanitizer and UBSan in $BUILD-asan"
  cmake -S "$ROOT" -B "$BUILD-asan" -DCMAKE_BUILD_TYPE=Debug -DVEIL_SANITIZE=ON \
    -DVEIL_BENCH=OFF >/dev/null
  cmake --build "$BUILD-asan" -j"$(nproc)"
}

cmd=${1:-}
case "$cmd" in
  demo)
    install_packages
    build
    log "veil demo"
    exec "$BUILD/veil" demo
    ;;
  test)
    # The unit tests (no broker; each with its own mkstemp/mkdtemp files and
    # port-0 sockets) and the fuzz targets run two at a time, valgrind's
    # runs too (tests/valgrind/memcheck.sh); the rest one at a time: the
    # fault tests are timing-bound and the integration tests share one
    # broker. The integration suite runs once, under ASan and UBSan (it
    # checks the same behaviour and memory besides); the crash test and the
    # SDK test (label "release") with the release build: running the whole
    # suite in both builds took the test command past 30 minutes.
    phase "packages" install_packages
    phase "build" build
    phase "broker jars" deploy/local/kafka/kafka.sh fetch
    phase "npm ci" npm ci --prefix tests/deploy --no-audit --no-fund
    phase "unit" ctest --test-dir "$BUILD" -L unit -j2 --output-on-failure \
      --timeout 600
    phase "fault+deploy" ctest --test-dir "$BUILD" -LE 'unit|integration' \
      --output-on-failure --timeout 600
    phase "crash+sdk" ctest --test-dir "$BUILD" -L release \
      --output-on-failure --timeout 600
    phase "ASan build" build_asan
    phase "ASan unit" env ASAN_OPTIONS=detect_leaks=1 \
      ctest --test-dir "$BUILD-asan" -L unit -j2 --output-on-failure
    # The integration suite, on the real broker, but for "release".
    phase "ASan integration" env ASAN_OPTIONS=detect_leaks=1 \
      ctest --test-dir "$BUILD-asan" -L integration -LE release \
      --output-on-failure --timeout 600
    phase "memcheck" tests/valgrind/memcheck.sh "$BUILD"
    phase "fuzz build" build_fuzz
    # Each target for VEIL_FUZZ_SECONDS (tests/fuzz/run.sh runs them long).
    phase "fuzz" ctest --test-dir "$BUILD-fuzz" -L fuzz -j2 --output-on-failure
    echo
    echo "deploy/setup.sh test: passed in $((SECONDS / 60)) min $((SECONDS % 60)) s: $(summary)"
    ;;
  build)
    install_packages
    build
    ;;
  *)
    echo "usage: deploy/setup.sh demo|test|build" >&2
    exit 2
    ;;
esac

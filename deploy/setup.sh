#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for veil and then runs the demo or the
# whole test suite. Idempotent: installed packages and built trees are reused.
#
#   deploy/setup.sh demo    install, build, run `veil demo`
#   deploy/setup.sh test    install, build, fetch the test broker, run every
#                           test (unit, fault, integration; ASan+UBSan unit run;
#                           each libFuzzer target briefly)
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
    install_packages
    build
    log "fetching the test broker (Apache Kafka from Maven Central)"
    deploy/local/kafka/kafka.sh fetch
    log "npm packages of the deploy test (tests/deploy/package-lock.json)"
    npm ci --prefix tests/deploy --no-audit --no-fund
    log "test suite"
    ctest --test-dir "$BUILD" --output-on-failure --timeout 600
    build_asan
    log "unit tests under AddressSanitizer and UBSan"
    ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$BUILD-asan" -L unit \
      --output-on-failure
    # The integration suite too, on the real broker; the crash test (long,
    # timing-bound) and the SDK test (an install, no new code) only once.
    log "integration tests under AddressSanitizer and UBSan"
    ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$BUILD-asan" -L integration \
      -E 'test_crash|test_sdk' --output-on-failure --timeout 600
    log "unit tests under valgrind memcheck"
    tests/valgrind/memcheck.sh "$BUILD"
    build_fuzz
    log "each fuzz target for a short run (tests/fuzz/run.sh runs them long)"
    ctest --test-dir "$BUILD-fuzz" -L fuzz --output-on-failure
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

#!/usr/bin/env bash
# The plugin SDK as a plugin author meets it: `cmake --install` into a fresh
# prefix, plugins/example copied out of the tree and built against the
# installed veil-plugin.pc alone, listed by `veil plugins`, and run by the
# installed veil in a pipeline on the embedded broker (`veil demo`), whose
# output shows the plugin's effect.
# Needs BUILD (the build tree) and ROOT (the source tree).
set -euo pipefail
: "${BUILD:?}" "${ROOT:?}"
W=$(mktemp -d /tmp/veil-sdk-XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

cmake --install "$BUILD" --prefix "$W/prefix" >"$W/install.log" ||
  { cat "$W/install.log"; fail "cmake --install"; }
[ -f "$W/prefix/include/veil/veil.h" ] || fail "veil.h not installed"
pc=$(find "$W/prefix" -name veil-plugin.pc | head -1)
[ -n "$pc" ] || fail "veil-plugin.pc not installed"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
# Only the installed prefix: not the source tree, not the system.
export PKG_CONFIG_LIBDIR=$PKG_CONFIG_PATH
cflags=$(pkg-config --cflags veil-plugin)
inc=$(readlink -f "$(sed 's/^-I//; s/ *$//' <<<"$cflags")")
[ "$inc" = "$(readlink -f "$W/prefix/include")" ] || fail "pkg-config points at '$inc', not the prefix"
abi=$(pkg-config --variable=abi_version veil-plugin)
grep -q "#define VEIL_ABI_VERSION $abi\$" "$W/prefix/include/veil/veil.h" || fail "abi_version $abi"
ok "installed SDK: veil.h and veil-plugin.pc (ABI $abi)"

# The example outside the source tree: it can only see the prefix.
cp -r "$ROOT/plugins/example" "$W/src"
cmake -S "$W/src" -B "$W/build" -DCMAKE_C_FLAGS="-Werror" >"$W/cmake.log" 2>&1 ||
  { cat "$W/cmake.log"; fail "configuring the example"; }
cmake --build "$W/build" >"$W/build.log" 2>&1 || { cat "$W/build.log"; fail "building the example"; }
so="$W/build/veil_example.so"
[ -f "$so" ] || fail "no veil_example.so"
grep -q "$ROOT/core" "$W/build/CMakeCache.txt" "$W/build.log" && fail "the example build saw the source tree"
# It exports the entry point and nothing else of veil's.
nm -D --defined-only "$so" | grep -q ' T veil_plugin_entry$' || fail "veil_plugin_entry not exported"
[ "$(nm -D --defined-only "$so" | grep -c ' T veil_')" -eq 1 ] || fail "the plugin defines SDK symbols itself"
ok "plugins/example built out of tree against the installed SDK"

VEIL="$W/prefix/bin/veil"
out=$(VEIL_PLUGIN_PATH="$W/build" "$VEIL" plugins example)
grep -qE "min_value +double +default 1 +keep interactions" <<<"$out" || { echo "$out"; fail "veil plugins example"; }
ok "veil plugins lists it with its parameter"

# A pipeline that uses it by path; the effect is checkable: events with a
# value (quantity) of at least 12 reach the events output, the rest are
# dropped with the plugin's reason.
N=2000
head -n $((N + 1)) "$ROOT/config/demo/events.csv" >"$W/events.csv"
cat >"$W/pipeline.yaml" <<YAML
kafka: {bootstrap: embedded, group: sdk-test}
input:
  topic: interactions
  schema: $ROOT/schemas/interaction.avsc
  batch: {max_events: 256, max_wait_ms: 20}
outputs:
  events: {topic: kept, schema: $ROOT/schemas/interaction.avsc}
  dead_letter: {topic: interactions.dlq}
plugins:
  - use: pseudonymize
  - use: $so
    with: {min_value: 12}
keys: {ephemeral: true}
demo: {events: $W/events.csv, garbage: 0}
YAML
want=$(tail -n +2 "$W/events.csv" | awk -F, '$4 >= 12' | wc -l)
[ "$want" -gt 0 ] && [ "$want" -lt $N ] || fail "test data: $want of $N events reach 12"
timeout 120 "$VEIL" demo "$W/pipeline.yaml" >"$W/demo.out" 2>&1 || { cat "$W/demo.out"; fail "veil demo with the example"; }
grep -qE "2\. example +in $N +out $want +dropped $((N - want)) " "$W/demo.out" || { cat "$W/demo.out"; fail "stage counts of the example"; }
grep -qE "below_min_value +$((N - want))$" "$W/demo.out" || { cat "$W/demo.out"; fail "drop reason"; }
grep -qE "… $want records" "$W/demo.out" || { cat "$W/demo.out"; fail "events read back from the output"; }
ok "the example ran in a pipeline: $want of $N events kept, the rest dropped by reason"
# The installed notice asks the out-of-tree plugin too.
VEIL_PLUGIN_PATH="$W/build" "$VEIL" notice "$W/pipeline.yaml" | grep -q "value is at least 12, and no others" ||
  fail "the example's notice statement"
ok "veil notice includes the plugin's statement"
echo "PASS test_sdk"

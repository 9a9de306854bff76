#!/usr/bin/env bash
# The privacy side of `veil` through its real interface: the privacy lint
# (a leaking pipeline fails with exit 2, naming field, output and fix; the
# shipped pipelines pass), the keys section (key file mode and length,
# rotation) and `veil pseudonymize keygen` — and never a byte of key
# material in what veil prints.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VEIL=${VEIL:?}
tmp=$(mktemp -d /tmp/veil-cli-privacy-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
check() { # NAME WANT_RC WANT_PATTERN -- CMD...
  local name=$1 want=$2 pat=$3; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  printf '%s\n' "$out" >>"$tmp/all-output"
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit $rc, want $want"; echo "$out" | head -5; fails=$((fails + 1)); return
  fi
  if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
    echo "FAIL $name: output lacks /$pat/"; echo "$out" | head -5; fails=$((fails + 1)); return
  fi
  passes=$((passes + 1)); echo "ok $name"
}
# Every encoding of a key file's bytes someone might print.
no_key_bytes() { # NAME FILE
  local k raw hex b64
  raw=""
  # The text itself only for a one-line printable key: grep -F would read
  # a binary key's newlines as many short patterns.
  LC_ALL=C grep -qv '^[[:print:]]*$' "$2" || [ "$(wc -l <"$2")" -gt 0 ] || raw=$(cat "$2")
  hex=$(od -An -tx1 -v "$2" | tr -d ' \n')
  b64=$(base64 -w0 <"$2")
  for k in "$raw" "${hex:0:32}" "${b64:0:24}"; do
    if [ -n "$k" ] && grep -qaF -- "$k" "$tmp/all-output"; then
      echo "FAIL $1: key material of $2 in veil's output"; fails=$((fails + 1)); return
    fi
  done
  passes=$((passes + 1)); echo "ok $1"
}

# Shipped pipelines pass, and the test pipelines that pass raw events
# through (each with a pseudonymize stage now).
for f in "$root"/config/pipelines/*.yaml; do
  check "lint $(basename "$f")" 0 ': ok$' -- "$VEIL" lint "$f"
done
for f in "$root"/tests/pipelines/flow.yaml "$root"/tests/pipelines/passthrough.yaml; do
  check "lint tests/pipelines/$(basename "$f")" 0 ': ok$' -- env KAFKA_BOOTSTRAP=embedded \
    VEIL_INPUT=i VEIL_OUTPUT=o VEIL_RECS=r VEIL_DLQ=d VEIL_GROUP=g "$VEIL" lint "$f"
done

# A stage that reads context fields before they are treated (context
# before pseudonymize: the raw country would be the "in <country>" of an
# explanation), also refused by the commands that start it.
check "lint context before pseudonymize" 2 \
  "leak_context_order.yaml:10:5: stage 1 'context' reads .*'context.country' \(pii: quasi\).*'context.session_id' \(pii: quasi\).* of the input, and what it reads can reach its outputs; stage 2 'pseudonymize' treats them but runs after: move that stage before stage 1" \
  -- "$VEIL" lint "$here/leak_context_order.yaml"
printf 'ts,user_id,item,country\n1291191960,17850,85123A,ZZ-RAWCOUNTRY\n' >"$tmp/raw.csv"
check "replay context before pseudonymize" 2 "stage 2 'pseudonymize' treats them but runs after" \
  -- "$VEIL" replay "$here/leak_context_order.yaml" --events "$tmp/raw.csv"

# Leaks: exit 2, the position, the field, the output and the fix.
check "lint leaking user_id" 2 \
  "leak_user_id.yaml:9:5: field 'user_id' \(pii: identifier\) can reach output 'events' \(topic leak.out\) in the clear: stage 1 'passthrough' emits it and no earlier stage treats it; add a pseudonymize stage before it with user_id: pseudonym \(or drop\)" \
  -- "$VEIL" lint "$here/leak_user_id.yaml"
check "lint leaking context.ip" 2 \
  "leak_user_id.yaml:9:5: field 'context.ip' \(pii: quasi\) can reach output 'events' \(topic leak.out\) in the clear: stage 1 'passthrough' emits it and no earlier stage treats it; add a pseudonymize stage before it with context.ip: truncate_ip \(or drop\), or keep it with a reason" \
  -- "$VEIL" lint "$here/leak_user_id.yaml"
check "lint context.ip kept without a reason" 2 \
  "leak_ip.yaml:11:19: field 'context.ip' \(pii: quasi\) can reach output 'events' \(topic leak.out\) in the clear: stage 1 'pseudonymize' keeps it without a reason; write context.ip: 'keep: WHY IT IS NEEDED', or truncate_ip \(or drop\) instead" \
  -- "$VEIL" lint "$here/leak_ip.yaml"
# The TC string is a quasi-identifier too (its times and vendor choices
# single out a browser): keeping it needs a reason, as the IP does.
sed -e 's|context.ip: keep|tc_string: keep|' -e "s|\.\./\.\./schemas|$root/schemas|g" \
  "$here/leak_ip.yaml" >"$tmp/tc.yaml"
check "lint tc_string kept without a reason" 2 \
  "tc.yaml:11:18: field 'tc_string' \(pii: quasi\) can reach output 'events' \(topic leak.out\) in the clear: stage 1 'pseudonymize' keeps it without a reason" \
  -- "$VEIL" lint "$tmp/tc.yaml"
sed -i "s|tc_string: keep|tc_string: 'keep: the CMP audits its strings downstream'|" "$tmp/tc.yaml"
check "lint tc_string kept with a reason" 0 "tc.yaml: ok$" -- "$VEIL" lint "$tmp/tc.yaml"
out=$("$VEIL" lint "$here/leak_ip.yaml" 2>&1)
[ "$(grep -c "can reach output" <<<"$out")" -eq 1 ] && { passes=$((passes + 1)); echo "ok only context.ip leaks"; } ||
  { echo "FAIL only context.ip should leak:"; echo "$out"; fails=$((fails + 1)); }
# An output schema without the marks hides nothing: the event encoder
# fills its fields from the event whatever it marks, so the input schema's
# marks hold there. interaction-unmarked.avsc must stay the interaction
# schema minus its marks, or this would test another schema.
if grep -v '"pii"' "$root/schemas/interaction.avsc" | cmp -s - "$here/interaction-unmarked.avsc"; then
  passes=$((passes + 1)); echo "ok interaction-unmarked.avsc is the schema without its marks"
else
  echo "FAIL tests/cli/interaction-unmarked.avsc differs from schemas/interaction.avsc without its \"pii\" lines"
  fails=$((fails + 1))
fi
from_input="from the input schema: the output copies it from the event"
check "lint unmarked output schema: user_id" 2 \
  "leak_unmarked_output.yaml:12:5: field 'user_id' \(pii: identifier, $from_input\) can reach output 'events' \(topic leak.out\) in the clear: stage 1 'passthrough' emits it and no earlier stage treats it; add a pseudonymize stage before it with user_id: pseudonym \(or drop\)" \
  -- "$VEIL" lint "$here/leak_unmarked_output.yaml"
check "lint unmarked output schema: context.session_id" 2 \
  "leak_unmarked_output.yaml:12:5: field 'context.session_id' \(pii: quasi, $from_input\) can reach output 'events' \(topic leak.out\) in the clear" \
  -- "$VEIL" lint "$here/leak_unmarked_output.yaml"
out=$("$VEIL" lint "$here/leak_unmarked_output.yaml" 2>&1)
# user_id, tc_string and the nine context fields, as with the marked schema.
[ "$(grep -c "can reach output 'events'" <<<"$out")" -eq 11 ] && { passes=$((passes + 1)); echo "ok every input mark holds in the unmarked output"; } ||
  { echo "FAIL every marked field should be refused:"; echo "$out"; fails=$((fails + 1)); }
# Bounded: a run the lint lets through would consume until stopped.
check "run refuses the unmarked output schema" 2 "field 'context.ip' \(pii: quasi, $from_input\) can reach output 'events'" \
  -- timeout 30 "$VEIL" run "$here/leak_unmarked_output.yaml"
# With a pseudonymize stage first it passes: the marks are the input's,
# and the same treatments satisfy them.
sed -e 's|^  - use: passthrough|  - use: pseudonymize\n  - use: passthrough|' \
  -e "s|interaction-unmarked.avsc|$here/interaction-unmarked.avsc|; s|\.\./\.\./schemas|$root/schemas|" \
  "$here/leak_unmarked_output.yaml" >"$tmp/unmarked_ok.yaml"
check "lint unmarked output schema after pseudonymize" 0 ': ok$' -- "$VEIL" lint "$tmp/unmarked_ok.yaml"

# A mark the lint does not know is refused, not read as no mark: "pii":
# true on user_id would otherwise let the raw id through and out of the
# notice.
sed 's/"pii": "identifier"/"pii": true/' "$root/schemas/interaction.avsc" >"$tmp/bool.avsc"
sed 's/"pii": "quasi"/"pii": "Quasi"/' "$root/schemas/interaction.avsc" >"$tmp/case.avsc"
grep -q '"pii": true' "$tmp/bool.avsc" && grep -q '"pii": "Quasi"' "$tmp/case.avsc" ||
  { echo "FAIL the schema edits found no mark"; fails=$((fails + 1)); }
for s in bool case; do
  sed -e "s|\.\./\.\./schemas/interaction.avsc|$tmp/$s.avsc|g" "$here/leak_user_id.yaml" >"$tmp/$s.yaml"
done
check "lint refuses \"pii\": true" 2 \
  "bool.yaml:4:33: input leak.in: schema .*bool.avsc: field 'user_id': \"pii\" must be \"identifier\" \(it identifies a person\) or \"quasi\"" \
  -- "$VEIL" lint "$tmp/bool.yaml"
check "notice refuses \"pii\": \"Quasi\"" 2 "field '(tc_string|context\.[a-z_]+)': \"pii\" must be" \
  -- "$VEIL" notice "$tmp/case.yaml"
# A pseudonym of a quasi-identifier keeps it as unique as it was (a user
# agent's code is a fingerprint) and, where it has few values (a country),
# is mapped back by frequency: like keep, it needs a reason.
policy_yaml() { # FILE WITH: a pseudonymize -> passthrough pipeline
  cat >"$1" <<EOF
kafka: {bootstrap: embedded, group: policy}
input: {topic: policy.in, schema: $root/schemas/interaction.avsc}
outputs:
  events: {topic: policy.out, schema: $root/schemas/interaction.avsc}
  dead_letter: {topic: policy.dlq}
plugins:
  - use: pseudonymize
    with:
$2
  - use: passthrough
keys: {ephemeral: true}
EOF
}
policy_yaml "$tmp/country.yaml" "      context.country: pseudonym"
check "lint a country pseudonymized without a reason" 2 \
  "country.yaml:9:24: field 'context.country' \(pii: quasi\) can reach output 'events' \(topic policy.out\) in the clear: stage 1 'pseudonymize' pseudonymizes it without a reason, and a pseudonym keeps a quasi-identifier as unique as it was and, where it has few values, can be mapped back; write context.country: 'pseudonym: WHY IT IS NEEDED', or drop instead" \
  -- "$VEIL" lint "$tmp/country.yaml"
# (timeout: a run the lint let through would consume until stopped.)
check "run refuses it too" 2 "'context.country' \(pii: quasi\).*pseudonymizes it without a reason" \
  -- timeout 20 "$VEIL" run "$tmp/country.yaml"
policy_yaml "$tmp/ua.yaml" "      context.user_agent: pseudonym"
check "lint a user agent pseudonymized without a reason" 2 \
  "ua.yaml:9:27: field 'context.user_agent' \(pii: quasi\) .* pseudonymizes it without a reason.*; write context.user_agent: 'pseudonym: WHY IT IS NEEDED', or reduce_ua \(or drop\) instead" \
  -- "$VEIL" lint "$tmp/ua.yaml"
policy_yaml "$tmp/country-why.yaml" "      context.country: 'pseudonym: prices differ per country'"
check "lint a country pseudonymized with a reason" 0 ': ok$' -- "$VEIL" lint "$tmp/country-why.yaml"
policy_yaml "$tmp/user-id.yaml" "      user_id: pseudonym"
check "lint an identifier pseudonymized without a reason" 0 ': ok$' -- "$VEIL" lint "$tmp/user-id.yaml"

# Kept coordinates, or a kept front-end geohash of any length, are precise
# geolocation: a reason says why, not that this person agreed, so they need
# require_special_feature_1 as geohash:7 does.
policy_yaml "$tmp/latkeep.yaml" "      context.lat: 'keep: store finder'"
check "lint kept lat/lon without require_special_feature_1" 2 \
  "latkeep.yaml:9:20: stage 1 'pseudonymize': field 'context.lat': 'keep: store finder' keeps the exact coordinates, precise geolocation in TCF terms, for every event; set require_special_feature_1: true so that only events whose consent has special feature 1 keep it \(others get geohash:6\), or write geohash:6 or coarser" \
  -- "$VEIL" lint "$tmp/latkeep.yaml"
printf 'ts,user_id,item\n1291191960,17850,85123A\n' >"$tmp/one.csv"
check "replay refuses kept lat/lon without require_special_feature_1" 2 \
  "context.lat: 'keep: store finder' keeps the exact coordinates" \
  -- "$VEIL" replay "$tmp/latkeep.yaml" --events "$tmp/one.csv"
policy_yaml "$tmp/ghkeep.yaml" "      context.geohash: 'keep: store finder'"
check "lint a kept front-end geohash without require_special_feature_1" 2 \
  "ghkeep.yaml:9:24: stage 1 'pseudonymize': field 'context.geohash': 'keep: store finder' keeps the front end's geohash at any length .*set require_special_feature_1: true" \
  -- "$VEIL" lint "$tmp/ghkeep.yaml"
policy_yaml "$tmp/latkeep-sf1.yaml" "      context.lat: 'keep: store finder'
      context.geohash: 'keep: store finder'
      require_special_feature_1: true"
check "lint kept locations with require_special_feature_1" 0 ': ok$' -- "$VEIL" lint "$tmp/latkeep-sf1.yaml"

check "lint state without keys" 2 \
  "state_nokeys.yaml:15:8: state: checkpoints stage state to a topic, and without a keys: section stages hold what they keep about a user under the raw user_id; add keys:" \
  -- "$VEIL" lint "$here/state_nokeys.yaml"
# An ephemeral key is drawn anew at every start: state restored after one
# is under pseudonyms no erasure or access request can name again.
{ sed "s|\.\./\.\./|$here/../../|g" "$here/state_nokeys.yaml"; echo 'keys: {ephemeral: true}'; } >"$tmp/state_eph.yaml"
check "lint state with an ephemeral key" 2 \
  "state_eph.yaml:15:8: state: checkpoints what stages hold about a person under their pseudonym, and keys: \{ephemeral: true\} draws a new key at every start, so after a restart no erasure or access request could reach the restored state; use key files" \
  -- "$VEIL" lint "$tmp/state_eph.yaml"
check "run refuses a leaking pipeline" 2 "field 'user_id' \(pii: identifier\) can reach output 'events'" \
  -- "$VEIL" run "$here/leak_user_id.yaml"

# Key files: refused when readable by others or too short, with the file
# and the fix; never their bytes.
printf 'THIS-IS-SECRET-KEY-MATERIAL-0123456789abcdef!' >"$tmp/k1"
printf 'ANOTHER-SECRET-KEY-MATERIAL-9876543210fedcba?' >"$tmp/k2"
chmod 600 "$tmp/k1" "$tmp/k2"
export VEIL_TEST_KEY1="$tmp/k1" VEIL_TEST_KEY2="$tmp/k2"
check "keys: lint with two keys" 0 ': ok$' -- "$VEIL" lint "$here/keyfile.yaml"
chmod 644 "$tmp/k1"
check "keys: a 0644 key file refused by lint" 2 \
  "keyfile.yaml:14:9: keys: key file '$tmp/k1' has mode 0644: it is readable or writable by group or others; run \`chmod 600 $tmp/k1\` \(in Kubernetes, copy the Secret's files into an emptyDir owned by veil's user with mode 0400" \
  -- "$VEIL" lint "$here/keyfile.yaml"
check "keys: a 0644 key file refused by run" 2 "key file '$tmp/k1' has mode 0644.*chmod 600" \
  -- "$VEIL" run "$here/keyfile.yaml"
chmod 600 "$tmp/k1"
# active: given as a list is the wrong shape, not missing.
sed -e "s|\.\./\.\./|$here/../../|g" -e 's|^  active: .*|  active: [k1]|' "$here/keyfile.yaml" >"$tmp/active_list.yaml"
check "keys: active as a list" 2 "active_list.yaml:[0-9]+:[0-9]+: keys: active must be one key id, e.g. active: k1" \
  -- "$VEIL" lint "$tmp/active_list.yaml"
chmod 640 "$tmp/k1"
check "keys: a 0640 key file refused" 2 "key file '$tmp/k1' has mode 0640" -- "$VEIL" lint "$here/keyfile.yaml"
chmod 600 "$tmp/k1"
printf 'short-key-16byte' >"$tmp/short"; chmod 600 "$tmp/short"
check "keys: a 16-byte key refused" 2 \
  "keyfile.yaml:15:9: keys: key file '$tmp/short' holds 16 bytes: a key needs at least 32 \(generate one with \`veil pseudonymize keygen PATH\`\)" \
  -- env VEIL_TEST_KEY2="$tmp/short" "$VEIL" lint "$here/keyfile.yaml"
# Rotation through the YAML: either key active; one material under two ids
# (a rotation that unlinks nothing) and an unknown active id refused.
check "keys: k2 active" 0 ': ok$' -- env VEIL_TEST_ACTIVE=k2 "$VEIL" lint "$here/keyfile.yaml"
cp -p "$tmp/k1" "$tmp/k1copy"
check "keys: same key under two ids" 2 "holds the same key as key id 'k1': a rotation needs a new key" \
  -- env VEIL_TEST_KEY2="$tmp/k1copy" "$VEIL" lint "$here/keyfile.yaml"
check "keys: unknown active id" 2 "active key 'k3' is not in the keyring: the keyring holds k1, k2" \
  -- env VEIL_TEST_ACTIVE=k3 "$VEIL" lint "$here/keyfile.yaml"

# keygen: mode 0600, 32 bytes, never overwrites, never prints the key.
check "keygen" 0 "wrote a new key to $tmp/new.key \(mode 0600\)" -- "$VEIL" pseudonymize keygen "$tmp/new.key"
if [ "$(stat -c '%a %s' "$tmp/new.key")" = "600 32" ]; then
  passes=$((passes + 1)); echo "ok keygen wrote 32 bytes with mode 0600"
else
  echo "FAIL keygen: $(stat -c '%a %s' "$tmp/new.key")"; fails=$((fails + 1))
fi
check "keygen never overwrites (usage error: another path)" 2 "already exists" -- "$VEIL" pseudonymize keygen "$tmp/new.key"
check "keygen usage" 2 "usage: veil pseudonymize keygen FILE" -- "$VEIL" pseudonymize keygen
check "keygen into a missing directory (runtime error)" 1 "cannot create" -- "$VEIL" pseudonymize keygen "$tmp/no-such-dir/k"
# keygen's keys: snippet names the file by its absolute path: a pipeline
# reads a relative key path relative to its own directory, not to where
# keygen ran. The snippet, pasted as printed into a pipeline elsewhere,
# lints (a path YAML could not hold plain is quoted, '$' doubled).
mkdir -p "$tmp/cwd/keys" "$tmp/cwd/odd dir:\$x" "$tmp/pipe"
for k in keys/k1 'odd dir:$x/k1'; do
  snippet=$(cd "$tmp/cwd" && "$VEIL" pseudonymize keygen "$k" | sed -n 's/^  keys: {active: ID, files: {ID: /keys: {active: k1, files: {k1: /p')
  { sed -e '/^keys:/,$d' -e "s#\.\./\.\./schemas/#$root/schemas/#g" "$here/keyfile.yaml"; echo "$snippet"; } >"$tmp/pipe/p.yaml"
  check "keygen's snippet, pasted into a pipeline elsewhere ($k)" 0 "p.yaml: ok" -- "$VEIL" lint "$tmp/pipe/p.yaml"
done
check "keys: a generated key rotates in" 0 ': ok$' \
  -- env VEIL_TEST_KEY2="$tmp/new.key" VEIL_TEST_ACTIVE=k2 "$VEIL" lint "$here/keyfile.yaml"
check "plugins pseudonymize" 0 "context.ip +string +default truncate_ip" -- "$VEIL" plugins pseudonymize

# An ephemeral key is drawn in locked memory and never written to a file:
# with /tmp read-only (a private mount namespace: /tmp bound read-only onto
# itself, so a build or clone under /tmp still runs) the demo pipeline, whose
# keys are {ephemeral: true}, still loads its keyring. It wrote a temporary
# key file before, which a disk-backed /tmp could keep in freed blocks.
check "ephemeral key: nothing written, /tmp read-only" 0 "demo.yaml: ok" -- \
  unshare -rm sh -c 'mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp &&
    ! touch /tmp/veil-ro-probe 2>/dev/null && exec "$0" lint "$1"' \
  "$VEIL" "$root/config/pipelines/demo.yaml"

for k in k1 k2 new.key; do no_key_bytes "no bytes of $k in any output" "$tmp/$k"; done
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]

#!/usr/bin/env bash
# `veil consent decode` and `veil plugins consent` through the real CLI:
# JSON with the TCF field names and exit 0 for a valid string; exit 2 with
# a message (never echoing the string) for an invalid one or bad usage.
set -uo pipefail
VEIL=${VEIL:?}
fails=0 passes=0
ok() { passes=$((passes + 1)); echo "ok $1"; }
bad() { fails=$((fails + 1)); echo "FAIL $1"; }

# V1 of tests/conformance/tcf-vectors.txt (iabtcf-java TCStringV2Test).
V1=COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA
out=$("$VEIL" consent decode "$V1" 2>&1); rc=$?
if [ $rc -eq 0 ] && jq -e '.version == 2 and .cmpId == 675 and .consentLanguage == "EN"
    and .vendorListVersion == 15 and .tcfPolicyVersion == 2
    and (.purposeConsents | type == "array") and .publisherCountryCode == "AA"
    and (.created | test("^2020-"))' <<<"$out" >/dev/null; then
  ok "decode V1 prints the TCF fields as JSON"
else bad "decode V1: rc=$rc $out"; fi

# A string with all four segments: the optional ones are present.
V2=COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA.IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg=
out=$("$VEIL" consent decode "$V2" 2>&1); rc=$?
if [ $rc -eq 0 ] && jq -e '(.disclosedVendors | length) == 8 and (.allowedVendors | length) == 6
    and (.vendorConsents == [23,37,47,48,53,65,98])' <<<"$out" >/dev/null; then
  ok "decode V2 with disclosed, allowed and publisher segments"
else bad "decode V2: rc=$rc $out"; fi

# Publisher restrictions print as ranges: 300 restrictions each naming
# vendors 1..65535 in one range entry (53 bits each, a 2 KB string) were
# listed id by id, 118 MB of JSON (a 36 KB string made 1.5 GB).
# (built without a subshell per field or byte: forks made this test take
# a minute on a loaded machine)
b=
bits() { local v=$1 n=$2 i; for ((i = n - 1; i >= 0; i--)); do b+=$(((v >> i) & 1)); done; }
bits 2 6; bits 15000000000 36; bits 15000000000 36; bits 7 12; bits 1 12; bits 1 6
bits 4 6; bits 13 6; bits 100 12; bits 4 6; b+=00; bits 0 12; bits 0 24; bits 0 24; b+=0
bits 5 6; bits 17 6; bits 0 17; bits 0 17; bits 300 12
for ((r = 0; r < 300; r++)); do bits $((r % 24 + 1)) 6; bits $((r % 3)) 2; bits 1 12; b+=1; bits 1 16; bits 65535 16; done
while ((${#b} % 8)); do b+=0; done
fmt=
for ((i = 0; i < ${#b}; i += 8)); do printf -v o '\\%03o' $((2#${b:i:8})); fmt+=$o; done
big=$(printf "$fmt" | base64 -w0 | tr '+/' '-_' | tr -d '=')
out=$("$VEIL" consent decode "$big" 2>&1 | head -c 200000); rc=$?
if [ $rc -eq 0 ] && [ ${#out} -lt 100000 ] && jq -e '(.publisherRestrictions | length) == 300
    and all(.publisherRestrictions[]; .vendorRanges == [[1,65535]])
    and .publisherRestrictions[1] == {"purposeId":2,"restrictionType":1,"vendorRanges":[[1,65535]]}' <<<"$out" >/dev/null; then
  ok "decode prints a restriction's vendors as ranges (${#big} chars in, ${#out} bytes out)"
else bad "decode big restrictions: rc=$rc, ${#out} bytes: ${out:0:300}"; fi

secret='CO!tybn4PA_my_secret_looking_text'
out=$("$VEIL" consent decode "$secret" 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "not a valid TC string" <<<"$out" && ! grep -qF "my_secret" <<<"$out"; then
  ok "an invalid string exits 2 with a message that does not echo it"
else bad "invalid string: rc=$rc $out"; fi

out=$("$VEIL" consent decode "CA==" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "truncated\|bit" <<<"$out" && ok "a truncated string exits 2" || bad "truncated: rc=$rc $out"

out=$("$VEIL" consent decode 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "usage: veil consent decode" <<<"$out" && ok "no argument: usage, exit 2" || bad "usage: rc=$rc"

out=$("$VEIL" consent decode --help 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "TC_STRING" <<<"$out" && ok "--help exits 0" || bad "help: rc=$rc"

out=$("$VEIL" plugins consent 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -qE "side inputs: consent" <<<"$out" && grep -qE "outputs: audit access" <<<"$out" \
   && grep -qE "personalization +list +default \[5, 6\]" <<<"$out" && grep -q "veil consent decode TC_STRING" <<<"$out" \
   && grep -qE "tc_max_age_days +int +default 395 +a TC string whose lastUpdated" <<<"$out" \
   && grep -qE "vendor_id +int +default 0 +our IAB vendor id: .*0: we are the publisher, and a TC string grants through its publisher TC segment alone" <<<"$out"; then
  ok "veil plugins consent documents inputs, outputs, parameters and the command"
else bad "plugins consent: rc=$rc $out"; fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]

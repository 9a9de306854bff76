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

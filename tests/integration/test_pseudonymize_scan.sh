#!/usr/bin/env bash
# No raw identifier downstream of pseudonymize, on the real broker: the
# bundled events, given the context a web front end sends (IPv4 and IPv6
# addresses, real user agents, coordinates), run through the consent-less
# chain pseudonymize → passthrough → popular (tests/pipelines/flow.yaml);
# then every output topic, read back raw by kcat (keys, values, headers),
# and the host's own log at debug level are scanned for every raw user id,
# session id and IP address of the input: none may appear. The decoded
# events must show the generalized forms.
#
# No garbage is fed: the dead-letter topic holds a rejected record's
# original bytes by design (an operator's topic), so with clean input it
# stays empty — and is scanned all the same.
#
# User and session ids get a prefix ("cust", "sess-") so that a scan for
# them cannot hit an item id or a number in a log line by accident.
source "$(dirname "$0")/lib.sh"

export VEIL_INPUT="pz-in-$SUFFIX" VEIL_OUTPUT="pz-out-$SUFFIX" \
  VEIL_RECS="pz-recs-$SUFFIX" VEIL_DLQ="pz-dlq-$SUFFIX" VEIL_GROUP="pz-$SUFFIX"
N=3000
awk -F, -v OFS=, '
BEGIN {
  ua[0] = "\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\""
  ua[1] = "\"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1\""
  ua[2] = "\"Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36\""
  ua[3] = "\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:120.0) Gecko/20100101 Firefox/120.0\""
}
NR == 1 { print "ts,user_id,item,qty,invoice,country,ip,user_agent,lat,lon"; next }
NR > n + 1 { exit }
{
  r = NR - 1; u = $2 + 0
  # A host octet of 1..254: a raw address is never its own /24 network.
  if (r % 4 == 0)
    ip = sprintf("2001:db8:%x:%x::%x", u % 65536, r % 65536, 1 + r % 65535)
  else
    ip = sprintf("10.%d.%d.%d", u % 250, r % 250, 1 + (u * 7 + r) % 254)
  printf "%s,cust%s,%s,%s,sess-%s,%s,%s,%s,%.6f,%.6f\n", $1, $2, $3, $4, $5, $6,
    ip, ua[r % 4], 51.4 + (r % 1000) / 5000, -0.3 + (u % 1000) / 2500
}' n=$N "$ROOT/config/demo/events.csv" >"$WORK/events.csv"
[ "$(tail -n +2 "$WORK/events.csv" | wc -l)" -eq $N ] || fail "input size"

# What must never come out: every raw user id, session id and IP.
python3 - "$WORK/events.csv" >"$WORK/raw" <<'EOF'
import csv, sys
seen = set()
for row in csv.DictReader(open(sys.argv[1], newline="")):
    for k in ("user_id", "invoice", "ip"):
        seen.add(row[k])
print("\n".join(sorted(seen)))
EOF
n_raw=$(wc -l <"$WORK/raw")
[ "$n_raw" -gt $N ] || fail "only $n_raw raw values to look for"

produce "$VEIL_INPUT" "$WORK/events.csv"
KAFKA_BOOTSTRAP="$BROKER" "$VEIL" run "$ROOT/tests/pipelines/flow.yaml" --log-level debug \
  2>"$WORK/veil.log" &
VEIL_PID=$!
VEIL_PIDS+=("$VEIL_PID")
wait_count "$VEIL_RECS" $N 60 || { tail -20 "$WORK/veil.log"; fail "recommendations"; }
wait_count "$VEIL_OUTPUT" $N 30 || fail "events"
stop_veil 20
ok "$N events through pseudonymize → passthrough → popular"

# Every output topic, raw: key, value and headers of every record.
: >"$WORK/topics.raw"
for t in "$VEIL_OUTPUT" "$VEIL_RECS" "$VEIL_DLQ"; do
  kcat -b "$BROKER" -C -t "$t" -o beginning -e -q -f '%k\t%s\t%h\n' \
    >>"$WORK/topics.raw" 2>/dev/null || true
done
[ "$(wc -l <"$WORK/topics.raw")" -ge $((2 * N)) ] || fail "read back too little from the output topics"
[ "$(count "$VEIL_DLQ")" -eq 0 ] || fail "dead letters from clean input"
# -w: "10.1.2.3" must not match inside "10.1.2.30", nor cust1234 in cust12345.
if grep -aFwf "$WORK/raw" "$WORK/topics.raw" >"$WORK/leaks"; then
  head -3 "$WORK/leaks" | cut -c1-200
  fail "$(wc -l <"$WORK/leaks") output records hold a raw id or IP"
fi
ok "no raw user id, session id or IP in any of the 3 output topics ($n_raw values looked for)"
grep -q '"level":"debug"\|"level":"info"' "$WORK/veil.log" || fail "the host logged nothing to scan"
if grep -aFwf "$WORK/raw" "$WORK/veil.log" >"$WORK/leaks"; then
  head -3 "$WORK/leaks" | cut -c1-200
  fail "the host's log holds a raw id or IP"
fi
ok "none in the host's log either ($(wc -l <"$WORK/veil.log") lines at debug level)"
grep -qaF "Mozilla/5.0" "$WORK/topics.raw" && fail "a raw user agent in the outputs"

# What did come out is the generalized form.
consume "$VEIL_OUTPUT" "$SCHEMA" >"$WORK/out.json"
[ "$(wc -l <"$WORK/out.json")" -eq $N ] || fail "events output count"
jq -e -s '
  def pseudo: type == "string" and test("^eph\\.[A-Za-z0-9_-]{22}$");
  def s: if type == "object" then .string else . end;  # Avro JSON unions
  all(.[]; (.key | pseudo) and (.value.user_id | pseudo) and .key == .value.user_id
    and (.value.context.session_id | s | pseudo)
    and (.value.context.ip | s | test("^10\\.[0-9]+\\.[0-9]+\\.0$|^2001:db8:[0-9a-f]+::$"))
    and (.value.context.geohash | s | test("^[0-9b-hjkmnp-z]{5}$"))
    and .value.context.lat == null and .value.context.lon == null
    and .value.context.country == null
    and (.value.context.user_agent | s | test("^(Chrome 120 / Windows / desktop|Safari 17 / iOS / mobile|Samsung Internet 23 / Android / mobile|Firefox 120 / macOS / desktop)$")))' \
  "$WORK/out.json" >/dev/null || { head -2 "$WORK/out.json"; fail "an event not generalized as the defaults say"; }
# One event checked against its input: the /24 of its address.
line=$(sed -n '18p' "$WORK/events.csv")
ip17=$(python3 -c 'import csv,sys; print(next(csv.reader([sys.argv[1]]))[6])' "$line")
want=$(python3 -c 'import ipaddress,sys; a=ipaddress.ip_address(sys.argv[1]); print(ipaddress.ip_network(f"{a}/{24 if a.version==4 else 40}", strict=False).network_address)' "$ip17")
jq -e -s --arg w "$want" 'map(select(.value.event_id=="e17")) | length==1 and .[0].value.context.ip.string==$w' \
  "$WORK/out.json" >/dev/null || fail "e17's address should be $want"
ok "events carry pseudonyms, /24 and /40 networks, 5-character geohashes, reduced user agents"
grep -q '"level":"error"' "$WORK/veil.log" && fail "errors in the log"
echo "PASS test_pseudonymize_scan"

#!/usr/bin/env bash
# A secured cluster through kafka.settings alone: a broker of its own with a
# SASL_SSL listener (SCRAM-SHA-512, certificates made here by openssl), kcat
# and veil both on it. Events come out the other end; a wrong password, a
# wrong CA, and a wrong password seen while opening a side input each end veil
# within 30 s with exit 1 and a message that names the cause, and no
# password, right or wrong, appears in anything veil prints.
source "$(dirname "$0")/lib.sh"

KAFKA_SH="$ROOT/deploy/local/kafka/kafka.sh"
# Ports apart from the shared fixture's broker (19092/19093), which may be
# running: this test needs a listener that one does not have.
base=${VEIL_SASL_TEST_PORT:-19800}
export VEIL_KAFKA_PORT=$base VEIL_KAFKA_CONTROLLER_PORT=$((base + 1)) \
  VEIL_KAFKA_SASL_PORT=$((base + 2)) VEIL_KAFKA_DATA="$WORK/kafka"
stop_broker() {
  "$KAFKA_SH" stop >/dev/null 2>&1 || true
  cleanup
}
trap stop_broker EXIT

rand() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
SECRET="pw-$(rand)" WRONG="pw-$(rand)" VSECRET="pw-$(rand)"

# A CA, the broker's certificate signed by it for 127.0.0.1 and localhost
# (subjectAltName: librdkafka checks the host name by default), and an
# unrelated CA that must not be trusted.
T="$WORK/tls"
mkdir -p "$T"
newkey() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "$@" 2>/dev/null; }
newkey -x509 -days 2 -subj "/CN=veil test CA" -keyout "$T/ca.key" -out "$T/ca.pem" &&
  newkey -x509 -days 2 -subj "/CN=veil other CA" -keyout "$T/other.key" -out "$T/other-ca.pem" &&
  newkey -subj "/CN=localhost" -keyout "$T/broker.key" -out "$T/broker.csr" &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$T/ext" &&
  openssl x509 -req -in "$T/broker.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
    -CAcreateserial -days 2 -extfile "$T/ext" -out "$T/broker.pem" 2>/dev/null ||
  fail "openssl could not make the certificates"
KS_PASS="ks-$(rand)" TS_PASS="ts-$(rand)"
openssl pkcs12 -export -in "$T/broker.pem" -inkey "$T/broker.key" -certfile "$T/ca.pem" \
  -name broker -out "$T/broker.p12" -passout "pass:$KS_PASS" ||
  fail "openssl could not make the PKCS12 keystore"
keytool -importcert -noprompt -alias ca -file "$T/ca.pem" -storetype PKCS12 \
  -keystore "$T/trust.p12" -storepass "$TS_PASS" >/dev/null 2>&1 ||
  fail "keytool could not make the PKCS12 truststore"
ok "CA, broker certificate for 127.0.0.1, PKCS12 keystore and truststore"

export VEIL_KAFKA_SSL_KEYSTORE="$T/broker.p12" VEIL_KAFKA_SSL_KEYSTORE_PASSWORD="$KS_PASS" \
  VEIL_KAFKA_SSL_TRUSTSTORE="$T/trust.p12" VEIL_KAFKA_SSL_TRUSTSTORE_PASSWORD="$TS_PASS" \
  VEIL_KAFKA_SCRAM_USERS="alice:$SECRET veil:$VSECRET" VEIL_KAFKA_SUPER_USERS=alice
"$KAFKA_SH" start >"$WORK/kafka-start.out" 2>&1 && "$KAFKA_SH" wait-ready 120 >/dev/null ||
  { cat "$WORK/kafka-start.out" >&2; fail "the SASL_SSL broker did not start"; }

BROKER="127.0.0.1:$VEIL_KAFKA_SASL_PORT"
KCAT_OPTS=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512
  -X sasl.username=alice -X "sasl.password=$SECRET" -X "ssl.ca.location=$T/ca.pem")
kcat -b "$BROKER" "${KCAT_OPTS[@]}" -L -m 15 2>"$WORK/kcat-l.err" |
  grep -qF "at 127.0.0.1:$VEIL_KAFKA_SASL_PORT" ||
  { cat "$WORK/kcat-l.err" >&2; fail "kcat cannot read metadata over SASL_SSL"; }
ok "broker ready: kcat authenticated over SASL_SSL on $BROKER"

# 1. The flow, secured: kcat produces, veil reads and writes, kcat reads.
export VEIL_INPUT="sasl-in-$SUFFIX" VEIL_OUTPUT="sasl-out-$SUFFIX" \
  VEIL_RECS="sasl-recs-$SUFFIX" VEIL_DLQ="sasl-dlq-$SUFFIX" VEIL_GROUP="sasl-$SUFFIX" \
  VEIL_CONSENT="sasl-consent-$SUFFIX" KAFKA_USERNAME=alice KAFKA_PASSWORD="$SECRET" \
  KAFKA_CA="$T/ca.pem"
N=400
head -n $((N + 1)) "$ROOT/config/demo/events.csv" >"$WORK/events.csv"
produce "$VEIL_INPUT" "$WORK/events.csv" 200   # 2 garbage records
start_veil "$ROOT/tests/pipelines/sasl.yaml" "$WORK/veil.log"
wait_count "$VEIL_RECS" $N 45 || { tail -20 "$WORK/veil.log"; fail "recommendations over SASL_SSL"; }
wait_count "$VEIL_DLQ" 2 20 || fail "dead letters over SASL_SSL"
stop_veil 20
consume "$VEIL_OUTPUT" "$SCHEMA" >"$WORK/out.json"
n_out=$(jq -r '.value.event_id' "$WORK/out.json" | sort -u | wc -l)
[ "$n_out" -eq $N ] || fail "events output has $n_out distinct events, want $N"
[ "$(wc -l <"$WORK/out.json")" -eq $N ] || fail "events output has duplicates"
grep -q '"level":"error"' "$WORK/veil.log" && { grep '"level":"error"' "$WORK/veil.log" | head -5; fail "errors in the log"; }
ok "$N events and $N recommendations through SASL_SSL/SCRAM-SHA-512, 2 dead letters, clean stop"

# Runs veil in the foreground on PIPELINE with the environment given; fails
# unless it exits 1 within 30 s. Output in $WORK/NAME.{out,err}.
must_fail() {
  local name=$1 pipeline=$2 t0=$SECONDS rc=0
  shift 2
  env "$@" KAFKA_BOOTSTRAP="$BROKER" timeout -s KILL 60 "$VEIL" run \
    "$ROOT/tests/pipelines/$pipeline" --log-level info \
    >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  local took=$((SECONDS - t0))
  [ "$rc" -ne 137 ] || fail "$name: veil still running after 60 s (a hang, not an error)"
  [ "$rc" -eq 1 ] || { tail -5 "$WORK/$name.err" >&2; fail "$name: veil exited $rc, want 1"; }
  [ "$took" -le 30 ] || fail "$name: veil took $took s to give up, want <= 30"
  # Exit 1 is also what a sanitizer build exits with on a leak or an error.
  ! grep -q 'Sanitizer' "$WORK/$name.err" ||
    { grep -A3 'Sanitizer' "$WORK/$name.err" | head -8 >&2; fail "$name: a sanitizer report"; }
  echo "$took"
}

# The message is the last line: what the operator sees first.
last_error() { grep '"level":"error"' "$WORK/$1.err" | tail -n 1; }

# 2. A wrong password: no hang, the reason, the setting to check.
took=$(must_fail badpw sasl.yaml KAFKA_PASSWORD="$WRONG" VEIL_GROUP="sasl-badpw-$SUFFIX")
last_error badpw | grep -q 'Kafka authentication failed: .*invalid credentials.*check kafka.settings sasl.username/sasl.password' ||
  { tail -3 "$WORK/badpw.err" >&2; fail "wrong password: the error does not name the authentication failure"; }
ok "wrong password: exit 1 after $took s, 'Kafka authentication failed ... check kafka.settings sasl.username/sasl.password'"

# The same while the side input (the consent ledger) is being opened.
took=$(must_fail badpw-side sasl_side.yaml KAFKA_PASSWORD="$WRONG" VEIL_GROUP="sasl-side-$SUFFIX")
last_error badpw-side | grep -q "side input 'consent': Kafka authentication failed: " ||
  { tail -3 "$WORK/badpw-side.err" >&2; fail "wrong password, side input: the error does not name the authentication failure"; }
ok "wrong password with a side input: exit 1 after $took s, before any event is read"

# 3. TLS is verified: the right password but a CA that did not sign the
# broker's certificate fails (before the password is ever sent).
took=$(must_fail badca sasl.yaml KAFKA_CA="$T/other-ca.pem" VEIL_GROUP="sasl-badca-$SUFFIX")
last_error badca | grep -q 'Kafka TLS handshake failed: .*certificate verify failed.*check kafka.settings ssl.ca.location' ||
  { tail -3 "$WORK/badca.err" >&2; fail "wrong CA: the error does not name the certificate check"; }
ok "untrusted CA: exit 1 after $took s, 'Kafka TLS handshake failed ... certificate verify failed'"

# 4. Least privilege: the broker authorizes (alice, the harness, may do
# anything). User veil holds only the ACLs the README lists ("Who may read
# and write each topic"), on topics created beforehand, and runs the
# production pipeline's shape under exactly-once: consent and model
# updates read; recommendations, audit, access, model updates, dead letters
# and checkpoints written.
RECTOOL=${RECTOOL:-$(dirname "$AVROTOOL")/rectool}
PLAIN="127.0.0.1:$VEIL_KAFKA_PORT"  # the loopback listener: the operator's
export VEIL_INPUT="acl-in-$SUFFIX" VEIL_CONSENT="acl-consent-$SUFFIX" \
  VEIL_UPDATES="acl-updates-$SUFFIX" VEIL_RECS="acl-recs-$SUFFIX" \
  VEIL_AUDIT="acl-audit-$SUFFIX" VEIL_ACCESS="acl-access-$SUFFIX" \
  VEIL_DLQ="acl-dlq-$SUFFIX" VEIL_STATE="acl-state-$SUFFIX" \
  VEIL_GROUP="acl-$SUFFIX" VEIL_ACCOUNTANT="$WORK/acl.acc" \
  VEIL_KEYFILE="$WORK/acl.key"
"$VEIL" pseudonymize keygen "$VEIL_KEYFILE" >/dev/null || fail "keygen"
for t in "$VEIL_INPUT" "$VEIL_UPDATES" "$VEIL_RECS" "$VEIL_AUDIT" "$VEIL_ACCESS" "$VEIL_DLQ"; do
  "$RECTOOL" create-topic "$PLAIN" "$t" 3 || fail "create-topic $t"
done
"$RECTOOL" create-topic "$PLAIN" "$VEIL_CONSENT" 3 cleanup.policy=compact || fail "create-topic consent"
"$RECTOOL" create-topic "$PLAIN" "$VEIL_STATE" 1 cleanup.policy=compact max.message.bytes=1048576 ||
  fail "create-topic state"
acl() {
  "$KAFKA_SH" acls --add --allow-principal User:veil "$@" >>"$WORK/acls.out" 2>&1 ||
    { tail -20 "$WORK/acls.out" >&2; fail "kafka.sh acls $*"; }
}
acl --operation Read --operation Describe --topic "$VEIL_INPUT" \
  --topic "$VEIL_CONSENT" --topic "$VEIL_UPDATES" --topic "$VEIL_STATE"
acl --operation Write --operation Describe --topic "$VEIL_RECS" --topic "$VEIL_AUDIT" \
  --topic "$VEIL_ACCESS" --topic "$VEIL_UPDATES" --topic "$VEIL_DLQ" --topic "$VEIL_STATE"
acl --operation DescribeConfigs --topic "$VEIL_STATE"
acl --operation Read --group "$VEIL_GROUP" --resource-pattern-type prefixed
acl --operation Write --operation Describe --transactional-id "$VEIL_GROUP-" \
  --resource-pattern-type prefixed
ok "topics created; user veil holds the README's ACLs"
# Consent (the consent platform's records: here alice's) for every person
# of the events, and an access request for the first.
N=200
head -n $((N + 1)) "$ROOT/config/demo/events.csv" >"$WORK/acl-events.csv"
T0=1291191960000
{ echo "user_id,kind,purposes.personalization,purposes.training,purposes.analytics,tc_string,gpc,source,ts,_key,_tombstone"
  awk -F, 'NR > 1 && !s[$2]++ {print $2}' "$WORK/acl-events.csv" |
    while read -r u; do echo "$u,consent,true,true,true,,,app,$T0,,"; done
  u1=$(awk -F, 'NR == 2 {print $2}' "$WORK/acl-events.csv")
  echo "$u1,access,,,,,,support_desk,$T0,access-$u1,"; } >"$WORK/acl-consent.csv"
"$RECTOOL" encode "$ROOT/schemas/consent.avsc" "$WORK/acl-consent.csv" >"$WORK/acl-consent.bin" ||
  fail "rectool encode consent"
kcat -b "$BROKER" "${KCAT_OPTS[@]}" -P -Z -t "$VEIL_CONSENT" -K "$KDELIM" -D "$MDELIM" \
  <"$WORK/acl-consent.bin" 2>"$WORK/kcat.err" || { cat "$WORK/kcat.err" >&2; fail "kcat consent"; }
produce "$VEIL_INPUT" "$WORK/acl-events.csv" 100   # 2 garbage records
KAFKA_USERNAME=veil KAFKA_PASSWORD="$VSECRET" start_veil "$ROOT/tests/pipelines/acl.yaml" "$WORK/acl.log"
wait_count "$VEIL_RECS" $N 60 || { tail -20 "$WORK/acl.log"; fail "recommendations as user veil"; }
wait_count "$VEIL_DLQ" 2 20 || fail "dead letters as user veil"
wait_count "$VEIL_ACCESS" 1 20 || fail "the access answer as user veil"
wait_count "$VEIL_STATE" 1 20 || fail "a checkpoint as user veil"
stop_veil 30
for t in "$VEIL_AUDIT" "$VEIL_UPDATES"; do
  [ "$(count "$t")" -gt 0 ] || fail "nothing on $t as user veil"
done
# librdkafka's own FAIL lines are a connection it retries (a handshake cut
# as a coordinator's connection closes, seen under ASan); anything else at
# error level is not.
grep '"level":"error"' "$WORK/acl.log" | grep -v '"message":"librdkafka FAIL: ' >"$WORK/acl-errors" || true
[ -s "$WORK/acl-errors" ] && { head -5 "$WORK/acl-errors"; fail "errors in the log"; }
grep -qi 'authoriz' "$WORK/acl.log" && { grep -i 'authoriz' "$WORK/acl.log" | head -5; fail "an authorization message"; }
ok "user veil, with the README's ACLs alone: $N recommendations, dead letters, the access answer, audit records, model updates and checkpoints; no error"
# An ACL missing is fatal, with the ACL to grant: the consumer used to log
# the refusal once and wait, unready, for good.
V=(KAFKA_USERNAME=veil "KAFKA_PASSWORD=$VSECRET")
took=$(must_fail noacl-group sasl_side.yaml "${V[@]}" VEIL_GROUP="other-$SUFFIX")
last_error noacl-group | grep -q "Kafka authorization failed: .*Group authorization failed.*grant veil's principal Read on the consumer group 'other-$SUFFIX'" ||
  { tail -3 "$WORK/noacl-group.err" >&2; fail "no group ACL: the error does not name the ACL"; }
ok "no ACL for the group: exit 1 after $took s, naming the group ACL"
took=$(must_fail noacl-topic sasl_side.yaml "${V[@]}" VEIL_GROUP="$VEIL_GROUP-t" VEIL_INPUT="other-in-$SUFFIX")
last_error noacl-topic | grep -q "Kafka authorization failed: .*Topic authorization failed.*grant veil's principal Read and Describe on the topics it reads" ||
  { tail -3 "$WORK/noacl-topic.err" >&2; fail "no topic ACL: the error does not name the ACL"; }
ok "no ACL for the input topic: exit 1 after $took s, naming the topic ACLs"
took=$(must_fail noacl-write sasl_side.yaml "${V[@]}" VEIL_GROUP="$VEIL_GROUP-w" VEIL_RECS="other-recs-$SUFFIX")
last_error noacl-write | grep -q "other-recs-$SUFFIX.*Topic authorization failed.*grant veil's principal Write and Describe on it" ||
  { tail -3 "$WORK/noacl-write.err" >&2; fail "no write ACL for an output: the error does not name the ACL"; }
ok "no ACL to write an output: exit 1 after $took s, naming the topic"
took=$(must_fail noacl-txn acl.yaml "${V[@]}" VEIL_GROUP="other-$SUFFIX")
last_error noacl-txn | grep -q "Transactional Id authorization failed.*grant veil's principal Write and Describe on the transactional ids that begin with 'other-$SUFFIX-'" ||
  { tail -3 "$WORK/noacl-txn.err" >&2; fail "no transactional id ACL: the error does not name the ACL"; }
ok "no ACL for the transactional id: exit 1 after $took s, naming it"

# 5. No password in anything veil printed, right or wrong.
for f in veil.log badpw.out badpw.err badpw-side.out badpw-side.err badca.out badca.err acl.log \
  noacl-group.err noacl-topic.err noacl-write.err noacl-txn.err; do
  grep -qF -e "$SECRET" -e "$WRONG" -e "$VSECRET" "$WORK/$f" && fail "a password in veil's $f"
done
ok "no password in veil's logs or output"
echo "PASS test_sasl"

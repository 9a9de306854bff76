#!/usr/bin/env bash
# kafka_smoke.sh — proves the local broker from deploy/local/kafka works with
# the librdkafka the project builds against: kcat (same librdkafka) creates a
# topic by producing to it, writes 100 keyed messages, reads them back from
# the beginning, and also through a consumer group (group coordinator and
# offsets topic). Uses a broker already answering on VEIL_KAFKA_PORT if there
# is one, and then leaves it running; otherwise starts one and stops it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kafka="$root/deploy/local/kafka/kafka.sh"
port="${VEIL_KAFKA_PORT:-19092}"
broker="127.0.0.1:$port"
n=100
started=0
work=$(mktemp -d)

fail() { echo "kafka_smoke: FAIL: $*" >&2; exit 1; }

cleanup() {
        local rc=$?
        if [ "$started" = 1 ]; then
                "$kafka" stop >/dev/null || rc=1
        fi
        rm -rf "$work"
        exit "$rc"
}
trap cleanup EXIT

command -v kcat >/dev/null || fail "kcat not found (Debian: apt-get install kcat)"

# kafka.sh status covers a broker started a moment ago that does not
# answer yet; kcat covers one started some other way.
if "$kafka" status >/dev/null ||
   kcat -L -b "$broker" -m 2 2>/dev/null | grep -qF "at $broker"; then
        echo "kafka_smoke: using the broker already running on $broker"
else
        "$kafka" start || fail "could not start the broker on $broker"
        started=1
fi
"$kafka" wait-ready 60 || fail "broker on $broker did not become ready in 60s"

# A new topic per run, so a reused broker's old data cannot make this pass.
topic="veil-smoke-$$-$(date +%s%N)"

seq 1 "$n" | awk '{ printf "key-%03d:value-%03d-%s\n", $1, $1, "payload" }' >"$work/sent"

# Producing to a topic that does not exist creates it (auto.create.topics).
timeout 60 kcat -P -b "$broker" -t "$topic" -K: -X message.timeout.ms=30000 <"$work/sent" ||
        fail "kcat could not produce $n messages to $topic on $broker"

parts=$(kcat -L -b "$broker" -t "$topic" -m 5 | grep -c "^    partition " || true)
[ "$parts" = 3 ] || fail "topic $topic has $parts partitions, expected 3 (num.partitions)"

check() {
        local what=$1 file=$2 got
        got=$(wc -l <"$file")
        [ "$got" -eq "$n" ] || fail "$what: read $got messages from $topic, expected $n"
        # Three partitions interleave, so compare as sets of key:value lines.
        sort "$work/sent" >"$work/sent.sorted"
        sort "$file" >"$file.sorted"
        cmp -s "$work/sent.sorted" "$file.sorted" || {
                diff "$work/sent.sorted" "$file.sorted" | head -n 10 >&2
                fail "$what: messages read back differ from those produced"
        }
        echo "kafka_smoke: $what: $got/$n messages match"
}

timeout 60 kcat -C -b "$broker" -t "$topic" -o beginning -e -q -f '%k:%s\n' >"$work/read" ||
        fail "kcat could not consume $topic from $broker"
check "plain consumer" "$work/read"

timeout 60 kcat -b "$broker" -G "$topic-group" -o beginning -e -q -f '%k:%s\n' "$topic" >"$work/group" ||
        fail "kcat consumer group could not consume $topic from $broker"
check "consumer group" "$work/group"

echo "kafka_smoke: PASS"

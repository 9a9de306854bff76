#!/usr/bin/env bash
# kafka.sh — the real Apache Kafka broker (KRaft, one node, loopback) that
# veil's integration tests talk to. No tarball, no Docker: the broker's jars
# come from Maven Central through pom.xml beside this script and java runs
# them directly.
#
#   kafka.sh fetch                 copy the broker's runtime jars into the cache,
#                                  checked against jars.sha256 beside this script
#   kafka.sh sums                  print the sha256 lines of a fresh copy of the
#                                  jars (to write jars.sha256 after a version bump)
#   kafka.sh start                 fresh data dir, format, start in the background
#   kafka.sh wait-ready [secs]     until kcat -L sees the broker (default 60)
#   kafka.sh stop                  SIGTERM, wait, SIGKILL after a timeout
#   kafka.sh status                exit 0 if running, 3 if not
#   kafka.sh env                   print the settings in force
#   kafka.sh acls ARGS...          kafka.admin.AclCommand on the loopback
#                                  listener (ACLs of an authorizing broker)
#
# Environment:
#   VEIL_KAFKA_HOME             jar cache root        (~/.cache/veil-kafka)
#   VEIL_KAFKA_PORT             PLAINTEXT client port (19092)
#   VEIL_KAFKA_CONTROLLER_PORT  KRaft controller port (client port + 1: 19093)
#   VEIL_KAFKA_DATA             data dir              (/tmp/veil-kafka-<port>)
#   VEIL_KAFKA_JAVA             java binary           (java)
#   VEIL_KAFKA_JVM_OPTS         extra JVM options, appended
#   VEIL_KAFKA_STOP_TIMEOUT     seconds before SIGKILL on stop (30)
#
# A secured client listener, off unless VEIL_KAFKA_SASL_PORT is set: SASL_SSL
# with SCRAM-SHA-512 beside the PLAINTEXT one (which the broker, the
# controller and wait-ready keep using, on loopback):
#   VEIL_KAFKA_SASL_PORT                  SASL_SSL client port
#   VEIL_KAFKA_SSL_KEYSTORE               PKCS12 file: the broker's key and
#                                         certificate (required with the port)
#   VEIL_KAFKA_SSL_KEYSTORE_PASSWORD      its password (required)
#   VEIL_KAFKA_SSL_TRUSTSTORE             PKCS12 truststore (optional; only
#   VEIL_KAFKA_SSL_TRUSTSTORE_PASSWORD    used to check client certificates)
#   VEIL_KAFKA_SCRAM_USERS                'name:password ...' (whitespace
#                                         separated; letters, digits, . _ -)
#                                         written into the fresh cluster at
#                                         format time (StorageTool --add-scram)
#   VEIL_KAFKA_SUPER_USERS                'name ...': with it set, the broker
#                                         authorizes (StandardAuthorizer):
#                                         these SCRAM users and the loopback
#                                         PLAINTEXT listener may do anything,
#                                         every other user only what ACLs
#                                         allow (`kafka.sh acls ...`)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom="$here/pom.xml"
# The jars the pom resolves to, by name and SHA-256: what Maven fetched is
# compared with what was committed, not only with checksums from the same
# server as the jars.
sums="$here/jars.sha256"

# The pom is the one place the version is pinned; the cache dir is named
# after it so two versions can sit side by side.
version=$(sed -n 's|.*<kafka.version>\([^<]*\)</kafka.version>.*|\1|p' "$pom" | head -n1)
[ -n "$version" ] || { echo "kafka.sh: no <kafka.version> in $pom" >&2; exit 2; }

home="${VEIL_KAFKA_HOME:-$HOME/.cache/veil-kafka}/$version"
libs="$home/libs"
stamp="$libs/.veil-fetch-complete"
port="${VEIL_KAFKA_PORT:-19092}"
# Default next to the client port, so setting only VEIL_KAFKA_PORT is
# enough to run a second broker beside the first.
cport="${VEIL_KAFKA_CONTROLLER_PORT:-$((10#${port//[!0-9]/0} + 1))}"
data="${VEIL_KAFKA_DATA:-/tmp/veil-kafka-$port}"
java="${VEIL_KAFKA_JAVA:-java}"
stop_timeout="${VEIL_KAFKA_STOP_TIMEOUT:-30}"
sasl_port="${VEIL_KAFKA_SASL_PORT:-}"
pidfile="$data/kafka.pid"
logfile="$data/kafka.log"
marker="$data/.veil-kafka"

die() { echo "kafka.sh: $*" >&2; exit 1; }

check_port() {
        case "$1" in
        ''|0*|*[!0-9]*) die "$2='$1' is not a port number (1-65535)";;
        esac
        if [ "${#1}" -gt 5 ] || [ "$((10#$1))" -lt 1 ] || [ "$((10#$1))" -gt 65535 ]; then
                die "$2='$1' is not a port number (1-65535)"
        fi
}

pom_sum() { sha256sum "$pom" | cut -d' ' -f1; }

# jars_ok DIR: DIR holds exactly the jars that jars.sha256 names (the
# broker's classpath is DIR/*: one more would be loaded too), each with its
# hash; what differs is told on stderr.
jars_ok() {
        [ -s "$sums" ] || { echo "kafka.sh: $sums is missing or empty: run '$0 sums >$sums', check the hashes, commit" >&2; return 1; }
        local want have
        want=$(sed -E 's/^[0-9a-f]{64} [ *]//' "$sums" | sort)
        have=$(cd "$1" && shopt -s nullglob && printf '%s\n' *.jar | sort)
        if [ "$want" != "$have" ]; then
                echo "kafka.sh: the jars in $1 are not those of $sums (< listed only, > present only):" >&2
                diff <(echo "$want") <(echo "$have") | grep '^[<>]' >&2
                return 1
        fi
        (cd "$1" && sha256sum --quiet --strict -c "$sums" >&2)
}

# The stamp (the pom's hash) and the jars themselves, each time: a cache
# changed after the fetch is not used.
fetched() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(pom_sum)" ] && jars_ok "$libs" 2>/dev/null; }

# copy_jars DIR: the pom's runtime jars into DIR, from ~/.m2 if they are
# there (no network), else from Maven Central. -C: a jar whose checksum
# does not match the repository's fails (Maven 3.8 only warns by default,
# and -q would hide the warning).
copy_jars() {
        command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven)"
        local mlog="$home/fetch.log"
        local args=(-B -q -C -f "$pom" dependency:copy-dependencies
                    -DincludeScope=runtime -DoutputDirectory="$1")
        mkdir -p "$home"
        if ! mvn -o "${args[@]}" >"$mlog" 2>&1; then
                echo "kafka $version: fetching jars from Maven Central..." >&2
                if ! mvn "${args[@]}" >"$mlog" 2>&1; then
                        tail -n 30 "$mlog" >&2
                        rm -rf "$1"
                        die "could not fetch kafka $version jars (Maven log: $mlog)"
                fi
        fi
        [ -f "$1/kafka_2.13-$version.jar" ] ||
                die "Maven finished but $1 has no kafka_2.13-$version.jar (log: $mlog)"
}

cmd_sums() {
        local tmp
        tmp=$(mktemp -d)
        copy_jars "$tmp"
        (cd "$tmp" && sha256sum -- *.jar)
        rm -rf "$tmp"
}

cmd_fetch() {
        # The stamp (the pom's hash) is written last, after the jars are
        # checked and an atomic rename, so an interrupted fetch is never
        # mistaken for a complete one, and a warm fetch needs neither Maven
        # nor the network.
        if fetched; then
                echo "kafka $version: jars already in $libs"
                return 0
        fi
        mkdir -p "$home"
        exec 9>"$home/.lock"
        flock 9
        if fetched; then
                echo "kafka $version: jars already in $libs"
                return 0
        fi
        local tmp="$home/libs.tmp.$$"
        rm -rf "$tmp"
        copy_jars "$tmp"
        if ! jars_ok "$tmp"; then
                rm -rf "$tmp"
                die "kafka $version: the jars Maven gave (from ~/.m2 or Maven Central) do not match $sums: not used. After a version change, write the new list with '$0 sums'."
        fi
        rm -rf "$libs"
        mv "$tmp" "$libs"
        pom_sum >"$stamp"
        local jars=("$libs"/*.jar)
        echo "kafka $version: ${#jars[@]} jars in $libs"
}

# pid of our broker if it is running, else nothing. The command line is
# checked too, so a stale pid file whose pid was reused by something else
# is never taken for the broker (and never killed).
broker_pid() {
        [ -f "$pidfile" ] || return 0
        local pid
        pid=$(cat "$pidfile" 2>/dev/null) || return 0
        case "$pid" in ''|*[!0-9]*) return 0;; esac
        [ -r "/proc/$pid/cmdline" ] || return 0
        if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$data/server.properties"; then
                echo "$pid"
        fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
        # Single node, loopback only, tuned to start fast and stay small:
        # replication factors of 1, few partitions for the internal topics
        # (offsets default 50, which makes the first group join slow), no
        # initial rebalance delay, a small cleaner buffer (default 128 MiB
        # would eat a quarter of the heap). Compaction stays on: veil keeps
        # consent and checkpoints in compacted topics.
        cat >"$data/server.properties" <<EOF
# generated by deploy/local/kafka/kafka.sh start — edits are lost on restart
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport${sasl_port:+,SASL_SSL://127.0.0.1:$sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:$port${sasl_port:+,SASL_SSL://127.0.0.1:$sasl_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${sasl_port:+,SASL_SSL:SASL_SSL}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/log-dirs

auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=67108864
log.retention.hours=168
EOF
        cat >"$data/log4j.properties" <<EOF
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=INFO
EOF
        [ -z "$sasl_port" ] || write_sasl_config
}

# The SASL_SSL listener. SCRAM needs a JAAS entry per listener even with no
# options (the credentials live in the cluster metadata, not here).
write_sasl_config() {
        chmod 600 "$data/server.properties"
        cat >>"$data/server.properties" <<EOF

sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$VEIL_KAFKA_SSL_KEYSTORE
ssl.keystore.password=$VEIL_KAFKA_SSL_KEYSTORE_PASSWORD
ssl.key.password=$VEIL_KAFKA_SSL_KEYSTORE_PASSWORD
EOF
        if [ -n "${VEIL_KAFKA_SUPER_USERS:-}" ]; then
                # The loopback PLAINTEXT and controller listeners are
                # ANONYMOUS: the broker, the controller, wait-ready and
                # `kafka.sh acls` keep every right there.
                local supers="User:ANONYMOUS" u
                for u in $VEIL_KAFKA_SUPER_USERS; do supers="$supers;User:$u"; done
                cat >>"$data/server.properties" <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=$supers
EOF
        fi
        [ -n "${VEIL_KAFKA_SSL_TRUSTSTORE:-}" ] || return 0
        cat >>"$data/server.properties" <<EOF
ssl.truststore.type=PKCS12
ssl.truststore.location=$VEIL_KAFKA_SSL_TRUSTSTORE
ssl.truststore.password=$VEIL_KAFKA_SSL_TRUSTSTORE_PASSWORD
EOF
}

# Checks the SASL_SSL settings and fills the array scram_args with the
# StorageTool options that add the users. Values go into a properties file
# and a StorageTool argument unescaped, hence the narrow character sets.
check_sasl() {
        scram_args=()
        [ -n "$sasl_port" ] || return 0
        check_port "$sasl_port" VEIL_KAFKA_SASL_PORT
        if [ "$sasl_port" = "$port" ] || [ "$sasl_port" = "$cport" ]; then
                die "VEIL_KAFKA_SASL_PORT=$sasl_port is also the client or controller port: it must differ from both"
        fi
        local v pw
        for v in VEIL_KAFKA_SSL_KEYSTORE VEIL_KAFKA_SSL_TRUSTSTORE; do
                [ -n "${!v:-}" ] || continue
                case "${!v}" in /*) ;; *) die "$v='${!v}' must be an absolute path";; esac
                [ -r "${!v}" ] || die "$v='${!v}' is not a readable file"
                pw="${v}_PASSWORD"
                case "${!pw:-}" in
                '') die "$v is set but $pw is empty: give the PKCS12 file's password";;
                *[!A-Za-z0-9._-]*) die "$pw may hold only letters, digits, '.', '_' and '-'";;
                esac
        done
        [ -n "${VEIL_KAFKA_SSL_KEYSTORE:-}" ] ||
                die "VEIL_KAFKA_SASL_PORT is set but VEIL_KAFKA_SSL_KEYSTORE is not: a PKCS12 file with the broker's key and certificate"
        local u name
        for u in ${VEIL_KAFKA_SCRAM_USERS:-}; do
                name=${u%%:*}
                pw=${u#*:}
                case "$u" in *:*) ;; *) pw=;; esac
                case "$name" in ''|*[!A-Za-z0-9._-]*) die "VEIL_KAFKA_SCRAM_USERS: user name '$name' must be letters, digits, '.', '_' or '-' (entries are name:password)";; esac
                case "$pw" in ''|*[!A-Za-z0-9._-]*) die "VEIL_KAFKA_SCRAM_USERS: the password of '$name' must be non-empty letters, digits, '.', '_' or '-'";; esac
                scram_args+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$pw]")
        done
        [ ${#scram_args[@]} -gt 0 ] ||
                die "VEIL_KAFKA_SASL_PORT is set but VEIL_KAFKA_SCRAM_USERS is empty: give at least one name:password"
        for u in ${VEIL_KAFKA_SUPER_USERS:-}; do
                case "$u" in *[!A-Za-z0-9._-]*) die "VEIL_KAFKA_SUPER_USERS: user name '$u' must be letters, digits, '.', '_' or '-'";; esac
        done
}

# A KRaft cluster id is 16 random bytes in URL-safe base64 without padding;
# one in 64 starts with '-', so it is passed as --cluster-id=ID, never as a
# separate argument the option parser would take for an option. Making it
# here saves one JVM start (StorageTool random-uuid).
cluster_id() { head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

cmd_start() {
        check_port "$port" VEIL_KAFKA_PORT
        check_port "$cport" VEIL_KAFKA_CONTROLLER_PORT
        [ "$port" != "$cport" ] || die "VEIL_KAFKA_PORT and VEIL_KAFKA_CONTROLLER_PORT are both $port: they must differ"
        local scram_args
        check_sasl
        local pid
        pid=$(broker_pid)
        if [ -n "$pid" ]; then
                echo "kafka $version already running (pid $pid) on 127.0.0.1:$port, data $data"
                return 0
        fi
        command -v "$java" >/dev/null || die "java not found ('$java'): install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)"
        for p in "$port" "$cport" $sasl_port; do
                port_in_use "$p" && die "127.0.0.1:$p is already in use by another process: stop it or set VEIL_KAFKA_PORT / VEIL_KAFKA_CONTROLLER_PORT"
        done
        cmd_fetch >/dev/null

        # Every start is a fresh cluster. Only a dir this script made (it
        # holds the marker) or an empty one is wiped, so a mistyped
        # VEIL_KAFKA_DATA cannot delete anything else.
        if [ -e "$data" ]; then
                [ -d "$data" ] || die "VEIL_KAFKA_DATA=$data exists and is not a directory"
                if [ -f "$marker" ]; then
                        rm -rf "$data"
                elif [ -n "$(ls -A "$data")" ]; then
                        die "VEIL_KAFKA_DATA=$data is not empty and was not made by kafka.sh: refusing to wipe it; use an empty or new directory"
                fi
        fi
        mkdir -p "$data"
        : >"$marker"
        write_config

        local cp="$libs/*"
        if ! "$java" -Xmx256m -cp "$cp" \
                -Dlog4j.configuration="file:$data/log4j.properties" \
                kafka.tools.StorageTool format --cluster-id="$(cluster_id)" \
                -c "$data/server.properties" ${scram_args[@]+"${scram_args[@]}"} \
                >"$data/format.log" 2>&1; then
                cat "$data/format.log" >&2
                die "formatting KRaft storage in $data/log-dirs failed"
        fi

        # setsid: the broker outlives the shell (and the process group) that
        # started it; the tests stop it explicitly.
        # shellcheck disable=SC2086
        setsid "$java" -Xms128m -Xmx512m -XX:+UseSerialGC \
                -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
                -Dlog4j.configuration="file:$data/log4j.properties" \
                -Dkafka.logs.dir="$data" \
                ${VEIL_KAFKA_JVM_OPTS:-} \
                -cp "$cp" kafka.Kafka "$data/server.properties" \
                </dev/null >"$logfile" 2>&1 &
        pid=$!
        echo "$pid" >"$pidfile"
        sleep 0.2
        if [ -z "$(broker_pid)" ]; then
                tail -n 30 "$logfile" >&2
                die "broker exited at once (log: $logfile)"
        fi
        echo "kafka $version started (pid $pid) on 127.0.0.1:$port, controller 127.0.0.1:$cport, data $data, log $logfile"
}

kcat_sees_broker() {
        kcat -L -b "127.0.0.1:$port" -m 2 2>/dev/null |
                grep -qF "at 127.0.0.1:$port"
}

cmd_wait_ready() {
        local timeout="${1:-60}"
        case "$timeout" in ''|*[!0-9]*) die "wait-ready: timeout '$timeout' is not a whole number of seconds";; esac
        command -v kcat >/dev/null || die "kcat not found (Debian: apt-get install kcat)"
        local deadline=$((SECONDS + timeout))
        while :; do
                if kcat_sees_broker; then
                        echo "kafka ready on 127.0.0.1:$port"
                        return 0
                fi
                # A broker that died will never answer: say so now rather
                # than at the deadline.
                if [ -f "$pidfile" ] && [ -z "$(broker_pid)" ]; then
                        echo "kafka.sh: broker process exited; last log lines ($logfile):" >&2
                        tail -n 40 "$logfile" >&2 2>/dev/null || true
                        return 1
                fi
                if [ "$SECONDS" -ge "$deadline" ]; then
                        if [ ! -f "$pidfile" ]; then
                                # Any log there is from an earlier run: showing it would mislead.
                                echo "kafka.sh: nothing answers on 127.0.0.1:$port after ${timeout}s and kafka.sh started no broker there (no $pidfile): run kafka.sh start first" >&2
                                return 1
                        fi
                        echo "kafka.sh: broker on 127.0.0.1:$port not ready after ${timeout}s; last log lines ($logfile):" >&2
                        tail -n 40 "$logfile" >&2 2>/dev/null || true
                        return 1
                fi
                sleep 0.5
        done
}

cmd_stop() {
        local pid
        pid=$(broker_pid)
        if [ -z "$pid" ]; then
                rm -f "$pidfile"
                echo "kafka on 127.0.0.1:$port not running"
                return 0
        fi
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + stop_timeout))
        while [ -d "/proc/$pid" ] && [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.2
        done
        if [ -d "/proc/$pid" ]; then
                echo "kafka.sh: broker (pid $pid) still up after ${stop_timeout}s: SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                while [ -d "/proc/$pid" ]; do sleep 0.1; done
        fi
        rm -f "$pidfile"
        echo "kafka stopped (pid $pid)"
}

cmd_status() {
        local pid
        pid=$(broker_pid)
        if [ -z "$pid" ]; then
                echo "kafka $version not running (port $port, data $data)"
                return 3
        fi
        local answers=no
        command -v kcat >/dev/null && kcat_sees_broker && answers=yes
        echo "kafka $version running (pid $pid) on 127.0.0.1:$port, answers metadata: $answers, data $data"
}

# kafka.admin.AclCommand on the loopback PLAINTEXT listener (a super user
# when the broker authorizes): `kafka.sh acls --add --allow-principal
# User:veil --operation Read --topic in`.
cmd_acls() {
        [ -n "$(broker_pid)" ] || die "acls: no broker of kafka.sh runs on 127.0.0.1:$port: run kafka.sh start first"
        "$java" -Xmx256m -cp "$libs/*" \
                -Dlog4j.configuration="file:$data/log4j.properties" \
                kafka.admin.AclCommand --bootstrap-server "127.0.0.1:$port" "$@"
}

cmd_env() {
        cat <<EOF
version=$version
libs=$libs
fetched=$(fetched && echo yes || echo no)
port=$port
controller_port=$cport
sasl_port=${sasl_port:-none}
data=$data
pidfile=$pidfile
logfile=$logfile
EOF
}

case "${1:-}" in
fetch)          cmd_fetch;;
sums)           cmd_sums;;
start)          cmd_start;;
wait-ready)     cmd_wait_ready "${2:-60}";;
stop)           cmd_stop;;
status)         cmd_status;;
env)            cmd_env;;
acls)           shift; cmd_acls "$@";;
*)              echo "usage: $0 fetch|sums|start|wait-ready [timeout_s]|stop|status|env|acls ARGS..." >&2; exit 2;;
esac

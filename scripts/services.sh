#!/usr/bin/env bash
# Real brokers for ferry's tests, without Docker, on the loopback interface.
#
#   bash scripts/services.sh up                 install what is missing, start what is stopped
#   bash scripts/services.sh down               stop what up started
#   bash scripts/services.sh status             print the state; exit 1 if any service is down
#   bash scripts/services.sh restart SERVICE    stop and start one (kafka|rabbitmq|postgres)
#   bash scripts/services.sh start|stop SERVICE one service
#   bash scripts/services.sh up kafka-cluster   the 3-broker Kafka cluster (on demand)
#   bash scripts/services.sh kill kafka-cluster-N   SIGKILL one cluster broker (1-3)
#
# Services (addresses are the defaults of internal/testenv):
#   kafka     Kafka 4.x KRaft, broker+controller in one JVM, jars from Maven
#             Central (scripts/kafka/pom.xml). 127.0.0.1:9092 (controller 9093);
#             SASL_SSL (SCRAM-SHA-512, user ferry / ferry-scram-secret) on
#             127.0.0.1:9094
#   kafka-cluster  on demand: brokers 1-3 on 127.0.0.1:29091-29093 and a
#             controller-only node on 127.0.0.1:29190 (see its section)
#   rabbitmq  Debian's rabbitmq-server, node rabbit@localhost, guest/guest on
#             127.0.0.1:5672; AMQPS (TLS) on 127.0.0.1:5671
#   rabbitmq-cluster  on demand: nodes ferry1-3@localhost on 127.0.0.1:5701-5703
#             (scripts/rabbitmq-cluster.sh; `up|down|status rabbitmq-cluster`,
#             `start|stop|kill rabbitmq-cluster-N`)
#   TLS       a throwaway CA and a server certificate for 127.0.0.1/localhost,
#             made once with openssl in ~/.cache/ferry/tls (ca.pem: the CA
#             clients must trust)
#   postgres  Debian's postgresql cluster "main", 127.0.0.1:5432, role and
#             database ferry (password ferry)
#
# `up` is idempotent: a running service is left alone. Kafka's jars and data
# live under ${XDG_CACHE_HOME:-~/.cache}/ferry and are reused. Any failure
# prints the service's log tail and exits non-zero. When `up` starts a
# stopped Kafka or RabbitMQ, it first drops the test data that earlier runs
# left (every suite makes topics and durable queues of its own, and with
# thousands of them a broker restart takes minutes); `restart` keeps the
# data. FERRY_KEEP_DATA=1 keeps it on `up` too.
#
# Settings (environment): FERRY_SERVICES (default "kafka rabbitmq postgres")
# picks the services `up`, `down` and `status` act on; FERRY_KAFKA_HEAP
# (default 1g); FERRY_SERVICE_TIMEOUT seconds to wait for readiness
# (default 90).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ferry"
TIMEOUT="${FERRY_SERVICE_TIMEOUT:-90}"
SERVICES="${FERRY_SERVICES:-kafka rabbitmq postgres}"

KAFKA_POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_PID="$KAFKA_HOME/kafka.pid"
KAFKA_LOG="$KAFKA_HOME/logs/server.log"
KAFKA_OUT="$KAFKA_HOME/logs/stdout.log"
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
# SASL_SSL listener (SCRAM-SHA-512, certificate from tls_ensure) beside the
# plaintext one; the user is created at format time (--add-scram) and, for
# a data directory formatted before, by internal/testenv over PLAINTEXT.
KAFKA_SASL_PORT=9094
SCRAM_USER=ferry
SCRAM_PASSWORD=ferry-scram-secret
TLS_DIR="$CACHE/tls"
# Any 16 bytes, base64url without padding: "ferry-test-kafka".
KAFKA_CLUSTER_ID="ZmVycnktdGVzdC1rYWZrYQ"

RABBIT_PORT=5672
RABBIT_TLS_PORT=5671
RABBIT_TLS_DIR=/etc/rabbitmq/ferry-tls
RABBIT_NODE="rabbit@localhost"
RABBIT_LOG_DIR=/var/log/rabbitmq
PG_PORT=5432
MARK="# Written by ferry scripts/services.sh"

# ---------------------------------------------------------------- helpers

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
log() { printf '%s\n' "services: $*"; }
warn() { printf '%s\n' "services: $*" >&2; }

# die MESSAGE [LOGFILE...]: print the message and the tail of each log, exit 1.
die() {
	local msg="$1"
	shift
	warn "ERROR: $msg"
	local f
	for f in "$@"; do
		if [[ -s "$f" ]]; then
			warn "----- last 40 lines of $f -----"
			tail -n 40 "$f" >&2 || true
			warn "----- end of $f -----"
		fi
	done
	exit 1
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
	command -v sudo >/dev/null || die "not root and no sudo: installing and starting rabbitmq/postgres needs root"
	SUDO="sudo"
fi

# as_user USER CMD...: run a command as a system user.
as_user() {
	local u="$1"
	shift
	if [[ "$(id -un)" == "$u" ]]; then
		"$@"
	elif [[ "$(id -u)" == 0 ]]; then
		runuser -u "$u" -- "$@"
	else
		sudo -u "$u" -- "$@"
	fi
}

APT_UPDATED=""
# apt_install PKG...: install Debian packages without starting their services
# (a temporary policy-rc.d forbids it), retrying once.
apt_install() {
	local t0 policy=/usr/sbin/policy-rc.d made_policy="" aptlog="$CACHE/apt.log"
	t0="$(now)"
	mkdir -p "$CACHE"
	log "installing $* (apt-get; log in $aptlog)"
	if [[ ! -e "$policy" ]]; then
		printf '#!/bin/sh\n# ferry services.sh: do not start services while installing\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		made_policy=1
	fi
	local try ok=""
	for try in 1 2; do
		if [[ -z "$APT_UPDATED" || "$try" == 2 ]]; then
			$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=180 update -q >>"$aptlog" 2>&1 || true
			APT_UPDATED=1
		fi
		if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=180 \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >>"$aptlog" 2>&1; then
			ok=1
			break
		fi
		warn "apt-get install $* failed (try $try)"
		sleep 3
	done
	[[ -n "$made_policy" ]] && $SUDO rm -f "$policy"
	[[ -n "$ok" ]] || die "could not install $*" "$aptlog"
	log "installed $* in $(since "$t0")"
}

# -------------------------------------------------------------------- tls

# tls_ensure: a throwaway CA and a server certificate for 127.0.0.1 and
# localhost in $TLS_DIR (ca.pem, server.pem, server.key, and server.p12 for
# Kafka, password "ferry-test"), made once with openssl and reused.
tls_ensure() {
	[[ -s "$TLS_DIR/server.p12" && -s "$TLS_DIR/ca.pem" ]] && return 0
	command -v openssl >/dev/null || apt_install openssl
	local tmp="$TLS_DIR.tmp" t0 tlslog="$CACHE/tls.log"
	t0="$(now)"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	{
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ferry test CA" \
			-keyout "$tmp/ca.key" -out "$tmp/ca.pem" &&
			openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
				-keyout "$tmp/server.key" -out "$tmp/server.csr" &&
			printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$tmp/ext.cnf" &&
			openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
				-days 3650 -extfile "$tmp/ext.cnf" -out "$tmp/server.pem" &&
			openssl pkcs12 -export -in "$tmp/server.pem" -inkey "$tmp/server.key" -name kafka \
				-passout pass:ferry-test -out "$tmp/server.p12"
	} >"$tlslog" 2>&1 || die "tls: openssl could not make the test CA and certificate" "$tlslog"
	chmod 644 "$tmp"/*.pem "$tmp/server.key"
	rm -rf "$TLS_DIR"
	mv "$tmp" "$TLS_DIR"
	log "tls: test CA and server certificate made in $TLS_DIR in $(since "$t0")"
}

# ------------------------------------------------------------------ kafka

kafka_pid() {
	[[ -f "$KAFKA_PID" ]] || return 1
	local pid
	pid="$(cat "$KAFKA_PID")"
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q 'kafka\.Kafka'; then
		echo "$pid"
		return 0
	fi
	rm -f "$KAFKA_PID"
	return 1
}

WAITKAFKA=""
kafka_probe() {
	if [[ -z "$WAITKAFKA" ]]; then
		# Built once and reused while its source, franz-go and Go stay the same.
		WAITKAFKA="$CACHE/bin/waitkafka"
		local stamp
		stamp="$({ cat "$ROOT/internal/testenv/cmd/waitkafka/main.go"; grep franz-go "$ROOT/go.sum"; go version; } | sha256sum | cut -d' ' -f1)"
		if [[ ! -x "$WAITKAFKA" || "$(cat "$WAITKAFKA.stamp" 2>/dev/null || true)" != "$stamp" ]]; then
			mkdir -p "$CACHE/bin"
			(cd "$ROOT" && go build -o "$WAITKAFKA.tmp" ./internal/testenv/cmd/waitkafka) ||
				die "could not build internal/testenv/cmd/waitkafka"
			mv "$WAITKAFKA.tmp" "$WAITKAFKA"
			echo "$stamp" >"$WAITKAFKA.stamp"
		fi
	fi
	# KAFKA_PROBE_FLAGS=-controller: a controller-only cluster node.
	"$WAITKAFKA" -q -brokers "127.0.0.1:$KAFKA_PORT" ${KAFKA_PROBE_FLAGS:+"$KAFKA_PROBE_FLAGS"} -timeout "${1:-3s}" 2>/dev/null
}

kafka_fetch() {
	local sum
	sum="$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"
	if [[ -f "$KAFKA_LIBS/.pom.sha256" && "$(cat "$KAFKA_LIBS/.pom.sha256")" == "$sum" ]]; then
		return 0
	fi
	command -v java >/dev/null || apt_install openjdk-17-jre-headless
	command -v mvn >/dev/null || apt_install maven
	local t0 tmp="$KAFKA_HOME/libs.tmp" mvnlog="$KAFKA_HOME/logs/mvn.log"
	mkdir -p "$KAFKA_HOME/logs"
	t0="$(now)"
	log "kafka: fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
	rm -rf "$tmp"
	mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory="$tmp" >"$mvnlog" 2>&1 || die "kafka: mvn dependency:copy-dependencies failed" "$mvnlog"
	ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka: no kafka_2.13 jar after mvn" "$mvnlog"
	echo "$sum" >"$tmp/.pom.sha256"
	rm -rf "$KAFKA_LIBS"
	mv "$tmp" "$KAFKA_LIBS"
	log "kafka: $(ls "$KAFKA_LIBS"/*.jar | wc -l) jars fetched in $(since "$t0")"
}

kafka_config() {
	mkdir -p "$KAFKA_HOME/config" "$KAFKA_HOME/logs" "$KAFKA_DATA"
	cat >"$KAFKA_HOME/config/server.properties" <<EOF
$MARK; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
# SASL_SSL: SCRAM-SHA-512 users (no authorizer: any authenticated user may
# do anything), the test CA's certificate for 127.0.0.1/localhost.
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/server.p12
ssl.keystore.password=ferry-test
ssl.key.password=ferry-test
ssl.client.auth=none
log.dirs=$KAFKA_DATA
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Share groups (KIP-932; share.version is enabled by the 4.4 format): the
# broker's 5 s minimum heartbeat makes each new member wait about 5 s for
# work, and its 15 s minimum lock keeps crash tests slow; allow less, per
# group (share.heartbeat.interval.ms, share.record.lock.duration.ms).
group.share.min.heartbeat.interval.ms=200
group.share.heartbeat.interval.ms=500
group.share.assignment.interval.ms=100
group.share.min.record.lock.duration.ms=1000
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=67108864
EOF
	cat >"$KAFKA_HOME/config/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- $MARK -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="$KAFKA_LOG" filePattern="$KAFKA_LOG.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
EOF
}

KAFKA_T0=""
# kafka_start: start the broker in the background (readiness: kafka_wait).
kafka_start() {
	KAFKA_T0="$(now)"
	if kafka_pid >/dev/null; then
		log "kafka: already running (pid $(cat "$KAFKA_PID"))"
		return 0
	fi
	if port_open "$KAFKA_PORT"; then
		if kafka_probe 5s; then
			log "kafka: something else already serves 127.0.0.1:$KAFKA_PORT; using it"
			return 0
		fi
		die "kafka: 127.0.0.1:$KAFKA_PORT is taken by a process that is not a Kafka broker"
	fi
	# (No controller port of its own: a broker-only cluster node.)
	if [[ -n "$KAFKA_CONTROLLER_PORT" ]] && port_open "$KAFKA_CONTROLLER_PORT"; then
		die "kafka: controller port 127.0.0.1:$KAFKA_CONTROLLER_PORT is taken"
	fi
	if [[ -n "$KAFKA_SASL_PORT" ]]; then
		port_open "$KAFKA_SASL_PORT" && die "kafka: SASL_SSL port 127.0.0.1:$KAFKA_SASL_PORT is taken"
		tls_ensure
	fi
	kafka_fetch
	"${KAFKA_CONFIG_FN:-kafka_config}"
	local cp="$KAFKA_LIBS/*"
	# shellcheck disable=SC2206 # KAFKA_JVM_EXTRA: words on purpose
	local jvm=("-Xms${KAFKA_XMS:-256m}" "-Xmx${FERRY_KAFKA_HEAP:-1g}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 ${KAFKA_JVM_EXTRA:-}
		-Djava.awt.headless=true -Djava.net.preferIPv4Stack=true
		"-Dlog4j2.configurationFile=$KAFKA_HOME/config/log4j2.xml"
		"-Dkafka.logs.dir=$KAFKA_HOME/logs")
	if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
		log "kafka: formatting storage in $KAFKA_DATA"
		local fmt=(--standalone --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]")
		# A cluster node: its voters are static (controller.quorum.voters).
		[[ -n "${KAFKA_CLUSTER_NODE:-}" ]] && fmt=()
		java "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" \
			-c "$KAFKA_HOME/config/server.properties" "${fmt[@]}" >"$KAFKA_HOME/logs/format.log" 2>&1 ||
			die "kafka: storage format failed" "$KAFKA_HOME/logs/format.log"
	fi
	log "kafka: starting Kafka $KAFKA_VERSION (KRaft, 127.0.0.1:$KAFKA_PORT; log $KAFKA_LOG)"
	: >"$KAFKA_OUT"
	# setsid: own session, so the broker outlives this shell and a Ctrl-C of
	# the caller; the inner shell writes its own pid, then becomes java.
	# shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID" \
		nohup java "${jvm[@]}" -cp "$cp" kafka.Kafka "$KAFKA_HOME/config/server.properties" \
		>>"$KAFKA_OUT" 2>&1 </dev/null 9>&- &
	for _ in $(seq 50); do [[ -s "$KAFKA_PID" ]] && break; sleep 0.1; done
}

kafka_wait() {
	local deadline=$((SECONDS + TIMEOUT)) pid
	pid="$(cat "$KAFKA_PID" 2>/dev/null || true)"
	while :; do
		if kafka_probe 3s; then
			log "kafka: ready on 127.0.0.1:$KAFKA_PORT in $(since "$KAFKA_T0")"
			return 0
		fi
		if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$KAFKA_PID"
			die "kafka: broker process $pid exited during startup" "$KAFKA_OUT" "$KAFKA_LOG"
		fi
		if ((SECONDS >= deadline)); then
			die "kafka: not ready on 127.0.0.1:$KAFKA_PORT after ${TIMEOUT}s (pid $pid still running; stop it with: bash scripts/services.sh stop kafka)" "$KAFKA_OUT" "$KAFKA_LOG"
		fi
		sleep 0.5
	done
}

kafka_stop() {
	local pid t0
	t0="$(now)"
	if ! pid="$(kafka_pid)"; then
		log "kafka: not running (no live pid in $KAFKA_PID)"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "kafka: pid $pid ignored SIGTERM for 60s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -f "$KAFKA_PID"
	log "kafka: stopped (pid $pid) in $(since "$t0")"
}

kafka_status() {
	local pid
	if pid="$(kafka_pid)"; then
		if kafka_probe 3s; then
			log "kafka: up, pid $pid, 127.0.0.1:$KAFKA_PORT (Kafka $KAFKA_VERSION)"
			return 0
		fi
		log "kafka: pid $pid running but not answering on 127.0.0.1:$KAFKA_PORT"
		return 1
	fi
	if port_open "$KAFKA_PORT" && kafka_probe 3s; then
		log "kafka: up on 127.0.0.1:$KAFKA_PORT (not started by this script)"
		return 0
	fi
	log "kafka: down"
	return 1
}

# ---------------------------------------------------------- kafka-cluster

# On demand (`up kafka-cluster`, not in the default FERRY_SERVICES): a KRaft
# cluster of four JVMs on 127.0.0.1, each with its data in
# $CACHE/kafka-cluster/<node>/data:
#   controller  controller only, node id 10, 127.0.0.1:29190 (the whole
#               quorum; FERRY_KAFKA_CONTROLLER_HEAP, default 128m)
#   node1-3     brokers only, node ids 1-3, 127.0.0.1:29091-29093
#               (FERRY_KAFKA_CLUSTER_HEAP, default 384m)
# The controller is not on a broker, so the quorum survives broker kills:
# with two of three brokers down it fences them (broker session 4 s; each
# leader also drops a follower 5 s behind, replica.lag.time.max.ms) and
# shrinks the ISR, so acks=all produce fails with NOT_ENOUGH_REPLICAS
# instead of timing out. Topics default to 3 partitions, RF 3 and
# min.insync.replicas 2. `stop|start|kill kafka-cluster-N` acts on broker N
# (1-3; kill: SIGKILL, no clean shutdown); starting a broker starts the
# controller first if it is down, and `down kafka-cluster` stops it last.
# Data formatted for another layout (the first version had three combined
# broker+controller nodes, voters 29191-29193) is found by the marker file
# $CACHE/kafka-cluster/layout and reformatted.
CLUSTER_DIR="$CACHE/kafka-cluster"
CLUSTER_NODES="1 2 3"
CLUSTER_CONTROLLER_ID=10
CLUSTER_CONTROLLER_PORT=29190
CLUSTER_VOTERS="$CLUSTER_CONTROLLER_ID@127.0.0.1:$CLUSTER_CONTROLLER_PORT"
CLUSTER_LAYOUT="2: controller-only node $CLUSTER_VOTERS; broker-only nodes 1-3 on 127.0.0.1:29091-29093"

# cluster_env N|controller: point the kafka_* functions at cluster broker N
# or at the controller (call in a subshell).
cluster_env() {
	KAFKA_CLUSTER_NODE="$1"
	if [[ "$1" == controller ]]; then
		KAFKA_HOME="$CLUSTER_DIR/controller"
		KAFKA_PORT=$CLUSTER_CONTROLLER_PORT
		KAFKA_PROBE_FLAGS=-controller
		FERRY_KAFKA_HEAP="${FERRY_KAFKA_CONTROLLER_HEAP:-128m}"
		KAFKA_XMS=64m
		# C1 only: less code cache and compiler threads for a small JVM.
		KAFKA_JVM_EXTRA="-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=64m"
	else
		KAFKA_HOME="$CLUSTER_DIR/node$1"
		KAFKA_PORT=$((29090 + $1))
		KAFKA_PROBE_FLAGS=""
		FERRY_KAFKA_HEAP="${FERRY_KAFKA_CLUSTER_HEAP:-384m}"
	fi
	KAFKA_DATA="$KAFKA_HOME/data"
	KAFKA_PID="$KAFKA_HOME/kafka.pid"
	KAFKA_LOG="$KAFKA_HOME/logs/server.log"
	KAFKA_OUT="$KAFKA_HOME/logs/stdout.log"
	KAFKA_CONTROLLER_PORT="" # checked as KAFKA_PORT on the controller
	KAFKA_SASL_PORT=""
	KAFKA_CONFIG_FN=kafka_cluster_config
	# Any 16 bytes, base64url: "ferry-test-clstr".
	KAFKA_CLUSTER_ID="ZmVycnktdGVzdC1jbHN0cg"
}

kafka_cluster_config() {
	kafka_config
	local roles
	if [[ "$KAFKA_CLUSTER_NODE" == controller ]]; then
		roles="process.roles=controller
node.id=$CLUSTER_CONTROLLER_ID
listeners=CONTROLLER://127.0.0.1:$CLUSTER_CONTROLLER_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT
# A broker that misses heartbeats this long is fenced: out of every ISR.
broker.session.timeout.ms=4000"
	else
		roles="process.roles=broker
node.id=$KAFKA_CLUSTER_NODE
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
broker.heartbeat.interval.ms=500
# A follower this far behind its leader leaves the ISR (default 30 s).
replica.lag.time.max.ms=5000"
	fi
	# The topic defaults go to the controller too: in KRaft it fills in
	# the partition count and replication factor of a CreateTopics request.
	cat >"$KAFKA_HOME/config/server.properties" <<EOC
$MARK; rewritten on every start.
$roles
controller.quorum.voters=$CLUSTER_VOTERS
controller.listener.names=CONTROLLER
log.dirs=$KAFKA_DATA
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=67108864
EOC
}

cluster_node_ok() { [[ "$1" =~ ^[123]$ ]] || die "unknown kafka-cluster node '$1' (1, 2 or 3)"; }

# cluster_layout: if the cluster's data was formatted for another layout
# (or the marker is missing), stop its nodes and remove the data, so the
# next start formats it for this one.
cluster_layout() {
	local marker="$CLUSTER_DIR/layout" n
	[[ "$(cat "$marker" 2>/dev/null || true)" == "$CLUSTER_LAYOUT" ]] && return 0
	if compgen -G "$CLUSTER_DIR/*/data" >/dev/null; then
		log "kafka-cluster: data formatted for another layout (no or another $marker); stopping its nodes and reformatting"
		for n in $CLUSTER_NODES controller; do cluster_kill "$n"; done
		rm -rf "$CLUSTER_DIR"/*/data
	fi
	mkdir -p "$CLUSTER_DIR"
	echo "$CLUSTER_LAYOUT" >"$marker"
}

# cluster_start_node N: start broker N (and the controller first if it is
# down) and wait until it answers.
cluster_start_node() {
	cluster_layout
	(cluster_env controller && kafka_start && kafka_wait)
	(cluster_env "$1" && kafka_start && kafka_wait)
}

cluster_start() {
	local n t0
	t0="$(now)"
	KAFKA_T0="$t0"
	cluster_layout
	# All JVMs first, then the waits: a broker is ready only once it has
	# registered with the controller.
	(cluster_env controller && kafka_start)
	for n in $CLUSTER_NODES; do (cluster_env "$n" && kafka_start); done
	(cluster_env controller && kafka_wait)
	for n in $CLUSTER_NODES; do (cluster_env "$n" && kafka_wait); done
	log "kafka-cluster: controller (127.0.0.1:$CLUSTER_CONTROLLER_PORT) and 3 brokers ready (127.0.0.1:29091,29092,29093) in $(since "$t0")"
}
# cluster_stop: the brokers first, at once (their controlled shutdown
# needs the controller), then the controller.
cluster_stop() {
	local n pids=()
	for n in $CLUSTER_NODES; do
		(cluster_env "$n" && kafka_stop) &
		pids+=("$!")
	done
	for n in "${pids[@]}"; do wait "$n"; done
	(cluster_env controller && kafka_stop)
}
cluster_status() {
	local n rc=0
	for n in controller $CLUSTER_NODES; do (cluster_env "$n" && kafka_status) || rc=1; done
	return "$rc"
}
# cluster_kill N|controller: SIGKILL the node and wait until it is gone.
cluster_kill() {
	(
		cluster_env "$1"
		local pid
		if ! pid="$(kafka_pid)"; then
			log "kafka-cluster-$1: not running"
			exit 0
		fi
		kill -KILL "$pid"
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
		rm -f "$KAFKA_PID"
		log "kafka-cluster-$1: killed (SIGKILL, pid $pid)"
	)
}

# --------------------------------------------------------------- rabbitmq

rabbit_ctl() { $SUDO rabbitmqctl -n "$RABBIT_NODE" "$@"; }
# rabbit_amqp: 127.0.0.1:RABBIT_PORT speaks AMQP 0-9-1 (answers the protocol
# header with a method frame, Connection.Start). Much cheaper than the CLI.
rabbit_amqp() {
	local b
	# shellcheck disable=SC2016 # $1 belongs to the inner shell
	b="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"; printf "AMQP\x00\x00\x09\x01" >&3; head -c 1 <&3 | od -An -tx1' _ "$RABBIT_PORT" 2>/dev/null || true)"
	[[ "$b" == *01* ]]
}
rabbit_ping() { $SUDO rabbitmq-diagnostics -n "$RABBIT_NODE" -q ping >/dev/null 2>&1; }
RABBIT_LOGS=("$CACHE/rabbitmq-start.log" "$RABBIT_LOG_DIR/$RABBIT_NODE.log")

rabbit_config() {
	local envf=/etc/rabbitmq/rabbitmq-env.conf conf=/etc/rabbitmq/rabbitmq.conf
	$SUDO mkdir -p /etc/rabbitmq
	# Our env file replaces a missing one or Debian's all-comments default;
	# one that someone edited is left alone.
	if [[ ! -e "$envf" ]] || grep -qF "$MARK" "$envf" || cmp -s "$envf" /usr/share/rabbitmq/rabbitmq-env.conf; then
		$SUDO tee "$envf" >/dev/null <<EOF
$MARK: a loopback-only test broker.
# Node name on localhost so that the node and the CLI tools agree whatever
# the hostname; AMQP, epmd and Erlang distribution bound to 127.0.0.1.
NODENAME=$RABBIT_NODE
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$RABBIT_PORT
ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
# Every durable queue left by earlier runs takes a file handle at boot:
# with su's soft limit of 1024 and more queues than that, recovery stalls
# ("Please increase max open file handles") and the listener never opens.
# This file is sourced by the server script as the rabbitmq user.
ulimit -n "\$(ulimit -Hn)" 2>/dev/null || true
EOF
	elif ! grep -q "^NODENAME=$RABBIT_NODE" "$envf"; then
		warn "rabbitmq: $envf was edited by someone else; expecting node $RABBIT_NODE anyway"
	fi
	if [[ ! -e "$conf" ]] || grep -qF "$MARK" "$conf"; then
		$SUDO tee "$conf" >/dev/null <<EOF
$MARK
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
# guest/guest works, from loopback only (RabbitMQ's default).
loopback_users.guest = true
# AMQPS with the test CA's certificate (scripts/services.sh tls_ensure);
# clients are not asked for a certificate.
listeners.ssl.default = 127.0.0.1:$RABBIT_TLS_PORT
ssl_options.cacertfile = $RABBIT_TLS_DIR/ca.pem
ssl_options.certfile = $RABBIT_TLS_DIR/server.pem
ssl_options.keyfile = $RABBIT_TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
	fi
	# The node runs as user rabbitmq and cannot read $TLS_DIR under $HOME.
	tls_ensure
	if ! $SUDO cmp -s "$TLS_DIR/server.pem" "$RABBIT_TLS_DIR/server.pem" 2>/dev/null; then
		$SUDO mkdir -p "$RABBIT_TLS_DIR"
		$SUDO cp "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$RABBIT_TLS_DIR/"
		$SUDO chown -R rabbitmq: "$RABBIT_TLS_DIR" 2>/dev/null || true
		$SUDO chmod 600 "$RABBIT_TLS_DIR/server.key"
	fi
}

rabbit_start() {
	local t0
	t0="$(now)"
	if rabbit_amqp; then
		log "rabbitmq: already running (127.0.0.1:$RABBIT_PORT answers AMQP)"
		return 0
	fi
	port_open "$RABBIT_PORT" && die "rabbitmq: 127.0.0.1:$RABBIT_PORT is taken by something that does not speak AMQP"
	command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
	rabbit_config
	# ERL_EPMD_ADDRESS must also be in our environment: epmd is started by
	# whichever Erlang program runs first.
	export ERL_EPMD_ADDRESS=127.0.0.1
	if rabbit_ping; then
		# The VM runs: either still booting, or its app was stopped
		# (rabbitmqctl stop_app). Give a boot 15 s, then start the app.
		if ! rabbit_ctl -q await_startup --timeout 15 >"$CACHE/rabbitmq-start.log" 2>&1; then
			log "rabbitmq: node up with the app stopped; start_app"
			rabbit_ctl -q start_app >>"$CACHE/rabbitmq-start.log" 2>&1 9>&- || true
		fi
	else
		log "rabbitmq: starting (node $RABBIT_NODE, 127.0.0.1:$RABBIT_PORT; log $RABBIT_LOG_DIR/$RABBIT_NODE.log)"
		mkdir -p "$CACHE"
		$SUDO env ERL_EPMD_ADDRESS=127.0.0.1 rabbitmq-server -detached >"$CACHE/rabbitmq-start.log" 2>&1 9>&- ||
			die "rabbitmq: rabbitmq-server -detached failed" "${RABBIT_LOGS[@]}"
	fi
	local deadline=$((SECONDS + TIMEOUT))
	# Listeners open last in RabbitMQ's boot: AMQP answering means ready.
	until rabbit_amqp; do
		((SECONDS < deadline)) || die "rabbitmq: not ready on 127.0.0.1:$RABBIT_PORT after ${TIMEOUT}s" "${RABBIT_LOGS[@]}"
		sleep 0.5
	done
	log "rabbitmq: ready on 127.0.0.1:$RABBIT_PORT in $(since "$t0")"
}

rabbit_stop() {
	local t0
	t0="$(now)"
	if ! command -v rabbitmqctl >/dev/null || { ! rabbit_amqp && ! rabbit_ping; }; then
		log "rabbitmq: not running"
		return 0
	fi
	# shutdown (unlike stop) waits until the Erlang VM has exited.
	rabbit_ctl -q shutdown >/dev/null 2>&1 || rabbit_ctl -q stop >/dev/null 2>&1 ||
		die "rabbitmq: rabbitmqctl stop failed" "${RABBIT_LOGS[@]}"
	for _ in $(seq 100); do port_open "$RABBIT_PORT" || break; sleep 0.1; done
	log "rabbitmq: stopped in $(since "$t0")"
}

rabbit_status() {
	if rabbit_amqp; then
		if command -v rabbitmqctl >/dev/null && rabbit_ping; then
			log "rabbitmq: up, node $RABBIT_NODE, 127.0.0.1:$RABBIT_PORT"
		else
			log "rabbitmq: up on 127.0.0.1:$RABBIT_PORT (not node $RABBIT_NODE of this script)"
		fi
		return 0
	fi
	log "rabbitmq: down"
	return 1
}

# rabbit_cluster ARGS...: the 3-node RabbitMQ cluster (on demand), run by
# scripts/rabbitmq-cluster.sh from the same Debian package.
rabbit_cluster() {
	[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || apt_install rabbitmq-server
	bash "$ROOT/scripts/rabbitmq-cluster.sh" "$@"
}

# --------------------------------------------------------------- postgres

PG_VER=""
pg_version() {
	[[ -n "$PG_VER" ]] && return 0
	local v
	v="$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sed 's:/usr/lib/postgresql/\([^/]*\)/.*:\1:' | sort -n | tail -1)"
	[[ -n "$v" ]] || return 1
	PG_VER="$v"
}
pg_log() { echo "/var/log/postgresql/postgresql-$PG_VER-main.log"; }
pg_ferry_ok() { PGPASSWORD=ferry PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$PG_PORT" -U ferry -d ferry -qAtc 'SELECT 1' >/dev/null 2>&1; }
pg_online() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VER" '$1 == v && $2 == "main" && $4 ~ /online/ { ok = 1 } END { exit !ok }'; }

pg_start() {
	local t0
	t0="$(now)"
	if port_open "$PG_PORT" && command -v psql >/dev/null && pg_ferry_ok; then
		log "postgres: already running (127.0.0.1:$PG_PORT, database ferry)"
		return 0
	fi
	if ! pg_version || ! command -v pg_ctlcluster >/dev/null; then
		apt_install postgresql
		pg_version || die "postgres: no server under /usr/lib/postgresql after installing"
	fi
	if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VER" '$1 == v && $2 == "main" { ok = 1 } END { exit !ok }'; then
		log "postgres: creating cluster $PG_VER/main"
		$SUDO pg_createcluster "$PG_VER" main -p "$PG_PORT" >"$CACHE/pg-create.log" 2>&1 ||
			die "postgres: pg_createcluster failed" "$CACHE/pg-create.log"
	fi
	# Loopback only, fixed port: a drop-in read after postgresql.conf
	# (Debian's postgresql.conf ends with include_dir = 'conf.d').
	local dropin="/etc/postgresql/$PG_VER/main/conf.d/ferry.conf"
	local want
	want="$(printf "%s\nlisten_addresses = '127.0.0.1'\nport = %s\n" "$MARK" "$PG_PORT")"
	if [[ "$(cat "$dropin" 2>/dev/null || true)" != "$want" ]]; then
		$SUDO mkdir -p "$(dirname "$dropin")"
		printf '%s\n' "$want" | $SUDO tee "$dropin" >/dev/null
		if pg_online; then
			log "postgres: restarting cluster $PG_VER/main to listen on 127.0.0.1:$PG_PORT only"
			$SUDO pg_ctlcluster "$PG_VER" main restart >"$CACHE/pg-start.log" 2>&1 9>&- ||
				die "postgres: pg_ctlcluster restart failed" "$CACHE/pg-start.log" "$(pg_log)"
		fi
	fi
	if ! pg_online; then
		port_open "$PG_PORT" && die "postgres: 127.0.0.1:$PG_PORT is taken by another process"
		log "postgres: starting cluster $PG_VER/main (127.0.0.1:$PG_PORT; log $(pg_log))"
		$SUDO pg_ctlcluster "$PG_VER" main start >"$CACHE/pg-start.log" 2>&1 9>&- ||
			die "postgres: pg_ctlcluster $PG_VER main start failed" "$CACHE/pg-start.log" "$(pg_log)"
	fi
	local deadline=$((SECONDS + TIMEOUT))
	until pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; do
		((SECONDS < deadline)) || die "postgres: not ready on 127.0.0.1:$PG_PORT after ${TIMEOUT}s" "$(pg_log)"
		sleep 0.3
	done
	if ! pg_ferry_ok; then
		log "postgres: creating role and database ferry"
		as_user postgres psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt >"$CACHE/pg-setup.log" 2>&1 <<'EOF' ||
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferry') THEN
    CREATE ROLE ferry LOGIN PASSWORD 'ferry';
  ELSE
    ALTER ROLE ferry LOGIN PASSWORD 'ferry';
  END IF;
END
$$;
SELECT 'CREATE DATABASE ferry OWNER ferry'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ferry')\gexec
EOF
			die "postgres: creating role/database ferry failed" "$CACHE/pg-setup.log" "$(pg_log)"
		pg_ferry_ok || die "postgres: ferry/ferry cannot log in to database ferry on 127.0.0.1:$PG_PORT" "$(pg_log)"
	fi
	log "postgres: ready on 127.0.0.1:$PG_PORT in $(since "$t0")"
}

pg_stop() {
	local t0
	t0="$(now)"
	if ! pg_version || ! pg_online; then
		log "postgres: not running"
		return 0
	fi
	$SUDO pg_ctlcluster "$PG_VER" main stop -m fast >"$CACHE/pg-stop.log" 2>&1 ||
		die "postgres: pg_ctlcluster stop failed" "$CACHE/pg-stop.log" "$(pg_log)"
	log "postgres: stopped in $(since "$t0")"
}

pg_status() {
	if pg_version && pg_online && pg_ferry_ok; then
		log "postgres: up, cluster $PG_VER/main, 127.0.0.1:$PG_PORT, database ferry"
		return 0
	fi
	if port_open "$PG_PORT"; then
		log "postgres: 127.0.0.1:$PG_PORT open but ferry/ferry cannot use database ferry"
		return 1
	fi
	log "postgres: down"
	return 1
}

# ---------------------------------------------------------------- dispatch

# lock: one services.sh at a time per machine user (tests of several packages
# may call `restart` concurrently; developers may run `up` twice). Daemons
# started under the lock get fd 9 closed so they do not hold it.
lock() {
	mkdir -p "$CACHE"
	exec 9>"$CACHE/services.lock"
	if ! flock -n 9; then
		log "waiting for another scripts/services.sh to finish"
		flock -w 600 9 || die "timed out waiting for $CACHE/services.lock"
	fi
}

check_service() {
	case "$1" in
	kafka | rabbitmq | postgres | kafka-cluster) ;;
	kafka-cluster-*) cluster_node_ok "${1#kafka-cluster-}" ;;
	rabbitmq-cluster | rabbitmq-cluster-[123]) ;;
	*) die "unknown service '$1' (kafka, rabbitmq, postgres, kafka-cluster or kafka-cluster-N, rabbitmq-cluster or rabbitmq-cluster-N)" ;;
	esac
}
has() { [[ " $SERVICES " == *" $1 "* ]]; }

start_one() {
	case "$1" in
	kafka)
		kafka_start
		kafka_wait
		;;
	rabbitmq) rabbit_start ;;
	postgres) pg_start ;;
	kafka-cluster) cluster_start ;;
	rabbitmq-cluster) rabbit_cluster up ;;
	rabbitmq-cluster-*) rabbit_cluster start "${1#rabbitmq-cluster-}" ;;
	kafka-cluster-*) cluster_start_node "${1#kafka-cluster-}" ;;
	esac
}
stop_one() {
	case "$1" in
	kafka) kafka_stop ;;
	rabbitmq) rabbit_stop ;;
	postgres) pg_stop ;;
	kafka-cluster) cluster_stop ;;
	kafka-cluster-*) (cluster_env "${1#kafka-cluster-}" && kafka_stop) ;;
	rabbitmq-cluster) rabbit_cluster down ;;
	rabbitmq-cluster-*) rabbit_cluster stop "${1#rabbitmq-cluster-}" ;;
	esac
}

# fresh_data SERVICE: drop a stopped broker's test data (see the header),
# unless FERRY_KEEP_DATA is set. Kafka formats new storage on start (with
# the SCRAM user); RabbitMQ makes a new node database (with guest).
fresh_data() {
	[[ -n "${FERRY_KEEP_DATA:-}" ]] && return 0
	local dir
	case "$1" in
	kafka) dir="$KAFKA_DATA" ;;
	rabbitmq) dir="/var/lib/rabbitmq/mnesia/$RABBIT_NODE" ;;
	esac
	if [[ -d "$dir" ]]; then
		log "$1: dropping the test data of earlier runs ($(du -sh "$dir" 2>/dev/null | cut -f1) in $dir; FERRY_KEEP_DATA=1 keeps it)"
		$SUDO rm -rf "$dir" "$dir-feature_flags"
	fi
}

cmd_up() {
	local t0 s
	t0="$(now)"
	mkdir -p "$CACHE"
	for s in $SERVICES; do check_service "$s"; done
	if has kafka && ! kafka_pid >/dev/null; then fresh_data kafka; fi
	if has rabbitmq && ! rabbit_amqp; then fresh_data rabbitmq; fi
	# Kafka's JVM boots in the background while the others start.
	# (if, not &&: set -e does not apply inside the left side of && .)
	if has kafka; then kafka_start; fi
	if has rabbitmq; then rabbit_start; fi
	if has postgres; then pg_start; fi
	if has kafka; then kafka_wait; fi
	if has kafka-cluster; then cluster_start; fi
	if has rabbitmq-cluster; then rabbit_cluster up; fi
	log "all up ($SERVICES) in $(since "$t0")"
}

cmd_down() {
	local s
	for s in $SERVICES; do check_service "$s"; done
	for s in $SERVICES; do stop_one "$s"; done
	# rabbitmq's first CLI call started epmd; stop it too when no Erlang node
	# is registered any more.
	if has rabbitmq && command -v epmd >/dev/null && epmd -names >/dev/null 2>&1; then
		for _ in $(seq 30); do
			epmd -names 2>/dev/null | grep -q '^name ' || break
			sleep 0.1
		done
		if ! epmd -names 2>/dev/null | grep -q '^name '; then
			epmd -kill >/dev/null 2>&1 || true
		fi
	fi
}

cmd_status() {
	local s rc=0
	for s in $SERVICES; do
		check_service "$s"
		case "$s" in
		kafka) kafka_status || rc=1 ;;
		rabbitmq) rabbit_status || rc=1 ;;
		postgres) pg_status || rc=1 ;;
		kafka-cluster) cluster_status || rc=1 ;;
		rabbitmq-cluster) rabbit_cluster status || rc=1 ;;
		esac
	done
	return "$rc"
}

usage() {
	sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}

case "${1:-}" in
up)
	# `up SERVICE...` (e.g. `up kafka-cluster`) instead of FERRY_SERVICES.
	if [[ $# -ge 2 ]]; then SERVICES="${*:2}"; fi
	lock
	cmd_up
	;;
down)
	if [[ $# -ge 2 ]]; then SERVICES="${*:2}"; fi
	lock
	cmd_down
	;;
kill)
	if [[ $# -eq 2 && "$2" == rabbitmq-cluster-[123] ]]; then rabbit_cluster kill "${2#rabbitmq-cluster-}" && exit 0; fi
	[[ $# -eq 2 && "$2" == kafka-cluster-* ]] || usage
	check_service "$2"
	cluster_kill "${2#kafka-cluster-}"
	;;
status)
	if [[ $# -ge 2 ]]; then SERVICES="${*:2}"; fi
	cmd_status
	;;
start | stop | restart)
	[[ $# -eq 2 ]] || usage
	check_service "$2"
	lock
	t0="$(now)"
	if [[ "$1" != start ]]; then stop_one "$2"; fi
	if [[ "$1" != stop ]]; then start_one "$2"; fi
	log "$1 $2 done in $(since "$t0")"
	;;
*) usage ;;
esac

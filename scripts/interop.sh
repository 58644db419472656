#!/usr/bin/env bash
# Other clients for ferry's interop tests (interop/), without Docker.
#
#   bash scripts/interop.sh up            install and build every client that is missing or stale
#   bash scripts/interop.sh status        print each client's state; exit 1 if one is not ready
#   bash scripts/interop.sh path CLIENT   print what runs CLIENT (see below), building it when stale;
#                                         exit 3 when something only `up` installs is missing
#
# Clients (`path` prints):
#   spring  Spring AMQP 4.1 with Jackson 2 and 3 (interop/spring-amqp/pom.xml), compiled by
#           Maven (jars from Maven Central into ~/.m2) into the cache: a java classpath
#   springkafka  Spring Kafka 4.1's DeadLetterPublishingRecoverer and a @KafkaListener on the DLT
#           (interop/spring-kafka/pom.xml), built and cached the same way: a java classpath
#   pika    Python's pika $PIKA_VERSION in a venv in the cache: the venv's python
#   kcat    Debian's kcat (librdkafka's CLI): the binary
#
# `up` is idempotent and is what `make test` runs: it installs the Debian
# packages that are missing (openjdk-17-jdk-headless and maven, python3-venv,
# kcat; root or sudo), creates the venv and compiles the Java side. `path`
# installs no system package: the Go tests call it, and skip (or fail, with
# FERRY_REQUIRE_BROKERS=1) on exit 3. Built things live under
# ${XDG_CACHE_HOME:-~/.cache}/ferry/interop and are rebuilt when their sources
# or versions change. Logs: that directory's *.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ferry/interop"
PIKA_VERSION=1.4.4

SPRING_SRC="$ROOT/interop/spring-amqp"
SPRING_OUT="$CACHE/spring-amqp"
SPRINGKAFKA_SRC="$ROOT/interop/spring-kafka"
SPRINGKAFKA_OUT="$CACHE/spring-kafka"
VENV="$CACHE/venv-pika"

log() { printf '%s\n' "interop: $*" >&2; }
die() { # die STATUS MESSAGE [LOGFILE]
	local rc="$1" msg="$2" f="${3:-}"
	log "ERROR: $msg"
	if [[ -n "$f" && -s "$f" ]]; then
		log "----- last 40 lines of $f -----"
		tail -n 40 "$f" >&2 || true
	fi
	exit "$rc"
}
missing() { die 3 "$1 (run: bash scripts/interop.sh up)"; }

SUDO=""
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; fi

APT_UPDATED=""
apt_install() {
	local aptlog="$CACHE/apt.log"
	mkdir -p "$CACHE"
	if [[ "$(id -u)" != 0 && -z "$SUDO" ]]; then
		die 1 "installing $* needs root or sudo"
	fi
	log "installing $* (apt-get; log in $aptlog)"
	if [[ -z "$APT_UPDATED" ]]; then
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=180 update -q >>"$aptlog" 2>&1 || true
		APT_UPDATED=1
	fi
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=180 "$@" >>"$aptlog" 2>&1 || die 1 "could not install $*" "$aptlog"
}

# lock: one interop.sh at a time (go test may run while `up` does).
lock() {
	mkdir -p "$CACHE"
	exec 9>"$CACHE/interop.lock"
	flock -w 600 9 || die 1 "timed out waiting for $CACHE/interop.lock"
}

# ------------------------------------------------------------------ spring

# A Maven project compiled into the cache: maven_* SRC OUT [NAME].

maven_stamp() { # SRC
	{
		cat "$1/pom.xml"
		find "$1/src" -type f | LC_ALL=C sort | xargs cat
	} | sha256sum | cut -d' ' -f1
}

# maven_ready SRC OUT: the classes are built from the current sources and
# every jar of the classpath is still there.
maven_ready() {
	[[ -f "$2/stamp" && "$(cat "$2/stamp")" == "$(maven_stamp "$1")" ]] || return 1
	[[ -d "$2/target/classes" && -s "$2/classpath.txt" ]] || return 1
	local jar
	while IFS= read -r jar; do
		[[ -f "$jar" ]] || return 1
	done < <(tr ':' '\n' <"$2/classpath.txt")
}

maven_build() { # SRC OUT NAME
	command -v java >/dev/null || missing "$3: no java"
	command -v javac >/dev/null || missing "$3: no javac (a JDK, not only a JRE)"
	command -v mvn >/dev/null || missing "$3: no mvn"
	local mvnlog="$CACHE/$3-mvn.log" t0=$SECONDS
	mkdir -p "$2"
	log "$3: compiling $1 (Maven; log in $mvnlog)"
	rm -f "$2/stamp"
	mvn -B -q -f "$1/pom.xml" compile dependency:build-classpath \
		-Dferry.build.dir="$2/target" -Dmdep.outputFile="$2/classpath.txt" \
		>"$mvnlog" 2>&1 || die 1 "$3: mvn compile failed" "$mvnlog"
	maven_stamp "$1" >"$2/stamp"
	log "$3: built in $((SECONDS - t0))s"
}

maven_path() { # SRC OUT NAME
	maven_ready "$1" "$2" || maven_build "$1" "$2" "$3"
	maven_ready "$1" "$2" || die 1 "$3: built, but the classpath is incomplete"
	echo "$2/target/classes:$(cat "$2/classpath.txt")"
}

maven_up() { # SRC OUT NAME
	command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
	command -v mvn >/dev/null || apt_install maven
	maven_path "$1" "$2" "$3" >/dev/null
}

# ------------------------------------------------------------------ spring

spring_ready() { maven_ready "$SPRING_SRC" "$SPRING_OUT"; }
spring_path() { maven_path "$SPRING_SRC" "$SPRING_OUT" spring; }
spring_up() { maven_up "$SPRING_SRC" "$SPRING_OUT" spring; }

# ------------------------------------------------------------- springkafka

springkafka_ready() { maven_ready "$SPRINGKAFKA_SRC" "$SPRINGKAFKA_OUT"; }
springkafka_path() { maven_path "$SPRINGKAFKA_SRC" "$SPRINGKAFKA_OUT" springkafka; }
springkafka_up() { maven_up "$SPRINGKAFKA_SRC" "$SPRINGKAFKA_OUT" springkafka; }

# -------------------------------------------------------------------- pika

pika_ready() {
	[[ -x "$VENV/bin/python" ]] &&
		[[ "$("$VENV/bin/python" -c 'import pika; print(pika.__version__)' 2>/dev/null)" == "$PIKA_VERSION" ]]
}

pika_build() {
	command -v python3 >/dev/null || missing "pika: no python3"
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing "pika: python3 has no venv/ensurepip (Debian: python3-venv)"
	local piplog="$CACHE/pika-pip.log"
	mkdir -p "$CACHE"
	log "pika: creating $VENV with pika $PIKA_VERSION (log in $piplog)"
	rm -rf "$VENV"
	python3 -m venv "$VENV" >"$piplog" 2>&1 || die 1 "pika: python3 -m venv failed" "$piplog"
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check "pika==$PIKA_VERSION" >>"$piplog" 2>&1 ||
		die 1 "pika: pip install pika==$PIKA_VERSION failed" "$piplog"
}

pika_path() {
	pika_ready || pika_build
	pika_ready || die 1 "pika: installed, but $VENV/bin/python cannot import pika $PIKA_VERSION"
	echo "$VENV/bin/python"
}

pika_up() {
	command -v python3 >/dev/null || apt_install python3
	python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
	pika_path >/dev/null
}

# -------------------------------------------------------------------- kcat

kcat_bin() { command -v kcat || command -v kafkacat; }

kcat_path() {
	kcat_bin || missing "kcat: not installed"
}

kcat_up() {
	kcat_bin >/dev/null || apt_install kcat
	kcat_path >/dev/null
}

# ---------------------------------------------------------------- dispatch

CLIENTS="spring springkafka pika kcat"

check_client() {
	case "$1" in
	spring | springkafka | pika | kcat) ;;
	*) die 2 "unknown client '$1' ($CLIENTS)" ;;
	esac
}

usage() {
	sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

case "${1:-}" in
up)
	lock
	for c in $CLIENTS; do "${c}_up"; done
	log "all ready ($CLIENTS)"
	;;
status)
	rc=0
	spring_ready && log "spring: ready ($SPRING_OUT)" || { log "spring: not built or stale"; rc=1; }
	springkafka_ready && log "springkafka: ready ($SPRINGKAFKA_OUT)" || { log "springkafka: not built or stale"; rc=1; }
	pika_ready && log "pika: ready ($VENV, pika $PIKA_VERSION)" || { log "pika: no venv with pika $PIKA_VERSION"; rc=1; }
	kcat_bin >/dev/null && log "kcat: ready ($(kcat_bin))" || { log "kcat: not installed"; rc=1; }
	exit "$rc"
	;;
path)
	[[ $# -eq 2 ]] || usage
	check_client "$2"
	lock
	"${2}_path"
	;;
*) usage ;;
esac

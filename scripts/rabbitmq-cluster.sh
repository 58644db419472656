#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on the loopback interface, for ferry's failover
# tests (quorum queues, node kill). It runs beside the single broker of
# scripts/services.sh (rabbit@localhost, 127.0.0.1:5672), which it does not
# touch, from the same Debian rabbitmq-server package (services.sh installs
# it; `services.sh up rabbitmq-cluster` calls this script).
#
#   bash scripts/rabbitmq-cluster.sh up            start the three nodes (the first time: form the cluster)
#   bash scripts/rabbitmq-cluster.sh down          stop them
#   bash scripts/rabbitmq-cluster.sh status        per node: running, pid, RSS; exit 1 unless all 3 run clustered
#   bash scripts/rabbitmq-cluster.sh start|stop N  one node (1-3); start waits until it serves AMQP
#   bash scripts/rabbitmq-cluster.sh kill N        SIGKILL node N and wait until it is gone
#   bash scripts/rabbitmq-cluster.sh leader QUEUE  print the number of the node hosting QUEUE's leader
#   bash scripts/rabbitmq-cluster.sh reset         stop the nodes and delete the cluster's data
#
# Node N (1-3): Erlang node ferryN@localhost, AMQP on 127.0.0.1:570N (guest/
# guest, loopback only), Erlang distribution on 127.0.0.1:2570N, data, logs
# and config in $CACHE/rabbitmq-cluster/N, no plugins. The nodes run as the
# calling user with HOME=$CACHE/rabbitmq-cluster, which holds their shared
# Erlang cookie (not the single broker's). Quorum queues get a member on
# every node. A node's data is kept between runs: after the first `up` the
# nodes only start (and find each other again).
#
# Settings (environment): FERRY_SERVICE_TIMEOUT seconds to wait for a node
# (default 90); FERRY_RABBIT_CLUSTER_MEMORY each node's memory high
# watermark (default 1GB).
set -euo pipefail

export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ferry"
BASE="$CACHE/rabbitmq-cluster"
TIMEOUT="${FERRY_SERVICE_TIMEOUT:-90}"
MEMORY="${FERRY_RABBIT_CLUSTER_MEMORY:-1GB}"
NODES="1 2 3"
SBIN=/usr/lib/rabbitmq/bin
MARK="# Written by ferry scripts/rabbitmq-cluster.sh"

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
log() { printf '%s\n' "rabbitmq-cluster: $*"; }

# die MESSAGE [LOGFILE...]: print the message and the tail of each log, exit 1.
die() {
	local msg="$1" f
	shift
	printf '%s\n' "rabbitmq-cluster: ERROR: $msg" >&2
	for f in "$@"; do
		if [[ -s "$f" ]]; then
			printf '%s\n' "----- last 30 lines of $f -----" >&2
			tail -n 30 "$f" >&2 || true
		fi
	done
	exit 1
}

node_ok() { [[ "$1" =~ ^[123]$ ]] || die "unknown node '$1' (1, 2 or 3)"; }
name() { echo "ferry$1@localhost"; }
amqp_port() { echo $((5700 + $1)); }
dir() { echo "$BASE/$1"; }
nodelog() { echo "$BASE/$1/log/ferry$1.log"; }

# node_env N: the environment of node N and of the CLI tools talking to it.
# RABBITMQ_* variables override the Debian env file, which this points away
# from (/etc/rabbitmq/rabbitmq-env.conf names the single broker).
node_env() {
	local d
	d="$(dir "$1")"
	export HOME="$BASE" ERL_EPMD_ADDRESS=127.0.0.1 ERL_CRASH_DUMP="$d/log/erl_crash.dump"
	export RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"
	export RABBITMQ_NODENAME="$(name "$1")" RABBITMQ_USE_LONGNAME=false
	export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$(amqp_port "$1")"
	export RABBITMQ_DIST_PORT=$((25700 + $1))
	export RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
	export RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_MNESIA_DIR="$d/mnesia/$(name "$1")"
	export RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins-expand" RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
	export RABBITMQ_LOG_BASE="$d/log" RABBITMQ_LOGS="$(nodelog "$1")" RABBITMQ_PID_FILE="$d/pid"
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	# The CLI's own distribution ports, apart from the single broker's
	# CLI (35672-35682).
	export RABBITMQ_CTL_DIST_PORT_MIN=35710 RABBITMQ_CTL_DIST_PORT_MAX=35739
}

# ctl N ARGS...: rabbitmqctl against node N.
# (fd 9, services.sh's lock, is closed: the CLI may start epmd, a daemon.)
ctl() { (node_env "$1" && "$SBIN/rabbitmqctl" -n "$(name "$1")" "${@:2}" 9>&-); }

# amqp_up N: node N's AMQP port answers the protocol header with a method
# frame (Connection.Start): its listener is open, the last step of a boot.
amqp_up() {
	local b
	# shellcheck disable=SC2016 # $1 belongs to the inner shell
	b="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"; printf "AMQP\x00\x00\x09\x01" >&3; head -c 1 <&3 | od -An -tx1' _ "$(amqp_port "$1")" 2>/dev/null || true)"
	[[ "$b" == *01* ]]
}

# is_node N PID: PID is node N's Erlang VM (the node name is not on its
# command line, but in the environment it was started with).
is_node() {
	kill -0 "$2" 2>/dev/null && { tr '\0' '\n' <"/proc/$2/environ"; } 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$(name "$1")"
}

# node_pid N: the pid of node N's Erlang VM, if it runs: from its pid file
# (written at boot), else asked of the node.
node_pid() {
	local f pid
	f="$(dir "$1")/pid"
	pid="$(cat "$f" 2>/dev/null || true)"
	if [[ -n "$pid" ]] && is_node "$1" "$pid"; then
		echo "$pid"
		return 0
	fi
	amqp_up "$1" || return 1
	pid="$(ctl "$1" -q eval 'list_to_integer(os:getpid()).' 2>/dev/null || true)"
	if [[ "$pid" =~ ^[0-9]+$ ]] && is_node "$1" "$pid"; then
		echo "$pid" >"$f"
		echo "$pid"
		return 0
	fi
	return 1
}

setup() {
	[[ -x "$SBIN/rabbitmq-server" ]] || die "$SBIN/rabbitmq-server is missing: install Debian's rabbitmq-server (bash scripts/services.sh up rabbitmq)"
	mkdir -p "$BASE"
	if [[ ! -s "$BASE/.erlang.cookie" ]]; then
		(umask 077 && head -c 64 /dev/urandom | tr -dc 'A-Z' | head -c 20 >"$BASE/.erlang.cookie")
		[[ -s "$BASE/.erlang.cookie" ]] || die "could not write the Erlang cookie $BASE/.erlang.cookie"
	fi
	chmod 400 "$BASE/.erlang.cookie"
	printf '%s\n# The nodes take every setting from RABBITMQ_* variables.\n' "$MARK" >"$BASE/rabbitmq-env.conf"
	local n d
	for n in $NODES; do
		d="$(dir "$n")"
		mkdir -p "$d/log" "$d/mnesia"
		cat >"$d/rabbitmq.conf" <<EOF
$MARK; rewritten on every start.
listeners.tcp.default = 127.0.0.1:$(amqp_port "$n")
loopback_users.guest = true
vm_memory_high_watermark.absolute = $MEMORY
log.file.level = info
log.console = false
EOF
		echo '[].' >"$d/enabled_plugins"
	done
}

# node_start N: start node N in the background (readiness: node_wait).
node_start() {
	if node_pid "$1" >/dev/null; then
		return 0
	fi
	if amqp_up "$1" || (exec 3<>"/dev/tcp/127.0.0.1/$(amqp_port "$1")") 2>/dev/null; then
		die "node $1: 127.0.0.1:$(amqp_port "$1") is taken by another process"
	fi
	local d
	d="$(dir "$1")"
	rm -f "$d/pid"
	log "node $1: starting $(name "$1") (127.0.0.1:$(amqp_port "$1"); log $(nodelog "$1"))"
	# Durable queues each hold a file handle at boot.
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	(node_env "$1" && cd "$d" && setsid "$SBIN/rabbitmq-server" -detached >"$d/log/start.log" 2>&1 </dev/null 9>&-) ||
		die "node $1: rabbitmq-server -detached failed" "$d/log/start.log" "$(nodelog "$1")"
}

# node_wait N: wait until node N serves AMQP.
node_wait() {
	local deadline=$((SECONDS + TIMEOUT))
	until amqp_up "$1"; do
		((SECONDS < deadline)) || die "node $1: not ready on 127.0.0.1:$(amqp_port "$1") after ${TIMEOUT}s" "$(dir "$1")/log/start.log" "$(nodelog "$1")"
		sleep 0.3
	done
}

# running_nodes: how many nodes node N (default: any that answers) counts
# as running members of its cluster.
running_nodes() {
	local n out
	for n in ${1:-$NODES}; do
		amqp_up "$n" || continue
		out="$(ctl "$n" -q cluster_status --formatter json 2>/dev/null)" || continue
		# {"running_nodes":["ferry1@localhost",...],...}
		sed -n 's/.*"running_nodes":\[\([^]]*\)\].*/\1/p' <<<"$out" | tr ',' '\n' | grep -c 'ferry[123]@localhost' || true
		return 0
	done
	echo 0
}

# form: join nodes 2 and 3 to node 1 (fresh nodes).
form() {
	local n
	for n in 2 3; do
		{
			ctl "$n" -q stop_app && ctl "$n" -q reset && ctl "$n" -q join_cluster "$(name 1)" && ctl "$n" -q start_app
		} >>"$BASE/form.log" 2>&1 9>&- || die "node $n: could not join $(name 1)" "$BASE/form.log" "$(nodelog "$n")"
	done
	[[ "$(running_nodes 1)" == 3 ]] || die "the cluster did not form: $(name 1) does not see 3 running nodes" "$BASE/form.log" "$(nodelog 1)"
	touch "$BASE/formed"
}

cmd_up() {
	local t0 n
	t0="$(now)"
	# A cluster that never finished forming starts again from scratch.
	if [[ ! -e "$BASE/formed" ]]; then
		cmd_stop_all >/dev/null
		rm -rf "$BASE/1" "$BASE/2" "$BASE/3" "$BASE/form.log"
	fi
	setup
	# All three at once: a node whose peers were running when it stopped
	# waits for them at boot.
	for n in $NODES; do node_start "$n"; done
	for n in $NODES; do node_wait "$n"; done
	if [[ ! -e "$BASE/formed" ]]; then
		log "forming the cluster (nodes 2 and 3 join $(name 1))"
		form
	fi
	local deadline=$((SECONDS + TIMEOUT))
	until [[ "$(running_nodes)" == 3 ]]; do
		((SECONDS < deadline)) || die "not all 3 nodes run clustered after ${TIMEOUT}s" "$(nodelog 1)" "$(nodelog 2)" "$(nodelog 3)"
		sleep 0.5
	done
	log "3 nodes ready (127.0.0.1:5701,5702,5703) in $(since "$t0")"
}

node_stop() {
	local pid
	if ! pid="$(node_pid "$1")"; then
		log "node $1: not running"
		return 0
	fi
	# shutdown (unlike stop) waits until the VM has exited.
	ctl "$1" -q shutdown >/dev/null 2>&1 9>&- || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "node $1: still running 30s after shutdown; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$(dir "$1")/pid"
	log "node $1: stopped"
}

# cmd_stop_all: stop the three nodes at once (the next `up` starts them
# at once too, so which one stopped last does not matter).
cmd_stop_all() {
	local n pids=() rc=0
	for n in $NODES; do
		node_stop "$n" &
		pids+=("$!")
	done
	for n in "${pids[@]}"; do wait "$n" || rc=1; done
	return "$rc"
}

node_kill() {
	local pid
	if ! pid="$(node_pid "$1")"; then
		log "node $1: not running"
		return 0
	fi
	kill -KILL "$pid"
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	rm -f "$(dir "$1")/pid"
	log "node $1: killed (SIGKILL, pid $pid)"
}

cmd_status() {
	local n pid rc=0
	for n in $NODES; do
		if pid="$(node_pid "$n")" && amqp_up "$n"; then
			log "node $n: up, $(name "$n"), 127.0.0.1:$(amqp_port "$n"), pid $pid, RSS $(($(ps -o rss= -p "$pid") / 1024)) MiB"
		else
			log "node $n: down"
			rc=1
		fi
	done
	local r
	r="$(running_nodes)"
	log "running cluster members: $r of 3"
	[[ "$r" == 3 ]] || rc=1
	return "$rc"
}

# leader QUEUE: the number of the node hosting QUEUE's leader, asked of
# the first node that answers.
cmd_leader() {
	local n out
	for n in $NODES; do
		amqp_up "$n" || continue
		out="$(ctl "$n" -q list_queues name leader --no-table-headers 2>/dev/null)" || continue
		out="$(awk -F'\t' -v q="$1" '$1 == q { print $2 }' <<<"$out")"
		[[ "$out" =~ ^ferry([123])@localhost$ ]] || die "queue '$1': no leader known to $(name "$n") (got '$out')"
		echo "${BASH_REMATCH[1]}"
		return 0
	done
	die "no node answers"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_stop_all ;;
status) cmd_status ;;
start)
	[[ $# -eq 2 ]] || die "usage: start N"
	node_ok "$2"
	t0="$(now)"
	setup
	node_start "$2"
	node_wait "$2"
	log "node $2: ready in $(since "$t0")"
	;;
stop)
	[[ $# -eq 2 ]] || die "usage: stop N"
	node_ok "$2"
	node_stop "$2"
	;;
kill)
	[[ $# -eq 2 ]] || die "usage: kill N"
	node_ok "$2"
	node_kill "$2"
	;;
leader)
	[[ $# -eq 2 && -n "$2" ]] || die "usage: leader QUEUE"
	cmd_leader "$2"
	;;
reset)
	cmd_stop_all
	rm -rf "$BASE/1" "$BASE/2" "$BASE/3" "$BASE/formed" "$BASE/form.log"
	log "data deleted"
	;;
*)
	sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac

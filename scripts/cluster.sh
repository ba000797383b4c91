#!/usr/bin/env bash
# cluster.sh: run a 3-node strand cluster on loopback.
#
#   scripts/cluster.sh start     build ./cmd/strand and start nodes 1-3
#   scripts/cluster.sh stop      SIGTERM every node (controlled shutdown) and wait
#   scripts/cluster.sh status    show which nodes run and the cluster's metadata
#   scripts/cluster.sh kill N    kill -9 node N          (fault drills)
#   scripts/cluster.sh pause N   SIGSTOP node N; resume N sends SIGCONT
#   scripts/cluster.sh restart N start node N again on its data
#   scripts/cluster.sh ready N   exit 0 if node N is registered and in the ISR of every
#                                partition it hosts, and no partition is under-replicated
#   scripts/cluster.sh rolling-restart
#                                rebuild, then stop (SIGTERM) and start each node in turn,
#                                waiting for `strand ready` before taking the next one down
#
# Node N serves clients on 127.0.0.1:1909N and the metadata quorum (Raft,
# controller RPCs) on 127.0.0.1:1919N, HTTP (metrics, health, console at
# /ui) on 127.0.0.1:1964N; data and logs live under
# ${STRAND_CLUSTER_DIR:-./cluster-data}/nodeN. Every node is broker and
# controller (process.roles=broker,controller).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${STRAND_CLUSTER_DIR:-$root/cluster-data}
bin=$dir/strand
voters="1@127.0.0.1:19191,2@127.0.0.1:19192,3@127.0.0.1:19193"
bootstrap="127.0.0.1:19091,127.0.0.1:19092,127.0.0.1:19093"

start_node() {
	local n=$1
	mkdir -p "$dir/node$n"
	if [[ -f $dir/node$n/pid ]] && kill -0 "$(cat "$dir/node$n/pid")" 2>/dev/null; then
		echo "node $n already running (pid $(cat "$dir/node$n/pid"))"
		return
	fi
	"$bin" server --node-id "$n" --data-dir "$dir/node$n/data" \
		--listeners "PLAINTEXT://127.0.0.1:1909$n,CONTROLLER://127.0.0.1:1919$n" \
		--set controller.quorum.voters="$voters" \
		--set default.replication.factor=3 --set min.insync.replicas=2 \
		--set http.listener="127.0.0.1:1964$n" \
		"${@:2}" >>"$dir/node$n/server.log" 2>&1 &
	echo $! >"$dir/node$n/pid"
	echo "node $n: pid $!, clients 127.0.0.1:1909$n, log $dir/node$n/server.log"
}

# ready_node N [WAIT]: wait up to WAIT (default 120s) until node N is ready
# (strand ready --all: back in every ISR, nothing under-replicated).
ready_node() {
	"$bin" ready --brokers "$bootstrap" --node "$1" --all --wait "${2:-120s}"
}

stop_node() {
	local n=$1 pid
	[[ -f $dir/node$n/pid ]] || return 0
	pid=$(cat "$dir/node$n/pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill -CONT "$pid" 2>/dev/null || true
		kill -TERM "$pid"
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$dir/node$n/pid"
	echo "node $n stopped"
}

signal_node() {
	local sig=$1 n=$2
	[[ -f $dir/node$n/pid ]] || { echo "node $n: not started" >&2; return 1; }
	kill "-$sig" "$(cat "$dir/node$n/pid")"
}

case ${1:-} in
start)
	mkdir -p "$dir"
	(cd "$root" && go build -o "$bin" ./cmd/strand)
	for n in 1 2 3; do start_node "$n"; done
	echo "bootstrap servers: $bootstrap"
	;;
stop)
	for n in 1 2 3; do
		if [[ -f $dir/node$n/pid ]] && kill -0 "$(cat "$dir/node$n/pid")" 2>/dev/null; then
			kill -CONT "$(cat "$dir/node$n/pid")" 2>/dev/null || true
			kill -TERM "$(cat "$dir/node$n/pid")"
		fi
	done
	for n in 1 2 3; do
		if [[ -f $dir/node$n/pid ]]; then
			while kill -0 "$(cat "$dir/node$n/pid")" 2>/dev/null; do sleep 0.1; done
			rm -f "$dir/node$n/pid"
			echo "node $n stopped"
		fi
	done
	;;
status)
	for n in 1 2 3; do
		if [[ -f $dir/node$n/pid ]] && kill -0 "$(cat "$dir/node$n/pid")" 2>/dev/null; then
			echo "node $n: running (pid $(cat "$dir/node$n/pid"))"
		else
			echo "node $n: not running"
		fi
	done
	if command -v kcat >/dev/null; then kcat -L -b "$bootstrap" | head -n 20; fi
	;;
kill) signal_node KILL "$2" ;;
pause) signal_node STOP "$2" ;;
resume) signal_node CONT "$2" ;;
restart) start_node "$2" ;;
ready) ready_node "$2" "${3:-0s}" ;;
rolling-restart)
	(cd "$root" && go build -o "$bin.new" ./cmd/strand && mv -f "$bin.new" "$bin")
	for n in 1 2 3; do
		ready_node "$n" # never take a node down while another is still catching up
		stop_node "$n"
		start_node "$n"
		ready_node "$n"
	done
	echo "rolling restart done"
	;;
*)
	sed -n '2,19p' "$0"
	exit 2
	;;
esac

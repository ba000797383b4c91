# lib-broker.sh: shared by the kcat script tests. Source it after setting
# NAME (the test's name, used in messages) and optionally BROKER_ARGS (extra
# `strand server` arguments). It defines pass/fail/summary/die, builds or
# finds the strand binary ($bin), and start_broker/stop_broker for one node
# on a free loopback port ($port) with data under $tmp; the EXIT trap kills
# the broker and keeps $tmp (printing the broker log tail) if a check failed.
passed=0
failed=0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strand-${NAME}.XXXXXX")
broker_pid=""
port=""

log() { echo "${NAME}-test: $*"; }
pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1" >&2; }
summary() { echo "${NAME}: $passed passed, $failed failed"; }

die() {
	echo "${NAME}-test: FATAL: $*" >&2
	failed=$((failed + 1))
	summary
	exit 1 # the EXIT trap prints the broker log tail
}

cleanup() {
	if [[ -n $broker_pid ]] && kill -0 "$broker_pid" 2>/dev/null; then
		kill -KILL "$broker_pid" 2>/dev/null
		wait "$broker_pid" 2>/dev/null
	fi
	if ((failed > 0)) && [[ -f $tmp/broker.log ]]; then
		echo "--- broker log tail ($tmp kept) ---" >&2
		tail -n 40 "$tmp/broker.log" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT

command -v kcat >/dev/null || die "kcat not installed (apt-get install -y kcat)"

bin=${STRAND_BIN:-}
if [[ -z $bin ]]; then
	log "building ./cmd/strand"
	(cd "$root" && go build -o "$tmp/strand" ./cmd/strand) || die "go build ./cmd/strand failed"
	bin=$tmp/strand
fi
[[ -x $bin ]] || die "strand binary $bin is not executable"

# port_free PORT: true if nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_broker: start the node (on $port, picking one the first time) and wait
# until kcat can read metadata from it.
start_broker() {
	local attempt
	for attempt in 1 2 3 4 5; do
		if [[ -z $port ]]; then
			port=$((20000 + RANDOM % 12000)) # below the usual ephemeral range
			port_free "$port" || { port=""; continue; }
		fi
		echo "=== start: $bin server --data-dir $tmp/data --listeners PLAINTEXT://127.0.0.1:$port" >>"$tmp/broker.log"
		"$bin" server --data-dir "$tmp/data" --listeners "PLAINTEXT://127.0.0.1:$port" \
			--set http.listener= "${BROKER_ARGS[@]}" >>"$tmp/broker.log" 2>&1 &
		broker_pid=$!
		local deadline=$((SECONDS + 60))
		while ((SECONDS < deadline)); do
			if ! kill -0 "$broker_pid" 2>/dev/null; then
				wait "$broker_pid" 2>/dev/null
				broker_pid=""
				break
			fi
			if kcat -L -b "127.0.0.1:$port" -m 2 >/dev/null 2>&1; then
				return 0
			fi
			sleep 0.1
		done
		if [[ -n $broker_pid ]]; then
			die "broker did not answer metadata on 127.0.0.1:$port within 60s"
		fi
		if tail -n 5 "$tmp/broker.log" | grep -q "address already in use"; then
			log "port $port taken, retrying"
			port=""
			continue
		fi
		die "broker exited during startup"
	done
	die "could not find a free port"
}

# stop_broker: SIGTERM and require a clean exit 0 within 30s.
stop_broker() {
	kill -TERM "$broker_pid"
	local deadline=$((SECONDS + 30))
	while kill -0 "$broker_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
	if kill -0 "$broker_pid" 2>/dev/null; then
		fail "broker did not exit within 30s of SIGTERM"
		kill -KILL "$broker_pid"
		wait "$broker_pid" 2>/dev/null
	else
		local rc=0
		wait "$broker_pid" || rc=$?
		if ((rc == 0)); then pass "SIGTERM: clean exit 0"; else fail "SIGTERM: broker exited with status $rc"; fi
	fi
	broker_pid=""
}


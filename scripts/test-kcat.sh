#!/usr/bin/env bash
# test-kcat.sh: smoke test of strand with kcat (librdkafka), a non-Go client.
#
# Starts a strand node on a free loopback port with a temporary data dir, then
# checks with kcat: metadata lists the broker; keyed produce + consume round
# trips exactly with each compression codec (none, gzip, snappy, lz4, zstd),
# with headers, and with librdkafka's idempotent producer; offsets are dense
# and per-key order is kept; data survives a clean restart; SIGTERM exits 0.
#
# Usage: scripts/test-kcat.sh            (builds ./cmd/strand)
#        STRAND_BIN=/path/strand scripts/test-kcat.sh
# Output ends with "kcat: N passed, M failed"; exit status is 0 only if M = 0.
set -uo pipefail

RECORDS=${KCAT_RECORDS:-1000}
NAME=kcat
BROKER_ARGS=(--set num.partitions=3 --set auto.create.topics.enable=true)
# shellcheck source=scripts/lib-broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-broker.sh"

# produce TOPIC INPUT [kcat args...]: produce keyed lines (key:value) from INPUT.
produce() {
	local topic=$1 input=$2
	shift 2
	local errf=$tmp/produce-$topic.err
	if ! timeout 60 kcat -P -b "127.0.0.1:$port" -t "$topic" -K: "$@" <"$input" 2>"$errf"; then
		fail "$topic: kcat -P $* exited non-zero: $(head -c 500 "$errf")"
		return 1
	fi
	if grep -qiE "fail|error" "$errf"; then
		fail "$topic: kcat -P $* reported: $(head -c 500 "$errf")"
		return 1
	fi
}

# consume TOPIC FORMAT OUT: read the whole topic from the beginning.
consume() {
	local topic=$1 format=$2 out=$3
	if ! timeout 60 kcat -C -b "127.0.0.1:$port" -t "$topic" -o beginning -e -q -f "$format" >"$out" 2>"$out.err"; then
		fail "$topic: kcat -C exited non-zero: $(head -c 500 "$out.err")"
		return 1
	fi
}

# verify TOPIC INPUT: consume TOPIC and compare with INPUT exactly (as a set,
# per key in order), and check offsets are dense from 0 in every partition.
verify() {
	local topic=$1 input=$2 out=$tmp/consumed-$1.txt
	consume "$topic" '%p %o %k:%s\n' "$out" || return 1
	local got=$tmp/got-$topic.txt
	cut -d' ' -f3- "$out" >"$got"
	if ! diff <(sort "$input") <(sort "$got") >"$tmp/diff-$topic.txt"; then
		fail "$topic: consumed records differ from produced ($(wc -l <"$got") vs $(wc -l <"$input") lines): $(head -n 6 "$tmp/diff-$topic.txt" | tr '\n' ' ')"
		return 1
	fi
	local k
	for k in $(cut -d: -f1 "$input" | sort -u); do
		if ! diff -q <(grep "^$k:" "$input") <(grep "^$k:" "$got") >/dev/null; then
			fail "$topic: records of key $k consumed out of produce order"
			return 1
		fi
	done
	if ! awk '{ if ($2 != nxt[$1] + 0) { printf "partition %s: offset %s, want %d\n", $1, $2, nxt[$1]; bad = 1; exit } nxt[$1] = $2 + 1 }
		END { exit bad }' "$out" >"$tmp/offsets-$topic.txt"; then
		fail "$topic: offsets not dense from 0: $(cat "$tmp/offsets-$topic.txt")"
		return 1
	fi
	pass "$topic: $(wc -l <"$got") records round-trip exactly, per-key order and dense offsets"
}

# gen NAME: write $RECORDS keyed lines for NAME and print the file name.
gen() {
	local f=$tmp/input-$1.txt
	seq 0 $((RECORDS - 1)) | awk -v n="$1" '{ printf "key%d:%s value %06d lorem ipsum dolor sit amet %s\n", $1 % 10, n, $1, substr("abcdefghijklmnopqrstuvwxyz", 1, $1 % 27) }' >"$f"
	echo "$f"
}

start_broker
log "broker pid $broker_pid on 127.0.0.1:$port"

if kcat -L -b "127.0.0.1:$port" 2>&1 | grep -q "broker 1 at 127.0.0.1:$port"; then
	pass "metadata lists broker 1 at 127.0.0.1:$port"
else
	fail "metadata does not list broker 1 at 127.0.0.1:$port: $(kcat -L -b "127.0.0.1:$port" 2>&1 | head -n 5 | tr '\n' ' ')"
fi

for codec in none gzip snappy lz4 zstd; do
	topic=kcat-$codec
	input=$(gen "$codec")
	produce "$topic" "$input" -z "$codec" || continue
	if kcat -L -b "127.0.0.1:$port" -t "$topic" 2>&1 | grep -q "topic \"$topic\" with 3 partitions"; then
		pass "$topic: auto-created with num.partitions=3"
	else
		fail "$topic: metadata does not show 3 partitions: $(kcat -L -b "127.0.0.1:$port" -t "$topic" 2>&1 | tr '\n' ' ' | head -c 300)"
	fi
	verify "$topic" "$input"
done

# Headers survive the round trip.
input=$(gen headers)
if produce kcat-headers "$input" -H trace=abc123 -H empty= -z gzip; then
	consume kcat-headers '%h|%k:%s\n' "$tmp/headers.txt"
	bad=$(grep -vc '^trace=abc123,empty=|' "$tmp/headers.txt")
	if [[ $(wc -l <"$tmp/headers.txt") -eq $RECORDS && $bad -eq 0 ]]; then
		pass "kcat-headers: $RECORDS records carry both headers"
	else
		fail "kcat-headers: $bad of $(wc -l <"$tmp/headers.txt") records lack the headers, e.g.: $(grep -v '^trace=abc123,empty=|' "$tmp/headers.txt" | head -n 2 | tr '\n' ' ')"
	fi
fi

# librdkafka's idempotent producer (InitProducerID + sequence numbers).
input=$(gen idempotent)
if produce kcat-idempotent "$input" -X enable.idempotence=true -z lz4; then
	verify kcat-idempotent "$input"
fi

stop_broker
start_broker
log "restarted broker pid $broker_pid"
verify kcat-zstd "$tmp/input-zstd.txt"
verify kcat-idempotent "$tmp/input-idempotent.txt"
stop_broker

summary
((failed == 0))

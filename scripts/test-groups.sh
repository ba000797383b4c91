#!/usr/bin/env bash
# test-groups.sh: consumer groups with kcat -G (librdkafka's balanced
# consumer), a non-Go client.
#
# Two members of one group split a 6-partition topic and together read every
# record exactly as produced; they leave (committing on close); a new member
# of the same group then reads exactly the records produced since - it
# resumes from the committed offsets.
#
# Usage: scripts/test-groups.sh    (builds ./cmd/strand; STRAND_BIN overrides)
# Output ends with "groups: N passed, M failed"; exit status 0 only if M = 0.
set -uo pipefail

NAME=groups
# The initial rebalance waits 3 s for more members (its purpose), so both
# members join the first generation even when one starts slowly.
BROKER_ARGS=(--set num.partitions=6 --set group.initial.rebalance.delay.ms=3000)
# shellcheck source=scripts/lib-broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-broker.sh"

# lines FILE...: total line count.
lines() { cat "$@" 2>/dev/null | wc -l; }

# member OUT: run a group member in the background, printing "key:value".
member() {
	kcat -b "127.0.0.1:$port" -G g1 gt -X auto.offset.reset=earliest -u -q -f '%k:%s\n' "${@:2}" >"$1" 2>"$1.err" &
	echo $!
}

start_broker
log "broker pid $broker_pid on 127.0.0.1:$port"

seq 0 599 | awk '{ printf "k%02d:first %d\n", $1 % 37, $1 }' >"$tmp/first.txt"
timeout 60 kcat -P -b "127.0.0.1:$port" -t gt -K: <"$tmp/first.txt" || die "produce failed"

m1=$(member "$tmp/m1.txt")
m2=$(member "$tmp/m2.txt")
deadline=$((SECONDS + 60))
while (($(lines "$tmp/m1.txt" "$tmp/m2.txt") < 600)) && ((SECONDS < deadline)); do sleep 0.2; done
sleep 1 # anything extra (a duplicate) would arrive now
kill -TERM "$m1" "$m2"
wait "$m1" "$m2" 2>/dev/null
got=$(lines "$tmp/m1.txt" "$tmp/m2.txt")
if cat "$tmp/m1.txt" "$tmp/m2.txt" | sort | diff -q - <(sort "$tmp/first.txt") >/dev/null; then
	pass "two members read all 600 records exactly once ($(lines "$tmp/m1.txt") + $(lines "$tmp/m2.txt"))"
else
	fail "two members read $got records, want exactly the 600 produced: $(head -c 300 "$tmp/m1.txt.err")"
fi
if [[ -s $tmp/m1.txt && -s $tmp/m2.txt ]]; then
	pass "both members got partitions"
else
	fail "one member got nothing: $(lines "$tmp/m1.txt") / $(lines "$tmp/m2.txt")"
fi
for k in $(cut -d: -f1 "$tmp/first.txt" | sort -u); do
	if ! diff -q <(grep -h "^$k:" "$tmp/m1.txt" "$tmp/m2.txt") <(grep "^$k:" "$tmp/first.txt") >/dev/null; then
		fail "records of key $k out of order"
		break
	fi
done

seq 0 299 | awk '{ printf "k%02d:second %d\n", $1 % 37, $1 }' >"$tmp/second.txt"
timeout 60 kcat -P -b "127.0.0.1:$port" -t gt -K: <"$tmp/second.txt" || die "produce failed"
m3=$(member "$tmp/m3.txt" -c 300)
deadline=$((SECONDS + 60))
while kill -0 "$m3" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
kill -TERM "$m3" 2>/dev/null
wait "$m3" 2>/dev/null
if sort "$tmp/m3.txt" | diff -q - <(sort "$tmp/second.txt") >/dev/null; then
	pass "a new member resumed from the committed offsets: exactly the 300 new records"
else
	fail "the resumed member read $(lines "$tmp/m3.txt") records ($(grep -c first "$tmp/m3.txt") old ones), want the 300 new"
fi

stop_broker
summary
((failed == 0))

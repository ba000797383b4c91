#!/usr/bin/env bash
# secure-cluster.sh: runs README's "Securing a cluster" example end to end.
#
# Makes a CA, a broker certificate (server.pem = private key + certificate
# chain, Kafka's PEM keystore) and a client certificate with openssl; starts
# a node with a loopback PLAINTEXT listener for the operator, SASL_SSL with
# SCRAM-SHA-512 for clients, SSL with required client certificates (mTLS)
# and SASL_PLAINTEXT with PLAIN; the first SCRAM user comes from --add-scram.
# Then checks with kcat (librdkafka): SCRAM-SHA-512 over SASL_SSL reads and
# writes, a wrong password is refused, mTLS reads and writes, TLS without a
# client certificate is refused; with kafka-python: PLAIN over
# SASL_PLAINTEXT round-trips; with confluent-kafka-python: SCRAM-SHA-512
# over SASL_SSL and mTLS with a consumer group; and that no password is in the broker log or
# data directory.
#
# Usage: scripts/secure-cluster.sh      (builds ./cmd/strand)
#        STRAND_BIN=/path/strand scripts/secure-cluster.sh
# Output ends with "secure: N passed, M failed"; exit status is 0 only if M = 0.
set -uo pipefail

NAME=secure
# shellcheck source=scripts/lib-broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-broker.sh"
command -v openssl >/dev/null || die "openssl not installed (apt-get install -y openssl)"

cd "$tmp" || die "cd $tmp"

# --- 1. Certificates (as in README) ---
{
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=strand-ca" -keyout ca.key -out ca.pem &&
		openssl req -newkey rsa:2048 -nodes -subj "/CN=broker" -keyout server.key -out server.csr &&
		printf "subjectAltName=IP:127.0.0.1,DNS:localhost\n" >server.ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -extfile server.ext -out server.crt &&
		cat server.key server.crt >server.pem &&
		openssl req -newkey rsa:2048 -nodes -subj "/CN=alice/OU=eng" -keyout client.key -out client.csr &&
		openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -out client.crt
} >openssl.log 2>&1 || die "openssl failed: $(tail -n 5 openssl.log)"
pass "openssl: CA, broker server.pem (key + chain) and client certificate"

# --- 2. The node ---
pick() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		port_free "$p" && { echo "$p"; return; }
	done
}
port=$(pick)
sasl_ssl=$(pick)
ssl=$(pick)
sasl_plain=$(pick)
PLAIN_JAAS='org.apache.kafka.common.security.plain.PlainLoginModule required user_carol="carol-secret";'
BROKER_ARGS=(
	--add-scram 'SCRAM-SHA-512=[name=alice,password=alice-secret]'
	--set "listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_ssl,SSL://127.0.0.1:$ssl,SASL_PLAINTEXT://127.0.0.1:$sasl_plain"
	--set sasl.enabled.mechanisms=SCRAM-SHA-512
	--set ssl.keystore.type=PEM --set ssl.keystore.location="$tmp/server.pem"
	--set ssl.truststore.type=PEM --set ssl.truststore.location="$tmp/ca.pem"
	--set listener.name.ssl.ssl.client.auth=required
	--set listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
	--set "listener.name.sasl_plaintext.plain.sasl.jaas.config=$PLAIN_JAAS"
	--set num.partitions=1 --set auto.create.topics.enable=true
	--set authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
	--set super.users=User:ANONYMOUS
	${SECURE_EXTRA_ARGS:-}
)
start_broker
log "broker pid $broker_pid: PLAINTEXT $port, SASL_SSL $sasl_ssl, SSL $ssl, SASL_PLAINTEXT $sasl_plain"

# --- 3. Users and ACLs, with strand's admin commands on the operator's PLAINTEXT listener ---
admin() { timeout 30 "$bin" --brokers "127.0.0.1:$port" "$@"; }
if echo bob-secret | admin user create bob --password-stdin >user.out 2>&1 &&
	admin user list --json >users.json 2>&1 && grep -q '"bob"' users.json && grep -q '"alice"' users.json; then
	pass "strand user create bob (SCRAM-SHA-512), user list shows alice and bob"
else
	fail "strand user: $(head -c 300 user.out) $(head -c 300 users.json)"
fi
if admin acl create --allow-principal 'User:*' --operation All --topic '*' --group '*' >acl.out 2>&1 &&
	admin acl create --deny-principal User:bob --operation All --topic secret >>acl.out 2>&1 &&
	admin acl list >acls.txt 2>&1 && grep -q 'User:bob.*DENY.*ALL.*TOPIC.*secret' acls.txt; then
	pass "strand acl create: every user on every topic and group, bob denied on secret"
else
	fail "strand acl: $(head -c 300 acl.out) $(head -c 300 acls.txt)"
fi

SCRAM=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X ssl.ca.location="$tmp/ca.pem")
MTLS=(-X security.protocol=SSL -X ssl.ca.location="$tmp/ca.pem" -X ssl.certificate.location="$tmp/client.crt" -X ssl.key.location="$tmp/client.key")

# roundtrip NAME ADDR ARGS...: produce 3 lines to topic NAME and read them back.
roundtrip() {
	local topic=$1 addr=$2
	shift 2
	printf 'one\ntwo\nthree\n' | timeout 30 kcat -P -b "$addr" -t "$topic" "$@" 2>"$topic.perr" ||
		{ fail "$topic: produce failed: $(head -c 300 "$topic.perr")"; return; }
	local got
	got=$(timeout 30 kcat -C -b "$addr" -t "$topic" -o beginning -e -q "$@" 2>"$topic.cerr" | tr '\n' ' ')
	if [[ $got == "one two three " ]]; then
		pass "$topic: produce and consume"
	else
		fail "$topic: consumed '$got': $(head -c 300 "$topic.cerr")"
	fi
}

# --- 4. Clients ---
roundtrip scram-sasl-ssl "127.0.0.1:$sasl_ssl" "${SCRAM[@]}" -X sasl.username=alice -X sasl.password=alice-secret

if timeout 20 kcat -L -b "127.0.0.1:$sasl_ssl" "${SCRAM[@]}" -X sasl.username=alice -X sasl.password=wrong -m 5 >wrong.out 2>&1; then
	fail "wrong SCRAM password: kcat -L succeeded"
elif grep -qi "authentication" wrong.out; then
	pass "wrong SCRAM password refused ($(grep -oi 'SASL authentication error[^(]*' wrong.out | head -n 1))"
else
	fail "wrong SCRAM password: unexpected failure: $(head -c 300 wrong.out)"
fi

roundtrip mtls "127.0.0.1:$ssl" "${MTLS[@]}"

if timeout 20 kcat -L -b "127.0.0.1:$ssl" -X security.protocol=SSL -X ssl.ca.location="$tmp/ca.pem" -m 5 >nocert.out 2>&1; then
	fail "SSL listener without a client certificate: kcat -L succeeded"
else
	pass "SSL listener refuses a client without a certificate"
fi

# Debian's python3-kafka lives in the system python (not a pyenv shim's).
py=python3
[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
if "$py" -c 'import kafka' 2>/dev/null; then
	if timeout 90 "$py" - "127.0.0.1:$sasl_plain" "127.0.0.1:$sasl_ssl" "$tmp" >python.out 2>&1 <<'PY'; then
import sys
from kafka import KafkaProducer, KafkaConsumer
plain_addr, scram_addr, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
for topic, addr, auth in [
    ("kafka-python-plain", plain_addr, dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                            sasl_plain_username="carol", sasl_plain_password="carol-secret")),
    ("kafka-python-scram", scram_addr, dict(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                            sasl_plain_username="alice", sasl_plain_password="alice-secret",
                                            ssl_cafile=tmp + "/ca.pem")),
]:
    p = KafkaProducer(bootstrap_servers=addr, **auth)
    p.send(topic, b"hello").get(timeout=30)
    p.close()
    c = KafkaConsumer(topic, bootstrap_servers=addr, auto_offset_reset="earliest",
                      consumer_timeout_ms=10000, **auth)
    got = [m.value for m in c]
    c.close()
    assert got == [b"hello"], (topic, got)
print("ok")
PY
		pass "kafka-python: PLAIN over SASL_PLAINTEXT and SCRAM-SHA-512 over SASL_SSL (handshake v0, raw tokens)"
	else
		fail "kafka-python PLAIN: $(tail -n 5 python.out)"
	fi
elif [[ ${CI:-} == true ]]; then
	fail "kafka-python not installed on CI (apt-get install -y python3-kafka)"
else
	log "kafka-python not installed: skipping its check (CI installs python3-kafka)"
fi

if "$py" -c 'import confluent_kafka' 2>/dev/null; then
	if timeout 60 "$py" - "127.0.0.1:$sasl_ssl" "127.0.0.1:$ssl" "$tmp" >confluent.out 2>&1 <<'PY'; then
import sys
from confluent_kafka import Producer, Consumer
scram_addr, mtls_addr, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
for name, conf in [
    ("scram", {"bootstrap.servers": scram_addr, "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
               "sasl.username": "alice", "sasl.password": "alice-secret", "ssl.ca.location": tmp + "/ca.pem"}),
    ("mtls", {"bootstrap.servers": mtls_addr, "security.protocol": "SSL", "ssl.ca.location": tmp + "/ca.pem",
              "ssl.certificate.location": tmp + "/client.crt", "ssl.key.location": tmp + "/client.key"}),
]:
    topic = "confluent-" + name
    p = Producer(conf)
    p.produce(topic, b"hello")
    assert p.flush(30) == 0, name + ": produce not delivered"
    c = Consumer(dict(conf, **{"group.id": "g-" + name, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = None
    for _ in range(60):
        m = c.poll(1.0)
        if m is not None and not m.error():
            got = m.value()
            break
    c.close()
    assert got == b"hello", (name, got)
print("ok")
PY
		pass "confluent-kafka-python: SCRAM-SHA-512 over SASL_SSL and mTLS, produce and group consume"
	else
		fail "confluent-kafka-python: $(tail -n 5 confluent.out)"
	fi
elif [[ ${CI:-} == true ]]; then
	fail "confluent-kafka-python not installed on CI (apt-get install -y python3-confluent-kafka)"
else
	log "confluent-kafka-python not installed: skipping its check"
fi

# --- 5. The ACLs at work: bob reads and writes, but not where DENY says ---
BOB=("${SCRAM[@]}" -X sasl.username=bob -X sasl.password=bob-secret)
roundtrip bob-topic "127.0.0.1:$sasl_ssl" "${BOB[@]}"
printf 'psst\n' | timeout 30 kcat -P -b "127.0.0.1:$sasl_ssl" -t secret "${BOB[@]}" -m 5 >bob-secret.out 2>&1
if grep -qi "authoriz" bob-secret.out; then
	pass "bob denied on secret ($(grep -oi 'topic authorization failed' bob-secret.out | head -n 1))"
else
	fail "bob wrote to secret despite the DENY: $(head -c 300 bob-secret.out)"
fi

# --- 6. No password in the log or on disk ---
if grep -rqa -e alice-secret -e carol-secret -e bob-secret "$tmp/broker.log" "$tmp/data"; then
	fail "a password appears in the broker log or data directory"
else
	pass "no password in the broker log or data directory"
fi

stop_broker
summary
((failed == 0))

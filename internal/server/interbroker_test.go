package server

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"strand/internal/config"
	"strand/internal/security"
	"strand/internal/security/securitytest"
)

// TestInterBrokerSASLSSL runs three nodes whose only client listener is
// SASL_SSL with SCRAM-SHA-512, also used between brokers: followers must
// authenticate as the bootstrapped broker user for a topic of replication
// factor 3 to reach a full ISR and take acks=all writes. The controller
// listener is SSL with required client certificates: the quorum forms and
// controller RPCs flow over mutual TLS, and a plaintext peer gets nothing.
// Under the StandardAuthorizer the controller listener admits only
// principals with CLUSTER_ACTION (the certificate subject mapped by
// ssl.principal.mapping.rules): the brokers' own certificate map to the
// super user User:broker, a client certificate of User:mallory is refused.
func TestInterBrokerSASLSSL(t *testing.T) {
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	keystore := securitytest.WriteFile(t, dir, "server.pem", key, cert)
	truststore := securitytest.WriteFile(t, dir, "ca.pem", ca.PEM)
	broker, err := security.ParseAddScram("SCRAM-SHA-512=[name=broker,password=broker-secret]")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := security.ParseAddScram("SCRAM-SHA-512=[name=alice,password=alice-secret]")
	if err != nil {
		t.Fatal(err)
	}
	var clientAddrs, voters []string
	ctrlAddrs := map[int]string{}
	for id := 1; id <= 3; id++ {
		clientAddrs = append(clientAddrs, freeAddr(t))
		ctrlAddrs[id] = freeAddr(t)
		voters = append(voters, fmt.Sprintf("%d@%s", id, ctrlAddrs[id]))
	}
	for id := 1; id <= 3; id++ {
		cfg, err := config.Load("", [][2]string{
			{"node.id", fmt.Sprint(id)}, {"log.dirs", t.TempDir()},
			{"listeners", "SASL_SSL://" + clientAddrs[id-1] + ",CONTROLLER://" + ctrlAddrs[id]},
			{"controller.quorum.voters", strings.Join(voters, ",")},
			{"controller.quorum.election.timeout.ms", "300"},
			{"security.inter.broker.protocol", "SASL_SSL"},
			{"listener.security.protocol.map", "SASL_SSL:SASL_SSL,CONTROLLER:SSL"},
			{"listener.name.controller.ssl.client.auth", "required"},
			{"listener.name.controller.ssl.principal.mapping.rules", "RULE:^CN=([^,]*)$/$1/,DEFAULT"},
			{"authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"},
			{"super.users", "User:broker;User:alice"},
			{"sasl.enabled.mechanisms", "SCRAM-SHA-512"},
			{"sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"},
			{"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", `org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";`},
			{"ssl.keystore.type", "PEM"}, {"ssl.keystore.location", keystore},
			{"ssl.truststore.type", "PEM"}, {"ssl.truststore.location", truststore},
			{"offsets.topic.replication.factor", "3"},
		})
		if err != nil {
			t.Fatal(err)
		}
		serveForTest(t, cfg, WithBootstrapScram(broker, alice))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(clientAddrs...), kgo.DialTLSConfig(ca.ClientTLS(t, nil, nil)),
		kgo.SASL(scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism()), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if _, err := adm.CreateTopic(c, 1, 3, map[string]*string{"min.insync.replicas": new("3")}, "replicated"); err == nil {
			break
		} else if c.Err() != nil {
			t.Fatalf("create topic: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// min.insync.replicas=3 with acks=all: only a full ISR (both followers
	// fetching over SASL_SSL) takes the write.
	if err := cl.ProduceSync(c, &kgo.Record{Topic: "replicated", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("acks=all produce with min.insync.replicas=3: %v", err)
	}

	// A plaintext client on the controller port gets no answer.
	raw, err := net.DialTimeout("tcp", ctrlAddrs[1], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	raw.Write([]byte("C{\"Op\":\"heartbeat\",\"Body\":{}}\n"))
	if n, err := raw.Read(make([]byte, 64)); err == nil {
		t.Fatalf("plaintext controller RPC answered with %d bytes", n)
	}

	// Over mutual TLS, a controller RPC is answered for the broker's
	// certificate and refused (closed unanswered) for a client certificate
	// whose principal has no CLUSTER_ACTION.
	mcert, mkey := ca.Issue(t, pkix.Name{CommonName: "mallory"})
	for _, tc := range []struct {
		cert, key []byte
		answered  bool
	}{{cert, key, true}, {mcert, mkey, false}} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ctrlAddrs[1], ca.ClientTLS(t, tc.cert, tc.key))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Write([]byte("C{\"Op\":\"no_such_op\",\"Body\":{}}\n")); err != nil {
			t.Fatal(err)
		}
		answer, err := io.ReadAll(conn)
		conn.Close()
		if tc.answered && len(answer) == 0 {
			t.Fatalf("broker certificate: controller RPC not answered: %v", err)
		}
		if !tc.answered && len(answer) > 0 {
			t.Fatalf("User:mallory's controller RPC answered: %q", answer)
		}
	}
}

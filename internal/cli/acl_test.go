package cli_test

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"strand/internal/cli"
	"strand/internal/security/securitytest"
	"strand/internal/server/servertest"
)

// TestACLAndUserCommands: against an in-process broker with the
// StandardAuthorizer (PLAINTEXT for the operator, anonymous and super user;
// SASL_PLAINTEXT with SCRAM-SHA-512 for clients), `strand user` creates a
// SCRAM user that can then log in, `strand acl create` lets it produce,
// `strand acl delete` takes that away, and `strand user delete` removes it.
func TestACLAndUserCommands(t *testing.T) {
	addr, saslAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
	servertest.StartOn(t, addr,
		[2]string{"listeners", "PLAINTEXT://" + addr + ",SASL_PLAINTEXT://" + saslAddr},
		[2]string{"sasl.enabled.mechanisms", "SCRAM-SHA-512"},
		[2]string{"authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"},
		[2]string{"super.users", "User:ANONYMOUS"},
		[2]string{"auto.create.topics.enable", "false"})
	b := addr

	// produce sends one record to orders as alice over SCRAM-SHA-512
	// within timeout (kgo retries a failed authentication until then, so
	// the tests expecting one pass a short timeout).
	produce := func(password string, timeout time.Duration) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(saslAddr),
			kgo.SASL(scram.Auth{User: "alice", Pass: password}.AsSha512Mechanism()),
			kgo.RecordDeliveryTimeout(timeout), kgo.RequestRetries(1), kgo.DisableIdempotentWrite())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("v")}).FirstErr()
	}

	created := decode[[]cli.UserResult](t, ok(t, b, "", "user", "create", "alice", "--password", "alice-secret", "--json"))
	if len(created) != 1 || created[0].User != "alice" || created[0].Mechanism != "SCRAM-SHA-512" || created[0].Error != "" {
		t.Fatalf("user create: %+v", created)
	}
	ok(t, b, "bob-secret\n", "user", "create", "bob", "--password-stdin", "--mechanism", "SCRAM-SHA-256", "--mechanism", "SCRAM-SHA-512", "--iterations", "4096")
	users := decode[[]cli.UserView](t, ok(t, b, "", "user", "list", "--json"))
	if len(users) != 2 || users[0].User != "alice" || len(users[0].Credentials) != 1 || users[0].Credentials[0] != (cli.UserCredential{Mechanism: "SCRAM-SHA-512", Iterations: 8192}) ||
		users[1].User != "bob" || len(users[1].Credentials) != 2 || users[1].Credentials[0].Iterations != 4096 {
		t.Fatalf("user list: %+v", users)
	}
	fails(t, b, "a password is required", "user", "create", "carol")
	fails(t, b, "want SCRAM-SHA-256 or SCRAM-SHA-512", "user", "create", "carol", "--password", "x", "--mechanism", "PLAIN")
	fails(t, b, "iterations", "user", "create", "carol", "--password", "x", "--iterations", "100")

	ok(t, b, "", "topic", "create", "orders", "--partitions", "1", "--replication-factor", "1")
	if err := produce("alice-secret", 5*time.Second); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice produces without an ACL: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if err := produce("wrong", time.Second); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("alice with a wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
	}

	acls := decode[[]cli.ACLView](t, ok(t, b, "", "acl", "create", "--allow-principal", "User:alice",
		"--operation", "Write", "--operation", "Describe", "--topic", "orders", "--json"))
	if len(acls) != 2 || acls[0].Error != "" || acls[1].Error != "" || acls[0].Principal != "User:alice" || acls[0].Host != "*" {
		t.Fatalf("acl create: %+v", acls)
	}
	ok(t, b, "", "acl", "create", "--allow-principal", "User:app", "--operation", "Read", "--group", "app-", "--resource-pattern-type", "prefixed")
	if err := produce("alice-secret", 5*time.Second); err != nil {
		t.Fatalf("alice produces with WRITE: %v", err)
	}
	// The admin commands connect with Kafka's client security settings:
	// as alice, over SASL_PLAINTEXT with SCRAM-SHA-512, they see and write
	// orders but may not list ACLs (no DESCRIBE on the cluster).
	asAlice := []string{"--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "alice", "--sasl-password", "alice-secret"}
	if out := ok(t, saslAddr, "", append([]string{"topic", "list"}, asAlice...)...); !strings.Contains(out, "orders") {
		t.Fatalf("topic list as alice: %s", out)
	}
	ok(t, saslAddr, "hello\n", append([]string{"produce", "orders"}, asAlice...)...)
	fails(t, saslAddr, "CLUSTER_AUTHORIZATION_FAILED", append([]string{"acl", "list"}, asAlice...)...)
	fails(t, saslAddr, "SASL_AUTHENTICATION_FAILED", "topic", "list", "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512",
		"--sasl-username", "alice", "--sasl-password", "wrong")
	fails(t, saslAddr, "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", "topic", "list", "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "GSSAPI", "--sasl-username", "alice")

	listed := decode[[]cli.ACLView](t, ok(t, b, "", "acl", "list", "--json"))
	want := []cli.ACLView{
		{Principal: "User:app", Host: "*", Permission: "ALLOW", Operation: "READ", ResourceType: "GROUP", ResourceName: "app-", PatternType: "PREFIXED"},
		{Principal: "User:alice", Host: "*", Permission: "ALLOW", Operation: "DESCRIBE", ResourceType: "TOPIC", ResourceName: "orders", PatternType: "LITERAL"},
		{Principal: "User:alice", Host: "*", Permission: "ALLOW", Operation: "WRITE", ResourceType: "TOPIC", ResourceName: "orders", PatternType: "LITERAL"},
	}
	if len(listed) != len(want) {
		t.Fatalf("acl list: %+v", listed)
	}
	for i := range want {
		if listed[i] != want[i] {
			t.Fatalf("acl list [%d] = %+v, want %+v", i, listed[i], want[i])
		}
	}
	if got := decode[[]cli.ACLView](t, ok(t, b, "", "acl", "list", "--principal", "User:app", "--json")); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("acl list --principal User:app: %+v", got)
	}
	if got := decode[[]cli.ACLView](t, ok(t, b, "", "acl", "list", "--group", "app-1", "--resource-pattern-type", "match", "--json")); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("acl list --group app-1 --resource-pattern-type match: %+v", got)
	}
	fails(t, b, "want Type:Name", "acl", "create", "--allow-principal", "alice", "--topic", "orders")
	fails(t, b, "give a resource", "acl", "create", "--allow-principal", "User:alice")
	fails(t, b, "--operation \"Fly\"", "acl", "create", "--allow-principal", "User:alice", "--topic", "t", "--operation", "Fly")
	fails(t, b, "give a resource", "acl", "delete", "--allow-principal", "User:alice")

	deleted := decode[[]cli.ACLView](t, ok(t, b, "", "acl", "delete", "--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders", "--json"))
	if len(deleted) != 1 || deleted[0] != want[2] {
		t.Fatalf("acl delete: %+v", deleted)
	}
	if err := produce("alice-secret", 5*time.Second); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice produces after the WRITE was deleted: %v", err)
	}

	ok(t, b, "", "user", "delete", "alice")
	if err := produce("alice-secret", time.Second); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("a deleted user logs in: %v", err)
	}
	if got := decode[[]cli.UserView](t, ok(t, b, "", "user", "list", "--json")); len(got) != 1 || got[0].User != "bob" {
		t.Fatalf("user list after delete: %+v", got)
	}
	fails(t, b, "RESOURCE_NOT_FOUND", "user", "delete", "alice")
}

// TestCommandsOverMutualTLS: with --security-protocol SSL, --tls-ca and
// --tls-keystore (key + chain, as the broker's PEM keystore) the commands
// reach a listener that requires client certificates, as the certificate's
// (mapped) principal; without the keystore the broker refuses them.
func TestCommandsOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	ccert, ckey := ca.Issue(t, pkix.Name{CommonName: "ops"})
	caFile := securitytest.WriteFile(t, dir, "ca.pem", ca.PEM)
	clientPEM := securitytest.WriteFile(t, dir, "client.pem", ckey, ccert)
	addr, sslAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
	servertest.StartOn(t, addr,
		[2]string{"listeners", "PLAINTEXT://" + addr + ",SSL://" + sslAddr},
		[2]string{"ssl.keystore.type", "PEM"},
		[2]string{"ssl.keystore.location", securitytest.WriteFile(t, dir, "server.pem", key, cert)},
		[2]string{"ssl.truststore.type", "PEM"}, [2]string{"ssl.truststore.location", caFile},
		[2]string{"listener.name.ssl.ssl.client.auth", "required"},
		[2]string{"listener.name.ssl.ssl.principal.mapping.rules", "RULE:^CN=([^,]*)$/$1/,DEFAULT"},
		[2]string{"authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"},
		[2]string{"super.users", "User:ANONYMOUS;User:ops"})
	mtls := []string{"--security-protocol", "SSL", "--tls-ca", caFile, "--tls-keystore", clientPEM}
	ok(t, sslAddr, "", append([]string{"topic", "create", "m", "--partitions", "1", "--replication-factor", "1"}, mtls...)...)
	ok(t, sslAddr, "", append([]string{"acl", "create", "--allow-principal", "User:x", "--operation", "Read", "--topic", "m"}, mtls...)...)
	if out := ok(t, sslAddr, "", append([]string{"acl", "list"}, mtls...)...); !strings.Contains(out, "User:x") {
		t.Fatalf("acl list over mutual TLS as User:ops: %s", out)
	}
	out, err := strand(t, sslAddr, "", "topic", "list", "--security-protocol", "SSL", "--tls-ca", caFile, "--timeout", "5s")
	if err == nil {
		t.Fatalf("topic list without a client certificate succeeded: %s", out)
	}
	fails(t, sslAddr, "needs --security-protocol SSL or SASL_SSL", "topic", "list", "--tls-keystore", clientPEM)
}

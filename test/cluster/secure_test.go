package cluster

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"strand/internal/security/securitytest"
	"strand/internal/testcluster"
	"strand/internal/verify"
)

// TestSecureReplicationChaos runs the chaos verifier on a 3-node cluster
// whose broker-to-broker traffic is all secured: followers fetch over a
// SASL_SSL REPLICATION listener as the SCRAM-SHA-512 user "broker"
// (bootstrapped with --add-scram), and Raft and controller RPCs use an SSL
// controller listener with required client certificates. A leader and then
// a follower are killed mid-run; no acknowledged record may be lost,
// duplicated or reordered. The verifier's producer and consumers use the
// same SASL_SSL listener; only the harness's readiness probes use the
// loopback PLAINTEXT listener.
func TestSecureReplicationChaos(t *testing.T) {
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	c := testcluster.StartCluster(t, 3,
		testcluster.WithReplicationListener(),
		testcluster.WithSet("replica.lag.time.max.ms", "3000"),
		testcluster.WithSet("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,REPLICATION:SASL_SSL,CONTROLLER:SSL"),
		testcluster.WithSet("inter.broker.listener.name", "REPLICATION"),
		testcluster.WithSet("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
		testcluster.WithSet("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
		testcluster.WithSet("listener.name.replication.scram-sha-512.sasl.jaas.config",
			`org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";`),
		testcluster.WithSet("ssl.keystore.type", "PEM"),
		testcluster.WithSet("ssl.keystore.location", securitytest.WriteFile(t, dir, "server.pem", key, cert)),
		testcluster.WithSet("ssl.truststore.type", "PEM"),
		testcluster.WithSet("ssl.truststore.location", securitytest.WriteFile(t, dir, "ca.pem", ca.PEM)),
		testcluster.WithSet("listener.name.controller.ssl.client.auth", "required"),
		testcluster.WithArgs("--add-scram", "SCRAM-SHA-512=[name=broker,password=broker-secret]"),
	)
	// The verifier's clients use the SASL_SSL listener too, as the broker user.
	var secureAddrs []string
	for _, n := range c.Nodes {
		secureAddrs = append(secureAddrs, n.ReplicationAddr())
	}
	clientOpts := []kgo.Opt{kgo.DialTLSConfig(ca.ClientTLS(t, nil, nil)),
		kgo.SASL(scram.Auth{User: "broker", Pass: "broker-secret"}.AsSha512Mechanism())}
	faults := []struct {
		name   string
		victim func(leader int32, replicas []int32) int32
	}{
		{"leader killed", func(l int32, _ []int32) int32 { return l }},
		{"follower killed", func(l int32, reps []int32) int32 {
			for _, r := range reps {
				if r != l {
					return r
				}
			}
			return l
		}},
	}
	for i, f := range faults {
		topic := fmt.Sprintf("secure-chaos-%d", i)
		o := verify.DefaultOptions()
		o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor, o.MinInsync = secureAddrs, topic, 3, 3, 2
		o.ClientOpts = clientOpts
		o.Duration, o.FaultAt = chaosRoundTime(), chaosRoundTime()/4
		o.DrainTimeout, o.ReadTimeout = 40*time.Second, 60*time.Second
		o.InFlight = 200
		o.Fault = func(ctx context.Context) error {
			l, reps, err := leaderOf(ctx, c, topic, 0)
			if err != nil {
				return err
			}
			n := c.Node(f.victim(l, reps))
			n.Kill()
			time.Sleep(2 * time.Second)
			return restart(ctx, t, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		rep, err := verify.Run(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("round %d (%s): %v", i, f.name, err)
		}
		t.Logf("round %d (%s): produced %d, acked %d, read %d, lost %d, duplicated %d, reordered %d, fault %s",
			i, f.name, rep.Produced, rep.Acknowledged, rep.Read, rep.Lost, rep.Duplicated, rep.Reordered, rep.Fault)
		if rep.FaultFailed() {
			t.Errorf("round %d (%s): fault %s", i, f.name, rep.Fault)
		}
		if rep.Violations() != 0 || rep.Acknowledged == 0 {
			t.Errorf("round %d (%s): %+v", i, f.name, rep.Counts)
		}
	}
}

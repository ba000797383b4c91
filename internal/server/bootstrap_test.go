package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"strand/internal/config"
	"strand/internal/security"
)

func TestBootstrapScramUser(t *testing.T) {
	u, err := security.ParseAddScram("SCRAM-SHA-512=[name=alice,password=alice-secret]")
	if err != nil {
		t.Fatal(err)
	}
	plainAddr, saslAddr := freeAddr(t), freeAddr(t)
	cfg, err := config.Load("", [][2]string{{"log.dirs", t.TempDir()},
		{"listeners", "PLAINTEXT://" + plainAddr + ",SASL_PLAINTEXT://" + saslAddr}, {"sasl.enabled.mechanisms", "SCRAM-SHA-512"}})
	if err != nil {
		t.Fatal(err)
	}
	serveForTest(t, cfg, WithBootstrapScram(u))
	n := &node{t: t, addr: plainAddr}
	// The user is committed with the cluster id, when the controller takes
	// office, which may come just after the broker starts serving.
	adm := kadm.NewClient(n.client())
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := adm.DescribeUserSCRAMs(ctx(t), "alice")
		if err == nil && got["alice"].Err == nil && len(got["alice"].CredInfos) == 1 && got["alice"].CredInfos[0].Iterations == 4096 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DescribeUserSCRAMs: %v %+v", err, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sn := &secureNode{node: n}
	if err := roundTrip(t, sn.saslClient(t, saslAddr, false, scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism()), "boot"); err != nil {
		t.Fatalf("bootstrapped user: %v", err)
	}
}

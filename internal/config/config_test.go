package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestLoadRejectsUnknownAndBadValues(t *testing.T) {
	for _, bad := range [][2]string{{"no.such.property", "1"}, {"num.partitions", "0"}, {"log.retention.ms", "soon"}, {"listeners", "FOO://h:1"}} {
		if _, err := Load("", [][2]string{bad}); err == nil {
			t.Errorf("Load accepted %s=%s", bad[0], bad[1])
		}
	}
	b, err := Load("", [][2]string{{"log.retention.hours", "2"}, {"broker.id", "7"}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Int("log.retention.ms") != 7200000 || b.NodeID() != 7 {
		t.Fatalf("aliases: retention %d node %d", b.Int("log.retention.ms"), b.NodeID())
	}
}

func TestVotersAndListeners(t *testing.T) {
	b, err := Load("", [][2]string{
		{"node.id", "2"},
		{"listeners", "PLAINTEXT://10.0.1.2:9092,REPLICATION://10.0.2.2:9093,CONTROLLER://10.0.2.2:9094"},
		{"inter.broker.listener.name", "REPLICATION"},
		{"controller.quorum.voters", "1@10.0.2.1:9094,2@10.0.2.2:9094"},
	})
	if err != nil {
		t.Fatal(err)
	}
	client, inter, err := b.Endpoints()
	if err != nil || client.Addr() != "10.0.1.2:9092" || inter.Addr() != "10.0.2.2:9093" {
		t.Fatalf("endpoints %v %v %v", client, inter, err)
	}
	ls, _ := b.Listeners()
	if len(ls) != 2 {
		t.Fatalf("client listeners %v (the controller listener is not served to clients)", ls)
	}
	if addr, _ := b.ControllerListener(); addr != "10.0.2.2:9094" {
		t.Fatalf("controller listener %q", addr)
	}
	voters, err := b.Voters()
	if err != nil || len(voters) != 2 || voters[1].Addr != "10.0.2.2:9094" {
		t.Fatalf("voters %v %v", voters, err)
	}
	for _, bad := range []string{"1@h", "x@h:1", "1@h:1,1@h:2"} {
		b, err := Load("", [][2]string{{"controller.quorum.voters", bad}})
		if err == nil {
			_, err = b.Voters()
		}
		if err == nil {
			t.Errorf("voters %q accepted", bad)
		}
	}
}

func TestDynamicConfigs(t *testing.T) {
	b, _ := Load("", nil)
	if err := ValidateDynamic("log.dirs", "/x"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("read-only: %v", err)
	}
	if err := ValidateDynamic("log.retention.ms", "-5"); err == nil {
		t.Fatal("invalid value accepted")
	}
	d := b.WithDynamic(map[string]string{"log.retention.ms": "1000"})
	if d.Int("log.retention.ms") != 1000 || d.Source("log.retention.ms") != SourceDynamicDefaultBroker || b.Int("log.retention.ms") == 1000 {
		t.Fatal("WithDynamic did not layer (or modified the base)")
	}
	if tc := d.TopicConfig(nil); tc.Int("retention.ms") != 1000 {
		t.Fatalf("topic default %d", tc.Int("retention.ms"))
	}
}

func TestConnectionsPerIPOverrides(t *testing.T) {
	b, err := Load("", [][2]string{{"max.connections.per.ip.overrides", "127.0.0.2:5, [::1]:7,localhost:3"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.ConnectionsPerIPOverrides()
	if err != nil {
		t.Fatal(err)
	}
	if m[netip.MustParseAddr("127.0.0.2")] != 5 || m[netip.MustParseAddr("::1")] != 3 && m[netip.MustParseAddr("::1")] != 7 {
		t.Fatalf("overrides %v", m)
	}
	if b.Int("queued.max.request.bytes") != 100<<20 || b.Int("connections.max.idle.ms") != 600000 {
		t.Fatalf("defaults: queued.max.request.bytes %d connections.max.idle.ms %d", b.Int("queued.max.request.bytes"), b.Int("connections.max.idle.ms"))
	}
	for _, bad := range [][2]string{
		{"max.connections.per.ip.overrides", "127.0.0.1"},
		{"max.connections.per.ip.overrides", "127.0.0.1:many"},
		{"queued.max.request.bytes", "0"},
		{"max.connections", "-1"},
	} {
		if _, err := Load("", [][2]string{bad}); err == nil {
			t.Errorf("Load accepted %s=%s", bad[0], bad[1])
		}
	}
	if _, err := Load("", [][2]string{{"queued.max.request.bytes", "-1"}}); err != nil {
		t.Errorf("queued.max.request.bytes=-1 (unbounded, Kafka's default) refused: %v", err)
	}
}

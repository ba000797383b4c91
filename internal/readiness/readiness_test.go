package readiness

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/server/servertest"
)

func TestEvaluate(t *testing.T) {
	part := func(p, leader int32, replicas, isr []int32) kmsg.MetadataResponseTopicPartition {
		return kmsg.MetadataResponseTopicPartition{Partition: p, Leader: leader, Replicas: replicas, ISR: isr}
	}
	name := "t"
	md := &kmsg.MetadataResponse{
		Brokers: []kmsg.MetadataResponseBroker{{NodeID: 1}, {NodeID: 2}},
		Topics: []kmsg.MetadataResponseTopic{{Topic: &name, Partitions: []kmsg.MetadataResponseTopicPartition{
			part(0, 1, []int32{1, 2, 3}, []int32{1, 2, 3}),
			part(1, 2, []int32{2, 3, 1}, []int32{2, 1}), // 3 is behind
			part(2, -1, []int32{3, 1}, []int32{3}),      // 1 is behind, no leader
			part(3, 2, []int32{2, 3}, []int32{2, 3}),    // not on 1
		}}},
	}
	s := Evaluate(md, 1)
	if !s.Registered || s.Hosted != 3 || !slices.Equal(s.OutOfISR, []string{"t-2"}) ||
		!slices.Equal(s.UnderReplicated, []string{"t-1", "t-2"}) || !slices.Equal(s.Leaderless, []string{"t-2"}) {
		t.Fatalf("node 1: %+v", s)
	}
	if s.Ready(false) || s.Ready(true) {
		t.Fatal("node 1 is out of the ISR of t-2 but ready")
	}
	s = Evaluate(md, 2)
	if !s.Ready(false) || s.Ready(true) {
		t.Fatalf("node 2 is in every ISR it belongs to, the cluster is not: %+v", s)
	}
	if s = Evaluate(md, 3); s.Registered || s.Ready(false) {
		t.Fatalf("node 3 is not registered: %+v", s)
	}
	if !strings.Contains(s.String(), "not registered") {
		t.Errorf("String() = %q", s.String())
	}
}

// TestMainSingleNode: a one-node broker with a topic is ready, a node id
// the cluster does not know is not, and bad flags are errors.
func TestMainSingleNode(t *testing.T) {
	b := servertest.Start(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "ready"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Main(ctx, []string{"--brokers", b.Addr, "--node", "1", "--all", "--wait", "20s"}, &out); err != nil {
		t.Fatalf("node 1: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "node 1 ready") || !strings.Contains(out.String(), "hosts 3 partitions") {
		t.Errorf("output %q", out.String())
	}
	out.Reset()
	if err := Main(ctx, []string{"--brokers", b.Addr, "--node", "7"}, &out); err == nil {
		t.Fatalf("node 7 does not exist but is ready:\n%s", out.String())
	}
	if err := Main(ctx, []string{"--brokers", b.Addr, "--node", "7", "--wait", "300ms"}, &out); err == nil {
		t.Fatal("waiting for node 7 succeeded")
	}
	for _, args := range [][]string{{}, {"--node", "1", "extra"}, {"--node", "1", "--brokers", " , "}} {
		if err := Main(ctx, args, &out); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

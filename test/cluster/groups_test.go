package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// TestGroupCoordinatorFailover: a consumer group commits offsets, the
// broker coordinating it is killed -9, and a member of the same group finds
// the new coordinator (the new leader of the group's replicated
// __consumer_offsets partition), resumes exactly at the committed offsets
// and consumes the rest: nothing committed is re-delivered, nothing skipped.
func TestGroupCoordinatorFailover(t *testing.T) {
	const (
		topic   = "grouped"
		group   = "failover-group"
		records = 600
	)
	c := testcluster.StartCluster(t, 3,
		testcluster.WithSet("group.initial.rebalance.delay.ms", "0"),
		testcluster.WithSet("offsets.topic.num.partitions", "6"),
		testcluster.WithSet("replica.lag.time.max.ms", "3000"))
	adm := admin(t, c.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 6, 3, map[string]*string{"min.insync.replicas": ptr("2")}, topic); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := range records {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%17)), Value: []byte(fmt.Sprint(i))}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}

	consumer := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.SessionTimeout(6*time.Second), kgo.RequestTimeoutOverhead(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	seen := map[string]int{}
	first := consumer()
	for n := 0; n < records/2; {
		fs := first.PollRecords(ctx, records/2-n)
		if ctx.Err() != nil {
			t.Fatalf("first member: %v after %d records", ctx.Err(), n)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++; n++ })
		if err := first.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	committed := len(seen)
	first.Close() // leaves the group; its offsets stay

	coord := adm.FindGroupCoordinators(ctx, group)[group]
	if coord.Err != nil {
		t.Fatalf("find coordinator: %v", coord.Err)
	}
	t.Logf("killing coordinator %d of %s after %d committed records", coord.NodeID, group, committed)
	c.Node(coord.NodeID).Kill()

	second := consumer()
	defer second.Close()
	for len(seen) < records {
		fs := second.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("second member: %v with %d of %d records", ctx.Err(), len(seen), records)
		}
		fs.EachRecord(func(r *kgo.Record) {
			k := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			if seen[k] > 0 {
				t.Errorf("record %s delivered again after its offset was committed", k)
			}
			seen[k]++
		})
	}
	after := adm.FindGroupCoordinators(ctx, group)[group]
	if after.Err != nil || after.NodeID == coord.NodeID {
		t.Fatalf("coordinator after the kill: %d (%v), was %d", after.NodeID, after.Err, coord.NodeID)
	}
	t.Logf("new coordinator %d; all %d records consumed, none twice", after.NodeID, records)
}

func ptr(s string) *string { return &s }

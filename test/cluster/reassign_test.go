package cluster

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReassignment moves a partition holding acknowledged data from brokers
// {1, 2} to {2, 3}: the new replica catches up, the move completes (no
// reassignment listed, replicas {2, 3}, broker 1's copy gone from the ISR),
// and after broker 2 is killed broker 3 serves every record.
func TestReassignment(t *testing.T) {
	c := replicationCluster(t)
	const topic = "moving"
	createTopic(t, c, topic, []int32{1, 2})
	produceN(t, producer(t, c.Addrs(), topic), 0, 2000)

	adm := admin(t, c.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign(topic, 0, []int32{2, 3})
	res, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[topic][0]; r.Err != nil {
		t.Fatalf("reassign: %v", r.Err)
	}
	took := waitFor(t, 30*time.Second, "reassignment completes", func() error {
		listed, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			return err
		}
		if len(listed) > 0 && len(listed[topic]) > 0 {
			return fmt.Errorf("still in progress: %+v", listed[topic][0])
		}
		v, err := nodeView(ctx, c.Node(3).Addr())
		if err != nil {
			return err
		}
		p := v.topics[topic][0]
		r := slices.Clone(p.Replicas)
		slices.Sort(r)
		if !slices.Equal(r, []int32{2, 3}) || slices.Contains(p.ISR, 1) || len(p.ISR) != 2 {
			return fmt.Errorf("replicas %v isr %v", p.Replicas, p.ISR)
		}
		return nil
	})
	t.Logf("moved %s-0 from {1,2} to {2,3} in %v", topic, took.Round(time.Millisecond))

	// Broker 3 now holds the data: with 2 gone it is the only replica left.
	c.Node(2).Kill()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Node(1).Addr(), c.Node(3).Addr()),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got [][]byte
	for len(got) < 2000 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 2000 records from the reassigned replica", len(got))
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r.Value) })
	}
	for i, v := range got {
		if !bytes.Equal(v, []byte(strconv.Itoa(i))) {
			t.Fatalf("record %d is %q", i, v)
		}
	}
}

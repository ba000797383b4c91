package cluster

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// createSmallSegmentTopic creates topic (1 partition, RF=3,
// min.insync.replicas=2, 64 KiB segments) and waits for a full ISR on
// every node.
func createSmallSegmentTopic(t *testing.T, c *testcluster.Cluster, topic string) {
	t.Helper()
	createTopicConfigs(t, c, topic, nil, map[string]string{"min.insync.replicas": "2", "segment.bytes": "65536"})
}

// produceValues produces n records prefix-i with acks=all and returns
// offset -> value of each (all must be acknowledged).
func produceValues(t *testing.T, cl *kgo.Client, prefix string, n int) map[int64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return testcluster.ProduceAcked(ctx, t, cl, "", prefix, n)
}

// TestDamagedReplicaHeals (RF=3): a follower's log is damaged on disk (16
// bytes overwritten in an older segment, or in the active one) while it is
// stopped. After its restart the cluster keeps acknowledging writes
// (liveness), the damaged replica truncates to its last intact batch,
// re-fetches from the leader and rejoins the ISR with a log byte-identical
// to the leader's, it never becomes leader meanwhile, and every
// acknowledged record is read back from the leader (safety).
func TestDamagedReplicaHeals(t *testing.T) {
	for _, where := range []string{"middle", "active"} {
		t.Run(where, func(t *testing.T) {
			c := replicationCluster(t)
			topic := "damaged-" + where
			createSmallSegmentTopic(t, c, topic)
			cl := producer(t, c.Addrs(), topic, kgo.ProducerBatchMaxBytes(8<<10), kgo.ProducerBatchCompression(kgo.NoCompression()))
			acked := produceValues(t, cl, "a", 20000)
			leader, _, err := partitionState(c.Node(1).Addr(), topic)
			if err != nil {
				t.Fatal(err)
			}
			lead := c.Node(leader)
			var f *testcluster.Node
			for _, nd := range c.Nodes {
				if nd.ID() != leader {
					f = nd
					break
				}
			}
			waitFor(t, 20*time.Second, "follower caught up", func() error {
				a, err1 := partitionLog(lead, topic)
				b, err2 := partitionLog(f, topic)
				if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
					return fmt.Errorf("leader %d bytes, follower %d bytes (%v %v)", len(a), len(b), err1, err2)
				}
				return nil
			})
			if err := f.Stop(); err != nil {
				t.Fatal(err)
			}
			files, err := f.SegmentFiles(topic, 0)
			if err != nil || len(files) < 5 {
				t.Fatalf("%d segments (%v)", len(files), err)
			}
			target := files[2]
			if where == "active" {
				target = files[len(files)-1]
			}
			if err := testcluster.DamageFile(target, 0.5); err != nil {
				t.Fatal(err)
			}
			// Watch the leader while the damaged replica comes back.
			var becameLeader atomic.Int32
			stop := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if l, _, err := partitionState(lead.Addr(), topic); err == nil && l == f.ID() {
						becameLeader.Store(1)
					}
				}
			}()
			restartedAt := time.Now()
			f.Restart(t)
			for off, v := range produceValues(t, cl, "b", 2000) {
				acked[off] = v
			}
			healed := waitFor(t, 60*time.Second, "damaged replica back in the ISR with the leader's log", func() error {
				a, err1 := partitionLog(lead, topic)
				b, err2 := partitionLog(f, topic)
				if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
					return fmt.Errorf("leader %d bytes, follower %d bytes (%v %v)", len(a), len(b), err1, err2)
				}
				_, isr, err := partitionState(lead.Addr(), topic)
				if err == nil && !slices.Contains(isr, f.ID()) {
					err = fmt.Errorf("ISR %v", isr)
				}
				return err
			})
			close(stop)
			<-watched
			t.Logf("damaged replica healed and rejoined the ISR %v after its restart began (%v of waiting after the new writes)",
				time.Since(restartedAt).Round(time.Millisecond), healed.Round(time.Millisecond))
			if becameLeader.Load() != 0 {
				t.Fatal("the damaged replica became leader while healthy ISR members existed")
			}
			if !strings.Contains(f.LogTail(2000), "truncated damaged follower log") {
				t.Error("the damaged replica did not report its truncation")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := testcluster.ReadPartition(ctx, lead.Addr(), topic, 0, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			for off, v := range acked {
				if got.Values[off] != v {
					t.Fatalf("acknowledged offset %d reads %q, want %q", off, got.Values[off], v)
				}
			}
			t.Logf("all %d acknowledged records read back", len(acked))
		})
	}
}

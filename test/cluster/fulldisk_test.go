package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// TestFollowerFullDisk fills the disk of one follower of an RF=3 partition
// (min.insync.replicas=2) while an acks=all producer runs: the other two
// brokers go on acknowledging (the full follower leaves the ISR); once
// space is freed the follower catches up without a restart, rejoins the
// ISR, and its log is byte-identical to the leader's.
func TestFollowerFullDisk(t *testing.T) {
	mnt := testcluster.MountTmpfs(t, "20m")
	c := replicationCluster(t, testcluster.ForNode(3, testcluster.WithDataDir(filepath.Join(mnt, "data"))))
	const topic = "followerfull"
	createTopic(t, c, topic, []int32{1, 2, 3})
	cl := producer(t, c.Addrs(), topic)
	produceN(t, cl, 0, 100)

	ballast := filepath.Join(mnt, "ballast")
	testcluster.FillDisk(t, ballast, 512<<10)
	// 3 MB more than node 3 has room for.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	for i := range 100 {
		value := make([]byte, 30<<10)
		rand.Read(value) // incompressible: the producer compresses
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
			t.Fatalf("produce record %d with a follower's disk full: %v", i, err)
		}
	}
	t.Logf("100 records of 30 KiB acknowledged in %v with node 3's disk full", time.Since(start).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "node 3 out of the ISR", func() error {
		if _, isr, err := partitionState(c.Node(1).Addr(), topic); err != nil || slices.Contains(isr, 3) {
			return errorOr(err, "ISR %v", isr)
		}
		return nil
	})
	if !c.Node(3).Running() {
		t.Fatalf("node 3 exited with its disk full:\n%s", c.Node(3).LogTail(40))
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 60*time.Second, "node 3 back in the ISR after space was freed", func() error {
		if _, isr, err := partitionState(c.Node(1).Addr(), topic); err != nil || len(isr) != 3 {
			return errorOr(err, "ISR %v", isr)
		}
		return nil
	})
	t.Logf("node 3 rejoined the ISR %v after space was freed", took.Round(time.Millisecond))
	produceN(t, cl, 100, 200)
	waitFor(t, 30*time.Second, "node 3's log byte-identical to the leader's", func() error {
		a, err := partitionLog(c.Node(1), topic)
		if err != nil {
			return err
		}
		b, err := partitionLog(c.Node(3), topic)
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return errorOr(nil, "leader %d bytes, node 3 %d bytes", len(a), len(b))
		}
		return nil
	})
}

// errorOr returns err, or a new error from format when err is nil.
func errorOr(err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	return fmt.Errorf(format, args...)
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// TestLogDirFailure (KIP-112): every node has two log dirs; one of node 1's
// fails (replaced by a file, so its next segment roll fails) while records
// are produced with acks=all. That dir goes offline alone: node 1 leaves
// the ISR and the leadership of the partitions in it, stays in the ISR of
// those in its other dir, DescribeLogDirs reports the failed dir with
// KAFKA_STORAGE_ERROR and the other with its partitions, and every
// acknowledged record is read back.
func TestLogDirFailure(t *testing.T) {
	const topic, parts, perRound = "jbod-fail", 6, 300
	base := t.TempDir()
	dirsOf := func(id int32) []string {
		return []string{filepath.Join(base, fmt.Sprintf("n%d-a", id)), filepath.Join(base, fmt.Sprintf("n%d-b", id))}
	}
	var opts []testcluster.Option
	for id := range int32(3) {
		opts = append(opts, testcluster.ForNode(id+1, testcluster.WithSet("log.dirs", strings.Join(dirsOf(id+1), ","))))
	}
	c := replicationCluster(t, opts...)
	adm := admin(t, c.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, parts, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2"), "segment.bytes": kadm.StringPtr("1024")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	state := func() (kadm.PartitionDetails, error) {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return nil, err
		}
		td := md.Topics[topic]
		if td.Err != nil {
			return nil, td.Err
		}
		return td.Partitions, nil
	}
	waitFor(t, 20*time.Second, "every partition with a full ISR", func() error {
		ps, err := state()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if len(p.ISR) != 3 || p.Leader < 0 {
				return fmt.Errorf("partition %d: leader %d, ISR %v", p.Partition, p.Leader, p.ISR)
			}
		}
		if len(ps) != parts {
			return fmt.Errorf("%d partitions", len(ps))
		}
		return nil
	})
	cl := producer(t, c.Addrs(), topic, kgo.ProducerBatchMaxBytes(512), kgo.RecordPartitioner(kgo.RoundRobinPartitioner())) // every partition rolls
	produceN(t, cl, 0, perRound)

	// Which of node 1's partitions live in the dir that fails.
	failed := dirsOf(1)[1]
	inFailed := map[int32]bool{}
	entries, err := os.ReadDir(failed)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n, ok := strings.CutPrefix(e.Name(), topic+"-"); ok {
			i, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("partition dir %s", e.Name())
			}
			inFailed[int32(i)] = true
		}
	}
	if len(inFailed) == 0 || len(inFailed) == parts {
		t.Fatalf("node 1 has %d of %d partitions in %s; want some in each dir", len(inFailed), parts, failed)
	}
	if err := os.RemoveAll(failed); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(failed, []byte("a failed disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	produceN(t, cl, perRound, 3*perRound) // rolls hit the failed dir

	waitFor(t, 30*time.Second, "node 1 out of the ISR and leadership of the failed dir's partitions only", func() error {
		ps, err := state()
		if err != nil {
			return err
		}
		for _, p := range ps {
			in := slices.Contains(p.ISR, 1)
			switch {
			case inFailed[p.Partition] && (in || p.Leader == 1):
				return fmt.Errorf("partition %d (failed dir): leader %d, ISR %v", p.Partition, p.Leader, p.ISR)
			case !inFailed[p.Partition] && !in:
				return fmt.Errorf("partition %d (working dir): ISR %v lost node 1", p.Partition, p.ISR)
			case p.Leader < 0:
				return fmt.Errorf("partition %d offline", p.Partition)
			}
		}
		return nil
	})

	// DescribeLogDirs on node 1.
	all, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := all[1]
	if d := dirs[failed]; !errors.Is(d.Err, kerr.KafkaStorageError) {
		t.Fatalf("failed dir described with error %v, want KAFKA_STORAGE_ERROR (dirs %v)", d.Err, dirs)
	}
	working := dirs[dirsOf(1)[0]]
	if working.Err != nil || len(working.Topics[topic]) != parts-len(inFailed) {
		t.Fatalf("working dir: err %v, %d partitions of %s, want %d", working.Err, len(working.Topics[topic]), topic, parts-len(inFailed))
	}

	// Still writable everywhere, and every acknowledged record is there.
	produceN(t, cl, 3*perRound, 4*perRound)
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	seen := map[string]bool{}
	for len(seen) < 4*perRound && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	for i := range 4 * perRound {
		if !seen[strconv.Itoa(i)] {
			t.Fatalf("record %d missing (%d of %d read)", i, len(seen), 4*perRound)
		}
	}
	if !c.Node(1).Running() {
		t.Fatal("node 1 exited")
	}
}

package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/record"
	"strand/internal/testcluster"
)

// cutTail simulates a power loss on a stopped node: the last batches of
// topic's partition 0 (its active segment's tail, which a power loss can
// take when it was not fsynced yet) are cut off. It returns how many
// records it removed.
func cutTail(t *testing.T, n *testcluster.Node, topic string, batches int) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(n.DataDir(), topic+"-0", "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("segments of %s-0 on node %d: %v %v", topic, n.ID(), files, err)
	}
	slices.Sort(files)
	active := files[len(files)-1]
	b, err := os.ReadFile(active)
	if err != nil {
		t.Fatal(err)
	}
	// Batch starts: every batch is baseOffset (8 bytes), batchLength (4),
	// then batchLength bytes.
	var starts []int
	var records []int
	for pos := 0; pos+12 <= len(b); {
		size := 12 + int(binary.BigEndian.Uint32(b[pos+8:]))
		if pos+size > len(b) {
			break
		}
		h, err := record.ParseHeader(b[pos : pos+size])
		if err != nil {
			t.Fatalf("%s at %d: %v", active, pos, err)
		}
		starts, records = append(starts, pos), append(records, int(h.NumRecords))
		pos += size
	}
	if len(starts) <= batches {
		t.Fatalf("%s holds %d batches; want more than %d", active, len(starts), batches)
	}
	cut := starts[len(starts)-batches]
	removed := 0
	for _, r := range records[len(records)-batches:] {
		removed += r
	}
	if err := os.Truncate(active, int64(cut)); err != nil {
		t.Fatal(err)
	}
	return removed
}

// TestLeaderPowerLoss simulates a power loss on a partition's leader: it is
// killed -9, the tail of its log (the last batches, as if never fsynced) is
// cut off, and it restarts at once - well within the session timeout, so
// the controller has not fenced it. It must not lead on at the same leader
// epoch with a shorter log than its followers, or the replicas diverge
// without any error (followers have the old tail, the leader writes new
// records at the same offsets and epoch): the restart must lead to a new
// leader epoch (the controller bumps it when a broker registers again, or
// elects another ISR member), followers then reconcile by epoch, and after
// more writes all three replicas hold byte-identical logs, with every record
// acknowledged after the restart present.
//
// The heartbeat interval is 1 s here so the controller's dead-process probe
// (two missed heartbeats) cannot fence the leader before it is back: the
// test exercises re-registration, not fencing.
func TestLeaderPowerLoss(t *testing.T) {
	c := replicationCluster(t, testcluster.WithSet("broker.heartbeat.interval.ms", "1000"))
	const topic = "power"
	createTopic(t, c, topic, nil)
	// Not idempotent: an idempotent producer's sequence numbers would make
	// the shortened leader refuse the new records until its followers had
	// fetched (and truncated), hiding the divergence.
	cl := producer(t, c.Addrs(), topic, kgo.DisableIdempotentWrite())
	for i := range 20 { // 20 rounds of 50: many batches to cut from
		produceN(t, cl, i*50, i*50+50)
	}
	leader, _, err := partitionState(c.Node(1).Addr(), topic)
	if err != nil {
		t.Fatal(err)
	}
	waitIdentical(t, c, topic, 20*time.Second)
	n := c.Node(leader)
	n.Kill()
	cut := cutTail(t, n, topic, 3)
	// Records produced while it is down reach it the moment it is back,
	// before its followers' fetchers (backing off after the failed
	// connections) fetch again: without a new epoch they would find
	// nothing wrong and fetch on from their own, longer log end.
	produced := make(chan error, 1)
	go func() { produced <- produceAll(cl, 1000, 1500) }()
	n.Restart(t)
	t.Logf("leader %d killed, %d records cut from its log tail, restarted", leader, cut)
	if err := <-produced; err != nil {
		t.Fatalf("records produced across the restart were not all acknowledged (%v): if the restarted leader "+
			"kept its leader epoch, its followers cannot reconcile with its shorter log", err)
	}
	logs := waitIdentical(t, c, topic, 30*time.Second)
	// Every record acknowledged after the restart is there once; of the
	// 1000 before it, the cut ones may be gone (a real power loss only
	// takes records that were not acknowledged yet: they are fsynced
	// before acks=all answers).
	seen := map[int]int{}
	if err := record.Split(logs, func(b []byte) error {
		var bad error
		err := record.ForEach(b, func(r *record.Record) {
			i, err := strconv.Atoi(string(r.Value))
			if err != nil && bad == nil {
				bad = fmt.Errorf("offset %d: value %q: %w", r.Offset, r.Value, err)
			}
			seen[i]++
		})
		if err != nil {
			return err
		}
		return bad
	}); err != nil {
		t.Fatalf("decoding the replicated log: %v", err)
	}
	lostBefore := 0
	for i := range 1500 {
		switch {
		case seen[i] > 1 && i >= 1000:
			t.Errorf("record %d acknowledged after the restart stored %d times", i, seen[i])
		case seen[i] == 0 && i >= 1000:
			t.Errorf("record %d acknowledged after the restart is missing", i)
		case seen[i] == 0:
			lostBefore++
		}
	}
	now, _, _ := partitionState(c.Node(1).Addr(), topic)
	t.Logf("replicas byte-identical (%d bytes); leader now %d; %d of the %d cut records are gone from every replica", len(logs), now, lostBefore, cut)
}

// waitIdentical waits until topic's partition 0 has byte-identical logs on
// every node and returns them.
func waitIdentical(t *testing.T, c *testcluster.Cluster, topic string, timeout time.Duration) []byte {
	t.Helper()
	var first []byte
	waitFor(t, timeout, "byte-identical partition logs on all replicas", func() error {
		var logs [][]byte
		for _, nd := range c.Nodes {
			b, err := partitionLog(nd, topic)
			if err != nil {
				return err
			}
			logs = append(logs, b)
		}
		for i := 1; i < len(logs); i++ {
			if !bytes.Equal(logs[0], logs[i]) {
				return fmt.Errorf("node 1 has %d log bytes, node %d has %d, and they differ", len(logs[0]), i+1, len(logs[i]))
			}
		}
		first = logs[0]
		return nil
	})
	return first
}

// produceAll produces values from..to-1 (as decimal strings) and returns
// the first error of any record (callable from any goroutine).
func produceAll(cl *kgo.Client, from, to int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) { errs <- err })
	}
	var first error
	for i := from; i < to; i++ {
		if err := <-errs; err != nil && first == nil {
			first = fmt.Errorf("produce: %w", err)
		}
	}
	return first
}

package group

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/txn"
)

func (h *harness) txnCommit(group string, pid int64, offset int64) {
	h.t.Helper()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch, req.Generation = "t", group, pid, 0, -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = "in"
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if code := h.c.TxnOffsetCommit(req)().Topics[0].Partitions[0].ErrorCode; code != 0 {
		h.t.Fatalf("TxnOffsetCommit: code %d", code)
	}
}

func (h *harness) marker(pid int64, commit bool) {
	h.t.Helper()
	b, err := txn.BuildMarker(pid, 0, commit, 0, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.log.Append(0, b); err != nil {
		h.t.Fatal(err)
	}
	h.c.CompleteTxn(0, pid, commit)
}

// TestTxnOffsets: transactional offsets are invisible until their COMMIT
// marker, dropped by ABORT, and a restart replays both outcomes and keeps
// an open transaction's offsets pending.
func TestTxnOffsets(t *testing.T) {
	h := newHarness(t)
	h.txnCommit("g", 7, 10)
	if got := h.fetch("g", "in", 0); got != -1 {
		t.Fatalf("pending offset visible: %d", got)
	}
	h.marker(7, true)
	if got := h.fetch("g", "in", 0); got != 10 {
		t.Fatalf("after commit: %d, want 10", got)
	}
	h.txnCommit("g", 7, 20)
	h.marker(7, false)
	h.txnCommit("g", 8, 30) // left open
	if got := h.fetch("g", "in", 0); got != 10 {
		t.Fatalf("after abort: %d, want 10", got)
	}
	h.restart()
	if got := h.fetch("g", "in", 0); got != 10 {
		t.Fatalf("after restart: %d, want 10", got)
	}
	h.marker(8, true) // the open transaction commits after the reload
	if got := h.fetch("g", "in", 0); got != 30 {
		t.Fatalf("open transaction committed after restart: %d, want 30", got)
	}
}

// TestTxnOffsetsEarlyMarker: a marker that reaches the coordinator while
// its partition is loading (after the replay read the log) still commits
// the pending offsets once the load completes.
func TestTxnOffsetsEarlyMarker(t *testing.T) {
	h := newHarness(t)
	h.txnCommit("g", 7, 10)
	h.c.Close()
	c := New(h.cfg, h.log)
	t.Cleanup(c.Close)
	// What Load does, with the marker arriving between the replay and
	// the shard being marked loaded.
	sh := &shard{partition: 0, groups: map[string]*group{}}
	c.shards[0] = sh
	groups, _, err := c.replay(sh)
	if err != nil {
		t.Fatal(err)
	}
	c.CompleteTxn(0, 7, true)
	sh.mu.Lock()
	sh.groups, sh.loaded = groups, true
	sh.mu.Unlock()
	c.applyEarlyMarkers(sh)
	h.c = c
	if got := h.fetch("g", "in", 0); got != 10 {
		t.Fatalf("offset after an early marker: %d, want 10", got)
	}
}

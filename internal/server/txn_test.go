package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnNodeSettings keep transaction tests fast.
var txnNodeSettings = [][2]string{
	{"group.initial.rebalance.delay.ms", "0"},
	{"offsets.topic.num.partitions", "4"},
	{"transaction.state.log.num.partitions", "4"},
	{"transaction.abort.timed.out.transaction.cleanup.interval.ms", "200"},
}

// consumeAll reads topic from the start at an isolation level until it
// has seen every partition up to its end (per ListOffsets at that level).
func consumeAll(t *testing.T, n *node, topic string, committed bool) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := n.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []string
	c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(c)
		if c.Err() != nil {
			return out
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
}

func produceTxn(t *testing.T, cl *kgo.Client, topic string, values []string, commit bool) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		r := &kgo.Record{Topic: topic, Value: []byte(v), Partition: int32(i % 2)}
		if err := cl.ProduceSync(ctx(t), r).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	end := kgo.TryAbort
	if commit {
		end = kgo.TryCommit
	}
	if err := cl.EndTransaction(ctx(t), end); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// TestTransactionCommitAbortVisibility: committed transactions are seen by
// read_committed consumers, aborted ones only by read_uncommitted ones.
func TestTransactionCommitAbortVisibility(t *testing.T) {
	n := startNode(t, txnNodeSettings...)
	admin := n.client()
	createTopic(t, admin, "tx", 2, nil)
	cl := n.client(kgo.TransactionalID("tx-1"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceTxn(t, cl, "tx", []string{"c1", "c2", "c3"}, true)
	produceTxn(t, cl, "tx", []string{"a1", "a2"}, false)
	produceTxn(t, cl, "tx", []string{"c4", "c5"}, true)

	got := consumeAll(t, n, "tx", true)
	want := map[string]bool{"c1": true, "c2": true, "c3": true, "c4": true, "c5": true}
	if len(got) != len(want) {
		t.Fatalf("read_committed got %v, want %v", got, want)
	}
	for _, v := range got {
		if !want[v] {
			t.Fatalf("read_committed got %q (all: %v)", v, got)
		}
	}
	all := consumeAll(t, n, "tx", false)
	if len(all) != 7 {
		t.Fatalf("read_uncommitted got %v, want 7 records", all)
	}
}

// TestTransactionOpenHoldsLSO: while a transaction is open its records and
// everything after them stay invisible to read_committed consumers.
func TestTransactionOpenHoldsLSO(t *testing.T) {
	n := startNode(t, txnNodeSettings...)
	admin := n.client()
	createTopic(t, admin, "open", 1, nil)
	plain := n.client(kgo.DefaultProduceTopic("open"))
	cl := n.client(kgo.TransactionalID("open-1"), kgo.DefaultProduceTopic("open"))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx(t), &kgo.Record{Value: []byte("txn")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := plain.ProduceSync(ctx(t), &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := consumeAll(t, n, "open", true); len(got) != 0 {
		t.Fatalf("read_committed saw %v past an open transaction", got)
	}
	if err := cl.EndTransaction(ctx(t), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := consumeAll(t, n, "open", true); len(got) != 2 {
		t.Fatalf("after commit read_committed saw %v, want txn and after", got)
	}
}

// TestTransactionZombieFenced: a second producer with the same
// transactional id fences the first: its writes and commit are refused.
func TestTransactionZombieFenced(t *testing.T) {
	n := startNode(t, txnNodeSettings...)
	admin := n.client()
	createTopic(t, admin, "z", 1, nil)
	old := n.client(kgo.TransactionalID("z-1"), kgo.DefaultProduceTopic("z"), kgo.RecordRetries(2))
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := old.ProduceSync(ctx(t), &kgo.Record{Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	newer := n.client(kgo.TransactionalID("z-1"), kgo.DefaultProduceTopic("z"))
	produceTxn(t, newer, "z", []string{"fresh"}, true) // its InitProducerId aborts the zombie's transaction
	err := old.ProduceSync(ctx(t), &kgo.Record{Value: []byte("zombie-2")}).FirstErr()
	if err == nil {
		err = old.EndTransaction(ctx(t), kgo.TryCommit)
	}
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("zombie's write/commit: %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	got := consumeAll(t, n, "z", true)
	if fmt.Sprint(got) != "[fresh]" {
		t.Fatalf("read_committed got %v, want [fresh]", got)
	}
}

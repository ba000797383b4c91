package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnNodeSettings keep transaction tests fast.
var txnNodeSettings = [][2]string{
	{"group.initial.rebalance.delay.ms", "0"},
	{"offsets.topic.num.partitions", "4"},
	{"transaction.state.log.num.partitions", "4"},
	{"transaction.abort.timed.out.transaction.cleanup.interval.ms", "200"},
}

// seal appends a non-transactional "end" record to each of partitions
// partitions of topic: consumeAll reads up to them.
func seal(t *testing.T, n *node, topic string, partitions int32) {
	t.Helper()
	cl := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range partitions {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Topic: topic, Partition: p, Value: []byte("end")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// consumeAll reads topic from the start at an isolation level until it
// has seen the "end" record (seal) of each of its partitions partitions,
// and returns the other values in the order read.
func consumeAll(t *testing.T, n *node, topic string, partitions int32, committed bool) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := n.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []string
	ended := map[int32]bool{}
	c := ctx(t)
	for int32(len(ended)) < partitions {
		fs := cl.PollFetches(c)
		if c.Err() != nil {
			t.Fatalf("consuming %s: %v; got %v", topic, c.Err(), out)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == "end" {
				ended[r.Partition] = true
			} else {
				out = append(out, string(r.Value))
			}
		})
	}
	return out
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

	seal(t, n, "tx", 2)
	got := consumeAll(t, n, "tx", 2, true)
	want := map[string]bool{"c1": true, "c2": true, "c3": true, "c4": true, "c5": true}
	if len(got) != len(want) {
		t.Fatalf("read_committed got %v, want %v", got, want)
	}
	for _, v := range got {
		if !want[v] {
			t.Fatalf("read_committed got %q (all: %v)", v, got)
		}
	}
	all := consumeAll(t, n, "tx", 2, false)
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
	adm := kadm.NewClient(admin)
	lso, err := adm.ListCommittedOffsets(ctx(t), "open")
	if err != nil || lso.Error() != nil {
		t.Fatal(err, lso.Error())
	}
	hw, err := adm.ListEndOffsets(ctx(t), "open")
	if err != nil || hw.Error() != nil {
		t.Fatal(err, hw.Error())
	}
	if o, _ := lso.Lookup("open", 0); o.Offset != 0 {
		t.Fatalf("LSO with an open transaction at offset 0 is %d", o.Offset)
	}
	if o, _ := hw.Lookup("open", 0); o.Offset != 2 {
		t.Fatalf("high watermark %d, want 2", o.Offset)
	}
	if err := cl.EndTransaction(ctx(t), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	seal(t, n, "open", 1)
	if got := consumeAll(t, n, "open", 1, true); len(got) != 2 {
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
	seal(t, n, "z", 1)
	got := consumeAll(t, n, "z", 1, true)
	if fmt.Sprint(got) != "[fresh]" {
		t.Fatalf("read_committed got %v, want [fresh]", got)
	}
}

// TestTransactionGroupSessionExactlyOnce: franz-go's GroupTransactSession
// copies an input topic to an output topic (consume-transform-produce)
// with two members on a 3-node cluster, so markers go to other brokers;
// one member leaves midway (a rebalance). Every input record appears
// exactly once in the output for read_committed readers, and the group's
// committed offsets end at the input's end.
func TestTransactionGroupSessionExactlyOnce(t *testing.T) {
	nodes := startInProcessCluster(t, 3, txnNodeSettings...)
	n := nodes[0]
	admin := n.client()
	createTopic(t, admin, "in", 3, nil)
	createTopic(t, admin, "out", 3, nil)
	const total = 600
	in := n.client(kgo.DefaultProduceTopic("in"))
	for i := range total {
		if err := in.ProduceSync(ctx(t), &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	copied := make(chan int, total*2)
	run := func(name string, stop <-chan struct{}) chan error {
		done := make(chan error, 1)
		sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(n.addr), kgo.TransactionalID(name),
			kgo.ConsumerGroup("eos"), kgo.ConsumeTopics("in"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.DefaultProduceTopic("out"), kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond),
			kgo.FetchMaxPartitionBytes(2000), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer sess.Close()
			for {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				fs := sess.PollFetches(c)
				cancel()
				recs := fs.Records()
				if len(recs) == 0 {
					continue
				}
				if err := sess.Begin(); err != nil {
					done <- err
					return
				}
				for _, r := range recs {
					sess.Produce(context.Background(), &kgo.Record{Value: r.Value}, nil)
				}
				committed, err := sess.End(ctx(t), kgo.TryCommit)
				if err != nil {
					done <- fmt.Errorf("%s: end: %w", name, err)
					return
				}
				if committed {
					copied <- len(recs)
				}
			}
		}()
		return done
	}
	stopA, stopB := make(chan struct{}), make(chan struct{})
	doneA := run("eos-a", stopA)
	doneB := run("eos-b", stopB)
	sum := 0
	deadline := time.After(60 * time.Second)
	stoppedB := false
	for sum < total {
		select {
		case k := <-copied:
			sum += k
			if !stoppedB && sum >= total/3 {
				close(stopB) // member b leaves: a rebalance in the middle
				if err := <-doneB; err != nil {
					t.Fatal(err)
				}
				stoppedB = true
			}
		case err := <-doneA:
			t.Fatalf("member a stopped: %v", err)
		case <-deadline:
			t.Fatalf("copied %d of %d records", sum, total)
		}
	}
	close(stopA)
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	seal(t, n, "out", 3)
	got := consumeAll(t, n, "out", 3, true)
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for i := range total {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Errorf("record %d copied %d times (read_committed)", i, c)
		}
	}
	if len(got) != total {
		t.Fatalf("output has %d records, want %d", len(got), total)
	}
}

// lso returns partition 0's last stable offset of topic.
func lso(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	o, err := adm.ListCommittedOffsets(ctx(t), topic)
	if err != nil || o.Error() != nil {
		t.Fatal(err, o.Error())
	}
	l, _ := o.Lookup(topic, 0)
	return l.Offset
}

// TestTransactionSurvivesRestart: an open transaction is still open after
// the broker restarts (the partition rebuilds it from its log, the
// coordinator from __transaction_state), and the same producer commits it.
func TestTransactionSurvivesRestart(t *testing.T) {
	n := startNode(t, txnNodeSettings...)
	createTopic(t, n.client(), "rs", 1, nil)
	cl := n.client(kgo.TransactionalID("rs-1"), kgo.DefaultProduceTopic("rs"))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"x", "y"} {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	n.stop()
	n.start()
	adm := kadm.NewClient(n.client())
	waitFor(t, "partition back", 10*time.Second, func() bool {
		o, err := adm.ListEndOffsets(ctx(t), "rs")
		l, _ := o.Lookup("rs", 0)
		return err == nil && l.Err == nil && l.Offset == 2
	})
	if got := lso(t, adm, "rs"); got != 0 {
		t.Fatalf("LSO after restart %d, want 0 (transaction still open)", got)
	}
	if err := cl.EndTransaction(ctx(t), kgo.TryCommit); err != nil {
		t.Fatalf("commit after restart: %v", err)
	}
	seal(t, n, "rs", 1)
	if got := consumeAll(t, n, "rs", 1, true); fmt.Sprint(got) != "[x y]" {
		t.Fatalf("read_committed got %v, want [x y]", got)
	}
}

// TestTransactionTimeoutAborts: a transaction left open past its
// transaction.timeout.ms is aborted by the coordinator (the LSO moves past
// it, its records stay invisible) and its producer is fenced.
func TestTransactionTimeoutAborts(t *testing.T) {
	n := startNode(t, txnNodeSettings...)
	createTopic(t, n.client(), "to", 1, nil)
	cl := n.client(kgo.TransactionalID("to-1"), kgo.DefaultProduceTopic("to"), kgo.TransactionTimeout(time.Second))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx(t), &kgo.Record{Value: []byte("late")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(n.client())
	waitFor(t, "the coordinator to abort the transaction", 10*time.Second, func() bool { return lso(t, adm, "to") == 2 })
	if err := cl.EndTransaction(ctx(t), kgo.TryCommit); err == nil {
		t.Fatal("commit of a timed out transaction succeeded")
	}
	seal(t, n, "to", 1)
	if got := consumeAll(t, n, "to", 1, true); len(got) != 0 {
		t.Fatalf("read_committed got %v after the abort", got)
	}
	// Too long a timeout is refused.
	bad := n.client(kgo.TransactionalID("to-2"), kgo.DefaultProduceTopic("to"), kgo.TransactionTimeout(time.Hour))
	err := bad.BeginTransaction() // franz-go initialises the producer id here
	if err == nil {
		err = bad.ProduceSync(ctx(t), &kgo.Record{Value: []byte("never")}).FirstErr()
	}
	if err == nil || !errors.Is(err, kerr.InvalidTransactionTimeout) && !strings.Contains(err.Error(), "INVALID_TRANSACTION_TIMEOUT") {
		t.Fatalf("transaction.timeout.ms above the maximum: %v, want INVALID_TRANSACTION_TIMEOUT", err)
	}
}

// TestTransactionAdminAPIs: ListTransactions, DescribeTransactions and
// DescribeProducers (KIP-664) show an open transaction, its partitions and
// its first offset, and the state after it ends.
func TestTransactionAdminAPIs(t *testing.T) {
	n := startNode(t, txnNodeSettings...)
	admin := n.client()
	createTopic(t, admin, "adm", 1, nil)
	plain := n.client(kgo.DefaultProduceTopic("adm"))
	if err := plain.ProduceSync(ctx(t), &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := n.client(kgo.TransactionalID("adm-1"), kgo.DefaultProduceTopic("adm"))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx(t), &kgo.Record{Value: []byte("in txn")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(admin)
	listed, err := adm.ListTransactions(ctx(t), nil, []string{"Ongoing"})
	if err != nil {
		t.Fatal(err)
	}
	lt, ok := listed["adm-1"]
	if !ok || lt.State != "Ongoing" || len(listed) != 1 {
		t.Fatalf("ListTransactions(Ongoing) = %+v", listed)
	}
	described, err := adm.DescribeTransactions(ctx(t), "adm-1")
	if err != nil {
		t.Fatal(err)
	}
	dt := described["adm-1"]
	if dt.Err != nil || dt.State != "Ongoing" || dt.ProducerID != lt.ProducerID || len(dt.Topics["adm"]) != 1 || dt.StartTimestamp <= 0 {
		t.Fatalf("DescribeTransactions = %+v", dt)
	}
	producers, err := adm.DescribeProducers(ctx(t), kadm.TopicsSet{"adm": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	producers.EachProducer(func(p kadm.DescribedProducer) {
		if p.ProducerID == lt.ProducerID {
			found = p.CurrentTxnStartOffset == 1
		}
	})
	if !found {
		t.Fatalf("DescribeProducers: %+v, want producer %d with a transaction from offset 1", producers.SortedProducers(), lt.ProducerID)
	}
	if err := cl.EndTransaction(ctx(t), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	described, err = adm.DescribeTransactions(ctx(t), "adm-1")
	if err != nil || described["adm-1"].State != "CompleteAbort" {
		t.Fatalf("after abort: %+v %v", described, err)
	}
}

// TestTxnOffsetCommitPending: offsets committed in a transaction are
// invisible (and UNSTABLE_OFFSET_COMMIT with require_stable) until it
// commits; an aborted transaction's offsets are dropped.
func TestTxnOffsetCommitPending(t *testing.T) {
	n := startNode(t, txnNodeSettings...)
	cl := n.client()
	createTopic(t, cl, "src", 1, nil)
	id := "offs-1"
	// Make sure the coordinators exist (FindCoordinator creates their topics).
	for _, typ := range []int8{0, 1} {
		key := id
		if typ == 0 {
			key = "g"
		}
		waitFor(t, "coordinator", 10*time.Second, func() bool {
			req := kmsg.NewPtrFindCoordinatorRequest()
			req.CoordinatorKey, req.CoordinatorType = key, typ
			resp, err := req.RequestWith(ctx(t), cl)
			return err == nil && resp.ErrorCode == 0
		})
	}
	var pid int64
	var epoch int16
	waitFor(t, "InitProducerId", 10*time.Second, func() bool {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID, req.TransactionTimeoutMillis = &id, 60000
		resp, err := req.RequestWith(ctx(t), cl)
		pid, epoch = resp.ProducerID, resp.ProducerEpoch
		return err == nil && resp.ErrorCode == 0
	})
	fetch := func() (int64, int16) {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.Group, req.RequireStable = 7, "g", true
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = "src", []int32{0}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil || resp.ErrorCode != 0 {
			t.Fatal(err, resp.ErrorCode)
		}
		p := resp.Topics[0].Partitions[0]
		return p.Offset, p.ErrorCode
	}
	round := func(offset int64, commit bool) {
		add := kmsg.NewPtrAddOffsetsToTxnRequest()
		add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = id, pid, epoch, "g"
		if resp, err := add.RequestWith(ctx(t), cl); err != nil || resp.ErrorCode != 0 {
			t.Fatal("AddOffsetsToTxn", err, resp.ErrorCode)
		}
		tc := kmsg.NewPtrTxnOffsetCommitRequest()
		tc.TransactionalID, tc.Group, tc.ProducerID, tc.ProducerEpoch, tc.Generation = id, "g", pid, epoch, -1
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "src"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, offset
		rt.Partitions = append(rt.Partitions, rp)
		tc.Topics = append(tc.Topics, rt)
		if resp, err := tc.RequestWith(ctx(t), cl); err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatal("TxnOffsetCommit", err)
		}
		if _, code := fetch(); code != kerr.UnstableOffsetCommit.Code {
			t.Fatalf("pending offset: code %d, want UNSTABLE_OFFSET_COMMIT", code)
		}
		end := kmsg.NewPtrEndTxnRequest()
		end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = id, pid, epoch, commit
		if resp, err := end.RequestWith(ctx(t), cl); err != nil || resp.ErrorCode != 0 {
			t.Fatal("EndTxn", err, resp.ErrorCode)
		}
	}
	round(5, true)
	if off, code := fetch(); off != 5 || code != 0 {
		t.Fatalf("after commit: offset %d code %d, want 5", off, code)
	}
	round(9, false)
	if off, code := fetch(); off != 5 || code != 0 {
		t.Fatalf("after abort: offset %d code %d, want 5", off, code)
	}
	// The committed offset survives a restart (replayed with its marker).
	n.stop()
	n.start()
	waitFor(t, "offset after restart", 10*time.Second, func() bool {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = "g"
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = "src", []int32{0}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx(t), n.client())
		return err == nil && resp.ErrorCode == 0 && len(resp.Topics) == 1 && resp.Topics[0].Partitions[0].Offset == 5
	})
}

// TestTransactionAuthorization: with an authorizer, a principal without
// WRITE on the transactional id cannot start a transaction; one with WRITE
// on the id and the topic commits one; WriteTxnMarkers needs CLUSTER_ACTION.
func TestTransactionAuthorization(t *testing.T) {
	n := startSASLNode(t, append(append([][2]string{}, txnNodeSettings...), authzSets...)...)
	admin := n.as("admin")
	createTopic(t, admin, "secure", 1, nil)
	adm := kadm.NewClient(admin)
	mustACLs(t, adm, kadm.NewACLs().Allow("User:alice").Topics("secure").Operations(kadm.OpWrite, kadm.OpRead, kadm.OpDescribe))
	denied := n.as("alice", kgo.TransactionalID("alice-txn"), kgo.DefaultProduceTopic("secure"))
	err := denied.BeginTransaction()
	if err == nil {
		err = denied.ProduceSync(ctx(t), &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	if err == nil || !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) && !strings.Contains(err.Error(), "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") {
		t.Fatalf("transaction without WRITE on the id: %v", err)
	}
	mustACLs(t, adm, kadm.NewACLs().Allow("User:alice").TransactionalIDs("alice-txn").Operations(kadm.OpWrite, kadm.OpDescribe))
	allowed := n.as("alice", kgo.TransactionalID("alice-txn"), kgo.DefaultProduceTopic("secure"))
	produceTxn(t, allowed, "secure", []string{"ok"}, true)

	req := kmsg.NewPtrWriteTxnMarkersRequest()
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed = 1, 0, true
	mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
	mt.Topic, mt.Partitions = "secure", []int32{0}
	m.Topics = append(m.Topics, mt)
	req.Markers = append(req.Markers, m)
	resp, err := req.RequestWith(ctx(t), n.as("alice"))
	if err != nil || resp.Markers[0].Topics[0].Partitions[0].ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("WriteTxnMarkers without CLUSTER_ACTION: %v %+v", err, resp)
	}
}

package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// TestGroupTransactSessionKill9 is franz-go's GroupTransactSession
// consume-transform-produce on a 3-node cluster (input and output RF 3,
// min.insync.replicas 2): two members copy every record of "eos-in" to
// "eos-out" in transactions that also commit the group's offsets, and in
// the middle the broker coordinating one member's transactional id is
// killed -9 (it restarts once the copy has progressed without it). A member
// whose session fails starts a new one with the same transactional id (which
// aborts whatever it left open), as an application would. When the group's
// committed offsets reach the end of the input, a non-transactional seal is
// written to every output partition and a read_committed reader reads up to
// the seals: every input record must appear exactly once (a hanging
// transaction would hold the seal back and fail the read).
func TestGroupTransactSessionKill9(t *testing.T) {
	const (
		in, out, group = "eos-in", "eos-out", "eos-kill"
		total          = 3000
		parts          = 3
	)
	c := testcluster.StartCluster(t, 3,
		testcluster.WithSet("group.initial.rebalance.delay.ms", "0"),
		testcluster.WithSet("transaction.state.log.num.partitions", "6"),
		testcluster.WithSet("offsets.topic.num.partitions", "6"),
		testcluster.WithSet("replica.lag.time.max.ms", "3000"))
	adm := admin(t, c.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, topic := range []string{in, out} {
		if _, err := adm.CreateTopic(ctx, parts, 3, map[string]*string{"min.insync.replicas": ptr("2")}, topic); err != nil {
			t.Fatal(err)
		}
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.DefaultProduceTopic(in))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var wg sync.WaitGroup
	var perr atomic.Value
	for i := range total {
		wg.Add(1)
		prod.Produce(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				perr.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := perr.Load().(error); err != nil {
		t.Fatalf("produce input: %v", err)
	}

	var committedTxns, abortedTxns, restarts atomic.Int64
	stop := make(chan struct{})
	var members sync.WaitGroup
	member := func(txnID string) {
		defer members.Done()
		for {
			sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(c.Addrs()...), kgo.TransactionalID(txnID),
				kgo.ConsumerGroup(group), kgo.ConsumeTopics(in), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.DefaultProduceTopic(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
				kgo.RequestTimeoutOverhead(3*time.Second), kgo.TransactionTimeout(10*time.Second),
				kgo.FetchMaxWait(200*time.Millisecond), kgo.FetchMaxPartitionBytes(1500))
			if err != nil {
				t.Errorf("%s: new session: %v", txnID, err)
				return
			}
			err = copyLoop(sess, out, stop, &committedTxns, &abortedTxns)
			sess.Close()
			if err == nil {
				return
			}
			restarts.Add(1)
			t.Logf("%s: session failed, starting a new one: %v", txnID, err)
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	members.Add(2)
	go member("eos-kill-a")
	go member("eos-kill-b")
	defer func() { // on a t.Fatal too
		select {
		case <-stop:
		default:
			close(stop)
		}
		members.Wait()
	}()

	// groupDone reports how many input records the group has committed.
	ends := map[int32]int64{}
	lo, err := adm.ListEndOffsets(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	lo.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	var fetchErr error // groupCommitted's last error, for the failure message
	groupCommitted := func() int64 {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		// A fresh client per look: a client's cached group coordinator
		// may be the killed node, redialled until the context ends.
		var seeds []string
		for _, n := range c.Nodes {
			if n.Running() {
				seeds = append(seeds, n.Addr())
			}
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			fetchErr = err
			return -1
		}
		defer cl.Close()
		offs, err := kadm.NewClient(cl).FetchOffsets(cctx, group)
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			fetchErr = err
			return -1
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == in && o.Err == nil {
				sum += o.At
			}
		})
		return sum
	}
	waitCommitted := func(atLeast int64, what string) {
		t.Helper()
		if err := waitUntil(ctx, func() error {
			if n := groupCommitted(); n < atLeast {
				return fmt.Errorf("group committed %d of %d input records", n, atLeast)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: %v (last OffsetFetch error: %v; transactions committed %d, aborted %d; session restarts %d)",
				what, err, fetchErr, committedTxns.Load(), abortedTxns.Load(), restarts.Load())
		}
	}

	waitCommitted(total/4, "before the kill")
	coord := adm.FindTxnCoordinators(ctx, "eos-kill-a")["eos-kill-a"]
	if coord.Err != nil {
		t.Fatalf("find coordinator of eos-kill-a: %v", coord.Err)
	}
	victim := c.Node(coord.NodeID)
	var leads []string
	for _, topic := range []string{in, out} {
		for p := range int32(parts) {
			if l, _, err := leaderOf(ctx, c, topic, p); err == nil && l == coord.NodeID {
				leads = append(leads, fmt.Sprintf("%s-%d", topic, p))
			}
		}
	}
	before := groupCommitted()
	t.Logf("kill -9 node %d (transaction coordinator of eos-kill-a; leads %v) at %d/%d committed", coord.NodeID, leads, before, total)
	killedAt := time.Now()
	victim.Kill()
	waitCommitted(before+total/6, "progress without the killed node")
	t.Logf("copy progressed without node %d after %v", coord.NodeID, time.Since(killedAt).Round(time.Millisecond))
	if err := restart(ctx, t, victim); err != nil {
		t.Fatalf("restart node %d: %v", coord.NodeID, err)
	}
	waitCommitted(total, "copy everything")
	close(stop)
	members.Wait()

	// Seal every output partition, then read_committed up to the seals.
	sealer, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.DefaultProduceTopic(out),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer sealer.Close()
	for p := range int32(parts) {
		if err := sealer.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("seal")}).FirstErr(); err != nil {
			t.Fatalf("seal %s-%d: %v", out, p, err)
		}
	}
	seen, unsealed := map[string]int{}, map[int32]bool{0: true, 1: true, 2: true}
	reader, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	records := 0
	for len(unsealed) > 0 {
		fs := reader.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("read_committed did not reach the seals of partitions %v (a transaction hangs?); %d records read", unsealed, records)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == "seal" {
				delete(unsealed, r.Partition)
				return
			}
			records++
			seen[string(r.Value)]++
		})
	}
	missing, dups := 0, 0
	for i := range total {
		switch n := seen[fmt.Sprint(i)]; {
		case n == 0:
			missing++
		case n > 1:
			dups += n - 1
		}
	}
	t.Logf("input %d, output (read_committed) %d, missing %d, duplicated %d, foreign %d; transactions committed %d, aborted %d; session restarts %d",
		total, records, missing, dups, len(seen)-(total-missing), committedTxns.Load(), abortedTxns.Load(), restarts.Load())
	if missing != 0 || dups != 0 || records != total {
		t.Fatalf("exactly-once violated: %d missing, %d duplicated, %d records for %d inputs", missing, dups, records, total)
	}
}

// copyLoop copies what sess fetches to topic out, one transaction of at
// most 10 records per poll with a 10 ms "transform" pause, until stop closes
// (nil) or the session fails (its error).
func copyLoop(sess *kgo.GroupTransactSession, out string, stop <-chan struct{}, committed, aborted *atomic.Int64) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		pctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := sess.PollRecords(pctx, 10) // small transactions: the copy spans the fault
		cancel()
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		for _, r := range recs {
			sess.Produce(context.Background(), &kgo.Record{Topic: out, Value: r.Value}, nil)
		}
		ectx, ecancel := context.WithTimeout(context.Background(), 45*time.Second)
		ok, err := sess.End(ectx, kgo.TryCommit)
		ecancel()
		if err != nil {
			return fmt.Errorf("end: %w", err)
		}
		if ok {
			committed.Add(1)
		} else {
			aborted.Add(1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

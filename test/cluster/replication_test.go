package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
	"strand/internal/testcluster"
	"strand/internal/verify"
)

// replicationCluster starts 3 nodes with a short replica lag time (2 s) and
// any extra options.
func replicationCluster(t *testing.T, opts ...testcluster.Option) *testcluster.Cluster {
	return testcluster.StartCluster(t, 3, append([]testcluster.Option{testcluster.WithSet("replica.lag.time.max.ms", "2000")}, opts...)...)
}

// createTopic creates topic (1 partition unless assignment is given) with
// min.insync.replicas=2 and waits until every running node sees it with a
// leader and the full ISR.
func createTopic(t *testing.T, c *testcluster.Cluster, topic string, assignment []int32) {
	t.Helper()
	createTopicConfigs(t, c, topic, assignment, map[string]string{"min.insync.replicas": "2"})
}

// createTopicConfigs is createTopic with the topic configs given.
func createTopicConfigs(t *testing.T, c *testcluster.Cluster, topic string, assignment []int32, configs map[string]string) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 15000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 3
	if assignment != nil {
		rt.NumPartitions, rt.ReplicationFactor = -1, -1
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition, a.Replicas = 0, assignment
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	for k, v := range configs {
		cfg := kmsg.NewCreateTopicsRequestTopicConfig()
		cfg.Name, cfg.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, cfg)
	}
	req.Topics = append(req.Topics, rt)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testcluster.RawRequest(ctx, c.Node(1).Addr(), req, resp); err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	if code := resp.Topics[0].ErrorCode; code != 0 {
		t.Fatalf("create %s: %v", topic, kerr.ErrorForCode(code))
	}
	want := 3
	if assignment != nil {
		want = len(assignment)
	}
	waitFor(t, 20*time.Second, "topic "+topic+" with a leader and a full ISR on every node", func() error {
		for _, n := range c.Nodes {
			_, isr, err := partitionState(n.Addr(), topic)
			if err != nil {
				return fmt.Errorf("node %d: %w", n.ID(), err)
			}
			if len(isr) != want {
				return fmt.Errorf("node %d: ISR %v", n.ID(), isr)
			}
		}
		return nil
	})
}

// partitionState returns the leader and ISR of topic's partition 0 as the
// node at addr sees them.
func partitionState(addr, topic string) (int32, []int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := nodeView(ctx, addr)
	if err != nil {
		return -1, nil, err
	}
	for _, p := range v.topics[topic] {
		if p.Partition == 0 && p.Leader > 0 {
			return p.Leader, p.ISR, nil
		}
	}
	return -1, nil, fmt.Errorf("%s-0 has no leader", topic)
}

// partitionLog returns the concatenated segment files of topic's partition 0
// on node n: replicas hold byte-identical copies of the leader's batches.
func partitionLog(n *testcluster.Node, topic string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(n.DataDir(), topic+"-0", "*.log"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var out []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

func producer(t *testing.T, addrs []string, topic string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(20), kgo.RetryTimeout(30 * time.Second),
		kgo.ProducerLinger(5 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceN produces values from..to-1 (as decimal strings) and fails the
// test unless every one is acknowledged.
func produceN(t *testing.T, cl *kgo.Client, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) { errs <- err })
	}
	for i := from; i < to; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// TestReplicationAllReplicasAndLeaderKill: with RF=3, min.insync.replicas=2
// and acks=all, 5000 acknowledged records reach every replica
// (byte-identical partition logs), and after the leader is killed -9 the new
// leader serves all of them, exactly once and in order.
func TestReplicationAllReplicasAndLeaderKill(t *testing.T) {
	c := replicationCluster(t)
	const topic, n = "repl-all", 5000
	createTopic(t, c, topic, nil)
	produceN(t, producer(t, c.Addrs(), topic), 0, n)

	first := waitIdentical(t, c, topic, 20*time.Second)
	count := 0
	if err := record.Split(first, func(b []byte) error {
		h, err := record.ParseHeader(b)
		count += int(h.NumRecords)
		return err
	}); err != nil || count != n {
		t.Fatalf("replica logs hold %d records (%v), want %d", count, err, n)
	}
	t.Logf("all 3 replicas hold the same %d bytes (%d records)", len(first), count)

	leader, _, err := partitionState(c.Node(1).Addr(), topic)
	if err != nil {
		t.Fatal(err)
	}
	c.Node(leader).Kill()
	killedAt := time.Now()
	var survivors []string
	for _, nd := range c.Nodes {
		if nd.ID() != leader {
			survivors = append(survivors, nd.Addr())
		}
	}
	waitFor(t, 20*time.Second, "a new leader", func() error {
		l, isr, err := partitionState(survivors[0], topic)
		if err != nil || l == leader {
			return fmt.Errorf("leader %d isr %v: %v", l, isr, err)
		}
		return nil
	})
	t.Logf("broker %d killed; new leader after %v", leader, time.Since(killedAt).Round(time.Millisecond))

	cl, err := kgo.NewClient(kgo.SeedBrokers(survivors...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := 0
	for next < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the timeout", next, n)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch error (retried): %v", err) })
		for _, r := range fs.Records() {
			if got := string(r.Value); got != strconv.Itoa(next) {
				t.Fatalf("record at offset %d is %q, want %d (lost, duplicated or reordered)", r.Offset, got, next)
			}
			next++
		}
	}
	t.Logf("new leader served all %d acknowledged records exactly once, in order", n)
}

// TestReplicationLeaderKilledVerify runs the chaos verifier (idempotent
// acks=all producer, 3 partitions, RF=3, min.insync.replicas=2) while the
// leader of partition 0 is killed -9 and restarted 2 s later: no
// acknowledged record may be lost, duplicated or reordered.
func TestReplicationLeaderKilledVerify(t *testing.T) {
	leaderKilledVerify(t, replicationCluster(t))
}

// TestReplicationNoFollowerFlushLeaderKilledVerify is
// TestReplicationLeaderKilledVerify with followers that report records
// before fsyncing them (replica.flush.before.fetch=false): kill -9 keeps
// the page cache, so no acknowledged record may be lost either.
func TestReplicationNoFollowerFlushLeaderKilledVerify(t *testing.T) {
	leaderKilledVerify(t, replicationCluster(t, testcluster.WithSet("replica.flush.before.fetch", "false")))
}

// leaderKilledVerify runs the verifier on c while the leader of partition
// 0 is killed -9 and restarted 2 s later.
func leaderKilledVerify(t *testing.T, c *testcluster.Cluster) {
	const topic = "repl-verify"
	o := verify.DefaultOptions()
	o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor, o.MinInsync = c.Addrs(), topic, 3, 3, 2
	o.Duration, o.FaultAt, o.InFlight = 8*time.Second, 2*time.Second, 200
	o.DrainTimeout, o.ReadTimeout = 40*time.Second, 60*time.Second
	killed, restarted := make(chan int32), make(chan error)
	o.Fault = func(ctx context.Context) error {
		l, _, err := leaderOf(ctx, c, topic, 0)
		if err != nil {
			return err
		}
		c.Node(l).Kill()
		killed <- l // the test goroutine restarts it
		return <-restarted
	}
	type result struct {
		rep verify.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rep, err := verify.Run(ctx, o)
		done <- result{rep, err}
	}()
	var res result
	for waiting := true; waiting; {
		select {
		case id := <-killed:
			time.Sleep(2 * time.Second)
			c.Node(id).Restart(t)
			t.Logf("leader %d of %s-0 killed -9 and restarted after 2 s", id, topic)
			restarted <- nil
		case res = <-done:
			waiting = false
		}
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	rep := res.rep
	t.Logf("produced %d, acknowledged %d, not acknowledged %d, read %d; lost %d, duplicated %d, reordered %d; fault %s",
		rep.Produced, rep.Acknowledged, rep.NotAcknowledged, rep.Read, rep.Lost, rep.Duplicated, rep.Reordered, rep.Fault)
	if rep.Fault != "ok" {
		t.Errorf("fault: %s", rep.Fault)
	}
	if rep.Violations() != 0 || rep.Acknowledged == 0 {
		t.Fatalf("verdict: %+v (first produce error %q)", rep.Counts, rep.FirstProduceError)
	}
}

// TestReplicationISRShrinkExpandAndMinInsync: a follower paused (SIGSTOP)
// longer than replica.lag.time.max.ms (2 s; the session timeout is raised
// to 20 s so the controller does not fence it first) leaves the ISR, and
// rejoins once resumed and caught up with what was produced meanwhile (a
// replica joins only with the high watermark reached). Then, on a second
// partition replicated on the leader and that follower only, pausing the
// follower again leaves the leader alone in the ISR: an acks=all produce is
// refused with NOT_ENOUGH_REPLICAS (min.insync.replicas is 2), while acks=1
// still succeeds.
func TestReplicationISRShrinkExpandAndMinInsync(t *testing.T) {
	c := replicationCluster(t, testcluster.WithSet("broker.session.timeout.ms", "20000"))
	const topic = "repl-isr"
	ctrl := activeController(t, c)
	// The leader and the paused follower are not the active controller, so
	// the quorum and the ISR changes keep working throughout.
	var others []int32
	for _, nd := range c.Nodes {
		if nd.ID() != ctrl {
			others = append(others, nd.ID())
		}
	}
	leader, paused := others[0], others[1]
	createTopic(t, c, topic, []int32{leader, paused, ctrl})
	if l, _, err := partitionState(c.Node(leader).Addr(), topic); l != leader {
		t.Fatalf("%s-0 led by %d (%v), want the first replica %d", topic, l, err, leader)
	}
	cl := producer(t, []string{c.Node(leader).Addr()}, topic)
	produceN(t, cl, 0, 100)

	if err := c.Node(paused).Pause(); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	waitFor(t, 15*time.Second, fmt.Sprintf("paused follower %d removed from the ISR", paused), func() error {
		_, isr, err := partitionState(c.Node(leader).Addr(), topic)
		if err != nil || slices.Contains(isr, paused) {
			return fmt.Errorf("ISR %v: %v", isr, err)
		}
		return nil
	})
	t.Logf("follower %d paused; out of the ISR after %v", paused, time.Since(pausedAt).Round(time.Millisecond))
	produceN(t, cl, 100, 600) // ISR {leader, ctrl} still meets min.insync.replicas=2

	if err := c.Node(paused).Resume(); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	waitFor(t, 20*time.Second, fmt.Sprintf("follower %d back in the ISR", paused), func() error {
		_, isr, err := partitionState(c.Node(leader).Addr(), topic)
		if err != nil || !slices.Contains(isr, paused) {
			return fmt.Errorf("ISR %v: %v", isr, err)
		}
		return nil
	})
	t.Logf("follower %d resumed; back in the ISR after %v", paused, time.Since(resumedAt).Round(time.Millisecond))

	// Leave the leader alone in an ISR: a second partition replicated on the
	// leader and the same follower only (pausing two of three nodes would
	// stop the metadata quorum), whose follower is paused again.
	const topic2 = "repl-isr-min"
	createTopic(t, c, topic2, []int32{leader, paused})
	if l, _, err := partitionState(c.Node(leader).Addr(), topic2); l != leader {
		t.Fatalf("%s-0 led by %d (%v), want the first replica %d", topic2, l, err, leader)
	}
	if err := c.Node(paused).Pause(); err != nil {
		t.Fatal(err)
	}
	defer c.Node(paused).Resume()
	waitFor(t, 15*time.Second, "ISR of the leader alone", func() error {
		_, isr, err := partitionState(c.Node(leader).Addr(), topic2)
		if err != nil || !slices.Equal(isr, []int32{leader}) {
			return fmt.Errorf("ISR %v: %v", isr, err)
		}
		return nil
	})
	for _, acks := range []int16{-1, 1} {
		code := rawProduce(t, c.Node(leader).Addr(), topic2, acks)
		want := int16(0)
		if acks == -1 {
			want = kerr.NotEnoughReplicas.Code
		}
		if code != want {
			t.Fatalf("acks=%d with ISR [%d]: %v, want %v", acks, leader, kerr.ErrorForCode(code), kerr.ErrorForCode(want))
		}
	}
	t.Logf("with ISR [%d] and min.insync.replicas=2: acks=all refused with NOT_ENOUGH_REPLICAS, acks=1 accepted", leader)
}

// rawProduce sends one record to partition 0 of topic with acks over a raw
// connection to addr and returns the partition's error code.
func rawProduce(t *testing.T, addr, topic string, acks int16) int16 {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks, req.TimeoutMillis = acks, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: []record.Record{{Timestamp: time.Now().UnixMilli(), Value: []byte("x")}}})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testcluster.RawRequest(ctx, addr, req, resp); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response shape: %+v", resp)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

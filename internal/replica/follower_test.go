package replica

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/protocol"
	"strand/internal/record"
)

// logBytes returns a partition's whole log as it is on disk.
func logBytes(t *testing.T, p *Partition) []byte {
	t.Helper()
	b, err := p.ReadReplica(p.LogStartOffset(), 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func idemBatch(t testing.TB, pid int64, seq int32, n int) []byte {
	t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Timestamp: 1, Value: []byte(fmt.Sprint("s", seq, "-", i))}
	}
	return record.MustBuild(record.BuildSpec{ProducerID: pid, ProducerEpoch: 0, BaseSequence: seq, Records: recs})
}

// divergedPair returns a leader (node 1, epoch 3) and a follower (node 2,
// following it at epoch 3) whose logs share epoch 1 but diverge after: the
// follower led epoch 2 and wrote an idempotent batch nobody else has.
func divergedPair(t *testing.T) (leader, follower *Partition) {
	t.Helper()
	both := []int32{1, 2}
	leader, follower = testPartition(t, 1), testPartition(t, 2)
	leader.applyMetadata(meta(1, 1, 1, both, both), 1, t0)
	follower.applyMetadata(meta(1, 1, 1, both, both), 1, t0)
	appendN(t, leader, 3)
	appendN(t, leader, 2)
	if _, err := follower.appendAsFollower(1, logBytes(t, leader)); err != nil {
		t.Fatal(err)
	}
	// The follower leads epoch 2 alone and writes what is never replicated.
	follower.applyMetadata(meta(2, 2, 2, both, []int32{2}), 1, t0)
	if _, err := follower.Append(idemBatch(t, 7, 0, 4), t0); err != nil {
		t.Fatal(err)
	}
	// The old leader is elected again at epoch 3 and writes on.
	leader.applyMetadata(meta(1, 3, 3, both, []int32{1}), 1, t0)
	appendN(t, leader, 6)
	follower.applyMetadata(meta(1, 3, 3, both, []int32{1}), 1, t0)
	return leader, follower
}

func TestFollowerTruncatesToDivergenceAndCatchesUp(t *testing.T) {
	leader, follower := divergedPair(t)
	if follower.lg().LatestEpoch() != 2 || follower.LogEndOffset() != 9 {
		t.Fatalf("follower latest epoch %d LEO %d", follower.lg().LatestEpoch(), follower.LogEndOffset())
	}
	// OffsetForLeaderEpoch(2) on the leader: epoch 1, which ends at 5.
	le, end := leader.EndOffsetForEpoch(follower.lg().LatestEpoch())
	to, complete := truncationOffset(le, end, follower.EndOffsetForEpoch, follower.LogEndOffset(), follower.HighWatermark())
	if le != 1 || end != 5 || to != 5 || !complete {
		t.Fatalf("leader answered (%d, %d); truncate to %d (complete %v)", le, end, to, complete)
	}
	if err := follower.truncateAsFollower(2, to); !errors.Is(err, errNotFollowing) {
		t.Fatalf("truncation at a stale epoch: %v", err)
	}
	if err := follower.truncateAsFollower(3, to); err != nil {
		t.Fatal(err)
	}
	if follower.LogEndOffset() != 5 || follower.lg().LatestEpoch() != 1 {
		t.Fatalf("after truncation: LEO %d latest epoch %d", follower.LogEndOffset(), follower.lg().LatestEpoch())
	}
	// The producer table forgot the truncated batch: a retry is new data.
	h, _ := record.ParseHeader(idemBatch(t, 7, 0, 4))
	if dup, err := follower.producers.Check(h); dup != nil || err != nil {
		t.Fatalf("truncated batch still known: %v %v", dup, err)
	}
	n, err := follower.appendAsFollower(3, logBytes(t, leader))
	if err != nil || n == 0 {
		t.Fatalf("catch-up append: %d %v", n, err)
	}
	if !bytes.Equal(logBytes(t, leader), logBytes(t, follower)) {
		t.Fatal("follower log differs from the leader's after catching up")
	}
	if _, err := follower.appendAsFollower(1, logBytes(t, leader)); !errors.Is(err, errNotFollowing) {
		t.Fatalf("append at a stale epoch: %v", err)
	}
	// The leader's HW and log start offset are adopted, capped at the LEO.
	if err := follower.updateFromLeader(3, 100, 2); err != nil {
		t.Fatal(err)
	}
	if follower.HighWatermark() != 11 || follower.LogStartOffset() != 2 {
		t.Fatalf("HW %d log start %d", follower.HighWatermark(), follower.LogStartOffset())
	}
	// Below the leader's log start: the log restarts there.
	if err := follower.truncateFullyAsFollower(3, 50); err != nil {
		t.Fatal(err)
	}
	if follower.LogStartOffset() != 50 || follower.LogEndOffset() != 50 || follower.HighWatermark() != 50 {
		t.Fatalf("after full truncation: start %d LEO %d HW %d", follower.LogStartOffset(), follower.LogEndOffset(), follower.HighWatermark())
	}
}

// fakeLeader serves Fetch and OffsetForLeaderEpoch for one partition
// ("t", 0) from a leader Partition, as the server does for followers.
type fakeLeader struct {
	p        *Partition
	ln       net.Listener
	mu       sync.Mutex
	requests map[int16]int      // by API key, received
	pending  int                // received and not yet answered
	onFetch  func(offset int64) // called with each fetch's offset, if set before the fetcher starts
}

func startFakeLeader(t *testing.T, p *Partition) *fakeLeader {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &fakeLeader{p: p, ln: ln, requests: map[int16]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fl.serve(c)
			}()
		}
	}()
	return fl
}

func (fl *fakeLeader) count(key kmsg.Key) int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.requests[int16(key)]
}

// inFlight is the number of requests received and not yet answered.
func (fl *fakeLeader) inFlight() int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.pending
}

func (fl *fakeLeader) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		frame, err := protocol.ReadFrame(r, 1<<26)
		if err != nil {
			return
		}
		req, err := protocol.ParseRequest(frame)
		if err != nil {
			return
		}
		fl.mu.Lock()
		fl.requests[req.Key]++
		fl.pending++
		fl.mu.Unlock()
		if !fl.answer(c, req) {
			return
		}
	}
}

// answer serves one request and reports whether the connection is still
// usable.
func (fl *fakeLeader) answer(c net.Conn, req *protocol.Request) bool {
	defer func() {
		fl.mu.Lock()
		fl.pending--
		fl.mu.Unlock()
	}()
	var resp kmsg.Response
	switch body := req.Body.(type) {
	case *kmsg.OffsetForLeaderEpochRequest:
		out := body.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
		rt := kmsg.NewOffsetForLeaderEpochResponseTopic()
		rt.Topic = body.Topics[0].Topic
		rp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
		in := body.Topics[0].Partitions[0]
		rp.Partition = in.Partition
		if code := fl.epochCheck(in.CurrentLeaderEpoch); code != 0 {
			rp.ErrorCode, rp.LeaderEpoch, rp.EndOffset = code, -1, -1
		} else {
			rp.LeaderEpoch, rp.EndOffset = fl.p.EndOffsetForEpoch(in.LeaderEpoch)
		}
		rt.Partitions = append(rt.Partitions, rp)
		out.Topics = append(out.Topics, rt)
		resp = out
	case *kmsg.FetchRequest:
		resp = fl.fetch(body)
	default:
		return false
	}
	_, err := c.Write(protocol.AppendResponse(nil, req.CorrelationID, resp))
	return err == nil
}

func (fl *fakeLeader) epochCheck(current int32) int16 {
	switch epoch := fl.p.LeaderEpoch(); {
	case current < epoch:
		return kerr.FencedLeaderEpoch.Code
	case current > epoch:
		return kerr.UnknownLeaderEpoch.Code
	}
	return 0
}

func (fl *fakeLeader) fetch(req *kmsg.FetchRequest) kmsg.Response {
	in := req.Topics[0].Partitions[0]
	wake := make(chan struct{}, 1)
	defer fl.p.Watch(wake)()
	deadline := time.After(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	for first := true; ; first = false {
		out := req.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = req.Topics[0].Topic
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition = in.Partition
		if code := fl.epochCheck(in.CurrentLeaderEpoch); code != 0 {
			rp.ErrorCode = code
		} else {
			if first && fl.onFetch != nil {
				fl.onFetch(in.FetchOffset)
			}
			if first {
				fl.p.UpdateFollower(req.ReplicaID, in.FetchOffset, time.Now())
			}
			rp.RecordBatches, _ = fl.p.ReadReplica(in.FetchOffset, int(in.PartitionMaxBytes), true)
			rp.HighWatermark, rp.LogStartOffset = fl.p.HighWatermark(), fl.p.LogStartOffset()
		}
		rt.Partitions = append(rt.Partitions, rp)
		out.Topics = append(out.Topics, rt)
		if rp.ErrorCode != 0 || len(rp.RecordBatches) > 0 {
			return out
		}
		select {
		case <-wake:
		case <-deadline:
			return out
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFetcherReconcilesAndReplicates runs a fetcher against a leader: the
// follower truncates its diverged tail (OffsetForLeaderEpoch), copies the
// leader's log byte for byte, moves the leader's HW with its fetches, and
// keeps up with new appends; a new leader epoch makes it reconcile again.
func TestFetcherReconcilesAndReplicates(t *testing.T) {
	leader, follower := divergedPair(t)
	both := []int32{1, 2}
	leader.applyMetadata(meta(1, 3, 4, both, both), 1, t0)
	fl := startFakeLeader(t, leader)
	cfg := fetchConfig{self: 2, maxWait: 50 * time.Millisecond, maxBytes: 1 << 20, partMaxBytes: 1 << 20, backoff: 20 * time.Millisecond, socketTimeout: 5 * time.Second, flushBefore: true}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	f := startFetcher(ctx, &wg, 1, fl.ln.Addr().String(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tp := TopicPartition{"t", 0}
	f.assign(map[TopicPartition]*Partition{tp: follower})
	same := func() error {
		if l, fo := logBytes(t, leader), logBytes(t, follower); !bytes.Equal(l, fo) {
			return fmt.Errorf("leader %d bytes (LEO %d), follower %d bytes (LEO %d)", len(l), leader.LogEndOffset(), len(fo), follower.LogEndOffset())
		}
		if leader.HighWatermark() != leader.LogEndOffset() {
			return fmt.Errorf("leader HW %d LEO %d", leader.HighWatermark(), leader.LogEndOffset())
		}
		return nil
	}
	waitUntil(t, "follower reconciled and caught up", same)
	if fl.count(kmsg.OffsetForLeaderEpoch) == 0 {
		t.Fatal("no OffsetForLeaderEpoch before fetching")
	}
	for range 20 {
		appendN(t, leader, 3)
	}
	waitUntil(t, "follower keeps up", same)
	waitUntil(t, "follower learns the HW", func() error {
		if follower.HighWatermark() != leader.HighWatermark() {
			return fmt.Errorf("follower HW %d, leader %d", follower.HighWatermark(), leader.HighWatermark())
		}
		return nil
	})
	// A new leader epoch (same leader): the fetcher reconciles again.
	asked := fl.count(kmsg.OffsetForLeaderEpoch)
	leader.applyMetadata(meta(1, 5, 5, both, both), 1, t0)
	follower.applyMetadata(meta(1, 5, 5, both, both), 1, t0)
	f.assign(map[TopicPartition]*Partition{tp: follower})
	appendN(t, leader, 2)
	waitUntil(t, "follower caught up at the new epoch", same)
	if fl.count(kmsg.OffsetForLeaderEpoch) <= asked {
		t.Fatal("no reconciliation at the new epoch")
	}
	if e := follower.lg().LatestEpoch(); e != 5 {
		t.Fatalf("follower latest epoch %d", e)
	}
	// Unassigned: the fetcher has nothing left to reconcile or fetch (its
	// loop fetches only what work returns), and the fetch that was in
	// flight, if any, ends.
	if f.assign(nil) {
		t.Fatal("partitions left after unassigning all")
	}
	if reconcile, fetch, next := f.work(time.Now()); len(reconcile)+len(fetch) > 0 || !next.IsZero() {
		t.Fatalf("after unassigning: %d to reconcile, %d to fetch, next at %v", len(reconcile), len(fetch), next)
	}
	waitUntil(t, "no fetch in flight", func() error {
		if in := fl.inFlight(); in != 0 {
			return fmt.Errorf("%d requests in flight", in)
		}
		return nil
	})
}

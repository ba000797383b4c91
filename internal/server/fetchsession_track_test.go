package server

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// trackedFetch sends one raw consumer fetch of topic with the given bounds;
// offsets names partitions (new or moved positions).
func trackedFetch(t *testing.T, cl *kgo.Client, id, epoch int32, topic string, offsets map[int32]int64, maxBytes, minBytes, maxWaitMs int32) *kmsg.FetchResponse {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxBytes, req.MinBytes, req.MaxWaitMillis = -1, maxBytes, minBytes, maxWaitMs
	req.SessionID, req.SessionEpoch = id, epoch
	if len(offsets) > 0 {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		for _, p := range slices.Sorted(func(yield func(int32) bool) {
			for p := range offsets {
				if !yield(p) {
					return
				}
			}
		}) {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offsets[p], 1<<20
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := cl.Broker(1).Request(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if fr.ErrorCode != 0 {
		t.Fatalf("fetch epoch %d: error %d", epoch, fr.ErrorCode)
	}
	return fr
}

// withRecords returns the partitions of a response that carry records.
func withRecords(resp *kmsg.FetchResponse) []int32 {
	var out []int32
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if len(rp.RecordBatches) > 0 {
				out = append(out, rp.Partition)
			}
		}
	}
	return out
}

// TestFetchSessionTracked checks what a consumer session's change tracking
// must keep (fetchsession_track.go): a long poll wakes on a produce to one
// of the session's partitions without naming it; partitions a response
// skipped for MaxBytes are read in the next rounds though nothing notified
// them again, in fetch order (records move a partition to the end); an
// unchanged round lists nothing; a deleted topic's partitions are reported
// with an error without being named.
func TestFetchSessionTracked(t *testing.T) {
	n := startNode(t)
	cl := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, "tr", 3, nil)

	resp := trackedFetch(t, cl, 0, 0, "tr", map[int32]int64{0: 0, 1: 0, 2: 0}, 1<<20, 0, 0)
	id := resp.SessionID
	if id == 0 || !slices.Equal(listed(resp), []int32{0, 1, 2}) {
		t.Fatalf("full fetch: session %d, listed %v", id, listed(resp))
	}
	epoch := int32(1)
	next := func(offsets map[int32]int64, maxBytes, minBytes, maxWaitMs int32) *kmsg.FetchResponse {
		t.Helper()
		r := trackedFetch(t, cl, id, epoch, "tr", offsets, maxBytes, minBytes, maxWaitMs)
		epoch++
		return r
	}

	// A long poll of the whole session wakes on a produce to partition 1
	// (from another client: a connection serves its requests in order).
	prod := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	go func() {
		time.Sleep(100 * time.Millisecond) // let the fetch start waiting (it passes either way)
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "tr", Partition: 1, Value: []byte("x")}).FirstErr(); err != nil {
			t.Errorf("produce: %v", err)
		}
	}()
	start := time.Now()
	resp = next(nil, 1<<20, 1, 10_000)
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("long poll took %v: not woken by the produce", took)
	}
	if got := withRecords(resp); !slices.Equal(got, []int32{1}) || !slices.Equal(listed(resp), []int32{1}) {
		t.Fatalf("after a produce to 1: listed %v, with records %v", listed(resp), got)
	}

	// One batch of 1000 bytes to every partition; MaxBytes 1 lets one
	// partition a round return its batch. Fetch order now: 0, 2, 1.
	big := bytes.Repeat([]byte("b"), 1000)
	for p := int32(0); p < 3; p++ {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Topic: "tr", Partition: p, Value: big}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	offsets := map[int32]int64{1: 1}
	for _, want := range []int32{0, 2, 1} {
		resp = next(offsets, 1, 1, 0)
		if got := withRecords(resp); !slices.Equal(got, []int32{want}) {
			t.Fatalf("MaxBytes 1: records from %v, want [%d] (listed %v)", got, want, listed(resp))
		}
		offsets = map[int32]int64{want: map[int32]int64{0: 1, 1: 2, 2: 1}[want]}
	}
	// Caught up everywhere: nothing to list.
	resp = next(offsets, 1<<20, 0, 0)
	if got := listed(resp); len(got) != 0 {
		t.Fatalf("unchanged round listed %v", got)
	}

	// An idle session stops watching; its next round reads everything and
	// watches again: a produce made while it slept is returned, and a long
	// poll wakes on a produce again.
	c := n.srv.fsess
	c.mu.Lock()
	sess := c.byID[id].Value.(*fetchSession)
	c.mu.Unlock()
	sess.mu.Lock()
	sess.track.lastUse = time.Now().Add(-sessionIdle)
	sess.mu.Unlock()
	c.mu.Lock()
	sess.used = time.Now().Add(-sessionIdle)
	c.mu.Unlock()
	c.sleepIdle()
	sess.mu.Lock()
	asleep, watched := sess.track.asleep, 0
	for _, p := range sess.order {
		if p.unwatch != nil {
			watched++
		}
	}
	sess.mu.Unlock()
	if !asleep || watched != 0 {
		t.Fatalf("idle session: asleep %v, %d partitions still watched", asleep, watched)
	}
	if err := prod.ProduceSync(ctx(t), &kgo.Record{Topic: "tr", Partition: 0, Value: []byte("y")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	resp = next(nil, 1<<20, 1, 10_000)
	if got := withRecords(resp); !slices.Equal(got, []int32{0}) {
		t.Fatalf("after sleeping: records from %v, want [0]", got)
	}
	go func() {
		time.Sleep(100 * time.Millisecond) // let the fetch start waiting (it passes either way)
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "tr", Partition: 2, Value: []byte("z")}).FirstErr(); err != nil {
			t.Errorf("produce: %v", err)
		}
	}()
	start = time.Now()
	resp = next(map[int32]int64{0: 2}, 1<<20, 1, 10_000)
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("long poll after sleeping took %v: not woken by the produce", took)
	}
	if got := withRecords(resp); !slices.Equal(got, []int32{2}) {
		t.Fatalf("long poll after sleeping: records from %v, want [2]", got)
	}

	// Delete the topic: its partitions are reported with an error.
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx(t), "tr"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp = next(nil, 1<<20, 0, 0)
		errs := 0
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					errs++
				}
			}
		}
		if errs == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted topic: last response listed %v, %d with an error", listed(resp), errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package replica

import (
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFollowerSessionRequests: the first fetch is full (epoch 0), later ones
// carry only changed partitions and forget dropped ones, and a reset or a
// leader without sessions (id 0) goes back to full fetches.
func TestFollowerSessionRequests(t *testing.T) {
	full := func(offsets map[int32]int64) *kmsg.FetchRequest {
		req := kmsg.NewPtrFetchRequest()
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "t"
		for _, p := range slices.Sorted(func(yield func(int32) bool) {
			for p := range offsets {
				if !yield(p) {
					return
				}
			}
		}) {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset = p, offsets[p]
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		return req
	}
	sent := func(req *kmsg.FetchRequest) (parts, forgot []int32) {
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				parts = append(parts, rp.Partition)
			}
		}
		for _, ft := range req.ForgottenTopics {
			forgot = append(forgot, ft.Partitions...)
		}
		return parts, forgot
	}
	var s followerSession
	req := full(map[int32]int64{0: 5, 1: 7, 2: 9})
	want := s.prepare(req)
	if p, _ := sent(req); req.SessionID != 0 || req.SessionEpoch != 0 || len(p) != 3 {
		t.Fatalf("first fetch: session %d epoch %d partitions %v", req.SessionID, req.SessionEpoch, p)
	}
	s.done(42, want)
	// Partition 1 moved, partition 2 dropped.
	req = full(map[int32]int64{0: 5, 1: 8})
	want = s.prepare(req)
	if p, f := sent(req); req.SessionID != 42 || req.SessionEpoch != 1 || !slices.Equal(p, []int32{1}) || !slices.Equal(f, []int32{2}) {
		t.Fatalf("incremental: session %d epoch %d partitions %v forgotten %v", req.SessionID, req.SessionEpoch, p, f)
	}
	s.done(42, want)
	req = full(map[int32]int64{0: 5, 1: 8})
	s.prepare(req)
	if p, f := sent(req); req.SessionEpoch != 2 || len(p) != 0 || len(f) != 0 {
		t.Fatalf("unchanged: epoch %d partitions %v forgotten %v", req.SessionEpoch, p, f)
	}
	s.reset()
	req = full(map[int32]int64{0: 5, 1: 8})
	want = s.prepare(req)
	if p, _ := sent(req); req.SessionID != 0 || req.SessionEpoch != 0 || len(p) != 2 {
		t.Fatalf("after reset: session %d epoch %d partitions %v", req.SessionID, req.SessionEpoch, p)
	}
	s.done(0, want) // a leader without sessions
	req = full(map[int32]int64{0: 5, 1: 8})
	s.prepare(req)
	if p, _ := sent(req); req.SessionID != 0 || req.SessionEpoch != 0 || len(p) != 2 {
		t.Fatalf("sessionless leader: session %d epoch %d partitions %v", req.SessionID, req.SessionEpoch, p)
	}
}

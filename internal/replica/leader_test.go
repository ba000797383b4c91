package replica

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"strand/internal/log"
	"strand/internal/metadata"
	"strand/internal/record"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFollowerStateCaughtUp(t *testing.T) {
	f := &followerState{leo: -1, lastFetchLEO: -1, lastCaughtUp: t0}
	// Behind on its first fetch: not caught up.
	f.fetched(5, 10, t0.Add(time.Second))
	if f.leo != 5 || !f.lastCaughtUp.Equal(t0) {
		t.Fatalf("first fetch behind: %+v", f)
	}
	// It reached what the leader had at its previous fetch (10) while the
	// leader moved on to 20: caught up as of that previous fetch.
	f.fetched(10, 20, t0.Add(2*time.Second))
	if !f.lastCaughtUp.Equal(t0.Add(time.Second)) {
		t.Fatalf("reached the previous LEO: caught up at %v", f.lastCaughtUp)
	}
	// At the leader's LEO: caught up now.
	f.fetched(20, 20, t0.Add(3*time.Second))
	if !f.lastCaughtUp.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("at the LEO: caught up at %v", f.lastCaughtUp)
	}
	// Falling behind what the leader had at the previous fetch: unchanged.
	f.fetched(20, 40, t0.Add(4*time.Second))
	f.fetched(30, 50, t0.Add(5*time.Second))
	if !f.lastCaughtUp.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("20 at 4s reached the LEO of the 3s fetch, 30 at 5s did not reach 40: caught up at %v", f.lastCaughtUp)
	}
	f.fetched(31, 60, t0.Add(6*time.Second))
	if !f.lastCaughtUp.Equal(t0.Add(3*time.Second)) || f.leo != 31 || f.lastFetchLEO != 60 {
		t.Fatalf("still behind: %+v", f)
	}
}

func TestHighWatermarkFunc(t *testing.T) {
	fs := map[int32]*followerState{2: {leo: 7}, 3: {leo: 9}, 4: {leo: -1}}
	for _, c := range []struct {
		isr  []int32
		want int64
		ok   bool
	}{
		{[]int32{1}, 10, true},                                 // the leader alone: its LEO
		{[]int32{1, 2, 3}, 7, true},                            // the smallest ISR LEO
		{[]int32{3, 1}, 9, true},                               // order does not matter
		{[]int32{1, 2, 4}, 0, false},                           // a member that has not fetched yet
		{[]int32{1, 5}, 0, false},                              // a member without state
		{[]int32{2, 3}, 7, true},                               // the leader counts only if listed
		{maximalISR([]int32{1, 3}, []int32{1, 3, 2}), 7, true}, // a pending addition counts
	} {
		got, ok := highWatermark(1, 10, c.isr, fs)
		if got != c.want || ok != c.ok {
			t.Errorf("ISR %v: (%d, %v), want (%d, %v)", c.isr, got, ok, c.want, c.ok)
		}
	}
	if got := maximalISR([]int32{1, 2}, []int32{1}); !slices.Equal(got, []int32{1, 2}) {
		t.Errorf("a pending removal keeps the member: %v", got)
	}
}

func TestProposeISR(t *testing.T) {
	lag := 10 * time.Second
	now := t0.Add(time.Minute)
	fresh, stale := now.Add(-time.Second), now.Add(-lag-time.Millisecond)
	live := func(id int32) bool { return id != 9 }
	for _, c := range []struct {
		name      string
		replicas  []int32
		isr       []int32
		followers map[int32]*followerState
		hw, start int64
		want      []int32
	}{
		{"all in sync", []int32{1, 2, 3}, []int32{1, 2, 3},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}, 3: {leo: 10, lastCaughtUp: fresh}}, 10, 0, nil},
		{"lagging member leaves", []int32{1, 2, 3}, []int32{1, 2, 3},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}, 3: {leo: 4, lastCaughtUp: stale}}, 4, 0, []int32{1, 2}},
		{"member below the HW leaves at once (truncated a damaged log)", []int32{1, 2, 3}, []int32{1, 2, 3},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}, 3: {leo: 6, lastCaughtUp: fresh}}, 10, 0, []int32{1, 2}},
		{"exactly at the lag stays", []int32{1, 2}, []int32{1, 2},
			map[int32]*followerState{2: {leo: 4, lastCaughtUp: now.Add(-lag)}}, 4, 0, nil},
		{"caught-up replica joins", []int32{1, 2, 3}, []int32{1, 2},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}, 3: {leo: 10, lastCaughtUp: fresh}}, 10, 0, []int32{1, 2, 3}},
		{"behind the HW does not join", []int32{1, 2, 3}, []int32{1, 2},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}, 3: {leo: 9, lastCaughtUp: fresh}}, 10, 0, nil},
		{"before the leader epoch start does not join", []int32{1, 2, 3}, []int32{1, 2},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}, 3: {leo: 10, lastCaughtUp: fresh}}, 10, 11, nil},
		{"not caught up lately does not join (paused)", []int32{1, 2, 3}, []int32{1, 2},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}, 3: {leo: 10, lastCaughtUp: stale}}, 10, 0, nil},
		{"fenced replica does not join", []int32{1, 9}, []int32{1},
			map[int32]*followerState{9: {leo: 10, lastCaughtUp: fresh}}, 10, 0, nil},
		{"unknown position does not join", []int32{1, 2}, []int32{1},
			map[int32]*followerState{2: {leo: -1, lastCaughtUp: fresh}}, 0, 0, nil},
		{"shrink and expand at once", []int32{1, 2, 3}, []int32{1, 2},
			map[int32]*followerState{2: {leo: 3, lastCaughtUp: stale}, 3: {leo: 10, lastCaughtUp: fresh}}, 3, 0, []int32{1, 3}},
		{"the leader is always kept", []int32{1, 2}, []int32{2},
			map[int32]*followerState{2: {leo: 10, lastCaughtUp: fresh}}, 10, 0, []int32{2, 1}},
	} {
		got := proposeISR(isrView{self: 1, replicas: c.replicas, isr: c.isr, followers: c.followers, hw: c.hw, epochStart: c.start}, now, lag, live)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTruncationOffset(t *testing.T) {
	// The follower's epochs: 1 at 0, 3 at 10, 5 at 20; LEO 30, HW 12.
	local := func(e int32) (int32, int64) {
		switch {
		case e < 1:
			return e, 0
		case e < 3:
			return 1, 10
		case e < 5:
			return 3, 20
		case e == 5:
			return 5, 30
		}
		return -1, -1
	}
	for _, c := range []struct {
		name     string
		epoch    int32
		end      int64
		to       int64
		complete bool
	}{
		{"same epoch, leader ends later", 5, 40, 30, true},
		{"same epoch, leader ends earlier", 5, 25, 25, true},
		{"leader's epoch 3 ends before ours", 3, 15, 15, true},
		{"leader's epoch 3 ends after ours", 3, 28, 20, true},
		{"epoch we lack: to the end of our epoch below, ask again", 4, 26, 20, false},
		{"undefined: to the HW", -1, -1, 12, true},
		{"no epoch but an offset", -1, 8, 8, true},
	} {
		to, complete := truncationOffset(c.epoch, c.end, local, 30, 12)
		if to != c.to || complete != c.complete {
			t.Errorf("%s: (%d, %v), want (%d, %v)", c.name, to, complete, c.to, c.complete)
		}
	}
	// A follower that tracks no epoch that low takes the leader's end.
	none := func(int32) (int32, int64) { return -1, -1 }
	if to, complete := truncationOffset(2, 7, none, 30, 12); to != 7 || !complete {
		t.Errorf("no local epoch: (%d, %v)", to, complete)
	}
}

func testBatch(t testing.TB, base int64, epoch int32, n int) []byte {
	t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Timestamp: 1, Value: []byte("v")}
	}
	return record.MustBuild(record.BuildSpec{BaseOffset: base, PartitionLeaderEpoch: epoch, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
}

func TestTrimBatches(t *testing.T) {
	a, b, c := testBatch(t, 0, 1, 2), testBatch(t, 2, 1, 3), testBatch(t, 5, 1, 1)
	set := slices.Concat(a, b, c)
	for _, tc := range []struct {
		name string
		set  []byte
		leo  int64
		want []byte
	}{
		{"from the start", set, 0, set},
		{"skip batches below the LEO", set, 2, slices.Concat(b, c)},
		{"all below", set, 6, nil},
		{"partial trailing batch dropped", set[:len(set)-3], 2, b},
		{"partial header dropped", slices.Concat(a, b[:20]), 0, a},
	} {
		got, err := trimBatches(tc.set, tc.leo)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %d bytes (%v), want %d", tc.name, len(got), err, len(tc.want))
		}
	}
	if _, err := trimBatches(set, 3); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("a batch straddling the LEO: %v", err)
	}
}

// testPartition opens a partition of node self in a temporary directory.
func testPartition(t *testing.T, self int32) *Partition {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := openPartition(t.TempDir(), "t", 0, self, log.DefaultConfig(), false, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.log.Close() })
	return p
}

func appendN(t *testing.T, p *Partition, n int) AppendResult {
	t.Helper()
	res, err := p.Append(testBatch(t, 0, 0, n), t0)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func meta(leader, leaderEpoch, partEpoch int32, replicas, isr []int32) metadata.Partition {
	return metadata.Partition{Leader: leader, LeaderEpoch: leaderEpoch, PartitionEpoch: partEpoch, Replicas: replicas, ISR: isr}
}

func TestLeaderHighWatermark(t *testing.T) {
	p := testPartition(t, 1)
	all := []int32{1, 2, 3}
	p.applyMetadata(meta(1, 1, 1, all, all), 2, t0)
	appendN(t, p, 5)
	if hw := p.HighWatermark(); hw != 0 {
		t.Fatalf("HW %d before any follower fetched", hw)
	}
	if got, _ := p.Read(0, 1<<20, true); len(got) != 0 {
		t.Fatalf("consumers read %d bytes above the HW", len(got))
	}
	if got, _ := p.ReadReplica(0, 1<<20, true); len(got) == 0 {
		t.Fatal("followers read nothing below the LEO")
	}
	p.UpdateFollower(2, 5, t0)
	if hw := p.HighWatermark(); hw != 0 {
		t.Fatalf("HW %d with follower 3 unknown", hw)
	}
	p.UpdateFollower(3, 3, t0)
	if hw := p.HighWatermark(); hw != 3 {
		t.Fatalf("HW %d, want min(5, 5, 3)", hw)
	}
	// A lower fetch offset (a follower that truncated) never lowers the HW.
	p.UpdateFollower(3, 0, t0)
	if hw := p.HighWatermark(); hw != 3 {
		t.Fatalf("HW went down to %d", hw)
	}
	if p.UpdateFollower(7, 1, t0) || p.UpdateFollower(2, 99, t0) {
		t.Fatal("an unknown replica or an offset beyond the LEO was recorded")
	}
	// Follower 3 leaves the ISR: the HW moves to what 1 and 2 have.
	p.applyMetadata(meta(1, 1, 2, all, []int32{1, 2}), 2, t0)
	if hw := p.HighWatermark(); hw != 5 {
		t.Fatalf("HW %d after the ISR shrank to {1, 2}", hw)
	}
	// With the leader alone in the ISR, HW = LEO after every append.
	p.applyMetadata(meta(1, 1, 3, all, []int32{1}), 1, t0)
	appendN(t, p, 2)
	if hw, leo := p.HighWatermark(), p.LogEndOffset(); hw != 7 || leo != 7 {
		t.Fatalf("HW %d LEO %d", hw, leo)
	}
}

func TestLeaderPendingISRHoldsHW(t *testing.T) {
	p := testPartition(t, 1)
	p.applyMetadata(meta(1, 1, 1, []int32{1, 2, 3}, []int32{1, 2}), 2, t0)
	appendN(t, p, 4)
	p.UpdateFollower(3, 4, t0)
	p.UpdateFollower(2, 2, t0)
	if hw := p.HighWatermark(); hw != 2 {
		t.Fatalf("HW %d", hw)
	}
	// A shrink in flight (removing 2) still counts 2 until it commits.
	p.rmu.Lock()
	p.rs.followers[2].lastCaughtUp = t0.Add(-time.Hour)
	p.rmu.Unlock()
	req, ok := p.isrChange(t0, time.Minute, func(int32) bool { return true })
	if !ok || !slices.Equal(req.ISR, []int32{1, 3}) || req.PartitionEpoch != 1 || req.LeaderEpoch != 1 {
		t.Fatalf("proposal %+v %v", req, ok)
	}
	if _, again := p.isrChange(t0, time.Minute, func(int32) bool { return true }); again {
		t.Fatal("a second change proposed while one is in flight")
	}
	p.UpdateFollower(3, 4, t0)
	if hw := p.HighWatermark(); hw != 2 {
		t.Fatalf("HW %d moved past member 2 while its removal is pending", hw)
	}
	// An unknown outcome keeps it pending and sends the same request again.
	p.isrChangeDone(req, errors.New("timeout"))
	if again, ok := p.isrChange(t0, time.Minute, func(int32) bool { return true }); !ok || !slices.Equal(again.ISR, req.ISR) {
		t.Fatalf("retry %+v %v", again, ok)
	}
	// Committed: the metadata brings the new ISR and partition epoch.
	p.isrChangeDone(req, nil)
	p.applyMetadata(meta(1, 1, 2, []int32{1, 2, 3}, []int32{1, 3}), 2, t0)
	if hw := p.HighWatermark(); hw != 4 {
		t.Fatalf("HW %d after the shrink committed", hw)
	}
	// A stale rejection blocks proposals until the partition epoch moves.
	p.rmu.Lock()
	p.rs.followers[3].lastCaughtUp = t0.Add(-time.Hour)
	p.rmu.Unlock()
	req, ok = p.isrChange(t0, time.Minute, func(int32) bool { return true })
	if !ok {
		t.Fatal("no proposal")
	}
	p.isrChangeDone(req, metadata.ErrInvalidUpdateVersion)
	if _, ok := p.isrChange(t0, time.Minute, func(int32) bool { return true }); ok {
		t.Fatal("proposed again at a partition epoch the controller rejected")
	}
	p.applyMetadata(meta(1, 1, 3, []int32{1, 2, 3}, []int32{1, 3}), 2, t0)
	if _, ok := p.isrChange(t0, time.Minute, func(int32) bool { return true }); !ok {
		t.Fatal("no proposal after newer metadata")
	}
}

func TestAcksAll(t *testing.T) {
	p := testPartition(t, 1)
	all := []int32{1, 2, 3}
	p.applyMetadata(meta(1, 1, 1, all, []int32{1}), 2, t0)
	if _, err := p.AppendAcks(testBatch(t, 0, 0, 1), t0, -1); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("ISR {1} < min.insync 2: %v", err)
	}
	if _, err := p.AppendAcks(testBatch(t, 0, 0, 1), t0, 1); err != nil {
		t.Fatalf("acks=1 with a small ISR: %v", err)
	}
	p.applyMetadata(meta(1, 1, 2, all, all), 2, t0)
	res, err := p.AppendAcks(testBatch(t, 0, 0, 3), t0, -1)
	if err != nil || res.LeaderEpoch != 1 {
		t.Fatalf("append: %+v %v", res, err)
	}
	end := res.LastOffset + 1
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := p.WaitReplicated(ctx, end, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("nobody fetched: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.WaitReplicated(context.Background(), end, 1) }()
	p.UpdateFollower(2, end, time.Now())
	p.UpdateFollower(3, end, time.Now())
	if err := <-done; err != nil {
		t.Fatalf("replicated: %v", err)
	}
	// The HW passes the records after the ISR shrank below min.insync.
	res = appendN(t, p, 1)
	go func() { done <- p.WaitReplicated(context.Background(), res.LastOffset+1, 1) }()
	p.applyMetadata(meta(1, 1, 3, all, []int32{1}), 2, t0)
	if err := <-done; !errors.Is(err, ErrNotEnoughReplicasAfterAppend) {
		t.Fatalf("after the shrink: %v", err)
	}
	// Leadership lost while waiting.
	p.applyMetadata(meta(1, 1, 4, all, all), 2, t0)
	res = appendN(t, p, 1)
	go func() { done <- p.WaitReplicated(context.Background(), res.LastOffset+1, 1) }()
	p.applyMetadata(meta(2, 2, 5, all, []int32{2, 3}), 2, t0)
	if err := <-done; !errors.Is(err, ErrNotLeader) {
		t.Fatalf("after losing leadership: %v", err)
	}
	if _, err := p.Append(testBatch(t, 0, 0, 1), t0); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a follower appended as leader: %v", err)
	}
	// Stale metadata (a lower leader epoch) is ignored.
	p.applyMetadata(meta(1, 1, 6, all, all), 2, t0)
	if p.Leader() != 2 || p.LeaderEpoch() != 2 {
		t.Fatalf("stale metadata applied: leader %d epoch %d", p.Leader(), p.LeaderEpoch())
	}
}

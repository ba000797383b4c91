package replica

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"strand/internal/log"
	"strand/internal/metadata"
	"strand/internal/record"
)

func TestPartitionLeaderEpochCache(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := openPartition(t.TempDir(), "t", 0, 1, log.DefaultConfig(), false, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer p.lg().Close()
	appendOne := func() {
		t.Helper()
		b := record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			Records: []record.Record{{Timestamp: 1, Value: []byte("v")}, {Timestamp: 2, Value: []byte("w")}}})
		if _, err := p.Append(b, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// Another node leads: nothing is recorded.
	lead := func(leader, epoch int32) {
		p.applyMetadata(metadata.Partition{Leader: leader, LeaderEpoch: epoch, Replicas: []int32{1, 2}, ISR: []int32{leader}}, 1, time.Now())
	}
	lead(2, 3)
	if e, o := p.EndOffsetForEpoch(3); e != -1 || o != -1 {
		t.Fatalf("follower: (%d, %d)", e, o)
	}
	// This node leads epoch 3: the epoch answers before it has data.
	lead(1, 3)
	if e, o := p.EndOffsetForEpoch(3); e != 3 || o != 0 {
		t.Fatalf("new leader: (%d, %d)", e, o)
	}
	appendOne()
	lead(1, 5)
	appendOne()
	appendOne()
	if got := p.lg().EpochEntries(); len(got) != 2 || got[0] != (log.EpochEntry{Epoch: 3, StartOffset: 0}) || got[1] != (log.EpochEntry{Epoch: 5, StartOffset: 2}) {
		t.Fatalf("entries %v", got)
	}
	for req, want := range map[int32][2]int64{2: {2, 0}, 3: {3, 2}, 4: {3, 2}, 5: {5, 6}, 6: {-1, -1}} {
		if e, o := p.EndOffsetForEpoch(req); int64(e) != want[0] || o != want[1] {
			t.Errorf("EndOffsetForEpoch(%d) = (%d, %d), want %v", req, e, o, want)
		}
	}
	if p.EpochForOffset(1) != 3 || p.EpochForOffset(2) != 5 {
		t.Fatalf("EpochForOffset: %d %d", p.EpochForOffset(1), p.EpochForOffset(2))
	}
}

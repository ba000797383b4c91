package metadata

import (
	"errors"
	"slices"
	"testing"
)

// cluster returns an image with live brokers ids and topic "t" with the
// given replica lists (ISR = replicas, first replica leading).
func cluster(t *testing.T, ids []int32, reps ...[]int32) *Image {
	t.Helper()
	im := Empty()
	var recs []Record
	for _, id := range ids {
		recs = append(recs, Record{RegisterBroker: &Broker{ID: id, Host: "h", Port: 1}})
	}
	im = mustApply(t, im, recs, 1)
	for _, id := range ids {
		im = mustApply(t, im, []Record{{BrokerFenced: &BrokerFenceRecord{ID: id, Epoch: 1, Fenced: false}}}, 2)
	}
	recs, _, err := PlanCreateTopic(im, CreateTopic{Name: "t", Assignment: reps})
	if err != nil {
		t.Fatal(err)
	}
	return mustApply(t, im, recs, 3)
}

func never(*Topic) bool  { return false }
func always(*Topic) bool { return true }

func TestFenceMovesLeadershipAndShrinksISR(t *testing.T) {
	im := cluster(t, []int32{1, 2, 3}, []int32{1, 2, 3}, []int32{2, 3, 1}, []int32{1})
	im = mustApply(t, im, PlanFence(im, 1, 1, never), 4)
	p := im.Topics["t"].Partitions
	if p[0].Leader != 2 || !slices.Equal(p[0].ISR, []int32{2, 3}) || p[0].LeaderEpoch != 1 || p[0].PartitionEpoch != 1 {
		t.Fatalf("partition 0 after fencing its leader: %+v", p[0])
	}
	if p[1].Leader != 2 || !slices.Equal(p[1].ISR, []int32{2, 3}) || p[1].LeaderEpoch != 0 || p[1].PartitionEpoch != 1 {
		t.Fatalf("partition 1 (follower 1 fenced): %+v", p[1])
	}
	// The last ISR member stays in the ISR, leaderless: unclean off keeps it offline.
	if p[2].Leader != -1 || !slices.Equal(p[2].ISR, []int32{1}) || p[2].LeaderEpoch != 1 {
		t.Fatalf("partition 2 (only replica fenced): %+v", p[2])
	}
	if im.Live(1) {
		t.Fatal("broker 1 still live")
	}
	// Fencing again changes nothing.
	if recs := PlanFence(im, 1, 1, never); recs != nil {
		t.Fatalf("second fence planned %v", recs)
	}
	// Unfencing brings partition 2 back under 1.
	im = mustApply(t, im, PlanUnfence(im, 1, 1, never), 5)
	if p := im.Topics["t"].Partitions[2]; p.Leader != 1 || p.LeaderEpoch != 2 {
		t.Fatalf("partition 2 after unfence: %+v", p)
	}
}

func TestUncleanElection(t *testing.T) {
	im := cluster(t, []int32{1, 2}, []int32{1, 2})
	// Shrink the ISR to {1}, then lose 1: with unclean off the partition stays offline.
	recs, _, err := PlanAlterPartition(im, AlterPartition{Topic: "t", Partition: 0, Leader: 1, LeaderEpoch: 0, PartitionEpoch: 0, ISR: []int32{1}})
	if err != nil {
		t.Fatal(err)
	}
	im = mustApply(t, im, recs, 4)
	clean := mustApply(t, im, PlanFence(im, 1, 1, never), 5)
	if p := clean.Topics["t"].Partitions[0]; p.Leader != -1 {
		t.Fatalf("clean: %+v", p)
	}
	dirty := mustApply(t, im, PlanFence(im, 1, 1, always), 5)
	if p := dirty.Topics["t"].Partitions[0]; p.Leader != 2 || !slices.Equal(p.ISR, []int32{2}) {
		t.Fatalf("unclean: %+v", p)
	}
	// ElectLeaders(unclean) on the clean image does the same on request.
	recs, err = PlanElectLeaders(clean, "t", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if p := mustApply(t, clean, recs, 6).Topics["t"].Partitions[0]; p.Leader != 2 {
		t.Fatalf("ElectLeaders unclean: %+v", p)
	}
}

func TestAlterPartitionValidation(t *testing.T) {
	im := cluster(t, []int32{1, 2, 3}, []int32{1, 2, 3})
	base := AlterPartition{Topic: "t", Partition: 0, Leader: 1, LeaderEpoch: 0, PartitionEpoch: 0}
	for _, tc := range []struct {
		name string
		mod  func(*AlterPartition)
		want error
	}{
		{"not leader", func(r *AlterPartition) { r.Leader = 2; r.ISR = []int32{2} }, ErrFencedLeaderEpoch},
		{"old leader epoch", func(r *AlterPartition) { r.LeaderEpoch = -1; r.ISR = []int32{1} }, ErrFencedLeaderEpoch},
		{"stale partition epoch", func(r *AlterPartition) { r.PartitionEpoch = 7; r.ISR = []int32{1} }, ErrInvalidUpdateVersion},
		{"leader missing", func(r *AlterPartition) { r.ISR = []int32{2, 3} }, ErrInvalidRequest},
		{"not a replica", func(r *AlterPartition) { r.ISR = []int32{1, 9} }, ErrIneligibleReplica},
		{"twice", func(r *AlterPartition) { r.ISR = []int32{1, 1} }, ErrIneligibleReplica},
		{"unknown topic", func(r *AlterPartition) { r.Topic = "nope"; r.ISR = []int32{1} }, ErrUnknownTopic},
	} {
		r := base
		tc.mod(&r)
		if _, _, err := PlanAlterPartition(im, r); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Shrink then expand; the partition epoch moves each time.
	r := base
	r.ISR = []int32{1, 3}
	recs, p, err := PlanAlterPartition(im, r)
	if err != nil || p.PartitionEpoch != 1 {
		t.Fatalf("shrink: %v %+v", err, p)
	}
	im = mustApply(t, im, recs, 4)
	r.PartitionEpoch, r.ISR = 1, []int32{1, 2, 3}
	if _, p, err = PlanAlterPartition(im, r); err != nil || p.PartitionEpoch != 2 || p.LeaderEpoch != 0 {
		t.Fatalf("expand: %v %+v", err, p)
	}
}

func TestPlacementRackAwareAndBalanced(t *testing.T) {
	im := Empty()
	racks := []string{"a", "a", "b", "b", "c", "c"}
	var recs []Record
	for i, r := range racks {
		rack := r
		recs = append(recs, Record{RegisterBroker: &Broker{ID: int32(i + 1), Rack: &rack}})
	}
	im = mustApply(t, im, recs, 1)
	for i := range racks {
		im = mustApply(t, im, []Record{{BrokerFenced: &BrokerFenceRecord{ID: int32(i + 1), Epoch: 1}}}, 2)
	}
	_, top, err := PlanCreateTopic(im, CreateTopic{Name: "r", Partitions: 12, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for _, p := range top.Partitions {
		seen := map[string]bool{}
		for _, id := range p.Replicas {
			b, _ := im.Broker(id)
			if seen[*b.Rack] {
				t.Fatalf("partition %d replicas %v share rack %s", p.Index, p.Replicas, *b.Rack)
			}
			seen[*b.Rack] = true
		}
		leaders[p.Leader]++
	}
	for id := int32(1); id <= 6; id++ {
		if leaders[id] != 2 {
			t.Fatalf("leaders per broker %v, want 2 each", leaders)
		}
	}
	if _, _, err := PlanCreateTopic(im, CreateTopic{Name: "x", Partitions: 1, ReplicationFactor: 7}); !errors.Is(err, ErrInvalidReplication) {
		t.Fatalf("rf 7 of 6: %v", err)
	}
	if _, _, err := PlanCreateTopic(im, CreateTopic{Name: "bad/name", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("bad name: %v", err)
	}
}

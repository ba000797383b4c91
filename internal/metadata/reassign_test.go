package metadata

import (
	"errors"
	"slices"
	"testing"
)

func TestReassignAddCatchUpComplete(t *testing.T) {
	im := cluster(t, []int32{1, 2, 3, 4}, []int32{1, 2, 3})
	// Move {1,2,3} to {4,2,3}: 4 is added, 1 removed.
	recs, err := PlanReassign(im, "t", 0, []int32{4, 2, 3}, never)
	if err != nil {
		t.Fatal(err)
	}
	im = mustApply(t, im, recs, 10)
	p := im.Topics["t"].Partitions[0]
	if !slices.Equal(p.Replicas, []int32{4, 2, 3, 1}) || !slices.Equal(p.AddingReplicas, []int32{4}) || !slices.Equal(p.RemovingReplicas, []int32{1}) || p.Leader != 1 {
		t.Fatalf("in progress: %+v", p)
	}
	if len(im.Reassignments()["t"]) != 1 {
		t.Fatal("not listed as in progress")
	}
	// The leader (1) adds the caught-up replica 4 to the ISR: the move completes.
	recs, next, err := PlanAlterPartition(im, AlterPartition{Topic: "t", Partition: 0, Leader: 1, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: []int32{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	im = mustApply(t, im, recs, 11)
	p = im.Topics["t"].Partitions[0]
	if !slices.Equal(next.Replicas, p.Replicas) || next.Leader != p.Leader {
		t.Fatalf("AlterPartition returned %+v, image has %+v", next, p)
	}
	if !slices.Equal(p.Replicas, []int32{4, 2, 3}) || slices.Contains(p.ISR, 1) || p.Reassigning() || p.Leader == 1 || p.LeaderEpoch != 1 {
		t.Fatalf("completed: %+v", p)
	}
}

func TestReassignCancelAndErrors(t *testing.T) {
	im := cluster(t, []int32{1, 2, 3}, []int32{1, 2})
	if _, err := PlanReassign(im, "t", 0, nil, never); !errors.Is(err, ErrNoReassignment) {
		t.Fatalf("cancel with none: %v", err)
	}
	for _, bad := range [][]int32{{}, {1, 1}, {9}} {
		if _, err := PlanReassign(im, "t", 0, bad, never); !errors.Is(err, ErrInvalidAssignment) {
			t.Errorf("target %v: %v", bad, err)
		}
	}
	recs, err := PlanReassign(im, "t", 0, []int32{3, 2}, never)
	if err != nil {
		t.Fatal(err)
	}
	im = mustApply(t, im, recs, 10)
	recs, err = PlanReassign(im, "t", 0, nil, never)
	if err != nil {
		t.Fatal(err)
	}
	im = mustApply(t, im, recs, 11)
	p := im.Topics["t"].Partitions[0]
	if len(p.Replicas) != 2 || !slices.Contains(p.Replicas, 1) || !slices.Contains(p.Replicas, 2) || p.Reassigning() || p.Leader != 1 {
		t.Fatalf("after cancel: %+v", p)
	}
	// A target that only drops a replica completes at once.
	recs, err = PlanReassign(im, "t", 0, []int32{2}, never)
	if err != nil {
		t.Fatal(err)
	}
	p = mustApply(t, im, recs, 12).Topics["t"].Partitions[0]
	if !slices.Equal(p.Replicas, []int32{2}) || !slices.Equal(p.ISR, []int32{2}) || p.Leader != 2 || p.Reassigning() {
		t.Fatalf("shrink: %+v", p)
	}
}

package metadata

import (
	"errors"
	"slices"
	"testing"
)

// TestPlansFromOneImageApplyOnce: two controllers that planned against the
// same image (a deposed one and its successor) cannot both change a
// partition or both hand out the same producer-id block: the second entry is
// skipped, identically on every replica, and the image keeps its invariants.
func TestPlansFromOneImageApplyOnce(t *testing.T) {
	im := cluster(t, []int32{1, 2, 3}, []int32{1, 2, 3})
	// Two leaders' ISR changes planned from the same partition version.
	a, _, err := PlanAlterPartition(im, AlterPartition{Topic: "t", Partition: 0, Leader: 1, ISR: []int32{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	b := PlanFence(im, 1, 1, never) // moves leadership to 2 at epoch 1
	next := mustApply(t, im, a, 4)
	if _, err := next.Apply(b, 5); !errors.Is(err, ErrStalePlan) {
		t.Fatalf("second plan from the same version: %v, want ErrStalePlan", err)
	}
	// The skipped entry changed nothing at all (its BrokerFenced record too).
	skipped, _ := next.Apply(b, 5)
	if !skipped.Live(1) || skipped.Topics["t"].Partitions[0].Leader != 1 || skipped.Offset != 5 {
		t.Fatalf("skipped entry changed the image: %+v", skipped.Topics["t"].Partitions[0])
	}

	// Producer-id blocks planned from one image: only the first applies.
	p1, s1, err := PlanProducerIDs(im, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	p2, s2, _ := PlanProducerIDs(im, 2, 100)
	if s1 != s2 {
		t.Fatalf("plans from one image start at %d and %d", s1, s2)
	}
	next = mustApply(t, im, p1, 4)
	if _, err := next.Apply(p2, 5); !errors.Is(err, ErrStalePlan) {
		t.Fatalf("overlapping producer-id block: %v, want ErrStalePlan", err)
	}
	p3, s3, _ := PlanProducerIDs(next, 2, 100)
	if s3 != s1+100 {
		t.Fatalf("next block starts at %d, want %d", s3, s1+100)
	}
	mustApply(t, next, p3, 5)
	if _, _, err := PlanProducerIDs(im, 1, 0); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("empty block: %v, want ErrInvalidRequest", err)
	}

	// Even unconditional records (older versions wrote them) never move a
	// leader epoch back or give a second leader the same epoch.
	cur := im.Topics["t"].Partitions[0]
	back := cur
	back.Leader, back.LeaderEpoch = 2, cur.LeaderEpoch
	if _, err := im.Apply([]Record{{PartitionChange: &PartitionChangeRecord{Topic: "t", Partition: back}}}, 4); !errors.Is(err, ErrStalePlan) {
		t.Fatalf("new leader at the same epoch: %v, want ErrStalePlan", err)
	}
}

// TestReRegistrationBumpsLeaderEpoch: a broker that comes back as a new
// incarnation (kill -9 and restart within its session timeout) does not
// resume leadership at the epoch its followers know: another ISR member
// leads at a new epoch, or, if it was the only one in sync, it leads again
// only after being unfenced, at a new epoch. It leaves ISRs that have
// another member.
func TestReRegistrationBumpsLeaderEpoch(t *testing.T) {
	im := cluster(t, []int32{1, 2, 3}, []int32{1, 2, 3}, []int32{1}, []int32{2, 1})
	recs := PlanRegisterBroker(im, Broker{ID: 1, Host: "h", Port: 1}, never)
	im = mustApply(t, im, recs, 10)
	b, _ := im.Broker(1)
	if b.Epoch != 10 || !b.Fenced {
		t.Fatalf("re-registered broker %+v", b)
	}
	p := im.Topics["t"].Partitions
	if p[0].Leader != 2 || p[0].LeaderEpoch != 1 || !slices.Equal(p[0].ISR, []int32{2, 3}) {
		t.Fatalf("partition 0 led by the restarted broker: %+v", p[0])
	}
	if p[1].Leader != -1 || p[1].LeaderEpoch != 1 || !slices.Equal(p[1].ISR, []int32{1}) {
		t.Fatalf("partition 1 (restarted broker its only replica): %+v", p[1])
	}
	if p[2].Leader != 2 || p[2].LeaderEpoch != 0 || !slices.Equal(p[2].ISR, []int32{2}) {
		t.Fatalf("partition 2 (restarted broker a follower): %+v", p[2])
	}
	im = mustApply(t, im, PlanUnfence(im, 1, 10, never), 11)
	if p := im.Topics["t"].Partitions[1]; p.Leader != 1 || p.LeaderEpoch != 2 {
		t.Fatalf("partition 1 after the new incarnation is unfenced: %+v", p)
	}
	// A broker that registers for the first time changes no partition.
	if recs := PlanRegisterBroker(im, Broker{ID: 4, Host: "h", Port: 1}, never); len(recs) != 1 {
		t.Fatalf("first registration planned %d records", len(recs))
	}
}

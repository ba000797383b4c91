package metadata

import (
	"errors"
	"slices"
	"testing"
)

// TestPlanOfflineReplicas: a broker's offline replicas leave the ISR (but
// the last member stays), lose their leadership to a live ISR member (or
// none), and nothing else changes.
func TestPlanOfflineReplicas(t *testing.T) {
	im := cluster(t, []int32{1, 2, 3}, []int32{1, 2, 3}, []int32{2, 3, 1}, []int32{1}, []int32{1, 2, 3})
	recs, err := PlanOfflineReplicas(im, OfflineReplicas{Broker: 1, Partitions: []PartitionRef{
		{"t", 0}, {"t", 1}, {"t", 2}, {"gone", 0}, {"t", 9}}}, never)
	if err != nil {
		t.Fatal(err)
	}
	im = mustApply(t, im, recs, 4)
	p := im.Topics["t"].Partitions
	if p[0].Leader != 2 || !slices.Equal(p[0].ISR, []int32{2, 3}) || p[0].LeaderEpoch != 1 {
		t.Fatalf("partition 0 (led by the offline replica): %+v", p[0])
	}
	if p[1].Leader != 2 || !slices.Equal(p[1].ISR, []int32{2, 3}) || p[1].LeaderEpoch != 0 || p[1].PartitionEpoch != 1 {
		t.Fatalf("partition 1 (offline follower): %+v", p[1])
	}
	if p[2].Leader != -1 || !slices.Equal(p[2].ISR, []int32{1}) {
		t.Fatalf("partition 2 (its only replica offline): %+v", p[2])
	}
	if p[3].Leader != 1 || !slices.Equal(p[3].ISR, []int32{1, 2, 3}) || p[3].PartitionEpoch != 0 {
		t.Fatalf("partition 3 (not reported) changed: %+v", p[3])
	}
	if _, err := PlanOfflineReplicas(im, OfflineReplicas{Broker: 7}, never); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("unknown broker: %v", err)
	}
}

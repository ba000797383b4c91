package metadata

import (
	"fmt"
	"slices"
)

// PartitionRef names one partition.
type PartitionRef struct {
	Topic     string
	Partition int32
}

// OfflineReplicas is a broker's report that its replicas of Partitions are
// offline: the log directory holding them failed (KIP-112). The broker
// keeps serving its other partitions.
type OfflineReplicas struct {
	Broker     int32
	Partitions []PartitionRef
}

// PlanOfflineReplicas takes broker r.Broker out of the ISR of each listed
// partition it replicates (unless it is the last member, which stays so
// that, with unclean election off, no replica missing committed records
// can lead) and moves the leadership of those it led to another live ISR
// member (or none: the partition is offline). Partitions it does not
// replicate, or that are gone, are skipped.
func PlanOfflineReplicas(im *Image, r OfflineReplicas, unclean Unclean) ([]Record, error) {
	if _, ok := im.Broker(r.Broker); !ok {
		return nil, fmt.Errorf("%w: broker %d is not registered", ErrInvalidRequest, r.Broker)
	}
	want := map[string][]int32{}
	for _, p := range r.Partitions {
		want[p.Topic] = append(want[p.Topic], p.Partition)
	}
	id := r.Broker
	return forEachPartition(im, func(t *Topic, p Partition) Partition {
		if !slices.Contains(want[t.Name], p.Index) || !slices.Contains(p.Replicas, id) {
			return p
		}
		if isr := remove(p.ISR, id); len(isr) > 0 {
			p.ISR = isr
		}
		if p.Leader != id {
			return p
		}
		p.Leader = -1
		if p = elect(im, p, true, unclean(t)); p.Leader == id {
			p.Leader = -1 // its only in-sync copy is the offline one
		}
		return p
	}), nil
}

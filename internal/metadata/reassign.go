package metadata

import (
	"fmt"
	"slices"
)

// Reassignment (Kafka's AlterPartitionReassignments, KIP-455): moving a
// partition to a target replica set first adds the new replicas (Replicas =
// target + removing, AddingReplicas/RemovingReplicas set); they catch up by
// fetching like any follower and the leader adds them to the ISR through
// AlterPartition; once every adding replica is in the ISR the controller
// completes the move in the same change: Replicas = target, the removed
// replicas leave the ISR, and a leader outside the target is replaced.

// PlanReassign starts (target non-nil) or cancels (target nil) a partition's
// reassignment.
func PlanReassign(im *Image, topic string, partition int32, target []int32, unclean Unclean) ([]Record, error) {
	t, ok := im.Topics[topic]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
	}
	if partition < 0 || int(partition) >= len(t.Partitions) {
		return nil, fmt.Errorf("%w: %s-%d", ErrUnknownPartition, topic, partition)
	}
	orig := t.Partitions[partition]
	p := orig
	p.ISR = slices.Clone(orig.ISR)
	if target == nil {
		if !orig.Reassigning() {
			return nil, fmt.Errorf("%w: %s-%d has no reassignment in progress", ErrNoReassignment, topic, partition)
		}
		p = settle(im, p, orig.OriginalReplicas(), unclean(t))
	} else {
		if len(target) == 0 {
			return nil, fmt.Errorf("%w: empty replica set for %s-%d", ErrInvalidAssignment, topic, partition)
		}
		seen := map[int32]bool{}
		for _, r := range target {
			if _, ok := im.Broker(r); !ok {
				return nil, fmt.Errorf("%w: broker %d is not registered", ErrInvalidAssignment, r)
			}
			if seen[r] {
				return nil, fmt.Errorf("%w: broker %d named twice", ErrInvalidAssignment, r)
			}
			seen[r] = true
		}
		base := orig.OriginalReplicas() // a new target replaces one in progress
		p.Replicas = slices.Clone(target)
		p.AddingReplicas, p.RemovingReplicas = nil, nil
		for _, r := range target {
			if !slices.Contains(base, r) {
				p.AddingReplicas = append(p.AddingReplicas, r)
			}
		}
		for _, r := range base {
			if !slices.Contains(target, r) {
				p.RemovingReplicas = append(p.RemovingReplicas, r)
				p.Replicas = append(p.Replicas, r)
			}
		}
		p = maybeComplete(im, p, unclean(t))
	}
	next, changed := bump(orig, p)
	if !changed && slices.Equal(orig.AddingReplicas, next.AddingReplicas) && slices.Equal(orig.RemovingReplicas, next.RemovingReplicas) {
		return nil, nil
	}
	if !changed {
		next.PartitionEpoch++
	}
	return []Record{partitionChange(topic, orig, next)}, nil
}

// maybeComplete finishes a reassignment whose adding replicas are all in the
// ISR.
func maybeComplete(im *Image, p Partition, unclean bool) Partition {
	if !p.Reassigning() {
		return p
	}
	for _, r := range p.AddingReplicas {
		if !slices.Contains(p.ISR, r) {
			return p
		}
	}
	return settle(im, p, p.TargetReplicas(), unclean)
}

// settle makes replicas the partition's replica set, with no reassignment in
// progress: the ISR keeps only members of it (or, if none is left, stays
// as it was so the data is not declared lost), and the leader is re-elected
// if it is no longer a replica.
func settle(im *Image, p Partition, replicas []int32, unclean bool) Partition {
	p.Replicas = slices.Clone(replicas)
	p.AddingReplicas, p.RemovingReplicas = nil, nil
	var isr []int32
	for _, r := range p.ISR {
		if slices.Contains(replicas, r) {
			isr = append(isr, r)
		}
	}
	if len(isr) > 0 {
		p.ISR = isr
	}
	return elect(im, p, !slices.Contains(replicas, p.Leader) || p.Leader < 0, unclean)
}

// Reassignments lists the partitions with a reassignment in progress.
func (im *Image) Reassignments() map[string][]Partition {
	out := map[string][]Partition{}
	for name, t := range im.Topics {
		for _, p := range t.Partitions {
			if p.Reassigning() {
				out[name] = append(out[name], p)
			}
		}
	}
	return out
}

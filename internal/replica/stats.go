package replica

import (
	"slices"
	"time"

	"strand/internal/metadata"
)

// isrSize is the ISR size of a partition in img (0 if img does not have it),
// for counting ISR shrinks and expands.
func isrSize(img *metadata.Image, topic string, partition int32) int {
	t, ok := img.Topic(topic)
	if !ok || partition < 0 || int(partition) >= len(t.Partitions) {
		return 0
	}
	return len(t.Partitions[partition].ISR)
}

// ReadReplicaCandidate is an in-sync follower a leader may name as a
// consumer's preferred read replica (KIP-392).
type ReadReplicaCandidate struct {
	ID  int32
	LEO int64 // its log end offset as of its last fetch
	// LastCaughtUp is when its LEO last reached the leader's.
	LastCaughtUp time.Time
}

// ReadReplicaCandidates lists, while this node leads, the followers in the
// committed ISR whose last fetch reached at least offset (so they hold it),
// for choosing a consumer's preferred read replica. It is empty on a
// follower.
func (p *Partition) ReadReplicaCandidates(offset int64) []ReadReplicaCandidate {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	var out []ReadReplicaCandidate
	for id, f := range p.rs.followers {
		if f.leo >= offset && slices.Contains(p.rs.isr, id) {
			out = append(out, ReadReplicaCandidate{ID: id, LEO: f.leo, LastCaughtUp: f.lastCaughtUp})
		}
	}
	return out
}

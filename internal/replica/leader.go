package replica

import (
	"context"
	"fmt"
	"slices"
	"time"

	"strand/internal/metadata"
)

// replState is a partition's replication state: what the latest metadata
// says about its replicas, and, while this node leads it, the positions of
// its followers. Guarded by Partition.rmu.
type replState struct {
	partitionEpoch int32
	replicas       []int32
	isr            []int32 // the committed ISR, as in the latest metadata
	minISR         int     // min.insync.replicas of the topic

	// Leader only.
	followers  map[int32]*followerState // every replica but this node
	epochStart int64                    // the LEO when this node became leader at the current epoch
	// pendingISR is the ISR of an AlterPartition this leader sent whose
	// outcome it has not seen yet; the HW is computed over isr ∪ pendingISR
	// (Kafka's maximal ISR), so a member being added or removed still holds
	// the HW back. pendingReq is that request; inFlight is set while it is
	// being sent.
	pendingISR []int32
	pendingReq *metadata.AlterPartition
	inFlight   bool
	// blockedEpoch is the partition epoch at which the controller rejected
	// an ISR change as stale; no change is proposed until the metadata moves
	// past it (-1: none).
	blockedEpoch int32
}

// followerState is the leader's view of one follower replica.
//
// Invariant: leo is -1 until the follower fetches at the current leader
// epoch; lastCaughtUp only moves forward.
type followerState struct {
	leo          int64     // the fetch offset of its last fetch: its log end offset
	lastFetch    time.Time // when it last fetched (zero: not yet)
	lastFetchLEO int64     // the leader's LEO at that fetch
	lastCaughtUp time.Time // the last time its LEO reached the leader's LEO
}

// fetched records a fetch at offset when the leader's LEO is leaderLEO,
// with Kafka's rule for the caught-up time: a follower fetching at the
// leader's LEO is caught up now; one fetching at or beyond what the
// leader's LEO was at its previous fetch was caught up at that fetch.
func (f *followerState) fetched(offset, leaderLEO int64, now time.Time) {
	switch {
	case offset >= leaderLEO:
		f.lastCaughtUp = later(f.lastCaughtUp, now)
	case !f.lastFetch.IsZero() && offset >= f.lastFetchLEO:
		f.lastCaughtUp = later(f.lastCaughtUp, f.lastFetch)
	}
	f.leo, f.lastFetch, f.lastFetchLEO = offset, now, leaderLEO
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// highWatermark returns the smallest LEO among the ISR members (self counts
// with leaderLEO) and false if some member's LEO is unknown.
func highWatermark(self int32, leaderLEO int64, isr []int32, followers map[int32]*followerState) (int64, bool) {
	hw := leaderLEO
	for _, id := range isr {
		if id == self {
			continue
		}
		f := followers[id]
		if f == nil || f.leo < 0 {
			return 0, false
		}
		hw = min(hw, f.leo)
	}
	return hw, true
}

// maximalISR is isr plus the members of pending that it lacks.
func maximalISR(isr, pending []int32) []int32 {
	out := isr
	for _, id := range pending {
		if !slices.Contains(out, id) {
			out = append(slices.Clip(out), id)
		}
	}
	return out
}

// applyMetadata brings the partition to the state pm describes (leader,
// epochs, replicas, ISR) and minISR (the topic's min.insync.replicas). A
// new leader or leader epoch naming this node makes it leader: the epoch
// is recorded in the log's epoch cache at the LEO, every follower's
// position is forgotten (each is counted caught up now) and the HW, which
// keeps its current value, advances as the followers fetch. Any other new
// leader makes it a follower (the manager's fetchers then reconcile and
// fetch). Metadata with a lower leader epoch than the partition has seen
// is ignored.
func (p *Partition) applyMetadata(pm metadata.Partition, minISR int, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || pm.LeaderEpoch < p.leaderEpoch {
		return
	}
	newRole := pm.Leader != p.leader || pm.LeaderEpoch != p.leaderEpoch
	p.leader, p.leaderEpoch = pm.Leader, pm.LeaderEpoch
	leads := pm.Leader == p.self
	if newRole && leads {
		if err := p.lg().AssignEpoch(pm.LeaderEpoch); err != nil {
			p.logger.Warn("cannot record the leader epoch start", "epoch", pm.LeaderEpoch, "err", err)
		}
	}
	p.rmu.Lock()
	rs := &p.rs
	if pm.PartitionEpoch != rs.partitionEpoch || newRole {
		// Whatever ISR change was pending is now decided: committed (and
		// in pm.ISR) or superseded.
		rs.pendingISR, rs.pendingReq = nil, nil
	}
	rs.partitionEpoch, rs.minISR = pm.PartitionEpoch, minISR
	rs.replicas = slices.Clone(pm.Replicas)
	rs.isr = slices.Clone(pm.ISR)
	switch {
	case leads && newRole:
		rs.followers = map[int32]*followerState{}
		rs.epochStart = p.lg().LogEndOffset()
		rs.blockedEpoch = -1
		p.syncFollowersLocked(now)
		p.hw.Store(min(p.hw.Load(), rs.epochStart))
		p.logger.Info("became leader", "epoch", pm.LeaderEpoch, "isr", pm.ISR, "leo", rs.epochStart, "hw", p.hw.Load())
	case leads:
		p.syncFollowersLocked(now)
	case newRole:
		rs.followers = nil
		p.logger.Info("became follower", "leader", pm.Leader, "epoch", pm.LeaderEpoch, "leo", p.lg().LogEndOffset(), "hw", p.hw.Load())
	}
	if leads {
		p.advanceHWLocked()
	}
	p.rmu.Unlock()
	p.notify()
}

// syncFollowersLocked gives every replica other than this node a follower
// state (unknown LEO, caught up at now) and drops the states of replicas
// that are gone. Caller holds rmu.
func (p *Partition) syncFollowersLocked(now time.Time) {
	rs := &p.rs
	for _, id := range rs.replicas {
		if id != p.self && rs.followers[id] == nil {
			rs.followers[id] = &followerState{leo: -1, lastFetchLEO: -1, lastCaughtUp: now}
		}
	}
	for id := range rs.followers {
		if !slices.Contains(rs.replicas, id) {
			delete(rs.followers, id)
		}
	}
}

// advanceHWLocked raises the leader's HW to the smallest LEO of the
// (maximal) ISR if that is higher, waking waiters. It never lowers it.
// Caller holds rmu; a no-op unless this node leads.
func (p *Partition) advanceHWLocked() bool {
	rs := &p.rs
	if rs.followers == nil {
		return false
	}
	hw, ok := highWatermark(p.self, p.lg().LogEndOffset(), maximalISR(rs.isr, rs.pendingISR), rs.followers)
	if !ok || hw <= p.hw.Load() {
		return false
	}
	p.hw.Store(hw)
	p.notify()
	return true
}

// UpdateFollower records that replica fetched at fetchOffset (its log end
// offset) at now, possibly advancing the high watermark. It reports false
// when this node does not lead the partition, replica is not one of its
// replicas, or fetchOffset is not within the log.
func (p *Partition) UpdateFollower(replica int32, fetchOffset int64, now time.Time) bool {
	leo := p.lg().LogEndOffset()
	if fetchOffset < 0 || fetchOffset > leo {
		return false
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	rs := &p.rs
	f := rs.followers[replica]
	if f == nil {
		return false
	}
	f.fetched(fetchOffset, leo, now)
	p.advanceHWLocked()
	inISR := slices.Contains(rs.isr, replica)
	if p.kickISR != nil && (!inISR && f.leo >= p.hw.Load() && f.leo >= rs.epochStart || inISR && f.leo < p.hw.Load()) {
		p.kickISR() // it may rejoin the ISR, or must leave it (see proposeISR)
	}
	return true
}

// IsReplica reports whether broker id is one of the partition's replicas.
func (p *Partition) IsReplica(id int32) bool {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	return slices.Contains(p.rs.replicas, id)
}

// ISR returns the partition's committed ISR per the latest metadata.
func (p *Partition) ISR() []int32 {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	return slices.Clone(p.rs.isr)
}

// WaitReplicated blocks until the high watermark reaches end (every ISR
// member has the offsets below it) while this node still leads at epoch
// and acts as its leader (else ErrNotLeader; see ActsAsLeader), or ctx ends
// (its error, wrapped). If the HW is
// reached but the ISR is smaller than min.insync.replicas by then, it
// returns ErrNotEnoughReplicasAfterAppend, as Kafka answers acks=all.
func (p *Partition) WaitReplicated(ctx context.Context, end int64, epoch int32) error {
	// Most waits are over at once (an ISR of this node alone, or followers
	// already caught up): answer those without registering a watcher.
	if done, err := p.replicated(end, epoch); done {
		return err
	}
	wake := make(chan struct{}, 1)
	defer p.Watch(wake)()
	for {
		p.mu.Lock()
		leads := !p.closed && p.leader == p.self && p.leaderEpoch == epoch
		p.mu.Unlock()
		if !leads {
			return fmt.Errorf("%s-%d: %w at epoch %d", p.Topic, p.Index, ErrNotLeader, epoch)
		}
		p.rmu.Lock()
		hw, isr, minISR := p.hw.Load(), len(p.rs.isr), p.rs.minISR
		p.rmu.Unlock()
		if hw >= end {
			if isr < minISR {
				return fmt.Errorf("%s-%d: %w: ISR has %d, min.insync.replicas is %d", p.Topic, p.Index, ErrNotEnoughReplicasAfterAppend, isr, minISR)
			}
			return nil
		}
		if !p.ActsAsLeader(time.Now()) {
			// Stepped down (lease.go): the new leader, if any, decides
			// whether the records survive; the client retries there.
			return fmt.Errorf("%s-%d: %w at epoch %d (stepped down before the high watermark reached %d)", p.Topic, p.Index, ErrNotLeader, epoch, end)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%s-%d: waiting for the high watermark (%d) to reach %d: %w", p.Topic, p.Index, hw, end, ctx.Err())
		}
	}
}

// replicated is WaitReplicated's check without waiting: done with its
// result if this node no longer leads at epoch or the HW reached end.
func (p *Partition) replicated(end int64, epoch int32) (done bool, err error) {
	p.mu.Lock()
	leads := !p.closed && p.leader == p.self && p.leaderEpoch == epoch
	p.mu.Unlock()
	if !leads {
		return true, fmt.Errorf("%s-%d: %w at epoch %d", p.Topic, p.Index, ErrNotLeader, epoch)
	}
	p.rmu.Lock()
	hw, isr, minISR := p.hw.Load(), len(p.rs.isr), p.rs.minISR
	p.rmu.Unlock()
	if hw < end {
		return false, nil
	}
	if isr < minISR {
		return true, fmt.Errorf("%s-%d: %w: ISR has %d, min.insync.replicas is %d", p.Topic, p.Index, ErrNotEnoughReplicasAfterAppend, isr, minISR)
	}
	return true, nil
}

package replica

import (
	"context"
	"errors"
	"slices"
	"time"

	"strand/internal/metadata"
	"strand/internal/metrics"
)

// ISRStore is what ISR maintenance needs of the metadata store: the current
// image (for broker liveness) and AlterPartition, which commits a leader's
// ISR change through the active controller and returns once this node's
// image includes it.
type ISRStore interface {
	Image() *metadata.Image
	AlterPartition(ctx context.Context, r metadata.AlterPartition) (*metadata.Partition, error)
}

// isrView is what an ISR decision looks at.
type isrView struct {
	self       int32
	replicas   []int32
	isr        []int32
	followers  map[int32]*followerState
	hw         int64
	epochStart int64 // the leader's LEO when it took office at its epoch
}

// proposeISR returns the ISR the leader should ask for, or nil to keep the
// current one (Kafka's rules):
//   - an ISR follower that has not been caught up (see followerState) for
//     more than lag leaves it;
//   - so does, at once, an ISR follower fetching below the high watermark:
//     it no longer holds committed records (a replica that truncated its
//     damaged log, damage.go) and must not be elected leader until it has
//     them again;
//   - a replica outside it joins when it is live, was caught up within lag,
//     and its LEO has reached both the high watermark and the start of the
//     leader's epoch (so it has truncated to the leader's log).
//
// The leader always stays in the ISR.
func proposeISR(v isrView, now time.Time, lag time.Duration, live func(int32) bool) []int32 {
	changed := false
	out := []int32{}
	for _, id := range v.isr {
		if id != v.self {
			if f := v.followers[id]; f == nil || now.Sub(f.lastCaughtUp) > lag || f.leo >= 0 && f.leo < v.hw {
				changed = true
				continue
			}
		}
		out = append(out, id)
	}
	if !slices.Contains(out, v.self) {
		out, changed = append(out, v.self), true
	}
	for _, id := range v.replicas {
		if id == v.self || slices.Contains(v.isr, id) {
			continue
		}
		f := v.followers[id]
		if f != nil && f.leo >= 0 && f.leo >= v.hw && f.leo >= v.epochStart && now.Sub(f.lastCaughtUp) <= lag && live(id) {
			out, changed = append(out, id), true
		}
	}
	if !changed {
		return nil
	}
	return out
}

// isrChange returns the AlterPartition this leader should send now, if
// any, and records it as pending (its ISR then counts for the HW until the
// outcome is known). A request whose outcome was unknown (an error other
// than a rejection) is sent again as it was.
func (p *Partition) isrChange(now time.Time, lag time.Duration, live func(int32) bool) (metadata.AlterPartition, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.leader != p.self {
		return metadata.AlterPartition{}, false
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	rs := &p.rs
	switch {
	case rs.inFlight || rs.blockedEpoch == rs.partitionEpoch:
		return metadata.AlterPartition{}, false
	case rs.pendingReq != nil:
		rs.inFlight = true
		return *rs.pendingReq, true
	}
	isr := proposeISR(isrView{self: p.self, replicas: rs.replicas, isr: rs.isr, followers: rs.followers,
		hw: p.hw.Load(), epochStart: rs.epochStart}, now, lag, live)
	if isr == nil {
		return metadata.AlterPartition{}, false
	}
	req := metadata.AlterPartition{Topic: p.Topic, Partition: p.Index, Leader: p.self,
		LeaderEpoch: p.leaderEpoch, PartitionEpoch: rs.partitionEpoch, ISR: isr}
	rs.pendingISR, rs.pendingReq, rs.inFlight = isr, &req, true
	return req, true
}

// isrChangeDone records the outcome of req. Success or a rejection as
// stale decides it (a rejection blocks further changes until the metadata
// moves past req's partition epoch); any other error leaves it pending, to
// be sent again.
func (p *Partition) isrChangeDone(req metadata.AlterPartition, err error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	rs := &p.rs
	rs.inFlight = false
	if rs.pendingReq == nil || rs.pendingReq.PartitionEpoch != req.PartitionEpoch {
		return // superseded by newer metadata meanwhile
	}
	if err != nil && !staleISRChange(err) {
		return
	}
	if err != nil {
		rs.blockedEpoch = req.PartitionEpoch
	}
	rs.pendingISR, rs.pendingReq = nil, nil
	p.advanceHWLocked()
}

// staleISRChange reports whether the controller rejected an ISR change for
// good: stale epochs, or a replica that may not join.
func staleISRChange(err error) bool {
	return errors.Is(err, metadata.ErrInvalidUpdateVersion) || errors.Is(err, metadata.ErrFencedLeaderEpoch) ||
		errors.Is(err, metadata.ErrIneligibleReplica) || errors.Is(err, metadata.ErrUnknownTopic) ||
		errors.Is(err, metadata.ErrUnknownPartition) || errors.Is(err, metadata.ErrInvalidRequest)
}

// lagTime is replica.lag.time.max.ms.
func (m *Manager) lagTime() time.Duration {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return time.Duration(m.broker.Int("replica.lag.time.max.ms")) * time.Millisecond
}

// RunISR maintains the ISR of the partitions this node leads until ctx
// ends: every replica.lag.time.max.ms/2, and soon after a follower outside
// the ISR catches up, it shrinks and expands ISRs (proposeISR) through
// the store's AlterPartition. A no-op without a store.
func (m *Manager) RunISR(ctx context.Context) {
	if m.store == nil {
		return
	}
	lag := m.lagTime()
	t := time.NewTicker(max(lag/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.isrKick:
		}
		m.maintainISR(ctx, time.Now(), lag)
	}
}

// kickISR asks RunISR for a round soon.
func (m *Manager) kickISR() {
	select {
	case m.isrKick <- struct{}{}:
	default:
	}
}

// maintainISR runs one round of ISR changes and returns how many were
// committed.
func (m *Manager) maintainISR(ctx context.Context, now time.Time, lag time.Duration) int {
	img := m.store.Image()
	n := 0
	for _, p := range m.All() {
		req, ok := p.isrChange(now, lag, img.Live)
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := m.store.AlterPartition(cctx, req)
		cancel()
		p.isrChangeDone(req, err)
		switch {
		case err == nil:
			n++
			metrics.ISRChange(isrSize(img, req.Topic, req.Partition), len(req.ISR))
			m.logger.Info("ISR changed", "topic", req.Topic, "partition", req.Partition, "isr", req.ISR,
				"leader_epoch", req.LeaderEpoch, "partition_epoch", req.PartitionEpoch)
		case staleISRChange(err):
			m.logger.Info("ISR change rejected; waiting for newer metadata", "topic", req.Topic, "partition", req.Partition, "isr", req.ISR, "err", err)
		case ctx.Err() == nil:
			m.logger.Warn("ISR change failed; will retry", "topic", req.Topic, "partition", req.Partition, "isr", req.ISR, "err", err)
		}
	}
	return n
}

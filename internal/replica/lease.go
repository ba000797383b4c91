package replica

import (
	"context"
	"time"
)

// A leader's lease.
//
// The active controller fences a broker it has not heard from for
// broker.session.timeout.ms and gives its partitions new leaders. A leader
// cut off from the controller cannot learn that, so without more it would
// keep answering its clients (who never move to the new leader) for as long
// as the cut lasts. The lease bounds that: a broker holds it while its
// latest heartbeat accepted by the active controller was sent less than a
// session timeout ago. The controller starts a broker's session clock no
// earlier than the heartbeat was sent, so a broker whose lease is valid has
// not been fenced for silence, and one that may have been has let its lease
// expire.
//
// Without the lease, a partition this node leads (per its latest metadata)
// keeps acting as leader only while an ISR follower has fetched from it
// within the session timeout, or while it is alone in the ISR: a follower
// still fetching at this leader's epoch proves no other leader has taken
// over the ISR (it would fetch from that one), and it keeps a cluster whose
// controller quorum is down (every lease expired) serving as Kafka does; a
// leader alone in its ISR has no one to hand over to (only an unclean
// election could), so stepping down would only make the partition
// unavailable. Otherwise the partition steps down:
// produce, consumer fetch and ListOffsets answer NOT_LEADER_OR_FOLLOWER,
// acks=all waiters return ErrNotLeader, and Metadata no longer names this
// node as its leader, so clients look for the new one. Followers may still
// fetch from it (their fetches are what bring it back). The lease returns
// with the next accepted heartbeat, by which time this node's image includes
// every change the controller made while it was away.

// lease is the manager's lease source; nil (no lease configured) is always
// valid.
type lease struct {
	last    func() time.Time // send time of the last accepted heartbeat (zero: none)
	timeout time.Duration    // broker.session.timeout.ms
}

// SetLease makes leadership depend on the lease (see above): lastHeartbeat
// returns when the latest heartbeat the active controller accepted was sent,
// timeout is broker.session.timeout.ms. Call it before the first Apply.
func (m *Manager) SetLease(lastHeartbeat func() time.Time, timeout time.Duration) {
	m.lease.Store(&lease{last: lastHeartbeat, timeout: timeout})
}

// LeaseValid reports whether this broker holds its lease at now (always,
// without SetLease).
func (m *Manager) LeaseValid(now time.Time) bool {
	l := m.lease.Load()
	if l == nil {
		return true
	}
	t := l.last()
	return !t.IsZero() && now.Sub(t) < l.timeout
}

// leaseTimeout is the session timeout of the lease (0 without one).
func (m *Manager) leaseTimeout() time.Duration {
	if l := m.lease.Load(); l != nil {
		return l.timeout
	}
	return 0
}

// RunLease watches the lease until ctx ends: it logs when it is lost and
// regained, and while it is lost it wakes every partition's waiters each
// tick, so acks=all produces waiting on a partition that stepped down
// return ErrNotLeader instead of waiting for their timeout. A no-op
// without SetLease.
func (m *Manager) RunLease(ctx context.Context) {
	timeout := m.leaseTimeout()
	if timeout <= 0 {
		return
	}
	t := time.NewTicker(max(timeout/20, 10*time.Millisecond))
	defer t.Stop()
	held := true // no loss logged before the first heartbeat (Serve waits for it)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l := m.lease.Load()
			if l.last().IsZero() {
				continue // not registered yet
			}
			valid := m.LeaseValid(now)
			switch {
			case held && !valid:
				m.logger.Warn("no heartbeat accepted by the active controller within the session timeout; "+
					"partitions whose ISR followers stopped fetching stop acting as leader", "session_timeout", timeout)
			case !held && valid:
				m.logger.Info("heartbeat accepted by the active controller again; leading as the metadata says")
			}
			held = valid
			if !valid {
				for _, p := range m.All() {
					p.notify()
				}
			}
		}
	}
}

// ActsAsLeader reports whether this node leads the partition per the latest
// metadata and may act as its leader at now: it holds its lease, an ISR
// follower fetched from it within the session timeout, or it is alone in
// the ISR (see the lease comment above).
func (p *Partition) ActsAsLeader(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.actsAsLeaderLocked(now)
}

// actsAsLeaderLocked is ActsAsLeader. Caller holds mu.
func (p *Partition) actsAsLeaderLocked(now time.Time) bool {
	if p.closed || p.leader != p.self {
		return false
	}
	if p.leaseValid == nil || p.leaseValid(now) {
		return true
	}
	timeout := p.leaseTimeout()
	p.rmu.Lock()
	defer p.rmu.Unlock()
	others := false
	for _, id := range maximalISR(p.rs.isr, p.rs.pendingISR) {
		if id == p.self {
			continue
		}
		others = true
		if f := p.rs.followers[id]; f != nil && !f.lastFetch.IsZero() && now.Sub(f.lastFetch) < timeout {
			return true
		}
	}
	// Alone in the ISR, no other replica can be elected cleanly: stepping
	// down would only make the partition unavailable.
	return !others
}

package replica

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"strand/internal/log"
	"strand/internal/record"
)

// Damaged storage. A log whose bytes on disk fail their checks (see
// log.Log.Verify and log.Log.Corruption) is never deleted and never takes
// the broker down:
//   - the damaged offsets are recorded as corrupt regions; reads of them fail
//     with record.ErrCorrupt (CORRUPT_MESSAGE to a consumer), the intact rest
//     stays readable;
//   - a follower heals: it truncates its log to the start of the first
//     damaged region (its last intact batch) and re-fetches the rest from the
//     leader, rejoining the ISR by the normal path (a restarted broker is not
//     in any ISR - fencing removed it - until it has caught up again);
//   - a leader (RF=1, or the only replica left) keeps serving the intact
//     prefix and the data after the damage.
//
// Every partition opened by Apply is verified once in the background (one
// partition at a time, so start-up is not slowed), and again whenever a
// read meets damage that is not yet recorded.

// verifier runs log verifications one partition at a time.
type verifier struct {
	mu      sync.Mutex // guards queue, queued, running
	queue   []*Partition
	queued  map[*Partition]bool
	running bool
}

// queueVerify schedules a background verification of p's log (once, even if
// asked several times before it runs).
func (m *Manager) queueVerify(p *Partition) {
	if m.fetchCtx.Err() != nil {
		return // closed
	}
	v := &m.verify
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.queued == nil {
		v.queued = map[*Partition]bool{}
	}
	if v.queued[p] {
		return
	}
	v.queued[p] = true
	v.queue = append(v.queue, p)
	if v.running {
		return
	}
	v.running = true
	m.fetchWG.Add(1)
	go m.runVerifier()
}

// runVerifier verifies queued partitions until the queue is empty or the
// manager closes.
func (m *Manager) runVerifier() {
	defer m.fetchWG.Done()
	v := &m.verify
	for {
		v.mu.Lock()
		if len(v.queue) == 0 || m.fetchCtx.Err() != nil {
			v.running = false
			v.mu.Unlock()
			return
		}
		p := v.queue[0]
		v.queue = v.queue[1:]
		delete(v.queued, p)
		v.mu.Unlock()
		start := time.Now()
		err := p.log.Verify(m.fetchCtx.Done())
		switch {
		case err == nil:
			p.logger.Debug("verified partition log", "took", time.Since(start))
		case errors.Is(err, record.ErrCorrupt):
			p.onDamage(err)
		case errors.Is(err, log.ErrClosed):
		default:
			p.logger.Error("verifying partition log", "err", err)
		}
	}
}

// onDamage reports a damaged log and heals it if this replica follows.
func (p *Partition) onDamage(err error) {
	p.logger.Error("partition log is damaged on disk; reads of the damaged offsets fail with CORRUPT_MESSAGE",
		"dir", p.log.Dir(), "err", err)
	p.healIfFollower()
}

// healIfFollower truncates a follower's damaged log to its first damaged
// offset so that the fetcher re-fetches the rest from the leader. A leader
// keeps its log as it is (nothing else holds the data).
func (p *Partition) healIfFollower() {
	off, ok := p.log.FirstCorruptOffset()
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.followsLocked(p.leaderEpoch) {
		return
	}
	leo := p.log.LogEndOffset()
	var err error
	if off <= p.log.LogStartOffset() {
		err = p.log.TruncateFullyAndStartAt(p.log.LogStartOffset())
	} else {
		err = p.log.Truncate(off)
	}
	if err == nil {
		err = p.afterTruncateLocked()
	}
	if err != nil {
		p.logger.Error("truncating a damaged follower log failed", "to", off, "err", err)
		return
	}
	p.logger.Warn("truncated damaged follower log to its last intact batch; re-fetching the rest from the leader",
		"dir", p.log.Dir(), "from", leo, "to", p.log.LogEndOffset(), "leader", p.leader, "leader_epoch", p.leaderEpoch)
}

// readErrLog rate-limits the log line of failed reads of one partition.
type readErrLog struct {
	last       atomic.Int64 // unix nanos of the last line written
	suppressed atomic.Int64 // lines not written since
	lastVerify atomic.Int64 // unix nanos of the last verification a read asked for
}

// readErrInterval is the least time between two "read failed" lines of one
// partition.
const readErrInterval = 10 * time.Second

// ReadFailed reports a failed read of the partition at offset: it logs it
// (at most once per readErrInterval, with the number of lines suppressed)
// and, for damage on disk, asks for the log to be verified so that the
// damaged range is recorded (and healed on a follower).
func (p *Partition) ReadFailed(offset int64, err error) {
	now := time.Now().UnixNano()
	if errors.Is(err, record.ErrCorrupt) && p.verifyHook != nil && !p.log.KnownCorrupt(offset) {
		// New damage: verify the log to record it - at most once per
		// readErrInterval, whatever the consumers retry.
		if last := p.readErrs.lastVerify.Load(); now-last >= int64(readErrInterval) && p.readErrs.lastVerify.CompareAndSwap(last, now) {
			p.verifyHook(p)
		}
	}
	last := p.readErrs.last.Load()
	if now-last < int64(readErrInterval) || !p.readErrs.last.CompareAndSwap(last, now) {
		p.readErrs.suppressed.Add(1)
		return
	}
	p.logger.Error("read failed", "dir", p.log.Dir(), "offset", offset, "suppressed", p.readErrs.suppressed.Swap(0), "err", err)
}

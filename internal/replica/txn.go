package replica

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"strand/internal/atomicfile"
	"strand/internal/log"
	"strand/internal/record"
	"strand/internal/txn"
)

// Transactions on the partition side: the partition's txn.Txns (guarded by
// mu, updated with every append as leader or follower and rebuilt with the
// producer table) and two values published for lock-free readers: the
// first offset of the oldest open transaction and the aborted ranges.
//
// Invariant: LastStableOffset <= HighWatermark, and no offset at or above
// the first offset of an open transaction is below the LSO; a
// read_committed consumer reads only below the LSO.

// trackTxnLocked records an appended batch h in the transaction table;
// batch is its bytes if at hand (nil: read from the log for a marker).
// Caller holds mu.
func (p *Partition) trackTxnLocked(h record.Header, batch []byte) {
	if p.txns == nil {
		p.txns = txn.NewTxns()
	}
	switch {
	case h.IsControl() && h.HasProducerID():
		if batch == nil {
			b, err := p.log.Read(h.BaseOffset, 1, math.MaxInt64, true)
			if err != nil {
				p.logger.Warn("cannot read a transaction marker", "offset", h.BaseOffset, "err", err)
				return
			}
			batch = b[:min(len(b), h.Size())]
		}
		commit, err := txn.ParseMarker(batch)
		if err != nil {
			p.logger.Warn("skipping an undecodable control batch", "offset", h.BaseOffset, "err", err)
			return
		}
		p.txns.End(h.ProducerID, h.BaseOffset, commit)
	case h.IsTransactional():
		p.txns.Begin(h)
	default:
		return
	}
	p.publishTxnsLocked()
}

// publishTxnsLocked publishes the table's first unstable offset and
// aborted ranges. Caller holds mu.
func (p *Partition) publishTxnsLocked() {
	p.txns.Trim(p.log.LogStartOffset())
	p.firstUnstable.Store(p.txns.FirstUnstable())
	ab := p.txns.Aborted()
	p.aborted.Store(&ab)
}

// Transaction-table snapshots ("<offset>.txnsnap", txn.Txns.Encode) are
// written with each producer-state snapshot, at the same offset.
const txnSnapSuffix = ".txnsnap"

func txnSnapName(off int64) string { return fmt.Sprintf("%020d%s", off, txnSnapSuffix) }

// writeTxnSnapshotLocked writes the transaction table as of offset leo
// and removes the other transaction-table snapshots. Caller holds mu.
func (p *Partition) writeTxnSnapshotLocked(dir string, leo int64) error {
	if p.txns == nil {
		p.txns = txn.NewTxns()
	}
	if err := atomicfile.Write(filepath.Join(dir, txnSnapName(leo)), p.txns.Encode(leo)); err != nil {
		return fmt.Errorf("%s-%d: transaction snapshot: %w", p.Topic, p.Index, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), txnSnapSuffix) && e.Name() != txnSnapName(leo) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// rebuildTxnsLocked rebuilds the transaction table: from the transaction
// snapshot at the producer-state snapshot's offset plus the batches above
// it, or, without one, from the whole log. Caller holds mu or the
// partition is not shared yet.
func (p *Partition) rebuildTxnsLocked() error {
	p.txns = txn.NewTxns()
	from := p.log.LogStartOffset()
	if p.snapOffset >= 0 {
		path := filepath.Join(p.log.Dir(), txnSnapName(p.snapOffset))
		if b, err := os.ReadFile(path); err == nil {
			t, at, err := txn.DecodeTxns(b)
			if err == nil && at == p.snapOffset {
				p.txns, from = t, max(at, from)
			} else {
				p.logger.Warn("ignoring unreadable transaction snapshot; replaying the log", "file", path, "err", err)
			}
		}
	}
	err := p.log.ScanHeaders(from, func(h record.Header) error {
		if h.IsTransactional() {
			p.trackTxnLocked(h, nil)
		}
		return nil
	})
	p.publishTxnsLocked()
	return err
}

// LastStableOffset is min(HW, first offset of the oldest open
// transaction): what read_committed consumers may read up to.
func (p *Partition) LastStableOffset() int64 {
	return min(p.HighWatermark(), max(p.firstUnstable.Load(), p.log.LogStartOffset()))
}

// ReadCommitted returns batches from offset up to the LSO, and the aborted
// transactions overlapping what it returns (Fetch with isolation_level=1).
func (p *Partition) ReadCommitted(offset int64, maxBytes int, minOne bool) ([]byte, []txn.AbortedTxn, error) {
	lso := p.LastStableOffset()
	data, err := p.log.Read(offset, maxBytes, lso, minOne)
	if err != nil || len(data) == 0 {
		return data, nil, err
	}
	var ab []txn.AbortedTxn
	if a := p.aborted.Load(); a != nil {
		ab = txn.AbortedIn(*a, offset, lso)
	}
	return data, ab, nil
}

// OpenTransactions returns the producers with an open transaction here
// and its first offset (DescribeProducers).
func (p *Partition) OpenTransactions() map[int64]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.txns == nil {
		return nil
	}
	return p.txns.Ongoing()
}

// AppendMarker appends a COMMIT or ABORT marker of producer pid at epoch
// as leader and waits until it is replicated to the ISR (acks=all) and
// durable. A marker for a producer without an open transaction here is
// still written (Kafka does the same; it is harmless to readers).
func (p *Partition) AppendMarker(ctx context.Context, pid int64, epoch int16, commit bool, coordinatorEpoch int32) error {
	now := time.Now()
	batch, err := txn.BuildMarker(pid, epoch, commit, coordinatorEpoch, now.UnixMilli())
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.closed || p.leader != p.self || !p.actsAsLeaderLocked(now) {
		p.mu.Unlock()
		return fmt.Errorf("%s-%d: %w (leader %d)", p.Topic, p.Index, ErrNotLeader, p.leader)
	}
	info, err := p.log.AppendAsLeader(batch, log.AppendOptions{LeaderEpoch: p.leaderEpoch, Now: now})
	if err != nil {
		p.mu.Unlock()
		return err
	}
	for _, h := range info.Headers {
		p.producers.Update(h)
		p.trackTxnLocked(h, batch)
	}
	epochNow := p.leaderEpoch
	p.rmu.Lock()
	p.advanceHWLocked()
	p.rmu.Unlock()
	p.mu.Unlock()
	p.notify()
	if err := p.WaitDurable(info.LastOffset + 1); err != nil {
		return err
	}
	return p.WaitReplicated(ctx, info.LastOffset+1, epochNow)
}

// Producers returns the partition's producers and the first offset of
// each one's open transaction (-1: none).
func (p *Partition) Producers() ([]txn.ProducerInfo, map[int64]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var open map[int64]int64
	if p.txns != nil {
		open = p.txns.Ongoing()
	}
	return p.producers.Producers(), open
}

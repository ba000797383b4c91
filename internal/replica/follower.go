package replica

import (
	"errors"
	"fmt"

	"strand/internal/record"
)

// errNotFollowing rejects a follower write for a leader epoch the partition
// no longer follows (it became leader, follows a newer epoch, or was
// dropped): the fetcher's view is stale and the write must not happen.
var errNotFollowing = errors.New("partition no longer follows that leader epoch")

// followsLocked reports whether the partition is a follower at leader epoch
// epoch. Caller holds mu.
func (p *Partition) followsLocked(epoch int32) bool {
	return !p.closed && p.leader != p.self && p.leader >= 0 && p.leaderEpoch == epoch
}

// truncationOffset decides where a follower truncates its log given the
// leader's answer (leaderEpoch, leaderEnd) to OffsetForLeaderEpoch for the
// follower's latest epoch (or a diverging epoch in a fetch response), with
// Kafka's rule (KIP-101, KIP-279):
//   - an undefined end offset: truncate to the follower's HW;
//   - the leader names an epoch the follower also has: truncate to the
//     smaller of the two logs' end offsets for that epoch;
//   - the follower lacks that epoch: truncate to the end of its largest
//     epoch below it and ask again (complete is false);
//   - the follower tracks no epoch that low: truncate to the leader's end.
//
// local is the follower's own EndOffsetForEpoch. The result never exceeds
// leo.
func truncationOffset(leaderEpoch int32, leaderEnd int64, local func(int32) (int32, int64), leo, hw int64) (to int64, complete bool) {
	switch {
	case leaderEnd < 0:
		return min(hw, leo), true
	case leaderEpoch < 0:
		return min(leaderEnd, leo), true
	}
	fe, fo := local(leaderEpoch)
	switch {
	case fe < 0:
		return min(leaderEnd, leo), true
	case fe != leaderEpoch:
		return min(fo, leo), false
	}
	return min(fo, leaderEnd, leo), true
}

// truncateAsFollower truncates the log to the batch boundary at or below
// to (a no-op at or above the LEO, except that leader epoch entries without
// data at the LEO are dropped), rebuilds the producer table if batches were
// removed, and caps the HW at the new LEO. It fails with errNotFollowing
// unless the partition follows at epoch.
func (p *Partition) truncateAsFollower(epoch int32, to int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.followsLocked(epoch) {
		return errNotFollowing
	}
	leo := p.log.LogEndOffset()
	if to >= leo {
		return p.log.Truncate(leo)
	}
	if to <= p.log.LogStartOffset() {
		if err := p.log.TruncateFullyAndStartAt(max(to, 0)); err != nil {
			return fmt.Errorf("truncate %s-%d fully: %w", p.Topic, p.Index, err)
		}
	} else {
		// A leader's answer is a batch boundary of the common prefix; round
		// down anyway rather than fail if it is not one here.
		errFound := errors.New("found")
		if err := p.log.ScanHeaders(to, func(h record.Header) error {
			to = min(to, h.BaseOffset)
			return errFound
		}); err != nil && !errors.Is(err, errFound) {
			return fmt.Errorf("truncate %s-%d to %d: %w", p.Topic, p.Index, to, err)
		}
		if err := p.log.Truncate(to); err != nil {
			return fmt.Errorf("truncate %s-%d: %w", p.Topic, p.Index, err)
		}
	}
	p.logger.Info("truncated follower log", "from", leo, "to", p.log.LogEndOffset(), "epoch", epoch)
	return p.afterTruncateLocked()
}

// truncateFullyAsFollower empties the log and restarts it at start (the
// leader's log start offset, above this log's end). It fails with
// errNotFollowing unless the partition follows at epoch.
func (p *Partition) truncateFullyAsFollower(epoch int32, start int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.followsLocked(epoch) {
		return errNotFollowing
	}
	leo := p.log.LogEndOffset()
	if err := p.log.TruncateFullyAndStartAt(start); err != nil {
		return fmt.Errorf("truncate %s-%d fully: %w", p.Topic, p.Index, err)
	}
	p.logger.Info("follower log restarted at the leader's log start", "from", leo, "start", start, "epoch", epoch)
	return p.afterTruncateLocked()
}

// afterTruncateLocked rebuilds the producer table from the remaining log
// and caps the HW at the LEO. Caller holds mu.
func (p *Partition) afterTruncateLocked() error {
	if err := p.rebuildProducers(); err != nil {
		return fmt.Errorf("%s-%d: %w", p.Topic, p.Index, err)
	}
	p.rmu.Lock()
	p.hw.Store(min(p.hw.Load(), p.log.LogEndOffset()))
	p.rmu.Unlock()
	return nil
}

// appendAsFollower appends batches fetched from the leader at leader epoch
// epoch. Whole batches below the LEO are skipped and a partial batch at the
// end is dropped; the first remaining batch must start at the LEO. It
// returns how many bytes it appended.
func (p *Partition) appendAsFollower(epoch int32, records []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.followsLocked(epoch) {
		return 0, errNotFollowing
	}
	records, err := trimBatches(records, p.log.LogEndOffset())
	if err != nil || len(records) == 0 {
		return 0, err
	}
	info, err := p.log.AppendAsFollower(records)
	if err != nil {
		return 0, fmt.Errorf("%s-%d: %w", p.Topic, p.Index, err)
	}
	for _, h := range info.Headers {
		p.producers.Update(h)
		p.trackTxnLocked(h, nil)
	}
	return len(records), nil
}

// trimBatches returns the part of a fetched record set from the first
// batch ending after leo up to the last complete batch.
func trimBatches(set []byte, leo int64) ([]byte, error) {
	from, to := -1, 0
	for pos := 0; pos+record.HeaderSize <= len(set); {
		h, err := record.ParseHeader(set[pos:])
		if err != nil {
			return nil, fmt.Errorf("fetched batch at position %d: %w", pos, err)
		}
		if pos+h.Size() > len(set) {
			break // a partial batch cut by the fetch size limit
		}
		if from < 0 && h.NextOffset() > leo {
			if h.BaseOffset != leo {
				return nil, fmt.Errorf("%w: fetched batch [%d, %d) does not start at the log end offset %d", record.ErrInvalid, h.BaseOffset, h.NextOffset(), leo)
			}
			from = pos
		}
		pos += h.Size()
		to = pos
	}
	if from < 0 {
		return nil, nil
	}
	return set[from:to], nil
}

// updateFromLeader applies the leader's high watermark and log start
// offset from a fetch response: the HW becomes min(leaderHW, LEO); a
// higher leader log start offset is adopted (up to the LEO). It does
// nothing unless the partition follows at epoch.
func (p *Partition) updateFromLeader(epoch int32, leaderHW, leaderLogStart int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.followsLocked(epoch) {
		return nil
	}
	leo := p.log.LogEndOffset()
	if start := min(leaderLogStart, leo); start > p.log.LogStartOffset() {
		if err := p.log.DeleteRecordsBefore(start); err != nil {
			return fmt.Errorf("%s-%d: follow the leader's log start offset %d: %w", p.Topic, p.Index, start, err)
		}
	}
	if leaderHW >= 0 {
		p.rmu.Lock()
		p.hw.Store(min(leaderHW, leo))
		p.rmu.Unlock()
	}
	return nil
}

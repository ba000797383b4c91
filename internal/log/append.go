package log

import (
	"errors"
	"fmt"
	"math"
	"time"

	"strand/internal/record"
)

// AppendOptions control a leader append.
type AppendOptions struct {
	LeaderEpoch   int32     // stamped into every batch's partitionLeaderEpoch
	LogAppendTime bool      // stamp Now as LogAppendTime (message.timestamp.type=LogAppendTime)
	Now           time.Time // zero means time.Now()
}

// AppendInfo describes a successful append.
type AppendInfo struct {
	BaseOffset, LastOffset int64
	MaxTimestamp           int64 // largest batch MaxTimestamp (the append time with LogAppendTime)
	LogAppendTime          int64 // -1 unless LogAppendTime was applied
	NumRecords             int
	Headers                []record.Header // each appended batch, with its assigned offsets
}

// AppendAsLeader validates every batch of records first (record.Validate
// plus lastOffsetDelta == numRecords-1 and max.message.bytes; on any error
// nothing is written), then assigns offsets from the LEO, stamps the leader
// epoch, applies LogAppendTime if asked and writes the batches to the active
// segment, rolling first if needed. It modifies records in place. It does
// not fsync: call WaitFlushed. Control and transactional batches are
// accepted; the caller decides whether its client may write them. With
// Compact (cleanup.policy=compact) a record without a key is invalid.
func (l *Log) AppendAsLeader(records []byte, opts AppendOptions) (AppendInfo, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	l.mu.RLock()
	maxMsg, segBytes, compact := l.cfg.MaxMessageBytes, l.cfg.SegmentBytes, l.cfg.Compact
	l.mu.RUnlock()
	var one [1][]byte // a produce carries one batch per partition: no allocation
	batches := one[:0]
	err := record.Split(records, func(b []byte) error {
		h, err := record.ValidateProduce(b)
		if err != nil {
			return err
		}
		if h.Size() > int(maxMsg) {
			return fmt.Errorf("%w: batch of %d bytes exceeds max.message.bytes %d", ErrMessageTooLarge, h.Size(), maxMsg)
		}
		if compact && !h.IsControl() {
			if err := checkKeys(h, b); err != nil {
				return err
			}
		}
		batches = append(batches, b)
		return nil
	})
	if err == nil {
		err = checkSet(records, len(batches), segBytes)
	}
	if err != nil {
		return AppendInfo{}, fmt.Errorf("append to %s: %w", l.dir, err)
	}
	appendTime := int64(-1)
	if opts.LogAppendTime {
		appendTime = now.UnixMilli()
		for _, b := range batches {
			record.SetLogAppendTime(b, appendTime)
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return AppendInfo{}, err
	}
	next := l.leo
	for _, b := range batches {
		record.SetBaseOffset(b, next)
		record.SetPartitionLeaderEpoch(b, opts.LeaderEpoch)
		h, _ := record.ParseHeader(b)
		next = h.NextOffset()
	}
	info, err := l.appendLocked(records, batches, now)
	info.LogAppendTime = appendTime
	return info, err
}

// checkKeys rejects a batch with a keyless record: compacted topics need
// keys (Kafka answers INVALID_RECORD).
func checkKeys(h record.Header, b []byte) error {
	keyless := int64(-1)
	err := record.ForEach(b, func(r *record.Record) {
		if r.Key == nil && keyless < 0 {
			keyless = r.Offset - h.BaseOffset
		}
	})
	if err == nil && keyless >= 0 {
		err = fmt.Errorf("%w: compacted topic cannot accept a record without a key (record %d of the batch)", record.ErrInvalid, keyless)
	}
	return err
}

// AppendAsFollower appends already-offset batches (from the leader) as they
// are. Every batch must pass record.Validate, the first batch's BaseOffset
// must equal the LEO and each following one must continue densely;
// otherwise nothing is written.
func (l *Log) AppendAsFollower(records []byte) (AppendInfo, error) {
	l.mu.RLock()
	segBytes := l.cfg.SegmentBytes
	l.mu.RUnlock()
	var batches [][]byte
	err := record.Split(records, func(b []byte) error {
		if _, err := record.Validate(b); err != nil {
			return err
		}
		batches = append(batches, b)
		return nil
	})
	if err == nil {
		err = checkSet(records, len(batches), segBytes)
	}
	if err != nil {
		return AppendInfo{}, fmt.Errorf("follower append to %s: %w", l.dir, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return AppendInfo{}, err
	}
	next := l.leo
	for _, b := range batches {
		h, _ := record.ParseHeader(b)
		if h.BaseOffset != next {
			return AppendInfo{}, fmt.Errorf("follower append to %s: %w: batch base offset %d, expected %d", l.dir, record.ErrInvalid, h.BaseOffset, next)
		}
		next = h.NextOffset()
	}
	info, err := l.appendLocked(records, batches, time.Now())
	info.LogAppendTime = -1
	return info, err
}

// checkSet rejects empty record sets and sets larger than a segment.
func checkSet(records []byte, n int, segBytes int64) error {
	if n == 0 {
		return fmt.Errorf("%w: empty record set", record.ErrInvalid)
	}
	if int64(len(records)) > segBytes {
		return fmt.Errorf("%w: record set of %d bytes exceeds segment.bytes %d", ErrMessageTooLarge, len(records), segBytes)
	}
	return nil
}

// appendLocked writes validated batches whose offsets start at the LEO.
// Caller holds mu.
func (l *Log) appendLocked(records []byte, batches [][]byte, now time.Time) (AppendInfo, error) {
	info := AppendInfo{MaxTimestamp: -1, Headers: make([]record.Header, 0, len(batches))}
	for _, b := range batches {
		h, _ := record.ParseHeader(b)
		info.Headers = append(info.Headers, h)
		info.MaxTimestamp = max(info.MaxTimestamp, h.MaxTimestamp)
		info.NumRecords += int(h.NumRecords)
	}
	info.BaseOffset = info.Headers[0].BaseOffset
	info.LastOffset = info.Headers[len(info.Headers)-1].LastOffset()
	if err := l.maybeRoll(int64(len(records)), info.MaxTimestamp, info.LastOffset, now); err != nil {
		return AppendInfo{}, err
	}
	s := l.active()
	pos := s.size
	if _, err := s.log.WriteAt(records, pos); err != nil {
		err = fmt.Errorf("segment %d: write at %d: %w", s.base, pos, err)
		if terr := s.log.Truncate(pos); terr != nil {
			l.failed = errors.Join(err, terr)
		}
		return AppendInfo{}, err
	}
	for i, h := range info.Headers {
		s.indexBatch(h, pos, l.cfg.IndexIntervalBytes)
		pos += int64(len(batches[i]))
	}
	l.leo = info.LastOffset + 1
	if err := l.epochsAppended(info.Headers); err != nil {
		return AppendInfo{}, err
	}
	if l.cfg.FlushMessages > 1 && l.leo-l.flushed >= l.cfg.FlushMessages || l.parked.Load() && l.cfg.timedFlush() {
		l.kickFlusher()
	}
	return info, nil
}

// maybeRoll rolls the active segment if appending size bytes with the given
// max timestamp and last offset would exceed segment.bytes, segment.ms,
// the index capacity or the relative offset range. Caller holds mu.
func (l *Log) maybeRoll(size, maxTs, lastOffset int64, now time.Time) error {
	s := l.active()
	if s.size == 0 {
		return nil
	}
	var reason string
	switch {
	case s.size+size > l.cfg.SegmentBytes:
		reason = "segment.bytes"
	case s.firstTs >= 0 && maxTs-s.firstTs > l.cfg.SegmentMs:
		reason = "segment.ms"
	case s.firstTs < 0 && now.Sub(s.created).Milliseconds() > l.cfg.SegmentMs:
		reason = "segment.ms"
	case s.index.full() || s.tindex.full():
		reason = "index full"
	case lastOffset-s.base > math.MaxInt32:
		reason = "offset range"
	default:
		return nil
	}
	return l.roll(now, reason)
}

// roll seals the active segment and starts a new one at the LEO. The
// background flusher then fsyncs the old segment and writes the recovery
// point. Caller holds mu.
func (l *Log) roll(now time.Time, reason string) error {
	old := l.active()
	n, err := openSegment(l.dir, l.leo, l.cfg, true, now)
	if err != nil {
		return fmt.Errorf("roll: %w", err)
	}
	old.seal()
	l.segs = append(l.segs, n)
	l.needCkpt = true
	l.logger.Debug("rolled segment", "old", old.base, "new", n.base, "reason", reason)
	l.kickFlusher()
	return nil
}

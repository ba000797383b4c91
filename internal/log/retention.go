package log

import (
	"fmt"
	"time"

	"strand/internal/record"
)

// DeleteOldSegments applies retention: from the oldest segment on, it
// deletes segments that lie entirely below the log start offset, whose
// largest timestamp (file mtime if none) is older than now-RetentionMs, or
// while the total size minus the segment's size stays >= RetentionBytes.
// It stops at the first segment that is kept and never deletes the active
// segment. The log start offset advances to the first remaining segment.
// It returns how many segments were deleted. The caller must ensure
// retention does not pass the high watermark (it only deletes inactive
// segments, which normally lie below it).
func (l *Log) DeleteOldSegments(now time.Time) (int, error) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	deleted := 0
	for len(l.segs) > 1 {
		s, next := l.segs[0], l.segs[1]
		belowStart := next.base <= l.logStart
		expired := l.cfg.RetentionMs >= 0 && segmentTime(s) < now.UnixMilli()-l.cfg.RetentionMs
		oversize := l.cfg.RetentionBytes >= 0 && total-s.size >= l.cfg.RetentionBytes
		if !belowStart && !expired && !oversize {
			break
		}
		if err := l.removeFirst(); err != nil {
			return deleted, err
		}
		total -= s.size
		deleted++
		l.logger.Info("deleted segment by retention", "segment", s.base, "bytes", s.size,
			"belowLogStart", belowStart, "expired", expired, "oversize", oversize)
	}
	if deleted > 0 && l.segs[0].base > l.logStart {
		l.logStart = l.segs[0].base
		if err := l.writeLogStart(l.logStart); err != nil {
			return deleted, err
		}
		if err := l.epochsStartAt(l.logStart); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// segmentTime is the retention timestamp of a segment: its largest batch
// timestamp, or the log file's modification time if it has none.
func segmentTime(s *segment) int64 {
	if s.maxTs >= 0 {
		return s.maxTs
	}
	if st, err := s.log.Stat(); err == nil {
		return st.ModTime().UnixMilli()
	}
	return s.created.UnixMilli()
}

// removeFirst deletes the oldest segment. Caller holds flushMu and mu.
func (l *Log) removeFirst() error {
	s := l.segs[0]
	l.segs = l.segs[1:]
	return s.remove()
}

// DeleteRecordsBefore advances the log start offset to offset (DeleteRecords
// API), persisting it in a checkpoint, and deletes the segments lying
// entirely below it (never the active one). offset above the LEO yields
// ErrOffsetOutOfRange; an offset at or below the current log start offset is
// a no-op.
func (l *Log) DeleteRecordsBefore(offset int64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if offset > l.leo {
		return fmt.Errorf("delete records in %s: %w: offset %d > log end offset %d", l.dir, ErrOffsetOutOfRange, offset, l.leo)
	}
	if offset <= l.logStart {
		return nil
	}
	l.logStart = offset
	if err := l.writeLogStart(offset); err != nil {
		return err
	}
	if err := l.epochsStartAt(offset); err != nil {
		return err
	}
	for len(l.segs) > 1 && l.segs[1].base <= offset {
		if err := l.removeFirst(); err != nil {
			return err
		}
	}
	return nil
}

// Truncate removes every record with offset >= to. to must be the base
// offset of a batch or the LEO (else an error wrapping record.ErrInvalid);
// to > LEO yields ErrOffsetOutOfRange. If to is below the log start offset
// the log is emptied and restarts at to (Kafka's truncateFullyAndStartAt).
func (l *Log) Truncate(to int64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if to > l.leo || to < 0 {
		return fmt.Errorf("truncate %s: %w: offset %d, log end offset %d", l.dir, ErrOffsetOutOfRange, to, l.leo)
	}
	if to == l.leo {
		// Nothing to cut, but drop cache entries at the LEO: epochs that
		// never got a batch (one this replica assigned as leader, say).
		// A follower must not report such an epoch as its latest one, as
		// Kafka's truncateTo does.
		return l.epochsTruncatedTo(to, false)
	}
	if to < l.logStart || to < l.segs[0].base {
		return l.truncateFully(to)
	}
	i := l.segmentFor(to)
	s := l.segs[i]
	cut := s.size
	if r := s.regionHolding(to); r != nil && r.offset == to {
		cut = r.pos // cutting off a corrupt region and what follows it
	} else if to < s.next {
		pos, h, found, err := s.findBatch(to)
		if err != nil {
			return fmt.Errorf("truncate %s to %d: %w", l.dir, to, err)
		}
		if !found || h.BaseOffset != to {
			return fmt.Errorf("truncate %s: %w: offset %d is not a batch boundary", l.dir, record.ErrInvalid, to)
		}
		cut = pos
	}
	for len(l.segs) > i+1 {
		last := l.segs[len(l.segs)-1]
		l.segs = l.segs[:len(l.segs)-1]
		if err := last.remove(); err != nil {
			return l.failWith(err)
		}
	}
	s.cuts.cut() // sends of the bytes being cut go on from memory (fileread.go)
	if err := s.log.Truncate(cut); err != nil {
		return l.failWith(fmt.Errorf("segment %d: truncate: %w", s.base, err))
	}
	if err := l.reindex(s, cut); err != nil {
		return l.failWith(err)
	}
	l.leo = to
	if err := l.epochsTruncatedTo(to, false); err != nil {
		return err
	}
	return l.afterTruncate()
}

// TruncateFullyAndStartAt empties the log and restarts it at start, which
// may lie above the LEO (a follower whose whole log is below its leader's
// log start offset, Kafka's truncateFullyAndStartAt). Every segment and
// every leader epoch entry is dropped; the log start offset becomes start.
func (l *Log) TruncateFullyAndStartAt(start int64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if start < 0 {
		return fmt.Errorf("truncate %s: %w: start offset %d", l.dir, ErrOffsetOutOfRange, start)
	}
	return l.truncateFully(start)
}

// truncateFully deletes every segment and starts an empty log at to.
// Caller holds flushMu and mu.
func (l *Log) truncateFully(to int64) error {
	for _, s := range l.segs {
		if err := s.remove(); err != nil {
			return l.failWith(err)
		}
	}
	n, err := openSegment(l.dir, to, l.cfg, true, time.Now())
	if err != nil {
		l.segs = nil
		return l.failWith(err)
	}
	l.segs = []*segment{n}
	l.leo, l.logStart = to, to
	if err := l.writeLogStart(to); err != nil {
		return l.failWith(err)
	}
	if err := l.epochsTruncatedTo(to, true); err != nil {
		return err
	}
	return l.afterTruncate()
}

// afterTruncate lowers the flushed offset and the recovery point so that
// data appended after the truncation is rescanned after a crash, and the
// compaction checkpoint so that it is cleaned as dirty data.
func (l *Log) afterTruncate() error {
	l.flushed = min(l.flushed, l.leo)
	l.truncations++
	l.cutUnsynced = true
	if l.cleanedTo > l.leo {
		l.cleanedTo = l.leo
		if err := writeCheckpoint(l.dir, cleanerCheckpointFile, l.leo); err != nil {
			return l.failWith(err)
		}
	}
	if l.checkpointed > l.leo {
		if err := writeCheckpoint(l.dir, recoveryPointFile, l.leo); err != nil {
			return l.failWith(err)
		}
		l.checkpointed = l.leo
	}
	return nil
}

// failWith records a sticky failure while mu is held and returns err.
func (l *Log) failWith(err error) error {
	l.logger.Error("log I/O failure; refusing further writes", "err", err)
	if l.failed == nil {
		l.failed = err
	}
	return err
}

// reindex rebuilds a segment's in-memory state and indexes from its first
// size bytes with a header walk, keeping corrupt regions below size.
// Caller holds mu.
func (l *Log) reindex(s *segment, size int64) error {
	regions := s.corrupt
	s.resetState()
	for _, r := range regions {
		if r.end <= size && r.pos < size {
			s.corrupt = append(s.corrupt, r)
		}
	}
	pos, expected := int64(0), s.base
	for pos < size {
		if r := s.regionAt(pos); r != nil {
			s.size, s.next = r.end, r.endOffset
			s.sinceIndex = int64(l.cfg.IndexIntervalBytes) + 1
			pos, expected = r.end, r.endOffset
			continue
		}
		h, err := s.headerAt(pos, size, expected)
		if err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		s.indexBatch(h, pos, l.cfg.IndexIntervalBytes)
		pos += int64(h.Size())
		expected = h.NextOffset()
	}
	s.size, s.next = size, expected
	return s.persistIndexes()
}

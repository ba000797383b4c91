package log

import (
	"errors"
	"fmt"
	"slices"

	"strand/internal/record"
)

// Verify reads every batch of the log and checks its framing, CRC and offset
// continuity (the check crash recovery makes, extended to the segments below
// the recovery point that a clean start-up does not read). It holds the
// log's lock only while it reads one batch, so appends and reads go on.
// Damage it finds is confirmed under the write lock and recorded as corrupt
// regions (the segment is rescanned as recovery would, see Corruption):
// reads of those offsets then fail with record.ErrCorrupt while the rest of
// the log stays readable. Nothing is deleted. It returns Corruption() (nil
// for an intact log), or an I/O error; a closed cancel channel stops it
// early with a nil error.
func (l *Log) Verify(cancel <-chan struct{}) error {
	l.mu.RLock()
	if err := l.usable(); err != nil {
		l.mu.RUnlock()
		return err
	}
	segs := slices.Clone(l.segs)
	l.mu.RUnlock()
	var buf []byte
	for _, s := range segs {
		pos, expected := int64(0), s.base
		for {
			select {
			case <-cancel:
				return nil
			default:
			}
			var (
				h   record.Header
				err error
				end bool
			)
			h, buf, pos, _, end, err = l.verifyStep(s, pos, expected, buf)
			if err != nil {
				return err
			}
			if end {
				break
			}
			pos += int64(h.Size())
			expected = h.NextOffset()
		}
	}
	return l.Corruption()
}

// verifyStep checks the batch of s at pos (skipping known corrupt regions
// first) under the read lock. end reports that the segment is done (its end
// reached, the segment gone, or damage found and recorded).
func (l *Log) verifyStep(s *segment, pos, expected int64, buf []byte) (h record.Header, b []byte, p, e int64, end bool, err error) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return h, buf, pos, expected, true, fmt.Errorf("verify %s: %w", l.dir, ErrClosed)
	}
	if !l.hasSegment(s) {
		l.mu.RUnlock()
		return h, buf, pos, expected, true, nil // removed by retention, truncation or compaction
	}
	for r := s.regionAt(pos); r != nil && r.end > pos; r = s.regionAt(pos) {
		pos, expected = r.end, r.endOffset
	}
	if pos >= s.size {
		l.mu.RUnlock()
		return h, buf, pos, expected, true, nil
	}
	h, buf, err = s.batchAt(pos, s.nextRegionStart(pos), expected, buf)
	l.mu.RUnlock()
	if err == nil {
		return h, buf, pos, expected, false, nil
	}
	if !errors.Is(err, record.ErrCorrupt) {
		return h, buf, pos, expected, true, fmt.Errorf("verify %s: %w", l.dir, err)
	}
	return h, buf, pos, expected, true, l.rescan(s)
}

// rescan re-reads segment s under the write lock as crash recovery does and
// records its damage as corrupt regions (appends and reads wait for one
// pass over the segment, once per damage found). The log's end offset never
// changes: damage at the end of the active segment becomes a region up to
// the LEO instead of being cut off as a torn write would be (the data was
// acknowledged; only the metadata - a leader telling a follower to truncate,
// retention - may remove it).
func (l *Log) rescan(s *segment) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	i := slices.Index(l.segs, s)
	if i < 0 {
		return nil
	}
	// No separate re-check: on intact bytes (a race with a truncation that
	// rewrote the range) the rescan just rebuilds the same state.
	nextBase, last := s.next, i == len(l.segs)-1
	if !last {
		nextBase = l.segs[i+1].base
	}
	if err := l.recoverRange(s, s.size, false, nextBase); err != nil {
		return l.failWith(err)
	}
	return nil
}

// FirstCorruptOffset returns the first offset of the first known corrupt
// region (see Corruption); ok is false if there is none.
func (l *Log) FirstCorruptOffset() (offset int64, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, s := range l.segs {
		if len(s.corrupt) > 0 {
			off := s.corrupt[0].offset
			for _, r := range s.corrupt[1:] {
				off = min(off, r.offset)
			}
			return off, true
		}
	}
	return 0, false
}

// hasSegment reports whether s is still one of the log's segments (not
// removed by retention, truncation or compaction). Caller holds mu.
func (l *Log) hasSegment(s *segment) bool {
	i := l.segmentFor(s.base)
	return i < len(l.segs) && l.segs[i] == s
}

// KnownCorrupt reports whether off lies in a recorded corrupt region.
func (l *Log) KnownCorrupt(off int64) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.segs) == 0 {
		return false
	}
	return l.segs[l.segmentFor(off)].regionHolding(off) != nil
}

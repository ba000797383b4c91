package log

import (
	"fmt"

	"strand/internal/record"
)

// Read returns whole batches starting with the batch that contains offset
// (which may start before offset), stopping before any batch with
// BaseOffset >= maxOffset (pass the high watermark) and keeping the total
// size <= maxBytes, except that with minOne the first batch is returned even
// if larger. Data comes from one segment; if offset is past the end of a
// segment's data the next segment is used. Every returned batch is
// CRC-verified. If the first batch to return is corrupt (or offset lies in a
// region recovery found corrupt) the error wraps record.ErrCorrupt and names
// the offset; corruption after at least one good batch ends the result
// early, so the next Read at that offset reports it. offset <
// LogStartOffset or > LEO yields ErrOffsetOutOfRange; offset == LEO yields
// an empty result.
func (l *Log) Read(offset int64, maxBytes int, maxOffset int64, minOne bool) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, fmt.Errorf("read %s: %w", l.dir, ErrClosed)
	}
	if offset < l.logStart || offset > l.leo {
		return nil, fmt.Errorf("read %s: %w: offset %d not in [%d,%d]", l.dir, ErrOffsetOutOfRange, offset, l.logStart, l.leo)
	}
	for i := l.segmentFor(offset); i < len(l.segs); i++ {
		data, _, found, err := l.segs[i].read(offset, maxBytes, maxOffset, minOne, nil)
		if err != nil || found {
			return data, err
		}
	}
	return nil, nil
}

// findBatch walks from the closest index entry to the batch containing
// offset (or the first batch after it) and returns its position and header.
// found is false if the segment holds no batch with NextOffset > offset.
// Known corrupt regions holding offset, and framing errors, return errors
// wrapping record.ErrCorrupt. Caller holds mu (read).
func (s *segment) findBatch(offset int64) (pos int64, h record.Header, found bool, err error) {
	e := s.index.lookup(s.rel(offset))
	pos, expected := int64(e.pos), s.base+int64(e.rel)
	for {
		if r := s.regionAt(pos); r != nil {
			if offset < r.endOffset {
				return 0, h, false, fmt.Errorf("%w: segment %d: offset %d is in a corrupt region (offsets [%d,%d), positions [%d,%d))",
					record.ErrCorrupt, s.base, offset, r.offset, r.endOffset, r.pos, r.end)
			}
			if r.end == pos { // an offset gap with no bytes
				return 0, h, false, nil
			}
			pos, expected = r.end, r.endOffset
			continue
		}
		if pos >= s.size {
			return 0, h, false, nil
		}
		h, err = s.headerAt(pos, s.nextRegionStart(pos), expected)
		if err != nil {
			return 0, h, false, fmt.Errorf("reading offset %d: %w", offset, err)
		}
		if h.NextOffset() > offset {
			return pos, h, true, nil
		}
		pos += int64(h.Size())
		expected = h.NextOffset()
	}
}

// read implements Log.Read within one segment and returns the bytes and
// their position in the segment file. found reports whether the segment
// holds offset (so the caller must not look further). alloc, if not nil,
// gives the buffer the bytes are read into.
func (s *segment) read(offset int64, maxBytes int, maxOffset int64, minOne bool, alloc func(int) []byte) ([]byte, int64, bool, error) {
	pos, h, found, err := s.findBatch(offset)
	if err != nil || !found {
		return nil, 0, found, err
	}
	if h.BaseOffset >= maxOffset {
		return nil, 0, true, nil
	}
	limit := s.nextRegionStart(pos)
	n := min(int64(max(maxBytes, 0)), limit-pos)
	if int64(h.Size()) > n {
		if !minOne {
			return nil, 0, true, nil
		}
		n = int64(h.Size())
	}
	var buf []byte
	if alloc != nil {
		buf = alloc(int(n))[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := s.log.ReadAt(buf, pos); err != nil {
		return nil, 0, true, fmt.Errorf("segment %d: read %d bytes at position %d: %w", s.base, n, pos, err)
	}
	used := 0
	expected := h.BaseOffset
	for used+record.HeaderSize <= len(buf) {
		bh, err := record.ParseHeader(buf[used:])
		if err == nil && (bh.BaseOffset != expected || bh.Size() > len(buf)-used) {
			if bh.BaseOffset == expected && used > 0 {
				break // a whole batch that does not fit in maxBytes
			}
			if bh.BaseOffset == expected {
				err = fmt.Errorf("batch extends past the segment data")
			} else {
				err = fmt.Errorf("base offset %d, expected %d", bh.BaseOffset, expected)
			}
		}
		if err == nil {
			if bh.BaseOffset >= maxOffset {
				break
			}
			_, err = record.Validate(buf[used : used+bh.Size()])
		}
		if err != nil {
			if used > 0 {
				break // serve the good prefix; the next read reports it
			}
			return nil, 0, true, fmt.Errorf("%w: segment %d: batch at offset %d (position %d): %v", record.ErrCorrupt, s.base, expected, pos+int64(used), err)
		}
		used += bh.Size()
		expected = bh.NextOffset()
	}
	return buf[:used:used], pos, true, nil
}

// OffsetForTimestamp returns the offset and timestamp of the first record
// (at or above the log start offset) whose timestamp is >= ts, or (-1, -1,
// nil) if there is none. The time index finds where to start; batches are
// then CRC-checked and decoded.
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return -1, -1, fmt.Errorf("offset for timestamp %s: %w", l.dir, ErrClosed)
	}
	for _, s := range l.segs {
		if s.maxTs < ts || s.next <= l.logStart {
			continue
		}
		off, rts, err := s.offsetForTimestamp(ts, l.logStart)
		if err != nil || off >= 0 {
			return off, rts, err
		}
	}
	return -1, -1, nil
}

// offsetForTimestamp searches one segment. Caller holds mu (read).
func (s *segment) offsetForTimestamp(ts, logStart int64) (int64, int64, error) {
	from := max(s.base, logStart)
	if e, ok := s.tindex.lookup(ts); ok {
		from = max(from, s.base+int64(e.rel))
	}
	pos, h, found, err := s.findBatch(from)
	if err != nil || !found {
		return -1, -1, err
	}
	var buf []byte
	expected := h.BaseOffset
	for pos < s.size {
		if r := s.regionAt(pos); r != nil {
			return -1, -1, fmt.Errorf("%w: segment %d: corrupt region (offsets [%d,%d)) while searching for timestamp %d",
				record.ErrCorrupt, s.base, r.offset, r.endOffset, ts)
		}
		var b []byte
		h, b, err = s.batchAt(pos, s.nextRegionStart(pos), expected, buf)
		buf = b
		if err != nil {
			return -1, -1, fmt.Errorf("timestamp lookup: %w", err)
		}
		if h.MaxTimestamp >= ts && h.NextOffset() > logStart {
			recs, err := record.Records(b)
			if err != nil {
				return -1, -1, fmt.Errorf("%w: segment %d: batch at offset %d: %v", record.ErrCorrupt, s.base, h.BaseOffset, err)
			}
			for _, r := range recs {
				if r.Timestamp >= ts && r.Offset >= logStart {
					return r.Offset, r.Timestamp, nil
				}
			}
		}
		pos += int64(h.Size())
		expected = h.NextOffset()
	}
	return -1, -1, nil
}

// MaxTimestamp returns the largest record timestamp in the log and the
// offset of the first record holding it (ListOffsets MAX_TIMESTAMP,
// KIP-734; the record's own offset, not its batch's base offset, as Kafka
// answers since KAFKA-16310); (-1, -1) if no batch has a timestamp. The
// batch holding it is read and CRC-checked; if it cannot be decoded, its
// base offset is returned.
func (l *Log) MaxTimestamp() (timestamp, offset int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	timestamp, offset = -1, -1
	var seg *segment
	for _, s := range l.segs {
		if s.maxTs > timestamp {
			timestamp, offset, seg = s.maxTs, s.maxTsOffset, s
		}
	}
	if seg != nil {
		offset = seg.recordWithTimestamp(offset, timestamp)
	}
	return timestamp, offset
}

// recordWithTimestamp returns the offset of the first record with timestamp
// ts in the batch containing off, or off if there is none or the batch
// cannot be read. Caller holds mu (read).
func (s *segment) recordWithTimestamp(off, ts int64) int64 {
	pos, h, found, err := s.findBatch(off)
	if err != nil || !found {
		return off
	}
	if h.LogAppendTime() {
		return h.BaseOffset // every record has the batch's timestamp
	}
	_, b, err := s.batchAt(pos, s.nextRegionStart(pos), h.BaseOffset, nil)
	if err != nil {
		return off
	}
	recs, err := record.Records(b)
	if err != nil {
		return off
	}
	for _, r := range recs {
		if r.Timestamp == ts {
			return r.Offset
		}
	}
	return off
}

// scanChunk bounds how many headers ScanHeaders collects under the lock.
const scanChunk = 1024

// ScanHeaders calls fn with the header of every batch from the one
// containing from (or the log start) to the LEO, in order. Only headers are
// read (framing and offset continuity are checked, not CRCs), so it is fast.
// Known corrupt regions (see Corruption) are skipped; other bad framing
// returns an error wrapping record.ErrCorrupt. fn runs without the log's
// lock held and may call other Log methods.
func (l *Log) ScanHeaders(from int64, fn func(h record.Header) error) error {
	next := from
	for {
		hs, err := l.collectHeaders(next)
		if err != nil {
			return err
		}
		if len(hs) == 0 {
			return nil
		}
		for _, h := range hs {
			if err := fn(h); err != nil {
				return err
			}
		}
		next = hs[len(hs)-1].NextOffset()
	}
}

// collectHeaders returns up to scanChunk headers starting with the batch
// containing from.
func (l *Log) collectHeaders(from int64) ([]record.Header, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, fmt.Errorf("scan %s: %w", l.dir, ErrClosed)
	}
	from = max(from, l.logStart)
	var out []record.Header
	for i := l.segmentFor(from); i < len(l.segs) && len(out) < scanChunk; i++ {
		s := l.segs[i]
		pos, h, found, err := s.findBatch(from)
		for err != nil {
			// Skip a known corrupt region containing from.
			r := s.regionHolding(from)
			if r == nil {
				return nil, err
			}
			from = r.endOffset
			pos, h, found, err = s.findBatch(from)
		}
		if !found {
			continue
		}
		expected := h.BaseOffset
		for pos < s.size && len(out) < scanChunk {
			if r := s.regionAt(pos); r != nil {
				pos, expected = r.end, r.endOffset
				continue
			}
			h, err := s.headerAt(pos, s.nextRegionStart(pos), expected)
			if err != nil {
				return nil, fmt.Errorf("scan headers: %w", err)
			}
			out = append(out, h)
			pos += int64(h.Size())
			expected = h.NextOffset()
		}
		from = expected
	}
	return out, nil
}

// regionHolding returns the corrupt region whose offsets include off.
func (s *segment) regionHolding(off int64) *corruptRegion {
	for i := range s.corrupt {
		if r := &s.corrupt[i]; off >= r.offset && off < r.endOffset {
			return r
		}
	}
	return nil
}

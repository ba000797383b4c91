package log

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"strand/internal/record"
)

// File name suffixes of a segment.
const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
)

// segmentName returns the file name for a segment base offset and suffix:
// the base offset zero-padded to 20 digits.
func segmentName(base int64, suffix string) string {
	return fmt.Sprintf("%020d%s", base, suffix)
}

// corruptRegion is a byte range [pos, end) of a segment that recovery found
// corrupt but could not safely cut off because valid data follows it. It
// stands for the offsets [offset, endOffset). Reads of those offsets fail
// with record.ErrCorrupt.
type corruptRegion struct {
	pos, end          int64
	offset, endOffset int64
}

// segment is one log file with its indexes. All mutable fields are guarded
// by the owning Log's mu. Invariants: the bytes [0, size) of the log file are
// whole batches (plus recorded corrupt regions) with offsets starting at
// base and dense up to next; index entries point at batch starts.
type segment struct {
	base   int64
	log    *os.File
	index  *offsetIndex
	tindex *timeIndex

	size        int64 // bytes of log data
	next        int64 // offset following the last batch (base if empty)
	maxTs       int64 // largest batch MaxTimestamp, -1 if none
	maxTsOffset int64 // base offset of the batch holding maxTs, -1 if none
	firstTs     int64 // MaxTimestamp of the first batch, -1 if none (segment.ms)
	created     time.Time
	sinceIndex  int64 // log bytes appended since the last offset index entry
	corrupt     []corruptRegion
	dirty       bool     // index entries not persisted
	missing     []string // index file suffixes absent when the segment was opened
	unwritten   bool     // an index file may not exist yet: the next persist creates it
	cuts        cutGuard // in-place truncations, against sends from the file (fileread.go)
}

// openSegment opens (creating if needed) the log file of a segment; its
// index files are opened lazily (indexFile). With truncate, existing
// content is discarded: the log file is truncated and index files left by
// an earlier segment at the same base are removed.
func openSegment(dir string, base int64, cfg Config, truncate bool, now time.Time) (*segment, error) {
	flags := os.O_RDWR | os.O_CREATE
	if truncate {
		flags |= os.O_TRUNC
	}
	var missing []string
	for _, suf := range []string{indexSuffix, timeIndexSuffix} {
		p := filepath.Join(dir, segmentName(base, suf))
		if truncate {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("segment %d: %w", base, err)
			}
			missing = append(missing, suf)
		} else if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, suf)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, segmentName(base, logSuffix)), flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", base, err)
	}
	s := &segment{
		base:        base,
		log:         f,
		index:       &offsetIndex{indexFile: indexFile{path: filepath.Join(dir, segmentName(base, indexSuffix))}},
		tindex:      &timeIndex{indexFile: indexFile{path: filepath.Join(dir, segmentName(base, timeIndexSuffix))}},
		next:        base,
		maxTs:       -1,
		maxTsOffset: -1,
		firstTs:     -1,
		created:     now,
		missing:     missing,
		unwritten:   len(missing) > 0,
	}
	s.setLimits(cfg)
	return s, nil
}

// setLimits applies segment.index.bytes to both indexes.
func (s *segment) setLimits(cfg Config) {
	s.index.maxEntries = max(1, int(cfg.SegmentIndexBytes)/indexEntrySize)
	s.tindex.maxEntries = max(1, int(cfg.SegmentIndexBytes)/timeIndexEntrySize)
}

// rel converts an absolute offset in this segment to a relative one.
func (s *segment) rel(off int64) uint32 {
	d := off - s.base
	if d < 0 {
		return 0
	}
	if d > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(d)
}

// resetState clears everything derived from the log data, before a rescan.
func (s *segment) resetState() {
	s.index.reset()
	s.tindex.reset()
	s.size, s.next = 0, s.base
	s.maxTs, s.maxTsOffset, s.firstTs = -1, -1, -1
	s.sinceIndex = 0
	s.corrupt = nil
	s.dirty = true
	s.missing = nil
}

// indexBatch updates the in-memory state for a batch with header h stored
// at pos, which must directly follow the previously indexed data.
func (s *segment) indexBatch(h record.Header, pos int64, interval int32) {
	if pos == 0 {
		s.firstTs = h.MaxTimestamp
	}
	if h.MaxTimestamp > s.maxTs {
		s.maxTs, s.maxTsOffset = h.MaxTimestamp, h.BaseOffset
	}
	if pos > 0 && s.sinceIndex > int64(interval) && pos <= math.MaxUint32 {
		s.index.add(s.rel(h.BaseOffset), uint32(pos))
		s.tindex.maybeAdd(s.maxTs, s.rel(s.maxTsOffset))
		s.sinceIndex = 0
	}
	s.sinceIndex += int64(h.Size())
	s.size = pos + int64(h.Size())
	s.next = h.NextOffset()
	s.dirty = true
}

// seal adds the final time index entry when the segment stops being active
// or is closed, so the last entry always carries the segment's max timestamp.
func (s *segment) seal() {
	if s.maxTs >= 0 {
		s.tindex.maybeAdd(s.maxTs, s.rel(s.maxTsOffset))
	}
}

// persistIndexes writes in-memory index entries to their files.
func (s *segment) persistIndexes() error {
	if !s.dirty && !s.unwritten {
		return nil
	}
	if err := s.index.persist(); err != nil {
		return fmt.Errorf("segment %d: write offset index: %w", s.base, err)
	}
	if err := s.tindex.persist(); err != nil {
		return fmt.Errorf("segment %d: write time index: %w", s.base, err)
	}
	s.dirty, s.unwritten = false, false
	return nil
}

// syncLog makes the log file's data durable (fdatasync on Linux: see
// datasync).
func (s *segment) syncLog() error {
	if err := datasync(s.log); err != nil {
		return fmt.Errorf("segment %d: fsync log: %w", s.base, err)
	}
	return nil
}

// syncIndexes fsyncs the index files.
func (s *segment) syncIndexes() error {
	if err := s.index.sync(); err != nil {
		return fmt.Errorf("segment %d: fsync offset index: %w", s.base, err)
	}
	if err := s.tindex.sync(); err != nil {
		return fmt.Errorf("segment %d: fsync time index: %w", s.base, err)
	}
	return nil
}

// close closes the segment's files.
func (s *segment) close() error {
	return errors.Join(s.log.Close(), s.index.close(), s.tindex.close())
}

// closeIndexes closes the index files' descriptors after syncIndexes, so a
// segment that is not written keeps only its log file open.
func (s *segment) closeIndexes() error {
	return errors.Join(s.index.close(), s.tindex.close())
}

// remove closes and deletes the segment's files.
func (s *segment) remove() error {
	err := s.close()
	for _, name := range []string{s.log.Name(), s.index.name(), s.tindex.name()} {
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("segment %d: remove: %w", s.base, err)
	}
	return nil
}

// regionAt returns the corrupt region starting at pos, if any.
func (s *segment) regionAt(pos int64) *corruptRegion {
	for i := range s.corrupt {
		if s.corrupt[i].pos == pos {
			return &s.corrupt[i]
		}
	}
	return nil
}

// nextRegionStart returns the start of the first corrupt region at or after
// pos, or s.size.
func (s *segment) nextRegionStart(pos int64) int64 {
	end := s.size
	for _, r := range s.corrupt {
		if r.pos >= pos && r.pos < end {
			end = r.pos
		}
	}
	return end
}

// headerAt reads and checks the header of the batch at pos: well-framed,
// inside [0, limit), and with base offset expected. It does not check the
// CRC. Errors wrap record.ErrCorrupt.
func (s *segment) headerAt(pos, limit, expected int64) (record.Header, error) {
	var buf [record.HeaderSize]byte
	if pos+record.HeaderSize > limit {
		return record.Header{}, fmt.Errorf("%w: segment %d: %d bytes at position %d are too short for a batch (offset %d)", record.ErrCorrupt, s.base, limit-pos, pos, expected)
	}
	if _, err := s.log.ReadAt(buf[:], pos); err != nil {
		return record.Header{}, fmt.Errorf("segment %d: read header at position %d: %w", s.base, pos, err)
	}
	h, err := record.ParseHeader(buf[:])
	if err != nil {
		return h, fmt.Errorf("%w: segment %d: position %d (offset %d): %v", record.ErrCorrupt, s.base, pos, expected, err)
	}
	if pos+int64(h.Size()) > limit {
		return h, fmt.Errorf("%w: segment %d: batch at position %d (offset %d) of %d bytes exceeds the segment end %d", record.ErrCorrupt, s.base, pos, expected, h.Size(), limit)
	}
	if h.BaseOffset != expected || h.LastOffsetDelta < 0 {
		return h, fmt.Errorf("%w: segment %d: batch at position %d has offsets [%d,%d], expected base %d", record.ErrCorrupt, s.base, pos, h.BaseOffset, h.LastOffset(), expected)
	}
	return h, nil
}

// batchAt reads the whole batch at pos into buf (grown as needed), checks
// framing, CRC and the expected base offset, and returns its header and
// bytes. Errors wrap record.ErrCorrupt.
func (s *segment) batchAt(pos, limit, expected int64, buf []byte) (record.Header, []byte, error) {
	h, err := s.headerAt(pos, limit, expected)
	if err != nil {
		return h, buf, err
	}
	if cap(buf) < h.Size() {
		buf = make([]byte, h.Size())
	}
	b := buf[:h.Size()]
	if _, err := s.log.ReadAt(b, pos); err != nil {
		return h, buf, fmt.Errorf("segment %d: read batch at position %d: %w", s.base, pos, err)
	}
	if _, err := record.Validate(b); err != nil {
		return h, buf, fmt.Errorf("%w: segment %d: batch at position %d (offset %d): %v", record.ErrCorrupt, s.base, pos, expected, err)
	}
	return h, b, nil
}

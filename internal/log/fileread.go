package log

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
)

// FileRange is where the bytes of a ReadFile lie in their segment file, so
// that a connection can send them with sendfile(2) rather than from memory.
// The zero FileRange has no file: its bytes are sent from memory.
//
// Invariant: while the segment file is unchanged since the read, the file
// holds exactly the bytes ReadFile returned at [pos, pos+len). Appends only
// write past them; retention, compaction and log deletion close or unlink
// the file but never change its bytes (a send holds its own reference on
// the descriptor, see SendTo); the one in-place change, a truncation
// (Truncate, a follower's divergence), is recorded in the segment's cut
// guard first, and a send that sees it sends the rest from memory.
type FileRange struct {
	file  *os.File
	pos   int64
	n     int
	guard *cutGuard
	gen   uint64 // guard.gen at the read
	owned bool   // file is a duplicate descriptor of the range's own (ReadFileRange): Close closes it
}

// HasFile reports whether r names file bytes (else they are sent from memory).
func (r FileRange) HasFile() bool { return r.file != nil }

// Len is the range's size in bytes.
func (r FileRange) Len() int { return r.n }

// Close releases the range's own descriptor, if it has one (ReadFileRange).
func (r FileRange) Close() error {
	if r.owned && r.file != nil {
		return r.file.Close()
	}
	return nil
}

// ErrFileChanged is returned by SendTo for a range with no bytes in memory
// (ReadFileRange) whose file was truncated in place since the read: its
// bytes can no longer be sent, and a connection that promised them must
// close.
var ErrFileChanged = errors.New("segment file truncated since the read")

// cutGuard orders in-place truncations of a segment file against sends
// from it: a send holds mu (read) across each sendfile call and checks gen;
// a truncation bumps gen under mu (write) before it cuts the file. So every
// byte sent from the file was sent before the cut, when the file still held
// what the read validated.
type cutGuard struct {
	mu  sync.RWMutex // guards gen; held (read) across each sendfile call
	gen uint64       // truncations of the file so far
}

// cut records that the file is about to be truncated in place. Caller
// holds the log's mu (write).
func (g *cutGuard) cut() {
	g.mu.Lock()
	g.gen++
	g.mu.Unlock()
}

// current returns the generation (truncations so far). Caller holds the
// log's mu (read), which excludes cut.
func (g *cutGuard) current() uint64 {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.gen
}

// ReadFile is Read, plus where the returned bytes lie in the segment file
// (for sendfile). The bytes are CRC-checked as Read's are: every byte sent
// was validated first (DESIGN invariant 6); what is saved is copying them
// into the response and into the socket. alloc, if not nil, provides the
// buffer the bytes are read into (it is given their size, and may return a
// larger slice).
func (l *Log) ReadFile(offset int64, maxBytes int, maxOffset int64, minOne bool, alloc func(int) []byte) ([]byte, FileRange, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, FileRange{}, fmt.Errorf("read %s: %w", l.dir, ErrClosed)
	}
	if offset < l.logStart || offset > l.leo {
		return nil, FileRange{}, fmt.Errorf("read %s: %w: offset %d not in [%d,%d]", l.dir, ErrOffsetOutOfRange, offset, l.logStart, l.leo)
	}
	for i := l.segmentFor(offset); i < len(l.segs); i++ {
		s := l.segs[i]
		data, pos, found, err := s.read(offset, maxBytes, maxOffset, minOne, alloc)
		if err != nil || !found {
			if err != nil {
				return nil, FileRange{}, err
			}
			continue
		}
		if len(data) == 0 {
			return data, FileRange{}, nil
		}
		return data, FileRange{file: s.log, pos: pos, n: len(data), guard: &s.cuts, gen: s.cuts.current()}, nil
	}
	return nil, FileRange{}, nil
}

// ReadFileRange is ReadFile without reading the bytes into memory, as
// Kafka serves fetches: the same batches are chosen, and each one's framing
// (length within the segment, offsets following on) is checked from its
// header, but not its CRC, which the consumer checks (this relaxes DESIGN
// invariant 6, hence the broker property fetch.verify.crc; damage is still
// found by the background verification; batches between offset index
// entries are not even re-read: see rangeOf). The range holds its own duplicate
// of the segment's descriptor, so retention, compaction or log deletion
// after the read cannot take its bytes away; the caller must Close it. A
// truncation after the read makes SendTo fail with ErrFileChanged. A range
// with nothing to read has no file.
func (l *Log) ReadFileRange(offset int64, maxBytes int, maxOffset int64, minOne bool) (FileRange, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return FileRange{}, fmt.Errorf("read %s: %w", l.dir, ErrClosed)
	}
	if offset < l.logStart || offset > l.leo {
		return FileRange{}, fmt.Errorf("read %s: %w: offset %d not in [%d,%d]", l.dir, ErrOffsetOutOfRange, offset, l.logStart, l.leo)
	}
	for i := l.segmentFor(offset); i < len(l.segs); i++ {
		s := l.segs[i]
		pos, n, found, err := s.rangeOf(offset, maxBytes, maxOffset, minOne)
		if err != nil {
			return FileRange{}, err
		}
		if !found {
			continue
		}
		if n == 0 {
			return FileRange{}, nil
		}
		f, err := dupFile(s.log)
		if err != nil {
			return FileRange{}, fmt.Errorf("segment %d: %w", s.base, err)
		}
		return FileRange{file: f, pos: pos, n: int(n), guard: &s.cuts, gen: s.cuts.current(), owned: true}, nil
	}
	return FileRange{}, nil
}

// rangeOf is read without reading the data: the position and size of the
// whole batches read would return. The batches at the range's ends have
// their headers checked; those in between are vouched for by the offset
// index (its entries point at batch starts), read only where it has no
// entry. Caller holds mu (read).
func (s *segment) rangeOf(offset int64, maxBytes int, maxOffset int64, minOne bool) (pos, n int64, found bool, err error) {
	pos, h, found, err := s.findBatch(offset)
	if err != nil || !found {
		return 0, 0, found, err
	}
	limit := s.nextRegionStart(pos)
	budget := min(pos+int64(max(maxBytes, 0)), limit)
	end, expected := pos, h.BaseOffset
	for end < limit {
		bh := h
		if end > pos {
			// Skip the whole batches up to the last index entry within
			// the budget and below maxOffset: the index only points at
			// batch starts, so they all fit.
			if e, ok := s.lastEntryWithin(end, budget, maxOffset); ok {
				end, expected = int64(e.pos), s.base+int64(e.rel)
				if end >= limit {
					break
				}
			}
			if bh, err = s.headerAt(end, limit, expected); err != nil {
				break // serve the good prefix; the next read reports it
			}
		}
		size := int64(bh.Size())
		if bh.BaseOffset >= maxOffset || (end-pos+size > int64(max(maxBytes, 0)) && !(end == pos && minOne)) {
			break
		}
		end += size
		expected = bh.NextOffset()
	}
	return pos, end - pos, true, nil
}

// lastEntryWithin returns the offset index's last entry past position
// after whose position is <= maxPos and whose offset is <= maxOffset, if
// any. Caller holds mu (read).
func (s *segment) lastEntryWithin(after, maxPos, maxOffset int64) (indexEntry, bool) {
	es := s.index.entries
	i := sort.Search(len(es), func(i int) bool {
		return int64(es[i].pos) > maxPos || s.base+int64(es[i].rel) > maxOffset
	})
	if i == 0 || int64(es[i-1].pos) <= after {
		return indexEntry{}, false
	}
	return es[i-1], true
}

package log

import (
	"fmt"
	"os"
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
	guard *cutGuard
	gen   uint64 // guard.gen at the read
}

// HasFile reports whether r names file bytes (else they are sent from memory).
func (r FileRange) HasFile() bool { return r.file != nil }

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
		return data, FileRange{file: s.log, pos: pos, guard: &s.cuts, gen: s.cuts.current()}, nil
	}
	return nil, FileRange{}, nil
}

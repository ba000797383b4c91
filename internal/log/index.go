package log

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
)

const (
	indexEntrySize     = 8  // relativeOffset uint32 + position uint32
	timeIndexEntrySize = 12 // timestamp int64 + relativeOffset uint32
)

// indexEntry maps a batch base offset (relative to the segment base) to the
// file position of that batch.
type indexEntry struct {
	rel uint32
	pos uint32
}

// offsetIndex is a segment's sparse offset index. The in-memory entries are
// authoritative while the log is open; entries[:persisted] are also in the
// file. Invariant: rel and pos are both strictly increasing.
type offsetIndex struct {
	indexFile
	entries    []indexEntry
	persisted  int
	maxEntries int
}

// full reports whether no more entries fit within segment.index.bytes.
func (x *offsetIndex) full() bool { return len(x.entries) >= x.maxEntries }

// add appends an entry if it keeps the invariant and there is room.
func (x *offsetIndex) add(rel, pos uint32) {
	if x.full() {
		return
	}
	if n := len(x.entries); n > 0 && (rel <= x.entries[n-1].rel || pos <= x.entries[n-1].pos) {
		return
	}
	x.entries = append(x.entries, indexEntry{rel, pos})
}

// lookup returns the last entry with rel <= target, or {0,0} (the segment
// start) if there is none.
func (x *offsetIndex) lookup(target uint32) indexEntry {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].rel > target })
	if i == 0 {
		return indexEntry{}
	}
	return x.entries[i-1]
}

// persist writes the not yet persisted entries and trims the file to the
// entries in memory.
func (x *offsetIndex) persist() error {
	buf := make([]byte, 0, (len(x.entries)-x.persisted)*indexEntrySize)
	for _, e := range x.entries[x.persisted:] {
		buf = binary.BigEndian.AppendUint32(buf, e.rel)
		buf = binary.BigEndian.AppendUint32(buf, e.pos)
	}
	f, err := x.file()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(buf, int64(x.persisted)*indexEntrySize); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(x.entries)) * indexEntrySize); err != nil {
		return err
	}
	x.persisted = len(x.entries)
	return nil
}

// reset empties the index in memory and on disk (on the next persist).
func (x *offsetIndex) reset() {
	x.entries = x.entries[:0]
	x.persisted = 0
}

// load reads and structurally validates the index file against a log of
// logSize bytes: size a multiple of the entry size, entries strictly
// increasing, positions inside the log. The caller checks the last entry
// against the log.
func (x *offsetIndex) load(logSize int64) error {
	b, err := x.read()
	if err != nil {
		return err
	}
	if len(b)%indexEntrySize != 0 {
		return fmt.Errorf("offset index size %d is not a multiple of %d", len(b), indexEntrySize)
	}
	entries := make([]indexEntry, 0, len(b)/indexEntrySize)
	for p := 0; p < len(b); p += indexEntrySize {
		e := indexEntry{binary.BigEndian.Uint32(b[p:]), binary.BigEndian.Uint32(b[p+4:])}
		if n := len(entries); n > 0 && (e.rel <= entries[n-1].rel || e.pos <= entries[n-1].pos) {
			return fmt.Errorf("offset index entry %d (%d@%d) does not increase", n, e.rel, e.pos)
		}
		if int64(e.pos)+1 > logSize {
			return fmt.Errorf("offset index entry %d position %d beyond log size %d", len(entries), e.pos, logSize)
		}
		entries = append(entries, e)
	}
	x.entries = entries
	x.persisted = len(entries)
	return nil
}

// timeEntry records that the largest timestamp among batches up to some
// point of the segment is ts, held by the batch with base offset base+rel.
type timeEntry struct {
	ts  int64
	rel uint32
}

// timeIndex is a segment's time index. Invariant: ts strictly increasing,
// rel non-decreasing. An entry is added only when the max timestamp grows.
type timeIndex struct {
	indexFile
	entries    []timeEntry
	persisted  int
	maxEntries int
}

func (x *timeIndex) full() bool { return len(x.entries) >= x.maxEntries }

// last returns the last entry, or {-1, 0} if empty.
func (x *timeIndex) last() timeEntry {
	if len(x.entries) == 0 {
		return timeEntry{ts: -1}
	}
	return x.entries[len(x.entries)-1]
}

// maybeAdd appends (ts, rel) if ts exceeds the last entry's timestamp.
func (x *timeIndex) maybeAdd(ts int64, rel uint32) {
	if ts < 0 || x.full() {
		return
	}
	if l := x.last(); ts <= l.ts || (len(x.entries) > 0 && rel < l.rel) {
		return
	}
	x.entries = append(x.entries, timeEntry{ts, rel})
}

// lookup returns the last entry with ts strictly below target: every batch
// up to and including the one at its offset has timestamps < target.
func (x *timeIndex) lookup(target int64) (timeEntry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].ts >= target })
	if i == 0 {
		return timeEntry{}, false
	}
	return x.entries[i-1], true
}

func (x *timeIndex) reset() {
	x.entries = x.entries[:0]
	x.persisted = 0
}

func (x *timeIndex) persist() error {
	buf := make([]byte, 0, (len(x.entries)-x.persisted)*timeIndexEntrySize)
	for _, e := range x.entries[x.persisted:] {
		buf = binary.BigEndian.AppendUint64(buf, uint64(e.ts))
		buf = binary.BigEndian.AppendUint32(buf, e.rel)
	}
	f, err := x.file()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(buf, int64(x.persisted)*timeIndexEntrySize); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(x.entries)) * timeIndexEntrySize); err != nil {
		return err
	}
	x.persisted = len(x.entries)
	return nil
}

// load reads and validates the time index: size a multiple of 12,
// timestamps strictly increasing and non-negative, offsets non-decreasing
// and below maxRel (the segment's next offset minus its base).
func (x *timeIndex) load(maxRel int64) error {
	b, err := x.read()
	if err != nil {
		return err
	}
	if len(b)%timeIndexEntrySize != 0 {
		return fmt.Errorf("time index size %d is not a multiple of %d", len(b), timeIndexEntrySize)
	}
	entries := make([]timeEntry, 0, len(b)/timeIndexEntrySize)
	for p := 0; p < len(b); p += timeIndexEntrySize {
		e := timeEntry{int64(binary.BigEndian.Uint64(b[p:])), binary.BigEndian.Uint32(b[p+8:])}
		if n := len(entries); e.ts < 0 || (n > 0 && (e.ts <= entries[n-1].ts || e.rel < entries[n-1].rel)) {
			return fmt.Errorf("time index entry %d (%d@%d) does not increase", n, e.ts, e.rel)
		}
		if int64(e.rel) >= maxRel {
			return fmt.Errorf("time index entry %d offset %d beyond segment end %d", len(entries), e.rel, maxRel)
		}
		entries = append(entries, e)
	}
	x.entries = entries
	x.persisted = len(entries)
	return nil
}

// indexFile is the file of an index, opened lazily: a segment keeps no file
// descriptor for an index it has only read (a sealed segment loaded at
// start) and creates the file of a new segment's index only when it first
// writes it (persist), so that a new partition costs one file (the log) and
// an idle one one descriptor. A missing index file is rebuilt from the log
// at the next open (loadIndexes), so creating it late loses nothing.
// Guarded like the index that holds it (the owning Log's mu; sync and close
// run under flushMu on a file opened under mu).
type indexFile struct {
	path string   // the file's path; empty when f was given (compaction)
	f    *os.File // open descriptor, nil until written
}

// file returns the open descriptor, opening (and creating) the file first.
func (x *indexFile) file() (*os.File, error) {
	if x.f == nil {
		f, err := os.OpenFile(x.path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		x.f = f
	}
	return x.f, nil
}

// read returns the whole content of the file, through the open descriptor
// if there is one, else without keeping one open.
func (x *indexFile) read() ([]byte, error) {
	if x.f == nil {
		return os.ReadFile(x.path)
	}
	st, err := x.f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	if _, err := x.f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// sync fsyncs what was written through the descriptor (nothing if none is
// open: the file was not written since it was last closed after a sync).
func (x *indexFile) sync() error {
	if x.f == nil {
		return nil
	}
	return x.f.Sync()
}

// close closes the descriptor, if open; the next write reopens the file.
func (x *indexFile) close() error {
	if x.f == nil {
		return nil
	}
	f := x.f
	x.f = nil
	return f.Close()
}

// name returns the file's path.
func (x *indexFile) name() string {
	if x.f != nil {
		return x.f.Name()
	}
	return x.path
}

package log

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"strand/internal/record"
)

// segFiles lists the .log files of dir in order.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no segments: %v", err)
	}
	return m
}

// batchPositions returns the start positions of the batches in a log file.
func batchPositions(t testing.TB, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pos []int
	p := 0
	record.Split(b, func(bb []byte) error { pos = append(pos, p); p += len(bb); return nil })
	return pos
}

func TestRecoveryTruncatedTail(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	appendN(t, l, 20, 0)
	l.Flush()
	segs := segFiles(t, dir)
	path := segs[len(segs)-1]
	pos := batchPositions(t, path)
	if err := os.Truncate(path, int64(pos[19]+30)); err != nil { // cut the last batch
		t.Fatal(err)
	}
	l2 := crashReopen(t, l, dir, DefaultConfig())
	if l2.LogEndOffset() != 38 || l2.Corruption() != nil {
		t.Fatalf("LEO %d corruption %v", l2.LogEndOffset(), l2.Corruption())
	}
	if st, _ := os.Stat(path); st.Size() != int64(pos[19]) {
		t.Fatalf("file not truncated: %d", st.Size())
	}
	bases := appendN(t, l2, 2, 0)
	if bases[0] != 38 || len(readAllRecords(t, l2, 0)) != 42 {
		t.Fatalf("append after recovery at %d", bases[0])
	}
}

func TestRecoveryGarbageTail(t *testing.T) {
	for name, garbage := range map[string][]byte{
		"zeros":  make([]byte, 5000),
		"random": bytes.Repeat([]byte{0x13, 0x02, 0xff, 0x00, 0x7f, 0x02, 0x02}, 700),
		"header": batch(t, 1, 10, 0, "g")[:record.HeaderSize+3],
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, DefaultConfig())
			appendN(t, l, 10, 0)
			l.Flush()
			path := segFiles(t, dir)[0]
			st, _ := os.Stat(path)
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(garbage)
			f.Close()
			l2 := crashReopen(t, l, dir, DefaultConfig())
			if l2.LogEndOffset() != 20 || l2.Corruption() != nil {
				t.Fatalf("LEO %d corruption %v", l2.LogEndOffset(), l2.Corruption())
			}
			if st2, _ := os.Stat(path); st2.Size() != st.Size() {
				t.Fatalf("garbage not cut: %d vs %d", st2.Size(), st.Size())
			}
			appendN(t, l2, 1, 0)
			if len(readAllRecords(t, l2, 0)) != 22 {
				t.Fatal("bad records after recovery")
			}
		})
	}
}

func TestRecoveryBitFlipMiddle(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	appendN(t, l, 20, 0)
	l.Flush()
	path := segFiles(t, dir)[0]
	pos := batchPositions(t, path)
	b, _ := os.ReadFile(path)
	b[pos[10]+record.HeaderSize+5] ^= 0x40 // inside batch 10 (offsets 20,21)
	os.WriteFile(path, b, 0o644)
	l2 := crashReopen(t, l, dir, DefaultConfig())
	if err := l2.Corruption(); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("Corruption() = %v", err)
	}
	if l2.LogEndOffset() != 40 {
		t.Fatalf("acknowledged data truncated: LEO %d", l2.LogEndOffset())
	}
	if st, _ := os.Stat(path); st.Size() != int64(len(b)) {
		t.Fatal("file was truncated")
	}
	for _, off := range []int64{20, 21} {
		if _, err := l2.Read(off, 1000, 40, true); !errors.Is(err, record.ErrCorrupt) {
			t.Fatalf("Read(%d) = %v, want ErrCorrupt", off, err)
		}
	}
	// Earlier data readable; a big read stops before the corrupt batch.
	data, err := l2.Read(0, 1<<20, 40, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != pos[10] {
		t.Fatalf("read served %d bytes, want the %d before the corruption", len(data), pos[10])
	}
	// Later data readable too, and appends continue.
	if recs := readAllRecords(t, l2, 22); len(recs) != 18 {
		t.Fatalf("%d records after the corruption", len(recs))
	}
	appendN(t, l2, 1, 0)
	if l2.LogEndOffset() != 42 {
		t.Fatalf("LEO %d", l2.LogEndOffset())
	}
	var n int
	if err := l2.ScanHeaders(0, func(record.Header) error { n++; return nil }); err != nil || n != 20 {
		t.Fatalf("ScanHeaders: %d headers, %v", n, err)
	}
	// Still reported after a clean restart? Regions live in memory only,
	// so a clean reopen detects the corruption at Read time instead.
	l2.Close()
	l3 := openT(t, dir, DefaultConfig())
	if _, err := l3.Read(20, 1000, 40, true); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("after clean reopen Read(20) = %v", err)
	}
}

func TestBitFlipInactiveSegmentDetectedAtRead(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	appendN(t, l, 100, 0)
	l.Close()
	path := segFiles(t, dir)[1]
	pos := batchPositions(t, path)
	b, _ := os.ReadFile(path)
	b[pos[2]+record.HeaderSize+1] ^= 1
	os.WriteFile(path, b, 0o644)
	l2 := openT(t, dir, smallConfig()) // clean: no scan
	hb, _ := record.ParseHeader(b[pos[2]:])
	if _, err := l2.Read(hb.BaseOffset, 1000, 200, true); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("Read of flipped batch = %v", err)
	}
	if _, err := l2.Read(hb.BaseOffset-2, 100000, 200, true); err != nil {
		t.Fatalf("read before the corruption: %v", err)
	}
	if _, err := l2.Read(hb.NextOffset(), 100000, 200, true); err != nil {
		t.Fatalf("read after the corruption: %v", err)
	}
}

func TestRebuildMissingAndCorruptIndexes(t *testing.T) {
	for _, mode := range []string{"delete-index", "delete-timeindex", "garbage-index", "bad-last-entry", "odd-timeindex"} {
		t.Run(mode, func(t *testing.T) {
			cfg := smallConfig()
			dir := t.TempDir()
			l := openT(t, dir, cfg)
			appendN(t, l, 100, 1000)
			l.Close()
			seg := segFiles(t, dir)[1]
			idx := seg[:len(seg)-4] + ".index"
			tidx := seg[:len(seg)-4] + ".timeindex"
			orig, _ := os.ReadFile(idx)
			if len(orig) < 16 {
				t.Fatalf("index too small: %d", len(orig))
			}
			switch mode {
			case "delete-index":
				os.Remove(idx)
			case "delete-timeindex":
				os.Remove(tidx)
			case "garbage-index":
				os.WriteFile(idx, bytes.Repeat([]byte{0xff}, 24), 0o644)
			case "bad-last-entry":
				b := append([]byte{}, orig...)
				b[len(b)-1]++ // position no longer at a batch start
				os.WriteFile(idx, b, 0o644)
			case "odd-timeindex":
				os.WriteFile(tidx, make([]byte, 13), 0o644)
			}
			l2 := openT(t, dir, cfg)
			if recs := readAllRecords(t, l2, 0); len(recs) != 200 {
				t.Fatalf("%d records", len(recs))
			}
			if off, _, err := l2.OffsetForTimestamp(1500); off != 100 || err != nil {
				t.Fatalf("OffsetForTimestamp = %d %v", off, err)
			}
			l2.Close()
			rebuilt, _ := os.ReadFile(idx)
			if !bytes.Equal(rebuilt, orig) {
				t.Fatalf("rebuilt index differs: %d vs %d bytes", len(rebuilt), len(orig))
			}
			if st, err := os.Stat(tidx); err != nil || st.Size() == 0 || st.Size()%12 != 0 {
				t.Fatalf("time index not rebuilt: %v", err)
			}
		})
	}
}

func TestRecoveryPointSkipsFlushedSegments(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	appendN(t, l, 100, 0)
	if err := l.Flush(); err != nil { // writes the recovery point (segments rolled)
		t.Fatal(err)
	}
	rp, err := readCheckpoint(dir, recoveryPointFile)
	if err != nil || rp != 200 {
		t.Fatalf("recovery point %d %v", rp, err)
	}
	// Corrupt an early segment: a crash restart must not scan (nor
	// truncate) it, while Read still detects the corruption.
	path := segFiles(t, dir)[0]
	b, _ := os.ReadFile(path)
	b[len(b)-3] ^= 1
	os.WriteFile(path, b, 0o644)
	l2 := crashReopen(t, l, dir, smallConfig())
	if l2.LogEndOffset() != 200 || l2.Corruption() != nil {
		t.Fatalf("LEO %d corruption %v", l2.LogEndOffset(), l2.Corruption())
	}
	if st, _ := os.Stat(path); st.Size() != int64(len(b)) {
		t.Fatal("flushed segment modified")
	}
	h, _ := record.ParseHeader(b[batchPositions(t, path)[len(batchPositions(t, path))-1]:])
	if _, err := l2.Read(h.BaseOffset, 1000, 200, true); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("Read = %v", err)
	}
}

// TestMaxTimestampRecordOffset: MAX_TIMESTAMP names the record holding the
// largest timestamp, inside multi-record batches with out-of-order
// timestamps (issue 8 §5, KAFKA-16310), also after a reopen.
func TestMaxTimestampRecordOffset(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	build := func(ts ...int64) []byte {
		recs := make([]record.Record, len(ts))
		for i, v := range ts {
			recs[i] = record.Record{Timestamp: v, Value: []byte("v")}
		}
		return record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
	}
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = 1000 + int64(i)
	}
	for _, b := range [][]byte{
		build(hundred...),       // offsets 0-99, max at 99
		build(5, 9000, 7, 8999), // offsets 100-103, max 9000 at 101
		build(10, 20, 30),       // offsets 104-106
		build(8000, 9000, 1, 2), // a tie at 108: the first holder (101) wins
	} {
		if _, err := l.AppendAsLeader(b, AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if ts, off := l.MaxTimestamp(); ts != 9000 || off != 101 {
		t.Fatalf("MaxTimestamp = %d@%d, want 9000@101", ts, off)
	}
	single := openT(t, t.TempDir(), smallConfig())
	if _, err := single.AppendAsLeader(build(hundred...), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	if ts, off := single.MaxTimestamp(); ts != 1099 || off != 99 {
		t.Fatalf("100 records in one batch: MaxTimestamp = %d@%d, want 1099@99", ts, off)
	}
	l.Close()
	l2 := openT(t, dir, smallConfig())
	if ts, off := l2.MaxTimestamp(); ts != 9000 || off != 101 {
		t.Fatalf("after reopen: MaxTimestamp = %d@%d, want 9000@101", ts, off)
	}
}

// TestNewLogIsNotRecovered: a new log opens without the recovery path (no
// "recovered log" line, no checkpoint written at open), and its first flush
// with data writes the recovery point.
func TestNewLogIsNotRecovered(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	l, err := Open(dir, smallConfig(), slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if strings.Contains(out.String(), "recovered log") {
		t.Fatalf("a new log logged recovery: %s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, recoveryPointFile)); !os.IsNotExist(err) {
		t.Fatalf("recovery point written at open: %v", err)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3, 0)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if v, err := readCheckpoint(dir, recoveryPointFile); err != nil || v != 6 {
		t.Fatalf("recovery point after the first flush: %d, %v", v, err)
	}
}

// TestVerifyRecordsDamage: after a clean start-up (which reads no batch of
// the older segments), Verify finds damage in a middle segment and in the
// active segment, records it without changing the log end offset, and
// leaves the rest readable and the log writable; truncating to the start of
// a damaged region cuts it off.
func TestVerifyRecordsDamage(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	appendN(t, l, 200, 0)
	l.Close()
	segs := segFiles(t, dir)
	for _, path := range []string{segs[2], segs[len(segs)-1]} {
		pos := batchPositions(t, path)
		b, _ := os.ReadFile(path)
		copy(b[pos[1]+record.HeaderSize+5:], "0123456789abcdef") // record bytes: only the CRC tells
		os.WriteFile(path, b, 0o644)
	}
	l2 := openT(t, dir, smallConfig())
	if l2.Corruption() != nil {
		t.Fatal("a clean open read the damaged batches")
	}
	err := l2.Verify(nil)
	if !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("Verify = %v", err)
	}
	if n := strings.Count(err.Error(), "unreadable"); n != 2 {
		t.Fatalf("%d damaged regions: %v", n, err)
	}
	if l2.LogEndOffset() != 400 {
		t.Fatalf("LEO %d after Verify", l2.LogEndOffset())
	}
	var bad []int64
	for off := int64(0); off < 400; off++ {
		if _, err := l2.Read(off, 100000, 400, true); errors.Is(err, record.ErrCorrupt) {
			bad = append(bad, off)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(bad) != 4 { // two batches of two records
		t.Fatalf("damaged offsets %v", bad)
	}
	if bases := appendN(t, l2, 2, 5000); bases[0] != 400 {
		t.Fatalf("append after Verify at %d", bases[0])
	}
	if err := l2.Verify(nil); err == nil || strings.Count(err.Error(), "unreadable") != 2 {
		t.Fatalf("second Verify = %v", err)
	}
	first, ok := l2.FirstCorruptOffset()
	if !ok || first != bad[0] {
		t.Fatalf("FirstCorruptOffset = %d, %v; want %d", first, ok, bad[0])
	}
	if err := l2.Truncate(first); err != nil {
		t.Fatal(err)
	}
	if l2.LogEndOffset() != first || l2.Corruption() != nil || l2.Verify(nil) != nil {
		t.Fatalf("after truncating the damage: LEO %d, %v", l2.LogEndOffset(), l2.Corruption())
	}
	if got := len(readAllRecords(t, l2, 0)); int64(got) != first {
		t.Fatalf("%d records after truncation, want %d", got, first)
	}
}

// TestLazyIndexFiles: a new log creates only its log file (no index file,
// no descriptor for one) until an index is written; a clean close writes
// both index files so the next open loads them without recovery; a crash
// before that recovers the active segment, and stale index files of an
// earlier segment at the same base do not survive a new segment.
func TestLazyIndexFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	l := openT(t, dir, cfg)
	idx := filepath.Join(dir, segmentName(0, indexSuffix))
	tidx := filepath.Join(dir, segmentName(0, timeIndexSuffix))
	for _, p := range []string{idx, tidx} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s exists after opening a new log: %v", p, err)
		}
	}
	if s := l.segs[0]; s.index.f != nil || s.tindex.f != nil {
		t.Fatal("a new segment holds index descriptors")
	}
	appendN(t, l, 3, 100)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	// Crash: the active segment's index files were never written.
	l = crashReopen(t, l, dir, cfg)
	if got := l.LogEndOffset(); got != 6 {
		t.Fatalf("LEO after crash %d, want 6", got)
	}
	if s := l.active(); s.index.f != nil || s.tindex.f != nil {
		t.Fatal("recovery left index descriptors open")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{idx, tidx} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("index file after a clean close: %v", err)
		}
	}
	var out bytes.Buffer
	l2, err := Open(dir, cfg, slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if s := out.String(); strings.Contains(s, "recovered log") || strings.Contains(s, "missing") {
		t.Fatalf("clean reopen recovered: %s", s)
	}
	if s := l2.active(); s.index.f != nil || s.tindex.f != nil {
		t.Fatal("loading indexes left descriptors open")
	}
	if got := readAllRecords(t, l2, 0); len(got) != 6 {
		t.Fatalf("%d records after reopen, want 6", len(got))
	}
	// A new segment over stale index files of the same base drops them.
	if err := os.WriteFile(filepath.Join(dir, segmentName(1000, indexSuffix)), []byte("stale!!!"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := openSegment(dir, 1000, cfg, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, err := os.Stat(filepath.Join(dir, segmentName(1000, indexSuffix))); !os.IsNotExist(err) {
		t.Fatalf("stale index file kept by a new segment: %v", err)
	}
}

// TestSealedSegmentsCloseIndexFiles: once a flush has written and synced a
// sealed segment's index files, the segment keeps no descriptor for them;
// the active segment's are opened only when written; a clean reopen loads
// the indexes from the files.
func TestSealedSegmentsCloseIndexFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	l := openT(t, dir, cfg)
	appendN(t, l, 60, 100)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(l.segs) < 3 {
		t.Fatalf("%d segments, want rolls", len(l.segs))
	}
	for _, s := range l.segs[:len(l.segs)-1] {
		if s.index.f != nil || s.tindex.f != nil {
			t.Fatalf("sealed segment %d holds index descriptors after a flush", s.base)
		}
		if st, err := os.Stat(filepath.Join(dir, segmentName(s.base, indexSuffix))); err != nil || st.Size() != int64(len(s.index.entries))*indexEntrySize {
			t.Fatalf("segment %d offset index file: %v, %d entries in memory", s.base, err, len(s.index.entries))
		}
	}
	want := readAllRecords(t, l, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openT(t, dir, cfg)
	if got := readAllRecords(t, l2, 0); len(got) != len(want) {
		t.Fatalf("%d records after reopen, want %d", len(got), len(want))
	}
	if off, _, err := l2.OffsetForTimestamp(100 + 10*30); err != nil || off != 60 {
		t.Fatalf("offset for timestamp %d: %d, %v", 100+10*30, off, err)
	}
}

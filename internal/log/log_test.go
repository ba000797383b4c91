package log

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"strand/internal/record"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// batch builds an uncompressed batch of n records with timestamp ts and
// values of size bytes (tagged with tag so contents are checkable).
func batch(t testing.TB, n, size int, ts int64, tag string) []byte {
	t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		v := bytes.Repeat([]byte{'x'}, size)
		copy(v, fmt.Sprintf("%s-%d", tag, i))
		recs[i] = record.Record{Timestamp: ts + int64(i), Key: []byte(tag), Value: v}
	}
	return record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
}

func smallConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 4096
	c.IndexIntervalBytes = 256
	return c
}

func openT(t testing.TB, dir string, cfg Config) *Log {
	t.Helper()
	l, err := Open(dir, cfg, quiet)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendN appends count batches of 2 records each with increasing
// timestamps and returns the batches' base offsets.
func appendN(t testing.TB, l *Log, count int, ts0 int64) []int64 {
	t.Helper()
	var bases []int64
	for i := 0; i < count; i++ {
		info, err := l.AppendAsLeader(batch(t, 2, 100, ts0+int64(i)*10, fmt.Sprint("b", i)), AppendOptions{LeaderEpoch: 3})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		bases = append(bases, info.BaseOffset)
	}
	return bases
}

// readAllRecords reads the whole log from `from` and returns all records,
// checking that offsets are dense.
func readAllRecords(t testing.TB, l *Log, from int64) []record.Record {
	t.Helper()
	var out []record.Record
	off := from
	for off < l.LogEndOffset() {
		data, err := l.Read(off, 1000, l.LogEndOffset(), true)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(data) == 0 {
			t.Fatalf("Read(%d) returned nothing below LEO %d", off, l.LogEndOffset())
		}
		err = record.Split(data, func(b []byte) error {
			recs, err := record.Records(b)
			if err != nil {
				return err
			}
			for _, r := range recs {
				if r.Offset >= off {
					if r.Offset != off {
						t.Fatalf("offset gap: got %d want %d", r.Offset, off)
					}
					out = append(out, r)
					off++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestAppendReadAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	bases := appendN(t, l, 100, 1000)
	for i, b := range bases {
		if b != int64(2*i) {
			t.Fatalf("batch %d base %d", i, b)
		}
	}
	if l.LogEndOffset() != 200 {
		t.Fatalf("LEO %d", l.LogEndOffset())
	}
	l.mu.RLock()
	nseg := len(l.segs)
	l.mu.RUnlock()
	if nseg < 5 {
		t.Fatalf("expected several segments, got %d", nseg)
	}
	recs := readAllRecords(t, l, 0)
	if len(recs) != 200 {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		want := fmt.Sprintf("b%d-%d", i/2, i%2)
		if !bytes.HasPrefix(r.Value, []byte(want)) {
			t.Fatalf("record %d value %q want prefix %q", i, r.Value[:10], want)
		}
	}
	// Read mid-batch returns the batch containing the offset.
	data, err := l.Read(51, 1, 200, true)
	if err != nil {
		t.Fatal(err)
	}
	h, err := record.Validate(data)
	if err != nil || h.BaseOffset != 50 || h.PartitionLeaderEpoch != 3 {
		t.Fatalf("header %+v err %v", h, err)
	}
	// maxBytes without minOne.
	if data, err := l.Read(51, 10, 200, false); err != nil || len(data) != 0 {
		t.Fatalf("small maxBytes: %d bytes, %v", len(data), err)
	}
	// maxOffset stops before batches at or above it.
	data, _ = l.Read(10, 1<<20, 14, true)
	var got []int64
	record.Split(data, func(b []byte) error { h, _ := record.ParseHeader(b); got = append(got, h.BaseOffset); return nil })
	if fmt.Sprint(got) != "[10 12]" {
		t.Fatalf("maxOffset: bases %v", got)
	}
	if data, err := l.Read(200, 100, 200, true); err != nil || len(data) != 0 {
		t.Fatalf("read at LEO: %v %d", err, len(data))
	}
	if _, err := l.Read(201, 100, 300, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past LEO: %v", err)
	}
	if l.Size() == 0 {
		t.Fatal("size 0")
	}
	// Reopen cleanly and read again; appends continue densely.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l2 := openT(t, dir, smallConfig())
	if l2.LogEndOffset() != 200 || l2.Corruption() != nil {
		t.Fatalf("reopen LEO %d corruption %v", l2.LogEndOffset(), l2.Corruption())
	}
	appendN(t, l2, 3, 5000)
	if n := len(readAllRecords(t, l2, 0)); n != 206 {
		t.Fatalf("after reopen %d records", n)
	}
}

func TestIndexLookupsManyBatches(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IndexIntervalBytes = 128
	l := openT(t, t.TempDir(), cfg)
	appendN(t, l, 500, 0)
	l.mu.RLock()
	entries := len(l.segs[0].index.entries)
	l.mu.RUnlock()
	if entries < 100 {
		t.Fatalf("only %d index entries", entries)
	}
	for off := int64(0); off < 1000; off += 7 {
		data, err := l.Read(off, 1, 1000, true)
		if err != nil {
			t.Fatal(err)
		}
		h, err := record.Validate(data)
		if err != nil || h.BaseOffset > off || h.LastOffset() < off {
			t.Fatalf("Read(%d) gave batch [%d,%d] err %v", off, h.BaseOffset, h.LastOffset(), err)
		}
	}
}

func TestAppendValidationAllOrNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxMessageBytes = 2000
	l := openT(t, t.TempDir(), cfg)
	good := batch(t, 2, 10, 1, "g")
	bad := batch(t, 2, 10, 1, "b")
	bad[len(bad)-1] ^= 0xff
	set := append(append([]byte{}, good...), bad...)
	if _, err := l.AppendAsLeader(set, AppendOptions{}); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("bad crc: %v", err)
	}
	if _, err := l.AppendAsLeader(append(append([]byte{}, good...), good[:30]...), AppendOptions{}); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("partial: %v", err)
	}
	if _, err := l.AppendAsLeader(batch(t, 3, 1000, 1, "big"), AppendOptions{}); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if _, err := l.AppendAsLeader(nil, AppendOptions{}); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("empty: %v", err)
	}
	if l.LogEndOffset() != 0 || l.Size() != 0 {
		t.Fatalf("something was written: LEO %d size %d", l.LogEndOffset(), l.Size())
	}
	info, err := l.AppendAsLeader(append(append([]byte{}, good...), batch(t, 3, 10, 50, "h")...), AppendOptions{LogAppendTime: true, Now: time.UnixMilli(777)})
	if err != nil {
		t.Fatal(err)
	}
	if info.BaseOffset != 0 || info.LastOffset != 4 || info.NumRecords != 5 || info.LogAppendTime != 777 || info.MaxTimestamp != 777 || len(info.Headers) != 2 || info.Headers[1].BaseOffset != 2 {
		t.Fatalf("info %+v", info)
	}
	recs := readAllRecords(t, l, 0)
	if len(recs) != 5 || recs[4].Timestamp != 777 {
		t.Fatalf("records %+v", recs)
	}
}

func TestAppendAsFollower(t *testing.T) {
	l := openT(t, t.TempDir(), DefaultConfig())
	b := batch(t, 3, 10, 1, "f")
	record.SetBaseOffset(b, 5)
	if _, err := l.AppendAsFollower(b); err == nil {
		t.Fatal("follower append at wrong offset succeeded")
	}
	record.SetBaseOffset(b, 0)
	b2 := batch(t, 2, 10, 1, "g")
	record.SetBaseOffset(b2, 3)
	info, err := l.AppendAsFollower(append(append([]byte{}, b...), b2...))
	if err != nil || info.BaseOffset != 0 || info.LastOffset != 4 || l.LogEndOffset() != 5 {
		t.Fatalf("info %+v err %v", info, err)
	}
}

func TestOffsetForTimestampAndMax(t *testing.T) {
	cfg := smallConfig()
	l := openT(t, t.TempDir(), cfg)
	// Batch i has records with timestamps 1000+10i and 1000+10i+1.
	appendN(t, l, 100, 1000)
	cases := []struct{ ts, off, rts int64 }{
		{0, 0, 1000}, {1000, 0, 1000}, {1001, 1, 1001}, {1002, 2, 1010},
		{1500, 100, 1500}, {1505, 102, 1510}, {1991, 199, 1991},
	}
	for _, c := range cases {
		off, rts, err := l.OffsetForTimestamp(c.ts)
		if err != nil || off != c.off || rts != c.rts {
			t.Errorf("OffsetForTimestamp(%d) = %d,%d,%v want %d,%d", c.ts, off, rts, err, c.off, c.rts)
		}
	}
	if off, rts, err := l.OffsetForTimestamp(5000); off != -1 || rts != -1 || err != nil {
		t.Errorf("future ts: %d %d %v", off, rts, err)
	}
	if ts, off := l.MaxTimestamp(); ts != 1991 || off != 199 {
		t.Errorf("MaxTimestamp = %d@%d", ts, off)
	}
	// After deleting records the answer respects the log start offset.
	if err := l.DeleteRecordsBefore(101); err != nil {
		t.Fatal(err)
	}
	if off, _, _ := l.OffsetForTimestamp(0); off != 101 {
		t.Errorf("after DeleteRecords: %d", off)
	}
	empty := openT(t, t.TempDir(), cfg)
	if ts, off := empty.MaxTimestamp(); ts != -1 || off != -1 {
		t.Errorf("empty MaxTimestamp %d %d", ts, off)
	}
}

func TestRetention(t *testing.T) {
	cfg := smallConfig()
	l := openT(t, t.TempDir(), cfg)
	appendN(t, l, 100, 1000) // timestamps 1000..1991
	l.mu.RLock()
	nseg := len(l.segs)
	second := l.segs[1].base
	l.mu.RUnlock()
	// Nothing expired.
	n, err := l.DeleteOldSegments(time.UnixMilli(1000 + cfg.RetentionMs))
	if err != nil || n != 0 {
		t.Fatalf("deleted %d %v", n, err)
	}
	// Time: with retention 500 ms at now=2000, segments with max ts < 1500 go.
	c2 := cfg
	c2.RetentionMs = 500
	l.SetConfig(c2)
	n, err = l.DeleteOldSegments(time.UnixMilli(2000))
	if err != nil || n == 0 || n >= nseg {
		t.Fatalf("time retention deleted %d of %d: %v", n, nseg, err)
	}
	if l.LogStartOffset() < second || l.LogStartOffset() > 100 {
		t.Fatalf("log start %d", l.LogStartOffset())
	}
	if _, err := l.Read(0, 100, 200, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	if off, _, _ := l.OffsetForTimestamp(0); off != l.LogStartOffset() {
		t.Fatalf("earliest by time %d, start %d", off, l.LogStartOffset())
	}
	// Size: keep at most ~3 segments worth of bytes.
	c3 := cfg
	c3.RetentionMs = -1
	c3.RetentionBytes = 3 * 4096
	l.SetConfig(c3)
	if _, err := l.DeleteOldSegments(time.UnixMilli(2000)); err != nil {
		t.Fatal(err)
	}
	if l.Size() > 3*4096+4096 || l.Size() < 3*4096-4096 {
		t.Fatalf("size %d after size retention", l.Size())
	}
	// Never the active segment.
	c3.RetentionBytes = 0
	l.SetConfig(c3)
	l.DeleteOldSegments(time.UnixMilli(2000))
	l.mu.RLock()
	nseg = len(l.segs)
	l.mu.RUnlock()
	if nseg != 1 || l.LogEndOffset() != 200 {
		t.Fatalf("%d segments, LEO %d", nseg, l.LogEndOffset())
	}
	if recs := readAllRecords(t, l, l.LogStartOffset()); recs[len(recs)-1].Offset != 199 {
		t.Fatal("active segment data lost")
	}
}

func TestDeleteRecordsBeforePersists(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	appendN(t, l, 50, 0)
	if err := l.DeleteRecordsBefore(33); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(32, 100, 100, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	if err := l.DeleteRecordsBefore(1000); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("beyond LEO: %v", err)
	}
	l.Close()
	l2 := openT(t, dir, smallConfig())
	if l2.LogStartOffset() != 33 {
		t.Fatalf("log start after reopen %d", l2.LogStartOffset())
	}
	if recs := readAllRecords(t, l2, 33); len(recs) != 67 {
		t.Fatalf("%d records", len(recs))
	}
}

func TestTruncate(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	appendN(t, l, 100, 0)
	if err := l.Truncate(51); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("mid-batch truncate: %v", err)
	}
	if err := l.Truncate(300); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("beyond LEO: %v", err)
	}
	if err := l.Truncate(50); err != nil {
		t.Fatal(err)
	}
	if l.LogEndOffset() != 50 {
		t.Fatalf("LEO %d", l.LogEndOffset())
	}
	if ts, off := l.MaxTimestamp(); ts != 241 || off != 49 { // the second record of batch 48
		t.Fatalf("max ts after truncate %d@%d", ts, off)
	}
	bases := appendN(t, l, 5, 10000)
	if bases[0] != 50 {
		t.Fatalf("append after truncate at %d", bases[0])
	}
	recs := readAllRecords(t, l, 0)
	if len(recs) != 60 || !bytes.HasPrefix(recs[50].Value, []byte("b0-0")) || recs[50].Timestamp != 10000 {
		t.Fatalf("after truncate: %d records", len(recs))
	}
	// Survives a crash (no Close): recovery point was lowered.
	l.Flush()
	l3 := crashReopen(t, l, dir, smallConfig())
	if l3.LogEndOffset() != 60 || len(readAllRecords(t, l3, 0)) != 60 {
		t.Fatalf("after crash LEO %d", l3.LogEndOffset())
	}
	// Truncate below log start empties the log and restarts there.
	if err := l3.DeleteRecordsBefore(20); err != nil {
		t.Fatal(err)
	}
	if err := l3.Truncate(10); err != nil {
		t.Fatal(err)
	}
	if l3.LogEndOffset() != 10 || l3.LogStartOffset() != 10 || l3.Size() != 0 {
		t.Fatalf("full truncate: LEO %d start %d size %d", l3.LogEndOffset(), l3.LogStartOffset(), l3.Size())
	}
}

// crashReopen simulates a crash: it abandons l without Close (stopping
// only its background goroutine and closing descriptors, writing nothing)
// and opens dir again.
func crashReopen(t testing.TB, l *Log, dir string, cfg Config) *Log {
	t.Helper()
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.flushMu.Lock()
	l.mu.Lock()
	l.closed = true
	for _, s := range l.segs {
		s.close()
	}
	l.mu.Unlock()
	l.flushMu.Unlock()
	return openT(t, dir, cfg)
}

func TestGroupCommit(t *testing.T) {
	l := openT(t, t.TempDir(), DefaultConfig())
	const writers, each = 16, 20
	before := l.fsyncs.Load()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				info, err := l.AppendAsLeader(batch(t, 1, 100, 1, "w"), AppendOptions{})
				if err == nil {
					err = l.WaitFlushed(info.LastOffset + 1)
				}
				if err == nil {
					l.mu.RLock()
					if l.flushed <= info.LastOffset {
						err = fmt.Errorf("WaitFlushed returned before offset %d was flushed (%d)", info.LastOffset, l.flushed)
					}
					l.mu.RUnlock()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fsyncs := l.fsyncs.Load() - before
	t.Logf("%d appends, %d fsync passes", writers*each, fsyncs)
	if fsyncs >= writers*each || fsyncs == 0 {
		t.Fatalf("%d fsyncs for %d appends: no group commit", fsyncs, writers*each)
	}
	if l.LogEndOffset() != writers*each {
		t.Fatalf("LEO %d", l.LogEndOffset())
	}
}

func TestBackgroundFlushByCount(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FlushMessages = 10
	l := openT(t, t.TempDir(), cfg)
	waitFlushed := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			l.mu.RLock()
			f := l.flushed
			l.mu.RUnlock()
			if f >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("background flusher did not flush (flushed=%d, want %d)", f, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := 0; i < 12; i++ {
		info, err := l.AppendAsLeader(batch(t, 1, 10, 1, "c"), AppendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.WaitFlushed(info.LastOffset + 1); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// A new log's first flush (its recovery point) comes as soon
			// as it has data; the count starts after it, or it could
			// catch a few appends and leave fewer than 10 unflushed.
			waitFlushed(1)
		}
	}
	waitFlushed(11)
}

func TestSegmentMsRoll(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SegmentMs = 1000
	l := openT(t, t.TempDir(), cfg)
	for _, ts := range []int64{10000, 10500, 11001, 11002} {
		if _, err := l.AppendAsLeader(batch(t, 1, 10, ts, "t"), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.segs) != 2 || l.segs[1].base != 2 {
		t.Fatalf("%d segments", len(l.segs))
	}
}

func TestScanHeaders(t *testing.T) {
	l := openT(t, t.TempDir(), smallConfig())
	appendN(t, l, 1500, 0) // more than scanChunk
	var bases []int64
	err := l.ScanHeaders(101, func(h record.Header) error {
		bases = append(bases, h.BaseOffset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) != 1500-50 || bases[0] != 100 || bases[len(bases)-1] != 2998 {
		t.Fatalf("%d headers, first %d", len(bases), bases[0])
	}
	for i := 1; i < len(bases); i++ {
		if bases[i] != bases[i-1]+2 {
			t.Fatalf("not in order at %d", i)
		}
	}
}

func TestStrayFilesAndDelete(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"00000000000000000000.log.cleaned", "x.tmp", "00000000000000000099.index"} {
		os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "00000000000000000000.log"), nil, 0o644) // empty segment
	l := openT(t, dir, DefaultConfig())
	for _, name := range []string{"00000000000000000000.log.cleaned", "x.tmp", "00000000000000000099.index"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s not removed", name)
		}
	}
	appendN(t, l, 2, 0)
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("dir still exists")
	}
	if _, err := l.AppendAsLeader(batch(t, 1, 1, 1, "z"), AppendOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after delete: %v", err)
	}
}

// TestEmptyLogIdle: a new log owes a first recovery point, but while it is
// empty the background flusher has nothing to do (it used to fsync an
// empty segment every tick); after data arrives and is flushed the
// checkpoint is written and nothing is due.
func TestEmptyLogIdle(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	if l.flushDue() {
		t.Fatal("an empty new log is due for a flush")
	}
	appendN(t, l, 1, 1)
	if err := l.WaitFlushed(l.LogEndOffset()); err != nil {
		t.Fatal(err)
	}
	if l.flushDue() {
		t.Error("flush due after WaitFlushed")
	}
	if _, err := os.Stat(filepath.Join(dir, recoveryPointFile)); err != nil {
		t.Errorf("recovery point after the first flush: %v", err)
	}
}

// TestIdleFlusherParks: the background flusher of a log with nothing to
// flush parks (no ticker). With flush.ms set an append wakes it and it
// flushes on its own (no WaitFlushed), writing the first recovery point,
// then parks again.
func TestIdleFlusherParks(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.FlushMs = 20
	l := openT(t, dir, cfg)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("the idle flusher to park", l.parked.Load)
	appendN(t, l, 1, 1)
	waitFor("the recovery point", func() bool {
		_, err := os.Stat(filepath.Join(dir, recoveryPointFile))
		return err == nil
	})
	waitFor("the flusher to park again", l.parked.Load)
	if l.flushPending() || l.flushed != l.LogEndOffset() {
		t.Errorf("after the background flush: pending %v, flushed %d of %d", l.flushPending(), l.flushed, l.LogEndOffset())
	}
}

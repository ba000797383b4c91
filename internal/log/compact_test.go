package log

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"strand/internal/record"
)

// kv is one keyed record of the compaction tests' model; a nil val is a
// tombstone.
type kv struct {
	off int64
	key string
	val []byte
	ts  int64
}

func compactConfig() Config {
	c := smallConfig()
	c.SegmentBytes = 2048
	c.Compact = true
	c.DeleteRetentionMs = 1000
	return c
}

// kvLog is a log plus the model of everything appended to it.
type kvLog struct {
	t   testing.TB
	l   *Log
	all []kv
}

// appendBatch appends one batch of records (keys and values; a "" value
// with tomb set is a tombstone) with the given codec, producer and epoch.
func (k *kvLog) appendBatch(codec record.Codec, pid int64, seq int32, epoch int32, ts int64, keys []string, tomb []bool) record.Header {
	k.t.Helper()
	recs := make([]record.Record, len(keys))
	for i, key := range keys {
		recs[i] = record.Record{Timestamp: ts, Key: []byte(key)}
		if tomb == nil || !tomb[i] {
			recs[i].Value = []byte("pending") // replaced below once the offset is known
		}
	}
	leo := k.l.LogEndOffset()
	for i := range recs {
		if recs[i].Value != nil {
			recs[i].Value = []byte(fmt.Sprintf("v%d-%s", leo+int64(i), keys[i]))
		}
	}
	pe := int16(-1)
	if pid >= 0 {
		pe = 0
	} else {
		seq = -1
	}
	b := record.MustBuild(record.BuildSpec{Codec: codec, ProducerID: pid, ProducerEpoch: pe, BaseSequence: seq, Records: recs})
	info, err := k.l.AppendAsLeader(b, AppendOptions{LeaderEpoch: epoch, Now: time.UnixMilli(ts)})
	if err != nil {
		k.t.Fatalf("append: %v", err)
	}
	if info.BaseOffset != leo {
		k.t.Fatalf("appended at %d, LEO was %d", info.BaseOffset, leo)
	}
	for i, r := range recs {
		k.all = append(k.all, kv{off: leo + int64(i), key: keys[i], val: r.Value, ts: ts})
	}
	return info.Headers[0]
}

// survivors is what a compaction pass over [0, dirtyEnd) keeps: the last
// record of each key (by offset) in that range, minus dropped tombstones
// (dropTomb reports which), plus everything from dirtyEnd on.
func survivors(all []kv, dirtyEnd int64, dropTomb func(kv) bool) []kv {
	last := map[string]int64{}
	for _, e := range all {
		if e.off < dirtyEnd {
			last[e.key] = e.off
		}
	}
	var out []kv
	for _, e := range all {
		if e.off >= dirtyEnd || (last[e.key] == e.off && !(e.val == nil && dropTomb != nil && dropTomb(e))) {
			out = append(out, e)
		}
	}
	return out
}

// consume reads the log like a consumer from the log start offset to the
// LEO, checking that batches are dense (each starts where the previous one
// ended) and CRC-valid, and returns the records and the batch headers.
func consume(t testing.TB, l *Log) ([]kv, []record.Header) {
	t.Helper()
	var out []kv
	var hs []record.Header
	off := l.LogStartOffset()
	leo := l.LogEndOffset()
	for off < leo {
		data, err := l.Read(off, 3000, leo, true)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(data) == 0 {
			t.Fatalf("Read(%d) returned nothing below LEO %d", off, leo)
		}
		err = record.Split(data, func(b []byte) error {
			h, err := record.Validate(b)
			if err != nil {
				return err
			}
			if len(hs) > 0 && h.BaseOffset != hs[len(hs)-1].NextOffset() {
				return fmt.Errorf("batch at %d does not follow the previous one ending at %d", h.BaseOffset, hs[len(hs)-1].NextOffset())
			}
			hs = append(hs, h)
			return record.ForEach(b, func(r *record.Record) {
				if r.Offset >= off {
					if n := len(out); n > 0 && r.Offset <= out[n-1].off {
						t.Fatalf("offsets out of order: %d after %d", r.Offset, out[n-1].off)
					}
					out = append(out, kv{off: r.Offset, key: string(r.Key), val: bytes.Clone(r.Value), ts: r.Timestamp})
				}
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		off = hs[len(hs)-1].NextOffset()
	}
	return out, hs
}

func sameRecords(t testing.TB, what string, got, want []kv) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.off != w.off || g.key != w.key || !bytes.Equal(g.val, w.val) || (g.val == nil) != (w.val == nil) {
			t.Fatalf("%s: record %d is %d %s=%q, want %d %s=%q", what, i, g.off, g.key, g.val, w.off, w.key, w.val)
		}
	}
}

func segCount(l *Log) int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segs)
}

// fillRandom appends n batches of 1-3 records over nkeys keys, about 10%
// tombstones, timestamps from ts0.
func (k *kvLog) fillRandom(rng *rand.Rand, n, nkeys int, codec record.Codec, ts0 int64) {
	for i := 0; i < n; i++ {
		m := 1 + rng.Intn(3)
		keys := make([]string, m)
		tomb := make([]bool, m)
		for j := range keys {
			keys[j] = fmt.Sprintf("k%02d", rng.Intn(nkeys))
			tomb[j] = rng.Intn(10) == 0
		}
		k.appendBatch(codec, -1, 0, 1, ts0+int64(i), keys, tomb)
	}
}

func TestCompactLatestPerKey(t *testing.T) {
	dir := t.TempDir()
	cfg := compactConfig()
	l := openT(t, dir, cfg)
	k := &kvLog{t: t, l: l}
	rng := rand.New(rand.NewSource(1))
	k.fillRandom(rng, 600, 20, record.CodecNone, 1000)
	before, _ := consume(t, l)
	sameRecords(t, "before", before, k.all)
	segsBefore := segCount(l)
	leo := l.LogEndOffset()

	if ok, ratio := l.ShouldCompact(leo, time.UnixMilli(5000)); !ok || ratio != 1 {
		t.Fatalf("ShouldCompact = %v, %v; want true, 1", ok, ratio)
	}
	st, err := l.Compact(CompactOptions{CleanableEnd: leo, Now: time.UnixMilli(5000)})
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsRead != segsBefore-1 || st.BytesWritten >= st.BytesRead || st.Aborted || st.FirstDirty != 0 {
		t.Fatalf("stats %+v (segments before %d)", st, segsBefore)
	}
	want := survivors(k.all, st.DirtyEnd, nil) // first pass: tombstones stay
	if len(want) > len(k.all)/5 {
		t.Fatalf("test data compacts badly: %d of %d records survive", len(want), len(k.all))
	}
	got, _ := consume(t, l)
	sameRecords(t, "after compaction", got, want)
	if l.LogEndOffset() != leo || l.LogStartOffset() != 0 {
		t.Fatalf("LEO %d start %d", l.LogEndOffset(), l.LogStartOffset())
	}
	if ratio, dirty, _ := l.DirtyRatio(leo, time.UnixMilli(5000)); ratio != 0 || dirty != 0 {
		t.Fatalf("dirty ratio after compaction %v (%d bytes)", ratio, dirty)
	}
	// Reading from every offset returns the batch holding it or the next one.
	for off := int64(0); off < leo; off += 7 {
		data, err := l.Read(off, 100, leo, true)
		if err != nil || len(data) == 0 {
			t.Fatalf("Read(%d): %v, %d bytes", off, err, len(data))
		}
		h, _ := record.ParseHeader(data)
		if h.BaseOffset > off || h.NextOffset() <= off {
			t.Fatalf("Read(%d) returned batch [%d,%d]", off, h.BaseOffset, h.LastOffset())
		}
	}
	// Appends continue and OffsetForTimestamp still works.
	k.appendBatch(record.CodecNone, -1, 0, 1, 9000, []string{"k00"}, nil)
	if off, ts, err := l.OffsetForTimestamp(9000); err != nil || off != leo || ts != 9000 {
		t.Fatalf("OffsetForTimestamp: %d %d %v", off, ts, err)
	}
	want = append(want, k.all[len(k.all)-1])

	// Clean reopen, then an unclean one that rescans every segment (the
	// empty batches must pass recovery's checks).
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, cfg)
	got, _ = consume(t, l)
	sameRecords(t, "after reopen", got, want)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, cleanShutdownFile))
	os.Remove(filepath.Join(dir, recoveryPointFile))
	l = openT(t, dir, cfg)
	if err := l.Corruption(); err != nil {
		t.Fatal(err)
	}
	got, _ = consume(t, l)
	sameRecords(t, "after unclean reopen", got, want)
	if l.cleanedTo != st.DirtyEnd {
		t.Fatalf("cleanedTo %d after reopen, want %d", l.cleanedTo, st.DirtyEnd)
	}
	// A second pass groups the now small cleaned segments.
	k.l = l
	k.fillRandom(rng, 100, 20, record.CodecNone, 10_000)
	segsBefore = segCount(l)
	st, err = l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset(), Now: time.UnixMilli(5000)})
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsWritten >= st.SegmentsRead || segCount(l) >= segsBefore {
		t.Fatalf("segments not grouped: %d before, %d after; %+v", segsBefore, segCount(l), st)
	}
	got, _ = consume(t, l)
	sameRecords(t, "after second pass", got, survivors(k.all, st.DirtyEnd, nil))
}

func TestCompactTombstones(t *testing.T) {
	cfg := compactConfig()
	cfg.DeleteRetentionMs = 1000
	l := openT(t, t.TempDir(), cfg)
	k := &kvLog{t: t, l: l}
	// a: value then tombstone; b: tombstone only; c: value.
	k.appendBatch(record.CodecNone, -1, 0, 1, 100, []string{"a", "b", "c"}, []bool{false, true, false})
	k.appendBatch(record.CodecNone, -1, 0, 1, 200, []string{"a"}, []bool{true})
	filler := func(ts int64, n int) {
		for i := 0; i < n; i++ {
			k.appendBatch(record.CodecNone, -1, 0, 1, ts, []string{fmt.Sprint("f", i%5)}, nil)
		}
	}
	filler(300, 60) // rolls segments; the tombstones are in the first one
	pass := func(now int64, dropTombs bool) {
		t.Helper()
		before, _ := consume(t, l)
		st, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset(), Now: time.UnixMilli(now)})
		if err != nil {
			t.Fatal(err)
		}
		var model []kv
		for _, e := range before {
			if e.val == nil && dropTombs {
				continue
			}
			model = append(model, e)
		}
		want := survivors(model, st.DirtyEnd, nil)
		got, _ := consume(t, l)
		sameRecords(t, fmt.Sprintf("pass at %d", now), got, want)
		if dropTombs != (st.TombstonesDropped > 0) {
			t.Fatalf("pass at %d dropped %d tombstones", now, st.TombstonesDropped)
		}
	}
	pass(5000, false) // dirty: tombstones stay though old
	filler(400, 60)
	pass(1100, false) // cleaned once but not older than delete.retention.ms
	filler(500, 60)
	pass(5000, true) // cleaned and expired: dropped
	got, _ := consume(t, l)
	for _, e := range got {
		if e.key == "a" || e.key == "b" {
			t.Fatalf("key %s still present at %d", e.key, e.off)
		}
	}
}

func TestCompactCompressed(t *testing.T) {
	for _, codec := range []record.Codec{record.CodecGzip, record.CodecSnappy, record.CodecLZ4, record.CodecZstd} {
		t.Run(codec.String(), func(t *testing.T) {
			cfg := compactConfig()
			l := openT(t, t.TempDir(), cfg)
			k := &kvLog{t: t, l: l}
			for i := 0; i < 60; i++ {
				keys := make([]string, 10)
				for j := range keys {
					keys[j] = fmt.Sprint("key", (i*10+j)%23)
				}
				k.appendBatch(codec, -1, 0, 1, int64(i), keys, nil)
			}
			orig, origHs := consume(t, l)
			sameRecords(t, "before", orig, k.all)
			st, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset()})
			if err != nil {
				t.Fatal(err)
			}
			got, hs := consume(t, l)
			sameRecords(t, "after", got, survivors(k.all, st.DirtyEnd, nil))
			ends := map[int64]bool{}
			for _, h := range origHs {
				ends[h.NextOffset()] = true
			}
			rewritten := 0
			for _, h := range hs {
				if h.NumRecords > 0 && h.Codec() != codec {
					t.Fatalf("batch at %d has codec %s", h.BaseOffset, h.Codec())
				}
				if !ends[h.NextOffset()] {
					t.Fatalf("batch [%d,%d] does not end where an original batch ended", h.BaseOffset, h.LastOffset())
				}
				if h.NumRecords > 0 && h.NumRecords < 10 {
					rewritten++
				}
			}
			if rewritten == 0 {
				t.Fatal("no batch was partially kept")
			}
		})
	}
}

// Emptied batches: runs of the same leader epoch merge into one empty
// batch; the last batch of an idempotent producer keeps its sequences.
func TestCompactEmptyBatches(t *testing.T) {
	dir := t.TempDir()
	cfg := compactConfig()
	cfg.SegmentBytes = 1 << 20
	l := openT(t, dir, cfg)
	k := &kvLog{t: t, l: l}
	k.appendBatch(record.CodecNone, 7, 0, 1, 1, []string{"x", "y"}, nil)       // [0,1] pid 7 seq 0-1: superseded
	k.appendBatch(record.CodecNone, -1, 0, 1, 2, []string{"x"}, nil)           // [2]: superseded
	k.appendBatch(record.CodecNone, -1, 0, 2, 3, []string{"y"}, nil)           // [3] epoch 2: superseded
	k.appendBatch(record.CodecNone, 7, 2, 2, 4, []string{"z"}, nil)            // [4] pid 7 seq 2: its last batch, superseded
	k.appendBatch(record.CodecNone, -1, 0, 2, 5, []string{"x", "y", "z"}, nil) // [5,7]: kept
	l.mu.Lock()
	if err := l.roll(time.Now(), "test"); err != nil {
		t.Fatal(err)
	}
	l.mu.Unlock()
	k.appendBatch(record.CodecNone, -1, 0, 2, 6, []string{"w"}, nil)
	st, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset()})
	if err != nil {
		t.Fatal(err)
	}
	got, hs := consume(t, l)
	sameRecords(t, "after", got, survivors(k.all, st.DirtyEnd, nil))
	type hdr struct {
		base      int64
		last      int64
		n         int32
		epoch     int32
		pid       int64
		seq, lseq int32
	}
	var have []hdr
	for _, h := range hs {
		have = append(have, hdr{h.BaseOffset, h.LastOffset(), h.NumRecords, h.PartitionLeaderEpoch, h.ProducerID, h.BaseSequence, h.LastSequence()})
	}
	want := []hdr{
		{0, 2, 0, 1, -1, -1, -1}, // pid 7's first batch and [2] merged (same epoch)
		{3, 3, 0, 2, -1, -1, -1}, // epoch 2 starts a new run
		{4, 4, 0, 2, 7, 2, 2},    // pid 7's last batch
		{5, 7, 3, 2, -1, -1, -1},
		{8, 8, 1, 2, -1, -1, -1},
	}
	if !slices.Equal(have, want) {
		t.Fatalf("batches\n%v\nwant\n%v", have, want)
	}
	if st.EmptyBatches != 3 {
		t.Fatalf("EmptyBatches %d", st.EmptyBatches)
	}
	// A follower copying the compacted log accepts it as is.
	data, err := l.Read(0, 1<<20, l.LogEndOffset(), true)
	if err != nil {
		t.Fatal(err)
	}
	f := openT(t, t.TempDir(), cfg)
	if _, err := f.AppendAsFollower(data); err != nil {
		t.Fatalf("follower append of compacted batches: %v", err)
	}
	// Recompacting merges nothing further but keeps everything valid.
	k.appendBatch(record.CodecNone, -1, 0, 2, 7, []string{"w"}, nil)
	l.mu.Lock()
	l.roll(time.Now(), "test")
	l.mu.Unlock()
	if _, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset()}); err != nil {
		t.Fatal(err)
	}
	consume(t, l)
}

func TestCompactRejectsKeylessAppends(t *testing.T) {
	keyless := record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: []record.Record{{Key: []byte("k"), Value: []byte("v")}, {Value: []byte("no key")}}})
	l := openT(t, t.TempDir(), compactConfig())
	if _, err := l.AppendAsLeader(bytes.Clone(keyless), AppendOptions{}); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("keyless append to a compacted log: %v", err)
	}
	if l.LogEndOffset() != 0 {
		t.Fatal("something was appended")
	}
	d := openT(t, t.TempDir(), smallConfig())
	if _, err := d.AppendAsLeader(bytes.Clone(keyless), AppendOptions{}); err != nil {
		t.Fatalf("keyless append to a delete-policy log: %v", err)
	}
	// Keyless records that reached a compacted log (policy changed later)
	// are dropped by the cleaner.
	cfg := compactConfig()
	cfg.Compact = false
	l2 := openT(t, t.TempDir(), cfg)
	for i := 0; i < 40; i++ {
		if _, err := l2.AppendAsLeader(batch(t, 2, 100, int64(i), "key"), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := l2.AppendAsLeader(bytes.Clone(keyless), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := l2.Compact(CompactOptions{CleanableEnd: l2.LogEndOffset()})
	if err != nil || st.KeylessDropped == 0 {
		t.Fatalf("Compact: %+v %v", st, err)
	}
	got, _ := consume(t, l2)
	for _, e := range got {
		if e.off < st.DirtyEnd && e.key == "" {
			t.Fatalf("keyless record at %d kept", e.off)
		}
	}
}

func TestCompactBounds(t *testing.T) {
	cfg := compactConfig()
	cfg.MinCompactionLagMs = 1000
	l := openT(t, t.TempDir(), cfg)
	k := &kvLog{t: t, l: l}
	rng := rand.New(rand.NewSource(2))
	k.fillRandom(rng, 300, 10, record.CodecNone, 10_000)
	leo := l.LogEndOffset()
	// Too recent for min.compaction.lag.ms: nothing.
	if st, err := l.Compact(CompactOptions{CleanableEnd: leo, Now: time.UnixMilli(10_500)}); err != nil || st.SegmentsRead != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if ok, _ := l.ShouldCompact(leo, time.UnixMilli(10_500)); ok {
		t.Fatal("ShouldCompact inside the compaction lag")
	}
	// CleanableEnd (the high watermark) bounds the pass.
	hw := k.all[len(k.all)/2].off
	st, err := l.Compact(CompactOptions{CleanableEnd: hw, Now: time.UnixMilli(20_000)})
	if err != nil || st.SegmentsRead == 0 || st.DirtyEnd > hw {
		t.Fatalf("%+v %v (hw %d)", st, err, hw)
	}
	got, _ := consume(t, l)
	sameRecords(t, "bounded", got, survivors(k.all, st.DirtyEnd, nil))
	// The map bound splits the dirty range over passes.
	first := st.DirtyEnd
	st, err = l.Compact(CompactOptions{CleanableEnd: leo, Now: time.UnixMilli(20_000), MaxMapEntries: 1})
	l.mu.RLock()
	activeBase := l.active().base
	l.mu.RUnlock()
	if err != nil || st.FirstDirty != first || st.DirtyEnd >= activeBase {
		t.Fatalf("%+v %v", st, err)
	}
	// Cancel leaves the log as it was and no temporary files.
	cancel := make(chan struct{})
	close(cancel)
	before, _ := consume(t, l)
	if _, err := l.Compact(CompactOptions{CleanableEnd: leo, Now: time.UnixMilli(20_000), Cancel: cancel}); err == nil {
		t.Fatal("cancelled Compact returned nil")
	}
	after, _ := consume(t, l)
	sameRecords(t, "after cancel", after, before)
	assertNoTempFiles(t, l.Dir())
	// Truncation below the cleaned offset lowers it.
	l.mu.RLock()
	cleaned := l.cleanedTo
	to := l.segs[1].base
	l.mu.RUnlock()
	if err := l.Truncate(to); err != nil {
		t.Fatal(err)
	}
	if v, err := readCheckpoint(l.Dir(), cleanerCheckpointFile); err != nil || v != to || l.cleanedTo != to || cleaned <= to {
		t.Fatalf("checkpoint %d %v, cleanedTo %d, was %d, truncated to %d", v, err, l.cleanedTo, cleaned, to)
	}
}

func assertNoTempFiles(t testing.TB, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), cleanedSuffix) || strings.HasSuffix(e.Name(), swapSuffix) {
			t.Fatalf("leftover %s", e.Name())
		}
	}
}

// copyDir copies the regular files of src into a new directory.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A crash at any step of a swap leaves files that Open turns into either
// the old log or the compacted one.
func TestCompactCrashDuringSwap(t *testing.T) {
	dir := t.TempDir()
	cfg := compactConfig()
	cfg.SegmentBytes = 512 // small segments, grouped when compacting
	l := openT(t, dir, cfg)
	k := &kvLog{t: t, l: l}
	rng := rand.New(rand.NewSource(3))
	k.fillRandom(rng, 150, 8, record.CodecNone, 1000)
	before, _ := consume(t, l)
	cfg.SegmentBytes = 1 << 20
	l.SetConfig(cfg)

	snapRoot := t.TempDir()
	var steps []string
	swapHook = func(step string) {
		name := fmt.Sprintf("%02d-%s", len(steps), strings.ReplaceAll(step, " ", "-"))
		steps = append(steps, name)
		copyDir(t, dir, filepath.Join(snapRoot, name))
	}
	defer func() { swapHook = nil }()
	st, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset(), Now: time.UnixMilli(5000)})
	swapHook = nil
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsWritten != 1 || st.SegmentsRead < 3 {
		t.Fatalf("want one group of several segments: %+v", st)
	}
	after, _ := consume(t, l)
	sameRecords(t, "after", after, survivors(k.all, st.DirtyEnd, nil))
	if len(after) >= len(before) {
		t.Fatalf("compaction removed nothing (%d records)", len(after))
	}
	if len(steps) != 6 {
		t.Fatalf("steps %v", steps)
	}
	for i, name := range steps {
		sd := filepath.Join(snapRoot, name)
		r := openT(t, sd, cfg)
		if err := r.Corruption(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := consume(t, r)
		want := before
		if i >= 2 { // from the log's .swap rename on, the swap completes
			want = after
		}
		sameRecords(t, "recovered at "+name, got, want)
		if r.LogEndOffset() != l.LogEndOffset() {
			t.Fatalf("%s: LEO %d", name, r.LogEndOffset())
		}
		assertNoTempFiles(t, sd)
		// The recovered log compacts to the same result.
		if _, err := r.Compact(CompactOptions{CleanableEnd: r.LogEndOffset(), Now: time.UnixMilli(5000)}); err != nil {
			t.Fatalf("%s: compact after recovery: %v", name, err)
		}
		got, _ = consume(t, r)
		sameRecords(t, "recompacted at "+name, got, after)
		r.Close()
	}
}

// Readers (and flushes, appends, retention of nothing) run during
// compaction and always see correct data. Run with -race.
func TestCompactConcurrentReads(t *testing.T) {
	cfg := compactConfig()
	cfg.RetentionMs, cfg.RetentionBytes = -1, -1
	l := openT(t, t.TempDir(), cfg)
	k := &kvLog{t: t, l: l}
	rng := rand.New(rand.NewSource(4))
	k.fillRandom(rng, 200, 30, record.CodecSnappy, 1000)
	var mu sync.Mutex          // guards k.all for readers
	var published atomic.Int64 // offsets below are in k.all
	published.Store(l.LogEndOffset())
	valueAt := func(off int64) (kv, bool) {
		mu.Lock()
		defer mu.Unlock()
		i, ok := slices.BinarySearchFunc(k.all, off, func(e kv, o int64) int { return int(e.off - o) })
		if !ok {
			return kv{}, false
		}
		return k.all[i], true
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for {
				select {
				case <-stop:
					return
				default:
				}
				leo := published.Load()
				off := rng.Int63n(leo + 1)
				data, err := l.Read(off, 1+rng.Intn(4000), leo, true)
				if err != nil {
					t.Errorf("Read(%d): %v", off, err)
					return
				}
				err = record.Split(data, func(b []byte) error {
					return record.ForEach(b, func(r *record.Record) {
						e, ok := valueAt(r.Offset)
						if !ok || e.key != string(r.Key) || !bytes.Equal(e.val, r.Value) {
							t.Errorf("offset %d: read %s=%q, wrote %s=%q", r.Offset, r.Key, r.Value, e.key, e.val)
						}
					})
				})
				if err != nil {
					t.Errorf("Read(%d): %v", off, err)
					return
				}
				reads.Add(1)
			}
		}(int64(g))
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := l.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
			if _, err := l.DeleteOldSegments(time.Now()); err != nil {
				t.Errorf("retention: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for round := 0; round < 10; round++ {
		mu.Lock()
		k.fillRandom(rng, 80, 30, record.CodecSnappy, int64(2000+round*100))
		mu.Unlock()
		published.Store(l.LogEndOffset())
		if _, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset(), Now: time.UnixMilli(1500)}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no reads")
	}
	got, _ := consume(t, l)
	for _, e := range got {
		if w, ok := valueAt(e.off); !ok || !bytes.Equal(w.val, e.val) {
			t.Fatalf("offset %d: %q", e.off, e.val)
		}
	}
}

// BenchmarkCompact: a log of about 38 MiB of keyed data (16 records of 512 bytes
// per batch, 10k keys) compacted in one pass; MB/s is input bytes.
func BenchmarkCompact(b *testing.B) {
	for _, codec := range []record.Codec{record.CodecNone, record.CodecLZ4} {
		b.Run(codec.String(), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.SegmentBytes = 8 << 20
			cfg.FlushMessages = 1 << 30
			cfg.Compact = true
			src := b.TempDir()
			l, err := Open(src, cfg, quiet)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewSource(1))
			val := make([]byte, 512)
			for i := 0; i < 4000; i++ {
				recs := make([]record.Record, 16)
				for j := range recs {
					rng.Read(val[:64])
					recs[j] = record.Record{Timestamp: int64(i), Key: []byte(fmt.Sprint("key-", rng.Intn(10000))), Value: bytes.Clone(val)}
				}
				bt := record.MustBuild(record.BuildSpec{Codec: codec, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
				if _, err := l.AppendAsLeader(bt, AppendOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			l.mu.Lock()
			l.roll(time.Now(), "bench")
			l.mu.Unlock()
			size := l.Size()
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "l")
				copyDir(b, src, dir)
				l, err := Open(dir, cfg, quiet)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				st, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset()})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(st.BytesWritten)/float64(st.BytesRead), "out/in")
				l.Close()
				b.StartTimer()
			}
		})
	}
}

// A damaged .log.swap (it is fsynced before its rename, so only damage can
// cause this) is discarded and the segments it was to replace are kept.
func TestCompactDamagedSwapDiscarded(t *testing.T) {
	dir := t.TempDir()
	cfg := compactConfig()
	l := openT(t, dir, cfg)
	k := &kvLog{t: t, l: l}
	k.fillRandom(rand.New(rand.NewSource(5)), 100, 5, record.CodecNone, 1)
	before, _ := consume(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	swap := filepath.Join(dir, segmentName(0, logSuffix)+swapSuffix)
	if err := os.WriteFile(swap, []byte("not a batch, certainly not a whole one"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, segmentName(0, indexSuffix)+swapSuffix), []byte("junk"), 0o644)
	l = openT(t, dir, cfg)
	got, _ := consume(t, l)
	sameRecords(t, "after discarding the swap", got, before)
	assertNoTempFiles(t, dir)
}

// Close and Delete while a compaction runs: the compaction fails or
// finishes, and nothing is left behind.
func TestCompactDuringDelete(t *testing.T) {
	for i := 0; i < 5; i++ {
		dir := filepath.Join(t.TempDir(), "p")
		l, err := Open(dir, compactConfig(), quiet)
		if err != nil {
			t.Fatal(err)
		}
		k := &kvLog{t: t, l: l}
		k.fillRandom(rand.New(rand.NewSource(int64(i))), 400, 50, record.CodecNone, 1)
		done := make(chan error, 1)
		go func() {
			_, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset()})
			done <- err
		}()
		time.Sleep(time.Duration(i) * time.Millisecond)
		if err := l.Delete(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, os.ErrClosed) {
			t.Logf("compaction ended with %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("directory left behind: %v", err)
		}
	}
}

// Retention removing segments during compaction: the affected group is left
// alone (Aborted), and the log stays consistent.
func TestCompactRacingRetention(t *testing.T) {
	aborted := 0
	for i := 0; i < 8; i++ {
		dir := t.TempDir()
		cfg := compactConfig()
		cfg.SegmentBytes = 512
		l := openT(t, dir, cfg)
		k := &kvLog{t: t, l: l}
		k.fillRandom(rand.New(rand.NewSource(int64(i))), 300, 40, record.CodecNone, 1)
		byOff := map[int64]kv{}
		for _, e := range k.all {
			byOff[e.off] = e
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for off := int64(0); off < l.LogEndOffset()/2; off += 25 {
				if err := l.DeleteRecordsBefore(off); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(50 * time.Microsecond)
			}
		}()
		st, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset()})
		<-done
		if err != nil {
			t.Fatal(err)
		}
		if st.Aborted {
			aborted++
		}
		check := func(l *Log) {
			got, _ := consume(t, l)
			for _, e := range got {
				if w := byOff[e.off]; w.key != e.key || !bytes.Equal(w.val, e.val) {
					t.Fatalf("offset %d: %s=%q, wrote %s=%q", e.off, e.key, e.val, w.key, w.val)
				}
			}
		}
		check(l)
		if _, err := l.Compact(CompactOptions{CleanableEnd: l.LogEndOffset()}); err != nil {
			t.Fatal(err)
		}
		check(l)
		l.Close()
		l = openT(t, dir, cfg)
		if err := l.Corruption(); err != nil {
			t.Fatal(err)
		}
		check(l)
	}
	t.Logf("%d of 8 passes aborted", aborted)
}

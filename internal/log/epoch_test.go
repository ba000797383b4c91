package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"strand/internal/record"
)

func ents(pairs ...int64) []EpochEntry {
	var out []EpochEntry
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, EpochEntry{int32(pairs[i]), pairs[i+1]})
	}
	return out
}

func cacheOf(pairs ...int64) *epochCache { return &epochCache{entries: ents(pairs...)} }

func TestEpochCacheAssign(t *testing.T) {
	cases := []struct {
		name      string
		before    []EpochEntry
		epoch     int32
		start     int64
		want      []EpochEntry
		changed   bool
		conflicts int
	}{
		{"first entry", nil, 2, 6, ents(2, 6), true, 0},
		{"epochs need not start at zero", nil, 7, 0, ents(7, 0), true, 0},
		{"higher epoch appended", ents(2, 6), 3, 8, ents(2, 6, 3, 8), true, 0},
		{"same epoch later offset is a no-op", ents(2, 6), 2, 10, ents(2, 6), false, 0},
		{"same epoch same offset is a no-op", ents(2, 6), 2, 6, ents(2, 6), false, 0},
		{"undefined epoch ignored", ents(2, 6), -1, 10, ents(2, 6), false, 0},
		{"negative offset ignored", ents(2, 6), 3, -1, ents(2, 6), false, 0},
		{"higher epoch at the start of an epoch without data replaces it", ents(2, 6, 3, 8), 4, 8, ents(2, 6, 4, 8), true, 0},
		{"higher epoch at a lower offset drops later entries", ents(2, 6, 3, 8), 4, 7, ents(2, 6, 4, 7), true, 1},
		{"lower epoch drops the higher ones", ents(2, 6, 3, 8, 5, 10), 3, 12, ents(2, 6, 3, 12), true, 2},
		{"lower epoch than every entry empties the cache first", ents(2, 6, 3, 8), 1, 10, ents(1, 10), true, 2},
		{"same epoch at an earlier offset moves it", ents(2, 6, 3, 8), 3, 7, ents(2, 6, 3, 7), true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &epochCache{entries: slices.Clone(c.before)}
			changed, conflicts := e.assign(c.epoch, c.start)
			if changed != c.changed || len(conflicts) != c.conflicts || !slices.Equal(e.entries, c.want) {
				t.Fatalf("assign(%d,%d) on %v: got %v changed=%v conflicts=%v, want %v changed=%v conflicts=%d",
					c.epoch, c.start, c.before, e.entries, changed, conflicts, c.want, c.changed, c.conflicts)
			}
		})
	}
}

func TestEpochCacheTruncateFromEnd(t *testing.T) {
	base := ents(2, 6, 3, 8, 4, 11)
	cases := []struct {
		end  int64
		want []EpochEntry
	}{
		{20, base},             // beyond every entry
		{12, base},             // inside the latest epoch
		{11, ents(2, 6, 3, 8)}, // exactly at an epoch boundary
		{9, ents(2, 6, 3, 8)},
		{8, ents(2, 6)},
		{7, ents(2, 6)},
		{6, nil},
		{0, nil},
	}
	for _, c := range cases {
		e := &epochCache{entries: slices.Clone(base)}
		changed := e.truncateFromEnd(c.end)
		if !slices.Equal(e.entries, c.want) || changed != (len(c.want) != len(base)) {
			t.Errorf("truncateFromEnd(%d): got %v (changed %v), want %v", c.end, e.entries, changed, c.want)
		}
	}
}

func TestEpochCacheTruncateFromStart(t *testing.T) {
	base := ents(2, 6, 3, 8, 4, 11)
	cases := []struct {
		start int64
		want  []EpochEntry
	}{
		{0, base},
		{5, base},
		{6, base},                    // the first entry already starts there
		{7, ents(2, 7, 3, 8, 4, 11)}, // inside the first epoch: it now starts at 7
		{8, ents(3, 8, 4, 11)},       // at a boundary
		{9, ents(3, 9, 4, 11)},
		{11, ents(4, 11)},
		{12, ents(4, 12)}, // inside the latest epoch
		{100, ents(4, 100)},
	}
	for _, c := range cases {
		e := &epochCache{entries: slices.Clone(base)}
		changed := e.truncateFromStart(c.start)
		if !slices.Equal(e.entries, c.want) || changed != !slices.Equal(c.want, base) {
			t.Errorf("truncateFromStart(%d): got %v (changed %v), want %v", c.start, e.entries, changed, c.want)
		}
	}
}

// TestEndOffsetForEpoch covers the cases of Kafka's LeaderEpochFileCacheTest
// for endOffsetFor (same semantics, own cases).
func TestEndOffsetForEpoch(t *testing.T) {
	const leo = 20
	cases := []struct {
		name      string
		cache     *epochCache
		requested int32
		epoch     int32
		end       int64
	}{
		{"empty cache", cacheOf(), 0, -1, -1},
		{"empty cache, undefined epoch", cacheOf(), -1, -1, -1},
		{"undefined epoch", cacheOf(2, 6), -1, -1, -1},
		{"latest epoch ends at the LEO", cacheOf(2, 5, 3, 6, 4, 7), 4, 4, leo},
		{"only epoch, not starting at zero", cacheOf(2, 6), 2, 2, leo},
		{"previous epoch ends where the next starts", cacheOf(1, 5, 2, 7), 1, 1, 7},
		{"epoch above the latest is unknown", cacheOf(2, 100), 3, -1, -1},
		{"gap: largest epoch below and start of the next", cacheOf(0, 10, 2, 13, 4, 17), 1, 0, 13},
		{"gap above an existing epoch", cacheOf(0, 10, 2, 13, 4, 17), 3, 2, 17},
		{"exact middle epoch", cacheOf(0, 10, 2, 13, 4, 17), 2, 2, 17},
		{"first epoch", cacheOf(0, 10, 2, 13, 4, 17), 0, 0, 13},
		// KIP-279: the data of the requested epoch is gone; answer the start
		// of the first known epoch so the follower truncates there.
		{"below the earliest epoch", cacheOf(5, 11, 6, 12, 7, 13), 4, 4, 11},
		{"far below the earliest epoch", cacheOf(5, 11, 6, 12, 7, 13), 0, 0, 11},
		{"below the only epoch, which is the latest", cacheOf(5, 11), 4, 4, 11},
	}
	for _, c := range cases {
		epoch, end := c.cache.endOffsetFor(c.requested, leo)
		if epoch != c.epoch || end != c.end {
			t.Errorf("%s: endOffsetFor(%d) on %v = (%d, %d), want (%d, %d)", c.name, c.requested, c.cache.entries, epoch, end, c.epoch, c.end)
		}
	}
}

func TestEpochForOffset(t *testing.T) {
	c := cacheOf(2, 5, 3, 10, 7, 11)
	for off, want := range map[int64]int32{0: -1, 4: -1, 5: 2, 9: 2, 10: 3, 11: 7, 1000: 7} {
		if got := c.epochForOffset(off); got != want {
			t.Errorf("epochForOffset(%d) = %d, want %d", off, got, want)
		}
	}
	if got := cacheOf().epochForOffset(0); got != -1 {
		t.Errorf("empty cache: %d", got)
	}
}

func TestParseEpochCheckpoint(t *testing.T) {
	good := map[string][]EpochEntry{
		"0\n0\n":                                 {},
		"0\n0":                                   {},
		"0\n1\n0 0\n":                            ents(0, 0),
		"0\n3\n0 0\n2 4\n5 100\n":                ents(0, 0, 2, 4, 5, 100),
		"0\n2\n1\t10\n2   20":                    ents(1, 10, 2, 20), // Kafka splits on any white space
		"0\n1\n2147483647 9223372036854775807\n": ents(2147483647, 9223372036854775807),
	}
	for in, want := range good {
		got, err := parseEpochCheckpoint([]byte(in))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parse %q: got %v, %v; want %v", in, got, err, want)
		}
	}
	bad := []string{
		"", "\n", "0", "0\n", "1\n0\n", "0\n-1\n", "0\nx\n", "0\n1\n", "0\n1\n0 0\n1 1\n", "0\n2\n0 0\n",
		"0\n1\n0\n", "0\n1\n0 0 0\n", "0\n1\n-1 0\n", "0\n1\n0 -5\n", "0\n1\na b\n", "0\n1\n2147483648 0\n",
		"0\n2\n1 5\n1 6\n", "0\n2\n1 5\n2 5\n", "0\n2\n2 5\n1 6\n", "0\n2\n1 6\n2 5\n", "0\n1\n0 0\n\n",
		"0\n1\n 0 0\n", "0\r\n1\r\n0 0\r\n", "00\n0\n", " 0\n0\n",
	}
	for _, in := range bad {
		if got, err := parseEpochCheckpoint([]byte(in)); !errors.Is(err, ErrBadEpochCheckpoint) {
			t.Errorf("parse %q: got %v, %v; want ErrBadEpochCheckpoint", in, got, err)
		}
	}
	e := ents(0, 0, 3, 17, 9, 1<<40)
	if got, err := parseEpochCheckpoint(encodeEpochCheckpoint(e)); err != nil || !slices.Equal(got, e) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if s := string(encodeEpochCheckpoint(e)); s != "0\n3\n0 0\n3 17\n9 1099511627776\n" {
		t.Fatalf("encoding %q", s)
	}
}

// epochBatch builds a batch of n records carrying leader epoch epoch at base
// offset base (for follower appends).
func epochBatch(t testing.TB, n int, epoch int32, base int64) []byte {
	t.Helper()
	b := batch(t, n, 20, 1000, fmt.Sprint("e", epoch))
	record.SetBaseOffset(b, base)
	record.SetPartitionLeaderEpoch(b, epoch)
	return b
}

// appendEpochs appends one 2-record leader batch per listed epoch.
func appendEpochs(t testing.TB, l *Log, epochs ...int32) {
	t.Helper()
	for i, e := range epochs {
		if _, err := l.AppendAsLeader(batch(t, 2, 100, int64(1000+i), "x"), AppendOptions{LeaderEpoch: e}); err != nil {
			t.Fatalf("append epoch %d: %v", e, err)
		}
	}
}

func readEpochFile(t testing.TB, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, epochCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkEpochs(t testing.TB, l *Log, want []EpochEntry) {
	t.Helper()
	if got := l.EpochEntries(); !slices.Equal(got, want) {
		t.Fatalf("epoch entries %v, want %v", got, want)
	}
	// The file, once written, always holds what is in memory here.
	if got, err := readEpochCheckpoint(l.Dir()); err != nil || !slices.Equal(got, want) {
		t.Fatalf("checkpoint %v (%v), want %v", got, err, want)
	}
}

func TestEpochCacheLeaderAppends(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	if l.LatestEpoch() != -1 || len(l.EpochEntries()) != 0 {
		t.Fatalf("new log: latest %d entries %v", l.LatestEpoch(), l.EpochEntries())
	}
	if _, err := os.Stat(filepath.Join(dir, epochCheckpointFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a log without epochs needs no checkpoint file: %v", err)
	}
	appendEpochs(t, l, 0, 0, 2, 2, 2, 5)
	checkEpochs(t, l, ents(0, 0, 2, 4, 5, 10))
	if got := readEpochFile(t, dir); got != "0\n3\n0 0\n2 4\n5 10\n" {
		t.Fatalf("checkpoint file %q", got)
	}
	if l.LatestEpoch() != 5 {
		t.Fatalf("latest %d", l.LatestEpoch())
	}
	type eo struct {
		epoch int32
		end   int64
	}
	for req, want := range map[int32]eo{0: {0, 4}, 1: {0, 4}, 2: {2, 10}, 3: {2, 10}, 5: {5, 12}, 6: {-1, -1}, -1: {-1, -1}} {
		if e, o := l.EndOffsetForEpoch(req); e != want.epoch || o != want.end {
			t.Errorf("EndOffsetForEpoch(%d) = (%d, %d), want %v", req, e, o, want)
		}
	}
	for off, want := range map[int64]int32{0: 0, 3: 0, 4: 2, 9: 2, 10: 5, 11: 5} {
		if got := l.EpochForOffset(off); got != want {
			t.Errorf("EpochForOffset(%d) = %d, want %d", off, got, want)
		}
	}
	// A lower epoch from a confused leader drops the newer entries (Kafka's
	// monotonicity rule), so the cache matches the newest data.
	appendEpochs(t, l, 3)
	checkEpochs(t, l, ents(0, 0, 2, 4, 3, 12))
	// Reopen after a clean shutdown: the checkpoint is loaded as is.
	l.Close()
	l2 := openT(t, dir, smallConfig())
	checkEpochs(t, l2, ents(0, 0, 2, 4, 3, 12))
	if e, o := l2.EndOffsetForEpoch(3); e != 3 || o != 14 {
		t.Fatalf("after reopen: (%d, %d)", e, o)
	}
}

func TestEpochCacheFollowerAppends(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	// One record set holding several batches with different epochs; a
	// batch without an epoch (-1, pre-KIP-101) adds nothing.
	var set []byte
	set = append(set, epochBatch(t, 3, -1, 0)...)
	set = append(set, epochBatch(t, 2, 1, 3)...)
	set = append(set, epochBatch(t, 2, 1, 5)...)
	set = append(set, epochBatch(t, 1, 4, 7)...)
	if _, err := l.AppendAsFollower(set); err != nil {
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(1, 3, 4, 7))
	if _, err := l.AppendAsFollower(epochBatch(t, 2, 6, 8)); err != nil {
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(1, 3, 4, 7, 6, 8))
	// Below the earliest epoch (the offsets before 3 have no epoch).
	if e, o := l.EndOffsetForEpoch(0); e != 0 || o != 3 {
		t.Fatalf("EndOffsetForEpoch(0) = (%d, %d)", e, o)
	}
	if e, o := l.EndOffsetForEpoch(5); e != 4 || o != 8 {
		t.Fatalf("EndOffsetForEpoch(5) = (%d, %d)", e, o)
	}
	// A rejected append (offset gap) changes nothing.
	if _, err := l.AppendAsFollower(epochBatch(t, 1, 9, 50)); err == nil {
		t.Fatal("gap accepted")
	}
	checkEpochs(t, l, ents(1, 3, 4, 7, 6, 8))
}

func TestEpochCacheTruncate(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, smallConfig())
	appendEpochs(t, l, 1, 1, 3, 3, 4, 4, 7) // epochs start at 0, 4, 8, 12; LEO 14
	checkEpochs(t, l, ents(1, 0, 3, 4, 4, 8, 7, 12))
	if err := l.Truncate(14); err != nil { // at the LEO: nothing to do
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(1, 0, 3, 4, 4, 8, 7, 12))
	if err := l.Truncate(12); err != nil { // exactly where epoch 7 starts
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(1, 0, 3, 4, 4, 8))
	if err := l.Truncate(10); err != nil { // inside epoch 4
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(1, 0, 3, 4, 4, 8))
	if e, o := l.EndOffsetForEpoch(4); e != 4 || o != 10 {
		t.Fatalf("EndOffsetForEpoch(4) after truncation = (%d, %d)", e, o)
	}
	if e, o := l.EndOffsetForEpoch(7); e != -1 || o != -1 {
		t.Fatalf("EndOffsetForEpoch(7) after truncation = (%d, %d)", e, o)
	}
	if err := l.Truncate(4); err != nil {
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(1, 0))
	// New data in a new epoch after truncation.
	appendEpochs(t, l, 8)
	checkEpochs(t, l, ents(1, 0, 8, 4))
	l.Close()
	l = openT(t, dir, smallConfig())
	checkEpochs(t, l, ents(1, 0, 8, 4))
	// Truncating below the log start restarts the log empty: no epochs.
	if err := l.DeleteRecordsBefore(5); err != nil {
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(8, 5))
	if err := l.Truncate(2); err != nil {
		t.Fatal(err)
	}
	checkEpochs(t, l, nil)
	if e, o := l.EndOffsetForEpoch(8); e != -1 || o != -1 {
		t.Fatalf("after full truncation (%d, %d)", e, o)
	}
}

func TestEpochCacheStartOffsetAdvance(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	l := openT(t, dir, cfg)
	var epochs []int32
	for i := range 60 { // epochs 0..5, ten batches (20 offsets) each, over several segments
		epochs = append(epochs, int32(i/10))
	}
	appendEpochs(t, l, epochs...)
	checkEpochs(t, l, ents(0, 0, 1, 20, 2, 40, 3, 60, 4, 80, 5, 100))
	if err := l.DeleteRecordsBefore(30); err != nil { // inside epoch 1
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(1, 30, 2, 40, 3, 60, 4, 80, 5, 100))
	if err := l.DeleteRecordsBefore(40); err != nil { // at a boundary
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(2, 40, 3, 60, 4, 80, 5, 100))
	// An epoch whose data is gone: KIP-279 answers the earliest start.
	if e, o := l.EndOffsetForEpoch(1); e != 1 || o != 40 {
		t.Fatalf("EndOffsetForEpoch(1) = (%d, %d)", e, o)
	}
	// Retention by size deletes whole segments and advances the start.
	cfg.RetentionBytes = 4096
	l.SetConfig(cfg)
	n, err := l.DeleteOldSegments(l.active().created)
	if err != nil || n == 0 {
		t.Fatalf("retention deleted %d: %v", n, err)
	}
	start := l.LogStartOffset()
	if start <= 60 {
		t.Fatalf("log start %d; test needs retention past epoch 3", start)
	}
	want := ents(start/20, start) // the epoch holding the new start now starts there
	for _, e := range ents(4, 80, 5, 100) {
		if e.StartOffset > start {
			want = append(want, e)
		}
	}
	checkEpochs(t, l, want)
	l.Close()
	l = openT(t, dir, cfg)
	checkEpochs(t, l, want)
}

// TestEpochCacheLoadsCheckpoint shows that a clean open trusts the
// checkpoint rather than rescanning: a different (but valid) file is used,
// clipped to the log's offsets.
func TestEpochCacheLoadsCheckpoint(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	appendEpochs(t, l, 0, 1, 2) // LEO 6
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, epochCheckpointFile), []byte("0\n4\n0 0\n7 1\n8 3\n9 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, DefaultConfig())
	checkEpochs(t, l, ents(0, 0, 7, 1, 8, 3)) // (9,6) is at the LEO and has no data
}

func TestEpochCacheRebuild(t *testing.T) {
	garbage := map[string][]byte{
		"deleted": nil,
		"empty":   {},
		"garbled": []byte("0\n3\n0 0\n2 x\n"),
		"binary":  {0xff, 0, 1, 2, '\n'},
		"version": []byte("1\n1\n0 0\n"),
		"order":   []byte("0\n2\n5 0\n2 4\n"),
		"huge":    []byte("0\n1\n0 0\n" + strings.Repeat(" ", maxEpochCheckpointBytes)),
	}
	for name, content := range garbage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := smallConfig()
			l := openT(t, dir, cfg)
			var epochs []int32
			for i := range 30 {
				epochs = append(epochs, int32(i/7*2))
			}
			appendEpochs(t, l, epochs...)
			if err := l.DeleteRecordsBefore(17); err != nil {
				t.Fatal(err)
			}
			want := l.EpochEntries()
			if !slices.Equal(want, ents(2, 17, 4, 28, 6, 42, 8, 56)) {
				t.Fatalf("entries %v", want)
			}
			l.Close()
			path := filepath.Join(dir, epochCheckpointFile)
			if content == nil {
				os.Remove(path)
			} else if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, cfg)
			checkEpochs(t, l, want)
		})
	}
}

// TestEpochCacheRecoveryTornTail: after a crash that tore the batch that
// started a new epoch, the epoch's entry goes with it.
func TestEpochCacheRecoveryTornTail(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	appendEpochs(t, l, 1, 1, 2, 3)
	l.Flush()
	checkEpochs(t, l, ents(1, 0, 2, 4, 3, 6))
	path := segFiles(t, dir)[0]
	pos := batchPositions(t, path)
	if err := os.Truncate(path, int64(pos[3]+20)); err != nil {
		t.Fatal(err)
	}
	l2 := crashReopen(t, l, dir, DefaultConfig())
	if l2.LogEndOffset() != 6 {
		t.Fatalf("LEO %d", l2.LogEndOffset())
	}
	checkEpochs(t, l2, ents(1, 0, 2, 4))
	appendEpochs(t, l2, 4)
	checkEpochs(t, l2, ents(1, 0, 2, 4, 4, 6))
}

// TestEpochCacheRecoveryStaleCheckpoint: a crash after a batch reached the
// log but before the checkpoint naming its epoch did (or with a checkpoint
// naming epochs whose data never made it) is repaired from the rescanned
// segments.
func TestEpochCacheRecoveryStaleCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	l := openT(t, dir, cfg)
	var epochs []int32
	for i := range 40 {
		epochs = append(epochs, int32(i/8))
	}
	appendEpochs(t, l, epochs...) // epochs 0..4 at 0, 16, 32, 48, 64
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	appendEpochs(t, l, 5) // at 80
	want := ents(0, 0, 1, 16, 2, 32, 3, 48, 4, 64, 5, 80)
	checkEpochs(t, l, want)
	// Only the segments from the one holding the recovery point on are
	// rescanned after a crash; entries below were written before that data
	// was flushed.
	rp, err := readCheckpoint(dir, recoveryPointFile)
	if err != nil || rp == 0 || rp > 80 {
		t.Fatalf("recovery point %d (%v); the test needs one in (0, 80]", rp, err)
	}
	// The stale file misses epoch 5 and invents epoch 9 past the LEO.
	stale := "0\n6\n0 0\n1 16\n2 32\n3 48\n4 64\n9 90\n"
	if err := os.WriteFile(filepath.Join(dir, epochCheckpointFile), []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	l2 := crashReopen(t, l, dir, cfg)
	checkEpochs(t, l2, want)
}

func TestAssignEpoch(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	if err := l.AssignEpoch(4); err != nil {
		t.Fatal(err)
	}
	// The new leader's epoch answers before it has data.
	if e, o := l.EndOffsetForEpoch(4); e != 4 || o != 0 {
		t.Fatalf("EndOffsetForEpoch(4) = (%d, %d)", e, o)
	}
	if _, err := os.Stat(filepath.Join(dir, epochCheckpointFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an epoch without data is not written: %v", err)
	}
	appendEpochs(t, l, 4)
	checkEpochs(t, l, ents(4, 0)) // written with the first batch
	l.AssignEpoch(3)              // lower: ignored
	l.AssignEpoch(4)              // same: nothing to do
	checkEpochs(t, l, ents(4, 0))
	l.AssignEpoch(6)
	if got := l.EpochEntries(); !slices.Equal(got, ents(4, 0, 6, 2)) {
		t.Fatalf("entries %v", got)
	}
	if e, o := l.EndOffsetForEpoch(5); e != 4 || o != 2 {
		t.Fatalf("EndOffsetForEpoch(5) = (%d, %d)", e, o)
	}
	l.AssignEpoch(7) // elected again before writing anything: replaces epoch 6
	if got := l.EpochEntries(); !slices.Equal(got, ents(4, 0, 7, 2)) {
		t.Fatalf("entries %v", got)
	}
	// A restart forgets an epoch without data; the leader assigns it again.
	l.Close()
	l = openT(t, dir, DefaultConfig())
	checkEpochs(t, l, ents(4, 0))
	l.AssignEpoch(7)
	appendEpochs(t, l, 7)
	checkEpochs(t, l, ents(4, 0, 7, 2))
}

// TestEpochCheckpointWriteFailure: a checkpoint that cannot be written
// fails the append and the log, like any other lost write.
func TestEpochCheckpointWriteFailure(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	appendEpochs(t, l, 1)
	// A directory where the temp file must go makes the write fail.
	if err := os.Mkdir(filepath.Join(dir, epochCheckpointFile+".tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendAsLeader(batch(t, 1, 10, 0, "f"), AppendOptions{LeaderEpoch: 1}); err != nil {
		t.Fatalf("same epoch needs no write: %v", err)
	}
	if _, err := l.AppendAsLeader(batch(t, 1, 10, 0, "f"), AppendOptions{LeaderEpoch: 2}); err == nil {
		t.Fatal("append with a failed checkpoint write succeeded")
	}
	if _, err := l.AppendAsLeader(batch(t, 1, 10, 0, "f"), AppendOptions{LeaderEpoch: 2}); err == nil {
		t.Fatal("failed log accepted an append")
	}
	// After a restart the epoch is recovered from the log.
	os.Remove(filepath.Join(dir, epochCheckpointFile+".tmp"))
	l2 := crashReopen(t, l, dir, DefaultConfig())
	checkEpochs(t, l2, ents(1, 0, 2, 3))
}

// FuzzEpochCheckpoint feeds untrusted bytes to the checkpoint parser: it
// must never panic, and whatever it accepts must be a valid cache that
// survives a round trip.
func FuzzEpochCheckpoint(f *testing.F) {
	for _, s := range []string{"0\n0\n", "0\n3\n0 0\n2 4\n5 100\n", "0\n1\n7\t9", "0\n2\n1 5\n1 6\n", "", "0\n99999999999999999999\n", "0\n1\n-0 +5\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseEpochCheckpoint(b)
		if err != nil {
			if !errors.Is(err, ErrBadEpochCheckpoint) {
				t.Fatalf("error not wrapping ErrBadEpochCheckpoint: %v", err)
			}
			return
		}
		for i, e := range entries {
			if e.Epoch < 0 || e.StartOffset < 0 || (i > 0 && (e.Epoch <= entries[i-1].Epoch || e.StartOffset <= entries[i-1].StartOffset)) {
				t.Fatalf("accepted invalid entries %v", entries)
			}
		}
		again, err := parseEpochCheckpoint(encodeEpochCheckpoint(entries))
		if err != nil || !slices.Equal(again, entries) {
			t.Fatalf("round trip of %v: %v %v", entries, again, err)
		}
		// The cache operations keep the invariants on accepted input.
		c := &epochCache{entries: entries}
		if len(entries) > 0 {
			last := entries[len(entries)-1]
			if e, o := c.endOffsetFor(last.Epoch, last.StartOffset+1); e != last.Epoch || o != last.StartOffset+1 {
				t.Fatalf("latest epoch: (%d, %d)", e, o)
			}
			c.truncateFromStart(entries[0].StartOffset + 1)
			c.truncateFromEnd(last.StartOffset)
			for i, e := range c.entries {
				if i > 0 && (e.Epoch <= c.entries[i-1].Epoch || e.StartOffset <= c.entries[i-1].StartOffset) {
					t.Fatalf("truncation broke monotonicity: %v", c.entries)
				}
			}
		}
	})
}

// TestTruncateAtLEODropsEmptyEpochs: a replica that assigned an epoch as
// leader but wrote nothing in it, then became a follower, drops that epoch
// when it truncates to its LEO, so it no longer reports it as its latest.
func TestTruncateAtLEODropsEmptyEpochs(t *testing.T) {
	l := openT(t, t.TempDir(), DefaultConfig())
	appendEpochs(t, l, 4)
	if err := l.AssignEpoch(6); err != nil {
		t.Fatal(err)
	}
	if l.LatestEpoch() != 6 {
		t.Fatalf("latest epoch %d", l.LatestEpoch())
	}
	if err := l.Truncate(l.LogEndOffset()); err != nil {
		t.Fatal(err)
	}
	checkEpochs(t, l, ents(4, 0))
	if l.LatestEpoch() != 4 || l.LogEndOffset() != 2 {
		t.Fatalf("latest epoch %d, LEO %d", l.LatestEpoch(), l.LogEndOffset())
	}
}

// TestTruncateFullyAndStartAt: a follower whose log lies wholly below its
// leader's log start restarts its log there, above its old LEO.
func TestTruncateFullyAndStartAt(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, DefaultConfig())
	appendEpochs(t, l, 1, 2)
	if err := l.TruncateFullyAndStartAt(100); err != nil {
		t.Fatal(err)
	}
	if l.LogStartOffset() != 100 || l.LogEndOffset() != 100 || len(l.EpochEntries()) != 0 {
		t.Fatalf("start %d LEO %d epochs %v", l.LogStartOffset(), l.LogEndOffset(), l.EpochEntries())
	}
	if _, err := l.AppendAsFollower(epochBatch(t, 2, 5, 100)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openT(t, dir, DefaultConfig())
	if l.LogStartOffset() != 100 || l.LogEndOffset() != 102 || l.LatestEpoch() != 5 {
		t.Fatalf("after reopen: start %d LEO %d latest epoch %d", l.LogStartOffset(), l.LogEndOffset(), l.LatestEpoch())
	}
	if err := l.TruncateFullyAndStartAt(-1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("negative start: %v", err)
	}
}

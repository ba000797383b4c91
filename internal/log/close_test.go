package log

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openLogged opens dir with opts, returning the log and what it logged.
func openLogged(t *testing.T, dir string, cfg Config, opts OpenOptions) (*Log, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	l, err := OpenWith(dir, cfg, slog.New(slog.NewTextHandler(&out, nil)), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, &out
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestCloseUnmarkedSmallLog: a new log with one small batch closed by
// CloseUnmarked leaves no marker, no index files and no checkpoints behind
// (nothing it needs: the data was fsynced by the append's flush); opened
// with Clean it loads without recovery and with the same state; opened
// without Clean it is recovered as after a crash.
func TestCloseUnmarkedSmallLog(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	l, _ := openLogged(t, dir, cfg, OpenOptions{DirSynced: true})
	appendN(t, l, 1, 100)
	if err := l.WaitFlushed(l.LogEndOffset()); err != nil {
		t.Fatal(err)
	}
	if exists(t, filepath.Join(dir, recoveryPointFile)) {
		t.Fatal("the first flush of a DirSynced log wrote a recovery point")
	}
	if err := l.CloseUnmarked(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{cleanShutdownFile, recoveryPointFile, logStartFile,
		segmentName(0, indexSuffix), segmentName(0, timeIndexSuffix)} {
		if exists(t, filepath.Join(dir, name)) {
			t.Errorf("%s written by CloseUnmarked of a one-batch log", name)
		}
	}
	l2, out := openLogged(t, dir, cfg, OpenOptions{Clean: true})
	if s := out.String(); strings.Contains(s, "recovered") || strings.Contains(s, "rebuilding") {
		t.Fatalf("clean open recovered: %s", s)
	}
	if got := l2.LogEndOffset(); got != 2 {
		t.Fatalf("LEO %d, want 2", got)
	}
	if s := l2.active(); s.maxTs != 101 || s.firstTs != 101 {
		t.Fatalf("max/first timestamp %d/%d after a clean open, want 101/101", s.maxTs, s.firstTs)
	}
	if got := readAllRecords(t, l2, 0); len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
	if err := l2.CloseUnmarked(); err != nil {
		t.Fatal(err)
	}
	_, out = openLogged(t, dir, cfg, OpenOptions{})
	if !strings.Contains(out.String(), "recovered log after unclean shutdown") {
		t.Fatalf("open without Clean after CloseUnmarked did not recover: %s", out)
	}
}

// TestCloseUnmarkedRolledLog: a log of several segments closes without a
// marker but with every index file of a segment that has entries, loads
// cleanly with Clean (reads and timestamp lookups as before), and a crash
// after that clean open is recovered: Clean holds for one open only.
func TestCloseUnmarkedRolledLog(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	l, _ := openLogged(t, dir, cfg, OpenOptions{})
	appendN(t, l, 60, 1000)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRecordsBefore(4); err != nil {
		t.Fatal(err)
	}
	segs := len(l.segs)
	if segs < 3 {
		t.Fatalf("%d segments, want >= 3", segs)
	}
	leo, active := l.LogEndOffset(), l.ActiveSegmentBase()
	if err := l.CloseUnmarked(); err != nil {
		t.Fatal(err)
	}
	if exists(t, filepath.Join(dir, cleanShutdownFile)) {
		t.Fatal("CloseUnmarked wrote the marker")
	}
	if rp, err := readCheckpoint(dir, recoveryPointFile); err != nil || rp < active {
		t.Fatalf("recovery point %d (%v) below the active segment %d", rp, err, active)
	}
	l2, out := openLogged(t, dir, cfg, OpenOptions{Clean: true})
	if s := out.String(); strings.Contains(s, "recovered") || strings.Contains(s, "rebuilding") {
		t.Fatalf("clean open recovered: %s", s)
	}
	if len(l2.segs) != segs || l2.LogEndOffset() != leo || l2.LogStartOffset() != 4 {
		t.Fatalf("reopened with %d segments, LEO %d, log start %d; want %d, %d, 4", len(l2.segs), l2.LogEndOffset(), l2.LogStartOffset(), segs, leo)
	}
	if got := readAllRecords(t, l2, 4); int64(len(got)) != leo-4 {
		t.Fatalf("%d records, want %d", len(got), leo-4)
	}
	for _, s := range l2.segs[:len(l2.segs)-1] {
		if len(s.missing) > 0 {
			t.Fatalf("segment %d lacks index files %v", s.base, s.missing)
		}
	}
	off, ts, err := l2.OffsetForTimestamp(1000 + 10*30)
	if err != nil || off != 60 || ts != 1300 {
		t.Fatalf("OffsetForTimestamp = %d, %d, %v; want 60, 1300", off, ts, err)
	}
	appendN(t, l2, 1, 5000)
	l3 := crashReopen(t, l2, dir, cfg) // opens without Clean
	if got := l3.LogEndOffset(); got != leo+2 {
		t.Fatalf("LEO after crash %d, want %d", got, leo+2)
	}
}

// appendEpoch appends one batch stamped with epoch.
func appendEpoch(t *testing.T, l *Log, epoch int32, ts int64) {
	t.Helper()
	if _, err := l.AppendAsLeader(batch(t, 2, 100, ts, "e"), AppendOptions{LeaderEpoch: epoch}); err != nil {
		t.Fatal(err)
	}
}

// TestEpochCheckpointSyncedBeforeRecoveryPoint: an append that starts an
// epoch writes the leader epoch checkpoint without fsyncs; the file is made
// durable before a recovery point (after a roll) or a clean close; and a
// crash that loses the unsynced file (the old file comes back) still yields
// every epoch, rebuilt from the rescanned segments.
func TestEpochCheckpointSyncedBeforeRecoveryPoint(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	l := openT(t, dir, cfg)
	// Only the explicit flushes below write recovery points.
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	appendEpoch(t, l, 1, 100)
	for i := range 40 { // rolls segments
		appendEpoch(t, l, 2, int64(200+i))
	}
	l.mu.RLock()
	unsynced := l.epochsUnsynced
	l.mu.RUnlock()
	if !unsynced {
		t.Fatal("a new epoch's checkpoint was written durably on the append path")
	}
	if err := l.Flush(); err != nil { // writes the recovery point after the rolls
		t.Fatal(err)
	}
	l.mu.RLock()
	unsynced, ckpt, active := l.epochsUnsynced, l.checkpointed, l.active().base
	l.mu.RUnlock()
	if unsynced || ckpt < active {
		t.Fatalf("after a flush with a roll: unsynced=%v recovery point %d (active segment %d)", unsynced, ckpt, active)
	}
	synced, err := os.ReadFile(filepath.Join(dir, epochCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	appendEpoch(t, l, 3, 900)
	want := l.EpochEntries()
	// A crash loses the unsynced write: the file synced with the recovery
	// point comes back.
	if err := os.WriteFile(filepath.Join(dir, epochCheckpointFile), synced, 0o644); err != nil {
		t.Fatal(err)
	}
	l = crashReopen(t, l, dir, cfg)
	if got := l.EpochEntries(); len(want) != 3 || !slices.Equal(got, want) {
		t.Fatalf("epochs after the crash %v, want %v", got, want)
	}
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	appendEpoch(t, l, 4, 1000)
	if err := l.CloseUnmarked(); err != nil {
		t.Fatal(err)
	}
	l.mu.RLock()
	unsynced = l.epochsUnsynced
	l.mu.RUnlock()
	b, err := os.ReadFile(filepath.Join(dir, epochCheckpointFile))
	if err != nil || unsynced || !strings.Contains(string(b), "\n4 ") {
		t.Fatalf("after close: unsynced=%v file %q (%v)", unsynced, b, err)
	}
}

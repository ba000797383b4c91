package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestForEachConcurrently: every index is called exactly once, at most
// limit at a time, and the calls do overlap when limit allows.
func TestForEachConcurrently(t *testing.T) {
	for _, tc := range []struct{ n, limit int }{{0, 4}, {1, 4}, {7, 1}, {100, 8}, {5, 64}} {
		calls := make([]atomic.Int32, tc.n)
		var running, peak atomic.Int32
		forEachConcurrently(tc.n, tc.limit, func(i int) {
			r := running.Add(1)
			for {
				p := peak.Load()
				if r <= p || peak.CompareAndSwap(p, r) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond) // let the others start
			running.Add(-1)
			calls[i].Add(1)
		})
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Errorf("n=%d limit=%d: index %d called %d times", tc.n, tc.limit, i, c)
			}
		}
		if p := int(peak.Load()); p > tc.limit || tc.n > 1 && tc.limit > 1 && p < 2 {
			t.Errorf("n=%d limit=%d: peak concurrency %d", tc.n, tc.limit, p)
		}
	}
}

// syncfsLogs opens n logs under one data dir sharing a DirSyncer that
// coalesces from minLogs logs.
func syncfsLogs(t *testing.T, n, minLogs int, cfg Config) (*DirSyncer, []*Log) {
	t.Helper()
	dir := t.TempDir()
	s, err := NewDirSyncer(dir, minLogs, quiet)
	if err != nil || s == nil {
		t.Fatalf("NewDirSyncer: %v %v (Linux >= 5.8 needed)", s, err)
	}
	t.Cleanup(func() { s.Close() })
	logs := make([]*Log, n)
	for i := range logs {
		logs[i] = openT(t, filepath.Join(dir, fmt.Sprintf("t-%d", i)), cfg)
		logs[i].SetSyncer(s)
	}
	// Let every background flusher park, as it does at once on a new log,
	// so that none races the test to flush a log.
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range logs {
		for !l.parked.Load() {
			if time.Now().After(deadline) {
				t.Fatal("background flusher did not park")
			}
			time.Sleep(time.Millisecond)
		}
	}
	return s, logs
}

// appendAll appends one batch to each log and returns the waits for them.
func appendAll(t *testing.T, logs []*Log) []FlushWait {
	t.Helper()
	ws := make([]FlushWait, len(logs))
	for i, l := range logs {
		appendN(t, l, 1, int64(i))
		ws[i] = FlushWait{Log: l, UpTo: l.LogEndOffset()}
	}
	return ws
}

// fsyncCounts returns each log's count of flushes of its own files.
func fsyncCounts(logs []*Log) []int64 {
	out := make([]int64, len(logs))
	for i, l := range logs {
		out[i] = l.fsyncs.Load()
	}
	return out
}

// TestWaitFlushedAllSyncfs: minLogs logs of one dir waiting at once are
// made durable by one syncfs and no fsync of their own; fewer fsync their
// own files; a log with a rolled segment (indexes and a recovery point to
// write) flushes itself; a flush.messages>1 log returns at once. New logs
// write no recovery point (a one-segment log needs none), and after a crash
// every flushed record is there.
func TestWaitFlushedAllSyncfs(t *testing.T) {
	cfg := smallConfig()
	s, logs := syncfsLogs(t, 6, 4, cfg)

	ws := appendAll(t, logs)
	WaitFlushedAll(ws)
	for i, w := range ws {
		if w.Err != nil || logs[i].flushed < w.UpTo {
			t.Fatalf("log %d: err %v, flushed %d, want >= %d", i, w.Err, logs[i].flushed, w.UpTo)
		}
		if _, err := os.Stat(filepath.Join(logs[i].Dir(), recoveryPointFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("log %d: recovery point of a new log: %v", i, err)
		}
		if logs[i].flushPending() {
			t.Errorf("log %d: the background flusher still has work", i)
		}
	}
	if got := s.Syncs(); got != 1 {
		t.Errorf("%d syncfs for 6 logs, want 1", got)
	}
	if c := fsyncCounts(logs); slices.Max(c) != 0 {
		t.Errorf("logs fsynced their own files: %v", c)
	}

	// Fewer than minLogs: each fsyncs its own file.
	ws = appendAll(t, logs[:3])
	WaitFlushedAll(ws)
	for i, w := range ws {
		if w.Err != nil || logs[i].flushed < w.UpTo {
			t.Fatalf("log %d: err %v, flushed %d, want >= %d", i, w.Err, logs[i].flushed, w.UpTo)
		}
	}
	if got := s.Syncs(); got != 1 {
		t.Errorf("%d syncfs after a flush of 3 logs, want still 1", got)
	}
	if c := fsyncCounts(logs); !slices.Equal(c, []int64{1, 1, 1, 0, 0, 0}) {
		t.Errorf("own fsyncs %v, want 1 for the first 3", c)
	}

	// Log 0 rolls (smallConfig's 4 KiB segments): its flush syncs the
	// sealed segment's indexes and writes the recovery point itself (held
	// flushMu keeps the background flusher from doing it first).
	logs[0].flushMu.Lock()
	for logs[0].ActiveSegmentBase() == 0 {
		appendN(t, logs[0], 1, 100)
	}
	if _, _, _, ok := logs[0].syncSnapshot(); ok {
		t.Error("a rolled log's flush would be coalesced")
	}
	ws = appendAll(t, logs)
	logs[0].flushMu.Unlock()
	WaitFlushedAll(ws)
	for i, w := range ws {
		if w.Err != nil || logs[i].flushed < w.UpTo {
			t.Fatalf("log %d: err %v, flushed %d, want >= %d", i, w.Err, logs[i].flushed, w.UpTo)
		}
	}
	// Written by this flush or by the background flusher that the roll
	// kicked (which may have covered the offsets first).
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(logs[0].Dir(), recoveryPointFile))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recovery point after the roll: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Syncs(); got != 2 {
		t.Errorf("%d syncfs, want 2", got)
	}

	// A crash now loses nothing that was flushed.
	for i, l := range logs[:5] {
		leo := l.LogEndOffset()
		r := crashReopen(t, l, l.Dir(), cfg)
		if got := r.LogEndOffset(); got != leo {
			t.Errorf("log %d: LEO %d after a crash, want %d", i, got, leo)
		}
		if n := len(readAllRecords(t, r, 0)); int64(n) != leo {
			t.Errorf("log %d: %d records after a crash, want %d", i, n, leo)
		}
	}

	// flush.messages > 1: nothing to wait for.
	lazy := cfg
	lazy.FlushMessages = 1000
	logs[5].SetConfig(lazy)
	ws = appendAll(t, logs[5:])
	WaitFlushedAll(ws)
	if ws[0].Err != nil || logs[5].flushed >= ws[0].UpTo {
		t.Errorf("flush.messages=1000: err %v, flushed %d of %d", ws[0].Err, logs[5].flushed, ws[0].UpTo)
	}
}

// TestSyncfsFailure: when syncfs fails (its descriptor is closed under
// it: EBADF), every covered log fsyncs its own files instead, so only a
// log whose own fsync fails gets the error (and refuses writes after it);
// the syncer stays off, later flushes fsync each log.
func TestSyncfsFailure(t *testing.T) {
	s, logs := syncfsLogs(t, 5, 4, DefaultConfig())
	ws := appendAll(t, logs)
	if err := s.f.Close(); err != nil { // syncfs now fails with EBADF
		t.Fatal(err)
	}
	bad := logs[2]
	bad.mu.RLock()
	if err := bad.active().log.Close(); err != nil { // its own fsync fails too
		t.Fatal(err)
	}
	bad.mu.RUnlock()
	WaitFlushedAll(ws)
	for i, w := range ws {
		if i == 2 {
			if w.Err == nil {
				t.Errorf("log 2: no error though its fsync failed")
			}
			continue
		}
		if w.Err != nil || logs[i].flushed < w.UpTo {
			t.Errorf("log %d: err %v, flushed %d, want >= %d", i, w.Err, logs[i].flushed, w.UpTo)
		}
	}
	if _, err := bad.AppendAsLeader(batch(t, 1, 10, 1, "x"), AppendOptions{}); err == nil {
		t.Errorf("log 2 accepts appends after its fsync failed")
	}
	if s.usable() || s.Syncs() != 0 {
		t.Errorf("syncer usable %v with %d syncs after a failed syncfs", s.usable(), s.Syncs())
	}
	before := fsyncCounts(logs)
	good := slices.Delete(slices.Clone(logs), 2, 3)
	ws = appendAll(t, good)
	WaitFlushedAll(ws)
	after := fsyncCounts(logs)
	for i := range logs {
		if want := before[i] + 1; i != 2 && after[i] != want {
			t.Errorf("log %d: %d own fsyncs after the syncer broke, want %d", i, after[i], want)
		}
	}
	for _, w := range ws {
		if w.Err != nil {
			t.Errorf("%s: %v", w.Log.Dir(), w.Err)
		}
	}
}

// TestSyncedToAfterTruncate: a snapshot taken before a truncation is not
// recorded as synced (the bytes below it may be new).
func TestSyncedToAfterTruncate(t *testing.T) {
	_, logs := syncfsLogs(t, 1, 1, DefaultConfig())
	l := logs[0]
	appendN(t, l, 3, 0) // offsets 0-5
	target, gen, epochs, ok := l.syncSnapshot()
	if !ok {
		t.Fatal("no snapshot")
	}
	if err := l.Truncate(4); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 2, 10)
	if ok, err := l.syncedTo(target, gen, epochs); ok || err != nil {
		t.Errorf("syncedTo after a truncation: %v %v, want false", ok, err)
	}
	if l.flushed >= target {
		t.Errorf("flushed %d after a refused syncedTo (target %d)", l.flushed, target)
	}
	target, gen, epochs, _ = l.syncSnapshot()
	if ok, err := l.syncedTo(target, gen, epochs); !ok || err != nil || l.flushed != target {
		t.Errorf("syncedTo: %v %v, flushed %d, want %d", ok, err, l.flushed, target)
	}
}

// TestWaitFlushedAllConcurrent: many goroutines append to overlapping sets
// of logs and wait for them together; every wait returns with its offsets
// flushed (run with -race).
func TestWaitFlushedAllConcurrent(t *testing.T) {
	s, logs := syncfsLogs(t, 12, 4, DefaultConfig())
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for r := range 15 {
				set := logs[(g+r)%4 : 4+(g*r)%9]
				ws := make([]FlushWait, len(set))
				for i, l := range set {
					info, err := l.AppendAsLeader(batch(t, 1, 64, int64(r), "c"), AppendOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					ws[i] = FlushWait{Log: l, UpTo: info.LastOffset + 1}
				}
				WaitFlushedAll(ws)
				for _, w := range ws {
					w.Log.mu.RLock()
					flushed := w.Log.flushed
					w.Log.mu.RUnlock()
					if w.Err != nil || flushed < w.UpTo {
						t.Errorf("%s: err %v, flushed %d, want >= %d", w.Log.Dir(), w.Err, flushed, w.UpTo)
					}
				}
			}
		})
	}
	wg.Wait()
	if s.Syncs() == 0 {
		t.Error("no syncfs")
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{{"5.8.0", true}, {"5.7.19", false}, {"6.1.0-18-amd64", true}, {"4.19.0", false}, {"5.10", true}, {"x", false}} {
		if got := kernelAtLeast(tc.release, 5, 8); got != tc.want {
			t.Errorf("kernelAtLeast(%q) = %v", tc.release, got)
		}
	}
}

// TestEpochCheckpointSync: an append in a new leader epoch writes the
// leader epoch checkpoint at once but leaves its fsync to the next flush,
// per-log or coalesced; a clean close syncs it too; and a crash that loses
// the unsynced write loses no entry (recovery rebuilds it from the
// rescanned batches).
func TestEpochCheckpointSync(t *testing.T) {
	s, logs := syncfsLogs(t, 5, 4, DefaultConfig())
	appendEpoch := func(l *Log, epoch int32) int64 {
		t.Helper()
		info, err := l.AppendAsLeader(batch(t, 1, 10, 1, "e"), AppendOptions{LeaderEpoch: epoch})
		if err != nil {
			t.Fatal(err)
		}
		return info.LastOffset + 1
	}
	unsynced := func(l *Log) bool {
		l.mu.RLock()
		defer l.mu.RUnlock()
		return l.epochsUnsynced
	}
	// Per-log flush.
	l := logs[4]
	end := appendEpoch(l, 3)
	if !unsynced(l) {
		t.Fatal("epoch checkpoint written with fsync on append")
	}
	if got, err := readEpochCheckpoint(l.Dir()); err != nil || len(got) != 1 || got[0] != (EpochEntry{3, 0}) {
		t.Fatalf("checkpoint after the append: %v %v", got, err)
	}
	if err := l.WaitFlushed(end); err != nil || unsynced(l) {
		t.Fatalf("after WaitFlushed: err %v, unsynced %v", err, unsynced(l))
	}
	// Coalesced flush.
	ws := make([]FlushWait, 4)
	for i, l := range logs[:4] {
		ws[i] = FlushWait{Log: l, UpTo: appendEpoch(l, 7)}
	}
	WaitFlushedAll(ws)
	for i, l := range logs[:4] {
		if ws[i].Err != nil || unsynced(l) {
			t.Errorf("log %d after WaitFlushedAll: err %v, unsynced %v", i, ws[i].Err, unsynced(l))
		}
	}
	if s.Syncs() != 1 {
		t.Errorf("%d syncfs, want 1", s.Syncs())
	}
	// Clean close.
	appendEpoch(logs[0], 8)
	if err := logs[0].Close(); err != nil || unsynced(logs[0]) {
		t.Fatalf("close: %v, unsynced %v", err, unsynced(logs[0]))
	}
	// A crash loses the unsynced write (the file keeps its old content).
	l = logs[1]
	old, err := os.ReadFile(filepath.Join(l.Dir(), epochCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	start := l.LogEndOffset()
	appendEpoch(l, 9)
	if err := os.WriteFile(filepath.Join(l.Dir(), epochCheckpointFile), old, 0o644); err != nil {
		t.Fatal(err)
	}
	r := crashReopen(t, l, l.Dir(), DefaultConfig())
	want := []EpochEntry{{7, 0}, {9, start}}
	if got := r.EpochEntries(); !slices.Equal(got, want) {
		t.Errorf("entries after a crash: %v, want %v", got, want)
	}
}

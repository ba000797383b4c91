package log

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"strand/internal/metrics"
)

// DirSyncer coalesces the flushes of many logs of one data directory into
// one syncfs(2) of its filesystem (log.flush.syncfs.min.partitions): when
// WaitFlushedAll has at least MinLogs logs of the directory to flush, it
// issues one syncfs instead of one fdatasync per log. syncfs makes every
// byte written to the filesystem before it started durable, the logs'
// appends included, so the promise of flush.messages=1 (every acknowledged
// append is fsynced) is kept. Concurrent callers share syncs (group commit:
// one syncfs covers every call made before it started).
//
// syncfs also writes back unrelated dirty data of the same filesystem, and
// it reports writeback errors only on Linux >= 5.8: NewDirSyncer returns nil
// (per-log fdatasync) on older kernels and other systems.
//
// Errors: syncfs reports an error seen anywhere on the filesystem, once.
// On the first one the syncer turns itself off for good: the logs it
// covered, and every log later, fall back to fdatasync of their own files,
// whose per-file error state (kept by the kernel for each open file)
// attributes the failure exactly: a log whose data did not reach the disk
// fails (sticky, KAFKA_STORAGE_ERROR), the others flush normally.
type DirSyncer struct {
	dir     string
	f       *os.File // the directory; its error cursor (opened before any log) sees every later writeback error on the filesystem
	dev     uint64   // the filesystem (st_dev) of dir
	minLogs int
	logger  *slog.Logger
	syncs   atomic.Int64 // completed syncfs calls

	mu       sync.Mutex // guards started, finished, running, broken
	cond     *sync.Cond // signalled (with mu) when a sync finishes
	started  uint64     // syncs started so far; the one running, if any, is number started
	finished uint64     // the highest sync number finished
	running  bool
	broken   error // the first syncfs failure: the syncer is off
}

// NewDirSyncer returns a syncer for the logs under dir (opening dir now,
// so that writeback errors from now on are reported), or nil when minLogs
// <= 0 or syncfs cannot report writeback errors here (not Linux, or Linux
// older than 5.8). Close releases it after the last log using it closed.
func NewDirSyncer(dir string, minLogs int, logger *slog.Logger) (*DirSyncer, error) {
	if minLogs <= 0 {
		return nil, nil
	}
	if logger == nil {
		logger = slog.Default()
	}
	if ok, why := syncfsReportsErrors(); !ok {
		logger.Info("log.flush.syncfs.min.partitions ignored: every partition fsyncs its own files", "reason", why)
		return nil, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("syncfs of %s: %w", dir, err)
	}
	dev, err := deviceOf(dir)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("syncfs of %s: %w", dir, err)
	}
	s := &DirSyncer{dir: dir, f: f, dev: dev, minLogs: minLogs, logger: logger}
	s.cond = sync.NewCond(&s.mu)
	logger.Info("flushes of many partitions share one syncfs of the log dir's filesystem (log.flush.syncfs.min.partitions)",
		"dir", dir, "min_partitions", minLogs)
	return s, nil
}

// Close releases the directory. Syncs after it fail, and flushes fall back
// to fdatasync.
func (s *DirSyncer) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if s.broken == nil {
		s.broken = fmt.Errorf("syncfs of %s: %w", s.dir, ErrClosed)
	}
	s.mu.Unlock()
	return s.f.Close()
}

// Syncs returns the number of syncfs calls that completed.
func (s *DirSyncer) Syncs() int64 { return s.syncs.Load() }

// usable reports whether the syncer may be used (nil: never).
func (s *DirSyncer) usable() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken == nil
}

// sync returns nil once a syncfs that started after the call has finished
// without error, so every write made before the call is durable. It returns
// an error if that sync failed or the syncer is off (the caller then syncs
// its own files). One sync runs at a time; callers that arrive while one
// runs share the next one.
func (s *DirSyncer) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.started + 1 // the next sync to start begins after this call
	for {
		if s.broken != nil {
			return s.broken
		}
		if s.finished >= want {
			return nil
		}
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		n := s.started
		s.mu.Unlock()
		start := time.Now()
		err := syncfs(s.f)
		metrics.FsyncSince(start)
		s.mu.Lock()
		s.running = false
		s.finished = n
		if err != nil && s.broken == nil {
			s.broken = fmt.Errorf("syncfs of %s: %w", s.dir, err)
			s.logger.Error("syncfs failed; every partition of the log dir now fsyncs its own files", "dir", s.dir, "err", err)
		} else if err == nil {
			s.syncs.Add(1)
		}
		s.cond.Broadcast()
	}
}

// SetSyncer makes WaitFlushedAll coalesce this log's flushes through s
// (nil: never). It is ignored when the log's directory is not on s's
// filesystem.
func (l *Log) SetSyncer(s *DirSyncer) {
	if s != nil {
		if dev, err := deviceOf(l.dir); err != nil || dev != s.dev {
			l.logger.Info("partition directory is not on its log dir's filesystem: syncs its own files", "log_dir", s.dir, "err", err)
			s = nil
		}
	}
	l.syncer.Store(s)
}

// FlushWait is one log's part of WaitFlushedAll: wait until every offset
// below UpTo is as durable as the log's flush policy asks. Err is set by
// WaitFlushedAll.
type FlushWait struct {
	Log  *Log
	UpTo int64
	Err  error
}

// maxConcurrentFlushes bounds the fdatasyncs WaitFlushedAll has in flight
// (each blocked one holds an OS thread).
const maxConcurrentFlushes = 64

// WaitFlushedAll is WaitFlushed for many logs at once. The logs of one
// DirSyncer that need an fsync are covered by one shared syncfs when there
// are at least its MinLogs of them; the others (and all logs if a syncfs
// fails) fsync their own files, concurrently. Each entry's Err is what
// WaitFlushed would have returned.
func WaitFlushedAll(ws []FlushWait) {
	var own []int                    // entries that flush their own files
	groups := map[*DirSyncer][]int{} // entries that may share a syncfs
	for i := range ws {
		w := &ws[i]
		done, err := w.Log.flushNeeded(w.UpTo)
		if done || err != nil {
			w.Err = err
			continue
		}
		if s := w.Log.syncer.Load(); s.usable() {
			groups[s] = append(groups[s], i)
		} else {
			own = append(own, i)
		}
	}
	for s, idx := range groups {
		if len(idx) < s.minLogs {
			own = append(own, idx...)
			continue
		}
		own = append(own, coalescedFlush(s, ws, idx)...)
	}
	forEachConcurrently(len(own), maxConcurrentFlushes, func(k int) {
		w := &ws[own[k]]
		w.Err = w.Log.WaitFlushed(w.UpTo)
	})
}

// flushNeeded reports whether offsets below upTo are already as durable as
// the policy asks (done), or the log's error.
func (l *Log) flushNeeded(upTo int64) (done bool, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if err := l.usable(); err != nil {
		return false, err
	}
	return l.cfg.FlushMessages > 1 || l.flushed >= min(upTo, l.leo), nil
}

// coalescedFlush flushes the logs of ws[idx] (all using s) with one shared
// syncfs and returns the entries it could not cover: logs whose flush has
// more to do than making appended data durable (a rolled segment's indexes
// or a recovery point to write), logs truncated meanwhile, or all of them
// if the syncfs failed. Those flush their own files.
func coalescedFlush(s *DirSyncer, ws []FlushWait, idx []int) (rest []int) {
	type snap struct {
		target      int64
		gen, epochs uint64
	}
	snaps := make([]snap, len(idx))
	var covered []int // positions in idx
	for k, i := range idx {
		target, gen, epochs, ok := ws[i].Log.syncSnapshot()
		if !ok {
			rest = append(rest, i)
			continue
		}
		snaps[k] = snap{target, gen, epochs}
		covered = append(covered, k)
	}
	if len(covered) == 0 {
		return rest
	}
	if err := s.sync(); err != nil {
		for _, k := range covered {
			rest = append(rest, idx[k])
		}
		return rest
	}
	for _, k := range covered {
		w := &ws[idx[k]]
		if ok, err := w.Log.syncedTo(snaps[k].target, snaps[k].gen, snaps[k].epochs); err != nil {
			w.Err = err
		} else if !ok {
			rest = append(rest, idx[k])
		}
	}
	return rest
}

// syncSnapshot returns the LEO and truncation count of a log whose flush is
// only to make its appended data durable: no sealed segment with unflushed
// data (its indexes are persisted and synced by flushLocked) and no
// recovery point to write, except a new log's first one. ok is false
// otherwise.
//
// A log of one segment needs no recovery point: recovery always rescans
// the active segment. A new log's first checkpoint (see Log.load) is
// written by flushLocked only for its side effect of syncing the
// directory, making the new segment file's entry durable; a syncfs commits
// the directory entries too, so the coalesced flush drops it (syncedTo)
// and the first roll writes the first checkpoint.
func (l *Log) syncSnapshot() (target int64, gen, epochs uint64, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.usable() != nil || l.needCkpt && l.leo > l.checkpointed && len(l.segs) > 1 {
		return 0, 0, 0, false
	}
	for _, s := range l.segs[:len(l.segs)-1] {
		if s.next > l.flushed {
			return 0, 0, 0, false
		}
	}
	return l.leo, l.truncations, l.epochWrites, true
}

// syncedTo records that every offset below target is durable (a syncfs
// that started after target was the LEO has finished), and the leader
// epoch checkpoint as of its epochs-th unsynced write (epochsync.go),
// unless the log was truncated since (gen changed: the bytes below target
// may be new ones, written after the sync started), when ok is false. The
// error is the log's if it is closed or failed.
func (l *Log) syncedTo(target int64, gen, epochs uint64) (ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return false, err
	}
	if l.truncations != gen {
		return false, nil
	}
	l.epochsSyncedUpTo(epochs)
	l.flushed = max(l.flushed, target)
	l.lastFlush = time.Now()
	if len(l.segs) == 1 {
		l.needCkpt = false // see syncSnapshot; a roll sets it again
	}
	return true, nil
}

// forEachConcurrently calls f(0..n-1) from at most limit goroutines and
// returns when every call has. n <= 1 runs on the caller's goroutine.
func forEachConcurrently(n, limit int, f func(i int)) {
	if n <= 1 {
		if n == 1 {
			f(0)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, limit) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// kernelAtLeast reports whether a kernel release string ("6.1.0-18-amd64")
// is at least major.minor; false if it cannot be parsed.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

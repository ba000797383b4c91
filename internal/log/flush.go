package log

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"strand/internal/metrics"
)

// backgroundTick is how often the background flusher checks flush.ms.
const backgroundTick = 100 * time.Millisecond

// WaitFlushed applies the flush policy to offsets below upTo (clamped to
// the LEO). With FlushMessages <= 1 it returns once every offset < upTo is
// fsynced; concurrent callers share fsyncs (group commit: one fsync covers
// every append written before it started). With FlushMessages > 1 it
// returns nil at once and the background flusher fsyncs by count and time.
func (l *Log) WaitFlushed(upTo int64) error {
	l.mu.RLock()
	if err := l.usable(); err != nil {
		l.mu.RUnlock()
		return err
	}
	policy := l.cfg.FlushMessages
	upTo = min(upTo, l.leo)
	done := l.flushed >= upTo
	l.mu.RUnlock()
	if policy > 1 || done {
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.RLock()
	done = l.flushed >= upTo
	l.mu.RUnlock()
	if done { // an fsync that started after our append covered it
		return nil
	}
	return l.flushLocked()
}

// Flush fsyncs everything appended so far.
func (l *Log) Flush() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	return l.flushLocked()
}

// flushLocked fsyncs every segment holding unflushed data, then advances
// the flushed offset to the LEO observed before the fsyncs, and rewrites the
// recovery point checkpoint if a segment was rolled since it was written.
// Caller holds flushMu (not mu): mu is held only to take the snapshot, so
// appends and reads proceed during the fsync.
func (l *Log) flushLocked() error {
	l.mu.Lock()
	if err := l.usable(); err != nil {
		l.mu.Unlock()
		return err
	}
	target := l.leo
	epochSync, epochGen := l.epochsUnsynced, l.epochWrites // epochsync.go
	// A checkpoint waits for data above the last one (a new log's first
	// flush with data writes its first checkpoint).
	needCkpt := l.needCkpt && target > l.checkpointed
	if needCkpt {
		l.needCkpt = false
	}
	var segs []*segment
	var persistErr error
	for _, s := range l.segs {
		if s.next > l.flushed || s == l.active() {
			segs = append(segs, s)
			if s != l.active() {
				s.seal()
				persistErr = errors.Join(persistErr, s.persistIndexes())
			}
		}
	}
	l.mu.Unlock()
	if errors.Is(persistErr, syscall.ENOSPC) {
		// Out of space writing the index files of sealed segments: nothing
		// is lost (the in-memory indexes are authoritative while the log is
		// open, Close writes them again, recovery rebuilds them), so this is
		// not the sticky failure an fsync error is.
		l.logger.Warn("index files not written: no space left; written again at close", "err", persistErr)
		persistErr = nil
	}
	err := persistErr
	defer metrics.FsyncSince(time.Now()) // fsync latency histogram
	for _, s := range segs {
		err = errors.Join(err, s.syncLog())
		if s != segs[len(segs)-1] {
			err = errors.Join(err, s.syncIndexes())
		}
	}
	if epochSync {
		err = errors.Join(err, syncEpochFile(l.dir))
	}
	l.fsyncs.Add(1)
	if err != nil {
		l.fail(err)
		return err
	}
	l.mu.Lock()
	if epochSync {
		l.epochsSyncedUpTo(epochGen)
	}
	l.flushed = max(l.flushed, target)
	l.lastFlush = time.Now()
	needCkpt = needCkpt && target > l.checkpointed
	// The sealed segments' index files are synced: close them, so a log
	// keeps index descriptors only for its active segment. Every other
	// index write holds flushMu (held here), and one that comes later
	// reopens the file and is synced by its own flush.
	var closeErr error
	for _, s := range segs[:len(segs)-1] {
		if !s.dirty {
			closeErr = errors.Join(closeErr, s.closeIndexes())
		}
	}
	l.mu.Unlock()
	if closeErr != nil {
		l.logger.Warn("closing synced index files", "err", closeErr)
	}
	if needCkpt {
		if err := writeCheckpoint(l.dir, recoveryPointFile, target); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				l.fail(err)
				return err
			}
			// Out of space: the data is fsynced and the previous checkpoint
			// is intact (checkpoints are replaced by rename); a recovery
			// point that lags only means more to check after a crash. The
			// next roll writes it again.
			l.logger.Warn("recovery point not written: no space left", "err", err)
			return nil
		}
		l.mu.Lock()
		l.checkpointed = target
		l.mu.Unlock()
	}
	return nil
}

// fail records a sticky I/O failure: after an fsync error the state of the
// page cache is unknown, so the log refuses further writes.
func (l *Log) fail(err error) {
	l.logger.Error("log I/O failure; refusing further writes", "err", err)
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
	}
	l.mu.Unlock()
}

// kickFlusher wakes the background flusher without blocking.
func (l *Log) kickFlusher() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// backgroundFlusher fsyncs rolled segments (then writes the recovery
// point), after FlushMessages unflushed messages when FlushMessages > 1, and
// when data has been unflushed for FlushMs.
//
// While nothing can become due by time (see flushPending) it parks: its
// ticker stops and it waits for a kick (a roll, flush.messages reached, or
// with flush.messages > 1 or a finite flush.ms any append to a parked log),
// so thousands of idle partitions cost no timer wake-ups. No wake-up is
// lost: it sets parked before checking once more for work (under mu), and
// an append publishes its data under mu before reading parked.
func (l *Log) backgroundFlusher() {
	defer close(l.done)
	t := time.NewTicker(backgroundTick)
	defer t.Stop()
	for {
		tick := t.C
		if !l.flushPending() {
			l.parked.Store(true)
			if l.flushPending() {
				l.parked.Store(false)
			} else {
				t.Stop()
				tick = nil
			}
		}
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-tick:
		}
		if l.parked.Swap(false) {
			t.Reset(backgroundTick)
		}
		if l.flushDue() {
			l.flushMu.Lock()
			if err := l.flushLocked(); err != nil && !errors.Is(err, ErrClosed) {
				l.logger.Error("background flush failed", "err", err)
			}
			l.flushMu.Unlock()
		}
	}
}

// flushPending reports whether the background flusher must keep ticking: a
// recovery point to write (data above the last one), or unflushed data
// that flush.messages > 1 or a finite flush.ms will make due. Unflushed
// data under flush.messages=1 and no flush.ms is fsynced by WaitFlushed
// (acks=0 data waits for the next one, a roll or Close), as before parking.
func (l *Log) flushPending() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.needCkpt && l.leo > l.checkpointed || l.leo > l.flushed && l.cfg.timedFlush()
}

// timedFlush reports whether the background flusher flushes data by count
// or age (flush.messages > 1 or a finite flush.ms).
func (c Config) timedFlush() bool {
	return c.FlushMessages > 1 || c.FlushMs < math.MaxInt64
}

// flushDue reports whether the background flusher has work: a recovery
// point to write, or unflushed data past flush.messages or flush.ms. A
// pending checkpoint waits for data above the last one: a new, empty log
// must not fsync every tick until its first record (1000 empty partitions
// made 10,000 idle fsyncs a second).
func (l *Log) flushDue() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cfg, unflushed := l.cfg, l.leo-l.flushed
	due := (l.needCkpt && l.leo > l.checkpointed) ||
		(cfg.FlushMessages > 1 && unflushed >= cfg.FlushMessages) ||
		(unflushed > 0 && time.Since(l.lastFlush).Milliseconds() >= cfg.FlushMs)
	return due && l.usable() == nil
}

// Close fsyncs all data and indexes, brings the recovery point and log
// start offset checkpoints up to date, writes the clean-shutdown marker,
// and closes the files. Calling it again returns nil.
func (l *Log) Close() error { return l.close(true, true) }

// CloseUnmarked is Close without the clean-shutdown marker, for a caller
// that records the clean shutdown of many logs at once (one file per log
// dir, see OpenOptions.Clean) once every CloseUnmarked has returned nil.
// The next Open without Clean recovers the log as after a crash.
func (l *Log) CloseUnmarked() error { return l.close(true, false) }

// close closes the log; durable does what Close promises (marker: with the
// clean-shutdown marker), without it the files are only closed (for a log
// about to be deleted: its data, indexes and checkpoints need not reach the
// disk, so deleting a topic of thousands of partitions costs no fsyncs per
// partition).
func (l *Log) close(durable, marker bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var err error
	if l.failed == nil && durable {
		err = l.syncForClose(marker)
	}
	for _, s := range l.segs {
		err = errors.Join(err, s.close())
	}
	if err != nil {
		return fmt.Errorf("close log %s: %w", l.dir, err)
	}
	return nil
}

// Delete closes the log (without fsyncs: it is being removed) and removes
// its directory.
func (l *Log) Delete() error {
	cerr := l.close(false, false)
	// A compaction in progress fails once the log is closed; wait for it to
	// remove its temporary files so that they do not race RemoveAll.
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("delete log %s: %w", l.dir, errors.Join(cerr, err))
	}
	return nil
}

// Retire closes the log and renames its directory to newDir (on the same
// file system), fsyncing the parent: the caller removes newDir later (in the
// background). A compaction in progress is waited for first. The log's
// files are not fsynced: it is being deleted (after a crash before the
// rename is durable the directory is still under its old name, and the
// partition it held is gone from the metadata: a stray, removed at start).
func (l *Log) Retire(newDir string) error {
	cerr := l.close(false, false)
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	if err := os.Rename(l.dir, newDir); err != nil {
		return fmt.Errorf("retire log %s: %w", l.dir, errors.Join(cerr, err))
	}
	return syncDir(filepath.Dir(l.dir))
}

package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"strand/internal/atomicfile"
	"strand/internal/record"
	"strand/internal/txn"
)

// Producer-state snapshots: "<offset, 20 digits>.snapshot" files in the
// partition directory hold the producer table as of that log offset (format:
// txn.EncodeSnapshot). One is written when the log has rolled a segment
// since the last one (checked every checkpoint interval) and at shutdown;
// older ones are removed. Opening a partition, or rebuilding its table after
// a truncation, loads the newest valid snapshot between the log start and
// end offsets and replays only the batch headers above it; without one it
// replays the whole log. Snapshots outside those offsets are removed
// whenever the log is truncated or opened, before anything is appended
// again, so a snapshot always describes the batches now below its offset.

const snapshotSuffix = ".snapshot"

// forcedSnapshotMinBytes: a forced (shutdown) snapshot is written only for
// a log of at least this many bytes; a smaller one is replayed at start
// from its newest snapshot or log start (a few hundred batch headers at
// most). A variable for tests.
var forcedSnapshotMinBytes int64 = 64 << 10

func snapshotName(off int64) string { return fmt.Sprintf("%020d%s", off, snapshotSuffix) }

// snapshotOffsets lists the offsets of the snapshot files in dir, newest first.
func snapshotOffsets(dir string) []int64 {
	entries, _ := os.ReadDir(dir)
	var offs []int64
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), snapshotSuffix)
		if !ok || len(stem) != 20 {
			continue
		}
		if v, err := strconv.ParseInt(stem, 10, 64); err == nil && v >= 0 {
			offs = append(offs, v)
		}
	}
	slices.Sort(offs)
	slices.Reverse(offs)
	return offs
}

// rebuildProducers rebuilds the producer table from the newest valid
// snapshot at or below the log end offset plus the batch headers above it
// (the whole log without a snapshot), removing snapshots above the log end
// offset and unreadable ones. Called with mu held or before the partition
// is shared.
func (p *Partition) rebuildProducers() error {
	dir, leo := p.lg().Dir(), p.lg().LogEndOffset()
	st, from := txn.NewState(), p.lg().LogStartOffset()
	p.snapOffset = -1
	for _, off := range snapshotOffsets(dir) {
		path := filepath.Join(dir, snapshotName(off))
		if off > leo || off < from {
			// Above the log end: it may describe batches since truncated.
			// Below the log start: the log it described is gone (a full
			// truncation, or retention past it); replaying from the log
			// start gives the table.
			os.Remove(path)
			continue
		}
		b, err := os.ReadFile(path)
		var s *txn.State
		var at int64
		if err == nil {
			s, at, err = txn.DecodeSnapshot(b)
		}
		if err == nil && at != off {
			err = fmt.Errorf("%w: file name says offset %d, content %d", txn.ErrBadSnapshot, off, at)
		}
		if err != nil {
			p.logger.Warn("ignoring unreadable producer state snapshot", "file", path, "err", err)
			os.Remove(path)
			continue
		}
		st, from, p.snapOffset = s, off, off
		break
	}
	if from < leo {
		if err := p.lg().ScanHeaders(from, func(h record.Header) error {
			st.Update(h)
			return nil
		}); err != nil {
			return fmt.Errorf("rebuild producer state from offset %d: %w", from, err)
		}
	}
	p.producers = st
	return p.rebuildTxnsLocked()
}

// maybeSnapshot writes a producer-state snapshot at the log end offset if
// the log rolled a segment since the last one or the log start (or, with
// force, if anything was appended since), and removes older snapshots. The file is written
// with mu held - appends wait for it, about one fsync per segment roll - so
// that no truncation can slip between taking the table and persisting it.
func (p *Partition) maybeSnapshot(force bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	// Nothing to gain: no batch above the newest snapshot (or the log
	// start), or, unless forced, no segment rolled since (replaying one
	// segment's headers is cheap).
	leo, floor := p.lg().LogEndOffset(), max(p.snapOffset, p.lg().LogStartOffset())
	if leo <= floor || (!force && p.lg().ActiveSegmentBase() <= floor) {
		return nil
	}
	if force && p.lg().Size() < forcedSnapshotMinBytes {
		// Replaying a log this small costs less at start than the
		// snapshot's fsyncs at shutdown (10,000 idle partitions: seconds).
		return nil
	}
	dir := p.lg().Dir()
	if err := atomicfile.Write(filepath.Join(dir, snapshotName(leo)), p.producers.EncodeSnapshot(leo)); err != nil {
		return fmt.Errorf("%s-%d: producer state snapshot: %w", p.Topic, p.Index, err)
	}
	if err := p.writeTxnSnapshotLocked(dir, leo); err != nil { // txn.go
		return err
	}
	p.snapOffset = leo
	var errs []error
	for _, off := range snapshotOffsets(dir) {
		if off < leo {
			if err := os.Remove(filepath.Join(dir, snapshotName(off))); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

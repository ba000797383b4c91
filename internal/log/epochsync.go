package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The leader epoch checkpoint of an append is written without fsync, as
// Kafka does since KAFKA-15046: a new epoch's first append (every
// partition's first append after it gets a leader) used to pay a file
// creation and two fsyncs under the log's lock in the produce path, which
// for a request to a thousand new partitions meant a thousand of them in a
// row. The file is made durable by the next flush of the log instead:
//
//   - before a flush reports offsets durable (WaitFlushed, WaitFlushedAll),
//     so an acknowledged batch's epoch is on disk with it: flushLocked
//     fsyncs the file and the directory; a coalesced syncfs covers both;
//   - before a recovery point passes it (flushLocked syncs it before
//     writing the checkpoint), so recovery, which rebuilds the entries of
//     every segment it rescans from their batch headers (loadEpochs), never
//     relies on an entry that did not reach the disk;
//   - before the clean-shutdown marker (close).
//
// A crash before that flush loses at most the entries of batches that were
// not durable either, and those are rebuilt by recovery.

// writeEpochsUnsynced replaces the checkpoint file with the cache's entries
// (write to a temporary file, rename) without fsync, and records that it
// needs one. Caller holds mu.
func (l *Log) writeEpochsUnsynced() error {
	path := filepath.Join(l.dir, epochCheckpointFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, encodeEpochCheckpoint(l.epochs.entries), 0o644); err != nil {
		return fmt.Errorf("leader epoch checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("leader epoch checkpoint: %w", err)
	}
	l.epochs.unsaved = false
	l.epochsUnsynced = true
	l.epochWrites++
	return nil
}

// syncEpochFile makes the checkpoint file and its directory entry durable.
func syncEpochFile(dir string) error {
	f, err := os.Open(filepath.Join(dir, epochCheckpointFile))
	if err != nil {
		return fmt.Errorf("fsync leader epoch checkpoint: %w", err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("fsync leader epoch checkpoint: %w", err)
	}
	return syncDir(dir)
}

// epochsSyncedUpTo records that the checkpoint file as of write count n is
// durable: it needs no fsync unless written again since. Caller holds mu.
func (l *Log) epochsSyncedUpTo(n uint64) {
	if l.epochWrites == n {
		l.epochsUnsynced = false
	}
}

// syncEpochsLocked fsyncs the checkpoint file if an append wrote it without
// (for a clean close). Caller holds mu.
func (l *Log) syncEpochsLocked() error {
	if !l.epochsUnsynced {
		return nil
	}
	if err := syncEpochFile(l.dir); err != nil {
		return err
	}
	l.epochsUnsynced = false
	return nil
}

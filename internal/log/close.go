package log

import (
	"errors"
	"os"
	"path/filepath"
)

// syncForClose makes the log durable for a clean shutdown: afterwards its
// files on disk are exactly what a clean load (no rescan) expects. With
// marker it then writes the clean-shutdown marker; without, the caller
// records the clean shutdown (OpenOptions.Clean). Caller holds flushMu and
// mu, with the background flusher stopped.
//
// It does only what is not yet on disk, so closing thousands of idle
// partitions costs few fsyncs each:
//   - a segment's log file is fsynced only if it holds unflushed data, or
//     a truncation or recovery cut it since it was opened (a cut is not
//     made durable by the fsync that covered the data below it);
//   - index files are written and fsynced only if they changed; an active
//     segment that has no index entry and no index files yet leaves them
//     absent (a clean load walks such a segment from its start);
//   - the recovery point is rewritten only if it lies below the active
//     segment (a crash then rescans only the active segment, as with the
//     recovery point at the LEO), the log start offset only if the file
//     does not give it (see startCkpt);
//   - the leader epoch checkpoint is fsynced if an append wrote it
//     without (epoch.go);
//   - the directory is fsynced only if files were created in it.
func (l *Log) syncForClose(marker bool) error {
	var err error
	created := false
	for i, s := range l.segs {
		active := i == len(l.segs)-1
		if !(active && s.unwritten && len(s.index.entries) == 0 && len(s.tindex.entries) == 0) {
			s.seal()
			created = created || s.unwritten
			err = errors.Join(err, s.persistIndexes())
		}
		if l.cutUnsynced || s.next > l.flushed || (active && l.leo > l.flushed) {
			err = errors.Join(err, s.syncLog())
		}
		err = errors.Join(err, s.syncIndexes())
	}
	if err := errors.Join(err, l.syncEpochsLocked()); err != nil {
		return err
	}
	l.cutUnsynced = false
	if l.checkpointed < l.active().base {
		if err := writeCheckpoint(l.dir, recoveryPointFile, l.leo); err != nil {
			return err
		}
		l.checkpointed, created = l.leo, false // writeCheckpoint synced the directory
	}
	if l.logStart != min(max(l.startCkpt, l.segs[0].base), l.leo) {
		if err := l.writeLogStart(l.logStart); err != nil {
			return err
		}
		created = false
	}
	if marker {
		return writeMarker(l.dir) // syncs the directory
	}
	if created {
		return syncDir(l.dir)
	}
	return nil
}

// writeLogStart atomically replaces the log start offset checkpoint and
// remembers what it holds. Caller holds mu.
func (l *Log) writeLogStart(v int64) error {
	if err := writeCheckpoint(l.dir, logStartFile, v); err != nil {
		return err
	}
	l.startCkpt = v
	return nil
}

// writeMarker creates the clean-shutdown marker durably.
func writeMarker(dir string) error {
	f, err := os.Create(filepath.Join(dir, cleanShutdownFile))
	if err != nil {
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	return syncDir(dir)
}

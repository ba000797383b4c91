package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"strand/internal/atomicfile"
)

// Clean shutdown records.
//
// At shutdown the manager closes every hosted log without a per-log
// clean-shutdown marker (log.Log.CloseUnmarked, which fsyncs only what is
// not yet durable) and then writes, in each online log dir, one file
// listing the partitions of that dir that closed without error, with their
// log end offsets, in Kafka's offset checkpoint format:
//
//	0                                   the format version
//	<n>                                 the number of entries
//	<topic> <partition> <log end offset>    n lines
//
// (Kafka writes one .kafka_cleanshutdown per log dir for the same reason;
// listing the partitions keeps a log that was not opened in that run, or
// failed to close, from being taken as clean.)
//
// At start (NewManager) each dir's file is read and then removed durably
// (unlink, fsync of the log dir) before any log is opened, so a crash after
// the start never finds it: a listed partition is opened as after a clean
// shutdown (log.OpenOptions.Clean, nothing rescanned) once in the run, any
// other one as after a crash. An unreadable file, or one that cannot be
// removed, is ignored (every log of the dir is then recovered). Per-log
// markers of older versions are still honoured by log.Open.
const cleanShutdownFile = ".strand_cleanshutdown"

// closeParallelism bounds the logs Close closes at once: their fsyncs
// share journal commits.
const closeParallelism = 64

// takeCleanRecords reads and removes every log dir's clean shutdown record,
// returning the log end offset of each cleanly closed partition by its
// directory.
func (m *Manager) takeCleanRecords() map[string]int64 {
	clean := map[string]int64{}
	for _, dir := range m.dirs {
		path := filepath.Join(dir, cleanShutdownFile)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		var leos map[TopicPartition]int64
		if err == nil {
			leos, err = decodeHWCheckpoint(b)
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		} else if serr := atomicfile.SyncDir(dir); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil {
			m.logger.Warn("ignoring the clean shutdown record; recovering every log of the dir", "dir", dir, "err", err)
			continue
		}
		for tp, leo := range leos {
			clean[filepath.Join(dir, tp.Topic+"-"+strconv.Itoa(int(tp.Partition)))] = leo
		}
	}
	return clean
}

// closeLogs closes every hosted partition's log, closeParallelism at a
// time, and records the clean shutdown of those that closed without error
// in their log dir's clean shutdown record. Called with m.mu held, after
// the fetchers stopped.
func (m *Manager) closeLogs() error {
	var errMu sync.Mutex // guards firstErr and closed
	var firstErr error
	closed := map[string]map[TopicPartition]int64{} // log dir -> cleanly closed partitions
	type job struct {
		tp TopicPartition
		p  *Partition
	}
	jobs := make([]job, 0, len(m.parts))
	for tp, p := range m.parts {
		jobs = append(jobs, job{tp, p})
	}
	forEach(len(jobs), closeParallelism, func(i int) {
		tp, lg := jobs[i].tp, jobs[i].p.lg()
		err := lg.CloseUnmarked()
		errMu.Lock()
		defer errMu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("close %s-%d: %w", tp.Topic, tp.Partition, err)
			}
			return
		}
		logDir := filepath.Dir(lg.Dir())
		if filepath.Base(lg.Dir()) != tp.Topic+"-"+strconv.Itoa(int(tp.Partition)) {
			return // not where the record would name it: recovered next time
		}
		if closed[logDir] == nil {
			closed[logDir] = map[TopicPartition]int64{}
		}
		closed[logDir][tp] = lg.LogEndOffset()
	})
	for _, dir := range m.dirs {
		if len(closed[dir]) == 0 || m.offline[dir] != nil {
			continue
		}
		if err := atomicfile.Write(filepath.Join(dir, cleanShutdownFile), encodeHWCheckpoint(closed[dir])); err != nil {
			m.logger.Error("cannot record the clean shutdown; the logs will be recovered at start", "dir", dir, "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

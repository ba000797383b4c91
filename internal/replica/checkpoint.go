package replica

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"strand/internal/atomicfile"
	"strand/internal/log"
	"strand/internal/metadata"
)

// hwCheckpointFile holds the high watermark of every hosted partition, in
// Kafka's text format (so Kafka's tools read it):
//
//	0                      the format version
//	<n>                    the number of entries
//	<topic> <partition> <high watermark>     n lines
//
// It is rewritten every replica.high.watermark.checkpoint.interval.ms and
// at shutdown. At start-up a partition's high watermark begins at its
// checkpointed value (capped at its log end offset) rather than at its log
// start offset, so a restarted leader serves the records committed before
// the restart at once. The value is safe to adopt: a high watermark only
// ever names records on every ISR member of its time.
const hwCheckpointFile = "replication-offset-checkpoint"

// errBadCheckpoint: a checkpoint file's bytes are not a valid checkpoint.
var errBadCheckpoint = errors.New("bad offset checkpoint file")

// encodeHWCheckpoint renders hws in the checkpoint format (entries sorted).
func encodeHWCheckpoint(hws map[TopicPartition]int64) []byte {
	tps := make([]TopicPartition, 0, len(hws))
	for tp := range hws {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition) - int(b.Partition)
	})
	var b bytes.Buffer
	fmt.Fprintf(&b, "0\n%d\n", len(tps))
	for _, tp := range tps {
		fmt.Fprintf(&b, "%s %d %d\n", tp.Topic, tp.Partition, hws[tp])
	}
	return b.Bytes()
}

// decodeHWCheckpoint parses a checkpoint file. Errors wrap errBadCheckpoint.
func decodeHWCheckpoint(data []byte) (map[TopicPartition]int64, error) {
	lines := strings.Split(string(data), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 2 || lines[0] != "0" {
		return nil, fmt.Errorf("%w: missing or unknown version", errBadCheckpoint)
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n < 0 || n != len(lines)-2 {
		return nil, fmt.Errorf("%w: count %q for %d entries", errBadCheckpoint, lines[1], len(lines)-2)
	}
	out := make(map[TopicPartition]int64, n)
	for i, line := range lines[2:] {
		f := strings.Split(line, " ")
		if len(f) != 3 || f[0] == "" {
			return nil, fmt.Errorf("%w: entry %d: %q", errBadCheckpoint, i, line)
		}
		p, err1 := strconv.ParseInt(f[1], 10, 32)
		off, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || p < 0 || off < 0 {
			return nil, fmt.Errorf("%w: entry %d: %q", errBadCheckpoint, i, line)
		}
		tp := TopicPartition{f[0], int32(p)}
		if _, dup := out[tp]; dup {
			return nil, fmt.Errorf("%w: entry %d: %s-%d twice", errBadCheckpoint, i, tp.Topic, tp.Partition)
		}
		out[tp] = off
	}
	return out, nil
}

// loadHWCheckpoint reads the data dir's high watermark checkpoint; a
// missing or unreadable one yields an empty map (every high watermark then
// starts at its log start offset, as without checkpoints).
func (m *Manager) loadHWCheckpoint() map[TopicPartition]int64 {
	b, err := os.ReadFile(filepath.Join(m.dir, hwCheckpointFile))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.logger.Warn("cannot read the high watermark checkpoint", "err", err)
		}
		return map[TopicPartition]int64{}
	}
	hws, err := decodeHWCheckpoint(b)
	if err != nil {
		m.logger.Warn("ignoring the high watermark checkpoint", "err", err)
		return map[TopicPartition]int64{}
	}
	return hws
}

// writeCheckpoints writes the high watermark checkpoint of every hosted
// partition, and a producer-state snapshot of those whose log rolled a
// segment since their last snapshot (all of them with all).
func (m *Manager) writeCheckpoints(all bool) error {
	m.mu.RLock()
	parts := make(map[TopicPartition]*Partition, len(m.parts))
	for tp, p := range m.parts {
		parts[tp] = p
	}
	m.mu.RUnlock()
	hws := make(map[TopicPartition]int64, len(parts))
	list := make([]*Partition, 0, len(parts))
	for tp, p := range parts {
		hws[tp] = p.HighWatermark()
		list = append(list, p)
	}
	// Snapshots are written closeParallelism at a time (at shutdown every
	// partition with appends writes one; their fsyncs share journal
	// commits).
	var errMu sync.Mutex // guards errs
	var errs []error
	forEach(len(list), closeParallelism, func(i int) {
		if err := list[i].maybeSnapshot(all); err != nil {
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
		}
	})
	m.ckptMu.Lock()
	defer m.ckptMu.Unlock()
	if maps.Equal(hws, m.lastHWs) {
		return errors.Join(errs...) // unchanged since the last write
	}
	if err := atomicfile.Write(filepath.Join(m.dir, hwCheckpointFile), encodeHWCheckpoint(hws)); err != nil {
		errs = append(errs, err)
	} else {
		m.lastHWs = hws
	}
	return errors.Join(errs...)
}

// runCheckpoints writes the checkpoints every interval until the manager
// closes.
func (m *Manager) runCheckpoints(interval time.Duration) {
	defer m.fetchWG.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.fetchCtx.Done():
			return
		case <-t.C:
			if err := m.writeCheckpoints(false); err != nil && m.fetchCtx.Err() == nil {
				m.logger.Error("writing checkpoints", "err", err)
			}
		}
	}
}

// openJob is one partition Apply opens.
type openJob struct {
	tp         TopicPartition
	dir        string // the partition's directory (placeLocked)
	id         metadata.TopicID
	pm         metadata.Partition
	lcfg       log.Config
	appendTime bool
	minISR     int

	p   *Partition // the result
	err error
}

// newPartitionWorkers bounds the new partitions openAll creates at once.
const newPartitionWorkers = 16

// openAll opens the jobs' partitions (claiming their directories), up to
// num.recovery.threads.per.data.dir at a time, as Kafka loads logs: a
// broker restarting with many partitions does not open them one by one;
// new ones newPartitionWorkers at a time.
// The claims of new directories are then synced together (syncClaims)
// before any partition is handed out; a job whose sync fails gets its log
// closed and the error.
func (m *Manager) openAll(jobs []openJob) {
	// New partitions (no directory yet) have nothing to recover: their
	// cost is creating a directory and two files, which waits on the
	// filesystem journal more than on a CPU, so more of them go at once.
	var existing, fresh []int
	for i := range jobs {
		if _, err := os.Lstat(jobs[i].dir); os.IsNotExist(err) {
			fresh = append(fresh, i)
		} else {
			existing = append(existing, i)
		}
	}
	// A partition the clean shutdown records list (shutdown.go) opens as
	// after a clean shutdown, once in a run; with nothing to recover it goes
	// with the new ones.
	unsynced := make([]bool, len(jobs))
	clean := make([]bool, len(jobs))
	var recover []int
	for _, i := range existing {
		if _, ok := m.startClean[jobs[i].dir]; ok {
			clean[i] = true
			delete(m.startClean, jobs[i].dir)
			fresh = append(fresh, i)
		} else {
			recover = append(recover, i)
		}
	}
	open := func(i int) {
		j := &jobs[i]
		if unsynced[i], j.err = m.claimDir(j.dir, j.id); j.err != nil {
			return
		}
		// A directory whose claim is unsynced is synced below before
		// the partition is handed out (DirSynced).
		j.p, j.err = openPartition(j.dir, j.tp.Topic, j.tp.Partition, m.nodeID, j.lcfg, j.appendTime,
			m.logger.With("topic", j.tp.Topic, "partition", j.tp.Partition),
			log.OpenOptions{Clean: clean[i], DirSynced: unsynced[i]})
		if j.err == nil {
			m.attachSyncer(j.p.lg(), j.dir)
		}
	}
	forEach(len(recover), int(m.broker.Int("num.recovery.threads.per.data.dir")), func(k int) { open(recover[k]) })
	forEach(len(fresh), newPartitionWorkers, func(k int) { open(fresh[k]) })
	var idx []int
	var dirs []string
	for i := range jobs {
		if unsynced[i] && jobs[i].err == nil {
			idx, dirs = append(idx, i), append(dirs, jobs[i].dir)
		}
	}
	for k, err := range syncClaims(dirs) {
		if j := &jobs[idx[k]]; err != nil {
			j.err = err
			j.p.lg().Close()
			j.p = nil
		}
	}
}

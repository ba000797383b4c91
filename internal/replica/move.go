package replica

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"strand/internal/atomicfile"
	"strand/internal/log"
	"strand/internal/record"
)

// Moving a replica between log dirs (AlterReplicaLogDirs, KIP-113).
//
// As in Kafka, the move copies the partition into a "future" log while the
// partition keeps serving: <dir>/<topic>-<n>.future (a name the start-up scan
// removes and placement ignores, so a crash mid-copy loses nothing but the
// copy). The copy runs in the background, batch by batch, from the current
// log's start (raised to the source's log start at the end). When it has
// caught up, appends and truncations are stopped (p.mu), the tail is
// copied, the producer table is snapshotted into the copy, the copy is
// renamed to <topic>-<n>, the source directory is retired (renamed for
// deletion) and the partition switches to the copy. A crash between the two
// renames leaves two identical complete copies (no append happened in
// between); the start-up scan keeps one. A truncation or a drop of the
// partition during the copy abandons the move.

// Errors of MoveReplica.
var (
	// ErrLogDirNotFound: the target is not one of this broker's online log dirs.
	ErrLogDirNotFound = errors.New("log dir not found")
	// ErrReplicaNotAvailable: this broker does not host the partition.
	ErrReplicaNotAvailable = errors.New("replica not hosted on this broker")
	// ErrMoveInProgress: the partition is already moving to another dir.
	ErrMoveInProgress = errors.New("the replica is already moving to another log dir")
)

// moveState is a move in progress.
type moveState struct {
	to  string                  // the target log dir
	fut atomic.Pointer[log.Log] // the copy, once opened
}

// Move is a move in progress as DescribeLogDirs reports it (a future
// replica): its target dir, the copy's size and how far it is behind.
type Move struct {
	Dir       string
	Size      int64
	OffsetLag int64
}

// futureSuffix ends the directory name of a copy in progress.
const futureSuffix = ".future"

// MoveReplica starts moving partition (topic, partition) to logDir, one of
// the manager's online log dirs, and returns; the move runs in the
// background (see above). Moving to the dir the partition is in, or to
// which it is already moving, does nothing.
func (m *Manager) MoveReplica(topic string, partition int32, logDir string) error {
	logDir = filepath.Clean(logDir)
	tp := TopicPartition{topic, partition}
	m.mu.Lock()
	defer m.mu.Unlock()
	known := false
	for _, d := range m.dirs {
		known = known || d == logDir
	}
	if !known || m.offline[logDir] != nil {
		return fmt.Errorf("%w: %s", ErrLogDirNotFound, logDir)
	}
	p, ok := m.parts[tp]
	if !ok || m.closed {
		return fmt.Errorf("%w: %s-%d", ErrReplicaNotAvailable, topic, partition)
	}
	if mv, moving := m.moving[tp]; moving {
		if mv.to == logDir {
			return nil
		}
		return fmt.Errorf("%w: %s-%d to %s", ErrMoveInProgress, topic, partition, mv.to)
	}
	if filepath.Dir(p.lg().Dir()) == logDir {
		return nil
	}
	mv := &moveState{to: logDir}
	m.moving[tp] = mv
	m.fetchWG.Add(1)
	go func() {
		defer m.fetchWG.Done()
		err := m.move(m.fetchCtx, tp, p, mv)
		m.mu.Lock()
		delete(m.moving, tp)
		if err == nil {
			m.placement[tp] = logDir
		}
		m.mu.Unlock()
		if err != nil {
			m.logger.Error("moving a replica between log dirs failed; it stays where it was", "topic", topic, "partition", partition, "to", logDir, "err", err)
			return
		}
		m.logger.Info("moved a replica between log dirs", "topic", topic, "partition", partition, "to", logDir)
	}()
	return nil
}

// Moving returns the partitions being moved: target dir, the copy's size
// and its lag behind the partition's log end offset.
func (m *Manager) Moving() map[TopicPartition]Move {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[TopicPartition]Move, len(m.moving))
	for tp, mv := range m.moving {
		info := Move{Dir: mv.to}
		if fut, p := mv.fut.Load(), m.parts[tp]; fut != nil && p != nil {
			info.Size, info.OffsetLag = fut.Size(), max(p.LogEndOffset()-fut.LogEndOffset(), 0)
		}
		out[tp] = info
	}
	return out
}

// move copies p into a future log under logDir and switches p to it.
func (m *Manager) move(ctx context.Context, tp TopicPartition, p *Partition, mv *moveState) (err error) {
	logDir := mv.to
	src := p.lg()
	name := filepath.Base(src.Dir())
	future, final := filepath.Join(logDir, name+futureSuffix), filepath.Join(logDir, name)
	if err := os.RemoveAll(future); err != nil {
		return err
	}
	if _, err := os.Stat(final); err == nil {
		return fmt.Errorf("%s already exists", final)
	}
	p.mu.Lock()
	truncations := p.truncations
	p.mu.Unlock()
	fut, err := log.Open(future, src.Config(), m.logger.With("topic", tp.Topic, "partition", tp.Partition, "future", true))
	if err != nil {
		return err
	}
	mv.fut.Store(fut)
	defer func() {
		if err != nil {
			fut.Close()
			os.RemoveAll(future)
		}
	}()
	start := src.LogStartOffset()
	base := start
	errStop := errors.New("stop")
	if err := src.ScanHeaders(start, func(h record.Header) error { base = h.BaseOffset; return errStop }); err != nil && !errors.Is(err, errStop) {
		return err
	}
	if err := fut.TruncateFullyAndStartAt(base); err != nil {
		return err
	}
	copyTail := func(stopAt int64) error {
		for fut.LogEndOffset() < src.LogEndOffset()-stopAt {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			leo := fut.LogEndOffset()
			data, err := src.Read(leo, 1<<20, math.MaxInt64, true)
			if err != nil {
				return err
			}
			data, err = trimBatches(data, leo)
			if err != nil {
				return err
			}
			if len(data) == 0 {
				return fmt.Errorf("no batch to copy at %d (source LEO %d)", leo, src.LogEndOffset())
			}
			if _, err := fut.AppendAsFollower(data); err != nil {
				return err
			}
		}
		return nil
	}
	if err := copyTail(64 << 10); err != nil { // most of it, while appends go on
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("the partition was dropped during the move")
	case p.truncations != truncations || p.lg() != src:
		return errors.New("the partition's log was truncated during the move")
	}
	if err := copyTail(0); err != nil {
		return err
	}
	if s := src.LogStartOffset(); s > fut.LogStartOffset() {
		if err := fut.DeleteRecordsBefore(s); err != nil {
			return err
		}
	}
	if e := src.LatestEpoch(); e > fut.LatestEpoch() {
		if err := fut.AssignEpoch(e); err != nil {
			return err
		}
	}
	if err := src.Flush(); err != nil {
		return err
	}
	id, err := os.ReadFile(filepath.Join(src.Dir(), idFile))
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(future, idFile), id); err != nil {
		return err
	}
	leo := fut.LogEndOffset()
	if leo > fut.LogStartOffset() {
		if err := atomicfile.Write(filepath.Join(future, snapshotName(leo)), p.producers.EncodeSnapshot(leo)); err != nil {
			return err
		}
		if err := p.writeTxnSnapshotLocked(future, leo); err != nil { // txn.go
			return err
		}
	}
	if err := fut.Close(); err != nil {
		return err
	}
	if err := os.Rename(future, final); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(logDir); err != nil {
		return err
	}
	// From here the copy is the partition's log.
	old, err := deleteName(src.Dir())
	if err == nil {
		err = src.Retire(old)
	}
	if err != nil {
		return fmt.Errorf("retire the source after copying (the copy in %s is complete): %w", final, err)
	}
	m.removeInBackground(old)
	nl, err := log.Open(final, src.Config(), p.logger)
	if err != nil {
		p.closed = true // no log to serve from; the next restart opens the copy
		return fmt.Errorf("reopen the copy %s: %w", final, err)
	}
	m.attachSyncer(nl, final)
	p.logp.Store(nl)
	if leo > nl.LogStartOffset() {
		p.snapOffset = leo
	}
	return nil
}

// removeFutureDirs removes copies left by moves a crash interrupted (see
// above) under dir.
func (m *Manager) removeFutureDirs(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasSuffix(e.Name(), futureSuffix) {
			if _, err := strconv.Atoi(strings.TrimSuffix(e.Name()[strings.LastIndexByte(e.Name(), '-')+1:], futureSuffix)); err != nil {
				continue
			}
			m.logger.Warn("removing an unfinished copy of a replica move", "dir", filepath.Join(dir, e.Name()))
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				m.logger.Error("removing an unfinished copy", "dir", e.Name(), "err", err)
			}
		}
	}
}

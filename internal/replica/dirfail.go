package replica

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"strand/internal/metadata"
	"strand/internal/record"
)

// A failed log directory (KIP-112), with several log.dirs.
//
// An I/O error (one from the operating system: a failed create, write,
// fsync or read, not corruption, validation or a full disk) in a partition
// whose log lives in one of several log dirs takes that whole directory
// offline: every partition in it is closed (not deleted) and no longer
// hosted, the fetchers drop them, and the broker reports them to the
// controller (OfflineReporter), which moves them out of the ISR and their
// leadership to other replicas. The broker keeps serving the partitions of
// its other directories, never reopens a partition of an offline directory
// and places no new partition there until it restarts. A full disk
// (ENOSPC, EDQUOT) is not a failure: writes are refused until space is
// freed, as with one directory. With a single log dir nothing changes: an
// I/O error fails the operations that hit it.

// OfflineReporter is implemented by a metadata store that takes a broker's
// report of offline replicas (controller.Node).
type OfflineReporter interface {
	OfflineReplicas(ctx context.Context, parts []metadata.PartitionRef) error
}

// isIOError reports whether err comes from the operating system (Kafka's
// IOException), excluding corruption found in the data and a full disk.
func isIOError(err error) bool {
	if err == nil || errors.Is(err, record.ErrCorrupt) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return false
	}
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &se) || errors.As(err, &errno)
}

// ioCheck hands err to the manager's log dir failure handling when it is
// an I/O error. It never blocks (p.mu may be held).
func (p *Partition) ioCheck(err error) {
	if p.dirFailed != nil && isIOError(err) {
		go p.dirFailed(p, err)
	}
}

// dirFailed takes the log dir of p offline after the I/O error err (see
// above): a no-op with a single log dir, after Close, or when that dir is
// already offline.
func (m *Manager) dirFailed(p *Partition, err error) {
	logDir := filepath.Dir(p.lg().Dir())
	m.mu.Lock()
	if m.closed || len(m.dirs) < 2 || m.offline[logDir] != nil {
		m.mu.Unlock()
		return
	}
	m.offline[logDir] = err
	var parts []metadata.PartitionRef
	for tp, q := range m.parts {
		if filepath.Dir(q.lg().Dir()) != logDir {
			continue
		}
		parts = append(parts, metadata.PartitionRef{Topic: tp.Topic, Partition: tp.Partition})
		delete(m.parts, tp)
		q.mu.Lock()
		q.closed = true // no appends, truncations or fetcher writes from now on
		q.mu.Unlock()
		q.notify()
		if cerr := q.lg().Close(); cerr != nil {
			m.logger.Debug("closing a partition of the failed log dir", "topic", tp.Topic, "partition", tp.Partition, "err", cerr)
		}
	}
	if m.store != nil {
		m.syncFetchers(m.store.Image())
	}
	m.mu.Unlock()
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].Topic != parts[j].Topic {
			return parts[i].Topic < parts[j].Topic
		}
		return parts[i].Partition < parts[j].Partition
	})
	m.logger.Error("log dir failed; its partitions are offline on this broker until it restarts", "dir", logDir, "partitions", len(parts), "err", err)
	r, ok := m.store.(OfflineReporter)
	if !ok || len(parts) == 0 {
		return
	}
	m.fetchWG.Add(1)
	go func() {
		defer m.fetchWG.Done()
		for m.fetchCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(m.fetchCtx, 15*time.Second)
			rerr := r.OfflineReplicas(ctx, parts)
			cancel()
			if rerr == nil {
				m.logger.Info("reported offline replicas to the controller", "dir", logDir, "partitions", len(parts))
				return
			}
			m.logger.Warn("reporting offline replicas; retrying", "dir", logDir, "err", rerr)
			select {
			case <-m.fetchCtx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
}

// OfflineDirs returns the log dirs taken offline and the error that failed
// each.
func (m *Manager) OfflineDirs() map[string]error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]error, len(m.offline))
	for d, err := range m.offline {
		out[d] = err
	}
	return out
}

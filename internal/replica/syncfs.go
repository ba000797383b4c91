package replica

import (
	"errors"
	"path/filepath"

	"strand/internal/log"
)

// openSyncers opens a log.DirSyncer for every log dir when
// log.flush.syncfs.min.partitions > 0: the partitions of one dir that wait
// for an fsync together (WaitDurableAll) share one syncfs(2). A dir whose
// syncer cannot be opened (missing, or syncfs unsupported) gets none: its
// partitions fsync their own files.
func (m *Manager) openSyncers() map[string]*log.DirSyncer {
	minParts := int(m.broker.Int("log.flush.syncfs.min.partitions"))
	syncers := map[string]*log.DirSyncer{}
	for _, dir := range m.dirs {
		s, err := log.NewDirSyncer(dir, minParts, m.logger)
		if err != nil {
			m.logger.Warn("log dir without coalesced fsyncs", "dir", dir, "err", err)
		}
		if s != nil {
			syncers[dir] = s
		}
	}
	return syncers
}

// attachSyncer lets l, a partition log in partDir, share syncs with the
// other partitions of its log dir (the parent of partDir).
func (m *Manager) attachSyncer(l *log.Log, partDir string) {
	if s := m.syncers[filepath.Dir(partDir)]; s != nil {
		l.SetSyncer(s)
	}
}

// closeSyncers releases the syncers; called after every log is closed.
func (m *Manager) closeSyncers() error {
	var err error
	for _, s := range m.syncers {
		err = errors.Join(err, s.Close())
	}
	return err
}

// WaitDurableAll is WaitDurable for many partitions at once: errs[i] is
// parts[i]'s for the offsets below ends[i]. The partitions of one log dir
// share one syncfs(2) when there are at least
// log.flush.syncfs.min.partitions of them (see log.WaitFlushedAll); the
// others fsync their own files, concurrently.
func WaitDurableAll(parts []*Partition, ends []int64) []error {
	ws := make([]log.FlushWait, len(parts))
	for i, p := range parts {
		ws[i] = log.FlushWait{Log: p.lg(), UpTo: ends[i]}
	}
	log.WaitFlushedAll(ws)
	errs := make([]error, len(parts))
	for i, p := range parts {
		errs[i] = ws[i].Err
		p.ioCheck(errs[i])
	}
	return errs
}

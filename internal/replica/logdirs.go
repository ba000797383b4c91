package replica

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Log directories (JBOD, log.dirs with several directories).
//
// A partition's directory lives directly under one of the manager's log
// dirs. One found there at start-up (found) stays there; a partition with
// no directory yet is placed, when Apply first opens it, in the log dir
// holding the fewest partitions placed so far (ties: the earlier dir in
// log.dirs), as Kafka does. The high watermark checkpoint and the node
// state live in the first dir.

// scanLogDirs returns the log dir holding each partition directory (a
// directory named <topic>-<partition> with a partition.metadata file, not
// being deleted) under dirs. A partition found in two dirs keeps the first
// and is reported; the other copy is left untouched.
func (m *Manager) scanLogDirs() map[TopicPartition]string {
	found := map[TopicPartition]string{}
	for _, dir := range m.dirs {
		m.removeFutureDirs(dir)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // created when a partition is placed there
		}
		for _, e := range entries {
			tp, ok := partitionDirName(e)
			if !ok {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, e.Name(), idFile)); err != nil {
				continue
			}
			if first, dup := found[tp]; dup {
				m.logger.Error("partition directory found in two log dirs; using the first, leaving the other untouched",
					"topic", tp.Topic, "partition", tp.Partition, "used", first, "ignored", dir)
				continue
			}
			found[tp] = dir
		}
	}
	return found
}

// partitionDirName parses a directory entry named <topic>-<partition>
// (not one being deleted).
func partitionDirName(e os.DirEntry) (TopicPartition, bool) {
	if !e.IsDir() || strings.HasSuffix(e.Name(), deleteSuffix) {
		return TopicPartition{}, false
	}
	i := strings.LastIndexByte(e.Name(), '-')
	if i <= 0 {
		return TopicPartition{}, false
	}
	n, err := strconv.Atoi(e.Name()[i+1:])
	if err != nil || n < 0 {
		return TopicPartition{}, false
	}
	return TopicPartition{e.Name()[:i], int32(n)}, true
}

// placeLocked returns the directory of partition tp: where it was found at
// start-up or placed before, else under the online log dir with the fewest
// partitions placed (recorded). ok is false when that dir is offline, or
// every dir is (dirfail.go). Called with m.mu held for writing.
func (m *Manager) placeLocked(tp TopicPartition) (dir string, ok bool) {
	name := tp.Topic + "-" + strconv.Itoa(int(tp.Partition))
	d, recorded := m.placement[tp]
	placed := recorded
	if !placed {
		d, placed = m.found[tp]
	}
	if m.placeCounts == nil && !recorded {
		// Counted once per Apply, then kept up to date below: a topic of
		// 10,000 new partitions must not count them 10,000 times.
		m.placeCounts = map[string]int{}
		for _, pd := range m.placement {
			m.placeCounts[pd]++
		}
	}
	if !placed {
		counts := m.placeCounts
		d = ""
		for _, c := range m.dirs {
			if m.offline[c] == nil && (d == "" || counts[c] < counts[d]) {
				d = c
			}
		}
		if d == "" {
			return "", false
		}
	}
	if m.offline[d] != nil {
		return "", false
	}
	if !recorded {
		m.placement[tp] = d
		m.placeCounts[d]++
	}
	return filepath.Join(d, name), true
}

// LogDirs returns the manager's log dirs, in log.dirs order.
func (m *Manager) LogDirs() []string { return append([]string(nil), m.dirs...) }

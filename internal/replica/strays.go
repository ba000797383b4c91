package replica

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"strand/internal/metadata"
)

// deleteSuffix ends the name of a partition directory being deleted
// (Kafka's "<topic>-<partition>.<uuid>-delete"): the rename is the commit
// point of a deletion, the removal of the files runs in the background and
// is finished at the next start if the process dies first.
const deleteSuffix = "-delete"

// renameForDelete renames a partition directory to a "-delete" name and
// removes it in the background. Deleting a log is always decided by the
// metadata (topic deleted or re-created, replica moved away), never by a
// failure to open it (DESIGN.md invariant 7).
func (m *Manager) renameForDelete(dir string) error {
	to, err := deleteName(dir)
	if err != nil {
		return err
	}
	if err := os.Rename(dir, to); err != nil {
		return fmt.Errorf("rename %s for deletion: %w", dir, err)
	}
	if d, err := os.Open(filepath.Dir(dir)); err == nil {
		d.Sync()
		d.Close()
	}
	m.removeInBackground(to)
	return nil
}

// deleteName returns "<dir>.<random hex>-delete".
func deleteName(dir string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("delete name for %s: %w", dir, err)
	}
	return dir + "." + hex.EncodeToString(b[:]) + deleteSuffix, nil
}

// removeInBackground removes a directory already renamed for deletion.
func (m *Manager) removeInBackground(dir string) {
	m.deleteWG.Add(1)
	go func() {
		defer m.deleteWG.Done()
		if err := os.RemoveAll(dir); err != nil {
			m.logger.Error("removing deleted partition directory", "dir", dir, "err", err)
			return
		}
		m.logger.Info("removed deleted partition directory", "dir", filepath.Base(dir))
	}()
}

// RemoveStrays deals with the partition directories under the data dir that
// no hosted partition owns, after the first Apply: a directory whose topic
// the metadata no longer has (by name, or by topic id: deleted and
// re-created while this node was down), or whose partition the metadata no
// longer assigns to this node, is renamed to a "-delete" name and removed
// in the background; directories left with that name by an earlier run are
// removed too. A directory of a topic that still exists and still lists
// this node - one that failed to open - is left untouched and reported:
// data is never deleted because something failed to open.
func (m *Manager) RemoveStrays(img *metadata.Image) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(m.dir, e.Name())
		if strings.HasSuffix(e.Name(), deleteSuffix) {
			m.removeInBackground(dir)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, idFile))
		if err != nil {
			continue // not a partition directory of ours
		}
		i := strings.LastIndexByte(e.Name(), '-')
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(e.Name()[i+1:])
		if err != nil {
			continue
		}
		tp := TopicPartition{e.Name()[:i], int32(n)}
		if _, ok := m.parts[tp]; ok {
			continue
		}
		if reason, gone := strayReason(img, tp, string(b), m.nodeID); gone {
			m.logger.Warn("deleting partition directory: "+reason, "dir", e.Name())
			if err := m.renameForDelete(dir); err != nil {
				m.logger.Error("deleting partition directory", "dir", e.Name(), "err", err)
			}
			continue
		}
		m.logger.Error("partition directory of a hosted replica is not open (it failed to open); leaving it on disk untouched",
			"dir", dir, "topic", tp.Topic, "partition", tp.Partition)
	}
}

// idFileContent is what partition.metadata holds for topic id.
func idFileContent(id metadata.TopicID) string { return "topic_id: " + id.String() + "\n" }

// parseIDFile returns the topic id a partition.metadata file names; ok is
// false if the content is not a well-formed id (a damaged file, which must
// not lead to deleting the directory).
func parseIDFile(b []byte) (metadata.TopicID, bool) {
	var id metadata.TopicID
	s, ok1 := strings.CutPrefix(string(b), "topic_id: ")
	s, ok2 := strings.CutSuffix(s, "\n")
	if !ok1 || !ok2 {
		return id, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) != len(id) {
		return id, false
	}
	copy(id[:], raw)
	return id, id != metadata.TopicID{} && idFileContent(id) == string(b)
}

// strayReason decides from the metadata whether a partition directory whose
// partition.metadata holds idContent belongs to no replica of this node. A
// topic that exists with an unreadable partition.metadata is not a stray:
// the directory is left alone.
func strayReason(img *metadata.Image, tp TopicPartition, idContent string, self int32) (string, bool) {
	t, ok := img.Topics[tp.Topic]
	if !ok {
		return "its topic no longer exists", true
	}
	id, valid := parseIDFile([]byte(idContent))
	switch {
	case !valid:
		return "", false
	case id != t.ID:
		return "its topic was deleted and re-created", true
	case int(tp.Partition) >= len(t.Partitions) || tp.Partition < 0:
		return "its partition no longer exists", true
	case !contains(t.Partitions[tp.Partition].Replicas, self):
		return "this node is no longer a replica", true
	}
	return "", false
}

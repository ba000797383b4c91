package replica

import (
	"maps"
	"slices"

	"strand/internal/config"
	"strand/internal/log"
	"strand/internal/metadata"
)

// What Apply last gave each hosted partition, so that an image in which one
// partition changed (an ISR change, a leader move) updates that partition
// only: Apply still walks the image (the metadata store copies it whole on
// every change), but compares each hosted partition's metadata with what
// it applied before instead of reconfiguring the partition, re-applying
// its metadata and re-syncing every fetcher. A partition is skipped only if
// its topic's configs and the broker config are those it was last given
// and its metadata is equal; the fetchers are synced only if a partition
// was opened or dropped, a leader changed, or a broker's replication
// address did.

// appliedTopic is a topic's configuration as Apply last derived it.
type appliedTopic struct {
	configs    map[string]string // the topic's configs (a copy)
	broker     *config.Broker    // the broker config it was derived with
	lcfg       log.Config
	appendTime bool
	minISR     int
}

// appliedPartition is the metadata Apply last gave partition p.
type appliedPartition struct {
	p      *Partition
	pm     metadata.Partition // a deep copy
	minISR int
}

// topicConfig returns the configuration of topic t, derived again only if
// its configs or the broker config changed since the last Apply, and
// whether it is unchanged. Called with m.mu held.
func (m *Manager) topicConfig(t *metadata.Topic) (appliedTopic, bool) {
	if at, ok := m.appliedTopics[t.Name]; ok && at.broker == m.broker && maps.Equal(at.configs, t.Configs) {
		return at, true
	}
	tcfg := m.broker.TopicConfig(t.Configs)
	at := appliedTopic{configs: maps.Clone(t.Configs), broker: m.broker, lcfg: LogConfig(tcfg),
		appendTime: tcfg.String("message.timestamp.type") == "LogAppendTime", minISR: int(tcfg.Int("min.insync.replicas"))}
	m.appliedTopics[t.Name] = at
	return at, false
}

// unchanged reports whether p was last given pm (and minISR) by Apply.
// Called with m.mu held.
func (m *Manager) unchanged(tp TopicPartition, p *Partition, pm metadata.Partition, minISR int) bool {
	a, ok := m.applied[tp]
	return ok && a.p == p && a.minISR == minISR && samePartition(a.pm, pm)
}

// recordApplied remembers that p was given pm, if p took it (its leader and
// leader epoch are pm's): applyMetadata ignores metadata older than what
// the partition has, and a closed partition takes none, so such an entry
// is not recorded and the next Apply gives it again. Called with m.mu held.
func (m *Manager) recordApplied(tp TopicPartition, p *Partition, pm metadata.Partition, minISR int) {
	if p.Leader() != pm.Leader || p.LeaderEpoch() != pm.LeaderEpoch {
		delete(m.applied, tp)
		return
	}
	pm.Replicas, pm.ISR = slices.Clone(pm.Replicas), slices.Clone(pm.ISR)
	pm.AddingReplicas, pm.RemovingReplicas = slices.Clone(pm.AddingReplicas), slices.Clone(pm.RemovingReplicas)
	m.applied[tp] = appliedPartition{p: p, pm: pm, minISR: minISR}
}

// samePartition reports whether two partition metadata are equal (every
// field of metadata.Partition; TestSamePartitionCoversEveryField fails when
// a field is added).
func samePartition(a, b metadata.Partition) bool {
	return a.Index == b.Index && a.Leader == b.Leader && a.LeaderEpoch == b.LeaderEpoch && a.PartitionEpoch == b.PartitionEpoch &&
		slices.Equal(a.Replicas, b.Replicas) && slices.Equal(a.ISR, b.ISR) &&
		slices.Equal(a.AddingReplicas, b.AddingReplicas) && slices.Equal(a.RemovingReplicas, b.RemovingReplicas)
}

// replicationAddrs returns each registered broker's replication address
// (what the fetchers dial).
func replicationAddrs(img *metadata.Image) map[int32]string {
	out := make(map[int32]string, len(img.Brokers))
	for _, b := range img.Brokers {
		if b.Host != "" {
			out[b.ID] = b.ReplicationAddr()
		}
	}
	return out
}

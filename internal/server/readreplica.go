package server

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"

	"strand/internal/config"
	"strand/internal/replica"
)

// Reading from followers (KIP-392).
//
// A consumer's Fetch v11+ may be served by any replica of a partition, not
// only its leader (consumerSource). A follower serves records up to the high
// watermark it learned from the leader's fetch responses (replica.Partition.Read),
// so a consumer never sees a record before it is committed; a fetch offset
// between that HW and the follower's log end offset returns no records and
// one past the log end offset OFFSET_OUT_OF_RANGE, as in Kafka (clients then
// validate their position against the leader).
//
// The leader, when replica.selector.class is the rack-aware selector and the
// consumer sent a client.rack (the request's Rack), answers a consumer fetch
// with PreferredReadReplica instead of records when the leader is not in
// that rack and an unfenced in-sync follower there holds the fetch offset
// (preferredReadReplica); the consumer then fetches from that replica until
// it errs or its metadata changes.

// consumerSource is leaderPartition for consumer fetches of version 11 and
// later: a follower hosting the partition, following a live leader, serves
// them too (see the comment above). A node that the metadata names leader
// but that does not act as one (no lease) still answers
// NOT_LEADER_OR_FOLLOWER.
func (s *Server) consumerSource(topic string, partition int32) (*replica.Partition, int16) {
	p, code := s.leaderPartition(topic, partition)
	if code != kerr.NotLeaderForPartition.Code {
		return p, code
	}
	img := s.store.Image()
	t, ok := img.Topic(topic)
	self := s.cfg.NodeID()
	if !ok || !img.Live(self) {
		return nil, code
	}
	meta := t.Partitions[partition]
	p, ok = s.parts.Get(topic, partition)
	if !ok || meta.Leader < 0 || meta.Leader == self || !slices.Contains(meta.Replicas, self) {
		return nil, code
	}
	if leader := p.Leader(); leader < 0 || leader == self {
		return nil, code
	}
	return p, 0
}

// preferredReadReplica returns the replica a consumer in rack should read
// partition p from, or -1 for this node (the leader): Kafka's
// RackAwareReplicaSelector. It applies only when the selector is
// configured, the consumer names a rack, this node leads p and is not in
// that rack. Among the unfenced in-sync followers in the rack whose last
// fetch reached offset it picks the most caught up (highest log end offset,
// then the most recently caught up, then the lowest id).
func (s *Server) preferredReadReplica(p *replica.Partition, rack string, offset int64) int32 {
	if rack == "" || s.cfg.String("replica.selector.class") != config.RackAwareReplicaSelector {
		return -1
	}
	img := s.store.Image()
	rackOf := func(id int32) string {
		if b, ok := img.Broker(id); ok && b.Rack != nil {
			return *b.Rack
		}
		return ""
	}
	self := s.cfg.NodeID()
	if rackOf(self) == rack || p.Leader() != self {
		return -1
	}
	best := replica.ReadReplicaCandidate{ID: -1}
	for _, c := range p.ReadReplicaCandidates(offset) {
		if rackOf(c.ID) != rack || !img.Live(c.ID) {
			continue
		}
		if best.ID < 0 || better(c, best) {
			best = c
		}
	}
	return best.ID
}

// better orders read replica candidates: the higher log end offset, then
// the later caught-up time, then the lower id.
func better(a, b replica.ReadReplicaCandidate) bool {
	switch {
	case a.LEO != b.LEO:
		return a.LEO > b.LEO
	case !a.LastCaughtUp.Equal(b.LastCaughtUp):
		return a.LastCaughtUp.After(b.LastCaughtUp)
	}
	return a.ID < b.ID
}

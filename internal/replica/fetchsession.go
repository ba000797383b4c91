package replica

import (
	"math"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// followerSession is a follower's side of a fetch session (KIP-227) with
// one leader: after a full fetch that opens it, each fetch sends only the
// partitions whose position or epochs changed and names those it no
// longer fetches, and the leader answers only partitions with news. Used
// by one fetcher goroutine only.
//
// Invariant: sent is exactly the partition set, with the fields, that the
// leader's session holds after the last answered request; any doubt (an
// error, a lost response) resets it to a new full fetch.
type followerSession struct {
	id    int32 // 0: none, the next fetch is a full one
	epoch int32 // the next incremental fetch's epoch
	sent  map[TopicPartition]kmsg.FetchRequestTopicPartition
}

// prepare turns req, which lists every partition to fetch, into this
// session's next request. It returns the partitions the leader's session
// will hold if the request is answered, for done.
func (s *followerSession) prepare(req *kmsg.FetchRequest) map[TopicPartition]kmsg.FetchRequestTopicPartition {
	want := map[TopicPartition]kmsg.FetchRequestTopicPartition{}
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			want[TopicPartition{rt.Topic, rp.Partition}] = rp
		}
	}
	if s.id == 0 {
		req.SessionID, req.SessionEpoch = 0, 0 // full: open a session
		return want
	}
	req.SessionID, req.SessionEpoch = s.id, s.epoch
	var topics []kmsg.FetchRequestTopic
	index := map[string]int{}
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			if old, ok := s.sent[TopicPartition{rt.Topic, rp.Partition}]; ok && samePosition(old, rp) {
				continue
			}
			ti := topicSlot(index, &topics, rt.Topic, func() kmsg.FetchRequestTopic {
				t := kmsg.NewFetchRequestTopic()
				t.Topic = rt.Topic
				return t
			})
			topics[ti].Partitions = append(topics[ti].Partitions, rp)
		}
	}
	req.Topics = topics
	index = map[string]int{}
	for tp := range s.sent {
		if _, ok := want[tp]; ok {
			continue
		}
		ti := topicSlot(index, &req.ForgottenTopics, tp.Topic, func() kmsg.FetchRequestForgottenTopic {
			t := kmsg.NewFetchRequestForgottenTopic()
			t.Topic = tp.Topic
			return t
		})
		req.ForgottenTopics[ti].Partitions = append(req.ForgottenTopics[ti].Partitions, tp.Partition)
	}
	return want
}

// samePosition reports whether the leader's session already holds rp.
func samePosition(a, b kmsg.FetchRequestTopicPartition) bool {
	return a.FetchOffset == b.FetchOffset && a.CurrentLeaderEpoch == b.CurrentLeaderEpoch &&
		a.LastFetchedEpoch == b.LastFetchedEpoch && a.LogStartOffset == b.LogStartOffset &&
		a.PartitionMaxBytes == b.PartitionMaxBytes
}

// done records an answered request: id is the response's session id
// (0: the leader keeps no session, so every fetch stays a full one).
func (s *followerSession) done(id int32, want map[TopicPartition]kmsg.FetchRequestTopicPartition) {
	if id == 0 {
		s.reset()
		return
	}
	if s.id == 0 {
		s.epoch = 0
	}
	s.id, s.sent = id, want
	s.epoch++
	if s.epoch <= 0 || s.epoch == math.MaxInt32 {
		s.epoch = 1
	}
}

// reset makes the next fetch a full one (a new session).
func (s *followerSession) reset() { s.id, s.epoch, s.sent = 0, 0, nil }

package group

import (
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitSlot is one partition of an OffsetCommit.
type commitSlot struct {
	out   *kmsg.OffsetCommitResponseTopicPartition
	tp    topicPartition
	entry offsetEntry
}

// OffsetCommit validates a commit and appends its records, then returns a
// function that waits until they are durable (only then do they become
// visible to OffsetFetch) and returns the response.
func (c *Coordinator) OffsetCommit(req *kmsg.OffsetCommitRequest) func() *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	now := c.clock.Now()
	expire := int64(-1)
	if req.Version >= 2 && req.Version <= 4 && req.RetentionTimeMillis != -1 {
		expire = now.UnixMilli() + req.RetentionTimeMillis
	}
	var slots []*commitSlot
	for _, rt := range req.Topics {
		topic := kmsg.NewOffsetCommitResponseTopic()
		topic.Topic, topic.TopicID = rt.Topic, rt.TopicID
		topic.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			out := &topic.Partitions[i]
			*out = kmsg.NewOffsetCommitResponseTopicPartition()
			out.Partition = rp.Partition
			if c.cfg.PartitionExists != nil && !c.cfg.PartitionExists(rt.Topic, rp.Partition) {
				out.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			e := offsetEntry{offset: rp.Offset, leaderEpoch: rp.LeaderEpoch, commitTime: now.UnixMilli(), expireTime: expire}
			if req.Version < 6 {
				e.leaderEpoch = -1
			}
			if req.Version == 1 && rp.Timestamp != -1 {
				e.commitTime = rp.Timestamp
			}
			if rp.Metadata != nil {
				e.metadata = *rp.Metadata
			}
			slots = append(slots, &commitSlot{out: out, tp: topicPartition{rt.Topic, rp.Partition}, entry: e})
		}
		resp.Topics = append(resp.Topics, topic)
	}
	answer := func() *kmsg.OffsetCommitResponse { return resp }
	fail := func(code int16) func() *kmsg.OffsetCommitResponse {
		for _, s := range slots {
			s.out.ErrorCode = code
		}
		return answer
	}
	if len(slots) == 0 {
		return answer
	}
	if !fits(req.Group) {
		return fail(kerrInvalidGroupID)
	}
	sh, code := c.shardFor(req.Group)
	if code != 0 {
		return fail(code)
	}
	g := sh.get(req.Group)
	if g == nil {
		if req.Generation >= 0 {
			// A member of a group that no longer exists.
			return fail(kerrIllegalGeneration)
		}
		// Standalone consumers commit without joining; their group holds offsets only.
		if g = sh.getOrCreate(req.Group, true, now); g == nil {
			return fail(kerrNotCoordinator)
		}
	}
	g.mu.Lock()
	locked := true
	defer func() {
		if locked {
			g.mu.Unlock()
		}
	}()
	if code := c.validateCommit(g, req.Generation, req.MemberID, req.InstanceID); code != 0 {
		return fail(code)
	}
	var staged []*commitSlot
	var recs []kv
	for _, s := range slots {
		if len(s.entry.metadata) > c.cfg.MaxMetadataSize {
			s.out.ErrorCode = kerr.OffsetMetadataTooLarge.Code
			continue
		}
		rec, err := offsetRecord(g.name, s.tp, s.entry)
		if err != nil {
			s.out.ErrorCode = kerr.InvalidRequest.Code
			continue
		}
		staged = append(staged, s)
		recs = append(recs, rec)
	}
	if len(staged) == 0 {
		return answer
	}
	batch, err := buildBatch(now, recs)
	if err != nil {
		c.logger.Error("encoding offset commit", "group", g.name, "err", err)
		return fail(kerrUnknownServerError)
	}
	partition := g.shard.partition
	pos, err := c.log.Append(partition, batch)
	if err != nil {
		for _, s := range staged {
			s.out.ErrorCode = commitError(err)
		}
		return answer
	}
	base := pos.End - int64(len(staged))
	for i, s := range staged {
		s.entry.recordOffset = base + int64(i)
		if g.inflight[s.tp] == nil {
			g.inflight[s.tp] = map[int64]bool{}
		}
		g.inflight[s.tp][s.entry.recordOffset] = true
	}
	g.mu.Unlock()
	locked = false

	done := make(chan struct{})
	finish := func(err error) {
		defer close(done)
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, s := range staged {
			if err != nil {
				s.out.ErrorCode = commitError(err)
			}
			if !g.inflight[s.tp][s.entry.recordOffset] {
				continue // deleted meanwhile
			}
			delete(g.inflight[s.tp], s.entry.recordOffset)
			if len(g.inflight[s.tp]) == 0 {
				delete(g.inflight, s.tp)
			}
			if cur, ok := g.offsets[s.tp]; err == nil && g.state != Dead && (!ok || cur.recordOffset < s.entry.recordOffset) {
				g.offsets[s.tp] = s.entry
			}
		}
	}
	if !c.async(func() { finish(c.log.WaitDurable(partition, pos)) }) {
		finish(ErrNotLeader)
	}
	return func() *kmsg.OffsetCommitResponse {
		<-done
		return resp
	}
}

// validateCommit checks who may commit: members of the current generation,
// or anyone (generation -1, no member id) while the group has no members.
// A member's commit also counts as a heartbeat. Called with g.mu held.
func (c *Coordinator) validateCommit(g *group, generation int32, memberID string, instanceID *string) int16 {
	if g.state == Dead {
		return kerrCoordinatorNotAvailable
	}
	if generation >= 0 || memberID != "" || instanceID != nil {
		if code := g.validateMember(memberID, instanceID); code != 0 {
			return code
		}
		if generation != g.generation {
			return kerrIllegalGeneration
		}
	} else if g.state != Empty {
		return kerrUnknownMemberID
	}
	switch g.state {
	case CompletingRebalance:
		// The member has its new generation but not yet its assignment.
		return kerrRebalanceInProgress
	case Stable, PreparingRebalance:
		if m := g.byID[memberID]; m != nil {
			c.scheduleHeartbeat(g, m, m.session())
		}
	}
	return 0
}

// commitError maps an append error of an offset commit to its Kafka code.
func commitError(err error) int16 {
	switch {
	case errors.Is(err, ErrTooLarge):
		return kerr.InvalidCommitOffsetSize.Code
	case errors.Is(err, ErrUnavailable):
		return kerrCoordinatorNotAvailable
	}
	return kerrNotCoordinator
}

// fetchedPartition is one partition's committed offset (-1 if none).
type fetchedPartition struct {
	partition   int32
	offset      int64
	leaderEpoch int32
	metadata    string
}

// fetchedTopic groups the fetched partitions of a topic.
type fetchedTopic struct {
	topic      string
	partitions []fetchedPartition
}

// OffsetFetch returns committed offsets: of the requested partitions, or of
// every partition the group has an offset for when the topic list is null.
// It answers for one group, or (v8+) for several.
func (c *Coordinator) OffsetFetch(req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			want, order := wantedTopics(rg.Topics, func(t kmsg.OffsetFetchRequestGroupTopic) (string, []int32) { return t.Topic, t.Partitions })
			og := kmsg.NewOffsetFetchResponseGroup()
			og.Group = rg.Group
			code, topics := c.fetchOffsets(rg.Group, want, order)
			og.ErrorCode = code
			og.Topics = []kmsg.OffsetFetchResponseGroupTopic{}
			for _, ft := range topics {
				ot := kmsg.NewOffsetFetchResponseGroupTopic()
				ot.Topic = ft.topic
				for _, fp := range ft.partitions {
					op := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					op.Partition, op.Offset, op.LeaderEpoch, op.Metadata = fp.partition, fp.offset, fp.leaderEpoch, kmsg.StringPtr(fp.metadata)
					ot.Partitions = append(ot.Partitions, op)
				}
				og.Topics = append(og.Topics, ot)
			}
			resp.Groups = append(resp.Groups, og)
		}
		return resp
	}
	want, order := wantedTopics(req.Topics, func(t kmsg.OffsetFetchRequestTopic) (string, []int32) { return t.Topic, t.Partitions })
	code, topics := c.fetchOffsets(req.Group, want, order)
	if code != 0 {
		if req.Version >= 2 {
			resp.ErrorCode = code
			return resp
		}
		// v0-v1 have no group error: report it on every partition.
		topics = requested(want, order)
	}
	for _, ft := range topics {
		ot := kmsg.NewOffsetFetchResponseTopic()
		ot.Topic = ft.topic
		for _, fp := range ft.partitions {
			op := kmsg.NewOffsetFetchResponseTopicPartition()
			op.Partition, op.Offset, op.LeaderEpoch, op.Metadata = fp.partition, fp.offset, fp.leaderEpoch, kmsg.StringPtr(fp.metadata)
			op.ErrorCode = code
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp
}

// requested lists the requested partitions with no offset.
func requested(want map[string][]int32, order []string) []fetchedTopic {
	out := make([]fetchedTopic, 0, len(order))
	for _, t := range order {
		ft := fetchedTopic{topic: t}
		for _, p := range want[t] {
			ft.partitions = append(ft.partitions, fetchedPartition{partition: p, offset: -1, leaderEpoch: -1})
		}
		out = append(out, ft)
	}
	return out
}

// fetchOffsets returns a group's offsets for want (topic -> partitions, in
// the order given), or all of them, sorted, when want is nil. Offsets are
// returned whatever the group's state: standalone consumers use a group
// only to store offsets.
func (c *Coordinator) fetchOffsets(name string, want map[string][]int32, order []string) (int16, []fetchedTopic) {
	sh, code := c.shardFor(name)
	if code != 0 {
		return code, nil
	}
	g := sh.get(name)
	if g == nil {
		return 0, requested(want, order)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead {
		return 0, requested(want, order)
	}
	if want == nil {
		byTopic := map[string][]fetchedPartition{}
		for tp, e := range g.offsets {
			byTopic[tp.topic] = append(byTopic[tp.topic], fetchedPartition{tp.partition, e.offset, e.leaderEpoch, e.metadata})
		}
		out := make([]fetchedTopic, 0, len(byTopic))
		for t, ps := range byTopic {
			sort.Slice(ps, func(i, j int) bool { return ps[i].partition < ps[j].partition })
			out = append(out, fetchedTopic{t, ps})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].topic < out[j].topic })
		return 0, out
	}
	out := requested(want, order)
	for i := range out {
		for j := range out[i].partitions {
			fp := &out[i].partitions[j]
			if e, ok := g.offsets[topicPartition{out[i].topic, fp.partition}]; ok {
				fp.offset, fp.leaderEpoch, fp.metadata = e.offset, e.leaderEpoch, e.metadata
			}
		}
	}
	return 0, out
}

// OffsetDelete deletes committed offsets of a group. Offsets of topics the
// group's members consume cannot be deleted while it has members
// (GROUP_SUBSCRIBED_TO_TOPIC). The returned function waits for durability.
func (c *Coordinator) OffsetDelete(req *kmsg.OffsetDeleteRequest) func() *kmsg.OffsetDeleteResponse {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	answer := func() *kmsg.OffsetDeleteResponse { return resp }
	type slot struct {
		out *kmsg.OffsetDeleteResponseTopicPartition
		tp  topicPartition
	}
	var slots []slot
	for _, rt := range req.Topics {
		topic := kmsg.NewOffsetDeleteResponseTopic()
		topic.Topic = rt.Topic
		topic.Partitions = make([]kmsg.OffsetDeleteResponseTopicPartition, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			out := &topic.Partitions[i]
			*out = kmsg.NewOffsetDeleteResponseTopicPartition()
			out.Partition = rp.Partition
			if c.cfg.PartitionExists != nil && !c.cfg.PartitionExists(rt.Topic, rp.Partition) {
				out.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			slots = append(slots, slot{out, topicPartition{rt.Topic, rp.Partition}})
		}
		resp.Topics = append(resp.Topics, topic)
	}
	if req.Group == "" {
		resp.ErrorCode = kerrInvalidGroupID
		return answer
	}
	sh, code := c.shardFor(req.Group)
	if code != 0 {
		resp.ErrorCode = code
		return answer
	}
	g := sh.get(req.Group)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return answer
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var eligible []slot
	switch g.state {
	case Dead:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return answer
	case Empty:
		eligible = slots
	default:
		if g.protocolType != consumerProtocolType {
			resp.ErrorCode = kerr.NonEmptyGroup.Code
			return answer
		}
		for _, s := range slots {
			if g.isSubscribed(s.tp.topic) {
				s.out.ErrorCode = kerr.GroupSubscribedToTopic.Code
			} else {
				eligible = append(eligible, s)
			}
		}
	}
	tps := make([]topicPartition, len(eligible))
	for i, s := range eligible {
		tps[i] = s.tp
	}
	pos, err := c.removeOffsets(g, tps, false)
	if err != nil {
		for _, s := range eligible {
			s.out.ErrorCode = commitError(err)
		}
		return answer
	}
	partition := g.shard.partition
	return func() *kmsg.OffsetDeleteResponse {
		if pos.End > 0 {
			if err := c.log.WaitDurable(partition, pos); err != nil {
				for _, s := range eligible {
					s.out.ErrorCode = commitError(err)
				}
			}
		}
		return resp
	}
}

// wantedTopics gathers the partitions an OffsetFetch asks for per topic, and
// the topics in first-seen order; a nil list (all topics) gives a nil map.
func wantedTopics[T any](topics []T, fields func(T) (string, []int32)) (map[string][]int32, []string) {
	if topics == nil {
		return nil, nil
	}
	want := map[string][]int32{}
	var order []string
	for _, t := range topics {
		name, parts := fields(t)
		if _, ok := want[name]; !ok {
			order = append(order, name)
		}
		want[name] = append(want[name], parts...)
	}
	return want, order
}

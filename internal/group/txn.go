package group

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
	"strand/internal/txn"
)

// Transactional offset commits (KIP-98, KIP-447). TxnOffsetCommit appends
// the offsets to __consumer_offsets in a transactional batch of the
// producer; they are pending (invisible to OffsetFetch) until the
// transaction's marker reaches the partition: COMMIT makes them the
// group's committed offsets, ABORT drops them. Load rebuilds pending
// offsets of transactions still open from the log.
//
// Invariant: a pending offset becomes visible only through CompleteTxn (or
// a COMMIT marker replayed by Load), never through its own append.

// pendingTxn is a producer's pending offsets: group -> partition -> entry.
type pendingTxn map[string]map[topicPartition]offsetEntry

func (p pendingTxn) put(group string, tp topicPartition, e offsetEntry) {
	if p[group] == nil {
		p[group] = map[topicPartition]offsetEntry{}
	}
	p[group][tp] = e
}

// TxnOffsetCommit stores offsets of a transaction as pending.
func (c *Coordinator) TxnOffsetCommit(req *kmsg.TxnOffsetCommitRequest) func() *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	now := c.clock.Now()
	type slot struct {
		out *kmsg.TxnOffsetCommitResponseTopicPartition
		tp  topicPartition
		e   offsetEntry
	}
	var slots []*slot
	for _, rt := range req.Topics {
		topic := kmsg.NewTxnOffsetCommitResponseTopic()
		topic.Topic = rt.Topic
		topic.Partitions = make([]kmsg.TxnOffsetCommitResponseTopicPartition, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			out := &topic.Partitions[i]
			*out = kmsg.NewTxnOffsetCommitResponseTopicPartition()
			out.Partition = rp.Partition
			if c.cfg.PartitionExists != nil && !c.cfg.PartitionExists(rt.Topic, rp.Partition) {
				out.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			e := offsetEntry{offset: rp.Offset, leaderEpoch: rp.LeaderEpoch, commitTime: now.UnixMilli(), expireTime: -1}
			if rp.Metadata != nil {
				e.metadata = *rp.Metadata
			}
			if len(e.metadata) > c.cfg.MaxMetadataSize {
				out.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			slots = append(slots, &slot{out: out, tp: topicPartition{rt.Topic, rp.Partition}, e: e})
		}
		resp.Topics = append(resp.Topics, topic)
	}
	answer := func() *kmsg.TxnOffsetCommitResponse { return resp }
	fail := func(code int16) func() *kmsg.TxnOffsetCommitResponse {
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
	if g := sh.get(req.Group); g != nil && (req.Generation >= 0 || req.MemberID != "") {
		g.mu.Lock()
		code := c.validateCommit(g, req.Generation, req.MemberID, req.InstanceID)
		g.mu.Unlock()
		if code != 0 {
			return fail(code)
		}
	}
	var recs []record.Record
	for _, s := range slots {
		r, err := offsetRecord(req.Group, s.tp, s.e)
		if err != nil {
			return fail(kerr.InvalidRequest.Code)
		}
		recs = append(recs, record.Record{Timestamp: now.UnixMilli(), Key: r.key, Value: r.value})
	}
	batch, err := record.Build(record.BuildSpec{Transactional: true, ProducerID: req.ProducerID,
		ProducerEpoch: req.ProducerEpoch, BaseSequence: -1, Records: recs})
	if err != nil {
		return fail(kerr.InvalidRequest.Code)
	}
	pos, err := c.log.Append(sh.partition, batch)
	if err != nil {
		if errors.Is(err, txn.ErrInvalidProducerEpoch) {
			return fail(kerr.ProducerFenced.Code)
		}
		return fail(commitError(err))
	}
	base := pos.End - int64(len(slots))
	done := make(chan struct{})
	finish := func(err error) {
		defer close(done)
		if err != nil {
			for _, s := range slots {
				s.out.ErrorCode = commitError(err)
			}
			return
		}
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if sh.txnOffsets == nil {
			sh.txnOffsets = map[int64]pendingTxn{}
		}
		p := sh.txnOffsets[req.ProducerID]
		if p == nil {
			p = pendingTxn{}
			sh.txnOffsets[req.ProducerID] = p
		}
		for i, s := range slots {
			s.e.recordOffset = base + int64(i)
			p.put(req.Group, s.tp, s.e)
		}
	}
	if !c.async(func() { finish(c.log.WaitDurable(sh.partition, pos)) }) {
		finish(ErrNotLeader)
	}
	return func() *kmsg.TxnOffsetCommitResponse {
		<-done
		return resp
	}
}

// CompleteTxn applies a transaction marker of producer pid written to
// __consumer_offsets partition partition: on commit the producer's
// pending offsets become committed, on abort they are dropped.
func (c *Coordinator) CompleteTxn(partition int32, pid int64, commit bool) {
	c.mu.RLock()
	sh := c.shards[partition]
	c.mu.RUnlock()
	if sh == nil {
		return
	}
	sh.mu.Lock()
	if !sh.loaded {
		// Loading: the replay may have read the log before this marker;
		// applied once the shard is loaded (applyEarlyMarkers).
		if sh.early == nil {
			sh.early = map[int64]bool{}
		}
		sh.early[pid] = commit
		sh.mu.Unlock()
		return
	}
	p := sh.txnOffsets[pid]
	delete(sh.txnOffsets, pid)
	sh.mu.Unlock()
	c.applyTxnOffsets(sh, p, commit)
}

// applyEarlyMarkers applies the markers CompleteTxn received while sh was
// loading; Load calls it once the shard is loaded. A marker the replay
// already applied finds nothing pending.
func (c *Coordinator) applyEarlyMarkers(sh *shard) {
	sh.mu.Lock()
	early := sh.early
	sh.early = nil
	pending := map[int64]pendingTxn{}
	for pid := range early {
		pending[pid] = sh.txnOffsets[pid]
		delete(sh.txnOffsets, pid)
	}
	sh.mu.Unlock()
	for pid, commit := range early {
		c.applyTxnOffsets(sh, pending[pid], commit)
	}
}

// applyTxnOffsets makes a committed transaction's offsets p the groups'
// committed offsets (nothing for an abort).
func (c *Coordinator) applyTxnOffsets(sh *shard, p pendingTxn, commit bool) {
	if !commit || len(p) == 0 {
		return
	}
	now := c.clock.Now()
	for name, offs := range p {
		g := sh.getOrCreate(name, true, now)
		if g == nil {
			continue
		}
		g.mu.Lock()
		if g.state != Dead {
			for tp, e := range offs {
				if cur, ok := g.offsets[tp]; !ok || cur.recordOffset < e.recordOffset {
					g.offsets[tp] = e
				}
			}
		}
		g.mu.Unlock()
	}
}

// hasPendingTxnOffsets reports whether a transaction holds pending offsets
// of group for tp (OffsetFetch with require_stable answers
// UNSTABLE_OFFSET_COMMIT then).
func (sh *shard) hasPendingTxnOffsets(group string, tp topicPartition) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, p := range sh.txnOffsets {
		if _, ok := p[group][tp]; ok {
			return true
		}
	}
	return false
}

// replayTxnBatch handles a transactional or control batch b (header h)
// during Load: offsets of transactional batches are pending per producer;
// a marker applies (commit) or drops (abort) them.
func replayTxnBatch(h record.Header, b []byte, pending map[int64]pendingTxn, offsets map[string]map[topicPartition]offsetEntry) error {
	if h.IsControl() {
		if !h.HasProducerID() {
			return nil
		}
		commit, err := txn.ParseMarker(b)
		if err != nil {
			return nil // not a marker we understand: ignored, as Kafka does
		}
		p := pending[h.ProducerID]
		delete(pending, h.ProducerID)
		if commit {
			for name, offs := range p {
				if offsets[name] == nil {
					offsets[name] = map[topicPartition]offsetEntry{}
				}
				for tp, e := range offs {
					offsets[name][tp] = e
				}
			}
		}
		return nil
	}
	recs, err := record.Records(b)
	if err != nil {
		return err
	}
	for _, r := range recs {
		sr, err := decodeRecord(r.Key, r.Value)
		if err != nil || !sr.isOffset || sr.offset == nil {
			continue
		}
		if pending[h.ProducerID] == nil {
			pending[h.ProducerID] = pendingTxn{}
		}
		sr.offset.recordOffset = r.Offset
		pending[h.ProducerID].put(sr.group, sr.tp, *sr.offset)
	}
	return nil
}

// MarkUnstable completes an OffsetFetch response for a request with
// require_stable (KIP-447, v7+): a partition whose offset a transaction
// has pending gets UNSTABLE_OFFSET_COMMIT, so that a consumer taking over
// the partition waits for that transaction instead of starting from the
// older offset.
func (c *Coordinator) MarkUnstable(req *kmsg.OffsetFetchRequest, resp *kmsg.OffsetFetchResponse) {
	if !req.RequireStable {
		return
	}
	pending := func(name, topic string, p int32) bool {
		sh, code := c.shardFor(name)
		return code == 0 && sh.hasPendingTxnOffsets(name, topicPartition{topic, p})
	}
	for i := range resp.Groups {
		g := &resp.Groups[i]
		for j := range g.Topics {
			for k := range g.Topics[j].Partitions {
				p := &g.Topics[j].Partitions[k]
				if p.ErrorCode == 0 && pending(g.Group, g.Topics[j].Topic, p.Partition) {
					p.ErrorCode = kerr.UnstableOffsetCommit.Code
				}
			}
		}
	}
	for j := range resp.Topics {
		for k := range resp.Topics[j].Partitions {
			p := &resp.Topics[j].Partitions[k]
			if p.ErrorCode == 0 && pending(req.Group, resp.Topics[j].Topic, p.Partition) {
				p.ErrorCode = kerr.UnstableOffsetCommit.Code
			}
		}
	}
}

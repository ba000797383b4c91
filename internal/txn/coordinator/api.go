package coordinator

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fencedCode is PRODUCER_FENCED for clients that know it (KIP-588: request
// versions from Kafka 2.7 on), INVALID_PRODUCER_EPOCH for older ones.
func fencedCode(version, since int16) int16 {
	if version >= since {
		return kerr.ProducerFenced.Code
	}
	return kerr.InvalidProducerEpoch.Code
}

// InitProducerID answers InitProducerId for a transactional id: a new id
// gets a fresh producer id at epoch 0; a known one gets its epoch bumped
// (a new producer id when the epoch is exhausted), which fences every
// older producer, after aborting a transaction the previous epoch left
// open. KIP-360: with a producer id and epoch in the request (v3+), they
// must be the id's current ones.
func (c *Coordinator) InitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	id := *req.TransactionalID
	if req.TransactionTimeoutMillis <= 0 || time.Duration(req.TransactionTimeoutMillis)*time.Millisecond > c.cfg.MaxTimeout {
		resp.ErrorCode = kerr.InvalidTransactionTimeout.Code
		return resp
	}
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		p, cepoch, code := c.lookupLocked(id)
		if code != 0 {
			c.mu.Unlock()
			resp.ErrorCode = code
			return resp
		}
		m := c.txns[id]
		if m != nil && (m.busy || m.state == PrepareCommit || m.state == PrepareAbort) {
			c.mu.Unlock()
			resp.ErrorCode = kerr.ConcurrentTransactions.Code
			return resp
		}
		if m != nil && req.ProducerID >= 0 && (req.ProducerID != m.pid || req.ProducerEpoch != m.epoch) {
			c.mu.Unlock()
			resp.ErrorCode = fencedCode(req.Version, 4)
			return resp
		}
		if m == nil {
			// A placeholder, busy, so that a concurrent first InitProducerId
			// of the same id waits instead of allocating a second producer id.
			m = &meta{id: id, partition: p, pid: -1, timeoutMs: req.TransactionTimeoutMillis, startMs: -1, parts: map[string]map[int32]bool{}}
			c.txns[id] = m
		}
		m.busy = true
		next := m.clone()
		c.mu.Unlock()

		if next.state == Ongoing && attempt == 0 {
			// Abort what the previous epoch left open, with a bumped epoch
			// that fences it, then bump again for the new producer.
			if next.epoch < math.MaxInt16-1 {
				next.epoch++
			}
			if code := c.end(ctx, next, false, cepoch); code != 0 {
				resp.ErrorCode = code
				return resp
			}
			continue
		}
		if next.pid < 0 || next.epoch >= math.MaxInt16-1 {
			pid, err := c.cfg.NextProducerID(ctx)
			if err != nil {
				c.release(id)
				c.logger.Warn("allocating a producer id", "transactional_id", id, "err", err)
				resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
				return resp
			}
			next.pid, next.epoch = pid, 0
		} else {
			next.epoch++
		}
		now := time.Now().UnixMilli()
		next.state, next.timeoutMs, next.startMs, next.updateMs = Empty, req.TransactionTimeoutMillis, -1, now
		next.parts = map[string]map[int32]bool{}
		if err := c.persist(ctx, p, id, next); err != nil {
			c.release(id)
			resp.ErrorCode = writeErrorCode(err)
			return resp
		}
		if !c.install(next, cepoch, false) {
			resp.ErrorCode = kerr.NotCoordinator.Code
			return resp
		}
		resp.ProducerID, resp.ProducerEpoch = next.pid, next.epoch
		return resp
	}
}

// begin validates a request of producer pid/epoch on id and marks the id
// busy; it returns a clone to change, the coordinator epoch, or the code.
func (c *Coordinator) begin(id string, pid int64, epoch int16, fenced int16) (*meta, int32, int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, cepoch, code := c.lookupLocked(id)
	if code != 0 {
		return nil, 0, code
	}
	m := c.txns[id]
	switch {
	case m == nil || m.pid != pid:
		return nil, 0, kerr.InvalidProducerIDMapping.Code
	case epoch != m.epoch:
		return nil, 0, fenced
	case m.busy || m.state == PrepareCommit || m.state == PrepareAbort:
		return nil, 0, kerr.ConcurrentTransactions.Code
	}
	m.busy = true
	return m.clone(), cepoch, 0
}

// addPartitions adds partitions to id's transaction (starting it if none
// is open), persisting the change if anything is new.
func (c *Coordinator) addPartitions(ctx context.Context, id string, pid int64, epoch int16, fenced int16, parts map[string][]int32) int16 {
	m, cepoch, code := c.begin(id, pid, epoch, fenced)
	if code != 0 {
		return code
	}
	changed := m.state != Ongoing
	if m.state != Ongoing {
		m.parts = map[string]map[int32]bool{}
		m.startMs = time.Now().UnixMilli()
	}
	for t, ps := range parts {
		for _, p := range ps {
			if !m.has(t, p) {
				m.add(t, p)
				changed = true
			}
		}
	}
	if !changed {
		c.release(id)
		return 0
	}
	m.state, m.updateMs = Ongoing, time.Now().UnixMilli()
	if err := c.persist(ctx, m.partition, id, m); err != nil {
		c.release(id)
		return writeErrorCode(err)
	}
	if !c.install(m, cepoch, false) {
		return kerr.NotCoordinator.Code
	}
	return 0
}

// AddPartitionsToTxn answers AddPartitionsToTxn v0-v3 (one transaction per
// request, from a producer). exists says whether a partition exists.
func (c *Coordinator) AddPartitionsToTxn(ctx context.Context, req *kmsg.AddPartitionsToTxnRequest, exists func(string, int32) bool) *kmsg.AddPartitionsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	parts := map[string][]int32{}
	bad := false
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if !exists(t.Topic, p) {
				bad = true
			}
			parts[t.Topic] = append(parts[t.Topic], p)
		}
	}
	code := int16(0)
	if !bad {
		code = c.addPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, fencedCode(req.Version, 2), parts)
	}
	for _, t := range req.Topics {
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, code
			if bad {
				rp.ErrorCode = kerr.OperationNotAttempted.Code
				if !exists(t.Topic, p) {
					rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// AddOffsetsToTxn adds the group's __consumer_offsets partition
// (offsetsTopic, partition) to the transaction.
func (c *Coordinator) AddOffsetsToTxn(ctx context.Context, req *kmsg.AddOffsetsToTxnRequest, offsetsTopic string, partition int32) *kmsg.AddOffsetsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	resp.ErrorCode = c.addPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, fencedCode(req.Version, 2),
		map[string][]int32{offsetsTopic: {partition}})
	return resp
}

// EndTxn commits or aborts the open transaction, answering once every
// marker is written and the outcome is durable. A retried EndTxn whose
// outcome is already complete succeeds.
func (c *Coordinator) EndTxn(ctx context.Context, req *kmsg.EndTxnRequest) *kmsg.EndTxnResponse {
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	m, cepoch, code := c.begin(req.TransactionalID, req.ProducerID, req.ProducerEpoch, fencedCode(req.Version, 2))
	if code != 0 {
		resp.ErrorCode = code
		return resp
	}
	switch {
	case m.state == Ongoing:
		resp.ErrorCode = c.end(ctx, m, req.Commit, cepoch)
	case m.state == CompleteCommit && req.Commit, m.state == CompleteAbort && !req.Commit:
		c.release(m.id)
	default:
		c.release(m.id)
		resp.ErrorCode = kerr.InvalidTxnState.Code
	}
	return resp
}

// Transaction is a transactional id's state as admin APIs show it.
type Transaction struct {
	ID         string
	ProducerID int64
	Epoch      int16
	TimeoutMs  int32
	State      State
	StartMs    int64
	Partitions map[string][]int32
}

// Describe returns the state of id, or an error code (NOT_COORDINATOR,
// COORDINATOR_LOAD_IN_PROGRESS, TRANSACTIONAL_ID_NOT_FOUND).
func (c *Coordinator) Describe(id string) (Transaction, int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, _, code := c.lookupLocked(id); code != 0 {
		return Transaction{}, code
	}
	m := c.txns[id]
	if m == nil || m.pid < 0 { // unknown, or its first InitProducerId in flight
		return Transaction{}, kerr.TransactionalIDNotFound.Code
	}
	return Transaction{ID: id, ProducerID: m.pid, Epoch: m.epoch, TimeoutMs: m.timeoutMs, State: m.state,
		StartMs: m.startMs, Partitions: m.partitionList()}, 0
}

// List returns every transactional id served here, by id, and whether a
// partition is still loading.
func (c *Coordinator) List() ([]Transaction, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Transaction, 0, len(c.txns))
	for id, m := range c.txns {
		if m.pid < 0 {
			continue // its first InitProducerId is in flight
		}
		out = append(out, Transaction{ID: id, ProducerID: m.pid, Epoch: m.epoch, TimeoutMs: m.timeoutMs, State: m.state, StartMs: m.startMs})
	}
	slices.SortFunc(out, func(a, b Transaction) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, len(c.loading) > 0
}

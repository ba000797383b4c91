// Package txn owns producer ids and the idempotence rules: which producer id a
// client gets, and, per partition, whether an incoming batch is the next in
// its producer's sequence, a retry of one already written, or out of order.
//
// Invariants: a producer id is never handed out twice, even across crashes
// (ids are reserved in persisted blocks before use); per partition and producer
// the appended sequence numbers are contiguous within an epoch, and a batch that
// matches one of the producer's last MaxCachedBatches batches is never written twice.
package txn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"

	"strand/internal/record"
)

// IDBlockSize is how many producer ids are reserved from the controller at once.
const IDBlockSize = 1000

// IDAllocator hands out cluster-unique producer ids from blocks the metadata
// quorum reserved for this broker. A block is committed before any id in it
// is returned, so a crash can waste ids but never repeat one.
type IDAllocator struct {
	reserve func(ctx context.Context, count int64) (int64, error)

	mu   sync.Mutex // guards next, end
	next int64      // next id to hand out
	end  int64      // ids in [next, end) are ours
}

// NewIDAllocator returns an allocator reserving blocks with reserve.
func NewIDAllocator(reserve func(ctx context.Context, count int64) (int64, error)) *IDAllocator {
	return &IDAllocator{reserve: reserve}
}

// Next returns a fresh producer id.
func (a *IDAllocator) Next(ctx context.Context) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next >= a.end {
		start, err := a.reserve(ctx, IDBlockSize)
		if err != nil {
			return 0, fmt.Errorf("reserve producer ids: %w", err)
		}
		if start < 0 || start > math.MaxInt64-IDBlockSize {
			return 0, errors.New("producer ids exhausted")
		}
		a.next, a.end = start, start+IDBlockSize
	}
	id := a.next
	a.next++
	return id, nil
}

// MaxCachedBatches is how many recent batches per producer are remembered for
// duplicate detection; it equals the largest max.in.flight an idempotent
// producer may use.
const MaxCachedBatches = 5

// Errors of Check; the server maps them to Kafka error codes.
var (
	// ErrOutOfOrderSequence: the batch's first sequence does not follow the last one written.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrInvalidProducerEpoch: the batch's epoch is older than the producer's current one.
	ErrInvalidProducerEpoch = errors.New("invalid producer epoch")
)

// batchMeta is what is remembered of one written batch.
type batchMeta struct {
	firstSeq, lastSeq       int32
	firstOffset, lastOffset int64
}

type producerEntry struct {
	epoch   int16
	batches []batchMeta // oldest first, at most MaxCachedBatches
}

// State is one partition's producer table. It is not safe for concurrent use:
// the partition serialises Check and Update with its append lock.
type State struct {
	producers map[int64]*producerEntry
}

// NewState returns an empty table.
func NewState() *State { return &State{producers: map[int64]*producerEntry{}} }

// Duplicate describes a batch that was already written.
type Duplicate struct{ FirstOffset, LastOffset int64 }

// Check decides what to do with a batch h before it is appended: (nil, nil)
// means append it; a non-nil Duplicate means it was written before, at those
// offsets, and must not be appended again; an error rejects it.
// Batches without a producer id always pass.
func (s *State) Check(h record.Header) (*Duplicate, error) {
	if !h.HasProducerID() || h.IsControl() {
		return nil, nil
	}
	e, ok := s.producers[h.ProducerID]
	if ok && h.BaseSequence < 0 && h.ProducerEpoch >= e.epoch {
		// A coordinator's transactional write (no sequence): epoch check only.
		return nil, nil
	}
	if !ok {
		// Unknown producer (new, or its state expired): accept any sequence.
		return nil, nil
	}
	if h.ProducerEpoch < e.epoch {
		return nil, fmt.Errorf("%w: producer %d epoch %d is older than %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, e.epoch)
	}
	if h.ProducerEpoch > e.epoch {
		if h.BaseSequence != 0 {
			return nil, fmt.Errorf("%w: producer %d new epoch %d must start at sequence 0, got %d", ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		return nil, nil
	}
	for _, b := range e.batches {
		if b.firstSeq == h.BaseSequence && b.lastSeq == h.LastSequence() {
			return &Duplicate{FirstOffset: b.firstOffset, LastOffset: b.lastOffset}, nil
		}
	}
	if n := len(e.batches); n > 0 {
		last := e.batches[n-1].lastSeq
		if !(h.BaseSequence == last+1 || h.BaseSequence == 0 && last == math.MaxInt32) {
			return nil, fmt.Errorf("%w: producer %d expected sequence %d, got %d", ErrOutOfOrderSequence, h.ProducerID, int64(last)+1, h.BaseSequence)
		}
	}
	return nil, nil
}

// Update records an appended batch h (with its assigned offsets). It is also
// used to rebuild the table by replaying a log's batch headers at startup.
func (s *State) Update(h record.Header) {
	if !h.HasProducerID() {
		return
	}
	e, ok := s.producers[h.ProducerID]
	if h.IsControl() || h.BaseSequence < 0 {
		// A transaction marker (or a coordinator's write without sequence)
		// carries the producer's newest epoch: it fences older epochs, and
		// the next epoch's batches start a new sequence.
		if ok && h.ProducerEpoch > e.epoch {
			e.epoch, e.batches = h.ProducerEpoch, nil
		} else if !ok && h.IsControl() {
			s.producers[h.ProducerID] = &producerEntry{epoch: h.ProducerEpoch}
		}
		return
	}
	if !ok || h.ProducerEpoch > e.epoch {
		e = &producerEntry{epoch: h.ProducerEpoch}
		s.producers[h.ProducerID] = e
	} else if h.ProducerEpoch < e.epoch {
		return
	}
	e.batches = append(e.batches, batchMeta{firstSeq: h.BaseSequence, lastSeq: h.LastSequence(),
		firstOffset: h.BaseOffset, lastOffset: h.LastOffset()})
	if len(e.batches) > MaxCachedBatches {
		e.batches = append(e.batches[:0], e.batches[len(e.batches)-MaxCachedBatches:]...)
	}
}

// Len is the number of producers tracked.
func (s *State) Len() int { return len(s.producers) }

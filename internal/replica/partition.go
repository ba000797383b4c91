// Package replica owns the partitions this broker hosts: their logs, their
// producer (idempotence) state, their high watermark, and the waiters of
// long-polling fetches.
//
// In the single-node broker every hosted partition is led by this node and the
// high watermark equals the log end offset. Replication (followers, ISR, a
// high watermark below the LEO) builds on this package.
//
// Invariants: appends to one partition are serialised, so offsets are dense and
// monotonic and the idempotence check sees every earlier batch; HW <= LEO.
package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"strand/internal/log"
	"strand/internal/record"
	"strand/internal/txn"
)

// ErrMultipleProducerBatches rejects a record set carrying more than one batch
// with a producer id; idempotent clients send one batch per partition.
var ErrMultipleProducerBatches = errors.New("an idempotent produce must carry one batch per partition")

// Partition is one hosted partition.
type Partition struct {
	Topic string
	Index int32

	log    *log.Log
	logger *slog.Logger

	mu          sync.Mutex // guards producers, leaderEpoch, logAppendTime; serialises appends
	producers   *txn.State
	leaderEpoch int32
	leader      int32 // the partition's leader per metadata (-1: none)
	appendTime  bool  // message.timestamp.type=LogAppendTime

	wmu     sync.Mutex // guards waiters
	waiters map[chan struct{}]struct{}
}

func openPartition(dir, topic string, index int32, cfg log.Config, appendTime bool, logger *slog.Logger) (*Partition, error) {
	l, err := log.Open(dir, cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("partition %s-%d: %w", topic, index, err)
	}
	p := &Partition{Topic: topic, Index: index, log: l, logger: logger, producers: txn.NewState(),
		appendTime: appendTime, waiters: map[chan struct{}]struct{}{}}
	start := time.Now()
	if err := l.ScanHeaders(l.LogStartOffset(), func(h record.Header) error {
		p.producers.Update(h)
		return nil
	}); err != nil {
		l.Close()
		return nil, fmt.Errorf("partition %s-%d: rebuild producer state: %w", topic, index, err)
	}
	if p.producers.Len() > 0 {
		logger.Debug("rebuilt producer state", "producers", p.producers.Len(), "took", time.Since(start))
	}
	if err := l.Corruption(); err != nil {
		logger.Error("partition log is corrupt; reads of the damaged range fail with KAFKA_STORAGE_ERROR", "err", err)
	}
	return p, nil
}

// AppendResult is the outcome of a leader append.
type AppendResult struct {
	BaseOffset    int64
	LastOffset    int64
	LogAppendTime int64 // -1 unless the topic uses LogAppendTime
	// Duplicate is true when the batch was a retry of one already written; the
	// offsets are the original ones and nothing new was appended.
	Duplicate bool
}

// Append validates records (a produce request's record set for this partition)
// against the producer table and appends them as leader. It does not wait for
// durability; call WaitDurable.
func (p *Partition) Append(records []byte, now time.Time) (AppendResult, error) {
	// The producer check needs the batch headers before the log validates the
	// CRCs; an invalid batch is rejected by the log without touching the table.
	var hdrs []record.Header
	if err := record.Split(records, func(b []byte) error {
		h, err := record.ParseHeader(b)
		if err != nil {
			return err
		}
		hdrs = append(hdrs, h)
		return nil
	}); err != nil {
		return AppendResult{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(hdrs) > 1 {
		for _, h := range hdrs {
			if h.HasProducerID() {
				return AppendResult{}, ErrMultipleProducerBatches
			}
		}
	}
	if len(hdrs) == 1 {
		dup, err := p.producers.Check(hdrs[0])
		if err != nil {
			return AppendResult{}, err
		}
		if dup != nil {
			return AppendResult{BaseOffset: dup.FirstOffset, LastOffset: dup.LastOffset, LogAppendTime: -1, Duplicate: true}, nil
		}
	}
	info, err := p.log.AppendAsLeader(records, log.AppendOptions{LeaderEpoch: p.leaderEpoch, LogAppendTime: p.appendTime, Now: now})
	if err != nil {
		return AppendResult{}, err
	}
	for _, h := range info.Headers {
		p.producers.Update(h)
	}
	p.notify()
	return AppendResult{BaseOffset: info.BaseOffset, LastOffset: info.LastOffset, LogAppendTime: info.LogAppendTime}, nil
}

// WaitDurable returns once every offset below upTo is as durable as the
// topic's flush policy requires (fsynced, by default).
func (p *Partition) WaitDurable(upTo int64) error { return p.log.WaitFlushed(upTo) }

// Read returns batches from offset up to the high watermark (see log.Log.Read).
func (p *Partition) Read(offset int64, maxBytes int, minOne bool) ([]byte, error) {
	return p.log.Read(offset, maxBytes, p.HighWatermark(), minOne)
}

// HighWatermark is the offset below which records are committed and readable.
func (p *Partition) HighWatermark() int64 { return p.log.LogEndOffset() }

// LogEndOffset is the offset the next record will get.
func (p *Partition) LogEndOffset() int64 { return p.log.LogEndOffset() }

// LogStartOffset is the first readable offset.
func (p *Partition) LogStartOffset() int64 { return p.log.LogStartOffset() }

// LeaderEpoch is the partition's current leader epoch.
func (p *Partition) LeaderEpoch() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leaderEpoch
}

// Leader is the partition's leader per the latest metadata (-1: none).
func (p *Partition) Leader() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leader
}

// setLeader records the leader and epoch of the latest metadata. The epoch
// never goes back.
func (p *Partition) setLeader(leader, epoch int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch >= p.leaderEpoch {
		p.leader, p.leaderEpoch = leader, epoch
	}
}

// assignLeaderEpoch records in the log's leader epoch cache that the current
// leader epoch starts at the log end offset if self leads the partition (what
// Kafka's leader does when elected), so that OffsetForLeaderEpoch answers for
// the current epoch before any batch of it is written. Epochs at or below the
// latest one in the log are ignored by the log.
func (p *Partition) assignLeaderEpoch(self int32) {
	p.mu.Lock()
	leader, epoch := p.leader, p.leaderEpoch
	p.mu.Unlock()
	if leader != self {
		return
	}
	if err := p.log.AssignEpoch(epoch); err != nil {
		p.logger.Warn("cannot record the leader epoch start", "epoch", epoch, "err", err)
	}
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch (KIP-101/KIP-279) for a
// leader epoch: the largest epoch <= epoch this partition's log knows and
// the offset where it ends (the log end offset for the latest epoch);
// (-1, -1) if the epoch is undefined or above every known epoch. See
// log.Log.EndOffsetForEpoch.
func (p *Partition) EndOffsetForEpoch(epoch int32) (leaderEpoch int32, endOffset int64) {
	return p.log.EndOffsetForEpoch(epoch)
}

// EpochForOffset returns the leader epoch of the batch holding off, -1 if
// unknown (see log.Log.EpochForOffset).
func (p *Partition) EpochForOffset(off int64) int32 { return p.log.EpochForOffset(off) }

// Log exposes the partition's log for offset look-ups and admin operations.
func (p *Partition) Log() *log.Log { return p.log }

// Watch registers ch to receive a (non-blocking) signal whenever records are
// appended. The returned function unregisters it.
func (p *Partition) Watch(ch chan struct{}) (unwatch func()) {
	p.wmu.Lock()
	p.waiters[ch] = struct{}{}
	p.wmu.Unlock()
	return func() {
		p.wmu.Lock()
		delete(p.waiters, ch)
		p.wmu.Unlock()
	}
}

func (p *Partition) notify() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	for ch := range p.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (p *Partition) configure(cfg log.Config, appendTime bool) {
	p.log.SetConfig(cfg)
	p.mu.Lock()
	p.appendTime = appendTime
	p.mu.Unlock()
}

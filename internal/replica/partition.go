// Package replica owns the partitions this broker hosts: their logs, their
// producer (idempotence) state, their replication state, and the waiters of
// long-polling fetches and acks=all produces. It also replicates partition
// data as Kafka does: a follower fetches from its partition's leader
// (fetcher.go) after reconciling its log with the leader's by leader epoch
// (follower.go); a leader tracks its followers' positions, advances the high
// watermark (leader.go) and shrinks and expands the ISR through the
// metadata store (isr.go).
//
// Invariants:
//   - appends to one partition are serialised (Partition.mu), so offsets are
//     dense and monotonic and the idempotence check sees every earlier batch;
//   - only the leader named by the latest metadata applied appends as leader,
//     stamping its leader epoch, and only while it holds its lease or an
//     ISR follower fetches from it (lease.go); only a follower, at the leader epoch it
//     follows, appends as follower or truncates;
//   - HW <= LEO; on the leader, HW <= the LEO of every ISR member (and of
//     every member an ISR change in flight would add), and the HW never
//     decreases while it leads;
//   - consumers read only below the HW; followers read up to the LEO.
package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"strand/internal/log"
	"strand/internal/record"
	"strand/internal/txn"
)

// ErrMultipleProducerBatches rejects a record set carrying more than one batch
// with a producer id; idempotent clients send one batch per partition.
var ErrMultipleProducerBatches = errors.New("an idempotent produce must carry one batch per partition")

// Errors of leader appends and of waiting for replication; the server maps
// them to Kafka error codes.
var (
	// ErrNotLeader: this node does not (or no longer) lead the partition at
	// the epoch of the append.
	ErrNotLeader = errors.New("not the leader of the partition")
	// ErrNotEnoughReplicas: an acks=all append was refused because the ISR
	// is smaller than min.insync.replicas.
	ErrNotEnoughReplicas = errors.New("ISR is smaller than min.insync.replicas")
	// ErrNotEnoughReplicasAfterAppend: an acks=all append reached the high
	// watermark, but the ISR had shrunk below min.insync.replicas by then.
	ErrNotEnoughReplicasAfterAppend = errors.New("ISR shrank below min.insync.replicas after the append")
)

// Partition is one hosted partition.
type Partition struct {
	Topic string
	Index int32

	self    int32                   // this node's id
	logp    atomic.Pointer[log.Log] // the log; replaced only by a move between log dirs (move.go)
	logger  *slog.Logger
	kickISR func() // asks the manager's ISR maintenance to run soon; nil for none
	// verifyHook asks for a background verification of the log (set by the
	// manager; nil for none).
	verifyHook func(*Partition)
	// dirFailed takes the partition's log dir offline after an I/O error
	// (set by the manager, dirfail.go; nil for none). See ioCheck.
	dirFailed func(*Partition, error)
	readErrs  readErrLog
	// leaseValid and leaseTimeout are the manager's lease (lease.go); nil
	// leaseValid: always valid.
	leaseValid   func(time.Time) bool
	leaseTimeout func() time.Duration

	mu          sync.Mutex // guards producers, snapOffset, leader, leaderEpoch, appendTime, closed, truncations; serialises appends and truncations
	producers   *txn.State
	snapOffset  int64 // offset of the newest producer-state snapshot on disk, -1 if none (snapshot.go)
	leaderEpoch int32 // the leader epoch of the latest metadata (-1 before any)
	leader      int32 // the partition's leader per metadata (-1: none)
	appendTime  bool  // message.timestamp.type=LogAppendTime
	closed      bool  // dropped by the manager: no more writes
	truncations int   // truncations so far (a move between log dirs restarts after one, move.go)

	rmu sync.Mutex // guards rs; lock order: mu, then rmu
	rs  replState
	hw  atomic.Int64 // the high watermark; written with rmu held

	txns          *txn.Txns                        // open and aborted transactions; guarded by mu (txn.go)
	firstUnstable atomic.Int64                     // txns' first open offset (MaxInt64: none); written with mu held
	aborted       atomic.Pointer[[]txn.AbortedTxn] // txns' aborted ranges; written with mu held

	wmu     sync.Mutex // guards waiters, changeFns
	waiters map[chan struct{}]struct{}
	// changeFns are called on every notify (OnChange); nil until the first.
	changeFns map[*func()]struct{}
}

func openPartition(dir, topic string, index, self int32, cfg log.Config, appendTime bool, logger *slog.Logger, opts ...log.OpenOptions) (*Partition, error) {
	var o log.OpenOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	l, err := log.OpenWith(dir, cfg, logger, o)
	if err != nil {
		return nil, fmt.Errorf("partition %s-%d: %w", topic, index, err)
	}
	p := &Partition{Topic: topic, Index: index, self: self, logger: logger,
		leader: -1, leaderEpoch: -1, appendTime: appendTime, waiters: map[chan struct{}]struct{}{}}
	p.logp.Store(l)
	p.rs.blockedEpoch = -1
	// Until a leader tells it more (or it leads and its followers catch
	// up), a replica only knows its log start to be committed.
	p.hw.Store(l.LogStartOffset())
	start := time.Now()
	err = p.rebuildProducers()
	if errors.Is(err, record.ErrCorrupt) {
		// Damage that a clean start-up did not read: find and record it all,
		// then replay the intact batches.
		logger.Error("partition log is damaged on disk; verifying it", "dir", dir, "err", err)
		if verr := l.Verify(nil); verr != nil && !errors.Is(verr, record.ErrCorrupt) {
			err = errors.Join(err, verr)
		} else {
			err = p.rebuildProducers()
		}
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("partition %s-%d: %w", topic, index, err)
	}
	if p.producers.Len() > 0 {
		logger.Debug("rebuilt producer state", "producers", p.producers.Len(), "took", time.Since(start))
	}
	if err := l.Corruption(); err != nil {
		logger.Error("partition log is corrupt; reads of the damaged range fail with CORRUPT_MESSAGE", "dir", dir, "err", err)
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
	// LeaderEpoch is the epoch the append was made in (see WaitReplicated).
	LeaderEpoch int32
}

// Append validates records (a produce request's record set for this
// partition) against the producer table and appends them as leader, with
// acks=1 semantics. See AppendAcks.
func (p *Partition) Append(records []byte, now time.Time) (AppendResult, error) {
	return p.AppendAcks(records, now, 1)
}

// AppendAcks validates records against the producer table and appends them
// as leader. It fails with ErrNotLeader unless this node leads the partition
// per the latest metadata applied, and, for acks=-1 (all), with
// ErrNotEnoughReplicas while the ISR is smaller than min.insync.replicas.
// It does not wait for durability (WaitDurable) or replication
// (WaitReplicated). With an ISR of only this node the high watermark moves
// to the new LEO before it returns.
func (p *Partition) AppendAcks(records []byte, now time.Time, acks int16) (AppendResult, error) {
	// The producer check needs the batch headers before the log validates the
	// CRCs; an invalid batch is rejected by the log without touching the table.
	var one [1]record.Header // a produce carries one batch per partition: no allocation
	hdrs := one[:0]
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
	if p.closed || p.leader != p.self {
		return AppendResult{}, fmt.Errorf("%s-%d: %w (leader %d)", p.Topic, p.Index, ErrNotLeader, p.leader)
	}
	if !p.actsAsLeaderLocked(now) {
		return AppendResult{}, fmt.Errorf("%s-%d: %w (stepped down: lease lost and no ISR follower fetching)", p.Topic, p.Index, ErrNotLeader)
	}
	if acks == -1 {
		p.rmu.Lock()
		isr, minISR := len(p.rs.isr), p.rs.minISR
		p.rmu.Unlock()
		if isr < minISR {
			return AppendResult{}, fmt.Errorf("%s-%d: %w: ISR has %d, min.insync.replicas is %d", p.Topic, p.Index, ErrNotEnoughReplicas, isr, minISR)
		}
	}
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
			return AppendResult{BaseOffset: dup.FirstOffset, LastOffset: dup.LastOffset, LogAppendTime: -1, Duplicate: true, LeaderEpoch: p.leaderEpoch}, nil
		}
	}
	info, err := p.lg().AppendAsLeader(records, log.AppendOptions{LeaderEpoch: p.leaderEpoch, LogAppendTime: p.appendTime, Now: now})
	if err != nil {
		p.ioCheck(err)
		return AppendResult{}, err
	}
	for _, h := range info.Headers {
		p.producers.Update(h)
		p.trackTxnLocked(h, nil)
	}
	p.rmu.Lock()
	p.advanceHWLocked()
	p.rmu.Unlock()
	p.notify()
	return AppendResult{BaseOffset: info.BaseOffset, LastOffset: info.LastOffset, LogAppendTime: info.LogAppendTime, LeaderEpoch: p.leaderEpoch}, nil
}

// WaitDurable returns once every offset below upTo is as durable as the
// topic's flush policy requires (fsynced, by default).
func (p *Partition) WaitDurable(upTo int64) error {
	err := p.lg().WaitFlushed(upTo)
	p.ioCheck(err)
	return err
}

// Read returns batches from offset up to the high watermark (see
// log.Log.Read): what consumers may see.
func (p *Partition) Read(offset int64, maxBytes int, minOne bool) ([]byte, error) {
	hw := p.HighWatermark()
	if offset == hw { // caught up: nothing to read, no disk read (HW is always in range)
		return nil, nil
	}
	return p.lg().Read(offset, maxBytes, hw, minOne)
}

// ReadReplica returns batches from offset up to the log end offset: what a
// follower fetches.
func (p *Partition) ReadReplica(offset int64, maxBytes int, minOne bool) ([]byte, error) {
	if offset == p.LogEndOffset() { // caught up
		return nil, nil
	}
	return p.lg().Read(offset, maxBytes, math.MaxInt64, minOne)
}

// HighWatermark is the offset below which records are committed and
// readable by consumers: on the leader the smallest LEO of the ISR members,
// on a follower the leader's HW as of its last fetch (capped at its own
// LEO). It is never below the log start offset nor above the LEO.
func (p *Partition) HighWatermark() int64 {
	return max(p.hw.Load(), p.lg().LogStartOffset())
}

// LogEndOffset is the offset the next record will get.
func (p *Partition) LogEndOffset() int64 { return p.lg().LogEndOffset() }

// LogStartOffset is the first readable offset.
func (p *Partition) LogStartOffset() int64 { return p.lg().LogStartOffset() }

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

// EndOffsetForEpoch answers OffsetForLeaderEpoch (KIP-101/KIP-279) for a
// leader epoch: the largest epoch <= epoch this partition's log knows and
// the offset where it ends (the log end offset for the latest epoch);
// (-1, -1) if the epoch is undefined or above every known epoch. See
// log.Log.EndOffsetForEpoch.
func (p *Partition) EndOffsetForEpoch(epoch int32) (leaderEpoch int32, endOffset int64) {
	return p.lg().EndOffsetForEpoch(epoch)
}

// EpochForOffset returns the leader epoch of the batch holding off, -1 if
// unknown (see log.Log.EpochForOffset).
func (p *Partition) EpochForOffset(off int64) int32 { return p.lg().EpochForOffset(off) }

// Log exposes the partition's log for offset look-ups and admin operations.
func (p *Partition) Log() *log.Log { return p.lg() }

// lg is the partition's current log.
func (p *Partition) lg() *log.Log { return p.logp.Load() }

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

// OnChange registers fn to be called on every change Watch signals:
// records appended, the high watermark, last stable offset or leadership
// changed, the partition closed. It lets a watcher of many partitions
// (a fetch session) learn which one changed without a channel each. fn runs
// with the partition's waiter lock held, after the change is visible: it
// must be short, never block, and never call into the partition. The
// returned function unregisters it.
func (p *Partition) OnChange(fn func()) (cancel func()) {
	key := &fn
	p.wmu.Lock()
	if p.changeFns == nil {
		p.changeFns = map[*func()]struct{}{}
	}
	p.changeFns[key] = struct{}{}
	p.wmu.Unlock()
	return func() {
		p.wmu.Lock()
		delete(p.changeFns, key)
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
	for fn := range p.changeFns {
		(*fn)()
	}
}

func (p *Partition) configure(cfg log.Config, appendTime bool) {
	p.lg().SetConfig(cfg)
	p.mu.Lock()
	p.appendTime = appendTime
	p.mu.Unlock()
}

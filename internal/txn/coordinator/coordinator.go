// Package coordinator is the transaction coordinator (KIP-98): it owns the
// transactional ids whose partition of the compacted internal topic
// __transaction_state this broker leads, hands out producer ids and epochs
// to transactional producers (fencing older epochs), records which
// partitions each transaction touches, and ends transactions by writing
// COMMIT or ABORT markers to those partitions.
//
// Invariants:
//   - every state change of a transactional id is appended (acks=all) to its
//     __transaction_state partition before it takes effect or is answered;
//   - one transition per id at a time (meta.busy); others get
//     CONCURRENT_TRANSACTIONS;
//   - markers are written only after PrepareCommit/PrepareAbort is durable,
//     and Complete* only after every marker is written, so a coordinator
//     that loads a Prepare* state finishes it (failover);
//   - epochs only grow for a producer id; a request with an older epoch is
//     refused (PRODUCER_FENCED / INVALID_PRODUCER_EPOCH).
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic is the internal topic holding transaction state.
const Topic = "__transaction_state"

// State is a transaction's state, with Kafka's numbering.
type State int8

// Transaction states.
const (
	Empty State = iota
	Ongoing
	PrepareCommit
	PrepareAbort
	CompleteCommit
	CompleteAbort
	Dead
	PrepareEpochFence
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// String is Kafka's name of the state, as DescribeTransactions reports it.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int8(s))
}

// Log is the coordinator's access to its __transaction_state partitions.
type Log interface {
	// Append appends records to partition p with acks=all and returns once
	// they are durable and replicated to the ISR.
	Append(ctx context.Context, p int32, records []byte) error
	// Read returns batches from offset (see replica.Partition.ReadReplica).
	Read(p int32, offset int64, maxBytes int) ([]byte, error)
	// Bounds returns the partition's log start and end offsets.
	Bounds(p int32) (start, end int64, err error)
}

// MarkerWriter writes transaction markers to data partitions' leaders.
type MarkerWriter interface {
	// WriteMarkers writes a COMMIT (commit) or ABORT marker of producer
	// pid at epoch to every partition in parts, returning once every one
	// is written (acks=all), or the first error.
	WriteMarkers(ctx context.Context, pid int64, epoch int16, commit bool, coordinatorEpoch int32, parts map[string][]int32) error
}

// Config configures a Coordinator.
type Config struct {
	Partitions     int32         // transaction.state.log.num.partitions
	MaxTimeout     time.Duration // transaction.max.timeout.ms
	AbortInterval  time.Duration // transaction.abort.timed.out.transaction.cleanup.interval.ms
	IDExpiration   time.Duration // transactional.id.expiration.ms
	NextProducerID func(ctx context.Context) (int64, error)
	Logger         *slog.Logger
}

// meta is one transactional id's state. Guarded by Coordinator.mu.
type meta struct {
	id        string
	partition int32 // its __transaction_state partition
	pid       int64
	epoch     int16
	timeoutMs int32
	state     State
	parts     map[string]map[int32]bool
	startMs   int64 // when the current transaction began (Ongoing), else -1
	updateMs  int64
	busy      bool // a transition is being written
}

func (m *meta) add(topic string, p int32) {
	if m.parts[topic] == nil {
		m.parts[topic] = map[int32]bool{}
	}
	m.parts[topic][p] = true
}

func (m *meta) has(topic string, p int32) bool { return m.parts[topic][p] }

func (m *meta) sortedTopics() []string {
	ts := make([]string, 0, len(m.parts))
	for t := range m.parts {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// clone returns a deep copy.
func (m *meta) clone() *meta {
	c := *m
	c.parts = make(map[string]map[int32]bool, len(m.parts))
	for t, ps := range m.parts {
		for p := range ps {
			c.add(t, p)
		}
	}
	return &c
}

// partitionList is parts as topic -> sorted partitions.
func (m *meta) partitionList() map[string][]int32 {
	out := map[string][]int32{}
	for t, ps := range m.parts {
		for p := range ps {
			out[t] = append(out[t], p)
		}
		slices.Sort(out[t])
	}
	return out
}

// Coordinator is the transaction coordinator of one broker.
type Coordinator struct {
	cfg     Config
	log     Log
	markers MarkerWriter
	logger  *slog.Logger

	mu      sync.Mutex      // guards loaded, loading, txns, closed
	loaded  map[int32]int32 // partition -> coordinator epoch (its leader epoch)
	loading map[int32]bool
	txns    map[string]*meta
	closed  bool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background completions and the sweeper
}

// New returns a coordinator with nothing loaded; Close stops it.
func New(cfg Config, l Log, markers MarkerWriter) *Coordinator {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AbortInterval <= 0 {
		cfg.AbortInterval = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{cfg: cfg, log: l, markers: markers, logger: cfg.Logger,
		loaded: map[int32]int32{}, loading: map[int32]bool{}, txns: map[string]*meta{}, ctx: ctx, cancel: cancel}
	c.wg.Add(1)
	go c.sweep()
	return c
}

// PartitionFor returns the __transaction_state partition of a
// transactional id among n: abs(javaHashCode(id)) % n, as Kafka does.
func PartitionFor(id string, n int32) int32 {
	var h int32
	for _, r := range id {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + (0xd800 + (r>>10)&0x3ff)
			h = 31*h + (0xdc00 + r&0x3ff)
			continue
		}
		h = 31*h + r
	}
	return (h & 0x7fffffff) % n
}

// Load replays partition p (led at coordinatorEpoch) and serves its ids;
// transactions found in PrepareCommit/PrepareAbort are completed in the
// background.
func (c *Coordinator) Load(p int32, coordinatorEpoch int32) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("transaction coordinator is closed")
	}
	if _, ok := c.loaded[p]; ok || c.loading[p] {
		c.mu.Unlock()
		return nil
	}
	c.loading[p] = true
	c.mu.Unlock()
	start := time.Now()
	txns, err := replay(c.log, p)
	c.mu.Lock()
	defer c.mu.Unlock()
	current := c.loading[p]
	delete(c.loading, p)
	if err != nil {
		return fmt.Errorf("load %s-%d: %w", Topic, p, err)
	}
	if !current || c.closed {
		return nil
	}
	c.loaded[p] = coordinatorEpoch
	var unfinished []*meta
	for id, m := range txns {
		c.txns[id] = m
		if m.state == PrepareCommit || m.state == PrepareAbort {
			m.busy = true
			unfinished = append(unfinished, m)
		}
	}
	for _, m := range unfinished {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.complete(m.id, m.clone(), coordinatorEpoch)
		}()
	}
	c.logger.Info("loaded transactions", "partition", p, "transactional_ids", len(txns), "unfinished", len(unfinished), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Unload drops partition p's ids (this broker stopped leading it).
func (c *Coordinator) Unload(p int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.loaded, p)
	delete(c.loading, p)
	for id, m := range c.txns {
		if m.partition == p {
			delete(c.txns, id)
		}
	}
}

// Close stops background work. Requests after Close get NOT_COORDINATOR.
func (c *Coordinator) Close() {
	c.mu.Lock()
	c.closed = true
	c.loaded = map[int32]int32{}
	c.txns = map[string]*meta{}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// lookupLocked returns the id's partition's coordinator epoch, or the
// error code for an id not served here. Caller holds mu.
func (c *Coordinator) lookupLocked(id string) (int32, int32, int16) {
	p := PartitionFor(id, c.cfg.Partitions)
	if c.loading[p] {
		return p, 0, kerr.CoordinatorLoadInProgress.Code
	}
	epoch, ok := c.loaded[p]
	if !ok || c.closed {
		return p, 0, kerr.NotCoordinator.Code
	}
	return p, epoch, 0
}

// persist appends m's record (nil m: a tombstone for id) to partition p.
func (c *Coordinator) persist(ctx context.Context, p int32, id string, m *meta) error {
	var value []byte
	if m != nil {
		value = encodeValue(m)
	}
	batch, err := buildBatch(time.Now(), encodeKey(id), value)
	if err != nil {
		return err
	}
	return c.log.Append(ctx, p, batch)
}

// install makes m the state of its id if the partition is still loaded at
// coordinatorEpoch, with busy set as given. It reports whether it did.
func (c *Coordinator) install(m *meta, coordinatorEpoch int32, busy bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.loaded[m.partition]; !ok || e != coordinatorEpoch {
		return false
	}
	m.busy = busy
	c.txns[m.id] = m
	return true
}

// release clears the busy flag of id's current state (a failed transition).
func (c *Coordinator) release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.txns[id]; m != nil {
		m.busy = false
	}
}

// writeErrorCode maps a failed append of __transaction_state to the code
// clients retry on.
func writeErrorCode(err error) int16 {
	if errors.Is(err, ErrNotLeader) {
		return kerr.NotCoordinator.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}

// ErrNotLeader is what a Log returns when this broker no longer leads the
// partition; the server maps its replica errors to it.
var ErrNotLeader = errors.New("not the leader of the transaction state partition")

// complete finishes a transaction whose PrepareCommit/PrepareAbort is
// durable (m, at coordinatorEpoch): writes the markers, retrying until they
// are written or the partition is no longer loaded at that epoch, then
// persists CompleteCommit/CompleteAbort. It returns the error code for the
// client (0 on success). m must be marked busy by the caller.
func (c *Coordinator) complete(id string, m *meta, coordinatorEpoch int32) int16 {
	commit := m.state == PrepareCommit
	parts := m.partitionList()
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		if !c.stillLoaded(m.partition, coordinatorEpoch) {
			return kerr.NotCoordinator.Code
		}
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		err := c.markers.WriteMarkers(ctx, m.pid, m.epoch, commit, coordinatorEpoch, parts)
		cancel()
		if err == nil {
			break
		}
		c.logger.Warn("writing transaction markers; retrying", "transactional_id", id, "producer_id", m.pid, "commit", commit, "err", err)
		select {
		case <-c.ctx.Done():
			return kerr.NotCoordinator.Code
		case <-time.After(backoff):
		}
	}
	done := m.clone()
	done.state = CompleteAbort
	if commit {
		done.state = CompleteCommit
	}
	done.parts, done.startMs, done.updateMs = map[string]map[int32]bool{}, -1, time.Now().UnixMilli()
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		if !c.stillLoaded(m.partition, coordinatorEpoch) {
			return kerr.NotCoordinator.Code
		}
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		err := c.persist(ctx, m.partition, id, done)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-c.ctx.Done():
			return kerr.NotCoordinator.Code
		case <-time.After(backoff):
		}
	}
	if !c.install(done, coordinatorEpoch, false) {
		return kerr.NotCoordinator.Code
	}
	return 0
}

func (c *Coordinator) stillLoaded(p, coordinatorEpoch int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.loaded[p]
	return ok && e == coordinatorEpoch && !c.closed
}

// end moves m (busy, a clone of the id's state, Ongoing) to
// PrepareCommit/PrepareAbort at epoch, persists it and completes it.
func (c *Coordinator) end(ctx context.Context, m *meta, commit bool, coordinatorEpoch int32) int16 {
	m.state = PrepareAbort
	if commit {
		m.state = PrepareCommit
	}
	m.updateMs = time.Now().UnixMilli()
	if err := c.persist(ctx, m.partition, m.id, m); err != nil {
		c.release(m.id)
		return writeErrorCode(err)
	}
	if !c.install(m.clone(), coordinatorEpoch, true) { // the completion holds busy
		return kerr.NotCoordinator.Code
	}
	return c.complete(m.id, m.clone(), coordinatorEpoch)
}

// sweep aborts transactions past their timeout (bumping the epoch, which
// fences the producer) and removes ids idle past transactional.id.expiration.ms.
func (c *Coordinator) sweep() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.AbortInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixMilli()
		type job struct {
			m     *meta
			epoch int32
		}
		var aborts, expire []job
		c.mu.Lock()
		for _, m := range c.txns {
			if m.busy {
				continue
			}
			e := c.loaded[m.partition]
			switch {
			case m.state == Ongoing && m.startMs >= 0 && now > m.startMs+int64(m.timeoutMs):
				m.busy = true
				aborts = append(aborts, job{m.clone(), e})
			case (m.state == Empty || m.state == CompleteCommit || m.state == CompleteAbort) &&
				c.cfg.IDExpiration > 0 && now > m.updateMs+c.cfg.IDExpiration.Milliseconds():
				m.busy = true
				expire = append(expire, job{m.clone(), e})
			}
		}
		c.mu.Unlock()
		for _, j := range aborts {
			m := j.m
			c.logger.Info("aborting a timed out transaction", "transactional_id", m.id, "producer_id", m.pid, "epoch", m.epoch)
			if m.epoch < math.MaxInt16-1 {
				m.epoch++ // fence the producer: its next request fails and it must re-init
			}
			ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
			c.end(ctx, m, false, j.epoch)
			cancel()
		}
		for _, j := range expire {
			ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
			err := c.persist(ctx, j.m.partition, j.m.id, nil)
			cancel()
			c.mu.Lock()
			if cur := c.txns[j.m.id]; cur != nil && err == nil && c.loaded[j.m.partition] == j.epoch {
				delete(c.txns, j.m.id)
				c.logger.Info("expired transactional id", "transactional_id", j.m.id)
			} else if cur != nil {
				cur.busy = false
			}
			c.mu.Unlock()
		}
	}
}

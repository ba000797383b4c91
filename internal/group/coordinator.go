// Package group is the consumer group coordinator for Kafka's classic group
// protocol: membership and rebalances (JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup), committed offsets (OffsetCommit, OffsetFetch, OffsetDelete) and
// the admin APIs over both (DescribeGroups, ListGroups, DeleteGroups). It
// follows the behaviour of Kafka's GroupCoordinator, error code for error code.
//
// A group belongs to one partition of the internal topic __consumer_offsets,
// PartitionFor(group). The coordinator serves the groups of the partitions it
// has loaded (Load, called when this broker becomes the partition's leader)
// and answers NOT_COORDINATOR for every other group. All durable state is
// records in that partition, in Kafka's own formats so that Kafka tools can
// read the topic: OffsetCommitKey v1 / OffsetCommitValue v3 for a committed
// offset, GroupMetadataKey v2 / GroupMetadataValue v3 for a group's
// generation, protocol, leader and members; a record with a nil value (a
// tombstone) deletes its key. Load replays the partition to rebuild the
// in-memory state, so the partition can move between brokers.
//
// The coordinator reaches the partition only through the Log interface, so it
// can be unit tested without a broker and a replicated partition can stand
// behind it later.
//
// Concurrency: Coordinator.mu guards the set of partitions (shards), each
// shard's mutex guards its group map, and each group's mutex guards everything
// about that group. shard.mu is innermost (taken under Coordinator.mu or
// group.mu, never the reverse), and Coordinator.mu and group.mu are never
// held together. Timer callbacks (session, rebalance and sync timeouts, the
// offset expiry sweep) run under Coordinator.runMu (read), which Close takes
// (write) alone to wait for them; they take the group lock and check that
// their timer is still the current one before acting. Durability waits run
// in goroutines that Close also waits for.
//
// Invariants:
//   - an offset commit is visible to OffsetFetch only once its record is
//     durable (Log.WaitDurable); a group becomes Stable only once the record
//     holding its assignment is durable;
//   - a group's records are appended while its lock is held, so their order
//     in the log is the order in which its state changed, and replaying the
//     log reproduces the state;
//   - a group's generation only grows, also across Unload and Load: every
//     completed rebalance is persisted;
//   - records read back from the log are untrusted: decoding never panics and
//     a record that does not decode is skipped with a log line
//     (FuzzDecodeRecord).
package group

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic is the internal topic holding group state and committed offsets.
const Topic = "__consumer_offsets"

// Log is the coordinator's access to the partitions of __consumer_offsets.
// The broker implements it over its replica partitions; tests use memory.
type Log interface {
	// Append appends records (whole v2 record batches) to a partition as its
	// leader, without waiting for durability, and returns where they end.
	// Errors wrap ErrNotLeader if this broker does not lead the partition,
	// ErrUnavailable if it cannot take writes now (too few in-sync
	// replicas), ErrTooLarge if the batch exceeds the partition's limit.
	Append(partition int32, records []byte) (Position, error)
	// WaitDurable returns once the records before pos are durable: fsynced
	// and committed (replicated to the in-sync replicas) while this broker
	// still leads the partition in pos.Epoch. Errors wrap ErrNotLeader or
	// ErrUnavailable (e.g. a timeout) as for Append.
	WaitDurable(partition int32, pos Position) error
	// Read returns whole batches from the one holding offset, up to about
	// maxBytes (always at least one batch) and at most up to the log end
	// offset, or nothing at the end.
	Read(partition int32, offset int64, maxBytes int) ([]byte, error)
	// Bounds returns the first offset and the log end offset of a
	// partition. Load reads up to the log end, not the high watermark: on a
	// newly elected leader everything in its log is the partition's content,
	// and its high watermark may still lag.
	Bounds(partition int32) (start, end int64, err error)
}

// Position is where an append ended.
type Position struct {
	End   int64 // the offset after the last appended record
	Epoch int32 // the leader epoch of the append
}

// Errors a Log returns (wrapped); the coordinator maps them to Kafka codes.
var (
	ErrNotLeader   = errors.New("not the leader of the __consumer_offsets partition")
	ErrUnavailable = errors.New("the __consumer_offsets partition cannot take writes now")
	ErrTooLarge    = errors.New("record batch too large for the __consumer_offsets partition")
)

// Clock is the coordinator's time source; tests replace it to step timeouts by hand.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d unless the timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started and reports whether it did.
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Config holds the coordinator's settings; the broker fills them from its
// properties (names in the comments). Zero values take Kafka's defaults,
// except InitialRebalanceDelay, where zero means no delay.
type Config struct {
	Partitions             int32         // offsets.topic.num.partitions, until SetPartitionCount
	InitialRebalanceDelay  time.Duration // group.initial.rebalance.delay.ms
	MinSessionTimeout      time.Duration // group.min.session.timeout.ms
	MaxSessionTimeout      time.Duration // group.max.session.timeout.ms
	MaxGroupSize           int           // group.max.size
	OffsetsRetention       time.Duration // offsets.retention.minutes
	RetentionCheckInterval time.Duration // offsets.retention.check.interval.ms
	MaxMetadataSize        int           // offset.metadata.max.bytes
	// NewMemberJoinTimeout bounds how long a new member's first JoinGroup may
	// wait for its rebalance (Kafka's fixed 5 minutes).
	NewMemberJoinTimeout time.Duration
	// PartitionExists reports whether a topic partition exists, for offset
	// commits and deletes (UNKNOWN_TOPIC_OR_PARTITION); nil accepts all.
	PartitionExists func(topic string, partition int32) bool
	// Leads reports whether the metadata names this broker the leader of a
	// __consumer_offsets partition. Such a partition that is not loaded yet
	// (its Load has not started) answers COORDINATOR_LOAD_IN_PROGRESS, as
	// one being loaded does, rather than NOT_COORDINATOR: FindCoordinator
	// already named this broker, and clients retry the former in place
	// (kafkajs fails a transactional offset commit on the latter). nil: no
	// partition is led before its Load.
	Leads  func(partition int32) bool
	Clock  Clock
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = 50
	}
	if c.MinSessionTimeout <= 0 {
		c.MinSessionTimeout = 6 * time.Second
	}
	if c.MaxSessionTimeout <= 0 {
		c.MaxSessionTimeout = 30 * time.Minute
	}
	if c.MaxGroupSize <= 0 {
		c.MaxGroupSize = math.MaxInt32
	}
	if c.OffsetsRetention <= 0 {
		c.OffsetsRetention = 7 * 24 * time.Hour
	}
	if c.RetentionCheckInterval <= 0 {
		c.RetentionCheckInterval = 10 * time.Minute
	}
	if c.MaxMetadataSize <= 0 {
		c.MaxMetadataSize = 4096
	}
	c.MaxMetadataSize = min(c.MaxMetadataSize, maxString)
	if c.NewMemberJoinTimeout <= 0 {
		c.NewMemberJoinTimeout = 5 * time.Minute
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Coordinator is the group coordinator of one broker.
type Coordinator struct {
	cfg    Config
	log    Log
	clock  Clock
	logger *slog.Logger

	numPartitions atomic.Int32

	mu      sync.RWMutex // guards shards, stopped
	shards  map[int32]*shard
	stopped bool // Close has begun: no more loads

	// runMu is held (read) by timer callbacks while they run and (write) by
	// Close to wait for them; it guards closed.
	runMu  sync.RWMutex
	closed bool

	sweepMu sync.Mutex // guards sweep
	sweep   Timer

	asyncMu     sync.Mutex // guards asyncClosed and wg.Add
	asyncClosed bool
	wg          sync.WaitGroup // durability waits in flight
}

// shard is the state of one loaded (or loading) __consumer_offsets partition.
type shard struct {
	partition int32

	mu     sync.Mutex // guards loaded, groups, txnOffsets
	loaded bool
	groups map[string]*group
	// txnOffsets are the pending offsets of open transactions, by producer id (txn.go).
	txnOffsets map[int64]pendingTxn
	// early are markers (producer id -> commit) that arrived while loading (txn.go).
	early map[int64]bool
}

// New returns a coordinator with no partition loaded. Close stops it.
func New(cfg Config, log Log) *Coordinator {
	cfg = cfg.withDefaults()
	c := &Coordinator{cfg: cfg, log: log, clock: cfg.Clock, logger: cfg.Logger, shards: map[int32]*shard{}}
	c.numPartitions.Store(cfg.Partitions)
	c.scheduleSweep()
	return c
}

// SetPartitionCount sets the number of __consumer_offsets partitions that
// PartitionFor spreads groups over: the topic's real count once it exists.
func (c *Coordinator) SetPartitionCount(n int32) {
	if n > 0 {
		c.numPartitions.Store(n)
	}
}

// PartitionFor returns the __consumer_offsets partition of a group.
func (c *Coordinator) PartitionFor(group string) int32 {
	return PartitionFor(group, c.numPartitions.Load())
}

// PartitionFor returns the partition of a group among n partitions, as Kafka
// computes it: Utils.abs(group.hashCode()) % n, with Java's String.hashCode
// over UTF-16 code units and Utils.abs(x) = x & 0x7fffffff.
func PartitionFor(group string, n int32) int32 {
	var h int32
	for _, r := range group {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			h = 31*h + r1
			h = 31*h + r2
			continue
		}
		h = 31*h + r
	}
	return (h & 0x7fffffff) % n
}

// Load replays a __consumer_offsets partition and starts serving its groups.
// The broker calls it when it becomes the partition's leader. Until it
// returns, requests for those groups get COORDINATOR_LOAD_IN_PROGRESS. Loading
// a partition that is loaded (or loading) does nothing.
func (c *Coordinator) Load(partition int32) error {
	sh := &shard{partition: partition, groups: map[string]*group{}}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errors.New("group coordinator is closed")
	}
	if c.shards[partition] != nil {
		c.mu.Unlock()
		return nil
	}
	c.shards[partition] = sh
	c.mu.Unlock()

	start := c.clock.Now()
	groups, stats, err := c.replay(sh)
	loaded := make([]*group, 0, len(groups)) // groups is the shard's map once installed
	for _, g := range groups {
		loaded = append(loaded, g)
	}
	c.mu.Lock()
	current := c.shards[partition] == sh
	if err != nil && current {
		delete(c.shards, partition)
	}
	if err == nil && current {
		sh.mu.Lock()
		sh.groups, sh.loaded = groups, true
		sh.mu.Unlock()
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("load %s-%d: %w", Topic, partition, err)
	}
	if !current {
		return nil // unloaded while loading
	}
	c.applyEarlyMarkers(sh) // txn.go
	for _, g := range loaded {
		g.mu.Lock()
		if g.state != Dead {
			for _, m := range g.members {
				c.scheduleHeartbeat(g, m, m.session())
			}
		}
		g.mu.Unlock()
	}
	c.logger.Info("loaded consumer groups", "partition", partition, "groups", len(loaded),
		"offsets", stats.offsets, "records", stats.records, "skipped", stats.skipped, "took", c.clock.Now().Sub(start).Round(time.Millisecond))
	return nil
}

// Unload drops the in-memory state of a partition's groups; the broker calls
// it when it stops leading the partition. Waiting JoinGroup and SyncGroup
// requests are answered NOT_COORDINATOR, as are later requests for the
// partition's groups.
func (c *Coordinator) Unload(partition int32) {
	c.mu.Lock()
	sh := c.shards[partition]
	delete(c.shards, partition)
	c.mu.Unlock()
	if sh == nil {
		return
	}
	sh.mu.Lock()
	groups := sh.groups
	sh.groups, sh.loaded = map[string]*group{}, false
	sh.mu.Unlock()
	for _, g := range groups {
		g.mu.Lock()
		c.unloadGroup(g)
		g.mu.Unlock()
	}
	if len(groups) > 0 {
		c.logger.Info("unloaded consumer groups", "partition", partition, "groups", len(groups))
	}
}

// Partitions returns the partitions loaded or loading.
func (c *Coordinator) Partitions() []int32 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]int32, 0, len(c.shards))
	for p := range c.shards {
		out = append(out, p)
	}
	return out
}

// Close unloads every partition and stops the coordinator's timers and
// background work, waiting for what is running.
func (c *Coordinator) Close() {
	c.runMu.Lock()
	already := c.closed
	c.closed = true
	c.runMu.Unlock()
	if already {
		return
	}
	c.sweepMu.Lock()
	if c.sweep != nil {
		c.sweep.Stop()
	}
	c.sweepMu.Unlock()
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	for _, p := range c.Partitions() {
		c.Unload(p)
	}
	c.asyncMu.Lock()
	c.asyncClosed = true
	c.asyncMu.Unlock()
	c.wg.Wait()
}

// run runs a timer callback unless the coordinator is closed; Close waits
// for running callbacks.
func (c *Coordinator) run(f func()) {
	c.runMu.RLock()
	defer c.runMu.RUnlock()
	if !c.closed {
		f()
	}
}

// async runs f in a goroutine that Close waits for. It reports false (and
// does not run f) once the coordinator is closing.
func (c *Coordinator) async(f func()) bool {
	c.asyncMu.Lock()
	defer c.asyncMu.Unlock()
	if c.asyncClosed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// shardFor returns the loaded shard holding a group, or the error code for
// a group this coordinator does not serve now.
func (c *Coordinator) shardFor(group string) (*shard, int16) {
	p := c.PartitionFor(group)
	c.mu.RLock()
	sh := c.shards[p]
	c.mu.RUnlock()
	if sh == nil {
		if c.cfg.Leads != nil && c.cfg.Leads(p) {
			return nil, kerr.CoordinatorLoadInProgress.Code
		}
		return nil, kerr.NotCoordinator.Code
	}
	sh.mu.Lock()
	loaded := sh.loaded
	sh.mu.Unlock()
	if !loaded {
		return nil, kerr.CoordinatorLoadInProgress.Code
	}
	return sh, 0
}

// get returns a group, or nil.
func (sh *shard) get(name string) *group {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.groups[name]
}

// getOrCreate returns a group, creating it (Empty) if create is set.
func (sh *shard) getOrCreate(name string, create bool, now time.Time) *group {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if g := sh.groups[name]; g != nil || !create {
		return g
	}
	if !sh.loaded {
		return nil
	}
	g := newGroup(name, sh, now)
	sh.groups[name] = g
	return g
}

// remove drops a (Dead) group from the shard. Called with g.mu held.
func (sh *shard) remove(g *group) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.groups[g.name] == g {
		delete(sh.groups, g.name)
	}
}

// all returns the shard's groups.
func (sh *shard) all() []*group {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]*group, 0, len(sh.groups))
	for _, g := range sh.groups {
		out = append(out, g)
	}
	return out
}

// loadedShards returns the shards serving requests and whether any is still loading.
func (c *Coordinator) loadedShards() ([]*shard, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*shard
	loading := false
	for _, sh := range c.shards {
		sh.mu.Lock()
		if sh.loaded {
			out = append(out, sh)
		} else {
			loading = true
		}
		sh.mu.Unlock()
	}
	return out, loading
}

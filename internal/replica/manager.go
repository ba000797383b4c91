package replica

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"strand/internal/atomicfile"
	"strand/internal/config"
	"strand/internal/log"
	"strand/internal/metadata"
)

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Manager opens, configures and removes the partitions this node hosts so that
// they follow the metadata image (Apply), replicates the partitions it
// follows (one fetcher per leader broker), maintains the ISR of those it
// leads (RunISR), and runs retention and compaction.
//
// Invariant: after Apply, every hosted partition whose leader is another
// broker is assigned to exactly one fetcher, that of its leader, and no
// fetcher holds a partition this node leads or no longer hosts.
type Manager struct {
	dir    string                    // the first log dir: node state and the HW checkpoint
	dirs   []string                  // every log dir (log.dirs), dirs[0] == dir; see logdirs.go
	found  map[TopicPartition]string // the log dir of each partition directory present at start-up; read-only
	broker *config.Broker
	nodeID int32
	logger *slog.Logger
	store  ISRStore // nil: no ISR maintenance (RunISR returns at once)

	mu        sync.RWMutex                  // guards broker, parts, topics, fetchers, closed, placement, offline, moving
	placement map[TopicPartition]string     // the log dir of each partition Apply opened or is opening
	offline   map[string]error              // failed log dirs (dirfail.go) and why
	moving    map[TopicPartition]*moveState // partitions moving between log dirs (move.go)
	parts     map[TopicPartition]*Partition
	topics    map[string]metadata.TopicID // hosted topic -> id
	fetchers  map[int32]*fetcher          // by leader broker id
	closed    bool

	placeCounts   map[string]int                      // partitions in placement per log dir while an Apply places partitions (placeLocked), nil otherwise; guarded by mu
	appliedTopics map[string]appliedTopic             // what Apply last derived per topic (applied.go); guarded by mu
	applied       map[TopicPartition]appliedPartition // what Apply last gave each partition (applied.go); guarded by mu
	fetchAddrs    map[int32]string                    // the brokers' replication addresses when the fetchers were last synced; guarded by mu

	fetchCtx    context.Context // parent of every fetcher; cancelled by Close
	stopFetch   context.CancelFunc
	fetchWG     sync.WaitGroup           // fetcher, verifier and checkpoint goroutines
	deleteWG    sync.WaitGroup           // background removals of directories renamed for deletion
	verify      verifier                 // background verification of opened logs (damage.go)
	ckptMu      sync.Mutex               // serialises writes of the high watermark checkpoint file; guards lastHWs
	lastHWs     map[TopicPartition]int64 // the high watermarks last written
	startHWs    map[TopicPartition]int64 // checkpointed high watermarks read at start (checkpoint.go); guarded by mu
	startClean  map[string]int64         // partition dirs listed in the clean shutdown records read at start (shutdown.go); guarded by mu
	fetchConfig fetchConfig
	isrKick     chan struct{}
	lease       atomic.Pointer[lease] // nil: no lease (always valid); see lease.go

	// syncers share syncfs(2) calls among a log dir's partitions, by log dir
	// (syncfs.go); read-only after NewManager.
	syncers map[string]*log.DirSyncer
}

// NewManager returns a manager keeping partition directories under dir and
// extraDirs (the other directories of log.dirs; see logdirs.go).
// store commits ISR changes (see RunISR); it may be nil.
func NewManager(dir string, broker *config.Broker, store ISRStore, logger *slog.Logger, extraDirs ...string) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	dirs := []string{filepath.Clean(dir)}
	for _, d := range extraDirs {
		dirs = append(dirs, filepath.Clean(d))
	}
	m := &Manager{dir: dir, dirs: dirs, placement: map[TopicPartition]string{}, offline: map[string]error{}, moving: map[TopicPartition]*moveState{},
		appliedTopics: map[string]appliedTopic{}, applied: map[TopicPartition]appliedPartition{},
		broker: broker, nodeID: broker.NodeID(), logger: logger, store: store,
		parts: map[TopicPartition]*Partition{}, topics: map[string]metadata.TopicID{}, fetchers: map[int32]*fetcher{},
		fetchCtx: ctx, stopFetch: cancel, isrKick: make(chan struct{}, 1),
		fetchConfig: fetchConfig{
			self:          broker.NodeID(),
			maxWait:       time.Duration(broker.Int("replica.fetch.wait.max.ms")) * time.Millisecond,
			maxBytes:      int32(broker.Int("replica.fetch.response.max.bytes")),
			partMaxBytes:  int32(broker.Int("replica.fetch.max.bytes")),
			backoff:       time.Duration(broker.Int("replica.fetch.backoff.ms")) * time.Millisecond,
			flushBefore:   broker.Bool("replica.flush.before.fetch"),
			socketTimeout: 30 * time.Second, // Kafka's replica.socket.timeout.ms
		}}
	m.found = m.scanLogDirs()
	m.syncers = m.openSyncers()
	m.startHWs = m.loadHWCheckpoint()
	m.startClean = m.takeCleanRecords()
	m.fetchWG.Add(1)
	go m.runCheckpoints(time.Duration(max(broker.Int("replica.high.watermark.checkpoint.interval.ms"), 1)) * time.Millisecond)
	return m
}

// LogConfig derives a partition log's configuration from a topic's effective config.
func LogConfig(t config.Topic) log.Config {
	c := log.DefaultConfig()
	c.SegmentBytes = t.Int("segment.bytes")
	c.SegmentMs = t.Int("segment.ms")
	c.SegmentIndexBytes = int32(t.Int("segment.index.bytes"))
	c.RetentionMs = t.Int("retention.ms")
	c.RetentionBytes = t.Int("retention.bytes")
	c.IndexIntervalBytes = int32(t.Int("index.interval.bytes"))
	c.FlushMessages = t.Int("flush.messages")
	c.FlushMs = t.Int("flush.ms")
	c.MaxMessageBytes = int32(t.Int("max.message.bytes"))
	c.Compact = t.HasPolicy("compact")
	c.MinCleanableDirtyRatio = t.Float("min.cleanable.dirty.ratio")
	c.DeleteRetentionMs = t.Int("delete.retention.ms")
	c.MinCompactionLagMs = t.Int("min.compaction.lag.ms")
	if !t.HasPolicy("delete") {
		// Time and size retention apply only with cleanup.policy=delete;
		// segments below the log start offset are still removed.
		c.RetentionMs, c.RetentionBytes = -1, -1
	}
	return c
}

// Get returns a hosted partition.
func (m *Manager) Get(topic string, partition int32) (*Partition, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.parts[TopicPartition{topic, partition}]
	return p, ok
}

// All returns every hosted partition.
func (m *Manager) All() []*Partition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Partition, 0, len(m.parts))
	for _, p := range m.parts {
		out = append(out, p)
	}
	return out
}

const idFile = "partition.metadata"

// Apply makes the hosted partitions match img: it opens the partitions this node
// replicates, reconfigures existing ones and gives each its leader, epochs,
// replicas and ISR (becoming leader or follower as img says), deletes the
// logs of topics that are gone (or were deleted and re-created under a new
// id), and points the fetchers at the partitions' leaders. It returns the
// first error; partitions that failed to open stay absent and are retried on
// the next Apply. It must not wait for the metadata store (it runs as the
// store's change listener).
func (m *Manager) Apply(img *metadata.Image) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	defer func() { m.placeCounts = nil }() // other code changes placement
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	// Drop topics that are gone or have a new id.
	refetch := false // the fetchers need syncing (applied.go)
	for name, id := range m.topics {
		if t, ok := img.Topics[name]; !ok || t.ID != id {
			keep(m.dropTopic(name))
			refetch = true
		}
	}
	now := time.Now()
	var toOpen []openJob
	for _, t := range img.Topics {
		tc, sameConfig := m.topicConfig(t)
		lcfg, appendTime, minISR := tc.lcfg, tc.appendTime, tc.minISR
		for _, pm := range t.Partitions {
			if !contains(pm.Replicas, m.nodeID) {
				continue
			}
			tp := TopicPartition{t.Name, pm.Index}
			if p, ok := m.parts[tp]; ok {
				if sameConfig && m.unchanged(tp, p, pm, minISR) {
					continue
				}
				refetch = refetch || p.Leader() != pm.Leader || p.LeaderEpoch() != pm.LeaderEpoch
				p.configure(lcfg, appendTime)
				p.applyMetadata(pm, minISR, now)
				m.recordApplied(tp, p, pm, minISR)
				p.healIfFollower()
				continue
			}
			dir, ok := m.placeLocked(tp)
			if !ok {
				continue // its log dir is offline (dirfail.go)
			}
			toOpen = append(toOpen, openJob{tp: tp, dir: dir, id: t.ID, pm: pm, lcfg: lcfg, appendTime: appendTime, minISR: minISR})
		}
	}
	m.openAll(toOpen)
	refetch = refetch || len(toOpen) > 0
	for _, j := range toOpen {
		if j.err != nil {
			keep(j.err)
			continue
		}
		p := j.p
		p.kickISR, p.verifyHook, p.dirFailed = m.kickISR, m.queueVerify, m.dirFailed
		p.leaseValid, p.leaseTimeout = m.LeaseValid, m.leaseTimeout
		if hw, ok := m.startHWs[j.tp]; ok {
			p.hw.Store(min(hw, p.lg().LogEndOffset()))
			delete(m.startHWs, j.tp) // only the first open of a run trusts the file
		}
		p.applyMetadata(j.pm, j.minISR, now)
		m.recordApplied(j.tp, p, j.pm, j.minISR)
		m.parts[j.tp] = p
		m.topics[j.tp.Topic] = j.id
		p.healIfFollower() // damage found while opening
		m.queueVerify(p)
	}
	dropped, err := m.dropMovedReplicas(img)
	keep(err)
	if addrs := replicationAddrs(img); refetch || dropped || !maps.Equal(addrs, m.fetchAddrs) {
		m.syncFetchers(img)
		m.fetchAddrs = addrs
	}
	return firstErr
}

// syncFetchers assigns every hosted partition led by another broker to that
// broker's fetcher, starting fetchers as needed and stopping those left
// without partitions or whose broker moved. Called with m.mu held.
func (m *Manager) syncFetchers(img *metadata.Image) {
	want := map[int32]map[TopicPartition]*Partition{}
	for tp, p := range m.parts {
		if leader := p.Leader(); leader >= 0 && leader != m.nodeID {
			if want[leader] == nil {
				want[leader] = map[TopicPartition]*Partition{}
			}
			want[leader][tp] = p
		}
	}
	addrOf := func(id int32) (string, bool) {
		b, ok := img.Broker(id)
		if !ok || b.Host == "" {
			return "", false
		}
		return b.ReplicationAddr(), true
	}
	for id, f := range m.fetchers {
		if addr, ok := addrOf(id); !ok || addr != f.addr || want[id] == nil {
			f.stop()
			delete(m.fetchers, id)
		}
	}
	for id, parts := range want {
		addr, ok := addrOf(id)
		if !ok {
			m.logger.Warn("cannot follow partitions of an unregistered broker", "leader", id, "partitions", len(parts))
			continue
		}
		f := m.fetchers[id]
		if f == nil {
			f = startFetcher(m.fetchCtx, &m.fetchWG, id, addr, m.fetchConfig, m.logger)
			m.fetchers[id] = f
		}
		f.assign(parts)
	}
}

// claimDir makes dir hold the partition of topic id: a directory left by an
// earlier topic of the same name (deleted while the node was down) is
// removed (renamed for deletion). A partition.metadata that cannot be read
// as a topic id fails the claim and leaves the directory alone, unless the
// directory holds no data (a claim cut short by a crash before its sync).
//
// A new claim writes partition.metadata without syncing it and returns
// unsynced: the caller must syncClaims before the partition takes its
// first write, so that a directory holding data always has a durable
// partition.metadata (DESIGN invariant 7: the topic id decides deletion).
func (m *Manager) claimDir(dir string, id metadata.TopicID) (unsynced bool, err error) {
	want := idFileContent(id)
	b, err := os.ReadFile(filepath.Join(dir, idFile))
	switch {
	case err == nil && string(b) == want:
		return false, nil
	case err == nil:
		if _, ok := parseIDFile(b); !ok {
			if !holdsNoData(dir) {
				return false, fmt.Errorf("partition dir %s: %s is damaged (%q); leaving the directory untouched", dir, idFile, b)
			}
			m.logger.Warn("rewriting the damaged partition.metadata of a directory without data", "dir", dir)
			break
		}
		m.logger.Warn("removing the log of an earlier topic with the same name", "dir", dir, "had", strings.TrimSpace(string(b)))
		if err := m.renameForDelete(dir); err != nil {
			return false, fmt.Errorf("remove stale %s: %w", dir, err)
		}
	case !os.IsNotExist(err):
		return false, fmt.Errorf("partition dir %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o755); err == nil {
		// A new directory: nothing to replace, so no temp file and rename
		// (a torn file is rewritten above, the directory holding no data).
		if err := os.WriteFile(filepath.Join(dir, idFile), []byte(want), 0o644); err != nil {
			return false, fmt.Errorf("partition dir %s: %w", dir, err)
		}
		return true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("partition dir: %w", err)
	}
	tmp := filepath.Join(dir, idFile+".tmp")
	if err := os.WriteFile(tmp, []byte(want), 0o644); err != nil {
		return false, fmt.Errorf("partition dir %s: %w", dir, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, idFile)); err != nil {
		return false, fmt.Errorf("partition dir %s: %w", dir, err)
	}
	return true, nil
}

// holdsNoData reports whether dir has no file with content other than
// partition.metadata (and its temp file): no log data a wrong topic id
// could attach to the wrong topic.
func holdsNoData(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Name() == idFile || e.Name() == idFile+".tmp" {
			continue
		}
		info, err := e.Info()
		if err != nil || info.IsDir() || info.Size() > 0 {
			return false
		}
	}
	return true
}

// syncClaims makes the claims of new partition directories durable at
// once: each directory's partition.metadata and entries, then each parent
// log dir (the new directories' names), syncClaimParallelism at a time
// (concurrent fsyncs share journal commits). The returned errors match
// dirs.
func syncClaims(dirs []string) []error {
	errs := make([]error, len(dirs))
	parents := map[string]bool{}
	for _, d := range dirs {
		parents[filepath.Dir(d)] = true
	}
	forEach(len(dirs), syncClaimParallelism, func(i int) {
		f, err := os.Open(filepath.Join(dirs[i], idFile))
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err == nil {
			err = atomicfile.SyncDir(dirs[i])
		}
		if err != nil {
			errs[i] = fmt.Errorf("partition dir %s: sync %s: %w", dirs[i], idFile, err)
		}
	})
	for parent := range parents {
		if err := atomicfile.SyncDir(parent); err != nil {
			for i, d := range dirs {
				if filepath.Dir(d) == parent && errs[i] == nil {
					errs[i] = err
				}
			}
		}
	}
	return errs
}

// syncClaimParallelism bounds the concurrent fsyncs of syncClaims.
const syncClaimParallelism = 64

// forEach calls fn(i) for every i in [0, n), up to workers at a time.
func forEach(n, workers int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// dropParallelism bounds the partitions of a deleted topic retired at once
// (each rename fsyncs the data directory; concurrent ones share the
// journal commit).
const dropParallelism = 16

// dropTopic closes and deletes every hosted partition of a topic, several
// at a time. Called with m.mu held.
func (m *Manager) dropTopic(name string) error {
	type drop struct {
		tp TopicPartition
		p  *Partition
	}
	var drops []drop
	for tp, p := range m.parts {
		if tp.Topic == name {
			drops = append(drops, drop{tp, p})
			delete(m.parts, tp)
			delete(m.placement, tp)
			delete(m.applied, tp)
		}
	}
	delete(m.appliedTopics, name)
	errs := make([]error, len(drops))
	sem := make(chan struct{}, dropParallelism)
	var wg sync.WaitGroup
	for i, d := range drops {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = m.retirePartition(d.tp, d.p)
		})
	}
	wg.Wait()
	var firstErr error
	for _, err := range errs {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	delete(m.topics, name)
	m.logger.Info("deleted topic logs", "topic", name)
	return firstErr
}

// dropPartition stops hosting a partition and deletes its log. Called with
// m.mu held.
func (m *Manager) dropPartition(tp TopicPartition, p *Partition) error {
	delete(m.parts, tp)
	delete(m.placement, tp)
	delete(m.applied, tp)
	return m.retirePartition(tp, p)
}

// retirePartition closes a partition no longer in m.parts and renames its
// log for deletion in the background. Safe to call concurrently for
// different partitions.
func (m *Manager) retirePartition(tp TopicPartition, p *Partition) error {
	p.mu.Lock()
	p.closed = true // no appends, truncations or fetcher writes from now on
	p.mu.Unlock()
	p.notify()
	to, err := deleteName(p.lg().Dir())
	if err == nil {
		err = p.lg().Retire(to)
	}
	if err != nil {
		return fmt.Errorf("delete %s-%d: %w", tp.Topic, tp.Partition, err)
	}
	m.removeInBackground(to)
	return nil
}

// dropMovedReplicas deletes the hosted partitions of topics in img that no
// longer list this node as a replica (a reassignment moved them away), and
// reports whether it dropped any. Called with m.mu held.
func (m *Manager) dropMovedReplicas(img *metadata.Image) (dropped bool, firstErr error) {
	for tp, p := range m.parts {
		t, ok := img.Topics[tp.Topic]
		if !ok || int(tp.Partition) < len(t.Partitions) && contains(t.Partitions[tp.Partition].Replicas, m.nodeID) {
			continue
		}
		m.logger.Info("no longer a replica; deleting the partition log", "topic", tp.Topic, "partition", tp.Partition)
		dropped = true
		if err := m.dropPartition(tp, p); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return dropped, firstErr
}

// RunRetention applies retention to every partition every interval until ctx ends.
func (m *Manager) RunRetention(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, p := range m.All() {
				n, err := p.lg().DeleteOldSegments(now)
				if err != nil {
					m.logger.Error("retention", "topic", p.Topic, "partition", p.Index, "err", err)
				} else if n > 0 {
					m.logger.Info("retention deleted segments", "topic", p.Topic, "partition", p.Index, "segments", n, "log_start_offset", p.LogStartOffset())
				}
			}
		}
	}
}

// RunCleaner compacts partitions every backoff until ctx ends (Kafka's log
// cleaner, one thread): each round it picks the partitions whose
// cleanup.policy includes compact and whose dirty ratio reaches
// min.cleanable.dirty.ratio, dirtiest first, and compacts each up to its high
// watermark (log.Log.Compact). With delete also in the policy, RunRetention
// still applies time and size retention to the same logs.
func (m *Manager) RunCleaner(ctx context.Context, backoff time.Duration) {
	t := time.NewTicker(max(backoff, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.cleanOnce(ctx, now)
		}
	}
}

// cleanOnce runs one cleaner round and returns how many partitions it compacted.
func (m *Manager) cleanOnce(ctx context.Context, now time.Time) int {
	type candidate struct {
		p     *Partition
		hw    int64
		ratio float64
	}
	var cands []candidate
	for _, p := range m.All() {
		hw := p.HighWatermark()
		if ok, ratio := p.lg().ShouldCompact(hw, now); ok {
			cands = append(cands, candidate{p, hw, ratio})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ratio > cands[j].ratio })
	// log.cleaner.dedupe.buffer.size as Kafka divides it: 24 bytes a key, 90% load.
	m.mu.RLock()
	broker := m.broker
	m.mu.RUnlock()
	maxKeys := int(float64(broker.Int("log.cleaner.dedupe.buffer.size")) / 24 * 0.9)
	n := 0
	for _, c := range cands {
		if ctx.Err() != nil {
			break
		}
		st, err := c.p.lg().Compact(log.CompactOptions{CleanableEnd: c.hw, Now: now, MaxMapEntries: maxKeys, Cancel: ctx.Done()})
		if err != nil {
			if ctx.Err() == nil {
				m.logger.Error("compaction", "topic", c.p.Topic, "partition", c.p.Index, "err", err)
			}
			continue
		}
		n++
		m.logger.Debug("compacted partition", "topic", c.p.Topic, "partition", c.p.Index, "dirtyRatio", c.ratio,
			"bytesRead", st.BytesRead, "bytesWritten", st.BytesWritten, "took", st.Elapsed)
	}
	return n
}

// Close stops the fetchers and closes every partition log (flushing it and
// marking a clean shutdown). Apply does nothing afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.fetchers = map[int32]*fetcher{}
	m.mu.Unlock()
	m.stopFetch()
	m.fetchWG.Wait()
	m.deleteWG.Wait()
	var firstErr error
	if err := m.writeCheckpoints(true); err != nil {
		firstErr = fmt.Errorf("checkpoints at shutdown: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Logs close closeParallelism at a time and the clean shutdown is
	// recorded once per log dir (shutdown.go).
	if err := m.closeLogs(); err != nil && firstErr == nil {
		firstErr = err
	}
	if err := m.closeSyncers(); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

func contains(xs []int32, x int32) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// SetBrokerConfig replaces the broker configuration topic configs derive from
// (the static one with cluster-wide dynamic configs applied); the next Apply
// reconfigures the logs.
func (m *Manager) SetBrokerConfig(b *config.Broker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.broker = b
}

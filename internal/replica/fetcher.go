package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchConfig holds a follower's fetch settings (replica.fetch.*).
type fetchConfig struct {
	self          int32         // this node's id, sent as the replica id
	maxWait       time.Duration // replica.fetch.wait.max.ms
	maxBytes      int32         // replica.fetch.response.max.bytes
	partMaxBytes  int32         // replica.fetch.max.bytes
	backoff       time.Duration // replica.fetch.backoff.ms
	flushBefore   bool          // replica.flush.before.fetch: flush appended records before the next fetch reports them
	socketTimeout time.Duration // bound on dialing, and on a request beyond maxWait
	dial          DialFunc      // connects to a leader (TLS, SASL); nil: plain TCP (see SetDialer)
	// durable applies the partitions' flush policy up to the offsets,
	// all at once; nil: WaitDurableAll (tests wrap it to watch the promise).
	durable func(parts []*Partition, ends []int64) []error
}

// fetcher replicates the partitions this node follows from one leader
// broker (Kafka's ReplicaFetcherThread): one goroutine, one connection
// (re-dialed after an error, replica.fetch.backoff.ms later). For each
// partition it first reconciles the local log with the leader's by leader
// epoch (OffsetForLeaderEpoch, KIP-101/279: truncating where they diverge),
// then fetches from the local LEO, appends what the leader returns and
// adopts the leader's high watermark and log start offset.
//
// Invariant: a partition is written only at the leader epoch it was
// assigned with; once the partition follows a newer epoch (or leads), the
// write is refused (errNotFollowing), so a stale response never lands.
type fetcher struct {
	leader int32
	addr   string
	cfg    fetchConfig
	logger *slog.Logger
	cancel context.CancelFunc

	mu    sync.Mutex // guards parts and the mutable fields of every fetchPart
	parts map[TopicPartition]*fetchPart
	kick  chan struct{} // signalled when parts change

	sess followerSession // the fetch session with the leader (fetchsession.go); run's goroutine only
	bg   backgroundFlush // flushes behind the fetches with replica.flush.before.fetch=false
}

// fetchPart is one partition's fetch state. A new one is made whenever the
// partition's leader epoch changes, so reconciliation starts over.
type fetchPart struct {
	p     *Partition
	epoch int32 // the leader epoch followed

	reconciled bool      // the log was reconciled with the leader's at epoch
	delayUntil time.Time // no request for the partition before (after an error)
	oorAt      int64     // fetch offset of the last OFFSET_OUT_OF_RANGE answer, -1 if none
	refusals   int       // consecutive errors of metadata in flux (logged once)
	failures   int       // consecutive other errors (logged once, then every 60th; a damaged leader log answers them for long)
}

// fetchItem is a fetchPart taken into one request.
type fetchItem struct {
	tp        TopicPartition
	fp        *fetchPart
	p         *Partition
	epoch     int32
	offset    int64 // fetch offset sent
	lastEpoch int32 // latest local epoch sent
}

// startFetcher starts a fetcher for leader at addr; wg tracks its goroutine
// and ctx (or stop) ends it.
func startFetcher(ctx context.Context, wg *sync.WaitGroup, leader int32, addr string, cfg fetchConfig, logger *slog.Logger) *fetcher {
	ctx, cancel := context.WithCancel(ctx)
	f := &fetcher{leader: leader, addr: addr, cfg: cfg, cancel: cancel,
		logger: logger.With("leader", leader, "leader_addr", addr),
		parts:  map[TopicPartition]*fetchPart{}, kick: make(chan struct{}, 1)}
	if f.cfg.durable == nil {
		f.cfg.durable = WaitDurableAll
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.run(ctx)
	}()
	return f
}

// stop ends the fetcher without waiting for it.
func (f *fetcher) stop() { f.cancel() }

// assign makes parts (each following f.leader at its current leader epoch)
// the set the fetcher replicates. A partition whose epoch changed starts
// over with reconciliation; one no longer in parts is no longer fetched.
// It reports whether any partition is left.
func (f *fetcher) assign(parts map[TopicPartition]*Partition) bool {
	epochs := make(map[TopicPartition]int32, len(parts))
	for tp, p := range parts {
		epochs[tp] = p.LeaderEpoch()
	}
	f.mu.Lock()
	for tp := range f.parts {
		if parts[tp] == nil {
			delete(f.parts, tp)
		}
	}
	for tp, p := range parts {
		epoch := epochs[tp]
		if fp := f.parts[tp]; fp != nil && fp.p == p && fp.epoch == epoch {
			continue
		}
		f.parts[tp] = &fetchPart{p: p, epoch: epoch, oorAt: -1}
	}
	n := len(f.parts)
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
	return n > 0
}

// work returns the partitions to reconcile and those to fetch now, and
// when the earliest delayed one becomes ready (zero if none is delayed).
func (f *fetcher) work(now time.Time) (reconcile, fetch []fetchItem, next time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for tp, fp := range f.parts {
		if now.Before(fp.delayUntil) {
			if next.IsZero() || fp.delayUntil.Before(next) {
				next = fp.delayUntil
			}
			continue
		}
		it := fetchItem{tp: tp, fp: fp, p: fp.p, epoch: fp.epoch}
		if fp.reconciled {
			fetch = append(fetch, it)
		} else {
			reconcile = append(reconcile, it)
		}
	}
	return reconcile, fetch, next
}

func (f *fetcher) run(ctx context.Context) {
	f.logger.Info("replica fetcher started")
	defer f.logger.Info("replica fetcher stopped")
	var c *brokerConn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	failing := false
	for ctx.Err() == nil {
		reconcile, fetch, next := f.work(time.Now())
		if len(reconcile)+len(fetch) == 0 {
			f.idle(ctx, next)
			continue
		}
		var err error
		if c == nil {
			c, err = dialBroker(ctx, f.cfg.dial, f.addr, fmt.Sprintf("strand-replica-%d", f.cfg.self), f.cfg.socketTimeout)
		}
		if err == nil && len(reconcile) > 0 {
			err = f.reconcile(c, reconcile)
		} else if err == nil {
			err = f.fetch(c, fetch)
		}
		if err != nil {
			if c != nil {
				c.Close()
				c = nil
			}
			if ctx.Err() != nil {
				return
			}
			if !failing {
				f.logger.Warn("replica fetch failed; retrying", "err", err, "backoff", f.cfg.backoff)
			} else {
				f.logger.Debug("replica fetch failed again", "err", err)
			}
			failing = true
			sleepCtx(ctx, f.cfg.backoff)
			continue
		}
		if failing {
			f.logger.Info("replica fetcher reconnected")
			failing = false
		}
	}
}

// idle waits until the partitions change, next passes (if set), or ctx ends.
func (f *fetcher) idle(ctx context.Context, next time.Time) {
	var timer <-chan time.Time
	if !next.IsZero() {
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
	case <-f.kick:
	case <-timer:
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// reconcile sends OffsetForLeaderEpoch for the partitions' latest local
// epochs and truncates each where its log diverges from the leader's.
func (f *fetcher) reconcile(c *brokerConn, items []fetchItem) error {
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.SetVersion(4)
	req.ReplicaID = f.cfg.self
	asked := map[TopicPartition]*fetchItem{}
	topics := map[string]int{}
	for i := range items {
		it := &items[i]
		it.lastEpoch = it.p.lg().LatestEpoch()
		if it.lastEpoch < 0 {
			// No epoch to ask about: keep the committed prefix, as Kafka does.
			f.truncate(it, it.p.HighWatermark(), true)
			continue
		}
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = it.tp.Partition, it.epoch, it.lastEpoch
		ti := topicSlot(topics, &req.Topics, it.tp.Topic, func() kmsg.OffsetForLeaderEpochRequestTopic {
			rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
			rt.Topic = it.tp.Topic
			return rt
		})
		req.Topics[ti].Partitions = append(req.Topics[ti].Partitions, rp)
		asked[it.tp] = it
	}
	if len(asked) == 0 {
		return nil
	}
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	if err := c.roundTrip(req, resp, f.cfg.socketTimeout); err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			tp := TopicPartition{rt.Topic, rp.Partition}
			it := asked[tp]
			if it == nil {
				continue
			}
			delete(asked, tp)
			if rp.ErrorCode != 0 {
				f.partitionError(it, rp.ErrorCode, "OffsetForLeaderEpoch")
				continue
			}
			to, complete := truncationOffset(rp.LeaderEpoch, rp.EndOffset, it.p.EndOffsetForEpoch, it.p.LogEndOffset(), it.p.HighWatermark())
			f.logger.Debug("leader epoch end", "topic", tp.Topic, "partition", tp.Partition, "asked", it.lastEpoch,
				"leader_epoch", rp.LeaderEpoch, "end_offset", rp.EndOffset, "truncate_to", to, "complete", complete)
			f.truncate(it, to, complete)
		}
	}
	for _, it := range asked {
		f.partitionError(it, kerr.UnknownServerError.Code, "OffsetForLeaderEpoch (partition missing from the response)")
	}
	return nil
}

// truncate truncates the item's log to to; complete marks the partition
// reconciled (else it is reconciled again, by its new latest epoch).
func (f *fetcher) truncate(it *fetchItem, to int64, complete bool) {
	err := it.p.truncateAsFollower(it.epoch, to)
	switch {
	case errors.Is(err, errNotFollowing):
		return // the partition moved on; the manager reassigns it
	case err != nil:
		f.logger.Error("follower truncation failed", "topic", it.tp.Topic, "partition", it.tp.Partition, "to", to, "err", err)
		f.delay(it, f.cfg.backoff)
		return
	}
	f.mu.Lock()
	it.fp.reconciled = complete
	f.mu.Unlock()
}

// delay keeps the item's partition out of requests for d.
func (f *fetcher) delay(it *fetchItem, d time.Duration) {
	f.mu.Lock()
	it.fp.delayUntil = time.Now().Add(d)
	f.mu.Unlock()
}

// partitionError handles an error code for one partition: errors of
// metadata in flux (the leader or this node not yet knowing the latest
// leader epoch) retry soon - a new epoch here replaces the fetch state
// anyway - and others after replica.fetch.backoff.ms.
func (f *fetcher) partitionError(it *fetchItem, code int16, what string) {
	err := kerr.ErrorForCode(code)
	switch code {
	case kerr.NotLeaderForPartition.Code, kerr.FencedLeaderEpoch.Code, kerr.UnknownLeaderEpoch.Code,
		kerr.UnknownTopicOrPartition.Code, kerr.LeaderNotAvailable.Code:
		f.mu.Lock()
		it.fp.refusals++
		first := it.fp.refusals == 1
		f.mu.Unlock()
		level := slog.LevelDebug
		if first {
			level = slog.LevelInfo
		}
		f.logger.Log(context.Background(), level, "leader refused replica request; retrying", "request", what,
			"topic", it.tp.Topic, "partition", it.tp.Partition, "epoch", it.epoch, "err", err)
		f.delay(it, min(f.cfg.backoff, 200*time.Millisecond))
	default:
		f.mu.Lock()
		it.fp.failures++
		n := it.fp.failures
		f.mu.Unlock()
		level := slog.LevelDebug
		if n%60 == 1 {
			level = slog.LevelWarn
		}
		f.logger.Log(context.Background(), level, "replica request failed for partition", "request", what,
			"topic", it.tp.Topic, "partition", it.tp.Partition, "consecutive_failures", n, "err", err)
		f.delay(it, f.cfg.backoff)
	}
}

// fetch sends one Fetch (v12, replica id set) for the items, through the
// fetch session with the leader (incremental after the first), and applies
// the response; partitions that got data are flushed per their flush policy
// before the next fetch reports the new LEO to the leader, so an acks=all
// write is as durable on every ISR member as on the leader. With
// replica.flush.before.fetch=false they are flushed in the background
// instead (backgroundFlush) and the next fetch reports them at once.
func (f *fetcher) fetch(c *brokerConn, items []fetchItem) error {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.ReplicaID = f.cfg.self
	req.MaxWaitMillis = int32(f.cfg.maxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = f.cfg.maxBytes
	byTP := map[TopicPartition]*fetchItem{}
	topics := map[string]int{}
	for i := range items {
		it := &items[i]
		it.offset, it.lastEpoch = it.p.LogEndOffset(), it.p.lg().LatestEpoch()
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.FetchOffset = it.tp.Partition, it.epoch, it.offset
		rp.LastFetchedEpoch, rp.LogStartOffset, rp.PartitionMaxBytes = it.lastEpoch, it.p.LogStartOffset(), f.cfg.partMaxBytes
		ti := topicSlot(topics, &req.Topics, it.tp.Topic, func() kmsg.FetchRequestTopic {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = it.tp.Topic
			return rt
		})
		req.Topics[ti].Partitions = append(req.Topics[ti].Partitions, rp)
		byTP[it.tp] = it
	}
	want := f.sess.prepare(req) // incremental when a session is open
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := c.roundTrip(req, resp, f.cfg.maxWait+f.cfg.socketTimeout); err != nil {
		f.sess.reset()
		return err
	}
	switch resp.ErrorCode {
	case 0:
		f.sess.done(resp.SessionID, want)
	case kerr.FetchSessionIDNotFound.Code, kerr.InvalidFetchSessionEpoch.Code:
		f.sess.reset() // evicted or out of step: the next fetch opens a new session
		return nil
	default:
		f.sess.reset()
		return fmt.Errorf("fetch: %w", kerr.ErrorForCode(resp.ErrorCode))
	}
	var appended []*fetchItem
	for _, rt := range resp.Topics {
		for i := range rt.Partitions {
			rp := &rt.Partitions[i]
			it := byTP[TopicPartition{rt.Topic, rp.Partition}]
			if it != nil && f.apply(it, rp) {
				appended = append(appended, it)
			}
		}
	}
	if !f.cfg.flushBefore {
		// replica.flush.before.fetch=false: the next fetch reports the
		// appended records at once; they reach the disk in the background.
		f.bg.add(appended, f.cfg.durable, f.logger)
		return nil
	}
	// The partitions' fsyncs run concurrently (a fetch of many partitions
	// waits about one fsync, not one per partition; those of one log dir
	// share one syncfs, see WaitDurableAll), all before the next fetch
	// reports the new LEOs.
	f.flushAll(appended)
	return nil
}

// flushAll applies the flush policy to the items' partitions up to their
// LEOs, all at once (WaitDurableAll), and keeps a partition whose flush
// failed out of requests for replica.fetch.backoff.ms (its next fetch must
// not report records that are not durable).
func (f *fetcher) flushAll(appended []*fetchItem) {
	if len(appended) == 0 {
		return
	}
	parts, ends := make([]*Partition, len(appended)), make([]int64, len(appended))
	for i, it := range appended {
		parts[i], ends[i] = it.p, it.p.LogEndOffset()
	}
	errs := f.cfg.durable(parts, ends)
	for i, it := range appended {
		if err := errs[i]; err != nil {
			f.logger.Error("follower flush failed", "topic", it.tp.Topic, "partition", it.tp.Partition, "err", err)
			f.delay(it, f.cfg.backoff)
		}
	}
}

// apply handles one partition of a fetch response and reports whether
// records were appended.
func (f *fetcher) apply(it *fetchItem, rp *kmsg.FetchResponseTopicPartition) bool {
	switch rp.ErrorCode {
	case 0:
	case kerr.OffsetOutOfRange.Code:
		f.outOfRange(it, rp)
		return false
	default:
		f.partitionError(it, rp.ErrorCode, "Fetch")
		return false
	}
	if de := rp.DivergingEpoch; de.Epoch >= 0 && de.EndOffset >= 0 {
		to, complete := truncationOffset(de.Epoch, de.EndOffset, it.p.EndOffsetForEpoch, it.p.LogEndOffset(), it.p.HighWatermark())
		f.logger.Info("leader reports a diverging epoch", "topic", it.tp.Topic, "partition", it.tp.Partition,
			"last_fetched_epoch", it.lastEpoch, "leader_epoch", de.Epoch, "end_offset", de.EndOffset, "truncate_to", to)
		f.truncate(it, to, complete)
		return false
	}
	n := 0
	if len(rp.RecordBatches) > 0 {
		var err error
		n, err = it.p.appendAsFollower(it.epoch, rp.RecordBatches)
		switch {
		case errors.Is(err, errNotFollowing):
			return false
		case err != nil:
			f.logger.Error("follower append failed", "topic", it.tp.Topic, "partition", it.tp.Partition, "offset", it.offset, "err", err)
			f.delay(it, f.cfg.backoff)
			return false
		}
	}
	if err := it.p.updateFromLeader(it.epoch, rp.HighWatermark, rp.LogStartOffset); err != nil {
		f.logger.Warn("follower could not adopt the leader's offsets", "topic", it.tp.Topic, "partition", it.tp.Partition, "err", err)
	}
	f.mu.Lock()
	it.fp.oorAt, it.fp.refusals, it.fp.failures = -1, 0, 0
	f.mu.Unlock()
	return n > 0
}

// outOfRange handles OFFSET_OUT_OF_RANGE for a fetch at it.offset: below
// the leader's log start the log restarts there; above the leader's log
// end the partition is reconciled again by epoch (which truncates to where
// the leader's log ends), and if the same offset is refused again, it is
// truncated to the leader's high watermark.
func (f *fetcher) outOfRange(it *fetchItem, rp *kmsg.FetchResponseTopicPartition) {
	f.logger.Info("fetch offset out of range on the leader", "topic", it.tp.Topic, "partition", it.tp.Partition,
		"offset", it.offset, "leader_log_start", rp.LogStartOffset, "leader_hw", rp.HighWatermark)
	if rp.LogStartOffset >= 0 && it.offset < rp.LogStartOffset {
		if err := it.p.truncateFullyAsFollower(it.epoch, rp.LogStartOffset); err != nil && !errors.Is(err, errNotFollowing) {
			f.logger.Error("follower truncation failed", "topic", it.tp.Topic, "partition", it.tp.Partition, "err", err)
			f.delay(it, f.cfg.backoff)
		}
		return
	}
	f.mu.Lock()
	again := it.fp.oorAt == it.offset
	it.fp.oorAt = it.offset
	if !again {
		it.fp.reconciled = false
	}
	f.mu.Unlock()
	if again {
		if rp.HighWatermark < 0 {
			f.delay(it, f.cfg.backoff)
			return
		}
		f.truncate(it, min(rp.HighWatermark, it.offset), true)
	}
}

// topicSlot returns the index of topic's entry in *list (a request's topic
// list), appending a new entry made by mk the first time; index remembers
// the positions.
func topicSlot[T any](index map[string]int, list *[]T, topic string, mk func() T) int {
	i, ok := index[topic]
	if !ok {
		i = len(*list)
		index[topic] = i
		*list = append(*list, mk())
	}
	return i
}

package replica

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"strand/internal/log"
)

// backgroundFlushInterval is the least time between two passes of a
// backgroundFlush: a follower that does not flush before its fetches
// (replica.flush.before.fetch=false) fsyncs each partition at most this
// often, so its fsyncs neither hold up replication nor compete with the
// leaders' for the disk at every fetch.
const backgroundFlushInterval = 500 * time.Millisecond

// backgroundFlush applies the flush policy to partitions a follower appended
// to without holding up its fetches (replica.flush.before.fetch=false): one
// goroutine at a time flushes every partition added since its last pass,
// all at once (WaitDurableAll: concurrent fsyncs, or one shared syncfs), at most every backgroundFlushInterval, and exits when none
// is left. A flush error takes the log dir offline as any other
// (Partition.WaitDurable); a log closed meanwhile (the partition was
// dropped or moved) is skipped.
type backgroundFlush struct {
	mu      sync.Mutex // guards pending, running
	pending map[*Partition]struct{}
	running bool
}

// add queues the items' partitions for a flush up to their LEOs at the time
// of the flush, with durable (WaitDurableAll).
func (b *backgroundFlush) add(items []*fetchItem, durable func([]*Partition, []int64) []error, logger *slog.Logger) {
	if len(items) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = map[*Partition]struct{}{}
	}
	for _, it := range items {
		b.pending[it.p] = struct{}{}
	}
	if !b.running {
		b.running = true
		go b.run(durable, logger)
	}
}

func (b *backgroundFlush) run(durable func([]*Partition, []int64) []error, logger *slog.Logger) {
	var last time.Time
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		if wait := backgroundFlushInterval - time.Since(last); !last.IsZero() && wait > 0 {
			time.Sleep(wait) // more appends join this pass meanwhile
		}
		last = time.Now()
		b.mu.Lock()
		parts := make([]*Partition, 0, len(b.pending))
		for p := range b.pending {
			parts = append(parts, p)
		}
		clear(b.pending)
		b.mu.Unlock()
		ends := make([]int64, len(parts))
		for i, p := range parts {
			ends[i] = p.LogEndOffset()
		}
		for i, err := range durable(parts, ends) {
			if err != nil && !errors.Is(err, log.ErrClosed) {
				logger.Error("follower background flush failed", "topic", parts[i].Topic, "partition", parts[i].Index, "err", err)
			}
		}
	}
}

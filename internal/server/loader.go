package server

import (
	"log/slog"
	"sort"
	"sync"

	"strand/internal/metadata"
)

// leaderLoader keeps a coordinator's loaded partitions equal to the
// partitions of its internal topic (__consumer_offsets,
// __transaction_state) this broker leads while live, at their current
// leader epoch: a partition whose leader epoch changed was led elsewhere
// meanwhile, so its state is stale and it is unloaded and loaded again.
// One goroutine (run) applies the newest image observe handed it; load,
// unload and seen are called only from it, never under mu.
type leaderLoader struct {
	topic  string
	self   int32
	logger *slog.Logger
	what   string                     // what load loads, for the log
	load   func(p, epoch int32) error // a failed load is retried with the next image
	unload func(p int32)              //
	seen   func(t *metadata.Topic)    // optional: the topic, in every image that has it

	mu       sync.Mutex // guards next
	next     *metadata.Image
	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	led map[int32]int32 // loaded partition -> its leader epoch; owned by run
}

// startLoader starts the loader goroutine of l (whose topic, self, logger,
// what, load, unload and seen are set).
func startLoader(l *leaderLoader) *leaderLoader {
	l.wake, l.stop, l.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	l.led = map[int32]int32{}
	go l.run()
	return l
}

// observe hands the loader a new metadata image (after the partition
// manager has applied it, so that the partitions it names are open).
func (l *leaderLoader) observe(img *metadata.Image) {
	l.mu.Lock()
	l.next = img
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *leaderLoader) run() {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		case <-l.wake:
		}
		l.mu.Lock()
		img := l.next
		l.mu.Unlock()
		l.apply(img)
	}
}

// apply loads every partition of the topic this broker leads and unloads
// the others (and those whose leader epoch changed), loading in partition
// order.
func (l *leaderLoader) apply(img *metadata.Image) {
	want := map[int32]int32{}
	if t, ok := img.Topic(l.topic); ok {
		if l.seen != nil {
			l.seen(t)
		}
		if img.Live(l.self) {
			for _, p := range t.Partitions {
				if p.Leader == l.self {
					want[p.Index] = p.LeaderEpoch
				}
			}
		}
	}
	for p, epoch := range l.led {
		if e, ok := want[p]; !ok || e != epoch {
			l.unload(p)
			delete(l.led, p)
		}
	}
	parts := make([]int32, 0, len(want))
	for p := range want {
		if _, ok := l.led[p]; !ok {
			parts = append(parts, p)
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		select {
		case <-l.stop:
			return
		default:
		}
		if err := l.load(p, want[p]); err != nil {
			// Retried with the next metadata change.
			l.logger.Error("loading "+l.what, "partition", p, "err", err)
			continue
		}
		l.led[p] = want[p]
	}
}

// close stops the loader and waits for it. It may be called again.
func (l *leaderLoader) close() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

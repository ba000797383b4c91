package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"strand/internal/metadata"
)

// fsm is the replicated state machine: the metadata image, advanced by each
// committed log entry (a metadata.Entry) and replaced by snapshots.
//
// Apply publishes the new image (Image readers see it at once) and queues
// it for the listeners; one notifier goroutine calls the listeners outside
// mu, serially and in log order, so a listener doing disk I/O (the broker
// opening or deleting partition logs) never holds up Image readers or Raft.
// waitApplied waits until the listeners have seen an index, which is what a
// Store method promises its caller. Listeners that fall behind get the
// newest image and skip the ones in between (an image is a whole state, not
// a delta), so the queue never holds more than one image per registration.
type fsm struct {
	logger *slog.Logger

	mu       sync.Mutex // guards img, queue, notified, changed, listeners, stopped; never held while a listener runs
	img      *metadata.Image
	queue    []notifyItem  // images (and registrations) not yet handed to the listeners
	notified uint64        // offset of the last image every listener has seen
	changed  chan struct{} // closed and replaced whenever notified advances
	wake     chan struct{} // capacity 1: the notifier has work
	stopped  bool
	done     chan struct{} // closed when the notifier goroutine exits

	listeners []func(*metadata.Image) // only the notifier goroutine reads it outside mu

	// beforeApply, when set (tests only), runs before each entry is applied:
	// a test holds a replica's state machine back with it.
	beforeApply atomic.Pointer[func(index uint64)]

	heardMu sync.Mutex          // guards heard
	heard   map[int32]heardFrom // from BrokerHeartbeats records; not part of the image
}

// heardFrom is when (by this node's clock) the active controller last heard
// from one incarnation of a broker, as the log told this node.
type heardFrom struct {
	epoch int64
	at    time.Time
}

// notifyItem is a published image, or the registration of a new listener
// (which then gets the last image the listeners saw).
type notifyItem struct {
	img      *metadata.Image
	register func(*metadata.Image)
	ack      chan struct{} // closed once register has been called
}

func newFSM(logger *slog.Logger) *fsm {
	f := &fsm{logger: logger, img: metadata.Empty(), changed: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{}),
		heard: map[int32]heardFrom{}}
	go f.notifier()
	return f
}

// Apply implements raft.FSM. It returns nil, or the error saying why the
// entry changed nothing (undecodable, or planned against another image:
// see metadata.ErrStalePlan); every replica decides the same way.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if hook := f.beforeApply.Load(); hook != nil {
		(*hook)(l.Index)
	}
	e, err := metadata.DecodeEntry(l.Data)
	if err != nil {
		// Every replica fails the same way on the same entry; skipping keeps
		// them equal. It means a bug, so say so loudly.
		f.logger.Error("skipping undecodable metadata log entry", "index", l.Index, "err", err)
		img, _ := f.current().Apply(nil, l.Index)
		f.publish(img)
		return err
	}
	if e.Term != 0 && e.Term != l.Term {
		// Planned by a controller of another term: its image may have missed
		// entries committed since, so it changes nothing.
		err := fmt.Errorf("%w: planned in controller term %d, committed in term %d", metadata.ErrStalePlan, e.Term, l.Term)
		f.logger.Warn("skipping metadata log entry planned in another term", "index", l.Index, "planned_term", e.Term, "term", l.Term)
		img, _ := f.current().Apply(nil, l.Index)
		f.publish(img)
		return err
	}
	if f.noteHeartbeats(e.Records) {
		return nil // liveness only: the image is unchanged, listeners need not hear of it
	}
	img, err := f.current().Apply(e.Records, l.Index)
	f.publish(img)
	if err != nil {
		f.logger.Warn("skipping metadata log entry planned against a stale image", "index", l.Index, "err", err)
		return err
	}
	return nil
}

// noteHeartbeats remembers the broker heartbeats recs carry and reports
// whether that is all they carry.
func (f *fsm) noteHeartbeats(recs []metadata.Record) (only bool) {
	now := time.Now()
	only = len(recs) > 0
	f.heardMu.Lock()
	defer f.heardMu.Unlock()
	for _, r := range recs {
		if r.BrokerHeartbeats == nil {
			only = false
			continue
		}
		for _, b := range r.BrokerHeartbeats.Brokers {
			at := now.Add(-time.Duration(max(b.AgoMs, 0)) * time.Millisecond)
			if h, ok := f.heard[b.ID]; !ok || h.epoch != b.Epoch || h.at.Before(at) {
				f.heard[b.ID] = heardFrom{epoch: b.Epoch, at: at}
			}
		}
	}
	return only
}

// lastHeard returns what the log said about broker heartbeats.
func (f *fsm) lastHeard() map[int32]heardFrom {
	f.heardMu.Lock()
	defer f.heardMu.Unlock()
	return maps.Clone(f.heard)
}

func (f *fsm) current() *metadata.Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.img
}

// publish makes img the current image and queues it for the listeners.
func (f *fsm) publish(img *metadata.Image) {
	f.mu.Lock()
	f.img = img
	if k := len(f.queue); k > 0 && f.queue[k-1].register == nil {
		f.queue[k-1].img = img // the listeners are behind: they get the newer image only
	} else {
		f.queue = append(f.queue, notifyItem{img: img})
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// notifier hands queued images to the listeners, in order, outside mu.
func (f *fsm) notifier() {
	defer close(f.done)
	last := f.current() // the last image every listener has seen
	for range f.wake {
		for {
			f.mu.Lock()
			if f.stopped {
				f.mu.Unlock()
				return
			}
			if len(f.queue) == 0 {
				f.mu.Unlock()
				break
			}
			it := f.queue[0]
			f.queue[0] = notifyItem{}
			f.queue = f.queue[1:]
			f.mu.Unlock()
			if it.register != nil {
				it.register(last)
				f.listeners = append(f.listeners, it.register)
				close(it.ack)
				continue
			}
			for _, l := range f.listeners {
				l(it.img)
			}
			last = it.img
			f.mu.Lock()
			f.notified = max(f.notified, it.img.Offset)
			close(f.changed)
			f.changed = make(chan struct{})
			f.mu.Unlock()
		}
	}
}

// close stops the notifier once it finishes the listener call in progress.
func (f *fsm) close() {
	f.mu.Lock()
	if !f.stopped {
		f.stopped = true
		close(f.wake)
	}
	f.mu.Unlock()
	<-f.done
}

// image returns the latest image (published, possibly not yet seen by the
// listeners).
func (f *fsm) image() *metadata.Image { return f.current() }

// onChange registers fn and calls it with the current image, then with
// every later one in order; it returns after that first call.
func (f *fsm) onChange(fn func(*metadata.Image)) {
	ack := make(chan struct{})
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.queue = append(f.queue, notifyItem{register: fn, ack: ack})
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	select {
	case <-ack:
	case <-f.done:
	}
}

// waitApplied blocks until the listeners have seen log index idx.
func (f *fsm) waitApplied(ctx context.Context, idx uint64) error {
	for {
		f.mu.Lock()
		at, ch := f.notified, f.changed
		f.mu.Unlock()
		if at >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for metadata offset %d (at %d): %w", idx, at, ctx.Err())
		}
	}
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := metadata.EncodeImage(f.current())
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read metadata snapshot: %w", err)
	}
	img, err := metadata.DecodeImage(b)
	if err != nil {
		return err
	}
	f.publish(img)
	return nil
}

type snapshot []byte

// Persist implements raft.FSMSnapshot.
func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("write metadata snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s snapshot) Release() {}

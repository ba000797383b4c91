package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"

	"strand/internal/metadata"
)

// fsm is the replicated state machine: the metadata image, advanced by each
// committed log entry (a list of metadata.Records) and replaced by snapshots.
// Listeners see every published image in log order.
type fsm struct {
	logger *slog.Logger

	mu        sync.Mutex // guards img, applied, listeners, waiters; held while listeners run
	img       *metadata.Image
	applied   uint64
	listeners []func(*metadata.Image)
	changed   chan struct{} // closed and replaced on every publish
}

func newFSM(logger *slog.Logger) *fsm {
	return &fsm{logger: logger, img: metadata.Empty(), changed: make(chan struct{})}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	recs, err := metadata.DecodeRecords(l.Data)
	if err != nil {
		// Every replica fails the same way on the same entry; skipping keeps
		// them equal. It means a bug, so say so loudly.
		f.logger.Error("skipping undecodable metadata log entry", "index", l.Index, "err", err)
		f.publish(f.current().Apply(nil, l.Index))
		return err
	}
	f.publish(f.current().Apply(recs, l.Index))
	return nil
}

func (f *fsm) current() *metadata.Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.img
}

func (f *fsm) publish(img *metadata.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.img, f.applied = img, img.Offset
	for _, l := range f.listeners {
		l(img)
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// image returns the latest image and a channel closed when it is replaced.
func (f *fsm) image() (*metadata.Image, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.img, f.changed
}

func (f *fsm) onChange(fn func(*metadata.Image)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listeners = append(f.listeners, fn)
	fn(f.img)
}

// waitApplied blocks until the image reflects log index idx.
func (f *fsm) waitApplied(ctx context.Context, idx uint64) error {
	for {
		img, ch := f.image()
		if img.Offset >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for metadata offset %d (at %d): %w", idx, img.Offset, ctx.Err())
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

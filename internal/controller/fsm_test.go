package controller

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"strand/internal/metadata"
)

// TestListenersRunOutsideTheLock: a listener busy with slow work (the broker
// opening partition logs) holds up neither Raft's Apply nor Image readers;
// it then sees the images in order, ending with the newest, and waitApplied
// returns only once it has.
func TestListenersRunOutsideTheLock(t *testing.T) {
	f := newFSM(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer f.close()
	block := make(chan struct{})
	entered := make(chan struct{})
	var mu sync.Mutex
	var seen []uint64
	f.onChange(func(img *metadata.Image) {
		mu.Lock()
		seen = append(seen, img.Offset)
		mu.Unlock()
		if img.Offset == 1 {
			close(entered)
			<-block
		}
	})
	entry := func(i uint64) *raft.Log {
		id := int32(i)
		b, err := metadata.EncodeEntry(metadata.Entry{Term: 1, Records: []metadata.Record{{Controller: &id}}})
		if err != nil {
			t.Fatal(err)
		}
		return &raft.Log{Type: raft.LogCommand, Index: i, Term: 1, Data: b}
	}
	if err := f.Apply(entry(1)); err != nil {
		t.Fatal(err)
	}
	<-entered // the listener is now stuck on image 1
	applied := make(chan struct{})
	go func() {
		for i := uint64(2); i <= 5; i++ {
			f.Apply(entry(i))
		}
		close(applied)
	}()
	select {
	case <-applied:
	case <-time.After(10 * time.Second):
		t.Fatal("Apply waited for a busy listener")
	}
	if img := f.image(); img.Offset != 5 || img.ControllerID != 5 {
		t.Fatalf("Image while a listener is busy: offset %d controller %d, want 5 and 5", img.Offset, img.ControllerID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.waitApplied(ctx, 5); err == nil {
		t.Fatal("waitApplied returned before the listener saw offset 5")
	}
	close(block)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.waitApplied(ctx, 5); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("listener saw offsets %v, not in order", seen)
		}
	}
	if seen[len(seen)-1] != 5 {
		t.Fatalf("listener saw offsets %v, want the last to be 5", seen)
	}
}

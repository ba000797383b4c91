package replica

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// flushWatch wraps Partition.WaitDurable for a fetcher: each call first
// waits for gate to be closed, then records the offset flushed up to.
type flushWatch struct {
	gate    chan struct{}
	mu      sync.Mutex
	calls   int
	flushed int64 // highest offset a flush covered
}

func (w *flushWatch) durable(parts []*Partition, ends []int64) []error {
	w.mu.Lock()
	w.calls++
	w.mu.Unlock()
	<-w.gate
	errs := WaitDurableAll(parts, ends)
	w.mu.Lock()
	for i, err := range errs {
		if err == nil {
			w.flushed = max(w.flushed, ends[i])
		}
	}
	w.mu.Unlock()
	return errs
}

func (w *flushWatch) state() (calls int, flushed int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls, w.flushed
}

// startPromiseFetcher starts a follower of a fresh leader with 5 records
// appended, its flushes held by w's gate; check sees every fetch offset.
func startPromiseFetcher(t *testing.T, flushBefore bool, w *flushWatch, check func(offset int64)) (leader *Partition) {
	both := []int32{1, 2}
	leader, follower := testPartition(t, 1), testPartition(t, 2)
	leader.applyMetadata(meta(1, 1, 1, both, both), 1, t0)
	follower.applyMetadata(meta(1, 1, 1, both, both), 1, t0)
	appendN(t, leader, 5)
	fl := startFakeLeader(t, leader)
	fl.onFetch = check
	cfg := fetchConfig{self: 2, maxWait: 50 * time.Millisecond, maxBytes: 1 << 20, partMaxBytes: 1 << 20,
		backoff: 20 * time.Millisecond, socketTimeout: 5 * time.Second, flushBefore: flushBefore, durable: w.durable}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		select {
		case <-w.gate:
		default:
			close(w.gate)
		}
		cancel()
		wg.Wait()
	})
	f := startFetcher(ctx, &wg, 1, fl.ln.Addr().String(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.assign(map[TopicPartition]*Partition{{"t", 0}: follower})
	return leader
}

// TestFollowerReportsOnlyFlushedOffsets: with replica.flush.before.fetch
// (the default) no fetch reports an offset the follower has not flushed,
// so the leader's high watermark (what acks=all waits for) stays put while
// the follower's fsync is held, and moves once it completes.
func TestFollowerReportsOnlyFlushedOffsets(t *testing.T) {
	w := &flushWatch{gate: make(chan struct{})}
	var bad error
	var mu sync.Mutex
	leader := startPromiseFetcher(t, true, w, func(offset int64) {
		if _, flushed := w.state(); offset > 0 && offset > flushed {
			mu.Lock()
			bad = fmt.Errorf("fetch reported offset %d, flushed only up to %d", offset, flushed)
			mu.Unlock()
		}
	})
	waitUntil(t, "the follower appended and is flushing", func() error {
		if calls, _ := w.state(); calls == 0 {
			return fmt.Errorf("no flush yet")
		}
		return nil
	})
	// The fetcher is blocked in its flush: nothing reports the records. A
	// follower that did would fetch again within milliseconds; watch for
	// 6 fetch max waits.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if hw := leader.HighWatermark(); hw != 0 {
			t.Fatalf("leader HW %d while the follower's fsync is held", hw)
		}
	}
	close(w.gate)
	waitUntil(t, "HW reaches the LEO after the flush", func() error {
		if hw, leo := leader.HighWatermark(), leader.LogEndOffset(); hw != leo {
			return fmt.Errorf("HW %d, LEO %d", hw, leo)
		}
		return nil
	})
	appendN(t, leader, 3)
	waitUntil(t, "HW follows new appends", func() error {
		if hw, leo := leader.HighWatermark(), leader.LogEndOffset(); hw != leo {
			return fmt.Errorf("HW %d, LEO %d", hw, leo)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		t.Fatal(bad)
	}
}

// TestFollowerNoFlushBeforeFetch: with replica.flush.before.fetch=false the
// follower reports appended records while its fsync is still held (the HW
// reaches the LEO), and the background flush covers them once released.
func TestFollowerNoFlushBeforeFetch(t *testing.T) {
	w := &flushWatch{gate: make(chan struct{})}
	leader := startPromiseFetcher(t, false, w, nil)
	waitUntil(t, "HW reaches the LEO with the follower's fsync held", func() error {
		if hw, leo := leader.HighWatermark(), leader.LogEndOffset(); hw != leo {
			return fmt.Errorf("HW %d, LEO %d", hw, leo)
		}
		return nil
	})
	if _, flushed := w.state(); flushed != 0 {
		t.Fatalf("flushed up to %d before the gate opened", flushed)
	}
	appendN(t, leader, 3)
	waitUntil(t, "HW follows new appends", func() error {
		if hw, leo := leader.HighWatermark(), leader.LogEndOffset(); hw != leo {
			return fmt.Errorf("HW %d, LEO %d", hw, leo)
		}
		return nil
	})
	close(w.gate)
	waitUntil(t, "the background flush covers everything", func() error {
		if _, flushed := w.state(); flushed != leader.LogEndOffset() {
			return fmt.Errorf("flushed up to %d, LEO %d", flushed, leader.LogEndOffset())
		}
		return nil
	})
}

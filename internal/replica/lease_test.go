package replica

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeaseStepDown: a leader whose lease lapsed acts as leader only while an
// ISR follower keeps fetching; it refuses appends, wakes acks=all waiters
// with ErrNotLeader, and acts again once the lease is back.
func TestLeaseStepDown(t *testing.T) {
	const timeout = 3 * time.Second
	var lastHB atomic.Int64 // unix nanos of the last accepted heartbeat
	m := &Manager{}
	m.SetLease(func() time.Time {
		if n := lastHB.Load(); n != 0 {
			return time.Unix(0, n)
		}
		return time.Time{}
	}, timeout)
	p := testPartition(t, 1)
	p.leaseValid, p.leaseTimeout = m.LeaseValid, m.leaseTimeout
	all := []int32{1, 2, 3}
	p.applyMetadata(meta(1, 1, 1, all, all), 2, t0)

	now := t0.Add(10 * time.Second)
	if p.ActsAsLeader(now) || m.LeaseValid(now) {
		t.Fatal("acts as leader before any heartbeat was accepted and without fetching followers")
	}
	lastHB.Store(now.Add(-timeout + time.Millisecond).UnixNano())
	if !p.ActsAsLeader(now) {
		t.Fatal("no leadership with a heartbeat accepted within the session timeout")
	}
	if _, err := p.AppendAcks(testBatch(t, 0, 0, 2), now, -1); err != nil {
		t.Fatalf("append with the lease: %v", err)
	}
	// The lease lapses; nobody fetches: step down.
	later := now.Add(time.Second)
	if p.ActsAsLeader(later) {
		t.Fatal("still leading a session timeout after the last heartbeat with no follower fetching")
	}
	if _, err := p.AppendAcks(testBatch(t, 0, 0, 1), later, -1); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("append after stepping down: %v", err)
	}
	// A follower outside the ISR fetching does not count; one in it does,
	// until its fetch is a session timeout old.
	p.applyMetadata(meta(1, 1, 2, all, []int32{1, 2}), 2, later)
	p.UpdateFollower(3, 0, later)
	if p.ActsAsLeader(later) {
		t.Fatal("a non-ISR follower's fetch kept the leadership")
	}
	p.UpdateFollower(2, 0, later)
	if !p.ActsAsLeader(later.Add(timeout-time.Millisecond)) || p.ActsAsLeader(later.Add(timeout)) {
		t.Fatal("an ISR follower's fetch should keep the leadership for one session timeout")
	}
	// Alone in the ISR it keeps leading: nobody else could be elected.
	p.applyMetadata(meta(1, 1, 3, all, []int32{1}), 2, later)
	if !p.ActsAsLeader(later.Add(time.Hour)) {
		t.Fatal("a leader alone in its ISR stepped down")
	}
	// A follower never makes a non-leader act as leader.
	p.applyMetadata(meta(2, 2, 4, all, all), 2, later)
	if p.ActsAsLeader(later) {
		t.Fatal("a follower acts as leader")
	}
}

// TestLeaseWakesAcksAllWaiters: RunLease wakes acks=all waiters of a leader
// whose lease lapsed, and they return ErrNotLeader rather than waiting for
// their timeout.
func TestLeaseWakesAcksAllWaiters(t *testing.T) {
	m, _ := newTestManager(t)
	var lastHB atomic.Int64
	lastHB.Store(time.Now().UnixNano())
	const timeout = 300 * time.Millisecond
	m.SetLease(func() time.Time { return time.Unix(0, lastHB.Load()) }, timeout)
	p := testPartition(t, 1)
	p.leaseValid, p.leaseTimeout = m.LeaseValid, m.leaseTimeout
	m.mu.Lock()
	m.parts[TopicPartition{"t", 0}] = p
	m.mu.Unlock()
	all := []int32{1, 2, 3}
	p.applyMetadata(meta(1, 1, 1, all, all), 2, time.Now())
	res, err := p.AppendAcks(testBatch(t, 0, 0, 1), time.Now(), -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.RunLease(ctx)
	start := time.Now()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := p.WaitReplicated(wctx, res.LastOffset+1, 1); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("waiter after the lease lapsed: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the waiter returned only after %v", took)
	}
}

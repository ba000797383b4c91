package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// TestCrashRecovery kills the broker with SIGKILL at random moments while an
// idempotent acks=all producer writes uniquely numbered records, restarts it,
// and lets the same client carry on. At the end every acknowledged record
// must be in the log exactly once at its acknowledged offset, no sequence
// number may appear twice, and each partition must hold its records in
// produce order.
func TestCrashRecovery(t *testing.T) { crashRecovery(t, 3) }

// TestCrashRecoveryManyPartitions is TestCrashRecovery with records spread
// round-robin over 24 partitions, so that produce requests span many
// partitions and their fsyncs are coalesced into one syncfs
// (log.flush.syncfs.min.partitions), new partitions skip their own first
// flush, and leader epoch checkpoints are synced by the flush.
func TestCrashRecoveryManyPartitions(t *testing.T) {
	crashRecovery(t, 24, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
}

func crashRecovery(t *testing.T, partitions int32, opts ...kgo.Opt) {
	const (
		topic = "crash"
		keys  = 16
	)
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	n := testcluster.StartNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	createTopic(ctx, t, newAdmin(t, n), topic, partitions, nil)

	cl := newClient(t, n, append([]kgo.Opt{
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default; idempotence stays on
		kgo.RecordDeliveryTimeout(2 * time.Minute),
		kgo.MaxBufferedRecords(2000),
	}, opts...)...)

	type position struct {
		part   int32
		offset int64
	}
	var (
		mu       sync.Mutex
		acked    = map[int64]position{} // seq -> where the broker said it went
		failed   = map[int64]error{}
		ackCount atomic.Int64
		sent     atomic.Int64
	)
	pctx, stopProducing := context.WithCancel(ctx)
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		for seq := int64(0); pctx.Err() == nil; seq++ {
			r := &kgo.Record{
				Key:   strconv.AppendInt(nil, seq%keys, 10),
				Value: strconv.AppendInt(nil, seq, 10),
			}
			sent.Store(seq + 1)
			// ctx, not pctx: stopping the loop must not cancel buffered records.
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed[seq] = err
					return
				}
				acked[seq] = position{r.Partition, r.Offset}
				ackCount.Add(1)
			})
		}
	}()

	// waitAcks polls until more than `after` records are acknowledged.
	waitAcks := func(after int64, what string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for ackCount.Load() <= after {
			if time.Now().After(deadline) {
				mu.Lock()
				nf := len(failed)
				mu.Unlock()
				t.Fatalf("%s: no record acknowledged within 45s (acked %d, failed %d, sent %d)", what, ackCount.Load(), nf, sent.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	start := time.Now()
	for round := 1; round <= rounds; round++ {
		roundStart := time.Now()
		before := ackCount.Load()
		waitAcks(before, fmt.Sprintf("round %d", round))
		delay := 100*time.Millisecond + rand.N(700*time.Millisecond)
		time.Sleep(time.Until(roundStart.Add(delay))) // the random crash moment, not synchronization
		killedAfter := time.Since(roundStart)
		n.Kill()
		killedAt := ackCount.Load()
		restartStart := time.Now()
		n.Restart(t)
		t.Logf("round %d: SIGKILL %v into the round; acked %d this round, %d total; sent %d; restart took %v",
			round, killedAfter.Round(time.Millisecond), killedAt-before, killedAt, sent.Load(),
			time.Since(restartStart).Round(time.Millisecond))
	}
	// The producer must make progress after the last restart too.
	waitAcks(ackCount.Load(), "after last restart")
	stopProducing()
	<-producerDone
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	defer fcancel()
	if err := cl.Flush(fctx); err != nil {
		t.Fatalf("flush after last round: %v (acked %d of %d)", err, ackCount.Load(), sent.Load())
	}
	total := sent.Load()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d rounds in %v: sent %d records, acknowledged %d, failed %d", rounds, time.Since(start).Round(time.Millisecond), total, len(acked), len(failed))
	if int64(len(acked)+len(failed)) != total {
		t.Errorf("%d records resolved, %d sent", len(acked)+len(failed), total)
	}
	if len(failed) > 0 {
		errs := map[string]int{}
		for _, err := range failed {
			errs[err.Error()]++
		}
		// With unlimited retries and a 2-minute delivery timeout nothing
		// should fail; failures here usually mean the broker lost or
		// mismatched idempotent producer state across a crash.
		t.Errorf("%d records failed to produce; errors: %v", len(failed), errs)
	}

	got := consumeAll(ctx, t, n, topic, time.Minute)
	seen := map[int64]position{}
	var present, dups, misplaced, unackedPresent int
	for p := range partitions {
		recs := got[p]
		checkDense(t, topic, p, recs)
		last := int64(-1)
		for _, r := range recs {
			present++
			seq, err := strconv.ParseInt(string(r.Value), 10, 64)
			if err != nil || seq < 0 || seq >= total {
				t.Errorf("%s/%d offset %d: value %q is not a sequence number that was sent (< %d)", topic, p, r.Offset, r.Value, total)
				continue
			}
			if string(r.Key) != strconv.FormatInt(seq%keys, 10) {
				t.Errorf("%s/%d offset %d: seq %d has key %q, want %d", topic, p, r.Offset, seq, r.Key, seq%keys)
			}
			if prev, dup := seen[seq]; dup {
				dups++
				if dups <= 10 {
					t.Errorf("seq %d present twice: %d/%d and %d/%d", seq, prev.part, prev.offset, p, r.Offset)
				}
			}
			seen[seq] = position{p, r.Offset}
			if seq <= last {
				t.Errorf("%s/%d offset %d: seq %d after seq %d (reordered)", topic, p, r.Offset, seq, last)
			}
			last = seq
			if pos, ok := acked[seq]; !ok {
				unackedPresent++
			} else if pos != (position{p, r.Offset}) {
				misplaced++
				if misplaced <= 10 {
					t.Errorf("seq %d acknowledged at %d/%d but found at %d/%d", seq, pos.part, pos.offset, p, r.Offset)
				}
			}
		}
	}
	var lost []int64
	for seq := range acked {
		if _, ok := seen[seq]; !ok {
			lost = append(lost, seq)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged records missing after crashes (e.g. seq %v)", len(lost), lost[:min(len(lost), 10)])
	}
	if dups > 0 || misplaced > 0 {
		t.Errorf("%d duplicate sequence numbers, %d records not at their acknowledged offset", dups, misplaced)
	}
	t.Logf("log holds %d records: %d acknowledged, %d unacknowledged but present (allowed), %d acknowledged missing",
		present, present-unackedPresent, unackedPresent, len(lost))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("test ran out of time")
	}
}

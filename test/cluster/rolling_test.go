package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/readiness"
	"strand/internal/testcluster"
	"strand/internal/verify"
)

// TestRollingRestart restarts every node in turn (SIGTERM, start, then wait
// for `strand ready --all`: registered, back in every ISR, nothing
// under-replicated, before the next node goes down) while the verifier
// produces with acks=all and min.insync.replicas=2: no acknowledged record
// may be lost, duplicated or reordered, and records keep being acknowledged
// through the roll (logged as its time-to-recover figure).
func TestRollingRestart(t *testing.T) {
	c := testcluster.StartCluster(t, 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var waits []time.Duration
	o := verify.DefaultOptions()
	o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor, o.MinInsync = c.Addrs(), "rolling", 3, 3, 2
	o.Duration, o.FaultAt, o.AfterFault, o.InFlight = 4*time.Second, time.Second, time.Second, 200
	o.DrainTimeout, o.ReadTimeout = 40*time.Second, 60*time.Second
	o.Fault = func(ctx context.Context) error {
		for _, n := range c.Nodes {
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			_, err := readiness.Wait(rctx, cl, n.ID(), true, 100*time.Millisecond)
			cancel()
			if err != nil {
				return fmt.Errorf("before stopping node %d: %w", n.ID(), err)
			}
			if err := n.Stop(); err != nil {
				return err
			}
			start := time.Now()
			if err := restart(ctx, t, n); err != nil {
				return err
			}
			rctx, cancel = context.WithTimeout(ctx, 60*time.Second)
			_, err = readiness.Wait(rctx, cl, n.ID(), true, 100*time.Millisecond)
			cancel()
			if err != nil {
				return fmt.Errorf("after restarting node %d: %w", n.ID(), err)
			}
			waits = append(waits, time.Since(start))
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := verify.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rolling restart: produced %d, acked %d, not acked %d (first error %q), lost %d, duplicated %d, reordered %d; restart-to-ready %v",
		rep.Produced, rep.Acknowledged, rep.NotAcknowledged, rep.FirstProduceError, rep.Lost, rep.Duplicated, rep.Reordered, waits)
	logRecovery(t, "rolling restart", rep)
	if rep.FaultFailed() || rep.Violations() != 0 {
		t.Fatalf("rolling restart: %+v (fault %s)", rep.Counts, rep.Fault)
	}
	if rep.Recovery.AckedDuringFault == 0 || rep.Recovery.AckedAfterFault == 0 {
		t.Fatalf("no acks during or after the roll: %+v", rep.Recovery)
	}
}

package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"strand/internal/testcluster"
	"strand/internal/verify"
)

// TestUncleanLeaderElection: a partition with replicas {A, B} loses B from
// its ISR (B frozen past the session and lag timeouts) while A keeps
// acknowledging writes alone (min.insync.replicas=1); then A, its whole ISR,
// dies and B comes back. With unclean.leader.election.enable=false the
// partition stays offline until A returns and nothing acknowledged is lost;
// with it enabled B leads at once and the verifier reports the records only
// A had as lost.
func TestUncleanLeaderElection(t *testing.T) {
	c := testcluster.StartCluster(t, 3, testcluster.WithSet("replica.lag.time.max.ms", "2000"))
	for _, unclean := range []bool{false, true} {
		topic := fmt.Sprintf("unclean-%v", unclean)
		adm := admin(t, c.Addrs())
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		if _, err := adm.CreateTopic(ctx, 1, 2, map[string]*string{
			"min.insync.replicas":            ptr("1"),
			"unclean.leader.election.enable": ptr(fmt.Sprint(unclean)),
		}, topic); err != nil {
			t.Fatal(err)
		}
		var offline time.Duration
		o := verify.DefaultOptions()
		o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor = c.Addrs(), topic, 1, 2
		o.Duration, o.FaultAt, o.InFlight = 16*time.Second, time.Second, 100
		o.DrainTimeout, o.ReadTimeout = 60*time.Second, 60*time.Second
		o.Fault = func(ctx context.Context) error {
			a, reps, err := leaderOf(ctx, c, topic, 0)
			if err != nil {
				return err
			}
			b := reps[0]
			if b == a {
				b = reps[1]
			}
			if err := c.Node(b).Pause(); err != nil {
				return err
			}
			time.Sleep(6 * time.Second) // B fenced and out of the ISR; A acknowledges alone
			c.Node(a).Kill()
			if err := c.Node(b).Resume(); err != nil {
				return err
			}
			start := time.Now()
			for time.Since(start) < 6*time.Second {
				if l, _, err := leaderOf(ctx, c, topic, 0); err == nil && l == b {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			offline = time.Since(start)
			return restart(ctx, t, c.Node(a))
		}
		rep, err := verify.Run(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("unclean=%v: %v", unclean, err)
		}
		t.Logf("unclean=%v: acked %d, lost %d, duplicated %d, reordered %d; B led after %v of A's death (6s = never)",
			unclean, rep.Acknowledged, rep.Lost, rep.Duplicated, rep.Reordered, offline.Round(100*time.Millisecond))
		if rep.FaultFailed() {
			t.Fatalf("unclean=%v: fault %s", unclean, rep.Fault)
		}
		switch {
		case !unclean && rep.Violations() != 0:
			t.Errorf("unclean election off, yet the verifier found violations: %+v", rep.Counts)
		case !unclean && offline < 5*time.Second:
			t.Errorf("unclean election off, yet out-of-sync B led after %v", offline)
		case unclean && rep.Lost == 0:
			t.Errorf("unclean election on: expected the records only A had to be reported lost, got %+v", rep.Counts)
		}
	}
}

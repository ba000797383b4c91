package cluster

import (
	"context"
	"testing"
	"time"

	"strand/internal/testcluster"
	"strand/internal/verify"
)

// TestLeaderIsolatedFromFollowers is the classic split-brain: the leader of
// a partition is cut off from the other brokers and the controllers (its
// cluster network goes down; each node runs in its own network namespace)
// while clients can still reach it. It cannot get writes into its ISR, so
// it acknowledges none that the new leader on the other side lacks; when
// the network heals it truncates to the new leader's log and follows. The
// verifier must report no acknowledged record lost, duplicated or reordered.
//
// Liveness: the isolated leader steps down a session timeout (3 s here)
// after its last heartbeat the controller accepted (internal/replica/lease.go),
// so clients move to the new leader and every partition acknowledges
// records again while the isolation lasts: no gap between acknowledgements
// may come near the 10 s isolation.
// maxIsolationGap bounds the longest gap between acknowledgements while a
// leader is isolated for 10 s: a session timeout (3 s) to step down and be
// fenced, plus the clients' metadata refresh, with room for a loaded CI host.
const maxIsolationGap = 8 * time.Second

func TestLeaderIsolatedFromFollowers(t *testing.T) {
	c := testcluster.StartNetCluster(t, 3, testcluster.WithSet("replica.lag.time.max.ms", "3000"))
	const topic = "split"
	var isolated int32
	o := verify.DefaultOptions()
	o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor, o.MinInsync = c.Addrs(), topic, 3, 3, 2
	o.Duration, o.FaultAt, o.InFlight = 20*time.Second, 3*time.Second, 200
	o.DrainTimeout, o.ReadTimeout = 60*time.Second, 60*time.Second
	o.Fault = func(ctx context.Context) error {
		l, _, err := leaderOf(ctx, c, topic, 0)
		if err != nil {
			return err
		}
		isolated = l
		if err := c.Isolate(l); err != nil {
			return err
		}
		time.Sleep(10 * time.Second) // past the session timeout: the others elect a new leader
		return c.Heal(l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := verify.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %d isolated for 10s: produced %d, acked %d, not acked %d, lost %d, duplicated %d, reordered %d (fault %s)",
		isolated, rep.Produced, rep.Acknowledged, rep.NotAcknowledged, rep.Lost, rep.Duplicated, rep.Reordered, rep.Fault)
	logRecovery(t, "network isolation of the leader", rep)
	if rep.FaultFailed() || rep.Violations() != 0 || rep.Acknowledged == 0 {
		t.Fatalf("split brain: %+v (fault %s)", rep.Counts, rep.Fault)
	}
	if rep.Recovery.AckedDuringFault == 0 || rep.Recovery.MaxAckGapSeconds > maxIsolationGap.Seconds() {
		t.Fatalf("clients did not move to the new leader during the isolation: longest gap between acks %.1fs (limit %v), %d acked during it",
			rep.Recovery.MaxAckGapSeconds, maxIsolationGap, rep.Recovery.AckedDuringFault)
	}
}

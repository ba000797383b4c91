package cluster

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"strand/internal/testcluster"
	"strand/internal/verify"
)

// chaosRoundTime is how long each chaos round produces; STRAND_CHAOS_SECONDS
// raises it for a soak run.
func chaosRoundTime() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("STRAND_CHAOS_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 6 * time.Second
}

// leaderOf returns the leader of topic's partition as a node's metadata sees it.
func leaderOf(ctx context.Context, c *testcluster.Cluster, topic string, partition int32) (int32, []int32, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		nctx, cancel := context.WithTimeout(ctx, time.Second) // a paused node never answers
		v, err := nodeView(nctx, n.Addr())
		cancel()
		if err != nil {
			continue
		}
		for _, p := range v.topics[topic] {
			if p.Partition == partition && p.Leader > 0 {
				return p.Leader, p.Replicas, nil
			}
		}
	}
	return -1, nil, fmt.Errorf("no leader known for %s-%d", topic, partition)
}

// chaosRepeats is how many times TestChaosRounds runs each fault kind;
// STRAND_CHAOS_ROUNDS raises it to measure recovery-time medians.
func chaosRepeats() int {
	if n, err := strconv.Atoi(os.Getenv("STRAND_CHAOS_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// waitUntil polls cond every 50 ms until it returns nil or ctx ends (then
// it returns what cond last said).
func waitUntil(ctx context.Context, cond func() error) error {
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitNewLeader waits until a running node names a leader other than old
// for topic's partition: the failover is done on the cluster side.
func waitNewLeader(ctx context.Context, c *testcluster.Cluster, topic string, partition, old int32) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return waitUntil(ctx, func() error {
		l, _, err := leaderOf(ctx, c, topic, partition)
		switch {
		case err != nil:
			return err
		case l == old:
			return fmt.Errorf("%s-%d still led by %d", topic, partition, old)
		}
		return nil
	})
}

// restart starts a stopped node again and waits until it serves.
func restart(ctx context.Context, t *testing.T, n *testcluster.Node) error {
	n.Start(t)
	return n.WaitReady(ctx)
}

// TestChaosRounds runs the chaos verifier (internal/verify: idempotent
// acks=all producer, RF=3, min.insync.replicas=2) through one fault per
// round and requires, in every round, zero acknowledged records lost, zero
// duplicates and zero reorderings (safety), and records acknowledged after
// the fault returned (liveness). A killed or paused leader or controller
// stays down until the others name a new one, so each round's longest gap
// between acknowledgements is the cluster's failover time; the test logs it
// per round and as median and maximum per fault kind
// (STRAND_CHAOS_ROUNDS=n repeats every kind n times).
func TestChaosRounds(t *testing.T) {
	c := testcluster.StartCluster(t, 3, testcluster.WithSet("replica.lag.time.max.ms", "3000"))
	ctrl := func(ctx context.Context) (int32, error) {
		for _, n := range c.Nodes {
			if n.Running() {
				nctx, cancel := context.WithTimeout(ctx, time.Second)
				v, err := nodeView(nctx, n.Addr())
				cancel()
				if err == nil && v.controller > 0 {
					return v.controller, nil
				}
			}
		}
		return -1, fmt.Errorf("no controller known")
	}
	type round struct {
		name  string
		fault func(ctx context.Context, topic string) error
	}
	down := 2 * time.Second
	rounds := []round{
		{"leader killed", func(ctx context.Context, topic string) error {
			l, _, err := leaderOf(ctx, c, topic, 0)
			if err != nil {
				return err
			}
			c.Node(l).Kill()
			if err := waitNewLeader(ctx, c, topic, 0, l); err != nil {
				return err
			}
			return restart(ctx, t, c.Node(l))
		}},
		{"follower killed", func(ctx context.Context, topic string) error {
			l, reps, err := leaderOf(ctx, c, topic, 0)
			if err != nil {
				return err
			}
			for _, r := range reps {
				if r != l {
					c.Node(r).Kill()
					time.Sleep(down)
					return restart(ctx, t, c.Node(r))
				}
			}
			return fmt.Errorf("no follower of %s-0 in %v", topic, reps)
		}},
		{"leader paused past the session timeout", func(ctx context.Context, topic string) error {
			l, _, err := leaderOf(ctx, c, topic, 0)
			if err != nil {
				return err
			}
			if err := c.Node(l).Pause(); err != nil {
				return err
			}
			err = waitNewLeader(ctx, c, topic, 0, l)
			if rerr := c.Node(l).Resume(); err == nil {
				err = rerr
			}
			return err
		}},
		{"active controller killed", func(ctx context.Context, topic string) error {
			id, err := ctrl(ctx)
			if err != nil {
				return err
			}
			c.Node(id).Kill()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = waitUntil(wctx, func() error {
				if now, err := ctrl(wctx); err != nil || now == id {
					return fmt.Errorf("controller %d (was %d): %v", now, id, err)
				}
				return nil
			})
			cancel()
			if err != nil {
				return err
			}
			return restart(ctx, t, c.Node(id))
		}},
		{"two brokers killed and restored", func(ctx context.Context, topic string) error {
			l, reps, err := leaderOf(ctx, c, topic, 0)
			if err != nil {
				return err
			}
			var victims []int32
			for _, r := range reps {
				if r != l && len(victims) < 1 {
					victims = append(victims, r)
				}
			}
			victims = append(victims, l)
			for _, v := range victims {
				c.Node(v).Kill()
			}
			time.Sleep(down)
			for _, v := range victims {
				if err := restart(ctx, t, c.Node(v)); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	var total, acked int64
	var figures recoveryFigures
	var all []round
	for range chaosRepeats() {
		all = append(all, rounds...)
	}
	for i, r := range all {
		topic := fmt.Sprintf("chaos-%d", i)
		o := verify.DefaultOptions()
		o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor, o.MinInsync = c.Addrs(), topic, 3, 3, 2
		o.Duration, o.FaultAt = chaosRoundTime(), chaosRoundTime()/4
		o.DrainTimeout, o.ReadTimeout = 40*time.Second, 60*time.Second
		o.InFlight, o.AfterFault = 200, time.Second
		o.Fault = func(ctx context.Context) error { return r.fault(ctx, topic) }
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		rep, err := verify.Run(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("round %d (%s): %v", i, r.name, err)
		}
		t.Logf("round %d (%s): produced %d, acked %d, not acked %d, read %d, lost %d, duplicated %d, reordered %d, fault %s",
			i, r.name, rep.Produced, rep.Acknowledged, rep.NotAcknowledged, rep.Read, rep.Lost, rep.Duplicated, rep.Reordered, rep.Fault)
		if rep.FaultFailed() {
			t.Errorf("round %d (%s): fault %s", i, r.name, rep.Fault)
		}
		if rep.Violations() != 0 || rep.Acknowledged == 0 {
			t.Errorf("round %d (%s): %+v", i, r.name, rep.Counts)
		}
		logRecovery(t, r.name, rep)
		if rep.Recovery.AckedAfterFault == 0 {
			t.Errorf("round %d (%s): no record acknowledged after the fault returned (liveness)", i, r.name)
		}
		figures.add(r.name, rep)
		total += rep.Produced
		acked += rep.Acknowledged
	}
	t.Logf("%d chaos rounds: %d records produced, %d acknowledged, 0 lost/duplicated/reordered required", len(all), total, acked)
	figures.log(t)
}

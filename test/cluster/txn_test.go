package cluster

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"strand/internal/testcluster"
	"strand/internal/verify"
)

// TestTransactionChaos runs the transactional verifier on a 3-node
// cluster three times: once killing -9 the transaction coordinator of one of its
// producers in the middle (the new leader of the id's __transaction_state
// partition takes over and finishes what was decided), once killing -9
// the leader of a data partition (its follower, which replicated the open
// transactions, becomes leader), and once pausing the coordinator with
// SIGSTOP past the session timeout. Each killed node restarts at once. The
// read_committed check must find every committed transaction whole,
// nothing aborted visible, no duplicate, and no transaction left hanging.
// STRAND_CHAOS_SECONDS lengthens each round for a soak.
func TestTransactionChaos(t *testing.T) {
	c := testcluster.StartCluster(t, 3, txnChaosSettings...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kill := func(id int32) error {
		n := c.Node(id)
		n.Kill()
		n.Restart(t)
		return nil
	}
	coordinatorOf := txnCoordinatorOf(t, c)
	txnChaosRound(ctx, t, c, "txn-chaos", "coordinator", coordinatorOf, kill)
	txnChaosRound(ctx, t, c, "txn-chaos", "leader", func(ctx context.Context, _ string) (int32, error) {
		leader, _, err := leaderOf(ctx, c, "txn-chaos", 0)
		return leader, err
	}, kill)
	// SIGSTOP of the coordinator past the session timeout: it is fenced,
	// its partitions move, and it resumes as a follower.
	txnChaosRound(ctx, t, c, "txn-chaos", "pause", coordinatorOf, func(id int32) error {
		n := c.Node(id)
		if err := n.Pause(); err != nil {
			return err
		}
		time.Sleep(5 * time.Second) // the fault's length: past broker.session.timeout.ms (3 s)
		return n.Resume()
	})
}

// txnChaosSettings are the broker settings of the transaction chaos tests:
// few internal partitions, and a follower leaves the ISR after 3 s.
var txnChaosSettings = []testcluster.Option{
	testcluster.WithSet("transaction.state.log.num.partitions", "6"),
	testcluster.WithSet("offsets.topic.num.partitions", "6"),
	testcluster.WithSet("replica.lag.time.max.ms", "3000"),
}

// txnChaosRound runs the transactional verifier once on topic (4
// partitions, RF 3) of c, applying fault to the node victim names half-way
// through. It fails the test unless the read_committed check passes and
// the run both committed and aborted transactions.
func txnChaosRound(ctx context.Context, t *testing.T, c *testcluster.Cluster, topic, name string,
	victim func(ctx context.Context, runID string) (int32, error), fault func(id int32) error) {
	t.Helper()
	o := verify.DefaultOptions()
	o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor = c.Addrs(), topic, 4, 3
	o.RunID = fmt.Sprintf("%s%d", name, time.Now().UnixNano()%1e6)
	o.Duration, o.FaultAt, o.ReadTimeout = 2*chaosRoundTime(), chaosRoundTime()/2, 90*time.Second
	o.Fault = func(ctx context.Context) error {
		id, err := victim(ctx, o.RunID)
		if err != nil {
			return err
		}
		t.Logf("%s: fault on node %d", name, id)
		return fault(id)
	}
	var out bytes.Buffer
	start := time.Now()
	counts, err := verify.RunTransactions(ctx, o, verify.TxnOptions{Producers: 4, TxnMaxRecords: 10, AbortRatio: 0.2}, &out)
	t.Logf("%s (%v): %s", name, time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if counts.Committed == 0 || counts.Aborted == 0 {
		t.Fatalf("%s: counts %+v: want committed and aborted transactions", name, counts)
	}
}

// txnCoordinatorOf returns a victim for txnChaosRound: the transaction
// coordinator of the verifier's first producer.
func txnCoordinatorOf(t *testing.T, c *testcluster.Cluster) func(ctx context.Context, runID string) (int32, error) {
	return func(ctx context.Context, runID string) (int32, error) {
		id := runID + "-t0"
		coord := admin(t, c.Addrs()).FindTxnCoordinators(ctx, id)[id]
		if coord.Err != nil {
			return 0, fmt.Errorf("find coordinator of %s: %w", id, coord.Err)
		}
		return coord.NodeID, nil
	}
}

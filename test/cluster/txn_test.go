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
	c := testcluster.StartCluster(t, 3,
		testcluster.WithSet("transaction.state.log.num.partitions", "6"),
		testcluster.WithSet("offsets.topic.num.partitions", "6"),
		testcluster.WithSet("replica.lag.time.max.ms", "3000"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kill := func(t *testing.T, n *testcluster.Node) error {
		n.Kill()
		n.Restart(t)
		return nil
	}
	round := func(name string, victim func(ctx context.Context, runID string) (int32, error), fault func(*testing.T, *testcluster.Node) error) {
		o := verify.DefaultOptions()
		o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor = c.Addrs(), "txn-chaos", 4, 3
		o.RunID = fmt.Sprintf("%s%d", name, time.Now().UnixNano()%1e6)
		o.Duration, o.FaultAt, o.ReadTimeout = 2*chaosRoundTime(), chaosRoundTime()/2, 90*time.Second
		o.Fault = func(ctx context.Context) error {
			id, err := victim(ctx, o.RunID)
			if err != nil {
				return err
			}
			t.Logf("%s: fault on node %d", name, id)
			return fault(t, c.Node(id))
		}
		var out bytes.Buffer
		counts, err := verify.RunTransactions(ctx, o, verify.TxnOptions{Producers: 4, TxnMaxRecords: 10, AbortRatio: 0.2}, &out)
		t.Logf("%s: %s", name, out.String())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if counts.Committed == 0 || counts.Aborted == 0 {
			t.Fatalf("%s: counts %+v: want committed and aborted transactions", name, counts)
		}
	}
	coordinatorOf := func(ctx context.Context, runID string) (int32, error) {
		id := runID + "-t0"
		coord := admin(t, c.Addrs()).FindTxnCoordinators(ctx, id)[id]
		if coord.Err != nil {
			return 0, fmt.Errorf("find coordinator of %s: %w", id, coord.Err)
		}
		return coord.NodeID, nil
	}
	round("coordinator", coordinatorOf, kill)
	round("leader", func(ctx context.Context, _ string) (int32, error) {
		leader, _, err := leaderOf(ctx, c, "txn-chaos", 0)
		return leader, err
	}, kill)
	// SIGSTOP of the coordinator past the session timeout: it is fenced,
	// its partitions move, and it resumes as a follower.
	round("pause", coordinatorOf, func(t *testing.T, n *testcluster.Node) error {
		if err := n.Pause(); err != nil {
			return err
		}
		time.Sleep(5 * time.Second) // the fault's length: past broker.session.timeout.ms (3 s)
		return n.Resume()
	})
}

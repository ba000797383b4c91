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

// TestTransactionChaosIsolation runs the transactional verifier on a 3-node
// cluster in network namespaces and cuts a node off from the other brokers
// and the controllers (clients still reach it) for 6 s, past the 3 s
// session timeout, then heals it: once the transaction coordinator of one of
// the verifier's producers (an isolated coordinator must not complete a
// transaction it can no longer replicate; the new leader of its
// __transaction_state partition takes over), once the leader of a data
// partition. The read_committed check must find every committed transaction
// whole, nothing aborted visible, no duplicate, no transaction left hanging.
func TestTransactionChaosIsolation(t *testing.T) {
	c := testcluster.StartNetCluster(t, 3,
		testcluster.WithSet("transaction.state.log.num.partitions", "6"),
		testcluster.WithSet("offsets.topic.num.partitions", "6"),
		testcluster.WithSet("replica.lag.time.max.ms", "3000"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	isolate := func(id int32) error {
		if err := c.Isolate(id); err != nil {
			return err
		}
		time.Sleep(6 * time.Second) // the fault's length: past broker.session.timeout.ms (3 s)
		return c.Heal(id)
	}
	round := func(name string, victim func(ctx context.Context, runID string) (int32, error)) {
		o := verify.DefaultOptions()
		o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor = c.Addrs(), "txn-isolate", 4, 3
		o.RunID = fmt.Sprintf("%s%d", name, time.Now().UnixNano()%1e6)
		o.Duration, o.FaultAt, o.ReadTimeout = 2*chaosRoundTime(), chaosRoundTime()/2, 90*time.Second
		o.Fault = func(ctx context.Context) error {
			id, err := victim(ctx, o.RunID)
			if err != nil {
				return err
			}
			t.Logf("%s: isolating node %d", name, id)
			return isolate(id)
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
	round("coordinator", func(ctx context.Context, runID string) (int32, error) {
		id := runID + "-t0"
		coord := admin(t, c.Addrs()).FindTxnCoordinators(ctx, id)[id]
		if coord.Err != nil {
			return 0, fmt.Errorf("find coordinator of %s: %w", id, coord.Err)
		}
		return coord.NodeID, nil
	})
	round("leader", func(ctx context.Context, _ string) (int32, error) {
		leader, _, err := leaderOf(ctx, c, "txn-isolate", 0)
		return leader, err
	})
}

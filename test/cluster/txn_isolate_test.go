package cluster

import (
	"context"
	"testing"
	"time"

	"strand/internal/testcluster"
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
	c := testcluster.StartNetCluster(t, 3, txnChaosSettings...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	isolate := func(id int32) error {
		if err := c.Isolate(id); err != nil {
			return err
		}
		time.Sleep(6 * time.Second) // the fault's length: past broker.session.timeout.ms (3 s)
		return c.Heal(id)
	}
	txnChaosRound(ctx, t, c, "txn-isolate", "coordinator", txnCoordinatorOf(t, c), isolate)
	txnChaosRound(ctx, t, c, "txn-isolate", "leader", func(ctx context.Context, _ string) (int32, error) {
		leader, _, err := leaderOf(ctx, c, "txn-isolate", 0)
		return leader, err
	}, isolate)
}

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

// TestTransactionCoordinatorKill runs the transactional verifier on a
// 3-node cluster and kills -9 the transaction coordinator of one of its
// producers in the middle, then restarts it: the new coordinator (the new
// leader of the id's __transaction_state partition) takes over, and the
// read_committed check finds every committed transaction whole, nothing
// aborted visible, no duplicate, and no transaction left hanging.
func TestTransactionCoordinatorKill(t *testing.T) {
	c := testcluster.StartCluster(t, 3,
		testcluster.WithSet("transaction.state.log.num.partitions", "6"),
		testcluster.WithSet("offsets.topic.num.partitions", "6"),
		testcluster.WithSet("replica.lag.time.max.ms", "3000"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := verify.DefaultOptions()
	o.Brokers, o.Topic, o.Partitions, o.ReplicationFactor = c.Addrs(), "txn-chaos", 4, 3
	o.RunID = fmt.Sprintf("kill%d", time.Now().UnixNano()%1e6)
	o.Duration, o.FaultAt, o.ReadTimeout = 12*time.Second, 4*time.Second, 90*time.Second
	o.Fault = func(ctx context.Context) error {
		id := o.RunID + "-t0"
		coord := admin(t, c.Addrs()).FindTxnCoordinators(ctx, id)[id]
		if coord.Err != nil {
			return fmt.Errorf("find coordinator of %s: %w", id, coord.Err)
		}
		t.Logf("killing transaction coordinator %d of %s", coord.NodeID, id)
		n := c.Node(coord.NodeID)
		n.Kill()
		n.Restart(t)
		return nil
	}
	var out bytes.Buffer
	counts, err := verify.RunTransactions(ctx, o, verify.TxnOptions{Producers: 4, TxnMaxRecords: 10, AbortRatio: 0.2}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if counts.Committed == 0 || counts.Aborted == 0 {
		t.Fatalf("counts %+v: want committed and aborted transactions", counts)
	}
}

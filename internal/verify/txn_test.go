package verify

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"strand/internal/server/servertest"
)

// TestRunTransactions: a short transactional run against an in-process
// broker that restarts in the middle passes, with committed and aborted
// transactions.
func TestRunTransactions(t *testing.T) {
	b := servertest.Start(t)
	o := options(b.Addr, "verify-txn")
	o.Duration, o.FaultAt = 3*time.Second, time.Second
	o.Fault = func(ctx context.Context) error {
		if err := b.Stop(); err != nil {
			return err
		}
		return b.Start()
	}
	var out bytes.Buffer
	c, err := RunTransactions(testCtx(t), o, TxnOptions{Producers: 3, TxnMaxRecords: 10, AbortRatio: 0.3}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	if c.Committed == 0 || c.Aborted == 0 || c.Records == 0 || !strings.Contains(out.String(), "PASS") {
		t.Fatalf("counts %+v, output %s", c, out.String())
	}
}

// TestCheckTxns: the checker finds each kind of violation.
func TestCheckTxns(t *testing.T) {
	txns := []*producedTxn{
		{producer: 0, seq: 0, records: []txnRecord{{0, 0}, {1, 1}}, outcome: outcomeCommitted},
		{producer: 0, seq: 1, records: []txnRecord{{0, 0}}, outcome: outcomeAborted},
		{producer: 1, seq: 0, records: []txnRecord{{0, 0}, {0, 1}}, outcome: outcomeUnknown},
	}
	clean := map[int32][]string{0: {"r:t0:0:0:2", "r:t1:0:0:2", "r:t1:0:1:2"}, 1: {"r:t0:0:1:2"}}
	if c := checkTxns(txns, clean); c.Violations() != 0 || c.UnknownVisible != 1 || c.Records != 4 {
		t.Fatalf("clean: %+v", c)
	}
	bad := map[int32][]string{0: {"r:t0:0:0:2", "r:t0:1:0:1", "r:t1:0:1:2", "r:t1:0:0:2", "r:t1:0:0:2"}}
	c := checkTxns(txns, bad)
	if c.Partial != 1 || c.AbortedVisible != 1 || c.Duplicated != 1 || c.Reordered == 0 {
		t.Fatalf("bad: %+v", c)
	}
}

package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Transactional verification (`strand verify --transactions`): Producers
// transactional producers each run transactions of 1..TxnMaxRecords
// records spread over random partitions, aborting AbortRatio of them on
// purpose, while the fault runs. Every record's value is
// "<run>:t<producer>:<txn>:<index>:<size>". A read_committed reader then
// reads every partition up to a sealing record appended after producing
// (which is visible only once every earlier transaction is decided: no
// transaction may hang) and checks:
//   - every committed transaction is fully visible: each of its records
//     exactly once, and in each partition in produce order;
//   - nothing of an aborted transaction (or one whose commit was never
//     sent) is visible;
//   - a transaction whose commit was sent but not confirmed (an error) is
//     all or nothing;
//   - no record is read twice, and each producer's transactions appear in
//     each partition in the order they were committed.

// TxnCounts are the outcome of a transactional run.
type TxnCounts struct {
	Committed      int64 `json:"committed_txns"`       // commit confirmed
	Aborted        int64 `json:"aborted_txns"`         // aborted on purpose or after an error, commit never sent
	Unknown        int64 `json:"unknown_txns"`         // commit sent, outcome not confirmed
	UnknownVisible int64 `json:"unknown_visible_txns"` // of those, fully visible
	Records        int64 `json:"records_read"`         // this run's records read (read_committed)
	// Violations.
	Partial        int64 `json:"partial_txns"`         // committed (or unknown) but not fully visible
	AbortedVisible int64 `json:"aborted_visible_txns"` // aborted yet some record visible
	Duplicated     int64 `json:"duplicated"`           // records read more than once
	Reordered      int64 `json:"reordered"`            // records out of produce order in a partition
	Hung           bool  `json:"hung"`                 // the sealing records never became visible
}

// Violations is the number of violations found.
func (c TxnCounts) Violations() int64 {
	v := c.Partial + c.AbortedVisible + c.Duplicated + c.Reordered
	if c.Hung {
		v++
	}
	return v
}

// txnRecord is one record of a transaction.
type txnRecord struct {
	partition int32
	index     int
}

// txnOutcome is what the producer knows of a transaction.
type txnOutcome int8

const (
	outcomeAborted txnOutcome = iota
	outcomeCommitted
	outcomeUnknown
)

type producedTxn struct {
	producer, seq int
	records       []txnRecord
	outcome       txnOutcome
}

// TxnOptions configure the transactional producers of a run.
type TxnOptions struct {
	Producers     int     // transactional producers
	TxnMaxRecords int     // records per transaction: uniform in [1, TxnMaxRecords]
	AbortRatio    float64 // fraction of transactions aborted on purpose
}

// RunTransactions runs a transactional verification with o's brokers,
// topic, limits and fault.
func RunTransactions(ctx context.Context, o Options, to TxnOptions, out io.Writer) (TxnCounts, error) {
	var c TxnCounts
	if to.Producers < 1 || to.TxnMaxRecords < 1 || to.AbortRatio < 0 || to.AbortRatio > 1 {
		return c, fmt.Errorf("verify options: producers %d, txn records %d, abort ratio %v", to.Producers, to.TxnMaxRecords, to.AbortRatio)
	}
	if o.RunID == "" {
		o.RunID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if o.MinInsync == 0 {
		o.MinInsync = min(int(o.ReplicationFactor), 2)
	}
	parts, _, err := ensureTopic(ctx, o)
	if err != nil {
		return c, err
	}
	var mu sync.Mutex
	var txns []*producedTxn
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range to.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runTxnProducer(ctx, o, to, i, parts, stop, func(t *producedTxn) {
				mu.Lock()
				txns = append(txns, t)
				mu.Unlock()
			})
		}()
	}
	faultDone := make(chan error, 1)
	if o.Fault != nil {
		go func() {
			select {
			case <-time.After(o.FaultAt):
				faultDone <- o.Fault(ctx)
			case <-ctx.Done():
				faultDone <- ctx.Err()
			}
		}()
	} else {
		faultDone <- nil
	}
	limit := o.Duration
	if limit <= 0 {
		limit = time.Minute
	}
	select {
	case <-time.After(limit):
	case <-ctx.Done():
	}
	faultErr := <-faultDone
	close(stop)
	wg.Wait()
	if faultErr != nil {
		return c, fmt.Errorf("fault: %w", faultErr)
	}
	seen, hung, err := readCommitted(ctx, o, parts)
	if err != nil {
		return c, err
	}
	c = checkTxns(txns, seen)
	c.Hung = hung
	fmt.Fprintf(out, "run %s: %d committed, %d aborted, %d unknown (%d visible) transactions; %d records read\n",
		o.RunID, c.Committed, c.Aborted, c.Unknown, c.UnknownVisible, c.Records)
	fmt.Fprintf(out, "violations: %d partial, %d aborted visible, %d duplicated, %d reordered, hung %v\n",
		c.Partial, c.AbortedVisible, c.Duplicated, c.Reordered, c.Hung)
	if v := c.Violations(); v > 0 {
		fmt.Fprintln(out, "FAIL")
		return c, fmt.Errorf("FAIL: %d transaction violations", v)
	}
	fmt.Fprintln(out, "PASS")
	return c, nil
}

// runTxnProducer runs transactions until stop closes, reporting each.
func runTxnProducer(ctx context.Context, o Options, to TxnOptions, id int, parts []int32, stop <-chan struct{}, report func(*producedTxn)) {
	txnID := fmt.Sprintf("%s-t%d", o.RunID, id)
	newClient := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.TransactionalID(txnID),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(10*time.Second),
			kgo.MetadataMinAge(max(o.MetadataMinAge, 100*time.Millisecond)), kgo.RequestTimeoutOverhead(5*time.Second))
		if err != nil {
			panic(err) // only bad options fail here
		}
		return cl
	}
	cl := newClient()
	defer func() { cl.Close() }()
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		t := &producedTxn{producer: id, seq: seq}
		n := 1 + rng.IntN(to.TxnMaxRecords)
		for j := range n {
			t.records = append(t.records, txnRecord{partition: parts[rng.IntN(len(parts))], index: j})
		}
		abort := rng.Float64() < to.AbortRatio
		err := cl.BeginTransaction()
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			var perr error
			var pmu sync.Mutex
			for _, r := range t.records {
				v := fmt.Sprintf("%s:t%d:%d:%d:%d", o.RunID, id, seq, r.index, n)
				cl.Produce(pctx, &kgo.Record{Topic: o.Topic, Partition: r.partition, Value: []byte(v)}, func(_ *kgo.Record, err error) {
					if err != nil {
						pmu.Lock()
						perr = errors.Join(perr, err)
						pmu.Unlock()
					}
				})
			}
			if ferr := cl.Flush(pctx); ferr != nil && perr == nil {
				perr = ferr
			}
			cancel()
			err = perr
		}
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		switch {
		case err != nil || abort:
			t.outcome = outcomeAborted
			if aerr := cl.AbortBufferedRecords(ectx); aerr == nil {
				err = cl.EndTransaction(ectx, kgo.TryAbort)
			}
		default:
			if cerr := cl.EndTransaction(ectx, kgo.TryCommit); cerr != nil {
				t.outcome, err = outcomeUnknown, cerr
			} else {
				t.outcome = outcomeCommitted
			}
		}
		cancel()
		report(t)
		if err != nil {
			// Start over with a new client: its InitProducerId fences this
			// one and aborts whatever it left open.
			cl.Close()
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			cl = newClient()
		}
	}
}

// readCommitted appends a sealing record to every partition and reads
// every partition with read_committed up to it; it returns the run's
// values per partition in order, and whether some seal never showed up
// within o.ReadTimeout.
func readCommitted(ctx context.Context, o Options, parts []int32) (map[int32][]string, bool, error) {
	sealer, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, false, err
	}
	defer sealer.Close()
	seal := o.RunID + ":seal"
	for _, p := range parts {
		sctx, cancel := context.WithTimeout(ctx, o.ReadTimeout)
		err := sealer.ProduceSync(sctx, &kgo.Record{Topic: o.Topic, Partition: p, Value: []byte(seal)}).FirstErr()
		cancel()
		if err != nil {
			return nil, false, fmt.Errorf("seal partition %d: %w", p, err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.ConsumeTopics(o.Topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, false, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, o.ReadTimeout)
	defer cancel()
	seen := map[int32][]string{}
	sealed := map[int32]bool{}
	prefix := o.RunID + ":"
	for len(sealed) < len(parts) {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			return seen, true, nil
		}
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			switch {
			case v == seal:
				sealed[r.Partition] = true
			case strings.HasPrefix(v, prefix):
				seen[r.Partition] = append(seen[r.Partition], v)
			}
		})
	}
	return seen, false, nil
}

// checkTxns compares what was read (run values per partition, in order)
// with the transactions produced.
func checkTxns(txns []*producedTxn, seen map[int32][]string) TxnCounts {
	var c TxnCounts
	type key struct{ producer, seq int }
	byKey := map[key]*producedTxn{}
	for _, t := range txns {
		byKey[key{t.producer, t.seq}] = t
		switch t.outcome {
		case outcomeCommitted:
			c.Committed++
		case outcomeAborted:
			c.Aborted++
		default:
			c.Unknown++
		}
	}
	visible := map[key]map[int]int{} // transaction -> index -> times read
	for _, vals := range seen {
		last := map[int]key{} // producer -> last transaction read in this partition
		lastIdx := map[key]int{}
		for _, v := range vals {
			f := strings.Split(v, ":")
			if len(f) != 5 || !strings.HasPrefix(f[1], "t") {
				continue
			}
			p, err1 := strconv.Atoi(f[1][1:])
			seq, err2 := strconv.Atoi(f[2])
			idx, err3 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			c.Records++
			k := key{p, seq}
			if visible[k] == nil {
				visible[k] = map[int]int{}
			}
			visible[k][idx]++
			if visible[k][idx] > 1 {
				c.Duplicated++
			}
			if prev, ok := last[p]; ok && (prev.seq > seq || prev.seq == seq && lastIdx[prev] > idx) {
				c.Reordered++
			}
			last[p], lastIdx[k] = k, idx
		}
	}
	for k, t := range byKey {
		got := len(visible[k])
		switch {
		case t.outcome == outcomeAborted && got > 0:
			c.AbortedVisible++
		case t.outcome == outcomeCommitted && got != len(t.records):
			c.Partial++
		case t.outcome == outcomeUnknown && got != 0 && got != len(t.records):
			c.Partial++
		case t.outcome == outcomeUnknown && got == len(t.records):
			c.UnknownVisible++
		}
	}
	return c
}

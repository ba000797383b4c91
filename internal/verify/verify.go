// Package verify implements `strand verify`, a chaos verifier: it produces
// uniquely numbered records with acks=all to a running cluster while a fault
// is injected, then reads every partition back from the start and checks
// that no acknowledged record was lost, none was stored twice and none is
// out of order.
//
// Every record of a run has the value "<run-id>:<key>:<seq>". The producer
// uses one key per partition ("p<partition>") and sets record.Partition
// explicitly (kgo.ManualPartitioner), so each key's seqs 0, 1, 2, ... are
// produced in order to a single partition and must be read back in
// increasing order. The producer keeps going through errors (the client
// retries; records that finally fail are "not acknowledged"). Checker
// defines the verdict precisely; records of other runs in the same topic are
// ignored, so a topic can be reused.
//
// A fault is anything that runs concurrently with the produce phase: the
// Options.Fault hook (for tests and callers that drive a cluster), or the
// shell command given with --fault-cmd (e.g. `kill -9 <pid>`), started
// --fault-at into the produce phase. The read phase starts only after the
// fault has returned.
package verify

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/cliflags"
)

// settleTime is how long the read phase keeps re-listing end offsets when it
// has read to them but acknowledged records are still missing (a new leader's
// high watermark can briefly lag the records it already holds).
const settleTime = 5 * time.Second

// Options configures a verification run. DefaultOptions returns the values
// Main starts from before applying flags.
type Options struct {
	Brokers           []string      // seed brokers, host:port
	Topic             string        // topic; created if absent, never deleted
	Partitions        int32         // partitions if the topic has to be created
	ReplicationFactor int16         // replication factor if the topic has to be created
	MinInsync         int           // min.insync.replicas of a created topic; 0: 1 when ReplicationFactor is 1, else 2
	Duration          time.Duration // stop producing after this long; 0: no time limit
	Records           int           // stop producing after this many records; 0: no count limit
	Rate              float64       // records per second; 0: as fast as InFlight allows
	InFlight          int           // max records produced but not yet acknowledged
	Idempotent        bool          // idempotent producer (acks=all either way)
	DeliveryTimeout   time.Duration // fail a record not acknowledged this long after Produce; 0: retry until DrainTimeout
	DrainTimeout      time.Duration // after producing stops, wait this long for outstanding acknowledgements; the rest are "unknown"
	ReadTimeout       time.Duration // bound on the read phase: listing end offsets (retried) and reading up to them
	RunID             string        // identifies this run's records; "" picks a random one; must not contain ':'
	// MetadataMinAge is the least time between the producer's metadata
	// refreshes (kgo.MetadataMinAge). It bounds how soon the producer
	// finds a new leader after NOT_LEADER_OR_FOLLOWER, so it is part of
	// every recovery time measured; 0 keeps franz-go's default (5 s).
	MetadataMinAge time.Duration
	// AfterFault, when positive, keeps producing at least this long after
	// the fault returned, even past Duration, so acknowledgements after the
	// fault (liveness) can be observed whatever the fault's length.
	AfterFault time.Duration

	// Fault, if set, runs concurrently with the produce phase, FaultAt
	// after it starts, with the context given to Run. Producing stops at
	// its limit either way; DrainTimeout and the read phase start once the
	// fault has returned. If producing ends before a nonzero FaultAt, the
	// fault does not run (Report.Fault says so).
	Fault   func(ctx context.Context) error
	FaultAt time.Duration

	// ClientOpts are added to every client the run makes (e.g. TLS and SASL
	// for a secured listener).
	ClientOpts []kgo.Opt

	// Transactions runs the transactional verification (txn.go) instead,
	// with Txn's producers.
	Transactions bool
	Txn          TxnOptions
}

// DefaultOptions returns the options `strand verify` uses without flags.
func DefaultOptions() Options {
	return Options{
		Brokers: []string{"127.0.0.1:9092"}, Topic: "strand-verify", Partitions: 3, ReplicationFactor: 1,
		Duration: 30 * time.Second, InFlight: 1000, Idempotent: true,
		DrainTimeout: 30 * time.Second, ReadTimeout: 60 * time.Second, FaultAt: 5 * time.Second,
		// As the Java client's retry.backoff.ms (100 ms) allows about.
		MetadataMinAge: 500 * time.Millisecond,
	}
}

// Report is the result of a run; Main prints it as text, or as JSON with
// --json. The embedded Counts hold the verdict.
type Report struct {
	RunID          string   `json:"run_id"`
	Brokers        []string `json:"brokers"`
	Topic          string   `json:"topic"`
	TopicCreated   bool     `json:"topic_created"` // false when an existing topic was reused
	Partitions     int      `json:"partitions"`
	Idempotent     bool     `json:"idempotent"`
	ProduceSeconds float64  `json:"produce_seconds"`
	// Fault is "" when no fault was configured, else "ok", "skipped: ..."
	// (producing ended before FaultAt) or "failed: <error>".
	Fault string `json:"fault,omitempty"`
	// FirstProduceError is the first error a record's promise reported.
	FirstProduceError string `json:"first_produce_error,omitempty"`
	// Recovery is the time-to-recover figure: the longest gap between
	// acknowledgements per partition, and acknowledgements during and
	// after the fault.
	Recovery Recovery `json:"recovery"`
	Counts
	Pass bool `json:"pass"` // Violations() == 0
}

// FaultFailed reports whether a configured fault returned an error.
func (r Report) FaultFailed() bool { return strings.HasPrefix(r.Fault, "failed") }

// Main runs `strand verify` with command-line args (without the command
// name) and prints the report to stdout. It returns an error when the run
// could not complete, the verdict is FAIL or the fault failed, so scripts
// can use the exit status. -h prints the flags to stdout and returns
// flag.ErrHelp.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	o, asJSON, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	if o.Transactions {
		if !asJSON {
			_, err := RunTransactions(ctx, o, o.Txn, stdout)
			return err
		}
		c, err := RunTransactions(ctx, o, o.Txn, io.Discard)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(struct {
			TxnCounts
			Pass bool `json:"pass"`
		}{c, err == nil}); jerr != nil {
			return fmt.Errorf("write report: %w", jerr)
		}
		return err
	}
	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	} else if err := rep.WriteText(stdout); err != nil {
		return err
	}
	return rep.Err()
}

// Err returns nil when r passed and its fault (if any) did not fail, else an
// error summarizing what went wrong; it is what Main returns after printing r.
func (r Report) Err() error {
	switch {
	case !r.Pass:
		return fmt.Errorf("FAIL: %d lost, %d duplicated, %d reordered, %d misplaced, %d unexpected",
			r.Lost, r.Duplicated, r.Reordered, r.Misplaced, r.Unexpected)
	case r.FaultFailed():
		return fmt.Errorf("fault %s", r.Fault)
	}
	return nil
}

func parseFlags(args []string, out io.Writer) (Options, bool, error) {
	o := DefaultOptions()
	fs := flag.NewFlagSet("strand verify", flag.ContinueOnError)
	fs.SetOutput(out)
	topicFlags := cliflags.Register(fs, o.Brokers, o.Partitions, o.ReplicationFactor)
	fs.StringVar(&o.Topic, "topic", o.Topic, "topic (created if absent, never deleted; other runs' records are ignored)")
	fs.IntVar(&o.MinInsync, "min-insync", o.MinInsync, "min.insync.replicas of a newly created topic (0: 1 if replication factor is 1, else 2)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "stop producing after this long (0: no limit)")
	fs.IntVar(&o.Records, "records", o.Records, "stop producing after this many records (0: no limit); the first limit reached wins")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "records per second (0: as fast as --in-flight allows)")
	fs.IntVar(&o.InFlight, "in-flight", o.InFlight, "max records produced but not yet acknowledged")
	noIdem := fs.Bool("no-idempotent", false, "disable the idempotent producer (acks=all still)")
	fs.DurationVar(&o.DeliveryTimeout, "delivery-timeout", o.DeliveryTimeout, "fail records not acknowledged this long after produce (0: retry until --drain-timeout)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", o.DrainTimeout, "after producing, wait this long for outstanding acks (the rest count as unknown)")
	fs.DurationVar(&o.MetadataMinAge, "metadata-min-age", o.MetadataMinAge, "least time between the producer's metadata refreshes (0: franz-go's default, 5s); part of every recovery time")
	fs.DurationVar(&o.ReadTimeout, "read-timeout", o.ReadTimeout, "bound on listing end offsets and reading every partition back")
	faultCmd := fs.String("fault-cmd", "", "shell command run --fault-at into the produce phase (e.g. 'kill -9 1234'); a failure fails the run")
	fs.DurationVar(&o.FaultAt, "fault-at", o.FaultAt, "when --fault-cmd runs, from the start of the produce phase")
	fs.DurationVar(&o.AfterFault, "after-fault", o.AfterFault, "keep producing at least this long after --fault-cmd returned, even past --duration (0: stop at --duration)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.BoolVar(&o.Transactions, "transactions", false, "verify transactions: transactional producers, some transactions aborted, read back with read_committed")
	fs.IntVar(&o.Txn.Producers, "producers", 4, "with --transactions: transactional producers")
	fs.IntVar(&o.Txn.TxnMaxRecords, "txn-max-records", 20, "with --transactions: records per transaction, uniform in [1, this]")
	fs.Float64Var(&o.Txn.AbortRatio, "abort-ratio", 0.2, "with --transactions: fraction of transactions aborted on purpose")
	if err := fs.Parse(args); err != nil {
		return o, false, err
	}
	if fs.NArg() > 0 {
		return o, false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.Brokers, o.Partitions, o.ReplicationFactor, err = topicFlags.Values(); err != nil {
		return o, false, err
	}
	o.Idempotent = !*noIdem
	if *faultCmd != "" {
		o.Fault = ShellFault(*faultCmd)
	}
	return o, *asJSON, o.check()
}

// ShellFault returns a fault that runs command with `sh -c` and fails if it
// exits non-zero; the error then carries the tail of its combined output.
func ShellFault(command string) func(context.Context) error {
	return func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "sh", "-c", command).CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if len(msg) > 500 {
				msg = "..." + msg[len(msg)-500:]
			}
			if msg != "" {
				return fmt.Errorf("%q: %w: %s", command, err, msg)
			}
			return fmt.Errorf("%q: %w", command, err)
		}
		return nil
	}
}

// check validates o.
func (o Options) check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(o.Brokers) == 0 {
		bad("no brokers")
	}
	if o.Topic == "" {
		bad("empty topic name")
	}
	if o.Partitions < 1 {
		bad("partitions %d: want at least 1", o.Partitions)
	}
	if o.ReplicationFactor < 1 {
		bad("replication factor %d: want at least 1", o.ReplicationFactor)
	}
	if o.MinInsync < 0 || o.MinInsync > int(o.ReplicationFactor) {
		bad("min insync replicas %d: want 0 (auto) to the replication factor (%d)", o.MinInsync, o.ReplicationFactor)
	}
	if o.Duration < 0 || o.Records < 0 {
		bad("duration and records must not be negative")
	}
	if o.Duration == 0 && o.Records == 0 {
		bad("no limit on producing: set a duration or a record count")
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		bad("rate %v: want 0 (unlimited) or a positive number", o.Rate)
	}
	if o.InFlight < 1 {
		bad("in-flight %d: want at least 1", o.InFlight)
	}
	if o.DeliveryTimeout < 0 || o.DrainTimeout < 0 || o.ReadTimeout <= 0 || o.FaultAt < 0 || o.MetadataMinAge < 0 || o.AfterFault < 0 {
		bad("timeouts must not be negative, and the read timeout must be positive")
	}
	if strings.Contains(o.RunID, ":") {
		bad("run id %q contains ':'", o.RunID)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("verify options: %w", err)
	}
	return nil
}

// Run creates the topic if needed, produces until o.Duration or o.Records
// (whichever comes first) while o.Fault runs, then reads every partition
// back and returns the verdict in the report. It returns an error only when
// the run could not be carried out (bad options, topic not creatable, ctx
// done, partitions not readable within o.ReadTimeout); a FAIL verdict is a
// report with Pass false and a nil error.
func Run(ctx context.Context, o Options) (rep Report, err error) {
	if err := o.check(); err != nil {
		return rep, err
	}
	if o.RunID == "" {
		var b [8]byte
		crand.Read(b[:]) // never returns an error (Go 1.24+)
		o.RunID = hex.EncodeToString(b[:])
	}
	if o.MinInsync == 0 {
		o.MinInsync = 1
		if o.ReplicationFactor > 1 {
			o.MinInsync = 2
		}
	}
	rep = Report{RunID: o.RunID, Brokers: o.Brokers, Topic: o.Topic, Idempotent: o.Idempotent}

	partitions, created, err := ensureTopic(ctx, o)
	if err != nil {
		return rep, err
	}
	rep.TopicCreated, rep.Partitions = created, len(partitions)

	sent, prod, err := produce(ctx, o, partitions)
	if err != nil {
		return rep, err
	}
	rep.ProduceSeconds, rep.Fault, rep.FirstProduceError = prod.seconds, prod.fault, prod.firstErr
	rep.Recovery = prod.recovery

	ch, err := NewChecker(o.RunID, sent)
	if err != nil {
		return rep, err
	}
	if err := readBack(ctx, o, partitions, ch); err != nil {
		rep.Counts = ch.Counts()
		return rep, err
	}
	rep.Counts = ch.Counts()
	rep.Pass = rep.Violations() == 0
	return rep, nil
}

// ensureTopic creates o.Topic unless it exists and returns its partitions.
func ensureTopic(ctx context.Context, o Options) (partitions []int32, created bool, err error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.ClientOpts...)...)
	if err != nil {
		return nil, false, fmt.Errorf("admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	minISR := fmt.Sprint(o.MinInsync)
	_, err = adm.CreateTopic(ctx, o.Partitions, o.ReplicationFactor, map[string]*string{"min.insync.replicas": &minISR}, o.Topic)
	switch {
	case err == nil:
		created = true
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return nil, false, fmt.Errorf("create topic %q: %w", o.Topic, err)
	}
	// A new topic's metadata can take a moment to show every partition.
	for {
		td, err := adm.ListTopics(ctx, o.Topic)
		if err != nil {
			return nil, false, fmt.Errorf("describe topic %q: %w", o.Topic, err)
		}
		d := td[o.Topic]
		if d.Err == nil && len(d.Partitions) > 0 && (!created || len(d.Partitions) == int(o.Partitions)) {
			for p := range d.Partitions {
				partitions = append(partitions, p)
			}
			slices.Sort(partitions)
			return partitions, created, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("describe topic %q: %w (last: %v)", o.Topic, ctx.Err(), d.Err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tracker holds every produced record's status as its promise reports it.
type tracker struct {
	mu       sync.Mutex // guards the fields below
	statuses [][]Status // by partition index, then seq
	closed   bool       // set when the producer gave up; later promises are ignored
	firstErr error
	gaps     *gapMeter
}

// faultStarted and faultEnded record when the fault ran (for Recovery).
func (t *tracker) faultStarted(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gaps.faultStarted(now)
}

func (t *tracker) faultEnded(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gaps.faultEnded(now)
}

// add registers a new record of partition index p and returns its seq.
func (t *tracker) add(p int) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.statuses[p] = append(t.statuses[p], Unknown)
	return int64(len(t.statuses[p]) - 1)
}

// done records the outcome of a promise.
func (t *tracker) done(p int, seq int64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if err == nil {
		t.statuses[p][seq] = Acked
		t.gaps.ack(p, time.Now())
		return
	}
	t.statuses[p][seq] = Failed
	if t.firstErr == nil {
		t.firstErr = err
	}
}

// close stops recording and returns the final statuses and the recovery
// measure.
func (t *tracker) close() ([][]Status, Recovery, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	pending := make([]bool, len(t.statuses))
	for i, st := range t.statuses {
		pending[i] = slices.Contains(st, Unknown)
	}
	return t.statuses, t.gaps.result(time.Now(), pending), t.firstErr
}

// produceResult is what the produce phase reports besides the statuses.
type produceResult struct {
	seconds  float64
	fault    string
	firstErr string
	recovery Recovery
}

// produce runs the produce phase and the fault, and returns what every key
// sent once the producer is closed and the fault has returned.
func produce(ctx context.Context, o Options, partitions []int32) ([]Sent, produceResult, error) {
	var res produceResult
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...), kgo.DefaultProduceTopic(o.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()),
		// The promise runs before the client unbuffers its record: leave
		// headroom so Produce itself never blocks.
		kgo.MaxBufferedRecords(2*o.InFlight + 16),
	}
	if !o.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if o.DeliveryTimeout > 0 {
		opts = append(opts, kgo.RecordDeliveryTimeout(o.DeliveryTimeout))
	}
	if o.MetadataMinAge > 0 {
		opts = append(opts, kgo.MetadataMinAge(o.MetadataMinAge))
	}
	cl, err := kgo.NewClient(append(opts, o.ClientOpts...)...)
	if err != nil {
		return nil, res, fmt.Errorf("producer: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			cl.Close()
		}
	}()
	// Records live until the producer gives up on them, not just until
	// producing stops, so that stopping does not fail them.
	recCtx, cancelRecs := context.WithCancel(ctx)
	defer cancelRecs()
	// pctx ends producing: at o.Duration (dctx), or, with o.AfterFault,
	// no earlier than that long after the fault returned.
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	dctx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	tr := &tracker{statuses: make([][]Status, len(partitions)), gaps: newGapMeter(time.Now(), partitions)}
	faultDone := make(chan string, 1)
	faultReturned := make(chan struct{}) // closed once the fault returned or was skipped
	var faultEnd time.Time               // written before faultReturned closes
	if o.Fault != nil {
		go func() {
			defer close(faultReturned)
			if o.FaultAt > 0 {
				t := time.NewTimer(o.FaultAt)
				defer t.Stop()
				select {
				case <-t.C:
				case <-dctx.Done():
					faultDone <- fmt.Sprintf("skipped: producing ended before %v", o.FaultAt)
					return
				case <-pctx.Done():
					faultDone <- fmt.Sprintf("skipped: producing ended before %v", o.FaultAt)
					return
				}
			}
			tr.faultStarted(time.Now())
			err := o.Fault(ctx)
			faultEnd = time.Now()
			tr.faultEnded(faultEnd)
			if err != nil {
				faultDone <- "failed: " + err.Error()
				return
			}
			faultDone <- "ok"
		}()
	}
	go func() {
		select {
		case <-dctx.Done():
		case <-pctx.Done():
			return
		}
		if o.Fault != nil && o.AfterFault > 0 {
			select {
			case <-faultReturned:
			case <-pctx.Done():
				return
			}
			if !faultEnd.IsZero() {
				t := time.NewTimer(time.Until(faultEnd.Add(o.AfterFault)))
				defer t.Stop()
				select {
				case <-t.C:
				case <-pctx.Done():
					return
				}
			}
		}
		stopProducing()
	}()

	keys := make([]string, len(partitions))
	for i, p := range partitions {
		keys[i] = fmt.Sprintf("p%d", p)
	}
	sem := make(chan struct{}, o.InFlight)
	start := tr.gaps.start
produce:
	for i := 0; o.Records == 0 || i < o.Records; i++ {
		if o.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))
			if wait := time.Until(due); wait > time.Millisecond {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-pctx.Done():
					t.Stop()
					break produce
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
			break produce
		}
		if pctx.Err() != nil {
			<-sem
			break
		}
		p := i % len(partitions)
		seq := tr.add(p)
		r := &kgo.Record{Partition: partitions[p], Key: []byte(keys[p]), Value: Value(o.RunID, keys[p], seq)}
		cl.Produce(recCtx, r, func(_ *kgo.Record, err error) {
			tr.done(p, seq, err)
			<-sem
		})
	}
	res.seconds = time.Since(start).Seconds()
	stopProducing()

	// The fault may still be running (a broker down): the drain timeout
	// starts once it has returned.
	if o.Fault != nil {
		select {
		case res.fault = <-faultDone:
		case <-ctx.Done():
			return nil, res, fmt.Errorf("produce: waiting for the fault: %w", ctx.Err())
		}
	}
	// Wait for outstanding acknowledgements, then give up on the rest:
	// they stay Unknown. Flush returns once every promise has run.
	drainCtx, cancelDrain := context.WithTimeout(ctx, o.DrainTimeout)
	_ = cl.Flush(drainCtx)
	cancelDrain()
	statuses, recovery, firstErr := tr.close()
	res.recovery = recovery
	cancelRecs()
	cl.Close()
	closed = true
	if err := ctx.Err(); err != nil {
		return nil, res, fmt.Errorf("produce: %w", err)
	}
	if firstErr != nil {
		res.firstErr = firstErr.Error()
	}
	sent := make([]Sent, len(partitions))
	for i, p := range partitions {
		sent[i] = Sent{Key: keys[i], Partition: p, Statuses: statuses[i]}
	}
	return sent, res, nil
}

// readBack lists the end offsets of every partition and reads each one
// from its start to its end offset into ch, within o.ReadTimeout.
func readBack(ctx context.Context, o Options, partitions []int32, ch *Checker) error {
	ctx, cancel := context.WithTimeout(ctx, o.ReadTimeout)
	defer cancel()
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	start, err := listOffsets(ctx, adm.ListStartOffsets, o.Topic, partitions)
	if err != nil {
		return err
	}
	end, err := listOffsets(ctx, adm.ListEndOffsets, o.Topic, partitions)
	if err != nil {
		return err
	}

	offs := make(map[int32]kgo.Offset, len(partitions))
	for _, p := range partitions {
		offs[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: offs})}, o.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer cl.Close()

	next := start // per partition, the offset after the last record read
	var lastErr error
	var settleUntil time.Time
	for {
		if readTo(next, end) {
			if ch.Missing() == 0 {
				return nil
			}
			// Acknowledged records are missing. Give the end offsets a
			// moment to move (a lagging high watermark) before calling
			// them lost.
			if settleUntil.IsZero() {
				settleUntil = time.Now().Add(settleTime)
			}
			if time.Now().After(settleUntil) {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil // what is missing now is lost
			case <-time.After(250 * time.Millisecond):
			}
			if later, err := listOffsets(ctx, adm.ListEndOffsets, o.Topic, partitions); err == nil {
				for p, off := range later {
					end[p] = max(end[p], off)
				}
			}
			continue
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			return fmt.Errorf("read %s within %v: %s (last fetch error: %v)", o.Topic, o.ReadTimeout, progress(next, end), lastErr)
		}
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				lastErr = err
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			ch.Observe(r.Partition, r.Value)
			next[r.Partition] = r.Offset + 1
		})
	}
}

// readTo reports whether every partition has been read up to its end.
func readTo(next, end map[int32]int64) bool {
	for p, e := range end {
		if next[p] < e {
			return false
		}
	}
	return true
}

// progress describes the partitions not yet read to their end.
func progress(next, end map[int32]int64) string {
	var parts []string
	for p, e := range end {
		if next[p] < e {
			parts = append(parts, fmt.Sprintf("partition %d at offset %d of %d", p, next[p], e))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// listOffsets calls list (ListStartOffsets or ListEndOffsets) until every
// partition answers without error or ctx ends: during a fault brokers may be
// down or leaderless for a while.
func listOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error), topic string, partitions []int32) (map[int32]int64, error) {
	for {
		lo, err := list(ctx, topic)
		if err == nil {
			err = lo.Error()
		}
		if err == nil {
			m := make(map[int32]int64, len(partitions))
			lo.Each(func(l kadm.ListedOffset) { m[l.Partition] = l.Offset })
			for _, p := range partitions {
				if _, ok := m[p]; !ok {
					err = fmt.Errorf("partition %d missing from the answer", p)
				}
			}
			if err == nil {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list offsets of %q: %w (last error: %v)", topic, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// WriteText writes r as the human-readable report: a header, one line per
// count and a last line "verify: PASS" or "verify: FAIL".
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	idem := "idempotent"
	if !r.Idempotent {
		idem = "not idempotent"
	}
	fmt.Fprintf(&b, "verify: run %s, topic %s (%d partitions, %s), brokers %s, acks=all, %s, produced for %.1fs\n",
		r.RunID, r.Topic, r.Partitions, map[bool]string{true: "created", false: "existing"}[r.TopicCreated],
		strings.Join(r.Brokers, ","), idem, r.ProduceSeconds)
	if r.Fault != "" {
		fmt.Fprintf(&b, "fault: %s\n", r.Fault)
	}
	if r.FirstProduceError != "" {
		fmt.Fprintf(&b, "first produce error: %s\n", r.FirstProduceError)
	}
	rec := r.Recovery
	fmt.Fprintf(&b, "longest gap between acks:   %.2fs", rec.MaxAckGapSeconds)
	for _, pg := range rec.Partitions {
		fmt.Fprintf(&b, " (p%d %.2fs at %.1fs)", pg.Partition, pg.GapSeconds, pg.AtSeconds)
	}
	b.WriteString("\n")
	if r.Fault != "" {
		fmt.Fprintf(&b, "acked during/after fault:   %d / %d (fault ran %.1fs-%.1fs)\n",
			rec.AckedDuringFault, rec.AckedAfterFault, rec.FaultStartSeconds, rec.FaultEndSeconds)
	}
	c := r.Counts
	for _, l := range []struct {
		name string
		n    int64
	}{
		{"produced", c.Produced},
		{"acknowledged", c.Acknowledged},
		{"not acknowledged", c.NotAcknowledged},
		{"  failed", c.Failed},
		{"  unknown", c.Unknown},
		{"read", c.Read},
		{"lost", c.Lost},
		{"duplicated", c.Duplicated},
		{"reordered", c.Reordered},
		{"misplaced", c.Misplaced},
		{"unexpected", c.Unexpected},
		{"unacknowledged but present", c.UnacknowledgedPresent},
		{"other runs ignored", c.Foreign},
	} {
		fmt.Fprintf(&b, "%-27s %d\n", l.name+":", l.n)
	}
	if r.Pass {
		b.WriteString("verify: PASS\n")
	} else {
		b.WriteString("verify: FAIL\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

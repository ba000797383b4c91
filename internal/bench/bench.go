// Package bench implements `strand bench`: it measures how fast the local disk
// makes writes durable, then produces a fixed number of records to a running
// broker with franz-go, reads them all back, and reports throughput, produce
// latency percentiles and, when it can read it, the broker's CPU time.
//
// Its producer defaults are a Kafka client's (linger.ms 5, batch.size 16 KiB,
// acks=all, idempotent) so that the figures are what an application sees;
// --batch-bytes and --linger reproduce large-batch runs. --partitions takes a
// list to sweep partition counts (one topic per count), and --consume-only
// reads an existing topic without producing.
//
// Throughput counts record value bytes only (no keys, headers, batch or
// protocol overhead); MB is 10^6 bytes.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/cliflags"
)

// Options configures a benchmark run. DefaultOptions returns the values Main
// starts from before applying flags.
type Options struct {
	Brokers           []string      // seed brokers, host:port
	Topic             string        // topic to produce to and consume from
	Partitions        int32         // partitions if the topic has to be created
	ReplicationFactor int16         // replication factor if the topic has to be created
	Keep              bool          // keep a topic this run created instead of deleting it at the end
	RecordSize        int           // bytes per record value
	Records           int           // records to produce and read back
	Acks              string        // "all" (or "-1"), "1" or "0"
	Idempotent        bool          // idempotent producer; forced off unless Acks is "all"
	Compression       string        // "none", "gzip", "snappy", "lz4" or "zstd"
	Linger            time.Duration // producer linger (linger.ms)
	BatchBytes        int           // producer batch size limit (batch.size)
	Partitioner       string        // "sticky" (Kafka's default for keyless records) or "round-robin"
	ConsumeOnly       bool          // only read the existing topic from its start to its end
	RawFetch          bool          // with ConsumeOnly: read with plain Fetch requests, counting batch headers (rawfetch.go)
	BrokerPID         int           // local broker process whose CPU is read from /proc; 0: use metrics
	MetricsURL        string        // the broker's /metrics URL; "" tries its http.listener, "off" disables
	Producers         int           // concurrent producer clients, each producing its share of Records
	InFlight          int           // max unacknowledged records per producer; 0 picks about 4 MiB worth
	FsyncDir          string        // directory of the disk phase's temporary file; "" means os.TempDir()
	SkipFsync         bool          // skip the disk phase
	FsyncBytes        int64         // bytes written in the disk bandwidth test; 0 means 64 MiB
	FsyncOpsTime      time.Duration // duration of the 4 KiB write+sync test; 0 means 2s
	Security          Security      // how clients connect (TLS, SASL); zero: PLAINTEXT
	Handshakes        int           // connections to open and authenticate in the handshake phase; 0 skips it
}

// DefaultOptions returns the options `strand bench` uses without flags.
func DefaultOptions() Options {
	return Options{
		Brokers: []string{"127.0.0.1:9092"}, Topic: "strand-bench", Partitions: 6, ReplicationFactor: 1,
		RecordSize: 1024, Records: 200000, Acks: "all", Idempotent: true, Compression: "none",
		Linger: 5 * time.Millisecond, BatchBytes: 16 << 10, Partitioner: "sticky",
		Producers: 1, FsyncDir: os.TempDir(),
	}
}

// Report is the result of a run; Main prints it as text, or as JSON with --json.
type Report struct {
	Brokers      []string `json:"brokers"`
	Topic        string   `json:"topic"`
	TopicCreated bool     `json:"topic_created"` // false when an existing topic was reused
	// CreateSeconds is the time from CreateTopics until every partition
	// answered ListOffsets (its leader is serving); 0 for an existing topic.
	CreateSeconds float64          `json:"create_seconds,omitempty"`
	Partitions    int              `json:"partitions"`
	RecordSize    int              `json:"record_size"`
	Disk          *DiskReport      `json:"disk,omitempty"` // nil when the disk phase was skipped
	Security      string           `json:"security"`
	Handshakes    *HandshakeReport `json:"handshakes,omitempty"` // nil when Options.Handshakes is 0
	Produce       ProduceReport    `json:"produce"`              // zero with ConsumeOnly
	Consume       ConsumeReport    `json:"consume"`
}

// ProduceReport is the result of the produce phase and the settings it ran with.
type ProduceReport struct {
	Records       int64         `json:"records"` // records acknowledged without error
	Errors        int64         `json:"errors"`  // records whose promise reported an error
	Bytes         int64         `json:"bytes"`   // value bytes acknowledged
	Seconds       float64       `json:"seconds"`
	MBps          float64       `json:"mb_per_sec"`
	RecordsPerSec float64       `json:"records_per_sec"`
	Latency       LatencyReport `json:"latency_ms"`
	Acks          string        `json:"acks"`
	Idempotent    bool          `json:"idempotent"`
	Compression   string        `json:"compression"`
	LingerMs      float64       `json:"linger_ms"`
	BatchBytes    int           `json:"batch_bytes"`
	Partitioner   string        `json:"partitioner"`
	BrokerCPU     *CPUReport    `json:"broker_cpu,omitempty"` // nil when the broker's CPU could not be read
	Producers     int           `json:"producers"`
	InFlight      int           `json:"in_flight"` // per producer
}

// LatencyReport holds produce latency percentiles in milliseconds, measured
// per record from the Produce call to its promise callback.
type LatencyReport struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	// P999 is the 99.9th percentile.
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// ConsumeReport is the result of the consume phase.
type ConsumeReport struct {
	Records       int64      `json:"records"`
	Bytes         int64      `json:"bytes"`
	Seconds       float64    `json:"seconds"`
	MBps          float64    `json:"mb_per_sec"`
	RecordsPerSec float64    `json:"records_per_sec"`
	BrokerCPU     *CPUReport `json:"broker_cpu,omitempty"`
	Raw           bool       `json:"raw_fetch,omitempty"` // read with --raw-fetch: Bytes are record batch bytes
}

// Main runs `strand bench` with command-line args (without the command name)
// and prints the report to stdout. -h prints the flags to stdout and returns
// flag.ErrHelp.
func Main(ctx context.Context, args []string, stdout io.Writer) (retErr error) {
	o, sweep, asJSON, cmp, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	if len(cmp.baseline) > 0 {
		c, err := Compare(ctx, o, cmp.baseline, cmp.rounds)
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(c)
		}
		return c.WriteText(stdout)
	}
	if !asJSON {
		if _, err := fmt.Fprintln(stdout, o.Settings()); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	var reps []Report
	var created []string // a sweep's topics, deleted after the last count
	defer func() {
		if len(created) == 0 {
			return
		}
		cl, err := o.newClient()
		if err == nil {
			err = deleteTopics(ctx, kadm.NewClient(cl), created...)
			cl.Close()
		}
		if err != nil && retErr == nil {
			retErr = err
		}
	}()
	for i, n := range sweep {
		ro := o
		ro.Partitions = n
		if len(sweep) > 1 {
			ro.Topic = fmt.Sprintf("%s-p%d", o.Topic, n) // one topic per count
			// Deleting a count's topic while the next is measured would
			// charge the next count with the broker's deletion work (and,
			// on a file system mounted with discard, its discards).
			ro.Keep = true
		}
		ro.SkipFsync = o.SkipFsync || i > 0 // the disk is measured once
		rep, err := Run(ctx, ro)
		if rep.TopicCreated && ro.Keep && !o.Keep {
			created = append(created, ro.Topic)
		}
		if err != nil {
			if rep.Consume.Records == 0 || rep.Consume.Records != rep.Produce.Records && !o.ConsumeOnly {
				return err
			}
			// The measurement is complete (only deleting the topic
			// failed): print it, then fail.
			defer func() {
				if retErr == nil {
					retErr = err
				}
			}()
		}
		reps = append(reps, rep)
		if !asJSON {
			if err := rep.WriteText(stdout); err != nil {
				return err
			}
		}
		if err != nil {
			break
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var v any = reps // a sweep prints a list, a single run one object
		if len(reps) == 1 {
			v = reps[0]
		}
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	return nil
}

// deleteTopics deletes topics, all at once, with time for thousands of
// partitions and even after ctx is cancelled.
func deleteTopics(ctx context.Context, adm *kadm.Client, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	resps, err := adm.DeleteTopics(dctx, topics...)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		return fmt.Errorf("delete topics %q: %w", topics, err)
	}
	return nil
}

// newClient returns a client of o's brokers with o's security settings.
func (o Options) newClient() (*kgo.Client, error) {
	secOpts, err := o.Security.KgoOpts()
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, secOpts...)...)
}

// Settings describes the client settings o runs with, as Main prints them
// first.
func (o Options) Settings() string {
	idem := "idempotent"
	if !o.Idempotent || (o.Acks != "all" && o.Acks != "-1") {
		idem = "not idempotent"
	}
	mode := ""
	if o.ConsumeOnly {
		mode = " (consume only)"
	}
	return fmt.Sprintf("settings%s: acks=%s %s, linger=%s, batch-bytes=%d, compression=%s, partitioner=%s, producers=%d, in-flight=%s, record-size=%d, records=%d",
		mode, o.Acks, idem, o.Linger, o.BatchBytes, o.Compression, o.Partitioner, o.Producers,
		map[bool]string{true: "auto (about 4 MiB)", false: fmt.Sprint(o.InFlight)}[o.InFlight == 0], o.RecordSize, o.Records)
}

// compareFlags are --compare-brokers and --rounds.
type compareFlags struct {
	baseline []string
	rounds   int
}

func parseFlags(args []string, out io.Writer) (Options, []int32, bool, compareFlags, error) {
	o := DefaultOptions()
	var cmp compareFlags
	fs := flag.NewFlagSet("strand bench", flag.ContinueOnError)
	fs.SetOutput(out)
	topicFlags := cliflags.RegisterSweep(fs, o.Brokers, o.Partitions, o.ReplicationFactor)
	fs.StringVar(&o.Topic, "topic", o.Topic, "topic (created if absent; deleted at the end unless --keep or it already existed)")
	fs.BoolVar(&o.Keep, "keep", o.Keep, "do not delete the topic afterwards")
	fs.IntVar(&o.RecordSize, "record-size", o.RecordSize, "bytes per record value")
	fs.IntVar(&o.Records, "records", o.Records, "records to produce and consume")
	fs.StringVar(&o.Acks, "acks", o.Acks, "producer acks: all, 1 or 0")
	fs.BoolVar(&o.Idempotent, "idempotent", o.Idempotent, "idempotent producer (forced off unless --acks all)")
	fs.StringVar(&o.Compression, "compression", o.Compression, "none, gzip, snappy, lz4 or zstd")
	fs.DurationVar(&o.Linger, "linger", o.Linger, "producer linger (Kafka's linger.ms default: 5ms)")
	fs.IntVar(&o.BatchBytes, "batch-bytes", o.BatchBytes, "producer batch size limit (Kafka's batch.size default: 16384; 1000000 for large batches)")
	fs.StringVar(&o.Partitioner, "partitioner", o.Partitioner, "sticky (Kafka's default for keyless records) or round-robin")
	fs.BoolVar(&o.ConsumeOnly, "consume-only", o.ConsumeOnly, "only read the existing topic from its start to its end (fill it first with --keep)")
	fs.BoolVar(&o.RawFetch, "raw-fetch", o.RawFetch, "with --consume-only: read with plain Fetch requests and count batches from their headers, without decoding records (the broker's fetch path, not a client's decoding; MB/s of batch bytes)")
	fs.IntVar(&o.BrokerPID, "broker-pid", o.BrokerPID, "pid of a local broker whose CPU time to report (from /proc/<pid>/stat)")
	fs.StringVar(&o.MetricsURL, "metrics-url", o.MetricsURL, "broker /metrics URL for its CPU time (default: found from its http.listener; off to disable)")
	fs.IntVar(&o.Producers, "producers", o.Producers, "concurrent producer clients")
	fs.IntVar(&o.InFlight, "in-flight", o.InFlight, "max unacknowledged records per producer (0: about 4 MiB worth)")
	fs.StringVar(&o.FsyncDir, "fsync-dir", o.FsyncDir, "directory for the disk fsync measurement")
	fs.BoolVar(&o.SkipFsync, "skip-fsync", o.SkipFsync, "skip the disk fsync measurement")
	fs.StringVar(&o.Security.Protocol, "security-protocol", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (Kafka's security.protocol)")
	fs.StringVar(&o.Security.Mechanism, "sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&o.Security.Username, "sasl-username", "", "SASL user")
	fs.StringVar(&o.Security.Password, "sasl-password", "", "SASL password (default $STRAND_SASL_PASSWORD)")
	fs.StringVar(&o.Security.CAFile, "tls-ca", "", "PEM file of the CA that signed the brokers' certificates (default: the system's)")
	fs.StringVar(&o.Security.KeystoreFile, "tls-keystore", "", "PEM file with this client's private key and certificate chain, for mutual TLS (ssl.client.auth)")
	fs.IntVar(&o.Handshakes, "handshakes", 0, "first open and authenticate this many connections, one after another, and report connections/s")
	compare := fs.String("compare-brokers", "", "the same cluster's PLAINTEXT listener(s): run --rounds rounds against both, alternating, and report the median ratios")
	fs.IntVar(&cmp.rounds, "rounds", 3, "rounds with --compare-brokers")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return o, nil, false, cmp, err
	}
	if fs.NArg() > 0 {
		return o, nil, false, cmp, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Security.Password == "" {
		o.Security.Password = os.Getenv("STRAND_SASL_PASSWORD")
	}
	for b := range strings.SplitSeq(*compare, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cmp.baseline = append(cmp.baseline, b)
		}
	}
	var err error
	if o.Brokers, o.Partitions, o.ReplicationFactor, err = topicFlags.Values(); err != nil {
		return o, nil, false, cmp, err
	}
	sweep, err := topicFlags.Sweep()
	if err != nil {
		return o, nil, false, cmp, err
	}
	_, _, err = o.check()
	return o, sweep, *asJSON, cmp, err
}

// check validates o and returns its acks and compression codec.
func (o Options) check() (kgo.Acks, kgo.CompressionCodec, error) {
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
	if o.RecordSize < 1 {
		bad("record size %d: want at least 1 byte", o.RecordSize)
	}
	if o.Records < 1 {
		bad("records %d: want at least 1", o.Records)
	}
	if o.Producers < 1 || o.Producers > o.Records {
		bad("producers %d: want 1 to records (%d)", o.Producers, o.Records)
	}
	if err := o.Security.Check(); err != nil {
		errs = append(errs, err)
	}
	if o.InFlight < 0 || o.Linger < 0 || o.FsyncBytes < 0 || o.FsyncOpsTime < 0 || o.Handshakes < 0 {
		bad("in-flight, linger and fsync sizes must not be negative")
	}
	if o.BatchBytes < 1 || o.BatchBytes > 1<<30 {
		bad("batch bytes %d: want 1 to 1 GiB", o.BatchBytes)
	}
	if o.Partitioner != "sticky" && o.Partitioner != "round-robin" {
		bad("partitioner %q: want sticky or round-robin", o.Partitioner)
	}
	if o.BrokerPID < 0 {
		bad("broker pid %d: want a process id", o.BrokerPID)
	}
	var acks kgo.Acks
	switch o.Acks {
	case "all", "-1":
		acks = kgo.AllISRAcks()
	case "1":
		acks = kgo.LeaderAck()
	case "0":
		acks = kgo.NoAck()
	default:
		bad("acks %q: want all, 1 or 0", o.Acks)
	}
	codec, ok := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}[o.Compression]
	if !ok {
		bad("compression %q: want none, gzip, snappy, lz4 or zstd", o.Compression)
	}
	if err := errors.Join(errs...); err != nil {
		return acks, codec, fmt.Errorf("bench options: %w", err)
	}
	return acks, codec, nil
}

// Run measures the disk (unless o.SkipFsync), produces o.Records records to
// o.Topic and reads them back. The topic is created if absent and, unless
// o.Keep, deleted again at the end; an existing topic is reused, never
// deleted, and only the records this run produced are read back. Run fails if
// any record failed to produce or could not be read back; the Report then
// holds what was measured so far.
func Run(ctx context.Context, o Options) (rep Report, err error) {
	acks, codec, err := o.check()
	if err != nil {
		return rep, err
	}
	if o.Acks == "-1" {
		o.Acks = "all"
	}
	o.Idempotent = o.Idempotent && o.Acks == "all"
	if o.InFlight == 0 {
		o.InFlight = min(max(64, (4<<20)/o.RecordSize), 50000)
	}
	rep = Report{Brokers: o.Brokers, Topic: o.Topic, RecordSize: o.RecordSize, Security: o.Security.String()}
	if o.ConsumeOnly {
		return consumeOnly(ctx, o, rep)
	}
	if !o.SkipFsync {
		if rep.Disk, err = measureDisk(ctx, o.FsyncDir, o.FsyncBytes, o.FsyncOpsTime); err != nil {
			return rep, err
		}
	}
	if o.Handshakes > 0 {
		if rep.Handshakes, err = measureHandshakes(ctx, o.Security, o.Brokers[0], o.Handshakes); err != nil {
			return rep, err
		}
	}
	admCl, err := o.newClient()
	if err != nil {
		return rep, fmt.Errorf("admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	cpu := o.cpuMeter(ctx, adm)
	createStart := time.Now()
	_, err = adm.CreateTopic(ctx, o.Partitions, o.ReplicationFactor, nil, o.Topic)
	switch {
	case err == nil:
		rep.TopicCreated = true
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return rep, fmt.Errorf("create topic %q: %w", o.Topic, err)
	}
	if rep.TopicCreated && !o.Keep {
		defer func() {
			if derr := deleteTopics(ctx, adm, o.Topic); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	start, err := endOffsets(ctx, adm, o.Topic)
	if err != nil {
		return rep, err
	}
	if rep.TopicCreated {
		rep.CreateSeconds = time.Since(createStart).Seconds()
	}
	rep.Partitions = len(start)

	produceCPU := cpu.span(ctx)
	rep.Produce, err = produce(ctx, o, acks, codec)
	rep.Produce.BrokerCPU = produceCPU(rep.Produce.Seconds, rep.Produce.Bytes)
	if err != nil {
		return rep, err
	}
	end, err := awaitEndOffsets(ctx, adm, o.Topic, start, rep.Produce.Records)
	if err != nil {
		return rep, err
	}
	consumeCPU := cpu.span(ctx)
	rep.Consume, err = consume(ctx, o, rep.TopicCreated, start, end)
	rep.Consume.BrokerCPU = consumeCPU(rep.Consume.Seconds, rep.Consume.Bytes)
	if err != nil {
		return rep, err
	}
	if rep.Consume.Records != rep.Produce.Records {
		return rep, fmt.Errorf("consume: read back %d records, produced %d", rep.Consume.Records, rep.Produce.Records)
	}
	return rep, nil
}

// cpuMeter returns how the broker's CPU is read: /proc with o.BrokerPID,
// else o.MetricsURL, else the first seed broker's http.listener if it
// answers; nil when none applies.
func (o Options) cpuMeter(ctx context.Context, adm *kadm.Client) *cpuMeter {
	switch {
	case o.BrokerPID > 0:
		return procCPU(o.BrokerPID)
	case o.MetricsURL == "off":
		return nil
	case o.MetricsURL != "":
		return metricsCPU(o.MetricsURL)
	}
	return discoverMetrics(ctx, adm, o.Brokers[0])
}

// consumeOnly reads the existing topic o.Topic from its log start offsets to
// the end offsets it has when the run starts.
func consumeOnly(ctx context.Context, o Options, rep Report) (Report, error) {
	admCl, err := o.newClient()
	if err != nil {
		return rep, fmt.Errorf("admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	td, err := adm.ListTopics(ctx, o.Topic)
	if err == nil {
		err = td.Error()
	}
	if err == nil && !td.Has(o.Topic) {
		err = kerr.UnknownTopicOrPartition
	}
	if err != nil {
		return rep, fmt.Errorf("consume only: topic %q: %w", o.Topic, err)
	}
	start, err := listOffsets(ctx, o.Topic, func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, o.Topic) })
	if err != nil {
		return rep, err
	}
	end, err := endOffsets(ctx, adm, o.Topic)
	if err != nil {
		return rep, err
	}
	rep.Partitions = len(end)
	var n int64
	for p, off := range end {
		n += off - start[p]
	}
	if n == 0 {
		return rep, fmt.Errorf("consume only: topic %q holds no records (fill it first, e.g. with --keep)", o.Topic)
	}
	consumeCPU := o.cpuMeter(ctx, adm).span(ctx)
	if o.RawFetch {
		rep.Consume, err = consumeRaw(ctx, o, start, end)
	} else {
		rep.Consume, err = consume(ctx, o, false, start, end)
	}
	rep.Consume.BrokerCPU = consumeCPU(rep.Consume.Seconds, rep.Consume.Bytes)
	if err == nil && rep.Consume.Records != n {
		err = fmt.Errorf("consume: read %d records, the topic holds %d", rep.Consume.Records, n)
	}
	return rep, err
}

// endOffsets returns the end offset of every partition of topic.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	return listOffsets(ctx, topic, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topic) })
}

// listOffsets returns the offset list gives for every partition of topic.
// Retriable errors (a just-created topic whose leaders have not applied it
// yet) are retried for up to a minute (creating 10,000 partitions takes a while).
func listOffsets(ctx context.Context, topic string, list func() (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	deadline := time.Now().Add(time.Minute)
	var lo kadm.ListedOffsets
	var err error
	for {
		lo, err = list()
		if err == nil {
			err = lo.Error()
		}
		if err == nil || !kerr.IsRetriable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %q: %w", topic, err)
	}
	m := make(map[int32]int64)
	lo.Each(func(l kadm.ListedOffset) { m[l.Partition] = l.Offset })
	if len(m) == 0 {
		return nil, fmt.Errorf("list offsets of %q: no partitions", topic)
	}
	return m, nil
}

// awaitEndOffsets returns the partitions' end offsets once they cover want
// records past start. With acks=0 the last records may land after their
// promises ran, so it polls for up to 10s before settling for what is there.
func awaitEndOffsets(ctx context.Context, adm *kadm.Client, topic string, start map[int32]int64, want int64) (map[int32]int64, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		end, err := endOffsets(ctx, adm, topic)
		if err != nil {
			return nil, err
		}
		var n int64
		for p, off := range end {
			n += off - start[p]
		}
		if n >= want || time.Now().After(deadline) {
			return end, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for end offsets of %q: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WriteText writes r as the human-readable report (Main prints the settings
// line before it).
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	created := "existing"
	if r.TopicCreated {
		created = fmt.Sprintf("created in %.2f s", r.CreateSeconds)
	}
	fmt.Fprintf(&b, "bench: topic %s (%d partitions, %s), %d B records, brokers %s\n", r.Topic, r.Partitions,
		created, r.RecordSize, strings.Join(r.Brokers, ","))
	if d := r.Disk; d != nil {
		fmt.Fprintf(&b, "disk: fsync 1MiB %.1f MB/s, fdatasync 64KiB %.1f MB/s, 4KiB write+fsync %.0f ops/s (%s)\n", d.SyncMBps, d.DatasyncMBps, d.SmallOpsPerSec, d.Dir)
	}
	if r.Security != "" && r.Security != "PLAINTEXT" {
		fmt.Fprintf(&b, "security: %s\n", r.Security)
	}
	if h := r.Handshakes; h != nil {
		fmt.Fprintf(&b, "handshakes: %d connections in %.2f s, %.0f/s (%s)\n", h.Connections, h.Seconds, h.PerSec, h.Protocol)
	}
	if p := r.Produce; p.Records > 0 || p.Errors > 0 {
		idem := "idempotent"
		if !p.Idempotent {
			idem = "not idempotent"
		}
		fmt.Fprintf(&b, "produce: %d records, %.1f MB/s, %.0f rec/s, latency ms p50 %s p95 %s p99 %s p99.9 %s max %s (acks=%s, %s, linger=%gms, batch-bytes=%d, compression=%s, partitioner=%s, producers=%d, in-flight=%d)%s\n",
			p.Records, p.MBps, p.RecordsPerSec, ms(p.Latency.P50), ms(p.Latency.P95), ms(p.Latency.P99), ms(p.Latency.P999), ms(p.Latency.Max),
			p.Acks, idem, p.LingerMs, p.BatchBytes, p.Compression, p.Partitioner, p.Producers, p.InFlight, p.BrokerCPU.text())
	}
	c := r.Consume
	raw := ""
	if c.Raw {
		raw = " (raw fetch: batch bytes, records not decoded)"
	}
	fmt.Fprintf(&b, "consume%s: %d records, %.1f MB/s, %.0f rec/s%s\n", raw, c.Records, c.MBps, c.RecordsPerSec, c.BrokerCPU.text())
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// text is the broker CPU part of a report line; empty for nil.
func (c *CPUReport) text() string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf(", broker cpu %.2f s (%.2f cores, %.1f cpu-s/GB)", c.Seconds, c.Cores, c.PerGBSecs)
}

// ms formats milliseconds with one decimal, or two below 1ms.
func ms(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

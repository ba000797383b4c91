package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/server/servertest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func topicExists(t *testing.T, addr, topic string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(testCtx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	return td.Has(topic) && td[topic].Err == nil
}

func checkReport(t *testing.T, rep Report, records int) {
	t.Helper()
	p, c := rep.Produce, rep.Consume
	if p.Records != int64(records) || p.Errors != 0 || c.Records != int64(records) {
		t.Fatalf("produced %d (errors %d), consumed %d, want %d", p.Records, p.Errors, c.Records, records)
	}
	want := int64(records * rep.RecordSize)
	if p.Bytes != want || c.Bytes != want {
		t.Errorf("bytes produced %d consumed %d, want %d", p.Bytes, c.Bytes, want)
	}
	if p.MBps <= 0 || p.RecordsPerSec <= 0 || c.MBps <= 0 || c.RecordsPerSec <= 0 {
		t.Errorf("rates not positive: produce %+v consume %+v", p, c)
	}
	l := p.Latency
	if l.P50 <= 0 || l.P50 > l.P95 || l.P95 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
}

func TestRun(t *testing.T) {
	addr := servertest.Start(t).Addr
	o := DefaultOptions()
	o.Brokers, o.Topic, o.Records, o.RecordSize, o.Partitions = []string{addr}, "bench-run", 2000, 512, 3
	o.FsyncDir, o.FsyncBytes, o.FsyncOpsTime = t.TempDir(), 4<<20, 100*time.Millisecond
	rep, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, 2000)
	if !rep.TopicCreated || rep.Partitions != 3 || rep.CreateSeconds <= 0 {
		t.Errorf("topic created %v partitions %d, want created with 3", rep.TopicCreated, rep.Partitions)
	}
	if d := rep.Disk; d == nil || d.SyncMBps <= 0 || d.DatasyncMBps <= 0 || d.SmallOpsPerSec <= 0 || d.SyncBytes != 4<<20 {
		t.Errorf("disk report %+v", d)
	}
	if !rep.Produce.Idempotent || rep.Produce.Acks != "all" {
		t.Errorf("produce settings %+v, want acks=all idempotent", rep.Produce)
	}
	if topicExists(t, addr, o.Topic) {
		t.Errorf("topic %q still exists after the run", o.Topic)
	}
}

// TestRunKeepReuse runs twice on one kept topic: the second run reuses it and
// reads back only its own records.
func TestRunKeepReuse(t *testing.T) {
	addr := servertest.Start(t).Addr
	o := DefaultOptions()
	o.Brokers, o.Topic, o.Records, o.RecordSize, o.Partitions = []string{addr}, "bench-keep", 700, 100, 2
	o.Keep, o.SkipFsync, o.Producers = true, true, 3
	for i, wantCreated := range []bool{true, false} {
		rep, err := Run(testCtx(t), o)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		checkReport(t, rep, 700)
		if rep.TopicCreated != wantCreated || rep.Disk != nil {
			t.Errorf("run %d: created %v disk %v, want created %v and no disk", i, rep.TopicCreated, rep.Disk, wantCreated)
		}
	}
	if !topicExists(t, addr, o.Topic) {
		t.Errorf("kept topic %q is gone", o.Topic)
	}
}

func TestMainJSON(t *testing.T) {
	addr := servertest.Start(t).Addr
	var out bytes.Buffer
	args := []string{"--brokers", addr, "--topic", "bench-json", "--records", "1500", "--record-size", "300",
		"--acks", "1", "--compression", "zstd", "--linger", "2ms", "--producers", "2", "--skip-fsync", "--json"}
	if err := Main(testCtx(t), args, &out); err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	checkReport(t, rep, 1500)
	p := rep.Produce
	if p.Acks != "1" || p.Idempotent || p.Compression != "zstd" || p.Producers != 2 || p.LingerMs != 2 {
		t.Errorf("produce settings %+v, want acks=1, not idempotent, zstd, 2 producers, linger 2ms", p)
	}
}

func TestMainText(t *testing.T) {
	addr := servertest.Start(t).Addr
	var out bytes.Buffer
	// The full disk phase (64 MiB, 2s) is too slow for a unit test.
	args := []string{"--brokers", addr, "--records", "300", "--acks", "0", "--skip-fsync"}
	if err := Main(testCtx(t), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"produce: 300 records, ", "latency ms p50 ", "(acks=0, not idempotent, linger=5ms, batch-bytes=16384, compression=none, partitioner=sticky, producers=1",
		"settings: acks=0 not idempotent, linger=5ms, batch-bytes=16384", "p99.9 ", "consume: 300 records, "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q lacks %q", out.String(), want)
		}
	}
}

func TestMainBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--acks=2"},
		{"--record-size=0"},
		{"--records=-5"},
		{"--compression=brotli"},
		{"--partitions=0"},
		{"--partitions=abc"},
		{"--replication-factor=40000"},
		{"--producers=0"},
		{"--brokers="},
		{"--linger=-1s"},
		{"--batch-bytes=0"},
		{"--partitioner=murmur"},
		{"--partitions=1,0"},
		{"--broker-pid=-3"},
		{"--no-such-flag"},
		{"extra-arg"},
	} {
		// An unreachable broker: bad flags must fail before any connection.
		err := Main(context.Background(), append([]string{"--brokers=127.0.0.1:1"}, args...), io.Discard)
		if err == nil {
			t.Errorf("Main(%q) = nil, want an error", args)
		}
	}
	if err := Main(context.Background(), []string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Main(-h) = %v, want flag.ErrHelp", err)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	o := DefaultOptions()
	o.RecordSize, o.Acks = 0, "2"
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "acks") || !strings.Contains(err.Error(), "record size") {
		t.Errorf("Run with bad options = %v, want errors about acks and record size", err)
	}
}

func TestPct(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]float64{0.5: 50, 0.95: 95, 0.99: 99, 0.999: 100, 1: 100} {
		if got := pct(d, q); got != want {
			t.Errorf("pct(%v) = %v, want %v", q, got, want)
		}
	}
}

// TestMainSweepJSON sweeps two partition counts with large batches and
// round-robin partitioning: one report per count, each on its own topic of
// that many partitions, as a JSON list; the broker CPU is read from /proc
// (the broker runs in this process).
func TestMainSweepJSON(t *testing.T) {
	addr := servertest.Start(t).Addr
	var out bytes.Buffer
	args := []string{"--brokers", addr, "--topic", "sweep", "--partitions", "1,4", "--records", "800", "--record-size", "200",
		"--batch-bytes", "1000000", "--linger", "0s", "--partitioner", "round-robin", "--skip-fsync", "--json",
		"--broker-pid", strconv.Itoa(os.Getpid())}
	if err := Main(testCtx(t), args, &out); err != nil {
		t.Fatal(err)
	}
	var reps []Report
	if err := json.Unmarshal(out.Bytes(), &reps); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	if len(reps) != 2 {
		t.Fatalf("%d reports, want 2", len(reps))
	}
	for i, want := range []int{1, 4} {
		r := reps[i]
		checkReport(t, r, 800)
		if r.Partitions != want || r.Topic != "sweep-p"+strconv.Itoa(want) {
			t.Errorf("report %d: topic %s with %d partitions, want sweep-p%d with %d", i, r.Topic, r.Partitions, want, want)
		}
		p := r.Produce
		if p.BatchBytes != 1000000 || p.Partitioner != "round-robin" || p.LingerMs != 0 {
			t.Errorf("report %d: settings %+v", i, p)
		}
		if c := p.BrokerCPU; c == nil || c.Seconds < 0 || !strings.HasPrefix(c.Source, "/proc/") {
			t.Errorf("report %d: broker cpu %+v, want a reading from /proc", i, c)
		}
	}
	// The sweep's topics are deleted once the sweep is over.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if names := topics.Names(); len(names) != 0 {
		t.Errorf("topics left after the sweep: %v", names)
	}
}

// TestConsumeOnly fills a kept topic, then reads it whole without producing.
func TestConsumeOnly(t *testing.T) {
	addr := servertest.Start(t).Addr
	o := DefaultOptions()
	o.Brokers, o.Topic, o.Records, o.RecordSize, o.Partitions = []string{addr}, "bench-fill", 900, 100, 3
	o.Keep, o.SkipFsync, o.MetricsURL = true, true, "off"
	if _, err := Run(testCtx(t), o); err != nil {
		t.Fatal(err)
	}
	o.ConsumeOnly, o.Records = true, 1 // Records is ignored: the whole topic is read
	rep, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Consume; c.Records != 900 || c.Bytes != 900*100 || c.MBps <= 0 || rep.Produce.Records != 0 || rep.Partitions != 3 {
		t.Errorf("consume-only report %+v", rep)
	}
	o.RawFetch = true // plain fetches, batches counted from their headers
	rep, err = Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Consume; c.Records != 900 || c.Bytes <= 900*100 || c.Bytes > 900*200 || !c.Raw || c.MBps <= 0 {
		t.Errorf("raw consume-only report %+v", rep.Consume)
	}
	o.RawFetch = false
	o.Topic = "bench-empty"
	if _, err := Run(testCtx(t), o); err == nil {
		t.Error("consume-only of a missing topic succeeded")
	}
}

func TestParseProcStat(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 50 ticks; the command
	// name holds a space and a parenthesis.
	stat := "4242 (strand (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 1000 200"
	got, err := parseProcStat(stat)
	if err != nil || got != 3 {
		t.Errorf("parseProcStat = %v, %v; want 3 s", got, err)
	}
	if _, err := parseProcStat("4242 (x) S 1 2"); err == nil {
		t.Error("short stat parsed")
	}
}

func TestMetricsCPU(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\ngo_goroutines 7\n")
	}))
	defer srv.Close()
	got, err := metricsCPU(srv.URL).read(testCtx(t))
	if err != nil || got != 12.5 {
		t.Errorf("metricsCPU = %v, %v; want 12.5", got, err)
	}
}

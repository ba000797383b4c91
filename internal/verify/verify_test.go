package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/server/servertest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func options(addr, topic string) Options {
	o := DefaultOptions()
	o.Brokers, o.Topic, o.Duration, o.Records = []string{addr}, topic, 20*time.Second, 3000
	o.ReadTimeout, o.InFlight = 30*time.Second, 200
	return o
}

// checkClean fails unless rep is a PASS where every produced record was
// acknowledged and read exactly once.
func checkClean(t *testing.T, rep Report, produced int64) {
	t.Helper()
	c := rep.Counts
	want := Counts{Produced: produced, Acknowledged: produced, Read: produced, Foreign: c.Foreign}
	if c != want || !rep.Pass || rep.Err() != nil {
		t.Fatalf("counts %+v pass %v, want %+v and a pass", c, rep.Pass, want)
	}
}

func TestRunClean(t *testing.T) {
	b := servertest.Start(t)
	o := options(b.Addr, "verify-clean")
	rep, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, 3000)
	if !rep.TopicCreated || rep.Partitions != 3 || !rep.Idempotent || rep.Foreign != 0 || rep.Fault != "" || len(rep.RunID) != 16 {
		t.Errorf("report %+v: want a created 3-partition topic, idempotent, no foreign records, no fault, a run id", rep)
	}

	// A second run on the same topic ignores the first run's records.
	o.Records, o.Rate = 200, 2000
	start := time.Now()
	again, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, again, 200)
	if again.TopicCreated || again.Foreign != 3000 || again.RunID == rep.RunID {
		t.Errorf("second run %+v: want the existing topic, 3000 foreign records and a new run id", again)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("200 records at 2000/s took %v, want about 100ms", d)
	}
}

// TestRunBrokerRestart stops the broker for 2s in the middle of the produce
// phase and starts it again on the same data and port: the idempotent
// producer retries through the outage and nothing may be lost, duplicated
// or reordered.
func TestRunBrokerRestart(t *testing.T) {
	b := servertest.Start(t)
	o := options(b.Addr, "verify-restart")
	o.Duration, o.Records, o.FaultAt = 4*time.Second, 0, 500*time.Millisecond
	o.Fault = func(ctx context.Context) error {
		if err := b.Stop(); err != nil {
			return err
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		return b.Start()
	}
	rep, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %+v", rep)
	c := rep.Counts
	if rep.Fault != "ok" || !rep.Pass || c.Lost+c.Duplicated+c.Reordered+c.Misplaced+c.Unexpected != 0 {
		t.Fatalf("fault %q, counts %+v: want the fault to run and no violations", rep.Fault, c)
	}
	if c.Acknowledged == 0 || c.Produced != c.Acknowledged+c.NotAcknowledged || c.Read < c.Acknowledged {
		t.Errorf("counts %+v inconsistent", c)
	}
}

// TestRunDetectsViolations appends copies of this run's records behind the
// producer's back and checks the verdict catches them.
func TestRunDetectsViolations(t *testing.T) {
	b := servertest.Start(t)
	o := options(b.Addr, "verify-violations")
	o.RunID, o.Records, o.Partitions, o.FaultAt = "evil", 500, 1, 0
	o.Fault = func(ctx context.Context) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.DefaultProduceTopic(o.Topic))
		if err != nil {
			return err
		}
		defer cl.Close()
		return cl.ProduceSync(ctx,
			&kgo.Record{Value: Value("evil", "p0", 0)},          // duplicate of seq 0
			&kgo.Record{Value: Value("evil", "p0", 1_000_000)},  // never produced
			&kgo.Record{Value: []byte("someone else's record")}, // foreign
		).FirstErr()
	}
	rep, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Counts
	if rep.Pass || c.Duplicated != 1 || c.Unexpected != 1 || c.Foreign != 1 || c.Lost != 0 || c.Acknowledged != 500 {
		t.Fatalf("pass %v, counts %+v: want a FAIL with 1 duplicated, 1 unexpected, 1 foreign", rep.Pass, c)
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "1 duplicated") {
		t.Errorf("Err() = %v, want a FAIL mentioning 1 duplicated", err)
	}
}

func TestMainText(t *testing.T) {
	b := servertest.Start(t)
	var out bytes.Buffer
	args := []string{"--brokers", b.Addr, "--records", "300", "--partitions", "2", "--fault-cmd", "true", "--fault-at", "0s"}
	if err := Main(testCtx(t), args, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"topic strand-verify (2 partitions, created)", "fault: ok\n", "produced:", " 300\n",
		"lost:                       0\n", "duplicated:                 0\n", "reordered:                  0\n",
		"unacknowledged but present: 0\n", "other runs ignored:         0\n", "verify: PASS\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestMainJSON(t *testing.T) {
	b := servertest.Start(t)
	var out bytes.Buffer
	args := []string{"--brokers", b.Addr, "--topic", "verify-json", "--records", "400", "--no-idempotent", "--json"}
	if err := Main(testCtx(t), args, &out); err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	checkClean(t, rep, 400)
	if rep.Idempotent || rep.Topic != "verify-json" {
		t.Errorf("report %+v: want not idempotent, topic verify-json", rep)
	}
	if !strings.Contains(out.String(), `"lost": 0`) || !strings.Contains(out.String(), `"pass": true`) {
		t.Errorf("JSON lacks flat counts: %s", out.String())
	}
}

func TestMainFaultCmdFails(t *testing.T) {
	b := servertest.Start(t)
	var out bytes.Buffer
	args := []string{"--brokers", b.Addr, "--records", "100", "--fault-cmd", "echo boom; exit 3", "--fault-at", "0s"}
	err := Main(testCtx(t), args, &out)
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(out.String(), "verify: PASS") {
		t.Errorf("Main with a failing fault command = %v, want an error with its output (and a PASS verdict):\n%s", err, out.String())
	}
}

func TestMainBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--partitions=0"},
		{"--partitions=abc"},
		{"--replication-factor=40000"},
		{"--replication-factor=2", "--min-insync=3"},
		{"--duration=0", "--records=0"},
		{"--records=-1"},
		{"--rate=-5"},
		{"--in-flight=0"},
		{"--read-timeout=0"},
		{"--brokers="},
		{"--topic="},
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
	o := DefaultOptions()
	o.RunID = "a:b"
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "run id") {
		t.Errorf("Run with a run id containing ':' = %v", err)
	}
}

func TestReportErr(t *testing.T) {
	for _, tc := range []struct {
		rep  Report
		want string // "" for no error
	}{
		{Report{Pass: true}, ""},
		{Report{Pass: true, Fault: "ok"}, ""},
		{Report{Pass: true, Fault: "skipped: producing ended before 5s"}, ""},
		{Report{Pass: true, Fault: "failed: exit status 1"}, "fault failed: exit status 1"},
		{Report{Counts: Counts{Lost: 2, Reordered: 1}}, "FAIL: 2 lost, 0 duplicated, 1 reordered"},
	} {
		err := tc.rep.Err()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v.Err() = %v, want %q", tc.rep, err, tc.want)
		}
	}
}

// observe feeds reads (partition, value) to a checker for sent.
func observe(t *testing.T, sent []Sent, reads ...any) Counts {
	t.Helper()
	ch, err := NewChecker("run", sent)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(reads); i += 2 {
		ch.Observe(reads[i].(int32), []byte(reads[i+1].(string)))
	}
	return ch.Counts()
}

func TestChecker(t *testing.T) {
	const A, F, U = Acked, Failed, Unknown
	two := func(p0, p1 []Status) []Sent {
		return []Sent{{Key: "p0", Partition: 0, Statuses: p0}, {Key: "p1", Partition: 1, Statuses: p1}}
	}
	for _, tc := range []struct {
		name  string
		sent  []Sent
		reads []any // partition, value, partition, value, ...
		want  Counts
	}{
		{
			name:  "clean, partitions interleaved",
			sent:  two([]Status{A, A, A}, []Status{A, A}),
			reads: []any{int32(0), "run:p0:0", int32(1), "run:p1:0", int32(0), "run:p0:1", int32(1), "run:p1:1", int32(0), "run:p0:2"},
			want:  Counts{Produced: 5, Acknowledged: 5, Read: 5},
		},
		{
			name:  "lost",
			sent:  two([]Status{A, A, A}, []Status{A}),
			reads: []any{int32(0), "run:p0:0", int32(0), "run:p0:2"},
			want:  Counts{Produced: 4, Acknowledged: 4, Read: 2, Lost: 2},
		},
		{
			name:  "duplicated, once and twice",
			sent:  two([]Status{A, A}, []Status{A}),
			reads: []any{int32(0), "run:p0:0", int32(0), "run:p0:1", int32(0), "run:p0:1", int32(1), "run:p1:0", int32(1), "run:p1:0", int32(1), "run:p1:0"},
			want:  Counts{Produced: 3, Acknowledged: 3, Read: 6, Duplicated: 3},
		},
		{
			name:  "duplicate of an earlier record is not also a reorder",
			sent:  two([]Status{A, A, A}, nil),
			reads: []any{int32(0), "run:p0:0", int32(0), "run:p0:1", int32(0), "run:p0:2", int32(0), "run:p0:0"},
			want:  Counts{Produced: 3, Acknowledged: 3, Read: 4, Duplicated: 1},
		},
		{
			name:  "reordered",
			sent:  two([]Status{A, A, A, A}, nil),
			reads: []any{int32(0), "run:p0:0", int32(0), "run:p0:2", int32(0), "run:p0:1", int32(0), "run:p0:3"},
			want:  Counts{Produced: 4, Acknowledged: 4, Read: 4, Reordered: 1},
		},
		{
			name:  "reordered across an unacknowledged record",
			sent:  two([]Status{A, F, A}, nil),
			reads: []any{int32(0), "run:p0:1", int32(0), "run:p0:0", int32(0), "run:p0:2"},
			want:  Counts{Produced: 3, Acknowledged: 2, NotAcknowledged: 1, Failed: 1, Read: 3, Reordered: 1, UnacknowledgedPresent: 1},
		},
		{
			name:  "unacknowledged present or absent is allowed, gaps are fine",
			sent:  two([]Status{A, F, U, A, U}, []Status{F, A}),
			reads: []any{int32(0), "run:p0:0", int32(0), "run:p0:2", int32(0), "run:p0:3", int32(1), "run:p1:0", int32(1), "run:p1:1"},
			want:  Counts{Produced: 7, Acknowledged: 3, NotAcknowledged: 4, Failed: 2, Unknown: 2, Read: 5, UnacknowledgedPresent: 2},
		},
		{
			name:  "misplaced",
			sent:  two([]Status{A}, []Status{A}),
			reads: []any{int32(0), "run:p0:0", int32(0), "run:p1:0"},
			want:  Counts{Produced: 2, Acknowledged: 2, Read: 2, Misplaced: 1},
		},
		{
			name: "other runs ignored, unexpected values of this run",
			sent: two([]Status{A}, nil),
			reads: []any{int32(0), "other:p0:0", int32(0), "runner:p0:0", int32(0), "", int32(0), "run:p0:0",
				int32(0), "run:p0:1", int32(0), "run:p9:0", int32(0), "run:p0:x", int32(0), "run:p0:-1", int32(0), "run:nocolon"},
			want: Counts{Produced: 1, Acknowledged: 1, Read: 6, Unexpected: 5, Foreign: 3},
		},
		{
			name: "nothing produced, nothing read",
			want: Counts{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := observe(t, tc.sent, tc.reads...)
			if got != tc.want {
				t.Errorf("counts\n got %+v\nwant %+v", got, tc.want)
			}
			wantViolations := tc.want.Lost + tc.want.Duplicated + tc.want.Reordered + tc.want.Misplaced + tc.want.Unexpected
			if got.Violations() != wantViolations {
				t.Errorf("Violations() = %d, want %d", got.Violations(), wantViolations)
			}
		})
	}
	if _, err := NewChecker("run", []Sent{{Key: "k"}, {Key: "k"}}); err == nil {
		t.Error("NewChecker with a repeated key succeeded")
	}
}

func TestCheckerMissingShrinks(t *testing.T) {
	ch, err := NewChecker("r", []Sent{{Key: "k", Partition: 4, Statuses: []Status{Acked, Unknown, Acked}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ch.Missing(); got != 2 {
		t.Errorf("Missing() before reading = %d, want 2", got)
	}
	for i, want := range []int64{1, 1, 0} {
		ch.Observe(4, Value("r", "k", int64(i)))
		if got := ch.Missing(); got != want {
			t.Errorf("Missing() after reading seq %d = %d, want %d", i, got, want)
		}
	}
	if got := ch.Missing(); got != 0 {
		t.Errorf("Missing() after reading everything = %d", got)
	}
	if s := Unknown.String() + Acked.String() + Failed.String(); s != "unknownackedfailed" {
		t.Errorf("status strings %q", s)
	}
}

// TestRunAfterFault: with AfterFault, producing goes on past Duration until
// that long after a slow fault returned, so acknowledgements after the
// fault are seen; the recovery figure reports the fault window.
func TestRunAfterFault(t *testing.T) {
	b := servertest.Start(t)
	o := options(b.Addr, "verify-after-fault")
	o.Records, o.Rate, o.Duration = 0, 500, 300*time.Millisecond
	o.FaultAt, o.AfterFault = 100*time.Millisecond, 400*time.Millisecond
	o.Fault = func(ctx context.Context) error {
		time.Sleep(600 * time.Millisecond)
		return nil
	}
	rep, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, rep.Produced)
	r := rep.Recovery
	if rep.ProduceSeconds < 1.0 || r.FaultEndSeconds < 0.7 || r.AckedAfterFault == 0 || r.AckedDuringFault == 0 {
		t.Fatalf("produced for %.2fs (want >= fault end 0.7s + 0.4s), recovery %+v", rep.ProduceSeconds, r)
	}
	if r.MaxAckGapSeconds <= 0 || r.MaxAckGapSeconds > 1 || len(r.Partitions) != 3 {
		t.Fatalf("a healthy broker at 500 records/s: recovery %+v", r)
	}
}

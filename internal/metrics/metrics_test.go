package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type fakeSource struct{ s Snapshot }

func (f fakeSource) Snapshot() Snapshot { return f.s }

func TestForEachErrorCode(t *testing.T) {
	ct := kmsg.NewPtrCreateTopicsResponse()
	for _, code := range []int16{0, kerr.TopicAlreadyExists.Code, kerr.InvalidReplicationFactor.Code, kerr.TopicAlreadyExists.Code} {
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.ErrorCode = code
		ct.Topics = append(ct.Topics, rt)
	}
	pr := kmsg.NewPtrProduceResponse()
	pt := kmsg.NewProduceResponseTopic()
	pp := kmsg.NewProduceResponseTopicPartition()
	pp.ErrorCode = kerr.NotLeaderForPartition.Code
	pt.Partitions = append(pt.Partitions, pp, kmsg.NewProduceResponseTopicPartition())
	pr.Topics = append(pr.Topics, pt)
	for _, tc := range []struct {
		resp kmsg.Response
		want []int16
	}{
		{ct, []int16{36, 38, 36}},
		{pr, []int16{6}},
		{kmsg.NewPtrApiVersionsResponse(), nil},
	} {
		var got []int16
		forEachErrorCode(tc.resp, func(c int16) { got = append(got, c) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("%T: codes %v, want %v", tc.resp, got, tc.want)
		}
	}
}

func TestRequestDoneCountsErrorsByName(t *testing.T) {
	before := testutil.ToFloat64(requestErrors.WithLabelValues("CreateTopics", "TOPIC_ALREADY_EXISTS"))
	ct := kmsg.NewPtrCreateTopicsResponse()
	rt := kmsg.NewCreateTopicsResponseTopic()
	rt.ErrorCode = kerr.TopicAlreadyExists.Code
	ct.Topics = append(ct.Topics, rt)
	now := time.Now()
	RequestDone(int16(kmsg.CreateTopics), Timing{now, now, now, now.Add(time.Millisecond)}, ct)
	if got := testutil.ToFloat64(requestErrors.WithLabelValues("CreateTopics", "TOPIC_ALREADY_EXISTS")) - before; got != 1 {
		t.Fatalf("errors counted: %v, want 1", got)
	}
}

// TestDashboardMetricsExist: every strand_ metric the Grafana dashboard
// queries is one this package exports.
func TestDashboardMetricsExist(t *testing.T) {
	reg := NewRegistry(fakeSource{Snapshot{
		Connections: map[string]int{"PLAINTEXT": 1},
		Partitions:  []Partition{{Topic: "t", Partition: 0, Size: 10}},
		GroupLag:    []GroupLag{{Group: "g", Topic: "t", Partition: 0, Committed: 1, Lag: 2}},
	}})
	Produced("t", 1, 10)
	Fetched("t", 10, false)
	Fetched("t", 10, true)
	FsyncSince(time.Now())
	ISRChange(3, 2)
	ISRChange(2, 3)
	now := time.Now()
	RequestDone(0, Timing{now, now, now, now}, nil)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "strand.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`strand_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					name = strings.TrimSuffix(name, suf)
				}
				n++
				if !have[name] {
					t.Errorf("panel %q queries %s, which strand does not export", p.Title, name)
				}
			}
		}
	}
	if n < 15 {
		t.Fatalf("dashboard queries only %d metrics", n)
	}
}

// BenchmarkRequestDone is the per-request cost of the request metrics hook
// (a Produce response with one partition).
func BenchmarkRequestDone(b *testing.B) {
	pr := kmsg.NewPtrProduceResponse()
	pt := kmsg.NewProduceResponseTopic()
	pt.Partitions = append(pt.Partitions, kmsg.NewProduceResponseTopicPartition())
	pr.Topics = append(pr.Topics, pt)
	now := time.Now()
	tm := Timing{now, now, now, now}
	b.ReportAllocs()
	for b.Loop() {
		RequestDone(int16(kmsg.Produce), tm, pr)
	}
}

// BenchmarkProduced is the per-partition cost of the produce hook.
func BenchmarkProduced(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Produced("bench-topic", 10, 1000)
	}
}

// TestThrottledObservesPerAPI: a quota's throttle lands in the histogram of
// the request's API, in seconds.
func TestThrottledObservesPerAPI(t *testing.T) {
	Throttled(int16(kmsg.Produce), 250*time.Millisecond)
	h := throttleTime.WithLabelValues("Produce").(prometheus.Histogram)
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Histogram.GetSampleCount() < 1 || m.Histogram.GetSampleSum() < 0.25 {
		t.Fatalf("throttle histogram count %d sum %v", m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum())
	}
}

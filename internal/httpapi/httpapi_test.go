package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// get fetches url and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// eventually polls cond every 100 ms until it returns "" (done) or the
// deadline passes, then fails with cond's last complaint.
func eventually(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric returns the value of the sample named exactly series (name with
// labels in Prometheus' sorted order) in a /metrics body, or -1 if absent.
func metric(body, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func client(t *testing.T, brokers ...string) (*kgo.Client, *kadm.Client) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(100*time.Millisecond),
		kgo.MetadataMaxAge(time.Second), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, kadm.NewClient(cl)
}

func createTopic(t *testing.T, adm *kadm.Client, name string, partitions int32, rf int16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, rf, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	// Wait until every partition has a leader that answers ListOffsets.
	eventually(t, 30*time.Second, func() string {
		ends, err := adm.ListEndOffsets(ctx, name)
		if err != nil {
			return err.Error()
		}
		n := 0
		var bad error
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				bad = o.Err
			}
			n++
		})
		if bad != nil || n != int(partitions) {
			return fmt.Sprintf("topic %s: %d of %d partitions listed (%v)", name, n, partitions, bad)
		}
		return ""
	})
}

// TestReadyAndHealth: a node serving clients answers /readyz 200 with its
// detail, /healthz 200; pprof is off unless http.pprof.enable.
func TestReadyAndHealth(t *testing.T) {
	n := testcluster.StartNode(t, testcluster.WithHTTP())
	base := "http://" + n.HTTPAddr()
	var ready struct {
		Ready      bool  `json:"ready"`
		NodeID     int32 `json:"node_id"`
		CaughtUp   bool  `json:"caught_up"`
		Fenced     bool  `json:"fenced"`
		Controller int32 `json:"controller_id"`
	}
	eventually(t, 20*time.Second, func() string {
		code, body := get(t, base+"/readyz")
		if code != http.StatusOK {
			return fmt.Sprintf("/readyz: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &ready); err != nil {
			return err.Error()
		}
		return ""
	})
	if !ready.Ready || !ready.CaughtUp || ready.Fenced || ready.NodeID != 1 || ready.Controller != 1 {
		t.Fatalf("/readyz detail: %+v", ready)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without http.pprof.enable: %d, want 404", code)
	}

	p := testcluster.StartNode(t, testcluster.WithHTTP(), testcluster.WithSet("http.pprof.enable", "true"))
	if code, body := get(t, "http://"+p.HTTPAddr()+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ with http.pprof.enable: %d", code)
	}
}

// TestNotReadyWithoutQuorum: a node whose quorum has no majority is alive
// (/healthz 200) but not ready (/readyz 503, saying why).
func TestNotReadyWithoutQuorum(t *testing.T) {
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	client, ctrl := free(), free()
	voters := fmt.Sprintf("1@%s,2@%s,3@%s", ctrl, free(), free())
	n := testcluster.NewNode(t, testcluster.WithHTTP(), testcluster.WithSet("controller.quorum.voters", voters),
		testcluster.WithArgs("--listeners", "PLAINTEXT://"+client+",CONTROLLER://"+ctrl))
	n.Start(t)
	base := "http://" + n.HTTPAddr()
	eventually(t, 20*time.Second, func() string {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("/healthz %d", resp.StatusCode)
		}
		return ""
	})
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a quorum: %d %s, want 503", code, body)
	}
	var ready struct {
		Ready   bool     `json:"ready"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatal(err)
	}
	if ready.Ready || len(ready.Reasons) == 0 {
		t.Fatalf("/readyz detail: %s", body)
	}
}

// TestMetricsCountProduce: producing moves the per-topic and total
// counters and the per-API request counters; the log size gauge follows.
func TestMetricsCountProduce(t *testing.T) {
	n := testcluster.StartNode(t, testcluster.WithHTTP())
	cl, adm := client(t, n.Addr())
	createTopic(t, adm, "metered", 2, 1)
	createTopic(t, adm, "other", 1, 1)
	base := "http://" + n.HTTPAddr()
	_, before := get(t, base+"/metrics")
	total0 := metric(before, "strand_messages_in_total")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i := range 25 {
		v := fmt.Sprintf("value-%03d", i)
		recs = append(recs, &kgo.Record{Topic: "metered", Partition: int32(i % 2), Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	_, body := get(t, base+"/metrics")
	if got := metric(body, `strand_topic_messages_in_total{topic="metered"}`); got != 25 {
		t.Errorf("strand_topic_messages_in_total{topic=metered} = %v, want 25", got)
	}
	if got := metric(body, `strand_topic_messages_in_total{topic="other"}`); got > 0 {
		t.Errorf("strand_topic_messages_in_total{topic=other} = %v, want none", got)
	}
	if got := metric(body, "strand_messages_in_total"); got-total0 != 25 {
		t.Errorf("strand_messages_in_total moved by %v, want 25", got-total0)
	}
	bytesIn := metric(body, `strand_topic_bytes_in_total{topic="metered"}`)
	if bytesIn < 25*9 {
		t.Errorf("strand_topic_bytes_in_total{topic=metered} = %v, want >= %d", bytesIn, 25*9)
	}
	size := metric(body, `strand_log_size_bytes{partition="0",topic="metered"}`) + metric(body, `strand_log_size_bytes{partition="1",topic="metered"}`)
	if size != bytesIn {
		t.Errorf("log sizes of metered = %v, want the bytes produced %v", size, bytesIn)
	}
	if got := metric(body, `strand_requests_total{api="Produce"}`); got < 1 {
		t.Errorf(`strand_requests_total{api="Produce"} = %v`, got)
	}
	if got := metric(body, `strand_request_total_time_seconds_count{api="Produce"}`); got < 1 {
		t.Errorf(`strand_request_total_time_seconds_count{api="Produce"} = %v`, got)
	}
	if got := metric(body, "strand_log_flush_time_seconds_count"); got < 1 {
		t.Errorf("strand_log_flush_time_seconds_count = %v, want fsyncs counted", got)
	}
	for _, s := range []string{"strand_under_replicated_partitions 0", "strand_active_controller 1", "strand_leader_partitions 3"} {
		if !strings.Contains(body, s+"\n") {
			t.Errorf("/metrics lacks %q", s)
		}
	}

	// Consuming moves bytes out.
	cons, _ := client(t, n.Addr())
	cons.AddConsumeTopics("metered")
	got := 0
	for got < 25 {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of 25: %v", got, err)
		}
		got += fs.NumRecords()
	}
	_, body = get(t, base+"/metrics")
	if out := metric(body, `strand_topic_bytes_out_total{topic="metered"}`); out != bytesIn {
		t.Errorf("strand_topic_bytes_out_total{topic=metered} = %v, want %v", out, bytesIn)
	}

	// The consumer, caught up, long-polls: its fetch waits in the purgatory.
	eventually(t, 10*time.Second, func() string {
		_, body := get(t, base+"/metrics")
		if v := metric(body, `strand_purgatory_size{operation="fetch"}`); v < 1 {
			return fmt.Sprintf("fetch purgatory %v with a consumer long-polling", v)
		}
		return ""
	})

	// The coordinator reports a group's lag: 13 records on partition 0, 4 committed.
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "metered", Partition: 0, At: 4, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, "lagging", offs); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, base+"/metrics")
	if lag := metric(body, `strand_group_lag{group="lagging",partition="0",topic="metered"}`); lag != 9 {
		t.Errorf("strand_group_lag of lagging on metered-0 = %v, want 9", lag)
	}
}

// TestMetricsUnderReplicated: with one broker of three killed, the
// under-replicated count goes up on the brokers still up, for the
// partitions they lead, and the offline count stays 0.
func TestMetricsUnderReplicated(t *testing.T) {
	c := testcluster.StartCluster(t, 3, testcluster.WithHTTP())
	_, adm := client(t, c.Addrs()...)
	createTopic(t, adm, "replicated", 6, 3)
	for _, n := range c.Nodes {
		eventually(t, 20*time.Second, func() string {
			_, body := get(t, "http://"+n.HTTPAddr()+"/metrics")
			if v := metric(body, "strand_under_replicated_partitions"); v != 0 {
				return fmt.Sprintf("node %d: under-replicated %v before the kill", n.ID(), v)
			}
			return ""
		})
	}
	c.Node(3).Kill()
	eventually(t, 30*time.Second, func() string {
		sum := 0.0
		for _, n := range c.Nodes[:2] {
			_, body := get(t, "http://"+n.HTTPAddr()+"/metrics")
			under, leaders := metric(body, "strand_under_replicated_partitions"), metric(body, "strand_leader_partitions")
			if under != leaders {
				return fmt.Sprintf("node %d: %v under-replicated of %v led", n.ID(), under, leaders)
			}
			sum += under
		}
		// Every partition of replicated has a replica on node 3.
		if sum < 6 {
			return fmt.Sprintf("under-replicated on the live nodes = %v, want >= 6", sum)
		}
		return ""
	})
}

// TestMetricsISRShrinkExpand: a follower paused longer than
// replica.lag.time.max.ms (but shorter than the session timeout) is shrunk
// out of the ISR by the leaders, and expanded back once it resumes; the
// leaders count both.
func TestMetricsISRShrinkExpand(t *testing.T) {
	c := testcluster.StartCluster(t, 3, testcluster.WithHTTP(),
		testcluster.WithSet("replica.lag.time.max.ms", "600"), testcluster.WithSet("broker.session.timeout.ms", "20000"))
	_, adm := client(t, c.Addrs()...)
	createTopic(t, adm, "shrinking", 3, 3)
	sum := func(series string) float64 {
		total := 0.0
		for _, n := range c.Nodes[:2] {
			_, body := get(t, "http://"+n.HTTPAddr()+"/metrics")
			total += max(metric(body, series), 0)
		}
		return total
	}
	shrinks0, expands0 := sum("strand_isr_shrinks_total"), sum("strand_isr_expands_total")
	if err := c.Node(3).Pause(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() string {
		if d := sum("strand_isr_shrinks_total") - shrinks0; d < 1 {
			return "no ISR shrink counted on nodes 1-2 with node 3 paused"
		}
		return ""
	})
	if err := c.Node(3).Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() string {
		if d := sum("strand_isr_expands_total") - expands0; d < 1 {
			return "no ISR expand counted on nodes 1-2 after node 3 resumed"
		}
		return ""
	})
}

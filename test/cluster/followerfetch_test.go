package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/testcluster"
)

// rackOf is node id's broker.rack in TestFollowerFetchRackAware.
func rackOf(id int32) string { return "rack-" + strconv.Itoa(int(id)) }

// scrape returns the value of the Prometheus sample named exactly series
// (name and labels) on node n's /metrics, 0 if absent.
func scrape(t *testing.T, n *testcluster.Node, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatalf("node %d metrics: %v", n.ID(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("node %d metrics: %v", n.ID(), err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("node %d: %s: %v", n.ID(), line, err)
			}
			return f
		}
	}
	return 0
}

// consumed is one record as a consumer saw it.
type consumed struct {
	Offset int64
	Value  string
}

// consumeFrom polls cl until it holds n records (failing after 30 s).
func consumeFrom(t *testing.T, cl *kgo.Client, n int) []consumed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []consumed
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Logf("fetch %s-%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) { out = append(out, consumed{r.Offset, string(r.Value)}) })
	}
	return out
}

// rawFetch sends a consumer Fetch of topic's partition 0 at offset to addr
// with the given version and rack and returns the partition's answer.
func rawFetch(t *testing.T, addr, topic string, version int16, rack string, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.MaxBytes, req.Rack = version, -1, 1<<20, rack
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := testcluster.RawRequest(ctx, addr, req, resp); err != nil {
		t.Fatalf("fetch v%d from %s: %v", version, addr, err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch v%d from %s: %d topics in the response", version, addr, len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0]
}

// TestFollowerFetchRackAware (KIP-392): with broker.rack per node and the
// rack-aware replica.selector.class, a franz-go consumer with
// kgo.Rack(follower's rack) is sent by the leader to that follower and reads
// every record there (bytes out counted on the follower, none on the leader
// or the third node), seeing exactly what a leader-reading consumer sees. A
// follower serves consumers only up to the high watermark it learned: with
// the third replica paused (still in the ISR) records written with acks=1
// reach the follower's log but are not served until the HW passes them.
// Raw fetches check the wire: the leader's PreferredReadReplica, no records
// at the follower's HW, OFFSET_OUT_OF_RANGE past its log end, and
// NOT_LEADER_OR_FOLLOWER from a follower for a pre-v11 fetch.
func TestFollowerFetchRackAware(t *testing.T) {
	const topic, n, k = "rack-aware", 200, 7
	c := replicationCluster(t, testcluster.WithHTTP(),
		testcluster.ForNode(1, testcluster.WithSet("broker.rack", rackOf(1))),
		testcluster.ForNode(2, testcluster.WithSet("broker.rack", rackOf(2))),
		testcluster.ForNode(3, testcluster.WithSet("broker.rack", rackOf(3))),
		testcluster.WithSet("replica.selector.class", config.RackAwareReplicaSelector),
		// The paused replica must stay in the ISR for the HW check.
		testcluster.WithSet("replica.lag.time.max.ms", "15000"),
		testcluster.WithSet("broker.session.timeout.ms", "15000"))
	createTopic(t, c, topic, []int32{1, 2, 3})
	leaderID, _, err := partitionState(c.Node(1).Addr(), topic)
	if err != nil {
		t.Fatal(err)
	}
	others := slices.DeleteFunc([]int32{1, 2, 3}, func(id int32) bool { return id == leaderID })
	leader, follower, third := c.Node(leaderID), c.Node(others[0]), c.Node(others[1])
	t.Logf("leader %d, rack-aware consumer in %s (node %d), third replica %d", leaderID, rackOf(follower.ID()), follower.ID(), third.ID())

	produceN(t, producer(t, c.Addrs(), topic), 0, n)

	bytesOut := `strand_topic_bytes_out_total{topic="` + topic + `"}`
	out := func() (l, f, o float64) {
		return scrape(t, leader, bytesOut), scrape(t, follower, bytesOut), scrape(t, third, bytesOut)
	}
	consumer := func(opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Addrs()...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
			kgo.MetadataMinAge(100 * time.Millisecond), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}

	// A consumer without a rack reads from the leader.
	fromLeader := consumer()
	leaderView := consumeFrom(t, fromLeader, n)
	l0, f0, o0 := out()
	if l0 <= 0 || f0 != 0 || o0 != 0 {
		t.Fatalf("bytes out after the leader-reading consumer: leader %v, follower %v, third %v; want >0, 0, 0", l0, f0, o0)
	}

	// The leader names the follower in the client's rack, and only there.
	if p := rawFetch(t, leader.Addr(), topic, 11, rackOf(follower.ID()), 0); p.ErrorCode != 0 || p.PreferredReadReplica != follower.ID() || len(p.RecordBatches) != 0 {
		t.Fatalf("leader's answer to a %s fetch: error %v, preferred %d, %d record bytes; want preferred %d, no records",
			rackOf(follower.ID()), kerr.ErrorForCode(p.ErrorCode), p.PreferredReadReplica, len(p.RecordBatches), follower.ID())
	}
	for _, rack := range []string{"", rackOf(leaderID), "rack-elsewhere"} {
		if p := rawFetch(t, leader.Addr(), topic, 11, rack, 0); p.ErrorCode != 0 || p.PreferredReadReplica != -1 || len(p.RecordBatches) == 0 {
			t.Fatalf("leader's answer to a fetch from rack %q: error %v, preferred %d, %d record bytes; want records from the leader",
				rack, kerr.ErrorForCode(p.ErrorCode), p.PreferredReadReplica, len(p.RecordBatches))
		}
	}
	if p := rawFetch(t, follower.Addr(), topic, 10, "", 0); p.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("follower's answer to a v10 consumer fetch: %v, want NOT_LEADER_OR_FOLLOWER", kerr.ErrorForCode(p.ErrorCode))
	}
	l1, f1, o1 := out() // the raw fetches above read from the leader

	// A consumer in the follower's rack reads everything from the follower.
	inRack := consumer(kgo.Rack(rackOf(follower.ID())))
	rackView := consumeFrom(t, inRack, n)
	if !slices.Equal(rackView, leaderView) {
		t.Fatalf("the rack-aware consumer saw %d records, the leader-reading one %d, and they differ", len(rackView), len(leaderView))
	}
	l2, f2, o2 := out()
	if l2 != l1 || f2-f1 < l0 || o2 != o1 {
		t.Fatalf("bytes out by the rack-aware consumer: leader +%v, follower +%v, third +%v; want 0, >= %v, 0", l2-l1, f2-f1, o2-o1, l0)
	}

	// Pause the third replica: records produced with acks=1 reach the
	// follower's log but not the HW, and the follower does not serve them.
	// (The producer knows only the leader: a client asking the paused node
	// for metadata would wait for it past the session timeout.)
	leaderOnly := producer(t, []string{leader.Addr()}, topic, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	if err := third.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = third.Resume()
		}
	}()
	produceN(t, leaderOnly, n, n+k)
	series := func(name string) string { return name + `{partition="0",topic="` + topic + `"}` }
	waitFor(t, 10*time.Second, "the follower's log to hold the acks=1 records", func() error {
		if leo := scrape(t, follower, series("strand_log_end_offset")); leo != n+k {
			return fmt.Errorf("follower LEO %v, want %d", leo, n+k)
		}
		return nil
	})
	if hw := scrape(t, follower, series("strand_high_watermark")); hw != n {
		t.Fatalf("follower HW %v with the third replica paused, want %d", hw, n)
	}
	if p := rawFetch(t, follower.Addr(), topic, 11, "", n); p.ErrorCode != 0 || len(p.RecordBatches) != 0 || p.HighWatermark != n {
		t.Fatalf("follower's answer at its HW: error %v, %d record bytes, HW %d; want none, HW %d", kerr.ErrorForCode(p.ErrorCode), len(p.RecordBatches), p.HighWatermark, n)
	}
	if p := rawFetch(t, follower.Addr(), topic, 11, "", n+k+1); p.ErrorCode != kerr.OffsetOutOfRange.Code {
		t.Fatalf("follower's answer past its log end: %v, want OFFSET_OUT_OF_RANGE", kerr.ErrorForCode(p.ErrorCode))
	}
	pollCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	fs := inRack.PollFetches(pollCtx)
	cancel()
	if got := fs.NumRecords(); got != 0 {
		t.Fatalf("the rack-aware consumer got %d records above the HW", got)
	}

	// Once the third replica is back the HW passes them and both consumers
	// see the same records.
	resumed = true
	if err := third.Resume(); err != nil {
		t.Fatal(err)
	}
	rackView = append(rackView, consumeFrom(t, inRack, k)...)
	leaderView = append(leaderView, consumeFrom(t, fromLeader, k)...)
	if !slices.Equal(rackView, leaderView) || len(rackView) != n+k {
		t.Fatalf("after the HW passed: the rack-aware consumer saw %d records, the leader-reading one %d, and they differ or miss some", len(rackView), len(leaderView))
	}
	for i, r := range leaderView {
		if r.Offset != int64(i) || r.Value != strconv.Itoa(i) {
			t.Fatalf("record %d: offset %d value %q", i, r.Offset, r.Value)
		}
	}
	if _, f3, o3 := out(); f3 <= f2 || o3 != o2 {
		t.Fatalf("bytes out for the last records: follower +%v, third +%v; want > 0 and 0", f3-f2, o3-o2)
	}
}

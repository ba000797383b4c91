package server

import (
	"bytes"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/record"
)

// TestProduceQuota: a producer_byte_rate quota set with AlterClientQuotas
// throttles its user (throttle_time_ms > 0, the measured rate near the
// quota) and no one else.
func TestProduceQuota(t *testing.T) {
	n := startSASLNode(t, [2]string{"quota.window.num", "3"}, [2]string{"quota.window.size.seconds", "1"},
		[2]string{"auto.create.topics.enable", "false"})
	admin := n.client()
	createTopic(t, admin, "q", 1, nil)
	adm := kadm.NewClient(admin)
	const quota = 256 << 10 // bytes a second
	alice := kadm.ClientQuotaEntity{{Type: "user", Name: kmsg.StringPtr("alice")}}
	res, err := adm.AlterClientQuotas(ctx(t), []kadm.AlterClientQuotaEntry{
		{Entity: alice, Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: quota}}},
		{Entity: alice, Ops: []kadm.AlterClientQuotaOp{{Key: "no_such_quota", Value: 1}}},
		{Entity: kadm.ClientQuotaEntity{{Type: "ip", Name: kmsg.StringPtr("1.2.3.4")}}, Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1}}},
	})
	if err != nil || len(res) != 3 || res[0].Err != nil || res[1].Err == nil || res[2].Err == nil {
		t.Fatalf("alter client quotas: %v %+v", err, res)
	}
	described, err := adm.DescribeClientQuotas(ctx(t), false, []kadm.DescribeClientQuotaComponent{{Type: "user", MatchType: 2}})
	if err != nil || len(described) != 1 || described[0].Values[0].Key != "producer_byte_rate" || described[0].Values[0].Value != quota {
		t.Fatalf("describe client quotas: %v %+v", err, described)
	}

	b, err := record.Build(record.BuildSpec{ProducerEpoch: -1, ProducerID: -1, BaseSequence: -1,
		Records: []record.Record{{Timestamp: time.Now().UnixMilli(), Value: bytes.Repeat([]byte("x"), 32<<10)}}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(cl *kgo.Client) *kmsg.ProduceResponse {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = 1, 5000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "q", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: b}}}}
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		if c := resp.Topics[0].Partitions[0].ErrorCode; c != 0 {
			t.Fatalf("produce: %s", codeName(c))
		}
		return resp
	}
	cl := n.as("alice")
	start := time.Now()
	var warm time.Time
	sent, warmSent, maxThrottle := 0, 0, int32(0)
	for time.Since(start) < 4*time.Second {
		resp := send(cl)
		maxThrottle = max(maxThrottle, resp.ThrottleMillis)
		sent += len(b)
		if warm.IsZero() && time.Since(start) >= time.Second {
			warm, warmSent = time.Now(), sent
		}
	}
	rate := float64(sent-warmSent) / time.Since(warm).Seconds()
	t.Logf("quota %d B/s: measured %.0f B/s after the first second (%.2f of the quota), largest throttle %d ms", quota, rate, rate/quota, maxThrottle)
	if maxThrottle <= 0 {
		t.Fatal("never throttled")
	}
	if rate < 0.5*quota || rate > 1.5*quota {
		t.Fatalf("measured rate %.0f B/s is not near the quota %d B/s", rate, quota)
	}
	if resp := send(n.as("bob")); resp.ThrottleMillis != 0 {
		t.Fatalf("bob, without a quota, throttled %d ms", resp.ThrottleMillis)
	}
}

// throttleHook records the largest throttle a kgo client was told of.
type throttleHook struct{ max atomic.Int64 }

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	for cur := h.max.Load(); int64(d) > cur && !h.max.CompareAndSwap(cur, int64(d)); cur = h.max.Load() {
	}
}

// TestFetchQuota: a consumer_byte_rate quota on a client id slows a
// consumer down to about the quota.
func TestFetchQuota(t *testing.T) { testFetchQuota(t) }

func testFetchQuota(t *testing.T, sets ...[2]string) {
	n := startNode(t, append([][2]string{{"quota.window.num", "3"}, {"quota.window.size.seconds", "1"},
		{"auto.create.topics.enable", "false"}}, sets...)...)
	admin := n.client(kgo.DefaultProduceTopic("f"), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(64<<10))
	createTopic(t, admin, "f", 1, nil)
	const records, size = 32, 32 << 10 // 1 MiB
	for range records {
		admin.Produce(ctx(t), kgo.SliceRecord(bytes.Repeat([]byte("y"), size)), nil)
	}
	if err := admin.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	const quota = 256 << 10 // 512 KiB in the 2 s span
	res, err := kadm.NewClient(admin).AlterClientQuotas(ctx(t), []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: kmsg.StringPtr("slow-reader")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "consumer_byte_rate", Value: quota}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("alter client quotas: %v %+v", err, res)
	}
	var hook throttleHook
	// Default fetch sizes (50 MB, 1 MiB a partition): the broker caps the
	// fetch at what the quota allows in one span, else every response
	// would be over the quota by itself and throttled forever.
	cl := n.client(kgo.ClientID("slow-reader"), kgo.ConsumeTopics("f"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.WithHooks(&hook))
	start := time.Now()
	got := 0
	for got < records {
		fs := cl.PollFetches(ctx(t))
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	took := time.Since(start)
	rate := float64(records*size) / took.Seconds()
	t.Logf("quota %d B/s: 1 MiB in %v, %.0f B/s (%.2f of the quota); largest throttle %v",
		quota, took.Round(time.Millisecond), rate, rate/quota, time.Duration(hook.max.Load()))
	if hook.max.Load() <= 0 {
		t.Fatal("never throttled")
	}
	if rate < 0.5*quota || rate > 1.5*quota {
		t.Fatalf("measured rate %.0f B/s is not near the quota %d B/s", rate, quota)
	}
}

// TestControllerMutationQuota: topics created past the
// controller_mutation_rate are refused with THROTTLING_QUOTA_EXCEEDED and
// the response is throttled.
func TestControllerMutationQuota(t *testing.T) {
	n := startSASLNode(t, [2]string{"quota.window.num", "3"}, [2]string{"quota.window.size.seconds", "1"})
	res, err := kadm.NewClient(n.client()).AlterClientQuotas(ctx(t), []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "user", Name: kmsg.StringPtr("carol")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "controller_mutation_rate", Value: 2}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("alter client quotas: %v %+v", err, res)
	}
	// 2 partitions a second, measured over at least 2 s: the first three
	// topics of 2 partitions take the rate to 3/s, the fourth is refused.
	req := kmsg.NewPtrCreateTopicsRequest()
	for _, name := range []string{"m1", "m2", "m3", "m4"} {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 2, 1
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx(t), n.as("carol"))
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, rt := range resp.Topics {
		codes[rt.Topic] = rt.ErrorCode
	}
	want := map[string]int16{"m1": 0, "m2": 0, "m3": 0, "m4": kerr.ThrottlingQuotaExceeded.Code}
	if !maps.Equal(codes, want) || resp.ThrottleMillis <= 0 {
		t.Fatalf("codes %v (want %v), throttle %d ms", codes, want, resp.ThrottleMillis)
	}
	// Still above the quota: a deletion (strict, v6) is refused too.
	del := kmsg.NewPtrDeleteTopicsRequest()
	del.TimeoutMillis = 5000
	del.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: kmsg.StringPtr("m1")}}
	dresp, err := del.RequestWith(ctx(t), n.as("carol"))
	if err != nil || len(dresp.Topics) != 1 || dresp.Topics[0].ErrorCode != kerr.ThrottlingQuotaExceeded.Code {
		t.Fatalf("delete above the quota: %v %+v", err, dresp)
	}
	// Others are not limited.
	if r := createTopic(t, n.client(), "free", 8, nil); r.ErrorCode != 0 {
		t.Fatalf("create without a quota: %s", codeName(r.ErrorCode))
	}
}

// TestRequestPercentageQuota: a client over its request_percentage (time
// its requests take on the broker) is throttled; others are not.
func TestRequestPercentageQuota(t *testing.T) {
	n := startSASLNode(t, [2]string{"quota.window.num", "3"}, [2]string{"quota.window.size.seconds", "1"})
	res, err := kadm.NewClient(n.client()).AlterClientQuotas(ctx(t), []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "user", Name: kmsg.StringPtr("dave")}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "request_percentage", Value: 0.5}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("alter client quotas: %v %+v", err, res)
	}
	createTopic(t, n.client(), "r", 50, nil)
	metadataThrottle := func(cl *kgo.Client) int32 {
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.ThrottleMillis
	}
	dave := n.as("dave")
	deadline := time.Now().Add(10 * time.Second)
	requests := 0
	for throttled := false; !throttled; requests++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d metadata requests in 10 s, none throttled", requests)
		}
		throttled = metadataThrottle(dave) > 0
	}
	t.Logf("throttled after %d metadata requests", requests)
	if ms := metadataThrottle(n.as("erin")); ms != 0 {
		t.Fatalf("a user without a quota is throttled %d ms", ms)
	}
}

// TestQuotaFilter: DescribeClientQuotas components (exact name, exact
// null = default, default, any) and strict matching.
func TestQuotaFilter(t *testing.T) {
	user := func(name string) metadata.QuotaPart { return metadata.QuotaPart{Set: true, Name: name} }
	def := metadata.QuotaPart{Set: true, Default: true}
	alice := metadata.QuotaEntity{User: user("alice")}
	aliceApp := metadata.QuotaEntity{User: user("alice"), ClientID: user("app")}
	defUser := metadata.QuotaEntity{User: def}
	comp := func(typ string, match int8, name *string) kmsg.DescribeClientQuotasRequestComponent {
		return kmsg.DescribeClientQuotasRequestComponent{EntityType: typ, MatchType: kmsg.QuotasMatchType(match), Match: name}
	}
	for i, c := range []struct {
		comps  []kmsg.DescribeClientQuotasRequestComponent
		strict bool
		e      metadata.QuotaEntity
		want   bool
	}{
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 0, kmsg.StringPtr("alice"))}, false, alice, true},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 0, kmsg.StringPtr("alice"))}, false, aliceApp, true},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 0, kmsg.StringPtr("alice"))}, true, aliceApp, false},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 0, kmsg.StringPtr("bob"))}, false, alice, false},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 0, nil)}, false, defUser, true},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 0, nil)}, false, alice, false},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 1, nil)}, false, defUser, true},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("user", 2, nil)}, false, defUser, true},
		{[]kmsg.DescribeClientQuotasRequestComponent{comp("client-id", 2, nil)}, false, alice, false},
		{nil, false, alice, true},
		{nil, true, alice, false},
	} {
		if got := quotaFilterMatches(c.comps, c.strict, c.e); got != c.want {
			t.Errorf("case %d: got %v, want %v", i, got, c.want)
		}
	}
}

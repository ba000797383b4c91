package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
)

// consumeOnce reads topic from the start with a new client until want
// records arrived, failing on a record seen twice (by partition and offset,
// and by value) or on a deadline.
func consumeOnce(t *testing.T, n *node, topic string, want int, opts ...kgo.Opt) {
	t.Helper()
	cl := n.client(append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100 * time.Millisecond)}, opts...)...)
	defer cl.Close()
	type at struct {
		p int32
		o int64
	}
	seen, values := map[at]bool{}, map[string]bool{}
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(seen) < want {
		fs := cl.PollFetches(c)
		if c.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(seen), want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			k := at{r.Partition, r.Offset}
			if seen[k] || values[string(r.Value)] {
				t.Fatalf("record %s/%d@%d (%q) seen twice", r.Topic, r.Partition, r.Offset, r.Value)
			}
			seen[k], values[string(r.Value)] = true, true
		})
	}
	if len(seen) != want {
		t.Fatalf("consumed %d records, want %d", len(seen), want)
	}
}

// TestFetchSessionsFranzGo consumes 200 partitions with franz-go, which uses
// fetch sessions when the broker gives it one: most fetches must be
// incremental and every record arrives exactly once, also records produced
// while the consumer runs. With kgo.DisableFetchSessions every fetch is a
// full one and the records all arrive too.
func TestFetchSessionsFranzGo(t *testing.T) {
	n := startNode(t)
	prod := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const parts = 200
	createTopic(t, prod, "many", parts, nil)
	produceN(t, prod, "many", parts, 5, "a")

	fs := n.srv.fsess
	full0, inc0 := fs.full.Load(), fs.incremental.Load()
	done := make(chan struct{})
	go func() { // more records while the consumer reads
		defer close(done)
		for i := 0; i < 10; i++ {
			time.Sleep(50 * time.Millisecond)
			var rs []*kgo.Record
			for p := 0; p < parts; p += 7 {
				rs = append(rs, &kgo.Record{Topic: "many", Partition: int32(p), Value: []byte(fmt.Sprintf("b%d-%d", i, p))})
			}
			if err := prod.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
			}
		}
	}()
	extra := 10 * ((parts + 6) / 7)
	consumeOnce(t, n, "many", parts*5+extra)
	<-done
	full, inc := fs.full.Load()-full0, fs.incremental.Load()-inc0
	t.Logf("with sessions: %d full fetches, %d incremental", full, inc)
	if inc == 0 || full > inc {
		t.Fatalf("with sessions: %d full fetches, %d incremental: want mostly incremental", full, inc)
	}

	full0, inc0 = fs.full.Load(), fs.incremental.Load()
	consumeOnce(t, n, "many", parts*5+extra, kgo.DisableFetchSessions())
	full, inc = fs.full.Load()-full0, fs.incremental.Load()-inc0
	t.Logf("sessions disabled: %d full fetches, %d incremental", full, inc)
	if inc != 0 || full == 0 {
		t.Fatalf("sessions disabled: %d full fetches, %d incremental", full, inc)
	}
}

// sessionFetch sends one raw fetch to the node's broker.
func sessionFetch(t *testing.T, cl *kgo.Client, id, epoch int32, topic string, parts []int32, offsets []int64, forget []int32) *kmsg.FetchResponse {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxBytes, req.MinBytes, req.MaxWaitMillis = -1, 1<<20, 0, 0
	req.SessionID, req.SessionEpoch = id, epoch
	if len(parts) > 0 {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		for i, p := range parts {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offsets[i], 1<<20
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	if len(forget) > 0 {
		req.ForgottenTopics = append(req.ForgottenTopics, kmsg.FetchRequestForgottenTopic{Topic: topic, Partitions: forget})
	}
	resp, err := cl.Broker(1).Request(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.(*kmsg.FetchResponse)
}

// listed returns the partitions of topic a response lists.
func listed(resp *kmsg.FetchResponse) []int32 {
	var out []int32
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			out = append(out, rp.Partition)
		}
	}
	return out
}

// TestFetchSessionsRaw drives the session protocol by hand: creation, an
// incremental response listing only what changed, forgotten partitions,
// a replayed epoch, an unknown id, closing, and LRU eviction.
func TestFetchSessionsRaw(t *testing.T) {
	n := startNode(t, [2]string{"max.incremental.fetch.session.cache.slots", "2"})
	cl := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, "s", 3, nil)
	produceN(t, cl, "s", 3, 1, "x") // one record per partition: HW 1
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx(t), cl); err != nil {
		t.Fatal(err)
	}
	code := func(resp *kmsg.FetchResponse) error { return kerr.ErrorForCode(resp.ErrorCode) }

	if r := sessionFetch(t, cl, 12345, 1, "s", nil, nil, nil); code(r) != kerr.FetchSessionIDNotFound {
		t.Fatalf("unknown session: %v", code(r))
	}
	r := sessionFetch(t, cl, 0, 0, "s", []int32{0, 1, 2}, []int64{1, 1, 1}, nil)
	id := r.SessionID
	if code(r) != nil || id == 0 || len(listed(r)) != 3 {
		t.Fatalf("full fetch: %v, session %d, partitions %v", code(r), id, listed(r))
	}
	// Nothing changed since: an empty incremental response.
	if r = sessionFetch(t, cl, id, 1, "s", nil, nil, nil); code(r) != nil || r.SessionID != id || len(listed(r)) != 0 {
		t.Fatalf("epoch 1: %v, session %d, partitions %v", code(r), r.SessionID, listed(r))
	}
	if r = sessionFetch(t, cl, id, 1, "s", nil, nil, nil); code(r) != kerr.InvalidFetchSessionEpoch {
		t.Fatalf("replayed epoch 1: %v", code(r))
	}
	// Partitions 0 and 1 get a record: only they are listed, with it.
	produceN(t, cl, "s", 2, 1, "y")
	if r = sessionFetch(t, cl, id, 2, "s", nil, nil, nil); code(r) != nil {
		t.Fatal(code(r))
	}
	got := map[int32]int{}
	for _, rt := range r.Topics {
		for _, rp := range rt.Partitions {
			got[rp.Partition] = len(rp.RecordBatches)
		}
	}
	if len(got) != 2 || got[0] == 0 || got[1] == 0 {
		t.Fatalf("epoch 2: partitions and record bytes %v, want 0 and 1 with records", got)
	}
	// Forget partition 1, move partition 0 past its records: nothing to list
	// even though partition 1 has records past the session's offset.
	if r = sessionFetch(t, cl, id, 3, "s", []int32{0}, []int64{2}, []int32{1}); code(r) != nil || len(listed(r)) != 0 {
		t.Fatalf("epoch 3: %v, partitions %v", code(r), listed(r))
	}
	// Closing, then the id is gone.
	if r = sessionFetch(t, cl, id, -1, "s", nil, nil, nil); code(r) != nil || r.SessionID != 0 {
		t.Fatalf("close: %v, session %d", code(r), r.SessionID)
	}
	if r = sessionFetch(t, cl, id, 4, "s", nil, nil, nil); code(r) != kerr.FetchSessionIDNotFound {
		t.Fatalf("closed session: %v", code(r))
	}
	// Two slots: a third session evicts the least recently used one.
	var ids []int32
	for i := 0; i < 3; i++ {
		r = sessionFetch(t, cl, 0, 0, "s", []int32{2}, []int64{0}, nil)
		ids = append(ids, r.SessionID)
		if i == 1 { // touch the first: the second becomes the oldest
			if r = sessionFetch(t, cl, ids[0], 1, "s", nil, nil, nil); code(r) != nil {
				t.Fatalf("touch: %v", code(r))
			}
		}
	}
	if r = sessionFetch(t, cl, ids[1], 1, "s", nil, nil, nil); code(r) != kerr.FetchSessionIDNotFound {
		t.Fatalf("evicted session: %v", code(r))
	}
	if r = sessionFetch(t, cl, ids[0], 2, "s", nil, nil, nil); code(r) != nil {
		t.Fatalf("kept session: %v", code(r))
	}
	if r = sessionFetch(t, cl, ids[2], 1, "s", nil, nil, nil); code(r) != nil {
		t.Fatalf("newest session: %v", code(r))
	}
}

// TestFetchSessionReauthorizes: a partition that joined a session while
// its topic was readable is refused in later incremental fetches once an
// ACL denies it, although the request no longer names it.
func TestFetchSessionReauthorizes(t *testing.T) {
	n := startSASLNode(t, authzSets...)
	admin := n.as("admin")
	adm := kadm.NewClient(admin)
	createTopic(t, admin, "open", 1, nil)
	createTopic(t, admin, "shut", 1, nil)
	mustACLs(t, adm, kadm.NewACLs().Allow("User:alice").Topics("open", "shut").Operations(kadm.OpRead))
	alice := n.as("alice")
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx(t), alice); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxBytes, req.SessionEpoch = -1, 1<<20, 0
	for _, topic := range []string{"open", "shut"} {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := alice.Broker(1).Request(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	r := resp.(*kmsg.FetchResponse)
	for _, rt := range r.Topics {
		if rt.Partitions[0].ErrorCode != 0 {
			t.Fatalf("full fetch %s: %v", rt.Topic, kerr.ErrorForCode(rt.Partitions[0].ErrorCode))
		}
	}
	id := r.SessionID
	mustACLs(t, adm, kadm.NewACLs().Deny("User:alice").Topics("shut").Operations(kadm.OpRead))
	deadline := time.Now().Add(10 * time.Second)
	for epoch := int32(1); ; epoch++ {
		r = sessionFetch(t, alice, id, epoch, "open", nil, nil, nil)
		if r.ErrorCode != 0 {
			t.Fatalf("epoch %d: %v", epoch, kerr.ErrorForCode(r.ErrorCode))
		}
		refused := false
		for _, rt := range r.Topics {
			if rt.Topic == "open" {
				t.Fatalf("epoch %d: unchanged partition of open listed", epoch)
			}
			refused = rt.Topic == "shut" && rt.Partitions[0].ErrorCode == kerr.TopicAuthorizationFailed.Code
		}
		if refused {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shut still served from the session 10 s after the deny ACL")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollowerFetchSessions: followers of 3 in-process brokers replicate 30
// partitions through fetch sessions: acks=all writes with
// min.insync.replicas=3 succeed, and the leaders serve mostly incremental
// fetches (no consumer runs, so every fetch is a follower's).
func TestFollowerFetchSessions(t *testing.T) {
	var clientAddrs, voters []string
	ctrlAddrs := map[int]string{}
	for id := 1; id <= 3; id++ {
		clientAddrs = append(clientAddrs, freeAddr(t))
		ctrlAddrs[id] = freeAddr(t)
		voters = append(voters, fmt.Sprintf("%d@%s", id, ctrlAddrs[id]))
	}
	var srvs []*Server
	for id := 1; id <= 3; id++ {
		cfg, err := config.Load("", [][2]string{
			{"node.id", fmt.Sprint(id)}, {"log.dirs", t.TempDir()},
			{"listeners", "PLAINTEXT://" + clientAddrs[id-1] + ",CONTROLLER://" + ctrlAddrs[id]},
			{"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"},
			{"controller.quorum.voters", strings.Join(voters, ",")},
			{"controller.quorum.election.timeout.ms", "300"},
		})
		if err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, serveForTest(t, cfg))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(clientAddrs...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const parts = 30
	for {
		if _, err := adm.CreateTopic(c, parts, 3, map[string]*string{"min.insync.replicas": kmsg.StringPtr("3")}, "rep"); err == nil {
			break
		} else if c.Err() != nil {
			t.Fatalf("create topic: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for round := 0; round < 5; round++ {
		var rs []*kgo.Record
		for p := 0; p < parts; p += 1 + round {
			rs = append(rs, &kgo.Record{Topic: "rep", Partition: int32(p), Value: []byte("v")})
		}
		if err := cl.ProduceSync(c, rs...).FirstErr(); err != nil {
			t.Fatalf("round %d: acks=all produce with min.insync.replicas=3: %v", round, err)
		}
	}
	var full, inc int64
	for _, s := range srvs {
		full, inc = full+s.fsess.full.Load(), inc+s.fsess.incremental.Load()
	}
	t.Logf("leaders served %d full and %d incremental fetches", full, inc)
	if inc == 0 || full > inc {
		t.Fatalf("leaders served %d full and %d incremental fetches: want mostly incremental", full, inc)
	}
}

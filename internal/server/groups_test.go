package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupNodeSettings keep group tests fast: no initial rebalance delay and a
// small __consumer_offsets.
var groupNodeSettings = [][2]string{
	{"group.initial.rebalance.delay.ms", "0"},
	{"offsets.topic.num.partitions", "4"},
}

// ledger records what a consumer group delivered and committed.
type ledger struct {
	mu        sync.Mutex
	delivered map[int32]map[int64]int // partition -> offset -> deliveries
	committed map[int32]int64         // partition -> next offset, as committed
	errs      []string
}

func newLedger() *ledger {
	return &ledger{delivered: map[int32]map[int64]int{}, committed: map[int32]int64{}}
}

func (l *ledger) deliver(who string, r *kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Offset < l.committed[r.Partition] {
		l.errs = append(l.errs, fmt.Sprintf("%s got p%d@%d after offset %d was committed", who, r.Partition, r.Offset, l.committed[r.Partition]))
	}
	if l.delivered[r.Partition] == nil {
		l.delivered[r.Partition] = map[int64]int{}
	}
	l.delivered[r.Partition][r.Offset]++
}

func (l *ledger) commit(rs []*kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range rs {
		l.committed[r.Partition] = max(l.committed[r.Partition], r.Offset+1)
	}
}

// committedAll reports whether partitions 0..n-1 are committed up to offset.
func (l *ledger) committedAll(n int32, offset int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := int32(0); p < n; p++ {
		if l.committed[p] < offset {
			return false
		}
	}
	return true
}

// distinct counts the distinct records delivered.
func (l *ledger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, offs := range l.delivered {
		n += len(offs)
	}
	return n
}

// member is one kgo group consumer with a poll loop that commits every
// record it processes before letting a rebalance proceed.
type member struct {
	name   string
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	assigned map[int32]bool
}

func (m *member) owned() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.assigned)
}

func startMember(t *testing.T, n *node, name, grp, topic string, l *ledger) *member {
	m := &member{name: name, done: make(chan struct{}), assigned: map[int32]bool{}}
	update := func(ps map[string][]int32, add bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, p := range ps[topic] {
			if add {
				m.assigned[p] = true
			} else {
				delete(m.assigned, p)
			}
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.addr), kgo.ClientID(name),
		kgo.ConsumerGroup(grp), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }),
	)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			fs := cl.PollRecords(pctx, 50)
			pcancel()
			recs := fs.Records()
			for _, r := range recs {
				l.deliver(name, r)
			}
			if len(recs) > 0 {
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := cl.CommitRecords(cctx, recs...); err != nil {
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Sprintf("%s: commit: %v", name, err))
					l.mu.Unlock()
				} else {
					l.commit(recs)
				}
				ccancel()
			}
			cl.AllowRebalance()
		}
	}()
	t.Cleanup(m.close)
	return m
}

// close stops the poll loop (after its last commit) and leaves the group.
func (m *member) close() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cl.Close()
	m.cancel = nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func produceN(t *testing.T, cl *kgo.Client, topic string, partitions, perPartition int, tag string) {
	t.Helper()
	var rs []*kgo.Record
	for i := 0; i < partitions*perPartition; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: []byte(tag + strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestConsumerGroupSharesWorkAndResumes(t *testing.T) {
	n := startNode(t, groupNodeSettings...)
	prod := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, prod, "orders", 6, nil)
	l := newLedger()

	ms := []*member{
		startMember(t, n, "c1", "g", "orders", l),
		startMember(t, n, "c2", "g", "orders", l),
		startMember(t, n, "c3", "g", "orders", l),
	}
	waitFor(t, "three members with two partitions each", 30*time.Second, func() bool {
		return ms[0].owned() == 2 && ms[1].owned() == 2 && ms[2].owned() == 2
	})

	// 600 records: half before and half after a member leaves, so that the
	// others resume its partitions from its commits.
	produceN(t, prod, "orders", 6, 50, "a")
	waitFor(t, "the first 300 records", 30*time.Second, func() bool { return l.distinct() == 300 })
	ms[2].close() // commits what it processed, then leaves the group
	waitFor(t, "two members with three partitions each", 30*time.Second, func() bool {
		return ms[0].owned() == 3 && ms[1].owned() == 3
	})
	produceN(t, prod, "orders", 6, 50, "b")
	waitFor(t, "all 600 records committed", 30*time.Second, func() bool { return l.distinct() == 600 && l.committedAll(6, 100) })

	adm := kadm.NewClient(n.client())
	offs, err := adm.FetchOffsets(ctx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 6; p++ {
		if o, ok := offs.Lookup("orders", p); !ok || o.Err != nil || o.At != 100 {
			t.Errorf("committed offset of p%d: %+v", p, o)
		}
	}
	described, err := adm.DescribeGroups(ctx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	if d := described["g"]; d.Err != nil || d.State != "Stable" || len(d.Members) != 2 || d.ProtocolType != "consumer" || d.Protocol == "" {
		t.Fatalf("describe: %+v", d)
	}
	// An active group cannot be deleted, nor the offsets of a topic it consumes.
	dresp, err := adm.DeleteGroups(ctx(t), "g")
	if err != nil || !errors.Is(dresp["g"].Err, kerr.NonEmptyGroup) {
		t.Fatalf("delete active group: %v %+v", err, dresp)
	}
	odel, err := adm.DeleteOffsets(ctx(t), "g", kadm.TopicsSet{"orders": {0: {}}})
	if err != nil || !errors.Is(odel["orders"][0], kerr.GroupSubscribedToTopic) {
		t.Fatalf("delete offsets of a consumed topic: %v %+v", err, odel)
	}
	ms[0].close()
	ms[1].close()

	l.mu.Lock()
	for _, e := range l.errs {
		t.Error(e)
	}
	for p := int32(0); p < 6; p++ {
		for off := int64(0); off < 100; off++ {
			if l.delivered[p][off] == 0 {
				t.Errorf("p%d@%d never delivered", p, off)
			}
		}
	}
	l.mu.Unlock()

	listed, err := adm.ListGroups(ctx(t))
	if err != nil || listed["g"].State != "Empty" || listed["g"].ProtocolType != "consumer" {
		t.Fatalf("list: %v %+v", err, listed)
	}
	// A restart resumes from the committed offsets.
	n.stop()
	n.start()
	prod = n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceN(t, prod, "orders", 6, 10, "c")
	l2 := newLedger()
	m := startMember(t, n, "c4", "g", "orders", l2)
	waitFor(t, "the 60 new records", 30*time.Second, func() bool { return l2.distinct() >= 60 })
	m.close()
	l2.mu.Lock()
	for p, offs := range l2.delivered {
		for off := range offs {
			if off < 100 {
				t.Errorf("after restart p%d@%d was delivered again", p, off)
			}
		}
	}
	l2.mu.Unlock()

	adm = kadm.NewClient(n.client())
	if _, err := adm.DeleteOffsets(ctx(t), "g", kadm.TopicsSet{"orders": {0: {}}}); err != nil {
		t.Fatal(err)
	}
	offs, err = adm.FetchOffsets(ctx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := offs.Lookup("orders", 0); ok {
		t.Fatalf("offset of p0 survived OffsetDelete: %+v", offs)
	}
	if o, _ := offs.Lookup("orders", 1); o.At != 110 {
		t.Fatalf("p1 committed %+v, want 110", o)
	}
	dresp, err = adm.DeleteGroups(ctx(t), "g")
	if err != nil || dresp["g"].Err != nil {
		t.Fatalf("delete empty group: %v %+v", err, dresp)
	}
	listed, err = adm.ListGroups(ctx(t))
	if _, ok := listed["g"]; err != nil || ok {
		t.Fatalf("deleted group listed: %v %+v", err, listed)
	}
	described, err = adm.DescribeGroups(ctx(t), "g")
	if err != nil || described["g"].State != "Dead" {
		t.Fatalf("describe deleted group: %v %+v", err, described)
	}
}

// groupRequest sends a group request to the group's coordinator.
func groupRequest[R kmsg.Response](t *testing.T, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	resp, err := cl.Request(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.(R)
}

func TestGroupErrorCodes(t *testing.T) {
	n := startNode(t, groupNodeSettings...)
	cl := n.client()
	createTopic(t, cl, "t", 2, nil)

	join := func(grp, member string, session int32) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = grp, member, session, 10000
		req.ProtocolType = "consumer"
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0, 0, 0, 0, 1, 0, 1, 't', 0xff, 0xff, 0xff, 0xff}}}
		return groupRequest[*kmsg.JoinGroupResponse](t, cl, req)
	}
	code := func(what string, got int16, want error) {
		t.Helper()
		if err := kerr.ErrorForCode(got); err != want {
			t.Errorf("%s: got %v, want %v", what, err, want)
		}
	}
	code("empty group id", join("", "", 10000).ErrorCode, kerr.InvalidGroupID)
	code("session timeout below group.min.session.timeout.ms", join("g", "", 100).ErrorCode, kerr.InvalidSessionTimeout)
	first := join("g", "", 10000)
	code("first join", first.ErrorCode, kerr.MemberIDRequired)
	r := join("g", first.MemberID, 10000)
	code("join", r.ErrorCode, nil)
	if r.Generation != 1 || r.LeaderID != first.MemberID || len(r.Members) != 1 {
		t.Fatalf("join: %+v", r)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = "g", r.MemberID, r.Generation
	sync.ProtocolType, sync.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
	sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: r.MemberID, MemberAssignment: []byte("x")}}
	sresp := groupRequest[*kmsg.SyncGroupResponse](t, cl, sync)
	code("sync", sresp.ErrorCode, nil)
	if string(sresp.MemberAssignment) != "x" {
		t.Fatalf("assignment %q", sresp.MemberAssignment)
	}

	hb := func(grp, member string, gen int32) int16 {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Group, req.MemberID, req.Generation = grp, member, gen
		return groupRequest[*kmsg.HeartbeatResponse](t, cl, req).ErrorCode
	}
	code("heartbeat", hb("g", r.MemberID, 1), nil)
	code("heartbeat, unknown member", hb("g", "nobody", 1), kerr.UnknownMemberID)
	code("heartbeat, wrong generation", hb("g", r.MemberID, 7), kerr.IllegalGeneration)

	commit := func(grp, member string, gen int32, topic string) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = grp, member, gen
		req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 1, Offset: 42, LeaderEpoch: -1}}}}
		return groupRequest[*kmsg.OffsetCommitResponse](t, cl, req).Topics[0].Partitions[0].ErrorCode
	}
	code("commit", commit("g", r.MemberID, 1, "t"), nil)
	code("commit, wrong generation", commit("g", r.MemberID, 2, "t"), kerr.IllegalGeneration)
	code("commit, unknown member", commit("g", "nobody", 1, "t"), kerr.UnknownMemberID)
	code("commit, unknown topic", commit("g", r.MemberID, 1, "nope"), kerr.UnknownTopicOrPartition)
	code("commit, generation of a missing group", commit("other", "m", 3, "t"), kerr.IllegalGeneration)
	code("standalone commit", commit("simple", "", -1, "t"), nil)

	adm := kadm.NewClient(cl)
	for _, grp := range []string{"g", "simple"} {
		offs, err := adm.FetchOffsets(ctx(t), grp)
		if o, _ := offs.Lookup("t", 1); err != nil || o.At != 42 {
			t.Errorf("%s: fetched %+v %v", grp, o, err)
		}
	}
	dresp, err := adm.DeleteGroups(ctx(t), "never-existed")
	if err != nil || !errors.Is(dresp["never-existed"].Err, kerr.GroupIDNotFound) {
		t.Errorf("delete unknown group: %v %+v", err, dresp)
	}

	// FindCoordinator: single key (v3), batched keys (v4), transactions.
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.Version, fc.CoordinatorKey = 3, "g"
	fresp := groupRequest[*kmsg.FindCoordinatorResponse](t, cl, fc)
	if fresp.ErrorCode != 0 || fresp.NodeID != 1 || fresp.Port == 0 {
		t.Errorf("find coordinator v3: %+v", fresp)
	}
	c := dial(t, n.addr)
	fc4 := kmsg.NewPtrFindCoordinatorRequest()
	fc4.Version, fc4.CoordinatorKeys = 4, []string{"a", "b"}
	c.send(t, fc4, 1)
	_, body := c.recv(t)
	f4 := fc4.ResponseKind().(*kmsg.FindCoordinatorResponse)
	if err := f4.ReadFrom(body[1:]); err != nil || len(f4.Coordinators) != 2 || f4.Coordinators[1].Key != "b" || f4.Coordinators[1].ErrorCode != 0 {
		t.Errorf("find coordinator v4: %v %+v", err, f4)
	}
	fc4.CoordinatorType, fc4.CoordinatorKeys = 1, []string{"txn"}
	c.send(t, fc4, 2)
	_, body = c.recv(t)
	if err := f4.ReadFrom(body[1:]); err != nil || f4.Coordinators[0].ErrorCode != 0 || f4.Coordinators[0].NodeID != 1 {
		t.Errorf("transaction coordinator: %v %+v", err, f4)
	}

	// __consumer_offsets is internal, compacted, and clients cannot write to it.
	meta := kmsg.NewPtrMetadataRequest()
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("__consumer_offsets")}}
	mresp := groupRequest[*kmsg.MetadataResponse](t, cl, meta)
	if mt := mresp.Topics[0]; mt.ErrorCode != 0 || !mt.IsInternal || len(mt.Partitions) != 4 {
		t.Errorf("metadata of __consumer_offsets: %+v", mt)
	}
	if got := produceRaw(t, cl, "__consumer_offsets", 1, batch(t, -1, 0, 1)); got.ErrorCode != kerr.InvalidTopicException.Code {
		t.Errorf("produce to __consumer_offsets: %v", kerr.ErrorForCode(got.ErrorCode))
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx(t), "__consumer_offsets")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cfgs.On("__consumer_offsets", nil); err != nil {
		t.Fatal(err)
	} else {
		for _, c := range v.Configs {
			if c.Key == "cleanup.policy" && (c.Value == nil || *c.Value != "compact") {
				t.Errorf("cleanup.policy %v", c.Value)
			}
		}
	}
}

// TestStaticMemberRestart: a static member (group.instance.id) that restarts
// within its session takes its old place without a rebalance and gets its
// assignment back.
func TestStaticMemberRestart(t *testing.T) {
	n := startNode(t, groupNodeSettings...)
	prod := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, prod, "events", 2, nil)
	newStatic := func(l *ledger) *kgo.Client {
		cl := n.client(kgo.ConsumerGroup("static"), kgo.ConsumeTopics("events"), kgo.InstanceID("instance-1"),
			kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond), kgo.DisableAutoCommit())
		go func() {
			for {
				fs := cl.PollFetches(context.Background())
				if fs.IsClientClosed() {
					return
				}
				recs := fs.Records()
				for _, r := range recs {
					l.deliver("static", r)
				}
				if len(recs) > 0 && cl.CommitRecords(context.Background(), recs...) == nil {
					l.commit(recs)
				}
			}
		}()
		return cl
	}
	l := newLedger()
	first := newStatic(l)
	produceN(t, prod, "events", 2, 10, "a")
	waitFor(t, "20 records committed", 30*time.Second, func() bool { return l.distinct() == 20 && l.committedAll(2, 10) })
	adm := kadm.NewClient(n.client())
	before, err := adm.DescribeGroups(ctx(t), "static")
	if err != nil || len(before["static"].Members) != 1 {
		t.Fatalf("describe: %v %+v", err, before)
	}
	first.Close() // a static member does not leave the group on close

	l2 := newLedger()
	second := newStatic(l2)
	produceN(t, prod, "events", 2, 10, "b")
	waitFor(t, "the 20 new records", 30*time.Second, func() bool { return l2.distinct() == 20 })
	second.Close()
	after, err := adm.DescribeGroups(ctx(t), "static")
	if err != nil {
		t.Fatal(err)
	}
	g := after["static"]
	if g.State != "Stable" || len(g.Members) != 1 || g.Members[0].InstanceID == nil || *g.Members[0].InstanceID != "instance-1" ||
		g.Members[0].MemberID == before["static"].Members[0].MemberID {
		t.Fatalf("after restart: %+v", g)
	}
	l2.mu.Lock()
	defer l2.mu.Unlock()
	for p, offs := range l2.delivered {
		for off := range offs {
			if off < 10 {
				t.Errorf("p%d@%d delivered again after the restart", p, off)
			}
		}
	}
}

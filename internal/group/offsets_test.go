package group

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stableGroup forms a one-member consumer group subscribed to topics.
func stableGroup(h *harness, name string, topics ...string) (string, int32) {
	h.t.Helper()
	r := h.joinWait(name, joinOpts{version: 3, meta: subscription(topics...)})
	if r.err != 0 {
		h.t.Fatalf("join: %v", kerr.ErrorForCode(r.err))
	}
	if s := h.sync(name, r.memberID, r.generation, map[string]string{r.memberID: "a"}); s.get() == nil || s.get().err != 0 {
		h.t.Fatalf("sync: %+v", s.get())
	}
	return r.memberID, r.generation
}

func TestLoadRestoresGroupsAndOffsets(t *testing.T) {
	h := newHarness(t)
	m, gen := stableGroup(h, "active", "t")
	wantErr(t, "commit", h.commit("active", m, gen, "t", 0, 10), nil)
	wantErr(t, "commit", h.commit("active", m, gen, "t", 0, 11), nil)
	wantErr(t, "simple commit", h.commit("simple", "", -1, "u", 3, 30), nil)
	wantErr(t, "simple commit", h.commit("gone", "", -1, "u", 0, 1), nil)
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"gone"}
	if resp := h.c.DeleteGroups(del)(); resp.Groups[0].ErrorCode != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(resp.Groups[0].ErrorCode))
	}

	h.restart()
	if got := h.fetch("active", "t", 0); got != 11 {
		t.Fatalf("active offset after load: %d", got)
	}
	if got := h.fetch("simple", "u", 3); got != 30 {
		t.Fatalf("simple offset after load: %d", got)
	}
	if got := h.fetch("gone", "u", 0); got != -1 {
		t.Fatalf("deleted group's offset after load: %d", got)
	}
	if s := h.state("active"); s != "Stable" {
		t.Fatalf("active group after load: %s", s)
	}
	// The member of the loaded generation carries on.
	wantErr(t, "heartbeat after load", h.heartbeat("active", m, gen), nil)
	wantErr(t, "commit after load", h.commit("active", m, gen, "t", 0, 12), nil)
	// Without heartbeats its session expires and the group empties.
	h.clock.Advance(11 * time.Second)
	h.settle()
	if s := h.state("active"); s != "Empty" {
		t.Fatalf("after session expiry: %s", s)
	}
	// Generations keep growing across loads.
	h.restart()
	r := h.joinWait("active", joinOpts{version: 3})
	if r.generation <= gen+1 {
		t.Fatalf("generation %d after reload, was %d", r.generation, gen)
	}
	list := h.c.ListGroups(kmsg.NewPtrListGroupsRequest())
	var names []string
	for _, g := range list.Groups {
		names = append(names, g.Group+":"+g.GroupState)
	}
	if got := strings.Join(names, ","); got != "active:CompletingRebalance,simple:Empty" {
		t.Fatalf("groups %s", got)
	}
}

func TestLoadSkipsBadRecords(t *testing.T) {
	h := newHarness(t)
	wantErr(t, "commit", h.commit("g", "", -1, "t", 0, 5), nil)
	bad, _ := buildBatch(h.clock.Now(), []kv{{key: []byte{0, 1, 0xff}, value: []byte{1}}, {key: []byte{0, 7, 0, 0}, value: nil}})
	if _, err := h.log.Append(0, bad); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if got := h.fetch("g", "t", 0); got != 5 {
		t.Fatalf("offset %d", got)
	}
}

func TestOffsetFetchVersions(t *testing.T) {
	h := newHarness(t)
	wantErr(t, "commit", h.commit("g", "", -1, "b", 1, 21), nil)
	wantErr(t, "commit", h.commit("g", "", -1, "a", 0, 10), nil)
	wantErr(t, "commit", h.commit("g", "", -1, "b", 0, 20), nil)

	// v7, null topics: every offset of the group, sorted.
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version, req.Group = 7, "g"
	resp := h.c.OffsetFetch(req)
	var got []string
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			got = append(got, tp.Topic+"/"+string(rune('0'+p.Partition))+"="+string(rune('0'+p.Offset%10)))
		}
	}
	if strings.Join(got, " ") != "a/0=0 b/0=0 b/1=1" || resp.ErrorCode != 0 {
		t.Fatalf("all offsets: %v (%d)", got, resp.ErrorCode)
	}
	// v8, several groups, one unknown.
	req8 := kmsg.NewPtrOffsetFetchRequest()
	req8.Version = 8
	req8.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "b", Partitions: []int32{0, 5}}}}, {Group: "nope"}}
	r8 := h.c.OffsetFetch(req8)
	if len(r8.Groups) != 2 || r8.Groups[0].Topics[0].Partitions[0].Offset != 20 || r8.Groups[0].Topics[0].Partitions[1].Offset != -1 || len(r8.Groups[1].Topics) != 0 {
		t.Fatalf("v8: %+v", r8)
	}
	// Not the coordinator: v1 reports it per partition, v2+ at the top.
	h.c.Unload(0)
	req.Version, req.Topics = 1, []kmsg.OffsetFetchRequestTopic{{Topic: "a", Partitions: []int32{0}}}
	if r := h.c.OffsetFetch(req); r.Topics[0].Partitions[0].ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("v1 error: %+v", r)
	}
	req.Version = 5
	if r := h.c.OffsetFetch(req); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("v5 error: %+v", r)
	}
}

func TestOffsetCommitChecks(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxMetadataSize = 4
		c.PartitionExists = func(topic string, _ int32) bool { return topic != "missing" }
	})
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group = 8, "g"
	req.Topics = []kmsg.OffsetCommitRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, Metadata: kmsg.StringPtr("ok")}, {Partition: 1, Offset: 1, Metadata: kmsg.StringPtr("too long")}}},
		{Topic: "missing", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}},
	}
	resp := h.c.OffsetCommit(req)()
	codes := []int16{resp.Topics[0].Partitions[0].ErrorCode, resp.Topics[0].Partitions[1].ErrorCode, resp.Topics[1].Partitions[0].ErrorCode}
	want := []int16{0, kerr.OffsetMetadataTooLarge.Code, kerr.UnknownTopicOrPartition.Code}
	for i := range codes {
		if codes[i] != want[i] {
			t.Fatalf("codes %v, want %v", codes, want)
		}
	}
	// A member generation for a group that does not exist.
	wantErr(t, "generation for unknown group", h.commit("nogroup", "m", 3, "t", 0, 1), kerr.IllegalGeneration)
	h.log.appendErr = ErrTooLarge
	wantErr(t, "too large", h.commit("g", "", -1, "t", 0, 2), kerr.InvalidCommitOffsetSize)
	h.log.appendErr = ErrNotLeader
	wantErr(t, "not leader", h.commit("g", "", -1, "t", 0, 2), kerr.NotCoordinator)
	h.log.appendErr = ErrUnavailable
	wantErr(t, "too few replicas", h.commit("g", "", -1, "t", 0, 2), kerr.CoordinatorNotAvailable)
	h.log.appendErr = nil
	if got := h.fetch("g", "t", 0); got != 1 {
		t.Fatalf("failed commits must not show: %d", got)
	}
}

func TestDeleteGroupsAndOffsets(t *testing.T) {
	h := newHarness(t)
	m, gen := stableGroup(h, "live", "consumed")
	wantErr(t, "commit", h.commit("live", m, gen, "consumed", 0, 1), nil)
	wantErr(t, "commit", h.commit("live", m, gen, "old", 0, 1), nil)
	wantErr(t, "commit", h.commit("idle", "", -1, "t", 0, 1), nil)
	wantErr(t, "commit", h.commit("idle", "", -1, "t", 1, 1), nil)

	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"live", "idle", "never"}
	resp := h.c.DeleteGroups(del)()
	want := []int16{kerr.NonEmptyGroup.Code, 0, kerr.GroupIDNotFound.Code}
	for i, g := range resp.Groups {
		if g.ErrorCode != want[i] {
			t.Errorf("%s: %v, want %v", g.Group, kerr.ErrorForCode(g.ErrorCode), kerr.ErrorForCode(want[i]))
		}
	}
	if got := h.fetch("idle", "t", 1); got != -1 {
		t.Fatalf("offset of deleted group: %d", got)
	}

	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = "live"
	od.Topics = []kmsg.OffsetDeleteRequestTopic{
		{Topic: "consumed", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "old", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
	}
	oresp := h.c.OffsetDelete(od)()
	if oresp.ErrorCode != 0 || oresp.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code || oresp.Topics[1].Partitions[0].ErrorCode != 0 {
		t.Fatalf("offset delete: %+v", oresp)
	}
	if h.fetch("live", "old", 0) != -1 || h.fetch("live", "consumed", 0) != 1 {
		t.Fatal("offset delete applied wrongly")
	}
	od.Group = "never"
	if r := h.c.OffsetDelete(od)(); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("unknown group: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// Survives a reload.
	h.restart()
	if h.fetch("live", "old", 0) != -1 || h.fetch("live", "consumed", 0) != 1 || h.fetch("idle", "t", 0) != -1 {
		t.Fatal("deletes lost on reload")
	}
}

func TestOffsetsExpire(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.OffsetsRetention = time.Hour
		c.RetentionCheckInterval = 10 * time.Minute
	})
	wantErr(t, "commit", h.commit("simple", "", -1, "t", 0, 1), nil)
	m, gen := stableGroup(h, "consumer", "t")
	wantErr(t, "commit", h.commit("consumer", m, gen, "t", 0, 1), nil)
	wantErr(t, "commit", h.commit("consumer", m, gen, "unsubscribed", 0, 1), nil)
	for i := 0; i < 70*12; i++ { // 70 minutes, heartbeating
		h.clock.Advance(5 * time.Second)
		wantErr(t, "heartbeat", h.heartbeat("consumer", m, gen), nil)
	}
	if h.fetch("simple", "t", 0) != -1 {
		t.Fatal("standalone offset older than the retention was kept")
	}
	if h.fetch("consumer", "t", 0) != 1 {
		t.Fatal("offset of a subscribed topic of a live group expired")
	}
	if h.fetch("consumer", "unsubscribed", 0) != -1 {
		t.Fatal("offset of a topic the group no longer consumes was kept")
	}
	if s := h.state("simple"); s != "Dead" {
		t.Fatalf("standalone group without offsets: %s", s)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version, leave.Group, leave.MemberID = 2, "consumer", m
	if resp := h.c.LeaveGroup(leave); resp.ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	h.settle()
	h.clock.Advance(50 * time.Minute)
	if h.fetch("consumer", "t", 0) != 1 {
		t.Fatal("expired before the group was empty for the retention")
	}
	h.clock.Advance(20 * time.Minute)
	if h.fetch("consumer", "t", 0) != -1 || h.state("consumer") != "Dead" {
		t.Fatal("empty group's offsets did not expire")
	}
	// The tombstones are in the log: a reload agrees.
	h.restart()
	if h.fetch("consumer", "t", 0) != -1 || h.fetch("simple", "t", 0) != -1 {
		t.Fatal("expired offsets came back on reload")
	}
	var tombstones int
	for _, r := range h.log.records(t, 0) {
		if r.isOffset && r.offset == nil || !r.isOffset && r.meta == nil {
			tombstones++
		}
	}
	if tombstones < 5 {
		t.Fatalf("%d tombstones in the log", tombstones)
	}
}

// TestLedButNotLoadedIsLoading: a partition the metadata names this broker
// the leader of, whose Load has not started yet, answers
// COORDINATOR_LOAD_IN_PROGRESS (clients retry it in place); one it does not
// lead answers NOT_COORDINATOR.
func TestLedButNotLoadedIsLoading(t *testing.T) {
	var leads atomic.Bool
	h := newHarness(t, func(c *Config) { c.Leads = func(int32) bool { return leads.Load() } })
	h.c.Unload(0)
	commit := func() int16 {
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch, req.Generation = "tx", "g", 1, 0, -1
		req.Topics = []kmsg.TxnOffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5}}}}
		return h.c.TxnOffsetCommit(req)().Topics[0].Partitions[0].ErrorCode
	}
	if code := commit(); code != kerr.NotCoordinator.Code {
		t.Fatalf("not led: error %d, want NOT_COORDINATOR", code)
	}
	leads.Store(true)
	if code := commit(); code != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("led, not loaded: error %d, want COORDINATOR_LOAD_IN_PROGRESS", code)
	}
}

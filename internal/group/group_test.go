package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestPartitionForMatchesJava(t *testing.T) {
	// Java's "group".hashCode(), by hand: g=103 r=114 o=111 u=117 p=112;
	// ((((103*31+114)*31+111)*31+117)*31+112) = 98629247; 98629247 % 50 = 47.
	cases := []struct {
		group string
		hash  int32 // String.hashCode()
		n     int32
		want  int32
	}{
		{"", 0, 50, 0},
		{"group", 98629247, 50, 47},
		{"abc", 96354, 50, 4},
		{"hello", 99162322, 50, 22},
		{"my-group", -1906497762, 50, 36},          // negative hash: Utils.abs is h & 0x7fffffff
		{"polygenelubricants", -2147483648, 50, 0}, // Integer.MIN_VALUE
		{"grüppe", -1233264812, 50, 36},            // non-ASCII
		{"日本語", 25921943, 50, 43},                  // BMP, multi-byte UTF-8
		{"😀group", -1231696132, 50, 16},            // outside the BMP: a UTF-16 surrogate pair
		{"console-consumer-12345", 158455506, 50, 6},
	}
	for _, c := range cases {
		if got := PartitionFor(c.group, c.n); got != c.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d (hashCode %d)", c.group, c.n, got, c.want, c.hash)
		}
		if got := (c.hash & 0x7fffffff) % c.n; got != c.want {
			t.Errorf("table error for %q", c.group)
		}
	}
	if got := PartitionFor("group", 1); got != 0 {
		t.Errorf("one partition: %d", got)
	}
}

func TestStateTransitions(t *testing.T) {
	legal := map[[2]State]bool{
		{Empty, PreparingRebalance}: true, {Empty, Dead}: true,
		{PreparingRebalance, CompletingRebalance}: true, {PreparingRebalance, Empty}: true, {PreparingRebalance, Dead}: true,
		{CompletingRebalance, PreparingRebalance}: true, {CompletingRebalance, Stable}: true, {CompletingRebalance, Dead}: true,
		{Stable, PreparingRebalance}: true, {Stable, Dead}: true,
		{Dead, Dead}: true,
	}
	for from := Empty; from <= Dead; from++ {
		for to := Empty; to <= Dead; to++ {
			if got := canTransition(from, to); got != legal[[2]State{from, to}] {
				t.Errorf("%s -> %s: legal=%v", from, to, got)
			}
		}
	}
}

func TestSelectProtocol(t *testing.T) {
	g := newGroup("g", nil, time.Time{})
	add := func(id string, protos ...string) {
		m := &member{id: id, protocolType: "consumer"}
		for _, p := range protos {
			m.protocols = append(m.protocols, protocol{name: p})
		}
		g.add(m, nil)
	}
	add("a", "range", "roundrobin", "sticky")
	add("b", "roundrobin", "range")
	add("c", "sticky", "roundrobin", "range")
	// Common: range, roundrobin (sticky is not supported by b). Votes:
	// a->range, b->roundrobin, c->roundrobin.
	if got := g.selectProtocol(); got != "roundrobin" {
		t.Fatalf("got %q, want roundrobin", got)
	}
	g.remove("c")
	// a->range, b->roundrobin: a tie, won by the leader's (a's) preference.
	if got := g.selectProtocol(); got != "range" {
		t.Fatalf("tie: got %q, want the leader's range", got)
	}
	g.state = Stable
	if !g.supportsProtocols("consumer", []protocol{{name: "range"}}) || g.supportsProtocols("consumer", []protocol{{name: "sticky"}}) ||
		g.supportsProtocols("connect", []protocol{{name: "range"}}) {
		t.Fatal("supportsProtocols")
	}
}

func TestJoinSyncHeartbeatLifecycle(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
	// v4+: an unknown member first gets its id with MEMBER_ID_REQUIRED.
	first := h.joined(h.join("g", joinOpts{version: 9}))
	if first.err != kerr.MemberIDRequired.Code || first.memberID == "" {
		t.Fatalf("want MEMBER_ID_REQUIRED with an id, got %+v", first)
	}
	m1 := first.memberID
	j1 := h.join("g", joinOpts{version: 9, member: m1})
	if j1.get() != nil {
		t.Fatal("the first join must wait group.initial.rebalance.delay.ms")
	}
	if s := h.state("g"); s != "PreparingRebalance" {
		t.Fatalf("state %s", s)
	}
	h.clock.Advance(3 * time.Second)
	r1 := h.joined(j1)
	if r1.err != 0 || r1.generation != 1 || r1.leader != m1 || len(r1.members) != 1 || *r1.protocol != "range" {
		t.Fatalf("join: %+v", r1)
	}
	if s := h.state("g"); s != "CompletingRebalance" {
		t.Fatalf("state %s", s)
	}
	wantErr(t, "commit before sync", h.commit("g", m1, 1, "t", 0, 5), kerr.RebalanceInProgress)
	s1 := h.sync("g", m1, 1, map[string]string{m1: "A1"})
	if r := s1.get(); r == nil || r.err != 0 || string(r.assignment) != "A1" {
		t.Fatalf("sync: %+v", r)
	}
	if s := h.state("g"); s != "Stable" {
		t.Fatalf("state %s", s)
	}
	wantErr(t, "heartbeat", h.heartbeat("g", m1, 1), nil)
	wantErr(t, "heartbeat old generation", h.heartbeat("g", m1, 0), kerr.IllegalGeneration)
	wantErr(t, "heartbeat unknown member", h.heartbeat("g", "nobody", 1), kerr.UnknownMemberID)
	wantErr(t, "heartbeat unknown group", h.heartbeat("other", m1, 1), kerr.UnknownMemberID)
	wantErr(t, "commit", h.commit("g", m1, 1, "t", 0, 5), nil)
	wantErr(t, "commit wrong generation", h.commit("g", m1, 7, "t", 0, 6), kerr.IllegalGeneration)
	wantErr(t, "commit unknown member", h.commit("g", "nobody", 1, "t", 0, 6), kerr.UnknownMemberID)
	wantErr(t, "simple commit to an active group", h.commit("g", "", -1, "t", 0, 6), kerr.UnknownMemberID)
	if got := h.fetch("g", "t", 0); got != 5 {
		t.Fatalf("fetched %d", got)
	}

	// A second member (v3: no MEMBER_ID_REQUIRED) starts a rebalance that
	// completes as soon as the first rejoins.
	j2 := h.join("g", joinOpts{version: 3})
	if j2.get() != nil {
		t.Fatal("second join must wait for the first member")
	}
	wantErr(t, "heartbeat during rebalance", h.heartbeat("g", m1, 1), kerr.RebalanceInProgress)
	wantErr(t, "commit during PreparingRebalance", h.commit("g", m1, 1, "t", 0, 7), nil)
	j1 = h.join("g", joinOpts{version: 9, member: m1})
	r1, r2 := h.joined(j1), h.joined(j2)
	m2 := r2.memberID
	if r1.generation != 2 || r2.generation != 2 || r1.leader != m1 || r2.leader != m1 || len(r1.members) != 2 || len(r2.members) != 0 {
		t.Fatalf("rejoin: %+v / %+v", r1, r2)
	}
	s2 := h.sync("g", m2, 2, nil)
	if s2.get() != nil {
		t.Fatal("follower sync must wait for the leader")
	}
	s1 = h.sync("g", m1, 2, map[string]string{m1: "A1", m2: "A2"})
	if r := s2.get(); r == nil || string(r.assignment) != "A2" {
		t.Fatalf("follower assignment: %+v", r)
	}
	if r := s1.get(); r == nil || string(r.assignment) != "A1" {
		t.Fatalf("leader assignment: %+v", r)
	}

	// m2 stops heartbeating: its session (10s) expires and m1 is told to rejoin.
	for i := 0; i < 4; i++ {
		h.clock.Advance(3 * time.Second)
		if err := h.heartbeat("g", m1, 2); err != nil {
			if err != kerr.RebalanceInProgress {
				t.Fatalf("heartbeat: %v", err)
			}
			break
		}
	}
	if s := h.state("g"); s != "PreparingRebalance" {
		t.Fatalf("after session expiry: %s", s)
	}
	r1 = h.joined(h.join("g", joinOpts{version: 9, member: m1}))
	if r1.generation != 3 || len(r1.members) != 1 {
		t.Fatalf("after expiry: %+v", r1)
	}
	h.sync("g", m1, 3, map[string]string{m1: "all"})

	// The last member leaves: the group is Empty, its offsets stay.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 5
	leave.Group = "g"
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: m1}, {MemberID: "ghost"}}
	lresp := h.c.LeaveGroup(leave)
	if lresp.ErrorCode != 0 || lresp.Members[0].ErrorCode != 0 || lresp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave: %+v", lresp)
	}
	h.settle()
	if s := h.state("g"); s != "Empty" {
		t.Fatalf("after leave: %s", s)
	}
	if got := h.fetch("g", "t", 0); got != 7 {
		t.Fatalf("offset after leave: %d", got)
	}
	wantErr(t, "simple commit to an empty group", h.commit("g", "", -1, "t", 1, 9), nil)
}

func TestJoinErrors(t *testing.T) {
	h := newHarness(t)
	if r := h.joined(h.join("", joinOpts{})); r.err != kerr.InvalidGroupID.Code {
		t.Errorf("empty group id: %v", kerr.ErrorForCode(r.err))
	}
	if r := h.joined(h.join("g", joinOpts{session: 500})); r.err != kerr.InvalidSessionTimeout.Code {
		t.Errorf("session below min: %v", kerr.ErrorForCode(r.err))
	}
	if r := h.joined(h.join("g", joinOpts{session: 61000})); r.err != kerr.InvalidSessionTimeout.Code {
		t.Errorf("session above max: %v", kerr.ErrorForCode(r.err))
	}
	if r := h.joined(h.join("nope", joinOpts{member: "made-up"})); r.err != kerr.UnknownMemberID.Code {
		t.Errorf("member id for a new group: %v", kerr.ErrorForCode(r.err))
	}
	if r := h.joined(h.join("g", joinOpts{protocols: []string{}})); r.err != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("no protocols: %v", kerr.ErrorForCode(r.err))
	}
	r := h.joinWait("g", joinOpts{version: 3})
	if r.err != 0 && r.generation != 1 {
		t.Fatalf("join: %+v", r)
	}
	if r := h.joined(h.join("g", joinOpts{protoType: "connect"})); r.err != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("other protocol type: %v", kerr.ErrorForCode(r.err))
	}
	if r := h.joined(h.join("g", joinOpts{protocols: []string{"other"}})); r.err != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("no common protocol: %v", kerr.ErrorForCode(r.err))
	}
	// Partition not loaded: NOT_COORDINATOR.
	h.c.Unload(0)
	if r := h.joined(h.join("g", joinOpts{})); r.err != kerr.NotCoordinator.Code {
		t.Errorf("unloaded: %v", kerr.ErrorForCode(r.err))
	}
	wantErr(t, "heartbeat unloaded", h.heartbeat("g", r.memberID, 1), kerr.NotCoordinator)
}

func TestGroupMaxSize(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxGroupSize = 1 })
	r := h.joinWait("g", joinOpts{version: 3})
	r = h.joined(h.join("g", joinOpts{version: 3, member: r.memberID})) // rejoin is fine
	if r.err != 0 {
		t.Fatalf("rejoin: %v", kerr.ErrorForCode(r.err))
	}
	if r2 := h.joined(h.join("g", joinOpts{version: 3})); r2.err != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("second member: %v", kerr.ErrorForCode(r2.err))
	}
}

func TestUnloadAnswersWaiters(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = time.Minute })
	j := h.join("g", joinOpts{version: 3})
	if j.get() != nil {
		t.Fatal("answered during the initial delay")
	}
	h.c.Unload(0)
	if r := h.joined(j); r.err != kerr.NotCoordinator.Code {
		t.Fatalf("got %v", kerr.ErrorForCode(r.err))
	}
	h.clock.Advance(2 * time.Minute) // stopped timers stay quiet
}

func TestStaticMemberRejoinKeepsAssignment(t *testing.T) {
	h := newHarness(t)
	inst := "instance-1"
	r := h.joinWait("g", joinOpts{version: 9, instance: &inst})
	r = h.joined(h.join("g", joinOpts{version: 9, member: r.memberID, instance: &inst}))
	if r.err != 0 {
		// The first JoinGroup of a static member is answered by the rebalance.
		t.Fatalf("join: %+v", r)
	}
	old := r.memberID
	gen := r.generation
	h.sync("g", old, gen, map[string]string{old: "mine"})
	if s := h.state("g"); s != "Stable" {
		t.Fatalf("state %s", s)
	}
	// The instance restarts: it joins without a member id and takes over.
	nr := h.joined(h.join("g", joinOpts{version: 9, instance: &inst}))
	if nr.err != 0 || nr.memberID == old || nr.generation != gen || !nr.skipAssign || nr.leader != nr.memberID {
		t.Fatalf("static rejoin: %+v", nr)
	}
	if s := h.state("g"); s != "Stable" {
		t.Fatalf("a static rejoin must not rebalance: %s", s)
	}
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.Generation, req.InstanceID = 4, "g", old, gen, &inst
	if code := h.c.Heartbeat(req).ErrorCode; code != kerr.FencedInstanceID.Code {
		t.Fatalf("old member id: %v", kerr.ErrorForCode(code))
	}
	s := h.sync("g", nr.memberID, gen, nil)
	if r := s.get(); r == nil || string(r.assignment) != "mine" {
		t.Fatalf("assignment after restart: %+v", r)
	}
	// Admin removal by instance id.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version, leave.Group = 4, "g"
	leave.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: &inst}}
	if resp := h.c.LeaveGroup(leave); resp.Members[0].ErrorCode != 0 {
		t.Fatalf("leave by instance id: %v", kerr.ErrorForCode(resp.Members[0].ErrorCode))
	}
	h.settle()
	if st := h.state("g"); st != "Empty" {
		t.Fatalf("after leave: %s", st)
	}
}

func TestPendingMemberExpires(t *testing.T) {
	h := newHarness(t)
	r := h.joinWait("g", joinOpts{version: 4})
	r = h.joinWait("g", joinOpts{version: 4, member: r.memberID})
	m1 := r.memberID
	h.sync("g", m1, 1, nil)
	// A second client gets a member id but never joins with it: the
	// rebalance it started must not wait for it past its session timeout.
	if p := h.joined(h.join("g", joinOpts{version: 4, session: 5000})); p.err != kerr.MemberIDRequired.Code {
		t.Fatalf("got %+v", p)
	}
	j1 := h.join("g", joinOpts{version: 4, member: m1}) // leader rejoin forces a rebalance
	if j1.get() != nil {
		t.Fatal("rebalance completed while a member id is pending")
	}
	h.clock.Advance(5 * time.Second)
	if r := h.joined(j1); r.err != 0 || r.generation != 2 || len(r.members) != 1 {
		t.Fatalf("after pending expiry: %+v", r)
	}
}

func TestRebalanceTimeoutRemovesSilentMembers(t *testing.T) {
	h := newHarness(t)
	r := h.joinWait("g", joinOpts{version: 3, session: 30000, rebalance: 5000})
	m1 := r.memberID
	j2 := h.join("g", joinOpts{version: 3, session: 30000, rebalance: 5000})
	// m2's join waits for m1; m1 never rejoins within the rebalance timeout.
	h.clock.Advance(0)
	if j2.get() != nil {
		t.Fatal("join answered before the rebalance timeout")
	}
	st := h.state("g")
	if st != "PreparingRebalance" {
		t.Fatalf("state %s", st)
	}
	h.clock.Advance(5 * time.Second)
	if s := h.state("g"); s != "CompletingRebalance" {
		t.Fatalf("state %s", s)
	}
	if r := h.joined(j2); r.err != 0 || r.generation != 2 || len(r.members) != 1 {
		t.Fatalf("join after rebalance timeout: %+v", r)
	}
	wantErr(t, "removed member", h.heartbeat("g", m1, 1), kerr.UnknownMemberID)
	// Nobody sends SyncGroup: after the rebalance timeout the member is removed.
	h.clock.Advance(5 * time.Second)
	h.settle()
	if s := h.state("g"); s != "Empty" {
		t.Fatalf("after pending sync expiry: %s", s)
	}
}

func TestProtocolTypeAndAssignmentErrors(t *testing.T) {
	h := newHarness(t)
	r := h.joinWait("g", joinOpts{version: 3})
	m := r.memberID
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version, req.Group, req.MemberID, req.Generation = 5, "g", m, 1
	req.Protocol = kmsg.StringPtr("roundrobin")
	var got *syncResult
	h.c.syncGroup(req, func(r syncResult) { got = &r })
	if got == nil || got.err != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("wrong protocol: %+v", got)
	}
	h.log.appendErr = ErrNotLeader
	s := h.sync("g", m, 1, map[string]string{m: "x"})
	if r := s.get(); r == nil || r.err != kerr.NotCoordinator.Code {
		t.Fatalf("failed store: %+v", r)
	}
	if st := h.state("g"); st != "PreparingRebalance" {
		t.Fatalf("after a failed store the group rebalances: %s", st)
	}
}

// TestInitialRebalanceDelayExtends: members arriving during the initial
// delay extend it (by the delay, up to the rebalance timeout), so that a
// group starting up forms in one generation.
func TestInitialRebalanceDelayExtends(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
	j1 := h.join("g", joinOpts{version: 3, rebalance: 10000})
	h.clock.Advance(2 * time.Second)
	j2 := h.join("g", joinOpts{version: 3, rebalance: 10000})
	h.clock.Advance(1 * time.Second) // the first delay ends; a member came: wait again
	if j1.get() != nil || j2.get() != nil {
		t.Fatal("completed although a member joined during the delay")
	}
	h.clock.Advance(3 * time.Second)
	r1, r2 := h.joined(j1), h.joined(j2)
	if r1.generation != 1 || r2.generation != 1 || len(r1.members)+len(r2.members) != 2 {
		t.Fatalf("one generation with both members expected: %+v / %+v", r1, r2)
	}
}

package group

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// State is a group's state in the classic protocol.
type State int8

// Group states, as Kafka names them. The legal transitions are:
//
//	Empty               -> PreparingRebalance, Dead
//	PreparingRebalance  -> CompletingRebalance, Empty, Dead
//	CompletingRebalance -> PreparingRebalance, Stable, Dead
//	Stable              -> PreparingRebalance, Dead
//	Dead                -> Dead
const (
	// Empty: no members; the group may still hold committed offsets.
	Empty State = iota
	// PreparingRebalance: waiting for the members to (re)join.
	PreparingRebalance
	// CompletingRebalance: joined; waiting for the leader's assignment (SyncGroup).
	CompletingRebalance
	// Stable: every member has its assignment and heartbeats.
	Stable
	// Dead: removed (deleted, expired or unloaded); a new group of the same name may exist.
	Dead
)

var stateNames = [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}

// String is Kafka's name of the state.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "Unknown"
}

// validPrevious lists the states each state may be entered from.
var validPrevious = map[State][]State{
	Empty:               {PreparingRebalance},
	PreparingRebalance:  {Stable, CompletingRebalance, Empty},
	CompletingRebalance: {PreparingRebalance},
	Stable:              {CompletingRebalance},
	Dead:                {Stable, PreparingRebalance, CompletingRebalance, Empty, Dead},
}

func canTransition(from, to State) bool {
	for _, s := range validPrevious[to] {
		if s == from {
			return true
		}
	}
	return false
}

// topicPartition names a partition whose offset a group commits.
type topicPartition struct {
	topic     string
	partition int32
}

// offsetEntry is a committed offset.
type offsetEntry struct {
	offset      int64
	leaderEpoch int32 // -1 if unknown
	metadata    string
	commitTime  int64 // ms
	expireTime  int64 // ms; -1 unless the commit asked for its own retention (OffsetCommit v2-v4)
	// recordOffset is the log offset of the record holding the entry, so that
	// completions arriving out of order never replace a newer entry.
	recordOffset int64
}

// group is one consumer group. Every field is guarded by mu.
type group struct {
	name  string
	shard *shard

	mu         sync.Mutex
	state      State
	stateTime  time.Time // when state was entered; zero if unknown (loaded from old records)
	generation int32
	// protocolType is set by the first member to join and kept while the
	// group is Empty; "" for groups used only to store offsets.
	protocolType string
	protocol     string // selected protocol of the current generation; "" if none
	leader       string // member id of the leader; "" if none

	members     []*member // in join order
	byID        map[string]*member
	static      map[string]string // group.instance.id -> member id
	pending     map[string]Timer  // member ids handed out with MEMBER_ID_REQUIRED -> expiry
	pendingSync map[string]bool   // members that have not sent SyncGroup this generation
	protoCount  map[string]int    // protocol name -> members supporting it
	numAwaiting int               // members with a joinWaiter
	subscribed  map[string]bool   // topics the members consume; nil if unknown
	join        *delayedJoin      // the rebalance's pending completion
	syncTimer   Timer             // pending-sync expiry
	syncToken   uint64            // identifies the current syncTimer
	offsets     map[topicPartition]offsetEntry
	inflight    map[topicPartition]map[int64]bool // record offsets of commits appended, not yet durable
	// newMemberAdded extends the initial rebalance delay of a new group.
	newMemberAdded bool
	tokens         uint64 // source of timer tokens
}

func newGroup(name string, sh *shard, now time.Time) *group {
	return &group{name: name, shard: sh, state: Empty, stateTime: now,
		byID: map[string]*member{}, static: map[string]string{}, pending: map[string]Timer{},
		pendingSync: map[string]bool{}, protoCount: map[string]int{},
		offsets: map[topicPartition]offsetEntry{}, inflight: map[topicPartition]map[int64]bool{}}
}

func (g *group) nextToken() uint64 {
	g.tokens++
	return g.tokens
}

// transition moves the group to state to. An illegal transition is a bug;
// it is reported by the caller's logger through ok=false and still applied
// so that the group cannot get stuck.
func (g *group) transition(to State, now time.Time) (ok bool) {
	ok = canTransition(g.state, to)
	g.state, g.stateTime = to, now
	return ok
}

// canRebalance reports whether a rebalance may start now.
func (g *group) canRebalance() bool { return canTransition(g.state, PreparingRebalance) }

// supportsProtocols reports whether a member with these protocols may join:
// into an Empty group any non-empty set of a non-empty type, otherwise the
// group's type and at least one protocol every member supports.
func (g *group) supportsProtocols(protocolType string, ps []protocol) bool {
	if g.state == Empty {
		return protocolType != "" && len(ps) > 0
	}
	if g.protocolType != protocolType {
		return false
	}
	for _, p := range ps {
		if g.protoCount[p.name] == len(g.members) {
			return true
		}
	}
	return false
}

// candidates returns the protocols every member supports.
func (g *group) candidates() map[string]bool {
	out := map[string]bool{}
	for name, n := range g.protoCount {
		if n == len(g.members) {
			out[name] = true
		}
	}
	return out
}

// selectProtocol chooses the protocol of the next generation: every member
// votes for its most preferred protocol among those all members support; the
// most votes win, ties going to the protocol the leader (else the earliest
// member) prefers. It returns "" for a group without members.
func (g *group) selectProtocol() string {
	candidates := g.candidates()
	votes := map[string]int{}
	for _, m := range g.members {
		if v := m.vote(candidates); v != "" {
			votes[v]++
		}
	}
	best, bestVotes := "", 0
	consider := func(m *member) {
		for _, p := range m.protocols {
			if n := votes[p.name]; n > bestVotes {
				best, bestVotes = p.name, n
			}
		}
	}
	if l := g.byID[g.leader]; l != nil {
		consider(l)
	}
	for _, m := range g.members {
		consider(m)
	}
	return best
}

// add adds a member, making it the leader of a group without one. waiter
// (may be nil) receives the JoinGroup result.
func (g *group) add(m *member, waiter func(joinResult)) {
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	if g.leader == "" {
		g.leader = m.id
	}
	g.members = append(g.members, m)
	g.byID[m.id] = m
	for _, p := range m.protocols {
		g.protoCount[p.name]++
	}
	m.joinWaiter = waiter
	if waiter != nil {
		g.numAwaiting++
	}
	g.dropPending(m.id)
}

// remove removes a member (without answering its waiters), passing the
// leadership on to the earliest remaining member.
func (g *group) remove(id string) {
	if m := g.byID[id]; m != nil {
		for _, p := range m.protocols {
			if g.protoCount[p.name]--; g.protoCount[p.name] <= 0 {
				delete(g.protoCount, p.name)
			}
		}
		if m.joinWaiter != nil {
			g.numAwaiting--
			m.joinWaiter = nil
		}
		if m.instanceID != nil && g.static[*m.instanceID] == id {
			delete(g.static, *m.instanceID)
		}
		if m.hb != nil {
			m.hb.Stop()
			m.hb = nil
		}
		delete(g.byID, id)
		for i, x := range g.members {
			if x == m {
				g.members = append(g.members[:i:i], g.members[i+1:]...)
				break
			}
		}
	}
	if g.leader == id {
		g.leader = ""
		if len(g.members) > 0 {
			g.leader = g.members[0].id
		}
	}
	g.dropPending(id)
	delete(g.pendingSync, id)
}

// isPending reports whether id was handed out with MEMBER_ID_REQUIRED and
// has not joined yet.
func (g *group) isPending(id string) bool {
	_, ok := g.pending[id]
	return ok
}

// dropPending forgets a pending member id.
func (g *group) dropPending(id string) {
	if t, ok := g.pending[id]; ok {
		t.Stop()
		delete(g.pending, id)
	}
}

// updateMember replaces a member's protocols and timeouts and its JoinGroup waiter.
func (g *group) updateMember(m *member, ps []protocol, rebalanceTimeout, sessionTimeout int32, waiter func(joinResult)) {
	for _, p := range m.protocols {
		if g.protoCount[p.name]--; g.protoCount[p.name] <= 0 {
			delete(g.protoCount, p.name)
		}
	}
	m.protocols = ps
	for _, p := range ps {
		g.protoCount[p.name]++
	}
	m.rebalanceTimeout, m.sessionTimeout = rebalanceTimeout, sessionTimeout
	if m.joinWaiter != nil {
		// A retried JoinGroup replaces one still waiting; answer the old one.
		old := m.joinWaiter
		m.joinWaiter = nil
		g.numAwaiting--
		old(errJoin(m.id, kerrRebalanceInProgress))
	}
	m.joinWaiter = waiter
	if waiter != nil {
		g.numAwaiting++
	}
}

// replaceStatic gives a static member a new member id, fencing requests of
// the old id that are waiting.
func (g *group) replaceStatic(instanceID, oldID, newID string) *member {
	m := g.byID[oldID]
	g.invokeJoin(m, errJoin(oldID, kerrFencedInstanceID))
	g.invokeSync(m, syncResult{err: kerrFencedInstanceID})
	delete(g.byID, oldID)
	m.id = newID
	g.byID[newID] = m
	if g.leader == oldID {
		g.leader = newID
	}
	g.static[instanceID] = newID
	return m
}

// invokeJoin answers a member's waiting JoinGroup, if any.
func (g *group) invokeJoin(m *member, r joinResult) bool {
	if m.joinWaiter == nil {
		return false
	}
	w := m.joinWaiter
	m.joinWaiter = nil
	g.numAwaiting--
	w(r)
	return true
}

// invokeSync answers a member's waiting SyncGroup, if any.
func (g *group) invokeSync(m *member, r syncResult) bool {
	if m.syncWaiter == nil {
		return false
	}
	w := m.syncWaiter
	m.syncWaiter = nil
	w(r)
	return true
}

// allJoined reports whether every member and no pending member has (re)joined.
func (g *group) allJoined() bool {
	return g.numAwaiting == len(g.members) && len(g.pending) == 0
}

// rebalanceTimeout is the largest rebalance timeout of the members.
func (g *group) rebalanceTimeout() time.Duration {
	var ms int32
	for _, m := range g.members {
		ms = max(ms, m.rebalanceTimeout)
	}
	return time.Duration(ms) * time.Millisecond
}

// validateMember checks that memberID is a member and, for a static member,
// that it is the instance's current member id.
func (g *group) validateMember(memberID string, instanceID *string) int16 {
	if instanceID != nil {
		cur, ok := g.static[*instanceID]
		switch {
		case !ok:
			return kerrUnknownMemberID
		case cur != memberID:
			return kerrFencedInstanceID
		}
		return 0
	}
	if g.byID[memberID] == nil {
		return kerrUnknownMemberID
	}
	return 0
}

// memberMetadata is the member list the leader receives in its JoinGroup response.
func (g *group) memberMetadata() []kmsg.JoinGroupResponseMember {
	out := make([]kmsg.JoinGroupResponseMember, 0, len(g.members))
	for _, m := range g.members {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID, jm.InstanceID, jm.ProtocolMetadata = m.id, m.instanceID, m.metadata(g.protocol)
		out = append(out, jm)
	}
	return out
}

// computeSubscribed derives the topics a consumer group's members subscribe
// to from their subscriptions (the v0 prefix of the consumer protocol,
// which every version starts with); nil when unknown.
func (g *group) computeSubscribed() {
	g.subscribed = nil
	if g.protocolType != consumerProtocolType {
		return
	}
	if len(g.members) == 0 {
		g.subscribed = map[string]bool{}
		return
	}
	if g.protocol == "" {
		return
	}
	topics := map[string]bool{}
	for _, m := range g.members {
		ts, ok := subscriptionTopics(m.metadata(g.protocol))
		if !ok {
			return
		}
		for _, t := range ts {
			topics[t] = true
		}
	}
	g.subscribed = topics
}

// isSubscribed reports whether members may consume topic (true when unknown).
func (g *group) isSubscribed(topic string) bool {
	return g.subscribed == nil || g.subscribed[topic]
}

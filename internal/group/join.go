package group

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Error codes used throughout the package.
var (
	kerrNotCoordinator          = kerr.NotCoordinator.Code
	kerrCoordinatorNotAvailable = kerr.CoordinatorNotAvailable.Code
	kerrLoadInProgress          = kerr.CoordinatorLoadInProgress.Code
	kerrInvalidGroupID          = kerr.InvalidGroupID.Code
	kerrUnknownMemberID         = kerr.UnknownMemberID.Code
	kerrIllegalGeneration       = kerr.IllegalGeneration.Code
	kerrRebalanceInProgress     = kerr.RebalanceInProgress.Code
	kerrFencedInstanceID        = kerr.FencedInstanceID.Code
	kerrInconsistentProtocol    = kerr.InconsistentGroupProtocol.Code
	kerrUnknownServerError      = kerr.UnknownServerError.Code
)

// Client identifies where a JoinGroup came from, for DescribeGroups.
type Client struct {
	ID   string // the request header's client id
	Host string // the client's address
}

// joinResult is the answer to a JoinGroup.
type joinResult struct {
	err          int16
	memberID     string
	generation   int32
	protocolType *string
	protocol     *string
	leader       string
	skipAssign   bool
	members      []kmsg.JoinGroupResponseMember
}

func errJoin(memberID string, code int16) joinResult {
	return joinResult{err: code, memberID: memberID, generation: -1}
}

// joinRequest is a decoded JoinGroup.
type joinRequest struct {
	version          int16
	memberID         string
	instanceID       *string
	client           Client
	rebalanceTimeout int32
	sessionTimeout   int32
	protocolType     string
	protocols        []protocol
	reason           string
}

// delayedJoin is the pending completion of a rebalance's join phase (Kafka's
// DelayedJoin and InitialDelayedJoin).
type delayedJoin struct {
	timer     Timer
	token     uint64
	initial   bool          // the first rebalance of an Empty group: wait the whole delay
	delay     time.Duration // this wait
	remaining time.Duration // how much longer an initial join may be extended
}

// JoinGroup adds or re-registers a member and returns a function that
// waits for the rebalance to complete and returns the response. The wait
// ends early, returning nil, when ctx ends (the connection closed).
func (c *Coordinator) JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest, client Client) func() *kmsg.JoinGroupResponse {
	ch := make(chan joinResult, 1)
	c.joinGroup(req, client, func(r joinResult) {
		select {
		case ch <- r:
		default: // answered already; never block under the group lock
		}
	})
	return func() *kmsg.JoinGroupResponse {
		select {
		case r := <-ch:
			return r.response(req)
		case <-ctx.Done():
			return nil
		}
	}
}

func (r joinResult) response(req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.ErrorCode, resp.MemberID, resp.Generation = r.err, r.memberID, r.generation
	resp.ProtocolType, resp.Protocol, resp.LeaderID = r.protocolType, r.protocol, r.leader
	resp.SkipAssignment, resp.Members = r.skipAssign, r.members
	if resp.Members == nil {
		resp.Members = []kmsg.JoinGroupResponseMember{}
	}
	return resp
}

func (c *Coordinator) joinGroup(req *kmsg.JoinGroupRequest, client Client, respond func(joinResult)) {
	j := joinRequest{version: req.Version, memberID: req.MemberID, instanceID: req.InstanceID, client: client,
		rebalanceTimeout: req.RebalanceTimeoutMillis, sessionTimeout: req.SessionTimeoutMillis, protocolType: req.ProtocolType}
	if req.Version == 0 {
		j.rebalanceTimeout = req.SessionTimeoutMillis
	}
	if req.Reason != nil {
		j.reason = *req.Reason
	}
	for _, p := range req.Protocols {
		j.protocols = append(j.protocols, protocol{p.Name, p.Metadata})
	}
	if req.Group == "" || !fits(req.Group) {
		respond(errJoin(j.memberID, kerrInvalidGroupID))
		return
	}
	if !fits(j.protocolType, j.client.ID+memberIDSuffix) || j.instanceID != nil && !fits(*j.instanceID+memberIDSuffix) {
		respond(errJoin(j.memberID, kerr.InvalidRequest.Code))
		return
	}
	for _, p := range j.protocols {
		if !fits(p.name) {
			respond(errJoin(j.memberID, kerr.InvalidRequest.Code))
			return
		}
	}
	sh, code := c.shardFor(req.Group)
	if code != 0 {
		respond(errJoin(j.memberID, code))
		return
	}
	session := time.Duration(j.sessionTimeout) * time.Millisecond
	if session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout {
		respond(errJoin(j.memberID, kerr.InvalidSessionTimeout.Code))
		return
	}
	// A group is created by the join of an unknown member; a member id for a
	// group that does not exist is unknown.
	unknown := j.memberID == ""
	g := sh.getOrCreate(req.Group, unknown, c.clock.Now())
	if g == nil {
		respond(errJoin(j.memberID, kerrUnknownMemberID))
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !c.acceptJoiningMember(g, j.memberID):
		if m := g.byID[j.memberID]; m != nil {
			c.removeMember(g, m, "the group is full")
		} else {
			g.dropPending(j.memberID)
		}
		respond(errJoin("", kerr.GroupMaxSizeReached.Code))
	case unknown:
		c.joinNewMember(g, j, respond)
	default:
		c.joinCurrentMember(g, j, respond)
	}
	if g.state == PreparingRebalance {
		c.tryCompleteJoin(g)
	}
}

// acceptJoiningMember enforces group.max.size.
func (c *Coordinator) acceptJoiningMember(g *group, id string) bool {
	switch g.state {
	case Empty, Dead:
		return true
	case PreparingRebalance:
		m := g.byID[id]
		return m != nil && m.joinWaiter != nil || g.numAwaiting < c.cfg.MaxGroupSize
	default:
		return g.byID[id] != nil || len(g.members) < c.cfg.MaxGroupSize
	}
}

func (c *Coordinator) joinNewMember(g *group, j joinRequest, respond func(joinResult)) {
	switch {
	case g.state == Dead:
		respond(errJoin(j.memberID, kerrCoordinatorNotAvailable))
		return
	case !g.supportsProtocols(j.protocolType, j.protocols):
		respond(errJoin(j.memberID, kerrInconsistentProtocol))
		return
	}
	id := newMemberID(j.client.ID, j.instanceID)
	if j.instanceID != nil {
		if old, ok := g.static[*j.instanceID]; ok {
			c.replaceStaticMember(g, old, id, j, respond)
		} else {
			c.addMemberAndRebalance(g, id, j, respond)
		}
		return
	}
	if j.version >= 4 {
		// KIP-394: hand out the id and have the member join again with it,
		// so that a member that retries after a lost response is not added twice.
		g.pending[id] = c.clock.AfterFunc(time.Duration(j.sessionTimeout)*time.Millisecond, func() {
			c.run(func() { c.expirePending(g, id) })
		})
		respond(errJoin(id, kerr.MemberIDRequired.Code))
		return
	}
	c.addMemberAndRebalance(g, id, j, respond)
}

// expirePending removes a pending member id whose member never joined with it.
func (c *Coordinator) expirePending(g *group, id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead {
		return
	}
	if !g.isPending(id) {
		return
	}
	delete(g.pending, id)
	c.logger.Info("pending member expired", "group", g.name, "member", id)
	if g.state == PreparingRebalance {
		c.tryCompleteJoin(g)
	}
}

func (c *Coordinator) joinCurrentMember(g *group, j joinRequest, respond func(joinResult)) {
	switch {
	case g.state == Dead:
		respond(errJoin(j.memberID, kerrCoordinatorNotAvailable))
		return
	case !g.supportsProtocols(j.protocolType, j.protocols):
		respond(errJoin(j.memberID, kerrInconsistentProtocol))
		return
	}
	if g.isPending(j.memberID) {
		if j.instanceID != nil {
			// Pending ids are only handed to dynamic members.
			respond(errJoin(j.memberID, kerrUnknownMemberID))
			return
		}
		c.addMemberAndRebalance(g, j.memberID, j, respond)
		return
	}
	if code := g.validateMember(j.memberID, j.instanceID); code != 0 {
		respond(errJoin(j.memberID, code))
		return
	}
	m := g.byID[j.memberID]
	current := func(withMembers bool) joinResult {
		r := joinResult{memberID: m.id, generation: g.generation, protocolType: strPtr(g.protocolType),
			protocol: strPtr(g.protocol), leader: g.leader}
		if withMembers {
			r.members = g.memberMetadata()
		}
		return r
	}
	switch g.state {
	case PreparingRebalance:
		c.updateMemberAndRebalance(g, m, j, respond, "member rejoined during PreparingRebalance")
	case CompletingRebalance:
		if m.matches(j.protocols) {
			// The member lost its JoinGroup response: repeat it.
			respond(current(g.leader == m.id))
			return
		}
		c.updateMemberAndRebalance(g, m, j, respond, "member changed its metadata during CompletingRebalance")
	case Stable:
		switch {
		case g.leader == m.id:
			// A leader's JoinGroup forces a rebalance: it lets the leader react
			// to changes the member metadata does not show (e.g. new partitions).
			c.updateMemberAndRebalance(g, m, j, respond, "leader rejoined")
		case !m.matches(j.protocols):
			c.updateMemberAndRebalance(g, m, j, respond, "member changed its metadata")
		default:
			respond(current(false))
		}
	default: // Empty: the member is from a generation that is gone.
		respond(errJoin(j.memberID, kerrUnknownMemberID))
	}
}

func (c *Coordinator) addMemberAndRebalance(g *group, id string, j joinRequest, respond func(joinResult)) {
	m := &member{id: id, instanceID: j.instanceID, clientID: j.client.ID, clientHost: j.client.Host,
		rebalanceTimeout: j.rebalanceTimeout, sessionTimeout: j.sessionTimeout,
		protocolType: j.protocolType, protocols: j.protocols, isNew: true}
	if g.state == PreparingRebalance && g.generation == 0 {
		g.newMemberAdded = true
	}
	g.add(m, respond)
	// A new member cannot heartbeat before its first JoinGroup returns; bound
	// how long it may wait instead, so that members whose clients went away
	// do not pile up.
	c.scheduleHeartbeat(g, m, c.cfg.NewMemberJoinTimeout)
	c.maybePrepareRebalance(g, "new member "+id+" joined"+reasonSuffix(j.reason))
}

func (c *Coordinator) updateMemberAndRebalance(g *group, m *member, j joinRequest, respond func(joinResult), reason string) {
	g.updateMember(m, j.protocols, j.rebalanceTimeout, j.sessionTimeout, respond)
	c.maybePrepareRebalance(g, reason+reasonSuffix(j.reason))
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (client reason: " + r + ")"
}

// replaceStaticMember handles the JoinGroup of a known group.instance.id
// with no member id: the instance restarted. It takes over the old member
// (fencing the old id). A Stable group keeps its assignment when the
// protocol would not change, so a restart does not cause a rebalance.
func (c *Coordinator) replaceStaticMember(g *group, oldID, newID string, j joinRequest, respond func(joinResult)) {
	currentLeader := g.leader
	m := g.replaceStatic(*j.instanceID, oldID, newID)
	c.scheduleHeartbeat(g, m, m.session())
	oldProtocols, oldRebalance, oldSession := m.protocols, m.rebalanceTimeout, m.sessionTimeout
	g.updateMember(m, j.protocols, j.rebalanceTimeout, j.sessionTimeout, respond)
	switch g.state {
	case Stable:
		if g.selectProtocol() != g.protocol {
			c.maybePrepareRebalance(g, "static member "+newID+" changed the group's protocol")
			return
		}
		assignment := map[string][]byte{}
		for _, x := range g.members {
			assignment[x.id] = x.assignment
		}
		gen := g.generation
		c.storeGroup(g, assignment, func(code int16) {
			if g.state != Stable || g.generation != gen || g.byID[newID] != m {
				return // a rebalance started meanwhile and answers the member
			}
			if code != 0 {
				c.logger.Warn("failed to store the group after a static member rejoined", "group", g.name, "err", kerr.ErrorForCode(code))
				g.updateMember(m, oldProtocols, oldRebalance, oldSession, nil)
				g.replaceStatic(*j.instanceID, newID, oldID)
				c.scheduleHeartbeat(g, m, m.session())
				respond(joinResult{err: code, generation: g.generation, protocolType: strPtr(g.protocolType),
					protocol: strPtr(g.protocol), leader: currentLeader})
				return
			}
			r := joinResult{memberID: newID, generation: g.generation, protocolType: strPtr(g.protocolType),
				protocol: strPtr(g.protocol), leader: currentLeader}
			if j.version >= 9 {
				// KIP-814: tell a returning leader it leads, but that it must
				// not compute an assignment while the group is Stable.
				r.leader = g.leader
				if g.leader == newID {
					r.skipAssign, r.members = true, g.memberMetadata()
				}
			}
			// Before v9 the old leader id is returned, so a restarted leader
			// does not think it leads and does not assign.
			g.invokeJoin(m, r)
		})
	case CompletingRebalance:
		// The leader may be assigning to the old id: start over.
		c.prepareRebalance(g, "static member "+newID+" replaced "+oldID+" during CompletingRebalance")
	}
	// PreparingRebalance: the member is now awaiting the join like the others.
}

// maybePrepareRebalance starts a rebalance unless one is being prepared.
func (c *Coordinator) maybePrepareRebalance(g *group, reason string) {
	if g.canRebalance() {
		c.prepareRebalance(g, reason)
	}
}

// prepareRebalance moves the group to PreparingRebalance and schedules the
// completion of the join phase: after group.initial.rebalance.delay.ms for
// an Empty group (extended while new members keep arriving, up to the
// rebalance timeout), else when every member has rejoined or the rebalance
// timeout passes.
func (c *Coordinator) prepareRebalance(g *group, reason string) {
	if g.state == CompletingRebalance {
		c.resetAndPropagateAssignmentError(g, kerrRebalanceInProgress)
	}
	c.stopSyncTimer(g)
	wasEmpty := g.state == Empty
	c.transition(g, PreparingRebalance)
	c.logger.Info("preparing to rebalance group", "group", g.name, "generation", g.generation, "members", len(g.members), "reason", reason)
	if wasEmpty {
		delay := c.cfg.InitialRebalanceDelay
		c.scheduleJoin(g, &delayedJoin{initial: true, delay: delay, remaining: max(g.rebalanceTimeout()-delay, 0)})
		return
	}
	c.scheduleJoin(g, &delayedJoin{delay: g.rebalanceTimeout()})
	c.tryCompleteJoin(g)
}

// scheduleJoin replaces the group's pending join completion.
func (c *Coordinator) scheduleJoin(g *group, dj *delayedJoin) {
	if g.join != nil {
		g.join.timer.Stop()
	}
	dj.token = g.nextToken()
	token := dj.token
	dj.timer = c.clock.AfterFunc(dj.delay, func() { c.run(func() { c.onJoinTimer(g, token) }) })
	g.join = dj
}

// onJoinTimer runs when a join phase's wait ends.
func (c *Coordinator) onJoinTimer(g *group, token uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	dj := g.join
	if dj == nil || dj.token != token {
		return
	}
	if dj.initial && g.newMemberAdded && dj.remaining > 0 {
		g.newMemberAdded = false
		delay := min(c.cfg.InitialRebalanceDelay, dj.remaining)
		c.scheduleJoin(g, &delayedJoin{initial: true, delay: delay, remaining: max(dj.remaining-dj.delay, 0)})
		return
	}
	g.join = nil
	c.completeJoin(g)
}

// tryCompleteJoin completes the join phase early once every member has
// rejoined (never during the initial delay).
func (c *Coordinator) tryCompleteJoin(g *group) {
	if g.join == nil || g.join.initial || !g.allJoined() {
		return
	}
	g.join.timer.Stop()
	g.join = nil
	c.completeJoin(g)
}

// completeJoin ends the join phase: dynamic members that did not rejoin are
// removed, the generation advances, and every member gets its JoinGroup
// response (the leader with the member list to assign).
func (c *Coordinator) completeJoin(g *group) {
	for _, m := range append([]*member(nil), g.members...) {
		if m.joinWaiter == nil && m.instanceID == nil {
			c.logger.Info("removing member that did not rejoin", "group", g.name, "member", m.id)
			g.remove(m.id)
		}
	}
	if g.state == Dead {
		return
	}
	if !c.electJoinedLeader(g) && len(g.members) > 0 {
		// Only static members that have not rejoined remain: wait for them
		// to rejoin or for their sessions to expire.
		c.logger.Warn("no member rejoined the group; waiting again", "group", g.name)
		c.scheduleJoin(g, &delayedJoin{delay: g.rebalanceTimeout()})
		return
	}
	g.generation++
	g.protocol = g.selectProtocol()
	g.computeSubscribed()
	g.pendingSync = map[string]bool{}
	if len(g.members) == 0 {
		c.transition(g, Empty)
		c.logger.Info("group is empty", "group", g.name, "generation", g.generation)
		c.storeGroup(g, nil, func(code int16) {
			if code != 0 {
				c.logger.Warn("failed to store empty group", "group", g.name, "err", kerr.ErrorForCode(code))
			}
		})
		return
	}
	c.transition(g, CompletingRebalance)
	c.logger.Info("group joined", "group", g.name, "generation", g.generation, "members", len(g.members), "protocol", g.protocol, "leader", g.leader)
	for _, m := range g.members {
		r := joinResult{memberID: m.id, generation: g.generation, protocolType: strPtr(g.protocolType),
			protocol: strPtr(g.protocol), leader: g.leader}
		if m.id == g.leader {
			r.members = g.memberMetadata()
		}
		g.invokeJoin(m, r)
		c.scheduleHeartbeat(g, m, m.session())
		m.isNew = false
		g.pendingSync[m.id] = true
	}
	c.schedulePendingSync(g)
}

// electJoinedLeader makes sure the leader is a member that rejoined. It
// reports false when the group has no leader or no member rejoined.
func (c *Coordinator) electJoinedLeader(g *group) bool {
	l := g.byID[g.leader]
	if l == nil {
		return false
	}
	if l.joinWaiter != nil {
		return true
	}
	for _, m := range g.members {
		if m.joinWaiter != nil {
			g.leader = m.id
			return true
		}
	}
	return false
}

// transition changes a group's state, logging a transition that should not happen.
func (c *Coordinator) transition(g *group, to State) {
	from := g.state
	if !g.transition(to, c.clock.Now()) {
		c.logger.Error("illegal group state transition", "group", g.name, "from", from.String(), "to", to.String())
	}
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

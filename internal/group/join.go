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
		// Copied: the request's bytes alias its whole frame.
		j.protocols = append(j.protocols, protocol{p.Name, append([]byte{}, p.Metadata...)})
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
				// Undo the replacement: the old member id stays the instance's.
				c.logger.Warn("failed to store the group after a static member rejoined", "group", g.name, "err", kerr.ErrorForCode(code))
				g.invokeJoin(m, joinResult{err: code, generation: g.generation, protocolType: strPtr(g.protocolType),
					protocol: strPtr(g.protocol), leader: currentLeader})
				g.updateMember(m, oldProtocols, oldRebalance, oldSession, nil)
				g.replaceStatic(*j.instanceID, newID, oldID)
				c.scheduleHeartbeat(g, m, m.session())
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

package group

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// syncResult is the answer to a SyncGroup.
type syncResult struct {
	err          int16
	protocolType *string
	protocol     *string
	assignment   []byte
}

// SyncGroup handles a member's SyncGroup (the leader's carries the
// assignment) and returns a function that waits for the member's assignment
// and returns the response, or nil when ctx ends first.
func (c *Coordinator) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) func() *kmsg.SyncGroupResponse {
	ch := make(chan syncResult, 1)
	c.syncGroup(req, func(r syncResult) {
		select {
		case ch <- r:
		default:
		}
	})
	return func() *kmsg.SyncGroupResponse {
		select {
		case r := <-ch:
			resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode, resp.ProtocolType, resp.Protocol = r.err, r.protocolType, r.protocol
			resp.MemberAssignment = r.assignment
			if resp.MemberAssignment == nil {
				resp.MemberAssignment = []byte{}
			}
			return resp
		case <-ctx.Done():
			return nil
		}
	}
}

func (c *Coordinator) syncGroup(req *kmsg.SyncGroupRequest, respond func(syncResult)) {
	fail := func(code int16) { respond(syncResult{err: code}) }
	if req.Group == "" {
		fail(kerrInvalidGroupID)
		return
	}
	sh, code := c.shardFor(req.Group)
	if code == kerrLoadInProgress {
		// The rebalance's state is lost with the load: have the member rejoin
		// (older clients do not expect COORDINATOR_LOAD_IN_PROGRESS here).
		code = kerrRebalanceInProgress
	}
	if code != 0 {
		fail(code)
		return
	}
	g := sh.get(req.Group)
	if g == nil {
		fail(kerrUnknownMemberID)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.state == Dead:
		fail(kerrCoordinatorNotAvailable)
		return
	case g.validateMember(req.MemberID, req.InstanceID) != 0:
		fail(g.validateMember(req.MemberID, req.InstanceID))
		return
	case req.Generation != g.generation:
		fail(kerrIllegalGeneration)
		return
	case req.ProtocolType != nil && *req.ProtocolType != g.protocolType,
		req.Protocol != nil && *req.Protocol != g.protocol:
		fail(kerrInconsistentProtocol)
		return
	}
	m := g.byID[req.MemberID]
	switch g.state {
	case Empty:
		fail(kerrUnknownMemberID)
	case PreparingRebalance:
		fail(kerrRebalanceInProgress)
	case CompletingRebalance:
		if m.syncWaiter != nil {
			g.invokeSync(m, syncResult{err: kerrRebalanceInProgress}) // replaced by a retry
		}
		m.syncWaiter = respond
		c.removePendingSync(g, m.id)
		if m.id != g.leader {
			return
		}
		// Members the leader left out get an empty assignment.
		assignment := make(map[string][]byte, len(g.members))
		for _, x := range g.members {
			assignment[x.id] = []byte{}
		}
		for _, a := range req.GroupAssignment {
			if _, ok := assignment[a.MemberID]; ok {
				// Copied: the request's bytes alias its whole frame.
				assignment[a.MemberID] = append([]byte{}, a.MemberAssignment...)
			}
		}
		gen := g.generation
		c.storeGroup(g, assignment, func(code int16) {
			if g.state != CompletingRebalance || g.generation != gen {
				return // another rebalance started meanwhile
			}
			if code != 0 {
				c.resetAndPropagateAssignmentError(g, code)
				c.maybePrepareRebalance(g, "storing the assignment failed: "+kerr.ErrorForCode(code).Error())
				return
			}
			for _, x := range g.members {
				x.assignment = assignment[x.id]
			}
			c.propagateAssignment(g, 0)
			c.transition(g, Stable)
			c.logger.Info("group stable", "group", g.name, "generation", g.generation, "members", len(g.members))
		})
	case Stable:
		c.removePendingSync(g, m.id)
		respond(syncResult{protocolType: strPtr(g.protocolType), protocol: strPtr(g.protocol), assignment: m.assignment})
		c.scheduleHeartbeat(g, m, m.session())
	}
}

// propagateAssignment answers every waiting SyncGroup with the member's
// assignment (or code) and restarts the member's session timer.
func (c *Coordinator) propagateAssignment(g *group, code int16) {
	for _, m := range g.members {
		r := syncResult{err: code}
		if code == 0 {
			r = syncResult{protocolType: strPtr(g.protocolType), protocol: strPtr(g.protocol), assignment: m.assignment}
		}
		if g.invokeSync(m, r) {
			// A session that expired while the member waited was ignored;
			// expect the next heartbeat from now on.
			c.scheduleHeartbeat(g, m, m.session())
		}
	}
}

// resetAndPropagateAssignmentError clears every assignment and answers the
// waiting SyncGroups with code.
func (c *Coordinator) resetAndPropagateAssignmentError(g *group, code int16) {
	for _, m := range g.members {
		m.assignment = nil
	}
	c.propagateAssignment(g, code)
}

// schedulePendingSync removes the members that have not sent SyncGroup
// within the rebalance timeout after the join phase completed.
func (c *Coordinator) schedulePendingSync(g *group) {
	c.stopSyncTimer(g)
	token := g.nextToken()
	g.syncToken = token
	gen := g.generation
	g.syncTimer = c.clock.AfterFunc(g.rebalanceTimeout(), func() {
		c.run(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.syncToken != token || g.generation != gen {
				return
			}
			g.syncTimer = nil
			if g.state != CompletingRebalance && g.state != Stable {
				return
			}
			var gone []string
			for id := range g.pendingSync {
				gone = append(gone, id)
			}
			for _, id := range gone {
				if m := g.byID[id]; m != nil {
					c.removeMember(g, m, "no SyncGroup within the rebalance timeout")
				}
			}
		})
	})
}

func (c *Coordinator) stopSyncTimer(g *group) {
	if g.syncTimer != nil {
		g.syncTimer.Stop()
		g.syncTimer = nil
	}
	g.syncToken = 0
}

func (c *Coordinator) removePendingSync(g *group, id string) {
	delete(g.pendingSync, id)
	if len(g.pendingSync) == 0 && (g.state == CompletingRebalance || g.state == Stable) {
		c.stopSyncTimer(g)
	}
}

// Heartbeat keeps a member's session alive and tells it about rebalances.
func (c *Coordinator) Heartbeat(req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	resp.ErrorCode = c.heartbeat(req)
	return resp
}

func (c *Coordinator) heartbeat(req *kmsg.HeartbeatRequest) int16 {
	if req.Group == "" {
		return kerrInvalidGroupID
	}
	sh, code := c.shardFor(req.Group)
	if code == kerrLoadInProgress {
		return 0 // the group is loading: answer blindly
	}
	if code != 0 {
		return code
	}
	g := sh.get(req.Group)
	if g == nil {
		return kerrUnknownMemberID
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead {
		return kerrCoordinatorNotAvailable
	}
	if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
		return code
	}
	m := g.byID[req.MemberID]
	switch g.state {
	case Empty:
		return kerrUnknownMemberID
	case PreparingRebalance:
		c.scheduleHeartbeat(g, m, m.session())
		return kerrRebalanceInProgress
	default: // CompletingRebalance (a member may heartbeat once joined), Stable
		if req.Generation != g.generation {
			return kerrIllegalGeneration
		}
		c.scheduleHeartbeat(g, m, m.session())
		return 0
	}
}

// scheduleHeartbeat restarts a member's session timer.
func (c *Coordinator) scheduleHeartbeat(g *group, m *member, timeout time.Duration) {
	if m.hb != nil {
		m.hb.Stop()
	}
	token := g.nextToken()
	m.hbToken = token
	m.hb = c.clock.AfterFunc(timeout, func() { c.run(func() { c.onSessionExpired(g, m, token) }) })
}

// onSessionExpired removes a member whose session ended, unless it is
// waiting in a rebalance (then the rebalance's own timeouts apply).
func (c *Coordinator) onSessionExpired(g *group, m *member, token uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead || m.hbToken != token || g.byID[m.id] != m {
		return
	}
	m.hb = nil
	if !m.isNew && (m.joinWaiter != nil || m.syncWaiter != nil) {
		return
	}
	c.logger.Info("member session expired", "group", g.name, "member", m.id)
	c.removeMember(g, m, "session timeout of member "+m.id)
}

// removeMember removes a member, answering its waiting requests with
// UNKNOWN_MEMBER_ID, and rebalances the others.
func (c *Coordinator) removeMember(g *group, m *member, reason string) {
	g.invokeJoin(m, errJoin("", kerrUnknownMemberID))
	g.invokeSync(m, syncResult{err: kerrUnknownMemberID})
	g.remove(m.id)
	switch g.state {
	case Stable, CompletingRebalance:
		c.maybePrepareRebalance(g, reason)
	case PreparingRebalance:
		c.tryCompleteJoin(g)
	}
}

// LeaveGroup removes members (one before v3, a batch since).
func (c *Coordinator) LeaveGroup(req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	code, codes := c.leaveGroup(req.Group, leaving)
	if req.Version < 3 {
		if code == 0 && len(codes) == 1 {
			code = codes[0]
		}
		resp.ErrorCode = code
		return resp
	}
	resp.ErrorCode = code
	resp.Members = []kmsg.LeaveGroupResponseMember{}
	for i, lm := range leaving {
		if code != 0 {
			break
		}
		out := kmsg.NewLeaveGroupResponseMember()
		out.MemberID, out.InstanceID, out.ErrorCode = lm.MemberID, lm.InstanceID, codes[i]
		resp.Members = append(resp.Members, out)
	}
	return resp
}

func (c *Coordinator) leaveGroup(name string, leaving []kmsg.LeaveGroupRequestMember) (int16, []int16) {
	if name == "" {
		return kerrInvalidGroupID, nil
	}
	sh, code := c.shardFor(name)
	if code != 0 {
		return code, nil
	}
	codes := make([]int16, len(leaving))
	g := sh.get(name)
	if g == nil {
		for i := range codes {
			codes[i] = kerrUnknownMemberID
		}
		return 0, codes
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead {
		return kerrCoordinatorNotAvailable, nil
	}
	for i, lm := range leaving {
		reason := "member left the group"
		if lm.Reason != nil {
			reason += reasonSuffix(*lm.Reason)
		}
		switch {
		case lm.MemberID == "":
			// Admin removal of a static member by its instance id.
			id, ok := "", false
			if lm.InstanceID != nil {
				id, ok = g.static[*lm.InstanceID]
			}
			if !ok {
				codes[i] = kerrUnknownMemberID
				continue
			}
			c.removeMember(g, g.byID[id], reason)
		case g.isPending(lm.MemberID):
			g.dropPending(lm.MemberID)
			if g.state == PreparingRebalance {
				c.tryCompleteJoin(g)
			}
		default:
			if codes[i] = g.validateMember(lm.MemberID, lm.InstanceID); codes[i] == 0 {
				c.removeMember(g, g.byID[lm.MemberID], reason)
			}
		}
	}
	return 0, codes
}

// storeGroup appends the group's metadata record (with the given
// assignment) and calls done, with g.mu held, once it is durable or failed.
func (c *Coordinator) storeGroup(g *group, assignment map[string][]byte, done func(code int16)) {
	rec, err := groupRecord(g, assignment)
	var batch []byte
	if err == nil {
		batch, err = buildBatch(c.clock.Now(), []kv{rec})
	}
	if err != nil {
		c.logger.Error("encoding group metadata", "group", g.name, "err", err)
		done(kerrUnknownServerError)
		return
	}
	pos, err := c.log.Append(g.shard.partition, batch)
	if err != nil {
		done(storeGroupError(err))
		return
	}
	if !c.async(func() {
		err := c.log.WaitDurable(g.shard.partition, pos)
		g.mu.Lock()
		defer g.mu.Unlock()
		done(storeGroupError(err))
	}) {
		done(kerrNotCoordinator)
	}
}

// storeGroupError maps an append error of group metadata to its Kafka code.
func storeGroupError(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrTooLarge):
		return kerrUnknownServerError
	case errors.Is(err, ErrUnavailable):
		return kerrCoordinatorNotAvailable
	default:
		return kerrNotCoordinator
	}
}

// unloadGroup ends a group whose partition was unloaded: waiting requests
// get NOT_COORDINATOR and every timer stops.
func (c *Coordinator) unloadGroup(g *group) {
	for _, m := range g.members {
		g.invokeJoin(m, errJoin(m.id, kerrNotCoordinator))
		g.invokeSync(m, syncResult{err: kerrNotCoordinator})
		if m.hb != nil {
			m.hb.Stop()
			m.hb = nil
		}
	}
	c.killGroup(g)
}

// killGroup moves a group to Dead and stops its timers.
func (c *Coordinator) killGroup(g *group) {
	for id := range g.pending {
		g.dropPending(id)
	}
	if g.join != nil {
		g.join.timer.Stop()
		g.join = nil
	}
	c.stopSyncTimer(g)
	for _, m := range g.members {
		if m.hb != nil {
			m.hb.Stop()
			m.hb = nil
		}
	}
	c.transition(g, Dead)
}

package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// delayedJoin is the pending completion of a rebalance's join phase (Kafka's
// DelayedJoin and InitialDelayedJoin).
type delayedJoin struct {
	timer     Timer
	token     uint64
	initial   bool          // the first rebalance of an Empty group: wait the whole delay
	delay     time.Duration // this wait
	remaining time.Duration // how much longer an initial join may be extended
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

package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"strand/internal/metadata"
)

// liveness is the active controller's view of broker heartbeats. The
// active controller copies it into the log a few times per session timeout
// (BrokerHeartbeats records); a new active controller starts from that copy,
// so a broker's session counts from its last heartbeat the quorum heard of,
// not from the election, and a broker that died before a controller
// failover (or in it) is fenced about one session timeout after its death.
type liveness struct {
	mu       sync.Mutex
	lastSeen map[int32]time.Time
	shutdown map[int32]bool // brokers in controlled shutdown
}

func newLiveness() *liveness {
	return &liveness{lastSeen: map[int32]time.Time{}, shutdown: map[int32]bool{}}
}

// takeOver starts a term's view: each broker was last seen when the log
// says (a full session from now for a broker it says nothing about), but
// never less than grace before its session expires, so that live brokers
// have time to find the new controller.
// It returns how many brokers' times came from the log.
func (l *liveness) takeOver(img *metadata.Image, heard map[int32]heardFrom, now time.Time, session, grace time.Duration) (carried int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastSeen, l.shutdown = map[int32]time.Time{}, map[int32]bool{}
	floor := now.Add(grace - session)
	for _, b := range img.Brokers {
		at := now
		if h, ok := heard[b.ID]; ok && h.epoch == b.Epoch {
			at = h.at
			carried++
		}
		if at.Before(floor) {
			at = floor
		}
		l.lastSeen[b.ID] = at
	}
	return carried
}

// record returns the heartbeats of img's unfenced brokers as of now.
func (l *liveness) record(img *metadata.Image, now time.Time) *metadata.BrokerHeartbeatsRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := &metadata.BrokerHeartbeatsRecord{}
	for _, b := range img.Brokers {
		if t, ok := l.lastSeen[b.ID]; ok && !b.Fenced {
			rec.Brokers = append(rec.Brokers, metadata.BrokerHeartbeat{ID: b.ID, Epoch: b.Epoch, AgoMs: now.Sub(t).Milliseconds()})
		}
	}
	return rec
}

func (l *liveness) seen(id int32, now time.Time, shutdown bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastSeen[id] = now
	if shutdown {
		l.shutdown[id] = true
	}
}

func (l *liveness) registered(id int32, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastSeen[id] = now
	delete(l.shutdown, id)
}

func (l *liveness) inShutdown(id int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shutdown[id]
}

// expired returns the unfenced brokers not heard from since before deadline.
func (l *liveness) expired(img *metadata.Image, deadline time.Time) []metadata.Broker {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []metadata.Broker
	for _, b := range img.Brokers {
		if t, ok := l.lastSeen[b.ID]; !b.Fenced && (!ok || t.Before(deadline)) {
			out = append(out, b)
		}
	}
	return out
}

// leadership runs the active controller's duties (lead) for each stretch of
// this node being the Raft leader, driven by Raft's leadership notifications:
// a true while a term runs means leadership was lost and regained meanwhile,
// so the old term stops and a new one (with a new barrier) starts.
func (n *Node) leadership() {
	defer n.wg.Done()
	var term *leaderTerm
	defer func() { term.stop() }()
	for {
		select {
		case <-n.ctx.Done():
			return
		case leader := <-n.raft.LeaderCh():
			if term != nil {
				if !leader {
					n.logger.Info("no longer the active controller")
				}
				term.stop()
				term = nil
			}
			if leader {
				term = n.startTerm()
			}
		}
	}
}

// leaderTerm is one stretch of this node being the active controller.
type leaderTerm struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Node) startTerm() *leaderTerm {
	ctx, cancel := context.WithCancel(n.ctx)
	t := &leaderTerm{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		n.lead(ctx)
	}()
	return t
}

func (t *leaderTerm) stop() {
	if t != nil {
		t.cancel()
		<-t.done
	}
}

// takeOffice waits until a Raft barrier of the current term has applied
// every earlier entry, and returns the office of that term (nil if ctx ends
// or this node is not the leader).
func (n *Node) takeOffice(ctx context.Context) *office {
	for ctx.Err() == nil {
		term := n.raft.CurrentTerm()
		err := n.raft.Barrier(10 * time.Second).Error()
		if err == nil && n.raft.CurrentTerm() == term && n.raft.State() == raft.Leader {
			return &office{term: term, ctx: ctx}
		}
		if err == nil || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil
		}
		n.logger.Warn("controller barrier failed; retrying", "err", err)
		sleep(ctx, 100*time.Millisecond)
	}
	return nil
}

// lead is the active controller's work for one stretch of Raft leadership
// (until ctx ends): take office, then serve. It never gives up while ctx
// lives: a Raft leader that stopped serving would leave the cluster with no
// controller until the next election.
func (n *Node) lead(ctx context.Context) {
	for ctx.Err() == nil {
		if o := n.takeOffice(ctx); o != nil {
			n.serve(o)
		}
		// Leadership lost (Raft's notification will end ctx) or the term
		// changed under the office: try again shortly.
		sleep(ctx, 50*time.Millisecond)
	}
}

// serve runs one office: announce it, then fence brokers whose session
// expired, record heartbeats for a successor and, if enabled, restore
// preferred leaders. It returns when the office ends (ctx, or the Raft term
// moved on).
func (n *Node) serve(o *office) {
	ctx := o.ctx
	img := n.Image()
	carried := n.live.takeOver(img, n.fsm.lastHeard(), time.Now(), n.cfg.SessionTimeout, n.sessionGrace())
	n.logger.Info("controller term starting", "term", o.term, "brokers", len(img.Brokers), "sessions_carried", carried)
	n.setOffice(o)
	defer n.setOffice(nil)
	id := n.cfg.NodeID
	for {
		_, err := n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
			var recs []metadata.Record
			if img.ClusterID == "" {
				cid := newClusterID()
				recs = append(recs, metadata.Record{ClusterID: &cid})
				recs = append(recs, n.cfg.Bootstrap...) // e.g. --add-scram users
			}
			return append(recs, metadata.Record{Controller: &id}), nil
		})
		if err == nil {
			break
		}
		n.logger.Warn("taking office as controller", "err", err)
		if ctx.Err() != nil || n.raft.CurrentTerm() != o.term {
			return
		}
		sleep(ctx, 100*time.Millisecond)
	}
	n.logger.Info("became the active controller", "node", id, "term", o.term)
	tick := time.NewTicker(max(n.cfg.SessionTimeout/10, 20*time.Millisecond))
	defer tick.Stop()
	lastBalance, lastRecord := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n.raft.CurrentTerm() != o.term {
			n.logger.Info("controller term ended", "term", o.term)
			return
		}
		now := time.Now()
		for _, b := range n.live.expired(n.Image(), now.Add(-n.cfg.SessionTimeout)) {
			n.logger.Warn("broker session expired; fencing", "broker", b.ID, "epoch", b.Epoch)
			if _, err := n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return metadata.PlanFence(img, b.ID, b.Epoch, n.cfg.Unclean), nil
			}); err != nil {
				n.logger.Warn("fencing broker", "broker", b.ID, "err", err)
			}
		}
		if len(n.cfg.Voters) > 1 && now.Sub(lastRecord) >= n.cfg.SessionTimeout/4 { // a quorum of one has no successor
			lastRecord = now
			if _, err := n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return []metadata.Record{{BrokerHeartbeats: n.live.record(img, now)}}, nil
			}); err != nil {
				n.logger.Debug("recording broker heartbeats", "err", err)
			}
		}
		if n.cfg.RebalanceInterval > 0 && now.Sub(lastBalance) >= n.cfg.RebalanceInterval {
			lastBalance = now
			n.balance(ctx)
		}
	}
}

// sessionGrace is the least time a new active controller gives each broker
// to heartbeat before fencing it: two heartbeat intervals and a little to
// find the new controller, at most half a session.
func (n *Node) sessionGrace() time.Duration {
	hb := n.cfg.HeartbeatInterval
	if hb <= 0 {
		hb = 2 * time.Second
	}
	return min(n.cfg.SessionTimeout/2, 2*hb+500*time.Millisecond)
}

// balance moves leadership back to each partition's preferred replica where
// that replica is live and in sync.
func (n *Node) balance(ctx context.Context) {
	img := n.Image()
	for _, name := range img.TopicNames() {
		for _, p := range img.Topics[name].Partitions {
			want := p.Replicas[0]
			if p.Leader == want || !img.Live(want) || !slices.Contains(p.ISR, want) {
				continue
			}
			if _, err := n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return metadata.PlanElectLeaders(img, name, p.Index, true)
			}); err != nil {
				n.logger.Debug("preferred leader election", "topic", name, "partition", p.Index, "err", err)
			}
		}
	}
}

// register commits a broker's (re-)registration; the result's log index is
// its new epoch. A new incarnation does not keep its old one's leadership
// or ISR membership (see metadata.PlanRegisterBroker). Broker-only nodes are added to Raft as non-voters so they
// replicate the metadata log.
func (n *Node) register(ctx context.Context, b metadata.Broker) (uint64, error) {
	if n.currentOffice() == nil {
		return 0, metadata.ErrNotController
	}
	if b.RaftAddr != "" && !n.isVoter(b.ID) {
		if err := n.raft.AddNonvoter(serverID(b.ID), raft.ServerAddress(b.RaftAddr), 0, 10*time.Second).Error(); err != nil {
			return 0, metadata.ErrNotController
		}
	}
	n.live.registered(b.ID, time.Now())
	idx, err := n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
		return metadata.PlanRegisterBroker(img, b, n.cfg.Unclean), nil
	})
	if err == nil {
		n.logger.Info("broker registered", "broker", b.ID, "epoch", idx, "addr", b.Host, "port", b.Port)
	}
	return idx, err
}

func (n *Node) isVoter(id int32) bool {
	for _, v := range n.cfg.Voters {
		if v.ID == id {
			return true
		}
	}
	return len(n.cfg.Voters) == 0 && id == n.cfg.NodeID
}

// heartbeat records a broker's heartbeat, unfences it if it was fenced, or,
// for a controlled shutdown, fences it and moves its leadership away.
func (n *Node) heartbeat(ctx context.Context, r heartbeatReq) (heartbeatResp, uint64, error) {
	if n.currentOffice() == nil {
		return heartbeatResp{}, 0, metadata.ErrNotController
	}
	b, ok := n.Image().Broker(r.ID)
	if !ok {
		return heartbeatResp{}, 0, metadata.ErrUnknownBroker
	}
	if b.Epoch != r.Epoch {
		return heartbeatResp{}, 0, metadata.ErrStaleBrokerEpoch
	}
	n.live.seen(r.ID, time.Now(), r.Shutdown)
	var idx uint64
	var err error
	switch {
	case r.Shutdown || n.live.inShutdown(r.ID):
		idx, err = n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
			return metadata.PlanFence(img, r.ID, r.Epoch, n.cfg.Unclean), nil
		})
	case b.Fenced:
		idx, err = n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
			return metadata.PlanUnfence(img, r.ID, r.Epoch, n.cfg.Unclean), nil
		})
	}
	if err != nil {
		return heartbeatResp{}, 0, err
	}
	img := n.Image()
	b, _ = img.Broker(r.ID)
	resp := heartbeatResp{Fenced: b.Fenced}
	if r.Shutdown {
		resp.ShutdownReady = !leadsAny(img, r.ID)
	}
	return resp, idx, nil
}

func leadsAny(img *metadata.Image, id int32) bool {
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			if p.Leader == id {
				return true
			}
		}
	}
	return false
}

package controller

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"strand/internal/metadata"
)

// liveness is the active controller's view of broker heartbeats. It is not
// replicated: a new active controller gives every broker a full session
// timeout from the moment it takes office.
type liveness struct {
	mu       sync.Mutex
	lastSeen map[int32]time.Time
	shutdown map[int32]bool // brokers in controlled shutdown
}

func newLiveness() *liveness {
	return &liveness{lastSeen: map[int32]time.Time{}, shutdown: map[int32]bool{}}
}

func (l *liveness) reset(img *metadata.Image, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastSeen, l.shutdown = map[int32]time.Time{}, map[int32]bool{}
	for _, b := range img.Brokers {
		l.lastSeen[b.ID] = now
	}
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

// leadership runs the active controller's duties whenever this node is the
// Raft leader, and stops them when it is not.
func (n *Node) leadership() {
	defer n.wg.Done()
	var term *leaderTerm
	defer func() { term.stop() }()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		leader := n.raft.State() == raft.Leader
		switch {
		case leader && term == nil:
			term = n.startTerm()
		case !leader && term != nil:
			n.logger.Info("no longer the active controller")
			term.stop()
			term = nil
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

// lead is the active controller's loop: take office, then fence brokers whose
// session expired and, if enabled, restore preferred leaders.
func (n *Node) lead(ctx context.Context) {
	if err := n.raft.Barrier(10 * time.Second).Error(); err != nil {
		n.logger.Warn("controller barrier failed", "err", err)
		return
	}
	n.live.reset(n.Image(), time.Now())
	id := n.cfg.NodeID
	if _, err := n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
		var recs []metadata.Record
		if img.ClusterID == "" {
			cid := newClusterID()
			recs = append(recs, metadata.Record{ClusterID: &cid})
			recs = append(recs, n.cfg.Bootstrap...)
		}
		return append(recs, metadata.Record{Controller: &id}), nil
	}); err != nil {
		n.logger.Warn("taking office as controller", "err", err)
		return
	}
	n.logger.Info("became the active controller", "node", id)
	tick := time.NewTicker(max(n.cfg.SessionTimeout/10, 20*time.Millisecond))
	defer tick.Stop()
	lastBalance := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
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
		if n.cfg.RebalanceInterval > 0 && now.Sub(lastBalance) >= n.cfg.RebalanceInterval {
			lastBalance = now
			n.balance(ctx)
		}
	}
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
// its new epoch. Broker-only nodes are added to Raft as non-voters so they
// replicate the metadata log.
func (n *Node) register(ctx context.Context, b metadata.Broker) (uint64, error) {
	if !n.IsActive() {
		return 0, metadata.ErrNotController
	}
	if b.RaftAddr != "" && !n.isVoter(b.ID) {
		if err := n.raft.AddNonvoter(serverID(b.ID), raft.ServerAddress(b.RaftAddr), 0, 10*time.Second).Error(); err != nil {
			return 0, metadata.ErrNotController
		}
	}
	n.live.registered(b.ID, time.Now())
	idx, err := n.commit(ctx, func(*metadata.Image) ([]metadata.Record, error) {
		return []metadata.Record{{RegisterBroker: &b}}, nil
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
	if !n.IsActive() {
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

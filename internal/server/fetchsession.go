package server

import (
	"container/list"
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/replica"
)

// Fetch sessions (KIP-227): a consumer or follower of many partitions sends
// its partition list once, in a full fetch (epoch 0) that creates a session,
// and then incremental fetches (epoch 1, 2, ...) that carry only the
// partitions whose fetch position changed (Topics) or that leave the session
// (ForgottenTopics). An incremental response lists only the partitions with
// records, an error, or a high watermark, last stable offset or log start
// offset other than the one last sent. Epoch -1 closes a session (or asks
// for a sessionless fetch). Sessions live per broker, keyed by id, not by
// connection (as Kafka), at most max.incremental.fetch.session.cache.slots
// of them, the least recently used evicted for a new one.
//
// Invariants: a session's epoch only moves forward by one per accepted
// request (wrapping to 1 after MaxInt32), so two requests can never both be
// accepted with the same epoch; a follower session's fetch reads exactly
// the session's partitions after applying the request, a consumer session's
// only those that may have changed since its last response, with the same
// response (fetchsession_track.go).

// fetchSessions is the broker's session cache.
type fetchSessions struct {
	slots int

	mu   sync.Mutex              // guards byID, lru
	byID map[int32]*list.Element // values are *fetchSession
	lru  *list.List              // front: most recently used

	// Fetches served, for tests and benchmarks: full (sessionless or
	// creating a session) and incremental.
	full, incremental atomic.Int64
}

// fetchSession is one session. Its mutex is taken only briefly (to apply a
// request, and to record what a response sent), never across a long poll.
type fetchSession struct {
	id    int32
	mu    sync.Mutex // guards epoch, parts, order, named, forgot, and track's fields but dirty ones
	epoch int32      // the epoch the next request must carry
	parts map[sessionKey]*sessionPart
	order []*sessionPart // fetch order: partitions that returned records move to the end

	// named and forgot are the partitions the request being applied named
	// (added or updated) and forgot, for a tracked session's bookkeeping.
	named, forgot []*sessionPart
	track         *sessionTrack // consumer sessions: change tracking (fetchsession_track.go); nil: none

	// Guarded by the cache's mu: last use, and whether its watches were
	// stopped since (idle, see sleepIdle).
	used  time.Time
	slept bool
}

type sessionKey struct {
	topic     string
	partition int32
}

// sessionPart is a partition of a session: the client's latest fetch
// position and bounds, and what the last response sent of it.
type sessionPart struct {
	key            sessionKey
	req            kmsg.FetchRequestTopicPartition
	hw, lso, start int64 // last sent; notSent before the first response
	moved          bool  // scratch: returned records in this response
	pos            int   // index in the session's order

	// Change tracking (tracked sessions, fetchsession_track.go).
	src     *replica.Partition // the partition object watched; nil: none
	unwatch func()             // cancels the watch of src
	dirty   atomic.Bool        // in track.dirty (set first, then listed under track.dmu)
	gone    bool               // forgotten or session closed: never dirty again; guarded by track.dmu
	counted bool               // counted in track.topics
}

const notSent = -2

func newFetchSessions(slots int) *fetchSessions {
	return &fetchSessions{slots: slots, byID: map[int32]*list.Element{}, lru: list.New()}
}

// fetchWithSession serves a fetch through the session cache: the request is
// checked and completed from its session, handleFetch reads it, and an
// incremental response keeps only what changed.
func (s *Server) fetchWithSession(ctx context.Context, req *kmsg.FetchRequest) kmsg.Response {
	sess, fail := s.fsess.begin(req)
	if fail != nil {
		return fail
	}
	incremental := req.SessionEpoch > 0
	if sess != nil && sess.track != nil {
		return s.fetchTracked(ctx, req, sess, incremental)
	}
	var refused []kmsg.FetchResponseTopic
	if incremental {
		refused = s.reauthorizeSession(ctx, req)
	}
	resp := s.handleFetch(ctx, req)
	if fr, ok := resp.(*kmsg.FetchResponse); ok && sess != nil {
		sess.finish(fr, incremental)
		fr.Topics = append(fr.Topics, refused...)
	}
	return resp
}

// reauthorizeSession checks the partitions an incremental fetch took from
// its session, as Kafka authorizes every partition of every fetch: the
// request's own were checked by authorizeFetch, but an ACL may have been
// removed since the others joined. It drops the refused topics from req and
// returns them answered with TOPIC_AUTHORIZATION_FAILED.
func (s *Server) reauthorizeSession(ctx context.Context, req *kmsg.FetchRequest) []kmsg.FetchResponseTopic {
	if s.sec.authz == nil || len(req.Topics) == 0 {
		return nil
	}
	var denied map[string]bool
	if req.ReplicaID >= 0 {
		if !s.allowedCluster(ctx, metadata.OpClusterAction) {
			denied = map[string]bool{}
			for _, rt := range req.Topics {
				denied[rt.Topic] = true
			}
		}
	} else {
		names := make([]string, 0, len(req.Topics))
		for _, rt := range req.Topics {
			names = append(names, rt.Topic)
		}
		denied = s.deniedTopics(ctx, metadata.OpRead, names...)
	}
	if len(denied) == 0 {
		return nil
	}
	var refused []kmsg.FetchResponseTopic
	kept := req.Topics[:0]
	for _, rt := range req.Topics {
		if !denied[rt.Topic] {
			kept = append(kept, rt)
			continue
		}
		out := kmsg.NewFetchResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, errTopicAuth
			p.HighWatermark, p.LastStableOffset, p.LogStartOffset, p.PreferredReadReplica = -1, -1, -1, -1
			p.RecordBatches = []byte{} // never null (see fetchOnce)
			out.Partitions = append(out.Partitions, p)
		}
		refused = append(refused, out)
	}
	req.Topics = kept
	return refused
}

func fetchError(req *kmsg.FetchRequest, code int16) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	resp.ErrorCode = code
	return resp
}

// begin applies req to the cache. It returns the session the response
// belongs to (nil: sessionless), or an error response. For an incremental
// fetch it replaces req.Topics by the session's whole partition list.
func (c *fetchSessions) begin(req *kmsg.FetchRequest) (*fetchSession, kmsg.Response) {
	if req.Version < 7 { // no sessions before v7
		c.full.Add(1)
		return nil, nil
	}
	switch {
	case req.SessionEpoch == -1: // final: close the session, fetch sessionless
		if req.SessionID != 0 {
			c.remove(req.SessionID)
		}
		c.full.Add(1)
		return nil, nil
	case req.SessionEpoch == 0: // full: a new session
		if req.SessionID != 0 {
			c.remove(req.SessionID)
		}
		c.full.Add(1)
		if c.slots <= 0 {
			return nil, nil
		}
		sess := &fetchSession{epoch: 1, parts: map[sessionKey]*sessionPart{}}
		if req.ReplicaID < 0 {
			// Consumers: read only what changed. Followers keep reading
			// every partition each round: that records their fetch time
			// (UpdateFollower), which keeps them in the ISR.
			sess.track = newSessionTrack()
		}
		sess.apply(req)
		c.add(sess)
		return sess, nil
	case req.SessionEpoch < -1:
		return nil, fetchError(req, kerr.InvalidFetchSessionEpoch.Code)
	}
	c.sleepIdle()
	sess := c.get(req.SessionID)
	if sess == nil {
		return nil, fetchError(req, kerr.FetchSessionIDNotFound.Code)
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if req.SessionEpoch != sess.epoch {
		return nil, fetchError(req, kerr.InvalidFetchSessionEpoch.Code)
	}
	sess.epoch++
	if sess.epoch == math.MaxInt32 || sess.epoch <= 0 {
		sess.epoch = 1
	}
	sess.apply(req)
	if sess.track == nil {
		req.Topics = sess.topics()
	}
	c.incremental.Add(1)
	return sess, nil
}

// apply adds or updates the request's partitions and drops its forgotten
// ones. The caller holds sess.mu (or owns a new session).
func (sess *fetchSession) apply(req *kmsg.FetchRequest) {
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			k := sessionKey{rt.Topic, rp.Partition}
			if p, ok := sess.parts[k]; ok {
				p.req = rp
				sess.named = append(sess.named, p)
				continue
			}
			p := &sessionPart{key: k, req: rp, hw: notSent, lso: notSent, start: notSent, pos: len(sess.order)}
			sess.parts[k] = p
			sess.order = append(sess.order, p)
			sess.named = append(sess.named, p)
		}
	}
	forgot := false
	for _, ft := range req.ForgottenTopics {
		for _, part := range ft.Partitions {
			k := sessionKey{ft.Topic, part}
			if p, ok := sess.parts[k]; ok {
				delete(sess.parts, k)
				sess.forgot = append(sess.forgot, p)
				forgot = true
			}
		}
	}
	if forgot {
		kept := sess.order[:0]
		for _, p := range sess.order {
			if sess.parts[p.key] == p {
				kept = append(kept, p)
			}
		}
		clear(sess.order[len(kept):])
		sess.order = kept
		for i, p := range kept {
			p.pos = i
		}
	}
	if sess.track == nil {
		sess.named, sess.forgot = sess.named[:0], sess.forgot[:0]
	}
}

// topics is the session's partition list as request topics, grouped by
// topic in fetch order. The caller holds sess.mu.
func (sess *fetchSession) topics() []kmsg.FetchRequestTopic {
	return topicsOf(sess.order)
}

// topicsOf is parts as request topics, grouped by topic in their order.
func topicsOf(parts []*sessionPart) []kmsg.FetchRequestTopic {
	var out []kmsg.FetchRequestTopic
	at := map[string]int{}
	for _, p := range parts {
		i, ok := at[p.key.topic]
		if !ok {
			i = len(out)
			at[p.key.topic] = i
			t := kmsg.NewFetchRequestTopic()
			t.Topic = p.key.topic
			out = append(out, t)
		}
		out[i].Partitions = append(out[i].Partitions, p.req)
	}
	return out
}

// finish sets the response's session id, records what it sends of each
// partition, and for an incremental fetch drops the partitions with nothing
// new. Partitions that returned records move to the end of the fetch order,
// so that a response cut short by the request's MaxBytes does not starve the
// partitions after them.
func (sess *fetchSession) finish(resp *kmsg.FetchResponse, incremental bool) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.finishLocked(resp, incremental)
}

// finishLocked is finish with sess.mu held.
func (sess *fetchSession) finishLocked(resp *kmsg.FetchResponse, incremental bool) {
	resp.SessionID = sess.id
	moved := 0
	kept := resp.Topics[:0]
	for _, t := range resp.Topics {
		ps := t.Partitions[:0]
		for _, p := range t.Partitions {
			sp := sess.parts[sessionKey{t.Topic, p.Partition}]
			changed := sp == nil || p.ErrorCode != 0 || len(p.RecordBatches) > 0 ||
				p.DivergingEpoch.EndOffset >= 0 || p.PreferredReadReplica >= 0 ||
				p.HighWatermark != sp.hw || p.LastStableOffset != sp.lso || p.LogStartOffset != sp.start
			if sp != nil {
				sp.hw, sp.lso, sp.start = p.HighWatermark, p.LastStableOffset, p.LogStartOffset
				if len(p.RecordBatches) > 0 && !sp.moved {
					sp.moved = true
					moved++
				}
			}
			if changed || !incremental {
				ps = append(ps, p)
			}
		}
		t.Partitions = ps
		if len(ps) > 0 || !incremental {
			kept = append(kept, t)
		}
	}
	clear(resp.Topics[len(kept):])
	resp.Topics = kept
	if moved == 0 {
		return
	}
	order := make([]*sessionPart, 0, len(sess.order))
	for _, p := range sess.order {
		if !p.moved {
			order = append(order, p)
		}
	}
	for _, p := range sess.order {
		if p.moved {
			p.moved = false
			order = append(order, p)
		}
	}
	for i, p := range order {
		p.pos = i
	}
	sess.order = order
}

// add gives sess a fresh id and caches it, evicting the least recently used
// session when the cache is full.
func (c *fetchSessions) add(sess *fetchSession) {
	var evicted []*fetchSession
	defer func() {
		for _, old := range evicted {
			old.close()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() >= c.slots {
		old := c.lru.Remove(c.lru.Back()).(*fetchSession)
		delete(c.byID, old.id)
		evicted = append(evicted, old)
	}
	for {
		sess.id = rand.Int32N(math.MaxInt32) + 1 // > 0: 0 means no session
		if _, taken := c.byID[sess.id]; !taken {
			break
		}
	}
	sess.used = time.Now()
	c.byID[sess.id] = c.lru.PushFront(sess)
}

// get returns the session with id, marking it recently used, or nil.
func (c *fetchSessions) get(id int32) *fetchSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	sess := e.Value.(*fetchSession)
	sess.used, sess.slept = time.Now(), false
	return sess
}

func (c *fetchSessions) remove(id int32) {
	c.mu.Lock()
	e, ok := c.byID[id]
	if ok {
		c.lru.Remove(e)
		delete(c.byID, id)
	}
	c.mu.Unlock()
	if ok {
		e.Value.(*fetchSession).close()
	}
}

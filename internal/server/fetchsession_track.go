package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/metrics"
	"strand/internal/security"
)

// Change tracking of consumer fetch sessions: a round of an incremental
// fetch costs O(partitions that changed), not O(partitions in the session).
//
// Each partition of the session is watched (replica.Partition.OnChange) for
// as long as it is in the session; a change (records appended, HW, LSO or
// leadership changed, partition closed) puts it in the session's dirty set
// and signals the session's one wake channel. A round reads only:
//   - the dirty partitions (drained when the round starts and on each
//     wake-up of its long poll);
//   - the partitions the request names (new or moved fetch position);
//   - the partitions the last response left pending: records, an error, a
//     diverging epoch, a preferred read replica, or a fetch position below
//     the HW (LSO for read_committed), e.g. skipped for the request's
//     MaxBytes;
//   - every partition when the metadata image changed (leadership,
//     liveness, topic deletion, ACLs) or sessionSweep passed since the last
//     such sweep (changes no notification covers, as the log start offset
//     moved by retention).
//
// Every other partition is caught up and unchanged since the last response
// read it, so an incremental response would have left it out anyway: the
// response is the one a read of every partition would give.
//
// Authorization: the session's topics are re-checked for READ whenever the
// metadata image (which holds the ACLs), the connection's principal or the
// session's topic set changed since the last check; the refused topics'
// partitions are answered TOPIC_AUTHORIZATION_FAILED on every round, as
// before, and not read.
//
// Follower sessions are not tracked: their rounds read every partition,
// which records each follower's fetch time (ISR membership).

// sessionSweep bounds how long a change no notification covers can go
// unreported in a tracked session.
const sessionSweep = 10 * time.Second

// sessionTrack is the change tracking of one consumer session.
type sessionTrack struct {
	dmu   sync.Mutex     // guards dirty and the parts' gone; taken under a partition's waiter lock
	dirty []*sessionPart // parts changed since drained
	wake  chan struct{}  // capacity 1: signalled when a part turns dirty

	// Guarded by the session's mu.
	closed  bool
	asleep  bool            // watches stopped for idleness (sleep): sweep on the next request
	active  int             // requests being served
	lastUse time.Time       // start of the latest request
	img     *metadata.Image // image of the last sweep
	swept   time.Time       // time of the last sweep
	topics  map[string]int  // the session's topics: partitions each
	authOK  bool            // denied is up to date for authImg, who and topics
	authImg *metadata.Image
	who     security.Session
	denied  map[string]bool // topics refused READ
}

func newSessionTrack() *sessionTrack {
	return &sessionTrack{wake: make(chan struct{}, 1), topics: map[string]int{}}
}

// mark puts p in the dirty set, signalling the wake channel if asked.
func (t *sessionTrack) mark(p *sessionPart, wake bool) {
	if !p.dirty.CompareAndSwap(false, true) {
		return // listed already (or gone): the common case of a busy partition
	}
	t.dmu.Lock()
	added := !p.gone
	if added {
		t.dirty = append(t.dirty, p)
	}
	t.dmu.Unlock()
	if added && wake {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// drain empties the dirty set into into.
func (t *sessionTrack) drain(into []*sessionPart) []*sessionPart {
	t.dmu.Lock()
	defer t.dmu.Unlock()
	for _, p := range t.dirty {
		if !p.gone {
			p.dirty.Store(false)
			into = append(into, p)
		}
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	return into
}

// forget stops watching p for good. The caller holds the session's mu.
func (t *sessionTrack) forget(p *sessionPart) {
	if p.unwatch != nil {
		p.unwatch()
	}
	p.src, p.unwatch = nil, nil
	t.dmu.Lock()
	p.gone = true
	t.dmu.Unlock()
}

// close stops the watches of an evicted or removed session.
func (sess *fetchSession) close() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	t := sess.track
	if t == nil || t.closed {
		return
	}
	t.closed = true
	for _, p := range sess.order {
		t.forget(p)
	}
	for _, p := range sess.forgot {
		t.forget(p)
	}
	sess.named, sess.forgot = nil, nil
}

// sessionIdle is how long a tracked session goes unused before its
// watches stop (sleepIdle): a consumer that went away without closing its
// session then costs nothing on the produce path. Kafka's minimum session
// age before eviction is the same 2 minutes.
const sessionIdle = 2 * time.Minute

// sleepIdle stops the watches of a few of the least recently used tracked
// sessions that have been idle for sessionIdle. They stay valid: their
// next request reads every partition and watches them again.
func (c *fetchSessions) sleepIdle() {
	var idle []*fetchSession
	c.mu.Lock()
	now := time.Now()
	for e := c.lru.Back(); e != nil && len(idle) < 4; e = e.Prev() {
		sess := e.Value.(*fetchSession)
		if now.Sub(sess.used) < sessionIdle {
			break
		}
		if !sess.slept && sess.track != nil {
			sess.slept = true
			idle = append(idle, sess)
		}
	}
	c.mu.Unlock()
	for _, sess := range idle {
		sess.sleep(now)
	}
}

// sleep stops an idle session's watches (see sleepIdle), unless a request
// is being served or began since now-sessionIdle.
func (sess *fetchSession) sleep(now time.Time) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	t := sess.track
	if t.closed || t.asleep || t.active > 0 || now.Sub(t.lastUse) < sessionIdle {
		return
	}
	t.asleep = true
	for _, p := range sess.order {
		if p.unwatch != nil {
			p.unwatch()
		}
		p.src, p.unwatch = nil, nil
	}
}

// rewatch makes p watch the partition object hosted now (a partition
// dropped and created again is a new object). The caller holds sess.mu.
func (s *Server) rewatch(sess *fetchSession, p *sessionPart) {
	cur, _ := s.parts.Get(p.key.topic, p.key.partition)
	if cur == p.src || sess.track.closed {
		return
	}
	if p.unwatch != nil {
		p.unwatch()
	}
	p.src, p.unwatch = cur, nil
	if cur != nil {
		t := sess.track
		p.unwatch = cur.OnChange(func() { t.mark(p, true) })
	}
}

// prepareTracked applies the request's bookkeeping to the tracking (new,
// updated and forgotten partitions), sweeps every partition when due, and
// re-authorizes the session's topics when needed. It returns the refused
// topics answered. The caller holds sess.mu.
func (s *Server) prepareTracked(ctx context.Context, sess *fetchSession) []kmsg.FetchResponseTopic {
	t := sess.track
	t.active++
	t.lastUse = time.Now()
	for _, p := range sess.forgot {
		if p.counted {
			p.counted = false
			if t.topics[p.key.topic]--; t.topics[p.key.topic] <= 0 {
				delete(t.topics, p.key.topic)
			}
		}
		t.forget(p)
	}
	for _, p := range sess.named {
		if t.closed || sess.parts[p.key] != p {
			continue // forgotten again in the same request
		}
		if !p.counted {
			p.counted = true
			if t.topics[p.key.topic]++; t.topics[p.key.topic] == 1 {
				t.authOK = false // a new topic: authorize it
			}
		}
		t.mark(p, false)
	}
	sess.named, sess.forgot = sess.named[:0], sess.forgot[:0]
	img := s.store.Image()
	if now := time.Now(); img != t.img || now.Sub(t.swept) >= sessionSweep || t.asleep {
		t.img, t.swept, t.asleep = img, now, false
		for _, p := range sess.order {
			t.mark(p, false)
		}
	}
	if s.sec.authz == nil {
		t.denied = nil
		return nil
	}
	who := *security.SessionFrom(ctx)
	if !t.authOK || t.authImg != img || t.who != who {
		names := make([]string, 0, len(t.topics))
		for name := range t.topics {
			names = append(names, name)
		}
		slices.Sort(names)
		t.denied = s.deniedTopics(ctx, metadata.OpRead, names...)
		t.authOK, t.authImg, t.who = true, img, who
	}
	if len(t.denied) == 0 {
		return nil
	}
	var refused []kmsg.FetchResponseTopic
	at := map[string]int{}
	for _, sp := range sess.order {
		if !t.denied[sp.key.topic] {
			continue
		}
		i, ok := at[sp.key.topic]
		if !ok {
			i = len(refused)
			at[sp.key.topic] = i
			out := kmsg.NewFetchResponseTopic()
			out.Topic = sp.key.topic
			refused = append(refused, out)
		}
		p := kmsg.NewFetchResponseTopicPartition()
		p.Partition, p.ErrorCode = sp.key.partition, errTopicAuth
		p.HighWatermark, p.LastStableOffset, p.LogStartOffset, p.PreferredReadReplica = -1, -1, -1, -1
		p.RecordBatches = []byte{} // never null (see fetchOnce)
		refused[i].Partitions = append(refused[i].Partitions, p)
	}
	return refused
}

// fetchTracked serves a consumer fetch of a tracked session: handleFetch's
// long poll, reading only the partitions that changed (see the top of this
// file) and waiting on the session's one wake channel.
func (s *Server) fetchTracked(ctx context.Context, req *kmsg.FetchRequest, sess *fetchSession, incremental bool) kmsg.Response {
	t := sess.track
	sess.mu.Lock()
	refused := s.prepareTracked(ctx, sess)
	sess.mu.Unlock()

	var reading []*sessionPart
	seen := map[*sessionPart]bool{}
	var batch []*sessionPart
	// collect adds the dirty partitions to the read and reports whether
	// any is to be read (again).
	collect := func() bool {
		batch = t.drain(batch[:0])
		if len(batch) == 0 {
			return false
		}
		sess.mu.Lock()
		defer sess.mu.Unlock()
		added, again := false, false
		for _, p := range batch {
			if seen[p] {
				again = true // changed again: the next pass reads it anyway
				continue
			}
			if sess.parts[p.key] != p || t.denied[p.key.topic] {
				continue
			}
			s.rewatch(sess, p)
			seen[p] = true
			reading = append(reading, p)
			added = true
		}
		if added {
			slices.SortFunc(reading, func(a, b *sessionPart) int { return a.pos - b.pos })
			req.Topics = topicsOf(reading)
		}
		return added || again
	}
	req.Topics = nil
	collect()

	settle := func(resp *kmsg.FetchResponse) kmsg.Response {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		committed := req.IsolationLevel == 1
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				sp := sess.parts[sessionKey{rt.Topic, rp.Partition}]
				if sp == nil {
					continue
				}
				bound := rp.HighWatermark
				if committed {
					bound = rp.LastStableOffset
				}
				if rp.ErrorCode != 0 || len(rp.RecordBatches) > 0 || rp.DivergingEpoch.EndOffset >= 0 ||
					rp.PreferredReadReplica >= 0 || sp.req.FetchOffset < bound {
					t.mark(sp, false) // pending: read again next round
				}
			}
		}
		sess.finishLocked(resp, incremental)
		t.active--
		resp.Topics = append(resp.Topics, refused...)
		return resp
	}

	maxWait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	defer metrics.Waiting(metrics.FetchPurgatory)()
	files := sendFilesOf(ctx) // nil: the connection copies (fetchfiles.go)
	for first := true; ; first = false {
		resp, n, done := s.fetchOnce(req, -1, first, files)
		if done || n >= int(req.MinBytes) || maxWait <= 0 {
			return settle(resp)
		}
	wait:
		for {
			select {
			case <-t.wake:
				if collect() {
					files.drop(resp)
					break wait
				}
			case <-timer.C:
				collect()
				files.drop(resp)
				resp, _, _ = s.fetchOnce(req, -1, false, files)
				return settle(resp)
			case <-ctx.Done():
				sess.mu.Lock()
				for _, p := range reading {
					t.mark(p, false) // the response may never arrive
				}
				sess.mu.Unlock()
				return settle(resp)
			}
		}
	}
}

package group

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
)

// memLog is an in-memory Log: each partition is a list of batches.
type memLog struct {
	mu        sync.Mutex
	parts     map[int32][][]byte
	ends      map[int32]int64
	appendErr error // returned by Append when set
}

func newMemLog() *memLog { return &memLog{parts: map[int32][][]byte{}, ends: map[int32]int64{}} }

func (l *memLog) Append(p int32, records []byte) (Position, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.appendErr != nil {
		return Position{}, l.appendErr
	}
	b := append([]byte(nil), records...)
	h, err := record.Validate(b)
	if err != nil {
		return Position{}, err
	}
	record.SetBaseOffset(b, l.ends[p])
	l.parts[p] = append(l.parts[p], b)
	l.ends[p] += int64(h.LastOffsetDelta) + 1
	return Position{End: l.ends[p]}, nil
}

func (l *memLog) WaitDurable(int32, Position) error { return nil }

func (l *memLog) Read(p int32, offset int64, maxBytes int) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []byte
	for _, b := range l.parts[p] {
		h, _ := record.ParseHeader(b)
		if h.NextOffset() <= offset {
			continue
		}
		if len(out) > 0 && len(out)+len(b) > maxBytes {
			break
		}
		out = append(out, b...)
	}
	return out, nil
}

func (l *memLog) Bounds(p int32) (int64, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return 0, l.ends[p], nil
}

// records decodes every record of a partition.
func (l *memLog) records(t *testing.T, p int32) []storedRecord {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []storedRecord
	for _, b := range l.parts[p] {
		recs, err := record.Records(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			sr, err := decodeRecord(r.Key, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, sr)
		}
	}
	return out
}

// fakeClock runs timers only when the test advances it, in the test's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	seq     int
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, at: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time forward by d, running every timer due on the way in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		live := c.timers[:0]
		for _, t := range c.timers {
			if !t.stopped {
				live = append(live, t)
			}
		}
		c.timers = live
		sort.Slice(c.timers, func(i, j int) bool {
			if !c.timers[i].at.Equal(c.timers[j].at) {
				return c.timers[i].at.Before(c.timers[j].at)
			}
			return c.timers[i].seq < c.timers[j].seq
		})
		if len(c.timers) == 0 || c.timers[0].at.After(target) {
			c.now = target
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		t.stopped = true
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
	}
}

// harness is a coordinator over a memLog and a fakeClock, with partition 0
// of 1 loaded.
type harness struct {
	t     *testing.T
	c     *Coordinator
	log   *memLog
	clock *fakeClock
	cfg   Config
}

func testConfig(clock Clock) Config {
	return Config{Partitions: 1, InitialRebalanceDelay: 0, MinSessionTimeout: time.Second, MaxSessionTimeout: time.Minute,
		Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func newHarness(t *testing.T, mod ...func(*Config)) *harness {
	h := &harness{t: t, log: newMemLog(), clock: newFakeClock()}
	cfg := testConfig(h.clock)
	for _, m := range mod {
		m(&cfg)
	}
	h.cfg = cfg
	h.c = New(cfg, h.log)
	t.Cleanup(h.c.Close)
	if err := h.c.Load(0); err != nil {
		t.Fatal(err)
	}
	return h
}

// restart replaces the coordinator by a new one over the same log.
func (h *harness) restart() {
	h.c.Close()
	h.c = New(h.cfg, h.log)
	h.t.Cleanup(h.c.Close)
	if err := h.c.Load(0); err != nil {
		h.t.Fatal(err)
	}
}

// settle waits for background durability waits.
func (h *harness) settle() { h.c.wg.Wait() }

// pendingJoin is a JoinGroup whose answer may not have arrived.
type pendingJoin struct {
	mu  sync.Mutex
	res *joinResult
}

func (p *pendingJoin) get() *joinResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.res
}

type joinOpts struct {
	version   int16
	member    string
	instance  *string
	session   int32
	rebalance int32
	protocols []string
	meta      []byte
	protoType string
}

func (h *harness) join(group string, o joinOpts) *pendingJoin {
	h.t.Helper()
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = o.version
	if req.Version == 0 {
		req.Version = 5
	}
	req.Group, req.MemberID, req.InstanceID = group, o.member, o.instance
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = o.session, o.rebalance
	if req.SessionTimeoutMillis == 0 {
		req.SessionTimeoutMillis = 10000
	}
	if req.RebalanceTimeoutMillis == 0 {
		req.RebalanceTimeoutMillis = 20000
	}
	req.ProtocolType = o.protoType
	if req.ProtocolType == "" {
		req.ProtocolType = "consumer"
	}
	if o.protocols == nil {
		o.protocols = []string{"range"}
	}
	for _, p := range o.protocols {
		meta := o.meta
		if meta == nil {
			meta = subscription("t")
		}
		req.Protocols = append(req.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: meta})
	}
	p := &pendingJoin{}
	h.c.joinGroup(req, Client{ID: "client", Host: "/127.0.0.1"}, func(r joinResult) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.res != nil {
			h.t.Errorf("JoinGroup answered twice: %+v then %+v", *p.res, r)
		}
		p.res = &r
	})
	return p
}

// joined returns a join's answer, failing if there is none.
func (h *harness) joined(p *pendingJoin) joinResult {
	h.t.Helper()
	h.settle()
	r := p.get()
	if r == nil {
		h.t.Fatal("JoinGroup still waiting")
	}
	return *r
}

// joinWait joins and lets due timers (the initial delay of 0) run.
func (h *harness) joinWait(group string, o joinOpts) joinResult {
	h.t.Helper()
	p := h.join(group, o)
	h.clock.Advance(0)
	return h.joined(p)
}

// pendingSync is a SyncGroup whose answer may not have arrived.
type pendingSync struct {
	mu  sync.Mutex
	res *syncResult
}

func (p *pendingSync) get() *syncResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.res
}

func (h *harness) sync(group, member string, gen int32, assign map[string]string) *pendingSync {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group, req.MemberID, req.Generation = group, member, gen
	for m, a := range assign {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m, MemberAssignment: []byte(a)})
	}
	p := &pendingSync{}
	h.c.syncGroup(req, func(r syncResult) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.res = &r
	})
	h.settle()
	return p
}

func (h *harness) heartbeat(group, member string, gen int32) error {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group, req.MemberID, req.Generation = group, member, gen
	return kerr.ErrorForCode(h.c.Heartbeat(req).ErrorCode)
}

func (h *harness) state(group string) string {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	return h.c.DescribeGroups(req).Groups[0].State
}

func (h *harness) commit(group, member string, gen int32, topic string, partition int32, offset int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.MemberID, req.Generation = group, member, gen
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: partition, Offset: offset, LeaderEpoch: -1}}}}
	resp := h.c.OffsetCommit(req)()
	return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
}

func (h *harness) fetch(group, topic string, partition int32) int64 {
	h.t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: group, Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: topic, Partitions: []int32{partition}}}}}
	resp := h.c.OffsetFetch(req)
	if g := resp.Groups[0]; g.ErrorCode != 0 {
		h.t.Fatalf("fetch: %v", kerr.ErrorForCode(g.ErrorCode))
	}
	return resp.Groups[0].Topics[0].Partitions[0].Offset
}

// subscription encodes a consumer protocol v0 subscription to topics.
func subscription(topics ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(topics)))
	for _, t := range topics {
		b = binary.BigEndian.AppendUint16(b, uint16(len(t)))
		b = append(b, t...)
	}
	return binary.BigEndian.AppendUint32(b, 0xffffffff) // null user data
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) && got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

var _ = context.Background

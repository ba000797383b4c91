package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/testcluster"
)

// freeAddr is testcluster.FreeAddr: no port is handed to two listeners.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testcluster.FreeAddr(t)
}

type testQuorum struct {
	t      *testing.T
	voters []config.Voter
	dirs   map[int32]string
	nodes  map[int32]*Node
	cfgs   map[int32]Config
}

// newQuorum starts voters 1..n, each also a broker, plus extra broker-only
// nodes (ids n+1..n+brokersOnly) that replicate the log as non-voters.
func newQuorum(t *testing.T, n, brokersOnly int, opts ...func(*Config)) *testQuorum {
	q := &testQuorum{t: t, dirs: map[int32]string{}, nodes: map[int32]*Node{}, cfgs: map[int32]Config{}}
	for i := range n {
		q.voters = append(q.voters, config.Voter{ID: int32(i + 1), Addr: freeAddr(t)})
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := range n + brokersOnly {
		id := int32(i + 1)
		listen := ""
		if i < n {
			listen = q.voters[i].Addr
		} else {
			listen = freeAddr(t)
		}
		q.dirs[id] = t.TempDir()
		q.cfgs[id] = Config{
			NodeID: id, Dir: q.dirs[id], Voters: q.voters, ListenAddr: listen,
			Broker:     &metadata.Broker{Host: "127.0.0.1", Port: 9000 + id},
			Controller: i < n, ElectionTimeout: 200 * time.Millisecond,
			SessionTimeout: time.Second, HeartbeatInterval: 100 * time.Millisecond,
			SnapshotThreshold: 16, SnapshotInterval: 100 * time.Millisecond, TrailingLogs: 4, Logger: logger,
		}
		cfg := q.cfgs[id]
		for _, o := range opts {
			o(&cfg)
		}
		q.cfgs[id] = cfg
	}
	for id := range q.cfgs {
		q.start(id)
	}
	t.Cleanup(func() {
		for _, nd := range q.nodes {
			nd.Close()
		}
	})
	for id := range q.cfgs {
		q.waitRegistered(id)
	}
	return q
}

func (q *testQuorum) start(id int32) {
	nd, err := Open(q.cfgs[id])
	if err != nil {
		q.t.Fatalf("open node %d: %v", id, err)
	}
	q.nodes[id] = nd
}

func (q *testQuorum) stop(id int32) {
	if err := q.nodes[id].Close(); err != nil {
		q.t.Logf("close node %d: %v", id, err)
	}
	delete(q.nodes, id)
}

func (q *testQuorum) waitRegistered(id int32) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := q.nodes[id].WaitRegistered(ctx); err != nil {
		q.t.Fatalf("node %d: %v", id, err)
	}
}

func (q *testQuorum) active() *Node {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, nd := range q.nodes {
			if nd.IsActive() {
				return nd
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	q.t.Fatal("no active controller")
	return nil
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

func TestQuorumReplicatesAndSnapshots(t *testing.T) {
	q := newQuorum(t, 3, 1)
	ctx := context.Background()
	// A broker-only node forwards to the controller and sees the result.
	broker := q.nodes[4]
	if _, err := broker.CreateTopic(ctx, metadata.CreateTopic{Name: "a", Partitions: 4, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.CreateTopic(ctx, metadata.CreateTopic{Name: "a", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, metadata.ErrTopicExists) {
		t.Fatalf("duplicate create: %v, want ErrTopicExists", err)
	}
	if _, err := broker.CreateTopic(ctx, metadata.CreateTopic{Name: "b", Partitions: 1, ReplicationFactor: 5}); !errors.Is(err, metadata.ErrInvalidReplication) {
		t.Fatalf("rf 5 of 4 brokers: %v, want ErrInvalidReplication", err)
	}
	img := broker.Image()
	tp, ok := img.Topic("a")
	if !ok || len(tp.Partitions) != 4 {
		t.Fatalf("broker-only node's image lacks topic a: %+v", tp)
	}
	leaders := map[int32]int{}
	for _, p := range tp.Partitions {
		if len(p.Replicas) != 3 || len(p.ISR) != 3 || p.Leader != p.Replicas[0] {
			t.Fatalf("partition %+v", p)
		}
		leaders[p.Leader]++
	}
	if len(leaders) < 3 {
		t.Fatalf("leaders not spread over brokers: %v", leaders)
	}

	// Stop a follower voter, create enough topics to force snapshots and log
	// truncation, restart it: it catches up (from a snapshot).
	var follower int32
	active := q.active()
	for id := int32(1); id <= 3; id++ {
		if q.nodes[id] != active {
			follower = id
			break
		}
	}
	q.stop(follower)
	for i := range 40 {
		// A leader that steps down under load may commit a create whose
		// answer was lost; the retry then finds the topic: that is success.
		if _, err := q.nodes[4].CreateTopic(ctx, metadata.CreateTopic{Name: fmt.Sprintf("t%02d", i), Partitions: 1, ReplicationFactor: 2}); err != nil && !errors.Is(err, metadata.ErrTopicExists) {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // let the leader snapshot and trim its log
	q.start(follower)
	eventually(t, "restarted follower catches up", func() error {
		if n := len(q.nodes[follower].Image().Topics); n != 41 {
			return fmt.Errorf("%d topics", n)
		}
		return nil
	})
	snaps, _ := os.ReadDir(q.dirs[q.active().cfg.NodeID] + "/snapshots")
	if len(snaps) == 0 {
		t.Fatalf("no metadata snapshot taken after 40+ entries with threshold 16")
	}
}

func TestFenceElectAndControlledShutdown(t *testing.T) {
	q := newQuorum(t, 3, 0)
	ctx := context.Background()
	// The subjects are chosen around the active controller: c shuts down
	// cleanly, s stops heartbeating, r (the active controller) stays.
	r := q.active().cfg.NodeID
	var others []int32
	for id := int32(1); id <= 3; id++ {
		if id != r {
			others = append(others, id)
		}
	}
	c, s := others[0], others[1]
	if _, err := q.nodes[r].CreateTopic(ctx, metadata.CreateTopic{Name: "x", Assignment: [][]int32{{c, r, s}, {s, c, r}}}); err != nil {
		t.Fatal(err)
	}
	// Controlled shutdown of broker c moves its leadership away at once.
	if err := q.nodes[c].ControlledShutdown(ctx); err != nil {
		t.Fatal(err)
	}
	img := q.nodes[c].Image() // a call returns once the caller's image has the change
	p0 := img.Topics["x"].Partitions[0]
	if bc, _ := img.Broker(c); p0.Leader != r || p0.LeaderEpoch != 1 || !bc.Fenced {
		t.Fatalf("after controlled shutdown of %d: partition 0 %+v, broker %+v", c, p0, bc)
	}
	// Broker s stops heartbeating (closed): fenced after the session timeout,
	// partition 1 moves to r (c is fenced too); ISR shrinks but keeps a member.
	q.stop(s)
	eventually(t, fmt.Sprintf("broker %d fenced", s), func() error {
		img := q.nodes[r].Image()
		p1 := img.Topics["x"].Partitions[1]
		if img.Live(s) || p1.Leader != r {
			return fmt.Errorf("live(%d)=%v partition 1 %+v", s, img.Live(s), p1)
		}
		return nil
	})
	// A preferred election for partition 1 (preferred s) is refused while s is out.
	if err := q.nodes[r].ElectLeaders(ctx, "x", 1, true); !errors.Is(err, metadata.ErrPreferredLeaderNotAvailable) {
		t.Fatalf("preferred election with the preferred replica fenced: %v", err)
	}
	// Broker s restarts: registers with a new epoch and is live again.
	q.start(s)
	q.waitRegistered(s)
	img = q.nodes[s].Image()
	bs, _ := img.Broker(s)
	if bs.Fenced || bs.Epoch == 0 {
		t.Fatalf("broker %d after restart: %+v", s, bs)
	}
}

func TestProducerIDsAreUnique(t *testing.T) {
	q := newQuorum(t, 3, 0)
	seen := map[int64]int32{}
	for round := range 3 {
		for id := int32(1); id <= 3; id++ {
			start, err := q.nodes[id].AllocateProducerIDs(context.Background(), 100)
			if err != nil {
				t.Fatal(err)
			}
			for i := start; i < start+100; i++ {
				if other, ok := seen[i]; ok {
					t.Fatalf("round %d: id %d given to %d and %d", round, i, other, id)
				}
				seen[i] = id
			}
		}
	}
}

func TestRaftLinesBecomeSlogRecords(t *testing.T) {
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	l := raftLogger(logger, 0)
	l.Warn("heartbeat timeout reached", "last-leader-id", "2")
	l.Debug("hidden at the default level")
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, `msg="heartbeat timeout reached"`) ||
		!strings.Contains(out, "component=raft") || !strings.Contains(out, "last-leader-id=2") {
		t.Fatalf("slog output: %s", out)
	}
}

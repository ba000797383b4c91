package replica

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
)

// fakeStore commits ISR changes by applying the next image to the manager
// before returning, as the real store does (its listeners have seen the
// change when AlterPartition returns).
type fakeStore struct {
	mu   sync.Mutex
	img  *metadata.Image
	m    *Manager
	reqs []metadata.AlterPartition
}

func (s *fakeStore) Image() *metadata.Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.img
}

func (s *fakeStore) AlterPartition(_ context.Context, r metadata.AlterPartition) (*metadata.Partition, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	img := cloneImage(s.img)
	p := &img.Topics[r.Topic].Partitions[r.Partition]
	if p.Leader != r.Leader || p.LeaderEpoch != r.LeaderEpoch {
		s.mu.Unlock()
		return nil, metadata.ErrFencedLeaderEpoch
	}
	if p.PartitionEpoch != r.PartitionEpoch {
		s.mu.Unlock()
		return nil, metadata.ErrInvalidUpdateVersion
	}
	p.ISR, p.PartitionEpoch = slices.Clone(r.ISR), p.PartitionEpoch+1
	s.img = img
	out := *p
	s.mu.Unlock()
	return &out, s.m.Apply(img)
}

func (s *fakeStore) set(img *metadata.Image) {
	s.mu.Lock()
	s.img = img
	s.mu.Unlock()
	s.m.Apply(img)
}

func cloneImage(im *metadata.Image) *metadata.Image {
	out := *im
	out.Brokers = slices.Clone(im.Brokers)
	out.Topics = map[string]*metadata.Topic{}
	for n, t := range im.Topics {
		nt := *t
		nt.Partitions = slices.Clone(t.Partitions)
		out.Topics[n] = &nt
	}
	return &out
}

func (m *Manager) fetcherParts() map[int32][]TopicPartition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[int32][]TopicPartition{}
	for id, f := range m.fetchers {
		f.mu.Lock()
		out[id] = slices.SortedFunc(maps.Keys(f.parts), func(a, b TopicPartition) int { return int(a.Partition - b.Partition) })
		f.mu.Unlock()
	}
	return out
}

func TestManagerFetchersFollowLeaders(t *testing.T) {
	m, store := newTestManager(t, [2]string{"replica.fetch.backoff.ms", "10"})
	// Nothing listens on these ports: the fetchers just retry.
	brokers := []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}, {ID: 2, Host: "127.0.0.1", Port: 2}, {ID: 3, Host: "127.0.0.1", Port: 3}}
	all := []int32{1, 2, 3}
	img := &metadata.Image{Brokers: brokers, Topics: map[string]*metadata.Topic{"a": {Name: "a", ID: metadata.NewTopicID(),
		Partitions: []metadata.Partition{
			{Index: 0, Leader: 1, LeaderEpoch: 1, Replicas: all, ISR: all},
			{Index: 1, Leader: 2, LeaderEpoch: 1, Replicas: all, ISR: all},
			{Index: 2, Leader: 2, LeaderEpoch: 1, Replicas: all, ISR: all},
			{Index: 3, Leader: 3, LeaderEpoch: 1, Replicas: []int32{2, 3}, ISR: []int32{2, 3}},
		}}}}
	store.set(img)
	a := func(ps ...int32) []TopicPartition {
		var out []TopicPartition
		for _, p := range ps {
			out = append(out, TopicPartition{"a", p})
		}
		return out
	}
	check := func(want map[int32][]TopicPartition) {
		t.Helper()
		if got := m.fetcherParts(); !maps.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("fetchers %v, want %v", got, want)
		}
	}
	check(map[int32][]TopicPartition{2: a(1, 2)})
	// Partition 2 moves to leader 3, partition 1 to this node.
	img = cloneImage(img)
	img.Topics["a"].Partitions[1].Leader, img.Topics["a"].Partitions[1].LeaderEpoch = 1, 2
	img.Topics["a"].Partitions[2].Leader, img.Topics["a"].Partitions[2].LeaderEpoch = 3, 2
	store.set(img)
	check(map[int32][]TopicPartition{3: a(2)})
	if p, _ := m.Get("a", 1); p.Leader() != 1 {
		t.Fatalf("partition 1 leader %d", p.Leader())
	}
	// Broker 3 moves to another port: its fetcher is replaced.
	old := m.fetchers[3]
	img = cloneImage(img)
	img.Brokers[2].Port = 4
	store.set(img)
	check(map[int32][]TopicPartition{3: a(2)})
	if m.fetchers[3] == old || m.fetchers[3].addr != "127.0.0.1:4" {
		t.Fatal("fetcher not replaced after the leader's address changed")
	}
	// This node leads everything it hosts: no fetcher is left.
	img = cloneImage(img)
	img.Topics["a"].Partitions[2].Leader, img.Topics["a"].Partitions[2].LeaderEpoch = 1, 3
	store.set(img)
	check(map[int32][]TopicPartition{})
	// Partition 1 is reassigned away: no longer hosted, its log deleted.
	p1, _ := m.Get("a", 1)
	img = cloneImage(img)
	img.Topics["a"].Partitions[1] = metadata.Partition{Index: 1, Leader: 2, LeaderEpoch: 3, Replicas: []int32{2, 3}, ISR: []int32{2, 3}}
	store.set(img)
	if _, ok := m.Get("a", 1); ok {
		t.Fatal("partition 1 still hosted after moving away")
	}
	if _, err := os.Stat(p1.lg().Dir()); !os.IsNotExist(err) {
		t.Fatalf("log of a moved-away partition: %v", err)
	}
	check(map[int32][]TopicPartition{})
}

func TestManagerISRMaintenance(t *testing.T) {
	m, store := newTestManager(t, [2]string{"replica.lag.time.max.ms", "1000"})
	brokers := []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}, {ID: 2, Host: "127.0.0.1", Port: 2}, {ID: 3, Host: "127.0.0.1", Port: 3, Fenced: true}}
	all := []int32{1, 2, 3}
	store.set(&metadata.Image{Brokers: brokers, Topics: map[string]*metadata.Topic{"a": {Name: "a", ID: metadata.NewTopicID(),
		Partitions: []metadata.Partition{{Index: 0, Leader: 1, LeaderEpoch: 1, PartitionEpoch: 1, Replicas: all, ISR: []int32{1, 2}}}}}})
	p, _ := m.Get("a", 0)
	appendN(t, p, 5)
	now := time.Now()
	lag := m.lagTime()
	if n := m.maintainISR(context.Background(), now, lag); n != 0 {
		t.Fatalf("%d changes while every member is within the lag", n)
	}
	// Follower 2 never fetches: out after the lag time.
	if n := m.maintainISR(context.Background(), now.Add(lag+time.Millisecond), lag); n != 1 || !slices.Equal(p.ISR(), []int32{1}) {
		t.Fatalf("%d changes, ISR %v", n, p.ISR())
	}
	if hw := p.HighWatermark(); hw != 5 {
		t.Fatalf("HW %d with the leader alone in the ISR", hw)
	}
	// Both followers catch up; only the live one joins, and the fetch
	// itself asks for the round.
	p.UpdateFollower(2, 5, now.Add(2*lag))
	p.UpdateFollower(3, 5, now.Add(2*lag))
	select {
	case <-m.isrKick:
	default:
		t.Fatal("a caught-up follower outside the ISR did not ask for an ISR round")
	}
	if n := m.maintainISR(context.Background(), now.Add(2*lag), lag); n != 1 || !slices.Equal(p.ISR(), []int32{1, 2}) {
		t.Fatalf("%d changes, ISR %v", n, p.ISR())
	}
	last := store.reqs[len(store.reqs)-1]
	if last.Leader != 1 || last.LeaderEpoch != 1 || last.PartitionEpoch != 2 {
		t.Fatalf("request %+v", last)
	}
	// The store saw a newer partition epoch than this node: the rejected
	// change waits for the next image.
	store.mu.Lock()
	store.img = cloneImage(store.img)
	store.img.Topics["a"].Partitions[0].PartitionEpoch = 9
	store.mu.Unlock()
	if n := m.maintainISR(context.Background(), now.Add(4*lag), lag); n != 0 || !slices.Equal(p.ISR(), []int32{1, 2}) {
		t.Fatalf("%d changes, ISR %v", n, p.ISR())
	}
	reqs := len(store.reqs)
	m.maintainISR(context.Background(), now.Add(4*lag), lag)
	if len(store.reqs) != reqs {
		t.Fatal("a rejected change was sent again before newer metadata")
	}
	store.set(store.Image())
	if n := m.maintainISR(context.Background(), now.Add(4*lag), lag); n != 1 || !slices.Equal(p.ISR(), []int32{1}) {
		t.Fatalf("after newer metadata: %d changes, ISR %v", n, p.ISR())
	}
}

// newTestManager returns a Manager for node 1 on a fresh directory with the
// given broker properties, backed by a fakeStore; both are closed with the test.
func newTestManager(t *testing.T, props ...[2]string) (*Manager, *fakeStore) {
	t.Helper()
	dir := t.TempDir()
	b, err := config.Load("", append([][2]string{{"log.dirs", dir}, {"node.id", "1"}}, props...))
	if err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{}
	m := NewManager(dir, b, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	store.m = m
	t.Cleanup(func() { m.Close() })
	return m, store
}

// TestClaimNewAndTornDirs: Apply claims new partition directories (a
// complete partition.metadata, no temp file left) and re-claims a
// directory whose partition.metadata is damaged but which holds no data
// (a claim cut short by a crash before syncClaims), while a damaged one
// with data stays untouched (damage_test).
func TestClaimNewAndTornDirs(t *testing.T) {
	m, store := newTestManager(t)
	id := metadata.NewTopicID()
	torn := filepath.Join(m.dir, "c-1")
	if err := os.MkdirAll(torn, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{idFile: "", "00000000000000000000.log": ""} {
		if err := os.WriteFile(filepath.Join(torn, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var parts []metadata.Partition
	for i := range 3 {
		parts = append(parts, metadata.Partition{Index: int32(i), Leader: 1, LeaderEpoch: 1, Replicas: []int32{1}, ISR: []int32{1}})
	}
	store.set(&metadata.Image{Brokers: []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}},
		Topics: map[string]*metadata.Topic{"c": {Name: "c", ID: id, Partitions: parts}}})
	for i := range 3 {
		if _, ok := m.Get("c", int32(i)); !ok {
			t.Fatalf("partition %d not open", i)
		}
		dir := filepath.Join(m.dir, fmt.Sprintf("c-%d", i))
		if b, err := os.ReadFile(filepath.Join(dir, idFile)); err != nil || string(b) != idFileContent(id) {
			t.Fatalf("%s: %q, %v", dir, b, err)
		}
		if _, err := os.Stat(filepath.Join(dir, idFile+".tmp")); !os.IsNotExist(err) {
			t.Fatalf("%s: temp file left: %v", dir, err)
		}
	}
}

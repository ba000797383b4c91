package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/record"
)

// jbodImage is an image where node 1 alone hosts and leads every partition
// of the named topics (n partitions each).
func jbodImage(n int, topics ...string) *metadata.Image {
	img := &metadata.Image{Brokers: []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}}, Topics: map[string]*metadata.Topic{}}
	for _, name := range topics {
		t := &metadata.Topic{Name: name, ID: metadata.NewTopicID()}
		for i := range n {
			t.Partitions = append(t.Partitions, metadata.Partition{Index: int32(i), Leader: 1, LeaderEpoch: 1, Replicas: []int32{1}, ISR: []int32{1}})
		}
		img.Topics[name] = t
	}
	return img
}

// partitionsIn lists the partition directories under a log dir.
func partitionsIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, ok := partitionDirName(e); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestManagerLogDirsPlacement: with three log dirs, new partitions go to the
// dir holding the fewest (7 partitions: 3, 2, 2), each in exactly one dir;
// after a restart with the dirs listed in another order every partition
// reopens where it is, with its data, and the next new partitions fill the
// emptiest dirs.
func TestManagerLogDirsPlacement(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	open := func(order ...int) (*Manager, *fakeStore) {
		b, err := config.Load("", [][2]string{{"log.dirs", dirs[order[0]]}, {"node.id", "1"}})
		if err != nil {
			t.Fatal(err)
		}
		store := &fakeStore{}
		var extra []string
		for _, i := range order[1:] {
			extra = append(extra, dirs[i])
		}
		m := NewManager(dirs[order[0]], b, store, slog.New(slog.NewTextHandler(io.Discard, nil)), extra...)
		store.m = m
		return m, store
	}
	m, store := open(0, 1, 2)
	img := jbodImage(7, "a")
	store.set(img)
	counts := func() []int {
		var out []int
		for _, d := range dirs {
			out = append(out, len(partitionsIn(t, d)))
		}
		return out
	}
	if got := counts(); !slices.Equal(got, []int{3, 2, 2}) {
		t.Fatalf("partitions per log dir %v, want [3 2 2]", got)
	}
	where := map[string]string{}
	for _, d := range dirs {
		for _, name := range partitionsIn(t, d) {
			if prev, dup := where[name]; dup {
				t.Fatalf("%s in both %s and %s", name, prev, d)
			}
			where[name] = d
		}
	}
	for i := range 7 {
		p, ok := m.Get("a", int32(i))
		if !ok {
			t.Fatalf("a-%d not hosted", i)
		}
		if got := filepath.Dir(p.Log().Dir()); got != where["a-"+strconv.Itoa(i)] {
			t.Fatalf("a-%d open in %s, its directory is in %s", i, got, where["a-"+strconv.Itoa(i)])
		}
		if _, err := p.Append(testBatch(t, 0, 1, 1), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart with the dirs in another order: nothing moves.
	m, store = open(2, 0, 1)
	t.Cleanup(func() { m.Close() })
	store.set(img)
	for i := range 7 {
		p, ok := m.Get("a", int32(i))
		if !ok {
			t.Fatalf("after restart: a-%d not hosted", i)
		}
		if got := filepath.Dir(p.Log().Dir()); got != where["a-"+strconv.Itoa(i)] {
			t.Fatalf("after restart: a-%d open in %s, its directory is in %s", i, got, where["a-"+strconv.Itoa(i)])
		}
		if leo := p.LogEndOffset(); leo != 1 {
			t.Fatalf("after restart: a-%d LEO %d, want 1", i, leo)
		}
	}
	// Two new partitions go to the two dirs holding 2 each.
	img2 := jbodImage(2, "b")
	img2.Topics["a"] = img.Topics["a"]
	store.set(img2)
	if got := counts(); !slices.Equal(got, []int{3, 3, 3}) {
		t.Fatalf("partitions per log dir after 2 more %v, want [3 3 3]", got)
	}
	// Deleting topic a frees its dirs: the next partitions fill them again.
	img3 := jbodImage(3, "c")
	img3.Topics["b"] = img2.Topics["b"]
	store.set(img3)
	m.deleteWG.Wait()
	if got := counts(); got[0]+got[1]+got[2] != 5 || slices.Max(got)-slices.Min(got) > 1 {
		t.Fatalf("partitions per log dir after deleting a and adding 3 %v, want 5 spread evenly", got)
	}
}

// offlineStore is a fakeStore that records offline replica reports.
type offlineStore struct {
	*fakeStore
	mu  sync.Mutex
	got []metadata.PartitionRef
}

func (s *offlineStore) OfflineReplicas(_ context.Context, parts []metadata.PartitionRef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, parts...)
	return nil
}

func (s *offlineStore) reported() []metadata.PartitionRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// TestManagerLogDirFailure: with two log dirs, an I/O error in one (its
// directory replaced by a file, so the next segment roll fails) takes that
// dir offline alone: its partitions are closed and reported to the
// controller, the other dir's partitions keep taking appends, Apply does not
// reopen the failed ones, and new partitions go to the dir that works.
func TestManagerLogDirFailure(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	b, err := config.Load("", [][2]string{{"log.dirs", dirA + "," + dirB}, {"node.id", "1"}, {"log.segment.bytes", "300"}})
	if err != nil {
		t.Fatal(err)
	}
	store := &offlineStore{fakeStore: &fakeStore{}}
	m := NewManager(dirA, b, store, slog.New(slog.NewTextHandler(io.Discard, nil)), dirB)
	store.m = m
	t.Cleanup(func() { m.Close() })
	img := jbodImage(4, "f")
	store.set(img)
	var inA, inB []int32
	for i := range int32(4) {
		p, ok := m.Get("f", i)
		if !ok {
			t.Fatalf("f-%d not hosted", i)
		}
		if filepath.Dir(p.Log().Dir()) == dirB {
			inB = append(inB, i)
		} else {
			inA = append(inA, i)
		}
	}
	if len(inA) != 2 || len(inB) != 2 {
		t.Fatalf("partitions in A %v, in B %v", inA, inB)
	}
	// Dir B "fails": gone, and a file in its place.
	if err := os.RemoveAll(dirB); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dirB, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := m.Get("f", inB[0])
	var appendErr error
	for range 100 {
		if _, appendErr = p.Append(testBatch(t, 0, 1, 5), time.Now()); appendErr != nil {
			break
		}
	}
	if appendErr == nil {
		t.Fatal("appends to a partition of the failed dir kept succeeding")
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.OfflineDirs()[dirB] == nil || len(store.reported()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dir B not offline or not reported after the I/O error %v: offline %v, reported %v", appendErr, m.OfflineDirs(), store.reported())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.OfflineDirs()[dirA] != nil {
		t.Fatal("dir A went offline too")
	}
	want := []metadata.PartitionRef{{Topic: "f", Partition: inB[0]}, {Topic: "f", Partition: inB[1]}}
	if got := store.reported(); !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
	for _, i := range inB {
		if _, ok := m.Get("f", i); ok {
			t.Fatalf("f-%d of the failed dir still hosted", i)
		}
	}
	for _, i := range inA {
		q, ok := m.Get("f", i)
		if !ok {
			t.Fatalf("f-%d of the working dir not hosted", i)
		}
		for range 20 { // rolls included
			if _, err := q.Append(testBatch(t, 0, 1, 5), time.Now()); err != nil {
				t.Fatalf("append to f-%d in the working dir: %v", i, err)
			}
		}
	}
	// Metadata changes do not reopen the failed partitions; new ones go to A.
	img2 := jbodImage(2, "g")
	img2.Topics["f"] = img.Topics["f"]
	if err := m.Apply(img2); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, i := range inB {
		if _, ok := m.Get("f", i); ok {
			t.Fatalf("f-%d reopened", i)
		}
	}
	for i := range int32(2) {
		q, ok := m.Get("g", i)
		if !ok || filepath.Dir(q.Log().Dir()) != dirA {
			t.Fatalf("new partition g-%d: hosted %v, want it in dir A", i, ok)
		}
	}
}

// TestManagerMoveReplica: a partition moves to another log dir while a
// writer keeps appending: afterwards it lives in the new dir only, its log
// holds every appended batch in order (the same bytes as a copy read before
// the switch, plus what followed), appends go on, and a restart opens it
// there with the same log end offset.
func TestManagerMoveReplica(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	b, err := config.Load("", [][2]string{{"log.dirs", dirA + "," + dirB}, {"node.id", "1"}, {"log.segment.bytes", "4096"}})
	if err != nil {
		t.Fatal(err)
	}
	open := func() (*Manager, *fakeStore) {
		store := &fakeStore{}
		m := NewManager(dirA, b, store, slog.New(slog.NewTextHandler(io.Discard, nil)), dirB)
		store.m = m
		return m, store
	}
	m, store := open()
	img := jbodImage(1, "mv")
	store.set(img)
	p, _ := m.Get("mv", 0)
	from := filepath.Dir(p.Log().Dir())
	to := dirA
	if from == dirA {
		to = dirB
	}
	for range 200 {
		if _, err := p.Append(testBatch(t, 0, 1, 3), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	stop, done := make(chan struct{}), make(chan int)
	go func() { // a writer during the move
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if _, err := p.Append(testBatch(t, 0, 1, 3), time.Now()); err != nil {
				t.Error(err)
				done <- n
				return
			}
			n++
		}
	}()
	if err := m.MoveReplica("mv", 0, to); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for filepath.Dir(p.Log().Dir()) != to || len(m.Moving()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not moved: in %s, moving %v", p.Log().Dir(), m.Moving())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	written := 200 + <-done
	for range 10 {
		if _, err := p.Append(testBatch(t, 0, 1, 3), time.Now()); err != nil {
			t.Fatalf("append after the move: %v", err)
		}
	}
	written += 10
	if leo := p.LogEndOffset(); leo != int64(3*written) {
		t.Fatalf("LEO %d after %d batches of 3", leo, written)
	}
	// Every batch is there, in order, densely.
	next := int64(0)
	if err := p.Log().ScanHeaders(0, func(h record.Header) error {
		if h.BaseOffset != next {
			return fmt.Errorf("batch at %d, want %d", h.BaseOffset, next)
		}
		next = h.NextOffset()
		return nil
	}); err != nil || next != int64(3*written) {
		t.Fatalf("scan after the move: %v (end %d)", err, next)
	}
	m.deleteWG.Wait()
	if got := partitionsIn(t, from); len(got) != 0 {
		t.Fatalf("left in the old dir: %v", got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m, store = open()
	t.Cleanup(func() { m.Close() })
	store.set(img)
	q, ok := m.Get("mv", 0)
	if !ok || filepath.Dir(q.Log().Dir()) != to || q.LogEndOffset() != int64(3*written) {
		t.Fatalf("after restart: hosted %v, LEO %d, want it in %s with LEO %d", ok, q.LogEndOffset(), to, 3*written)
	}
	if err := m.MoveReplica("mv", 0, "/nonexistent"); !errors.Is(err, ErrLogDirNotFound) {
		t.Fatalf("move to an unknown dir: %v", err)
	}
	if err := m.MoveReplica("nope", 0, to); !errors.Is(err, ErrReplicaNotAvailable) {
		t.Fatalf("move of an unhosted partition: %v", err)
	}
}

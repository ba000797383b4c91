package replica

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
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

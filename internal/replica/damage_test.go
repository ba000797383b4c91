package replica

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/record"
	"strand/internal/testcluster"
)

// damagedTopic is the topic of the damage tests: 64 KiB segments.
func damagedTopic(id metadata.TopicID, leader int32, replicas []int32) *metadata.Image {
	return &metadata.Image{
		Brokers: []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}, {ID: 2, Host: "127.0.0.1", Port: 2}, {ID: 3, Host: "127.0.0.1", Port: 3}},
		Topics: map[string]*metadata.Topic{"d": {Name: "d", ID: id, Configs: map[string]string{"segment.bytes": "65536"},
			Partitions: []metadata.Partition{{Index: 0, Leader: leader, LeaderEpoch: 1, PartitionEpoch: 1, Replicas: replicas, ISR: replicas}}}},
	}
}

// managerOn returns a manager for node 1 on dir.
func managerOn(t *testing.T, dir string) (*Manager, *fakeStore) {
	t.Helper()
	b, err := config.Load("", [][2]string{{"log.dirs", dir}, {"node.id", "1"}, {"replica.fetch.backoff.ms", "10"}})
	if err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{}
	m := NewManager(dir, b, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	store.m = m
	return m, store
}

// writeDamaged writes 20,000 records (in batches of 10, 7+ segments) to
// partition d-0 led by node 1, closes the manager, and overwrites 16 bytes
// in the middle of the third segment. With header, the bytes overwritten
// are a batch header's and the producer-state snapshots are removed (as
// after a crash, or with logs written by an older version), so the open
// replays every header and meets the damage. It returns the data dir and
// the topic id.
func writeDamaged(t *testing.T, header ...bool) (string, metadata.TopicID) {
	t.Helper()
	dir := t.TempDir()
	id := metadata.NewTopicID()
	m, store := managerOn(t, dir)
	store.set(damagedTopic(id, 1, []int32{1}))
	p, ok := m.Get("d", 0)
	if !ok {
		t.Fatal("partition not opened")
	}
	for i := 0; i < 2000; i++ {
		recs := make([]record.Record, 10)
		for j := range recs {
			recs[j] = record.Record{Timestamp: int64(i), Value: []byte(fmt.Sprintf("value-%06d", i*10+j))}
		}
		if _, err := p.Append(record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs}), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "d-0", "*.log"))
	slices.Sort(logs)
	if len(logs) < 5 {
		t.Fatalf("%d segments, want >= 5", len(logs))
	}
	if len(header) > 0 && header[0] {
		if _, err := testcluster.DamageBatchHeader(logs[2]); err != nil {
			t.Fatal(err)
		}
		snaps, _ := filepath.Glob(filepath.Join(dir, "d-0", "*"+snapshotSuffix))
		for _, f := range snaps {
			os.Remove(f)
		}
	} else {
		damage(t, logs[2], 0.5)
	}
	return dir, id
}

// damage overwrites 16 bytes at the fraction at of file's length.
func damage(t *testing.T, file string, at float64) {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("0123456789abcdef"), int64(float64(st.Size())*at)); err != nil {
		t.Fatal(err)
	}
}

// readAll reads the partition from its start up to the HW (or the LEO with
// replica), stepping over a damaged range (whose reads must fail with
// record.ErrCorrupt) one offset at a time. It returns the values read, the
// offsets that failed and the number of batches read.
func readAll(t *testing.T, p *Partition, replica bool) (values map[string]bool, failed []int64, batches int) {
	t.Helper()
	values = map[string]bool{}
	read, end := p.Read, p.HighWatermark()
	if replica {
		read, end = p.ReadReplica, p.LogEndOffset()
	}
	for off := p.LogStartOffset(); off < end; {
		b, err := read(off, 1<<20, true)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("read at %d: %v", off, err)
			}
			failed = append(failed, off)
			off++
			continue
		}
		if err := record.Split(b, func(batch []byte) error {
			batches++
			recs, err := record.Records(batch)
			for _, r := range recs {
				if r.Offset >= off {
					values[string(r.Value)] = true
				}
				off = r.Offset + 1
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return values, failed, batches
}

// TestDamagedMiddleSegmentKeepsPartition reproduces issue 8 §1: a damaged
// batch in an older segment of a single-replica partition must neither fail
// the open nor delete the directory; the intact data stays readable, the
// damaged offsets fail with ErrCorrupt, and new writes are accepted.
func TestDamagedMiddleSegmentKeepsPartition(t *testing.T) {
	for _, header := range []bool{false, true} {
		t.Run(fmt.Sprint("header=", header), func(t *testing.T) { testDamagedMiddleSegment(t, header) })
	}
}

func testDamagedMiddleSegment(t *testing.T, header bool) {
	dir, id := writeDamaged(t, header)
	m, store := managerOn(t, dir)
	defer m.Close()
	store.set(damagedTopic(id, 1, []int32{1}))
	m.RemoveStrays(store.Image())
	p, ok := m.Get("d", 0)
	if !ok {
		t.Fatal("damaged partition not opened")
	}
	if _, err := os.Stat(filepath.Join(dir, "d-0")); err != nil {
		t.Fatalf("partition directory: %v", err)
	}
	if leo := p.LogEndOffset(); leo != 20000 {
		t.Fatalf("LEO %d, want 20000", leo)
	}
	waitUntil(t, "damage recorded", func() error {
		if _, ok := p.log.FirstCorruptOffset(); !ok {
			return errors.New("no corrupt region")
		}
		return nil
	})
	values, failed, _ := readAll(t, p, false)
	if len(failed) == 0 || len(failed) > 1000 {
		t.Fatalf("%d damaged offsets", len(failed))
	}
	if len(values)+len(failed) != 20000 {
		t.Fatalf("%d records readable, %d damaged, want 20000 in all", len(values), len(failed))
	}
	for i := 0; i < int(failed[0]); i++ {
		if !values[fmt.Sprintf("value-%06d", i)] {
			t.Fatalf("record %d of the intact prefix is missing", i)
		}
	}
	if res := appendN(t, p, 3); res.BaseOffset != 20000 {
		t.Fatalf("append after damage at %d", res.BaseOffset)
	}
}

// TestDamagedFollowerHeals: a follower whose log is damaged truncates to its
// last intact batch (so that it re-fetches the rest from the leader).
func TestDamagedFollowerHeals(t *testing.T) {
	dir, id := writeDamaged(t)
	m, store := managerOn(t, dir)
	defer m.Close()
	store.set(damagedTopic(id, 2, []int32{2, 1}))
	p, ok := m.Get("d", 0)
	if !ok {
		t.Fatal("damaged partition not opened")
	}
	waitUntil(t, "follower truncated to its intact prefix", func() error {
		if _, ok := p.log.FirstCorruptOffset(); ok || p.LogEndOffset() >= 20000 {
			return fmt.Errorf("LEO %d", p.LogEndOffset())
		}
		return nil
	})
	values, failed, batches := readAll(t, p, true)
	if len(failed) > 0 || batches*10 != int(p.LogEndOffset()) || len(values) != int(p.LogEndOffset()) || batches == 0 {
		t.Fatalf("%d intact batches, %d values, %d damaged offsets, LEO %d", batches, len(values), len(failed), p.LogEndOffset())
	}
}

// TestRemoveStraysOnlyForDeletedTopics: RemoveStrays renames and removes
// the directories of a deleted topic, of a topic deleted and re-created, of
// a replica moved away and leftovers of an interrupted deletion, and leaves
// the one of a hosted replica that failed to open.
func TestRemoveStraysOnlyForDeletedTopics(t *testing.T) {
	m, store := newTestManager(t)
	id, movedID := metadata.NewTopicID(), metadata.NewTopicID()
	img := damagedTopic(id, 1, []int32{1})
	img.Topics["moved"] = &metadata.Topic{Name: "moved", ID: movedID, Partitions: []metadata.Partition{{Index: 0, Leader: 2, Replicas: []int32{2}, ISR: []int32{2}}}}
	img.Topics["again"] = &metadata.Topic{Name: "again", ID: metadata.NewTopicID(), Partitions: []metadata.Partition{{Index: 0, Leader: 2, Replicas: []int32{2}, ISR: []int32{2}}}}
	img.Topics["dmg"] = &metadata.Topic{Name: "dmg", ID: metadata.NewTopicID(), Partitions: []metadata.Partition{{Index: 0, Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}}
	// dmg-0 is hosted here, but its partition.metadata is damaged: the open
	// fails and the directory stays as it is.
	if err := os.MkdirAll(filepath.Join(m.dir, "dmg-0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "dmg-0", idFile), []byte("topic_id: \x00garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "dmg-0", "00000000000000000000.log"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(img); err == nil {
		t.Fatal("a partition with a damaged partition.metadata opened")
	}
	store.set(img)
	// d-0 failed to open: hosted per the metadata, absent from m.parts.
	m.mu.Lock()
	m.dropPartitionKeepDir(t, TopicPartition{"d", 0}, m.parts[TopicPartition{"d", 0}])
	m.mu.Unlock()
	mkdir := func(name string, id metadata.TopicID) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(m.dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(m.dir, name, idFile), []byte("topic_id: "+id.String()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("gone-0", metadata.NewTopicID())
	mkdir("moved-0", movedID)
	mkdir("again-0", metadata.NewTopicID())
	mkdir("d-7", id)
	mkdir("x-0.0123-delete", metadata.NewTopicID())
	m.RemoveStrays(img)
	m.deleteWG.Wait()
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"d-0", "dmg-0"}) {
		t.Fatalf("data dir holds %v, want [d-0 dmg-0]", names)
	}
	if b, err := os.ReadFile(filepath.Join(m.dir, "dmg-0", "00000000000000000000.log")); err != nil || string(b) != "data" {
		t.Fatalf("the log of the partition with a damaged partition.metadata: %q, %v", b, err)
	}
	if logs, _ := filepath.Glob(filepath.Join(m.dir, "d-0", "*.log")); len(logs) == 0 {
		t.Fatal("the log of the partition that failed to open was touched")
	}
}

// dropPartitionKeepDir closes a hosted partition without deleting its
// directory, as a failed open leaves it. Called with m.mu held.
func (m *Manager) dropPartitionKeepDir(t *testing.T, tp TopicPartition, p *Partition) {
	t.Helper()
	delete(m.parts, tp)
	if err := p.log.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReadOfNewDamageRecordsIt: damage appearing while the broker runs is
// recorded after the first read that meets it (via a background
// verification), and later reads of it ask for no more verifications.
func TestReadOfNewDamageRecordsIt(t *testing.T) {
	m, store := newTestManager(t)
	store.set(damagedTopic(metadata.NewTopicID(), 1, []int32{1}))
	p, _ := m.Get("d", 0)
	for range 100 {
		appendN(t, p, 10)
	}
	waitUntil(t, "the open's verification done", func() error {
		m.verify.mu.Lock()
		defer m.verify.mu.Unlock()
		if m.verify.running {
			return errors.New("running")
		}
		return nil
	})
	logs, _ := filepath.Glob(filepath.Join(p.log.Dir(), "*.log"))
	damage(t, logs[0], 0.5)
	var off int64 = -1
	for o := int64(0); o < p.HighWatermark(); o += 10 {
		if _, err := p.Read(o, 1, true); errors.Is(err, record.ErrCorrupt) {
			off = o
			p.ReadFailed(o, err)
			break
		}
	}
	if off < 0 {
		t.Fatal("no read met the damage")
	}
	waitUntil(t, "damage recorded", func() error {
		if !p.log.KnownCorrupt(off) {
			return errors.New("not recorded")
		}
		return nil
	})
	before := p.readErrs.lastVerify.Load()
	_, err := p.Read(off, 1, true)
	p.ReadFailed(off, err)
	if !errors.Is(err, record.ErrCorrupt) || p.readErrs.lastVerify.Load() != before {
		t.Fatalf("read of recorded damage: %v; verification asked again: %v", err, p.readErrs.lastVerify.Load() != before)
	}
}

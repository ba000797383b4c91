package replica

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/record"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers (log handlers
// of partitions opened at once).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCleanShutdownRecord: Close records the cleanly closed partitions of
// each log dir in one file (no per-log marker); the next manager takes the
// record (removing it before any log opens) and opens the listed logs
// without recovery; a crash after that start finds no record, so every log
// recovers (a torn tail is cut).
func TestCleanShutdownRecord(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load("", [][2]string{{"log.dirs", dir}, {"node.id", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	img := &metadata.Image{Brokers: []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}},
		Topics: map[string]*metadata.Topic{"t": {Name: "t", ID: metadata.NewTopicID()}}}
	const n = 3
	for i := range n {
		img.Topics["t"].Partitions = append(img.Topics["t"].Partitions,
			metadata.Partition{Index: int32(i), Leader: 1, LeaderEpoch: 1, Replicas: []int32{1}, ISR: []int32{1}})
	}
	start := func() (*Manager, *syncBuffer) {
		var out syncBuffer
		m := NewManager(dir, cfg, &fakeStore{}, slog.New(slog.NewTextHandler(&out, nil)))
		if err := m.Apply(img); err != nil {
			t.Fatal(err)
		}
		return m, &out
	}
	m, _ := start()
	for i := range n {
		p, _ := m.Get("t", int32(i))
		for range i + 1 {
			b := record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
				Records: []record.Record{{Timestamp: 1, Value: []byte("v")}}})
			if _, err := p.Append(b, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, cleanShutdownFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0\n3\nt 0 1\nt 1 2\nt 2 3\n"; string(b) != want {
		t.Fatalf("clean shutdown record %q, want %q", b, want)
	}
	for i := range n {
		pdir := filepath.Join(dir, "t-"+string(rune('0'+i)))
		if _, err := os.Stat(filepath.Join(pdir, ".clean-shutdown")); !os.IsNotExist(err) {
			t.Fatalf("partition %d has a per-log marker: %v", i, err)
		}
		if offs := snapshotOffsets(pdir); len(offs) != 0 {
			t.Fatalf("partition %d of a few bytes has producer snapshots %v", i, offs)
		}
	}

	m, out := start()
	if _, err := os.Stat(filepath.Join(dir, cleanShutdownFile)); !os.IsNotExist(err) {
		t.Fatalf("the record survived the start that took it: %v", err)
	}
	if s := out.String(); strings.Contains(s, "recovered") {
		t.Fatalf("listed logs were recovered: %s", s)
	}
	for i := range n {
		p, _ := m.Get("t", int32(i))
		if got := p.LogEndOffset(); got != int64(i+1) {
			t.Fatalf("partition %d LEO %d, want %d", i, got, i+1)
		}
	}
	// A crash after that start (m is never closed), with a torn write at
	// the end of t-0: every log recovers, and the torn tail is cut.
	f, err := os.OpenFile(filepath.Join(dir, "t-0", "00000000000000000000.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("torn write, not a batch")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m2, out := start()
	if got := strings.Count(out.String(), "recovered log after unclean shutdown"); got != n {
		t.Fatalf("%d logs recovered after a crash, want %d: %s", got, n, out)
	}
	if !strings.Contains(out.String(), "truncating torn tail") {
		t.Fatalf("torn tail not cut: %s", out)
	}
	for i := range n {
		p, _ := m2.Get("t", int32(i))
		if got := p.LogEndOffset(); got != int64(i+1) {
			t.Fatalf("partition %d LEO %d after the crash, want %d", i, got, i+1)
		}
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	m.Close() // the crashed manager's goroutines and files
}

// TestCleanShutdownRecordDamaged: an unreadable record is ignored (every
// log recovers) and removed.
func TestCleanShutdownRecordDamaged(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load("", [][2]string{{"log.dirs", dir}, {"node.id", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, cleanShutdownFile), []byte("0\n2\nt 0 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	m := NewManager(dir, cfg, &fakeStore{}, slog.New(slog.NewTextHandler(&out, nil)))
	defer m.Close()
	if len(m.startClean) != 0 || !strings.Contains(out.String(), "ignoring the clean shutdown record") {
		t.Fatalf("damaged record taken: %v, %s", m.startClean, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, cleanShutdownFile)); !os.IsNotExist(err) {
		t.Fatalf("damaged record kept: %v", err)
	}
}

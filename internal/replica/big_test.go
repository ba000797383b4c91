package replica

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/record"
)

// TestManyPartitions hosts one topic of many partitions on a single node
// (300; 10,000 with STRAND_BIG=1, or STRAND_BIG_PARTITIONS): it creates them, appends a record to each, checks that the process
// holds about one file descriptor per partition (not three: index files are
// opened lazily), closes the manager, opens it again from disk and reads
// every record back, reporting the time of each step. The reopen must not
// recover any log (the clean shutdown record lists them all).
func TestManyPartitions(t *testing.T) {
	n := 300
	if os.Getenv("STRAND_BIG") != "" {
		n = 10000
	}
	if v := os.Getenv("STRAND_BIG_PARTITIONS"); v != "" {
		fmt.Sscan(v, &n)
	}
	dir := t.TempDir()
	cfg, err := config.Load("", [][2]string{{"log.dirs", dir}, {"node.id", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	img := &metadata.Image{Brokers: []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}},
		Topics: map[string]*metadata.Topic{"big": {Name: "big", ID: metadata.NewTopicID()}}}
	for i := range n {
		img.Topics["big"].Partitions = append(img.Topics["big"].Partitions,
			metadata.Partition{Index: int32(i), Leader: 1, LeaderEpoch: 1, Replicas: []int32{1}, ISR: []int32{1}})
	}
	fdsBefore := openFDs(t)
	start := time.Now()
	m := NewManager(dir, cfg, &fakeStore{}, quiet)
	if err := m.Apply(img); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d partitions in %v", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	for i := range n {
		p, ok := m.Get("big", int32(i))
		if !ok {
			t.Fatalf("partition %d not open", i)
		}
		b := record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			Records: []record.Record{{Timestamp: 1, Value: []byte(fmt.Sprint("v", i))}}})
		if _, err := p.Append(b, time.Now()); err != nil {
			t.Fatalf("append to %d: %v", i, err)
		}
	}
	t.Logf("appended to %d partitions in %v", n, time.Since(start).Round(time.Millisecond))
	if fds := openFDs(t) - fdsBefore; fds > n+n/10+100 {
		t.Fatalf("%d partitions hold %d file descriptors", n, fds)
	} else {
		t.Logf("%d partitions hold %d file descriptors", n, fds)
	}
	start = time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("closed in %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	var out syncBuffer
	m = NewManager(dir, cfg, &fakeStore{}, slog.New(slog.NewTextHandler(&out, nil)))
	defer m.Close()
	if err := m.Apply(img); err != nil {
		t.Fatal(err)
	}
	t.Logf("reopened in %v", time.Since(start).Round(time.Millisecond))
	if s := out.String(); strings.Contains(s, "recovered log") || strings.Contains(s, "rebuilding") {
		t.Fatalf("the reopen after a clean shutdown recovered logs: %.2000s", s)
	}
	if fds := openFDs(t) - fdsBefore; fds > n+n/10+100 {
		t.Fatalf("after reopening, %d partitions hold %d file descriptors", n, fds)
	}
	for i := range n {
		p, ok := m.Get("big", int32(i))
		if !ok {
			t.Fatalf("partition %d not open after restart", i)
		}
		b, err := p.Read(0, 1<<20, true)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		recs, err := record.Records(b)
		if err != nil || len(recs) != 1 || string(recs[0].Value) != fmt.Sprint("v", i) {
			t.Fatalf("partition %d read back %d records (%v)", i, len(recs), err)
		}
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	e, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

package replica

import (
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"syscall"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
)

// BenchmarkApplyISRChange measures Manager.Apply of an image in which one
// partition's ISR changed, on a broker hosting many partitions
// (STRAND_BENCH_APPLY_PARTITIONS, default 2000; half led by this broker,
// half followed): the cost every ISR change or leader move of the cluster
// has on every broker.
func BenchmarkApplyISRChange(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("STRAND_BENCH_APPLY_PARTITIONS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	cfg, err := config.Load("", [][2]string{{"log.dirs", dir}, {"node.id", "1"}})
	if err != nil {
		b.Fatal(err)
	}
	img := &metadata.Image{Brokers: []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}, {ID: 2, Host: "127.0.0.1", Port: 2}},
		Topics: map[string]*metadata.Topic{"big": {Name: "big", ID: metadata.NewTopicID()}}}
	for i := range n {
		leader := int32(1 + i%2)
		img.Topics["big"].Partitions = append(img.Topics["big"].Partitions,
			metadata.Partition{Index: int32(i), Leader: leader, LeaderEpoch: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}})
	}
	m := NewManager(dir, cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.Close()
	if err := m.Apply(img); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		next := cloneImage(img)
		p := &next.Topics["big"].Partitions[i%n]
		if len(p.ISR) == 2 {
			p.ISR = []int32{p.Leader}
		} else {
			p.ISR = []int32{1, 2}
		}
		p.PartitionEpoch++
		if err := m.Apply(next); err != nil {
			b.Fatal(err)
		}
		img = next
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime returns the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSamePartitionCoversEveryField fails when metadata.Partition gains a
// field that samePartition does not compare (Apply would then skip a
// partition whose new field changed).
func TestSamePartitionCoversEveryField(t *testing.T) {
	if n := reflect.TypeOf(metadata.Partition{}).NumField(); n != 8 {
		t.Fatalf("metadata.Partition has %d fields; update samePartition and this test", n)
	}
	base := metadata.Partition{Index: 1, Leader: 2, LeaderEpoch: 3, PartitionEpoch: 4, Replicas: []int32{1, 2}, ISR: []int32{1},
		AddingReplicas: []int32{3}, RemovingReplicas: []int32{4}}
	if !samePartition(base, base) {
		t.Fatal("a partition differs from itself")
	}
	for i, change := range []func(*metadata.Partition){
		func(p *metadata.Partition) { p.Index++ },
		func(p *metadata.Partition) { p.Leader++ },
		func(p *metadata.Partition) { p.LeaderEpoch++ },
		func(p *metadata.Partition) { p.PartitionEpoch++ },
		func(p *metadata.Partition) { p.Replicas = []int32{2, 1} },
		func(p *metadata.Partition) { p.ISR = []int32{1, 2} },
		func(p *metadata.Partition) { p.AddingReplicas = nil },
		func(p *metadata.Partition) { p.RemovingReplicas = []int32{5} },
	} {
		q := base
		change(&q)
		if samePartition(base, q) {
			t.Fatalf("change %d not seen", i)
		}
	}
}

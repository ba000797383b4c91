package replica

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"strand/internal/config"
	"strand/internal/metadata"
)

// BenchmarkCreateTopic measures Manager.Apply creating every partition of a
// new single-replica topic led by this node (issue 13: a 1000-partition
// topic in < 0.5 s), directories, files and syncs included. Each iteration
// uses a fresh log dir.
func BenchmarkCreateTopic(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				cfg, err := config.Load("", [][2]string{{"log.dirs", dir}, {"node.id", "1"}})
				if err != nil {
					b.Fatal(err)
				}
				m := NewManager(dir, cfg, &fakeStore{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
				img := &metadata.Image{Brokers: []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}},
					Topics: map[string]*metadata.Topic{"t": {Name: "t", ID: metadata.NewTopicID()}}}
				for i := range n {
					img.Topics["t"].Partitions = append(img.Topics["t"].Partitions,
						metadata.Partition{Index: int32(i), Leader: 1, LeaderEpoch: 1, Replicas: []int32{1}, ISR: []int32{1}})
				}
				b.StartTimer()
				if err := m.Apply(img); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if got := len(m.All()); got != n {
					b.Fatalf("%d partitions open, want %d", got, n)
				}
				m.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/topic")
		})
	}
}

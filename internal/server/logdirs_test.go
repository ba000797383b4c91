package server

import (
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDescribeLogDirsJBOD: a broker with two log.dirs places a 4-partition
// topic two and two, DescribeLogDirs (kadm) reports each directory with its
// own partitions and their sizes, and after a restart every partition is
// still where it was, with its records.
func TestDescribeLogDirsJBOD(t *testing.T) {
	second := t.TempDir()
	n := &node{t: t, dir: t.TempDir(), addr: freeAddr(t)}
	n.sets = [][2]string{{"log.dirs", n.dir + "," + second}}
	n.start()
	t.Cleanup(n.stop)
	dirs := []string{n.dir, second}
	for i, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			t.Fatal(err)
		}
		dirs[i] = abs
	}
	cl := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("jbod"))
	if rt := createTopic(t, cl, "jbod", 4, nil); rt.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(rt.ErrorCode))
	}
	for p := range int32(4) {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Partition: p, Value: []byte("record")}).FirstErr(); err != nil {
			t.Fatalf("produce to partition %d: %v", p, err)
		}
	}
	layout := func() map[int32]string {
		t.Helper()
		adm := kadm.NewClient(n.client())
		all, err := adm.DescribeAllLogDirs(ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := all[1]
		if len(got) != 2 {
			t.Fatalf("%d log dirs described, want 2: %v", len(got), got)
		}
		where := map[int32]string{}
		for _, d := range dirs {
			ld, ok := got[d]
			if !ok || ld.Err != nil {
				t.Fatalf("log dir %s: described %v, err %v", d, ok, ld.Err)
			}
			if ld.TotalBytes <= 0 {
				t.Fatalf("log dir %s: total bytes %d", d, ld.TotalBytes)
			}
			if n := len(ld.Topics["jbod"]); n != 2 {
				t.Fatalf("log dir %s holds %d partitions of jbod, want 2", d, n)
			}
			for p, dp := range ld.Topics["jbod"] {
				if dp.Size <= 0 {
					t.Fatalf("partition %d in %s: size %d", p, d, dp.Size)
				}
				if prev, dup := where[p]; dup {
					t.Fatalf("partition %d described in %s and %s", p, prev, d)
				}
				where[p] = d
			}
		}
		return where
	}
	before := layout()
	n.stop()
	n.start()
	after := layout()
	for p, d := range before {
		if after[p] != d {
			t.Fatalf("partition %d moved from %s to %s across a restart", p, d, after[p])
		}
	}
	consumer, got := n.client(kgo.ConsumeTopics("jbod"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), 0
	for c := ctx(t); got < 4; {
		fs := consumer.PollFetches(c)
		if c.Err() != nil {
			t.Fatalf("%d of 4 records read after the restart", got)
		}
		got += fs.NumRecords()
	}
}

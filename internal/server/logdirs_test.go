package server

import (
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

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

// TestAlterReplicaLogDirs: kadm's AlterReplicaLogDirs moves a partition to
// the broker's other log dir while a producer keeps writing to it
// (acks=all): DescribeLogDirs then shows it in the new dir, and every
// acknowledged record is read back. An unknown dir is LOG_DIR_NOT_FOUND, an
// unknown partition UNKNOWN_TOPIC_OR_PARTITION.
func TestAlterReplicaLogDirs(t *testing.T) {
	second := t.TempDir()
	n := &node{t: t, dir: t.TempDir(), addr: freeAddr(t)}
	n.sets = [][2]string{{"log.dirs", n.dir + "," + second}, {"log.segment.bytes", "8192"}}
	n.start()
	t.Cleanup(n.stop)
	cl := n.client(kgo.DefaultProduceTopic("mv"), kgo.ProducerLinger(0))
	if rt := createTopic(t, cl, "mv", 1, nil); rt.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(rt.ErrorCode))
	}
	adm := kadm.NewClient(n.client())
	where := func() string {
		all, err := adm.DescribeAllLogDirs(ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		for dir, d := range all[1] {
			if p, ok := d.Topics["mv"][0]; ok && !p.IsFuture {
				return dir
			}
		}
		return ""
	}
	from := where()
	to, _ := filepath.Abs(second)
	if from == to {
		to, _ = filepath.Abs(n.dir)
	}
	var acked sync.Map
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		i := 0
		for {
			select {
			case <-stop:
				done <- i
				return
			default:
			}
			v := strconv.Itoa(i)
			if err := cl.ProduceSync(ctx(t), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Errorf("produce %d: %v", i, err)
				<-stop
				done <- i
				return
			}
			acked.Store(v, true)
			i++
		}
	}()
	var req kadm.AlterReplicaLogDirsReq
	req.Add(to, kadm.TopicsSet{"mv": {0: {}}})
	req.Add("/not/a/log/dir", kadm.TopicsSet{"mv": {7: {}}}) // the dir is checked first
	req.Add(to, kadm.TopicsSet{"nope": {0: {}}})
	time.Sleep(200 * time.Millisecond) // let some records land before the move starts
	resps, err := adm.AlterBrokerReplicaLogDirs(ctx(t), 1, req)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resps.Sorted() {
		var want error
		switch {
		case r.Topic == "nope":
			want = kerr.UnknownTopicOrPartition
		case r.Dir != to:
			want = kerr.LogDirNotFound
		}
		if !errors.Is(r.Err, want) && !(want == nil && r.Err == nil) {
			t.Fatalf("%s-%d to %s: %v, want %v", r.Topic, r.Partition, r.Dir, r.Err, want)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for where() != to {
		if time.Now().After(deadline) {
			t.Fatalf("partition still in %s", where())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // more records after the switch
	close(stop)
	produced := <-done
	consumer := n.client(kgo.ConsumeTopics("mv"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]bool{}
	c := ctx(t)
	for missing := true; missing; {
		fs := consumer.PollFetches(c)
		if c.Err() != nil {
			t.Fatalf("read %d records of %d produced", len(seen), produced)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		missing = false
		acked.Range(func(k, _ any) bool {
			missing = missing || !seen[k.(string)]
			return !missing
		})
	}
	t.Logf("%d records produced during the move, all acknowledged ones read back", produced)
}

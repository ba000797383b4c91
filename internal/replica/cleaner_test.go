package replica

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/record"
)

func TestLogConfigCleanupPolicy(t *testing.T) {
	b, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		policy           string
		compact, retains bool
	}{
		{"delete", false, true},
		{"compact", true, false},
		{"compact,delete", true, true},
		{"delete, compact", true, true},
	} {
		lc := LogConfig(b.TopicConfig(map[string]string{"cleanup.policy": c.policy}))
		if lc.Compact != c.compact || (lc.RetentionMs == 604800000) != c.retains {
			t.Errorf("%s: Compact %v RetentionMs %d", c.policy, lc.Compact, lc.RetentionMs)
		}
		if lc.MinCleanableDirtyRatio != 0.5 || lc.DeleteRetentionMs != 86400000 || lc.MinCompactionLagMs != 0 {
			t.Errorf("%s: defaults %+v", c.policy, lc)
		}
	}
	lc := LogConfig(b.TopicConfig(map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.25",
		"delete.retention.ms": "5", "min.compaction.lag.ms": "7"}))
	if lc.MinCleanableDirtyRatio != 0.25 || lc.DeleteRetentionMs != 5 || lc.MinCompactionLagMs != 7 {
		t.Errorf("overrides: %+v", lc)
	}
	if err := config.ValidateTopicConfigs(map[string]string{"min.cleanable.dirty.ratio": "1.5"}); err == nil {
		t.Error("ratio 1.5 accepted")
	}
}

func TestCleanerCompactsCompactedTopicsOnly(t *testing.T) {
	dir := t.TempDir()
	b, err := config.Load("", [][2]string{{"log.dirs", dir}})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(dir, b, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.Close()
	topic := func(name, policy string) *metadata.Topic {
		return &metadata.Topic{Name: name, ID: metadata.NewTopicID(),
			Configs:    map[string]string{"cleanup.policy": policy, "segment.bytes": "1024"},
			Partitions: []metadata.Partition{{Index: 0, Leader: 1, LeaderEpoch: 1, Replicas: []int32{1}, ISR: []int32{1}}}}
	}
	img := &metadata.Image{Topics: map[string]*metadata.Topic{"c": topic("c", "compact"), "d": topic("d", "delete")}}
	if err := m.Apply(img); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"c", "d"} {
		p, _ := m.Get(name, 0)
		for i := 0; i < 200; i++ {
			recs := []record.Record{{Timestamp: 1, Key: []byte(fmt.Sprint("k", i%5)), Value: []byte(fmt.Sprint("value-", i))}}
			bt := record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
			if _, err := p.Append(bt, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, _ := m.Get("c", 0)
	d, _ := m.Get("d", 0)
	cSize, dSize := c.Log().Size(), d.Log().Size()
	if n := m.cleanOnce(context.Background(), time.Now()); n != 1 {
		t.Fatalf("cleanOnce compacted %d partitions", n)
	}
	if c.Log().Size() >= cSize/2 || d.Log().Size() != dSize {
		t.Fatalf("sizes: compacted %d -> %d, delete %d -> %d", cSize, c.Log().Size(), dSize, d.Log().Size())
	}
	if n := m.cleanOnce(context.Background(), time.Now()); n != 0 {
		t.Fatalf("second round compacted %d partitions", n)
	}
	// A keyless record is rejected by the compacted topic.
	keyless := record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: []record.Record{{Value: []byte("v")}}})
	if _, err := c.Append(keyless, time.Now()); err == nil {
		t.Fatal("keyless record accepted by a compacted topic")
	}
	// RunCleaner stops with its context.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.RunCleaner(ctx, time.Millisecond); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
}

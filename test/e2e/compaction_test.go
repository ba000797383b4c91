package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// TestCompaction: a keyed topic with cleanup.policy=compact, written with
// overwrites and tombstones, is compacted by the broker's cleaner to the
// latest value per key; surviving records keep the offsets they were
// written at, and deleted keys read as a tombstone or not at all.
func TestCompaction(t *testing.T) {
	const (
		topic    = "compacted"
		keys     = 40
		versions = 25
	)
	n := testcluster.StartNode(t, testcluster.WithSet("log.cleaner.backoff.ms", "200"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := func(v string) *string { return &v }
	createTopic(ctx, t, newAdmin(t, n), topic, 1, map[string]*string{
		"cleanup.policy":            s("compact"),
		"segment.bytes":             s("8192"),
		"min.cleanable.dirty.ratio": s("0.01"),
		"delete.retention.ms":       s("0"),
	})
	cl := newClient(t, n, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	type written struct {
		offset int64
		value  []byte // nil: tombstone
	}
	latest := map[string]written{}
	produce := func(key string, value []byte) {
		r := &kgo.Record{Key: []byte(key), Value: value}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", key, err)
		}
		latest[key] = written{r.Offset, value}
	}
	for v := range versions {
		for k := range keys {
			produce(fmt.Sprintf("key-%02d", k), []byte(fmt.Sprintf("value %d of key %d, padded to make segments roll sooner ..........", v, k)))
		}
	}
	for k := 0; k < keys; k += 4 {
		produce(fmt.Sprintf("key-%02d", k), nil)
	}
	// Filler on other keys moves the interesting records out of the active
	// segment, which is never cleaned.
	for i := range 200 {
		produce(fmt.Sprintf("filler-%03d", i), []byte("filler record padding padding padding padding padding padding"))
	}
	total := int64(keys*versions + keys/4 + 200)

	var got []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	for {
		got = consumeAll(ctx, t, n, topic, 30*time.Second)[0]
		if int64(len(got)) < total/2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if int64(len(got)) >= total/2 {
		t.Fatalf("no compaction within 60s: %d of %d records still there", len(got), total)
	}
	seen := map[string]*kgo.Record{}
	last := int64(-1)
	for _, r := range got {
		if r.Offset <= last {
			t.Fatalf("offsets not increasing: %d after %d", r.Offset, last)
		}
		last = r.Offset
		seen[string(r.Key)] = r
	}
	for key, w := range latest {
		r, ok := seen[key]
		switch {
		case w.value == nil && (!ok || r.Value == nil):
			// Deleted: gone, or the tombstone itself is still there.
		case w.value == nil:
			t.Errorf("%s was deleted but reads %q", key, r.Value)
		case !ok:
			t.Errorf("%s: latest value (offset %d) lost by compaction", key, w.offset)
		case r.Offset != w.offset || string(r.Value) != string(w.value):
			t.Errorf("%s: read offset %d %q, want the latest: offset %d %q", key, r.Offset, r.Value, w.offset, w.value)
		}
	}
	t.Logf("compacted %d records to %d; end offset kept at %d", total, len(got), last+1)
	if last+1 != total {
		t.Errorf("log end offset %d, want %d", last+1, total)
	}
}

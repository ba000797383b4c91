package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// producedRec is what a producer sent and what the broker acknowledged.
type producedRec struct {
	codec   string
	seq     int
	key     string
	value   []byte
	headers []kgo.RecordHeader
	ts      int64 // ms, as set by kgo on produce
	part    int32
	offset  int64
}

// TestProduceConsumeAllCodecs produces 10,000 keyed records with headers from
// five clients, one per compression codec, and reads everything back checking
// content, placement, order and timestamps record by record.
func TestProduceConsumeAllCodecs(t *testing.T) {
	const (
		topic       = "codecs"
		partitions  = 3
		perProducer = 2000
		keysPerProd = 37
	)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	n := testcluster.StartNode(t, testcluster.WithSet("auto.create.topics.enable", "false"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createTopic(ctx, t, newAdmin(t, n), topic, partitions, nil)

	start := time.Now()
	produced := make([][]*producedRec, len(codecs))
	var wg sync.WaitGroup
	for ci, c := range codecs {
		cl := newClient(t, n,
			kgo.ProducerBatchCompression(c.codec),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.DefaultProduceTopic(topic),
			kgo.RecordDeliveryTimeout(time.Minute),
		)
		recs := make([]*producedRec, perProducer)
		produced[ci] = recs
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mu sync.Mutex
			var firstErr error
			for i := range perProducer {
				pr := &producedRec{
					codec: c.name,
					seq:   i,
					key:   fmt.Sprintf("%s-key-%02d", c.name, i%keysPerProd),
					// Compressible text plus a varying tail; some values empty.
					value: fmt.Appendf(nil, "codec=%s seq=%06d %s", c.name, i, bytes.Repeat([]byte{'a' + byte(i%26)}, i%300)),
					headers: []kgo.RecordHeader{
						{Key: "codec", Value: []byte(c.name)},
						{Key: "seq", Value: []byte(strconv.Itoa(i))},
					},
				}
				switch i % 500 {
				case 7:
					pr.value = nil // null value
				case 11:
					pr.value = []byte{} // empty, not null
				}
				recs[i] = pr
				r := &kgo.Record{Key: []byte(pr.key), Value: pr.value, Headers: pr.headers}
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						return
					}
					pr.ts, pr.part, pr.offset = r.Timestamp.UnixMilli(), r.Partition, r.Offset
				})
			}
			if err := cl.Flush(ctx); err != nil {
				t.Errorf("%s producer: flush: %v", c.name, err)
			}
			if firstErr != nil {
				t.Errorf("%s producer: produce failed: %v", c.name, firstErr)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("produced %d records with %d codecs in %v", perProducer*len(codecs), len(codecs), time.Since(start))

	// Acknowledged offsets must be unique per partition.
	byPos := map[[2]int64]*producedRec{}
	for _, recs := range produced {
		for _, pr := range recs {
			pos := [2]int64{int64(pr.part), pr.offset}
			if prev, dup := byPos[pos]; dup {
				t.Fatalf("two records acknowledged at %s/%d offset %d: %s#%d and %s#%d",
					topic, pr.part, pr.offset, prev.codec, prev.seq, pr.codec, pr.seq)
			}
			byPos[pos] = pr
		}
	}

	start = time.Now()
	got := consumeAll(ctx, t, n, topic, time.Minute)
	total := 0
	for p := range int32(partitions) {
		recs := got[p]
		total += len(recs)
		checkDense(t, topic, p, recs)
		lastSeq := map[string]int{} // per key: last seq seen, to check per-key order
		bad := 0
		for _, r := range recs {
			pr := byPos[[2]int64{int64(p), r.Offset}]
			if pr == nil {
				t.Errorf("%s/%d offset %d: record %q was never acknowledged at this position", topic, p, r.Offset, r.Key)
				bad++
			} else if msg := diffRecord(pr, r); msg != "" {
				t.Errorf("%s/%d offset %d (%s#%d): %s", topic, p, r.Offset, pr.codec, pr.seq, msg)
				bad++
			} else {
				if last, ok := lastSeq[pr.key]; ok && pr.seq <= last {
					t.Errorf("%s/%d offset %d: key %s seq %d after seq %d (per-key order broken)", topic, p, r.Offset, pr.key, pr.seq, last)
					bad++
				}
				lastSeq[pr.key] = pr.seq
			}
			if bad > 20 {
				t.Fatalf("too many mismatches in partition %d", p)
			}
		}
		t.Logf("partition %d: %d records", p, len(recs))
	}
	if want := perProducer * len(codecs); total != want {
		t.Errorf("consumed %d records in total, want %d", total, want)
	}
	t.Logf("consumed and verified %d records in %v", total, time.Since(start))
}

// diffRecord describes how a consumed record differs from what was produced,
// or returns "" when key, value, headers and timestamp all match.
func diffRecord(pr *producedRec, r *kgo.Record) string {
	if string(r.Key) != pr.key {
		return fmt.Sprintf("key %q, want %q", r.Key, pr.key)
	}
	if (r.Value == nil) != (pr.value == nil) {
		return fmt.Sprintf("value null=%v, want null=%v (null and empty values must stay distinct)", r.Value == nil, pr.value == nil)
	}
	if !bytes.Equal(r.Value, pr.value) {
		return fmt.Sprintf("value %.60q (len %d), want %.60q (len %d)", r.Value, len(r.Value), pr.value, len(pr.value))
	}
	if len(r.Headers) != len(pr.headers) {
		return fmt.Sprintf("%d headers %v, want %d", len(r.Headers), r.Headers, len(pr.headers))
	}
	for i, h := range r.Headers {
		if h.Key != pr.headers[i].Key || !bytes.Equal(h.Value, pr.headers[i].Value) {
			return fmt.Sprintf("header #%d %s=%q, want %s=%q", i, h.Key, h.Value, pr.headers[i].Key, pr.headers[i].Value)
		}
	}
	if ms := r.Timestamp.UnixMilli(); ms != pr.ts {
		return fmt.Sprintf("timestamp %d ms, want %d ms (delta %d)", ms, pr.ts, ms-pr.ts)
	}
	return ""
}

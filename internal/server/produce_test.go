package server

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
	"strand/internal/record/recordtest"
)

// TestProduceRefusesUndecodableBatches produces, over a real connection,
// hand-built batches that cannot be decoded or break the record framing,
// for every codec, and checks each is refused with the right code and
// reason, nothing is stored, and a normal produce works afterwards.
func TestProduceRefusesUndecodableBatches(t *testing.T) {
	n := startNode(t, [2]string{"message.max.decompressed.bytes", "2097152"})
	cl := n.client()
	adm := kadm.NewClient(cl)
	codecs := []record.Codec{record.CodecNone, record.CodecGzip, record.CodecSnappy, record.CodecLZ4, record.CodecZstd}
	for _, c := range codecs {
		// Room for the 1 MB gzip bomb.
		if rt := createTopic(t, cl, "v-"+c.String(), 1, map[string]string{"max.message.bytes": "2097152"}); rt.ErrorCode != 0 {
			t.Fatalf("create: %v", kerr.ErrorForCode(rt.ErrorCode))
		}
	}
	rec := func(i int64, key, hkey []byte) []byte { // one record, by hand
		var body []byte
		body = append(body, 0)
		body = appendVarint(body, 0)
		body = appendVarint(body, i)
		body = appendBytes(body, key)
		body = appendBytes(body, []byte("v"))
		if hkey == nil {
			return append(appendVarint(nil, int64(len(body)+1)), append(body, 0)...) // no headers
		}
		body = appendVarint(body, 1)
		body = appendVarint(body, -1) // a null header key
		body = appendBytes(body, nil)
		return append(appendVarint(nil, int64(len(body))), body...)
	}
	type attempt struct {
		name    string
		batch   []byte
		code    int16
		reason  string
		records bool // per-record errors expected
	}
	var attempts []attempt
	for _, c := range codecs {
		topicAttempts := []attempt{
			{"offset gap", recordtest.Batch(c, 2, recordtest.Compress(c, append(rec(0, []byte("k"), nil), rec(5, []byte("k"), nil)...))), kerr.InvalidRecord.Code, "offset delta 5, expected 1", true},
			{"count mismatch", recordtest.Batch(c, 3, recordtest.Compress(c, append(rec(0, []byte("k"), nil), rec(1, []byte("k"), nil)...))), kerr.InvalidRecord.Code, "records end early", true},
			{"null header key", recordtest.Batch(c, 1, recordtest.Compress(c, rec(0, []byte("k"), []byte{}))), kerr.InvalidRecord.Code, "null key", true},
			{"trailing bytes", recordtest.Batch(c, 1, recordtest.Compress(c, append(rec(0, nil, nil), 1, 2, 3))), kerr.InvalidRecord.Code, "bytes follow the last", false},
		}
		if c != record.CodecNone {
			topicAttempts = append(topicAttempts,
				attempt{"garbage", recordtest.Batch(c, 1, []byte("\x00\x01 definitely not compressed \xfe\xff")), kerr.CorruptMessage.Code, "cannot be decompressed", false})
		}
		switch c {
		case record.CodecNone:
			topicAttempts = append(topicAttempts, attempt{"codec 7", recordtest.Batch(7, 1, rec(0, nil, nil)), kerr.CorruptMessage.Code, "unknown compression codec 7", false})
		case record.CodecGzip, record.CodecLZ4, record.CodecZstd:
			topicAttempts = append(topicAttempts, attempt{"bomb", bomb(c), kerr.InvalidRecord.Code, "more than 2097152 bytes (message.max.decompressed.bytes)", false})
		}
		if c == record.CodecZstd {
			topicAttempts = append(topicAttempts, attempt{"zeros bomb", recordtest.Batch(c, 1000, recordtest.ZstdBomb(2<<30)), kerr.InvalidRecord.Code, "record length 0", true})
		}
		if c == record.CodecSnappy {
			topicAttempts = append(topicAttempts, attempt{"huge claim", recordtest.Batch(c, 1, append(appendUvarint(nil, 1<<30), 0, 0)), kerr.InvalidRecord.Code, "message.max.decompressed.bytes", false})
		}
		for _, a := range topicAttempts {
			a.name = c.String() + " " + a.name
			attempts = append(attempts, a)
		}
	}
	for _, a := range attempts {
		topic := "v-" + strings.Fields(a.name)[0]
		if strings.HasSuffix(a.name, "codec 7") {
			topic = "v-none"
		}
		start := time.Now()
		got := produceRaw(t, cl, topic, -1, a.batch)
		took := time.Since(start)
		msg := ""
		if got.ErrorMessage != nil {
			msg = *got.ErrorMessage
		}
		if got.ErrorCode != a.code || !strings.Contains(msg, a.reason) {
			t.Errorf("%s: got %v %q, want %v containing %q", a.name, kerr.ErrorForCode(got.ErrorCode), msg, kerr.ErrorForCode(a.code), a.reason)
		}
		if a.records && (len(got.ErrorRecords) != 1 || got.ErrorRecords[0].ErrorMessage == nil) {
			t.Errorf("%s: record errors %+v", a.name, got.ErrorRecords)
		}
		if took > 5*time.Second {
			t.Errorf("%s: refused after %v", a.name, took)
		}
	}
	// max.message.bytes is checked first, before any decompression.
	if rt := createTopic(t, cl, "v-small", 1, map[string]string{"max.message.bytes": "1000000"}); rt.ErrorCode != 0 {
		t.Fatalf("create: %v", kerr.ErrorForCode(rt.ErrorCode))
	}
	if got := produceRaw(t, cl, "v-small", -1, bomb(record.CodecGzip)); got.ErrorCode != kerr.MessageTooLarge.Code {
		t.Errorf("bomb larger than max.message.bytes: %v", kerr.ErrorForCode(got.ErrorCode))
	}
	ends, err := adm.ListEndOffsets(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if strings.HasPrefix(o.Topic, "v-") && (o.Err != nil || o.Offset != 0) {
			t.Errorf("%s-%d: end offset %d (%v) after refused produces", o.Topic, o.Partition, o.Offset, o.Err)
		}
	})

	// Four bombs of each kind at once, over four connections: all refused,
	// the broker's heap stays bounded.
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	peak := recordtest.HeapPeak()
	var wg sync.WaitGroup
	for i := range 4 {
		bcl := n.client()
		for _, c := range []record.Codec{record.CodecGzip, record.CodecLZ4, record.CodecZstd} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := bomb(c)
				if i%2 == 1 && c == record.CodecZstd {
					b = recordtest.Batch(c, 1000, recordtest.ZstdBomb(2<<30))
				}
				req := kmsg.NewPtrProduceRequest()
				req.Acks, req.TimeoutMillis = -1, 5000
				req.Topics = []kmsg.ProduceRequestTopic{{Topic: "v-" + c.String(), Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: b}}}}
				resp, err := req.RequestWith(ctx(t), bcl)
				if err != nil {
					t.Error(err)
					return
				}
				if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.InvalidRecord.Code {
					t.Errorf("concurrent %s bomb: %v", c, kerr.ErrorForCode(code))
				}
			}()
		}
	}
	wg.Wait()
	grew := int64(peak()) - int64(before.HeapInuse)
	t.Logf("12 concurrent bombs: heap grew by at most %d MiB", grew>>20)
	if grew > 256<<20 {
		t.Errorf("heap grew by %d MiB during the bombs", grew>>20)
	}

	// Normal produce still works, every codec, through franz-go.
	for _, cc := range []struct {
		topic string
		codec kgo.CompressionCodec
	}{{"v-none", kgo.NoCompression()}, {"v-gzip", kgo.GzipCompression()}, {"v-snappy", kgo.SnappyCompression()}, {"v-lz4", kgo.Lz4Compression()}, {"v-zstd", kgo.ZstdCompression()}} {
		pcl := n.client(kgo.ProducerBatchCompression(cc.codec), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		var recs []*kgo.Record
		for i := range 100 {
			recs = append(recs, &kgo.Record{Topic: cc.topic, Value: []byte(fmt.Sprintf("value %d %s", i, strings.Repeat("x", i)))})
		}
		if err := pcl.ProduceSync(ctx(t), recs...).FirstErr(); err != nil {
			t.Fatalf("%s: %v", cc.topic, err)
		}
	}
	ends, err = adm.ListEndOffsets(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if strings.HasPrefix(o.Topic, "v-") && o.Topic != "v-small" && o.Offset != 100 {
			t.Errorf("%s-%d: end offset %d after 100 good records", o.Topic, o.Partition, o.Offset)
		}
	})
}

// bomb returns a decompression bomb of codec c that fits in 2 MiB: gzip
// 1 GiB, lz4 256 MiB, zstd 2 GiB.
func bomb(c record.Codec) []byte {
	switch c {
	case record.CodecGzip:
		return recordtest.Bomb(c, 1024)
	case record.CodecLZ4:
		return recordtest.Bomb(c, 256)
	}
	return recordtest.Bomb(c, 2048)
}

func appendVarint(b []byte, v int64) []byte { return appendUvarint(b, uint64(v<<1^(v>>63))) }

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return appendVarint(b, -1)
	}
	return append(appendVarint(b, int64(len(v))), v...)
}

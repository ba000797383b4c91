package record_test

import (
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"strand/internal/record"
	"strand/internal/record/recordtest"
)

var codecs = []record.Codec{record.CodecNone, record.CodecGzip, record.CodecSnappy, record.CodecLZ4, record.CodecZstd}

func goodRecords(n int) []record.Record {
	var rs []record.Record
	now := time.Now().UnixMilli()
	for i := range n {
		rs = append(rs, record.Record{Timestamp: now + int64(i%3), Key: []byte{byte('a' + i)}, Value: []byte("value"),
			Headers: []record.RecordHeader{{Key: "h", Value: []byte("x")}}})
	}
	return rs
}

// rawRecord encodes one record by hand: fields in order, length computed.
func rawRecord(fields ...[]byte) []byte {
	var body []byte
	for _, f := range fields {
		body = append(body, f...)
	}
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

func truncate(b []byte, n int) []byte { return b[:len(b)-n] }

func vi(v int64) []byte { return binary.AppendVarint(nil, v) }

// okRecord is a well-formed record with offset delta i: attributes,
// timestamp delta 0, offset delta, key "k", value "v", no headers.
func okRecord(i int64) []byte {
	return rawRecord([]byte{0}, vi(0), vi(i), vi(1), []byte("k"), vi(1), []byte("v"), vi(0))
}

func TestCheckProduceAcceptsEveryCodec(t *testing.T) {
	for _, c := range codecs {
		b := record.MustBuild(record.BuildSpec{Codec: c, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: goodRecords(50)})
		if _, err := record.CheckProduce(b, record.ProduceRules{RequireKeys: true}); err != nil {
			t.Errorf("%s: %v", c, err)
		}
		// Raw snappy (librdkafka, franz-go) as well as xerial (Java).
		var payload []byte
		for i := range 50 {
			payload = append(payload, okRecord(int64(i))...)
		}
		if _, err := record.CheckProduce(recordtest.Batch(c, 50, recordtest.Compress(c, payload)), record.ProduceRules{}); err != nil {
			t.Errorf("%s hand-built: %v", c, err)
		}
	}
}

func TestCheckProduceRefusesUndecodable(t *testing.T) {
	for _, codec := range []int{5, 6, 7} {
		b := recordtest.Batch(record.Codec(codec), 1, okRecord(0))
		if _, err := record.CheckProduce(b, record.ProduceRules{}); !errors.Is(err, record.ErrCorrupt) || !strings.Contains(err.Error(), "unknown compression codec") {
			t.Errorf("codec %d: %v", codec, err)
		}
	}
	garbage := []byte("this is not compressed at all, but random-looking bytes: \x01\x02\xff\xfe\x00\x13\x37")
	for _, c := range codecs[1:] {
		for name, payload := range map[string][]byte{
			"garbage":   garbage,
			"empty":     {},
			"truncated": truncate(recordtest.Compress(c, append(okRecord(0), okRecord(1)...)), 3),
		} {
			_, err := record.CheckProduce(recordtest.Batch(c, 2, payload), record.ProduceRules{})
			if !errors.Is(err, record.ErrCorrupt) && !errors.Is(err, record.ErrInvalid) {
				t.Errorf("%s %s: %v", c, name, err)
			}
		}
		// A corrupted byte in the middle of a valid stream (caught by the
		// codec's checksum or its framing).
		p := recordtest.Compress(c, append(okRecord(0), okRecord(1)...))
		p[len(p)/2] ^= 0x55
		if _, err := record.CheckProduce(recordtest.Batch(c, 2, p), record.ProduceRules{}); err == nil {
			t.Errorf("%s: flipped byte accepted", c)
		}
	}
	// A zstd frame declaring a 2 GiB window is refused before any allocation.
	wide := recordtest.ZstdBomb(1 << 20)
	wide[5] = (31 - 10) << 3
	if _, err := record.CheckProduce(recordtest.Batch(record.CodecZstd, 1, wide), record.ProduceRules{}); !errors.Is(err, record.ErrCorrupt) || !strings.Contains(err.Error(), "window") {
		t.Errorf("zstd 2 GiB window: %v", err)
	}
	// A raw snappy block claiming a huge length is refused before any allocation.
	claim := append(binary.AppendUvarint(nil, 1<<31), 0, 0, 0)
	if _, err := record.CheckProduce(recordtest.Batch(record.CodecSnappy, 1, claim), record.ProduceRules{}); err == nil {
		t.Error("snappy claim accepted")
	}
	claim = append(binary.AppendUvarint(nil, 1<<20), 0, 0, 0) // within the ceiling, beyond snappy's ratio
	if _, err := record.CheckProduce(recordtest.Batch(record.CodecSnappy, 1, claim), record.ProduceRules{}); !errors.Is(err, record.ErrCorrupt) {
		t.Errorf("snappy ratio: %v", err)
	}
}

// TestCheckProduceRecordFraming builds records that break each framing rule
// and checks them in every codec.
func TestCheckProduceRecordFraming(t *testing.T) {
	cases := []struct {
		name    string
		n       int // records claimed by the header
		payload []byte
		want    string
	}{
		{"offset delta gap", 2, append(okRecord(0), okRecord(2)...), "offset delta 2, expected 1"},
		{"offset delta repeated", 2, append(okRecord(0), okRecord(0)...), "offset delta 0, expected 1"},
		{"fewer records than claimed", 3, append(okRecord(0), okRecord(1)...), "records end early"},
		{"more records than claimed", 1, append(okRecord(0), okRecord(1)...), "bytes follow the last"},
		{"trailing byte", 1, append(okRecord(0), 0), "bytes follow the last"},
		{"negative record length", 1, vi(-3), "record length -3"},
		{"record length too short", 1, append(vi(2), 0, 0), "below the minimum"},
		{"key longer than record", 1, rawRecord([]byte{0}, vi(0), vi(0), vi(100), []byte("k"), vi(1), []byte("v"), vi(0)), "past the end of the record"},
		{"negative key length", 1, rawRecord([]byte{0}, vi(0), vi(0), vi(-5), vi(1), []byte("v"), vi(0)), "key length -5"},
		{"null header key", 1, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1), vi(-1), vi(-1)), "null key"},
		{"bytes left in record", 1, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(0), []byte{1, 2}), "left inside the record"},
		{"malformed varint", 1, rawRecord([]byte{0}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, vi(0), vi(-1), vi(-1), vi(0)), "varint"},
		{"offset delta overflow", 1, rawRecord([]byte{0}, vi(0), vi(1<<40), vi(-1), vi(-1), vi(0)), "int32"},
		{"timestamp overflow", 1, rawRecord([]byte{0}, vi(1<<62), vi(0), vi(-1), vi(-1), vi(0)), "overflows"},
	}
	for _, c := range codecs {
		for _, tc := range cases {
			b := recordtest.Batch(c, tc.n, recordtest.Compress(c, tc.payload))
			if tc.name == "timestamp overflow" {
				binary.BigEndian.PutUint64(b[27:], 1<<62) // base timestamp; refresh the CRC
				b = recordtest.Reseal(b)
			}
			_, err := record.CheckProduce(b, record.ProduceRules{})
			if !errors.Is(err, record.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s, %s: got %v, want INVALID containing %q", c, tc.name, err, tc.want)
			}
		}
	}
}

func TestCheckProduceRules(t *testing.T) {
	now := time.Now().UnixMilli()
	recs := []record.Record{{Timestamp: now, Key: []byte("k")}, {Timestamp: now - 5000}, {Timestamp: now + 5000, Key: []byte("k")}, {Timestamp: now - 1}}
	for _, c := range codecs {
		b := record.MustBuild(record.BuildSpec{Codec: c, ProducerID: -1, BaseSequence: -1, Records: recs})
		_, err := record.CheckProduce(b, record.ProduceRules{RequireKeys: true})
		var be *record.BatchError
		if !errors.As(err, &be) || !errors.Is(err, record.ErrInvalid) || len(be.Records) != 2 || be.Records[0].Index != 1 || be.Records[1].Index != 3 {
			t.Fatalf("%s keys: %v", c, err)
		}
		_, err = record.CheckProduce(b, record.ProduceRules{Now: now, BeforeMaxMs: 1000, AfterMaxMs: 1000})
		if !errors.As(err, &be) || !errors.Is(err, record.ErrInvalidTimestamp) || len(be.Records) != 2 || be.Records[0].Index != 1 || be.Records[1].Index != 2 {
			t.Fatalf("%s timestamps: %v", c, err)
		}
		if _, err = record.CheckProduce(b, record.ProduceRules{Now: now, BeforeMaxMs: 1000, AfterMaxMs: 1000, LogAppendTime: true}); err != nil {
			t.Fatalf("%s LogAppendTime: %v", c, err)
		}
		// A wrong MaxTimestamp is corrected as Kafka does, CRC included.
		binary.BigEndian.PutUint64(b[35:], uint64(now-99999))
		b = recordtest.Reseal(b)
		h, err := record.CheckProduce(b, record.ProduceRules{})
		if err != nil || h.MaxTimestamp != now+5000 {
			t.Fatalf("%s max timestamp: %d %v", c, h.MaxTimestamp, err)
		}
		if _, err := record.Validate(b); err != nil {
			t.Fatalf("%s after correction: %v", c, err)
		}
	}
	ctl := record.MustBuild(record.BuildSpec{Control: true, Transactional: true, ProducerID: 1, Records: []record.Record{{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}}})
	if _, err := record.CheckProduce(ctl, record.ProduceRules{}); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("control batch: %v", err)
	}
	noSeq := record.MustBuild(record.BuildSpec{ProducerID: 7, BaseSequence: -1, Records: goodRecords(1)})
	if _, err := record.CheckProduce(noSeq, record.ProduceRules{}); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("producer id without sequence: %v", err)
	}
}

// TestCheckProduceBombs checks that bombs of every compressing codec are
// refused at the ceiling, four at once, quickly and in bounded memory.
func TestCheckProduceBombs(t *testing.T) {
	const limit = 4 << 20
	bombs := map[string][]byte{
		"gzip 1 GiB":  recordtest.Bomb(record.CodecGzip, 1024),
		"lz4 256 MiB": recordtest.Bomb(record.CodecLZ4, 256),
		"zstd 2 GiB":  recordtest.Bomb(record.CodecZstd, 2048),
		"zstd zeros":  recordtest.Batch(record.CodecZstd, 1000, recordtest.ZstdBomb(2<<30)),
	}
	for name, b := range bombs {
		t.Logf("%s: %d bytes", name, len(b))
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	peak := recordtest.HeapPeak()
	start := time.Now()
	var wg sync.WaitGroup
	for name, b := range bombs {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := record.CheckProduce(append([]byte(nil), b...), record.ProduceRules{MaxDecompressedBytes: limit})
				if !errors.Is(err, record.ErrInvalid) {
					t.Errorf("%s: %v", name, err)
				}
			}()
		}
	}
	wg.Wait()
	took := time.Since(start)
	grew := peak() - before.HeapInuse
	t.Logf("16 bombs refused in %v, heap grew by at most %d MiB", took, grew>>20)
	if grew > 200<<20 {
		t.Errorf("heap grew by %d MiB", grew>>20)
	}
}

// TestDecompressionBomb checks the cap of the whole-batch decoders
// (Records, as compaction uses them) on bombs of every compressing codec:
// with a 4 MiB limit, and a snappy block claiming more than
// MaxDecompressedSize through Records itself.
func TestDecompressionBomb(t *testing.T) {
	for _, c := range []record.Codec{record.CodecGzip, record.CodecLZ4, record.CodecZstd} {
		b := recordtest.Bomb(c, 80)
		if _, err := record.DecompressLimit(c, b[record.HeaderSize:], 4<<20); !errors.Is(err, record.ErrInvalid) || !strings.Contains(err.Error(), "exceeds") {
			t.Errorf("%s: got %v", c, err)
		}
	}
	claim := recordtest.Batch(record.CodecSnappy, 1, append(binary.AppendUvarint(nil, record.MaxDecompressedSize+1), 0, 0))
	if _, err := record.Records(claim); !errors.Is(err, record.ErrInvalid) || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("snappy: got %v", err)
	}
}

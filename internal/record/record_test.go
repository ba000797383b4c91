package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var allCodecs = []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

func sampleRecords() []Record {
	return []Record{
		{Timestamp: 1000, Key: []byte("k1"), Value: []byte("v1"), Headers: []RecordHeader{{Key: "h", Value: []byte("x")}, {Key: "n", Value: nil}}},
		{Timestamp: 999, Key: nil, Value: []byte{}},
		{Timestamp: 1500, Key: []byte{}, Value: nil, Attributes: 0},
		{Timestamp: 1200, Key: []byte("k4"), Value: bytes.Repeat([]byte("abc"), 5000)},
	}
}

func TestBuildRoundTripAllCodecs(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			in := sampleRecords()
			b, err := Build(BuildSpec{BaseOffset: 100, PartitionLeaderEpoch: 7, Codec: c, ProducerID: 42, ProducerEpoch: 3, BaseSequence: 10, Transactional: true, Records: in})
			if err != nil {
				t.Fatal(err)
			}
			h, err := Validate(b)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if h.Codec() != c || h.NumRecords != 4 || h.LastOffsetDelta != 3 || h.BaseOffset != 100 || h.PartitionLeaderEpoch != 7 {
				t.Fatalf("header %+v", h)
			}
			if h.BaseTimestamp != 1000 || h.MaxTimestamp != 1500 || !h.IsTransactional() || h.IsControl() || h.LogAppendTime() {
				t.Fatalf("header %+v", h)
			}
			if !h.HasProducerID() || h.ProducerEpoch != 3 || h.LastSequence() != 13 || h.LastOffset() != 103 || h.NextOffset() != 104 || h.Size() != len(b) {
				t.Fatalf("header %+v", h)
			}
			out, err := Records(b)
			if err != nil {
				t.Fatalf("Records: %v", err)
			}
			if len(out) != len(in) {
				t.Fatalf("got %d records", len(out))
			}
			for i := range in {
				want := in[i]
				want.Offset = 100 + int64(i)
				if !reflect.DeepEqual(out[i], want) {
					t.Fatalf("record %d: got %+v want %+v", i, out[i], want)
				}
				if (out[i].Key == nil) != (in[i].Key == nil) || (out[i].Value == nil) != (in[i].Value == nil) {
					t.Fatalf("record %d: null-ness changed", i)
				}
			}
		})
	}
}

// TestBuildDecodesWithKmsg cross-checks the encoding against franz-go's
// independent decoder.
func TestBuildDecodesWithKmsg(t *testing.T) {
	in := sampleRecords()
	b := MustBuild(BuildSpec{BaseOffset: 5, Codec: CodecNone, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: in})
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(b); err != nil {
		t.Fatal(err)
	}
	if kb.FirstOffset != 5 || kb.NumRecords != 4 || kb.Magic != 2 || kb.LastOffsetDelta != 3 || kb.ProducerID != -1 || uint32(kb.CRC) != binary.BigEndian.Uint32(b[17:]) {
		t.Fatalf("kmsg batch %+v", kb)
	}
	if int(kb.Length)+12 != len(b) {
		t.Fatalf("length %d vs %d", kb.Length, len(b))
	}
	rest := kb.Records
	for i := 0; i < 4; i++ {
		var r kmsg.Record
		if err := r.ReadFrom(rest); err != nil {
			t.Fatal(err)
		}
		n := binary.PutVarint(make([]byte, 10), int64(r.Length))
		rest = rest[n+int(r.Length):]
		if !bytes.Equal(r.Value, in[i].Value) || !bytes.Equal(r.Key, in[i].Key) || int(r.OffsetDelta) != i || r.TimestampDelta64+1000 != in[i].Timestamp {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left", len(rest))
	}
}

func TestRawSnappyDecodes(t *testing.T) {
	b := MustBuild(BuildSpec{Codec: CodecNone, Records: sampleRecords()})
	raw := s2.EncodeSnappy(nil, b[HeaderSize:])
	nb := append(append([]byte{}, b[:HeaderSize]...), raw...)
	binary.BigEndian.PutUint32(nb[8:], uint32(len(nb)-12))
	binary.BigEndian.PutUint16(nb[21:], uint16(CodecSnappy))
	binary.BigEndian.PutUint32(nb[17:], checksum(nb))
	recs, err := Records(nb)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || !bytes.Equal(recs[3].Value, sampleRecords()[3].Value) {
		t.Fatalf("bad decode: %d records", len(recs))
	}
	// The Build output uses xerial framing.
	xb := MustBuild(BuildSpec{Codec: CodecSnappy, Records: sampleRecords()})
	if !bytes.HasPrefix(xb[HeaderSize:], xerialMagic) {
		t.Fatal("snappy Build output is not xerial framed")
	}
}

func TestLogAppendTimeRecords(t *testing.T) {
	b := MustBuild(BuildSpec{Codec: CodecLZ4, Records: sampleRecords()})
	SetLogAppendTime(b, 77777)
	h, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	if !h.LogAppendTime() || h.MaxTimestamp != 77777 {
		t.Fatalf("header %+v", h)
	}
	recs, err := Records(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Timestamp != 77777 {
			t.Fatalf("timestamp %d", r.Timestamp)
		}
	}
}

func TestSetOffsetAndEpochKeepCRC(t *testing.T) {
	b := MustBuild(BuildSpec{Codec: CodecNone, Records: sampleRecords()})
	SetBaseOffset(b, 1<<40)
	SetPartitionLeaderEpoch(b, 9)
	h, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.BaseOffset != 1<<40 || h.PartitionLeaderEpoch != 9 {
		t.Fatalf("header %+v", h)
	}
	recs, _ := Records(b)
	if recs[2].Offset != 1<<40+2 {
		t.Fatalf("offset %d", recs[2].Offset)
	}
}

func TestValidateErrors(t *testing.T) {
	good := MustBuild(BuildSpec{Codec: CodecNone, Records: sampleRecords()})
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	fixCRC := func(b []byte) []byte { binary.BigEndian.PutUint32(b[17:], checksum(b)); return b }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:30], ErrCorrupt},
		{"truncated", good[:len(good)-1], ErrCorrupt},
		{"extra", append(append([]byte{}, good...), 0), ErrCorrupt},
		{"crc", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrCorrupt},
		{"small length", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 10); return b }), ErrCorrupt},
		{"magic", mut(func(b []byte) []byte { b[16] = 1; return b }), ErrInvalid},
		{"no records", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[57:], 0); return fixCRC(b) }), ErrInvalid},
		{"negative delta", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[23:], math.MaxUint32); return fixCRC(b) }), ErrInvalid},
	}
	for _, c := range cases {
		if _, err := Validate(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	badDelta := mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[23:], 2); return fixCRC(b) })
	if _, err := Validate(badDelta); err != nil {
		t.Errorf("Validate should accept a compacted-style delta: %v", err)
	}
	if _, err := ValidateProduce(badDelta); !errors.Is(err, ErrInvalid) {
		t.Errorf("ValidateProduce: got %v", err)
	}
	// Records detects a record count that does not match the payload.
	moreRecs := mut(func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[57:], 5)
		binary.BigEndian.PutUint32(b[23:], 4)
		return fixCRC(b)
	})
	if _, err := Records(moreRecs); !errors.Is(err, ErrInvalid) {
		t.Errorf("Records with wrong count: got %v", err)
	}
}

func TestParseHeader(t *testing.T) {
	if _, err := ParseHeader(make([]byte, 60)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
	b := MustBuild(BuildSpec{Codec: CodecNone, Records: sampleRecords()[:1]})
	h, err := ParseHeader(b[:HeaderSize])
	if err != nil || h.NumRecords != 1 || h.Size() != len(b) {
		t.Fatalf("%+v %v", h, err)
	}
}

func TestSplit(t *testing.T) {
	var set []byte
	for i := 0; i < 3; i++ {
		set = append(set, MustBuild(BuildSpec{BaseOffset: int64(i * 10), Codec: allCodecs[i], Records: sampleRecords()})...)
	}
	var bases []int64
	err := Split(set, func(b []byte) error {
		h, err := Validate(b)
		bases = append(bases, h.BaseOffset)
		return err
	})
	if err != nil || !reflect.DeepEqual(bases, []int64{0, 10, 20}) {
		t.Fatalf("bases %v err %v", bases, err)
	}
	calls := 0
	if err := Split(nil, func([]byte) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("empty: %v %d", err, calls)
	}
	calls = 0
	err = Split(set[:len(set)-5], func([]byte) error { calls++; return nil })
	if !errors.Is(err, ErrCorrupt) || calls != 2 {
		t.Fatalf("partial: %v after %d calls", err, calls)
	}
	err = Split(set[:len(set)+70-len(set)], func([]byte) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("partial header: %v", err)
	}
	stop := errors.New("stop")
	if err := Split(set, func([]byte) error { return stop }); err != stop {
		t.Fatalf("fn error not returned: %v", err)
	}
}

func TestLastSequenceWraps(t *testing.T) {
	cases := []struct{ base, delta, want int32 }{
		{0, 0, 0}, {10, 5, 15}, {math.MaxInt32, 0, math.MaxInt32},
		{math.MaxInt32, 1, 0}, {math.MaxInt32 - 1, 3, 1}, {-1, 4, -1},
	}
	for _, c := range cases {
		h := Header{BaseSequence: c.base, LastOffsetDelta: c.delta}
		if got := h.LastSequence(); got != c.want {
			t.Errorf("LastSequence(%d,%d) = %d want %d", c.base, c.delta, got, c.want)
		}
	}
}

func TestControlAndCodecString(t *testing.T) {
	b := MustBuild(BuildSpec{Control: true, Transactional: true, ProducerID: 1, Records: []Record{{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}}})
	h, err := Validate(b)
	if err != nil || !h.IsControl() || !h.IsTransactional() {
		t.Fatalf("%+v %v", h, err)
	}
	if CodecZstd.String() != "zstd" || Codec(7).String() != "codec(7)" {
		t.Fatal("codec names")
	}
	if _, err := Build(BuildSpec{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty build: %v", err)
	}
}

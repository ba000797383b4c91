package record

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/klauspost/compress/s2"
)

func FuzzRecords(f *testing.F) {
	for _, c := range allCodecs {
		f.Add(MustBuild(BuildSpec{BaseOffset: 3, Codec: c, ProducerID: 1, Records: sampleRecords()[:3]}))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, verr := Validate(data)
		recs, rerr := Records(data)
		if verr != nil && rerr == nil {
			t.Fatalf("Records accepted what Validate rejected: %v", verr)
		}
		if rerr != nil && !errors.Is(rerr, ErrCorrupt) && !errors.Is(rerr, ErrInvalid) {
			t.Fatalf("unclassified error %v", rerr)
		}
		if rerr == nil {
			h, _ := Validate(data)
			if len(recs) != int(h.NumRecords) {
				t.Fatalf("%d records, header says %d", len(recs), h.NumRecords)
			}
			for _, r := range recs {
				if r.Offset < h.BaseOffset || r.Offset > h.LastOffset() {
					t.Fatalf("record offset %d outside batch [%d,%d]", r.Offset, h.BaseOffset, h.LastOffset())
				}
			}
		}
		total := 0
		err := Split(data, func(b []byte) error {
			h, err := ParseHeader(b)
			if err != nil || h.Size() != len(b) {
				t.Fatalf("Split passed a malformed batch: %v", err)
			}
			total += len(b)
			_, _ = Records(b)
			return nil
		})
		if err == nil && total != len(data) {
			t.Fatalf("Split covered %d of %d bytes", total, len(data))
		}
	})
}

// FuzzPayload fuzzes the records payload behind a valid header with a
// correct CRC, so decompression and record decoding are exercised.
func FuzzPayload(f *testing.F) {
	for _, c := range allCodecs {
		b := MustBuild(BuildSpec{Codec: c, Records: sampleRecords()[:2]})
		f.Add(uint8(c), int32(2), int32(1), b[HeaderSize:])
	}
	f.Fuzz(func(t *testing.T, codec uint8, n, lastDelta int32, payload []byte) {
		b := MustBuild(BuildSpec{Codec: CodecNone, Records: sampleRecords()[:1]})[:HeaderSize]
		b = append(b, payload...)
		binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
		binary.BigEndian.PutUint16(b[offAttributes:], uint16(codec&0x3f))
		binary.BigEndian.PutUint32(b[offLastOffDelta:], uint32(lastDelta))
		binary.BigEndian.PutUint32(b[offNumRecords:], uint32(n))
		binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
		recs, err := Records(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(recs) != int(n) {
			t.Fatalf("%d records, header says %d", len(recs), n)
		}
	})
}

// FuzzCheckProduce fuzzes the produce validation path with compressed
// payloads behind a valid header and CRC: CheckProduce must classify every
// refusal, and whatever it accepts must decode whole with Records (every
// stored batch is decodable), with dense offsets and keys when required.
func FuzzCheckProduce(f *testing.F) {
	for _, c := range allCodecs {
		b := MustBuild(BuildSpec{Codec: c, ProducerID: -1, BaseSequence: -1, Records: sampleRecords()})
		f.Add(uint8(c), int32(len(sampleRecords())), false, b[HeaderSize:])
		raw := MustBuild(BuildSpec{Codec: CodecNone, Records: sampleRecords()[:2]})[HeaderSize:]
		if c == CodecSnappy {
			f.Add(uint8(c), int32(2), true, s2.EncodeSnappy(nil, raw)) // raw snappy block
		}
	}
	f.Add(uint8(7), int32(1), false, []byte{0})
	f.Fuzz(func(t *testing.T, codec uint8, n int32, keys bool, payload []byte) {
		b := BuildRaw(Header{Attributes: int16(codec & 0x0f), LastOffsetDelta: n - 1, NumRecords: n,
			BaseTimestamp: 1000, MaxTimestamp: 1000, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, payload)
		h, err := CheckProduce(b, ProduceRules{MaxDecompressedBytes: 1 << 20, RequireKeys: keys})
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalidTimestamp) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if _, err := Validate(b); err != nil {
			t.Fatalf("accepted batch no longer validates: %v", err)
		}
		recs, err := Records(b)
		if err != nil {
			t.Fatalf("CheckProduce accepted what Records cannot decode: %v", err)
		}
		if len(recs) != int(n) {
			t.Fatalf("%d records, header says %d", len(recs), n)
		}
		for i, r := range recs {
			if r.Offset != int64(i) || keys && r.Key == nil || r.Timestamp > h.MaxTimestamp {
				t.Fatalf("record %d: offset %d, key %v, timestamp %d (max %d)", i, r.Offset, r.Key, r.Timestamp, h.MaxTimestamp)
			}
		}
	})
}

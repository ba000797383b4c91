package record

import (
	"encoding/binary"
	"errors"
	"testing"
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

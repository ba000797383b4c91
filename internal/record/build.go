package record

import (
	"encoding/binary"
	"fmt"
)

// BuildSpec describes a batch for Build.
type BuildSpec struct {
	BaseOffset           int64
	PartitionLeaderEpoch int32
	Codec                Codec
	Transactional        bool
	Control              bool
	// LogAppendTime sets the timestamp-type bit; MaxTimestamp is then
	// LogAppendTimeMs instead of the records' maximum.
	LogAppendTime   bool
	LogAppendTimeMs int64
	// ProducerID is -1 for none (ProducerEpoch and BaseSequence are then
	// normally -1 too).
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
	// Records are encoded in order with offset deltas 0..n-1 (their Offset
	// field is ignored). The base timestamp is the first record's
	// timestamp and MaxTimestamp the largest one.
	Records []Record
}

// Build encodes a v2 batch. It returns an error wrapping ErrInvalid if spec
// has no records or an unknown codec; the result passes Validate and
// round-trips through Records.
func Build(spec BuildSpec) ([]byte, error) {
	if len(spec.Records) == 0 {
		return nil, fmt.Errorf("%w: cannot build a batch without records", ErrInvalid)
	}
	baseTs := spec.Records[0].Timestamp
	maxTs := baseTs
	var body []byte
	var rec []byte
	for i, r := range spec.Records {
		maxTs = max(maxTs, r.Timestamp)
		rec = rec[:0]
		rec = append(rec, byte(r.Attributes))
		rec = binary.AppendVarint(rec, r.Timestamp-baseTs)
		rec = binary.AppendVarint(rec, int64(i))
		rec = appendVarbytes(rec, r.Key)
		rec = appendVarbytes(rec, r.Value)
		rec = binary.AppendVarint(rec, int64(len(r.Headers)))
		for _, hd := range r.Headers {
			rec = binary.AppendVarint(rec, int64(len(hd.Key)))
			rec = append(rec, hd.Key...)
			rec = appendVarbytes(rec, hd.Value)
		}
		body = binary.AppendVarint(body, int64(len(rec)))
		body = append(body, rec...)
	}
	payload, err := compress(spec.Codec, body)
	if err != nil {
		return nil, fmt.Errorf("build batch: %w", err)
	}
	attrs := uint16(spec.Codec) & attrCodecMask
	if spec.LogAppendTime {
		attrs |= attrLogAppendTime
		maxTs = spec.LogAppendTimeMs
	}
	if spec.Transactional {
		attrs |= attrTransactional
	}
	if spec.Control {
		attrs |= attrControl
	}
	b := make([]byte, HeaderSize, HeaderSize+len(payload))
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(spec.BaseOffset))
	binary.BigEndian.PutUint32(b[offLength:], uint32(HeaderSize-12+len(payload)))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(spec.PartitionLeaderEpoch))
	b[offMagic] = 2
	binary.BigEndian.PutUint16(b[offAttributes:], attrs)
	binary.BigEndian.PutUint32(b[offLastOffDelta:], uint32(len(spec.Records)-1))
	binary.BigEndian.PutUint64(b[offBaseTimestamp:], uint64(baseTs))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(maxTs))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(spec.ProducerID))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(spec.ProducerEpoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(spec.BaseSequence))
	binary.BigEndian.PutUint32(b[offNumRecords:], uint32(len(spec.Records)))
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	return b, nil
}

func appendVarbytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(v)))
	return append(b, v...)
}

// MustBuild is Build that panics on error; for tests and for callers whose
// spec is known to be valid.
func MustBuild(spec BuildSpec) []byte {
	b, err := Build(spec)
	if err != nil {
		panic(err)
	}
	return b
}

// BuildRaw assembles a batch from the header fields of h and payload (the
// records blob, already compressed with h's codec, or arbitrary bytes),
// setting Length and the CRC and, if h.Magic is 0, magic 2. It checks
// nothing: it is how tests and tools build batches that Build refuses to.
func BuildRaw(h Header, payload []byte) []byte {
	if h.Magic == 0 {
		h.Magic = 2
	}
	b := make([]byte, HeaderSize, HeaderSize+len(payload))
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(h.BaseOffset))
	binary.BigEndian.PutUint32(b[offLength:], uint32(HeaderSize-12+len(payload)))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(h.PartitionLeaderEpoch))
	b[offMagic] = byte(h.Magic)
	binary.BigEndian.PutUint16(b[offAttributes:], uint16(h.Attributes))
	binary.BigEndian.PutUint32(b[offLastOffDelta:], uint32(h.LastOffsetDelta))
	binary.BigEndian.PutUint64(b[offBaseTimestamp:], uint64(h.BaseTimestamp))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(h.MaxTimestamp))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(h.ProducerID))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(h.ProducerEpoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(h.BaseSequence))
	binary.BigEndian.PutUint32(b[offNumRecords:], uint32(h.NumRecords))
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	return b
}

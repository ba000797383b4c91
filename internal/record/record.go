// Package record implements Kafka v2 record batches (magic 2): header
// parsing and validation, the full validation of produced batches
// (CheckProduce: every record, streaming decompression with a ceiling),
// in-place header edits done by the broker (offset assignment, leader
// epoch, LogAppendTime), record decoding with decompression, and batch
// building.
//
// Invariant kept by every function here: no byte of a batch is trusted
// before it has been length-checked, and functions that claim to validate
// (Validate, Split's callers, Records, CheckProduce) also check the
// CRC-32C. Hostile input yields an error wrapping ErrCorrupt, ErrInvalid or
// ErrInvalidTimestamp, never a panic, and never more memory than the
// decompression ceiling. Whatever CheckProduce accepts, Records decodes
// (FuzzCheckProduce checks it), so every stored batch is decodable.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
)

// HeaderSize is the size in bytes of a v2 record batch header, i.e. the
// offset of the first record (or of the compressed records blob).
const HeaderSize = 61

// Byte offsets of the v2 batch header fields.
const (
	offBaseOffset    = 0
	offLength        = 8
	offLeaderEpoch   = 12
	offMagic         = 16
	offCRC           = 17
	offAttributes    = 21
	offLastOffDelta  = 23
	offBaseTimestamp = 27
	offMaxTimestamp  = 35
	offProducerID    = 43
	offProducerEpoch = 51
	offBaseSequence  = 53
	offNumRecords    = 57

	// minLength is the smallest legal value of the batchLength field: the
	// header bytes that follow the length field.
	minLength = HeaderSize - 12
)

// Attribute bits of a v2 batch.
const (
	attrCodecMask     = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
)

// Errors. Every error returned by this package for bad input wraps exactly
// one of these, so callers can map them with errors.Is.
var (
	// ErrCorrupt means the bytes are not a well-formed batch: CRC mismatch,
	// truncated data, or framing/length fields that are out of range.
	ErrCorrupt = errors.New("corrupt record batch")
	// ErrInvalid means the batch is well-framed and its CRC is correct, but
	// its contents are not acceptable (wrong magic, no records, inconsistent
	// offset delta, undecodable records, ...).
	ErrInvalid = errors.New("invalid record batch")
)

// Codec is the compression codec stored in attribute bits 0-2.
type Codec int8

// Compression codecs as numbered by Kafka.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

// String returns the Kafka name of the codec ("none", "gzip", ...).
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return "codec(" + strconv.Itoa(int(c)) + ")"
}

// Header is the decoded fixed-size header of a v2 record batch. Length is
// the number of bytes following the Length field, so the whole batch is
// Length+12 bytes.
type Header struct {
	BaseOffset           int64
	Length               int32
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// LastOffset is the offset of the last record: BaseOffset+LastOffsetDelta.
func (h Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// NextOffset is the offset following the batch: LastOffset()+1.
func (h Header) NextOffset() int64 { return h.LastOffset() + 1 }

// Size is the total size of the batch in bytes: Length+12.
func (h Header) Size() int { return int(h.Length) + 12 }

// Codec returns the compression codec of the batch.
func (h Header) Codec() Codec { return Codec(h.Attributes & attrCodecMask) }

// IsTransactional reports whether the transactional attribute bit is set.
func (h Header) IsTransactional() bool { return h.Attributes&attrTransactional != 0 }

// IsControl reports whether the control attribute bit is set.
func (h Header) IsControl() bool { return h.Attributes&attrControl != 0 }

// LogAppendTime reports whether the timestamp type is LogAppendTime, in
// which case every record's timestamp is MaxTimestamp.
func (h Header) LogAppendTime() bool { return h.Attributes&attrLogAppendTime != 0 }

// HasProducerID reports whether the batch carries a producer id (>= 0).
func (h Header) HasProducerID() bool { return h.ProducerID >= 0 }

// LastSequence returns the sequence number of the last record, wrapping
// past math.MaxInt32 to 0 the way Kafka does. A batch without a sequence
// (BaseSequence == -1) returns -1.
func (h Header) LastSequence() int32 {
	if h.BaseSequence < 0 {
		return -1
	}
	return incrementSequence(h.BaseSequence, h.LastOffsetDelta)
}

// incrementSequence adds inc to seq, wrapping from MaxInt32 to 0.
func incrementSequence(seq, inc int32) int32 {
	const maxInt32 = 1<<31 - 1
	if seq > maxInt32-inc {
		return inc - (maxInt32 - seq) - 1
	}
	return seq + inc
}

// ParseHeader decodes the header at the start of b. It needs
// len(b) >= HeaderSize, checks magic == 2 (else ErrInvalid) and
// Length >= HeaderSize-12 (else ErrCorrupt). It does not check the CRC nor
// that b holds the whole batch.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, need %d for a batch header", ErrCorrupt, len(b), HeaderSize)
	}
	h := Header{
		BaseOffset:           int64(binary.BigEndian.Uint64(b[offBaseOffset:])),
		Length:               int32(binary.BigEndian.Uint32(b[offLength:])),
		PartitionLeaderEpoch: int32(binary.BigEndian.Uint32(b[offLeaderEpoch:])),
		Magic:                int8(b[offMagic]),
		CRC:                  binary.BigEndian.Uint32(b[offCRC:]),
		Attributes:           int16(binary.BigEndian.Uint16(b[offAttributes:])),
		LastOffsetDelta:      int32(binary.BigEndian.Uint32(b[offLastOffDelta:])),
		BaseTimestamp:        int64(binary.BigEndian.Uint64(b[offBaseTimestamp:])),
		MaxTimestamp:         int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])),
		ProducerID:           int64(binary.BigEndian.Uint64(b[offProducerID:])),
		ProducerEpoch:        int16(binary.BigEndian.Uint16(b[offProducerEpoch:])),
		BaseSequence:         int32(binary.BigEndian.Uint32(b[offBaseSequence:])),
		NumRecords:           int32(binary.BigEndian.Uint32(b[offNumRecords:])),
	}
	if h.Length < minLength {
		return h, fmt.Errorf("%w: batch length %d < minimum %d", ErrCorrupt, h.Length, minLength)
	}
	if h.Magic != 2 {
		return h, fmt.Errorf("%w: magic %d, only magic 2 is supported", ErrInvalid, h.Magic)
	}
	return h, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum computes the CRC-32C of a batch as stored in its crc field.
func checksum(batch []byte) uint32 { return crc32.Checksum(batch[offAttributes:], castagnoli) }

// Validate checks that batch is exactly one complete, CRC-correct v2 batch
// with at least one record and a non-negative lastOffsetDelta. The one
// exception is an empty batch (zero records, no payload: HeaderSize bytes),
// which log compaction leaves to keep offsets and producer state (Kafka's
// KAFKA-5443 empty batches, see EmptyBatch); ValidateProduce still rejects it. Framing and
// CRC problems wrap ErrCorrupt; content problems wrap ErrInvalid. It does not
// decode the records (see Records).
func Validate(batch []byte) (Header, error) {
	h, err := ParseHeader(batch)
	if err != nil && !errors.Is(err, ErrInvalid) {
		return h, err
	}
	if len(batch) != h.Size() {
		return h, fmt.Errorf("%w: batch at offset %d is %d bytes but its length field says %d", ErrCorrupt, h.BaseOffset, len(batch), h.Size())
	}
	if got := checksum(batch); got != h.CRC {
		return h, fmt.Errorf("%w: batch at offset %d: crc %08x, computed %08x", ErrCorrupt, h.BaseOffset, h.CRC, got)
	}
	if err != nil { // magic, reported only once the bytes are known intact
		return h, err
	}
	if h.NumRecords < 0 || h.NumRecords == 0 && len(batch) != HeaderSize {
		return h, fmt.Errorf("%w: batch at offset %d has %d records", ErrInvalid, h.BaseOffset, h.NumRecords)
	}
	if h.LastOffsetDelta < 0 {
		return h, fmt.Errorf("%w: batch at offset %d has lastOffsetDelta %d", ErrInvalid, h.BaseOffset, h.LastOffsetDelta)
	}
	return h, nil
}

// ValidateProduce is Validate plus the checks a leader applies to batches
// from producers: lastOffsetDelta must equal numRecords-1 (offsets dense
// within the batch).
func ValidateProduce(batch []byte) (Header, error) {
	h, err := Validate(batch)
	if err != nil {
		return h, err
	}
	if h.LastOffsetDelta != h.NumRecords-1 {
		return h, fmt.Errorf("%w: batch at offset %d has lastOffsetDelta %d but %d records", ErrInvalid, h.BaseOffset, h.LastOffsetDelta, h.NumRecords)
	}
	return h, nil
}

// Split walks a record set (zero or more concatenated batches) and calls fn
// with each whole batch in order, stopping at the first error fn returns.
// Only the framing is checked here (header length and magic via
// ParseHeader, and that the batch fits): a trailing partial batch returns an
// error wrapping ErrCorrupt after fn has seen the complete batches before it.
// The slices passed to fn alias set.
func Split(set []byte, fn func(batch []byte) error) error {
	pos := 0
	for pos < len(set) {
		rest := set[pos:]
		if len(rest) < HeaderSize {
			return fmt.Errorf("%w: %d trailing bytes at position %d are a partial batch header", ErrCorrupt, len(rest), pos)
		}
		h, err := ParseHeader(rest)
		if err != nil {
			return fmt.Errorf("batch at position %d: %w", pos, err)
		}
		if int64(h.Size()) > int64(len(rest)) {
			return fmt.Errorf("%w: batch at position %d needs %d bytes, only %d left", ErrCorrupt, pos, h.Size(), len(rest))
		}
		if err := fn(rest[:h.Size()]); err != nil {
			return err
		}
		pos += h.Size()
	}
	return nil
}

// SetBaseOffset overwrites the baseOffset field. The field is outside the
// CRC, so the CRC stays valid. batch must be at least HeaderSize bytes.
func SetBaseOffset(batch []byte, off int64) {
	binary.BigEndian.PutUint64(batch[offBaseOffset:], uint64(off))
}

// SetPartitionLeaderEpoch overwrites the partitionLeaderEpoch field, which
// is outside the CRC. batch must be at least HeaderSize bytes.
func SetPartitionLeaderEpoch(batch []byte, epoch int32) {
	binary.BigEndian.PutUint32(batch[offLeaderEpoch:], uint32(epoch))
}

// SetLogAppendTime marks the batch as LogAppendTime, sets MaxTimestamp to ts
// and recomputes the CRC. batch must be one whole batch (len == Size()).
func SetLogAppendTime(batch []byte, ts int64) {
	attrs := binary.BigEndian.Uint16(batch[offAttributes:]) | attrLogAppendTime
	binary.BigEndian.PutUint16(batch[offAttributes:], attrs)
	binary.BigEndian.PutUint64(batch[offMaxTimestamp:], uint64(ts))
	binary.BigEndian.PutUint32(batch[offCRC:], checksum(batch))
}

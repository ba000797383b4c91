package record

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ErrInvalidTimestamp means a record's timestamp is outside the window the
// topic accepts (message.timestamp.before.max.ms / after.max.ms); Kafka
// answers INVALID_TIMESTAMP.
var ErrInvalidTimestamp = errors.New("invalid record timestamp")

// DefaultMaxDecompressedBytes is the default ceiling on the decompressed
// size of one produced batch's records (broker property
// message.max.decompressed.bytes).
const DefaultMaxDecompressedBytes = 64 << 20

// maxRecordErrors bounds the per-record errors one rejected batch reports.
const maxRecordErrors = 100

// ProduceRules are what a leader checks in the records of a produced batch,
// beyond the header checks of ValidateProduce. The zero value checks framing
// only, with the DefaultMaxDecompressedBytes ceiling.
type ProduceRules struct {
	// MaxDecompressedBytes caps the size of the batch's records once
	// decompressed (uncompressed batches are capped the same way); <= 0
	// means DefaultMaxDecompressedBytes, and values above
	// MaxDecompressedSize are lowered to it.
	MaxDecompressedBytes int64
	// RequireKeys refuses records without a key (cleanup.policy=compact).
	RequireKeys bool
	// Now, BeforeMaxMs and AfterMaxMs bound the timestamp of every record of
	// a CreateTime batch to [Now-BeforeMaxMs, Now+AfterMaxMs] (Kafka's
	// message.timestamp.before.max.ms and after.max.ms); a record without a
	// timestamp (-1) is not checked. Zero BeforeMaxMs and AfterMaxMs with
	// zero Now mean no bound.
	Now                     int64
	BeforeMaxMs, AfterMaxMs int64
	// LogAppendTime means the broker overwrites the timestamps
	// (message.timestamp.type=LogAppendTime): they are not checked.
	LogAppendTime bool
}

// RecordError is the reason one record of a batch was refused. Index is the
// record's position in the batch (Kafka's RecordErrors.BatchIndex).
type RecordError struct {
	Index   int32
	Message string
}

// BatchError is a produced batch refused because of some of its records.
// It wraps ErrInvalid (INVALID_RECORD) or ErrInvalidTimestamp
// (INVALID_TIMESTAMP); Records lists the refused records, at most 100.
type BatchError struct {
	Kind       error
	BaseOffset int64
	Records    []RecordError
}

// Error names the first refused records.
func (e *BatchError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	for i, r := range e.Records {
		if i == 3 {
			fmt.Fprintf(&b, " (and %d more)", len(e.Records)-i)
			break
		}
		fmt.Fprintf(&b, "; record %d: %s", r.Index, r.Message)
	}
	return b.String()
}

// Unwrap returns ErrInvalid or ErrInvalidTimestamp.
func (e *BatchError) Unwrap() error { return e.Kind }

func (e *BatchError) add(kind error, i int32, format string, args ...any) {
	if e.Kind == nil || kind == ErrInvalid {
		e.Kind = kind // INVALID_RECORD wins over INVALID_TIMESTAMP, as in Kafka
	}
	if len(e.Records) < maxRecordErrors {
		e.Records = append(e.Records, RecordError{Index: i, Message: fmt.Sprintf(format, args...)})
	}
}

// CheckProduce is the validation a leader applies to one batch from a
// producer, as Kafka's LogValidator does: ValidateProduce (framing, CRC,
// magic, lastOffsetDelta == numRecords-1), no control batch, a sequence
// with a producer id, then every record, decompressing as a stream: the
// codec must be known and the payload decodable to its end (including the
// codec's own checksums), the decompressed size at most
// rules.MaxDecompressedBytes, each record well framed (varint lengths that
// add up, no null header key), offset deltas exactly 0..numRecords-1, no
// bytes after the last record, keys and timestamps as rules ask.
//
// Memory use is bounded whatever the input: records are parsed from a
// small buffer and their keys and values skipped, never collected, so a
// decompression bomb costs the time to decompress at most the ceiling and
// the codec's window (gzip 32 KiB, lz4 at most 4 MiB, snappy at most 22
// times the compressed size, zstd at most max(ceiling, 8 MiB)), from pooled
// decoders.
//
// Errors: ErrCorrupt for bytes that cannot be read (CRC, framing, unknown
// codec, undecodable compressed data), a *BatchError wrapping ErrInvalid or
// ErrInvalidTimestamp for refused records, ErrInvalid otherwise. The only
// change made to batch is Kafka's: for a CreateTime batch whose
// MaxTimestamp is not its records' largest timestamp, MaxTimestamp is
// corrected (and the CRC recomputed); the payload is never touched.
func CheckProduce(batch []byte, rules ProduceRules) (Header, error) {
	h, err := ValidateProduce(batch)
	if err != nil {
		return h, err
	}
	if h.IsControl() {
		return h, fmt.Errorf("%w: clients may not write control batches", ErrInvalid)
	}
	if h.HasProducerID() && h.BaseSequence < 0 {
		return h, fmt.Errorf("%w: batch with producer id %d has sequence %d", ErrInvalid, h.ProducerID, h.BaseSequence)
	}
	limit := rules.MaxDecompressedBytes
	if limit <= 0 {
		limit = DefaultMaxDecompressedBytes
	}
	limit = min(limit, MaxDecompressedSize)

	s, release, err := openScanner(h.Codec(), batch[HeaderSize:], limit)
	if err != nil {
		return h, err
	}
	defer release()
	maxTs, err := s.records(h, &rules)
	if err != nil {
		return h, err
	}
	if !h.LogAppendTime() && !rules.LogAppendTime && maxTs != h.MaxTimestamp {
		binary.BigEndian.PutUint64(batch[offMaxTimestamp:], uint64(maxTs))
		binary.BigEndian.PutUint32(batch[offCRC:], checksum(batch))
		h.MaxTimestamp, h.CRC = maxTs, binary.BigEndian.Uint32(batch[offCRC:])
	}
	return h, nil
}

// scanner reads the records of one batch, either from a slice (no codec,
// raw snappy) or from a decompressing stream through a pooled
// bufio.Reader. It counts the bytes consumed and refuses more than limit,
// and refuses reading past end (the end of the record being parsed).
type scanner struct {
	codec Codec
	buf   []byte        // slice mode: the unread bytes
	br    *bufio.Reader // stream mode (buf unused)
	n     int64         // bytes consumed
	limit int64         // ceiling on n
	end   int64         // n may not pass end (the current record's end)
}

// errors of the scanner, turned into messages by records.
var (
	errPastRecord = errors.New("field runs past the end of the record")
	errOverLimit  = errors.New("over the decompressed size limit")
)

// streamError is a failure of the decompressor itself.
type streamError struct{ err error }

func (e streamError) Error() string { return e.err.Error() }

func (e streamError) Unwrap() error { return e.err }

// ReadByte returns the next byte of the current record.
func (s *scanner) ReadByte() (byte, error) {
	if s.n >= s.end {
		return 0, errPastRecord
	}
	var c byte
	if s.br == nil {
		if len(s.buf) == 0 {
			return 0, io.ErrUnexpectedEOF
		}
		c, s.buf = s.buf[0], s.buf[1:]
	} else {
		var err error
		if c, err = s.br.ReadByte(); err != nil {
			return 0, s.streamErr(err)
		}
	}
	s.n++
	return c, nil
}

func (s *scanner) streamErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return streamError{err}
}

// skip consumes n bytes of the current record.
func (s *scanner) skip(n int64) error {
	if n > s.end-s.n {
		return errPastRecord
	}
	if s.br == nil {
		if n > int64(len(s.buf)) {
			return io.ErrUnexpectedEOF
		}
		s.buf = s.buf[n:]
		s.n += n
		return nil
	}
	for n > 0 {
		k := int(min(n, math.MaxInt32))
		d, err := s.br.Discard(k)
		s.n += int64(d)
		n -= int64(d)
		if err != nil {
			return s.streamErr(err)
		}
	}
	return nil
}

func (s *scanner) varlong() (int64, error) {
	if s.br == nil && s.end-s.n >= binary.MaxVarintLen64 && len(s.buf) >= binary.MaxVarintLen64 {
		v, k := binary.Varint(s.buf) // fast path
		if k <= 0 {
			return 0, errors.New("malformed varint")
		}
		s.buf = s.buf[k:]
		s.n += int64(k)
		return v, nil
	}
	v, err := binary.ReadVarint(s)
	if err != nil && !errors.Is(err, errPastRecord) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, new(streamError)) {
		err = errors.New("malformed varint")
	}
	return v, err
}

func (s *scanner) varint() (int32, error) {
	v, err := s.varlong()
	if err == nil && v != int64(int32(v)) {
		err = errors.New("malformed varint (out of int32 range)")
	}
	return int32(v), err
}

// skipBytes reads a varint length and skips that many bytes; it returns
// the length (-1 for null). Lengths below -1 are an error.
func (s *scanner) skipBytes(what string) (int32, error) {
	n, err := s.varint()
	if err != nil {
		return 0, err
	}
	if n < -1 {
		return 0, fmt.Errorf("%s length %d", what, n)
	}
	if n > 0 {
		err = s.skip(int64(n))
	}
	return n, err
}

// atEOF reports whether the records end exactly here; in stream mode it
// reads to the end of the compressed stream so that the codec's trailing
// checksums are verified.
func (s *scanner) atEOF() (bool, error) {
	if s.br == nil {
		return len(s.buf) == 0, nil
	}
	_, err := s.br.ReadByte()
	switch {
	case err == io.EOF:
		return true, nil
	case err != nil:
		return false, streamError{err}
	}
	return false, nil
}

// records checks the h.NumRecords records and returns their largest
// timestamp.
func (s *scanner) records(h Header, rules *ProduceRules) (int64, error) {
	checkTs := !h.LogAppendTime() && !rules.LogAppendTime && (rules.Now != 0 || rules.BeforeMaxMs != 0 || rules.AfterMaxMs != 0)
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if checkTs {
		before, after := max(rules.BeforeMaxMs, 0), max(rules.AfterMaxMs, 0)
		if rules.Now >= math.MinInt64+before {
			lo = rules.Now - before
		}
		if rules.Now <= math.MaxInt64-after {
			hi = rules.Now + after
		}
	}
	maxTs := int64(-1)
	var bad BatchError
	for i := int32(0); i < h.NumRecords; i++ {
		ts, keyLen, err := s.record(h, i)
		if err != nil {
			return 0, s.fail(h, i, err)
		}
		maxTs = max(maxTs, ts)
		if rules.RequireKeys && keyLen < 0 {
			bad.add(ErrInvalid, i, "compacted topic cannot accept a record without a key")
		}
		if checkTs && ts != -1 && (ts < lo || ts > hi) {
			bad.add(ErrInvalidTimestamp, i, "timestamp %d is outside [%d, %d] (message.timestamp.before.max.ms / after.max.ms)", ts, lo, hi)
		}
	}
	s.end = math.MaxInt64
	eof, err := s.atEOF()
	if err != nil {
		return 0, s.fail(h, h.NumRecords, err)
	}
	if !eof {
		return 0, fmt.Errorf("%w: bytes follow the last of the %d records", ErrInvalid, h.NumRecords)
	}
	if bad.Kind != nil {
		bad.BaseOffset = h.BaseOffset
		return 0, &bad
	}
	return maxTs, nil
}

// fail turns a scanner error at record i (-1: opening the stream) into the
// error CheckProduce returns.
func (s *scanner) fail(h Header, i int32, err error) error {
	var se streamError
	switch {
	case errors.Is(err, errUnknownCodec):
		return fmt.Errorf("%w: unknown compression codec %d", ErrCorrupt, s.codec)
	case errors.Is(err, errOverLimit): // the scanner's count, or a snappy block's length
		return fmt.Errorf("%w: records decompress to more than %d bytes (message.max.decompressed.bytes)", ErrInvalid, s.limit)
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s payload cannot be decompressed: %v", ErrCorrupt, s.codec, se.err)
	case i == h.NumRecords:
		return fmt.Errorf("%w: after the last record: %v", ErrInvalid, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &BatchError{Kind: ErrInvalid, BaseOffset: h.BaseOffset, Records: []RecordError{{Index: i,
			Message: "records end early: the batch claims " + strconv.Itoa(int(h.NumRecords)) + " records"}}}
	}
	return &BatchError{Kind: ErrInvalid, BaseOffset: h.BaseOffset, Records: []RecordError{{Index: i, Message: err.Error()}}}
}

// record checks record i and returns its timestamp and key length.
func (s *scanner) record(h Header, i int32) (ts int64, keyLen int32, err error) {
	s.end = math.MaxInt64
	length, err := s.varint()
	if err != nil {
		return 0, 0, err
	}
	if length < 0 {
		return 0, 0, fmt.Errorf("record length %d", length)
	}
	if int64(length) > s.limit-s.n {
		return 0, 0, errOverLimit
	}
	if s.br == nil && int(length) > len(s.buf) {
		return 0, 0, fmt.Errorf("record length %d with %d bytes left", length, len(s.buf))
	}
	if length < minRecordSize-1 {
		return 0, 0, fmt.Errorf("record length %d is below the minimum %d", length, minRecordSize-1)
	}
	s.end = s.n + int64(length)
	if _, err := s.ReadByte(); err != nil { // attributes: unused, any value
		return 0, 0, err
	}
	tsDelta, err := s.varlong()
	if err != nil {
		return 0, 0, err
	}
	offDelta, err := s.varint()
	if err != nil {
		return 0, 0, err
	}
	if offDelta != i {
		return 0, 0, fmt.Errorf("offset delta %d, expected %d (offsets must be dense from 0)", offDelta, i)
	}
	if h.LogAppendTime() {
		ts = h.MaxTimestamp
	} else if ts = h.BaseTimestamp + tsDelta; (tsDelta > 0) != (ts > h.BaseTimestamp) {
		return 0, 0, fmt.Errorf("timestamp delta %d overflows the base timestamp %d", tsDelta, h.BaseTimestamp)
	}
	if keyLen, err = s.skipBytes("key"); err != nil {
		return 0, 0, err
	}
	if _, err = s.skipBytes("value"); err != nil {
		return 0, 0, err
	}
	nh, err := s.varint()
	if err != nil {
		return 0, 0, err
	}
	if nh < 0 || int64(nh) > (s.end-s.n)/2 { // each header needs >= 2 bytes
		return 0, 0, fmt.Errorf("header count %d with %d bytes left in the record", nh, s.end-s.n)
	}
	for j := int32(0); j < nh; j++ {
		k, err := s.skipBytes("header key")
		if err != nil {
			return 0, 0, err
		}
		if k < 0 {
			return 0, 0, fmt.Errorf("header %d has a null key", j)
		}
		if _, err := s.skipBytes("header value"); err != nil {
			return 0, 0, err
		}
	}
	if s.n != s.end {
		return 0, 0, fmt.Errorf("%d bytes left inside the record after its headers", s.end-s.n)
	}
	return ts, keyLen, nil
}

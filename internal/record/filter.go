package record

import (
	"encoding/binary"
	"fmt"
)

// Filter returns batch with only the records for which keep returns true,
// for log compaction. The result keeps every header field of batch (base
// offset, lastOffsetDelta, timestamps, leader epoch, producer id, epoch and
// base sequence, attributes) so retained records keep their offsets and the
// batch still ends at its original last offset; retained records are copied
// byte for byte (offset and timestamp deltas, headers) and recompressed with
// the batch's codec. If every record is kept, batch itself is returned; if
// none is, out is nil. batch must pass Validate (errors wrap ErrCorrupt or
// ErrInvalid as for Records). The Record passed to keep may alias batch and
// is only valid during the call.
func Filter(batch []byte, keep func(r *Record) bool) (out []byte, kept int, err error) {
	h, err := Validate(batch)
	if err != nil {
		return nil, 0, err
	}
	if h.NumRecords == 0 {
		return nil, 0, nil
	}
	data, err := decompress(h.Codec(), batch[HeaderSize:])
	if err != nil {
		return nil, 0, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
	}
	// Kept records as ranges of data, adjacent ones merged.
	var spans [][2]int
	err = eachRecord(h, data, func(r *Record, from, to int) {
		if !keep(r) {
			return
		}
		kept++
		if n := len(spans); n > 0 && spans[n-1][1] == from {
			spans[n-1][1] = to
		} else {
			spans = append(spans, [2]int{from, to})
		}
	})
	switch {
	case err != nil:
		return nil, 0, err
	case kept == int(h.NumRecords):
		return batch, kept, nil
	case kept == 0:
		return nil, 0, nil
	}
	var body []byte
	if len(spans) == 1 {
		body = data[spans[0][0]:spans[0][1]]
	} else {
		n := 0
		for _, sp := range spans {
			n += sp[1] - sp[0]
		}
		body = make([]byte, 0, n)
		for _, sp := range spans {
			body = append(body, data[sp[0]:sp[1]]...)
		}
	}
	payload, err := compress(h.Codec(), body)
	if err != nil {
		return nil, 0, fmt.Errorf("batch at offset %d: recompress %s: %w", h.BaseOffset, h.Codec(), err)
	}
	out = make([]byte, HeaderSize, HeaderSize+len(payload))
	copy(out, batch[:HeaderSize])
	out = append(out, payload...)
	binary.BigEndian.PutUint32(out[offLength:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[offNumRecords:], uint32(kept))
	binary.BigEndian.PutUint32(out[offCRC:], checksum(out))
	return out, kept, nil
}

// ForEach validates batch (see Validate), decompresses it and calls fn with
// each record in order, with the checks of Records but without allocating
// the records. The Record may alias batch and is only valid during the call.
func ForEach(batch []byte, fn func(r *Record)) error {
	h, err := Validate(batch)
	if err != nil || h.NumRecords == 0 {
		return err
	}
	data, err := decompress(h.Codec(), batch[HeaderSize:])
	if err != nil {
		return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
	}
	return eachRecord(h, data, func(r *Record, _, _ int) { fn(r) })
}

// eachRecord decodes the h.NumRecords records of the (decompressed) records
// blob data and calls fn with each record and the range data[from:to] of
// its encoding, checking
// what Records checks: the count, increasing offset deltas within
// lastOffsetDelta, no trailing bytes.
func eachRecord(h Header, data []byte, fn func(r *Record, from, to int)) error {
	if int64(h.NumRecords) > int64(len(data)/minRecordSize) {
		return fmt.Errorf("%w: batch at offset %d claims %d records in %d bytes", ErrInvalid, h.BaseOffset, h.NumRecords, len(data))
	}
	d := decoder{b: data}
	prevDelta := int64(-1)
	for i := int32(0); i < h.NumRecords; i++ {
		from := len(data) - len(d.b)
		r, offDelta, err := d.record(h)
		if err != nil {
			return fmt.Errorf("%w: batch at offset %d, record %d: %v", ErrInvalid, h.BaseOffset, i, err)
		}
		if offDelta <= prevDelta || offDelta > int64(h.LastOffsetDelta) {
			return fmt.Errorf("%w: batch at offset %d, record %d: offset delta %d out of order (previous %d, last %d)", ErrInvalid, h.BaseOffset, i, offDelta, prevDelta, h.LastOffsetDelta)
		}
		prevDelta = offDelta
		fn(&r, from, len(data)-len(d.b))
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: batch at offset %d has %d bytes after its %d records", ErrInvalid, h.BaseOffset, len(d.b), h.NumRecords)
	}
	return nil
}

// EmptyBatch builds a batch without records (HeaderSize bytes) that covers
// the offsets [h.BaseOffset, h.LastOffset()] and carries h's leader epoch,
// timestamps, producer id, producer epoch, base sequence and attributes
// (codec cleared). Log compaction writes one where it removed every record
// of a batch, or of a run of batches, so that offsets stay dense for
// readers and followers and a producer's last sequence survives a restart;
// Kafka writes the same kind of batch (KAFKA-5443) and clients skip it,
// continuing at h.NextOffset().
func EmptyBatch(h Header) []byte {
	b := make([]byte, HeaderSize)
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(h.BaseOffset))
	binary.BigEndian.PutUint32(b[offLength:], uint32(HeaderSize-12))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(h.PartitionLeaderEpoch))
	b[offMagic] = 2
	binary.BigEndian.PutUint16(b[offAttributes:], uint16(h.Attributes)&^attrCodecMask)
	binary.BigEndian.PutUint32(b[offLastOffDelta:], uint32(h.LastOffsetDelta))
	binary.BigEndian.PutUint64(b[offBaseTimestamp:], uint64(h.BaseTimestamp))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(h.MaxTimestamp))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(h.ProducerID))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(h.ProducerEpoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(h.BaseSequence))
	binary.BigEndian.PutUint32(b[offNumRecords:], 0)
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	return b
}

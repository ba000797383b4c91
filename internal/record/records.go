package record

import (
	"encoding/binary"
	"fmt"
)

// RecordHeader is one header of a record. A nil Value is a null value.
type RecordHeader struct {
	Key   string
	Value []byte
}

// Record is one decoded record. Offset and Timestamp are absolute (batch
// base plus deltas; for LogAppendTime batches Timestamp is the batch's
// MaxTimestamp). Nil Key or Value means null; an empty non-nil slice is an
// empty value.
type Record struct {
	Offset     int64
	Timestamp  int64
	Key, Value []byte
	Headers    []RecordHeader
	Attributes int8
}

// minRecordSize is the smallest possible encoded record (length,
// attributes, timestampDelta, offsetDelta, key, value, header count).
const minRecordSize = 7

// Records validates batch (see Validate), decompresses it and decodes every
// record. It checks that exactly NumRecords records are present, that no
// bytes trail them and that offset deltas are increasing and within
// lastOffsetDelta. Returned slices do not alias batch for compressed batches
// but do for uncompressed ones.
func Records(batch []byte) ([]Record, error) {
	h, err := Validate(batch)
	if err != nil {
		return nil, err
	}
	if h.NumRecords == 0 { // an empty batch left by compaction
		return nil, nil
	}
	data, err := decompress(h.Codec(), batch[HeaderSize:])
	if err != nil {
		return nil, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
	}
	recs := make([]Record, 0, min(int64(h.NumRecords), int64(len(data)/minRecordSize)))
	if err := eachRecord(h, data, func(r *Record, _, _ int) { recs = append(recs, *r) }); err != nil {
		return nil, err
	}
	return recs, nil
}

// decoder reads varint-framed record fields from b, consuming it.
type decoder struct{ b []byte }

type decodeError string

func (e decodeError) Error() string { return string(e) }

const (
	errShort  = decodeError("truncated record")
	errVarint = decodeError("malformed varint")
)

func (d *decoder) varlong() (int64, error) {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		if n == 0 {
			return 0, errShort
		}
		return 0, errVarint
	}
	d.b = d.b[n:]
	return v, nil
}

func (d *decoder) varint() (int32, error) {
	v, err := d.varlong()
	if err != nil {
		return 0, err
	}
	if v != int64(int32(v)) {
		return 0, errVarint
	}
	return int32(v), nil
}

// varbytes reads a varint length then that many bytes; -1 is null (nil).
func (d *decoder) varbytes() ([]byte, error) {
	n, err := d.varint()
	if err != nil {
		return nil, err
	}
	if n < -1 {
		return nil, decodeError(fmt.Sprintf("negative length %d", n))
	}
	if n == -1 {
		return nil, nil
	}
	if int(n) > len(d.b) {
		return nil, errShort
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v, nil
}

// record decodes one record and returns it with its offset delta.
func (d *decoder) record(h Header) (Record, int64, error) {
	length, err := d.varint()
	if err != nil {
		return Record{}, 0, err
	}
	if length < 0 || int(length) > len(d.b) {
		return Record{}, 0, decodeError(fmt.Sprintf("record length %d with %d bytes left", length, len(d.b)))
	}
	body := decoder{b: d.b[:length]}
	d.b = d.b[length:]
	if len(body.b) < 1 {
		return Record{}, 0, errShort
	}
	r := Record{Attributes: int8(body.b[0])}
	body.b = body.b[1:]
	tsDelta, err := body.varlong()
	if err != nil {
		return Record{}, 0, err
	}
	offDelta, err := body.varint()
	if err != nil {
		return Record{}, 0, err
	}
	r.Offset = h.BaseOffset + int64(offDelta)
	if h.LogAppendTime() {
		r.Timestamp = h.MaxTimestamp
	} else {
		r.Timestamp = h.BaseTimestamp + tsDelta
	}
	if r.Key, err = body.varbytes(); err != nil {
		return Record{}, 0, err
	}
	if r.Value, err = body.varbytes(); err != nil {
		return Record{}, 0, err
	}
	nh, err := body.varint()
	if err != nil {
		return Record{}, 0, err
	}
	if nh < 0 || int(nh) > len(body.b)/2 { // each header needs >= 2 bytes
		return Record{}, 0, decodeError(fmt.Sprintf("header count %d with %d bytes left", nh, len(body.b)))
	}
	if nh > 0 {
		r.Headers = make([]RecordHeader, 0, nh)
	}
	for i := int32(0); i < nh; i++ {
		k, err := body.varbytes()
		if err != nil {
			return Record{}, 0, err
		}
		if k == nil {
			return Record{}, 0, decodeError("null header key")
		}
		v, err := body.varbytes()
		if err != nil {
			return Record{}, 0, err
		}
		r.Headers = append(r.Headers, RecordHeader{Key: string(k), Value: v})
	}
	if len(body.b) != 0 {
		return Record{}, 0, decodeError(fmt.Sprintf("%d bytes left inside record", len(body.b)))
	}
	return r, int64(offDelta), nil
}

package txn

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// Transaction-table snapshots: the open and aborted transactions of a
// partition as of a log offset, written next to each producer-state
// snapshot so that opening a partition replays only the batches above it.
//
// Format (big-endian), version 1:
//
//	magic    [8]byte  "STRNDTX\x00"
//	version  uint16   1
//	offset   int64    the log offset the table reflects
//	nopen    uint32   open transactions, by producer id ascending:
//	  producerID, firstOffset  int64, int64
//	nabort   uint32   aborted ranges, by last offset ascending:
//	  producerID, firstOffset, lastOffset  int64, int64, int64
//	crc      uint32   CRC-32C of every byte before it
//
// DecodeTxns checks lengths, the CRC, the version and the ranges (offsets
// below the snapshot offset, first <= last, order) before returning.

var txnSnapMagic = [8]byte{'S', 'T', 'R', 'N', 'D', 'T', 'X', 0}

const txnSnapHeader = 8 + 2 + 8

// Encode returns the table's snapshot as of log offset offset.
func (t *Txns) Encode(offset int64) []byte {
	ids := make([]int64, 0, len(t.ongoing))
	for id := range t.ongoing {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := make([]byte, 0, txnSnapHeader+8+len(ids)*16+len(t.aborted)*24+4)
	b = append(b, txnSnapMagic[:]...)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint64(b, uint64(t.ongoing[id]))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.aborted)))
	for _, a := range t.aborted {
		b = binary.BigEndian.AppendUint64(b, uint64(a.ProducerID))
		b = binary.BigEndian.AppendUint64(b, uint64(a.FirstOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(a.LastOffset))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeTxns parses a transaction-table snapshot; errors wrap ErrBadSnapshot.
func DecodeTxns(b []byte) (*Txns, int64, error) {
	if len(b) < txnSnapHeader+8+4 {
		return nil, 0, fmt.Errorf("%w: %d bytes", ErrBadSnapshot, len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if [8]byte(body[:8]) != txnSnapMagic {
		return nil, 0, fmt.Errorf("%w: magic %q", ErrBadSnapshot, body[:8])
	}
	if c := crc32.Checksum(body, castagnoli); c != sum {
		return nil, 0, fmt.Errorf("%w: crc %08x, computed %08x", ErrBadSnapshot, sum, c)
	}
	if v := binary.BigEndian.Uint16(body[8:]); v != 1 {
		return nil, 0, fmt.Errorf("%w: version %d", ErrBadSnapshot, v)
	}
	offset := int64(binary.BigEndian.Uint64(body[10:]))
	rest := body[txnSnapHeader:]
	u64 := func() int64 { v := int64(binary.BigEndian.Uint64(rest)); rest = rest[8:]; return v }
	n := uint64(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if offset < 0 || n*16 > uint64(len(rest)) {
		return nil, 0, fmt.Errorf("%w: offset %d, %d open transactions in %d bytes", ErrBadSnapshot, offset, n, len(rest))
	}
	t := NewTxns()
	prev := int64(-1)
	for range n {
		id, first := u64(), u64()
		if id <= prev || first < 0 || first >= offset {
			return nil, 0, fmt.Errorf("%w: open transaction of producer %d at %d (snapshot at %d)", ErrBadSnapshot, id, first, offset)
		}
		prev = id
		t.ongoing[id] = first
	}
	if len(rest) < 4 {
		return nil, 0, fmt.Errorf("%w: truncated", ErrBadSnapshot)
	}
	n = uint64(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if n*24 != uint64(len(rest)) {
		return nil, 0, fmt.Errorf("%w: %d aborted ranges in %d bytes", ErrBadSnapshot, n, len(rest))
	}
	last := int64(-1)
	for range n {
		a := AbortedTxn{ProducerID: u64(), FirstOffset: u64(), LastOffset: u64()}
		if a.ProducerID < 0 || a.FirstOffset < 0 || a.FirstOffset > a.LastOffset || a.LastOffset <= last || a.LastOffset >= offset {
			return nil, 0, fmt.Errorf("%w: aborted range %+v (snapshot at %d)", ErrBadSnapshot, a, offset)
		}
		last = a.LastOffset
		t.aborted = append(t.aborted, a)
	}
	return t, offset, nil
}

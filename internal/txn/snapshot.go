package txn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
)

// Producer-state snapshots (Kafka's "<offset>.snapshot" files): the
// producer table of a partition as of a log offset, so that opening a
// partition replays only the batch headers above that offset instead of
// the whole log.
//
// Format (big-endian), version 1:
//
//	magic    [8]byte  "STRNDPS\x00"
//	version  uint16   1
//	offset   int64    the log offset the table reflects (every batch below it)
//	count    uint32   number of producers
//	count times, ordered by producer id:
//	  producerID int64
//	  epoch      int16
//	  nbatches   uint8   0..MaxCachedBatches (0: fenced by a marker, no batch of its epoch yet)
//	  nbatches times, oldest first:
//	    firstSeq, lastSeq        int32
//	    firstOffset, lastOffset  int64
//	crc      uint32   CRC-32C of every byte before it
//
// DecodeSnapshot checks the length of every field, the CRC, the version
// and the ranges (producer ids ascending, each producer's batch offsets
// ascending and below the snapshot offset) before it returns anything.

var snapshotMagic = [8]byte{'S', 'T', 'R', 'N', 'D', 'P', 'S', 0}

const (
	snapshotVersion   = 1
	snapshotHeader    = 8 + 2 + 8 + 4
	snapshotEntryHead = 8 + 2 + 1
	snapshotBatchSize = 4 + 4 + 8 + 8
)

// ErrBadSnapshot: a snapshot's bytes are not a valid snapshot.
var ErrBadSnapshot = errors.New("bad producer state snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeSnapshot returns the snapshot of the table as of log offset offset.
func (s *State) EncodeSnapshot(offset int64) []byte {
	ids := make([]int64, 0, len(s.producers))
	for id := range s.producers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := make([]byte, 0, snapshotHeader+len(ids)*(snapshotEntryHead+snapshotBatchSize)+4)
	b = append(b, snapshotMagic[:]...)
	b = binary.BigEndian.AppendUint16(b, snapshotVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		e := s.producers[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = append(b, byte(len(e.batches)))
		for _, m := range e.batches {
			b = binary.BigEndian.AppendUint32(b, uint32(m.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.firstOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.lastOffset))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeSnapshot parses a snapshot and returns the table and the offset it
// reflects. Errors wrap ErrBadSnapshot.
func DecodeSnapshot(b []byte) (*State, int64, error) {
	if len(b) < snapshotHeader+4 {
		return nil, 0, fmt.Errorf("%w: %d bytes", ErrBadSnapshot, len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if [8]byte(body[:8]) != snapshotMagic {
		return nil, 0, fmt.Errorf("%w: magic %q", ErrBadSnapshot, body[:8])
	}
	if c := crc32.Checksum(body, castagnoli); c != sum {
		return nil, 0, fmt.Errorf("%w: crc %08x, computed %08x", ErrBadSnapshot, sum, c)
	}
	if v := binary.BigEndian.Uint16(body[8:]); v != snapshotVersion {
		return nil, 0, fmt.Errorf("%w: version %d", ErrBadSnapshot, v)
	}
	offset := int64(binary.BigEndian.Uint64(body[10:]))
	count := binary.BigEndian.Uint32(body[18:])
	if offset < 0 {
		return nil, 0, fmt.Errorf("%w: offset %d", ErrBadSnapshot, offset)
	}
	rest := body[snapshotHeader:]
	if uint64(count)*(snapshotEntryHead+snapshotBatchSize) > uint64(len(rest)) {
		return nil, 0, fmt.Errorf("%w: %d producers in %d bytes", ErrBadSnapshot, count, len(rest))
	}
	st := &State{producers: make(map[int64]*producerEntry, count)}
	prev := int64(-1)
	for i := uint32(0); i < count; i++ {
		if len(rest) < snapshotEntryHead {
			return nil, 0, fmt.Errorf("%w: producer %d truncated", ErrBadSnapshot, i)
		}
		id := int64(binary.BigEndian.Uint64(rest))
		e := &producerEntry{epoch: int16(binary.BigEndian.Uint16(rest[8:]))}
		n := int(rest[10])
		rest = rest[snapshotEntryHead:]
		if id <= prev || id < 0 || n > MaxCachedBatches || len(rest) < n*snapshotBatchSize {
			return nil, 0, fmt.Errorf("%w: producer %d (id %d, epoch %d, %d batches)", ErrBadSnapshot, i, id, e.epoch, n)
		}
		prev = id
		lastOff := int64(-1)
		for j := 0; j < n; j++ {
			m := batchMeta{
				firstSeq:    int32(binary.BigEndian.Uint32(rest)),
				lastSeq:     int32(binary.BigEndian.Uint32(rest[4:])),
				firstOffset: int64(binary.BigEndian.Uint64(rest[8:])),
				lastOffset:  int64(binary.BigEndian.Uint64(rest[16:])),
			}
			rest = rest[snapshotBatchSize:]
			if m.firstOffset <= lastOff || m.lastOffset < m.firstOffset || m.lastOffset >= offset {
				return nil, 0, fmt.Errorf("%w: producer %d batch %d: sequences [%d,%d] offsets [%d,%d] (snapshot at %d)",
					ErrBadSnapshot, id, j, m.firstSeq, m.lastSeq, m.firstOffset, m.lastOffset, offset)
			}
			lastOff = m.lastOffset
			e.batches = append(e.batches, m)
		}
		st.producers[id] = e
	}
	if len(rest) != 0 {
		return nil, 0, fmt.Errorf("%w: %d trailing bytes", ErrBadSnapshot, len(rest))
	}
	return st, offset, nil
}

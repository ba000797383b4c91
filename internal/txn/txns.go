package txn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"strand/internal/record"
)

// Transactions on the partition side (KIP-98): which producers have a
// transaction open in this partition (its first offset), and which
// transactions were aborted (their offset range), so that a
// read_committed fetch stops at the last stable offset and can tell the
// client which batches to drop.
//
// Invariants: a producer has at most one open transaction per partition;
// it opens with the producer's first transactional batch and closes with
// the control batch (marker) that ends it; an aborted range
// [FirstOffset, LastOffset] ends at its ABORT marker and is recorded once.

// Control record types of a transaction marker (the key's second int16).
const (
	MarkerAbort  int16 = 0
	MarkerCommit int16 = 1
)

// ErrBadMarker: a control batch does not hold a valid transaction marker.
var ErrBadMarker = errors.New("bad transaction marker")

// BuildMarker encodes a COMMIT or ABORT control batch of producer pid at
// epoch, written by the transaction coordinator of coordinatorEpoch.
// Kafka's format: key = version int16 0, type int16; value = version
// int16 0, coordinator epoch int32.
func BuildMarker(pid int64, epoch int16, commit bool, coordinatorEpoch int32, timestamp int64) ([]byte, error) {
	typ := MarkerAbort
	if commit {
		typ = MarkerCommit
	}
	key := binary.BigEndian.AppendUint16(make([]byte, 0, 4), 0)
	key = binary.BigEndian.AppendUint16(key, uint16(typ))
	val := binary.BigEndian.AppendUint16(make([]byte, 0, 6), 0)
	val = binary.BigEndian.AppendUint32(val, uint32(coordinatorEpoch))
	return record.Build(record.BuildSpec{Transactional: true, Control: true, ProducerID: pid, ProducerEpoch: epoch,
		BaseSequence: -1, Records: []record.Record{{Timestamp: timestamp, Key: key, Value: val}}})
}

// ParseMarker returns whether the control batch (CRC-checked by
// record.Records) is a COMMIT marker; errors wrap ErrBadMarker.
func ParseMarker(batch []byte) (commit bool, err error) {
	recs, err := record.Records(batch)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrBadMarker, err)
	}
	if len(recs) == 0 || len(recs[0].Key) < 4 {
		return false, fmt.Errorf("%w: no control record", ErrBadMarker)
	}
	switch typ := int16(binary.BigEndian.Uint16(recs[0].Key[2:])); typ {
	case MarkerAbort:
		return false, nil
	case MarkerCommit:
		return true, nil
	default:
		return false, fmt.Errorf("%w: control type %d", ErrBadMarker, typ)
	}
}

// AbortedTxn is the offset range of one aborted transaction in a partition.
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64
	LastOffset  int64 // the offset of its ABORT marker
}

// Txns is one partition's transaction table. It is not safe for
// concurrent use: the partition serialises its updates with its append
// lock and publishes snapshots of it (FirstUnstable, Aborted) to readers.
type Txns struct {
	ongoing map[int64]int64 // producer id -> first offset of its open transaction
	aborted []AbortedTxn    // by LastOffset ascending
}

// NewTxns returns an empty table.
func NewTxns() *Txns { return &Txns{ongoing: map[int64]int64{}} }

// Begin records a transactional data batch h (after its append).
func (t *Txns) Begin(h record.Header) {
	if !h.IsTransactional() || h.IsControl() || !h.HasProducerID() {
		return
	}
	if _, ok := t.ongoing[h.ProducerID]; !ok {
		t.ongoing[h.ProducerID] = h.BaseOffset
	}
}

// End records a marker of producer pid at offset markerOffset. It reports
// whether the producer had an open transaction here.
func (t *Txns) End(pid int64, markerOffset int64, commit bool) bool {
	first, ok := t.ongoing[pid]
	if !ok {
		return false
	}
	delete(t.ongoing, pid)
	if !commit {
		t.aborted = append(t.aborted, AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: markerOffset})
	}
	return true
}

// FirstUnstable is the first offset of the oldest open transaction,
// math.MaxInt64 if none is open.
func (t *Txns) FirstUnstable() int64 {
	first := int64(math.MaxInt64)
	for _, off := range t.ongoing {
		first = min(first, off)
	}
	return first
}

// Ongoing returns the open transactions: producer id -> first offset.
func (t *Txns) Ongoing() map[int64]int64 {
	out := make(map[int64]int64, len(t.ongoing))
	for k, v := range t.ongoing {
		out[k] = v
	}
	return out
}

// Aborted returns the aborted ranges (shared; callers must not modify it).
func (t *Txns) Aborted() []AbortedTxn { return slices.Clip(t.aborted) }

// Trim forgets aborted ranges that end below logStart.
func (t *Txns) Trim(logStart int64) {
	i := 0
	for i < len(t.aborted) && t.aborted[i].LastOffset < logStart {
		i++
	}
	if i > 0 {
		t.aborted = slices.Clone(t.aborted[i:])
	}
}

// AbortedIn returns the aborted transactions of aborted (ordered by
// LastOffset) that overlap [from, to): what a read_committed fetch from
// offset from, returning data below to, must report.
func AbortedIn(aborted []AbortedTxn, from, to int64) []AbortedTxn {
	i, _ := slices.BinarySearchFunc(aborted, from, func(a AbortedTxn, off int64) int {
		if a.LastOffset < off {
			return -1
		}
		return 1
	})
	var out []AbortedTxn
	for ; i < len(aborted); i++ {
		if aborted[i].FirstOffset < to {
			out = append(out, aborted[i])
		}
	}
	return out
}

// ProducerInfo describes one producer of a partition (DescribeProducers).
type ProducerInfo struct {
	ProducerID   int64
	Epoch        int16
	LastSequence int32 // -1 if no batch of the current epoch is cached
}

// Producers lists the producers the table tracks, by id.
func (s *State) Producers() []ProducerInfo {
	out := make([]ProducerInfo, 0, len(s.producers))
	for id, e := range s.producers {
		pi := ProducerInfo{ProducerID: id, Epoch: e.epoch, LastSequence: -1}
		if n := len(e.batches); n > 0 {
			pi.LastSequence = e.batches[n-1].lastSeq
		}
		out = append(out, pi)
	}
	slices.SortFunc(out, func(a, b ProducerInfo) int { return int(min(max(a.ProducerID-b.ProducerID, -1), 1)) })
	return out
}

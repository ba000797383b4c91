package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
)

// Records of __transaction_state, in Kafka's format (TransactionLogKey and
// TransactionLogValue): key = version int16 0, transactional id; value =
// version int16 0, producer id, epoch, timeout, state, partitions, last
// update and start timestamps. A null value (tombstone) deletes the id.

const (
	keyVersion   = 0
	valueVersion = 0
	// maxValueVersion is the newest value version read (Kafka 3.5+ writes
	// flexible v1 with tagged fields).
	maxValueVersion = 1
)

// errUnknownRecord marks a record whose key is not a transaction key.
var errUnknownRecord = errors.New("unknown record kind")

func encodeKey(id string) []byte {
	k := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: id}
	return k.AppendTo(nil)
}

func encodeValue(m *meta) []byte {
	v := kmsg.NewTxnMetadataValue()
	v.Version = valueVersion
	v.ProducerID, v.ProducerEpoch, v.TimeoutMillis = m.pid, m.epoch, m.timeoutMs
	v.State = kmsg.TransactionState(m.state)
	v.LastUpdateTimestamp, v.StartTimestamp = m.updateMs, m.startMs
	for _, t := range m.sortedTopics() {
		vt := kmsg.NewTxnMetadataValueTopic()
		vt.Topic = t
		for p := range m.parts[t] {
			vt.Partitions = append(vt.Partitions, p)
		}
		slices.Sort(vt.Partitions)
		v.Topics = append(v.Topics, vt)
	}
	return v.AppendTo(nil)
}

// decodeRecord decodes one record of __transaction_state. key and value are
// untrusted bytes from disk: malformed input yields an error, never a panic.
// A nil meta with a nil error is a tombstone for id.
func decodeRecord(key, value []byte) (id string, m *meta, err error) {
	if len(key) < 2 {
		return "", nil, fmt.Errorf("key of %d bytes", len(key))
	}
	if v := int16(binary.BigEndian.Uint16(key)); v != keyVersion {
		return "", nil, fmt.Errorf("%w: key version %d", errUnknownRecord, v)
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return "", nil, fmt.Errorf("transaction key: %w", err)
	}
	if value == nil {
		return k.TransactionalID, nil, nil
	}
	if len(value) < 2 {
		return "", nil, fmt.Errorf("transaction value of %d bytes", len(value))
	}
	if vv := int16(binary.BigEndian.Uint16(value)); vv < 0 || vv > maxValueVersion {
		return "", nil, fmt.Errorf("transaction value version %d", vv)
	}
	v := kmsg.NewTxnMetadataValue()
	if err := v.ReadFrom(value); err != nil {
		return "", nil, fmt.Errorf("transaction value: %w", err)
	}
	if v.ProducerID < 0 || v.ProducerEpoch < 0 || v.TimeoutMillis <= 0 || v.State < 0 || int(v.State) > int(PrepareEpochFence) {
		return "", nil, fmt.Errorf("transaction value: producer %d epoch %d timeout %d state %d", v.ProducerID, v.ProducerEpoch, v.TimeoutMillis, v.State)
	}
	m = &meta{id: k.TransactionalID, pid: v.ProducerID, epoch: v.ProducerEpoch, timeoutMs: v.TimeoutMillis,
		state: State(v.State), updateMs: v.LastUpdateTimestamp, startMs: v.StartTimestamp, parts: map[string]map[int32]bool{}}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			m.add(t.Topic, p)
		}
	}
	return k.TransactionalID, m, nil
}

// buildBatch encodes one record (nil value: tombstone) as a batch.
func buildBatch(now time.Time, key, value []byte) ([]byte, error) {
	return record.Build(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: []record.Record{{Timestamp: now.UnixMilli(), Key: key, Value: value}}})
}

// loadBufferSize is how much of a partition Load reads at a time.
const loadBufferSize = 4 << 20

// replay reads partition p from its start to its end: the last record of
// each transactional id wins, tombstones delete.
func replay(l Log, p int32) (map[string]*meta, error) {
	start, end, err := l.Bounds(p)
	if err != nil {
		return nil, err
	}
	out := map[string]*meta{}
	read := func(off int64) ([]byte, error) { return l.Read(p, off, loadBufferSize) }
	err = record.Scan(start, end, read, func(h record.Header, b []byte, from int64) error {
		if h.IsControl() {
			return nil
		}
		recs, err := record.Records(b)
		if err != nil {
			return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
		}
		for _, r := range recs {
			if r.Offset < from || r.Offset >= end {
				continue
			}
			id, m, err := decodeRecord(r.Key, r.Value)
			if err != nil {
				continue // skipped: not ours or damaged (logged by the caller's counts)
			}
			if m == nil {
				delete(out, id)
			} else {
				m.partition = p
				out[id] = m
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
)

// Record versions written, as Kafka 2.1+ writes them. The key's leading
// int16 tells the kinds apart: 0 and 1 are offset commits, 2 group metadata.
const (
	offsetKeyVersion         = 1
	offsetValueVersion       = 3
	offsetValueVersionExpiry = 1 // carries an explicit expire timestamp
	groupKeyVersion          = 2
	groupValueVersion        = 3
	// Highest value versions understood when reading (written by newer Kafkas).
	maxOffsetValueVersion = 4
	maxGroupValueVersion  = 4
)

// loadBufferSize is how much of a partition Load reads at a time.
const loadBufferSize = 4 << 20

// kv is one record to append; a nil value is a tombstone.
type kv struct{ key, value []byte }

// buildBatch encodes records as one uncompressed v2 batch without producer id.
func buildBatch(now time.Time, recs []kv) ([]byte, error) {
	spec := record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	ts := now.UnixMilli()
	for _, r := range recs {
		spec.Records = append(spec.Records, record.Record{Timestamp: ts, Key: r.key, Value: r.value})
	}
	return record.Build(spec)
}

func offsetKey(group string, tp topicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: group, Topic: tp.topic, Partition: tp.partition}
	return k.AppendTo(nil)
}

// maxString is the longest string the (non-flexible) record versions written
// can hold: strings carry an int16 length.
const maxString = math.MaxInt16

// fits reports whether every string can be written in a record.
func fits(ss ...string) bool {
	for _, s := range ss {
		if len(s) > maxString {
			return false
		}
	}
	return true
}

var errTooLong = errors.New("string longer than a record can hold")

// offsetRecord encodes a committed offset.
func offsetRecord(group string, tp topicPartition, e offsetEntry) (kv, error) {
	if !fits(group, tp.topic, e.metadata) {
		return kv{}, errTooLong
	}
	v := kmsg.NewOffsetCommitValue()
	v.Version, v.Offset, v.LeaderEpoch, v.Metadata, v.CommitTimestamp = offsetValueVersion, e.offset, e.leaderEpoch, e.metadata, e.commitTime
	if e.expireTime >= 0 {
		v.Version, v.ExpireTimestamp = offsetValueVersionExpiry, e.expireTime
	}
	return kv{offsetKey(group, tp), v.AppendTo(nil)}, nil
}

// offsetTombstone deletes a committed offset.
func offsetTombstone(group string, tp topicPartition) kv { return kv{offsetKey(group, tp), nil} }

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: groupKeyVersion, Group: group}
	return k.AppendTo(nil)
}

// groupRecord encodes a group's metadata with the given assignment (members
// missing from it are stored without one).
func groupRecord(g *group, assignment map[string][]byte) (kv, error) {
	if !fits(g.name, g.protocolType, g.protocol, g.leader) {
		return kv{}, errTooLong
	}
	v := kmsg.NewGroupMetadataValue()
	v.Version, v.ProtocolType, v.Generation = groupValueVersion, g.protocolType, g.generation
	v.Protocol, v.Leader = strPtr(g.protocol), strPtr(g.leader)
	if !g.stateTime.IsZero() {
		v.CurrentStateTimestamp = g.stateTime.UnixMilli()
	}
	v.Members = []kmsg.GroupMetadataValueMember{}
	for _, m := range g.members {
		if !fits(m.id, m.clientID, m.clientHost) || m.instanceID != nil && !fits(*m.instanceID) {
			return kv{}, errTooLong
		}
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID, vm.InstanceID, vm.ClientID, vm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
		vm.RebalanceTimeoutMillis, vm.SessionTimeoutMillis = m.rebalanceTimeout, m.sessionTimeout
		vm.Subscription, vm.Assignment = m.metadata(g.protocol), assignment[m.id]
		if vm.Subscription == nil {
			vm.Subscription = []byte{}
		}
		if vm.Assignment == nil {
			vm.Assignment = []byte{}
		}
		v.Members = append(v.Members, vm)
	}
	return kv{groupKey(g.name), v.AppendTo(nil)}, nil
}

// groupTombstone deletes a group's metadata.
func groupTombstone(group string) kv { return kv{groupKey(group), nil} }

// storedRecord is one decoded record of __consumer_offsets.
type storedRecord struct {
	group string
	// Exactly one of the following kinds: an offset commit (tp set; offset
	// nil for a tombstone) or group metadata (meta nil for a tombstone).
	isOffset bool
	tp       topicPartition
	offset   *offsetEntry
	meta     *kmsg.GroupMetadataValue
}

// errUnknownRecord marks a record of a kind this coordinator does not use
// (newer Kafkas write other key versions for other group types); skipped.
var errUnknownRecord = errors.New("unknown record kind")

// decodeRecord decodes a record of __consumer_offsets. key and value are
// untrusted bytes from disk: any malformed input yields an error.
func decodeRecord(key, value []byte) (storedRecord, error) {
	if len(key) < 2 {
		return storedRecord{}, fmt.Errorf("key of %d bytes", len(key))
	}
	switch version := int16(binary.BigEndian.Uint16(key)); version {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return storedRecord{}, fmt.Errorf("offset commit key: %w", err)
		}
		r := storedRecord{group: k.Group, isOffset: true, tp: topicPartition{k.Topic, k.Partition}}
		if value == nil {
			return r, nil
		}
		if len(value) < 2 {
			return storedRecord{}, fmt.Errorf("offset commit value of %d bytes", len(value))
		}
		if vv := int16(binary.BigEndian.Uint16(value)); vv < 0 || vv > maxOffsetValueVersion {
			return storedRecord{}, fmt.Errorf("offset commit value version %d", vv)
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(value); err != nil {
			return storedRecord{}, fmt.Errorf("offset commit value: %w", err)
		}
		e := offsetEntry{offset: v.Offset, leaderEpoch: -1, metadata: v.Metadata, commitTime: v.CommitTimestamp, expireTime: -1}
		if v.Version >= 3 {
			e.leaderEpoch = v.LeaderEpoch
		}
		if v.Version == 1 && v.ExpireTimestamp >= 0 {
			e.expireTime = v.ExpireTimestamp
		}
		r.offset = &e
		return r, nil
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return storedRecord{}, fmt.Errorf("group metadata key: %w", err)
		}
		r := storedRecord{group: k.Group}
		if value == nil {
			return r, nil
		}
		if len(value) < 2 {
			return storedRecord{}, fmt.Errorf("group metadata value of %d bytes", len(value))
		}
		if vv := int16(binary.BigEndian.Uint16(value)); vv < 0 || vv > maxGroupValueVersion {
			return storedRecord{}, fmt.Errorf("group metadata value version %d", vv)
		}
		v := kmsg.NewGroupMetadataValue()
		if err := v.ReadFrom(value); err != nil {
			return storedRecord{}, fmt.Errorf("group metadata value: %w", err)
		}
		r.meta = &v
		return r, nil
	default:
		return storedRecord{}, fmt.Errorf("%w: key version %d", errUnknownRecord, version)
	}
}

// loadStats counts what a Load read.
type loadStats struct{ records, skipped, offsets int }

// replay reads a partition from its start to its committed end and builds
// its groups: the last record of each key wins, tombstones delete.
func (c *Coordinator) replay(sh *shard) (map[string]*group, loadStats, error) {
	var st loadStats
	partition := sh.partition
	start, end, err := c.log.Bounds(partition)
	if err != nil {
		return nil, st, err
	}
	offsets := map[string]map[topicPartition]offsetEntry{}
	metas := map[string]*kmsg.GroupMetadataValue{}
	pending := map[int64]pendingTxn{}
	read := func(off int64) ([]byte, error) { return c.log.Read(partition, off, loadBufferSize) }
	err = record.Scan(start, end, read, func(h record.Header, b []byte, from int64) error {
		if h.IsControl() || h.IsTransactional() {
			return replayTxnBatch(h, b, pending, offsets) // txn.go
		}
		recs, err := record.Records(b)
		if err != nil {
			return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
		}
		for _, r := range recs {
			if r.Offset < from || r.Offset >= end {
				continue
			}
			st.records++
			sr, err := decodeRecord(r.Key, r.Value)
			if err != nil {
				st.skipped++
				if !errors.Is(err, errUnknownRecord) {
					c.logger.Warn("skipping undecodable record", "partition", partition, "offset", r.Offset, "err", err)
				}
				continue
			}
			switch {
			case sr.isOffset && sr.offset == nil:
				delete(offsets[sr.group], sr.tp)
			case sr.isOffset:
				if offsets[sr.group] == nil {
					offsets[sr.group] = map[topicPartition]offsetEntry{}
				}
				sr.offset.recordOffset = r.Offset
				offsets[sr.group][sr.tp] = *sr.offset
			case sr.meta == nil:
				delete(metas, sr.group)
			default:
				metas[sr.group] = sr.meta
			}
		}
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	sh.mu.Lock()
	sh.txnOffsets = pending
	sh.mu.Unlock()
	groups := map[string]*group{}
	get := func(name string) *group {
		if g := groups[name]; g != nil {
			return g
		}
		g := newGroup(name, sh, time.Time{})
		groups[name] = g
		return g
	}
	for name, m := range metas {
		c.loadGroupMetadata(get(name), m)
	}
	for name, os := range offsets {
		if len(os) == 0 {
			continue
		}
		g := get(name)
		for tp, e := range os {
			g.offsets[tp] = e
			st.offsets++
		}
	}
	return groups, st, nil
}

// loadGroupMetadata restores a group from its metadata record. The record
// is untrusted: members without the selected protocol, duplicate member
// or instance ids and a leader that is not a member are repaired, not
// believed.
func (c *Coordinator) loadGroupMetadata(g *group, v *kmsg.GroupMetadataValue) {
	g.protocolType, g.generation = v.ProtocolType, v.Generation
	if v.Protocol != nil {
		g.protocol = *v.Protocol
	}
	if v.CurrentStateTimestamp >= 0 {
		g.stateTime = time.UnixMilli(v.CurrentStateTimestamp)
	}
	if g.protocol != "" {
		for _, vm := range v.Members {
			if g.byID[vm.MemberID] != nil || vm.InstanceID != nil && g.static[*vm.InstanceID] != "" {
				continue
			}
			m := &member{id: vm.MemberID, instanceID: vm.InstanceID, clientID: vm.ClientID, clientHost: vm.ClientHost,
				rebalanceTimeout: vm.RebalanceTimeoutMillis, sessionTimeout: vm.SessionTimeoutMillis,
				protocolType: g.protocolType, protocols: []protocol{{g.protocol, vm.Subscription}}, assignment: vm.Assignment}
			if m.rebalanceTimeout < 0 { // v0 records have none
				m.rebalanceTimeout = m.sessionTimeout
			}
			g.add(m, nil)
		}
	}
	if v.Leader != nil && g.byID[*v.Leader] != nil {
		g.leader = *v.Leader
	}
	g.state = Empty
	if len(g.members) > 0 {
		g.state = Stable
	}
	g.computeSubscribed()
	if n := len(v.Members) - len(g.members); n > 0 {
		c.logger.Warn("dropped inconsistent members of a stored group", "group", g.name, "dropped", n)
	}
}

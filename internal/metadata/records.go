package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
)

// Record is one change to the metadata image; an Entry of the replicated
// metadata log holds the records of one change. Exactly one field is set. Records carry decisions, not
// requests: the active controller plans them (see Plan*) against its image,
// and every replica applies them the same way, so replicas that applied the
// same log prefix hold identical images.
type Record struct {
	ClusterID        *string                 `json:",omitempty"`
	Controller       *int32                  `json:",omitempty"`
	RegisterBroker   *Broker                 `json:",omitempty"`
	BrokerFenced     *BrokerFenceRecord      `json:",omitempty"`
	UnregisterBroker *int32                  `json:",omitempty"`
	Topic            *Topic                  `json:",omitempty"`
	RemoveTopic      *string                 `json:",omitempty"`
	PartitionChange  *PartitionChangeRecord  `json:",omitempty"`
	Configs          *TopicConfigRecord      `json:",omitempty"`
	ProducerIDs      *ProducerIDsRecord      `json:",omitempty"`
	Partitions       *AddPartitionsRecord    `json:",omitempty"`
	ClusterConfigs   *map[string]string      `json:",omitempty"`
	BrokerHeartbeats *BrokerHeartbeatsRecord `json:",omitempty"`

	// Security (ACLs, client quotas).
	ACLs  *ACLRecord   `json:",omitempty"`
	Quota *QuotaRecord `json:",omitempty"`
	// SCRAM credentials (salted; never a password).
	Scram *ScramCredentialRecord `json:",omitempty"`
}

// BrokerHeartbeatsRecord carries the active controller's view of broker
// liveness into the log, coarse-grained (a few times per session timeout),
// so that a new active controller counts each broker's session from its
// last heartbeat, not from its own election. It does not change the image.
type BrokerHeartbeatsRecord struct {
	Brokers []BrokerHeartbeat
}

// BrokerHeartbeat is how long before the record was planned the active
// controller last heard from one incarnation of a broker.
type BrokerHeartbeat struct {
	ID    int32
	Epoch int64
	AgoMs int64
}

// BrokerFenceRecord fences or unfences a broker of the given epoch.
type BrokerFenceRecord struct {
	ID     int32
	Epoch  int64
	Fenced bool
}

// PartitionChangeRecord replaces one partition's state. From, when set, is
// the partition's version the change was planned against: the record (and
// the whole entry holding it) is skipped unless the partition is still at
// exactly that version. Records of older versions lack From.
type PartitionChangeRecord struct {
	Topic     string
	Partition Partition
	From      *PartitionVersion `json:",omitempty"`
}

// PartitionVersion is a partition's leader and partition epochs.
type PartitionVersion struct {
	LeaderEpoch    int32
	PartitionEpoch int32
}

// partitionChange is the conditional record replacing orig with next.
func partitionChange(topic string, orig, next Partition) Record {
	return Record{PartitionChange: &PartitionChangeRecord{Topic: topic, Partition: next,
		From: &PartitionVersion{LeaderEpoch: orig.LeaderEpoch, PartitionEpoch: orig.PartitionEpoch}}}
}

// TopicConfigRecord replaces a topic's config overrides.
type TopicConfigRecord struct {
	Topic   string
	Configs map[string]string
}

// ProducerIDsRecord hands the block [Start, Start+Count) to a broker. When
// Exact is set the block must start at the image's next producer id (see
// Image.NextProducerIDs); otherwise the entry is skipped, so two blocks never
// overlap even if two controllers planned them. Records of older versions
// lack Exact and only move the next producer id forward.
type ProducerIDsRecord struct {
	Broker int32
	Start  int64
	Count  int64
	Exact  bool `json:",omitempty"`
}

// FirstProducerID is the lowest producer id ever handed out.
const FirstProducerID = 1000

// NextProducerIDs is where the next producer-id block starts.
func (im *Image) NextProducerIDs() int64 { return max(im.NextProducerID, FirstProducerID) }

// AddPartitionsRecord appends partitions to a topic.
type AddPartitionsRecord struct {
	Topic      string
	Partitions []Partition
}

// Entry is one metadata log entry: the records of one change, applied all
// or none, and the controller term (Raft term) they were planned in. An
// entry committed in another term than it was planned in is skipped by
// every replica: its planner's image may lack entries committed since.
// Term 0 (entries of older versions) is not checked.
type Entry struct {
	Term    uint64 `json:",omitempty"`
	Records []Record
}

// ErrStalePlan: a log entry was planned against an image other than the one
// it is applied to (another term, or a partition or producer-id record whose
// expected version no longer holds); it changed nothing and may be planned
// again.
var ErrStalePlan = errors.New("metadata change planned against a stale image")

// EncodeEntry serializes one metadata log entry.
func EncodeEntry(e Entry) ([]byte, error) {
	return json.Marshal(e)
}

// DecodeEntry parses one metadata log entry: an Entry object, or the bare
// record list older versions wrote.
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	var err error
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		err = json.Unmarshal(b, &e.Records)
	} else {
		err = json.Unmarshal(b, &e)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("metadata log entry: %w", err)
	}
	return e, nil
}

// Apply returns a new image: im with recs applied, reflecting log index
// offset (for RegisterBroker, offset becomes the broker's epoch). The records
// apply all or none: if one no longer fits the image (a conditional record's
// expected version moved on, a leader epoch would shrink or be reused by a
// second leader, a producer-id block would overlap an earlier one, a topic
// already exists), the result is im at the new offset, with ErrStalePlan.
// Every replica decides the same way, so replicas stay equal.
//
// Invariants enforced here, once for every replica: a partition's leader
// epoch never decreases, and a leader change always raises it; a conditional
// change raises the partition epoch; producer-id blocks never overlap.
func (im *Image) Apply(recs []Record, offset uint64) (*Image, error) {
	next := im.clone()
	next.Offset = offset
	for i, r := range recs {
		if err := next.apply(r, offset); err != nil {
			same := *im // images are immutable: sharing im's maps is safe
			same.Offset = offset
			return &same, fmt.Errorf("record %d of %d: %w", i+1, len(recs), err)
		}
	}
	next.index()
	return next, nil
}

func (im *Image) apply(r Record, offset uint64) error {
	switch {
	case r.ClusterID != nil:
		im.ClusterID = *r.ClusterID
	case r.Controller != nil:
		im.ControllerID = *r.Controller
	case r.RegisterBroker != nil:
		b := *r.RegisterBroker
		b.Epoch = int64(offset)
		b.Fenced = true // until its first heartbeat at this epoch
		im.removeBroker(b.ID)
		im.Brokers = append(im.Brokers, b)
		sort.Slice(im.Brokers, func(i, j int) bool { return im.Brokers[i].ID < im.Brokers[j].ID })
	case r.BrokerFenced != nil:
		for i := range im.Brokers {
			if im.Brokers[i].ID == r.BrokerFenced.ID && im.Brokers[i].Epoch == r.BrokerFenced.Epoch {
				im.Brokers[i].Fenced = r.BrokerFenced.Fenced
			}
		}
	case r.UnregisterBroker != nil:
		im.removeBroker(*r.UnregisterBroker)
	case r.Topic != nil:
		if _, ok := im.Topics[r.Topic.Name]; ok {
			return fmt.Errorf("%w: topic %s already exists", ErrStalePlan, r.Topic.Name)
		}
		t := *r.Topic
		im.Topics[t.Name] = &t
	case r.RemoveTopic != nil:
		delete(im.Topics, *r.RemoveTopic)
	case r.PartitionChange != nil:
		return im.applyPartitionChange(r.PartitionChange)
	case r.Configs != nil:
		if t, ok := im.Topics[r.Configs.Topic]; ok {
			t.Configs = r.Configs.Configs
		}
	case r.ProducerIDs != nil:
		b := r.ProducerIDs
		if b.Exact {
			if b.Count <= 0 || b.Start != im.NextProducerIDs() || b.Start > math.MaxInt64-b.Count {
				return fmt.Errorf("%w: producer ids [%d, +%d) planned, next block starts at %d", ErrStalePlan, b.Start, b.Count, im.NextProducerIDs())
			}
			im.NextProducerID = b.Start + b.Count
		} else if end := b.Start + b.Count; end > im.NextProducerID {
			im.NextProducerID = end
		}
	case r.ClusterConfigs != nil:
		im.ClusterConfigs = *r.ClusterConfigs
	case r.BrokerHeartbeats != nil:
		// Liveness hints for the controller; not part of the image.
	case r.ACLs != nil:
		im.ACLs = applyACLs(im.ACLs, r.ACLs)
	case r.Quota != nil:
		im.ClientQuotas = applyQuota(im.ClientQuotas, r.Quota)
	case r.Scram != nil:
		im.applyScram(r.Scram)
	case r.Partitions != nil:
		if t, ok := im.Topics[r.Partitions.Topic]; ok {
			for _, p := range r.Partitions.Partitions {
				if int(p.Index) == len(t.Partitions) {
					t.Partitions = append(t.Partitions, p)
				}
			}
		}
	}
	return nil
}

// applyPartitionChange replaces a partition if the change fits it (see Apply).
func (im *Image) applyPartitionChange(pc *PartitionChangeRecord) error {
	p := pc.Partition
	t, ok := im.Topics[pc.Topic]
	if !ok || p.Index < 0 || int(p.Index) >= len(t.Partitions) {
		if pc.From != nil {
			return fmt.Errorf("%w: partition %s-%d no longer exists", ErrStalePlan, pc.Topic, p.Index)
		}
		return nil // older versions skipped such a record alone
	}
	cur := t.Partitions[p.Index]
	switch {
	case pc.From != nil && (cur.LeaderEpoch != pc.From.LeaderEpoch || cur.PartitionEpoch != pc.From.PartitionEpoch):
		return fmt.Errorf("%w: %s-%d planned at leader epoch %d, partition epoch %d; it is at %d, %d", ErrStalePlan,
			pc.Topic, p.Index, pc.From.LeaderEpoch, pc.From.PartitionEpoch, cur.LeaderEpoch, cur.PartitionEpoch)
	case pc.From != nil && p.PartitionEpoch <= cur.PartitionEpoch:
		return fmt.Errorf("%w: %s-%d partition epoch %d does not grow past %d", ErrStalePlan, pc.Topic, p.Index, p.PartitionEpoch, cur.PartitionEpoch)
	case p.LeaderEpoch < cur.LeaderEpoch:
		return fmt.Errorf("%w: %s-%d leader epoch %d is below %d", ErrStalePlan, pc.Topic, p.Index, p.LeaderEpoch, cur.LeaderEpoch)
	case p.Leader != cur.Leader && p.LeaderEpoch == cur.LeaderEpoch:
		return fmt.Errorf("%w: %s-%d leader %d at epoch %d, which leader %d has", ErrStalePlan, pc.Topic, p.Index, p.Leader, p.LeaderEpoch, cur.Leader)
	}
	t.Partitions[p.Index] = p
	return nil
}

func (im *Image) removeBroker(id int32) {
	out := im.Brokers[:0]
	for _, b := range im.Brokers {
		if b.ID != id {
			out = append(out, b)
		}
	}
	im.Brokers = out
}

// EncodeImage serializes an image (a metadata snapshot).
func EncodeImage(im *Image) ([]byte, error) { return json.Marshal(im) }

// DecodeImage parses a snapshot written by EncodeImage.
func DecodeImage(b []byte) (*Image, error) {
	im := &Image{}
	if err := json.Unmarshal(b, im); err != nil {
		return nil, fmt.Errorf("metadata snapshot: %w", err)
	}
	if im.Topics == nil {
		im.Topics = map[string]*Topic{}
	}
	im.index()
	return im, nil
}

// Empty returns the image before any record.
func Empty() *Image {
	im := &Image{ControllerID: -1, Topics: map[string]*Topic{}}
	im.index()
	return im
}

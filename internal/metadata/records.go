package metadata

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Record is one change to the metadata image, as stored in the replicated
// metadata log. Exactly one field is set. Records carry decisions, not
// requests: the active controller plans them (see Plan*) against its image,
// and every replica applies them the same way, so replicas that applied the
// same log prefix hold identical images.
type Record struct {
	ClusterID        *string                `json:",omitempty"`
	Controller       *int32                 `json:",omitempty"`
	RegisterBroker   *Broker                `json:",omitempty"`
	BrokerFenced     *BrokerFenceRecord     `json:",omitempty"`
	UnregisterBroker *int32                 `json:",omitempty"`
	Topic            *Topic                 `json:",omitempty"`
	RemoveTopic      *string                `json:",omitempty"`
	PartitionChange  *PartitionChangeRecord `json:",omitempty"`
	Configs          *TopicConfigRecord     `json:",omitempty"`
	ProducerIDs      *ProducerIDsRecord     `json:",omitempty"`
	Partitions       *AddPartitionsRecord   `json:",omitempty"`
	ClusterConfigs   *map[string]string     `json:",omitempty"`
	Scram            *ScramCredentialRecord `json:",omitempty"`
}

// BrokerFenceRecord fences or unfences a broker of the given epoch.
type BrokerFenceRecord struct {
	ID     int32
	Epoch  int64
	Fenced bool
}

// PartitionChangeRecord replaces one partition's state.
type PartitionChangeRecord struct {
	Topic     string
	Partition Partition
}

// TopicConfigRecord replaces a topic's config overrides.
type TopicConfigRecord struct {
	Topic   string
	Configs map[string]string
}

// ProducerIDsRecord hands the block [Start, Start+Count) to a broker.
type ProducerIDsRecord struct {
	Broker int32
	Start  int64
	Count  int64
}

// AddPartitionsRecord appends partitions to a topic.
type AddPartitionsRecord struct {
	Topic      string
	Partitions []Partition
}

// EncodeRecords serializes one metadata log entry.
func EncodeRecords(recs []Record) ([]byte, error) {
	return json.Marshal(recs)
}

// DecodeRecords parses one metadata log entry.
func DecodeRecords(b []byte) ([]Record, error) {
	var recs []Record
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("metadata records: %w", err)
	}
	return recs, nil
}

// Apply returns a new image: im with recs applied, reflecting log index
// offset (for RegisterBroker, offset becomes the broker's epoch). Records
// that no longer fit (a topic deleted meanwhile) are skipped: planning
// already checked them against the same image, so this happens only for
// records planned by a deposed controller, and skipping keeps replicas equal.
func (im *Image) Apply(recs []Record, offset uint64) *Image {
	next := im.clone()
	next.Offset = offset
	for _, r := range recs {
		next.apply(r, offset)
	}
	next.index()
	return next
}

func (im *Image) apply(r Record, offset uint64) {
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
		if _, ok := im.Topics[r.Topic.Name]; !ok {
			t := *r.Topic
			im.Topics[t.Name] = &t
		}
	case r.RemoveTopic != nil:
		delete(im.Topics, *r.RemoveTopic)
	case r.PartitionChange != nil:
		if t, ok := im.Topics[r.PartitionChange.Topic]; ok {
			p := r.PartitionChange.Partition
			if p.Index >= 0 && int(p.Index) < len(t.Partitions) {
				t.Partitions[p.Index] = p
			}
		}
	case r.Configs != nil:
		if t, ok := im.Topics[r.Configs.Topic]; ok {
			t.Configs = r.Configs.Configs
		}
	case r.ProducerIDs != nil:
		if end := r.ProducerIDs.Start + r.ProducerIDs.Count; end > im.NextProducerID {
			im.NextProducerID = end
		}
	case r.ClusterConfigs != nil:
		im.ClusterConfigs = *r.ClusterConfigs
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

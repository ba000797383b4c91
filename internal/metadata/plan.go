package metadata

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// The Plan functions decide a change against an image and return the records
// that carry it out. Only the active controller plans, serially, against its
// latest image; the records are then replicated and applied by all.

// Unclean tells whether a topic allows electing a leader outside its ISR.
type Unclean func(t *Topic) bool

// PlanCreateTopic places and validates a new topic.
func PlanCreateTopic(im *Image, c CreateTopic) ([]Record, *Topic, error) {
	if err := ValidateTopicName(c.Name); err != nil {
		return nil, nil, err
	}
	if _, ok := im.Topics[c.Name]; ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrTopicExists, c.Name)
	}
	if other, ok := im.CollidingTopic(c.Name); ok {
		return nil, nil, fmt.Errorf("%w: topic '%s' collides with existing topic: %s", ErrInvalidTopic, c.Name, other)
	}
	assign, err := assignment(im, c.Partitions, c.ReplicationFactor, c.Assignment, 0)
	if err != nil {
		return nil, nil, err
	}
	t := &Topic{Name: c.Name, ID: NewTopicID(), Configs: c.Configs, Internal: c.Internal}
	for i, reps := range assign {
		t.Partitions = append(t.Partitions, newPartition(im, int32(i), reps))
	}
	return []Record{{Topic: t}}, t, nil
}

// newPartition starts a partition with the live replicas in sync and the
// first live one leading.
func newPartition(im *Image, index int32, reps []int32) Partition {
	p := Partition{Index: index, Leader: -1, Replicas: reps}
	for _, r := range reps {
		if im.Live(r) {
			p.ISR = append(p.ISR, r)
		}
	}
	if len(p.ISR) == 0 {
		p.ISR = append([]int32(nil), reps...) // all fenced: offline until one returns
	} else {
		p.Leader = p.ISR[0]
	}
	return p
}

// assignment validates explicit replica lists or computes balanced ones for
// partitions [from, from+count) over the live brokers, rack-aware when racks
// are set: brokers are ordered alternating racks, and partition p's replicas
// are consecutive brokers in that order from a rotating start.
func assignment(im *Image, count int32, rf int16, explicit [][]int32, from int32) ([][]int32, error) {
	if explicit != nil {
		for i, reps := range explicit {
			if len(reps) == 0 {
				return nil, fmt.Errorf("%w: partition %d has no replicas", ErrInvalidAssignment, int(from)+i)
			}
			seen := map[int32]bool{}
			for _, r := range reps {
				if _, ok := im.Broker(r); !ok {
					return nil, fmt.Errorf("%w: partition %d names unknown broker %d", ErrInvalidAssignment, int(from)+i, r)
				}
				if seen[r] {
					return nil, fmt.Errorf("%w: partition %d names broker %d twice", ErrInvalidAssignment, int(from)+i, r)
				}
				seen[r] = true
			}
		}
		return explicit, nil
	}
	if count < 1 {
		return nil, fmt.Errorf("%w: %d (must be at least 1)", ErrInvalidPartitions, count)
	}
	live := rackAlternated(im.LiveBrokers())
	if rf < 1 || int(rf) > len(live) {
		return nil, fmt.Errorf("%w: %d with %d live broker(s)", ErrInvalidReplication, rf, len(live))
	}
	start := rand.IntN(len(live))
	out := make([][]int32, count)
	for p := range count {
		for r := range int(rf) {
			out[p] = append(out[p], live[(start+int(from+p)+r)%len(live)])
		}
	}
	return out, nil
}

// rackAlternated orders brokers so that neighbours are in different racks
// where possible (Kafka's rack-alternated list): rack A's first, rack B's
// first, ..., rack A's second, ...
func rackAlternated(bs []Broker) []int32 {
	byRack := map[string][]int32{}
	var racks []string
	for _, b := range bs {
		r := ""
		if b.Rack != nil {
			r = *b.Rack
		}
		if _, ok := byRack[r]; !ok {
			racks = append(racks, r)
		}
		byRack[r] = append(byRack[r], b.ID)
	}
	sort.Strings(racks)
	var out []int32
	for i := 0; len(out) < len(bs); i++ {
		for _, r := range racks {
			if i < len(byRack[r]) {
				out = append(out, byRack[r][i])
			}
		}
	}
	return out
}

// PlanDeleteTopic removes a topic.
func PlanDeleteTopic(im *Image, name string) ([]Record, *Topic, error) {
	t, ok := im.Topics[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	return []Record{{RemoveTopic: &name}}, t, nil
}

// PlanCreatePartitions grows a topic to count partitions.
func PlanCreatePartitions(im *Image, name string, count int32, explicit [][]int32) ([]Record, error) {
	t, ok := im.Topics[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	have := int32(len(t.Partitions))
	if count <= have {
		return nil, fmt.Errorf("%w: topic %s has %d partitions; the new count %d must be larger", ErrInvalidPartitions, name, have, count)
	}
	if explicit != nil && len(explicit) != int(count-have) {
		return nil, fmt.Errorf("%w: %d assignments for %d new partitions", ErrInvalidAssignment, len(explicit), count-have)
	}
	assign, err := assignment(im, count-have, int16(len(t.Partitions[0].Replicas)), explicit, have)
	if err != nil {
		return nil, err
	}
	rec := &AddPartitionsRecord{Topic: name}
	for i, reps := range assign {
		rec.Partitions = append(rec.Partitions, newPartition(im, have+int32(i), reps))
	}
	return []Record{{Partitions: rec}}, nil
}

// PlanSetTopicConfigs replaces a topic's config overrides.
func PlanSetTopicConfigs(im *Image, name string, configs map[string]string) ([]Record, error) {
	if _, ok := im.Topics[name]; !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	return []Record{{Configs: &TopicConfigRecord{Topic: name, Configs: configs}}}, nil
}

// PlanFence fences broker id (of registration epoch) and moves leadership and
// ISR membership away from it. The last ISR member stays in the ISR (with no
// leader) so that, with unclean election off, only it can lead again.
func PlanFence(im *Image, id int32, epoch int64, unclean Unclean) []Record {
	b, ok := im.Broker(id)
	if !ok || b.Epoch != epoch {
		return nil
	}
	recs := []Record{{BrokerFenced: &BrokerFenceRecord{ID: id, Epoch: epoch, Fenced: true}}}
	after, _ := im.Apply(recs, im.Offset) // the image as the election must see it
	changes := moveAway(after, id, unclean)
	if b.Fenced && len(changes) == 0 {
		return nil
	}
	return append(recs, changes...)
}

// PlanRegisterBroker registers broker b; the entry's log index becomes its
// new epoch, and it starts fenced. A new incarnation of a broker the
// partitions still name (restarted after kill -9 or a power loss within its
// session timeout) is fenced at once like its old incarnation would have
// been: its log may have lost records it had acknowledged, so it must not
// resume leading at a leader epoch its followers already know, nor count as
// in sync. Its partitions get another live ISR member as leader, or none
// until it is unfenced and elected at a new leader epoch; it leaves every
// ISR with another member and rejoins once it has caught up.
func PlanRegisterBroker(im *Image, b Broker, unclean Unclean) []Record {
	recs := []Record{{RegisterBroker: &b}}
	after, _ := im.Apply(recs, im.Offset)
	return append(recs, moveAway(after, b.ID, unclean)...)
}

// moveAway returns the changes taking fenced broker id out of every ISR that
// has another member and re-electing the partitions it led.
func moveAway(im *Image, id int32, unclean Unclean) []Record {
	return forEachPartition(im, func(t *Topic, p Partition) Partition {
		if !slices.Contains(p.Replicas, id) {
			return p
		}
		if isr := remove(p.ISR, id); len(isr) > 0 {
			p.ISR = isr
		}
		return elect(im, p, p.Leader == id || p.Leader < 0, unclean(t))
	})
}

// PlanUnfence unfences broker id and gives leaderless partitions it can lead
// a leader.
func PlanUnfence(im *Image, id int32, epoch int64, unclean Unclean) []Record {
	b, ok := im.Broker(id)
	if !ok || b.Epoch != epoch || !b.Fenced {
		return nil
	}
	recs := []Record{{BrokerFenced: &BrokerFenceRecord{ID: id, Epoch: epoch, Fenced: false}}}
	after, _ := im.Apply(recs, im.Offset)
	return append(recs, forEachPartition(after, func(t *Topic, p Partition) Partition {
		if p.Leader >= 0 || !slices.Contains(p.Replicas, id) {
			return p
		}
		return elect(after, p, true, unclean(t))
	})...)
}

// PlanElectLeaders elects the preferred replica (preferred) or, when no ISR
// member is live, any live replica (unclean) for one partition.
func PlanElectLeaders(im *Image, topic string, partition int32, preferred bool) ([]Record, error) {
	t, ok := im.Topics[topic]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
	}
	if partition < 0 || int(partition) >= len(t.Partitions) {
		return nil, fmt.Errorf("%w: %s-%d", ErrUnknownPartition, topic, partition)
	}
	p := t.Partitions[partition]
	var next Partition
	if preferred {
		want := p.Replicas[0]
		if p.Leader == want {
			return nil, ErrElectionNotNeeded
		}
		if !im.Live(want) || !slices.Contains(p.ISR, want) {
			return nil, fmt.Errorf("%w: broker %d for %s-%d", ErrPreferredLeaderNotAvailable, want, topic, partition)
		}
		next = p
		next.Leader = want
	} else {
		if p.Leader >= 0 && im.Live(p.Leader) {
			return nil, ErrElectionNotNeeded
		}
		if next = elect(im, p, true, true); next.Leader < 0 {
			return nil, fmt.Errorf("%w: %s-%d", ErrEligibleLeadersNotAvailable, topic, partition)
		}
	}
	next, _ = bump(p, next)
	return []Record{partitionChange(topic, p, next)}, nil
}

// PlanProducerIDs hands broker the next block of count producer ids.
func PlanProducerIDs(im *Image, broker int32, count int64) ([]Record, int64, error) {
	start := im.NextProducerIDs()
	if count <= 0 || start > math.MaxInt64-count {
		return nil, 0, fmt.Errorf("%w: producer id block of %d", ErrInvalidRequest, count)
	}
	return []Record{{ProducerIDs: &ProducerIDsRecord{Broker: broker, Start: start, Count: count, Exact: true}}}, start, nil
}

// elect picks a leader for p when reelect is set: the current leader if it
// is live and in the ISR, else the first live ISR member in replica order,
// else (unclean) the first live replica, whose log becomes the ISR.
func elect(im *Image, p Partition, reelect, unclean bool) Partition {
	if !reelect {
		return p
	}
	leader := int32(-1)
	if p.Leader >= 0 && im.Live(p.Leader) && slices.Contains(p.ISR, p.Leader) {
		leader = p.Leader
	}
	for _, r := range p.Replicas {
		if leader < 0 && slices.Contains(p.ISR, r) && im.Live(r) {
			leader = r
		}
	}
	if leader < 0 && unclean {
		for _, r := range p.Replicas {
			if leader < 0 && im.Live(r) {
				leader, p.ISR = r, []int32{r}
			}
		}
	}
	p.Leader = leader
	return p
}

// bump gives next the epochs its changes from orig call for - leader epoch
// on a leader change, partition epoch on any change - and reports whether
// anything changed.
func bump(orig, next Partition) (Partition, bool) {
	leaderChanged := next.Leader != orig.Leader
	if !leaderChanged && slices.Equal(next.ISR, orig.ISR) && slices.Equal(next.Replicas, orig.Replicas) {
		return orig, false
	}
	next.LeaderEpoch, next.PartitionEpoch = orig.LeaderEpoch, orig.PartitionEpoch+1
	if leaderChanged {
		next.LeaderEpoch++
	}
	return next, true
}

// forEachPartition returns PartitionChange records for every partition fn
// changes, in topic-name order. fn gets a copy it may modify.
func forEachPartition(im *Image, fn func(t *Topic, p Partition) Partition) []Record {
	var recs []Record
	for _, name := range im.TopicNames() {
		t := im.Topics[name]
		for _, orig := range t.Partitions {
			p := orig
			p.ISR = append([]int32(nil), orig.ISR...)
			p.Replicas = append([]int32(nil), orig.Replicas...)
			if next, changed := bump(orig, fn(t, p)); changed {
				recs = append(recs, partitionChange(name, orig, next))
			}
		}
	}
	return recs
}

func remove(xs []int32, x int32) []int32 {
	var out []int32
	for _, v := range xs {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// AlterPartition is a leader's request to change a partition's ISR.
type AlterPartition struct {
	Topic          string
	Partition      int32
	Leader         int32 // the requesting leader
	LeaderEpoch    int32 // its leader epoch
	PartitionEpoch int32 // the partition epoch its view is based on
	ISR            []int32
}

// Errors of PlanAlterPartition, mapped to Kafka's codes by the broker.
var (
	// ErrFencedLeaderEpoch: the request's leader epoch is not the current one.
	ErrFencedLeaderEpoch = errors.New("fenced leader epoch")
	// ErrInvalidUpdateVersion: the request's partition epoch is stale.
	ErrInvalidUpdateVersion = errors.New("invalid partition epoch")
	// ErrIneligibleReplica: the new ISR names a replica that may not join it.
	ErrIneligibleReplica = errors.New("ineligible replica")
)

// PlanAlterPartition validates a leader's ISR change (Kafka's AlterPartition:
// only the current leader, at the current leader and partition epochs, may
// change the ISR; the ISR must contain the leader, name only replicas, and
// add only live brokers) and returns the record making it.
func PlanAlterPartition(im *Image, r AlterPartition) ([]Record, *Partition, error) {
	t, ok := im.Topics[r.Topic]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrUnknownTopic, r.Topic)
	}
	if r.Partition < 0 || int(r.Partition) >= len(t.Partitions) {
		return nil, nil, fmt.Errorf("%w: %s-%d", ErrUnknownPartition, r.Topic, r.Partition)
	}
	p := t.Partitions[r.Partition]
	switch {
	case r.Leader != p.Leader || r.LeaderEpoch != p.LeaderEpoch:
		return nil, nil, fmt.Errorf("%w: %s-%d leader %d epoch %d, request from %d at epoch %d", ErrFencedLeaderEpoch, r.Topic, r.Partition, p.Leader, p.LeaderEpoch, r.Leader, r.LeaderEpoch)
	case r.PartitionEpoch != p.PartitionEpoch:
		return nil, nil, fmt.Errorf("%w: %s-%d is at partition epoch %d, request at %d", ErrInvalidUpdateVersion, r.Topic, r.Partition, p.PartitionEpoch, r.PartitionEpoch)
	case !slices.Contains(r.ISR, r.Leader):
		return nil, nil, fmt.Errorf("%w: new ISR %v lacks the leader %d", ErrInvalidRequest, r.ISR, r.Leader)
	}
	seen := map[int32]bool{}
	for _, id := range r.ISR {
		if seen[id] || !slices.Contains(p.Replicas, id) {
			return nil, nil, fmt.Errorf("%w: %d in new ISR %v of %s-%d (replicas %v)", ErrIneligibleReplica, id, r.ISR, r.Topic, r.Partition, p.Replicas)
		}
		seen[id] = true
		if !slices.Contains(p.ISR, id) && !im.Live(id) {
			return nil, nil, fmt.Errorf("%w: broker %d is fenced", ErrIneligibleReplica, id)
		}
	}
	next := p
	next.ISR = append([]int32(nil), r.ISR...)
	next = maybeComplete(im, next, false)
	next, changed := bump(p, next)
	if !changed {
		return nil, &p, nil
	}
	return []Record{partitionChange(r.Topic, p, next)}, &next, nil
}

// PlanSetClusterConfigs replaces the cluster-wide dynamic broker configs
// (validated by the caller, who knows the property definitions).
func PlanSetClusterConfigs(im *Image, configs map[string]string) []Record {
	return []Record{{ClusterConfigs: &configs}}
}

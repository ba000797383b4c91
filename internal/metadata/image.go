// Package metadata is the cluster metadata brokers act on: brokers, topics,
// partitions (replicas, ISR, leader, leader epoch) and topic configs, as an
// immutable Image, and the Store that changes it.
//
// Invariants: an Image is never mutated after it is published (readers may keep
// it without locks); topic names and ids are unique; partition indexes of a
// topic are dense from 0; a partition's leader epoch only grows.
package metadata

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// TopicID is a topic's 16-byte UUID.
type TopicID [16]byte

// String is the base64url form Kafka tools print.
func (id TopicID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// NewTopicID returns a random, non-zero topic id.
func NewTopicID() TopicID {
	var id TopicID
	for id == (TopicID{}) {
		if _, err := rand.Read(id[:]); err != nil {
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
	}
	return id
}

// Broker is one registered broker and how clients reach it.
//
// Invariants: Epoch grows with every registration of the same id (it is the
// metadata log index of the registration); a fenced broker leads nothing.
type Broker struct {
	ID   int32
	Host string
	Port int32
	Rack *string `json:",omitempty"`
	// Epoch is the broker's registration epoch.
	Epoch int64 `json:",omitempty"`
	// Fenced brokers missed their session timeout, are shutting down, or have
	// registered but not yet heartbeaten; they are not listed to clients.
	Fenced bool `json:",omitempty"`
	// Listeners are the broker's advertised client endpoints by listener
	// name (host:port); Metadata answers with the one of the listener the
	// client came in on. Host/Port is the default.
	Listeners map[string]string `json:",omitempty"`
	// RaftAddr is where the broker's metadata replica listens ("" for none).
	RaftAddr string `json:",omitempty"`
	// ReplicaAddr is where followers fetch from (inter.broker.listener.name),
	// when it differs from the client endpoint.
	ReplicaAddr string `json:",omitempty"`
}

// ReplicationAddr is the host:port followers fetch from.
func (b Broker) ReplicationAddr() string {
	if b.ReplicaAddr != "" {
		return b.ReplicaAddr
	}
	return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
}

// Partition is one partition's replica state.
//
// Invariants: Leader is -1 or a member of ISR; ISR is a non-empty subset of
// Replicas; LeaderEpoch grows on every leader change and PartitionEpoch on
// every change of leader, ISR or replicas.
type Partition struct {
	Index          int32
	Leader         int32 // -1 when offline
	LeaderEpoch    int32
	PartitionEpoch int32 `json:",omitempty"`
	Replicas       []int32
	ISR            []int32
	// AddingReplicas and RemovingReplicas describe a reassignment in
	// progress: Replicas is then target + removing, and the reassignment
	// completes once every adding replica is in the ISR.
	AddingReplicas   []int32 `json:",omitempty"`
	RemovingReplicas []int32 `json:",omitempty"`
}

// Reassigning reports whether a reassignment is in progress.
func (p Partition) Reassigning() bool {
	return len(p.AddingReplicas) > 0 || len(p.RemovingReplicas) > 0
}

// OriginalReplicas is the replica set a reassignment moves from (Replicas
// when none is in progress).
func (p Partition) OriginalReplicas() []int32 {
	var out []int32
	for _, r := range p.Replicas {
		if !slices.Contains(p.AddingReplicas, r) {
			out = append(out, r)
		}
	}
	return out
}

// TargetReplicas is the replica set a reassignment moves to (Replicas when
// none is in progress).
func (p Partition) TargetReplicas() []int32 {
	var out []int32
	for _, r := range p.Replicas {
		if !slices.Contains(p.RemovingReplicas, r) {
			out = append(out, r)
		}
	}
	return out
}

// Topic is one topic.
type Topic struct {
	Name       string
	ID         TopicID
	Partitions []Partition
	// Configs are the topic's overrides of broker defaults.
	Configs  map[string]string `json:",omitempty"`
	Internal bool              `json:",omitempty"`
}

// Image is a consistent view of cluster metadata.
type Image struct {
	ClusterID string
	// ControllerID is the active controller (-1 before the first election).
	ControllerID int32
	// Brokers are the registered brokers, fenced or not, sorted by id.
	Brokers []Broker
	Topics  map[string]*Topic
	// ClusterConfigs are the cluster-wide dynamic broker configs.
	ClusterConfigs map[string]string `json:",omitempty"`
	// NextProducerID is the first producer id not yet handed out.
	NextProducerID int64 `json:",omitempty"`
	// ACLs are the authorizer's bindings (acl.go); replaced, never modified in place.
	ACLs []ACL `json:",omitempty"`
	// ClientQuotas are the client quotas (quota.go); replaced, never modified in place.
	ClientQuotas []ClientQuota `json:",omitempty"`
	// Offset is the metadata log index this image reflects.
	Offset uint64 `json:",omitempty"`
	// ScramCredentials are the SCRAM users: user -> mechanism -> credential
	// (replaced copy-on-write, never modified in place).
	ScramCredentials map[string]map[string]ScramCredential `json:",omitempty"`
	byID             map[TopicID]*Topic
}

// Broker returns a registered broker by id.
func (im *Image) Broker(id int32) (Broker, bool) {
	for _, b := range im.Brokers {
		if b.ID == id {
			return b, true
		}
	}
	return Broker{}, false
}

// LiveBrokers returns the unfenced brokers, sorted by id.
func (im *Image) LiveBrokers() []Broker {
	var out []Broker
	for _, b := range im.Brokers {
		if !b.Fenced {
			out = append(out, b)
		}
	}
	return out
}

// Live reports whether broker id is registered and unfenced.
func (im *Image) Live(id int32) bool {
	b, ok := im.Broker(id)
	return ok && !b.Fenced
}

// Topic returns a topic by name.
func (im *Image) Topic(name string) (*Topic, bool) {
	t, ok := im.Topics[name]
	return t, ok
}

// TopicByID returns a topic by id.
func (im *Image) TopicByID(id TopicID) (*Topic, bool) {
	if im.byID == nil {
		im.index()
	}
	t, ok := im.byID[id]
	return t, ok
}

// TopicNames returns every topic name in order.
func (im *Image) TopicNames() []string {
	names := make([]string, 0, len(im.Topics))
	for n := range im.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (im *Image) index() {
	im.byID = make(map[TopicID]*Topic, len(im.Topics))
	for _, t := range im.Topics {
		im.byID[t.ID] = t
	}
}

// clone returns a deep copy that may be modified before publishing.
func (im *Image) clone() *Image {
	out := &Image{ClusterID: im.ClusterID, ControllerID: im.ControllerID, NextProducerID: im.NextProducerID, Offset: im.Offset,
		ClusterConfigs:   im.ClusterConfigs,   // replaced, never modified in place
		ScramCredentials: im.ScramCredentials, // replaced, never modified in place
		Brokers:          append([]Broker(nil), im.Brokers...), Topics: make(map[string]*Topic, len(im.Topics))}
	out.ACLs, out.ClientQuotas = im.ACLs, im.ClientQuotas // replaced, never modified in place
	for n, t := range im.Topics {
		nt := *t
		nt.Partitions = make([]Partition, len(t.Partitions))
		for i, p := range t.Partitions {
			p.Replicas = append([]int32(nil), p.Replicas...)
			p.ISR = append([]int32(nil), p.ISR...)
			p.AddingReplicas = slices.Clone(p.AddingReplicas)
			p.RemovingReplicas = slices.Clone(p.RemovingReplicas)
			nt.Partitions[i] = p
		}
		nt.Configs = make(map[string]string, len(t.Configs))
		for k, v := range t.Configs {
			nt.Configs[k] = v
		}
		out.Topics[n] = &nt
	}
	return out
}

// Errors a Store returns; the server maps each to its Kafka error code.
var (
	ErrTopicExists        = errors.New("topic already exists")
	ErrUnknownTopic       = errors.New("unknown topic")
	ErrInvalidTopic       = errors.New("invalid topic name")
	ErrInvalidPartitions  = errors.New("invalid partition count")
	ErrInvalidReplication = errors.New("invalid replication factor")
	ErrInvalidAssignment  = errors.New("invalid replica assignment")
	ErrInvalidConfig      = errors.New("invalid config")
	// ErrNotController: this node is not (or no longer) the active controller.
	ErrNotController = errors.New("not the active controller")
	// ErrStaleBrokerEpoch: a heartbeat or request carries an old registration.
	ErrStaleBrokerEpoch = errors.New("stale broker epoch")
	// ErrUnknownBroker: the broker is not registered.
	ErrUnknownBroker = errors.New("unknown broker")
	// ErrInvalidRequest: a request the controller cannot act on.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrElectionNotNeeded: the preferred leader already leads.
	ErrElectionNotNeeded = errors.New("election not needed")
	// ErrPreferredLeaderNotAvailable: the preferred replica cannot lead.
	ErrPreferredLeaderNotAvailable = errors.New("preferred leader not available")
	// ErrEligibleLeadersNotAvailable: no replica may become leader.
	ErrEligibleLeadersNotAvailable = errors.New("eligible leaders not available")
	// ErrNoReassignment: cancelling a reassignment that is not in progress.
	ErrNoReassignment = errors.New("no reassignment in progress")
	// ErrUnknownPartition: the topic has no such partition.
	ErrUnknownPartition = errors.New("unknown partition")
	// ErrInvalidACL: an ACL binding that cannot be stored.
	ErrInvalidACL = errors.New("invalid acl binding")
)

// sentinels names every error a Store may return, so it can cross the wire
// between controller and broker and come back as the same sentinel.
var sentinels = map[string]error{
	"TOPIC_EXISTS": ErrTopicExists, "UNKNOWN_TOPIC": ErrUnknownTopic, "INVALID_TOPIC": ErrInvalidTopic,
	"INVALID_PARTITIONS": ErrInvalidPartitions, "INVALID_REPLICATION": ErrInvalidReplication,
	"INVALID_ASSIGNMENT": ErrInvalidAssignment, "INVALID_CONFIG": ErrInvalidConfig,
	"NOT_CONTROLLER": ErrNotController, "STALE_BROKER_EPOCH": ErrStaleBrokerEpoch,
	"UNKNOWN_BROKER": ErrUnknownBroker, "INVALID_REQUEST": ErrInvalidRequest,
	"ELECTION_NOT_NEEDED": ErrElectionNotNeeded, "PREFERRED_LEADER_NOT_AVAILABLE": ErrPreferredLeaderNotAvailable,
	"ELIGIBLE_LEADERS_NOT_AVAILABLE": ErrEligibleLeadersNotAvailable, "UNKNOWN_PARTITION": ErrUnknownPartition,
	"FENCED_LEADER_EPOCH": ErrFencedLeaderEpoch, "INVALID_UPDATE_VERSION": ErrInvalidUpdateVersion,
	"INELIGIBLE_REPLICA": ErrIneligibleReplica, "NO_REASSIGNMENT_IN_PROGRESS": ErrNoReassignment,
	"INVALID_ACL": ErrInvalidACL,
}

// ErrorName returns the wire name of the sentinel err wraps ("" if none).
func ErrorName(err error) string {
	for name, s := range sentinels {
		if errors.Is(err, s) {
			return name
		}
	}
	return ""
}

// ErrorFromName rebuilds an error named by ErrorName, keeping msg as text.
func ErrorFromName(name, msg string) error {
	if s, ok := sentinels[name]; ok {
		if msg == s.Error() || msg == "" {
			return s
		}
		return &wrapped{s, msg}
	}
	return errors.New(msg)
}

type wrapped struct {
	sentinel error
	msg      string
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.sentinel }

// CollidingTopic returns an existing topic whose name differs from name but
// is the same once '.' and '_' are identified (a.b and a_b): Kafka refuses
// such a topic, since both map to the same metric names.
func (im *Image) CollidingTopic(name string) (string, bool) {
	if !strings.ContainsAny(name, "._") {
		return "", false
	}
	norm := strings.ReplaceAll(name, ".", "_")
	for other := range im.Topics {
		if other != name && len(other) == len(name) && strings.ReplaceAll(other, ".", "_") == norm {
			return other, true
		}
	}
	return "", false
}

// ValidateTopicName checks Kafka's rules: 1..249 characters of [a-zA-Z0-9._-],
// and not "." or "..".
func ValidateTopicName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if len(name) > 249 {
		return fmt.Errorf("%w: %d characters, the limit is 249", ErrInvalidTopic, len(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q has %q; legal characters are [a-zA-Z0-9._-]", ErrInvalidTopic, name, c)
		}
	}
	return nil
}

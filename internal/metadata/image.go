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
	"sort"
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
type Broker struct {
	ID   int32
	Host string
	Port int32
	Rack *string `json:",omitempty"`
}

// Partition is one partition's replica state.
type Partition struct {
	Index       int32
	Leader      int32 // -1 when offline
	LeaderEpoch int32
	Replicas    []int32
	ISR         []int32
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
	ClusterID    string
	ControllerID int32
	Brokers      []Broker
	Topics       map[string]*Topic
	byID         map[TopicID]*Topic
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
	out := &Image{ClusterID: im.ClusterID, ControllerID: im.ControllerID,
		Brokers: append([]Broker(nil), im.Brokers...), Topics: make(map[string]*Topic, len(im.Topics))}
	for n, t := range im.Topics {
		nt := *t
		nt.Partitions = make([]Partition, len(t.Partitions))
		for i, p := range t.Partitions {
			p.Replicas = append([]int32(nil), p.Replicas...)
			p.ISR = append([]int32(nil), p.ISR...)
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
)

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

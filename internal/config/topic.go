package config

import (
	"fmt"
	"strconv"
	"strings"
)

// topicDefs are the per-topic properties. A topic's value is its own override
// if set, else the linked broker property, else the default here.
var topicDefs = index([]*Def{
	{Name: "cleanup.policy", Type: TypeList, Broker: "log.cleanup.policy", Valid: listOf("delete", "compact")},
	{Name: "compression.type", Type: TypeString, Broker: "compression.type", Valid: oneOf("producer")},
	{Name: "delete.retention.ms", Type: TypeLong, Broker: "log.cleaner.delete.retention.ms", Valid: atLeast(0)},
	{Name: "file.delete.delay.ms", Type: TypeLong, Broker: "log.segment.delete.delay.ms", Valid: atLeast(0)},
	{Name: "flush.messages", Type: TypeLong, Broker: "log.flush.interval.messages", Valid: atLeast(1)},
	{Name: "flush.ms", Type: TypeLong, Broker: "log.flush.interval.ms", Valid: atLeast(0)},
	{Name: "index.interval.bytes", Type: TypeInt, Broker: "log.index.interval.bytes", Valid: atLeast(0)},
	{Name: "max.compaction.lag.ms", Type: TypeLong, Broker: "log.cleaner.max.compaction.lag.ms", Valid: atLeast(1)},
	{Name: "max.message.bytes", Type: TypeInt, Broker: "message.max.bytes", Valid: atLeast(0)},
	{Name: "message.timestamp.type", Type: TypeString, Broker: "log.message.timestamp.type", Valid: oneOf("CreateTime", "LogAppendTime")},
	{Name: "message.timestamp.before.max.ms", Type: TypeLong, Broker: "log.message.timestamp.before.max.ms", Valid: atLeast(0)},
	{Name: "message.timestamp.after.max.ms", Type: TypeLong, Broker: "log.message.timestamp.after.max.ms", Valid: atLeast(0)},
	{Name: "min.cleanable.dirty.ratio", Type: TypeDouble, Broker: "log.cleaner.min.cleanable.ratio", Valid: fraction},
	{Name: "min.compaction.lag.ms", Type: TypeLong, Broker: "log.cleaner.min.compaction.lag.ms", Valid: atLeast(0)},
	{Name: "min.insync.replicas", Type: TypeInt, Broker: "min.insync.replicas", Valid: atLeast(1)},
	{Name: "preallocate", Type: TypeBoolean, Broker: "log.preallocate"},
	{Name: "retention.bytes", Type: TypeLong, Broker: "log.retention.bytes", Valid: atLeast(-1)},
	{Name: "retention.ms", Type: TypeLong, Broker: "log.retention.ms", Valid: atLeast(-1)},
	{Name: "segment.bytes", Type: TypeInt, Broker: "log.segment.bytes", Valid: atLeast(14)},
	{Name: "segment.index.bytes", Type: TypeInt, Broker: "log.index.size.max.bytes", Valid: atLeast(4)},
	{Name: "segment.ms", Type: TypeLong, Broker: "log.roll.ms", Valid: atLeast(1)},
	{Name: "unclean.leader.election.enable", Type: TypeBoolean, Broker: "unclean.leader.election.enable"},
})

// Source says where an effective value comes from, numbered as in DescribeConfigs.
type Source int8

// Config sources.
const (
	SourceDynamicTopic         Source = 1
	SourceDynamicDefaultBroker Source = 3
	SourceStaticBroker         Source = 4
	SourceDefault              Source = 5
)

// TopicDefs returns the topic property definitions in name order.
func TopicDefs() []*Def {
	out := make([]*Def, 0, len(topicDefs))
	for _, n := range sortedNames(topicDefs) {
		out = append(out, topicDefs[n])
	}
	return out
}

// TopicDef returns the definition of a topic property.
func TopicDef(name string) (*Def, bool) {
	d, ok := topicDefs[name]
	return d, ok
}

// ValidateTopicConfigs checks that every name is a topic property and every value legal.
func ValidateTopicConfigs(cfgs map[string]string) error {
	for k, v := range cfgs {
		d, ok := topicDefs[k]
		if !ok {
			return fmt.Errorf("unknown topic config %q", k)
		}
		if err := d.Validate(v); err != nil {
			return err
		}
	}
	return nil
}

// Topic is the effective configuration of one topic: its overrides on top of
// the broker's values.
type Topic struct {
	broker    *Broker
	overrides map[string]string
}

// TopicConfig returns the effective configuration for a topic with the given overrides.
func (b *Broker) TopicConfig(overrides map[string]string) Topic {
	return Topic{broker: b, overrides: overrides}
}

// Value returns a topic property's effective value and where it comes from.
func (t Topic) Value(name string) (string, Source) {
	if v, ok := t.overrides[name]; ok {
		return v, SourceDynamicTopic
	}
	d, ok := topicDefs[name]
	if !ok {
		return "", SourceDefault
	}
	return t.broker.String(d.Broker), t.broker.Source(d.Broker)
}

// Int returns an integer topic property.
func (t Topic) Int(name string) int64 {
	v, _ := t.Value(name)
	return parseInt(v)
}

// String returns a topic property.
func (t Topic) String(name string) string {
	v, _ := t.Value(name)
	return v
}

// Float returns a floating-point (TypeDouble) topic property.
func (t Topic) Float(name string) float64 {
	v, _ := t.Value(name)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// HasPolicy reports whether cleanup.policy lists policy ("delete" or "compact").
func (t Topic) HasPolicy(policy string) bool {
	for _, p := range strings.Split(t.String("cleanup.policy"), ",") {
		if strings.TrimSpace(p) == policy {
			return true
		}
	}
	return false
}

// fraction validates a number in [0, 1] (min.cleanable.dirty.ratio).
func fraction(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || f > 1 {
		return fmt.Errorf("%s is not between 0 and 1", v)
	}
	return nil
}

// Bool returns a boolean topic property.
func (t Topic) Bool(name string) bool {
	v, _ := t.Value(name)
	b, _ := strconv.ParseBool(v)
	return b
}

package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Views: what the commands print and what the web console serves, gathered
// through kadm. JSON field names are snake_case and stable.

// BrokerView is one broker.
type BrokerView struct {
	ID         int32  `json:"id"`
	Host       string `json:"host"`
	Port       int32  `json:"port"`
	Rack       string `json:"rack,omitempty"`
	Controller bool   `json:"controller"`
}

// ClusterView is the cluster overview.
type ClusterView struct {
	ClusterID       string       `json:"cluster_id"`
	Controller      int32        `json:"controller"`
	Brokers         []BrokerView `json:"brokers"`
	Topics          int          `json:"topics"`
	Partitions      int          `json:"partitions"`
	UnderReplicated []string     `json:"under_replicated"` // topic-partition
	Offline         []string     `json:"offline"`          // partitions without a leader
	Healthy         bool         `json:"healthy"`
	// DownBrokers are replica ids the metadata names that are not live.
	DownBrokers []int32 `json:"down_brokers"`
}

// PartitionView is one partition of a topic.
type PartitionView struct {
	Partition       int32   `json:"partition"`
	Leader          int32   `json:"leader"`
	LeaderEpoch     int32   `json:"leader_epoch"`
	Replicas        []int32 `json:"replicas"`
	ISR             []int32 `json:"isr"`
	OfflineReplicas []int32 `json:"offline_replicas"`
	LogStartOffset  int64   `json:"log_start_offset"`
	HighWatermark   int64   `json:"high_watermark"`
	// Size is the largest log size among the replicas (bytes; -1 unknown).
	Size            int64  `json:"size"`
	UnderReplicated bool   `json:"under_replicated"`
	Offline         bool   `json:"offline"`
	Error           string `json:"error,omitempty"`
}

// ConfigView is one config entry of a topic or broker.
type ConfigView struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Source    string `json:"source"`
	Sensitive bool   `json:"sensitive,omitempty"`
}

// TopicView is one topic.
type TopicView struct {
	Name              string          `json:"name"`
	ID                string          `json:"id"`
	Internal          bool            `json:"internal"`
	ReplicationFactor int             `json:"replication_factor"`
	Partitions        []PartitionView `json:"partitions"`
	Configs           []ConfigView    `json:"configs,omitempty"`
	Error             string          `json:"error,omitempty"`
}

// Cluster gathers the cluster overview.
func Cluster(ctx context.Context, adm *kadm.Client) (ClusterView, error) {
	md, err := adm.Metadata(ctx)
	if err != nil {
		return ClusterView{}, fmt.Errorf("metadata: %w", err)
	}
	v := ClusterView{ClusterID: md.Cluster, Controller: md.Controller, Brokers: []BrokerView{},
		UnderReplicated: []string{}, Offline: []string{}, DownBrokers: []int32{}}
	live := map[int32]bool{}
	for _, b := range md.Brokers {
		bv := BrokerView{ID: b.NodeID, Host: b.Host, Port: b.Port, Controller: b.NodeID == md.Controller}
		if b.Rack != nil {
			bv.Rack = *b.Rack
		}
		v.Brokers = append(v.Brokers, bv)
		live[b.NodeID] = true
	}
	down := map[int32]bool{}
	for _, t := range md.Topics.Sorted() {
		v.Topics++
		for _, p := range t.Partitions.Sorted() {
			v.Partitions++
			name := fmt.Sprintf("%s-%d", t.Topic, p.Partition)
			if p.Leader < 0 {
				v.Offline = append(v.Offline, name)
			}
			if len(p.ISR) < len(p.Replicas) {
				v.UnderReplicated = append(v.UnderReplicated, name)
			}
			for _, r := range p.Replicas {
				if !live[r] {
					down[r] = true
				}
			}
		}
	}
	for id := range down {
		v.DownBrokers = append(v.DownBrokers, id)
	}
	slices.Sort(v.DownBrokers)
	v.Healthy = len(v.Offline) == 0 && len(v.UnderReplicated) == 0 && len(v.DownBrokers) == 0 && md.Controller >= 0
	return v, nil
}

// Topics gathers topics (all when names is empty; internal ones too when
// internal), with offsets and log sizes.
func Topics(ctx context.Context, adm *kadm.Client, internal bool, names ...string) ([]TopicView, error) {
	var td kadm.TopicDetails
	var err error
	if internal {
		td, err = adm.ListTopicsWithInternal(ctx, names...)
	} else {
		td, err = adm.ListTopics(ctx, names...)
	}
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	topics := td.Names()
	var starts, ends kadm.ListedOffsets
	sizes := map[string]map[int32]int64{}
	if len(topics) > 0 {
		// Offsets and sizes are best effort: a topic being created may not have leaders yet.
		starts, _ = adm.ListStartOffsets(ctx, topics...)
		ends, _ = adm.ListEndOffsets(ctx, topics...)
		sizes = logSizes(ctx, adm, td.TopicsSet())
	}
	out := []TopicView{}
	for _, t := range td.Sorted() {
		tv := TopicView{Name: t.Topic, ID: topicID(t.ID), Internal: t.IsInternal, Partitions: []PartitionView{}, Error: kafkaErr(t.Err)}
		for _, p := range t.Partitions.Sorted() {
			pv := PartitionView{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
				Replicas: nonNil(p.Replicas), ISR: nonNil(p.ISR), OfflineReplicas: nonNil(p.OfflineReplicas),
				LogStartOffset: -1, HighWatermark: -1, Size: -1, Error: kafkaErr(p.Err)}
			pv.UnderReplicated = len(p.ISR) < len(p.Replicas)
			pv.Offline = p.Leader < 0
			if o, ok := starts.Lookup(t.Topic, p.Partition); ok && o.Err == nil {
				pv.LogStartOffset = o.Offset
			}
			if o, ok := ends.Lookup(t.Topic, p.Partition); ok && o.Err == nil {
				pv.HighWatermark = o.Offset
			}
			if s, ok := sizes[t.Topic][p.Partition]; ok {
				pv.Size = s
			}
			tv.ReplicationFactor = max(tv.ReplicationFactor, len(p.Replicas))
			tv.Partitions = append(tv.Partitions, pv)
		}
		out = append(out, tv)
	}
	return out, nil
}

// Topic gathers one topic with its configs; a missing topic is
// UNKNOWN_TOPIC_OR_PARTITION.
func Topic(ctx context.Context, adm *kadm.Client, name string) (TopicView, error) {
	ts, err := Topics(ctx, adm, true, name)
	if err != nil {
		return TopicView{}, err
	}
	if len(ts) != 1 || ts[0].Error != "" {
		return TopicView{}, fmt.Errorf("topic %q: %w", name, kerr.UnknownTopicOrPartition)
	}
	tv := ts[0]
	cfgs, err := TopicConfigs(ctx, adm, name)
	if err != nil {
		return TopicView{}, err
	}
	tv.Configs = cfgs
	return tv, nil
}

// TopicConfigs lists a topic's configs, sorted by name.
func TopicConfigs(ctx context.Context, adm *kadm.Client, name string) ([]ConfigView, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("describe configs of %q: %w", name, err)
	}
	rc, err := rcs.On(name, nil)
	if err != nil {
		return nil, fmt.Errorf("describe configs of %q: %w", name, err)
	}
	if rc.Err != nil {
		return nil, fmt.Errorf("describe configs of %q: %w", name, rc.Err)
	}
	out := []ConfigView{}
	for _, c := range rc.Configs {
		out = append(out, ConfigView{Name: c.Key, Value: c.MaybeValue(), Source: configSource(c.Source.String()), Sensitive: c.Sensitive})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// BrokerConfigs lists a broker's configs, sorted by name.
func BrokerConfigs(ctx context.Context, adm *kadm.Client, id int32) ([]ConfigView, error) {
	rcs, err := adm.DescribeBrokerConfigs(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("describe configs of broker %d: %w", id, err)
	}
	if len(rcs) != 1 {
		return nil, fmt.Errorf("describe configs of broker %d: %d answers", id, len(rcs))
	}
	if rcs[0].Err != nil {
		return nil, fmt.Errorf("describe configs of broker %d: %w", id, rcs[0].Err)
	}
	out := []ConfigView{}
	for _, c := range rcs[0].Configs {
		out = append(out, ConfigView{Name: c.Key, Value: c.MaybeValue(), Source: configSource(c.Source.String()), Sensitive: c.Sensitive})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func configSource(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(s, "_CONFIG"), "_TOPIC"))
}

// logSizes returns the largest replica log size per partition of set,
// from DescribeLogDirs on every broker (missing when no broker answered).
func logSizes(ctx context.Context, adm *kadm.Client, set kadm.TopicsSet) map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	all, err := adm.DescribeAllLogDirs(ctx, set)
	if err != nil && len(all) == 0 {
		return out
	}
	for _, dirs := range all {
		for _, d := range dirs {
			if d.Err != nil {
				continue
			}
			for t, ps := range d.Topics {
				if out[t] == nil {
					out[t] = map[int32]int64{}
				}
				for p, dp := range ps {
					if cur, ok := out[t][p]; !ok || dp.Size > cur {
						out[t][p] = dp.Size
					}
				}
			}
		}
	}
	return out
}

func nonNil(xs []int32) []int32 {
	if xs == nil {
		return []int32{}
	}
	return xs
}

// GroupSummary is one group in a listing.
type GroupSummary struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

// Groups lists every group.
func Groups(ctx context.Context, adm *kadm.Client) ([]GroupSummary, error) {
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	out := []GroupSummary{}
	for _, g := range lg.Sorted() {
		out = append(out, GroupSummary{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Coordinator: g.Coordinator})
	}
	return out, nil
}

// MemberView is one group member and its assignment.
type MemberView struct {
	MemberID   string             `json:"member_id"`
	InstanceID string             `json:"instance_id,omitempty"`
	ClientID   string             `json:"client_id"`
	Host       string             `json:"host"`
	Assigned   map[string][]int32 `json:"assigned"` // topic -> partitions
}

// LagView is a group's position on one partition.
type LagView struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is the group's committed offset (-1: none).
	Committed int64 `json:"committed_offset"`
	// End is the partition's high watermark.
	End      int64  `json:"end_offset"`
	Lag      int64  `json:"lag"`
	MemberID string `json:"member_id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

// GroupView is a described group with its lag.
type GroupView struct {
	Group        string       `json:"group"`
	State        string       `json:"state"`
	ProtocolType string       `json:"protocol_type"`
	Protocol     string       `json:"protocol"`
	Coordinator  int32        `json:"coordinator"`
	Members      []MemberView `json:"members"`
	Partitions   []LagView    `json:"partitions"`
	TotalLag     int64        `json:"total_lag"`
}

// Group describes one group: members, assignments and lag per partition. A
// group that does not exist is GROUP_ID_NOT_FOUND.
func Group(ctx context.Context, adm *kadm.Client, name string) (GroupView, error) {
	lags, err := adm.Lag(ctx, name)
	if err != nil {
		return GroupView{}, fmt.Errorf("describe group %q: %w", name, err)
	}
	l, ok := lags[name]
	if !ok {
		return GroupView{}, fmt.Errorf("group %q: %w", name, kerr.GroupIDNotFound)
	}
	if l.DescribeErr != nil {
		return GroupView{}, fmt.Errorf("describe group %q: %w", name, l.DescribeErr)
	}
	if l.State == "Dead" {
		return GroupView{}, fmt.Errorf("group %q: %w", name, kerr.GroupIDNotFound)
	}
	v := GroupView{Group: name, State: l.State, ProtocolType: l.ProtocolType, Protocol: l.Protocol,
		Coordinator: l.Coordinator.NodeID, Members: []MemberView{}, Partitions: []LagView{}}
	for _, m := range l.Members {
		mv := MemberView{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assigned: map[string][]int32{}}
		if m.InstanceID != nil {
			mv.InstanceID = *m.InstanceID
		}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				ps := slices.Clone(t.Partitions)
				slices.Sort(ps)
				mv.Assigned[t.Topic] = ps
			}
		}
		v.Members = append(v.Members, mv)
	}
	if l.FetchErr != nil {
		return GroupView{}, fmt.Errorf("fetch offsets of group %q: %w", name, l.FetchErr)
	}
	for _, ml := range l.Lag.Sorted() {
		lv := LagView{Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At, End: ml.End.Offset, Lag: ml.Lag}
		if ml.Member != nil {
			lv.MemberID, lv.ClientID = ml.Member.MemberID, ml.Member.ClientID
		}
		if ml.Err != nil && !errors.Is(ml.Err, kerr.UnknownTopicOrPartition) {
			lv.Error = kafkaErr(ml.Err)
		}
		if lv.Lag > 0 {
			v.TotalLag += lv.Lag
		}
		v.Partitions = append(v.Partitions, lv)
	}
	return v, nil
}

// topicID prints a topic id as Kafka's tools do (base64url, no padding).
func topicID(id [16]byte) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

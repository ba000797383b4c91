package controller

import (
	"context"

	"strand/internal/metadata"
)

// The metadata.Store methods forward to the active controller and return
// once this node's image includes the change.

// CreateTopic implements metadata.Store.
func (n *Node) CreateTopic(ctx context.Context, c metadata.CreateTopic) (*metadata.Topic, error) {
	var t metadata.Topic
	if err := n.call(ctx, "create_topic", c, &t); err != nil {
		return nil, err
	}
	if cur, ok := n.Image().Topic(c.Name); ok {
		return cur, nil
	}
	return &t, nil
}

// DeleteTopic implements metadata.Store.
func (n *Node) DeleteTopic(ctx context.Context, name string) (*metadata.Topic, error) {
	var t metadata.Topic
	if err := n.call(ctx, "delete_topic", deleteTopicReq{name}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// CreatePartitions implements metadata.Store.
func (n *Node) CreatePartitions(ctx context.Context, name string, count int32, assignment [][]int32) error {
	return n.call(ctx, "create_partitions", createPartitionsReq{name, count, assignment}, nil)
}

// SetTopicConfigs implements metadata.Store.
func (n *Node) SetTopicConfigs(ctx context.Context, name string, configs map[string]string) error {
	return n.call(ctx, "set_configs", setConfigsReq{name, configs}, nil)
}

// ElectLeaders implements metadata.Store.
func (n *Node) ElectLeaders(ctx context.Context, topic string, partition int32, preferred bool) error {
	return n.call(ctx, "elect", electReq{topic, partition, preferred}, nil)
}

// AllocateProducerIDs implements metadata.Store.
func (n *Node) AllocateProducerIDs(ctx context.Context, count int64) (int64, error) {
	var start int64
	err := n.call(ctx, "producer_ids", producerIDsReq{n.cfg.NodeID, count}, &start)
	return start, err
}

// AlterPartition implements metadata.Store.
func (n *Node) AlterPartition(ctx context.Context, r metadata.AlterPartition) (*metadata.Partition, error) {
	var p metadata.Partition
	if err := n.call(ctx, "alter_partition", r, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// SetClusterConfigs implements metadata.Store.
func (n *Node) SetClusterConfigs(ctx context.Context, configs map[string]string) error {
	return n.call(ctx, "set_cluster_configs", configs, nil)
}

// Reassign implements metadata.Store.
func (n *Node) Reassign(ctx context.Context, topic string, partition int32, target []int32) error {
	return n.call(ctx, "reassign", reassignReq{topic, partition, target}, nil)
}

// OfflineReplicas reports that this broker's replicas of parts are offline
// (their log directory failed): the controller moves them out of the ISR
// and their leadership elsewhere (metadata.PlanOfflineReplicas).
func (n *Node) OfflineReplicas(ctx context.Context, parts []metadata.PartitionRef) error {
	return n.call(ctx, "offline_replicas", metadata.OfflineReplicas{Broker: n.cfg.NodeID, Partitions: parts}, nil)
}

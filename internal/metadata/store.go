package metadata

import "context"

// CreateTopic describes a topic to create.
type CreateTopic struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	// Assignment, when non-nil, gives each partition's replicas explicitly and
	// overrides Partitions and ReplicationFactor.
	Assignment [][]int32
	Configs    map[string]string
	Internal   bool
}

// Store owns the cluster metadata and applies changes to it. A change is
// committed to the metadata quorum when the method returns; the caller's
// node has applied it (and its OnChange listeners have seen it) too.
type Store interface {
	// Image returns the current image. It must not be modified.
	Image() *Image
	CreateTopic(ctx context.Context, c CreateTopic) (*Topic, error)
	DeleteTopic(ctx context.Context, name string) (*Topic, error)
	// CreatePartitions grows a topic to count partitions.
	CreatePartitions(ctx context.Context, name string, count int32, assignment [][]int32) error
	// SetTopicConfigs replaces a topic's config overrides.
	SetTopicConfigs(ctx context.Context, name string, configs map[string]string) error
	// SetClusterConfigs replaces the cluster-wide dynamic broker configs.
	SetClusterConfigs(ctx context.Context, configs map[string]string) error
	// Reassign starts (target non-nil) or cancels (nil) a partition's
	// reassignment to the target replicas.
	Reassign(ctx context.Context, topic string, partition int32, target []int32) error
	// ElectLeaders runs a preferred (or unclean) election for one partition.
	ElectLeaders(ctx context.Context, topic string, partition int32, preferred bool) error
	// AlterPartition changes a partition's ISR on behalf of its leader and
	// returns the partition as committed.
	AlterPartition(ctx context.Context, r AlterPartition) (*Partition, error)
	// AllocateProducerIDs reserves count cluster-unique producer ids and
	// returns the first.
	AllocateProducerIDs(ctx context.Context, count int64) (int64, error)
	// CreateACLs stores ACL bindings; errs[i] is acls[i]'s (nil: stored, or
	// already present). err is a failure of the whole call.
	CreateACLs(ctx context.Context, acls []ACL) (errs []error, err error)
	// DeleteACLs removes the bindings the filters match and returns, per
	// filter, those it matched.
	DeleteACLs(ctx context.Context, filters []ACLFilter) ([][]ACL, error)
	// AlterClientQuotas changes client quotas; errs[i] is alts[i]'s.
	AlterClientQuotas(ctx context.Context, alts []QuotaAlteration) (errs []error, err error)
	// OnChange registers fn to be called, serially and in order, with newly
	// published images (and once at registration with the current one). A
	// listener still busy when several images are published gets only the
	// newest of them: images are whole states, never deltas. Listeners run
	// outside any lock Image takes.
	OnChange(fn func(*Image))
}

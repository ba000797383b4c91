package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/group"
	"strand/internal/log"
	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/replica"
)

// Consumer group APIs. The coordinator (internal/group) holds the state; this
// file creates __consumer_offsets, keeps the coordinator's loaded partitions
// equal to the offsets partitions this broker leads, and dispatches requests.
//
// Ordering: the part of a group request that changes state (registering a
// join, validating and appending a commit) runs on the connection's reader in
// request order; what waits (a rebalance, durability) runs in the
// continuation. Reads of group state (OffsetFetch, DescribeGroups,
// ListGroups) also run in the continuation, so that a read pipelined behind a
// write on the same connection sees it, as it would on Kafka, which handles
// one request per connection at a time.

// groupCoordinator is the server's group coordinator plus the goroutine that
// loads and unloads its partitions as leadership of __consumer_offsets changes.
type groupCoordinator struct {
	*group.Coordinator
	loader *leaderLoader
}

// openGroups creates the coordinator and starts its loader.
func (s *Server) openGroups() {
	ms := func(name string) time.Duration { return time.Duration(s.cfg.Int(name)) * time.Millisecond }
	cfg := group.Config{
		Partitions:             int32(s.cfg.Int("offsets.topic.num.partitions")),
		InitialRebalanceDelay:  ms("group.initial.rebalance.delay.ms"),
		MinSessionTimeout:      ms("group.min.session.timeout.ms"),
		MaxSessionTimeout:      ms("group.max.session.timeout.ms"),
		MaxGroupSize:           int(s.cfg.Int("group.max.size")),
		OffsetsRetention:       time.Duration(s.cfg.Int("offsets.retention.minutes")) * time.Minute,
		RetentionCheckInterval: ms("offsets.retention.check.interval.ms"),
		MaxMetadataSize:        int(s.cfg.Int("offset.metadata.max.bytes")),
		PartitionExists: func(topic string, partition int32) bool {
			t, ok := s.store.Image().Topic(topic)
			return ok && partition >= 0 && int(partition) < len(t.Partitions)
		},
		Leads: func(partition int32) bool {
			t, ok := s.store.Image().Topic(group.Topic)
			return ok && partition >= 0 && int(partition) < len(t.Partitions) && t.Partitions[partition].Leader == s.cfg.NodeID()
		},
		Logger: s.logger.With("component", "group-coordinator"),
	}
	gc := &groupCoordinator{Coordinator: group.New(cfg, offsetsLog{parts: s.parts, timeout: ms("offsets.commit.timeout.ms")})}
	gc.loader = startLoader(&leaderLoader{topic: group.Topic, self: s.cfg.NodeID(), logger: cfg.Logger,
		what:   "consumer groups",
		load:   func(p, _ int32) error { return gc.Load(p) },
		unload: gc.Unload,
		seen:   func(t *metadata.Topic) { gc.SetPartitionCount(int32(len(t.Partitions))) },
	})
	s.groups = gc
}

// observe hands the loader a new metadata image (see leaderLoader).
func (gc *groupCoordinator) observe(img *metadata.Image) {
	if gc == nil {
		return
	}
	gc.loader.observe(img)
}

// close stops the loader and the coordinator. It may be called again.
func (gc *groupCoordinator) close() {
	if gc == nil {
		return
	}
	gc.loader.close()
	gc.Close()
}

// offsetsLog is group.Log over this broker's replicas of __consumer_offsets.
// Writes are acks=all: a group write is done once every in-sync replica has
// it (or fails after offsets.commit.timeout.ms), as Kafka's coordinator does.
type offsetsLog struct {
	parts   *replica.Manager
	timeout time.Duration
}

func (l offsetsLog) partition(p int32) (*replica.Partition, error) {
	part, ok := l.parts.Get(group.Topic, p)
	if !ok {
		return nil, fmt.Errorf("%w: %s-%d is not hosted here", group.ErrNotLeader, group.Topic, p)
	}
	return part, nil
}

// groupLogError maps replica errors to the group package's.
func groupLogError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, replica.ErrNotLeader):
		return fmt.Errorf("%w: %v", group.ErrNotLeader, err)
	case errors.Is(err, replica.ErrNotEnoughReplicas), errors.Is(err, replica.ErrNotEnoughReplicasAfterAppend),
		errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %v", group.ErrUnavailable, err)
	case errors.Is(err, log.ErrMessageTooLarge):
		return fmt.Errorf("%w: %v", group.ErrTooLarge, err)
	}
	return err
}

func (l offsetsLog) Append(p int32, records []byte) (group.Position, error) {
	part, err := l.partition(p)
	if err != nil {
		return group.Position{}, err
	}
	res, err := part.AppendAcks(records, time.Now(), -1)
	if err != nil {
		return group.Position{}, groupLogError(err)
	}
	return group.Position{End: res.LastOffset + 1, Epoch: res.LeaderEpoch}, nil
}

func (l offsetsLog) WaitDurable(p int32, pos group.Position) error {
	part, err := l.partition(p)
	if err != nil {
		return err
	}
	if err := part.WaitDurable(pos.End); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	return groupLogError(part.WaitReplicated(ctx, pos.End, pos.Epoch))
}

func (l offsetsLog) Read(p int32, offset int64, maxBytes int) ([]byte, error) {
	part, err := l.partition(p)
	if err != nil {
		return nil, err
	}
	return part.ReadReplica(offset, maxBytes, true)
}

func (l offsetsLog) Bounds(p int32) (int64, int64, error) {
	part, err := l.partition(p)
	if err != nil {
		return 0, 0, err
	}
	return part.LogStartOffset(), part.LogEndOffset(), nil
}

// offsetsTopic returns __consumer_offsets, creating it on first use:
// offsets.topic.num.partitions partitions, cleanup.policy=compact,
// offsets.topic.replication.factor capped at the registered broker count.
func (s *Server) offsetsTopic(ctx context.Context) (*metadata.Topic, error) {
	if t, ok := s.store.Image().Topic(group.Topic); ok {
		return t, nil
	}
	s.offsetsMu.Lock()
	defer s.offsetsMu.Unlock()
	img := s.store.Image()
	if t, ok := img.Topic(group.Topic); ok {
		return t, nil
	}
	rf := min(s.cfg.Int("offsets.topic.replication.factor"), int64(len(img.Brokers)))
	t, err := s.store.CreateTopic(ctx, metadata.CreateTopic{
		Name: group.Topic, Partitions: int32(s.cfg.Int("offsets.topic.num.partitions")), ReplicationFactor: int16(max(rf, 1)),
		Configs: map[string]string{
			"cleanup.policy": "compact",
			"segment.bytes":  strconv.FormatInt(s.cfg.Int("offsets.topic.segment.bytes"), 10),
		},
		Internal: true,
	})
	if errors.Is(err, metadata.ErrTopicExists) {
		if t, ok := s.store.Image().Topic(group.Topic); ok {
			return t, nil
		}
	}
	if err != nil {
		return nil, err
	}
	s.logger.Info("created the consumer offsets topic", "topic", group.Topic, "partitions", len(t.Partitions), "replication_factor", rf)
	return t, nil
}

// FindCoordinator key types.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

func (s *Server) handleFindCoordinator(ctx context.Context, req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		resp.Coordinators = append(resp.Coordinators, s.findCoordinator(ctx, req.CoordinatorType, key))
	}
	if req.Version < 4 {
		c := resp.Coordinators[0]
		resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.ErrorMessage, c.NodeID, c.Host, c.Port
		resp.Coordinators = nil
	}
	return resp
}

func (s *Server) findCoordinator(ctx context.Context, keyType int8, key string) kmsg.FindCoordinatorResponseCoordinator {
	out := kmsg.NewFindCoordinatorResponseCoordinator()
	out.Key, out.NodeID, out.Port = key, -1, -1
	fail := func(code int16, msg string) kmsg.FindCoordinatorResponseCoordinator {
		out.ErrorCode, out.ErrorMessage = code, &msg
		return out
	}
	switch keyType {
	case coordinatorGroup:
	case coordinatorTransaction:
		return s.findTxnCoordinator(ctx, key) // txn.go
	default:
		return fail(kerr.InvalidRequest.Code, fmt.Sprintf("unknown coordinator key type %d", keyType))
	}
	t, err := s.offsetsTopic(ctx)
	if err != nil {
		s.logger.Warn("cannot create the consumer offsets topic", "err", err)
		return fail(kerr.CoordinatorNotAvailable.Code, "the consumer offsets topic is not available: "+err.Error())
	}
	p := group.PartitionFor(key, int32(len(t.Partitions)))
	leader := t.Partitions[p].Leader
	img := s.store.Image()
	b, ok := img.Broker(leader)
	if leader < 0 || !ok || b.Fenced {
		return fail(kerr.CoordinatorNotAvailable.Code, fmt.Sprintf("%s-%d has no live leader", group.Topic, p))
	}
	out.Host, out.Port = advertisedFor(ctx, b)
	out.NodeID = b.ID
	return out
}

// handleGroup dispatches the group APIs that answer in a continuation.
func (s *Server) handleGroup(ctx context.Context, req *protocol.Request) (func() kmsg.Response, bool) {
	switch body := req.Body.(type) {
	case *kmsg.JoinGroupRequest:
		wait := s.groups.JoinGroup(ctx, body, group.Client{ID: req.ClientID, Host: clientHost(ctx)})
		return func() kmsg.Response {
			if r := wait(); r != nil {
				return r
			}
			return nil // the connection closed
		}, true
	case *kmsg.SyncGroupRequest:
		wait := s.groups.SyncGroup(ctx, body)
		return func() kmsg.Response {
			if r := wait(); r != nil {
				return r
			}
			return nil
		}, true
	case *kmsg.OffsetCommitRequest:
		wait := s.groups.OffsetCommit(body)
		return func() kmsg.Response { return wait() }, true
	case *kmsg.OffsetDeleteRequest:
		wait := s.groups.OffsetDelete(body)
		return func() kmsg.Response { return wait() }, true
	case *kmsg.DeleteGroupsRequest:
		wait := s.groups.DeleteGroups(body)
		return func() kmsg.Response { return wait() }, true
	case *kmsg.OffsetFetchRequest:
		return func() kmsg.Response {
			resp := s.groups.OffsetFetch(body)
			s.groups.MarkUnstable(body, resp) // require_stable: offsets a transaction has pending
			return resp
		}, true
	case *kmsg.DescribeGroupsRequest:
		return func() kmsg.Response { return s.groups.DescribeGroups(body) }, true
	case *kmsg.ListGroupsRequest:
		return func() kmsg.Response { return s.groups.ListGroups(body) }, true
	}
	return nil, false
}

// remoteAddrKey carries a connection's remote address in its context.
type remoteAddrKey struct{}

// clientHost is the client's address as Kafka reports it ("/ip").
func clientHost(ctx context.Context) string {
	addr, _ := ctx.Value(remoteAddrKey{}).(string)
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return "/" + host
	}
	return addr
}

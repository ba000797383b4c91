package server

import (
	"context"
	"errors"
	"io/fs"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/log"
	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/record"
	"strand/internal/replica"
	"strand/internal/txn"
)

var kerrUnsupportedVersion = kerr.UnsupportedVersion.Code

// handle runs the ordered part of a request and returns the continuation that
// produces its response (see reply).
func (s *Server) handle(ctx context.Context, req *protocol.Request) (run func() kmsg.Response) {
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > time.Second {
			s.logger.Warn("slow request", "api", kmsg.NameForKey(req.Key), "took", d)
		}
		run = instrument(req, start, run) // metrics: rate, errors, latency per API (ops.go)
	}()
	ctx = s.requestContext(ctx, req)
	deny, fix := s.authorize(ctx, req)
	if deny == nil {
		deny, fix = s.limitMutations(ctx, req, fix)
	}
	if deny != nil {
		return func() kmsg.Response { return deny }
	}
	began := time.Now()
	inner := s.dispatch(ctx, req)
	took := time.Since(began)
	return func() kmsg.Response {
		resp := inner()
		if resp == hangUp {
			return resp
		}
		if resp != nil && fix != nil {
			fix(resp)
		}
		s.enforceQuotas(ctx, req, resp, took)
		return resp
	}
}

// dispatch runs the handler of an authorized request (see handle).
func (s *Server) dispatch(ctx context.Context, req *protocol.Request) func() kmsg.Response {
	switch body := req.Body.(type) {
	case *kmsg.ProduceRequest:
		return s.handleProduce(ctx, body)
	case *kmsg.FetchRequest:
		return func() kmsg.Response { return s.fetchWithSession(ctx, body) }
	}
	if run, ok := s.handleGroup(ctx, req); ok {
		return run
	}
	if run, ok := s.handleTxn(ctx, req); ok { // txn.go
		return run
	}
	resp := s.handleSync(ctx, req)
	return func() kmsg.Response { return resp }
}

func (s *Server) handleSync(ctx context.Context, req *protocol.Request) kmsg.Response {
	switch body := req.Body.(type) {
	case *kmsg.ApiVersionsRequest:
		return s.apiVersions(body.Version)
	case *kmsg.MetadataRequest:
		return s.handleMetadata(ctx, body)
	case *kmsg.DescribeClusterRequest:
		return s.handleDescribeCluster(ctx, body)
	case *kmsg.ListOffsetsRequest:
		return s.handleListOffsets(body)
	case *kmsg.OffsetForLeaderEpochRequest:
		return s.handleOffsetForLeaderEpoch(body)
	case *kmsg.CreateTopicsRequest:
		return s.handleCreateTopics(ctx, body)
	case *kmsg.DeleteTopicsRequest:
		return s.handleDeleteTopics(ctx, body)
	case *kmsg.CreatePartitionsRequest:
		return s.handleCreatePartitions(ctx, body)
	case *kmsg.DeleteRecordsRequest:
		return s.handleDeleteRecords(body)
	case *kmsg.InitProducerIDRequest:
		return s.handleInitProducerID(ctx, body)
	case *kmsg.DescribeConfigsRequest:
		return s.handleDescribeConfigs(body)
	case *kmsg.AlterConfigsRequest:
		return s.handleAlterConfigs(ctx, body)
	case *kmsg.IncrementalAlterConfigsRequest:
		return s.handleIncrementalAlterConfigs(ctx, body)
	case *kmsg.ElectLeadersRequest:
		return s.handleElectLeaders(ctx, body)
	case *kmsg.AlterPartitionAssignmentsRequest:
		return s.handleAlterReassignments(ctx, body)
	case *kmsg.ListPartitionReassignmentsRequest:
		return s.handleListReassignments(body)
	case *kmsg.DescribeLogDirsRequest:
		return s.handleDescribeLogDirs(body)
	case *kmsg.AlterReplicaLogDirsRequest:
		return s.handleAlterReplicaLogDirs(body)
	case *kmsg.FindCoordinatorRequest:
		return s.handleFindCoordinator(ctx, body)
	case *kmsg.HeartbeatRequest:
		return s.groups.Heartbeat(body)
	case *kmsg.LeaveGroupRequest:
		return s.groups.LeaveGroup(body)
	case *kmsg.CreateACLsRequest:
		return s.handleCreateACLs(ctx, body)
	case *kmsg.DescribeACLsRequest:
		return s.handleDescribeACLs(ctx, body)
	case *kmsg.DeleteACLsRequest:
		return s.handleDeleteACLs(ctx, body)
	case *kmsg.DescribeClientQuotasRequest:
		return s.handleDescribeClientQuotas(ctx, body)
	case *kmsg.AlterClientQuotasRequest:
		return s.handleAlterClientQuotas(ctx, body)
	case *kmsg.DescribeUserSCRAMCredentialsRequest:
		return s.handleDescribeUserSCRAM(body)
	case *kmsg.AlterUserSCRAMCredentialsRequest:
		return s.handleAlterUserSCRAM(ctx, body)
	}
	// Unreachable: protocol.ParseRequest only decodes supported keys, each handled above.
	panic("no handler for " + kmsg.NameForKey(req.Key))
}

// errorCode maps an error from the layers below to its Kafka error code.
func errorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, log.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, log.ErrMessageTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, record.ErrCorrupt):
		return kerr.CorruptMessage.Code
	case errors.Is(err, record.ErrInvalidTimestamp):
		return kerr.InvalidTimestamp.Code
	case errors.Is(err, record.ErrInvalid), errors.Is(err, replica.ErrMultipleProducerBatches):
		return kerr.InvalidRecord.Code
	case errors.Is(err, txn.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, txn.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, metadata.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, metadata.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, metadata.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, metadata.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, metadata.ErrInvalidReplication):
		return kerr.InvalidReplicationFactor.Code
	case errors.Is(err, metadata.ErrInvalidAssignment):
		return kerr.InvalidReplicaAssignment.Code
	case errors.Is(err, metadata.ErrInvalidConfig):
		return kerr.InvalidConfig.Code
	case errors.Is(err, metadata.ErrUnknownPartition):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, metadata.ErrNotController):
		// The forward to the active controller failed; the client retries.
		return kerr.RequestTimedOut.Code
	case errors.Is(err, metadata.ErrElectionNotNeeded):
		return kerr.ElectionNotNeeded.Code
	case errors.Is(err, metadata.ErrPreferredLeaderNotAvailable):
		return kerr.PreferredLeaderNotAvailable.Code
	case errors.Is(err, metadata.ErrEligibleLeadersNotAvailable):
		return kerr.EligibleLeadersNotAvailable.Code
	case errors.Is(err, metadata.ErrFencedLeaderEpoch):
		return kerr.FencedLeaderEpoch.Code
	case errors.Is(err, metadata.ErrInvalidUpdateVersion):
		return kerr.InvalidUpdateVersion.Code
	case errors.Is(err, metadata.ErrIneligibleReplica):
		return kerr.IneligibleReplica.Code
	case errors.Is(err, metadata.ErrNoReassignment):
		return kerr.NoReassignmentInProgress.Code
	case errors.Is(err, metadata.ErrStaleBrokerEpoch):
		return kerr.StaleBrokerEpoch.Code
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return kerr.ClusterAuthorizationFailed.Code
	case errors.Is(err, metadata.ErrInvalidRequest), errors.Is(err, metadata.ErrUnknownBroker), errors.Is(err, metadata.ErrInvalidACL):
		return kerr.InvalidRequest.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	case errors.Is(err, log.ErrClosed), isStorageError(err):
		return kerr.KafkaStorageError.Code
	}
	return kerr.UnknownServerError.Code
}

// isStorageError reports whether err comes from the file system.
func isStorageError(err error) bool {
	var pe *fs.PathError
	var se syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &se)
}

// errorMessage is err's text for responses that carry one, nil for no error.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	m := err.Error()
	return &m
}

// checkLeaderEpoch validates a client's current leader epoch (-1 = unknown) against the partition's.
func checkLeaderEpoch(p *replica.Partition, current int32) int16 {
	if current < 0 {
		return 0
	}
	switch epoch := p.LeaderEpoch(); {
	case current < epoch:
		return kerr.FencedLeaderEpoch.Code
	case current > epoch:
		return kerr.UnknownLeaderEpoch.Code
	}
	return 0
}

// leaderPartition returns the hosted partition if this broker leads it, is
// unfenced and acts as its leader (replica.Partition.ActsAsLeader), else the
// error code to answer: UNKNOWN_TOPIC_OR_PARTITION when the metadata has no
// such partition, NOT_LEADER_OR_FOLLOWER otherwise.
func (s *Server) leaderPartition(topic string, partition int32) (*replica.Partition, int16) {
	p, code := s.replicaSource(topic, partition)
	if code == 0 && !p.ActsAsLeader(time.Now()) {
		return nil, kerr.NotLeaderForPartition.Code
	}
	return p, code
}

// replicaSource is leaderPartition for followers (Fetch and
// OffsetForLeaderEpoch with a replica id): a leader that stepped down for
// want of a lease still serves them, since their fetches are what show it
// still leads the ISR.
func (s *Server) replicaSource(topic string, partition int32) (*replica.Partition, int16) {
	img := s.store.Image()
	t, ok := img.Topic(topic)
	if !ok || partition < 0 || int(partition) >= len(t.Partitions) {
		return nil, kerr.UnknownTopicOrPartition.Code
	}
	p, ok := s.parts.Get(topic, partition)
	self := s.cfg.NodeID()
	if !ok || p.Leader() != self || t.Partitions[partition].Leader != self || !img.Live(self) {
		return nil, kerr.NotLeaderForPartition.Code
	}
	return p, 0
}

// withRequestTimeout bounds ctx by a request's timeout field (0 or less:
// no bound beyond ctx's own).
func withRequestTimeout(ctx context.Context, millis int32) (context.Context, context.CancelFunc) {
	if millis <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Duration(millis)*time.Millisecond)
}

package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/group"
	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/replica"
)

func (s *Server) apiVersions(version int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(version)
	for _, k := range protocol.Keys() {
		r, _ := protocol.Supported(k)
		resp.ApiKeys = append(resp.ApiKeys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: r.Min, MaxVersion: r.Max})
	}
	return resp
}

// unauthorizedOps is the "operations not computed" sentinel of Metadata and DescribeCluster.
const unauthorizedOps = -2147483648

func (s *Server) handleMetadata(ctx context.Context, req *kmsg.MetadataRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	img := s.store.Image()
	for _, b := range img.LiveBrokers() {
		host, port := advertisedFor(ctx, b)
		resp.Brokers = append(resp.Brokers, kmsg.MetadataResponseBroker{NodeID: b.ID, Host: host, Port: port, Rack: b.Rack})
	}
	resp.ClusterID = &img.ClusterID
	resp.ControllerID = controllerFor(img)
	resp.AuthorizedOperations = unauthorizedOps
	if req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = s.authorizedOps(ctx, metadata.ResourceCluster, metadata.ClusterResourceName)
	}
	describe := func(t *metadata.Topic) kmsg.MetadataResponseTopic {
		mt := topicMetadata(t, req.Version)
		if req.IncludeTopicAuthorizedOperations {
			mt.AuthorizedOperations = s.authorizedOps(ctx, metadata.ResourceTopic, t.Name)
		}
		return mt
	}

	// v0: an empty list means all topics; v1+: null means all, empty means none.
	defer s.hideSteppedDown(resp)
	all := req.Topics == nil || req.Version == 0 && len(req.Topics) == 0
	if all {
		for _, n := range img.TopicNames() {
			// Topics the principal may not describe are left out.
			if s.allowedQuiet(ctx, metadata.OpDescribe, metadata.ResourceTopic, n) {
				resp.Topics = append(resp.Topics, describe(img.Topics[n]))
			}
		}
		return resp
	}
	autoCreate := s.dyn().Bool("auto.create.topics.enable") && (req.Version < 4 || req.AllowAutoTopicCreation)
	for _, rt := range req.Topics {
		var t *metadata.Topic
		var ok bool
		switch {
		case rt.Topic != nil:
			t, ok = s.store.Image().Topic(*rt.Topic)
		default:
			t, ok = s.store.Image().TopicByID(metadata.TopicID(rt.TopicID))
		}
		name := rt.Topic
		if name == nil && ok {
			name = &t.Name
		}
		if name != nil && !s.allowed(ctx, metadata.OpDescribe, metadata.ResourceTopic, *name) ||
			!ok && rt.Topic != nil && autoCreate && !s.mayCreateTopic(ctx, *rt.Topic) {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.TopicID = rt.Topic, rt.TopicID
			mt.ErrorCode = errTopicAuth
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		if !ok && rt.Topic != nil && autoCreate {
			_, err := s.autoCreate(ctx, *rt.Topic)
			if err != nil && !errors.Is(err, metadata.ErrTopicExists) {
				mt := kmsg.NewMetadataResponseTopic()
				mt.Topic, mt.ErrorCode = rt.Topic, errorCode(err)
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			t, ok = s.store.Image().Topic(*rt.Topic)
		}
		if !ok {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.TopicID = rt.Topic, rt.TopicID
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if rt.Topic == nil {
				mt.ErrorCode = kerr.UnknownTopicID.Code
			} else if err := metadata.ValidateTopicName(*rt.Topic); err != nil {
				mt.ErrorCode = kerr.InvalidTopicException.Code
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, describe(t))
	}
	return resp
}

// hideSteppedDown adjusts the Metadata answer of a broker that lost its
// lease (see internal/replica/lease.go), whose image may be stale: the
// partitions it leads per that image but no longer acts for are reported
// leaderless (LEADER_NOT_AVAILABLE), so clients refresh their metadata
// elsewhere; and when it acts as leader of nothing it leaves itself out of
// the broker list, so clients' next metadata requests go to other brokers
// (which know the new leaders) rather than back to it.
func (s *Server) hideSteppedDown(resp *kmsg.MetadataResponse) {
	now := time.Now()
	if s.parts.LeaseValid(now) {
		return
	}
	self := s.cfg.NodeID()
	acting := false
	for i := range resp.Topics {
		t := &resp.Topics[i]
		for j := range t.Partitions {
			mp := &t.Partitions[j]
			if mp.Leader != self || t.Topic == nil {
				continue
			}
			if p, ok := s.parts.Get(*t.Topic, mp.Partition); ok && p.ActsAsLeader(now) {
				acting = true
				continue
			}
			mp.Leader, mp.ErrorCode = -1, kerr.LeaderNotAvailable.Code
		}
	}
	if acting || slices.ContainsFunc(s.parts.All(), func(p *replica.Partition) bool { return p.ActsAsLeader(now) }) {
		return
	}
	resp.Brokers = slices.DeleteFunc(resp.Brokers, func(b kmsg.MetadataResponseBroker) bool { return b.NodeID == self })
}

// autoCreate creates a topic with the broker's defaults (auto.create.topics.enable).
func (s *Server) autoCreate(ctx context.Context, name string) (*metadata.Topic, error) {
	if name == group.Topic {
		return s.offsetsTopic(ctx)
	}
	t, err := s.store.CreateTopic(ctx, metadata.CreateTopic{Name: name,
		Partitions: int32(s.dyn().Int("num.partitions")), ReplicationFactor: int16(s.replicationDefault())})
	if err == nil {
		s.logger.Info("auto-created topic", "topic", name, "partitions", len(t.Partitions))
	}
	return t, err
}

// replicationDefault is default.replication.factor capped at the broker count.
func (s *Server) replicationDefault() int64 {
	rf := s.dyn().Int("default.replication.factor")
	if n := int64(len(s.store.Image().LiveBrokers())); rf > n {
		rf = n
	}
	return rf
}

func topicMetadata(t *metadata.Topic, version int16) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic, mt.TopicID, mt.IsInternal = &name, t.ID, t.Internal
	mt.AuthorizedOperations = unauthorizedOps
	for _, p := range t.Partitions {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition, mp.Leader, mp.LeaderEpoch = p.Index, p.Leader, p.LeaderEpoch
		mp.Replicas, mp.ISR = p.Replicas, p.ISR
		if p.Leader < 0 {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	_ = version
	return mt
}

func (s *Server) handleDescribeCluster(ctx context.Context, req *kmsg.DescribeClusterRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	img := s.store.Image()
	resp.ClusterID = img.ClusterID
	resp.ControllerID = controllerFor(img)
	resp.ClusterAuthorizedOperations = unauthorizedOps
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = s.authorizedOps(ctx, metadata.ResourceCluster, metadata.ClusterResourceName)
	}
	if req.EndpointType != 0 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return resp
	}
	for _, b := range img.LiveBrokers() {
		host, port := advertisedFor(ctx, b)
		resp.Brokers = append(resp.Brokers, kmsg.DescribeClusterResponseBroker{NodeID: b.ID, Host: host, Port: port, Rack: b.Rack})
	}
	return resp
}

// controllerFor is the controller id clients are told: the active controller
// when it is a live broker, else any live broker (every broker forwards admin
// requests to the active controller), else -1.
func controllerFor(img *metadata.Image) int32 {
	if img.Live(img.ControllerID) {
		return img.ControllerID
	}
	if live := img.LiveBrokers(); len(live) > 0 {
		return live[0].ID
	}
	return -1
}

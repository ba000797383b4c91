package server

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/security"
)

// Per-API authorization, with Kafka's operations and error codes (see
// authorize in authz.go). Each function either answers the whole request
// (deny), or removes the items the session may not touch and returns the
// fix-up that answers them.

// finish is the common tail: nothing refused (nil, nil); everything refused
// (the handler is not run: an empty response completed by fix); else fix.
func finish(req kmsg.Request, refused, kept int, fix func(kmsg.Response)) (kmsg.Response, func(kmsg.Response)) {
	switch {
	case refused == 0:
		return nil, nil
	case kept == 0:
		resp := req.ResponseKind()
		fix(resp)
		return resp, nil
	}
	return nil, fix
}

// split divides items into those kept (refuse answers false) and the
// answers refuse builds for the others, each list in request order (nil
// when empty).
func split[I, O any](items []I, refuse func(I) (O, bool)) (kept []I, refused []O) {
	for _, it := range items {
		if out, no := refuse(it); no {
			refused = append(refused, out)
			continue
		}
		kept = append(kept, it)
	}
	return kept, refused
}

// finishList is finish for the common shape: the refused answers are
// appended to the response's list that list points at.
func finishList[O any](req kmsg.Request, kept int, refused []O, list func(kmsg.Response) *[]O) (kmsg.Response, func(kmsg.Response)) {
	return finish(req, len(refused), kept, func(r kmsg.Response) {
		l := list(r)
		*l = append(*l, refused...)
	})
}

func (s *Server) authorizeProduce(ctx context.Context, req *kmsg.ProduceRequest) (kmsg.Response, func(kmsg.Response)) {
	txnDenied := req.TransactionID != nil && !s.allowed(ctx, metadata.OpWrite, metadata.ResourceTransactionalID, *req.TransactionID)
	var names []string
	for _, rt := range req.Topics {
		names = append(names, rt.Topic)
	}
	var denied map[string]bool
	if !txnDenied {
		denied = s.deniedTopics(ctx, metadata.OpWrite, names...)
	}
	kept, refused := split(req.Topics, func(rt kmsg.ProduceRequestTopic) (out kmsg.ProduceResponseTopic, refuse bool) {
		if !txnDenied && !denied[rt.Topic] {
			return out, false
		}
		code := errTopicAuth
		if txnDenied {
			code = errTxnAuth
		}
		out = kmsg.NewProduceResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, code
			p.BaseOffset, p.LogAppendTime, p.LogStartOffset = -1, -1, -1
			out.Partitions = append(out.Partitions, p)
		}
		return out, true
	})
	if len(refused) > 0 && req.Acks == 0 {
		return hangUp, nil // as for any acks=0 error: the client refreshes its metadata
	}
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.ProduceResponseTopic { return &r.(*kmsg.ProduceResponse).Topics })
}

func (s *Server) authorizeFetch(ctx context.Context, req *kmsg.FetchRequest) (kmsg.Response, func(kmsg.Response)) {
	var denied map[string]bool
	if req.ReplicaID >= 0 {
		// A follower: only a broker principal (CLUSTER_ACTION) may read
		// past the high watermark and move the ISR.
		if s.allowedCluster(ctx, metadata.OpClusterAction) {
			return nil, nil
		}
		denied = map[string]bool{}
		for _, rt := range req.Topics {
			denied[rt.Topic] = true
		}
	} else {
		var names []string
		for _, rt := range req.Topics {
			names = append(names, rt.Topic)
		}
		denied = s.deniedTopics(ctx, metadata.OpRead, names...)
	}
	kept, refused := split(req.Topics, func(rt kmsg.FetchRequestTopic) (out kmsg.FetchResponseTopic, refuse bool) {
		if !denied[rt.Topic] {
			return out, false
		}
		out = kmsg.NewFetchResponseTopic()
		out.Topic, out.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, errTopicAuth
			p.HighWatermark, p.LastStableOffset, p.LogStartOffset, p.PreferredReadReplica = -1, -1, -1, -1
			p.RecordBatches = []byte{} // never null (see fetchOnce)
			out.Partitions = append(out.Partitions, p)
		}
		return out, true
	})
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.FetchResponseTopic { return &r.(*kmsg.FetchResponse).Topics })
}

func (s *Server) authorizeListOffsets(ctx context.Context, req *kmsg.ListOffsetsRequest) (kmsg.Response, func(kmsg.Response)) {
	var names []string
	for _, rt := range req.Topics {
		names = append(names, rt.Topic)
	}
	denied := s.deniedTopics(ctx, metadata.OpDescribe, names...)
	kept, refused := split(req.Topics, func(rt kmsg.ListOffsetsRequestTopic) (out kmsg.ListOffsetsResponseTopic, refuse bool) {
		if !denied[rt.Topic] {
			return out, false
		}
		out = kmsg.NewListOffsetsResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, errTopicAuth
			p.Timestamp, p.Offset, p.LeaderEpoch = -1, -1, -1
			out.Partitions = append(out.Partitions, p)
		}
		return out, true
	})
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.ListOffsetsResponseTopic { return &r.(*kmsg.ListOffsetsResponse).Topics })
}

func (s *Server) authorizeOffsetForLeaderEpoch(ctx context.Context, req *kmsg.OffsetForLeaderEpochRequest) (kmsg.Response, func(kmsg.Response)) {
	denied := map[string]bool{}
	if req.ReplicaID >= 0 {
		if s.allowedCluster(ctx, metadata.OpClusterAction) {
			return nil, nil
		}
		for _, rt := range req.Topics {
			denied[rt.Topic] = true
		}
	} else {
		var names []string
		for _, rt := range req.Topics {
			names = append(names, rt.Topic)
		}
		denied = s.deniedTopics(ctx, metadata.OpDescribe, names...)
	}
	kept, refused := split(req.Topics, func(rt kmsg.OffsetForLeaderEpochRequestTopic) (out kmsg.OffsetForLeaderEpochResponseTopic, refuse bool) {
		if !denied[rt.Topic] {
			return out, false
		}
		out = kmsg.NewOffsetForLeaderEpochResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			p.Partition, p.ErrorCode, p.LeaderEpoch, p.EndOffset = rp.Partition, errTopicAuth, -1, -1
			out.Partitions = append(out.Partitions, p)
		}
		return out, true
	})
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.OffsetForLeaderEpochResponseTopic {
		return &r.(*kmsg.OffsetForLeaderEpochResponse).Topics
	})
}

func (s *Server) authorizeCreateTopics(ctx context.Context, req *kmsg.CreateTopicsRequest) (kmsg.Response, func(kmsg.Response)) {
	if s.allowedQuiet(ctx, metadata.OpCreate, metadata.ResourceCluster, metadata.ClusterResourceName) {
		return nil, nil
	}
	var names []string
	for _, rt := range req.Topics {
		names = append(names, rt.Topic)
	}
	denied := s.deniedTopics(ctx, metadata.OpCreate, names...)
	kept, refused := split(req.Topics, func(rt kmsg.CreateTopicsRequestTopic) (out kmsg.CreateTopicsResponseTopic, refuse bool) {
		if !denied[rt.Topic] {
			return out, false
		}
		out = kmsg.NewCreateTopicsResponseTopic()
		out.Topic, out.ErrorCode = rt.Topic, errTopicAuth
		out.NumPartitions, out.ReplicationFactor = -1, -1
		return out, true
	})
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.CreateTopicsResponseTopic { return &r.(*kmsg.CreateTopicsResponse).Topics })
}

func (s *Server) authorizeDeleteTopics(ctx context.Context, req *kmsg.DeleteTopicsRequest) (kmsg.Response, func(kmsg.Response)) {
	img := s.store.Image()
	var refused []kmsg.DeleteTopicsResponseTopic
	refuse := func(name *string, id [16]byte) {
		out := kmsg.NewDeleteTopicsResponseTopic()
		out.Topic, out.TopicID, out.ErrorCode = name, id, errTopicAuth
		refused = append(refused, out)
	}
	var kept int
	if req.Version >= 6 {
		var keep []kmsg.DeleteTopicsRequestTopic
		for _, t := range req.Topics {
			name := t.Topic
			if name == nil {
				if topic, ok := img.TopicByID(metadata.TopicID(t.TopicID)); ok {
					name = &topic.Name
				}
			}
			if name != nil && !s.allowed(ctx, metadata.OpDelete, metadata.ResourceTopic, *name) {
				refuse(t.Topic, t.TopicID)
				continue
			}
			keep = append(keep, t)
		}
		req.Topics, kept = keep, len(keep)
	} else {
		var keep []string
		for _, n := range req.TopicNames {
			if !s.allowed(ctx, metadata.OpDelete, metadata.ResourceTopic, n) {
				refuse(kmsg.StringPtr(n), [16]byte{})
				continue
			}
			keep = append(keep, n)
		}
		req.TopicNames, kept = keep, len(keep)
	}
	return finish(req, len(refused), kept, func(r kmsg.Response) {
		resp := r.(*kmsg.DeleteTopicsResponse)
		resp.Topics = append(resp.Topics, refused...)
	})
}

func (s *Server) authorizeCreatePartitions(ctx context.Context, req *kmsg.CreatePartitionsRequest) (kmsg.Response, func(kmsg.Response)) {
	kept, refused := split(req.Topics, func(rt kmsg.CreatePartitionsRequestTopic) (out kmsg.CreatePartitionsResponseTopic, refuse bool) {
		if s.allowed(ctx, metadata.OpAlter, metadata.ResourceTopic, rt.Topic) {
			return out, false
		}
		out = kmsg.NewCreatePartitionsResponseTopic()
		out.Topic, out.ErrorCode = rt.Topic, errTopicAuth
		return out, true
	})
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.CreatePartitionsResponseTopic {
		return &r.(*kmsg.CreatePartitionsResponse).Topics
	})
}

func (s *Server) authorizeDeleteRecords(ctx context.Context, req *kmsg.DeleteRecordsRequest) (kmsg.Response, func(kmsg.Response)) {
	kept, refused := split(req.Topics, func(rt kmsg.DeleteRecordsRequestTopic) (out kmsg.DeleteRecordsResponseTopic, refuse bool) {
		if s.allowed(ctx, metadata.OpDelete, metadata.ResourceTopic, rt.Topic) {
			return out, false
		}
		out = kmsg.NewDeleteRecordsResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewDeleteRecordsResponseTopicPartition()
			p.Partition, p.ErrorCode, p.LowWatermark = rp.Partition, errTopicAuth, -1
			out.Partitions = append(out.Partitions, p)
		}
		return out, true
	})
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.DeleteRecordsResponseTopic {
		return &r.(*kmsg.DeleteRecordsResponse).Topics
	})
}

// authorizeInitProducerID: a transactional id needs WRITE on it; an
// idempotent producer IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
func (s *Server) authorizeInitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) kmsg.Response {
	code := int16(0)
	switch {
	case req.TransactionalID != nil:
		if !s.allowed(ctx, metadata.OpWrite, metadata.ResourceTransactionalID, *req.TransactionalID) {
			code = errTxnAuth
		}
	case !s.allowedQuiet(ctx, metadata.OpIdempotentWrite, metadata.ResourceCluster, metadata.ClusterResourceName) &&
		!s.sec.authz.AuthorizeAny(security.SessionFrom(ctx), s.store.Image().ACLs, metadata.OpWrite, metadata.ResourceTopic):
		code = errClusterAuth
		s.sec.authz.LogDenied(security.SessionFrom(ctx), security.Action{Operation: metadata.OpIdempotentWrite,
			ResourceType: metadata.ResourceCluster, ResourceName: metadata.ClusterResourceName})
	}
	if code == 0 {
		return nil
	}
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = code, -1, -1
	return resp
}

// Config resource types.
const (
	configTopic        = 2
	configBroker       = 4
	configBrokerLogger = 8
)

// configAllowed decides op on a config resource; the code is the error to
// answer when not.
func (s *Server) configAllowed(ctx context.Context, op int8, resourceType int8, name string) (bool, int16) {
	switch resourceType {
	case configTopic:
		return s.allowed(ctx, op, metadata.ResourceTopic, name), errTopicAuth
	case configBroker, configBrokerLogger:
		return s.allowedCluster(ctx, op), errClusterAuth
	}
	return true, 0 // the handler refuses unknown types
}

// authorizeConfigs authorizes a config API: op on each resource (see
// configAllowed), key naming a request resource's type and name; a refused
// one is answered by answer with the error code, appended to the
// response's list.
func authorizeConfigs[I, O any](s *Server, ctx context.Context, op int8, req kmsg.Request, resources *[]I,
	key func(I) (int8, string), answer func(I, int16) O, list func(kmsg.Response) *[]O) (kmsg.Response, func(kmsg.Response)) {
	kept, refused := split(*resources, func(rr I) (out O, refuse bool) {
		typ, name := key(rr)
		if ok, code := s.configAllowed(ctx, op, typ, name); !ok {
			return answer(rr, code), true
		}
		return out, false
	})
	*resources = kept
	return finishList(req, len(kept), refused, list)
}

func (s *Server) authorizeDescribeConfigs(ctx context.Context, req *kmsg.DescribeConfigsRequest) (kmsg.Response, func(kmsg.Response)) {
	return authorizeConfigs(s, ctx, metadata.OpDescribeConfigs, req, &req.Resources,
		func(rr kmsg.DescribeConfigsRequestResource) (int8, string) {
			return int8(rr.ResourceType), rr.ResourceName
		},
		func(rr kmsg.DescribeConfigsRequestResource, code int16) kmsg.DescribeConfigsResponseResource {
			out := kmsg.NewDescribeConfigsResponseResource()
			out.ResourceType, out.ResourceName, out.ErrorCode = rr.ResourceType, rr.ResourceName, code
			return out
		},
		func(r kmsg.Response) *[]kmsg.DescribeConfigsResponseResource {
			return &r.(*kmsg.DescribeConfigsResponse).Resources
		})
}

func (s *Server) authorizeAlterConfigs(ctx context.Context, req *kmsg.AlterConfigsRequest) (kmsg.Response, func(kmsg.Response)) {
	return authorizeConfigs(s, ctx, metadata.OpAlterConfigs, req, &req.Resources,
		func(rr kmsg.AlterConfigsRequestResource) (int8, string) {
			return int8(rr.ResourceType), rr.ResourceName
		},
		func(rr kmsg.AlterConfigsRequestResource, code int16) kmsg.AlterConfigsResponseResource {
			out := kmsg.NewAlterConfigsResponseResource()
			out.ResourceType, out.ResourceName, out.ErrorCode = rr.ResourceType, rr.ResourceName, code
			return out
		},
		func(r kmsg.Response) *[]kmsg.AlterConfigsResponseResource {
			return &r.(*kmsg.AlterConfigsResponse).Resources
		})
}

func (s *Server) authorizeIncrementalAlterConfigs(ctx context.Context, req *kmsg.IncrementalAlterConfigsRequest) (kmsg.Response, func(kmsg.Response)) {
	return authorizeConfigs(s, ctx, metadata.OpAlterConfigs, req, &req.Resources,
		func(rr kmsg.IncrementalAlterConfigsRequestResource) (int8, string) {
			return int8(rr.ResourceType), rr.ResourceName
		},
		func(rr kmsg.IncrementalAlterConfigsRequestResource, code int16) kmsg.IncrementalAlterConfigsResponseResource {
			out := kmsg.NewIncrementalAlterConfigsResponseResource()
			out.ResourceType, out.ResourceName, out.ErrorCode = rr.ResourceType, rr.ResourceName, code
			return out
		},
		func(r kmsg.Response) *[]kmsg.IncrementalAlterConfigsResponseResource {
			return &r.(*kmsg.IncrementalAlterConfigsResponse).Resources
		})
}

// coordinatorAllowed decides DESCRIBE on a FindCoordinator key; code is the
// error to answer when not.
func (s *Server) coordinatorAllowed(ctx context.Context, keyType int8, key string) (bool, int16) {
	switch keyType {
	case coordinatorGroup:
		return s.allowed(ctx, metadata.OpDescribe, metadata.ResourceGroup, key), errGroupAuth
	case coordinatorTransaction:
		return s.allowed(ctx, metadata.OpDescribe, metadata.ResourceTransactionalID, key), errTxnAuth
	}
	return true, 0
}

func (s *Server) authorizeFindCoordinator(ctx context.Context, req *kmsg.FindCoordinatorRequest) (kmsg.Response, func(kmsg.Response)) {
	if req.Version < 4 {
		if ok, code := s.coordinatorAllowed(ctx, req.CoordinatorType, req.CoordinatorKey); !ok {
			resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
			resp.ErrorCode, resp.NodeID, resp.Port = code, -1, -1
			return resp, nil
		}
		return nil, nil
	}
	var kept []string
	var refused []kmsg.FindCoordinatorResponseCoordinator
	for _, key := range req.CoordinatorKeys {
		if ok, code := s.coordinatorAllowed(ctx, req.CoordinatorType, key); !ok {
			out := kmsg.NewFindCoordinatorResponseCoordinator()
			out.Key, out.ErrorCode, out.NodeID, out.Port = key, code, -1, -1
			refused = append(refused, out)
			continue
		}
		kept = append(kept, key)
	}
	req.CoordinatorKeys = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.FindCoordinatorResponseCoordinator {
		return &r.(*kmsg.FindCoordinatorResponse).Coordinators
	})
}

// authorizeGroupAPI covers the consumer group APIs: READ on the group to
// take part (join, sync, heartbeat, leave, commit), DESCRIBE to read
// (offsets, description), DELETE to delete; topics of commits need READ,
// of offset fetches DESCRIBE.
func (s *Server) authorizeGroupAPI(ctx context.Context, req *protocol.Request) (kmsg.Response, func(kmsg.Response)) {
	groupOK := func(op int8, g string) bool { return s.allowed(ctx, op, metadata.ResourceGroup, g) }
	switch body := req.Body.(type) {
	case *kmsg.JoinGroupRequest:
		if !groupOK(metadata.OpRead, body.Group) {
			resp := body.ResponseKind().(*kmsg.JoinGroupResponse)
			resp.ErrorCode, resp.Generation = errGroupAuth, -1
			return resp, nil
		}
	case *kmsg.SyncGroupRequest:
		if !groupOK(metadata.OpRead, body.Group) {
			resp := body.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode = errGroupAuth
			return resp, nil
		}
	case *kmsg.HeartbeatRequest:
		if !groupOK(metadata.OpRead, body.Group) {
			resp := body.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = errGroupAuth
			return resp, nil
		}
	case *kmsg.LeaveGroupRequest:
		if !groupOK(metadata.OpRead, body.Group) {
			resp := body.ResponseKind().(*kmsg.LeaveGroupResponse)
			resp.ErrorCode = errGroupAuth
			return resp, nil
		}
	case *kmsg.OffsetCommitRequest:
		return s.authorizeOffsetCommit(ctx, body)
	case *kmsg.OffsetDeleteRequest:
		return s.authorizeOffsetDelete(ctx, body)
	case *kmsg.OffsetFetchRequest:
		return s.authorizeOffsetFetch(ctx, body)
	case *kmsg.DescribeGroupsRequest:
		return nil, s.fixDescribeGroups(ctx, body)
	case *kmsg.ListGroupsRequest:
		if s.allowedQuiet(ctx, metadata.OpDescribe, metadata.ResourceCluster, metadata.ClusterResourceName) {
			return nil, nil
		}
		return nil, func(r kmsg.Response) {
			resp := r.(*kmsg.ListGroupsResponse)
			var shown []kmsg.ListGroupsResponseGroup
			for _, g := range resp.Groups {
				if s.allowedQuiet(ctx, metadata.OpDescribe, metadata.ResourceGroup, g.Group) {
					shown = append(shown, g)
				}
			}
			resp.Groups = shown
		}
	case *kmsg.DeleteGroupsRequest:
		var kept []string
		var refused []kmsg.DeleteGroupsResponseGroup
		for _, g := range body.Groups {
			if groupOK(metadata.OpDelete, g) {
				kept = append(kept, g)
				continue
			}
			out := kmsg.NewDeleteGroupsResponseGroup()
			out.Group, out.ErrorCode = g, errGroupAuth
			refused = append(refused, out)
		}
		body.Groups = kept
		return finish(body, len(refused), len(kept), func(r kmsg.Response) {
			resp := r.(*kmsg.DeleteGroupsResponse)
			resp.Groups = append(resp.Groups, refused...)
		})
	default:
		return s.authorizeOther(ctx, req)
	}
	return nil, nil
}

// authorizeOther covers the APIs without a rule above. Authentication
// (ApiVersions, SaslHandshake, SaslAuthenticate) is open to all; APIs whose
// handlers authorize (Metadata, DescribeCluster, the ACL and quota APIs)
// pass; the SCRAM credential APIs need DESCRIBE or ALTER on the cluster, as
// in Kafka. Any other API - one added without a rule here - fails closed:
// only a principal with ALTER on the cluster may use it, and anyone else
// has the connection closed.
func (s *Server) authorizeOther(ctx context.Context, req *protocol.Request) (kmsg.Response, func(kmsg.Response)) {
	switch body := req.Body.(type) {
	case *kmsg.ApiVersionsRequest, *kmsg.SASLHandshakeRequest, *kmsg.SASLAuthenticateRequest,
		*kmsg.MetadataRequest, *kmsg.DescribeClusterRequest,
		*kmsg.CreateACLsRequest, *kmsg.DescribeACLsRequest, *kmsg.DeleteACLsRequest,
		*kmsg.DescribeClientQuotasRequest, *kmsg.AlterClientQuotasRequest:
		return nil, nil
	case *kmsg.AlterReplicaLogDirsRequest: // Kafka: ALTER on the cluster
		if !s.allowedCluster(ctx, metadata.OpAlter) {
			resp := body.ResponseKind().(*kmsg.AlterReplicaLogDirsResponse)
			for _, d := range body.Dirs {
				for _, t := range d.Topics {
					rt := kmsg.NewAlterReplicaLogDirsResponseTopic()
					rt.Topic = t.Topic
					for _, p := range t.Partitions {
						rt.Partitions = append(rt.Partitions, kmsg.AlterReplicaLogDirsResponseTopicPartition{Partition: p, ErrorCode: errClusterAuth})
					}
					resp.Topics = append(resp.Topics, rt)
				}
			}
			return resp, nil
		}
		return nil, nil
	case *kmsg.DescribeUserSCRAMCredentialsRequest:
		if !s.allowedCluster(ctx, metadata.OpDescribe) {
			resp := body.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
			resp.ErrorCode = errClusterAuth
			return resp, nil
		}
		return nil, nil
	case *kmsg.AlterUserSCRAMCredentialsRequest:
		if !s.allowedCluster(ctx, metadata.OpAlter) {
			resp := body.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
			for _, d := range body.Deletions {
				resp.Results = append(resp.Results, kmsg.AlterUserSCRAMCredentialsResponseResult{User: d.Name, ErrorCode: errClusterAuth})
			}
			for _, u := range body.Upsertions {
				resp.Results = append(resp.Results, kmsg.AlterUserSCRAMCredentialsResponseResult{User: u.Name, ErrorCode: errClusterAuth})
			}
			return resp, nil
		}
		return nil, nil
	}
	if s.allowedCluster(ctx, metadata.OpAlter) {
		return nil, nil
	}
	s.logger.Warn("closing the connection of a request without an authorization rule",
		"api", kmsg.NameForKey(req.Key), "principal", security.SessionFrom(ctx).Principal.String())
	return hangUp, nil
}

func (s *Server) authorizeOffsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) (kmsg.Response, func(kmsg.Response)) {
	groupDenied := !s.allowed(ctx, metadata.OpRead, metadata.ResourceGroup, req.Group)
	var names []string
	for _, rt := range req.Topics {
		names = append(names, rt.Topic)
	}
	var denied map[string]bool
	if !groupDenied {
		denied = s.deniedTopics(ctx, metadata.OpRead, names...)
	}
	kept, refused := split(req.Topics, func(rt kmsg.OffsetCommitRequestTopic) (out kmsg.OffsetCommitResponseTopic, refuse bool) {
		if !groupDenied && !denied[rt.Topic] {
			return out, false
		}
		code := errTopicAuth
		if groupDenied {
			code = errGroupAuth
		}
		out = kmsg.NewOffsetCommitResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetCommitResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, code
			out.Partitions = append(out.Partitions, p)
		}
		return out, true
	})
	if groupDenied && len(req.Topics) == 0 {
		return req.ResponseKind(), nil
	}
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.OffsetCommitResponseTopic { return &r.(*kmsg.OffsetCommitResponse).Topics })
}

func (s *Server) authorizeOffsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) (kmsg.Response, func(kmsg.Response)) {
	if !s.allowed(ctx, metadata.OpDelete, metadata.ResourceGroup, req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = errGroupAuth
		return resp, nil
	}
	kept, refused := split(req.Topics, func(rt kmsg.OffsetDeleteRequestTopic) (out kmsg.OffsetDeleteResponseTopic, refuse bool) {
		if s.allowed(ctx, metadata.OpRead, metadata.ResourceTopic, rt.Topic) {
			return out, false
		}
		out = kmsg.NewOffsetDeleteResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetDeleteResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, errTopicAuth
			out.Partitions = append(out.Partitions, p)
		}
		return out, true
	})
	req.Topics = kept
	return finishList(req, len(kept), refused, func(r kmsg.Response) *[]kmsg.OffsetDeleteResponseTopic { return &r.(*kmsg.OffsetDeleteResponse).Topics })
}

// authorizeOffsetFetch: the group needs DESCRIBE (else the whole group is
// GROUP_AUTHORIZATION_FAILED), each topic DESCRIBE: a requested topic is
// answered TOPIC_AUTHORIZATION_FAILED, one listed because all were asked
// for is left out. OffsetFetch changes nothing, so this filters the answer.
func (s *Server) authorizeOffsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) (kmsg.Response, func(kmsg.Response)) {
	groupOK := func(g string) bool { return s.allowed(ctx, metadata.OpDescribe, metadata.ResourceGroup, g) }
	if req.Version < 8 && !groupOK(req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = errGroupAuth
		for _, rt := range req.Topics {
			out := kmsg.NewOffsetFetchResponseTopic()
			out.Topic = rt.Topic
			for _, p := range rt.Partitions {
				op := kmsg.NewOffsetFetchResponseTopicPartition()
				op.Partition, op.ErrorCode, op.Offset, op.LeaderEpoch = p, errGroupAuth, -1, -1
				out.Partitions = append(out.Partitions, op)
			}
			resp.Topics = append(resp.Topics, out)
		}
		return resp, nil
	}
	topicOK := func(t string) bool { return s.allowedQuiet(ctx, metadata.OpDescribe, metadata.ResourceTopic, t) }
	filter := func(all bool, topics []kmsg.OffsetFetchResponseTopic) []kmsg.OffsetFetchResponseTopic {
		out := topics[:0]
		for _, t := range topics {
			if topicOK(t.Topic) {
				out = append(out, t)
				continue
			}
			if all {
				continue
			}
			for i := range t.Partitions {
				t.Partitions[i].ErrorCode, t.Partitions[i].Offset, t.Partitions[i].Metadata = errTopicAuth, -1, nil
			}
			out = append(out, t)
		}
		return out
	}
	filterGroup := func(all bool, topics []kmsg.OffsetFetchResponseGroupTopic) []kmsg.OffsetFetchResponseGroupTopic {
		out := topics[:0]
		for _, t := range topics {
			if topicOK(t.Topic) {
				out = append(out, t)
				continue
			}
			if all {
				continue
			}
			for i := range t.Partitions {
				t.Partitions[i].ErrorCode, t.Partitions[i].Offset, t.Partitions[i].Metadata = errTopicAuth, -1, nil
			}
			out = append(out, t)
		}
		return out
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.OffsetFetchResponse)
		if req.Version < 8 {
			resp.Topics = filter(req.Topics == nil, resp.Topics)
			return
		}
		all := map[string]bool{}
		for _, g := range req.Groups {
			all[g.Group] = g.Topics == nil
		}
		for i := range resp.Groups {
			g := &resp.Groups[i]
			if !groupOK(g.Group) {
				g.ErrorCode, g.Topics = errGroupAuth, nil
				continue
			}
			g.Topics = filterGroup(all[g.Group], g.Topics)
		}
	}
}

// fixDescribeGroups answers groups the session may not DESCRIBE with
// GROUP_AUTHORIZATION_FAILED and fills in authorized operations if asked.
func (s *Server) fixDescribeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) func(kmsg.Response) {
	return func(r kmsg.Response) {
		resp := r.(*kmsg.DescribeGroupsResponse)
		for i := range resp.Groups {
			g := &resp.Groups[i]
			if !s.allowed(ctx, metadata.OpDescribe, metadata.ResourceGroup, g.Group) {
				out := kmsg.NewDescribeGroupsResponseGroup()
				out.Group, out.ErrorCode = g.Group, errGroupAuth
				*g = out
				continue
			}
			if req.IncludeAuthorizedOperations {
				g.AuthorizedOperations = s.authorizedOps(ctx, metadata.ResourceGroup, g.Group)
			}
		}
	}
}

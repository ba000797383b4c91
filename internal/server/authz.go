package server

import (
	"context"
	"log/slog"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/security"
)

// Authorization. Every request passes authorize (called first by handle, on
// the connection's reader, so before the request acts): a request the
// session may not make at all is answered at once with Kafka's error code;
// one with some items (topics, groups, resources) it may not touch has
// them removed from the request and answered with the error code by a
// fix-up of the handler's response; read-only answers (DescribeGroups,
// ListGroups, OffsetFetch) are filtered after the fact. Metadata and the
// authorized-operations fields use the helpers directly.
//
// With no authorizer.class.name there is no authorizer (s.sec.authz is nil)
// and everything is allowed, as before authorization existed.

// security holds the server's authorizer and client quotas.
type serverSecurity struct {
	authz  *security.Authorizer // nil: authorization off
	quotas *security.Quotas
}

func newServerSecurity(cfg *config.Broker, logger *slog.Logger) *serverSecurity {
	sec := &serverSecurity{quotas: security.NewQuotas(security.QuotaConfig{
		Samples: int(cfg.Int("quota.window.num")), SampleSeconds: int(cfg.Int("quota.window.size.seconds")),
	})}
	if cfg.String("authorizer.class.name") != "" {
		sec.authz = security.NewAuthorizer(security.AuthorizerConfig{
			SuperUsers:           cfg.String("super.users"),
			AllowEveryoneIfNoACL: cfg.Bool("allow.everyone.if.no.acl.found"),
			Logger:               logger,
		})
	}
	return sec
}

type clientIDKey struct{}

// requestContext is ctx for one request: it carries the client id (for
// quotas) and, with an authorizer, a session with the client's host
// filled in. The principal is always the connection's (set when it
// authenticated); nothing in a request chooses it.
func (s *Server) requestContext(ctx context.Context, req *protocol.Request) context.Context {
	ctx = context.WithValue(ctx, clientIDKey{}, req.ClientID)
	sess := security.SessionFrom(ctx)
	if sess.Host != "" || s.sec.authz == nil {
		return ctx // the host matters only to ACLs
	}
	next := *sess
	addr, _ := ctx.Value(remoteAddrKey{}).(string)
	if host, _, err := net.SplitHostPort(addr); err == nil {
		next.Host = host
	}
	return security.WithSession(ctx, &next)
}

// clientID is the request's client id (see requestContext).
func clientID(ctx context.Context) string {
	id, _ := ctx.Value(clientIDKey{}).(string)
	return id
}

// allowed decides one action of the request's session.
func (s *Server) allowed(ctx context.Context, op, resourceType int8, name string) bool {
	if s.sec.authz == nil {
		return true
	}
	return s.sec.authz.Authorize(security.SessionFrom(ctx), s.store.Image().ACLs,
		security.Action{Operation: op, ResourceType: resourceType, ResourceName: name})
}

// allowedQuiet is allowed without logging (filtering what a listing shows).
func (s *Server) allowedQuiet(ctx context.Context, op, resourceType int8, name string) bool {
	if s.sec.authz == nil {
		return true
	}
	return s.sec.authz.Authorize(security.SessionFrom(ctx), s.store.Image().ACLs,
		security.Action{Operation: op, ResourceType: resourceType, ResourceName: name, Quiet: true})
}

// allowedCluster decides op on the cluster resource.
func (s *Server) allowedCluster(ctx context.Context, op int8) bool {
	return s.allowed(ctx, op, metadata.ResourceCluster, metadata.ClusterResourceName)
}

// deniedTopics returns the names the session may not do op on (nil when
// all are allowed).
func (s *Server) deniedTopics(ctx context.Context, op int8, names ...string) map[string]bool {
	if s.sec.authz == nil {
		return nil
	}
	var denied map[string]bool
	for _, n := range names {
		if _, seen := denied[n]; seen {
			continue
		}
		if !s.allowed(ctx, op, metadata.ResourceTopic, n) {
			if denied == nil {
				denied = map[string]bool{}
			}
			denied[n] = true
		}
	}
	return denied
}

// authorizedOps is the authorized-operations field for a resource: every
// operation of its type when authorization is off.
func (s *Server) authorizedOps(ctx context.Context, resourceType int8, name string) int32 {
	if s.sec.authz == nil {
		return security.AllOperations(resourceType)
	}
	return s.sec.authz.AuthorizedOperations(security.SessionFrom(ctx), s.store.Image().ACLs, resourceType, name)
}

var (
	errTopicAuth   = kerr.TopicAuthorizationFailed.Code
	errGroupAuth   = kerr.GroupAuthorizationFailed.Code
	errClusterAuth = kerr.ClusterAuthorizationFailed.Code
	errTxnAuth     = kerr.TransactionalIDAuthorizationFailed.Code
)

// authorize checks req before it acts (see the file comment). deny, when
// non-nil, is the whole answer; fix, when non-nil, completes the handler's
// response with the items authorize removed from the request.
func (s *Server) authorize(ctx context.Context, req *protocol.Request) (deny kmsg.Response, fix func(kmsg.Response)) {
	if s.sec.authz == nil {
		if dg, ok := req.Body.(*kmsg.DescribeGroupsRequest); ok && dg.IncludeAuthorizedOperations {
			return nil, s.fixDescribeGroups(ctx, dg)
		}
		return nil, nil
	}
	switch body := req.Body.(type) {
	case *kmsg.ProduceRequest:
		return s.authorizeProduce(ctx, body)
	case *kmsg.FetchRequest:
		return s.authorizeFetch(ctx, body)
	case *kmsg.ListOffsetsRequest:
		return s.authorizeListOffsets(ctx, body)
	case *kmsg.OffsetForLeaderEpochRequest:
		return s.authorizeOffsetForLeaderEpoch(ctx, body)
	case *kmsg.CreateTopicsRequest:
		return s.authorizeCreateTopics(ctx, body)
	case *kmsg.DeleteTopicsRequest:
		return s.authorizeDeleteTopics(ctx, body)
	case *kmsg.CreatePartitionsRequest:
		return s.authorizeCreatePartitions(ctx, body)
	case *kmsg.DeleteRecordsRequest:
		return s.authorizeDeleteRecords(ctx, body)
	case *kmsg.InitProducerIDRequest:
		return s.authorizeInitProducerID(ctx, body), nil
	case *kmsg.DescribeConfigsRequest:
		return s.authorizeDescribeConfigs(ctx, body)
	case *kmsg.AlterConfigsRequest:
		return s.authorizeAlterConfigs(ctx, body)
	case *kmsg.IncrementalAlterConfigsRequest:
		return s.authorizeIncrementalAlterConfigs(ctx, body)
	case *kmsg.ElectLeadersRequest:
		if !s.allowedCluster(ctx, metadata.OpAlter) {
			resp := body.ResponseKind().(*kmsg.ElectLeadersResponse)
			resp.ErrorCode = errClusterAuth // v1+; v0 has only the partitions' codes
			for _, rt := range body.Topics {
				out := kmsg.NewElectLeadersResponseTopic()
				out.Topic = rt.Topic
				for _, p := range rt.Partitions {
					po := kmsg.NewElectLeadersResponseTopicPartition()
					po.Partition, po.ErrorCode = p, errClusterAuth
					out.Partitions = append(out.Partitions, po)
				}
				resp.Topics = append(resp.Topics, out)
			}
			return resp, nil
		}
	case *kmsg.AlterPartitionAssignmentsRequest:
		if !s.allowedCluster(ctx, metadata.OpAlter) {
			resp := body.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
			resp.ErrorCode = errClusterAuth
			return resp, nil
		}
	case *kmsg.ListPartitionReassignmentsRequest:
		if !s.allowedCluster(ctx, metadata.OpDescribe) {
			resp := body.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
			resp.ErrorCode = errClusterAuth
			return resp, nil
		}
	case *kmsg.DescribeLogDirsRequest:
		// As Kafka: DESCRIBE on the cluster, else no directories and (v3+)
		// CLUSTER_AUTHORIZATION_FAILED.
		if !s.allowedCluster(ctx, metadata.OpDescribe) {
			resp := body.ResponseKind().(*kmsg.DescribeLogDirsResponse)
			resp.ErrorCode = errClusterAuth
			return resp, nil
		}
	case *kmsg.FindCoordinatorRequest:
		return s.authorizeFindCoordinator(ctx, body)
	default:
		if deny, fix, ok := s.authorizeTxnAPI(ctx, req); ok { // txnauthz.go
			return deny, fix
		}
		return s.authorizeGroupAPI(ctx, req)
	}
	return nil, nil
}

// mayCreateTopic reports whether the session may create topic name:
// CREATE on the cluster or on the topic.
func (s *Server) mayCreateTopic(ctx context.Context, name string) bool {
	return s.allowedQuiet(ctx, metadata.OpCreate, metadata.ResourceCluster, metadata.ClusterResourceName) ||
		s.allowed(ctx, metadata.OpCreate, metadata.ResourceTopic, name)
}

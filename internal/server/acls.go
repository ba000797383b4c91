package server

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
)

// The ACL APIs: CreateAcls and DeleteAcls (ALTER on the cluster) change the
// bindings through the active controller; DescribeAcls (DESCRIBE on the
// cluster) reads this broker's image. Version 0 knows only LITERAL patterns.

func (s *Server) handleCreateACLs(ctx context.Context, req *kmsg.CreateACLsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	acls := make([]metadata.ACL, len(req.Creations))
	for i, c := range req.Creations {
		pt := int8(c.ResourcePatternType)
		if req.Version == 0 {
			pt = metadata.PatternLiteral
		}
		acls[i] = metadata.ACL{ResourceType: int8(c.ResourceType), ResourceName: c.ResourceName, PatternType: pt,
			Principal: c.Principal, Host: c.Host, Operation: int8(c.Operation), Permission: int8(c.PermissionType)}
	}
	var errs []error
	var err error
	if !s.allowedCluster(ctx, metadata.OpAlter) {
		err = errClusterAuthorization
	} else if len(acls) > 0 {
		errs, err = s.store.CreateACLs(ctx, acls)
	}
	for i := range req.Creations {
		out := kmsg.NewCreateACLsResponseResult()
		e := err
		if e == nil && i < len(errs) {
			e = errs[i]
		}
		out.ErrorCode, out.ErrorMessage = errorCode(e), errorMessage(e)
		resp.Results = append(resp.Results, out)
	}
	if err == nil {
		s.logger.Info("created acls", "count", len(acls))
	}
	return resp
}

// errClusterAuthorization answers, through errorCode, a request the
// session may not make on the cluster.
var errClusterAuthorization = fmt.Errorf("%w: the principal may not do this on the cluster", kerr.ClusterAuthorizationFailed)

// aclFilter turns a request's filter fields into a metadata.ACLFilter,
// refusing UNKNOWN codes as Kafka does.
func aclFilter(version int16, rt kmsg.ACLResourceType, name *string, pt kmsg.ACLResourcePatternType,
	principal, host *string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) (metadata.ACLFilter, error) {
	f := metadata.ACLFilter{ResourceType: int8(rt), ResourceName: name, PatternType: int8(pt),
		Principal: principal, Host: host, Operation: int8(op), Permission: int8(perm)}
	if version == 0 {
		f.PatternType = metadata.PatternLiteral
	}
	switch {
	case f.ResourceType < metadata.ResourceAny || f.ResourceType > metadata.ResourceUser:
		return f, fmt.Errorf("%w: resource type %d", metadata.ErrInvalidRequest, f.ResourceType)
	case f.PatternType < metadata.PatternAny || f.PatternType > metadata.PatternPrefixed:
		return f, fmt.Errorf("%w: pattern type %d", metadata.ErrInvalidRequest, f.PatternType)
	case f.Operation < metadata.OpAny || f.Operation > metadata.OpDescribeTokens:
		return f, fmt.Errorf("%w: operation %d", metadata.ErrInvalidRequest, f.Operation)
	case f.Permission < metadata.PermissionAny || f.Permission > metadata.PermissionAllow:
		return f, fmt.Errorf("%w: permission type %d", metadata.ErrInvalidRequest, f.Permission)
	}
	return f, nil
}

func (s *Server) handleDescribeACLs(ctx context.Context, req *kmsg.DescribeACLsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if !s.allowedCluster(ctx, metadata.OpDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	f, err := aclFilter(req.Version, req.ResourceType, req.ResourceName, req.ResourcePatternType,
		req.Principal, req.Host, req.Operation, req.PermissionType)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, errorMessage(err)
		return resp
	}
	type key struct {
		rt   int8
		name string
		pt   int8
	}
	byResource := map[key]int{}
	for _, a := range s.store.Image().MatchingACLs(f) {
		k := key{a.ResourceType, a.ResourceName, a.PatternType}
		i, ok := byResource[k]
		if !ok {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, r.ResourceName, r.ResourcePatternType = kmsg.ACLResourceType(k.rt), k.name, kmsg.ACLResourcePatternType(k.pt)
			i = len(resp.Resources)
			byResource[k] = i
			resp.Resources = append(resp.Resources, r)
		}
		e := kmsg.NewDescribeACLsResponseResourceACL()
		e.Principal, e.Host, e.Operation, e.PermissionType = a.Principal, a.Host, kmsg.ACLOperation(a.Operation), kmsg.ACLPermissionType(a.Permission)
		resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, e)
	}
	return resp
}

func (s *Server) handleDeleteACLs(ctx context.Context, req *kmsg.DeleteACLsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	results := make([]kmsg.DeleteACLsResponseResult, len(req.Filters))
	var filters []metadata.ACLFilter
	var index []int // filters[j] is req.Filters[index[j]]
	allowed := s.allowedCluster(ctx, metadata.OpAlter)
	for i, rf := range req.Filters {
		results[i] = kmsg.NewDeleteACLsResponseResult()
		if !allowed {
			results[i].ErrorCode = kerr.ClusterAuthorizationFailed.Code
			continue
		}
		f, err := aclFilter(req.Version, rf.ResourceType, rf.ResourceName, rf.ResourcePatternType,
			rf.Principal, rf.Host, rf.Operation, rf.PermissionType)
		if err != nil {
			results[i].ErrorCode, results[i].ErrorMessage = kerr.InvalidRequest.Code, errorMessage(err)
			continue
		}
		filters, index = append(filters, f), append(index, i)
	}
	if len(filters) > 0 {
		matched, err := s.store.DeleteACLs(ctx, filters)
		for j, i := range index {
			if err != nil {
				results[i].ErrorCode, results[i].ErrorMessage = errorCode(err), errorMessage(err)
				continue
			}
			for _, a := range matched[j] {
				m := kmsg.NewDeleteACLsResponseResultMatchingACL()
				m.ResourceType, m.ResourceName, m.ResourcePatternType = kmsg.ACLResourceType(a.ResourceType), a.ResourceName, kmsg.ACLResourcePatternType(a.PatternType)
				m.Principal, m.Host = a.Principal, a.Host
				m.Operation, m.PermissionType = kmsg.ACLOperation(a.Operation), kmsg.ACLPermissionType(a.Permission)
				results[i].MatchingACLs = append(results[i].MatchingACLs, m)
			}
		}
		if err == nil {
			s.logger.Info("deleted acls", "filters", len(filters))
		}
	}
	resp.Results = results
	return resp
}

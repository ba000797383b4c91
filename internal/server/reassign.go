package server

import (
	"context"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleAlterReassignments starts or cancels (null replicas) partition
// reassignments through the active controller.
func (s *Server) handleAlterReassignments(ctx context.Context, req *kmsg.AlterPartitionAssignmentsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	ctx, cancel := withRequestTimeout(ctx, req.TimeoutMillis)
	defer cancel()
	for _, rt := range req.Topics {
		out := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		out.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			po := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			po.Partition = rp.Partition
			if err := s.store.Reassign(ctx, rt.Topic, rp.Partition, rp.Replicas); err != nil {
				po.ErrorCode, po.ErrorMessage = errorCode(err), errorMessage(err)
			}
			out.Partitions = append(out.Partitions, po)
		}
		resp.Topics = append(resp.Topics, out)
	}
	return resp
}

// handleListReassignments lists reassignments in progress (null topics: all).
func (s *Server) handleListReassignments(req *kmsg.ListPartitionReassignmentsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	img := s.store.Image()
	wanted := map[string]map[int32]bool{}
	for _, rt := range req.Topics {
		wanted[rt.Topic] = map[int32]bool{}
		for _, p := range rt.Partitions {
			wanted[rt.Topic][p] = true
		}
	}
	all := img.Reassignments()
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if req.Topics != nil && wanted[name] == nil {
			continue
		}
		out := kmsg.NewListPartitionReassignmentsResponseTopic()
		out.Topic = name
		for _, p := range all[name] {
			if req.Topics != nil && !wanted[name][p.Index] {
				continue
			}
			po := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
			po.Partition, po.Replicas, po.AddingReplicas, po.RemovingReplicas = p.Index, p.Replicas, p.AddingReplicas, p.RemovingReplicas
			out.Partitions = append(out.Partitions, po)
		}
		if len(out.Partitions) > 0 {
			resp.Topics = append(resp.Topics, out)
		}
	}
	return resp
}

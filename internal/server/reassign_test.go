package server

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestReassignmentAPIs checks the wire side of reassignment on one node:
// errors for unknown brokers, partitions and cancelling nothing; an
// unchanged target completes at once; nothing is listed as in progress.
func TestReassignmentAPIs(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	createTopic(t, cl, "moving", 1, nil)
	alter := func(topic string, partition int32, replicas []int32) int16 {
		req := kmsg.NewPtrAlterPartitionAssignmentsRequest()
		rt := kmsg.NewAlterPartitionAssignmentsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewAlterPartitionAssignmentsRequestTopicPartition()
		rp.Partition, rp.Replicas = partition, replicas
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != 0 {
			return resp.ErrorCode
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	for _, tc := range []struct {
		topic     string
		partition int32
		replicas  []int32
		want      error
	}{
		{"moving", 0, []int32{2}, kerr.InvalidReplicaAssignment},
		{"moving", 0, []int32{1, 1}, kerr.InvalidReplicaAssignment},
		{"moving", 0, nil, kerr.NoReassignmentInProgress},
		{"moving", 5, []int32{1}, kerr.UnknownTopicOrPartition},
		{"absent", 0, []int32{1}, kerr.UnknownTopicOrPartition},
		{"moving", 0, []int32{1}, nil},
	} {
		if got := kerr.ErrorForCode(alter(tc.topic, tc.partition, tc.replicas)); got != tc.want {
			t.Errorf("reassign %s-%d to %v: %v, want %v", tc.topic, tc.partition, tc.replicas, got, tc.want)
		}
	}
	list, err := kmsg.NewPtrListPartitionReassignmentsRequest().RequestWith(ctx(t), cl)
	if err != nil || len(list.Topics) != 0 {
		t.Fatalf("list: %v %+v", err, list)
	}
}

package server

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Admin APIs of transactions (KIP-664): DescribeProducers (per partition,
// from its leader), DescribeTransactions (from the id's coordinator) and
// ListTransactions (each broker lists the ids it coordinates), so that
// hanging transactions can be found.

func (s *Server) handleDescribeProducers(req *kmsg.DescribeProducersRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range req.Topics {
		topic := kmsg.NewDescribeProducersResponseTopic()
		topic.Topic = rt.Topic
		for _, idx := range rt.Partitions {
			out := kmsg.NewDescribeProducersResponseTopicPartition()
			out.Partition = idx
			p, code := s.leaderPartition(rt.Topic, idx)
			if code != 0 {
				out.ErrorCode = code
				topic.Partitions = append(topic.Partitions, out)
				continue
			}
			producers, open := p.Producers()
			for _, pi := range producers {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch, ap.LastSequence = pi.ProducerID, int32(pi.Epoch), pi.LastSequence
				ap.LastTimestamp, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = -1, -1, -1
				if first, ok := open[pi.ProducerID]; ok {
					ap.CurrentTxnStartOffset = first
				}
				out.ActiveProducers = append(out.ActiveProducers, ap)
			}
			topic.Partitions = append(topic.Partitions, out)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	return resp
}

func (s *Server) handleDescribeTransactions(req *kmsg.DescribeTransactionsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		out := kmsg.NewDescribeTransactionsResponseTransactionState()
		out.TransactionalID, out.ProducerID, out.ProducerEpoch, out.StartTimestamp = id, -1, -1, -1
		t, code := s.txns.Describe(id)
		out.ErrorCode = code
		if code == 0 {
			out.State, out.TimeoutMillis, out.StartTimestamp = t.State.String(), t.TimeoutMs, t.StartMs
			out.ProducerID, out.ProducerEpoch = t.ProducerID, t.Epoch
			topics := make([]string, 0, len(t.Partitions))
			for name := range t.Partitions {
				topics = append(topics, name)
			}
			slices.Sort(topics)
			for _, name := range topics {
				rt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				rt.Topic, rt.Partitions = name, t.Partitions[name]
				out.Topics = append(out.Topics, rt)
			}
		}
		resp.TransactionStates = append(resp.TransactionStates, out)
	}
	return resp
}

var txnStateNames = []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

func (s *Server) handleListTransactions(req *kmsg.ListTransactionsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	for _, f := range req.StateFilters {
		if !slices.Contains(txnStateNames, f) {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, f)
		}
	}
	txns, loading := s.txns.List()
	if loading {
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	}
	for _, t := range txns {
		if len(req.StateFilters) > 0 && !slices.Contains(req.StateFilters, t.State.String()) {
			continue
		}
		if len(req.ProducerIDFilters) > 0 && !slices.Contains(req.ProducerIDFilters, t.ProducerID) {
			continue
		}
		out := kmsg.NewListTransactionsResponseTransactionState()
		out.TransactionalID, out.ProducerID, out.TransactionState = t.ID, t.ProducerID, t.State.String()
		resp.TransactionStates = append(resp.TransactionStates, out)
	}
	return resp
}

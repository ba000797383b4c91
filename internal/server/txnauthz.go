package server

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/protocol"
)

// authorizeTxnAPI authorizes the transaction APIs as Kafka does:
// AddPartitionsToTxn needs WRITE on the transactional id and on every
// topic; AddOffsetsToTxn WRITE on the id and READ on the group; EndTxn
// WRITE on the id; TxnOffsetCommit WRITE on the id, READ on the group and
// on every topic; WriteTxnMarkers CLUSTER_ACTION; DescribeProducers READ
// on every topic; DescribeTransactions DESCRIBE on every id;
// ListTransactions lists only ids the session may DESCRIBE. A request
// with any item refused is refused whole (every item gets the error). ok
// is false for other APIs.
func (s *Server) authorizeTxnAPI(ctx context.Context, req *protocol.Request) (deny kmsg.Response, fix func(kmsg.Response), ok bool) {
	txnOK := func(op int8, id string) bool { return s.allowed(ctx, op, metadata.ResourceTransactionalID, id) }
	topicOK := func(op int8, t string) bool { return s.allowed(ctx, op, metadata.ResourceTopic, t) }
	switch body := req.Body.(type) {
	case *kmsg.AddPartitionsToTxnRequest:
		code := int16(0)
		if !txnOK(metadata.OpWrite, body.TransactionalID) {
			code = errTxnAuth
		} else {
			for _, t := range body.Topics {
				if !topicOK(metadata.OpWrite, t.Topic) {
					code = errTopicAuth
				}
			}
		}
		if code == 0 {
			return nil, nil, true
		}
		resp := body.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		for _, t := range body.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	case *kmsg.AddOffsetsToTxnRequest:
		resp := body.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		switch {
		case !txnOK(metadata.OpWrite, body.TransactionalID):
			resp.ErrorCode = errTxnAuth
		case !s.allowed(ctx, metadata.OpRead, metadata.ResourceGroup, body.Group):
			resp.ErrorCode = errGroupAuth
		default:
			return nil, nil, true
		}
		return resp, nil, true
	case *kmsg.EndTxnRequest:
		if txnOK(metadata.OpWrite, body.TransactionalID) {
			return nil, nil, true
		}
		resp := body.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = errTxnAuth
		return resp, nil, true
	case *kmsg.TxnOffsetCommitRequest:
		code := int16(0)
		switch {
		case !txnOK(metadata.OpWrite, body.TransactionalID):
			code = errTxnAuth
		case !s.allowed(ctx, metadata.OpRead, metadata.ResourceGroup, body.Group):
			code = errGroupAuth
		default:
			for _, t := range body.Topics {
				if !topicOK(metadata.OpRead, t.Topic) {
					code = errTopicAuth
				}
			}
		}
		if code == 0 {
			return nil, nil, true
		}
		resp := body.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, t := range body.Topics {
			rt := kmsg.NewTxnOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	case *kmsg.WriteTxnMarkersRequest:
		if s.allowedCluster(ctx, metadata.OpClusterAction) {
			return nil, nil, true
		}
		resp := body.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
		for _, m := range body.Markers {
			rm := kmsg.NewWriteTxnMarkersResponseMarker()
			rm.ProducerID = m.ProducerID
			for _, t := range m.Topics {
				rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
					rp.Partition, rp.ErrorCode = p, errClusterAuth
					rt.Partitions = append(rt.Partitions, rp)
				}
				rm.Topics = append(rm.Topics, rt)
			}
			resp.Markers = append(resp.Markers, rm)
		}
		return resp, nil, true
	case *kmsg.DescribeProducersRequest:
		refused := false
		for _, t := range body.Topics {
			refused = refused || !topicOK(metadata.OpRead, t.Topic)
		}
		if !refused {
			return nil, nil, true
		}
		resp := body.ResponseKind().(*kmsg.DescribeProducersResponse)
		for _, t := range body.Topics {
			rt := kmsg.NewDescribeProducersResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewDescribeProducersResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, errTopicAuth
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	case *kmsg.DescribeTransactionsRequest:
		var refused []kmsg.DescribeTransactionsResponseTransactionState
		var kept []string
		for _, id := range body.TransactionalIDs {
			if txnOK(metadata.OpDescribe, id) {
				kept = append(kept, id)
				continue
			}
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.ErrorCode, st.ProducerID, st.ProducerEpoch, st.StartTimestamp = id, errTxnAuth, -1, -1, -1
			refused = append(refused, st)
		}
		body.TransactionalIDs = kept
		return nil, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeTransactionsResponse)
			resp.TransactionStates = append(resp.TransactionStates, refused...)
		}, true
	case *kmsg.ListTransactionsRequest:
		return nil, func(r kmsg.Response) {
			resp := r.(*kmsg.ListTransactionsResponse)
			kept := resp.TransactionStates[:0]
			for _, st := range resp.TransactionStates {
				if s.allowedQuiet(ctx, metadata.OpDescribe, metadata.ResourceTransactionalID, st.TransactionalID) {
					kept = append(kept, st)
				}
			}
			resp.TransactionStates = kept
		}, true
	}
	return nil, nil, false
}

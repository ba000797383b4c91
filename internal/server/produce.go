package server

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/group"
	"strand/internal/record"
	"strand/internal/replica"
)

// errTransactionsUnsupported rejects transactional produce until the
// transaction coordinator exists.
var errTransactionsUnsupported = errors.New("transactional produce is not supported yet")

// handleProduce appends every partition's records in request order, then
// returns a continuation that waits for durability (acks=1/all) and builds the
// response. With acks=0 the continuation sends nothing.
func (s *Server) handleProduce(_ context.Context, req *kmsg.ProduceRequest) func() kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	type pending struct {
		p   *replica.Partition
		out *kmsg.ProduceResponseTopicPartition
		end int64
	}
	var waits []pending
	badAcks := req.Acks != 0 && req.Acks != 1 && req.Acks != -1
	now := time.Now()
	for _, rt := range req.Topics {
		topic := kmsg.NewProduceResponseTopic()
		topic.Topic = rt.Topic
		topic.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			out := &topic.Partitions[i]
			*out = kmsg.NewProduceResponseTopicPartition()
			out.Partition = rp.Partition
			out.BaseOffset, out.LogAppendTime, out.LogStartOffset = -1, -1, -1
			if badAcks {
				out.ErrorCode = kerr.InvalidRequiredAcks.Code
				continue
			}
			if rt.Topic == group.Topic {
				// Only the group coordinator writes to its internal topic.
				out.ErrorCode = kerr.InvalidTopicException.Code
				out.ErrorMessage = kmsg.StringPtr("cannot append to internal topic " + rt.Topic)
				continue
			}
			p, code := s.leaderPartition(rt.Topic, rp.Partition)
			if code != 0 {
				out.ErrorCode = code
				continue
			}
			res, err := s.appendRecords(p, rp.Records, req.TransactionID != nil, now)
			if err != nil {
				out.ErrorCode, out.ErrorMessage = errorCode(err), errorMessage(err)
				if out.ErrorCode == kerr.KafkaStorageError.Code {
					s.logger.Error("produce", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
				continue
			}
			out.BaseOffset, out.LogAppendTime, out.LogStartOffset = res.BaseOffset, res.LogAppendTime, p.LogStartOffset()
			waits = append(waits, pending{p, out, res.LastOffset + 1})
		}
		resp.Topics = append(resp.Topics, topic)
	}
	if req.Acks == 0 {
		// No response; but, as Kafka does, hang up on an error so that the
		// client refreshes its metadata.
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return func() kmsg.Response { return hangUp }
				}
			}
		}
		return func() kmsg.Response { return nil }
	}
	return func() kmsg.Response {
		for _, w := range waits {
			if err := w.p.WaitDurable(w.end); err != nil {
				s.logger.Error("flush failed; answering KAFKA_STORAGE_ERROR", "topic", w.p.Topic, "partition", w.p.Index, "err", err)
				w.out.ErrorCode, w.out.ErrorMessage = kerr.KafkaStorageError.Code, errorMessage(err)
				w.out.BaseOffset = -1
			}
		}
		return resp
	}
}

func (s *Server) appendRecords(p *replica.Partition, records []byte, transactional bool, now time.Time) (replica.AppendResult, error) {
	if transactional {
		return replica.AppendResult{}, errTransactionsUnsupported
	}
	if len(records) == 0 {
		return replica.AppendResult{}, record.ErrInvalid
	}
	return p.Append(records, now)
}

package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/group"
	"strand/internal/log"
	"strand/internal/metrics"
	"strand/internal/record"
	"strand/internal/replica"
	"strand/internal/txn/coordinator"
)

// handleProduce appends every partition's records in request order, then
// returns a continuation that waits and builds the response: for acks=1 until
// the records are as durable as the flush policy asks; for acks=all also
// until the high watermark passes them (every ISR member has them), at most
// the request's timeout (REQUEST_TIMED_OUT). acks=all is refused before the
// append with NOT_ENOUGH_REPLICAS while the ISR is smaller than
// min.insync.replicas, and answered NOT_ENOUGH_REPLICAS_AFTER_APPEND if it
// shrank below it by the time the HW passed the records, or
// NOT_LEADER_OR_FOLLOWER if this node lost the leadership meanwhile. With
// acks=0 the continuation sends nothing.
func (s *Server) handleProduce(ctx context.Context, req *kmsg.ProduceRequest) func() kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	type pending struct {
		p     *replica.Partition
		out   *kmsg.ProduceResponseTopicPartition
		end   int64
		epoch int32
	}
	var waits []pending
	badAcks := req.Acks != 0 && req.Acks != 1 && req.Acks != -1
	now := time.Now()
	deadline := now.Add(time.Duration(req.TimeoutMillis) * time.Millisecond)
	for _, rt := range req.Topics {
		topic := kmsg.NewProduceResponseTopic()
		topic.Topic = rt.Topic
		topic.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		var rules *produceRules  // the topic's, computed for its first led partition
		var nRecords, nBytes int // appended to the topic, counted once per topic
		for i, rp := range rt.Partitions {
			out := &topic.Partitions[i]
			*out = kmsg.NewProduceResponseTopicPartition()
			out.Partition = rp.Partition
			out.BaseOffset, out.LogAppendTime, out.LogStartOffset = -1, -1, -1
			if badAcks {
				out.ErrorCode = kerr.InvalidRequiredAcks.Code
				continue
			}
			if rt.Topic == group.Topic || rt.Topic == coordinator.Topic {
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
			if rules == nil {
				rules = s.produceRules(rt.Topic, now)
			}
			res, err := s.appendRecords(p, rp.Records, req.TransactionID != nil, now, req.Acks, rules)
			if err != nil {
				out.ErrorCode, out.ErrorMessage = produceErrorCode(err), errorMessage(err)
				out.ErrorRecords = recordErrors(err)
				if out.ErrorCode == kerr.KafkaStorageError.Code {
					s.logger.Error("produce", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
				continue
			}
			out.BaseOffset, out.LogAppendTime, out.LogStartOffset = res.BaseOffset, res.LogAppendTime, p.LogStartOffset()
			nRecords, nBytes = nRecords+producedRecords(res), nBytes+len(rp.Records)
			waits = append(waits, pending{p, out, res.LastOffset + 1, res.LeaderEpoch})
		}
		if nBytes > 0 {
			metrics.Produced(rt.Topic, nRecords, nBytes)
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
	// The flushes start now, not when the continuation runs: a
	// connection runs its continuations one after another, and the
	// records of a request pipelined behind one that waits for
	// replication would otherwise wait for that replication before even
	// their fsync started. Every partition's fsync is issued at once
	// (each log's group commit lets one fsync cover all appends written
	// before it started), so a request to many partitions waits about
	// one fsync, not one per partition; the partitions of one log dir
	// share one syncfs(2) when there are log.flush.syncfs.min.partitions
	// of them.
	var durable []error
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		if maxConcurrentFlushes > 1 {
			parts, ends := make([]*replica.Partition, len(waits)), make([]int64, len(waits))
			for i, w := range waits {
				parts[i], ends[i] = w.p, w.end
			}
			durable = replica.WaitDurableAll(parts, ends)
			return
		}
		// The benchmark's baseline: one partition at a time.
		durable = make([]error, len(waits))
		for i, w := range waits {
			durable[i] = w.p.WaitDurable(w.end)
		}
	}()
	return func() kmsg.Response {
		if req.Acks == -1 {
			defer metrics.Waiting(metrics.ProducePurgatory)()
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		<-flushed
		for i, w := range waits {
			if err := durable[i]; err != nil {
				s.logger.Error("flush failed; answering KAFKA_STORAGE_ERROR", "topic", w.p.Topic, "partition", w.p.Index, "err", err)
				w.out.ErrorCode, w.out.ErrorMessage = kerr.KafkaStorageError.Code, errorMessage(err)
				w.out.BaseOffset = -1
				continue
			}
			if req.Acks != -1 {
				continue
			}
			// Sequential waits cost no more than the slowest one: each
			// waits for a watermark that advances on its own.
			if err := w.p.WaitReplicated(wctx, w.end, w.epoch); err != nil {
				w.out.ErrorCode, w.out.ErrorMessage = produceErrorCode(err), errorMessage(err)
				w.out.BaseOffset = -1
			}
		}
		return resp
	}
}

// maxConcurrentFlushes is 1 only in the benchmark, to compare with the
// former one-partition-at-a-time fsyncs; otherwise every partition of a
// request waits at once (replica.WaitDurableAll).
var maxConcurrentFlushes = 64

// produceErrorCode maps an append or replication error to its Kafka code.
func produceErrorCode(err error) int16 {
	switch {
	case errors.Is(err, replica.ErrNotLeader):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, replica.ErrNotEnoughReplicas):
		return kerr.NotEnoughReplicas.Code
	case errors.Is(err, replica.ErrNotEnoughReplicasAfterAppend):
		return kerr.NotEnoughReplicasAfterAppend.Code
	}
	return errorCode(err) // a deadline becomes REQUEST_TIMED_OUT
}

// appendRecords checks every batch of records against max.message.bytes,
// then with record.CheckProduce (outside any lock: decompression is the
// expensive part), and appends them; nothing is appended if one batch is
// refused.
func (s *Server) appendRecords(p *replica.Partition, records []byte, transactional bool, now time.Time, acks int16, rules *produceRules) (replica.AppendResult, error) {
	if len(records) == 0 {
		return replica.AppendResult{}, record.ErrInvalid
	}
	err := record.Split(records, func(b []byte) error {
		if int64(len(b)) > rules.maxMessageBytes {
			return fmt.Errorf("%w: batch of %d bytes exceeds max.message.bytes %d", log.ErrMessageTooLarge, len(b), rules.maxMessageBytes)
		}
		_, err := record.CheckProduce(b, rules.ProduceRules)
		return err
	})
	if err != nil {
		return replica.AppendResult{}, err
	}
	return p.AppendAcks(records, now, acks)
}

// produceRules are the checks of a topic's produced batches.
type produceRules struct {
	maxMessageBytes int64 // max.message.bytes: checked first, before any decompression
	record.ProduceRules
}

// produceRules returns the checks of topic's current configuration:
// max.message.bytes, message.max.decompressed.bytes, keys on compacted
// topics, the timestamp window of CreateTime topics.
func (s *Server) produceRules(topic string, now time.Time) *produceRules {
	dyn := s.dyn()
	var overrides map[string]string
	if t, ok := s.store.Image().Topic(topic); ok {
		overrides = t.Configs
	}
	tc := dyn.TopicConfig(overrides)
	return &produceRules{maxMessageBytes: tc.Int("max.message.bytes"), ProduceRules: record.ProduceRules{
		MaxDecompressedBytes: dyn.Int("message.max.decompressed.bytes"),
		RequireKeys:          tc.HasPolicy("compact"),
		Now:                  now.UnixMilli(),
		BeforeMaxMs:          tc.Int("message.timestamp.before.max.ms"),
		AfterMaxMs:           tc.Int("message.timestamp.after.max.ms"),
		LogAppendTime:        tc.String("message.timestamp.type") == "LogAppendTime",
	}}
}

// recordErrors lists the refused records of a *record.BatchError as
// Produce v8+ RecordErrors (kmsg ErrorRecords; the index is the record's position in its
// batch); nil for other errors.
func recordErrors(err error) []kmsg.ProduceResponseTopicPartitionErrorRecord {
	var be *record.BatchError
	if !errors.As(err, &be) {
		return nil
	}
	out := make([]kmsg.ProduceResponseTopicPartitionErrorRecord, len(be.Records))
	for i, r := range be.Records {
		out[i] = kmsg.NewProduceResponseTopicPartitionErrorRecord()
		out[i].RelativeOffset, out[i].ErrorMessage = r.Index, kmsg.StringPtr(r.Message)
	}
	return out
}

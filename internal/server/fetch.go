package server

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/log"
	"strand/internal/replica"
)

// handleFetch reads from every requested partition, long-polling until MinBytes
// are available, MaxWaitMillis passes, an error is to be reported, or the
// connection ends. Fetch sessions (KIP-227) are not kept: every response is a
// full one with session id 0, which clients treat as "no session".
func (s *Server) handleFetch(ctx context.Context, req *kmsg.FetchRequest) kmsg.Response {
	if req.SessionID != 0 || req.SessionEpoch > 0 {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp
	}
	wake := make(chan struct{}, 1)
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			if p, ok := s.parts.Get(rt.Topic, rp.Partition); ok {
				defer p.Watch(wake)()
			}
		}
	}
	maxWait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	for {
		resp, n, done := s.fetchOnce(req)
		if done || n >= int(req.MinBytes) || maxWait <= 0 {
			return resp
		}
		select {
		case <-wake:
		case <-timer.C:
			resp, _, _ = s.fetchOnce(req)
			return resp
		case <-ctx.Done():
			return resp
		}
	}
}

// fetchOnce builds a response from what is readable now. It returns the bytes
// of records it holds and whether the fetch should answer at once (an error).
func (s *Server) fetchOnce(req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	maxTotal := int(req.MaxBytes)
	if req.Version < 3 || maxTotal <= 0 {
		maxTotal = 50 << 20
	}
	total, done := 0, false
	for _, rt := range req.Topics {
		topic := kmsg.NewFetchResponseTopic()
		topic.Topic, topic.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			out := kmsg.NewFetchResponseTopicPartition()
			out.Partition = rp.Partition
			out.HighWatermark, out.LastStableOffset, out.LogStartOffset = -1, -1, -1
			out.PreferredReadReplica = -1
			// An empty record set is encoded as zero bytes, never null:
			// librdkafka rejects a null MessageSetSize.
			out.RecordBatches = []byte{}
			p, code := s.leaderPartition(rt.Topic, rp.Partition)
			if code != 0 {
				out.ErrorCode, done = code, true
				topic.Partitions = append(topic.Partitions, out)
				continue
			}
			hw := p.HighWatermark()
			out.HighWatermark, out.LastStableOffset, out.LogStartOffset = hw, hw, p.LogStartOffset()
			if code := checkLeaderEpoch(p, rp.CurrentLeaderEpoch); code != 0 {
				out.ErrorCode, done = code, true
				topic.Partitions = append(topic.Partitions, out)
				continue
			}
			limit := int(rp.PartitionMaxBytes)
			if room := maxTotal - total; limit > room {
				limit = room
			}
			if limit > 0 || total == 0 {
				batches, err := p.Read(rp.FetchOffset, limit, total == 0)
				switch {
				case errors.Is(err, log.ErrOffsetOutOfRange):
					out.ErrorCode, done = kerr.OffsetOutOfRange.Code, true
				case err != nil:
					s.logger.Error("fetch read failed", "topic", rt.Topic, "partition", rp.Partition, "offset", rp.FetchOffset, "err", err)
					out.ErrorCode, done = kerr.KafkaStorageError.Code, true
				case len(batches) > 0:
					out.RecordBatches = batches
					total += len(batches)
				}
			}
			topic.Partitions = append(topic.Partitions, out)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	return resp, total, done
}

func (s *Server) handleListOffsets(req *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		topic := kmsg.NewListOffsetsResponseTopic()
		topic.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			out := kmsg.NewListOffsetsResponseTopicPartition()
			out.Partition = rp.Partition
			out.Timestamp, out.Offset, out.LeaderEpoch = -1, -1, -1
			p, code := s.leaderPartition(rt.Topic, rp.Partition)
			if code != 0 {
				out.ErrorCode = code
			} else if code := checkLeaderEpoch(p, rp.CurrentLeaderEpoch); code != 0 {
				out.ErrorCode = code
			} else {
				out.ErrorCode = listOffset(p, rp.Timestamp, &out)
			}
			topic.Partitions = append(topic.Partitions, out)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	return resp
}

// ListOffsets special timestamps.
const (
	latestTimestamp        = -1
	earliestTimestamp      = -2
	maxTimestamp           = -3
	earliestLocalTimestamp = -4
)

func listOffset(p *replica.Partition, ts int64, out *kmsg.ListOffsetsResponseTopicPartition) int16 {
	hw := p.HighWatermark()
	switch ts {
	case latestTimestamp:
		out.Offset, out.LeaderEpoch = hw, p.LeaderEpoch() // Kafka: the current epoch
	case earliestTimestamp, earliestLocalTimestamp:
		start := p.LogStartOffset()
		out.Offset, out.LeaderEpoch = start, p.EpochForOffset(start)
	case maxTimestamp:
		t, off := p.Log().MaxTimestamp()
		if off >= 0 && off < hw {
			out.Timestamp, out.Offset, out.LeaderEpoch = t, off, p.EpochForOffset(off)
		}
	default:
		if ts < 0 {
			return kerr.InvalidRequest.Code
		}
		off, t, err := p.Log().OffsetForTimestamp(ts)
		if err != nil {
			return errorCode(err)
		}
		if off >= 0 && off < hw {
			out.Timestamp, out.Offset, out.LeaderEpoch = t, off, p.EpochForOffset(off)
		}
	}
	return 0
}

// handleOffsetForLeaderEpoch answers, as the partition's leader, with the end
// offset of the requested epoch from the log's leader epoch cache (KIP-101,
// KIP-279): the largest known epoch <= the requested one and the start offset
// of the next epoch, or the log end offset for the latest epoch; -1/-1 for an
// epoch the log does not know. A CurrentLeaderEpoch below the partition's is
// FENCED_LEADER_EPOCH, above it UNKNOWN_LEADER_EPOCH.
func (s *Server) handleOffsetForLeaderEpoch(req *kmsg.OffsetForLeaderEpochRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		topic := kmsg.NewOffsetForLeaderEpochResponseTopic()
		topic.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			out := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			out.Partition, out.LeaderEpoch, out.EndOffset = rp.Partition, -1, -1
			p, code := s.leaderPartition(rt.Topic, rp.Partition)
			switch {
			case code != 0:
				out.ErrorCode = code
			case checkLeaderEpoch(p, rp.CurrentLeaderEpoch) != 0:
				out.ErrorCode = checkLeaderEpoch(p, rp.CurrentLeaderEpoch)
			default:
				out.LeaderEpoch, out.EndOffset = p.EndOffsetForEpoch(rp.LeaderEpoch)
			}
			topic.Partitions = append(topic.Partitions, out)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	return resp
}

package server

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/log"
	"strand/internal/metrics"
	"strand/internal/record"
	"strand/internal/replica"
)

// handleFetch reads from every requested partition, long-polling until MinBytes
// are available, MaxWaitMillis passes, an error is to be reported, or the
// connection ends. Fetch sessions (KIP-227) are applied around it
// (fetchWithSession, fetchsession.go): req lists every partition to read.
// A consumer's session is served by fetchTracked instead
// (fetchsession_track.go), the same loop reading only changed partitions.
//
// A fetch with a replica id (>= 0) comes from a follower: every partition
// must be led here and have that replica; the follower reads up to the log
// end offset rather than the high watermark, its fetch offset is recorded as
// its log end offset (which may advance the HW, see
// replica.Partition.UpdateFollower), and a last fetched epoch that diverges
// from this log is answered with DivergingEpoch instead of records.
//
// A consumer's fetch (v11+) may also be served by a follower, and the
// leader may answer it with a preferred read replica (KIP-392, readreplica.go).
func (s *Server) handleFetch(ctx context.Context, req *kmsg.FetchRequest) kmsg.Response {
	wake := make(chan struct{}, 1)
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			if p, ok := s.parts.Get(rt.Topic, rp.Partition); ok {
				defer p.Watch(wake)()
			}
		}
	}
	replicaID := req.ReplicaID // the field of v0-v14 (v15+ are not supported)
	maxWait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	defer metrics.Waiting(metrics.FetchPurgatory)()
	files := sendFilesOf(ctx) // nil: the connection copies (fetchfiles.go)
	for first := true; ; first = false {
		resp, n, done := s.fetchOnce(req, replicaID, first, files)
		if done || n >= int(req.MinBytes) || maxWait <= 0 {
			return resp
		}
		select {
		case <-wake:
			files.drop(resp)
		case <-timer.C:
			files.drop(resp)
			resp, _, _ = s.fetchOnce(req, replicaID, false, files)
			return resp
		case <-ctx.Done():
			return resp
		}
	}
}

// fetchOnce builds a response from what is readable now. It returns the bytes
// of records it holds and whether the fetch should answer at once (an error
// or a diverging epoch). replicaID is the fetching follower (-1: a
// consumer); first marks the first pass of a fetch, which records the
// follower's position. With files, record sets are read for sending from
// their files (fetchfiles.go), except read_committed ones.
func (s *Server) fetchOnce(req *kmsg.FetchRequest, replicaID int32, first bool, files *sendFiles) (*kmsg.FetchResponse, int, bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	maxTotal := int(req.MaxBytes)
	if req.Version < 3 || maxTotal <= 0 {
		maxTotal = 50 << 20
	}
	total, done := 0, false
	verify := files == nil || s.dyn().Bool("fetch.verify.crc")
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
			source := s.leaderPartition
			if replicaID >= 0 {
				source = s.replicaSource
			} else if req.Version >= 11 {
				source = s.consumerSource // KIP-392, readreplica.go
			}
			p, code := source(rt.Topic, rp.Partition)
			if code == 0 && replicaID >= 0 && !p.IsReplica(replicaID) {
				code = kerr.NotLeaderForPartition.Code
			}
			if code == 0 {
				code = checkLeaderEpoch(p, rp.CurrentLeaderEpoch)
			}
			if code != 0 {
				if p != nil {
					hw := p.HighWatermark()
					out.HighWatermark, out.LastStableOffset, out.LogStartOffset = hw, hw, p.LogStartOffset()
				}
				out.ErrorCode, done = code, true
				topic.Partitions = append(topic.Partitions, out)
				continue
			}
			if replicaID >= 0 {
				if epoch, end, ok := divergence(p, rp.LastFetchedEpoch, rp.FetchOffset); ok {
					out.DivergingEpoch.Epoch, out.DivergingEpoch.EndOffset = epoch, end
					done = true
				} else if first {
					p.UpdateFollower(replicaID, rp.FetchOffset, time.Now())
				}
			}
			hw := p.HighWatermark()
			out.HighWatermark, out.LastStableOffset, out.LogStartOffset = hw, p.LastStableOffset(), p.LogStartOffset()
			if out.DivergingEpoch.EndOffset >= 0 {
				topic.Partitions = append(topic.Partitions, out)
				continue
			}
			if replicaID < 0 {
				if id := s.preferredReadReplica(p, req.Rack, rp.FetchOffset); id >= 0 {
					out.PreferredReadReplica, done = id, true // no records: read there
					topic.Partitions = append(topic.Partitions, out)
					continue
				}
			}
			limit := int(rp.PartitionMaxBytes)
			if room := maxTotal - total; limit > room {
				limit = room
			}
			if limit > 0 || total == 0 {
				read := p.Read
				if replicaID >= 0 {
					read = p.ReadReplica
				} else if req.IsolationLevel == 1 {
					read = readCommitted(p, &out) // txn.go
				}
				if files != nil && (replicaID >= 0 || req.IsolationLevel != 1) {
					read = files.reader(resp, p, replicaID >= 0, verify)
				}
				batches, err := read(rp.FetchOffset, limit, total == 0)
				switch {
				case errors.Is(err, log.ErrOffsetOutOfRange):
					out.ErrorCode, done = kerr.OffsetOutOfRange.Code, true
				case errors.Is(err, record.ErrCorrupt):
					// Damaged on disk: an error clients surface (librdkafka
					// retries KAFKA_STORAGE_ERROR silently, stalling).
					p.ReadFailed(rp.FetchOffset, err)
					out.ErrorCode, done = kerr.CorruptMessage.Code, true
				case err != nil:
					p.ReadFailed(rp.FetchOffset, err)
					out.ErrorCode, done = kerr.KafkaStorageError.Code, true
				case len(batches) > 0:
					out.RecordBatches = batches
					n := files.recordsLen(resp, batches) // a stub stands for more (fetchfiles.go)
					total += n
					metrics.Fetched(rt.Topic, n, replicaID >= 0)
				}
			}
			topic.Partitions = append(topic.Partitions, out)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	return resp, total, done
}

// divergence reports whether a follower's log diverges from this leader's
// (KIP-595's check in Fetch): its last fetched epoch is unknown here (the
// largest epoch at or below it is lower) or ends here before its fetch
// offset. It returns that largest epoch and where it ends, which the
// follower truncates to. An undefined answer (-1) is left to the follower's
// OffsetForLeaderEpoch reconciliation.
func divergence(p *replica.Partition, lastFetchedEpoch int32, fetchOffset int64) (int32, int64, bool) {
	if lastFetchedEpoch < 0 {
		return 0, 0, false
	}
	epoch, end := p.EndOffsetForEpoch(lastFetchedEpoch)
	if epoch < 0 || end < 0 {
		return 0, 0, false
	}
	if epoch < lastFetchedEpoch || end < fetchOffset {
		return epoch, end, true
	}
	return 0, 0, false
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
				out.ErrorCode = listOffset(p, rp.Timestamp, req.IsolationLevel == 1, &out)
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

func listOffset(p *replica.Partition, ts int64, readCommitted bool, out *kmsg.ListOffsetsResponseTopicPartition) int16 {
	hw := p.HighWatermark()
	if readCommitted {
		hw = p.LastStableOffset() // read_committed consumers see up to the LSO
	}
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
			source := s.leaderPartition
			if req.ReplicaID >= 0 {
				source = s.replicaSource // a follower reconciling (see replicaSource)
			}
			p, code := source(rt.Topic, rp.Partition)
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

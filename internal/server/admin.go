package server

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/group"
	"strand/internal/metadata"
)

func (s *Server) handleCreateTopics(ctx context.Context, req *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		out := kmsg.NewCreateTopicsResponseTopic()
		out.Topic = rt.Topic
		out.NumPartitions, out.ReplicationFactor = -1, -1
		out.ConfigErrorCode = 0
		if seen[rt.Topic] > 1 {
			out.ErrorCode = kerr.InvalidRequest.Code
			out.ErrorMessage = kmsg.StringPtr("topic " + rt.Topic + " appears more than once in the request")
			resp.Topics = append(resp.Topics, out)
			continue
		}
		c, err := s.createSpec(rt)
		if err == nil {
			if req.ValidateOnly {
				err = s.validateCreate(c)
			} else {
				var t *metadata.Topic
				if t, err = s.store.CreateTopic(ctx, c); err == nil {
					out.TopicID = t.ID
					s.logger.Info("created topic", "topic", t.Name, "partitions", len(t.Partitions), "id", t.ID.String())
				}
			}
		}
		if err != nil {
			out.ErrorCode, out.ErrorMessage = errorCode(err), errorMessage(err)
		} else {
			out.NumPartitions = c.Partitions
			out.ReplicationFactor = c.ReplicationFactor
			if c.Assignment != nil {
				out.NumPartitions, out.ReplicationFactor = int32(len(c.Assignment)), int16(len(c.Assignment[0]))
			}
			out.Configs = describeTopicConfigsForCreate(s.dyn().TopicConfig(c.Configs))
		}
		resp.Topics = append(resp.Topics, out)
	}
	return resp
}

// createSpec turns a request entry into a validated CreateTopic, applying defaults (-1).
func (s *Server) createSpec(rt kmsg.CreateTopicsRequestTopic) (metadata.CreateTopic, error) {
	c := metadata.CreateTopic{Name: rt.Topic, Partitions: rt.NumPartitions, ReplicationFactor: rt.ReplicationFactor}
	c.Internal = rt.Topic == group.Topic // as Kafka, which marks internal topics by name
	if err := metadata.ValidateTopicName(rt.Topic); err != nil {
		return c, err
	}
	if len(rt.ReplicaAssignment) > 0 {
		if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
			return c, fmt.Errorf("%w: give either a replica assignment or partitions and replication factor, not both", metadata.ErrInvalidAssignment)
		}
		c.Assignment = make([][]int32, len(rt.ReplicaAssignment))
		for _, a := range rt.ReplicaAssignment {
			if a.Partition < 0 || int(a.Partition) >= len(c.Assignment) || c.Assignment[a.Partition] != nil {
				return c, fmt.Errorf("%w: partitions must be numbered 0..%d once each", metadata.ErrInvalidAssignment, len(c.Assignment)-1)
			}
			c.Assignment[a.Partition] = a.Replicas
		}
	}
	if c.Partitions == -1 {
		c.Partitions = int32(s.dyn().Int("num.partitions"))
	}
	if c.ReplicationFactor == -1 {
		c.ReplicationFactor = int16(s.replicationDefault())
	}
	if len(rt.Configs) > 0 {
		c.Configs = map[string]string{}
		for _, kv := range rt.Configs {
			if kv.Value == nil {
				continue
			}
			c.Configs[kv.Name] = *kv.Value
		}
		if err := config.ValidateTopicConfigs(c.Configs); err != nil {
			return c, fmt.Errorf("%w: %v", metadata.ErrInvalidConfig, err)
		}
	}
	return c, nil
}

// validateCreate checks a create without applying it (ValidateOnly).
func (s *Server) validateCreate(c metadata.CreateTopic) error {
	img := s.store.Image()
	if _, ok := img.Topic(c.Name); ok {
		return fmt.Errorf("%w: %s", metadata.ErrTopicExists, c.Name)
	}
	if other, ok := img.CollidingTopic(c.Name); ok {
		return fmt.Errorf("%w: topic '%s' collides with existing topic: %s", metadata.ErrInvalidTopic, c.Name, other)
	}
	if c.Assignment == nil {
		if c.Partitions < 1 {
			return fmt.Errorf("%w: %d", metadata.ErrInvalidPartitions, c.Partitions)
		}
		if live := len(img.LiveBrokers()); c.ReplicationFactor < 1 || int(c.ReplicationFactor) > live {
			return fmt.Errorf("%w: %d with %d live broker(s)", metadata.ErrInvalidReplication, c.ReplicationFactor, live)
		}
	}
	return nil
}

func (s *Server) handleDeleteTopics(ctx context.Context, req *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version >= 6 {
		for _, t := range req.Topics {
			targets = append(targets, target{t.Topic, t.TopicID})
		}
	} else {
		for _, n := range req.TopicNames {
			targets = append(targets, target{kmsg.StringPtr(n), [16]byte{}})
		}
	}
	for _, t := range targets {
		out := kmsg.NewDeleteTopicsResponseTopic()
		out.Topic, out.TopicID = t.name, t.id
		img := s.store.Image()
		var topic *metadata.Topic
		var ok bool
		if t.name != nil {
			topic, ok = img.Topic(*t.name)
		} else {
			topic, ok = img.TopicByID(metadata.TopicID(t.id))
		}
		switch {
		case !s.dyn().Bool("delete.topic.enable"):
			out.ErrorCode = kerr.TopicDeletionDisabled.Code
		case !ok && t.name == nil:
			out.ErrorCode = kerr.UnknownTopicID.Code
		case !ok:
			out.ErrorCode = kerr.UnknownTopicOrPartition.Code
		case topic.Internal:
			out.ErrorCode = kerr.InvalidTopicException.Code
			out.ErrorMessage = kmsg.StringPtr("internal topics cannot be deleted")
		default:
			name := topic.Name
			out.Topic, out.TopicID = &name, topic.ID
			if _, err := s.store.DeleteTopic(ctx, name); err != nil {
				out.ErrorCode, out.ErrorMessage = errorCode(err), errorMessage(err)
			} else {
				s.logger.Info("deleted topic", "topic", name)
			}
		}
		resp.Topics = append(resp.Topics, out)
	}
	return resp
}

func (s *Server) handleCreatePartitions(ctx context.Context, req *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, rt := range req.Topics {
		out := kmsg.NewCreatePartitionsResponseTopic()
		out.Topic = rt.Topic
		var assign [][]int32
		for _, a := range rt.Assignment {
			assign = append(assign, a.Replicas)
		}
		var err error
		t, ok := s.store.Image().Topic(rt.Topic)
		switch {
		case !ok:
			err = fmt.Errorf("%w: %s", metadata.ErrUnknownTopic, rt.Topic)
		case rt.Count <= int32(len(t.Partitions)):
			err = fmt.Errorf("%w: topic %s has %d partitions; the new count %d must be larger", metadata.ErrInvalidPartitions, rt.Topic, len(t.Partitions), rt.Count)
		case req.ValidateOnly:
		default:
			err = s.store.CreatePartitions(ctx, rt.Topic, rt.Count, assign)
		}
		out.ErrorCode, out.ErrorMessage = errorCode(err), errorMessage(err)
		resp.Topics = append(resp.Topics, out)
	}
	return resp
}

func (s *Server) handleDeleteRecords(req *kmsg.DeleteRecordsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		topic := kmsg.NewDeleteRecordsResponseTopic()
		topic.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			out := kmsg.NewDeleteRecordsResponseTopicPartition()
			out.Partition, out.LowWatermark = rp.Partition, -1
			p, code := s.leaderPartition(rt.Topic, rp.Partition)
			switch {
			case code != 0:
				out.ErrorCode = code
			default:
				off := rp.Offset
				if off == -1 {
					off = p.HighWatermark()
				}
				if off < 0 || off > p.HighWatermark() {
					out.ErrorCode = kerr.OffsetOutOfRange.Code
					break
				}
				if err := p.Log().DeleteRecordsBefore(off); err != nil {
					out.ErrorCode = errorCode(err)
					break
				}
				out.LowWatermark = p.LogStartOffset()
			}
			topic.Partitions = append(topic.Partitions, out)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	return resp
}

// handleInitProducerID gives an idempotent producer a fresh id (epoch 0).
// With a transactional id it goes to the transaction coordinator (txn.go).
func (s *Server) handleInitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	id, err := s.pids.Next(ctx)
	if err != nil {
		s.logger.Warn("allocating producer id", "err", err)
		resp.ErrorCode = errorCode(err)
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}

// handleElectLeaders runs preferred (type 0) or unclean (type 1) elections
// through the active controller; null topics means every partition.
func (s *Server) handleElectLeaders(ctx context.Context, req *kmsg.ElectLeadersRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ElectLeadersResponse)
	if req.ElectionType != 0 && req.ElectionType != 1 {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	topics := req.Topics
	if topics == nil {
		img := s.store.Image()
		for _, name := range img.TopicNames() {
			rt := kmsg.NewElectLeadersRequestTopic()
			rt.Topic = name
			for _, p := range img.Topics[name].Partitions {
				rt.Partitions = append(rt.Partitions, p.Index)
			}
			topics = append(topics, rt)
		}
	}
	ctx, cancel := withRequestTimeout(ctx, req.TimeoutMillis)
	defer cancel()
	for _, rt := range topics {
		out := kmsg.NewElectLeadersResponseTopic()
		out.Topic = rt.Topic
		for _, p := range rt.Partitions {
			po := kmsg.NewElectLeadersResponseTopicPartition()
			po.Partition = p
			if err := s.store.ElectLeaders(ctx, rt.Topic, p, req.ElectionType == 0); err != nil {
				po.ErrorCode = errorCode(err)
				msg := err.Error()
				po.ErrorMessage = &msg
			}
			out.Partitions = append(out.Partitions, po)
		}
		resp.Topics = append(resp.Topics, out)
	}
	return resp
}

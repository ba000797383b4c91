package server

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/security"
)

// Controller mutation quotas (KIP-599): CreateTopics, CreatePartitions and
// DeleteTopics count the partitions they create or delete against the
// client's controller_mutation_rate. As Kafka: a request is throttled
// (throttle_time_ms, the connection muted) once the rate is above the
// quota; clients new enough to know THROTTLING_QUOTA_EXCEEDED (CreateTopics
// v6+, CreatePartitions v3+, DeleteTopics v5+) have each topic refused with
// it while the quota is already exceeded, older ones are only throttled.

// limitMutations applies the controller mutation quota to req, whose
// authorization fix-up is fix (and caps a quota'd consumer's fetch, see
// capFetch). It returns the request's answer when every topic is refused,
// else the fix-up to use.
func (s *Server) limitMutations(ctx context.Context, req *protocol.Request, fix func(kmsg.Response)) (kmsg.Response, func(kmsg.Response)) {
	var strict bool
	switch body := req.Body.(type) {
	case *kmsg.FetchRequest:
		s.capFetch(ctx, body)
		return nil, fix
	case *kmsg.CreateTopicsRequest:
		if body.ValidateOnly {
			return nil, fix
		}
		strict = body.Version >= 6
	case *kmsg.CreatePartitionsRequest:
		if body.ValidateOnly {
			return nil, fix
		}
		strict = body.Version >= 3
	case *kmsg.DeleteTopicsRequest:
		strict = body.Version >= 5
	default:
		return nil, fix
	}
	img := s.store.Image()
	lim, ok := security.LookupQuota(img.ClientQuotas, security.ControllerMutationRate,
		security.SessionFrom(ctx).Principal.Name, clientID(ctx))
	if !ok {
		return nil, fix
	}
	now := time.Now()
	q := s.sec.quotas
	// admit records a topic's mutations, or refuses it (strict mode, the
	// quota already exceeded).
	admit := func(partitions int) bool {
		if strict && q.Record(security.ControllerMutationRate, lim, 0, now) > 0 {
			return false
		}
		q.Record(security.ControllerMutationRate, lim, float64(max(partitions, 0)), now)
		return true
	}
	refusedMsg := kmsg.StringPtr("controller mutation quota exceeded")
	var refuse func(kmsg.Response)
	var kept, refused int
	switch body := req.Body.(type) {
	case *kmsg.CreateTopicsRequest:
		var keep []kmsg.CreateTopicsRequestTopic
		var out []kmsg.CreateTopicsResponseTopic
		for _, rt := range body.Topics {
			n := int(rt.NumPartitions)
			if n < 0 {
				n = int(s.dyn().Int("num.partitions"))
				if len(rt.ReplicaAssignment) > 0 {
					n = len(rt.ReplicaAssignment)
				}
			}
			if admit(n) {
				keep = append(keep, rt)
				continue
			}
			t := kmsg.NewCreateTopicsResponseTopic()
			t.Topic, t.ErrorCode, t.ErrorMessage = rt.Topic, kerr.ThrottlingQuotaExceeded.Code, refusedMsg
			t.NumPartitions, t.ReplicationFactor = -1, -1
			out = append(out, t)
		}
		body.Topics, kept, refused = keep, len(keep), len(out)
		refuse = func(r kmsg.Response) {
			resp := r.(*kmsg.CreateTopicsResponse)
			resp.Topics = append(resp.Topics, out...)
		}
	case *kmsg.CreatePartitionsRequest:
		var keep []kmsg.CreatePartitionsRequestTopic
		var out []kmsg.CreatePartitionsResponseTopic
		for _, rt := range body.Topics {
			n := 0
			if t, ok := img.Topic(rt.Topic); ok {
				n = int(rt.Count) - len(t.Partitions)
			}
			if admit(n) {
				keep = append(keep, rt)
				continue
			}
			t := kmsg.NewCreatePartitionsResponseTopic()
			t.Topic, t.ErrorCode, t.ErrorMessage = rt.Topic, kerr.ThrottlingQuotaExceeded.Code, refusedMsg
			out = append(out, t)
		}
		body.Topics, kept, refused = keep, len(keep), len(out)
		refuse = func(r kmsg.Response) {
			resp := r.(*kmsg.CreatePartitionsResponse)
			resp.Topics = append(resp.Topics, out...)
		}
	case *kmsg.DeleteTopicsRequest:
		partitions := func(name *string, id [16]byte) int {
			var t *metadata.Topic
			var ok bool
			if name != nil {
				t, ok = img.Topic(*name)
			} else {
				t, ok = img.TopicByID(metadata.TopicID(id))
			}
			if !ok {
				return 0
			}
			return len(t.Partitions)
		}
		var out []kmsg.DeleteTopicsResponseTopic
		reject := func(name *string, id [16]byte) {
			t := kmsg.NewDeleteTopicsResponseTopic()
			t.Topic, t.TopicID, t.ErrorCode, t.ErrorMessage = name, id, kerr.ThrottlingQuotaExceeded.Code, refusedMsg
			out = append(out, t)
		}
		if body.Version >= 6 {
			var keep []kmsg.DeleteTopicsRequestTopic
			for _, rt := range body.Topics {
				if admit(partitions(rt.Topic, rt.TopicID)) {
					keep = append(keep, rt)
				} else {
					reject(rt.Topic, rt.TopicID)
				}
			}
			body.Topics, kept = keep, len(keep)
		} else {
			var keep []string
			for _, name := range body.TopicNames {
				if admit(partitions(&name, [16]byte{})) {
					keep = append(keep, name)
				} else {
					reject(kmsg.StringPtr(name), [16]byte{})
				}
			}
			body.TopicNames, kept = keep, len(keep)
		}
		refused = len(out)
		refuse = func(r kmsg.Response) {
			resp := r.(*kmsg.DeleteTopicsResponse)
			resp.Topics = append(resp.Topics, out...)
		}
	}
	throttle := q.Record(security.ControllerMutationRate, lim, 0, now)
	muteFor(ctx, throttle)
	complete := func(r kmsg.Response) {
		if fix != nil {
			fix(r)
		}
		if refused > 0 {
			refuse(r)
		}
		setThrottle(r, throttle)
	}
	if refused > 0 && kept == 0 {
		resp := req.Body.ResponseKind()
		complete(resp)
		return resp, nil
	}
	return nil, complete
}

// setThrottle raises resp's throttle_time_ms to d (if it has one).
func setThrottle(resp kmsg.Response, d time.Duration) {
	if d <= 0 {
		return
	}
	tr, ok := resp.(kmsg.SetThrottleResponse)
	if !ok {
		return
	}
	if cur, ok := resp.(kmsg.ThrottleResponse); ok {
		if ms, _ := cur.Throttle(); int64(ms) >= d.Milliseconds() {
			return
		}
	}
	tr.SetThrottle(int32(min(d.Milliseconds(), 1<<31-1)))
}

package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/metrics"
	"strand/internal/protocol"
	"strand/internal/security"
)

// Client quotas (KIP-546): DescribeClientQuotas and AlterClientQuotas, and
// their enforcement on this broker (see security.Quotas): produce bytes
// against producer_byte_rate, consumer fetch bytes against
// consumer_byte_rate, handling time against request_percentage. A
// throttled client gets throttle_time_ms in the response and its
// connection is muted - the next request is not read - for that long.

// connMute is one connection's mute deadline (unix nanoseconds).
type connMute struct{ until atomic.Int64 }

type muteKey struct{}

// withMute gives a connection's context a mute deadline (see waitUnmuted).
func withMute(ctx context.Context) context.Context {
	return context.WithValue(ctx, muteKey{}, &connMute{})
}

// muteFor mutes the request's connection for d from now.
func muteFor(ctx context.Context, d time.Duration) {
	m, _ := ctx.Value(muteKey{}).(*connMute)
	if m == nil || d <= 0 {
		return
	}
	until := time.Now().Add(d).UnixNano()
	for {
		cur := m.until.Load()
		if cur >= until || m.until.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitUnmuted waits until the connection is no longer muted; false when
// ctx ended first.
func waitUnmuted(ctx context.Context) bool {
	m, _ := ctx.Value(muteKey{}).(*connMute)
	if m == nil {
		return true
	}
	d := time.Until(time.Unix(0, m.until.Load()))
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// enforceQuotas records a handled request against the client's quotas and
// throttles it (throttle_time_ms in resp, the connection muted) when a
// quota is exceeded. took is the handler's time on the connection's
// reader. resp may be nil (acks=0).
func (s *Server) enforceQuotas(ctx context.Context, req *protocol.Request, resp kmsg.Response, took time.Duration) {
	quotas := s.store.Image().ClientQuotas
	if len(quotas) == 0 {
		return
	}
	user, client := security.SessionFrom(ctx).Principal.Name, clientID(ctx)
	now := time.Now()
	var throttle time.Duration
	record := func(key string, v float64) (security.Limit, bool) {
		lim, ok := security.LookupQuota(quotas, key, user, client)
		if ok {
			throttle = max(throttle, s.sec.quotas.Record(key, lim, v, now))
		}
		return lim, ok
	}
	switch body := req.Body.(type) {
	case *kmsg.ProduceRequest:
		n := 0
		for _, rt := range body.Topics {
			for _, rp := range rt.Partitions {
				n += len(rp.Records)
			}
		}
		record(security.ProducerByteRate, float64(n))
	case *kmsg.FetchRequest:
		fr, ok := resp.(*kmsg.FetchResponse)
		if !ok || body.ReplicaID >= 0 {
			break // followers are not client-quota'd
		}
		n := 0
		for _, t := range fr.Topics {
			for _, p := range t.Partitions {
				n += recordsLen(ctx, fr, p.RecordBatches) // fetchfiles.go
			}
		}
		before := throttle
		if lim, ok := record(security.ConsumerByteRate, float64(n)); ok && throttle > before && n > 0 {
			// As Kafka: a throttled fetch sends no records (they are
			// fetched again after the throttle) and does not count.
			s.sec.quotas.Unrecord(security.ConsumerByteRate, lim, float64(n), now)
			for i := range fr.Topics {
				for j := range fr.Topics[i].Partitions {
					fr.Topics[i].Partitions[j].RecordBatches = []byte{}
				}
			}
		}
	}
	record(security.RequestPercentage, took.Seconds()*100)
	if throttle <= 0 {
		return
	}
	setThrottle(resp, throttle)
	muteFor(ctx, throttle)
	metrics.Throttled(req.Key, throttle)
}

// capFetch caps a consumer's fetch at what its consumer_byte_rate allows in
// one measurement span (as Kafka does), so that a single response cannot
// exceed the quota by itself.
func (s *Server) capFetch(ctx context.Context, req *kmsg.FetchRequest) {
	quotas := s.store.Image().ClientQuotas
	if len(quotas) == 0 || req.ReplicaID >= 0 {
		return
	}
	lim, ok := security.LookupQuota(quotas, security.ConsumerByteRate, security.SessionFrom(ctx).Principal.Name, clientID(ctx))
	if !ok {
		return
	}
	limit := int32(min(max(s.sec.quotas.WindowAmount(lim), 1), 1<<31-1))
	if req.MaxBytes <= 0 || req.MaxBytes > limit {
		req.MaxBytes = limit
	}
}

// Quota entity types.
const (
	entityUser     = "user"
	entityClientID = "client-id"
)

func (s *Server) handleDescribeClientQuotas(ctx context.Context, req *kmsg.DescribeClientQuotasRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	if !s.allowedCluster(ctx, metadata.OpDescribeConfigs) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	seen := map[string]bool{}
	for _, c := range req.Components {
		switch {
		case c.EntityType != entityUser && c.EntityType != entityClientID:
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("unsupported quota entity type "+c.EntityType)
			return resp
		case seen[c.EntityType]:
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("entity type "+c.EntityType+" filtered twice")
			return resp
		case c.MatchType < 0 || c.MatchType > 2:
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(fmt.Sprintf("unknown match type %d", c.MatchType))
			return resp
		}
		seen[c.EntityType] = true
	}
	resp.Entries = []kmsg.DescribeClientQuotasResponseEntry{}
	for _, q := range s.store.Image().ClientQuotas {
		if !quotaFilterMatches(req.Components, req.Strict, q.Entity) {
			continue
		}
		e := kmsg.NewDescribeClientQuotasResponseEntry()
		for _, part := range []struct {
			typ string
			p   metadata.QuotaPart
		}{{entityUser, q.Entity.User}, {entityClientID, q.Entity.ClientID}} {
			if !part.p.Set {
				continue
			}
			ent := kmsg.NewDescribeClientQuotasResponseEntryEntity()
			ent.Type = part.typ
			if !part.p.Default {
				ent.Name = kmsg.StringPtr(part.p.Name)
			}
			e.Entity = append(e.Entity, ent)
		}
		for k, v := range q.Values {
			e.Values = append(e.Values, kmsg.DescribeClientQuotasResponseEntryValue{Key: k, Value: v})
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp
}

// quotaFilterMatches applies DescribeClientQuotas components: match type 0
// is a name (null: the default), 1 the default, 2 any entity with that
// type; strict also excludes entities with types the filter does not name.
func quotaFilterMatches(components []kmsg.DescribeClientQuotasRequestComponent, strict bool, e metadata.QuotaEntity) bool {
	part := func(typ string) metadata.QuotaPart {
		if typ == entityUser {
			return e.User
		}
		return e.ClientID
	}
	named := map[string]bool{}
	for _, c := range components {
		named[c.EntityType] = true
		p := part(c.EntityType)
		if !p.Set {
			return false
		}
		switch c.MatchType {
		case 0:
			if c.Match == nil && !p.Default || c.Match != nil && (p.Default || p.Name != *c.Match) {
				return false
			}
		case 1:
			if !p.Default {
				return false
			}
		}
	}
	if strict && (e.User.Set && !named[entityUser] || e.ClientID.Set && !named[entityClientID]) {
		return false
	}
	return true
}

func (s *Server) handleAlterClientQuotas(ctx context.Context, req *kmsg.AlterClientQuotasRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterClientQuotasResponse)
	allowed := s.allowedCluster(ctx, metadata.OpAlterConfigs)
	errs := make([]error, len(req.Entries))
	var alts []metadata.QuotaAlteration
	var index []int // alts[j] is req.Entries[index[j]]
	for i, entry := range req.Entries {
		if !allowed {
			errs[i] = errClusterAuthorization
			continue
		}
		alt, err := quotaAlteration(entry)
		if err == nil {
			err = metadata.ValidateQuota(alt)
		}
		if err != nil {
			errs[i] = err
			continue
		}
		alts, index = append(alts, alt), append(index, i)
	}
	if len(alts) > 0 && !req.ValidateOnly {
		stored, err := s.store.AlterClientQuotas(ctx, alts)
		for j, i := range index {
			if err != nil {
				errs[i] = err
			} else {
				errs[i] = stored[j]
			}
		}
		if err == nil {
			s.logger.Info("altered client quotas", "entities", len(alts))
		}
	}
	for i, entry := range req.Entries {
		out := kmsg.NewAlterClientQuotasResponseEntry()
		for _, e := range entry.Entity {
			out.Entity = append(out.Entity, kmsg.AlterClientQuotasResponseEntryEntity{Type: e.Type, Name: e.Name})
		}
		out.ErrorCode, out.ErrorMessage = errorCode(errs[i]), errorMessage(errs[i])
		resp.Entries = append(resp.Entries, out)
	}
	return resp
}

// quotaAlteration turns a request entry into a metadata.QuotaAlteration:
// a user and/or client id entity (a null name is the default), each once.
func quotaAlteration(entry kmsg.AlterClientQuotasRequestEntry) (metadata.QuotaAlteration, error) {
	var alt metadata.QuotaAlteration
	for _, e := range entry.Entity {
		var p *metadata.QuotaPart
		switch e.Type {
		case entityUser:
			p = &alt.Entity.User
		case entityClientID:
			p = &alt.Entity.ClientID
		default:
			return alt, fmt.Errorf("%w: unsupported quota entity type %q", metadata.ErrInvalidRequest, e.Type)
		}
		if p.Set {
			return alt, fmt.Errorf("%w: entity type %s given twice", metadata.ErrInvalidRequest, e.Type)
		}
		p.Set = true
		if e.Name == nil {
			p.Default = true
		} else {
			p.Name = *e.Name
		}
	}
	for _, op := range entry.Ops {
		if op.Remove {
			alt.Remove = append(alt.Remove, op.Key)
			continue
		}
		if alt.Set == nil {
			alt.Set = map[string]float64{}
		}
		alt.Set[op.Key] = op.Value
	}
	return alt, nil
}

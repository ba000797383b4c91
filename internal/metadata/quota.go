package metadata

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// Client quotas (KIP-546), as Kafka stores them in the metadata log: a
// quota entity (a user, a client id, or both; each part a name or the
// default) and its quota values by key.
//
// Invariants: an image holds at most one ClientQuota per entity, never one
// with no values, and only keys of QuotaKeys with positive values.

// QuotaKeys are the quota configs a client entity may have, and whether
// each must be a whole number.
var QuotaKeys = map[string]bool{
	"producer_byte_rate":       true,
	"consumer_byte_rate":       true,
	"request_percentage":       false,
	"controller_mutation_rate": false,
}

// QuotaPart is one component of a quota entity: absent (Set false), the
// default for its type, or a name.
type QuotaPart struct {
	Set     bool   `json:",omitempty"`
	Default bool   `json:",omitempty"`
	Name    string `json:",omitempty"`
}

// QuotaEntity names whom a quota applies to.
type QuotaEntity struct {
	User     QuotaPart `json:",omitempty"`
	ClientID QuotaPart `json:",omitempty"`
}

// String is the entity as Kafka's tools print it (user=alice,client-id=<default>).
func (e QuotaEntity) String() string {
	part := func(typ string, p QuotaPart) string {
		if p.Default {
			return typ + "=<default>"
		}
		return typ + "=" + p.Name
	}
	switch {
	case e.User.Set && e.ClientID.Set:
		return part("user", e.User) + "," + part("client-id", e.ClientID)
	case e.User.Set:
		return part("user", e.User)
	default:
		return part("client-id", e.ClientID)
	}
}

// ClientQuota is one entity's quota values.
type ClientQuota struct {
	Entity QuotaEntity
	Values map[string]float64
}

// QuotaRecord sets and removes quota values of one entity.
type QuotaRecord struct {
	Entity QuotaEntity
	Set    map[string]float64 `json:",omitempty"`
	Remove []string           `json:",omitempty"`
}

// QuotaAlteration is one entity's change in AlterClientQuotas.
type QuotaAlteration = QuotaRecord

// ValidateQuota checks an alteration: an entity with a user and/or client
// id part, known keys, and positive values (whole numbers for byte rates).
func ValidateQuota(a QuotaAlteration) error {
	if !a.Entity.User.Set && !a.Entity.ClientID.Set {
		return fmt.Errorf("%w: the quota entity names neither a user nor a client id", ErrInvalidRequest)
	}
	for k, v := range a.Set {
		whole, ok := QuotaKeys[k]
		switch {
		case !ok:
			return fmt.Errorf("%w: unknown quota key %q", ErrInvalidRequest, k)
		case math.IsNaN(v) || math.IsInf(v, 0) || v <= 0:
			return fmt.Errorf("%w: %s must be positive, not %v", ErrInvalidRequest, k, v)
		case whole && v != math.Trunc(v):
			return fmt.Errorf("%w: %s must be a whole number, not %v", ErrInvalidRequest, k, v)
		}
	}
	for _, k := range a.Remove {
		if _, ok := QuotaKeys[k]; !ok {
			return fmt.Errorf("%w: unknown quota key %q", ErrInvalidRequest, k)
		}
	}
	return nil
}

// PlanAlterClientQuotas validates each alteration; errs[i] is that of
// alts[i]. Valid ones become records.
func PlanAlterClientQuotas(im *Image, alts []QuotaAlteration) ([]Record, []error) {
	errs := make([]error, len(alts))
	var recs []Record
	for i, a := range alts {
		if errs[i] = ValidateQuota(a); errs[i] != nil {
			continue
		}
		a := a
		recs = append(recs, Record{Quota: &a})
	}
	return recs, errs
}

// applyQuota returns quotas with r applied; the input is not modified
// (images share it).
func applyQuota(quotas []ClientQuota, r *QuotaRecord) []ClientQuota {
	out := make([]ClientQuota, 0, len(quotas)+1)
	values := map[string]float64{}
	for _, q := range quotas {
		if q.Entity == r.Entity {
			maps.Copy(values, q.Values)
			continue
		}
		out = append(out, q)
	}
	for _, k := range r.Remove {
		delete(values, k)
	}
	for k, v := range r.Set {
		if _, ok := QuotaKeys[k]; ok && v > 0 {
			values[k] = v
		}
	}
	if len(values) > 0 {
		out = append(out, ClientQuota{Entity: r.Entity, Values: values})
	}
	return out
}

// Quota returns an entity's quota values (nil when it has none).
func (im *Image) Quota(e QuotaEntity) map[string]float64 {
	i := slices.IndexFunc(im.ClientQuotas, func(q ClientQuota) bool { return q.Entity == e })
	if i < 0 {
		return nil
	}
	return im.ClientQuotas[i].Values
}

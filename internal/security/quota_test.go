package security

import (
	"testing"
	"time"

	"strand/internal/metadata"
)

func TestLookupQuotaPrecedence(t *testing.T) {
	name := func(n string) metadata.QuotaPart { return metadata.QuotaPart{Set: true, Name: n} }
	def := metadata.QuotaPart{Set: true, Default: true}
	none := metadata.QuotaPart{}
	q := func(u, c metadata.QuotaPart, v float64) metadata.ClientQuota {
		return metadata.ClientQuota{Entity: metadata.QuotaEntity{User: u, ClientID: c}, Values: map[string]float64{ProducerByteRate: v}}
	}
	all := []metadata.ClientQuota{
		q(none, def, 8), q(none, name("app"), 7), q(def, none, 6), q(def, def, 5),
		q(def, name("app"), 4), q(name("alice"), none, 3), q(name("alice"), def, 2), q(name("alice"), name("app"), 1),
	}
	for i := range all {
		// With the i most specific entities removed, the one of value i+1 wins.
		lim, ok := LookupQuota(all[:len(all)-i], ProducerByteRate, "alice", "app")
		if want := float64(i + 1); !ok || lim.Value != want {
			t.Errorf("with %d entities: got %v %v, want %v", len(all)-i, lim, ok, want)
		}
	}
	if lim, _ := LookupQuota(all[:3], ProducerByteRate, "bob", "other"); lim.Value != 6 || lim.User != "bob" || lim.Client != "" {
		t.Errorf("default user: %+v", lim)
	}
	if lim, _ := LookupQuota(all[:1], ProducerByteRate, "bob", "other"); lim.Value != 8 || lim.User != "" || lim.Client != "other" {
		t.Errorf("default client id: %+v", lim)
	}
	if _, ok := LookupQuota(all[5:6], ProducerByteRate, "bob", "app"); ok {
		t.Error("alice's quota applies to bob")
	}
}

// TestQuotaThrottle: a client sending at twice its quota is throttled so
// that, after the throttle, its average rate is the quota.
func TestQuotaThrottle(t *testing.T) {
	q := NewQuotas(QuotaConfig{Samples: 11, SampleSeconds: 1})
	lim := Limit{Value: 1000, User: "u"}
	now := time.Unix(1000, 0)
	var d time.Duration
	for i := range 20 { // 2000 bytes/s for 20 s
		d = q.Record(ProducerByteRate, lim, 2000, now.Add(time.Duration(i)*time.Second))
	}
	// Over the last 11 samples (10 s span) 22000 bytes: rate 2200/s,
	// throttle (2200-1000)/1000 * 10 s = 12 s, capped at 11 s.
	if d != 11*time.Second {
		t.Fatalf("throttle %v", d)
	}
	if d := q.Record(ProducerByteRate, Limit{Value: 1e9, User: "u"}, 1, now.Add(20*time.Second)); d != 0 {
		t.Fatalf("within the quota: throttle %v", d)
	}
}

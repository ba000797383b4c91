package metadata

import (
	"encoding/json"
	"testing"
)

func testACL(name string, pt int8, principal string, op, perm int8) ACL {
	return ACL{ResourceType: ResourceTopic, ResourceName: name, PatternType: pt, Principal: principal, Host: "*", Operation: op, Permission: perm}
}

// TestPlanACLs: creation validates and deduplicates, deletion removes what
// the filters match and reports it per filter.
func TestPlanACLs(t *testing.T) {
	im := Empty()
	a := testACL("orders", PatternLiteral, "User:alice", OpRead, PermissionAllow)
	b := testACL("ord", PatternPrefixed, "User:bob", OpWrite, PermissionDeny)
	bad := testACL("x", PatternMatch, "User:alice", OpRead, PermissionAllow)
	noType := testACL("x", PatternLiteral, "alice", OpRead, PermissionAllow)
	recs, errs := PlanCreateACLs(im, []ACL{a, b, a, bad, noType})
	if errs[0] != nil || errs[1] != nil || errs[2] != nil || errs[3] == nil || errs[4] == nil {
		t.Fatalf("create errors %v", errs)
	}
	im = mustApply(t, im, recs, 1)
	if len(im.ACLs) != 2 || im.ACLs[0].ID == "" || im.ACLs[0].ID == im.ACLs[1].ID {
		t.Fatalf("stored %+v", im.ACLs)
	}
	if recs, _ := PlanCreateACLs(im, []ACL{a}); recs != nil {
		t.Fatalf("a stored binding is stored again: %+v", recs)
	}
	name := "orders"
	match := ACLFilter{ResourceType: ResourceTopic, ResourceName: &name, PatternType: PatternMatch, Operation: OpAny, Permission: PermissionAny}
	literal := match
	literal.PatternType = PatternLiteral
	recs, matched := PlanDeleteACLs(im, []ACLFilter{literal, match})
	if len(matched[0]) != 1 || len(matched[1]) != 2 {
		t.Fatalf("matched %+v", matched)
	}
	if im = mustApply(t, im, recs, 2); len(im.ACLs) != 0 {
		t.Fatalf("left %+v", im.ACLs)
	}
}

// TestApplyQuota: values are set, merged and removed; an entity without
// values is dropped.
func TestApplyQuota(t *testing.T) {
	e := QuotaEntity{User: QuotaPart{Set: true, Name: "u"}, ClientID: QuotaPart{Set: true, Default: true}}
	im := Empty()
	recs, errs := PlanAlterClientQuotas(im, []QuotaAlteration{
		{Entity: e, Set: map[string]float64{"producer_byte_rate": 100}},
		{Entity: e, Set: map[string]float64{"request_percentage": 50}},
		{Entity: e, Set: map[string]float64{"producer_byte_rate": 1.5}},
		{Entity: QuotaEntity{}, Set: map[string]float64{"producer_byte_rate": 1}},
		{Entity: e, Set: map[string]float64{"bogus": 1}},
	})
	if errs[0] != nil || errs[1] != nil || errs[2] == nil || errs[3] == nil || errs[4] == nil {
		t.Fatalf("errors %v", errs)
	}
	im = mustApply(t, im, recs, 1)
	if q := im.Quota(e); len(q) != 2 || q["producer_byte_rate"] != 100 || q["request_percentage"] != 50 {
		t.Fatalf("quota %v", q)
	}
	recs, _ = PlanAlterClientQuotas(im, []QuotaAlteration{{Entity: e, Remove: []string{"producer_byte_rate", "request_percentage"}}})
	if im = mustApply(t, im, recs, 2); len(im.ClientQuotas) != 0 {
		t.Fatalf("left %+v", im.ClientQuotas)
	}
}

// FuzzACLs: ACL bindings and filters arrive from clients (CreateAcls,
// DeleteAcls) and cross the controller RPC as JSON. Whatever they are,
// planning must not panic, must store only valid, unique bindings, and a
// deletion must leave nothing its filters match.
func FuzzACLs(f *testing.F) {
	seed, _ := json.Marshal([]ACL{testACL("t", PatternLiteral, "User:a", OpRead, PermissionAllow),
		testACL("t", PatternPrefixed, "User:*", OpAll, PermissionDeny)})
	name := "t"
	filters, _ := json.Marshal([]ACLFilter{{ResourceType: ResourceAny, ResourceName: &name, PatternType: PatternMatch, Operation: OpAny, Permission: PermissionAny}})
	f.Add(seed, filters)
	f.Add([]byte(`[{"ResourceType":4,"ResourceName":"kafka-cluster","PatternType":3,"Principal":"User:x","Host":"*","Operation":9,"Permission":3}]`), []byte(`[{}]`))
	f.Fuzz(func(t *testing.T, aclBytes, filterBytes []byte) {
		var acls []ACL
		var fs []ACLFilter
		if json.Unmarshal(aclBytes, &acls) != nil || json.Unmarshal(filterBytes, &fs) != nil {
			return
		}
		im := Empty()
		recs, errs := PlanCreateACLs(im, acls)
		if len(errs) != len(acls) {
			t.Fatalf("%d errors for %d bindings", len(errs), len(acls))
		}
		im = mustApply(t, im, recs, 1)
		ids := map[string]bool{}
		for i, a := range im.ACLs {
			if err := ValidateACL(a); err != nil || ids[a.ID] {
				t.Fatalf("stored invalid or duplicate binding %+v: %v", a, err)
			}
			ids[a.ID] = true
			for _, b := range im.ACLs[:i] {
				if a.sameBinding(b) {
					t.Fatalf("stored twice: %+v", a)
				}
			}
		}
		recs, matched := PlanDeleteACLs(im, fs)
		if len(matched) != len(fs) {
			t.Fatalf("%d results for %d filters", len(matched), len(fs))
		}
		im = mustApply(t, im, recs, 2)
		for _, flt := range fs {
			if left := im.MatchingACLs(flt); len(left) > 0 {
				t.Fatalf("filter %+v still matches %+v after deletion", flt, left)
			}
		}
	})
}

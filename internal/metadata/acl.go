package metadata

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// ACLs, as Kafka's StandardAuthorizer stores them in the metadata log: each
// binding is a resource pattern (type, name, pattern type) and an entry
// (principal, host, operation, permission). The numeric codes are Kafka's
// wire codes (kmsg.ACLResourceType, ACLResourcePatternType, ACLOperation,
// ACLPermissionType), so bindings cross the wire unchanged.
//
// Invariants: every ACL in an image has a unique ID and concrete values (no
// ANY/MATCH/UNKNOWN codes, no null name, principal or host); an image never
// holds two ACLs equal but for their IDs.

// Kafka's resource type codes.
const (
	ResourceAny             int8 = 1
	ResourceTopic           int8 = 2
	ResourceGroup           int8 = 3
	ResourceCluster         int8 = 4
	ResourceTransactionalID int8 = 5
	ResourceDelegationToken int8 = 6
	ResourceUser            int8 = 7
)

// Kafka's pattern type codes.
const (
	PatternAny      int8 = 1
	PatternMatch    int8 = 2
	PatternLiteral  int8 = 3
	PatternPrefixed int8 = 4
)

// Kafka's operation codes.
const (
	OpAny             int8 = 1
	OpAll             int8 = 2
	OpRead            int8 = 3
	OpWrite           int8 = 4
	OpCreate          int8 = 5
	OpDelete          int8 = 6
	OpAlter           int8 = 7
	OpDescribe        int8 = 8
	OpClusterAction   int8 = 9
	OpDescribeConfigs int8 = 10
	OpAlterConfigs    int8 = 11
	OpIdempotentWrite int8 = 12
	OpCreateTokens    int8 = 13
	OpDescribeTokens  int8 = 14
)

// Kafka's permission type codes.
const (
	PermissionAny   int8 = 1
	PermissionDeny  int8 = 2
	PermissionAllow int8 = 3
)

// Wildcards in ACLs: the resource name "*" (with LITERAL) matches every
// resource of its type, the principal "User:*" every user, the host "*"
// every host.
const (
	WildcardResource  = "*"
	WildcardPrincipal = "User:*"
	WildcardHost      = "*"
)

// ClusterResourceName is the name of the one CLUSTER resource.
const ClusterResourceName = "kafka-cluster"

// ACL is one stored binding.
type ACL struct {
	ID           string `json:",omitempty"`
	ResourceType int8
	ResourceName string
	PatternType  int8
	Principal    string
	Host         string
	Operation    int8
	Permission   int8
}

// sameBinding reports whether a and b are the same binding (IDs aside).
func (a ACL) sameBinding(b ACL) bool {
	a.ID, b.ID = "", ""
	return a == b
}

// ACLFilter selects bindings, as DescribeAcls and DeleteAcls filters do:
// ResourceType ANY, PatternType ANY or MATCH, a nil name, principal or host,
// Operation ANY and Permission ANY match anything in their place. MATCH
// selects the bindings that would apply to the named resource: LITERAL ones
// of that name or "*", and PREFIXED ones whose prefix the name starts with.
type ACLFilter struct {
	ResourceType int8
	ResourceName *string
	PatternType  int8
	Principal    *string
	Host         *string
	Operation    int8
	Permission   int8
}

// Matches reports whether the filter selects a.
func (f ACLFilter) Matches(a ACL) bool {
	if f.ResourceType != ResourceAny && f.ResourceType != a.ResourceType {
		return false
	}
	if f.PatternType != PatternAny && f.PatternType != PatternMatch && f.PatternType != a.PatternType {
		return false
	}
	if f.ResourceName != nil {
		name := *f.ResourceName
		if f.PatternType == PatternAny || f.PatternType == a.PatternType {
			if name != a.ResourceName {
				return false
			}
		} else { // MATCH
			switch a.PatternType {
			case PatternLiteral:
				if name != a.ResourceName && a.ResourceName != WildcardResource {
					return false
				}
			case PatternPrefixed:
				if !strings.HasPrefix(name, a.ResourceName) {
					return false
				}
			default:
				return false
			}
		}
	}
	if f.Principal != nil && *f.Principal != a.Principal {
		return false
	}
	if f.Host != nil && *f.Host != a.Host {
		return false
	}
	if f.Operation != OpAny && f.Operation != a.Operation {
		return false
	}
	return f.Permission == PermissionAny || f.Permission == a.Permission
}

// ValidateACL checks that a is a binding that may be stored (Kafka's
// CreateAcls rules): concrete codes, a non-empty name, a principal of the
// form Type:Name, a host, and CLUSTER bindings only on kafka-cluster.
func ValidateACL(a ACL) error {
	switch {
	case a.ResourceType < ResourceTopic || a.ResourceType > ResourceUser:
		return fmt.Errorf("%w: resource type %d", ErrInvalidACL, a.ResourceType)
	case a.PatternType != PatternLiteral && a.PatternType != PatternPrefixed:
		return fmt.Errorf("%w: pattern type %d (LITERAL or PREFIXED)", ErrInvalidACL, a.PatternType)
	case a.ResourceName == "":
		return fmt.Errorf("%w: empty resource name", ErrInvalidACL)
	case a.ResourceType == ResourceCluster && a.ResourceName != ClusterResourceName:
		return fmt.Errorf("%w: the cluster resource is named %s, not %q", ErrInvalidACL, ClusterResourceName, a.ResourceName)
	case a.Operation < OpAll || a.Operation > OpDescribeTokens:
		return fmt.Errorf("%w: operation %d", ErrInvalidACL, a.Operation)
	case a.Permission != PermissionAllow && a.Permission != PermissionDeny:
		return fmt.Errorf("%w: permission type %d (ALLOW or DENY)", ErrInvalidACL, a.Permission)
	case a.Host == "":
		return fmt.Errorf("%w: empty host (use * for any)", ErrInvalidACL)
	}
	typ, name, ok := strings.Cut(a.Principal, ":")
	if !ok || typ == "" || name == "" {
		return fmt.Errorf("%w: principal %q is not of the form Type:Name", ErrInvalidACL, a.Principal)
	}
	return nil
}

// ACLRecord adds and removes bindings (by ID).
type ACLRecord struct {
	Add    []ACL    `json:",omitempty"`
	Remove []string `json:",omitempty"`
}

// applyACLs returns acls with r applied; the input slice is not modified
// (images share it).
func applyACLs(acls []ACL, r *ACLRecord) []ACL {
	out := make([]ACL, 0, len(acls)+len(r.Add))
	for _, a := range acls {
		if !slices.Contains(r.Remove, a.ID) {
			out = append(out, a)
		}
	}
	for _, a := range r.Add {
		if a.ID == "" || slices.ContainsFunc(out, func(b ACL) bool { return b.ID == a.ID || b.sameBinding(a) }) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// PlanCreateACLs stores new bindings, each validated; a binding already
// stored is not stored twice (as Kafka, this is not an error). errs[i] is
// the error of acls[i] (nil: created or already present).
func PlanCreateACLs(im *Image, acls []ACL) ([]Record, []error) {
	errs := make([]error, len(acls))
	rec := &ACLRecord{}
	for i, a := range acls {
		if errs[i] = ValidateACL(a); errs[i] != nil {
			continue
		}
		dup := func(b ACL) bool { return b.sameBinding(a) }
		if slices.ContainsFunc(im.ACLs, dup) || slices.ContainsFunc(rec.Add, dup) {
			continue
		}
		a.ID = newACLID()
		rec.Add = append(rec.Add, a)
	}
	if len(rec.Add) == 0 {
		return nil, errs
	}
	return []Record{{ACLs: rec}}, errs
}

// PlanDeleteACLs removes every binding any filter matches and returns, per
// filter, the bindings it matched (a binding matched by two filters is
// reported under both, as Kafka does).
func PlanDeleteACLs(im *Image, filters []ACLFilter) ([]Record, [][]ACL) {
	matched := make([][]ACL, len(filters))
	rec := &ACLRecord{}
	for i, f := range filters {
		for _, a := range im.ACLs {
			if f.Matches(a) {
				matched[i] = append(matched[i], a)
				if !slices.Contains(rec.Remove, a.ID) {
					rec.Remove = append(rec.Remove, a.ID)
				}
			}
		}
	}
	if len(rec.Remove) == 0 {
		return nil, matched
	}
	return []Record{{ACLs: rec}}, matched
}

// MatchingACLs returns the stored bindings f matches.
func (im *Image) MatchingACLs(f ACLFilter) []ACL {
	var out []ACL
	for _, a := range im.ACLs {
		if f.Matches(a) {
			out = append(out, a)
		}
	}
	return out
}

func newACLID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

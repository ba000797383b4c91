package security

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
)

// Authorizer decides requests as Kafka's StandardAuthorizer does, from the
// ACL bindings of the metadata image:
//
//   - a super user (super.users) may do everything;
//   - the bindings that apply to a resource are its LITERAL ones, the LITERAL
//     "*" of its type, and the PREFIXED ones whose prefix its name starts with;
//   - of those, the ones for the principal (or User:*) and host (or *) count;
//   - a DENY for the operation (or ALL) wins over any ALLOW;
//   - an ALLOW grants its operation and what it implies: READ, WRITE, DELETE
//     and ALTER imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS, ALL
//     implies everything;
//   - a resource with no binding at all is allowed only with
//     allow.everyone.if.no.acl.found.
//
// A nil *Authorizer (no authorizer.class.name) allows everything. Methods are
// safe for concurrent use.
type Authorizer struct {
	superUsers   map[string]bool
	allowIfNoACL bool
	log          *decisionLog

	index atomic.Pointer[aclIndex] // the index of the last ACL slice seen
}

// AuthorizerConfig configures an Authorizer.
type AuthorizerConfig struct {
	// SuperUsers is super.users: principals separated by semicolons.
	SuperUsers string
	// AllowEveryoneIfNoACL is allow.everyone.if.no.acl.found.
	AllowEveryoneIfNoACL bool
	// Logger receives decisions (denied at info, rate-limited; allowed at debug).
	Logger *slog.Logger
}

// NewAuthorizer returns an authorizer with cfg.
func NewAuthorizer(cfg AuthorizerConfig) *Authorizer {
	a := &Authorizer{superUsers: map[string]bool{}, allowIfNoACL: cfg.AllowEveryoneIfNoACL}
	for _, u := range strings.Split(cfg.SuperUsers, ";") {
		if u = strings.TrimSpace(u); u != "" {
			a.superUsers[u] = true
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	a.log = &decisionLog{logger: logger.With("logger", "security"), perSecond: 20}
	return a
}

// Action is one thing a request wants to do to one resource.
type Action struct {
	Operation    int8 // metadata.Op*
	ResourceType int8 // metadata.Resource*
	ResourceName string
	// Quiet decisions are not logged (filtering a listing, computing
	// authorized operations), as Kafka does not log them either.
	Quiet bool
}

// Authorize decides act for session s against acls (the image's bindings).
func (a *Authorizer) Authorize(s *Session, acls []metadata.ACL, act Action) bool {
	if a == nil {
		return true
	}
	ok := a.decide(s, a.indexFor(acls), act)
	if !act.Quiet {
		a.log.record(s, act, ok)
	}
	return ok
}

// LogDenied logs a denial decided from several checks (as IDEMPOTENT_WRITE
// or WRITE on any topic), like Authorize logs its own.
func (a *Authorizer) LogDenied(s *Session, act Action) {
	if a != nil {
		a.log.record(s, act, false)
	}
}

// AuthorizeAny reports whether s may do op on at least one resource of a
// type (Kafka's authorizeByResourceType, used where WRITE on any topic
// stands for IDEMPOTENT_WRITE): some ALLOW binding for s grants op, and no
// DENY for s covers that binding's whole pattern.
func (a *Authorizer) AuthorizeAny(s *Session, acls []metadata.ACL, op, resourceType int8) bool {
	if a == nil || a.superUsers[s.Principal.String()] {
		return true
	}
	idx := a.indexFor(acls)
	rt := idx.byType[resourceType]
	if rt == nil {
		return a.allowIfNoACL
	}
	var denies, allows []metadata.ACL
	for _, b := range rt.all {
		if !appliesTo(b, s) {
			continue
		}
		switch {
		case b.Permission == metadata.PermissionDeny && (b.Operation == op || b.Operation == metadata.OpAll):
			denies = append(denies, b)
		case b.Permission == metadata.PermissionAllow && implies(b.Operation, op):
			allows = append(allows, b)
		}
	}
	covered := func(allow metadata.ACL) bool {
		for _, d := range denies {
			switch {
			case d.PatternType == metadata.PatternLiteral && d.ResourceName == metadata.WildcardResource:
				return true
			case d.PatternType == metadata.PatternPrefixed && strings.HasPrefix(allow.ResourceName, d.ResourceName):
				return true
			case d.PatternType == metadata.PatternLiteral && allow.PatternType == metadata.PatternLiteral && d.ResourceName == allow.ResourceName:
				return true
			}
		}
		return false
	}
	for _, b := range allows {
		if !covered(b) {
			return true
		}
	}
	return false
}

// validOps are the operations each resource type has (Kafka's
// AclEntry.supportedOperations), for the authorized-operations fields.
var validOps = map[int8][]int8{
	metadata.ResourceTopic: {metadata.OpRead, metadata.OpWrite, metadata.OpCreate, metadata.OpDescribe, metadata.OpDelete,
		metadata.OpAlter, metadata.OpDescribeConfigs, metadata.OpAlterConfigs},
	metadata.ResourceGroup: {metadata.OpRead, metadata.OpDescribe, metadata.OpDelete},
	metadata.ResourceCluster: {metadata.OpCreate, metadata.OpClusterAction, metadata.OpDescribeConfigs, metadata.OpAlterConfigs,
		metadata.OpIdempotentWrite, metadata.OpAlter, metadata.OpDescribe},
	metadata.ResourceTransactionalID: {metadata.OpDescribe, metadata.OpWrite},
	metadata.ResourceDelegationToken: {metadata.OpDescribe},
	metadata.ResourceUser:            {metadata.OpCreateTokens, metadata.OpDescribeTokens},
}

// AuthorizedOperations is the authorized-operations bit field of Metadata,
// DescribeGroups and DescribeCluster: bit op is set for every operation of
// the resource's type s may do on it.
func (a *Authorizer) AuthorizedOperations(s *Session, acls []metadata.ACL, resourceType int8, name string) int32 {
	var bits int32
	for _, op := range validOps[resourceType] {
		if a.Authorize(s, acls, Action{Operation: op, ResourceType: resourceType, ResourceName: name, Quiet: true}) {
			bits |= 1 << op
		}
	}
	return bits
}

func (a *Authorizer) decide(s *Session, idx *aclIndex, act Action) bool {
	if a.superUsers[s.Principal.String()] {
		return true
	}
	rt := idx.byType[act.ResourceType]
	var found, allowed bool
	check := func(bs []metadata.ACL) (denied bool) {
		for _, b := range bs {
			found = true
			if !appliesTo(b, s) {
				continue
			}
			switch b.Permission {
			case metadata.PermissionDeny:
				if b.Operation == act.Operation || b.Operation == metadata.OpAll {
					return true
				}
			case metadata.PermissionAllow:
				if implies(b.Operation, act.Operation) {
					allowed = true
				}
			}
		}
		return false
	}
	if rt != nil {
		if check(rt.literal[act.ResourceName]) {
			return false
		}
		if act.ResourceName != metadata.WildcardResource && check(rt.literal[metadata.WildcardResource]) {
			return false
		}
		for _, n := range rt.prefixLens {
			if n > len(act.ResourceName) {
				break
			}
			if check(rt.prefixed[act.ResourceName[:n]]) {
				return false
			}
		}
	}
	if !found {
		return a.allowIfNoACL
	}
	return allowed
}

// appliesTo reports whether binding b is for s's principal and host.
func appliesTo(b metadata.ACL, s *Session) bool {
	if b.Principal != metadata.WildcardPrincipal && b.Principal != s.Principal.String() {
		return false
	}
	return b.Host == metadata.WildcardHost || b.Host == s.Host
}

// implies reports whether an ALLOW of granted allows op.
func implies(granted, op int8) bool {
	switch {
	case granted == op || granted == metadata.OpAll:
		return true
	case op == metadata.OpDescribe:
		return granted == metadata.OpRead || granted == metadata.OpWrite || granted == metadata.OpDelete || granted == metadata.OpAlter
	case op == metadata.OpDescribeConfigs:
		return granted == metadata.OpAlterConfigs
	}
	return false
}

// aclIndex groups an image's bindings by resource type and pattern.
type aclIndex struct {
	key    aclKey
	byType map[int8]*typeACLs
}

type typeACLs struct {
	all      []metadata.ACL
	literal  map[string][]metadata.ACL // by resource name
	prefixed map[string][]metadata.ACL // by prefix
	// prefixLens are the lengths of the prefixes, ascending: the PREFIXED
	// bindings of a name are prefixed[name[:n]] for these n.
	prefixLens []int
}

// aclKey identifies an ACL slice: images share the slice until the ACLs
// change, and a change always makes a new one. The key's pointer keeps the
// indexed slice alive, so its address cannot be reused by another slice
// while the index is cached.
type aclKey struct {
	data *metadata.ACL
	n    int
}

func (a *Authorizer) indexFor(acls []metadata.ACL) *aclIndex {
	key := aclKey{unsafe.SliceData(acls), len(acls)}
	if idx := a.index.Load(); idx != nil && idx.key == key {
		return idx
	}
	idx := &aclIndex{key: key, byType: map[int8]*typeACLs{}}
	for _, b := range acls {
		rt := idx.byType[b.ResourceType]
		if rt == nil {
			rt = &typeACLs{literal: map[string][]metadata.ACL{}, prefixed: map[string][]metadata.ACL{}}
			idx.byType[b.ResourceType] = rt
		}
		rt.all = append(rt.all, b)
		if b.PatternType == metadata.PatternPrefixed {
			if len(rt.prefixed[b.ResourceName]) == 0 && !slices.Contains(rt.prefixLens, len(b.ResourceName)) {
				rt.prefixLens = append(rt.prefixLens, len(b.ResourceName))
				slices.Sort(rt.prefixLens)
			}
			rt.prefixed[b.ResourceName] = append(rt.prefixed[b.ResourceName], b)
		} else {
			rt.literal[b.ResourceName] = append(rt.literal[b.ResourceName], b)
		}
	}
	a.index.Store(idx)
	return idx
}

// decisionLog logs decisions: denied ones at info, at most perSecond a
// second (the rest are counted and reported with the next one logged),
// allowed ones at debug.
type decisionLog struct {
	logger    *slog.Logger
	perSecond int

	mu         sync.Mutex // guards the fields below
	window     time.Time
	logged     int
	suppressed int
}

func (l *decisionLog) record(s *Session, act Action, allowed bool) {
	if allowed && !l.logger.Enabled(context.Background(), slog.LevelDebug) {
		return // the common case costs no formatting
	}
	attrs := []any{"principal", s.Principal.String(), "host", s.Host,
		"operation", kmsg.ACLOperation(act.Operation).String(),
		"resource_type", kmsg.ACLResourceType(act.ResourceType).String(), "resource_name", act.ResourceName}
	if allowed {
		l.logger.Debug("authorized", append(attrs, "allowed", true)...)
		return
	}
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.logged = now, 0
	}
	if l.logged >= l.perSecond {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.logged++
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		attrs = append(attrs, "suppressed_before", suppressed)
	}
	l.logger.Info("denied", append(attrs, "allowed", false)...)
}

// AllOperations is the authorized-operations bit field with every
// operation of a resource type set (what a broker without an authorizer
// reports).
func AllOperations(resourceType int8) int32 {
	var bits int32
	for _, op := range validOps[resourceType] {
		bits |= 1 << op
	}
	return bits
}

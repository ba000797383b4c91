package security

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"strand/internal/metadata"
)

func binding(rt int8, name string, pt int8, principal, host string, op, perm int8) metadata.ACL {
	return metadata.ACL{ResourceType: rt, ResourceName: name, PatternType: pt, Principal: principal, Host: host, Operation: op, Permission: perm}
}

const (
	lit = metadata.PatternLiteral
	pre = metadata.PatternPrefixed
)

// TestAuthorize walks Kafka's StandardAuthorizer rules: DENY wins, implied
// operations, wildcards and prefixes, super users, and the no-ACL rule.
func TestAuthorize(t *testing.T) {
	topic, group := metadata.ResourceTopic, metadata.ResourceGroup
	allow, deny := metadata.PermissionAllow, metadata.PermissionDeny
	acls := []metadata.ACL{
		binding(topic, "orders", lit, "User:alice", "*", metadata.OpWrite, allow),
		binding(topic, "orders", lit, "User:bob", "*", metadata.OpRead, allow),
		binding(topic, "orders", lit, "User:bob", "10.0.0.9", metadata.OpRead, deny),
		binding(topic, "logs-", pre, "User:*", "*", metadata.OpRead, allow),
		binding(topic, "logs-secret", lit, "User:carol", "*", metadata.OpAll, deny),
		binding(topic, "*", lit, "User:dave", "*", metadata.OpAlterConfigs, allow),
		binding(group, "g", lit, "User:alice", "*", metadata.OpRead, allow),
		binding(metadata.ResourceCluster, metadata.ClusterResourceName, lit, "User:ops", "*", metadata.OpAll, allow),
	}
	sess := func(p, host string) *Session {
		return &Session{Principal: Principal{Type: "User", Name: p}, Host: host}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := NewAuthorizer(AuthorizerConfig{SuperUsers: "User:admin; User:root", Logger: quiet})
	open := NewAuthorizer(AuthorizerConfig{AllowEveryoneIfNoACL: true, Logger: quiet})
	cases := []struct {
		name string
		a    *Authorizer
		s    *Session
		act  Action
		want bool
	}{
		{"allowed op", a, sess("alice", "1.2.3.4"), Action{metadata.OpWrite, topic, "orders", false}, true},
		{"other op", a, sess("alice", "1.2.3.4"), Action{metadata.OpRead, topic, "orders", false}, false},
		{"write implies describe", a, sess("alice", "1.2.3.4"), Action{metadata.OpDescribe, topic, "orders", false}, true},
		{"other principal", a, sess("eve", "1.2.3.4"), Action{metadata.OpWrite, topic, "orders", false}, false},
		{"deny host wins", a, sess("bob", "10.0.0.9"), Action{metadata.OpRead, topic, "orders", false}, false},
		{"other host allowed", a, sess("bob", "10.0.0.8"), Action{metadata.OpRead, topic, "orders", false}, true},
		{"deny read does not deny describe", a, sess("bob", "10.0.0.9"), Action{metadata.OpDescribe, topic, "orders", false}, true},
		{"prefixed wildcard principal", a, sess("eve", "h"), Action{metadata.OpRead, topic, "logs-app", false}, true},
		{"prefix mismatch", a, sess("eve", "h"), Action{metadata.OpRead, topic, "log", false}, false},
		{"deny all beats prefixed allow", a, sess("carol", "h"), Action{metadata.OpRead, topic, "logs-secret", false}, false},
		{"others keep prefixed allow", a, sess("eve", "h"), Action{metadata.OpRead, topic, "logs-secret", false}, true},
		{"literal * matches every topic", a, sess("dave", "h"), Action{metadata.OpAlterConfigs, topic, "anything", false}, true},
		{"alter_configs implies describe_configs", a, sess("dave", "h"), Action{metadata.OpDescribeConfigs, topic, "x", false}, true},
		{"no acl: denied by default", a, sess("eve", "h"), Action{metadata.OpRead, group, "other", false}, false},
		{"no acl: allow.everyone.if.no.acl.found", open, sess("eve", "h"), Action{metadata.OpRead, group, "other", false}, true},
		{"acl exists: allow.everyone does not apply", open, sess("eve", "h"), Action{metadata.OpRead, group, "g", false}, false},
		{"super user", a, sess("root", "h"), Action{metadata.OpDelete, topic, "orders", false}, true},
		{"cluster all", a, sess("ops", "h"), Action{metadata.OpClusterAction, metadata.ResourceCluster, metadata.ClusterResourceName, false}, true},
		{"nil authorizer allows", nil, sess("eve", "h"), Action{metadata.OpDelete, topic, "orders", false}, true},
	}
	for _, c := range cases {
		if got := c.a.Authorize(c.s, acls, c.act); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	if !a.AuthorizeAny(sess("alice", "h"), acls, metadata.OpWrite, topic) {
		t.Error("alice may write some topic")
	}
	if a.AuthorizeAny(sess("bob", "h"), acls, metadata.OpWrite, topic) {
		t.Error("bob may write no topic")
	}
	ops := a.AuthorizedOperations(sess("alice", "h"), acls, topic, "orders")
	if want := int32(1<<metadata.OpWrite | 1<<metadata.OpDescribe); ops != want {
		t.Errorf("authorized operations %b, want %b", ops, want)
	}
}

// TestACLFilter checks the DescribeAcls/DeleteAcls filter semantics,
// MATCH in particular.
func TestACLFilter(t *testing.T) {
	str := func(s string) *string { return &s }
	lit := binding(metadata.ResourceTopic, "orders", lit, "User:a", "*", metadata.OpRead, metadata.PermissionAllow)
	star := binding(metadata.ResourceTopic, "*", metadata.PatternLiteral, "User:a", "*", metadata.OpRead, metadata.PermissionAllow)
	pfx := binding(metadata.ResourceTopic, "ord", pre, "User:a", "*", metadata.OpRead, metadata.PermissionAllow)
	any := metadata.ACLFilter{ResourceType: metadata.ResourceAny, PatternType: metadata.PatternAny, Operation: metadata.OpAny, Permission: metadata.PermissionAny}
	match := any
	match.PatternType, match.ResourceName = metadata.PatternMatch, str("orders")
	exact := any
	exact.ResourceName = str("orders")
	prefixedOnly := any
	prefixedOnly.PatternType = metadata.PatternPrefixed
	other := any
	other.Principal = str("User:b")
	for _, c := range []struct {
		f    metadata.ACLFilter
		a    metadata.ACL
		want bool
	}{
		{any, lit, true}, {any, pfx, true},
		{match, lit, true}, {match, star, true}, {match, pfx, true},
		{exact, lit, true}, {exact, star, false}, {exact, pfx, false},
		{prefixedOnly, lit, false}, {prefixedOnly, pfx, true},
		{other, lit, false},
	} {
		if got := c.f.Matches(c.a); got != c.want {
			t.Errorf("filter %+v on %+v: got %v", c.f, c.a, got)
		}
	}
}

// BenchmarkAuthorize: one decision against 1000 bindings (500 literal
// topics, 500 prefixes) - the cost authorization adds per topic of a
// request.
func BenchmarkAuthorize(b *testing.B) {
	var acls []metadata.ACL
	for i := range 500 {
		acls = append(acls,
			binding(metadata.ResourceTopic, fmt.Sprintf("topic-%d", i), lit, fmt.Sprintf("User:u%d", i), "*", metadata.OpWrite, metadata.PermissionAllow),
			binding(metadata.ResourceTopic, fmt.Sprintf("p%d-", i), pre, "User:*", "*", metadata.OpRead, metadata.PermissionAllow))
	}
	a := NewAuthorizer(AuthorizerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s := &Session{Principal: Principal{Type: "User", Name: "u42"}, Host: "10.0.0.1"}
	act := Action{Operation: metadata.OpWrite, ResourceType: metadata.ResourceTopic, ResourceName: "topic-42"}
	b.ReportAllocs()
	for b.Loop() {
		if !a.Authorize(s, acls, act) {
			b.Fatal("denied")
		}
	}
}

// TestDecisionLogRateLimit: denials are logged at info, at most perSecond a
// second, and the next logged one says how many were left out.
func TestDecisionLogRateLimit(t *testing.T) {
	var buf bytes.Buffer
	a := NewAuthorizer(AuthorizerConfig{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	s := &Session{Principal: Principal{Type: "User", Name: "eve"}, Host: "10.1.2.3"}
	act := Action{Operation: metadata.OpRead, ResourceType: metadata.ResourceTopic, ResourceName: "t"}
	for range 25 {
		a.Authorize(s, nil, act)
	}
	if got := strings.Count(buf.String(), "msg=denied"); got != 20 {
		t.Fatalf("%d denials logged in a second, want 20", got)
	}
	want := "logger=security principal=User:eve host=10.1.2.3 operation=READ resource_type=TOPIC resource_name=t"
	if !strings.Contains(buf.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, buf.String())
	}
	a.log.mu.Lock()
	a.log.window = a.log.window.Add(-time.Second) // the next second
	a.log.mu.Unlock()
	buf.Reset()
	a.Authorize(s, nil, act)
	if !strings.Contains(buf.String(), "suppressed_before=5") {
		t.Fatalf("want the 5 left out reported: %s", buf.String())
	}
	buf.Reset()
	a.Authorize(s, nil, Action{Operation: metadata.OpRead, ResourceType: metadata.ResourceTopic, ResourceName: "t", Quiet: true})
	if buf.Len() != 0 {
		t.Fatalf("a quiet decision was logged: %s", buf.String())
	}
}

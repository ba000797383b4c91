// Package security holds what the broker knows about who is talking to it:
// listeners' TLS, SASL mechanisms, principals, the ACL authorizer and client
// quotas. The server calls it; the metadata log stores users, ACLs and quotas.
package security

import "context"

// Principal is an authenticated identity in Kafka's form, Type:Name
// (e.g. User:alice). A connection that did not authenticate (a PLAINTEXT
// listener, or SSL without a client certificate) is Anonymous.
type Principal struct {
	Type string // "User" for every principal Kafka's built-in mechanisms produce
	Name string
}

// Anonymous is the principal of an unauthenticated connection (User:ANONYMOUS).
var Anonymous = Principal{Type: "User", Name: "ANONYMOUS"}

// String returns Type:Name, the form ACLs and super.users use.
func (p Principal) String() string { return p.Type + ":" + p.Name }

// Session is who is on the other end of one connection: the principal, the
// client's host (IP address, for host-scoped ACLs), and the listener it came
// in on. The server stores it in each request's context.
type Session struct {
	Principal Principal
	Host      string
	Listener  string
}

type sessionKey struct{}

// WithSession returns ctx carrying s.
func WithSession(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// SessionFrom returns the session stored in ctx, or an anonymous one with an
// empty host when there is none (in-process callers, tests).
func SessionFrom(ctx context.Context) *Session {
	if s, ok := ctx.Value(sessionKey{}).(*Session); ok && s != nil {
		return s
	}
	return &Session{Principal: Anonymous}
}

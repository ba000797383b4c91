package security

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SASL mechanism names, as clients send them in SaslHandshake.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
	MechanismOAuthBearer = "OAUTHBEARER"
)

// ErrAuthentication means the client's credentials were refused. Its text
// (and every error wrapping it that reaches a client) never carries a
// password or token.
var ErrAuthentication = errors.New("authentication failed")

// AuthError is a refused authentication: Reason may be told to the client,
// Detail (for the broker's log only) says what exactly failed, without
// credentials. It wraps ErrAuthentication.
type AuthError struct {
	Reason string
	Detail error
}

func (e *AuthError) Error() string { return ErrAuthentication.Error() + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrAuthentication) hold.
func (e *AuthError) Unwrap() error { return ErrAuthentication }

// LogDetail returns the detail of an *AuthError (nil for other errors).
func LogDetail(err error) error {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Detail
	}
	return nil
}

// Mechanism is one SASL mechanism a listener offers.
type Mechanism interface {
	Name() string
	// Start begins one authentication exchange.
	Start() Exchange
}

// Exchange is one SASL authentication in progress on a connection.
type Exchange interface {
	// Next consumes the client's next message and returns the server's
	// answer; done is true once the client is authenticated. An error
	// (wrapping ErrAuthentication for refused credentials) ends the exchange.
	Next(in []byte) (out []byte, done bool, err error)
	// Principal is the authenticated identity, once done.
	Principal() Principal
	// Expiry is when the credential stops being valid (a token's exp), or
	// the zero time when it does not expire.
	Expiry() time.Time
}

// plainMechanism is SASL/PLAIN (RFC 4616) against a fixed user list.
type plainMechanism struct {
	users map[string]string // user name -> password, from the JAAS user_<name> entries
}

// NewPlain returns SASL/PLAIN checking passwords against users (name ->
// password), as read from a PlainLoginModule JAAS configuration.
func NewPlain(users map[string]string) Mechanism { return &plainMechanism{users: users} }

func (m *plainMechanism) Name() string    { return MechanismPlain }
func (m *plainMechanism) Start() Exchange { return &plainExchange{m: m} }

type plainExchange struct {
	m    *plainMechanism
	user string
}

// ParsePlain splits a PLAIN message, authzid NUL authcid NUL passwd.
func ParsePlain(in []byte) (authzid, user, password string, err error) {
	parts := strings.Split(string(in), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", "", "", fmt.Errorf("%w: malformed PLAIN message", ErrAuthentication)
	}
	return parts[0], parts[1], parts[2], nil
}

func (e *plainExchange) Next(in []byte) ([]byte, bool, error) {
	if e.user != "" {
		return nil, false, fmt.Errorf("%w: PLAIN takes one message", ErrAuthentication)
	}
	authzid, user, password, err := ParsePlain(in)
	if err != nil {
		return nil, false, err
	}
	if authzid != "" && authzid != user {
		return nil, false, fmt.Errorf("%w: authorization id differs from the user name", ErrAuthentication)
	}
	want, ok := e.m.users[user]
	// Compare even for unknown users, so timing does not reveal which exist.
	if subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 || !ok {
		return nil, false, fmt.Errorf("%w: invalid username or password", ErrAuthentication)
	}
	e.user = user
	return nil, true, nil
}

func (e *plainExchange) Principal() Principal { return Principal{Type: "User", Name: e.user} }
func (e *plainExchange) Expiry() time.Time    { return time.Time{} }

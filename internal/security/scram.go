package security

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"time"

	"github.com/xdg-go/scram"
)

// ScramCredential is what the broker stores for one user and SCRAM
// mechanism (RFC 5802): never the password, only the salt, the iteration
// count and the two keys derived from the salted password.
type ScramCredential struct {
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
	Iterations int32
}

// Iteration bounds Kafka enforces for SCRAM credentials.
const (
	ScramMinIterations = 4096
	ScramMaxIterations = 16384
)

// ScramLookup returns the stored credential of user for a mechanism.
type ScramLookup func(user, mechanism string) (ScramCredential, bool)

// ScramHash returns the hash function of a SCRAM mechanism name.
func ScramHash(mechanism string) (func() hash.Hash, bool) {
	switch mechanism {
	case MechanismScramSHA256:
		return sha256.New, true
	case MechanismScramSHA512:
		return sha512.New, true
	}
	return nil, false
}

// ScramFromSaltedPassword derives the stored credential from a salted
// password, as AlterUserScramCredentials carries it (KIP-554):
// StoredKey = H(HMAC(SaltedPassword, "Client Key")),
// ServerKey = HMAC(SaltedPassword, "Server Key").
func ScramFromSaltedPassword(mechanism string, salt, salted []byte, iterations int32) (ScramCredential, error) {
	h, ok := ScramHash(mechanism)
	if !ok {
		return ScramCredential{}, fmt.Errorf("unknown SCRAM mechanism %q", mechanism)
	}
	if iterations < ScramMinIterations || iterations > ScramMaxIterations {
		return ScramCredential{}, fmt.Errorf("iterations %d outside [%d, %d]", iterations, ScramMinIterations, ScramMaxIterations)
	}
	if len(salt) == 0 || len(salted) == 0 {
		return ScramCredential{}, errors.New("empty salt or salted password")
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(h, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	d := h()
	d.Write(mac(salted, "Client Key"))
	return ScramCredential{Salt: salt, StoredKey: d.Sum(nil), ServerKey: mac(salted, "Server Key"), Iterations: iterations}, nil
}

// SaltPassword is Hi(password, salt, iterations) of RFC 5802 (PBKDF2 with
// the mechanism's HMAC), the salted password a client sends in
// AlterUserScramCredentials.
func SaltPassword(mechanism, password string, salt []byte, iterations int) ([]byte, error) {
	h, ok := ScramHash(mechanism)
	if !ok {
		return nil, fmt.Errorf("unknown SCRAM mechanism %q", mechanism)
	}
	return pbkdf2.Key(h, password, salt, iterations, h().Size())
}

// scramMechanism is SCRAM-SHA-256 or SCRAM-SHA-512 against credentials
// from the metadata image.
type scramMechanism struct {
	name   string
	server *scram.Server
}

// NewScram returns a SCRAM mechanism (SCRAM-SHA-256 or SCRAM-SHA-512)
// looking credentials up with lookup at each authentication, so users
// created or changed in the metadata log apply to the next login.
func NewScram(mechanism string, lookup ScramLookup) (Mechanism, error) {
	var gen scram.HashGeneratorFcn
	switch mechanism {
	case MechanismScramSHA256:
		gen = scram.SHA256
	case MechanismScramSHA512:
		gen = scram.SHA512
	default:
		return nil, fmt.Errorf("unknown SCRAM mechanism %q", mechanism)
	}
	srv, err := gen.NewServer(func(user string) (scram.StoredCredentials, error) {
		c, ok := lookup(user, mechanism)
		if !ok {
			return scram.StoredCredentials{}, fmt.Errorf("%w: unknown user", ErrAuthentication)
		}
		return scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: int(c.Iterations)},
			StoredKey:  c.StoredKey, ServerKey: c.ServerKey,
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return &scramMechanism{name: mechanism, server: srv}, nil
}

func (m *scramMechanism) Name() string { return m.name }
func (m *scramMechanism) Start() Exchange {
	return &scramExchange{conv: m.server.NewConversation()}
}

type scramExchange struct {
	conv *scram.ServerConversation
	user string
}

func (e *scramExchange) Next(in []byte) ([]byte, bool, error) {
	out, err := e.conv.Step(string(in))
	if err != nil {
		return nil, false, fmt.Errorf("%w: invalid username or password", ErrAuthentication)
	}
	if !e.conv.Done() {
		return []byte(out), false, nil
	}
	if !e.conv.Valid() {
		return nil, false, fmt.Errorf("%w: invalid username or password", ErrAuthentication)
	}
	if a := e.conv.AuthzID(); a != "" && a != e.conv.Username() {
		return nil, false, fmt.Errorf("%w: authorization id differs from the user name", ErrAuthentication)
	}
	e.user = e.conv.Username()
	return []byte(out), true, nil
}

func (e *scramExchange) Principal() Principal { return Principal{Type: "User", Name: e.user} }
func (e *scramExchange) Expiry() time.Time    { return time.Time{} }

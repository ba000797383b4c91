package security

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
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

// scramMechanism is SCRAM-SHA-256 or SCRAM-SHA-512 (RFC 5802) against
// credentials from the metadata image.
//
// The server side is implemented here rather than with xdg-go/scram's
// server: librdkafka sends the client-final nonce as client nonce + the
// whole server nonce, which Kafka accepts (it checks that the nonce ends
// with the server's) and xdg-go refuses.
type scramMechanism struct {
	name   string
	hash   func() hash.Hash
	lookup ScramLookup
	fake   []byte // key deriving fake salts for unknown users
}

// NewScram returns a SCRAM mechanism (SCRAM-SHA-256 or SCRAM-SHA-512)
// looking credentials up with lookup at each authentication, so users
// created or changed in the metadata log apply to the next login. An
// unknown user goes through the whole exchange with a fake credential and
// fails at the end, like a wrong password, so user names cannot be probed.
func NewScram(mechanism string, lookup ScramLookup) (Mechanism, error) {
	h, ok := ScramHash(mechanism)
	if !ok {
		return nil, fmt.Errorf("unknown SCRAM mechanism %q", mechanism)
	}
	fake := make([]byte, 32)
	if _, err := rand.Read(fake); err != nil {
		return nil, err
	}
	return &scramMechanism{name: mechanism, hash: h, lookup: lookup, fake: fake}, nil
}

func (m *scramMechanism) Name() string    { return m.name }
func (m *scramMechanism) Start() Exchange { return &scramExchange{m: m} }

type scramExchange struct {
	m           *scramMechanism
	step        int
	user        string
	known       bool
	cred        ScramCredential
	gs2         string // gs2 header as sent
	clientBare  string // client-first-message-bare
	serverFirst string
	nonce       string // client nonce + server nonce
}

// ScramClientFirst is a parsed client-first-message.
type ScramClientFirst struct {
	GS2     string // "n,," or "y,," plus an authzid
	AuthzID string
	User    string
	Nonce   string
	Bare    string // the message without the gs2 header
}

// ParseScramClientFirst parses a client-first-message (RFC 5802 section
// 7). Channel binding ("p=") is refused; extensions after the nonce (Kafka's
// tokenauth) are allowed and ignored.
func ParseScramClientFirst(msg string) (ScramClientFirst, error) {
	var f ScramClientFirst
	parts := strings.SplitN(msg, ",", 3)
	if len(parts) != 3 {
		return f, errors.New("malformed client-first-message")
	}
	switch parts[0] {
	case "n", "y":
	default:
		return f, errors.New("channel binding is not supported")
	}
	if parts[1] != "" {
		a, ok := strings.CutPrefix(parts[1], "a=")
		if !ok {
			return f, errors.New("malformed authzid")
		}
		var err error
		if f.AuthzID, err = decodeSaslName(a); err != nil {
			return f, err
		}
	}
	f.GS2 = parts[0] + "," + parts[1] + ","
	f.Bare = parts[2]
	attrs := strings.Split(f.Bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return f, errors.New("malformed client-first-message-bare")
	}
	var err error
	if f.User, err = decodeSaslName(attrs[0][2:]); err != nil {
		return f, err
	}
	f.Nonce = attrs[1][2:]
	if f.User == "" || f.Nonce == "" {
		return f, errors.New("empty user name or nonce")
	}
	return f, nil
}

// decodeSaslName undoes RFC 5802's =2C / =3D escaping.
func decodeSaslName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", errors.New("bad '=' escape in a SASL name")
		}
		i += 2
	}
	return b.String(), nil
}

// ScramClientFinal is a parsed client-final-message.
type ScramClientFinal struct {
	ChannelBinding string // c= value (base64)
	Nonce          string
	Proof          []byte
	WithoutProof   string
}

// ParseScramClientFinal parses a client-final-message.
func ParseScramClientFinal(msg string) (ScramClientFinal, error) {
	var f ScramClientFinal
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return f, errors.New("client-final-message without proof")
	}
	f.WithoutProof = msg[:i]
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil || len(proof) == 0 {
		return f, errors.New("malformed proof")
	}
	f.Proof = proof
	attrs := strings.Split(f.WithoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return f, errors.New("malformed client-final-message")
	}
	f.ChannelBinding, f.Nonce = attrs[0][2:], attrs[1][2:]
	return f, nil
}

func (e *scramExchange) mac(key []byte, msg string) []byte {
	m := hmac.New(e.m.hash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (e *scramExchange) Next(in []byte) ([]byte, bool, error) {
	fail := func(detail error) ([]byte, bool, error) {
		e.step = 2
		return nil, false, &AuthError{Reason: "invalid username or password", Detail: detail}
	}
	switch e.step {
	case 0:
		f, err := ParseScramClientFirst(string(in))
		if err != nil {
			return fail(err)
		}
		if f.AuthzID != "" && f.AuthzID != f.User {
			return fail(errors.New("authorization id differs from the user name"))
		}
		e.user, e.gs2, e.clientBare = f.User, f.GS2, f.Bare
		e.cred, e.known = e.m.lookup(f.User, e.m.name)
		if !e.known {
			// A consistent fake salt per user name, and keys nobody knows.
			e.cred = ScramCredential{Salt: e.mac(e.m.fake, f.User)[:16], Iterations: ScramMinIterations,
				StoredKey: e.mac(e.m.fake, "stored "+f.User), ServerKey: e.mac(e.m.fake, "server "+f.User)}
		}
		e.nonce = f.Nonce + alnumNonce()
		e.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", e.nonce, base64.StdEncoding.EncodeToString(e.cred.Salt), e.cred.Iterations)
		e.step = 1
		return []byte(e.serverFirst), false, nil
	case 1:
		f, err := ParseScramClientFinal(string(in))
		if err != nil {
			return fail(err)
		}
		if f.ChannelBinding != base64.StdEncoding.EncodeToString([]byte(e.gs2)) {
			return fail(errors.New("channel binding does not match the gs2 header"))
		}
		// As Kafka: the nonce must end with ours (librdkafka prefixes its own once more).
		if !strings.HasSuffix(f.Nonce, e.nonce) {
			return fail(errors.New("nonce does not match"))
		}
		authMsg := e.clientBare + "," + e.serverFirst + "," + f.WithoutProof
		sig := e.mac(e.cred.StoredKey, authMsg)
		if len(f.Proof) != len(sig) {
			return fail(errors.New("proof of the wrong length"))
		}
		clientKey := make([]byte, len(sig))
		for i := range sig {
			clientKey[i] = f.Proof[i] ^ sig[i]
		}
		d := e.m.hash()
		d.Write(clientKey)
		if subtle.ConstantTimeCompare(d.Sum(nil), e.cred.StoredKey) != 1 || !e.known {
			return fail(errors.New("wrong password or unknown user"))
		}
		e.step = 3
		return []byte("v=" + base64.StdEncoding.EncodeToString(e.mac(e.cred.ServerKey, authMsg))), true, nil
	}
	return nil, false, &AuthError{Reason: "SCRAM exchange already finished"}
}

func (e *scramExchange) Principal() Principal { return Principal{Type: "User", Name: e.user} }
func (e *scramExchange) Expiry() time.Time    { return time.Time{} }

// alnumNonce returns a 32-character random nonce of letters and digits.
func alnumNonce() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

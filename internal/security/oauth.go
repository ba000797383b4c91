package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OAuthConfig is how OAUTHBEARER tokens are validated, from Kafka's
// sasl.oauthbearer.* properties.
type OAuthConfig struct {
	JWKS      string   // sasl.oauthbearer.jwks.endpoint.url: file:// URL or path of a JSON Web Key Set
	Audience  []string // sasl.oauthbearer.expected.audience (empty: not checked)
	Issuer    string   // sasl.oauthbearer.expected.issuer (empty: not checked)
	SubClaim  string   // sasl.oauthbearer.sub.claim.name
	ClockSkew time.Duration
}

type oauthMechanism struct {
	cfg  OAuthConfig
	keys *reloader[map[string]any] // kid -> public key; reloaded when the file changes
}

// NewOAuthBearer returns OAUTHBEARER (RFC 7628) validating unsecured-free
// JWTs: the signature against the JWKS file (RS*, PS*, ES* algorithms), exp
// (required), nbf, iss and aud; the principal is the sub claim.
func NewOAuthBearer(cfg OAuthConfig) (Mechanism, error) {
	path := cfg.JWKS
	if path == "" {
		return nil, errors.New("OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (a file:// URL of a JSON Web Key Set)")
	}
	if strings.Contains(path, "://") {
		u, err := url.Parse(path)
		if err != nil || u.Scheme != "file" {
			return nil, fmt.Errorf("sasl.oauthbearer.jwks.endpoint.url %q: only file:// URLs are supported", path)
		}
		path = u.Path
	}
	if cfg.SubClaim == "" {
		cfg.SubClaim = "sub"
	}
	keys, err := newReloader(path, ParseJWKS)
	if err != nil {
		return nil, fmt.Errorf("sasl.oauthbearer.jwks.endpoint.url: %w", err)
	}
	return &oauthMechanism{cfg: cfg, keys: keys}, nil
}

func (m *oauthMechanism) Name() string    { return MechanismOAuthBearer }
func (m *oauthMechanism) Start() Exchange { return &oauthExchange{m: m} }

// ParseJWKS reads a JSON Web Key Set (RFC 7517) into public keys by kid.
// RSA and EC (P-256, P-384, P-521) keys are kept; others are skipped.
func ParseJWKS(b []byte) (map[string]any, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, Use, N, E, Crv, X, Y string
		}
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys := map[string]any{}
	num := func(s string) (*big.Int, error) {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil || len(raw) == 0 {
			return nil, errors.New("bad base64url number")
		}
		return new(big.Int).SetBytes(raw), nil
	}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Kty {
		case "RSA":
			n, err := num(k.N)
			if err != nil {
				return nil, fmt.Errorf("JWKS key %d: n: %w", i, err)
			}
			e, err := num(k.E)
			if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
				return nil, fmt.Errorf("JWKS key %d: bad exponent", i)
			}
			if n.BitLen() < 2048 {
				return nil, fmt.Errorf("JWKS key %d: RSA key shorter than 2048 bits", i)
			}
			keys[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			var c elliptic.Curve
			switch k.Crv {
			case "P-256":
				c = elliptic.P256()
			case "P-384":
				c = elliptic.P384()
			case "P-521":
				c = elliptic.P521()
			default:
				return nil, fmt.Errorf("JWKS key %d: unsupported curve %q", i, k.Crv)
			}
			size := (c.Params().BitSize + 7) / 8
			coord := func(v string) ([]byte, error) {
				b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
				if err != nil || len(b) == 0 || len(b) > size {
					return nil, errors.New("bad coordinate")
				}
				return append(make([]byte, size-len(b)), b...), nil // left-pad to the curve size
			}
			x, err := coord(k.X)
			if err != nil {
				return nil, fmt.Errorf("JWKS key %d: x: %w", i, err)
			}
			y, err := coord(k.Y)
			if err != nil {
				return nil, fmt.Errorf("JWKS key %d: y: %w", i, err)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("JWKS key %d: point not on the curve", i)
			}
			keys[k.Kid] = pub
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS: no usable signing key")
	}
	return keys, nil
}

// ParseOAuthBearerMessage extracts the token from an OAUTHBEARER client
// initial response (RFC 7628): gs2 header, then \x01-separated key=value
// pairs, one of them auth=Bearer <token>, ending with \x01\x01.
func ParseOAuthBearerMessage(in []byte) (token string, err error) {
	s := string(in)
	gs2, rest, ok := strings.Cut(s, "\x01")
	if !ok || !strings.HasPrefix(gs2, "n,") || !strings.HasSuffix(rest, "\x01\x01") {
		return "", fmt.Errorf("%w: malformed OAUTHBEARER message", ErrAuthentication)
	}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "\x01\x01"), "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", fmt.Errorf("%w: malformed OAUTHBEARER key/value", ErrAuthentication)
		}
		if k == "auth" {
			scheme, tok, ok := strings.Cut(v, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
				return "", fmt.Errorf("%w: auth is not a Bearer token", ErrAuthentication)
			}
			token = tok
		}
	}
	if token == "" {
		return "", fmt.Errorf("%w: no auth=Bearer token", ErrAuthentication)
	}
	return token, nil
}

// ValidateToken checks a JWT against the key set and the configuration and
// returns its principal name and expiry.
func (m *oauthMechanism) ValidateToken(token string) (string, time.Time, error) {
	keys, err := m.keys.get()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: key set unavailable", ErrAuthentication)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(m.cfg.ClockSkew),
	}
	if m.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(m.cfg.Issuer))
	}
	if len(m.cfg.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(m.cfg.Audience...))
	}
	claims := jwt.MapClaims{}
	_, err = jwt.NewParser(opts...).ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		if kid == "" && len(keys) == 1 {
			for _, k := range keys {
				return k, nil
			}
		}
		return nil, errors.New("unknown key id")
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: invalid token: %v", ErrAuthentication, err)
	}
	sub, _ := claims[m.cfg.SubClaim].(string)
	if sub == "" {
		return "", time.Time{}, fmt.Errorf("%w: token has no %s claim", ErrAuthentication, m.cfg.SubClaim)
	}
	exp, _ := claims.GetExpirationTime()
	return sub, exp.Time, nil
}

// oauthExchange follows RFC 7628 as Kafka does: a refused token is
// answered with an error challenge ({"status":"invalid_token"}), the client
// acknowledges it with a single %x01, and only then does the exchange fail.
type oauthExchange struct {
	m      *oauthMechanism
	sub    string
	expiry time.Time
	failed error // the refusal waiting for the client's %x01
}

func (e *oauthExchange) Next(in []byte) ([]byte, bool, error) {
	if e.failed != nil {
		return nil, false, e.failed
	}
	if e.sub != "" {
		return nil, false, fmt.Errorf("%w: OAUTHBEARER takes one message", ErrAuthentication)
	}
	tok, err := ParseOAuthBearerMessage(in)
	if err == nil {
		var sub string
		var exp time.Time
		if sub, exp, err = e.m.ValidateToken(tok); err == nil {
			e.sub, e.expiry = sub, exp
			return nil, true, nil
		}
	}
	e.failed = err
	return []byte(`{"status":"invalid_token"}`), false, nil
}

func (e *oauthExchange) Principal() Principal { return Principal{Type: "User", Name: e.sub} }
func (e *oauthExchange) Expiry() time.Time    { return e.expiry }

package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OAuthConfig is how OAUTHBEARER tokens are validated, from Kafka's
// sasl.oauthbearer.* properties.
type OAuthConfig struct {
	// JWKS is sasl.oauthbearer.jwks.endpoint.url: a file path or file://
	// URL (re-read when it changes), or an http(s):// URL (fetched at start
	// and every Refresh, and again, at most every 10 s, for an unknown kid).
	JWKS      string
	Refresh   time.Duration // sasl.oauthbearer.jwks.endpoint.refresh.ms; 0: one hour
	Audience  []string      // sasl.oauthbearer.expected.audience (empty: not checked)
	Issuer    string        // sasl.oauthbearer.expected.issuer (empty: not checked)
	SubClaim  string        // sasl.oauthbearer.sub.claim.name
	ClockSkew time.Duration
	// HTTPClient fetches an http(s) JWKS; nil uses a client with the
	// system's CAs and a 10 s timeout.
	HTTPClient *http.Client
}

// keySource yields the current key set by kid.
type keySource interface {
	keys(kid string) (map[string]any, error)
}

type oauthMechanism struct {
	cfg  OAuthConfig
	keys keySource
}

// fileKeys is a JWKS file, re-read when it changes.
type fileKeys struct{ r *reloader[map[string]any] }

func (f fileKeys) keys(string) (map[string]any, error) { return f.r.get() }

// NewOAuthBearer returns OAUTHBEARER (RFC 7628) validating signed JWTs:
// the signature against the JWKS (RS*, PS*, ES* algorithms; never none or
// HMAC), exp (required), nbf, iss and aud; the principal is the sub claim.
func NewOAuthBearer(cfg OAuthConfig) (Mechanism, error) {
	if cfg.SubClaim == "" {
		cfg.SubClaim = "sub"
	}
	loc := cfg.JWKS
	if loc == "" {
		return nil, errors.New("OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (a JSON Web Key Set: https:// or file://)")
	}
	if strings.Contains(loc, "://") {
		u, err := url.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("sasl.oauthbearer.jwks.endpoint.url: %w", err)
		}
		switch u.Scheme {
		case "file":
			loc = u.Path
		case "http", "https":
			hk, err := newHTTPKeys(u.String(), cfg)
			if err != nil {
				return nil, fmt.Errorf("sasl.oauthbearer.jwks.endpoint.url: %w", err)
			}
			return &oauthMechanism{cfg: cfg, keys: hk}, nil
		default:
			return nil, fmt.Errorf("sasl.oauthbearer.jwks.endpoint.url: scheme %q is not https, http or file", u.Scheme)
		}
	}
	r, err := newReloader(loc, ParseJWKS)
	if err != nil {
		return nil, fmt.Errorf("sasl.oauthbearer.jwks.endpoint.url: %w", err)
	}
	return &oauthMechanism{cfg: cfg, keys: fileKeys{r}}, nil
}

// httpKeys is a JWKS served over http(s). Logins never wait on a fetch
// another login is already doing: they use the current set meanwhile.
type httpKeys struct {
	url     string
	client  *http.Client
	refresh time.Duration

	cur     atomic.Pointer[map[string]any] // the last good set
	fetched atomic.Int64                   // UnixNano of the last fetch attempt
	mu      sync.Mutex                     // serialises fetches (TryLock from logins)
}

func newHTTPKeys(u string, cfg OAuthConfig) (*httpKeys, error) {
	h := &httpKeys{url: u, client: cfg.HTTPClient, refresh: cfg.Refresh}
	if h.client == nil {
		h.client = &http.Client{Timeout: 10 * time.Second}
	}
	if h.refresh <= 0 {
		h.refresh = time.Hour
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fetch(); err != nil {
		return nil, err
	}
	return h, nil
}

// fetch downloads and parses the set. Caller holds mu.
func (h *httpKeys) fetch() error {
	h.fetched.Store(time.Now().UnixNano())
	resp, err := h.client.Get(h.url)
	if err != nil {
		return fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the JWKS: HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("fetching the JWKS: %w", err)
	}
	keys, err := ParseJWKS(b)
	if err != nil {
		return err
	}
	h.cur.Store(&keys)
	return nil
}

func (h *httpKeys) keys(kid string) (map[string]any, error) {
	cur := *h.cur.Load()
	since := time.Since(time.Unix(0, h.fetched.Load()))
	_, known := cur[kid]
	if (since >= h.refresh || !known && since >= 10*time.Second) && h.mu.TryLock() {
		// A failed refresh keeps the current set (the next one retries).
		h.fetch()
		h.mu.Unlock()
		cur = *h.cur.Load()
	}
	return cur, nil
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
	kid := ""
	if parts := strings.SplitN(token, ".", 2); len(parts) == 2 {
		if hdr, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil {
			var h struct{ Kid string }
			if json.Unmarshal(hdr, &h) == nil {
				kid = h.Kid
			}
		}
	}
	keys, err := m.keys.keys(kid)
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

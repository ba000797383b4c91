package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"software.sslmate.com/src/go-pkcs12"

	"strand/internal/security/securitytest"
)

func TestParseJAAS(t *testing.T) {
	j, err := ParseJAAS(`org.apache.kafka.common.security.plain.PlainLoginModule required
		username="admin" password="admin-secret" user_admin="admin-secret" user_alice="a\"lice" bare=value;`)
	if err != nil {
		t.Fatal(err)
	}
	if j.Module != "org.apache.kafka.common.security.plain.PlainLoginModule" || j.Flag != "required" || j.Options["username"] != "admin" || j.Options["bare"] != "value" {
		t.Fatalf("parsed %+v", j)
	}
	users := j.PlainUsers()
	if len(users) != 2 || users["alice"] != `a"lice` || users["admin"] != "admin-secret" {
		t.Fatalf("users %v", users)
	}
	for _, bad := range []string{"", "Mod", "Mod maybe;", `Mod required user_a="x"`, `Mod required user_a="x;`, `Mod required a= ;`, `Mod required ="x";`, `Mod required a="x"; Other required;`} {
		if _, err := ParseJAAS(bad); err == nil {
			t.Errorf("ParseJAAS(%q) accepted", bad)
		} else if strings.Contains(err.Error(), `"x"`) {
			t.Errorf("error quotes a value: %v", err)
		}
	}
}

func TestPlain(t *testing.T) {
	m := NewPlain(map[string]string{"alice": "secret"})
	for _, tc := range []struct {
		msg string
		ok  bool
	}{{"\x00alice\x00secret", true}, {"alice\x00alice\x00secret", true}, {"bob\x00alice\x00secret", false},
		{"\x00alice\x00wrong", false}, {"\x00bob\x00secret", false}, {"\x00alice", false}, {"\x00\x00secret", false}} {
		_, done, err := m.Start().Next([]byte(tc.msg))
		if done != tc.ok || (err == nil) != tc.ok {
			t.Errorf("%q: done %v err %v", tc.msg, done, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestPrincipalMapping(t *testing.T) {
	m, err := ParsePrincipalMapping(`RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/L, RULE:^cn=([^,]*)$/\/$1/U,DEFAULT`)
	if err != nil {
		t.Fatal(err)
	}
	for subject, want := range map[string]string{
		"CN=kafka-broker,OU=ServiceUsers,O=Acme": "kafka-broker",
		"CN=Alice,OU=ENG,O=Acme":                 "alice@eng",
		"cn=bob":                                 "/BOB",
		"CN=plain,C=US":                          "CN=plain,C=US",
	} {
		if got, err := m.Map(subject); err != nil || got != want {
			t.Errorf("Map(%q) = %q, %v; want %q", subject, got, err, want)
		}
	}
	strict, _ := ParsePrincipalMapping(`RULE:^CN=([^,]*)$/$1/`)
	if _, err := strict.Map("O=x"); err == nil {
		t.Error("no rule matched, but Map succeeded")
	}
	for _, bad := range []string{"RULE:abc", "RULE:a/b", "SOMETHING", "RULE:(/x/"} {
		if _, err := ParsePrincipalMapping(bad); err == nil {
			t.Errorf("ParsePrincipalMapping(%q) accepted", bad)
		}
	}
	// The principal of a certificate is its RFC 2253 subject.
	def, _ := ParsePrincipalMapping("")
	p, err := def.CertificatePrincipal(&x509.Certificate{Subject: pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng"}, Organization: []string{"Acme"}}})
	if err != nil || p.String() != "User:CN=alice,OU=eng,O=Acme" {
		t.Fatalf("principal %v %v", p, err)
	}
}

func props(m map[string]string) Props {
	return func(n string) string {
		if v, ok := m[n]; ok {
			return v
		}
		switch n {
		case "ssl.enabled.protocols":
			return "TLSv1.2,TLSv1.3"
		case "ssl.client.auth":
			return "none"
		}
		return ""
	}
}

func leafSerial(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// TestKeystoresAndReload: PEM (file and inline) and PKCS12 keystores load,
// and a rewritten keystore file is picked up without a restart.
func TestKeystoresAndReload(t *testing.T) {
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "one"}, "127.0.0.1")
	path := securitytest.WriteFile(t, dir, "server.pem", key, cert, ca.PEM)
	cfg, err := ServerTLS(props(map[string]string{"ssl.keystore.type": "PEM", "ssl.keystore.location": path}))
	if err != nil {
		t.Fatal(err)
	}
	if got := leafSerial(t, cfg); got != "one" {
		t.Fatalf("leaf %q", got)
	}
	cert2, key2 := ca.Issue(t, pkix.Name{CommonName: "two"}, "127.0.0.1")
	os.WriteFile(path, append(append([]byte{}, cert2...), key2...), 0o600)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(path, future, future)
	deadline := time.Now().Add(5 * time.Second)
	for leafSerial(t, cfg) != "two" {
		if time.Now().After(deadline) {
			t.Fatal("the rewritten keystore was not reloaded")
		}
		time.Sleep(100 * time.Millisecond)
	}

	inline, err := ServerTLS(props(map[string]string{"ssl.keystore.type": "PEM", "ssl.keystore.key": string(key), "ssl.keystore.certificate.chain": string(cert)}))
	if err != nil || leafSerial(t, inline) != "one" {
		t.Fatalf("inline PEM: %v", err)
	}

	block, _ := pem.Decode(key)
	pk, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cblock, _ := pem.Decode(cert)
	leaf, _ := x509.ParseCertificate(cblock.Bytes)
	p12, err := pkcs12.Modern.Encode(pk, leaf, []*x509.Certificate{ca.Cert}, "changeit")
	if err != nil {
		t.Fatal(err)
	}
	p12Path := filepath.Join(dir, "server.p12")
	os.WriteFile(p12Path, p12, 0o600)
	pc, err := ServerTLS(props(map[string]string{"ssl.keystore.type": "PKCS12", "ssl.keystore.location": p12Path, "ssl.keystore.password": "changeit"}))
	if err != nil || leafSerial(t, pc) != "one" {
		t.Fatalf("PKCS12: %v", err)
	}
	if _, err := ServerTLS(props(map[string]string{"ssl.keystore.type": "PKCS12", "ssl.keystore.location": p12Path, "ssl.keystore.password": "wrong"})); err == nil {
		t.Fatal("PKCS12 with a wrong password loaded")
	}
	for _, bad := range []map[string]string{
		{"ssl.keystore.type": "JKS", "ssl.keystore.location": path},
		{"ssl.keystore.type": "PEM"},
		{"ssl.keystore.type": "PEM", "ssl.keystore.location": path, "ssl.enabled.protocols": "TLSv1.1"},
		{"ssl.keystore.type": "PEM", "ssl.keystore.location": path, "ssl.cipher.suites": "TLS_RSA_WITH_RC4_128_SHA"},
		{"ssl.keystore.type": "PEM", "ssl.keystore.location": path, "ssl.client.auth": "required"},
	} {
		if _, err := ServerTLS(props(bad)); err == nil {
			t.Errorf("ServerTLS(%v) accepted", bad)
		}
	}
	only12, err := ServerTLS(props(map[string]string{"ssl.keystore.type": "PEM", "ssl.keystore.location": path, "ssl.enabled.protocols": "TLSv1.2",
		"ssl.cipher.suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}))
	if err != nil || only12.MaxVersion != tls.VersionTLS12 || only12.MinVersion != tls.VersionTLS12 || len(only12.CipherSuites) != 1 {
		t.Fatalf("TLSv1.2 only: %v %+v", err, only12)
	}
}

func TestOAuthBearer(t *testing.T) {
	iss := securitytest.NewIssuer(t, "k1")
	path := securitytest.WriteFile(t, t.TempDir(), "jwks.json", iss.JWKS())
	m, err := NewOAuthBearer(OAuthConfig{JWKS: "file://" + path, Issuer: "iss", Audience: []string{"strand"}})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(tok string) []byte { return []byte("n,,\x01auth=Bearer " + tok + "\x01\x01") }
	now := time.Now()
	good := iss.Token(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "strand", "exp": now.Add(time.Hour).Unix()})
	ex := m.Start()
	if _, done, err := ex.Next(msg(good)); !done || err != nil || ex.Principal().Name != "carol" || ex.Expiry().IsZero() {
		t.Fatalf("good token: %v %v %v", done, err, ex.Principal())
	}
	other := securitytest.NewIssuer(t, "k1")
	for name, tok := range map[string]string{
		"expired":      iss.Token(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "strand", "exp": now.Add(-time.Hour).Unix()}),
		"no exp":       iss.Token(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "strand"}),
		"not yet":      iss.Token(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "strand", "exp": now.Add(2 * time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()}),
		"issuer":       iss.Token(t, jwt.MapClaims{"sub": "carol", "iss": "other", "aud": "strand", "exp": now.Add(time.Hour).Unix()}),
		"audience":     iss.Token(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "other", "exp": now.Add(time.Hour).Unix()}),
		"no sub":       iss.Token(t, jwt.MapClaims{"iss": "iss", "aud": "strand", "exp": now.Add(time.Hour).Unix()}),
		"wrong key":    other.Token(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "strand", "exp": now.Add(time.Hour).Unix()}),
		"alg none":     mustNone(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "strand", "exp": now.Add(time.Hour).Unix()}),
		"HS256 by key": mustHS(t, jwt.MapClaims{"sub": "carol", "iss": "iss", "aud": "strand", "exp": now.Add(time.Hour).Unix()}, iss.JWKS()),
		"garbage":      "abc.def.ghi",
	} {
		ex := m.Start()
		challenge, done, err := ex.Next(msg(tok))
		if done || err != nil || string(challenge) != `{"status":"invalid_token"}` {
			t.Errorf("%s: first step %q %v %v, want the invalid_token challenge", name, challenge, done, err)
		}
		if _, done, err := ex.Next([]byte{1}); done || err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, bad := range []string{"", "n,,", "n,,\x01auth=Bearer\x01\x01", "n,,\x01auth=Basic abc\x01\x01", "x,,\x01auth=Bearer a\x01\x01", "n,,\x01auth=Bearer a\x01"} {
		if _, err := ParseOAuthBearerMessage([]byte(bad)); err == nil {
			t.Errorf("ParseOAuthBearerMessage(%q) accepted", bad)
		}
	}
}

func mustNone(t *testing.T, c jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustHS(t *testing.T, c jwt.MapClaims, key []byte) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOAuthBearerES256(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := k.PublicKey.Bytes() // 0x04 || X || Y
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"ec","x":%q,"y":%q}]}`, b64(raw[1:33]), b64(raw[33:]))
	path := securitytest.WriteFile(t, t.TempDir(), "jwks.json", []byte(jwks))
	m, err := NewOAuthBearer(OAuthConfig{JWKS: path})
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "dave", "exp": time.Now().Add(time.Minute).Unix()})
	tok.Header["kid"] = "ec"
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	ex := m.Start()
	if _, done, err := ex.Next([]byte("n,,\x01auth=Bearer " + s + "\x01\x01")); !done || err != nil || ex.Principal().Name != "dave" {
		t.Fatalf("ES256 token: %v %v", done, err)
	}
}

// TestClientTLSAndPKCS12Truststore: a follower's TLS client verifies the
// server against a PKCS12 truststore and the host name, and presents its
// keystore for mutual TLS.
func TestClientTLSAndPKCS12Truststore(t *testing.T) {
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	p12, err := pkcs12.Modern.EncodeTrustStore([]*x509.Certificate{ca.Cert}, "changeit")
	if err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(dir, "trust.p12")
	os.WriteFile(trust, p12, 0o600)
	ks := securitytest.WriteFile(t, dir, "server.pem", key, cert)
	p := props(map[string]string{"ssl.keystore.type": "PEM", "ssl.keystore.location": ks, "ssl.client.auth": "required",
		"ssl.truststore.type": "PKCS12", "ssl.truststore.location": trust, "ssl.truststore.password": "changeit",
		"ssl.endpoint.identification.algorithm": "https"})
	srv, err := ServerTLS(p)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				c.Write([]byte{1})
			}()
		}
	}()
	try := func(host string, cfg Props) error {
		ct, err := ClientTLS(cfg, host)
		if err != nil {
			return err
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), ct)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		return err
	}
	if err := try("127.0.0.1", p); err != nil {
		t.Fatalf("mutual TLS with a PKCS12 truststore: %v", err)
	}
	if err := try("10.9.9.9", p); err == nil {
		t.Fatal("host name not verified")
	}
	noKey := props(map[string]string{"ssl.truststore.type": "PKCS12", "ssl.truststore.location": trust, "ssl.truststore.password": "changeit"})
	if err := try("127.0.0.1", noKey); err == nil {
		t.Fatal("client without a certificate accepted by ssl.client.auth=required")
	}
}

// TestOAuthBearerHTTPSJWKS: the key set comes from an https endpoint,
// fetched at start and again when a token names a key it does not know
// (key rotation), but not for every login.
func TestOAuthBearerHTTPSJWKS(t *testing.T) {
	first, second := securitytest.NewIssuer(t, "k1"), securitytest.NewIssuer(t, "k2")
	var mu sync.Mutex
	jwks, fetches := first.JWKS(), 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		w.Write(jwks)
	}))
	defer srv.Close()
	m, err := NewOAuthBearer(OAuthConfig{JWKS: srv.URL + "/jwks", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	login := func(iss *securitytest.Issuer) error {
		tok := iss.Token(t, jwt.MapClaims{"sub": "erin", "exp": time.Now().Add(time.Minute).Unix()})
		out, done, err := m.Start().Next([]byte("n,,\x01auth=Bearer " + tok + "\x01\x01"))
		if err == nil && !done {
			return errors.New(string(out))
		}
		return err
	}
	for range 3 {
		if err := login(first); err != nil {
			t.Fatal(err)
		}
	}
	// Rotation: the endpoint now serves k2; a k2 token makes the broker fetch again
	// (the 10 s floor between unknown-kid fetches is moved back for the test).
	mu.Lock()
	jwks = second.JWKS()
	mu.Unlock()
	hk := m.(*oauthMechanism).keys.(*httpKeys)
	hk.fetched.Store(time.Now().Add(-time.Minute).UnixNano())
	if err := login(second); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	mu.Lock()
	n := fetches
	mu.Unlock()
	if n != 2 {
		t.Fatalf("%d fetches, want 2 (start, rotation)", n)
	}
	if _, err := NewOAuthBearer(OAuthConfig{JWKS: srv.URL + "/jwks"}); err == nil {
		t.Fatal("an https JWKS with an untrusted certificate was accepted")
	}
	if _, err := NewOAuthBearer(OAuthConfig{JWKS: "ftp://x/jwks"}); err == nil {
		t.Fatal("ftp JWKS accepted")
	}
}

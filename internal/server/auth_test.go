package server

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"strand/internal/security/securitytest"
)

// secureNode is a node with a PLAINTEXT listener (n.addr) and SASL_SSL,
// SASL_PLAINTEXT and SSL (mTLS required) listeners.
type secureNode struct {
	*node
	saslSSL, saslPlain, ssl string
	ca                      *securitytest.CA
	issuer                  *securitytest.Issuer
}

const plainJAAS = `org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";`

func startSecureNode(t *testing.T, extra ...[2]string) *secureNode {
	t.Helper()
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1", "localhost")
	iss := securitytest.NewIssuer(t, "k1")
	sn := &secureNode{saslSSL: freeAddr(t), saslPlain: freeAddr(t), ssl: freeAddr(t), ca: ca, issuer: iss}
	plainAddr := freeAddr(t)
	sets := [][2]string{
		{"listeners", "PLAINTEXT://" + plainAddr + ",SASL_SSL://" + sn.saslSSL + ",SASL_PLAINTEXT://" + sn.saslPlain + ",SSL://" + sn.ssl},
		{"sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"},
		{"ssl.keystore.type", "PEM"},
		{"ssl.keystore.location", securitytest.WriteFile(t, dir, "server.pem", key, cert)},
		{"ssl.truststore.type", "PEM"},
		{"ssl.truststore.location", securitytest.WriteFile(t, dir, "ca.pem", ca.PEM)},
		{"listener.name.ssl.ssl.client.auth", "required"},
		{"listener.name.ssl.ssl.principal.mapping.rules", "RULE:^CN=([^,]*).*$/$1/L,DEFAULT"},
		{"listener.name.sasl_ssl.plain.sasl.jaas.config", plainJAAS},
		{"listener.name.sasl_plaintext.plain.sasl.jaas.config", plainJAAS},
		{"sasl.oauthbearer.jwks.endpoint.url", "file://" + securitytest.WriteFile(t, dir, "jwks.json", iss.JWKS())},
		{"sasl.oauthbearer.expected.issuer", "https://issuer.test"},
		{"sasl.oauthbearer.expected.audience", "strand"},
	}
	n := &node{t: t, dir: t.TempDir(), addr: plainAddr, sets: append(sets, extra...)}
	n.start()
	t.Cleanup(n.stop)
	sn.node = n
	return sn
}

func (sn *secureNode) saslClient(t *testing.T, addr string, tlsOn bool, m sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	o := []kgo.Opt{kgo.SeedBrokers(addr), kgo.SASL(m)}
	if tlsOn {
		o = append(o, kgo.DialTLSConfig(sn.ca.ClientTLS(t, nil, nil)))
	}
	cl, err := kgo.NewClient(append(o, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (sn *secureNode) token(t *testing.T, claims jwt.MapClaims) string {
	base := jwt.MapClaims{"sub": "carol", "iss": "https://issuer.test", "aud": "strand", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for k, v := range claims {
		base[k] = v
	}
	return sn.issuer.Token(t, base)
}

// roundTrip produces one record to topic and reads it back.
func roundTrip(t *testing.T, cl *kgo.Client, topic string) error {
	t.Helper()
	c := ctx(t)
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(c, cl)
	if err != nil {
		return err
	}
	if len(resp.Brokers) != 1 {
		return errors.New("no broker in metadata")
	}
	if _, err := kadm.NewClient(cl).CreateTopic(c, 1, 1, nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	if err := cl.ProduceSync(c, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
		return err
	}
	cl.AddConsumeTopics(topic)
	fs := cl.PollFetches(c)
	if err := fs.Err(); err != nil {
		return err
	}
	if fs.NumRecords() == 0 {
		return errors.New("consumed nothing")
	}
	return nil
}

func TestSASLMechanismsOverSASLSSLAndPlaintext(t *testing.T) {
	sn := startSecureNode(t)
	adm := kadm.NewClient(sn.client())
	for _, m := range []kadm.ScramMechanism{kadm.ScramSha256, kadm.ScramSha512} {
		res, err := adm.AlterUserSCRAMs(ctx(t), nil, []kadm.UpsertSCRAM{{User: "bob", Mechanism: m, Iterations: 4096, Password: "bob-secret"}})
		if err != nil || res.Error() != nil {
			t.Fatalf("AlterUserSCRAMs %v: %v %v", m, err, res.Error())
		}
	}
	described, err := adm.DescribeUserSCRAMs(ctx(t))
	if err != nil || len(described["bob"].CredInfos) != 2 {
		t.Fatalf("DescribeUserSCRAMs: %v %+v", err, described)
	}
	mechs := map[string]sasl.Mechanism{
		"PLAIN":         plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism(),
		"SCRAM-SHA-256": scram.Auth{User: "bob", Pass: "bob-secret"}.AsSha256Mechanism(),
		"SCRAM-SHA-512": scram.Auth{User: "bob", Pass: "bob-secret"}.AsSha512Mechanism(),
		"OAUTHBEARER":   oauth.Auth{Token: sn.token(t, nil)}.AsMechanism(),
	}
	for name, m := range mechs {
		for _, l := range []struct {
			addr  string
			tlsOn bool
		}{{sn.saslSSL, true}, {sn.saslPlain, false}} {
			// Through the listener's advertised address only: a client
			// sent to another listener by Metadata would fail here.
			if err := roundTrip(t, sn.saslClient(t, l.addr, l.tlsOn, m), "sasl-"+strings.ToLower(name)); err != nil {
				t.Errorf("%s on %s (tls %v): %v", name, l.addr, l.tlsOn, err)
			}
		}
	}
}

func TestSASLRefusesBadCredentials(t *testing.T) {
	sn := startSecureNode(t)
	adm := kadm.NewClient(sn.client())
	if res, err := adm.AlterUserSCRAMs(ctx(t), nil, []kadm.UpsertSCRAM{{User: "bob", Mechanism: kadm.ScramSha512, Iterations: 8192, Password: "bob-secret"}}); err != nil || res.Error() != nil {
		t.Fatalf("AlterUserSCRAMs: %v %v", err, res.Error())
	}
	other := securitytest.NewIssuer(t, "k1") // same kid, different key
	bad := map[string]sasl.Mechanism{
		"PLAIN wrong password":         plain.Auth{User: "alice", Pass: "nope"}.AsMechanism(),
		"PLAIN unknown user":           plain.Auth{User: "mallory", Pass: "alice-secret"}.AsMechanism(),
		"SCRAM-SHA-512 wrong password": scram.Auth{User: "bob", Pass: "nope"}.AsSha512Mechanism(),
		"SCRAM-SHA-256 no credential":  scram.Auth{User: "bob", Pass: "bob-secret"}.AsSha256Mechanism(),
		"OAUTHBEARER expired":          oauth.Auth{Token: sn.token(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})}.AsMechanism(),
		"OAUTHBEARER wrong issuer":     oauth.Auth{Token: sn.token(t, jwt.MapClaims{"iss": "https://evil.test"})}.AsMechanism(),
		"OAUTHBEARER wrong audience":   oauth.Auth{Token: sn.token(t, jwt.MapClaims{"aud": "other"})}.AsMechanism(),
		"OAUTHBEARER wrongly signed": oauth.Auth{Token: other.Token(t, jwt.MapClaims{"sub": "carol", "iss": "https://issuer.test", "aud": "strand",
			"exp": time.Now().Add(time.Hour).Unix()})}.AsMechanism(),
	}
	for name, m := range bad {
		_, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx(t), sn.saslClient(t, sn.saslSSL, true, m))
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Errorf("%s: got %v, want SASL_AUTHENTICATION_FAILED", name, err)
		}
	}
}

// TestUnauthenticatedGetsOnlyHandshake checks DESIGN.md invariant 10 on the
// wire: before authentication only ApiVersions and the SASL requests are
// answered, and after a failed authentication nothing is.
func TestUnauthenticatedGetsOnlyHandshake(t *testing.T) {
	sn := startSecureNode(t)
	expectClosed := func(c *rawConn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("connection not closed: %v", err)
		}
	}
	// A Metadata request before authenticating closes the connection.
	c := dial(t, sn.saslPlain)
	c.send(t, kmsg.NewPtrApiVersionsRequest(), 1)
	if corr, _ := c.recv(t); corr != 1 {
		t.Fatalf("ApiVersions correlation %d", corr)
	}
	c.send(t, kmsg.NewPtrMetadataRequest(), 2)
	expectClosed(c)

	// After the handshake, still nothing but SaslAuthenticate.
	c = dial(t, sn.saslPlain)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	c.send(t, hs, 1)
	_, body := c.recv(t)
	hsResp := kmsg.NewPtrSASLHandshakeResponse()
	hsResp.Version = 1
	if err := hsResp.ReadFrom(body); err != nil || hsResp.ErrorCode != 0 {
		t.Fatalf("handshake: %v %d", err, hsResp.ErrorCode)
	}
	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Topics = append(ct.Topics, kmsg.CreateTopicsRequestTopic{Topic: "x", NumPartitions: 1, ReplicationFactor: 1})
	c.send(t, ct, 2)
	expectClosed(c)

	// A wrong password gets SASL_AUTHENTICATION_FAILED and then nothing.
	c = dial(t, sn.saslPlain)
	c.send(t, hs, 1)
	c.recv(t)
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version, au.SASLAuthBytes = 1, []byte("\x00alice\x00wrong")
	c.send(t, au, 2)
	c.send(t, kmsg.NewPtrMetadataRequest(), 3) // pipelined: must not be answered
	_, body = c.recv(t)
	auResp := kmsg.NewPtrSASLAuthenticateResponse()
	auResp.Version = 1
	if err := auResp.ReadFrom(body); err != nil || auResp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("authenticate: %v %d", err, auResp.ErrorCode)
	}
	if auResp.ErrorMessage != nil && strings.Contains(*auResp.ErrorMessage, "wrong") {
		t.Fatalf("error message echoes the password: %q", *auResp.ErrorMessage)
	}
	expectClosed(c)
}

func TestMutualTLS(t *testing.T) {
	sn := startSecureNode(t)
	cert, key := sn.ca.Issue(t, pkix.Name{CommonName: "Dave", OrganizationalUnit: []string{"eng"}})
	cl, err := kgo.NewClient(kgo.SeedBrokers(sn.ssl), kgo.DialTLSConfig(sn.ca.ClientTLS(t, cert, key)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := roundTrip(t, cl, "mtls"); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	// Without a certificate the handshake fails.
	conn, err := tls.Dial("tcp", sn.ssl, sn.ca.ClientTLS(t, nil, nil))
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1)) // TLS 1.3: the alert comes after the handshake
		conn.Close()
	}
	if err == nil {
		t.Fatal("handshake without a client certificate succeeded")
	}
	// A certificate from another CA is refused too.
	other := securitytest.NewCA(t)
	oc, ok := other.Issue(t, pkix.Name{CommonName: "eve"})
	conn, err = tls.Dial("tcp", sn.ssl, sn.ca.ClientTLS(t, oc, ok))
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("handshake with a foreign client certificate succeeded")
	}
}

func TestLogLimiter(t *testing.T) {
	l := &logLimiter{perSecond: 2}
	now := time.Now()
	for i, want := range []bool{true, true, false, false} {
		if ok, _ := l.allow(now); ok != want {
			t.Fatalf("line %d: allow %v", i, ok)
		}
	}
	if ok, dropped := l.allow(now.Add(time.Second)); !ok || dropped != 2 {
		t.Fatalf("next second: %v, %d dropped", ok, dropped)
	}
}

// TestUnauthenticatedConnectionTimesOut: a client that connects to a SASL
// listener and never authenticates is disconnected.
func TestUnauthenticatedConnectionTimesOut(t *testing.T) {
	old := saslAuthTimeout
	saslAuthTimeout = 300 * time.Millisecond
	t.Cleanup(func() { saslAuthTimeout = old })
	sn := startSecureNode(t)
	c := dial(t, sn.saslPlain)
	c.send(t, kmsg.NewPtrApiVersionsRequest(), 1)
	c.recv(t)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle unauthenticated connection not closed: %v", err)
	}
	// An authenticated one stays past that time.
	c = dial(t, sn.saslPlain)
	saslPlainLogin(t, c, 1, "alice", "alice-secret")
	time.Sleep(500 * time.Millisecond) // longer than saslAuthTimeout
	c.send(t, kmsg.NewPtrMetadataRequest(), 3)
	if corr, _ := c.recv(t); corr != 3 {
		t.Fatalf("correlation %d", corr)
	}
}

// TestSASLOnPlaintextListener: SASL requests on a listener without SASL
// get ILLEGAL_SASL_STATE (in the request's version) and the connection closes.
func TestSASLOnPlaintextListener(t *testing.T) {
	n := startNode(t)
	c := dial(t, n.addr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	c.send(t, hs, 1)
	_, body := c.recv(t)
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.Version = 1
	if err := resp.ReadFrom(body); err != nil || resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("handshake on PLAINTEXT: %v %d", err, resp.ErrorCode)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed: %v", err)
	}
}

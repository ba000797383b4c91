package server

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// saslPlainLogin authenticates c with PLAIN (v1 requests) and returns the
// session lifetime the broker gave.
func saslPlainLogin(t *testing.T, c *rawConn, corr int32, user, pass string) int64 {
	t.Helper()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	c.send(t, hs, corr)
	c.recv(t)
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version, au.SASLAuthBytes = 1, []byte("\x00"+user+"\x00"+pass)
	c.send(t, au, corr+1)
	_, body := c.recv(t)
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	resp.Version = 1
	if err := resp.ReadFrom(body); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("authenticate: %v %d", err, resp.ErrorCode)
	}
	return resp.SessionLifetimeMillis
}

// TestReauthentication covers KIP-368: the session lifetime is in the
// SaslAuthenticate response; a client that re-authenticates in time keeps
// its connection, one that does not is cut off at its next request; and
// franz-go, which re-authenticates on its own, keeps producing across
// several lifetimes.
func TestReauthentication(t *testing.T) {
	sn := startSecureNode(t, [2]string{"listener.name.sasl_plaintext.connections.max.reauth.ms", "1000"})
	c := dial(t, sn.saslPlain)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if life := saslPlainLogin(t, c, 1, "alice", "alice-secret"); life <= 0 || life > 1000 {
		t.Fatalf("session lifetime %d, want (0, 1000]", life)
	}
	c.send(t, kmsg.NewPtrMetadataRequest(), 3)
	if corr, _ := c.recv(t); corr != 3 {
		t.Fatalf("metadata answered with correlation %d", corr)
	}
	start := time.Now()
	// Re-authenticate twice, each within the lifetime: the session goes on.
	for i := range 2 {
		for time.Since(start) < time.Duration(600*(i+1))*time.Millisecond {
			time.Sleep(20 * time.Millisecond)
		}
		saslPlainLogin(t, c, int32(10+10*i), "alice", "alice-secret")
	}
	c.send(t, kmsg.NewPtrMetadataRequest(), 40)
	if corr, _ := c.recv(t); corr != 40 {
		t.Fatalf("metadata after re-authentication: correlation %d", corr)
	}
	// Re-authenticating as someone else is refused.
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	c.send(t, hs, 50)
	c.recv(t)
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version, au.SASLAuthBytes = 1, []byte("\x00admin\x00admin-secret")
	c.send(t, au, 51)
	_, body := c.recv(t)
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	resp.Version = 1
	if err := resp.ReadFrom(body); err != nil || resp.ErrorCode == 0 {
		t.Fatalf("re-authentication as another principal: %v %d", err, resp.ErrorCode)
	}

	// A session left to expire is closed at the next request.
	c = dial(t, sn.saslPlain)
	saslPlainLogin(t, c, 1, "alice", "alice-secret")
	expired := time.Now().Add(1100 * time.Millisecond)
	for time.Now().Before(expired) {
		time.Sleep(20 * time.Millisecond)
	}
	c.send(t, kmsg.NewPtrMetadataRequest(), 3)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("expired session answered: %v", err)
	}

	// franz-go re-authenticates by itself.
	cl := sn.saslClient(t, sn.saslPlain, false, plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism())
	until := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(until); i++ {
		if err := roundTrip(t, cl, "reauth"); err != nil {
			t.Fatalf("round trip %d after %v: %v", i, time.Since(until.Add(-3*time.Second)), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

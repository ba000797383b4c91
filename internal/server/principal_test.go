package server

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"net"
	"testing"

	"strand/internal/config"
	"strand/internal/security"
	"strand/internal/security/securitytest"
)

// TestSessionPrincipalFromListener checks what authorization will see:
// the session of a connection carries its listener's name, the client's
// IP, and the principal (User:ANONYMOUS on PLAINTEXT and on SSL without a
// client certificate when ssl.client.auth=requested; the mapped
// certificate subject with one).
func TestSessionPrincipalFromListener(t *testing.T) {
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	cfg, err := config.Load("", [][2]string{
		{"listeners", "PLAINTEXT://127.0.0.1:1,CLIENT://127.0.0.1:2"},
		{"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CLIENT:SSL"},
		{"ssl.keystore.type", "PEM"}, {"ssl.keystore.location", securitytest.WriteFile(t, dir, "server.pem", key, cert)},
		{"ssl.truststore.type", "PEM"}, {"ssl.truststore.location", securitytest.WriteFile(t, dir, "ca.pem", ca.PEM)},
		{"listener.name.client.ssl.client.auth", "requested"},
		{"listener.name.client.ssl.principal.mapping.rules", "RULE:^CN=([^,]*),OU=apps.*$/$1/L,DEFAULT"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg}
	ls, _ := cfg.Listeners()
	session := func(l config.Listener, dial func(addr string) (net.Conn, error)) *security.Session {
		t.Helper()
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ln, err := s.secure(l, raw)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := dial(raw.Addr().String())
			if err == nil {
				c.Write([]byte{0}) // completes the client side of a TLS 1.3 handshake
				defer c.Close()
				c.Read(make([]byte, 1))
			}
		}()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := s.startAuth(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		return a.sess
	}
	tcp := func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
	withCert := func(cn string, ou ...string) func(string) (net.Conn, error) {
		cc, ck := ca.Issue(t, pkix.Name{CommonName: cn, OrganizationalUnit: ou})
		return func(addr string) (net.Conn, error) { return tls.Dial("tcp", addr, ca.ClientTLS(t, cc, ck)) }
	}
	noCert := func(addr string) (net.Conn, error) { return tls.Dial("tcp", addr, ca.ClientTLS(t, nil, nil)) }

	for _, tc := range []struct {
		listener int
		dial     func(string) (net.Conn, error)
		want     string
	}{
		{0, tcp, "User:ANONYMOUS"},
		{1, noCert, "User:ANONYMOUS"},
		{1, withCert("Alice", "apps"), "User:alice"},
		{1, withCert("bob"), "User:CN=bob"},
	} {
		sess := session(ls[tc.listener], tc.dial)
		if sess.Principal.String() != tc.want || sess.Host != "127.0.0.1" || sess.Listener != ls[tc.listener].Name {
			t.Errorf("listener %s: session %+v, want principal %s", ls[tc.listener].Name, sess, tc.want)
		}
	}
}

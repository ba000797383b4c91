package security

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// Props looks up a listener's security property by its Kafka name
// (ssl.keystore.location, ...), with listener.name.<l>. overrides applied.
type Props func(name string) string

// ServerTLS builds the TLS configuration of an SSL or SASL_SSL listener:
// the keystore (ssl.keystore.*) is the server certificate, the truststore
// (ssl.truststore.*) verifies client certificates per ssl.client.auth. The
// keystore and truststore files are re-read when their modification time
// changes (checked at most once a second), so certificates can be rotated
// without a restart.
func ServerTLS(p Props) (*tls.Config, error) {
	ks, err := newKeystore(p)
	if err != nil {
		return nil, err
	}
	cfg, err := baseTLS(p)
	if err != nil {
		return nil, err
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ks.certificate() }
	switch p("ssl.client.auth") {
	case "required", "requested":
		ts, err := newTruststore(p)
		if err != nil {
			return nil, err
		}
		if ts == nil {
			return nil, errors.New("ssl.client.auth needs a truststore (ssl.truststore.location or ssl.truststore.certificates)")
		}
		required := p("ssl.client.auth") == "required"
		cfg.ClientAuth = tls.RequestClientCert
		if required {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		// Verify against the current truststore (reloaded on change).
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil // requested and not given: anonymous
			}
			return ts.verify(raw, x509.ExtKeyUsageClientAuth, "")
		}
	}
	return cfg, nil
}

// ClientTLS builds the TLS configuration a follower uses towards another
// broker's SSL or SASL_SSL listener: the truststore verifies the server, the
// keystore (if any) is the client certificate for mutual TLS.
func ClientTLS(p Props, serverName string) (*tls.Config, error) {
	cfg, err := baseTLS(p)
	if err != nil {
		return nil, err
	}
	ts, err := newTruststore(p)
	if err != nil {
		return nil, err
	}
	if p("ssl.keystore.location") != "" || p("ssl.keystore.key") != "" {
		ks, err := newKeystore(p)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return ks.certificate() }
	}
	verifyHost := ""
	if p("ssl.endpoint.identification.algorithm") == "https" {
		verifyHost = serverName
	}
	cfg.InsecureSkipVerify = true // verified below, against the reloadable truststore
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if ts == nil {
			return verifySystem(raw, verifyHost)
		}
		return ts.verify(raw, x509.ExtKeyUsageServerAuth, verifyHost)
	}
	return cfg, nil
}

// baseTLS sets versions and cipher suites.
func baseTLS(p Props) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}
	for _, v := range splitList(p("ssl.enabled.protocols")) {
		var ver uint16
		switch v {
		case "TLSv1.2":
			ver = tls.VersionTLS12
		case "TLSv1.3":
			ver = tls.VersionTLS13
		default:
			return nil, fmt.Errorf("ssl.enabled.protocols: %q is not supported (TLSv1.2, TLSv1.3)", v)
		}
		cfg.MinVersion, cfg.MaxVersion = min(cfg.MinVersion, ver), max(cfg.MaxVersion, ver)
	}
	if cfg.MinVersion > cfg.MaxVersion {
		return nil, errors.New("ssl.enabled.protocols is empty")
	}
	if suites := splitList(p("ssl.cipher.suites")); len(suites) > 0 {
		byName := map[string]uint16{}
		for _, s := range tls.CipherSuites() {
			byName[s.Name] = s.ID
		}
		for _, name := range suites {
			id, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("ssl.cipher.suites: %q is not a supported secure cipher suite", name)
			}
			cfg.CipherSuites = append(cfg.CipherSuites, id)
		}
	}
	return cfg, nil
}

func splitList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// reloader re-reads a file when its modification time or size changes,
// checking at most once a second. Readers (every TLS handshake) never wait
// for file I/O: one of them checks the file while the others keep using
// the current value.
type reloader[T any] struct {
	path  string
	parse func([]byte) (T, error)

	cur     atomic.Pointer[loaded[T]] // the last good parse; nil before the first
	checked atomic.Int64              // UnixNano of the last check
	mu      sync.Mutex                // serialises checks; taken with TryLock once a value exists
}

type loaded[T any] struct {
	val   T
	mtime time.Time
	size  int64
}

func newReloader[T any](path string, parse func([]byte) (T, error)) (*reloader[T], error) {
	r := &reloader[T]{path: path, parse: parse}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return r, nil
}

// get returns the parsed file, re-reading it if it changed. Once a value
// exists, a file that vanished, cannot be read or does not parse (a
// rotation half written) keeps the old value.
func (r *reloader[T]) get() (T, error) {
	cur := r.cur.Load()
	now := time.Now()
	if cur != nil && now.Sub(time.Unix(0, r.checked.Load())) < time.Second {
		return cur.val, nil
	}
	if cur == nil {
		r.mu.Lock()
	} else if !r.mu.TryLock() {
		return cur.val, nil // another reader is checking the file
	}
	defer r.mu.Unlock()
	cur = r.cur.Load()
	r.checked.Store(now.UnixNano())
	var zero T
	st, err := os.Stat(r.path)
	if err == nil && cur != nil && st.ModTime().Equal(cur.mtime) && st.Size() == cur.size {
		return cur.val, nil
	}
	var b []byte
	if err == nil {
		b, err = os.ReadFile(r.path)
	}
	var v T
	if err == nil {
		if v, err = r.parse(b); err != nil {
			err = fmt.Errorf("%s: %w", r.path, err)
		}
	}
	if err != nil {
		if cur != nil {
			return cur.val, nil
		}
		return zero, err
	}
	r.cur.Store(&loaded[T]{val: v, mtime: st.ModTime(), size: st.Size()})
	return v, nil
}

// keystore is a listener's own certificate and key.
type keystore struct {
	file   *reloader[*tls.Certificate]
	inline *tls.Certificate
}

func newKeystore(p Props) (*keystore, error) {
	typ := strings.ToUpper(p("ssl.keystore.type"))
	if key := p("ssl.keystore.key"); key != "" {
		if typ != "PEM" {
			return nil, errors.New("ssl.keystore.key needs ssl.keystore.type=PEM")
		}
		c, err := parsePEMKeystore([]byte(key+"\n"+p("ssl.keystore.certificate.chain")), p("ssl.key.password"))
		if err != nil {
			return nil, fmt.Errorf("ssl.keystore.key/ssl.keystore.certificate.chain: %w", err)
		}
		return &keystore{inline: c}, nil
	}
	loc := p("ssl.keystore.location")
	if loc == "" {
		return nil, errors.New("a TLS listener needs ssl.keystore.location (or ssl.keystore.key and ssl.keystore.certificate.chain)")
	}
	var parse func([]byte) (*tls.Certificate, error)
	switch typ {
	case "PEM":
		pw := p("ssl.key.password")
		parse = func(b []byte) (*tls.Certificate, error) { return parsePEMKeystore(b, pw) }
	case "PKCS12":
		pw := p("ssl.keystore.password")
		parse = func(b []byte) (*tls.Certificate, error) { return parsePKCS12Keystore(b, pw) }
	default:
		return nil, fmt.Errorf("ssl.keystore.type %q is not supported: use PEM or PKCS12", p("ssl.keystore.type"))
	}
	r, err := newReloader(loc, parse)
	if err != nil {
		return nil, fmt.Errorf("ssl.keystore.location: %w", err)
	}
	return &keystore{file: r}, nil
}

func (k *keystore) certificate() (*tls.Certificate, error) {
	if k.inline != nil {
		return k.inline, nil
	}
	return k.file.get()
}

// parsePEMKeystore reads a private key and certificate chain from PEM
// blocks in any order, as Kafka's PEM keystore does. An encrypted PKCS#8
// key ("ENCRYPTED PRIVATE KEY") is not supported by the standard library and
// is refused with a clear error.
func parsePEMKeystore(b []byte, keyPassword string) (*tls.Certificate, error) {
	var certs, keys []byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch {
		case blk.Type == "CERTIFICATE":
			certs = append(certs, pem.EncodeToMemory(blk)...)
		case blk.Type == "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted PEM private keys are not supported: store the key unencrypted (file mode 0600) or use a PKCS12 keystore")
		case strings.HasSuffix(blk.Type, "PRIVATE KEY"):
			keys = append(keys, pem.EncodeToMemory(blk)...)
		}
	}
	_ = keyPassword
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	if len(keys) == 0 {
		return nil, errors.New("no PRIVATE KEY block")
	}
	c, err := tls.X509KeyPair(certs, keys)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func parsePKCS12Keystore(b []byte, password string) (*tls.Certificate, error) {
	key, leaf, cas, err := pkcs12.DecodeChain(b, password)
	if err != nil {
		return nil, fmt.Errorf("pkcs12: %w", err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, ca := range cas {
		c.Certificate = append(c.Certificate, ca.Raw)
	}
	return c, nil
}

// truststore is the set of CA certificates a listener trusts.
type truststore struct {
	file   *reloader[*x509.CertPool]
	inline *x509.CertPool
}

// newTruststore returns nil when no truststore is configured.
func newTruststore(p Props) (*truststore, error) {
	typ := strings.ToUpper(p("ssl.truststore.type"))
	if certs := p("ssl.truststore.certificates"); certs != "" {
		pool, err := parsePEMPool([]byte(certs))
		if err != nil {
			return nil, fmt.Errorf("ssl.truststore.certificates: %w", err)
		}
		return &truststore{inline: pool}, nil
	}
	loc := p("ssl.truststore.location")
	if loc == "" {
		return nil, nil
	}
	var parse func([]byte) (*x509.CertPool, error)
	switch typ {
	case "PEM":
		parse = parsePEMPool
	case "PKCS12":
		pw := p("ssl.truststore.password")
		parse = func(b []byte) (*x509.CertPool, error) {
			certs, err := pkcs12.DecodeTrustStore(b, pw)
			if err != nil {
				return nil, fmt.Errorf("pkcs12: %w", err)
			}
			pool := x509.NewCertPool()
			for _, c := range certs {
				pool.AddCert(c)
			}
			return pool, nil
		}
	default:
		return nil, fmt.Errorf("ssl.truststore.type %q is not supported: use PEM or PKCS12", p("ssl.truststore.type"))
	}
	r, err := newReloader(loc, parse)
	if err != nil {
		return nil, fmt.Errorf("ssl.truststore.location: %w", err)
	}
	return &truststore{file: r}, nil
}

func parsePEMPool(b []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bytes.TrimSpace(b)) {
		return nil, errors.New("no PEM certificate")
	}
	return pool, nil
}

func (t *truststore) pool() (*x509.CertPool, error) {
	if t.inline != nil {
		return t.inline, nil
	}
	return t.file.get()
}

// verify checks a peer's chain against the truststore.
func (t *truststore) verify(raw [][]byte, usage x509.ExtKeyUsage, host string) error {
	pool, err := t.pool()
	if err != nil {
		return err
	}
	return verifyChain(raw, pool, usage, host)
}

func verifySystem(raw [][]byte, host string) error {
	return verifyChain(raw, nil, x509.ExtKeyUsageServerAuth, host)
}

func verifyChain(raw [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage, host string) error {
	if len(raw) == 0 {
		return errors.New("no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

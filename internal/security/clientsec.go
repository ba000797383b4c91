package security

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ClientSecurity is how a client tool (strand bench, the admin commands)
// reaches the brokers, with Kafka's client settings: security.protocol,
// sasl.mechanism, the SASL username and password, and the CA that signed
// the brokers' certificates. Connections are made by NewClientDialer (TLS,
// then SaslHandshake/SaslAuthenticate), the code followers use between
// brokers.
type ClientSecurity struct {
	Protocol  string // PLAINTEXT (""), SSL, SASL_PLAINTEXT or SASL_SSL
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols)
	Username  string
	Password  string
	CAFile    string // PEM file of trusted CAs; "" trusts the system's
	// KeystoreFile is a PEM file with the client's private key and
	// certificate chain (as the broker's PEM keystore), presented for
	// mutual TLS on SSL and SASL_SSL; "" presents none.
	KeystoreFile string
}

var clientProtocols = []string{"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}

// Proto is the protocol, upper-case, PLAINTEXT when unset.
func (s ClientSecurity) Proto() string {
	if s.Protocol == "" {
		return "PLAINTEXT"
	}
	return strings.ToUpper(s.Protocol)
}

// SASL reports whether the protocol authenticates with SASL.
func (s ClientSecurity) SASL() bool { return strings.HasPrefix(s.Proto(), "SASL_") }

// String names the protocol and, for SASL, the mechanism and user.
func (s ClientSecurity) String() string {
	if s.SASL() {
		return fmt.Sprintf("%s %s as %s", s.Proto(), strings.ToUpper(s.Mechanism), s.Username)
	}
	return s.Proto()
}

// Check reports a setting that cannot work (unknown protocol or mechanism,
// SASL without a user, a mechanism without SASL).
func (s ClientSecurity) Check() error {
	if !slices.Contains(clientProtocols, s.Proto()) {
		return fmt.Errorf("security protocol %q: want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", s.Protocol)
	}
	if s.KeystoreFile != "" && !strings.HasSuffix(s.Proto(), "SSL") {
		return errors.New("a client keystore (--tls-keystore) needs --security-protocol SSL or SASL_SSL")
	}
	if !s.SASL() {
		if s.Mechanism != "" || s.Username != "" {
			return fmt.Errorf("--sasl-mechanism and --sasl-username need --security-protocol SASL_PLAINTEXT or SASL_SSL")
		}
		return nil
	}
	switch strings.ToUpper(s.Mechanism) {
	case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
	default:
		return fmt.Errorf("sasl mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
	}
	if s.Username == "" {
		return errors.New("SASL needs --sasl-username (and --sasl-password)")
	}
	return nil
}

// Dialer returns how to open one authenticated connection (TCP, TLS, SASL).
func (s ClientSecurity) Dialer() (Dialer, error) {
	if s.Proto() == "PLAINTEXT" {
		return func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			return d.DialContext(ctx, "tcp", addr)
		}, nil
	}
	props := map[string]string{
		"ssl.enabled.protocols":                 "TLSv1.2,TLSv1.3",
		"ssl.endpoint.identification.algorithm": "https",
	}
	if s.KeystoreFile != "" {
		props["ssl.keystore.type"], props["ssl.keystore.location"] = "PEM", s.KeystoreFile
	}
	if s.CAFile != "" {
		props["ssl.truststore.type"], props["ssl.truststore.location"] = "PEM", s.CAFile
	}
	return NewClientDialer(ClientConfig{
		Protocol: s.Proto(), Props: func(k string) string { return props[k] },
		Mechanism: strings.ToUpper(s.Mechanism), User: s.Username, Password: s.Password,
	})
}

// KgoOpts are the franz-go options that make a client connect per s.
func (s ClientSecurity) KgoOpts() ([]kgo.Opt, error) {
	if s.Proto() == "PLAINTEXT" {
		return nil, nil
	}
	d, err := s.Dialer()
	if err != nil {
		return nil, err
	}
	return []kgo.Opt{kgo.Dialer(func(ctx context.Context, _, host string) (net.Conn, error) {
		return d(ctx, host, 10*time.Second)
	})}, nil
}

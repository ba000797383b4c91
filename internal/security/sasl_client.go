package security

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/xdg-go/scram"
)

// ClientConfig is how a broker connects to another broker's listener as a
// client (followers fetching from leaders): the listener's protocol, its
// TLS settings and, for SASL, the mechanism and this broker's credentials.
type ClientConfig struct {
	Protocol  string      // PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
	Props     Props       // the listener's ssl.* properties (for SSL, SASL_SSL)
	Mechanism string      // sasl.mechanism.inter.broker.protocol
	User      string      // from the listener's JAAS username
	Password  string      // from the listener's JAAS password
	TLS       *tls.Config // built by NewClientDialer; nil for plaintext
}

// Dialer connects to a broker and authenticates per ClientConfig.
type Dialer func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)

// NewClientDialer checks cfg and returns a dialer for it.
func NewClientDialer(cfg ClientConfig) (Dialer, error) {
	sasl := cfg.Protocol == "SASL_PLAINTEXT" || cfg.Protocol == "SASL_SSL"
	if sasl {
		switch cfg.Mechanism {
		case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		default:
			return nil, fmt.Errorf("sasl.mechanism.inter.broker.protocol %q: brokers authenticate to each other with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", cfg.Mechanism)
		}
		if cfg.User == "" {
			return nil, errors.New("inter-broker SASL needs username and password in the inter-broker listener's sasl.jaas.config")
		}
	}
	tlsOn := cfg.Protocol == "SSL" || cfg.Protocol == "SASL_SSL"
	return func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if tlsOn {
			host, _, _ := net.SplitHostPort(addr)
			tc, err := ClientTLS(cfg.Props, host)
			if err != nil {
				c.Close()
				return nil, err
			}
			tc.ServerName = host
			tconn := tls.Client(c, tc)
			hctx, cancel := context.WithTimeout(ctx, timeout)
			err = tconn.HandshakeContext(hctx)
			cancel()
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
			}
			c = tconn
		}
		if sasl {
			c.SetDeadline(time.Now().Add(timeout))
			if err := ClientAuthenticate(c, cfg.Mechanism, cfg.User, cfg.Password); err != nil {
				c.Close()
				return nil, fmt.Errorf("SASL %s with %s: %w", cfg.Mechanism, addr, err)
			}
			c.SetDeadline(time.Time{})
		}
		return c, nil
	}, nil
}

// ClientAuthenticate runs SaslHandshake v1 and SaslAuthenticate v1 on c as
// a client (PLAIN, or SCRAM with xdg-go/scram's client).
func ClientAuthenticate(c net.Conn, mechanism, user, password string) error {
	r := bufio.NewReader(c)
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("strand-broker"))
	corr := int32(0)
	roundTrip := func(req kmsg.Request, resp kmsg.Response) error {
		corr++
		if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
			return err
		}
		var sz [4]byte
		if _, err := io.ReadFull(r, sz[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(sz[:])
		if n < 4 || n > 1<<20 {
			return fmt.Errorf("response of %d bytes", n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		resp.SetVersion(req.GetVersion())
		return resp.ReadFrom(b[4:]) // v1 responses have no tagged header
	}
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, mechanism
	hsResp := kmsg.NewPtrSASLHandshakeResponse()
	if err := roundTrip(hs, hsResp); err != nil {
		return fmt.Errorf("SaslHandshake: %w", err)
	}
	if err := kerr.ErrorForCode(hsResp.ErrorCode); err != nil {
		return fmt.Errorf("SaslHandshake: %w (server offers %v)", err, hsResp.SupportedMechanisms)
	}
	step := func(msg []byte) ([]byte, error) {
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version, req.SASLAuthBytes = 1, msg
		resp := kmsg.NewPtrSASLAuthenticateResponse()
		if err := roundTrip(req, resp); err != nil {
			return nil, fmt.Errorf("SaslAuthenticate: %w", err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			if resp.ErrorMessage != nil {
				return nil, fmt.Errorf("%w: %s", err, *resp.ErrorMessage)
			}
			return nil, err
		}
		return resp.SASLAuthBytes, nil
	}
	switch mechanism {
	case MechanismPlain:
		_, err := step([]byte("\x00" + user + "\x00" + password))
		return err
	case MechanismScramSHA256, MechanismScramSHA512:
		gen := scram.SHA256
		if mechanism == MechanismScramSHA512 {
			gen = scram.SHA512
		}
		cl, err := gen.NewClient(user, password, "")
		if err != nil {
			return err
		}
		conv := cl.NewConversation()
		in := ""
		for !conv.Done() {
			out, err := conv.Step(in)
			if err != nil {
				return fmt.Errorf("SCRAM: %w", err)
			}
			if conv.Done() {
				break
			}
			got, err := step([]byte(out))
			if err != nil {
				return err
			}
			in = string(got)
		}
		if !conv.Valid() {
			return errors.New("SCRAM: the server's signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("mechanism %s is not supported as a client", mechanism)
}

package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"strand/internal/config"
	"strand/internal/controller"
	"strand/internal/metadata"
	"strand/internal/replica"
	"strand/internal/security"
)

// listenerSec is the security of one client listener: its protocol
// (listener.security.protocol.map), TLS configuration (SSL, SASL_SSL) and
// SASL mechanisms (SASL_PLAINTEXT, SASL_SSL). Immutable once built.
type listenerSec struct {
	name     string
	protocol string
	tls      *tls.Config                   // nil for PLAINTEXT and SASL_PLAINTEXT
	mapper   *security.PrincipalMapper     // client certificate subject -> principal
	mechs    map[string]security.Mechanism // by name; empty unless SASL
	mechList []string                      // enabled mechanism names, in configured order
	reauth   time.Duration                 // connections.max.reauth.ms; 0: sessions never expire
	failLog  *logLimiter                   // rate of authentication-failure log lines
}

func (l *listenerSec) sasl() bool {
	return l.protocol == config.ProtocolSASLPlaintext || l.protocol == config.ProtocolSASLSSL
}

// newListenerSec builds a listener's security from the configuration.
func (s *Server) newListenerSec(l config.Listener) (*listenerSec, error) {
	props := func(name string) string { return s.cfg.ListenerString(l.Name, name) }
	sec := &listenerSec{name: l.Name, protocol: l.Protocol, mechs: map[string]security.Mechanism{}, failLog: &logLimiter{perSecond: 10}}
	if sec.protocol == "" {
		sec.protocol = config.ProtocolPlaintext
	}
	var err error
	if sec.mapper, err = security.ParsePrincipalMapping(props("ssl.principal.mapping.rules")); err != nil {
		return nil, err
	}
	if sec.protocol == config.ProtocolSSL || sec.protocol == config.ProtocolSASLSSL {
		if sec.tls, err = security.ServerTLS(props); err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
	}
	if !sec.sasl() {
		return sec, nil
	}
	sec.reauth = time.Duration(parseMillis(props("connections.max.reauth.ms"))) * time.Millisecond
	for _, m := range strings.Split(props("sasl.enabled.mechanisms"), ",") {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			continue
		}
		mech, err := s.newMechanism(l.Name, m)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		sec.mechs[m] = mech
		sec.mechList = append(sec.mechList, m)
	}
	if len(sec.mechs) == 0 {
		return nil, fmt.Errorf("listener %s: sasl.enabled.mechanisms is empty", l.Name)
	}
	return sec, nil
}

func parseMillis(v string) int64 {
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// newMechanism builds one SASL mechanism of a listener.
func (s *Server) newMechanism(listener, name string) (security.Mechanism, error) {
	prop := func(p string) string { return s.cfg.ListenerMechanismString(listener, name, p) }
	switch name {
	case security.MechanismPlain:
		jaasText := prop("sasl.jaas.config")
		if jaasText == "" {
			return nil, fmt.Errorf("PLAIN needs listener.name.%s.plain.sasl.jaas.config (PlainLoginModule with user_<name>=\"<password>\" entries)", strings.ToLower(listener))
		}
		j, err := security.ParseJAAS(jaasText)
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(j.Module, "PlainLoginModule") {
			return nil, fmt.Errorf("PLAIN: login module %s is not PlainLoginModule", j.Module)
		}
		return security.NewPlain(j.PlainUsers()), nil
	case security.MechanismScramSHA256, security.MechanismScramSHA512:
		return security.NewScram(name, s.scramLookup)
	case security.MechanismOAuthBearer:
		return security.NewOAuthBearer(security.OAuthConfig{
			JWKS:      prop("sasl.oauthbearer.jwks.endpoint.url"),
			Refresh:   time.Duration(parseMillis(prop("sasl.oauthbearer.jwks.endpoint.refresh.ms"))) * time.Millisecond,
			Audience:  splitNonEmpty(prop("sasl.oauthbearer.expected.audience")),
			Issuer:    prop("sasl.oauthbearer.expected.issuer"),
			SubClaim:  prop("sasl.oauthbearer.sub.claim.name"),
			ClockSkew: time.Duration(parseMillis(prop("sasl.oauthbearer.clock.skew.seconds"))) * time.Second,
		})
	}
	return nil, fmt.Errorf("SASL mechanism %s is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)", name)
}

func splitNonEmpty(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// scramLookup finds a SCRAM credential in the current metadata image, so a
// credential altered anywhere in the cluster applies to the next login.
func (s *Server) scramLookup(user, mechanism string) (security.ScramCredential, bool) {
	c, ok := s.store.Image().Scram(user, mechanism)
	if !ok {
		return security.ScramCredential{}, false
	}
	return security.ScramCredential{Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey, Iterations: c.Iterations}, true
}

// secure wraps a bound listener with its security: TLS for SSL and
// SASL_SSL, and the listener's identity for every accepted connection.
func (s *Server) secure(l config.Listener, ln net.Listener) (net.Listener, error) {
	sec, err := s.newListenerSec(l)
	if err != nil {
		return nil, err
	}
	return &secListener{Listener: ln, sec: sec}, nil
}

// secListener is a client listener that tags each accepted connection with
// the listener's security.
type secListener struct {
	net.Listener
	sec *listenerSec
}

// Accept returns a *secConn (TLS not yet handshaken: see startAuth).
func (l *secListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &secConn{Conn: c, sec: l.sec}
	if l.sec.tls != nil {
		tc := tls.Server(c, l.sec.tls)
		sc.Conn, sc.tls = tc, tc
	}
	return sc, nil
}

// secConn is an accepted connection with its listener's security.
type secConn struct {
	net.Conn
	sec *listenerSec
	tls *tls.Conn // nil unless SSL or SASL_SSL
}

// tlsHandshakeTimeout bounds a client's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// startAuth completes a connection's TLS handshake and returns its
// authentication state: authenticated at once on PLAINTEXT and SSL (as
// User:ANONYMOUS, or the client certificate's mapped subject under
// ssl.client.auth), awaiting SASL otherwise.
func (s *Server) startAuth(ctx context.Context, c net.Conn) (*connAuth, error) {
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	sc, ok := c.(*secConn)
	if !ok {
		return &connAuth{sess: &security.Session{Principal: security.Anonymous, Host: host}, state: authDone}, nil
	}
	a := &connAuth{sec: sc.sec, sess: &security.Session{Principal: security.Anonymous, Host: host, Listener: sc.sec.name}, state: authDone}
	if sc.tls != nil {
		hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
		err := sc.tls.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		if certs := sc.tls.ConnectionState().PeerCertificates; len(certs) > 0 {
			p, err := sc.sec.mapper.CertificatePrincipal(certs[0])
			if err != nil {
				return nil, err
			}
			a.sess.Principal = p
		}
	}
	if sc.sec.sasl() {
		a.state = authHandshake
		a.sess.Principal = security.Anonymous
		a.deadline = time.Now().Add(saslAuthTimeout)
	}
	return a, nil
}

// advertisedFor returns the host and port of broker b that a client on the
// listener in ctx's session should use: b's endpoint for that listener when
// it has one, else its default client endpoint.
func advertisedFor(ctx context.Context, b metadata.Broker) (string, int32) {
	if l := security.SessionFrom(ctx).Listener; l != "" {
		if addr, ok := b.Listeners[l]; ok {
			if h, p, err := net.SplitHostPort(addr); err == nil {
				if n, err := strconv.ParseUint(p, 10, 16); err == nil {
					return h, int32(n)
				}
			}
		}
	}
	return b.Host, b.Port
}

// advertisedListeners maps each advertised client listener name to its host:port.
func advertisedListeners(cfg *config.Broker) map[string]string {
	adv, err := cfg.AdvertisedListeners()
	if err != nil || len(adv) < 2 {
		return nil // one listener: Host/Port says it all
	}
	out := map[string]string{}
	for _, l := range adv {
		out[l.Name] = l.Addr()
	}
	return out
}

// interBrokerDialer is how followers connect to leaders: as clients of the
// inter-broker listener (inter.broker.listener.name, or the listener named
// by security.inter.broker.protocol), with its protocol, its TLS settings
// and, for SASL, sasl.mechanism.inter.broker.protocol with the username and
// password of the listener's JAAS configuration. nil means plain TCP.
func (s *Server) interBrokerDialer() (security.Dialer, error) {
	name := s.cfg.InterBrokerListenerName()
	proto, ok := s.cfg.ListenerProtocol(name)
	if !ok || proto == config.ProtocolPlaintext {
		return nil, nil
	}
	cc := security.ClientConfig{Protocol: proto, Props: func(p string) string { return s.cfg.ListenerString(name, p) }}
	if proto == config.ProtocolSASLPlaintext || proto == config.ProtocolSASLSSL {
		cc.Mechanism = strings.ToUpper(s.cfg.ListenerString(name, "sasl.mechanism.inter.broker.protocol"))
		if j := s.cfg.ListenerMechanismString(name, cc.Mechanism, "sasl.jaas.config"); j != "" {
			jaas, err := security.ParseJAAS(j)
			if err != nil {
				return nil, fmt.Errorf("inter-broker listener %s: %w", name, err)
			}
			cc.User, cc.Password = jaas.Options["username"], jaas.Options["password"]
		}
	}
	d, err := security.NewClientDialer(cc)
	if err != nil {
		return nil, fmt.Errorf("inter-broker listener %s: %w", name, err)
	}
	return d, nil
}

// secureReplication makes followers (and the transaction coordinator's
// marker writes) use the inter-broker listener's security.
func (s *Server) secureReplication() error {
	d, err := s.interBrokerDialer()
	if err != nil || d == nil {
		return err
	}
	s.interDial = d
	s.parts.SetDialer(replica.DialFunc(d))
	return nil
}

// secureController sets up TLS on the controller listener (Raft and the
// controller RPCs) when the first of controller.listener.names maps to SSL:
// the node serves with the listener's keystore (and verifies peers per its
// ssl.client.auth), and dials other controllers with the same keystore as
// client certificate, verifying them against the truststore. Under an
// authorizer, peers need CLUSTER_ACTION (authorizeController).
func (s *Server) secureController(cfg *controller.Config) error {
	name := strings.TrimSpace(strings.Split(s.cfg.String("controller.listener.names"), ",")[0])
	proto, _ := s.cfg.ListenerProtocol(name)
	switch proto {
	case "", config.ProtocolPlaintext, config.ProtocolSSL:
	default:
		return fmt.Errorf("controller listener %s: security protocol %s is not supported there (use SSL, with ssl.client.auth=required for mutual authentication)", name, proto)
	}
	props := func(p string) string { return s.cfg.ListenerString(name, p) }
	if err := s.authorizeController(cfg, name, props); err != nil {
		return err
	}
	if proto != config.ProtocolSSL {
		return nil
	}
	srvTLS, err := security.ServerTLS(props)
	if err != nil {
		return fmt.Errorf("controller listener %s: %w", name, err)
	}
	if _, err := security.ClientTLS(props, ""); err != nil {
		return fmt.Errorf("controller listener %s: %w", name, err)
	}
	cfg.WrapListener = func(ln net.Listener) net.Listener { return tls.NewListener(ln, srvTLS) }
	cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		ct, err := security.ClientTLS(props, host)
		if err != nil {
			return nil, err
		}
		ct.ServerName = host
		d := tls.Dialer{Config: ct}
		return d.DialContext(ctx, "tcp", addr)
	}
	return nil
}

// authorizeController makes the controller listener admit, under an
// authorizer, only peers whose principal has CLUSTER_ACTION on the cluster
// (super.users pass), as Kafka requires of controller and inter-broker
// traffic: the principal is the mapped subject of the peer's certificate
// (ssl.principal.mapping.rules of that listener) on SSL with client
// authentication, else User:ANONYMOUS. Without an authorizer every peer
// the listener accepts is admitted.
func (s *Server) authorizeController(cfg *controller.Config, name string, props security.Props) error {
	if s.sec.authz == nil {
		return nil
	}
	mapper, err := security.ParsePrincipalMapping(props("ssl.principal.mapping.rules"))
	if err != nil {
		return fmt.Errorf("controller listener %s: %w", name, err)
	}
	authz := s.sec.authz
	cfg.AuthorizePeer = func(c net.Conn, acls []metadata.ACL) error {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		sess := &security.Session{Principal: security.Anonymous, Host: host, Listener: name}
		if tc, ok := c.(*tls.Conn); ok {
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				p, err := mapper.CertificatePrincipal(certs[0])
				if err != nil {
					return err
				}
				sess.Principal = p
			}
		}
		if !authz.Authorize(sess, acls, security.Action{Operation: metadata.OpClusterAction, ResourceType: metadata.ResourceCluster, ResourceName: metadata.ClusterResourceName}) {
			return fmt.Errorf("%s may not act as a controller peer: no CLUSTER_ACTION on the cluster", sess.Principal)
		}
		return nil
	}
	return nil
}

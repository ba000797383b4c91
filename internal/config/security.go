package config

import (
	"fmt"
	"strings"
)

// Security protocols of a listener, as Kafka names them.
const (
	ProtocolPlaintext     = "PLAINTEXT"
	ProtocolSSL           = "SSL"
	ProtocolSASLPlaintext = "SASL_PLAINTEXT"
	ProtocolSASLSSL       = "SASL_SSL"
)

// securityDefs are the listener security properties (TLS and SASL), with
// Kafka's names and defaults. Every one of them may also be given per
// listener as listener.name.<listener>.<property> (and the SASL ones per
// mechanism as listener.name.<listener>.<mechanism>.<property>), which wins
// over the plain name. They join brokerDefs at init.
var securityDefs = []*Def{
	{Name: "listener.security.protocol.map", Type: TypeList, Default: "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", Doc: "Listener name to security protocol, NAME:PROTOCOL,... Controller listeners and the inter-broker listener not in the map are PLAINTEXT.", ReadOnly: true, Valid: validProtocolMap},
	{Name: "security.inter.broker.protocol", Type: TypeString, Default: "PLAINTEXT", Doc: "Security protocol between brokers; names the inter-broker listener when inter.broker.listener.name is not set.", ReadOnly: true, Valid: oneOf(ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL)},
	{Name: "sasl.mechanism.inter.broker.protocol", Type: TypeString, Default: "GSSAPI", Doc: "SASL mechanism followers use on a SASL inter-broker listener (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; credentials from the listener's JAAS username/password).", ReadOnly: true},
	{Name: "sasl.enabled.mechanisms", Type: TypeList, Default: "GSSAPI", Doc: "SASL mechanisms of SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (GSSAPI is not supported).", ReadOnly: true},
	{Name: "sasl.jaas.config", Type: TypeString, Default: "", Doc: "JAAS login module configuration: PlainLoginModule user_<name>=\"<password>\" entries are the PLAIN users; username/password are the broker's own inter-broker credentials.", ReadOnly: true, Sensitive: true},
	{Name: "connections.max.reauth.ms", Type: TypeLong, Default: "0", Doc: "Longest SASL session before the client must re-authenticate (KIP-368); 0 never expires sessions.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "sasl.oauthbearer.jwks.endpoint.url", Type: TypeString, Default: "", Doc: "JSON Web Key Set validating OAUTHBEARER tokens: https:// (or http://) URL, file:// URL or path.", ReadOnly: true},
	{Name: "sasl.oauthbearer.jwks.endpoint.refresh.ms", Type: TypeLong, Default: "3600000", Doc: "How often an http(s) JWKS is fetched again (and at most every 10 s for a token with an unknown key id).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "sasl.oauthbearer.expected.audience", Type: TypeList, Default: "", Doc: "Audiences one of which a token's aud must name (empty: not checked).", ReadOnly: true},
	{Name: "sasl.oauthbearer.expected.issuer", Type: TypeString, Default: "", Doc: "Required iss of a token (empty: not checked).", ReadOnly: true},
	{Name: "sasl.oauthbearer.sub.claim.name", Type: TypeString, Default: "sub", Doc: "Claim holding the principal name.", ReadOnly: true},
	{Name: "sasl.oauthbearer.clock.skew.seconds", Type: TypeInt, Default: "30", Doc: "Clock skew allowed when checking exp/nbf/iat.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "ssl.keystore.type", Type: TypeString, Default: "JKS", Doc: "PEM or PKCS12 (JKS is not supported: convert it with keytool -importkeystore -deststoretype PKCS12).", ReadOnly: true},
	{Name: "ssl.keystore.location", Type: TypeString, Default: "", Doc: "Keystore file: PEM (private key and certificate chain) or PKCS12. Reloaded when it changes.", ReadOnly: true},
	{Name: "ssl.keystore.password", Type: TypeString, Default: "", Doc: "Password of a PKCS12 keystore.", ReadOnly: true, Sensitive: true},
	{Name: "ssl.key.password", Type: TypeString, Default: "", Doc: "Accepted for compatibility; encrypted PEM private keys are refused (keep the key file mode 0600, or use PKCS12).", ReadOnly: true, Sensitive: true},
	{Name: "ssl.keystore.key", Type: TypeString, Default: "", Doc: "Inline PEM private key (with ssl.keystore.certificate.chain, ssl.keystore.type=PEM).", ReadOnly: true, Sensitive: true},
	{Name: "ssl.keystore.certificate.chain", Type: TypeString, Default: "", Doc: "Inline PEM certificate chain.", ReadOnly: true},
	{Name: "ssl.truststore.type", Type: TypeString, Default: "JKS", Doc: "PEM or PKCS12: CA certificates trusted for client certificates (and by followers).", ReadOnly: true},
	{Name: "ssl.truststore.location", Type: TypeString, Default: "", Doc: "Truststore file. Reloaded when it changes.", ReadOnly: true},
	{Name: "ssl.truststore.password", Type: TypeString, Default: "", Doc: "Password of a PKCS12 truststore.", ReadOnly: true, Sensitive: true},
	{Name: "ssl.truststore.certificates", Type: TypeString, Default: "", Doc: "Inline PEM trusted certificates.", ReadOnly: true},
	{Name: "ssl.client.auth", Type: TypeString, Default: "none", Doc: "none, requested or required: whether SSL clients present a certificate (its subject is the principal).", ReadOnly: true, Valid: oneOf("none", "requested", "required")},
	{Name: "ssl.enabled.protocols", Type: TypeList, Default: "TLSv1.2,TLSv1.3", Doc: "TLS versions accepted (TLSv1.2 and TLSv1.3 only).", ReadOnly: true, Valid: listOf("TLSv1.2", "TLSv1.3")},
	{Name: "ssl.protocol", Type: TypeString, Default: "TLSv1.3", Doc: "Accepted for compatibility; ssl.enabled.protocols decides.", ReadOnly: true},
	{Name: "ssl.cipher.suites", Type: TypeList, Default: "", Doc: "TLS 1.2 cipher suites (IANA names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); empty: Go's secure defaults. TLS 1.3 suites are fixed.", ReadOnly: true},
	{Name: "ssl.principal.mapping.rules", Type: TypeString, Default: "DEFAULT", Doc: "Rules mapping a client certificate's subject (RFC 2253) to the principal name: RULE:pattern/replacement/[LU],...,DEFAULT.", ReadOnly: true},
	{Name: "ssl.endpoint.identification.algorithm", Type: TypeString, Default: "https", Doc: "https: followers verify the leader certificate's host name; empty: they do not.", ReadOnly: true},
}

func init() {
	for _, d := range securityDefs {
		brokerDefs[d.Name] = d
	}
}

func validProtocolMap(v string) error {
	_, err := parseProtocolMap(v)
	return err
}

// parseProtocolMap parses listener.security.protocol.map; names are upper-cased.
func parseProtocolMap(v string) (map[string]string, error) {
	m := map[string]string{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, proto, ok := strings.Cut(e, ":")
		name, proto = strings.ToUpper(strings.TrimSpace(name)), strings.ToUpper(strings.TrimSpace(proto))
		if !ok || name == "" {
			return nil, fmt.Errorf("%q is not NAME:PROTOCOL", e)
		}
		switch proto {
		case ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL:
		default:
			return nil, fmt.Errorf("%s: unknown security protocol %q", name, proto)
		}
		m[name] = proto
	}
	return m, nil
}

// ListenerProtocol returns the security protocol of a listener name, from
// listener.security.protocol.map; a controller listener or the inter-broker
// listener absent from the map is PLAINTEXT (as before the map existed).
func (b *Broker) ListenerProtocol(name string) (string, bool) {
	m, _ := parseProtocolMap(b.values["listener.security.protocol.map"])
	if p, ok := m[strings.ToUpper(name)]; ok {
		return p, true
	}
	if b.isControllerListener(name) || strings.EqualFold(name, b.InterBrokerListenerName()) {
		return ProtocolPlaintext, true
	}
	return "", false
}

// InterBrokerListenerName is inter.broker.listener.name if set, else the
// listener named by security.inter.broker.protocol (Kafka's rule).
func (b *Broker) InterBrokerListenerName() string {
	if b.set["inter.broker.listener.name"] || !b.set["security.inter.broker.protocol"] {
		return strings.ToUpper(b.values["inter.broker.listener.name"])
	}
	return strings.ToUpper(b.values["security.inter.broker.protocol"])
}

// listenerPrefix is how a per-listener override starts.
const listenerPrefix = "listener.name."

// setListenerProp records listener.name.<listener>.<property>=v after
// checking that property is a listener security property, optionally
// prefixed by a lower-case SASL mechanism name (plain.sasl.jaas.config).
func (b *Broker) setListenerProp(key, v string) error {
	rest := strings.TrimPrefix(key, listenerPrefix)
	listener, prop, ok := strings.Cut(rest, ".")
	if !ok || listener == "" {
		return fmt.Errorf("unknown broker property %q", key)
	}
	d := listenerDef(prop)
	if d == nil {
		if mech, p, ok := strings.Cut(prop, "."); ok && isMechanismPrefix(mech) {
			d = listenerDef(p)
		}
	}
	if d == nil {
		return fmt.Errorf("unknown broker property %q: per-listener overrides take a listener security property (ssl.*, sasl.*, connections.max.reauth.ms)", key)
	}
	if err := d.Validate(v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if b.perListener == nil {
		b.perListener = map[string]string{}
	}
	b.perListener[strings.ToLower(listener)+"."+prop] = v
	return nil
}

// listenerDef returns the definition of a property that may be overridden
// per listener, or nil.
func listenerDef(prop string) *Def {
	for _, d := range securityDefs {
		if d.Name == prop && d.Name != "listener.security.protocol.map" && d.Name != "security.inter.broker.protocol" {
			return d
		}
	}
	return nil
}

func isMechanismPrefix(m string) bool {
	switch m {
	case "plain", "scram-sha-256", "scram-sha-512", "oauthbearer", "gssapi":
		return true
	}
	return false
}

// ListenerString returns a security property for one listener: the
// listener.name.<listener>.<name> override if given, else the broker-wide
// value.
func (b *Broker) ListenerString(listener, name string) string {
	if v, ok := b.perListener[strings.ToLower(listener)+"."+name]; ok {
		return v
	}
	return b.values[name]
}

// ListenerMechanismString returns a SASL property for one listener and
// mechanism: listener.name.<l>.<mechanism>.<name>, else
// listener.name.<l>.<name>, else the broker-wide value.
func (b *Broker) ListenerMechanismString(listener, mechanism, name string) string {
	if v, ok := b.perListener[strings.ToLower(listener)+"."+strings.ToLower(mechanism)+"."+name]; ok {
		return v
	}
	return b.ListenerString(listener, name)
}

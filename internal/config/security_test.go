package config

import (
	"strings"
	"testing"
)

func TestListenerSecurityConfig(t *testing.T) {
	b, err := Load("", [][2]string{
		{"listeners", "PLAINTEXT://127.0.0.1:9092,CLIENT://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"},
		{"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CLIENT:SSL,SASL_SSL:SASL_SSL,CONTROLLER:SSL"},
		{"security.inter.broker.protocol", "SASL_SSL"},
		{"sasl.enabled.mechanisms", "SCRAM-SHA-512"},
		{"listener.name.sasl_ssl.sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"},
		{"listener.name.sasl_ssl.plain.sasl.jaas.config", "M required;"},
		{"listener.name.client.ssl.client.auth", "required"},
		{"controller.quorum.voters", "1@127.0.0.1:9095"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := b.Listeners()
	if err != nil || len(ls) != 3 {
		t.Fatalf("listeners %v %v", ls, err)
	}
	want := map[string]string{"PLAINTEXT": "PLAINTEXT", "CLIENT": "SSL", "SASL_SSL": "SASL_SSL"}
	for _, l := range ls {
		if l.Protocol != want[l.Name] {
			t.Errorf("listener %s: protocol %q, want %q", l.Name, l.Protocol, want[l.Name])
		}
	}
	if p, _ := b.ListenerProtocol("CONTROLLER"); p != "SSL" {
		t.Errorf("controller protocol %q", p)
	}
	if got := b.InterBrokerListenerName(); got != "SASL_SSL" {
		t.Errorf("inter-broker listener %q, want SASL_SSL (from security.inter.broker.protocol)", got)
	}
	if got := b.ListenerString("SASL_SSL", "sasl.enabled.mechanisms"); got != "PLAIN,SCRAM-SHA-256" {
		t.Errorf("per-listener override: %q", got)
	}
	if got := b.ListenerString("CLIENT", "sasl.enabled.mechanisms"); got != "SCRAM-SHA-512" {
		t.Errorf("broker-wide value: %q", got)
	}
	if got := b.ListenerMechanismString("SASL_SSL", "PLAIN", "sasl.jaas.config"); got != "M required;" {
		t.Errorf("per-mechanism override: %q", got)
	}
	if got := b.ListenerString("client", "ssl.client.auth"); got != "required" {
		t.Errorf("listener names are case-insensitive: %q", got)
	}
	client, inter, err := b.Endpoints()
	if err != nil || client.Name != "PLAINTEXT" || inter.Name != "SASL_SSL" {
		t.Errorf("endpoints %v %v %v", client, inter, err)
	}

	for _, bad := range [][][2]string{
		{{"listeners", "CLIENT://127.0.0.1:1"}},                   // not in the map
		{{"listener.security.protocol.map", "A:TLS"}},             // unknown protocol
		{{"listener.name.sasl_ssl.num.partitions", "3"}},          // not a listener property
		{{"listener.name.sasl_ssl.ssl.client.auth", "sometimes"}}, // invalid value
		{{"listener.name.sasl_ssl.foo.sasl.jaas.config", "x"}},    // unknown mechanism prefix
		{{"listener.name.", "x"}},                                 // no listener
		{{"ssl.enabled.protocols", "TLSv1.1"}},                    // TLS 1.2+ only
		{{"security.inter.broker.protocol", "TLS"}},               // unknown protocol
		{{"listeners", "SASL_SSL://h"}},                           // no port
	} {
		if _, err := Load("", bad); err == nil {
			t.Errorf("Load(%v) accepted", bad)
		} else if strings.Contains(err.Error(), "panic") {
			t.Errorf("Load(%v): %v", bad, err)
		}
	}
}

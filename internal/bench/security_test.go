package bench

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"strand/internal/security/securitytest"
	"strand/internal/server/servertest"
)

// secureBroker runs a broker with a PLAINTEXT listener (returned first) and
// a SASL_SSL one with PLAIN users bench/bench-secret, and returns the CA file.
func secureBroker(t *testing.T) (plain, saslSSL, caFile string) {
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	plain, saslSSL = servertest.FreeAddr(t), servertest.FreeAddr(t)
	servertest.StartOn(t, plain,
		[2]string{"listeners", "PLAINTEXT://" + plain + ",SASL_SSL://" + saslSSL},
		[2]string{"sasl.enabled.mechanisms", "PLAIN"},
		[2]string{"listener.name.sasl_ssl.plain.sasl.jaas.config", `org.apache.kafka.common.security.plain.PlainLoginModule required user_bench="bench-secret";`},
		[2]string{"ssl.keystore.type", "PEM"},
		[2]string{"ssl.keystore.location", securitytest.WriteFile(t, dir, "server.pem", key, cert)})
	return plain, saslSSL, securitytest.WriteFile(t, dir, "ca.pem", ca.PEM)
}

// TestCompareSASLSSL runs the comparison of a SASL_SSL listener with the
// PLAINTEXT one of the same broker: every run reads back what it produced,
// the handshake phase authenticates over TLS, and the ratios are reported.
func TestCompareSASLSSL(t *testing.T) {
	plain, saslSSL, caFile := secureBroker(t)
	var out bytes.Buffer
	args := []string{"--brokers", saslSSL, "--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN",
		"--sasl-username", "bench", "--sasl-password", "bench-secret", "--tls-ca", caFile,
		"--compare-brokers", plain, "--rounds", "2", "--handshakes", "10",
		"--records", "2000", "--record-size", "512", "--skip-fsync", "--json"}
	if err := Main(testCtx(t), args, &out); err != nil {
		t.Fatal(err)
	}
	var c Comparison
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	if len(c.Rounds) != 2 || c.Secured != "SASL_SSL PLAIN as bench" {
		t.Fatalf("comparison %+v", c)
	}
	for _, r := range c.Rounds {
		checkReport(t, r.Secured, 2000)
		checkReport(t, r.Baseline, 2000)
		if r.Secured.Security != "SASL_SSL PLAIN as bench" || r.Baseline.Security != "PLAINTEXT" || r.ProduceRatio <= 0 || r.ConsumeRatio <= 0 {
			t.Errorf("round %+v", r)
		}
	}
	if h := c.SecuredHandshakes; h == nil || h.Connections != 10 || h.PerSec <= 0 || c.BaselineHandshakes == nil || c.HandshakeRatio <= 0 {
		t.Errorf("handshakes %+v %+v ratio %v", c.SecuredHandshakes, c.BaselineHandshakes, c.HandshakeRatio)
	}
	if c.ProduceRatioMedian <= 0 || c.ConsumeRatioMedian <= 0 {
		t.Errorf("median ratios %v %v", c.ProduceRatioMedian, c.ConsumeRatioMedian)
	}
	t.Logf("produce ratio %.2f, consume ratio %.2f, handshakes %.0f/s vs %.0f/s", c.ProduceRatioMedian, c.ConsumeRatioMedian,
		c.SecuredHandshakes.PerSec, c.BaselineHandshakes.PerSec)

	// A wrong password, and a client that does not trust the broker's CA,
	// fail with the reason.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sasl-password", "wrong", "--tls-ca", caFile}, "SASL_AUTHENTICATION_FAILED"},
		{[]string{"--sasl-password", "bench-secret"}, "certificate"},
	} {
		base := []string{"--brokers", saslSSL, "--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN",
			"--sasl-username", "bench", "--handshakes", "1", "--records", "10", "--skip-fsync"}
		err := Main(testCtx(t), append(base, tc.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

func TestSecurityFlagsChecked(t *testing.T) {
	for _, args := range [][]string{
		{"--security-protocol", "KERBEROS"},
		{"--security-protocol", "SASL_SSL", "--sasl-mechanism", "GSSAPI", "--sasl-username", "u"},
		{"--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN"},
		{"--sasl-mechanism", "PLAIN", "--sasl-username", "u"},
		{"--handshakes", "-1"},
	} {
		if err := Main(context.Background(), append([]string{"--brokers=127.0.0.1:1"}, args...), io.Discard); err == nil {
			t.Errorf("Main(%q) = nil, want an error", args)
		}
	}
}

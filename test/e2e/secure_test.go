package e2e

import "testing"

// TestSecureClusterScript runs scripts/secure-cluster.sh, README's
// "Securing a cluster" example: openssl certificates, SCRAM-SHA-512 over
// SASL_SSL and mTLS with kcat, PLAIN over SASL_PLAINTEXT with kafka-python,
// and no password in the log or on disk. Needs kcat, openssl and
// python3-kafka (CI installs them).
func TestSecureClusterScript(t *testing.T) { runScript(t, "secure-cluster.sh") }

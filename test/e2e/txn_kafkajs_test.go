package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"strand/internal/testcluster"
)

// TestKafkajsTransactions runs scripts/test-kafkajs-txn.mjs (kafkajs
// transactions: commit, abort, sendOffsets, fencing; read_committed and
// read_uncommitted kafkajs consumers) against a real broker process. kafkajs
// is pinned in scripts/kafkajs/package-lock.json; the test runs
// `npm ci --prefix scripts/kafkajs` when node_modules is missing. Without
// node/npm it skips locally and fails on CI (CI=true).
func TestKafkajsTransactions(t *testing.T) {
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = exec.LookPath("npm")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node/npm not found on CI (CI=true): %v; apt-get install -y nodejs npm", err)
		}
		t.Skip("node/npm not installed; CI runs this test")
	}
	_, file, _, _ := runtime.Caller(0)
	scripts := filepath.Join(filepath.Dir(file), "..", "..", "scripts")
	pkg := filepath.Join(scripts, "kafkajs")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := os.Stat(filepath.Join(pkg, "node_modules", "kafkajs", "package.json")); err != nil {
		out, err := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--prefix", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("npm ci --prefix %s: %v\n%s", pkg, err, out)
		}
	}

	n := testcluster.StartNode(t, testcluster.WithSet("group.initial.rebalance.delay.ms", "0"))
	cmd := exec.CommandContext(ctx, node, filepath.Join(scripts, "test-kafkajs-txn.mjs"), n.Addr())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("test-kafkajs-txn.mjs (%v):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("test-kafkajs-txn.mjs: %v", err)
	}
	if !strings.Contains(out.String(), " passed, 0 failed") {
		t.Fatalf("test-kafkajs-txn.mjs exited 0 but its summary does not say 0 failed")
	}
}

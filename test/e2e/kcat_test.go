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

// TestKcat runs scripts/test-kcat.sh (kcat/librdkafka smoke test) against
// the binary the harness builds. Without kcat it skips locally but fails on
// CI (CI=true), where .ci/run installs kcat.
func TestKcat(t *testing.T) { runScript(t, "test-kcat.sh") }

// TestKcatGroups runs scripts/test-groups.sh: a consumer group of kcat -G
// members (librdkafka) splits a topic, commits, and a new member resumes.
func TestKcatGroups(t *testing.T) { runScript(t, "test-groups.sh") }

// runScript runs scripts/NAME with the harness's binary and requires its
// "N passed, 0 failed" summary.
func runScript(t *testing.T, name string) {
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat not found on CI (CI=true): %v; .ci/run installs it with apt-get install -y kcat", err)
		}
		t.Skip("kcat not installed (apt-get install -y kcat); CI runs this test")
	}
	bin := testcluster.BuildBinary(t)
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", name)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), testcluster.EnvBinary+"="+bin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s (%v):\n%s", filepath.Base(script), time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !strings.Contains(out.String(), " passed, 0 failed") {
		t.Fatalf("%s exited 0 but its summary does not say 0 failed", name)
	}
}

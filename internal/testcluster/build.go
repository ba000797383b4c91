package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// EnvBinary names an environment variable that, when set, points at an
// already-built strand binary; BuildBinary then uses it instead of building.
const EnvBinary = "STRAND_BIN"

// EnvRace controls whether BuildBinary builds the broker with -race. "1" forces
// it on, "0" forces it off; unset means: on when the test binary has -race.
const EnvRace = "STRAND_E2E_RACE"

var build struct {
	once sync.Once
	path string
	err  error
}

// BuildBinary returns the path of a strand binary for tests. It builds
// strand/cmd/strand once per test process (later calls reuse the result) into
// a temporary directory, from the module root found via `go env GOMOD`. If
// $STRAND_BIN is set, that binary is used instead. A build failure fails t.
func BuildBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.path, build.err = buildBinary()
	})
	if build.err != nil {
		t.Fatalf("testcluster: %v", build.err)
	}
	return build.path
}

// RaceEnabled reports whether BuildBinary builds (or built) the broker with the
// race detector.
func RaceEnabled() bool {
	switch os.Getenv(EnvRace) {
	case "1", "true":
		return true
	case "0", "false":
		return false
	}
	return raceEnabled
}

func buildBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvBinary, err)
		}
		return abs, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	// Not t.TempDir: the binary outlives any one test. It is small and lives
	// under the OS temp dir; a shared dir per process keeps builds isolated.
	dir, err := os.MkdirTemp("", "strand-testbin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "strand")
	args := []string{"build", "-o", out}
	if RaceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "strand/cmd/strand")
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// moduleRoot finds the directory holding strand's go.mod, starting from this
// source file's directory so it works whatever the test's working directory.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate testcluster source file")
	}
	cmd := exec.Command(goTool(), "env", "GOMOD")
	cmd.Dir = filepath.Dir(file)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module (dir %s)", cmd.Dir)
	}
	return filepath.Dir(gomod), nil
}

// goTool returns the go command: $GOROOT/bin/go when the go command that
// runs the tests exported GOROOT, else the go on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

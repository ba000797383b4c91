package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var plainBuild struct {
	once sync.Once
	path string
	err  error
}

// BuildPlainBinary returns a strand binary built without the race detector
// whatever the test binary's mode (once per test process), for tests that
// measure the broker's memory or speed: a race-enabled build uses several
// times the memory. With $STRAND_BIN set, that binary is used.
func BuildPlainBinary(t testing.TB) string {
	t.Helper()
	if !RaceEnabled() || os.Getenv(EnvBinary) != "" {
		return BuildBinary(t)
	}
	plainBuild.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			plainBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "strand-testbin-plain-")
		if err != nil {
			plainBuild.err = err
			return
		}
		out := filepath.Join(dir, "strand")
		cmd := exec.Command(goTool(), "build", "-o", out, "strand/cmd/strand")
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			plainBuild.err = fmt.Errorf("go build -o %s strand/cmd/strand: %v\n%s", out, err, msg)
			return
		}
		plainBuild.path = out
	})
	if plainBuild.err != nil {
		t.Fatalf("testcluster: %v", plainBuild.err)
	}
	return plainBuild.path
}

// WithBinary runs the node from bin (for example BuildPlainBinary's)
// instead of BuildBinary's.
func WithBinary(bin string) Option {
	return func(c *nodeConfig) { c.bin = bin }
}

// ForNode applies opts to the node with id only (for StartCluster, whose
// options apply to every node), e.g. to give one node its own data dir.
func ForNode(id int32, opts ...Option) Option {
	return func(c *nodeConfig) {
		if c.nodeID == id {
			for _, o := range opts {
				o(c)
			}
		}
	}
}

package main_test

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"strand/internal/testcluster"
)

// run executes the strand binary and returns its combined output and exit code.
func run(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("strand %s: %v", strings.Join(args, " "), err)
	return "", -1
}

// TestCommandLine: server, bench and verify keep their own flags under the
// cobra root; usage errors exit 2, failures 1 with a clear message.
func TestCommandLine(t *testing.T) {
	bin := testcluster.BuildBinary(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"server", "-h"}, 0, "-advertised-listeners"},
		{[]string{"bench", "-h"}, 0, "-records"},
		{[]string{"verify", "-h"}, 0, "-fault-cmd"},
		{[]string{"--help"}, 0, "topic"},
		{[]string{"completion", "bash"}, 0, "__start_strand"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"topic", "describe"}, 2, "accepts 1 arg"},
		{[]string{"server", "--set", "no.such.property=1"}, 1, `unknown broker property "no.such.property"`},
		{[]string{"topic", "list", "--brokers", "127.0.0.1:1", "--timeout", "2s"}, 1, "strand topic list:"},
	} {
		out, code := run(t, bin, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("strand %s: exit %d, want %d; output lacks %q?\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
}

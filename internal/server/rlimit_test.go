package server

import (
	"bytes"
	"log/slog"
	"strings"
	"syscall"
	"testing"
)

// TestRaiseFileLimit: the soft limit ends at the hard one and is logged;
// checkFileLimit warns only when the partitions come close to it.
func TestRaiseFileLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	lowered := lim
	lowered.Cur = min(lim.Max, 1024)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&out, nil))
	if got := raiseFileLimit(logger); got != lim.Max {
		t.Fatalf("soft limit %d after raising, want the hard limit %d", got, lim.Max)
	}
	if !strings.Contains(out.String(), "open file limit") {
		t.Fatalf("not logged: %s", out.String())
	}
	out.Reset()
	checkFileLimit(logger, 20000, 10000)
	if out.Len() != 0 {
		t.Fatalf("warned with room to spare: %s", out.String())
	}
	checkFileLimit(logger, 20000, 19500)
	if !strings.Contains(out.String(), "LimitNOFILE") {
		t.Fatalf("no warning near the limit: %s", out.String())
	}
}

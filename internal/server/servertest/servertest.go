// Package servertest runs in-process strand brokers for the tests of
// client-side tools (bench, verify): a single node on a fixed loopback port
// and data directory, so it can be stopped and started again on both.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"strand/internal/config"
	"strand/internal/server"
)

// Broker is one in-process node. Addr and Dir stay the same across Stop and
// Start.
type Broker struct {
	Addr string // client listener, host:port
	Dir  string // log.dirs
	// Sets are more broker properties, applied after log.dirs and
	// listeners (so they may replace the listeners, keeping Addr's).
	Sets [][2]string

	mu     sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan error
}

// Start runs a broker on a free loopback port with a fresh data directory
// for the test's lifetime (stopped cleanly at the end, an unclean stop fails
// the test).
func Start(t testing.TB) *Broker { return StartOn(t, FreeAddr(t)) }

// FreeAddr returns a loopback host:port free at the time of the call.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartOn is Start with the PLAINTEXT listener on addr (from FreeAddr) and
// more broker properties (Broker.Sets): a caller adding listeners sets
// listeners to "PLAINTEXT://"+addr+",SASL_SSL://"+FreeAddr(t), and so on.
func StartOn(t testing.TB, addr string, sets ...[2]string) *Broker {
	t.Helper()
	b := &Broker{Addr: addr, Dir: t.TempDir(), Sets: sets}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("stop broker: %v", err)
		}
	})
	return b
}

// Start runs the (stopped) broker again; it may be called from any goroutine.
func (b *Broker) Start() error {
	cfg, err := config.Load("", append([][2]string{{"log.dirs", b.Dir}, {"listeners", "PLAINTEXT://" + b.Addr}}, b.Sets...))
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.mu.Lock()
	b.cancel, b.done = cancel, done
	b.mu.Unlock()
	return nil
}

// Stop shuts the broker down cleanly; stopping a stopped broker is a no-op.
func (b *Broker) Stop() error {
	b.mu.Lock()
	cancel, done := b.cancel, b.done
	b.cancel = nil
	b.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	return <-done
}

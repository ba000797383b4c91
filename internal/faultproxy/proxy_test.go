package faultproxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// quiet is how long a test waits to conclude that nothing arrives.
const quiet = 300 * time.Millisecond

// echoServer is a plain TCP server that writes back whatever it reads and
// counts the bytes it received.
type echoServer struct {
	ln       net.Listener
	received atomic.Int64
	wg       sync.WaitGroup
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			e.wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					e.received.Add(int64(n))
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg on c and reads back len(msg) bytes within timeout.
func roundTrip(c net.Conn, msg []byte, timeout time.Duration) ([]byte, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return got, err
}

func mustEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	got, err := roundTrip(c, []byte(msg), 5*time.Second)
	if err != nil {
		t.Fatalf("echo %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q: got %q", msg, got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectDead checks that c was dropped: a read fails promptly with an error
// that is not a timeout (EOF or connection reset).
func expectDead(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || isTimeout(err) {
		t.Fatalf("read on a dropped connection: %v, want EOF or reset", err)
	}
}

func TestForwardAndCount(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	if p.Target() != e.addr() {
		t.Errorf("Target() = %s, want %s", p.Target(), e.addr())
	}
	c := dial(t, p.Addr())
	mustEcho(t, c, "hello")
	mustEcho(t, c, "world!")
	waitFor(t, "byte counters", func() bool { s := p.Stats(); return s.Upstream == 11 && s.Downstream == 11 })
	if s := p.Stats(); s.Accepted != 1 || s.Active != 1 || s.Refused != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v, want 1 accepted and active", s)
	}
	if e.received.Load() != 11 {
		t.Errorf("echo server received %d bytes, want 11", e.received.Load())
	}
	// A client's orderly close is forwarded, and the link goes away.
	c.Close()
	waitFor(t, "link closed", func() bool { return p.Stats().Active == 0 })
}

func TestBlackhole(t *testing.T) {
	for _, name := range []string{"Blackhole", "Partition"} {
		t.Run(name, func(t *testing.T) {
			e := startEcho(t)
			p := newProxy(t, e.addr())
			old := dial(t, p.Addr())
			mustEcho(t, old, "before")
			if name == "Blackhole" {
				p.Blackhole()
			} else {
				p.Partition()
			}
			expectDead(t, old)

			// A new connection is accepted (connect succeeds) but never
			// forwarded: the client times out, the target sees nothing.
			before := e.received.Load()
			c := dial(t, p.Addr())
			_, err := roundTrip(c, []byte("into the void"), quiet)
			if !isTimeout(err) {
				t.Fatalf("round trip through a blackhole: %v, want a timeout", err)
			}
			if got := e.received.Load(); got != before {
				t.Fatalf("target received %d bytes through a blackhole", got-before)
			}
			waitFor(t, "discarded bytes", func() bool { return p.Stats().Discarded == int64(len("into the void")) })

			p.Heal()
			expectDead(t, c) // held connections are dropped by Heal
			mustEcho(t, dial(t, p.Addr()), "after")
			s := p.Stats()
			if s.Dropped != 2 || s.Accepted != 3 {
				t.Errorf("stats %+v, want 2 dropped (old and held) of 3 accepted", s)
			}
		})
	}
}

func TestRefuse(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	old := dial(t, p.Addr())
	mustEcho(t, old, "before")
	p.Refuse()
	expectDead(t, old)

	// New connections fail fast instead of timing out.
	for range 3 {
		c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if err != nil {
			continue // refused at connect: fine too
		}
		start := time.Now()
		_, err = roundTrip(c, []byte("x"), 5*time.Second)
		c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("round trip through a refusing proxy: %v, want EOF or reset", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("refused connection took %v to fail", d)
		}
	}
	if s := p.Stats(); s.Refused < 1 {
		t.Errorf("stats %+v, want refused connections", s)
	}
	p.Heal()
	mustEcho(t, dial(t, p.Addr()), "after")
}

func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := newProxy(t, target)
	// The proxy resets the client as soon as its dial fails, which can
	// already fail the client's connect.
	if c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		defer c.Close()
		expectDead(t, c)
	}
	waitFor(t, "refused count", func() bool { return p.Stats().Refused == 1 })
	if s := p.Stats(); s.Active != 0 {
		t.Errorf("stats %+v, want none active", s)
	}
}

func TestLatency(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	c := dial(t, p.Addr())
	mustEcho(t, c, "warm")
	const lat = 150 * time.Millisecond
	p.SetLatency(lat)
	start := time.Now()
	mustEcho(t, c, "slow")
	if d := time.Since(start); d < 2*lat {
		t.Errorf("round trip with %v latency took %v, want at least %v", lat, d, 2*lat)
	}
	// Latency delays data but does not serialize it: many chunks in
	// flight at once still take about one latency each way.
	start = time.Now()
	msg := bytes.Repeat([]byte("0123456789"), 50000) // 500 kB, many chunks
	got, err := roundTrip(c, msg, 10*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("bulk round trip: %v (equal %v)", err, bytes.Equal(got, msg))
	}
	if d := time.Since(start); d > 10*lat {
		t.Errorf("500 kB round trip with %v latency took %v: latency is limiting throughput", lat, d)
	}
	p.SetLatency(0)
	start = time.Now()
	mustEcho(t, c, "fast")
	if d := time.Since(start); d >= lat {
		t.Errorf("round trip after SetLatency(0) took %v", d)
	}
}

func TestDirectionalBlock(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	c := dial(t, p.Addr())
	mustEcho(t, c, "warm")

	t.Run("upstream", func(t *testing.T) {
		p.SetDirectionalBlock(true, false)
		before := e.received.Load()
		_, err := roundTrip(c, []byte("held"), quiet)
		if !isTimeout(err) {
			t.Fatalf("round trip with upstream blocked: %v, want a timeout", err)
		}
		if got := e.received.Load(); got != before {
			t.Fatalf("target received %d bytes with upstream blocked", got-before)
		}
		// The socket stays open; unblocking delivers the held bytes in order.
		p.SetDirectionalBlock(false, false)
		got := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
			t.Fatalf("after unblocking upstream: %q, %v; want %q", got, err, "held")
		}
		mustEcho(t, c, "flowing")
	})

	t.Run("downstream", func(t *testing.T) {
		p.SetDirectionalBlock(false, true)
		before := e.received.Load()
		_, err := roundTrip(c, []byte("reply held"), quiet)
		if !isTimeout(err) {
			t.Fatalf("round trip with downstream blocked: %v, want a timeout", err)
		}
		// The request got through; only the reply is stuck.
		waitFor(t, "target to receive", func() bool { return e.received.Load() == before+int64(len("reply held")) })
		p.Heal()
		got := make([]byte, len("reply held"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "reply held" {
			t.Fatalf("after Heal: %q, %v", got, err)
		}
		mustEcho(t, c, "flowing")
	})

	t.Run("both", func(t *testing.T) {
		p.SetDirectionalBlock(true, true)
		fresh := dial(t, p.Addr()) // applies to new connections too
		if _, err := roundTrip(fresh, []byte("x"), quiet); !isTimeout(err) {
			t.Fatalf("new connection with both directions blocked: %v, want a timeout", err)
		}
		if s := p.Stats(); s.Active != 2 || s.Dropped != 0 {
			t.Errorf("stats %+v: want both sockets kept open", s)
		}
		p.Heal()
		got := make([]byte, 1)
		fresh.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(fresh, got); err != nil || got[0] != 'x' {
			t.Fatalf("after Heal: %q, %v", got, err)
		}
	})
}

func TestClose(t *testing.T) {
	e := startEcho(t)
	p, err := New("127.0.0.1:0", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	mustEcho(t, c, "hi")
	held := dial(t, p.Addr())
	p.SetDirectionalBlock(true, true)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	expectDead(t, c)
	expectDead(t, held)
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("dial after Close succeeded")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewBadAddress(t *testing.T) {
	if _, err := New("256.0.0.1:0", "127.0.0.1:1"); err == nil {
		t.Error("New with a bad listen address succeeded")
	}
}

// TestStress toggles faults while many connections stream random data, then
// heals and checks that every connection that survived echoed its data
// exactly (nothing lost, duplicated or reordered by blocks and latency).
func TestStress(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	const conns = 8
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, conns)
	for range conns {
		c := dial(t, p.Addr())
		wg.Go(func() {
			// A writer and a reader per connection, so blocked directions
			// do not deadlock the test on full socket buffers.
			var sent bytes.Buffer
			var mu sync.Mutex
			writeDone := make(chan struct{})
			go func() {
				defer close(writeDone)
				for {
					select {
					case <-stop:
						return
					default:
					}
					time.Sleep(200 * time.Microsecond) // bound the data: ~10 MB/s per connection at most
					b := make([]byte, 1+int(time.Now().UnixNano()%3000))
					rand.Read(b)
					mu.Lock()
					sent.Write(b)
					mu.Unlock()
					c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(b); err != nil {
						errs <- err
						return
					}
				}
			}()
			go func() {
				<-stop
				<-writeDone
				c.(*net.TCPConn).CloseWrite()
			}()
			// Once the writer stops it half-closes; the echo server then
			// closes, and that EOF comes back through the proxy after the
			// last echoed byte.
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(c)
			<-writeDone
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if !bytes.Equal(got, sent.Bytes()) {
				errs <- fmt.Errorf("echoed %d bytes, sent %d, or they differ", len(got), sent.Len())
			}
		})
	}
	for i := range 40 {
		switch i % 4 {
		case 0:
			p.SetDirectionalBlock(true, false)
		case 1:
			p.SetLatency(time.Duration(i%7) * time.Millisecond)
		case 2:
			p.SetDirectionalBlock(false, true)
		case 3:
			p.SetDirectionalBlock(false, false)
		}
		_ = p.Stats()
		time.Sleep(10 * time.Millisecond)
	}
	p.Heal()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := p.Stats(); s.Upstream == 0 || s.Upstream != s.Downstream || s.Dropped != 0 {
		t.Errorf("stats %+v, want equal nonzero byte counts and nothing dropped", s)
	}
}

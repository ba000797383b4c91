// Package faultproxy is a TCP proxy that injects network faults between a
// client and one target address, for tests that need real sockets to misbehave:
// a multi-node test harness routes every broker-to-broker and client-to-broker
// path through its own Proxy and then cuts, freezes or slows individual paths.
//
// A Proxy forwards each accepted connection to the target over a fresh
// upstream connection. Faults act on real traffic:
//
//   - Blackhole (and Partition, its alias) drops every existing connection and
//     accepts new ones without ever forwarding them: a client's connect
//     succeeds, then nothing comes back, so it sees timeouts, as with a peer
//     that is unreachable rather than down.
//   - Refuse drops every existing connection and resets new ones as soon as
//     they are accepted: the client fails fast, as with a peer that is down.
//   - SetDirectionalBlock stops forwarding one or both directions of every
//     connection while keeping the sockets open. Bytes already read from the
//     blocked side are held, not dropped, and delivered in order once the
//     direction is unblocked, as TCP does when a partition heals.
//   - SetLatency delays every chunk of data by a fixed duration in each
//     direction without limiting throughput.
//   - Heal clears all of the above.
//
// "Dropping" a connection closes both of its sockets with a TCP reset
// (SO_LINGER 0), so neither end mistakes it for an orderly shutdown.
//
// The upstream direction is client to target; downstream is target to
// client. All methods are safe for concurrent use.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DialTimeout bounds how long the proxy waits to connect to its target for
// an accepted connection; on failure the client's connection is reset.
const DialTimeout = 10 * time.Second

// chunkSize is the most bytes one read moves; chunkQueue is how many read
// chunks a direction buffers ahead of its writer (for latency and blocks).
const (
	chunkSize  = 32 << 10
	chunkQueue = 64
)

// mode is what the proxy does with accepted connections.
type mode int

const (
	forward   mode = iota // dial the target and forward
	blackhole             // hold the connection open, read and discard, never forward
	refuse                // reset the connection immediately
)

// Stats are the proxy's counters since New.
type Stats struct {
	Upstream   int64 // bytes forwarded client to target (written to the target)
	Downstream int64 // bytes forwarded target to client (written to the client)
	Discarded  int64 // bytes read from blackholed connections and thrown away
	Accepted   int64 // connections accepted, whatever happened to them
	Refused    int64 // connections reset on accept by Refuse, or because the target could not be dialed
	Dropped    int64 // connections closed by a fault (Blackhole, Refuse, Heal of a blackholed connection) or Close
	Active     int   // connections open now, forwarding or blackholed
}

// Proxy forwards TCP connections from its listen address to a target address
// and injects faults on demand. The zero value is not usable; call New.
type Proxy struct {
	ln     net.Listener
	target string
	ctx    context.Context // canceled by Close, aborting dials in progress
	cancel context.CancelFunc

	mu        sync.Mutex // guards the fields below
	mode      mode
	latency   time.Duration
	blockUp   bool
	blockDown bool
	changed   chan struct{}      // closed and replaced on every fault change, waking blocked writers
	links     map[*link]struct{} // open connections
	closed    bool

	upstream, downstream, discarded atomic.Int64
	accepted, refused, dropped      atomic.Int64

	wg sync.WaitGroup // the accept loop and every connection goroutine
}

// New listens on listenAddr (for example "127.0.0.1:0") and forwards
// connections to targetAddr. The target does not have to be up yet: it is
// dialed per accepted connection.
func New(listenAddr, targetAddr string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen %s: %w", listenAddr, err)
	}
	p := &Proxy{ln: ln, target: targetAddr, changed: make(chan struct{}), links: make(map[*link]struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address the proxy listens on (host:port), for clients to
// dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Close stops listening, drops every connection and waits for all of the
// proxy's goroutines to exit. Calling it again is a no-op.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	links := p.linksLocked(func(*link) bool { return true })
	p.mu.Unlock()
	err := p.ln.Close()
	p.cancel()
	for _, l := range links {
		l.drop()
	}
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Blackhole drops every existing connection and, until Heal or Refuse,
// accepts new connections but never forwards them: their bytes are read and
// discarded and nothing is ever sent back, so clients see timeouts rather
// than refused connections. Heal drops the connections accepted meanwhile.
func (p *Proxy) Blackhole() { p.setMode(blackhole) }

// Partition cuts the path the way a network partition does: it is Blackhole.
func (p *Proxy) Partition() { p.Blackhole() }

// Refuse drops every existing connection and, until Heal or Blackhole,
// resets new connections as soon as they are accepted, so clients fail fast
// as if the target were down. (The listening socket stays bound, so the
// client's connect succeeds and its first read or write fails; the port
// cannot be lost to another process meanwhile.)
func (p *Proxy) Refuse() { p.setMode(refuse) }

// Heal clears every fault: connections are forwarded again, both directions
// are unblocked and latency is zero. Connections accepted while blackholed
// are dropped (they were never connected to the target), so clients
// reconnect; connections frozen by SetDirectionalBlock resume where they
// stopped.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.mode, p.latency, p.blockUp, p.blockDown = forward, 0, false, false
	p.notifyLocked()
	held := p.linksLocked(func(l *link) bool { return l.server == nil })
	p.mu.Unlock()
	for _, l := range held {
		l.drop()
	}
}

// SetLatency delays every chunk of data by d in each direction (so a request
// and its response take at least 2d longer), on existing and new
// connections. It applies to data read from now on; 0 removes the delay.
// Negative durations count as 0.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = max(d, 0)
	p.notifyLocked()
	p.mu.Unlock()
}

// SetDirectionalBlock stops (true) or resumes (false) forwarding in each
// direction on existing and new connections, keeping the sockets open.
// upstream is client to target, downstream target to client. Data of a
// blocked direction is held (up to a bounded buffer, then TCP flow control
// stalls the sender) and delivered in order once the direction resumes.
func (p *Proxy) SetDirectionalBlock(upstream, downstream bool) {
	p.mu.Lock()
	p.blockUp, p.blockDown = upstream, downstream
	p.notifyLocked()
	p.mu.Unlock()
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{
		Upstream: p.upstream.Load(), Downstream: p.downstream.Load(), Discarded: p.discarded.Load(),
		Accepted: p.accepted.Load(), Refused: p.refused.Load(), Dropped: p.dropped.Load(), Active: active,
	}
}

// setMode switches how accepted connections are handled and drops every
// existing connection.
func (p *Proxy) setMode(m mode) {
	p.mu.Lock()
	p.mode = m
	p.notifyLocked()
	links := p.linksLocked(func(*link) bool { return true })
	p.mu.Unlock()
	for _, l := range links {
		l.drop()
	}
}

// notifyLocked wakes every writer waiting on a fault change. p.mu is held.
func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// linksLocked returns the open links for which keep is true. p.mu is held.
func (p *Proxy) linksLocked(keep func(*link) bool) []*link {
	var out []*link
	for l := range p.links {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off instead of spinning
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		m, closed := p.mode, p.closed
		p.mu.Unlock()
		switch {
		case closed || m == refuse:
			p.refused.Add(1)
			reset(c)
		case m == blackhole:
			p.hold(c)
		default:
			p.wg.Add(1)
			go p.connect(c)
		}
	}
}

// hold registers a blackholed connection and discards what it sends until
// it is dropped or the client goes away.
func (p *Proxy) hold(c net.Conn) {
	l := p.newLink(c, nil)
	if !p.register(l, blackhole) {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, chunkSize)
		for {
			n, err := c.Read(buf)
			p.discarded.Add(int64(n))
			if err != nil {
				l.close(false)
				return
			}
		}
	}()
}

// connect dials the target for an accepted connection and starts forwarding.
func (p *Proxy) connect(c net.Conn) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, DialTimeout)
	var d net.Dialer
	s, err := d.DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		p.refused.Add(1)
		reset(c)
		return
	}
	l := p.newLink(c, s)
	// The mode may have changed while dialing; register re-checks it.
	if !p.register(l, forward) {
		return
	}
	p.wg.Add(2)
	go l.pipe(upstream, c, s)
	go l.pipe(downstream, s, c)
}

// register adds l to the open links if the proxy is still open and in mode
// want; otherwise it resets l and reports false.
func (p *Proxy) register(l *link, want mode) bool {
	p.mu.Lock()
	ok := !p.closed && p.mode == want
	if ok {
		p.links[l] = struct{}{}
	}
	p.mu.Unlock()
	if !ok {
		p.dropped.Add(1)
		l.closeConns(true)
	}
	return ok
}

// gate returns whether dir is blocked, its current latency and a channel
// closed at the next fault change.
func (p *Proxy) gate(dir direction) (blocked bool, latency time.Duration, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	blocked = p.blockUp
	if dir == downstream {
		blocked = p.blockDown
	}
	return blocked, p.latency, p.changed
}

// direction is one half of a connection.
type direction int

const (
	upstream   direction = iota // client to target
	downstream                  // target to client
)

// link is one proxied connection: the accepted client socket and, unless it
// is blackholed, the socket to the target.
type link struct {
	p      *Proxy
	client net.Conn
	server net.Conn // nil for a blackholed connection

	done      chan struct{} // closed when the link closes
	closeOnce sync.Once
	halves    atomic.Int32 // directions that finished cleanly (EOF forwarded)
}

func (p *Proxy) newLink(client, server net.Conn) *link {
	return &link{p: p, client: client, server: server, done: make(chan struct{})}
}

// drop closes l with a reset, counting it as dropped by a fault.
func (l *link) drop() {
	if l.close(true) {
		l.p.dropped.Add(1)
	}
}

// close closes both sockets (with a reset if reset is set), unregisters l
// and reports whether this call was the one that closed it.
func (l *link) close(reset bool) bool {
	first := false
	l.closeOnce.Do(func() {
		first = true
		close(l.done)
		l.closeConns(reset)
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
	return first
}

func (l *link) closeConns(rst bool) {
	for _, c := range []net.Conn{l.client, l.server} {
		if c == nil {
			continue
		}
		if rst {
			reset(c)
		} else {
			c.Close()
		}
	}
}

// chunk is data read from one side, due for writing to the other at due.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe forwards dir from src to dst: a reader goroutine stamps each chunk
// with the latency in force when it was read and this goroutine writes it
// once due and once dir is not blocked. An EOF from src is forwarded as a
// half-close; any other error closes the whole link.
func (l *link) pipe(dir direction, src, dst net.Conn) {
	defer l.p.wg.Done()
	counter := &l.p.upstream
	if dir == downstream {
		counter = &l.p.downstream
	}
	chunks := make(chan chunk, chunkQueue)
	readErr := make(chan error, 1)
	l.p.wg.Add(1)
	go func() {
		defer l.p.wg.Done()
		defer close(chunks)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				_, lat, _ := l.p.gate(dir)
				select {
				case chunks <- chunk{buf[:n], time.Now().Add(lat)}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	for c := range chunks {
		if !l.wait(dir, c.due) {
			return
		}
		n, err := dst.Write(c.data)
		counter.Add(int64(n))
		if err != nil {
			l.close(false)
			return
		}
	}
	var err error
	select {
	case err = <-readErr:
	default: // the reader stopped because the link closed
	}
	if !errors.Is(err, io.EOF) {
		l.close(false)
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if l.halves.Add(1) == 2 {
		l.close(false)
	}
}

// wait blocks until dir is unblocked and due has passed, and reports false
// if the link closed first.
func (l *link) wait(dir direction, due time.Time) bool {
	for {
		blocked, _, changed := l.p.gate(dir)
		if !blocked {
			break
		}
		select {
		case <-changed:
		case <-l.done:
			return false
		}
	}
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-l.done:
			return false
		}
	}
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

// reset closes c with a TCP RST instead of an orderly FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

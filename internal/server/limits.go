package server

import (
	"container/list"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connLimits enforces max.connections and max.connections.per.ip (with its
// overrides). Invariant: total and byIP count exactly the admitted
// connections not yet released.
type connLimits struct {
	max, perIP int
	overrides  map[netip.Addr]int

	mu    sync.Mutex // guards total, byIP
	total int
	byIP  map[netip.Addr]int
}

func newConnLimits(max, perIP int, overrides map[netip.Addr]int) *connLimits {
	return &connLimits{max: max, perIP: perIP, overrides: overrides, byIP: map[netip.Addr]int{}}
}

// admit counts a new connection from ip, or returns why it is over a limit.
// An exempt connection (inter-broker listener) counts only against the
// per-IP limit.
func (l *connLimits) admit(ip netip.Addr, exempt bool) (ok bool, why string) {
	limit := l.perIP
	if n, ok := l.overrides[ip]; ok {
		limit = n
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !exempt && l.total >= l.max:
		return false, "max.connections"
	case l.byIP[ip] >= limit:
		return false, "max.connections.per.ip"
	}
	if !exempt {
		l.total++
	}
	l.byIP[ip]++
	return true, ""
}

// release uncounts a connection admit accepted.
func (l *connLimits) release(ip netip.Addr, exempt bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !exempt {
		l.total--
	}
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// remoteIP is the address a connection comes from (the zero Addr when it is
// not an IP connection).
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// Errors of memPool.acquire.
var (
	errPoolWait = errors.New("timed out waiting for request memory (queued.max.request.bytes)")
	errEvicted  = errors.New("request evicted: it held request memory longer than others could wait (queued.max.request.bytes)")
)

// pressureDelay is how long a request may wait for request memory before
// the pool evicts the oldest incomplete request holding some: a flood of
// requests that are declared large and sent slowly then cannot stall
// every other client until request.read.timeout.ms drops the flooders.
const pressureDelay = time.Second

// reading is a request being read that holds request memory, an eviction
// candidate while the pool is short.
type reading struct {
	start   time.Time
	evicted chan struct{} // closed when the pool evicts it
	cancel  func()        // interrupts its read; called once, without the pool's lock
}

// memPool bounds the bytes of requests being read or handled across the
// broker (queued.max.request.bytes). Waiters are served in arrival order, so
// a large request is not starved by small ones. Invariant: 0 <= used <= cap.
type memPool struct {
	cap int64

	mu      sync.Mutex // guards used, peak, waiters, reading
	used    int64
	peak    int64     // largest used since the last reclaim check
	waiters list.List // of *poolWaiter, in arrival order
	reading map[*reading]struct{}
}

type poolWaiter struct {
	n     int64
	ready chan struct{} // closed once n is granted
}

// newMemPool returns a pool of capacity bytes, or nil (no bound) for -1.
func newMemPool(capacity int64) *memPool {
	if capacity < 0 {
		return nil
	}
	return &memPool{cap: capacity, reading: map[*reading]struct{}{}}
}

// track makes r an eviction candidate (r holds memory, its request is not
// complete); untrack ends that. Both are no-ops on a nil pool.
func (p *memPool) track(r *reading) {
	if p != nil {
		p.mu.Lock()
		p.reading[r] = struct{}{}
		p.mu.Unlock()
	}
}

func (p *memPool) untrack(r *reading) {
	if p != nil {
		p.mu.Lock()
		delete(p.reading, r)
		p.mu.Unlock()
	}
}

// evictOldest evicts the incomplete request that started first, if it
// started before olderThan and is not self.
func (p *memPool) evictOldest(self *reading, olderThan time.Time) {
	p.mu.Lock()
	var oldest *reading
	for r := range p.reading {
		if r != self && r.start.Before(olderThan) && (oldest == nil || r.start.Before(oldest.start)) {
			oldest = r
		}
	}
	if oldest != nil {
		delete(p.reading, oldest)
		close(oldest.evicted)
	}
	p.mu.Unlock()
	if oldest != nil {
		oldest.cancel()
	}
}

// acquire takes n bytes (n <= cap), waiting until they are free, deadline
// passes, or self (the caller's request, may be nil) is evicted. While it
// waits, it evicts the oldest incomplete request every pressureDelay. A
// nil pool grants everything.
func (p *memPool) acquire(n int64, deadline time.Time, self *reading) error {
	if p == nil || n <= 0 {
		return nil
	}
	p.mu.Lock()
	if p.waiters.Len() == 0 && p.used+n <= p.cap {
		p.used += n
		p.peak = max(p.peak, p.used)
		p.mu.Unlock()
		return nil
	}
	w := &poolWaiter{n: n, ready: make(chan struct{})}
	e := p.waiters.PushBack(w)
	p.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	pressure := time.NewTicker(pressureDelay)
	defer pressure.Stop()
	var evicted <-chan struct{}
	if self != nil {
		evicted = self.evicted
	}
	err := errPoolWait
wait:
	for {
		select {
		case <-w.ready:
			return nil
		case <-t.C:
			break wait
		case <-evicted:
			err = errEvicted
			break wait
		case now := <-pressure.C:
			p.evictOldest(self, now.Add(-pressureDelay))
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile
		if err == errEvicted {
			p.used -= n
			p.grantLocked()
			return err
		}
		return nil
	default:
	}
	p.waiters.Remove(e)
	p.grantLocked() // the head may have changed
	return err
}

// release returns n bytes taken by acquire.
func (p *memPool) release(n int64) {
	if p == nil || n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used -= n
	p.grantLocked()
}

// grantLocked wakes waiters in order while they fit. Caller holds mu.
func (p *memPool) grantLocked() {
	for e := p.waiters.Front(); e != nil; e = p.waiters.Front() {
		w := e.Value.(*poolWaiter)
		if p.used+w.n > p.cap {
			return
		}
		p.used += w.n
		p.peak = max(p.peak, p.used)
		p.waiters.Remove(e)
		close(w.ready)
	}
}

// limit is the pool's capacity (no bound for a nil pool).
func (p *memPool) limit() int64 {
	if p == nil {
		return math.MaxInt64
	}
	return p.cap
}

// reclaimThreshold is the request memory a burst must have held for its end
// to return memory to the operating system at once.
const reclaimThreshold = 16 << 20

// runReclaim returns freed request memory to the operating system after a
// burst (a flood of large or half-sent requests) has ended: the garbage
// collector alone would wait for the next collection (up to two minutes on
// an idle broker) and the scavenger would release it slowly. It checks
// every interval until ctx ends.
func (p *memPool) runReclaim(ctx context.Context, interval time.Duration) {
	if p == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		peak, used := p.peak, p.used
		if used < peak/8 {
			p.peak = used
		}
		p.mu.Unlock()
		if peak >= reclaimThreshold && used < peak/8 {
			// Twice: the first collection only moves the request body
			// pools (protocol.ReleaseBody, a sync.Pool) to their victim
			// caches; the second frees them.
			debug.FreeOSMemory()
			debug.FreeOSMemory()
		}
	}
}

// inUse returns the bytes taken.
func (p *memPool) inUse() int64 {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// rateLimited logs at most one line per interval and counts what it drops.
type rateLimited struct {
	every   time.Duration
	last    atomic.Int64 // unix nanos of the last line
	dropped atomic.Int64
}

// log writes the line unless one was written within the interval; the next
// line written says how many were dropped.
func (r *rateLimited) log(logger *slog.Logger, level slog.Level, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(r.every) || !r.last.CompareAndSwap(last, now) {
		r.dropped.Add(1)
		return
	}
	if d := r.dropped.Swap(0); d > 0 {
		args = append(args, "similar_lines_dropped", d)
	}
	logger.Log(context.Background(), level, msg, args...)
}

// refuse closes a connection the broker will not serve with a reset (linger
// 0), which clients treat as a retryable network error rather than the
// "closed at once" EOF that some (franz-go) take for a TLS or SASL mismatch.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// isFDExhausted reports an accept error caused by running out of file
// descriptors (the process's or the system's).
func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// spareFD is one file descriptor held in reserve so that, when descriptors
// run out, the broker can still accept a waiting connection in order to
// refuse it (instead of leaving it in the listen backlog and Accept failing
// in a loop).
type spareFD struct {
	mu sync.Mutex // guards f; serialises refusals
	f  *os.File   // nil while spent
}

func newSpareFD() *spareFD {
	s := &spareFD{}
	s.f, _ = os.Open(os.DevNull)
	return s
}

// refuseOne frees the spare descriptor, accepts one connection from ln and
// refuses it, then takes the spare again. It reports whether a connection
// was refused.
func (s *spareFD) refuseOne(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		s.f, _ = os.Open(os.DevNull)
		return false
	}
	s.f.Close()
	s.f = nil
	// Do not wait for a connection if the one that made Accept fail is gone.
	type deadliner interface{ SetDeadline(time.Time) error }
	if d, ok := ln.(deadliner); ok {
		d.SetDeadline(time.Now().Add(100 * time.Millisecond))
		defer d.SetDeadline(time.Time{})
	}
	c, err := ln.Accept()
	if err == nil {
		refuse(c)
	}
	s.f, _ = os.Open(os.DevNull)
	return err == nil
}

func (s *spareFD) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

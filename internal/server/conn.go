package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/protocol"
	"strand/internal/security"
)

// Connection resources. An idle connection holds two parked goroutines, its
// socket and a small reply queue, and no read or write buffer: buffers are
// taken from pools when bytes arrive or responses leave and given back when
// the connection goes quiet, so that thousands of idle clients cost little
// memory (see TestIdleConnectionsRSS).
const (
	// maxPipelined bounds the requests a connection may have in flight.
	maxPipelined = 64
	// readBufSize is a pooled read buffer's size: small pipelined requests
	// arriving together are read with one system call.
	readBufSize = 16 << 10
	// writeFlushSize is how much response data is gathered before a write
	// when more responses are ready.
	writeFlushSize = 64 << 10
	// maxPooledWriteBuf is the largest write buffer kept for reuse; a larger
	// one (a big fetch response) is left to the garbage collector.
	maxPooledWriteBuf = 1 << 20
	// drainTimeout bounds how long shutdown waits for connections to answer
	// the requests they have read before it closes them.
	drainTimeout = 5 * time.Second
)

var (
	readBufs  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeFlushSize); return &b }}
)

// Reasons a connection's reader stops without an I/O error.
var (
	errIdle     = errors.New("idle longer than connections.max.idle.ms")
	errDraining = errors.New("broker shutting down")
)

// conn is one client connection. Its reader goroutine (serve) reads requests
// in order and runs their ordered part; its runner goroutine (runReplies)
// runs their continuations in the same order, and its writer goroutine
// (writeReplies) writes each response as soon as it is ready. A response
// never waits for the continuation after it: a produce reply goes out while
// the next request's fsync runs, so a client with several requests in flight
// keeps the log's group commit fed.
type conn struct {
	s      *Server
	c      net.Conn
	ip     netip.Addr
	logger *slog.Logger

	draining atomic.Bool  // set by drain: read no further request
	pending  atomic.Int32 // requests read and not yet answered

	br *bufio.Reader // pooled; held only while it buffers unread bytes (reader goroutine only)

	// auth is the connection's TLS/SASL state (auth.go), set by serve before
	// the first read; reader goroutine only.
	auth *connAuth

	// files and sock are set by serve before the first read when the
	// connection's bytes go unchanged to a TCP socket: fetches register
	// their record sets in files and the writer sends them with sendfile
	// on sock (fetchfiles.go). Both nil on TLS connections.
	files *sendFiles
	sock  syscall.RawConn
}

// acceptLoop accepts connections from ln until it is closed. Connections
// over max.connections or max.connections.per.ip are refused at once; when
// file descriptors run out, waiting connections are refused with the spare
// descriptor rather than left to make Accept fail in a loop.
//
// This is the seam for TLS and SASL: c is the raw TCP connection, counted
// against the limits before any handshake; a wrapper (tls.Server) goes
// around it before the conn is built.
func (s *Server) acceptLoop(ln net.Listener, exempt bool) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if isFDExhausted(err) && s.spare.refuseOne(ln) {
				s.refusedLog.log(s.logger, slog.LevelWarn, "out of file descriptors: refusing new connections", "err", err)
				continue
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.acceptLog.log(s.logger, slog.LevelWarn, "accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ip := remoteIP(c)
		if ok, why := s.limits.admit(ip, exempt); !ok {
			refuse(c)
			s.overLimitLog.log(s.logger, slog.LevelWarn, "refused a connection over the limit", "limit", why, "remote", c.RemoteAddr().String())
			continue
		}
		cn := &conn{s: s, c: c, ip: ip, logger: s.logger.With("remote", c.RemoteAddr().String())}
		s.connMu.Lock()
		s.conns[cn] = struct{}{}
		s.connMu.Unlock()
		s.connWG.Add(1)
		go func() {
			defer s.connWG.Done()
			cn.serve()
			s.connMu.Lock()
			delete(s.conns, cn)
			s.connMu.Unlock()
			s.limits.release(ip, exempt)
		}()
	}
}

// drain makes the connection stop reading requests; those already read are
// answered, then it closes.
func (cn *conn) drain() {
	cn.draining.Store(true)
	cn.c.SetReadDeadline(time.Now())
}

// reply is a response to come, in request order: run is called on the runner
// goroutine and returns the response, or nil when none is sent (acks=0).
// A reply with raw set instead sends those bytes as they are (a SASL v0
// token).
type reply struct {
	correlationID int32
	run           func() kmsg.Response
	raw           []byte
}

// outcome is a reply's outcome, handed from the runner to the writer.
type outcome struct {
	correlationID int32
	resp          kmsg.Response // nil: nothing to send (unless raw)
	raw           []byte
}

// maxReady bounds the outcomes waiting for the writer; with maxPipelined
// requests waiting for the runner it bounds what a connection holds.
const maxReady = 8

// hangUp, returned by a reply, closes the connection instead of answering.
var hangUp kmsg.Response = new(kmsg.ProduceResponse)

// serve reads and handles requests until the peer leaves, a limit or error
// closes the connection, or shutdown drains it.
func (cn *conn) serve() {
	s := cn.s
	ctx, cancel := context.WithCancel(context.WithValue(s.connCtx, remoteAddrKey{}, cn.c.RemoteAddr().String()))
	defer cancel()
	ctx = withMute(ctx) // client quotas (quotas.go)
	auth, err := s.startAuth(ctx, cn.c)
	if err != nil {
		s.connErrLog.log(cn.logger, slog.LevelInfo, "closing connection", "err", err)
		cn.c.Close()
		return
	}
	cn.auth = auth
	ctx = security.WithSession(ctx, auth.sess)
	if tc, ok := zeroCopyConn(cn.c); ok {
		if sock, err := tc.SyscallConn(); err == nil {
			cn.files, cn.sock = &sendFiles{}, sock
			ctx = withSendFiles(ctx, cn.files)
		}
	}
	replies := make(chan reply, maxPipelined)
	answers := make(chan outcome, maxReady)
	writerDone := make(chan struct{})
	var dead atomic.Bool // the writer stopped: continuations are not run
	go cn.runReplies(replies, answers, &dead)
	go func() {
		defer close(writerDone)
		cn.writeReplies(answers)
		// On a write error: stop the reader, then drain what it still queues.
		dead.Store(true)
		cancel()
		cn.c.Close()
		for a := range answers {
			cn.dropFiles(a)
			cn.pending.Add(-1)
		}
	}()
	defer func() {
		close(replies)
		<-writerDone
		cn.releaseReader()
	}()
	for {
		if !waitUnmuted(ctx) { // a throttled client's next request waits
			return
		}
		if auth.state == authRaw { // SaslHandshake v0: a raw token comes next
			cn.c.SetReadDeadline(auth.deadline)
			out, ok, err := auth.rawStep(cn.reader(), cn.logger)
			if err != nil || !ok {
				return
			}
			cn.pending.Add(1)
			select {
			case replies <- reply{raw: out}:
			case <-ctx.Done():
				cn.pending.Add(-1)
				return
			}
			continue
		}
		req, err := cn.readRequest()
		if err != nil {
			switch {
			case errors.Is(err, errIdle), errors.Is(err, errDraining):
				cn.logger.Debug("closing connection", "reason", err)
			case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil || cn.draining.Load():
			default:
				s.connErrLog.log(cn.logger, slog.LevelWarn, "closing connection", "err", err)
			}
			return
		}
		r, ok := cn.dispatch(ctx, req)
		if r.run != nil {
			cn.pending.Add(1)
			select {
			case replies <- r:
			case <-ctx.Done():
				cn.pending.Add(-1)
				return
			}
		}
		if !ok {
			return
		}
	}
}

// frame is a request read off the wire with the request memory it holds.
type frame struct {
	body []byte
	held int64 // bytes of queued.max.request.bytes taken for body
}

// dispatch parses a frame, runs the request's ordered part and returns its
// reply; ok is false when the connection must close (after r, when r.run is
// set: an answer that ends the connection). The frame's request
// memory is given back once the ordered part is done: what waits after it
// (replication of acks=all, long-poll fetch) holds no request memory, so
// waiting requests can never keep followers' fetches from being read.
func (cn *conn) dispatch(ctx context.Context, f frame) (r reply, ok bool) {
	defer cn.s.mem.release(f.held)
	req, err := protocol.ParseRequest(f.body)
	if err != nil {
		if req != nil && req.Key == int16(kmsg.ApiVersions) && errors.Is(err, protocol.ErrUnsupported) {
			// Answer with v0 and UNSUPPORTED_VERSION so the client retries with a version we have.
			resp := cn.s.apiVersions(0)
			resp.ErrorCode = kerrUnsupportedVersion
			return reply{correlationID: req.CorrelationID, run: func() kmsg.Response { return resp }}, true
		}
		cn.s.connErrLog.log(cn.logger, slog.LevelWarn, "closing connection after a bad request", "err", err)
		return reply{}, false
	}
	if resp, v := cn.auth.gate(req, cn.logger); v != pass {
		switch v {
		case answer:
			return reply{correlationID: req.CorrelationID, run: func() kmsg.Response { return resp }}, true
		case answerClose: // answered, then the connection closes
			return reply{correlationID: req.CorrelationID, run: func() kmsg.Response { return resp }}, false
		}
		return reply{}, false
	}
	run := cn.s.handle(ctx, req)
	if req.Key == int16(kmsg.Produce) {
		// The produce handler has copied the records (the body's only bytes
		// a decoded request aliases; strings are copied) into the logs, and
		// its continuation reads only their lengths: the body is free.
		protocol.ReleaseBody(f.body)
	}
	return reply{correlationID: req.CorrelationID, run: run}, true
}

// readRequest reads the next frame. It waits for the frame's first byte up
// to connections.max.idle.ms (longer while a response is pending); from
// that byte on, the whole frame must arrive within request.read.timeout.ms,
// including any wait for request memory (queued.max.request.bytes).
func (cn *conn) readRequest() (frame, error) {
	start, prefix, err := cn.readPrefix()
	if err != nil {
		return frame{}, err
	}
	n, err := protocol.ParseSize(prefix, cn.auth.maxFrame(cn.s.maxRequest))
	if err != nil {
		return frame{}, err
	}
	deadline := start.Add(cn.s.readTimeout)
	var held int64
	r := &reading{start: start, evicted: make(chan struct{}), cancel: func() { cn.c.SetReadDeadline(time.Now()) }}
	reserve := func(k int) error {
		take := min(int64(k), cn.s.mem.limit()-held)
		if err := cn.s.mem.acquire(take, deadline, r); err != nil {
			return err
		}
		if held == 0 && take > 0 {
			cn.s.mem.track(r)
		}
		held += max(take, 0)
		return nil
	}
	body, err := protocol.ReadBody(cn.reader(), n, reserve)
	cn.s.mem.untrack(r) // after this, r cannot be evicted: its eviction, if any, is visible below
	select {
	case <-r.evicted:
		// Evicted, possibly as the last bytes came: the pool is interrupting
		// this connection's read, so it closes.
		err = errEvicted
	default:
	}
	if err != nil {
		cn.s.mem.release(held)
		if isTimeout(err) && !cn.draining.Load() {
			err = fmt.Errorf("request not complete within request.read.timeout.ms (%v): %w", cn.s.readTimeout, err)
		}
		return frame{}, err
	}
	if cn.br != nil && cn.br.Buffered() == 0 {
		cn.releaseReader()
	}
	return frame{body: body, held: held}, nil
}

// readPrefix reads a frame's 4-byte size and returns when its first byte
// arrived. Bytes already buffered are the next frame's, read at once.
func (cn *conn) readPrefix() (time.Time, [4]byte, error) {
	var prefix [4]byte
	if cn.br != nil {
		start := time.Now()
		cn.c.SetReadDeadline(cn.auth.capDeadline(start.Add(cn.s.readTimeout)))
		if cn.draining.Load() {
			return start, prefix, errDraining
		}
		_, err := io.ReadFull(cn.br, prefix[:])
		return start, prefix, err
	}
	got := 0
	for got == 0 {
		cn.c.SetReadDeadline(cn.auth.capDeadline(time.Now().Add(cn.s.idleTimeout)))
		if cn.draining.Load() {
			return time.Time{}, prefix, errDraining
		}
		n, err := cn.c.Read(prefix[:])
		got = n
		switch {
		case n > 0:
		case cn.draining.Load():
			return time.Time{}, prefix, errDraining
		case isTimeout(err) && cn.auth.expired():
			return time.Time{}, prefix, errAuthTimeout
		case isTimeout(err) && cn.pending.Load() > 0:
			// A response is on its way: not idle.
		case isTimeout(err):
			return time.Time{}, prefix, errIdle
		case err != nil:
			return time.Time{}, prefix, err
		}
	}
	start := time.Now()
	if got < len(prefix) {
		cn.c.SetReadDeadline(cn.auth.capDeadline(start.Add(cn.s.readTimeout)))
		if _, err := io.ReadFull(cn.reader(), prefix[got:]); err != nil {
			return start, prefix, err
		}
	} else {
		cn.c.SetReadDeadline(cn.auth.capDeadline(start.Add(cn.s.readTimeout)))
	}
	return start, prefix, nil
}

// reader returns the connection's pooled read buffer, taking one if needed.
func (cn *conn) reader() *bufio.Reader {
	if cn.br == nil {
		cn.br = readBufs.Get().(*bufio.Reader)
		cn.br.Reset(cn.c)
	}
	return cn.br
}

// releaseReader gives the read buffer back to the pool (it must hold no
// unread bytes, or the connection is closing).
func (cn *conn) releaseReader() {
	if cn.br != nil {
		cn.br.Reset(nil)
		readBufs.Put(cn.br)
		cn.br = nil
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// runReplies runs each reply's continuation in request order and hands the
// outcome to the writer; it closes answers when replies is closed. Once the
// writer has stopped (dead) the continuations are skipped: nobody would read
// their answers.
func (cn *conn) runReplies(replies <-chan reply, answers chan<- outcome, dead *atomic.Bool) {
	defer close(answers)
	for r := range replies {
		if dead.Load() {
			cn.pending.Add(-1)
			continue
		}
		a := outcome{correlationID: r.correlationID, raw: r.raw}
		if r.run != nil {
			a.resp = r.run()
		}
		answers <- a
	}
}

// writeReplies writes each answer in order. It returns when answers is
// closed, a write fails or an answer hangs up. Answers that are ready
// together go out in one write, and one that is ready is never held back
// waiting for the next; the write buffer is pooled and given back whenever
// no answer is waiting. A fetch response's registered record sets are left
// out of the buffer and sent from their files in their place (see
// fetchfiles.go); each write's byte count is the response size field's.
func (cn *conn) writeReplies(answers <-chan outcome) {
	var (
		buf   *[]byte
		parts []filePart // record sets to send within *buf, in order
		held  []fileRead // reads to release once *buf is written
	)
	release := func() {
		releaseReads(held)
		parts, held = parts[:0], held[:0]
	}
	defer func() {
		release()
		if buf != nil {
			putWriteBuf(buf)
		}
	}()
	flush := func() error {
		// A client that stops taking responses is treated as idle (as Kafka
		// does): the write gives up after connections.max.idle.ms.
		cn.c.SetWriteDeadline(time.Now().Add(cn.s.idleTimeout))
		err := cn.writeParts(*buf, parts)
		*buf = (*buf)[:0]
		release()
		return err
	}
	for a := range answers {
		if a.resp == hangUp {
			if buf != nil && len(*buf) > 0 {
				flush()
			}
			cn.pending.Add(-1)
			return
		}
		if a.resp != nil || a.raw != nil {
			if buf == nil {
				buf = writeBufs.Get().(*[]byte)
			}
			if a.raw != nil {
				*buf = append(*buf, a.raw...)
			} else {
				*buf, parts, held = cn.appendAnswer(*buf, parts, held, a)
			}
		}
		if buf != nil && (len(answers) == 0 || len(*buf) >= writeFlushSize || len(parts) > 0) {
			err := flush()
			if len(answers) == 0 || err != nil {
				putWriteBuf(buf)
				buf = nil
			}
			if err != nil {
				cn.pending.Add(-1)
				cn.logger.Debug("write", "err", err)
				return
			}
		}
		cn.pending.Add(-1)
	}
	if buf != nil && len(*buf) > 0 {
		flush()
	}
}

// filePart is a record set sent from its file at byte at of the write buffer.
type filePart struct {
	at   int
	read fileRead
}

// appendAnswer encodes a's response into buf. A fetch response with
// registered record sets leaves them out: they are returned as parts, and
// every registered read (sent or replaced since) joins held.
func (cn *conn) appendAnswer(buf []byte, parts []filePart, held []fileRead, a outcome) ([]byte, []filePart, []fileRead) {
	fr, ok := a.resp.(*kmsg.FetchResponse)
	if !ok || cn.files == nil {
		return protocol.AppendResponse(buf, a.correlationID, a.resp), parts, held
	}
	reads := cn.files.take(fr)
	if len(reads) == 0 {
		return protocol.AppendResponse(buf, a.correlationID, a.resp), parts, held
	}
	held = append(held, reads...)
	m := partsOf(reads)
	buf, ps := protocol.AppendFetchResponse(buf, a.correlationID, fr, m.external)
	for _, p := range ps {
		parts = append(parts, filePart{at: p.At, read: m.lookup(p)})
	}
	return buf, parts, held
}

// writeParts writes buf with each part's record set sent at its place: from
// its file with sendfile, or the rest from memory when the file changed.
func (cn *conn) writeParts(buf []byte, parts []filePart) error {
	at := 0
	for _, p := range parts {
		if p.at > at {
			if _, err := cn.c.Write(buf[at:p.at]); err != nil {
				return err
			}
		}
		at = p.at
		sent, err := p.read.fr.SendTo(cn.sock, p.read.data)
		zeroCopyStats.fromFile.Add(int64(sent))
		if err != nil {
			return err
		}
		if sent < len(p.read.data) {
			zeroCopyStats.fromMemory.Add(int64(len(p.read.data) - sent))
			if _, err := cn.c.Write(p.read.data[sent:]); err != nil {
				return err
			}
		}
	}
	if at < len(buf) || len(parts) == 0 {
		_, err := cn.c.Write(buf[at:])
		return err
	}
	return nil
}

// dropFiles releases what a response not written registered.
func (cn *conn) dropFiles(a outcome) {
	if fr, ok := a.resp.(*kmsg.FetchResponse); ok {
		cn.files.drop(fr)
	}
}

func putWriteBuf(b *[]byte) {
	if cap(*b) > maxPooledWriteBuf {
		return
	}
	*b = (*b)[:0]
	writeBufs.Put(b)
}

// drainConns stops every connection from reading further requests, waits
// up to timeout for them to answer what they read, then cancels what still
// waits and closes them.
func (s *Server) drainConns(timeout time.Duration) {
	s.connMu.Lock()
	for cn := range s.conns {
		cn.drain()
	}
	s.connMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.connCancel()
		return
	case <-time.After(timeout):
	}
	s.connCancel()
	s.connMu.Lock()
	for cn := range s.conns {
		cn.c.Close()
	}
	s.connMu.Unlock()
	<-done
}

package controller

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The controller listener carries two kinds of connections, told apart by
// their first byte: Raft's own RPCs (connTypeRaft, handed to hashicorp/raft's
// network transport) and the controller RPCs brokers send (connTypeRPC).
const (
	connTypeRaft byte = 'R'
	connTypeRPC  byte = 'C'
)

// mux splits one TCP listener into the Raft stream layer and the RPC server.
type mux struct {
	ln     net.Listener
	raftCh chan net.Conn
	serve  func(net.Conn)       // handles an RPC connection (first byte consumed)
	admit  func(net.Conn) error // nil, or refuses a peer before it is served (Config.AuthorizePeer)
	addr   net.Addr             // advertised address
	dial   func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

func newMux(ln net.Listener, advertised net.Addr, serve func(net.Conn), admit func(net.Conn) error) *mux {
	m := &mux{ln: ln, raftCh: make(chan net.Conn), serve: serve, admit: admit, addr: advertised, done: make(chan struct{})}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

func (m *mux) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	// The first byte has been read, so a TLS handshake is complete and the
	// peer's certificate known: both Raft and controller RPCs need the
	// peer admitted (CLUSTER_ACTION on the cluster under an authorizer).
	if m.admit != nil {
		if err := m.admit(c); err != nil {
			c.Close()
			return
		}
	}
	switch b[0] {
	case connTypeRaft:
		select {
		case m.raftCh <- c:
		case <-m.done:
			c.Close()
		}
	case connTypeRPC:
		m.serve(c)
	default:
		c.Close()
	}
}

// Close stops accepting and waits for routed connections' handlers.
func (m *mux) Close() {
	m.closeOnce.Do(func() {
		close(m.done)
		m.ln.Close()
	})
}

// streamLayer is the raft.StreamLayer over the mux.
type streamLayer struct{ m *mux }

// Accept implements net.Listener.
func (s streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftCh:
		return c, nil
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (s streamLayer) Close() error { s.m.Close(); return nil }

// Addr implements net.Listener.
func (s streamLayer) Addr() net.Addr { return s.m.addr }

// Dial implements raft.StreamLayer.
func (s streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.m.dial(context.Background(), string(addr), timeout)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{connTypeRaft}); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

package replica

import (
	"context"
	"net"
	"time"
)

// DialFunc connects a follower to a leader's inter-broker listener,
// completing that listener's TLS handshake and SASL authentication.
type DialFunc func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)

func dialTCP(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", addr)
}

// SetDialer sets how followers connect to leaders (the inter-broker
// listener's security protocol). Call it before the first Apply.
func (m *Manager) SetDialer(d DialFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetchConfig.dial = d
}

package controller

import (
	"context"
	"net"
	"time"
)

// dial connects to another node's controller listener with Config.Dial
// (TLS when the controller listener is SSL), or plain TCP.
func (c *Config) dial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if c.Dial != nil {
		return c.Dial(ctx, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

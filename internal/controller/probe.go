package controller

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"strand/internal/metadata"
)

// Fast detection of dead brokers.
//
// A broker is fenced when no heartbeat arrives for broker.session.timeout.ms.
// That timeout must cover a live broker's worst stall (GC, a slow disk, a
// loaded host), so it cannot be very short. But a broker whose process died
// (kill -9, a crash, OOM) says so at once: its host's kernel refuses
// connections to its listener (TCP RST, ECONNREFUSED). A live process never
// causes that - even stopped (SIGSTOP) or overloaded, its listening socket
// completes handshakes - and a cut network or a powered-off host gives a
// timeout, not a refusal.
//
// So the active controller probes every broker whose heartbeat is overdue
// (older than two heartbeat intervals): it dials the broker's inter-broker
// address, and if the connection is refused it ends the broker's session
// now instead of at the session timeout, and the lead loop fences it on its
// next tick. Any other outcome changes nothing. A heartbeat or registration
// that arrives meanwhile wins (markDead only ends a session not renewed
// since the probe began).

// probeLoop runs the probes while this node is the active controller, until
// the node closes.
func (n *Node) probeLoop() {
	defer n.wg.Done()
	interval := n.cfg.HeartbeatInterval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval / 2) // a dead broker is found 2 to 2.5 intervals after its last heartbeat
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			if n.IsActive() {
				n.probeOverdue(n.ctx, n.Image(), now, interval)
			}
		}
	}
}

// probeOverdue probes, in parallel, the unfenced brokers other than this
// node not heard from within two heartbeat intervals, and ends the session
// of each whose listener refuses connections. It returns those brokers' ids.
func (n *Node) probeOverdue(ctx context.Context, img *metadata.Image, now time.Time, interval time.Duration) []int32 {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards dead
		dead []int32
	)
	for _, b := range n.live.expired(img, now.Add(-2*interval)) {
		if b.ID == n.cfg.NodeID && n.cfg.Broker != nil {
			continue // this process is alive
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !refused(ctx, b.ReplicationAddr(), interval) {
				return
			}
			if n.live.markDead(b.ID, now) {
				n.logger.Warn("broker heartbeat overdue and its listener refuses connections: its process is gone; ending its session now",
					"broker", b.ID, "epoch", b.Epoch, "addr", b.ReplicationAddr())
				mu.Lock()
				dead = append(dead, b.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return dead
}

// refused reports whether a TCP connection to addr is actively refused.
func refused(ctx context.Context, addr string, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// markDead ends broker id's session unless it was renewed (heartbeat or
// registration) at or after since, and reports whether it did.
func (l *liveness) markDead(id int32, since time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.lastSeen[id]; ok && !t.Before(since) {
		return false
	}
	l.lastSeen[id] = time.Time{}
	return true
}

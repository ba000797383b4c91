package controller

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"strand/internal/metadata"
)

// TestProbeOverdueFencesOnlyDeadProcesses: of three brokers with overdue
// heartbeats, only the one whose listener refuses connections loses its
// session early; a live listener (even one that never answers, as a
// stopped process) and a fresh heartbeat keep theirs.
func TestProbeOverdueFencesOnlyDeadProcesses(t *testing.T) {
	alive, err := net.Listen("tcp", "127.0.0.1:0") // accepts in the kernel, never served: a paused process
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().(*net.TCPAddr)
	gone.Close() // nothing listens there any more: a killed process
	broker := func(id int32, addr *net.TCPAddr) metadata.Broker {
		return metadata.Broker{ID: id, Host: addr.IP.String(), Port: int32(addr.Port), Epoch: int64(id)}
	}
	img := &metadata.Image{Brokers: []metadata.Broker{
		broker(1, alive.Addr().(*net.TCPAddr)), // this node: never probed
		broker(2, alive.Addr().(*net.TCPAddr)),
		broker(3, goneAddr),
		broker(4, goneAddr), // gone too, but heartbeated recently
	}}
	n := &Node{cfg: Config{NodeID: 1, Broker: &metadata.Broker{}}, live: newLiveness(),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	interval := 200 * time.Millisecond
	now := time.Now()
	old := now.Add(-time.Second)
	for _, id := range []int32{1, 2, 3} {
		n.live.seen(id, old, false)
	}
	n.live.seen(4, now.Add(-interval), false)

	dead := n.probeOverdue(context.Background(), img, now, interval)
	if !slices.Equal(dead, []int32{3}) {
		t.Fatalf("probed dead: %v, want [3]", dead)
	}
	// Broker 3's session ended: the lead loop's expiry check (one session
	// timeout, here an hour) now fences it, and nobody else.
	var expired []int32
	for _, b := range n.live.expired(img, now.Add(-time.Hour)) {
		expired = append(expired, b.ID)
	}
	if !slices.Equal(expired, []int32{3}) {
		t.Fatalf("expired after the probe: %v, want [3]", expired)
	}
	// A heartbeat that arrived while the probe ran wins.
	n.live.seen(3, now.Add(time.Millisecond), false)
	if n.live.markDead(3, now) {
		t.Fatal("a session renewed during the probe was ended")
	}
}

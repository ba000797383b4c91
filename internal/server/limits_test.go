package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestMemPoolBoundsAndOrder(t *testing.T) {
	p := newMemPool(100)
	far := time.Now().Add(10 * time.Second)
	if err := p.acquire(85, far, nil); err != nil {
		t.Fatal(err)
	}
	// 50 does not fit: it waits, and a later 10 that would fit waits behind
	// it (arrival order, so a large request is not starved).
	got := make(chan int64, 2)
	var wg sync.WaitGroup
	for i, n := range []int64{50, 10} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.acquire(n, far, nil); err != nil {
				t.Error(err)
			}
			got <- n
		}()
		for deadline := time.Now().Add(5 * time.Second); ; { // queue them in this order
			p.mu.Lock()
			queued := p.waiters.Len()
			p.mu.Unlock()
			if queued == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("acquire(%d) did not queue", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case n := <-got:
		t.Fatalf("acquire(%d) returned while the pool was full", n)
	case <-time.After(50 * time.Millisecond):
	}
	p.release(85)
	wg.Wait()
	if u := p.inUse(); u != 60 {
		t.Fatalf("in use %d, want 60", u)
	}
	// A waiter whose deadline passes gives up and takes nothing.
	if err := p.acquire(50, time.Now().Add(20*time.Millisecond), nil); err != errPoolWait {
		t.Fatalf("acquire past deadline: %v, want errPoolWait", err)
	}
	p.release(60)
	if u := p.inUse(); u != 0 {
		t.Fatalf("in use %d after releasing everything", u)
	}
	var nilPool *memPool
	if err := nilPool.acquire(1<<40, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
}

// closedWithin reports whether the broker closes c (a read fails) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			ne, ok := err.(net.Error)
			return !ok || !ne.Timeout()
		}
	}
}

// produceOK produces one record with cl and fails the test on error.
func produceOK(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(c, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestSlowlorisDropped: a client that sends a request a byte at a time, or
// stops inside the size prefix, is dropped request.read.timeout.ms after
// its first byte, while a producer is served throughout.
func TestSlowlorisDropped(t *testing.T) {
	n := startNode(t, [2]string{"request.read.timeout.ms", "500"})
	cl := n.client(kgo.AllowAutoTopicCreation())
	produceOK(t, cl, "slow")

	slow := dial(t, n.addr)
	start := time.Now()
	var prefix [4]byte
	binary.BigEndian.PutUint32(prefix[:], 100)
	slow.Write(prefix[:])
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := slow.Write([]byte{0}); err != nil {
				return
			}
		}
	}()
	half := dial(t, n.addr)
	half.Write(prefix[:2]) // stops inside the size prefix

	produceOK(t, cl, "slow") // served while both are trickling
	if !closedWithin(slow, 5*time.Second) {
		t.Fatal("a client sending one byte every 50 ms was not dropped")
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("dropped after %v, before request.read.timeout.ms (500 ms)", took)
	}
	if !closedWithin(half, 5*time.Second) {
		t.Fatal("a client that stopped inside the size prefix was not dropped")
	}
	produceOK(t, cl, "slow")
}

// TestIdleConnectionClosed: a connection with nothing in flight is closed
// after connections.max.idle.ms; one waiting for a long-poll fetch is not.
func TestIdleConnectionClosed(t *testing.T) {
	n := startNode(t, [2]string{"connections.max.idle.ms", "300"})
	cl := n.client(kgo.AllowAutoTopicCreation())
	produceOK(t, cl, "idle")

	idle := dial(t, n.addr)
	idle.send(t, kmsg.NewPtrApiVersionsRequest(), 1)
	idle.recv(t)
	if !closedWithin(idle, 5*time.Second) {
		t.Fatal("an idle connection was not closed after connections.max.idle.ms")
	}

	// A client that sends fetches but stops reading the responses is closed
	// once a write has made no progress for connections.max.idle.ms,
	// instead of holding the responses' memory.
	big := make([]byte, 100<<10)
	for range 40 {
		c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := cl.ProduceSync(c, &kgo.Record{Topic: "idle", Value: big}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	stalled := dial(t, n.addr)
	for i := range 40 { // about 80 MB of responses: more than socket buffers hold
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(11)
		req.ReplicaID, req.MaxBytes = -1, 4<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "idle"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes = int64(i), 4<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		stalled.send(t, req, int32(i))
	}
	for deadline := time.Now().Add(10 * time.Second); serverSideEstablished(t, n.addr, stalled.LocalAddr().String()); {
		if time.Now().After(deadline) {
			t.Fatal("a connection whose client stopped reading responses was not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A fetch that waits 1.5 s for data (longer than the idle timeout) is answered.
	busy := dial(t, n.addr)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(11)
	fetch.ReplicaID = -1
	fetch.MaxWaitMillis = 1500
	fetch.MinBytes = 1 << 20
	fetch.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "idle"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset = 1
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	start := time.Now()
	busy.send(t, fetch, 7)
	if corr, _ := busy.recv(t); corr != 7 {
		t.Fatalf("fetch answered with correlation id %d", corr)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("fetch answered after %v; expected it to wait ~1.5 s", took)
	}
	produceOK(t, cl, "idle")
}

// TestConnectionLimits: max.connections.per.ip (with an override) and
// max.connections refuse connections over them at once, others are served,
// and a freed slot is usable again.
func TestConnectionLimits(t *testing.T) {
	// dialFrom connects from a given loopback address; nil when the dial
	// itself was reset (a refusal can come that fast).
	dialFrom := func(t *testing.T, addr, from string) *rawConn {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil
		}
		t.Cleanup(func() { c.Close() })
		return &rawConn{c, nil}
	}
	served := func(c *rawConn) bool {
		if c == nil {
			return false
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req := kmsg.NewPtrApiVersionsRequest()
		if _, err := c.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
			return false
		}
		var b [4]byte
		_, err := c.Read(b[:])
		return err == nil
	}

	t.Run("per-ip", func(t *testing.T) {
		n := startNode(t, [2]string{"max.connections.per.ip.overrides", "127.0.0.2:2"}, [2]string{"max.connections.per.ip", "50"})
		a, b := dialFrom(t, n.addr, "127.0.0.2"), dialFrom(t, n.addr, "127.0.0.2")
		if !served(a) || !served(b) {
			t.Fatal("connections within the override not served")
		}
		start := time.Now()
		if c := dialFrom(t, n.addr, "127.0.0.2"); served(c) {
			t.Fatal("third connection from 127.0.0.2 (override 2) served")
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("refusal took %v; want it at once", took)
		}
		produceOK(t, n.client(kgo.AllowAutoTopicCreation()), "limits") // 127.0.0.1 is not affected
		a.Close()
		for deadline := time.Now().Add(5 * time.Second); !served(dialFrom(t, n.addr, "127.0.0.2")); {
			if time.Now().After(deadline) {
				t.Fatal("a freed per-IP slot was not reused")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("total", func(t *testing.T) {
		n := startNode(t, [2]string{"max.connections", "3"})
		var cs []*rawConn
		for range 3 {
			c := dialFrom(t, n.addr, "127.0.0.1")
			if !served(c) {
				t.Fatal("connection within max.connections not served")
			}
			cs = append(cs, c)
		}
		if served(dialFrom(t, n.addr, "127.0.0.3")) {
			t.Fatal("fourth connection served with max.connections=3")
		}
		cs[0].Close()
		for deadline := time.Now().Add(5 * time.Second); !served(dialFrom(t, n.addr, "127.0.0.3")); {
			if time.Now().After(deadline) {
				t.Fatal("a freed connection slot was not reused")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// serverSideEstablished reports whether the kernel still has the broker's
// end of the connection from client to server (both 127.0.0.1:port) in
// state ESTABLISHED (/proc/net/tcp), without reading from the client end.
func serverSideEstablished(t *testing.T, server, client string) bool {
	t.Helper()
	f := serverSideSocket(t, server, client)
	return f != nil && f[3] == "01"
}

// serverSideUnread returns the bytes the broker has not yet read from the
// connection from client (-1 when the socket is gone).
func serverSideUnread(t *testing.T, server, client string) int64 {
	t.Helper()
	f := serverSideSocket(t, server, client)
	if f == nil {
		return -1
	}
	_, rx, _ := strings.Cut(f[4], ":") // tx_queue:rx_queue
	n, err := strconv.ParseInt(rx, 16, 64)
	if err != nil {
		t.Fatalf("rx_queue %q: %v", f[4], err)
	}
	return n
}

// serverSideSocket returns the /proc/net/tcp fields of the broker's end of
// the connection from client, nil when there is none.
func serverSideSocket(t *testing.T, server, client string) []string {
	t.Helper()
	hexAddr := func(a string) string {
		ap := netip.MustParseAddrPort(a)
		ip := ap.Addr().As4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	}
	local, remote := hexAddr(server), hexAddr(client)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[1] == local && f[2] == remote {
			return f
		}
	}
	return nil
}

// TestShutdownAnswersRequestsInFlight: a request read before shutdown (a
// long-poll fetch) is answered, then the connection closes; a new
// connection is refused by then.
func TestShutdownAnswersRequestsInFlight(t *testing.T) {
	n := startNode(t)
	cl := n.client(kgo.AllowAutoTopicCreation())
	produceOK(t, cl, "drain")
	c := dial(t, n.addr)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(11)
	fetch.ReplicaID, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = -1, 1000, 1<<20, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "drain"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = 1, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	c.send(t, fetch, 9)
	for deadline := time.Now().Add(10 * time.Second); serverSideUnread(t, n.addr, c.LocalAddr().String()) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the broker did not read the fetch")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() {
		n.stop()
		close(stopped)
	}()
	if corr, _ := c.recv(t); corr != 9 {
		t.Fatalf("answer with correlation id %d, want 9", corr)
	}
	<-stopped
	if !closedWithin(c, 5*time.Second) {
		t.Fatal("connection still open after shutdown")
	}
	if _, err := net.DialTimeout("tcp", n.addr, time.Second); err == nil {
		t.Fatal("a new connection was accepted after shutdown")
	}
}

// TestFloodOverRequestMemory: 40 clients each send 1 MiB of a request that
// declares 100 MB, five times queued.max.request.bytes (8 MiB), and stall.
// The pool evicts the oldest stalled requests while others wait, so a
// producer on its own connection goes on being acknowledged (it would
// otherwise wait for request.read.timeout.ms, 30 s, to drop the flood).
func TestFloodOverRequestMemory(t *testing.T) {
	n := startNode(t, [2]string{"queued.max.request.bytes", strconv.Itoa(8 << 20)})
	cl := n.client(kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(0))
	produceOK(t, cl, "flood")

	var mu sync.Mutex // guards acks
	var acks []time.Time
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := cl.ProduceSync(c, &kgo.Record{Topic: "flood", Value: []byte("healthy")}).FirstErr()
			cancel()
			if err == nil {
				mu.Lock()
				acks = append(acks, time.Now())
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()

	floodStart := time.Now()
	var flood []net.Conn
	for range 40 {
		c := dial(t, n.addr)
		flood = append(flood, c)
		go func() {
			msg := make([]byte, 4+1<<20)
			binary.BigEndian.PutUint32(msg, 100_000_000)
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			c.Write(msg)
		}()
	}
	time.Sleep(5 * time.Second) // the window measured: the flood holds all the while
	mu.Lock()
	var during int
	gap, last := time.Duration(0), floodStart
	for _, a := range acks {
		if a.After(floodStart) {
			during++
			gap = max(gap, a.Sub(last))
			last = a
		}
	}
	gap = max(gap, time.Since(last))
	mu.Unlock()
	t.Logf("flood of 40 x 1 MiB over an 8 MiB pool for %v: %d acks, longest gap %v", time.Since(floodStart).Round(time.Millisecond), during, gap.Round(time.Millisecond))
	if during < 3 || gap > 4*time.Second {
		t.Fatalf("healthy producer starved by the flood: %d acks, longest gap %v", during, gap)
	}
	evicted := 0
	for _, c := range flood {
		if closedWithin(c, 10*time.Millisecond) {
			evicted++
		}
	}
	t.Logf("%d of 40 flood connections closed by eviction", evicted)
	if evicted == 0 {
		t.Fatal("no flood connection was evicted")
	}
}

// TestPartitionFailedToOpenIsRetried: a partition whose log cannot be
// opened at start (here a segment file replaced by a directory; in life, a
// recovery that cannot write on a full disk) is left alone, retried, and
// served once the cause is gone, without another restart.
func TestPartitionFailedToOpenIsRetried(t *testing.T) {
	n := startNode(t)
	cl := n.client(kgo.AllowAutoTopicCreation())
	for range 10 {
		produceOK(t, cl, "retry")
	}
	cl.Close()
	n.stop()
	seg := filepath.Join(n.dir, "retry-0", "00000000000000000000.log")
	if err := os.Rename(seg, seg+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(seg, 0o755); err != nil {
		t.Fatal(err)
	}
	n.start()
	cl = n.client()
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends := func() (int64, error) {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		lo, err := adm.ListEndOffsets(c, "retry")
		if err != nil {
			return 0, err
		}
		o, _ := lo.Lookup("retry", 0)
		return o.Offset, o.Err
	}
	if end, err := ends(); err == nil {
		t.Fatalf("partition served (end offset %d) with its segment file replaced by a directory", end)
	}
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(seg+".aside", seg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		end, err := ends()
		if err == nil && end == 10 {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("partition not served 20 s after the cause was gone: end %d, %v", end, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("partition served %v after the cause was gone", time.Since(start).Round(time.Millisecond))
}

package log

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (send, recv *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-accepted
	if a == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); a.Close() })
	return c.(*net.TCPConn), a.(*net.TCPConn)
}

// sendRange sends data as a connection's writer does: from the file with
// SendTo, the rest from memory. It returns the bytes sent from the file.
func sendRange(sock *net.TCPConn, data []byte, fr FileRange) (int, error) {
	raw, err := sock.SyscallConn()
	if err != nil {
		return 0, err
	}
	sent, err := fr.SendTo(raw, data)
	if err != nil {
		return sent, err
	}
	_, err = sock.Write(data[sent:])
	return sent, err
}

// readFull reads n bytes from c, in the background.
func readFull(c net.Conn, n int) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		k, _ := io.ReadFull(c, b)
		out <- b[:k]
	}()
	return out
}

func TestReadFileSendsFromFile(t *testing.T) {
	l := openT(t, t.TempDir(), smallConfig())
	appendN(t, l, 40, 1000) // several segments
	for _, off := range []int64{0, 7, 30, 61} {
		want, err := l.Read(off, 1<<20, math.MaxInt64, true)
		if err != nil {
			t.Fatal(err)
		}
		data, fr, err := l.ReadFile(off, 1<<20, math.MaxInt64, true, nil)
		if err != nil || !bytes.Equal(data, want) || !fr.HasFile() {
			t.Fatalf("offset %d: ReadFile = %d bytes (file %v), %v; Read %d bytes", off, len(data), fr.HasFile(), err, len(want))
		}
		send, recv := tcpPair(t)
		got := readFull(recv, len(data))
		sent, err := sendRange(send, data, fr)
		if err != nil {
			t.Fatal(err)
		}
		if sent != len(data) {
			t.Fatalf("offset %d: %d of %d bytes sent from the file", off, sent, len(data))
		}
		if b := <-got; !bytes.Equal(b, data) {
			t.Fatalf("offset %d: received bytes differ from the read", off)
		}
	}
	// Bounded by maxOffset (the high watermark): nothing at or past it.
	data, fr, err := l.ReadFile(0, 1<<20, 2, true, nil)
	if err != nil || len(data) == 0 || fr.pos != 0 {
		t.Fatalf("bounded read: %d bytes at %d, %v", len(data), fr.pos, err)
	}
	if want, _ := l.Read(0, 1<<20, 2, true); !bytes.Equal(data, want) {
		t.Fatal("bounded ReadFile differs from Read")
	}
}

// TestSendToAfterTruncate: a read queued for sending whose bytes a
// truncation then cuts and new appends overwrite in place is sent from
// memory, as read, not the file's new bytes.
func TestSendToAfterTruncate(t *testing.T) {
	cfg := DefaultConfig()
	l := openT(t, t.TempDir(), cfg)
	bases := appendN(t, l, 20, 1000)
	data, fr, err := l.ReadFile(bases[5], 1<<20, math.MaxInt64, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Truncate(bases[10]); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := l.AppendAsLeader(batch(t, 2, 100, 5000, fmt.Sprint("new", i)), AppendOptions{LeaderEpoch: 4}); err != nil {
			t.Fatal(err)
		}
	}
	send, recv := tcpPair(t)
	got := readFull(recv, len(data))
	sent, err := sendRange(send, data, fr)
	if err != nil {
		t.Fatal(err)
	}
	if sent != 0 {
		t.Fatalf("%d bytes sent from a file truncated since the read", sent)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatal("received bytes differ from the read")
	}
}

// TestSendToOutlivesDeletion: a send in progress (the receiver is slow)
// keeps sending from its segment file while retention deletes the segment
// and the log is closed: every byte arrives as read, all from the file.
func TestSendToOutlivesDeletion(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 512 << 10
	l := openT(t, t.TempDir(), cfg)
	for i := 0; i < 60; i++ { // ~16 KiB batches: two segments
		if _, err := l.AppendAsLeader(batch(t, 16, 1000, int64(i), fmt.Sprint("b", i)), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	data, fr, err := l.ReadFile(0, 1<<20, math.MaxInt64, true, nil)
	if err != nil || len(data) < 256<<10 {
		t.Fatalf("read %d bytes: %v", len(data), err)
	}
	send, recv := tcpPair(t)
	send.SetWriteBuffer(8 << 10)
	recv.SetReadBuffer(8 << 10)
	type result struct {
		sent int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		sent, err := sendRange(send, data, fr)
		done <- result{sent, err}
	}()
	// Wait until the send is blocked on the full socket, holding the file.
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("send finished without a reader (%d bytes): socket buffers too large for the test", r.sent)
	default:
	}
	if err := l.DeleteRecordsBefore(l.LogEndOffset()); err != nil {
		t.Fatal(err)
	}
	if l.segs[0].base == 0 {
		t.Fatal("the first segment was not deleted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readFull(recv, len(data))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatal("received bytes differ from the read")
	}
	if r.sent != len(data) {
		t.Fatalf("%d of %d bytes sent from the file", r.sent, len(data))
	}
}

// TestSendToConcurrentRetentionTruncation runs reads sent over TCP while
// other goroutines append, truncate above the readers' bound (as a
// follower's truncation stays above the high watermark) and delete old
// segments: every received byte matches its read (run with -race).
func TestSendToConcurrentRetentionTruncation(t *testing.T) {
	l := openT(t, t.TempDir(), smallConfig())
	appendN(t, l, 40, 0)
	var bound atomic.Int64 // what readers may read: below it nothing is truncated
	bound.Store(l.LogEndOffset())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writer: append, sometimes truncate above bound, advance bound, delete old data
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			info, err := l.AppendAsLeader(batch(t, 2, 100, int64(i), fmt.Sprint("w", i)), AppendOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			switch i % 5 {
			case 2:
				if err := l.Truncate(info.BaseOffset); err != nil { // cut the batch just written
					t.Error(err)
					return
				}
			case 4:
				bound.Store(l.LogEndOffset())
				if i%20 == 19 {
					if err := l.DeleteRecordsBefore(max(l.LogStartOffset(), bound.Load()-60)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}
	}()
	send, recv := tcpPair(t)
	var fromFile, total int
	for i := 0; i < 300 && !t.Failed(); i++ {
		start, hw := l.LogStartOffset(), bound.Load()
		off := start + rand.Int64N(max(hw-start, 1))
		data, fr, err := l.ReadFile(off, 2000+rand.IntN(6000), hw, true, nil)
		if err != nil {
			continue // deleted meanwhile (out of range)
		}
		got := readFull(recv, len(data))
		sent, err := sendRange(send, data, fr)
		if err != nil {
			t.Fatal(err)
		}
		if b := <-got; !bytes.Equal(b, data) {
			t.Fatalf("read at %d: received bytes differ from the read", off)
		}
		fromFile += sent
		total += len(data)
	}
	close(stop)
	wg.Wait()
	if fromFile == 0 {
		t.Fatalf("no byte of %d sent from a file", total)
	}
	t.Logf("%d of %d bytes sent from files", fromFile, total)
}

// TestReadFileRange: the unread range covers exactly Read's batches, is
// sent whole from the file even after retention deleted its segment and
// the log closed (it holds its own descriptor), and a truncation since the
// read makes the send fail rather than send other bytes.
func TestReadFileRange(t *testing.T) {
	l := openT(t, t.TempDir(), smallConfig())
	appendN(t, l, 40, 1000)
	for _, c := range []struct {
		off, maxOffset int64
		maxBytes       int
	}{{0, math.MaxInt64, 1 << 20}, {7, math.MaxInt64, 1 << 20}, {30, 34, 1 << 20}, {61, math.MaxInt64, 600}, {5, math.MaxInt64, 1}} {
		want, err := l.Read(c.off, c.maxBytes, c.maxOffset, true)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := l.ReadFileRange(c.off, c.maxBytes, c.maxOffset, true)
		if err != nil || fr.Len() != len(want) {
			t.Fatalf("%+v: range of %d bytes, %v; Read %d bytes", c, fr.Len(), err, len(want))
		}
		send, recv := tcpPair(t)
		got := readFull(recv, fr.Len())
		raw, _ := send.SyscallConn()
		sent, err := fr.SendTo(raw, nil)
		if err != nil || sent != len(want) {
			t.Fatalf("%+v: sent %d of %d: %v", c, sent, len(want), err)
		}
		if b := <-got; !bytes.Equal(b, want) {
			t.Fatalf("%+v: received bytes differ from Read's", c)
		}
		fr.Close()
	}
	if fr, err := l.ReadFileRange(l.LogEndOffset(), 1<<20, math.MaxInt64, true); err != nil || fr.HasFile() {
		t.Fatalf("range at the LEO: %v, %v", fr.HasFile(), err)
	}

	// Deleted and closed after the read: still sent from the range's descriptor.
	want, _ := l.Read(0, 1<<20, math.MaxInt64, true)
	fr, err := l.ReadFileRange(0, 1<<20, math.MaxInt64, true)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	bases := appendN(t, l, 4, 9000)
	cut, err := l.ReadFileRange(bases[1], 1<<20, math.MaxInt64, true)
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	if err := l.Truncate(bases[1]); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 4, 9500)
	if err := l.DeleteRecordsBefore(l.LogEndOffset()); err != nil {
		t.Fatal(err)
	}
	send, recv := tcpPair(t)
	raw, _ := send.SyscallConn()
	if _, err := cut.SendTo(raw, nil); !errors.Is(err, ErrFileChanged) {
		t.Fatalf("send of a truncated range: %v, want ErrFileChanged", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readFull(recv, len(want))
	if sent, err := fr.SendTo(raw, nil); err != nil || sent != len(want) {
		t.Fatalf("send after deletion: %d of %d, %v", sent, len(want), err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatal("received bytes differ from the deleted segment's")
	}
}

// TestReadFileRangeMatchesRead compares ReadFileRange with Read at random
// offsets, sizes and bounds over many small batches with a dense offset
// index (the range skips from entry to entry): same position and size.
func TestReadFileRangeMatchesRead(t *testing.T) {
	cfg := smallConfig()
	cfg.SegmentBytes = 64 << 10
	l := openT(t, t.TempDir(), cfg)
	for i := 0; i < 400; i++ {
		n := 1 + i%5
		if _, err := l.AppendAsLeader(batch(t, n, 10+(i*13)%200, int64(i), fmt.Sprint("m", i)), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	leo := l.LogEndOffset()
	for i := 0; i < 3000; i++ {
		off := rand.Int64N(leo)
		maxBytes := rand.IntN(20000)
		maxOffset := int64(math.MaxInt64)
		if i%2 == 0 {
			maxOffset = off + rand.Int64N(leo-off+1)
		}
		minOne := i%3 != 0
		want, err := l.Read(off, maxBytes, maxOffset, minOne)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := l.ReadFileRange(off, maxBytes, maxOffset, minOne)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Len() != len(want) {
			t.Fatalf("offset %d, max %d bytes, below %d, minOne %v: range of %d bytes, Read %d", off, maxBytes, maxOffset, minOne, fr.Len(), len(want))
		}
		if len(want) > 0 {
			got := make([]byte, fr.Len())
			if _, err := fr.file.ReadAt(got, fr.pos); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("offset %d: range bytes differ from Read's (%v)", off, err)
			}
		}
		fr.Close()
	}
}

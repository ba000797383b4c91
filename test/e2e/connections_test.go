package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"strand/internal/testcluster"
)

// procRSS returns the resident set size of process pid in bytes.
func procRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read RSS of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// rssOver samples pid's RSS every 100 ms for d and returns the smallest and
// largest value seen.
func rssOver(t testing.TB, pid int, d time.Duration) (lo, hi int64) {
	t.Helper()
	lo = 1 << 62
	for end := time.Now().Add(d); ; {
		v := procRSS(t, pid)
		lo, hi = min(lo, v), max(hi, v)
		if time.Now().After(end) {
			return lo, hi
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procCPU returns the user+system CPU time process pid has used.
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/stat: %v", pid, err)
	}
	// Fields after the parenthesised command; utime and stime are the 14th
	// and 15th fields of the whole line, in clock ticks (100 a second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// raiseNoFile makes sure this process (and the brokers it starts) may open
// want file descriptors, raising the hard limit if needed (root may).
func raiseNoFile(t testing.TB, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = want
	lim.Max = max(lim.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("this test needs %d open files: setrlimit: %v (run as root or raise ulimit -n)", want, err)
	}
}

// apiVersions does one ApiVersions v0 exchange on c.
func apiVersions(c net.Conn, corr int32) error {
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(0)
	body, err := testcluster.Exchange(c, "e2e", req, corr)
	if err != nil {
		return err
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	return nil
}

// healthyProducer produces small acks=all records to topic until stopped
// and records when each was acknowledged.
type healthyProducer struct {
	mu   sync.Mutex // guards acks, errs
	acks []time.Time
	errs []error

	stop chan struct{}
	done chan struct{}
}

func startHealthyProducer(t testing.TB, n *testcluster.Node, topic string) *healthyProducer {
	t.Helper()
	cl := newClient(t, n, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	hp := &healthyProducer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(hp.done)
		for i := 0; ; i++ {
			select {
			case <-hp.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := cl.ProduceSync(ctx, &kgo.Record{Value: bytes.Repeat([]byte{'h'}, 1024)}).FirstErr()
			cancel()
			hp.mu.Lock()
			if err != nil {
				hp.errs = append(hp.errs, err)
			} else {
				hp.acks = append(hp.acks, time.Now())
			}
			hp.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	t.Cleanup(hp.halt)
	return hp
}

func (hp *healthyProducer) halt() {
	select {
	case <-hp.stop:
	default:
		close(hp.stop)
	}
	<-hp.done
}

// since returns the acknowledgements after from and the longest gap between
// consecutive acknowledgements (or between from and the first) up to now.
func (hp *healthyProducer) since(from time.Time) (n int, gap time.Duration) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	last := from
	for _, a := range hp.acks {
		if a.Before(from) {
			continue
		}
		n++
		gap = max(gap, a.Sub(last))
		last = a
	}
	return n, max(gap, time.Since(last))
}

// waitAcks waits until the producer has n acknowledgements after from.
func (hp *healthyProducer) waitAcks(t testing.TB, from time.Time, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, _ := hp.since(from)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			hp.mu.Lock()
			errs := hp.errs
			hp.mu.Unlock()
			t.Fatalf("healthy producer: %d acknowledgements within %v, want %d (errors: %v)", got, within, n, errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (hp *healthyProducer) errors() []error {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return append([]error(nil), hp.errs...)
}

// bigMetadata exchanges a Metadata request naming 400 unknown topics (about
// 20 KiB each way) on c, so that the connection's read and write buffers
// have been used.
func bigMetadata(c net.Conn, corr int32) error {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(9)
	for i := range 400 {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(fmt.Sprintf("no-such-topic-%035d", i))
		req.Topics = append(req.Topics, rt)
	}
	body, err := testcluster.Exchange(c, "e2e", req, corr)
	if err != nil {
		return err
	}
	if len(body) < 16<<10 {
		return fmt.Errorf("metadata response of %d bytes, expected one about as large as the request", len(body))
	}
	return nil
}

// TestIdleConnectionsRSS opens 10,000 connections that each negotiate API
// versions (every fourth also exchanges a 20 KiB metadata request and
// response, so that buffers have been used), then idle,
// and requires the broker's RSS to grow by at most 32 KiB per connection; a
// producer is then served with all of them open.
func TestIdleConnectionsRSS(t *testing.T) {
	const conns = 10000
	raiseNoFile(t, conns+2000) // the broker, a process of its own, needs as many
	n := testcluster.StartNode(t, testcluster.WithBinary(testcluster.BuildPlainBinary(t)))
	pid := n.Pid()
	cl := newClient(t, n, kgo.DefaultProduceTopic("idle-rss"), kgo.AllowAutoTopicCreation())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("warm up")}).FirstErr(); err != nil {
		t.Fatalf("warm-up produce: %v", err)
	}
	before, _ := rssOver(t, pid, 2*time.Second)

	open := make([]net.Conn, conns)
	t.Cleanup(func() {
		for _, c := range open {
			if c != nil {
				c.Close()
			}
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < conns; i += 32 {
				c, err := net.DialTimeout("tcp", n.Addr(), 10*time.Second)
				if err == nil {
					c.SetDeadline(time.Now().Add(30 * time.Second))
					err = apiVersions(c, int32(i))
					if err == nil && i%4 == 0 {
						err = bigMetadata(c, int32(i))
					}
					c.SetDeadline(time.Time{})
				}
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				open[i] = c
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	opened := time.Since(start)
	after, _ := rssOver(t, pid, 3*time.Second)
	per := (after - before) / conns
	t.Logf("%d idle connections (opened in %v): broker RSS %.1f MiB before, %.1f MiB after: %.1f KiB per connection",
		conns, opened.Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20), float64(per)/1024)
	if per > 32<<10 {
		t.Errorf("an idle connection costs %.1f KiB of broker RSS, want at most 32 KiB", float64(per)/1024)
	}
	// Liveness: with every connection open, a producer is served and an
	// old idle connection still answers.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce with %d idle connections open: %v", conns, err)
	}
	open[0].SetDeadline(time.Now().Add(10 * time.Second))
	if err := apiVersions(open[0], 1); err != nil {
		t.Fatalf("idle connection no longer served: %v", err)
	}
}

// TestConnectionFloodHealthyProducer: 60 clients each send 1 MiB of a
// request that declares 100 MB and then stall. The broker's RSS stays within
// queued.max.request.bytes of where it was, returns once the flood ends,
// and a producer on its own connection is acknowledged throughout.
func TestConnectionFloodHealthyProducer(t *testing.T) {
	n := testcluster.StartNode(t, testcluster.WithBinary(testcluster.BuildPlainBinary(t)))
	pid := n.Pid()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createTopic(ctx, t, newAdmin(t, n), "healthy", 1, nil)
	hp := startHealthyProducer(t, n, "healthy")
	hp.waitAcks(t, time.Time{}, 10, 30*time.Second)
	before, _ := rssOver(t, pid, 2*time.Second)

	const clients, declared, sent = 60, 100_000_000, 1 << 20
	floodStart := time.Now()
	flood := make([]net.Conn, clients)
	t.Cleanup(func() {
		for _, c := range flood {
			if c != nil {
				c.Close()
			}
		}
	})
	var wg sync.WaitGroup
	for i := range flood {
		c, err := net.DialTimeout("tcp", n.Addr(), 10*time.Second)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		flood[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 4+sent)
			binary.BigEndian.PutUint32(msg, declared)
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(msg); err != nil {
				t.Errorf("flood connection %d: write: %v", i, err)
			}
		}()
	}
	wg.Wait()
	_, during := rssOver(t, pid, 3*time.Second)
	acked, gap := hp.since(floodStart)
	t.Logf("flood of %d x %d bytes (of %d declared): broker RSS %.1f MiB before, %.1f MiB during; healthy producer: %d acks during the flood, longest gap %v",
		clients, sent, declared, float64(before)/(1<<20), float64(during)/(1<<20), acked, gap.Round(time.Millisecond))
	if bound := before + 100<<20 + 40<<20; during > bound {
		t.Errorf("RSS during the flood %.1f MiB, want at most %.1f MiB (queued.max.request.bytes plus slack)", float64(during)/(1<<20), float64(bound)/(1<<20))
	}
	if acked < 20 || gap > 3*time.Second {
		t.Errorf("healthy producer starved during the flood: %d acks, longest gap %v", acked, gap)
	}

	for _, c := range flood {
		c.Close()
	}
	floodEnd := time.Now()
	var after int64
	for deadline := time.Now().Add(30 * time.Second); ; {
		after = procRSS(t, pid)
		if after <= before+20<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RSS did not come back after the flood: %.1f MiB 30 s after it ended (%.1f MiB before)", float64(after)/(1<<20), float64(before)/(1<<20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("after the flood: broker RSS %.1f MiB (%v after it ended)", float64(after)/(1<<20), time.Since(floodEnd).Round(time.Millisecond))
	hp.waitAcks(t, time.Now(), 10, 30*time.Second)
	hp.halt()
	if errs := hp.errors(); len(errs) > 0 {
		t.Errorf("healthy producer saw %d errors, first: %v", len(errs), errs[0])
	}
}

// isRefused reports whether err is how a refused connection ends: reset,
// or closed.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE)
}

// lowestFreeFD returns the lowest descriptor number process pid has not
// open: with its open-file limit at that number, it can open no more.
func lowestFreeFD(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("list fds of pid %d: %v", pid, err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		open[n] = true
	}
	for fd := 0; ; fd++ {
		if !open[fd] {
			return fd
		}
	}
}

// TestFDExhaustion lowers a running broker's open-file limit to the
// descriptors it already has: new connections are refused at once (not left
// hanging in the listen backlog), the accept loop does not spin, and
// produce and fetch on the connections already open go on. Once the limit
// is raised again, new clients are served.
func TestFDExhaustion(t *testing.T) {
	n := testcluster.StartNode(t)
	pid := n.Pid()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createTopic(ctx, t, newAdmin(t, n), "fd", 1, nil)
	prod := newClient(t, n, kgo.DefaultProduceTopic("fd"), kgo.ProducerLinger(0))
	cons := newClient(t, n, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"fd": {0: kgo.NewOffset().At(0)}}),
		kgo.FetchMaxWait(100*time.Millisecond))
	produced, consumed := 0, 0
	produce := func(k int) {
		t.Helper()
		for range k {
			if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(produced))}).FirstErr(); err != nil {
				t.Fatalf("produce record %d: %v", produced, err)
			}
			produced++
		}
	}
	consume := func() {
		t.Helper()
		for consumed < produced {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("consumed %d of %d records: %v", consumed, produced, ctx.Err())
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
			fs.EachRecord(func(r *kgo.Record) {
				if string(r.Value) != strconv.Itoa(consumed) {
					t.Fatalf("record %d has value %q", consumed, r.Value)
				}
				consumed++
			})
		}
	}
	produce(20)
	consume()

	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	fds := lowestFreeFD(t, pid)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(fds), Max: old.Max}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	t.Logf("broker open-file limit lowered to %d (its open descriptors)", fds)
	refused := func(i int) {
		t.Helper()
		c, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second)
		if err != nil {
			return // refused by the kernel: fine
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		err = apiVersions(c, 1)
		c.Close()
		if err == nil {
			t.Fatalf("connection %d served although the broker has no descriptor left", i)
		}
		if !isRefused(err) {
			t.Fatalf("connection %d not refused cleanly: %v", i, err)
		}
	}
	for i := range 20 {
		refused(i)
	}
	// While clients keep dialling, the broker refuses them without spinning.
	cpu0, t0 := procCPU(t, pid), time.Now()
	for i := range 20 {
		refused(20 + i)
		time.Sleep(50 * time.Millisecond)
	}
	cpu, wall := procCPU(t, pid)-cpu0, time.Since(t0)
	produce(100)
	consume()
	t.Logf("out of descriptors: 40 new connections refused (broker CPU %v in %v of them), 100 records produced and consumed on open connections",
		cpu, wall.Round(time.Millisecond))
	if cpu > wall/4 {
		t.Errorf("broker used %v of CPU in %v while refusing connections: accept loop spinning?", cpu, wall)
	}
	log, _ := os.ReadFile(n.LogPath())
	if k := bytes.Count(log, []byte("out of file descriptors")); k == 0 || k > 3 {
		t.Errorf("%d log lines about running out of descriptors, want 1 to 3 (rate-limited)", k)
	}

	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	fresh := newClient(t, n, kgo.DefaultProduceTopic("fd"))
	if err := fresh.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(produced))}).FirstErr(); err != nil {
		t.Fatalf("produce on a new connection after the limit was raised: %v", err)
	}
	produced++
	consume()
}

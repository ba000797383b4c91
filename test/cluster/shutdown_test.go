package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestControlledShutdownLiveProducer stops the leader of an RF=3 partition
// with SIGTERM while an acks=all producer runs: the broker stops accepting
// connections, hands leadership off while it still answers the requests of
// open connections, then closes. No record may fail (retries are allowed),
// records are acknowledged after the shutdown (liveness), and every
// acknowledged record is in the log.
func TestControlledShutdownLiveProducer(t *testing.T) {
	c := replicationCluster(t)
	const topic = "shutdown"
	createTopic(t, c, topic, []int32{2, 1, 3}) // node 2 leads: the one stopped
	if leader, _, err := partitionState(c.Node(1).Addr(), topic); err != nil || leader != 2 {
		t.Fatalf("leader of %s-0 is %d (%v), want 2", topic, leader, err)
	}
	cl := producer(t, c.Addrs(), topic, kgo.RecordRetries(1000), kgo.RetryTimeout(60*time.Second),
		kgo.MetadataMinAge(100*time.Millisecond)) // find the new leader at once: the gap measures the broker

	var (
		mu     sync.Mutex // guards acks, failed
		acks   []time.Time
		failed []error
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	inflight := make(chan struct{}, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case inflight <- struct{}{}:
			}
			cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					acks = append(acks, time.Now())
				}
				mu.Unlock()
				<-inflight
			})
		}
	}()
	countSince := func(from time.Time) (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range acks {
			if !a.Before(from) {
				n++
			}
		}
		return n
	}
	waitFor(t, 20*time.Second, "records acknowledged before the shutdown", func() error {
		if n := countSince(time.Time{}); n < 500 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})

	// While the leader shuts down, new connections must be refused (the
	// client tries another broker), never accepted and then closed before
	// an answer: franz-go takes such an EOF for a TLS mismatch and fails
	// records instead of retrying.
	probeStop := make(chan struct{})
	probeDone := make(chan probeCounts)
	go func() { probeDone <- probeConnections(c.Node(2).Addr(), probeStop) }()
	start := time.Now()
	if err := c.Node(2).Stop(); err != nil {
		t.Fatalf("SIGTERM of the leader: %v", err)
	}
	stopped := time.Now()
	close(probeStop)
	probes := <-probeDone
	t.Logf("connections dialled during the shutdown: %d answered, %d refused, %d reset, %d closed without an answer",
		probes.answered, probes.refused, probes.reset, probes.eof)
	if probes.eof > 0 {
		t.Errorf("%d connections were accepted during the shutdown and closed without an answer", probes.eof)
	}
	waitFor(t, 30*time.Second, "records acknowledged after the leader stopped", func() error {
		if n := countSince(stopped); n < 500 {
			return fmt.Errorf("%d acknowledged since", n)
		}
		return nil
	})
	close(stop)
	<-done
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i].After(start) {
			gap = max(gap, acks[i].Sub(acks[i-1]))
		}
	}
	t.Logf("SIGTERM to exit of the leader: %v; %d records acknowledged, longest gap between acknowledgements from the SIGTERM on: %v",
		stopped.Sub(start).Round(time.Millisecond), len(acks), gap.Round(time.Millisecond))
	if len(failed) > 0 {
		t.Fatalf("%d records failed during the controlled shutdown, first: %v", len(failed), failed[0])
	}
	ends, err := admin(t, []string{c.Node(1).Addr()}).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	if end, _ := ends.Lookup(topic, 0); end.Err != nil || end.Offset < int64(len(acks)) {
		t.Fatalf("log end offset %d (%v) below the %d acknowledged records", end.Offset, end.Err, len(acks))
	}
}

type probeCounts struct{ answered, refused, reset, eof int }

// probeConnections dials addr over and over and asks for API versions until
// stop is closed, counting how each attempt ended.
func probeConnections(addr string, stop <-chan struct{}) (n probeCounts) {
	for {
		select {
		case <-stop:
			return n
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			n.refused++
			time.Sleep(time.Millisecond)
			continue
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		req := kmsg.NewPtrApiVersionsRequest()
		_, err = conn.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1))
		var size [4]byte
		if err == nil {
			_, err = io.ReadFull(conn, size[:])
		}
		conn.Close()
		switch {
		case err == nil:
			n.answered++
		case errors.Is(err, io.EOF):
			n.eof++
		default:
			n.reset++
		}
	}
}

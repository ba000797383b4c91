package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestReadyResponseNotHeldBack pipelines two long-poll fetches on one
// connection: the first waits 300 ms, the second 3 s. The first response
// must go out when its wait ends, not together with the second (a writer
// that ran each continuation before writing what was ready held it 3 s).
func TestReadyResponseNotHeldBack(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	createTopic(t, cl, "quiet", 1, nil)
	fetch := func(wait int32) *kmsg.FetchRequest {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 4
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, wait, 1, 1<<20
		tp := kmsg.NewFetchRequestTopic()
		tp.Topic = "quiet"
		p := kmsg.NewFetchRequestTopicPartition()
		p.PartitionMaxBytes = 1 << 20
		tp.Partitions = append(tp.Partitions, p)
		req.Topics = append(req.Topics, tp)
		return req
	}
	c := dial(t, n.addr)
	start := time.Now()
	c.send(t, fetch(300), 1)
	c.send(t, fetch(3000), 2)
	if corr, _ := c.recv(t); corr != 1 {
		t.Fatalf("first response has correlation id %d, want 1", corr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("first response (300 ms long poll) arrived after %v: held back by the second request's wait", d)
	}
	if corr, _ := c.recv(t); corr != 2 {
		t.Fatalf("second response has correlation id %d, want 2", corr)
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("second response after %v, before its 3 s wait", d)
	}
}

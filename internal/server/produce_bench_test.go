package server

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/record"
)

// BenchmarkProduceManyPartitions sends acks=all Produce requests carrying
// one 16 KiB batch (16 x 1 KiB records) for each of 100 partitions to an
// in-process broker that fsyncs every write (the default flush policy), with
// the partitions' fsyncs issued one at a time (the former behaviour) and
// concurrently. The ratio of the two is the gain of concurrent flushing.
// The "handler" case calls the broker's produce path directly (no network,
// no client): its B/op and allocs/op are the broker's allocations per 1.6 MB.
func BenchmarkProduceManyPartitions(b *testing.B) {
	benchProduceManyPartitions(b, 100, 16)
}

// BenchmarkProduce1000Partitions is BenchmarkProduceManyPartitions with
// 1000 partitions of one 1 KiB record each per request.
func BenchmarkProduce1000Partitions(b *testing.B) {
	benchProduceManyPartitions(b, 1000, 1)
}

func benchProduceManyPartitions(b *testing.B, partitions int32, records int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, err := config.Load("", [][2]string{{"log.dirs", b.TempDir()}, {"listeners", "PLAINTEXT://" + addr}})
	if err != nil {
		b.Fatal(err)
	}
	srv := serveForTest(b, cfg)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	ctx, cancelCtx := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancelCtx)

	ct := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "many", partitions, 1
	ct.Topics = append(ct.Topics, rt)
	if resp, err := ct.RequestWith(ctx, cl); err != nil || resp.Topics[0].ErrorCode != 0 {
		b.Fatalf("create topic: %v %v", err, resp)
	}

	spec := record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	for range records {
		spec.Records = append(spec.Records, record.Record{Timestamp: time.Now().UnixMilli(), Value: make([]byte, 1024)})
	}
	batch := record.MustBuild(spec)
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 30000
	pt := kmsg.ProduceRequestTopic{Topic: "many"}
	for p := range partitions {
		pt.Partitions = append(pt.Partitions, kmsg.ProduceRequestTopicPartition{Partition: p, Records: batch})
	}
	req.Topics = []kmsg.ProduceRequestTopic{pt}
	produce := func(b *testing.B) {
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range resp.Topics[0].Partitions {
			if p.ErrorCode != 0 {
				b.Fatalf("partition %d: error %d", p.Partition, p.ErrorCode)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second) // leaders of a new topic take a moment
	for {
		resp, err := req.RequestWith(ctx, cl)
		if err == nil && resp.Topics[0].Partitions[partitions-1].ErrorCode == 0 && resp.Topics[0].Partitions[0].ErrorCode == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("topic not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The broker's own produce path, without the network and the client:
	// allocations per request (and per MB with -benchmem's B/op).
	b.Run("handler", func(b *testing.B) {
		b.SetBytes(int64(len(batch)) * int64(partitions))
		b.ReportAllocs()
		for b.Loop() {
			if resp := srv.handleProduce(ctx, req)(); resp == nil {
				b.Fatal("no response")
			}
		}
	})

	saved := maxConcurrentFlushes
	b.Cleanup(func() { maxConcurrentFlushes = saved })
	for _, limit := range []int{1, saved} {
		b.Run(fmt.Sprintf("flushes=%d", limit), func(b *testing.B) {
			maxConcurrentFlushes = limit
			b.SetBytes(int64(len(batch)) * int64(partitions))
			b.ReportAllocs()
			for b.Loop() {
				produce(b)
			}
		})
	}
}

// TestForEachConcurrently: every index is called exactly once, at most
// limit at a time, and the calls do overlap when limit allows.
func TestForEachConcurrently(t *testing.T) {
	for _, tc := range []struct{ n, limit int }{{0, 4}, {1, 4}, {7, 1}, {100, 8}, {5, 64}} {
		calls := make([]atomic.Int32, tc.n)
		var running, peak atomic.Int32
		forEachConcurrently(tc.n, tc.limit, func(i int) {
			r := running.Add(1)
			for {
				p := peak.Load()
				if r <= p || peak.CompareAndSwap(p, r) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond) // let the others start
			running.Add(-1)
			calls[i].Add(1)
		})
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Errorf("n=%d limit=%d: index %d called %d times", tc.n, tc.limit, i, c)
			}
		}
		if p := int(peak.Load()); p > tc.limit || tc.n > 1 && tc.limit > 1 && p < 2 {
			t.Errorf("n=%d limit=%d: peak concurrency %d", tc.n, tc.limit, p)
		}
	}
}

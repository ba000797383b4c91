package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/record"
)

// BenchmarkProduceManyPartitions sends acks=all Produce requests carrying
// one 16 KiB batch (16 x 1 KiB records) for each of 100 partitions to an
// in-process broker that fsyncs every write (the default flush policy):
// with every partition fsyncing its own file (syncfs=off,
// log.flush.syncfs.min.partitions=0; "seq" one partition at a time, "conc"
// 64 at once) and with the partitions sharing one syncfs(2) (syncfs=on, the
// default). The "handler" case calls the broker's produce path directly (no
// network, no client): its B/op and allocs/op are the broker's allocations
// per request.
func BenchmarkProduceManyPartitions(b *testing.B) {
	benchProduceManyPartitions(b, 100, 16)
}

// BenchmarkProduce1000Partitions is BenchmarkProduceManyPartitions with
// 1000 partitions of one 1 KiB record each per request.
func BenchmarkProduce1000Partitions(b *testing.B) {
	benchProduceManyPartitions(b, 1000, 1)
}

func benchProduceManyPartitions(b *testing.B, partitions int32, records int) {
	for _, mode := range []struct{ name, minParts string }{{"syncfs=off", "0"}, {"syncfs=on", "4"}} {
		b.Run(mode.name, func(b *testing.B) {
			benchProduceMode(b, partitions, records, mode.minParts)
		})
	}
}

func benchProduceMode(b *testing.B, partitions int32, records int, minParts string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, err := config.Load("", [][2]string{{"log.dirs", b.TempDir()}, {"listeners", "PLAINTEXT://" + addr},
		{"log.flush.syncfs.min.partitions", minParts}})
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
	limits := []int{saved}
	if minParts == "0" {
		limits = []int{1, saved}
	}
	for _, limit := range limits {
		name := "conc"
		if limit == 1 {
			name = "seq"
		}
		b.Run(name, func(b *testing.B) {
			maxConcurrentFlushes = limit
			b.SetBytes(int64(len(batch)) * int64(partitions))
			b.ReportAllocs()
			for b.Loop() {
				produce(b)
			}
		})
	}
}

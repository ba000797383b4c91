package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/record"
)

// BenchmarkFetchSession1000 measures one fetch round of a consumer caught up
// on 1000 partitions, where nothing is new: "full" sends all 1000 every time
// (no session), "incremental" sends an empty incremental fetch of a session
// holding them. Each round decodes the request, serves it and encodes the
// response, as the broker does (no network): the broker CPU of a round.
// It reports the request and response body bytes per round.
func BenchmarkFetchSession1000(b *testing.B) {
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
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	b.Cleanup(func() { cancel(); <-done })
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	const parts = 1000
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "bench", parts, 1
	req.Topics = append(req.Topics, rt)
	if _, err := req.RequestWith(context.Background(), cl); err != nil {
		b.Fatal(err)
	}
	var rs []*kgo.Record
	for p := 0; p < parts; p++ {
		rs = append(rs, &kgo.Record{Topic: "bench", Partition: int32(p), Value: []byte("v")})
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	full := kmsg.NewPtrFetchRequest()
	full.Version, full.ReplicaID, full.MaxBytes, full.SessionEpoch = 12, -1, 50<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "bench"
	for p := 0; p < parts; p++ {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = int32(p), 1, 1<<20
		ft.Partitions = append(ft.Partitions, rp)
	}
	full.Topics = append(full.Topics, ft)
	round := func(b *testing.B, body []byte) (int, *kmsg.FetchResponse) {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		if err := req.ReadFrom(body); err != nil {
			b.Fatal(err)
		}
		resp := srv.fetchWithSession(context.Background(), req).(*kmsg.FetchResponse)
		if resp.ErrorCode != 0 {
			b.Fatalf("fetch: error %d", resp.ErrorCode)
		}
		return len(resp.AppendTo(nil)), resp
	}
	b.Run("full", func(b *testing.B) {
		body := full.AppendTo(nil)
		var out int
		for i := 0; i < b.N; i++ {
			out, _ = round(b, body)
		}
		b.ReportMetric(float64(len(body)), "req-B/round")
		b.ReportMetric(float64(out), "resp-B/round")
	})
	b.Run("incremental", func(b *testing.B) {
		open := *full
		open.SessionEpoch = 0
		_, resp := round(b, open.AppendTo(nil))
		inc := kmsg.NewPtrFetchRequest()
		inc.Version, inc.ReplicaID, inc.MaxBytes = 12, -1, 50<<20
		inc.SessionID = resp.SessionID
		var body []byte
		var out int
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			inc.SessionEpoch = int32(i + 1)
			body = inc.AppendTo(body[:0])
			out, _ = round(b, body)
		}
		b.ReportMetric(float64(len(body)), "req-B/round")
		b.ReportMetric(float64(out), "resp-B/round")
	})
	// One partition of the 1000 gets a record before each round (appended
	// with the timer stopped): the round returns it, and the next request
	// names that partition's new fetch offset.
	b.Run("incremental-1new", func(b *testing.B) {
		open := kmsg.NewPtrFetchRequest()
		open.Version, open.ReplicaID, open.MaxBytes, open.SessionEpoch = 12, -1, 50<<20, 0
		ot := kmsg.NewFetchRequestTopic()
		ot.Topic = "bench"
		for p := int32(0); p < parts; p++ { // caught up (earlier runs appended)
			bp, _ := srv.parts.Get("bench", p)
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, bp.HighWatermark(), 1<<20
			ot.Partitions = append(ot.Partitions, rp)
		}
		open.Topics = append(open.Topics, ot)
		_, resp := round(b, open.AppendTo(nil))
		inc := kmsg.NewPtrFetchRequest()
		inc.Version, inc.ReplicaID, inc.MaxBytes = 12, -1, 50<<20
		inc.SessionID = resp.SessionID
		batch := record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			Records: []record.Record{{Timestamp: time.Now().UnixMilli(), Value: []byte("n")}}})
		next := make([]int64, parts)
		for _, rp := range resp.Topics[0].Partitions {
			next[rp.Partition] = rp.HighWatermark
		}
		prev := int32(-1)
		var body []byte
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			p := int32(i % parts)
			bp, _ := srv.parts.Get("bench", p)
			if _, err := bp.Append(append([]byte(nil), batch...), time.Now()); err != nil {
				b.Fatal(err)
			}
			inc.SessionEpoch = int32(i + 1)
			inc.Topics = inc.Topics[:0]
			if prev >= 0 {
				t := kmsg.NewFetchRequestTopic()
				t.Topic = "bench"
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = prev, next[prev], 1<<20
				t.Partitions = append(t.Partitions, rp)
				inc.Topics = append(inc.Topics, t)
			}
			body = inc.AppendTo(body[:0])
			b.StartTimer()
			_, resp := round(b, body)
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].Partition != p {
				b.Fatalf("round %d: want partition %d alone, got %v with records %v", i, p, listed(resp), withRecords(resp))
			}
			next[p] = resp.Topics[0].Partitions[0].HighWatermark
			prev = p
		}
	})
}

package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
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
}

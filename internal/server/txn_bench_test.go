package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/server/servertest"
)

// BenchmarkTransactionalProduce compares transactional produce (one
// transaction of txn records, committed) with idempotent produce of the
// same records, on one in-process node. b.N counts records; report the
// ratio of the two records/s figures of the same run.
func BenchmarkTransactionalProduce(b *testing.B) {
	n := servertest.Start(b)
	value := make([]byte, 100)
	for _, txn := range []int{1, 100, 10000} {
		for _, mode := range []string{"idempotent", "transactional"} {
			b.Run(fmt.Sprintf("txn=%d/%s", txn, mode), func(b *testing.B) {
				topic := fmt.Sprintf("bench-%s-%d", mode, txn)
				opts := []kgo.Opt{kgo.SeedBrokers(n.Addr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation()}
				if mode == "transactional" {
					opts = append(opts, kgo.TransactionalID(topic))
				}
				cl, err := kgo.NewClient(opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				ctx := context.Background()
				if mode == "idempotent" { // create the topic outside the timing, as the transactions' first round does not
					if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for done := 0; done < b.N; {
					k := min(txn, b.N-done)
					if mode == "transactional" {
						if err := cl.BeginTransaction(); err != nil {
							b.Fatal(err)
						}
					}
					for range k {
						cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
							if err != nil {
								b.Error(err)
							}
						})
					}
					if err := cl.Flush(ctx); err != nil {
						b.Fatal(err)
					}
					if mode == "transactional" {
						if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
							b.Fatal(err)
						}
					}
					done += k
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkReadCommittedConsume compares read_committed with
// read_uncommitted consumption of a topic written in transactions of 100
// records, a tenth of them aborted. Each iteration reads the whole topic.
func BenchmarkReadCommittedConsume(b *testing.B) {
	n := servertest.Start(b)
	const topic, txns, per = "bench-consume", 100, 100
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.Addr), kgo.DefaultProduceTopic(topic), kgo.TransactionalID("bench-consume"),
		kgo.AllowAutoTopicCreation())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	value := make([]byte, 100)
	for i := range txns {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		for range per {
			cl.Produce(ctx, &kgo.Record{Value: value}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(i%10 != 0)); err != nil {
			b.Fatal(err)
		}
	}
	for _, iso := range []struct {
		name  string
		level kgo.IsolationLevel
		want  int
	}{{"read_uncommitted", kgo.ReadUncommitted(), txns * per}, {"read_committed", kgo.ReadCommitted(), txns * per * 9 / 10}} {
		b.Run(iso.name, func(b *testing.B) {
			total := 0
			for range b.N {
				c, err := kgo.NewClient(kgo.SeedBrokers(n.Addr), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso.level),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for got < iso.want {
					fs := c.PollFetches(ctx)
					got += fs.NumRecords()
				}
				c.Close()
				total += got
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

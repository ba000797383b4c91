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

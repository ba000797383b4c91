package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/server/servertest"
)

// TestSaramaTransactions: sarama's transactional producer commits one
// transaction and aborts another; a read_committed franz-go consumer sees
// exactly the committed records, a read_uncommitted one sees both.
func TestSaramaTransactions(t *testing.T) {
	b := servertest.Start(t)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_0_0_0
	cfg.Producer.Idempotent = true
	cfg.Producer.Transaction.ID = "sarama-txn"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 50 * time.Millisecond
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	admin, err := sarama.NewClusterAdmin([]string{b.Addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic("sarama-tx", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer([]string{b.Addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	txn := func(prefix string, commit bool) {
		if err := p.BeginTxn(); err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			m := &sarama.ProducerMessage{Topic: "sarama-tx", Partition: int32(i % 2), Value: sarama.StringEncoder(fmt.Sprintf("%s%d", prefix, i))}
			if _, _, err := p.SendMessage(m); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		if commit {
			err = p.CommitTxn()
		} else {
			err = p.AbortTxn()
		}
		if err != nil {
			t.Fatalf("end (commit %v): %v", commit, err)
		}
	}
	txn("c", true)
	txn("a", false)
	// Seal both partitions with a plain record, then read up to the seals.
	sealer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer sealer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for part := range int32(2) {
		if err := sealer.ProduceSync(ctx, &kgo.Record{Topic: "sarama-tx", Partition: part, Value: []byte("end")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(level kgo.IsolationLevel) map[string]bool {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumeTopics("sarama-tx"), kgo.FetchIsolationLevel(level),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		got, ends := map[string]bool{}, 0
		for ends < 2 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("read: %v; got %v", ctx.Err(), got)
			}
			fs.EachRecord(func(r *kgo.Record) {
				if string(r.Value) == "end" {
					ends++
				} else {
					got[string(r.Value)] = true
				}
			})
		}
		return got
	}
	committed := read(kgo.ReadCommitted())
	if len(committed) != 4 || !committed["c0"] || !committed["c3"] {
		t.Fatalf("read_committed saw %v, want c0..c3", committed)
	}
	if all := read(kgo.ReadUncommitted()); len(all) != 8 {
		t.Fatalf("read_uncommitted saw %v, want 8 records", all)
	}
}

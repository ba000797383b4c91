package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
	"strand/internal/testcluster"
)

// TestListOffsetsMaxTimestamp: ListOffsets with timestamp -3
// (MAX_TIMESTAMP, KIP-734) answers the offset of the record holding the
// largest timestamp, not its batch's base offset (issue 8 §5,
// KAFKA-16310): 100 records produced as one batch, timestamps out of order,
// the largest on record 37.
func TestListOffsetsMaxTimestamp(t *testing.T) {
	const topic = "max-ts"
	n := testcluster.StartNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createTopic(ctx, t, newAdmin(t, n), topic, 1, nil)
	cl := newClient(t, n, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(200*time.Millisecond))
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := range 100 {
		ts := base + int64((i*7919)%100) // a permutation of base..base+99
		if i == 37 {
			ts = base + 1000
		}
		cl.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "r%d", i), Timestamp: time.UnixMilli(ts)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(7)
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = 0, -3, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	if err := testcluster.RawRequest(ctx, n.Addr(), req, resp); err != nil {
		t.Fatal(err)
	}
	got := resp.Topics[0].Partitions[0]
	if got.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(got.ErrorCode))
	}
	if got.Offset != 37 || got.Timestamp != base+1000 {
		t.Fatalf("MAX_TIMESTAMP answered offset %d timestamp %d, want 37 and %d", got.Offset, got.Timestamp, base+1000)
	}
	// One batch really holds them all (else the test would not test the fix).
	freq := kmsg.NewPtrFetchRequest()
	freq.SetVersion(11)
	freq.ReplicaID, freq.MaxBytes, freq.SessionEpoch = -1, 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes, fp.CurrentLeaderEpoch = 1<<20, -1
	ft.Partitions = append(ft.Partitions, fp)
	freq.Topics = append(freq.Topics, ft)
	fresp := freq.ResponseKind().(*kmsg.FetchResponse)
	if err := testcluster.RawRequest(ctx, n.Addr(), freq, fresp); err != nil {
		t.Fatal(err)
	}
	batches := 0
	if err := record.Split(fresp.Topics[0].Partitions[0].RecordBatches, func(b []byte) error {
		h, err := record.ParseHeader(b)
		if err == nil && h.NumRecords != 100 {
			err = fmt.Errorf("a batch of %d records", h.NumRecords)
		}
		batches++
		return err
	}); err != nil || batches != 1 {
		t.Fatalf("%d batches: %v", batches, err)
	}
}

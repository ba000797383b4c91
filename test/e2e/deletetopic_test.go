package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// TestDeleteTopic deletes a topic with data, checks it is gone from metadata
// and cannot be produced to (auto-create off), recreates it under the same
// name and checks the new topic starts empty at offset 0 — also after a
// restart, so deleted data must not come back from disk.
func TestDeleteTopic(t *testing.T) {
	const topic = "delete-me"
	n := testcluster.StartNode(t, testcluster.WithSet("auto.create.topics.enable", "false"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := newAdmin(t, n)
	createTopic(ctx, t, adm, topic, 2, nil)
	createTopic(ctx, t, adm, "bystander", 1, nil)

	produceSync(ctx, t, n, topic, "old", 50)
	produceSync(ctx, t, n, "bystander", "keep", 10)
	if ends := endOffsets(ctx, t, adm, topic); ends[0]+ends[1] != 50 {
		t.Fatalf("before delete: end offsets %v, want a total of 50", ends)
	}

	resp, err := adm.DeleteTopic(ctx, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("DeleteTopic: %v / %v", err, resp.Err)
	}
	// Deletion may complete asynchronously; poll metadata until it is gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		topics, err := newAdmin(t, n).ListTopics(ctx)
		if err != nil {
			t.Fatalf("ListTopics: %v", err)
		}
		if !topics.Has(topic) {
			if !topics.Has("bystander") {
				t.Fatalf("deleting %q also removed %q from metadata: %v", topic, "bystander", topics.Names())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %q still listed in metadata 10s after DeleteTopics: %v", topic, topics.Names())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A fresh client: kadm answers Metadata from the client's cache.
	adm = newAdmin(t, n)
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("Metadata(%q): %v", topic, err)
	}
	if td, ok := md.Topics[topic]; !ok || !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		t.Errorf("Metadata(%q) after delete: %+v, want UNKNOWN_TOPIC_OR_PARTITION", topic, td)
	}

	// Producing to the deleted topic must fail with UNKNOWN_TOPIC_OR_PARTITION.
	cl := newClient(t, n, kgo.UnknownTopicRetries(1), kgo.RecordDeliveryTimeout(20*time.Second))
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("produce to deleted topic: err = %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	// DeleteTopics again: the topic no longer exists.
	if _, err := adm.DeleteTopic(ctx, topic); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("second DeleteTopic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}

	// Recreate with a different partition count: it must start empty.
	createTopic(ctx, t, adm, topic, 3, nil)
	for p, end := range endOffsets(ctx, t, newAdmin(t, n), topic) { // fresh client: no cached metadata
		if end != 0 {
			t.Errorf("recreated topic p%d: end offset %d, want 0", p, end)
		}
	}
	acked := produceSync(ctx, t, n, topic, "new", 30)
	for _, r := range acked {
		if r.Offset > 29 {
			t.Errorf("recreated topic: record acknowledged at %d/%d", r.Partition, r.Offset)
		}
	}
	checkOnlyNew := func(stage string) {
		got := consumeAll(ctx, t, n, topic, 30*time.Second)
		total := 0
		for p, recs := range got {
			checkDense(t, topic, p, recs)
			for _, r := range recs {
				if len(r.Value) < 4 || string(r.Value[:4]) != "new-" {
					t.Errorf("%s: %s/%d offset %d holds %q: data from the deleted topic", stage, topic, p, r.Offset, r.Value)
				}
			}
			total += len(recs)
		}
		if total != 30 {
			t.Errorf("%s: recreated topic holds %d records, want 30", stage, total)
		}
		if by := consumeAll(ctx, t, n, "bystander", 30*time.Second); len(by[0]) != 10 {
			t.Errorf("%s: bystander topic holds %d records, want 10", stage, len(by[0]))
		}
	}
	checkOnlyNew("after recreate")
	if err := n.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	n.Restart(t)
	md, err = newAdmin(t, n).Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("Metadata after restart: %v", err)
	}
	if td := md.Topics[topic]; td.Err != nil || len(td.Partitions) != 3 {
		t.Errorf("after restart: topic %q: err %v, %d partitions, want 3", topic, td.Err, len(td.Partitions))
	}
	checkOnlyNew("after restart")
}

// produceSync produces count records to topic (values "<prefix>-<i>") and
// fails the test on any error; it returns the acknowledged records.
func produceSync(ctx context.Context, t testing.TB, n *testcluster.Node, topic, prefix string, count int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, n)
	defer cl.Close()
	recs := make([]*kgo.Record, count)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records to %q: %v", count, topic, err)
	}
	return recs
}

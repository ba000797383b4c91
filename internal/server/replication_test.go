package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProduceAcksAllMinInsync: on a single node the ISR is the node alone,
// so acks=all meets min.insync.replicas=1 (the high watermark is the LEO
// right after the append) and is refused before the append with
// NOT_ENOUGH_REPLICAS under min.insync.replicas=2, where acks=1 still works.
func TestProduceAcksAllMinInsync(t *testing.T) {
	n := startNode(t, [2]string{"auto.create.topics.enable", "false"})
	cl := n.client()
	createTopic(t, cl, "one", 1, nil)
	createTopic(t, cl, "two", 1, map[string]string{"min.insync.replicas": "2"})
	if got := produceRaw(t, cl, "one", -1, batch(t, -1, 0, 2)); got.ErrorCode != 0 || got.BaseOffset != 0 {
		t.Fatalf("acks=all, min.insync 1: %v at %d", kerr.ErrorForCode(got.ErrorCode), got.BaseOffset)
	}
	if got := produceRaw(t, cl, "two", -1, batch(t, -1, 0, 2)); got.ErrorCode != kerr.NotEnoughReplicas.Code {
		t.Fatalf("acks=all, min.insync 2: %v", kerr.ErrorForCode(got.ErrorCode))
	}
	if got := produceAcks(t, n.addr, "two", 1, batch(t, -1, 0, 2)); got.ErrorCode != 0 || got.BaseOffset != 0 {
		t.Fatalf("acks=1, min.insync 2: %v at %d (the refused acks=all batch must not be in the log)", kerr.ErrorForCode(got.ErrorCode), got.BaseOffset)
	}
}

// produceAcks produces batch to partition 0 of topic with acks over a raw
// connection (kgo applies its own acks setting to requests it sends).
func produceAcks(t *testing.T, addr, topic string, acks int16, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	c := dial(t, addr)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, acks, 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch}}}}
	c.send(t, req, 3)
	_, body := c.recv(t)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	if err := resp.ReadFrom(body[1:]); err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response: %v %+v", err, resp)
	}
	return resp.Topics[0].Partitions[0]
}

// replicaFetch sends a Fetch v12 for partition 0 of topic as replica id.
func replicaFetch(t *testing.T, addr, topic string, id int32, offset int64, lastEpoch int32) kmsg.FetchResponseTopicPartition {
	t.Helper()
	c := dial(t, addr)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = id, 100, 1, 1<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.LastFetchedEpoch, rp.PartitionMaxBytes = offset, lastEpoch, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	c.send(t, req, 5)
	_, body := c.recv(t)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := resp.ReadFrom(body[1:]); err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch response shape %+v", resp)
	}
	return resp.Topics[0].Partitions[0]
}

// TestReplicaFetch: a fetch with a replica id is served only to the
// partition's replicas, reads up to the log end, and answers a last fetched
// epoch that ends before the fetch offset with DivergingEpoch, not records.
func TestReplicaFetch(t *testing.T) {
	n := startNode(t, [2]string{"auto.create.topics.enable", "false"})
	cl := n.client()
	createTopic(t, cl, "rf", 1, nil)
	if got := produceRaw(t, cl, "rf", -1, batch(t, -1, 0, 3)); got.ErrorCode != 0 {
		t.Fatalf("produce: %v", kerr.ErrorForCode(got.ErrorCode))
	}
	if got := replicaFetch(t, n.addr, "rf", 7, 0, -1); got.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("broker 7 is no replica: %v", kerr.ErrorForCode(got.ErrorCode))
	}
	got := replicaFetch(t, n.addr, "rf", 1, 0, -1)
	if got.ErrorCode != 0 || len(got.RecordBatches) == 0 || got.HighWatermark != 3 || got.DivergingEpoch.EndOffset != -1 {
		t.Fatalf("replica fetch: %v, %d bytes, HW %d, diverging %+v", kerr.ErrorForCode(got.ErrorCode), len(got.RecordBatches), got.HighWatermark, got.DivergingEpoch)
	}
	epoch := leaderEpochOf(t, n, "rf")
	start := time.Now()
	if got := replicaFetch(t, n.addr, "rf", 1, 3, epoch); got.ErrorCode != 0 || len(got.RecordBatches) != 0 || got.DivergingEpoch.EndOffset != -1 {
		t.Fatalf("caught-up replica: %v, %d bytes, diverging %+v", kerr.ErrorForCode(got.ErrorCode), len(got.RecordBatches), got.DivergingEpoch)
	}
	if time.Since(start) < 90*time.Millisecond {
		t.Fatal("a caught-up replica's fetch did not wait for data")
	}
	got = replicaFetch(t, n.addr, "rf", 1, 5, epoch)
	if got.DivergingEpoch.Epoch != epoch || got.DivergingEpoch.EndOffset != 3 || len(got.RecordBatches) != 0 {
		t.Fatalf("replica beyond the end of its epoch: diverging %+v, %d bytes", got.DivergingEpoch, len(got.RecordBatches))
	}
}

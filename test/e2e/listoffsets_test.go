package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/testcluster"
)

// TestListOffsets checks earliest/latest offsets and timestamp lookups
// against records with controlled timestamps, before and after a clean
// restart (which exercises index recovery or rebuilding).
func TestListOffsets(t *testing.T) {
	const topic = "list-offsets"
	// Timestamps: partition 0 gets base+10*i for i in [0,200), partition 1 gets
	// base+5000+10*i for i in [0,50), partition 2 stays empty.
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	counts := map[int32]int{0: 200, 1: 50, 2: 0}
	tsOf := func(p int32, i int) int64 {
		if p == 1 {
			return base + 5000 + 10*int64(i)
		}
		return base + 10*int64(i)
	}

	// 1 MiB segments (the smallest Kafka accepts) and ~6 KiB values put
	// partition 0 across two segments so the lookup has to pick the right one.
	n := testcluster.StartNode(t, testcluster.WithSet("log.segment.bytes", "1048576"))
	pad := bytes.Repeat([]byte("x"), 6000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := newAdmin(t, n)
	createTopic(ctx, t, adm, topic, 3, nil)

	cl := newClient(t, n, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	for p, cnt := range counts {
		for i := range cnt {
			// Async in order: several records share a batch, so lookups must
			// find a record inside a batch, not just a batch boundary.
			r := &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "p%d-%d-%s", p, i, pad), Timestamp: time.UnixMilli(tsOf(p, i))}
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce %d/%d: %v", p, i, err)
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}

	check := func(stage string) {
		adm := newAdmin(t, n)
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("%s: ListStartOffsets: %v", stage, err)
		}
		ends := endOffsets(ctx, t, adm, topic)
		for p, cnt := range counts {
			if s, ok := starts.Lookup(topic, p); !ok || s.Err != nil || s.Offset != 0 {
				t.Errorf("%s: earliest offset of p%d = %+v, want 0", stage, p, s)
			}
			if ends[p] != int64(cnt) {
				t.Errorf("%s: latest offset of p%d = %d, want %d", stage, p, ends[p], cnt)
			}
		}

		// Timestamp lookups: want[p] is the expected offset (-1: none at or after).
		cases := []struct {
			name string
			ms   int64
			want map[int32]int64
		}{
			{"before all", base - 1000, map[int32]int64{0: 0, 1: 0, 2: -1}},
			{"exact first", base, map[int32]int64{0: 0, 1: 0, 2: -1}},
			{"exact middle", base + 10*77, map[int32]int64{0: 77, 1: 0, 2: -1}},
			{"between records", base + 10*123 + 4, map[int32]int64{0: 124, 1: 0, 2: -1}},
			{"exact last p0", base + 10*199, map[int32]int64{0: 199, 1: 0, 2: -1}},
			{"after p0", base + 10*199 + 1, map[int32]int64{0: -1, 1: 0, 2: -1}},
			{"middle p1", base + 5000 + 10*31 - 3, map[int32]int64{0: -1, 1: 31, 2: -1}},
			{"after all", base + 10_000_000, map[int32]int64{0: -1, 1: -1, 2: -1}},
		}
		for _, c := range cases {
			raw := rawListOffsets(ctx, t, n, topic, c.ms, len(counts))
			after, err := adm.ListOffsetsAfterMilli(ctx, c.ms, topic)
			if err != nil {
				t.Fatalf("%s: ListOffsetsAfterMilli(%s): %v", stage, c.name, err)
			}
			for p, want := range c.want {
				rp := raw[p]
				if rp.ErrorCode != 0 {
					t.Errorf("%s: %s: raw ListOffsets p%d: error %v", stage, c.name, p, kerr.ErrorForCode(rp.ErrorCode))
					continue
				}
				if rp.Offset != want {
					t.Errorf("%s: %s (ts %d): raw ListOffsets p%d offset %d (timestamp %d), want %d", stage, c.name, c.ms, p, rp.Offset, rp.Timestamp, want)
				} else if want >= 0 && rp.Timestamp != tsOf(p, int(want)) {
					t.Errorf("%s: %s: raw ListOffsets p%d timestamp %d, want %d (the record's)", stage, c.name, p, rp.Timestamp, tsOf(p, int(want)))
				} else if want < 0 && rp.Timestamp != -1 {
					t.Errorf("%s: %s: raw ListOffsets p%d found nothing but timestamp %d, want -1", stage, c.name, p, rp.Timestamp)
				}
				// kadm turns "none at or after" into the end offset.
				kwant := want
				if want < 0 {
					kwant = ends[p]
				}
				if o, ok := after.Lookup(topic, p); !ok || o.Err != nil || o.Offset != kwant {
					t.Errorf("%s: %s: kadm ListOffsetsAfterMilli p%d = %+v, want offset %d", stage, c.name, p, o, kwant)
				}
			}
		}
	}
	check("before restart")
	if err := n.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	n.Restart(t)
	check("after clean restart")
	n.Kill()
	n.Restart(t)
	check("after kill -9 restart")
}

// rawListOffsets sends one ListOffsets (v4+) request by timestamp for every
// partition of topic and returns the partition responses as the broker sent
// them, without kadm's fix-ups.
func rawListOffsets(ctx context.Context, t testing.TB, n *testcluster.Node, topic string, ms int64, partitions int) map[int32]kmsg.ListOffsetsResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range int32(partitions) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = ms
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, newClient(t, n))
	if err != nil {
		t.Fatalf("ListOffsets(ts=%d): %v", ms, err)
	}
	out := map[int32]kmsg.ListOffsetsResponseTopicPartition{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rt.Topic == topic {
				out[rp.Partition] = rp
			}
		}
	}
	if len(out) != partitions {
		t.Fatalf("ListOffsets(ts=%d): %d partitions in response, want %d: %+v", ms, len(out), partitions, resp)
	}
	return out
}

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// newClient returns a kgo client for n, closed when the test ends.
func newClient(t testing.TB, n *testcluster.Node, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(n.Addr())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// newAdmin returns a kadm client over its own kgo client for n.
func newAdmin(t testing.TB, n *testcluster.Node) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, n))
}

// createTopic creates topic with the given partition count (replication 1)
// and fails the test on any error.
func createTopic(ctx context.Context, t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("CreateTopic %q: %v", topic, err)
	}
	if resp.NumPartitions != partitions && resp.NumPartitions != -1 {
		t.Fatalf("CreateTopic %q: response says %d partitions, want %d", topic, resp.NumPartitions, partitions)
	}
}

// endOffsets lists the end offset of every partition of topic.
func endOffsets(ctx context.Context, t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets %q: %v", topic, err)
	}
	out := map[int32]int64{}
	for p, o := range lo[topic] {
		if o.Err != nil {
			t.Fatalf("ListEndOffsets %q/%d: %v", topic, p, o.Err)
		}
		out[p] = o.Offset
	}
	if len(out) == 0 {
		t.Fatalf("ListEndOffsets %q: no partitions listed", topic)
	}
	return out
}

// consumeAll reads every partition of topic from offset 0 up to the end
// offsets current at the time of the call and returns the records per
// partition in log order. It fails the test if the end is not reached before
// the deadline.
func consumeAll(ctx context.Context, t testing.TB, n *testcluster.Node, topic string, timeout time.Duration) map[int32][]*kgo.Record {
	t.Helper()
	ends := endOffsets(ctx, t, newAdmin(t, n), topic)
	want := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > 0 {
			want[p] = end
			offsets[p] = kgo.NewOffset().At(0)
		}
	}
	out := map[int32][]*kgo.Record{}
	if len(want) == 0 {
		return out
	}
	cl := newClient(t, n, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for len(want) > 0 {
		fs := cl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("consume %q: %v before reaching end offsets; still waiting for %s", topic, cctx.Err(), progress(out, want))
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Errorf("consume %s/%d: fetch error: %v", tp, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
		})
		for p, end := range want {
			if rs := out[p]; len(rs) > 0 && rs[len(rs)-1].Offset >= end-1 {
				delete(want, p)
			}
		}
	}
	return out
}

func progress(got map[int32][]*kgo.Record, want map[int32]int64) string {
	s := ""
	for p, end := range want {
		last := int64(-1)
		if rs := got[p]; len(rs) > 0 {
			last = rs[len(rs)-1].Offset
		}
		s += fmt.Sprintf(" p%d: last offset %d of end %d;", p, last, end)
	}
	return s
}

// checkDense fails the test unless recs have offsets 0, 1, 2, ... in order.
func checkDense(t testing.TB, topic string, p int32, recs []*kgo.Record) {
	t.Helper()
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Errorf("%s/%d: record #%d has offset %d, want %d (offsets not dense from 0)", topic, p, i, r.Offset, i)
			return
		}
	}
}

package testcluster

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ProduceAcked produces n values prefix-000000-xxx... (prefix-i, 24 x's) to
// topic ("" for cl's default topic) through cl, with cl's acks and
// partitioner, and returns offset -> value of every record; it fails the
// test on any produce error, so every returned record was acknowledged.
func ProduceAcked(ctx context.Context, t testing.TB, cl *kgo.Client, topic, prefix string, n int) map[int64]string {
	t.Helper()
	type ack struct {
		off int64
		val string
		err error
	}
	acks := make(chan ack, n)
	for i := range n {
		v := fmt.Sprintf("%s-%06d-%s", prefix, i, strings.Repeat("x", 24))
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}, func(r *kgo.Record, err error) {
			acks <- ack{r.Offset, v, err}
		})
	}
	out := map[int64]string{}
	for range n {
		a := <-acks
		if a.err != nil {
			t.Fatalf("produce: %v", a.err)
		}
		out[a.off] = a.val
	}
	return out
}

package replica

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/protocol"
)

// BenchmarkFollowerRoundTrip measures a follower's fetch round trip
// (encode the request, read and decode a response with 1 MiB of records in
// 16 partitions) over loopback TCP, as the fetcher does per fetch.
func BenchmarkFollowerRoundTrip(b *testing.B) {
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(12)
	rt := kmsg.NewFetchResponseTopic()
	rt.Topic = "t"
	for i := range 16 {
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition, rp.RecordBatches = int32(i), make([]byte, 64<<10)
		rt.Partitions = append(rt.Partitions, rp)
	}
	resp.Topics = append(resp.Topics, rt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var out []byte
		for {
			frame, err := protocol.ReadFrame(r, 1<<26)
			if err != nil {
				return
			}
			req, err := protocol.ParseRequest(frame)
			if err != nil {
				return
			}
			out = protocol.AppendResponse(out[:0], req.CorrelationID, resp)
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}()
	bc, err := dialBroker(context.Background(), nil, ln.Addr().String(), "bench", 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer bc.Close()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.ReplicaID = 2
	b.SetBytes(16 << 16)
	b.ReportAllocs()
	for b.Loop() {
		got := req.ResponseKind().(*kmsg.FetchResponse)
		if err := bc.roundTrip(req, got, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		if len(got.Topics) != 1 || len(got.Topics[0].Partitions) != 16 {
			b.Fatal("bad response")
		}
	}
}

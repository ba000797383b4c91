package protocol

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzParseRequest feeds arbitrary frames to the framing and header/body
// decoders: they must return an error or a request, never panic, and a decoded
// request must re-encode.
func FuzzParseRequest(f *testing.F) {
	for _, key := range Keys() {
		r, _ := Supported(key)
		for _, v := range []int16{r.Min, r.Max} {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			f.Add(kmsg.NewRequestFormatter(kmsg.FormatterClientID("c")).AppendRequest(nil, req, 1))
		}
	}
	p := kmsg.NewPtrProduceRequest()
	p.SetVersion(9)
	p.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: []byte{1, 2, 3}}}}}
	f.Add(kmsg.NewRequestFormatter().AppendRequest(nil, p, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := ReadFrame(bytes.NewReader(b), 1<<20)
		if err != nil {
			return
		}
		req, err := ParseRequest(body)
		if err != nil {
			return
		}
		_ = req.Body.AppendTo(nil)
	})
}

package protocol

import (
	"bytes"
	"errors"
	"io"
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

// FuzzReadBody reads a frame whose size prefix and bytes are arbitrary, in
// small reads, with a reserve callback that may refuse: ReadBody must return
// exactly the declared bytes or an error, never panic, and never reserve
// more than the frame declares plus one chunk beyond what has arrived. Bodies
// go back to their pool, so later inputs read into reused buffers.
func FuzzReadBody(f *testing.F) {
	f.Add([]byte{0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, uint8(0), uint16(7))
	f.Add([]byte{0, 4, 0, 0, 1, 2, 3}, uint8(3), uint16(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint8(0), uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, failAt uint8, step uint16) {
		if len(b) < 4 {
			return
		}
		n, err := ParseSize([4]byte(b[:4]), 1<<20)
		if err != nil {
			return
		}
		var reserved, calls int
		body, err := ReadBody(&trickle{b: b[4:], step: int(step%4096) + 1}, n, func(k int) error {
			calls++
			if failAt != 0 && calls == int(failAt) {
				return errors.New("refused")
			}
			reserved += k
			return nil
		})
		arrived := len(b) - 4
		if reserved > int(n) || reserved > arrived+ChunkSize {
			t.Fatalf("reserved %d for a %d-byte frame of which %d arrived", reserved, n, arrived)
		}
		if err != nil {
			return
		}
		if len(body) != int(n) || !bytes.Equal(body, b[4:4+n]) {
			t.Fatalf("body of %d bytes, want the %d declared", len(body), n)
		}
		ReleaseBody(body) // pooled: later inputs reuse it, stale bytes and all
	})
}

// trickle is a reader that returns at most step bytes a call.
type trickle struct {
	b    []byte
	step int
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.step)], r.b)
	r.b = r.b[k:]
	return k, nil
}

package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// frame encodes req as a client would, without the size prefix.
func frame(req kmsg.Request, corr int32) []byte {
	b := kmsg.NewRequestFormatter(kmsg.FormatterClientID("test-client")).AppendRequest(nil, req, corr)
	return b[4:]
}

func TestParseRoundTripEveryVersion(t *testing.T) {
	for _, key := range Keys() {
		r, _ := Supported(key)
		if kmax := kmsg.RequestForKey(key).MaxVersion(); r.Max > kmax {
			t.Fatalf("%s: supported max v%d above kmsg's v%d", kmsg.NameForKey(key), r.Max, kmax)
		}
		for v := r.Min; v <= r.Max; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			got, err := ParseRequest(frame(req, 42))
			if err != nil {
				t.Fatalf("%s v%d: %v", kmsg.NameForKey(key), v, err)
			}
			if got.Key != key || got.Version != v || got.CorrelationID != 42 || got.ClientID != "test-client" {
				t.Fatalf("%s v%d: header %+v", kmsg.NameForKey(key), v, got)
			}
		}
	}
}

func TestParseUnsupported(t *testing.T) {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(2)
	got, err := ParseRequest(frame(req, 7))
	if !errors.Is(err, ErrUnsupported) || got == nil || got.CorrelationID != 7 || got.Body != nil {
		t.Fatalf("want ErrUnsupported with header, got %+v, %v", got, err)
	}
	b := frame(kmsg.NewPtrMetadataRequest(), 1)
	binary.BigEndian.PutUint16(b[0:2], 999)
	if _, err := ParseRequest(b); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestParseMalformed(t *testing.T) {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(5)
	req.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: "abc", NumPartitions: 1, ReplicationFactor: 1}}
	b := frame(req, 1)
	for cut := 1; cut < len(b)-8; cut++ {
		if _, err := ParseRequest(b[:len(b)-cut]); err == nil {
			t.Fatalf("truncated by %d: no error", cut)
		}
	}
}

func TestReadFrameLimit(t *testing.T) {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 1, 0})
	buf.Write(make([]byte, 256))
	if _, err := ReadFrame(bytes.NewReader(buf.Bytes()), 255); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("want ErrFrameTooLarge, got %v", err)
	}
	b, err := ReadFrame(bytes.NewReader(buf.Bytes()), 256)
	if err != nil || len(b) != 256 {
		t.Fatalf("got %d bytes, %v", len(b), err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), 1<<20); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("negative size: %v", err)
	}
}

func TestAppendResponseHeaders(t *testing.T) {
	av := kmsg.NewPtrApiVersionsResponse()
	av.SetVersion(3)
	b := AppendResponse(nil, 9, av)
	if int(binary.BigEndian.Uint32(b)) != len(b)-4 || binary.BigEndian.Uint32(b[4:]) != 9 {
		t.Fatalf("bad frame %x", b)
	}
	// ApiVersions keeps header v0: the body starts right after the correlation id.
	got := kmsg.NewPtrApiVersionsResponse()
	got.SetVersion(3)
	if err := got.ReadFrom(b[8:]); err != nil {
		t.Fatalf("apiversions body: %v", err)
	}
	md := kmsg.NewPtrMetadataResponse()
	md.SetVersion(12)
	b = AppendResponse(nil, 9, md)
	if b[8] != 0 {
		t.Fatalf("flexible response must carry an empty tag section")
	}
	got2 := kmsg.NewPtrMetadataResponse()
	got2.SetVersion(12)
	if err := got2.ReadFrom(b[9:]); err != nil {
		t.Fatalf("metadata body: %v", err)
	}
}

// TestSizeClasses: every size up to 16 MiB gets the smallest class holding
// it, at most a quarter larger, and a buffer of a class's size maps back to
// that class (so ReleaseBody accepts exactly what getBody made).
func TestSizeClasses(t *testing.T) {
	prevIdx, prevSize := -1, 0
	for n := 1; n <= 16<<20; n += 1 + n/97 {
		idx, size := sizeClass(n)
		if idx < 0 || size < n || n > 4096 && size > n+n/4+1 || idx < prevIdx || idx >= len(bodyPools) {
			t.Fatalf("sizeClass(%d) = %d, %d", n, idx, size)
		}
		if idx == prevIdx && size != prevSize || idx > prevIdx && size <= prevSize && prevIdx >= 0 {
			t.Fatalf("sizeClass(%d) = %d, %d after %d, %d", n, idx, size, prevIdx, prevSize)
		}
		if i2, s2 := sizeClass(size); i2 != idx || s2 != size {
			t.Fatalf("class size %d maps to %d, %d, not %d", size, i2, s2, idx)
		}
		prevIdx, prevSize = idx, size
	}
	if idx, _ := sizeClass(16<<20 + 1); idx != -1 {
		t.Fatalf("a body above 16 MiB is pooled (class %d)", idx)
	}
}

// TestReadBodyReuse: bodies read after a release reuse pooled buffers and
// hold exactly the new frame's bytes, for small and chunked (> ChunkSize)
// frames.
func TestReadBodyReuse(t *testing.T) {
	for _, n := range []int{100, 5000, ChunkSize, ChunkSize + 1, 3*ChunkSize + 17} {
		for round := range 3 {
			want := bytes.Repeat([]byte{byte(round + 1)}, n)
			var reserved int
			got, err := ReadBody(bytes.NewReader(want), int32(n), func(k int) error { reserved += k; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || reserved != n {
				t.Fatalf("n=%d round %d: body differs or reserved %d", n, round, reserved)
			}
			ReleaseBody(got)
		}
	}
	// A short read fails and leaves nothing behind.
	if _, err := ReadBody(bytes.NewReader(make([]byte, 10)), 20, func(int) error { return nil }); err == nil {
		t.Fatal("short frame read")
	}
	ReleaseBody(make([]byte, 10)) // not one of ours: ignored
}

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

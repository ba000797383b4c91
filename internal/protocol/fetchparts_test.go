package protocol

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// joinParts rebuilds the whole frame from AppendFetchResponse's output.
func joinParts(head []byte, parts []Part) []byte {
	var out []byte
	at := 0
	for _, p := range parts {
		out = append(out, head[at:p.At]...)
		out = append(out, p.Records...)
		at = p.At
	}
	return append(out, head[at:]...)
}

// sampleFetch is a response using every field the broker sets.
func sampleFetch(v int16) *kmsg.FetchResponse {
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(v)
	resp.ThrottleMillis, resp.ErrorCode, resp.SessionID = 7, 0, 1234
	for ti, name := range []string{"a", "topic-b"} {
		t := kmsg.NewFetchResponseTopic()
		t.Topic = name
		for pi := int32(0); pi < 3; pi++ {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition, p.HighWatermark, p.LastStableOffset, p.LogStartOffset = pi, 100, 90, 3
			p.PreferredReadReplica = -1
			p.RecordBatches = bytes.Repeat([]byte{byte(ti*3 + int(pi) + 1)}, 10+int(pi)*300)
			switch pi {
			case 0:
				p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 5, FirstOffset: 9}}
				p.DivergingEpoch.Epoch, p.DivergingEpoch.EndOffset = 3, 44
			case 1:
				p.RecordBatches = []byte{} // empty, never null
				p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = 2, 8
				p.SnapshotID.EndOffset, p.SnapshotID.Epoch = 10, 1
			case 2:
				p.PreferredReadReplica, p.ErrorCode = 3, 6
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func TestAppendFetchResponseMatchesKmsg(t *testing.T) {
	for v := int16(4); v <= 12; v++ {
		resp := sampleFetch(v)
		want := AppendResponse([]byte("prefix"), 99, resp)
		for _, name := range []string{"none", "all", "odd"} {
			n := 0
			external := func(b []byte) (int, bool) {
				n++
				switch name {
				case "all":
					return len(b), true
				case "odd":
					return len(b), n%2 == 1
				}
				return 0, false
			}
			head, parts := AppendFetchResponse([]byte("prefix"), 99, resp, external)
			if got := joinParts(head, parts); !bytes.Equal(got, want) {
				t.Fatalf("v%d %s: frame differs from kmsg's:\n got %x\nwant %x", v, name, got, want)
			}
			if name == "none" && len(parts) != 0 {
				t.Fatalf("v%d: %d parts with none external", v, len(parts))
			}
			if name == "all" && len(parts) != 4 { // the non-empty record sets
				t.Fatalf("v%d: %d parts, want 4", v, len(parts))
			}
			size := int(binary.BigEndian.Uint32(head[len("prefix"):]))
			if size != len(want)-len("prefix")-4 {
				t.Fatalf("v%d %s: size field %d, frame %d", v, name, size, len(want)-len("prefix")-4)
			}
		}
	}
}

// TestAppendFetchResponsePlaceholder: a record set standing for more bytes
// (a placeholder for a file range) gets that size in its length prefix and
// in the frame size.
func TestAppendFetchResponsePlaceholder(t *testing.T) {
	for _, v := range []int16{4, 11, 12} {
		resp := sampleFetch(v)
		stub := resp.Topics[1].Partitions[2].RecordBatches
		real := bytes.Repeat([]byte{9}, 70000)
		resp.Topics[1].Partitions[2].RecordBatches = real
		want := AppendResponse(nil, 3, resp)
		resp.Topics[1].Partitions[2].RecordBatches = stub
		head, parts := AppendFetchResponse(nil, 3, resp, func(b []byte) (int, bool) {
			if &b[0] == &stub[0] {
				return len(real), true
			}
			return 0, false
		})
		if len(parts) != 1 || parts[0].Len != len(real) {
			t.Fatalf("v%d: parts %+v", v, parts)
		}
		parts[0].Records = real
		if got := joinParts(head, parts); !bytes.Equal(got, want) {
			t.Fatalf("v%d: frame with the placeholder's bytes differs from kmsg's", v)
		}
	}
}

func TestAppendFetchResponseFallsBack(t *testing.T) {
	resp := sampleFetch(12)
	resp.Topics[0].Partitions[0].UnknownTags.Set(9, []byte{1})
	head, parts := AppendFetchResponse(nil, 1, resp, func(b []byte) (int, bool) { return len(b), true })
	if len(parts) != 0 || !bytes.Equal(head, AppendResponse(nil, 1, resp)) {
		t.Fatal("a response with unknown tags is not encoded by kmsg with no parts")
	}
}

// FuzzAppendFetchResponse decodes arbitrary bytes as a Fetch response of a
// served version and checks that the parts encoder, with every other record
// set left out, rebuilds kmsg's exact frame.
func FuzzAppendFetchResponse(f *testing.F) {
	for v := int16(4); v <= 12; v++ {
		f.Add(byte(v-4), sampleFetch(v).AppendTo(nil))
	}
	f.Fuzz(func(t *testing.T, vb byte, body []byte) {
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(4 + int16(vb%9))
		if err := resp.ReadFrom(body); err != nil {
			return
		}
		want := AppendResponse(nil, 5, resp)
		n := 0
		head, parts := AppendFetchResponse(nil, 5, resp, func(b []byte) (int, bool) { n++; return len(b), n%2 == 0 })
		if got := joinParts(head, parts); !bytes.Equal(got, want) {
			t.Fatalf("v%d: frame differs from kmsg's:\n got %x\nwant %x", resp.Version, got, want)
		}
	})
}

// TestAppendFetchResponseCoversServedVersions: every Fetch version the
// broker serves is one AppendFetchResponse encodes itself (a fallback to
// kmsg would copy placeholder record sets instead of leaving them out).
func TestAppendFetchResponseCoversServedVersions(t *testing.T) {
	r, ok := Supported(int16(kmsg.Fetch))
	if !ok {
		t.Fatal("Fetch not supported")
	}
	for v := r.Min; v <= r.Max; v++ {
		if !fetchEncodable(sampleFetch(v)) {
			t.Fatalf("Fetch v%d is served but not encoded by AppendFetchResponse", v)
		}
	}
}

package protocol

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Part is a record set a Fetch response frame leaves out of its encoded
// bytes: the caller sends the Len bytes Records stands for itself (from a
// file, with sendfile) at byte At of the encoded frame, after the frame's
// bytes before At and before those from At on. The frame's size field and
// the record set's length prefix count Len.
type Part struct {
	At      int
	Records []byte
	Len     int
}

// AppendFetchResponse appends a Fetch response frame to dst like
// AppendResponse, except that the record sets for which external returns
// ok are not copied: their length prefixes are encoded with the size
// external returns (the size of the bytes the record set stands for, which
// may be a placeholder) and each one is returned as a Part to be sent in its
// place (At counts from the start of dst). When every size is the record
// set's own, joining dst's new bytes and the parts' Records in order gives
// exactly AppendResponse's frame. A response this encoder does not handle
// (a version outside v4-v12, unknown tags, the v16 broker list) is encoded
// by AppendResponse with no parts.
func AppendFetchResponse(dst []byte, correlationID int32, resp *kmsg.FetchResponse, external func([]byte) (size int, ok bool)) ([]byte, []Part) {
	if !fetchEncodable(resp) {
		return AppendResponse(dst, correlationID, resp), nil
	}
	v := resp.Version
	flex := v >= 12
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if flex {
		dst = append(dst, 0) // no header tags
	}
	dst = kbin.AppendInt32(dst, resp.ThrottleMillis)
	if v >= 7 {
		dst = kbin.AppendInt16(dst, resp.ErrorCode)
		dst = kbin.AppendInt32(dst, resp.SessionID)
	}
	var parts []Part
	extra := 0 // bytes of parts
	dst = appendArrayLen(dst, len(resp.Topics), flex)
	for i := range resp.Topics {
		t := &resp.Topics[i]
		if flex {
			dst = kbin.AppendCompactString(dst, t.Topic)
		} else {
			dst = kbin.AppendString(dst, t.Topic)
		}
		dst = appendArrayLen(dst, len(t.Partitions), flex)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			dst = kbin.AppendInt32(dst, p.Partition)
			dst = kbin.AppendInt16(dst, p.ErrorCode)
			dst = kbin.AppendInt64(dst, p.HighWatermark)
			dst = kbin.AppendInt64(dst, p.LastStableOffset)
			if v >= 5 {
				dst = kbin.AppendInt64(dst, p.LogStartOffset)
			}
			if flex {
				dst = kbin.AppendCompactNullableArrayLen(dst, len(p.AbortedTransactions), p.AbortedTransactions == nil)
			} else {
				dst = kbin.AppendNullableArrayLen(dst, len(p.AbortedTransactions), p.AbortedTransactions == nil)
			}
			for _, a := range p.AbortedTransactions {
				dst = kbin.AppendInt64(dst, a.ProducerID)
				dst = kbin.AppendInt64(dst, a.FirstOffset)
				if flex {
					dst = append(dst, 0) // no tags
				}
			}
			if v >= 11 {
				dst = kbin.AppendInt32(dst, p.PreferredReadReplica)
			}
			rb := p.RecordBatches
			size, ok := 0, false
			if len(rb) > 0 {
				size, ok = external(rb)
			}
			switch {
			case ok:
				if flex {
					dst = kbin.AppendUvarint(dst, 1+uint32(size))
				} else {
					dst = kbin.AppendInt32(dst, int32(size))
				}
				parts = append(parts, Part{At: len(dst), Records: rb, Len: size})
				extra += size
			case flex:
				dst = kbin.AppendCompactNullableBytes(dst, rb)
			default:
				dst = kbin.AppendNullableBytes(dst, rb)
			}
			if flex {
				dst = appendPartitionTags(dst, p)
			}
		}
		if flex {
			dst = append(dst, 0) // no topic tags
		}
	}
	if flex {
		dst = append(dst, 0) // no response tags
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4+extra))
	return dst, parts
}

// fetchEncodable reports whether AppendFetchResponse encodes resp itself:
// the versions the broker serves and no tags it does not write.
func fetchEncodable(resp *kmsg.FetchResponse) bool {
	if resp.Version < 4 || resp.Version > 12 || resp.UnknownTags.Len() > 0 || len(resp.Brokers) > 0 {
		return false
	}
	for i := range resp.Topics {
		t := &resp.Topics[i]
		if t.UnknownTags.Len() > 0 {
			return false
		}
		for j := range t.Partitions {
			p := &t.Partitions[j]
			if p.UnknownTags.Len() > 0 || p.DivergingEpoch.UnknownTags.Len() > 0 ||
				p.CurrentLeader.UnknownTags.Len() > 0 || p.SnapshotID.UnknownTags.Len() > 0 {
				return false
			}
			for k := range p.AbortedTransactions {
				if p.AbortedTransactions[k].UnknownTags.Len() > 0 {
					return false
				}
			}
		}
	}
	return true
}

// appendPartitionTags encodes a v12 partition's tagged fields as kmsg does:
// DivergingEpoch (0), CurrentLeader (1) and SnapshotID (2), each only when
// it differs from its default (-1, -1).
func appendPartitionTags(dst []byte, p *kmsg.FetchResponseTopicPartition) []byte {
	de := p.DivergingEpoch.Epoch != -1 || p.DivergingEpoch.EndOffset != -1
	cl := p.CurrentLeader.LeaderID != -1 || p.CurrentLeader.LeaderEpoch != -1
	si := p.SnapshotID.EndOffset != -1 || p.SnapshotID.Epoch != -1
	n := 0
	for _, b := range []bool{de, cl, si} {
		if b {
			n++
		}
	}
	dst = kbin.AppendUvarint(dst, uint32(n))
	if de {
		dst = append(dst, 0, 4+8+1) // tag 0, size: int32, int64, no tags
		dst = kbin.AppendInt32(dst, p.DivergingEpoch.Epoch)
		dst = kbin.AppendInt64(dst, p.DivergingEpoch.EndOffset)
		dst = append(dst, 0)
	}
	if cl {
		dst = append(dst, 1, 4+4+1)
		dst = kbin.AppendInt32(dst, p.CurrentLeader.LeaderID)
		dst = kbin.AppendInt32(dst, p.CurrentLeader.LeaderEpoch)
		dst = append(dst, 0)
	}
	if si {
		dst = append(dst, 2, 8+4+1)
		dst = kbin.AppendInt64(dst, p.SnapshotID.EndOffset)
		dst = kbin.AppendInt32(dst, p.SnapshotID.Epoch)
		dst = append(dst, 0)
	}
	return dst
}

func appendArrayLen(dst []byte, n int, flex bool) []byte {
	if flex {
		return kbin.AppendCompactArrayLen(dst, n)
	}
	return kbin.AppendArrayLen(dst, n)
}

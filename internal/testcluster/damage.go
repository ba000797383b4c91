package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
)

// SegmentFiles returns the .log files of a partition directory under a
// node's data dir, in offset order.
func (n *Node) SegmentFiles(topic string, partition int32) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(n.DataDir(), fmt.Sprintf("%s-%d", topic, partition), "*.log"))
	slices.Sort(files)
	return files, err
}

// DamageFile overwrites 16 bytes of file at the fraction at of its length
// (a bit rot or a bad sector; run it on a stopped node).
func DamageFile(file string, at float64) error {
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt([]byte("\xde\xad\xbe\xef0123456789ab"), int64(float64(st.Size())*at))
	return errors.Join(err, f.Close())
}

// DamageBatchHeader overwrites 16 bytes of the header (from its length
// field on: length, leader epoch, magic, CRC) of the batch in the middle of
// a segment file, as in issue 8's report ("invalid record batch: magic
// 33"). It returns the batch's base offset.
func DamageBatchHeader(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	var starts []int
	var bases []int64
	pos := 0
	if err := record.Split(b, func(batch []byte) error {
		h, err := record.ParseHeader(batch)
		starts, bases = append(starts, pos), append(bases, h.BaseOffset)
		pos += len(batch)
		return err
	}); err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	if len(starts) < 3 {
		return 0, fmt.Errorf("%s: %d batches, want at least 3", file, len(starts))
	}
	i := len(starts) / 2
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	_, err = f.WriteAt([]byte("\xde\xad\xbe\xef!!!!0123456789ab"[:16]), int64(starts[i])+8)
	return bases[i], errors.Join(err, f.Close())
}

// PartitionRead is what ReadPartition found.
type PartitionRead struct {
	Values map[int64]string // offset -> record value
	Failed map[int64]int16  // offset -> error code of the fetch at that offset
	HW     int64            // the high watermark the broker answered
}

// ReadPartition fetches a partition from from up to its high watermark with
// raw Fetch requests to addr (the leader), as a consumer. A fetch that fails
// at an offset is recorded in Failed and the next offset is tried, so the
// whole readable log is returned even around a damaged range; failedLimit
// bounds how many failing offsets are stepped over.
func ReadPartition(ctx context.Context, addr, topic string, partition int32, from int64, failedLimit int) (*PartitionRead, error) {
	out := &PartitionRead{Values: map[int64]string{}, Failed: map[int64]int16{}, HW: -1}
	for off := from; out.HW < 0 || off < out.HW; {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(11)
		req.ReplicaID, req.MaxWaitMillis, req.MaxBytes = -1, 0, 4<<20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = partition, off, 1<<20, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		if err := RawRequest(ctx, addr, req, resp); err != nil {
			return out, err
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return out, fmt.Errorf("fetch at %d: malformed response (error %v)", off, kerr.ErrorForCode(resp.ErrorCode))
		}
		p := resp.Topics[0].Partitions[0]
		out.HW = p.HighWatermark
		if p.ErrorCode != 0 {
			if p.ErrorCode != kerr.CorruptMessage.Code && p.ErrorCode != kerr.KafkaStorageError.Code {
				return out, fmt.Errorf("fetch at %d: %w", off, kerr.ErrorForCode(p.ErrorCode))
			}
			out.Failed[off] = p.ErrorCode
			if len(out.Failed) > failedLimit {
				return out, fmt.Errorf("more than %d offsets fail from %d on: %w", failedLimit, off, kerr.ErrorForCode(p.ErrorCode))
			}
			off++
			continue
		}
		next := off
		err := record.Split(p.RecordBatches, func(batch []byte) error {
			recs, err := record.Records(batch)
			for _, r := range recs {
				if r.Offset >= off {
					out.Values[r.Offset] = string(r.Value)
				}
				next = max(next, r.Offset+1)
			}
			return err
		})
		if err != nil {
			return out, fmt.Errorf("fetch at %d: %w", off, err)
		}
		if next == off {
			if off >= out.HW {
				break
			}
			return out, fmt.Errorf("fetch at %d below the high watermark %d returned nothing", off, out.HW)
		}
		off = next
	}
	return out, nil
}

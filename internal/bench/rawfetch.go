package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// consumeRaw reads o.Topic's partitions from start to end with plain Fetch
// requests (v12, 1 MiB per partition, 50 MiB per response, as franz-go's
// defaults), one request in flight per partition leader, and counts the
// record batch bytes and records from the batch headers only: records are
// not decoded, so it measures the broker's fetch path and the network
// rather than a client's decoding (--raw-fetch). Bytes are batch bytes,
// not value bytes: for 1 KiB records about 7% more than a consumer counts.
func consumeRaw(ctx context.Context, o Options, start, end map[int32]int64) (ConsumeReport, error) {
	var rep ConsumeReport
	rep.Raw = true
	cl, err := o.newClient()
	if err != nil {
		return rep, fmt.Errorf("raw fetch: new client: %w", err)
	}
	defer cl.Close()
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(o.Topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return rep, fmt.Errorf("raw fetch: metadata: %w", err)
	}
	byLeader := map[int32]map[int32]int64{} // leader: partition: next offset
	for _, t := range mresp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return rep, fmt.Errorf("raw fetch: metadata of %s[%d]: %w", o.Topic, p.Partition, err)
			}
			if end[p.Partition] > start[p.Partition] {
				if byLeader[p.Leader] == nil {
					byLeader[p.Leader] = map[int32]int64{}
				}
				byLeader[p.Leader][p.Partition] = start[p.Partition]
			}
		}
	}
	type result struct {
		records, bytes int64
		err            error
	}
	results := make(chan result, len(byLeader))
	t0 := time.Now()
	for leader, next := range byLeader {
		go func() {
			var r result
			r.records, r.bytes, r.err = fetchRaw(ctx, cl.Broker(int(leader)), o.Topic, next, end)
			results <- r
		}()
	}
	for range byLeader {
		r := <-results
		rep.Records += r.records
		rep.Bytes += r.bytes
		err = errors.Join(err, r.err)
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.MBps = rate(float64(rep.Bytes)/1e6, rep.Seconds)
	rep.RecordsPerSec = rate(float64(rep.Records), rep.Seconds)
	return rep, err
}

// fetchRaw fetches the partitions of next from one broker until each
// reaches its end offset, advancing next.
func fetchRaw(ctx context.Context, b *kgo.Broker, topic string, next, end map[int32]int64) (records, bytes int64, err error) {
	for len(next) > 0 {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(12)
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = -1, 500, 1, 50<<20, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		for p, off := range next {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, off, 1<<20
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		cctx, cancel := context.WithTimeout(ctx, consumeStall)
		resp, err := req.RequestWith(cctx, b)
		cancel()
		if err != nil {
			return records, bytes, fmt.Errorf("raw fetch: %w", err)
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return records, bytes, fmt.Errorf("raw fetch %s[%d]: %w", topic, p.Partition, err)
				}
				n, nb, after := countBatches(p.RecordBatches, next[p.Partition], end[p.Partition])
				records, bytes = records+n, bytes+nb
				if after > next[p.Partition] {
					next[p.Partition] = after
				}
				if next[p.Partition] >= end[p.Partition] {
					delete(next, p.Partition)
				}
			}
		}
	}
	return records, bytes, nil
}

// countBatches walks the whole v2 batches of rb by their headers and
// returns the records with offsets in [from, end), their batches' bytes,
// and the offset after the last whole batch (from if there is none).
func countBatches(rb []byte, from, end int64) (records, bytes, next int64) {
	next = from
	for len(rb) >= 61 {
		size := 12 + int64(binary.BigEndian.Uint32(rb[8:12]))
		if size > int64(len(rb)) || size < 61 {
			break // a partial batch at the end of a response
		}
		base := int64(binary.BigEndian.Uint64(rb[0:8]))
		last := base + int64(binary.BigEndian.Uint32(rb[23:27]))
		if lo, hi := max(base, from), min(last+1, end); hi > lo {
			records += hi - lo
			bytes += size
		}
		next = last + 1
		rb = rb[size:]
	}
	return records, bytes, next
}

package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
)

// BenchmarkFetchFromFiles measures a consumer reading one 64 MiB partition
// over loopback TCP with raw Fetch requests (1 MiB per fetch; the client
// only walks batch headers to find the next offset, so the broker's side
// dominates): "copy" serves fetches as before zero-copy fetches (read,
// encode, write), "sendfile" reads and CRC-checks the bytes and sends them
// with sendfile (fetch.verify.crc=true), "sendfile-noverify" sends them
// unread (fetch.verify.crc=false). It reports MB/s and the process's CPU
// seconds (client and broker) per GB.
func BenchmarkFetchFromFiles(b *testing.B) {
	for _, mode := range []string{"copy", "sendfile", "sendfile-noverify"} {
		b.Run(mode, func(b *testing.B) {
			zeroCopyOff.Store(mode == "copy")
			defer zeroCopyOff.Store(false)
			addr := freeAddr(b)
			cfg, err := config.Load("", [][2]string{{"log.dirs", b.TempDir()}, {"listeners", "PLAINTEXT://" + addr},
				{"fetch.verify.crc", fmt.Sprint(mode != "sendfile-noverify")}})
			if err != nil {
				b.Fatal(err)
			}
			serveForTest(b, cfg)
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerBatchMaxBytes(1<<20), kgo.AllowAutoTopicCreation())
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			val := bytes.Repeat([]byte("v"), 1000)
			var rs []*kgo.Record
			for i := 0; i < 64<<10; i++ {
				rs = append(rs, &kgo.Record{Topic: "fb", Value: val})
			}
			if err := cl.ProduceSync(c, rs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			end := rs[len(rs)-1].Offset + 1
			next, total := int64(0), 0
			cpu0 := cpuTime()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				req := kmsg.NewPtrFetchRequest()
				req.SetVersion(12)
				req.ReplicaID, req.MaxBytes, req.SessionEpoch = -1, 50<<20, -1
				t := kmsg.NewFetchRequestTopic()
				t.Topic = "fb"
				p := kmsg.NewFetchRequestTopicPartition()
				p.FetchOffset, p.PartitionMaxBytes, p.CurrentLeaderEpoch, p.LastFetchedEpoch = next, 1<<20, -1, -1
				t.Partitions = append(t.Partitions, p)
				req.Topics = append(req.Topics, t)
				resp, err := req.RequestWith(c, cl)
				if err != nil {
					b.Fatal(err)
				}
				rp := resp.Topics[0].Partitions[0]
				if rp.ErrorCode != 0 || len(rp.RecordBatches) == 0 {
					b.Fatalf("fetch at %d: error %d, %d bytes", next, rp.ErrorCode, len(rp.RecordBatches))
				}
				total += len(rp.RecordBatches)
				next = lastBatchEnd(b, rp.RecordBatches)
				if next >= end {
					next = 0
				}
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(total)/el.Seconds()/1e6, "MB/s")
			b.ReportMetric((cpuTime()-cpu0).Seconds()/(float64(total)/1e9), "cpu-s/GB")
		})
	}
}

// lastBatchEnd returns the offset after the last whole batch in rb.
func lastBatchEnd(b *testing.B, rb []byte) int64 {
	next := int64(-1)
	for len(rb) >= 61 {
		size := 12 + int(binary.BigEndian.Uint32(rb[8:12]))
		if size > len(rb) {
			break
		}
		next = int64(binary.BigEndian.Uint64(rb[0:8])) + int64(binary.BigEndian.Uint32(rb[23:27])) + 1
		rb = rb[size:]
	}
	if next < 0 {
		b.Fatal("no whole batch in a fetch")
	}
	return next
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package replica

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"strand/internal/log"
	"strand/internal/record"
)

// BenchmarkOpenPartition measures opening one large partition after a clean
// shutdown (the start-up cost of a broker restart, issue 8 §1): the log is
// written once - STRAND_BENCH_OPEN_BYTES bytes (default 256 MiB) of 16 KiB
// batches from 8 idempotent producers - then each iteration opens it,
// either with the file pages in the page cache (warm) or evicted from it
// first (cold, posix_fadvise DONTNEED on every file of the partition).
func BenchmarkOpenPartition(b *testing.B) {
	size := int64(256 << 20)
	if v, err := strconv.ParseInt(os.Getenv("STRAND_BENCH_OPEN_BYTES"), 10, 64); err == nil && v > 0 {
		size = v
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := filepath.Join(b.TempDir(), "bench-0")
	p, err := openPartition(dir, "bench", 0, 1, log.DefaultConfig(), false, quiet)
	if err != nil {
		b.Fatal(err)
	}
	p.applyMetadata(meta(1, 1, 1, []int32{1}, []int32{1}), 1, time.Now())
	value := make([]byte, 1000)
	recs := make([]record.Record, 16)
	for i := range recs {
		recs[i] = record.Record{Timestamp: 1, Value: value}
	}
	var seqs [8]int32
	batches := 0
	for written := int64(0); written < size; batches++ {
		pid := int64(batches % 8)
		batch := record.MustBuild(record.BuildSpec{ProducerID: pid, ProducerEpoch: 0, BaseSequence: seqs[pid], Records: recs})
		seqs[pid] += int32(len(recs))
		if _, err := p.Append(batch, time.Now()); err != nil {
			b.Fatal(err)
		}
		written += int64(len(batch))
	}
	shutdownPartition(b, p)
	for _, mode := range []string{"warm", "cold"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				if mode == "cold" {
					b.StopTimer()
					evict(b, dir)
					b.StartTimer()
				}
				p, err := openPartition(dir, "bench", 0, 1, log.DefaultConfig(), false, quiet)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if got := p.LogEndOffset(); got != int64(batches*len(recs)) {
					b.Fatalf("LEO %d", got)
				}
				shutdownPartition(b, p)
				b.StartTimer()
			}
		})
	}
}

// evict drops the page-cache pages of every file in dir.
func evict(b *testing.B, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
	}
}

package log

import (
	"os"
	"path/filepath"
	"testing"

	"strand/internal/record"
)

func benchBatch(b *testing.B) []byte {
	recs := make([]record.Record, 16)
	for i := range recs {
		recs[i] = record.Record{Timestamp: 1, Value: make([]byte, 1024)}
	}
	return record.MustBuild(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
}

// BenchmarkAppend: 16 x 1 KiB records per batch, no fsync.
func BenchmarkAppend(b *testing.B) {
	l := openT(b, b.TempDir(), DefaultConfig())
	tmpl := benchBatch(b)
	buf := make([]byte, len(tmpl))
	b.SetBytes(int64(len(tmpl)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, tmpl)
		if _, err := l.AppendAsLeader(buf, AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendSync: like BenchmarkAppend with WaitFlushed after each
// append (flush.messages=1), from parallel producers to exercise group commit.
func BenchmarkAppendSync(b *testing.B) {
	l := openT(b, b.TempDir(), DefaultConfig())
	tmpl := benchBatch(b)
	b.SetBytes(int64(len(tmpl)))
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, len(tmpl))
		for pb.Next() {
			copy(buf, tmpl)
			info, err := l.AppendAsLeader(buf, AppendOptions{})
			if err == nil {
				err = l.WaitFlushed(info.LastOffset + 1)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(l.fsyncs.Load())/float64(b.N), "fsyncs/op")
}

// BenchmarkSegmentSync appends 16 KiB to a growing file and makes it durable
// with fsync (File.Sync) and with datasync (fdatasync on Linux), as a
// segment append under flush.messages=1 does.
func BenchmarkSegmentSync(b *testing.B) {
	buf := make([]byte, 16<<10)
	for _, m := range []struct {
		name string
		sync func(*os.File) error
	}{{"fsync", (*os.File).Sync}, {"fdatasync", datasync}} {
		b.Run(m.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "seg"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := m.sync(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

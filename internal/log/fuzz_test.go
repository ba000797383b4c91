package log

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"strand/internal/record"
)

// FuzzRecovery writes a valid log, damages the active segment file as the
// fuzzer chooses (truncate, then overwrite bytes), reopens after a crash and
// checks: no panic, a sane LEO, and every Read either fails or returns
// CRC-valid batches with dense offsets.
func FuzzRecovery(f *testing.F) {
	f.Add(uint16(0), uint16(0), []byte{})
	f.Add(uint16(500), uint16(0), []byte{})
	f.Add(uint16(0), uint16(300), []byte{0xff})
	f.Add(uint16(0), uint16(10), []byte{0, 0, 0, 0})
	f.Add(uint16(2000), uint16(700), []byte("garbage"))
	f.Fuzz(func(t *testing.T, cut, at uint16, patch []byte) {
		dir := t.TempDir()
		cfg := DefaultConfig()
		cfg.IndexIntervalBytes = 200
		l, err := Open(dir, cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 12; i++ {
			if _, err := l.AppendAsLeader(batch(t, 1+i%3, 40, int64(i*10), "f"), AppendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		l.Flush()
		orig := l.LogEndOffset()
		path := filepath.Join(dir, segmentName(0, logSuffix))
		l.stopOnce.Do(func() { close(l.stop) })
		<-l.done
		l.closed = true
		for _, s := range l.segs {
			s.close()
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if int(cut) < len(b) && cut > 0 {
			b = b[:len(b)-int(cut)]
		}
		if len(patch) > 0 {
			p := int(at) % (len(b) + 1)
			b = append(b[:p], append(patch, b[min(p+len(patch), len(b)):]...)...)
		}
		os.WriteFile(path, b, 0o644)

		l2, err := Open(dir, cfg, quiet)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l2.Close()
		leo := l2.LogEndOffset()
		if leo < 0 || (leo > orig && l2.Corruption() == nil) {
			t.Fatalf("LEO %d (was %d)", leo, orig)
		}
		for off := l2.LogStartOffset(); off < leo; off++ {
			data, err := l2.Read(off, 1<<20, leo, true)
			if err != nil {
				if !errors.Is(err, record.ErrCorrupt) {
					t.Fatalf("Read(%d): unexpected error kind %v", off, err)
				}
				continue
			}
			next := int64(-1)
			if serr := record.Split(data, func(bb []byte) error {
				h, err := record.Validate(bb)
				if err != nil {
					t.Fatalf("Read(%d) served an invalid batch: %v", off, err)
				}
				if next >= 0 && h.BaseOffset != next {
					t.Fatalf("Read(%d): offsets not dense: %d after %d", off, h.BaseOffset, next)
				}
				if next < 0 && h.LastOffset() < off {
					t.Fatalf("Read(%d) returned batch [%d,%d]", off, h.BaseOffset, h.LastOffset())
				}
				next = h.NextOffset()
				return nil
			}); serr != nil {
				t.Fatalf("Read(%d) returned bad framing: %v", off, serr)
			}
		}
		l2.ScanHeaders(0, func(record.Header) error { return nil })
		l2.OffsetForTimestamp(50)
		if _, err := l2.AppendAsLeader(batch(t, 1, 10, 1, "n"), AppendOptions{}); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
	})
}

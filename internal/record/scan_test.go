package record

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestScan: Scan reads from where the last batch ended, hands fn the read
// offset (a batch may start before it), stops at an empty read or at end,
// and fails on a read that makes no progress or a read error.
func TestScan(t *testing.T) {
	batchAt := func(base int64, n int) []byte {
		var recs []Record
		for i := 0; i < n; i++ {
			recs = append(recs, Record{Value: []byte("v")})
		}
		b, err := Build(BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		SetBaseOffset(b, base)
		return b
	}
	// The log: batches [0,3) and [3,5); a read at 4 returns the batch at 3.
	logAt := map[int64][]byte{0: batchAt(0, 3), 3: batchAt(3, 2), 4: batchAt(3, 2)}
	var seen []string
	err := Scan(0, 5, func(off int64) ([]byte, error) { return logAt[off], nil }, func(h Header, _ []byte, from int64) error {
		seen = append(seen, fmt.Sprintf("%d@%d", h.BaseOffset, from))
		return nil
	})
	if err != nil || strings.Join(seen, " ") != "0@0 3@3" {
		t.Fatalf("Scan: %v, saw %v, want 0@0 3@3", err, seen)
	}
	// An empty read ends the scan early without an error.
	seen = nil
	if err := Scan(0, 100, func(off int64) ([]byte, error) { return logAt[off], nil }, func(h Header, _ []byte, from int64) error {
		seen = append(seen, fmt.Sprint(h.BaseOffset))
		return nil
	}); err != nil || len(seen) != 2 {
		t.Fatalf("Scan to 100: %v, saw %v, want 2 batches", err, seen)
	}
	// A read at 4 that returns only the batch ending at 2 makes no progress.
	err = Scan(4, 5, func(int64) ([]byte, error) { return logAt[0], nil }, func(Header, []byte, int64) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "read at offset 4 made no progress") {
		t.Fatalf("Scan without progress: %v, want a no-progress error", err)
	}
	boom := errors.New("boom")
	err = Scan(0, 5, func(int64) ([]byte, error) { return nil, boom }, func(Header, []byte, int64) error { return nil })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "read at offset 0") {
		t.Fatalf("Scan with a read error: %v, want boom at offset 0", err)
	}
	err = Scan(0, 5, func(off int64) ([]byte, error) { return logAt[off], nil }, func(Header, []byte, int64) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Scan with an fn error: %v, want boom", err)
	}
}

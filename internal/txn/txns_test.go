package txn

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"strand/internal/record"
)

// TestTxnsTable: open transactions hold the first unstable offset; aborted
// ranges are reported to fetches that overlap them.
func TestTxnsTable(t *testing.T) {
	tx := NewTxns()
	data := func(pid, base int64) record.Header {
		return record.Header{BaseOffset: base, ProducerID: pid, Attributes: 0x10, NumRecords: 1}
	}
	if tx.FirstUnstable() != math.MaxInt64 {
		t.Fatal("empty table has an unstable offset")
	}
	tx.Begin(data(1, 10))
	tx.Begin(data(2, 12))
	tx.Begin(data(1, 14)) // same transaction
	if got := tx.FirstUnstable(); got != 10 {
		t.Fatalf("first unstable %d, want 10", got)
	}
	tx.End(1, 15, false) // abort [10, 15]
	if got := tx.FirstUnstable(); got != 12 {
		t.Fatalf("first unstable %d, want 12", got)
	}
	tx.End(2, 16, true)
	tx.Begin(data(3, 20))
	tx.End(3, 22, false) // abort [20, 22]
	ab := tx.Aborted()
	for _, c := range []struct {
		from, to int64
		want     int
	}{{0, 10, 0}, {0, 11, 1}, {15, 20, 1}, {16, 20, 0}, {16, 21, 1}, {0, 100, 2}, {23, 100, 0}} {
		if got := AbortedIn(ab, c.from, c.to); len(got) != c.want {
			t.Errorf("AbortedIn(%d, %d) = %v, want %d", c.from, c.to, got, c.want)
		}
	}
	tx.Trim(16)
	if got := tx.Aborted(); len(got) != 1 || got[0].ProducerID != 3 {
		t.Fatalf("after trim %v", got)
	}
}

// TestMarkerRoundTrip: built markers parse back to their type.
func TestMarkerRoundTrip(t *testing.T) {
	for _, commit := range []bool{true, false} {
		b, err := BuildMarker(5, 2, commit, 7, 1000)
		if err != nil {
			t.Fatal(err)
		}
		h, err := record.ParseHeader(b)
		if err != nil || !h.IsControl() || !h.IsTransactional() || h.ProducerID != 5 || h.ProducerEpoch != 2 {
			t.Fatalf("header %+v %v", h, err)
		}
		got, err := ParseMarker(b)
		if err != nil || got != commit {
			t.Fatalf("ParseMarker = %v, %v; want %v", got, err, commit)
		}
	}
}

// FuzzParseMarker: arbitrary bytes never panic; errors wrap ErrBadMarker.
func FuzzParseMarker(f *testing.F) {
	b, _ := BuildMarker(1, 0, true, 0, 0)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseMarker(b); err != nil && !errors.Is(err, ErrBadMarker) {
			t.Fatalf("error %v does not wrap ErrBadMarker", err)
		}
	})
}

// TestTxnsSnapshotRoundTrip: a decoded snapshot equals the table, and
// every flipped byte or truncation is refused.
func TestTxnsSnapshotRoundTrip(t *testing.T) {
	tx := NewTxns()
	tx.Begin(record.Header{BaseOffset: 3, ProducerID: 9, Attributes: 0x10, NumRecords: 1})
	tx.Begin(record.Header{BaseOffset: 5, ProducerID: 4, Attributes: 0x10, NumRecords: 1})
	tx.End(9, 7, false)
	tx.Begin(record.Header{BaseOffset: 8, ProducerID: 2, Attributes: 0x10, NumRecords: 1})
	b := tx.Encode(10)
	got, off, err := DecodeTxns(b)
	if err != nil || off != 10 || !bytes.Equal(got.Encode(10), b) || got.FirstUnstable() != 5 || len(got.Aborted()) != 1 {
		t.Fatalf("decode: %v offset %d", err, off)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x20
		if _, _, err := DecodeTxns(c); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for n := range len(b) {
		if _, _, err := DecodeTxns(b[:n]); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
}

// FuzzDecodeTxns: arbitrary bytes never panic; what decodes re-encodes
// to the same bytes.
func FuzzDecodeTxns(f *testing.F) {
	tx := NewTxns()
	tx.Begin(record.Header{BaseOffset: 1, ProducerID: 1, Attributes: 0x10, NumRecords: 1})
	tx.Begin(record.Header{BaseOffset: 2, ProducerID: 3, Attributes: 0x10, NumRecords: 1})
	tx.End(3, 4, false)
	f.Add(tx.Encode(6))
	f.Add(NewTxns().Encode(0))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, off, err := DecodeTxns(b)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("error not wrapping ErrBadSnapshot: %v", err)
			}
			return
		}
		if !bytes.Equal(got.Encode(off), b) {
			t.Fatal("re-encoding differs")
		}
	})
}

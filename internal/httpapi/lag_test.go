package httpapi

import (
	"testing"
	"time"
)

func TestLagHistory(t *testing.T) {
	h := newLagHistory()
	t0 := time.UnixMilli(1_000_000)
	h.record("unviewed", 5, t0, false) // the sampler only records watched groups
	if got := h.samples("unviewed"); len(got) != 0 {
		t.Fatalf("unwatched group recorded: %v", got)
	}
	h.record("g", 10, t0, true)
	h.record("g", 11, t0.Add(500*time.Millisecond), false) // within a second: replaces
	h.record("g", 12, t0.Add(2*time.Second), false)
	got := h.samples("g")
	if len(got) != 2 || got[0] != (LagSample{At: t0.Add(500 * time.Millisecond).UnixMilli(), Lag: 11}) || got[1].Lag != 12 {
		t.Fatalf("samples %v", got)
	}
	for i := range lagKeep + 10 {
		h.record("g", int64(i), t0.Add(time.Duration(3+i)*time.Second), false)
	}
	if got := h.samples("g"); len(got) != lagKeep || got[len(got)-1].Lag != lagKeep+9 {
		t.Fatalf("%d samples kept (last %v), want %d", len(got), got[len(got)-1], lagKeep)
	}
	if w := h.watched(t0.Add(-time.Minute)); len(w) != 1 || w[0] != "g" {
		t.Fatalf("watched %v", w)
	}
	if w := h.watched(t0.Add(time.Minute)); len(w) != 0 || len(h.samples("g")) != 0 {
		t.Fatalf("a group not viewed since the cutoff is still watched: %v", w)
	}
}

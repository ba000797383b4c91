package replica

import "testing"

// TestOnChange checks the change hook fetch sessions use: it is called on an
// append and on a high watermark move (a follower's fetch), after the change
// is visible, and no more once cancelled.
func TestOnChange(t *testing.T) {
	p := testPartition(t, 1)
	all := []int32{1, 2}
	p.applyMetadata(meta(1, 1, 1, all, all), 1, t0)
	calls, seenHW := 0, int64(-1)
	cancel := p.OnChange(func() { calls++; seenHW = p.hw.Load() })
	appendN(t, p, 3)
	if calls == 0 {
		t.Fatal("no call on an append")
	}
	before := calls
	p.UpdateFollower(2, 3, t0)
	if calls == before || seenHW != 3 {
		t.Fatalf("HW move: %d calls (before %d), HW seen %d, want 3", calls, before, seenHW)
	}
	cancel()
	before = calls
	appendN(t, p, 1)
	if calls != before {
		t.Fatalf("%d calls after cancel", calls-before)
	}
}

package verify

import (
	"testing"
	"time"
)

func TestGapMeter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	g := newGapMeter(t0, []int32{0, 1, 2})
	// In time order. Partition 0 has an outage of 2.5s from 1.0s.
	g.ack(0, at(0.1))
	g.ack(0, at(0.2))
	g.ack(1, at(0.5))
	g.faultStarted(at(0.9))
	g.ack(0, at(1.0)) // during the fault
	g.ack(1, at(2.0)) // during the fault
	g.faultEnded(at(3.0))
	g.ack(1, at(3.2)) // after
	g.ack(0, at(3.5))
	g.ack(0, at(3.6))
	// Partition 2 never acknowledged and still has records in flight.
	r := g.result(at(10), []bool{false, false, true})
	want := []PartitionGap{{0, 2.5, 1.0}, {1, 1.5, 0.5}, {2, 10, 0}}
	for i, w := range want {
		got := r.Partitions[i]
		if got.Partition != w.Partition || !near(got.GapSeconds, w.GapSeconds) || !near(got.AtSeconds, w.AtSeconds) {
			t.Errorf("partition %d: got %+v, want %+v", i, got, w)
		}
	}
	if !near(r.MaxAckGapSeconds, 10) {
		t.Errorf("max gap %v, want 10", r.MaxAckGapSeconds)
	}
	// Acks at 1.0 (p0) and 2.0 (p1) came during the fault; 3.5, 3.6 (p0) and 3.2 (p1) after.
	if r.AckedDuringFault != 2 || r.AckedAfterFault != 3 {
		t.Errorf("during/after = %d/%d, want 2/3", r.AckedDuringFault, r.AckedAfterFault)
	}
	if !near(r.FaultStartSeconds, 0.9) || !near(r.FaultEndSeconds, 3.0) {
		t.Errorf("fault window %v-%v, want 0.9-3.0", r.FaultStartSeconds, r.FaultEndSeconds)
	}
}

func TestGapMeterTrailingGapAfterLastAck(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := newGapMeter(t0, []int32{5})
	g.ack(0, t0.Add(time.Second))
	g.ack(0, t0.Add(2*time.Second))
	// The partition stopped acknowledging at 2s and still had records when
	// the producer gave up at 30s: a 28s outage, not a 1s gap.
	if r := g.result(t0.Add(30*time.Second), []bool{true}); !near(r.MaxAckGapSeconds, 28) || !near(r.Partitions[0].AtSeconds, 2) {
		t.Errorf("got %+v, want a 28s gap at 2s", r)
	}
	// Without records in flight the tail is not a gap.
	g = newGapMeter(t0, []int32{5})
	g.ack(0, t0.Add(time.Second))
	if r := g.result(t0.Add(30*time.Second), []bool{false}); r.MaxAckGapSeconds != 0 {
		t.Errorf("got %+v, want no gap", r)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

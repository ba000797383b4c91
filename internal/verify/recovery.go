package verify

import (
	"slices"
	"time"
)

// Recovery is how long the cluster stopped acknowledging writes: per
// partition, the longest gap between two consecutive acknowledgements of
// its records (the time-to-recover of a fault that hit that partition's
// leader), and how many acknowledgements came during and after the fault.
//
// A partition that still had records in flight when the producer gave up
// counts the time from its last acknowledgement (or from the start, if it
// had none) to then as a gap too, so a partition that never recovers shows
// its whole outage instead of a small number.
type Recovery struct {
	// MaxAckGapSeconds is the largest of Partitions' gaps.
	MaxAckGapSeconds float64 `json:"max_ack_gap_seconds"`
	// Partitions holds one entry per partition, in partition order.
	Partitions []PartitionGap `json:"partitions"`
	// FaultStartSeconds and FaultEndSeconds are when the fault started and
	// returned, from the start of the produce phase (0 without a fault).
	FaultStartSeconds float64 `json:"fault_start_seconds,omitempty"`
	FaultEndSeconds   float64 `json:"fault_end_seconds,omitempty"`
	// AckedDuringFault counts acknowledgements that arrived while the fault
	// ran; AckedAfterFault those that arrived after it returned. Without
	// a fault both are 0.
	AckedDuringFault int64 `json:"acked_during_fault"`
	AckedAfterFault  int64 `json:"acked_after_fault"`
}

// PartitionGap is one partition's longest gap between acknowledgements.
type PartitionGap struct {
	Partition int32 `json:"partition"`
	// GapSeconds is the gap's length; AtSeconds when it began (the last
	// acknowledgement before it), from the start of the produce phase.
	GapSeconds float64 `json:"gap_seconds"`
	AtSeconds  float64 `json:"at_seconds"`
}

// gapMeter measures Recovery as acknowledgements arrive. It is not safe for
// concurrent use (the tracker's mutex guards it).
//
// Invariant: for every partition, maxGap is the longest interval between
// consecutive calls of ack seen so far.
type gapMeter struct {
	start      time.Time
	partitions []int32
	last       []time.Time // per partition index: the last ack (zero: none yet)
	maxGap     []time.Duration
	gapAt      []time.Time

	faultStart, faultEnd time.Time // zero until the fault starts / returns
	during, after        int64
}

func newGapMeter(start time.Time, partitions []int32) *gapMeter {
	n := len(partitions)
	return &gapMeter{start: start, partitions: partitions, last: make([]time.Time, n),
		maxGap: make([]time.Duration, n), gapAt: make([]time.Time, n)}
}

// faultStarted and faultEnded record when the fault started and returned.
func (g *gapMeter) faultStarted(now time.Time) { g.faultStart = now }
func (g *gapMeter) faultEnded(now time.Time)   { g.faultEnd = now }

// ack records an acknowledgement of a record of partition index p at now.
func (g *gapMeter) ack(p int, now time.Time) {
	if !g.last[p].IsZero() {
		g.gap(p, g.last[p], now)
	}
	g.last[p] = now
	switch {
	case g.faultStart.IsZero() || now.Before(g.faultStart):
	case g.faultEnd.IsZero():
		g.during++
	default:
		g.after++
	}
}

func (g *gapMeter) gap(p int, from, to time.Time) {
	if d := to.Sub(from); d > g.maxGap[p] {
		g.maxGap[p], g.gapAt[p] = d, from
	}
}

// result returns the measure at end (when the producer gave up);
// pending[p] tells whether partition index p still had records without an
// outcome then.
func (g *gapMeter) result(end time.Time, pending []bool) Recovery {
	var r Recovery
	secs := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return t.Sub(g.start).Seconds()
	}
	for i, p := range g.partitions {
		if pending[i] {
			from := g.last[i]
			if from.IsZero() {
				from = g.start
			}
			g.gap(i, from, end)
		}
		pg := PartitionGap{Partition: p, GapSeconds: g.maxGap[i].Seconds(), AtSeconds: secs(g.gapAt[i])}
		r.Partitions = append(r.Partitions, pg)
		r.MaxAckGapSeconds = max(r.MaxAckGapSeconds, pg.GapSeconds)
	}
	r.FaultStartSeconds, r.FaultEndSeconds = secs(g.faultStart), secs(g.faultEnd)
	r.AckedDuringFault, r.AckedAfterFault = g.during, g.after
	return r
}

// Median returns the median of xs (the mean of the middle two for an even
// count; 0 for none). It does not modify xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

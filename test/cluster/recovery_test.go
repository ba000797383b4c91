package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"strand/internal/verify"
)

// logRecovery logs a verify run's time-to-recover figure: the longest gap
// between acknowledgements per partition and the acknowledgements during
// and after the fault.
func logRecovery(t testing.TB, fault string, rep verify.Report) {
	t.Helper()
	var parts []string
	for _, pg := range rep.Recovery.Partitions {
		parts = append(parts, fmt.Sprintf("p%d %.2fs at %.1fs", pg.Partition, pg.GapSeconds, pg.AtSeconds))
	}
	t.Logf("recovery (%s): longest gap between acks %.2fs [%s]; acked during/after the fault (%.1fs-%.1fs): %d/%d",
		fault, rep.Recovery.MaxAckGapSeconds, strings.Join(parts, ", "),
		rep.Recovery.FaultStartSeconds, rep.Recovery.FaultEndSeconds, rep.Recovery.AckedDuringFault, rep.Recovery.AckedAfterFault)
}

// recoveryFigures collects the longest gap between acknowledgements of
// each round by fault kind and summarizes them as median and maximum.
type recoveryFigures struct {
	order []string
	gaps  map[string][]float64
}

func (f *recoveryFigures) add(fault string, rep verify.Report) {
	if f.gaps == nil {
		f.gaps = map[string][]float64{}
	}
	if _, ok := f.gaps[fault]; !ok {
		f.order = append(f.order, fault)
	}
	f.gaps[fault] = append(f.gaps[fault], rep.Recovery.MaxAckGapSeconds)
}

// log writes one line per fault kind: rounds, median and max recovery.
func (f *recoveryFigures) log(t testing.TB) {
	t.Helper()
	for _, k := range f.order {
		g := f.gaps[k]
		t.Logf("time to recover (%s): median %.2fs, max %.2fs over %d rounds", k, verify.Median(g), slices.Max(g), len(g))
	}
}

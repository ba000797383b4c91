package bench

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"strand/internal/security"
)

// Security is how the benchmark's clients reach the brokers (see
// security.ClientSecurity).
type Security = security.ClientSecurity

// HandshakeReport is the connection-setup phase: new connections opened
// and authenticated one after another (TCP, then TLS and SASL as the
// protocol has them), each closed at once.
type HandshakeReport struct {
	Protocol    string  `json:"protocol"`
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"per_sec"`
}

// measureHandshakes opens n connections to addr in sequence with s (after
// one uncounted).
func measureHandshakes(ctx context.Context, s Security, addr string, n int) (*HandshakeReport, error) {
	d, err := s.Dialer()
	if err != nil {
		return nil, err
	}
	// One connection first, not counted: a broker that just started (or a
	// cold keystore cache) would otherwise weigh on the rate.
	c, err := d(ctx, addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	c.Close()
	start := time.Now()
	for i := range n {
		c, err := d(ctx, addr, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("handshake %d with %s: %w", i+1, addr, err)
		}
		c.Close()
	}
	secs := time.Since(start).Seconds()
	return &HandshakeReport{Protocol: s.String(), Connections: n, Seconds: secs, PerSec: float64(n) / secs}, nil
}

// Comparison is a run of the secured brokers against a baseline (the same
// cluster's PLAINTEXT listener): rounds alternate which side goes first;
// the ratios are secured / baseline, their medians the result.
type Comparison struct {
	Secured            string           `json:"secured"`
	Rounds             []Round          `json:"rounds"`
	ProduceRatioMedian float64          `json:"produce_ratio_median"`
	ConsumeRatioMedian float64          `json:"consume_ratio_median"`
	HandshakeRatio     float64          `json:"handshake_ratio,omitempty"` // secured / baseline connections a second
	SecuredHandshakes  *HandshakeReport `json:"secured_handshakes,omitempty"`
	BaselineHandshakes *HandshakeReport `json:"baseline_handshakes,omitempty"`
}

// Round is one secured run and one baseline run.
type Round struct {
	Secured      Report  `json:"secured"`
	Baseline     Report  `json:"baseline"`
	ProduceRatio float64 `json:"produce_ratio"`
	ConsumeRatio float64 `json:"consume_ratio"`
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Compare runs rounds × (o against its brokers with o.Security, and o
// against baseline over PLAINTEXT), alternating the order, each run on a
// topic of its own (o.Topic-<round>-secured / -baseline). The disk phase
// runs at most once (in the first run).
func Compare(ctx context.Context, o Options, baseline []string, rounds int) (Comparison, error) {
	cmp := Comparison{Secured: o.Security.String()}
	if rounds < 1 {
		return cmp, fmt.Errorf("rounds %d: want at least 1", rounds)
	}
	b := o
	b.Brokers, b.Security, b.Handshakes = baseline, Security{}, o.Handshakes
	var produceRatios, consumeRatios []float64
	for r := range rounds {
		sec, base := o, b
		sec.Topic, base.Topic = fmt.Sprintf("%s-%d-secured", o.Topic, r), fmt.Sprintf("%s-%d-baseline", o.Topic, r)
		sec.SkipFsync, base.SkipFsync = o.SkipFsync || r > 0, true
		if r > 0 {
			sec.Handshakes, base.Handshakes = 0, 0
		}
		var rd Round
		var err error
		if r%2 == 0 {
			if rd.Secured, err = Run(ctx, sec); err == nil {
				rd.Baseline, err = Run(ctx, base)
			}
		} else {
			if rd.Baseline, err = Run(ctx, base); err == nil {
				rd.Secured, err = Run(ctx, sec)
			}
		}
		if err != nil {
			return cmp, fmt.Errorf("round %d: %w", r+1, err)
		}
		if r == 0 {
			cmp.SecuredHandshakes, cmp.BaselineHandshakes = rd.Secured.Handshakes, rd.Baseline.Handshakes
			if h, bh := cmp.SecuredHandshakes, cmp.BaselineHandshakes; h != nil && bh != nil && bh.PerSec > 0 {
				cmp.HandshakeRatio = h.PerSec / bh.PerSec
			}
		}
		rd.ProduceRatio = rd.Secured.Produce.MBps / rd.Baseline.Produce.MBps
		rd.ConsumeRatio = rd.Secured.Consume.MBps / rd.Baseline.Consume.MBps
		produceRatios, consumeRatios = append(produceRatios, rd.ProduceRatio), append(consumeRatios, rd.ConsumeRatio)
		cmp.Rounds = append(cmp.Rounds, rd)
	}
	cmp.ProduceRatioMedian, cmp.ConsumeRatioMedian = median(produceRatios), median(consumeRatios)
	return cmp, nil
}

// WriteText writes c as the human-readable comparison.
func (c Comparison) WriteText(w interface{ Write([]byte) (int, error) }) error {
	var b strings.Builder
	fmt.Fprintf(&b, "compare: %s vs PLAINTEXT, %d rounds (alternating order)\n", c.Secured, len(c.Rounds))
	for i, r := range c.Rounds {
		fmt.Fprintf(&b, "round %d: produce %.1f vs %.1f MB/s (%.2f), consume %.1f vs %.1f MB/s (%.2f)\n", i+1,
			r.Secured.Produce.MBps, r.Baseline.Produce.MBps, r.ProduceRatio, r.Secured.Consume.MBps, r.Baseline.Consume.MBps, r.ConsumeRatio)
	}
	if h, bh := c.SecuredHandshakes, c.BaselineHandshakes; h != nil && bh != nil {
		fmt.Fprintf(&b, "handshakes: %.0f/s vs %.0f/s plain TCP (%.3f)\n", h.PerSec, bh.PerSec, c.HandshakeRatio)
	}
	fmt.Fprintf(&b, "median ratio secured/PLAINTEXT: produce %.2f, consume %.2f\n", c.ProduceRatioMedian, c.ConsumeRatioMedian)
	_, err := w.Write([]byte(b.String()))
	return err
}

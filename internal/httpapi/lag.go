package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Lag history for the console's chart: the total lag of every group viewed
// in the last lagWatch is sampled every lagEvery and kept for lagKeep, in
// memory on the broker serving the console.
const (
	lagEvery = 10 * time.Second
	lagWatch = 10 * time.Minute
	lagKeep  = 360 // samples: an hour at lagEvery
)

// LagSample is a group's total lag at a time (Unix ms).
type LagSample struct {
	At  int64 `json:"at"`
	Lag int64 `json:"lag"`
}

// lagHistory holds the samples of the groups being watched.
type lagHistory struct {
	mu     sync.Mutex // guards groups
	groups map[string]*groupLag
}

type groupLag struct {
	samples []LagSample // oldest first, at most lagKeep
	viewed  time.Time   // last time the group was looked at
}

func newLagHistory() *lagHistory { return &lagHistory{groups: map[string]*groupLag{}} }

// record adds a sample for group and marks it viewed when view is set.
// Samples closer than a second to the last one replace it.
func (h *lagHistory) record(group string, lag int64, now time.Time, view bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	if g == nil {
		if !view {
			return
		}
		g = &groupLag{}
		h.groups[group] = g
	}
	if view {
		g.viewed = now
	}
	s := LagSample{At: now.UnixMilli(), Lag: lag}
	if n := len(g.samples); n > 0 && s.At-g.samples[n-1].At < 1000 {
		g.samples[n-1] = s
		return
	}
	g.samples = append(g.samples, s)
	if len(g.samples) > lagKeep {
		g.samples = append(g.samples[:0], g.samples[len(g.samples)-lagKeep:]...)
	}
}

// samples returns a copy of group's samples.
func (h *lagHistory) samples(group string) []LagSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []LagSample{}
	if g := h.groups[group]; g != nil {
		out = append(out, g.samples...)
	}
	return out
}

// watched returns the groups viewed since cutoff and forgets the others.
func (h *lagHistory) watched(cutoff time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for name, g := range h.groups {
		if g.viewed.Before(cutoff) {
			delete(h.groups, name)
			continue
		}
		out = append(out, name)
	}
	return out
}

// sample runs until ctx ends, recording the lag of watched groups every
// lagEvery.
func (c *console) sample(ctx context.Context) {
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		names := c.lag.watched(time.Now().Add(-lagWatch))
		if len(names) == 0 {
			continue
		}
		adm, err := c.admin()
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, requestTimeout)
		lags, err := adm.Lag(sctx, names...)
		cancel()
		if err != nil {
			c.logger.Debug("console lag sample", "err", err)
			continue
		}
		now := time.Now()
		for name, l := range lags {
			if l.Error() == nil {
				c.lag.record(name, totalLag(l.Lag), now, false)
			}
		}
	}
}

func totalLag(l kadm.GroupLag) int64 {
	var n int64
	for _, ps := range l {
		for _, p := range ps {
			if p.Lag > 0 {
				n += p.Lag
			}
		}
	}
	return n
}

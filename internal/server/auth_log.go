package server

import (
	"sync"
	"time"
)

// logLimiter lets at most perSecond authentication-failure log lines
// through per second, so a client hammering a listener with bad
// credentials cannot flood the log; the suppressed count is reported with
// the next line let through.
type logLimiter struct {
	perSecond int

	mu         sync.Mutex // guards the fields below
	window     time.Time
	n          int
	suppressed int
}

// allow reports whether to log now, and how many lines were dropped since
// the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= l.perSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	dropped := l.suppressed
	l.suppressed = 0
	return true, dropped
}

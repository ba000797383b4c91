package security

import (
	"sync"
	"time"

	"strand/internal/metadata"
)

// Client quotas (KIP-546), enforced per broker as Kafka does: each quota
// key has a rate sensor per quota entity, measured over quota.window.num
// samples of quota.window.size.seconds; a request that takes the measured
// rate above the quota is answered with a throttle time
// (rate - quota) / quota * window, and the connection is muted for it.

// The quota keys.
const (
	ProducerByteRate       = "producer_byte_rate"
	ConsumerByteRate       = "consumer_byte_rate"
	RequestPercentage      = "request_percentage"
	ControllerMutationRate = "controller_mutation_rate"
)

// QuotaConfig configures Quotas.
type QuotaConfig struct {
	Samples       int // quota.window.num
	SampleSeconds int // quota.window.size.seconds
}

// Quotas holds this broker's rate sensors. Methods are safe for
// concurrent use.
type Quotas struct {
	samples int
	window  time.Duration

	mu        sync.Mutex // guards sensors, lastPurge
	sensors   map[sensorKey]*sensor
	lastPurge time.Time
}

type sensorKey struct{ key, user, client string }

// NewQuotas returns empty sensors.
func NewQuotas(cfg QuotaConfig) *Quotas {
	return &Quotas{samples: max(cfg.Samples, 1), window: time.Duration(max(cfg.SampleSeconds, 1)) * time.Second,
		sensors: map[sensorKey]*sensor{}}
}

// Limit is the quota that applies to one client for one key: the value,
// and the user and client id its sensor is kept under (clients sharing a
// quota entity share its sensor: a quota set for a user's default client
// ids is measured per client id, one set for the user alone across them).
type Limit struct {
	Value        float64
	User, Client string
}

// LookupQuota finds the quota of key for a user and client id by Kafka's
// precedence: user and client id, user and default client id, user, default
// user and client id, default user and default client id, default user,
// client id, default client id. ok is false when none applies.
func LookupQuota(quotas []metadata.ClientQuota, key, user, clientID string) (lim Limit, ok bool) {
	best := 0
	for _, q := range quotas {
		v, has := q.Values[key]
		if !has {
			continue
		}
		r := quotaRank(q.Entity, user, clientID)
		if r == 0 || best != 0 && r >= best {
			continue
		}
		best, lim = r, Limit{Value: v}
		if q.Entity.User.Set {
			lim.User = user
		}
		if q.Entity.ClientID.Set {
			lim.Client = clientID
		}
	}
	return lim, best != 0
}

// quotaRank is e's precedence for (user, clientID): 1 is the most
// specific, 0 means e does not apply.
func quotaRank(e metadata.QuotaEntity, user, clientID string) int {
	match := func(p metadata.QuotaPart, name string) int { // 0 exact, 1 default, 2 absent, -1 no
		switch {
		case !p.Set:
			return 2
		case p.Default:
			return 1
		case p.Name == name:
			return 0
		}
		return -1
	}
	u, c := match(e.User, user), match(e.ClientID, clientID)
	switch {
	case u < 0 || c < 0 || u == 2 && c == 2:
		return 0
	case u == 2:
		return 7 + c // client id alone: 7 exact, 8 default
	}
	return 1 + 3*u + c // 1..6
}

// Record adds v to the sensor of (key, lim) at now and returns how long the
// client is to be throttled: zero while the measured rate is within
// lim.Value.
func (q *Quotas) Record(key string, lim Limit, v float64, now time.Time) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.purgeLocked(now)
	k := sensorKey{key, lim.User, lim.Client}
	s := q.sensors[k]
	if s == nil {
		s = &sensor{}
		q.sensors[k] = s
	}
	s.record(q, v, now)
	rate, elapsed := s.measure(q, now)
	if rate <= lim.Value || lim.Value <= 0 {
		return 0
	}
	d := time.Duration((rate - lim.Value) / lim.Value * float64(elapsed))
	return min(d, time.Duration(q.samples)*q.window)
}

// WindowAmount is the most a client may use in the shortest span a rate is
// measured over (samples-1 windows, at least one): Kafka caps a consumer's
// fetch at this many bytes, so that one response never exceeds its quota
// by itself (it would be throttled, sent empty, and fetched again forever).
func (q *Quotas) WindowAmount(lim Limit) float64 {
	return lim.Value * (time.Duration(max(q.samples-1, 1)) * q.window).Seconds()
}

// Unrecord takes v back from the sensor (a throttled fetch whose records
// are not sent).
func (q *Quotas) Unrecord(key string, lim Limit, v float64, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s := q.sensors[sensorKey{key, lim.User, lim.Client}]; s != nil {
		s.record(q, -v, now)
	}
}

// purgeLocked drops sensors idle for a whole measurement span, once a
// minute. Caller holds mu.
func (q *Quotas) purgeLocked(now time.Time) {
	if now.Sub(q.lastPurge) < time.Minute {
		return
	}
	q.lastPurge = now
	span := time.Duration(q.samples) * q.window
	for k, s := range q.sensors {
		if len(s.samples) == 0 || now.Sub(s.samples[len(s.samples)-1].start) > span {
			delete(q.sensors, k)
		}
	}
}

// sensor is a windowed rate: samples of one window each, oldest first.
type sensor struct {
	samples []sample
}

type sample struct {
	start time.Time
	value float64
}

func (s *sensor) record(q *Quotas, v float64, now time.Time) {
	if n := len(s.samples); n == 0 || now.Sub(s.samples[n-1].start) >= q.window {
		s.samples = append(s.samples, sample{start: now})
	}
	s.samples[len(s.samples)-1].value += v
	// Keep the newest q.samples samples.
	if extra := len(s.samples) - q.samples; extra > 0 {
		s.samples = append(s.samples[:0], s.samples[extra:]...)
	}
}

// measure returns the rate per second and the span it was measured over:
// since the oldest sample, but at least samples-1 windows, as Kafka's Rate
// does, so that a burst at the start does not read as a huge rate.
func (s *sensor) measure(q *Quotas, now time.Time) (float64, time.Duration) {
	span := time.Duration(q.samples) * q.window
	total := 0.0
	oldest := now
	for _, sm := range s.samples {
		if now.Sub(sm.start) >= span {
			continue
		}
		total += sm.value
		if sm.start.Before(oldest) {
			oldest = sm.start
		}
	}
	elapsed := now.Sub(oldest)
	if least := time.Duration(q.samples-1) * q.window; elapsed < least {
		elapsed = least
	}
	if elapsed <= 0 {
		elapsed = q.window
	}
	return total / elapsed.Seconds(), elapsed
}

// Package metrics holds the broker's Prometheus metrics: counters and
// histograms that the request path updates through one-line hooks
// (Produced, Fetched, RequestDone, Fsync, ISRChange), and a collector that
// reads the rest of the broker's state (partitions, controller, connections,
// consumer group lag) only when Prometheus scrapes, from a Source.
//
// Names follow Kafka's JMX metrics where one exists, with a strand_ prefix;
// the mapping is documented in README.md ("Metrics"). The hook collectors are
// process-wide (one broker per process); a Registry adds the process's Go
// runtime metrics and one Source's state.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Latency buckets from 100µs to ~26s, for requests and fsyncs.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 19)

var (
	messagesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strand_topic_messages_in_total",
		Help: "Records appended by producers, per topic (Kafka BrokerTopicMetrics MessagesInPerSec,topic=T).",
	}, []string{"topic"})
	bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strand_topic_bytes_in_total",
		Help: "Record batch bytes appended by producers, per topic (Kafka BrokerTopicMetrics BytesInPerSec,topic=T).",
	}, []string{"topic"})
	bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strand_topic_bytes_out_total",
		Help: "Record batch bytes sent to consumers, per topic (Kafka BrokerTopicMetrics BytesOutPerSec,topic=T).",
	}, []string{"topic"})
	replicationBytesOut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strand_replication_bytes_out_total",
		Help: "Record batch bytes sent to follower replicas (Kafka BrokerTopicMetrics ReplicationBytesOutPerSec).",
	})
	allMessagesIn = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strand_messages_in_total",
		Help: "Records appended by producers, all topics (Kafka BrokerTopicMetrics MessagesInPerSec).",
	})
	allBytesIn = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strand_bytes_in_total",
		Help: "Record batch bytes appended by producers, all topics (Kafka BrokerTopicMetrics BytesInPerSec).",
	})
	allBytesOut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strand_bytes_out_total",
		Help: "Record batch bytes sent to consumers, all topics (Kafka BrokerTopicMetrics BytesOutPerSec).",
	})
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strand_requests_total",
		Help: "Requests answered, per API (Kafka RequestMetrics RequestsPerSec,request=API).",
	}, []string{"api"})
	requestErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strand_request_errors_total",
		Help: "Error codes in responses, per API and Kafka error name (Kafka RequestMetrics ErrorsPerSec,request=API,error=E).",
	}, []string{"api", "error"})
	totalTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "strand_request_total_time_seconds",
		Help:    "Time from reading a request to its response being ready, per API (Kafka RequestMetrics TotalTimeMs).",
		Buckets: latencyBuckets,
	}, []string{"api"})
	localTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "strand_request_local_time_seconds",
		Help:    "Time the request's ordered part took on the connection's reader (Kafka RequestMetrics LocalTimeMs).",
		Buckets: latencyBuckets,
	}, []string{"api"})
	queueTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "strand_request_response_queue_time_seconds",
		Help:    "Time a request waited for the responses before it on its connection (Kafka RequestMetrics ResponseQueueTimeMs).",
		Buckets: latencyBuckets,
	}, []string{"api"})
	remoteTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "strand_request_remote_time_seconds",
		Help:    "Time waiting for fsync, replication (acks=all) or long-poll data (Kafka RequestMetrics RemoteTimeMs).",
		Buckets: latencyBuckets,
	}, []string{"api"})
	fsyncTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "strand_log_flush_time_seconds",
		Help:    "Time of one log flush (fsync of the segments holding unflushed data) (Kafka LogFlushStats LogFlushRateAndTimeMs).",
		Buckets: latencyBuckets,
	})
	isrShrinks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strand_isr_shrinks_total",
		Help: "ISR shrinks this broker made as leader (Kafka ReplicaManager IsrShrinksPerSec).",
	})
	isrExpands = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strand_isr_expands_total",
		Help: "ISR expands this broker made as leader (Kafka ReplicaManager IsrExpandsPerSec).",
	})
	purgatory = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "strand_purgatory_size",
		Help: "Requests waiting: acks=all produces for replication, fetches in flight (mostly long polls waiting for data) (Kafka DelayedOperationPurgatory PurgatorySize).",
	}, []string{"operation"})
	throttleTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "strand_request_throttle_time_seconds",
		Help:    "Throttle time given to clients over a quota, per API (Kafka RequestMetrics ThrottleTimeMs, and the Produce/Fetch/Request throttle-time sensors).",
		Buckets: latencyBuckets,
	}, []string{"api"})
	metadataCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "strand_metadata_commit_time_seconds",
		Help:    "Time the active controller waited for a metadata record to be committed by the quorum (Kafka QuorumController EventQueueProcessingTimeMs, roughly).",
		Buckets: latencyBuckets,
	})
)

// Operations counted by strand_purgatory_size.
const (
	ProducePurgatory = "produce"
	FetchPurgatory   = "fetch"
)

// Waiting counts a request of operation op as waiting until the returned
// function is called.
func Waiting(op string) (done func()) {
	g := purgatory.WithLabelValues(op)
	g.Inc()
	return g.Dec
}

// MetadataCommitSince records how long a metadata commit that started at
// start took.
func MetadataCommitSince(start time.Time) { metadataCommit.Observe(time.Since(start).Seconds()) }

func init() {
	// Report both purgatories from the start, at 0.
	purgatory.WithLabelValues(ProducePurgatory)
	purgatory.WithLabelValues(FetchPurgatory)
}

// hooks are the collectors updated by the hooks below.
var hooks = []prometheus.Collector{
	messagesIn, bytesIn, bytesOut, replicationBytesOut, allMessagesIn, allBytesIn, allBytesOut,
	requests, requestErrors, totalTime, localTime, queueTime, remoteTime,
	fsyncTime, isrShrinks, isrExpands, purgatory, metadataCommit, throttleTime,
}

// Throttled records the throttle time a quota gave a request of API key.
func Throttled(key int16, d time.Duration) {
	throttleTime.WithLabelValues(apiName(key)).Observe(d.Seconds())
}

// Produced counts records and bytes a producer appended to topic.
func Produced(topic string, records, bytes int) {
	messagesIn.WithLabelValues(topic).Add(float64(records))
	bytesIn.WithLabelValues(topic).Add(float64(bytes))
	allMessagesIn.Add(float64(records))
	allBytesIn.Add(float64(bytes))
}

// Fetched counts record bytes served from topic; replica reports a
// follower's fetch, which counts as replication traffic only.
func Fetched(topic string, bytes int, replica bool) {
	if bytes == 0 {
		return
	}
	if replica {
		replicationBytesOut.Add(float64(bytes))
		return
	}
	bytesOut.WithLabelValues(topic).Add(float64(bytes))
	allBytesOut.Add(float64(bytes))
}

// FsyncSince records the duration of one log flush that started at start.
func FsyncSince(start time.Time) { fsyncTime.Observe(time.Since(start).Seconds()) }

// ISRChange counts a committed ISR change from before to after members.
func ISRChange(before, after int) {
	switch {
	case after < before:
		isrShrinks.Inc()
	case after > before:
		isrExpands.Inc()
	}
}

// Timing is when a request's phases ended; see Request.
type Timing struct {
	Read    time.Time // the request was read
	Local   time.Time // its ordered part returned (the continuation was queued)
	Started time.Time // its continuation started (earlier responses were done)
	Done    time.Time // its response was ready
}

// RequestDone records one answered request of API key: its count, its
// phases' durations and the error codes in resp (nil for no response).
func RequestDone(key int16, t Timing, resp kmsg.Response) {
	api := apiName(key)
	requests.WithLabelValues(api).Inc()
	totalTime.WithLabelValues(api).Observe(t.Done.Sub(t.Read).Seconds())
	localTime.WithLabelValues(api).Observe(t.Local.Sub(t.Read).Seconds())
	queueTime.WithLabelValues(api).Observe(t.Started.Sub(t.Local).Seconds())
	remoteTime.WithLabelValues(api).Observe(t.Done.Sub(t.Started).Seconds())
	if resp == nil {
		return
	}
	forEachErrorCode(resp, func(code int16) {
		requestErrors.WithLabelValues(api, errorName(code)).Inc()
	})
}

func apiName(key int16) string {
	if n := kmsg.NameForKey(key); n != "" {
		return n
	}
	return strconv.Itoa(int(key))
}

func errorName(code int16) string {
	if err := kerr.ErrorForCode(code); err != nil {
		if ke, ok := err.(*kerr.Error); ok {
			return ke.Message
		}
		return err.Error()
	}
	return strconv.Itoa(int(code))
}

// NewRegistry returns a registry with the hook metrics, the Go runtime and
// process metrics, and src's state collected at scrape time (src may be nil).
func NewRegistry(src Source) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(hooks...)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		r.MustRegister(&stateCollector{src: src})
	}
	return r
}

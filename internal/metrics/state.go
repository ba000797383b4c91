package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Source gives the broker's state at scrape time. Snapshot must not block on
// anything slower than a lock held briefly.
type Source interface {
	Snapshot() Snapshot
}

// Snapshot is the broker state the scrape-time collector reports.
type Snapshot struct {
	// ActiveController is true on the active controller (Raft leader).
	ActiveController bool
	// MetadataOffset is the metadata log index of the image this node applied.
	MetadataOffset uint64
	// MetadataCommitted is the metadata log's commit index as this node
	// knows it, MetadataApplied the last index it applied (Raft's own
	// entries included); the difference is its lag.
	MetadataCommitted, MetadataApplied uint64
	// Connections counts open client connections per listener name.
	Connections map[string]int
	// Partitions are the partitions this broker hosts.
	Partitions []Partition
	// Counts over the partitions this broker leads (Kafka ReplicaManager).
	Leaders, UnderReplicated, UnderMinISR, AtMinISR int
	// Offline counts partitions without a leader in the whole cluster; only
	// the active controller reports it, as Kafka's controller does.
	Offline int
	// Brokers counts registered brokers; FencedBrokers the fenced ones
	// (reported by the active controller only).
	Brokers, FencedBrokers int
	// GroupLag is the lag of the groups this broker coordinates.
	GroupLag []GroupLag
}

// Partition is one hosted partition's log.
type Partition struct {
	Topic          string
	Partition      int32
	Size           int64 // bytes in all segments
	LogStartOffset int64
	LogEndOffset   int64
	HighWatermark  int64
	Leader         bool
}

// GroupLag is a group's committed offset on one partition and its lag behind
// the partition's high watermark.
type GroupLag struct {
	Group     string
	Topic     string
	Partition int32
	Committed int64
	Lag       int64
}

// stateCollector turns a Source's Snapshot into metrics at every scrape.
type stateCollector struct{ src Source }

var (
	descActive          = prometheus.NewDesc("strand_active_controller", "1 on the active controller (Kafka KafkaController ActiveControllerCount).", nil, nil)
	descMetaOffset      = prometheus.NewDesc("strand_metadata_offset", "Metadata log offset of the image this node applied (Kafka broker-metadata-metrics last-applied-record-offset).", nil, nil)
	descMetaLag         = prometheus.NewDesc("strand_metadata_lag", "Metadata log entries committed but not yet applied by this node (Kafka raft-metrics commit-latency / lag, roughly).", nil, nil)
	descConns           = prometheus.NewDesc("strand_connections", "Open client connections per listener (Kafka socket-server-metrics connection-count).", []string{"listener"}, nil)
	descLeaders         = prometheus.NewDesc("strand_leader_partitions", "Partitions this broker leads (Kafka ReplicaManager LeaderCount).", nil, nil)
	descPartitions      = prometheus.NewDesc("strand_partitions", "Partitions this broker hosts (Kafka ReplicaManager PartitionCount).", nil, nil)
	descUnderReplicated = prometheus.NewDesc("strand_under_replicated_partitions", "Partitions this broker leads whose ISR is smaller than the replica set (Kafka ReplicaManager UnderReplicatedPartitions).", nil, nil)
	descUnderMinISR     = prometheus.NewDesc("strand_under_min_isr_partitions", "Partitions this broker leads whose ISR is smaller than min.insync.replicas (Kafka ReplicaManager UnderMinIsrPartitionCount).", nil, nil)
	descAtMinISR        = prometheus.NewDesc("strand_at_min_isr_partitions", "Partitions this broker leads whose ISR size equals min.insync.replicas (Kafka ReplicaManager AtMinIsrPartitionCount).", nil, nil)
	descOffline         = prometheus.NewDesc("strand_offline_partitions", "Partitions without a leader; reported by the active controller, 0 elsewhere (Kafka KafkaController OfflinePartitionsCount).", nil, nil)
	descBrokers         = prometheus.NewDesc("strand_registered_brokers", "Registered brokers, by state; reported by the active controller (Kafka KafkaController ActiveBrokerCount / FencedBrokerCount).", []string{"state"}, nil)
	descLogSize         = prometheus.NewDesc("strand_log_size_bytes", "Bytes of a hosted partition's log (Kafka Log Size).", []string{"topic", "partition"}, nil)
	descLogStart        = prometheus.NewDesc("strand_log_start_offset", "A hosted partition's log start offset (Kafka Log LogStartOffset).", []string{"topic", "partition"}, nil)
	descLogEnd          = prometheus.NewDesc("strand_log_end_offset", "A hosted partition's log end offset (Kafka Log LogEndOffset).", []string{"topic", "partition"}, nil)
	descHW              = prometheus.NewDesc("strand_high_watermark", "A hosted partition's high watermark.", []string{"topic", "partition"}, nil)
	descGroupOffset     = prometheus.NewDesc("strand_group_committed_offset", "A consumer group's committed offset, from its coordinator.", []string{"group", "topic", "partition"}, nil)
	descGroupLag        = prometheus.NewDesc("strand_group_lag", "High watermark minus a consumer group's committed offset, from its coordinator (kafka-consumer-groups LAG).", []string{"group", "topic", "partition"}, nil)
)

// Describe sends nothing: the collector is unchecked, its label sets depend
// on the state at scrape time.
func (c *stateCollector) Describe(chan<- *prometheus.Desc) {}

// Collect reads a Snapshot and sends its metrics.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	active := 0.0
	if s.ActiveController {
		active = 1
	}
	gauge(descActive, active)
	gauge(descMetaOffset, float64(s.MetadataOffset))
	if s.MetadataCommitted >= s.MetadataApplied {
		gauge(descMetaLag, float64(s.MetadataCommitted-s.MetadataApplied))
	}
	for l, n := range s.Connections {
		gauge(descConns, float64(n), l)
	}
	gauge(descLeaders, float64(s.Leaders))
	gauge(descPartitions, float64(len(s.Partitions)))
	gauge(descUnderReplicated, float64(s.UnderReplicated))
	gauge(descUnderMinISR, float64(s.UnderMinISR))
	gauge(descAtMinISR, float64(s.AtMinISR))
	gauge(descOffline, float64(s.Offline))
	gauge(descBrokers, float64(s.Brokers-s.FencedBrokers), "active")
	gauge(descBrokers, float64(s.FencedBrokers), "fenced")
	for _, p := range s.Partitions {
		part := strconv.Itoa(int(p.Partition))
		gauge(descLogSize, float64(p.Size), p.Topic, part)
		gauge(descLogStart, float64(p.LogStartOffset), p.Topic, part)
		gauge(descLogEnd, float64(p.LogEndOffset), p.Topic, part)
		gauge(descHW, float64(p.HighWatermark), p.Topic, part)
	}
	for _, g := range s.GroupLag {
		part := strconv.Itoa(int(g.Partition))
		gauge(descGroupOffset, float64(g.Committed), g.Group, g.Topic, part)
		gauge(descGroupLag, float64(g.Lag), g.Group, g.Topic, part)
	}
}

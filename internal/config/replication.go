package config

// replicationDefs are the properties of partition data replication (the
// follower fetchers and ISR maintenance, internal/replica), with Kafka's
// names and defaults. They join brokerDefs at init.
var replicationDefs = []*Def{
	{Name: "replica.lag.time.max.ms", Type: TypeLong, Default: "30000", Doc: "A follower that has not caught up with the leader's log end for this long is removed from the ISR.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "replica.fetch.max.bytes", Type: TypeInt, Default: "1048576", Doc: "Bytes a follower asks for per partition in one fetch (at least one batch is returned).", ReadOnly: true, Valid: atLeast(0)},
	{Name: "replica.fetch.response.max.bytes", Type: TypeInt, Default: "10485760", Doc: "Bytes a follower asks for in one fetch response (at least one batch is returned).", ReadOnly: true, Valid: atLeast(0)},
	{Name: "replica.fetch.wait.max.ms", Type: TypeInt, Default: "500", Doc: "How long the leader holds a follower's fetch when no data is available.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "replica.high.watermark.checkpoint.interval.ms", Type: TypeLong, Default: "5000", Doc: "How often the high watermarks are saved to replication-offset-checkpoint (and producer-state snapshots of partitions that rolled a segment are written).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "num.recovery.threads.per.data.dir", Type: TypeInt, Default: "2", Doc: "Partitions opened (and recovered) at once at start-up.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "replica.flush.before.fetch", Type: TypeBoolean, Default: "true", Doc: "A follower applies the topic's flush policy (fsync, by default) to what it appended before its next fetch reports its position, so acks=all records are on disk on every ISR member. false (Kafka's behaviour): it reports them once written to its page cache and fsyncs them in the background (each partition at most every 500 ms), so an acks=all answer means on disk on the leader and in memory on the followers (durability by replication; see README).", ReadOnly: true},
	{Name: "replica.fetch.backoff.ms", Type: TypeInt, Default: "1000", Doc: "How long a follower waits after a fetch error before fetching the partition again.", ReadOnly: true, Valid: atLeast(0)},
}

func init() {
	for _, d := range replicationDefs {
		brokerDefs[d.Name] = d
	}
}

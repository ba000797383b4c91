package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// brokerDefs are the broker properties the broker understands. Defaults are
// Kafka's, except where the comment says otherwise.
var brokerDefs = index([]*Def{
	{Name: "node.id", Type: TypeInt, Default: "1", Doc: "This node's id.", ReadOnly: true, Valid: atLeast(0)},
	// Kafka's default is PLAINTEXT://:9092; a zero-config node binds loopback only.
	{Name: "listeners", Type: TypeList, Default: "PLAINTEXT://127.0.0.1:9092", Doc: "Addresses to listen on.", ReadOnly: true},
	{Name: "advertised.listeners", Type: TypeList, Default: "", Doc: "Addresses given to clients; defaults to listeners.", ReadOnly: true},
	// Kafka's default is /tmp/kafka-logs; ours keeps data next to where the node runs.
	{Name: "log.dirs", Type: TypeString, Default: "./data", Doc: "Comma-separated directories holding the partition logs (JBOD: new partitions go to the one holding the fewest); the first also holds the node state.", ReadOnly: true, Valid: validLogDirs},
	{Name: "num.partitions", Type: TypeInt, Default: "1", Doc: "Default partition count of new topics.", Valid: atLeast(1)},
	{Name: "default.replication.factor", Type: TypeInt, Default: "1", Doc: "Default replication factor of new topics.", Valid: atLeast(1)},
	{Name: "auto.create.topics.enable", Type: TypeBoolean, Default: "true", Doc: "Create a topic on first metadata request or produce."},
	{Name: "delete.topic.enable", Type: TypeBoolean, Default: "true", Doc: "Allow DeleteTopics."},
	{Name: "socket.request.max.bytes", Type: TypeInt, Default: "104857600", Doc: "Largest request accepted.", Valid: atLeast(1024)},
	{Name: "message.max.bytes", Type: TypeInt, Default: "1048588", Doc: "Largest record batch accepted.", Valid: atLeast(0)},
	{Name: "fetch.verify.crc", Type: TypeBoolean, Default: "true", Doc: "CRC-check record batches read from disk before a Fetch sends them; false sends them unread with sendfile, as Kafka does (not a Kafka property)."},
	// Not a Kafka property: Kafka has no ceiling on decompression. 64 MiB is
	// also the most the broker decodes whole (record.MaxDecompressedSize).
	{Name: "message.max.decompressed.bytes", Type: TypeInt, Default: "67108864", Doc: "Largest decompressed size of a produced batch's records; larger batches are refused with INVALID_RECORD.", Valid: func(v string) error {
		if err := atLeast(1024)(v); err != nil {
			return err
		}
		if n, _ := strconv.ParseInt(v, 10, 64); n > 64<<20 {
			return fmt.Errorf("%s is above the maximum %d", v, 64<<20)
		}
		return nil
	}},
	{Name: "log.segment.bytes", Type: TypeInt, Default: "1073741824", Doc: "Segment size before a roll.", Valid: atLeast(14)},
	{Name: "log.roll.ms", Type: TypeLong, Default: "604800000", Doc: "Segment age before a roll.", Valid: atLeast(1)},
	{Name: "log.retention.ms", Type: TypeLong, Default: "604800000", Doc: "Time to keep a segment; -1 keeps forever.", Valid: atLeast(-1)},
	{Name: "log.retention.bytes", Type: TypeLong, Default: "-1", Doc: "Size a partition may keep; -1 is unlimited.", Valid: atLeast(-1)},
	{Name: "log.retention.check.interval.ms", Type: TypeLong, Default: "300000", Doc: "How often retention runs.", Valid: atLeast(1)},
	{Name: "log.index.interval.bytes", Type: TypeInt, Default: "4096", Doc: "Log bytes between offset index entries.", Valid: atLeast(0)},
	{Name: "log.index.size.max.bytes", Type: TypeInt, Default: "10485760", Doc: "Offset index size before a roll.", Valid: atLeast(4)},
	// Kafka's default is Long.MAX_VALUE (rely on replication). Ours fsyncs every
	// acknowledged append, sharing fsyncs among concurrent producers.
	{Name: "log.flush.interval.messages", Type: TypeLong, Default: "1", Doc: "Messages written before an fsync; 1 fsyncs before every acknowledgement.", Valid: atLeast(1)},
	{Name: "log.flush.interval.ms", Type: TypeLong, Default: maxLong, Doc: "Longest time unflushed data may wait.", Valid: atLeast(0)},
	{Name: "log.flush.syncfs.min.partitions", Type: TypeInt, Default: "4", Doc: "When at least this many partitions of one log dir wait for an fsync at once (one produce request or follower fetch), one syncfs(2) of the log dir's filesystem replaces their fsyncs; 0 disables. Linux >= 5.8 only. It also writes back other dirty data of that filesystem.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "log.cleanup.policy", Type: TypeList, Default: "delete", Doc: "delete and/or compact.", Valid: listOf("delete", "compact")},
	{Name: "log.message.timestamp.type", Type: TypeString, Default: "CreateTime", Doc: "CreateTime or LogAppendTime.", Valid: oneOf("CreateTime", "LogAppendTime")},
	{Name: "compression.type", Type: TypeString, Default: "producer", Doc: "Only producer (keep the producer's codec) is supported.", Valid: oneOf("producer")},
	{Name: "min.insync.replicas", Type: TypeInt, Default: "1", Doc: "Replicas that must have an acks=all write.", Valid: atLeast(1)},
	{Name: "unclean.leader.election.enable", Type: TypeBoolean, Default: "false", Doc: "Elect a leader outside the ISR."},
	{Name: "log.cleaner.delete.retention.ms", Type: TypeLong, Default: "86400000", Doc: "How long tombstones are kept.", Valid: atLeast(0)},
	{Name: "log.segment.delete.delay.ms", Type: TypeLong, Default: "60000", Doc: "Delay before a deleted segment's file is removed.", Valid: atLeast(0)},
	{Name: "log.cleaner.min.compaction.lag.ms", Type: TypeLong, Default: "0", Valid: atLeast(0)},
	{Name: "log.cleaner.max.compaction.lag.ms", Type: TypeLong, Default: maxLong, Valid: atLeast(1)},
	{Name: "log.cleaner.min.cleanable.ratio", Type: TypeDouble, Default: "0.5", Doc: "Least dirty/total ratio of a log before it is compacted.", Valid: fraction},
	{Name: "log.cleaner.enable", Type: TypeBoolean, Default: "true", Doc: "Run the log cleaner (compaction of cleanup.policy=compact topics).", ReadOnly: true},
	{Name: "log.cleaner.backoff.ms", Type: TypeLong, Default: "15000", Doc: "How often the log cleaner looks for logs to compact.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "log.cleaner.dedupe.buffer.size", Type: TypeLong, Default: "134217728", Doc: "Memory for the cleaner's key map (24 bytes a key, as Kafka counts it).", ReadOnly: true, Valid: atLeast(0)},
	{Name: "log.preallocate", Type: TypeBoolean, Default: "false"},
	{Name: "log.message.timestamp.before.max.ms", Type: TypeLong, Default: maxLong, Valid: atLeast(0)},
	{Name: "log.message.timestamp.after.max.ms", Type: TypeLong, Default: maxLong, Valid: atLeast(0)},
	{Name: "transactional.id.expiration.ms", Type: TypeInt, Default: "604800000", Valid: atLeast(1)},
	{Name: "producer.id.expiration.ms", Type: TypeInt, Default: "86400000", Valid: atLeast(1)},
	// Transaction coordinator and the __transaction_state topic.
	{Name: "transaction.state.log.num.partitions", Type: TypeInt, Default: "50", Doc: "Partitions of __transaction_state (used when it is created).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "transaction.state.log.replication.factor", Type: TypeShort, Default: "3", Doc: "Replication factor of __transaction_state (capped at the broker count when it is created).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "transaction.state.log.min.isr", Type: TypeInt, Default: "2", Doc: "min.insync.replicas of __transaction_state (capped at its replication factor).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "transaction.state.log.segment.bytes", Type: TypeInt, Default: "104857600", Doc: "Segment size of __transaction_state.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "transaction.max.timeout.ms", Type: TypeInt, Default: "900000", Doc: "Largest transaction.timeout.ms a producer may ask for (INVALID_TRANSACTION_TIMEOUT above it).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", Type: TypeInt, Default: "10000", Doc: "How often the coordinator aborts transactions past their timeout.", ReadOnly: true, Valid: atLeast(1)},
	// Group coordinator and the __consumer_offsets topic.
	{Name: "offsets.topic.num.partitions", Type: TypeInt, Default: "50", Doc: "Partitions of __consumer_offsets (used when it is created).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "offsets.topic.replication.factor", Type: TypeShort, Default: "3", Doc: "Replication factor of __consumer_offsets (capped at the broker count when it is created).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "offsets.topic.segment.bytes", Type: TypeInt, Default: "104857600", Doc: "Segment size of __consumer_offsets.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "offsets.retention.minutes", Type: TypeInt, Default: "10080", Doc: "How long the committed offsets of a group are kept after it became empty (or, for standalone consumers, after the last commit).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "offsets.retention.check.interval.ms", Type: TypeLong, Default: "600000", Doc: "How often expired offsets are removed.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "offsets.commit.timeout.ms", Type: TypeInt, Default: "5000", Doc: "How long an offset commit or group write waits for the replicas before failing.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "offset.metadata.max.bytes", Type: TypeInt, Default: "4096", Doc: "Largest metadata string accepted with an offset commit.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "group.initial.rebalance.delay.ms", Type: TypeInt, Default: "3000", Doc: "How long the first rebalance of an empty group waits for more members to join.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "group.min.session.timeout.ms", Type: TypeInt, Default: "6000", Doc: "Smallest session timeout a member may ask for.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "group.max.session.timeout.ms", Type: TypeInt, Default: "1800000", Doc: "Largest session timeout a member may ask for.", ReadOnly: true, Valid: atLeast(0)},
	// Not Kafka properties: strand's HTTP listener for /metrics, /healthz, /readyz, /ui (internal/httpapi).
	{Name: "http.listener", Type: TypeString, Default: "127.0.0.1:9644", Doc: "host:port of the HTTP listener (metrics, health, console); empty disables it.", ReadOnly: true},
	{Name: "http.pprof.enable", Type: TypeBoolean, Default: "false", Doc: "Serve Go's profiler under /debug/pprof on the HTTP listener.", ReadOnly: true},
	// Reading from followers (KIP-392): the leader names a replica in the consumer's rack.
	{Name: "replica.selector.class", Type: TypeString, Default: "", Doc: "How the leader picks a preferred read replica for consumers (KIP-392): org.apache.kafka.common.replica.RackAwareReplicaSelector picks an in-sync replica in the consumer's client.rack; empty: consumers read from the leader.", ReadOnly: true, Valid: oneOf("", RackAwareReplicaSelector)},
	{Name: "group.max.size", Type: TypeInt, Default: "2147483647", Doc: "Most members a consumer group may have.", ReadOnly: true, Valid: atLeast(1)},
	// Authorization and client quotas (internal/security).
	{Name: "authorizer.class.name", Type: TypeString, Default: "", Doc: "The authorizer: org.apache.kafka.metadata.authorizer.StandardAuthorizer enables ACLs; empty authorizes everything.", ReadOnly: true, Valid: oneOf("", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "strand.StandardAuthorizer")},
	{Name: "super.users", Type: TypeString, Default: "", Doc: "Semicolon-separated principals (User:admin;User:broker) allowed everything.", ReadOnly: true},
	{Name: "allow.everyone.if.no.acl.found", Type: TypeBoolean, Default: "false", Doc: "Allow an action on a resource that has no ACL at all.", ReadOnly: true},
	{Name: "quota.window.num", Type: TypeInt, Default: "11", Doc: "Samples kept to measure client quota rates.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "quota.window.size.seconds", Type: TypeInt, Default: "1", Doc: "Length of one client quota sample.", ReadOnly: true, Valid: atLeast(1)},
})

// aliases map older or alternative Kafka property names to the one used here,
// with a function converting the value.
var aliases = map[string]struct {
	to   string
	conv func(string) (string, error)
}{
	"broker.id":                       {"node.id", same},
	"log.dir":                         {"log.dirs", same},
	"log.retention.hours":             {"log.retention.ms", scale(int64(time.Hour / time.Millisecond))},
	"log.retention.minutes":           {"log.retention.ms", scale(int64(time.Minute / time.Millisecond))},
	"log.roll.hours":                  {"log.roll.ms", scale(int64(time.Hour / time.Millisecond))},
	"log.flush.scheduler.interval.ms": {"log.flush.interval.ms", same},
}

func same(v string) (string, error) { return v, nil }

func scale(by int64) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%q is not an integer", v)
		}
		if n < 0 {
			return "-1", nil
		}
		return strconv.FormatInt(n*by, 10), nil
	}
}

// Broker is the validated configuration of one node. It is immutable after Load.
type Broker struct {
	values  map[string]string // every brokerDefs name -> effective value
	set     map[string]bool   // names given explicitly (file or flags)
	dynamic map[string]bool   // names whose value is a cluster-wide dynamic config
	// perListener holds listener.name.<listener>.<property> overrides,
	// keyed "<listener lower-case>.<property>" (see ListenerString).
	perListener map[string]string
}

// Load builds a Broker from an optional .properties file (path may be "") and
// overrides applied on top, in order. Unknown names are an error, so that a
// typo is not silently ignored.
func Load(path string, overrides [][2]string) (*Broker, error) {
	var pairs [][2]string
	if path != "" {
		props, err := ParseProperties(path)
		if err != nil {
			return nil, err
		}
		for _, k := range sortedKeys(props) {
			pairs = append(pairs, [2]string{k, props[k]})
		}
	}
	pairs = append(pairs, overrides...)
	b := &Broker{values: map[string]string{}, set: map[string]bool{}}
	for name, d := range brokerDefs {
		b.values[name] = d.Default
	}
	for _, kv := range pairs {
		name, v := kv[0], kv[1]
		if a, ok := aliases[name]; ok {
			conv, err := a.conv(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			name, v = a.to, conv
		}
		if strings.HasPrefix(name, listenerPrefix) {
			if err := b.setListenerProp(name, v); err != nil {
				return nil, err
			}
			continue
		}
		d, ok := brokerDefs[name]
		if !ok {
			return nil, fmt.Errorf("unknown broker property %q", name)
		}
		if err := d.Validate(v); err != nil {
			return nil, err
		}
		b.values[name], b.set[name] = v, true
	}
	if _, err := b.Listeners(); err != nil {
		return nil, err
	}
	if _, err := b.AdvertisedListeners(); err != nil {
		return nil, err
	}
	if b.set["inter.broker.listener.name"] && b.set["security.inter.broker.protocol"] {
		return nil, fmt.Errorf("only one of inter.broker.listener.name and security.inter.broker.protocol may be set")
	}
	return b, nil
}

func sortedKeys(m map[string]string) []string {
	defs := make(map[string]*Def, len(m))
	for k := range m {
		defs[k] = nil
	}
	return sortedNames(defs)
}

// String returns the value of a property ("" for an unknown name).
func (b *Broker) String(name string) string { return b.values[name] }

// Int returns an integer property.
func (b *Broker) Int(name string) int64 { return parseInt(b.values[name]) }

// Bool returns a boolean property.
func (b *Broker) Bool(name string) bool { return b.values[name] == "true" }

// IsSet reports whether the property was given explicitly.
func (b *Broker) IsSet(name string) bool { return b.set[name] }

// NodeID is node.id.
func (b *Broker) NodeID() int32 { return int32(b.Int("node.id")) }

// DataDir is the first directory of log.dirs: it holds the node state
// (metadata log, lock, checkpoints) and partition logs.
func (b *Broker) DataDir() string { return b.LogDirs()[0] }

// LogDirs are the directories of log.dirs, in order (at least one).
func (b *Broker) LogDirs() []string { return splitLogDirs(b.values["log.dirs"]) }

func splitLogDirs(v string) []string {
	var out []string
	for _, d := range strings.Split(v, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return []string{v}
	}
	return out
}

// validLogDirs accepts a comma-separated list of distinct, non-empty
// directories.
func validLogDirs(v string) error {
	seen := map[string]bool{}
	for _, d := range strings.Split(v, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			return fmt.Errorf("%q has an empty directory", v)
		}
		c := filepath.Clean(d)
		if seen[c] {
			return fmt.Errorf("%q names %s twice", v, d)
		}
		seen[c] = true
	}
	return nil
}

// Listener is one entry of listeners / advertised.listeners.
type Listener struct {
	Name string // e.g. PLAINTEXT
	// Protocol is the listener's security protocol (listener.security.protocol.map).
	Protocol string
	Host     string
	Port     int32
}

// Addr is host:port.
func (l Listener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(int(l.Port))) }

// Listeners parses listeners, without the controller listeners.
func (b *Broker) Listeners() ([]Listener, error) {
	ls, err := b.allListeners()
	return b.clientListeners(ls), err
}

// allListeners parses listeners including controller listeners.
func (b *Broker) allListeners() ([]Listener, error) {
	ls, err := parseListeners("listeners", b.values["listeners"], b.listenerAllowed)
	for i := range ls {
		ls[i].Protocol, _ = b.ListenerProtocol(ls[i].Name)
	}
	return ls, err
}

// clientListeners drops controller listeners.
func (b *Broker) clientListeners(ls []Listener) []Listener {
	var out []Listener
	for _, l := range ls {
		if !b.isControllerListener(l.Name) {
			out = append(out, l)
		}
	}
	return out
}

// AdvertisedListeners parses advertised.listeners, defaulting to listeners;
// an empty host (listen on all interfaces) is advertised as 127.0.0.1.
func (b *Broker) AdvertisedListeners() ([]Listener, error) {
	v := b.values["advertised.listeners"]
	if v == "" {
		v = b.values["listeners"]
	}
	ls, err := parseListeners("advertised.listeners", v, b.listenerAllowed)
	ls = b.clientListeners(ls)
	for i := range ls {
		ls[i].Protocol, _ = b.ListenerProtocol(ls[i].Name)
		if ls[i].Host == "" || ls[i].Host == "0.0.0.0" {
			ls[i].Host = "127.0.0.1"
		}
	}
	return ls, err
}

func parseListeners(prop, v string, allowed func(string) bool) ([]Listener, error) {
	var out []Listener
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		// Listener names may hold '_' (SASL_SSL), which URL schemes may not.
		scheme, hostPort, ok := strings.Cut(e, "://")
		if !ok || scheme == "" || hostPort == "" || strings.ContainsAny(scheme, ":/") {
			return nil, fmt.Errorf("%s: %q is not NAME://host:port", prop, e)
		}
		name := strings.ToUpper(scheme)
		if !allowed(name) {
			return nil, fmt.Errorf("%s: listener %s: not in listener.security.protocol.map (add %s:PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)", prop, name, name)
		}
		host, port, err := net.SplitHostPort(hostPort)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", prop, e, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: bad port", prop, e)
		}
		out = append(out, Listener{Name: name, Host: host, Port: int32(p)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no listener given", prop)
	}
	return out, nil
}

// BrokerDefs returns the broker property definitions in name order (for
// DescribeConfigs and documentation).
func BrokerDefs() []*Def {
	out := make([]*Def, 0, len(brokerDefs))
	for _, n := range sortedNames(brokerDefs) {
		out = append(out, brokerDefs[n])
	}
	return out
}

// RackAwareReplicaSelector is Kafka's rack-aware replica.selector.class.
const RackAwareReplicaSelector = "org.apache.kafka.common.replica.RackAwareReplicaSelector"

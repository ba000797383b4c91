package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// controllerDefs are the KRaft-style properties of the metadata quorum and of
// broker liveness. They join brokerDefs at init.
var controllerDefs = []*Def{
	{Name: "process.roles", Type: TypeList, Default: "broker,controller", Doc: "broker, controller, or both. A single node is both.", ReadOnly: true, Valid: listOf("broker", "controller")},
	// Kafka requires this; empty here means a single-node quorum of this node
	// alone, kept in process (no controller port).
	{Name: "controller.quorum.voters", Type: TypeList, Default: "", Doc: "The controller quorum as id@host:port,...; empty runs a single-node quorum in process.", ReadOnly: true},
	{Name: "controller.listener.names", Type: TypeList, Default: "CONTROLLER", Doc: "Listener names (in listeners) that carry controller traffic.", ReadOnly: true},
	{Name: "controller.quorum.election.timeout.ms", Type: TypeInt, Default: "1000", Doc: "Time without a leader before a controller stands for election.", ReadOnly: true, Valid: atLeast(10)},
	{Name: "broker.session.timeout.ms", Type: TypeInt, Default: "3000", Doc: "A broker without a heartbeat for this long is fenced (and, as leader, steps down). Kafka: 9000; see README.", ReadOnly: true, Valid: atLeast(10)},
	{Name: "broker.heartbeat.interval.ms", Type: TypeInt, Default: "500", Doc: "Interval between broker heartbeats to the controller. Kafka: 2000; see README.", ReadOnly: true, Valid: atLeast(1)},
	{Name: "inter.broker.listener.name", Type: TypeString, Default: "PLAINTEXT", Doc: "Listener followers fetch from; any name other than PLAINTEXT is a second plaintext listener, advertised separately (e.g. on a cluster network).", ReadOnly: true},
	{Name: "broker.rack", Type: TypeString, Default: "", Doc: "Rack of this broker, for rack-aware replica placement.", ReadOnly: true},
	{Name: "metadata.log.max.snapshot.interval.records", Type: TypeInt, Default: "8192", Doc: "Metadata log entries between snapshots (hashicorp/raft SnapshotThreshold).", ReadOnly: true, Valid: atLeast(1)},
	{Name: "controlled.shutdown.enable", Type: TypeBoolean, Default: "true", Doc: "Move leadership away before stopping.", ReadOnly: true},
	{Name: "auto.leader.rebalance.enable", Type: TypeBoolean, Default: "true", Doc: "Periodically move leadership back to preferred replicas."},
	{Name: "leader.imbalance.check.interval.seconds", Type: TypeLong, Default: "300", Doc: "Interval of the preferred-leader check.", Valid: atLeast(1)},
}

func init() {
	for _, d := range controllerDefs {
		brokerDefs[d.Name] = d
	}
}

// Voter is one entry of controller.quorum.voters.
type Voter struct {
	ID   int32
	Addr string // host:port of its controller listener
}

// Roles reports whether this node runs a broker and/or a controller.
func (b *Broker) Roles() (broker, controller bool) {
	for _, r := range strings.Split(b.values["process.roles"], ",") {
		switch strings.TrimSpace(r) {
		case "broker":
			broker = true
		case "controller":
			controller = true
		}
	}
	return broker, controller
}

// Voters parses controller.quorum.voters. An empty list means a single-node
// quorum of this node.
func (b *Broker) Voters() ([]Voter, error) {
	var out []Voter
	seen := map[int32]bool{}
	for _, e := range strings.Split(b.values["controller.quorum.voters"], ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		id, addr, ok := strings.Cut(e, "@")
		n, err := strconv.ParseInt(id, 10, 32)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("controller.quorum.voters: %q is not id@host:port", e)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("controller.quorum.voters: %q: %w", e, err)
		}
		if seen[int32(n)] {
			return nil, fmt.Errorf("controller.quorum.voters: id %d listed twice", n)
		}
		seen[int32(n)] = true
		out = append(out, Voter{ID: int32(n), Addr: addr})
	}
	return out, nil
}

// ControllerListener returns this node's controller listener address: the
// first listener whose name is in controller.listener.names, else its own
// entry in controller.quorum.voters, else "".
func (b *Broker) ControllerListener() (string, error) {
	names := map[string]bool{}
	for _, n := range strings.Split(b.values["controller.listener.names"], ",") {
		names[strings.ToUpper(strings.TrimSpace(n))] = true
	}
	ls, err := b.allListeners()
	if err != nil {
		return "", err
	}
	for _, l := range ls {
		if names[l.Name] {
			return l.Addr(), nil
		}
	}
	voters, err := b.Voters()
	if err != nil {
		return "", err
	}
	for _, v := range voters {
		if v.ID == b.NodeID() {
			return v.Addr, nil
		}
	}
	return "", nil
}

// listenerAllowed reports whether a listener name may appear in listeners.
func (b *Broker) listenerAllowed(name string) bool {
	_, ok := b.ListenerProtocol(name)
	return ok
}

// Endpoints returns this broker's advertised client endpoint (the first
// advertised listener that is not the inter-broker one, unless that is the
// only one) and its inter-broker endpoint.
func (b *Broker) Endpoints() (client, interBroker Listener, err error) {
	adv, err := b.AdvertisedListeners()
	if err != nil {
		return client, interBroker, err
	}
	inter := b.InterBrokerListenerName()
	var haveClient, haveInter bool
	for _, l := range adv {
		switch {
		case l.Name == inter && !haveInter:
			interBroker, haveInter = l, true
		case l.Name != inter && !haveClient:
			client, haveClient = l, true
		}
	}
	switch {
	case !haveClient && !haveInter:
		return client, interBroker, fmt.Errorf("no advertised listener for clients")
	case !haveClient:
		client = interBroker
	case !haveInter:
		interBroker = client
	}
	return client, interBroker, nil
}

// isControllerListener reports whether name is one of controller.listener.names.
func (b *Broker) isControllerListener(name string) bool {
	for _, n := range strings.Split(b.values["controller.listener.names"], ",") {
		if strings.EqualFold(strings.TrimSpace(n), name) {
			return true
		}
	}
	return false
}

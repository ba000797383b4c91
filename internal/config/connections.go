package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// connectionDefs bound client connections and the memory of requests being
// read (internal/server's connection loop). Names and defaults are Kafka's
// except where a comment says otherwise. They join brokerDefs at init.
var connectionDefs = []*Def{
	{Name: "max.connections", Type: TypeInt, Default: "2147483647", Doc: "Most client connections the broker keeps open at once, over all listeners; a connection beyond it is closed at once.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "max.connections.per.ip", Type: TypeInt, Default: "2147483647", Doc: "Most connections from one IP address; a connection beyond it is closed at once.", ReadOnly: true, Valid: atLeast(0)},
	{Name: "max.connections.per.ip.overrides", Type: TypeString, Default: "", Doc: "Per-IP or per-hostname exceptions to max.connections.per.ip, as host:n,host2:m.", ReadOnly: true, Valid: validOverrides},
	{Name: "connections.max.idle.ms", Type: TypeLong, Default: "600000", Doc: "A connection with no request in progress or pending for this long is closed.", ReadOnly: true, Valid: atLeast(1)},
	// Kafka's default is -1 (unlimited). Ours bounds the bytes of requests
	// being read across the broker at socket.request.max.bytes' default, so
	// that request memory is bounded whatever the number of connections
	// while a largest request still fits.
	{Name: "queued.max.request.bytes", Type: TypeLong, Default: "104857600", Doc: "Bytes of requests being read or handled across the broker, -1 for no bound; reading pauses while it is reached.", ReadOnly: true, Valid: atLeastOrMinusOne(1024)},
	// Not a Kafka property (Kafka has no bound on how long a request may take
	// to arrive). The default is the clients' request.timeout.ms: a client
	// has given up on a request by then anyway.
	{Name: "max.incremental.fetch.session.cache.slots", Type: TypeInt, Default: "1000", Doc: "Most fetch sessions (KIP-227) the broker keeps; the least recently used is evicted for a new one. 0 disables sessions (every fetch is a full one).", ReadOnly: true, Valid: atLeast(0)},
	{Name: "request.read.timeout.ms", Type: TypeLong, Default: "30000", Doc: "A request must arrive whole within this long of its first byte, or the connection is closed (stops clients that send a byte a second).", ReadOnly: true, Valid: atLeast(1)},
}

func init() {
	for _, d := range connectionDefs {
		brokerDefs[d.Name] = d
	}
}

func atLeastOrMinusOne(min int64) func(string) error {
	return func(v string) error {
		if n, _ := strconv.ParseInt(v, 10, 64); n == -1 {
			return nil
		}
		return atLeast(min)(v)
	}
}

func validOverrides(v string) error {
	_, err := parseOverrides(v, func(host string) ([]string, error) { return []string{host}, nil })
	return err
}

// ConnectionsPerIPOverrides parses max.connections.per.ip.overrides into a
// limit per address. Host names are resolved now (as Kafka does at start);
// every address of a name gets its limit.
func (b *Broker) ConnectionsPerIPOverrides() (map[netip.Addr]int, error) {
	return parseOverrides(b.values["max.connections.per.ip.overrides"], net.LookupHost)
}

func parseOverrides(v string, lookup func(string) ([]string, error)) (map[netip.Addr]int, error) {
	out := map[netip.Addr]int{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		i := strings.LastIndexByte(e, ':')
		if i <= 0 {
			return nil, fmt.Errorf("max.connections.per.ip.overrides: %q is not host:n", e)
		}
		host := strings.Trim(e[:i], "[]")
		n, err := strconv.Atoi(e[i+1:])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("max.connections.per.ip.overrides: %q: %q is not a connection count", e, e[i+1:])
		}
		addrs, err := lookup(host)
		if err != nil {
			return nil, fmt.Errorf("max.connections.per.ip.overrides: %q: %w", e, err)
		}
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				if a == host { // validation only: a name, resolved at start
					continue
				}
				return nil, fmt.Errorf("max.connections.per.ip.overrides: %q: %w", e, err)
			}
			out[ip.Unmap()] = n
		}
	}
	return out, nil
}

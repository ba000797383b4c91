package config

import "fmt"

// Cluster-wide dynamic configs: properties that are not ReadOnly may be set
// for the whole cluster at run time (Kafka's IncrementalAlterConfigs on the
// BROKER resource with an empty name, "cluster default"). They are kept in
// the replicated metadata and layered over each node's static configuration:
// static file/flags < dynamic cluster default, as Kafka orders them.

// ValidateDynamic checks that name may be set cluster-wide at run time and
// that value is valid for it.
func ValidateDynamic(name, value string) error {
	d, ok := brokerDefs[name]
	if !ok {
		return fmt.Errorf("unknown broker property %q", name)
	}
	if d.ReadOnly {
		return fmt.Errorf("broker property %q is read-only; set it in the config file or with --set", name)
	}
	return d.Validate(value)
}

// WithDynamic returns b with the cluster-wide dynamic values applied
// (invalid or read-only entries are ignored, as they were refused when set).
// b is returned unchanged when dyn is empty.
func (b *Broker) WithDynamic(dyn map[string]string) *Broker {
	if len(dyn) == 0 {
		return b
	}
	out := &Broker{values: make(map[string]string, len(b.values)), set: b.set, dynamic: map[string]bool{}, perListener: b.perListener}
	for k, v := range b.values {
		out.values[k] = v
	}
	for k, v := range dyn {
		if ValidateDynamic(k, v) == nil {
			out.values[k], out.dynamic[k] = v, true
		}
	}
	return out
}

// IsDynamic reports whether name's value comes from a cluster-wide dynamic config.
func (b *Broker) IsDynamic(name string) bool { return b.dynamic[name] }

// Source says where a broker property's value comes from.
func (b *Broker) Source(name string) Source {
	switch {
	case b.dynamic[name]:
		return SourceDynamicDefaultBroker
	case b.set[name]:
		return SourceStaticBroker
	}
	return SourceDefault
}

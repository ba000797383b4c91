// Package config holds broker and topic configuration under Kafka's own
// property names, with Kafka's defaults (deviations are documented on the
// definition), parsed from a .properties file and command-line overrides.
//
// Every property is declared once in a table (brokerDefs, topicDefs) with its
// type, default and validation; nothing else in the broker hard-codes a default.
package config

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Type is the value type of a property, as Kafka's DescribeConfigs reports it.
type Type int8

// Config value types, numbered as in the DescribeConfigs response (KIP-569).
const (
	TypeBoolean Type = 1
	TypeString  Type = 2
	TypeInt     Type = 3
	TypeShort   Type = 4
	TypeLong    Type = 5
	TypeDouble  Type = 6
	TypeList    Type = 7
)

// Def declares one property.
type Def struct {
	Name    string
	Type    Type
	Default string // "" with Nullable means no value
	Doc     string
	// Valid, when set, restricts the value beyond its type.
	Valid func(string) error
	// Broker is, for a topic property, the broker property whose value is the
	// topic's default (e.g. retention.ms -> log.retention.ms).
	Broker string
	// ReadOnly properties cannot change at run time.
	ReadOnly bool
	// Sensitive values are never returned by DescribeConfigs.
	Sensitive bool
}

// Validate checks that v is a legal value of the property.
func (d *Def) Validate(v string) error {
	switch d.Type {
	case TypeBoolean:
		if v != "true" && v != "false" {
			return fmt.Errorf("%s: %q is not a boolean", d.Name, v)
		}
	case TypeInt, TypeShort, TypeLong:
		bits := 64
		if d.Type == TypeInt {
			bits = 32
		} else if d.Type == TypeShort {
			bits = 16
		}
		if _, err := strconv.ParseInt(v, 10, bits); err != nil {
			return fmt.Errorf("%s: %q is not a %d-bit integer", d.Name, v, bits)
		}
	case TypeDouble:
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Errorf("%s: %q is not a number", d.Name, v)
		}
	}
	if d.Valid != nil {
		if err := d.Valid(v); err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
	}
	return nil
}

func atLeast(min int64) func(string) error {
	return func(v string) error {
		n, _ := strconv.ParseInt(v, 10, 64)
		if n < min {
			return fmt.Errorf("%s is below the minimum %d", v, min)
		}
		return nil
	}
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, ok := range vals {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(vals, ", "))
	}
}

// listOf validates a comma-separated list whose elements are each one of vals.
func listOf(vals ...string) func(string) error {
	one := oneOf(vals...)
	return func(v string) error {
		for _, e := range strings.Split(v, ",") {
			if err := one(strings.TrimSpace(e)); err != nil {
				return err
			}
		}
		return nil
	}
}

// ParseProperties reads a Java-style .properties file: key=value or key: value
// lines, '#' and '!' comments, surrounding blanks trimmed. Line continuations
// and escapes are not supported; a line without a separator is an error.
func ParseProperties(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	props := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: want key=value, got %q", path, n, line)
		}
		props[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return props, nil
}

// sortedNames returns the names of defs in order.
func sortedNames(defs map[string]*Def) []string {
	names := make([]string, 0, len(defs))
	for n := range defs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func index(defs []*Def) map[string]*Def {
	m := make(map[string]*Def, len(defs))
	for _, d := range defs {
		m[d.Name] = d
	}
	return m
}

func parseInt(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

var maxLong = strconv.FormatInt(math.MaxInt64, 10)

package security

import (
	"fmt"
	"strings"
	"unicode"
)

// JAAS is one login module entry of a Kafka sasl.jaas.config value:
//
//	org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="secret" user_alice="alice-secret";
type JAAS struct {
	Module  string            // login module class name
	Flag    string            // required, requisite, sufficient or optional
	Options map[string]string // key=value options, quotes removed
}

// ParseJAAS parses a sasl.jaas.config value: exactly one login module, its
// control flag, options key=value (value quoted with " or bare), and a
// closing ';'. Error messages never quote option values (they hold passwords).
func ParseJAAS(s string) (*JAAS, error) {
	p := &jaasParser{s: s}
	j := &JAAS{Options: map[string]string{}}
	j.Module = p.word()
	if j.Module == "" {
		return nil, fmt.Errorf("sasl.jaas.config: no login module")
	}
	j.Flag = p.word()
	switch j.Flag {
	case "required", "requisite", "sufficient", "optional":
	default:
		return nil, fmt.Errorf("sasl.jaas.config: login module %s: control flag must be required, requisite, sufficient or optional", j.Module)
	}
	for {
		p.skipSpace()
		if p.eof() {
			return nil, fmt.Errorf("sasl.jaas.config: missing ';' at the end")
		}
		if p.peek() == ';' {
			p.i++
			p.skipSpace()
			if !p.eof() {
				return nil, fmt.Errorf("sasl.jaas.config: only one login module is supported")
			}
			return j, nil
		}
		key := p.word()
		if key == "" {
			return nil, fmt.Errorf("sasl.jaas.config: option name expected at offset %d", p.i)
		}
		p.skipSpace()
		if p.eof() || p.peek() != '=' {
			return nil, fmt.Errorf("sasl.jaas.config: option %s: '=' expected", key)
		}
		p.i++
		p.skipSpace()
		val, err := p.value()
		if err != nil {
			return nil, fmt.Errorf("sasl.jaas.config: option %s: %w", key, err)
		}
		j.Options[key] = val
	}
}

type jaasParser struct {
	s string
	i int
}

func (p *jaasParser) eof() bool  { return p.i >= len(p.s) }
func (p *jaasParser) peek() byte { return p.s[p.i] }

func (p *jaasParser) skipSpace() {
	for !p.eof() && unicode.IsSpace(rune(p.peek())) {
		p.i++
	}
}

// word reads a bare token (module names, flags, keys, unquoted values).
func (p *jaasParser) word() string {
	p.skipSpace()
	start := p.i
	for !p.eof() {
		c := p.peek()
		if unicode.IsSpace(rune(c)) || c == '=' || c == ';' || c == '"' {
			break
		}
		p.i++
	}
	return p.s[start:p.i]
}

func (p *jaasParser) value() (string, error) {
	if p.eof() {
		return "", fmt.Errorf("value expected")
	}
	if p.peek() != '"' {
		v := p.word()
		if v == "" {
			return "", fmt.Errorf("value expected")
		}
		return v, nil
	}
	p.i++
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		p.i++
		switch c {
		case '\\':
			if p.eof() {
				return "", fmt.Errorf("unterminated quoted value")
			}
			b.WriteByte(p.peek())
			p.i++
		case '"':
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated quoted value")
}

// PlainUsers returns the user_<name>="<password>" entries of a
// PlainLoginModule configuration.
func (j *JAAS) PlainUsers() map[string]string {
	users := map[string]string{}
	for k, v := range j.Options {
		if name, ok := strings.CutPrefix(k, "user_"); ok && name != "" {
			users[name] = v
		}
	}
	return users
}

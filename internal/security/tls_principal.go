package security

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"strings"
)

// PrincipalMapper turns a client certificate's subject into a principal
// name with Kafka's ssl.principal.mapping.rules: a comma-separated list of
// RULE:pattern/replacement/[LU] (the first rule whose pattern matches the
// whole RFC 2253 subject wins; L/U lower/upper-case the result) and DEFAULT
// (the subject unchanged).
type PrincipalMapper struct {
	rules []mappingRule
}

type mappingRule struct {
	def   bool
	re    *regexp.Regexp
	repl  string
	lower bool
	upper bool
}

// ParsePrincipalMapping parses ssl.principal.mapping.rules ("" is DEFAULT).
func ParsePrincipalMapping(s string) (*PrincipalMapper, error) {
	m := &PrincipalMapper{}
	rest := strings.TrimSpace(s)
	if rest == "" {
		rest = "DEFAULT"
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t\n,")
		if rest == "" {
			break
		}
		switch {
		case strings.HasPrefix(rest, "DEFAULT"):
			m.rules = append(m.rules, mappingRule{def: true})
			rest = rest[len("DEFAULT"):]
		case strings.HasPrefix(rest, "RULE:"):
			rest = rest[len("RULE:"):]
			pat, r, ok := cutUnescaped(rest, '/')
			if !ok {
				return nil, fmt.Errorf("ssl.principal.mapping.rules: RULE without '/' after the pattern")
			}
			repl, r2, ok := cutUnescaped(r, '/')
			if !ok {
				return nil, fmt.Errorf("ssl.principal.mapping.rules: RULE without '/' after the replacement")
			}
			re, err := regexp.Compile("^(?:" + pat + ")$")
			if err != nil {
				return nil, fmt.Errorf("ssl.principal.mapping.rules: pattern %q: %w", pat, err)
			}
			rule := mappingRule{re: re, repl: repl}
			if strings.HasPrefix(r2, "L") {
				rule.lower, r2 = true, r2[1:]
			} else if strings.HasPrefix(r2, "U") {
				rule.upper, r2 = true, r2[1:]
			}
			m.rules = append(m.rules, rule)
			rest = r2
		default:
			return nil, fmt.Errorf("ssl.principal.mapping.rules: %q: want RULE:pattern/replacement/[LU] or DEFAULT", rest)
		}
		rest = strings.TrimLeft(rest, " \t\n")
		if rest != "" && rest[0] != ',' {
			return nil, fmt.Errorf("ssl.principal.mapping.rules: unexpected %q", rest)
		}
	}
	return m, nil
}

// cutUnescaped splits s at the first sep not preceded by a backslash,
// unescaping "\sep".
func cutUnescaped(s string, sep byte) (before, after string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == sep:
			b.WriteByte(sep)
			i++
		case s[i] == sep:
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}

// Map returns the principal name for a subject, or an error when no rule
// applies (Kafka refuses such a connection).
func (m *PrincipalMapper) Map(subject string) (string, error) {
	for _, r := range m.rules {
		if r.def {
			return subject, nil
		}
		idx := r.re.FindStringSubmatchIndex(subject)
		if idx == nil {
			continue
		}
		out := string(r.re.ExpandString(nil, r.repl, subject, idx))
		switch {
		case r.lower:
			out = strings.ToLower(out)
		case r.upper:
			out = strings.ToUpper(out)
		}
		return out, nil
	}
	return "", fmt.Errorf("no ssl.principal.mapping.rules rule matches %q", subject)
}

// CertificatePrincipal is the principal of a verified client certificate:
// its subject in RFC 2253 form, mapped by m.
func (m *PrincipalMapper) CertificatePrincipal(c *x509.Certificate) (Principal, error) {
	name, err := m.Map(c.Subject.String())
	if err != nil {
		return Principal{}, err
	}
	return Principal{Type: "User", Name: name}, nil
}

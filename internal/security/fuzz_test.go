package security

import (
	"testing"
)

// The decoders of untrusted bytes: what clients send in SASL exchanges,
// and the configuration strings operators write.

func FuzzParseJAAS(f *testing.F) {
	f.Add(`org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b" user_a="b";`)
	f.Add(`M required k="a\"b" x=y;`)
	f.Fuzz(func(t *testing.T, s string) {
		j, err := ParseJAAS(s)
		if err == nil && (j.Module == "" || j.Options == nil) {
			t.Fatalf("accepted without a module: %q", s)
		}
	})
}

func FuzzPlain(f *testing.F) {
	f.Add([]byte("\x00alice\x00secret"))
	f.Add([]byte("alice\x00alice\x00secret"))
	m := NewPlain(map[string]string{"alice": "secret"})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, done, err := m.Start().Next(b)
		if done != (err == nil) {
			t.Fatalf("done %v with err %v", done, err)
		}
		if done && string(b) != "\x00alice\x00secret" && string(b) != "alice\x00alice\x00secret" {
			t.Fatalf("accepted %q", b)
		}
	})
}

// FuzzScramServer drives the SCRAM server with arbitrary client messages:
// it must never panic nor authenticate without the password.
func FuzzScramServer(f *testing.F) {
	u, err := ParseAddScram("SCRAM-SHA-256=[name=alice,password=secret]")
	if err != nil {
		f.Fatal(err)
	}
	m, _ := NewScram(MechanismScramSHA256, func(user, _ string) (ScramCredential, bool) { return u.Credential, user == "alice" })
	f.Add("n,,n=alice,r=abc", "c=biws,r=abc,p=AAAA")
	f.Add("n,a=alice,n=alice,r=x,ext=1", "c=biws,r=xx,p=====")
	f.Add("y,,n=al=2Cice,r=x", "c=eSws,r=x,p=AA==")
	f.Fuzz(func(t *testing.T, first, final string) {
		ex := m.Start()
		if _, done, err := ex.Next([]byte(first)); done || err != nil {
			return
		}
		if _, done, err := ex.Next([]byte(final)); done || err == nil {
			t.Fatalf("authenticated with %q %q", first, final)
		}
	})
}

func FuzzParseOAuthBearer(f *testing.F) {
	f.Add([]byte("n,,\x01auth=Bearer abc.def.ghi\x01\x01"))
	f.Add([]byte("n,a=u,\x01host=x\x01auth=Bearer t\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseOAuthBearerMessage(b)
		if err == nil && tok == "" {
			t.Fatal("empty token accepted")
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseJWKS(b)
		if err == nil && len(keys) == 0 {
			t.Fatal("no keys but no error")
		}
	})
}

func FuzzPrincipalMapping(f *testing.F) {
	f.Add(`RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,DEFAULT`, "CN=a,OU=b")
	f.Fuzz(func(t *testing.T, rules, subject string) {
		m, err := ParsePrincipalMapping(rules)
		if err != nil {
			return
		}
		m.Map(subject)
	})
}

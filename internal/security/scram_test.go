package security

import (
	"testing"

	"github.com/xdg-go/scram"
)

// login runs a full SCRAM exchange of an xdg-go client against m.
func login(t *testing.T, m Mechanism, gen scram.HashGeneratorFcn, user, pass string) (Principal, error) {
	t.Helper()
	cl, err := gen.NewClient(user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := cl.NewConversation()
	ex := m.Start()
	msg, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	for {
		out, done, err := ex.Next([]byte(msg))
		if err != nil {
			return Principal{}, err
		}
		if msg, err = conv.Step(string(out)); err != nil {
			return Principal{}, err
		}
		if done {
			return ex.Principal(), nil
		}
	}
}

func TestAddScramCredentialLogsIn(t *testing.T) {
	for _, tc := range []struct {
		mech string
		gen  scram.HashGeneratorFcn
	}{{MechanismScramSHA256, scram.SHA256}, {MechanismScramSHA512, scram.SHA512}} {
		u, err := ParseAddScram(tc.mech + `=[name="alice",password=alice-secret,iterations=8192]`)
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "alice" || u.Credential.Iterations != 8192 {
			t.Fatalf("parsed %+v", u)
		}
		m, err := NewScram(tc.mech, func(user, mech string) (ScramCredential, bool) {
			return u.Credential, user == "alice" && mech == tc.mech
		})
		if err != nil {
			t.Fatal(err)
		}
		if p, err := login(t, m, tc.gen, "alice", "alice-secret"); err != nil || p.Name != "alice" {
			t.Fatalf("%s: login: %v %v", tc.mech, p, err)
		}
		if _, err := login(t, m, tc.gen, "alice", "wrong"); err == nil {
			t.Fatalf("%s: wrong password accepted", tc.mech)
		}
		if _, err := login(t, m, tc.gen, "bob", "alice-secret"); err == nil {
			t.Fatalf("%s: unknown user accepted", tc.mech)
		}
	}
	for _, bad := range []string{"", "SCRAM-SHA-1=[name=a,password=b]", "SCRAM-SHA-256=[password=b]", "SCRAM-SHA-256=[name=a]",
		"SCRAM-SHA-256=[name=a,password=b,iterations=10]", "SCRAM-SHA-256=name=a,password=b"} {
		if _, err := ParseAddScram(bad); err == nil {
			t.Errorf("ParseAddScram(%q) accepted", bad)
		}
	}
}

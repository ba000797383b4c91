package security

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// ScramUser is one SCRAM credential to create when the cluster forms.
type ScramUser struct {
	Name       string
	Mechanism  string
	Credential ScramCredential
}

// ParseAddScram parses one --add-scram value in the form kafka-storage
// format takes:
//
//	SCRAM-SHA-512=[name=admin,password=admin-secret]
//	SCRAM-SHA-256=[name="alice",iterations=8192,salt="<hex or base64>",saltedpassword="<hex or base64>"]
//
// The password is salted at once (random 16-byte salt, 4096 iterations
// unless given) and not kept. Errors never quote the value.
func ParseAddScram(s string) (ScramUser, error) {
	mech, rest, ok := strings.Cut(strings.TrimSpace(s), "=")
	mech = strings.ToUpper(strings.TrimSpace(mech))
	if !ok || !strings.HasPrefix(rest, "[") || !strings.HasSuffix(rest, "]") {
		return ScramUser{}, fmt.Errorf("--add-scram: want MECHANISM=[name=...,password=...]")
	}
	if _, ok := ScramHash(mech); !ok {
		return ScramUser{}, fmt.Errorf("--add-scram: mechanism %q is not SCRAM-SHA-256 or SCRAM-SHA-512", mech)
	}
	kv := map[string]string{}
	for _, f := range strings.Split(rest[1:len(rest)-1], ",") {
		k, v, ok := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			return ScramUser{}, fmt.Errorf("--add-scram: want key=value entries")
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		kv[k] = v
	}
	u := ScramUser{Name: kv["name"], Mechanism: mech}
	if u.Name == "" {
		return ScramUser{}, fmt.Errorf("--add-scram: name is missing")
	}
	iters := ScramMinIterations
	if v, ok := kv["iterations"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return ScramUser{}, fmt.Errorf("--add-scram: iterations is not a number")
		}
		iters = n
	}
	var salt, salted []byte
	switch {
	case kv["password"] != "":
		salt = make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return ScramUser{}, err
		}
		var err error
		if salted, err = SaltPassword(mech, kv["password"], salt, iters); err != nil {
			return ScramUser{}, err
		}
	case kv["salt"] != "" && kv["saltedpassword"] != "":
		var err error
		if salt, err = decodeBytes(kv["salt"]); err != nil {
			return ScramUser{}, fmt.Errorf("--add-scram: salt: %w", err)
		}
		if salted, err = decodeBytes(kv["saltedpassword"]); err != nil {
			return ScramUser{}, fmt.Errorf("--add-scram: saltedpassword: %w", err)
		}
	default:
		return ScramUser{}, fmt.Errorf("--add-scram: give password, or salt and saltedpassword")
	}
	c, err := ScramFromSaltedPassword(mech, salt, salted, int32(iters))
	if err != nil {
		return ScramUser{}, fmt.Errorf("--add-scram: %w", err)
	}
	u.Credential = c
	return u, nil
}

func decodeBytes(v string) ([]byte, error) {
	if b, err := hex.DecodeString(v); err == nil {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(v); err == nil {
		return b, nil
	}
	return nil, fmt.Errorf("neither hex nor base64")
}

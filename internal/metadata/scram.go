package metadata

import (
	"maps"
	"sort"
)

// ScramCredential is one user's stored SCRAM credential for one mechanism
// (RFC 5802): the salt, iteration count and the keys derived from the
// salted password. The password itself is never stored or replicated.
type ScramCredential struct {
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
	Iterations int32
}

// ScramCredentialRecord sets (Credential non-nil) or removes one user's
// credential for one mechanism.
type ScramCredentialRecord struct {
	User       string
	Mechanism  string
	Credential *ScramCredential `json:",omitempty"`
}

// ScramChange is one alteration asked of AlterScramCredentials.
type ScramChange struct {
	User       string
	Mechanism  string
	Credential *ScramCredential // nil deletes
}

// Per-change outcomes of PlanAlterScram (ScramResult.Error).
const (
	ScramNotFound  = "RESOURCE_NOT_FOUND" // deleting a credential that does not exist
	ScramDuplicate = "DUPLICATE_RESOURCE" // the user appears twice in one request
)

// ScramResult is the outcome of one ScramChange: Error is "" when applied.
type ScramResult struct {
	User  string
	Error string `json:",omitempty"`
}

// Scram returns user's credential for mechanism.
func (im *Image) Scram(user, mechanism string) (ScramCredential, bool) {
	c, ok := im.ScramCredentials[user][mechanism]
	return c, ok
}

// ScramUsers returns the users with at least one credential, sorted.
func (im *Image) ScramUsers() []string {
	out := make([]string, 0, len(im.ScramCredentials))
	for u := range im.ScramCredentials {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// PlanAlterScram plans a batch of credential changes against img, as KIP-554
// specifies: a user named twice in the batch fails every one of its changes
// (DUPLICATE_RESOURCE); deleting an absent credential fails
// (RESOURCE_NOT_FOUND); the other changes apply.
func PlanAlterScram(img *Image, changes []ScramChange) ([]Record, []ScramResult) {
	count := map[string]int{}
	for _, c := range changes {
		count[c.User]++
	}
	var recs []Record
	results := make([]ScramResult, len(changes))
	for i, c := range changes {
		results[i].User = c.User
		switch _, exists := img.Scram(c.User, c.Mechanism); {
		case count[c.User] > 1:
			results[i].Error = ScramDuplicate
		case c.Credential == nil && !exists:
			results[i].Error = ScramNotFound
		default:
			recs = append(recs, Record{Scram: &ScramCredentialRecord{User: c.User, Mechanism: c.Mechanism, Credential: c.Credential}})
		}
	}
	return recs, results
}

// applyScram applies r copy-on-write: the maps of a published image are
// never modified.
func (im *Image) applyScram(r *ScramCredentialRecord) {
	users := maps.Clone(im.ScramCredentials)
	if users == nil {
		users = map[string]map[string]ScramCredential{}
	}
	mechs := maps.Clone(users[r.User])
	if mechs == nil {
		mechs = map[string]ScramCredential{}
	}
	if r.Credential != nil {
		mechs[r.Mechanism] = *r.Credential
	} else {
		delete(mechs, r.Mechanism)
	}
	if len(mechs) == 0 {
		delete(users, r.User)
	} else {
		users[r.User] = mechs
	}
	im.ScramCredentials = users
}

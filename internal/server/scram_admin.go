package server

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/security"
)

// SCRAM mechanisms as numbered in AlterUserScramCredentials and
// DescribeUserScramCredentials (KIP-554).
var scramMechanisms = map[int8]string{1: security.MechanismScramSHA256, 2: security.MechanismScramSHA512}

// handleDescribeUserSCRAM lists users' SCRAM mechanisms and iterations
// (never salts or keys). A null or empty user list describes every user.
func (s *Server) handleDescribeUserSCRAM(req *kmsg.DescribeUserSCRAMCredentialsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	img := s.store.Image()
	describe := func(user string) kmsg.DescribeUserSCRAMCredentialsResponseResult {
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = user
		for _, id := range []int8{1, 2} {
			if c, ok := img.Scram(user, scramMechanisms[id]); ok {
				r.CredentialInfos = append(r.CredentialInfos, kmsg.DescribeUserSCRAMCredentialsResponseResultCredentialInfo{Mechanism: id, Iterations: c.Iterations})
			}
		}
		if len(r.CredentialInfos) == 0 {
			msg := "attempt to describe a user credential that does not exist"
			r.ErrorCode, r.ErrorMessage = kerr.ResourceNotFound.Code, &msg
		}
		return r
	}
	if len(req.Users) == 0 {
		for _, u := range img.ScramUsers() {
			resp.Results = append(resp.Results, describe(u))
		}
		return resp
	}
	count := map[string]int{}
	for _, u := range req.Users {
		count[u.Name]++
	}
	for _, u := range req.Users {
		if count[u.Name] > 1 {
			if count[u.Name] > 0 {
				r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
				msg := "user named more than once"
				r.User, r.ErrorCode, r.ErrorMessage = u.Name, kerr.DuplicateResource.Code, &msg
				resp.Results = append(resp.Results, r)
				count[u.Name] = 0 // one result per duplicated user
			}
			continue
		}
		if count[u.Name] == 1 {
			resp.Results = append(resp.Results, describe(u.Name))
		}
	}
	return resp
}

// handleAlterUserSCRAM creates, replaces and deletes SCRAM credentials
// through the controller. The client sends the salted password (never the
// password); the broker derives StoredKey and ServerKey from it here, so
// the salted password itself goes no further than this broker.
func (s *Server) handleAlterUserSCRAM(ctx context.Context, req *kmsg.AlterUserSCRAMCredentialsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	type outcome struct {
		code int16
		msg  string
	}
	results := map[string]*outcome{}
	var order []string
	fail := func(user string, code int16, msg string) {
		if o, ok := results[user]; ok && o.code != 0 {
			return
		}
		results[user] = &outcome{code, msg}
	}
	seen := map[string]int{}
	note := func(user string) {
		if _, ok := results[user]; !ok {
			results[user] = &outcome{}
			order = append(order, user)
		}
		seen[user]++
	}
	var changes []metadata.ScramChange
	for _, d := range req.Deletions {
		note(d.Name)
		mech, ok := scramMechanisms[d.Mechanism]
		switch {
		case d.Name == "":
			fail(d.Name, kerr.UnacceptableCredential.Code, "username must not be empty")
		case !ok:
			fail(d.Name, kerr.UnsupportedSaslMechanism.Code, "unknown SCRAM mechanism")
		default:
			changes = append(changes, metadata.ScramChange{User: d.Name, Mechanism: mech})
		}
	}
	for _, u := range req.Upsertions {
		note(u.Name)
		mech, ok := scramMechanisms[u.Mechanism]
		if u.Name == "" {
			fail(u.Name, kerr.UnacceptableCredential.Code, "username must not be empty")
			continue
		}
		if !ok {
			fail(u.Name, kerr.UnsupportedSaslMechanism.Code, "unknown SCRAM mechanism")
			continue
		}
		c, err := security.ScramFromSaltedPassword(mech, u.Salt, u.SaltedPassword, u.Iterations)
		if err != nil {
			fail(u.Name, kerr.UnacceptableCredential.Code, err.Error())
			continue
		}
		changes = append(changes, metadata.ScramChange{User: u.Name, Mechanism: mech, Credential: &metadata.ScramCredential{
			Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey, Iterations: c.Iterations}})
	}
	// A user named twice fails as a whole (KIP-554); the rest go to the controller.
	var send []metadata.ScramChange
	for _, c := range changes {
		if seen[c.User] > 1 {
			fail(c.User, kerr.DuplicateResource.Code, "user named more than once in one request")
			continue
		}
		if results[c.User].code == 0 {
			send = append(send, c)
		}
	}
	for u, n := range seen {
		if n > 1 {
			fail(u, kerr.DuplicateResource.Code, "user named more than once in one request")
		}
	}
	if len(send) > 0 {
		out, err := s.ctrl.AlterScramCredentials(ctx, send)
		switch {
		case err != nil:
			for _, c := range send {
				fail(c.User, errorCode(err), err.Error())
			}
		default:
			for _, r := range out {
				switch r.Error {
				case metadata.ScramNotFound:
					fail(r.User, kerr.ResourceNotFound.Code, "attempt to delete a user credential that does not exist")
				case metadata.ScramDuplicate:
					fail(r.User, kerr.DuplicateResource.Code, "user named more than once in one request")
				}
			}
		}
	}
	for _, u := range order {
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User, r.ErrorCode = u, results[u].code
		if results[u].msg != "" {
			m := results[u].msg
			r.ErrorMessage = &m
		}
		resp.Results = append(resp.Results, r)
	}
	return resp
}

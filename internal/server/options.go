package server

import (
	"strand/internal/metadata"
	"strand/internal/security"
)

// Option adjusts a Server at New.
type Option func(*options)

type options struct {
	bootstrap []metadata.Record // committed with the cluster id when the cluster forms
}

// WithBootstrapScram creates SCRAM users when this node forms the cluster
// (strand server --add-scram, as kafka-storage format --add-scram). A
// cluster that already exists is left unchanged.
func WithBootstrapScram(users ...security.ScramUser) Option {
	return func(o *options) {
		for _, u := range users {
			c := u.Credential
			o.bootstrap = append(o.bootstrap, metadata.Record{Scram: &metadata.ScramCredentialRecord{
				User: u.Name, Mechanism: u.Mechanism,
				Credential: &metadata.ScramCredential{Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey, Iterations: c.Iterations},
			}})
		}
	}
}

package controller

import (
	"context"
	"encoding/json"
	"fmt"

	"strand/internal/metadata"
)

// The ACL and client quota changes of the metadata.Store, forwarded to the
// active controller like every other change (ops in securityOps).

// itemErr is one item's error in a batch answer, by sentinel name and text.
type itemErr struct {
	Name string `json:",omitempty"`
	Msg  string `json:",omitempty"`
}

func toItemErrs(errs []error) []itemErr {
	out := make([]itemErr, len(errs))
	for i, err := range errs {
		if err != nil {
			out[i] = itemErr{metadata.ErrorName(err), err.Error()}
		}
	}
	return out
}

func fromItemErrs(in []itemErr, n int) []error {
	out := make([]error, n)
	for i := range min(n, len(in)) {
		if in[i].Name != "" || in[i].Msg != "" {
			out[i] = metadata.ErrorFromName(in[i].Name, in[i].Msg)
		}
	}
	return out
}

// securityOps are the RPC ops of this file, run by handle on the active
// controller; ok is false for an op that is not one of them.
func (n *Node) securityOps(ctx context.Context, op string, body json.RawMessage) (out any, idx uint64, ok bool, err error) {
	switch op {
	case "create_acls":
		var acls []metadata.ACL
		if err = decodeBody(op, body, &acls); err == nil {
			var errs []error
			idx, err = n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, _ error) {
				recs, errs = metadata.PlanCreateACLs(img, acls)
				return recs, nil
			})
			out = toItemErrs(errs)
		}
		return out, idx, true, err
	case "delete_acls":
		var filters []metadata.ACLFilter
		if err = decodeBody(op, body, &filters); err == nil {
			var matched [][]metadata.ACL
			idx, err = n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, _ error) {
				recs, matched = metadata.PlanDeleteACLs(img, filters)
				return recs, nil
			})
			out = matched
		}
		return out, idx, true, err
	case "alter_client_quotas":
		var alts []metadata.QuotaAlteration
		if err = decodeBody(op, body, &alts); err == nil {
			var errs []error
			idx, err = n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, _ error) {
				recs, errs = metadata.PlanAlterClientQuotas(img, alts)
				return recs, nil
			})
			out = toItemErrs(errs)
		}
		return out, idx, true, err
	}
	return nil, 0, false, nil
}

// CreateACLs implements metadata.Store.
func (n *Node) CreateACLs(ctx context.Context, acls []metadata.ACL) ([]error, error) {
	var resp []itemErr
	if err := n.call(ctx, "create_acls", acls, &resp); err != nil {
		return nil, err
	}
	return fromItemErrs(resp, len(acls)), nil
}

// DeleteACLs implements metadata.Store.
func (n *Node) DeleteACLs(ctx context.Context, filters []metadata.ACLFilter) ([][]metadata.ACL, error) {
	var matched [][]metadata.ACL
	if err := n.call(ctx, "delete_acls", filters, &matched); err != nil {
		return nil, err
	}
	if len(matched) < len(filters) {
		matched = append(matched, make([][]metadata.ACL, len(filters)-len(matched))...)
	}
	return matched, nil
}

// AlterClientQuotas implements metadata.Store.
func (n *Node) AlterClientQuotas(ctx context.Context, alts []metadata.QuotaAlteration) ([]error, error) {
	var resp []itemErr
	if err := n.call(ctx, "alter_client_quotas", alts, &resp); err != nil {
		return nil, err
	}
	return fromItemErrs(resp, len(alts)), nil
}

// decodeBody decodes an RPC body, as an INVALID_REQUEST error on failure.
func decodeBody(op string, body json.RawMessage, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %s: %v", metadata.ErrInvalidRequest, op, err)
	}
	return nil
}

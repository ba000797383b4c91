package controller

import (
	"context"
	"encoding/json"

	"strand/internal/metadata"
)

// AlterScramCredentials applies SCRAM credential changes (KIP-554) on the
// active controller and returns each change's outcome, in order.
func (n *Node) AlterScramCredentials(ctx context.Context, changes []metadata.ScramChange) ([]metadata.ScramResult, error) {
	var out []metadata.ScramResult
	err := n.call(ctx, "alter_scram", changes, &out)
	return out, err
}

// handleAlterScram is the "alter_scram" op on the active controller.
func (n *Node) handleAlterScram(ctx context.Context, body json.RawMessage) (any, uint64, error) {
	var changes []metadata.ScramChange
	if err := json.Unmarshal(body, &changes); err != nil {
		return nil, 0, err
	}
	var results []metadata.ScramResult
	idx, err := n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, err error) {
		recs, results = metadata.PlanAlterScram(img, changes)
		return recs, nil
	})
	return results, idx, err
}

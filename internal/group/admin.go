package group

import (
	"math"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups describes groups: state, protocol and members (with their
// subscription metadata and assignment once Stable). A group that does not
// exist is reported as Dead.
func (c *Coordinator) DescribeGroups(req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		resp.Groups = append(resp.Groups, c.describe(name))
	}
	return resp
}

func (c *Coordinator) describe(name string) kmsg.DescribeGroupsResponseGroup {
	dg := kmsg.NewDescribeGroupsResponseGroup()
	dg.Group = name
	dg.AuthorizedOperations = math.MinInt32 // not computed
	dg.Members = []kmsg.DescribeGroupsResponseGroupMember{}
	sh, code := c.shardFor(name)
	if code != 0 {
		dg.ErrorCode = code
		return dg
	}
	g := sh.get(name)
	if g == nil {
		dg.State = Dead.String()
		return dg
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	dg.State, dg.ProtocolType = g.state.String(), g.protocolType
	if g.state == Dead {
		dg.ProtocolType = ""
		return dg
	}
	stable := g.state == Stable
	if stable {
		dg.Protocol = g.protocol
	}
	for _, m := range g.members {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
		dm.ProtocolMetadata, dm.MemberAssignment = []byte{}, []byte{}
		if stable {
			if md := m.metadata(g.protocol); md != nil {
				dm.ProtocolMetadata = md
			}
			if m.assignment != nil {
				dm.MemberAssignment = m.assignment
			}
		}
		dg.Members = append(dg.Members, dm)
	}
	return dg
}

// ListGroups lists the groups of every loaded partition, optionally only
// those in the given states (v4+; matched case-insensitively). While a
// partition is loading the list is returned with COORDINATOR_LOAD_IN_PROGRESS.
func (c *Coordinator) ListGroups(req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	shards, loading := c.loadedShards()
	if loading {
		resp.ErrorCode = kerrLoadInProgress
	}
	want := map[string]bool{}
	for _, s := range req.StatesFilter {
		want[strings.ToLower(s)] = true
	}
	resp.Groups = []kmsg.ListGroupsResponseGroup{}
	for _, sh := range shards {
		for _, g := range sh.all() {
			g.mu.Lock()
			state, ptype := g.state, g.protocolType
			g.mu.Unlock()
			if state == Dead || len(want) > 0 && !want[strings.ToLower(state.String())] {
				continue
			}
			lg := kmsg.NewListGroupsResponseGroup()
			lg.Group, lg.ProtocolType, lg.GroupState = g.name, ptype, state.String()
			lg.GroupType = "classic"
			resp.Groups = append(resp.Groups, lg)
		}
	}
	sort.Slice(resp.Groups, func(i, j int) bool { return resp.Groups[i].Group < resp.Groups[j].Group })
	return resp
}

// DeleteGroups deletes Empty groups with their offsets (NON_EMPTY_GROUP for
// a group with members). The returned function waits for durability.
func (c *Coordinator) DeleteGroups(req *kmsg.DeleteGroupsRequest) func() *kmsg.DeleteGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	type wait struct {
		i         int
		partition int32
		pos       Position
	}
	var waits []wait
	for _, name := range req.Groups {
		out := kmsg.NewDeleteGroupsResponseGroup()
		out.Group = name
		var pos Position
		var partition int32
		out.ErrorCode, partition, pos = c.deleteGroup(name)
		if pos.End > 0 {
			waits = append(waits, wait{len(resp.Groups), partition, pos})
		}
		resp.Groups = append(resp.Groups, out)
	}
	return func() *kmsg.DeleteGroupsResponse {
		for _, w := range waits {
			if err := c.log.WaitDurable(w.partition, w.pos); err != nil {
				resp.Groups[w.i].ErrorCode = commitError(err)
			}
		}
		return resp
	}
}

// deleteGroup deletes one group and returns the code and what to wait for.
func (c *Coordinator) deleteGroup(name string) (int16, int32, Position) {
	sh, code := c.shardFor(name)
	if code != 0 {
		return code, 0, Position{}
	}
	g := sh.get(name)
	if g == nil {
		return kerr.GroupIDNotFound.Code, 0, Position{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case Dead:
		return kerr.GroupIDNotFound.Code, 0, Position{}
	case Empty:
	default:
		return kerr.NonEmptyGroup.Code, 0, Position{}
	}
	tps := make([]topicPartition, 0, len(g.offsets)+len(g.inflight))
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	for tp := range g.inflight {
		tps = append(tps, tp)
	}
	pos, err := c.removeOffsets(g, tps, true)
	if err != nil {
		c.logger.Warn("deleting group failed", "group", name, "err", err)
		return commitError(err), 0, Position{}
	}
	c.logger.Info("deleted group", "group", name, "offsets", len(tps))
	return 0, g.shard.partition, pos
}

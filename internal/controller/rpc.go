package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"strand/internal/metadata"
)

// Controller RPCs: a broker (or a Store call on any node) sends one JSON
// request per connection to the active controller, which plans, commits and
// answers with the log index of the change, so the caller can wait until its
// own image has it.

type rpcRequest struct {
	Op   string
	Body json.RawMessage
}

type rpcResponse struct {
	Index   uint64
	ErrName string `json:",omitempty"`
	Err     string `json:",omitempty"`
	Body    json.RawMessage
}

type deleteTopicReq struct{ Name string }

type createPartitionsReq struct {
	Name       string
	Count      int32
	Assignment [][]int32
}

type setConfigsReq struct {
	Name    string
	Configs map[string]string
}

type electReq struct {
	Topic     string
	Partition int32
	Preferred bool
}

type reassignReq struct {
	Topic     string
	Partition int32
	Target    []int32 // nil: cancel
}

type producerIDsReq struct {
	Broker int32
	Count  int64
}

type heartbeatReq struct {
	ID       int32
	Epoch    int64
	Shutdown bool // controlled shutdown: move leadership away, stay fenced
}

type heartbeatResp struct {
	Fenced        bool
	ShutdownReady bool
}

// rpcAttemptTimeout bounds one RPC attempt.
const rpcAttemptTimeout = 3 * time.Second

// maxRPCBytes bounds an RPC message.
const maxRPCBytes = 16 << 20

// serveRPC answers one RPC connection.
func (n *Node) serveRPC(c net.Conn) {
	defer c.Close()
	select {
	case <-n.raftReady:
	case <-n.ctx.Done():
		return
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req rpcRequest
	if err := json.NewDecoder(&limitedReader{c, maxRPCBytes}).Decode(&req); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 25*time.Second)
	defer cancel()
	body, idx, err := n.handle(ctx, req.Op, req.Body)
	resp := rpcResponse{Index: idx, Body: body}
	if err != nil {
		resp.ErrName, resp.Err = metadata.ErrorName(err), err.Error()
	}
	json.NewEncoder(c).Encode(resp)
}

type limitedReader struct {
	c net.Conn
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("rpc message too large")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	k, err := l.c.Read(p)
	l.n -= k
	return k, err
}

// handle runs op on the active controller; anywhere else, or before the
// term's barrier has applied, it answers ErrNotController and the caller
// retries.
func (n *Node) handle(ctx context.Context, op string, body json.RawMessage) (json.RawMessage, uint64, error) {
	if n.currentOffice() == nil {
		return nil, 0, fmt.Errorf("%w: node %d is not in office", metadata.ErrNotController, n.cfg.NodeID)
	}
	var (
		out any
		idx uint64
		err error
	)
	decode := func(v any) bool {
		if e := json.Unmarshal(body, v); e != nil {
			err = fmt.Errorf("%w: %s: %v", metadata.ErrInvalidRequest, op, e)
			return false
		}
		return true
	}
	switch op {
	case "create_topic":
		var c metadata.CreateTopic
		if decode(&c) {
			var t *metadata.Topic
			idx, err = n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, err error) {
				recs, t, err = metadata.PlanCreateTopic(img, c)
				return recs, err
			})
			out = t
		}
	case "delete_topic":
		var r deleteTopicReq
		if decode(&r) {
			var t *metadata.Topic
			idx, err = n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, err error) {
				recs, t, err = metadata.PlanDeleteTopic(img, r.Name)
				return recs, err
			})
			out = t
		}
	case "create_partitions":
		var r createPartitionsReq
		if decode(&r) {
			idx, err = n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return metadata.PlanCreatePartitions(img, r.Name, r.Count, r.Assignment)
			})
		}
	case "set_configs":
		var r setConfigsReq
		if decode(&r) {
			idx, err = n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return metadata.PlanSetTopicConfigs(img, r.Name, r.Configs)
			})
		}
	case "set_cluster_configs":
		var r map[string]string
		if decode(&r) {
			idx, err = n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return metadata.PlanSetClusterConfigs(img, r), nil
			})
		}
	case "reassign":
		var r reassignReq
		if decode(&r) {
			idx, err = n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return metadata.PlanReassign(img, r.Topic, r.Partition, r.Target, n.cfg.Unclean)
			})
		}
	case "elect":
		var r electReq
		if decode(&r) {
			idx, err = n.commit(ctx, func(img *metadata.Image) ([]metadata.Record, error) {
				return metadata.PlanElectLeaders(img, r.Topic, r.Partition, r.Preferred)
			})
		}
	case "alter_partition":
		var r metadata.AlterPartition
		if decode(&r) {
			var p *metadata.Partition
			idx, err = n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, err error) {
				recs, p, err = metadata.PlanAlterPartition(img, r)
				return recs, err
			})
			out = p
		}
	case "producer_ids":
		var r producerIDsReq
		if decode(&r) {
			var start int64
			idx, err = n.commit(ctx, func(img *metadata.Image) (recs []metadata.Record, err error) {
				recs, start, err = metadata.PlanProducerIDs(img, r.Broker, r.Count)
				return recs, err
			})
			out = start
		}
	case "register":
		var b metadata.Broker
		if decode(&b) {
			idx, err = n.register(ctx, b)
			out = int64(idx)
		}
	case "heartbeat":
		var r heartbeatReq
		if decode(&r) {
			out, idx, err = n.heartbeat(ctx, r)
		}
	case "alter_scram":
		out, idx, err = n.handleAlterScram(ctx, body)
	default:
		var known bool
		if out, idx, known, err = n.securityOps(ctx, op, body); !known {
			err = fmt.Errorf("%w: unknown op %q", metadata.ErrInvalidRequest, op)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	b, err := json.Marshal(out)
	return b, idx, err
}

// call runs op on the active controller - locally if this node is it, else
// over RPC - retrying while there is no reachable leader, then waits until
// this node's image includes the change, and decodes the result into resp.
func (n *Node) call(ctx context.Context, op string, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var last error
	for attempt := 0; ; attempt++ {
		var (
			out json.RawMessage
			idx uint64
		)
		if n.IsActive() {
			out, idx, err = n.handle(ctx, op, body)
		} else {
			out, idx, err = n.remote(ctx, op, body)
		}
		if err == nil {
			if err := n.fsm.waitApplied(ctx, idx); err != nil {
				return err
			}
			if resp != nil && len(out) > 0 {
				return json.Unmarshal(out, resp)
			}
			return nil
		}
		if !errors.Is(err, metadata.ErrNotController) {
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no active controller reachable: %v", metadata.ErrNotController, last)
		case <-time.After(min(time.Duration(attempt+1)*25*time.Millisecond, 250*time.Millisecond)):
		}
	}
}

// remote sends op to the active controller, or to each voter in turn when
// the leader is unknown. Transport failures count as ErrNotController so
// that call retries.
func (n *Node) remote(ctx context.Context, op string, body json.RawMessage) (json.RawMessage, uint64, error) {
	targets := []string{}
	if _, addr := n.Leader(); addr != "" {
		targets = append(targets, addr)
	} else {
		for _, v := range n.cfg.Voters {
			if v.ID != n.cfg.NodeID {
				targets = append(targets, v.Addr)
			}
		}
	}
	if len(targets) == 0 {
		return nil, 0, fmt.Errorf("%w: leader unknown", metadata.ErrNotController)
	}
	var last error
	for _, addr := range targets {
		out, idx, err := n.send(ctx, addr, op, body)
		if err == nil || !errors.Is(err, metadata.ErrNotController) {
			return out, idx, err
		}
		last = err
	}
	return nil, 0, last
}

func (n *Node) send(ctx context.Context, addr, op string, body json.RawMessage) (json.RawMessage, uint64, error) {
	// One attempt gets at most rpcAttemptTimeout, and ends as soon as Raft
	// observes another leader: a frozen or cut-off former leader must not
	// hold the caller past the next election.
	changed := n.nextLeaderChange()
	ctx, cancel := context.WithTimeout(ctx, rpcAttemptTimeout)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := n.cfg.dial(ctx, addr, rpcAttemptTimeout)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: dial %s: %v", metadata.ErrNotController, addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) }) // unblock reads and writes
	defer stop()
	if _, err := c.Write([]byte{connTypeRPC}); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", metadata.ErrNotController, addr, err)
	}
	if err := json.NewEncoder(c).Encode(rpcRequest{Op: op, Body: body}); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", metadata.ErrNotController, addr, err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(&limitedReader{c, maxRPCBytes}).Decode(&resp); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", metadata.ErrNotController, addr, err)
	}
	if resp.ErrName != "" || resp.Err != "" {
		return nil, 0, metadata.ErrorFromName(resp.ErrName, resp.Err)
	}
	return resp.Body, resp.Index, nil
}

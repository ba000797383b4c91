package testcluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cluster is several nodes forming one metadata quorum: every node runs
// process.roles=broker,controller and is a voter of controller.quorum.voters.
type Cluster struct {
	Nodes []*Node
}

// StartCluster starts n nodes (ids 1..n) with fast liveness settings
// (broker.session.timeout.ms=3000, heartbeats every 300 ms, Raft election
// timeout 500 ms; opts may override them) and waits until every node serves
// metadata listing itself.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	ctrl := make([]string, n)
	voters := make([]string, n)
	for i := range n {
		ctrl[i] = freeAddr(t)
		voters[i] = fmt.Sprintf("%d@%s", i+1, ctrl[i])
	}
	c := &Cluster{}
	for i := range n {
		o := append([]Option{
			WithNodeID(int32(i + 1)),
			WithSet("controller.quorum.voters", strings.Join(voters, ",")),
			WithSet("broker.session.timeout.ms", "3000"),
			WithSet("broker.heartbeat.interval.ms", "300"),
			WithSet("controller.quorum.election.timeout.ms", "500"),
			func(cfg *nodeConfig) { cfg.ctrlAddr = ctrl[i] },
		}, opts...)
		c.Nodes = append(c.Nodes, NewNode(t, o...))
	}
	c.startAll(t)
	return c
}

// startAll starts every node and waits, in parallel, until each serves
// metadata listing itself.
func (c *Cluster) startAll(t testing.TB) {
	t.Helper()
	for _, nd := range c.Nodes {
		nd.Start(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, nd := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = nd.WaitReady(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		// A node that lost a port race to another process gets a fresh
		// client port (the controller port is in every voter list, so that
		// one is retried as is) and starts again.
		for attempt := 1; err != nil && attempt < 3; attempt++ {
			nd := c.Nodes[i]
			lost, client := nd.lostPortRace()
			if !lost {
				break
			}
			if client && nd.cfg.addr == "" {
				nd.addr = freeAddr(t)
			} else {
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("testcluster: node %d lost a port race; starting it again", nd.cfg.nodeID)
			nd.Start(t)
			ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
			err = nd.WaitReady(ctx)
			cancel()
		}
		if err != nil {
			t.Fatalf("testcluster: node %d not ready: %v\n%s", i+1, err, c.Nodes[i].LogTail(40))
		}
	}
}

// Node returns the node with id.
func (c *Cluster) Node(id int32) *Node { return c.Nodes[id-1] }

// Addrs returns every node's client address.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// ControllerAddr returns the node's controller listener address.
func (n *Node) ControllerAddr() string { return n.cfg.ctrlAddr }

// Metadata asks exactly one node for metadata of all topics (Metadata v12
// over a raw connection, no other brokers, no retries), so the answer is that
// node's own view.
func Metadata(ctx context.Context, addr string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(12)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	if err := RawRequest(ctx, addr, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Exchange writes req on c (with clientID and correlation id corr) and reads
// one size-framed response, returned from its correlation id on.
func Exchange(c net.Conn, clientID string, req kmsg.Request, corr int32) ([]byte, error) {
	if _, err := c.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID)).AppendRequest(nil, req, corr)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	return body, nil
}

// RawRequest sends req to addr on a fresh connection and decodes the answer
// into resp (whose version is set to req's).
func RawRequest(ctx context.Context, addr string, req kmsg.Request, resp kmsg.Response) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	body, err := Exchange(c, "testcluster", req, 1)
	if err != nil {
		return err
	}
	body = body[4:] // correlation id
	if req.IsFlexible() && req.Key() != int16(kmsg.ApiVersions) {
		body = body[1:] // empty tagged fields of response header v1
	}
	resp.SetVersion(req.GetVersion())
	return resp.ReadFrom(body)
}

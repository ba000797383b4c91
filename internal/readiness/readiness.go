// Package readiness implements `strand ready`, the signal a rolling restart
// waits on before it takes the next node down: a node is ready when it is
// registered and unfenced (listed in Metadata) and every partition it hosts
// has it back in its ISR, so taking another node down cannot drop a
// partition below min.insync.replicas because of this one. With --all it
// also requires that no partition in the cluster is under-replicated
// (ISR smaller than the replicas) or leaderless.
//
// The answer comes from the cluster metadata (one Metadata request to any
// broker), which every broker serves from the same replicated image.
package readiness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Status is one node's readiness as a Metadata answer shows it.
type Status struct {
	Node       int32 `json:"node"`
	Registered bool  `json:"registered"` // listed as a live (unfenced) broker
	Hosted     int   `json:"hosted"`     // partitions with a replica on Node
	// OutOfISR names the hosted partitions ("topic-partition") whose ISR
	// lacks Node.
	OutOfISR []string `json:"out_of_isr,omitempty"`
	// UnderReplicated and Leaderless name the partitions of the whole
	// cluster whose ISR is smaller than their replicas, or that have no
	// leader.
	UnderReplicated []string `json:"under_replicated,omitempty"`
	Leaderless      []string `json:"leaderless,omitempty"`
}

// Ready reports whether the node is ready: registered and in the ISR of
// every partition it hosts; with all, also no under-replicated or
// leaderless partition anywhere.
func (s Status) Ready(all bool) bool {
	ok := s.Registered && len(s.OutOfISR) == 0
	if all {
		ok = ok && len(s.UnderReplicated) == 0 && len(s.Leaderless) == 0
	}
	return ok
}

// String describes s in one line.
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %d: ", s.Node)
	if !s.Registered {
		b.WriteString("not registered (down, starting or fenced); ")
	}
	fmt.Fprintf(&b, "hosts %d partitions, %d out of its ISR", s.Hosted, len(s.OutOfISR))
	fmt.Fprintf(&b, "; cluster: %d under-replicated, %d leaderless", len(s.UnderReplicated), len(s.Leaderless))
	if len(s.OutOfISR) > 0 {
		fmt.Fprintf(&b, " (first out of ISR: %s)", s.OutOfISR[0])
	} else if len(s.UnderReplicated) > 0 {
		fmt.Fprintf(&b, " (first under-replicated: %s)", s.UnderReplicated[0])
	}
	return b.String()
}

// Evaluate computes node's Status from a Metadata answer (of all topics).
func Evaluate(md *kmsg.MetadataResponse, node int32) Status {
	s := Status{Node: node}
	for _, b := range md.Brokers {
		s.Registered = s.Registered || b.NodeID == node
	}
	for _, t := range md.Topics {
		if t.Topic == nil {
			continue
		}
		for _, p := range t.Partitions {
			name := fmt.Sprintf("%s-%d", *t.Topic, p.Partition)
			if slices.Contains(p.Replicas, node) {
				s.Hosted++
				if !slices.Contains(p.ISR, node) {
					s.OutOfISR = append(s.OutOfISR, name)
				}
			}
			if len(p.ISR) < len(p.Replicas) {
				s.UnderReplicated = append(s.UnderReplicated, name)
			}
			if p.Leader < 0 {
				s.Leaderless = append(s.Leaderless, name)
			}
		}
	}
	slices.Sort(s.OutOfISR)
	slices.Sort(s.UnderReplicated)
	slices.Sort(s.Leaderless)
	return s
}

// Check asks the cluster (any broker, never a client-side cache: kadm's
// Metadata may answer from one up to 5 s old) for the metadata of every
// topic and evaluates node.
func Check(ctx context.Context, cl *kgo.Client, node int32) (Status, error) {
	req := kmsg.NewPtrMetadataRequest() // nil Topics: all topics
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return Status{Node: node}, fmt.Errorf("metadata: %w", err)
	}
	return Evaluate(resp, node), nil
}

// Wait polls Check every interval until the node is ready (see
// Status.Ready) or ctx ends; it returns the last status and, if not ready,
// an error saying why.
func Wait(ctx context.Context, cl *kgo.Client, node int32, all bool, interval time.Duration) (Status, error) {
	for {
		st, err := Check(ctx, cl, node)
		if err == nil && st.Ready(all) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return st, fmt.Errorf("node %d not ready: %w (last: %v)", node, ctx.Err(), err)
			}
			return st, fmt.Errorf("node %d not ready: %w (%s)", node, ctx.Err(), st)
		case <-time.After(interval):
		}
	}
}

// Main runs `strand ready` with args (without the command name): it prints
// the node's status and returns nil when it is ready, an error otherwise,
// so scripts can use the exit status. With --wait it polls until ready or
// the wait ends.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("strand ready", flag.ContinueOnError)
	fs.SetOutput(stdout)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	node := fs.Int("node", -1, "the node (node.id) to check (required)")
	all := fs.Bool("all", false, "also require no under-replicated or leaderless partition in the cluster")
	wait := fs.Duration("wait", 0, "poll until ready for up to this long (0: check once)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *node < 0 {
		return errors.New("--node is required")
	}
	var seeds []string
	for b := range strings.SplitSeq(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			seeds = append(seeds, b)
		}
	}
	if len(seeds) == 0 {
		return errors.New("--brokers is empty")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	if *wait <= 0 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := Check(cctx, cl, int32(*node))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, st)
		if !st.Ready(*all) {
			return fmt.Errorf("node %d is not ready", *node)
		}
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	st, err := Wait(wctx, cl, int32(*node), *all, 250*time.Millisecond)
	fmt.Fprintln(stdout, st)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %d ready\n", *node)
	return nil
}

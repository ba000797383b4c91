package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// Plan is a reassignment plan in Kafka's kafka-reassign-partitions.sh JSON
// format.
type Plan struct {
	Version    int             `json:"version"`
	Partitions []PlanPartition `json:"partitions"`
}

// PlanPartition is one partition's target replicas (first is preferred leader).
type PlanPartition struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
}

// ReassignmentView is a reassignment in progress.
type ReassignmentView struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
	Adding    []int32 `json:"adding"`
	Removing  []int32 `json:"removing"`
}

func reassignCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "reassign", Short: "Move partition replicas between brokers: generate a plan, execute it, follow its status"}
	c.AddCommand(reassignGenerateCmd(e), reassignExecuteCmd(e), reassignStatusCmd(e))
	return c
}

func reassignGenerateCmd(e *env) *cobra.Command {
	var topics []string
	var brokerList string
	var rf int
	c := &cobra.Command{
		Use:     "generate --topic T... --broker-ids 1,2,3",
		Short:   "Print a plan spreading the topics' replicas round-robin over the given brokers (Kafka's JSON format)",
		Args:    cobra.NoArgs,
		Example: `  strand reassign generate --topic orders --broker-ids 2,3,4 > plan.json`,
	}
	c.Flags().StringArrayVarP(&topics, "topic", "t", nil, "topic to move (repeatable)")
	c.Flags().StringVar(&brokerList, "broker-ids", "", "comma-separated target broker ids")
	c.Flags().IntVarP(&rf, "replication-factor", "r", 0, "replicas per partition (default: keep each partition's)")
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		if len(topics) == 0 {
			return fmt.Errorf("give at least one --topic")
		}
		brokers, err := parseIDs(brokerList)
		if err != nil || len(brokers) == 0 {
			return fmt.Errorf("--broker-ids %q: want comma-separated broker ids", brokerList)
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		td, err := adm.ListTopicsWithInternal(ctx, topics...)
		if err != nil {
			return err
		}
		plan := Plan{Version: 1, Partitions: []PlanPartition{}}
		next := 0
		for _, t := range td.Sorted() {
			if t.Err != nil {
				return fmt.Errorf("topic %q: %w", t.Topic, t.Err)
			}
			for _, p := range t.Partitions.Sorted() {
				n := rf
				if n == 0 {
					n = len(p.Replicas)
				}
				if n > len(brokers) {
					return fmt.Errorf("%s-%d needs %d replicas but only %d brokers were given", t.Topic, p.Partition, n, len(brokers))
				}
				var rs []int32
				for i := range n {
					rs = append(rs, brokers[(next+i)%len(brokers)])
				}
				next++
				plan.Partitions = append(plan.Partitions, PlanPartition{t.Topic, p.Partition, rs})
			}
		}
		return e.printJSON(plan)
	})
	return c
}

func reassignExecuteCmd(e *env) *cobra.Command {
	var file string
	var wait bool
	c := &cobra.Command{
		Use:     "execute --file plan.json",
		Short:   "Start the reassignments of a plan (AlterPartitionReassignments); --wait follows them to the end",
		Args:    cobra.NoArgs,
		Example: `  strand reassign execute --file plan.json --wait`,
	}
	c.Flags().StringVarP(&file, "file", "f", "", "plan file in Kafka's JSON format (- for stdin)")
	c.Flags().BoolVarP(&wait, "wait", "w", false, "wait until every reassignment completes, showing progress")
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		if file == "" {
			return fmt.Errorf("give the plan with --file (- for stdin)")
		}
		var r io.Reader = e.in
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		var plan Plan
		if err := json.NewDecoder(r).Decode(&plan); err != nil {
			return fmt.Errorf("plan %s: %w", file, err)
		}
		if len(plan.Partitions) == 0 {
			return fmt.Errorf("plan %s has no partitions", file)
		}
		req := kadm.AlterPartitionAssignmentsReq{}
		for _, p := range plan.Partitions {
			if len(p.Replicas) == 0 {
				req.CancelAssign(p.Topic, p.Partition)
			} else {
				req.Assign(p.Topic, p.Partition, p.Replicas)
			}
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		resps, err := adm.AlterPartitionAssignments(ctx, req)
		if err != nil {
			return fmt.Errorf("alter partition reassignments: %w", err)
		}
		type started struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			Error     string `json:"error,omitempty"`
		}
		var out []started
		for _, r := range resps.Sorted() {
			s := started{r.Topic, r.Partition, kafkaErr(r.Err)}
			if r.Err != nil {
				if r.ErrMessage != "" {
					s.Error += " (" + r.ErrMessage + ")"
				}
			}
			out = append(out, s)
		}
		if e.json {
			e.printJSON(out)
		} else {
			t := newTable(e.out, "TOPIC", "PARTITION", "STATUS")
			for _, s := range out {
				t.row(s.Topic, s.Partition, orStatus(s.Error, "started"))
			}
			t.flush()
		}
		if err := failure("not started", out, func(x started) string { return x.Error }); err != nil {
			return err
		}
		if wait {
			return waitReassignments(ctx, e, adm, len(out))
		}
		return nil
	})
	return c
}

// waitReassignments polls until no reassignment is in progress, drawing a
// progress bar on stderr.
func waitReassignments(ctx context.Context, e *env, adm *kadm.Client, total int) error {
	bar := newProgress(os.Stderr, total, "reassigning")
	defer bar.done()
	for {
		rs, err := adm.ListPartitionReassignments(ctx, nil)
		if err != nil {
			return fmt.Errorf("list reassignments: %w", err)
		}
		n := 0
		for _, ps := range rs {
			n += len(ps)
		}
		bar.set(max(total-n, 0))
		if n == 0 {
			if !e.json {
				fmt.Fprintln(e.out, "all reassignments complete")
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d reassignments still in progress: %w", n, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func reassignStatusCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "status", Short: "List reassignments in progress (ListPartitionReassignments)", Args: cobra.NoArgs}
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		rs, err := adm.ListPartitionReassignments(ctx, nil)
		if err != nil {
			return fmt.Errorf("list reassignments: %w", err)
		}
		out := []ReassignmentView{}
		for _, ps := range rs {
			for _, p := range ps {
				out = append(out, ReassignmentView{p.Topic, p.Partition, nonNil(p.Replicas), nonNil(p.AddingReplicas), nonNil(p.RemovingReplicas)})
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Topic != out[j].Topic {
				return out[i].Topic < out[j].Topic
			}
			return out[i].Partition < out[j].Partition
		})
		if e.json {
			return e.printJSON(out)
		}
		if len(out) == 0 {
			fmt.Fprintln(e.out, "no reassignments in progress")
			return nil
		}
		t := newTable(e.out, "TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING")
		for _, r := range out {
			t.row(r.Topic, r.Partition, ids(r.Replicas), orDash(ids(r.Adding)), orDash(ids(r.Removing)))
		}
		return t.flush()
	})
	return c
}

func parseIDs(s string) ([]int32, error) {
	var out []int32
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.ParseInt(part, 10, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad broker id %q", part)
		}
		if !slices.Contains(out, int32(n)) {
			out = append(out, int32(n))
		}
	}
	return out, nil
}

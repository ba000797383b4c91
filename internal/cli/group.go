package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func groupCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "group", Short: "List, describe (members, assignments, lag), reset offsets of and delete consumer groups"}
	c.AddCommand(groupListCmd(e), groupDescribeCmd(e), groupResetCmd(e), groupDeleteCmd(e))
	return c
}

func groupListCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List consumer groups", Args: cobra.NoArgs}
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		gs, err := Groups(ctx, adm)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(gs)
		}
		t := newTable(e.out, "GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR")
		for _, g := range gs {
			t.row(g.Group, g.State, g.ProtocolType, g.Coordinator)
		}
		return t.flush()
	})
	return c
}

func groupDescribeCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "describe GROUP...", Short: "Show a group's members, assignments and lag per partition", Args: cobra.MinimumNArgs(1)}
	c.ValidArgsFunction = e.completeGroups
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		var views []GroupView
		for _, name := range args {
			v, err := Group(ctx, adm, name)
			if err != nil {
				return err
			}
			views = append(views, v)
		}
		if e.json {
			if len(views) == 1 {
				return e.printJSON(views[0])
			}
			return e.printJSON(views)
		}
		for i, v := range views {
			if i > 0 {
				fmt.Fprintln(e.out)
			}
			fmt.Fprintf(e.out, "GROUP        %s\nSTATE        %s\nPROTOCOL     %s/%s\nCOORDINATOR  %d\nMEMBERS      %d\nTOTAL-LAG    %d\n\n",
				v.Group, v.State, v.ProtocolType, v.Protocol, v.Coordinator, len(v.Members), v.TotalLag)
			t := newTable(e.out, "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER", "CLIENT")
			for _, l := range v.Partitions {
				committed := strconv.FormatInt(l.Committed, 10)
				if l.Committed < 0 {
					committed = "-"
				}
				t.row(l.Topic, l.Partition, committed, l.End, l.Lag, orDash(l.MemberID), orDash(l.ClientID))
			}
			t.flush()
		}
		return nil
	})
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func groupDeleteCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "delete GROUP...", Short: "Delete empty groups and their committed offsets", Args: cobra.MinimumNArgs(1)}
	c.ValidArgsFunction = e.completeGroups
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		resps, err := adm.DeleteGroups(ctx, args...)
		if err != nil {
			return fmt.Errorf("delete groups: %w", err)
		}
		type deleted struct {
			Group string `json:"group"`
			Error string `json:"error,omitempty"`
		}
		var out []deleted
		for _, r := range resps.Sorted() {
			out = append(out, deleted{r.Group, kafkaErr(r.Err)})
		}
		return reportStatus(e, out, "GROUP", "deleted", "not deleted",
			func(x deleted) string { return x.Group }, func(x deleted) string { return x.Error })
	})
	return c
}

// OffsetReset is one partition's planned (or done) reset.
type OffsetReset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Current   int64  `json:"current_offset"` // -1: none committed
	New       int64  `json:"new_offset"`
	Error     string `json:"error,omitempty"`
}

func groupResetCmd(e *env) *cobra.Command {
	var topics []string
	var earliest, latest, execute bool
	var datetime string
	var offset int64 = -1
	c := &cobra.Command{
		Use:   "reset-offsets GROUP --topic T[:P,P...] (--to-earliest|--to-latest|--to-datetime T|--to-offset N) [--execute]",
		Short: "Reset a group's committed offsets (prints the plan; --execute commits it)",
		Args:  cobra.ExactArgs(1),
		Example: `  strand group reset-offsets billing --topic orders --to-earliest            # dry run
  strand group reset-offsets billing --topic orders:0,1 --to-datetime 2026-01-02T15:04:05Z --execute`,
	}
	f := c.Flags()
	f.StringArrayVarP(&topics, "topic", "t", nil, "topic, or topic:p1,p2 for some partitions (repeatable; default: the topics the group has offsets for)")
	f.BoolVar(&earliest, "to-earliest", false, "reset to the log start offset")
	f.BoolVar(&latest, "to-latest", false, "reset to the high watermark")
	f.StringVar(&datetime, "to-datetime", "", "reset to the first offset at or after this time (RFC 3339, or Unix milliseconds)")
	f.Int64Var(&offset, "to-offset", -1, "reset to this offset (clamped to the log's range)")
	f.BoolVar(&execute, "execute", false, "commit the new offsets (without it: dry run)")
	c.ValidArgsFunction = e.completeGroups
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		group := args[0]
		n := 0
		for _, b := range []bool{earliest, latest, datetime != "", offset >= 0} {
			if b {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset")
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describe group %q: %w", group, err)
		}
		if d, ok := dg[group]; ok && d.Err == nil && d.State != "Empty" && d.State != "Dead" && execute {
			return fmt.Errorf("group %q is %s with %d members: stop its consumers first (offsets of an active group cannot be reset)", group, d.State, len(d.Members))
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return fmt.Errorf("fetch offsets of %q: %w", group, err)
		}
		want, err := resetTargets(topics, committed)
		if err != nil {
			return err
		}
		if len(want) == 0 {
			return fmt.Errorf("group %q has no committed offsets: name the topics with --topic", group)
		}
		names := make([]string, 0, len(want))
		for t := range want {
			names = append(names, t)
		}
		sort.Strings(names)
		starts, err := adm.ListStartOffsets(ctx, names...)
		if err != nil {
			return fmt.Errorf("list start offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, names...)
		if err != nil {
			return fmt.Errorf("list end offsets: %w", err)
		}
		var byTime kadm.ListedOffsets
		if datetime != "" {
			ms, err := parseTime(datetime)
			if err != nil {
				return fmt.Errorf("--to-datetime: %w", err)
			}
			if byTime, err = adm.ListOffsetsAfterMilli(ctx, ms, names...); err != nil {
				return fmt.Errorf("list offsets by time: %w", err)
			}
		}
		var plan []OffsetReset
		commit := kadm.Offsets{}
		for _, t := range names {
			parts := want[t]
			if parts == nil { // every partition of the topic
				for p := range ends[t] {
					parts = append(parts, p)
				}
				sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
			}
			for _, p := range parts {
				r := OffsetReset{Topic: t, Partition: p, Current: -1, New: -1}
				if o, ok := committed.Lookup(t, p); ok && o.Err == nil {
					r.Current = o.At
				}
				s, sok := starts.Lookup(t, p)
				en, eok := ends.Lookup(t, p)
				switch {
				case !sok || !eok:
					r.Error = kafkaErr(kerr.UnknownTopicOrPartition)
				case s.Err != nil:
					r.Error = kafkaErr(s.Err)
				case en.Err != nil:
					r.Error = kafkaErr(en.Err)
				case earliest:
					r.New = s.Offset
				case latest:
					r.New = en.Offset
				case datetime != "":
					r.New = en.Offset
					if o, ok := byTime.Lookup(t, p); ok && o.Err == nil && o.Offset >= 0 {
						r.New = o.Offset
					}
				default:
					r.New = min(max(offset, s.Offset), en.Offset)
				}
				if r.Error == "" {
					commit.Add(kadm.Offset{Topic: t, Partition: p, At: r.New, LeaderEpoch: -1})
				}
				plan = append(plan, r)
			}
		}
		failed := 0
		if execute {
			resps, err := adm.CommitOffsets(ctx, group, commit)
			if err != nil {
				return fmt.Errorf("commit offsets of %q: %w", group, err)
			}
			for i := range plan {
				if r, ok := resps.Lookup(plan[i].Topic, plan[i].Partition); ok && r.Err != nil {
					plan[i].Error = kafkaErr(r.Err)
				}
			}
		}
		for _, r := range plan {
			if r.Error != "" {
				failed++
			}
		}
		if e.json {
			e.printJSON(struct {
				Group    string        `json:"group"`
				Executed bool          `json:"executed"`
				Offsets  []OffsetReset `json:"offsets"`
			}{group, execute, plan})
		} else {
			t := newTable(e.out, "TOPIC", "PARTITION", "CURRENT", "NEW", "STATUS")
			for _, r := range plan {
				cur := strconv.FormatInt(r.Current, 10)
				if r.Current < 0 {
					cur = "-"
				}
				status := "planned"
				if execute {
					status = "reset"
				}
				t.row(r.Topic, r.Partition, cur, r.New, orStatus(r.Error, status))
			}
			t.flush()
			if !execute {
				fmt.Fprintln(e.out, "\ndry run: nothing committed; add --execute to reset")
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d partitions failed", failed)
		}
		return nil
	})
	return c
}

// resetTargets parses --topic values (topic or topic:0,1) into topic ->
// partitions (nil: all); with none given, the topics of committed.
func resetTargets(flags []string, committed kadm.OffsetResponses) (map[string][]int32, error) {
	out := map[string][]int32{}
	if len(flags) == 0 {
		for t := range committed {
			out[t] = nil
		}
		return out, nil
	}
	for _, f := range flags {
		t, ps, ok := strings.Cut(f, ":")
		if t == "" {
			return nil, fmt.Errorf("--topic %q: empty topic name", f)
		}
		if !ok {
			out[t] = nil
			continue
		}
		for _, s := range strings.Split(ps, ",") {
			p, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
			if err != nil || p < 0 {
				return nil, fmt.Errorf("--topic %q: bad partition %q", f, s)
			}
			out[t] = append(out[t], int32(p))
		}
	}
	return out, nil
}

// parseTime reads RFC 3339 (with or without seconds' fraction), a date, or
// Unix milliseconds.
func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, fmt.Errorf("%q is not RFC 3339 (2006-01-02T15:04:05Z), a date or Unix milliseconds", s)
}

// completeGroups completes group names from the cluster (best effort).
func (e *env) completeGroups(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	return e.complete(cmd, func(ctx context.Context, adm *kadm.Client) ([]string, error) {
		lg, err := adm.ListGroups(ctx)
		if err != nil {
			return nil, err
		}
		return lg.Groups(), nil
	})
}

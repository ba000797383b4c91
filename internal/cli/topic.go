package cli

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

func topicCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "topic", Short: "Create, list, describe, delete and configure topics"}
	c.AddCommand(topicCreateCmd(e), topicListCmd(e), topicDescribeCmd(e), topicDeleteCmd(e),
		topicAlterConfigCmd(e), topicAddPartitionsCmd(e))
	return c
}

func topicCreateCmd(e *env) *cobra.Command {
	var partitions, rf int
	var configs []string
	c := &cobra.Command{
		Use:     "create NAME...",
		Short:   "Create topics",
		Args:    cobra.MinimumNArgs(1),
		Example: `  strand topic create orders --partitions 6 --replication-factor 3 -c retention.ms=86400000`,
	}
	c.Flags().IntVarP(&partitions, "partitions", "p", -1, "partitions (default: the broker's num.partitions)")
	c.Flags().IntVarP(&rf, "replication-factor", "r", -1, "replication factor (default: the broker's default.replication.factor)")
	c.Flags().StringArrayVarP(&configs, "config", "c", nil, "topic config as key=value (repeatable)")
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		if partitions == 0 || partitions < -1 || partitions > math.MaxInt32 {
			return fmt.Errorf("--partitions %d: want a positive count", partitions)
		}
		if rf == 0 || rf < -1 || rf > math.MaxInt16 {
			return fmt.Errorf("--replication-factor %d: want a positive count", rf)
		}
		cfg, err := parseConfigs(configs)
		if err != nil {
			return err
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		resps, err := adm.CreateTopics(ctx, int32(partitions), int16(rf), cfg, args...)
		if err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		type created struct {
			Topic             string `json:"topic"`
			ID                string `json:"id,omitempty"`
			Partitions        int32  `json:"partitions"`
			ReplicationFactor int16  `json:"replication_factor"`
			Error             string `json:"error,omitempty"`
		}
		var out []created
		for _, r := range resps.Sorted() {
			cr := created{Topic: r.Topic, Partitions: r.NumPartitions, ReplicationFactor: r.ReplicationFactor, Error: kafkaErr(r.Err)}
			if r.Err == nil {
				cr.ID = topicID(r.ID)
			}
			out = append(out, cr)
		}
		if e.json {
			if err := e.printJSON(out); err != nil {
				return err
			}
		} else {
			t := newTable(e.out, "TOPIC", "PARTITIONS", "REPLICATION", "STATUS")
			for _, cr := range out {
				status := "created"
				if cr.Error != "" {
					status = cr.Error
				}
				t.row(cr.Topic, cr.Partitions, cr.ReplicationFactor, status)
			}
			t.flush()
		}
		return failure("not created", out, func(x created) string { return x.Error })
	})
	return c
}

func topicListCmd(e *env) *cobra.Command {
	var internal bool
	c := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List topics", Args: cobra.NoArgs}
	c.Flags().BoolVarP(&internal, "internal", "i", false, "include internal topics (__consumer_offsets)")
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		ts, err := Topics(ctx, adm, internal)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(ts)
		}
		t := newTable(e.out, "NAME", "PARTITIONS", "REPLICAS", "UNDER-REPLICATED", "OFFLINE")
		for _, tv := range ts {
			under, off := 0, 0
			for _, p := range tv.Partitions {
				if p.UnderReplicated {
					under++
				}
				if p.Offline {
					off++
				}
			}
			t.row(tv.Name, len(tv.Partitions), tv.ReplicationFactor, under, off)
		}
		return t.flush()
	})
	return c
}

func topicDescribeCmd(e *env) *cobra.Command {
	var noConfigs bool
	c := &cobra.Command{Use: "describe NAME", Short: "Show a topic's partitions (leader, replicas, ISR, offsets, size) and configs", Args: cobra.ExactArgs(1)}
	c.Flags().BoolVar(&noConfigs, "no-configs", false, "do not print the configs")
	c.ValidArgsFunction = e.completeTopics
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		tv, err := Topic(ctx, adm, args[0])
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(tv)
		}
		fmt.Fprintf(e.out, "NAME         %s\nID           %s\nINTERNAL     %v\nPARTITIONS   %d\nREPLICATION  %d\n\n",
			tv.Name, tv.ID, tv.Internal, len(tv.Partitions), tv.ReplicationFactor)
		t := newTable(e.out, "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "HIGH-WATERMARK", "SIZE", "STATUS")
		for _, p := range tv.Partitions {
			t.row(p.Partition, p.Leader, p.LeaderEpoch, ids(p.Replicas), ids(p.ISR), p.LogStartOffset, p.HighWatermark, p.Size, partitionStatus(p))
		}
		t.flush()
		if noConfigs {
			return nil
		}
		fmt.Fprintln(e.out)
		t = newTable(e.out, "CONFIG", "VALUE", "SOURCE")
		for _, cv := range tv.Configs {
			t.row(cv.Name, cv.Value, cv.Source)
		}
		return t.flush()
	})
	return c
}

func partitionStatus(p PartitionView) string {
	switch {
	case p.Error != "":
		return p.Error
	case p.Offline:
		return "offline"
	case p.UnderReplicated:
		return "under-replicated"
	}
	return "ok"
}

func topicDeleteCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "delete NAME...", Short: "Delete topics", Args: cobra.MinimumNArgs(1)}
	c.ValidArgsFunction = e.completeTopics
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		resps, err := adm.DeleteTopics(ctx, args...)
		if err != nil {
			return fmt.Errorf("delete topics: %w", err)
		}
		var out []topicStatus
		for _, r := range resps.Sorted() {
			out = append(out, topicStatus{r.Topic, kafkaErr(r.Err)})
		}
		return reportStatus(e, out, "TOPIC", "deleted", "not deleted", topicStatus.name, topicStatus.errText)
	})
	return c
}

// topicStatus is the outcome for one topic of a command that changes topics.
type topicStatus struct {
	Topic string `json:"topic"`
	Error string `json:"error,omitempty"`
}

func (s topicStatus) name() string    { return s.Topic }
func (s topicStatus) errText() string { return s.Error }

// reportStatus prints items as JSON, or as a table of header (name) and
// STATUS (the error, else ok); it returns failure(failMsg, items, errOf).
func reportStatus[T any](e *env, items []T, header, ok, failMsg string, name, errOf func(T) string) error {
	if e.json {
		e.printJSON(items)
	} else {
		t := newTable(e.out, header, "STATUS")
		for _, it := range items {
			t.row(name(it), orStatus(errOf(it), ok))
		}
		t.flush()
	}
	return failure(failMsg, items, errOf)
}

func orStatus(errText, ok string) string {
	if errText != "" {
		return errText
	}
	return ok
}

func topicAlterConfigCmd(e *env) *cobra.Command {
	var set, del []string
	c := &cobra.Command{
		Use:     "alter-config NAME...",
		Short:   "Set or delete topic configs (IncrementalAlterConfigs)",
		Args:    cobra.MinimumNArgs(1),
		Example: `  strand topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy`,
	}
	c.Flags().StringArrayVarP(&set, "set", "s", nil, "key=value to set (repeatable)")
	c.Flags().StringArrayVarP(&del, "delete", "d", nil, "key to delete, back to the default (repeatable)")
	c.ValidArgsFunction = e.completeTopics
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		var alters []kadm.AlterConfig
		for _, kv := range set {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--set %q: want key=value", kv)
			}
			alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
		}
		for _, k := range del {
			alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
		}
		if len(alters) == 0 {
			return fmt.Errorf("nothing to change: give --set key=value or --delete key")
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		resps, err := adm.AlterTopicConfigs(ctx, alters, args...)
		if err != nil {
			return fmt.Errorf("alter configs: %w", err)
		}
		var out []topicStatus
		for _, r := range resps {
			errText := kafkaErr(r.Err)
			if r.ErrMessage != "" && errText != "" {
				errText += " (" + r.ErrMessage + ")"
			}
			out = append(out, topicStatus{r.Name, errText})
		}
		return reportStatus(e, out, "TOPIC", "altered", "not altered", topicStatus.name, topicStatus.errText)
	})
	return c
}

func topicAddPartitionsCmd(e *env) *cobra.Command {
	var add, total int
	c := &cobra.Command{
		Use:   "add-partitions NAME...",
		Short: "Add partitions to topics (--num to add, or --total for the new count)",
		Args:  cobra.MinimumNArgs(1),
	}
	c.Flags().IntVarP(&add, "num", "n", 0, "partitions to add")
	c.Flags().IntVar(&total, "total", 0, "the new partition count")
	c.ValidArgsFunction = e.completeTopics
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		if (add > 0) == (total > 0) {
			return fmt.Errorf("give one of --num N (partitions to add) or --total N (new count)")
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		var resps kadm.CreatePartitionsResponses
		if add > 0 {
			resps, err = adm.CreatePartitions(ctx, add, args...)
		} else {
			resps, err = adm.UpdatePartitions(ctx, total, args...)
		}
		if err != nil {
			return fmt.Errorf("add partitions: %w", err)
		}
		var out []topicStatus
		for _, r := range resps.Sorted() {
			out = append(out, topicStatus{r.Topic, kafkaErr(r.Err)})
		}
		return reportStatus(e, out, "TOPIC", "partitions added", "not changed", topicStatus.name, topicStatus.errText)
	})
	return c
}

// parseConfigs turns key=value flags into a CreateTopics config map.
func parseConfigs(kvs []string) (map[string]*string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]*string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("config %q: want key=value", kv)
		}
		out[k] = &v
	}
	return out, nil
}

// completeTopics completes topic names from the cluster (best effort).
func (e *env) completeTopics(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	return e.complete(cmd, func(ctx context.Context, adm *kadm.Client) ([]string, error) {
		td, err := adm.ListTopics(ctx)
		if err != nil {
			return nil, err
		}
		return td.Names(), nil
	})
}

// complete completes from the names list reads from the cluster (best
// effort: none on an error), closing the client it opened.
func (e *env) complete(cmd *cobra.Command, list func(ctx context.Context, adm *kadm.Client) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	adm, err := e.admin()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer func() { e.cl.Close(); e.cl, e.adm = nil, nil }()
	ctx, cancel := context.WithTimeout(cmd.Context(), e.timeout)
	defer cancel()
	names, err := list(ctx, adm)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

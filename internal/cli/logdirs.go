package cli

import (
	"context"
	"sort"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// LogDirView is one partition replica in a broker's log directory.
type LogDirView struct {
	Broker    int32  `json:"broker"`
	Dir       string `json:"dir"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Size      int64  `json:"size"`
	OffsetLag int64  `json:"offset_lag"`
}

// DirView is one broker's log directory.
type DirView struct {
	Broker      int32        `json:"broker"`
	Dir         string       `json:"dir"`
	TotalBytes  int64        `json:"total_bytes"`
	UsableBytes int64        `json:"usable_bytes"`
	Size        int64        `json:"size"`
	Error       string       `json:"error,omitempty"`
	Partitions  []LogDirView `json:"partitions"`
}

func logDirsCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "log-dirs", Short: "Brokers' log directories"}
	var topics []string
	d := &cobra.Command{Use: "describe", Short: "Every broker's log directories with each partition's size and offset lag (DescribeLogDirs)", Args: cobra.NoArgs}
	d.Flags().StringArrayVarP(&topics, "topic", "t", nil, "only these topics (repeatable)")
	d.RunE = e.run(func(ctx context.Context, _ []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		var set kadm.TopicsSet
		if len(topics) > 0 {
			td, err := adm.ListTopicsWithInternal(ctx, topics...)
			if err != nil {
				return err
			}
			set = td.TopicsSet()
		}
		all, err := adm.DescribeAllLogDirs(ctx, set)
		if err != nil && len(all) == 0 {
			return err
		}
		var out []DirView
		for _, dirs := range all {
			for _, d := range dirs {
				dv := DirView{Broker: d.Broker, Dir: d.Dir, TotalBytes: d.TotalBytes, UsableBytes: d.UsableBytes,
					Error: kafkaErr(d.Err), Partitions: []LogDirView{}}
				for _, ps := range d.Topics {
					for _, p := range ps {
						dv.Partitions = append(dv.Partitions, LogDirView{p.Broker, p.Dir, p.Topic, p.Partition, p.Size, p.OffsetLag})
						dv.Size += p.Size
					}
				}
				sort.Slice(dv.Partitions, func(i, j int) bool {
					a, b := dv.Partitions[i], dv.Partitions[j]
					if a.Topic != b.Topic {
						return a.Topic < b.Topic
					}
					return a.Partition < b.Partition
				})
				out = append(out, dv)
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Broker != out[j].Broker {
				return out[i].Broker < out[j].Broker
			}
			return out[i].Dir < out[j].Dir
		})
		if e.json {
			return e.printJSON(out)
		}
		t := newTable(e.out, "BROKER", "DIR", "TOPIC", "PARTITION", "SIZE", "OFFSET-LAG")
		for _, dv := range out {
			if dv.Error != "" {
				t.row(dv.Broker, dv.Dir, "-", "-", "-", dv.Error)
				continue
			}
			for _, p := range dv.Partitions {
				t.row(p.Broker, p.Dir, p.Topic, p.Partition, p.Size, p.OffsetLag)
			}
		}
		return t.flush()
	})
	c.AddCommand(d)
	return c
}

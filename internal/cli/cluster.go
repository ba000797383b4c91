package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func clusterCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "cluster", Short: "Cluster id, brokers, controller, health and metadata"}
	c.AddCommand(clusterInfoCmd(e), clusterHealthCmd(e), clusterMetadataCmd(e))
	return c
}

func clusterInfoCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "info", Short: "Cluster id, active controller and brokers", Args: cobra.NoArgs}
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		v, err := Cluster(ctx, adm)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(struct {
				ClusterID  string       `json:"cluster_id"`
				Controller int32        `json:"controller"`
				Brokers    []BrokerView `json:"brokers"`
				Topics     int          `json:"topics"`
				Partitions int          `json:"partitions"`
			}{v.ClusterID, v.Controller, v.Brokers, v.Topics, v.Partitions})
		}
		fmt.Fprintf(e.out, "CLUSTER      %s\nCONTROLLER   %d\nTOPICS       %d\nPARTITIONS   %d\n\n", v.ClusterID, v.Controller, v.Topics, v.Partitions)
		printBrokers(e, v.Brokers)
		return nil
	})
	return c
}

func printBrokers(e *env, bs []BrokerView) {
	t := newTable(e.out, "ID", "HOST", "PORT", "RACK", "CONTROLLER")
	for _, b := range bs {
		ctrl := ""
		if b.Controller {
			ctrl = "*"
		}
		t.row(b.ID, b.Host, b.Port, orDash(b.Rack), ctrl)
	}
	t.flush()
}

func clusterHealthCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "health", Short: "Healthy when every replica's broker is up, no partition is under-replicated or offline, and a controller is active; exits 1 otherwise", Args: cobra.NoArgs}
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		v, err := Cluster(ctx, adm)
		if err != nil {
			return err
		}
		if e.json {
			e.printJSON(struct {
				Healthy         bool     `json:"healthy"`
				Controller      int32    `json:"controller"`
				Brokers         []int32  `json:"brokers"`
				DownBrokers     []int32  `json:"down_brokers"`
				UnderReplicated []string `json:"under_replicated"`
				Offline         []string `json:"offline"`
			}{v.Healthy, v.Controller, brokerIDs(v.Brokers), v.DownBrokers, v.UnderReplicated, v.Offline})
		} else {
			fmt.Fprintf(e.out, "HEALTHY            %v\nCONTROLLER         %d\nBROKERS            %s\nDOWN-BROKERS       %s\nUNDER-REPLICATED   %d %s\nOFFLINE            %d %s\n",
				v.Healthy, v.Controller, ids(brokerIDs(v.Brokers)), ids(v.DownBrokers),
				len(v.UnderReplicated), strings.Join(v.UnderReplicated, " "), len(v.Offline), strings.Join(v.Offline, " "))
		}
		if !v.Healthy {
			return fmt.Errorf("cluster is not healthy")
		}
		return nil
	})
	return c
}

func brokerIDs(bs []BrokerView) []int32 {
	out := []int32{}
	for _, b := range bs {
		out = append(out, b.ID)
	}
	return out
}

func clusterMetadataCmd(e *env) *cobra.Command {
	var internal bool
	c := &cobra.Command{Use: "metadata", Short: "Brokers, and every topic's partitions with leader, replicas and ISR (like kcat -L)", Args: cobra.NoArgs}
	c.Flags().BoolVarP(&internal, "internal", "i", false, "include internal topics")
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		v, err := Cluster(ctx, adm)
		if err != nil {
			return err
		}
		ts, err := Topics(ctx, adm, internal)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(struct {
				ClusterID  string       `json:"cluster_id"`
				Controller int32        `json:"controller"`
				Brokers    []BrokerView `json:"brokers"`
				Topics     []TopicView  `json:"topics"`
			}{v.ClusterID, v.Controller, v.Brokers, ts})
		}
		fmt.Fprintf(e.out, "CLUSTER      %s\nCONTROLLER   %d\n\n", v.ClusterID, v.Controller)
		printBrokers(e, v.Brokers)
		fmt.Fprintln(e.out)
		t := newTable(e.out, "TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "STATUS")
		for _, tv := range ts {
			for _, p := range tv.Partitions {
				t.row(tv.Name, p.Partition, p.Leader, p.LeaderEpoch, ids(p.Replicas), ids(p.ISR), partitionStatus(p))
			}
		}
		return t.flush()
	})
	return c
}

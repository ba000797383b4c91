package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/cli"
	"strand/internal/testcluster"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// strand runs one CLI command against brokers with stdin and returns its
// output.
func strand(t *testing.T, brokers, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := cli.NewRoot(&out, strings.NewReader(stdin))
	root.SetArgs(append(args, "--brokers", brokers, "--timeout", "30s"))
	root.SetErr(&out)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// ok runs a command that must succeed.
func ok(t *testing.T, brokers, stdin string, args ...string) string {
	t.Helper()
	out, err := strand(t, brokers, stdin, args...)
	if err != nil {
		t.Fatalf("strand %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fails runs a command that must fail with an error containing want.
func fails(t *testing.T, brokers, want string, args ...string) {
	t.Helper()
	out, err := strand(t, brokers, "", args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("strand %s: err %v, want one containing %q\n%s", strings.Join(args, " "), err, want, out)
	}
}

// golden compares out with testdata/name.golden (-update rewrites it).
func golden(t *testing.T, name, out string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != out {
		t.Fatalf("%s: output differs from %s\n--- got\n%s--- want\n%s", name, path, out, want)
	}
}

func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output is not the JSON expected: %v\n%s", err, out)
	}
	return v
}

// decodeLines decodes one JSON value per line.
func decodeLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var vs []T
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		vs = append(vs, decode[T](t, line))
	}
	return vs
}

// waitFor runs a command until check accepts its output.
func waitFor(t *testing.T, d time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCommands runs every admin command against a 3-node cluster: tables
// where stable are golden, --json outputs are decoded and checked.
func TestCommands(t *testing.T) {
	c := testcluster.StartCluster(t, 3, testcluster.WithSet("group.initial.rebalance.delay.ms", "0"))
	b := strings.Join(c.Addrs(), ",")
	// Each step builds on the one before: stop at the first that fails.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("cluster", func(t *testing.T) {
		type clusterInfo struct {
			ClusterID  string           `json:"cluster_id"`
			Controller int32            `json:"controller"`
			Brokers    []cli.BrokerView `json:"brokers"`
		}
		var info clusterInfo
		waitFor(t, 20*time.Second, func() string { // every broker registered
			info = decode[clusterInfo](t, ok(t, b, "", "cluster", "info", "--json"))
			if info.ClusterID == "" || info.Controller < 1 || len(info.Brokers) != 3 {
				return fmt.Sprintf("cluster info: %+v", info)
			}
			return ""
		})
		// The table may come from another node, whose metadata can lag the
		// first answer's by a heartbeat: wait for it too.
		waitFor(t, 20*time.Second, func() string {
			if out := ok(t, b, "", "cluster", "info"); !strings.Contains(out, "CONTROLLER   ") || strings.Count(out, "127.0.0.1") != 3 {
				return fmt.Sprintf("cluster info table:\n%s", out)
			}
			return ""
		})
		waitFor(t, 20*time.Second, func() string { // a new quorum may still be settling
			out, err := strand(t, b, "", "cluster", "health", "--json") // exits 1 while degraded
			health := decode[struct {
				Healthy bool    `json:"healthy"`
				Brokers []int32 `json:"brokers"`
			}](t, out)
			if err != nil || !health.Healthy || len(health.Brokers) != 3 {
				return fmt.Sprintf("cluster health: %+v (%v)", health, err)
			}
			return ""
		})
	})

	step("topic", func(t *testing.T) {
		golden(t, "topic-create", ok(t, b, "", "topic", "create", "T", "--partitions", "3", "--replication-factor", "3"))
		fails(t, b, "TOPIC_ALREADY_EXISTS", "topic", "create", "T", "--partitions", "3", "--replication-factor", "3")
		fails(t, b, "INVALID_REPLICATION_FACTOR", "topic", "create", "U", "--partitions", "1", "--replication-factor", "5")
		settled(t, c, "T", 3)
		tv := decode[cli.TopicView](t, ok(t, b, "", "topic", "describe", "T", "--json"))
		if tv.Name != "T" || len(tv.Partitions) != 3 || tv.ReplicationFactor != 3 {
			t.Fatalf("topic describe --json: %+v", tv)
		}
		for _, p := range tv.Partitions {
			if len(p.Replicas) != 3 || p.Leader < 1 || p.HighWatermark != 0 {
				t.Fatalf("partition %+v", p)
			}
		}
		waitFor(t, 20*time.Second, func() string {
			out, _ := strand(t, b, "", "topic", "list")
			if out != "NAME  PARTITIONS  REPLICAS  UNDER-REPLICATED  OFFLINE\nT     3           3         0                 0\n" {
				return "topic list:\n" + out
			}
			return ""
		})
		golden(t, "topic-list", ok(t, b, "", "topic", "list"))
		if ts := decode[[]cli.TopicView](t, ok(t, b, "", "topic", "list", "--json")); len(ts) != 1 || ts[0].Name != "T" || ts[0].ID != tv.ID {
			t.Fatalf("topic list --json: %+v", ts)
		}
		md := decode[struct {
			Brokers []cli.BrokerView `json:"brokers"`
			Topics  []cli.TopicView  `json:"topics"`
		}](t, ok(t, b, "", "cluster", "metadata", "--json", "--internal"))
		if len(md.Brokers) != 3 || len(md.Topics) == 0 || md.Topics[0].Name != "T" || len(md.Topics[0].Partitions) != 3 {
			t.Fatalf("cluster metadata --json --internal: %d brokers, topics %+v", len(md.Brokers), md.Topics)
		}
		if out := ok(t, b, "", "topic", "describe", "T"); !strings.Contains(out, "PARTITIONS   3\n") || !strings.Contains(out, "retention.ms") {
			t.Fatalf("topic describe:\n%s", out)
		}
		fails(t, b, "UNKNOWN_TOPIC_OR_PARTITION", "topic", "describe", "nosuch")

		golden(t, "topic-alter-config", ok(t, b, "", "topic", "alter-config", "T", "--set", "retention.ms=3600000"))
		waitFor(t, 20*time.Second, func() string { // every broker applies the change in its own time
			tv := decode[cli.TopicView](t, ok(t, b, "", "topic", "describe", "T", "--json"))
			for _, cv := range tv.Configs {
				if cv.Name == "retention.ms" && (cv.Value != "3600000" || cv.Source == "default") {
					return fmt.Sprintf("retention.ms not set: %+v", cv)
				}
			}
			return ""
		})
		fails(t, b, "nothing to change", "topic", "alter-config", "T")

		golden(t, "topic-add-partitions", ok(t, b, "", "topic", "add-partitions", "T", "--total", "4"))
		settled(t, c, "T", 4)
	})

	step("produce-consume", func(t *testing.T) {
		out := ok(t, b, "k1:v1\nk2:v2\nk3:v3\n", "produce", "T", "-K", ":", "-p", "2", "-H", "src=test")
		if out != "T/2@0\nT/2@1\nT/2@2\n" {
			t.Fatalf("produce:\n%s", out)
		}
		pv := decodeLines[cli.ProducedView](t, ok(t, b, "", "produce", "T", "--value", `{"n":4}`, "-k", "k4", "-p", "2", "--json"))
		if len(pv) != 1 || pv[0].Partition != 2 || pv[0].Offset != 3 {
			t.Fatalf("produce --json: %+v", pv)
		}
		golden(t, "consume-format", ok(t, b, "", "consume", "T", "-p", "2", "-e", "-f", `%p@%o %k=%v [%h]\n`))
		recs := decodeLines[cli.RecordView](t, ok(t, b, "", "consume", "T", "-e", "--json"))
		if len(recs) != 4 || *recs[3].Key != "k4" || *recs[3].Value != `{"n":4}` || recs[0].Headers[0] != (cli.HeaderView{Key: "src", Value: "test"}) {
			t.Fatalf("consume --json: %+v", recs)
		}
		if out := ok(t, b, "", "consume", "T", "-p", "2", "-o", "-1", "-e"); out != "{\"n\":4}\n" {
			t.Fatalf("consume -o -1: %q", out)
		}
		if out := ok(t, b, "", "consume", "T", "-p", "2", "-o", "1", "-n", "2"); out != "v2\nv3\n" {
			t.Fatalf("consume -o 1 -n 2: %q", out)
		}
		if out := ok(t, b, "", "consume", "T", "--from-time", itoa64(recs[3].Timestamp), "-e", "-f", `%k\n`); out != "k4\n" {
			t.Fatalf("consume --from-time: %q", out)
		}
		fails(t, b, "UNKNOWN_TOPIC_OR_PARTITION", "consume", "T", "-p", "9", "-e")
	})

	step("group", func(t *testing.T) {
		if out := ok(t, b, "", "consume", "T", "-g", "G", "-e", "-f", `%v\n`); strings.Count(out, "\n") != 4 {
			t.Fatalf("consume -g G read:\n%s", out)
		}
		gs := decode[[]cli.GroupSummary](t, ok(t, b, "", "group", "list", "--json"))
		if len(gs) != 1 || gs[0].Group != "G" {
			t.Fatalf("group list --json: %+v", gs)
		}
		gv := decode[cli.GroupView](t, ok(t, b, "", "group", "describe", "G", "--json"))
		if gv.State != "Empty" || len(gv.Partitions) != 4 || gv.TotalLag != 0 {
			t.Fatalf("group describe --json: %+v", gv)
		}
		for _, p := range gv.Partitions {
			if p.Lag != 0 || (p.Partition == 2 && p.Committed != 4) {
				t.Fatalf("group describe partition: %+v", p)
			}
		}
		golden(t, "group-reset-dry-run", ok(t, b, "", "group", "reset-offsets", "G", "--topic", "T:2", "--to-earliest"))
		ok(t, b, "", "group", "reset-offsets", "G", "--topic", "T:2", "--to-offset", "1", "--execute")
		gv = decode[cli.GroupView](t, ok(t, b, "", "group", "describe", "G", "--json"))
		if gv.TotalLag != 3 {
			t.Fatalf("lag after reset to 1: %+v", gv)
		}
		raw := decode[map[string]any](t, ok(t, b, "", "group", "describe", "G", "--json"))
		for _, p := range raw["partitions"].([]any) {
			if _, ok := p.(map[string]any)["lag"]; !ok {
				t.Fatalf("partition without lag: %v", p)
			}
		}
		fails(t, b, "exactly one", "group", "reset-offsets", "G", "--to-earliest", "--to-latest")
		fails(t, b, "GROUP_ID_NOT_FOUND", "group", "describe", "nosuch")
		golden(t, "group-delete", ok(t, b, "", "group", "delete", "G"))

		// A running member: describe shows it with its assignment, and
		// deleting a group with members fails with Kafka's reason.
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumerGroup("active"), kgo.ConsumeTopics("T"),
			kgo.ClientID("cli-test-member"), kgo.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		go func() {
			for !cl.PollFetches(t.Context()).IsClientClosed() && t.Context().Err() == nil {
			}
		}()
		waitFor(t, 30*time.Second, func() string {
			out, err := strand(t, b, "", "group", "describe", "active", "--json")
			if err != nil {
				return err.Error()
			}
			gv := decode[cli.GroupView](t, out)
			if gv.State != "Stable" || len(gv.Members) != 1 || len(gv.Members[0].Assigned["T"]) != 4 || gv.Members[0].ClientID != "cli-test-member" {
				return "group active: " + out
			}
			return ""
		})
		fails(t, b, "NON_EMPTY_GROUP", "group", "delete", "active")
		fails(t, b, "stop its consumers first", "group", "reset-offsets", "active", "--to-earliest", "--topic", "T", "--execute")
	})

	step("log-dirs", func(t *testing.T) {
		dirs := decode[[]cli.DirView](t, ok(t, b, "", "log-dirs", "describe", "--json", "--topic", "T"))
		if len(dirs) != 3 {
			t.Fatalf("log-dirs: %d dirs, want one per broker: %+v", len(dirs), dirs)
		}
		for _, d := range dirs {
			if len(d.Partitions) != 4 {
				t.Fatalf("broker %d: %d partitions of T, want 4: %+v", d.Broker, len(d.Partitions), d.Partitions)
			}
			for _, p := range d.Partitions {
				if p.Partition == 2 && p.Size == 0 {
					t.Fatalf("broker %d: T-2 holds records but has size 0", d.Broker)
				}
			}
		}
	})

	step("reassign", func(t *testing.T) {
		out := ok(t, b, "", "reassign", "generate", "--topic", "T", "--broker-ids", "1,2", "--replication-factor", "2")
		plan := decode[cli.Plan](t, out)
		if len(plan.Partitions) != 4 || len(plan.Partitions[0].Replicas) != 2 {
			t.Fatalf("plan: %+v", plan)
		}
		file := filepath.Join(t.TempDir(), "plan.json")
		if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		golden(t, "reassign-execute", ok(t, b, "", "reassign", "execute", "--file", file, "--wait"))
		waitFor(t, 20*time.Second, func() string { // the answering broker may trail the one --wait asked
			if out := ok(t, b, "", "reassign", "status"); out != "no reassignments in progress\n" {
				return fmt.Sprintf("reassign status: %q", out)
			}
			return ""
		})
		waitFor(t, 20*time.Second, func() string {
			tv := decode[cli.TopicView](t, ok(t, b, "", "topic", "describe", "T", "--json"))
			for i, p := range tv.Partitions {
				if ids(p.Replicas) != ids(plan.Partitions[i].Replicas) {
					return fmt.Sprintf("partition %d replicas %v, plan %v", i, p.Replicas, plan.Partitions[i].Replicas)
				}
			}
			return ""
		})
	})

	step("delete", func(t *testing.T) {
		golden(t, "topic-delete", ok(t, b, "", "topic", "delete", "T"))
		fails(t, b, "UNKNOWN_TOPIC_OR_PARTITION", "topic", "delete", "T")
	})
}

// settled waits until every broker describes topic with n partitions, each
// with a leader and a full ISR (brokers apply metadata asynchronously).
func settled(t *testing.T, c *testcluster.Cluster, topic string, n int) {
	t.Helper()
	for _, nd := range c.Nodes {
		waitFor(t, 30*time.Second, func() string {
			out, err := strand(t, nd.Addr(), "", "topic", "describe", topic, "--json")
			if err != nil {
				return err.Error()
			}
			tv := decode[cli.TopicView](t, out)
			if len(tv.Partitions) != n {
				return fmt.Sprintf("node %d: %d partitions of %s, want %d", nd.ID(), len(tv.Partitions), topic, n)
			}
			for _, p := range tv.Partitions {
				if p.Leader < 0 || len(p.ISR) != len(p.Replicas) || p.HighWatermark < 0 {
					return fmt.Sprintf("node %d: %+v", nd.ID(), p)
				}
			}
			return ""
		})
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func ids(xs []int32) string { return jsonString(xs) }

// TestBrokersResolution: --brokers beats $STRAND_BROKERS beats the profile
// file beats the default.
func TestBrokersResolution(t *testing.T) {
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	t.Setenv("STRAND_PROFILE", profile)
	t.Setenv("STRAND_BROKERS", "")
	if got := cli.Brokers(""); len(got) != 1 || got[0] != cli.DefaultBrokers {
		t.Fatalf("default: %v", got)
	}
	if err := os.WriteFile(profile, []byte("# my cluster\nbrokers = p1:9092, p2:9092\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := cli.Brokers(""); strings.Join(got, ",") != "p1:9092,p2:9092" {
		t.Fatalf("profile: %v", got)
	}
	t.Setenv("STRAND_BROKERS", "e1:9092")
	if got := cli.Brokers(""); strings.Join(got, ",") != "e1:9092" {
		t.Fatalf("env: %v", got)
	}
	if got := cli.Brokers("f1:1,f2:2"); strings.Join(got, ",") != "f1:1,f2:2" {
		t.Fatalf("flag: %v", got)
	}
}

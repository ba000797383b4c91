// Package cluster holds end-to-end tests of multi-node clusters: real strand
// processes forming a Raft metadata quorum, driven by franz-go and by raw
// requests pinned to one node, under kill -9 and SIGSTOP.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/testcluster"
)

func admin(t testing.TB, addrs []string, opts ...kgo.Opt) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.RetryTimeout(20 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// view is one node's metadata, reduced to what the tests compare.
type view struct {
	controller int32
	brokers    []int32
	topics     map[string][]kmsg.MetadataResponseTopicPartition
}

func nodeView(ctx context.Context, addr string) (view, error) {
	md, err := testcluster.Metadata(ctx, addr)
	if err != nil {
		return view{}, err
	}
	v := view{controller: md.ControllerID, topics: map[string][]kmsg.MetadataResponseTopicPartition{}}
	for _, b := range md.Brokers {
		v.brokers = append(v.brokers, b.NodeID)
	}
	sort.Slice(v.brokers, func(i, j int) bool { return v.brokers[i] < v.brokers[j] })
	for _, t := range md.Topics {
		if t.Topic != nil && t.ErrorCode == 0 {
			v.topics[*t.Topic] = t.Partitions
		}
	}
	return v, nil
}

func (v view) topicNames() []string {
	var out []string
	for n := range v.topics {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// waitFor polls cond every 20 ms until it returns nil or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
	return 0
}

func activeController(t testing.TB, c *testcluster.Cluster) int32 {
	t.Helper()
	var id int32
	waitFor(t, 15*time.Second, "an active controller", func() error {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := nodeView(ctx, n.Addr())
			cancel()
			if err == nil && v.controller > 0 && c.Node(v.controller).Running() {
				id = v.controller
				return nil
			}
		}
		return fmt.Errorf("no node names a running controller")
	})
	return id
}

// TestControllerKilledDuringTopicCreation kills -9 the active controller
// while topics are being created: a new controller takes over, every creation
// that returned success is present afterwards, and all brokers (including the
// restarted one) converge on the same metadata.
func TestControllerKilledDuringTopicCreation(t *testing.T) {
	c := testcluster.StartCluster(t, 3)
	adm := admin(t, c.Addrs())
	var (
		mu      sync.Mutex
		created []string
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("churn-%03d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := adm.CreateTopic(ctx, 2, 3, nil, name)
			cancel()
			if err == nil && resp.Err == nil {
				mu.Lock()
				created = append(created, name)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	victim := activeController(t, c)
	t.Logf("killing active controller %d", victim)
	c.Node(victim).Kill()
	killedAt := time.Now()
	newCtrl := activeController(t, c)
	t.Logf("node %d is the active controller %v after the kill", newCtrl, time.Since(killedAt).Round(time.Millisecond))
	if newCtrl == victim {
		t.Fatalf("killed controller %d still reported active", victim)
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	<-done
	mu.Lock()
	want := append([]string(nil), created...)
	mu.Unlock()
	if len(want) < 5 {
		t.Fatalf("only %d topics created; the test needs a steady stream", len(want))
	}
	c.Node(victim).Restart(t)
	converged := func() error {
		var first []string
		for _, n := range c.Nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := nodeView(ctx, n.Addr())
			cancel()
			if err != nil {
				return fmt.Errorf("node %d: %w", n.ID(), err)
			}
			for _, name := range want {
				if _, ok := v.topics[name]; !ok {
					return fmt.Errorf("node %d lacks acknowledged topic %s", n.ID(), name)
				}
			}
			names := v.topicNames()
			if first == nil {
				first = names
			} else if !slices.Equal(first, names) {
				return fmt.Errorf("node %d lists %d topics, node 1 lists %d", n.ID(), len(names), len(first))
			}
		}
		return nil
	}
	waitFor(t, 20*time.Second, "metadata convergence", converged)
	t.Logf("%d acknowledged topic creations, all present on all 3 nodes", len(want))
}

// TestBrokerFencedAndRejoins kills -9 (and separately pauses) a broker that
// leads partitions: after broker.session.timeout.ms it is fenced, dropped
// from the brokers clients see, and its partitions get new leaders with a
// higher leader epoch; restarted (or resumed) it registers again. The time
// from kill to new leaders visible in Metadata is logged.
func TestBrokerFencedAndRejoins(t *testing.T) {
	c := testcluster.StartCluster(t, 3)
	adm := admin(t, c.Addrs())
	var took []time.Duration
	for round := range 4 {
		topic := fmt.Sprintf("fence-%d", round)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if _, err := adm.CreateTopic(ctx, 6, 3, nil, topic); err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
		cancel()
		victim := int32(round%3 + 1)
		observer := c.Node(victim%3 + 1)
		var before []kmsg.MetadataResponseTopicPartition
		waitFor(t, 10*time.Second, fmt.Sprintf("topic visible with a leader on %d", victim), func() error {
			v, err := nodeView(context.Background(), observer.Addr())
			if err != nil {
				return err
			}
			before = v.topics[topic]
			for _, p := range before {
				if p.Leader == victim {
					return nil
				}
			}
			return fmt.Errorf("broker %d leads no partition of %s yet", victim, topic)
		})
		pause := round%2 == 1
		if pause {
			if err := c.Node(victim).Pause(); err != nil {
				t.Fatal(err)
			}
		} else {
			c.Node(victim).Kill()
		}
		d := waitFor(t, 20*time.Second, fmt.Sprintf("broker %d fenced and its partitions moved", victim), func() error {
			v, err := nodeView(context.Background(), observer.Addr())
			if err != nil {
				return err
			}
			if slices.Contains(v.brokers, victim) {
				return fmt.Errorf("broker %d still listed", victim)
			}
			for i, p := range v.topics[topic] {
				if p.Leader == victim || p.Leader < 0 {
					return fmt.Errorf("partition %d led by %d", p.Partition, p.Leader)
				}
				if before[i].Leader == victim && p.LeaderEpoch <= before[i].LeaderEpoch {
					return fmt.Errorf("partition %d has a new leader but epoch %d <= %d", p.Partition, p.LeaderEpoch, before[i].LeaderEpoch)
				}
				if slices.Contains(p.ISR, victim) {
					return fmt.Errorf("partition %d ISR %v still holds %d", p.Partition, p.ISR, victim)
				}
			}
			return nil
		})
		took = append(took, d)
		how := "killed"
		if pause {
			how = "paused"
			if err := c.Node(victim).Resume(); err != nil {
				t.Fatal(err)
			}
		} else {
			c.Node(victim).Restart(t)
		}
		t.Logf("round %d: broker %d %s; new leaders visible after %v", round, victim, how, d.Round(time.Millisecond))
		waitFor(t, 20*time.Second, fmt.Sprintf("broker %d rejoins", victim), func() error {
			v, err := nodeView(context.Background(), observer.Addr())
			if err != nil {
				return err
			}
			if !slices.Contains(v.brokers, victim) {
				return fmt.Errorf("broker %d not listed", victim)
			}
			return nil
		})
	}
	// Preferred-leader election over the wire: each partition answers
	// success, ELECTION_NOT_NEEDED, or PREFERRED_LEADER_NOT_AVAILABLE when
	// its preferred replica has not caught up back into the ISR yet.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{"fence-0": {0: {}, 1: {}, 2: {}}})
	if err != nil {
		t.Fatalf("ElectLeaders: %v", err)
	}
	for _, ps := range res {
		for p, r := range ps {
			if r.Err != nil && !errors.Is(r.Err, kerr.PreferredLeaderNotAvailable) && !errors.Is(r.Err, kerr.ElectionNotNeeded) {
				t.Fatalf("ElectLeaders fence-0/%d: %v", p, r.Err)
			}
		}
	}
	slices.Sort(took)
	t.Logf("kill/pause to new leaders in Metadata over %d rounds: median %v, max %v (session timeout 3s)",
		len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// TestMinorityCannotChangeMetadata: with two of three controllers frozen
// (SIGSTOP; to the quorum that is the same as cut off) the remaining one
// cannot commit a change; with one frozen, the majority can, and the frozen
// one catches up when it returns.
func TestMinorityCannotChangeMetadata(t *testing.T) {
	c := testcluster.StartCluster(t, 3)
	lone := c.Node(1)
	for _, id := range []int32{2, 3} {
		if err := c.Node(id).Pause(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "minority", 1, 1
	req.Topics = append(req.Topics, rt)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	err := testcluster.RawRequest(ctx, lone.Addr(), req, resp)
	cancel()
	if err == nil && resp.Topics[0].ErrorCode == 0 {
		t.Fatalf("a lone controller (1 of 3) committed a topic creation")
	}
	if err == nil {
		t.Logf("minority create answered %v", kerr.ErrorForCode(resp.Topics[0].ErrorCode))
	}
	v, err := nodeView(context.Background(), lone.Addr())
	if err == nil {
		if _, ok := v.topics["minority"]; ok {
			t.Fatalf("the minority node shows an uncommitted topic")
		}
	}
	for _, id := range []int32{2, 3} {
		if err := c.Node(id).Resume(); err != nil {
			t.Fatal(err)
		}
	}

	// Now freeze one node: the other two are a majority.
	if err := lone.Pause(); err != nil {
		t.Fatal(err)
	}
	// The frozen node may be the controller clients were told about; a short
	// request timeout lets the client give up on it and refresh metadata.
	adm := admin(t, []string{c.Node(2).Addr(), c.Node(3).Addr()}, kgo.RequestTimeoutOverhead(2*time.Second), kgo.MetadataMinAge(250*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	adm.SetTimeoutMillis(3000)
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Retry as a client would: an attempt sent to the frozen node times out
	// (and may or may not have been applied, hence TOPIC_ALREADY_EXISTS is
	// success too).
	for {
		cr, err := adm.CreateTopic(ctx, 1, 1, nil, "majority")
		if err == nil && (cr.Err == nil || errors.Is(cr.Err, kerr.TopicAlreadyExists)) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("majority could not create a topic: %v %v", err, cr.Err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := lone.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "resumed node catches up", func() error {
		v, err := nodeView(context.Background(), lone.Addr())
		if err != nil {
			return err
		}
		if _, ok := v.topics["majority"]; !ok {
			return fmt.Errorf("node 1 topics: %s", strings.Join(v.topicNames(), ","))
		}
		return nil
	})
}

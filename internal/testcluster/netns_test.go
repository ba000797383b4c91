package testcluster

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperFlag, among the arguments of `<test binary> server ...`, turns the
// test binary into a fake broker (see TestMain): it listens on every address
// of --listeners and greets each connection with one line naming its node,
// listener and pid. The netns tests run it as a Node's binary, through the
// same `ip netns exec` wrapping as the real broker.
const helperFlag = "--testcluster-netns-helper"

// dialHelperArg, as the test binary's only argument before an address, makes
// it dial that address, print the greeting and exit (see reach).
const dialHelperArg = "testcluster-netns-dial"

// envFailHelper makes TestNetClusterFailingHelper (run in a child process by
// TestNetClusterCleanupOnFailure) set up a cluster and then fail.
const envFailHelper = "STRAND_TESTCLUSTER_NETNS_FAIL_HELPER"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "server" && slices.Contains(os.Args, helperFlag) {
		os.Exit(fakeBroker(os.Args[2:]))
	}
	if len(os.Args) == 3 && os.Args[1] == dialHelperArg {
		line, err := dial(os.Args[2])
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(line)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func fakeBroker(args []string) int {
	id, listeners := "?", ""
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--node-id":
			id = args[i+1]
		case "--listeners":
			listeners = args[i+1]
		}
	}
	for _, l := range strings.Split(listeners, ",") {
		name, addr, ok := strings.Cut(l, "://")
		if !ok {
			fmt.Fprintf(os.Stderr, "fake broker: bad listener %q\n", l)
			return 2
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fake broker: %v\n", err)
			return 1
		}
		fmt.Printf("fake broker %s: %s on %s\n", id, name, addr)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					continue
				}
				fmt.Fprintf(c, "node=%s listener=%s pid=%d\n", id, name, os.Getpid())
				c.Close()
			}
		}()
	}
	select {}
}

// reach dials addr from network namespace ns ("" for the test's own) and
// returns the fake broker's greeting. From another namespace it runs this
// test binary as a dialer through `ip netns exec`.
func reach(ns, addr string) (string, error) {
	if ns == "" {
		return dial(addr)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	out, err := exec.Command("ip", "netns", "exec", ns, exe, dialHelperArg, addr).CombinedOutput()
	line := strings.TrimSpace(string(out))
	if err != nil {
		return "", fmt.Errorf("%s (%v)", line, err)
	}
	return line, nil
}

func dial(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 700*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(700 * time.Millisecond))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func from(ns string) string {
	if ns == "" {
		return "root netns"
	}
	return "netns " + ns
}

// expectReach polls (up to 10 s) until addr answers from ns with a greeting
// starting with want.
func expectReach(t *testing.T, ns, addr, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		line, err := reach(ns, addr)
		if err == nil && strings.HasPrefix(line, want) {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s from %s: got %q, %v; want greeting %q", addr, from(ns), line, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expectNoReach checks that addr does not answer from ns.
func expectNoReach(t *testing.T, ns, addr string) {
	t.Helper()
	if line, err := reach(ns, addr); err == nil {
		t.Fatalf("%s from %s: reachable (%q), want cut off", addr, from(ns), line)
	} else {
		t.Logf("%s from %s: %v (as expected)", addr, from(ns), err)
	}
}

// startFakeNetCluster sets up an n-node netns network and starts the fake
// broker (this test binary) as every node, through newNetCluster and
// Node.Start exactly as StartNetCluster starts the broker, and waits until
// each node answers on its client address.
func startFakeNetCluster(t *testing.T, n int) (*netEnv, *Cluster) {
	t.Helper()
	env := setupNet(t, n)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := newNetCluster(t, env, withBinary(exe), WithArgs(helperFlag))
	for _, nd := range c.Nodes {
		nd.Start(t)
	}
	for _, nd := range c.Nodes {
		want := fmt.Sprintf("node=%d listener=PLAINTEXT pid=%d", nd.ID(), nd.Pid())
		expectReach(t, "", nd.Addr(), want) // the pid shows ip netns exec exec'd in place
	}
	return env, c
}

func TestNetClusterIsolateHeal(t *testing.T) {
	t.Parallel()
	env, c := startFakeNetCluster(t, 3)
	for i := 1; i <= 3; i++ {
		nd := c.Node(int32(i))
		if got, want := nd.Addr(), fmt.Sprintf("10.%d.1.%d:9092", env.x, i); got != want {
			t.Fatalf("node %d Addr %s, want %s", i, got, want)
		}
		if got, want := nd.ControllerAddr(), fmt.Sprintf("10.%d.2.%d:9094", env.x, i); got != want {
			t.Fatalf("node %d ControllerAddr %s, want %s", i, got, want)
		}
	}
	if got := c.Addrs(); len(got) != 3 || got[2] != env.clientAddr(3) {
		t.Fatalf("Addrs %v", got)
	}
	log := c.Node(1).LogTail(50)
	for _, want := range []string{
		"netns exec " + env.ns(1) + " ",
		"--listeners PLAINTEXT://" + env.clientAddr(1) + ",REPLICATION://" + env.replAddr(1) + ",CONTROLLER://" + env.ctrlAddr(1) + " ",
		"--set inter.broker.listener.name=REPLICATION",
		"--set controller.quorum.voters=1@" + env.ctrlAddr(1) + ",2@" + env.ctrlAddr(2) + ",3@" + env.ctrlAddr(3) + " ",
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("node 1 command line lacks %q:\n%s", want, log)
		}
	}

	ns1, ns2, ns3 := env.ns(1), env.ns(2), env.ns(3)
	healthy := func() {
		t.Helper()
		for i := 1; i <= 3; i++ {
			expectReach(t, "", env.clientAddr(i), fmt.Sprintf("node=%d listener=PLAINTEXT", i))
		}
		expectReach(t, ns2, env.replAddr(1), "node=1 listener=REPLICATION")
		expectReach(t, ns3, env.ctrlAddr(1), "node=1 listener=CONTROLLER")
		expectReach(t, ns1, env.replAddr(2), "node=2 listener=REPLICATION")
		expectReach(t, ns1, env.ctrlAddr(3), "node=3 listener=CONTROLLER")
		expectReach(t, ns2, env.replAddr(3), "node=3 listener=REPLICATION")
	}
	healthy()
	// Nodes reach each other only over the cluster network.
	expectNoReach(t, ns2, env.clientAddr(1))
	expectNoReach(t, ns1, env.clientAddr(3))

	if err := c.Isolate(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Isolate(1); err != nil { // idempotent
		t.Fatal(err)
	}
	expectReach(t, "", env.clientAddr(1), "node=1 listener=PLAINTEXT")
	expectNoReach(t, ns2, env.replAddr(1))
	expectNoReach(t, ns3, env.ctrlAddr(1))
	expectNoReach(t, ns1, env.replAddr(2))
	expectNoReach(t, ns1, env.ctrlAddr(3))
	expectReach(t, ns1, env.ctrlAddr(1), "node=1 listener=CONTROLLER") // itself
	expectReach(t, ns2, env.replAddr(3), "node=3 listener=REPLICATION")
	expectReach(t, ns3, env.ctrlAddr(2), "node=2 listener=CONTROLLER")

	if err := c.Heal(1); err != nil {
		t.Fatal(err)
	}
	healthy()

	// Heal restores the node's cluster address and route should they be gone
	// (taking the node-side interface down drops the route, for example).
	if err := c.Isolate(1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.run("-n", ns1, "addr", "flush", "dev", nsClusterIf); err != nil {
		t.Fatal(err)
	}
	if _, err := env.run("-n", ns1, "link", "set", "dev", nsClusterIf, "down"); err != nil {
		t.Fatal(err)
	}
	if err := c.Heal(1); err != nil {
		t.Fatal(err)
	}
	healthy()

	// Signals reach the process itself: kill, start again, pause, resume.
	n2 := c.Node(2)
	oldPid := n2.Pid()
	n2.Kill()
	if out, err := env.run("netns", "pids", ns2); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("netns %s pids after Kill: %q %v", ns2, out, err)
	}
	expectNoReach(t, "", env.clientAddr(2))
	n2.Start(t)
	if n2.Pid() == oldPid {
		t.Fatalf("same pid after restart")
	}
	expectReach(t, "", env.clientAddr(2), fmt.Sprintf("node=2 listener=PLAINTEXT pid=%d", n2.Pid()))
	expectReach(t, ns1, env.replAddr(2), "node=2 listener=REPLICATION")
	if err := c.Node(3).Pause(); err != nil {
		t.Fatal(err)
	}
	expectNoReach(t, "", env.clientAddr(3)) // connects (kernel backlog) but no greeting
	if err := c.Node(3).Resume(); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "", env.clientAddr(3), "node=3 listener=PLAINTEXT")

	for _, id := range []int32{0, 4} {
		if err := c.Isolate(id); err == nil {
			t.Fatalf("Isolate(%d) on a 3-node cluster: no error", id)
		}
	}
	if err := (&Cluster{}).Heal(1); err == nil {
		t.Fatalf("Heal on a cluster without netns: no error")
	}
}

// TestNetClusterCleanup: when the test ends, the processes in the namespaces
// (nodes and anything else) are killed and the namespaces, veths and bridges
// are gone.
func TestNetClusterCleanup(t *testing.T) {
	t.Parallel()
	var (
		env   *netEnv
		pids  []int
		stray = make(chan struct{})
	)
	t.Run("cluster", func(t *testing.T) {
		var c *Cluster
		env, c = startFakeNetCluster(t, 2)
		for _, nd := range c.Nodes {
			pids = append(pids, nd.Pid())
		}
		// A process the Node type does not know about must not keep the
		// namespace alive either.
		exe, _ := os.Executable()
		cmd := exec.Command(env.ip, append(env.wrap(2)[1:], exe, "server", helperFlag,
			"--listeners", "PLAINTEXT://"+env.clientIP(2)+":9999")...)
		cmd.SysProcAttr = sysProcAttr()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd.Wait(); close(stray) }()
		expectReach(t, "", env.clientIP(2)+":9999", "node=? listener=PLAINTEXT")
		pids = append(pids, cmd.Process.Pid)
	})
	if env == nil || env.sfx == "" {
		t.Skip("setup skipped")
	}
	select {
	case <-stray:
	case <-time.After(10 * time.Second):
		t.Fatalf("stray process in netns still running after cleanup")
	}
	checkNoLeftovers(t, env.sfx)
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still exists after cleanup", pid)
		}
	}
}

// TestNetClusterFailingHelper, run only in a child process by
// TestNetClusterCleanupOnFailure, sets up a cluster and fails.
func TestNetClusterFailingHelper(t *testing.T) {
	if os.Getenv(envFailHelper) != "1" {
		t.Skip("helper for TestNetClusterCleanupOnFailure")
	}
	_, c := startFakeNetCluster(t, 2)
	if err := c.Isolate(2); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("deliberate failure with the cluster running")
}

// TestNetClusterCleanupOnFailure: a test that fails (t.Fatal) with a netns
// cluster running leaves nothing behind.
func TestNetClusterCleanupOnFailure(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestNetClusterFailingHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envFailHelper+"=1")
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "--- SKIP") {
		t.Skipf("helper skipped:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "deliberate failure") {
		t.Fatalf("helper did not fail as intended (%v):\n%s", err, out)
	}
	m := regexp.MustCompile(`netns cluster ([0-9a-f]{6}):`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no cluster suffix in helper output:\n%s", out)
	}
	if strings.Contains(string(out), "netns cleanup") {
		t.Fatalf("helper reported cleanup trouble:\n%s", out)
	}
	checkNoLeftovers(t, m[1])
}

func checkNoLeftovers(t *testing.T, sfx string) {
	t.Helper()
	e := &netEnv{sfx: sfx}
	if left := e.leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	for _, args := range [][]string{{"netns", "list"}, {"-o", "link", "show"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		if strings.Contains(string(out), netPrefix+sfx) {
			t.Errorf("ip %s still lists %s%s:\n%s", strings.Join(args, " "), netPrefix, sfx, out)
		}
	}
}

// TestNetStaleSweep: links the harness tagged more than netStaleAge ago are
// removed; fresh ones and untagged ones are not.
func TestNetStaleSweep(t *testing.T) {
	t.Parallel()
	e := setupNet(t, 1) // skips without netns support
	sw := &netEnv{t: t, ip: e.ip, sfx: fmt.Sprintf("%06x", rand.Uint32()&0xffffff)}
	names := map[string]string{
		sw.clientBridge():  netAliasTag + strconv.FormatInt(time.Now().Add(-2*time.Hour).Unix(), 10), // stale
		sw.clusterBridge(): netAliasTag + strconv.FormatInt(time.Now().Unix(), 10),                   // fresh
		sw.clientVeth(1):   "someone else's",
		sw.clusterVeth(1):  "",
	}
	t.Cleanup(func() {
		for name := range names {
			if linkExists(name) {
				sw.run("link", "del", "dev", name)
			}
		}
	})
	for name, alias := range names {
		if _, err := sw.run("link", "add", name, "type", "bridge"); err != nil {
			t.Fatal(err)
		}
		if alias != "" {
			if _, err := sw.run("link", "set", "dev", name, "alias", alias); err != nil {
				t.Fatal(err)
			}
		}
	}
	sw.sweepStale()
	for name, alias := range names {
		stale := name == sw.clientBridge()
		if linkExists(name) == stale {
			t.Errorf("link %s (alias %q): exists=%v after sweep", name, alias, !stale)
		}
	}
	if left := e.leftovers(); len(left) == 0 {
		t.Errorf("sweep removed this test's own fresh network")
	}
}

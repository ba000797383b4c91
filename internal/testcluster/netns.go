package testcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Network-namespace clusters.
//
// StartNetCluster runs every node in its own Linux network namespace with two
// interfaces, each on a bridge private to the test:
//
//	client bridge  10.X.1.0/24: node i is 10.X.1.i (PLAINTEXT :9092), the
//	               test process (root namespace) is 10.X.1.254
//	cluster bridge 10.X.2.0/24: node i is 10.X.2.i (REPLICATION :9093,
//	               CONTROLLER :9094); the root namespace has no address here
//
// Brokers talk to each other only over the cluster bridge (client bridge ports
// are isolated from one another: a node reaches the root namespace there, not
// other nodes). Isolate(id) takes node id's cluster link down, so the node can
// neither reach nor be reached by other brokers and controllers while clients
// in the test process still reach its PLAINTEXT listener; Heal(id) restores
// the link. Typical split-brain test:
//
//	c := testcluster.StartNetCluster(t, 3)
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
//	...
//	if err := c.Isolate(1); err != nil { t.Fatal(err) }
//	// node 1 still answers clients at c.Node(1).Addr(), but is cut off
//	// from nodes 2 and 3 (and they from it).
//	if err := c.Heal(1); err != nil { t.Fatal(err) }
//
// It needs root and iproute2 (`ip`). Without them the test is skipped, or
// fails when CI=true.

// Fixed ports: every node has its own addresses, so they cannot collide.
const (
	netClientPort = 9092
	netReplPort   = 9093
	netCtrlPort   = 9094
)

// netPrefix starts every netns and interface name the harness creates:
// netns stcSSSSSS-<i>, bridges stcSSSSSSc / stcSSSSSSr, root-side veths
// stcSSSSSSc<i> / stcSSSSSSr<i> (SSSSSS: random per-test hex suffix).
const netPrefix = "stc"

// Interface names inside a node's namespace.
const (
	nsClientIf  = "client0"
	nsClusterIf = "cluster0"
)

// netAliasTag marks the root-namespace links the harness created (in their
// ifalias, followed by the creation time) so stale ones can be found.
const netAliasTag = "strand-testcluster created="

// netStaleAge is the age after which leftovers of crashed test processes
// (name prefix netPrefix) are removed.
const netStaleAge = time.Hour

var (
	staleNetnsRE = regexp.MustCompile(`^` + netPrefix + `[0-9a-f]{6}-[0-9]+$`)
	staleLinkRE  = regexp.MustCompile(`^` + netPrefix + `[0-9a-f]{6}[cr][0-9]*$`)
	staleSweep   sync.Once
)

// netClusters maps a *Cluster started by StartNetCluster to its network.
var netClusters sync.Map

// netEnv is the network of one netns cluster.
type netEnv struct {
	t   testing.TB
	ip  string // path of the ip command
	x   int    // second octet of every address
	sfx string // random per-test name suffix
	n   int

	mu      sync.Mutex
	netns   []string // created namespaces
	veths   []string // created root-side veths
	bridges []string // created bridges
}

func (e *netEnv) ns(i int) string          { return fmt.Sprintf("%s%s-%d", netPrefix, e.sfx, i) }
func (e *netEnv) clientBridge() string     { return netPrefix + e.sfx + "c" }
func (e *netEnv) clusterBridge() string    { return netPrefix + e.sfx + "r" }
func (e *netEnv) clientVeth(i int) string  { return fmt.Sprintf("%s%sc%d", netPrefix, e.sfx, i) }
func (e *netEnv) clusterVeth(i int) string { return fmt.Sprintf("%s%sr%d", netPrefix, e.sfx, i) }
func (e *netEnv) clientIP(i int) string    { return fmt.Sprintf("10.%d.1.%d", e.x, i) }
func (e *netEnv) clusterIP(i int) string   { return fmt.Sprintf("10.%d.2.%d", e.x, i) }
func (e *netEnv) rootIP() string           { return fmt.Sprintf("10.%d.1.254", e.x) }
func (e *netEnv) clientAddr(i int) string  { return e.clientIP(i) + ":" + strconv.Itoa(netClientPort) }
func (e *netEnv) replAddr(i int) string    { return e.clusterIP(i) + ":" + strconv.Itoa(netReplPort) }
func (e *netEnv) ctrlAddr(i int) string    { return e.clusterIP(i) + ":" + strconv.Itoa(netCtrlPort) }
func (e *netEnv) wrap(i int) []string      { return []string{e.ip, "netns", "exec", e.ns(i)} }
func (e *netEnv) subnet(side int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", e.x, side))
}

// StartNetCluster is StartCluster (same liveness settings, same readiness
// wait) with every node in its own network namespace, started through
// `ip netns exec` (see the comment at the top of this file): node i (1..n) serves
// clients at 10.X.1.i:9092 (Node.Addr), replication at 10.X.2.i:9093 and the
// controller quorum at 10.X.2.i:9094, with inter.broker.listener.name=
// REPLICATION. Kill, Pause, Restart etc. work as usual; Isolate and Heal cut
// and restore a node's cluster-side link. Namespaces and bridges are removed
// when the test ends. It skips the test without root or netns support (fails
// it when CI=true).
func StartNetCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	env := setupNet(t, n)
	c := newNetCluster(t, env, opts...)
	c.startAll(t)
	return c
}

// newNetCluster creates (without starting) the nodes of a netns cluster on
// env. Cleanups run in reverse order: the nodes' own (kill, log tail), then
// this one (kill every node), then env's teardown (kill anything left in the
// namespaces, delete the network).
func newNetCluster(t testing.TB, env *netEnv, opts ...Option) *Cluster {
	t.Helper()
	voters := make([]string, env.n)
	for i := range env.n {
		voters[i] = fmt.Sprintf("%d@%s", i+1, env.ctrlAddr(i+1))
	}
	c := &Cluster{}
	netClusters.Store(c, env)
	t.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Kill()
		}
		netClusters.Delete(c)
	})
	for i := range env.n {
		id := i + 1
		o := append([]Option{
			WithNodeID(int32(id)),
			WithSet("controller.quorum.voters", strings.Join(voters, ",")),
			WithSet("inter.broker.listener.name", "REPLICATION"),
			WithSet("broker.session.timeout.ms", "3000"),
			WithSet("broker.heartbeat.interval.ms", "300"),
			WithSet("controller.quorum.election.timeout.ms", "500"),
		}, opts...)
		o = append(o, func(cfg *nodeConfig) {
			cfg.nodeID = int32(id)
			cfg.addr = env.clientAddr(id)
			cfg.replAddr = env.replAddr(id)
			cfg.ctrlAddr = env.ctrlAddr(id)
			cfg.wrap = env.wrap(id)
		})
		c.Nodes = append(c.Nodes, NewNode(t, o...))
	}
	return c
}

// withBinary runs path instead of the broker binary (self-tests).
func withBinary(path string) Option {
	return func(c *nodeConfig) { c.bin = path }
}

func (c *Cluster) netEnv(id int32) (*netEnv, error) {
	v, ok := netClusters.Load(c)
	if !ok {
		return nil, errors.New("testcluster: not a network-namespace cluster (use StartNetCluster)")
	}
	env := v.(*netEnv)
	if id < 1 || int(id) > env.n {
		return nil, fmt.Errorf("testcluster: no node %d (cluster has %d)", id, env.n)
	}
	return env, nil
}

// Isolate cuts node id's cluster-side link: it can no longer reach, nor be
// reached by, the other brokers and controllers (their packets are dropped,
// as in a real partition: established connections stall, new ones time out or
// fail with "no route to host" after ARP gives up), while clients still reach
// its PLAINTEXT listener. The node keeps its addresses, so it can still reach
// its own cluster-side listeners. Isolating an isolated node is a no-op.
func (c *Cluster) Isolate(id int32) error {
	env, err := c.netEnv(id)
	if err != nil {
		return err
	}
	return env.isolate(int(id))
}

// Heal undoes Isolate: it brings node id's cluster-side link back up, checks
// that the node's cluster address and route are in place (restoring them if
// not) and waits until the link forwards.
func (c *Cluster) Heal(id int32) error {
	env, err := c.netEnv(id)
	if err != nil {
		return err
	}
	return env.heal(int(id))
}

// isolate takes the root-side peer of node i's cluster veth down (the bridge
// stops forwarding to it, the node's side loses carrier). Unlike taking the
// node-side interface down, this keeps the node's own addresses and routes.
func (e *netEnv) isolate(i int) error {
	_, err := e.run("link", "set", "dev", e.clusterVeth(i), "down")
	return err
}

func (e *netEnv) heal(i int) error {
	if _, err := e.run("link", "set", "dev", e.clusterVeth(i), "up"); err != nil {
		return err
	}
	ns := e.ns(i)
	if _, err := e.run("-n", ns, "link", "set", "dev", nsClusterIf, "up"); err != nil {
		return err
	}
	out, err := e.run("-n", ns, "-4", "-o", "addr", "show", "dev", nsClusterIf)
	if err != nil {
		return err
	}
	if !strings.Contains(out, " inet "+e.clusterIP(i)+"/24 ") {
		if _, err := e.run("-n", ns, "addr", "add", e.clusterIP(i)+"/24", "dev", nsClusterIf); err != nil {
			return err
		}
	}
	out, err = e.run("-n", ns, "-4", "route", "show", "dev", nsClusterIf)
	if err != nil {
		return err
	}
	if !hasLinePrefix(out, e.subnet(2).String()+" ") {
		if _, err := e.run("-n", ns, "route", "replace", e.subnet(2).String(), "dev", nsClusterIf,
			"proto", "kernel", "scope", "link", "src", e.clusterIP(i)); err != nil {
			return err
		}
	}
	// The node side has carrier once the peer is up; with STP off the bridge
	// port forwards at once. Check both rather than assume.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nsLink, err1 := e.run("-n", ns, "-o", "link", "show", "dev", nsClusterIf)
		port, err2 := e.run("-d", "-o", "link", "show", "dev", e.clusterVeth(i))
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if strings.Contains(nsLink, "LOWER_UP") && strings.Contains(port, "bridge_slave state forwarding") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testcluster: heal node %d: link not forwarding after 5s:\n%s\n%s", i, nsLink, port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasLinePrefix(s, prefix string) bool {
	for line := range strings.Lines(s) {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// netUnavailable skips t, or fails it when CI=true (CI must run these tests).
func netUnavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("testcluster: network namespaces unavailable on CI (CI=true): %s", msg)
	}
	t.Skipf("testcluster: network namespaces unavailable: %s (needs root and iproute2; CI runs this test)", msg)
}

// setupNet creates the bridges and namespaces of an n-node netns cluster and
// registers their removal with t.Cleanup (registered before anything is
// created, so a failure half-way still cleans up).
func setupNet(t testing.TB, n int) *netEnv {
	t.Helper()
	if n < 1 || n > 253 {
		t.Fatalf("testcluster: StartNetCluster: %d nodes, want 1..253", n)
	}
	if os.Geteuid() != 0 {
		netUnavailable(t, "not root")
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
			if _, serr := os.Stat(p); serr == nil {
				ipPath, err = p, nil
				break
			}
		}
	}
	if err != nil {
		netUnavailable(t, "ip (iproute2) not found: %v", err)
	}
	e := &netEnv{t: t, ip: ipPath, n: n}
	staleSweep.Do(e.sweepStale)
	for {
		e.sfx = fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
		_, err1 := os.Stat(filepath.Join("/run/netns", e.ns(1)))
		_, err2 := os.Stat(filepath.Join("/sys/class/net", e.clientBridge()))
		if os.IsNotExist(err1) && os.IsNotExist(err2) {
			break
		}
	}
	t.Cleanup(e.teardown)

	// A namespace first: if that fails the host cannot run these tests.
	if err := e.addNetns(1); err != nil {
		netUnavailable(t, "%v", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("testcluster: netns setup: %v", err)
		}
	}
	must(e.addLink(e.clientBridge(), true, "type", "bridge"))
	must(e.addLink(e.clusterBridge(), true, "type", "bridge"))
	for _, br := range []string{e.clientBridge(), e.clusterBridge()} {
		_, err := e.run("link", "set", "dev", br, "up")
		must(err)
	}
	must(e.pickSubnet())
	for i := 1; i <= n; i++ {
		if i > 1 {
			must(e.addNetns(i))
		}
		must(e.addNode(i))
	}
	t.Logf("testcluster: netns cluster %s: clients on %s (root %s, bridge %s), cluster on %s (bridge %s)",
		e.sfx, e.subnet(1), e.rootIP(), e.clientBridge(), e.subnet(2), e.clusterBridge())
	return e
}

// pickSubnet chooses X (100..250) so that no other route or address in the
// root namespace covers 10.X.1.0/24 or 10.X.2.0/24 with a prefix at least as
// long, and gives the root namespace 10.X.1.254 on the client bridge. It
// checks again after adding the address in case a parallel test picked the
// same X at the same moment.
func (e *netEnv) pickSubnet() error {
	br := e.clientBridge()
	for attempt := 0; attempt < 20; attempt++ {
		e.x = 100 + rand.IntN(151)
		if inUse, err := e.subnetInUse(""); err != nil {
			return err
		} else if inUse {
			continue
		}
		if _, err := e.run("addr", "add", e.rootIP()+"/24", "dev", br); err != nil {
			return err
		}
		inUse, err := e.subnetInUse(br)
		if err != nil {
			return err
		}
		if !inUse {
			return nil
		}
		if _, err := e.run("addr", "del", e.rootIP()+"/24", "dev", br); err != nil {
			return err
		}
	}
	return errors.New("no free 10.X.0.0/16 subnet found for X in 100..250")
}

// subnetInUse reports whether an interface other than own has an address in,
// or a main-table route at least as specific as, 10.X.1.0/24 or 10.X.2.0/24.
func (e *netEnv) subnetInUse(own string) (bool, error) {
	mine := []netip.Prefix{e.subnet(1), e.subnet(2)}
	clash := func(p netip.Prefix) bool {
		for _, m := range mine {
			if p.Overlaps(m) && p.Bits() >= m.Bits() {
				return true
			}
		}
		return false
	}
	addrs, err := e.run("-4", "-o", "addr", "show")
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(addrs) {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" || strings.TrimSuffix(f[1], ":") == own {
			continue
		}
		if p, err := netip.ParsePrefix(f[3]); err == nil && clash(netip.PrefixFrom(p.Addr(), 32)) {
			return true, nil
		}
	}
	routes, err := e.run("-4", "route", "show", "table", "main")
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(routes) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		dst := f[0]
		if len(f) > 1 && (f[0] == "unreachable" || f[0] == "blackhole" || f[0] == "prohibit" || f[0] == "throw") {
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil || !clash(p) {
			continue
		}
		dev := ""
		for j := 0; j+1 < len(f); j++ {
			if f[j] == "dev" {
				dev = f[j+1]
			}
		}
		if own == "" || dev != own {
			return true, nil
		}
	}
	return false, nil
}

func (e *netEnv) addNetns(i int) error {
	ns := e.ns(i)
	if _, err := e.run("netns", "add", ns); err != nil {
		return err
	}
	e.mu.Lock()
	e.netns = append(e.netns, ns)
	e.mu.Unlock()
	_, err := e.run("-n", ns, "link", "set", "dev", "lo", "up")
	return err
}

// addLink creates a root-namespace link and tags it for the stale sweep.
func (e *netEnv) addLink(name string, bridge bool, args ...string) error {
	if _, err := e.run(append([]string{"link", "add", name}, args...)...); err != nil {
		return err
	}
	e.mu.Lock()
	if bridge {
		e.bridges = append(e.bridges, name)
	} else {
		e.veths = append(e.veths, name)
	}
	e.mu.Unlock()
	_, err := e.run("link", "set", "dev", name, "alias", netAliasTag+strconv.FormatInt(time.Now().Unix(), 10))
	return err
}

// addNode wires namespace i to both bridges. The node-side veth ends are
// created directly inside the namespace, so their fixed names never clash.
func (e *netEnv) addNode(i int) error {
	ns := e.ns(i)
	sides := []struct {
		veth, nsIf, bridge, ip string
		isolated               bool
	}{
		{e.clientVeth(i), nsClientIf, e.clientBridge(), e.clientIP(i), true},
		{e.clusterVeth(i), nsClusterIf, e.clusterBridge(), e.clusterIP(i), false},
	}
	for _, s := range sides {
		if err := e.addLink(s.veth, false, "type", "veth", "peer", "name", s.nsIf, "netns", ns); err != nil {
			return err
		}
		if _, err := e.run("link", "set", "dev", s.veth, "master", s.bridge); err != nil {
			return err
		}
		if s.isolated {
			// Nodes must not reach each other over the client network, only
			// the root namespace (the bridge itself) there.
			if _, err := e.run("link", "set", "dev", s.veth, "type", "bridge_slave", "isolated", "on"); err != nil {
				return err
			}
		}
		if _, err := e.run("link", "set", "dev", s.veth, "up"); err != nil {
			return err
		}
		if _, err := e.run("-n", ns, "addr", "add", s.ip+"/24", "dev", s.nsIf); err != nil {
			return err
		}
		if _, err := e.run("-n", ns, "link", "set", "dev", s.nsIf, "up"); err != nil {
			return err
		}
	}
	return nil
}

// teardown kills whatever still runs in the namespaces, then deletes the
// veths (which removes both ends at once), the namespaces and the bridges,
// and fails the test if anything of it is left.
func (e *netEnv) teardown() {
	e.mu.Lock()
	netns := append([]string(nil), e.netns...)
	veths := append([]string(nil), e.veths...)
	bridges := append([]string(nil), e.bridges...)
	e.mu.Unlock()
	for _, ns := range netns {
		e.killAll(ns)
	}
	var errs []error
	for _, v := range veths {
		if _, err := e.run("link", "del", "dev", v); err != nil && linkExists(v) {
			errs = append(errs, err)
		}
	}
	for _, ns := range netns {
		if _, err := e.run("netns", "del", ns); err != nil && netnsExists(ns) {
			errs = append(errs, err)
		}
	}
	for _, br := range bridges {
		if _, err := e.run("link", "del", "dev", br); err != nil && linkExists(br) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		e.t.Errorf("testcluster: netns cleanup: %v", err)
	}
	if left := e.leftovers(); len(left) > 0 {
		e.t.Errorf("testcluster: netns cleanup left %v", left)
	}
}

// killAll SIGKILLs every process in namespace ns and waits until none is
// left (a process keeps a namespace, and so its interfaces, alive).
func (e *netEnv) killAll(ns string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := e.run("netns", "pids", ns)
		if err != nil {
			return
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("testcluster: processes %v in netns %s survive SIGKILL", pids, ns)
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leftovers lists namespaces and root-namespace links with e's suffix.
func (e *netEnv) leftovers() []string {
	var left []string
	for _, dir := range []string{"/run/netns", "/sys/class/net"} {
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			if strings.HasPrefix(ent.Name(), netPrefix+e.sfx) {
				left = append(left, filepath.Join(dir, ent.Name()))
			}
		}
	}
	return left
}

// sweepStale removes namespaces and links (with the harness's names and
// alias) that crashed test processes left behind more than netStaleAge ago.
// It does not kill anything: a process still inside a deleted namespace
// keeps it alive until it exits.
func (e *netEnv) sweepStale() {
	cutoff := time.Now().Add(-netStaleAge)
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if !staleLinkRE.MatchString(l.Name()) {
			continue
		}
		alias, err := os.ReadFile(filepath.Join("/sys/class/net", l.Name(), "ifalias"))
		if err != nil {
			continue
		}
		s, ok := strings.CutPrefix(strings.TrimSpace(string(alias)), netAliasTag)
		if !ok {
			continue
		}
		if ts, err := strconv.ParseInt(s, 10, 64); err == nil && time.Unix(ts, 0).Before(cutoff) {
			e.t.Logf("testcluster: removing stale link %s (created %v)", l.Name(), time.Unix(ts, 0))
			_, _ = e.run("link", "del", "dev", l.Name())
		}
	}
	nss, _ := os.ReadDir("/run/netns")
	for _, ns := range nss {
		if !staleNetnsRE.MatchString(ns.Name()) {
			continue
		}
		// The namespace file's times are those of the namespace's creation.
		if fi, err := ns.Info(); err == nil && fi.ModTime().Before(cutoff) {
			e.t.Logf("testcluster: removing stale netns %s (created %v)", ns.Name(), fi.ModTime())
			_, _ = e.run("netns", "del", ns.Name())
		}
	}
}

func (e *netEnv) run(args ...string) (string, error) {
	out, err := exec.Command(e.ip, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

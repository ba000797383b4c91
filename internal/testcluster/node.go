package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long StartNode and Restart wait for a node to serve
// metadata requests.
const StartTimeout = 60 * time.Second

// StopTimeout bounds how long Stop waits after SIGTERM before it escalates to
// SIGKILL and reports an error.
const StopTimeout = 30 * time.Second

// Option configures a node before it starts.
type Option func(*nodeConfig)

type nodeConfig struct {
	nodeID   int32
	sets     [][2]string
	args     []string
	logLevel string
	dataDir  string
	ctrlAddr string // CONTROLLER listener, "" for none
	http     bool   // serve http.listener on a free port (WithHTTP); off otherwise
	wantRepl bool   // WithReplicationListener: a REPLICATION listener on a free loopback port

	// Set by StartNetCluster (netns.go); zero values keep the defaults.
	addr     string   // PLAINTEXT listener instead of a free loopback port
	replAddr string   // REPLICATION listener, "" for none
	wrap     []string // command prefix, e.g. ip netns exec <ns>
	bin      string   // broker binary instead of BuildBinary's
}

// WithSet passes `--set key=value` (any Kafka broker property) to the node.
// Repeatable; later values for the same key win as on the command line.
func WithSet(key, value string) Option {
	return func(c *nodeConfig) { c.sets = append(c.sets, [2]string{key, value}) }
}

// WithNodeID sets the node's id (`--node-id`). The default is 1.
func WithNodeID(id int32) Option {
	return func(c *nodeConfig) { c.nodeID = id }
}

// WithArgs appends raw flags to `strand server` (after the harness's own).
func WithArgs(args ...string) Option {
	return func(c *nodeConfig) { c.args = append(c.args, args...) }
}

// WithHTTP gives the node an HTTP listener (metrics, health, console) on a
// free loopback port; see Node.HTTPAddr. Without it http.listener is empty,
// so that nodes on one host never compete for the default port.
func WithHTTP() Option {
	return func(c *nodeConfig) { c.http = true }
}

// WithReplicationListener adds a REPLICATION listener on a free loopback
// port (its protocol, e.g. SASL_SSL, set with listener.security.protocol.map;
// make it the inter-broker listener with inter.broker.listener.name).
func WithReplicationListener() Option {
	return func(c *nodeConfig) { c.wantRepl = true }
}

// WithLogLevel sets `--log-level` (debug, info, warn, error). Default info.
func WithLogLevel(level string) Option {
	return func(c *nodeConfig) { c.logLevel = level }
}

// WithDataDir uses dir as the node's data directory instead of a fresh
// t.TempDir (for example to start a node on another node's leftover data).
func WithDataDir(dir string) Option {
	return func(c *nodeConfig) { c.dataDir = dir }
}

// Node is one strand broker process. Its address and data directory stay the
// same across Kill/Stop and Restart, so a restarted node recovers its own
// data and clients can reconnect to the same address.
//
// Methods are safe for concurrent use. Start and Restart must be called from
// the test goroutine (they may call t.Fatal).
type Node struct {
	bin     string
	cfg     nodeConfig
	addr    string
	dataDir string
	logPath string

	httpAddr string // http.listener, "" when disabled

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	waitErr error         // the current process's exit status, valid after done
	starts  int
	logFile *os.File
}

// StartNode builds the broker (once), starts a node on a free loopback port
// with a fresh data directory, and waits until it serves metadata. The node is
// killed when the test ends; if the test failed, the tail of its log is
// printed.
func StartNode(t testing.TB, opts ...Option) *Node {
	t.Helper()
	n := NewNode(t, opts...)
	// Another process may grab the port between our probe and the broker's
	// bind; on "address already in use" retry on a fresh port.
	for attempt := 1; ; attempt++ {
		n.start(t)
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
		err := n.WaitReady(ctx)
		cancel()
		if err == nil {
			return n
		}
		if lost, client := n.lostPortRace(); attempt < 3 && lost {
			if client && n.cfg.addr == "" {
				t.Logf("testcluster: node %d: port %s taken, retrying on another port", n.cfg.nodeID, n.addr)
				n.addr = freeAddr(t)
				if n.httpAddr != "" {
					n.httpAddr = freeAddr(t)
				}
			} else {
				t.Logf("testcluster: node %d: a listen address was taken, retrying", n.cfg.nodeID)
				time.Sleep(200 * time.Millisecond)
			}
			continue
		}
		t.Fatalf("testcluster: node %d did not become ready: %v\n%s", n.cfg.nodeID, err, n.LogTail(40))
	}
}

// NewNode prepares a node (binary, port, data dir, log file, cleanup) without
// starting it; call Start. Most tests want StartNode.
func NewNode(t testing.TB, opts ...Option) *Node {
	t.Helper()
	cfg := nodeConfig{nodeID: 1, logLevel: "info"}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.wantRepl && cfg.replAddr == "" {
		cfg.replAddr = freeAddr(t)
	}
	n := &Node{bin: cfg.bin, cfg: cfg, addr: cfg.addr, dataDir: cfg.dataDir}
	if n.bin == "" {
		n.bin = BuildBinary(t)
	}
	if n.addr == "" {
		n.addr = freeAddr(t)
	}
	if cfg.http {
		n.httpAddr = freeAddr(t)
	}
	if n.dataDir == "" {
		n.dataDir = filepath.Join(t.TempDir(), "data")
	}
	logDir := t.TempDir()
	n.logPath = filepath.Join(logDir, fmt.Sprintf("node-%d.log", cfg.nodeID))
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	n.logFile = f
	t.Cleanup(func() { n.cleanup(t) })
	return n
}

// cleanup kills a leftover process, reports data races found in the log and
// prints the log tail when the test failed.
func (n *Node) cleanup(t testing.TB) {
	n.Kill()
	n.logFile.Close()
	log, _ := os.ReadFile(n.logPath)
	if bytes.Contains(log, []byte("WARNING: DATA RACE")) {
		t.Errorf("testcluster: node %d reported a data race (race-enabled broker build); see log below", n.cfg.nodeID)
	}
	if t.Failed() {
		t.Logf("testcluster: node %d (%s, data %s) log tail:\n%s", n.cfg.nodeID, n.addr, n.dataDir, tail(log, 80))
	}
}

// Start launches the broker process. It does not wait for readiness (see
// WaitReady, Restart). Starting a running node fails the test.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	n.start(t)
}

func (n *Node) start(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !isClosed(n.done) {
		t.Fatalf("testcluster: node %d already running (pid %d)", n.cfg.nodeID, n.cmd.Process.Pid)
	}
	listeners := "PLAINTEXT://" + n.addr
	if n.cfg.replAddr != "" {
		listeners += ",REPLICATION://" + n.cfg.replAddr
	}
	if n.cfg.ctrlAddr != "" {
		listeners += ",CONTROLLER://" + n.cfg.ctrlAddr
	}
	args := []string{"server",
		"--node-id", strconv.Itoa(int(n.cfg.nodeID)),
		"--data-dir", n.dataDir,
		"--listeners", listeners,
		"--log-level", n.cfg.logLevel,
		"--set", "http.listener=" + n.httpAddr,
	}
	for _, kv := range n.cfg.sets {
		args = append(args, "--set", kv[0]+"="+kv[1])
	}
	args = append(args, n.cfg.args...)
	argv := append(append(append([]string(nil), n.cfg.wrap...), n.bin), args...)
	n.starts++
	fmt.Fprintf(n.logFile, "=== testcluster %s: start #%d: %s\n",
		time.Now().Format(time.RFC3339Nano), n.starts, strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = n.logFile
	cmd.Stderr = n.logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("testcluster: start node %d: %v", n.cfg.nodeID, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.waitErr = err
		n.mu.Unlock()
		fmt.Fprintf(n.logFile, "=== testcluster %s: pid %d exited: %v\n",
			time.Now().Format(time.RFC3339Nano), cmd.Process.Pid, exitString(err))
		close(done)
	}()
}

// Restart starts a stopped or killed node again (stopping it with SIGTERM
// first if it is still running) and waits until it serves metadata.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if n.Running() {
		if err := n.Stop(); err != nil {
			t.Errorf("testcluster: restart: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	// The node keeps its addresses across restarts (clients and voters know
	// them); if another process took one meanwhile, wait and try again.
	for attempt := 1; ; attempt++ {
		n.start(t)
		err := n.WaitReady(ctx)
		if err == nil {
			return
		}
		if lost, _ := n.lostPortRace(); lost && attempt < 5 && ctx.Err() == nil {
			t.Logf("testcluster: node %d: a listen address is taken, restarting again", n.cfg.nodeID)
			time.Sleep(500 * time.Millisecond)
			continue
		}
		t.Fatalf("testcluster: node %d not ready after restart: %v\n%s", n.cfg.nodeID, err, n.LogTail(40))
	}
}

// Kill sends SIGKILL (kill -9) and waits for the process to exit. It is a
// no-op when the node is not running.
func (n *Node) Kill() {
	cmd, done := n.current()
	if cmd == nil || isClosed(done) {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused process still dies, but be explicit
	_ = cmd.Process.Kill()
	<-done
}

// Stop sends SIGTERM and waits for a clean exit. It returns an error if the
// process does not exit within StopTimeout (it is then killed) or exits with
// a non-zero status. Stopping a node that is not running returns nil.
func (n *Node) Stop() error {
	cmd, done := n.current()
	if cmd == nil || isClosed(done) {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused node cannot handle SIGTERM
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("node %d: SIGTERM: %w", n.cfg.nodeID, err)
	}
	select {
	case <-done:
	case <-time.After(StopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("node %d: no exit within %v of SIGTERM; killed", n.cfg.nodeID, StopTimeout)
	}
	if err := n.ExitErr(); err != nil {
		return fmt.Errorf("node %d: unclean exit after SIGTERM: %s", n.cfg.nodeID, exitString(err))
	}
	return nil
}

// Pause freezes the process with SIGSTOP; its sockets stay open but it
// answers nothing until Resume.
//
// It returns once the kernel reports every thread of the process stopped, so
// that a test's next step cannot race the signal's delivery on a busy machine.
func (n *Node) Pause() error {
	if err := n.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for !n.stopped() {
		if time.Now().After(deadline) {
			return fmt.Errorf("node %d: not stopped 5 s after SIGSTOP", n.cfg.nodeID)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// stopped reports whether every thread of the node's process is in state T
// (stopped) per /proc/<pid>/task/*/stat.
func (n *Node) stopped() bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", n.Pid()))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT) }

func (n *Node) signal(sig syscall.Signal) error {
	cmd, done := n.current()
	if cmd == nil || isClosed(done) {
		return fmt.Errorf("node %d is not running", n.cfg.nodeID)
	}
	return cmd.Process.Signal(sig)
}

// WaitReady polls until the node accepts TCP connections and answers a
// metadata request listing itself as a broker, the process exits, or ctx is
// done.
func (n *Node) WaitReady(ctx context.Context) error {
	var last error
	for {
		if !n.Running() {
			return fmt.Errorf("node %d exited (%s) before becoming ready; last probe: %v",
				n.cfg.nodeID, exitString(n.ExitErr()), last)
		}
		if last = probe(ctx, n.addr, n.cfg.nodeID); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d at %s: %w (last probe: %v)", n.cfg.nodeID, n.addr, ctx.Err(), last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Addr returns the node's host:port (its PLAINTEXT listener).
func (n *Node) Addr() string { return n.addr }

// HTTPAddr returns the node's http.listener host:port ("" without WithHTTP).
func (n *Node) HTTPAddr() string { return n.httpAddr }

// ReplicationAddr returns the REPLICATION listener's address ("" for none).
func (n *Node) ReplicationAddr() string { return n.cfg.replAddr }

// ID returns the node id.
func (n *Node) ID() int32 { return n.cfg.nodeID }

// DataDir returns the node's data directory (log.dirs).
func (n *Node) DataDir() string { return n.dataDir }

// LogPath returns the file holding the node's stdout and stderr across all
// of its starts.
func (n *Node) LogPath() string { return n.logPath }

// LogTail returns the last lines of the node's log.
func (n *Node) LogTail(lines int) string {
	b, _ := os.ReadFile(n.logPath)
	return tail(b, lines)
}

// Running reports whether the current process has been started and has not
// exited.
func (n *Node) Running() bool {
	cmd, done := n.current()
	return cmd != nil && !isClosed(done)
}

// Pid returns the current process id, or 0 if never started.
func (n *Node) Pid() int {
	cmd, _ := n.current()
	if cmd == nil {
		return 0
	}
	return cmd.Process.Pid
}

// ExitErr returns the last exited process's status (nil for exit 0 or while
// running).
func (n *Node) ExitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil || !isClosed(n.done) {
		return nil
	}
	return n.waitErr
}

func (n *Node) current() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd, n.done
}

// handedOut remembers every address freeAddr returned in this test process:
// a port the kernel offers again after its probe listener closed (or that
// one node has not bound yet) is never given to a second listener.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// freeAddr returns a loopback address whose port was free a moment ago and
// that no earlier call in this process returned. Another process can still
// take the port before the node binds it; StartNode and StartCluster retry a
// node that lost such a race (see lostPortRace).
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testcluster: pick port: %v", err)
		}
		addr := l.Addr().String()
		l.Close()
		handedOut.Lock()
		fresh := !handedOut.addrs[addr]
		handedOut.addrs[addr] = true
		handedOut.Unlock()
		if fresh {
			return addr
		}
	}
	t.Fatalf("testcluster: pick port: the kernel keeps offering ports this process already handed out")
	return ""
}

// FreeAddr is freeAddr for tests outside this package (the in-process
// controller and server tests): a loopback address whose port was free a
// moment ago and that no earlier call in this process returned.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return freeAddr(t)
}

// lostPortRace reports whether the node's last start exited because one of
// its listen addresses was taken, and whether that was its client address.
func (n *Node) lostPortRace() (lost, client bool) {
	if n.Running() {
		return false, false
	}
	tail := n.LogTail(20)
	if !strings.Contains(tail, "address already in use") {
		return false, false
	}
	return true, strings.Contains(tail, n.addr+": bind: address already in use")
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func exitString(err error) string {
	if err == nil {
		return "exit 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
	}
	return err.Error()
}

func tail(b []byte, lines int) string {
	b = bytes.TrimRight(b, "\n")
	i := len(b)
	for ; lines > 0 && i > 0; lines-- {
		i = bytes.LastIndexByte(b[:i], '\n')
		if i < 0 {
			i = 0
		}
	}
	return string(bytes.TrimLeft(b[i:], "\n"))
}

// Package controller is the metadata quorum, as Kafka's KRaft does it: the
// cluster metadata (brokers, topics, partitions, configs) is a replicated log
// of metadata.Records kept by hashicorp/raft, and every node holds the image
// that log produces.
//
// Controllers (process.roles contains controller) are the Raft voters listed
// in controller.quorum.voters; the Raft leader is the active controller. It
// alone plans changes (placement, elections, fencing) against its image and
// commits them. Broker-only nodes replicate the log as Raft non-voters, so
// every broker learns metadata by applying the same log.
//
// Brokers register with the active controller (getting a new broker epoch
// each time), heartbeat every broker.heartbeat.interval.ms, and are fenced -
// removed from ISRs, stripped of leadership - when no heartbeat arrives for
// broker.session.timeout.ms. Admin requests a broker receives are forwarded
// to the active controller over the controller listener.
//
// Invariants: only the Raft leader plans records, one change at a time,
// against an image that includes every committed entry: it takes office
// (see office) only once a Raft barrier of its term has applied, and every
// entry carries the term it was planned in, so an entry that reaches the log
// in another term changes nothing. A Store method returns only after the
// caller's own image includes the change and its listeners have seen it.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/metrics"
)

// Config configures a Node.
type Config struct {
	NodeID int32
	// Dir holds the Raft log, stable store and snapshots.
	Dir string
	// Voters is the controller quorum; empty runs a single-node quorum of
	// this node in process, without a listener.
	Voters []config.Voter
	// ListenAddr is this node's controller listener ("" when Voters is empty).
	ListenAddr string
	// Broker, when non-nil, is registered and heartbeated as this node's broker.
	Broker *metadata.Broker
	// Controller tells whether this node is a voter.
	Controller bool

	ElectionTimeout   time.Duration
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	SnapshotThreshold uint64
	// SnapshotInterval is how often the snapshot threshold is checked
	// (default 10s); TrailingLogs how many entries stay after a snapshot
	// (default 1024). Tests shrink both.
	SnapshotInterval time.Duration
	TrailingLogs     uint64
	// Unclean tells whether a topic allows unclean leader election.
	Unclean metadata.Unclean
	// RebalanceInterval, when positive, runs preferred-leader elections that often.
	RebalanceInterval time.Duration
	// WrapListener, when set, wraps the controller listener (TLS for an SSL
	// controller listener); Dial then connects to other nodes' controller
	// listeners the same way. Both nil: plain TCP.
	WrapListener func(net.Listener) net.Listener
	Dial         func(ctx context.Context, addr string) (net.Conn, error)
	// AuthorizePeer, when set, is asked about every connection on the
	// controller listener (Raft and controller RPCs) once its first byte is
	// read, so after the TLS handshake, with the ACLs of this node's image;
	// an error closes the connection unanswered. Nil admits every peer the
	// listener accepts.
	AuthorizePeer func(c net.Conn, acls []metadata.ACL) error
	// Bootstrap records are committed with the cluster id when the cluster
	// forms (the first SCRAM users, as kafka-storage format --add-scram).
	Bootstrap []metadata.Record

	Logger *slog.Logger
}

// Node is this process's member of the metadata quorum. It implements
// metadata.Store.
type Node struct {
	cfg    Config
	logger *slog.Logger
	fsm    *fsm
	raft   *raft.Raft
	mux    *mux
	store  *raftboltdb.BoltStore

	planMu sync.Mutex // serialises plan + commit on the active controller
	live   *liveness

	officeMu sync.Mutex // guards office
	office   *office    // non-nil while this node is the active controller and its barrier has applied

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	brokerMu    sync.Mutex // guards brokerEpoch
	brokerEpoch int64      // this node's registration epoch (0: not registered)
	registered  chan struct{}
	regOnce     sync.Once
	// lastHeartbeat is when the last heartbeat the controller accepted
	// unfenced was sent (nil: none yet); see LastHeartbeat.
	lastHeartbeat atomic.Pointer[time.Time]

	raftReady chan struct{} // closed once raft is set; RPCs wait for it

	leaderMu      sync.Mutex    // guards leaderChanged
	leaderChanged chan struct{} // closed and replaced whenever Raft observes a new leader (or none)
}

// Open starts the node's Raft member (bootstrapping a new quorum if this is
// a voter with no state) and its background work. It does not wait for a
// leader; see WaitRegistered.
func Open(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Unclean == nil {
		cfg.Unclean = func(*metadata.Topic) bool { return false }
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("metadata dir: %w", err)
	}
	n := &Node{cfg: cfg, logger: cfg.Logger.With("component", "controller"), registered: make(chan struct{}), raftReady: make(chan struct{}),
		leaderChanged: make(chan struct{})}
	n.fsm = newFSM(n.logger)
	n.live = newLiveness()
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.startRaft(); err != nil {
		n.cancel()
		n.fsm.close()
		if n.mux != nil {
			n.mux.Close()
		}
		if n.store != nil {
			n.store.Close()
		}
		return nil, err
	}
	n.wg.Add(2)
	go n.leadership()
	go n.watchLeader()
	n.wg.Add(1)
	go n.probeLoop() // probe.go: fence dead brokers before their session times out
	if cfg.Broker != nil {
		n.wg.Add(1)
		go n.brokerLoop()
	}
	return n, nil
}

func (n *Node) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = serverID(n.cfg.NodeID)
	et := n.cfg.ElectionTimeout
	if et <= 0 {
		et = time.Second
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = et, et, et/2
	rc.CommitTimeout = 20 * time.Millisecond
	if n.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	}
	rc.SnapshotInterval, rc.TrailingLogs = 10*time.Second, 1024
	if n.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = n.cfg.SnapshotInterval
	}
	if n.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = n.cfg.TrailingLogs
	}
	level := hclog.Warn
	if len(n.cfg.Voters) == 0 {
		level = hclog.Error // a quorum of one: elections are routine, not news
	}
	rc.Logger = raftLogger(n.cfg.Logger, level)

	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.cfg.Dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("metadata log store: %w", err)
	}
	n.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.Dir, 2, rc.Logger)
	if err != nil {
		return fmt.Errorf("metadata snapshot store: %w", err)
	}

	var trans raft.Transport
	var servers []raft.Server
	if len(n.cfg.Voters) == 0 {
		addr, t := raft.NewInmemTransport(raft.ServerAddress("local"))
		trans = t
		servers = []raft.Server{{ID: rc.LocalID, Address: addr}}
	} else {
		ln, err := net.Listen("tcp", n.cfg.ListenAddr)
		if err != nil {
			return fmt.Errorf("controller listener %s: %w", n.cfg.ListenAddr, err)
		}
		adv, err := net.ResolveTCPAddr("tcp", n.cfg.ListenAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("controller listener %s: %w", n.cfg.ListenAddr, err)
		}
		if adv.Port == 0 {
			adv = ln.Addr().(*net.TCPAddr)
		}
		if n.cfg.WrapListener != nil {
			ln = n.cfg.WrapListener(ln)
		}
		var admit func(net.Conn) error
		if n.cfg.AuthorizePeer != nil {
			admit = func(c net.Conn) error {
				err := n.cfg.AuthorizePeer(c, n.Image().ACLs)
				if err != nil {
					n.logger.Debug("controller peer refused", "remote", c.RemoteAddr().String(), "err", err)
				}
				return err
			}
		}
		n.mux = newMux(ln, adv, n.serveRPC, admit)
		n.mux.dial = n.cfg.dial
		trans = raft.NewNetworkTransportWithLogger(streamLayer{n.mux}, 3, 5*time.Second, rc.Logger)
		for _, v := range n.cfg.Voters {
			servers = append(servers, raft.Server{ID: serverID(v.ID), Address: raft.ServerAddress(v.Addr)})
		}
	}
	if n.cfg.Controller {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			return fmt.Errorf("metadata log: %w", err)
		}
		if !has {
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
				return fmt.Errorf("bootstrap metadata quorum: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	close(n.raftReady)
	return nil
}

func serverID(id int32) raft.ServerID { return raft.ServerID(strconv.Itoa(int(id))) }

// Close stops the node: background loops, Raft, the listener and the store.
func (n *Node) Close() error {
	n.cancel()
	n.wg.Wait()
	err := n.raft.Shutdown().Error()
	n.fsm.close()
	if n.mux != nil {
		n.mux.Close()
		n.mux.wg.Wait()
	}
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// Image implements metadata.Store.
func (n *Node) Image() *metadata.Image {
	return n.fsm.image()
}

// OnChange implements metadata.Store.
func (n *Node) OnChange(fn func(*metadata.Image)) { n.fsm.onChange(fn) }

// IsActive reports whether this node is the active controller: the Raft
// leader, and its post-election barrier has applied every earlier entry.
func (n *Node) IsActive() bool { return n.currentOffice() != nil }

// office is one term of this node as the active controller, from the moment
// its post-election barrier applied every entry of earlier terms: only then
// is its image the whole committed log, fit to plan against. Every
// leader-only action (answering forwarded requests, planning commits,
// producer-id blocks, fencing, rebalancing) first takes the office.
type office struct {
	term uint64          // the Raft term; every entry planned in it carries it
	ctx  context.Context // cancelled when the term ends
}

func (n *Node) currentOffice() *office {
	n.officeMu.Lock()
	defer n.officeMu.Unlock()
	if o := n.office; o != nil && o.ctx.Err() == nil {
		return o
	}
	return nil
}

func (n *Node) setOffice(o *office) {
	n.officeMu.Lock()
	defer n.officeMu.Unlock()
	n.office = o
}

// Leader returns the active controller's id and address (-1, "" if unknown).
func (n *Node) Leader() (int32, string) {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return -1, ""
	}
	v, err := strconv.Atoi(string(id))
	if err != nil {
		return -1, ""
	}
	return int32(v), string(addr)
}

// watchLeader turns Raft's leader observations into leaderChanged
// broadcasts, so that an RPC in flight to a former leader (frozen or cut
// off, not refusing connections) is abandoned as soon as another is known,
// rather than after its timeout: a live broker's heartbeat must reach a new
// active controller well within the grace it gives (see sessionGrace).
func (n *Node) watchLeader() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
			n.leaderMu.Lock()
			close(n.leaderChanged)
			n.leaderChanged = make(chan struct{})
			n.leaderMu.Unlock()
		}
	}
}

// nextLeaderChange returns a channel closed when Raft next observes a
// leader change.
func (n *Node) nextLeaderChange() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChanged
}

// commit plans with fn against the latest image and commits the records it
// returns, on the active controller only (ErrNotController elsewhere, and
// before the term's barrier has applied). The entry carries the term it was
// planned in, and its partition and producer-id records the versions they
// were planned against; if it is committed in another term, or a version
// moved on, every replica skips it and commit returns ErrNotController
// wrapping metadata.ErrStalePlan, so callers retry against a fresh image.
// It returns the log index of the committed entry (0 if fn returned no
// records).
func (n *Node) commit(ctx context.Context, fn func(img *metadata.Image) ([]metadata.Record, error)) (uint64, error) {
	n.planMu.Lock()
	defer n.planMu.Unlock()
	o := n.currentOffice()
	if o == nil || n.raft.CurrentTerm() != o.term {
		return 0, metadata.ErrNotController
	}
	recs, err := fn(n.Image())
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	b, err := metadata.EncodeEntry(metadata.Entry{Term: o.term, Records: recs})
	if err != nil {
		return 0, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	defer metrics.MetadataCommitSince(time.Now()) // Raft commit latency
	f := n.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return 0, fmt.Errorf("%w: %v", metadata.ErrNotController, err)
		}
		return 0, fmt.Errorf("commit metadata: %w", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return 0, fmt.Errorf("%w: %v", metadata.ErrNotController, err)
	}
	return f.Index(), nil
}

// newClusterID returns a random 16-byte id in Kafka's base64url form.
func newClusterID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

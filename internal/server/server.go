// Package server accepts Kafka client connections and dispatches each request to
// its handler, which acts through the metadata store, the partition manager and
// the producer-id allocator.
//
// Per connection, requests are handled in the order they arrive: the part of a
// handler that must be ordered (appending, metadata changes) runs on the
// connection's reader goroutine; what may wait (fsync, long-poll fetch) runs in
// a continuation on the writer goroutine, which also runs continuations in
// request order, so responses always go out in request order.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"strand/internal/config"
	"strand/internal/controller"
	"strand/internal/metadata"
	"strand/internal/replica"
	"strand/internal/security"
	"strand/internal/txn"
)

// Server is one broker node.
type Server struct {
	cfg    *config.Broker
	logger *slog.Logger
	dir    string
	lock   *os.File
	// fileLimit is the open file limit after raiseFileLimit (0 if unknown).
	fileLimit uint64

	ctrl  *controller.Node // this node's member of the metadata quorum
	store metadata.Store   // ctrl, as the metadata store
	parts *replica.Manager

	applyMu  sync.Mutex      // guards latest, caughtUp, applyErr; serialises partition manager updates
	latest   *metadata.Image // the newest image seen
	caughtUp bool            // the node registered, so images are current
	applyErr error           // the last Apply's error: some partition failed to open (retried)

	dynMu  sync.Mutex      // guards dynImg, dynCfg
	dynImg *metadata.Image // the image dynCfg was layered for
	dynCfg *config.Broker  // cfg with dynImg's cluster-wide dynamic configs
	pids   *txn.IDAllocator
	sec    *serverSecurity // authorizer and quotas (authz.go)
	fsess  *fetchSessions  // fetch sessions, KIP-227 (fetchsession.go)

	groups    *groupCoordinator // consumer group coordinator (groups.go)
	txns      *txnCoordinator   // transaction coordinator (txn.go)
	txnMu     sync.Mutex        // serialises the creation of __transaction_state
	offsetsMu sync.Mutex        // serialises the creation of __consumer_offsets

	listeners []net.Listener
	exempt    []bool         // per listener: its connections do not count against max.connections
	wg        sync.WaitGroup // background goroutines

	// Connections (conn.go) and their bounds (limits.go).
	limits      *connLimits
	mem         *memPool // queued.max.request.bytes; nil when unbounded
	spare       *spareFD
	maxRequest  int32         // socket.request.max.bytes
	readTimeout time.Duration // request.read.timeout.ms
	idleTimeout time.Duration // connections.max.idle.ms
	connCtx     context.Context
	connCancel  context.CancelFunc // ends what connections' requests still wait for
	connWG      sync.WaitGroup     // connection goroutines
	connMu      sync.Mutex         // guards conns
	conns       map[*conn]struct{}

	// Rate-limited log lines of the connection layer.
	acceptLog, refusedLog, overLimitLog, connErrLog, applyRetryLog rateLimited

	opts options // from New (options.go)
	// interDial connects to other brokers' inter-broker listeners with that
	// listener's TLS/SASL (nil: plain TCP); set once by secureReplication.
	interDial security.Dialer
}

// New opens the node's data directory (taking an exclusive lock on it), loads
// metadata and every hosted partition, running crash recovery where needed.
func New(cfg *config.Broker, logger *slog.Logger, opts ...Option) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	dir := cfg.DataDir()
	fileLimit := raiseFileLimit(logger)
	for _, d := range cfg.LogDirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("log dir: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("data dir %s is in use by another process: %w", dir, err)
	}
	s := &Server{cfg: cfg, logger: logger, dir: dir, lock: lock, fileLimit: fileLimit}
	for _, o := range opts {
		o(&s.opts)
	}
	if err := s.initConns(); err != nil {
		lock.Close()
		return nil, err
	}
	s.sec = newServerSecurity(cfg, logger)
	s.fsess = newFetchSessions(int(cfg.Int("max.incremental.fetch.session.cache.slots")))
	if err := s.open(); err != nil {
		s.closeState()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	node, err := s.openController()
	if err != nil {
		return err
	}
	s.ctrl, s.store = node, node
	s.pids = txn.NewIDAllocator(node.AllocateProducerIDs)
	s.parts = replica.NewManager(s.dir, s.cfg, node, s.logger, s.cfg.LogDirs()[1:]...) // JBOD: the other log.dirs
	if err := s.secureReplication(); err != nil {
		return err
	}
	// A leader's lease (internal/replica/lease.go); a quorum of one in
	// process has no other broker to hand leadership to.
	if isBroker, _ := s.cfg.Roles(); isBroker {
		if voters, _ := s.cfg.Voters(); len(voters) > 0 {
			s.parts.SetLease(node.LastHeartbeat, time.Duration(s.cfg.Int("broker.session.timeout.ms"))*time.Millisecond)
		}
	}
	s.openGroups()
	s.openTxns()
	node.OnChange(s.applyImage)
	return nil
}

// applyImage hands a new metadata image to the partition manager - but only
// once the node has caught up with the quorum (see catchUp): while Raft
// replays old log entries at start, the images describe the past, and acting
// on them (re-creating, deleting or replacing partition logs) would damage
// data written since.
func (s *Server) applyImage(img *metadata.Image) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.latest = img
	if !s.caughtUp {
		return
	}
	s.parts.SetBrokerConfig(s.dynFor(img))
	s.applyErr = s.parts.Apply(img)
	if s.applyErr != nil {
		s.logger.Error("applying metadata to partitions", "err", s.applyErr)
	}
	s.groups.observe(img)
	s.txns.observe(img)
}

// retryFailedApply applies the latest image again while the last Apply
// failed (a partition did not open, for example because its recovery could
// not write on a full disk): the partition manager retries such partitions
// only on an Apply, and no new image may come for a long time. The first
// retry comes after interval, then the wait doubles up to 32 times it (a
// partition that keeps failing is not rescanned every few seconds). It
// returns when ctx ends.
func (s *Server) retryFailedApply(ctx context.Context, interval time.Duration) {
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		s.applyMu.Lock()
		if s.caughtUp && s.applyErr != nil && s.latest != nil {
			s.applyErr = s.parts.Apply(s.latest)
			if s.applyErr == nil {
				s.logger.Info("partitions that failed to open are open now")
			} else {
				wait = min(2*wait, 32*interval)
				s.applyRetryLog.log(s.logger, slog.LevelError, "partitions still fail to open; retrying", "err", s.applyErr, "retry_in", wait)
			}
		}
		if s.applyErr == nil {
			wait = interval
		}
		s.applyMu.Unlock()
	}
}

// catchUp applies the latest image after registration proved it current,
// opening this broker's partitions, and removes directories of topics that
// no longer exist.
func (s *Server) catchUp() {
	start := time.Now()
	s.applyMu.Lock()
	s.caughtUp = true
	img := s.latest
	s.parts.SetBrokerConfig(s.dynFor(img))
	s.applyErr = s.parts.Apply(img)
	if s.applyErr != nil {
		s.logger.Error("applying metadata to partitions", "err", s.applyErr)
	}
	s.parts.RemoveStrays(img)
	s.groups.observe(img)
	s.txns.observe(img)
	s.applyMu.Unlock()
	s.logger.Info("loaded partitions", "partitions", len(s.parts.All()), "took", time.Since(start).Round(time.Millisecond))
	checkFileLimit(s.logger, s.fileLimit, len(s.parts.All()))
}

// openController starts this node's member of the metadata quorum.
func (s *Server) openController() (*controller.Node, error) {
	isBroker, isController := s.cfg.Roles()
	voters, err := s.cfg.Voters()
	if err != nil {
		return nil, err
	}
	listen, err := s.cfg.ControllerListener()
	if err != nil {
		return nil, err
	}
	switch {
	case len(voters) == 0 && !(isBroker && isController):
		return nil, errors.New("controller.quorum.voters is empty: only a node with process.roles=broker,controller can run alone")
	case len(voters) > 0 && isController && !slices.ContainsFunc(voters, func(v config.Voter) bool { return v.ID == s.cfg.NodeID() }):
		return nil, fmt.Errorf("process.roles includes controller but node.id %d is not in controller.quorum.voters", s.cfg.NodeID())
	case len(voters) > 0 && listen == "":
		return nil, errors.New("no controller listener: add CONTROLLER://host:port to listeners (broker-only nodes replicate the metadata log there)")
	}
	if len(voters) == 0 {
		listen = ""
	}
	cfg := controller.Config{
		NodeID:            s.cfg.NodeID(),
		Dir:               filepath.Join(s.dir, "__cluster_metadata-0"),
		Voters:            voters,
		ListenAddr:        listen,
		Controller:        isController,
		ElectionTimeout:   time.Duration(s.cfg.Int("controller.quorum.election.timeout.ms")) * time.Millisecond,
		SessionTimeout:    time.Duration(s.cfg.Int("broker.session.timeout.ms")) * time.Millisecond,
		HeartbeatInterval: time.Duration(s.cfg.Int("broker.heartbeat.interval.ms")) * time.Millisecond,
		SnapshotThreshold: uint64(s.cfg.Int("metadata.log.max.snapshot.interval.records")),
		Unclean: func(t *metadata.Topic) bool {
			return s.dyn().TopicConfig(t.Configs).Bool("unclean.leader.election.enable")
		},
		Logger:    s.logger,
		Bootstrap: s.opts.bootstrap,
	}
	if len(voters) > 0 {
		if err := s.secureController(&cfg); err != nil {
			return nil, err
		}
	}
	if len(voters) == 0 && !s.cfg.IsSet("controller.quorum.election.timeout.ms") {
		cfg.ElectionTimeout = 100 * time.Millisecond // a quorum of one elects itself at once
	}
	if s.cfg.Bool("auto.leader.rebalance.enable") {
		cfg.RebalanceInterval = time.Duration(s.cfg.Int("leader.imbalance.check.interval.seconds")) * time.Second
	}
	if isBroker {
		client, inter, err := s.cfg.Endpoints()
		if err != nil {
			return nil, fmt.Errorf("process.roles includes broker: %w", err)
		}
		b := &metadata.Broker{Host: client.Host, Port: client.Port, Listeners: advertisedListeners(s.cfg)}
		if inter != client {
			b.ReplicaAddr = inter.Addr()
		}
		if rack := s.cfg.String("broker.rack"); rack != "" {
			b.Rack = &rack
		}
		cfg.Broker = b
	}
	return controller.Open(cfg)
}

// Listen binds every configured listener. It is separate from Serve so that a
// caller knows the node accepts connections when Listen returns.
func (s *Server) Listen() error {
	ls, err := s.cfg.Listeners()
	if err != nil {
		return err
	}
	for _, l := range ls {
		ln, err := net.Listen("tcp", l.Addr())
		if err == nil {
			var sln net.Listener
			if sln, err = s.secure(l, ln); err != nil {
				ln.Close()
			}
			ln = sln
		}
		if err != nil {
			for _, o := range s.listeners {
				o.Close()
			}
			return fmt.Errorf("listen %s: %w", l.Addr(), err)
		}
		s.listeners = append(s.listeners, ln)
		// As Kafka does, the inter-broker listener (when it is a listener of
		// its own) is not subject to max.connections, so replication goes on
		// when clients exhaust it.
		s.exempt = append(s.exempt, len(ls) > 1 && l.Name == s.cfg.String("inter.broker.listener.name"))
		s.logger.Info("listening", "listener", l.Name, "security_protocol", l.Protocol, "addr", ln.Addr().String())
	}
	return nil
}

// Addrs returns the bound listener addresses.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Serve accepts connections until ctx ends, then shuts down in order: it
// stops accepting (clients dialling now are refused by the OS and try
// another broker), hands leadership off with a controlled shutdown while it
// still answers requests on open connections, then stops reading requests,
// answers those already read, closes connections and closes every log
// cleanly.
func (s *Server) Serve(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	defer s.connCancel()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.parts.RunRetention(bg, time.Duration(s.cfg.Int("log.retention.check.interval.ms"))*time.Millisecond)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.parts.RunISR(bg)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.mem.runReclaim(bg, 2*time.Second)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.retryFailedApply(bg, 5*time.Second)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.parts.RunLease(ctx)
	}()
	if s.cfg.Bool("log.cleaner.enable") {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.parts.RunCleaner(bg, time.Duration(s.cfg.Int("log.cleaner.backoff.ms"))*time.Millisecond)
		}()
	}
	// As a KRaft broker does, serve clients only once registered with an
	// image caught up with the quorum; until then connections wait in the
	// listen backlog. Only such an image may decide which partition
	// directories are strays.
	if isBroker, _ := s.cfg.Roles(); isBroker {
		start := time.Now()
		if err := s.ctrl.WaitRegistered(ctx); err == nil {
			s.logger.Info("broker registered and caught up with the metadata quorum", "took", time.Since(start).Round(time.Millisecond))
			s.catchUp()
		}
	}
	var accepting sync.WaitGroup
	for i, ln := range s.listeners {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			s.acceptLoop(ln, s.exempt[i])
		}()
	}
	<-ctx.Done()
	s.logger.Info("shutting down: no new connections")
	for _, ln := range s.listeners {
		ln.Close()
	}
	accepting.Wait() // no connection is added after this
	if isBroker, _ := s.cfg.Roles(); isBroker && s.cfg.Bool("controlled.shutdown.enable") {
		start := time.Now()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.ctrl.ControlledShutdown(sctx); err != nil {
			s.logger.Warn("controlled shutdown incomplete", "err", err)
		} else {
			s.awaitLeadershipGone(sctx)
			s.logger.Info("controlled shutdown: leadership handed off", "took", time.Since(start).Round(time.Millisecond))
		}
		scancel()
	}
	s.drainConns(drainTimeout)
	stopBG()
	s.wg.Wait()
	s.spare.close()
	return s.closeState()
}

// awaitLeadershipGone waits (until ctx ends) for this broker's image to show
// the leadership the controller moved away, so that a client told
// NOT_LEADER_OR_FOLLOWER that asks this broker for metadata is pointed at
// the new leader.
func (s *Server) awaitLeadershipGone(ctx context.Context) {
	self := s.cfg.NodeID()
	for {
		img := s.store.Image()
		leads := false
		for _, t := range img.Topics {
			for _, p := range t.Partitions {
				leads = leads || p.Leader == self
			}
		}
		if !leads || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// initConns reads the connection limits of the configuration.
func (s *Server) initConns() error {
	overrides, err := s.cfg.ConnectionsPerIPOverrides()
	if err != nil {
		return err
	}
	s.limits = newConnLimits(int(s.cfg.Int("max.connections")), int(s.cfg.Int("max.connections.per.ip")), overrides)
	s.mem = newMemPool(s.cfg.Int("queued.max.request.bytes"))
	s.spare = newSpareFD()
	s.maxRequest = int32(s.cfg.Int("socket.request.max.bytes"))
	s.readTimeout = time.Duration(s.cfg.Int("request.read.timeout.ms")) * time.Millisecond
	s.idleTimeout = time.Duration(s.cfg.Int("connections.max.idle.ms")) * time.Millisecond
	s.connCtx, s.connCancel = context.WithCancel(context.Background())
	s.conns = map[*conn]struct{}{}
	for _, r := range []*rateLimited{&s.acceptLog, &s.refusedLog, &s.overLimitLog, &s.connErrLog, &s.applyRetryLog} {
		r.every = 10 * time.Second
	}
	return nil
}

// Close releases a server that will not Serve (for example when Listen failed).
func (s *Server) Close() error {
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.spare.close()
	s.connCancel()
	return s.closeState()
}

func (s *Server) closeState() error {
	var err error
	if s.ctrl != nil {
		if cerr := s.ctrl.Close(); cerr != nil {
			s.logger.Warn("closing the metadata quorum member", "err", cerr)
		}
	}
	s.groups.close()
	s.txns.close()
	if s.parts != nil {
		err = s.parts.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
	return err
}

// dyn is the node's configuration with the cluster-wide dynamic configs of
// the current metadata applied.
func (s *Server) dyn() *config.Broker { return s.dynFor(s.store.Image()) }

// dynFor layers img's cluster-wide dynamic configs over the static
// configuration, once per image (images are immutable and replaced on every
// change).
func (s *Server) dynFor(img *metadata.Image) *config.Broker {
	s.dynMu.Lock()
	defer s.dynMu.Unlock()
	if s.dynImg != img {
		s.dynImg, s.dynCfg = img, s.cfg.WithDynamic(img.ClusterConfigs)
	}
	return s.dynCfg
}

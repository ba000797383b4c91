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
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/controller"
	"strand/internal/metadata"
	"strand/internal/protocol"
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

	ctrl  *controller.Node // this node's member of the metadata quorum
	store metadata.Store   // ctrl, as the metadata store
	parts *replica.Manager

	applyMu  sync.Mutex      // guards latest, caughtUp; serialises partition manager updates
	latest   *metadata.Image // the newest image seen
	caughtUp bool            // the node registered, so images are current

	dynMu  sync.Mutex      // guards dynImg, dynCfg
	dynImg *metadata.Image // the image dynCfg was layered for
	dynCfg *config.Broker  // cfg with dynImg's cluster-wide dynamic configs
	pids   *txn.IDAllocator

	groups    *groupCoordinator // consumer group coordinator (groups.go)
	offsetsMu sync.Mutex        // serialises the creation of __consumer_offsets

	listeners []net.Listener
	wg        sync.WaitGroup // connection and background goroutines

	connMu sync.Mutex // guards conns
	conns  map[net.Conn]struct{}

	opts options // from New (options.go)
}

// New opens the node's data directory (taking an exclusive lock on it), loads
// metadata and every hosted partition, running crash recovery where needed.
func New(cfg *config.Broker, logger *slog.Logger, opts ...Option) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	dir := cfg.DataDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("data dir %s is in use by another process: %w", dir, err)
	}
	s := &Server{cfg: cfg, logger: logger, dir: dir, lock: lock, conns: map[net.Conn]struct{}{}}
	for _, o := range opts {
		o(&s.opts)
	}
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
	s.parts = replica.NewManager(s.dir, s.cfg, node, s.logger)
	if err := s.secureReplication(); err != nil {
		return err
	}
	s.openGroups()
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
	if err := s.parts.Apply(img); err != nil {
		s.logger.Error("applying metadata to partitions", "err", err)
	}
	s.groups.observe(img)
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
	if err := s.parts.Apply(img); err != nil {
		s.logger.Error("applying metadata to partitions", "err", err)
	}
	s.parts.RemoveStrays(img)
	s.groups.observe(img)
	s.applyMu.Unlock()
	s.logger.Info("loaded partitions", "partitions", len(s.parts.All()), "took", time.Since(start).Round(time.Millisecond))
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

// Serve accepts connections until ctx ends, then shuts down: it stops accepting,
// closes connections, and closes every log cleanly.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.parts.RunRetention(ctx, time.Duration(s.cfg.Int("log.retention.check.interval.ms"))*time.Millisecond)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.parts.RunISR(ctx)
	}()
	if s.cfg.Bool("log.cleaner.enable") {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.parts.RunCleaner(ctx, time.Duration(s.cfg.Int("log.cleaner.backoff.ms"))*time.Millisecond)
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
	for _, ln := range s.listeners {
		s.wg.Add(1)
		go func(ln net.Listener) {
			defer s.wg.Done()
			s.accept(ctx, ln)
		}(ln)
	}
	<-ctx.Done()
	s.logger.Info("shutting down")
	if isBroker, _ := s.cfg.Roles(); isBroker && s.cfg.Bool("controlled.shutdown.enable") {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.ctrl.ControlledShutdown(sctx); err != nil {
			s.logger.Warn("controlled shutdown incomplete", "err", err)
		}
		scancel()
	}
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.connMu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.connMu.Unlock()
	s.wg.Wait()
	return s.closeState()
}

// Close releases a server that will not Serve (for example when Listen failed).
func (s *Server) Close() error {
	for _, ln := range s.listeners {
		ln.Close()
	}
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
	if s.parts != nil {
		err = s.parts.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
	return err
}

func (s *Server) accept(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.logger.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.connMu.Lock()
		s.conns[c] = struct{}{}
		s.connMu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
			s.connMu.Lock()
			delete(s.conns, c)
			s.connMu.Unlock()
		}()
	}
}

// reply is a response to come, in request order: run is called on the writer
// goroutine and returns the response, or nil when none is sent (acks=0).
type reply struct {
	correlationID int32
	run           func() kmsg.Response
}

// hangUp, returned by a reply, closes the connection instead of answering.
var hangUp kmsg.Response = new(kmsg.ProduceResponse)

// maxPipelined bounds the requests a connection may have in flight.
const maxPipelined = 64

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	logger := s.logger.With("remote", c.RemoteAddr().String())
	auth, err := s.startAuth(ctx, c)
	if err != nil {
		logger.Info("closing connection", "err", err)
		c.Close()
		return
	}
	ctx, cancel := context.WithCancel(security.WithSession(context.WithValue(ctx, remoteAddrKey{}, c.RemoteAddr().String()), auth.sess))
	defer cancel()
	replies := make(chan reply, maxPipelined)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeReplies(c, replies, logger)
		// On a write error: stop the reader, then drain what it still queues.
		cancel()
		c.Close()
		for range replies {
		}
	}()
	defer func() {
		close(replies)
		<-writerDone
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	max := int32(s.cfg.Int("socket.request.max.bytes"))
	for {
		if auth.state == authRaw {
			out, ok, err := auth.rawStep(r, logger)
			if err != nil || !ok {
				return
			}
			replies <- reply{run: writeRaw(c, out)}
			continue
		}
		frame, err := protocol.ReadFrame(r, auth.maxFrame(max))
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				logger.Warn("closing connection", "err", err)
			}
			return
		}
		req, err := protocol.ParseRequest(frame)
		if err != nil {
			if req != nil && req.Key == int16(kmsg.ApiVersions) && errors.Is(err, protocol.ErrUnsupported) {
				// Answer with v0 and UNSUPPORTED_VERSION so the client retries with a version we have.
				resp := s.apiVersions(0)
				resp.ErrorCode = kerrUnsupportedVersion
				replies <- reply{req.CorrelationID, func() kmsg.Response { return resp }}
				continue
			}
			logger.Warn("closing connection after a bad request", "err", err)
			return
		}
		if resp, v := auth.gate(req, logger); v != pass {
			if v != drop {
				replies <- reply{req.CorrelationID, func() kmsg.Response { return resp }}
			}
			if v == answer {
				continue
			}
			return
		}
		run := s.handle(ctx, req)
		select {
		case replies <- reply{req.CorrelationID, run}:
		case <-ctx.Done():
			return
		}
	}
}

// writeReplies runs each reply in order and writes its response. It returns
// when replies is closed or a write fails.
func (s *Server) writeReplies(c net.Conn, replies <-chan reply, logger *slog.Logger) {
	w := bufio.NewWriterSize(c, 64<<10)
	var buf []byte
	for r := range replies {
		resp := r.run()
		if resp == hangUp {
			w.Flush()
			return
		}
		if resp == nil {
			continue
		}
		buf = protocol.AppendResponse(buf[:0], r.correlationID, resp)
		if _, err := w.Write(buf); err != nil {
			logger.Debug("write", "err", err)
			return
		}
		// Flush when nothing else is ready, so pipelined responses share a write.
		if len(replies) == 0 {
			if err := w.Flush(); err != nil {
				logger.Debug("write", "err", err)
				return
			}
		}
	}
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

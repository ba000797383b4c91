package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/group"
	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/replica"
	"strand/internal/txn/coordinator"
)

// Transactions (KIP-98). The coordinator (internal/txn/coordinator) holds
// the state of transactional ids; this file creates __transaction_state,
// keeps the coordinator's loaded partitions equal to the partitions of it
// this broker leads (as groups.go does for __consumer_offsets), writes
// transaction markers (locally, or with WriteTxnMarkers to other
// brokers), and dispatches the transaction APIs. The data side (open
// transactions, LSO, aborted ranges) is in internal/replica/txn.go.

// txnCoordinator is the coordinator plus its loader goroutine.
type txnCoordinator struct {
	*coordinator.Coordinator
	loader  *leaderLoader
	markers *markerWriter
}

func (s *Server) openTxns() {
	ms := func(name string) time.Duration { return time.Duration(s.cfg.Int(name)) * time.Millisecond }
	logger := s.logger.With("component", "txn-coordinator")
	cfg := coordinator.Config{
		Partitions:    int32(s.cfg.Int("transaction.state.log.num.partitions")),
		MaxTimeout:    ms("transaction.max.timeout.ms"),
		AbortInterval: ms("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
		IDExpiration:  ms("transactional.id.expiration.ms"),
		NextProducerID: func(ctx context.Context) (int64, error) {
			return s.pids.Next(ctx)
		},
		Logger: logger,
	}
	tc := &txnCoordinator{markers: &markerWriter{s: s}}
	tc.Coordinator = coordinator.New(cfg, txnStateLog{parts: s.parts}, tc.markers)
	tc.loader = startLoader(&leaderLoader{topic: coordinator.Topic, self: s.cfg.NodeID(), logger: logger,
		what: "transactions", load: tc.Load, unload: tc.Unload})
	s.txns = tc
}

// observe hands the loader a new metadata image (see leaderLoader).
func (tc *txnCoordinator) observe(img *metadata.Image) {
	if tc == nil {
		return
	}
	tc.loader.observe(img)
}

func (tc *txnCoordinator) close() {
	if tc == nil {
		return
	}
	tc.loader.close()
	tc.Close()
	tc.markers.close()
}

// txnStateLog is coordinator.Log over this broker's replicas of
// __transaction_state; appends are acks=all.
type txnStateLog struct{ parts *replica.Manager }

func (l txnStateLog) partition(p int32) (*replica.Partition, error) {
	part, ok := l.parts.Get(coordinator.Topic, p)
	if !ok {
		return nil, fmt.Errorf("%w: %s-%d is not hosted here", coordinator.ErrNotLeader, coordinator.Topic, p)
	}
	return part, nil
}

// Append appends with acks=all and waits for durability and the ISR.
func (l txnStateLog) Append(ctx context.Context, p int32, records []byte) error {
	part, err := l.partition(p)
	if err != nil {
		return err
	}
	res, err := part.AppendAcks(records, time.Now(), -1)
	if err == nil {
		err = part.WaitDurable(res.LastOffset + 1)
	}
	if err == nil {
		err = part.WaitReplicated(ctx, res.LastOffset+1, res.LeaderEpoch)
	}
	if errors.Is(err, replica.ErrNotLeader) {
		return fmt.Errorf("%w: %v", coordinator.ErrNotLeader, err)
	}
	return err
}

// Read reads up to the log end offset (see coordinator.Log).
func (l txnStateLog) Read(p int32, offset int64, maxBytes int) ([]byte, error) {
	part, err := l.partition(p)
	if err != nil {
		return nil, err
	}
	return part.ReadReplica(offset, maxBytes, true)
}

// Bounds returns the log start and end offsets.
func (l txnStateLog) Bounds(p int32) (int64, int64, error) {
	part, err := l.partition(p)
	if err != nil {
		return 0, 0, err
	}
	return part.LogStartOffset(), part.LogEndOffset(), nil
}

// markerWriter writes markers to partitions led here directly and sends
// WriteTxnMarkers to the leaders of the others, at their inter-broker
// (replication) address, one franz-go client per address.
type markerWriter struct {
	s *Server

	mu      sync.Mutex             // guards clients
	clients map[string]*kgo.Client // replication address -> client
}

func (w *markerWriter) client(addr string) (*kgo.Client, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cl := w.clients[addr]; cl != nil {
		return cl, nil
	}
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ClientID(fmt.Sprintf("strand-txn-coordinator-%d", w.s.cfg.NodeID()))}
	if d := w.s.interDial; d != nil { // the inter-broker listener's TLS/SASL, as followers use
		opts = append(opts, kgo.Dialer(func(ctx context.Context, _, host string) (net.Conn, error) {
			return d(ctx, host, 10*time.Second)
		}))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	if w.clients == nil {
		w.clients = map[string]*kgo.Client{}
	}
	w.clients[addr] = cl
	return cl, nil
}

// WriteMarkers implements coordinator.MarkerWriter.
func (w *markerWriter) WriteMarkers(ctx context.Context, pid int64, epoch int16, commit bool, coordinatorEpoch int32, parts map[string][]int32) error {
	img := w.s.store.Image()
	remote := map[int32]map[string][]int32{} // leader -> its partitions
	var (
		mu   sync.Mutex // guards errs
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	// Every partition's marker waits for its own durability and
	// replication: write them all at once.
	for topic, ps := range parts {
		t, ok := img.Topic(topic)
		for _, p := range ps {
			if !ok || int(p) >= len(t.Partitions) {
				continue // deleted: nothing to mark
			}
			if leader := t.Partitions[p].Leader; leader != w.s.cfg.NodeID() {
				if remote[leader] == nil {
					remote[leader] = map[string][]int32{}
				}
				remote[leader][topic] = append(remote[leader][topic], p)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code := w.s.writeMarker(ctx, topic, p, pid, epoch, commit, coordinatorEpoch); code != 0 {
					fail(fmt.Errorf("%s-%d: %w", topic, p, kerr.ErrorForCode(code)))
				}
			}()
		}
	}
	for leader, ps := range remote {
		b, ok := img.Broker(leader)
		if !ok || leader < 0 || b.Fenced {
			fail(fmt.Errorf("leader %d of %v is not available", leader, ps))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.writeRemote(ctx, b.ReplicationAddr(), pid, epoch, commit, coordinatorEpoch, ps); err != nil {
				fail(fmt.Errorf("broker %d: %w", leader, err))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *markerWriter) writeRemote(ctx context.Context, addr string, pid int64, epoch int16, commit bool, coordinatorEpoch int32, parts map[string][]int32) error {
	cl, err := w.client(addr)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch = pid, epoch, commit, coordinatorEpoch
	for t, ps := range parts {
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = t, ps
		m.Topics = append(m.Topics, mt)
	}
	req.Markers = append(req.Markers, m)
	raw, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return fmt.Errorf("WriteTxnMarkers to %s: %w", addr, err)
	}
	resp := raw.(*kmsg.WriteTxnMarkersResponse)
	var errs []error
	for _, rm := range resp.Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%s-%d: %w", rt.Topic, rp.Partition, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (w *markerWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, cl := range w.clients {
		cl.Close()
	}
	w.clients = nil
}

// writeMarker appends a marker to a partition led here; on
// __consumer_offsets it also completes the producer's pending offsets.
func (s *Server) writeMarker(ctx context.Context, topic string, partition int32, pid int64, epoch int16, commit bool, coordinatorEpoch int32) int16 {
	p, code := s.leaderPartition(topic, partition)
	if code != 0 {
		return code
	}
	if err := p.AppendMarker(ctx, pid, epoch, commit, coordinatorEpoch); err != nil {
		return produceErrorCode(err)
	}
	if topic == group.Topic {
		s.groups.CompleteTxn(partition, pid, commit)
	}
	return 0
}

// transactionTopic returns __transaction_state, creating it on first use
// (transaction.state.log.* settings, replication factor capped at the
// broker count, compacted).
func (s *Server) transactionTopic(ctx context.Context) (*metadata.Topic, error) {
	if t, ok := s.store.Image().Topic(coordinator.Topic); ok {
		return t, nil
	}
	s.txnMu.Lock()
	defer s.txnMu.Unlock()
	img := s.store.Image()
	if t, ok := img.Topic(coordinator.Topic); ok {
		return t, nil
	}
	rf := max(min(s.cfg.Int("transaction.state.log.replication.factor"), int64(len(img.Brokers))), 1)
	t, err := s.store.CreateTopic(ctx, metadata.CreateTopic{
		Name: coordinator.Topic, Partitions: int32(s.cfg.Int("transaction.state.log.num.partitions")), ReplicationFactor: int16(rf),
		Configs: map[string]string{
			"cleanup.policy":      "compact",
			"segment.bytes":       strconv.FormatInt(s.cfg.Int("transaction.state.log.segment.bytes"), 10),
			"min.insync.replicas": strconv.FormatInt(min(s.cfg.Int("transaction.state.log.min.isr"), rf), 10),
		},
		Internal: true,
	})
	if errors.Is(err, metadata.ErrTopicExists) {
		if t, ok := s.store.Image().Topic(coordinator.Topic); ok {
			return t, nil
		}
	}
	if err != nil {
		return nil, err
	}
	s.logger.Info("created the transaction state topic", "topic", coordinator.Topic, "partitions", len(t.Partitions), "replication_factor", rf)
	return t, nil
}

// findTxnCoordinator answers FindCoordinator for a transactional id.
func (s *Server) findTxnCoordinator(ctx context.Context, key string) kmsg.FindCoordinatorResponseCoordinator {
	out := kmsg.NewFindCoordinatorResponseCoordinator()
	out.Key, out.NodeID, out.Port = key, -1, -1
	fail := func(code int16, msg string) kmsg.FindCoordinatorResponseCoordinator {
		out.ErrorCode, out.ErrorMessage = code, &msg
		return out
	}
	t, err := s.transactionTopic(ctx)
	if err != nil {
		s.logger.Warn("cannot create the transaction state topic", "err", err)
		return fail(kerr.CoordinatorNotAvailable.Code, "the transaction state topic is not available: "+err.Error())
	}
	p := coordinator.PartitionFor(key, int32(len(t.Partitions)))
	leader := t.Partitions[p].Leader
	b, ok := s.store.Image().Broker(leader)
	if leader < 0 || !ok || b.Fenced {
		return fail(kerr.CoordinatorNotAvailable.Code, fmt.Sprintf("%s-%d has no live leader", coordinator.Topic, p))
	}
	out.NodeID, out.Host, out.Port = b.ID, b.Host, b.Port
	return out
}

// partitionExists reports whether the metadata has topic-partition.
func (s *Server) partitionExists(topic string, partition int32) bool {
	t, ok := s.store.Image().Topic(topic)
	return ok && partition >= 0 && int(partition) < len(t.Partitions)
}

// handleTxn dispatches the transaction APIs; they answer in a continuation
// (they wait for replication of __transaction_state and for markers).
func (s *Server) handleTxn(ctx context.Context, req *protocol.Request) (func() kmsg.Response, bool) {
	switch body := req.Body.(type) {
	case *kmsg.InitProducerIDRequest:
		if body.TransactionalID == nil {
			return nil, false
		}
		return func() kmsg.Response { return s.txns.InitProducerID(ctx, body) }, true
	case *kmsg.AddPartitionsToTxnRequest:
		return func() kmsg.Response {
			if body.Version >= 4 {
				resp := body.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
				resp.ErrorCode = kerr.UnsupportedVersion.Code
				return resp
			}
			return s.txns.AddPartitionsToTxn(ctx, body, s.partitionExists)
		}, true
	case *kmsg.AddOffsetsToTxnRequest:
		return func() kmsg.Response {
			return s.txns.AddOffsetsToTxn(ctx, body, group.Topic, s.groups.PartitionFor(body.Group))
		}, true
	case *kmsg.EndTxnRequest:
		return func() kmsg.Response { return s.txns.EndTxn(ctx, body) }, true
	case *kmsg.TxnOffsetCommitRequest:
		wait := s.groups.TxnOffsetCommit(body)
		return func() kmsg.Response { return wait() }, true
	case *kmsg.WriteTxnMarkersRequest:
		return func() kmsg.Response { return s.handleWriteTxnMarkers(ctx, body) }, true
	case *kmsg.DescribeProducersRequest:
		return func() kmsg.Response { return s.handleDescribeProducers(body) }, true
	case *kmsg.DescribeTransactionsRequest:
		return func() kmsg.Response { return s.handleDescribeTransactions(body) }, true
	case *kmsg.ListTransactionsRequest:
		return func() kmsg.Response { return s.handleListTransactions(body) }, true
	}
	return nil, false
}

// handleWriteTxnMarkers appends the markers another broker's coordinator
// sends, each partition as its leader, acks=all, all partitions at once.
func (s *Server) handleWriteTxnMarkers(ctx context.Context, req *kmsg.WriteTxnMarkersRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	var wg sync.WaitGroup
	resp.Markers = make([]kmsg.WriteTxnMarkersResponseMarker, len(req.Markers))
	for i, m := range req.Markers {
		rm := &resp.Markers[i]
		*rm = kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		rm.Topics = make([]kmsg.WriteTxnMarkersResponseMarkerTopic, len(m.Topics))
		for j, t := range m.Topics {
			rt := &rm.Topics[j]
			*rt = kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			rt.Partitions = make([]kmsg.WriteTxnMarkersResponseMarkerTopicPartition, len(t.Partitions))
			for k, p := range t.Partitions {
				rp := &rt.Partitions[k]
				*rp = kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition = p
				wg.Add(1)
				go func() {
					defer wg.Done()
					rp.ErrorCode = s.writeMarker(ctx, t.Topic, p, m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch)
				}()
			}
		}
	}
	wg.Wait()
	return resp
}

// readCommitted returns a read function for a read_committed fetch of p:
// up to the LSO, filling out's AbortedTransactions.
func readCommitted(p *replica.Partition, out *kmsg.FetchResponseTopicPartition) func(int64, int, bool) ([]byte, error) {
	return func(offset int64, maxBytes int, minOne bool) ([]byte, error) {
		data, aborted, err := p.ReadCommitted(offset, maxBytes, minOne)
		out.AbortedTransactions = out.AbortedTransactions[:0]
		for _, a := range aborted {
			at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
			at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
			out.AbortedTransactions = append(out.AbortedTransactions, at)
		}
		return data, err
	}
}

package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/protocol"
	"strand/internal/record"
	"strand/internal/testcluster"
)

// node is an in-process server on a loopback port.
type node struct {
	t    *testing.T
	dir  string
	addr string
	sets [][2]string
	// saslAddr is the SASL_PLAINTEXT listener of startSASLNode's nodes.
	saslAddr string
	cancel   context.CancelFunc
	done     chan error
	srv      *Server // the running broker
}

// freeAddr is testcluster.FreeAddr: no port is handed to two listeners.
func freeAddr(t testing.TB) string {
	t.Helper()
	return testcluster.FreeAddr(t)
}

// serveForTest runs a server of cfg until the test ends and returns it; it
// fails the test if the server cannot start or Serve returns an error.
func serveForTest(t testing.TB, cfg *config.Broker, opts ...Option) *Server {
	t.Helper()
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv
}

func startNode(t *testing.T, sets ...[2]string) *node {
	n := &node{t: t, dir: t.TempDir(), addr: freeAddr(t), sets: sets}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	n.t.Helper()
	cfg, err := config.Load("", append([][2]string{{"log.dirs", n.dir}, {"listeners", "PLAINTEXT://" + n.addr}}, n.sets...))
	if err != nil {
		n.t.Fatal(err)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		n.t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.srv = srv
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- srv.Serve(ctx) }()
}

func (n *node) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		n.t.Errorf("serve: %v", err)
	}
	n.cancel = nil
}

func (n *node) client(opts ...kgo.Opt) *kgo.Client {
	n.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(n.addr)}, opts...)...)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(cl.Close)
	return cl
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func createTopic(t *testing.T, cl *kgo.Client, name string, partitions int32, configs map[string]string) *kmsg.CreateTopicsResponseTopic {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	for k, v := range configs {
		rt.Configs = append(rt.Configs, kmsg.CreateTopicsRequestTopicConfig{Name: k, Value: kmsg.StringPtr(v)})
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return &resp.Topics[0]
}

func produceRaw(t *testing.T, cl *kgo.Client, topic string, acks int16, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = acks, 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch}}}}
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0]
}

func batch(t *testing.T, pid int64, seq int32, n int) []byte {
	t.Helper()
	spec := record.BuildSpec{ProducerID: pid, ProducerEpoch: 0, BaseSequence: seq}
	if pid < 0 {
		spec.ProducerEpoch, spec.BaseSequence = -1, -1
	}
	for i := 0; i < n; i++ {
		spec.Records = append(spec.Records, record.Record{Timestamp: time.Now().UnixMilli(), Value: []byte("v" + strconv.Itoa(i))})
	}
	b, err := record.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProduceErrorCodes(t *testing.T) {
	n := startNode(t, [2]string{"auto.create.topics.enable", "false"})
	cl := n.client()
	if tr := createTopic(t, cl, "t", 1, nil); tr.ErrorCode != 0 {
		t.Fatalf("create: %v", kerr.ErrorForCode(tr.ErrorCode))
	}
	// kgo rewrites acks, so acks=2 goes over a raw connection.
	c := dial(t, n.addr)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, 2, 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch(t, -1, 0, 1)}}}}
	c.send(t, req, 3)
	_, body := c.recv(t)
	presp := req.ResponseKind().(*kmsg.ProduceResponse)
	// body[0] is the (empty) tag section of the flexible response header.
	if err := presp.ReadFrom(body[1:]); err != nil || presp.Topics[0].Partitions[0].ErrorCode != kerr.InvalidRequiredAcks.Code {
		t.Errorf("acks=2: got %v %+v", err, presp)
	}
	if got := produceRaw(t, cl, "nope", 1, batch(t, -1, 0, 1)); got.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("unknown topic: got %v", kerr.ErrorForCode(got.ErrorCode))
	}
	bad := batch(t, -1, 0, 3)
	bad[len(bad)-1] ^= 0xff
	if got := produceRaw(t, cl, "t", 1, bad); got.ErrorCode != kerr.CorruptMessage.Code {
		t.Errorf("bad crc: got %v", kerr.ErrorForCode(got.ErrorCode))
	}
	if got := produceRaw(t, cl, "t", -1, batch(t, -1, 0, 3)); got.ErrorCode != 0 || got.BaseOffset != 0 {
		t.Fatalf("good batch: %v at %d", kerr.ErrorForCode(got.ErrorCode), got.BaseOffset)
	}
	if got := produceRaw(t, cl, "t", 1, batch(t, -1, 0, 2)); got.ErrorCode != 0 || got.BaseOffset != 3 {
		t.Fatalf("second batch: %v at %d, want offset 3", kerr.ErrorForCode(got.ErrorCode), got.BaseOffset)
	}
}

func TestIdempotentSequences(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	createTopic(t, cl, "idem", 1, nil)
	pidResp, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctx(t), cl)
	if err != nil || pidResp.ErrorCode != 0 {
		t.Fatalf("init producer id: %v %v", err, pidResp)
	}
	pid := pidResp.ProducerID
	first := produceRaw(t, cl, "idem", -1, batch(t, pid, 0, 5))
	if first.ErrorCode != 0 || first.BaseOffset != 0 {
		t.Fatalf("first: %+v", first)
	}
	if got := produceRaw(t, cl, "idem", -1, batch(t, pid, 0, 5)); got.ErrorCode != 0 || got.BaseOffset != 0 {
		t.Fatalf("retry must be answered with the original offset: %+v", got)
	}
	if got := produceRaw(t, cl, "idem", -1, batch(t, pid, 7, 1)); got.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap: got %v", kerr.ErrorForCode(got.ErrorCode))
	}
	if got := produceRaw(t, cl, "idem", -1, batch(t, pid, 5, 2)); got.ErrorCode != 0 || got.BaseOffset != 5 {
		t.Fatalf("next: %+v", got)
	}
	// After a restart the producer table is rebuilt from the log.
	n.stop()
	n.start()
	cl2 := n.client()
	if got := produceRaw(t, cl2, "idem", -1, batch(t, pid, 5, 2)); got.ErrorCode != 0 || got.BaseOffset != 5 {
		t.Fatalf("retry after restart: %+v", got)
	}
	if got := produceRaw(t, cl2, "idem", -1, batch(t, pid, 7, 1)); got.ErrorCode != 0 || got.BaseOffset != 7 {
		t.Fatalf("next after restart: %+v", got)
	}
	// Producer ids never repeat across restarts.
	again, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctx(t), cl2)
	if err != nil || again.ProducerID <= pid {
		t.Fatalf("producer id after restart %d, first was %d (%v)", again.ProducerID, pid, err)
	}
}

func TestCreateTopicValidation(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	cases := []struct {
		name       string
		partitions int32
		configs    map[string]string
		want       error
	}{
		{"bad/name", 1, nil, kerr.InvalidTopicException},
		{"zero", 0, nil, kerr.InvalidPartitions},
		{"badcfg", 1, map[string]string{"retention.ms": "soon"}, kerr.InvalidConfig},
		{"unknowncfg", 1, map[string]string{"no.such.thing": "1"}, kerr.InvalidConfig},
		{"ok", 2, map[string]string{"retention.ms": "1000"}, nil},
		{"ok", 2, nil, kerr.TopicAlreadyExists},
	}
	for _, c := range cases {
		got := createTopic(t, cl, c.name, c.partitions, c.configs)
		if err := kerr.ErrorForCode(got.ErrorCode); err != c.want {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: "rf", NumPartitions: 1, ReplicationFactor: 3}}
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil || resp.Topics[0].ErrorCode != kerr.InvalidReplicationFactor.Code {
		t.Errorf("rf 3 on one node: %v %v", err, resp)
	}
}

func TestTopicConfigs(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	createTopic(t, cl, "cfg", 1, map[string]string{"retention.ms": "12345"})
	describe := func() map[string]kmsg.DescribeConfigsResponseResourceConfig {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: resourceTopic, ResourceName: "cfg"}}
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil || resp.Resources[0].ErrorCode != 0 {
			t.Fatalf("describe: %v %+v", err, resp)
		}
		m := map[string]kmsg.DescribeConfigsResponseResourceConfig{}
		for _, c := range resp.Resources[0].Configs {
			m[c.Name] = c
		}
		return m
	}
	got := describe()
	if c := got["retention.ms"]; *c.Value != "12345" || c.Source != kmsg.ConfigSource(config.SourceDynamicTopic) {
		t.Fatalf("retention.ms: %v source %d", *c.Value, c.Source)
	}
	if c := got["segment.bytes"]; *c.Value != "1073741824" || c.Source != kmsg.ConfigSource(config.SourceDefault) {
		t.Fatalf("segment.bytes: %v source %d", *c.Value, c.Source)
	}
	alter := kmsg.NewPtrIncrementalAlterConfigsRequest()
	alter.Resources = []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: resourceTopic, ResourceName: "cfg",
		Configs: []kmsg.IncrementalAlterConfigsRequestResourceConfig{
			{Name: "retention.ms", Op: opDelete},
			{Name: "segment.bytes", Op: opSet, Value: kmsg.StringPtr("1048576")},
		}}}
	aresp, err := alter.RequestWith(ctx(t), cl)
	if err != nil || aresp.Resources[0].ErrorCode != 0 {
		t.Fatalf("alter: %v %+v", err, aresp)
	}
	got = describe()
	if c := got["retention.ms"]; *c.Value != "604800000" || c.Source != kmsg.ConfigSource(config.SourceDefault) {
		t.Fatalf("retention.ms after delete: %v source %d", *c.Value, c.Source)
	}
	if c := got["segment.bytes"]; *c.Value != "1048576" {
		t.Fatalf("segment.bytes after set: %v", *c.Value)
	}
	alter.Resources[0].Configs = []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: "segment.bytes", Op: opSet, Value: kmsg.StringPtr("-5")}}
	aresp, err = alter.RequestWith(ctx(t), cl)
	if err != nil || aresp.Resources[0].ErrorCode != kerr.InvalidConfig.Code {
		t.Fatalf("invalid alter: %v %+v", err, aresp)
	}
}

// rawConn speaks the wire protocol directly, for framing tests.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{c, bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, req kmsg.Request, corr int32) {
	if _, err := c.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, corr)); err != nil {
		t.Fatal(err)
	}
}

func (c *rawConn) recv(t *testing.T) (int32, []byte) {
	t.Helper()
	b, err := protocol.ReadFrame(c.r, 1<<24)
	if err != nil {
		t.Fatal(err)
	}
	return int32(binary.BigEndian.Uint32(b)), b[4:]
}

func TestApiVersionsUnsupportedVersion(t *testing.T) {
	n := startNode(t)
	c := dial(t, n.addr)
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	b := kmsg.NewRequestFormatter().AppendRequest(nil, req, 5)
	binary.BigEndian.PutUint16(b[6:8], 99) // version 99
	c.Write(b)
	corr, body := c.recv(t)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	if err := resp.ReadFrom(body); err != nil || corr != 5 {
		t.Fatalf("corr %d: %v", corr, err)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) == 0 {
		t.Fatalf("want UNSUPPORTED_VERSION with the key list, got %+v", resp)
	}
}

func TestPipelinedResponsesInOrder(t *testing.T) {
	n := startNode(t)
	c := dial(t, n.addr)
	for i := int32(0); i < 40; i++ {
		if i%2 == 0 {
			c.send(t, kmsg.NewPtrMetadataRequest(), i)
		} else {
			c.send(t, kmsg.NewPtrApiVersionsRequest(), i)
		}
	}
	for i := int32(0); i < 40; i++ {
		if corr, _ := c.recv(t); corr != i {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
}

func TestOversizedAndGarbageRequestsCloseConnection(t *testing.T) {
	n := startNode(t, [2]string{"socket.request.max.bytes", "4096"})
	c := dial(t, n.addr)
	c.Write([]byte{0, 0, 0x20, 0}) // 8 KiB frame
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("oversized frame: connection still open")
	}
	c = dial(t, n.addr)
	c.Write([]byte{0, 0, 0, 12, 0, 99, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0}) // unknown api key 99
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("unknown api: connection still open")
	}
	// The node still serves others.
	c = dial(t, n.addr)
	c.send(t, kmsg.NewPtrApiVersionsRequest(), 1)
	if corr, _ := c.recv(t); corr != 1 {
		t.Fatal("node stopped answering")
	}
}

// TestEmptyFetchIsNotNull: a partition with nothing to return must carry a
// zero-length record set, not a null one (librdkafka rejects size -1).
func TestEmptyFetchIsNotNull(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	createTopic(t, cl, "empty", 1, nil)
	c := dial(t, n.addr)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.ReplicaID, req.MaxWaitMillis, req.MaxBytes = -1, 0, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "empty"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	c.send(t, req, 1)
	_, body := c.recv(t)
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(11)
	if err := resp.ReadFrom(body); err != nil {
		t.Fatal(err)
	}
	got := resp.Topics[0].Partitions[0]
	if got.ErrorCode != 0 || got.RecordBatches == nil {
		t.Fatalf("error %d, record set nil=%v (want empty, non-null)", got.ErrorCode, got.RecordBatches == nil)
	}
}

// TestClusterDynamicConfigs: the cluster default broker configs (BROKER
// resource, empty name) change topic defaults at run time, persist across a
// restart, and refuse read-only names, bad values and per-broker names.
func TestClusterDynamicConfigs(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	createTopic(t, cl, "dyn", 1, nil)
	alter := func(name string, cfgs ...kmsg.IncrementalAlterConfigsRequestResourceConfig) int16 {
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		req.Resources = []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: resourceBroker, ResourceName: name, Configs: cfgs}}
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Resources[0].ErrorCode
	}
	retention := func() (string, kmsg.ConfigSource) {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: resourceTopic, ResourceName: "dyn", ConfigNames: []string{"retention.ms"}}}
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil || len(resp.Resources[0].Configs) != 1 {
			t.Fatalf("describe: %v %+v", err, resp)
		}
		c := resp.Resources[0].Configs[0]
		return *c.Value, c.Source
	}
	set := kmsg.IncrementalAlterConfigsRequestResourceConfig{Name: "log.retention.ms", Op: opSet, Value: kmsg.StringPtr("3600000")}
	if code := alter("", set); code != 0 {
		t.Fatalf("set cluster default: %v", kerr.ErrorForCode(code))
	}
	if v, src := retention(); v != "3600000" || src != kmsg.ConfigSource(config.SourceDynamicDefaultBroker) {
		t.Fatalf("retention.ms = %s (source %d), want the cluster default", v, src)
	}
	for _, bad := range []struct {
		name string
		cfg  kmsg.IncrementalAlterConfigsRequestResourceConfig
	}{
		{"", kmsg.IncrementalAlterConfigsRequestResourceConfig{Name: "log.dirs", Op: opSet, Value: kmsg.StringPtr("/x")}},
		{"", kmsg.IncrementalAlterConfigsRequestResourceConfig{Name: "log.retention.ms", Op: opSet, Value: kmsg.StringPtr("soon")}},
		{"", kmsg.IncrementalAlterConfigsRequestResourceConfig{Name: "no.such.thing", Op: opSet, Value: kmsg.StringPtr("1")}},
		{"1", set},
	} {
		if code := alter(bad.name, bad.cfg); code != kerr.InvalidConfig.Code {
			t.Errorf("alter %q %s: %v, want INVALID_CONFIG", bad.name, bad.cfg.Name, kerr.ErrorForCode(code))
		}
	}
	n.stop()
	n.start()
	cl = n.client()
	if v, _ := retention(); v != "3600000" {
		t.Fatalf("after restart retention.ms = %s", v)
	}
	if code := alter("", kmsg.IncrementalAlterConfigsRequestResourceConfig{Name: "log.retention.ms", Op: opDelete}); code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	if v, src := retention(); v != "604800000" || src != kmsg.ConfigSource(config.SourceDefault) {
		t.Fatalf("after delete: %s (source %d)", v, src)
	}
}

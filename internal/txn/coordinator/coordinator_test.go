package coordinator

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/group"
	"strand/internal/record"
)

// memLog is a Log over in-memory partitions.
type memLog struct {
	mu    sync.Mutex
	parts map[int32][][]byte // batches, one offset each (single-record batches)
}

func (l *memLog) Append(_ context.Context, p int32, records []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	off := int64(len(l.parts[p]))
	b := bytes.Clone(records)
	record.SetBaseOffset(b, off)
	l.parts[p] = append(l.parts[p], b)
	return nil
}

func (l *memLog) Read(p int32, offset int64, _ int) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []byte
	for _, b := range l.parts[p][offset:] {
		out = append(out, b...)
	}
	return out, nil
}

func (l *memLog) Bounds(p int32) (int64, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return 0, int64(len(l.parts[p])), nil
}

// markers records WriteMarkers calls; fail makes the next calls fail.
type markers struct {
	mu    sync.Mutex
	calls []string
	fail  int
}

func (m *markers) WriteMarkers(_ context.Context, pid int64, epoch int16, commit bool, _ int32, parts map[string][]int32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return errors.New("leader not available")
	}
	kind := "abort"
	if commit {
		kind = "commit"
	}
	m.calls = append(m.calls, kind)
	return nil
}

func (m *markers) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}

func newTestCoordinator(t *testing.T, l *memLog, mk *markers) *Coordinator {
	next := int64(100)
	var mu sync.Mutex
	c := New(Config{Partitions: 1, MaxTimeout: time.Minute, AbortInterval: time.Hour, NextProducerID: func(context.Context) (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		next++
		return next, nil
	}}, l, mk)
	t.Cleanup(c.Close)
	return c
}

func initPID(t *testing.T, c *Coordinator, id string) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch = &id, 10000, -1, -1
	resp := c.InitProducerID(context.Background(), req)
	if resp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.ProducerID, resp.ProducerEpoch
}

func addPartition(c *Coordinator, id string, pid int64, epoch int16) int16 {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 3
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = "data", []int32{0, 1}
	req.Topics = append(req.Topics, rt)
	resp := c.AddPartitionsToTxn(context.Background(), req, func(string, int32) bool { return true })
	return resp.Topics[0].Partitions[0].ErrorCode
}

// TestFailoverCompletesPrepareCommit: a coordinator that loads a
// PrepareCommit writes the COMMIT markers and persists CompleteCommit; a
// reload of the result finds CompleteCommit and writes nothing more.
func TestFailoverCompletesPrepareCommit(t *testing.T) {
	l := &memLog{parts: map[int32][][]byte{}}
	m := &meta{id: "t", pid: 7, epoch: 3, timeoutMs: 1000, state: PrepareCommit, parts: map[string]map[int32]bool{}, startMs: 1, updateMs: 1}
	m.add("data", 0)
	if err := (&Coordinator{log: l}).persist(context.Background(), 0, "t", m); err != nil {
		t.Fatal(err)
	}
	mk := &markers{fail: 2} // the first attempts fail: completion retries
	c := newTestCoordinator(t, l, mk)
	if err := c.Load(0, 5); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tx, code := c.Describe("t")
		if code == 0 && tx.State == CompleteCommit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %v (code %d), markers %v", tx.State, code, mk.calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if mk.count() != 1 || mk.calls[0] != "commit" {
		t.Fatalf("markers %v, want one commit", mk.calls)
	}
	c2 := newTestCoordinator(t, l, mk)
	if err := c2.Load(0, 6); err != nil {
		t.Fatal(err)
	}
	if tx, _ := c2.Describe("t"); tx.State != CompleteCommit || tx.Epoch != 3 {
		t.Fatalf("reloaded %+v", tx)
	}
	if mk.count() != 1 {
		t.Fatalf("markers %v after reload", mk.calls)
	}
}

// TestFencing: a second InitProducerId bumps the epoch, aborting the open
// transaction first; the old epoch is refused on every request.
func TestFencing(t *testing.T) {
	l := &memLog{parts: map[int32][][]byte{}}
	mk := &markers{}
	c := newTestCoordinator(t, l, mk)
	if err := c.Load(0, 1); err != nil {
		t.Fatal(err)
	}
	pid, e0 := initPID(t, c, "f")
	if code := addPartition(c, "f", pid, e0); code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	pid2, e1 := initPID(t, c, "f")
	if pid2 != pid || e1 <= e0+1 {
		t.Fatalf("re-init gave %d/%d after %d/%d", pid2, e1, pid, e0)
	}
	if fmtCalls := mk.calls; len(fmtCalls) != 1 || fmtCalls[0] != "abort" {
		t.Fatalf("markers %v, want the open transaction aborted", fmtCalls)
	}
	if code := addPartition(c, "f", pid, e0); code != kerr.ProducerFenced.Code {
		t.Fatalf("old epoch AddPartitions: %v", kerr.ErrorForCode(code))
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.Version = 3
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = "f", pid, e0, true
	if code := c.EndTxn(context.Background(), end).ErrorCode; code != kerr.ProducerFenced.Code {
		t.Fatalf("old epoch EndTxn: %v", kerr.ErrorForCode(code))
	}
	end.Version = 1
	if code := c.EndTxn(context.Background(), end).ErrorCode; code != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("old epoch EndTxn v1: %v", kerr.ErrorForCode(code))
	}
	// The new epoch works end to end.
	if code := addPartition(c, "f", pid, e1); code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	end.Version, end.ProducerEpoch = 3, e1
	if code := c.EndTxn(context.Background(), end).ErrorCode; code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	if tx, _ := c.Describe("f"); tx.State != CompleteCommit {
		t.Fatalf("state %v", tx.State)
	}
}

// TestPartitionForMatchesJava: the partition of an id is computed from
// Java's String.hashCode over UTF-16 units, as the group coordinator's
// (which has its own Java-checked tests) and Kafka do.
func TestPartitionForMatchesJava(t *testing.T) {
	if got := PartitionFor("a", 50); got != 97%50 { // "a".hashCode() = 97
		t.Fatalf("PartitionFor(a) = %d", got)
	}
	for _, id := range []string{"", "a", "my-txn", "transactional-id-42", "ünïcode", "emoji-\U0001F600-id", strings.Repeat("long", 100)} {
		if got, want := PartitionFor(id, 50), group.PartitionFor(id, 50); got != want {
			t.Errorf("PartitionFor(%q) = %d, group.PartitionFor = %d", id, got, want)
		}
	}
}

// FuzzDecodeRecord: arbitrary keys and values never panic, and what
// decodes re-encodes to a value that decodes to the same state.
func FuzzDecodeRecord(f *testing.F) {
	m := &meta{id: "x", pid: 1, epoch: 2, timeoutMs: 60000, state: Ongoing, parts: map[string]map[int32]bool{}, startMs: 5, updateMs: 6}
	m.add("t", 3)
	f.Add(encodeKey("x"), encodeValue(m))
	f.Add(encodeKey("x"), []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		id, got, err := decodeRecord(key, value)
		if err != nil || got == nil {
			return
		}
		_, again, err := decodeRecord(encodeKey(id), encodeValue(got))
		if err != nil || again.pid != got.pid || again.epoch != got.epoch || again.state != got.state || len(again.partitionList()) != len(got.partitionList()) {
			t.Fatalf("re-decode: %v %+v vs %+v", err, again, got)
		}
	})
}

// TestConcurrentFirstInit: concurrent first InitProducerIds of one id get
// one producer id between them (the others CONCURRENT_TRANSACTIONS or a
// later epoch of the same id).
func TestConcurrentFirstInit(t *testing.T) {
	l := &memLog{parts: map[int32][][]byte{}}
	c := newTestCoordinator(t, l, &markers{})
	if err := c.Load(0, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	pids := make(chan int64, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "same"
			req := kmsg.NewPtrInitProducerIDRequest()
			req.TransactionalID, req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch = &id, 10000, -1, -1
			resp := c.InitProducerID(context.Background(), req)
			switch resp.ErrorCode {
			case 0:
				pids <- resp.ProducerID
			case kerr.ConcurrentTransactions.Code:
			default:
				t.Errorf("InitProducerId: %v", kerr.ErrorForCode(resp.ErrorCode))
			}
		}()
	}
	wg.Wait()
	close(pids)
	seen := map[int64]bool{}
	for p := range pids {
		seen[p] = true
	}
	if len(seen) != 1 {
		t.Fatalf("producer ids handed out: %v, want exactly one", seen)
	}
}

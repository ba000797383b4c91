package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/record"
	"strand/internal/testcluster"
)

// rawProduce sends one batch of a single value to topic/0 (acks=all, no
// retries) and returns the partition's error code and message.
func rawProduce(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, value []byte) (int16, string) {
	t.Helper()
	b, err := record.Build(record.BuildSpec{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: []record.Record{{Timestamp: time.Now().UnixMilli(), Value: value}}})
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = b
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	p := resp.Topics[0].Partitions[0]
	msg := ""
	if p.ErrorMessage != nil {
		msg = *p.ErrorMessage
	}
	return p.ErrorCode, msg
}

// TestFullDisk fills the data directory's file system (a 20 MiB tmpfs)
// while producing to one topic: produce then fails with
// KAFKA_STORAGE_ERROR, the node keeps running and serving reads of every
// topic, produce succeeds again without a restart once space is freed, and
// after a clean restart every acknowledged record is there, offsets dense
// (no torn or half-indexed segment).
func TestFullDisk(t *testing.T) {
	mnt := testcluster.MountTmpfs(t, "20m")
	n := testcluster.StartNode(t, testcluster.WithDataDir(filepath.Join(mnt, "data")))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm := newAdmin(t, n)
	createTopic(ctx, t, adm, "full", 1, map[string]*string{"segment.bytes": ptr(strconv.Itoa(130 << 10))})
	createTopic(ctx, t, adm, "other", 1, nil)
	cl := newClient(t, n)
	for i := range 50 {
		if code, msg := rawProduce(ctx, t, cl, "other", []byte(strconv.Itoa(i))); code != 0 {
			t.Fatalf("produce to other: %v %s", kerr.ErrorForCode(code), msg)
		}
	}

	// Leave about 3 MiB free, then produce 60 KiB records until the disk is full.
	ballast := filepath.Join(mnt, "ballast")
	testcluster.FillDisk(t, ballast, 3<<20)
	value := bytes.Repeat([]byte("x"), 60<<10)
	acked := 0
	var code int16
	var msg string
	for ; acked < 200; acked++ {
		if code, msg = rawProduce(ctx, t, cl, "full", value); code != 0 {
			break
		}
	}
	t.Logf("disk full after %d acknowledged records: %v: %s", acked, kerr.ErrorForCode(code), msg)
	if code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce to a full disk: error %v (%s), want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code), msg)
	}
	// Fill the last pages with small records, so that index and checkpoint
	// writes run out of space too.
	small := 0
	for ; small < 5000; small++ {
		if code, msg = rawProduce(ctx, t, cl, "full", value[:100]); code != 0 {
			break
		}
	}
	acked += small
	t.Logf("then %d 100-byte records until: %v: %s", small, kerr.ErrorForCode(code), msg)
	if code != kerr.KafkaStorageError.Code {
		t.Fatalf("small produce to a full disk: error %v (%s), want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code), msg)
	}
	// A record too big for the active segment rolls a new one with the disk
	// full: sealing the old segment writes its indexes and the recovery
	// point, which fail too.
	if code, msg := rawProduce(ctx, t, cl, "full", bytes.Repeat([]byte("r"), 120<<10)); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce rolling a segment on a full disk: error %v (%s), want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code), msg)
	}
	// Reads of every topic go on.
	if got := len(consumeAll(ctx, t, n, "other", 30*time.Second)[0]); got != 50 {
		t.Fatalf("other: read %d records with the disk full, want 50", got)
	}
	if recs := consumeAll(ctx, t, n, "full", 30*time.Second)[0]; len(recs) != acked {
		t.Fatalf("full: read %d records with the disk full, want the %d acknowledged", len(recs), acked)
	}

	// A metadata change with the disk full (the metadata log is on it too).
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	_, cerr := adm.CreateTopic(cctx, 1, 1, nil, "while-full")
	ccancel()
	t.Logf("creating a topic with the disk full: err=%v", cerr) // either outcome is fine; the node must stay up
	if !n.Running() {
		t.Fatalf("node exited with the disk full:\n%s", n.LogTail(40))
	}

	// Free the space: produce succeeds again, without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		code, msg := rawProduce(ctx, t, cl, "full", value)
		if code == 0 {
			acked++
			break
		}
		if time.Since(freed) > 10*time.Second {
			t.Fatalf("produce still fails 10 s after space was freed: %v %s", kerr.ErrorForCode(code), msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("produce succeeded again %v after space was freed", time.Since(freed).Round(time.Millisecond))
	for range 20 {
		if code, msg := rawProduce(ctx, t, cl, "full", value); code != 0 {
			t.Fatalf("produce after recovery: %v %s", kerr.ErrorForCode(code), msg)
		}
		acked++
	}

	// Metadata changes work again.
	createTopic(ctx, t, adm, "after-full", 1, nil)
	if code, msg := rawProduce(ctx, t, cl, "after-full", value); code != 0 {
		t.Fatalf("produce to a topic created after recovery: %v %s", kerr.ErrorForCode(code), msg)
	}

	// A clean restart finds every acknowledged record, offsets dense.
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	recs := consumeAll(ctx, t, n, "full", 60*time.Second)[0]
	checkDense(t, "full", 0, recs)
	if len(recs) != acked {
		t.Fatalf("full: %d records after restart, want the %d acknowledged", len(recs), acked)
	}

	// kill -9 with the disk full again, and start on the full disk: once
	// space is freed, without another restart, every acknowledged record is
	// there, offsets dense (registration and the opening of partitions whose
	// recovery must write wait for space, and are retried).
	testcluster.FillDisk(t, ballast, 1<<20)
	before := acked
	for ; acked < before+200; acked++ {
		if code, msg := rawProduce(ctx, t, cl, "full", value); code != 0 {
			if code != kerr.KafkaStorageError.Code {
				t.Fatalf("produce to a full disk: %v %s", kerr.ErrorForCode(code), msg)
			}
			break
		}
	}
	for small = 0; small < 5000; small++ {
		if code, _ := rawProduce(ctx, t, cl, "full", value[:100]); code != 0 {
			break
		}
		acked++
	}
	if code, msg := rawProduce(ctx, t, cl, "full", bytes.Repeat([]byte("r"), 120<<10)); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce rolling a segment on a full disk: error %v (%s), want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code), msg)
	}
	n.Kill()
	logBefore, _ := os.ReadFile(n.LogPath())
	n.Start(t)
	// Wait until the node, starting on the full disk, has run into it
	// (its metadata log or a partition's recovery could not write).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		log, _ := os.ReadFile(n.LogPath())
		if len(log) > len(logBefore) && bytes.Contains(log[len(logBefore):], []byte("no space left on device")) {
			break
		}
		if time.Now().After(deadline) || !n.Running() {
			t.Fatalf("node started on a full disk: no write failed within 30 s (running %v):\n%s", n.Running(), n.LogTail(30))
		}
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	freed = time.Now()
	recs = consumeAll(ctx, t, n, "full", 60*time.Second)[0]
	t.Logf("started on a full disk after kill -9: every record readable %v after space was freed, without a restart", time.Since(freed).Round(time.Millisecond))
	checkDense(t, "full", 0, recs)
	if len(recs) != acked {
		t.Fatalf("full: %d records after kill -9 on a full disk, want the %d acknowledged", len(recs), acked)
	}
	if log := n.LogTail(300); bytes.Contains([]byte(log), []byte("corrupt")) {
		t.Fatalf("restart after a full disk found corruption:\n%s", log)
	}
	if code, msg := rawProduce(ctx, t, cl, "full", value); code != 0 {
		t.Fatalf("produce after the crash on a full disk: %v %s", kerr.ErrorForCode(code), msg)
	}
}

func ptr(s string) *string { return &s }

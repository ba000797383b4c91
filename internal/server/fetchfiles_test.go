package server

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// partOff is a record's place.
type partOff struct {
	p int32
	o int64
}

// zcValue is the value of the i-th test record: its size varies (1 B to
// ~3 KB) and its bytes say which record it is.
func zcValue(i int) []byte {
	v := bytes.Repeat([]byte{byte('a' + i%26)}, 1+(i*37)%3000)
	copy(v, fmt.Sprintf("r%d.", i))
	return v
}

// produceKnown produces n records round-robin over parts partitions, in
// batches, and returns every record's value by partition and offset.
func produceKnown(t *testing.T, cl *kgo.Client, topic string, parts, n, from int) map[partOff][]byte {
	t.Helper()
	want := map[partOff][]byte{}
	for lo := 0; lo < n; lo += 500 {
		var rs []*kgo.Record
		for i := lo; i < min(n, lo+500); i++ {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: int32(i % parts), Key: []byte(fmt.Sprint(from + i)), Value: zcValue(from + i)})
		}
		res := cl.ProduceSync(ctx(t), rs...)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			want[partOff{r.Record.Partition, r.Record.Offset}] = r.Record.Value
		}
	}
	return want
}

// consumeExact reads topic from the start with cl until every record of
// want arrived, checking each one's value, offset and key, and that none
// comes twice.
func consumeExact(t *testing.T, cl *kgo.Client, want map[partOff][]byte) {
	t.Helper()
	seen := map[partOff]bool{}
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(seen) < len(want) {
		fs := cl.PollFetches(c)
		if c.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(seen), len(want))
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			k := partOff{r.Partition, r.Offset}
			w, ok := want[k]
			switch {
			case !ok:
				t.Fatalf("record at %d/%d was not produced", r.Partition, r.Offset)
			case seen[k]:
				t.Fatalf("record at %d/%d seen twice", r.Partition, r.Offset)
			case !bytes.Equal(r.Value, w) || !bytes.Equal(w, zcValue(keyOf(t, r))):
				t.Fatalf("record at %d/%d: key %q value %.20q..., want value %.20q...", r.Partition, r.Offset, r.Key, r.Value, w)
			}
			seen[k] = true
		})
	}
}

// keyOf returns the record number in a test record's key.
func keyOf(t *testing.T, r *kgo.Record) int {
	i, err := strconv.Atoi(string(r.Key))
	if err != nil {
		t.Fatalf("record at %d/%d: key %q", r.Partition, r.Offset, r.Key)
	}
	return i
}

// TestZeroCopyFetchFranzGo consumes 32 partitions of small segments with
// franz-go over PLAINTEXT, in small fetches, with the bytes read and
// CRC-checked first (fetch.verify.crc=true) and not read
// (fetch.verify.crc=false): every record arrives intact at its offset, and
// the record bytes went out with sendfile. A read_committed consumer (the
// copy path) reads them too.
func TestZeroCopyFetchFranzGo(t *testing.T) {
	for _, verify := range []string{"true", "false"} {
		t.Run("verify="+verify, func(t *testing.T) {
			n := startNode(t, [2]string{"fetch.verify.crc", verify})
			prod := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
			const parts = 32
			createTopic(t, prod, "zc", parts, map[string]string{"segment.bytes": "32768"})
			want := produceKnown(t, prod, "zc", parts, 4000, 0)
			fromFile, fromMem := zeroCopyStats.fromFile.Load(), zeroCopyStats.fromMemory.Load()
			cl := n.client(kgo.ConsumeTopics("zc"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchMaxPartitionBytes(20<<10), kgo.FetchMaxBytes(200<<10), kgo.FetchMaxWait(100*time.Millisecond))
			defer cl.Close()
			consumeExact(t, cl, want)
			if got := zeroCopyStats.fromFile.Load() - fromFile; got < 4000 {
				t.Fatalf("%d record bytes sent with sendfile", got)
			}
			if got := zeroCopyStats.fromMemory.Load() - fromMem; got != 0 {
				t.Fatalf("%d record bytes sent from memory with no truncation", got)
			}
			rc := n.client(kgo.ConsumeTopics("zc"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			defer rc.Close()
			consumeExact(t, rc, want)
		})
	}
}

// TestZeroCopyTLSCopies consumes over SASL_SSL, where TLS must encrypt the
// bytes: nothing goes out with sendfile and the records arrive intact;
// over SASL_PLAINTEXT they go out with sendfile.
func TestZeroCopyTLSCopies(t *testing.T) {
	sn := startSecureNode(t)
	prod := sn.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, prod, "zctls", 4, nil)
	want := produceKnown(t, prod, "zctls", 4, 600, 0)
	mech := plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism()
	consume := kgo.ConsumeTopics("zctls")
	start := kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())

	fromFile := zeroCopyStats.fromFile.Load()
	consumeExact(t, sn.saslClient(t, sn.saslSSL, true, mech, consume, start), want)
	if got := zeroCopyStats.fromFile.Load() - fromFile; got != 0 {
		t.Fatalf("%d bytes sent with sendfile over TLS", got)
	}
	consumeExact(t, sn.saslClient(t, sn.saslPlain, false, mech, consume, start), want)
	if got := zeroCopyStats.fromFile.Load() - fromFile; got == 0 {
		t.Fatal("nothing sent with sendfile over SASL_PLAINTEXT")
	}
}

// TestZeroCopyDuringRetention consumes while records are produced and
// DeleteRecords keeps deleting the oldest segments under the consumer's
// fetches: every record the consumer gets is intact, in its partition, and
// in produce order (a consumer that falls below the log start resets to
// it), and the broker serves on. The bytes are not read first
// (fetch.verify.crc=false): each range holds its own descriptor.
func TestZeroCopyDuringRetention(t *testing.T) {
	n := startNode(t, [2]string{"fetch.verify.crc", "false"})
	prod := n.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const parts = 4
	createTopic(t, prod, "zcret", parts, map[string]string{"segment.bytes": "16384"})
	produceKnown(t, prod, "zcret", parts, 1000, 0)
	stop := make(chan struct{})
	done := make(chan struct{})
	defer func() { close(stop); <-done }()
	adm := kadm.NewClient(prod)
	go func() { // produce more and delete the oldest records, round after round
		defer close(done)
		for round := 1; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			produceKnown(t, prod, "zcret", parts, 200, round*1000)
			os := kadm.Offsets{}
			for p := int32(0); p < parts; p++ {
				os.Add(kadm.Offset{Topic: "zcret", Partition: p, At: int64(round * 30)})
			}
			if _, err := adm.DeleteRecords(ctx(t), os); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	cl := n.client(kgo.ConsumeTopics("zcret"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxPartitionBytes(8<<10), kgo.FetchMaxWait(50*time.Millisecond))
	defer cl.Close()
	got := 0
	last := map[int32][2]int64{} // partition: last offset, last key
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got < 3000 && !t.Failed() {
		fs := cl.PollFetches(c)
		if c.Err() != nil {
			t.Fatalf("consumed %d records before the deadline", got)
		}
		fs.EachRecord(func(r *kgo.Record) {
			k := keyOf(t, r)
			prev, ok := last[r.Partition]
			switch {
			case !bytes.Equal(r.Value, zcValue(k)):
				t.Fatalf("record at %d/%d: key %d, value %.20q...", r.Partition, r.Offset, k, r.Value)
			case int32(k%parts) != r.Partition:
				t.Fatalf("record %d in partition %d", k, r.Partition)
			case ok && (r.Offset <= prev[0] || int64(k) <= prev[1]):
				t.Fatalf("partition %d: record %d at %d after record %d at %d", r.Partition, k, r.Offset, prev[1], prev[0])
			}
			last[r.Partition] = [2]int64{r.Offset, int64(k)}
			got++
		})
	}
}

// TestFetchQuotaNoVerify is TestFetchQuota with fetch.verify.crc=false: the
// quota counts the bytes a placeholder record set stands for, and a
// throttled fetch drops them (nothing is sent from the files).
func TestFetchQuotaNoVerify(t *testing.T) {
	testFetchQuota(t, [2]string{"fetch.verify.crc", "false"})
}

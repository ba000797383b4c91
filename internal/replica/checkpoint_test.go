package replica

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"strand/internal/metadata"
)

func TestHWCheckpointCodec(t *testing.T) {
	hws := map[TopicPartition]int64{{"a", 0}: 10, {"a", 1}: 0, {"b.c_d", 7}: 1 << 40}
	b := encodeHWCheckpoint(hws)
	if want := "0\n3\na 0 10\na 1 0\nb.c_d 7 1099511627776\n"; string(b) != want {
		t.Fatalf("encoded %q, want %q", b, want)
	}
	got, err := decodeHWCheckpoint(b)
	if err != nil || !maps.Equal(got, hws) {
		t.Fatalf("decoded %v, %v", got, err)
	}
	for _, bad := range []string{"", "1\n0\n", "0\n", "0\n2\na 0 1\n", "0\n1\na 0\n", "0\n1\na -1 3\n", "0\n1\na 0 -3\n",
		"0\n2\na 0 1\na 0 2\n", "0\n1\n 0 1\n", "0\n1\na 0 1 2\n", "0\n-1\n"} {
		if _, err := decodeHWCheckpoint([]byte(bad)); !errors.Is(err, errBadCheckpoint) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzDecodeHWCheckpoint: arbitrary bytes never panic; what decodes
// re-encodes to an equivalent checkpoint.
func FuzzDecodeHWCheckpoint(f *testing.F) {
	f.Add([]byte("0\n2\na 0 10\nb 3 4\n"))
	f.Add([]byte("0\n0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hws, err := decodeHWCheckpoint(b)
		if err != nil {
			if !errors.Is(err, errBadCheckpoint) {
				t.Fatalf("error not wrapping errBadCheckpoint: %v", err)
			}
			return
		}
		again, err := decodeHWCheckpoint(encodeHWCheckpoint(hws))
		if err != nil || !maps.Equal(again, hws) {
			t.Fatalf("round trip: %v, %v vs %v", err, again, hws)
		}
	})
}

// TestRestartRestoresHWAndProducerState: after a clean shutdown a
// replicated leader's high watermark comes back from the checkpoint (not
// its log start offset), and the producer table from the snapshot: a retry
// of the last idempotent batch is still recognised as a duplicate. A
// truncation removes snapshots above the new log end.
func TestRestartRestoresHWAndProducerState(t *testing.T) {
	defer func(v int64) { forcedSnapshotMinBytes = v }(forcedSnapshotMinBytes)
	forcedSnapshotMinBytes = 0 // this log is small
	dir := t.TempDir()
	id := metadata.NewTopicID()
	img := damagedTopic(id, 1, []int32{1, 2})
	m, store := managerOn(t, dir)
	store.set(img)
	p, _ := m.Get("d", 0)
	var last []byte
	for seq := int32(0); seq < 50; seq += 5 {
		last = idemBatch(t, 42, seq, 5)
		if _, err := p.Append(last, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	p.UpdateFollower(2, 40, time.Now())
	if hw := p.HighWatermark(); hw != 40 {
		t.Fatalf("HW %d before restart", hw)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d-0", snapshotName(50))); err != nil {
		t.Fatalf("no snapshot at the log end after shutdown: %v", err)
	}

	m2, store2 := managerOn(t, dir)
	defer m2.Close()
	store2.set(img)
	p2, ok := m2.Get("d", 0)
	if !ok {
		t.Fatal("not reopened")
	}
	if hw := p2.HighWatermark(); hw != 40 {
		t.Fatalf("HW %d after restart, want the checkpointed 40", hw)
	}
	p2.mu.Lock()
	snap := p2.snapOffset
	p2.mu.Unlock()
	if snap != 50 {
		t.Fatalf("producer state not loaded from the snapshot (snapshot offset %d)", snap)
	}
	res, err := p2.Append(last, time.Now())
	if err != nil || !res.Duplicate || res.BaseOffset != 45 {
		t.Fatalf("retry after restart: %+v, %v", res, err)
	}
	// Followers truncating below a snapshot drop it.
	img2 := cloneImage(img)
	img2.Topics["d"].Partitions[0].Leader, img2.Topics["d"].Partitions[0].LeaderEpoch = 2, 2
	store2.set(img2)
	if err := p2.truncateAsFollower(2, 20); err != nil {
		t.Fatal(err)
	}
	if offs := snapshotOffsets(filepath.Join(dir, "d-0")); len(offs) != 0 {
		t.Fatalf("snapshots %v left above the log end 20", offs)
	}
}

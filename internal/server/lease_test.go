package server

import (
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/metadata"
	"strand/internal/replica"
)

// TestMetadataHidesSteppedDownLeader: once node 1's lease has lapsed,
// its Metadata answers stop naming it leader of the partitions it no
// longer acts for (LEADER_NOT_AVAILABLE), keep it where it is alone in the
// ISR, and leave it out of the broker list once it acts for nothing.
func TestMetadataHidesSteppedDownLeader(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load("", [][2]string{{"log.dirs", dir}, {"node.id", "1"}, {"replica.fetch.backoff.ms", "10"}})
	if err != nil {
		t.Fatal(err)
	}
	m := replica.NewManager(dir, cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { m.Close() })
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	m.SetLease(func() time.Time { return time.Unix(0, last.Load()) }, time.Minute)
	all := []int32{1, 2, 3}
	// Nothing listens on these ports: the fetcher for partition 1 just retries.
	brokers := []metadata.Broker{{ID: 1, Host: "127.0.0.1", Port: 1}, {ID: 2, Host: "127.0.0.1", Port: 2}, {ID: 3, Host: "127.0.0.1", Port: 3}}
	topic := &metadata.Topic{Name: "a", ID: metadata.NewTopicID(), Partitions: []metadata.Partition{
		{Index: 0, Leader: 1, LeaderEpoch: 1, Replicas: all, ISR: all},
		{Index: 1, Leader: 2, LeaderEpoch: 1, Replicas: all, ISR: all},
		{Index: 2, Leader: 1, LeaderEpoch: 1, Replicas: all, ISR: []int32{1}}, // alone in its ISR
	}}
	if err := m.Apply(&metadata.Image{Brokers: brokers, Topics: map[string]*metadata.Topic{"a": topic}}); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, parts: m}
	answer := func() *kmsg.MetadataResponse {
		resp := kmsg.NewPtrMetadataResponse()
		for _, b := range brokers {
			resp.Brokers = append(resp.Brokers, kmsg.MetadataResponseBroker{NodeID: b.ID, Host: b.Host, Port: b.Port})
		}
		resp.Topics = append(resp.Topics, topicMetadata(topic, 12))
		s.hideSteppedDown(resp)
		return resp
	}
	ids := func(r *kmsg.MetadataResponse) []int32 {
		var out []int32
		for _, b := range r.Brokers {
			out = append(out, b.NodeID)
		}
		return out
	}
	leaders := func(r *kmsg.MetadataResponse) (out [][2]int32) {
		for _, p := range r.Topics[0].Partitions {
			out = append(out, [2]int32{p.Leader, int32(p.ErrorCode)})
		}
		return out
	}
	lna := int32(kerr.LeaderNotAvailable.Code)

	r := answer()
	if got, want := leaders(r), [][2]int32{{1, 0}, {2, 0}, {1, 0}}; !slices.Equal(got, want) || !slices.Equal(ids(r), all) {
		t.Fatalf("with the lease: leaders %v brokers %v", got, ids(r))
	}
	last.Store(time.Now().Add(-time.Hour).UnixNano())
	r = answer()
	if got, want := leaders(r), [][2]int32{{-1, lna}, {2, 0}, {1, 0}}; !slices.Equal(got, want) || !slices.Equal(ids(r), all) {
		t.Fatalf("lease lost, still alone in the ISR of a-2: leaders %v brokers %v", got, ids(r))
	}
	// a-2 gets followers in its ISR: node 1 now acts for nothing.
	topic.Partitions[2].ISR, topic.Partitions[2].PartitionEpoch = all, 1
	if err := m.Apply(&metadata.Image{Brokers: brokers, Topics: map[string]*metadata.Topic{"a": topic}}); err != nil {
		t.Fatal(err)
	}
	r = answer()
	if got, want := leaders(r), [][2]int32{{-1, lna}, {2, 0}, {-1, lna}}; !slices.Equal(got, want) || !slices.Equal(ids(r), []int32{2, 3}) {
		t.Fatalf("lease lost, leading nothing: leaders %v brokers %v", got, ids(r))
	}
}

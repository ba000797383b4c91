package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// offsetForLeaderEpoch sends a raw OffsetForLeaderEpoch v4 request for
// partitions of topic, each {partition, currentLeaderEpoch, leaderEpoch}.
func offsetForLeaderEpoch(t *testing.T, addr, topic string, parts ...[3]int32) []kmsg.OffsetForLeaderEpochResponseTopicPartition {
	t.Helper()
	c := dial(t, addr)
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.SetVersion(4)
	req.ReplicaID = -1
	rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
	rt.Topic = topic
	for _, p := range parts {
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = p[0], p[1], p[2]
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	c.send(t, req, 7)
	corr, body := c.recv(t)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	// body[0] is the (empty) tag section of the flexible response header.
	if err := resp.ReadFrom(body[1:]); err != nil || corr != 7 {
		t.Fatalf("response (corr %d): %v", corr, err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].Topic != topic || len(resp.Topics[0].Partitions) != len(parts) {
		t.Fatalf("response shape %+v", resp)
	}
	return resp.Topics[0].Partitions
}

type epochAnswer struct {
	code  int16
	epoch int32
	end   int64
}

func checkEpochAnswers(t *testing.T, addr, topic string, cases map[[3]int32]epochAnswer) {
	t.Helper()
	var parts [][3]int32
	for k := range cases {
		parts = append(parts, k)
	}
	got := offsetForLeaderEpoch(t, addr, topic, parts...)
	for i, p := range parts {
		want, g := cases[p], got[i]
		if g.Partition != p[0] || g.ErrorCode != want.code || g.LeaderEpoch != want.epoch || g.EndOffset != want.end {
			t.Errorf("partition %d current %d epoch %d: got %v (%d, %d), want %v (%d, %d)", p[0], p[1], p[2],
				kerr.ErrorForCode(g.ErrorCode), g.LeaderEpoch, g.EndOffset, kerr.ErrorForCode(want.code), want.epoch, want.end)
		}
	}
}

func TestOffsetForLeaderEpoch(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	if tr := createTopic(t, cl, "ep", 1, nil); tr.ErrorCode != 0 {
		t.Fatalf("create: %v", kerr.ErrorForCode(tr.ErrorCode))
	}
	// The leader's epoch answers with the LEO before anything is written.
	checkEpochAnswers(t, n.addr, "ep", map[[3]int32]epochAnswer{{0, -1, 0}: {0, 0, 0}})
	for i := range 3 {
		if got := produceRaw(t, cl, "ep", -1, batch(t, -1, 0, 2)); got.ErrorCode != 0 || got.BaseOffset != int64(2*i) {
			t.Fatalf("produce: %+v", got)
		}
	}
	checkEpochAnswers(t, n.addr, "ep", map[[3]int32]epochAnswer{
		{0, -1, 0}:  {0, 0, 6},                              // latest epoch: the LEO
		{0, 0, 0}:   {0, 0, 6},                              // with a matching current epoch
		{0, -1, 1}:  {0, -1, -1},                            // an epoch the log does not know
		{0, -1, -1}: {0, -1, -1},                            // undefined epoch
		{0, 1, 0}:   {kerr.UnknownLeaderEpoch.Code, -1, -1}, // client ahead of the broker
		{7, -1, 0}:  {kerr.UnknownTopicOrPartition.Code, -1, -1},
	})
	got := offsetForLeaderEpoch(t, n.addr, "nope", [3]int32{0, -1, 0})
	if got[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown topic: %v", kerr.ErrorForCode(got[0].ErrorCode))
	}
}

// leaderEpochOf returns the partition's leader epoch from Metadata.
func leaderEpochOf(t *testing.T, n *node, topic string) int32 {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr(topic)}}
	resp, err := req.RequestWith(ctx(t), n.client())
	if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("metadata: %v %+v", err, resp)
	}
	return resp.Topics[0].Partitions[0].LeaderEpoch
}

// TestOffsetForLeaderEpochAcrossRestarts writes in three leader epochs (a
// restart re-elects the node with a higher epoch) and checks the answers
// come from the leader epoch cache, and that ListOffsets names the epoch of
// the offset it returns.
func TestOffsetForLeaderEpochAcrossRestarts(t *testing.T) {
	n := startNode(t)
	createTopic(t, n.client(), "ep", 1, nil)
	var epochs []int32
	var phaseStart []int64 // timestamp before each phase's records
	next := int64(0)
	for phase, batches := range []int{2, 2, 1} {
		if phase > 0 {
			n.stop()
			n.start()
		}
		epochs = append(epochs, leaderEpochOf(t, n, "ep"))
		if phase > 0 && epochs[phase] <= epochs[phase-1] {
			t.Fatalf("leader epoch did not grow across a restart: %v", epochs)
		}
		time.Sleep(2 * time.Millisecond)
		phaseStart = append(phaseStart, time.Now().UnixMilli())
		time.Sleep(2 * time.Millisecond)
		cl := n.client()
		for range batches {
			if got := produceRaw(t, cl, "ep", -1, batch(t, -1, 0, 2)); got.ErrorCode != 0 || got.BaseOffset != next {
				t.Fatalf("produce: %+v, want offset %d", got, next)
			}
			next += 2
		}
	}
	e0, e1, e2 := epochs[0], epochs[1], epochs[2] // starting at offsets 0, 4, 8; LEO 10
	cases := map[[3]int32]epochAnswer{
		{0, -1, e0}:     {0, e0, 4},
		{0, -1, e1}:     {0, e1, 8},
		{0, e2, e1}:     {0, e1, 8}, // with the current epoch
		{0, -1, e2}:     {0, e2, 10},
		{0, -1, e2 + 1}: {0, -1, -1},
		{0, e0, e2}:     {kerr.FencedLeaderEpoch.Code, -1, -1},  // client behind the broker
		{0, e2 + 1, e2}: {kerr.UnknownLeaderEpoch.Code, -1, -1}, // client ahead of the broker
	}
	if e0 > 0 {
		cases[[3]int32{0, -1, e0 - 1}] = epochAnswer{0, e0 - 1, 0} // below the earliest epoch (KIP-279)
	}
	if e0+1 < e1 {
		cases[[3]int32{0, -1, e0 + 1}] = epochAnswer{0, e0, 4} // an epoch without data
	}
	if e1+1 < e2 {
		cases[[3]int32{0, -1, e1 + 1}] = epochAnswer{0, e1, 8}
	}
	checkEpochAnswers(t, n.addr, "ep", cases)

	// ListOffsets names the epoch of the offset it returns.
	for _, c := range []struct {
		ts     int64
		offset int64
		epoch  int32
	}{{-2, 0, e0}, {-1, 10, e2}, {phaseStart[1], 4, e1}, {phaseStart[2], 8, e2}, {-3, 8, e2}} {
		req := kmsg.NewPtrListOffsetsRequest()
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = 0, c.ts, -1
		req.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: "ep", Partitions: []kmsg.ListOffsetsRequestTopicPartition{rp}}}
		resp, err := req.RequestWith(ctx(t), n.client())
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.Offset != c.offset || p.LeaderEpoch != c.epoch {
			t.Errorf("ListOffsets(%d): %v offset %d epoch %d, want offset %d epoch %d",
				c.ts, kerr.ErrorForCode(p.ErrorCode), p.Offset, p.LeaderEpoch, c.offset, c.epoch)
		}
	}
}

package metadata

import (
	"errors"
	"testing"
)

// mustApply applies recs, failing the test if the entry is skipped.
func mustApply(t testing.TB, im *Image, recs []Record, offset uint64) *Image {
	t.Helper()
	next, err := im.Apply(recs, offset)
	if err != nil {
		t.Fatalf("apply at %d: %v", offset, err)
	}
	return next
}

// FuzzApplyRecords: metadata log entries and snapshots are read back from
// disk and arrive over the network from other quorum members; decoding and
// applying any bytes must not panic, must not modify the image it started
// from, and must keep the invariants whatever the records say: a partition's
// leader epoch never decreases, a new leader never reuses an epoch, and an
// exact producer-id block never overlaps one handed out before.
func FuzzApplyRecords(f *testing.F) {
	rack := "r1"
	seed := []Record{
		{RegisterBroker: &Broker{ID: 1, Host: "h", Port: 9092, Rack: &rack}},
		{BrokerFenced: &BrokerFenceRecord{ID: 1, Epoch: 1}},
		{Topic: &Topic{Name: "t", Partitions: []Partition{{Index: 0, Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}}},
		{PartitionChange: &PartitionChangeRecord{Topic: "t", Partition: Partition{Index: 0, Leader: -1, LeaderEpoch: 1, Replicas: []int32{1}, ISR: []int32{1}}}},
		{Partitions: &AddPartitionsRecord{Topic: "t", Partitions: []Partition{{Index: 1}}}},
		{Configs: &TopicConfigRecord{Topic: "t", Configs: map[string]string{"retention.ms": "1"}}},
		{ProducerIDs: &ProducerIDsRecord{Broker: 1, Start: 1000, Count: 1000, Exact: true}},
		{ACLs: &ACLRecord{Add: []ACL{{ID: "a", ResourceType: ResourceTopic, ResourceName: "t", PatternType: PatternLiteral,
			Principal: "User:x", Host: "*", Operation: OpRead, Permission: PermissionAllow}}}},
		{ACLs: &ACLRecord{Remove: []string{"a"}}},
		{Quota: &QuotaRecord{Entity: QuotaEntity{User: QuotaPart{Set: true, Name: "u"}}, Set: map[string]float64{"producer_byte_rate": 1024}}},
		{Quota: &QuotaRecord{Entity: QuotaEntity{User: QuotaPart{Set: true, Name: "u"}}, Remove: []string{"producer_byte_rate"}}},
	}
	b, err := EncodeEntry(Entry{Term: 2, Records: seed})
	if err != nil {
		f.Fatal(err)
	}
	snap := []byte(`{"Topics":{"t":{"Name":"t","Partitions":[{"Index":0,"Leader":2,"LeaderEpoch":4,"PartitionEpoch":6,"Replicas":[1,2],"ISR":[1,2]}]}},"NextProducerID":5000}`)
	f.Add(b, []byte(`{"Topics":{}}`))
	f.Add([]byte(`[{"PartitionChange":{"Topic":"t","Partition":{"Index":-5}}}]`), []byte(`{"Topics":{"t":{"Name":"t","Partitions":[{"Index":0}]}}}`))
	f.Add([]byte(`[{"PartitionChange":{"Topic":"t","Partition":{"Index":0,"Leader":1,"LeaderEpoch":4,"PartitionEpoch":7},"From":{"LeaderEpoch":4,"PartitionEpoch":6}}}]`), snap)
	f.Add([]byte(`{"Records":[{"PartitionChange":{"Topic":"t","Partition":{"Index":0,"Leader":1,"LeaderEpoch":3}}}]}`), snap)
	f.Add([]byte(`{"Term":1,"Records":[{"ProducerIDs":{"Broker":1,"Start":4000,"Count":10,"Exact":true}}]}`), snap)
	f.Fuzz(func(t *testing.T, entry, snapshot []byte) {
		im, err := DecodeImage(snapshot)
		if err != nil {
			im = Empty()
		}
		before, err := EncodeImage(im)
		if err != nil {
			t.Skip()
		}
		e, err := DecodeEntry(entry)
		if err != nil {
			return
		}
		next, err := im.Apply(e.Records, im.Offset+1)
		if err != nil && !errors.Is(err, ErrStalePlan) {
			t.Fatalf("apply failed with %v, want nil or ErrStalePlan", err)
		}
		if next.Offset != im.Offset+1 {
			t.Fatalf("applied image at offset %d, want %d", next.Offset, im.Offset+1)
		}
		if _, err := EncodeImage(next); err != nil {
			t.Fatalf("applied image does not encode: %v", err)
		}
		after, _ := EncodeImage(im)
		if string(before) != string(after) {
			t.Fatalf("Apply modified the image it started from")
		}
		checkEpochsGrow(t, im, next)
		if next.NextProducerID < im.NextProducerID {
			t.Fatalf("next producer id went back from %d to %d", im.NextProducerID, next.NextProducerID)
		}
		if err != nil {
			return
		}
		// Exact blocks applied in this entry lie above every earlier block
		// and do not overlap each other.
		floor := im.NextProducerIDs()
		for _, r := range e.Records {
			if b := r.ProducerIDs; b != nil && b.Exact {
				if b.Start < floor || b.Count <= 0 {
					t.Fatalf("producer id block [%d, +%d) overlaps ids handed out below %d", b.Start, b.Count, floor)
				}
				floor = b.Start + b.Count
			}
		}
	})
}

// checkEpochsGrow fails unless every partition present in both images kept
// or raised its leader epoch, and raised it if its leader changed.
func checkEpochsGrow(t *testing.T, from, to *Image) {
	t.Helper()
	for name, ft := range from.Topics {
		tt, ok := to.Topics[name]
		if !ok || tt.ID != ft.ID {
			continue
		}
		for i, fp := range ft.Partitions {
			if i >= len(tt.Partitions) {
				break
			}
			tp := tt.Partitions[i]
			if tp.LeaderEpoch < fp.LeaderEpoch || (tp.Leader != fp.Leader && tp.LeaderEpoch == fp.LeaderEpoch) {
				t.Fatalf("%s-%d: leader %d epoch %d became leader %d epoch %d", name, i, fp.Leader, fp.LeaderEpoch, tp.Leader, tp.LeaderEpoch)
			}
		}
	}
}

package metadata

import (
	"testing"
)

// FuzzApplyRecords: metadata log entries and snapshots are read back from
// disk and arrive over the network from other quorum members; decoding and
// applying any bytes must not panic, and applying must not modify the image
// it started from.
func FuzzApplyRecords(f *testing.F) {
	rack := "r1"
	seed := []Record{
		{RegisterBroker: &Broker{ID: 1, Host: "h", Port: 9092, Rack: &rack}},
		{BrokerFenced: &BrokerFenceRecord{ID: 1, Epoch: 1}},
		{Topic: &Topic{Name: "t", Partitions: []Partition{{Index: 0, Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}}},
		{PartitionChange: &PartitionChangeRecord{Topic: "t", Partition: Partition{Index: 0, Leader: -1, Replicas: []int32{1}, ISR: []int32{1}}}},
		{Partitions: &AddPartitionsRecord{Topic: "t", Partitions: []Partition{{Index: 1}}}},
		{Configs: &TopicConfigRecord{Topic: "t", Configs: map[string]string{"retention.ms": "1"}}},
		{ProducerIDs: &ProducerIDsRecord{Broker: 1, Start: 1000, Count: 1000}},
		{ACLs: &ACLRecord{Add: []ACL{{ID: "a", ResourceType: ResourceTopic, ResourceName: "t", PatternType: PatternLiteral,
			Principal: "User:x", Host: "*", Operation: OpRead, Permission: PermissionAllow}}}},
		{ACLs: &ACLRecord{Remove: []string{"a"}}},
		{Quota: &QuotaRecord{Entity: QuotaEntity{User: QuotaPart{Set: true, Name: "u"}}, Set: map[string]float64{"producer_byte_rate": 1024}}},
		{Quota: &QuotaRecord{Entity: QuotaEntity{User: QuotaPart{Set: true, Name: "u"}}, Remove: []string{"producer_byte_rate"}}},
	}
	b, err := EncodeRecords(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, []byte(`{"Topics":{}}`))
	f.Add([]byte(`[{"PartitionChange":{"Topic":"t","Partition":{"Index":-5}}}]`), []byte(`{"Topics":{"t":{"Name":"t","Partitions":[{"Index":0}]}}}`))
	f.Fuzz(func(t *testing.T, entry, snapshot []byte) {
		im, err := DecodeImage(snapshot)
		if err != nil {
			im = Empty()
		}
		before, err := EncodeImage(im)
		if err != nil {
			t.Skip()
		}
		recs, err := DecodeRecords(entry)
		if err != nil {
			return
		}
		next := im.Apply(recs, im.Offset+1)
		if _, err := EncodeImage(next); err != nil {
			t.Fatalf("applied image does not encode: %v", err)
		}
		after, _ := EncodeImage(im)
		if string(before) != string(after) {
			t.Fatalf("Apply modified the image it started from")
		}
	})
}

package group

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

func must(r kv, err error) kv {
	if err != nil {
		panic(err)
	}
	return r
}

func TestOffsetRecordRoundTrip(t *testing.T) {
	tp := topicPartition{"orders", 7}
	for _, e := range []offsetEntry{
		{offset: 42, leaderEpoch: 3, metadata: "meta", commitTime: 1000, expireTime: -1},
		{offset: 0, leaderEpoch: -1, metadata: "", commitTime: 5, expireTime: -1},
		{offset: 9, leaderEpoch: -1, metadata: "x", commitTime: 5, expireTime: 99}, // v1 value
	} {
		r := must(offsetRecord("grp", tp, e))
		if v := int16(binary.BigEndian.Uint16(r.key)); v != offsetKeyVersion {
			t.Fatalf("key version %d", v)
		}
		wantValue := int16(offsetValueVersion)
		if e.expireTime >= 0 {
			wantValue = offsetValueVersionExpiry
		}
		if v := int16(binary.BigEndian.Uint16(r.value)); v != wantValue {
			t.Fatalf("value version %d, want %d", v, wantValue)
		}
		got, err := decodeRecord(r.key, r.value)
		if err != nil {
			t.Fatal(err)
		}
		if !got.isOffset || got.group != "grp" || got.tp != tp || got.offset == nil || *got.offset != e {
			t.Fatalf("round trip of %+v: %+v %+v", e, got, got.offset)
		}
	}
	ts := offsetTombstone("grp", tp)
	got, err := decodeRecord(ts.key, ts.value)
	if err != nil || !got.isOffset || got.offset != nil || got.tp != tp {
		t.Fatalf("tombstone: %+v %v", got, err)
	}
	// Kafka's own encoding of the key, by hand: int16 version, int16-length
	// group, int16-length topic, int32 partition.
	want := []byte{0, 1, 0, 3, 'g', 'r', 'p', 0, 6, 'o', 'r', 'd', 'e', 'r', 's', 0, 0, 0, 7}
	if !bytes.Equal(ts.key, want) {
		t.Fatalf("key bytes %v, want %v", ts.key, want)
	}
}

func TestGroupRecordRoundTrip(t *testing.T) {
	g := newGroup("grp", nil, time.UnixMilli(123456))
	inst := "i-1"
	g.add(&member{id: "m1", instanceID: &inst, clientID: "c1", clientHost: "/10.0.0.1", rebalanceTimeout: 60000, sessionTimeout: 45000,
		protocolType: "consumer", protocols: []protocol{{"range", subscription("a", "b")}, {"sticky", []byte("s")}}}, nil)
	g.add(&member{id: "m2", clientID: "c2", clientHost: "/10.0.0.2", rebalanceTimeout: 30000, sessionTimeout: 10000,
		protocolType: "consumer", protocols: []protocol{{"range", subscription("b")}}}, nil)
	g.generation, g.protocol, g.state = 4, "range", Stable
	r := must(groupRecord(g, map[string][]byte{"m1": []byte("A1"), "m2": []byte("A2")}))
	if k := r.key; !bytes.Equal(k, []byte{0, 2, 0, 3, 'g', 'r', 'p'}) {
		t.Fatalf("key %v", k)
	}
	if v := int16(binary.BigEndian.Uint16(r.value)); v != groupValueVersion {
		t.Fatalf("value version %d", v)
	}
	sr, err := decodeRecord(r.key, r.value)
	if err != nil || sr.isOffset || sr.group != "grp" || sr.meta == nil {
		t.Fatalf("decode: %+v %v", sr, err)
	}
	h := newHarness(t)
	loaded := newGroup("grp", nil, time.Time{})
	h.c.loadGroupMetadata(loaded, sr.meta)
	if loaded.state != Stable || loaded.generation != 4 || loaded.protocol != "range" || loaded.leader != "m1" ||
		loaded.protocolType != "consumer" || !loaded.stateTime.Equal(time.UnixMilli(123456)) || len(loaded.members) != 2 {
		t.Fatalf("loaded %+v", loaded)
	}
	m1 := loaded.byID["m1"]
	if m1.instanceID == nil || *m1.instanceID != "i-1" || loaded.static["i-1"] != "m1" || m1.clientID != "c1" || m1.clientHost != "/10.0.0.1" ||
		m1.rebalanceTimeout != 60000 || m1.sessionTimeout != 45000 || string(m1.assignment) != "A1" ||
		!bytes.Equal(m1.metadata("range"), subscription("a", "b")) {
		t.Fatalf("member %+v", m1)
	}
	if !loaded.subscribed["a"] || !loaded.subscribed["b"] || len(loaded.subscribed) != 2 {
		t.Fatalf("subscribed %v", loaded.subscribed)
	}
	ts := groupTombstone("grp")
	if sr, err := decodeRecord(ts.key, ts.value); err != nil || sr.isOffset || sr.meta != nil {
		t.Fatalf("tombstone: %+v %v", sr, err)
	}
	// An empty group record (after everyone left) has no protocol or leader.
	e := newGroup("e", nil, time.UnixMilli(1))
	e.protocolType, e.generation = "consumer", 9
	er := must(groupRecord(e, nil))
	sr, _ = decodeRecord(er.key, er.value)
	if sr.meta.Protocol != nil || sr.meta.Leader != nil || len(sr.meta.Members) != 0 || sr.meta.Generation != 9 {
		t.Fatalf("empty group record: %+v", sr.meta)
	}
}

func TestDecodeRejectsBadRecords(t *testing.T) {
	good := must(offsetRecord("g", topicPartition{"t", 0}, offsetEntry{offset: 1, leaderEpoch: -1, expireTime: -1}))
	cases := map[string][2][]byte{
		"short key":            {{0}, good.value},
		"truncated key":        {good.key[:len(good.key)-1], good.value},
		"truncated value":      {good.key, good.value[:len(good.value)-2]},
		"value version 99":     {good.key, append([]byte{0, 99}, good.value[2:]...)},
		"negative value ver":   {good.key, append([]byte{0xff, 0xff}, good.value[2:]...)},
		"unknown key version":  {{0, 9, 0, 0}, nil},
		"group value garbage":  {groupKey("g"), {0, 3, 0xff}},
		"huge member count":    {groupKey("g"), {0, 3, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff}},
		"one byte group value": {groupKey("g"), {0}},
	}
	for name, c := range cases {
		if _, err := decodeRecord(c[0], c[1]); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzDecodeRecord feeds arbitrary key/value bytes (as read from a damaged or
// hostile __consumer_offsets partition) to the decoder and to the group
// loader: neither may panic, and what decodes must re-encode to a record
// that decodes to the same thing.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(offsetKey("g", topicPartition{"t", 1}), must(offsetRecord("g", topicPartition{"t", 1}, offsetEntry{offset: 5, leaderEpoch: 2, metadata: "m", commitTime: 7, expireTime: -1})).value)
	g := newGroup("g", nil, time.UnixMilli(1))
	g.add(&member{id: "m", clientID: "c", protocolType: "consumer", protocols: []protocol{{"range", subscription("t")}}, sessionTimeout: 10, rebalanceTimeout: 10}, nil)
	g.protocol, g.generation = "range", 2
	f.Add(groupKey("g"), must(groupRecord(g, map[string][]byte{"m": []byte("a")})).value)
	f.Add(groupKey("g"), []byte(nil))
	f.Add([]byte{0, 0, 0, 1, 'g', 0, 1, 't', 0, 0, 0, 0}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 2, 0, 1, 'g'}, []byte{0, 4, 9, 0, 0, 0, 1, 0, 0, 0})
	c := New(testConfig(newFakeClock()), newMemLog())
	defer c.Close()
	f.Fuzz(func(t *testing.T, key, value []byte) {
		sr, err := decodeRecord(key, value)
		if err != nil {
			return
		}
		switch {
		case sr.isOffset && sr.offset != nil:
			r, err := offsetRecord(sr.group, sr.tp, *sr.offset)
			if err != nil {
				return // a newer (flexible) value with a string too long to re-encode
			}
			again, err := decodeRecord(r.key, r.value)
			if err != nil || *again.offset != *sr.offset || again.tp != sr.tp || again.group != sr.group {
				t.Fatalf("offset re-encode: %+v vs %+v (%v)", again, sr, err)
			}
		case !sr.isOffset && sr.meta != nil:
			lg := newGroup(sr.group, nil, time.Time{})
			c.loadGroupMetadata(lg, sr.meta) // must not panic on any content
			if len(lg.members) > 0 && (lg.byID[lg.leader] == nil || lg.state != Stable) {
				t.Fatalf("loaded group without a valid leader: %+v", lg)
			}
			r, err := groupRecord(lg, nil)
			if err != nil {
				return
			}
			if _, err := decodeRecord(r.key, r.value); err != nil {
				t.Fatalf("group re-encode: %v", err)
			}
		}
	})
}

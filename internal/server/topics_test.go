package server

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTopicNameCollision checks that topic names equal once '.' and '_' are
// identified are refused as Kafka refuses them, on CreateTopics (also with
// ValidateOnly) and on auto-creation by Metadata.
func TestTopicNameCollision(t *testing.T) {
	n := startNode(t)
	cl := n.client()
	if got := createTopic(t, cl, "a.b", 1, nil); got.ErrorCode != 0 {
		t.Fatalf("create a.b: %v", kerr.ErrorForCode(got.ErrorCode))
	}
	for _, validateOnly := range []bool{true, false} {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.ValidateOnly = validateOnly
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "a_b", 1, 1
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		got := resp.Topics[0]
		if got.ErrorCode != kerr.InvalidTopicException.Code || got.ErrorMessage == nil || !strings.Contains(*got.ErrorMessage, "collides with existing topic: a.b") {
			t.Errorf("create a_b (validate only %v): %v %v", validateOnly, kerr.ErrorForCode(got.ErrorCode), got.ErrorMessage)
		}
	}
	if got := createTopic(t, cl, "a.b", 1, nil); got.ErrorCode != kerr.TopicAlreadyExists.Code {
		t.Errorf("create a.b again: %v", kerr.ErrorForCode(got.ErrorCode))
	}

	// Auto-creation: x_y first, then x.y is refused either way.
	meta := func(topic string) int16 {
		req := kmsg.NewPtrMetadataRequest()
		req.AllowAutoTopicCreation = true
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, mt)
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].ErrorCode
	}
	if code := meta("x_y"); code != 0 {
		t.Fatalf("auto-create x_y: %v", kerr.ErrorForCode(code))
	}
	if code := meta("x.y"); code != kerr.InvalidTopicException.Code {
		t.Errorf("auto-create x.y: %v", kerr.ErrorForCode(code))
	}
	if code := meta("a_b"); code != kerr.InvalidTopicException.Code {
		t.Errorf("auto-create a_b: %v", kerr.ErrorForCode(code))
	}
	if got := createTopic(t, cl, "x.y", 1, nil); got.ErrorCode != kerr.InvalidTopicException.Code {
		t.Errorf("create x.y: %v", kerr.ErrorForCode(got.ErrorCode))
	}
	// Names without '.' or '_', or of another length, do not collide.
	for _, name := range []string{"a-b", "a.b.c", "a_bc"} {
		if got := createTopic(t, cl, name, 1, nil); got.ErrorCode != 0 {
			t.Errorf("create %s: %v", name, kerr.ErrorForCode(got.ErrorCode))
		}
	}
	req := kmsg.NewPtrMetadataRequest()
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, t := range resp.Topics {
		names = append(names, *t.Topic)
	}
	for _, bad := range []string{"a_b", "x.y"} {
		for _, name := range names {
			if name == bad {
				t.Errorf("topic %s exists: %v", bad, names)
			}
		}
	}
}

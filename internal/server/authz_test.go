package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"strand/internal/metadata"
	"strand/internal/protocol"
	"strand/internal/security"
)

var authzSets = [][2]string{
	{"authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"},
	{"super.users", "User:admin"},
	{"auto.create.topics.enable", "false"},
}

// testUsers are the PLAIN users of a SASL node's SASL_PLAINTEXT listener;
// each one's password is its name + "-secret".
var testUsers = []string{"admin", "alice", "bob", "carol", "dave", "erin", "eve", "reader"}

// saslSets adds a SASL_PLAINTEXT listener on saslAddr, with PLAIN for
// testUsers, to the listeners list: principals in tests authenticate for
// real (User:<name>), the PLAINTEXT listener stays anonymous (and
// inter-broker).
func saslSets(listeners, saslAddr string) [][2]string {
	jaas := "org.apache.kafka.common.security.plain.PlainLoginModule required"
	for _, u := range testUsers {
		jaas += fmt.Sprintf(" user_%s=%q", u, u+"-secret")
	}
	return [][2]string{
		{"listeners", listeners + ",SASL_PLAINTEXT://" + saslAddr},
		{"sasl.enabled.mechanisms", "PLAIN"},
		{"listener.name.sasl_plaintext.plain.sasl.jaas.config", jaas + ";"},
	}
}

// startSASLNode is startNode with a SASL_PLAINTEXT listener (n.saslAddr)
// whose PLAIN users are testUsers: n.as and n.dialAs authenticate there.
func startSASLNode(t *testing.T, sets ...[2]string) *node {
	n := &node{t: t, dir: t.TempDir(), addr: freeAddr(t), saslAddr: freeAddr(t)}
	n.sets = append(saslSets("PLAINTEXT://"+n.addr, n.saslAddr), sets...)
	n.start()
	t.Cleanup(n.stop)
	return n
}

// as returns a client of n authenticated (SASL/PLAIN on n's SASL
// listener) as User:name, one of testUsers.
func (n *node) as(name string, opts ...kgo.Opt) *kgo.Client {
	n.t.Helper()
	if n.saslAddr == "" {
		n.t.Fatal("as: the node has no SASL listener (start it with startSASLNode)")
	}
	return n.client(append([]kgo.Opt{kgo.SeedBrokers(n.saslAddr), kgo.SASL(plain.Auth{User: name, Pass: name + "-secret"}.AsMechanism())}, opts...)...)
}

// dialAs returns a raw connection to n's SASL listener authenticated
// (SASL/PLAIN) as User:user.
func (n *node) dialAs(t *testing.T, user string) *rawClient {
	t.Helper()
	c := dial(t, n.saslAddr)
	saslPlainLogin(t, c, 1000, user, user+"-secret")
	return &rawClient{c, "test"}
}

func mustACLs(t *testing.T, adm *kadm.Client, b *kadm.ACLBuilder) {
	t.Helper()
	res, err := adm.CreateACLs(ctx(t), b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("create acl %s %s %s: %v", r.Principal, r.Name, r.Operation, r.Err)
		}
	}
}

// fetchCode fetches partition 0 of topic from offset 0 (as a follower
// with replicaID >= 0) and returns the partition's error code.
func fetchCode(t *testing.T, cl *kgo.Client, topic string, replicaID int32) int16 {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MaxBytes = replicaID, 0, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes, rp.CurrentLeaderEpoch, rp.LastFetchedEpoch = 1<<20, -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 {
		return resp.ErrorCode
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

func joinCode(t *testing.T, cl *kgo.Client, group string) int16 {
	t.Helper()
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.SessionTimeoutMillis, req.RebalanceTimeoutMillis, req.ProtocolType = group, 10000, 10000, "consumer"
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0}}}
	resp, err := req.RequestWith(ctx(t), cl)
	var ke *kerr.Error
	if errors.As(err, &ke) { // from FindCoordinator
		return ke.Code
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp.ErrorCode
}

func listedTopics(t *testing.T, cl *kgo.Client) []string {
	t.Helper()
	td, err := kadm.NewClient(cl).ListTopics(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return td.Names()
}

func codeName(c int16) string {
	if c == 0 {
		return "no error"
	}
	return kerr.ErrorForCode(c).Error()
}

// TestAuthorization: with the StandardAuthorizer on, a principal does only
// what ACLs (or super.users) allow, with Kafka's error codes.
func TestAuthorization(t *testing.T) {
	n := startSASLNode(t, authzSets...)
	admin := n.as("admin")
	adm := kadm.NewClient(admin)
	for _, topic := range []string{"orders", "logs"} {
		if r := createTopic(t, admin, topic, 1, nil); r.ErrorCode != 0 {
			t.Fatalf("admin (super user) creates %s: %s", topic, codeName(r.ErrorCode))
		}
	}
	alice, bob := n.as("alice"), n.as("bob")

	// Nothing is allowed without an ACL (allow.everyone.if.no.acl.found=false).
	if c := produceRaw(t, alice, "orders", 1, batch(t, -1, 0, 1)).ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("produce without WRITE: %s", codeName(c))
	}
	if c := createTopic(t, alice, "mine", 1, nil).ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("create without CREATE: %s", codeName(c))
	}
	mustACLs(t, adm, kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpWrite))
	if c := produceRaw(t, alice, "orders", 1, batch(t, -1, 0, 1)).ErrorCode; c != 0 {
		t.Fatalf("produce with WRITE: %s", codeName(c))
	}
	if c := produceRaw(t, bob, "orders", 1, batch(t, -1, 0, 1)).ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("bob produces without WRITE: %s", codeName(c))
	}
	// An idempotent producer needs WRITE on some topic (or IDEMPOTENT_WRITE).
	pa := n.as("alice", kgo.DefaultProduceTopic("orders"))
	if err := pa.ProduceSync(ctx(t), kgo.StringRecord("idempotent")).FirstErr(); err != nil {
		t.Fatalf("alice's idempotent produce: %v", err)
	}
	pb := n.as("bob", kgo.DefaultProduceTopic("orders"), kgo.RecordRetries(1))
	if err := pb.ProduceSync(ctx(t), kgo.StringRecord("x")).FirstErr(); err == nil {
		t.Fatal("bob's idempotent produce succeeded without any WRITE")
	}

	// READ: fetch and groups; a PREFIXED pattern; DENY beats ALLOW.
	if c := fetchCode(t, bob, "orders", -1); c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("fetch without READ: %s", codeName(c))
	}
	if c := joinCode(t, bob, "g1"); c != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("join without READ on the group: %s", codeName(c))
	}
	mustACLs(t, adm, kadm.NewACLs().Allow("User:bob").Topics("ord").Groups("g").Operations(kadm.OpRead).
		ResourcePatternType(kadm.ACLPatternPrefixed))
	if c := fetchCode(t, bob, "orders", -1); c != 0 {
		t.Fatalf("fetch with prefixed READ: %s", codeName(c))
	}
	if c := joinCode(t, bob, "g1"); c == kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("join with prefixed READ on the group: %s", codeName(c))
	}
	if got := listedTopics(t, bob); !slices.Equal(got, []string{"orders"}) {
		t.Fatalf("bob's metadata lists %v; want only the topic he may describe", got)
	}
	if got := listedTopics(t, n.as("eve")); len(got) != 0 {
		t.Fatalf("eve's metadata lists %v; want none", got)
	}
	mustACLs(t, adm, kadm.NewACLs().Deny("User:bob").Topics("orders").Operations(kadm.OpRead))
	if c := fetchCode(t, bob, "orders", -1); c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("fetch with ALLOW (prefixed) and DENY (literal): %s", codeName(c))
	}

	// DELETE.
	dr, err := kadm.NewClient(alice).DeleteTopics(ctx(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	if r := dr["orders"]; !errorIs(r.Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("delete without DELETE: %v", r.Err)
	}

	// Follower fetch: CLUSTER_ACTION on the cluster, not READ on the topic.
	mustACLs(t, adm, kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpRead))
	if c := fetchCode(t, alice, "orders", 2); c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("follower fetch without CLUSTER_ACTION: %s", codeName(c))
	}
	mustACLs(t, adm, kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpClusterAction))
	if c := fetchCode(t, alice, "orders", 2); c == kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("follower fetch with CLUSTER_ACTION: %s", codeName(c))
	}

	// The ACL APIs themselves: DESCRIBE/ALTER on the cluster.
	res, err := kadm.NewClient(bob).CreateACLs(ctx(t), kadm.NewACLs().Allow("User:bob").Topics("logs").Operations(kadm.OpAll))
	if err != nil || len(res) != 1 || !errorIs(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob creates an ACL without ALTER on the cluster: %v %+v", err, res)
	}
	described, err := adm.DescribeACLs(ctx(t), kadm.NewACLs().AnyResource().Allow().AllowHosts().Deny().DenyHosts().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
	if err != nil || len(described) != 1 || described[0].Err != nil {
		t.Fatalf("describe acls: %v %+v", err, described)
	}
	if got := len(described[0].Described); got != 6 {
		t.Fatalf("describe acls: %d bindings, want 6: %+v", got, described[0].Described)
	}
	deleted, err := adm.DeleteACLs(ctx(t), kadm.NewACLs().Deny("User:bob").DenyHosts().AnyResource().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
	if err != nil || len(deleted) != 1 || len(deleted[0].Deleted) != 1 {
		t.Fatalf("delete the DENY: %v %+v", err, deleted)
	}
	if c := fetchCode(t, bob, "orders", -1); c != 0 {
		t.Fatalf("fetch after the DENY was deleted: %s", codeName(c))
	}

	// ACLs are metadata: they survive a restart.
	n.stop()
	n.start()
	bob = n.as("bob")
	waitFor(t, "the node back", 10*time.Second, func() bool { return fetchCode(t, bob, "orders", -1) == 0 })
	if c := fetchCode(t, bob, "logs", -1); c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("after a restart, fetch without READ: %s", codeName(c))
	}
}

func errorIs(err error, want *kerr.Error) bool {
	return err != nil && strings.Contains(err.Error(), want.Message)
}

// TestACLsReachEveryBroker: an ACL created through one broker of a 3-node
// cluster takes effect on every broker within a second; replication works
// with the authorizer on.
func TestACLsReachEveryBroker(t *testing.T) {
	// Followers fetch as User:ANONYMOUS (a PLAINTEXT listener): as in
	// Kafka, the broker principal is a super user (or has CLUSTER_ACTION).
	sets := append(slices.Clone(authzSets), [2]string{"super.users", "User:admin;User:ANONYMOUS"})
	nodes := startInProcessCluster(t, 3, sets...)
	admin := nodes[0].as("admin")
	if _, err := kadm.NewClient(admin).CreateTopic(ctx(t), 1, 3, nil, "shared"); err != nil {
		t.Fatalf("create: %v", err)
	}
	began := time.Now()
	waitFor(t, "acks=all with 3 replicas under the authorizer", 20*time.Second, func() bool {
		c := produceRaw(t, admin, "shared", -1, batch(t, -1, 0, 1)).ErrorCode
		if c != 0 {
			t.Logf("acks=all after %v: %s", time.Since(began).Round(time.Millisecond), codeName(c))
		}
		return c == 0
	})
	for i, n := range nodes {
		// Wait until each broker knows the topic (and denies reading it).
		waitFor(t, "topic known everywhere", 10*time.Second, func() bool {
			return metadataCode(t, n, "admin", "shared") == 0
		})
		if c := metadataCode(t, n, "reader", "shared"); c != kerr.TopicAuthorizationFailed.Code {
			t.Fatalf("node %d: metadata without DESCRIBE: %s", i+1, codeName(c))
		}
	}
	start := time.Now()
	mustACLs(t, kadm.NewClient(admin), kadm.NewACLs().Allow("User:reader").Topics("shared").Operations(kadm.OpDescribe))
	for i, n := range nodes {
		waitFor(t, fmt.Sprintf("the ACL on node %d", i+1), time.Second-time.Since(start), func() bool {
			return metadataCode(t, n, "reader", "shared") == 0
		})
	}
	t.Logf("the ACL took effect on all 3 brokers in %v", time.Since(start).Round(time.Millisecond))
}

// metadataCode asks node n directly (a raw connection), as principal
// user, for topic's metadata (auto-creating it if the node does) and
// returns the topic's error code.
func metadataCode(t *testing.T, n *node, user, topic string) int16 {
	t.Helper()
	c := n.dialAs(t, user)
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr(topic)}}
	req.AllowAutoTopicCreation = true // if auto.create.topics.enable
	c.send(t, req, 1)
	_, body := c.recv(t)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	if err := resp.ReadFrom(body); err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 {
		t.Fatalf("metadata answer %+v", resp)
	}
	return resp.Topics[0].ErrorCode
}

// rawClient is a rawConn whose requests carry a client id.
type rawClient struct {
	*rawConn
	clientID string
}

func (c *rawClient) send(t *testing.T, req kmsg.Request, corr int32) {
	if req.GetVersion() == 0 {
		req.SetVersion(4)
	}
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID(c.clientID))
	if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
		t.Fatal(err)
	}
}

// startInProcessCluster starts size in-process nodes (ids 1..size, each a
// broker and a controller voter) and waits until every one lists all.
func startInProcessCluster(t *testing.T, size int, sets ...[2]string) []*node {
	t.Helper()
	ctrl := make([]string, size)
	voters := make([]string, size)
	for i := range size {
		ctrl[i] = freeAddr(t)
		voters[i] = fmt.Sprintf("%d@%s", i+1, ctrl[i])
	}
	nodes := make([]*node, size)
	for i := range size {
		n := &node{t: t, dir: t.TempDir(), addr: freeAddr(t), saslAddr: freeAddr(t)}
		n.sets = append(append([][2]string{
			{"node.id", fmt.Sprint(i + 1)},
			{"controller.quorum.voters", strings.Join(voters, ",")},
			{"broker.session.timeout.ms", "3000"},
			{"broker.heartbeat.interval.ms", "300"},
			{"controller.quorum.election.timeout.ms", "500"},
		}, saslSets("PLAINTEXT://"+n.addr+",CONTROLLER://"+ctrl[i], n.saslAddr)...), sets...)
		n.start()
		t.Cleanup(n.stop)
		nodes[i] = n
	}
	for _, n := range nodes {
		cl := n.as("admin")
		waitFor(t, "every broker registered", 20*time.Second, func() bool {
			req := kmsg.NewPtrMetadataRequest()
			resp, err := req.RequestWith(ctx(t), cl)
			return err == nil && len(resp.Brokers) == size
		})
	}
	return nodes
}

// TestAuthorizationOfOtherAPIs: configs, elections, reassignments, offset
// commits and fetches, group deletion and the authorized-operations fields.
func TestAuthorizationOfOtherAPIs(t *testing.T) {
	n := startSASLNode(t, authzSets...)
	admin := n.as("admin")
	for _, topic := range []string{"orders", "logs"} {
		createTopic(t, admin, topic, 1, nil)
	}
	adm := kadm.NewClient(admin)
	mustACLs(t, adm, kadm.NewACLs().Allow("User:bob").Topics("orders").Groups("g").Operations(kadm.OpRead))
	mustACLs(t, adm, kadm.NewACLs().Allow("User:bob").Clusters().Operations(kadm.OpDescribe))
	bob := n.as("bob")
	request := func(req kmsg.Request) kmsg.Response {
		t.Helper()
		resp, err := bob.Request(ctx(t), req)
		if err != nil {
			t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
		}
		return resp
	}

	dc := kmsg.NewPtrDescribeConfigsRequest()
	dc.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "orders"},
		{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: "1"}}
	for _, r := range request(dc).(*kmsg.DescribeConfigsResponse).Resources {
		want := kerr.TopicAuthorizationFailed.Code
		if r.ResourceType == kmsg.ConfigResourceTypeBroker {
			want = kerr.ClusterAuthorizationFailed.Code
		}
		if r.ErrorCode != want {
			t.Errorf("describe configs %v %s: %s", r.ResourceType, r.ResourceName, codeName(r.ErrorCode))
		}
	}
	el := kmsg.NewPtrElectLeadersRequest()
	el.TimeoutMillis = 5000
	if c := request(el).(*kmsg.ElectLeadersResponse).ErrorCode; c != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("elect leaders without ALTER on the cluster: %s", codeName(c))
	}
	ra := kmsg.NewPtrAlterPartitionAssignmentsRequest()
	if c := request(ra).(*kmsg.AlterPartitionAssignmentsResponse).ErrorCode; c != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("reassign without ALTER on the cluster: %s", codeName(c))
	}
	if c := request(kmsg.NewPtrListPartitionReassignmentsRequest()).(*kmsg.ListPartitionReassignmentsResponse).ErrorCode; c != 0 {
		t.Errorf("list reassignments with DESCRIBE on the cluster: %s", codeName(c))
	}

	// A standalone consumer (generation -1) commits for a topic it may read
	// and one it may not; the offset fetch of all topics shows only the first.
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Group, oc.Generation = "g", -1
	for _, topic := range []string{"orders", "logs"} {
		oc.Topics = append(oc.Topics, kmsg.OffsetCommitRequestTopic{Topic: topic,
			Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 0, LeaderEpoch: -1}}})
	}
	codes := map[string]int16{}
	for _, rt := range request(oc).(*kmsg.OffsetCommitResponse).Topics {
		codes[rt.Topic] = rt.Partitions[0].ErrorCode
	}
	if codes["orders"] != 0 || codes["logs"] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("offset commit: %v", codes)
	}
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Group = "g"
	ofr := request(of).(*kmsg.OffsetFetchResponse)
	if len(ofr.Topics) != 1 || ofr.Topics[0].Topic != "orders" {
		t.Errorf("offset fetch of all topics: %+v", ofr.Topics)
	}
	dg := kmsg.NewPtrDeleteGroupsRequest()
	dg.Groups = []string{"g"}
	if c := request(dg).(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode; c != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("delete group without DELETE: %s", codeName(c))
	}

	// Authorized operations.
	md := kmsg.NewPtrMetadataRequest()
	md.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("orders")}}
	md.IncludeTopicAuthorizedOperations = true
	mresp := request(md).(*kmsg.MetadataResponse)
	if got, want := mresp.Topics[0].AuthorizedOperations, int32(1<<kmsg.ACLOperationRead|1<<kmsg.ACLOperationDescribe); got != want {
		t.Errorf("topic authorized operations %b, want %b", got, want)
	}
	dcl := kmsg.NewPtrDescribeClusterRequest()
	dcl.IncludeClusterAuthorizedOperations = true
	if got, want := request(dcl).(*kmsg.DescribeClusterResponse).ClusterAuthorizedOperations, int32(1<<kmsg.ACLOperationDescribe); got != want {
		t.Errorf("cluster authorized operations %b, want %b", got, want)
	}
	dgr := kmsg.NewPtrDescribeGroupsRequest()
	dgr.Groups, dgr.IncludeAuthorizedOperations = []string{"g"}, true
	g := request(dgr).(*kmsg.DescribeGroupsResponse).Groups[0]
	if want := int32(1<<kmsg.ACLOperationRead | 1<<kmsg.ACLOperationDescribe); g.ErrorCode != 0 || g.AuthorizedOperations != want {
		t.Errorf("describe group g: %s, operations %b", codeName(g.ErrorCode), g.AuthorizedOperations)
	}
	// kgo's FindCoordinator would already fail for "other" (as on Kafka):
	// ask the coordinator directly.
	raw := n.dialAs(t, "bob")
	dgr.Groups = []string{"g", "other"}
	dgr.SetVersion(4)
	raw.send(t, dgr, 1)
	_, body := raw.recv(t)
	dresp := dgr.ResponseKind().(*kmsg.DescribeGroupsResponse)
	if err := dresp.ReadFrom(body); err != nil || len(dresp.Groups) != 2 ||
		dresp.Groups[0].ErrorCode != 0 || dresp.Groups[1].ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("describe groups g and other: %v %+v", err, dresp.Groups)
	}
	of.Group = "other"
	of.SetVersion(4)
	raw.send(t, of, 2)
	_, body = raw.recv(t)
	oresp := of.ResponseKind().(*kmsg.OffsetFetchResponse)
	if err := oresp.ReadFrom(body); err != nil || oresp.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("offset fetch of a group without DESCRIBE: %v %+v", err, oresp)
	}
}

// TestAutoCreateNeedsCreate: a Metadata request auto-creates a topic only
// for a principal with CREATE on the cluster or the topic.
func TestAutoCreateNeedsCreate(t *testing.T) {
	n := startSASLNode(t, append(slices.Clone(authzSets), [2]string{"auto.create.topics.enable", "true"})...)
	adm := kadm.NewClient(n.as("admin"))
	mustACLs(t, adm, kadm.NewACLs().Allow("User:bob").Topics("auto-").Operations(kadm.OpDescribe).ResourcePatternType(kadm.ACLPatternPrefixed))
	if c := metadataCode(t, n, "bob", "auto-1"); c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("auto-create without CREATE: %s", codeName(c))
	}
	mustACLs(t, adm, kadm.NewACLs().Allow("User:bob").Topics("auto-").Operations(kadm.OpCreate).ResourcePatternType(kadm.ACLPatternPrefixed))
	waitFor(t, "auto-1 created", 10*time.Second, func() bool { return metadataCode(t, n, "bob", "auto-1") == 0 })
	if c := metadataCode(t, n, "carol", "auto-2"); c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("carol auto-creates: %s", codeName(c))
	}
	if names := listedTopics(t, n.as("admin")); !slices.Equal(names, []string{"auto-1"}) {
		t.Fatalf("topics %v", names)
	}
}

// imageOnly is a metadata.Store that only has an image (enough for authorize).
type imageOnly struct {
	metadata.Store
	img *metadata.Image
}

func (s imageOnly) Image() *metadata.Image { return s.img }

// TestEveryAPIHasAnAuthorizationRule: every API the broker answers has a
// rule in authorize, so none falls into the fail-closed default (which
// closes the connection of anyone without ALTER on the cluster). A new API
// needs its Kafka rule in authz_apis.go.
func TestEveryAPIHasAnAuthorizationRule(t *testing.T) {
	s := &Server{logger: slog.New(slog.NewTextHandler(io.Discard, nil)), store: imageOnly{img: metadata.Empty()},
		sec: &serverSecurity{authz: security.NewAuthorizer(security.AuthorizerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})}}
	ctx := security.WithSession(context.Background(), &security.Session{Principal: security.Principal{Type: "User", Name: "eve"}, Host: "10.0.0.1"})
	for _, key := range protocol.Keys() {
		body := kmsg.RequestForKey(key)
		r, _ := protocol.Supported(key)
		body.SetVersion(r.Max)
		if deny, _ := s.authorize(ctx, &protocol.Request{Key: key, Version: r.Max, Body: body}); deny == hangUp {
			t.Errorf("%s has no authorization rule", kmsg.NameForKey(key))
		}
	}
	// And the default does fail closed (delegation tokens are not implemented).
	if deny, _ := s.authorize(ctx, &protocol.Request{Key: int16(kmsg.ExpireDelegationToken), Body: kmsg.NewPtrExpireDelegationTokenRequest()}); deny != hangUp {
		t.Errorf("an API without a rule was not refused: %v", deny)
	}
}

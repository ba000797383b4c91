package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"strand/internal/testcluster"
)

// TestKcatACLs: librdkafka (kcat) against a node with the StandardAuthorizer
// and allow.everyone.if.no.acl.found=true. Once an ACL on topic "secret"
// names only User:alice, kcat (User:ANONYMOUS) may neither write nor read
// it, nor see it in metadata, while "open" (no ACL) still works. Without
// kcat it skips locally but fails on CI (CI=true).
func TestKcatACLs(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat not found on CI (CI=true): %v", err)
		}
		t.Skip("kcat not installed (apt-get install -y kcat); CI runs this test")
	}
	n := testcluster.StartNode(t,
		testcluster.WithSet("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
		testcluster.WithSet("allow.everyone.if.no.acl.found", "true"),
		testcluster.WithSet("auto.create.topics.enable", "false"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := newAdmin(t, n)
	createTopic(ctx, t, adm, "open", 1, nil)
	createTopic(ctx, t, adm, "secret", 1, nil)
	res, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:alice").Topics("secret").Operations(kadm.OpRead, kadm.OpWrite))
	if err != nil || len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("create acls: %v %+v", err, res)
	}
	kcat := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kcat", append([]string{"-b", n.Addr(), "-m", "5"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := kcat("hello\n", "-P", "-t", "open"); err != nil {
		t.Fatalf("kcat produce to open: %v\n%s", err, out)
	}
	if out, err := kcat("", "-C", "-t", "open", "-o", "beginning", "-c", "1", "-e"); err != nil || !strings.Contains(out, "hello") {
		t.Fatalf("kcat consume open: %v\n%s", err, out)
	}
	out, err := kcat("psst\n", "-P", "-t", "secret")
	if err == nil && !strings.Contains(strings.ToLower(out), "authoriz") {
		t.Fatalf("kcat produced to secret without an ACL allowing it:\n%s", out)
	}
	t.Logf("kcat -P secret: %v: %s", err, strings.TrimSpace(out))
	out, err = kcat("", "-C", "-t", "secret", "-o", "beginning", "-c", "1", "-e")
	if err == nil && !strings.Contains(strings.ToLower(out), "authoriz") {
		t.Fatalf("kcat consumed secret without an ACL allowing it:\n%s", out)
	}
	t.Logf("kcat -C secret: %v: %s", err, strings.TrimSpace(out))
	out, err = kcat("", "-L")
	if err != nil || !strings.Contains(out, `topic "open"`) || strings.Contains(out, `topic "secret"`) {
		t.Fatalf("kcat -L should list open and not secret: %v\n%s", err, out)
	}
	lo, err := adm.ListEndOffsets(ctx, "secret")
	if err == nil {
		o, _ := lo.Lookup("secret", 0)
		err = o.Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("list offsets of secret: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}
